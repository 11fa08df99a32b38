//! What really differs between SQLite and PostgreSQL, and nothing else.
//!
//! Every query of [`super::sql`] is written once; it takes from here the
//! statement that starts a write transaction, the row-lock suffixes, the
//! PostgreSQL advisory locks, the database clock, the change marker, the
//! connect options and the migrations folder.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use tokio::task::JoinHandle;

use super::{StoreError, StoreResult};
use crate::config::DatabaseOptions;

/// The SQL a backend needs where the two differ.
pub(super) struct Dialect {
    /// Starts a transaction that will write.
    pub begin_write: &'static str,
    /// Appended to a select of rows the transaction goes on to update.
    pub lock_for_update: &'static str,
    /// Appended to a select of rows that must not change before the
    /// transaction commits.
    pub lock_for_share: &'static str,
    /// Taken (after the row lock) by every transaction that changes an
    /// enabled admin, so two admins removed at the same time cannot each
    /// count the other as the one who remains; `None` where writers run one
    /// at a time anyway.
    pub admins_lock: Option<&'static str>,
    /// Taken before inserting the first signing key of an algorithm, so
    /// instances started together on an empty database create one key
    /// between them; `None` where writers run one at a time anyway.
    pub first_key_lock: Option<&'static str>,
    /// The database's clock, in unix seconds (`bigint`).
    pub clock: &'static str,
    pub migrations: &'static Migrator,
    /// Counts the tables named `_sqlx_migrations` that this connection
    /// sees (1 once migrated, 0 in an empty database).
    pub migrations_table: &'static str,
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub(super) static SQLITE: Dialect = Dialect {
    // Takes SQLite's write lock at once: a transaction that read first and
    // wrote later could fail with `SQLITE_BUSY` (which the busy timeout does
    // not retry) when another connection wrote in between. It also makes
    // every write transaction run alone, which is what the lock-free
    // fields below rely on.
    begin_write: "begin immediate",
    lock_for_update: "",
    lock_for_share: "",
    admins_lock: None,
    first_key_lock: None,
    clock: "select cast(strftime('%s', 'now') as integer)",
    migrations: &SQLITE_MIGRATIONS,
    migrations_table: "select count(*) from sqlite_master \
                       where type = 'table' and name = '_sqlx_migrations'",
};

pub(super) static POSTGRES: Dialect = Dialect {
    begin_write: "begin",
    lock_for_update: " for update",
    lock_for_share: " for share",
    admins_lock: Some("select pg_advisory_xact_lock(hashtext('warden:admins'))"),
    // Concurrent transactions would each see no key under READ COMMITTED;
    // a transaction-scoped advisory lock serialises them.
    first_key_lock: Some("select pg_advisory_xact_lock(hashtext('warden signing_keys'))"),
    clock: "select extract(epoch from clock_timestamp())::bigint",
    migrations: &POSTGRES_MIGRATIONS,
    // `to_regclass` looks the name up on the search path, where sqlx's
    // migrator creates it.
    migrations_table: "select count(*) from (select to_regclass('_sqlx_migrations') as t) as m \
                       where m.t is not null",
};

/// A value that changes whenever another connection or process has
/// committed a write that servers cache (users, ended sessions, keys).
pub(super) enum ChangeMarker {
    /// SQLite: triggers (migration 0006) bump `change_counter` on those
    /// writes — not on logins, unlike `pragma data_version`. It is read on a
    /// connection of its own, ten times a second, so the poll never waits
    /// behind the pool's writers.
    Counter(Box<CounterWatch>),
    /// PostgreSQL: triggers `NOTIFY warden_changes`; a listener task bumps
    /// this on every notification, and on every (re)connection of the
    /// listener, since notifications sent while it was away are lost.
    Listener(Box<ListenerWatch>),
}

/// The connection that reads SQLite's change counter, opened on first use
/// and again after an error — until the store is closed.
pub(super) struct CounterWatch {
    connection: tokio::sync::Mutex<Option<SqliteConnection>>,
    options: SqliteConnectOptions,
    closed: AtomicBool,
}

/// The PostgreSQL change count and the task that keeps it. The task holds
/// a clone of the pool (and, while listening, one of its connections), so
/// it is stopped explicitly: by [`ChangeMarker::close`], or on drop.
pub(super) struct ListenerWatch {
    changes: Arc<AtomicI64>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl ListenerWatch {
    fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Drop for ListenerWatch {
    /// A store dropped without `close` must not leave the listener (and the
    /// pool it holds) running for the rest of the process.
    fn drop(&mut self) {
        if let Some(task) = self.take_task() {
            task.abort();
        }
    }
}

impl ChangeMarker {
    pub(super) async fn read(&self) -> StoreResult<i64> {
        match self {
            Self::Counter(watch) => {
                use sqlx::ConnectOptions;
                let mut guard = watch.connection.lock().await;
                if watch.closed.load(Ordering::Acquire) {
                    return Err(sqlx::Error::PoolClosed.into());
                }
                if guard.is_none() {
                    *guard = Some(watch.options.connect().await?);
                }
                let Some(conn) = guard.as_mut() else {
                    return Err(StoreError::Corrupt("watcher connection missing".to_owned()));
                };
                match sqlx::query_scalar::<_, i64>("select seq from change_counter where id = 1")
                    .fetch_one(&mut *conn)
                    .await
                {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        // Reconnect on the next call.
                        *guard = None;
                        Err(e.into())
                    }
                }
            }
            Self::Listener(watch) => Ok(watch.changes.load(Ordering::Acquire)),
        }
    }

    /// Stops watching: closes SQLite's counter connection (it is not
    /// reopened afterwards), or stops the PostgreSQL listener task, which
    /// gives its connection back to the pool. Run before the pool is
    /// closed, since closing waits for every connection to come back.
    pub(super) async fn close(&self) {
        match self {
            Self::Counter(watch) => {
                let mut guard = watch.connection.lock().await;
                watch.closed.store(true, Ordering::Release);
                if let Some(conn) = guard.take() {
                    use sqlx::Connection;
                    if let Err(e) = conn.close().await {
                        tracing::debug!(error = %e, "change counter: closing its connection failed");
                    }
                }
            }
            Self::Listener(watch) => {
                if let Some(task) = watch.take_task() {
                    task.abort();
                    // Cancelled (or already ended): either way it is gone,
                    // and its `PgListener` was dropped with it.
                    let _ = task.await;
                }
            }
        }
    }
}

/// Opens the SQLite file at `url` in WAL mode, creating it if missing.
pub(super) async fn connect_sqlite(url: &str) -> StoreResult<(SqlitePool, ChangeMarker)> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        // Writers wait for each other instead of failing with SQLITE_BUSY.
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .map_err(|e| explain_sqlite(options.get_filename(), &e))?;
    let marker = ChangeMarker::Counter(Box::new(CounterWatch {
        connection: tokio::sync::Mutex::new(None),
        options,
        closed: AtomicBool::new(false),
    }));
    Ok((pool, marker))
}

/// One line for a SQLite file that cannot be opened: the path, the cause
/// found on the file system (SQLite's own message, `(code: 14) unable to
/// open database file`, names neither) and what to do.
fn explain_sqlite(path: &Path, error: &sqlx::Error) -> StoreError {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let fix = "or point database_url (WARDEN_DATABASE_URL) at another file";
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let cause = if !dir.exists() {
        format!(
            "the directory {} does not exist; create it ({}), {fix}",
            dir.display(),
            shell_hint_mkdir(&dir)
        )
    } else if !dir.is_dir() {
        format!(
            "{} is a file, not a directory; point database_url (WARDEN_DATABASE_URL) at a \
             file in a directory",
            dir.display()
        )
    } else if path.is_dir() {
        format!(
            "{} is a directory, not a database file; {fix}",
            path.display()
        )
    } else if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map(drop)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                probe_writable(&dir)
            } else {
                Err(e)
            }
        })
    {
        let what = if path.exists() {
            format!("the file {}", path.display())
        } else {
            format!("the directory {}", dir.display())
        };
        format!(
            "{what} is not writable by this user ({}); fix its owner or permissions, {fix}",
            io_reason(&e)
        )
    } else if probe_writable(&dir).is_err() {
        // The file opens, but WAL mode also creates `-wal` and `-shm`
        // files beside it.
        format!(
            "the directory {} is not writable by this user (SQLite's WAL mode keeps \
             {name}-wal and {name}-shm beside the file); fix its permissions, {fix}",
            dir.display(),
            name = path.file_name().map_or("".into(), |n| n.to_string_lossy())
        )
    } else {
        let reason = match error {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        };
        format!("{reason}; check that it is warden's database, {fix}")
    };
    StoreError::Open(format!(
        "cannot open the SQLite database {}: {cause}",
        path.display()
    ))
}

fn shell_hint_mkdir(dir: &Path) -> String {
    format!("mkdir -p {}", dir.display())
}

/// Whether a file can be created in `dir`: creates and removes one.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".warden-write-test-{}", std::process::id()));
    std::fs::File::create_new(&probe)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// An I/O error's reason without the "(os error 13)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// One line for a PostgreSQL server that cannot be used: the user and
/// host:port (never the password), the cause, and what to do. sqlx's own
/// errors say `pool timed out while waiting for an open connection` (after
/// the whole acquire timeout, for a server that refused at once) or
/// `role "nobody" does not exist at line 768` (a line of PostgreSQL's
/// source).
fn explain_postgres(options: &PgConnectOptions, error: &sqlx::Error) -> StoreError {
    let at = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    let check = "check database_url (WARDEN_DATABASE_URL)";
    let message = match error {
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {at}; is PostgreSQL running there? {check}")
        }
        sqlx::Error::Io(e) => format!(
            "cannot connect to PostgreSQL at {at}: {}; is the host right and PostgreSQL \
             running? {check}",
            io_reason(e)
        ),
        sqlx::Error::Tls(e) => format!("TLS with PostgreSQL at {at} failed: {e}; {check}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_authorization_specification: no such role (or
            // pg_hba.conf refused it).
            Some("28000") => format!(
                "PostgreSQL at {at} refused user {user:?}: {}; create the role (createuser \
                 {user}) or put an existing user in the URL; {check}",
                db.message()
            ),
            Some("28P01") => {
                format!("PostgreSQL at {at} refused the password of user {user:?}; {check}")
            }
            Some("3D000") => format!(
                "database {database:?} does not exist on PostgreSQL at {at}; create it \
                 (createdb {database}) or name another one in the URL; {check}"
            ),
            _ => format!(
                "PostgreSQL at {at} (user {user:?}): {}; {check}",
                db.message()
            ),
        },
        other => format!("cannot connect to PostgreSQL at {at} (user {user:?}): {other}; {check}"),
    };
    StoreError::Open(message)
}

/// The notification channel the migrations' triggers use.
const CHANNEL: &str = "warden_changes";

/// Connects to PostgreSQL with `opts` and starts the change listener.
pub(super) async fn connect_postgres(
    url: &str,
    opts: &DatabaseOptions,
) -> StoreResult<(PgPool, ChangeMarker)> {
    let options = PgConnectOptions::from_str(url)?;
    // One connection first, to fail at once with the server's reason: the
    // pool would retry a refused connection until its acquire timeout and
    // then report only that it timed out.
    {
        use sqlx::{ConnectOptions, Connection};
        match tokio::time::timeout(opts.acquire_timeout, options.connect()).await {
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
            Ok(Err(e)) => return Err(explain_postgres(&options, &e)),
            Err(_) => {
                return Err(explain_postgres(
                    &options,
                    &sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no answer within {} s (database_acquire_timeout)",
                            opts.acquire_timeout.as_secs()
                        ),
                    )),
                ));
            }
        }
    }
    let statement_timeout = opts.statement_timeout;
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let sql = format!("set statement_timeout = {}", statement_timeout.as_millis());
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    let changes = Arc::new(AtomicI64::new(0));
    let task = spawn_listener(pool.clone(), changes.clone());
    Ok((
        pool,
        ChangeMarker::Listener(Box::new(ListenerWatch {
            changes,
            task: std::sync::Mutex::new(Some(task)),
        })),
    ))
}

/// Listens for change notifications until stopped (or the pool is closed),
/// reconnecting after a lost connection or an outage.
fn spawn_listener(pool: PgPool, changes: Arc<AtomicI64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            if pool.is_closed() {
                return;
            }
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "change listener: cannot connect; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::debug!(error = %e, "change listener: LISTEN failed; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            delay = Duration::from_millis(200);
            // Anything may have changed while no one listened.
            changes.fetch_add(1, Ordering::AcqRel);
            // `None` or an error: the connection dropped; start over.
            while let Ok(Some(_)) = listener.try_recv().await {
                changes.fetch_add(1, Ordering::AcqRel);
            }
            changes.fetch_add(1, Ordering::AcqRel);
        }
    })
}
