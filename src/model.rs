//! The user model and its input rules ("parse, don't validate").

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;
use crate::storage::UserRecord;

/// The case-folded form used for uniqueness and login: `Alice` and `alice`
/// are one account. Usernames are ASCII; emails fold with Unicode lowercase.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The 10,000 most common passwords (zxcvbn's list; see `data/README.md`),
/// compiled into the binary: nothing is downloaded at run time.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
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

/// A syntactically valid email address of at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() > 254 {
            return Err("Email must be at most 254 bytes long".to_owned());
        }
        // `email_address` follows RFC 5322's addr-spec; we additionally
        // require a dotted domain, since a bare `user@localhost` is nearly
        // always a typo for a real account.
        let valid = email_address::EmailAddress::parse_with_options(
            s,
            email_address::Options {
                allow_display_text: false,
                ..email_address::Options::default()
            }
            .with_required_tld()
            .without_domain_literal(),
        )
        .is_ok();
        if !valid {
            return Err("value is not a valid email address".to_owned());
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

/// An optional display name of at most 128 characters.
pub fn parse_full_name(s: &str) -> Result<String, String> {
    if s.chars().count() > 128 {
        return Err("Full name must be at most 128 characters long".to_owned());
    }
    if s.chars().any(char::is_control) {
        return Err("Full name must not contain control characters".to_owned());
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
    fn passwords() {
        assert!(check_new_password("correct horse battery", "alice", "a@example.com").is_ok());
        assert!(check_new_password("short", "alice", "a@example.com").is_err());
        assert!(check_new_password("password", "alice", "a@example.com").is_err());
        assert!(check_new_password("12345678", "alice", "a@example.com").is_err());
        assert!(check_new_password("alice-the-great", "alice-the-great", "a@example.com").is_err());
        assert!(check_new_password("Alice@Example.com", "alice", "alice@example.com").is_err());
        assert!(check_new_password(&"x".repeat(1025), "alice", "a@example.com").is_err());
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
