//! `grant_type=authorization_code` (RFC 6749 §4.1.3, OAuth 2.1, RFC 7636):
//! an authenticated client exchanges the code `/authorize` gave it, with
//! the PKCE verifier, for a session through it.
//!
//! A code is spent by its first redemption attempt that reaches the store
//! (`OAuthStore::redeem_code`, atomic), whatever the checks after it find:
//! a code is single-use, and one presented with a wrong verifier or by the
//! wrong client is a code someone else has seen. Every failure of a
//! well-formed request is the same `invalid_grant`, which does not say
//! which check failed (unknown, expired, used, another client's, another
//! redirect URI, wrong verifier, user disabled, browser session ended).
//! A second use of a code ends the session its first use opened
//! (RFC 6749 §4.1.2, RFC 9700 §4.5).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::clients::{hash_secret, require_grant};
use crate::auth::error::GrantError;
use crate::auth::id_tokens::{self, IdTokenSession};
use crate::auth::sessions::{
    ClientMeta, PASSWORD_AMR, SessionVia, TokenResponse, open_session_with,
};
use crate::auth::{Error, Result, Services, tokens};
use crate::domain::client::{GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use crate::domain::{
    AuthorizationCodeRecord, ClientRecord, CodeRedemption, SessionRecord, UserRecord,
};

/// The one description of every refused code.
pub const INVALID_CODE: &str = "Invalid, expired or already used authorization code";

/// The parameters of the token request, as the HTTP tier read them.
pub struct CodeRequest<'a> {
    pub code: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

fn invalid_code() -> Error {
    Error::Grant(GrantError::InvalidGrant, INVALID_CODE.to_owned())
}

fn invalid_request(description: &str) -> Error {
    Error::Grant(GrantError::InvalidRequest, description.to_owned())
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6, S256: `BASE64URL(SHA256(verifier)) == challenge`, in
/// constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// Redeems a code for `client` (already authenticated by the caller) and
/// opens its session: an access token naming the client, and a refresh
/// token if the client may use the refresh grant.
///
/// Malformed requests are `invalid_request` and spend nothing: no `code`,
/// no `code_verifier` (every warden code has a PKCE challenge, so OAuth
/// 2.1 §4.1.3 makes the verifier REQUIRED), or a verifier outside RFC
/// 7636's syntax.
pub async fn redeem(
    state: &Services,
    client: &ClientRecord,
    request: &CodeRequest<'_>,
    meta: &ClientMeta,
) -> Result<TokenResponse> {
    require_grant(client, GRANT_AUTHORIZATION_CODE)?;
    let code = match request.code {
        Some(c) if !c.is_empty() => c,
        _ => return Err(invalid_request("Missing required parameter: code")),
    };
    let verifier = match request.code_verifier {
        Some(v) if !v.is_empty() => v,
        _ => return Err(invalid_request("Missing required parameter: code_verifier")),
    };
    if !valid_verifier(verifier) {
        return Err(invalid_request(
            "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636)",
        ));
    }
    let now = tokens::now();
    // The session's id is chosen first: the store records it with the
    // spent code, so a replay can end it.
    let sid = Uuid::now_v7();
    let record = match state
        .store
        .redeem_code(&hash_secret(code), sid, now)
        .await?
    {
        CodeRedemption::Redeemed(record) => record,
        CodeRedemption::Replayed(record) => {
            replayed(state, &record, client, now).await?;
            return Err(invalid_code());
        }
        CodeRedemption::Unknown => return Err(invalid_code()),
    };
    let (user, browser) =
        check(state, client, &record, request.redirect_uri, verifier, now).await?;
    let scope = code_scope(state, client, &user, &record.scope);
    if scope.is_empty() {
        return Err(invalid_code());
    }
    let opened = open_session_with(
        state,
        &user,
        scope,
        meta,
        sid,
        SessionVia::Client {
            client: client.id,
            browser_session: record.browser_session,
            auth_time: record.auth_time,
        },
        now,
    )
    .await?;
    // `None`: the user had a security change since the read above (which
    // also ended the browser session): the code dies with it.
    let Some((mut response, sid)) = opened else {
        return Err(invalid_code());
    };
    // The id token speaks of the browser session: its id is the OpenID
    // `sid`, and how the user signed in there is its `amr`.
    response.id_token = id_tokens::issue(
        state,
        client,
        &user,
        &response.scope,
        &response.access_token,
        &IdTokenSession {
            browser_session: Some(record.browser_session),
            auth_time: record.auth_time,
            amr: browser.amr.as_deref().unwrap_or(PASSWORD_AMR),
            nonce: record.nonce.as_deref(),
        },
    )
    .await?;
    if !client.allows_grant(GRANT_REFRESH_TOKEN) {
        // The session's refresh token is never shown; nothing can use it.
        response.refresh_token = None;
    }
    audit::record(
        state.store.as_ref(),
        Event::new("authorization_code_redeemed")
            .user(user.id)
            .session(sid)
            .ip(meta.ip.as_deref())
            .detail("client_id", client.id.to_string()),
    )
    .await;
    Ok(response)
}

/// What a spent code must still match; the user it was issued to and the
/// browser session it was issued in, if every check passes.
async fn check(
    state: &Services,
    client: &ClientRecord,
    record: &AuthorizationCodeRecord,
    redirect_uri: Option<&str>,
    verifier: &str,
    now: i64,
) -> Result<(UserRecord, SessionRecord)> {
    // Code injection: a code is good only for the client it was issued to.
    if record.client_id != client.id {
        return Err(invalid_code());
    }
    // RFC 6749 §4.1.3: the redirect URI sent to /authorize, identical; one
    // left out there may be left out here, or be the client's only one.
    let redirect_ok = match (&record.redirect_uri, redirect_uri) {
        (Some(sent), Some(presented)) => sent == presented,
        (Some(_), None) => false,
        (None, None) => true,
        (None, Some(presented)) => {
            client.redirect_uris.len() == 1 && client.redirect_uris[0] == presented
        }
    };
    if !redirect_ok {
        return Err(invalid_code());
    }
    if !verifier_matches(verifier, &record.code_challenge) {
        return Err(invalid_code());
    }
    if record.expires_at <= now {
        return Err(invalid_code());
    }
    let user = match state.store.user_by_id(record.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => return Err(invalid_code()),
    };
    // The browser session the user signed in with must still be live: a
    // logout, password change or disable in between ends the code too.
    match state.store.session(record.browser_session).await? {
        Some(s) if s.is_live(now) && s.user_id == user.id && s.browser => Ok((user, s)),
        _ => Err(invalid_code()),
    }
}

/// The code's scopes that the client and the user may still have (a role
/// or registration change in the seconds since `/authorize` narrows it).
fn code_scope(state: &Services, client: &ClientRecord, user: &UserRecord, scope: &str) -> String {
    crate::auth::grants::session_scopes(state, user, scope, Some(client)).join(" ")
}

/// A second use: end the session the first use opened, in the store and
/// in this process's gate, and record it.
async fn replayed(
    state: &Services,
    record: &AuthorizationCodeRecord,
    presenter: &ClientRecord,
    now: i64,
) -> Result<()> {
    let Some(sid) = record.session_id else {
        return Ok(());
    };
    crate::auth::sessions::end_session(state, sid, now).await?;
    audit::record(
        state.store.as_ref(),
        Event::new("authorization_code_replayed")
            .user(record.user_id)
            .session(sid)
            .detail("client_id", record.client_id.to_string())
            .detail("presented_by", presenter.id.to_string()),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_appendix_b_example_verifies() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_verifier(verifier));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(challenge, challenge), "plain is not S256");
        assert!(!verifier_matches(verifier, &challenge[..42]));
    }

    #[test]
    fn verifier_syntax_is_rfc_7636s() {
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"a".repeat(128)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(valid_verifier(&format!("{}-._~", "A0".repeat(20))));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
        assert!(!valid_verifier(&format!("{}=", "a".repeat(43))));
        assert!(!valid_verifier(&format!("{}é", "a".repeat(43))));
    }
}
