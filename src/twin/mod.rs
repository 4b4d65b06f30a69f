//! The cluster twin (what-if): a discrete-time simulation of nodes and agents that runs MOM's own
//! decision functions — the scaling policy the operator's scaler runs
//! ([`crate::simulator::OperatorPolicy`], i.e. `scaling_policy::decide_observed`), the
//! extender's filter and scores ([`crate::placement::filter`], [`crate::placement::score_breakdown`],
//! kube-scheduler adding them to its own and binding the best), the scale-down order
//! ([`crate::placement::scale_down_order`]) and the descheduler's planner
//! ([`crate::descheduler::plan`]) — and reports what they cost.
//!
//! Model, per tick of `tickSeconds` (the scaler's sync): each agent's demand is the value of its
//! trace bin holding the tick; its policy decides the replicas; added replicas are placed one by
//! one (the extender's filter, then the best of its score and kube-scheduler's own, see
//! [`place`]) and serve `startupSeconds` later; removed
//! replicas go at once, starting ones first, then the farthest from the agent's target. A
//! replica that fits nowhere stays Pending (requested, not serving) and is tried again each tick.
//! Every `deschedulerEveryTicks` ticks (default 20, 0 = never) the descheduler plans over the
//! serving replicas with its default settings and each moved replica restarts on the plan's
//! destination (see [`run_report`]).
//!
//! Metrics ([`Metrics`]), summed over the run:
//! - `latencyMs`: time- and traffic-weighted mean latency between the serving replicas of each
//!   agent and of its peers: Σ w·mean-pair-latency / Σ w over agent–peer pairs with replicas on
//!   both sides, averaged over ticks; pair latency = the snapshot's zone-to-zone matrix
//!   (`zoneLatencyMs`, 0 within a zone unless given), or without one
//!   `msPerDistance × d(x, y)`, the hyperbolic distance of the two replicas' nodes;
//! - `sloViolationMinutes`: Σ over agents and ticks of `tick/60` where demand > serving
//!   replicas × `capacityPerReplica`;
//! - `replicaHours`: Σ requested replicas × `tick/3600`;
//! - `cost`: Σ over ticks and nodes hosting at least one replica of `hourlyCost × tick/3600`
//!   (what the node-hours of used nodes cost);
//! - `energy`: Σ replica-hours × the node's energy-class weight (A = 1 … E = 5, unknown 3);
//! - `evictions`: pods the descheduler moved;
//! - `auctions`: pool-ticks whose capacity was auctioned; `auctionPayments`: Σ of the agents'
//!   Clarke payments (per hour, as `status.allocation.payment`) × tick hours;
//! - `stranded`: replicas replaced because their node was judged silent in an outage;
//! - `budgetRefusals`: agent-ticks at which the MomConfig budget capped a scale-up.
//!
//! Agreement: when the snapshot carries recorded decisions (`recorded.replicas`: an agent's
//! replicas at a tick; `recorded.placements`: the node pod `AGENT-N` was bound to at a tick),
//! the fraction of them the run reproduces exactly.
//!
//! Targets move as the agent controller moves them: an agent's target is recomputed with
//! [`crate::placement::agent_target`] (the function the controller calls) after the placements
//! of every tick in which one of its replicas was bound or removed, and after the descheduler's
//! moves (the controller reconciles on its pods' events, within seconds), and otherwise when
//! its resync comes due: `agentResyncSeconds` plus a spread of up to half of it from a stable
//! hash of its name, counted from its last reconcile (the controller's 300 s + 0–150 s). The
//! inputs are the controller's: the strategy's `coordinates` (rule 1), the bound replicas of
//! its peers with their weights and of its strategy's `nearAgents` at weight 1 (rule 2), its
//! own bound replicas (rule 4) and its previous target (rule 5; the snapshot's `target` at the
//! start). The descheduler is given each target as its optimum and the target it steered
//! toward at its last plan (none before the first), as the operator's descheduler loop is from
//! its start. `fixedTargets: true` keeps every agent at its `target` (and the descheduler's
//! previous target with it).
//!
//! New agents (an empty `target`: a group of GeometricAgents just applied) place as the agent
//! controller places a group created together: after the agents that have a target (in
//! snapshot order), in [`crate::placement::order::first_placement_order`] over the new agents
//! (the most strongly tied first; the controller holds each new agent's pods back until the
//! peers before it have placed). Just before a new agent's first replicas are placed, its
//! target is computed with the controller's inputs and no previous target: its coordinates
//! (rule 1), its placed peers (rule 2), else rule 6, a home on the node with the most free CPU,
//! ties broken by rendezvous on `NAMESPACE/first agent of its group`
//! ([`crate::placement::order::home_key`] over the agents that want replicas; `namespace`
//! empty: the agents' names carry theirs). Its replicas of that tick are all placed toward that
//! target (the extender scores them before the controller sees the first bind).
//!
//! `scheduler: default` binds with a model of the stock kube-scheduler instead of MOM's
//! extender (see [`place_default`]); targets are still computed (the descheduler and the
//! scale-down order read them) but play no part in placement.
//!
//! Batch agents (an agent with `batch`: replica-hours due by a deadline, see
//! [`snapshot::BatchSpec`]): at tick 0, at the start of every forecast slot and whenever the
//! plan has run out with work left, the agent is re-planned from the work still to do
//! ([`crate::batch::plan`], or [`crate::batch::run_at_once`] under `batchTiming: atOnce`, with
//! the snapshot's `pricing`, `clockStartSeconds` and the objectives' cost and sustainability
//! weights); its replicas are then brought to the plan's count per pool (Pending ones and the
//! newest beyond a pool's count go) and placed on nodes of their pool only (the pool furthest
//! below its count first; the descheduler keeps them in it by node selector). Work is counted
//! while a replica serves; cost and carbon while it is bound, at its pool's forecast for the
//! slot ([`BatchOutcome`], `batchCost` in the metrics). A batch agent has no SLO series: it adds
//! no violation minutes.
//!
//! The auction (see [`auction`]): from the second tick on, before scaling, each pool's agents
//! (by the pool their template selects, `pool`) bid their `bid` for the `spec.replicas` the
//! scaler left at the last tick, and at pressure `high` or `critical` the core's
//! [`crate::auction::quota::decide`] (the function the operator's auction loop calls) sets
//! their quotas; an agent keeps at most its quota of replicas, as the agent controller does
//! (the scaler still decides `spec.replicas` above it). Payments are summed in
//! `auctionPayments`. A batch agent bids for its plan's count and keeps at most its quota of
//! replicas (its oldest bound ones).
//!
//! The MomConfig budget (snapshot `maxHourlyCost`, see [`BudgetBook`]): as the agent
//! controller, a scale-up goes only as far as [`crate::budget::allowed`] affords given what every
//! agent's replicas cost now (agents in snapshot order, so one agent's new Pending replicas count
//! for the next), and the auction offers each pool only the capacity the budget left pays for.
//! `budgetRefusals` counts the agent-ticks it held back. Not capped (not modelled): batch agents'
//! scale-ups, and the replacements of stranded replicas and descheduler moves, which the twin
//! re-places directly where the operator deletes the pods and its agent controller's new ones
//! pass the cap (under a tight budget the operator can refuse a replacement; the twin does not).
//!
//! Placement rules: an agent's `avoidNodes` and `maxDistance` (its strategy's) go into the
//! extender's policy ([`crate::placement::filter`] refuses those nodes) and into the
//! descheduler's agent (its violations strategy moves replicas off them, and no move lands
//! there); its `preferredRegions` (values of the region label) narrow what passes to the first
//! listed region with a passing node ([`crate::placement::locality::preferred_region`], as the
//! filter's tier), give the target rule 3 (the nodes of the first listed region that has any)
//! and rank regions for the descheduler. The model of the stock kube-scheduler ignores them, as
//! kube-scheduler does. Regions are values of `topology.kubernetes.io/region`: the operator reads
//! them under the first MomConfig `geometry.topologyKeys` entry (no tier when the list is
//! empty), which `--cluster` does not carry yet, so on a cluster whose first key is another
//! label the twin finds no listed region and applies no tier.
//!
//! Outages ([`snapshot::Outage`], `--set outage=…`): from `fromSeconds` a failed node's
//! replicas stop serving (no demand served, no traffic); `failureDetectionSeconds` later the
//! operator judges it silent (more than 20 s since its last heartbeat renewal; no node when
//! every node is out at once): the extender and the model of kube-scheduler place nothing
//! there, the descheduler sees it unhealthy (no destination; the operator's learns it later,
//! from the node's Ready condition), the
//! auction does not offer it, and the replicas on it are replaced at once (the stranded rule:
//! new pods, placed elsewhere that tick, serving after `startupSeconds`; `stranded` counts
//! them). Replicas placed on it before it was judged silent never serve and are replaced too.
//! From `untilSeconds` it is a node like any other.
//!
//! Not modelled (yet): the failover planner's predictive actions (drains, standbys, the
//! decision process over domain health) and active/passive roles, the strategies' placement
//! rules other than `avoidNodes`, `maxDistance` and `preferredRegions` (locality, `nearNodes`,
//! redundancy caps and the extender's narrowing to one failure domain, tenancy isolation), real node usage (the descheduler sees requests as
//! usage), and `percentageOfNodesToScore` (kube-scheduler scores only part of a large
//! cluster's nodes). Pure and deterministic: sorted maps, no clock.

pub mod pareto;
pub mod recorded;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::placement::{self, AgentPolicy, NodeState, Objectives, PodDemand, Resources, Routing};
use crate::scaling_policy::{Method, PolicySettings};
use crate::simulator::{ClusterModel, Observation, OperatorPolicy, OperatorPolicyConfig};
pub use snapshot::{AgentSpec, BatchSpec, BatchTiming, NodeSpec, Scheduler, Snapshot};

/// Errors of the twin; each names the field and value.
#[derive(Debug, Error)]
pub enum TwinError {
    #[error("twin snapshot: {field}: {reason}")]
    BadField { field: String, reason: String },
    #[error("twin: agent {agent}: {source}")]
    Policy {
        agent: String,
        #[source]
        source: crate::simulator::SimError,
    },
}

/// What a run cost (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub latency_ms: f64,
    pub slo_violation_minutes: f64,
    pub replica_hours: f64,
    pub cost: f64,
    pub energy: f64,
    /// Placements made (one per replica bound).
    pub placements: u64,
    /// Replica-ticks that found no node.
    pub pending_ticks: u64,
    /// Pods the descheduler moved.
    pub evictions: u64,
    /// Ticks (after the first) at which an agent's replica count changed.
    pub scaling_decisions: u64,
    /// What the batch agents' bound replicas cost at their pools' forecast prices (see
    /// [`BatchOutcome`]); 0 without batch agents.
    #[serde(default)]
    pub batch_cost: f64,
    /// Pool-ticks whose capacity was auctioned (pressure `high` or `critical`, see [`auction`]).
    #[serde(default)]
    pub auctions: u64,
    /// Σ over auctioned pool-ticks of the agents' Clarke payments (per hour) × tick hours.
    #[serde(default)]
    pub auction_payments: f64,
    /// Replicas replaced because their node was judged silent during an outage.
    #[serde(default)]
    pub stranded: u64,
    /// Pool-ticks whose auction failed (e.g. an integer program over the limit); the pool's
    /// quotas stayed as they were.
    #[serde(default)]
    pub auction_failures: u64,
    /// Agent-ticks at which the MomConfig budget (`maxHourlyCost`) refused or capped a
    /// scale-up (see [`BudgetBook`]).
    #[serde(default)]
    pub budget_refusals: u64,
}

/// What one tick added to the totals (`--steps`); `latencyMs` is that tick's traffic-weighted
/// mean (absent when no agent–peer pair had serving replicas on both sides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub tick: u64,
    pub latency_ms: Option<f64>,
    pub slo_violation_minutes: f64,
    pub replica_hours: f64,
    pub cost: f64,
    pub energy: f64,
    pub evictions: u64,
    /// Replicas requested at the end of the tick, over all agents.
    pub replicas: u64,
}

/// A run's totals, its agreement with the snapshot's recorded decisions and, when asked for,
/// its steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub metrics: Metrics,
    /// Fraction of [`snapshot::Recorded`] decisions the run reproduced; `None` without any.
    pub agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// With the steps: each agent's target at the end of the run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, Vec<f64>>,
    /// With the steps: the nodes each agent's bound replicas are on at the end of the run
    /// (sorted; a node once per replica).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placements: BTreeMap<String, Vec<String>>,
    /// Each batch agent's outcome, in snapshot order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<BatchOutcome>,
}

/// How a batch agent's work went (module doc, "Batch agents").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutcome {
    pub agent: String,
    pub timing: snapshot::BatchTiming,
    /// Replica-hours served (the work done).
    pub replica_hours: f64,
    /// Σ over ticks of bound replicas × tick hours × their pool's price then (start-up included).
    pub cost: f64,
    pub carbon: f64,
    /// Seconds from the start of the run to the end of the tick that completed the work.
    pub finished_at_seconds: Option<f64>,
    pub deadline_seconds: f64,
    pub deadline_met: bool,
    /// `Some(false)`: `cost` is over the agent's budget.
    pub within_budget: Option<bool>,
    /// What the first plan ([`crate::batch::plan`]) and running at once
    /// ([`crate::batch::run_at_once`]) predicted at tick 0, with no start-up.
    pub planned_cost: f64,
    pub at_once_cost: f64,
}

/// A batch agent during a run.
struct BatchRun {
    plan: Option<crate::batch::BatchPlan>,
    planned_slot: Option<u64>,
    /// Replicas per pool the plan runs now.
    want: BTreeMap<String, u32>,
    done: f64,
    finished_at: Option<f64>,
    cost: f64,
    carbon: f64,
    predicted: Option<(f64, f64)>,
}

/// The pool of a node: its `mom.hypersync.io/pool` label, `default` without one.
fn node_pool(n: &NodeSpec) -> &str {
    n.labels
        .get(crate::labels::POOL_LABEL)
        .map_or(crate::batch::DEFAULT_POOL, String::as_str)
}

/// Re-plans batch agent `a` when a new slot begins or its plan ran out with work left; returns
/// the replicas per pool to run now.
fn batch_want(s: &Snapshot, a: &AgentSpec, br: &mut BatchRun, now: f64) -> Result<BTreeMap<String, u32>, TwinError> {
    let (Some(spec), Some(pricing)) = (&a.batch, &s.pricing) else {
        return Ok(BTreeMap::new());
    };
    if br.finished_at.is_some() {
        return Ok(BTreeMap::new());
    }
    let clock = s.clock_start_seconds + now;
    let slot = (clock / pricing.slot_seconds).floor() as u64;
    let ran_out = br
        .plan
        .as_ref()
        .is_some_and(|p| p.execution.finish_seconds.is_some_and(|f| clock >= f));
    if br.planned_slot != Some(slot) || ran_out {
        let job = crate::batch::BatchJob {
            work_replica_hours: (spec.replica_hours - br.done).max(0.0),
            max_replicas: a.max_replicas,
            now_seconds: clock,
            deadline_seconds: s.clock_start_seconds + spec.deadline_seconds,
            budget: spec.budget.map(|b| (b - br.cost).max(0.0)),
        };
        let weights = crate::batch::Weights {
            cost: s.objectives.cost,
            sustainability: s.objectives.sustainability,
        };
        let bad = |e: crate::batch::BatchError| TwinError::BadField {
            field: format!("agents.{}.batch", a.name),
            reason: e.to_string(),
        };
        let planned = crate::batch::plan(&job, pricing, &weights).map_err(bad)?;
        let at_once = crate::batch::run_at_once(&job, pricing, &weights).map_err(bad)?;
        if br.predicted.is_none() {
            br.predicted = Some((planned.execution.cost, at_once.execution.cost));
        }
        br.plan = Some(match s.batch_timing {
            snapshot::BatchTiming::Planned => planned,
            snapshot::BatchTiming::AtOnce => at_once,
        });
        br.planned_slot = Some(slot);
    }
    Ok(br.plan.as_ref().map(|p| p.replicas_at(clock)).unwrap_or_default())
}

/// Brings batch agent `a`'s replicas to `want` (replicas per pool): drops its Pending replicas
/// and its bound ones beyond their pool's count (newest first), then adds Pending ones up to the
/// total; returns whether a bound replica was removed.
fn batch_scale(
    s: &Snapshot,
    a: &AgentSpec,
    run: &mut AgentRun,
    want: &BTreeMap<String, u32>,
    next_id: &mut u64,
    serves_from: u64,
    states: &mut [NodeState],
) -> bool {
    // The agent controller keeps at most the auction's quota of pods (the oldest bound ones).
    let total: u32 = want.values().sum::<u32>().min(run.quota.unwrap_or(u32::MAX));
    let mut kept: BTreeMap<&str, u32> = BTreeMap::new();
    let mut unbound = false;
    let mut keep = Vec::with_capacity(run.replicas.len());
    for r in run.replicas.drain(..) {
        let Some(n) = r.node else { continue };
        let pool = node_pool(&s.nodes[n]);
        let count = kept.entry(pool).or_insert(0);
        if *count < want.get(pool).copied().unwrap_or(0) && (keep.len() as u32) < total {
            *count += 1;
            keep.push(r);
        } else {
            unbind(&mut states[n], a);
            unbound = true;
        }
    }
    run.replicas = keep;
    for _ in run.replicas.len() as u32..total {
        run.replicas.push(Replica {
            id: *next_id,
            seq: run.created,
            node: None,
            serves_from,
            last_evicted_at: None,
        });
        *next_id += 1;
        run.created += 1;
    }
    unbound
}

/// The pool a Pending replica of a batch agent goes to: the one furthest below its planned
/// count (ties: the pool name).
fn batch_pool<'w>(s: &Snapshot, run: &AgentRun, want: &'w BTreeMap<String, u32>) -> Option<&'w str> {
    want.iter()
        .map(|(pool, n)| {
            let bound = run
                .replicas
                .iter()
                .filter(|r| r.node.is_some_and(|k| node_pool(&s.nodes[k]) == pool))
                .count() as i64;
            (pool.as_str(), i64::from(*n) - bound)
        })
        .filter(|(_, deficit)| *deficit > 0)
        .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(x.0)))
        .map(|(pool, _)| pool)
}

/// One replica in the twin.
#[derive(Debug, Clone)]
struct Replica {
    id: u64,
    /// Its agent's count of replicas created before it: the pod is `AGENT-SEQ`.
    seq: u64,
    /// Index into the snapshot's nodes; `None` while Pending.
    node: Option<usize>,
    /// Tick index from which it serves.
    serves_from: u64,
    /// When (seconds) the descheduler last moved it.
    last_evicted_at: Option<u64>,
}

struct AgentRun {
    policy: OperatorPolicy,
    replicas: Vec<Replica>,
    history: Vec<f64>,
    created: u64,
    /// `spec.replicas`: the scaler's last decision (the replicas exist up to the quota).
    spec: u32,
    /// The auction's quota (`status.allocation.quota`) while the agent's pool is contended.
    quota: Option<u32>,
}

/// The agents' targets during a run (module doc), by snapshot agent index.
struct Targets {
    /// The agent controller's target.
    current: Vec<Vec<f64>>,
    /// The target the descheduler steered toward at its last plan (its `previousTarget`; none
    /// before the first plan, as in the operator).
    steered: Vec<Option<Vec<f64>>>,
    /// A replica of the agent was bound, removed or moved since its last recompute.
    moved: Vec<bool>,
    /// The agents whose replicas a target follows ([`placement::followed_agents`]), with their
    /// weights; `None`: not in the snapshot (no replicas).
    followed: Vec<Vec<(Option<usize>, f64)>>,
    /// Each agent's resync period (ticks) and the tick its next resync comes due.
    period: Vec<u64>,
    due: Vec<u64>,
    dimension: usize,
    /// The nodes of the replicas each target was last computed from (see
    /// [`Targets::recompute`]); `None` per agent before its first computation, and `None` as a
    /// whole when not kept.
    computed_from: Option<Vec<Option<Vec<u32>>>>,
    /// Per agent: rule 3's nodes (its first preferred region that has any), positions.
    preferred_region_nodes: Vec<Vec<Vec<f64>>>,
}

impl Targets {
    /// `reuse`: skip a recompute whose replica nodes are those of the last one (see
    /// [`Targets::recompute`]).
    fn new(s: &Snapshot, agent_index: &BTreeMap<&str, usize>, reuse: bool) -> Self {
        let current: Vec<Vec<f64>> = s.agents.iter().map(|a| a.target.clone()).collect();
        // The controller's resync: `agentResyncSeconds` plus a spread of up to half of it from
        // a stable hash of the name (its 300 s + 0–150 s), counted from the last reconcile.
        let spread_ms = ((s.agent_resync_seconds * 500.0).round() as u64).max(1);
        let period: Vec<u64> = s
            .agents
            .iter()
            .map(|a| {
                let seconds =
                    s.agent_resync_seconds + (crate::stable_hash::mixed(a.name.bytes()) % spread_ms) as f64 / 1000.0;
                ((seconds / s.tick_seconds).round() as u64).max(1)
            })
            .collect();
        let followed = s
            .agents
            .iter()
            .map(|a| {
                placement::followed_agents(a.peers.clone(), &a.near_agents)
                    .into_iter()
                    .map(|(p, w)| (agent_index.get(p.as_str()).copied(), w))
                    .collect()
            })
            .collect();
        // Rule 3: the nodes of the first preferred region that has any, as the controller takes
        // them (the twin's regions are values of the region label).
        let preferred_region_nodes = s
            .agents
            .iter()
            .map(|a| {
                a.preferred_regions
                    .iter()
                    .map(|region| {
                        s.nodes
                            .iter()
                            .filter(|n| n.labels.get(crate::labels::REGION_LABEL) == Some(region))
                            .map(|n| n.position.clone())
                            .collect::<Vec<_>>()
                    })
                    .find(|nodes| !nodes.is_empty())
                    .unwrap_or_default()
            })
            .collect();
        Self {
            steered: vec![None; s.agents.len()],
            preferred_region_nodes,
            current,
            moved: vec![false; s.agents.len()],
            followed,
            due: period.clone(),
            period,
            dimension: s.nodes.first().map_or(0, |n| n.position.len()),
            computed_from: reuse.then(|| vec![None; s.agents.len()]),
        }
    }

    /// The agent controller's reconciles at tick `t`: recomputes the target of every agent
    /// whose replicas were bound, removed or moved since its last one, or whose resync is due
    /// (none with `fixedTargets`); each resets the agent's resync.
    ///
    /// With `computed_from` kept, a recompute from the same replica nodes, in the same order, as
    /// the agent's last one is skipped: the target is then bit for bit what it would compute.
    /// Rules 1–4 read only those positions and the snapshot: the followed agents of positive
    /// weight, and the agent's own replicas only when none of those has a bound replica (the
    /// snapshot keeps weights within [1e-300, 1e300], so the weighted mean of bound replicas
    /// does not fail over to rule 4); rule 5 gives the previous target, already inside the
    /// ball, back unchanged.
    fn recompute(&mut self, s: &Snapshot, runs: &[AgentRun], t: u64) {
        if s.fixed_targets {
            return;
        }
        for i in 0..s.agents.len() {
            if !(self.moved[i] || t >= self.due[i]) {
                continue;
            }
            self.moved[i] = false;
            self.due[i] = t + self.period[i];
            if let Some(seen) = &mut self.computed_from {
                let mut key = Vec::new();
                for &(j, w) in &self.followed[i] {
                    if let Some(j) = j.filter(|_| w > 0.0) {
                        key.extend(runs[j].replicas.iter().filter_map(|r| r.node).map(|n| n as u32));
                    }
                    key.push(u32::MAX);
                }
                if key.iter().all(|&n| n == u32::MAX) {
                    key.extend(runs[i].replicas.iter().filter_map(|r| r.node).map(|n| n as u32));
                }
                if seen[i].as_ref() == Some(&key) {
                    continue;
                }
                seen[i] = Some(key);
            }
            let inputs = placement::TargetInputs {
                // None only for a new agent not placed yet (see [`Targets::first`]).
                previous: (!self.current[i].is_empty()).then(|| self.current[i].clone()),
                // Rule 6 (free capacity) is for a new agent's first placement only.
                ..self.inputs(s, runs, i)
            };
            if let Some(target) = placement::agent_target(&inputs, s.kappa) {
                self.current[i] = target;
            }
        }
    }

    /// The controller's inputs for agent `i`'s target that both [`Targets::recompute`] and
    /// [`Targets::first`] give: its coordinates, the bound replicas of the agents it follows and
    /// its own; no previous target, free capacity or home key.
    fn inputs(&self, s: &Snapshot, runs: &[AgentRun], i: usize) -> placement::TargetInputs {
        placement::TargetInputs {
            explicit: s.agents[i].coordinates.clone(),
            dimension: self.dimension,
            peers: self.followed[i]
                .iter()
                .map(|&(j, w)| (w, j.map(|j| bound_positions(s, runs, j)).unwrap_or_default()))
                .collect(),
            own_replicas: bound_positions(s, runs, i),
            preferred_region_nodes: self.preferred_region_nodes[i].clone(),
            ..placement::TargetInputs::default()
        }
    }

    /// A new agent's first target (module doc), computed just before its first replicas are
    /// placed; an agent that has one keeps it.
    fn first(
        &mut self,
        s: &Snapshot,
        runs: &[AgentRun],
        states: &[NodeState],
        agent_index: &BTreeMap<&str, usize>,
        i: usize,
    ) {
        if !self.current[i].is_empty() {
            return;
        }
        let inputs = placement::TargetInputs {
            free_capacity: states
                .iter()
                .map(|n| {
                    (
                        n.allocatable.cpu_millis.saturating_sub(n.requested.cpu_millis),
                        n.name.clone(),
                        n.position.clone(),
                    )
                })
                .collect(),
            home_key: home_key(s, runs, agent_index, i),
            ..self.inputs(s, runs, i)
        };
        if let Some(target) = placement::agent_target(&inputs, s.kappa) {
            self.current[i] = target;
        }
    }
}

/// Positions of the nodes agent `j`'s replicas are bound to.
fn bound_positions(s: &Snapshot, runs: &[AgentRun], j: usize) -> Vec<Vec<f64>> {
    runs[j]
        .replicas
        .iter()
        .filter_map(|r| r.node)
        .map(|n| s.nodes[n].position.clone())
        .collect()
}

fn group_member(a: &AgentSpec) -> placement::order::GroupMember {
    placement::order::GroupMember {
        name: a.name.clone(),
        peers: a.peers.iter().map(|(p, w)| (p.clone(), *w)).collect(),
    }
}

/// Agent `i`'s home key (module doc): its group is gathered over the agents that want replicas
/// now, as the operator's over those whose `spec.replicas` is above 0.
fn home_key(s: &Snapshot, runs: &[AgentRun], agent_index: &BTreeMap<&str, usize>, i: usize) -> Option<String> {
    if s.agents[i].peers.is_empty() {
        return None;
    }
    let lookup = |name: &str| {
        let j = *agent_index.get(name)?;
        (!runs[j].replicas.is_empty()).then(|| group_member(&s.agents[j]))
    };
    let group = placement::order::gather_group(group_member(&s.agents[i]), lookup);
    let key = placement::order::home_key(&s.namespace, &group)?;
    // An empty namespace gives `/first`: the agents' names carry theirs.
    Some(key.strip_prefix('/').map_or_else(|| key.clone(), str::to_string))
}

/// The order agents' Pending replicas are placed in each tick (module doc): the agents with a
/// target in snapshot order, then the new ones in their first-placement order.
fn placement_sequence(s: &Snapshot, agent_index: &BTreeMap<&str, usize>) -> Vec<usize> {
    let mut sequence: Vec<usize> = (0..s.agents.len())
        .filter(|&i| !s.agents[i].target.is_empty())
        .collect();
    let new: Vec<placement::order::GroupMember> = s
        .agents
        .iter()
        .filter(|a| a.target.is_empty())
        .map(group_member)
        .collect();
    if !new.is_empty() {
        sequence.extend(
            placement::order::first_placement_order(&new)
                .iter()
                .filter_map(|n| agent_index.get(n.as_str()).copied()),
        );
    }
    sequence
}

/// Energy-class weight (A = 1 … E = 5, unknown 3).
fn energy_weight(class: Option<char>) -> f64 {
    match class.map(|c| c.to_ascii_uppercase()) {
        Some(c @ 'A'..='E') => f64::from(c as u8 - b'A' + 1),
        _ => 3.0,
    }
}

/// Where pair latencies come from: `group[node]` and `ms[g][h]` between groups — zones with the
/// snapshot's `zoneLatencyMs`, else single nodes with `msPerDistance × d(x, y)` (the hyperbolic
/// distance of the nodes' positions at curvature −κ).
struct LatencyTable {
    group: Vec<usize>,
    ms: Vec<Vec<f64>>,
}

impl LatencyTable {
    fn new(s: &Snapshot) -> Self {
        if s.zone_latency_ms.is_empty() {
            let ms = s
                .nodes
                .iter()
                .map(|a| {
                    s.nodes
                        .iter()
                        .map(|b| {
                            s.ms_per_distance * crate::geometry::poincare::distance(&a.position, &b.position, s.kappa)
                        })
                        .collect()
                })
                .collect();
            return Self {
                group: (0..s.nodes.len()).collect(),
                ms,
            };
        }
        let zone_of: Vec<String> = s
            .nodes
            .iter()
            .map(|n| n.labels.get(crate::labels::ZONE_LABEL).cloned().unwrap_or_default())
            .collect();
        let zones: Vec<&String> = zone_of
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let group = zone_of.iter().map(|z| zones.binary_search(&z).unwrap_or(0)).collect();
        let ms = zones
            .iter()
            .map(|a| zones.iter().map(|b| s.zone_latency(a, b)).collect())
            .collect();
        Self { group, ms }
    }
}

/// Runs the snapshot through the twin and returns its metrics. `progress(done, total)` is called
/// about a hundred times.
pub fn run(s: &Snapshot, progress: &mut dyn FnMut(u64, u64)) -> Result<Metrics, TwinError> {
    Ok(run_report(s, false, progress)?.metrics)
}

/// The extender's view of the twin's nodes, kept up to date as replicas come and go.
fn node_states(s: &Snapshot) -> Vec<NodeState> {
    s.nodes
        .iter()
        .map(|n| NodeState {
            name: n.name.clone(),
            labels: Arc::new(n.labels.clone()),
            position: n.position.clone(),
            allocatable: Resources {
                cpu_millis: n.cpu_millis,
                memory_bytes: n.memory_bytes,
            },
            requested: Resources::default(),
            tentative: Resources::default(),
            tentative_pods: 0,
            pods: 0,
            max_pods: n.max_pods,
            tenants: BTreeMap::new(),
            hourly_cost: n.hourly_cost,
            spot: n.spot,
            energy_class: n.energy_class,
        })
        .collect()
}

fn bind(state: &mut NodeState, a: &AgentSpec) {
    state.requested = state.requested.saturating_add(a.requests());
    state.pods += 1;
}

fn unbind(state: &mut NodeState, a: &AgentSpec) {
    state.requested = Resources {
        cpu_millis: state.requested.cpu_millis.saturating_sub(a.cpu_millis),
        memory_bytes: state.requested.memory_bytes.saturating_sub(a.memory_bytes),
    };
    state.pods = state.pods.saturating_sub(1);
}

/// One tick of the operator's auction loop (`operator::auction`), pool by pool (`pools`: agent
/// indices by the pool their template selects; `agent_pool`: each agent's pool): each agent wants its `spec.replicas`
/// ([`AgentRun::spec`]) at its bid ([`crate::auction::quota::declared_values`]; none: 0 per
/// replica); the pool offers its nodes' allocatable minus what replicas of agents outside it
/// hold there ([`crate::auction::quota::offered_capacity`], node cost its `hourlyCost`, 1
/// without one, as the operator's label default; nodes judged silent are not offered);
/// [`crate::auction::quota::decide`] runs the
/// VCG auction at pressure `high` or `critical`. Its allocations become the agents' quotas, and
/// below `high` the quotas are released. A pool whose auction fails (e.g. an integer program
/// over [`crate::auction::quota::MIP_MAX_INTEGER_VARIABLES`]) keeps its quotas, as the operator's
/// tick does. With a MomConfig budget ([`BudgetBook`]) each pool is offered only the capacity
/// the budget left pays for ([`crate::budget::affordable_capacity`], the operator's
/// `apply_budget`), and pressure is measured against that.
fn auction(
    s: &Snapshot,
    runs: &mut [AgentRun],
    (pools, agent_pool): (&BTreeMap<&str, Vec<usize>>, &[&str]),
    down: &[bool],
    book: Option<&BudgetBook>,
    hours: f64,
    m: &mut Metrics,
) {
    use crate::auction::quota::{self, AgentDemand, PoolDecision, QuotaSettings};
    let settings = QuotaSettings {
        shapley: Default::default(),
        mip_max_integer_variables: Some(quota::MIP_MAX_INTEGER_VARIABLES),
    };
    for (pool, members) in pools {
        let mut others = vec![Resources::default(); s.nodes.len()];
        for (i, run) in runs.iter().enumerate() {
            if agent_pool[i] == *pool {
                continue;
            }
            for n in run.replicas.iter().filter_map(|r| r.node) {
                others[n] = others[n].saturating_add(s.agents[i].requests());
            }
        }
        let capacity = quota::offered_capacity(
            s.nodes
                .iter()
                .enumerate()
                .filter(|(k, n)| node_pool(n) == *pool && !down[*k])
                .map(|(k, n)| {
                    let allocatable = Resources {
                        cpu_millis: n.cpu_millis,
                        memory_bytes: n.memory_bytes,
                    };
                    (n.name.as_str(), allocatable, others[k], n.hourly_cost.unwrap_or(1.0))
                }),
        );
        // The budget's cut: what is left of it once the agents outside the pool are paid for.
        let capacity = match book {
            Some(b) => {
                let others_cost = b.cost_where(|i| agent_pool[i] != *pool);
                crate::budget::affordable_capacity(&capacity, &b.prices, b.max_hourly_cost - others_cost)
            }
            None => capacity,
        };
        let request = |a: &AgentSpec| crate::auction::ResourceRequest {
            cpu_millis: a.cpu_millis,
            memory_bytes: a.memory_bytes,
        };
        // Below `high` (most ticks) `decide` would release the quotas without an auction: the
        // same pressure is measured first without building the bids.
        let pressure = quota::pressure_of(
            members.iter().map(|&i| (runs[i].spec, request(&s.agents[i]))),
            capacity.iter().map(crate::auction::NodeCapacity::as_array),
        );
        if !pressure.level.auctions() {
            for &i in members {
                runs[i].quota = None;
            }
            continue;
        }
        let demands: Vec<AgentDemand> = members
            .iter()
            .map(|&i| {
                let a = &s.agents[i];
                let wanted = runs[i].spec;
                AgentDemand {
                    agent: a.name.clone(),
                    // The operator charges the namespace's tenant: the namespace here.
                    tenant: match a.name.split_once('/') {
                        Some((namespace, _)) => namespace.to_string(),
                        None if s.namespace.is_empty() => "default".to_string(),
                        None => s.namespace.clone(),
                    },
                    wanted,
                    request: request(a),
                    marginal_values: a
                        .bid
                        .as_ref()
                        .map(|b| quota::declared_values(&b.marginal_values, b.value_per_replica, wanted as usize))
                        .unwrap_or_default(),
                }
            })
            .collect();
        match quota::decide(&demands, &capacity, settings) {
            Ok(PoolDecision::Uncontended { .. }) => {
                for &i in members {
                    runs[i].quota = None;
                }
            }
            Ok(PoolDecision::Auctioned { outcome, .. }) => {
                m.auctions += 1;
                let by_agent: BTreeMap<&str, &crate::auction::AgentAllocation> =
                    outcome.allocations.iter().map(|x| (x.agent.as_str(), x)).collect();
                for &i in members {
                    let given = by_agent.get(s.agents[i].name.as_str());
                    runs[i].quota = given.map(|x| x.replicas);
                    m.auction_payments += given.map_or(0.0, |x| x.payment) * hours;
                }
            }
            // Quotas stay as they were, as the operator's tick leaves them.
            Err(_) => m.auction_failures += 1,
        }
    }
}

/// The MomConfig budget as the twin applies it (snapshot `maxHourlyCost`): every node priced as
/// the operator's budget prices it ([`crate::budget::PricedNode`]: `hourlyCost`, 1 when absent,
/// × [`crate::budget::SPOT_PRICE_FACTOR`] when spot), a bound replica costing its pro-rata share
/// of its node and a Pending one the most it could cost where its template's pool admits it
/// ([`crate::budget::unbound_cost`]). Batch agents' replicas are counted in the cost, but their
/// scale-ups are not capped (not modelled).
///
/// The cost of every agent's replicas is summed afresh once per tick ([`BudgetBook::refresh`],
/// before the auction) and kept up to date as each agent scales ([`BudgetBook::update`]), so a
/// decision sees the replicas the agents before it created that tick.
struct BudgetBook {
    max_hourly_cost: f64,
    prices: Vec<crate::budget::PricedNode>,
    /// Per agent: what one more (Pending) replica costs per hour.
    unbound: Vec<f64>,
    /// Per agent: what its replicas cost per hour now.
    agent_cost: Vec<f64>,
    /// Σ of `agent_cost`.
    total: f64,
}

impl BudgetBook {
    fn new(s: &Snapshot) -> Option<Self> {
        let max_hourly_cost = s.max_hourly_cost?;
        let prices: Vec<crate::budget::PricedNode> = s
            .nodes
            .iter()
            .map(|n| crate::budget::PricedNode {
                name: n.name.clone(),
                allocatable: Resources {
                    cpu_millis: n.cpu_millis,
                    memory_bytes: n.memory_bytes,
                },
                hourly_cost: n.hourly_cost.unwrap_or(crate::budget::DEFAULT_HOURLY_COST),
                spot: n.spot,
                labels: n.labels.clone(),
            })
            .collect();
        let unbound = s
            .agents
            .iter()
            .map(|a| {
                let selector = match &a.pool {
                    Some(pool) => BTreeMap::from([(crate::labels::POOL_LABEL.to_string(), pool.clone())]),
                    None => BTreeMap::new(),
                };
                crate::budget::unbound_cost(a.requests(), &selector, &prices)
            })
            .collect();
        Some(Self {
            max_hourly_cost,
            prices,
            unbound,
            agent_cost: vec![0.0; s.agents.len()],
            total: 0.0,
        })
    }

    /// What agent `i`'s replicas cost per hour.
    fn cost_of(&self, s: &Snapshot, runs: &[AgentRun], i: usize) -> f64 {
        let requests = s.agents[i].requests();
        runs[i]
            .replicas
            .iter()
            .map(|r| match r.node {
                Some(n) => self.prices[n].pod_cost(requests),
                None => self.unbound[i],
            })
            .sum()
    }

    /// Every agent's cost summed afresh.
    fn refresh(&mut self, s: &Snapshot, runs: &[AgentRun]) {
        for i in 0..runs.len() {
            self.agent_cost[i] = self.cost_of(s, runs, i);
        }
        self.total = self.agent_cost.iter().sum();
    }

    /// Agent `i`'s replicas changed.
    fn update(&mut self, s: &Snapshot, runs: &[AgentRun], i: usize) {
        let now = self.cost_of(s, runs, i);
        self.total += now - self.agent_cost[i];
        self.agent_cost[i] = now;
    }

    /// What the agents `counted` admits cost per hour (agent order).
    fn cost_where(&self, counted: impl Fn(usize) -> bool) -> f64 {
        (0..self.agent_cost.len())
            .filter(|&i| counted(i))
            .map(|i| self.agent_cost[i])
            .sum()
    }

    /// The agent controller's cap ([`crate::budget::allowed`]): agent `i`, with `active` pods,
    /// may grow to at most this many of the `wanted`, given every agent's replicas now.
    fn cap(&self, i: usize, active: u32, wanted: u32) -> u32 {
        crate::budget::allowed(self.total, self.unbound[i], active, wanted, self.max_hourly_cost)
    }
}

/// Recorded decisions, indexed for the run, and how many the run matched.
#[derive(Default)]
struct Agreement {
    replicas: BTreeMap<(u64, String), u32>,
    placements: BTreeMap<(u64, String), String>,
    matched: u64,
}

impl Agreement {
    fn new(s: &Snapshot) -> Self {
        let Some(r) = &s.recorded else {
            return Self::default();
        };
        Self {
            replicas: r
                .replicas
                .iter()
                .map(|d| ((d.tick, d.agent.clone()), d.replicas))
                .collect(),
            placements: r
                .placements
                .iter()
                .map(|d| ((d.tick, d.pod.clone()), d.node.clone()))
                .collect(),
            matched: 0,
        }
    }

    fn total(&self) -> usize {
        self.replicas.len() + self.placements.len()
    }
}

/// [`run`] with the agreement and, when `steps`, one [`Step`] per tick.
///
/// Per tick: scaling (every agent, name order), then placement of every Pending replica, then
/// — every `deschedulerEveryTicks` ticks — the descheduler's plan ([`crate::descheduler::plan`]
/// with default settings, each agent's optimum its `target`, node usage taken as its requests):
/// each move re-binds the replica to the plan's destination, where it serves again after
/// `startupSeconds`, and counts one eviction. Then the tick's metrics.
pub fn run_report(s: &Snapshot, steps: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<Report, TwinError> {
    run_with(s, steps, progress, true)
}

/// [`run_report`]; `reuse_targets: false` recomputes every due target even from unchanged
/// inputs (the tests compare both).
fn run_with(
    s: &Snapshot,
    steps: bool,
    progress: &mut dyn FnMut(u64, u64),
    reuse_targets: bool,
) -> Result<Report, TwinError> {
    s.validate()?;
    let tick = s.tick_seconds;
    let latency = LatencyTable::new(s);
    let zone_of: Vec<String> = s
        .nodes
        .iter()
        .map(|n| n.labels.get(crate::labels::ZONE_LABEL).cloned().unwrap_or_default())
        .collect();
    let mut states = node_states(s);
    let node_index: BTreeMap<&str, usize> = s.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let energy: Vec<f64> = s.nodes.iter().map(|n| energy_weight(n.energy_class)).collect();
    let ticks = s.ticks();
    let mut runs: Vec<AgentRun> = Vec::with_capacity(s.agents.len());
    for a in &s.agents {
        let cluster = ClusterModel {
            capacity_per_replica: a.capacity_per_replica,
            startup_seconds: s.startup_seconds,
            bin_seconds: a.bin_seconds,
            sync_seconds: tick,
            min_replicas: a.min_replicas,
            max_replicas: a.max_replicas,
        };
        let mut cfg = OperatorPolicyConfig::new(a.method);
        cfg.settings = a
            .scaling
            .clone()
            .unwrap_or_else(|| PolicySettings::new(a.method, a.min_replicas, a.max_replicas, a.capacity_per_replica));
        if let Some(h) = a.history_seconds {
            cfg.history_seconds = h;
        }
        let policy = OperatorPolicy::new(&cfg, &cluster).map_err(|source| TwinError::Policy {
            agent: a.name.clone(),
            source,
        })?;
        runs.push(AgentRun {
            policy,
            replicas: Vec::new(),
            history: Vec::new(),
            created: 0,
            spec: 0,
            quota: None,
        });
    }
    let agent_index: BTreeMap<&str, usize> = s.agents.iter().enumerate().map(|(i, a)| (a.name.as_str(), i)).collect();
    let mut batch_runs: Vec<Option<BatchRun>> = s
        .agents
        .iter()
        .map(|a| {
            a.batch.as_ref().map(|_| BatchRun {
                plan: None,
                planned_slot: None,
                want: BTreeMap::new(),
                done: 0.0,
                finished_at: None,
                cost: 0.0,
                carbon: 0.0,
                predicted: None,
            })
        })
        .collect();
    // Each agent's target (the agent controller's), the target the descheduler steered toward at
    // its last plan, and whether a replica of the agent was bound, removed or moved.
    let mut targets = Targets::new(s, &agent_index, reuse_targets);
    let sequence = placement_sequence(s, &agent_index);
    let peers: Vec<Vec<(usize, f64)>> = s
        .agents
        .iter()
        .map(|a| {
            a.peers
                .iter()
                .filter(|(_, w)| **w > 0.0)
                .filter_map(|(p, w)| agent_index.get(p.as_str()).map(|&j| (j, *w)))
                .collect()
        })
        .collect();
    let mut agree = Agreement::new(s);
    let mut report = Report::default();
    let m = &mut report.metrics;
    let mut next_id = 0u64;
    let mut latency_sum = 0.0;
    let mut latency_ticks = 0u64;
    // Nodes stay put in the twin: the descheduler's distances are kept while a target stays.
    let mut kept = Kept::default();
    let startup_ticks = (s.startup_seconds / tick).ceil() as u64;
    let hours = tick / 3600.0;
    let agent_pool: Vec<&str> = s
        .agents
        .iter()
        .map(|a| a.pool.as_deref().unwrap_or(crate::batch::DEFAULT_POOL))
        .collect();
    let mut pools: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in agent_pool.iter().enumerate() {
        pools.entry(p).or_default().push(i);
    }
    // Each node's outages as run-time windows, and which nodes are failed / judged silent now.
    let outage_windows: Vec<Vec<(f64, f64)>> = s
        .nodes
        .iter()
        .map(|n| {
            s.outages
                .iter()
                .filter(|o| o.covers(n))
                .map(|o| (o.from_seconds, o.until_seconds))
                .collect()
        })
        .collect();
    let mut failed = vec![false; s.nodes.len()];
    let mut down = vec![false; s.nodes.len()];
    let mut book = BudgetBook::new(s);
    for t in 0..ticks {
        if t % (ticks / 100).max(1) == 0 {
            progress(t, ticks);
        }
        let now = t as f64 * tick;
        let mut step = Step {
            tick: t,
            ..Step::default()
        };
        // Outages: a failed node's replicas stop serving at once; once the operator judges it
        // silent (`failureDetectionSeconds` later) no replica is placed there and those on it
        // are replaced (the stranded rule: the pods are deleted and the agent controller makes
        // new ones, placed elsewhere this tick).
        if !s.outages.is_empty() {
            for (n, windows) in outage_windows.iter().enumerate() {
                failed[n] = windows.iter().any(|&(from, until)| from <= now && now < until);
                down[n] = windows
                    .iter()
                    .any(|&(from, until)| from + s.failure_detection_seconds <= now && now < until);
            }
            // The operator judges no node silent when every node lags at once (its own link to
            // the apiserver is the likelier fault).
            if down.iter().all(|d| *d) {
                down.fill(false);
            }
            for (i, a) in s.agents.iter().enumerate() {
                let run = &mut runs[i];
                for r in run.replicas.iter_mut() {
                    let Some(n) = r.node.filter(|&n| down[n]) else {
                        continue;
                    };
                    unbind(&mut states[n], a);
                    *r = Replica {
                        id: next_id,
                        seq: run.created,
                        node: None,
                        serves_from: t + startup_ticks,
                        last_evicted_at: None,
                    };
                    next_id += 1;
                    run.created += 1;
                    m.stranded += 1;
                    targets.moved[i] = true;
                }
            }
        }
        // The auction loop: quotas from the `spec.replicas` the scaler left at the last tick.
        if let Some(b) = book.as_mut() {
            b.refresh(s, &runs);
        }
        if t > 0 {
            auction(s, &mut runs, (&pools, &agent_pool), &down, book.as_ref(), hours, m);
        }
        // Scaling, then placement, agent by agent in snapshot order (sorted by name).
        for (i, a) in s.agents.iter().enumerate() {
            let bin = ((now / a.bin_seconds).floor() as usize).min(a.demand.len().saturating_sub(1));
            let run = &mut runs[i];
            if run.history.len() <= bin {
                run.history.extend_from_slice(&a.demand[run.history.len()..=bin]);
            }
            let pods = run.replicas.len() as u32;
            if let Some(br) = batch_runs[i].as_mut() {
                br.want = batch_want(s, a, br, now)?;
                let serves_from = if t == 0 { 0 } else { t + startup_ticks };
                if batch_scale(s, a, run, &br.want, &mut next_id, serves_from, &mut states) {
                    targets.moved[i] = true;
                }
                // `spec.replicas` is the plan's count (the batch scaler writes it, and its receipt
                // records it); the pods stop at the quota.
                let planned: u32 = br.want.values().sum();
                if !agree.replicas.is_empty() && agree.replicas.get(&(t, a.name.clone())) == Some(&planned) {
                    agree.matched += 1;
                }
                if t > 0 && planned != run.spec {
                    m.scaling_decisions += 1;
                }
                run.spec = planned;
                if let Some(b) = book.as_mut() {
                    b.update(s, &runs, i);
                }
                continue;
            }
            let ready = run
                .replicas
                .iter()
                .filter(|r| r.node.is_some() && r.serves_from <= t)
                .count() as u32;
            let desired = if t == 0 {
                // A steady start, as the simulator's: the replicas the first demand needs, serving.
                let first = (a.demand[0] / a.capacity_per_replica - 1e-9).ceil().max(0.0) as u32;
                match (a.initial_replicas, a.method) {
                    (Some(n), _) => n,
                    (None, Method::Manual) => a.replicas,
                    (None, _) => first,
                }
                .clamp(a.min_replicas, a.max_replicas)
            } else {
                let obs = Observation {
                    now,
                    bin,
                    history: &run.history,
                    spec_replicas: run.spec,
                    ready_replicas: ready,
                };
                run.policy.decide(&obs).map_err(|source| TwinError::Policy {
                    agent: a.name.clone(),
                    source,
                })?
            };
            if !agree.replicas.is_empty() && agree.replicas.get(&(t, a.name.clone())) == Some(&desired) {
                agree.matched += 1;
            }
            if t > 0 && desired != run.spec {
                m.scaling_decisions += 1;
            }
            run.spec = desired;
            // The agent controller keeps at most the auction's quota of pods, and creates no more
            // than the budget affords.
            let want = run.quota.map_or(desired, |q| desired.min(q));
            let want = match &book {
                Some(b) if want > pods => {
                    let allowed = b.cap(i, pods, want);
                    if allowed < want {
                        m.budget_refusals += 1;
                    }
                    allowed
                }
                _ => want,
            };
            let run = &mut runs[i];
            let serves_from = if t == 0 { 0 } else { t + startup_ticks };
            for _ in pods..want {
                run.replicas.push(Replica {
                    id: next_id,
                    seq: run.created,
                    node: None,
                    serves_from,
                    last_evicted_at: None,
                });
                next_id += 1;
                run.created += 1;
            }
            if want < pods && remove_replicas(s, a, &targets.current[i], run, pods - want, t, &mut states) {
                targets.moved[i] = true;
            }
            if let Some(b) = book.as_mut() {
                b.update(s, &runs, i);
            }
        }
        // Place every Pending replica (new ones and earlier misses), agents in their sequence.
        for &i in &sequence {
            let a = &s.agents[i];
            if runs[i].replicas.iter().all(|r| r.node.is_some()) {
                continue;
            }
            targets.first(s, &runs, &states, &agent_index, i);
            for k in 0..runs[i].replicas.len() {
                if runs[i].replicas[k].node.is_some() {
                    continue;
                }
                let pod = format!("{}-{}", a.name, runs[i].replicas[k].seq);
                let pool = match &batch_runs[i] {
                    // The plan's pool, and the template's selector too when it has one (the
                    // operator adds the plan's pools to the template's node selector).
                    Some(br) => match batch_pool(s, &runs[i], &br.want) {
                        Some(p) if a.pool.as_deref().is_none_or(|q| q == p) => Some(p),
                        Some(_) => {
                            m.pending_ticks += 1;
                            continue;
                        }
                        None => continue,
                    },
                    // The template's pool selector, if any.
                    None => a.pool.as_deref(),
                };
                let chosen = match s.scheduler {
                    Scheduler::Mom if targets.current[i].is_empty() => None,
                    Scheduler::Mom => place(
                        s,
                        a,
                        &pod,
                        &targets.current[i],
                        &runs[i].replicas,
                        &states,
                        &zone_of,
                        Eligible { pool, down: &down },
                    ),
                    Scheduler::Default => place_default(s, a, &pod, &states, Eligible { pool, down: &down }),
                };
                match chosen {
                    Some(n) => {
                        targets.moved[i] = true;
                        let r = &mut runs[i].replicas[k];
                        r.node = Some(n);
                        bind(&mut states[n], a);
                        m.placements += 1;
                        if !agree.placements.is_empty()
                            && agree.placements.get(&(t, format!("{}-{}", a.name, r.seq))) == Some(&s.nodes[n].name)
                        {
                            agree.matched += 1;
                        }
                    }
                    None => m.pending_ticks += 1,
                }
            }
        }
        // The agent controller reacts to the bindings within seconds, before the descheduler's
        // plan of this tick.
        targets.recompute(s, &runs, t);
        if s.descheduler_every_ticks > 0 && t > 0 && t % s.descheduler_every_ticks == 0 {
            let index = (&agent_index, &node_index);
            step.evictions = deschedule(
                s,
                &mut runs,
                &mut states,
                &mut targets,
                index,
                t,
                startup_ticks,
                &mut kept,
                &down,
            )?;
            m.evictions += step.evictions;
        }
        // And to the descheduler's moves.
        targets.recompute(s, &runs, t);
        // Metrics of this tick.
        for (i, a) in s.agents.iter().enumerate() {
            let run = &runs[i];
            let serving = run
                .replicas
                .iter()
                .filter(|r| r.node.is_some_and(|n| !failed[n]) && r.serves_from <= t)
                .count();
            let bin = ((now / a.bin_seconds).floor() as usize).min(a.demand.len() - 1);
            if let (Some(br), Some(spec), Some(pricing)) = (batch_runs[i].as_mut(), &a.batch, &s.pricing) {
                // Work is what serving replicas do; cost runs from the bind.
                br.done += serving as f64 * hours;
                let slot = ((s.clock_start_seconds + now) / pricing.slot_seconds).floor() as u64;
                for n in run.replicas.iter().filter_map(|r| r.node) {
                    if let Some(f) = pricing.pools.get(node_pool(&s.nodes[n])) {
                        let (price, carbon) = f.at(slot);
                        br.cost += price * hours;
                        br.carbon += carbon * hours;
                        m.batch_cost += price * hours;
                    }
                }
                if br.finished_at.is_none() && br.done >= spec.replica_hours - 1e-9 {
                    br.finished_at = Some(now + tick);
                }
            } else if a.demand[bin] > serving as f64 * a.capacity_per_replica * (1.0 + 1e-12) {
                step.slo_violation_minutes += tick / 60.0;
            }
            step.replica_hours += run.replicas.len() as f64 * hours;
            step.replicas += run.replicas.len() as u64;
            for r in &run.replicas {
                if let Some(n) = r.node {
                    step.energy += hours * energy[n];
                }
            }
        }
        for (n, node) in s.nodes.iter().enumerate() {
            if states[n].pods > 0 {
                step.cost += node.hourly_cost.unwrap_or(0.0) * hours;
            }
        }
        step.latency_ms = traffic_latency(&runs, &peers, &latency, t, &failed);
        if let Some(l) = step.latency_ms {
            latency_sum += l;
            latency_ticks += 1;
        }
        m.slo_violation_minutes += step.slo_violation_minutes;
        m.replica_hours += step.replica_hours;
        m.energy += step.energy;
        m.cost += step.cost;
        if steps {
            report.steps.push(step);
        }
    }
    progress(ticks, ticks);
    m.latency_ms = if latency_ticks > 0 {
        latency_sum / latency_ticks as f64
    } else {
        0.0
    };
    report.agreement = (agree.total() > 0).then(|| agree.matched as f64 / agree.total() as f64);
    report.batch = s
        .agents
        .iter()
        .zip(&batch_runs)
        .filter_map(|(a, br)| {
            let (spec, br) = (a.batch.as_ref()?, br.as_ref()?);
            let (planned_cost, at_once_cost) = br.predicted.unwrap_or_default();
            Some(BatchOutcome {
                agent: a.name.clone(),
                timing: s.batch_timing,
                replica_hours: br.done,
                cost: br.cost,
                carbon: br.carbon,
                finished_at_seconds: br.finished_at,
                deadline_seconds: spec.deadline_seconds,
                deadline_met: br.finished_at.is_some_and(|f| f <= spec.deadline_seconds),
                within_budget: spec.budget.map(|b| br.cost <= b),
                planned_cost,
                at_once_cost,
            })
        })
        .collect();
    if steps {
        report.placements = s
            .agents
            .iter()
            .zip(&runs)
            .map(|(a, run)| {
                let mut nodes: Vec<String> = run
                    .replicas
                    .iter()
                    .filter_map(|r| r.node)
                    .map(|n| s.nodes[n].name.clone())
                    .collect();
                nodes.sort();
                (a.name.clone(), nodes)
            })
            .collect();
        report.targets = s.agents.iter().map(|a| a.name.clone()).zip(targets.current).collect();
    }
    Ok(report)
}

/// What the descheduler's plans keep between calls in a run: the last plan's input, updated in
/// place for the next (node and agent entries, and the pods of replicas still serving, are
/// taken again rather than built anew), and the distances from targets to nodes
/// ([`crate::descheduler::DistanceMemo`]).
#[derive(Default)]
struct Kept {
    snapshot: Option<crate::descheduler::Snapshot>,
    memo: crate::descheduler::DistanceMemo,
}

/// The descheduler's entry for node state `n` (names, labels and positions do not change
/// during a run; the rest is updated before each plan).
fn plan_node(n: &NodeState, unhealthy: bool) -> crate::descheduler::Node {
    crate::descheduler::Node {
        name: n.name.clone(),
        labels: (*n.labels).clone(),
        position: n.position.clone(),
        allocatable: n.allocatable,
        requested: n.requested,
        used: n.requested,
        max_pods: n.max_pods,
        pods: n.pods,
        unhealthy,
        anomalous: false,
    }
}

/// The descheduler's entry for agent `a`, without its targets (set before each plan).
fn plan_agent(a: &AgentSpec) -> crate::descheduler::Agent {
    crate::descheduler::Agent {
        name: a.name.clone(),
        target: None,
        previous_target: None,
        peers: a
            .peers
            .iter()
            .map(|(p, w)| crate::descheduler::Peer {
                agent: p.clone(),
                weight: *w,
            })
            .collect(),
        avoid_nodes: a.avoid_nodes.iter().cloned().collect(),
        max_distance: a.max_distance,
        label_rules: crate::descheduler::LabelRules {
            required_data_nodes: None,
            preferred_regions: a.preferred_regions.clone(),
            region_label: (!a.preferred_regions.is_empty()).then(|| crate::labels::REGION_LABEL.to_string()),
        },
    }
}

/// The descheduler's pod for replica `r` of `a`, serving on node `n` (named `AGENT-SEQ`).
fn plan_pod(s: &Snapshot, a: &AgentSpec, r: &Replica, n: usize) -> crate::descheduler::Pod {
    crate::descheduler::Pod {
        name: format!("{}-{}", a.name, r.seq),
        namespace: "twin".into(),
        node: s.nodes[n].name.clone(),
        agent: Some(a.name.clone()),
        tenant: a.tenant.clone(),
        strict_isolation: false,
        standby: false,
        requests: a.requests(),
        usage: a.requests(),
        node_selector: pool_selector(s, a, n),
        last_evicted_at: r.last_evicted_at,
        protected: false,
    }
}

/// A batch replica stays in its plan's pool: the pool label of node `n` as its node selector;
/// another agent's replicas carry its template's pool selector, if any.
fn pool_selector(s: &Snapshot, a: &AgentSpec, n: usize) -> BTreeMap<String, String> {
    let pool = match &a.batch {
        Some(_) => s.nodes[n].labels.get(crate::labels::POOL_LABEL),
        None => a.pool.as_ref(),
    };
    match pool {
        Some(pool) => BTreeMap::from([(crate::labels::POOL_LABEL.to_string(), pool.clone())]),
        None => BTreeMap::new(),
    }
}

/// The descheduler's input built from nothing, as [`deschedule`] keeps it up to date (tests
/// compare the two at every plan).
#[cfg(test)]
fn built_anew(
    s: &Snapshot,
    runs: &[AgentRun],
    states: &[NodeState],
    targets: &Targets,
    t: u64,
    down: &[bool],
) -> crate::descheduler::Snapshot {
    use crate::descheduler as d;
    let nodes = states.iter().zip(down).map(|(n, &d)| plan_node(n, d)).collect();
    let mut pods = Vec::new();
    let mut agents = Vec::with_capacity(s.agents.len());
    for (i, a) in s.agents.iter().enumerate() {
        for r in &runs[i].replicas {
            let Some(n) = r.node.filter(|_| r.serves_from <= t) else {
                continue;
            };
            pods.push(plan_pod(s, a, r, n));
        }
        let mut agent = plan_agent(a);
        agent.target = (!targets.current[i].is_empty()).then(|| targets.current[i].clone());
        agent.previous_target = targets.steered[i].clone();
        agents.push(agent);
    }
    d::Snapshot {
        kappa: s.kappa,
        now: (t as f64 * s.tick_seconds) as u64,
        nodes,
        pods,
        agents,
    }
}

/// Sets `point` to a copy of `to`, reusing its allocation.
fn set_point(point: &mut Option<Vec<f64>>, to: Option<&Vec<f64>>) {
    match (point.as_mut(), to) {
        (Some(p), Some(t)) => p.clone_from(t),
        (_, t) => *point = t.cloned(),
    }
}

/// One descheduler plan over the twin's serving replicas, applied; returns the evictions.
#[allow(clippy::too_many_arguments)]
fn deschedule(
    s: &Snapshot,
    runs: &mut [AgentRun],
    states: &mut [NodeState],
    targets: &mut Targets,
    (agent_index, node_index): (&BTreeMap<&str, usize>, &BTreeMap<&str, usize>),
    t: u64,
    startup_ticks: u64,
    kept: &mut Kept,
    down: &[bool],
) -> Result<u64, TwinError> {
    use crate::descheduler as d;
    let now = (t as f64 * s.tick_seconds) as u64;
    let Kept { snapshot: kept, memo } = kept;
    let kept = kept.get_or_insert_with(|| d::Snapshot {
        kappa: s.kappa,
        now,
        nodes: Vec::new(),
        pods: Vec::new(),
        agents: Vec::new(),
    });
    if kept.nodes.len() != states.len() {
        kept.nodes = states.iter().zip(down).map(|(n, &d)| plan_node(n, d)).collect();
    }
    for ((node, n), &d) in kept.nodes.iter_mut().zip(states.iter()).zip(down) {
        // Names, labels and positions do not change during a run; health does in an outage.
        node.requested = n.requested;
        node.used = n.requested;
        node.pods = n.pods;
        node.unhealthy = d;
    }
    if kept.agents.len() != s.agents.len() {
        kept.agents = s.agents.iter().map(plan_agent).collect();
    }
    // The last plan's pods by agent, in its order, to be taken again (no new strings) by the
    // replicas still serving.
    let mut last: Vec<std::collections::VecDeque<d::Pod>> = (0..s.agents.len()).map(|_| Default::default()).collect();
    for pod in kept.pods.drain(..) {
        if let Some(&i) = pod.agent.as_deref().and_then(|a| agent_index.get(a)) {
            last[i].push_back(pod);
        }
    }
    for (i, a) in s.agents.iter().enumerate() {
        let agent = &mut kept.agents[i];
        set_point(
            &mut agent.target,
            (!targets.current[i].is_empty()).then_some(&targets.current[i]),
        );
        set_point(&mut agent.previous_target, targets.steered[i].as_ref());
        for r in &runs[i].replicas {
            let Some(n) = r.node.filter(|_| r.serves_from <= t) else {
                continue;
            };
            let name_matches = |p: &d::Pod| {
                p.name
                    .strip_prefix(a.name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .and_then(|seq| seq.parse::<u64>().ok())
                    == Some(r.seq)
            };
            // Replicas keep their order, so a kept pod is found at the front (after the pods
            // of replicas gone since).
            while last[i].front().is_some_and(|p| !name_matches(p)) {
                last[i].pop_front();
            }
            let pod = match last[i].pop_front() {
                Some(mut pod) => {
                    if pod.node != s.nodes[n].name {
                        pod.node.clone_from(&s.nodes[n].name);
                        pod.node_selector = pool_selector(s, a, n);
                    }
                    pod.last_evicted_at = r.last_evicted_at;
                    pod
                }
                None => plan_pod(s, a, r, n),
            };
            kept.pods.push(pod);
        }
    }
    kept.kappa = s.kappa;
    kept.now = now;
    let snapshot = &*kept;
    #[cfg(test)]
    assert_eq!(
        snapshot,
        &built_anew(s, runs, states, targets, t, down),
        "the kept plan input differs from one built anew"
    );
    let plan = d::plan_with_memo(snapshot, &d::Settings::default(), memo);
    let plan = plan.map_err(|e| TwinError::BadField {
        field: "descheduler".into(),
        reason: e.to_string(),
    })?;
    // What the operator keeps for the next plan (`View::set_steered_target`).
    for step in &plan.targets {
        if let Some(&i) = agent_index.get(step.agent.as_str()) {
            targets.steered[i] = Some(step.target.clone());
        }
    }
    let mut evictions = 0;
    for mv in &plan.moves {
        let (Some(&i), Some(&to)) = (
            mv.agent.as_deref().and_then(|a| agent_index.get(a)),
            node_index.get(mv.to.as_str()),
        ) else {
            continue;
        };
        let a = &s.agents[i];
        // The pod is named `AGENT-SEQ` (see the plan's input above).
        let seq = mv
            .pod
            .strip_prefix(a.name.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok());
        let Some(r) = runs[i].replicas.iter_mut().find(|r| Some(r.seq) == seq) else {
            continue;
        };
        if let Some(from) = r.node {
            unbind(&mut states[from], a);
        }
        bind(&mut states[to], a);
        r.node = Some(to);
        r.serves_from = t + startup_ticks;
        r.last_evicted_at = Some(now);
        targets.moved[i] = true;
        evictions += 1;
    }
    Ok(evictions)
}

/// Removes `count` replicas of agent `a`: Pending and starting ones first (newest first), then
/// the serving ones in [`placement::scale_down_order`] from `target`. True when a bound one went.
fn remove_replicas(
    s: &Snapshot,
    a: &AgentSpec,
    target: &[f64],
    run: &mut AgentRun,
    count: u32,
    t: u64,
    states: &mut [NodeState],
) -> bool {
    let mut order: Vec<u64> = run
        .replicas
        .iter()
        .rev()
        .filter(|r| r.node.is_none() || r.serves_from > t)
        .map(|r| r.id)
        .collect();
    let serving: Vec<(String, Option<Vec<f64>>)> = run
        .replicas
        .iter()
        .filter(|r| r.node.is_some() && r.serves_from <= t)
        .map(|r| (format!("{:020}", r.id), r.node.map(|n| s.nodes[n].position.clone())))
        .collect();
    order.extend(
        placement::scale_down_order(&serving, target, s.kappa)
            .iter()
            .filter_map(|name| name.parse::<u64>().ok()),
    );
    let mut unbound = false;
    for id in order.into_iter().take(count as usize) {
        if let Some(k) = run.replicas.iter().position(|r| r.id == id) {
            let r = run.replicas.remove(k);
            if let Some(n) = r.node {
                unbind(&mut states[n], a);
                unbound = true;
            }
        }
    }
    unbound
}

/// The nodes a replica may go to: those of its pool (when it has one) that are not judged
/// silent (the extender refuses silent nodes, and kube-scheduler a NotReady one).
#[derive(Clone, Copy)]
struct Eligible<'a> {
    pool: Option<&'a str>,
    down: &'a [bool],
}

impl Eligible<'_> {
    /// Any node (no pool, none silent).
    #[cfg(test)]
    const ANYWHERE: Eligible<'static> = Eligible { pool: None, down: &[] };

    /// Node `n` is eligible (a node past the end of `down` counts as heard from).
    fn admits(&self, s: &Snapshot, n: usize) -> bool {
        !self.down.get(n).copied().unwrap_or(false) && self.pool.is_none_or(|p| node_pool(&s.nodes[n]) == p)
    }
}

/// The node `mom-scheduler` (kube-scheduler with MOM's extender,
/// `manifests/scheduler/mom-scheduler-config.yaml`) binds pod `pod`, one more replica of `a`,
/// to: the extender's filter over every node, then the best total score among those that pass,
/// as kube-scheduler adds it up:
///
/// `total(n) = extender(n) · 10 · 10 + least(n)`
///
/// the extender's 0…10 score times its weight (10) times kube-scheduler's scale from extender
/// to plugin scores (`MaxNodeScore / MaxExtenderPriority` = 10), plus NodeResourcesFit's
/// `LeastAllocated` score `least(n)` (0…100, [`least_allocated`]), the one in-tree score of
/// that profile that tells the twin's nodes apart (it disables BalancedAllocation, topology
/// spreading and image locality; the rest score every node alike here). A point of the
/// extender's at least matches any `least` difference (100 only for a pod requesting nothing),
/// so `least` chooses among the nodes the extender ties, the emptier first — with coarse 0…10
/// scores, that often sends a replica off a filling home to an equally scored empty node.
/// Remaining ties are drawn at random by kube-scheduler; the twin takes the largest
/// [`tie_draw`]. Simplified: kube-scheduler counts a pod that requests nothing as 100m CPU and
/// 200 MiB, the twin as requested; `percentageOfNodesToScore` is not modelled (above 100 nodes
/// kube-scheduler filters, and so sends the extender, only part of them, from a rotating
/// start).
#[allow(clippy::too_many_arguments)]
fn place(
    s: &Snapshot,
    a: &AgentSpec,
    pod: &str,
    target: &[f64],
    replicas: &[Replica],
    states: &[NodeState],
    zone_of: &[String],
    eligible: Eligible<'_>,
) -> Option<usize> {
    let (demand, policy) = extender_inputs_for(s, a, target, replicas, zone_of);
    // The filter's verdict node by node ([`placement::passes`], no rejection texts built), then
    // its preferred-regions tier: only the first listed region with a passing node, as
    // `placement::filter` narrows it.
    let (mut index, mut passing): (Vec<usize>, Vec<&NodeState>) = states
        .iter()
        .enumerate()
        .filter(|(i, _)| eligible.admits(s, *i))
        .filter(|(_, n)| placement::passes(&demand, Some(&policy), n, s.kappa))
        .unzip();
    if let Some(label) = &policy.region_label {
        let regions: Vec<Option<&str>> = passing
            .iter()
            .map(|n| n.labels.get(label).map(String::as_str))
            .collect();
        if let Some(region) = placement::locality::preferred_region(&policy.preferred_regions, &regions) {
            let keep: Vec<bool> = regions.iter().map(|r| *r == Some(region)).collect();
            let mut k = keep.iter();
            index.retain(|_| *k.next().unwrap_or(&false));
            let mut k = keep.iter();
            passing.retain(|_| *k.next().unwrap_or(&false));
        }
    }
    // The extender's scores ([`placement::node_scores`] is what `score_breakdown` answers,
    // without building the explanation), in `passing` order.
    let scores = placement::node_scores(&demand, Some(&policy), &passing, &s.objectives, s.routing, s.kappa);
    let best = best_with_tie_draw(
        s,
        pod,
        (0..passing.len()).map(|x| {
            let extender = u64::try_from(scores[x].0).unwrap_or(0) * 100;
            (x, passing[x], extender + least_allocated(passing[x], a))
        }),
    )?;
    // `states` is in snapshot node order.
    Some(index[best])
}

/// NodeResourcesFit's `LeastAllocated` score of node `n` for one more pod of `a`:
/// `⌊Σ_r ⌊(alloc_r − req_r)·100 / alloc_r⌋ / 2⌋` over CPU and memory, `req_r` the node's
/// requests with the pod's (a resource over its allocatable, or of none, scores 0).
fn least_allocated(n: &NodeState, a: &AgentSpec) -> u64 {
    allocation(n, a)
        .iter()
        .map(|&(alloc, req)| {
            if alloc == 0 || req > alloc {
                0
            } else {
                (u128::from(alloc - req) * 100 / u128::from(alloc)) as u64
            }
        })
        .sum::<u64>()
        / 2
}

/// `(allocatable, requested with one more pod of a)` of node `n`, for CPU and memory.
fn allocation(n: &NodeState, a: &AgentSpec) -> [(u64, u64); 2] {
    [
        (
            n.allocatable.cpu_millis,
            n.requested.cpu_millis.saturating_add(a.cpu_millis),
        ),
        (
            n.allocatable.memory_bytes,
            n.requested.memory_bytes.saturating_add(a.memory_bytes),
        ),
    ]
}

/// The twin's stand-in for kube-scheduler's random pick among nodes of equal total score: a
/// hash ([`crate::stable_hash::mixed`]) of `schedulerSeed ‖ pod ‖ 0 ‖ node`, so a run replays;
/// `prefix` is [`tie_prefix`]'s hash state of `schedulerSeed ‖ pod ‖ 0`, computed once per pod.
fn tie_draw(prefix: u64, n: &NodeState) -> u64 {
    crate::stable_hash::fmix64(crate::stable_hash::fnv1a_from(prefix, n.name.bytes()))
}

/// The FNV-1a state of `schedulerSeed ‖ pod ‖ 0` that [`tie_draw`] continues.
fn tie_prefix(s: &Snapshot, pod: &str) -> u64 {
    crate::stable_hash::fnv1a(
        s.scheduler_seed
            .to_le_bytes()
            .into_iter()
            .chain(pod.bytes())
            .chain(std::iter::once(0)),
    )
}

/// Of `candidates` (index, node, score), the one with the best score, ties going to the
/// largest [`tie_draw`] (and then to the last, as `max_by_key`). The draw is computed only for
/// the nodes that tie on the best score: the same choice as `max_by_key(|c| (score,
/// tie_draw(..)))`, which hashed every node of every placement.
fn best_with_tie_draw<'a>(
    s: &Snapshot,
    pod: &str,
    candidates: impl Iterator<Item = (usize, &'a NodeState, u64)>,
) -> Option<usize> {
    let mut top: Vec<(usize, &NodeState)> = Vec::new();
    let mut best = 0;
    for (i, n, score) in candidates {
        if top.is_empty() || score > best {
            top.clear();
            best = score;
        }
        if score == best {
            top.push((i, n));
        }
    }
    if top.len() <= 1 {
        return top.first().map(|(i, _)| *i);
    }
    let prefix = tie_prefix(s, pod);
    top.into_iter().max_by_key(|(_, n)| tie_draw(prefix, n)).map(|(i, _)| i)
}

/// The node the stock kube-scheduler binds plain pod `pod` of `a` to (`scheduler: default`):
/// among the nodes it fits (CPU, memory, pod count), the best total of the default plugins that
/// tell such nodes apart, weight 1 each:
///
/// - NodeResourcesFit, `LeastAllocated` ([`least_allocated`]);
/// - NodeResourcesBalancedAllocation: `⌊(1 − |f_cpu − f_mem| / 2)·100⌋`, `f_r = min(1,
///   req_r / alloc_r)` (the standard deviation of the two fractions);
///
/// the other default plugins score every node alike for a pod with no affinity, spread
/// constraints, tolerations or images on the nodes, and no Service selecting it. Ties: the
/// largest [`tie_draw`], where kube-scheduler draws at random. Simplified as in [`place`], and
/// a node without allocatable memory or CPU counts as full here (kube-scheduler's balance
/// skips that resource). Not modelled:
/// `percentageOfNodesToScore` (kube-scheduler scores 100 of 148 nodes, all of fewer than 100,
/// starting where its last search stopped).
fn place_default(
    s: &Snapshot,
    a: &AgentSpec,
    pod: &str,
    states: &[NodeState],
    eligible: Eligible<'_>,
) -> Option<usize> {
    let demand = demand_of(a);
    let score = |n: &NodeState| -> u64 {
        let [cpu, memory] = allocation(n, a);
        let fraction = |(alloc, req): (u64, u64)| {
            if alloc == 0 {
                1.0
            } else {
                (req as f64 / alloc as f64).min(1.0)
            }
        };
        let spread = (fraction(cpu) - fraction(memory)).abs() / 2.0;
        least_allocated(n, a) + ((1.0 - spread) * 100.0) as u64
    };
    best_with_tie_draw(
        s,
        pod,
        states
            .iter()
            .enumerate()
            .filter(|(i, _)| eligible.admits(s, *i))
            .filter(|(_, n)| placement::passes(&demand, None, n, s.kappa))
            .map(|(i, n)| (i, n, score(n))),
    )
}

/// What one replica of `a` asks of a node: its requests and tenant (the twin has no isolated
/// tenants or standbys).
fn demand_of(a: &AgentSpec) -> PodDemand {
    PodDemand {
        requests: a.requests(),
        tenant: a.tenant.clone(),
        strict_isolation: false,
        standby: false,
    }
}

/// The inputs the extender builds for one more replica of `a`: its demand and its agent's
/// policy (target, zone spread, where its replicas run).
fn extender_inputs_for(
    s: &Snapshot,
    a: &AgentSpec,
    target: &[f64],
    replicas: &[Replica],
    zone_of: &[String],
) -> (PodDemand, AgentPolicy) {
    let mut counted: BTreeMap<&str, u32> = BTreeMap::new();
    for n in replicas.iter().filter_map(|r| r.node) {
        *counted.entry(zone_of[n].as_str()).or_default() += 1;
    }
    let by_domain = counted.into_iter().map(|(zone, c)| (zone.to_string(), c)).collect();
    // Only gradient_flow scores read where the replicas run (`placement::score`); the
    // operator's view always fills them, the twin only when they change a score.
    let replica_positions = if s.routing == Routing::GradientFlow {
        replicas
            .iter()
            .filter_map(|r| r.node)
            .map(|n| s.nodes[n].position.clone())
            .collect()
    } else {
        Vec::new()
    };
    let policy = AgentPolicy {
        target: target.to_vec(),
        spread_label: Some(crate::labels::ZONE_LABEL.to_string()),
        replicas_by_domain: by_domain,
        replica_positions,
        replicas: replicas.len() as u32,
        avoid_nodes: a.avoid_nodes.iter().cloned().collect(),
        max_distance: a.max_distance,
        preferred_regions: a.preferred_regions.clone(),
        region_label: (!a.preferred_regions.is_empty()).then(|| crate::labels::REGION_LABEL.to_string()),
        ..AgentPolicy::default()
    };
    let demand = demand_of(a);
    (demand, policy)
}

/// Traffic-weighted mean replica-to-replica latency between agents and their peers at tick `t`
/// (module doc); `None` when no agent–peer pair has serving replicas on both sides.
fn traffic_latency(
    runs: &[AgentRun],
    peers: &[Vec<(usize, f64)>],
    latency: &LatencyTable,
    t: u64,
    failed: &[bool],
) -> Option<f64> {
    // Serving replicas per latency group, per agent (sorted by group).
    let groups: Vec<Vec<(usize, u32)>> = runs
        .iter()
        .map(|run| {
            let mut g: Vec<(usize, u32)> = Vec::new();
            for r in run.replicas.iter().filter(|r| r.serves_from <= t) {
                if let Some(n) = r.node.filter(|&n| !failed[n]) {
                    let k = latency.group[n];
                    match g.iter_mut().find(|(x, _)| *x == k) {
                        Some((_, c)) => *c += 1,
                        None => g.push((k, 1)),
                    }
                }
            }
            g.sort_unstable();
            g
        })
        .collect();
    let mut weighted = 0.0;
    let mut weights = 0.0;
    for (i, mine) in groups.iter().enumerate() {
        if mine.is_empty() {
            continue;
        }
        let count_a: u32 = mine.iter().map(|(_, c)| c).sum();
        for &(j, w) in &peers[i] {
            let theirs = &groups[j];
            let pairs = count_a * theirs.iter().map(|(_, c)| c).sum::<u32>();
            if pairs == 0 {
                continue;
            }
            let mut total = 0.0;
            for &(za, ca) in mine {
                for &(zb, cb) in theirs {
                    total += f64::from(ca * cb) * latency.ms[za][zb];
                }
            }
            weighted += w * total / f64::from(pairs);
            weights += w;
        }
    }
    (weights > 0.0).then(|| weighted / weights)
}

/// A copy of `objectives` with `name` set to `value` and the other three scaled so that the four
/// still sum to 1 (they keep their proportions; all equal when they were all 0).
pub fn with_objective(objectives: &Objectives, name: &str, value: f64) -> Result<Objectives, TwinError> {
    if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
        return Err(TwinError::BadField {
            field: format!("objectives.{name}"),
            reason: format!("must be in [0, 1], got {value}"),
        });
    }
    let mut w = [
        ("performance", objectives.performance),
        ("cost", objectives.cost),
        ("reliability", objectives.reliability),
        ("sustainability", objectives.sustainability),
    ];
    let Some(k) = w.iter().position(|(n, _)| *n == name) else {
        return Err(TwinError::BadField {
            field: format!("objectives.{name}"),
            reason: "unknown objective (performance, cost, reliability, sustainability)".into(),
        });
    };
    let rest: f64 = w.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, (_, v))| v).sum();
    for (i, (_, v)) in w.iter_mut().enumerate() {
        *v = if i == k {
            value
        } else if rest > 0.0 {
            *v / rest * (1.0 - value)
        } else {
            (1.0 - value) / 3.0
        };
    }
    Ok(Objectives {
        performance: w[0].1,
        cost: w[1].1,
        reliability: w[2].1,
        sustainability: w[3].1,
    })
}

/// Applies one `--set KEY=VALUE` to a snapshot: `objectives.NAME=W` (the others rescaled, see
/// [`with_objective`]), `agent/NAME.scaling.method=predictive|reactive|manual` (`agent/*` for
/// every agent), `descheduler.everyTicks=N` (0: no descheduler), `targets.fixed=true|false`
/// (`fixedTargets`), `kappa=K`,
/// `routing=greedy_forwarding|multipath_hyperbolic|gradient_flow`, `scheduler=mom|default`,
/// `scheduler.seed=N`, `batch.timing=planned|atOnce`, `outage=SELECTOR@FROM-UNTIL` (one more
/// [`snapshot::Outage`]: `SELECTOR` is `node/NAME` or `LABEL=VALUE`, e.g.
/// `outage=topology.kubernetes.io/zone=z1@3600-7200`, times in run seconds; repeatable),
/// `failure.detectionSeconds=S`.
pub fn apply_set(s: &mut Snapshot, set: &str) -> Result<(), TwinError> {
    let bad = |field: &str, reason: String| TwinError::BadField {
        field: field.to_string(),
        reason,
    };
    let Some((key, value)) = set.split_once('=') else {
        return Err(bad(set, "expected KEY=VALUE".into()));
    };
    let (key, value) = (key.trim(), value.trim());
    if let Some(name) = key.strip_prefix("objectives.") {
        let v: f64 = value
            .parse()
            .map_err(|_| bad(key, format!("{value:?} is not a number")))?;
        s.objectives = with_objective(&s.objectives, name, v)?;
        return Ok(());
    }
    if let Some(rest) = key.strip_prefix("agent/") {
        let Some((agent, "scaling.method")) = rest.split_once('.') else {
            return Err(bad(key, "known agent fields: agent/NAME.scaling.method".into()));
        };
        let method: Method = serde_json::from_value(serde_json::Value::String(value.into()))
            .map_err(|_| bad(key, format!("{value:?} is not predictive, reactive or manual")))?;
        let mut found = false;
        for a in s.agents.iter_mut().filter(|a| agent == "*" || a.name == agent) {
            if a.method != method {
                // Recorded settings belong to the recorded method; the new one runs with its
                // strategy defaults (bounds and target stay the agent's).
                a.scaling = None;
            }
            a.method = method;
            found = true;
        }
        return if found {
            Ok(())
        } else {
            Err(bad(key, format!("no agent named {agent:?} in the snapshot")))
        };
    }
    match key {
        "descheduler.everyTicks" => {
            s.descheduler_every_ticks = value
                .parse()
                .map_err(|_| bad(key, format!("{value:?} is not a whole number of ticks")))?;
        }
        "targets.fixed" => {
            s.fixed_targets = value
                .parse()
                .map_err(|_| bad(key, format!("{value:?} is not true or false")))?;
        }
        "kappa" => {
            s.kappa = value
                .parse()
                .map_err(|_| bad(key, format!("{value:?} is not a number")))?;
        }
        "scheduler" => {
            s.scheduler = serde_json::from_value::<Scheduler>(serde_json::Value::String(value.into()))
                .map_err(|_| bad(key, format!("{value:?} is not mom or default")))?;
        }
        "scheduler.seed" => {
            s.scheduler_seed = value
                .parse()
                .map_err(|_| bad(key, format!("{value:?} is not a whole number")))?;
        }
        "batch.timing" => {
            s.batch_timing = serde_json::from_value::<BatchTiming>(serde_json::Value::String(value.into()))
                .map_err(|_| bad(key, format!("{value:?} is not planned or atOnce")))?;
        }
        "routing" => {
            s.routing = serde_json::from_value::<Routing>(serde_json::Value::String(value.into()))
                .map_err(|_| bad(key, format!("{value:?} is not a routing algorithm")))?;
        }
        "outage" => {
            let form = "expected node/NAME@FROM-UNTIL or LABEL=VALUE@FROM-UNTIL (run seconds)";
            let (selector, window) = value
                .rsplit_once('@')
                .ok_or_else(|| bad(key, format!("{value:?}: {form}")))?;
            let (from, until) = window
                .split_once('-')
                .and_then(|(f, u)| Some((f.trim().parse::<f64>().ok()?, u.trim().parse::<f64>().ok()?)))
                .ok_or_else(|| bad(key, format!("{window:?} is not FROM-UNTIL in seconds: {form}")))?;
            let mut outage = snapshot::Outage {
                from_seconds: from,
                until_seconds: until,
                ..Default::default()
            };
            match (selector.strip_prefix("node/"), selector.split_once('=')) {
                (Some(node), _) => outage.nodes.push(node.to_string()),
                (None, Some((label, v))) => {
                    outage.selector.insert(label.to_string(), v.to_string());
                }
                (None, None) => return Err(bad(key, format!("{selector:?}: {form}"))),
            }
            s.outages.push(outage);
        }
        "budget.maxHourlyCost" => {
            s.max_hourly_cost = match value {
                "none" => None,
                _ => Some(
                    value
                        .parse()
                        .map_err(|_| bad(key, format!("{value:?} is not a number or none")))?,
                ),
            };
        }
        "failure.detectionSeconds" => {
            s.failure_detection_seconds = value
                .parse()
                .map_err(|_| bad(key, format!("{value:?} is not a number of seconds")))?;
        }
        _ => {
            return Err(bad(
                key,
                "unknown key (known: objectives.NAME, agent/NAME.scaling.method, descheduler.everyTicks, targets.fixed, kappa, routing, scheduler, scheduler.seed, batch.timing, outage, failure.detectionSeconds, budget.maxHourlyCost)"
                    .into(),
            ));
        }
    }
    s.validate()
}

#[cfg(test)]
mod tests;
