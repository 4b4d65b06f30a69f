//! `MomConfig` (cluster-scoped): the global settings of MOM — orchestration mode, objective
//! weights, geometry of the Poincaré ball, receipt verification, the decision loops' tick and budget.
//!
//! The operator acts on the one object named [`ACTIVE_NAME`] (`default`); any other MomConfig is
//! marked ignored in its status. CEL rules in the generated CRD reject objective weights outside
//! [0,1] or not summing to 1 (±1e-6), curvature ≤ 0, dimension outside 2…512, and a `sampleRate`
//! given without `level: sample` (or missing with it).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{self, ConditionStatus, DesiredCondition};

/// The name of the only MomConfig the operator acts on.
pub const ACTIVE_NAME: &str = "default";

/// Tolerance on the sum of the objective weights (the CEL rule uses the same literal).
pub use crate::placement::OBJECTIVE_SUM_TOLERANCE;

/// Whether the operator acts on this MomConfig (only the one named [`ACTIVE_NAME`]).
pub fn is_active(config: &MomConfig) -> bool {
    config.metadata.name.as_deref() == Some(ACTIVE_NAME)
}

/// The `Ready` condition of a MomConfig the operator ignores because of its name.
pub fn ignored_condition(name: &str) -> DesiredCondition {
    DesiredCondition::new(
        conditions::READY,
        ConditionStatus::False,
        conditions::reason::IGNORED,
        format!("MomConfig {name} is ignored: the operator only acts on the MomConfig named {ACTIVE_NAME}"),
    )
}

/// `SpecSupported`: whether every field set in the spec takes effect. Fields accepted for
/// compatibility but not acted on yet are named (False, `NotImplemented`), so a user who sets
/// one is told instead of silently getting nothing.
pub fn spec_supported_condition(spec: &MomConfigSpec) -> DesiredCondition {
    let mut unsupported = Vec::new();
    if spec.mode != OrchestrationMode::Centralized {
        let mode = serde_json::to_value(spec.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        unsupported.push(format!(
            "spec.mode {mode} is not implemented: one Lease holder acts for the whole cluster (centralized)"
        ));
    }
    if unsupported.is_empty() {
        DesiredCondition::new(
            conditions::SPEC_SUPPORTED,
            ConditionStatus::True,
            conditions::reason::SUPPORTED,
            "every field set in the spec takes effect",
        )
    } else {
        DesiredCondition::new(
            conditions::SPEC_SUPPORTED,
            ConditionStatus::False,
            conditions::reason::NOT_IMPLEMENTED,
            unsupported.join("; "),
        )
    }
}

/// Desired state of MOM as a whole.
// Several `printcolumn(...)` entries repeat `type_ = ...`; clippy mistakes them for duplicate attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mom.hypersync.io",
    version = "v1alpha1",
    kind = "MomConfig",
    plural = "momconfigs",
    singular = "momconfig",
    shortname = "momcfg",
    category = "mom",
    status = "MomConfigStatus",
    derive = "PartialEq",
    doc = "Global configuration of MOM. The operator acts on the one named `default`; others are marked ignored.",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "Orchestration mode"
    ),
    printcolumn(
        name = "Routing",
        type_ = "string",
        json_path = ".spec.geometry.routingAlgorithm",
        description = "How replicas are mapped to nodes"
    ),
    printcolumn(
        name = "Verification",
        type_ = "string",
        json_path = ".spec.verification.level",
        description = "Receipt verification level"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the configuration is in effect"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.nodesEmbedded",
        description = "Nodes embedded in the ball"
    ),
    printcolumn(
        name = "Dim",
        type_ = "integer",
        json_path = ".status.embeddingDimension",
        description = "Coordinates per node position"
    ),
    printcolumn(
        name = "Chain",
        type_ = "integer",
        json_path = ".status.receiptChainHead.sequence",
        description = "Sequence number of the newest receipt"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MomConfigSpec {
    /// Version of the MOM configuration format this object was written for (informational, e.g. "2.0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The orchestration paradigm; only `autonomous_geometric_distributed_orchestration` exists.
    #[serde(default)]
    pub paradigm: Paradigm,
    /// How the operator replicas coordinate. Only `centralized` (the default) is implemented: one
    /// replica, the Lease holder, acts for the whole cluster. `federated`, `fully_distributed` and
    /// `geometric_mesh` are accepted but act as `centralized`, and set condition
    /// `SpecSupported=False` (reason `NotImplemented`) naming the field.
    #[serde(default)]
    pub mode: OrchestrationMode,
    /// Weights of the four objectives in the scheduler extender's node scores (prioritize); each
    /// in [0,1], summing to 1. The failover planner also scales its cost weights by
    /// performance, cost and reliability. The scaler, the auction and the descheduler do not
    /// read them; `mom train scaling --objectives` takes them as the learned scaling policy's
    /// reward weight.
    pub objectives: Objectives,
    /// The hyperbolic space nodes and workloads are placed in, and how pods are routed to nodes.
    #[serde(default)]
    pub geometry: GeometrySpec,
    /// Which actions produce receipts and how they are signed.
    #[serde(default)]
    pub verification: VerificationSpec,
    /// Seconds between two ticks of the operator's decision loops: the scaler, the auction and
    /// the descheduler (1…3600, default 15). A change applies from each loop's next tick, without
    /// a restart. A loop whose command-line flag is given (`--scaler-tick-seconds`,
    /// `--auction-tick-seconds`, `--deschedule-tick-seconds`) keeps the flag's period instead.
    /// The status (3 s) and checkpoint (1 s) loops keep their own periods. The periods in force
    /// are the operator's metric `mom_loop_period_seconds`.
    #[serde(default = "default_tick_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600").message("spec.tickSeconds must be between 1 and 3600"))]
    pub tick_seconds: i32,
    /// Spending limit on the pods of every GeometricAgent (unset: no limit). Enforced by the
    /// agent controller when it creates pods; see `maxHourlyCost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Anomaly detection on Prometheus series (unset: none). Needs the operator's
    /// `--prometheus-url`; see [`AnomalySpec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalySpec>,
    /// Forecasts per node pool of the price (and optionally carbon intensity and spot capacity)
    /// of one replica-hour, which batch agents (GeometricAgent `spec.batch`) are planned over.
    /// MOM reads no price feed: these values are the forecast. Unset: batch agents are not
    /// scaled (their condition `ScalingReady` False, reason `NoPricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingSpec>,
}

/// `spec.pricing`: one forecast per node pool, one value per slot of `slotSeconds` counted
/// from the Unix epoch (so with 3600, entry `h` is the UTC hour `h`); a list shorter than the
/// horizon repeats (24 hourly values: a daily profile).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PricingSpec {
    /// Length of one slot, seconds (60…86400).
    #[x_kube(validation = Rule::new("self >= 60 && self <= 86400").message("spec.pricing.slotSeconds must be between 60 and 86400"))]
    pub slot_seconds: i32,
    /// Forecast per pool: the node label `mom.hypersync.io/pool` value (`default` for nodes
    /// without it).
    #[schemars(length(max = 64))]
    pub pools: std::collections::BTreeMap<String, PoolForecastSpec>,
}

/// One pool's forecast (`spec.pricing.pools.NAME`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolForecastSpec {
    /// Price of one replica-hour per slot (0…10⁹; 1…10080 values).
    #[schemars(length(min = 1, max = 10080), inner(range(min = 0.0, max = 1000000000.0)))]
    pub price: Vec<f64>,
    /// gCO₂e of one replica-hour per slot (≥ 0); weighed against the price by the objectives'
    /// `sustainability` and `cost`. Empty: not forecast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10080), inner(range(min = 0.0, max = 1000000000.0)))]
    pub carbon: Vec<f64>,
    /// Replicas the pool can host for one batch agent per slot (spot capacity). Unset: as
    /// many as `spec.batch.maxReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10080), inner(range(min = 0)))]
    pub capacity: Option<Vec<i32>>,
}

impl PricingSpec {
    /// The core's forecasts ([`crate::batch::Pricing`]).
    pub fn to_core(&self) -> crate::batch::Pricing {
        crate::batch::Pricing {
            slot_seconds: f64::from(self.slot_seconds),
            pools: self
                .pools
                .iter()
                .map(|(name, p)| {
                    (
                        name.clone(),
                        crate::batch::PoolForecast {
                            price: p.price.clone(),
                            carbon: p.carbon.clone(),
                            capacity: p
                                .capacity
                                .as_ref()
                                .map(|c| c.iter().map(|v| u32::try_from(*v).unwrap_or(0)).collect()),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The anomaly loop: every `stepSeconds` the leader runs each series' range query over the last
/// `windowMinutes` (one point per `stepSeconds`), scores each resulting series with the streaming
/// detector from a fresh state, and raises the series' flag on a node or agent while a point
/// among the last `clearPoints` scored at least `threshold`. A node with any flag is labelled
/// `mom.hypersync.io/anomalous=true` (its flags in the annotation `mom.hypersync.io/anomaly-flags`),
/// which the descheduler evacuates and the failover planner counts; an agent's flags are what
/// `triggers.anomalyFlags` of an OrchestrationStrategy match. Every flag change is first an
/// `anomaly.flag` receipt (the window inline, replayed by `mom verify --replay`), then an Event
/// (`AnomalyDetected` / `AnomalyCleared`) on the node or agent; a raised flag counts in
/// `mom_anomalies_total{scope,flag}`. A series whose query fails changes no flag; the failure
/// is named in this MomConfig's condition `AnomalyDetection`. `nodeQuarantine: cordon` also
/// taints and cordons a flagged node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.windowMinutes * 60 / self.stepSeconds <= 4096").message("spec.anomaly: windowMinutes * 60 / stepSeconds must be at most 4096 points"))]
pub struct AnomalySpec {
    /// Whether the loop runs (default true). When false no series is queried and no flag
    /// changes: labels already set stay until the loop runs again.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Series about nodes (at most 32, names unique): each query's result series carry a `node` label naming the node.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("spec.anomaly.nodeSeries: names must be unique"))]
    pub node_series: Vec<AnomalySeries>,
    /// Series about GeometricAgents (at most 32, names unique): each query's result series carry the labels `namespace`
    /// and `agent` (the agent's name).
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("spec.anomaly.agentSeries: names must be unique"))]
    pub agent_series: Vec<AnomalySeries>,
    /// Minutes of history scored at every step (1…1440, default 30): the detector's warm-up
    /// (its first 60 points never raise a flag) and what a new leader reads back.
    #[serde(default = "default_window_minutes")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1440").message("spec.anomaly.windowMinutes must be between 1 and 1440"))]
    pub window_minutes: i32,
    /// Seconds between two points of the window and between two passes of the loop
    /// (1…3600, default 15).
    #[serde(default = "default_step_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600").message("spec.anomaly.stepSeconds must be between 1 and 3600"))]
    pub step_seconds: i32,
    /// A point whose anomaly score (in [0, 1]) is at least this raises the flag (default 0.7).
    /// A new record of the window scores about 0.5, which early in a window is common; one far
    /// beyond everything seen scores nearer 1.
    #[serde(default = "default_threshold")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("spec.anomaly.threshold must be in (0, 1]"))]
    pub threshold: f64,
    /// Points in a row scoring below the threshold that clear a flag (1…1000, default 20).
    #[serde(default = "default_clear_points")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("spec.anomaly.clearPoints must be between 1 and 1000"))]
    pub clear_points: i32,
    /// What happens to a node while it has a flag (default `none`): `none` only labels it (the
    /// descheduler evacuates MOM's pods from it); `cordon` also keeps every scheduler off it.
    #[serde(default)]
    pub node_quarantine: NodeQuarantine,
    /// Most nodes in quarantine at once under `nodeQuarantine: cordon`: a count (`2`) or a
    /// percentage of the cluster's nodes (`"20%"`, rounded up: 1 of 3 nodes). Default `"20%"`.
    /// Flagged nodes are admitted in name order; one beyond the cap is only labelled anomalous
    /// (not tainted or cordoned) and gets a Warning Event `NodeQuarantineHeldBack` when it
    /// becomes held back, and it is
    /// quarantined at a later pass once fewer nodes are. Nodes in quarantine stay so when the cap
    /// is lowered, until their flags clear. Each quarantine receipt records the cap and the
    /// number of other nodes in quarantine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')").message("spec.anomaly.maxQuarantinedNodes must be a count >= 0 or a percentage from 0% to 100%"))]
    pub max_quarantined_nodes: Option<IntOrString>,
}

/// The default of `spec.anomaly.maxQuarantinedNodes`, in percent of the cluster's nodes.
pub const DEFAULT_MAX_QUARANTINED_PERCENT: u32 = 20;

impl AnomalySpec {
    /// The cap on nodes in quarantine at once for a cluster of `nodes` nodes (see
    /// `maxQuarantinedNodes`; the schema admits only counts ≥ 0 and `0%`…`100%`).
    pub fn quarantine_limit(&self, nodes: usize) -> Option<u32> {
        use crate::decisions::node_quarantine::quarantine_limit;
        match &self.max_quarantined_nodes {
            Some(IntOrString::Int(n)) => quarantine_limit(Some((*n).max(0) as u32), None, nodes),
            Some(IntOrString::String(p)) => {
                let percent = p
                    .trim_end_matches('%')
                    .parse::<u32>()
                    .unwrap_or(DEFAULT_MAX_QUARANTINED_PERCENT);
                quarantine_limit(None, Some(percent.min(100)), nodes)
            }
            None => quarantine_limit(None, Some(DEFAULT_MAX_QUARANTINED_PERCENT), nodes),
        }
    }
}

/// Quarantine of flagged nodes (MomConfig `spec.anomaly.nodeQuarantine`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeQuarantine {
    /// Flagged nodes are labelled only; a quarantine left by `cordon` is lifted at the next pass.
    #[default]
    None,
    /// While a node has any flag: taint `mom.hypersync.io/quarantined:NoSchedule` and cordon
    /// (`spec.unschedulable: true`), so no scheduler places new pods there; running pods stay
    /// (evacuation is the descheduler's). A node someone else cordoned keeps their cordon (MOM
    /// adds only the taint and never lifts it); the label `mom.hypersync.io/quarantined` says
    /// which (`cordoned`: MOM's cordon; `tainted`: someone else's) and, when the flags clear or
    /// the mode is `none`, MOM removes the taint and the label and lifts only its own cordon.
    /// At most `maxQuarantinedNodes` nodes at once. Each change is first a `node.quarantine`
    /// receipt, then the node patch, then an Event (`NodeQuarantined`, `NodeQuarantineLifted`).
    /// With `enabled: false` nothing changes.
    Cordon,
}

impl NodeQuarantine {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeQuarantine::None => "none",
            NodeQuarantine::Cordon => "cordon",
        }
    }
}

/// One series the anomaly loop watches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnomalySeries {
    /// Name of the series (unique in its list; named in receipts, Events and conditions).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// PromQL range-queried over the window; one result series per node or agent (1 to 4096
    /// characters).
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// The flag an anomaly of this series raises (e.g. `latency-high`): letters, digits, `-`,
    /// `_` and `.`, 1 to 63 characters.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')").message("flag must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"))]
    pub flag: String,
    /// How the series is scored: `nab` (default; the streaming surprise detector: spikes and
    /// new records) or `shift` (a two-sided CUSUM over standard scores: a lasting move to a new
    /// level raises the flag, a one-point spike does not; its score is the CUSUM's evidence).
    /// `threshold` and `clearPoints` apply to either score; the choice is recorded in each
    /// `anomaly.flag` receipt (absent for `nab`).
    #[serde(default)]
    pub detector: AnomalyDetector,
}

/// How an anomaly series is scored.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyDetector {
    /// The streaming surprise detector: spikes and new records.
    #[default]
    Nab,
    /// The level-shift CUSUM: a lasting move to a new level.
    Shift,
}

impl From<AnomalyDetector> for crate::anomaly::flag::Detector {
    fn from(d: AnomalyDetector) -> Self {
        match d {
            AnomalyDetector::Nab => crate::anomaly::flag::Detector::Nab,
            AnomalyDetector::Shift => crate::anomaly::flag::Detector::Shift,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_window_minutes() -> i32 {
    30
}
fn default_step_seconds() -> i32 {
    15
}
fn default_threshold() -> f64 {
    0.7
}
fn default_clear_points() -> i32 {
    20
}

fn default_tick_seconds() -> i32 {
    15
}

/// The orchestration paradigm (kept for compatibility with the MOM v2 configuration format).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Paradigm {
    /// Autonomous, geometric, distributed orchestration — the only paradigm.
    #[default]
    AutonomousGeometricDistributedOrchestration,
}

/// How the operator's replicas coordinate their decisions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OrchestrationMode {
    /// One active replica, chosen by Lease leader election (the only mode implemented).
    #[default]
    Centralized,
    /// Shards (e.g. one per region), each with its own Lease.
    Federated,
    /// Every replica proposes; peers agree by geometric consensus.
    FullyDistributed,
    /// Full hyperbolic mesh: geometric consensus weighted by distance in the ball.
    GeometricMesh,
}

/// Weights of the objectives. Each is in [0,1] and the four sum to 1 within 1e-6.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "self.performance + self.cost + self.reliability + self.sustainability >= 0.999999 && self.performance + self.cost + self.reliability + self.sustainability <= 1.000001"
).message("spec.objectives: performance + cost + reliability + sustainability must sum to 1 (within 1e-6)"))]
pub struct Objectives {
    /// Weight of performance: latency to peers and data, throughput, SLA.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.objectives.performance must be in [0, 1]"))]
    pub performance: f64,
    /// Weight of cost: node price (spot nodes at 0.3 of their price).
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.objectives.cost must be in [0, 1]"))]
    pub cost: f64,
    /// Weight of reliability: spread across failure domains, redundancy.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.objectives.reliability must be in [0, 1]"))]
    pub reliability: f64,
    /// Weight of sustainability: node energy and carbon class.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.objectives.sustainability must be in [0, 1]"))]
    pub sustainability: f64,
}

impl Objectives {
    /// Sum of the four weights (should be 1 within [`OBJECTIVE_SUM_TOLERANCE`]).
    pub fn sum(&self) -> f64 {
        self.performance + self.cost + self.reliability + self.sustainability
    }
}

/// The Poincaré ball of dimension n with curvature −κ, and the routing of pods to nodes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeometrySpec {
    /// κ > 0: the ball has constant curvature −κ; larger κ clusters points more tightly.
    #[serde(default = "default_curvature")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.geometry.curvature must be > 0"))]
    pub curvature: f64,
    /// Dimension n of the ball, 2…512 (default 64): nodes are embedded with n coordinates (their
    /// topology tree by Sarkar's construction, siblings spread over the n-dimensional sphere of
    /// directions, so a larger n distorts wide levels less; 2…3 is the classic disk), every
    /// agent's `status.position.coordinates` has n entries, and strategy
    /// `geometricAffinity.coordinates` must have n entries. A change re-embeds every node and
    /// recomputes every agent's target within seconds; `status.embeddingDimension`,
    /// `embeddingDistortion`, `embeddingMaxDistortion` and `embeddingMap` report the embedding in
    /// force. Extender cost per
    /// request grows linearly with n. Without this MomConfig the operator uses 64.
    #[serde(default = "default_dimension")]
    #[x_kube(validation = Rule::new("self >= 2 && self <= 512").message("spec.geometry.dimension must be between 2 and 512"))]
    pub dimension: i32,
    /// How the replicas of an agent are mapped to nodes around its target point.
    #[serde(default)]
    pub routing_algorithm: RoutingAlgorithm,
    /// Node labels, from the root of the topology tree to the leaves, used to embed nodes.
    #[serde(default = "default_topology_keys")]
    #[schemars(length(max = 16))]
    pub topology_keys: Vec<String>,
    /// Measured node-to-node latencies that node positions are fitted to; when absent only the
    /// topology labels count. Exactly one of `configMap` and `nodeAnnotation` is set.
    ///
    /// Latencies are milliseconds in (0, 60000]: JSON numbers, the diagonal ignored, both
    /// directions of a pair averaged, entries naming nodes that do not exist ignored (counted in
    /// `status.latencyFit.ignoredEntries`). The operator reads the source every 3 s; when it, the
    /// nodes or the dimension changed it fits node positions in the ball of `dimension` dimensions
    /// to the latencies (starting from the previous fit, else from the topology-label layout, so
    /// it is refined incrementally), scores the fit on a held-out 20% of the pairs
    /// (`status.latencyFit`), and from then on every node position (placement, agent targets, the
    /// descheduler) follows the measured latencies instead of the labels. Condition
    /// `MeasuredLatency` says which: True `Fitted`; True `NotConfigured` without a source; Unknown
    /// `Fitting` until a fit of the current nodes is done; False with the field, the entry and the
    /// value when the source is missing (`LatencySourceNotFound`), cannot be read
    /// (`LatencySourceUnreadable`, e.g. no RBAC permission),
    /// not JSON of this shape (`LatencyMalformed`), holds a value that is not a latency
    /// (`LatencyValueInvalid`), leaves a node with latencies to fewer than 2 others or has fewer
    /// than 3 pairs (`LatencyPartial`), or there are more than 1000 nodes (`LatencyTooLarge`); nodes
    /// are then placed by their labels only. A node added later without latencies returns all
    /// nodes to the label layout until the source covers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_source: Option<LatencySource>,
}

fn default_curvature() -> f64 {
    1.0
}

fn default_dimension() -> i32 {
    64
}

fn default_topology_keys() -> Vec<String> {
    vec![
        "topology.kubernetes.io/region".into(),
        "topology.kubernetes.io/zone".into(),
        "kubernetes.io/hostname".into(),
    ]
}

impl Default for GeometrySpec {
    fn default() -> Self {
        Self {
            curvature: default_curvature(),
            dimension: default_dimension(),
            routing_algorithm: RoutingAlgorithm::default(),
            topology_keys: default_topology_keys(),
            latency_source: None,
        }
    }
}

/// How pods of an agent are mapped to nodes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RoutingAlgorithm {
    /// Each replica to the feasible node nearest to the agent's target point.
    #[default]
    GreedyForwarding,
    /// Replicas spread over the k nearest feasible nodes, balanced by load.
    MultipathHyperbolic,
    /// Continuous optimisation of replica positions, then snapped to nodes.
    GradientFlow,
}

/// Where measured node-to-node latencies come from. Exactly one source is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.nodeAnnotation)")
    .message("spec.geometry.latencySource: set exactly one of configMap or nodeAnnotation"))]
pub struct LatencySource {
    /// A ConfigMap key holding the whole matrix as JSON `{"from-node": {"to-node": milliseconds}}`.
    /// The operator needs `get` on that ConfigMap (the Helm chart grants it when its values set
    /// `momConfig.spec.geometry.latencySource.configMap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKeyRef>,
    /// The key of a node annotation holding, on each node, that node's latencies to the others as
    /// JSON `{"to-node": milliseconds}`. A node without the annotation has only the latencies
    /// other nodes give to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_annotation: Option<String>,
}

/// A key in a ConfigMap.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
    /// Key within the ConfigMap's data.
    pub key: String,
}

/// Receipt settings. `sampleRate` is required exactly when `level` is `sample`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.level) && self.level == 'sample') == has(self.sampleRate)")
    .message("spec.verification.sampleRate is required when level is sample, and only then")
    .field_path(".sampleRate"))]
pub struct VerificationSpec {
    /// `none`: no receipts; `sample`: a deterministic sample, still one chain; `full_audit`: every
    /// action is recorded before it is taken.
    #[serde(default)]
    pub level: VerificationLevel,
    /// Fraction of actions recorded when `level` is `sample`, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("spec.verification.sampleRate must be in (0, 1]"))]
    pub sample_rate: Option<f64>,
    /// The Secret key holding the Ed25519 seed every receipt is signed with: 64 hex digits (as
    /// the operator generates it) or the 32 raw bytes. Unset: Secret `mom-receipt-signing-key`,
    /// key `ed25519-seed`, in the operator's namespace. When the named Secret does not exist the
    /// operator creates it with a new random seed. Its public key is published in the ConfigMap
    /// `mom-receipt-public-keys` (operator's namespace), beside every key used before. Pointing
    /// this at another key, or replacing the seed, rotates the key: the chain records the
    /// hand-over (a `configure` receipt of kind `receipts.key_rotation`, signed by the old key)
    /// and later receipts are signed by the new one. A Secret without this key, or with anything
    /// but a seed under it: nothing is signed (at `full_audit` actions wait), condition
    /// `SigningKeyReady=False` names the Secret, the key and the problem, with a Warning Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SecretKeyRef>,
}

/// How much of the operator's activity is recorded as receipts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum VerificationLevel {
    /// No receipts are written.
    None,
    /// A deterministic sample of actions is recorded, still as one unbroken chain.
    Sample,
    /// Every action is recorded, and the receipt is persisted before the action is taken.
    #[default]
    FullAudit,
}

/// A key in a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Namespace of the Secret; the operator's namespace when omitted. The operator needs `get`
    /// (and `create`, to generate it) on Secrets there: the chart grants it in its own
    /// namespace only, for the Secret names it is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret's data holding the Ed25519 seed (64 hex digits or 32 raw bytes).
    pub key: String,
}

/// Cost ceiling of the pods of every GeometricAgent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Maximum cost per hour of the pods of every GeometricAgent, in the currency of the node
    /// prices; >= 0. A pod costs its node's price per hour (label `mom.hypersync.io/hourly-cost`,
    /// 1 when absent or not a number >= 0, such a label named in `BudgetExceeded`; times 0.3 on
    /// a node labelled `mom.hypersync.io/spot=true`) times the larger of its shares of the
    /// node's allocatable cpu and memory (requests); a pod not bound yet counts at the dearest
    /// node its nodeSelector admits (any node when none does).
    ///
    /// Scale-ups: when the agent controller would create pods (toward `spec.replicas`, as set by
    /// you or the scaler, within any auction quota) beyond what this affords, it creates only
    /// those that fit: first a `scale` receipt of decision `budget.refused` (inputs inline,
    /// replayed by `mom verify --replay`) and a Warning Event `BudgetExceeded` on the agent, once
    /// per distinct refusal; this MomConfig's condition `BudgetExceeded` is True (reason
    /// `MaxHourlyCostRefusedScaleUp`, naming the agents) until the agent is no longer held back
    /// (looked at again every 5 s). Scale-downs are never refused, and the agent controller
    /// removes no pod for the budget (cost above it: `BudgetExceeded` True, reason
    /// `MaxHourlyCostExceeded`). Pods a rollout surges are not capped.
    ///
    /// Auctions: each node pool's capacity auction is offered only the capacity this pays for
    /// after the pods of agents outside the pool (cheapest nodes first, the last in part), so
    /// the affordable replicas go to the highest bids, and the quotas it sets are kept like any
    /// quota (pods above one are removed); while that holds an agent below what it wants,
    /// `BudgetExceeded` is True (reason `MaxHourlyCostCappedAuction`, naming the pool and agents).
    ///
    /// Otherwise `BudgetExceeded` is False (`WithinMaxHourlyCost`). `status.hourlyCost` and the
    /// metric `mom_hourly_cost` give the cost now.
    #[x_kube(validation = Rule::new("self >= 0.0").message("spec.budget.maxHourlyCost must be >= 0"))]
    pub max_hourly_cost: f64,
}

/// Observed state of MOM.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MomConfigStatus {
    /// `Ready` (the configuration is in effect) and `Degraded` (running with a problem), following
    /// the Kubernetes condition conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of nodes currently embedded in the ball.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_embedded: Option<i32>,
    /// Number of coordinates of every node position (and of every agent's
    /// `status.position.coordinates`): `spec.geometry.dimension` once the nodes are re-embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<i32>,
    /// Distortion of the node embedding, in `embeddingDimension` dimensions: the mean of
    /// |d_ball − τ·d_tree| / (τ·d_tree) over pairs of points of the topology tree (nodes and the
    /// region/zone/rack points above them; from at most 64 evenly spaced points to every other),
    /// where d_tree counts tree edges, τ is the hyperbolic edge length and d_ball is the distance
    /// between the label-layout coordinates (those placement uses unless condition
    /// `MeasuredLatency` is `Fitted`: then positions come from `latencyFit`). 0 is exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_distortion: Option<f64>,
    /// Worst-case distortion over the same pairs: the largest d_ball/(τ·d_tree) divided by the
    /// smallest (1 is exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_max_distortion: Option<f64>,
    /// Mean average precision of the node embedding over the same points (tree neighbours ranked
    /// by ball distance; 1 = neighbourhoods preserved exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_map: Option<f64>,
    /// The fit of `spec.geometry.latencySource` that node positions follow, when they do
    /// (condition `MeasuredLatency` True, reason `Fitted`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_fit: Option<LatencyFitStatus>,
    /// The newest receipt of the global chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_chain_head: Option<ChainHead>,
    /// The newest signed checkpoint (Merkle root over the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRef>,
    /// Cost per hour of the pods of every GeometricAgent now, priced as
    /// `spec.budget.maxHourlyCost` describes (also without a budget), from the leader's watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_cost: Option<f64>,
    /// The failure domain that best explains the anomaly loop's flags now: every node (by its
    /// hostname, rack, zone and region labels) and, when `spec.anomaly.agentSeries` is set,
    /// every GeometricAgent with bound pods (a member of each domain holding one of its nodes,
    /// and of its own `upstream` domain: itself and the agents that call it through
    /// `spec.peers`) is evidence, flagged or not, scored by the localiser of `mom rca`. Absent while nothing
    /// is flagged or the anomaly loop is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<RootCauseStatus>,
}

/// The most likely failure domain behind the current anomaly flags (see `rootCause`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RootCauseStatus {
    /// `node`, `rack`, `zone` or `region` (a domain whose members equal a smaller one's is
    /// named after the smaller), or `upstream`: a GeometricAgent (`NAMESPACE/NAME`) on its own,
    /// when its flag is explained by none of the nodes it runs on.
    pub level: String,
    /// The domain's label value (for `node`, the node's hostname label or its name).
    pub name: String,
    /// Posterior probability that this domain failed (0 to 1).
    pub confidence: f64,
    /// Posterior probability that nothing failed and the flags are background noise.
    pub none_confidence: f64,
    /// Nodes and agents in the domain.
    pub members: i32,
    /// Flagged members of the domain.
    pub flagged: i32,
    /// Flagged nodes and agents in the whole cluster.
    pub flagged_total: i32,
}

/// How well node positions fitted from measured latencies predict them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyFitStatus {
    /// Nodes positioned by the fit (every node).
    pub nodes: i32,
    /// Node pairs with a measured latency (both directions of a pair averaged).
    pub pairs: i32,
    /// Pairs held out of the fit (a seeded 20%) to score it.
    pub held_out_pairs: i32,
    /// Median over the held-out pairs of |predicted − measured| / measured, where predicted =
    /// `msPerUnit` × the ball distance of a fit that never saw those pairs.
    pub held_out_median_relative_error: f64,
    /// 90th percentile of the same.
    pub held_out_p90_relative_error: f64,
    /// Milliseconds per unit of hyperbolic distance (curvature −1).
    pub ms_per_unit: f64,
    /// Whether the fit continued the previous one (the source changed) rather than starting
    /// from the label layout.
    pub incremental: bool,
    /// Entries naming nodes that do not exist, ignored.
    pub ignored_entries: i32,
}

/// The head of the receipt chain.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChainHead {
    /// Sequence number of the newest receipt.
    pub sequence: i64,
    /// Hash of the newest receipt (hex).
    pub hash: String,
}

/// A signed checkpoint of the receipt chain.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRef {
    /// Sequence number of the last receipt covered by the checkpoint.
    pub sequence: i64,
    /// Merkle root (RFC 6962) over the receipts up to `sequence` (hex).
    pub merkle_root: String,
    /// When the checkpoint was written (RFC 3339).
    pub time: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_accepted_but_not_acted_on_are_named_in_spec_supported_and_an_enforced_budget_is_not() {
        let mut spec = config("default").spec;
        spec.budget = None;
        // Positive control: the default mode and no budget are fully supported.
        assert_eq!(spec.mode, OrchestrationMode::Centralized);
        let ok = spec_supported_condition(&spec);
        assert_eq!(
            (ok.status, ok.reason.as_str()),
            (ConditionStatus::True, conditions::reason::SUPPORTED)
        );
        // A budget is enforced (operator::budget): it is not named.
        spec.budget = Some(Budget { max_hourly_cost: 42.5 });
        let with_budget = spec_supported_condition(&spec);
        assert_eq!(with_budget.status, ConditionStatus::True, "{}", with_budget.message);
        spec.mode = OrchestrationMode::GeometricMesh;
        let c = spec_supported_condition(&spec);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, conditions::reason::NOT_IMPLEMENTED)
        );
        assert!(
            c.message.contains("spec.mode geometric_mesh is not implemented"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("budget"), "{}", c.message);
    }

    fn config(name: &str) -> MomConfig {
        let spec = MomConfigSpec {
            version: None,
            paradigm: Paradigm::default(),
            mode: OrchestrationMode::default(),
            objectives: Objectives {
                performance: 0.25,
                cost: 0.25,
                reliability: 0.25,
                sustainability: 0.25,
            },
            geometry: GeometrySpec::default(),
            verification: VerificationSpec::default(),
            tick_seconds: default_tick_seconds(),
            budget: None,
            anomaly: None,
            pricing: None,
        };
        MomConfig::new(name, spec)
    }

    #[test]
    fn only_the_momconfig_named_default_is_active() {
        assert!(is_active(&config("default")));
        assert!(!is_active(&config("staging")));
    }

    #[test]
    fn an_ignored_momconfig_is_not_ready_and_the_message_names_it() {
        let condition = ignored_condition("staging");
        assert_eq!(condition.status, ConditionStatus::False);
        assert_eq!(condition.reason, "Ignored");
        assert!(condition.message.contains("staging") && condition.message.contains("default"));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let spec: MomConfigSpec = serde_json::from_value(serde_json::json!({
            "objectives": {"performance": 0.4, "cost": 0.3, "reliability": 0.2, "sustainability": 0.1}
        }))
        .unwrap();
        assert_eq!(spec.mode, OrchestrationMode::Centralized);
        assert_eq!(spec.geometry.routing_algorithm, RoutingAlgorithm::GreedyForwarding);
        assert_eq!(spec.geometry.dimension, 64);
        assert_eq!(spec.geometry.curvature, 1.0);
        assert_eq!(spec.verification.level, VerificationLevel::FullAudit);
        assert_eq!(spec.tick_seconds, 15);
        assert!((spec.objectives.sum() - 1.0).abs() <= OBJECTIVE_SUM_TOLERANCE);
    }
}
