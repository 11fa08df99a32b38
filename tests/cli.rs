//! The `warden` binary: configuration errors, `migrate`, `users`, `serve`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_warden");

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A directory with a migrated `warden.db`: the commands other than
    /// `serve` and `migrate` need an existing database.
    fn migrated() -> Self {
        let cli = Self::new();
        let o = cli.run(&["migrate"], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        cli
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_ARGON2_MEMORY_KIB", "256")
            .env("WARDEN_ARGON2_ITERATIONS", "1")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        c.output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that fails before it reads (no database) may be gone
        // already: the broken pipe is not the test's failure.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    fn create(&self, username: &str, roles: &[&str]) -> Output {
        let email = format!("{username}@example.com");
        let mut args = vec![
            "users",
            "create",
            "--username",
            username,
            "--email",
            &email,
            "--password-stdin",
        ];
        for r in roles {
            args.extend(["--role", r]);
        }
        self.run_with_stdin(&args, "correct horse battery\n")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A bad value stops start-up with exit code 2 and one line naming the
/// setting — no panic, no backtrace.
fn assert_config_error(o: &Output, setting: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(setting), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn a_wildcard_cors_origin_stops_serve_with_exit_code_2() {
    let cli = Cli::new();
    assert_config_error(
        &cli.run(&["serve"], &[("WARDEN_CORS_ORIGINS", "*")]),
        "WARDEN_CORS_ORIGINS",
    );
}

#[test]
fn unknown_algorithm_stops_serve_with_exit_code_2() {
    let cli = Cli::new();
    assert_config_error(
        &cli.run(&["serve"], &[("WARDEN_JWT_ALGORITHM", "none")]),
        "WARDEN_JWT_ALGORITHM",
    );
}

#[test]
fn malformed_issuer_url_stops_serve() {
    let cli = Cli::new();
    assert_config_error(
        &cli.run(&["serve"], &[("WARDEN_ISSUER", "http//nope")]),
        "WARDEN_ISSUER",
    );
}

#[test]
fn zero_ttl_stops_serve() {
    let cli = Cli::new();
    assert_config_error(
        &cli.run(&["serve"], &[("WARDEN_ACCESS_TOKEN_TTL", "0")]),
        "WARDEN_ACCESS_TOKEN_TTL",
    );
}

#[test]
fn short_hs256_secret_stops_serve() {
    let cli = Cli::new();
    let o = cli.run(
        &["serve"],
        &[
            ("WARDEN_JWT_ALGORITHM", "HS256"),
            ("WARDEN_JWT_SECRET", "too short"),
        ],
    );
    assert_config_error(&o, "WARDEN_JWT_SECRET");
    assert!(
        !stderr(&o).contains("too short"),
        "the secret itself must not be printed"
    );
}

#[test]
fn bad_value_in_the_config_file_names_the_key_and_file() {
    let cli = Cli::new();
    let path = cli.dir.path().join("warden.toml");
    std::fs::write(&path, "jwt_algorithm = \"HS512\"\n").unwrap();
    let o = cli.run(&["--config", path.to_str().unwrap(), "serve"], &[]);
    assert_config_error(&o, "jwt_algorithm in");
}

#[test]
fn unknown_role_in_the_config_file_is_an_error() {
    let cli = Cli::new();
    let path = cli.dir.path().join("warden.toml");
    std::fs::write(&path, "[roles.admin]\nscopes = [\"me\"]\n").unwrap();
    let o = cli.run(&["serve"], &[("WARDEN_CONFIG", path.to_str().unwrap())]);
    assert_config_error(&o, "roles.admin");
}

#[test]
fn a_jwt_secret_without_hs256_stops_serve() {
    let cli = Cli::new();
    let secret = "a secret of at least thirty-two bytes";
    let o = cli.run(&["serve"], &[("WARDEN_JWT_SECRET", secret)]);
    assert_config_error(&o, "WARDEN_JWT_SECRET");
    assert!(stderr(&o).contains("HS256"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains(secret),
        "the secret must not be printed"
    );
}

#[test]
fn a_misspelt_key_in_the_config_file_is_an_error_that_suggests_the_key() {
    let cli = Cli::new();
    let path = cli.dir.path().join("warden.toml");
    std::fs::write(&path, "acces_token_ttl = 60\n").unwrap();
    let o = cli.run(&["migrate"], &[("WARDEN_CONFIG", path.to_str().unwrap())]);
    assert_config_error(&o, "acces_token_ttl in");
    assert!(
        stderr(&o).contains("unknown setting; did you mean access_token_ttl?"),
        "{}",
        stderr(&o)
    );
}

/// An unknown `WARDEN_*` variable is one warning line in the log, naming
/// it and the setting it was probably meant to be; the command still runs.
#[test]
fn a_misspelt_variable_is_a_warning_and_the_command_still_runs() {
    let cli = Cli::new();
    let o = cli.run(
        &["migrate"],
        &[
            ("WARDEN_ACCES_TOKEN_TTL", "60"),
            ("WARDEN_SERVICE_HOST", "10.96.0.12"),
        ],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(cli.dir.path().join("warden.db").exists());
    let typo: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARDEN_ACCES_TOKEN_TTL"))
        .collect();
    assert_eq!(typo.len(), 1, "{err}");
    assert!(typo[0].contains("WARN"), "{err}");
    assert!(
        typo[0].contains(
            "unknown environment variable WARDEN_ACCES_TOKEN_TTL: did you mean WARDEN_ACCESS_TOKEN_TTL?"
        ),
        "{err}"
    );
    let link: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARDEN_SERVICE_HOST"))
        .collect();
    assert_eq!(link.len(), 1, "{err}");
    assert!(link[0].contains("Kubernetes service link"), "{err}");

    // The same warning in the JSON log, from another command.
    let o = cli.run(
        &["users", "list"],
        &[
            ("WARDEN_ACCES_TOKEN_TTL", "60"),
            ("WARDEN_LOG_FORMAT", "json"),
        ],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let warnings: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert_eq!(
        warnings[0]["fields"]["message"],
        "unknown environment variable WARDEN_ACCES_TOKEN_TTL: did you mean WARDEN_ACCESS_TOKEN_TTL?"
    );
}

#[test]
fn migrate_creates_the_database() {
    let cli = Cli::new();
    let o = cli.run(&["migrate"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cli.dir.path().join("warden.db").exists());
}

#[test]
fn users_create_list_and_set_roles() {
    let cli = Cli::migrated();
    let o = cli.create("alice", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("created user alice"));
    let o = cli.create("root", &["admin", "user"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let list = stdout(&cli.run(&["users", "list"], &[]));
    assert!(
        list.contains("alice") && list.contains("alice@example.com"),
        "{list}"
    );
    assert!(list.contains("admin,user"), "{list}");

    let o = cli.run(&["users", "set-roles", "alice", "admin"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&cli.run(&["users", "list"], &[]));
    let alice = list.lines().find(|l| l.contains("alice@")).unwrap();
    assert!(alice.contains("admin"), "{alice}");
}

#[test]
fn users_create_refuses_a_duplicate_username() {
    let cli = Cli::migrated();
    assert!(cli.create("bob", &[]).status.success());
    let o = cli.run_with_stdin(
        &[
            "users",
            "create",
            "--username",
            "BOB",
            "--email",
            "b2@example.com",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already taken"), "{}", stderr(&o));
}

#[test]
fn users_create_refuses_an_unknown_role() {
    let cli = Cli::new();
    let o = cli.create("carol", &["wizard"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown role \"wizard\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn users_create_refuses_a_common_password() {
    let cli = Cli::migrated();
    let o = cli.run_with_stdin(
        &[
            "users",
            "create",
            "--username",
            "dave",
            "--email",
            "dave@example.com",
            "--password-stdin",
        ],
        "password\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("password"), "{}", stderr(&o));
}

#[test]
fn users_create_without_a_terminal_or_stdin_flag_explains_itself() {
    let cli = Cli::migrated();
    let o = cli.run(
        &[
            "users",
            "create",
            "--username",
            "erin",
            "--email",
            "erin@example.com",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--password-stdin"), "{}", stderr(&o));
}

#[test]
fn set_roles_of_an_unknown_user_or_role_fails() {
    let cli = Cli::migrated();
    assert!(cli.create("fred", &[]).status.success());
    assert_eq!(
        cli.run(&["users", "set-roles", "nobody", "user"], &[])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        cli.run(&["users", "set-roles", "fred", "wizard"], &[])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn serve_listens_logs_the_docs_url_and_stops_cleanly_on_sigterm() {
    let cli = Cli::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = cli
        .command(&["serve"])
        .env("WARDEN_BIND", &bind)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until the server answers HTTP.
    let mut up = false;
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(&bind) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                up = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "server did not start");
    assert!(cli.dir.path().join("warden.db").exists());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains(&format!("http://{bind}/docs")), "{log}");
    // The background tasks were stopped and the database closed before the
    // exit: SQLite deletes the WAL files when its last connection closes.
    assert!(log.contains("stopped: background tasks ended"), "{log}");
    assert!(!cli.dir.path().join("warden.db-wal").exists(), "{log}");
    assert!(!cli.dir.path().join("warden.db-shm").exists(), "{log}");
}

// ------------------------------------------------- the database guard

/// The one `error:` line of a failed command: exactly one line on
/// standard error starts with `error:`, and nothing else there is part of
/// the failure (no second line of the same error, no panic).
fn the_error_line(o: &Output) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    // Nothing follows the error line (a wrapped cause, a second copy).
    assert!(err.trim_end().ends_with(errors[0]), "{err}");
    let line = errors[0].to_owned();
    // No cause printed twice ("X: X").
    let parts: Vec<&str> = line.split(": ").collect();
    for pair in parts.windows(2) {
        assert_ne!(pair[0], pair[1], "{line}");
    }
    line
}

/// A command other than `serve` and `migrate` run where there is no
/// database (the wrong directory, a forgotten --config) used to create an
/// empty `warden.db` and answer `no users`, or rotate a brand-new key.
#[test]
fn commands_other_than_serve_and_migrate_refuse_a_missing_sqlite_database() {
    let cli = Cli::new();
    let db = cli.dir.path().canonicalize().unwrap().join("warden.db");
    let commands: &[&[&str]] = &[
        &["users", "list"],
        &["users", "set-roles", "alice", "user"],
        &["users", "delete", "alice"],
        &["users", "disable", "alice"],
        &["users", "enable", "alice"],
        &["users", "set-password", "alice", "--password-stdin"],
        &["keys", "rotate"],
        &["keys", "list"],
        &[
            "clients",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            "https://x.example.com/cb",
        ],
        &["clients", "list"],
        &[
            "clients",
            "rotate-secret",
            "0193a0c4-0000-7000-8000-000000000000",
        ],
        &["clients", "delete", "0193a0c4-0000-7000-8000-000000000000"],
    ];
    for args in commands {
        let o = cli.run(args, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let line = the_error_line(&o);
        assert!(
            line.starts_with(&format!("error: no database at {}", db.display())),
            "{args:?}: {line}"
        );
        assert!(line.contains("warden migrate"), "{line}");
        assert!(line.contains("WARDEN_DATABASE_URL"), "{line}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    // users create fails the same way, before it reads the password.
    let o = cli.create("alice", &[]);
    assert!(
        the_error_line(&o).contains("no database at"),
        "{}",
        stderr(&o)
    );
    assert!(!db.exists());
    assert_eq!(std::fs::read_dir(cli.dir.path()).unwrap().count(), 0);

    // A database named in the environment that does not exist: the same,
    // with where the URL came from.
    let o = cli.run(
        &["users", "list"],
        &[("WARDEN_DATABASE_URL", "sqlite://elsewhere/auth.db")],
    );
    let line = the_error_line(&o);
    assert!(line.contains("elsewhere/auth.db"), "{line}");
    assert!(line.contains("from WARDEN_DATABASE_URL"), "{line}");

    // After `warden migrate` the same command works.
    assert!(cli.run(&["migrate"], &[]).status.success());
    let o = cli.run(&["users", "list"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "no users");
}

#[test]
fn an_empty_sqlite_path_is_a_configuration_error_not_a_missing_table() {
    let cli = Cli::new();
    for args in [&["users", "list"][..], &["migrate"], &["serve"]] {
        let o = cli.run(args, &[("WARDEN_DATABASE_URL", "sqlite://")]);
        assert_config_error(&o, "WARDEN_DATABASE_URL");
        let err = stderr(&o);
        assert!(err.contains("no file path"), "{err}");
        assert!(!err.contains("no such table"), "{err}");
    }
}

/// Every command says on standard error which database it used, as an
/// absolute path (so the wrong directory shows), and `serve` in its log.
#[test]
fn every_command_names_its_database_on_stderr() {
    let cli = Cli::new();
    let expected = format!(
        "database: sqlite://{}",
        cli.dir
            .path()
            .canonicalize()
            .unwrap()
            .join("warden.db")
            .display()
    );
    let o = cli.run(&["migrate"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("migrations applied to sqlite:///"));
    let commands: &[&[&str]] = &[&["migrate"], &["users", "list"], &["keys", "list"]];
    for args in commands {
        let o = cli.run(args, &[]);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let lines: Vec<String> = stderr(&o)
            .lines()
            .filter(|l| l.starts_with("database: "))
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert_eq!(lines[0], expected, "{args:?}");
    }
    let o = cli.create("alice", &[]);
    assert!(stderr(&o).lines().any(|l| l == expected), "{}", stderr(&o));
}

/// PostgreSQL down: at once (not after the 5 s pool timeout), one line
/// naming host:port, never the password.
#[test]
fn postgres_down_fails_fast_naming_host_and_port_but_not_the_password() {
    let cli = Cli::new();
    let port = free_port();
    let url = format!("postgres://warden:hunter2@127.0.0.1:{port}/auth");
    for args in [&["users", "list"][..], &["migrate"], &["serve"]] {
        let mut extra = vec![("WARDEN_DATABASE_URL", url.as_str())];
        let bind = format!("127.0.0.1:{}", free_port());
        extra.push(("WARDEN_BIND", &bind));
        let started = std::time::Instant::now();
        let o = cli.run(args, &extra);
        let took = started.elapsed();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let line = the_error_line(&o);
        assert!(
            line.contains(&format!("connection refused at 127.0.0.1:{port}")),
            "{line}"
        );
        assert!(line.contains("WARDEN_DATABASE_URL"), "{line}");
        assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
        assert!(!line.contains("pool timed out"), "{line}");
        assert!(
            took < std::time::Duration::from_secs(3),
            "{args:?} took {took:?}"
        );
    }
}

#[test]
fn a_missing_or_unusable_sqlite_directory_is_named() {
    let cli = Cli::new();
    let base = cli.dir.path().canonicalize().unwrap();
    let url = format!("sqlite://{}/missing/warden.db", base.display());
    let o = cli.run(&["migrate"], &[("WARDEN_DATABASE_URL", &url)]);
    let line = the_error_line(&o);
    assert!(
        line.contains(&format!("{}/missing/warden.db", base.display())),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "the directory {}/missing does not exist",
            base.display()
        )),
        "{line}"
    );
    assert!(!line.contains("code: 14"), "{line}");

    // A path through a file.
    std::fs::write(base.join("plain"), "").unwrap();
    let url = format!("sqlite://{}/plain/warden.db", base.display());
    let line = the_error_line(&cli.run(&["serve"], &[("WARDEN_DATABASE_URL", &url)]));
    assert!(
        line.contains(&format!(
            "{}/plain is a file, not a directory",
            base.display()
        )),
        "{line}"
    );

    // A directory this user cannot write (not testable as root, who can).
    use std::os::unix::fs::PermissionsExt;
    let locked = base.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(locked.join("probe"), "").is_ok() {
        eprintln!("running as a user who can write anywhere; skipping the unwritable case");
    } else {
        let url = format!("sqlite://{}/warden.db", locked.display());
        let line = the_error_line(&cli.run(&["migrate"], &[("WARDEN_DATABASE_URL", &url)]));
        assert!(
            line.contains(&format!(
                "the directory {} is not writable",
                locked.display()
            )),
            "{line}"
        );
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_port_in_use_names_the_address_and_warden_bind() {
    let cli = Cli::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let o = cli.run(&["serve"], &[("WARDEN_BIND", &addr.to_string())]);
    assert_eq!(o.status.code(), Some(1));
    let line = the_error_line(&o);
    assert!(
        line.starts_with(&format!("error: cannot listen on {addr}: ")),
        "{line}"
    );
    assert!(line.contains("in use"), "{line}");
    assert!(line.contains("WARDEN_BIND"), "{line}");
}

#[test]
fn an_unknown_role_says_where_custom_roles_come_from() {
    let cli = Cli::new();
    let line = the_error_line(&cli.create("tess", &["teacher"]));
    assert!(line.contains("unknown role \"teacher\""), "{line}");
    assert!(line.contains("[roles.NAME]"), "{line}");
    assert!(line.contains("--config"), "{line}");
    assert!(line.contains("WARDEN_CONFIG"), "{line}");
    assert!(line.contains("admin and user are built in"), "{line}");
    // The same for set-roles, before any database is needed.
    let line = the_error_line(&cli.run(&["users", "set-roles", "tess", "teacher"], &[]));
    assert!(line.contains("unknown role \"teacher\""), "{line}");
    assert!(line.contains("--config"), "{line}");

    // With a file that does not define it, the file is named.
    let path = cli.dir.path().join("warden.toml");
    std::fs::write(&path, "[roles.student]\nscopes = [\"me\"]\n").unwrap();
    let o = cli.run_with_stdin(
        &[
            "--config",
            path.to_str().unwrap(),
            "users",
            "create",
            "--username",
            "tess",
            "--email",
            "tess@example.com",
            "--role",
            "teacher",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    let line = the_error_line(&o);
    assert!(line.contains("known roles: admin, student, user"), "{line}");
    assert!(
        line.contains(&format!("[roles.NAME] tables of {}", path.display())),
        "{line}"
    );
}

#[test]
fn serve_help_points_to_the_configuration_reference() {
    let cli = Cli::new();
    let o = cli.run(&["serve", "--help"], &[]);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(help.contains("docs/reference/configuration.md"), "{help}");
    for name in ["WARDEN_BIND", "WARDEN_DATABASE_URL", "WARDEN_CONFIG"] {
        assert!(help.contains(name), "{name}: {help}");
    }
    let o = cli.run(&["users", "set-password", "--help"], &[]);
    assert!(stdout(&o).contains("--password-stdin"), "{}", stdout(&o));
}

// ------------------------------------------------- against a server

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request (`connection: close`); the status and the body.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A `warden serve` child on a free port, killed on drop.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(cli: &Cli, env: &[(&str, &str)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = cli
            .command(&["serve"])
            .env("WARDEN_BIND", &addr)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok()
                && http(
                    &addr,
                    "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                )
                .0 == 200
            {
                return Self { child, addr };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not start");
    }

    /// `POST /token`: the status and the access token, if any.
    fn login(&self, username: &str, password: &str) -> (u16, Option<String>) {
        let form = format!("grant_type=password&username={username}&password={}", {
            password.replace(' ', "+")
        });
        let (status, body) = http(
            &self.addr,
            &format!(
                "POST /token HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                 content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{form}",
                form.len()
            ),
        );
        let token = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned));
        (status, token)
    }

    /// `GET /users/me` with `token`: the status.
    fn me(&self, token: &str) -> u16 {
        http(
            &self.addr,
            &format!(
                "GET /users/me HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                 authorization: Bearer {token}\r\n\r\n"
            ),
        )
        .0
    }

    /// Waits (bounded) until `GET /users/me` with `token` answers `status`:
    /// a running server sees the CLI's change within its sync interval.
    fn me_becomes(&self, token: &str, status: u16) -> bool {
        for _ in 0..100 {
            if self.me(token) == status {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut log);
        }
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PASSWORD: &str = "correct horse battery";

/// `users disable`, `enable`, `set-password` and `delete` against a
/// running server: the same services as the HTTP routes, so the user's
/// tokens fail at once (the server picks the change up from the database)
/// and the sign-in follows.
#[test]
fn users_disable_enable_set_password_and_delete_reach_a_running_server() {
    let cli = Cli::migrated();
    assert!(cli.create("alice", &[]).status.success());
    assert!(cli.create("root", &["admin"]).status.success());
    let server = Server::start(&cli, &[]);
    let (status, token) = server.login("alice", PASSWORD);
    assert_eq!(status, 200);
    let token = token.unwrap();
    assert_eq!(server.me(&token), 200);

    // disable: the token dies, the password no longer signs in.
    let o = cli.run(&["users", "disable", "alice"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "alice: disabled; their sessions ended and their tokens stop working"
    );
    assert!(stderr(&o).contains(r#"\"by\":\"cli\""#), "{}", stderr(&o));
    assert!(
        server.me_becomes(&token, 401),
        "a disabled user's token still works"
    );
    assert_ne!(server.login("alice", PASSWORD).0, 200);
    let list = stdout(&cli.run(&["users", "list"], &[]));
    let row = list.lines().find(|l| l.contains("alice@")).unwrap();
    assert!(row.contains(" yes "), "{row}");

    // enable (by email): signing in works again; the old token stays dead.
    let o = cli.run(&["users", "enable", "alice@example.com"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "alice: enabled; they can sign in again");
    let (status, token) = server.login("alice", PASSWORD);
    assert_eq!(status, 200);
    let token = token.unwrap();
    assert_eq!(server.me(&token), 200);

    // set-password: the new one signs in, the old one not, the token dies.
    let o = cli.run_with_stdin(
        &["users", "set-password", "alice", "--password-stdin"],
        "a brand new passphrase\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "alice: password changed; their sessions ended"
    );
    assert!(server.me_becomes(&token, 401));
    assert_ne!(server.login("alice", PASSWORD).0, 200);
    let (status, token) = server.login("alice", "a brand new passphrase");
    assert_eq!(status, 200);
    let token = token.unwrap();
    // The rules of a new password apply.
    let o = cli.run_with_stdin(
        &["users", "set-password", "alice", "--password-stdin"],
        "password\n",
    );
    assert!(the_error_line(&o).starts_with("error: password: "));

    // delete (by id): the token dies, the user is gone.
    let list = stdout(&cli.run(&["users", "list"], &[]));
    let id = list
        .lines()
        .find(|l| l.contains("alice@"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let o = cli.run(&["users", "delete", &id], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("deleted user alice ({id}); their sessions ended and their tokens stop working")
    );
    assert!(server.me_becomes(&token, 401));
    assert_ne!(server.login("alice", "a brand new passphrase").0, 200);
    assert!(!stdout(&cli.run(&["users", "list"], &[])).contains("alice@"));

    // An unknown user, and the last admin, are refused in one line.
    let line = the_error_line(&cli.run(&["users", "delete", "alice"], &[]));
    assert!(line.contains("no user \"alice\""), "{line}");
    let line = the_error_line(&cli.run(&["users", "disable", "root"], &[]));
    assert!(line.contains("last admin"), "{line}");
    let line = the_error_line(&cli.run(&["users", "delete", "root"], &[]));
    assert!(line.contains("last admin"), "{line}");
    server.stop();
}

/// Setting values that are names match in any case (`eddsa`, `JSON`),
/// and `bind` takes a host name.
#[test]
fn serve_takes_names_in_any_case_and_a_host_name_to_bind() {
    let cli = Cli::new();
    let port = free_port();
    let bind = format!("localhost:{port}");
    let mut child = cli
        .command(&["serve"])
        .env("WARDEN_BIND", &bind)
        .env("WARDEN_JWT_ALGORITHM", "eddsa")
        .env("WARDEN_REGISTRATION", "Closed")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let get = |path: &str| {
        if up {
            http(
                &addr,
                &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
            )
        } else {
            (0, String::new())
        }
    };
    let (status, body) = get("/.well-known/oauth-authorization-server");
    let (_, jwks) = get("/.well-known/jwks.json");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(up, "{log}");
    assert_eq!(status, 200, "{body}");
    // The host name stays in the default issuer; the canonical spelling
    // of the algorithm is used.
    assert!(
        body.contains(&format!("\"issuer\":\"http://localhost:{port}\"")),
        "{body}"
    );
    assert!(jwks.contains("\"alg\":\"EdDSA\""), "{jwks}");
    assert!(log.contains("algorithm=\"EdDSA\""), "{log}");
    let database = format!(
        "database=sqlite://{}",
        cli.dir
            .path()
            .canonicalize()
            .unwrap()
            .join("warden.db")
            .display()
    );
    assert!(log.contains(&database), "{log}");
}

// ------------------------------------------------- PostgreSQL

/// The PostgreSQL server of the test suite (`WARDEN_TEST_POSTGRES_URL`,
/// trust auth), or `None` when it does not answer — then the test is
/// skipped, unless `WARDEN_TEST_REQUIRE_POSTGRES` is set (CI).
fn postgres() -> Option<url::Url> {
    let url = std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned());
    let url = url::Url::parse(&url).expect("WARDEN_TEST_POSTGRES_URL is a URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5432);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        });
    if reachable {
        return Some(url);
    }
    if std::env::var_os("WARDEN_TEST_REQUIRE_POSTGRES").is_some() {
        panic!(
            "PostgreSQL is required (WARDEN_TEST_REQUIRE_POSTGRES) but {host}:{port} does not answer"
        );
    }
    eprintln!("skipping: PostgreSQL at {host}:{port} does not answer");
    None
}

/// Runs `sql` on the test server's admin database.
fn postgres_admin(admin: &url::Url, sql: String) {
    let admin = admin.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let pool = sqlx::PgPool::connect(&admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        });
}

#[test]
fn postgres_errors_name_the_user_the_host_and_the_database() {
    let Some(admin) = postgres() else { return };
    let cli = Cli::new();
    let at = format!(
        "{}:{}",
        admin.host_str().unwrap_or("127.0.0.1"),
        admin.port().unwrap_or(5432)
    );

    // A user that does not exist: once, without PostgreSQL's source line.
    let mut url = admin.clone();
    url.set_username("warden_no_such_role").unwrap();
    let line =
        the_error_line(&cli.run(&["users", "list"], &[("WARDEN_DATABASE_URL", url.as_str())]));
    assert!(
        line.contains(&format!(
            "PostgreSQL at {at} refused user \"warden_no_such_role\""
        )),
        "{line}"
    );
    assert_eq!(line.matches("does not exist").count(), 1, "{line}");
    assert!(!line.contains(" at line "), "{line}");

    // A database that does not exist.
    let mut url = admin.clone();
    url.set_path("/warden_no_such_database");
    let line = the_error_line(&cli.run(&["serve"], &[("WARDEN_DATABASE_URL", url.as_str())]));
    assert!(
        line.contains(&format!(
            "database \"warden_no_such_database\" does not exist on PostgreSQL at {at}"
        )),
        "{line}"
    );

    // A database that exists but was never migrated: refused by every
    // command but `migrate` and `serve`, and nothing is created in it.
    let name = format!("warden_cli_{}", std::process::id());
    postgres_admin(&admin, format!("drop database if exists {name}"));
    postgres_admin(&admin, format!("create database {name}"));
    let mut url = admin.clone();
    url.set_path(&format!("/{name}"));
    let env = [("WARDEN_DATABASE_URL", url.as_str())];
    let shown = format!("postgres://{}@{at}/{name}", admin.username());
    let result = std::panic::catch_unwind(|| {
        let line = the_error_line(&cli.run(&["keys", "rotate"], &env));
        assert!(
            line.contains(&format!("the database {shown} has no warden tables")),
            "{line}"
        );
        assert!(line.contains("warden migrate"), "{line}");
        // Still empty: the refused command migrated nothing.
        let line = the_error_line(&cli.run(&["users", "list"], &env));
        assert!(line.contains("never migrated"), "{line}");
        let o = cli.run(&["migrate"], &env);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = cli.run(&["users", "list"], &env);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "no users");
        let err = stderr(&o);
        assert!(
            err.lines().any(|l| l == format!("database: {shown}")),
            "{err}"
        );
        // PostgreSQL's notice about the existing migrations table is not
        // printed in front of every command.
        assert!(!err.contains("already exists, skipping"), "{err}");
    });
    postgres_admin(
        &admin,
        format!("drop database if exists {name} with (force)"),
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The `secret_hash` column of client `id` in the CLI's SQLite database.
fn stored_secret_hash(cli: &Cli, id: &str) -> Option<Vec<u8>> {
    let url = format!("sqlite://{}", cli.dir.path().join("warden.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("select secret_hash from clients where id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        hash
    })
}

#[test]
fn clients_create_list_rotate_secret_and_delete() {
    let cli = Cli::migrated();
    let o = cli.run(
        &[
            "clients",
            "create",
            "--name",
            "Gradebook",
            "--redirect-uri",
            "https://grades.example.com/cb",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--scope",
            "openid",
            "--scope",
            "me",
            "--post-logout-redirect-uri",
            "https://grades.example.com/bye",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let client: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wdn_cs_"), "{secret}");
    assert_eq!(client["public"], false);
    assert_eq!(client["scopes"], serde_json::json!(["openid", "me"]));
    assert_eq!(
        client["post_logout_redirect_uris"],
        serde_json::json!(["https://grades.example.com/bye"])
    );
    assert!(
        stderr(&o).contains("shown only this once"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(&secret), "the secret is on stderr");
    // Stored as its SHA-256.
    assert_eq!(
        stored_secret_hash(&cli, &id).unwrap(),
        warden::auth::clients::hash_secret(&secret).to_vec()
    );

    // A public client: no secret, and nothing to rotate.
    let o = cli.run(
        &[
            "clients",
            "create",
            "--name",
            "Planner",
            "--public",
            "--first-party",
            "--redirect-uri",
            "com.example.planner:/cb",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let public: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(public.get("client_secret").is_none(), "{public}");
    assert_eq!(public["first_party"], true);
    assert!(!stderr(&o).contains("shown only"), "{}", stderr(&o));
    let public_id = public["client_id"].as_str().unwrap().to_owned();
    let o = cli.run(&["clients", "rotate-secret", &public_id], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        the_error_line(&o).contains("public client"),
        "{}",
        stderr(&o)
    );

    let list = stdout(&cli.run(&["clients", "list"], &[]));
    assert!(list.starts_with("CLIENT_ID"), "{list}");
    let line = list.lines().find(|l| l.contains(&id)).unwrap();
    assert!(
        line.contains("Gradebook") && line.contains("confidential"),
        "{line}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains(&public_id) && l.contains("public"))
    );
    assert!(!list.contains(&secret), "{list}");

    let o = cli.run(&["clients", "rotate-secret", &id], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rotated: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let new = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new, secret);
    assert_eq!(
        stored_secret_hash(&cli, &id).unwrap(),
        warden::auth::clients::hash_secret(new).to_vec()
    );

    let o = cli.run(&["clients", "delete", &id], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("deleted client Gradebook"),
        "{}",
        stdout(&o)
    );
    let list = stdout(&cli.run(&["clients", "list"], &[]));
    assert!(!list.contains(&id), "{list}");
    // Gone: one error line that says what to do.
    for args in [
        &["clients", "delete", &id][..],
        &["clients", "rotate-secret", &id],
        &["clients", "delete", "not-an-id"],
    ] {
        let o = cli.run(args, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let line = the_error_line(&o);
        assert!(
            line.contains("no client") && line.contains("warden clients list"),
            "{line}"
        );
    }
    let o = cli.run(&["clients", "delete", &public_id], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&cli.run(&["clients", "list"], &[])).trim(),
        "no clients"
    );
}

#[test]
fn clients_create_names_the_flag_and_the_value_that_break_a_rule() {
    let cli = Cli::migrated();
    for (args, expected) in [
        (
            &[
                "--redirect-uri",
                "https://a.example.com/cb",
                "--redirect-uri",
                "http://a.example.com/cb",
            ][..],
            "--redirect-uri \"http://a.example.com/cb\": redirect URI must use https",
        ),
        (
            &["--redirect-uri", "com.example.app:/cb"],
            "--redirect-uri \"com.example.app:/cb\": custom-scheme redirect URIs are allowed only for public clients",
        ),
        (
            &[
                "--redirect-uri",
                "https://x.example.com/cb",
                "--public",
                "--grant",
                "client_credentials",
            ],
            "--grant: client_credentials needs a confidential client",
        ),
        (
            &[
                "--redirect-uri",
                "https://x.example.com/cb",
                "--grant",
                "client_credentials",
                "--scope",
                "nope",
            ],
            "--scope \"nope\": no role grants the scope",
        ),
    ] {
        let mut all = vec!["clients", "create", "--name", "X"];
        all.extend_from_slice(args);
        let o = cli.run(&all, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let line = the_error_line(&o);
        assert!(line.starts_with(&format!("error: {expected}")), "{line}");
    }
    // The contract's CLI takes at least one --redirect-uri: a usage error.
    let o = cli.run(&["clients", "create", "--name", "X"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--redirect-uri"), "{}", stderr(&o));
    assert_eq!(
        stdout(&cli.run(&["clients", "list"], &[])).trim(),
        "no clients"
    );
}
