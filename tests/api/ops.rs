use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::Value;
use warden::http::body::FieldSpec;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn jwks_publishes_the_signing_key() {
    let app = TestApp::spawn().await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].is_string());
    assert!(
        key.get("d").is_none(),
        "private key material must never be published"
    );
}

#[tokio::test]
async fn hs256_publishes_no_access_token_key_only_the_id_token_key() {
    let app = TestApp::spawn_with(&[("WARDEN_JWT_ALGORITHM", "HS256")]).await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    // The shared secret is never published; the RS256 key that signs id
    // tokens is.
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["kty"], "RSA");
    assert!(keys[0].get("d").is_none() && keys[0].get("k").is_none());
}

#[tokio::test]
async fn restart_keeps_the_signing_key() {
    for alg in ["EdDSA", "ES256", "RS256", "HS256"] {
        let app = TestApp::spawn_with(&[("WARDEN_JWT_ALGORITHM", alg)]).await;
        let (_, token) = app.user_with_token("alice").await;
        let kid_before = token.split('.').next().unwrap().to_owned();
        let jwks_before: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        let dir = app.stop().await;
        let app = TestApp::spawn_in(dir, &[("WARDEN_JWT_ALGORITHM", alg)]).await;
        let jwks_after: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(jwks_before, jwks_after, "{alg}");
        // Same key id in the header of a token issued after the restart.
        let token = app.token("alice").await;
        assert_eq!(token.split('.').next().unwrap(), kid_before, "{alg}");
    }
}

#[tokio::test]
async fn token_issued_before_a_restart_verifies_after_it() {
    let dir = crate::helpers::TestEnv::new().await;
    let issuer = "http://auth.example.test";
    let app = TestApp::spawn_in(dir.clone(), &[("WARDEN_ISSUER", issuer)]).await;
    let (_, token) = app.user_with_token("alice").await;
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &[("WARDEN_ISSUER", issuer)]).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
}

/// Every route of API.md that this server implements, with its method.
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("/users", "post"),
    ("/users", "get"),
    ("/users/{id}", "get"),
    ("/users/{id}", "patch"),
    ("/users/{id}", "delete"),
    ("/users/me", "get"),
    ("/users/me", "patch"),
    ("/users/me", "delete"),
    ("/users/me/password", "put"),
    ("/token", "post"),
    ("/.well-known/jwks.json", "get"),
    ("/.well-known/oauth-authorization-server", "get"),
    ("/token/revoke", "post"),
    ("/token/introspect", "post"),
    ("/logout", "post"),
    ("/audit", "get"),
    ("/users/me/sessions", "get"),
    ("/users/me/sessions/{id}", "delete"),
    ("/clients", "post"),
    ("/clients", "get"),
    ("/clients/{id}", "get"),
    ("/clients/{id}", "patch"),
    ("/clients/{id}", "delete"),
    ("/clients/{id}/secret", "post"),
    ("/users/me/consents", "get"),
    ("/users/me/consents/{client_id}", "delete"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
];

#[tokio::test]
async fn openapi_documents_every_route_with_the_password_flow() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in CONTRACT_ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is missing from /openapi.json"
        );
    }
    let flow = &doc["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"];
    assert_eq!(flow["tokenUrl"], "/token");
    assert!(flow["scopes"]["me"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn every_operation_has_a_plain_summary_and_a_description() {
    // utoipa takes the summary from the first paragraph of the handler's
    // doc comment and the description from the rest; a comment that
    // drifts onto a neighbouring item leaves the operation without them
    // (it happened to `POST /users`). Swagger UI renders descriptions as
    // Markdown but shows summaries as they are, so a summary with
    // backticks shows the backticks.
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut operations = 0;
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let summary = operation["summary"].as_str().unwrap_or("");
            let description = operation["description"].as_str().unwrap_or("");
            if summary.trim().is_empty() {
                problems.push(format!("{method} {path} has no summary"));
            }
            if description.trim().is_empty() {
                problems.push(format!("{method} {path} has no description"));
            }
            // Markdown that only renders in a description.
            if summary.contains(['`', '*', '[', '\n']) {
                problems.push(format!("{method} {path}: summary {summary:?} has Markdown or a line break"));
            }
            if summary.len() > 60 {
                problems.push(format!("{method} {path}: summary {summary:?} is not short"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(operations >= CONTRACT_ROUTES.len(), "{operations} operations");
}

/// The examples of a response's JSON body: `example`, or every value of
/// `examples`.
fn examples(response: &Value) -> Vec<Value> {
    let content = &response["content"]["application/json"];
    if let Some(example) = content.get("example") {
        return vec![example.clone()];
    }
    content["examples"]
        .as_object()
        .map(|all| all.values().map(|e| e["value"].clone()).collect())
        .unwrap_or_default()
}

/// `path` with each `{parameter}` replaced by a UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') {
                "0193a0c4-0000-7000-8000-000000000000"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_error_response_has_a_real_example_and_the_shared_ones_are_what_warden_sends() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut problems = Vec::new();
    let (_, user_token) = app.user_with_token("plainuser").await;
    let mut checked_401 = 0;
    let mut checked_403 = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                if response["content"]["application/json"].is_null() {
                    continue;
                }
                let all = examples(response);
                if all.is_empty() {
                    problems.push(format!("{method} {path} {status} has no example"));
                }
                for example in &all {
                    let text = example.to_string();
                    if text.contains("\"string\"") || example["detail"].is_null() {
                        problems.push(format!(
                            "{method} {path} {status}: {text} is not a real error body"
                        ));
                    }
                    if status == "422" && !example["detail"][0]["loc"].is_array() {
                        problems.push(format!("{method} {path} 422: {text} is not FastAPI's list"));
                    }
                }
            }
            let url = app.at(&concrete(path));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // The 401 examples are the bodies of a request without a token
            // and with a bad one.
            let unauthorized = examples(&operation["responses"]["401"]);
            // The token endpoint's 401 is RFC 6749's `invalid_client` (a
            // client's authentication), not a bearer token's: its body is
            // checked in client_grants.rs.
            let client_auth = unauthorized.iter().all(|e| e["error"] == "invalid_client");
            if !unauthorized.is_empty() && !client_auth {
                checked_401 += 1;
                for (token, detail) in [(None, "Not authenticated"), (Some("not.a.token"), "Invalid token")] {
                    let expected = serde_json::json!({ "detail": detail });
                    if !unauthorized.contains(&expected) {
                        problems.push(format!("{method} {path}: 401 examples lack {expected}"));
                    }
                    let mut request = app.client.request(m.clone(), &url);
                    if let Some(token) = token {
                        request = request.bearer_auth(token);
                    }
                    let r = request.send().await.unwrap();
                    let got = (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null));
                    if got != (401, expected.clone()) {
                        problems.push(format!("{method} {path} without a good token: {got:?}, documented {expected}"));
                    }
                }
            }
            // A 403 documented as the missing scope is what a `user` token
            // gets on a route that needs another scope.
            let forbidden = examples(&operation["responses"]["403"]);
            let scopes: Vec<&str> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["OAuth2PasswordBearer"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let missing_scope = serde_json::json!({ "detail": "Not enough permissions" });
            if forbidden.contains(&missing_scope) && !scopes.is_empty() && !scopes.contains(&"me") {
                checked_403 += 1;
                let r = app.client.request(m.clone(), &url).bearer_auth(&user_token).send().await.unwrap();
                let got = (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null));
                if got != (403, missing_scope.clone()) {
                    problems.push(format!("{method} {path} with scope me only: {got:?}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked_401 >= 10, "{checked_401} operations with a 401 checked");
    assert!(checked_403 >= 3, "{checked_403} operations with a 403 checked");
}

#[tokio::test]
async fn every_documented_route_is_served() {
    // The other direction: nothing in the document 404s.
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.client.request(m, app.at(path)).send().await.unwrap();
            assert_ne!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert_ne!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_without_other_origins() {
    let app = TestApp::spawn().await;
    let r = app.get("/docs/").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger-ui-bundle.js"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.unwrap().len() > 1_000_000);
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(
        init.contains("\"validatorUrl\": \"none\"") || init.contains("\"validatorUrl\":\"none\""),
        "{init}"
    );
    // No top bar with its "Explore" box, as in FastAPI.
    assert!(
        init.contains("\"layout\": \"BaseLayout\"") || init.contains("\"layout\":\"BaseLayout\""),
        "{init}"
    );
    for page in [html.as_str(), init.as_str()] {
        assert!(
            !page.contains("https://"),
            "a page of /docs references another origin"
        );
    }
}

#[tokio::test]
async fn unknown_routes_get_a_json_404_and_wrong_methods_a_json_405() {
    let app = TestApp::spawn().await;
    let r = app.get("/no/such/route").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "Not Found");
    let r = app.client.delete(app.at("/token")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metrics_count_logins_and_requests() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    app.token("alice").await;
    app.login("alice", "wrong password").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for name in [
        "warden_http_requests_total",
        "warden_http_request_duration_seconds",
        "warden_logins_total",
        "warden_tokens_issued_total",
        "warden_password_hash_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains(r#"result="ok""#) && text.contains(r#"result="failed""#));
    // By matched route and status, never by raw path.
    for series in [
        r#"warden_http_requests_total{route="/users",status="201"}"#,
        r#"warden_http_requests_total{route="/token",status="200"}"#,
        r#"warden_http_request_duration_seconds_count{route="/token"}"#,
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
}

#[tokio::test]
async fn request_durations_are_a_histogram_with_buckets() {
    // The contract says histogram: buckets aggregate across instances,
    // a summary's quantiles do not.
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let text = app.get("/metrics").await.text().await.unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("warden_http_request_duration_seconds"))
        .collect();
    assert!(
        text.contains("# TYPE warden_http_request_duration_seconds histogram"),
        "{series:#?}"
    );
    assert!(
        !series.iter().any(|l| l.contains("quantile=")),
        "{series:#?}"
    );
    let buckets: Vec<&str> = series
        .iter()
        .copied()
        .filter(|l| l.starts_with(r#"warden_http_request_duration_seconds_bucket{route="/healthz",le=""#))
        .collect();
    // Microseconds (a cached-token request) to seconds (a hashing queue).
    for le in ["0.00005", "0.001", "0.1", "1", "10", "+Inf"] {
        assert!(
            buckets.iter().any(|l| l.contains(&format!("le=\"{le}\""))),
            "no bucket le={le} in {buckets:#?}"
        );
    }
    // Cumulative: the +Inf bucket holds every request counted.
    let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    let inf = buckets.iter().find(|l| l.contains(r#"le="+Inf""#)).unwrap();
    let count = series
        .iter()
        .find(|l| l.starts_with(r#"warden_http_request_duration_seconds_count{route="/healthz"}"#))
        .unwrap();
    assert!(value(inf) >= 1.0 && value(inf) == value(count), "{inf} {count}");
}

#[tokio::test]
async fn swagger_ui_offers_the_scopes_of_configured_roles() {
    let app = TestApp::spawn_with_file(
        "[roles.teacher]\nscopes = [\"me\", \"grades:write\"]\n",
        &[],
    )
    .await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let scopes = &doc["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
        ["scopes"];
    assert_eq!(scopes["grades:write"], "Granted by role teacher");
    assert!(scopes["users:read"].is_string());
}

/// Query flags of single routes, read by their handlers (not list
/// queries): the only query parameters without a typed parser.
const QUERY_FLAGS: &[(&str, &str, &str)] = &[
    ("post", "/token", "cookie"),
    ("put", "/users/me/password", "cookie"),
    ("post", "/logout", "all"),
];

/// The names of `fields`, and those of them required.
fn names_and_required(fields: &[FieldSpec]) -> (BTreeSet<String>, BTreeSet<String>) {
    let names = fields.iter().map(|f| f.name.to_owned()).collect();
    let required = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.to_owned())
        .collect();
    (names, required)
}

/// Every body, form and list query in `/openapi.json` is exactly what its
/// parser reads: the same field names, the same required ones, and for
/// JSON bodies the same types (`null` included). The parsers'
/// lists come from running each parser (see `warden::http::body`), so a
/// field added to a parser and not to its schema, or the other way round,
/// fails here.
#[tokio::test]
async fn every_body_and_query_schema_is_what_its_parser_reads() {
    use warden::http::body::{form_fields, json_fields, query_fields};
    use warden::http::routes::audit::AuditParams;
    use warden::http::routes::clients::{ClientListQuery, ClientRegistration, ClientUpdate};
    use warden::http::routes::end_session::{EndSessionForm, EndSessionQuery};
    use warden::http::routes::revocations::FeedQuery;
    use warden::http::routes::sessions::SessionListQuery;
    use warden::http::routes::token::{IntrospectRequest, RevokeRequest, TokenRequest};
    use warden::http::routes::users::{
        DeleteConfirmation, ListQuery, PasswordChange, ProfileUpdate, RegisterRequest,
    };

    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let roles = warden::domain::roles::Roles::default();
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let bodies: BTreeMap<(&str, &str), (&str, Vec<FieldSpec>)> = BTreeMap::from([
        (("post", "/users"), (json, json_fields::<RegisterRequest>(()))),
        (("patch", "/users/me"), (json, json_fields::<ProfileUpdate>(&roles))),
        (("patch", "/users/{id}"), (json, json_fields::<ProfileUpdate>(&roles))),
        (("delete", "/users/me"), (json, json_fields::<DeleteConfirmation>(()))),
        (
            ("put", "/users/me/password"),
            (json, json_fields::<PasswordChange>(("", ""))),
        ),
        (("post", "/clients"), (json, json_fields::<ClientRegistration>(()))),
        (("patch", "/clients/{id}"), (json, json_fields::<ClientUpdate>(()))),
        (("post", "/token"), (form, form_fields::<TokenRequest>())),
        (("post", "/token/revoke"), (form, form_fields::<RevokeRequest>())),
        (("post", "/session/end"), (form, form_fields::<EndSessionForm>())),
        (
            ("post", "/token/introspect"),
            (form, form_fields::<IntrospectRequest>()),
        ),
    ]);
    let queries: BTreeMap<(&str, &str), Vec<FieldSpec>> = BTreeMap::from([
        (("get", "/users"), query_fields::<ListQuery>()),
        (("get", "/users/me/sessions"), query_fields::<SessionListQuery>()),
        (("get", "/audit"), query_fields::<AuditParams>()),
        (("get", "/clients"), query_fields::<ClientListQuery>()),
        (("get", "/token/revocations"), query_fields::<FeedQuery>()),
        (("get", "/session/end"), query_fields::<EndSessionQuery>()),
    ]);

    let (mut bodies_seen, mut queries_seen) = (BTreeSet::new(), BTreeSet::new());
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let key = (method.as_str(), path.as_str());
            if let Some(body) = operation.get("requestBody") {
                let Some((media_type, parser)) = bodies.get(&key) else {
                    panic!("{method} {path} has a request body but no parser in this test");
                };
                let content = body["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().map(String::as_str).collect::<Vec<_>>(),
                    [*media_type],
                    "{method} {path}"
                );
                let reference = content[*media_type]["schema"]["$ref"].as_str().unwrap();
                let name = reference.strip_prefix("#/components/schemas/").unwrap();
                let schema = &doc["components"]["schemas"][name];
                let names: BTreeSet<String> = schema["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                let required: BTreeSet<String> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default();
                assert_eq!(
                    names_and_required(parser),
                    (names, required),
                    "{method} {path}: the parser of {name} (left) and its schema (right)"
                );
                // A JSON field's type, `null` included; form values are
                // all strings.
                for field in parser.iter().filter(|_| *media_type == json) {
                    let documented = &schema["properties"][field.name]["type"];
                    let documented: BTreeSet<&str> = match documented.as_array() {
                        Some(types) => types.iter().map(|t| t.as_str().unwrap()).collect(),
                        None => documented.as_str().into_iter().collect(),
                    };
                    assert_eq!(
                        field.json_types.iter().copied().collect::<BTreeSet<_>>(),
                        documented,
                        "{method} {path}: the types the parser of {name} accepts for {} (left) and its schema's (right)",
                        field.name
                    );
                }
                bodies_seen.insert(key);
            }
            let mut params: BTreeSet<(String, bool)> = BTreeSet::new();
            for p in operation["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                if p["in"] == "query" && !QUERY_FLAGS.contains(&(method.as_str(), path.as_str(), name)) {
                    params.insert((name.to_owned(), p["required"] == true));
                }
            }
            match queries.get(&key) {
                Some(parser) => {
                    let read: BTreeSet<(String, bool)> = parser
                        .iter()
                        .map(|f| (f.name.to_owned(), f.required))
                        .collect();
                    assert_eq!(
                        read, params,
                        "{method} {path}: the query parser (left) and the parameters (right)"
                    );
                    queries_seen.insert(key);
                }
                None => assert!(
                    params.is_empty(),
                    "{method} {path} has query parameters {params:?} but no parser in this test"
                ),
            }
        }
    }
    assert_eq!(
        bodies_seen,
        bodies.keys().copied().collect(),
        "a parser's route documents no request body"
    );
    assert_eq!(
        queries_seen,
        queries.keys().copied().collect(),
        "a query parser's route is not in /openapi.json"
    );
}
