//! Black-box tests: each starts a real warden on a loopback port with its
//! own SQLite file and talks HTTP to it.

mod helpers;

mod authorization;
mod ops;
mod password_pool;
mod profile;
mod registration;
mod sessions;
mod token_endpoint;
mod token_verification;
