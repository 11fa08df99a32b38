//! The pages around the API: `GET /`, the icons, trailing-slash
//! redirects, the redirect of a loopback alias to the issuer, and the
//! device names of the session list.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH, LOCATION};
use reqwest::{Client, StatusCode, redirect};
use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp};

/// A client that shows redirects instead of following them.
fn manual() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_landing_page_links_the_account_page_the_docs_and_the_metadata() {
    let app = TestApp::spawn().await;
    let r = manual().get(app.at("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(r.headers().get("set-cookie").is_none());
    let html = r.text().await.unwrap();
    for link in [
        "href=\"/account\"",
        "href=\"/docs\"",
        "href=\"/.well-known/oauth-authorization-server\"",
        "href=\"/favicon.svg\"",
    ] {
        assert!(html.contains(link), "{link} missing from GET /");
    }
    assert!(!html.contains("<script"), "the landing page needs no script");
    // Every link on it is served.
    for path in ["/account", "/openapi.json", "/.well-known/jwks.json"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_icons_are_served_with_caching_headers_and_revalidate_to_304() {
    let app = TestApp::spawn().await;
    for (path, kind, magic) in [
        ("/favicon.ico", "image/x-icon", &[0u8, 0, 1, 0][..]),
        ("/favicon.svg", "image/svg+xml", b"<svg".as_slice()),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[CONTENT_TYPE], kind);
        assert_eq!(r.headers()[CACHE_CONTROL], "public, max-age=86400");
        let etag = r.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
        let body = r.bytes().await.unwrap();
        assert!(body.starts_with(magic), "{path} is not a {kind}");
        let again = app
            .client
            .get(app.at(path))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
        let other = app
            .client
            .get(app.at(path))
            .header(IF_NONE_MATCH, "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }
    // The account page links the icon.
    let html = app.get("/account").await.text().await.unwrap();
    assert!(html.contains("<link rel=\"icon\" href=\"/favicon.svg\""));
}

#[tokio::test]
async fn a_trailing_slash_redirects_to_the_route_and_an_unknown_path_stays_404() {
    let app = TestApp::spawn().await;
    let http = manual();
    for (from, to) in [
        ("/account/", "/account"),
        ("/account//", "/account"),
        ("/users/me/?x=1", "/users/me?x=1"),
        ("/openapi.json/", "/openapi.json"),
        ("/healthz/", "/healthz"),
        ("/users/0193a0c4-0000-7000-8000-000000000000/", "/users/0193a0c4-0000-7000-8000-000000000000"),
    ] {
        let r = http.get(app.at(from)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT, "{from}");
        assert_eq!(r.headers()[LOCATION], to, "{from}");
        let head = http.head(app.at(from)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::PERMANENT_REDIRECT, "HEAD {from}");
    }
    // Followed, it lands on the page.
    let r = app.get("/account/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.url().path() == "/account");
    // Not a route without the slash either: the JSON 404, no redirect.
    for path in ["/nope/", "/account/nope/", "//", "//account/", "/users/me/sessions/x/y/"] {
        let r = http.get(app.at(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"], "Not Found");
    }
    // Only reads are redirected: a POST with a slash is a 404, not a
    // redirect that would make the client send its body again.
    let r = http
        .post(app.at("/token/"))
        .form(&[("username", "a"), ("password", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_page_opened_at_another_loopback_name_is_sent_to_the_issuer() {
    // The test server's issuer is http://127.0.0.1:PORT; a browser at
    // http://localhost:PORT sends `Host: localhost:PORT`.
    let app = TestApp::spawn().await;
    let port = app.url.rsplit(':').next().unwrap().to_owned();
    let http = manual();
    for (host, path) in [
        (format!("localhost:{port}"), "/account"),
        (format!("localhost:{port}"), "/account?next=1"),
        (format!("[::1]:{port}"), "/"),
    ] {
        let r = http
            .get(app.at(path))
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{host}{path}");
        assert_eq!(r.headers()[LOCATION], format!("{}{path}", app.url));
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }
    // The issuer's own address, another port or a name that is not
    // loopback: the page itself.
    for host in [
        format!("127.0.0.1:{port}"),
        "localhost:1".to_owned(),
        format!("auth.internal:{port}"),
    ] {
        let r = http
            .get(app.at("/account"))
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    // The API is not redirected: clients of it may use any name.
    let r = http
        .get(app.at("/healthz"))
        .header(HOST, format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn sessions_name_their_device_from_the_user_agent() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let mut token = String::new();
    for agent in [
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "curl/8.11.0",
    ] {
        let r = Client::builder()
            .user_agent(agent)
            .build()
            .unwrap()
            .post(app.at("/token"))
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        token = body["access_token"].as_str().unwrap().to_owned();
    }
    let sessions: Value = app
        .client
        .get(app.at("/users/me/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut devices: Vec<(String, String)> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            // The contract's fields are all still there.
            for field in ["id", "created_at", "last_used_at", "expires_at", "user_agent", "ip", "current"] {
                assert!(s.get(field).is_some(), "{field} missing: {s}");
            }
            (
                s["device"].as_str().unwrap().to_owned(),
                s["user_agent"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    devices.sort();
    let names: Vec<&str> = devices.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(names, ["Firefox on Linux", "Safari on iPhone", "curl"]);
    assert!(devices[2].1.starts_with("curl/"), "the raw user agent stays");
}
