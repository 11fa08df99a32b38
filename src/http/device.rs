//! A person's name for the device behind a user agent: "Firefox on Linux",
//! "Chrome on Android", "Safari on iPhone", "curl". Shown in the session
//! list, where someone decides which sessions are theirs; the raw user
//! agent stays beside it.
//!
//! Hand-written rather than a parser crate: the one maintained-looking
//! candidate that builds here, `woothee` 0.13, pulls `regex` and
//! `lazy_static` into the server build, names macOS "Mac OSX" and curl
//! "HTTP Library", and has not followed the browsers' reduced user agents
//! (every Windows after 8 is "Windows 10" there). A label of browser family
//! and platform needs a few ordered substring checks, tested below on the
//! user agents of current browsers and common HTTP clients. It is a
//! display hint only: user agents are whatever the client says.

/// Command-line tools and HTTP libraries, by the product token they start
/// with, and the name shown for them.
const TOOLS: &[(&str, &str)] = &[
    ("curl/", "curl"),
    ("Wget/", "Wget"),
    ("HTTPie/", "HTTPie"),
    ("python-requests/", "Python requests"),
    ("python-httpx/", "Python HTTPX"),
    ("Python-urllib/", "Python urllib"),
    ("aiohttp/", "Python aiohttp"),
    ("Go-http-client/", "Go HTTP client"),
    ("node-fetch", "node-fetch"),
    ("node", "Node.js"),
    ("undici", "Node.js"),
    ("axios/", "axios"),
    ("okhttp/", "OkHttp"),
    ("PostmanRuntime/", "Postman"),
    ("insomnia/", "Insomnia"),
    ("reqwest/", "reqwest"),
    ("Java-http-client/", "Java HTTP client"),
    ("Apache-HttpClient/", "Apache HttpClient"),
    ("Dart/", "Dart"),
    ("libwww-perl/", "Perl LWP"),
    ("Ruby", "Ruby"),
    ("schemathesis/", "Schemathesis"),
];

/// Browsers, by a token of theirs, in the order they must be tried: most
/// browsers also claim to be Chrome and Safari, and Chrome claims Safari.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("Opera", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Vivaldi/", "Vivaldi"),
    ("YaBrowser/", "Yandex Browser"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Trident/", "Internet Explorer"),
    ("MSIE ", "Internet Explorer"),
    ("Version/", "Safari"),
];

/// Platforms, in the order they must be tried (Android says Linux, iPad
/// and iPhone say "like Mac OS X").
const PLATFORMS: &[(&str, &str)] = &[
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("iPod", "iPod"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows Phone", "Windows Phone"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("FreeBSD", "FreeBSD"),
    ("OpenBSD", "OpenBSD"),
    ("Linux", "Linux"),
    ("X11", "Unix"),
];

/// The longest name shown for an unknown client's product token.
const MAX_PRODUCT: usize = 40;

/// The device name for `user_agent`.
pub fn describe(user_agent: &str) -> String {
    let ua = user_agent.trim();
    if ua.is_empty() {
        return "Unknown device".to_owned();
    }
    if let Some((_, name)) = TOOLS.iter().find(|(token, _)| ua.starts_with(token)) {
        return (*name).to_owned();
    }
    let browser = BROWSERS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name);
    let platform = PLATFORMS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name);
    // An app's web view on iOS names no browser: it is Safari's engine.
    let browser = browser.or_else(|| {
        (ua.contains("AppleWebKit") && matches!(platform, Some("iPhone" | "iPad" | "iPod")))
            .then_some("Safari")
    });
    match (browser, platform) {
        (Some(b), Some(p)) => format!("{b} on {p}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(p)) => format!("A browser on {p}"),
        // Not a browser: the first product token (`name/version`) is the
        // best name there is.
        (None, None) => {
            let product = ua.split(['/', ' ', ';', '(']).next().unwrap_or(ua);
            let product: String = product
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_PRODUCT)
                .collect();
            if product.is_empty() {
                "Unknown device".to_owned()
            } else {
                product
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn current_browsers_are_named_with_their_platform() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Windows",
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome on iPad",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
                "Firefox on iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet on Android",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on ChromeOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.33 Safari/537.36",
                "Headless Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
                "Internet Explorer on Windows",
            ),
        ];
        for (ua, name) in cases {
            assert_eq!(describe(ua), name, "{ua}");
        }
    }

    #[test]
    fn tools_and_libraries_are_named_by_their_product() {
        let cases = [
            ("curl/8.11.0", "curl"),
            ("Wget/1.21.4", "Wget"),
            ("python-requests/2.32.3", "Python requests"),
            ("python-httpx/0.28.1", "Python HTTPX"),
            ("Go-http-client/1.1", "Go HTTP client"),
            ("okhttp/4.12.0", "OkHttp"),
            ("PostmanRuntime/7.42.0", "Postman"),
            ("HTTPie/3.2.4", "HTTPie"),
            ("node", "Node.js"),
            ("my-service/2.0 (+https://example.com)", "my-service"),
        ];
        for (ua, name) in cases {
            assert_eq!(describe(ua), name, "{ua}");
        }
    }

    #[test]
    fn unknown_and_odd_user_agents_still_get_a_short_name() {
        assert_eq!(describe(""), "Unknown device");
        assert_eq!(describe("   "), "Unknown device");
        assert_eq!(
            describe("Mozilla/5.0 (X11; Linux x86_64)"),
            "A browser on Linux"
        );
        assert_eq!(describe(&"x".repeat(300)).chars().count(), 40);
        assert_eq!(describe("(((("), "Unknown device");
    }
}
