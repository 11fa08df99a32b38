//! # warden
//!
//! A JWT authentication and authorization server: registration, the OAuth
//! 2.0 password grant, access tokens (RFC 9068) signed with EdDSA by default,
//! JWKS, and Swagger UI — on an embedded SQLite database with nothing
//! configured.
//!
//! The server is a library with a thin `main`: tests and embedders build
//! an [`app::Server`] (which owns the background tasks and the database)
//! and serve it on a listener they bound themselves; `stop` ends it all.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = warden::config::Config::load(None)?;
//! let server = warden::app::Server::build(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let ctrl_c = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! server.serve(listener, ctrl_c).await?;
//! server.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! To protect routes of *another* axum service with warden's tokens, use the
//! `warden-guard` crate (re-exported here as [`guard`]).
//!
//! Tiers, lowest first (docs/architecture.md; `tests/architecture.rs`
//! keeps them): [`domain`] (entities, validation, roles, domain errors),
//! [`storage`] (the `Store` trait and its SQL backends), [`auth`] (the
//! services: accounts, sessions, grants, tokens, keys, passwords, throttle,
//! audit), [`http`] (router, one module per resource, error mapping,
//! middleware), and [`app`] / [`cli`] (assembly and the command line);
//! [`config`] holds the settings.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod storage;

pub use warden_guard as guard;
