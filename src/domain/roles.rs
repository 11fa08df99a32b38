//! Roles and the scopes they grant.
//!
//! Built-in: `user` → `me`; `admin` → every built-in scope. More roles come
//! from the configuration's `[roles.NAME] scopes = [...]` tables.

use std::collections::{BTreeMap, BTreeSet};

pub const SCOPE_ME: &str = "me";
pub const SCOPE_USERS_READ: &str = "users:read";
pub const SCOPE_USERS_WRITE: &str = "users:write";
pub const SCOPE_TOKENS_INTROSPECT: &str = "tokens:introspect";
pub const SCOPE_CLIENTS_READ: &str = "clients:read";
pub const SCOPE_CLIENTS_WRITE: &str = "clients:write";

pub const BUILTIN_SCOPES: &[&str] = &[
    SCOPE_ME,
    SCOPE_USERS_READ,
    SCOPE_USERS_WRITE,
    SCOPE_TOKENS_INTROSPECT,
    SCOPE_CLIENTS_READ,
    SCOPE_CLIENTS_WRITE,
];

/// OpenID Connect's scopes: no role grants them; every user may request
/// them through a client (they ask for claims about the user, or for a
/// refresh token, not for access to an API).
pub const SCOPE_OPENID: &str = "openid";
pub const SCOPE_PROFILE: &str = "profile";
pub const SCOPE_EMAIL: &str = "email";
pub const SCOPE_OFFLINE_ACCESS: &str = "offline_access";
pub const OPENID_SCOPES: &[&str] = &[
    SCOPE_OPENID,
    SCOPE_PROFILE,
    SCOPE_EMAIL,
    SCOPE_OFFLINE_ACCESS,
];

pub fn is_openid_scope(scope: &str) -> bool {
    OPENID_SCOPES.contains(&scope)
}

pub const ROLE_USER: &str = "user";
pub const ROLE_ADMIN: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleError {
    pub role: String,
    pub message: String,
}

/// The role → scopes table, fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    roles: BTreeMap<String, BTreeSet<String>>,
    /// Every scope any role grants, for `invalid_scope` and RFC 8414.
    all_scopes: BTreeSet<String>,
}

/// Scope tokens per RFC 6749 §3.3: printable ASCII except space, `"` and `\`.
fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn valid_role_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

impl Default for Roles {
    fn default() -> Self {
        Self::new(BTreeMap::new()).expect("built-in roles are valid")
    }
}

impl Roles {
    /// Built-in roles plus `custom`.
    pub fn new(custom: BTreeMap<String, Vec<String>>) -> Result<Self, RoleError> {
        let mut roles = BTreeMap::new();
        roles.insert(ROLE_USER.to_owned(), BTreeSet::from([SCOPE_ME.to_owned()]));
        roles.insert(
            ROLE_ADMIN.to_owned(),
            BUILTIN_SCOPES.iter().map(|s| s.to_string()).collect(),
        );
        for (name, scopes) in custom {
            let err = |message: String| RoleError {
                role: name.clone(),
                message,
            };
            if name == ROLE_USER || name == ROLE_ADMIN {
                return Err(err("a built-in role cannot be redefined".to_owned()));
            }
            if !valid_role_name(&name) {
                return Err(err(
                    "role names are 1-64 characters of letters, digits, _ - . :".to_owned(),
                ));
            }
            let mut set = BTreeSet::new();
            for scope in scopes {
                if !valid_scope(&scope) {
                    return Err(err(format!(
                        "invalid scope {scope:?}: scopes are printable ASCII without spaces, quotes or backslashes"
                    )));
                }
                set.insert(scope);
            }
            roles.insert(name, set);
        }
        let all_scopes = roles.values().flatten().cloned().collect();
        Ok(Self { roles, all_scopes })
    }

    pub fn get(&self, role: &str) -> Option<&BTreeSet<String>> {
        self.roles.get(role)
    }

    pub fn contains(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// Every scope some role grants.
    pub fn all_scopes(&self) -> &BTreeSet<String> {
        &self.all_scopes
    }

    /// The union of the scopes of `roles`; unknown roles grant nothing.
    pub fn scopes_of<'a>(&'a self, roles: &[String]) -> BTreeSet<&'a str> {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Checks that every role exists, naming the first that does not.
    pub fn check_known(&self, roles: &[String]) -> Result<(), String> {
        match roles.iter().find(|r| !self.contains(r)) {
            None => Ok(()),
            Some(r) => Err(format!(
                "unknown role {r:?}; known roles: {}",
                self.names().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins() {
        let r = Roles::default();
        assert_eq!(r.scopes_of(&["user".into()]), BTreeSet::from(["me"]));
        assert_eq!(r.scopes_of(&["admin".into()]).len(), 6);
    }

    #[test]
    fn custom_roles_add_scopes() {
        let r = Roles::new(BTreeMap::from([(
            "teacher".to_owned(),
            vec!["me".to_owned(), "grades:write".to_owned()],
        )]))
        .unwrap();
        assert!(r.all_scopes().contains("grades:write"));
        assert!(r.check_known(&["teacher".into()]).is_ok());
        assert!(r.check_known(&["janitor".into()]).is_err());
    }

    #[test]
    fn builtins_cannot_be_redefined() {
        let e = Roles::new(BTreeMap::from([("admin".to_owned(), vec![])])).unwrap_err();
        assert_eq!(e.role, "admin");
    }

    #[test]
    fn scope_with_space_is_refused() {
        assert!(Roles::new(BTreeMap::from([("x".to_owned(), vec!["a b".to_owned()])])).is_err());
    }
}
