//! Shared pieces of the reference servers: the user JSON that warden's
//! `GET /users/me` returns, and a tiny command-line parser.

use serde::Serialize;

/// The same shape as warden's `UserView`.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl UserView {
    /// The benchmark's user number `i`: `user{i}`, `user{i}@example.com`.
    pub fn seeded(i: usize) -> Self {
        Self {
            id: format!("0193a0c4-5b8e-7c3a-9f1e-{i:012x}"),
            username: format!("user{i}"),
            email: format!("user{i}@example.com"),
            full_name: None,
            roles: vec!["user".to_owned()],
            disabled: false,
            created_at: "2026-11-28T16:00:00Z".to_owned(),
            updated_at: "2026-11-28T16:00:00Z".to_owned(),
        }
    }
}

/// `--name value` options; anything else is an error.
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    pub fn parse(known: &[&str]) -> Self {
        let mut pairs = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let name = flag.trim_start_matches("--").to_owned();
            if !flag.starts_with("--") || !known.contains(&name.as_str()) {
                eprintln!(
                    "unknown argument {flag:?}; options: --{}",
                    known.join(" --")
                );
                std::process::exit(2);
            }
            let Some(value) = it.next() else {
                eprintln!("{flag} needs a value");
                std::process::exit(2);
            };
            pairs.push((name, value));
        }
        Self { pairs }
    }

    pub fn get(&self, name: &str, default: &str) -> String {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or_else(|| default.to_owned(), |(_, v)| v.clone())
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.pairs.iter().rev().find(|(n, _)| n == name) {
            None => default,
            Some((_, v)) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: not a number: {v:?}");
                std::process::exit(2);
            }),
        }
    }
}
