//! The twin's input: a snapshot of a cluster (nodes with labels, capacity, price, energy class,
//! position in the Poincaré ball; zone-to-zone latencies) and its agents (requests, demand trace,
//! scaling method, peers, target), as JSON (`"version": 1`), and [`generate`], which builds one
//! from real data: a TopoHub topology (sites → zones, grouped into regions by
//! [`crate::cluster_layout::sites_layout`], positions by the operator's own
//! [`crate::placement::embed_nodes`], latency = shortest-path propagation delay) and
//! demand traces (e.g. NAB).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::TwinError;
use crate::forecast::trace::Trace;
use crate::geometry::data::Graph;
use crate::labels::{HOSTNAME_LABEL, REGION_LABEL, ZONE_LABEL};
use crate::placement::{Objectives, Resources, Routing};
use crate::scaling_policy::Method;

/// The snapshot format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Most ticks one run may take (a week at 15 s is 40,320).
pub const MAX_TICKS: u64 = 1_000_000;

/// A cluster and its agents (module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    #[serde(default)]
    pub objectives: Objectives,
    #[serde(default = "one")]
    pub kappa: f64,
    #[serde(default)]
    pub routing: Routing,
    /// The scaler's sync and the twin's step, seconds.
    #[serde(default = "fifteen")]
    pub tick_seconds: f64,
    /// Seconds from a replica's placement until it serves.
    #[serde(default = "sixty")]
    pub startup_seconds: f64,
    /// Seconds simulated.
    pub duration_seconds: f64,
    pub nodes: Vec<NodeSpec>,
    /// Latency between zones (ms), both orders or one; a missing pair within a zone is 0, across
    /// zones an error at validation. Empty: pair latency from the nodes' positions
    /// (`msPerDistance`).
    #[serde(default)]
    pub zone_latency_ms: BTreeMap<String, BTreeMap<String, f64>>,
    pub agents: Vec<AgentSpec>,
    /// Milliseconds per unit of hyperbolic distance between two nodes' positions: the pair
    /// latency when `zoneLatencyMs` is empty.
    #[serde(default = "one")]
    pub ms_per_distance: f64,
    /// Ticks between two descheduler plans; 0 runs none.
    #[serde(default = "twenty")]
    pub descheduler_every_ticks: u64,
    /// Decisions a real run made, which the twin's run as given should reproduce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Recorded>,
    /// `true`: every agent keeps the `target` it is given for the whole run. `false` (default):
    /// targets move as the agent controller moves them (see [`crate::twin`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_targets: bool,
    /// The agent controller's periodic resync (seconds): each agent's target is also
    /// recomputed this often when none of its replicas moved (the operator's is 300–450 s).
    #[serde(default = "three_hundred")]
    pub agent_resync_seconds: f64,
    /// What binds the replicas: `mom` (default), kube-scheduler with MOM's extender (see
    /// [`crate::twin`]), or `default`, a model of the stock kube-scheduler's scoring for plain
    /// pods (see [`crate::twin`]: no extender, targets play no part in placement).
    #[serde(default, skip_serializing_if = "Scheduler::is_mom")]
    pub scheduler: Scheduler,
    /// Seeds the `default` scheduler's choice among nodes of equal score (kube-scheduler picks
    /// one at random).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scheduler_seed: u64,
    /// The agents' namespace: a new agent's home (rule 6 of the target) breaks ties by
    /// `NAMESPACE/first agent of its group`, as the operator's does. Empty: the agents' names
    /// carry their namespace (`namespace/name`, as `mom whatif --cluster` names them).
    #[serde(default = "twin_namespace")]
    pub namespace: String,
    /// Forecasts of price, carbon and spot capacity per node pool, for batch agents
    /// ([`crate::batch`]); required when an agent has `batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::batch::Pricing>,
    /// Seconds since the forecasts' origin at tick 0 (e.g. 32400: the run starts at 09:00 of
    /// the hourly forecasts' first day).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub clock_start_seconds: f64,
    /// How batch agents are timed: `planned` (default: the least-cost plan that meets the
    /// deadline, [`crate::batch::plan`]) or `atOnce` (all replicas from the start,
    /// [`crate::batch::run_at_once`]), the counterfactual the plan saves against.
    #[serde(default, skip_serializing_if = "BatchTiming::is_planned")]
    pub batch_timing: BatchTiming,
    /// Node failures to play (see [`crate::twin`]): each takes its nodes down for a time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<Outage>,
    /// Seconds from a node's failure until the operator judges it silent: more than 20 s since
    /// its last 10-s heartbeat renewal (`View::mark_silent`, checked every second), so 10–20 s
    /// after the failure; default 15, the mean.
    #[serde(default = "fifteen_seconds", skip_serializing_if = "is_fifteen")]
    pub failure_detection_seconds: f64,
    /// MomConfig `spec.budget.maxHourlyCost` (see [`crate::budget`]): what the pods of every
    /// agent may cost per hour. The agent controller's cap on scale-ups and the auction's cut
    /// of each pool's capacity apply it; absent, no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hourly_cost: Option<f64>,
}

fn fifteen_seconds() -> f64 {
    15.0
}

fn is_fifteen(v: &f64) -> bool {
    *v == 15.0
}

/// A failure of some nodes from `fromSeconds` until `untilSeconds` (run time): the nodes named
/// in `nodes` and those whose labels hold every pair of `selector` (e.g.
/// `{"topology.kubernetes.io/zone": "z1"}` for a zone, the region label for a region).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    pub from_seconds: f64,
    pub until_seconds: f64,
}

impl Outage {
    /// Whether node `n` is one of this outage's nodes.
    pub fn covers(&self, n: &NodeSpec) -> bool {
        self.nodes.contains(&n.name)
            || (!self.selector.is_empty() && self.selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
    }
}

/// How the twin times batch agents ([`Snapshot::batch_timing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BatchTiming {
    #[default]
    Planned,
    AtOnce,
}

impl BatchTiming {
    fn is_planned(&self) -> bool {
        *self == BatchTiming::Planned
    }
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// A batch agent's work (`workloadType: batch`): replica-hours to run by a deadline, placed in
/// time and pool by [`crate::batch`]. Its replicas follow the plan (its `method`, `demand` and
/// `minReplicas` are not used; `maxReplicas` bounds the replicas at once), on nodes of the
/// plan's pools only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchSpec {
    /// Replica-hours of work (counted while a replica serves, after its start-up).
    pub replica_hours: f64,
    /// Seconds from the start of the run by which the work must be done (≤ 0: already late).
    pub deadline_seconds: f64,
    /// Most the work may cost, in the forecasts' price unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

/// What binds the twin's replicas ([`Snapshot::scheduler`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// kube-scheduler with MOM's extender: the extender's filter and top score.
    #[default]
    Mom,
    /// kube-scheduler's default plugins alone, as they score plain pods.
    Default,
}

impl Scheduler {
    fn is_mom(&self) -> bool {
        *self == Scheduler::Mom
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn twin_namespace() -> String {
    "twin".into()
}

/// Decisions recorded by a real run (the operator's receipts), by tick of the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recorded {
    /// The scaler's replica counts.
    #[serde(default)]
    pub replicas: Vec<RecordedReplicas>,
    /// Where the scheduler bound new pods; the twin names pods `AGENT-N`, N counting the
    /// agent's replicas from 0 in the order they were created.
    #[serde(default)]
    pub placements: Vec<RecordedPlacement>,
}

/// The replicas an agent was scaled to at a tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordedReplicas {
    pub tick: u64,
    pub agent: String,
    pub replicas: u32,
}

/// The node a pod was bound to at a tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordedPlacement {
    pub tick: u64,
    pub pod: String,
    pub node: String,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub position: Vec<f64>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    #[serde(default = "max_pods")]
    pub max_pods: u32,
    #[serde(default)]
    pub hourly_cost: Option<f64>,
    #[serde(default)]
    pub energy_class: Option<char>,
    #[serde(default)]
    pub spot: bool,
}

/// One agent (a GeometricAgent with its strategy's scaling settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    #[serde(default)]
    pub tenant: Option<String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Demand one serving replica carries (the trace's unit).
    pub capacity_per_replica: f64,
    /// Seconds per demand value.
    pub bin_seconds: f64,
    pub demand: Vec<f64>,
    pub method: Method,
    #[serde(default = "one_u32")]
    pub min_replicas: u32,
    #[serde(default = "hundred")]
    pub max_replicas: u32,
    /// `spec.replicas` (what `manual` keeps).
    #[serde(default = "one_u32")]
    pub replicas: u32,
    /// Where the agent's replicas belong when the run starts (its `status.position`). Empty: a
    /// new agent (none yet), whose target is computed just before its first replicas are
    /// placed, as the agent controller does (rules 1, 2 and 6 of
    /// [`crate::placement::agent_target`]; see [`crate::twin`]).
    #[serde(default)]
    pub target: Vec<f64>,
    /// The strategy's `placement.geometricAffinity.coordinates`: when given, the target is
    /// always their projection into the ball (rule 1 of [`crate::placement::agent_target`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<Vec<f64>>,
    /// Peer agents and traffic weights.
    #[serde(default)]
    pub peers: BTreeMap<String, f64>,
    /// The strategy's `placement.geometricAffinity.nearAgents`: agents whose replicas the
    /// target also follows (at weight 1 unless already a peer), without traffic between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_agents: Vec<String>,
    /// The scaling settings a recorded run used (a scale receipt's `inputs.settings`): every
    /// field but `minReplicas`, `maxReplicas`, `targetPerReplica`, `stepSeconds` and
    /// `leadSeconds`, which come from this agent and the snapshot. Absent: the strategy
    /// defaults of `method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<crate::scaling_policy::PolicySettings>,
    /// Seconds of demand history the scaler reads (its `--scaler-history-seconds`; default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_seconds: Option<f64>,
    /// Replicas at tick 0 (a recorded run's count when the window opens). Absent: the replicas
    /// the first demand needs (`manual`: `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<u32>,
    /// Present: a batch agent (see [`BatchSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSpec>,
    /// Its `spec.bid`: what it bids when its pool's capacity is auctioned. Absent: 0 for every
    /// replica (it then gets only the capacity the bids leave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<BidSpec>,
    /// The node pool its pod template selects (`nodeSelector: {mom.hypersync.io/pool: NAME}`):
    /// its replicas go only to nodes labelled with it (a batch agent's only where its plan's
    /// pool is this one), and it competes in that pool's auction.
    /// Absent: no selector (any node), and the `default` pool's auction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Its strategy's `placement.avoidNodes`: nodes its replicas never go to (MOM's extender
    /// filters them; the descheduler moves replicas off them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid_nodes: Vec<String>,
    /// Its strategy's `placement.geometricAffinity.maxDistance`: the farthest (hyperbolic
    /// distance) a replica's node may be from its target (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_distance: Option<f64>,
    /// Its strategy's `placement.preferredRegions` (values of the region label), in order: a
    /// replica goes to the first listed region with a node that passes every other check; the
    /// target follows the first listed region that has nodes when nothing else places it; the
    /// descheduler never moves a replica to a lower-ranked region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_regions: Vec<String>,
}

/// A GeometricAgent's `spec.bid`: value per hour of the 1st, 2nd, … replica (non-increasing,
/// ≥ 0), or, when that list is empty, `valuePerReplica` for each replica it wants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidSpec {
    #[serde(default)]
    pub value_per_replica: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marginal_values: Vec<f64>,
}

fn one() -> f64 {
    1.0
}
fn fifteen() -> f64 {
    15.0
}
fn twenty() -> u64 {
    20
}
fn sixty() -> f64 {
    60.0
}
fn max_pods() -> u32 {
    110
}
fn three_hundred() -> f64 {
    300.0
}
fn one_u32() -> u32 {
    1
}
fn hundred() -> u32 {
    100
}

impl AgentSpec {
    pub fn requests(&self) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
        }
    }
}

impl Snapshot {
    /// Ticks of a run.
    pub fn ticks(&self) -> u64 {
        (self.duration_seconds / self.tick_seconds).floor() as u64
    }

    /// Latency between two zones (ms), as validated.
    pub fn zone_latency(&self, a: &str, b: &str) -> f64 {
        self.zone_latency_ms
            .get(a)
            .and_then(|m| m.get(b))
            .or_else(|| self.zone_latency_ms.get(b).and_then(|m| m.get(a)))
            .copied()
            .unwrap_or(0.0)
    }

    /// Parses and validates a snapshot; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, TwinError> {
        let s: Snapshot = serde_json::from_str(text).map_err(|e| TwinError::BadField {
            field: origin.to_string(),
            reason: format!("not a twin snapshot: {e}"),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every field; the first problem found names it.
    pub fn validate(&self) -> Result<(), TwinError> {
        let bad = |field: String, reason: String| Err(TwinError::BadField { field, reason });
        if self.version != VERSION {
            return bad("version".into(), format!("{} is not {VERSION}", self.version));
        }
        let o = &self.objectives;
        let weights = [o.performance, o.cost, o.reliability, o.sustainability];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || (weights.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
            return bad(
                "objectives".into(),
                format!("must be ≥ 0 and sum to 1, got {weights:?}"),
            );
        }
        if !(self.kappa.is_finite() && self.kappa > 0.0) {
            return bad("kappa".into(), format!("must be > 0, got {}", self.kappa));
        }
        for (field, v) in [
            ("tickSeconds", self.tick_seconds),
            ("durationSeconds", self.duration_seconds),
        ] {
            if !(v.is_finite() && v >= 1.0 && v.fract() == 0.0) {
                return bad(field.into(), format!("must be a whole number of seconds ≥ 1, got {v}"));
            }
        }
        if !(self.startup_seconds.is_finite() && self.startup_seconds >= 0.0 && self.startup_seconds.fract() == 0.0) {
            return bad(
                "startupSeconds".into(),
                format!("must be whole seconds ≥ 0, got {}", self.startup_seconds),
            );
        }
        if self.ticks() > MAX_TICKS {
            return bad(
                "durationSeconds".into(),
                format!("{} ticks; at most {MAX_TICKS}", self.ticks()),
            );
        }
        if self.nodes.is_empty() {
            return bad("nodes".into(), "no nodes".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut dimension = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if !names.insert(n.name.as_str()) {
                return bad(format!("nodes[{i}].name"), format!("{:?} is given twice", n.name));
            }
            if n.position.is_empty()
                || n.position.iter().any(|x| !x.is_finite())
                || crate::geometry::poincare::norm(&n.position) >= 1.0 / self.kappa.sqrt()
            {
                return bad(
                    format!("nodes[{i}].position"),
                    "must be finite and inside the ball".into(),
                );
            }
            if *dimension.get_or_insert(n.position.len()) != n.position.len() {
                return bad(
                    format!("nodes[{i}].position"),
                    "all positions must have one dimension".into(),
                );
            }
            if n.hourly_cost.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
                return bad(
                    format!("nodes[{i}].hourlyCost"),
                    format!("must be ≥ 0, got {:?}", n.hourly_cost),
                );
            }
            if n.energy_class
                .is_some_and(|c| !('A'..='E').contains(&c.to_ascii_uppercase()))
            {
                return bad(
                    format!("nodes[{i}].energyClass"),
                    format!("must be A…E, got {:?}", n.energy_class),
                );
            }
        }
        let zones: std::collections::BTreeSet<&str> = self
            .nodes
            .iter()
            .filter_map(|n| n.labels.get(ZONE_LABEL).map(String::as_str))
            .collect();
        for a in &zones {
            for b in &zones {
                if a != b
                    && !self.zone_latency_ms.is_empty()
                    && !self.zone_latency_ms.get(*a).is_some_and(|m| m.contains_key(*b))
                    && !self.zone_latency_ms.get(*b).is_some_and(|m| m.contains_key(*a))
                {
                    return bad(
                        format!("zoneLatencyMs.{a}.{b}"),
                        "missing (every pair of zones needs one)".into(),
                    );
                }
            }
        }
        if let Some((a, b, v)) = self
            .zone_latency_ms
            .iter()
            .flat_map(|(a, m)| m.iter().map(move |(b, v)| (a, b, *v)))
            .find(|(_, _, v)| !(v.is_finite() && *v >= 0.0))
        {
            return bad(format!("zoneLatencyMs.{a}.{b}"), format!("must be ≥ 0, got {v}"));
        }
        if self.max_hourly_cost.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            return bad(
                "maxHourlyCost".into(),
                format!("must be ≥ 0, got {:?}", self.max_hourly_cost),
            );
        }
        if !(self.failure_detection_seconds.is_finite() && self.failure_detection_seconds >= 0.0) {
            return bad(
                "failureDetectionSeconds".into(),
                format!("must be ≥ 0, got {}", self.failure_detection_seconds),
            );
        }
        for (k, o) in self.outages.iter().enumerate() {
            let field = |f: &str| format!("outages[{k}].{f}");
            if !(o.from_seconds.is_finite() && o.from_seconds >= 0.0) {
                return bad(field("fromSeconds"), format!("must be ≥ 0, got {}", o.from_seconds));
            }
            if !(o.until_seconds.is_finite() && o.until_seconds > o.from_seconds) {
                return bad(
                    field("untilSeconds"),
                    format!("must be after fromSeconds {}, got {}", o.from_seconds, o.until_seconds),
                );
            }
            if let Some(name) = o.nodes.iter().find(|name| !self.nodes.iter().any(|n| n.name == **name)) {
                return bad(field("nodes"), format!("{name:?} is not a node of the snapshot"));
            }
            if !self.nodes.iter().any(|n| o.covers(n)) {
                return bad(
                    field("selector"),
                    format!("{:?} and nodes {:?} select no node", o.selector, o.nodes),
                );
            }
        }
        let mut agents = std::collections::BTreeSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let field = |f: &str| format!("agents[{i}].{f}");
            if !agents.insert(a.name.as_str()) {
                return bad(field("name"), format!("{:?} is given twice", a.name));
            }
            if a.demand.is_empty() {
                return bad(field("demand"), "is empty".into());
            }
            if let Some(v) = a.demand.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return bad(field("demand"), format!("values must be ≥ 0, got {v}"));
            }
            for (f, v) in [
                ("capacityPerReplica", a.capacity_per_replica),
                ("binSeconds", a.bin_seconds),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return bad(field(f), format!("must be > 0, got {v}"));
                }
            }
            if a.bin_seconds.fract() != 0.0 {
                return bad(
                    field("binSeconds"),
                    format!("must be whole seconds, got {}", a.bin_seconds),
                );
            }
            if a.max_replicas < a.min_replicas.max(1) {
                return bad(
                    field("maxReplicas"),
                    format!("{} < minReplicas {}", a.max_replicas, a.min_replicas),
                );
            }
            if let Some(b) = &a.bid
                && let Some(problem) = crate::auction::quota::bid_problem(&b.marginal_values, b.value_per_replica)
            {
                // The problem names `spec.bid.…` as the operator reports it.
                return bad(field("bid"), problem);
            }
            if a.pool.as_deref().is_some_and(str::is_empty) {
                return bad(field("pool"), "must not be empty (leave it out for no selector)".into());
            }
            if a.max_distance.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
                return bad(field("maxDistance"), format!("must be > 0, got {:?}", a.max_distance));
            }
            if !a.target.is_empty() && Some(a.target.len()) != dimension || a.target.iter().any(|x| !x.is_finite()) {
                return bad(
                    field("target"),
                    "must be empty (a new agent) or finite with the nodes' dimension".into(),
                );
            }
            if let Some(c) = &a.coordinates
                && (Some(c.len()) != dimension || c.iter().any(|x| !x.is_finite()))
            {
                return bad(
                    field("coordinates"),
                    format!("must be finite with the nodes' dimension, got {c:?}"),
                );
            }
            if let Some((p, w)) = a
                .peers
                .iter()
                .find(|(_, w)| !(**w == 0.0 || (1e-300..=1e300).contains(*w)))
            {
                return bad(
                    field(&format!("peers.{p}")),
                    format!("weight must be 0 or within [1e-300, 1e300], got {w:?}"),
                );
            }
            if let Some(scaling) = &a.scaling {
                if scaling.method != a.method {
                    return bad(
                        field("scaling.method"),
                        format!("{:?} differs from method {:?}", scaling.method, a.method),
                    );
                }
                scaling.validate().map_err(|e| TwinError::BadField {
                    field: field("scaling"),
                    reason: e.to_string(),
                })?;
            }
            if let Some(h) = a.history_seconds
                && !(h.is_finite() && h >= 1.0)
            {
                return bad(field("historySeconds"), format!("must be ≥ 1, got {h}"));
            }
            if let Some(b) = &a.batch {
                let Some(pricing) = &self.pricing else {
                    return bad(
                        field("batch"),
                        "needs the snapshot's pricing (forecasts per pool)".into(),
                    );
                };
                let job = crate::batch::BatchJob {
                    work_replica_hours: b.replica_hours,
                    max_replicas: a.max_replicas,
                    now_seconds: self.clock_start_seconds,
                    deadline_seconds: self.clock_start_seconds + b.deadline_seconds,
                    budget: b.budget,
                };
                // At or before the start is a late job (it runs at full width until done).
                if !b.deadline_seconds.is_finite() {
                    return bad(
                        field("batch.deadlineSeconds"),
                        format!("must be finite, got {}", b.deadline_seconds),
                    );
                }
                crate::batch::plan(&job, pricing, &crate::batch::Weights::default()).map_err(|e| {
                    TwinError::BadField {
                        field: field("batch"),
                        reason: e.to_string(),
                    }
                })?;
            }
        }
        if !(self.clock_start_seconds.is_finite() && self.clock_start_seconds >= 0.0) {
            return bad(
                "clockStartSeconds".into(),
                format!("must be ≥ 0, got {}", self.clock_start_seconds),
            );
        }
        if !(self.agent_resync_seconds.is_finite() && self.agent_resync_seconds > 0.0) {
            return bad(
                "agentResyncSeconds".into(),
                format!("must be > 0, got {}", self.agent_resync_seconds),
            );
        }
        if !(self.ms_per_distance.is_finite() && self.ms_per_distance >= 0.0) {
            return bad(
                "msPerDistance".into(),
                format!("must be ≥ 0, got {}", self.ms_per_distance),
            );
        }
        if let Some(r) = &self.recorded {
            for (i, d) in r.replicas.iter().enumerate() {
                if !agents.contains(d.agent.as_str()) {
                    return bad(
                        format!("recorded.replicas[{i}].agent"),
                        format!("{:?} is not an agent of the snapshot", d.agent),
                    );
                }
                if d.tick >= self.ticks() {
                    return bad(
                        format!("recorded.replicas[{i}].tick"),
                        format!("{} is past the run's {} ticks", d.tick, self.ticks()),
                    );
                }
            }
            for (i, d) in r.placements.iter().enumerate() {
                if !names.contains(d.node.as_str()) {
                    return bad(
                        format!("recorded.placements[{i}].node"),
                        format!("{:?} is not a node of the snapshot", d.node),
                    );
                }
                if d.tick >= self.ticks() {
                    return bad(
                        format!("recorded.placements[{i}].tick"),
                        format!("{} is past the run's {} ticks", d.tick, self.ticks()),
                    );
                }
            }
        }
        Ok(())
    }
}

/// How [`generate`] builds a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    pub agents: usize,
    pub nodes_per_site: u32,
    pub seed: u64,
    pub duration_seconds: f64,
}

/// A snapshot from real data (module doc). Nodes: 8 CPU, 32 GiB; price and energy class per site
/// drawn from `seed` (the shared data has no prices: $0.10–$0.50 per hour, classes A–E, one
/// site in five spot at 40 % of the price). Agents `agent-NNN`: 250m CPU and 256 MiB per
/// replica; the demand of trace `i mod traces` (its values and step), one replica carrying its
/// 95th percentile / 5; a target at the position of a node of a site drawn from `seed`; one peer
/// (the next agent, weight 1); `predictive`, 1…50 replicas.
pub fn generate(graph: &Graph, traces: &[Trace], cfg: &GenerateConfig) -> Result<Snapshot, TwinError> {
    let bad = |field: &str, reason: String| TwinError::BadField {
        field: field.into(),
        reason,
    };
    if traces.is_empty() {
        return Err(bad("traces", "none given".into()));
    }
    if cfg.agents == 0 {
        return Err(bad("agents", "must be at least 1".into()));
    }
    let delays = crate::geometry::routing::shortest_path_delays(graph);
    let sites = delays.len();
    let regions = ((sites as f64 / 2.0).sqrt().round() as usize).max(2);
    let layout = crate::cluster_layout::sites_layout(&delays, regions, cfg.nodes_per_site)
        .map_err(|e| bad("layout", e.to_string()))?;
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        layout.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
    let keys = [
        REGION_LABEL.to_string(),
        ZONE_LABEL.to_string(),
        HOSTNAME_LABEL.to_string(),
    ];
    let embedding = crate::placement::embed_nodes(&labels, &keys, 2).map_err(|e| bad("embedding", e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut next_f64 = move || rng.random::<f64>();
    let site_index = |zone: &str| zone.strip_prefix("site-").and_then(|i| i.parse::<usize>().ok());
    let mut site_price = Vec::with_capacity(sites);
    for _ in 0..sites {
        let price = 0.10 + 0.40 * next_f64();
        let class = (b'A' + (next_f64() * 5.0).floor().min(4.0) as u8) as char;
        let spot = next_f64() < 0.2;
        site_price.push((if spot { price * 0.4 } else { price }, class, spot));
    }
    let mut nodes = Vec::with_capacity(layout.len());
    for n in &layout {
        let zone = n.labels.get(ZONE_LABEL).cloned().unwrap_or_default();
        let (price, class, spot) = site_index(&zone)
            .and_then(|i| site_price.get(i).copied())
            .unwrap_or((0.3, 'C', false));
        nodes.push(NodeSpec {
            name: n.name.clone(),
            labels: n.labels.clone(),
            position: embedding.positions.get(&n.name).cloned().unwrap_or_default(),
            cpu_millis: n.cpu_millis,
            memory_bytes: n.memory_bytes,
            max_pods: n.pods,
            hourly_cost: Some((price * 1000.0).round() / 1000.0),
            energy_class: Some(class),
            spot,
        });
    }
    let mut zone_latency_ms: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (i, row) in delays.iter().enumerate() {
        for (j, &d) in row.iter().enumerate().filter(|(j, _)| *j > i) {
            let d = if d.is_finite() {
                (d * 1000.0).round() / 1000.0
            } else {
                1e6
            };
            zone_latency_ms
                .entry(format!("site-{i:03}"))
                .or_default()
                .insert(format!("site-{j:03}"), d);
        }
    }
    let mut agents = Vec::with_capacity(cfg.agents);
    for i in 0..cfg.agents {
        let t = &traces[i % traces.len()];
        let p95 = crate::simulator::quantile(&t.values, 0.95);
        let home = &nodes[(next_f64() * nodes.len() as f64).floor() as usize % nodes.len()];
        let peer = format!("agent-{:03}", (i + 1) % cfg.agents);
        agents.push(AgentSpec {
            name: format!("agent-{i:03}"),
            tenant: None,
            cpu_millis: 250,
            memory_bytes: 256 << 20,
            capacity_per_replica: if p95 > 0.0 { p95 / 5.0 } else { 1.0 },
            bin_seconds: t.step_seconds,
            demand: t
                .values
                .iter()
                .map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
                .collect(),
            method: Method::Predictive,
            min_replicas: 1,
            max_replicas: 50,
            replicas: 1,
            target: home.position.clone(),
            coordinates: None,
            near_agents: Vec::new(),
            peers: if cfg.agents > 1 {
                BTreeMap::from([(peer, 1.0)])
            } else {
                BTreeMap::new()
            },
            scaling: None,
            history_seconds: None,
            initial_replicas: None,
            batch: None,
            bid: None,
            pool: None,
            avoid_nodes: Vec::new(),
            max_distance: None,
            preferred_regions: Vec::new(),
        });
    }
    let s = Snapshot {
        version: VERSION,
        objectives: Objectives::default(),
        kappa: 1.0,
        routing: Routing::default(),
        tick_seconds: 15.0,
        startup_seconds: 60.0,
        duration_seconds: cfg.duration_seconds,
        nodes,
        zone_latency_ms,
        agents,
        ms_per_distance: 1.0,
        descheduler_every_ticks: 20,
        recorded: None,
        fixed_targets: false,
        agent_resync_seconds: 300.0,
        scheduler: Scheduler::Mom,
        scheduler_seed: 0,
        pricing: None,
        clock_start_seconds: 0.0,
        batch_timing: Default::default(),
        outages: Vec::new(),
        failure_detection_seconds: 15.0,
        max_hourly_cost: None,
        namespace: twin_namespace(),
    };
    s.validate()?;
    Ok(s)
}
