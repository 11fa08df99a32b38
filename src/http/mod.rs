//! The HTTP tier: the router and one module per resource (`routes`), the
//! shared state handed to handlers, the mapping of service errors to
//! responses (`error`), request-body parsing, and the middleware (cookies,
//! CORS, proxy headers, timeouts, metrics, connection limits, the request
//! log).

pub mod body;
pub mod connections;
pub mod cookies;
pub mod cors;
pub mod device;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod request_log;
pub mod routes;
pub mod scopes;
pub mod state;
pub mod timeout;
