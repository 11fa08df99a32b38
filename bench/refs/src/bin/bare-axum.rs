//! The HTTP limit: axum answering `GET /users/me` with warden's user JSON,
//! without any authentication.
//!
//!     bare-axum --bind 127.0.0.1:8081

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use warden_bench_refs::{Args, UserView};

async fn me(State(user): State<Arc<UserView>>) -> Json<UserView> {
    Json(UserView::clone(&user))
}

#[tokio::main]
async fn main() {
    let args = Args::parse(&["bind"]);
    let bind = args.get("bind", "127.0.0.1:8081");
    let app = Router::new()
        .route("/users/me", get(me))
        .with_state(Arc::new(UserView::seeded(0)));
    let listener = tokio::net::TcpListener::bind(&bind).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
