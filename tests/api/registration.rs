use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, error_locs};

#[tokio::test]
async fn register_returns_201_and_the_user_without_password_material() {
    let app = TestApp::spawn().await;
    let r = app
        .register(json!({"username": "Alice", "email": "alice@example.com", "password": PASSWORD, "full_name": "Alice A."}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let user: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/users/{}", user["id"].as_str().unwrap()));
    assert_eq!(user["username"], "Alice");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["full_name"], "Alice A.");
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["disabled"], false);
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 8, "{keys:?}");
    assert!(!user.to_string().contains("argon2"));
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn ids_are_server_assigned_uuid_v7_and_body_ids_and_roles_are_ignored() {
    let app = TestApp::spawn().await;
    let r = app
        .register(
            json!({"id": "00000000-0000-0000-0000-000000000001", "roles": ["admin"],
            "username": "bob", "email": "bob@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    let id = uuid::Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(user["roles"], json!(["user"]));
}

#[tokio::test]
async fn username_taken_in_another_case_returns_409() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let r = app
        .register(json!({"username": "ALICE", "email": "other@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": "Username or email already registered"})
    );
}

#[tokio::test]
async fn email_taken_in_another_case_returns_409() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let r = app
        .register(json!({"username": "alice2", "email": "ALICE@Example.COM", "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": "Username or email already registered"})
    );
}

#[tokio::test]
async fn invalid_fields_are_all_reported_in_one_422() {
    let app = TestApp::spawn().await;
    let r = app
        .register(json!({"username": "a b", "email": "not-an-email", "password": "short"}))
        .await;
    let locs = error_locs(r).await;
    assert!(
        locs.contains(&vec!["body".into(), "username".into()]),
        "{locs:?}"
    );
    assert!(
        locs.contains(&vec!["body".into(), "email".into()]),
        "{locs:?}"
    );
    assert!(
        locs.contains(&vec!["body".into(), "password".into()]),
        "{locs:?}"
    );
}

#[tokio::test]
async fn missing_fields_return_422_with_type_missing() {
    let app = TestApp::spawn().await;
    let r = app.register(json!({"username": "carol"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let missing: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "missing")
        .map(|e| e["loc"][1].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["email", "password"]);
}

#[tokio::test]
async fn username_length_and_charset_rules() {
    let app = TestApp::spawn().await;
    for bad in ["ab", &"x".repeat(33), "with space", "üser", "semi;colon"] {
        let r = app
            .register(json!({"username": bad, "email": "e@example.com", "password": PASSWORD}))
            .await;
        assert_eq!(error_locs(r).await, [["body", "username"]], "{bad}");
    }
    for good in ["abc", "a.b-c_d", &"x".repeat(32)] {
        let r = app
            .register(json!({"username": good, "email": format!("{}@example.com", good.len()), "password": PASSWORD}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{good}");
    }
}

#[tokio::test]
async fn email_over_254_bytes_is_refused() {
    let app = TestApp::spawn().await;
    let email = format!("{}@example.com", "a".repeat(243));
    assert_eq!(email.len(), 255);
    let r = app
        .register(json!({"username": "dave", "email": email, "password": PASSWORD}))
        .await;
    assert_eq!(error_locs(r).await, [["body", "email"]]);
}

#[tokio::test]
async fn common_passwords_are_refused() {
    let app = TestApp::spawn().await;
    for common in ["password", "12345678", "iloveyou", "Sunshine", "football1"] {
        let r = app
            .register(json!({"username": "erin", "email": "erin@example.com", "password": common}))
            .await;
        assert_eq!(error_locs(r).await, [["body", "password"]], "{common}");
    }
}

#[tokio::test]
async fn password_equal_to_username_or_email_is_refused() {
    let app = TestApp::spawn().await;
    let r = app
        .register(
            json!({"username": "frankfurter", "email": "f@example.com", "password": "FrankFurter"}),
        )
        .await;
    assert_eq!(error_locs(r).await, [["body", "password"]]);
    let r = app
        .register(json!({"username": "frank", "email": "frank@example.com", "password": "frank@example.com"}))
        .await;
    assert_eq!(error_locs(r).await, [["body", "password"]]);
}

#[tokio::test]
async fn password_length_limits_count_characters() {
    let app = TestApp::spawn().await;
    let r = app
        .register(
            json!({"username": "gina", "email": "gina@example.com", "password": "x".repeat(1025)}),
        )
        .await;
    assert_eq!(error_locs(r).await, [["body", "password"]]);
    // Eight characters of two bytes each is long enough.
    let r = app
        .register(json!({"username": "gina", "email": "gina@example.com", "password": "éàüöçñßø"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn full_name_over_128_characters_is_refused() {
    let app = TestApp::spawn().await;
    let r = app
        .register(json!({"username": "hank", "email": "hank@example.com", "password": PASSWORD, "full_name": "n".repeat(129)}))
        .await;
    assert_eq!(error_locs(r).await, [["body", "full_name"]]);
}

#[tokio::test]
async fn wrong_field_type_returns_422() {
    let app = TestApp::spawn().await;
    let r = app
        .register(json!({"username": 42, "email": "i@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "string_type");
}

#[tokio::test]
async fn malformed_json_returns_422_json_invalid() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.at("/users"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["loc"][0], "body");
}

#[tokio::test]
async fn json_that_is_not_an_object_returns_422() {
    let app = TestApp::spawn().await;
    let r = app.register(json!(["alice"])).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn form_body_on_a_json_route_returns_415() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.at("/users"))
        .form(&[
            ("username", "ivan"),
            ("email", "ivan@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
}

#[tokio::test]
async fn body_over_64_kib_returns_413() {
    let app = TestApp::spawn().await;
    let big = json!({"username": "jack", "email": "jack@example.com", "password": PASSWORD, "pad": "x".repeat(70 * 1024)});
    let r = app.register(big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn closed_registration_returns_403() {
    let app = TestApp::spawn_with(&[("WARDEN_REGISTRATION", "closed")]).await;
    let r = app
        .register(json!({"username": "kate", "email": "kate@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Registration is closed"}));
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_with_owasp_parameters_by_default() {
    let app = TestApp::spawn_with(&[
        ("WARDEN_ARGON2_MEMORY_KIB", "19456"),
        ("WARDEN_ARGON2_ITERATIONS", "2"),
    ])
    .await;
    app.register_ok("liam").await;
    let store = app.store().await;
    let user = store.user_by_login("liam").await.unwrap().unwrap();
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        &user.password_hash[..30]
    );
    assert!(!user.password_hash.contains(PASSWORD));
    // And with no setting at all, the configuration defaults are OWASP's.
    let defaults = warden::config::Config::load_from(None, Vec::new()).unwrap();
    assert_eq!(
        (
            defaults.passwords.argon2.memory_kib,
            defaults.passwords.argon2.iterations,
            defaults.passwords.argon2.parallelism
        ),
        (19456, 2, 1)
    );
}

/// Issue 14's look-alike and smuggled addresses: two `@`, invisible
/// format characters, control characters, Unicode local parts.
const BAD_EMAILS: &[&str] = &[
    "\"admin@example.com\"@evil.com",
    "admin@example.com@evil.com",
    "ad\u{200b}min@example.com",
    "admin@exam\u{200d}ple.com",
    "admin@example.com\u{202e}",
    "ad\u{2066}min@example.com",
    "admin@ex\u{ad}ample.com",
    "\u{430}dmin@example.com",
    "admin\u{0}@example.com",
    "admin@example.com\u{85}",
];

#[tokio::test]
async fn smuggled_and_look_alike_emails_are_422() {
    let app = TestApp::spawn().await;
    for (i, email) in BAD_EMAILS.iter().enumerate() {
        let r = app
            .register(json!({"username": format!("user{i}"), "email": email, "password": PASSWORD}))
            .await;
        assert_eq!(error_locs(r).await, [["body", "email"]], "{email:?}");
    }
}

#[tokio::test]
async fn idn_domains_are_stored_in_punycode() {
    let app = TestApp::spawn().await;
    // A Cyrillic а in "exаmple.com": stored as what it is, not as a
    // look-alike of example.com.
    let r = app
        .register(json!({"username": "mallory", "email": "admin@ex\u{430}mple.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    let email = user["email"].as_str().unwrap();
    assert!(
        email.starts_with("admin@xn--") && email.is_ascii(),
        "{email}"
    );
    let r = app
        .register(
            json!({"username": "bert", "email": "bert@b\u{fc}cher.example", "password": PASSWORD}),
        )
        .await;
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "bert@xn--bcher-kva.example");
    // The Unicode and the punycode spelling are one address.
    let r = app
        .register(json!({"username": "bert2", "email": "bert@xn--bcher-kva.example", "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // And either spelling signs in.
    for login in ["bert@b\u{fc}cher.example", "BERT@xn--bcher-kva.example"] {
        assert_eq!(
            app.login(login, PASSWORD).await.status(),
            StatusCode::OK,
            "{login}"
        );
    }
}

#[tokio::test]
async fn full_names_with_format_or_control_characters_are_422() {
    let app = TestApp::spawn().await;
    for (i, name) in [
        "Ali\u{200b}ce",
        "\u{202e}ecilA",
        "Alice\u{0}",
        "Alice\u{1b}[2J",
        "Alice\u{9b}",
    ]
    .iter()
    .enumerate()
    {
        let r = app
            .register(json!({
                "username": format!("user{i}"), "email": format!("user{i}@example.com"),
                "password": PASSWORD, "full_name": name,
            }))
            .await;
        assert_eq!(error_locs(r).await, [["body", "full_name"]], "{name:?}");
    }
}
