//! The operator's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (liveness) and
//! `/readyz` (readiness; reports whether this replica leads, but is ready either way since
//! every replica serves).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    leading: watch::Receiver<bool>,
}

/// The router, separate from the listener so tests can drive it directly.
fn router(metrics: Arc<Metrics>, leading: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, leading })
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
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(metrics, leading);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "metrics server failed");
    }
}
