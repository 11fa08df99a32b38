//! The OAuth client registry (`/clients`), consents (`/users/me/consents`)
//! and the public clients' CORS on the token endpoints.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use warden::auth::clients::{AuthMethod, PresentedClient, SECRET_PREFIX};
use warden::auth::sessions::{self, ClientMeta, SessionVia};
use warden::domain::ConsentRecord;

use crate::helpers::{TestApp, assert_unauthorized, error_locs};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.at(path)).bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.unwrap()
}

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    send(app, Method::POST, "/clients", token, Some(body)).await
}

/// Registers a client and returns its answer (with the secret, if any).
async fn create_ok(app: &TestApp, token: &str, body: Value) -> Value {
    let r = create(app, token, body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

fn web_app() -> Value {
    json!({"name": "Gradebook", "redirect_uris": ["https://grades.example.com/cb"]})
}

fn spa() -> Value {
    json!({
        "name": "Planner",
        "public": true,
        "redirect_uris": ["https://planner.example.com/cb", "http://127.0.0.1/cb"],
    })
}

async fn authenticate(app: &TestApp, id: &str, secret: &str) -> bool {
    warden::auth::clients::authenticate(
        &app.state,
        &PresentedClient {
            client_id: id.to_owned(),
            secret: Some(secret.to_owned()),
            method: AuthMethod::Basic,
        },
    )
    .await
    .is_ok()
}

#[tokio::test]
async fn an_admin_registers_a_confidential_client_and_sees_its_secret_once() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let r = create(&app, &admin, web_app()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let id = body["client_id"].as_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&id).is_ok());
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(SECRET_PREFIX));
    assert!(secret.len() >= SECRET_PREFIX.len() + 43, "256 bits: {secret}");
    assert_eq!(body["name"], "Gradebook");
    assert_eq!(body["public"], false);
    assert_eq!(body["first_party"], false);
    assert_eq!(body["redirect_uris"], json!(["https://grades.example.com/cb"]));
    assert_eq!(body["post_logout_redirect_uris"], json!([]));
    assert_eq!(body["backchannel_logout_uri"], Value::Null);
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(body["scopes"].as_array().unwrap().contains(&json!("openid")));
    assert_eq!(body["id_token_signed_response_alg"], "RS256");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(authenticate(&app, &id, &secret).await);

    // Never again: not in GET, the list, or the audit log.
    let one = send(&app, Method::GET, &format!("/clients/{id}"), &admin, None).await;
    assert_eq!(one.status(), StatusCode::OK);
    let one: Value = one.json().await.unwrap();
    assert!(one.get("client_secret").is_none(), "{one}");
    let mut expected = body.clone();
    expected.as_object_mut().unwrap().remove("client_secret");
    assert_eq!(one, expected);
    let list = send(&app, Method::GET, "/clients", &admin, None).await;
    let list = list.text().await.unwrap();
    assert!(!list.contains(&secret) && !list.contains("client_secret"), "{list}");
    let audit = send(&app, Method::GET, "/audit?type=client_created", &admin, None).await;
    let audit = audit.text().await.unwrap();
    assert!(audit.contains(&id), "{audit}");
    assert!(!audit.contains(&secret[SECRET_PREFIX.len()..]), "{audit}");

    // Stored as its SHA-256, not as itself.
    let stored = app
        .sql_bytes(&format!("select secret_hash from clients where id = '{id}'"))
        .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], warden::auth::clients::hash_secret(&secret).to_vec());
    assert_ne!(stored[0], secret.as_bytes());
}

#[tokio::test]
async fn a_public_client_gets_no_secret() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let body = create_ok(&app, &admin, spa()).await;
    assert_eq!(body["public"], true);
    assert!(body.get("client_secret").is_none(), "{body}");
    let id = body["client_id"].as_str().unwrap();
    let stored = app
        .sql_i64(&format!(
            "select count(*) from clients where id = '{id}' and secret_hash is null"
        ))
        .await;
    assert_eq!(stored, 1);
    // A public client cannot rotate what it does not have.
    let r = send(&app, Method::POST, &format!("/clients/{id}/secret"), &admin, None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let detail: Value = r.json().await.unwrap();
    assert_eq!(
        detail["detail"],
        warden::auth::clients::PUBLIC_CLIENT_HAS_NO_SECRET
    );
}

#[tokio::test]
async fn the_registry_needs_its_scopes() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (_, user) = app.user_with_token("alice").await;
    let id = create_ok(&app, &admin, web_app()).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let routes = [
        (Method::POST, "/clients".to_owned(), Some(web_app())),
        (Method::GET, "/clients".to_owned(), None),
        (Method::GET, format!("/clients/{id}"), None),
        (Method::PATCH, format!("/clients/{id}"), Some(json!({"name": "X"}))),
        (Method::DELETE, format!("/clients/{id}"), None),
        (Method::POST, format!("/clients/{id}/secret"), None),
    ];
    for (method, path, body) in &routes {
        let r = send(&app, method.clone(), path, &user, body.clone()).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("insufficient_scope"), "{challenge}");
        let mut request = app.client.request(method.clone(), app.at(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        assert_unauthorized(request.send().await.unwrap(), "Not authenticated").await;
    }
    // clients:read reads but does not write.
    let toml = "[roles.auditor]\nscopes = [\"me\", \"clients:read\"]\n";
    let app2 = TestApp::spawn_with_file(toml, &[]).await;
    let (_, admin2) = app2.admin_token("root").await;
    let id2 = create_ok(&app2, &admin2, web_app()).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app2.register_ok("reader").await;
    app2.set_roles("reader", &["auditor"]).await;
    let reader = app2.token("reader").await;
    let r = send(&app2, Method::GET, &format!("/clients/{id2}"), &reader, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(&app2, Method::GET, "/clients", &reader, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(&app2, Method::DELETE, &format!("/clients/{id2}"), &reader, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = create(&app2, &reader, web_app()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    for id in [
        Uuid::now_v7().to_string(),
        "not-a-uuid".to_owned(),
        "0193a0c4-zzzz".to_owned(),
    ] {
        for (method, path, body) in [
            (Method::GET, format!("/clients/{id}"), None),
            (Method::PATCH, format!("/clients/{id}"), Some(json!({"name": "X"}))),
            (Method::DELETE, format!("/clients/{id}"), None),
            (Method::POST, format!("/clients/{id}/secret"), None),
            (Method::DELETE, format!("/users/me/consents/{id}"), None),
        ] {
            let r = send(&app, method.clone(), &path, &admin, body).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body, json!({"detail": "Not Found"}));
        }
    }
}

#[tokio::test]
async fn every_redirect_uri_rule_holds_through_the_api() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let ok = "https://grades.example.com/cb";
    // (uri, public): each refused, with the field and the index.
    let refused = [
        ("https://grades.example.com/cb#frag", false),
        ("https://*.example.com/cb", false),
        ("https://grades.example.com/*", false),
        ("https://user:pw@grades.example.com/cb", false),
        ("https://evil@grades.example.com/cb", false),
        ("http://grades.example.com/cb", false),
        ("http://localhost/cb", true),
        ("com.example.app:/cb", false),
        ("myapp:/cb", true),
        ("javascript:alert(1)", true),
        ("/relative/cb", false),
        ("", false),
    ];
    for (uri, public) in refused {
        let body = json!({"name": "X", "public": public, "redirect_uris": [ok, uri]});
        let r = create(&app, &admin, body).await;
        assert_eq!(
            error_locs(r).await,
            [["body", "redirect_uris", "1"]],
            "{uri} (public: {public})"
        );
    }
    let accepted = [
        ("https://grades.example.com/cb?tenant=a", false),
        ("http://127.0.0.1/cb", false),
        ("http://127.0.0.1:8400/cb", true),
        ("http://[::1]/cb", true),
        ("com.example.app:/oauth2redirect", true),
    ];
    for (uri, public) in accepted {
        let body = json!({"name": "X", "public": public, "redirect_uris": [uri]});
        let r = create(&app, &admin, body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{uri} (public: {public})");
        let created: Value = r.json().await.unwrap();
        // Stored exactly as registered.
        assert_eq!(created["redirect_uris"], json!([uri]));
    }
    // Post-logout URIs follow the same rules; the back-channel URL is never
    // a custom scheme.
    let r = create(
        &app,
        &admin,
        json!({"name": "X", "redirect_uris": [ok], "post_logout_redirect_uris": ["https://a.example.com/#x"]}),
    )
    .await;
    assert_eq!(error_locs(r).await, [["body", "post_logout_redirect_uris", "0"]]);
    let r = create(
        &app,
        &admin,
        json!({"name": "X", "public": true, "redirect_uris": [ok], "backchannel_logout_uri": "com.example.app:/logout"}),
    )
    .await;
    assert_eq!(error_locs(r).await, [["body", "backchannel_logout_uri"]]);
}

#[tokio::test]
async fn registrations_that_break_a_rule_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let cases = [
        (json!({"redirect_uris": ["https://a.example.com/cb"]}), vec!["body", "name"]),
        (json!({"name": ""}), vec!["body", "name"]),
        (json!({"name": 7}), vec!["body", "name"]),
        (json!({"name": "X"}), vec!["body", "redirect_uris"]),
        (json!({"name": "X", "redirect_uris": "https://a.example.com/cb"}), vec!["body", "redirect_uris"]),
        (json!({"name": "X", "redirect_uris": [1]}), vec!["body", "redirect_uris"]),
        (
            json!({"name": "X", "public": true, "grant_types": ["client_credentials"]}),
            vec!["body", "grant_types"],
        ),
        (
            json!({"name": "X", "grant_types": ["client_credentials", "password"]}),
            vec!["body", "grant_types", "1"],
        ),
        (json!({"name": "X", "grant_types": []}), vec!["body", "grant_types"]),
        (
            json!({"name": "X", "grant_types": ["client_credentials"], "scopes": ["me", "root:everything"]}),
            vec!["body", "scopes", "1"],
        ),
        (
            json!({"name": "X", "grant_types": ["client_credentials"], "id_token_signed_response_alg": "none"}),
            vec!["body", "id_token_signed_response_alg"],
        ),
        (json!({"name": "X", "public": "yes"}), vec!["body", "public"]),
    ];
    for (body, loc) in cases {
        let r = create(&app, &admin, body.clone()).await;
        assert_eq!(error_locs(r).await, [loc], "{body}");
    }
    // A service client: client_credentials, no redirect URI.
    let service = create_ok(
        &app,
        &admin,
        json!({"name": "Indexer", "grant_types": ["client_credentials"], "scopes": ["users:read"]}),
    )
    .await;
    assert!(service["client_secret"].is_string());
    assert_eq!(service["redirect_uris"], json!([]));
    // Not JSON: 415.
    let r = app
        .client
        .post(app.at("/clients"))
        .bearer_auth(&admin)
        .body("name=X")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        app.sql_i64("select count(*) from clients").await,
        1,
        "only the service client was stored"
    );
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_keeps_every_rule() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let created = create_ok(&app, &admin, web_app()).await;
    let id = created["client_id"].as_str().unwrap().to_owned();
    let path = format!("/clients/{id}");
    let r = send(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"name": "Gradebook 2", "first_party": true, "backchannel_logout_uri": "https://grades.example.com/bc"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["name"], "Gradebook 2");
    assert_eq!(patched["first_party"], true);
    assert_eq!(patched["backchannel_logout_uri"], "https://grades.example.com/bc");
    assert_eq!(patched["redirect_uris"], created["redirect_uris"]);
    assert_eq!(patched["scopes"], created["scopes"]);
    assert_eq!(patched["created_at"], created["created_at"]);
    let read: Value = send(&app, Method::GET, &path, &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, patched);
    // `null` removes the back-channel URL.
    let r = send(&app, Method::PATCH, &path, &admin, Some(json!({"backchannel_logout_uri": null}))).await;
    assert_eq!(r.json::<Value>().await.unwrap()["backchannel_logout_uri"], Value::Null);

    // Each of these would make a client that could not be registered.
    for (body, loc) in [
        (json!({"redirect_uris": ["com.example.app:/cb"]}), vec!["body", "redirect_uris", "0"]),
        (json!({"redirect_uris": []}), vec!["body", "redirect_uris"]),
        (json!({"redirect_uris": ["https://a.example.com/cb", "https://a.example.com/#x"]}), vec!["body", "redirect_uris", "1"]),
        (json!({"grant_types": ["password"]}), vec!["body", "grant_types", "0"]),
        (json!({"scopes": ["nope"]}), vec!["body", "scopes", "0"]),
        (json!({"name": "   "}), vec!["body", "name"]),
        (json!({"name": null}), vec!["body", "name"]),
        (json!({"public": true}), vec!["body", "public"]),
    ] {
        let r = send(&app, Method::PATCH, &path, &admin, Some(body.clone())).await;
        assert_eq!(error_locs(r).await, [loc], "{body}");
    }
    // A public client cannot be given client_credentials.
    let spa = create_ok(&app, &admin, spa()).await;
    let spa_path = format!("/clients/{}", spa["client_id"].as_str().unwrap());
    let r = send(
        &app,
        Method::PATCH,
        &spa_path,
        &admin,
        Some(json!({"grant_types": ["authorization_code", "client_credentials"]})),
    )
    .await;
    assert_eq!(error_locs(r).await, [["body", "grant_types"]]);
    // Nothing of the refused patches was stored.
    let read: Value = send(&app, Method::GET, &path, &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["redirect_uris"], created["redirect_uris"]);
    assert_eq!(read["grant_types"], created["grant_types"]);
    assert_eq!(read["public"], false);
    let audit = send(&app, Method::GET, "/audit?type=client_updated", &admin, None).await;
    let audit: Value = audit.json().await.unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
}

#[tokio::test]
async fn rotating_the_secret_ends_the_old_one_and_shows_the_new_one_once() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let created = create_ok(&app, &admin, web_app()).await;
    let id = created["client_id"].as_str().unwrap().to_owned();
    let old = created["client_secret"].as_str().unwrap().to_owned();
    assert!(authenticate(&app, &id, &old).await);
    let r = send(&app, Method::POST, &format!("/clients/{id}/secret"), &admin, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let rotated: Value = r.json().await.unwrap();
    let new = rotated["client_secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with(SECRET_PREFIX));
    assert_ne!(new, old);
    assert_eq!(rotated["client_id"], created["client_id"]);
    assert!(!authenticate(&app, &id, &old).await, "the old secret still works");
    assert!(authenticate(&app, &id, &new).await);
    let audit = send(&app, Method::GET, "/audit?type=client_secret_rotated", &admin, None).await;
    let audit = audit.text().await.unwrap();
    assert!(audit.contains(&id), "{audit}");
    assert!(!audit.contains(&new[SECRET_PREFIX.len()..]), "{audit}");
}

#[tokio::test]
async fn the_list_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = web_app();
        body["name"] = json!(format!("App {i}"));
        ids.push(create_ok(&app, &admin, body).await["client_id"].clone());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/clients?limit=2&cursor={c}"),
            None => "/clients?limit=2".to_owned(),
        };
        let page: Value = send(&app, Method::GET, &path, &admin, None)
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|c| c["client_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    for bad in ["limit=0", "limit=201", "limit=x", "cursor=AAAA"] {
        let r = send(&app, Method::GET, &format!("/clients?{bad}"), &admin, None).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

/// Opens a session for `username` through client `client`, as the code
/// flow will; returns its access token and id.
async fn session_through(app: &TestApp, username: &str, client: Uuid) -> (String, Uuid) {
    let (access, _, sid) = session_pair_through(app, username, client).await;
    (access, sid)
}

/// [`session_through`] with the refresh token too.
async fn session_pair_through(
    app: &TestApp,
    username: &str,
    client: Uuid,
) -> (String, String, Uuid) {
    let user = app
        .state
        .store
        .user_by_login(username)
        .await
        .unwrap()
        .unwrap();
    let meta = ClientMeta {
        user_agent: Some("client test".to_owned()),
        ip: None,
    };
    let (tokens, sid) = sessions::open_session_with(
        &app.state,
        &user,
        "me".to_owned(),
        &meta,
        Uuid::now_v7(),
        SessionVia::Client {
            client,
            browser_session: Uuid::now_v7(),
            auth_time: warden::auth::tokens::now(),
        },
        warden::auth::tokens::now(),
    )
    .await
    .unwrap()
    .unwrap();
    (tokens.access_token, tokens.refresh_token.unwrap(), sid)
}

async fn session_ids(app: &TestApp, token: &str) -> Vec<String> {
    let r = send(app, Method::GET, "/users/me/sessions", token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn deleting_a_client_ends_the_sessions_issued_through_it() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (_, alice) = app.user_with_token("alice").await;
    let kept = create_ok(&app, &admin, spa()).await;
    let kept = Uuid::parse_str(kept["client_id"].as_str().unwrap()).unwrap();
    let doomed = create_ok(&app, &admin, web_app()).await;
    let doomed_id = Uuid::parse_str(doomed["client_id"].as_str().unwrap()).unwrap();
    let (through_doomed, doomed_refresh, doomed_sid) =
        session_pair_through(&app, "alice", doomed_id).await;
    let (through_kept, kept_sid) = session_through(&app, "alice", kept).await;
    let alice_id = app.state.store.user_by_login("alice").await.unwrap().unwrap().id;
    app.state
        .store
        .put_consent(&ConsentRecord {
            user_id: alice_id,
            client_id: doomed_id,
            scopes: vec!["me".to_owned()],
            granted_at: warden::auth::tokens::now(),
        })
        .await
        .unwrap();
    assert_eq!(app.me(&through_doomed).await.status(), StatusCode::OK);
    let listed = session_ids(&app, &alice).await;
    assert!(listed.contains(&doomed_sid.to_string()) && listed.contains(&kept_sid.to_string()));

    let r = send(&app, Method::DELETE, &format!("/clients/{doomed_id}"), &admin, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // At once in this process: the access token is refused.
    assert_unauthorized(app.me(&through_doomed).await, "Invalid token").await;
    assert_eq!(app.me(&through_kept).await.status(), StatusCode::OK);
    assert_eq!(app.me(&alice).await.status(), StatusCode::OK);
    // Its refresh token is spent for good, whatever the client sends.
    let r = app
        .login_form(&[("grant_type", "refresh_token"), ("refresh_token", &doomed_refresh)])
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_null());
    let listed = session_ids(&app, &alice).await;
    assert!(!listed.contains(&doomed_sid.to_string()), "{listed:?}");
    assert!(listed.contains(&kept_sid.to_string()), "{listed:?}");
    let ended = app
        .sql_i64(&format!(
            "select count(*) from sessions where id = '{doomed_sid}' and revoked_at is not null"
        ))
        .await;
    assert_eq!(ended, 1);
    // The consent went with it, and so did the client.
    let consents: Value = send(&app, Method::GET, "/users/me/consents", &alice, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(consents, json!([]));
    let r = send(&app, Method::GET, &format!("/clients/{doomed_id}"), &admin, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(&app, Method::DELETE, &format!("/clients/{doomed_id}"), &admin, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let audit = send(&app, Method::GET, "/audit?type=client_deleted", &admin, None).await;
    assert!(audit.text().await.unwrap().contains(&doomed_id.to_string()));
}

#[tokio::test]
async fn a_user_lists_and_withdraws_consents_and_their_sessions_end() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (_, alice) = app.user_with_token("alice").await;
    let (_, bob) = app.user_with_token("bob").await;
    let client = create_ok(&app, &admin, web_app()).await;
    let client_id = Uuid::parse_str(client["client_id"].as_str().unwrap()).unwrap();
    let store = &app.state.store;
    let alice_id = store.user_by_login("alice").await.unwrap().unwrap().id;
    let bob_id = store.user_by_login("bob").await.unwrap().unwrap().id;
    for user in [alice_id, bob_id] {
        store
            .put_consent(&ConsentRecord {
                user_id: user,
                client_id,
                scopes: vec!["openid".to_owned(), "me".to_owned()],
                granted_at: 1_800_000_000,
            })
            .await
            .unwrap();
    }
    let (alice_through, _) = session_through(&app, "alice", client_id).await;
    let (bob_through, _) = session_through(&app, "bob", client_id).await;

    let r = send(&app, Method::GET, "/users/me/consents", &alice, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let consents: Value = r.json().await.unwrap();
    assert_eq!(
        consents,
        json!([{
            "client_id": client_id.to_string(),
            "name": "Gradebook",
            "scopes": ["openid", "me"],
            "granted_at": "2027-01-15T08:00:00Z",
        }])
    );
    // Alice withdraws hers; Bob's consent and session stay.
    let path = format!("/users/me/consents/{client_id}");
    let r = send(&app, Method::DELETE, &path, &alice, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_unauthorized(app.me(&alice_through).await, "Invalid token").await;
    assert_eq!(app.me(&alice).await.status(), StatusCode::OK);
    assert_eq!(app.me(&bob_through).await.status(), StatusCode::OK);
    let consents: Value = send(&app, Method::GET, "/users/me/consents", &alice, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(consents, json!([]));
    let bobs: Value = send(&app, Method::GET, "/users/me/consents", &bob, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    // A second withdrawal: nothing left.
    let r = send(&app, Method::DELETE, &path, &alice, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let audit = send(&app, Method::GET, "/audit?type=consent_withdrawn", &admin, None).await;
    let audit: Value = audit.json().await.unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["user_id"], alice_id.to_string());

    // Scope `me` is needed.
    for (method, path) in [(Method::GET, "/users/me/consents".to_owned()), (Method::DELETE, path.clone())] {
        assert_unauthorized(
            app.client.request(method.clone(), app.at(&path)).send().await.unwrap(),
            "Not authenticated",
        )
        .await;
    }
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.at(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

fn allowed_origin(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_token_endpoints_answer_public_clients_origins_without_credentials() {
    let app = TestApp::spawn_with(&[("WARDEN_CORS_ORIGINS", "https://admin.example.org")]).await;
    let (_, admin) = app.admin_token("root").await;
    let spa_origin = "https://planner.example.com";
    for path in ["/token", "/token/revoke"] {
        let r = preflight(&app, path, spa_origin).await;
        assert_eq!(allowed_origin(&r), None, "before registration: {path}");
    }
    let created = create_ok(&app, &admin, spa()).await;
    let spa_id = created["client_id"].as_str().unwrap().to_owned();
    create_ok(
        &app,
        &admin,
        json!({"name": "Confidential", "redirect_uris": ["https://backend.example.net/cb"]}),
    )
    .await;
    for path in ["/token", "/token/revoke"] {
        for origin in [spa_origin, "http://127.0.0.1:5173", "http://127.0.0.1"] {
            let r = preflight(&app, path, origin).await;
            assert!(r.status().is_success(), "{path} {origin}: {}", r.status());
            assert_eq!(allowed_origin(&r).as_deref(), Some(origin), "{path} {origin}");
            assert!(r.headers().get("access-control-allow-credentials").is_none());
            let methods = r.headers()["access-control-allow-methods"].to_str().unwrap();
            assert!(methods.contains("POST"), "{methods}");
        }
        // Not a confidential client's origin, nor a near miss.
        for origin in [
            "https://backend.example.net",
            "https://planner.example.com.evil.test",
            "http://planner.example.com",
            "http://127.0.0.2:5173",
            "null",
        ] {
            let r = preflight(&app, path, origin).await;
            assert_eq!(allowed_origin(&r), None, "{path} {origin}");
        }
    }
    // Only the token endpoints: not the user routes.
    let r = preflight(&app, "/users/me", spa_origin).await;
    assert_eq!(allowed_origin(&r), None);
    // The actual request carries the origin too.
    let r = app
        .client
        .post(app.at("/token/revoke"))
        .header("origin", spa_origin)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&r).as_deref(), Some(spa_origin));
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    // The configured origin keeps its credentials.
    let r = preflight(&app, "/token", "https://admin.example.org").await;
    assert_eq!(allowed_origin(&r).as_deref(), Some("https://admin.example.org"));
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");

    // An update and a deletion apply at once.
    let path = format!("/clients/{spa_id}");
    let r = send(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"redirect_uris": ["https://planner2.example.com/cb"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&preflight(&app, "/token", spa_origin).await), None);
    assert_eq!(allowed_origin(&preflight(&app, "/token", "http://127.0.0.1:5173").await), None);
    let r = preflight(&app, "/token", "https://planner2.example.com").await;
    assert_eq!(allowed_origin(&r).as_deref(), Some("https://planner2.example.com"));
    let r = send(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = preflight(&app, "/token", "https://planner2.example.com").await;
    assert_eq!(allowed_origin(&r), None);
}

#[tokio::test]
async fn a_client_registered_elsewhere_reaches_the_cors_origins_within_the_sync() {
    let app = TestApp::spawn().await;
    // As the CLI or another instance would: through the services on a
    // second connection to the same database.
    let store = app.store().await;
    let client = warden::domain::ClientRecord {
        id: Uuid::now_v7(),
        name: "Elsewhere".to_owned(),
        public: true,
        first_party: false,
        secret_hash: None,
        secret_created_at: None,
        redirect_uris: vec!["https://elsewhere.example.com/cb".to_owned()],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: vec!["authorization_code".to_owned()],
        scopes: vec!["openid".to_owned()],
        id_token_signed_response_alg: "RS256".to_owned(),
        created_at: 0,
        updated_at: 0,
    };
    let event = warden::auth::audit::Event::new("client_created").into_record();
    store.insert_client(&client, &event).await.unwrap();
    let origin = "https://elsewhere.example.com";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if allowed_origin(&preflight(&app, "/token", origin).await).as_deref() == Some(origin) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not seen within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    store.close().await;
}
