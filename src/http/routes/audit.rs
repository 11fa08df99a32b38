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
use crate::http::error::{Error, FieldError, Result};
use crate::http::routes::users::{decode_cursor, encode_cursor};
use crate::http::scopes::UsersRead;
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_events))
}

/// Query of `GET /audit`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; the handler parses it by hand
pub struct AuditParams {
    /// Page size, 1–200 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only events about this user.
    user_id: Option<Uuid>,
    /// Only events of this type, e.g. `login_failed`.
    r#type: Option<String>,
}

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    /// `login_succeeded`, `login_failed`, `login_throttled`,
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
    let mut q = AuditQuery {
        before: None,
        limit: 50,
        user_id: None,
        kind: None,
    };
    let mut errors = Vec::new();
    for (key, value) in crate::http::body::query_pairs(raw)? {
        match key.as_str() {
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => q.limit = n,
                _ => errors.push(FieldError::new(
                    &["query", "limit"],
                    "Input should be an integer between 1 and 200",
                    "int_parsing",
                )),
            },
            "cursor" => match decode_cursor(&value) {
                Some(id) => q.before = Some(id),
                None => errors.push(FieldError::new(
                    &["query", "cursor"],
                    "Invalid cursor",
                    "value_error",
                )),
            },
            "user_id" => match Uuid::parse_str(&value) {
                Ok(id) => q.user_id = Some(id),
                Err(_) => errors.push(FieldError::new(
                    &["query", "user_id"],
                    "Input should be a valid UUID",
                    "uuid_parsing",
                )),
            },
            "type" if !value.is_empty() => q.kind = Some(value),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(Error::Validation(errors))
    }
}

/// Security events, newest first, with cursor pagination.
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
