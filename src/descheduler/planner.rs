//! The descheduling planner: from a snapshot and settings, the set of moves that maximises
//! objective gain minus migration cost over a horizon, within limits, plus every agent's target
//! stepped along the geodesic toward its new optimum.
//!
//! Input: [`Snapshot`], [`Settings`]. Output: [`Plan`]. Deterministic (sorted iteration, ties by
//! index/name, no clock), so a plan is replayed byte for byte from its recorded inputs.
//!
//! **Targets.** Agent a's optimum `O_a` is `Agent::target`, the agent controller's target; the
//! target this tick steps toward it along the geodesic (see [`super::context`], which computes
//! the targets T₀…T_{H−1} every strategy reads).
//!
//! **Objective.** For a move of pod p from s to t, the gain summed over the horizon is
//! `G = drift + H·(imbalance + violations + evacuation)` with each enabled strategy's term
//! (see their modules); the cost is `C = migrationCost + costPerGib·memory request (GiB)`. A
//! move is taken only when `G − C ≥ minGain` (hysteresis: small improvements never trigger a
//! move, so a replica does not oscillate between near-equal nodes).
//!
//! **Candidates and destinations.** Strategies nominate pods; protected pods and pods evicted
//! less than `coolOffSeconds` ago are skipped (reported). For a candidate the destinations are
//! scanned nearest-to-T₀ first (pods without a target: least utilised first) and the best of
//! the first `destinationsConsidered` feasible nodes is chosen. Feasible = passes
//! `placement::filter` (avoid-list, required data locality, isolation, max distance, requested
//! capacity, pod count), is not in a region ranked below the source's in the agent's
//! `preferredRegions` ([`super::LabelRules`]), matches the pod's node selector, is not flagged
//! unhealthy/anomalous and is not the source.
//!
//! **Selection.** Lazy greedy on net gain `G − C`: take the best candidate, re-evaluate it
//! against the state after the moves already chosen (capacity, usage and tenants move with
//! each pod); if it is still at least as good as the next one, take it, subject to the limits
//! (total, per source node, per namespace, per agent), and update the state. This is the
//! standard greedy for a submodular-like objective under cardinality limits; exact for the
//! separable terms (drift, violations, evacuation) and an approximation for the coupled
//! imbalance term.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use super::context::{ClusterState, DistanceMemo, PlanContext};
use super::{
    Candidate, DeschedulerError, Move, Plan, Settings, Skip, SkipKind, Snapshot, TargetStep, drift, evacuation,
    imbalance, violations,
};
use crate::placement::{self, PodDemand};

/// Arguments of the planner itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PlannerArgs {
    /// Ticks over which gains are summed (the migration cost is paid once).
    pub horizon: u32,
    /// Largest hyperbolic distance an agent's target moves per tick.
    pub target_step: f64,
    /// Smallest net gain `G − C` for which a move is taken (hysteresis).
    pub min_gain: f64,
    /// Cost of one eviction.
    pub migration_cost: f64,
    /// Extra cost per GiB of memory request (state to rebuild, caches to warm).
    pub cost_per_gib: f64,
    /// A replica moved less than this many seconds ago is not moved again.
    pub cool_off_seconds: u64,
    pub max_evictions_total: u32,
    pub max_evictions_per_node: u32,
    pub max_evictions_per_namespace: u32,
    pub max_evictions_per_agent: u32,
    /// Feasible destinations evaluated per candidate (nearest to the target first).
    pub destinations_considered: u32,
}

impl Default for PlannerArgs {
    fn default() -> Self {
        Self {
            horizon: 4,
            target_step: 8.0,
            min_gain: 10.0,
            migration_cost: 10.0,
            cost_per_gib: 1.0,
            cool_off_seconds: 600,
            max_evictions_total: 50,
            max_evictions_per_node: 3,
            max_evictions_per_namespace: 20,
            max_evictions_per_agent: 2,
            destinations_considered: 16,
        }
    }
}

impl PlannerArgs {
    /// Every problem, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.horizon == 0 || self.horizon > 1000 {
            problems.push(format!("planner.horizon must be in 1…1000 ticks, got {}", self.horizon));
        }
        for (name, v) in [
            ("targetStep", self.target_step),
            ("minGain", self.min_gain),
            ("migrationCost", self.migration_cost),
            ("costPerGib", self.cost_per_gib),
        ] {
            if !v.is_finite() || v < 0.0 {
                problems.push(format!("planner.{name} must be finite and ≥ 0, got {v}"));
            }
        }
        if self.destinations_considered == 0 {
            problems.push("planner.destinationsConsidered must be ≥ 1, got 0".into());
        }
        problems
    }
}

/// The best destination of a candidate under the current state: (node, gain, cost).
#[derive(Debug, Clone, Copy)]
struct Choice {
    to: usize,
    gain: f64,
    cost: f64,
}

/// Total ordering of f64 keys for the heap (values are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

struct Planner<'c, 'a> {
    ctx: &'c PlanContext<'a>,
    state: ClusterState,
    /// Destination scan order per agent (nearest to T₀ first), computed on demand.
    order_by_agent: Vec<Option<ScanOrder>>,
    /// Scan order for pods without a target: least utilised first.
    order_by_load: Vec<usize>,
    flagged: Vec<bool>,
}

/// An agent's destinations nearest to its target first (distance, then node index: a total
/// order), sorted only as far as a scan has read. Most scans stop after
/// `destinationsConsidered` feasible nodes, so the nearest [`SCAN_PREFIX`] are selected and
/// sorted first and the rest only when a scan reads past them: the same sequence as a full
/// sort, since every node after the prefix is farther than every node in it.
struct ScanOrder {
    nodes: Vec<usize>,
    sorted: usize,
}

/// Nodes of a [`ScanOrder`] sorted up front.
const SCAN_PREFIX: usize = 32;

impl ScanOrder {
    fn new(distance: &[f64]) -> Self {
        let mut nodes: Vec<usize> = (0..distance.len()).collect();
        let k = SCAN_PREFIX.min(nodes.len());
        let nearer = |x: &usize, y: &usize| distance[*x].total_cmp(&distance[*y]).then(x.cmp(y));
        if k < nodes.len() {
            nodes.select_nth_unstable_by(k, nearer);
        }
        nodes[..k].sort_by(nearer);
        Self { nodes, sorted: k }
    }

    /// The `i`-th nearest node, sorting the rest first when `i` is past the sorted prefix.
    fn get(&mut self, i: usize, distance: &[f64]) -> Option<usize> {
        if i >= self.sorted && self.sorted < self.nodes.len() {
            self.nodes[self.sorted..].sort_by(|x, y| distance[*x].total_cmp(&distance[*y]).then(x.cmp(y)));
            self.sorted = self.nodes.len();
        }
        self.nodes.get(i).copied()
    }
}

impl Planner<'_, '_> {
    /// Makes sure the destination order of `pod`'s agent is computed.
    fn prepare_order(&mut self, pod: usize) {
        let ctx = self.ctx;
        if let Some(a) = ctx.pod_agent[pod].filter(|&a| !ctx.node_distance[a].is_empty()) {
            self.order_by_agent[a].get_or_insert_with(|| ScanOrder::new(&ctx.node_distance[a]));
        }
    }

    /// The `i`-th destination in `pod`'s scan order (after [`Self::prepare_order`]).
    fn destination(&mut self, pod: usize, i: usize) -> Option<usize> {
        let ctx = self.ctx;
        match ctx.pod_agent[pod].and_then(|a| Some((a, self.order_by_agent[a].as_mut()?))) {
            Some((a, order)) => order.get(i, &ctx.node_distance[a]),
            None => self.order_by_load.get(i).copied(),
        }
    }

    /// The part of the gain over the horizon that does not depend on the destination:
    /// `H·(violations + evacuation)`.
    fn fixed_gain(&self, pod: usize, from: usize) -> f64 {
        let ctx = self.ctx;
        let s = ctx.settings;
        let mut per_tick = 0.0;
        if s.violations.enabled {
            per_tick += violations::gain(ctx, &self.state, &s.violations, pod);
        }
        if s.evacuation.enabled {
            per_tick += evacuation::gain(ctx, &s.evacuation, from);
        }
        f64::from(s.planner.horizon) * per_tick
    }

    /// The destination-dependent part: `drift + H·imbalance`; `source` is
    /// [`drift::source_distances`]`(pod, from)` when drift is enabled.
    fn destination_gain(&self, pod: usize, from: usize, to: usize, source: &[f64]) -> f64 {
        let ctx = self.ctx;
        let s = ctx.settings;
        let mut g = 0.0;
        if s.imbalance.enabled {
            g += f64::from(s.planner.horizon) * imbalance::gain(ctx, &self.state, &s.imbalance, pod, from, to);
        }
        if s.drift.enabled {
            g += drift::gain_from(ctx, &s.drift, pod, from, to, source);
        }
        g
    }

    fn feasible(&self, pod: usize, demand: &PodDemand, to: usize) -> bool {
        let ctx = self.ctx;
        let p = &ctx.snapshot.pods[pod];
        if self.flagged[to] || !violations::selector_matches(p, &ctx.snapshot.nodes[to].labels) {
            return false;
        }
        if let Some(a) = ctx.pod_agent[pod] {
            let rules = &ctx.snapshot.agents[a].label_rules;
            let nodes = &ctx.snapshot.nodes;
            if rules.region_rank(&nodes[to].labels) > rules.region_rank(&nodes[ctx.pod_node[pod]].labels) {
                return false;
            }
        }
        let policy = ctx.pod_agent[pod].map(|a| &ctx.policies[a]);
        placement::passes(demand, policy, &self.state.nodes[to], ctx.kappa)
    }

    fn best(&mut self, pod: usize, from: usize) -> Option<Choice> {
        self.prepare_order(pod);
        let ctx = self.ctx;
        let p = &ctx.snapshot.pods[pod];
        let args = &ctx.settings.planner;
        let cost = args.migration_cost + args.cost_per_gib * p.requests.memory_bytes as f64 / f64::from(1u32 << 30);
        let fixed = self.fixed_gain(pod, from);
        let demand = PodDemand {
            requests: p.requests,
            tenant: p.tenant.clone(),
            strict_isolation: p.strict_isolation,
            standby: p.standby,
        };
        let source = if ctx.settings.drift.enabled {
            drift::source_distances(ctx, pod, from)
        } else {
            Vec::new()
        };
        let mut best: Option<Choice> = None;
        let mut seen = 0;
        let mut i = 0;
        while let Some(to) = self.destination(pod, i) {
            i += 1;
            if to == from || !self.feasible(pod, &demand, to) {
                continue;
            }
            let gain = fixed + self.destination_gain(pod, from, to, &source);
            if gain.is_finite() && best.is_none_or(|b| gain > b.gain) {
                best = Some(Choice { to, gain, cost });
            }
            seen += 1;
            if seen >= args.destinations_considered {
                break;
            }
        }
        best
    }
}

fn below_min_gain(ch: Choice, net: f64, min_gain: f64) -> String {
    format!(
        "best move gains {:.2} for cost {:.2}: net {net:.2} < minGain {min_gain}",
        ch.gain, ch.cost
    )
}

/// Plans one tick. See the module doc for the model.
pub fn plan(snapshot: &Snapshot, settings: &Settings) -> Result<Plan, DeschedulerError> {
    plan_with_memo(snapshot, settings, &mut DistanceMemo::default())
}

/// [`plan`], with the distances from targets to nodes kept in `memo` between calls (the same
/// plan; see [`DistanceMemo`]).
pub fn plan_with_memo(
    snapshot: &Snapshot,
    settings: &Settings,
    memo: &mut DistanceMemo,
) -> Result<Plan, DeschedulerError> {
    settings.validate()?;
    let ctx = PlanContext::with_memo(snapshot, settings, memo)?;
    let state = ClusterState::new(&ctx);
    let args = &settings.planner;

    // Nominations; the first strategy in priority order names a pod nominated by several.
    let mut nominated: BTreeMap<usize, Candidate> = BTreeMap::new();
    let mut nominate = |cs: Vec<Candidate>| {
        for c in cs {
            match nominated.get(&c.pod) {
                Some(old) if old.strategy <= c.strategy => {}
                _ => {
                    nominated.insert(c.pod, c);
                }
            }
        }
    };
    if settings.evacuation.enabled {
        nominate(evacuation::nominate(&ctx, &settings.evacuation));
    }
    if settings.violations.enabled {
        nominate(violations::nominate(&ctx, &state, &settings.violations));
    }
    if settings.drift.enabled {
        nominate(drift::nominate(&ctx, &settings.drift));
    }
    if settings.imbalance.enabled {
        nominate(imbalance::nominate(&ctx, &state, &settings.imbalance));
    }

    let mut skipped = Vec::new();
    let mut skip = |c: &Candidate, kind: SkipKind, reason: String| {
        let pod = &snapshot.pods[c.pod];
        skipped.push(Skip {
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            strategy: c.strategy,
            kind,
            reason,
        });
    };
    let mut live: Vec<&Candidate> = Vec::new();
    for c in nominated.values() {
        let pod = &snapshot.pods[c.pod];
        if pod.protected {
            skip(
                c,
                SkipKind::Protected,
                "protected pod (DaemonSet, system-critical, local storage or opt-out)".into(),
            );
            continue;
        }
        if let Some(t) = pod.last_evicted_at {
            let elapsed = snapshot.now.saturating_sub(t);
            if elapsed < args.cool_off_seconds {
                skip(
                    c,
                    SkipKind::CoolOff,
                    format!("moved {elapsed} s ago; cool-off is {} s", args.cool_off_seconds),
                );
                continue;
            }
        }
        live.push(c);
    }

    let mut order_by_load: Vec<(f64, usize)> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (imbalance::utilisation(n.used, n.allocatable), i))
        .collect();
    order_by_load.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let flagged = (0..snapshot.nodes.len())
        .map(|n| snapshot.nodes[n].unhealthy || snapshot.nodes[n].anomalous)
        .collect();
    let mut planner = Planner {
        ctx: &ctx,
        state,
        order_by_agent: (0..snapshot.agents.len()).map(|_| None).collect(),
        order_by_load: order_by_load.into_iter().map(|(_, i)| i).collect(),
        flagged,
    };

    // Heap of (net gain, reverse candidate position, state version of the evaluation).
    let mut heap: BinaryHeap<(Key, std::cmp::Reverse<usize>, usize)> = BinaryHeap::new();
    let mut choice: Vec<Option<Choice>> = vec![None; live.len()];
    for (i, c) in live.iter().enumerate() {
        let from = ctx.pod_node[c.pod];
        choice[i] = planner.best(c.pod, from);
        match choice[i] {
            Some(ch) => heap.push((Key(ch.gain - ch.cost), std::cmp::Reverse(i), 0)),
            None => skip(c, SkipKind::NoDestination, "no feasible destination node".into()),
        }
    }

    let mut version = 0usize;
    let mut moves = Vec::new();
    let mut per_node: BTreeMap<usize, u32> = BTreeMap::new();
    let mut per_namespace: BTreeMap<&str, u32> = BTreeMap::new();
    let mut per_agent: BTreeMap<usize, u32> = BTreeMap::new();
    while let Some((Key(net), std::cmp::Reverse(i), at)) = heap.pop() {
        let c = live[i];
        let pod = &snapshot.pods[c.pod];
        let from = ctx.pod_node[c.pod];
        // Limits first: a candidate they exclude needs no re-evaluation.
        let limit = if moves.len() as u32 >= args.max_evictions_total {
            Some(format!("maxEvictionsTotal {} reached", args.max_evictions_total))
        } else if per_node.get(&from).copied().unwrap_or(0) >= args.max_evictions_per_node {
            Some(format!(
                "maxEvictionsPerNode {} reached on {}",
                args.max_evictions_per_node, pod.node
            ))
        } else if per_namespace.get(pod.namespace.as_str()).copied().unwrap_or(0) >= args.max_evictions_per_namespace {
            Some(format!(
                "maxEvictionsPerNamespace {} reached in {}",
                args.max_evictions_per_namespace, pod.namespace
            ))
        } else if ctx.pod_agent[c.pod]
            .is_some_and(|a| per_agent.get(&a).copied().unwrap_or(0) >= args.max_evictions_per_agent)
        {
            Some(format!("maxEvictionsPerAgent {} reached", args.max_evictions_per_agent))
        } else {
            None
        };
        if let Some(reason) = limit {
            match choice[i] {
                // Would it have moved? Only then is the limit the reason it stays.
                Some(_) if net >= args.min_gain => skip(c, SkipKind::Limit, reason),
                Some(ch) => skip(c, SkipKind::BelowMinGain, below_min_gain(ch, net, args.min_gain)),
                None => {}
            }
            continue;
        }
        if at != version {
            // Re-evaluate against the moves chosen since; take it only if still the best.
            choice[i] = planner.best(c.pod, from);
            match choice[i] {
                Some(ch) => heap.push((Key(ch.gain - ch.cost), std::cmp::Reverse(i), version)),
                None => skip(c, SkipKind::NoDestination, "no feasible destination node left".into()),
            }
            continue;
        }
        let Some(ch) = choice[i] else { continue };
        if net < args.min_gain {
            skip(c, SkipKind::BelowMinGain, below_min_gain(ch, net, args.min_gain));
            continue;
        }
        planner.state.apply(&ctx, c.pod, from, ch.to);
        version += 1;
        *per_node.entry(from).or_default() += 1;
        *per_namespace.entry(pod.namespace.as_str()).or_default() += 1;
        if let Some(a) = ctx.pod_agent[c.pod] {
            *per_agent.entry(a).or_default() += 1;
        }
        moves.push(Move {
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            agent: pod.agent.clone(),
            from: pod.node.clone(),
            to: snapshot.nodes[ch.to].name.clone(),
            strategy: c.strategy,
            gain: ch.gain,
            cost: ch.cost,
            reason: c.reason.clone(),
        });
    }

    skipped.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    let total_gain = moves.iter().map(|m| m.gain).sum();
    let total_cost = moves.iter().map(|m| m.cost).sum();
    let mut targets: Vec<TargetStep> = ctx.targets.iter().flatten().cloned().collect();
    targets.sort_by(|a, b| a.agent.cmp(&b.agent));
    Ok(Plan {
        moves,
        targets,
        skipped,
        candidates: nominated.len(),
        total_gain,
        total_cost,
    })
}

#[cfg(test)]
mod tests;
