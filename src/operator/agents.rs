//! The GeometricAgent controller: owns an agent's pods directly (like a ReplicaSet), keeps its
//! placement policy in the shared view for the extender, and reports status.
//!
//! Pipeline per reconcile: observe (the agent, its strategies by a fresh list, its sibling
//! agents from the controller's cache, its pods by a fresh quorum list — never a possibly stale
//! cache, so a replica is never created twice) →
//! validate (pure, `crd::validate`) → decide (pure: the target point from `placement`, the
//! replicas to add or remove, farthest from the target first) → act (leader only: create or
//! delete pods, Events) → record (status, conditions).

use kube::runtime::reflector::ObjectRef;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::agent_triggers::{PeerWatch, StrategyWatch, Triggers, resync_after};
use super::context::{Context, MANAGER};
use super::crd::agent::ReceiptRef;
use super::crd::conditions::{self, ConditionStatus, DesiredCondition};
use super::crd::strategy::{LocalityMode, OrchestrationStrategy, Quarantine, Redundancy, RollbackMode};
use super::crd::validate::{self, AgentFacts, StrategyFacts};
use super::crd::{GeometricAgent, GeometricAgentStatus};
use super::metrics::ControllerLabels;
use super::receipts::{Intent, agent_subject};
use super::view::{AgentKey, SharedView, SpreadRule};
use crate::labels::{AGENT_LABEL, ISOLATION_LABEL, ROLE_LABEL, TEMPLATE_HASH_LABEL, TENANT_LABEL};
use crate::placement::failover::{self, Mode as FailoverMode};
use crate::placement::rollout::{self, Budget, RolloutPod, RolloutSettings};
use crate::placement::{self, AgentPolicy, TargetInputs};

/// Name of the second scheduler that calls MOM's extender.
pub const SCHEDULER_NAME: &str = "mom-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("spec.template of {agent} cannot be turned into a pod: {reason}")]
    Template { agent: String, reason: String },
    #[error(transparent)]
    Failover(#[from] super::failover::FailoverError),
    #[error("the receipt for {action} on {agent} could not be written, so the action was not taken: {source}")]
    Receipt {
        agent: String,
        action: &'static str,
        #[source]
        source: super::receipts::Withheld,
    },
}

impl AgentError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            AgentError::Api(_) => "api",
            AgentError::Template { .. } => "template",
            AgentError::Receipt { .. } => "receipt",
            AgentError::Failover(super::failover::FailoverError::Api(_)) => "api",
            AgentError::Failover(super::failover::FailoverError::Receipt { .. }) => "receipt",
        }
    }
}

/// Runs the controller until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    // Agents are watched untyped and decoded one by one (`lenient`): one undecodable agent
    // must not stop the controller for every other.
    let untyped: Api<kube::api::DynamicObject> = Api::all_with(ctx.client.clone(), &super::lenient::agent_resource());
    // The controller feeds the context's agent cache, which every loop reads.
    let Some(writer) = ctx.take_agent_writer() else {
        tracing::error!("the agent cache is already fed by another controller; not starting a second one");
        return;
    };
    let reader = ctx.agents.store();
    let (triggers, woken) = Triggers::new(reader.clone(), ctx.metrics.clone());
    let peers = PeerWatch::new(triggers.clone());
    let agents = kube::runtime::reflector(
        writer,
        super::lenient::decoded_events(
            watcher::watcher(untyped, watcher::Config::default()).default_backoff(),
            ctx.bad_agents.clone(),
        ),
    )
    // After the cache applied the event: a new or deleted agent wakes the agents peering with it.
    .inspect(move |event| peers.observe(event))
    .applied_objects();
    // A strategy created, changed or deleted wakes the agents of its namespace.
    let strategy_watch = StrategyWatch::new(triggers);
    let strategy_events = watcher::watcher(
        Api::<OrchestrationStrategy>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|event| std::future::ready(event.ok()))
    .for_each(move |event| {
        strategy_watch.observe(&event);
        std::future::ready(())
    });
    let strategy_task = tokio::spawn(strategy_events);
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    // On taking the Lease, reconcile every agent at once instead of waiting for its requeue.
    let became_leader = became_leader(ctx.leading.clone());
    // A re-embedding in another dimension (or basis) makes every stored target meaningless.
    let rebased = rebased(ctx.view.clone());
    // An agent whose anomaly flags changed may now be selected by another strategy.
    let flagged = flag_changes(ctx.clone());
    let reconciler = Arc::new(Reconciler {
        ctx,
        agents: reader.clone(),
        retries: super::retry::Backoff::default(),
        auto_rolled: std::sync::Mutex::default(),
    });
    let controller = Controller::for_stream(agents, reader)
        .owns(pods, watcher::Config::default().labels(AGENT_LABEL))
        // Bounded: a burst of agents (1,000 applied at once) is worked through RECONCILE_CONCURRENCY
        // at a time instead of opening as many apiserver requests and holding their answers at once.
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .reconcile_all_on(futures::stream::select(became_leader, rebased))
        .reconcile_on(futures::stream::select(woken, flagged))
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, reconciler)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "agent reconcile failed");
            }
        });
    controller.await;
    strategy_task.abort();
}

/// One item each time `leading` turns from false to true (not when a renew republishes true).
fn became_leader(leading: watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send + 'static {
    let was = *leading.borrow();
    futures::stream::unfold((leading, was), |(mut rx, mut was)| async move {
        loop {
            rx.changed().await.ok()?;
            let now = *rx.borrow_and_update();
            let rose = now && !was;
            was = now;
            if rose {
                return Some(((), (rx, was)));
            }
        }
    })
}

/// One item each time the view's node embedding changes basis (`View::basis`: another
/// dimension) or a node's health changes (`View::failed_epoch`: failover acts on it), checked
/// every second.
fn rebased(view: super::view::SharedView) -> impl futures::Stream<Item = ()> + Send + 'static {
    let basis = |view: &super::view::SharedView| {
        let v = view.read();
        (v.basis(), v.failed_epoch())
    };
    let was = basis(&view);
    futures::stream::unfold((view, was), move |(view, mut was)| async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = basis(&view);
            if now != was {
                was = now;
                return Some(((), (view, was)));
            }
        }
    })
}

/// The agents whose anomaly flags changed ([`Context::anomaly_flags`], raised or cleared by the
/// anomaly loop) or whose root cause changed, checked every second: their strategy triggers
/// (`triggers.anomalyFlags`) may select another strategy now, and their status shows both.
fn flag_changes(ctx: Arc<Context>) -> impl futures::Stream<Item = ObjectRef<GeometricAgent>> + Send + 'static {
    type Flags = BTreeMap<AgentKey, (BTreeSet<String>, Option<super::crd::momconfig::RootCauseStatus>)>;
    let flags = |ctx: &Context| -> Flags {
        ctx.anomaly
            .lock()
            .map(|s| {
                let keys: BTreeSet<&AgentKey> = s.agent_flags.keys().chain(s.agent_root_causes.keys()).collect();
                keys.into_iter()
                    .map(|k| {
                        let flags = s.agent_flags.get(k).cloned().unwrap_or_default();
                        (k.clone(), (flags, s.agent_root_causes.get(k).cloned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let was = flags(&ctx);
    let pending: std::collections::VecDeque<ObjectRef<GeometricAgent>> = Default::default();
    futures::stream::unfold((ctx, was, pending), move |(ctx, mut was, mut pending)| async move {
        loop {
            if let Some(agent) = pending.pop_front() {
                return Some((agent, (ctx, was, pending)));
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = flags(&ctx);
            let changed: BTreeSet<&AgentKey> = was
                .keys()
                .chain(now.keys())
                .filter(|k| was.get(*k) != now.get(*k))
                .collect();
            pending.extend(
                changed
                    .into_iter()
                    .map(|k| ObjectRef::new(&k.name).within(&k.namespace)),
            );
            was = now;
        }
    })
}

/// How soon an agent the budget holds back looks again.
const BUDGET_RECHECK: Duration = Duration::from_secs(5);

/// How many agents are reconciled at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// What a reconcile reads besides the apiserver: the shared context and the controller's own
/// cache of agents. Peers are looked up in that cache (O(peers) per reconcile), not listed:
/// listing every agent of the namespace in every reconcile was O(agents²) in time and, with
/// reconciles running unbounded in parallel, in memory.
struct Reconciler {
    ctx: Arc<Context>,
    agents: kube::runtime::reflector::Store<GeometricAgent>,
    /// Failures in a row per agent (`namespace/name`) for the back-off on an overloaded apiserver.
    retries: super::retry::Backoff,
    /// (agent uid, raise receipt) pairs an automatic rollback acted on in this process.
    auto_rolled: std::sync::Mutex<BTreeSet<(String, u64)>>,
}

fn error_policy(agent: Arc<GeometricAgent>, err: &AgentError, reconciler: Arc<Reconciler>) -> Action {
    reconciler
        .ctx
        .metrics
        .reconcile_errors
        .get_or_create(&ControllerLabels {
            controller: "geometricagent".into(),
        })
        .inc();
    tracing::warn!(agent = %agent.name_any(), error = %err, kind = err.metric_label(), "agent reconcile failed");
    let key = format!("{}/{}", agent.namespace().unwrap_or_default(), agent.name_any());
    match err {
        // An unusable template waits for the user to change the agent.
        AgentError::Template { .. } => Action::requeue(Duration::from_secs(300)),
        // An apiserver that is overloaded or unreachable gets more room with every failure in a row.
        AgentError::Api(e) | AgentError::Failover(super::failover::FailoverError::Api(e)) if overloaded(e) => {
            Action::requeue(reconciler.retries.failed(&key))
        }
        AgentError::Api(_) | AgentError::Receipt { .. } | AgentError::Failover(_) => {
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// An API error that says the apiserver is overloaded or unreachable (429, 5xx, a timeout or a
/// failed connection) rather than that this request was wrong (other 4xx).
fn overloaded(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::SerdeError(_) | kube::Error::BuildRequest(_) | kube::Error::InferConfig(_) => false,
        _ => true,
    }
}

/// The redundancy rule of a strategy as the extender and the replica count apply it (`None`:
/// no spares, no spread rule).
pub fn spread_rule(redundancy: Redundancy) -> Option<SpreadRule> {
    match redundancy {
        Redundancy::None => None,
        Redundancy::NPlus1 => Some(SpreadRule::DomainLoss(1)),
        Redundancy::NPlus2 => Some(SpreadRule::DomainLoss(2)),
        Redundancy::Quorum => Some(SpreadRule::Quorum),
    }
}

/// A Kubernetes `LabelSelector` as the core's [`placement::NodeSelector`]. An operator other
/// than `In`, `NotIn`, `Exists`, `DoesNotExist` (the CRD schema rejects them at admission) is
/// read as `In` with no values, which matches no node: an unreadable selector never widens
/// where pods may go.
pub fn node_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> placement::NodeSelector {
    placement::NodeSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default().into_iter().collect(),
        match_expressions: selector
            .match_expressions
            .iter()
            .flatten()
            .map(|e| match placement::SelectorOperator::parse(&e.operator) {
                Some(operator) => placement::SelectorRequirement {
                    key: e.key.clone(),
                    operator,
                    values: e.values.clone().unwrap_or_default(),
                },
                None => placement::SelectorRequirement {
                    key: e.key.clone(),
                    operator: placement::SelectorOperator::In,
                    values: Vec::new(),
                },
            })
            .collect(),
    }
}

/// Resolves the agent's placement policy (pure over the view) and stores it for the extender.
///
/// `home_key` names the agent's peer group ([`group_home_key`]) for the ties of a new home.
pub fn resolve_policy(
    agent: &GeometricAgent,
    strategy: Option<&OrchestrationStrategy>,
    view: &SharedView,
    home_key: Option<String>,
) -> AgentPolicy {
    let ns = agent.namespace().unwrap_or_default();
    let key = AgentKey::new(ns.clone(), agent.name_any());
    let Ok(mut v) = view.write() else {
        return AgentPolicy::default();
    };
    let kappa = v.settings.kappa;
    let mut inputs = TargetInputs::default();
    let placement_spec = strategy.map(|s| s.spec.placement.clone()).unwrap_or_default();
    let peers = placement::followed_agents(
        agent.spec.peers.iter().map(|p| (p.agent.clone(), p.weight)),
        placement_spec
            .geometric_affinity
            .as_ref()
            .map_or(&[][..], |a| &a.near_agents),
    );
    if let Some(aff) = &placement_spec.geometric_affinity {
        if !aff.coordinates.is_empty() {
            inputs.explicit = Some(aff.coordinates.clone());
        }
        if let Some(sel) = &aff.near_nodes {
            let sel = node_selector(sel);
            inputs.near_nodes = v
                .node_names()
                .filter(|n| v.node_labels(n).is_some_and(|l| sel.matches(l)))
                .filter_map(|n| v.node_position(n).cloned())
                .collect();
        }
    }
    inputs.peers = peers
        .iter()
        .map(|(peer, w)| (*w, v.agent_replica_positions(&AgentKey::new(ns.clone(), peer.clone()))))
        .collect();
    inputs.dimension = v.dimension().unwrap_or(0);
    // The region label is the root of the topology tree: the first MomConfig topologyKeys entry.
    let region_label = v.settings.topology_keys.first().cloned();
    if let Some(label) = &region_label {
        // Rule 3 of the target: the nodes of the first listed region that has any.
        inputs.preferred_region_nodes = placement_spec
            .preferred_regions
            .iter()
            .map(|region| {
                v.node_names()
                    .filter(|n| v.node_labels(n).and_then(|l| l.get(label)) == Some(region))
                    .filter_map(|n| v.node_position(n).cloned())
                    .collect::<Vec<_>>()
            })
            .find(|nodes| !nodes.is_empty())
            .unwrap_or_default();
    }
    inputs.own_replicas = v.agent_replica_positions(&key);
    // The previous target only means something in the embedding it was computed in; after a
    // restart the status position is used once (the embedding is rebuilt the same way).
    inputs.previous = v.previous_target(&key).cloned().or_else(|| {
        (v.generation() <= 1)
            .then(|| {
                agent
                    .status
                    .as_ref()
                    .and_then(|s| s.position.as_ref())
                    .map(|p| p.coordinates.clone())
            })
            .flatten()
    });
    inputs.free_capacity = v.free_capacity();
    inputs.home_key = home_key;
    let target = placement::agent_target(&inputs, kappa).unwrap_or_default();
    let policy = AgentPolicy {
        target,
        avoid_nodes: placement_spec.avoid_nodes.iter().cloned().collect(),
        max_distance: placement_spec.geometric_affinity.as_ref().and_then(|a| a.max_distance),
        replicas: agent.spec.replicas.max(0) as u32,
        strategy: strategy.map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())),
        locality: placement_spec.locality.as_ref().map(|l| placement::LocalityPolicy {
            data_nodes: node_selector(&l.data_nodes),
            required: l.mode == LocalityMode::Required,
            // Filled per request by the view (`policy_for`), from the nodes of that moment.
            data_node_positions: Vec::new(),
        }),
        preferred_regions: placement_spec.preferred_regions.clone(),
        // Filled per request by the view (`policy_for`) from where the actives run.
        active_regions: strategy
            .filter(|s| s.spec.resilience.failover == super::crd::strategy::Failover::ActivePassive)
            .zip(region_label.clone())
            .map(|(_, label)| placement::ActiveRegions {
                label,
                regions: BTreeSet::new(),
            }),
        region_label: region_label.filter(|_| !placement_spec.preferred_regions.is_empty()),
        ..AgentPolicy::default()
    };
    let spread = strategy.and_then(|s| spread_rule(s.spec.resilience.redundancy));
    v.set_policy(key, policy.clone(), spread);
    policy
}

/// The agent as stored (a quorum read), with its whole template; `None` once it is deleted. An
/// agent that no longer decodes is a template error naming the field.
async fn stored_agent(ctx: &Context, ns: &str, name: &str) -> Result<Option<GeometricAgent>, AgentError> {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &super::lenient::agent_resource());
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(None);
    };
    super::lenient::decode(&obj)
        .map(Some)
        .map_err(|u| AgentError::Template {
            agent: name.to_string(),
            reason: u.error,
        })
}

/// Records the agent's spec as an `agent.change` receipt (action `configure`) when the
/// controller first acts on a generation (`status.observedGeneration` differs) whose spec, apart
/// from `replicas`, is not the one the receipt chain records last for the agent: `mom rollback`
/// puts an agent back to such a spec. A change of `replicas` alone (the scaler, the HPA, `kubectl
/// scale`) is not recorded here, also not by a new leader: scaling has its own receipts. The
/// spec is the stored object's, as written (the cache keeps only a summary of the template).
async fn record_spec_change(agent: &GeometricAgent, ctx: &Context) -> Result<(), AgentError> {
    use crate::decisions::config_change::{agent_change_record, agent_change_subject};
    let (Some(uid), Some(generation)) = (agent.uid(), agent.metadata.generation) else {
        return Ok(());
    };
    let observed = agent.status.as_ref().and_then(|s| s.observed_generation);
    if observed == Some(generation) {
        return Ok(());
    }
    use crate::operator::crd::momconfig::VerificationLevel;
    let level = ctx.recording().level;
    if level == VerificationLevel::None {
        // Nothing is recorded: no chain to compare with.
        return Ok(());
    }
    let (ns, name) = (agent.namespace().unwrap_or_default(), agent.name_any());
    let receipt_error = |source| AgentError::Receipt {
        agent: name.clone(),
        action: "configure",
        source,
    };
    let what = || format!("{} spec generation {generation}", AgentKey::of(agent));
    let Some(last) = chain_record(ctx, &uid, level, agent, what, "it").await? else {
        return Ok(());
    };
    if last.as_ref().is_some_and(|(g, _)| *g >= generation) {
        return Ok(());
    }
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &super::lenient::agent_resource());
    let Some(stored) = api.get_opt(&name).await? else {
        return Ok(());
    };
    let (Some(stored_generation), Some(spec)) = (stored.metadata.generation, stored.data.get("spec")) else {
        return Ok(());
    };
    if stored.metadata.uid.as_deref() != Some(uid.as_str()) || stored_generation < generation {
        return Ok(());
    }
    let digest = crate::receipts::inputs_digest(&agent_change_subject(spec)).unwrap_or_default();
    if last.is_some_and(|(_, d)| d == digest) {
        ctx.writer.same_spec_at(&uid, stored_generation);
        return Ok(());
    }
    let intent = Intent {
        action: crate::receipts::Action::Configure,
        subject: agent_subject(agent),
        decision: agent_change_record(&uid, stored_generation, observed, spec),
        inputs: spec.clone(),
        regarding: Some(agent.object_ref(&())),
        withheld: format!(
            "{} spec generation {stored_generation} was not recorded, so it is not acted on yet",
            AgentKey::of(agent)
        ),
    };
    ctx.record_before(intent).await.map_err(receipt_error)?;
    // Also when sampling left it out: this spec is decided on, and the next replicas-only
    // generation compares with it instead of drawing again.
    ctx.writer.decided_spec(&uid, stored_generation, digest);
    Ok(())
}

/// What the receipt chain records of the spec of `uid` ([`super::receipts::ReceiptWriter::recorded_spec`]).
/// As for every receipt: at `full_audit` nothing is done without it (an error naming `what`
/// and who is `not acted on`); below, a chain that cannot be read is logged and `Ok(None)`
/// says to act anyway.
async fn chain_record(
    ctx: &Context,
    uid: &str,
    level: crate::operator::crd::momconfig::VerificationLevel,
    agent: &GeometricAgent,
    what: impl Fn() -> String,
    not_acted_on: &str,
) -> Result<Option<Option<(i64, String)>>, AgentError> {
    match ctx.writer.recorded_spec(uid).await {
        Ok(last) => Ok(Some(last)),
        Err(e) if level == crate::operator::crd::momconfig::VerificationLevel::FullAudit => Err(AgentError::Receipt {
            agent: agent.name_any(),
            action: "configure",
            source: super::receipts::Withheld {
                message: format!(
                    "{} cannot be compared with the receipt chain, so {not_acted_on} is not acted on yet",
                    what()
                ),
                source: Box::new(e),
            },
        }),
        Err(e) => {
            tracing::warn!(subject = %what(), error = %e, "receipt chain not readable (level below full_audit: acting anyway)");
            Ok(None)
        }
    }
}

/// Records the spec of the agent's strategy as a `strategy.change` receipt (action
/// `configure`) when an agent it governs is reconciled under a generation of it whose spec is
/// not the one the receipt chain records last for it: automatic rollback and `mom rollback
/// strategy/NAME` put a strategy back to such a spec. As for agents, at `full_audit` the agent
/// is not acted on under a strategy spec that could not be recorded. Recordings are one at a
/// time (the writer's lock), so agents of one strategy reconciled at once record it once and
/// none acts before the receipt is written. `Ok(false)`: the strategy as stored is not the one
/// listed (changed, re-created or deleted since); the caller requeues to act on the fresh one.
async fn record_strategy_change(
    strategy: &OrchestrationStrategy,
    agent: &GeometricAgent,
    ctx: &Context,
) -> Result<bool, AgentError> {
    use crate::decisions::config_change::strategy_change_record;
    use crate::operator::crd::momconfig::VerificationLevel;
    let (Some(uid), Some(generation)) = (strategy.uid(), strategy.metadata.generation) else {
        return Ok(true);
    };
    let level = ctx.recording().level;
    if level == VerificationLevel::None {
        return Ok(true);
    }
    // Every reconcile of every agent under the strategy comes here: the common case (this
    // generation recorded) takes no lock.
    if ctx.writer.known_spec(&uid).is_some_and(|(g, _)| g >= generation) {
        return Ok(true);
    }
    let _one_at_a_time = ctx.writer.spec_recording().await;
    let (ns, name) = (strategy.namespace().unwrap_or_default(), strategy.name_any());
    let receipt_error = |source| AgentError::Receipt {
        agent: agent.name_any(),
        action: "configure",
        source,
    };
    let what = || format!("strategy {ns}/{name} generation {generation}");
    let subject = AgentKey::of(agent).to_string();
    let Some(last) = chain_record(ctx, &uid, level, agent, what, &subject).await? else {
        return Ok(true);
    };
    if last.as_ref().is_some_and(|(g, _)| *g >= generation) {
        return Ok(true);
    }
    // The stored object's spec, as written (the typed one has its defaults filled in).
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &ns,
        &super::rollback::resource(crate::decisions::rollback::SpecKind::Strategy),
    );
    let stored = match api.get_opt(&name).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(false),
        Err(e) if level == VerificationLevel::FullAudit => return Err(e.into()),
        Err(e) => {
            tracing::warn!(strategy = %name, error = %e, "strategy not readable to record its spec (level below full_audit: acting anyway)");
            return Ok(true);
        }
    };
    let (Some(stored_generation), Some(spec)) = (stored.metadata.generation, stored.data.get("spec")) else {
        return Ok(true);
    };
    if stored.metadata.uid.as_deref() != Some(uid.as_str()) {
        return Ok(false);
    }
    let current = stored_generation == generation;
    if stored_generation < generation {
        // Older than the list (a lagging read): the next reconcile looks again.
        return Ok(false);
    }
    let digest = crate::receipts::inputs_digest(spec).unwrap_or_default();
    if last.as_ref().is_some_and(|(_, d)| *d == digest) {
        ctx.writer.same_spec_at(&uid, stored_generation);
        return Ok(current);
    }
    let intent = Intent {
        action: crate::receipts::Action::Configure,
        subject: crate::receipts::SubjectRef {
            api_version: OrchestrationStrategy::api_version(&()).into_owned(),
            kind: OrchestrationStrategy::kind(&()).into_owned(),
            namespace: ns.clone(),
            name: name.clone(),
            uid: Some(uid.clone()),
        },
        decision: strategy_change_record(&uid, stored_generation, last.map(|(g, _)| g), spec),
        inputs: spec.clone(),
        regarding: Some(strategy.object_ref(&())),
        withheld: format!(
            "strategy {ns}/{name} generation {stored_generation} was not recorded, so {} is not acted on yet",
            AgentKey::of(agent)
        ),
    };
    ctx.record_before(intent).await.map_err(receipt_error)?;
    // Also when sampling left it out: this spec is decided on.
    ctx.writer.decided_spec(&uid, stored_generation, digest);
    Ok(current)
}

/// The pod for one new replica, from the agent's template; `tenant` (the namespace's) is shown
/// on it as a label, for people and tools: MOM itself never reads a tenant from a pod.
pub fn build_pod(agent: &GeometricAgent, tenant: &str) -> Result<Pod, AgentError> {
    let name = agent.name_any();
    let template = &agent.spec.template;
    let mut spec = *template.spec.clone().ok_or_else(|| AgentError::Template {
        agent: name.clone(),
        reason: "spec.template.spec is missing".into(),
    })?;
    if spec.containers.is_empty() {
        return Err(AgentError::Template {
            agent: name,
            reason: "spec.template.spec.containers is empty".into(),
        });
    }
    spec.scheduler_name = Some(SCHEDULER_NAME.to_string());
    if agent.spec.batch.is_some()
        && let Some(pools) = agent.status.as_ref().and_then(|s| s.batch.as_ref()).map(|b| &b.pools)
        && !pools.is_empty()
    {
        pin_to_pools(&mut spec, pools.keys());
    }
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(AGENT_LABEL.into(), name.clone());
    labels.insert(TENANT_LABEL.into(), tenant.to_string());
    labels.insert(TEMPLATE_HASH_LABEL.into(), super::crd::agent::template_hash(template));
    if agent.spec.isolation == super::crd::agent::Isolation::Strict {
        labels.insert(ISOLATION_LABEL.into(), "strict".into());
    }
    let owner = OwnerReference {
        api_version: GeometricAgent::api_version(&()).into_owned(),
        kind: GeometricAgent::kind(&()).into_owned(),
        name: name.clone(),
        uid: agent.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Ok(Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: agent.namespace(),
            labels: Some(labels),
            annotations: template.metadata.as_ref().and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Requires a node of one of `pools` (the `mom.hypersync.io/pool` label; `default`: nodes
/// without it) on top of the template's own required node affinity: each of its terms (or one
/// empty term) is ANDed with the pool condition, one term per form of it (kube-scheduler ORs
/// terms).
pub fn pin_to_pools<'p>(spec: &mut k8s_openapi::api::core::v1::PodSpec, pools: impl Iterator<Item = &'p String>) {
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
    let (defaults, named): (Vec<&String>, Vec<&String>) = pools.partition(|p| p.as_str() == crate::batch::DEFAULT_POOL);
    let mut conditions = Vec::new();
    if !named.is_empty() {
        conditions.push(NodeSelectorRequirement {
            key: crate::labels::POOL_LABEL.into(),
            operator: "In".into(),
            values: Some(named.into_iter().cloned().collect()),
        });
    }
    if !defaults.is_empty() {
        conditions.push(NodeSelectorRequirement {
            key: crate::labels::POOL_LABEL.into(),
            operator: "DoesNotExist".into(),
            values: None,
        });
    }
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let required = node
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    let existing = if required.node_selector_terms.is_empty() {
        vec![NodeSelectorTerm::default()]
    } else {
        std::mem::take(&mut required.node_selector_terms)
    };
    required.node_selector_terms = existing
        .iter()
        .flat_map(|term| {
            conditions.iter().map(move |c| {
                let mut t = term.clone();
                t.match_expressions.get_or_insert_with(Vec::new).push(c.clone());
                t
            })
        })
        .collect();
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tracing::instrument(skip_all, fields(agent = %AgentKey::of(&agent)))]
async fn reconcile(agent: Arc<GeometricAgent>, reconciler: Arc<Reconciler>) -> Result<Action, AgentError> {
    let ctx = &reconciler.ctx;
    let started = Instant::now();
    let labels = ControllerLabels {
        controller: "geometricagent".into(),
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let result = reconcile_inner(&agent, &reconciler).await;
    if result.is_ok() {
        let key = format!("{}/{}", agent.namespace().unwrap_or_default(), agent.name_any());
        reconciler.retries.succeeded(&key);
    }
    tracing::debug!(agent = %agent.name_any(), ms = started.elapsed().as_millis() as u64, "agent reconcile ended");
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(agent: &GeometricAgent, reconciler: &Reconciler) -> Result<Action, AgentError> {
    let (ctx, agents) = (reconciler.ctx.as_ref(), &reconciler.agents);
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let client = ctx.client.clone();

    // Observe. The namespace's strategies by a fresh list: a strategy applied just before the
    // agent (one `kubectl apply -f dir/`) must shape its first pods, and a watch cache may not
    // have it yet.
    let strategies: Vec<OrchestrationStrategy> = Api::<OrchestrationStrategy>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items;
    // The peers that exist, from the controller's cache once it has listed every agent (a peer
    // created or deleted later wakes this agent: `agent_triggers`).
    if agents.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let peer_agents: Vec<Arc<GeometricAgent>> = agent
        .spec
        .peers
        .iter()
        .filter_map(|p| agents.get(&ObjectRef::new(&p.agent).within(&ns)))
        .collect();
    let siblings: BTreeSet<String> = peer_agents.iter().map(|a| a.name_any()).collect();

    // Validate.
    let facts = AgentFacts::from_agent(agent, ctx.anomaly_flags(&AgentKey::of(agent)));
    let strategy_facts: Vec<StrategyFacts> = strategies.iter().map(StrategyFacts::from_strategy).collect();
    // The pressure of the agent's node pool, as the auction loop last measured it.
    let pressure = ctx
        .view
        .read()
        .pool_pressure(&super::pools::pool_of(agent))
        .map(super::pools::trigger_pressure);
    let mut check = validate::check_agent(&facts, &siblings, &strategy_facts, pressure);
    // The tenant is the namespace's (`tenancy`); an agent naming another is not acted on.
    let Some((tenant, source)) = ctx.view.read().known_tenant(&ns) else {
        // The namespace watch has not shown this namespace yet.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let tenant_problem = validate::check_tenant(&ns, &name, agent.spec.tenant.as_deref(), &tenant, source);
    let tenant_refused = tenant_problem.is_some();
    check.problems.splice(0..0, tenant_problem);
    let strategy = check
        .strategy
        .as_ref()
        .and_then(|s| strategies.iter().find(|x| &x.name_any() == s));
    // The strategy's explicit coordinates must fit the ball nodes are embedded in; the agent
    // reports it too, since its target silently moving elsewhere is what the user sees.
    let ball = {
        let v = ctx.view.read();
        v.dimension().map(|dimension| validate::Ball {
            dimension,
            curvature: v.settings.kappa,
        })
    };
    let coordinate_problems = strategy
        .and_then(|s| strategy_facts.iter().find(|f| f.name == s.name_any()))
        .map(|facts| validate::check_coordinates(facts, ball))
        .unwrap_or_default();
    check.problems.extend(coordinate_problems.iter().cloned());

    // Decide the placement policy (every replica: the extender needs it).
    // Only a new home needs the group's name (rule 6 of the target: no previous target).
    let has_target = ctx.view.read().previous_target(&AgentKey::of(agent)).is_some();
    let home_key = (!has_target)
        .then(|| group_home_key(agent, |name| agents.get(&ObjectRef::new(name).within(&ns))))
        .flatten();
    let policy = resolve_policy(agent, strategy, &ctx.view, home_key);
    if !ctx.is_leader() {
        // The next term reloads the chain from what is persisted; taking the Lease reconciles
        // every agent at once (`reconcile_all_on`).
        ctx.writer.reset().await;
        return Ok(Action::requeue(resync_after(&ns, &name)));
    }
    record_spec_change(agent, ctx).await?;
    if let Some(s) = strategy
        && !record_strategy_change(s, agent, ctx).await?
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // A flag raised soon after a change of the agent's or its strategy's spec, under a strategy
    // with automatic rollback: the last spec that ran without a flag comes back
    // (`decisions::auto_rollback`).
    if let Some((s, rollback)) = strategy
        .map(|s| (s, &s.spec.resilience.rollback))
        .filter(|(_, r)| r.mode == RollbackMode::Auto)
        && !tenant_refused
        && !ctx.anomaly_flags(&AgentKey::of(agent)).is_empty()
    {
        match super::rollback::auto_rollback(ctx, agent, s, rollback.within_minutes, &reconciler.auto_rolled).await {
            Ok(Some(rolled)) if rolled.changed => {
                tracing::info!(agent = %name, kind = rolled.kind, receipt = rolled.receipt, "spec rolled back automatically");
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(agent = %name, error = %e, "automatic rollback failed"),
        }
    }
    // Quarantine (strategy `spec.resilience.quarantine`): looked at under `isolate`, and while
    // the agent still reports itself quarantined (to lift it when the mode changed).
    let quarantine_mode = strategy.map_or(Quarantine::None, |s| s.spec.resilience.quarantine);
    let reported_quarantined = agent
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::QUARANTINED))
        .is_some_and(|c| c.status == "True");
    let quarantined = if !tenant_refused && (quarantine_mode == Quarantine::Isolate || reported_quarantined) {
        let flags = ctx.anomaly_flags(&AgentKey::of(agent));
        match super::quarantine::reconcile(ctx, agent, quarantine_mode, &flags).await {
            Ok(isolated) => isolated,
            Err(e) => {
                tracing::warn!(agent = %name, error = %e, "quarantine not changed");
                reported_quarantined
            }
        }
    } else {
        false
    };

    // Act (leader only).
    if let Some(problem) = check.problems.first().filter(|_| tenant_refused) {
        let reference = agent.object_ref(&());
        ctx.publish(
            &reference,
            EventType::Warning,
            "Reconcile",
            conditions::reason::TENANT_MISMATCH,
            problem.to_string(),
        )
        .await;
    }
    let announced = agent
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    for problem in coordinate_problems
        .iter()
        .filter(|p| !announced.contains(&p.to_string()))
    {
        // Once: the Ready condition written below carries the message from now on.
        ctx.publish(
            &agent.object_ref(&()),
            EventType::Warning,
            "Validate",
            problem.reason(),
            problem.to_string(),
        )
        .await;
    }
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&format!("{AGENT_LABEL}={name}")))
        .await?
        .items;
    let uid = agent.uid();
    let owned = |p: &&Pod| p.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref());
    let mut active: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(owned)
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    // The auction loop's quota (status.allocation) caps what the agent wants while capacity is scarce.
    let wanted = agent.spec.replicas.clamp(0, super::crd::MAX_REPLICAS) as usize;
    let quota = agent
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .map(|a| a.quota.max(0) as usize);
    // An agent naming another tenant keeps what it has: nothing is created, deleted or recorded.
    // The strategy's redundancy rule adds spares beyond the demand (`placement::redundancy`);
    // the extender caps each failure domain with the same plan (`View::policy_for`).
    let spread = strategy
        .and_then(|s| spread_rule(s.spec.resilience.redundancy))
        .map(|rule| ctx.view.read().spread_plan(rule, wanted as u32));
    let spares = spread.map_or(0, |p| p.spares(wanted as u32) as usize);
    // Failover with standbys: the spares are standbys (at least one), which do not serve.
    let mode = strategy.map_or(FailoverMode::ActiveActive, |s| {
        super::failover::mode_of(s.spec.resilience.failover)
    });
    let spares = if mode.has_standbys() { spares.max(1) } else { spares };
    // The failover planner's standby (`failover_plan`): one replica more while a failure domain
    // the agent has replicas in is expected to fail; the extender places it outside that domain.
    let planned_standby = ctx.view.read().standby_for(&AgentKey::of(agent)).map(str::to_string);
    let spares = spares + usize::from(planned_standby.is_some());
    let with_spares = (wanted + spares).min(super::crd::MAX_REPLICAS as usize);
    let desired = if tenant_refused {
        active.len()
    } else if quarantined {
        // No new replicas while isolated; removals still happen.
        quota.map_or(with_spares, |q| with_spares.min(q)).min(active.len())
    } else {
        quota.map_or(with_spares, |q| with_spares.min(q))
    };
    // MomConfig `spec.budget` caps a scale-up at what it affords; the gate is held until the
    // pods are created, so no other agent spends the same money meanwhile.
    let (desired, _budget_gate) = super::budget::cap_scale_up(ctx, agent, active.len(), desired)
        .await
        .map_err(|e| match e {
            super::budget::BudgetError::Api(e) => AgentError::Api(e),
            super::budget::BudgetError::Receipt(source) => AgentError::Receipt {
                agent: name.clone(),
                action: "scale",
                source,
            },
        })?;
    let budget_capped = ctx.budget.refusals().iter().any(|(k, _)| *k == AgentKey::of(agent));
    let mut desired = desired;
    let reference = agent.object_ref(&());
    // Failover roles first (`placement::failover`): standbys promoted in place of failed or
    // lost actives, failed actives retired, so the count below replaces what was retired.
    let serving = if mode.has_standbys() {
        desired.min(wanted)
    } else {
        desired
    };
    let mut last_receipt = None;
    let mut roles = BTreeMap::new();
    let mut standbys_deferred = false;
    let mut deadline_recheck: Option<Duration> = None;
    if !tenant_refused {
        let replicas: Vec<failover::Replica> = {
            let v = ctx.view.read();
            active
                .iter()
                .map(|p| failover::Replica {
                    name: p.name_any(),
                    role: super::failover::role_of(p),
                    ready: is_ready(p),
                    failed: p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| v.node_failed(n)),
                    placed: p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some(),
                    // Under a termination notice with a deadline: deleted one grace period
                    // before it at the latest (`placement::termination`).
                    retire_by_ms: p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .and_then(|n| v.termination_deadline(n))
                        .map(|d| {
                            let grace = p
                                .spec
                                .as_ref()
                                .and_then(|s| s.termination_grace_period_seconds)
                                .and_then(|g| u64::try_from(g).ok())
                                .map_or(crate::placement::termination::DEFAULT_GRACE_MS, |g| {
                                    g.saturating_mul(1000)
                                });
                            crate::placement::termination::retire_by(d.at_ms, grace)
                        }),
                })
                .collect()
        };
        let now_ms = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        // The earliest retire-by time still ahead: look again then.
        if let Some(next) = replicas
            .iter()
            .filter(|r| r.failed)
            .filter_map(|r| r.retire_by_ms)
            .filter(|t| *t > now_ms)
            .min()
        {
            deadline_recheck = Some(Duration::from_millis(next - now_ms + 100));
        }
        let plan = failover::plan(mode, &replicas, serving);
        if !plan.is_empty() {
            last_receipt = super::failover::apply(ctx, agent, &pods_api, mode, serving, &plan).await?;
            active.retain(|p| !plan.retire.contains(&p.name_any()));
        }
        roles = super::failover::roles_after(&replicas, &plan);
        // Replicas stranded on failed nodes stop counting, so replacements are made elsewhere
        // now; once those are Ready the stranded ones are retired (`failover::stranded`).
        let left: Vec<failover::Replica> = replicas
            .iter()
            .filter(|r| !plan.retire.contains(&r.name))
            .cloned()
            .collect();
        // Pods of this agent already deleted on failed nodes (Terminating there until the node
        // is back or gone) use up the budget for retiring unready stranded replicas early.
        let left_behind = {
            let v = ctx.view.read();
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some())
                .filter(owned)
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| v.node_failed(n))
                })
                .count()
        };
        let stranded = failover::stranded_at(mode, &left, desired, now_ms, desired.saturating_sub(left_behind));
        if !stranded.retire.is_empty()
            && let Some(receipt) = super::failover::retire_stranded(ctx, agent, &pods_api, desired, &stranded).await?
        {
            last_receipt = Some(receipt);
        }
        // Retired ones are gone. Of the rest, at most `desired` are counted out: should
        // replacements land on failed nodes too (the extender keeps them off), the agent stops
        // at twice its size (plus the unready ones retired within their budget) instead of
        // looping.
        active.retain(|p| !stranded.retire.contains(&p.name_any()));
        for name in &stranded.retire {
            roles.remove(name);
        }
        let counted_out: Vec<&String> = stranded
            .pods
            .iter()
            .filter(|p| !stranded.retire.contains(p))
            .take(desired)
            .collect();
        active.retain(|p| !counted_out.contains(&&p.name_any()));
        for name in counted_out {
            roles.remove(name);
        }
        // active_passive: standbys go where no active runs, so they wait until every active
        // replica is placed (the extender reads the actives' regions from where they are).
        if mode == FailoverMode::ActivePassive && active.len() < desired {
            let actives = roles.values().filter(|r| **r == failover::Role::Active).count();
            let new_actives = (desired - active.len()).min(serving.saturating_sub(actives));
            let unplaced = active.iter().any(|p| {
                roles.get(&p.name_any()) == Some(&failover::Role::Active)
                    && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
            });
            if new_actives > 0 || unplaced {
                standbys_deferred = desired > active.len() + new_actives;
                desired = active.len() + new_actives;
            }
        }
    }
    if active.is_empty() && desired > 0 && waits_for_peers(agent, agents, &ctx.view) {
        // A group of talking agents created together would otherwise each pick its own home;
        // its most tied agent goes first and the others follow their placed peers. The target
        // computed meanwhile is not kept: with no replica placed yet, the next reconcile
        // computes it afresh (rule 5 of the target would otherwise hold a home chosen from a
        // part of the group).
        let key = AgentKey::of(agent);
        if ctx.view.read().previous_target(&key).is_some()
            && let Ok(mut v) = ctx.view.write()
        {
            v.forget_target(&key);
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // While pods of an older template remain, a template edit is rolled out a step at a time
    // (`placement::rollout`, which also converges the count); otherwise the count is scaled.
    let template_hash = agent.spec.template.summary().hash.clone();
    let old_template = |p: &Pod| p.labels().get(TEMPLATE_HASH_LABEL).is_some_and(|h| *h != template_hash);
    let rolling = !tenant_refused && active.iter().any(|p| old_template(p));
    // When to look again: the resync, or sooner when a new pod's progress deadline comes first
    // (a Pending pod changes nothing that would wake this agent).
    let mut requeue = resync_after(&ns, &name);
    if standbys_deferred {
        requeue = requeue.min(Duration::from_secs(2));
    }
    if let Some(at) = deadline_recheck {
        requeue = requeue.min(at);
    }
    if budget_capped {
        // A raised budget or pods removed elsewhere free money without waking this agent.
        requeue = requeue.min(BUDGET_RECHECK);
    }
    let progressing = if rolling {
        let (deleted, condition, recheck, receipt) =
            rollout_step(ctx, agent, &tenant, &active, desired, &policy.target, &template_hash).await?;
        last_receipt = receipt;
        active.retain(|p| !deleted.contains(&p.name_any()));
        if let Some(recheck) = recheck {
            requeue = requeue.min(recheck);
        }
        condition
    } else {
        DesiredCondition::new(
            conditions::PROGRESSING,
            ConditionStatus::True,
            conditions::reason::ROLLOUT_COMPLETE,
            format!("every pod is made from template {template_hash}"),
        )
    };
    // A template that cannot become a pod fails here, before anything is recorded: a receipt
    // announces an action that is about to happen.
    let new_pod = if rolling {
        None
    } else if active.len() < desired {
        // The cache keeps only the template's summary: the pod comes from the stored agent.
        let full;
        let source = if agent.spec.template.is_summary_only() {
            match stored_agent(ctx, &ns, &name).await? {
                Some(stored) if stored.uid() == agent.uid() => {
                    full = stored;
                    &full
                }
                // Deleted or replaced since the cache saw it: its own event follows.
                _ => return Ok(Action::requeue(Duration::from_secs(1))),
            }
        } else {
            agent
        };
        Some(build_pod(source, &tenant)?)
    } else {
        None
    };
    if !rolling && active.len() != desired {
        last_receipt = write_receipt(ctx, agent, &active, desired, spares, &policy.target).await?;
    }
    if let Some(pod) = new_pod {
        let missing = desired - active.len();
        // Each new pod gets its failover role: active while the actives are short of the demand.
        let mut actives = roles.values().filter(|r| **r == failover::Role::Active).count();
        for _ in 0..missing {
            let role = if actives < serving {
                actives += 1;
                failover::Role::Active
            } else {
                failover::Role::Standby
            };
            let mut pod = pod.clone();
            if let Some(value) = role.label() {
                pod.labels_mut().insert(ROLE_LABEL.into(), value.into());
            }
            pods_api
                .create(
                    &PostParams {
                        field_manager: Some(MANAGER.into()),
                        ..Default::default()
                    },
                    &pod,
                )
                .await?;
        }
        ctx.metrics.decision("scale_up");
        publish(
            ctx,
            &reference,
            "ScaledUp",
            format!("created {missing} pod(s): {} → {desired}", active.len()),
        )
        .await;
    } else if !rolling && active.len() > desired {
        let excess = active.len() - desired;
        let (kappa, replicas) = {
            let v = ctx.view.read();
            let replicas: Vec<(String, Option<Vec<f64>>)> = active
                .iter()
                .map(|p| {
                    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                    let pos = node.and_then(|n| v.node_position(&n).cloned());
                    (p.name_any(), pos)
                })
                .collect();
            (v.settings.kappa, replicas)
        };
        let order = placement::scale_down_order(&replicas, &policy.target, kappa);
        let standby = |n: &String| roles.get(n) == Some(&failover::Role::Standby);
        // With standbys: surplus standbys go first, then the others farthest first; actives
        // beyond the demand are never kept in place of the standbys the mode wants.
        let surplus = order
            .iter()
            .filter(|n| standby(n))
            .count()
            .saturating_sub(desired - serving);
        let mut victims: Vec<String> = order
            .iter()
            .filter(|n| standby(n))
            .take(surplus.min(excess))
            .cloned()
            .collect();
        for n in order
            .iter()
            .filter(|n| !standby(n))
            .chain(order.iter().filter(|n| standby(n)))
        {
            if victims.len() >= excess {
                break;
            }
            if !victims.contains(n) {
                victims.push(n.clone());
            }
        }
        for victim in &victims {
            match pods_api.delete(victim, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        active.retain(|p| !victims.contains(&p.name_any()));
        ctx.metrics.decision("scale_down");
        publish(
            ctx,
            &reference,
            "ScaledDown",
            format!("deleted {} (farthest from the target first)", victims.join(", ")),
        )
        .await;
    }

    // Drift (`crate::drift`): pods someone else changed. Always reported; with `onDrift:
    // replace` one is deleted (after its receipt) while every other replica is Ready and the
    // agent is neither scaling nor rolling out; the next pass re-creates it from the template.
    let drifted = drifted_pods(&active);
    if agent.spec.on_drift == super::crd::agent::DriftResponse::Replace
        && !tenant_refused
        && !rolling
        && active.len() == desired
        && let Some((victim, changes)) = drifted.first()
        && active.iter().filter(|p| p.name_any() != *victim).all(|p| is_ready(p))
    {
        let record: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| serde_json::json!({"manager": c.manager, "fields": c.fields}))
            .collect();
        let intent = Intent {
            action: crate::receipts::Action::Terminate,
            subject: agent_subject(agent),
            decision: serde_json::json!({"kind": DRIFT_KIND, "pod": victim, "changes": record}),
            inputs: serde_json::json!({"pod": victim, "changes": record}),
            regarding: Some(reference.clone()),
            withheld: format!("pod {victim}, changed outside MOM, was not replaced"),
        };
        last_receipt = ctx.record_before(intent).await.map_err(|source| AgentError::Receipt {
            agent: name.clone(),
            action: "terminate",
            source,
        })?;
        let uid = active.iter().find(|p| p.name_any() == *victim).and_then(|p| p.uid());
        let params = DeleteParams {
            preconditions: uid.map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods_api.delete(victim, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.metrics.decision("drift_replace");
        publish(
            ctx,
            &reference,
            "DriftReplaced",
            format!(
                "deleted pod {victim} ({}) to re-create it from the template",
                changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
        )
        .await;
    }

    // Record.
    let ready = active.iter().filter(|p| is_ready(p)).count() as i32;
    let updated = active.iter().filter(|p| !old_template(p)).count() as i32;
    let mut desired_conditions = vec![validate::readiness(&check.problems), progressing];
    let unkept = spread.filter(|p| !p.kept);
    desired_conditions.push(if let (true, Some(plan)) = (check.problems.is_empty(), unkept) {
        let (key, count) = {
            let v = ctx.view.read();
            (v.failure_domain_key(), v.failure_domains())
        };
        DesiredCondition::new(
            conditions::DEGRADED,
            ConditionStatus::True,
            conditions::reason::INSUFFICIENT_FAILURE_DOMAINS,
            format!(
                "the redundancy rule of strategy {} cannot be kept with {count} failure domain(s) ({key}): {} pods spread evenly, at most {} per domain",
                check.strategy.as_deref().unwrap_or_default(),
                plan.total,
                plan.max_per_domain
            ),
        )
    } else if check.problems.is_empty() {
        DesiredCondition::new(
            conditions::DEGRADED,
            ConditionStatus::False,
            conditions::reason::RECONCILED,
            "",
        )
    } else {
        let first = &check.problems[0];
        DesiredCondition::new(
            conditions::DEGRADED,
            ConditionStatus::True,
            first.reason(),
            first.to_string(),
        )
    });
    desired_conditions.push(ctx.anomaly_condition(&AgentKey::of(agent)));
    desired_conditions.push(if quarantined {
        DesiredCondition::new(
            conditions::QUARANTINED,
            ConditionStatus::True,
            conditions::reason::ANOMALY_FLAGGED,
            format!(
                "NetworkPolicy {} isolates the agent's pods; no new replicas while a flag is up",
                super::quarantine::policy_name(&name)
            ),
        )
    } else {
        DesiredCondition::new(
            conditions::QUARANTINED,
            ConditionStatus::False,
            conditions::reason::NOT_QUARANTINED,
            "",
        )
    });
    let existing = agent.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let drift = drift_condition(&drifted);
    let reported = conditions::find(&existing, conditions::DRIFTED).map(|c| (c.status.clone(), c.message.clone()));
    if drift.status == ConditionStatus::True && reported != Some(("True".into(), drift.message.clone())) {
        ctx.publish(
            &reference,
            EventType::Warning,
            "Drift",
            conditions::reason::CHANGED_OUTSIDE_MOM,
            drift.message.clone(),
        )
        .await;
    }
    desired_conditions.push(drift);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = GeometricAgentStatus {
        replicas: desired.min(active.len().max(desired)) as i32,
        ready_replicas: ready,
        selector: Some(format!("{AGENT_LABEL}={name}")),
        strategy: check.strategy.clone(),
        position: (!policy.target.is_empty()).then(|| super::crd::agent::Position {
            coordinates: policy.target.clone(),
            nearest: ctx.view.read().nearest_place(&policy.target).ok().map(Into::into),
        }),
        // Owned by the auction loop: left out of this merge patch so a stale copy never overwrites it.
        allocation: None,
        conditions: conditions::merge(&existing, &desired_conditions, agent.metadata.generation, &now),
        observed_generation: agent.metadata.generation,
        // Only when this reconcile wrote one (a merge patch leaves the field alone otherwise): a
        // stale cached value must not overwrite the scaler's newer receipt.
        last_receipt,
        updated_replicas: Some(updated),
        spare_replicas: Some(spares as i32),
        root_cause: ctx.agent_root_cause(&AgentKey::of(agent)),
        // Owned by the scaler (batch agents): left out of this merge patch.
        batch: None,
    };
    let same = agent.status.as_ref().is_some_and(|old| {
        let mut a = old.clone();
        let mut b = status.clone();
        a.allocation = None;
        a.batch = None;
        a.conditions.clear();
        b.conditions.clear();
        if b.last_receipt.is_none() {
            a.last_receipt = None;
        }
        a == b
            && old.conditions.len() == status.conditions.len()
            && old
                .conditions
                .iter()
                .zip(&status.conditions)
                .all(|(x, y)| x.status == y.status && x.reason == y.reason && x.message == y.message)
    });
    if !same {
        let agents: Api<GeometricAgent> = Api::namespaced(client, &ns);
        let mut patch = serde_json::json!({ "status": status });
        if status.strategy.is_none() {
            // A merge patch keeps absent fields: clear a strategy that no longer applies
            // (e.g. one triggered by a resource pressure that has passed).
            patch["status"]["strategy"] = serde_json::Value::Null;
        }
        if status.root_cause.is_none() {
            patch["status"]["rootCause"] = serde_json::Value::Null;
        }
        // The conditions list is replaced as a whole, and the scaler writes its own condition
        // into it: patch only the version read, so neither erases the other's condition.
        patch["metadata"] = serde_json::json!({ "resourceVersion": agent.resource_version() });
        match agents
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(requeue))
}

/// Records the scaling decision before it is acted on (write-ahead at `full_audit`): the
/// receipt holds the decision (from, to, target) and the digest of its inputs (desired
/// replicas and the pods that exist). At `full_audit` a failed write stops the action.
/// The rollout settings of an agent, or the problem with them (the schema rejects bad values at
/// admission; this names the field if one gets through).
fn rollout_settings(agent: &GeometricAgent) -> Result<RolloutSettings, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let defaults = RolloutSettings::default();
    let Some(r) = &agent.spec.rollout else {
        return Ok(defaults);
    };
    let budget = |field: &str, value: &Option<IntOrString>, default: Budget| match value {
        None => Ok(default),
        Some(IntOrString::Int(i)) if *i >= 0 => Ok(Budget::Count(*i as u32)),
        Some(IntOrString::String(s)) => {
            Budget::parse(s).ok_or_else(|| format!("spec.rollout.{field}: {s:?} is neither a count nor a percentage"))
        }
        Some(IntOrString::Int(i)) => Err(format!("spec.rollout.{field}: {i} is negative")),
    };
    Ok(RolloutSettings {
        max_surge: budget("maxSurge", &r.max_surge, defaults.max_surge)?,
        max_unavailable: budget("maxUnavailable", &r.max_unavailable, defaults.max_unavailable)?,
        progress_deadline_s: r
            .progress_deadline_seconds
            .map_or(defaults.progress_deadline_s, |s| s.max(1) as u64),
    })
}

/// One step of rolling the agent's pods over to template `hash` (`placement::rollout::plan`):
/// receipt first, then the creates and deletes. Returns the pods deleted and the `Progressing`
/// condition.
#[allow(clippy::too_many_arguments)]
async fn rollout_step(
    ctx: &Context,
    agent: &GeometricAgent,
    tenant: &str,
    active: &[&Pod],
    desired: usize,
    target: &[f64],
    hash: &str,
) -> Result<(Vec<String>, DesiredCondition, Option<Duration>, Option<ReceiptRef>), AgentError> {
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let condition =
        |status, reason: &str, message: String| DesiredCondition::new(conditions::PROGRESSING, status, reason, message);
    let settings = match rollout_settings(agent) {
        Ok(s) => s,
        Err(problem) => {
            return Ok((
                Vec::new(),
                condition(ConditionStatus::False, conditions::reason::INVALID_SPEC, problem),
                None,
                None,
            ));
        }
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let pods: Vec<RolloutPod> = {
        let view = ctx.view.read();
        let kappa = view.settings.kappa;
        active
            .iter()
            .map(|p| {
                let position = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .and_then(|n| view.node_position(n).cloned());
                RolloutPod {
                    name: p.name_any(),
                    updated: p.labels().get(TEMPLATE_HASH_LABEL).is_none_or(|h| h == hash),
                    ready: is_ready(p),
                    age_s: p
                        .creation_timestamp()
                        .map_or(0, |t| (now - t.0.as_second()).max(0) as u64),
                    distance: position
                        .filter(|q| q.len() == target.len() && !target.is_empty())
                        .map(|q| crate::geometry::poincare::distance(target, &q, kappa)),
                }
            })
            .collect()
    };
    let step = rollout::plan(desired as u32, &pods, &settings);
    let reference = agent.object_ref(&());
    if let Some(late) = &step.stalled {
        let message = format!(
            "pod {late} of template {hash} is not ready {} s after its creation; the rollout is stopped ({} of {desired} pods updated)",
            settings.progress_deadline_s, step.updated
        );
        let announced = agent
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, conditions::PROGRESSING))
            .is_some_and(|c| c.reason == conditions::reason::PROGRESS_DEADLINE_EXCEEDED);
        if !announced {
            ctx.publish(
                &reference,
                EventType::Warning,
                "Rollout",
                conditions::reason::PROGRESS_DEADLINE_EXCEEDED,
                message.clone(),
            )
            .await;
        }
        return Ok((
            Vec::new(),
            condition(
                ConditionStatus::False,
                conditions::reason::PROGRESS_DEADLINE_EXCEEDED,
                message,
            ),
            None,
            None,
        ));
    }
    let progress = condition(
        ConditionStatus::True,
        conditions::reason::ROLLING_UPDATE,
        format!("{} of {desired} pods made from template {hash}", step.updated),
    );
    let recheck = step.recheck_after_s.map(|s| Duration::from_secs(s + 1));
    if !step.acts() {
        return Ok((Vec::new(), progress, recheck, None));
    }
    // The pod is built from the stored agent (the cache keeps only the template's summary) and
    // only if that is still the template being rolled out.
    let new_pod = if step.create > 0 {
        match stored_agent(ctx, &ns, &name).await? {
            Some(stored)
                if stored.uid() == agent.uid() && super::crd::agent::template_hash(&stored.spec.template) == hash =>
            {
                Some(build_pod(&stored, tenant)?)
            }
            _ => return Ok((Vec::new(), progress, Some(Duration::from_secs(1)), None)),
        }
    } else {
        None
    };
    let action = if step.create > 0 {
        crate::receipts::Action::Spawn
    } else {
        crate::receipts::Action::Terminate
    };
    let intent = Intent {
        action,
        subject: agent_subject(agent),
        decision: rollout::rollout_record(hash, desired as u32, &step),
        inputs: rollout::rollout_inputs(&pods, &settings),
        regarding: Some(reference.clone()),
        withheld: format!(
            "{} was not rolled to template {hash} (create {}, delete {:?})",
            AgentKey::of(agent),
            step.create,
            step.delete
        ),
    };
    let receipt = ctx.record_before(intent).await.map_err(|source| AgentError::Receipt {
        agent: name.clone(),
        action: action.as_str(),
        source,
    })?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(pod) = &new_pod {
        for _ in 0..step.create {
            pods_api
                .create(
                    &PostParams {
                        field_manager: Some(MANAGER.into()),
                        ..Default::default()
                    },
                    pod,
                )
                .await?;
        }
    }
    for victim in &step.delete {
        match pods_api.delete(victim, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.metrics.decision("rollout");
    publish(
        ctx,
        &reference,
        "RollingUpdate",
        format!(
            "template {hash}: created {} pod(s), deleted {}; {} of {desired} updated before this step",
            step.create,
            if step.delete.is_empty() {
                "none".to_string()
            } else {
                step.delete.join(", ")
            },
            step.updated
        ),
    )
    .await;
    // A pod created now is checked against its deadline too.
    let recheck = recheck
        .into_iter()
        .chain((step.create > 0).then(|| Duration::from_secs(settings.progress_deadline_s + 1)))
        .min();
    Ok((step.delete, progress, recheck, receipt))
}

async fn write_receipt(
    ctx: &Context,
    agent: &GeometricAgent,
    active: &[&Pod],
    desired: usize,
    spares: usize,
    target: &[f64],
) -> Result<Option<ReceiptRef>, AgentError> {
    let pods: Vec<String> = active.iter().map(|p| p.name_any()).collect();
    let quota = agent
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .map(|a| a.quota);
    let action = placement::scale_action(active.len(), desired);
    let intent = Intent {
        action,
        subject: agent_subject(agent),
        decision: placement::scale_record(active.len(), desired, target),
        inputs: {
            let mut inputs = placement::scale_inputs(agent.spec.replicas, &pods, quota);
            if spares > 0 {
                // The redundancy rule's spares: `to` is specReplicas + spares (capped by quota).
                inputs["spares"] = spares.into();
            }
            inputs
        },
        regarding: Some(agent.object_ref(&())),
        withheld: format!(
            "{} was not scaled from {} to {desired} pods",
            AgentKey::of(agent),
            active.len()
        ),
    };
    ctx.record_before(intent).await.map_err(|source| AgentError::Receipt {
        agent: agent.name_any(),
        action: action.as_str(),
        source,
    })
}

/// Most agents of a peer group gathered to order its first placements; a larger group is
/// ordered over the part found first (breadth-first from the agent, through its peer lists).
const PLACEMENT_GROUP_MAX: usize = placement::order::GROUP_MAX;

/// Whether a new agent should hold its first replicas back (for at most 30 s after its
/// creation; [`holds_for_peers`] says why), so that a group created together places by its
/// strongest ties and its most loosely tied agents come last, the ones to spill when the
/// group's home fills.
fn waits_for_peers(
    agent: &GeometricAgent,
    store: &kube::runtime::reflector::Store<GeometricAgent>,
    view: &SharedView,
) -> bool {
    let young = agent
        .metadata
        .creation_timestamp
        .as_ref()
        .is_some_and(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0).as_secs_f64() < 30.0);
    if !young {
        return false;
    }
    let ns = agent.namespace().unwrap_or_default();
    let v = view.read();
    holds_for_peers(
        agent,
        |name| store.get(&ObjectRef::new(name).within(&ns)),
        |peer| {
            !v.agent_replica_positions(&AgentKey::new(ns.clone(), peer.to_string()))
                .is_empty()
        },
    )
}

/// The decision of [`waits_for_peers`] for a young agent: it holds back while
/// - no agent of its group has placed yet and an agent named with a positive weight in the
///   group's peer lists is not there yet (`lookup` does not find it): the group is still being
///   created, and ordered over the part that is there its first agent, and so its home (rule 6
///   of the target, [`group_home_key`]), could be another one than that of the whole group (a
///   `kubectl apply` of a list creates its agents one by one); or
/// - a peer before it in its group's first-placement order (`placement::order`: the most
///   strongly tied first) has placed nothing yet (`placed`).
///
/// The group is gathered breadth-first from the agent through the peer lists (agents of its
/// namespace that want replicas); one of [`PLACEMENT_GROUP_MAX`] agents or more does not wait.
/// A peer listed on one side only is reached from that side only, so two agents may see
/// different groups; the 30 s bound ends any wait that causes, and the wait for a peer that is
/// never created. A long chain of ties (a ring of agents) places a link at a time, also for at
/// most those 30 s.
fn holds_for_peers<A: std::ops::Deref<Target = GeometricAgent>>(
    agent: &GeometricAgent,
    lookup: impl Fn(&str) -> Option<A>,
    placed: impl Fn(&str) -> bool,
) -> bool {
    let group = placement_group(agent, &lookup);
    if group.len() >= PLACEMENT_GROUP_MAX {
        // Too large to place as one: agents gathering different parts of it would order them
        // differently and could wait on one another.
        return false;
    }
    // Only a group none of whose agents has placed yet is still arriving: one that has placed
    // is followed through rule 2 whatever else its members name (a typo, a deleted agent).
    let arriving = !group.iter().any(|m| placed(&m.name))
        && group
            .iter()
            .flat_map(|m| &m.peers)
            .any(|(p, w)| w.is_finite() && *w > 0.0 && lookup(p).is_none());
    if arriving {
        return true;
    }
    let me = agent.name_any();
    let order = placement::order::first_placement_order(&group);
    let mine = order.iter().position(|n| *n == me).unwrap_or(0);
    let before: BTreeSet<&str> = order[..mine].iter().map(String::as_str).collect();
    agent
        .spec
        .peers
        .iter()
        .any(|p| before.contains(p.agent.as_str()) && !placed(&p.agent))
}

/// The agent's peer group for [`waits_for_peers`] and [`group_home_key`]
/// ([`placement::order::gather_group`]): itself and the agents of its namespace that want
/// replicas, reached through peer lists. `lookup` finds an agent of the namespace by name.
fn placement_group<A: std::ops::Deref<Target = GeometricAgent>>(
    agent: &GeometricAgent,
    lookup: impl Fn(&str) -> Option<A>,
) -> Vec<placement::order::GroupMember> {
    let member = |a: &GeometricAgent| placement::order::GroupMember {
        name: a.name_any(),
        peers: a.spec.peers.iter().map(|p| (p.agent.clone(), p.weight)).collect(),
    };
    placement::order::gather_group(member(agent), |name| {
        lookup(name).filter(|a| a.spec.replicas > 0).map(|a| member(&a))
    })
}

/// The name rule 6 of the target (`placement::target`) breaks a new home's ties by
/// ([`placement::order::home_key`] over the agent's [`placement_group`]): the agent's
/// namespace and the first agent of its group's first-placement order, the same for every
/// agent of the group, so groups created together get homes of their own. `None` for an agent
/// without peers or in a group of [`PLACEMENT_GROUP_MAX`] agents or more.
pub fn group_home_key<A: std::ops::Deref<Target = GeometricAgent>>(
    agent: &GeometricAgent,
    lookup: impl Fn(&str) -> Option<A>,
) -> Option<String> {
    if agent.spec.peers.is_empty() {
        return None;
    }
    placement::order::home_key(&agent.namespace().unwrap_or_default(), &placement_group(agent, lookup))
}

/// Decision kind of a pod deleted because someone else changed it (`spec.onDrift: replace`).
pub const DRIFT_KIND: &str = "agent.drift";

/// The agent's pods someone other than MOM changed, by name, with what and who.
fn drifted_pods(active: &[&Pod]) -> Vec<(String, Vec<crate::drift::ForeignChange>)> {
    let mut drifted: Vec<(String, Vec<crate::drift::ForeignChange>)> = active
        .iter()
        .filter_map(|p| {
            let entries: Vec<crate::drift::FieldEntry> = p
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .map(|m| crate::drift::FieldEntry {
                    manager: m.manager.clone().unwrap_or_default(),
                    operation: m.operation.clone().unwrap_or_default(),
                    subresource: m.subresource.clone().unwrap_or_default(),
                    fields: m.fields_v1.as_ref().map(|f| f.0.clone()).unwrap_or_default(),
                })
                .collect();
            let changes = crate::drift::foreign_changes(MANAGER, &entries);
            (!changes.is_empty()).then(|| (p.name_any(), changes))
        })
        .collect();
    drifted.sort();
    drifted
}

/// Condition `Drifted`: True naming up to 3 changed pods (fields and writers), else False.
fn drift_condition(drifted: &[(String, Vec<crate::drift::ForeignChange>)]) -> DesiredCondition {
    if drifted.is_empty() {
        return DesiredCondition::new(
            conditions::DRIFTED,
            ConditionStatus::False,
            conditions::reason::NO_DRIFT,
            "no pod was changed outside MOM",
        );
    }
    let named: Vec<String> = drifted
        .iter()
        .take(3)
        .map(|(pod, changes)| {
            format!(
                "pod {pod}: {}",
                changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )
        })
        .collect();
    let more = drifted.len().saturating_sub(3);
    DesiredCondition::new(
        conditions::DRIFTED,
        ConditionStatus::True,
        conditions::reason::CHANGED_OUTSIDE_MOM,
        format!(
            "{} pod(s) changed outside MOM: {}{}",
            drifted.len(),
            named.join(" | "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        ),
    )
}

async fn publish(ctx: &Context, reference: &k8s_openapi::api::core::v1::ObjectReference, reason: &str, note: String) {
    ctx.publish(reference, EventType::Normal, "Reconcile", reason, note)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_with_peers(name: &str, replicas: i32, peers: &[(&str, f64)]) -> GeometricAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"workloadType": "interactive", "replicas": replicas,
                     "peers": peers.iter().map(|(a, w)| serde_json::json!({"agent": a, "weight": w})).collect::<Vec<_>>(),
                     "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_batch_agents_new_pods_require_a_node_of_the_pools_its_plan_runs_now_and_keep_the_templates_affinity() {
        let mut agent: GeometricAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": "render", "namespace": "shop"},
            "spec": {"workloadType": "batch", "replicas": 2,
                     "batch": {"replicaHours": 4, "deadline": "2026-12-08T06:00:00Z", "maxReplicas": 2},
                     "template": {"spec": {"containers": [{"name": "c", "image": "pause"}],
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}}},
            "status": {"batch": {"completedReplicaHours": 0, "cost": 0, "accountedAt": "2026-12-07T00:00:00Z",
                       "pools": {"default": 1, "spot": 1}, "plannedCost": 1, "atOnceCost": 2, "phase": "Running"}}
        }))
        .unwrap();
        let pod = build_pod(&agent, "shop").unwrap();
        let terms = serde_json::to_value(
            &pod.spec
                .unwrap()
                .affinity
                .unwrap()
                .node_affinity
                .unwrap()
                .required_during_scheduling_ignored_during_execution
                .unwrap()
                .node_selector_terms,
        )
        .unwrap();
        assert_eq!(
            terms,
            serde_json::json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                      {"key": crate::labels::POOL_LABEL, "operator": "In", "values": ["spot"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                      {"key": crate::labels::POOL_LABEL, "operator": "DoesNotExist"}]}
            ])
        );
        // Positive control: without a plan (no status.batch pools) the template stands.
        agent.status = None;
        let pod = build_pod(&agent, "shop").unwrap();
        let terms = pod
            .spec
            .unwrap()
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_expressions.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn every_agent_of_a_group_names_it_by_its_most_tied_agent_and_groups_differ() {
        let agents = [
            agent_with_peers("db", 2, &[("api", 3.0)]),
            agent_with_peers("api", 2, &[("db", 3.0), ("web", 5.0)]),
            agent_with_peers("web", 2, &[("api", 5.0)]),
            agent_with_peers("solo", 1, &[]),
            agent_with_peers("other", 1, &[("idle", 9.0)]),
            agent_with_peers("idle", 0, &[("other", 9.0)]),
        ];
        let lookup = |name: &str| agents.iter().find(|a| a.name_any() == name);
        let keys: Vec<Option<String>> = agents.iter().map(|a| group_home_key(a, lookup)).collect();
        assert_eq!(keys[0].as_deref(), Some("shop/api"));
        assert_eq!(keys[1], keys[0]);
        assert_eq!(keys[2], keys[0]);
        assert_eq!(keys[3], None, "an agent without peers has no group");
        // A peer that wants no replicas is not part of the group: "other" is its own.
        assert_eq!(keys[4].as_deref(), Some("shop/other"));
        let group = placement_group(&agents[4], lookup);
        assert_eq!(group.len(), 1, "{group:?}");
    }

    #[test]
    fn a_young_agent_holds_while_its_group_is_still_arriving_or_a_peer_before_it_has_not_placed() {
        // The bench's shop in part: gateway is the most tied, frontend and catalog follow it.
        let all = [
            agent_with_peers("frontend", 3, &[("gateway", 10.0)]),
            agent_with_peers("gateway", 3, &[("frontend", 10.0), ("catalog", 6.0)]),
            agent_with_peers("catalog", 3, &[("gateway", 6.0), ("db", 3.0)]),
            agent_with_peers("db", 3, &[("catalog", 3.0), ("ghost", 0.0)]),
        ];
        let present = |names: &'static [&'static str]| {
            let all = &all;
            move |name: &str| all.iter().find(|a| a.name_any() == name && names.contains(&name))
        };
        let nothing_placed = |_: &str| false;
        let everything_placed = |_: &str| true;
        // Created first, with its peer not there yet: frontend holds, even with nothing before
        // it in the part of the group it sees (it would have taken a home of its own).
        let first_two: &[&str] = &["frontend", "catalog"];
        assert!(holds_for_peers(&all[0], present(first_two), nothing_placed));
        let whole: &[&str] = &["frontend", "gateway", "catalog", "db"];
        // The whole group there (a peer of weight 0 that never comes is no tie): gateway goes
        // first; frontend holds until gateway has placed, then goes.
        assert!(!holds_for_peers(&all[1], present(whole), nothing_placed));
        assert!(holds_for_peers(&all[0], present(whole), nothing_placed));
        assert!(!holds_for_peers(&all[0], present(whole), everything_placed));
        // A group that has placed is not arriving, whatever its members name: a new agent
        // joining it (search, calling catalog, with catalog's peer gateway gone) follows the
        // placed ones at once.
        let search = agent_with_peers("search", 2, &[("catalog", 2.0)]);
        let joined = |name: &str| {
            (name == "search")
                .then_some(&search)
                .or_else(|| all.iter().find(|a| a.name_any() == name && name != "gateway"))
        };
        assert!(!holds_for_peers(&search, joined, |p: &str| p == "catalog"));
        // Control: the same before catalog has placed holds.
        assert!(holds_for_peers(&search, joined, |_: &str| false));
        // Only the peers before it count: db waits on catalog alone.
        assert!(holds_for_peers(&all[3], present(whole), |p: &str| p != "catalog"));
        assert!(!holds_for_peers(&all[3], present(whole), |p: &str| p == "catalog"));
    }

    #[test]
    fn a_peer_group_is_gathered_through_peers_of_peers_up_to_its_limit() {
        // A chain of 300 agents, each naming the next.
        let agents: Vec<GeometricAgent> = (0..300)
            .map(|i| agent_with_peers(&format!("link-{i:03}"), 1, &[(&format!("link-{:03}", i + 1), 1.0)]))
            .collect();
        let lookup = |name: &str| agents.iter().find(|a| a.name_any() == name);
        assert_eq!(placement_group(&agents[0], lookup).len(), PLACEMENT_GROUP_MAX);
        assert_eq!(placement_group(&agents[290], lookup).len(), 10);
        // Too large to agree on a name: no group name (ties by node name); a small one has one.
        assert_eq!(group_home_key(&agents[0], lookup), None);
        assert_eq!(group_home_key(&agents[290], lookup).as_deref(), Some("shop/link-291"));
    }

    #[test]
    fn only_overload_and_unreachable_apiserver_errors_back_off() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        for code in [429, 500, 503, 504] {
            assert!(overloaded(&api(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!overloaded(&api(code)), "{code}");
        }
        assert!(overloaded(&kube::Error::Service("timed out".into())));
        let bad_json = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(!overloaded(&kube::Error::SerdeError(bad_json)));
    }

    #[tokio::test]
    async fn every_agent_is_reconciled_again_only_when_leadership_is_taken_not_at_each_renew() {
        let (tx, rx) = watch::channel(false);
        let mut rose = Box::pin(became_leader(rx));
        let next =
            |s: &mut std::pin::Pin<Box<_>>| futures::FutureExt::now_or_never(futures::StreamExt::next(s)).flatten();
        tx.send_replace(true);
        assert_eq!(next(&mut rose), Some(()), "taking the Lease");
        // A renew that republishes `true` (as the elector did on every renew).
        tx.send_replace(true);
        assert_eq!(next(&mut rose), None);
        tx.send_replace(false);
        assert_eq!(next(&mut rose), None, "losing the Lease");
        tx.send_replace(true);
        assert_eq!(next(&mut rose), Some(()), "taking it again");
    }
}
