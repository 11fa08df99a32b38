//! `/clients`: the OAuth client registry, for admins (scopes
//! `clients:read` and `clients:write`). The rules are the services'
//! (`auth::clients`) and the domain's (`domain::client`); this module
//! parses the bodies and maps the results.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warden_guard::RequireScope;

use crate::auth::clients::{self, ClientChanges, NewClient};
use crate::domain::ClientRecord;
use crate::domain::profile::rfc3339;
use crate::http::body::{self, Fields, FromJson, FromQuery, JsonObject, QueryFields};
use crate::http::error::{Error, Result};
use crate::http::routes::ClientMeta;
use crate::http::routes::users::{encode_cursor, page_cursor, page_limit};
use crate::http::scopes::{ClientsRead, ClientsWrite};
use crate::http::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_client, list_clients))
        .routes(routes!(get_client, update_client, delete_client))
        .routes(routes!(rotate_client_secret))
}

/// A registered client. Never its secret, which is shown once, in the
/// answer of its creation or rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    #[schema(example = "0193a0c4-6c1e-7b3a-9d2f-6a1b2c3d4e5f")]
    pub client_id: Uuid,
    #[schema(example = "Gradebook")]
    pub name: String,
    /// No secret: a single-page, mobile or CLI app (PKCE alone).
    pub public: bool,
    /// The operator's own app: no consent screen (confidential clients, and
    /// public ones whose redirect URIs are all https).
    pub first_party: bool,
    #[schema(example = json!(["https://grades.example.com/cb"]))]
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    #[schema(example = json!(["authorization_code", "refresh_token"]))]
    pub grant_types: Vec<String>,
    /// The most a token through this client may carry.
    #[schema(example = json!(["openid", "profile", "email", "me"]))]
    pub scopes: Vec<String>,
    #[schema(example = "RS256")]
    pub id_token_signed_response_alg: String,
    pub created_at: String,
}

impl From<&ClientRecord> for ClientView {
    fn from(c: &ClientRecord) -> Self {
        Self {
            client_id: c.id,
            name: c.name.clone(),
            public: c.public,
            first_party: c.first_party,
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            id_token_signed_response_alg: c.id_token_signed_response_alg.clone(),
            created_at: rfc3339(c.created_at),
        }
    }
}

/// The client with its secret: the answer of `POST /clients` (for a
/// confidential client) and of `POST /clients/{id}/secret`. The only time
/// the secret is shown; warden keeps only its hash.
#[derive(Serialize, ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: ClientView,
    /// `wdn_cs_` and 256 random bits; absent for a public client.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "wdn_cs_Jq3...", required = false)]
    pub client_secret: Option<String>,
}

/// A response carrying a secret: `Cache-Control: no-store`.
fn with_secret(status: StatusCode, body: ClientWithSecret) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        Json(body),
    )
        .into_response()
}

/// An optional list of strings, owned.
fn str_list(f: &mut Fields<'_>, name: &'static str) -> Option<Vec<String>> {
    f.optional_str_list(name)
        .map(|list| list.into_iter().map(str::to_owned).collect())
}

/// `POST /clients` body. Omitted fields take their defaults; the rules
/// are checked on the whole registration.
#[derive(Debug, ToSchema)]
pub struct ClientRegistration {
    /// 1–100 characters, shown on the consent screen.
    #[schema(example = "Gradebook", min_length = 1, max_length = 100)]
    pub name: String,
    /// Default `false` (a confidential client, which gets a secret).
    #[schema(value_type = bool, required = false)]
    pub public: Option<bool>,
    /// Default `false`.
    #[schema(value_type = bool, required = false)]
    pub first_party: Option<bool>,
    /// Exact URIs (at most 20): `https`, `http://127.0.0.1` or
    /// `http://[::1]` (any port), or a reverse-domain custom scheme for a
    /// public client. Needed for `authorization_code`.
    #[schema(value_type = Vec<String>, required = false, example = json!(["https://grades.example.com/cb"]))]
    pub redirect_uris: Option<Vec<String>>,
    /// Where to send the user after logout; the same rules.
    #[schema(value_type = Vec<String>, required = false)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `https` (or loopback `http`) URL for OpenID back-channel logout.
    pub backchannel_logout_uri: Option<String>,
    /// Default `["authorization_code", "refresh_token"]`; also
    /// `client_credentials` (confidential clients only).
    #[schema(value_type = Vec<String>, required = false)]
    pub grant_types: Option<Vec<String>>,
    /// Default `me` and the OpenID scopes; each granted by some role or an
    /// OpenID scope.
    #[schema(value_type = Vec<String>, required = false)]
    pub scopes: Option<Vec<String>>,
    /// `RS256` (default), `ES256` or `EdDSA`.
    #[schema(value_type = String, required = false)]
    pub id_token_signed_response_alg: Option<String>,
}

impl FromJson for ClientRegistration {
    type Context<'c> = ();

    fn read(f: &mut Fields<'_>, (): ()) -> Option<Self> {
        let name = f.required_str("name");
        let public = f.optional_bool("public");
        let first_party = f.optional_bool("first_party");
        let redirect_uris = str_list(f, "redirect_uris");
        let post_logout_redirect_uris = str_list(f, "post_logout_redirect_uris");
        let backchannel_logout_uri = f.nullable_str("backchannel_logout_uri").flatten();
        let grant_types = str_list(f, "grant_types");
        let scopes = str_list(f, "scopes");
        let alg = f.optional_str("id_token_signed_response_alg");
        Some(Self {
            name: name?.to_owned(),
            public,
            first_party,
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri: backchannel_logout_uri.map(str::to_owned),
            grant_types,
            scopes,
            id_token_signed_response_alg: alg.map(str::to_owned),
        })
    }
}

impl From<ClientRegistration> for NewClient {
    fn from(r: ClientRegistration) -> Self {
        Self {
            name: r.name,
            public: r.public.unwrap_or(false),
            first_party: r.first_party.unwrap_or(false),
            redirect_uris: r.redirect_uris.unwrap_or_default(),
            post_logout_redirect_uris: r.post_logout_redirect_uris.unwrap_or_default(),
            backchannel_logout_uri: r.backchannel_logout_uri,
            grant_types: r.grant_types,
            scopes: r.scopes,
            id_token_signed_response_alg: r.id_token_signed_response_alg,
        }
    }
}

/// `PATCH /clients/{id}` body: any subset of the registration's fields but
/// `public` (a client does not change kind). Each field given replaces the
/// registered value, and the result must pass every rule of a registration.
#[derive(Debug, ToSchema)]
pub struct ClientUpdate {
    #[schema(value_type = String, required = false)]
    pub name: Option<String>,
    #[schema(value_type = bool, required = false)]
    pub first_party: Option<bool>,
    #[schema(value_type = Vec<String>, required = false)]
    pub redirect_uris: Option<Vec<String>>,
    #[schema(value_type = Vec<String>, required = false)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `null` removes it.
    #[schema(value_type = Option<String>)]
    pub backchannel_logout_uri: Option<Option<String>>,
    #[schema(value_type = Vec<String>, required = false)]
    pub grant_types: Option<Vec<String>>,
    #[schema(value_type = Vec<String>, required = false)]
    pub scopes: Option<Vec<String>>,
    #[schema(value_type = String, required = false)]
    pub id_token_signed_response_alg: Option<String>,
}

/// What a PATCH answers for `public`.
pub const PUBLIC_IS_FIXED: &str = "A client cannot change between public and confidential; \
                                   register a new client and delete this one";

impl FromJson for ClientUpdate {
    type Context<'c> = ();

    fn read(f: &mut Fields<'_>, (): ()) -> Option<Self> {
        if f.sent("public") {
            f.invalid("public", PUBLIC_IS_FIXED.to_owned());
        }
        let name = f.optional_str("name").map(str::to_owned);
        let first_party = f.optional_bool("first_party");
        let redirect_uris = str_list(f, "redirect_uris");
        let post_logout_redirect_uris = str_list(f, "post_logout_redirect_uris");
        let backchannel_logout_uri = f
            .nullable_str("backchannel_logout_uri")
            .map(|u| u.map(str::to_owned));
        let grant_types = str_list(f, "grant_types");
        let scopes = str_list(f, "scopes");
        let alg = f
            .optional_str("id_token_signed_response_alg")
            .map(str::to_owned);
        Some(Self {
            name,
            first_party,
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            grant_types,
            scopes,
            id_token_signed_response_alg: alg,
        })
    }
}

impl From<ClientUpdate> for ClientChanges {
    fn from(u: ClientUpdate) -> Self {
        Self {
            name: u.name,
            first_party: u.first_party,
            redirect_uris: u.redirect_uris,
            post_logout_redirect_uris: u.post_logout_redirect_uris,
            backchannel_logout_uri: u.backchannel_logout_uri,
            grant_types: u.grant_types,
            scopes: u.scopes,
            id_token_signed_response_alg: u.id_token_signed_response_alg,
        }
    }
}

const DEFAULT_LIMIT: u32 = 50;

/// Query of `GET /clients`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClientListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<Uuid>,
}

impl FromQuery for ClientListQuery {
    fn read(query: &mut QueryFields<'_>) -> Self {
        let mut list = Self {
            limit: None,
            cursor: None,
        };
        for value in query.values("limit") {
            list.limit = page_limit(query, value).or(list.limit);
        }
        for value in query.values("cursor") {
            list.cursor = page_cursor(query, value).or(list.cursor);
        }
        list
    }
}

/// A page of clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientPage {
    pub items: Vec<ClientView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The admin of a token, for the audit events.
fn actor(sub: &str) -> Option<Uuid> {
    Uuid::parse_str(sub).ok()
}

/// A client id from the path: one that is not a UUID names no client.
fn client_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| Error::NotFound)
}

/// Register a client
///
/// Registers an OAuth client. A confidential client (`public: false`, the
/// default) gets its `client_secret` in this answer and never again:
/// warden stores only its hash. Every redirect URI is checked against the
/// registration rules (exact https URIs; loopback `http://127.0.0.1` or
/// `http://[::1]` on any port; reverse-domain custom schemes for public
/// clients only; no fragments, wildcards or user info); a 422 names the
/// field and the index of the URI. Needs scope `clients:write`.
#[utoipa::path(
    post,
    path = "/clients",
    tag = "clients",
    request_body = ClientRegistration,
    security(("OAuth2PasswordBearer" = ["clients:write"]), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Registered; `client_secret` for a confidential client, shown once", body = ClientWithSecret),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `clients:write`", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "A field breaks a registration rule", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "redirect_uris", "0"], "msg": "redirect URI must not contain a fragment (#)", "type": "value_error"}]})),
    )
)]
pub async fn create_client(
    State(state): State<AppState>,
    auth: RequireScope<ClientsWrite>,
    meta: ClientMeta,
    JsonObject(body): JsonObject,
) -> Result<Response> {
    let registration: ClientRegistration = body::parse(&body, ())?;
    let (client, secret) = clients::create(
        &state,
        registration.into(),
        actor(&auth.sub),
        meta.ip.as_deref(),
        crate::auth::tokens::now(),
    )
    .await?;
    let mut response = with_secret(
        StatusCode::CREATED,
        ClientWithSecret {
            client: ClientView::from(&client),
            client_secret: secret,
        },
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/clients/{}", client.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List clients
///
/// Every registered client, by id, a page at a time (keyset pagination:
/// stable while clients are being added). Never a secret. Needs scope
/// `clients:read`.
#[utoipa::path(
    get,
    path = "/clients",
    tag = "clients",
    params(ClientListQuery),
    security(("OAuth2PasswordBearer" = ["clients:read"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of clients", body = ClientPage),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `clients:read`", body = crate::http::routes::Detail),
        (status = 422, description = "Invalid `limit` or `cursor`", body = crate::http::routes::ValidationErrorBody),
    )
)]
pub async fn list_clients(
    State(state): State<AppState>,
    _auth: RequireScope<ClientsRead>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ClientPage>> {
    let query: ClientListQuery = body::parse_query(raw.as_deref())?;
    let (page, next) =
        clients::list(&state, query.cursor, query.limit.unwrap_or(DEFAULT_LIMIT)).await?;
    Ok(Json(ClientPage {
        items: page.iter().map(ClientView::from).collect(),
        next_cursor: next.map(encode_cursor),
    }))
}

/// Read a client
///
/// One registered client, without its secret. An id that is not a
/// registered client (a malformed one included) answers 404. Needs scope
/// `clients:read`.
#[utoipa::path(
    get,
    path = "/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path, description = "The client_id")),
    security(("OAuth2PasswordBearer" = ["clients:read"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `clients:read`", body = crate::http::routes::Detail),
        (status = 404, description = "No such client", body = crate::http::routes::Detail),
    )
)]
pub async fn get_client(
    State(state): State<AppState>,
    _auth: RequireScope<ClientsRead>,
    Path(id): Path<String>,
) -> Result<Json<ClientView>> {
    let client = clients::get(&state, client_id(&id)?).await?;
    Ok(Json(ClientView::from(&client)))
}

/// Change a client
///
/// A partial update: each field given replaces the registered value, the
/// others stay. The result is checked as a whole against the registration
/// rules, so no update can give a public client `client_credentials` or a
/// confidential one a custom-scheme redirect URI. `public` cannot change
/// (422): register a new client instead. Sessions already issued through
/// the client are left alone. Needs scope `clients:write`.
#[utoipa::path(
    patch,
    path = "/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path, description = "The client_id")),
    request_body = ClientUpdate,
    security(("OAuth2PasswordBearer" = ["clients:write"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The changed client", body = ClientView),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `clients:write`", body = crate::http::routes::Detail),
        (status = 404, description = "No such client", body = crate::http::routes::Detail),
        (status = 413, description = "Body over 64 KiB", body = crate::http::routes::Detail),
        (status = 415, description = "Not JSON", body = crate::http::routes::Detail),
        (status = 422, description = "The changed client would break a registration rule", body = crate::http::routes::ValidationErrorBody,
            example = json!({"detail": [{"loc": ["body", "grant_types"], "msg": "client_credentials needs a confidential client (public clients have no secret)", "type": "value_error"}]})),
    )
)]
pub async fn update_client(
    State(state): State<AppState>,
    auth: RequireScope<ClientsWrite>,
    meta: ClientMeta,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<ClientView>> {
    let id = client_id(&id)?;
    let update: ClientUpdate = body::parse(&body, ())?;
    let client = clients::update(
        &state,
        id,
        update.into(),
        actor(&auth.sub),
        meta.ip.as_deref(),
        crate::auth::tokens::now(),
    )
    .await?;
    Ok(Json(ClientView::from(&client)))
}

/// Delete a client
///
/// Deletes the client and ends everything issued through it: its unused
/// authorization codes and the consents users gave it go, and every
/// session opened through it ends (its refresh tokens stop at once, its
/// access tokens on their next request). Needs scope `clients:write`.
#[utoipa::path(
    delete,
    path = "/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path, description = "The client_id")),
    security(("OAuth2PasswordBearer" = ["clients:write"]), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Deleted; its sessions ended"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `clients:write`", body = crate::http::routes::Detail),
        (status = 404, description = "No such client", body = crate::http::routes::Detail),
    )
)]
pub async fn delete_client(
    State(state): State<AppState>,
    auth: RequireScope<ClientsWrite>,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    clients::delete(
        &state,
        client_id(&id)?,
        actor(&auth.sub),
        meta.ip.as_deref(),
        crate::auth::tokens::now(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a client's secret
///
/// Gives a confidential client a new `client_secret`, shown in this answer
/// only; the old secret stops working at once. A public client has no
/// secret: 409. Needs scope `clients:write`.
#[utoipa::path(
    post,
    path = "/clients/{id}/secret",
    tag = "clients",
    params(("id" = Uuid, Path, description = "The client_id")),
    security(("OAuth2PasswordBearer" = ["clients:write"]), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The client with its new secret, shown once", body = ClientWithSecret),
        (status = 401, description = "Missing, invalid or expired token", body = crate::http::routes::Detail),
        (status = 403, description = "Token lacks scope `clients:write`", body = crate::http::routes::Detail),
        (status = 404, description = "No such client", body = crate::http::routes::Detail),
        (status = 409, description = "A public client, which has no secret", body = crate::http::routes::Detail,
            example = json!({"detail": clients::PUBLIC_CLIENT_HAS_NO_SECRET})),
    )
)]
pub async fn rotate_client_secret(
    State(state): State<AppState>,
    auth: RequireScope<ClientsWrite>,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<Response> {
    let (client, secret) = clients::rotate_secret(
        &state,
        client_id(&id)?,
        actor(&auth.sub),
        meta.ip.as_deref(),
        crate::auth::tokens::now(),
    )
    .await?;
    Ok(with_secret(
        StatusCode::OK,
        ClientWithSecret {
            client: ClientView::from(&client),
            client_secret: Some(secret),
        },
    ))
}
