//! Assembly: configuration to a running server — the router, and the
//! [`Server`] handle that owns the state, the background tasks and the
//! database, serves, and stops them all.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;
use warden_guard::Verifier;

use crate::auth::Services;
use crate::auth::tokens::{self, UserGate};
use crate::config::Config;
use crate::domain::roles::Roles;
use crate::http::routes;
use crate::http::state::{AppState, Shared};
use crate::storage::Store;

/// Request bodies over this get 413 (API.md).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warden",
        description = "JWT authentication and authorization server. Sign in with the Authorize button (OAuth2 password flow), or paste a token under bearerAuth.",
    ),
    tags(
        (name = "users", description = "Registration and your own account"),
        (name = "tokens", description = "OAuth 2.0 token endpoint"),
        (name = "clients", description = "The OAuth client registry (admin)"),
        (name = "consents", description = "The consents you gave OAuth clients"),
        (name = "keys", description = "Public keys"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

/// Adds the OAuth2 password flow Swagger UI's Authorize button runs (listing
/// every scope some role grants, custom roles included), and a plain bearer
/// scheme for pasting a token.
fn add_security_schemes(openapi: &mut utoipa::openapi::OpenApi, roles: &Roles) {
    let components = openapi.components.get_or_insert_with(Default::default);
    let scopes = Scopes::from_iter(roles.all_scopes().iter().map(|scope| {
        let description = match scope.as_str() {
            "me" => "Read and change your own account".to_owned(),
            "users:read" => "Read any user".to_owned(),
            "users:write" => "Change any user, their roles and disabled flag".to_owned(),
            "tokens:introspect" => "Introspect tokens".to_owned(),
            "clients:read" => "Read the registered OAuth clients".to_owned(),
            "clients:write" => "Register, change and delete OAuth clients".to_owned(),
            other => {
                let granted_by: Vec<&str> = roles
                    .names()
                    .filter(|r| roles.get(r).is_some_and(|s| s.contains(other)))
                    .collect();
                format!("Granted by role {}", granted_by.join(", "))
            }
        };
        (scope.clone(), description)
    }));
    components.add_security_scheme(
        "OAuth2PasswordBearer",
        SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
            "/token", scopes,
        ))])),
    );
    components.add_security_scheme(
        "bearerAuth",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
}

/// Every route with its OpenAPI entry.
pub fn api() -> OpenApiRouter<AppState> {
    api_without_feed().merge(routes::revocations::router())
}

/// [`api`] but the revocation feed, which is served under a longer
/// deadline (see [`router`]).
fn api_without_feed() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::users::router())
        .merge(routes::token::router())
        .merge(routes::sessions::router())
        .merge(routes::audit::router())
        .merge(routes::clients::router())
        .merge(routes::consents::router())
        .merge(routes::end_session::router())
        .merge(routes::meta::router())
}

/// The OpenAPI document served at `/openapi.json`, for `roles`.
pub fn openapi(roles: &Roles) -> utoipa::openapi::OpenApi {
    let mut doc = api().split_for_parts().1;
    add_security_schemes(&mut doc, roles);
    crate::http::openapi::add_error_examples(&mut doc);
    doc
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "detail": "Method Not Allowed" })),
    )
        .into_response()
}

/// Wraps every route of `router` (so far) in the per-request stack.
///
/// One stack, applied once: every `Router::layer`/`route_layer` call wraps
/// each route in another boxed service, which costs a clone and a boxed
/// future per request (callgrind: 26,551 → 21,662 instructions per
/// cached-token `GET /users/me`). As a route layer, unmatched requests
/// (404, 405) skip it: they read no body and answer at once.
fn with_request_stack(router: Router<AppState>, timeout: Duration) -> Router<AppState> {
    router.route_layer(
        tower::ServiceBuilder::new()
            .layer(crate::http::metrics::HttpMetricsLayer)
            // Users, sessions, audit events, tokens: most answers are
            // personal, so none may be stored by a browser or a shared
            // cache unless its handler says otherwise (JWKS and the
            // metadata are public; the pages revalidate).
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(crate::http::timeout::RequestTimeoutLayer::new(timeout))
            .layer(DefaultBodyLimit::max(MAX_BODY)),
    )
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // The document describes every route, the feed included; the feed is
    // served apart from the others (below).
    let openapi = openapi(&state.config.roles);
    let (api, _) = api_without_feed().split_for_parts();
    let known = routes::pages::KnownPaths::new(openapi.paths.paths.keys().map(String::as_str));
    let swagger = SwaggerUi::new("/docs")
        .url("/openapi.json", openapi)
        .config(
            utoipa_swagger_ui::Config::new(["/openapi.json"])
                // Swagger UI's default validator calls out to another origin.
                .validator_url("none")
                .persist_authorization(false)
                .try_it_out_enabled(true)
                // No top bar with its "Explore" box (as FastAPI): it only
                // loads another document into the page.
                .use_base_layout(),
        );
    let swagger =
        Router::from(swagger).layer(axum::middleware::map_response(routes::meta::docs_headers));
    let cors = crate::http::cors::layer(&state.config.http.cors_origins);
    // The revocation feed long-polls for up to `MAX_WAIT_SECS`: its own
    // stack, with a deadline that long on top of the usual one.
    let (feed, _) = routes::revocations::router().split_for_parts();
    let feed = with_request_stack(
        feed,
        crate::http::timeout::REQUEST_TIMEOUT
            + Duration::from_secs(crate::auth::revocations::MAX_WAIT_SECS),
    );
    let app = api
        .merge(swagger)
        .merge(routes::account::router())
        .merge(routes::authorize::router())
        .merge(routes::pages::router());
    let app = with_request_stack(app, crate::http::timeout::REQUEST_TIMEOUT)
        .merge(feed)
        // The JSON 404, or a redirect of `/account/` to `/account`.
        .fallback(routes::pages::fallback(known))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Outermost, so preflights are answered before routing.
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    // Outside the configured layer, which answers every preflight itself.
    app.layer(axum::middleware::from_fn_with_state(
        state,
        crate::http::cors::public_clients,
    ))
}

/// Drains the Prometheus histogram buffer every few seconds. Histogram
/// samples wait in a buffer until drained into their summaries; without a
/// Prometheus scrape nothing else drains it, and under load it would grow
/// by megabytes a minute.
async fn metrics_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// The process-wide Prometheus recorder (a recorder can be installed once
/// per process; tests start many servers in one).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = crate::http::metrics::prometheus_builder().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .clone()
}

/// How long [`Server::stop`] waits for the background tasks to end after
/// the signal before it aborts them. They end at their next await point,
/// so this is only reached by a task stuck in a long computation.
const TASK_STOP_GRACE: Duration = Duration::from_secs(5);

/// How long [`Server::stop`] waits for the database connections to come
/// back and close. Only a request still running (the server was stopped
/// while serving) or a store clone in use elsewhere holds one.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A built warden and everything it runs: the state the handlers share,
/// and the background tasks that keep it current — the database sync
/// (token gate, user cache, signing keys), the purge of ended sessions and
/// old audit events, and the metrics upkeep. [`Server::build`] starts them;
/// [`Server::stop`] ends them and closes the database (which also stops the
/// PostgreSQL `LISTEN` task), so an embedding application or a test can
/// start and stop warden cleanly, and start it again on the same database.
///
/// ```no_run
/// # async fn run() -> anyhow::Result<()> {
/// let config = warden::config::Config::load(None)?;
/// let server = warden::app::Server::build(config).await?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// // Serves until Ctrl-C, then stops the tasks and closes the database.
/// server
///     .run(listener, async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// Dropping a `Server` without [`stop`](Server::stop) aborts its tasks at
/// once (they hold no state of their own that needs an orderly end), so
/// none outlives the handle. Closing the database is asynchronous and needs
/// `stop`: after a drop, the connections close when the last clone of the
/// state is gone.
pub struct Server {
    state: AppState,
    /// `true` tells every task to end; a dropped sender does too.
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// What [`Server::stop`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Background tasks that ended on the stop signal.
    pub finished: usize,
    /// Tasks still running 5 s after the signal (`TASK_STOP_GRACE`), aborted.
    pub aborted: usize,
    /// Whether every database connection was closed within
    /// 10 s (`STORE_CLOSE_GRACE`); if not, the rest close as they come back.
    pub store_closed: bool,
}

impl Server {
    /// Opens the database (migrating it), loads or creates the signing key,
    /// starts the hashing pool — all through [`Services::open`], as the
    /// CLI does — then loads the token gate and starts the background
    /// tasks. Must run inside a Tokio runtime, which the tasks run on.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            anyhow::bail!("jsonwebtoken has no crypto backend; this build is misconfigured");
        }
        let (workers, queue) = (config.passwords.hash_workers, config.passwords.hash_queue);
        let services = Services::open(config, workers, queue).await?;
        let store = services.store.clone();
        let (state, log_read_at) = match assemble(services).await {
            Ok(built) => built,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        };
        let (stop, _) = watch::channel(false);
        let mut server = Self {
            state,
            stop,
            tasks: Vec::with_capacity(4),
        };
        server.spawn("sync", sync(server.state.clone(), log_read_at));
        server.spawn("purge", purge(server.state.clone()));
        let outbox_state = server.state.clone();
        server.spawn("outbox", async move {
            crate::auth::outbox::run(&outbox_state).await;
        });
        if let Some(handle) = server.state.metrics.clone() {
            server.spawn("metrics upkeep", metrics_upkeep(handle));
        }
        Ok(server)
    }

    /// Runs `task` until it returns or the server stops. The tasks are
    /// loops that keep in-memory state current and make idempotent writes
    /// (each purge batch is a statement of its own), so ending one at any
    /// await point loses nothing.
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.subscribe();
        let handle = tokio::spawn(async move {
            tokio::select! {
                biased;
                // `Err`: the sender is gone, which means stop too.
                _ = stop.wait_for(|stop| *stop) => {}
                () = task => {}
            }
        });
        self.tasks.push((name, handle));
    }

    /// The state the handlers share (the services, the verifier, the
    /// metrics handle): for embedders and tests that look inside.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The whole HTTP application on this server's state, for serving it
    /// another way (or calling it in process with `tower::ServiceExt`).
    /// Handlers see the peer address through `ConnectInfo`, which
    /// [`serve`](Server::serve) adds.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// How many background tasks are running.
    pub fn running_tasks(&self) -> usize {
        self.tasks
            .iter()
            .filter(|(_, task)| !task.is_finished())
            .count()
    }

    /// Serves on an already-bound listener until `shutdown` completes, then
    /// stops accepting and lets requests in flight finish (at most 30 s,
    /// `SHUTDOWN_GRACE`). The background tasks go on running: call
    /// [`stop`](Server::stop) afterwards, or use [`run`](Server::run). The
    /// future holds its own clone of the state, so it can be spawned while
    /// this handle is kept for `stop`.
    ///
    /// Connections are served by hyper directly (rather than
    /// `axum::serve`), under the limits of [`crate::http::connections`]: a
    /// cap on open connections, deadlines for the first bytes and for idle
    /// connections, HTTP/2 keep-alive.
    pub fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
        let state = self.state.clone();
        // Waiting revocation-feed polls answer at once when shutdown
        // starts, so they do not hold the graceful shutdown.
        let feed = state.feed.clone();
        let shutdown = async move {
            shutdown.await;
            feed.close();
        };
        async move {
            let limits = crate::http::connections::Limits {
                max_connections: state.config.http.max_connections,
                header_read_timeout: state.config.http.header_read_timeout,
                idle: state.config.http.idle_timeout,
                shutdown_grace: SHUTDOWN_GRACE,
            };
            crate::http::connections::serve(listener, router(state), limits, shutdown).await
        }
    }

    /// [`serve`](Server::serve) until `shutdown` completes, then
    /// [`stop`](Server::stop) — what `warden serve` runs. The serving
    /// error, if any, is returned after the stop.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let served = self.serve(listener, shutdown).await;
        self.stop().await;
        served
    }

    /// Signals every background task to end and waits for them (at most
    /// 5 s, `TASK_STOP_GRACE`, then aborts the rest), then closes the
    /// database: the PostgreSQL `LISTEN` task ends and every pooled
    /// connection is closed (waiting at most 10 s, `STORE_CLOSE_GRACE`, for
    /// those in use). Call it once serving has ended: requests still
    /// running afterwards find the database closed (503).
    pub async fn stop(mut self) -> Stopped {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + TASK_STOP_GRACE;
        let mut stopped = Stopped::default();
        for (name, mut task) in std::mem::take(&mut self.tasks) {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => stopped.finished += 1,
                Ok(Err(e)) => {
                    tracing::error!(task = name, error = %e, "background task had failed");
                    stopped.finished += 1;
                }
                Err(_) => {
                    task.abort();
                    let _ = task.await;
                    tracing::warn!(task = name, "background task did not stop in time; aborted");
                    stopped.aborted += 1;
                }
            }
        }
        stopped.store_closed = tokio::time::timeout(STORE_CLOSE_GRACE, self.state.store.close())
            .await
            .is_ok();
        if !stopped.store_closed {
            tracing::warn!("database connections still in use; they close when released");
        }
        tracing::info!(
            tasks = stopped.finished + stopped.aborted,
            "stopped: background tasks ended, database closed"
        );
        stopped
    }
}

impl Drop for Server {
    /// Without [`Server::stop`] the tasks are aborted here (after `stop`
    /// there are none left), so none outlives the handle.
    fn drop(&mut self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

/// The HTTP state around `services`, with the token gate loaded from the
/// database. Returns the change log's read time, where the sync continues.
async fn assemble(services: Services) -> anyhow::Result<(AppState, i64)> {
    let horizon = gate_horizon(&services.config);
    let log_read_at = load_gate(&services.gate, services.store.as_ref(), horizon).await?;
    services
        .gate
        .apply_revocations(&services.store.revoked_sessions(horizon).await?);
    crate::auth::clients::try_reload_origins(&services).await?;
    let config = &services.config;
    let mut verifier = Verifier::builder(
        config.tokens.jwt_algorithm,
        services.tokens.keys().key_set(),
        config.tokens.issuer.clone(),
    )
    .check(services.gate.clone())
    .cache_capacity(config.tokens.token_cache_size);
    if let Some(aud) = &config.tokens.audience {
        verifier = verifier.audience(aud.clone());
    }
    let verifier = verifier.build();
    let cookies = Arc::new(crate::http::cookies::CookiePolicy::new(config));
    crate::domain::profile::warm_up();
    let state = AppState::new(Shared {
        services,
        cookies,
        verifier,
        metrics: metrics_handle(),
        feed: Arc::new(crate::auth::revocations::RevocationFeed::new()),
    });
    Ok((state, log_read_at))
}

/// How often the in-memory state looks for writes made by other processes
/// (`warden users set-roles`, `warden keys rotate`, another instance on the
/// same database).
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Every this many sync ticks (5 s) the signing keys are reloaded even
/// without a change: retired keys leave JWKS once their last token has
/// expired.
const KEY_REFRESH_TICKS: u32 = 50;

/// How often expired sessions and refresh tokens are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// How far before its previous read each read of the user change log
/// starts: a change committed up to this long after it was logged is still
/// seen.
const CHANGE_LOG_OVERLAP: i64 = 60;

/// Slack (seconds) past an access-token lifetime before the gate forgets a
/// change: the clocks of instances and the database differ a little.
const GATE_SLACK: i64 = 60;

/// Changes, deletions and ended sessions from before this moment can no
/// longer affect an unexpired access token.
fn gate_horizon(config: &crate::config::Config) -> i64 {
    tokens::now() - config.tokens.access_token_ttl as i64 - GATE_SLACK
}

/// Loads the token gate in full: the users to watch and the deletions since
/// `horizon`. Returns the change log's read time, where the next read
/// continues.
async fn load_gate(gate: &UserGate, store: &dyn Store, horizon: i64) -> anyhow::Result<i64> {
    let started = gate.reload_started();
    let watched = store.users_to_watch(horizon).await?;
    let log = store.user_changes(horizon).await?;
    gate.reload(&watched, started);
    gate.apply_changes(&log.changes, horizon);
    Ok(log.read_at)
}

/// Keeps the in-memory state current with the database: the token gate
/// (users changed or deleted, ended sessions), the user cache and the
/// signing keys. Polls the store's change marker; on a change, reads the
/// user change log from where the last read left off. Neither the gate nor
/// the cache ever undoes a newer local write (see [`UserGate`]).
async fn sync(state: AppState, log_read_at: i64) {
    let mut seen = state.store.change_marker().await.ok();
    let mut log_read_at = log_read_at;
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut ticks: u32 = 0;
    loop {
        tick.tick().await;
        ticks = ticks.wrapping_add(1);
        let periodic = ticks.is_multiple_of(KEY_REFRESH_TICKS);
        let changed = match state.store.change_marker().await {
            Ok(m) => {
                let changed = Some(m) != seen;
                seen = Some(m);
                changed
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "sync: cannot read the change marker");
                }
                failing = true;
                continue;
            }
        };
        if !changed && !periodic {
            continue;
        }
        // The periodic pass reloads the keys and prunes the gate; users
        // are read on a change, and a change the PostgreSQL listener may
        // have missed while reconnecting counts as one (it bumps the
        // marker).
        match sync_once(&state, changed, &mut log_read_at).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "sync: cannot reload from the database");
                }
                failing = true;
                // Try again on the next tick.
                seen = None;
            }
        }
    }
}

async fn sync_once(state: &AppState, changed: bool, log_read_at: &mut i64) -> anyhow::Result<()> {
    let now = tokens::now();
    let horizon = gate_horizon(&state.config);
    if changed {
        let since = *log_read_at - CHANGE_LOG_OVERLAP;
        if since < now - crate::storage::USER_CHANGE_RETENTION + 3600 {
            // Cut off for so long the log may have been purged since.
            tracing::info!("sync: change log read long ago; reloading users in full");
            state.users.clear();
            *log_read_at = load_gate(&state.gate, state.store.as_ref(), horizon).await?;
        } else {
            let log = state.store.user_changes(since).await?;
            state.users.apply_changes(&log.changes);
            state.gate.apply_changes(&log.changes, horizon);
            *log_read_at = log.read_at;
        }
        let revoked = state.store.revoked_sessions(horizon).await?;
        state.gate.apply_revocations(&revoked);
    }
    state.gate.prune(horizon);
    // Clients write no change marker: a client registered or changed by
    // the CLI or another instance reaches this one's CORS origins on the
    // next periodic pass (5 s) or the next change of something else.
    crate::auth::clients::try_reload_origins(&state.services).await?;
    let ring = crate::auth::keys::load_ring(&state.config, state.store.as_ref(), now).await?;
    if let Some(ring) = ring
        && !state.tokens.keys().same_keys(&ring)
    {
        tracing::info!(kid = %ring.current.kid, keys = ring.all().count(), "signing keys reloaded");
        state.verifier.replace_keys(ring.key_set());
        state.tokens.replace_keys(ring);
    }
    Ok(())
}

/// Deletes long-ended sessions, expired pre-upgrade refresh tokens and
/// audit events past their retention, so the tables do not grow without
/// bound.
async fn purge(state: AppState) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let now = tokens::now();
        state.throttle.sweep(now);
        let ended_before = now - state.config.tokens.access_token_ttl as i64 - 1;
        let audit_before = state
            .config
            .audit
            .retention_days
            .map(|days| now - days as i64 * 86_400);
        match state.store.purge(now, ended_before, audit_before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged ended sessions and old audit events"),
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
}

/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
