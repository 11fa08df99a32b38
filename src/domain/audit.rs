//! Security events.

use uuid::Uuid;

/// A security event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    /// A JSON object with the event's specifics.
    pub detail: Option<String>,
    pub created_at: i64,
}

/// A page of audit events, newest first: `before` is the last id of the
/// previous page.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub before: Option<Uuid>,
    pub limit: u32,
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
}
