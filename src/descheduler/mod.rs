//! The descheduler core: which running pods should move, and where, so that the placement
//! objective improves by more than the moves cost — without thrashing (DESIGN §2–§5).
//!
//! Input: a pure [`Snapshot`] of the cluster (nodes with their position in the Poincaré ball,
//! capacity, requests, real usage and health flags; pods with their agent, tenant, node,
//! requests, usage, last eviction time and protection; agents with their target, previous
//! target, traffic-weighted peers and the rules of their strategy a destination must keep:
//! avoid-list, maximum distance and [`LabelRules`]) and [`Settings`] (one argument block per
//! strategy plus the planner's limits). The caller supplies the time (`Snapshot::now`,
//! seconds); nothing here reads a clock.
//!
//! Output: a deterministic [`Plan`] — moves `pod → destination node` with the strategy that
//! nominated each, its gain over the horizon and its cost; the per-agent targets stepped along
//! the geodesic toward their new optimum; and every nominated pod that was not moved, with the
//! reason. Same snapshot and settings → byte-identical plan, so a plan is replayable from the
//! inputs recorded in its receipt ([`replay_plan`], kind [`PLAN_KIND`]).
//!
//! Strategies (one module each, like the upstream descheduler: args, defaults, validation that
//! reports every problem, the nomination function and its objective term, table tests):
//! - [`drift`]: replicas far from their agent's (stepped) target;
//! - [`imbalance`]: nodes above a utilisation threshold on real usage;
//! - [`violations`]: constraints broken after placement (avoid-list, tenant isolation, node
//!   selector after a label change, maximum distance);
//! - [`evacuation`]: pods on nodes flagged unhealthy or anomalous.
//!
//! The strategies and the [`planner`] share the [`context`] of a tick (the snapshot's indexes,
//! each agent's targets, the state updated per move); strategies never import the planner. The
//! planner registers the strategies (one place), sums the enabled strategies' terms into one
//! objective and chooses the moves.
//!
//! An agent's optimum is `Agent::target`, the agent controller's target. Callers without a
//! controller compute it from the snapshot with [`with_agent_optima`] ([`optimum`]), or plan
//! through [`plan_standalone`], which does both.
//! [`synthetic`] builds drifted clusters and runs multi-tick simulations for benchmarks.
//!
//! Receipts: [`eviction_record`] is the decision an eviction records (kind [`PLAN_KIND`]).

pub mod context;
pub mod drift;
pub mod evacuation;
pub mod imbalance;
pub mod optimum;
pub mod planner;
pub mod synthetic;
pub mod violations;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use context::DistanceMemo;
pub use optimum::{agent_optima, with_agent_optima};
pub use planner::{PlannerArgs, plan, plan_with_memo};

use crate::placement::Resources;

/// Decision kind recorded in receipts of descheduling plans (see [`replay_plan`]).
pub const PLAN_KIND: &str = "descheduler.plan";

/// Everything that can go wrong in the descheduler core. Validation collects every problem.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeschedulerError {
    #[error("invalid descheduler settings: {}", .0.join("; "))]
    InvalidSettings(Vec<String>),
    #[error("invalid descheduler snapshot: {}", .0.join("; "))]
    InvalidSnapshot(Vec<String>),
    #[error("synthetic cluster: {0}")]
    Synthetic(String),
}

/// One node as the descheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Position in the Poincaré ball of curvature −κ.
    pub position: Vec<f64>,
    pub allocatable: Resources,
    /// Sum of the requests of every pod bound to the node (including pods not in the snapshot,
    /// e.g. DaemonSets), as the extender's placement bookkeeping has it.
    pub requested: Resources,
    /// Real usage (metrics) of everything on the node.
    #[serde(default)]
    pub used: Resources,
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    /// Pods bound to the node, including pods not in the snapshot; 0 means "count the snapshot's".
    #[serde(default)]
    pub pods: u32,
    #[serde(default)]
    pub unhealthy: bool,
    #[serde(default)]
    pub anomalous: bool,
}

fn default_max_pods() -> u32 {
    110
}

/// One running pod that could be moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    /// The node it runs on.
    pub node: String,
    /// Key of its GeometricAgent in `Snapshot::agents`, if any.
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    /// Its agent demands that no other tenant shares its nodes.
    #[serde(default)]
    pub strict_isolation: bool,
    /// A failover standby of its agent (never moved into a region of the agent's actives).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
    pub requests: Resources,
    #[serde(default)]
    pub usage: Resources,
    /// The pod's `nodeSelector`; a node whose labels changed may no longer match it.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// When (caller's clock, seconds) this replica was last moved — the operator passes the
    /// creation time of a pod that replaced an evicted one, rounded up to the second after it
    /// (no earlier than the pod's birth).
    #[serde(default)]
    pub last_evicted_at: Option<u64>,
    /// Never evicted (DaemonSet, system-critical, local storage, opt-out annotation).
    #[serde(default)]
    pub protected: bool,
}

impl Pod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Traffic to another agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    pub agent: String,
    pub weight: f64,
}

/// A GeometricAgent: where its replicas belong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agent {
    /// Key referenced by `Pod::agent` (the operator uses `namespace/name`).
    pub name: String,
    /// The agent's optimum: the agent controller's target. The planner steps the replicas'
    /// target toward it; without it the agent has no target this tick. Callers without a
    /// controller fill it with [`with_agent_optima`].
    #[serde(default)]
    pub target: Option<Vec<f64>>,
    /// The target the replicas were steered to last tick; the new target moves from it.
    #[serde(default)]
    pub previous_target: Option<Vec<f64>>,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub avoid_nodes: BTreeSet<String>,
    #[serde(default)]
    pub max_distance: Option<f64>,
    /// Where the agent's strategy confines its pods by labels (absent in older snapshots).
    #[serde(default, skip_serializing_if = "LabelRules::is_empty")]
    pub label_rules: LabelRules,
}

/// The label-based placement rules of an agent's strategy the planner keeps: a move never takes
/// a pod off the nodes its required data locality allows, nor to a region ranked below the one
/// it runs in (an unlisted region, or a node without `region_label`, ranks last). Without
/// `region_label` or with an empty list every node ranks equal: the region rule does nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRules {
    /// `spec.placement.locality.dataNodes` when its mode is `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_data_nodes: Option<crate::placement::NodeSelector>,
    /// `spec.placement.preferredRegions`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_regions: Vec<String>,
    /// The node label whose values are regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_label: Option<String>,
}

impl LabelRules {
    /// No rule: what older snapshots and agents without a strategy have.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Rank of a node's region in `preferred_regions` (unlisted or unlabelled: last).
    pub fn region_rank(&self, labels: &BTreeMap<String, String>) -> usize {
        let region = self.region_label.as_ref().and_then(|l| labels.get(l));
        self.preferred_regions
            .iter()
            .position(|r| Some(r) == region)
            .unwrap_or(self.preferred_regions.len())
    }
}

/// The cluster at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    /// Curvature magnitude κ of the ball.
    pub kappa: f64,
    /// The caller's time in seconds; only compared with `Pod::last_evicted_at`.
    pub now: u64,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    #[serde(default)]
    pub agents: Vec<Agent>,
}

/// Everything the planner is configured with. Missing fields take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    pub planner: PlannerArgs,
    pub drift: drift::Args,
    pub imbalance: imbalance::Args,
    pub violations: violations::Args,
    pub evacuation: evacuation::Args,
}

impl Settings {
    /// Every problem of every block, each naming its field.
    pub fn validate(&self) -> Result<(), DeschedulerError> {
        let mut problems = self.planner.validate();
        problems.extend(self.drift.validate());
        problems.extend(self.imbalance.validate());
        problems.extend(self.violations.validate());
        problems.extend(self.evacuation.validate());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DeschedulerError::InvalidSettings(problems))
        }
    }
}

/// Which strategy nominated a move. Listed in priority order: when several nominate one pod,
/// the first of these names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Evacuation,
    Violations,
    Drift,
    Imbalance,
}

impl Strategy {
    /// The JSON spelling, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Evacuation => "evacuation",
            Strategy::Violations => "violations",
            Strategy::Drift => "drift",
            Strategy::Imbalance => "imbalance",
        }
    }
}

/// A pod a strategy wants moved, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Index into `Snapshot::pods`.
    pub pod: usize,
    pub strategy: Strategy,
    pub reason: String,
}

/// One planned eviction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    pub pod: String,
    pub namespace: String,
    pub agent: Option<String>,
    pub from: String,
    pub to: String,
    pub strategy: Strategy,
    /// Objective gain summed over the horizon.
    pub gain: f64,
    /// Migration cost, paid once.
    pub cost: f64,
    pub reason: String,
}

/// An agent's target this tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStep {
    pub agent: String,
    pub previous: Option<Vec<f64>>,
    /// Where the agent's replicas belong now.
    pub optimum: Vec<f64>,
    /// The previous target moved at most `targetStep` along the geodesic toward the optimum.
    pub target: Vec<f64>,
    /// Distance still left to the optimum.
    pub remaining: f64,
}

/// Why a nominated pod is not moved this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    Protected,
    CoolOff,
    NoDestination,
    BelowMinGain,
    Limit,
}

/// A nominated pod that stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skip {
    pub pod: String,
    pub namespace: String,
    pub strategy: Strategy,
    pub kind: SkipKind,
    pub reason: String,
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// In the order they were chosen (best net gain first).
    pub moves: Vec<Move>,
    /// Sorted by agent.
    pub targets: Vec<TargetStep>,
    /// Sorted by namespace and pod.
    pub skipped: Vec<Skip>,
    /// Pods nominated by at least one strategy.
    pub candidates: usize,
    /// Σ gain of the moves.
    pub total_gain: f64,
    /// Σ cost of the moves.
    pub total_cost: f64,
}

/// The planner for callers without an agent controller (synthetic runs, `mom deschedule`,
/// benchmarks): each agent's optimum from the snapshot alone ([`with_agent_optima`]), then
/// [`plan`]. The operator calls [`plan`] with the controller's targets instead.
pub fn plan_standalone(snapshot: &Snapshot, settings: &Settings) -> Result<Plan, DeschedulerError> {
    plan(&with_agent_optima(snapshot), settings)
}

/// Parses recorded inputs `{"snapshot": …, "settings": …}` and plans. This is the replayer of
/// [`PLAN_KIND`]: the output is the plan as JSON.
pub fn replay_plan(inputs: &serde_json::Value) -> Result<serde_json::Value, crate::receipts::replay::ReplayError> {
    use crate::receipts::replay::ReplayError;
    let bad = |field: &str, message: String| ReplayError::BadInputs {
        field: field.into(),
        message,
    };
    let snapshot: Snapshot = serde_json::from_value(inputs.get("snapshot").cloned().unwrap_or_default())
        .map_err(|e| bad("snapshot", e.to_string()))?;
    let settings: Settings = match inputs.get("settings") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad("settings", e.to_string()))?,
        None => Settings::default(),
    };
    let plan = plan(&snapshot, &settings).map_err(|e| bad("snapshot", e.to_string()))?;
    serde_json::to_value(&plan).map_err(|e| bad("output", e.to_string()))
}

/// The inputs a receipt records for a plan (what [`replay_plan`] reads).
pub fn plan_inputs(snapshot: &Snapshot, settings: &Settings) -> serde_json::Value {
    serde_json::json!({ "snapshot": snapshot, "settings": settings })
}

/// Largest recorded plan inputs (bytes of JSON) an eviction receipt carries inline for replay;
/// larger ones are only hashed into `inputsDigest`.
pub const MAX_INLINE_INPUTS: usize = 256 * 1024;

/// Whether `inputs` (from [`plan_inputs`]) are small enough to go inline in each eviction
/// receipt (at most [`MAX_INLINE_INPUTS`] bytes of JSON).
pub fn inputs_fit_inline(inputs: &serde_json::Value) -> bool {
    serde_json::to_string(inputs)
        .map(|s| s.len() <= MAX_INLINE_INPUTS)
        .unwrap_or(false)
}

/// The receipt decision of one eviction of a plan, recorded before the pod is evicted:
/// `{kind: descheduler.plan, move, output: the whole plan, inputs?}` with the plan's inputs
/// ([`plan_inputs`]) inline when given (see [`inputs_fit_inline`]), so [`replay_plan`]
/// re-plans from them. The receipt's `inputsDigest` hashes those inputs either way.
pub fn eviction_record(m: &Move, plan: &Plan, inline_inputs: Option<&serde_json::Value>) -> serde_json::Value {
    let mut decision = serde_json::json!({"kind": PLAN_KIND, "move": m, "output": plan});
    if let Some(inputs) = inline_inputs {
        decision["inputs"] = inputs.clone();
    }
    decision
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn the_eviction_record_is_byte_identical_to_the_descheduler_loops_hand_built_one() {
        let mut s = four_node_snapshot();
        s.pods = vec![pod("p0", "west-1", Some("a")), pod("p1", "west-2", Some("a"))];
        s.agents = vec![agent_at("a", &s.nodes[0].position.clone())];
        account_requests(&mut s);
        let settings = Settings::default();
        let plan = plan(&s, &settings).unwrap();
        assert_eq!(plan.moves.len(), 2);
        let inputs = plan_inputs(&s, &settings);
        assert!(inputs_fit_inline(&inputs));
        for m in &plan.moves {
            for inline in [true, false] {
                // What src/operator/descheduler.rs `evict_one` wrote before this function existed.
                let mut expected = serde_json::json!({"kind": PLAN_KIND, "move": m, "output": plan});
                if inline {
                    expected["inputs"] = inputs.clone();
                }
                let record = eviction_record(m, &plan, inline.then_some(&inputs));
                assert_eq!(
                    serde_json::to_string(&record).unwrap(),
                    serde_json::to_string(&expected).unwrap()
                );
            }
            let record = eviction_record(m, &plan, Some(&inputs));
            assert_eq!(replay_plan(&record["inputs"]).unwrap(), record["output"]);
        }
    }

    #[test]
    fn inputs_above_the_inline_limit_are_not_carried_inline() {
        let small = serde_json::json!({"snapshot": {}});
        assert!(inputs_fit_inline(&small));
        let big = serde_json::json!({"pad": "x".repeat(MAX_INLINE_INPUTS)});
        assert!(!inputs_fit_inline(&big));
    }
}
