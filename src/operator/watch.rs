//! Watches that feed the shared placement view: Nodes (re-embedding when the node set or labels
//! change) and Pods (load, tenants, replicas per agent), plus the MomConfig `default` (global
//! settings). Every replica runs them; they only read the cluster.
//!
//! A (re-)list — `Init`, `InitApply`…, `InitDone` — is buffered and then replaces the kind's set
//! in the view, so an object deleted while the watch was away (a gap too long to resume) does
//! not stay in the view forever. A watch never ends silently: a poisoned view lock or an ended
//! stream is logged as an error before the task returns.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use super::crd::MomConfig;
use super::crd::momconfig::RoutingAlgorithm;
use super::metrics::Metrics;
use super::view::SharedView;
use crate::placement::{Objectives, Routing};

/// Keeps the view's nodes and embedding current.
///
/// Re-embedding is O(nodes) (and more for the quality figures), so node changes only mark the
/// embedding stale; it is recomputed at most every 500 ms. Without that, a cluster growing node
/// by node cost O(N²) under the view's write lock and starved the extender (seen at 5,000 nodes).
pub async fn nodes(client: kube::Client, view: SharedView, ready: watch::Sender<bool>, metrics: Arc<Metrics>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut initialising = true;
    let mut listed: Vec<Node> = Vec::new();
    let mut stale = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = stream.try_next() => next,
            _ = tick.tick() => {
                if stale && !initialising {
                    if let Ok(mut v) = view.write() {
                        v.reembed();
                    }
                    stale = false;
                }
                continue;
            }
        };
        match next {
            Ok(Some(event)) => {
                let Ok(mut v) = view.write() else {
                    tracing::error!("node watch: the view lock is poisoned; stopping");
                    return;
                };
                match event {
                    Event::Init => {
                        initialising = true;
                        listed.clear();
                    }
                    Event::InitApply(node) => listed.push(node),
                    Event::InitDone => {
                        initialising = false;
                        stale = false;
                        let removed = v.replace_nodes(&std::mem::take(&mut listed));
                        if removed > 0 {
                            tracing::info!(removed, "re-list removed {removed} nodes");
                        }
                        v.reembed();
                        let _ = ready.send(true);
                    }
                    Event::Apply(node) => {
                        stale |= v.apply_node(&node);
                    }
                    Event::Delete(node) => {
                        stale |= v.delete_node(&node.metadata.name.unwrap_or_default());
                    }
                }
                metrics.set_view_objects("nodes", v.node_count());
            }
            Ok(None) => {
                tracing::error!("node watch: the stream ended; stopping");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Keeps the view's pods (load, tenants, agent replicas) current.
pub async fn pods(client: kube::Client, view: SharedView, metrics: Arc<Metrics>) {
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Vec<Pod> = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => {
                let Ok(mut v) = view.write() else {
                    tracing::error!("pod watch: the view lock is poisoned; stopping");
                    return;
                };
                match event {
                    Event::Init => listed.clear(),
                    Event::InitApply(mut pod) => {
                        // Held until the list ends; the view keeps only what it reads.
                        pod.metadata.managed_fields = None;
                        listed.push(pod);
                    }
                    Event::InitDone => {
                        let removed = v.replace_pods(&std::mem::take(&mut listed));
                        if removed > 0 {
                            tracing::info!(removed, "re-list removed {removed} pods");
                        }
                    }
                    Event::Apply(pod) => v.apply_pod(&pod),
                    Event::Delete(pod) => v.delete_pod(&pod),
                }
                metrics.set_view_objects("pods", v.pod_count());
            }
            Ok(None) => {
                tracing::error!("pod watch: the stream ended; stopping");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Keeps the view's node heartbeats (the kubelets' Leases in `kube-node-lease`) current, and
/// once a second re-judges which nodes went silent ([`super::view::View::mark_silent`]): a
/// heartbeat that stops sends no event, so only the clock can tell.
pub async fn node_heartbeats(client: kube::Client, view: SharedView) {
    use super::view::Heartbeat;
    use k8s_openapi::api::coordination::v1::Lease;
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed = std::collections::BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = stream.try_next() => next,
            _ = tick.tick() => {
                let now = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
                let Ok(mut v) = view.write() else {
                    tracing::error!("node heartbeat watch: the view lock is poisoned; stopping");
                    return;
                };
                let (went, back) = v.mark_silent(now);
                if !went.is_empty() {
                    tracing::warn!(nodes = ?went, "nodes missed their heartbeats; treated as failed");
                }
                if !back.is_empty() {
                    tracing::info!(nodes = ?back, "nodes renew their heartbeats again");
                }
                continue;
            }
        };
        match next {
            Ok(Some(event)) => {
                let Ok(mut v) = view.write() else {
                    tracing::error!("node heartbeat watch: the view lock is poisoned; stopping");
                    return;
                };
                match event {
                    Event::Init => listed.clear(),
                    Event::InitApply(lease) => listed.extend(Heartbeat::of(&lease)),
                    Event::InitDone => v.replace_heartbeats(std::mem::take(&mut listed)),
                    Event::Apply(lease) => {
                        if let Some(name) = lease.metadata.name.as_deref() {
                            v.apply_heartbeat(name, Heartbeat::of(&lease).map(|(_, h)| h));
                        }
                    }
                    Event::Delete(lease) => {
                        if let Some(name) = lease.metadata.name.as_deref() {
                            v.apply_heartbeat(name, None);
                        }
                    }
                }
            }
            Ok(None) => {
                tracing::error!("node heartbeat watch: the stream ended; stopping");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "node heartbeat watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Applies a MomConfig's spec to the view's settings (re-embedding the nodes when the topology
/// keys or the dimension change). The watch below and `kubectl mom` (which rebuilds a view from
/// lists) share it, so both place with the same settings.
pub fn apply_config(v: &mut super::view::View, cfg: &MomConfig) {
    let g = &cfg.spec.geometry;
    let o = &cfg.spec.objectives;
    let keys_changed = v.settings.topology_keys != g.topology_keys;
    // The CRD admits 2…512; anything else (an old object) is clamped into that range.
    let dimension = g.dimension.clamp(2, 512) as usize;
    let dimension_changed = v.settings.dimension != dimension;
    v.settings.kappa = g.curvature;
    v.settings.objectives = Objectives {
        performance: o.performance,
        cost: o.cost,
        reliability: o.reliability,
        sustainability: o.sustainability,
    };
    v.settings.routing = match g.routing_algorithm {
        RoutingAlgorithm::GreedyForwarding => Routing::GreedyForwarding,
        RoutingAlgorithm::MultipathHyperbolic => Routing::MultipathHyperbolic,
        RoutingAlgorithm::GradientFlow => Routing::GradientFlow,
    };
    v.settings.recording = super::view::Recording {
        level: cfg.spec.verification.level,
        sample_rate: cfg.spec.verification.sample_rate.unwrap_or(1.0),
    };
    v.settings.latency_source = g.latency_source.clone();
    v.settings.max_hourly_cost = cfg.spec.budget.as_ref().map(|b| b.max_hourly_cost);
    if keys_changed || dimension_changed {
        v.settings.topology_keys = g.topology_keys.clone();
        v.settings.dimension = dimension;
        v.reembed();
    }
}

/// Applies the MomConfig named `default` to the view's settings, and its `spec.tickSeconds` to
/// `tick_seconds` (`None` once it is deleted or a re-list no longer holds it: the governed loops
/// fall back to their built-in period); `ready` turns true once the initial state is known (or
/// the MomConfig CRD is missing). The generation in effect is the gauge
/// `mom_config_generation` (what tests wait on after changing the MomConfig).
pub async fn momconfig(
    client: kube::Client,
    view: SharedView,
    ready: watch::Sender<bool>,
    tick_seconds: watch::Sender<Option<i32>>,
    metrics: Arc<Metrics>,
) {
    let api: Api<MomConfig> = Api::all(client);
    let config = watcher::Config::default().fields("metadata.name=default");
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let set_tick = |value: Option<i32>| {
        tick_seconds.send_if_modified(|current| std::mem::replace(current, value) != value);
    };
    let mut listed = false;
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Apply(cfg) | Event::InitApply(cfg))) => {
                listed = true;
                set_tick(Some(cfg.spec.tick_seconds));
                let Ok(mut v) = view.write() else {
                    tracing::error!("MomConfig watch: the view lock is poisoned; stopping");
                    return;
                };
                apply_config(&mut v, &cfg);
                tracing::info!(routing = ?v.settings.routing, kappa = v.settings.kappa, dimension = v.settings.dimension, "applied MomConfig default");
                metrics.config_generation.set(cfg.metadata.generation.unwrap_or(0));
            }
            Ok(Some(Event::Init)) => listed = false,
            Ok(Some(Event::InitDone)) => {
                if !listed {
                    set_tick(None);
                }
                let _ = ready.send(true);
            }
            Ok(Some(Event::Delete(_))) => {
                set_tick(None);
                metrics.config_generation.set(-1);
                // Without the MomConfig nodes are embedded in the CRD's default dimension again,
                // and no budget applies.
                if let Ok(mut v) = view.write() {
                    v.settings.max_hourly_cost = None;
                    if v.settings.dimension != super::view::DEFAULT_DIMENSION {
                        v.settings.dimension = super::view::DEFAULT_DIMENSION;
                        v.reembed();
                    }
                }
            }
            Ok(None) => {
                tracing::error!("MomConfig watch: the stream ended; stopping");
                return;
            }
            Err(err) => {
                let _ = ready.send(true);
                tracing::debug!(error = %err, "MomConfig watch failed (CRD not installed?); retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Keeps the view's namespace → tenant map current (see [`super::tenancy`]).
pub async fn namespaces(client: kube::Client, view: SharedView) {
    let api: Api<Namespace> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Vec<Namespace> = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => {
                let Ok(mut v) = view.write() else {
                    tracing::error!("namespace watch: the view lock is poisoned; stopping");
                    return;
                };
                match event {
                    Event::Init => listed.clear(),
                    Event::InitApply(ns) => listed.push(ns),
                    // A re-list replaces the map: namespaces deleted during a watch gap go.
                    Event::InitDone => v.replace_namespaces(&std::mem::take(&mut listed)),
                    Event::Apply(ns) => v.apply_namespace(&ns),
                    Event::Delete(ns) => v.delete_namespace(&ns.metadata.name.unwrap_or_default()),
                }
            }
            Ok(None) => {
                tracing::error!("namespace watch: the stream ended; stopping");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "namespace watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
