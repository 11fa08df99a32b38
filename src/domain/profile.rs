//! The user model and its input rules ("parse, don't validate").

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::error::FieldError;
use crate::domain::user::UserRecord;

/// The case-folded form used for uniqueness and login: `Alice` and `alice`
/// are one account. Usernames are ASCII; emails fold with Unicode lowercase.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The folded form of a login as typed (a username or an email): like
/// [`fold`], with an email's Unicode domain in its ASCII (punycode) form,
/// which is how [`Email::parse`] stores it — so `bob@bücher.example`
/// finds the account stored as `bob@xn--bcher-kva.example`.
pub fn fold_login(login: &str) -> String {
    if let Some((local, domain)) = login.rsplit_once('@')
        && !domain.is_ascii()
        && let Ok(ascii) = idna::domain_to_ascii(domain)
    {
        return fold(&format!("{local}@{ascii}"));
    }
    fold(login)
}

/// The 10,000 most common passwords (zxcvbn's list; see `data/README.md`),
/// compiled into the binary: nothing is downloaded at run time.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

/// Loads the common-password list now, so the first registration does not
/// pay for it.
pub fn warm_up() {
    LazyLock::force(&COMMON_PASSWORDS);
}

/// A valid username: 3–32 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        let len = s.chars().count();
        if !(3..=32).contains(&len) {
            return Err("Username must be 3 to 32 characters long".to_owned());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(
                "Username may contain only letters, digits, underscore, dot and hyphen".to_owned(),
            );
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Whether `s` holds a Unicode format character (`Cf`: zero-width space
/// and joiners, bidi overrides and isolates, the soft hyphen, tag
/// characters...): invisible, they make two different strings look alike.
pub fn has_format_char(s: &str) -> bool {
    s.chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
}

/// RFC 5322 `atext`: the characters of a dot-atom's atoms.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// A syntactically valid email address of at most 254 bytes: exactly one
/// `@`, an ASCII dot-atom local part (no quoted strings, no comments, no
/// Unicode: `"admin@example.com"@evil.com` and look-alike letters are
/// refused) of at most 64 bytes, and a domain with a dot. A Unicode
/// (IDN) domain is stored in its ASCII form (punycode, `xn--`), so a
/// look-alike of a known domain shows as what it is; an ASCII domain is
/// stored as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        const INVALID: &str = "value is not a valid email address";
        if s.chars().any(char::is_control) || has_format_char(s) {
            return Err(
                "Email must not contain control or invisible formatting characters".to_owned(),
            );
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{INVALID}: it must contain exactly one @"));
        };
        let dot_atom = !local.is_empty()
            && local.len() <= 64
            && local
                .split('.')
                .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
        if !dot_atom {
            return Err(format!(
                "{INVALID}: the part before the @ may contain only ASCII letters, digits, dots and !#$%&'*+-/=?^_`{{|}}~"
            ));
        }
        let domain = if domain.is_ascii() {
            domain.to_owned()
        } else {
            // UTS 46 with the strict (STD3, DNS length) rules, as browsers
            // map host names.
            idna::domain_to_ascii_strict(domain)
                .map_err(|_| format!("{INVALID}: the domain is not a valid domain name"))?
        };
        let email = format!("{local}@{domain}");
        if email.len() > 254 {
            return Err("Email must be at most 254 bytes long".to_owned());
        }
        // `email_address` checks the rest of RFC 5322's addr-spec on the
        // ASCII form; we additionally require a dotted domain, since a bare
        // `user@localhost` is nearly always a typo for a real account.
        let valid = email_address::EmailAddress::parse_with_options(
            &email,
            email_address::Options {
                allow_display_text: false,
                ..email_address::Options::default()
            }
            .with_required_tld()
            .without_domain_literal(),
        )
        .is_ok();
        if !valid {
            return Err(INVALID.to_owned());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An optional display name of at most 128 characters, without control or
/// format characters (zero-width, bidi overrides: see [`has_format_char`]).
pub fn parse_full_name(s: &str) -> Result<String, String> {
    if s.chars().count() > 128 {
        return Err("Full name must be at most 128 characters long".to_owned());
    }
    if s.chars().any(char::is_control) {
        return Err("Full name must not contain control characters".to_owned());
    }
    if has_format_char(s) {
        return Err(
            "Full name must not contain invisible formatting characters (zero-width, bidi)"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

/// NIST SP 800-63B: 8–1024 characters, no composition rules, not a common
/// password, not the account's own username or email.
pub fn check_new_password(password: &str, username: &str, email: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < 8 {
        return Err("Password must be at least 8 characters long".to_owned());
    }
    if len > 1024 {
        return Err("Password must be at most 1024 characters long".to_owned());
    }
    // Not typable, and refused in every other field (see `crate::http::body`).
    if password.chars().any(char::is_control) {
        return Err("Password must not contain control characters".to_owned());
    }
    let folded = fold(password);
    if COMMON_PASSWORDS.contains(folded.as_str()) {
        return Err("This password is too common; choose a less guessable one".to_owned());
    }
    if folded == fold(username) || folded == fold(email) {
        return Err("Password must not be the same as your username or email".to_owned());
    }
    Ok(())
}

/// A check's error as a 422 entry for `loc = ["body", field]`.
pub fn field_error(field: &str, msg: String) -> FieldError {
    FieldError::new(&["body", field], msg, "value_error")
}

/// Formats unix seconds as RFC 3339 UTC (`2026-11-28T16:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A user as clients see it: never any password material.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a0c4-5b8e-7c3a-9f1e-2d4b6a8c0e12", "username": "alice",
    "email": "alice@example.com", "full_name": null, "roles": ["user"], "disabled": false,
    "created_at": "2026-11-28T16:00:00Z", "updated_at": "2026-11-28T16:00:00Z"}))]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            roles: u.roles.clone(),
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("a.b-c_9").is_ok());
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("alice@x").is_err());
        assert!(Username::parse("ålice").is_err());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("alice@example.com").is_ok());
        assert!(Email::parse("alice").is_err());
        assert!(Email::parse("alice@").is_err());
        assert!(Email::parse("@example.com").is_err());
        assert!(Email::parse("alice@localhost").is_err());
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn emails_have_exactly_one_at_and_an_ascii_dot_atom_local_part() {
        assert!(Email::parse("\"admin@example.com\"@evil.com").is_err());
        assert!(Email::parse("a@b@example.com").is_err());
        assert!(Email::parse("\"quoted\"@example.com").is_err());
        assert!(Email::parse("a..b@example.com").is_err());
        assert!(Email::parse(".a@example.com").is_err());
        assert!(Email::parse("a b@example.com").is_err());
        assert!(
            Email::parse("ålice@example.com").is_err(),
            "Unicode local part"
        );
        assert!(Email::parse("аlice@example.com").is_err(), "Cyrillic а");
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse("o'brien+tag@example.co.uk").is_ok());
        assert!(Email::parse("Alice@Example.COM").unwrap().as_str() == "Alice@Example.COM");
    }

    #[test]
    fn emails_refuse_control_and_format_characters() {
        for bad in [
            "alice\u{200b}@example.com", // zero-width space
            "alice@exam\u{200d}ple.com", // zero-width joiner
            "alice@example.com\u{202e}", // right-to-left override
            "al\u{2066}ice@example.com", // left-to-right isolate
            "alice@ex\u{ad}ample.com",   // soft hyphen (IDNA would drop it)
            "\u{feff}alice@example.com", // byte order mark
            "alice\u{0}@example.com",
            "alice@example.com\u{85}", // C1 next line
            "alice\u{7f}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idn_domains_are_stored_in_punycode() {
        assert_eq!(
            Email::parse("alice@bücher.example").unwrap().as_str(),
            "alice@xn--bcher-kva.example"
        );
        // A look-alike of example.com with a Cyrillic а shows as what it is.
        let lookalike = Email::parse("alice@exаmple.com").unwrap();
        assert!(
            lookalike.as_str().starts_with("alice@xn--"),
            "{lookalike:?}"
        );
        assert!(Email::parse("alice@xn--bcher-kva.example").is_ok());
        assert!(Email::parse("alice@bü_cher.example").is_err());
    }

    #[test]
    fn full_names_refuse_control_and_format_characters() {
        assert_eq!(
            parse_full_name("Zoë O'Brien-Łukasz").unwrap(),
            "Zoë O'Brien-Łukasz"
        );
        assert_eq!(parse_full_name("山田 太郎").unwrap(), "山田 太郎");
        for bad in [
            "Alice\u{0}",
            "Alice\u{1b}[31m",
            "Alice\u{9f}",
            "Ali\u{200b}ce",
            "\u{202e}ecilA",
            "Alice\u{2067}",
            "Alice\u{e0041}", // tag character
        ] {
            assert!(parse_full_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_new_password("correct horse battery", "alice", "a@example.com").is_ok());
        assert!(check_new_password("short", "alice", "a@example.com").is_err());
        assert!(check_new_password("password", "alice", "a@example.com").is_err());
        assert!(check_new_password("12345678", "alice", "a@example.com").is_err());
        assert!(check_new_password("alice-the-great", "alice-the-great", "a@example.com").is_err());
        assert!(check_new_password("Alice@Example.com", "alice", "alice@example.com").is_err());
        assert!(check_new_password(&"x".repeat(1025), "alice", "a@example.com").is_err());
        assert!(check_new_password("correct\u{0}horse battery", "alice", "a@example.com").is_err());
        // Length is counted in characters, not bytes.
        assert!(check_new_password("ééééééé", "alice", "a@example.com").is_err());
    }

    #[test]
    fn common_list_is_complete() {
        assert_eq!(COMMON_PASSWORDS.len(), 10_000);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Every string of the allowed characters and length parses, and
            /// round-trips unchanged (stored as given).
            #[test]
            fn valid_usernames_parse_unchanged(name in "[A-Za-z0-9_.-]{3,32}") {
                let parsed = Username::parse(&name).unwrap();
                prop_assert_eq!(parsed.as_str(), name.as_str());
            }

            /// Anything with another character, or of another length, fails —
            /// and never panics.
            #[test]
            fn other_usernames_are_refused(name in "\\PC{0,40}") {
                let ok = (3..=32).contains(&name.chars().count())
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                prop_assert_eq!(Username::parse(&name).is_ok(), ok);
            }

            /// Folding makes `Alice` and `alice` one account, is idempotent,
            /// and never changes a username's length (they are ASCII).
            #[test]
            fn folding_is_case_insensitive_and_idempotent(name in "[A-Za-z0-9_.-]{3,32}") {
                let folded = fold(&name);
                prop_assert_eq!(&fold(&name.to_uppercase()), &folded);
                prop_assert_eq!(&fold(&folded), &folded);
                prop_assert_eq!(folded.len(), name.len());
            }

            /// Simple well-formed addresses parse; their folded forms match
            /// across case.
            #[test]
            fn simple_emails_parse(local in "[a-zA-Z0-9._%+-]{1,20}", domain in "[a-z]{1,20}", tld in "[a-z]{2,6}") {
                prop_assume!(!local.starts_with('.') && !local.ends_with('.') && !local.contains(".."));
                let email = format!("{local}@{domain}.{tld}");
                prop_assert!(Email::parse(&email).is_ok(), "{}", email);
                prop_assert_eq!(fold(&email.to_uppercase()), fold(&email));
            }

            /// Arbitrary input never panics the email parser, and anything
            /// it accepts has exactly one `@` and at most 254 bytes.
            #[test]
            fn email_parsing_never_panics(s in "\\PC{0,300}") {
                if let Ok(e) = Email::parse(&s) {
                    prop_assert!(e.as_str().len() <= 254);
                    prop_assert_eq!(e.as_str().matches('@').count(), 1);
                }
            }
        }
    }
}
