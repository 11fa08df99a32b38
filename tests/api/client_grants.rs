//! `POST /token` for registered OAuth clients (issue 17): client
//! authentication (Basic, post, none), the client credentials grant, the
//! authorization code grant with PKCE (codes inserted through the store
//! as `/authorize` would, with a real browser session), refresh tokens
//! bound to their client, and client tokens on warden's own routes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use warden::auth::clients::{NewClient, hash_secret};
use warden::auth::tokens::now;
use warden::domain::{AuthorizationCodeRecord, ClientRecord, UserRecord};

use crate::helpers::{
    PASSWORD, TestApp, basic, challenge_of, claims, jwt_header as header, new_verifier, signed_in,
};

const REDIRECT: &str = "https://app.example.com/cb";

/// Registers a client as the admin API will (the service function).
async fn client(app: &TestApp, public: bool, grants: &[&str], scopes: &[&str]) -> (ClientRecord, String) {
    let new = NewClient {
        name: "Test app".into(),
        public,
        redirect_uris: vec![REDIRECT.into()],
        grant_types: Some(grants.iter().map(|g| g.to_string()).collect()),
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let (record, secret) = warden::auth::clients::create(&app.state, new, None, None, now())
        .await
        .expect("a valid client");
    (record, secret.unwrap_or_default())
}

/// A confidential client for the code flow, with refreshes.
async fn web_app(app: &TestApp) -> (ClientRecord, String) {
    client(
        app,
        false,
        &["authorization_code", "refresh_token"],
        &["me", "openid", "profile"],
    )
    .await
}

/// A service: client credentials only.
async fn service(app: &TestApp, scopes: &[&str]) -> (ClientRecord, String) {
    client(app, false, &["client_credentials"], scopes).await
}

async fn post_token(app: &TestApp, form: &[(&str, &str)], authorization: Option<&str>) -> Response {
    let mut req = app.client.post(app.at("/token")).form(form);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

async fn json_of(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    r.json().await.unwrap()
}

async fn assert_grant_error(r: Response, error: &str) -> Value {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("www-authenticate").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    body
}

async fn assert_invalid_client(r: Response, basic_challenge: bool) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(challenge.starts_with("Basic"), basic_challenge, "{challenge:?}");
    let body: Value = r.json().await.unwrap();
    let description = "Client authentication failed";
    assert_eq!(
        body,
        json!({"error": "invalid_client", "error_description": description, "detail": description})
    );
}

/// What `/authorize` stores on success; returns the code.
struct Code<'a> {
    client: &'a ClientRecord,
    user: &'a UserRecord,
    browser: Uuid,
    redirect_uri: Option<&'a str>,
    verifier: &'a str,
    scope: &'a str,
    expires_in: i64,
}

impl<'a> Code<'a> {
    fn new(client: &'a ClientRecord, user: &'a UserRecord, browser: Uuid, verifier: &'a str) -> Self {
        Self {
            client,
            user,
            browser,
            redirect_uri: Some(REDIRECT),
            verifier,
            scope: "me openid",
            expires_in: 60,
        }
    }

    async fn issue(&self, app: &TestApp) -> String {
        let code = format!("code-{}", Uuid::new_v4().simple());
        let t = now();
        app.state
            .store
            .insert_code(&AuthorizationCodeRecord {
                hash: hash_secret(&code).to_vec(),
                client_id: self.client.id,
                user_id: self.user.id,
                browser_session: self.browser,
                redirect_uri: self.redirect_uri.map(str::to_owned),
                code_challenge: challenge_of(self.verifier),
                scope: self.scope.to_owned(),
                nonce: None,
                auth_time: t,
                created_at: t,
                expires_at: t + self.expires_in,
                used_at: None,
                session_id: None,
            })
            .await
            .unwrap();
        code
    }
}

/// `grant_type=authorization_code` with client_secret_basic.
async fn redeem(
    app: &TestApp,
    client: &ClientRecord,
    secret: &str,
    code: &str,
    verifier: &str,
) -> Response {
    post_token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
        Some(&basic(&client.id.to_string(), secret)),
    )
    .await
}

// ---------------------------------------------------------------- client credentials

#[tokio::test]
async fn client_credentials_with_basic_returns_a_client_token() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["tokens:introspect", "me", "openid"]).await;
    let id = svc.id.to_string();
    let r = post_token(&app, &[("grant_type", "client_credentials")], Some(&basic(&id, &secret))).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = json_of(r, StatusCode::OK).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    // All of the client's scopes but the OpenID ones, which describe a user.
    assert_eq!(body["scope"], "tokens:introspect me");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(header(token)["typ"], "at+jwt");
    let c = claims(token);
    assert_eq!(c["sub"], id.as_str());
    assert_eq!(c["client_id"], id.as_str());
    assert_eq!(c["scope"], "tokens:introspect me");
    assert_eq!(c["iss"], app.url.as_str());
    for absent in ["sid", "roles", "username"] {
        assert!(c.get(absent).is_none(), "{absent} in {c}");
    }
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);

    // (The recorder is the process's: other tests count too.)
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"warden_tokens_issued_total{grant="client_credentials"} "#),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_credentials_with_client_secret_post() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["tokens:introspect"]).await;
    let id = svc.id.to_string();
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)],
        None,
    )
    .await;
    let body = json_of(r, StatusCode::OK).await;
    assert_eq!(claims(body["access_token"].as_str().unwrap())["client_id"], id.as_str());
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_inside_the_header() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["tokens:introspect"]).await;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic; an
    // encoded unreserved character must decode to itself.
    let encode = |s: &str| s.replace('-', "%2D").replace('_', "%5F");
    let id = encode(&svc.id.to_string());
    assert_ne!(id, svc.id.to_string());
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials")],
        Some(&basic(&id, &encode(&secret))),
    )
    .await;
    let body = json_of(r, StatusCode::OK).await;
    assert_eq!(claims(body["access_token"].as_str().unwrap())["sub"], svc.id.to_string());
    // The scheme is case-insensitive.
    let lower = basic(&svc.id.to_string(), &secret).replacen("Basic", "basic", 1);
    let r = post_token(&app, &[("grant_type", "client_credentials")], Some(&lower)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_secret_is_401_with_the_basic_challenge_only_after_basic() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["tokens:introspect"]).await;
    let id = svc.id.to_string();
    let form = [("grant_type", "client_credentials")];
    let wrong = format!("{secret}x");
    assert_invalid_client(post_token(&app, &form, Some(&basic(&id, &wrong))).await, true).await;
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &wrong)],
        None,
    )
    .await;
    assert_invalid_client(r, false).await;
    // An unknown client, a client id that is no UUID, no client at all,
    // and a Basic header that does not decode.
    let unknown = Uuid::now_v7().to_string();
    assert_invalid_client(post_token(&app, &form, Some(&basic(&unknown, &secret))).await, true).await;
    assert_invalid_client(post_token(&app, &form, Some(&basic("svc", &secret))).await, true).await;
    assert_invalid_client(post_token(&app, &form, None).await, false).await;
    assert_invalid_client(post_token(&app, &form, Some("Basic %%%")).await, true).await;
    assert_invalid_client(post_token(&app, &form, Some(&format!("Basic {}", STANDARD.encode("no-colon")))).await, true).await;
    // Swagger UI's empty Basic is no client authentication.
    assert_invalid_client(post_token(&app, &form, Some("Basic Og==")).await, false).await;
}

#[tokio::test]
async fn two_methods_at_once_are_400_invalid_request() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["tokens:introspect"]).await;
    let id = svc.id.to_string();
    let auth = basic(&id, &secret);
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)],
        Some(&auth),
    )
    .await;
    assert_grant_error(r, "invalid_request").await;
    let other = Uuid::now_v7().to_string();
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &other)],
        Some(&auth),
    )
    .await;
    assert_grant_error(r, "invalid_request").await;
    // The same client_id beside Basic is no second method.
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
        Some(&auth),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A secret without an id.
    let r = post_token(&app, &[("grant_type", "client_credentials"), ("client_secret", &secret)], None).await;
    assert_grant_error(r, "invalid_request").await;
}

#[tokio::test]
async fn client_credentials_scopes_stay_within_the_clients_api_scopes() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["me", "tokens:introspect", "openid"]).await;
    let auth = basic(&svc.id.to_string(), &secret);
    let ask = |scope: &'static str| {
        let app = &app;
        let auth = auth.clone();
        async move {
            post_token(app, &[("grant_type", "client_credentials"), ("scope", scope)], Some(&auth)).await
        }
    };
    let body = json_of(ask("tokens:introspect").await, StatusCode::OK).await;
    assert_eq!(body["scope"], "tokens:introspect");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["scope"], "tokens:introspect");
    // Beyond the client's scopes, an OpenID scope, a scope nobody has.
    for scope in ["users:read", "me users:read", "openid", "nonsense:scope"] {
        assert_grant_error(ask(scope).await, "invalid_scope").await;
    }
    // A client with only OpenID scopes has nothing to obtain for itself.
    let (bare, secret) = service(&app, &["openid"]).await;
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials")],
        Some(&basic(&bare.id.to_string(), &secret)),
    )
    .await;
    assert_grant_error(r, "invalid_scope").await;
}

#[tokio::test]
async fn client_credentials_need_the_grant_and_a_confidential_client() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials")],
        Some(&basic(&web.id.to_string(), &secret)),
    )
    .await;
    assert_grant_error(r, "unauthorized_client").await;
    // A public client authenticates by its id alone, and may never use
    // the grant.
    let (spa, _) = client(&app, true, &["authorization_code"], &["me"]).await;
    let id = spa.id.to_string();
    let r = post_token(&app, &[("grant_type", "client_credentials"), ("client_id", &id)], None).await;
    assert_grant_error(r, "unauthorized_client").await;
    // ... and never with a secret.
    let r = post_token(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", "x")],
        None,
    )
    .await;
    assert_invalid_client(r, false).await;
}

#[tokio::test]
async fn a_confidential_client_cannot_authenticate_by_its_id_alone() {
    let app = TestApp::spawn().await;
    let (svc, _) = service(&app, &["tokens:introspect"]).await;
    let id = svc.id.to_string();
    let r = post_token(&app, &[("grant_type", "client_credentials"), ("client_id", &id)], None).await;
    assert_invalid_client(r, false).await;
}

#[tokio::test]
async fn the_password_grant_ignores_client_authentication() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (web, secret) = web_app(&app).await;
    let form = [("username", "alice"), ("password", PASSWORD)];
    for auth in [basic(&web.id.to_string(), &secret), basic(&web.id.to_string(), "wrong")] {
        let body = json_of(post_token(&app, &form, Some(&auth)).await, StatusCode::OK).await;
        let c = claims(body["access_token"].as_str().unwrap());
        assert!(c.get("client_id").is_none(), "{c}");
        assert_eq!(c["username"], "alice");
    }
}

// ---------------------------------------------------------------- client tokens on warden

#[tokio::test]
async fn a_client_token_introspects_and_follows_the_revocation_feed() {
    let app = TestApp::spawn().await;
    let (rs, secret) = service(&app, &["tokens:introspect"]).await;
    let r = post_token(&app, &[("grant_type", "client_credentials")], Some(&basic(&rs.id.to_string(), &secret))).await;
    let rs_token = json_of(r, StatusCode::OK).await["access_token"].as_str().unwrap().to_owned();
    let (_, user_token) = app.user_with_token("alice").await;

    let introspect = |token: String| {
        let app = &app;
        let rs_token = rs_token.clone();
        async move {
            app.client
                .post(app.at("/token/introspect"))
                .bearer_auth(&rs_token)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    let body = json_of(introspect(user_token.clone()).await, StatusCode::OK).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["username"], "alice");
    assert!(body.get("client_id").is_none());
    // Its own token: the client's id as sub and client_id.
    let body = json_of(introspect(rs_token.clone()).await, StatusCode::OK).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], rs.id.to_string());
    assert_eq!(body["client_id"], rs.id.to_string());
    assert_eq!(body["scope"], "tokens:introspect");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("sid").is_none() && body.get("username").is_none());

    let r = app
        .client
        .get(app.at("/token/revocations"))
        .bearer_auth(&rs_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A client token is no user: 401 on a user's route.
    crate::helpers::assert_unauthorized(app.me(&rs_token).await, "Invalid token").await;
}

#[tokio::test]
async fn a_client_token_without_the_scope_gets_403_on_introspection() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["me"]).await;
    let r = post_token(&app, &[("grant_type", "client_credentials")], Some(&basic(&svc.id.to_string(), &secret))).await;
    let token = json_of(r, StatusCode::OK).await["access_token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .post(app.at("/token/introspect"))
        .bearer_auth(&token)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_deleted_clients_tokens_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let (rs, secret) = service(&app, &["tokens:introspect"]).await;
    let (gone, gone_secret) = service(&app, &["tokens:introspect"]).await;
    let token_of = |id: Uuid, secret: String| {
        let app = &app;
        async move {
            let r = post_token(app, &[("grant_type", "client_credentials")], Some(&basic(&id.to_string(), &secret))).await;
            json_of(r, StatusCode::OK).await["access_token"].as_str().unwrap().to_owned()
        }
    };
    let rs_token = token_of(rs.id, secret).await;
    let gone_token = token_of(gone.id, gone_secret).await;
    // What DELETE /clients/{id} does: the store, then this process's gate.
    let t = now();
    let event = warden::auth::audit::Event::new("client_deleted").into_record();
    app.state.store.delete_client(gone.id, t, &event).await.unwrap().unwrap();
    app.state.gate.revoke_client(gone.id, t);

    let r = app
        .client
        .post(app.at("/token/introspect"))
        .bearer_auth(&gone_token)
        .form(&[("token", rs_token.as_str())])
        .send()
        .await
        .unwrap();
    crate::helpers::assert_unauthorized(r, "Invalid token").await;
    let r = app
        .client
        .post(app.at("/token/introspect"))
        .bearer_auth(&rs_token)
        .form(&[("token", gone_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, StatusCode::OK).await, json!({"active": false}));
}

#[tokio::test]
async fn introspection_asks_the_store_whether_a_client_still_exists() {
    // The client is deleted elsewhere (another instance, the CLI): this
    // gate never heard of it, introspection still answers inactive.
    let app = TestApp::spawn().await;
    let (rs, secret) = service(&app, &["tokens:introspect"]).await;
    let (gone, gone_secret) = service(&app, &["tokens:introspect"]).await;
    let r = post_token(&app, &[("grant_type", "client_credentials")], Some(&basic(&rs.id.to_string(), &secret))).await;
    let rs_token = json_of(r, StatusCode::OK).await["access_token"].as_str().unwrap().to_owned();
    let r = post_token(&app, &[("grant_type", "client_credentials")], Some(&basic(&gone.id.to_string(), &gone_secret))).await;
    let gone_token = json_of(r, StatusCode::OK).await["access_token"].as_str().unwrap().to_owned();
    app.sql(&format!("delete from clients where id = '{}'", gone.id)).await;
    let r = app
        .client
        .post(app.at("/token/introspect"))
        .bearer_auth(&rs_token)
        .form(&[("token", gone_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, StatusCode::OK).await, json!({"active": false}));
    // Nor may the deleted client call introspection or the feed itself.
    let r = app
        .client
        .post(app.at("/token/introspect"))
        .bearer_auth(&gone_token)
        .form(&[("token", rs_token.as_str())])
        .send()
        .await
        .unwrap();
    crate::helpers::assert_unauthorized(r, "Invalid token").await;
    let r = app
        .client
        .get(app.at("/token/revocations"))
        .bearer_auth(&gone_token)
        .send()
        .await
        .unwrap();
    crate::helpers::assert_unauthorized(r, "Invalid token").await;
}

// ---------------------------------------------------------------- authorization code

#[tokio::test]
async fn a_code_is_exchanged_for_a_session_through_the_client() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let code = Code::new(&web, &user, browser, &verifier).issue(&app).await;
    let r = redeem(&app, &web, &secret, &code, &verifier).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = json_of(r, StatusCode::OK).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], "me openid");
    assert!(body["refresh_token"].is_string());
    let access = body["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["sub"], user.id.to_string());
    assert_eq!(c["client_id"], web.id.to_string());
    assert_eq!(c["username"], "alice");
    assert_eq!(c["scope"], "me openid");
    let sid = Uuid::parse_str(c["sid"].as_str().unwrap()).unwrap();
    assert_ne!(sid, browser, "a session of its own, not the browser's");
    let session = app.state.store.session(sid).await.unwrap().unwrap();
    assert_eq!(session.client_id, Some(web.id));
    assert!(!session.browser);
    // It works on warden's routes like any user token.
    assert_eq!(app.me(access).await.status(), StatusCode::OK);
    let n = app
        .sql_i64(&format!(
            "select count(*) from audit_events where type = 'authorization_code_redeemed' and session_id = '{sid}'"
        ))
        .await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_public_client_redeems_with_its_id_and_pkce_alone() {
    let app = TestApp::spawn().await;
    let (spa, _) = client(&app, true, &["authorization_code", "refresh_token"], &["me"]).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let mut code = Code::new(&spa, &user, browser, &verifier);
    code.scope = "me";
    let code = code.issue(&app).await;
    let id = spa.id.to_string();
    let r = post_token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        None,
    )
    .await;
    let body = json_of(r, StatusCode::OK).await;
    assert_eq!(claims(body["access_token"].as_str().unwrap())["client_id"], id.as_str());
}

#[tokio::test]
async fn no_refresh_token_for_a_client_without_the_refresh_grant() {
    let app = TestApp::spawn().await;
    let (web, secret) = client(&app, false, &["authorization_code"], &["me"]).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let mut code = Code::new(&web, &user, browser, &verifier);
    code.scope = "me";
    let code = code.issue(&app).await;
    let body = json_of(redeem(&app, &web, &secret, &code, &verifier).await, StatusCode::OK).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_ends_the_session_its_first_use_opened() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let code = Code::new(&web, &user, browser, &verifier).issue(&app).await;
    let first = json_of(redeem(&app, &web, &secret, &code, &verifier).await, StatusCode::OK).await;
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(app.me(access).await.status(), StatusCode::OK);

    let body = assert_grant_error(redeem(&app, &web, &secret, &code, &verifier).await, "invalid_grant").await;
    assert_eq!(body["error_description"], warden::auth::code_grant::INVALID_CODE);
    // The first session is over: its access token at once, its refresh
    // token too.
    crate::helpers::assert_unauthorized(app.me(access).await, "Invalid token").await;
    let r = post_token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        Some(&basic(&web.id.to_string(), &secret)),
    )
    .await;
    assert_grant_error(r, "invalid_grant").await;
    let n = app
        .sql_i64("select count(*) from audit_events where type = 'authorization_code_replayed'")
        .await;
    assert_eq!(n, 1);
    // The browser session is untouched: the user is still signed in.
    let live = app.state.store.session(browser).await.unwrap().unwrap();
    assert!(live.is_live(now()));
}

#[tokio::test]
async fn a_code_of_client_a_is_refused_to_client_b() {
    let app = TestApp::spawn().await;
    let (a, _) = web_app(&app).await;
    let (b, b_secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let code = Code::new(&a, &user, browser, &verifier).issue(&app).await;
    assert_grant_error(redeem(&app, &b, &b_secret, &code, &verifier).await, "invalid_grant").await;
}

#[tokio::test]
async fn the_redirect_uri_must_be_the_one_sent_to_authorize() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let auth = basic(&web.id.to_string(), &secret);
    for presented in [Some("https://app.example.com/cb/"), Some("https://app.example.com/other"), None] {
        let verifier = new_verifier();
        let code = Code::new(&web, &user, browser, &verifier).issue(&app).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        if let Some(uri) = presented {
            form.push(("redirect_uri", uri));
        }
        assert_grant_error(post_token(&app, &form, Some(&auth)).await, "invalid_grant").await;
    }
    // Left out at /authorize (the client's only URI): left out here too,
    // or that one URI.
    for presented in [None, Some(REDIRECT)] {
        let verifier = new_verifier();
        let mut code = Code::new(&web, &user, browser, &verifier);
        code.redirect_uri = None;
        let code = code.issue(&app).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        if let Some(uri) = presented {
            form.push(("redirect_uri", uri));
        }
        assert_eq!(post_token(&app, &form, Some(&auth)).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn pkce_is_required_and_checked() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let auth = basic(&web.id.to_string(), &secret);
    let verifier = new_verifier();
    let code = Code::new(&web, &user, browser, &verifier).issue(&app).await;
    let form = |verifier: Option<&str>| {
        let mut f = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v.to_owned()));
        }
        f
    };
    let send = |f: Vec<(&'static str, String)>| {
        let app = &app;
        let auth = auth.clone();
        async move {
            app.client
                .post(app.at("/token"))
                .header("authorization", auth)
                .form(&f)
                .send()
                .await
                .unwrap()
        }
    };
    // Malformed: refused before the code is looked at, so it is not spent.
    let body = assert_grant_error(send(form(None)).await, "invalid_request").await;
    assert_eq!(body["error_description"], "Missing required parameter: code_verifier");
    assert_grant_error(send(form(Some(&"a".repeat(42)))).await, "invalid_request").await;
    assert_grant_error(send(form(Some(&"a".repeat(129)))).await, "invalid_request").await;
    assert_grant_error(send(form(Some(&format!("{}+/", "a".repeat(43))))).await, "invalid_request").await;
    let body = json_of(send(form(Some(&verifier))).await, StatusCode::OK).await;
    assert!(body["access_token"].is_string());

    // A wrong verifier, and the challenge itself as the verifier (a
    // `plain` downgrade): invalid_grant.
    for wrong in [new_verifier(), challenge_of(&verifier)] {
        let verifier = new_verifier();
        let code = Code::new(&web, &user, browser, &verifier).issue(&app).await;
        let r = redeem(&app, &web, &secret, &code, &wrong).await;
        assert_grant_error(r, "invalid_grant").await;
        // Spent by the attempt: the right verifier is too late now.
        let r = redeem(&app, &web, &secret, &code, &verifier).await;
        assert_grant_error(r, "invalid_grant").await;
    }
}

#[tokio::test]
async fn an_expired_or_unknown_code_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let mut code = Code::new(&web, &user, browser, &verifier);
    code.expires_in = -1;
    let code = code.issue(&app).await;
    assert_grant_error(redeem(&app, &web, &secret, &code, &verifier).await, "invalid_grant").await;
    assert_grant_error(redeem(&app, &web, &secret, "made-up", &verifier).await, "invalid_grant").await;
    let r = post_token(
        &app,
        &[("grant_type", "authorization_code"), ("code_verifier", &verifier)],
        Some(&basic(&web.id.to_string(), &secret)),
    )
    .await;
    assert_grant_error(r, "invalid_request").await;
    // No client: 401.
    let r = post_token(
        &app,
        &[("grant_type", "authorization_code"), ("code", "x"), ("code_verifier", &verifier)],
        None,
    )
    .await;
    assert_invalid_client(r, false).await;
}

#[tokio::test]
async fn a_code_dies_with_its_user_and_its_browser_session() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    // Disabled after /authorize.
    let (alice, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let code = Code::new(&web, &alice, browser, &verifier).issue(&app).await;
    let t = now();
    app.state
        .store
        .update_user(
            alice.id,
            &warden::domain::UserChanges {
                disabled: Some(true),
                ..Default::default()
            },
            warden::auth::tokens::next_valid_after(t),
            t,
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_grant_error(redeem(&app, &web, &secret, &code, &verifier).await, "invalid_grant").await;
    // Signed out of the browser session after /authorize.
    let (bob, browser) = signed_in(&app, "bob").await;
    let code = Code::new(&web, &bob, browser, &verifier).issue(&app).await;
    warden::auth::sessions::end_session(&app.state, browser, now()).await.unwrap();
    assert_grant_error(redeem(&app, &web, &secret, &code, &verifier).await, "invalid_grant").await;
}

#[tokio::test]
async fn a_client_without_the_code_grant_gets_unauthorized_client() {
    let app = TestApp::spawn().await;
    let (svc, secret) = service(&app, &["me"]).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let code = Code::new(&svc, &user, browser, &verifier).issue(&app).await;
    assert_grant_error(redeem(&app, &svc, &secret, &code, &verifier).await, "unauthorized_client").await;
}

// ---------------------------------------------------------------- refresh bound to the client

/// A fresh session through `web` for `user`: its token response.
async fn code_session(app: &TestApp, web: &ClientRecord, secret: &str, user: &UserRecord, browser: Uuid) -> Value {
    let verifier = new_verifier();
    let code = Code::new(web, user, browser, &verifier).issue(app).await;
    json_of(redeem(app, web, secret, &code, &verifier).await, StatusCode::OK).await
}

#[tokio::test]
async fn a_client_sessions_refresh_token_works_only_for_that_client() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (other, other_secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let first = code_session(&app, &web, &secret, &user, browser).await;
    let refresh = first["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];

    // Another client, no client, the right client with a wrong secret.
    let r = post_token(&app, &form, Some(&basic(&other.id.to_string(), &other_secret))).await;
    assert_grant_error(r, "invalid_grant").await;
    assert_grant_error(post_token(&app, &form, None).await, "invalid_grant").await;
    assert_grant_error(post_token(&app, &form, Some("Basic Og==")).await, "invalid_grant").await;
    let r = post_token(&app, &form, Some(&basic(&web.id.to_string(), "wrong"))).await;
    assert_invalid_client(r, true).await;

    // None of those spent it: the client's own refresh rotates as in v1
    // and keeps the client in the token.
    let body = json_of(post_token(&app, &form, Some(&basic(&web.id.to_string(), &secret))).await, StatusCode::OK).await;
    assert_ne!(body["refresh_token"], first["refresh_token"]);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["client_id"], web.id.to_string());
    assert_eq!(c["sid"], claims(first["access_token"].as_str().unwrap())["sid"]);
    assert_eq!(body["scope"], "me openid", "the OpenID scope survives the refresh");

    // Reuse detection as in v1 (after the grace period: none here).
    let r = post_token(&app, &form, Some(&basic(&web.id.to_string(), &secret))).await;
    assert_eq!(r.status(), StatusCode::OK, "a retry within the grace period");
}

#[tokio::test]
async fn reuse_of_a_client_sessions_refresh_token_ends_it() {
    let app = TestApp::spawn_with(&[("WARDEN_REFRESH_REUSE_GRACE", "0")]).await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let first = code_session(&app, &web, &secret, &user, browser).await;
    let auth = basic(&web.id.to_string(), &secret);
    let refresh = first["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let second = json_of(post_token(&app, &form, Some(&auth)).await, StatusCode::OK).await;
    assert_grant_error(post_token(&app, &form, Some(&auth)).await, "invalid_grant").await;
    let next = second["refresh_token"].as_str().unwrap();
    let r = post_token(&app, &[("grant_type", "refresh_token"), ("refresh_token", next)], Some(&auth)).await;
    assert_grant_error(r, "invalid_grant").await;
    crate::helpers::assert_unauthorized(app.me(second["access_token"].as_str().unwrap()).await, "Invalid token").await;
}

#[tokio::test]
async fn a_public_clients_refresh_needs_its_client_id() {
    let app = TestApp::spawn().await;
    let (spa, _) = client(&app, true, &["authorization_code", "refresh_token"], &["me"]).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let verifier = new_verifier();
    let mut code = Code::new(&spa, &user, browser, &verifier);
    code.scope = "me";
    let code = code.issue(&app).await;
    let id = spa.id.to_string();
    let r = post_token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        None,
    )
    .await;
    let body = json_of(r, StatusCode::OK).await;
    let refresh = body["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    assert_grant_error(post_token(&app, &form, None).await, "invalid_grant").await;
    let r = post_token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", &id)],
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_password_sessions_refresh_token_is_refused_to_a_client() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let (web, secret) = web_app(&app).await;
    let body = json_of(app.login("alice", PASSWORD).await, StatusCode::OK).await;
    let refresh = body["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let r = post_token(&app, &form, Some(&basic(&web.id.to_string(), &secret))).await;
    assert_grant_error(r, "invalid_grant").await;
    // Not spent: the password session refreshes as in v1, Swagger's empty
    // Basic included.
    let body = json_of(post_token(&app, &form, Some("Basic Og==")).await, StatusCode::OK).await;
    assert!(claims(body["access_token"].as_str().unwrap()).get("client_id").is_none());
}

#[tokio::test]
async fn a_client_session_refresh_narrows_its_scope_as_in_v1() {
    let app = TestApp::spawn().await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let first = code_session(&app, &web, &secret, &user, browser).await;
    let auth = basic(&web.id.to_string(), &secret);
    let refresh = first["refresh_token"].as_str().unwrap();
    let r = post_token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "profile")],
        Some(&auth),
    )
    .await;
    assert_grant_error(r, "invalid_scope").await;
    let r = post_token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "openid")],
        Some(&auth),
    )
    .await;
    let body = json_of(r, StatusCode::OK).await;
    assert_eq!(body["scope"], "openid");
}

#[tokio::test]
async fn introspection_names_the_client_of_a_users_token() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (web, secret) = web_app(&app).await;
    let (user, browser) = signed_in(&app, "alice").await;
    let body = code_session(&app, &web, &secret, &user, browser).await;
    for token in ["access_token", "refresh_token"] {
        let r = app
            .client
            .post(app.at("/token/introspect"))
            .bearer_auth(&admin)
            .form(&[("token", body[token].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        let answer = json_of(r, StatusCode::OK).await;
        assert_eq!(answer["active"], true, "{token}");
        assert_eq!(answer["client_id"], web.id.to_string(), "{token}");
    }
}

#[tokio::test]
async fn a_guard_follows_the_revocation_feed_as_a_registered_client() {
    let app = TestApp::spawn().await;
    let (rs, secret) = service(&app, &["tokens:introspect"]).await;
    let guard = warden_guard::Remote::builder(&app.url, warden_guard::Algorithm::EdDSA)
        .revocations(warden_guard::Credentials::client(rs.id.to_string(), secret))
        .start()
        .await
        .expect("the guard starts with a client's credentials");
    let verifier = guard.verifier();
    let (_, token) = app.user_with_token("alice").await;
    assert!(verifier.verify(&token).is_ok());
    let r = app
        .client
        .post(app.at("/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let start = std::time::Instant::now();
    while verifier.verify(&token).is_ok() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the logout reached the guard through the feed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The feed refused a client that may not read it: start fails.
    let (other, other_secret) = service(&app, &["me"]).await;
    let refused = warden_guard::Remote::builder(&app.url, warden_guard::Algorithm::EdDSA)
        .revocations(warden_guard::Credentials::client(other.id.to_string(), other_secret))
        .start()
        .await;
    assert!(refused.is_err());
}

/// v1's refresh grant took no client: password-grant clients (authlib's
/// `OAuth2Session`, for one) send an unregistered `client_id` of their own
/// with every refresh, and it keeps working.
#[tokio::test]
async fn a_password_grant_refresh_with_an_unregistered_bare_client_id_still_works() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let r = app.login("alice", PASSWORD).await;
    let body: Value = r.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let r = app
        .login_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "warden-interop"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // With a secret, an unknown client is still invalid_client.
    let body: Value = r.json().await.unwrap();
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    let r = app
        .login_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &next),
            ("client_id", "warden-interop"),
            ("client_secret", "guess"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
