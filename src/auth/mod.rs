//! The auth services: the business rules of accounts, sessions and tokens,
//! called alike by the HTTP handlers and the CLI. Nothing here imports axum
//! or returns the HTTP error type (`tests/architecture.rs` checks it).

pub mod audit;
pub mod cache;
pub mod devices;
pub mod keys;
pub mod password_check;
pub mod passwords;
pub mod refresh_tokens;
pub mod throttle;
pub mod tokens;
