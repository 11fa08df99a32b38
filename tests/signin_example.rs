//! Black-box tests of `examples/signin.rs`: a real warden, the example app
//! on its own port, and a "browser" (reqwest with a cookie jar of its own)
//! that clicks through warden's hosted login and consent pages by their
//! form fields, the way a person would.

#[allow(dead_code)] // `main` is for `cargo run --example signin` only
#[path = "../examples/signin.rs"]
mod signin;
#[path = "support/warden.rs"]
mod support;

use std::collections::BTreeMap;

use reqwest::{Client, Response, StatusCode, header};
use support::{PASSWORD, Warden};
use tokio::net::TcpListener;

/// A browser: cookies by name for the one host both servers share
/// (127.0.0.1; cookies do not tell ports apart), no automatic redirects.
struct Browser {
    http: Client,
    cookies: BTreeMap<String, String>,
}

/// A form of a page: where it posts, and its fields (hidden inputs,
/// inputs with a value, and the submit buttons' names and values).
#[derive(Debug)]
struct Form {
    action: String,
    fields: Vec<(String, String)>,
    buttons: Vec<(String, String)>,
}

/// The value of `name="..."` in a tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
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

/// The first `<form method="post">` of `html`.
fn post_form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>")? + start;
    let form = &html[start..end];
    let open = &form[..form.find('>')?];
    let action = attribute(open, "action").unwrap_or_default();
    let mut fields = Vec::new();
    let mut buttons = Vec::new();
    for (i, _) in form.match_indices('<') {
        let tag = &form[i..i + form[i..].find('>').unwrap_or(0)];
        let Some(name) = attribute(tag, "name") else {
            continue;
        };
        let value = attribute(tag, "value").unwrap_or_default();
        if tag.starts_with("<button") {
            buttons.push((name, value));
        } else if tag.starts_with("<input") {
            fields.push((name, value));
        }
    }
    Some(Form {
        action,
        fields,
        buttons,
    })
}

fn resolve(base: &str, target: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(target))
        .expect("a resolvable URL")
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
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
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

    async fn post(&mut self, url: &str, form: &[(String, String)]) -> Response {
        let origin = url::Url::parse(url).unwrap().origin().ascii_serialization();
        let r = self
            .http
            .post(url)
            .header(header::COOKIE, self.cookie_header())
            .header(header::ORIGIN, origin)
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Follows redirects and answers warden's pages — the login form with
    /// `username`/`password`, the consent page with `decision` — until a
    /// page that is neither; returns its status, its text and its URL.
    async fn sign_in(
        &mut self,
        mut response: Response,
        mut url: String,
        username: &str,
        decision: &str,
    ) -> (StatusCode, String, String) {
        for _ in 0..20 {
            if response.status().is_redirection() {
                let location = response.headers()[header::LOCATION].to_str().unwrap();
                url = resolve(&url, location);
                response = self.get(&url).await;
                continue;
            }
            let status = response.status();
            let html = response.text().await.unwrap();
            let form = post_form(&html);
            let Some(form) = form.filter(|_| status == StatusCode::OK) else {
                return (status, html, url);
            };
            let mut fields = form.fields.clone();
            if fields.iter().any(|(name, _)| name == "password") {
                for (name, value) in &mut fields {
                    match name.as_str() {
                        "username" => *value = username.to_owned(),
                        "password" => *value = PASSWORD.to_owned(),
                        _ => {}
                    }
                }
            } else if form.buttons.iter().any(|(name, _)| name == "decision") {
                fields.push(("decision".to_owned(), decision.to_owned()));
            } else {
                // Not one of warden's pages (the example's own).
                return (status, html, url);
            }
            let action = resolve(&url, &form.action);
            response = self.post(&action, &fields).await;
            url = action;
        }
        panic!("more than 20 steps signing in");
    }
}

struct TestApp {
    warden: Warden,
    app_url: String,
}

impl TestApp {
    async fn spawn() -> Self {
        let warden = Warden::spawn().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_url = format!("http://{}", listener.local_addr().unwrap());
        let redirect_uri = format!("{app_url}/callback");
        let (client, secret) = warden::auth::clients::create(
            warden.state(),
            warden::auth::clients::NewClient {
                name: "Sign-in example".to_owned(),
                redirect_uris: vec![redirect_uri.clone()],
                ..Default::default()
            },
            None,
            None,
            warden::auth::tokens::now(),
        )
        .await
        .expect("client created");
        let registration = signin::Registration {
            client_id: client.id.to_string(),
            client_secret: secret.expect("a confidential client has a secret"),
        };
        let metadata = signin::discover(&Client::new(), &warden.url)
            .await
            .expect("warden's metadata");
        let router = signin::app(metadata, registration, &redirect_uri).expect("the app");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { warden, app_url }
    }

    /// Clicks "Sign in with warden" and goes through warden's pages.
    async fn sign_in(&self, browser: &mut Browser, username: &str, decision: &str) -> String {
        let start = format!("{}/login", self.app_url);
        let response = browser.post(&start, &[]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let (_, page, url) = browser.sign_in(response, start, username, decision).await;
        assert!(url.starts_with(&self.app_url), "ended at {url}: {page}");
        page
    }
}

#[tokio::test]
async fn a_user_signs_in_through_warden_and_the_app_shows_who_they_are() {
    let app = TestApp::spawn().await;
    let http = Client::new();
    let alice = app.warden.sign_up(&http, "alice").await;
    let mut browser = Browser::new();
    let page = app.sign_in(&mut browser, "alice", "allow").await;
    assert!(page.contains("Signed in"), "{page}");
    assert!(page.contains("<strong>alice</strong>"), "{page}");
    assert!(page.contains(&alice.id), "{page}");
    // The app never saw the password: warden's session list shows the
    // app's session, opened through the client.
    let sessions: serde_json::Value = http
        .get(format!("{}/users/me/sessions", app.warden.url))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(sessions.as_array().unwrap().len() >= 2, "{sessions}");
}

#[tokio::test]
async fn a_second_sign_in_needs_no_password_and_sign_out_revokes_at_warden() {
    let app = TestApp::spawn().await;
    let http = Client::new();
    app.warden.sign_up(&http, "alice").await;
    let mut browser = Browser::new();
    assert!(
        app.sign_in(&mut browser, "alice", "allow")
            .await
            .contains("Signed in")
    );
    let r = browser.post(&format!("{}/logout", app.app_url), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let home = browser.get(&format!("{}/", app.app_url)).await;
    assert!(home.text().await.unwrap().contains("Not signed in"));
    // Signed in at warden still (its browser session): straight back,
    // without the login form.
    let start = format!("{}/login", app.app_url);
    let mut response = browser.post(&start, &[]).await;
    let mut url = start;
    let mut steps = 0;
    while response.status().is_redirection() {
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        url = resolve(&url, location);
        response = browser.get(&url).await;
        steps += 1;
        assert!(steps < 10);
    }
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("name=\"password\""),
        "asked for the password again at {url}"
    );
}

#[tokio::test]
async fn denying_consent_shows_that_the_sign_in_was_not_allowed() {
    let app = TestApp::spawn().await;
    app.warden.sign_up(&Client::new(), "alice").await;
    let mut browser = Browser::new();
    let page = app.sign_in(&mut browser, "alice", "deny").await;
    assert!(page.contains("You did not allow the sign-in."), "{page}");
}

#[tokio::test]
async fn a_callback_not_started_in_this_browser_is_refused() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new();
    let r = browser
        .get(&format!(
            "{}/callback?code=x&state=y&iss={}",
            app.app_url, app.warden.issuer
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not started from this browser")
    );
}
