//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at
//! `/session/end`: the request's checks and the end of the browser
//! session. The pages and redirects are in `http::routes::end_session`.
//!
//! - `id_token_hint` must be an id token warden issued: its `kid` names one
//!   of warden's own keys, its `alg` is that key's, its `iss` is warden's
//!   and its `typ` is not an access token's. An expired one is accepted
//!   (§2: the RP may send one after it expired). A hint that fails any of
//!   these is refused with an error page: it is not evidence of anything.
//! - `client_id` and the hint's `aud` must agree when both are given.
//! - `post_logout_redirect_uri` must be registered for that client (an
//!   exact match); without a client (no `client_id`, no hint) it is
//!   refused. Refusals are pages, never redirects.
//! - With a valid hint whose `sid` is the current browser session, the
//!   session ends at once; otherwise the user confirms on a page.

use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::{Result, Services, tokens};
use crate::domain::ClientRecord;

/// The parameters of §2 (the hint, the redirect, `state`, `client_id`).
#[derive(Debug, Clone, Default)]
pub struct EndSessionRequest {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
}

impl EndSessionRequest {
    /// From query or form pairs; empty values count as absent.
    pub fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = Self::default();
        for (k, v) in pairs {
            let v = (!v.is_empty()).then(|| v.to_owned());
            match k {
                "id_token_hint" => r.id_token_hint = v,
                "post_logout_redirect_uri" => r.post_logout_redirect_uri = v,
                "state" => r.state = v,
                "client_id" => r.client_id = v,
                _ => {}
            }
        }
        r
    }

    /// The parameters as pairs, to carry through the confirmation form.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("id_token_hint", &self.id_token_hint),
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
            ("state", &self.state),
            ("client_id", &self.client_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// Why a logout request is refused (shown on a page, never redirected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndSessionError {
    #[error("The id_token_hint is not an ID token issued by this server.")]
    InvalidHint,
    #[error("The client_id does not match the ID token's audience.")]
    ClientMismatch,
    #[error("The client_id does not name a registered client.")]
    UnknownClient,
    #[error("A post_logout_redirect_uri needs the client: send client_id or id_token_hint.")]
    RedirectWithoutClient,
    #[error("The post_logout_redirect_uri is not registered for this client.")]
    UnregisteredRedirect,
}

/// A request that passed the checks.
#[derive(Debug, Clone)]
pub struct CheckedLogout {
    pub client: Option<ClientRecord>,
    /// The hint's `sid` (the browser session it was issued in).
    pub hint_sid: Option<Uuid>,
    /// Whether a valid hint came with the request.
    pub hinted: bool,
    /// Where to send the browser afterwards: the registered
    /// `post_logout_redirect_uri` with `state` added, if one was given.
    pub redirect: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn single(&self) -> Option<&str> {
        match self {
            Audience::One(a) => Some(a),
            Audience::Many(list) if list.len() == 1 => Some(&list[0]),
            Audience::Many(_) => None,
        }
    }
}

#[derive(Deserialize)]
struct HintClaims {
    aud: Audience,
    #[serde(default)]
    sid: Option<String>,
}

/// The verified hint's audience and `sid`.
struct Hint {
    client: Option<String>,
    sid: Option<Uuid>,
}

fn verify_hint(state: &Services, token: &str) -> Option<Hint> {
    let header = decode_header(token).ok()?;
    if header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
    {
        return None;
    }
    let kid = header.kid?;
    let ring = state.tokens.keys();
    // Only warden's own keys, and only with their own algorithm: the
    // token's header never chooses how it is checked.
    let key = ring.find(&kid)?;
    if header.alg != key.algorithm {
        return None;
    }
    let mut validation = Validation::new(key.algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = ["iss", "sub", "aud"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    validation.set_issuer(&[state.tokens.issuer()]);
    let claims = decode::<HintClaims>(token, &key.decoding, &validation)
        .ok()?
        .claims;
    Some(Hint {
        client: claims.aud.single().map(str::to_owned),
        sid: claims.sid.and_then(|s| Uuid::parse_str(&s).ok()),
    })
}

/// Checks `request` (see the module documentation).
pub async fn check(
    state: &Services,
    request: &EndSessionRequest,
) -> Result<std::result::Result<CheckedLogout, EndSessionError>> {
    let hint = match &request.id_token_hint {
        Some(token) => match verify_hint(state, token) {
            Some(hint) => Some(hint),
            None => return Ok(Err(EndSessionError::InvalidHint)),
        },
        None => None,
    };
    let hint_client = hint.as_ref().and_then(|h| h.client.clone());
    if let (Some(given), Some(aud)) = (&request.client_id, &hint_client)
        && given != aud
    {
        return Ok(Err(EndSessionError::ClientMismatch));
    }
    let client_id = request.client_id.clone().or(hint_client);
    let client = match &client_id {
        Some(id) => {
            let found = match Uuid::parse_str(id) {
                Ok(id) => state.store.client(id).await?,
                Err(_) => None,
            };
            match found {
                Some(client) => Some(client),
                None => return Ok(Err(EndSessionError::UnknownClient)),
            }
        }
        None => None,
    };
    let redirect = match &request.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            let Some(client) = &client else {
                return Ok(Err(EndSessionError::RedirectWithoutClient));
            };
            if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
                return Ok(Err(EndSessionError::UnregisteredRedirect));
            }
            Some(with_state(uri, request.state.as_deref()))
        }
    };
    Ok(Ok(CheckedLogout {
        client,
        hinted: hint.is_some(),
        hint_sid: hint.and_then(|h| h.sid),
        redirect,
    }))
}

/// `uri` with `state` appended to its query (§3), if there is one.
fn with_state(uri: &str, state: Option<&str>) -> String {
    let Some(state) = state else {
        return uri.to_owned();
    };
    match url::Url::parse(uri) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("state", state);
            url.into()
        }
        Err(_) => uri.to_owned(),
    }
}

/// Ends the browser session `session` of `user` (and with it every
/// session opened from it, whose clients are sent logout tokens).
pub async fn end_browser_session(
    state: &Services,
    session: Uuid,
    user: Uuid,
    client: Option<Uuid>,
) -> Result<bool> {
    let now = tokens::now();
    let ended = crate::auth::sessions::end_session(state, session, now).await?;
    let mut event = Event::new("logout")
        .user(user)
        .session(session)
        .detail("via", "end_session");
    if let Some(client) = client {
        event = event.detail("client_id", client.to_string());
    }
    audit::record(state.store.as_ref(), event).await;
    Ok(ended)
}
