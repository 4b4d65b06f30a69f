//! The descheduler loop (leader only): every tick, observe → snapshot → plan (the core,
//! `crate::descheduler::plan`) → per move: reserve room on the destination in the extender's
//! placement bookkeeping → write a receipt → evict through the Eviction API (so
//! PodDisruptionBudgets hold) → Event and metrics.
//!
//! Inputs: Nodes and Pods listed fresh from the apiserver each tick, GeometricAgents from the
//! agent controller's cache (a tick before its first full list is skipped), node positions and
//! agent policies from the shared placement view. Output: evictions (or, with
//! `--deschedule-dry-run`, only the plan printed as one JSON line on stdout and logged).
//!
//! Protected pods are never evicted: DaemonSet pods, mirror/static pods, system-critical
//! priority classes, pods with local storage (emptyDir, hostPath) and pods annotated
//! `mom.hypersync.io/deschedule: "false"`. A pod's cool-off starts at its creation time (a
//! replacement of an evicted pod is a new pod), so a replica is not moved again within the
//! cool-off; that time is known to the second only, so it is rounded up ([`cool_off_start`])
//! and a pod is never evicted before it is really `coolOffSeconds` old. An eviction refused with 429 (a PDB allows no disruption) is counted, reported
//! as an Event and backed off exponentially (1, 2, 4 … 32 ticks) — no retry storm.
//!
//! Real usage: without a metrics API in the snapshot, a pod's usage is taken as its requests.

mod snapshot;

pub use snapshot::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::{Context, LeaderLoop, LoopError};
use super::receipts::Intent;
use crate::descheduler::{self as core, Move, Plan, Settings, Snapshot};
use crate::receipts::{Action as ReceiptAction, SubjectRef};

#[derive(Debug, thiserror::Error)]
pub enum DeschedulerError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("planning: {0}")]
    Plan(#[from] core::DeschedulerError),
    #[error("the receipt for evicting {pod} could not be written, so it was not evicted: {source}")]
    Receipt {
        pod: String,
        #[source]
        source: super::receipts::Withheld,
    },
}

impl LoopError for DeschedulerError {
    fn metric_label(&self) -> &'static str {
        match self {
            DeschedulerError::Api(_) => "api",
            DeschedulerError::Plan(_) => "plan",
            DeschedulerError::Receipt { .. } => "receipt",
        }
    }
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct DeschedulerConfig {
    /// `--deschedule-tick-seconds` (overrides `spec.tickSeconds`, see [`super::ticks`]).
    pub tick: super::ticks::Tick,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    pub settings: Settings,
}

/// The descheduler loop: its settings, the eviction client and its memory between ticks; run
/// by [`super::context::run_leader_loop`].
pub struct Descheduler {
    /// A client for the Eviction API *without* kube's default retry layer: that layer retries
    /// 429 up to 15 times with exponential back-off (up to 1000 s), which turns a
    /// PDB-blocked eviction into a minutes-long retry storm. See [`client_without_retries`].
    pub evict_client: kube::Client,
    pub config: DeschedulerConfig,
    pub state: LoopState,
}

impl LeaderLoop for Descheduler {
    const NAME: &'static str = "descheduler";
    type Error = DeschedulerError;

    fn period(&self, ctx: &Context) -> super::ticks::Period {
        self.config.tick.resolve(ctx.configured_tick_seconds())
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), DeschedulerError> {
        tick(ctx, self).await
    }
}

/// A client like `config`'s but without the default retry of 429/503/504, so that a
/// PodDisruptionBudget refusal comes back at once and the loop's own back-off decides.
pub fn client_without_retries(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    kube::Client::try_from(config)
}

/// What became of one eviction request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictOutcome {
    Evicted,
    /// 429: a PodDisruptionBudget allows no disruption now.
    BlockedByPdb(String),
    /// 404: the pod is already gone.
    Gone,
    Failed(String),
}

pub fn classify<T>(result: &Result<T, kube::Error>) -> EvictOutcome {
    match result {
        Ok(_) => EvictOutcome::Evicted,
        Err(kube::Error::Api(s)) if s.code == 429 => EvictOutcome::BlockedByPdb(s.message.clone()),
        Err(kube::Error::Api(s)) if s.code == 404 => EvictOutcome::Gone,
        Err(e) => EvictOutcome::Failed(e.to_string()),
    }
}

/// State kept across ticks (leader's memory; lost on failover, which only resets back-offs).
/// Each agent's target of the last tick is kept in the view ([`View::set_steered_target`]).
#[derive(Debug, Default)]
pub struct LoopState {
    /// Pod key → (ticks still to wait, the wait after the next refusal).
    pub backoff: BTreeMap<String, (u32, u32)>,
}

impl LoopState {
    /// Pods whose eviction is backing off this tick; counts the tick down.
    pub fn blocked_this_tick(&mut self) -> BTreeSet<String> {
        let blocked = self
            .backoff
            .iter()
            .filter(|(_, (wait, _))| *wait > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for (wait, _) in self.backoff.values_mut() {
            *wait = wait.saturating_sub(1);
        }
        blocked
    }

    /// Records a refused eviction: skip the next n ticks (1, 2, 4 … 32, doubling on each
    /// refusal). Returns n.
    pub fn refused(&mut self, pod: &str) -> u32 {
        let (_, next) = self.backoff.get(pod).copied().unwrap_or((0, 1));
        self.backoff.insert(pod.to_string(), (next, (next * 2).min(32)));
        next
    }
}

/// Pods per list request of a tick.
const POD_PAGE: u32 = 500;

/// One tick: list, snapshot, then [`execute`].
async fn tick(ctx: &Context, job: &mut Descheduler) -> Result<(), DeschedulerError> {
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    // A page at a time, keeping only each pod's facts: never every Pod object of the cluster.
    let mut pods: Vec<PodFacts> = Vec::new();
    crate::operator::store::for_each_page(&Api::<Pod>::all(ctx.client.clone()), POD_PAGE, |p: Pod| {
        pods.extend(PodFacts::of(&p));
    })
    .await?;
    // The agent controller's cache; before its first full list the tick is skipped.
    let Some(agents) = ctx.agents.sorted() else {
        return Ok(());
    };
    let blocked = job.state.blocked_this_tick();
    let now = k8s_openapi::jiff::Timestamp::now().as_second().max(0) as u64;
    let snapshot = build_snapshot(&nodes, &pods, &agents, &ctx.view.read(), &blocked, now);
    if snapshot.nodes.is_empty() {
        return Ok(());
    }
    execute(ctx, job, &snapshot).await.map(|_| ())
}

/// Plans on `snapshot` and acts: in dry-run prints the plan (one JSON line) and changes
/// nothing; otherwise reserve → receipt → evict for each move. Returns the plan.
pub async fn execute(ctx: &Context, job: &mut Descheduler, snapshot: &Snapshot) -> Result<Plan, DeschedulerError> {
    let settings = &job.config.settings;
    let started = Instant::now();
    let plan = {
        let (snapshot, settings) = (snapshot.clone(), settings.clone());
        Context::off_runtime(move || core::plan(&snapshot, &settings)).await?
    };
    ctx.metrics
        .descheduler_plan_duration
        .observe(started.elapsed().as_secs_f64());
    if let Ok(mut view) = ctx.view.write() {
        for t in &plan.targets {
            view.set_steered_target(&t.agent, t.target.clone());
        }
    }
    if job.config.dry_run {
        let line = serde_json::json!({"descheduleDryRun": true, "plan": &plan});
        println!("{line}");
        tracing::info!(
            moves = plan.moves.len(),
            candidates = plan.candidates,
            "descheduler dry run: nothing evicted"
        );
        return Ok(plan);
    }
    if plan.moves.is_empty() {
        return Ok(plan);
    }
    let inputs = core::plan_inputs(snapshot, settings);
    let inline = core::inputs_fit_inline(&inputs);
    for m in &plan.moves {
        evict_one(ctx, job, &plan, m, &inputs, inline).await?;
    }
    Ok(plan)
}

#[tracing::instrument(skip_all, fields(pod = %format!("{}/{}", m.namespace, m.pod)))]
async fn evict_one(
    ctx: &Context,
    job: &mut Descheduler,
    plan: &Plan,
    m: &Move,
    inputs: &serde_json::Value,
    inline: bool,
) -> Result<(), DeschedulerError> {
    let key = format!("{}/{}", m.namespace, m.pod);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &m.namespace);
    let Some(pod) = pods.get_opt(&m.pod).await? else {
        return Ok(());
    };
    // Reserve: hold the room on the destination in the extender's bookkeeping, so the pods
    // scheduled meanwhile (including this one's replacement) see it taken.
    if let (Ok(mut view), Some(rec)) = (ctx.view.write(), super::view::pod_record(&pod)) {
        let mut rec = rec;
        rec.node = None;
        view.assume(&format!("reservation/{key}"), rec, &m.to, true);
    }
    // Receipt before the eviction; at full_audit no receipt means no eviction.
    let subject = SubjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: m.namespace.clone(),
        name: m.pod.clone(),
        uid: pod.uid(),
    };
    let intent = Intent {
        action: ReceiptAction::Evict,
        subject,
        decision: core::eviction_record(m, plan, inline.then_some(inputs)),
        inputs: inputs.clone(),
        regarding: Some(pod.object_ref(&())),
        withheld: format!("{key} was not evicted from {}", m.from),
    };
    if let Err(source) = ctx.record_before(intent).await {
        return Err(DeschedulerError::Receipt { pod: key, source });
    }
    let result = Api::<Pod>::namespaced(job.evict_client.clone(), &m.namespace)
        .evict(&m.pod, &EvictParams::default())
        .await;
    let reference = pod.object_ref(&());
    match classify(&result) {
        EvictOutcome::Evicted => {
            job.state.backoff.remove(&key);
            ctx.metrics
                .descheduler_evictions
                .get_or_create(&super::metrics::StrategyLabels {
                    strategy: m.strategy.as_str().into(),
                })
                .inc();
            publish(
                ctx,
                &reference,
                EventType::Normal,
                "Descheduled",
                format!(
                    "evicted from {} for {} (room reserved on {}): {}; gain {:.1}, cost {:.1}",
                    m.from,
                    m.strategy.as_str(),
                    m.to,
                    m.reason,
                    m.gain,
                    m.cost
                ),
            )
            .await;
        }
        EvictOutcome::BlockedByPdb(message) => {
            ctx.metrics.descheduler_blocked.inc();
            let next = job.state.refused(&key);
            publish(
                ctx,
                &reference,
                EventType::Warning,
                "EvictionBlocked",
                format!("a PodDisruptionBudget blocks the eviction ({message}); retrying in {next} tick(s)"),
            )
            .await;
        }
        EvictOutcome::Gone => {}
        EvictOutcome::Failed(message) => {
            tracing::warn!(pod = %key, error = %message, "eviction failed");
        }
    }
    Ok(())
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    ctx.publish(reference, type_, "Deschedule", reason, note).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{ANOMALOUS_LABEL, OPT_OUT_ANNOTATION, UNHEALTHY_LABEL};
    use crate::operator::view::View;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodSpec, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn mk_pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Table: a change to a plain pod → the protection reason it must get.
    #[test]
    fn protected_pods_are_recognised_with_their_reason() {
        type Change = fn(&mut Pod);
        let cases: [(Change, Option<&str>); 6] = [
            (|_| {}, None),
            (
                |p| {
                    p.metadata.annotations = Some([(OPT_OUT_ANNOTATION.to_string(), "false".to_string())].into());
                },
                Some("opted out"),
            ),
            (
                |p| {
                    p.metadata.owner_references = Some(vec![OwnerReference {
                        kind: "DaemonSet".into(),
                        name: "ds".into(),
                        ..Default::default()
                    }]);
                },
                Some("DaemonSet"),
            ),
            (
                |p| {
                    p.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
                },
                Some("system-critical"),
            ),
            (
                |p| {
                    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                        name: "scratch".into(),
                        empty_dir: Some(Default::default()),
                        ..Default::default()
                    }]);
                },
                Some("local storage"),
            ),
            (
                |p| {
                    p.metadata.annotations =
                        Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
                },
                Some("static"),
            ),
        ];
        for (change, want) in cases {
            let mut p = mk_pod("p");
            change(&mut p);
            match (protection(&p), want) {
                (None, None) => {}
                (Some(got), Some(w)) => assert!(got.contains(w), "{got} vs {w}"),
                (got, w) => panic!("got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn pod_facts_keep_what_the_snapshot_reads_and_leave_out_unbound_deleting_and_finished_pods() {
        let mut p = mk_pod("p");
        p.metadata.labels = Some([(crate::labels::AGENT_LABEL.to_string(), "web".to_string())].into());
        p.metadata.annotations = Some([(OPT_OUT_ANNOTATION.to_string(), "false".to_string())].into());
        let facts = PodFacts::of(&p).expect("a bound running pod is considered");
        assert_eq!(
            (facts.namespace.as_str(), facts.name.as_str(), facts.node.as_str()),
            ("default", "p", "n1")
        );
        assert_eq!(facts.agent_label.as_deref(), Some("web"));
        assert!(facts.protection.is_some_and(|r| r.contains("opted out")));
        let mut unbound = mk_pod("u");
        unbound.spec.as_mut().unwrap().node_name = None;
        let mut deleting = mk_pod("d");
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let mut done = mk_pod("f");
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        for p in [unbound, deleting, done] {
            assert_eq!(PodFacts::of(&p), None, "{:?}", p.metadata.name);
        }
    }

    #[test]
    fn a_node_is_unhealthy_by_label_or_when_not_ready_and_anomalous_by_label() {
        let mut n = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(node_flags(&n), (false, false));
        n.metadata.labels = Some([(ANOMALOUS_LABEL.to_string(), "true".to_string())].into());
        assert_eq!(node_flags(&n), (false, true));
        n.metadata.labels = Some([(UNHEALTHY_LABEL.to_string(), "true".to_string())].into());
        assert_eq!(node_flags(&n), (true, false));
        n.metadata.labels = None;
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(node_flags(&n), (true, false));
    }

    #[test]
    fn a_429_is_a_pdb_block_and_a_404_means_the_pod_is_gone() {
        let api = |code: u16| -> Result<(), kube::Error> {
            Err(kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                ..Default::default()
            })))
        };
        assert!(matches!(classify(&api(429)), EvictOutcome::BlockedByPdb(m) if m.contains("disruption budget")));
        assert_eq!(classify(&api(404)), EvictOutcome::Gone);
        assert!(matches!(classify(&api(500)), EvictOutcome::Failed(_)));
        assert_eq!(classify(&Ok::<(), kube::Error>(())), EvictOutcome::Evicted);
    }

    #[test]
    fn a_blocked_eviction_waits_one_then_two_then_four_ticks() {
        let mut st = LoopState::default();
        let mut attempts = Vec::new();
        for tick in 1..=12 {
            let blocked = st.blocked_this_tick();
            if !blocked.contains("ns/p") {
                attempts.push(tick);
                st.refused("ns/p");
            }
        }
        assert_eq!(attempts, [1, 3, 6, 11]);
    }

    /// Table: the agent's strategy policy → the label rules its snapshot agent carries.
    #[test]
    fn the_snapshot_carries_required_locality_and_preferred_regions_of_the_agents_strategy() {
        use crate::descheduler::LabelRules;
        use crate::operator::crd::GeometricAgent;
        use crate::operator::view::AgentKey;
        use crate::placement::{AgentPolicy, LocalityPolicy, NodeSelector};
        let agent: GeometricAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"workloadType": "batch", "replicas": 1, "template": {"spec": {"containers": []}}}
        }))
        .unwrap();
        let ssd = NodeSelector {
            match_labels: [("disk".to_string(), "ssd".to_string())].into(),
            match_expressions: Vec::new(),
        };
        let locality = |required| LocalityPolicy {
            data_nodes: ssd.clone(),
            required,
            data_node_positions: vec![vec![0.1, 0.2]],
        };
        let regions = AgentPolicy {
            preferred_regions: vec!["r1".into(), "r0".into()],
            region_label: Some(crate::labels::REGION_LABEL.into()),
            ..AgentPolicy::default()
        };
        let cases: [(&str, Option<AgentPolicy>, LabelRules); 4] = [
            ("no policy", None, LabelRules::default()),
            (
                "required locality",
                Some(AgentPolicy {
                    locality: Some(locality(true)),
                    ..AgentPolicy::default()
                }),
                LabelRules {
                    required_data_nodes: Some(ssd.clone()),
                    ..LabelRules::default()
                },
            ),
            (
                "preferred locality is only a score: no rule",
                Some(AgentPolicy {
                    locality: Some(locality(false)),
                    ..AgentPolicy::default()
                }),
                LabelRules::default(),
            ),
            (
                "preferred regions",
                Some(regions.clone()),
                LabelRules {
                    preferred_regions: regions.preferred_regions.clone(),
                    region_label: regions.region_label.clone(),
                    ..LabelRules::default()
                },
            ),
        ];
        for (what, policy, want) in cases {
            let mut view = View::default();
            if let Some(policy) = policy {
                view.set_policy(AgentKey::new("default", "a"), policy, None);
            }
            let s = build_snapshot(
                &[],
                &[],
                &[std::sync::Arc::new(agent.clone())],
                &view,
                &BTreeSet::new(),
                100,
            );
            assert_eq!(s.agents[0].label_rules, want, "{what}");
        }
    }

    /// `creationTimestamp` is whole seconds cut down: the pod may be up to 1 s younger than
    /// it says, so its cool-off starts 1 s after the stamp, and with a 5 s cool-off a pod stamped
    /// at 10 s is movable from `now` = 16 s on, not 15 s (it may have been born at 10.9 s).
    #[test]
    fn a_pods_cool_off_starts_at_the_latest_instant_its_whole_second_creation_stamp_allows() {
        let mut p = mk_pod("p");
        assert_eq!(cool_off_start(&p), None);
        let stamp: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(stamp));
        let start = cool_off_start(&p).unwrap();
        assert_eq!(start, stamp.as_second() as u64 + 1);
        let cool_off = 5;
        let movable = |now: u64| now.saturating_sub(start) >= cool_off;
        let t = stamp.as_second() as u64;
        assert!(!movable(t + 5), "a pod born at t + 0.9 would be 4.1 s old");
        assert!(movable(t + 6));
    }

    #[test]
    fn the_snapshot_skips_nodes_without_a_position_and_pods_off_known_nodes() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let view = View::default();
        let pods: Vec<PodFacts> = PodFacts::of(&mk_pod("p")).into_iter().collect();
        assert_eq!(pods.len(), 1, "positive control: the pod is bound to n1");
        let s = build_snapshot(&[node], &pods, &[], &view, &BTreeSet::new(), 100);
        // No embedding yet: no node has a position, so nothing can be planned.
        assert!(s.nodes.is_empty() && s.pods.is_empty());
        assert!(core::plan(&s, &Settings::default()).unwrap().moves.is_empty());
    }
}
