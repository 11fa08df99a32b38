//! The authorization endpoint (RFC 6749 §4.1.1, OAuth 2.1, RFC 9700,
//! RFC 9207): the one place its rules are written. The HTTP tier reads the
//! request's parameters and the browser session, calls [`authorize`], and
//! turns the [`Step`] into a page or a redirect.
//!
//! The checks run in RFC 6749 §4.1.2.1's order. First the two that decide
//! whether the redirect URI can be trusted — the client must exist and the
//! redirect URI must be one it registered (or omitted when it registered
//! exactly one) — and a failure there is a page of warden's own, never a
//! redirect (RFC 9700 §4.1: an unverified redirect URI is an open
//! redirector). Every later failure is a redirect to that verified URI
//! with `error`, `error_description`, `state` and `iss`:
//!
//! 1. a parameter given twice: `invalid_request` (RFC 6749 §3.1);
//! 2. `response_type` other than `code`: `unsupported_response_type`
//!    (missing: `invalid_request`);
//! 3. a client not registered for `authorization_code`:
//!    `unauthorized_client`;
//! 4. PKCE: `code_challenge` and `code_challenge_method=S256` are required
//!    of every client; `plain`, no method (which RFC 7636 reads as
//!    `plain`) and a challenge that is not 43 base64url characters are
//!    `invalid_request`;
//! 5. `prompt`, `max_age` or `nonce` malformed: `invalid_request`;
//! 6. a requested scope outside the client's `scopes`: `invalid_scope`;
//! 7. no live browser session, `prompt=login`, or a sign-in older than
//!    `max_age`: the login page (with `prompt=none`: `login_required`);
//! 8. the granted scopes — requested ∩ client's ∩ (user's ∪ the OpenID
//!    scopes), or client's ∩ user's when no scope was requested — empty:
//!    `invalid_scope`;
//! 9. consent (below) missing: the consent page (with `prompt=none`:
//!    `consent_required`); denied: `access_denied`;
//! 10. success: a code, and a redirect with `code`, `state` and `iss`.
//!
//! Consent is skipped for a `first_party` client, or when the user's
//! remembered consent for the client covers every granted scope — but only
//! when the client may skip it at all (RFC 8252 §8.6: a public client with
//! a loopback or custom-scheme redirect URI can be impersonated by any app
//! on the device, so its user always confirms), and never with
//! `prompt=consent`. Allowing remembers the granted scopes (added to what
//! was remembered before).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::auth::audit::{self, Event};
use crate::auth::browser::BrowserSession;
use crate::auth::error::RandomError;
use crate::auth::{Result, Services, tokens};
use crate::domain::client::GRANT_AUTHORIZATION_CODE;
use crate::domain::roles::is_openid_scope;
use crate::domain::{AuthorizationCodeRecord, ClientRecord, ConsentRecord};

/// The parameters `/authorize` reads; anything else is ignored (RFC 6749
/// §3.1).
pub const PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
    "max_age",
    "login_hint",
];

/// The longest `nonce` and `state` accepted: they travel in URLs.
const MAX_ECHOED_LEN: usize = 1024;

/// An authorization request as sent: each parameter's first value, and
/// which one (if any) was sent more than once.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationRequest {
    values: Vec<(&'static str, String)>,
    duplicated: Option<&'static str>,
}

impl AuthorizationRequest {
    /// From the decoded pairs of the query string or form body.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut request = Self::default();
        for (name, value) in pairs {
            let Some(&known) = PARAMETERS.iter().find(|p| **p == name) else {
                continue;
            };
            if request.get(known).is_some() {
                request.duplicated.get_or_insert(known);
                continue;
            }
            request.values.push((known, value.to_owned()));
        }
        request
    }

    /// A parameter's value; an empty one counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The request as a query string (`a=b&c=d`), for the login page's way
    /// back and the consent form: only the parameters above.
    pub fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.values {
            s.append_pair(name, value);
        }
        s.finish()
    }

    /// The request as it returns from a sign-in: the same, without what
    /// asked for that sign-in (`prompt=login`, `max_age`), which the new
    /// sign-in has satisfied — otherwise the request would send the user
    /// to the login page again, for ever. (Dropping them gives nobody
    /// anything: whoever writes the URL can leave them out anyway; the
    /// code's `auth_time` is what a client checks.)
    pub fn after_sign_in(&self) -> Self {
        let mut values = Vec::with_capacity(self.values.len());
        for (name, value) in &self.values {
            match *name {
                "max_age" => {}
                "prompt" => {
                    let rest: Vec<&str> = value.split(' ').filter(|p| *p != "login").collect();
                    if !rest.iter().all(|p| p.is_empty()) {
                        values.push((*name, rest.join(" ")));
                    }
                }
                _ => values.push((*name, value.clone())),
            }
        }
        Self {
            values,
            duplicated: self.duplicated,
        }
    }
}

/// What the browser should see next.
#[derive(Debug, Clone)]
pub enum Step {
    /// The client or its redirect URI cannot be trusted: warden's own 400
    /// page with this message, and no redirect.
    BadRequest(String),
    /// 303 to the client: an error response or the code.
    Redirect(String),
    /// 303 to the login page, which comes back to this request.
    Login {
        /// The verified redirect URI (the pages' CSP allows forms to lead
        /// there).
        redirect_uri: String,
        login_hint: Option<String>,
    },
    /// The consent page.
    Consent(ConsentPrompt),
}

/// What the consent page shows.
#[derive(Debug, Clone)]
pub struct ConsentPrompt {
    pub client_name: String,
    pub redirect_uri: String,
    /// The scopes the client will get if the user allows.
    pub scopes: Vec<String>,
    pub username: String,
}

/// The user's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// An error response to the verified redirect URI.
struct Refusal<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
}

impl Refusal<'_> {
    fn step(&self, error: &str, description: &str) -> Step {
        Step::Redirect(redirect_to(
            self.redirect_uri,
            &[("error", error), ("error_description", description)],
            self.state,
            self.issuer,
        ))
    }
}

/// `redirect_uri` with `pairs`, `state` (exactly as sent) and `iss` added
/// to its query; the URI's own query stays (RFC 6749 §3.1.2).
fn redirect_to(
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
    iss: &str,
) -> String {
    // Registered URIs were parsed at registration; a presented loopback
    // variant was parsed by the match.
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", iss);
    }
    url.into()
}

/// A code challenge of S256: the base64url SHA-256 of the verifier, 43
/// characters without padding (RFC 7636 §4.2).
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `prompt` values warden knows.
#[derive(Debug, Default, Clone, Copy)]
struct Prompt {
    none: bool,
    login: bool,
    consent: bool,
}

fn parse_prompt(value: Option<&str>) -> std::result::Result<Prompt, String> {
    let mut prompt = Prompt::default();
    let Some(value) = value else {
        return Ok(prompt);
    };
    for p in value.split(' ').filter(|p| !p.is_empty()) {
        match p {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            other => return Err(format!("Unsupported prompt value: {other}")),
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err("prompt=none cannot be combined with other values".to_owned());
    }
    Ok(prompt)
}

/// The first two checks: the client exists and the redirect URI is one it
/// registered (or omitted when it registered exactly one). `Err`: the
/// message of the 400 page.
async fn verify_client(
    state: &Services,
    request: &AuthorizationRequest,
) -> Result<std::result::Result<(ClientRecord, String), String>> {
    if let Some(name @ ("client_id" | "redirect_uri")) = request.duplicated {
        return Ok(Err(format!(
            "The parameter {name} was sent more than once."
        )));
    }
    let Some(client_id) = request.get("client_id") else {
        return Ok(Err(
            "The request names no application (client_id is missing).".to_owned(),
        ));
    };
    let client = match Uuid::try_parse(client_id) {
        Ok(id) => state.store.client(id).await?,
        Err(_) => None,
    };
    let Some(client) = client else {
        return Ok(Err(
            "The application that sent you here is not registered with warden.".to_owned(),
        ));
    };
    let redirect_uri = match request.get("redirect_uri") {
        Some(presented) => match client.registered_redirect_uri(presented) {
            // The presented text: a loopback URI's port is the app's.
            Some(_) => presented.to_owned(),
            None => {
                return Ok(Err("The redirect_uri is not one the application registered, so warden will not send you there.".to_owned()));
            }
        },
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Ok(Err("The request has no redirect_uri, and the application did not register exactly one.".to_owned()));
        }
    };
    Ok(Ok((client, redirect_uri)))
}

/// The redirect URI a request would be answered at, once verified (the
/// login page lets its form lead there); `None` when it cannot be.
pub async fn verified_redirect_uri(
    state: &Services,
    request: &AuthorizationRequest,
) -> Result<Option<String>> {
    Ok(verify_client(state, request)
        .await?
        .ok()
        .map(|(_, uri)| uri))
}

/// Runs an authorization request for the browser whose session (if any)
/// is `session`. `decision` is the consent page's answer (`None` for the
/// request itself).
pub async fn authorize(
    state: &Services,
    request: &AuthorizationRequest,
    session: Option<&BrowserSession>,
    decision: Option<Decision>,
) -> Result<Step> {
    // --- The client and the redirect URI: no redirect until both hold.
    let (client, redirect_uri) = match verify_client(state, request).await? {
        Ok(verified) => verified,
        Err(message) => return Ok(Step::BadRequest(message)),
    };
    let sent_redirect_uri = request.get("redirect_uri");
    let issuer = state.tokens.issuer();
    let refusal = Refusal {
        redirect_uri: &redirect_uri,
        state: request.get("state"),
        issuer,
    };

    // --- Everything else is an error response to the client.
    if let Some(name) = request.duplicated {
        return Ok(refusal.step(
            "invalid_request",
            &format!("The parameter {name} was sent more than once"),
        ));
    }
    match request.get("response_type") {
        Some("code") => {}
        None => {
            return Ok(refusal.step(
                "invalid_request",
                "Missing required parameter: response_type",
            ));
        }
        Some(other) => {
            return Ok(refusal.step(
                "unsupported_response_type",
                &format!("Unsupported response_type: {other}; warden supports only code"),
            ));
        }
    }
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return Ok(refusal.step(
            "unauthorized_client",
            "The client is not registered for the authorization_code grant",
        ));
    }
    let Some(challenge) = request.get("code_challenge") else {
        return Ok(refusal.step(
            "invalid_request",
            "code_challenge is required (PKCE with S256)",
        ));
    };
    match request.get("code_challenge_method") {
        Some("S256") => {}
        None => {
            return Ok(refusal.step(
                "invalid_request",
                "code_challenge_method=S256 is required (without it the method would be plain)",
            ));
        }
        Some(other) => {
            return Ok(refusal.step(
                "invalid_request",
                &format!("Unsupported code_challenge_method: {other}; only S256 is accepted"),
            ));
        }
    }
    if !is_s256_challenge(challenge) {
        return Ok(refusal.step(
            "invalid_request",
            "code_challenge must be 43 base64url characters (the SHA-256 of the verifier)",
        ));
    }
    if request
        .get("state")
        .is_some_and(|s| s.len() > MAX_ECHOED_LEN)
    {
        return Ok(refusal.step("invalid_request", "state is longer than 1024 bytes"));
    }
    let nonce = request.get("nonce");
    if nonce.is_some_and(|n| n.len() > MAX_ECHOED_LEN) {
        return Ok(refusal.step("invalid_request", "nonce is longer than 1024 bytes"));
    }
    let prompt = match parse_prompt(request.get("prompt")) {
        Ok(p) => p,
        Err(message) => return Ok(refusal.step("invalid_request", &message)),
    };
    let max_age = match request.get("max_age").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Ok(refusal.step(
                "invalid_request",
                "max_age must be a whole number of seconds",
            ));
        }
    };
    let requested: Option<BTreeSet<&str>> = request
        .get("scope")
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .collect::<BTreeSet<_>>()
        })
        .filter(|s| !s.is_empty());
    if let Some(wanted) = &requested
        && let Some(outside) = wanted
            .iter()
            .find(|w| !client.scopes.iter().any(|c| c == *w))
    {
        return Ok(refusal.step(
            "invalid_scope",
            &format!("The client may not ask for the scope {outside}"),
        ));
    }

    // --- Who is signed in.
    let now = tokens::now();
    let fresh = session.filter(|s| {
        !prompt.login
            && max_age.is_none_or(|max| {
                now.saturating_sub(s.auth_time) <= i64::try_from(max).unwrap_or(i64::MAX)
            })
    });
    let Some(session) = fresh else {
        if prompt.none {
            return Ok(refusal.step("login_required", "The user is not signed in"));
        }
        return Ok(Step::Login {
            redirect_uri,
            login_hint: request.get("login_hint").map(str::to_owned),
        });
    };
    let user = &session.user;
    let scopes = granted_scopes(state, &client, user, requested.as_ref());
    if scopes.is_empty() {
        return Ok(refusal.step(
            "invalid_scope",
            "None of the requested scopes can be granted to this user through this client",
        ));
    }

    // --- Consent.
    match decision {
        Some(Decision::Deny) => {
            audit::record(
                state.store.as_ref(),
                Event::new("consent_denied")
                    .user(user.id)
                    .session(session.id)
                    .detail("client_id", client.id.to_string()),
            )
            .await;
            return Ok(refusal.step("access_denied", "The user denied the request"));
        }
        Some(Decision::Allow) => remember_consent(state, &client, session, &scopes, now).await?,
        None => {
            if !consent_covers(state, &client, user.id, &scopes, prompt).await? {
                if prompt.none {
                    return Ok(refusal.step(
                        "consent_required",
                        "The user has not consented to this client's scopes",
                    ));
                }
                return Ok(Step::Consent(ConsentPrompt {
                    client_name: client.name.clone(),
                    redirect_uri,
                    scopes,
                    username: user.username.clone(),
                }));
            }
        }
    }

    // --- The code.
    let code = new_code()?;
    let ttl = state.config.clients.authorization_code_ttl as i64;
    let scope = scopes.join(" ");
    state
        .store
        .insert_code(&AuthorizationCodeRecord {
            hash: crate::auth::clients::hash_secret(&code).to_vec(),
            client_id: client.id,
            user_id: user.id,
            browser_session: session.id,
            redirect_uri: sent_redirect_uri.map(str::to_owned),
            code_challenge: challenge.to_owned(),
            scope: scope.clone(),
            nonce: nonce.map(str::to_owned),
            auth_time: session.auth_time,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            used_at: None,
            session_id: None,
        })
        .await?;
    audit::record(
        state.store.as_ref(),
        Event::new("authorization_code_issued")
            .user(user.id)
            .session(session.id)
            .detail("client_id", client.id.to_string())
            .detail("scope", scope),
    )
    .await;
    Ok(Step::Redirect(redirect_to(
        &redirect_uri,
        &[("code", &code)],
        request.get("state"),
        issuer,
    )))
}

/// requested ∩ client's ∩ (user's ∪ OpenID scopes); with nothing
/// requested, client's ∩ user's. In the client's order.
fn granted_scopes(
    state: &Services,
    client: &ClientRecord,
    user: &crate::domain::UserRecord,
    requested: Option<&BTreeSet<&str>>,
) -> Vec<String> {
    let own = state.config.roles.scopes_of(&user.roles);
    client
        .scopes
        .iter()
        .filter(|s| match requested {
            Some(wanted) => {
                wanted.contains(s.as_str()) && (own.contains(s.as_str()) || is_openid_scope(s))
            }
            None => own.contains(s.as_str()),
        })
        .cloned()
        .collect()
}

/// Whether the consent page may be skipped.
async fn consent_covers(
    state: &Services,
    client: &ClientRecord,
    user: Uuid,
    scopes: &[String],
    prompt: Prompt,
) -> Result<bool> {
    if prompt.consent || !client.may_skip_consent() {
        return Ok(false);
    }
    if client.first_party {
        return Ok(true);
    }
    Ok(state
        .store
        .consent(user, client.id)
        .await?
        .is_some_and(|c| scopes.iter().all(|s| c.scopes.contains(s))))
}

/// Remembers that the user allowed `scopes` for the client, added to what
/// they allowed before.
async fn remember_consent(
    state: &Services,
    client: &ClientRecord,
    session: &BrowserSession,
    scopes: &[String],
    now: i64,
) -> Result<()> {
    let mut all: Vec<String> = state
        .store
        .consent(session.user.id, client.id)
        .await?
        .map(|c| c.scopes)
        .unwrap_or_default();
    for s in scopes {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    state
        .store
        .put_consent(&ConsentRecord {
            user_id: session.user.id,
            client_id: client.id,
            scopes: all,
            granted_at: now,
        })
        .await?;
    audit::record(
        state.store.as_ref(),
        Event::new("consent_granted")
            .user(session.user.id)
            .session(session.id)
            .detail("client_id", client.id.to_string())
            .detail("scope", scopes.join(" ")),
    )
    .await;
    Ok(())
}

/// A new authorization code: 256 random bits, base64url (43 characters).
fn new_code() -> std::result::Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_noticed_and_unknown_parameters_dropped() {
        let r = AuthorizationRequest::from_pairs([
            ("client_id", "a"),
            ("foo", "bar"),
            ("scope", "x"),
            ("scope", "y"),
        ]);
        assert_eq!(r.get("client_id"), Some("a"));
        assert_eq!(r.get("scope"), Some("x"));
        assert_eq!(r.duplicated, Some("scope"));
        assert_eq!(r.to_query(), "client_id=a&scope=x");
    }

    #[test]
    fn after_sign_in_drops_login_and_max_age_only() {
        let r = AuthorizationRequest::from_pairs([
            ("client_id", "a"),
            ("prompt", "login consent"),
            ("max_age", "0"),
            ("state", "s&t"),
        ]);
        assert_eq!(
            r.after_sign_in().to_query(),
            "client_id=a&prompt=consent&state=s%26t"
        );
        let r = AuthorizationRequest::from_pairs([("prompt", "login")]);
        assert_eq!(r.after_sign_in().to_query(), "");
    }

    #[test]
    fn state_is_appended_encoded_and_the_uris_query_kept() {
        let to = redirect_to(
            "https://app.example.com/cb?tenant=a",
            &[("code", "c")],
            Some("a b&c=d/é"),
            "http://127.0.0.1:8000",
        );
        let url = url::Url::parse(&to).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("tenant".into(), "a".into()),
                ("code".into(), "c".into()),
                ("state".into(), "a b&c=d/é".into()),
                ("iss".into(), "http://127.0.0.1:8000".into()),
            ]
        );
    }

    #[test]
    fn only_s256_challenges_of_43_base64url_characters_pass() {
        assert!(is_s256_challenge(&"a".repeat(43)));
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge(&"a".repeat(42)));
        assert!(!is_s256_challenge(&"a".repeat(44)));
        assert!(!is_s256_challenge(&format!("{}=", "a".repeat(42))));
        assert!(!is_s256_challenge(&format!("{}+", "a".repeat(42))));
    }

    #[test]
    fn prompt_none_stands_alone_and_unknown_values_are_refused() {
        assert!(parse_prompt(Some("none")).unwrap().none);
        assert!(parse_prompt(Some("login consent")).is_ok());
        assert!(parse_prompt(Some("none login")).is_err());
        assert!(parse_prompt(Some("select_account")).is_err());
    }
}
