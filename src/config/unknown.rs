//! Names that are no setting: the "did you mean" for an unknown file key
//! or `WARDEN_*` variable, and the warnings for unknown variables.
//!
//! An unknown variable is only a warning, because warden does not own the
//! `WARDEN_` prefix: Kubernetes injects `WARDEN_PORT`,
//! `WARDEN_SERVICE_HOST`, ... into every pod of a namespace that has a
//! Service named `warden`. An unknown file key stays an error: the file is
//! warden's alone.

use std::fmt;

/// Something worth telling the operator at start-up that did not stop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A `WARDEN_*` variable that is no setting, and the known name it is
    /// closest to, if one is close.
    UnknownVariable {
        name: String,
        suggestion: Option<String>,
    },
    /// A variable Kubernetes sets for a Service named `warden`.
    ServiceLink { name: String },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVariable { name, suggestion } => {
                write!(f, "unknown environment variable {name}: ")?;
                match suggestion {
                    Some(known) => write!(f, "did you mean {known}?"),
                    None => f.write_str("no such setting; ignored"),
                }
            }
            Self::ServiceLink { name } => write!(
                f,
                "unknown environment variable {name}: looks like a Kubernetes service link \
                 for a Service named warden; ignored (enableServiceLinks: false in the pod \
                 spec turns them off)"
            ),
        }
    }
}

/// Whether `name` is one of the variables Kubernetes sets for a Service
/// named `warden`: `WARDEN_SERVICE_HOST`, `WARDEN_SERVICE_PORT`,
/// `WARDEN_SERVICE_PORT_<PORT NAME>`, `WARDEN_PORT` and
/// `WARDEN_PORT_<NUMBER>_<PROTOCOL>[_PROTO|_PORT|_ADDR]`.
pub(super) fn is_service_link(name: &str) -> bool {
    name == "WARDEN_SERVICE_HOST"
        || name == "WARDEN_SERVICE_PORT"
        || name.starts_with("WARDEN_SERVICE_PORT_")
        || name == "WARDEN_PORT"
        || name
            .strip_prefix("WARDEN_PORT_")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The known name closest to `unknown`, if one is close enough to be the
/// likely meaning: a small edit distance (transpositions count as one
/// edit), or `unknown` being a unique part of one name (`secret` for
/// `jwt_secret`).
///
/// Both sides are compared in lower case without a `WARDEN_` prefix.
pub(super) fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    // About one edit in five characters, at least one, at most three: a
    // short name with several edits is another word, not a typo.
    let limit = (1 + unknown.len() / 5).min(3);
    let by_distance = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k);
    if by_distance.is_some() {
        return by_distance;
    }
    if unknown.len() < 4 {
        return None;
    }
    let mut containing = known.iter().filter(|k| k.contains(unknown));
    match (containing.next(), containing.next()) {
        (Some(only), None) => Some(*only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "access_token_ttl",
        "refresh_token_ttl",
        "jwt_secret",
        "jwt_algorithm",
        "log",
        "log_format",
        "bind",
    ];

    #[test]
    fn typos_find_their_setting() {
        assert_eq!(closest("acces_token_ttl", KNOWN), Some("access_token_ttl"));
        assert_eq!(closest("access_token_tll", KNOWN), Some("access_token_ttl"));
        assert_eq!(closest("jwt_algoritm", KNOWN), Some("jwt_algorithm"));
        assert_eq!(closest("lgo", KNOWN), Some("log"));
        assert_eq!(closest("secret", KNOWN), Some("jwt_secret"));
    }

    #[test]
    fn other_words_find_nothing() {
        assert_eq!(closest("port", KNOWN), None);
        assert_eq!(closest("service_host", KNOWN), None);
        assert_eq!(closest("zz_certainly_not_a_setting", KNOWN), None);
        // Part of two names: no guess between them.
        assert_eq!(closest("token_ttl", KNOWN), None);
        assert_eq!(closest("", KNOWN), None);
    }

    #[test]
    fn kubernetes_service_links_are_recognised() {
        for name in [
            "WARDEN_PORT",
            "WARDEN_PORT_8000_TCP",
            "WARDEN_PORT_8000_TCP_PROTO",
            "WARDEN_PORT_8000_TCP_ADDR",
            "WARDEN_SERVICE_HOST",
            "WARDEN_SERVICE_PORT",
            "WARDEN_SERVICE_PORT_HTTP",
        ] {
            assert!(is_service_link(name), "{name}");
        }
        for name in ["WARDEN_PORTS", "WARDEN_PORT_HTTP", "WARDEN_SERVICE"] {
            assert!(!is_service_link(name), "{name}");
        }
    }
}
