//! # warden
//!
//! A JWT authentication and authorization server: registration, the OAuth
//! 2.0 password grant, access tokens (RFC 9068) signed with EdDSA by default,
//! JWKS, and Swagger UI — on an embedded SQLite database with nothing
//! configured.
//!
//! The server is a library with a thin `main`: tests and embedders build
//! the state with [`app::build_state`] and serve it on a listener they bound
//! themselves with [`app::serve`].
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = warden::config::Config::load(None)?;
//! let state = warden::app::build_state(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! warden::app::serve(listener, state, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! To protect routes of *another* axum service with warden's tokens, use the
//! `warden-guard` crate (re-exported here as [`guard`]).
//!
//! Modules: [`config`] (settings), [`storage`] (the database trait and its
//! SQLite backend), [`passwords`] (the argon2id pool), [`keys`] (signing
//! keys), [`tokens`] (issuing tokens, the in-memory revocation gate),
//! [`routes`] (HTTP, one module per resource, and the `/account` page),
//! [`cookies`] (the browser cookie mode), [`cors`] (allowed origins),
//! [`connections`] (connection limits), [`cli`].

pub mod app;
pub mod audit;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connections;
pub mod cookies;
pub mod cors;
pub mod devices;
pub mod domain;
pub mod error;
pub mod http_metrics;
pub mod keys;
pub mod model;
pub mod password_check;
pub mod passwords;
pub mod proxy;
pub mod roles;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod storage;
pub mod throttle;
pub mod timeout;
pub mod tokens;

pub use warden_guard as guard;
