//! `OrchestrationStrategy` (namespaced): how MOM scales, places and protects the agents it
//! applies to — triggers that select agents, a priority to break ties, and scaling, placement and
//! resilience policies.
//!
//! An agent uses the strategy named by its `strategyRef`, or else the highest-priority strategy of
//! its namespace whose triggers match it (see `validate::select_strategy`). CEL rejects
//! `minReplicas > maxReplicas`, a custom target without a query, and out-of-range numbers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired behaviour for the agents this strategy applies to.
// Several `printcolumn(...)` entries repeat `type_ = ...`; clippy mistakes them for duplicate attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mom.hypersync.io",
    version = "v1alpha1",
    kind = "OrchestrationStrategy",
    plural = "orchestrationstrategies",
    singular = "orchestrationstrategy",
    shortname = "ostrat",
    category = "mom",
    namespaced,
    status = "OrchestrationStrategyStatus",
    derive = "PartialEq",
    selectable = ".spec.scaling.method",
    doc = "How MOM scales, places and protects the GeometricAgents it applies to.",
    printcolumn(
        name = "Priority",
        type_ = "integer",
        json_path = ".spec.priority",
        description = "Higher wins"
    ),
    printcolumn(
        name = "Method",
        type_ = "string",
        json_path = ".spec.scaling.method",
        description = "Scaling method"
    ),
    printcolumn(
        name = "Min",
        type_ = "integer",
        json_path = ".spec.scaling.minReplicas",
        description = "Minimum replicas"
    ),
    printcolumn(
        name = "Max",
        type_ = "integer",
        json_path = ".spec.scaling.maxReplicas",
        description = "Maximum replicas"
    ),
    printcolumn(
        name = "Agents",
        type_ = "integer",
        json_path = ".status.matchedAgentCount",
        description = "Agents currently using this strategy"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct OrchestrationStrategySpec {
    /// When the strategy applies to an agent that has no `strategyRef`. Empty lists match anything.
    #[serde(default)]
    pub triggers: Triggers,
    /// Among matching strategies the highest priority wins; two matching at the same top priority
    /// is an error reported on the agent.
    #[serde(default)]
    pub priority: i32,
    /// How replica counts are chosen.
    pub scaling: ScalingSpec,
    /// Where replicas go.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// Redundancy and failover.
    #[serde(default)]
    pub resilience: ResilienceSpec,
}

/// Conditions under which the strategy applies. All given dimensions must match (AND); within a
/// dimension one matching entry suffices (OR); an empty list matches anything.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Triggers {
    /// Workload types the strategy applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub workload_types: Vec<WorkloadType>,
    /// Cluster resource-pressure levels during which the strategy applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub resource_pressure: Vec<ResourcePressure>,
    /// Anomaly flags (raised by anomaly detection on an agent) that activate the strategy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub anomaly_flags: Vec<String>,
}

/// The kind of work an agent does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadType {
    /// Run-to-completion jobs; throughput matters more than latency.
    Batch,
    /// Continuous stream processing.
    Streaming,
    /// Request/response services with a latency SLA.
    Interactive,
    /// Model training; long-running, accelerator-heavy, checkpointed.
    MlTraining,
}

/// How close the cluster is to its allocatable capacity.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ResourcePressure {
    /// Plenty of free capacity.
    Low,
    /// Capacity is getting used.
    Medium,
    /// Demand near capacity; scarce capacity is auctioned.
    High,
    /// Demand exceeds capacity.
    Critical,
}

/// How replica counts are chosen, within [minReplicas, maxReplicas].
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("spec.scaling.minReplicas must be <= spec.scaling.maxReplicas")
    .field_path(".minReplicas"))]
#[x_kube(validation = Rule::new("(has(self.method) && self.method == 'learned') == has(self.learnedModel)")
    .message("spec.scaling.learnedModel is required for method learned, and only then")
    .field_path(".learnedModel"))]
pub struct ScalingSpec {
    /// `predictive` (forecast + MPC), `reactive` (the HPA algorithm), `learned` (a policy
    /// trained by `mom train scaling`, see learnedModel) or `manual` (spec.replicas).
    #[serde(default)]
    pub method: ScalingMethod,
    /// Method `learned` only: the key, in the ConfigMap `mom-scaling-models` of this strategy's
    /// namespace, holding the model JSON that `mom train scaling --out` wrote. It is read at
    /// every scaler tick; while it is missing or not a valid model the agents' replicas are left
    /// unchanged and their ScalingReady condition is False with reason ModelUnavailable. Every
    /// decision's receipt records the whole model, so `mom verify --replay` needs no ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')")
        .message("spec.scaling.learnedModel must be a ConfigMap key (letters, digits, '-', '_', '.')"))]
    #[schemars(length(min = 1, max = 253))]
    pub learned_model: Option<String>,
    /// Fewest replicas MOM will run; 0…1000.
    #[serde(default = "default_min_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("spec.scaling.minReplicas must be between 0 and 1000"))]
    pub min_replicas: i32,
    /// Most replicas MOM will run; 1…1000 and ≥ minReplicas.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("spec.scaling.maxReplicas must be between 1 and 1000"))]
    pub max_replicas: i32,
    /// Seconds to wait after a scaling action before the next one; 0…86400 (a day).
    #[serde(default = "default_cooldown_seconds")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400").message("spec.scaling.cooldownSeconds must be between 0 and 86400"))]
    pub cooldown_seconds: i32,
    /// Metrics scaling aims at; replicas are sized for the most demanding one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub targets: Vec<ScalingTarget>,
    /// Forecast and MPC horizon in seconds (predictive only); 1…3600.
    #[serde(default = "default_horizon_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600").message("spec.scaling.horizonSeconds must be between 1 and 3600"))]
    pub horizon_seconds: i32,
}

fn default_min_replicas() -> i32 {
    1
}

fn default_cooldown_seconds() -> i32 {
    60
}

fn default_horizon_seconds() -> i32 {
    900
}

/// How replica counts are chosen.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMethod {
    /// Forecast demand over the horizon and choose replicas by model-predictive control.
    Predictive,
    /// The Kubernetes HPA algorithm on the current metrics.
    #[default]
    Reactive,
    /// Exactly `spec.replicas` of the agent (within min/max).
    Manual,
    /// A trained policy (`mom train scaling`) chooses the headroom over the current demand;
    /// scale-down is stabilised over 5 minutes. The model comes from `learnedModel`.
    Learned,
}

/// One metric to scale on and its target value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.metric == 'custom') == has(self.query)")
    .message("spec.scaling.targets: query is required for a custom metric, and only then")
    .field_path(".query"))]
#[x_kube(validation = Rule::new("self.metric == 'custom' || self.target <= 1.0")
    .message("spec.scaling.targets: a cpu or memory target is a utilisation fraction in (0, 1]")
    .field_path(".target"))]
pub struct ScalingTarget {
    /// `cpu` or `memory` (average utilisation of requests), or `custom` (a Prometheus query).
    pub metric: TargetMetric,
    /// PromQL returning the agent's total demand as one series, e.g.
    /// `sum(rate(http_requests_total{app="web"}[1m]))` (custom metrics only); replicas are sized
    /// so that each carries about `target` of it (like an HPA `AverageValue` target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Target value: a fraction in (0, 1] for cpu and memory, the demand one replica carries for
    /// custom; > 0.
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.scaling.targets.target must be > 0"))]
    pub target: f64,
}

/// The metric a scaling target refers to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TargetMetric {
    /// CPU usage over CPU requests, averaged over replicas.
    Cpu,
    /// Memory usage over memory requests, averaged over replicas.
    Memory,
    /// A Prometheus query.
    Custom,
}

/// Where the replicas of matching agents are placed. Applied by MOM's scheduler extender when a
/// pod is scheduled, to the nodes kube-scheduler asks it about (all nodes below 100 nodes;
/// above, kube-scheduler samples them unless its `percentageOfNodesToScore` is 100). Running
/// pods are moved only by MOM's descheduler (off by default), and only to a node that passes
/// avoidNodes, maxDistance and required locality and is not in a region ranked below the pod's
/// current one in preferredRegions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Attraction to points of the ball: other agents, nodes, explicit coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometric_affinity: Option<GeometricAffinity>,
    /// Regions in order of preference, as values of the region label: the first entry of the
    /// MomConfig `spec.geometry.topologyKeys` (the root of the topology tree;
    /// `topology.kubernetes.io/region` by default). A hard tier: a pod goes to a node of the first
    /// listed region where some node passes every other check (room, avoidNodes, locality,
    /// isolation, maxDistance, redundancy), else of the second, and so on; only when no listed
    /// region has such a node may any node be used. Inside the chosen region the usual score picks
    /// the node, so peers, nearAgents, nearNodes and coordinates (through the agent's target) break
    /// ties there and never pull a pod out of it. An agent with none of those targets the mean of
    /// the first listed region's nodes. MOM's descheduler never moves a running pod into a region
    /// ranked below the one it runs in (an unlisted region, or a node without the label, ranks
    /// last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub preferred_regions: Vec<String>,
    /// Node names never used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub avoid_nodes: Vec<String>,
    /// Data locality: the nodes that hold the agent's data, required or preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
}

/// The target point of an agent: a weighted mean of what it should be near.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeometricAffinity {
    /// Names of agents (same namespace) whose replicas this agent should be near.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub near_agents: Vec<String>,
    /// Nodes this agent should be near.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_nodes: Option<LabelSelector>,
    /// An explicit target point in the ball, 2…512 entries: one per dimension the operator embeds
    /// nodes in (MomConfig `default` `spec.geometry.dimension`, 64 without it; shown as its
    /// `status.embeddingDimension` and as the length of an agent's `status.position.coordinates`),
    /// with Euclidean norm < 1/√κ. Checked again whenever the dimension changes. Another length is ignored (the target is chosen as if no coordinates were given)
    /// and reported as condition Ready=False, reason `CoordinatesWrongDimension`, on the strategy
    /// and on every agent using it, with a Warning Event; a point on or outside the boundary is
    /// projected inside and reported as `CoordinatesOutsideBall`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 2, max = 512))]
    pub coordinates: Vec<f64>,
    /// Hard limit on the hyperbolic distance between a replica's node and the target; > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.placement.geometricAffinity.maxDistance must be > 0"))]
    pub max_distance: Option<f64>,
}

/// Data-locality constraint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Locality {
    /// Label selector over Node labels choosing the nodes that hold the data (`matchLabels`, and
    /// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, as in a Deployment's
    /// selector; `{}` matches every node), evaluated against the nodes' labels at each scheduling
    /// decision.
    #[x_kube(validation = Rule::new("!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])")
        .message("spec.placement.locality.dataNodes.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist"))]
    pub data_nodes: LabelSelector,
    /// `required`: pods go only to nodes `dataNodes` matches; when none of them has room the pod
    /// stays Pending and its FailedScheduling event names this strategy and the selector.
    /// `preferred` (default): a matching node with room always wins over every other node
    /// (extender score 6…10 against 0…4); among the others, nodes nearer in the ball to the nearest
    /// matching node score higher.
    #[serde(default)]
    pub mode: LocalityMode,
}

/// How strictly data locality is enforced.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LocalityMode {
    /// Pods go only to nodes `dataNodes` matches. When none of them has room the pod stays
    /// Pending, and its FailedScheduling event gives every other node the reason
    /// "spec.placement.locality (mode required) of OrchestrationStrategy NS/NAME: node does not
    /// match dataNodes SELECTOR".
    Required,
    /// A matching node with room always wins over every other node (extender score 6…10 against
    /// 0…4); among the others, those closer in the ball to the nearest matching node score higher.
    #[default]
    Preferred,
}

/// Fault tolerance of the matching agents.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResilienceSpec {
    /// Replicas kept beyond the agent's `spec.replicas` and how they are spread over failure
    /// domains so that losing domains keeps the demand. Failure domains are the values of the
    /// deepest MomConfig `spec.geometry.topologyKeys` entry other than `kubernetes.io/hostname`
    /// (`topology.kubernetes.io/zone` with the default keys).
    #[serde(default)]
    pub redundancy: Redundancy,
    /// How traffic moves when a replica fails. Every pod of the agent carries the label
    /// `mom.hypersync.io/role` (`active` or `standby`); point Services at `role=active`.
    #[serde(default)]
    pub failover: Failover,
    /// What happens to a matching agent's spec, or to this strategy's, when an anomaly flag is
    /// raised on the agent (condition `Anomalous`) soon after that spec changed.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// What happens to a matching agent while an anomaly flag is up on it (condition
    /// `Anomalous`, from MomConfig `spec.anomaly.agentSeries`).
    #[serde(default)]
    pub quarantine: Quarantine,
}

/// Isolation of a flagged agent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Quarantine {
    /// Nothing beyond the flag and the condition.
    #[default]
    None,
    /// While a flag is up: a NetworkPolicy `mom-quarantine-<agent>` (owned by the agent) selects
    /// the agent's pods and allows no ingress and no egress, no new replicas are created
    /// (deletions still happen), and condition `Quarantined` is True. When the flags clear (or
    /// the mode changes) the policy is deleted. Each change is first an `agent.quarantine`
    /// receipt, then the write, then an Event (`Quarantined`, `QuarantineLifted`). The policy
    /// takes effect only where the cluster's network plugin enforces NetworkPolicies.
    Isolate,
}

/// Rollback of an agent's spec, or of its strategy's, to the last one under which it ran without
/// an anomaly flag.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// `manual` (the default): nothing happens by itself; `mom rollback AGENT --to SEQ` (or
    /// `mom rollback strategy/NAME --to SEQ`) puts a recorded spec back by hand. `auto`: when a
    /// flag is raised on a matching agent at most `withinMinutes` after a spec changed, the
    /// newer of the two changes before the raise is blamed, the agent's spec (all but
    /// `replicas`) or this strategy's (its first recorded spec is not a change); a raise is
    /// acted on once. The operator puts back the newest earlier recorded spec of the blamed
    /// object (signed `agent.change` / `strategy.change` receipt) that differs and under which no
    /// flag was up (for the strategy: on no agent it matches now); first an `agent.rollback` /
    /// `strategy.rollback` receipt, then the spec write (an agent keeps its `replicas`), then
    /// the Event `RolledBack` on that object. Nothing is rolled back when there is no such
    /// earlier spec. A strategy's spec is recorded when an agent it matches is reconciled under a
    /// new generation of it, and nothing is recorded at MomConfig verification level `none`.
    /// Anomaly flags come from MomConfig `spec.anomaly.agentSeries`.
    #[serde(default)]
    pub mode: RollbackMode,
    /// How long after a spec change a raised flag is blamed on it; 1…1440 (a day), default 30.
    #[serde(default = "default_rollback_within_minutes")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1440").message("spec.resilience.rollback.withinMinutes must be between 1 and 1440"))]
    pub within_minutes: i32,
}

impl Default for RollbackSpec {
    fn default() -> Self {
        Self {
            mode: RollbackMode::Manual,
            within_minutes: default_rollback_within_minutes(),
        }
    }
}

fn default_rollback_within_minutes() -> i32 {
    30
}

/// Whether a flagged agent's spec is rolled back by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Only by hand (`mom rollback`).
    #[default]
    Manual,
    /// By the operator, as `spec.resilience.rollback` describes.
    Auto,
}

/// Spare replicas beyond demand, and their spread. The agent's `status.spareReplicas` says how
/// many it runs; when there are too few failure domains for the promise, its `Degraded`
/// condition is True with reason `InsufficientFailureDomains` and the replicas are spread
/// evenly instead.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Redundancy {
    /// No spares and no spread rule: `spec.replicas` pods, placed by score alone.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Losing any one failure domain keeps `spec.replicas` running: with D = `spec.replicas`
    /// and Z domains, at most c = ⌈D / (Z − 1)⌉ pods per domain and D + c pods in all (needs
    /// at least 2 domains).
    #[serde(rename = "n_plus_1")]
    NPlus1,
    /// Losing any two failure domains keeps `spec.replicas` running: c = ⌈D / (Z − 2)⌉ per
    /// domain, D + 2c pods in all (needs at least 3 domains).
    #[serde(rename = "n_plus_2")]
    NPlus2,
    /// No spares; at most ⌊(D − 1) / 2⌋ pods per domain, so a strict majority of the replicas
    /// survives losing any one domain (needs at least 3 replicas and enough domains).
    #[serde(rename = "quorum")]
    Quorum,
}

/// How traffic moves when a replica fails.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failover {
    /// Standbys in other regions (values of the first MomConfig `topologyKeys` entry) than
    /// every active replica: `spec.replicas` actives plus the redundancy rule's spares as
    /// standbys (at least 1), created once the actives are placed. When actives are lost or on
    /// a failed node (Ready not True, or labelled `mom.hypersync.io/unhealthy=true`), ready
    /// standbys are relabelled `active` at once and the failed actives deleted (receipt
    /// `agent.failover` first, Event `FailedOver`); new standbys are then made.
    #[serde(rename = "active_passive")]
    ActivePassive,
    /// All replicas serve (`role=active`), the redundancy rule's spares too.
    #[default]
    #[serde(rename = "active_active")]
    ActiveActive,
    /// As `active_passive`, but a standby may run anywhere, also beside the actives.
    #[serde(rename = "n_plus_1")]
    NPlus1,
}

/// Observed state of a strategy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrchestrationStrategyStatus {
    /// Names of the agents currently using this strategy (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_agents: Vec<String>,
    /// Number of agents currently using this strategy.
    #[serde(default)]
    pub matched_agent_count: i32,
    /// `Ready` and `Degraded`, following the Kubernetes condition conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
