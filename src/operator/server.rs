//! The operator's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (liveness: 503 naming
//! the watch that ended or the loop that is stuck, see [`super::health`]) and `/readyz`
//! (readiness; reports whether this replica leads, but is ready either way since every replica
//! serves), and the read-only web view under `/ui/` ([`super::webview`]); any other path is a
//! 404 naming it. Served under the limits of [`super::http`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::health::Health;
use super::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    leading: watch::Receiver<bool>,
    health: Arc<Health>,
}

/// The router, separate from the listener so tests can drive it directly.
fn router(
    metrics: Arc<Metrics>,
    leading: watch::Receiver<bool>,
    health: Arc<Health>,
    web: Arc<super::webview::Source>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route(
            "/healthz",
            get(|State(state): State<AppState>| async move { super::extender::health_response(&state.health) }),
        )
        .route("/readyz", get(ready_handler))
        .with_state(AppState {
            metrics,
            leading,
            health,
        })
        .merge(super::webview::routes(web))
        .fallback(super::webview::not_found)
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready_handler(State(state): State<AppState>) -> String {
    let role = if *state.leading.borrow() { "leader" } else { "follower" };
    format!("ok ({role})")
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    leading: watch::Receiver<bool>,
    health: Arc<Health>,
    web: Arc<super::webview::Source>,
    shutdown: watch::Receiver<bool>,
) {
    let app = router(metrics, leading, health, web);
    super::http::serve(listener, None, app, super::http::Limits::default(), shutdown, "metrics").await;
}
