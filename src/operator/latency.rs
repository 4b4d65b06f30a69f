//! Reads MomConfig `spec.geometry.latencySource` and keeps the view's latency fit current.
//!
//! Every [`PERIOD`], on every replica (the extender of each reads its own view): read the
//! source (the ConfigMap key, or the annotation of every node), and when it, the node set, the
//! node labels, the topology keys or the dimension changed since the last fit, fit again off
//! the async runtime (`placement::measured::fit_latencies`, continuing the previous fit) and
//! hand the result to the view, which re-embeds. A source that cannot be read or used leaves
//! the label positions in force and says why (`LatencyState::Problem`, shown as the MomConfig
//! condition `MeasuredLatency`). Thin: fetching and bookkeeping; the rules are in the core.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams};

use super::crd::momconfig::LatencySource;
use super::view::{LatencyState, SharedView};
use crate::placement::measured::{self, LatencyProblem, LatencyRows};

/// How often the source is read.
pub const PERIOD: Duration = Duration::from_secs(3);

/// Where the source is, for messages: the field and its value.
fn describe(source: &LatencySource) -> String {
    match (&source.config_map, &source.node_annotation) {
        (Some(c), _) => format!(
            "spec.geometry.latencySource.configMap (ConfigMap {}/{}, key {})",
            c.namespace, c.name, c.key
        ),
        (None, Some(a)) => format!("spec.geometry.latencySource.nodeAnnotation ({a})"),
        (None, None) => "spec.geometry.latencySource".to_string(),
    }
}

/// The latencies the source holds now; `Err((reason, message))` when it cannot be read.
async fn read(client: &kube::Client, source: &LatencySource) -> Result<LatencyRows, (String, String)> {
    let problem = |p: LatencyProblem| (p.reason().to_string(), p.to_string());
    match (&source.config_map, &source.node_annotation) {
        (Some(c), _) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.namespace);
            let cm = api.get_opt(&c.name).await.map_err(|e| {
                (
                    "LatencySourceUnreadable".to_string(),
                    format!("reading ConfigMap {}/{}: {e}", c.namespace, c.name),
                )
            })?;
            let Some(cm) = cm else {
                return Err((
                    "LatencySourceNotFound".to_string(),
                    format!("ConfigMap {}/{} does not exist", c.namespace, c.name),
                ));
            };
            let Some(text) = cm.data.as_ref().and_then(|d| d.get(&c.key)) else {
                return Err((
                    "LatencySourceNotFound".to_string(),
                    format!("ConfigMap {}/{} has no key {}", c.namespace, c.name, c.key),
                ));
            };
            measured::parse_matrix(text, &format!("key {} of ConfigMap {}/{}", c.key, c.namespace, c.name))
                .map_err(problem)
        }
        (None, Some(annotation)) => {
            let api: Api<Node> = Api::all(client.clone());
            let nodes = api
                .list_metadata(&ListParams::default())
                .await
                .map_err(|e| ("LatencySourceUnreadable".to_string(), format!("listing nodes: {e}")))?;
            let mut rows = LatencyRows::new();
            let mut items: Vec<_> = nodes.items;
            items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            for node in items {
                let name = node.metadata.name.clone().unwrap_or_default();
                let Some(text) = node.metadata.annotations.as_ref().and_then(|a| a.get(annotation)) else {
                    continue;
                };
                let row = measured::parse_row(&name, text, &format!("annotation {annotation} of node {name}"))
                    .map_err(problem)?;
                rows.insert(name, row);
            }
            Ok(rows)
        }
        (None, None) => Ok(LatencyRows::new()),
    }
}

/// Runs until the process ends.
pub async fn run(client: kube::Client, view: SharedView) {
    // What the last fit (or problem) was computed from.
    let mut last: Option<String> = None;
    loop {
        tokio::time::sleep(PERIOD).await;
        let (source, nodes, keys, dimension, previous) = {
            let v = view.read();
            (
                v.settings.latency_source.clone(),
                v.node_label_map(),
                v.settings.topology_keys.clone(),
                v.settings.dimension,
                v.latency_fit().cloned(),
            )
        };
        let Some(source) = source else {
            last = None;
            // Read first: the writers' turn is taken only to change the state, not every period.
            let configured = !matches!(view.read().latency_state(), LatencyState::NotConfigured);
            if configured && let Ok(mut v) = view.write() {
                v.set_latency(LatencyState::NotConfigured);
            }
            continue;
        };
        let input = read(&client, &source).await;
        let key = serde_json::json!({
            "source": format!("{source:?}"),
            "input": match &input { Ok(rows) => serde_json::json!(rows), Err(e) => serde_json::json!([e.0, e.1]) },
            "nodes": nodes, "keys": keys, "dimension": dimension,
        })
        .to_string();
        if last.as_deref() == Some(key.as_str()) {
            continue;
        }
        let where_ = describe(&source);
        let state = match input {
            Err((reason, message)) => LatencyState::Problem(
                reason,
                format!("{where_}: {message}; nodes are placed by their topology labels only"),
            ),
            Ok(rows) => {
                // Without a fit in force, say that one is running (a fit in force stays in force
                // until the new one replaces it).
                if let Ok(mut v) = view.write()
                    && !matches!(v.latency_state(), LatencyState::Fitted(_) | LatencyState::Pending)
                {
                    v.set_latency(LatencyState::Pending);
                }
                let fitted = tokio::task::spawn_blocking(move || {
                    measured::fit_latencies(&rows, &nodes, &keys, dimension, previous.as_ref())
                })
                .await;
                match fitted {
                    Ok(Ok(fit)) => LatencyState::Fitted(std::sync::Arc::new(fit)),
                    Ok(Err(p)) => LatencyState::Problem(
                        p.reason().to_string(),
                        format!("{where_}: {p}; nodes are placed by their topology labels only"),
                    ),
                    Err(e) => LatencyState::Problem(
                        "LatencyFitFailed".to_string(),
                        format!(
                            "{where_}: the fit did not finish: {e}; nodes are placed by their topology labels only"
                        ),
                    ),
                }
            }
        };
        match &state {
            LatencyState::Fitted(f) => tracing::info!(
                nodes = f.positions.len(),
                pairs = f.pairs,
                held_out_median_relative_error = f.held_out_median_relative_error,
                incremental = f.incremental,
                "node positions follow measured latencies"
            ),
            LatencyState::Problem(reason, message) => tracing::warn!(reason, message, "measured latencies not used"),
            _ => {}
        }
        let Ok(mut v) = view.write() else {
            tracing::error!("latency source: the view lock is poisoned; stopping");
            return;
        };
        v.set_latency(state);
        last = Some(key);
    }
}
