//! The rule of dependency (docs/architecture.md): domain ← storage ← auth
//! services ← HTTP ← app/CLI. A module may use its own tier and the tiers
//! below it, never one above; nothing below HTTP names axum (or the other
//! HTTP crates), and the domain names no database crate either.
//!
//! One crate keeps the build simple; this test is what makes the tiers
//! real: it reads every source file under `src/` and fails, naming the file
//! and line, when a lower tier reaches up.

use std::path::{Path, PathBuf};

/// The tiers, lowest first, and the paths under `src/` that belong to them.
const TIERS: &[(&str, &[&str])] = &[
    ("domain", &["domain/", "config/"]),
    ("storage", &["storage/", "storage.rs"]),
    ("auth", &["auth/"]),
    ("http", &["http/"]),
    ("app", &["app.rs", "cli.rs", "main.rs", "lib.rs"]),
];

/// Known reaches upward that are still to be removed, each as (file under
/// `src/`, the module it uses) with a line above it saying why: the test
/// fails on any other, and also when one of these is gone (so the list only
/// shrinks). Empty now; a new entry needs a reason and a plan to remove it.
const KNOWN_EXCEPTIONS: &[(&str, &str)] = &[];

/// Crates only the HTTP tier (and above) may name.
const HTTP_CRATES: &[&str] = &[
    "axum",
    "axum_extra",
    "tower",
    "tower_http",
    "hyper",
    "hyper_util",
    "utoipa_axum",
    "utoipa_swagger_ui",
];

/// Crates the domain may not name (it is about values, not their storage).
const STORAGE_CRATES: &[&str] = &["sqlx"];

fn tier_of(relative: &str) -> Option<usize> {
    TIERS
        .iter()
        .position(|(_, prefixes)| prefixes.iter().any(|p| relative.starts_with(p)))
}

/// The tier a `crate::…` path names, by its first segment.
fn tier_of_module(module: &str) -> Option<usize> {
    let file = match module {
        "domain" | "config" | "storage" | "auth" | "http" => format!("{module}/"),
        other => format!("{other}.rs"),
    };
    tier_of(&file)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::first_segment` and every external crate a line names
/// (comments are skipped: a doc link is not a dependency).
fn names_in(line: &str) -> (Vec<String>, Vec<String>) {
    let code = line.trim_start();
    if code.starts_with("//") {
        return (Vec::new(), Vec::new());
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut modules = Vec::new();
    let mut crates = Vec::new();
    for (at, _) in code.match_indices("::") {
        let before = &code[..at];
        let start = before.rfind(|c: char| !is_ident(c)).map_or(0, |i| i + 1);
        let head = &before[start..];
        // `a::b::c` counts once, by its first segment.
        if start >= 2 && &before[start - 2..start] == "::" {
            continue;
        }
        let after = &code[at + 2..];
        let next: String = after.chars().take_while(|c| is_ident(*c)).collect();
        if head == "crate" {
            modules.push(next);
        } else if !head.is_empty() {
            crates.push(head.to_owned());
        }
    }
    // `use axum;`-style and `extern crate` lines name a crate without `::`.
    for word in code.split(|c: char| !is_ident(c)) {
        if HTTP_CRATES.contains(&word) || STORAGE_CRATES.contains(&word) {
            crates.push(word.to_owned());
        }
    }
    crates.sort();
    crates.dedup();
    (modules, crates)
}

#[test]
fn no_tier_reaches_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let mut violations = Vec::new();
    let mut excepted = vec![false; KNOWN_EXCEPTIONS.len()];
    for file in &files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let Some(tier) = tier_of(&relative) else {
            violations.push(format!("src/{relative}: in no tier; add it to TIERS in tests/architecture.rs and to docs/architecture.md"));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let (modules, crates) = names_in(line);
            for module in modules {
                if let Some(used) = tier_of_module(&module)
                    && used > tier
                {
                    if let Some(i) = KNOWN_EXCEPTIONS
                        .iter()
                        .position(|&(f, m)| f == relative && m == module)
                    {
                        excepted[i] = true;
                        continue;
                    }
                    violations.push(format!(
                        "src/{relative}:{}: the {} tier uses crate::{module} of the {} tier",
                        n + 1,
                        TIERS[tier].0,
                        TIERS[used].0
                    ));
                }
            }
            for name in crates {
                let http = HTTP_CRATES.contains(&name.as_str());
                let storage = STORAGE_CRATES.contains(&name.as_str());
                if (http && tier < 3) || (storage && tier < 1) {
                    violations.push(format!(
                        "src/{relative}:{}: the {} tier names the crate `{name}`",
                        n + 1,
                        TIERS[tier].0
                    ));
                }
            }
        }
    }
    for (i, &(file, module)) in KNOWN_EXCEPTIONS.iter().enumerate() {
        if !excepted[i] {
            violations.push(format!(
                "src/{file} no longer uses crate::{module}: remove it from KNOWN_EXCEPTIONS"
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "{} dependencies against the tiers (docs/architecture.md):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// The scanner itself sees what it must see.
#[test]
fn the_scanner_finds_crate_paths_and_http_crates() {
    let (m, c) = names_in("use crate::http::error::Error;");
    assert_eq!(m, ["http"]);
    assert!(c.is_empty());
    let (m, c) = names_in("    let r = axum::Json(x); crate::auth::tokens::now()");
    assert_eq!(m, ["auth"]);
    assert!(c.contains(&"axum".to_owned()));
    let (m, c) = names_in("/// see [`crate::http::state`] and axum::Router");
    assert!(m.is_empty() && c.is_empty());
    assert_eq!(tier_of_module("config"), Some(0));
    assert_eq!(tier_of_module("app"), Some(4));
    assert_eq!(tier_of("auth/tokens.rs"), Some(2));
}
