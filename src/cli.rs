//! The `warden` command line.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::auth::accounts::{self, Actor, NewUser};
use crate::auth::{self, Services, tokens};
use crate::config::{Config, LogFormat, SqliteTarget};
use crate::domain::UniqueField;
use crate::domain::profile::{self, Email, Username};
use crate::storage::{self, Store, StoreError};

/// Where `warden serve --help` sends people for the settings.
const SERVE_HELP: &str = "\
Settings come from the --config file (or WARDEN_CONFIG) and from WARDEN_* environment \
variables, which override it; each file key is the variable's name in lower case without \
WARDEN_ (bind is WARDEN_BIND). The ones most often set:
  WARDEN_BIND            where to listen (default 127.0.0.1:8000; a host name like localhost:8000 works)
  WARDEN_DATABASE_URL    sqlite://PATH (default sqlite://warden.db) or postgres://USER@HOST:PORT/DB
  WARDEN_ISSUER          the public URL of this server (default http://<bind>)
  WARDEN_JWT_ALGORITHM   EdDSA (default), ES256, RS256 or HS256 (with WARDEN_JWT_SECRET)
  WARDEN_REGISTRATION    open (default) or closed
  WARDEN_LOG             log filter (default info); WARDEN_LOG_FORMAT text or json
Every setting, its default and its bounds: docs/reference/configuration.md in warden's \
repository.";

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "JWT authentication and authorization server",
    after_help = "The commands and their output: docs/reference/cli.md; every setting: \
                  docs/reference/configuration.md."
)]
struct Cli {
    /// TOML configuration file; WARDEN_* environment variables override it.
    #[arg(long, global = true, env = "WARDEN_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates and migrates the database if needed).
    #[command(after_help = SERVE_HELP)]
    Serve,
    /// Create the database if needed, apply its migrations and exit.
    Migrate,
    /// Manage users (on an existing database).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage signing keys (on an existing database).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage OAuth clients (on an existing database).
    #[command(subcommand)]
    Clients(ClientsCommand),
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client and print it as JSON, with its client_secret for a
    /// confidential client (shown this once).
    Create(CreateClient),
    /// List every client.
    List,
    /// Give a confidential client a new secret (printed once, with the
    /// client as JSON); the old one stops working at once.
    RotateSecret {
        /// The client_id.
        id: String,
    },
    /// Delete a client; every session issued through it ends.
    Delete {
        /// The client_id.
        id: String,
    },
}

#[derive(Args)]
struct CreateClient {
    /// The name users see on the consent screen (1 to 100 characters).
    #[arg(long)]
    name: String,
    /// A redirect URI, exactly as the client will send it (at least one;
    /// repeatable): https, http://127.0.0.1 or http://[::1] (any port), or
    /// a reverse-domain custom scheme for a public client.
    #[arg(long = "redirect-uri", value_name = "URI", required = true)]
    redirect_uris: Vec<String>,
    /// A public client (single-page, mobile or CLI app): no secret, PKCE
    /// alone.
    #[arg(long)]
    public: bool,
    /// The operator's own app: no consent screen.
    #[arg(long)]
    first_party: bool,
    /// A scope the client may obtain (repeatable); default: me and the
    /// OpenID scopes.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A grant type (repeatable): authorization_code, refresh_token,
    /// client_credentials; default: authorization_code and refresh_token.
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// Where the client may send users after logout (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// The client's OpenID back-channel logout URL.
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key the active one. Older public keys stay in
    /// JWKS until the last token they signed has expired; running servers
    /// pick the new key up without a restart.
    Rotate,
    /// List signing keys of every algorithm.
    List,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user (prompts for the password without echo unless
    /// --password-stdin is given).
    Create(CreateUser),
    /// List every user.
    List,
    /// Replace a user's roles; their sessions end and earlier tokens stop
    /// working.
    SetRoles {
        /// The user: a username, an email or an id.
        user: String,
        /// The new roles (at least one).
        #[arg(required = true)]
        roles: Vec<String>,
    },
    /// Delete a user; their sessions end and their tokens stop working.
    Delete {
        /// The user: a username, an email or an id.
        user: String,
    },
    /// Disable a user: they cannot sign in, their sessions end and their
    /// tokens stop working.
    Disable {
        /// The user: a username, an email or an id.
        user: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user: a username, an email or an id.
        user: String,
    },
    /// Set a user's password (prompts twice without echo unless
    /// --password-stdin is given); their sessions end.
    SetPassword {
        /// The user: a username, an email or an id.
        user: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Args)]
struct CreateUser {
    /// The username: 3 to 32 characters of A-Z a-z 0-9 _ . - (unique,
    /// case-insensitively).
    #[arg(long)]
    username: String,
    /// The email address (unique, case-insensitively).
    #[arg(long)]
    email: String,
    /// A role to grant (repeatable); `user` when none is given. Custom
    /// roles are the [roles.NAME] tables of the --config file.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// The full name, shown on the account page.
    #[arg(long)]
    full_name: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// An error for the user, with the process exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::new(one_line(e.chain()))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::new(format_chain(&e))
    }
}

impl From<crate::auth::Error> for Failure {
    fn from(e: crate::auth::Error) -> Self {
        match e {
            // The rule that was broken, not "validation failed".
            auth::Error::Validation(errors) => Self::new(
                errors
                    .iter()
                    .map(|e| e.msg.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => Self::new(format_chain(&other)),
        }
    }
}

impl From<crate::auth::error::PasswordError> for Failure {
    fn from(e: crate::auth::error::PasswordError) -> Self {
        Self::new(format_chain(&e))
    }
}

/// `error: cause: cause…`, so a failing part is named.
fn format_chain(error: &(dyn std::error::Error + 'static)) -> String {
    one_line(std::iter::successors(Some(error), |e| e.source()))
}

/// The messages of an error chain as one line: `what: why: why`. A cause
/// whose text the line already holds is left out (sqlx's `error returned
/// from database: X` has `X` as its source, and transparent wrappers repeat
/// their inner error), and line breaks become `; `.
fn one_line<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut text = String::new();
    for cause in chain {
        let part = cause.to_string();
        let part = part.trim();
        if part.is_empty() || text.contains(part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(part);
    }
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn init_logging(config: &Config) {
    let mut filter = tracing_subscriber::EnvFilter::new(&config.log.filter);
    // sqlx logs PostgreSQL's notices at info, and every migration run
    // gets one (`relation "_sqlx_migrations" already exists, skipping`):
    // noise in front of each command's output, unless sqlx is asked for.
    if !config.log.filter.contains("sqlx")
        && let Ok(quiet) = "sqlx::postgres::notice=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Entry point of the `warden` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    // Only now can they be logged: the configuration chose the log's
    // filter and format.
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let context = Context {
        config,
        file: cli.config,
    };
    match runtime.block_on(run(cli.command, context)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// What every command runs with: the configuration and the file it came
/// from (for messages that say where roles are defined).
struct Context {
    config: Config,
    file: Option<PathBuf>,
}

async fn run(command: Command, cx: Context) -> Result<(), Failure> {
    match command {
        Command::Serve => serve(cx.config).await,
        Command::Migrate => {
            let config = cx.config;
            let store = storage::connect_with(&config.database.url, &config.database.pool).await?;
            store.migrate().await?;
            eprintln!("database: {}", config.database.display());
            println!("migrations applied to {}", config.database.display());
            store.close().await;
            Ok(())
        }
        Command::Users(UsersCommand::Create(args)) => create_user(cx, args).await,
        Command::Users(UsersCommand::List) => list_users(cx.config).await,
        Command::Users(UsersCommand::SetRoles { user, roles }) => set_roles(cx, user, roles).await,
        Command::Users(UsersCommand::Delete { user }) => delete_user(cx.config, user).await,
        Command::Users(UsersCommand::Disable { user }) => set_disabled(cx.config, user, true).await,
        Command::Users(UsersCommand::Enable { user }) => set_disabled(cx.config, user, false).await,
        Command::Users(UsersCommand::SetPassword {
            user,
            password_stdin,
        }) => set_password(cx.config, user, password_stdin).await,
        Command::Keys(KeysCommand::Rotate) => rotate_keys(cx.config).await,
        Command::Keys(KeysCommand::List) => list_keys(cx.config).await,
        Command::Clients(ClientsCommand::Create(args)) => create_client(cx.config, args).await,
        Command::Clients(ClientsCommand::List) => list_clients(cx.config).await,
        Command::Clients(ClientsCommand::RotateSecret { id }) => {
            rotate_client_secret(cx.config, id).await
        }
        Command::Clients(ClientsCommand::Delete { id }) => delete_client(cx.config, id).await,
    }
}

/// Opens the configured database for a command other than `serve` and
/// `migrate`, which must not create one: a SQLite file that is missing
/// (the command was run in the wrong directory, or without the server's
/// `--config`) or a database that was never migrated is an error naming
/// it, not a fresh empty database. Pending migrations of an existing
/// database are applied. Prints which database it is on standard error.
async fn open_existing(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    let database = &config.database;
    // Where the URL came from; never the URL itself, which may hold a
    // password (a SQLite URL holds none, so that one is shown).
    let origin = match &database.url_origin {
        Some(origin) => format!("database_url from {origin}"),
        None => "the default database_url".to_owned(),
    };
    let or_elsewhere = "with the same settings, or name an existing database with --config or \
                        WARDEN_DATABASE_URL";
    if let Some(SqliteTarget::File(path)) = database.sqlite_target() {
        let shown = std::path::absolute(&path).unwrap_or(path.clone());
        if !path.exists() {
            return Err(Failure::new(format!(
                "no database at {} ({}, {origin}); create it with \"warden migrate\" (or start \
                 \"warden serve\") {or_elsewhere}",
                shown.display(),
                database.url
            )));
        }
    }
    let store = storage::connect_with(&database.url, &database.pool).await?;
    match store.is_migrated().await {
        Ok(true) => {}
        Ok(false) => {
            store.close().await;
            return Err(Failure::new(format!(
                "the database {} has no warden tables: it was never migrated ({origin}); \
                 migrate it with \"warden migrate\" (or start \"warden serve\") {or_elsewhere}",
                database.display()
            )));
        }
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    }
    if let Err(e) = store.migrate().await {
        store.close().await;
        return Err(e.into());
    }
    eprintln!("database: {}", database.display());
    Ok(store)
}

/// [`open_existing`], then the services on it: the same as a server's,
/// with one hashing thread.
async fn open_services(config: Config) -> Result<Services, Failure> {
    let store = open_existing(&config).await?;
    match Services::open_on(config, store.clone(), 1, 1).await {
        Ok(services) => Ok(services),
        Err(e) => {
            store.close().await;
            Err(e.into())
        }
    }
}

/// An unknown role, and where roles come from: the built-in ones, and the
/// `[roles.NAME]` tables of the configuration file, if one was given.
fn unknown_role(message: String, file: Option<&Path>) -> String {
    use crate::domain::roles::{ROLE_ADMIN, ROLE_USER};
    let hint = match file {
        Some(path) => format!(
            "custom roles are the [roles.NAME] tables of {}",
            path.display()
        ),
        None => "custom roles come from [roles.NAME] tables in a configuration file, and none \
                 was given: pass --config PATH (or set WARDEN_CONFIG) as for the server"
            .to_owned(),
    };
    format!("{message}; {hint} ({ROLE_ADMIN} and {ROLE_USER} are built in)")
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, before the server binds, so a signal that arrives during start-up
/// still shuts down cleanly instead of killing the process.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests in flight");
    })
}

async fn serve(config: Config) -> Result<(), Failure> {
    let shutdown = shutdown_signal()
        .map_err(|e| Failure::new(format!("cannot install signal handlers: {e}")))?;
    let bind = config.http.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Failure::new(cannot_listen(&config, &e)))?;
    let issuer = config.tokens.issuer.clone();
    let database = config.database.display();
    let algorithm = crate::auth::keys::algorithm_name(config.tokens.jwt_algorithm);
    let server = crate::app::Server::build(config).await?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(e.to_string()))?;
    tracing::info!(%database, algorithm, issuer = %issuer, "warden listening on http://{local}");
    tracing::info!("API docs (Swagger UI) at http://{local}/docs");
    // Serves until the signal, then stops the background tasks and closes
    // the database before the process exits.
    server
        .run(listener, shutdown)
        .await
        .map_err(|e| Failure::new(format!("server error: {e}")))
}

/// `cannot listen on ADDRESS: cause; what to do`, naming the setting.
fn cannot_listen(config: &Config, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let bind = config.http.bind;
    let shown = match &config.http.bind_host {
        Some(host) => format!("{bind} ({host}:{})", bind.port()),
        None => bind.to_string(),
    };
    let setting = "set bind (WARDEN_BIND)";
    let next = std::net::SocketAddr::new(bind.ip(), bind.port().wrapping_add(1).max(1));
    let cause = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "the port is in use by another process (another warden?); stop it, or {setting} to \
             a free address such as {next}"
        ),
        ErrorKind::PermissionDenied => format!(
            "permission denied (ports below 1024 need privileges); {setting} to a port above \
             1023, such as {}",
            std::net::SocketAddr::new(bind.ip(), 8000)
        ),
        ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine; {setting} to one of its addresses, \
             127.0.0.1 or 0.0.0.0 (every interface)",
            bind.ip()
        ),
        _ => format!("{e}; check bind (WARDEN_BIND)"),
    };
    format!("cannot listen on {shown}: {cause}")
}

fn read_password(from_stdin: bool) -> Result<String, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(format!("cannot read the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            "no terminal to prompt for the password; pass --password-stdin and pipe it in",
        ));
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| Failure::new(format!("cannot read the password: {e}")))?;
    let again = rpassword::prompt_password("Repeat password: ")
        .map_err(|e| Failure::new(format!("cannot read the password: {e}")))?;
    if first != again {
        return Err(Failure::new("the passwords do not match"));
    }
    Ok(first)
}

async fn create_user(cx: Context, args: CreateUser) -> Result<(), Failure> {
    let config = cx.config;
    let username =
        Username::parse(&args.username).map_err(|m| Failure::new(format!("--username: {m}")))?;
    let email = Email::parse(&args.email).map_err(|m| Failure::new(format!("--email: {m}")))?;
    let full_name = args
        .full_name
        .as_deref()
        .map(profile::parse_full_name)
        .transpose()
        .map_err(|m| Failure::new(format!("--full-name: {m}")))?;
    // Checked before the password prompt, so that a mistyped --role is not
    // reported only after the password was typed; accounts::create
    // applies the same rule (and the default role) again.
    config
        .roles
        .check_known(&args.roles)
        .map_err(|m| Failure::new(format!("--role: {}", unknown_role(m, cx.file.as_deref()))))?;
    // The database too: a missing one is said before the prompt, not
    // after the password was typed twice.
    let services = open_services(config).await?;
    let created = async {
        let password = read_password(args.password_stdin)?;
        profile::check_new_password(&password, username.as_str(), email.as_str())
            .map_err(|m| Failure::new(format!("password: {m}")))?;
        let new = NewUser {
            username,
            email,
            password: &password,
            full_name,
        };
        Ok::<_, Failure>(accounts::create(&services, new, args.roles, None, Actor::Cli).await)
    }
    .await;
    services.store.close().await;
    let user = match created? {
        Ok(user) => user,
        Err(auth::Error::Conflict(UniqueField::Username)) => {
            return Err(Failure::new(format!(
                "username {:?} is already taken",
                args.username
            )));
        }
        Err(auth::Error::Conflict(UniqueField::Email)) => {
            return Err(Failure::new(format!(
                "email {:?} is already registered",
                args.email
            )));
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "created user {} ({}) with roles {}",
        user.username,
        user.id,
        user.roles.join(", ")
    );
    Ok(())
}

async fn list_users(config: Config) -> Result<(), Failure> {
    let store = open_existing(&config).await?;
    let users = store.list_users().await;
    store.close().await;
    let users = users?;
    if users.is_empty() {
        println!("no users");
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<30}  {:<16}  {:<8}  CREATED",
        "ID", "USERNAME", "EMAIL", "ROLES", "DISABLED"
    );
    for u in &users {
        println!(
            "{:<36}  {:<20}  {:<30}  {:<16}  {:<8}  {}",
            u.id,
            u.username,
            u.email,
            u.roles.join(","),
            if u.disabled { "yes" } else { "no" },
            profile::rfc3339(u.created_at)
        );
    }
    Ok(())
}

/// `no user "bob"` for `NotFound`, the error itself otherwise.
fn no_such_user(user: &str, e: auth::Error) -> Failure {
    match e {
        auth::Error::NotFound => Failure::new(format!(
            "no user {user:?} (give a username, an email or an id; \"warden users list\" shows them)"
        )),
        e => e.into(),
    }
}

async fn set_roles(cx: Context, user: String, roles: Vec<String>) -> Result<(), Failure> {
    // Before the database, so the hint names where roles come from.
    cx.config
        .roles
        .check_known(&roles)
        .map_err(|m| Failure::new(unknown_role(m, cx.file.as_deref())))?;
    let services = open_services(cx.config).await?;
    // The same service as `PATCH /users/{id}`: every session ends, the
    // change is audited (`by: cli`); a running server picks it up from the
    // database within its sync interval.
    let result = accounts::set_roles(&services, &user, roles, Actor::Cli).await;
    services.store.close().await;
    let record = result.map_err(|e| no_such_user(&user, e))?;
    println!(
        "{}: roles set to {}",
        record.username,
        record.roles.join(", ")
    );
    Ok(())
}

/// `users delete`: the service behind `DELETE /users/{id}`, audited as
/// `user_deleted` with `by: cli`.
async fn delete_user(config: Config, user: String) -> Result<(), Failure> {
    let services = open_services(config).await?;
    let result = async {
        let record = accounts::find(&services, &user).await?;
        accounts::delete(&services, record.id, "cli").await?;
        Ok(record)
    }
    .await;
    services.store.close().await;
    let record = result.map_err(|e| no_such_user(&user, e))?;
    println!(
        "deleted user {} ({}); their sessions ended and their tokens stop working",
        record.username, record.id
    );
    Ok(())
}

/// `users disable` and `users enable`: `PATCH /users/{id}` with
/// `{"disabled": ...}`, a security change (sessions end, audited as
/// `user_security_changed` with `by: cli`, the last admin kept).
async fn set_disabled(config: Config, user: String, disabled: bool) -> Result<(), Failure> {
    let services = open_services(config).await?;
    let result = async {
        let record = accounts::find(&services, &user).await?;
        let changes = crate::domain::UserChanges {
            disabled: Some(disabled),
            ..Default::default()
        };
        accounts::update(&services, record.id, changes, Actor::Cli).await
    }
    .await;
    services.store.close().await;
    let record = result.map_err(|e| no_such_user(&user, e))?;
    if disabled {
        println!(
            "{}: disabled; their sessions ended and their tokens stop working",
            record.username
        );
    } else {
        println!("{}: enabled; they can sign in again", record.username);
    }
    Ok(())
}

/// `users set-password`: a new password set by an operator, with the
/// rules of `PUT /users/me/password` and the same transaction (every
/// session ends), audited as `password_changed` with `by: cli`.
async fn set_password(config: Config, user: String, from_stdin: bool) -> Result<(), Failure> {
    let services = open_services(config).await?;
    let result = async {
        let record = accounts::find(&services, &user)
            .await
            .map_err(|e| no_such_user(&user, e))?;
        let password = read_password(from_stdin)?;
        profile::check_new_password(&password, &record.username, &record.email)
            .map_err(|m| Failure::new(format!("password: {m}")))?;
        Ok::<_, Failure>(
            accounts::set_password(&services, &record, &password, None, Actor::Cli).await?,
        )
    }
    .await;
    services.store.close().await;
    let record = result?;
    println!(
        "{}: password changed; their sessions ended",
        record.username
    );
    Ok(())
}

/// A client registration's 422 as one line naming the flag and the value:
/// `--redirect-uri "http://app.example.com/cb": redirect URI must use https...`.
fn client_failure(e: auth::Error, new: &auth::clients::NewClient) -> Failure {
    let auth::Error::Validation(errors) = e else {
        return e.into();
    };
    let described: Vec<String> = errors
        .iter()
        .map(|e| {
            let field = e.loc.get(1).map(String::as_str).unwrap_or("");
            let index = e.loc.get(2).and_then(|i| i.parse::<usize>().ok());
            let (flag, list): (&str, Option<&Vec<String>>) = match field {
                "name" => ("--name", None),
                "redirect_uris" => ("--redirect-uri", Some(&new.redirect_uris)),
                "post_logout_redirect_uris" => (
                    "--post-logout-redirect-uri",
                    Some(&new.post_logout_redirect_uris),
                ),
                "backchannel_logout_uri" => ("--backchannel-logout-uri", None),
                "grant_types" => ("--grant", new.grant_types.as_ref()),
                "scopes" => ("--scope", new.scopes.as_ref()),
                other => (other, None),
            };
            match index.and_then(|i| list?.get(i)) {
                Some(value) => format!("{flag} {value:?}: {}", e.msg),
                None => format!("{flag}: {}", e.msg),
            }
        })
        .collect();
    Failure::new(described.join("; "))
}

/// The client as the API shows it, with its secret when there is one.
fn print_client(client: &crate::domain::ClientRecord, secret: Option<String>) {
    use crate::http::routes::clients::{ClientView, ClientWithSecret};
    let shown = secret.is_some();
    let body = ClientWithSecret {
        client: ClientView::from(client),
        client_secret: secret,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&body).expect("a client serialises")
    );
    if shown {
        eprintln!(
            "the client_secret is shown only this once (warden keeps only its hash); store it now"
        );
    }
}

/// `no client "X"` for `NotFound` (an id that is not a UUID names none
/// either), the error itself otherwise.
fn no_such_client(id: &str, e: auth::Error) -> Failure {
    match e {
        auth::Error::NotFound => Failure::new(format!(
            "no client {id:?} (give a client_id; \"warden clients list\" shows them)"
        )),
        e => e.into(),
    }
}

fn parse_client_id(id: &str) -> Result<uuid::Uuid, auth::Error> {
    uuid::Uuid::parse_str(id).map_err(|_| auth::Error::NotFound)
}

/// `clients create`: the service behind `POST /clients`, audited as
/// `client_created` with `by: cli`.
async fn create_client(config: Config, args: CreateClient) -> Result<(), Failure> {
    let new = auth::clients::NewClient {
        name: args.name,
        public: args.public,
        first_party: args.first_party,
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        backchannel_logout_uri: args.backchannel_logout_uri,
        grant_types: (!args.grants.is_empty()).then_some(args.grants),
        scopes: (!args.scopes.is_empty()).then_some(args.scopes),
        id_token_signed_response_alg: None,
    };
    let services = open_services(config).await?;
    let result = auth::clients::create(
        &services,
        new.clone(),
        None,
        None,
        crate::auth::tokens::now(),
    )
    .await;
    services.store.close().await;
    let (client, secret) = result.map_err(|e| client_failure(e, &new))?;
    print_client(&client, secret);
    Ok(())
}

async fn list_clients(config: Config) -> Result<(), Failure> {
    let services = open_services(config).await?;
    let result = async {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = auth::clients::list(&services, after, 200).await?;
            all.extend(page);
            match next {
                Some(id) => after = Some(id),
                None => break,
            }
        }
        Ok::<_, auth::Error>(all)
    }
    .await;
    services.store.close().await;
    let clients = result?;
    if clients.is_empty() {
        println!("no clients");
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<12}  {:<11}  {:<40}  {:<40}  CREATED",
        "CLIENT_ID", "NAME", "KIND", "FIRST_PARTY", "GRANTS", "REDIRECT_URIS"
    );
    for c in &clients {
        println!(
            "{:<36}  {:<20}  {:<12}  {:<11}  {:<40}  {:<40}  {}",
            c.id,
            c.name,
            if c.public { "public" } else { "confidential" },
            if c.first_party { "yes" } else { "no" },
            c.grant_types.join(","),
            c.redirect_uris.join(","),
            profile::rfc3339(c.created_at)
        );
    }
    Ok(())
}

/// `clients rotate-secret`: `POST /clients/{id}/secret`, audited as
/// `client_secret_rotated` with `by: cli`.
async fn rotate_client_secret(config: Config, id: String) -> Result<(), Failure> {
    let services = open_services(config).await?;
    let result = async {
        let client = parse_client_id(&id)?;
        auth::clients::rotate_secret(&services, client, None, None, crate::auth::tokens::now())
            .await
    }
    .await;
    services.store.close().await;
    let (client, secret) = result.map_err(|e| no_such_client(&id, e))?;
    print_client(&client, Some(secret));
    Ok(())
}

/// `clients delete`: `DELETE /clients/{id}`, audited as `client_deleted`
/// with `by: cli`. A running server stops accepting the ended sessions'
/// tokens within its sync interval.
async fn delete_client(config: Config, id: String) -> Result<(), Failure> {
    let services = open_services(config).await?;
    let result = async {
        let client = parse_client_id(&id)?;
        let record = auth::clients::get(&services, client).await?;
        let ended =
            auth::clients::delete(&services, client, None, None, crate::auth::tokens::now())
                .await?;
        Ok::<_, auth::Error>((record, ended))
    }
    .await;
    services.store.close().await;
    let (record, ended) = result.map_err(|e| no_such_client(&id, e))?;
    println!(
        "deleted client {} ({}); {ended} session(s) issued through it ended",
        record.name, record.id
    );
    Ok(())
}

async fn rotate_keys(config: Config) -> Result<(), Failure> {
    let store = open_existing(&config).await?;
    let result = rotate_keys_in(&config, store.as_ref()).await;
    store.close().await;
    result
}

async fn rotate_keys_in(config: &Config, store: &dyn Store) -> Result<(), Failure> {
    let now = tokens::now();
    // Make sure a first key exists, so "rotate" on a fresh database retires
    // something meaningful rather than nothing.
    crate::auth::keys::load_or_create(config, store, now).await?;
    let rotation = crate::auth::keys::rotate(config, store, now)
        .await
        .map_err(|e| Failure::new(format_chain(&e)))?;
    for key in &rotation.keys {
        let algorithm = crate::auth::keys::algorithm_name(key.algorithm);
        crate::auth::audit::record(
            store,
            crate::auth::audit::Event::new("key_rotated")
                .detail("kid", key.kid.clone())
                .detail("algorithm", algorithm),
        )
        .await;
        println!(
            "new {algorithm} signing key {} is active; retired keys stay in JWKS for {} s (the access token lifetime)",
            key.kid, config.tokens.access_token_ttl
        );
    }
    if rotation.configured_secret {
        println!(
            "the HS256 access-token secret comes from WARDEN_JWT_SECRET; rotate it by changing that setting on every instance"
        );
    }
    Ok(())
}

async fn list_keys(config: Config) -> Result<(), Failure> {
    let store = open_existing(&config).await?;
    let keys = store.signing_keys().await;
    store.close().await;
    let keys = keys?;
    let now = tokens::now();
    if keys.is_empty() {
        println!("no signing keys yet (the first start of `warden serve` creates one)");
    } else {
        println!("{:<44}  {:<6}  {:<20}  STATUS", "KID", "ALG", "CREATED");
        for k in keys {
            let ttl = config.tokens.access_token_ttl as i64;
            let status = match k.retired_at {
                None => "active".to_owned(),
                Some(at) if at + ttl > now => {
                    format!("retired, in JWKS until {}", profile::rfc3339(at + ttl))
                }
                Some(at) => format!("retired {}", profile::rfc3339(at)),
            };
            println!(
                "{:<44}  {:<6}  {:<20}  {}",
                k.kid,
                k.algorithm,
                profile::rfc3339(k.created_at),
                status
            );
        }
    }
    if config.tokens.jwt_algorithm == jsonwebtoken::Algorithm::HS256
        && config.tokens.jwt_secret.is_some()
    {
        println!(
            "HS256 with WARDEN_JWT_SECRET: the configured secret signs; it is not stored here"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and every flag or argument says what it is in
    /// `--help` (clap leaves the column empty otherwise).
    #[test]
    fn every_command_and_argument_has_a_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "warden", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }

    #[derive(Debug)]
    struct Wrapper(&'static str, Option<Box<Wrapper>>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        // sqlx's shape: the outer message already contains its source's.
        let inner = Wrapper("(code: 14) unable to open database file", None);
        let outer = Wrapper(
            "error returned from database: (code: 14) unable to open database file",
            Some(Box::new(inner)),
        );
        assert_eq!(
            format_chain(&outer),
            "error returned from database: (code: 14) unable to open database file"
        );
        // Distinct causes are all kept, in order.
        let chain = Wrapper(
            "cannot load the signing key",
            Some(Box::new(Wrapper("the database failed", None))),
        );
        assert_eq!(
            format_chain(&chain),
            "cannot load the signing key: the database failed"
        );
        // A message over several lines becomes one.
        let multi = Wrapper("first line\nsecond line\n", None);
        assert_eq!(format_chain(&multi), "first line; second line");
        // anyhow's chain goes the same way.
        let e = anyhow::Error::new(outer).context("opening the database");
        assert_eq!(
            Failure::from(e).message,
            "opening the database: error returned from database: (code: 14) unable to open \
             database file"
        );
    }
}
