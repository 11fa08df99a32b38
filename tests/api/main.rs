//! Black-box tests: each starts a real warden on a loopback port with its
//! own SQLite file and talks HTTP to it.

mod helpers;

/// This binary runs the suite on SQLite; `tests/api_postgres.rs` runs the
/// same modules on PostgreSQL.
pub const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod audit;
mod authorization;
mod cookies;
mod hardening;
mod jwt_attacks;
mod limits;
mod ops;
mod password_pool;
mod profile;
mod registration;
mod security_changes;
mod sessions;
mod throttling;
mod token_endpoint;
mod token_verification;
