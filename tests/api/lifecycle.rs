//! The server's lifecycle (`warden::app::Server`): `stop` ends the
//! background tasks and closes every database connection (the PostgreSQL
//! `LISTEN` one too), dropping the handle without `stop` leaves nothing
//! running either, and a new server starts on the same database afterwards.
//!
//! What shows the connections are gone: on SQLite, every open connection
//! (the pool's, the change counter's) holds a file descriptor on the
//! database file, which `/proc/self/fd` lists; on PostgreSQL,
//! `pg_stat_activity` lists every connection to the test's database.
//! (The `-wal` file is no measure: two connections closing at the same
//! moment may each see the other and both leave it behind.) The tasks hold clones of the state, and so of the pool: a task
//! left running would keep those connections open forever; and while the
//! test holds a clone itself, only `close` can end them.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{Backend, PASSWORD, TestApp, TestEnv, postgres_admin_url};

/// Bounded wait for what the server does in the background (a backend
/// exiting after its client hung up, a dropped pool's connections closing).
const SETTLE: Duration = Duration::from_secs(10);

/// The database's own connections: SQLite's WAL files, or the rows of
/// `pg_stat_activity` for the test database (counted from another one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Connections {
    open: i64,
    /// PostgreSQL: connections whose last statement was a `LISTEN`.
    listening: i64,
}

async fn connections(env: &TestEnv) -> Connections {
    match crate::BACKEND {
        Backend::Sqlite => Connections {
            open: sqlite_descriptors(env),
            listening: 0,
        },
        Backend::Postgres => {
            let url = url::Url::parse(&env.database_url).unwrap();
            let name = url.path().trim_start_matches('/').to_owned();
            let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
            let (open, listening): (i64, i64) = sqlx::query_as(
                "select count(*), count(*) filter (where query ilike 'listen%') \
                 from pg_stat_activity where datname = $1",
            )
            .bind(&name)
            .fetch_one(&admin)
            .await
            .unwrap();
            admin.close().await;
            Connections { open, listening }
        }
    }
}

/// This process's open file descriptors on the test's database file (each
/// SQLite connection holds one; its `-wal` and `-shm` files are not counted,
/// so the number is the connections').
fn sqlite_descriptors(env: &TestEnv) -> i64 {
    let database = env
        .dir
        .path()
        .canonicalize()
        .expect("the test directory exists")
        .join("warden.db");
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd lists descriptors (Linux)");
    let open = fds
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| *target == database)
        .count();
    i64::try_from(open).expect("a count of descriptors")
}

/// Polls until `done` holds for the database's connections, at most
/// [`SETTLE`]; returns the last reading.
async fn settle(env: &TestEnv, done: impl Fn(Connections) -> bool) -> Connections {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let now = connections(env).await;
        if done(now) || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stop_ends_the_tasks_and_closes_the_database_and_a_new_server_starts_on_it() {
    let app = TestApp::spawn().await;
    let tasks = 3 + usize::from(app.state.metrics.is_some());
    assert_eq!(app.running_tasks(), tasks, "sync, purge, outbox (and metrics upkeep)");
    app.register_ok("alice").await;
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    let env = app.env.clone();
    let listeners = i64::from(crate::BACKEND == Backend::Postgres);
    let running = settle(&env, |c| c.open > 0 && c.listening == listeners).await;
    assert!(running.open > 0, "a serving warden has connections");
    assert_eq!(running.listening, listeners, "one LISTEN connection on PostgreSQL");

    // Held across the stop, so the pool cannot just be dropped: only
    // closing it ends its connections.
    let state = app.state.clone();
    let (stopped, env) = app.stop_server().await;
    assert_eq!(stopped.finished, tasks, "{stopped:?}");
    assert_eq!(stopped.aborted, 0, "{stopped:?}");
    assert!(stopped.store_closed, "{stopped:?}");
    if crate::BACKEND == Backend::Sqlite {
        // `close` waited for SQLite to close the file.
        assert_eq!(connections(&env).await.open, 0, "database file still open after stop");
    }
    // A PostgreSQL backend exits a moment after its client said goodbye.
    let after = settle(&env, |c| c.open == 0).await;
    assert_eq!(
        after,
        Connections {
            open: 0,
            listening: 0
        },
        "stop closed every connection"
    );
    // Nothing reopens the database afterwards (the sync task polled it ten
    // times a second).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connections(&env).await.open, 0, "reopened after stop");
    assert!(state.store.ping().await.is_err(), "the store is closed");
    drop(state);

    let again = TestApp::spawn_in(env.clone(), &[]).await;
    assert_eq!(again.login("alice", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(again.running_tasks(), tasks);
    let (stopped, env) = again.stop_server().await;
    assert_eq!(stopped.finished, tasks);
    assert_eq!(settle(&env, |c| c.open == 0).await.open, 0);
}

#[tokio::test]
async fn dropping_the_server_without_stop_leaves_no_task_holding_the_database() {
    let app = TestApp::spawn().await;
    app.register_ok("alice").await;
    let env = app.env.clone();
    assert!(settle(&env, |c| c.open > 0).await.open > 0);
    // Drops the handle (aborting the tasks), its state and its client; the
    // serving loop ends on the shutdown `TestApp` sends when dropped.
    drop(app);
    // No `close` ran, so the pool's connections close as the last clone of
    // the state goes: a task still running would hold one forever.
    let after = settle(&env, |c| c.open == 0).await;
    assert_eq!(after.open, 0, "connections left open: {after:?}");
    assert_eq!(after.listening, 0, "the LISTEN task outlived the server");

    let again = TestApp::spawn_in(env, &[]).await;
    assert_eq!(again.login("alice", PASSWORD).await.status(), StatusCode::OK);
}
