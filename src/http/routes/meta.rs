//! Keys and operations: JWKS, health, readiness, metrics; the headers of
//! the Swagger UI pages at `/docs`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::state::AppState;

/// What Swagger UI at `/docs` needs, and nothing more: its scripts and
/// stylesheets are files of warden's own (its initializer too, no inline
/// script); its icons are `data:` images in its stylesheet; it fetches
/// `/openapi.json` and calls the API on this origin; and nothing may frame
/// it (clickjacking the Authorize dialog). No inline style either: the
/// base layout has no top bar, whose SVG logo held the one `<style>`
/// element. Checked in a real browser by `browser/tests/swagger.test.js`,
/// which fails on any CSP violation (and so when a Swagger UI upgrade
/// needs more).
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Adds the page headers of `/docs` (and `/openapi.json`, served by the
/// same router) to `response`. `no-cache`: the files change with the
/// binary, so the browser revalidates rather than stores them for good.
pub async fn docs_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    response
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(authorization_server_metadata))
        .routes(routes!(openid_configuration))
        // UserInfo is registered with the documents that name it.
        .merge(crate::http::routes::userinfo::router())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Public signing keys (JWKS)
///
/// The public keys that verify warden's access tokens (RFC 7517): the
/// current key and every retired key whose tokens may still be live. Empty
/// under HS256: a shared secret is never published.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "keys",
    responses((status = 200, description = "JWK Set", body = Object))
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let set = state.tokens.keys().jwks();
    (
        // Verifiers may cache it briefly; a rotation publishes the new key
        // before it signs anything.
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )],
        Json(set),
    )
        .into_response()
}

/// Authorization server metadata
///
/// RFC 8414: the issuer, its endpoints (`/authorize` for the code flow
/// with PKCE S256), grant types, client authentication methods and scopes,
/// consistent with the routes this server has.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "keys",
    responses((status = 200, description = "RFC 8414 metadata", body = Object))
)]
pub async fn authorization_server_metadata(State(state): State<AppState>) -> Response {
    public_document(server_metadata(&state))
}

/// OpenID Provider configuration
///
/// OpenID Connect Discovery 1.0: the same endpoints as the RFC 8414
/// document, plus what a relying party needs to know of id tokens,
/// claims, UserInfo and logout.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "keys",
    responses((status = 200, description = "OpenID Provider metadata", body = Object))
)]
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    let mut body = server_metadata(&state);
    let extra = serde_json::json!({
        "subject_types_supported": ["public"],
        // RS256 first: every relying party supports it (OIDC Core §15.1).
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "userinfo_signing_alg_values_supported": [],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
            "sid", "amr", "azp", "preferred_username", "name", "email",
            "email_verified",
        ],
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "prompt_values_supported": ["none", "login", "consent"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
    });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    public_document(body)
}

/// A public document: cacheable for a few minutes (a rotation publishes
/// a new key before it signs anything). CORS for any origin is added by
/// `http::cors::public_clients`.
fn public_document(body: serde_json::Value) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )],
        Json(body),
    )
        .into_response()
}

/// What the RFC 8414 document says, which the OpenID document repeats:
/// the issuer, every endpoint, grants, client authentication, scopes.
fn server_metadata(state: &AppState) -> serde_json::Value {
    let issuer = state.tokens.issuer();
    let mut scopes: Vec<&str> = state
        .config
        .roles
        .all_scopes()
        .iter()
        .map(String::as_str)
        .collect();
    for scope in crate::domain::roles::OPENID_SCOPES {
        if !scopes.contains(scope) {
            scopes.push(scope);
        }
    }
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}{}", crate::http::routes::userinfo::PATH),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "revocation_endpoint": format!("{issuer}/token/revoke"),
        "introspection_endpoint": format!("{issuer}/token/introspect"),
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "password",
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "scopes_supported": scopes,
        // Registered clients authenticate with their secret (Basic or in
        // the form); public clients and the password grant with `none`.
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        // PKCE is required for every client, and only S256 (RFC 9700 §2.1.1).
        "code_challenge_methods_supported": ["S256"],
        // RFC 9207: every authorization response carries `iss`.
        "authorization_response_iss_parameter_supported": true,
        // Anyone holding a token may revoke it (RFC 7009 §2.1 lets the
        // server decide); no client authentication is asked for. There is
        // no `introspection_endpoint_auth_methods_supported`: introspection
        // is authorized by a bearer token with `tokens:introspect`, which
        // is no registered client authentication method.
        "revocation_endpoint_auth_methods_supported": ["none"],
        "service_documentation": format!("{issuer}/docs"),
        // An extension (RFC 8414 §2 allows more fields): where
        // `warden-guard` follows revocations.
        "warden_revocation_feed_endpoint": format!("{issuer}{}", crate::http::routes::revocations::PATH),
    })
}

/// Liveness check
///
/// 200 `{"status": "ok"}` while the process is up; it does not touch the
/// database.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Up", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness check
///
/// 200 `{"status": "ready"}` when the database answers a query, else 503
/// with `Retry-After`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Database unreachable", body = crate::http::routes::Detail,
            example = json!({"detail": "Database unavailable"})),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("2"))],
                Json(serde_json::json!({ "detail": "Database unavailable" })),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics
///
/// The Prometheus text format: request counts and durations by route,
/// logins by result, tokens issued, the password-hashing queue.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}
