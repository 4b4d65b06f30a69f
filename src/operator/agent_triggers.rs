//! What wakes the agent controller besides an agent's own changes and its pods: a peer that
//! appears or goes away, and a strategy of the namespace that is created, changed or deleted.
//!
//! Each reconciled agent otherwise waits [`resync_after`] (5 to 7.5 minutes) for its next
//! reconcile. A 10 s resync used to stand in for these triggers; with 1,000 agents that was 100
//! reconciles (200 apiserver lists) a second doing nothing. Resyncs must stay well below what the
//! controller's 16 workers get through, or they queue ahead of agents waiting for their first
//! reconcile: with a 60-90 s resync, 10,000 agents needed ~130 reconciles/s against ~46/s done
//! (`make bench-scale AGENTS=10000`), and 2,665 agents applied last never got a pod.
//!
//! Triggers are sent without waiting into a bounded channel ([`TRIGGER_BUFFER`]); when it is full
//! a trigger is dropped (counted in `mom_errors_total{kind="agent_trigger_dropped"}`) and the
//! periodic resync covers it, so a burst never grows memory or blocks the watch feeding the cache.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;

use super::crd::GeometricAgent;
use super::crd::strategy::OrchestrationStrategy;
use super::metrics::{ErrorLabels, Metrics};

/// Triggers waiting to be taken by the controller at most.
pub const TRIGGER_BUFFER: usize = 4096;

/// The periodic resync of a reconciled agent: 300 s plus a spread of up to 150 s derived from
/// `namespace/name` by a hash fixed by its definition ([`crate::stable_hash::mixed`]), so agents
/// applied together do not come due together and the twin (`crate::twin`, which hashes its
/// agents' names the same way) replays the same spread on every build and machine.
/// What changes an agent's decision arrives as an event (the agent, its pods, a peer, a
/// strategy); the resync catches the rest (pool pressure, node positions, tenants).
pub fn resync_after(namespace: &str, name: &str) -> Duration {
    let h = crate::stable_hash::mixed(namespace.bytes().chain(std::iter::once(b'/')).chain(name.bytes()));
    Duration::from_millis(300_000 + h % 150_000)
}

/// Sends agent references to the controller (`Controller::reconcile_on`).
#[derive(Clone)]
pub struct Triggers {
    tx: mpsc::Sender<ObjectRef<GeometricAgent>>,
    agents: Store<GeometricAgent>,
    metrics: Arc<Metrics>,
}

impl Triggers {
    pub fn new(
        agents: Store<GeometricAgent>,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Receiver<ObjectRef<GeometricAgent>>) {
        let (tx, rx) = mpsc::channel(TRIGGER_BUFFER);
        (Self { tx, agents, metrics }, rx)
    }

    fn send_all(&self, refs: Vec<ObjectRef<GeometricAgent>>) {
        let mut tx = self.tx.clone();
        for r in refs {
            if tx.try_send(r).is_err() {
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        kind: "agent_trigger_dropped".into(),
                    })
                    .inc();
            }
        }
    }

    /// The cached agents of `namespace` that name `peer` among their peers.
    fn referencing(&self, namespace: &str, peer: &str) -> Vec<ObjectRef<GeometricAgent>> {
        referencing(&self.agents.state(), namespace, peer)
    }

    /// The cached agents of `namespace`.
    fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<GeometricAgent>> {
        let mut refs: Vec<_> = self
            .agents
            .state()
            .iter()
            .filter(|a| a.namespace().as_deref() == Some(namespace))
            .map(|a| ObjectRef::from_obj(a.as_ref()))
            .collect();
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs
    }
}

/// Agents of `namespace` in `agents` that name `peer` among their peers, sorted by name.
pub fn referencing(agents: &[Arc<GeometricAgent>], namespace: &str, peer: &str) -> Vec<ObjectRef<GeometricAgent>> {
    let mut refs: Vec<_> = agents
        .iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .filter(|a| a.spec.peers.iter().any(|p| p.agent == peer))
        .map(|a| ObjectRef::from_obj(a.as_ref()))
        .collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs
}

/// Watches the agent events feeding the controller's cache (after the cache applied them): an
/// agent seen for the first time, or deleted, wakes the agents that name it as a peer. Updates of
/// a known agent (status, scale) wake nobody else. The initial list wakes nobody: every agent is
/// reconciled then anyway.
pub struct PeerWatch {
    triggers: Triggers,
    state: Mutex<PeerState>,
}

#[derive(Default)]
struct PeerState {
    seen: HashSet<(String, String)>,
    listed: HashSet<(String, String)>,
}

impl PeerWatch {
    pub fn new(triggers: Triggers) -> Self {
        Self {
            triggers,
            state: Mutex::new(PeerState::default()),
        }
    }

    pub fn observe<E>(&self, event: &Result<Event<GeometricAgent>, E>) {
        let Ok(event) = event else { return };
        let key = |a: &GeometricAgent| (a.namespace().unwrap_or_default(), a.name_any());
        let woken = {
            let Ok(mut s) = self.state.lock() else { return };
            match event {
                Event::Init => {
                    s.listed.clear();
                    None
                }
                Event::InitApply(a) => {
                    let k = key(a);
                    s.listed.insert(k);
                    None
                }
                Event::InitDone => {
                    s.seen = std::mem::take(&mut s.listed);
                    None
                }
                Event::Apply(a) => {
                    let k = key(a);
                    s.seen.insert(k.clone()).then_some(k)
                }
                Event::Delete(a) => {
                    let k = key(a);
                    s.seen.remove(&k);
                    Some(k)
                }
            }
        };
        if let Some((ns, name)) = woken {
            self.triggers.send_all(self.triggers.referencing(&ns, &name));
        }
    }
}

/// Strategy events → the agents of the strategy's namespace, when a strategy is created, its
/// spec changes (a new `metadata.generation`) or it is deleted. Status patches wake nobody.
pub struct StrategyWatch {
    triggers: Triggers,
    generations: Mutex<StrategyState>,
}

#[derive(Default)]
struct StrategyState {
    known: HashMap<(String, String), Option<i64>>,
    listed: HashMap<(String, String), Option<i64>>,
}

impl StrategyWatch {
    pub fn new(triggers: Triggers) -> Self {
        Self {
            triggers,
            generations: Mutex::new(StrategyState::default()),
        }
    }

    pub fn observe(&self, event: &Event<OrchestrationStrategy>) {
        let key = |s: &OrchestrationStrategy| (s.namespace().unwrap_or_default(), s.name_any());
        let woken = {
            let Ok(mut st) = self.generations.lock() else { return };
            match event {
                Event::Init => {
                    st.listed.clear();
                    None
                }
                Event::InitApply(s) => {
                    let k = key(s);
                    st.listed.insert(k, s.metadata.generation);
                    None
                }
                Event::InitDone => {
                    // A relist after a gap: wake the namespaces whose strategies changed meanwhile.
                    let listed = std::mem::take(&mut st.listed);
                    let mut changed: Vec<String> = listed
                        .iter()
                        .filter(|(k, g)| st.known.get(*k) != Some(*g))
                        .map(|(k, _)| k.0.clone())
                        .chain(
                            st.known
                                .keys()
                                .filter(|k| !listed.contains_key(*k))
                                .map(|k| k.0.clone()),
                        )
                        .collect();
                    let first = st.known.is_empty();
                    st.known = listed;
                    changed.sort();
                    changed.dedup();
                    (!first).then_some(changed)
                }
                Event::Apply(s) => {
                    let k = key(s);
                    let ns = k.0.clone();
                    (st.known.insert(k, s.metadata.generation) != Some(s.metadata.generation)).then(|| vec![ns])
                }
                Event::Delete(s) => {
                    let k = key(s);
                    let ns = k.0.clone();
                    st.known.remove(&k);
                    Some(vec![ns])
                }
            }
        };
        for ns in woken.unwrap_or_default() {
            self.triggers.send_all(self.triggers.in_namespace(&ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(ns: &str, name: &str, peers: &[&str]) -> Arc<GeometricAgent> {
        let peers: Vec<_> = peers.iter().map(|p| serde_json::json!({"agent": p})).collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"workloadType": "batch", "template": {}, "peers": peers},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_agents_of_the_same_namespace_that_name_the_peer_are_woken() {
        let agents = vec![
            agent("a", "x", &["p"]),
            agent("a", "y", &["q"]),
            agent("b", "z", &["p"]),
            agent("a", "w", &["q", "p"]),
        ];
        let names: Vec<String> = referencing(&agents, "a", "p").into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["w", "x"]);
        assert!(referencing(&agents, "a", "nobody").is_empty());
    }

    fn strategy(ns: &str, name: &str, generation: i64) -> OrchestrationStrategy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "OrchestrationStrategy",
            "metadata": {"name": name, "namespace": ns, "generation": generation},
            "spec": {"scaling": {"method": "manual", "minReplicas": 1, "maxReplicas": 2}},
        }))
        .unwrap()
    }

    /// A cache holding `agents` (applied as a watch would), triggers reading it, and their receiver.
    fn cache(agents: &[Arc<GeometricAgent>]) -> (Triggers, mpsc::Receiver<ObjectRef<GeometricAgent>>) {
        let (reader, mut writer) = kube::runtime::reflector::store::<GeometricAgent>();
        for a in agents {
            writer.apply_watcher_event(&Event::Apply(a.as_ref().clone()));
        }
        Triggers::new(reader, Arc::new(Metrics::default()))
    }

    fn drain(rx: &mut mpsc::Receiver<ObjectRef<GeometricAgent>>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            out.push(r.name);
        }
        out
    }

    #[test]
    fn a_new_or_deleted_peer_wakes_its_referrers_and_an_update_of_a_known_one_wakes_nobody() {
        let x = agent("a", "x", &["p"]);
        let p = agent("a", "p", &[]);
        let (triggers, mut rx) = cache(&[x.clone(), p.clone()]);
        let watch = PeerWatch::new(triggers);
        let ok = |e: Event<GeometricAgent>| Ok::<_, ()>(e);
        // The initial list wakes nobody.
        watch.observe(&ok(Event::Init));
        watch.observe(&ok(Event::InitApply(x.as_ref().clone())));
        watch.observe(&ok(Event::InitDone));
        assert!(drain(&mut rx).is_empty());
        // p appears: x is woken (positive control for the checks below).
        watch.observe(&ok(Event::Apply(p.as_ref().clone())));
        assert_eq!(drain(&mut rx), vec!["x"]);
        // p changes (a status patch): nobody.
        watch.observe(&ok(Event::Apply(p.as_ref().clone())));
        assert!(drain(&mut rx).is_empty());
        // x itself changes: x names p, but nobody names x.
        watch.observe(&ok(Event::Apply(x.as_ref().clone())));
        assert!(drain(&mut rx).is_empty());
        // p is deleted: x again.
        watch.observe(&ok(Event::Delete(p.as_ref().clone())));
        assert_eq!(drain(&mut rx), vec!["x"]);
    }

    #[test]
    fn a_strategy_wakes_its_namespace_when_created_changed_or_deleted_but_not_on_a_status_patch() {
        let (triggers, mut rx) = cache(&[agent("a", "x", &[]), agent("a", "y", &[]), agent("b", "z", &[])]);
        let watch = StrategyWatch::new(triggers);
        watch.observe(&Event::Init);
        watch.observe(&Event::InitApply(strategy("a", "s", 1)));
        watch.observe(&Event::InitDone);
        assert!(drain(&mut rx).is_empty(), "the first list wakes nobody");
        watch.observe(&Event::Apply(strategy("a", "s", 1)));
        assert!(drain(&mut rx).is_empty(), "same generation: a status patch");
        watch.observe(&Event::Apply(strategy("a", "s", 2)));
        assert_eq!(drain(&mut rx), vec!["x", "y"]);
        watch.observe(&Event::Apply(strategy("b", "t", 1)));
        assert_eq!(drain(&mut rx), vec!["z"]);
        watch.observe(&Event::Delete(strategy("a", "s", 2)));
        assert_eq!(drain(&mut rx), vec!["x", "y"]);
        // A relist after a gap in which b's strategy changed.
        watch.observe(&Event::Init);
        watch.observe(&Event::InitApply(strategy("b", "t", 3)));
        watch.observe(&Event::InitDone);
        assert_eq!(drain(&mut rx), vec!["z"]);
    }

    #[test]
    fn a_full_buffer_drops_triggers_instead_of_blocking() {
        let agents: Vec<_> = (0..TRIGGER_BUFFER + 10)
            .map(|i| agent("a", &format!("x{i}"), &["p"]))
            .collect();
        let (triggers, mut rx) = cache(&agents);
        let watch = PeerWatch::new(triggers);
        watch.observe(&Ok::<_, ()>(Event::Apply(agent("a", "p", &[]).as_ref().clone())));
        let woken = drain(&mut rx).len();
        assert!((TRIGGER_BUFFER..TRIGGER_BUFFER + 10).contains(&woken), "{woken}");
    }

    #[test]
    fn the_resync_is_five_to_seven_and_a_half_minutes_and_the_same_for_the_same_agent() {
        let d = resync_after("shop", "a1");
        assert!(d >= Duration::from_secs(300) && d < Duration::from_secs(450), "{d:?}");
        assert_eq!(d, resync_after("shop", "a1"));
        // Fixed by its definition, on every build and machine (std's hasher made no such
        // promise), and the twin's spread for an agent named `shop/a1` at its default 300 s.
        assert_eq!(d, Duration::from_millis(448_275));
        assert_eq!(
            d.as_millis() as u64,
            300_000 + crate::stable_hash::mixed("shop/a1".bytes()) % 150_000
        );
        let spread: HashSet<Duration> = (0..100).map(|i| resync_after("shop", &format!("a{i}"))).collect();
        assert!(
            spread.len() > 50,
            "agents applied together must not all come due together"
        );
    }
}
