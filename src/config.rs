//! Configuration: a TOML file, overridden by `WARDEN_*` environment
//! variables, every value checked once at start-up.
//!
//! Each setting has one name: `bind` in the file is `WARDEN_BIND` in the
//! environment. A bad value stops start-up with a message naming the setting
//! (see [`ConfigError`]); nothing is re-checked at request time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::domain::roles::{RoleError, Roles};

/// A configuration value that was rejected, named as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `WARDEN_JWT_ALGORITHM`, `jwt_algorithm in warden.toml`, ...
    pub setting: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {}: {}",
            self.setting, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Whether anyone may `POST /users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// An HS256 secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// argon2id cost parameters (OWASP's second recommended set by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: String,
    /// Pool size and timeouts (PostgreSQL).
    pub database: crate::storage::DatabaseOptions,
    pub issuer: String,
    pub audience: Option<String>,
    pub jwt_algorithm: Algorithm,
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    pub refresh_reuse_grace: u64,
    /// Live sessions a user may have; a new login past it ends the oldest.
    pub max_sessions_per_user: u32,
    /// Seconds a session lives from its login however often it is
    /// refreshed; its refresh tokens never outlive it.
    pub session_max_lifetime: u64,
    /// Days audit events are kept; `None` keeps them for ever.
    pub audit_retention_days: Option<u64>,
    pub registration: Registration,
    pub throttle_window: u64,
    pub throttle_per_pair: u32,
    pub throttle_per_address: u32,
    pub throttle_per_account: u32,
    /// Seconds a client may take to send its first byte, then each
    /// request's headers.
    pub header_read_timeout: std::time::Duration,
    /// Client connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Seconds a connection may stay open with no request.
    pub idle_timeout: std::time::Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::http::proxy::TrustedProxies,
    /// The one forwarding header the trusted proxies write.
    pub forwarded_header: crate::http::proxy::ForwardedHeader,
    /// Other origins whose pages may call warden (CORS with credentials)
    /// and refresh with the cookie.
    pub cors_origins: crate::http::cors::AllowedOrigins,
    pub log: String,
    pub log_format: LogFormat,
    pub argon2: Argon2Params,
    /// Threads that hash passwords; never the async executor's.
    pub hash_workers: usize,
    /// Password jobs that may wait for a worker before new ones get 503.
    pub hash_queue: usize,
    /// Verified access tokens remembered in memory (0 turns the cache off).
    pub token_cache_size: usize,
    pub roles: Roles,
}

impl Config {
    /// The database URL with any password replaced by `***`, for logs.
    pub fn database_url_redacted(&self) -> String {
        match url::Url::parse(&self.database_url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.database_url.clone(),
        }
    }
}

/// Every scalar setting: its file key. The environment name is
/// `WARDEN_` + the key in upper case.
const SETTINGS: &[&str] = &[
    "bind",
    "database_url",
    "database_max_connections",
    "database_acquire_timeout",
    "database_statement_timeout",
    "issuer",
    "audience",
    "jwt_algorithm",
    "jwt_secret",
    "access_token_ttl",
    "refresh_token_ttl",
    "refresh_reuse_grace",
    "max_sessions_per_user",
    "session_max_lifetime",
    "audit_retention_days",
    "registration",
    "throttle_window",
    "throttle_per_pair",
    "throttle_per_address",
    "throttle_per_account",
    "trusted_proxies",
    "forwarded_header",
    "cors_origins",
    "header_read_timeout",
    "max_connections",
    "idle_timeout",
    "log",
    "log_format",
    "argon2_memory_kib",
    "argon2_iterations",
    "argon2_parallelism",
    "hash_workers",
    "hash_queue",
    "token_cache_size",
];

#[derive(Deserialize)]
struct RoleTable {
    scopes: Vec<String>,
}

/// Settings that are lists: comma-separated in the environment, a
/// comma-separated string or an array of strings in the file.
const LIST_SETTINGS: &[&str] = &["trusted_proxies", "cors_origins"];

/// A raw value and where it came from, for error messages.
struct Raw {
    value: String,
    origin: String,
}

/// Gathers raw values from the file and the environment, then parses them.
struct Sources {
    raw: HashMap<&'static str, Raw>,
}

impl Sources {
    fn get(&self, key: &str) -> Option<&Raw> {
        self.raw.get(key)
    }

    fn parse<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => parse(raw.value.trim()).map_err(|message| ConfigError {
                setting: raw.origin.clone(),
                message,
            }),
        }
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err(format!("expected a positive whole number, got {s:?}")),
    }
}

fn non_negative(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("expected a whole number of seconds, got {s:?}"))
}

fn http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("malformed URL {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("expected an http:// or https:// URL, got {s:?}"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

impl Config {
    /// Loads `file` (if given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Loads `file` (if given) and `env`, so tests need not touch the
    /// process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut raw = HashMap::new();
        let mut role_tables = BTreeMap::new();

        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                setting: format!("--config {shown}"),
                message: format!("cannot read the file: {e}"),
            })?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
                setting: shown.clone(),
                message: format!("not valid TOML: {}", e.message()),
            })?;
            for (key, value) in table {
                if key == "roles" {
                    let roles: BTreeMap<String, RoleTable> =
                        value.try_into().map_err(|e: toml::de::Error| ConfigError {
                            setting: format!("[roles] in {shown}"),
                            message: format!(
                                "expected tables like [roles.NAME] with scopes = [...]: {}",
                                e.message()
                            ),
                        })?;
                    role_tables = roles
                        .into_iter()
                        .map(|(name, t)| (name, t.scopes))
                        .collect();
                    continue;
                }
                let Some(&known) = SETTINGS.iter().find(|k| **k == key) else {
                    return Err(ConfigError {
                        setting: format!("{key} in {shown}"),
                        message: "unknown setting".to_owned(),
                    });
                };
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) if LIST_SETTINGS.contains(&known) => {
                        let mut list = Vec::with_capacity(items.len());
                        for item in items {
                            let toml::Value::String(s) = item else {
                                return Err(ConfigError {
                                    setting: format!("{key} in {shown}"),
                                    message: format!(
                                        "expected an array of strings, found {}",
                                        item.type_str()
                                    ),
                                });
                            };
                            list.push(s);
                        }
                        list.join(",")
                    }
                    other => {
                        return Err(ConfigError {
                            setting: format!("{key} in {shown}"),
                            message: format!(
                                "expected a string or a number, got {}",
                                other.type_str()
                            ),
                        });
                    }
                };
                raw.insert(
                    known,
                    Raw {
                        value,
                        origin: format!("{key} in {shown}"),
                    },
                );
            }
        }

        for (name, value) in env {
            let Some(key) = name.strip_prefix("WARDEN_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if let Some(&known) = SETTINGS.iter().find(|k| **k == key) {
                raw.insert(
                    known,
                    Raw {
                        value,
                        origin: name,
                    },
                );
            }
        }

        Self::from_sources(&Sources { raw }, role_tables, file)
    }

    fn from_sources(
        s: &Sources,
        role_tables: BTreeMap<String, Vec<String>>,
        file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let bind: SocketAddr = s.parse("bind", SocketAddr::from(([127, 0, 0, 1], 8000)), |v| {
            v.parse()
                .map_err(|_| format!("expected an address like 127.0.0.1:8000, got {v:?}"))
        })?;
        let database_url = s.parse("database_url", "sqlite://warden.db".to_owned(), |v| {
            if v.starts_with("sqlite:") {
                Ok(v.to_owned())
            } else if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                url::Url::parse(v)
                    .map(|_| v.to_owned())
                    .map_err(|e| format!("malformed PostgreSQL URL: {e}"))
            } else {
                Err("expected sqlite://PATH or postgres://USER@HOST/DB".to_owned())
            }
        })?;
        let db_defaults = crate::storage::DatabaseOptions::default();
        let seconds = |v: &str| positive::<u64>(v).map(std::time::Duration::from_secs);
        let database = crate::storage::DatabaseOptions {
            max_connections: s.parse(
                "database_max_connections",
                db_defaults.max_connections,
                positive::<u32>,
            )?,
            acquire_timeout: s.parse(
                "database_acquire_timeout",
                db_defaults.acquire_timeout,
                seconds,
            )?,
            statement_timeout: s.parse(
                "database_statement_timeout",
                db_defaults.statement_timeout,
                seconds,
            )?,
        };
        let issuer = s.parse("issuer", format!("http://{bind}"), http_url)?;
        let audience = s.parse("audience", None, |v| {
            if v.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(Some(v.to_owned()))
            }
        })?;
        let jwt_algorithm = s.parse("jwt_algorithm", Algorithm::EdDSA, |v| match v {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "ES256" => Ok(Algorithm::ES256),
            "RS256" => Ok(Algorithm::RS256),
            "HS256" => Ok(Algorithm::HS256),
            _ => Err(format!(
                "unknown algorithm {v:?}; expected one of EdDSA, ES256, RS256, HS256"
            )),
        })?;
        // The secret is not trimmed: its exact UTF-8 bytes are the key.
        let jwt_secret = match s.get("jwt_secret") {
            None => None,
            Some(raw) => {
                if raw.value.len() < 32 {
                    return Err(ConfigError {
                        setting: raw.origin.clone(),
                        message: format!(
                            "an HS256 secret must be at least 32 bytes, got {}",
                            raw.value.len()
                        ),
                    });
                }
                Some(Secret(raw.value.clone().into_bytes()))
            }
        };
        let access_token_ttl = s.parse("access_token_ttl", 900, positive::<u64>)?;
        let refresh_token_ttl = s.parse("refresh_token_ttl", 2_592_000, positive::<u64>)?;
        let refresh_reuse_grace = s.parse("refresh_reuse_grace", 10, non_negative)?;
        let max_sessions_per_user = s.parse("max_sessions_per_user", 100, positive::<u32>)?;
        // At most 100 years: the expiry arithmetic stays far from overflow.
        let session_max_lifetime =
            s.parse("session_max_lifetime", 7_776_000, |v| {
                match positive::<u64>(v)? {
                    n if n <= 3_153_600_000 => Ok(n),
                    _ => Err("must be at most 3153600000 (100 years)".to_owned()),
                }
            })?;
        let audit_retention_days = s.parse("audit_retention_days", Some(90), |v| {
            match v.parse::<u64>() {
                Err(_) => Err(format!("expected a whole number of days, got {v:?}")),
                Ok(0) => Ok(None),
                Ok(n) if n <= 36_500 => Ok(Some(n)),
                Ok(_) => Err("must be at most 36500 (100 years), or 0 to keep for ever".to_owned()),
            }
        })?;
        let registration = s.parse("registration", Registration::Open, |v| match v {
            "open" => Ok(Registration::Open),
            "closed" => Ok(Registration::Closed),
            _ => Err(format!("expected open or closed, got {v:?}")),
        })?;
        let throttle_window = s.parse("throttle_window", 900, positive::<u64>)?;
        let throttle_per_pair = s.parse("throttle_per_pair", 5, positive::<u32>)?;
        let throttle_per_address = s.parse("throttle_per_address", 50, positive::<u32>)?;
        let throttle_per_account = s.parse("throttle_per_account", 100, positive::<u32>)?;
        let trusted_proxies = s.parse(
            "trusted_proxies",
            crate::http::proxy::TrustedProxies::default(),
            crate::http::proxy::TrustedProxies::parse,
        )?;
        let forwarded_header = s.parse(
            "forwarded_header",
            crate::http::proxy::ForwardedHeader::default(),
            crate::http::proxy::ForwardedHeader::parse,
        )?;
        let cors_origins = s.parse(
            "cors_origins",
            crate::http::cors::AllowedOrigins::default(),
            crate::http::cors::AllowedOrigins::parse,
        )?;
        let header_read_timeout = s.parse(
            "header_read_timeout",
            crate::app::HEADER_READ_TIMEOUT,
            |v| positive::<u64>(v).map(std::time::Duration::from_secs),
        )?;
        // More than a million would need as many file descriptors; the
        // semaphore behind the cap counts in u32.
        let max_connections = s.parse(
            "max_connections",
            crate::http::connections::default_max_connections(),
            |v| match positive::<usize>(v)? {
                n if n <= 1_000_000 => Ok(n),
                _ => Err("must be at most 1000000".to_owned()),
            },
        )?;
        let idle_timeout = s.parse(
            "idle_timeout",
            crate::http::connections::DEFAULT_IDLE_TIMEOUT,
            |v| positive::<u64>(v).map(std::time::Duration::from_secs),
        )?;
        let log = s.parse("log", "info".to_owned(), |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_owned())
                .map_err(|e| format!("not a valid tracing filter: {e}"))
        })?;
        let log_format = s.parse("log_format", LogFormat::Text, |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected text or json, got {v:?}")),
        })?;
        let defaults = Argon2Params::default();
        let argon2 =
            Argon2Params {
                memory_kib: s.parse(
                    "argon2_memory_kib",
                    defaults.memory_kib,
                    |v| match positive::<u32>(v)? {
                        m if m >= 8 => Ok(m),
                        _ => Err("must be at least 8 KiB".to_owned()),
                    },
                )?,
                iterations: s.parse("argon2_iterations", defaults.iterations, positive::<u32>)?,
                parallelism: s.parse("argon2_parallelism", defaults.parallelism, |v| {
                    match positive::<u32>(v)? {
                        p if p <= 255 => Ok(p),
                        _ => Err("must be at most 255".to_owned()),
                    }
                })?,
            };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hash_workers = s.parse("hash_workers", cores, positive::<usize>)?;
        let hash_queue = s.parse("hash_queue", 64, positive::<usize>)?;
        let token_cache_size = s.parse(
            "token_cache_size",
            warden_guard::DEFAULT_CACHE_CAPACITY,
            |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| format!("expected a whole number, got {v:?}"))
            },
        )?;
        let roles = Roles::new(role_tables).map_err(|e: RoleError| ConfigError {
            setting: match file {
                Some(path) => format!("[roles.{}] in {}", e.role, path.display()),
                None => format!("[roles.{}]", e.role),
            },
            message: e.message,
        })?;

        Ok(Self {
            bind,
            database_url,
            database,
            issuer,
            audience,
            jwt_algorithm,
            jwt_secret,
            access_token_ttl,
            refresh_token_ttl,
            refresh_reuse_grace,
            max_sessions_per_user,
            session_max_lifetime,
            audit_retention_days,
            registration,
            throttle_window,
            throttle_per_pair,
            throttle_per_address,
            throttle_per_account,
            trusted_proxies,
            forwarded_header,
            cors_origins,
            header_read_timeout,
            max_connections,
            idle_timeout,
            log,
            log_format,
            argon2,
            hash_workers,
            hash_queue,
            token_cache_size,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.issuer, "http://127.0.0.1:8000");
        assert_eq!(c.jwt_algorithm, Algorithm::EdDSA);
        assert_eq!(c.access_token_ttl, 900);
        assert_eq!(c.argon2, Argon2Params::default());
    }

    #[test]
    fn session_lifetime_and_audit_retention_have_defaults_and_bounds() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.session_max_lifetime, 7_776_000);
        assert_eq!(c.audit_retention_days, Some(90));
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_SESSION_MAX_LIFETIME", "60"),
                ("WARDEN_AUDIT_RETENTION_DAYS", "0"),
            ]),
        )
        .unwrap();
        assert_eq!((c.session_max_lifetime, c.audit_retention_days), (60, None));
        for (name, value) in [
            ("WARDEN_SESSION_MAX_LIFETIME", "0"),
            ("WARDEN_SESSION_MAX_LIFETIME", "99999999999"),
            ("WARDEN_AUDIT_RETENTION_DAYS", "-1"),
            ("WARDEN_AUDIT_RETENTION_DAYS", "ninety"),
        ] {
            let e = Config::load_from(None, env(&[(name, value)])).unwrap_err();
            assert_eq!(e.setting, name, "{value}");
        }
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(
            c.max_connections,
            crate::http::connections::default_max_connections()
        );
        assert_eq!(c.idle_timeout, std::time::Duration::from_secs(60));
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_MAX_CONNECTIONS", "4"),
                ("WARDEN_IDLE_TIMEOUT", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(c.max_connections, 4);
        assert_eq!(c.idle_timeout, std::time::Duration::from_secs(2));
        for (name, value) in [
            ("WARDEN_MAX_CONNECTIONS", "0"),
            ("WARDEN_MAX_CONNECTIONS", "1000001"),
            ("WARDEN_MAX_CONNECTIONS", "many"),
            ("WARDEN_IDLE_TIMEOUT", "0"),
            ("WARDEN_IDLE_TIMEOUT", "-5"),
        ] {
            let e = Config::load_from(None, env(&[(name, value)])).unwrap_err();
            assert_eq!(e.setting, name, "{value}");
        }
    }

    #[test]
    fn unknown_algorithm_names_the_variable() {
        let e = Config::load_from(None, env(&[("WARDEN_JWT_ALGORITHM", "none")])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_JWT_ALGORITHM");
        assert!(e.message.contains("unknown algorithm"));
    }

    #[test]
    fn database_passwords_never_reach_the_logs() {
        let c = Config::load_from(
            None,
            env(&[(
                "WARDEN_DATABASE_URL",
                "postgres://warden:hunter2@db.internal:5432/auth",
            )]),
        )
        .unwrap();
        assert_eq!(
            c.database_url_redacted(),
            "postgres://warden:***@db.internal:5432/auth"
        );
    }

    #[test]
    fn zero_ttl_is_refused() {
        let e = Config::load_from(None, env(&[("WARDEN_ACCESS_TOKEN_TTL", "0")])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_ACCESS_TOKEN_TTL");
    }

    #[test]
    fn short_secret_is_refused() {
        let e = Config::load_from(None, env(&[("WARDEN_JWT_SECRET", "short")])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_JWT_SECRET");
        assert!(e.message.contains("32 bytes"));
    }

    #[test]
    fn malformed_issuer_is_refused() {
        let e = Config::load_from(None, env(&[("WARDEN_ISSUER", "not a url")])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_ISSUER");
    }

    #[test]
    fn file_values_are_overridden_by_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(
            &path,
            "access_token_ttl = 60\nregistration = \"closed\"\n[roles.student]\nscopes = [\"me\", \"courses:read\"]\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&path), env(&[("WARDEN_ACCESS_TOKEN_TTL", "120")])).unwrap();
        assert_eq!(c.access_token_ttl, 120);
        assert_eq!(c.registration, Registration::Closed);
        assert!(c.roles.get("student").is_some());
    }

    #[test]
    fn cors_origins_come_from_the_environment_or_a_file_array() {
        let c = Config::load_from(
            None,
            env(&[(
                "WARDEN_CORS_ORIGINS",
                "https://app.example.com, http://localhost:5173",
            )]),
        )
        .unwrap();
        assert!(c.cors_origins.contains("https://app.example.com"));
        assert!(c.cors_origins.contains("http://localhost:5173"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, "cors_origins = [\"https://app.example.com\"]\n").unwrap();
        let c = Config::load_from(Some(&path), env(&[])).unwrap();
        assert!(c.cors_origins.contains("https://app.example.com"));
        assert!(
            Config::load_from(None, env(&[]))
                .unwrap()
                .cors_origins
                .is_empty()
        );
    }

    #[test]
    fn a_wildcard_cors_origin_is_refused() {
        let e = Config::load_from(None, env(&[("WARDEN_CORS_ORIGINS", "*")])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_CORS_ORIGINS");
        assert!(e.message.contains("wildcard"), "{}", e.message);
        let e = Config::load_from(None, env(&[("WARDEN_CORS_ORIGINS", "https://a.test/app")]))
            .unwrap_err();
        assert_eq!(e.setting, "WARDEN_CORS_ORIGINS");
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, "acces_token_ttl = 60\n").unwrap();
        let e = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert!(e.setting.starts_with("acces_token_ttl in"));
    }
}
