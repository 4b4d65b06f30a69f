//! The operator's in-memory view of the cluster for placement: nodes with their positions in
//! the ball, per-node load and tenants from the pods, pods bound by the extender but not yet
//! seen bound (assumed), and each agent's resolved placement policy.
//!
//! Fed by watches (nodes, pods) and by the agent controller (policies); read by the extender on
//! every request. The node embedding is recomputed when the node set or labels change, never
//! per request.
//!
//! Shared as a [`SharedView`]: writers take turns, readers (the extender's verbs, every loop)
//! never wait for anyone; each finished write publishes an immutable copy of the view, cheap to
//! make because the maps that grow with the cluster are persistent ([`Map`]: a copy shares all
//! but the changed paths with the original).

use std::collections::BTreeMap;
use std::sync::{Arc, LockResult, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::labels::{AGENT_LABEL, ISOLATION_LABEL, ROLE_LABEL};
use crate::placement::{self, AgentPolicy, NodeEmbedding, NodeState, Objectives, PodDemand, Resources, Routing};

/// The dimension nodes are embedded in without a MomConfig `default` (the CRD's default).
pub const DEFAULT_DIMENSION: usize = 64;

/// Global placement settings (from the MomConfig `default`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub kappa: f64,
    pub objectives: Objectives,
    pub routing: Routing,
    pub topology_keys: Vec<String>,
    /// Number of coordinates nodes are embedded with (MomConfig `spec.geometry.dimension`).
    pub dimension: usize,
    /// Where measured latencies come from (MomConfig `spec.geometry.latencySource`).
    pub latency_source: Option<super::crd::momconfig::LatencySource>,
    /// What the receipt writer records.
    pub recording: Recording,
    /// MomConfig `spec.budget.maxHourlyCost` (`None`: no budget).
    pub max_hourly_cost: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kappa: 1.0,
            objectives: Objectives::default(),
            routing: Routing::GreedyForwarding,
            topology_keys: vec![
                crate::labels::REGION_LABEL.into(),
                crate::labels::ZONE_LABEL.into(),
                crate::labels::RACK_LABEL.into(),
                crate::labels::HOSTNAME_LABEL.into(),
            ],
            dimension: DEFAULT_DIMENSION,
            latency_source: None,
            recording: Default::default(),
            max_hourly_cost: None,
        }
    }
}

/// The state of `spec.geometry.latencySource` as the view last saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LatencyState {
    /// No latency source is configured.
    #[default]
    NotConfigured,
    /// Configured, not fitted yet.
    Pending,
    /// Node positions follow this fit.
    Fitted(Arc<placement::measured::LatencyFit>),
    /// The source cannot be used: (condition reason, message naming the field and value).
    Problem(String, String),
}

/// What the writer is configured to record (from the MomConfig `default`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recording {
    pub level: super::crd::momconfig::VerificationLevel,
    pub sample_rate: f64,
}

impl Default for Recording {
    fn default() -> Self {
        Self {
            level: super::crd::momconfig::VerificationLevel::FullAudit,
            sample_rate: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct NodeRecord {
    /// Shared with every [`NodeState`] built from the record (extender requests clone the
    /// `Arc`, never the map).
    labels: Arc<BTreeMap<String, String>>,
    allocatable: Resources,
    max_pods: u32,
    schedulable: bool,
    /// [`node_unhealthy`] or terminating: pods on it count as failed (failover).
    failed: bool,
    /// The first [`crate::labels::TERMINATION_TAINTS`] key the node carries.
    terminating: Option<String>,
    /// That taint's value (see [`crate::placement::termination`] for what each carries).
    notice_value: Option<String>,
    /// Read from the labels once per node update rather than per request.
    hourly_cost: Option<f64>,
    spot: bool,
    energy_class: Option<char>,
}

/// What placement needs to know about one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub demand: PodDemand,
    /// The pod's GeometricAgent, when it belongs to one.
    pub agent: Option<AgentKey>,
    /// `spec.nodeSelector` (where an unbound pod may go: the budget prices it there).
    pub node_selector: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone)]
struct NodeLoad {
    requested: Resources,
    pods: u32,
    /// namespace → (pods, strict pods); mapped to tenants when node states are built, so a
    /// namespace's tenant label applies at once to the pods already placed.
    namespaces: BTreeMap<String, (u32, u32)>,
}

/// A GeometricAgent's identity in every loop and map of the operator: its namespace and name,
/// written `namespace/name` (also the agent's name in the core's snapshots).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentKey {
    pub namespace: String,
    pub name: String,
}

impl AgentKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an agent object.
    pub fn of(agent: &super::crd::GeometricAgent) -> Self {
        use kube::ResourceExt as _;
        Self::new(agent.namespace().unwrap_or_default(), agent.name_any())
    }
}

impl std::fmt::Display for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The view's maps that grow with nodes, pods, agents and namespaces: persistent B-trees, so
/// publishing a copy of the view after a write costs a few reference counts, not a deep copy.
type Map<K, V> = imbl::OrdMap<K, V>;

/// Removes the entries of `map` whose key is not in `listed` (a re-list), returning those keys
/// in order (`imbl`'s maps have no `retain`).
fn remove_unlisted<V: Clone>(map: &mut Map<String, V>, listed: &std::collections::BTreeSet<&str>) -> Vec<String> {
    let gone: Vec<String> = map
        .keys()
        .filter(|key| !listed.contains(key.as_str()))
        .cloned()
        .collect();
    for key in &gone {
        map.remove(key);
    }
    gone
}

#[derive(Debug, Default, Clone)]
pub struct View {
    pub settings: Settings,
    nodes: Map<String, NodeRecord>,
    /// Shared with the published copies (replaced whole at a re-embedding, never edited).
    embedding: Option<Arc<NodeEmbedding>>,
    embedding_error: Option<String>,
    /// Bumped on every re-embedding: positions (and targets computed from them) of an older
    /// generation are meaningless in the new one.
    generation: u64,
    /// Bumped when a re-embedding changes what positions mean as a whole (their dimension, or
    /// a new latency fit replacing or giving way to the label layout), not when nodes come and
    /// go: every agent's target must then be recomputed at once.
    basis: u64,
    /// Bumped when a node's health changes ([`View::failed_epoch`]).
    failed_epoch: u64,
    /// The latest fit of measured latencies (kept while its problem-free input lasts).
    latency: Option<Arc<placement::measured::LatencyFit>>,
    /// Bumped with every new fit (or its removal).
    latency_epoch: u64,
    /// What the latency source gave last: for the MomConfig condition.
    latency_state: LatencyState,
    /// (dimension, latency epoch) the positions were last computed with.
    embedded_with: Option<(usize, Option<u64>)>,
    policy_generation: Map<AgentKey, u64>,
    /// Pods by uid, as last seen in the watch.
    pods: Map<String, PodRecord>,
    /// Pods the extender placed (uid → record with node) until the watch shows them bound:
    /// first tentatively at prioritize time (its top-scored node), then for sure at bind time.
    assumed: Map<String, PodRecord>,
    /// When each tentative assumption was made; bound ones are not listed.
    tentative: Map<String, std::time::Instant>,
    /// The uids of each agent's pods in `pods` or `assumed` ([`View::agent_pods`]), so asking
    /// for one agent's pods costs its own pods, not every pod of the cluster (the agent
    /// controller asks for every agent and its peers; the extender for every pod it places).
    by_agent: Map<AgentKey, imbl::OrdSet<String>>,
    load: Map<String, NodeLoad>,
    /// Resolved placement policy per agent (target, avoid-list, spread), from the agent controller.
    policies: Map<AgentKey, AgentPolicy>,
    /// The descheduler's target of the last tick per agent (`namespace/name`).
    steered: Map<String, Vec<f64>>,
    /// Spares required outside the fullest failure domain, per agent (0: no spread rule).
    spares: Map<AgentKey, SpreadRule>,
    /// Each node's heartbeat: its Lease in `kube-node-lease` (last renewal, duration).
    heartbeats: Map<String, Heartbeat>,
    /// Nodes whose heartbeat stopped ([`View::mark_silent`]): failed before the node lifecycle
    /// controller says so.
    silent: Map<String, u64>,
    /// Failure domains the failover planner acts on ahead of a predicted failure
    /// ([`View::set_predicted`]): domain → its action (`add_standby` while standbys are held
    /// for it, or a move).
    predicted: BTreeMap<String, crate::failover_mdp::Action>,
    /// Nodes under a termination notice: (taint key, when first seen, ms since the epoch).
    noticed: Map<String, (String, u64)>,
    /// Every pod's last health signs (restarts, evicted), by uid ([`View::apply_pod`]).
    pod_signs: Map<String, PodSigns>,
    /// Per node: (restarts, kubelet evictions) seen since the operator started.
    node_signs: Map<String, (u64, u64)>,
    /// Agents given one standby replica outside a failure domain the planner holds standbys
    /// for ([`View::set_standbys`]): agent → that domain.
    standbys: BTreeMap<AgentKey, String>,
    /// The failover planner's last conclusion ([`View::failover_summary`]).
    failover_summary: PlanSummary,
    /// Resource pressure per node pool, from the auction loop (for strategy triggers).
    pool_pressure: BTreeMap<String, crate::auction::quota::PressureLevel>,
    /// The tenant of every namespace seen in the namespace watch ([`super::tenancy`]).
    namespace_tenants: Map<String, (String, &'static str)>,
}

/// A node's last heartbeat as its kubelet's Lease records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// `spec.renewTime`, in milliseconds since the Unix epoch.
    pub renewed_ms: u64,
    /// `spec.leaseDurationSeconds`.
    pub duration_s: u64,
}

impl Heartbeat {
    /// The heartbeat of a node Lease; `None` without a renewal time or duration.
    pub fn of(lease: &k8s_openapi::api::coordination::v1::Lease) -> Option<(String, Heartbeat)> {
        let name = lease.metadata.name.clone()?;
        let spec = lease.spec.as_ref()?;
        let renewed = spec.renew_time.as_ref()?.0;
        let duration = spec.lease_duration_seconds?;
        Some((
            name,
            Heartbeat {
                renewed_ms: u64::try_from(renewed.as_millisecond()).ok()?,
                duration_s: u64::try_from(duration).ok()?,
            },
        ))
    }

    /// Silent: not renewed for half the Lease's duration, i.e. two renewals missed (a kubelet
    /// renews every quarter of it: 10 s of a 40 s Lease). The node lifecycle controller waits
    /// for its grace period (50 s) before it marks the node Unknown.
    pub fn silent_at(&self, now_ms: u64) -> Option<u64> {
        self.lagging(now_ms, 2)
    }

    /// Seconds past the next expected renewal (a kubelet renews every quarter of the Lease's
    /// duration): `max(0, now − renewed − duration/4)`. 0 while on time.
    pub fn overdue_seconds(&self, now_ms: u64) -> f64 {
        let due = self.renewed_ms.saturating_add(self.duration_s * 1000 / 4);
        now_ms.saturating_sub(due) as f64 / 1000.0
    }

    /// Seconds since the renewal once more than `missed` renewals (quarters of the duration)
    /// are missed.
    fn lagging(&self, now_ms: u64, missed: u64) -> Option<u64> {
        let lag = now_ms.saturating_sub(self.renewed_ms);
        (self.duration_s > 0 && lag > self.duration_s * 1000 * missed / 4).then_some(lag / 1000)
    }
}

/// A tentative placement made at `at` is dropped after 30 s (the scheduler did not follow it).
fn tentative_expired(at: std::time::Instant, now: std::time::Instant) -> bool {
    now.saturating_duration_since(at) > std::time::Duration::from_secs(30)
}

/// Whether a planner action takes the replicas out at once (their nodes count as failed).
fn evacuates(action: crate::failover_mdp::Action) -> bool {
    use crate::failover_mdp::Action;
    matches!(action, Action::EvacuateNow | Action::FailOver)
}

/// What the failover planner ([`super::failover_plan`]) last concluded, for the MomConfig
/// condition `FailoverModel`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanSummary {
    /// Domains drained now, with the action.
    pub drained: BTreeMap<String, crate::failover_mdp::Action>,
    /// Why some domains fell back to the conservative rule (`None`: the model decided all).
    pub fallback: Option<String>,
    /// Domains observed.
    pub domains: usize,
}

/// One failure domain as the failover planner observes it ([`View::domain_facts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DomainFacts {
    pub domain: String,
    pub nodes: u32,
    /// Each node's heartbeat delay ([`Heartbeat::overdue_seconds`]; 0 without a Lease), by
    /// node name.
    pub overdue_seconds: Vec<f64>,
    /// Nodes silent, NotReady, labelled unhealthy or under a termination notice.
    pub not_ready: u32,
    /// Nodes labelled `mom.hypersync.io/anomalous=true`.
    pub anomalous: u32,
    /// Container restarts seen on the domain's nodes since the operator started
    /// ([`View::apply_pod`]; cumulative: the planner takes the increase over its window).
    pub restarts_total: u64,
    /// Pods the kubelet evicted on the domain's nodes since the operator started (cumulative).
    pub evictions_total: u64,
}

/// The health signs a pod carries ([`PodSigns::of`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSigns {
    pub node: Option<String>,
    /// `restartCount` summed over the pod's container and init container statuses.
    pub restarts: u64,
    /// `status.reason` is `Evicted`: the kubelet evicted it (node pressure). Evictions through
    /// the API (the descheduler's, `kubectl drain`) delete the pod instead and say nothing
    /// about the node's health, so they are not counted.
    pub evicted: bool,
}

impl PodSigns {
    pub fn of(pod: &Pod) -> PodSigns {
        let status = pod.status.as_ref();
        let restarts = status
            .into_iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .map(|c| u64::try_from(c.restart_count).unwrap_or(0))
            .sum();
        PodSigns {
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            restarts,
            evicted: status.and_then(|s| s.reason.as_deref()) == Some("Evicted"),
        }
    }

    /// What `self` adds to its node's counters after `before` (the same pod's previous signs;
    /// `None`: first seen, which adds nothing — a pod's history before the operator watched
    /// it is not news): (restarts, evictions).
    pub fn increase_after(&self, before: Option<&PodSigns>) -> (u64, u64) {
        match before {
            None => (0, 0),
            Some(b) => (
                self.restarts.saturating_sub(b.restarts),
                u64::from(self.evicted && !b.evicted),
            ),
        }
    }
}

/// An agent with bound pods in a failure domain ([`View::agent_exposure`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentExposure {
    pub agent: AgentKey,
    pub domain: String,
}

/// The redundancy rule of an agent as the extender applies it.
pub use crate::placement::redundancy::Rule as SpreadRule;

/// The view as the watches, the loops and the extender share it. Writers take turns on a mutex;
/// when a writer's guard drops, the view as it left it is published, and [`SharedView::read`]
/// returns the latest published copy without taking any lock. So a reader sees every write
/// that finished before it began and never a half-applied one, and neither a long reader (a
/// descheduling plan over every pod) nor a long writer (a re-embedding) holds up the
/// extender's reads. A writer that panics publishes nothing: the mutex is poisoned, and
/// readers keep the last whole view.
#[derive(Clone)]
pub struct SharedView(Arc<Shared>);

struct Shared {
    writer: Mutex<View>,
    published: arc_swap::ArcSwap<View>,
}

impl Default for SharedView {
    fn default() -> Self {
        Self::new(View::default())
    }
}

impl std::fmt::Debug for SharedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedView").field(&self.read()).finish()
    }
}

impl SharedView {
    pub fn new(view: View) -> Self {
        Self(Arc::new(Shared {
            published: arc_swap::ArcSwap::from_pointee(view.clone()),
            writer: Mutex::new(view),
        }))
    }

    /// The view as the last finished write left it. Lock-free; the copy stays valid (and
    /// unchanged) for as long as the caller keeps it.
    pub fn read(&self) -> Arc<View> {
        self.0.published.load_full()
    }

    /// Exclusive access to change the view, published when the guard drops. Fails only when an
    /// earlier writer panicked (the view it left may be half-changed).
    pub fn write(&self) -> LockResult<ViewWriter<'_>> {
        let published = &self.0.published;
        match self.0.writer.lock() {
            Ok(view) => Ok(ViewWriter {
                view,
                published,
                publish: true,
            }),
            // The writer handed back with the error never publishes: the view it holds may be
            // half-changed, and dropping the error must not put that in front of readers.
            Err(poisoned) => Err(PoisonError::new(ViewWriter {
                view: poisoned.into_inner(),
                published,
                publish: false,
            })),
        }
    }
}

/// Write access to a [`SharedView`]; dropping it publishes the view.
pub struct ViewWriter<'a> {
    view: MutexGuard<'a, View>,
    published: &'a arc_swap::ArcSwap<View>,
    /// False for the writer of a poisoned view ([`SharedView::write`]'s error).
    publish: bool,
}

impl std::ops::Deref for ViewWriter<'_> {
    type Target = View;
    fn deref(&self) -> &View {
        &self.view
    }
}

impl std::ops::DerefMut for ViewWriter<'_> {
    fn deref_mut(&mut self) -> &mut View {
        &mut self.view
    }
}

impl Drop for ViewWriter<'_> {
    fn drop(&mut self) {
        if self.publish && !std::thread::panicking() {
            self.published.store(Arc::new(self.view.clone()));
        }
    }
}

/// Parses a pod's CPU and memory requests (sum over containers, max with init containers).
pub fn pod_requests(pod: &Pod) -> Result<Resources, placement::quantity::QuantityError> {
    let Some(spec) = &pod.spec else {
        return Ok(Resources::default());
    };
    fn requests(c: &k8s_openapi::api::core::v1::Container) -> Option<&BTreeMap<String, Quantity>> {
        c.resources.as_ref().and_then(|r| r.requests.as_ref())
    }
    effective_requests(
        spec.containers.iter().filter_map(requests),
        spec.init_containers.iter().flatten().filter_map(requests),
    )
}

/// A pod's effective cpu and memory request from its containers' and init containers'
/// `resources.requests`: `max(Σ containers, Σ init containers)` per resource (init containers
/// run before the others; the scheduler's rule without pod overhead).
pub fn effective_requests<'a>(
    containers: impl Iterator<Item = &'a BTreeMap<String, Quantity>>,
    init_containers: impl Iterator<Item = &'a BTreeMap<String, Quantity>>,
) -> Result<Resources, placement::quantity::QuantityError> {
    fn sum<'a>(
        requests: impl Iterator<Item = &'a BTreeMap<String, Quantity>>,
    ) -> Result<Resources, placement::quantity::QuantityError> {
        let mut total = Resources::default();
        for req in requests {
            if let Some(q) = req.get("cpu") {
                total.cpu_millis = total.cpu_millis.saturating_add(placement::quantity::cpu_millis(&q.0)?);
            }
            if let Some(q) = req.get("memory") {
                total.memory_bytes = total
                    .memory_bytes
                    .saturating_add(placement::quantity::memory_bytes(&q.0)?);
            }
        }
        Ok(total)
    }
    let main = sum(containers)?;
    let init = sum(init_containers)?;
    Ok(Resources {
        cpu_millis: main.cpu_millis.max(init.cpu_millis),
        memory_bytes: main.memory_bytes.max(init.memory_bytes),
    })
}

/// The placement-relevant facts of a pod; `None` for pods that hold no resources (finished).
pub fn pod_record(pod: &Pod) -> Option<PodRecord> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return None;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let requests = pod_requests(pod).unwrap_or_default();
    let agent = labels
        .get(AGENT_LABEL)
        .map(|a| AgentKey::new(namespace.clone(), a.clone()));
    // Isolation is honoured only on pods an agent controls; the tenant is the namespace's
    // (resolved by the view), never the pod's label.
    let strict = super::tenancy::controlling_agent(pod).is_some()
        && labels.get(ISOLATION_LABEL).map(String::as_str) == Some("strict");
    Some(PodRecord {
        namespace,
        name: pod.metadata.name.clone().unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        demand: PodDemand {
            requests,
            tenant: None,
            strict_isolation: strict,
            standby: labels.get(ROLE_LABEL).map(String::as_str) == Some("standby"),
        },
        agent,
        node_selector: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default(),
    })
}

fn node_record(node: &Node) -> NodeRecord {
    let status = node.status.as_ref();
    let alloc = status.and_then(|s| s.allocatable.as_ref());
    let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.clone());
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default().into_iter().collect();
    NodeRecord {
        hourly_cost: labels
            .get(crate::labels::HOURLY_COST_LABEL)
            .and_then(|v| v.parse().ok()),
        spot: labels.get(crate::labels::SPOT_LABEL).map(String::as_str) == Some("true"),
        energy_class: labels
            .get(crate::labels::ENERGY_CLASS_LABEL)
            .and_then(|v| v.chars().next()),
        labels: Arc::new(labels),
        allocatable: Resources {
            cpu_millis: get("cpu")
                .and_then(|q| placement::quantity::cpu_millis(&q).ok())
                .unwrap_or(0),
            memory_bytes: get("memory")
                .and_then(|q| placement::quantity::memory_bytes(&q).ok())
                .unwrap_or(0),
        },
        max_pods: get("pods").and_then(|q| q.parse().ok()).unwrap_or(110),
        schedulable: !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        failed: node_unhealthy(node) || termination_taint(node).is_some(),
        terminating: termination_taint(node),
        notice_value: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .and_then(|ts| ts.iter().find(|t| Some(&t.key) == termination_taint(node).as_ref()))
            .and_then(|t| t.value.clone()),
    }
}

/// The first termination notice ([`crate::labels::TERMINATION_TAINTS`]) among the node's taints.
pub fn termination_taint(node: &Node) -> Option<String> {
    node.spec
        .as_ref()?
        .taints
        .as_ref()?
        .iter()
        .find(|t| crate::labels::TERMINATION_TAINTS.contains(&t.key.as_str()))
        .map(|t| t.key.clone())
}

/// Whether a node is out of service: labelled `mom.hypersync.io/unhealthy=true`, or its Ready
/// condition is not True (NotReady, Unknown: the node lifecycle controller's verdict).
pub fn node_unhealthy(node: &Node) -> bool {
    let labelled = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::labels::UNHEALTHY_LABEL))
        .is_some_and(|v| v == "true");
    let not_ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True");
    labelled || not_ready
}

impl View {
    /// Adds or updates a node; returns whether the embedding must be recomputed.
    pub fn apply_node(&mut self, node: &Node) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let rec = node_record(node);
        let old = self.nodes.get(&name);
        let relabelled = old.map(|old| old.labels != rec.labels).unwrap_or(true);
        if old.map_or(rec.failed, |old| old.failed != rec.failed) {
            self.failed_epoch += 1;
        }
        // When a termination notice was first seen (the deadline of some notices counts from
        // then): kept while the same taint stays, forgotten when it goes.
        match &rec.terminating {
            Some(key) if self.noticed.get(&name).is_some_and(|(k, _)| k == key) => {}
            Some(key) => {
                let now = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
                self.noticed.insert(name.clone(), (key.clone(), now));
            }
            None => {
                self.noticed.remove(&name);
            }
        }
        self.nodes.insert(name, rec);
        relabelled
    }

    /// Counts the changes of any node's health ([`node_unhealthy`]): the agent controller
    /// reconciles every agent when it moves (failover).
    pub fn failed_epoch(&self) -> u64 {
        self.failed_epoch
    }

    /// The termination deadline of `node`, when it is under a notice that carries or implies
    /// one ([`crate::placement::termination::deadline`]).
    pub fn termination_deadline(&self, node: &str) -> Option<crate::placement::termination::Deadline> {
        let rec = self.nodes.get(node)?;
        let key = rec.terminating.as_deref()?;
        let (_, first_seen) = self.noticed.get(node)?;
        crate::placement::termination::deadline(key, rec.notice_value.as_deref(), *first_seen)
    }

    /// Whether the node is out of service ([`node_unhealthy`], or its heartbeat went silent:
    /// [`View::mark_silent`]); unknown nodes are not.
    pub fn node_failed(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|r| r.failed)
            || self.silent.contains_key(node)
            || self.predicted_action(node).is_some_and(evacuates)
    }

    /// The failover planner's action for the failure domain of `node`, when it drains it.
    pub fn predicted_action(&self, node: &str) -> Option<crate::failover_mdp::Action> {
        // Asked for every candidate node of every extender request: no key lookup (which
        // allocates) while nothing is drained, the usual case.
        if self.predicted.is_empty() {
            return None;
        }
        let domain = self.nodes.get(node)?.labels.get(&self.failure_domain_key())?;
        self.predicted.get(domain).copied()
    }

    /// Whether the failover planner drains the failure domain of `node` (gradually or at once):
    /// the descheduler treats such a node as unhealthy. A domain that only has standbys held
    /// for it is not drained.
    pub fn predicted_drain(&self, node: &str) -> bool {
        self.predicted_action(node).is_some_and(|a| a.relocates())
    }

    /// The failure domain the failover planner holds a standby of `agent` outside of, if any:
    /// the agent controller wants one replica more, and the extender keeps new pods out of
    /// that domain ([`View::failed_reason`]), so the extra one lands elsewhere.
    pub fn standby_for(&self, agent: &AgentKey) -> Option<&str> {
        self.standbys.get(agent).map(String::as_str)
    }

    /// Every standby the planner holds: agent → the domain it guards against.
    pub fn standbys(&self) -> &BTreeMap<AgentKey, String> {
        &self.standbys
    }

    /// Replaces the planner's standbys. A change is a health change ([`View::failed_epoch`]):
    /// every agent is reconciled, so the affected ones gain or give back their extra replica.
    /// Returns whether anything changed.
    pub fn set_standbys(&mut self, standbys: BTreeMap<AgentKey, String>) -> bool {
        if standbys == self.standbys {
            return false;
        }
        self.standbys = standbys;
        self.failed_epoch += 1;
        true
    }

    /// What the failover planner last concluded (for the MomConfig condition).
    pub fn failover_summary(&self) -> &PlanSummary {
        &self.failover_summary
    }

    /// Records the failover planner's conclusion.
    pub fn set_failover_summary(&mut self, summary: PlanSummary) {
        self.failover_summary = summary;
    }

    /// The domains the failover planner drains now, with the action.
    pub fn predicted(&self) -> &BTreeMap<String, crate::failover_mdp::Action> {
        &self.predicted
    }

    /// Replaces the failover planner's drained domains. A change of the domains evacuated at
    /// once is a health change ([`View::failed_epoch`]): their replicas count as stranded.
    /// Returns whether anything changed.
    pub fn set_predicted(&mut self, predicted: BTreeMap<String, crate::failover_mdp::Action>) -> bool {
        if predicted == self.predicted {
            return false;
        }
        let now_out = |m: &BTreeMap<String, crate::failover_mdp::Action>| -> Vec<String> {
            m.iter()
                .filter(|(_, a)| evacuates(**a))
                .map(|(d, _)| d.clone())
                .collect()
        };
        if now_out(&predicted) != now_out(&self.predicted) {
            self.failed_epoch += 1;
        }
        self.predicted = predicted;
        true
    }

    /// What the failover planner observes of each failure domain at `now_ms`
    /// ([`View::failure_domain_key`]), sorted by domain. Silence, NotReady, the unhealthy label
    /// and termination notices count as not ready; the planner's own drains do not (they are
    /// its output, not its evidence).
    pub fn domain_facts(&self, now_ms: u64) -> Vec<DomainFacts> {
        let key = self.failure_domain_key();
        let mut out: BTreeMap<String, DomainFacts> = BTreeMap::new();
        for (name, rec) in &self.nodes {
            let Some(domain) = rec.labels.get(&key) else { continue };
            let facts = out.entry(domain.clone()).or_insert_with(|| DomainFacts {
                domain: domain.clone(),
                nodes: 0,
                overdue_seconds: Vec::new(),
                not_ready: 0,
                anomalous: 0,
                restarts_total: 0,
                evictions_total: 0,
            });
            facts.nodes += 1;
            if let Some((restarts, evictions)) = self.node_signs.get(name) {
                facts.restarts_total = facts.restarts_total.saturating_add(*restarts);
                facts.evictions_total = facts.evictions_total.saturating_add(*evictions);
            }
            let overdue = self.heartbeats.get(name).map_or(0.0, |h| h.overdue_seconds(now_ms));
            facts.overdue_seconds.push(overdue);
            if rec.failed || self.silent.contains_key(name) {
                facts.not_ready += 1;
            }
            if self.node_anomalous(name) {
                facts.anomalous += 1;
            }
        }
        out.into_values().collect()
    }

    /// The nodes each agent has bound pods on (agents without any are absent), sorted.
    pub fn agent_nodes(&self) -> BTreeMap<AgentKey, std::collections::BTreeSet<String>> {
        let mut out: BTreeMap<AgentKey, std::collections::BTreeSet<String>> = BTreeMap::new();
        for pod in self.pods.values() {
            if let (Some(agent), Some(node)) = (pod.agent.as_ref(), pod.node.as_ref()) {
                out.entry(agent.clone()).or_default().insert(node.clone());
            }
        }
        out
    }

    /// Every (agent, failure domain) pair where the agent has bound pods, sorted.
    pub fn agent_exposure(&self) -> Vec<AgentExposure> {
        let key = self.failure_domain_key();
        let pairs: std::collections::BTreeSet<(&AgentKey, &String)> = self
            .pods
            .values()
            .filter_map(|pod| {
                let (agent, node) = (pod.agent.as_ref()?, pod.node.as_ref()?);
                Some((agent, self.nodes.get(node)?.labels.get(&key)?))
            })
            .collect();
        pairs
            .into_iter()
            .map(|(agent, domain)| AgentExposure {
                agent: agent.clone(),
                domain: domain.clone(),
            })
            .collect()
    }

    /// Whether the anomaly loop flagged `node` (label `mom.hypersync.io/anomalous=true`).
    pub fn node_anomalous(&self, node: &str) -> bool {
        self.nodes
            .get(node)
            .and_then(|r| r.labels.get(crate::labels::ANOMALOUS_LABEL))
            .is_some_and(|v| v == "true")
    }

    /// Why no new pod may go to `node`: it is labelled `mom.hypersync.io/unhealthy=true`, or
    /// its heartbeat is silent. (A node the lifecycle controller marked NotReady is tainted, and
    /// the scheduler keeps pods off it itself.) Replicas on such a node are replaced
    /// (`placement::failover::stranded`), so a replacement sent there would be replaced again.
    pub fn failed_reason(&self, node: &str) -> Option<String> {
        if let Some(lag) = self.silent.get(node) {
            return Some(format!(
                "node {node} missed its heartbeats: its Lease was not renewed for {lag} s (MOM treats it as failed)"
            ));
        }
        if let Some(action) = self.predicted_action(node) {
            if action == crate::failover_mdp::Action::AddStandby {
                return Some(format!(
                    "node {node} is in a failure domain MOM expects may fail: new replicas (its agents' standbys) go elsewhere (failover plan: add_standby)"
                ));
            }
            return Some(format!(
                "node {node} is in a failure domain MOM drains ahead of a predicted failure (failover plan: {})",
                action.as_str()
            ));
        }
        let rec = self.nodes.get(node)?;
        if let Some(taint) = &rec.terminating {
            return Some(match self.termination_deadline(node) {
                Some(d) => format!(
                    "node {node} is about to be terminated (taint {taint}; deadline {} from the {})",
                    k8s_openapi::jiff::Timestamp::from_millisecond(i64::try_from(d.at_ms).unwrap_or(i64::MAX))
                        .map(|t| t.to_string())
                        .unwrap_or_else(|_| format!("{} ms", d.at_ms)),
                    d.source
                ),
                None => format!("node {node} is about to be terminated (taint {taint})"),
            });
        }
        let labelled = rec
            .labels
            .get(crate::labels::UNHEALTHY_LABEL)
            .is_some_and(|v| v == "true");
        labelled.then(|| format!("node {node} is labelled {}=true", crate::labels::UNHEALTHY_LABEL))
    }

    /// Records a node's Lease; a deleted Lease is `None` (no heartbeat known: not silent).
    pub fn apply_heartbeat(&mut self, node: &str, heartbeat: Option<Heartbeat>) {
        match heartbeat {
            Some(h) => self.heartbeats.insert(node.to_string(), h),
            None => self.heartbeats.remove(node),
        };
    }

    /// The last heartbeat of `node` the view holds.
    pub fn heartbeat(&self, node: &str) -> Option<Heartbeat> {
        self.heartbeats.get(node).copied()
    }

    /// Replaces every heartbeat (a re-list of the node Leases).
    pub fn replace_heartbeats(&mut self, listed: BTreeMap<String, Heartbeat>) {
        self.heartbeats = listed.into_iter().collect();
    }

    /// Re-judges which nodes are silent at `now_ms` (only nodes the view knows):
    /// - a node that missed two renewals ([`Heartbeat::silent_at`]);
    /// - a node that missed one while a node of one of its failure domains, at any level
    ///   ([`View::failure_domain_levels`]: a zone, its region), missed two: failures of a
    ///   domain are correlated, and its kubelets' renewals are spread over one renewal period,
    ///   so waiting for each node's own second miss would send replacements to the domain's
    ///   not-yet-silent nodes. In a region's outage its zones' first nodes miss their second
    ///   renewal up to a period apart; judged zone by zone, the zones still heard from would
    ///   take replacements meant to leave the region.
    ///
    /// While no known node has renewed within a quarter of its Lease, nothing is judged (the
    /// set stays as it was): silence everywhere at once is the control plane's outage, or this
    /// replica's watch lagging, not the nodes' — as the node lifecycle controller stops
    /// evicting in a full disruption.
    ///
    /// A change of the set counts as a health change ([`View::failed_epoch`]). Returns the nodes
    /// that went silent and those that came back.
    pub fn mark_silent(&mut self, now_ms: u64) -> (Vec<String>, Vec<String>) {
        /// A failure domain: a topology key and its value.
        type Domain<'a> = (&'a str, &'a String);
        let levels = self.failure_domain_levels();
        // Each known node with its domains: (topology key, value) at every level.
        let known: Vec<(&String, &Heartbeat, Vec<Domain<'_>>)> = self
            .heartbeats
            .iter()
            .filter_map(|(node, h)| {
                let labels = &self.nodes.get(node)?.labels;
                let domains = levels
                    .iter()
                    .filter_map(|k| Some((k.as_str(), labels.get(k)?)))
                    .collect();
                Some((node, h, domains))
            })
            .collect();
        if known.iter().all(|(_, h, _)| h.lagging(now_ms, 1).is_some()) {
            return (Vec::new(), Vec::new());
        }
        let mut silent: BTreeMap<String, u64> = known
            .iter()
            .filter_map(|(node, h, _)| Some(((*node).clone(), h.silent_at(now_ms)?)))
            .collect();
        let dark: std::collections::BTreeSet<Domain<'_>> = known
            .iter()
            .filter(|(node, ..)| silent.contains_key(*node))
            .flat_map(|(_, _, domains)| domains.iter().copied())
            .collect();
        for (node, h, domains) in &known {
            if domains.iter().any(|d| dark.contains(d))
                && let Some(lag) = h.lagging(now_ms, 1)
            {
                silent.entry((*node).clone()).or_insert(lag);
            }
        }
        let went: Vec<String> = silent
            .keys()
            .filter(|n| !self.silent.contains_key(*n))
            .cloned()
            .collect();
        let back: Vec<String> = self
            .silent
            .keys()
            .filter(|n| !silent.contains_key(*n))
            .cloned()
            .collect();
        if !went.is_empty() || !back.is_empty() {
            self.failed_epoch += 1;
        }
        self.silent = silent.into_iter().collect();
        (went, back)
    }

    pub fn delete_node(&mut self, name: &str) -> bool {
        self.noticed.remove(name);
        self.nodes.remove(name).is_some()
    }

    /// Makes `nodes` (a complete re-list) the view's node set: nodes not in it are removed (they
    /// were deleted while the watch was away). Returns how many were removed; the caller
    /// re-embeds.
    pub fn replace_nodes(&mut self, nodes: &[Node]) -> usize {
        let listed: std::collections::BTreeSet<&str> =
            nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        let removed = remove_unlisted(&mut self.nodes, &listed).len();
        for node in nodes {
            self.apply_node(node);
        }
        removed
    }

    /// Recomputes node positions from the topology labels, in `settings.dimension` coordinates.
    pub fn reembed(&mut self) {
        let labels: BTreeMap<String, BTreeMap<String, String>> = self
            .nodes
            .iter()
            .map(|(n, r)| (n.clone(), (*r.labels).clone()))
            .collect();
        match placement::embed_nodes(&labels, &self.settings.topology_keys, self.settings.dimension) {
            Ok(mut e) => {
                // Measured latencies, when fitted for exactly these nodes in this dimension,
                // replace the label positions (the label figures stay in the embedding).
                let fit = self.latency.as_ref().filter(|f| {
                    f.dimension == e.dimension
                        && f.positions.len() == e.positions.len()
                        && e.positions.keys().all(|n| f.positions.contains_key(n))
                });
                if let Some(f) = fit {
                    e.positions = f.positions.clone();
                }
                let with = (e.dimension, fit.map(|_| self.latency_epoch));
                if self.embedded_with != Some(with) {
                    self.basis += 1;
                    self.embedded_with = Some(with);
                }
                self.embedding = Some(Arc::new(e));
                self.embedding_error = None;
                self.generation += 1;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot embed the nodes");
                self.embedding_error = Some(err.to_string());
            }
        }
    }

    pub fn embedding(&self) -> Option<&NodeEmbedding> {
        self.embedding.as_deref()
    }

    /// Dimension of the current node embedding (the length of every node position); `None`
    /// before any node is embedded.
    pub fn dimension(&self) -> Option<usize> {
        let e = self.embedding.as_ref()?;
        (!e.positions.is_empty()).then_some(e.dimension)
    }

    /// Stores what the latency source gave (a fit, or why there is none) and re-embeds.
    pub fn set_latency(&mut self, state: LatencyState) {
        let fit = match &state {
            LatencyState::Fitted(f) => Some(f.clone()),
            _ => None,
        };
        if fit != self.latency {
            self.latency = fit;
            self.latency_epoch += 1;
        }
        self.latency_state = state;
        self.reembed();
    }

    /// What the latency source gave last.
    pub fn latency_state(&self) -> &LatencyState {
        &self.latency_state
    }

    /// The latest latency fit (the start of the next, incremental one).
    pub fn latency_fit(&self) -> Option<&placement::measured::LatencyFit> {
        self.latency.as_deref()
    }

    /// Whether node positions currently follow measured latencies.
    pub fn positions_follow_latency(&self) -> bool {
        self.embedded_with.is_some_and(|(_, epoch)| epoch.is_some())
    }

    /// Node names → labels, for embedding and fitting outside the lock.
    pub fn node_label_map(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.nodes
            .iter()
            .map(|(n, r)| (n.clone(), (*r.labels).clone()))
            .collect()
    }

    /// Changes whenever a re-embedding changed the meaning of positions as a whole (see
    /// `basis`); the agent controller then recomputes every agent's target.
    pub fn basis(&self) -> u64 {
        self.basis
    }

    /// The node, zone and region nearest to `point` in the current embedding (see
    /// [`placement::nearest`]).
    pub fn nearest_place(
        &self,
        point: &[f64],
    ) -> Result<placement::nearest::NearestPlace, placement::nearest::NearestError> {
        let positions = &self
            .embedding
            .as_ref()
            .ok_or(placement::nearest::NearestError::NoNodes)?
            .positions;
        placement::nearest::nearest_place(point, positions, |n| self.node_labels(n), self.settings.kappa)
    }

    pub fn node_position(&self, node: &str) -> Option<&Vec<f64>> {
        self.embedding.as_ref()?.positions.get(node)
    }

    pub fn node_labels(&self, node: &str) -> Option<&BTreeMap<String, String>> {
        self.nodes.get(node).map(|r| r.labels.as_ref())
    }

    /// Whether the node takes new pods (not cordoned); unknown nodes do not. For the web view.
    pub fn node_schedulable(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|r| r.schedulable)
    }

    /// The pressure of every pool the auction loop measured. For the web view.
    pub fn pool_pressures(&self) -> &BTreeMap<String, crate::auction::quota::PressureLevel> {
        &self.pool_pressure
    }

    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    fn add_load(&mut self, rec: &PodRecord) {
        let Some(node) = &rec.node else { return };
        let load = self.load.entry(node.clone()).or_default();
        load.requested = load.requested.saturating_add(rec.demand.requests);
        load.pods += 1;
        let t = load.namespaces.entry(rec.namespace.clone()).or_default();
        t.0 += 1;
        t.1 += u32::from(rec.demand.strict_isolation);
    }

    fn remove_load(&mut self, rec: &PodRecord) {
        let Some(node) = &rec.node else { return };
        let Some(load) = self.load.get_mut(node) else { return };
        load.requested.cpu_millis = load.requested.cpu_millis.saturating_sub(rec.demand.requests.cpu_millis);
        load.requested.memory_bytes = load
            .requested
            .memory_bytes
            .saturating_sub(rec.demand.requests.memory_bytes);
        load.pods = load.pods.saturating_sub(1);
        if let Some(t) = load.namespaces.get_mut(&rec.namespace) {
            t.0 = t.0.saturating_sub(1);
            t.1 = t.1.saturating_sub(u32::from(rec.demand.strict_isolation));
            if t.0 == 0 {
                load.namespaces.remove(&rec.namespace);
            }
        }
    }

    /// Adds or updates a namespace from the watch (its tenant, see [`super::tenancy`]).
    pub fn apply_namespace(&mut self, ns: &Namespace) {
        let Some(name) = ns.metadata.name.clone() else { return };
        let labels = ns.metadata.labels.as_ref();
        let tenant = super::tenancy::namespace_tenant(&name, labels);
        self.namespace_tenants
            .insert(name, (tenant, super::tenancy::tenant_source(labels)));
    }

    /// Replaces every namespace with `listed` (a watch's re-list).
    pub fn replace_namespaces(&mut self, listed: &[Namespace]) {
        self.namespace_tenants.clear();
        for ns in listed {
            self.apply_namespace(ns);
        }
    }

    pub fn delete_namespace(&mut self, name: &str) {
        self.namespace_tenants.remove(name);
    }

    /// The tenant of `namespace` and where it comes from (for messages), once the namespace
    /// watch has shown it.
    pub fn known_tenant(&self, namespace: &str) -> Option<(String, &'static str)> {
        self.namespace_tenants.get(namespace).cloned()
    }

    /// The tenant of `namespace`: its `mom.hypersync.io/tenant` label, else its name (also for
    /// a namespace the watch has not shown yet).
    pub fn tenant_of(&self, namespace: &str) -> String {
        self.namespace_tenants
            .get(namespace)
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| namespace.to_string())
    }

    /// The placement demand of `rec` with its tenant resolved from its namespace.
    pub fn demand_of(&self, rec: &PodRecord) -> PodDemand {
        PodDemand {
            tenant: Some(self.tenant_of(&rec.namespace)),
            ..rec.demand.clone()
        }
    }

    /// Adds or updates a pod from the watch.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let signs = PodSigns::of(pod);
        let (restarts, evictions) = signs.increase_after(self.pod_signs.get(&uid));
        if let Some(node) = &signs.node
            && restarts + evictions > 0
        {
            let counters = self.node_signs.entry(node.clone()).or_default();
            counters.0 = counters.0.saturating_add(restarts);
            counters.1 = counters.1.saturating_add(evictions);
        }
        self.pod_signs.insert(uid.clone(), signs);
        if let Some(old) = self.pods.remove(&uid) {
            self.remove_load(&old);
            self.untrack(&uid, old.agent.as_ref());
        }
        match pod_record(pod) {
            Some(rec) => {
                if rec.node.is_some()
                    && let Some(assumed) = self.assumed.remove(&uid)
                {
                    self.tentative.remove(&uid);
                    self.remove_load(&assumed);
                    self.untrack(&uid, assumed.agent.as_ref());
                }
                self.add_load(&rec);
                self.track(&uid, rec.agent.as_ref());
                self.pods.insert(uid, rec);
            }
            None => {
                if let Some(assumed) = self.assumed.remove(&uid) {
                    self.remove_load(&assumed);
                    self.untrack(&uid, assumed.agent.as_ref());
                }
            }
        }
    }

    /// Lists `uid` under its agent in [`View::agent_pods`]'s index (after it went into `pods`
    /// or `assumed`).
    fn track(&mut self, uid: &str, agent: Option<&AgentKey>) {
        if let Some(agent) = agent {
            self.by_agent.entry(agent.clone()).or_default().insert(uid.to_string());
        }
    }

    /// Takes `uid` out of `agent`'s list after a record of it left `pods` or `assumed`, unless
    /// the other map still holds it for the same agent.
    fn untrack(&mut self, uid: &str, agent: Option<&AgentKey>) {
        let Some(agent) = agent else { return };
        let still = |r: Option<&PodRecord>| r.is_some_and(|r| r.agent.as_ref() == Some(agent));
        if still(self.pods.get(uid)) || still(self.assumed.get(uid)) {
            return;
        }
        if let Some(uids) = self.by_agent.get_mut(agent) {
            uids.remove(uid);
            if uids.is_empty() {
                self.by_agent.remove(agent);
            }
        }
    }

    pub fn delete_pod(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else { return };
        self.pod_signs.remove(uid);
        if let Some(old) = self.pods.remove(uid) {
            self.remove_load(&old);
            self.untrack(uid, old.agent.as_ref());
        }
        if let Some(assumed) = self.assumed.remove(uid) {
            self.remove_load(&assumed);
            self.untrack(uid, assumed.agent.as_ref());
        }
    }

    /// Makes `pods` (a complete re-list) the view's pod set: a pod the view knew that is not in
    /// it was deleted while the watch was away, so its record, its load and anything the
    /// extender assumed about it are dropped. Assumptions about pods the view never saw are kept
    /// (they may be newer than the list; tentative ones expire anyway). Returns how many pods
    /// were removed.
    pub fn replace_pods(&mut self, pods: &[Pod]) -> usize {
        let listed: std::collections::BTreeSet<&str> = pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !listed.contains(uid.as_str()))
            .cloned()
            .collect();
        remove_unlisted(&mut self.pod_signs, &listed);
        for uid in &gone {
            if let Some(old) = self.pods.remove(uid) {
                self.remove_load(&old);
                self.untrack(uid, old.agent.as_ref());
            }
            self.forget(uid);
        }
        for pod in pods {
            self.apply_pod(pod);
        }
        gone.len()
    }

    /// How many nodes the view holds.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many pods the view holds (watched, not assumed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Records where the extender placed a pod, so the next decisions of a burst see it before
    /// the watch does. `tentative`: decided at prioritize time (the scheduler normally follows
    /// MOM's top score) or at filter time when a single node passes (the scheduler then skips
    /// prioritize and binds it); a later bind, filter or prioritize replaces it; expires after
    /// 30 s.
    pub fn assume(&mut self, uid: &str, mut rec: PodRecord, node: &str, tentative: bool) {
        if self.pods.get(uid).and_then(|p| p.node.as_ref()).is_some() {
            return;
        }
        if let Some(old) = self.assumed.remove(uid) {
            self.remove_load(&old);
            self.untrack(uid, old.agent.as_ref());
        }
        rec.node = Some(node.to_string());
        self.add_load(&rec);
        self.track(uid, rec.agent.as_ref());
        self.assumed.insert(uid.to_string(), rec);
        let now = std::time::Instant::now();
        if tentative {
            self.tentative.insert(uid.to_string(), now);
        } else {
            self.tentative.remove(uid);
        }
        self.expire_tentative(now);
    }

    /// Holds a bind to the filter's hard rules against the view as it is now, and records it as
    /// assumed if it passes, in one step (callers hold the writers' turn). The scheduler binds
    /// asynchronously, may bind another node than the one prioritize assumed, and may filter
    /// the next pod before this bind lands; without this check two pods could both take the
    /// last slot a redundancy rule leaves in a failure domain. A refused bind sends the pod
    /// back to the scheduler, whose next filter sees the winner. Nodes the view does not know
    /// are not judged here (the filter already refused them).
    pub fn reserve(&mut self, uid: &str, rec: PodRecord, node: &str) -> Result<(), String> {
        self.forget(uid);
        if let Some(reason) = self.failed_reason(node) {
            return Err(reason);
        }
        let policy = rec.agent.as_ref().and_then(|k| self.policy_for(k));
        let (states, unknown) = self.node_states(&[node.to_string()]);
        if unknown.is_empty() {
            let refs: Vec<&NodeState> = states.iter().collect();
            let verdict = placement::filter(&self.demand_of(&rec), policy.as_ref(), &refs, self.settings.kappa);
            if let Some(reason) = verdict.unresolvable.get(node).or_else(|| verdict.failed.get(node)) {
                return Err(format!(
                    "node {node} no longer fits pod {}/{}: {reason}",
                    rec.namespace, rec.name
                ));
            }
        }
        self.assume(uid, rec, node, false);
        Ok(())
    }

    /// Whether [`View::forget`] of `uid` or [`View::expire_tentative`] at `now` would change
    /// anything: the filter verb asks the published view and takes the writers' turn only
    /// then, so a burst of first-time pods does not queue every filter behind the watches'
    /// writes.
    pub fn must_forget(&self, uid: Option<&str>, now: std::time::Instant) -> bool {
        uid.is_some_and(|u| self.assumed.contains_key(u) || self.tentative.contains_key(u))
            || self.tentative.values().any(|at| tentative_expired(*at, now))
    }

    /// Drops tentative placements older than 30 s (the scheduler did not follow them).
    pub fn expire_tentative(&mut self, now: std::time::Instant) {
        let expired: Vec<String> = self
            .tentative
            .iter()
            .filter(|(_, at)| tentative_expired(**at, now))
            .map(|(u, _)| u.clone())
            .collect();
        for u in expired {
            self.forget(&u);
        }
    }

    /// Drops what the extender assumed about a pod that is not bound (its bind failed, or the
    /// scheduler is placing it again): its room is free again, also for itself.
    pub fn forget(&mut self, uid: &str) {
        self.tentative.remove(uid);
        if let Some(old) = self.assumed.remove(uid) {
            self.remove_load(&old);
            self.untrack(uid, old.agent.as_ref());
        }
    }

    pub fn set_policy(&mut self, key: AgentKey, policy: AgentPolicy, spread: Option<SpreadRule>) {
        self.policy_generation.insert(key.clone(), self.generation);
        self.policies.insert(key.clone(), policy);
        match spread {
            Some(rule) => self.spares.insert(key, rule),
            None => self.spares.remove(&key),
        };
    }

    /// The MomConfig `topologyKeys` other than `kubernetes.io/hostname`, in their order.
    pub fn topology_keys_above_host(&self) -> Vec<String> {
        self.settings
            .topology_keys
            .iter()
            .filter(|k| k.as_str() != crate::labels::HOSTNAME_LABEL)
            .cloned()
            .collect()
    }

    /// The topology keys that name failure domains, widest first: every configured key but
    /// the hostname, and [`Self::failure_domain_key`] when it is not among them.
    pub fn failure_domain_levels(&self) -> Vec<String> {
        let mut levels = self.topology_keys_above_host();
        let key = self.failure_domain_key();
        if !levels.contains(&key) {
            levels.push(key);
        }
        levels
    }

    /// The label whose values are the failure domains redundancy rules count: the deepest
    /// MomConfig `topologyKeys` entry other than `kubernetes.io/hostname` (a node is not a
    /// domain worth a spare), or `topology.kubernetes.io/zone` when there is none.
    pub fn failure_domain_key(&self) -> String {
        self.settings
            .topology_keys
            .iter()
            .rev()
            .find(|k| k.as_str() != crate::labels::HOSTNAME_LABEL)
            .cloned()
            .unwrap_or_else(|| crate::labels::ZONE_LABEL.to_string())
    }

    /// The failure domains nodes are in now (values of [`Self::failure_domain_key`]).
    ///
    /// Only domains with a node in service count ([`View::node_failed`]): while a zone is down,
    /// a redundancy rule keeps its promise over the zones that are left (a cap computed over
    /// the dead zone too would leave the demand unplaceable in the others).
    pub fn failure_domains(&self) -> u32 {
        let key = self.failure_domain_key();
        let domains: std::collections::BTreeSet<&String> = self
            .nodes
            .iter()
            .filter(|(name, _)| !self.node_failed(name))
            .filter_map(|(_, r)| r.labels.get(&key))
            .collect();
        domains.len() as u32
    }

    /// What `rule` asks of an agent demanding `demand` replicas over today's failure domains.
    pub fn spread_plan(&self, rule: SpreadRule, demand: u32) -> placement::redundancy::SpreadPlan {
        placement::redundancy::plan(demand, self.failure_domains(), rule)
    }

    /// Drops the target stored for an agent (its policy stays): the next one is computed
    /// without a previous one (rule 5 of `placement::agent_target` does not apply).
    pub fn forget_target(&mut self, key: &AgentKey) {
        if let Some(p) = self.policies.get_mut(key) {
            p.target.clear();
        }
    }

    /// The target last stored for an agent, if it was computed in the current embedding.
    pub fn previous_target(&self, key: &AgentKey) -> Option<&Vec<f64>> {
        if self.policy_generation.get(key) != Some(&self.generation) {
            return None;
        }
        self.policies.get(key).map(|p| &p.target).filter(|t| !t.is_empty())
    }

    /// The target the descheduler steered an agent's replicas to last tick (the point its next
    /// target steps from), keyed by `namespace/name`.
    pub fn steered_target(&self, agent: &str) -> Option<&Vec<f64>> {
        self.steered.get(agent)
    }

    /// Stores the target the descheduler steered `agent` (`namespace/name`) to this tick.
    pub fn set_steered_target(&mut self, agent: &str, target: Vec<f64>) {
        self.steered.insert(agent.to_string(), target);
    }

    /// Generation of the current node embedding.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn remove_policy(&mut self, key: &AgentKey) {
        self.policies.remove(key);
        self.spares.remove(key);
    }

    /// Pods of an agent, bound or assumed, as (name, node), sorted by name; a pod both watched
    /// and assumed is on the node the assumption names, if it names one.
    pub fn agent_pods(&self, key: &AgentKey) -> Vec<(String, Option<String>)> {
        let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
        for rec in self.agent_records(key) {
            let entry = out.entry(rec.name.clone()).or_default();
            if rec.node.is_some() {
                *entry = rec.node.clone();
            }
        }
        out.into_iter().collect()
    }

    /// The records of `key`'s pods: the watched ones, then the assumed ones, each by uid (the
    /// per-agent index: O(the agent's pods)).
    fn agent_records<'a>(&'a self, key: &'a AgentKey) -> impl Iterator<Item = &'a PodRecord> + 'a {
        let uids = self.by_agent.get(key);
        let of = move |map: &'a Map<String, PodRecord>| {
            uids.into_iter()
                .flatten()
                .filter_map(move |uid| map.get(uid))
                .filter(move |r| r.agent.as_ref() == Some(key))
        };
        of(&self.pods).chain(of(&self.assumed))
    }

    /// Positions of the nodes holding an agent's pods.
    pub fn agent_replica_positions(&self, key: &AgentKey) -> Vec<Vec<f64>> {
        self.agent_pods(key)
            .iter()
            .filter_map(|(_, n)| n.as_ref().and_then(|n| self.node_position(n)).cloned())
            .collect()
    }

    /// Free CPU per schedulable node with its position (target fallback).
    pub fn free_capacity(&self) -> Vec<(u64, String, Vec<f64>)> {
        self.nodes
            .iter()
            .filter(|(_, r)| r.schedulable)
            .filter_map(|(name, r)| {
                let used = self.load.get(name).map(|l| l.requested.cpu_millis).unwrap_or(0);
                Some((
                    r.allocatable.cpu_millis.saturating_sub(used),
                    name.clone(),
                    self.node_position(name)?.clone(),
                ))
            })
            .collect()
    }

    /// Records a node pool's resource pressure (the auction loop, every tick).
    pub fn set_pool_pressure(&mut self, pool: &str, level: crate::auction::quota::PressureLevel) {
        self.pool_pressure.insert(pool.to_string(), level);
    }

    /// The last measured resource pressure of a node pool.
    pub fn pool_pressure(&self, pool: &str) -> Option<crate::auction::quota::PressureLevel> {
        self.pool_pressure.get(pool).copied()
    }

    /// Schedulable nodes as (name, labels, allocatable), by name (for the auction loop): not
    /// cordoned, and not counted as failed ([`Self::node_failed`]: silent, not ready, or drained
    /// by the failover planner), since the extender places nothing on those.
    pub fn schedulable_nodes(&self) -> Vec<(String, BTreeMap<String, String>, Resources)> {
        self.nodes
            .iter()
            .filter(|(n, r)| r.schedulable && !self.node_failed(n))
            .map(|(n, r)| (n.clone(), (*r.labels).clone(), r.allocatable))
            .collect()
    }

    /// What the budget prices (`crate::budget`): every pod of a GeometricAgent the watch has
    /// seen, every node (schedulable or not: a cordoned node's pods still cost), and the price
    /// labels that could not be read.
    pub fn priced(
        &self,
    ) -> (
        Vec<crate::budget::PricedPod>,
        Vec<crate::budget::PricedNode>,
        Vec<String>,
    ) {
        let pods = self.priced_pods().into_iter().map(|(_, p)| p).collect();
        let (nodes, problems) = self.priced_nodes();
        (pods, nodes, problems)
    }

    /// Every pod of a GeometricAgent the watch has seen, with its agent, as the budget prices it.
    pub fn priced_pods(&self) -> Vec<(AgentKey, crate::budget::PricedPod)> {
        self.pods
            .values()
            .filter_map(|p| {
                let agent = p.agent.clone()?;
                Some((
                    agent,
                    crate::budget::PricedPod {
                        name: format!("{}/{}", p.namespace, p.name),
                        requests: p.demand.requests,
                        node: p.node.clone(),
                        node_selector: p.node_selector.clone(),
                    },
                ))
            })
            .collect()
    }

    /// Every node with its price, and the price labels that could not be read.
    pub fn priced_nodes(&self) -> (Vec<crate::budget::PricedNode>, Vec<String>) {
        let mut problems = Vec::new();
        let nodes = self
            .nodes
            .iter()
            .map(|(name, r)| {
                let (node, problem) = crate::budget::PricedNode::from_labels(name, &r.labels, r.allocatable);
                problems.extend(problem);
                node
            })
            .collect();
        (nodes, problems)
    }

    /// Pods the watch has seen bound to a node (for the auction loop's capacity).
    pub fn bound_pods(&self) -> Vec<PodRecord> {
        self.pods.values().filter(|p| p.node.is_some()).cloned().collect()
    }

    /// Node states for the given names (unknown names are skipped and returned separately).
    pub fn node_states(&self, names: &[String]) -> (Vec<NodeState>, Vec<String>) {
        let mut states = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        // Requests of pods only tentatively assumed, per node (see `NodeState::tentative`).
        let mut guessed: BTreeMap<&str, (Resources, u32)> = BTreeMap::new();
        for uid in self.tentative.keys() {
            if let Some(rec) = self.assumed.get(uid)
                && let Some(node) = rec.node.as_deref()
            {
                let g = guessed.entry(node).or_default();
                g.0 = g.0.saturating_add(rec.demand.requests);
                g.1 += 1;
            }
        }
        for name in names {
            let (Some(rec), Some(pos)) = (self.nodes.get(name), self.node_position(name)) else {
                unknown.push(name.clone());
                continue;
            };
            let load = self.load.get(name);
            states.push(NodeState {
                name: name.clone(),
                labels: rec.labels.clone(),
                position: pos.clone(),
                allocatable: rec.allocatable,
                requested: load.map(|l| l.requested).unwrap_or_default(),
                tentative: guessed.get(name.as_str()).map(|g| g.0).unwrap_or_default(),
                tentative_pods: guessed.get(name.as_str()).map(|g| g.1).unwrap_or_default(),
                pods: load.map_or(0, |l| l.pods),
                max_pods: rec.max_pods,
                tenants: load.map(|l| self.tenants_on(l)).unwrap_or_default(),
                hourly_cost: rec.hourly_cost,
                spot: rec.spot,
                energy_class: rec.energy_class,
            });
        }
        (states, unknown)
    }

    /// Tenants with pods in `load`, and whether any of their pods there demands strict isolation.
    fn tenants_on(&self, load: &NodeLoad) -> BTreeMap<String, bool> {
        let mut tenants: BTreeMap<String, bool> = BTreeMap::new();
        for (ns, (_, strict)) in &load.namespaces {
            *tenants.entry(self.tenant_of(ns)).or_default() |= *strict > 0;
        }
        tenants
    }

    /// The full placement policy for a pod of `key` right now: the controller's policy plus the
    /// current per-domain replica counts and the redundancy cap.
    pub fn policy_for(&self, key: &AgentKey) -> Option<AgentPolicy> {
        let mut policy = self.policies.get(key)?.clone();
        let spread_label = self.failure_domain_key();
        let mut by_domain: BTreeMap<String, u32> = BTreeMap::new();
        for (_, node) in self.agent_pods(key) {
            if let Some(domain) = node
                .as_ref()
                .and_then(|n| self.nodes.get(n))
                .and_then(|r| r.labels.get(&spread_label))
            {
                *by_domain.entry(domain.clone()).or_default() += 1;
            }
        }
        policy.replica_positions = self.agent_replica_positions(key);
        policy.max_per_domain = self
            .spares
            .get(key)
            .map(|rule| self.spread_plan(*rule, policy.replicas).max_per_domain);
        policy.spread_label = Some(spread_label);
        if let Some(active) = policy.active_regions.as_mut() {
            active.regions = self
                .agent_records(key)
                .filter(|r| !r.demand.standby)
                .filter_map(|r| r.node.as_ref())
                .filter_map(|n| self.nodes.get(n)?.labels.get(&active.label).cloned())
                .collect();
        }
        policy.replicas_by_domain = by_domain;
        if let Some(loc) = policy.locality.as_mut() {
            loc.data_node_positions = self
                .nodes
                .iter()
                .filter(|(_, r)| loc.data_nodes.matches(&r.labels))
                .filter_map(|(n, _)| self.node_position(n).cloned())
                .collect();
        }
        Some(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cpu_millis: u64) -> PodRecord {
        PodRecord {
            namespace: "team".into(),
            name: "web-1".into(),
            node: None,
            demand: PodDemand {
                requests: Resources {
                    cpu_millis,
                    memory_bytes: 0,
                },
                tenant: None,
                strict_isolation: false,
                standby: false,
            },
            agent: None,
            node_selector: BTreeMap::new(),
        }
    }

    fn cpu_on(view: &View, node: &str) -> u64 {
        view.load.get(node).map(|l| l.requested.cpu_millis).unwrap_or(0)
    }

    fn pod_json(ns: &str, uid: &str, node: &str, labels: serde_json::Value, owner: Option<&str>) -> Pod {
        let owners = owner.map(|agent| {
            serde_json::json!([{"apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
                                "name": agent, "uid": "a-uid", "controller": true}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": ns, "uid": uid, "labels": labels, "ownerReferences": owners},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn namespace(name: &str, tenant: Option<&str>) -> Namespace {
        let labels = tenant.map(|t| serde_json::json!({crate::labels::TENANT_LABEL: t}));
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    #[test]
    fn tenants_on_a_node_come_from_namespaces_and_isolation_only_from_agent_controlled_pods() {
        let mut view = View::default();
        view.apply_namespace(&namespace("shop", Some("acme")));
        view.apply_namespace(&namespace("shop-2", Some("acme")));
        let forged =
            serde_json::json!({crate::labels::TENANT_LABEL: "victim", ISOLATION_LABEL: "strict", AGENT_LABEL: "web"});
        // A hand-made pod claiming another tenant and strict isolation: its namespace's tenant,
        // not strict.
        view.apply_pod(&pod_json("intruder", "p1", "n1", forged.clone(), None));
        let on = |v: &View, node: &str| v.tenants_on(&v.load.get(node).cloned().unwrap_or_default());
        assert_eq!(on(&view, "n1"), BTreeMap::from([("intruder".to_string(), false)]));
        // The same labels on a pod the agent `web` controls: strict, for the namespace's tenant.
        view.apply_pod(&pod_json("shop", "p2", "n2", forged.clone(), Some("web")));
        view.apply_pod(&pod_json("shop-2", "p3", "n2", serde_json::json!({}), None));
        assert_eq!(on(&view, "n2"), BTreeMap::from([("acme".to_string(), true)]));
        // An owner that is another agent than the label names grants nothing.
        view.apply_pod(&pod_json("shop", "p4", "n3", forged, Some("db")));
        assert_eq!(on(&view, "n3"), BTreeMap::from([("acme".to_string(), false)]));
        // Relabelling a namespace moves its pods to the new tenant at once.
        view.apply_namespace(&namespace("intruder", Some("globex")));
        assert_eq!(on(&view, "n1"), BTreeMap::from([("globex".to_string(), false)]));
        // The demand of a pod being placed carries its namespace's tenant.
        let rec = pod_record(&pod_json("shop", "p5", "", serde_json::json!({}), None)).unwrap();
        assert_eq!(view.demand_of(&rec).tenant.as_deref(), Some("acme"));
        assert_eq!(view.known_tenant("nowhere"), None);
        assert_eq!(view.tenant_of("nowhere"), "nowhere");
    }

    #[test]
    fn nodes_are_embedded_in_the_configured_dimension_and_a_change_rebases_the_view() {
        let mut view = View::default();
        view.apply_node(&node("n1"));
        view.apply_node(&node("n2"));
        view.reembed();
        assert_eq!(view.dimension(), Some(DEFAULT_DIMENSION));
        let basis = view.basis();
        // Re-embedding in the same dimension (a node change) keeps the basis.
        view.apply_node(&node("n3"));
        view.reembed();
        assert_eq!(view.basis(), basis);
        view.settings.dimension = 8;
        view.reembed();
        assert_eq!(view.dimension(), Some(8));
        assert!(view.node_position("n3").is_some_and(|p| p.len() == 8));
        assert_ne!(view.basis(), basis);
    }

    #[test]
    fn positions_follow_a_latency_fit_of_exactly_the_current_nodes_and_fall_back_to_labels() {
        use crate::placement::measured::LatencyFit;
        let mut view = View::default();
        view.settings.dimension = 2;
        for n in ["n1", "n2", "n3"] {
            view.apply_node(&node(n));
        }
        view.reembed();
        let labels_basis = view.basis();
        let at = |x: f64| vec![x, 0.0];
        let fit = LatencyFit {
            positions: BTreeMap::from([("n1".into(), at(0.1)), ("n2".into(), at(0.2)), ("n3".into(), at(0.3))]),
            points: BTreeMap::new(),
            dimension: 2,
            ms_per_unit: 1.0,
            pairs: 3,
            held_out_pairs: 1,
            held_out_median_relative_error: 0.1,
            held_out_p90_relative_error: 0.2,
            incremental: false,
            ignored_entries: 0,
        };
        view.set_latency(LatencyState::Fitted(Arc::new(fit.clone())));
        assert_eq!(view.node_position("n2"), Some(&at(0.2)));
        assert!(view.positions_follow_latency());
        assert_ne!(view.basis(), labels_basis);
        // A node the fit does not cover: every node goes back to its label position.
        view.apply_node(&node("n4"));
        view.reembed();
        assert!(!view.positions_follow_latency());
        assert_ne!(view.node_position("n2"), Some(&at(0.2)));
        // A problem drops the fit.
        view.set_latency(LatencyState::Problem("LatencyPartial".into(), "n4 (0)".into()));
        assert!(view.latency_fit().is_none());
    }

    #[test]
    fn a_forgotten_placement_frees_its_room() {
        let mut view = View::default();
        view.assume("uid-1", record(1000), "n1", true);
        assert_eq!(cpu_on(&view, "n1"), 1000);
        view.forget("uid-1");
        assert_eq!(cpu_on(&view, "n1"), 0);
        // Forgetting twice, or a pod never assumed, changes nothing.
        view.forget("uid-1");
        view.forget("uid-2");
        assert_eq!(cpu_on(&view, "n1"), 0);
    }

    #[test]
    fn node_states_show_which_load_is_a_tentative_guess_until_the_bind() {
        let mut view = View::default();
        view.apply_node(&node("n1"));
        view.reembed();
        view.assume("uid-1", record(500), "n1", true);
        view.assume("uid-2", record(700), "n1", false);
        let (states, _) = view.node_states(&["n1".to_string()]);
        assert_eq!(
            (
                states[0].requested.cpu_millis,
                states[0].tentative.cpu_millis,
                states[0].tentative_pods
            ),
            (1200, 500, 1)
        );
        view.assume("uid-1", record(500), "n1", false);
        let (states, _) = view.node_states(&["n1".to_string()]);
        assert_eq!(
            (states[0].requested.cpu_millis, states[0].tentative.cpu_millis),
            (1200, 0)
        );
    }

    #[test]
    fn stale_tentative_placements_expire_without_a_new_assumption() {
        let mut view = View::default();
        view.assume("uid-1", record(500), "n1", true);
        view.assume("uid-2", record(700), "n1", false);
        view.expire_tentative(std::time::Instant::now() + std::time::Duration::from_secs(31));
        // The tentative one is gone; the one bound by the extender stays until the watch sees it.
        assert_eq!(cpu_on(&view, "n1"), 700);
    }

    fn pod(uid: &str, node: Option<&str>, cpu: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "team", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .expect("a valid pod")
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("a valid node")
    }

    #[test]
    fn a_reader_is_not_held_up_by_a_writer_and_sees_the_view_as_the_last_finished_write_left_it() {
        let shared = SharedView::default();
        shared.write().expect("no writer panicked").apply_node(&node("n1"));
        let before = shared.read();
        let mut writer = shared.write().expect("no writer panicked");
        writer.apply_node(&node("n2"));
        // With the writer's turn still open (same thread: a lock shared with readers would
        // never return here), a reader gets the view of the last finished write.
        let during = shared.read();
        assert_eq!(during.node_names().collect::<Vec<_>>(), ["n1"]);
        drop(writer);
        assert_eq!(shared.read().node_names().collect::<Vec<_>>(), ["n1", "n2"]);
        // A copy a reader holds does not change under it.
        assert_eq!(before.node_count(), 1);
        assert_eq!(during.node_count(), 1);
    }

    /// What [`View::agent_pods`] answered before the per-agent index: a scan of every pod.
    fn agent_pods_by_scan(view: &View, key: &AgentKey) -> Vec<(String, Option<String>)> {
        let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
        for rec in view.pods.values().chain(view.assumed.values()) {
            if rec.agent.as_ref() == Some(key) {
                let entry = out.entry(rec.name.clone()).or_default();
                if rec.node.is_some() {
                    *entry = rec.node.clone();
                }
            }
        }
        out.into_iter().collect()
    }

    #[test]
    fn an_agents_pods_from_the_index_are_what_a_scan_of_every_pod_finds_through_any_sequence_of_changes() {
        use rand::{Rng, SeedableRng};
        let agents = [AgentKey::new("ns", "a"), AgentKey::new("ns", "b")];
        let pod = |rng: &mut rand_chacha::ChaCha8Rng| -> Pod {
            let uid = format!("u{}", rng.random_range(0..10));
            let mut labels = serde_json::Map::new();
            match rng.random_range(0..3) {
                0 => {}
                i => {
                    labels.insert(AGENT_LABEL.into(), ["a", "b"][i - 1].into());
                }
            }
            let node = ["", "n1", "n2"][rng.random_range(0..3)];
            let phase = ["Pending", "Running", "Succeeded"][rng.random_range(0..3)];
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("pod-{uid}"), "namespace": "ns", "uid": uid, "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let mut checked = 0;
        for seed in 0..40 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut view = View::default();
            for _ in 0..60 {
                match rng.random_range(0..6) {
                    0 | 1 => view.apply_pod(&pod(&mut rng)),
                    2 => view.delete_pod(&pod(&mut rng)),
                    3 => {
                        let p = pod(&mut rng);
                        if let Some(mut rec) = pod_record(&p) {
                            rec.node = None;
                            let node = ["n1", "n2"][rng.random_range(0..2)];
                            view.assume(p.metadata.uid.as_deref().unwrap(), rec, node, rng.random_bool(0.5));
                        }
                    }
                    4 => view.forget(&format!("u{}", rng.random_range(0..10))),
                    _ => {
                        let listed: Vec<Pod> = (0..rng.random_range(0..6)).map(|_| pod(&mut rng)).collect();
                        view.replace_pods(&listed);
                    }
                }
                for key in &agents {
                    let scanned = agent_pods_by_scan(&view, key);
                    assert_eq!(view.agent_pods(key), scanned, "seed {seed}, agent {key}");
                    checked += usize::from(!scanned.is_empty());
                }
                // Nothing is listed for an agent that has no pod left.
                for (key, uids) in &view.by_agent {
                    assert!(
                        !uids.is_empty() && !agent_pods_by_scan(&view, key).is_empty(),
                        "seed {seed}: {key} listed empty"
                    );
                }
            }
        }
        // The sequences do give agents pods (the comparison is not between two empty lists).
        assert!(checked > 500, "only {checked} non-empty comparisons");
    }

    #[test]
    fn a_writer_that_panics_publishes_nothing_and_later_writers_are_told() {
        let shared = SharedView::default();
        shared.write().expect("no writer panicked").apply_node(&node("n1"));
        let clone = shared.clone();
        let outcome = std::thread::spawn(move || {
            let mut writer = clone.write().expect("no writer panicked");
            writer.apply_node(&node("n2"));
            panic!("a writer fails half-way");
        })
        .join();
        assert!(outcome.is_err());
        assert_eq!(shared.read().node_names().collect::<Vec<_>>(), ["n1"]);
        assert!(
            shared.write().is_err(),
            "the half-changed view must not be handed to the next writer silently"
        );
        // Dropping that error (as every caller does) publishes nothing either.
        assert_eq!(shared.read().node_names().collect::<Vec<_>>(), ["n1"]);
        let Err(poisoned) = shared.write() else {
            panic!("the view is poisoned")
        };
        let mut forced = poisoned.into_inner();
        forced.apply_node(&node("n3"));
        drop(forced);
        assert_eq!(shared.read().node_names().collect::<Vec<_>>(), ["n1"]);
    }

    #[test]
    fn a_node_whose_lease_misses_two_renewals_is_failed_until_it_renews_again() {
        let mut view = View::default();
        view.apply_node(&node("n1"));
        view.apply_node(&node("n2"));
        let beat = |ms| {
            Some(Heartbeat {
                renewed_ms: ms,
                duration_s: 40,
            })
        };
        view.apply_heartbeat("n1", beat(0));
        view.apply_heartbeat("n2", beat(15_000));
        // A Lease of a node the view does not know is never judged.
        view.apply_heartbeat("gone", beat(0));
        let epoch = view.failed_epoch();
        // 20 s without a renewal is half the 40 s Lease: not yet silent.
        assert_eq!(view.mark_silent(20_000), (vec![], vec![]));
        assert!(!view.node_failed("n1"));
        assert_eq!(view.failed_epoch(), epoch);
        let (went, back) = view.mark_silent(21_000);
        assert_eq!((went, back), (vec!["n1".to_string()], vec![]));
        assert!(view.node_failed("n1") && !view.node_failed("n2") && !view.node_failed("gone"));
        assert_eq!(view.failed_epoch(), epoch + 1);
        let reason = view.failed_reason("n1").unwrap();
        assert!(reason.contains("not renewed for 21 s"), "{reason}");
        // Judged again with nothing new: no health change.
        view.mark_silent(22_000);
        assert_eq!(view.failed_epoch(), epoch + 1);
        // It renews: healthy again.
        view.apply_heartbeat("n1", beat(23_000));
        assert_eq!(view.mark_silent(23_500), (vec![], vec!["n1".to_string()]));
        assert!(!view.node_failed("n1") && view.failed_reason("n1").is_none());
        // A deleted Lease (a kubelet re-registering) is no evidence of silence.
        view.apply_heartbeat("n2", None);
        view.apply_heartbeat("n3", beat(59_000));
        view.apply_node(&node("n3"));
        assert_eq!(view.mark_silent(60_000), (vec!["n1".to_string()], vec![]));
    }

    #[test]
    fn when_no_node_renews_at_all_nothing_is_judged_silent() {
        let mut view = View::default();
        for n in ["n1", "n2"] {
            view.apply_node(&node(n));
        }
        let beat = |ms| {
            Some(Heartbeat {
                renewed_ms: ms,
                duration_s: 40,
            })
        };
        view.apply_heartbeat("n1", beat(0));
        view.apply_heartbeat("n2", beat(5_000));
        // The control plane was away for a minute: every Lease is stale, none is judged.
        assert_eq!(view.mark_silent(60_000), (vec![], vec![]));
        assert!(!view.node_failed("n1") && !view.node_failed("n2"));
        // Control: one node renews again, the other's silence now counts.
        view.apply_heartbeat("n2", beat(59_000));
        assert_eq!(view.mark_silent(60_000), (vec!["n1".to_string()], vec![]));
    }

    fn zoned_node(name: &str, zone: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {crate::labels::ZONE_LABEL: zone}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
        }))
        .expect("a valid node")
    }

    fn pod_with_signs(uid: &str, node: &str, restarts: [i32; 2], reason: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "team", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": if reason.is_some() { "Failed" } else { "Running" },
                "reason": reason,
                "containerStatuses": [
                    {"name": "a", "restartCount": restarts[0], "ready": true, "image": "i", "imageID": ""},
                    {"name": "b", "restartCount": restarts[1], "ready": true, "image": "i", "imageID": ""}
                ]
            }
        }))
        .expect("a valid pod")
    }

    #[test]
    fn restarts_and_kubelet_evictions_are_counted_per_domain_from_when_the_view_first_saw_the_pod() {
        let mut view = View::default();
        let key = view.failure_domain_key();
        let in_domain = |name: &str, domain: &str| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {key.as_str(): domain}}}))
                .expect("a valid node")
        };
        view.apply_node(&in_domain("n1", "a"));
        view.apply_node(&in_domain("n2", "a"));
        view.apply_node(&in_domain("n3", "b"));
        let totals = |view: &View| -> Vec<(String, u64, u64)> {
            view.domain_facts(0)
                .into_iter()
                .map(|f| (f.domain, f.restarts_total, f.evictions_total))
                .collect()
        };
        // First sight: 4 + 1 old restarts are not news.
        view.apply_pod(&pod_with_signs("p1", "n1", [4, 1], None));
        view.apply_pod(&pod_with_signs("p2", "n3", [0, 0], None));
        assert_eq!(totals(&view), vec![("a".into(), 0, 0), ("b".into(), 0, 0)]);
        // Both containers restart again: +2 on domain a, summed over containers.
        view.apply_pod(&pod_with_signs("p1", "n1", [5, 2], None));
        assert_eq!(totals(&view), vec![("a".into(), 2, 0), ("b".into(), 0, 0)]);
        // The same status again adds nothing.
        view.apply_pod(&pod_with_signs("p1", "n1", [5, 2], None));
        // The kubelet evicts p2: once, however often the update is seen.
        view.apply_pod(&pod_with_signs("p2", "n3", [0, 0], Some("Evicted")));
        view.apply_pod(&pod_with_signs("p2", "n3", [0, 0], Some("Evicted")));
        assert_eq!(totals(&view), vec![("a".into(), 2, 0), ("b".into(), 0, 1)]);
        // A pod that failed for another reason is no eviction.
        view.apply_pod(&pod_with_signs("p3", "n2", [0, 0], None));
        view.apply_pod(&pod_with_signs("p3", "n2", [0, 0], Some("OutOfcpu")));
        assert_eq!(totals(&view), vec![("a".into(), 2, 0), ("b".into(), 0, 1)]);
        // Deleted pods leave the totals as they were (they count what happened).
        view.delete_pod(&pod_with_signs("p1", "n1", [5, 2], None));
        assert_eq!(totals(&view)[0], ("a".into(), 2, 0));
    }

    #[test]
    fn a_termination_notice_has_the_deadline_its_taint_carries_or_implies_and_none_otherwise() {
        let mut view = View::default();
        let tainted = |name: &str, key: &str, value: Option<&str>| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"taints": [{"key": key, "value": value, "effect": "NoSchedule"}]}
            }))
            .expect("a valid node")
        };
        let now = || u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap();
        let before = now();
        view.apply_node(&tainted(
            "itn",
            "aws-node-termination-handler/spot-itn",
            Some("spot-itn-9a8b7c"),
        ));
        let after = now();
        let d = view.termination_deadline("itn").unwrap();
        assert_eq!(d.source, "EC2 spot two-minute notice");
        assert!((before + 120_000..=after + 120_000).contains(&d.at_ms), "{d:?}");
        // Seen again (a status update): the deadline does not move.
        view.apply_node(&tainted(
            "itn",
            "aws-node-termination-handler/spot-itn",
            Some("spot-itn-9a8b7c"),
        ));
        assert_eq!(view.termination_deadline("itn"), Some(d));
        // A written future Unix time, sooner than the notice: used, and named in the reason.
        let soon = (after / 1000) + 60;
        view.apply_node(&tainted("soon", "karpenter.sh/disrupted", Some(&soon.to_string())));
        let d = view.termination_deadline("soon").unwrap();
        assert_eq!((d.at_ms, d.source.as_str()), (soon * 1000, "taint value"));
        let reason = view.failed_reason("soon").unwrap();
        assert!(
            reason.contains("deadline") && reason.contains("taint value"),
            "{reason}"
        );
        // Karpenter's taint without a value: no deadline (still a failed node).
        view.apply_node(&tainted("k", "karpenter.sh/disrupted", None));
        assert_eq!(view.termination_deadline("k"), None);
        assert!(view.node_failed("k"));
        // The taint goes: no deadline any more.
        view.apply_node(&node("itn"));
        assert_eq!(view.termination_deadline("itn"), None);
    }

    #[test]
    fn a_termination_notice_taint_fails_the_node_and_an_unrelated_taint_does_not() {
        let mut view = View::default();
        let tainted = |name: &str, key: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {crate::labels::SPOT_LABEL: "true"}},
                "spec": {"taints": [{"key": key, "value": "1796400000", "effect": "NoSchedule"}]}
            }))
            .expect("a valid node")
        };
        view.apply_node(&node("spot-1"));
        view.apply_node(&tainted("spot-2", "dedicated"));
        let epoch = view.failed_epoch();
        assert!(!view.node_failed("spot-2") && view.failed_reason("spot-2").is_none());
        view.apply_node(&tainted("spot-1", "aws-node-termination-handler/spot-itn"));
        assert!(view.node_failed("spot-1"));
        assert_eq!(view.failed_epoch(), epoch + 1);
        let reason = view.failed_reason("spot-1").unwrap();
        assert!(
            reason.contains("taint aws-node-termination-handler/spot-itn"),
            "{reason}"
        );
        // Karpenter's disruption taint too.
        view.apply_node(&tainted("spot-2", "karpenter.sh/disrupted"));
        assert!(view.node_failed("spot-2"));
    }

    #[test]
    fn a_silent_node_takes_the_nodes_of_its_failure_domain_that_missed_one_renewal_with_it() {
        let mut view = View::default();
        view.settings.topology_keys = vec![crate::labels::ZONE_LABEL.into(), crate::labels::HOSTNAME_LABEL.into()];
        for (name, zone) in [("a1", "za"), ("a2", "za"), ("a3", "za"), ("b1", "zb")] {
            view.apply_node(&zoned_node(name, zone));
        }
        let beat = |ms| {
            Some(Heartbeat {
                renewed_ms: ms,
                duration_s: 40,
            })
        };
        view.apply_heartbeat("a1", beat(0));
        view.apply_heartbeat("a2", beat(8_000));
        view.apply_heartbeat("a3", beat(15_000));
        view.apply_heartbeat("b1", beat(8_000));
        // Before a1 misses its second renewal, a2 and b1 (one missed each) are not judged.
        assert_eq!(view.mark_silent(19_000), (vec![], vec![]));
        // a1 is silent; a2 missed one renewal in a1's zone: silent too. a3 (renewed 6 s ago)
        // stays; b1 missed as many renewals as a2, but in another zone: control.
        let (went, _) = view.mark_silent(21_000);
        assert_eq!(went, vec!["a1".to_string(), "a2".to_string()]);
        assert!(!view.node_failed("a3") && !view.node_failed("b1"));
    }

    #[test]
    fn a_silent_node_takes_the_nodes_of_its_region_that_missed_one_renewal_in_its_other_zones() {
        let mut view = View::default();
        view.settings.topology_keys = vec![
            crate::labels::REGION_LABEL.into(),
            crate::labels::ZONE_LABEL.into(),
            crate::labels::HOSTNAME_LABEL.into(),
        ];
        for (name, region, zone) in [
            ("a1", "r0", "r0-za"),
            ("b1", "r0", "r0-zb"),
            ("b2", "r0", "r0-zb"),
            ("c1", "r1", "r1-zc"),
        ] {
            let node: Node = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {
                    crate::labels::REGION_LABEL: region, crate::labels::ZONE_LABEL: zone}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
            }))
            .expect("a valid node");
            view.apply_node(&node);
        }
        let beat = |ms| {
            Some(Heartbeat {
                renewed_ms: ms,
                duration_s: 40,
            })
        };
        // Region r0 goes dark after a1 renewed at 0 and b1 at 8 s; b2 renewed at 15 s; c1 (in
        // r1) missed one renewal as b1 did.
        view.apply_heartbeat("a1", beat(0));
        view.apply_heartbeat("b1", beat(8_000));
        view.apply_heartbeat("b2", beat(15_000));
        view.apply_heartbeat("c1", beat(8_000));
        // a1 is silent; b1, in another zone of a1's region, missed one renewal: silent too. b2
        // (renewed 6 s ago) stays, and so does c1, in another region: control.
        let (went, _) = view.mark_silent(21_000);
        assert_eq!(went, vec!["a1".to_string(), "b1".to_string()]);
        assert!(!view.node_failed("b2") && !view.node_failed("c1"));
        // The auction is not offered the silent nodes' capacity.
        let offered: Vec<String> = view.schedulable_nodes().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(offered, ["b2", "c1"]);
    }

    #[test]
    fn a_zone_whose_nodes_all_failed_is_not_a_failure_domain_to_spread_over() {
        let mut view = View::default();
        view.settings.topology_keys = vec![crate::labels::ZONE_LABEL.into(), crate::labels::HOSTNAME_LABEL.into()];
        for (name, zone) in [("a1", "za"), ("a2", "za"), ("b1", "zb"), ("c1", "zc")] {
            view.apply_node(&zoned_node(name, zone));
        }
        let beat = |ms| {
            Some(Heartbeat {
                renewed_ms: ms,
                duration_s: 40,
            })
        };
        for n in ["a1", "a2", "b1", "c1"] {
            view.apply_heartbeat(n, beat(10_000));
        }
        assert_eq!(view.failure_domains(), 3);
        // n_plus_1 of 4 over 3 zones: at most 2 per zone.
        assert_eq!(view.spread_plan(SpreadRule::DomainLoss(1), 4).max_per_domain, 2);
        // Zone za goes dark (one node of it is enough to take the other, see mark_silent).
        view.apply_heartbeat("a1", beat(0));
        view.apply_heartbeat("a2", beat(0));
        view.apply_heartbeat("b1", beat(21_000));
        view.apply_heartbeat("c1", beat(21_000));
        view.mark_silent(21_000);
        assert_eq!(view.failure_domains(), 2);
        assert_eq!(view.spread_plan(SpreadRule::DomainLoss(1), 4).max_per_domain, 4);
    }

    #[test]
    fn node_states_share_the_labels_of_the_node_record_instead_of_copying_them() {
        let mut view = View::default();
        view.apply_node(&zoned_node("a1", "za"));
        view.reembed();
        let names = ["a1".to_string()];
        let (first, _) = view.node_states(&names);
        let (second, _) = view.node_states(&names);
        assert!(Arc::ptr_eq(&first[0].labels, &second[0].labels));
        assert_eq!(
            first[0].labels.get(crate::labels::ZONE_LABEL).map(String::as_str),
            Some("za")
        );
        // A relabelled node gets a new map; states built before keep the old one.
        view.apply_node(&zoned_node("a1", "zb"));
        let (third, _) = view.node_states(&names);
        assert_eq!(
            third[0].labels.get(crate::labels::ZONE_LABEL).map(String::as_str),
            Some("zb")
        );
        assert_eq!(
            first[0].labels.get(crate::labels::ZONE_LABEL).map(String::as_str),
            Some("za")
        );
    }

    #[test]
    fn the_filter_needs_the_write_lock_only_when_an_assumption_must_be_dropped() {
        let mut view = View::default();
        let now = std::time::Instant::now();
        // A pod seen for the first time, nothing assumed: nothing to forget.
        assert!(!view.must_forget(Some("uid-1"), now));
        assert!(!view.must_forget(None, now));
        // Its own earlier assumption (tentative or bound) must go before it is filtered again.
        view.assume("uid-1", record(100), "n1", true);
        assert!(view.must_forget(Some("uid-1"), now));
        view.assume("uid-1", record(100), "n1", false);
        assert!(view.must_forget(Some("uid-1"), now));
        assert!(!view.must_forget(Some("uid-2"), now));
        // Another pod's tentative placement, once older than 30 s, must expire.
        view.assume("uid-3", record(100), "n1", true);
        assert!(!view.must_forget(Some("uid-2"), now));
        let later = now + std::time::Duration::from_secs(31);
        assert!(view.must_forget(Some("uid-2"), later));
        view.expire_tentative(later);
        assert!(!view.must_forget(Some("uid-2"), later));
    }

    #[test]
    fn two_binds_racing_for_the_last_slot_of_a_failure_domain_admit_only_the_first() {
        let mut view = View::default();
        view.settings.topology_keys = vec![crate::labels::ZONE_LABEL.into(), crate::labels::HOSTNAME_LABEL.into()];
        for (name, zone) in [("a1", "za"), ("a2", "za"), ("b1", "zb")] {
            view.apply_node(&zoned_node(name, zone));
        }
        view.reembed();
        // n_plus_1 of 1 replica over 2 zones: 2 pods, at most 1 per zone.
        let key = AgentKey::new("team", "web");
        let policy = AgentPolicy {
            replicas: 1,
            ..AgentPolicy::default()
        };
        view.set_policy(key.clone(), policy, Some(SpreadRule::DomainLoss(1)));
        let replica = |name: &str| PodRecord {
            name: name.into(),
            agent: Some(key.clone()),
            ..record(100)
        };
        // Prioritize guessed b1 for the first pod; the scheduler bound a1 instead.
        view.assume("uid-1", replica("web-1"), "b1", true);
        view.reserve("uid-1", replica("web-1"), "a1").expect("zone za is empty");
        // The second pod's filter ran before that bind and also chose zone za.
        let err = view.reserve("uid-2", replica("web-2"), "a2").unwrap_err();
        assert!(err.contains("node a2 no longer fits pod team/web-2"), "{err}");
        assert!(err.contains("topology.kubernetes.io/zone=za already holds 1"), "{err}");
        // Control: the other zone takes it, and the refused claim left nothing behind.
        view.reserve("uid-2", replica("web-2"), "b1").expect("zone zb is free");
        let placed: BTreeMap<String, Option<String>> = view.agent_pods(&key).into_iter().collect();
        assert_eq!(placed.get("web-1"), Some(&Some("a1".to_string())));
        assert_eq!(placed.get("web-2"), Some(&Some("b1".to_string())));
        assert_eq!(cpu_on(&view, "a2"), 0);
    }

    #[test]
    fn a_pod_relist_removes_pods_deleted_during_the_gap_with_their_load_and_assumptions() {
        let mut view = View::default();
        view.apply_pod(&pod("kept", Some("n1"), "100m"));
        view.apply_pod(&pod("gone", Some("n1"), "200m"));
        view.apply_pod(&pod("pending-gone", None, "300m"));
        view.assume("pending-gone", record(300), "n2", false);
        view.assume("never-seen", record(400), "n2", true);
        assert_eq!((cpu_on(&view, "n1"), cpu_on(&view, "n2")), (300, 700));

        let removed = view.replace_pods(&[pod("kept", Some("n1"), "100m"), pod("new", Some("n2"), "50m")]);

        assert_eq!(removed, 2);
        assert_eq!(view.pod_count(), 2);
        // Positive control: the listed pod keeps its load; the new one is added.
        assert_eq!(cpu_on(&view, "n1"), 100);
        // The assumption about a pod seen before and now gone is dropped; one about a pod the
        // view never saw (maybe newer than the list) stays.
        assert_eq!(cpu_on(&view, "n2"), 450);
    }

    #[test]
    fn a_first_pod_list_into_an_empty_view_adds_everything_and_removes_nothing() {
        let mut view = View::default();
        assert_eq!(
            view.replace_pods(&[pod("a", Some("n1"), "100m"), pod("b", None, "1")]),
            0
        );
        assert_eq!(view.pod_count(), 2);
        assert_eq!(cpu_on(&view, "n1"), 100);
    }

    #[test]
    fn a_node_relist_removes_nodes_deleted_during_the_gap() {
        let mut view = View::default();
        view.apply_node(&node("n1"));
        view.apply_node(&node("n2"));
        assert_eq!(view.replace_nodes(&[node("n1"), node("n3")]), 1);
        let names: Vec<&String> = view.node_names().collect();
        assert_eq!(names, ["n1", "n3"]);
        // A first list into an empty view removes nothing.
        assert_eq!(View::default().replace_nodes(&[node("n1")]), 0);
    }
}
