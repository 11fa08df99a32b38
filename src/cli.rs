//! The `warden` command line.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::auth::accounts::{self, Actor, NewUser};
use crate::auth::{self, Services, tokens};
use crate::config::{Config, LogFormat};
use crate::domain::UniqueField;
use crate::domain::profile::{self, Email, Username};
use crate::storage::{self, StoreError};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "JWT authentication and authorization server"
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
    /// Run the server.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
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
    /// Replace a user's roles; their earlier tokens stop working.
    SetRoles {
        /// Username or email.
        user: String,
        /// The new roles (at least one).
        #[arg(required = true)]
        roles: Vec<String>,
    },
}

#[derive(Args)]
struct CreateUser {
    #[arg(long)]
    username: String,
    #[arg(long)]
    email: String,
    /// A role to grant (repeatable); `user` when none is given.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
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
        Self::new(format!("{e:#}"))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::new(e.to_string())
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
        Self::new(e.to_string())
    }
}

/// `error: cause: cause…`, so a failing part is named.
fn format_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log.filter);
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
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), Failure> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let store = storage::connect_with(&config.database.url, &config.database.pool).await?;
            store.migrate().await?;
            println!("migrations applied to {}", config.database.url_redacted());
            Ok(())
        }
        Command::Users(UsersCommand::Create(args)) => create_user(config, args).await,
        Command::Users(UsersCommand::List) => list_users(config).await,
        Command::Keys(KeysCommand::Rotate) => rotate_keys(config).await,
        Command::Keys(KeysCommand::List) => list_keys(config).await,
        Command::Users(UsersCommand::SetRoles { user, roles }) => {
            set_roles(config, user, roles).await
        }
    }
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
        .map_err(|e| Failure::new(format!("cannot listen on {bind}: {e}")))?;
    let issuer = config.tokens.issuer.clone();
    let database = config.database.url_redacted();
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

async fn create_user(config: Config, args: CreateUser) -> Result<(), Failure> {
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
        .map_err(|m| Failure::new(format!("--role: {m}")))?;
    let password = read_password(args.password_stdin)?;
    profile::check_new_password(&password, username.as_str(), email.as_str())
        .map_err(|m| Failure::new(format!("password: {m}")))?;

    let services = Services::open(config, 1, 1).await?;
    let new = NewUser {
        username,
        email,
        password: &password,
        full_name,
    };
    let user = match accounts::create(&services, new, args.roles, None, Actor::Cli).await {
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
    let store = storage::connect_with(&config.database.url, &config.database.pool).await?;
    store.migrate().await?;
    let users = store.list_users().await?;
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

async fn set_roles(config: Config, user: String, roles: Vec<String>) -> Result<(), Failure> {
    let services = Services::open(config, 1, 1).await?;
    // The same service as `PATCH /users/{id}`: every session ends, the
    // change is audited (`by: cli`); a running server picks it up from the
    // database within its sync interval.
    let record = match accounts::set_roles(&services, &user, roles, Actor::Cli).await {
        Ok(record) => record,
        Err(auth::Error::NotFound) => return Err(Failure::new(format!("no user {user:?}"))),
        Err(e) => return Err(e.into()),
    };
    println!(
        "{}: roles set to {}",
        record.username,
        record.roles.join(", ")
    );
    Ok(())
}

async fn rotate_keys(config: Config) -> Result<(), Failure> {
    let store = storage::connect_with(&config.database.url, &config.database.pool).await?;
    store.migrate().await?;
    let now = tokens::now();
    // Make sure a first key exists, so "rotate" on a fresh database retires
    // something meaningful rather than nothing.
    crate::auth::keys::load_or_create(&config, store.as_ref(), now).await?;
    let key = crate::auth::keys::rotate(&config, store.as_ref(), now)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    crate::auth::audit::record(
        store.as_ref(),
        crate::auth::audit::Event::new("key_rotated")
            .detail("kid", key.kid.clone())
            .detail(
                "algorithm",
                crate::auth::keys::algorithm_name(key.algorithm),
            ),
    )
    .await;
    println!(
        "new {} signing key {} is active; retired keys stay in JWKS for {} s (the access token lifetime)",
        crate::auth::keys::algorithm_name(key.algorithm),
        key.kid,
        config.tokens.access_token_ttl
    );
    Ok(())
}

async fn list_keys(config: Config) -> Result<(), Failure> {
    let store = storage::connect_with(&config.database.url, &config.database.pool).await?;
    store.migrate().await?;
    let now = tokens::now();
    let keys = store.signing_keys().await?;
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
