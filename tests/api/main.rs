//! Black-box tests: each starts a real warden on a loopback port with its
//! own SQLite file and talks HTTP to it.

#[macro_use]
mod suite;
mod helpers;

/// This binary runs the suite on SQLite; `tests/api_postgres.rs` runs the
/// same modules (the list in `suite.rs`) on PostgreSQL.
pub const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

api_suite!();
