//! The read-only web view, served on the metrics listener (same access control as `/metrics`)
//! under `/ui/`: the page and its three files (embedded in the binary, no CDN), the current
//! snapshot (`/ui/api/state`), its live updates as server-sent events (`/ui/api/events`) and
//! the receipt timeline with the chain's verification (`/ui/api/receipts?limit=N`).
//!
//! Data comes from what the operator holds in memory (the placement view, the agent cache, the
//! budget ledger, the receipt writer's head), gathered into the core's plain
//! [`crate::webview::Input`] under each lock only as long as copying takes; the receipts are
//! read from the cluster (the stored chain, as `mom verify --cluster` reads it) at most once per
//! [`RECEIPTS_TTL`] whatever the number of pages open, and again whenever the chain head moved.
//!
//! Updates: one publisher task builds the snapshot once a second while at least one page
//! listens and, when it changed, publishes it in a `tokio::sync::watch` (one value, no queue).
//! Each event stream only reads the newest value, so a slow client skips versions instead of
//! piling them up, and never holds a lock of the operator. A stream ends after
//! [`STREAM_LIFETIME`] (the browser's EventSource reconnects) or at shutdown.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use kube::ResourceExt as _;
use tokio::sync::watch;

use super::context::Context;
use super::view::{AgentKey, SharedView};
use crate::webview::{self as core, AgentInput, Input, NodeInput, Snapshot};

/// How often the publisher rebuilds the snapshot while a page listens.
pub const PUBLISH_PERIOD: Duration = Duration::from_secs(1);
/// How long one event stream lasts before the browser reconnects.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// How long a read of the stored receipts is reused.
pub const RECEIPTS_TTL: Duration = Duration::from_secs(2);
/// Most receipts `/ui/api/receipts` returns.
pub const MAX_RECEIPTS: usize = 500;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// A request the view refuses (400), naming the parameter.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("unknown query parameter '{0}'")]
    Unknown(String),
    #[error("query parameter 'limit' must be a whole number from 1 to {MAX_RECEIPTS}, got '{0}'")]
    Limit(String),
}

/// The `limit` of `/ui/api/receipts` (default 100); any other parameter is refused.
pub fn receipts_limit(query: Option<&str>) -> Result<usize, QueryError> {
    let mut limit = 100;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_RECEIPTS).contains(n))
                    .ok_or_else(|| QueryError::Limit(value.to_string()))?;
            }
            other => return Err(QueryError::Unknown(other.to_string())),
        }
    }
    Ok(limit)
}

/// Refuses any query parameter (the endpoints that take none).
fn no_query(query: Option<&str>) -> Result<(), QueryError> {
    match query.unwrap_or_default().split('&').find(|p| !p.is_empty()) {
        Some(pair) => Err(QueryError::Unknown(
            pair.split_once('=').map_or(pair, |(k, _)| k).to_string(),
        )),
        None => Ok(()),
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
}

/// The last timeline read: when, at which chain head of this replica's writer, and its JSON.
type CachedTimeline = (Instant, Option<u64>, Arc<String>);

/// What the view reads: the placement view from the start, the rest once the operator's
/// context exists (the listener serves `/healthz` before that).
pub struct Source {
    view: SharedView,
    leading: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    ctx: OnceLock<Arc<Context>>,
    updates: watch::Sender<Arc<(u64, String)>>,
    receipts: tokio::sync::Mutex<Option<CachedTimeline>>,
}

impl Source {
    pub fn new(view: SharedView, leading: watch::Receiver<bool>, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            view,
            leading,
            shutdown,
            ctx: OnceLock::new(),
            updates: watch::Sender::new(Arc::new((0, String::new()))),
            receipts: Default::default(),
        })
    }

    /// Hands over the operator's context (agents, budget, receipts); set once.
    pub fn set_context(&self, ctx: Arc<Context>) {
        let _ = self.ctx.set(ctx);
    }

    /// Copies what the snapshot needs out of the operator's memory.
    pub fn gather(&self) -> Input {
        let ctx = self.ctx.get();
        let agents = ctx.and_then(|c| c.agents.sorted());
        let refusals: Vec<(AgentKey, String)> = ctx
            .map(|c| {
                c.budget
                    .refusals()
                    .into_iter()
                    .map(|(k, r)| {
                        let why = format!(
                            "budget allows {} of {} wanted replicas ({:.2}/h each, max {:.2}/h)",
                            r.allowed, r.wanted, r.per_replica_cost, r.max_hourly_cost
                        );
                        (k, why)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut input = Input {
            leading: *self.leading.borrow(),
            receipt_head: ctx.and_then(|c| c.writer.head()).map(|h| h.sequence),
            auction_caps: ctx
                .map(|c| c.budget.auction_caps().into_iter().collect())
                .unwrap_or_default(),
            ..Default::default()
        };
        let view = self.view.read();
        input.dimension = view.dimension();
        input.layout = if view.positions_follow_latency() {
            core::Layout::Measured
        } else {
            core::Layout::Tree
        };
        let keys = view.topology_keys_above_host();
        input.max_hourly_cost = view.settings.max_hourly_cost;
        if input.max_hourly_cost.is_some() {
            let (pods, nodes, _) = view.priced();
            input.hourly_cost = Some(crate::budget::hourly_cost(&pods, &nodes));
        }
        input.pool_pressure = view
            .pool_pressures()
            .iter()
            .map(|(p, l)| (p.clone(), l.as_str().to_string()))
            .collect();
        let names: Vec<String> = view.node_names().cloned().collect();
        input.nodes = names
            .into_iter()
            .map(|name| {
                let labels = view.node_labels(&name);
                let label = |k: &str| labels.and_then(|l| l.get(k)).cloned();
                NodeInput {
                    region: label(crate::labels::REGION_LABEL),
                    zone: label(crate::labels::ZONE_LABEL),
                    pool: label(crate::labels::POOL_LABEL).unwrap_or_else(|| super::pools::DEFAULT_POOL.to_string()),
                    path: keys.iter().map(|k| label(k).unwrap_or_default()).collect(),
                    position: view.node_position(&name).cloned(),
                    failed: view
                        .node_failed(&name)
                        .then(|| view.failed_reason(&name).unwrap_or_else(|| "not ready".to_string())),
                    schedulable: view.node_schedulable(&name),
                    name,
                }
            })
            .collect();
        input.agents = agents.map(|agents| {
            agents
                .iter()
                .map(|agent| {
                    let key = AgentKey::of(agent);
                    let status = agent.status.as_ref();
                    AgentInput {
                        namespace: key.namespace.clone(),
                        name: agent.name_any(),
                        workload_type: serde_json::to_value(agent.spec.workload_type)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        desired: agent.spec.replicas,
                        replicas: status.map_or(0, |s| s.replicas),
                        ready: status.map_or(0, |s| s.ready_replicas),
                        target: view
                            .previous_target(&key)
                            .cloned()
                            .or_else(|| status.and_then(|s| s.position.as_ref()).map(|p| p.coordinates.clone())),
                        pods: view.agent_pods(&key),
                        peers: agent.spec.peers.iter().map(|p| (p.agent.clone(), p.weight)).collect(),
                        pool: super::pools::pool_of(agent),
                        allocation: status.and_then(|s| s.allocation.as_ref()).map(|a| (a.quota, a.payment)),
                        budget_refusal: refusals.iter().find(|(k, _)| *k == key).map(|(_, w)| w.clone()),
                    }
                })
                .collect()
        });
        input
    }

    fn snapshot(&self) -> Snapshot {
        core::build(&self.gather())
    }

    /// Publishes a new snapshot version once a second while a page listens, until `shutdown`.
    pub async fn publish(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut last = String::new();
        let mut version = 0u64;
        let mut tick = tokio::time::interval(PUBLISH_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if self.updates.receiver_count() == 0 {
                continue;
            }
            let snapshot = self.snapshot();
            let Ok(body) = serde_json::to_string(&snapshot) else {
                continue;
            };
            if body == last {
                continue;
            }
            version += 1;
            last = body;
            let mut numbered = snapshot;
            numbered.version = version;
            if let Ok(text) = serde_json::to_string(&numbered) {
                self.updates.send_replace(Arc::new((version, text)));
            }
        }
    }

    /// The receipt timeline as JSON (cached for [`RECEIPTS_TTL`]; one read at a time).
    async fn receipts_json(&self) -> Result<Arc<String>, String> {
        let Some(ctx) = self.ctx.get() else {
            return Err("the operator is still starting".into());
        };
        // Reused only while young and while this replica's chain head has not moved: a page
        // asks again exactly when the head moves, and must then see the new receipts.
        let head = ctx.writer.head().map(|h| h.sequence);
        let mut cache = self.receipts.lock().await;
        if let Some((at, cached_head, body)) = cache.as_ref()
            && at.elapsed() < RECEIPTS_TTL
            && *cached_head == head
        {
            return Ok(body.clone());
        }
        let client = ctx.client.clone();
        let keys = super::store::published_trusted_keys(&client, ctx.writer.namespace())
            .await
            .map_err(|e| e.to_string())?;
        let (readable, unreadable) = super::store::stored_objects_lenient(&client)
            .await
            .map_err(|e| e.to_string())?;
        let body = tokio::task::spawn_blocking(move || {
            let tagged = readable
                .into_iter()
                .map(|(ns, name, r)| (format!("{ns}/{name}"), r))
                .collect();
            let (trusted, foreign) = crate::receipts::provenance::split_trusted(tagged, &keys);
            let chain: Vec<crate::receipts::Receipt> = trusted.into_iter().map(|(_, r)| r).collect();
            let report = crate::receipts::verify_chain(&chain, &keys, &Default::default());
            serde_json::to_string(&timeline(
                &chain,
                &report,
                foreign.len() + unreadable.len(),
                keys.ids().count(),
            ))
            .unwrap_or_default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let body = Arc::new(body);
        *cache = Some((Instant::now(), head, body.clone()));
        Ok(body)
    }
}

/// The receipt timeline: every receipt of the chain with the verifier's findings at its
/// sequence, the chain's report, and the descheduler moves the `evict` receipts record.
fn timeline(
    chain: &[crate::receipts::Receipt],
    report: &crate::receipts::Report,
    left_out: usize,
    trusted_keys: usize,
) -> serde_json::Value {
    let receipts: Vec<serde_json::Value> = chain
        .iter()
        .map(|r| {
            let problems: Vec<&crate::receipts::Problem> =
                report.problems.iter().filter(|p| p.sequence == r.sequence).collect();
            serde_json::json!({
                "sequence": r.sequence,
                "action": r.action.as_str(),
                "subject": format!("{} {}/{}", r.subject.kind, r.subject.namespace, r.subject.name),
                "time": r.time,
                "level": r.level.as_str(),
                "keyId": r.key_id,
                "hash": r.hash,
                "prevHash": r.prev_hash,
                "decision": r.decision,
                "verification": if problems.is_empty() { "verified" } else { "problem" },
                "problems": problems,
            })
        })
        .collect();
    let moves: Vec<core::MoveView> = chain
        .iter()
        .filter(|r| r.action == crate::receipts::Action::Evict)
        .filter_map(|r| core::move_of(r.sequence, &r.decision))
        .collect();
    serde_json::json!({
        "report": report,
        "ok": report.is_ok(),
        "trustedKeys": trusted_keys,
        "leftOut": left_out,
        "receipts": receipts,
        "moves": moves,
    })
}

/// Keeps the newest `limit` receipts of a timeline (and all its moves).
fn newest(body: &str, limit: usize) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    if let Some(list) = value.get_mut("receipts").and_then(|r| r.as_array_mut()) {
        let skip = list.len().saturating_sub(limit);
        list.drain(..skip);
    }
    value.to_string()
}

/// The view's routes, to be merged into the metrics router.
pub fn routes(source: Arc<Source>) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/ui/api/state", get(state))
        .route("/ui/api/events", get(events))
        .route("/ui/api/receipts", get(receipts))
        .with_state(source)
}

/// 404 naming the path, for every route no router matched.
pub async fn not_found(uri: Uri) -> Response {
    (StatusCode::NOT_FOUND, format!("not found: {}", uri.path())).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Nothing from elsewhere: the page works offline and cannot be made to load code.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn state(State(source): State<Arc<Source>>, RawQuery(query): RawQuery) -> Response {
    if let Err(e) = no_query(query.as_deref()) {
        return e.into_response();
    }
    let current = source.updates.borrow().0;
    let mut snapshot = source.snapshot();
    snapshot.version = current;
    json(serde_json::to_string(&snapshot).unwrap_or_default())
}

async fn receipts(State(source): State<Arc<Source>>, RawQuery(query): RawQuery) -> Response {
    let limit = match receipts_limit(query.as_deref()) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    match source.receipts_json().await {
        Ok(body) => json(newest(&body, limit)),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the receipts cannot be read now: {why}"),
        )
            .into_response(),
    }
}

async fn events(State(source): State<Arc<Source>>, RawQuery(query): RawQuery) -> Response {
    if let Err(e) = no_query(query.as_deref()) {
        return e.into_response();
    }
    let rx = source.updates.subscribe();
    let shutdown = source.shutdown.clone();
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    let stream = futures::stream::unfold((rx, true, shutdown), move |(mut rx, first, shutdown)| async move {
        if !first {
            let mut ended = shutdown.clone();
            tokio::select! {
                changed = rx.changed() => changed.ok()?,
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = ended.wait_for(|s| *s) => return None,
            }
        }
        let current = rx.borrow_and_update().clone();
        let event = if current.1.is_empty() {
            Event::default().comment("waiting for the first snapshot")
        } else {
            Event::default()
                .event("snapshot")
                .id(current.0.to_string())
                .data(current.1.as_str())
        };
        Some((Ok::<_, std::convert::Infallible>(event), (rx, false, shutdown)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(router: &mut Router, path: &str) -> (StatusCode, String) {
        use http_body_util::BodyExt as _;
        use tower::Service as _;
        let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = router.call(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn on_an_empty_cluster_the_view_serves_its_page_and_says_no_nodes_yet() {
        let (_tx, rx) = watch::channel(false);
        let source = Source::new(Default::default(), rx.clone(), rx);
        let mut router = routes(source).fallback(not_found);
        let (status, body) = get(&mut router, "/ui/api/state").await;
        assert_eq!(status, StatusCode::OK);
        let snapshot: Snapshot = serde_json::from_str(&body).unwrap();
        assert!(snapshot.nodes.is_empty() && snapshot.agents.is_empty());
        assert!(
            snapshot.notes.contains(&"no nodes yet".to_string()),
            "{:?}",
            snapshot.notes
        );
        let (status, page) = get(&mut router, "/ui/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("/ui/app.js"));
        for asset in ["/ui/app.js", "/ui/app.css"] {
            assert_eq!(get(&mut router, asset).await.0, StatusCode::OK, "{asset}");
        }
        assert_eq!(
            get(&mut router, "/ui/api/nothing").await,
            (StatusCode::NOT_FOUND, "not found: /ui/api/nothing".to_string())
        );
        let (status, body) = get(&mut router, "/ui/api/receipts?limit=-1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("'limit'"), "{body}");
        // Before the operator's context exists, receipts are unavailable, not a panic.
        assert_eq!(
            get(&mut router, "/ui/api/receipts").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn the_publisher_numbers_a_new_version_only_when_the_snapshot_changed() {
        let (_tx, rx) = watch::channel(false);
        let view: SharedView = Default::default();
        let source = Source::new(view.clone(), rx.clone(), rx);
        let mut updates = source.updates.subscribe();
        tokio::spawn(source.clone().publish());
        tokio::time::sleep(PUBLISH_PERIOD * 5 / 2).await;
        assert_eq!(updates.borrow_and_update().0, 1, "one version for the first snapshot");
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}
        }))
        .unwrap();
        view.write().unwrap().apply_node(&node);
        tokio::time::sleep(PUBLISH_PERIOD * 5 / 2).await;
        let (version, body) = updates.borrow_and_update().as_ref().clone();
        assert_eq!(
            version, 2,
            "one more version for the change, none for the ticks without one"
        );
        assert!(body.contains("\"n1\""), "{body}");
    }

    #[test]
    fn the_receipts_limit_defaults_to_100_and_bad_values_name_the_parameter() {
        assert_eq!(receipts_limit(None), Ok(100));
        assert_eq!(receipts_limit(Some("limit=5")), Ok(5));
        assert_eq!(receipts_limit(Some("limit=0")), Err(QueryError::Limit("0".into())));
        assert_eq!(receipts_limit(Some("limit=abc")), Err(QueryError::Limit("abc".into())));
        assert_eq!(receipts_limit(Some("limit=501")), Err(QueryError::Limit("501".into())));
        assert_eq!(
            receipts_limit(Some("since=3")),
            Err(QueryError::Unknown("since".into()))
        );
        assert!(QueryError::Limit("x".into()).to_string().contains("'limit'"));
        assert_eq!(no_query(Some("x=1")), Err(QueryError::Unknown("x".into())));
        assert_eq!(no_query(Some("")), Ok(()));
    }

    #[test]
    fn the_timeline_marks_each_receipt_verified_or_with_its_problems_and_lists_moves() {
        use crate::receipts::testutil::{chain, signer};
        let s = signer(1);
        let mut receipts = chain(4, 0, &s);
        let keys = {
            let mut k = crate::receipts::TrustedKeys::new();
            k.add(s.public_key());
            k
        };
        let report = crate::receipts::verify_chain(&receipts, &keys, &Default::default());
        let ok = timeline(&receipts, &report, 0, 1);
        assert_eq!(ok["ok"], true);
        assert!(
            ok["receipts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["verification"] == "verified")
        );
        receipts[2].decision = serde_json::json!({"edited": true});
        let report = crate::receipts::verify_chain(&receipts, &keys, &Default::default());
        let bad = timeline(&receipts, &report, 0, 1);
        assert_eq!(bad["ok"], false);
        assert_eq!(bad["receipts"][2]["verification"], "problem");
        assert_eq!(bad["receipts"][2]["problems"][0]["kind"], "edited");
        assert_eq!(bad["receipts"][0]["verification"], "verified");
        let trimmed: serde_json::Value = serde_json::from_str(&newest(&bad.to_string(), 1)).unwrap();
        assert_eq!(trimmed["receipts"].as_array().unwrap().len(), 1);
        assert_eq!(trimmed["receipts"][0]["sequence"], 3);
    }
}
