//! `GET` and `POST /session/end`: RP-initiated logout (OpenID Connect
//! RP-Initiated Logout 1.0), the `end_session_endpoint`. The checks are in
//! [`crate::auth::end_session`]; this module writes the pages (the hosted
//! pages' layout, CSP and CSRF) and the redirects.
//!
//! - A valid `id_token_hint` of the current browser session: the session
//!   ends at once, 303 to the `post_logout_redirect_uri` (with `state`) or
//!   to the signed-out page.
//! - Otherwise, with a browser session: a confirmation page whose form
//!   (CSRF-protected) posts back here with `confirm`.
//! - Without a browser session there is nothing to end: 303 onwards at
//!   once.
//! - A request that fails the checks: an HTML error page, never a redirect.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::end_session::{self, CheckedLogout, EndSessionRequest};
use crate::http::body::{FromForm, FromQuery, OAuthParams, Params, QueryFields, parse_query};
use crate::http::cookies;
use crate::http::routes::authorize::{
    SESSION_COOKIE, cleared_session_cookie, csrf_for, csrf_ok, csrf_refused, error_page, esc,
    message_body, page, pairs, see_other, session_of, with_cookie,
};
use crate::http::state::AppState;

/// Where a logout without a redirect of the client's ends.
const SIGNED_OUT: &str = "/login?signed_out=1";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(end_session_get, end_session_post))
}

/// The query of `GET /session/end` (RP-Initiated Logout 1.0 §2).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndSessionQuery {
    /// An ID token warden issued to the client (may be expired).
    pub id_token_hint: Option<String>,
    /// Where to go afterwards; must be registered for the client.
    pub post_logout_redirect_uri: Option<String>,
    /// Echoed on the redirect.
    pub state: Option<String>,
    /// The client; must match the hint's audience.
    pub client_id: Option<String>,
}

impl FromQuery for EndSessionQuery {
    fn read(query: &mut QueryFields<'_>) -> Self {
        let mut last = |name| query.values(name).last().map(|v| (*v).to_owned());
        Self {
            id_token_hint: last("id_token_hint"),
            post_logout_redirect_uri: last("post_logout_redirect_uri"),
            state: last("state"),
            client_id: last("client_id"),
        }
    }
}

/// The form of `POST /session/end`: the parameters of `GET`, or the
/// confirmation page's answer (with `confirm` and `csrf_token`).
// No `Debug`: it holds an ID token.
#[derive(Default, ToSchema)]
pub struct EndSessionForm {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
    /// Set by the confirmation page: sign out now.
    pub confirm: Option<String>,
    /// The confirmation page's CSRF token.
    pub csrf_token: Option<String>,
}

impl FromForm for EndSessionForm {
    fn read(p: &mut Params<'_>) -> Option<Self> {
        let mut get = |name| p.optional(name).map(str::to_owned);
        Some(Self {
            id_token_hint: get("id_token_hint"),
            post_logout_redirect_uri: get("post_logout_redirect_uri"),
            state: get("state"),
            client_id: get("client_id"),
            confirm: get("confirm"),
            csrf_token: get("csrf_token"),
        })
    }
}

fn request_of(
    id_token_hint: &Option<String>,
    post_logout_redirect_uri: &Option<String>,
    state: &Option<String>,
    client_id: &Option<String>,
) -> EndSessionRequest {
    let pairs = [
        ("id_token_hint", id_token_hint),
        ("post_logout_redirect_uri", post_logout_redirect_uri),
        ("state", state),
        ("client_id", client_id),
    ];
    EndSessionRequest::from_pairs(
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
    )
}

/// Sign out (RP-initiated logout)
///
/// OpenID Connect RP-Initiated Logout 1.0. Ends the browser session and
/// every session opened from it; their clients are sent back-channel
/// logout tokens. With a valid `id_token_hint` of the current browser
/// session there is no page; otherwise the user confirms on one. A bad
/// request is an HTML error page, never a redirect.
#[utoipa::path(
    get,
    path = "/session/end",
    tag = "openid",
    params(EndSessionQuery),
    responses(
        (status = 303, description = "Signed out (or nothing to sign out): to the post_logout_redirect_uri with state, or to the signed-out page"),
        (status = 200, description = "The confirmation page (HTML)", content_type = "text/html"),
        (status = 400, description = "The request was refused (HTML page; never a redirect)", content_type = "text/html"),
    )
)]
pub async fn end_session_get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query: EndSessionQuery = parse_query(query.as_deref()).unwrap_or_default();
    let request = request_of(
        &query.id_token_hint,
        &query.post_logout_redirect_uri,
        &query.state,
        &query.client_id,
    );
    run(&state, &headers, &request).await
}

/// Sign out (form)
///
/// The parameters of `GET /session/end` as a form (a cross-site post moves
/// to `GET`, which carries the browser's cookies), or the confirmation
/// page's answer with `confirm` and its `csrf_token`.
#[utoipa::path(
    post,
    path = "/session/end",
    tag = "openid",
    request_body(content = EndSessionForm, content_type = "application/x-www-form-urlencoded", description = "The parameters of GET, or the confirmation form (`confirm`, `csrf_token`)"),
    responses(
        (status = 303, description = "Signed out, or the request moved to GET"),
        (status = 200, description = "The confirmation page (HTML)", content_type = "text/html"),
        (status = 400, description = "The request was refused (HTML page)", content_type = "text/html"),
        (status = 403, description = "The confirmation form's CSRF token does not fit this browser (HTML page)", content_type = "text/html"),
    )
)]
pub async fn end_session_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = pairs(&body);
    // The last value of a parameter sent twice, as the GET query reads.
    let params = OAuthParams(pairs.iter().cloned().collect());
    let form: EndSessionForm = params.parse().unwrap_or_default();
    let request = request_of(
        &form.id_token_hint,
        &form.post_logout_redirect_uri,
        &form.state,
        &form.client_id,
    );
    if form.confirm.is_none() {
        // A client's form post: from another site it arrives without
        // `warden_session` (`SameSite=Lax`), so it moves to a GET, which
        // the browser sends with its cookies.
        if cookies::values(&headers, SESSION_COOKIE).next().is_none() {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (k, v) in request.pairs() {
                query.append_pair(k, v);
            }
            return see_other(&format!("/session/end?{}", query.finish()));
        }
        return run(&state, &headers, &request).await;
    }
    if !csrf_ok(&state, &headers, &pairs) {
        return csrf_refused();
    }
    let checked = match checked(&state, &request).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let session = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(e) => return error_page(e),
    };
    if let Some(session) = session
        && let Err(e) = end_session::end_browser_session(
            &state,
            session.id,
            session.user.id,
            checked.client.as_ref().map(|c| c.id),
        )
        .await
    {
        return error_page(e.into());
    }
    signed_out(&state, &checked)
}

/// The checked request, or its error page.
async fn checked(state: &AppState, request: &EndSessionRequest) -> Result<CheckedLogout, Response> {
    match end_session::check(state, request).await {
        Ok(Ok(checked)) => Ok(checked),
        Ok(Err(refused)) => Err(page(
            StatusCode::BAD_REQUEST,
            "Sign-out refused",
            &message_body(&refused.to_string()),
            None,
        )),
        Err(e) => Err(error_page(e.into())),
    }
}

async fn run(state: &AppState, headers: &HeaderMap, request: &EndSessionRequest) -> Response {
    let checked = match checked(state, request).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let session = match session_of(state, headers).await {
        Ok(s) => s,
        Err(e) => return error_page(e),
    };
    let Some(session) = session else {
        // Signed out already: nothing to confirm.
        return signed_out(state, &checked);
    };
    if checked.hinted && checked.hint_sid == Some(session.id) {
        if let Err(e) = end_session::end_browser_session(
            state,
            session.id,
            session.user.id,
            checked.client.as_ref().map(|c| c.id),
        )
        .await
        {
            return error_page(e.into());
        }
        return signed_out(state, &checked);
    }
    let (token, set_cookie) = match csrf_for(state, headers) {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let hidden: String = request
        .pairs()
        .into_iter()
        .map(|(k, v)| {
            format!(
                r#"  <input type="hidden" name="{k}" value="{}">
"#,
                esc(v)
            )
        })
        .collect();
    let client = checked
        .client
        .as_ref()
        .map(|c| format!(" <strong>{}</strong> asks you to sign out.", esc(&c.name)))
        .unwrap_or_default();
    let body = format!(
        r#"<form class="card" method="post" action="/session/end">
  <h2>Sign out of warden?</h2>
  <p class="whoami">Signed in as <strong>{name}</strong>.{client}</p>
  <p>Signing out also signs you out of every app you signed in to with warden in this browser.</p>
  <input type="hidden" name="csrf_token" value="{token}">
  <input type="hidden" name="confirm" value="1">
{hidden}  <div class="actions"><a href="/account">Stay signed in</a> <button type="submit">Sign out</button></div>
</form>
"#,
        name = esc(&session.user.username),
        token = esc(&token),
    );
    // The form's answer 303s to the client's redirect: `form-action`
    // must allow its origin.
    with_cookie(
        page(
            StatusCode::OK,
            "Sign out",
            &body,
            checked.redirect.as_deref(),
        ),
        set_cookie,
    )
}

/// 303 onwards, with the session cookie cleared.
fn signed_out(state: &AppState, checked: &CheckedLogout) -> Response {
    let mut r = see_other(checked.redirect.as_deref().unwrap_or(SIGNED_OUT));
    r.headers_mut()
        .append(header::SET_COOKIE, cleared_session_cookie(state));
    r
}
