//! The black-box API suite of `tests/api/`, run on PostgreSQL: every test
//! gets a fresh database on the server at `WARDEN_TEST_POSTGRES_URL`
//! (default `postgres://root@127.0.0.1:5432/postgres`), dropped afterwards.
//! The modules are the one list of `tests/api/suite.rs`, so this half runs
//! every test the SQLite half runs.
//!
//! Where PostgreSQL cannot be reached, this half is skipped with a printed
//! reason — unless `WARDEN_TEST_REQUIRE_POSTGRES` is set (CI sets it), in
//! which case it fails.

#[path = "api/suite.rs"]
#[macro_use]
mod suite;
#[path = "api/helpers.rs"]
mod helpers;

pub const BACKEND: helpers::Backend = helpers::Backend::Postgres;

/// The modules, found in `tests/api/` (their tests are named `api::…`).
#[path = "api"]
mod api {
    api_suite!();
}
