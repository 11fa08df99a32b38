//! Configuration: a TOML file, overridden by `WARDEN_*` environment
//! variables, every value checked once at start-up.
//!
//! Each setting has one name: `bind` in the file is `WARDEN_BIND` in the
//! environment. A bad value stops start-up with a message naming the setting
//! (see [`ConfigError`]); nothing is re-checked at request time. An
//! unknown `WARDEN_*` variable is not an error but a [`ConfigWarning`].
//!
//! This is the lowest tier with the domain (tests/architecture.rs): the
//! parsed values of the settings are types of this module
//! ([`TrustedProxies`], [`AllowedOrigins`], [`DatabaseOptions`], ...), and
//! the tiers above take them as they are.

pub mod connections;
mod origins;
mod proxy;
mod unknown;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::domain::roles::{RoleError, Roles};

pub use origins::AllowedOrigins;
pub use proxy::{ForwardedHeader, TrustedProxies};
pub use unknown::ConfigWarning;

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

/// Connection settings of the database pool (PostgreSQL; SQLite uses its
/// own fixed ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// `database_max_connections`.
    pub max_connections: u32,
    /// `database_acquire_timeout`: how long a request waits for a
    /// connection before it gets 503.
    pub acquire_timeout: Duration,
    /// `database_statement_timeout`: PostgreSQL's `statement_timeout` for
    /// every connection.
    pub statement_timeout: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The whole, validated configuration, in sections.
///
/// The sections are for the code only: in the file and the environment
/// every setting keeps its one flat name (`access_token_ttl`,
/// `WARDEN_ACCESS_TOKEN_TTL`), listed once in `SETTINGS`. Each field's
/// doc comment names its setting where the field's name differs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening and the connections clients hold; proxies and CORS.
    pub http: HttpSettings,
    /// Where the data is kept and the connection pool.
    pub database: DatabaseSettings,
    /// How access tokens are signed, for whom, and for how long.
    pub tokens: TokenSettings,
    /// Refresh tokens and the sessions they belong to.
    pub sessions: SessionSettings,
    /// Who may create an account.
    pub accounts: AccountSettings,
    /// Password hashing: its cost and the pool that does it.
    pub passwords: PasswordSettings,
    /// Limits on failed logins.
    pub throttle: ThrottleSettings,
    /// How long the audit log keeps its events.
    pub audit: AuditSettings,
    /// What is logged, and how.
    pub log: LogSettings,
    /// `[roles.NAME]` tables: the scopes each role grants.
    pub roles: Roles,
    /// The authorization code flow and the hosted pages' browser session.
    pub clients: ClientSettings,
    // The other v2 sections go here, each a struct of its own like the
    // ones above, with its settings in SETTINGS and parsed in
    // `from_sources`: `mail` (smtp_url, mail_from,
    // mail_per_recipient_per_hour, ...) and `providers` (the upstream
    // identity providers).
    /// What did not stop start-up but should be told (unknown `WARDEN_*`
    /// variables); the binary logs each once logging is up.
    pub warnings: Vec<ConfigWarning>,
}

/// Listening and the connections clients hold.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `bind`: where `serve` listens. A host name in the setting is
    /// resolved once, at load (see `parse_bind`).
    pub bind: SocketAddr,
    /// The host name `bind` was given as (`localhost` in
    /// `localhost:8001`), or `None` for an IP address.
    pub bind_host: Option<String>,
    /// `header_read_timeout`: seconds a client may take to send its first
    /// byte, then each request's headers.
    pub header_read_timeout: Duration,
    /// `max_connections`: client connections open at once; more are
    /// answered 503 and closed.
    pub max_connections: usize,
    /// `idle_timeout`: how long a connection may stay open with no request.
    pub idle_timeout: Duration,
    /// `trusted_proxies`: peers whose forwarding header is believed.
    pub trusted_proxies: TrustedProxies,
    /// `forwarded_header`: the one forwarding header the trusted proxies
    /// write.
    pub forwarded_header: ForwardedHeader,
    /// `cors_origins`: other origins whose pages may call warden (CORS
    /// with credentials) and refresh with the cookie.
    pub cors_origins: AllowedOrigins,
}

/// Where the data is kept.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `database_url`: `sqlite:...` or `postgres://...`; may hold a
    /// password, so log [`DatabaseSettings::url_redacted`] instead.
    pub url: String,
    /// Where `url` was set (`WARDEN_DATABASE_URL`, `database_url in
    /// warden.toml`), or `None` for the default; for error messages.
    pub url_origin: Option<String>,
    /// `database_max_connections`, `database_acquire_timeout`,
    /// `database_statement_timeout`.
    pub pool: DatabaseOptions,
}

impl DatabaseSettings {
    /// What a `sqlite:` URL opens; `None` for PostgreSQL.
    pub fn sqlite_target(&self) -> Option<SqliteTarget> {
        self.url
            .starts_with("sqlite:")
            .then(|| sqlite_target(&self.url))
    }

    /// The database as a person should see it, with no password:
    /// `sqlite:///abs/path/warden.db` (a relative path made absolute
    /// against the working directory, so it is clear which file it was),
    /// `postgres://user@host:5432/db` (the user, host, port and database;
    /// the password and the query parameters left out).
    pub fn display(&self) -> String {
        match self.sqlite_target() {
            Some(SqliteTarget::Memory) => "sqlite::memory:".to_owned(),
            Some(SqliteTarget::File(path)) => {
                let path = std::path::absolute(&path).unwrap_or(path);
                format!("sqlite://{}", path.display())
            }
            None => match url::Url::parse(&self.url) {
                Ok(u) => {
                    let user = match u.username() {
                        "" => String::new(),
                        name => format!("{name}@"),
                    };
                    // A socket directory may be given as `?host=/run/postgresql`.
                    let query_host = u
                        .query_pairs()
                        .find(|(key, _)| key == "host")
                        .map(|(_, value)| value.into_owned());
                    let host = match (u.host_str(), &query_host) {
                        (Some(host), _) if !host.is_empty() => host,
                        (_, Some(host)) => host.as_str(),
                        _ => "localhost",
                    };
                    let port = u.port().unwrap_or(5432);
                    format!("{}://{user}{host}:{port}{}", u.scheme(), u.path())
                }
                Err(_) => "postgres://(unparsable URL)".to_owned(),
            },
        }
    }

    /// The database URL with any password replaced by `***`, for logs.
    pub fn url_redacted(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.url.clone(),
        }
    }
}

/// Access tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `issuer`: the `iss` claim and warden's own origin.
    pub issuer: String,
    /// `audience`: the `aud` claim, checked when set.
    pub audience: Option<String>,
    /// `jwt_algorithm`.
    pub jwt_algorithm: Algorithm,
    /// `jwt_secret`: only with HS256 (anything else is refused at load).
    pub jwt_secret: Option<Secret>,
    /// `id_token_algorithm`: signs the id tokens (and logout tokens) of
    /// clients that registered no `id_token_signed_response_alg`; RS256,
    /// ES256 or EdDSA.
    pub id_token_algorithm: Algorithm,
    /// `access_token_ttl`: seconds.
    pub access_token_ttl: u64,
    /// `token_cache_size`: verified access tokens remembered in memory (0
    /// turns the cache off).
    pub token_cache_size: usize,
}

/// Refresh tokens and sessions.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// `refresh_token_ttl`: seconds.
    pub refresh_token_ttl: u64,
    /// `refresh_reuse_grace`: seconds in which a repeated refresh gets the
    /// same successor.
    pub refresh_reuse_grace: u64,
    /// `max_sessions_per_user`: live sessions a user may have; a new login
    /// past it ends the oldest.
    pub max_sessions_per_user: u32,
    /// `session_max_lifetime`: seconds a session lives from its login
    /// however often it is refreshed; its refresh tokens never outlive it.
    pub session_max_lifetime: u64,
}

/// The authorization code flow (`/authorize`) and the hosted pages.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `authorization_code_ttl`: seconds an authorization code may be
    /// redeemed after it was issued.
    pub authorization_code_ttl: u64,
    /// `browser_session_ttl`: seconds the hosted pages' browser session
    /// (the `warden_session` cookie) lasts from its sign-in.
    pub browser_session_ttl: u64,
}

/// Accounts.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// `registration`: whether anyone may `POST /users`.
    pub registration: Registration,
}

/// Password hashing.
#[derive(Debug, Clone)]
pub struct PasswordSettings {
    /// `argon2_memory_kib`, `argon2_iterations`, `argon2_parallelism`.
    pub argon2: Argon2Params,
    /// `hash_workers`: threads that hash passwords; never the async
    /// executor's.
    pub hash_workers: usize,
    /// `hash_queue`: password jobs that may wait for a worker before new
    /// ones get 503.
    pub hash_queue: usize,
}

/// Failed-login limits.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// `throttle_window`: seconds of the sliding window.
    pub window: u64,
    /// `throttle_per_pair`: failures per (account, client address).
    pub per_pair: u32,
    /// `throttle_per_address`: failures per client address.
    pub per_address: u32,
    /// `throttle_per_account`: failures per account, from any address.
    pub per_account: u32,
}

/// The audit log.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `audit_retention_days`: days audit events are kept; `None` keeps
    /// them for ever.
    pub retention_days: Option<u64>,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `log`: a tracing filter (`info`, `warden=debug,info`).
    pub filter: String,
    /// `log_format`.
    pub format: LogFormat,
}

/// Every scalar setting: its file key. The environment name is
/// `WARDEN_` + the key in upper case. This is the one list of names: the
/// file and the environment accept these and no others, and a name that is
/// not here gets a "did you mean" from it.
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
    "id_token_algorithm",
    "access_token_ttl",
    "refresh_token_ttl",
    "refresh_reuse_grace",
    "max_sessions_per_user",
    "session_max_lifetime",
    "authorization_code_ttl",
    "browser_session_ttl",
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

/// `WARDEN_*` variables the binary reads that are no setting:
/// `WARDEN_CONFIG` names the file (read by the command line).
const OTHER_VARIABLES: &[&str] = &["config"];

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
        debug_assert!(SETTINGS.contains(&key), "{key} is not in SETTINGS");
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

/// The warning for `name`, a `WARDEN_*` variable that is no setting.
fn unknown_variable(name: String) -> ConfigWarning {
    if unknown::is_service_link(&name) {
        return ConfigWarning::ServiceLink { name };
    }
    let key = name["WARDEN_".len()..].to_ascii_lowercase();
    let known: Vec<&str> = SETTINGS.iter().chain(OTHER_VARIABLES).copied().collect();
    let suggestion =
        unknown::closest(&key, &known).map(|k| format!("WARDEN_{}", k.to_ascii_uppercase()));
    ConfigWarning::UnknownVariable { name, suggestion }
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

/// The value of `choices` whose name is `v`, ignoring ASCII case: the
/// contract's values are names (`EdDSA`, `json`), and `eddsa` means the
/// same. Else the names, for the error message ("EdDSA, ES256 or ...").
fn named<T: Copy>(v: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            match names.split_last() {
                Some((last, rest)) if rest.len() == 1 => format!("{} or {last}", rest[0]),
                _ => names.join(", "),
            }
        })
}

/// `bind`: an IP address and port (`0.0.0.0:8000`, `[::1]:8000`), or a
/// host name and port (`localhost:8001`), resolved here, once. A name
/// with several addresses (`localhost` is often `::1` and `127.0.0.1`)
/// binds its first IPv4 address, or its first address when it has no
/// IPv4 one: one listener, on the address `http://localhost` reaches
/// first in most clients.
fn parse_bind(v: &str) -> Result<(SocketAddr, Option<String>), String> {
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok((addr, None));
    }
    let expected = "expected an address and port like 127.0.0.1:8000, [::1]:8000 or localhost:8000";
    let Some((host, port)) = v.rsplit_once(':') else {
        return Err(format!("{expected}, got {v:?} (no port)"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{expected}, got {v:?} (the port must be 0 to 65535)"))?;
    if host.is_empty() || host.contains(['[', ']', ':', '/', ' ']) {
        return Err(format!("{expected}, got {v:?}"));
    }
    use std::net::ToSocketAddrs;
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "cannot resolve the host name {host:?} ({e}); use an IP address, or a name \
                 this machine resolves"
            )
        })?
        .collect();
    let chosen = addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(|| format!("the host name {host:?} has no address"))?;
    Ok((chosen, Some(host.to_owned())))
}

/// What a `sqlite:` URL opens, read the way sqlx reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteTarget {
    /// `sqlite::memory:` or `?mode=memory`: nothing on disk.
    Memory,
    /// A file, relative to the working directory unless absolute. Empty
    /// for `sqlite://`, which the configuration refuses.
    File(std::path::PathBuf),
}

/// The target of a `sqlite:` URL (as sqlx's `SqliteConnectOptions`
/// parses it: the scheme, then the path up to `?`, percent-decoded).
fn sqlite_target(url: &str) -> SqliteTarget {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let memory = url::form_urlencoded::parse(params.as_bytes())
        .any(|(key, value)| key == "mode" && value == "memory");
    if path == ":memory:" || memory {
        return SqliteTarget::Memory;
    }
    SqliteTarget::File(std::path::PathBuf::from(percent_decode(path)))
}

/// `%XX` escapes decoded; anything malformed is left as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
                    let mut names = SETTINGS.to_vec();
                    names.push("roles");
                    let message = match unknown::closest(&key, &names) {
                        Some("roles") => "unknown setting; did you mean [roles.NAME]?".to_owned(),
                        Some(known) => format!("unknown setting; did you mean {known}?"),
                        None => "unknown setting".to_owned(),
                    };
                    return Err(ConfigError {
                        setting: format!("{key} in {shown}"),
                        message,
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

        let mut warnings = Vec::new();
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
            } else if !OTHER_VARIABLES.contains(&key.as_str()) {
                warnings.push(unknown_variable(name));
            }
        }
        // The environment's order is the process's; the log's is stable.
        warnings.sort_by_key(ToString::to_string);

        let mut config = Self::from_sources(&Sources { raw }, role_tables, file)?;
        config.warnings = warnings;
        Ok(config)
    }

    fn from_sources(
        s: &Sources,
        role_tables: BTreeMap<String, Vec<String>>,
        file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let (bind, bind_host) = s.parse(
            "bind",
            (SocketAddr::from(([127, 0, 0, 1], 8000)), None),
            parse_bind,
        )?;
        let database_url = s.parse("database_url", "sqlite://warden.db".to_owned(), |v| {
            if v.starts_with("sqlite:") {
                match sqlite_target(v) {
                    SqliteTarget::File(path) if path.as_os_str().is_empty() => Err(format!(
                        "no file path in {v:?}; expected sqlite://warden.db (relative to the \
                         working directory) or sqlite:///var/lib/warden/warden.db (absolute)"
                    )),
                    _ => Ok(v.to_owned()),
                }
            } else if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                url::Url::parse(v)
                    .map(|_| v.to_owned())
                    .map_err(|e| format!("malformed PostgreSQL URL: {e}"))
            } else {
                Err("expected sqlite://PATH or postgres://USER@HOST/DB".to_owned())
            }
        })?;
        let db_defaults = DatabaseOptions::default();
        let seconds = |v: &str| positive::<u64>(v).map(Duration::from_secs);
        let database = DatabaseOptions {
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
        // A host name stays in the default issuer as written
        // (`http://localhost:8001`): that is the address people browse to.
        let default_issuer = match &bind_host {
            Some(host) => format!("http://{host}:{}", bind.port()),
            None => format!("http://{bind}"),
        };
        let issuer = s.parse("issuer", default_issuer, http_url)?;
        let audience = s.parse("audience", None, |v| {
            if v.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(Some(v.to_owned()))
            }
        })?;
        let jwt_algorithm = s.parse("jwt_algorithm", Algorithm::EdDSA, |v| {
            named(
                v,
                &[
                    ("EdDSA", Algorithm::EdDSA),
                    ("ES256", Algorithm::ES256),
                    ("RS256", Algorithm::RS256),
                    ("HS256", Algorithm::HS256),
                ],
            )
            .map_err(|expected| format!("unknown algorithm {v:?}; expected one of {expected}"))
        })?;
        // OpenID Connect's mandatory algorithm is the default: every
        // relying party verifies RS256. No HS256: an id token is verified
        // by the client, which must not hold warden's secret.
        let id_token_algorithm = s.parse("id_token_algorithm", Algorithm::RS256, |v| {
            named(
                v,
                &[
                    ("RS256", Algorithm::RS256),
                    ("ES256", Algorithm::ES256),
                    ("EdDSA", Algorithm::EdDSA),
                ],
            )
            .map_err(|expected| format!("unknown algorithm {v:?}; expected one of {expected}"))
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
                // Every other algorithm signs with a generated, stored key:
                // a secret there would be ignored, and whoever set it would
                // believe tokens are signed with it.
                if jwt_algorithm != Algorithm::HS256 {
                    let algorithm = match s.get("jwt_algorithm") {
                        Some(set) => format!("{:?} ({})", jwt_algorithm, set.origin),
                        None => format!("{jwt_algorithm:?} (the default)"),
                    };
                    return Err(ConfigError {
                        setting: raw.origin.clone(),
                        message: format!(
                            "a secret is only used with HS256, but jwt_algorithm is {algorithm}; \
                             set jwt_algorithm (WARDEN_JWT_ALGORITHM) to HS256 to sign with the \
                             secret, or remove the secret to sign with a generated \
                             {jwt_algorithm:?} key"
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
        // A code is for an immediate redirect back: at most 10 minutes
        // (RFC 6749 §4.1.2 recommends no more).
        let authorization_code_ttl =
            s.parse("authorization_code_ttl", 60, |v| {
                match positive::<u64>(v)? {
                    n if n <= 600 => Ok(n),
                    _ => Err("must be at most 600 (10 minutes)".to_owned()),
                }
            })?;
        let browser_session_ttl =
            s.parse("browser_session_ttl", 1_209_600, |v| {
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
        let registration = s.parse("registration", Registration::Open, |v| {
            named(
                v,
                &[
                    ("open", Registration::Open),
                    ("closed", Registration::Closed),
                ],
            )
            .map_err(|expected| format!("expected {expected}, got {v:?}"))
        })?;
        let throttle_window = s.parse("throttle_window", 900, positive::<u64>)?;
        let throttle_per_pair = s.parse("throttle_per_pair", 5, positive::<u32>)?;
        let throttle_per_address = s.parse("throttle_per_address", 50, positive::<u32>)?;
        let throttle_per_account = s.parse("throttle_per_account", 100, positive::<u32>)?;
        let trusted_proxies = s.parse(
            "trusted_proxies",
            TrustedProxies::default(),
            TrustedProxies::parse,
        )?;
        let forwarded_header = s.parse(
            "forwarded_header",
            ForwardedHeader::default(),
            ForwardedHeader::parse,
        )?;
        let cors_origins = s.parse(
            "cors_origins",
            AllowedOrigins::default(),
            AllowedOrigins::parse,
        )?;
        let header_read_timeout = s.parse(
            "header_read_timeout",
            connections::DEFAULT_HEADER_READ_TIMEOUT,
            |v| positive::<u64>(v).map(Duration::from_secs),
        )?;
        // More than a million would need as many file descriptors; the
        // semaphore behind the cap counts in u32.
        let max_connections = s.parse(
            "max_connections",
            connections::default_max_connections(),
            |v| match positive::<usize>(v)? {
                n if n <= 1_000_000 => Ok(n),
                _ => Err("must be at most 1000000".to_owned()),
            },
        )?;
        let idle_timeout = s.parse("idle_timeout", connections::DEFAULT_IDLE_TIMEOUT, |v| {
            positive::<u64>(v).map(Duration::from_secs)
        })?;
        let log = s.parse("log", "info".to_owned(), |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_owned())
                .map_err(|e| format!("not a valid tracing filter: {e}"))
        })?;
        let log_format = s.parse("log_format", LogFormat::Text, |v| {
            named(v, &[("text", LogFormat::Text), ("json", LogFormat::Json)])
                .map_err(|expected| format!("expected {expected}, got {v:?}"))
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
            http: HttpSettings {
                bind,
                bind_host,
                header_read_timeout,
                max_connections,
                idle_timeout,
                trusted_proxies,
                forwarded_header,
                cors_origins,
            },
            database: DatabaseSettings {
                url: database_url,
                url_origin: s.get("database_url").map(|raw| raw.origin.clone()),
                pool: database,
            },
            tokens: TokenSettings {
                issuer,
                audience,
                jwt_algorithm,
                jwt_secret,
                id_token_algorithm,
                access_token_ttl,
                token_cache_size,
            },
            sessions: SessionSettings {
                refresh_token_ttl,
                refresh_reuse_grace,
                max_sessions_per_user,
                session_max_lifetime,
            },
            clients: ClientSettings {
                authorization_code_ttl,
                browser_session_ttl,
            },
            accounts: AccountSettings { registration },
            passwords: PasswordSettings {
                argon2,
                hash_workers,
                hash_queue,
            },
            throttle: ThrottleSettings {
                window: throttle_window,
                per_pair: throttle_per_pair,
                per_address: throttle_per_address,
                per_account: throttle_per_account,
            },
            audit: AuditSettings {
                retention_days: audit_retention_days,
            },
            log: LogSettings {
                filter: log,
                format: log_format,
            },
            roles,
            warnings: Vec::new(),
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
        assert_eq!(c.http.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.tokens.issuer, "http://127.0.0.1:8000");
        assert_eq!(c.tokens.jwt_algorithm, Algorithm::EdDSA);
        assert_eq!(c.tokens.access_token_ttl, 900);
        assert_eq!(c.passwords.argon2, Argon2Params::default());
    }

    #[test]
    fn code_and_browser_session_lifetimes_have_defaults_and_bounds() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.clients.authorization_code_ttl, 60);
        assert_eq!(c.clients.browser_session_ttl, 1_209_600);
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_AUTHORIZATION_CODE_TTL", "600"),
                ("WARDEN_BROWSER_SESSION_TTL", "3600"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                c.clients.authorization_code_ttl,
                c.clients.browser_session_ttl
            ),
            (600, 3600)
        );
        for (name, value) in [
            ("WARDEN_AUTHORIZATION_CODE_TTL", "0"),
            ("WARDEN_AUTHORIZATION_CODE_TTL", "601"),
            ("WARDEN_BROWSER_SESSION_TTL", "0"),
            ("WARDEN_BROWSER_SESSION_TTL", "-5"),
        ] {
            assert!(
                Config::load_from(None, env(&[(name, value)])).is_err(),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn session_lifetime_and_audit_retention_have_defaults_and_bounds() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.sessions.session_max_lifetime, 7_776_000);
        assert_eq!(c.audit.retention_days, Some(90));
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_SESSION_MAX_LIFETIME", "60"),
                ("WARDEN_AUDIT_RETENTION_DAYS", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.sessions.session_max_lifetime, c.audit.retention_days),
            (60, None)
        );
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
            c.http.max_connections,
            connections::default_max_connections()
        );
        assert_eq!(c.http.idle_timeout, Duration::from_secs(60));
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_MAX_CONNECTIONS", "4"),
                ("WARDEN_IDLE_TIMEOUT", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.max_connections, 4);
        assert_eq!(c.http.idle_timeout, Duration::from_secs(2));
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
    fn names_are_matched_in_any_case_and_kept_in_their_canonical_spelling() {
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_JWT_ALGORITHM", "eddsa"),
                ("WARDEN_REGISTRATION", "CLOSED"),
                ("WARDEN_LOG_FORMAT", "Json"),
                ("WARDEN_FORWARDED_HEADER", "Forwarded"),
            ]),
        )
        .unwrap();
        assert_eq!(c.tokens.jwt_algorithm, Algorithm::EdDSA);
        assert_eq!(c.accounts.registration, Registration::Closed);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.http.forwarded_header, ForwardedHeader::Forwarded);
        for (value, expected) in [
            ("es256", Algorithm::ES256),
            ("Rs256", Algorithm::RS256),
            ("hs256", Algorithm::HS256),
            ("EDDSA", Algorithm::EdDSA),
        ] {
            let c = Config::load_from(None, env(&[("WARDEN_JWT_ALGORITHM", value)])).unwrap();
            assert_eq!(c.tokens.jwt_algorithm, expected, "{value}");
        }
        // A secret with "hs256" is the HS256 case, and the message about a
        // secret without HS256 spells the algorithm canonically.
        let secret = "a secret of at least thirty-two bytes";
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_JWT_ALGORITHM", "hs256"),
                ("WARDEN_JWT_SECRET", secret),
            ]),
        )
        .unwrap();
        assert!(c.tokens.jwt_secret.is_some());
        let e = Config::load_from(
            None,
            env(&[
                ("WARDEN_JWT_ALGORITHM", "es256"),
                ("WARDEN_JWT_SECRET", secret),
            ]),
        )
        .unwrap_err();
        assert!(
            e.message.contains("jwt_algorithm is ES256"),
            "{}",
            e.message
        );
        // Still refused: what is no name of a choice.
        let e = Config::load_from(None, env(&[("WARDEN_LOG_FORMAT", "yaml")])).unwrap_err();
        assert_eq!(e.message, "expected text or json, got \"yaml\"");
        let e = Config::load_from(None, env(&[("WARDEN_REGISTRATION", "maybe")])).unwrap_err();
        assert_eq!(e.message, "expected open or closed, got \"maybe\"");
    }

    #[test]
    fn bind_takes_a_host_name_and_prefers_its_ipv4_address() {
        let c = Config::load_from(None, env(&[("WARDEN_BIND", "localhost:8001")])).unwrap();
        assert!(c.http.bind.ip().is_loopback(), "{}", c.http.bind);
        assert_eq!(c.http.bind.port(), 8001);
        assert_eq!(c.http.bind_host.as_deref(), Some("localhost"));
        // localhost has an IPv4 address here (127.0.0.1), which wins over ::1.
        assert_eq!(c.http.bind.to_string(), "127.0.0.1:8001");
        // The name as written stays in the default issuer.
        assert_eq!(c.tokens.issuer, "http://localhost:8001");
        // An IP address is as before, and has no host name.
        let c = Config::load_from(None, env(&[("WARDEN_BIND", "[::1]:8002")])).unwrap();
        assert_eq!(c.http.bind.to_string(), "[::1]:8002");
        assert_eq!(c.http.bind_host, None);
        assert_eq!(c.tokens.issuer, "http://[::1]:8002");
        for (value, message) in [
            ("localhost", "(no port)"),
            ("localhost:http", "the port must be 0 to 65535"),
            ("localhost:70000", "the port must be 0 to 65535"),
            (":8000", "expected an address and port"),
            ("no-such-host.invalid:8000", "cannot resolve the host name"),
        ] {
            let e = Config::load_from(None, env(&[("WARDEN_BIND", value)])).unwrap_err();
            assert_eq!(e.setting, "WARDEN_BIND", "{value}");
            assert!(e.message.contains(message), "{value}: {}", e.message);
        }
    }

    #[test]
    fn parse_bind_picks_the_first_ipv4_address() {
        assert_eq!(
            parse_bind("127.0.0.1:9").unwrap(),
            ("127.0.0.1:9".parse().unwrap(), None)
        );
        let (addr, host) = parse_bind("localhost:0").unwrap();
        assert!(addr.is_ipv4() && addr.ip().is_loopback(), "{addr}");
        assert_eq!(host.as_deref(), Some("localhost"));
    }

    #[test]
    fn an_empty_sqlite_path_is_refused() {
        for url in ["sqlite://", "sqlite:", "sqlite://?mode=rwc"] {
            let e = Config::load_from(None, env(&[("WARDEN_DATABASE_URL", url)])).unwrap_err();
            assert_eq!(e.setting, "WARDEN_DATABASE_URL", "{url}");
            assert!(e.message.contains("no file path"), "{}", e.message);
        }
        for url in ["sqlite::memory:", "sqlite://?mode=memory", "sqlite:w.db"] {
            Config::load_from(None, env(&[("WARDEN_DATABASE_URL", url)])).unwrap();
        }
    }

    #[test]
    fn sqlite_urls_are_read_as_sqlx_reads_them() {
        use std::path::PathBuf;
        let file = |p: &str| SqliteTarget::File(PathBuf::from(p));
        assert_eq!(sqlite_target("sqlite://warden.db"), file("warden.db"));
        assert_eq!(sqlite_target("sqlite:warden.db"), file("warden.db"));
        assert_eq!(
            sqlite_target("sqlite:///var/lib/w.db"),
            file("/var/lib/w.db")
        );
        assert_eq!(sqlite_target("sqlite://w.db?mode=rwc"), file("w.db"));
        assert_eq!(sqlite_target("sqlite://my%20db.db"), file("my db.db"));
        assert_eq!(sqlite_target("sqlite://100%.db"), file("100%.db"));
        assert_eq!(sqlite_target("sqlite::memory:"), SqliteTarget::Memory);
        assert_eq!(sqlite_target("sqlite://?mode=memory"), SqliteTarget::Memory);
        assert_eq!(sqlite_target("sqlite://"), file(""));
    }

    #[test]
    fn the_database_is_shown_absolute_and_without_a_password() {
        let shown = |url: &str| {
            Config::load_from(None, env(&[("WARDEN_DATABASE_URL", url)]))
                .unwrap()
                .database
                .display()
        };
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            shown("sqlite://warden.db"),
            format!("sqlite://{}", cwd.join("warden.db").display())
        );
        assert_eq!(
            shown("sqlite:///var/lib/w.db?mode=rwc"),
            "sqlite:///var/lib/w.db"
        );
        assert_eq!(shown("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            shown("postgres://warden:hunter2@db.internal/auth?sslmode=require&password=x"),
            "postgres://warden@db.internal:5432/auth"
        );
        assert_eq!(
            shown("postgresql://db.internal:6543/auth"),
            "postgresql://db.internal:6543/auth"
        );
        assert_eq!(
            shown("postgres:///auth?host=/run/postgresql&password=x"),
            "postgres:///run/postgresql:5432/auth"
        );
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.database.url_origin, None);
        let c = Config::load_from(None, env(&[("WARDEN_DATABASE_URL", "sqlite://x.db")])).unwrap();
        assert_eq!(
            c.database.url_origin.as_deref(),
            Some("WARDEN_DATABASE_URL")
        );
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
            c.database.url_redacted(),
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
        let e = Config::load_from(
            None,
            env(&[
                ("WARDEN_JWT_ALGORITHM", "HS256"),
                ("WARDEN_JWT_SECRET", "short"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.setting, "WARDEN_JWT_SECRET");
        assert!(e.message.contains("32 bytes"));
    }

    #[test]
    fn malformed_issuer_is_refused() {
        let e = Config::load_from(None, env(&[("WARDEN_ISSUER", "not a url")])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_ISSUER");
    }

    /// deploy/warden.toml is the commented example the docs point to: it
    /// loads as it is, names every setting (set or commented out), and the
    /// EnvironmentFile beside it uses only known variables.
    #[test]
    fn the_example_configuration_loads_and_names_every_setting() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let example = deploy.join("warden.toml");
        let c = Config::load_from(Some(&example), env(&[])).unwrap();
        assert!(c.roles.get("student").is_some());
        let text = std::fs::read_to_string(&example).unwrap();
        let named: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim_start_matches('#').trim_start().split_once(" ="))
            .map(|(key, _)| key)
            .collect();
        for key in SETTINGS {
            assert!(
                named.contains(key),
                "{key} is missing from {}",
                example.display()
            );
        }
        let vars = std::fs::read_to_string(deploy.join("warden.env")).unwrap();
        let vars: Vec<(String, String)> = vars
            .lines()
            .map(|l| l.trim_start_matches('#').trim_start())
            .filter_map(|l| l.split_once('='))
            .filter(|(name, _)| name.starts_with("WARDEN_"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        assert!(vars.len() >= 3);
        let c = Config::load_from(Some(&example), vars).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
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
        assert_eq!(c.tokens.access_token_ttl, 120);
        assert_eq!(c.accounts.registration, Registration::Closed);
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
        assert!(c.http.cors_origins.contains("https://app.example.com"));
        assert!(c.http.cors_origins.contains("http://localhost:5173"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, "cors_origins = [\"https://app.example.com\"]\n").unwrap();
        let c = Config::load_from(Some(&path), env(&[])).unwrap();
        assert!(c.http.cors_origins.contains("https://app.example.com"));
        assert!(
            Config::load_from(None, env(&[]))
                .unwrap()
                .http
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
        assert_eq!(e.message, "unknown setting; did you mean access_token_ttl?");
        std::fs::write(&path, "zz_certainly_not_a_setting = 1\n").unwrap();
        let e = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert_eq!(e.message, "unknown setting");
        std::fs::write(&path, "[role.admin]\nscopes = [\"me\"]\n").unwrap();
        let e = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert!(
            e.message.contains("did you mean [roles.NAME]?"),
            "{}",
            e.message
        );
    }

    #[test]
    fn sections_hold_their_settings() {
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_BIND", "0.0.0.0:9000"),
                ("WARDEN_DATABASE_URL", "sqlite://x.db"),
                ("WARDEN_DATABASE_MAX_CONNECTIONS", "3"),
                ("WARDEN_AUDIENCE", "api"),
                ("WARDEN_TOKEN_CACHE_SIZE", "0"),
                ("WARDEN_REFRESH_TOKEN_TTL", "600"),
                ("WARDEN_REFRESH_REUSE_GRACE", "0"),
                ("WARDEN_MAX_SESSIONS_PER_USER", "7"),
                ("WARDEN_HASH_WORKERS", "2"),
                ("WARDEN_HASH_QUEUE", "5"),
                ("WARDEN_ARGON2_MEMORY_KIB", "256"),
                ("WARDEN_THROTTLE_WINDOW", "60"),
                ("WARDEN_THROTTLE_PER_PAIR", "2"),
                ("WARDEN_THROTTLE_PER_ADDRESS", "3"),
                ("WARDEN_THROTTLE_PER_ACCOUNT", "4"),
                ("WARDEN_TRUSTED_PROXIES", "10.0.0.0/8"),
                ("WARDEN_FORWARDED_HEADER", "forwarded"),
                ("WARDEN_HEADER_READ_TIMEOUT", "3"),
                ("WARDEN_LOG", "debug"),
                ("WARDEN_LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(c.tokens.issuer, "http://0.0.0.0:9000");
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(3));
        assert!(c.http.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(c.http.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(c.database.url, "sqlite://x.db");
        assert_eq!(c.database.pool.max_connections, 3);
        assert_eq!(
            c.database.pool.acquire_timeout,
            DatabaseOptions::default().acquire_timeout
        );
        assert_eq!(c.tokens.audience.as_deref(), Some("api"));
        assert_eq!(c.tokens.token_cache_size, 0);
        assert_eq!(c.tokens.jwt_secret, None);
        assert_eq!(c.sessions.refresh_token_ttl, 600);
        assert_eq!(c.sessions.refresh_reuse_grace, 0);
        assert_eq!(c.sessions.max_sessions_per_user, 7);
        assert_eq!(c.accounts.registration, Registration::Open);
        assert_eq!(c.passwords.hash_workers, 2);
        assert_eq!(c.passwords.hash_queue, 5);
        assert_eq!(c.passwords.argon2.memory_kib, 256);
        let t = &c.throttle;
        assert_eq!(
            (t.window, t.per_pair, t.per_address, t.per_account),
            (60, 2, 3, 4)
        );
        assert_eq!(c.log.filter, "debug");
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn the_defaults_of_every_section() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(10));
        assert!(c.http.trusted_proxies.is_empty());
        assert_eq!(c.http.forwarded_header, ForwardedHeader::XForwardedFor);
        assert_eq!(c.database.url, "sqlite://warden.db");
        assert_eq!(c.database.pool, DatabaseOptions::default());
        assert_eq!(c.tokens.audience, None);
        assert_eq!(
            c.tokens.token_cache_size,
            warden_guard::DEFAULT_CACHE_CAPACITY
        );
        assert_eq!(c.sessions.refresh_token_ttl, 2_592_000);
        assert_eq!(c.sessions.refresh_reuse_grace, 10);
        assert_eq!(c.sessions.max_sessions_per_user, 100);
        assert_eq!(c.accounts.registration, Registration::Open);
        assert_eq!(c.passwords.hash_queue, 64);
        let t = &c.throttle;
        assert_eq!(
            (t.window, t.per_pair, t.per_address, t.per_account),
            (900, 5, 50, 100)
        );
        assert_eq!(c.log.filter, "info");
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_misspelt_variable_is_a_warning_with_a_suggestion() {
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_ACCES_TOKEN_TTL", "60"),
                ("WARDEN_ACCESS_TOKEN_TTL", "120"),
                ("WARDEN_CONFG", "warden.toml"),
                ("WARDEN_SECRET", "not read"),
            ]),
        )
        .unwrap();
        // The misspelt one is not read.
        assert_eq!(c.tokens.access_token_ttl, 120);
        let lines: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "unknown environment variable WARDEN_ACCES_TOKEN_TTL: did you mean WARDEN_ACCESS_TOKEN_TTL?",
                "unknown environment variable WARDEN_CONFG: did you mean WARDEN_CONFIG?",
                "unknown environment variable WARDEN_SECRET: did you mean WARDEN_JWT_SECRET?",
            ]
        );
        assert!(
            !lines.concat().contains("not read"),
            "values are not logged"
        );
    }

    #[test]
    fn an_unknown_variable_far_from_any_setting_gets_no_guess() {
        let c = Config::load_from(None, env(&[("WARDEN_ZZ_NOTHING_LIKE_IT", "1")])).unwrap();
        assert_eq!(
            c.warnings,
            [ConfigWarning::UnknownVariable {
                name: "WARDEN_ZZ_NOTHING_LIKE_IT".to_owned(),
                suggestion: None
            }]
        );
        assert!(!c.warnings[0].to_string().contains("did you mean"));
    }

    #[test]
    fn kubernetes_service_links_are_a_friendly_warning() {
        let c = Config::load_from(
            None,
            env(&[
                ("WARDEN_SERVICE_HOST", "10.96.0.12"),
                ("WARDEN_SERVICE_PORT", "8000"),
                ("WARDEN_SERVICE_PORT_HTTP", "8000"),
                ("WARDEN_PORT", "tcp://10.96.0.12:8000"),
                ("WARDEN_PORT_8000_TCP", "tcp://10.96.0.12:8000"),
                ("WARDEN_PORT_8000_TCP_ADDR", "10.96.0.12"),
            ]),
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 6, "{:?}", c.warnings);
        for w in &c.warnings {
            assert!(matches!(w, ConfigWarning::ServiceLink { .. }), "{w:?}");
            let line = w.to_string();
            assert!(
                line.starts_with("unknown environment variable WARDEN_"),
                "{line}"
            );
            assert!(line.contains("Kubernetes service link"), "{line}");
            assert!(!line.contains("did you mean"), "{line}");
        }
    }

    #[test]
    fn every_setting_and_warden_config_is_read_without_a_warning() {
        let value = |key: &str| match key {
            "bind" => "127.0.0.1:8000",
            "database_url" => "sqlite://warden.db",
            "issuer" => "http://localhost:8000",
            "audience" => "api",
            "jwt_algorithm" => "HS256",
            "id_token_algorithm" => "ES256",
            "jwt_secret" => "a secret of at least thirty-two bytes",
            "registration" => "closed",
            "trusted_proxies" => "10.0.0.1",
            "forwarded_header" => "forwarded",
            "cors_origins" => "https://a.test",
            "log" => "info",
            "log_format" => "text",
            "argon2_memory_kib" => "256",
            _ => "5",
        };
        let mut vars: Vec<(String, String)> = SETTINGS
            .iter()
            .map(|k| {
                (
                    format!("WARDEN_{}", k.to_ascii_uppercase()),
                    value(k).to_owned(),
                )
            })
            .collect();
        vars.push(("WARDEN_CONFIG".to_owned(), "warden.toml".to_owned()));
        // Not ours: neither read nor warned about.
        vars.push(("PATH".to_owned(), "/bin".to_owned()));
        vars.push(("warden_bind".to_owned(), "nonsense".to_owned()));
        let c = Config::load_from(None, vars).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.accounts.registration, Registration::Closed);
        assert_eq!(c.http.bind.to_string(), "127.0.0.1:8000");
    }

    #[test]
    fn a_jwt_secret_without_hs256_is_refused() {
        const SECRET: &str = "a secret of at least thirty-two bytes";
        let e = Config::load_from(None, env(&[("WARDEN_JWT_SECRET", SECRET)])).unwrap_err();
        assert_eq!(e.setting, "WARDEN_JWT_SECRET");
        assert!(e.message.contains("HS256"), "{}", e.message);
        assert!(e.message.contains("EdDSA (the default)"), "{}", e.message);
        assert!(!e.to_string().contains(SECRET));
        let e = Config::load_from(
            None,
            env(&[
                ("WARDEN_JWT_ALGORITHM", "ES256"),
                ("WARDEN_JWT_SECRET", SECRET),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.setting, "WARDEN_JWT_SECRET");
        assert!(
            e.message.contains("ES256 (WARDEN_JWT_ALGORITHM)"),
            "{}",
            e.message
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, format!("jwt_secret = \"{SECRET}\"\n")).unwrap();
        let e = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert!(e.setting.starts_with("jwt_secret in"), "{}", e.setting);
        let c = Config::load_from(Some(&path), env(&[("WARDEN_JWT_ALGORITHM", "HS256")])).unwrap();
        assert_eq!(
            c.tokens.jwt_secret,
            Some(Secret(SECRET.as_bytes().to_vec()))
        );
    }
}
