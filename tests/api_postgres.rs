//! The black-box API suite of `tests/api/`, run on PostgreSQL: every test
//! gets a fresh database on the server at `WARDEN_TEST_POSTGRES_URL`
//! (default `postgres://root@127.0.0.1:5432/postgres`), dropped afterwards.
//!
//! Where PostgreSQL cannot be reached, this half is skipped with a printed
//! reason — unless `WARDEN_TEST_REQUIRE_POSTGRES` is set (CI sets it), in
//! which case it fails.

#[path = "api/helpers.rs"]
mod helpers;

pub const BACKEND: helpers::Backend = helpers::Backend::Postgres;

#[path = "api/audit.rs"]
mod audit;
#[path = "api/authorization.rs"]
mod authorization;
#[path = "api/cookies.rs"]
mod cookies;
#[path = "api/hardening.rs"]
mod hardening;
#[path = "api/jwt_attacks.rs"]
mod jwt_attacks;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/ops.rs"]
mod ops;
#[path = "api/password_pool.rs"]
mod password_pool;
#[path = "api/profile.rs"]
mod profile;
#[path = "api/registration.rs"]
mod registration;
#[path = "api/security_changes.rs"]
mod security_changes;
#[path = "api/sessions.rs"]
mod sessions;
#[path = "api/throttling.rs"]
mod throttling;
#[path = "api/token_endpoint.rs"]
mod token_endpoint;
#[path = "api/token_verification.rs"]
mod token_verification;
