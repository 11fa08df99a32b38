//! OAuth clients' redirect URIs: which ones may be registered, and when a
//! URI presented at `/authorize` is the registered one.
//!
//! The rules are the contract's (RFC 9700 §2.1, RFC 8252 §7): a presented
//! URI must equal a registered one character for character — no
//! normalisation, no prefix or pattern matching, since every such leniency
//! has been an open redirect somewhere. The one exception is RFC 8252 §7.3:
//! a native app listens on a loopback port the OS picks at run time, so a
//! registered `http://127.0.0.1/...` or `http://[::1]/...` matches that URI
//! on any port, and only that.
//!
//! This is the first piece of the authorization server (issue 17): the
//! registry, `/authorize` and the CLI will all validate and match through
//! these two functions, so the rule is written once.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};
use uuid::Uuid;

/// The longest redirect URI accepted (a browser's practical URL limit is
/// far above it; a longer one is a mistake or an attack on storage).
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// Why a redirect URI cannot be registered. Each names the rule it breaks,
/// so the 422 says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectUriError {
    TooLong,
    NotAbsolute,
    Fragment,
    Wildcard,
    UserInfo,
    /// `http` other than to a loopback IP literal.
    PlainHttp,
    /// A custom scheme (`com.example.app:/cb`) on a confidential client.
    CustomSchemeNeedsPublicClient,
    /// A custom scheme that is not a reverse domain name (RFC 8252 §7.1),
    /// which also keeps out `javascript:`, `data:` and `file:`.
    CustomSchemeNotReverseDomain,
    /// `https` without a host.
    NoHost,
}

impl fmt::Display for RedirectUriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "redirect URI is longer than 2000 characters",
            Self::NotAbsolute => "redirect URI must be an absolute URI",
            Self::Fragment => "redirect URI must not contain a fragment (#)",
            Self::Wildcard => "redirect URI must not contain wildcards (*); register each URI",
            Self::UserInfo => "redirect URI must not contain a user name or password",
            Self::PlainHttp => {
                "redirect URI must use https, except http://127.0.0.1 or http://[::1] (any port)"
            }
            Self::CustomSchemeNeedsPublicClient => {
                "custom-scheme redirect URIs are allowed only for public clients"
            }
            Self::CustomSchemeNotReverseDomain => {
                "a custom scheme must be a reverse domain name such as com.example.app"
            }
            Self::NoHost => "an https redirect URI must name a host",
        })
    }
}

impl std::error::Error for RedirectUriError {}

/// Checks that `uri` may be registered for a client (`public`: has no
/// secret). Returns it unchanged: what is stored is exactly what was
/// registered, and matching compares against that text.
pub fn validate_redirect_uri(uri: &str, public: bool) -> Result<&str, RedirectUriError> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(RedirectUriError::TooLong);
    }
    if uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if uri.contains('*') {
        return Err(RedirectUriError::Wildcard);
    }
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUriError::UserInfo);
    }
    match url.scheme() {
        "https" => {
            if url.host().is_none() {
                return Err(RedirectUriError::NoHost);
            }
        }
        "http" => {
            if loopback_ip(&url).is_none() {
                return Err(RedirectUriError::PlainHttp);
            }
        }
        scheme => {
            if !scheme.contains('.') {
                return Err(RedirectUriError::CustomSchemeNotReverseDomain);
            }
            if !public {
                return Err(RedirectUriError::CustomSchemeNeedsPublicClient);
            }
        }
    }
    Ok(uri)
}

/// Whether `presented` (from an authorization request) is the registered
/// redirect URI `registered`: the same text, or — for a registered
/// `http` loopback IP literal — the same URI on another port.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let Ok(reg) = Url::parse(registered) else {
        return false;
    };
    let Some(reg_ip) = (reg.scheme() == "http")
        .then(|| loopback_ip(&reg))
        .flatten()
    else {
        return false;
    };
    // The presented URI must be the registered one with only the port
    // changed: compare the text after the port, and the text before it.
    if presented.len() > MAX_REDIRECT_URI_LEN || presented.contains('#') {
        return false;
    }
    let Ok(pre) = Url::parse(presented) else {
        return false;
    };
    if pre.scheme() != "http"
        || !pre.username().is_empty()
        || pre.password().is_some()
        || loopback_ip(&pre) != Some(reg_ip)
    {
        return false;
    }
    // Exact text of path and query as written (the parser would have
    // normalised `/a/../b`; the registered text did not).
    let (Some(reg_rest), Some(pre_rest)) =
        (after_authority(registered), after_authority(presented))
    else {
        return false;
    };
    let (Some(reg_host), Some(pre_host)) = (authority_host(registered), authority_host(presented))
    else {
        return false;
    };
    reg_rest == pre_rest && reg_host == pre_host
}

/// The loopback IP literal of an `http` URL's host (RFC 8252 §7.3 names
/// `127.0.0.1` and `[::1]`; `localhost` is left out, as §8.3 advises,
/// since it may resolve elsewhere).
fn loopback_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) if ip.is_loopback() => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) if ip.is_loopback() => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// `http://HOST[:PORT]REST` → `REST` (path and query, as written).
fn after_authority(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[end..])
}

/// `http://HOST[:PORT]REST` → `HOST` (without the port, as written).
fn authority_host(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']')?;
        return Some(&authority[..close + 2]);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// The grant types a client may be registered for.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const CLIENT_GRANT_TYPES: &[&str] = &[
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
];

/// The algorithms an id token may be signed with (OpenID Connect's
/// mandatory `RS256` is the default).
pub const ID_TOKEN_ALGORITHMS: &[&str] = &["RS256", "ES256", "EdDSA"];
pub const DEFAULT_ID_TOKEN_ALGORITHM: &str = "RS256";

/// The longest client name accepted.
pub const MAX_CLIENT_NAME_LEN: usize = 100;
/// The most redirect URIs (and, separately, post-logout redirect URIs) one
/// client may register.
pub const MAX_REDIRECT_URIS: usize = 20;

/// A registered OAuth client, as stored. `secret_hash` is SHA-256 of the
/// secret (which has 256 random bits, so a fast hash is enough: there is
/// nothing to guess); public clients have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The `client_id`.
    pub id: Uuid,
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    pub secret_hash: Option<Vec<u8>>,
    pub secret_created_at: Option<i64>,
    /// Exactly as registered; matched by [`redirect_uri_matches`].
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// A subset of [`CLIENT_GRANT_TYPES`].
    pub grant_types: Vec<String>,
    /// The most a token through this client may carry.
    pub scopes: Vec<String>,
    pub id_token_signed_response_alg: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ClientRecord {
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// The registered redirect URI that `presented` matches, if any.
    pub fn registered_redirect_uri(&self, presented: &str) -> Option<&str> {
        self.redirect_uris
            .iter()
            .find(|r| redirect_uri_matches(r, presented))
            .map(String::as_str)
    }

    /// RFC 8252 §8.6: whether a remembered consent (or `first_party`) may
    /// skip the consent screen. Anyone can claim a public client's
    /// loopback or custom-scheme redirect URI on their own machine, so for
    /// those clients the user always confirms.
    pub fn may_skip_consent(&self) -> bool {
        !self.public
            || self
                .redirect_uris
                .iter()
                .all(|uri| uri.starts_with("https://"))
    }
}

/// What registering or updating a client may get wrong: the field (its
/// JSON name, and the index within a list) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFieldError {
    pub field: &'static str,
    pub index: Option<usize>,
    pub message: String,
}

impl fmt::Display for ClientFieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for ClientFieldError {}

fn field_error(
    field: &'static str,
    index: Option<usize>,
    message: impl Into<String>,
) -> ClientFieldError {
    ClientFieldError {
        field,
        index,
        message: message.into(),
    }
}

/// Checks a client's registration as a whole — the rules that tie its
/// fields together as well as each field's own — so that a create and a
/// partial update are held to the same rules. `known_scope` says whether
/// a scope exists (some role grants it, or it is an OpenID scope).
pub fn validate_client(
    client: &ClientRecord,
    known_scope: impl Fn(&str) -> bool,
) -> Result<(), ClientFieldError> {
    let name = client.name.trim();
    if name.is_empty() || client.name.chars().count() > MAX_CLIENT_NAME_LEN {
        return Err(field_error("name", None, "must be 1 to 100 characters"));
    }
    if client.name.chars().any(char::is_control) {
        return Err(field_error(
            "name",
            None,
            "must not contain control characters",
        ));
    }
    if client.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(field_error(
            "redirect_uris",
            None,
            "at most 20 redirect URIs",
        ));
    }
    for (i, uri) in client.redirect_uris.iter().enumerate() {
        validate_redirect_uri(uri, client.public)
            .map_err(|e| field_error("redirect_uris", Some(i), e.to_string()))?;
    }
    if client.post_logout_redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(field_error(
            "post_logout_redirect_uris",
            None,
            "at most 20 redirect URIs",
        ));
    }
    for (i, uri) in client.post_logout_redirect_uris.iter().enumerate() {
        validate_redirect_uri(uri, client.public)
            .map_err(|e| field_error("post_logout_redirect_uris", Some(i), e.to_string()))?;
    }
    if let Some(uri) = &client.backchannel_logout_uri {
        // Warden posts logout tokens there itself: an https URL (or a
        // loopback one), never a custom scheme.
        validate_redirect_uri(uri, false)
            .map_err(|e| field_error("backchannel_logout_uri", None, e.to_string()))?;
    }
    if client.grant_types.is_empty() {
        return Err(field_error("grant_types", None, "at least one grant type"));
    }
    for (i, grant) in client.grant_types.iter().enumerate() {
        if !CLIENT_GRANT_TYPES.contains(&grant.as_str()) {
            return Err(field_error(
                "grant_types",
                Some(i),
                "must be authorization_code, refresh_token or client_credentials",
            ));
        }
    }
    if client.allows_grant(GRANT_CLIENT_CREDENTIALS) && client.public {
        return Err(field_error(
            "grant_types",
            None,
            "client_credentials needs a confidential client (public clients have no secret)",
        ));
    }
    if client.allows_grant(GRANT_AUTHORIZATION_CODE) && client.redirect_uris.is_empty() {
        return Err(field_error(
            "redirect_uris",
            None,
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    for (i, scope) in client.scopes.iter().enumerate() {
        if !known_scope(scope) {
            return Err(field_error(
                "scopes",
                Some(i),
                format!("no role grants the scope {scope:?}, and it is not an OpenID scope"),
            ));
        }
    }
    if !ID_TOKEN_ALGORITHMS.contains(&client.id_token_signed_response_alg.as_str()) {
        return Err(field_error(
            "id_token_signed_response_alg",
            None,
            "must be RS256, ES256 or EdDSA",
        ));
    }
    Ok(())
}

/// Remembered consent: the scopes a user granted a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub user_id: Uuid,
    pub client_id: Uuid,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}

/// An authorization code as stored: the hash of the code and everything
/// the token endpoint must check it against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    /// SHA-256 of the code.
    pub hash: Vec<u8>,
    pub client_id: Uuid,
    pub user_id: Uuid,
    /// The browser session (`warden_session`) the code was issued in.
    pub browser_session: Uuid,
    /// As sent to `/authorize`; `None` when it was omitted.
    pub redirect_uri: Option<String>,
    /// The PKCE S256 challenge (base64url of SHA-256 of the verifier).
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The session the first redemption opened.
    pub session_id: Option<Uuid>,
}

/// What redeeming a code found; decided atomically by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the code is now spent and names the session to open.
    Redeemed(AuthorizationCodeRecord),
    /// Used before: the record as the first use left it (its
    /// `session_id` is the session to end).
    Replayed(AuthorizationCodeRecord),
    /// No such code, or expired.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_loopback_http_and_reverse_domain_schemes_can_be_registered() {
        for (uri, public) in [
            ("https://grades.example.com/cb", false),
            ("https://grades.example.com/cb?tenant=a", false),
            ("http://127.0.0.1/callback", true),
            ("http://127.0.0.1:8400/callback", false),
            ("http://[::1]/callback", true),
            ("com.example.app:/oauth2redirect", true),
        ] {
            assert_eq!(validate_redirect_uri(uri, public), Ok(uri), "{uri}");
        }
    }

    #[test]
    fn each_refused_uri_names_its_rule() {
        use RedirectUriError::*;
        for (uri, public, error) in [
            ("https://grades.example.com/cb#x", false, Fragment),
            ("https://*.example.com/cb", false, Wildcard),
            ("https://grades.example.com/*", false, Wildcard),
            ("https://user:pw@grades.example.com/cb", false, UserInfo),
            ("http://grades.example.com/cb", false, PlainHttp),
            ("http://localhost/cb", true, PlainHttp),
            ("http://10.0.0.1/cb", true, PlainHttp),
            ("com.example.app:/cb", false, CustomSchemeNeedsPublicClient),
            ("javascript:alert(1)", true, CustomSchemeNotReverseDomain),
            ("data:text/html,hi", true, CustomSchemeNotReverseDomain),
            ("file:///etc/passwd", true, CustomSchemeNotReverseDomain),
            ("/cb", true, NotAbsolute),
            ("grades.example.com/cb", true, NotAbsolute),
        ] {
            assert_eq!(validate_redirect_uri(uri, public), Err(error), "{uri}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_REDIRECT_URI_LEN));
        assert_eq!(validate_redirect_uri(&long, false), Err(TooLong));
    }

    #[test]
    fn a_registered_uri_matches_only_itself_character_for_character() {
        let reg = "https://grades.example.com/cb";
        assert!(redirect_uri_matches(reg, reg));
        for presented in [
            "https://grades.example.com/cb/",
            "https://grades.example.com/cb?x=1",
            "https://grades.example.com/CB",
            "https://GRADES.example.com/cb",
            "https://grades.example.com:443/cb",
            "https://grades.example.com/a/../cb",
            "https://grades.example.com.evil.com/cb",
            "https://grades.example.com/cb#frag",
            "http://grades.example.com/cb",
            "https://grades.example.com:8443/cb",
        ] {
            assert!(!redirect_uri_matches(reg, presented), "{presented}");
        }
    }

    #[test]
    fn a_loopback_uri_matches_on_any_port_and_nothing_else_changes() {
        let reg = "http://127.0.0.1/callback";
        for presented in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51004/callback",
            "http://127.0.0.1:1/callback",
        ] {
            assert!(redirect_uri_matches(reg, presented), "{presented}");
        }
        assert!(redirect_uri_matches(
            "http://127.0.0.1:8400/callback",
            "http://127.0.0.1:9000/callback"
        ));
        assert!(redirect_uri_matches(
            "http://[::1]/cb?x=1",
            "http://[::1]:6000/cb?x=1"
        ));
        for presented in [
            "http://127.0.0.1:51004/callback/",
            "http://127.0.0.1:51004/Callback",
            "http://127.0.0.1:51004/callback?x=1",
            "http://127.0.0.1:51004/x/../callback",
            "http://127.0.0.2:51004/callback",
            "http://localhost:51004/callback",
            "http://[::1]:51004/callback",
            "https://127.0.0.1:51004/callback",
            "http://user@127.0.0.1:51004/callback",
            "http://127.0.0.1:51004/callback#x",
            "http://2130706433:51004/callback",
        ] {
            assert!(!redirect_uri_matches(reg, presented), "{presented}");
        }
        // Only a registered loopback URI gets the any-port rule.
        assert!(!redirect_uri_matches(
            "https://grades.example.com/cb",
            "https://grades.example.com:444/cb"
        ));
    }
}
