//! The `openidconnect` crate (the Rust relying-party library) against the
//! real `warden` binary: OpenID discovery, the code flow with PKCE and a
//! nonce through warden's hosted login and consent pages, the code
//! exchange, the ID token verified by openidconnect (signature from the
//! JWKS, `iss`, `aud`, `nonce`, `at_hash`) and by warden-guard's
//! `IdTokenVerifier`, userinfo, and a refresh that brings a new ID token —
//! for a client of each ID token algorithm (RS256, ES256, EdDSA).
//!
//! openidconnect's own reqwest integration is for reqwest 0.12; it is
//! handed ours, as examples/signin.rs hands it to `oauth2`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse,
};
use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};
use warden_guard::{Algorithm, IdTokenError, IdTokenVerifier};

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const PASSWORD: &str = "correct horse battery";

/// One `warden serve` process on its own SQLite database.
struct Warden {
    url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Warden {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("warden.log")).unwrap();
        let child = Self::command(dir.path(), &url)
            .arg("serve")
            .env("WARDEN_BIND", format!("127.0.0.1:{port}"))
            .env("WARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let warden = Self { url, child, dir };
        let http = Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", warden.url)).send().await
                && r.status() == StatusCode::OK
            {
                return warden;
            }
            assert!(
                Instant::now() < deadline,
                "warden did not start: {}",
                warden.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `warden` in the test's directory (its `warden.db`), with the
    /// server's issuer.
    fn command(dir: &std::path::Path, issuer: &str) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_ISSUER", issuer)
            .env("WARDEN_ARGON2_MEMORY_KIB", "256")
            .env("WARDEN_ARGON2_ITERATIONS", "1")
            .stdin(Stdio::null());
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("warden.log")).unwrap_or_default()
    }

    /// Runs a `warden` command on the server's database; its stdout.
    fn cli(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Self::command(self.dir.path(), &self.url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out: Output = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "warden {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `warden users create`.
    fn create_user(&self, username: &str, roles: &[&str]) {
        let email = format!("{username}@example.com");
        let mut args = vec![
            "users",
            "create",
            "--username",
            username,
            "--email",
            &email,
            "--password-stdin",
        ];
        for role in roles {
            args.extend(["--role", role]);
        }
        self.cli(&args, &format!("{PASSWORD}\n"));
    }

    /// A confidential client with `redirect_uri`, signing its ID tokens
    /// with `alg`: RS256 (the default) through `warden clients create`, the
    /// others through `POST /clients` as an admin. Its id and secret.
    async fn create_client(&self, redirect_uri: &str, alg: Algorithm) -> (String, String) {
        let scopes = ["openid", "profile", "email", "offline_access"];
        let client: Value = if alg == Algorithm::RS256 {
            let mut args = vec![
                "clients",
                "create",
                "--name",
                "Rust RP",
                "--redirect-uri",
                redirect_uri,
            ];
            for s in scopes {
                args.extend(["--scope", s]);
            }
            serde_json::from_str(&self.cli(&args, "")).unwrap()
        } else {
            self.create_user("admin", &["admin"]);
            let http = Client::new();
            let token: Value = http
                .post(format!("{}/token", self.url))
                .form(&[("username", "admin"), ("password", PASSWORD)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let r = http
                .post(format!("{}/clients", self.url))
                .bearer_auth(token["access_token"].as_str().unwrap())
                .json(&json!({
                    "name": "Rust RP", "redirect_uris": [redirect_uri], "scopes": scopes,
                    "id_token_signed_response_alg": format!("{alg:?}"),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json().await.unwrap()
        };
        assert_eq!(
            client["id_token_signed_response_alg"],
            format!("{alg:?}"),
            "{client}"
        );
        (
            client["client_id"].as_str().unwrap().to_owned(),
            client["client_secret"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser: its cookies (one host), no automatic redirects.
struct Browser {
    http: Client,
    cookies: BTreeMap<String, String>,
}

/// The value of `name="..."` in a tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

/// Names and values of form fields.
type Fields = Vec<(String, String)>;

/// The first form of `html`: its action, its inputs, its buttons.
fn form(html: &str) -> Option<(String, Fields, Fields)> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>")? + start;
    let form = &html[start..end];
    let action = attribute(&form[..form.find('>')?], "action").unwrap_or_default();
    let (mut inputs, mut buttons) = (Vec::new(), Vec::new());
    for (i, _) in form.match_indices('<') {
        let tag = &form[i..i + form[i..].find('>').unwrap_or(0)];
        let Some(name) = attribute(tag, "name") else {
            continue;
        };
        let value = attribute(tag, "value").unwrap_or_default();
        if tag.starts_with("<button") {
            buttons.push((name, value));
        } else if tag.starts_with("<input") {
            inputs.push((name, value));
        }
    }
    Some((action, inputs, buttons))
}

fn resolve(base: &str, target: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(target)
        .unwrap()
        .to_string()
}

impl Browser {
    fn new() -> Self {
        Self {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn keep_cookies(&mut self, response: &Response) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join("; ")
    }

    async fn get(&mut self, url: &str) -> Response {
        let r = self
            .http
            .get(url)
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    async fn post(&mut self, url: &str, fields: &[(String, String)]) -> Response {
        let origin = url::Url::parse(url).unwrap().origin().ascii_serialization();
        let r = self
            .http
            .post(url)
            .header(header::COOKIE, self.cookie_header())
            .header(header::ORIGIN, origin)
            .form(fields)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Opens `url` (the authorization request) and answers warden's login
    /// form (`username`, `password`, its CSRF field) and consent page
    /// (`decision=allow`) until warden redirects to `redirect_uri`: that
    /// redirect's query.
    async fn authorize(
        &mut self,
        url: &str,
        redirect_uri: &str,
        username: &str,
    ) -> BTreeMap<String, String> {
        let mut url = url.to_owned();
        let mut response = self.get(&url).await;
        for _ in 0..20 {
            if response.status().is_redirection() {
                let location = response.headers()[header::LOCATION].to_str().unwrap();
                let next = resolve(&url, location);
                if next.starts_with(redirect_uri) {
                    return url::Url::parse(&next)
                        .unwrap()
                        .query_pairs()
                        .into_owned()
                        .collect();
                }
                url = next;
                response = self.get(&url).await;
                continue;
            }
            let status = response.status();
            let html = response.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "at {url}: {html}");
            let (action, mut fields, buttons) =
                form(&html).unwrap_or_else(|| panic!("no form at {url}: {html}"));
            if fields.iter().any(|(name, _)| name == "password") {
                for (name, value) in &mut fields {
                    match name.as_str() {
                        "username" => *value = username.to_owned(),
                        "password" => *value = PASSWORD.to_owned(),
                        _ => {}
                    }
                }
            } else if buttons.iter().any(|(name, _)| name == "decision") {
                fields.push(("decision".to_owned(), "allow".to_owned()));
            } else {
                panic!("neither the login nor the consent page at {url}: {html}");
            }
            let action = resolve(&url, &action);
            response = self.post(&action, &fields).await;
            url = action;
        }
        panic!("more than 20 steps to sign in");
    }
}

/// openidconnect's HTTP client: our reqwest, following no redirects (an
/// OAuth client must not, RFC 9700 §4.11).
async fn send(
    http: &Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut answer = openidconnect::HttpResponse::new(response.bytes().await?.to_vec());
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn core_alg(alg: Algorithm) -> CoreJwsSigningAlgorithm {
    match alg {
        Algorithm::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Algorithm::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        Algorithm::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
        other => panic!("no ID token algorithm {other:?}"),
    }
}

/// The relying party: openidconnect's client, set up by discovery.
type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A client without redirects, for openidconnect and the guard.
fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// OpenID discovery: openidconnect checks that the metadata's issuer is the
/// one asked, and fetches the JWKS.
async fn discover(warden: &Warden, client_id: &str, secret: &str, redirect_uri: &str) -> Rp {
    let http = http();
    let http_client = |request: openidconnect::HttpRequest| send(&http, request);
    let issuer = IssuerUrl::new(warden.url.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http_client)
        .await
        .unwrap_or_else(|e| panic!("discovery: {e:?}\n{}", warden.log()));
    assert!(
        metadata
            .id_token_signing_alg_values_supported()
            .contains(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        "RS256 is always offered"
    );
    assert!(metadata.userinfo_endpoint().is_some());
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_owned()),
        Some(ClientSecret::new(secret.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).unwrap())
}

/// The code flow, PKCE S256 and a nonce, through warden's pages in
/// `browser`, and the code exchange: the token response and the nonce.
async fn code_flow(
    warden: &Warden,
    client: &Rp,
    browser: &mut Browser,
    redirect_uri: &str,
) -> (CoreTokenResponse, Nonce) {
    let http = http();
    let http_client = |request: openidconnect::HttpRequest| send(&http, request);
    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".to_owned()))
        .add_scope(Scope::new("email".to_owned()))
        .add_scope(Scope::new("offline_access".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let callback = browser
        .authorize(authorize_url.as_str(), redirect_uri, "alice")
        .await;
    assert_eq!(callback.get("state"), Some(csrf.secret()), "{callback:?}");
    assert_eq!(callback.get("iss"), Some(&warden.url), "RFC 9207 iss");
    let code = callback
        .get("code")
        .unwrap_or_else(|| panic!("no code: {callback:?}"));
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(pkce_verifier)
        .request_async(&http_client)
        .await
        .unwrap_or_else(|e| panic!("code exchange: {e:?}\n{}", warden.log()));
    (token, nonce)
}

/// The whole relying-party journey for a client whose ID tokens are signed
/// with `alg`.
async fn sign_in_with(alg: Algorithm) {
    let warden = Warden::start().await;
    warden.create_user("alice", &[]);
    // Registered without a port; the request names one (RFC 8252 §7.3).
    let (client_id, secret) = warden.create_client("http://127.0.0.1/callback", alg).await;
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect_uri = format!("http://{}/callback", loopback.local_addr().unwrap());
    let http = http();
    let http_client = |request: openidconnect::HttpRequest| send(&http, request);
    let client = discover(&warden, &client_id, &secret, &redirect_uri).await;
    let mut browser = Browser::new();
    let (token, nonce) = code_flow(&warden, &client, &mut browser, &redirect_uri).await;
    let id_token = token.id_token().expect("an id_token for scope openid");

    // openidconnect verifies the signature with the JWKS key of the
    // token's kid, the algorithm (allowed: just this client's), iss, aud,
    // exp, and the nonce.
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![core_alg(alg)]);
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("openidconnect refused the id_token: {e:?}"));
    assert_eq!(id_token.signing_alg().unwrap(), &core_alg(alg));
    assert_eq!(claims.issuer().as_str(), warden.url);
    assert_eq!(claims.audiences().len(), 1);
    assert_eq!(claims.audiences()[0].as_str(), client_id);
    assert_eq!(claims.nonce().map(|n| n.secret()), Some(nonce.secret()));
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("alice@example.com")
    );
    // at_hash, with openidconnect's own hash of the algorithm (SHA-512 for
    // EdDSA).
    let expected = AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected), "at_hash");
    // The same ID token with another nonce: openidconnect refuses it (so
    // the check above is a real one).
    assert!(
        id_token
            .claims(&verifier, &Nonce::new("another".to_owned()))
            .is_err()
    );
    // Allowed only another algorithm: refused.
    let other = if alg == Algorithm::RS256 {
        Algorithm::EdDSA
    } else {
        Algorithm::RS256
    };
    let strict = client
        .id_token_verifier()
        .set_allowed_algs(vec![core_alg(other)]);
    assert!(id_token.claims(&strict, &nonce).is_err());

    // warden-guard's IdTokenVerifier agrees, from the same discovery.
    let guard = IdTokenVerifier::discover(&warden.url, &client_id)
        .algorithms(&[alg])
        .start()
        .await
        .unwrap();
    let raw = id_token.to_string();
    let access_token = token.access_token().secret().clone();
    let verified = guard
        .verify_async(&raw, Some(nonce.secret()), Some(&access_token))
        .await
        .unwrap_or_else(|e| panic!("warden-guard refused the id_token: {e}"));
    assert_eq!(verified.sub, claims.subject().as_str());
    assert_eq!(verified.preferred_username.as_deref(), Some("alice"));
    // With scope `email` (whether it is verified is warden's business).
    assert!(
        verified.email_verified.is_some(),
        "email_verified with email"
    );
    assert!(verified.sid.is_some(), "the OpenID session");
    assert_eq!(verified.amr, ["pwd"]);
    assert_eq!(
        guard.verify(&raw, Some("another"), Some(&access_token)),
        Err(IdTokenError::Nonce)
    );
    assert_eq!(
        guard.verify(&raw, Some(nonce.secret()), Some("another access token")),
        Err(IdTokenError::AtHash)
    );
    // warden's access token is not an ID token (typ at+jwt), and the ID
    // token is no logout token.
    assert_eq!(
        guard.verify(&access_token, None, None).unwrap_err(),
        IdTokenError::WrongType
    );
    assert_eq!(
        guard.verify_logout_token(&raw),
        Err(IdTokenError::WrongType)
    );
    // A verifier for another client refuses it.
    let foreign = IdTokenVerifier::discover(&warden.url, "another-client")
        .algorithms(&[alg])
        .start()
        .await
        .unwrap();
    assert_eq!(
        foreign.verify(&raw, None, None),
        Err(IdTokenError::Audience)
    );

    // Userinfo through openidconnect: the subject must be the ID token's.
    let userinfo: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&http_client)
        .await
        .unwrap_or_else(|e| panic!("userinfo: {e:?}"));
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(
        userinfo.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Some("alice@example.com")
    );

    // A refresh brings a new ID token for the same user, session and client,
    // which openidconnect accepts (a refreshed ID token may repeat the
    // sign-in's nonce or carry none).
    let refresh_token = token.refresh_token().expect("a refresh token");
    let refreshed = client
        .exchange_refresh_token(refresh_token)
        .unwrap()
        .request_async(&http_client)
        .await
        .unwrap_or_else(|e| panic!("refresh: {e:?}\n{}", warden.log()));
    let new_id_token = refreshed.id_token().expect("a new id_token on refresh");
    assert_ne!(new_id_token.to_string(), raw);
    let original_nonce = nonce.clone();
    let new_claims = new_id_token
        .claims(&verifier, |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(n) if n.secret() == original_nonce.secret() => Ok(()),
            Some(_) => Err("not the sign-in's nonce".to_owned()),
        })
        .unwrap_or_else(|e| panic!("openidconnect refused the refreshed id_token: {e:?}"));
    // OpenID Connect Core 1.0 §12.2.
    assert_eq!(new_claims.subject(), claims.subject());
    assert_eq!(new_claims.issuer(), claims.issuer());
    assert_eq!(new_claims.audiences(), claims.audiences());
    assert_eq!(new_claims.auth_time(), claims.auth_time());
    let new_expected = AccessTokenHash::from_token(
        refreshed.access_token(),
        new_id_token.signing_alg().unwrap(),
        new_id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(new_claims.access_token_hash(), Some(&new_expected));
    let reverified = guard
        .verify_async(
            &new_id_token.to_string(),
            None,
            Some(refreshed.access_token().secret()),
        )
        .await
        .unwrap_or_else(|e| panic!("warden-guard refused the refreshed id_token: {e}"));
    assert_eq!(reverified.sid, verified.sid, "the same OpenID session");
    // The refreshed ID token's at_hash is of the new access token only.
    assert_eq!(
        guard.verify(&new_id_token.to_string(), None, Some(&access_token)),
        Err(IdTokenError::AtHash)
    );
    drop(loopback);
}

#[tokio::test]
async fn rs256_the_default_client_from_the_cli() {
    sign_in_with(Algorithm::RS256).await;
}

#[tokio::test]
async fn es256_client_from_the_api() {
    sign_in_with(Algorithm::ES256).await;
}

#[tokio::test]
async fn eddsa_client_from_the_api() {
    sign_in_with(Algorithm::EdDSA).await;
}

/// The `kid` of a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn after_warden_keys_rotate_the_guard_fetches_the_keys_once_more() {
    let warden = Warden::start().await;
    warden.create_user("alice", &[]);
    let (client_id, secret) = warden
        .create_client("http://127.0.0.1/callback", Algorithm::RS256)
        .await;
    let redirect_uri = "http://127.0.0.1:9/callback".to_owned();
    let client = discover(&warden, &client_id, &secret, &redirect_uri).await;
    let guard = IdTokenVerifier::discover(&warden.url, &client_id)
        .unknown_kid_interval(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let mut browser = Browser::new();
    let (first, _) = code_flow(&warden, &client, &mut browser, &redirect_uri).await;
    let first = first.id_token().unwrap().to_string();
    assert!(guard.verify(&first, None, None).is_ok());

    warden.cli(&["keys", "rotate"], "");
    // The server picks the new key up from the database (within about
    // 100 ms); the same browser signs in again without a password.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (second, nonce) = loop {
        let (token, nonce) = code_flow(&warden, &client, &mut browser, &redirect_uri).await;
        let id_token = token.id_token().unwrap().to_string();
        if kid(&id_token) != kid(&first) {
            break (token, nonce);
        }
        assert!(
            Instant::now() < deadline,
            "warden did not sign with the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let raw = second.id_token().unwrap().to_string();
    // Signed by a key published after the guard's fetch: `verify` does not
    // fetch; `verify_async` fetches once and accepts it.
    assert_eq!(
        guard.verify(&raw, None, None),
        Err(IdTokenError::UnknownKid)
    );
    assert_eq!(guard.key_fetches(), 1);
    let claims = guard
        .verify_async(
            &raw,
            Some(nonce.secret()),
            Some(second.access_token().secret()),
        )
        .await
        .unwrap();
    assert_eq!(guard.key_fetches(), 2);
    assert_eq!(claims.preferred_username.as_deref(), Some("alice"));
    // The retired key is still published, so the first ID token verifies.
    assert!(guard.verify(&first, None, None).is_ok());
    // openidconnect's client holds the JWKS of its discovery: it needs a
    // new discovery for the new key.
    let stale = client.id_token_verifier();
    assert!(second.id_token().unwrap().claims(&stale, &nonce).is_err());
    let fresh = discover(&warden, &client_id, &secret, &redirect_uri).await;
    assert!(
        second
            .id_token()
            .unwrap()
            .claims(&fresh.id_token_verifier(), &nonce)
            .is_ok()
    );
}
