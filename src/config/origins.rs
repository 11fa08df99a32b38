//! The `cors_origins` setting's value: the exact browser origins allowed
//! to call warden from other origins. The CORS layer built from it is
//! HTTP's business (`http::cors`).

/// Exact origins (`https://app.example.com`), normalised as browsers send
/// them in the `Origin` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// Parses a comma-separated list of origins. Refuses `*`, `null`, and
    /// anything with a path, query, fragment or credentials.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut origins = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let origin = parse_origin(item)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Self { origins })
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Whether `origin` (an `Origin` header's value) is in the list.
    pub fn contains(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.origins.iter().map(String::as_str)
    }
}

fn parse_origin(item: &str) -> Result<String, String> {
    if item.contains('*') {
        return Err(
            "wildcards are not allowed: responses carry credentials, so list exact origins such as https://app.example.com"
                .to_owned(),
        );
    }
    let url = url::Url::parse(item)
        .map_err(|e| format!("{item:?} is not an origin like https://app.example.com: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{item:?} is not an http:// or https:// origin"));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || item.ends_with('/')
    {
        return Err(format!(
            "{item:?} is not an origin: only scheme, host and port, no path (like https://app.example.com)"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_are_kept_in_browser_form() {
        let o = AllowedOrigins::parse(
            "https://App.Example.com, http://localhost:5173,https://a.test:443",
        )
        .unwrap();
        assert!(o.contains("https://app.example.com"));
        assert!(o.contains("http://localhost:5173"));
        assert!(o.contains("https://a.test"), "the default port is elided");
        assert!(!o.contains("https://evil.example.com"));
        assert!(!o.contains("http://app.example.com"), "scheme matters");
    }

    #[test]
    fn wildcards_paths_and_junk_are_refused() {
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "ftp://app.example.com",
            "https://*.example.com",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
        assert!(AllowedOrigins::parse("").unwrap().is_empty());
    }
}
