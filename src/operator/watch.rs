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
/// by node cost O(N²) in the view's writers' turn (it starved the extender at 5,000 nodes when
/// readers still shared a lock with writers; now it holds up the other writers).
pub async fn nodes(client: kube::Client, view: SharedView, ready: watch::Sender<bool>, metrics: Arc<Metrics>) {
    let api: Api<Node> = Api::all(client);
    // Node status updates of a large cluster arrive in bursts: those already received are
    // applied in one writers' turn ([`WRITE_BATCH`]).
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .ready_chunks(WRITE_BATCH)
        .boxed();
    let mut initialising = true;
    let mut listed: Vec<Node> = Vec::new();
    let mut stale = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            next = stream.next() => next,
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
        let Some(batch) = batch else {
            tracing::error!("node watch: the stream ended; stopping");
            return;
        };
        let mut failed = None;
        let mut listed_now = false;
        {
            let Ok(mut v) = view.write() else {
                tracing::error!("node watch: the view lock is poisoned; stopping");
                return;
            };
            for next in batch {
                let event = match next {
                    Ok(event) => event,
                    Err(err) => {
                        failed = Some(err);
                        continue;
                    }
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
                        listed_now = true;
                    }
                    Event::Apply(node) => {
                        stale |= v.apply_node(&node);
                    }
                    Event::Delete(node) => {
                        stale |= v.delete_node(&node.metadata.name.unwrap_or_default());
                    }
                }
            }
            metrics.set_view_objects("nodes", v.node_count());
        }
        // Only once the writers' turn is over is the listed node set published: readers started
        // by this signal (the extender, the agent controller) must not see the view before it.
        if listed_now {
            let _ = ready.send(true);
        }
        if let Some(err) = failed {
            tracing::warn!(error = %err, "node watch failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Most watch events applied in one writers' turn of the view: the events already received
/// when the watch wakes up (a burst of pod or Lease updates) are applied together and
/// published once, so the extender's assumptions (also writes) wait for one turn instead of
/// queueing behind each event.
pub const WRITE_BATCH: usize = 256;

/// Keeps the view's pods (load, tenants, agent replicas) current. Events already received
/// are applied in batches ([`WRITE_BATCH`]), in order.
pub async fn pods(client: kube::Client, view: SharedView, metrics: Arc<Metrics>) {
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .ready_chunks(WRITE_BATCH)
        .boxed();
    let mut listed: Vec<Pod> = Vec::new();
    loop {
        let Some(batch) = stream.next().await else {
            tracing::error!("pod watch: the stream ended; stopping");
            return;
        };
        let mut failed = None;
        {
            let Ok(mut v) = view.write() else {
                tracing::error!("pod watch: the view lock is poisoned; stopping");
                return;
            };
            for next in batch {
                match next {
                    Ok(event) => apply_pod_event(&mut v, &mut listed, event),
                    Err(err) => failed = Some(err),
                }
            }
            metrics.set_view_objects("pods", v.pod_count());
        }
        if let Some(err) = failed {
            tracing::warn!(error = %err, "pod watch failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One pod watch event into the view (`listed` buffers a re-list until it ends).
fn apply_pod_event(v: &mut super::view::View, listed: &mut Vec<Pod>, event: Event<Pod>) {
    match event {
        Event::Init => listed.clear(),
        Event::InitApply(mut pod) => {
            // Held until the list ends; the view keeps only what it reads.
            pod.metadata.managed_fields = None;
            listed.push(pod);
        }
        Event::InitDone => {
            let removed = v.replace_pods(&std::mem::take(listed));
            if removed > 0 {
                tracing::info!(removed, "re-list removed {removed} pods");
            }
        }
        Event::Apply(pod) => v.apply_pod(&pod),
        Event::Delete(pod) => v.delete_pod(&pod),
    }
}

/// How often Lease events received are applied to the view. 5,000 kubelets renewing every
/// 10 s send 500 events a second; applied one by one, each would take the writers' turn (and
/// publish a copy of the view). Coalesced, the view takes ≤ 10 writes a second for them, and a
/// heartbeat reaches it at most this late (far below the 10 s between renewals that silence is
/// judged in).
pub const HEARTBEAT_FLUSH: Duration = Duration::from_millis(100);

/// Lease events received since the last flush into the view: the latest heartbeat per node
/// (`None`: its Lease was deleted), or a whole re-list that replaces them all.
#[derive(Debug, Default)]
pub struct HeartbeatBuffer {
    /// A re-list in progress (between `Init` and `InitDone`).
    listing: std::collections::BTreeMap<String, super::view::Heartbeat>,
    /// A completed re-list not applied yet; the pending updates below came after it.
    relisted: Option<std::collections::BTreeMap<String, super::view::Heartbeat>>,
    pending: std::collections::BTreeMap<String, Option<super::view::Heartbeat>>,
}

impl HeartbeatBuffer {
    /// Takes one watch event in (no lock held).
    pub fn absorb(&mut self, event: Event<k8s_openapi::api::coordination::v1::Lease>) {
        use super::view::Heartbeat;
        match event {
            Event::Init => self.listing.clear(),
            Event::InitApply(lease) => self.listing.extend(Heartbeat::of(&lease)),
            Event::InitDone => {
                self.relisted = Some(std::mem::take(&mut self.listing));
                self.pending.clear();
            }
            Event::Apply(lease) => {
                if let Some(name) = lease.metadata.name.clone() {
                    let heartbeat = Heartbeat::of(&lease).map(|(_, h)| h);
                    self.pending.insert(name, heartbeat);
                }
            }
            Event::Delete(lease) => {
                if let Some(name) = lease.metadata.name.clone() {
                    self.pending.insert(name, None);
                }
            }
        }
    }

    /// Whether a flush would change anything.
    pub fn is_empty(&self) -> bool {
        self.relisted.is_none() && self.pending.is_empty()
    }

    /// Applies what was received, in order, to the view (one write).
    pub fn flush(&mut self, view: &mut super::view::View) {
        if let Some(listed) = self.relisted.take() {
            view.replace_heartbeats(listed);
        }
        for (node, heartbeat) in std::mem::take(&mut self.pending) {
            view.apply_heartbeat(&node, heartbeat);
        }
    }
}

/// Keeps the view's node heartbeats (the kubelets' Leases in `kube-node-lease`) current,
/// coalesced ([`HEARTBEAT_FLUSH`], [`HeartbeatBuffer`]), and once a second re-judges which
/// nodes went silent ([`super::view::View::mark_silent`]): a heartbeat that stops sends no
/// event, so only the clock can tell.
pub async fn node_heartbeats(client: kube::Client, view: SharedView) {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut buffer = HeartbeatBuffer::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush = tokio::time::interval(HEARTBEAT_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = stream.try_next() => next,
            _ = flush.tick() => {
                if !buffer.is_empty() {
                    let Ok(mut v) = view.write() else {
                        tracing::error!("node heartbeat watch: the view lock is poisoned; stopping");
                        return;
                    };
                    buffer.flush(&mut v);
                }
                continue;
            }
            _ = tick.tick() => {
                let now = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
                let Ok(mut v) = view.write() else {
                    tracing::error!("node heartbeat watch: the view lock is poisoned; stopping");
                    return;
                };
                // Judged on every heartbeat received so far.
                buffer.flush(&mut v);
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
            Ok(Some(event)) => buffer.absorb(event),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::view::{Heartbeat, View};
    use k8s_openapi::api::coordination::v1::Lease;

    fn lease(node: &str, renewed: &str) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"renewTime": renewed, "leaseDurationSeconds": 40}
        }))
        .expect("a valid Lease")
    }

    fn renewed_ms(view: &View, node: &str) -> Option<u64> {
        view.heartbeat(node).map(|h: Heartbeat| h.renewed_ms)
    }

    #[test]
    fn lease_events_reach_the_view_at_the_flush_with_the_latest_heartbeat_per_node() {
        let mut view = View::default();
        let mut buffer = HeartbeatBuffer::default();
        assert!(buffer.is_empty());
        buffer.absorb(Event::Apply(lease("n1", "1970-01-01T00:00:01.000000Z")));
        buffer.absorb(Event::Apply(lease("n1", "1970-01-01T00:00:02.000000Z")));
        buffer.absorb(Event::Apply(lease("n2", "1970-01-01T00:00:03.000000Z")));
        // Nothing is written before the flush.
        assert_eq!(renewed_ms(&view, "n1"), None);
        assert!(!buffer.is_empty());
        buffer.flush(&mut view);
        assert!(buffer.is_empty());
        assert_eq!(renewed_ms(&view, "n1"), Some(2_000));
        assert_eq!(renewed_ms(&view, "n2"), Some(3_000));
        // A deleted Lease removes the heartbeat at the next flush.
        buffer.absorb(Event::Delete(lease("n2", "1970-01-01T00:00:03.000000Z")));
        buffer.flush(&mut view);
        assert_eq!(renewed_ms(&view, "n2"), None);
        assert_eq!(renewed_ms(&view, "n1"), Some(2_000));
    }

    #[test]
    fn a_relist_replaces_the_heartbeats_and_updates_after_it_still_apply() {
        let mut view = View::default();
        let mut buffer = HeartbeatBuffer::default();
        buffer.absorb(Event::Apply(lease("gone", "1970-01-01T00:00:01.000000Z")));
        buffer.flush(&mut view);
        // An update received before the re-list is superseded by it.
        buffer.absorb(Event::Apply(lease("n1", "1970-01-01T00:00:05.000000Z")));
        buffer.absorb(Event::Init);
        buffer.absorb(Event::InitApply(lease("n1", "1970-01-01T00:00:02.000000Z")));
        buffer.absorb(Event::InitDone);
        buffer.absorb(Event::Apply(lease("n3", "1970-01-01T00:00:04.000000Z")));
        buffer.flush(&mut view);
        assert_eq!(renewed_ms(&view, "gone"), None);
        assert_eq!(renewed_ms(&view, "n1"), Some(2_000));
        assert_eq!(renewed_ms(&view, "n3"), Some(4_000));
    }
}
