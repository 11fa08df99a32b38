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
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
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
    let cli = Cli::new();
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
    let cli = Cli::new();
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
    let cli = Cli::new();
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
    let cli = Cli::new();
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
    let cli = Cli::new();
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
