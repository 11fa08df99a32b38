//! `GET /audit`: the security event log.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::RequireScope;

use crate::domain::AuditQuery;
use crate::domain::profile::rfc3339;
use crate::http::body::{self, FromQuery, QueryFields};
use crate::http::error::Result;
use crate::http::routes::users::{encode_cursor, page_cursor};
use crate::http::scopes::UsersRead;
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_events))
}

/// Query of `GET /audit`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<Uuid>,
    /// Only events about this user.
    pub user_id: Option<Uuid>,
    /// Only events of this type, e.g. `login_failed`.
    pub r#type: Option<String>,
}

impl FromQuery for AuditParams {
    fn read(query: &mut QueryFields<'_>) -> Self {
        let mut params = Self {
            limit: None,
            cursor: None,
            user_id: None,
            r#type: None,
        };
        for value in query.values("limit") {
            match value.parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => params.limit = Some(n),
                _ => query.invalid(
                    "limit",
                    "Input should be an integer between 1 and 200",
                    "int_parsing",
                ),
            }
        }
        for value in query.values("cursor") {
            params.cursor = page_cursor(query, value).or(params.cursor);
        }
        for value in query.values("user_id") {
            match Uuid::parse_str(value) {
                Ok(id) => params.user_id = Some(id),
                Err(_) => query.invalid("user_id", "Input should be a valid UUID", "uuid_parsing"),
            }
        }
        for value in query.values("type") {
            if !value.is_empty() {
                params.r#type = Some(value.to_owned());
            }
        }
        params
    }
}

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    /// `login_succeeded`, `login_failed`, `login_throttled`,
    /// `password_check_failed`, `password_check_throttled`,
    /// `registration_throttled`, `user_registered`, `refresh_reuse_detected`,
    /// `logout`, `session_ended`, `token_revoked`, `password_changed`,
    /// `user_security_changed` (roles or disabled), `user_deleted`,
    /// `key_rotated`.
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    /// Event specifics (e.g. `{"roles": [...]}`, `{"retry_after": 840}`).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: String,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn parse(raw: Option<&str>) -> Result<AuditQuery> {
    let params: AuditParams = body::parse_query(raw)?;
    Ok(AuditQuery {
        before: params.cursor,
        limit: params.limit.unwrap_or(50),
        user_id: params.user_id,
        kind: params.r#type,
    })
}

/// Read the audit log
///
/// Security events (sign-ins, failures, password and role changes,
/// logouts, key rotations), newest first, a page at a time; filter by
/// `user_id` or `type`. Needs scope `users:read`.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "operations",
    params(AuditParams),
    security(("OAuth2PasswordBearer" = ["users:read"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `users:read`", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid query", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn list_audit_events(
    State(state): State<AppState>,
    _auth: RequireScope<UsersRead>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AuditPage>> {
    let mut q = parse(raw.as_deref())?;
    let limit = q.limit as usize;
    q.limit += 1;
    let mut rows = state.store.query_audit(&q).await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| AuditEvent {
            id: r.id,
            kind: r.kind,
            user_id: r.user_id,
            session_id: r.session_id,
            ip: r.ip,
            detail: r
                .detail
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_else(|| serde_json::json!({})),
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Json(AuditPage { items, next_cursor }))
}
