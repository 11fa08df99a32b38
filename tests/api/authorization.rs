//! Roles, scopes, ownership and the admin API.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_unauthorized, error_locs};

/// Asserts the contract's 403 for a missing scope.
async fn assert_forbidden_scope(r: reqwest::Response, scope: &str) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!(r#"Bearer error="insufficient_scope", scope="{scope}""#).as_str()
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Not enough permissions"}));
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.at(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn admin_token_carries_every_builtin_scope_and_its_roles() {
    let app = TestApp::spawn().await;
    app.admin_token("root").await;
    let body: Value = app.login("root", PASSWORD).await.json().await.unwrap();
    assert_eq!(body["scope"], "clients:read clients:write me tokens:introspect users:read users:write");
    let claims: Value = {
        let payload = body["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap();
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(
        claims["scope"],
        "clients:read clients:write me tokens:introspect users:read users:write"
    );
}

#[tokio::test]
async fn requested_scope_narrows_the_token_and_the_narrow_token_is_refused_elsewhere() {
    let app = TestApp::spawn().await;
    app.admin_token("root").await;
    let r = app
        .login_form(&[
            ("username", "root"),
            ("password", PASSWORD),
            ("scope", "users:read"),
        ])
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "users:read");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        call(&app, Method::GET, "/users", Some(token), None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_forbidden_scope(app.me(token).await, "me").await;
    assert_forbidden_scope(
        call(
            &app,
            Method::DELETE,
            &format!("/users/{}", uuid::Uuid::now_v7()),
            Some(token),
            None,
        )
        .await,
        "users:write",
    )
    .await;
}

#[tokio::test]
async fn every_admin_route_answers_401_without_a_token_and_403_for_a_plain_user() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("alice").await;
    let bob = app.register_ok("bob").await;
    let bob_path = format!("/users/{}", bob["id"].as_str().unwrap());
    let routes = [
        (Method::GET, "/users".to_owned(), None, "users:read"),
        (Method::GET, bob_path.clone(), None, "users:read"),
        (
            Method::PATCH,
            bob_path.clone(),
            Some(json!({"full_name": "x"})),
            "users:write",
        ),
        (Method::DELETE, bob_path.clone(), None, "users:write"),
    ];
    for (method, path, body, scope) in routes {
        let r = call(&app, method.clone(), &path, None, body.clone()).await;
        assert_unauthorized(r, "Not authenticated").await;
        let r = call(&app, method.clone(), &path, Some(&token), body).await;
        assert_forbidden_scope(r, scope).await;
    }
    // Bob is untouched.
    assert_eq!(app.login("bob", PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_user_reads_and_edits_self_through_users_id() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.user_with_token("alice").await;
    let path = format!("/users/{}", alice["id"].as_str().unwrap());
    let r = call(&app, Method::GET, &path, Some(&token), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), alice);
    let r = call(
        &app,
        Method::PATCH,
        &path,
        Some(&token),
        Some(json!({"full_name": "Alice"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["full_name"], "Alice");
}

#[tokio::test]
async fn nobody_changes_their_own_roles_or_disabled_flag() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.user_with_token("alice").await;
    let (root, admin) = app.admin_token("root").await;
    for (user, token) in [(&alice, &token), (&root, &admin)] {
        let path = format!("/users/{}", user["id"].as_str().unwrap());
        for body in [
            json!({"roles": ["admin"]}),
            json!({"disabled": true}),
            json!({"roles": ["user"]}),
        ] {
            let r = call(&app, Method::PATCH, &path, Some(token), Some(body.clone())).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {body}");
            let detail: Value = r.json().await.unwrap();
            assert_eq!(
                detail["detail"],
                "You cannot change your own roles or disabled flag"
            );
        }
    }
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn an_admin_reads_changes_and_deletes_other_users() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let bob = app.register_ok("bob").await;
    let path = format!("/users/{}", bob["id"].as_str().unwrap());
    let r = call(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(r.json::<Value>().await.unwrap(), bob);
    let r = call(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"roles": ["user", "admin"], "email": "robert@example.com"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let changed: Value = r.json().await.unwrap();
    assert_eq!(changed["roles"], json!(["user", "admin"]));
    assert_eq!(changed["email"], "robert@example.com");
    let r = call(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        call(&app, Method::GET, &path, Some(&admin), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, Method::DELETE, &path, Some(&admin), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_or_empty_roles_and_bad_ids_are_refused() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let bob = app.register_ok("bob").await;
    let path = format!("/users/{}", bob["id"].as_str().unwrap());
    for body in [
        json!({"roles": ["wizard"]}),
        json!({"roles": []}),
        json!({"roles": "admin"}),
        json!({"disabled": "yes"}),
    ] {
        let r = call(&app, Method::PATCH, &path, Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let r = call(&app, Method::GET, "/users/not-a-uuid", Some(&admin), None).await;
    assert_eq!(error_locs(r).await, [["path", "id"]]);
    let r = call(
        &app,
        Method::GET,
        &format!("/users/{}", uuid::Uuid::now_v7()),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn role_change_ends_earlier_tokens_at_once() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (bob, token) = app.user_with_token("bob").await;
    let path = format!("/users/{}", bob["id"].as_str().unwrap());
    let r = call(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_unauthorized(app.me(&token).await, "Invalid token").await;
    // A fresh login carries the new role.
    let fresh = app.token("bob").await;
    assert_eq!(
        call(&app, Method::GET, "/users", Some(&fresh), None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn disabling_ends_tokens_and_logins_and_enabling_restores_logins_only() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (bob, token) = app.user_with_token("bob").await;
    let path = format!("/users/{}", bob["id"].as_str().unwrap());
    let r = call(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], true);
    assert_unauthorized(app.me(&token).await, "Invalid token").await;
    assert_eq!(
        app.login("bob", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    call(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"disabled": false})),
    )
    .await;
    // Tokens from before the disable stay dead; a new login works.
    assert_unauthorized(app.me(&token).await, "Invalid token").await;
    let fresh = app.token("bob").await;
    assert_eq!(app.me(&fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn deleting_a_user_ends_their_tokens_at_once() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    let (bob, token) = app.user_with_token("bob").await;
    let path = format!("/users/{}", bob["id"].as_str().unwrap());
    assert_eq!(
        call(&app, Method::DELETE, &path, Some(&admin), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_unauthorized(app.me(&token).await, "Invalid token").await;
}

/// Polls `path` with `token` (at most 2 s) until it answers 401.
async fn until_unauthorized(app: &TestApp, path: &str, token: &str) -> StatusCode {
    let mut status = StatusCode::OK;
    for _ in 0..40 {
        status = app
            .client
            .get(app.at(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    status
}

#[tokio::test]
async fn users_deleted_or_disabled_in_the_database_lose_their_tokens() {
    // An operator's SQL, not the API: the server learns of it from the
    // database's change log. `/users/me/sessions` reads no user record, so
    // only the in-memory token gate can refuse the token there.
    let app = TestApp::spawn().await;
    let (_, carol) = app.user_with_token("carol").await;
    let (_, dave) = app.user_with_token("dave").await;
    for token in [&carol, &dave] {
        let r = app
            .client
            .get(app.at("/users/me/sessions"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    app.sql("delete from users where username = 'carol'").await;
    app.sql("update users set disabled = true where username = 'dave'")
        .await;
    for (who, token) in [("carol", &carol), ("dave", &dave)] {
        assert_eq!(
            until_unauthorized(&app, "/users/me/sessions", token).await,
            StatusCode::UNAUTHORIZED,
            "{who}'s token still works 2 s after the SQL"
        );
    }
}

#[tokio::test]
async fn cli_set_roles_reaches_the_running_server() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("bob").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["users", "set-roles", "bob", "admin"])
        .env("WARDEN_DATABASE_URL", app.database_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server polls for outside writes every 100 ms; give it a bounded
    // moment rather than a fixed sleep.
    let mut status = StatusCode::OK;
    for _ in 0..40 {
        status = app.me(&token).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old token still works 2 s after set-roles"
    );
    let fresh: Value = app.login("bob", PASSWORD).await.json().await.unwrap();
    assert_eq!(
        fresh["scope"],
        "clients:read clients:write me tokens:introspect users:read users:write"
    );
}

/// A syntactically valid argon2id hash no password matches.
const SEED_HASH: &str =
    "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

/// Inserts `n` users straight into the database (one shared hash), much
/// faster than `n` registrations.
async fn seed(app: &TestApp, prefix: &str, n: usize) {
    let store = app.store().await;
    let now = warden::auth::tokens::now();
    for i in 0..n {
        let user = warden::domain::UserRecord::new(
            format!("{prefix}{i:04}"),
            format!("{prefix}{i:04}@example.com"),
            None,
            SEED_HASH.into(),
            vec!["user".into()],
            now,
        );
        store.insert_user(&user).await.unwrap();
    }
}

#[tokio::test]
async fn pagination_walks_250_users_in_pages_of_50_without_duplicates_or_gaps_during_inserts() {
    let app = TestApp::spawn().await;
    let (root, admin) = app.admin_token("root").await;
    seed(&app, "user", 249).await;
    let store = app.store().await;
    let existing: HashSet<String> = store
        .list_users()
        .await
        .unwrap()
        .iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(existing.len(), 250);
    assert!(existing.contains(root["id"].as_str().unwrap()));

    // Keep inserting users while the walk goes on.
    let inserter = {
        let dir = app.database_url();
        tokio::spawn(async move {
            let store = warden::storage::connect(&dir).await.unwrap();
            let now = warden::auth::tokens::now();
            for i in 0..100 {
                let user = warden::domain::UserRecord::new(
                    format!("late{i:04}"),
                    format!("late{i:04}@example.com"),
                    None,
                    SEED_HASH.into(),
                    vec!["user".into()],
                    now,
                );
                store.insert_user(&user).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/users?limit=50&cursor={c}"),
            None => "/users?limit=50".to_owned(),
        };
        let r = call(&app, Method::GET, &path, Some(&admin), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 50);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 20, "runaway pagination");
    }
    inserter.await.unwrap();

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a user appeared twice");
    for id in &existing {
        assert!(unique.contains(id), "user {id} was skipped");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages are in id order");
}

#[tokio::test]
async fn the_last_page_has_no_next_cursor_and_limit_is_validated() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    seed(&app, "u", 4).await;
    let page: Value = call(&app, Method::GET, "/users?limit=5", Some(&admin), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert_eq!(page["next_cursor"], Value::Null);
    let page: Value = call(&app, Method::GET, "/users", Some(&admin), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        5,
        "default limit is 50"
    );
    for q in ["limit=0", "limit=201", "limit=x", "cursor=%25%25"] {
        let r = call(
            &app,
            Method::GET,
            &format!("/users?{q}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        let locs = error_locs(r).await;
        assert_eq!(locs[0][0], "query");
    }
}

#[tokio::test]
async fn q_searches_username_and_email_prefixes_case_insensitively() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin_token("root").await;
    app.register_ok("alice").await;
    app.register_ok("alfred").await;
    app.register(json!({"username": "bob", "email": "al.bob@example.com", "password": PASSWORD}))
        .await;
    app.register_ok("carol").await;
    app.register_ok("a_b").await;
    app.register_ok("axb").await;
    let names = |q: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let page: Value = call(
                app,
                Method::GET,
                &format!("/users?q={q}"),
                Some(admin),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
            let mut names: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(names("AL").await, ["alfred", "alice", "bob"]);
    assert_eq!(names("car").await, ["carol"]);
    assert_eq!(names("zzz").await, Vec::<String>::new());
    // `_` and `%` are literal, not wildcards.
    assert_eq!(names("a_").await, ["a_b"]);
    assert_eq!(names("%25").await, Vec::<String>::new());
}
