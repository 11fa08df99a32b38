//! `/users/me/consents`: the OAuth clients you allowed to sign you in, and
//! withdrawing that consent.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::{AuthError, RequireScope};

use crate::auth::clients;
use crate::domain::profile::rfc3339;
use crate::http::error::{Error, Result};
use crate::http::routes::ClientMeta;
use crate::http::scopes::Me;
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_consents))
        .routes(routes!(withdraw_consent))
}

/// A consent you gave a client: the scopes it may obtain without asking.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    pub client_id: Uuid,
    /// The client's name.
    #[schema(example = "Gradebook")]
    pub name: String,
    #[schema(example = json!(["openid", "profile"]))]
    pub scopes: Vec<String>,
    pub granted_at: String,
}

/// List your consents
///
/// The clients you allowed to sign you in, with the scopes you granted
/// each, newest first. First-party clients ask no consent and appear only
/// if you gave one before they became first-party.
#[utoipa::path(
    get,
    path = "/users/me/consents",
    tag = "consents",
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Your consents", body = Vec<ConsentView>),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `me`", body = crate::http::routes::Detail),
    )
)]
pub async fn list_consents(
    State(state): State<AppState>,
    claims: RequireScope<Me>,
) -> Result<Json<Vec<ConsentView>>> {
    let user = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid)?;
    let consents = clients::consents(&state, user).await?;
    Ok(Json(
        consents
            .into_iter()
            .map(|(c, name)| ConsentView {
                client_id: c.client_id,
                name,
                scopes: c.scopes,
                granted_at: rfc3339(c.granted_at),
            })
            .collect(),
    ))
}

/// Withdraw a consent
///
/// Forgets the consent you gave the client, so its next sign-in asks
/// again, and ends your sessions through that client (their refresh
/// tokens stop at once, their access tokens on their next request). A
/// client you gave no consent (or an id that is no client) answers 404.
#[utoipa::path(
    delete,
    path = "/users/me/consents/{client_id}",
    tag = "consents",
    params(("client_id" = Uuid, Path, description = "The client's id")),
    security(("OAuth2PasswordBearer" = ["me"]), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Withdrawn; your sessions through the client ended"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `me`", body = crate::http::routes::Detail),
        (status = 404, description = "No consent of yours for this client", body = crate::http::routes::Detail),
    )
)]
pub async fn withdraw_consent(
    State(state): State<AppState>,
    claims: RequireScope<Me>,
    meta: ClientMeta,
    Path(client_id): Path<String>,
) -> Result<StatusCode> {
    let user = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::Invalid)?;
    let client = Uuid::parse_str(&client_id).map_err(|_| Error::NotFound)?;
    clients::withdraw_consent(
        &state,
        user,
        client,
        meta.ip.as_deref(),
        crate::auth::tokens::now(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
