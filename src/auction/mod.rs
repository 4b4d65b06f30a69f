//! Capacity auctions (DESIGN §6): who gets scarce replicas when desired replicas exceed capacity.
//!
//! Input: an [`AuctionInput`] — one [`Bid`] per agent (marginal value of its 1st, 2nd, … replica,
//! non-increasing; the cpu/memory request of one replica) and the capacity of every node.
//! Output: an [`AuctionOutcome`] — replicas per agent and per node, Clarke pivot payments,
//! declared welfare, which solver ran, baseline welfare and Shapley cost shares per tenant.
//!
//! Pipeline: [`validate`] (collects every problem, names the field) → winner determination and
//! Clarke payments ([`allocate_and_charge`]): [`wdp_fast`] when every bid requests the same
//! resources, [`wdp_two_class`] when bids use exactly two request shapes — both exact under
//! their condition, detected here — else the integer program in [`wdp_mip`] with
//! [`vcg::clarke_payments`] re-solving once per winner → [`baselines`] → [`shapley`] cost
//! attribution. [`brute`] and [`combinatorial`] are exhaustive oracles for tests. Everything is deterministic: agents
//! are processed in ascending `agent` name order, nodes in ascending `node` name order, and ties
//! between equal marginal values go to the agent whose name sorts first.

pub mod baselines;
pub mod brute;
pub mod combinatorial;
pub mod cost_report;
pub mod generate;
pub mod quota;
pub mod shapley;
pub mod vcg;
pub mod wdp_fast;
pub mod wdp_mip;
pub mod wdp_two_class;

#[cfg(test)]
mod property_tests;

/// Bid and node constructors shared by the unit tests of the auction modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Bid, NodeCapacity, ResourceRequest};

    pub fn bid(agent: &str, values: &[f64], cpu: u64, mem: u64) -> Bid {
        Bid {
            agent: agent.into(),
            tenant: agent.into(),
            marginal_values: values.to_vec(),
            request: ResourceRequest {
                cpu_millis: cpu,
                memory_bytes: mem,
            },
        }
    }

    pub fn node(name: &str, cpu: u64, mem: u64) -> NodeCapacity {
        NodeCapacity {
            node: name.into(),
            cpu_millis: cpu,
            memory_bytes: mem,
            cost: 1.0,
        }
    }
}

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest number of marginal values (replicas) one bid may list.
pub const MAX_REPLICAS_PER_BID: usize = 100_000;

/// Resources one replica asks for (Kubernetes requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl ResourceRequest {
    /// The request as an array indexed by resource (0 = cpu, 1 = memory).
    pub fn as_array(&self) -> [u64; 2] {
        [self.cpu_millis, self.memory_bytes]
    }
}

/// One agent's declared valuation: `marginal_values[k]` is the value of its (k+1)-th replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    /// The GeometricAgent this bid is for; unique within an auction.
    pub agent: String,
    /// The tenant that pays; several agents may share a tenant.
    pub tenant: String,
    /// Non-increasing, finite, non-negative values of the 1st, 2nd, … replica.
    pub marginal_values: Vec<f64>,
    /// What one replica requests (the same for every replica of this agent).
    pub request: ResourceRequest,
}

impl Bid {
    /// V(k) = Σ_{t<k} marginal_values[t]: the declared value of `k` replicas.
    pub fn value_of(&self, replicas: usize) -> f64 {
        // fold from +0.0: `Sum` for f64 starts at −0.0, which would print as "-0.0".
        self.marginal_values.iter().take(replicas).fold(0.0, |acc, v| acc + v)
    }
}

/// Allocatable capacity of one node, and what it costs to keep it in the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// Node name; unique within an auction.
    pub node: String,
    /// Allocatable CPU in millicores.
    pub cpu_millis: u64,
    /// Allocatable memory in bytes.
    pub memory_bytes: u64,
    /// Cost of the node per accounting period (any currency unit); used for Shapley attribution.
    #[serde(default = "default_node_cost")]
    pub cost: f64,
}

fn default_node_cost() -> f64 {
    1.0
}

impl NodeCapacity {
    /// The capacity as an array indexed by resource (0 = cpu, 1 = memory).
    pub fn as_array(&self) -> [u64; 2] {
        [self.cpu_millis, self.memory_bytes]
    }
}

/// Which winner-determination path to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverChoice {
    /// The fast structured path when its exactness condition holds, the MIP otherwise.
    #[default]
    Auto,
    /// The fast path only; an error if its condition does not hold.
    Fast,
    /// Always the integer program (the reference).
    Mip,
}

/// Settings for the Shapley cost attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapleyConfig {
    /// Permutations sampled when there are more than [`shapley::EXACT_MAX_PLAYERS`] tenants.
    pub samples: u32,
    /// Seed of the permutation sampler.
    pub seed: u64,
}

impl Default for ShapleyConfig {
    fn default() -> Self {
        Self {
            samples: 2_000,
            seed: 0,
        }
    }
}

/// Everything one auction needs; serialisable so a receipt can record and replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuctionInput {
    pub bids: Vec<Bid>,
    pub nodes: Vec<NodeCapacity>,
    #[serde(default)]
    pub solver: SolverChoice,
    #[serde(default)]
    pub shapley: ShapleyConfig,
    /// Refuse (with [`AuctionError::TooLarge`]) to run the integer program when it would have
    /// more integer variables than this; `None` = no limit. A deterministic guard for callers
    /// on a control loop: the MIP's branch and bound can take minutes on mixed requests.
    #[serde(default)]
    pub mip_max_integer_variables: Option<u64>,
    /// After the winners are determined, hand the capacity they left to replicas bid at 0
    /// ([`fill_unvalued`]), at no charge. Absent (false) in inputs recorded before it existed,
    /// so those replay as they ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fill_unvalued: bool,
}

/// The solver that actually determined the winners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverUsed {
    /// Greedy over identical slots (all requests equal), exact under that condition.
    FastHomogeneous,
    /// Feasibility frontier over two request shapes (exactly two distinct requests), exact.
    FastTwoClass,
    /// The integer program via good_lp / microlp.
    Mip,
}

/// What one agent won and pays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAllocation {
    pub agent: String,
    pub tenant: String,
    /// Replicas granted (the quota written to status).
    pub replicas: u32,
    /// Replicas per node (only nodes with at least one).
    pub nodes: BTreeMap<String, u32>,
    /// Declared value of the granted replicas, V(replicas).
    pub value: f64,
    /// Clarke pivot payment: W*₋ᵢ − (W* − vᵢ(a*)), ≥ 0, 0 for losers.
    pub payment: f64,
    /// value − payment (declared utility).
    pub utility: f64,
}

/// Welfare of the same instance under the baseline allocation rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineWelfare {
    pub proportional_share: f64,
    pub drf: f64,
}

/// One tenant's share of the node-pool cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantCost {
    pub tenant: String,
    pub shapley_cost: f64,
}

/// How the Shapley values were computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ShapleyMethod {
    /// All 2ⁿ coalitions.
    Exact,
    /// Permutation sampling; every share is within `error_bound` of the exact value with
    /// probability at least `confidence` (Hoeffding + union bound).
    MonteCarlo {
        samples: u32,
        seed: u64,
        error_bound: f64,
        confidence: f64,
    },
}

/// The result of one auction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuctionOutcome {
    /// One entry per bid, ascending by agent name.
    pub allocations: Vec<AgentAllocation>,
    /// Declared welfare W* = Σᵢ Vᵢ(kᵢ).
    pub welfare: f64,
    /// Σ payments.
    pub revenue: f64,
    pub solver: SolverUsed,
    pub baselines: BaselineWelfare,
    /// Cost of the node pool needed for the allocation (see [`shapley::pool_cost`]).
    pub pool_cost: f64,
    /// Shapley shares of `pool_cost`, ascending by tenant name.
    pub tenant_costs: Vec<TenantCost>,
    pub shapley_method: ShapleyMethod,
}

/// Errors of the auction area; every message names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuctionError {
    /// One or more input problems, all listed.
    #[error("invalid auction input: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The fast path was requested but its exactness condition does not hold.
    #[error("fast path not applicable: {0}")]
    FastPathNotApplicable(String),
    /// The brute-force oracle refuses instances beyond its limit.
    #[error("instance too large for brute force: {0}")]
    TooLarge(String),
    /// The integer program failed or returned an inconsistent solution.
    #[error("winner determination solver failed: {0}")]
    Solver(String),
}

/// A validated instance: bids sorted by agent, nodes sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub bids: Vec<Bid>,
    pub nodes: Vec<NodeCapacity>,
}

/// A winner determination result: replicas of bid `i` on node `j` is `counts[i][j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub counts: Vec<Vec<u32>>,
}

impl Assignment {
    /// An assignment that gives nothing to anyone.
    pub fn empty(bids: usize, nodes: usize) -> Self {
        Self {
            counts: vec![vec![0; nodes]; bids],
        }
    }

    /// Replicas of bid `i` over all nodes.
    pub fn replicas(&self, i: usize) -> usize {
        self.counts[i].iter().map(|&c| c as usize).sum()
    }

    /// Declared welfare Σᵢ Vᵢ(kᵢ), summed in bid order.
    pub fn welfare(&self, bids: &[Bid]) -> f64 {
        bids.iter()
            .enumerate()
            .map(|(i, b)| b.value_of(self.replicas(i)))
            .fold(0.0, |acc, v| acc + v)
    }

    /// True when every node's summed requests fit its capacity in every resource
    /// (exact integer arithmetic).
    pub fn fits(&self, inst: &Instance) -> bool {
        (0..inst.nodes.len()).all(|j| {
            let cap = inst.nodes[j].as_array();
            (0..2).all(|r| {
                let used: u128 = inst
                    .bids
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b.request.as_array()[r] as u128 * self.counts[i][j] as u128)
                    .sum();
                used <= cap[r] as u128
            })
        })
    }
}

/// Gives the capacity the winners left to replicas bid at 0 (an agent without a bid bids 0 for
/// each replica it wants): one replica per such agent in turn, agents in (`namespace/name`)
/// order, each on the first node in name order where it fits, until none fits. An agent is
/// filled only when its next unallocated replica is bid at 0 (so a positive-valued replica the
/// winner determination left out is never given away).
///
/// Welfare is unchanged (the added replicas are worth 0). [`run`] charges the Clarke payments
/// of the winner determination before the fill, so they are unchanged too; the fill cannot
/// change what an agent gains by misreporting either, since it never changes a positively
/// valued allocation. The pool's cost ([`shapley`]) is shared over the filled allocation.
/// Deterministic: bids and nodes are in the instance's sorted order.
pub fn fill_unvalued(inst: &Instance, assignment: &mut Assignment) {
    let mut left: Vec<[u128; 2]> = inst
        .nodes
        .iter()
        .enumerate()
        .map(|(j, n)| {
            let cap = n.as_array();
            let mut left = [cap[0] as u128, cap[1] as u128];
            for (i, b) in inst.bids.iter().enumerate() {
                let req = b.request.as_array();
                for (r, l) in left.iter_mut().enumerate() {
                    *l = l.saturating_sub(req[r] as u128 * assignment.counts[i][j] as u128);
                }
            }
            left
        })
        .collect();
    // The zero-valued slots each bid still has, and whether it can still be placed.
    let mut open: Vec<usize> = inst
        .bids
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let given = assignment.replicas(i);
            match b.marginal_values.get(given) {
                Some(v) if *v == 0.0 => b.marginal_values.len() - given,
                _ => 0,
            }
        })
        .collect();
    loop {
        let mut placed_any = false;
        for (i, b) in inst.bids.iter().enumerate() {
            if open[i] == 0 {
                continue;
            }
            let req = b.request.as_array();
            let fits = |l: &[u128; 2]| (0..2).all(|r| req[r] as u128 <= l[r]);
            match left.iter().position(fits) {
                Some(j) => {
                    for (r, l) in left[j].iter_mut().enumerate() {
                        *l -= req[r] as u128;
                    }
                    assignment.counts[i][j] += 1;
                    open[i] -= 1;
                    placed_any = true;
                }
                None => open[i] = 0,
            }
        }
        if !placed_any {
            break;
        }
    }
}

/// Checks every field and returns the instance with bids sorted by agent and nodes by name.
///
/// Rules: agent and node names non-empty and unique; marginal values finite, ≥ 0 and
/// non-increasing; at most [`MAX_REPLICAS_PER_BID`] of them; a request asks for something;
/// every node has cpu > 0 and memory > 0; node cost finite and ≥ 0; at least one node.
pub fn validate(bids: &[Bid], nodes: &[NodeCapacity]) -> Result<Instance, AuctionError> {
    let mut problems = Vec::new();
    let mut agents = BTreeMap::new();
    for (i, b) in bids.iter().enumerate() {
        if b.agent.is_empty() {
            problems.push(format!("bids[{i}].agent: empty"));
        } else if let Some(first) = agents.insert(b.agent.clone(), i) {
            problems.push(format!("bids[{i}].agent: {:?} duplicates bids[{first}].agent", b.agent));
        }
        if b.tenant.is_empty() {
            problems.push(format!("bids[{i}].tenant: empty"));
        }
        if b.marginal_values.len() > MAX_REPLICAS_PER_BID {
            problems.push(format!(
                "bids[{i}].marginal_values: {} entries, at most {MAX_REPLICAS_PER_BID} allowed",
                b.marginal_values.len()
            ));
        }
        for (k, &v) in b.marginal_values.iter().enumerate() {
            if !v.is_finite() {
                problems.push(format!("bids[{i}].marginal_values[{k}]: {v} is not a finite number"));
            } else if v < 0.0 {
                problems.push(format!("bids[{i}].marginal_values[{k}]: {v} is negative"));
            } else if k > 0 && b.marginal_values[k - 1].is_finite() && v > b.marginal_values[k - 1] {
                problems.push(format!(
                    "bids[{i}].marginal_values[{k}]: {v} is larger than marginal_values[{}] = {} \
                     (marginal values must be non-increasing)",
                    k - 1,
                    b.marginal_values[k - 1]
                ));
            }
        }
        if b.request.cpu_millis == 0 && b.request.memory_bytes == 0 {
            problems.push(format!("bids[{i}].request: cpu_millis and memory_bytes are both 0"));
        }
    }
    if nodes.is_empty() {
        problems.push("nodes: empty (no capacity to auction)".to_string());
    }
    let mut names = BTreeMap::new();
    for (j, n) in nodes.iter().enumerate() {
        if n.node.is_empty() {
            problems.push(format!("nodes[{j}].node: empty"));
        } else if let Some(first) = names.insert(n.node.clone(), j) {
            problems.push(format!("nodes[{j}].node: {:?} duplicates nodes[{first}].node", n.node));
        }
        if n.cpu_millis == 0 {
            problems.push(format!("nodes[{j}].cpu_millis: zero capacity"));
        }
        if n.memory_bytes == 0 {
            problems.push(format!("nodes[{j}].memory_bytes: zero capacity"));
        }
        if !n.cost.is_finite() || n.cost < 0.0 {
            problems.push(format!("nodes[{j}].cost: {} must be finite and >= 0", n.cost));
        }
    }
    if !problems.is_empty() {
        return Err(AuctionError::Invalid(problems));
    }
    let mut bids = bids.to_vec();
    bids.sort_by(|a, b| a.agent.cmp(&b.agent));
    let mut nodes = nodes.to_vec();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Instance { bids, nodes })
}

/// Winner determination plus all Clarke payments: the mechanism itself, without the baselines
/// and cost attribution that [`run`] adds. Payments are in `inst.bids` order.
pub fn allocate_and_charge(
    inst: &Instance,
    choice: SolverChoice,
) -> Result<(Assignment, Vec<f64>, SolverUsed), AuctionError> {
    if choice != SolverChoice::Mip {
        let one = match wdp_fast::solve_with_payments(inst) {
            Ok((a, p)) => return Ok((a, p, SolverUsed::FastHomogeneous)),
            Err(reason) => reason,
        };
        let two = match wdp_two_class::solve_with_payments(inst) {
            Ok((a, p)) => return Ok((a, p, SolverUsed::FastTwoClass)),
            Err(reason) => reason,
        };
        if choice == SolverChoice::Fast {
            return Err(AuctionError::FastPathNotApplicable(format!("{one}; {two}")));
        }
    }
    let assignment = wdp_mip::solve(inst)?;
    let payments = vcg::clarke_payments(inst, &assignment, SolverUsed::Mip)?;
    Ok((assignment, payments, SolverUsed::Mip))
}

/// Runs one auction: validate, determine winners, charge Clarke payments, compare with the
/// baselines and attribute the pool cost to tenants.
pub fn run(input: &AuctionInput) -> Result<AuctionOutcome, AuctionError> {
    let inst = validate(&input.bids, &input.nodes)?;
    if let Some(limit) = input.mip_max_integer_variables {
        let needs_mip = match input.solver {
            SolverChoice::Mip => true,
            SolverChoice::Fast => false,
            SolverChoice::Auto => wdp_fast::homogeneous_slots(&inst).is_err() && !wdp_two_class::applies(&inst),
        };
        let vars = wdp_mip::integer_variables(&inst);
        if needs_mip && vars as u64 > limit {
            return Err(AuctionError::TooLarge(format!(
                "the integer program would have {vars} integer variables (bids x nodes that fit), \
                 mip_max_integer_variables is {limit}"
            )));
        }
    }
    let (mut assignment, payments, solver) = allocate_and_charge(&inst, input.solver)?;
    if input.fill_unvalued {
        fill_unvalued(&inst, &mut assignment);
    }
    let allocations: Vec<AgentAllocation> = inst
        .bids
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let replicas = assignment.replicas(i);
            let value = b.value_of(replicas);
            let nodes = inst
                .nodes
                .iter()
                .zip(&assignment.counts[i])
                .filter(|(_, c)| **c > 0)
                .map(|(n, c)| (n.node.clone(), *c))
                .collect();
            AgentAllocation {
                agent: b.agent.clone(),
                tenant: b.tenant.clone(),
                replicas: replicas as u32,
                nodes,
                value,
                payment: payments[i],
                utility: value - payments[i],
            }
        })
        .collect();
    let welfare = assignment.welfare(&inst.bids);
    let revenue = payments.iter().fold(0.0, |acc, p| acc + p);
    let baselines = BaselineWelfare {
        proportional_share: baselines::proportional_share(&inst).welfare(&inst.bids),
        drf: baselines::drf(&inst).welfare(&inst.bids),
    };
    let attribution = shapley::attribute_pool_cost(&inst, &assignment, input.shapley);
    Ok(AuctionOutcome {
        allocations,
        welfare,
        revenue,
        solver,
        baselines,
        pool_cost: attribution.pool_cost,
        tenant_costs: attribution.tenant_costs,
        shapley_method: attribution.method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(agent: &str, values: &[f64]) -> Bid {
        Bid {
            agent: agent.into(),
            tenant: "team".into(),
            marginal_values: values.to_vec(),
            request: ResourceRequest {
                cpu_millis: 500,
                memory_bytes: 1 << 30,
            },
        }
    }

    fn node(name: &str) -> NodeCapacity {
        NodeCapacity {
            node: name.into(),
            cpu_millis: 2000,
            memory_bytes: 8 << 30,
            cost: 1.0,
        }
    }

    fn problems(bids: &[Bid], nodes: &[NodeCapacity]) -> Vec<String> {
        match validate(bids, nodes) {
            Err(AuctionError::Invalid(p)) => p,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_negative_marginal_value_is_rejected_naming_the_field() {
        let p = problems(&[bid("a", &[3.0, -1.0])], &[node("n")]);
        assert_eq!(p, vec!["bids[0].marginal_values[1]: -1 is negative".to_string()]);
    }

    #[test]
    fn increasing_marginal_values_are_rejected_naming_the_field() {
        let p = problems(&[bid("a", &[1.0]), bid("b", &[2.0, 5.0])], &[node("n")]);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("bids[1].marginal_values[1]: 5 is larger than marginal_values[0] = 2"),
            "{p:?}"
        );
    }

    #[test]
    fn a_nan_or_infinite_value_is_rejected_naming_the_field() {
        let p = problems(&[bid("a", &[f64::NAN]), bid("b", &[f64::INFINITY])], &[node("n")]);
        assert_eq!(
            p,
            vec![
                "bids[0].marginal_values[0]: NaN is not a finite number".to_string(),
                "bids[1].marginal_values[0]: inf is not a finite number".to_string()
            ]
        );
    }

    #[test]
    fn zero_capacity_is_rejected_naming_the_node_field() {
        let mut n = node("n");
        n.memory_bytes = 0;
        let p = problems(&[bid("a", &[1.0])], &[node("m"), n]);
        assert_eq!(p, vec!["nodes[1].memory_bytes: zero capacity".to_string()]);
        let err = run(&AuctionInput {
            bids: vec![],
            nodes: vec![],
            solver: SolverChoice::Auto,
            shapley: Default::default(),
            mip_max_integer_variables: None,
            fill_unvalued: false,
        })
        .unwrap_err();
        assert!(err.to_string().contains("nodes: empty"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut b = bid("a", &[1.0]);
        b.request = ResourceRequest {
            cpu_millis: 0,
            memory_bytes: 0,
        };
        let mut n = node("n");
        n.cost = -1.0;
        let p = problems(&[b, bid("a", &[-2.0])], &[n, node("n")]);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("bids[1].agent: \"a\" duplicates bids[0].agent"))
        );
        assert!(
            p.iter()
                .any(|m| m.contains("bids[0].request: cpu_millis and memory_bytes are both 0"))
        );
        assert!(p.iter().any(|m| m.contains("nodes[0].cost")));
        assert!(
            p.iter()
                .any(|m| m.contains("nodes[1].node: \"n\" duplicates nodes[0].node"))
        );
    }

    #[test]
    fn forcing_the_fast_path_on_mixed_requests_is_an_error_and_auto_falls_back_to_the_mip() {
        let mut b = bid("b", &[4.0]);
        b.request.cpu_millis = 1500;
        let mut c = bid("c", &[]);
        c.request.cpu_millis = 100;
        let mut input = AuctionInput {
            bids: vec![bid("a", &[3.0, 2.0]), b, c],
            nodes: vec![node("n")],
            solver: SolverChoice::Fast,
            shapley: Default::default(),
            mip_max_integer_variables: None,
            fill_unvalued: false,
        };
        assert!(matches!(run(&input), Err(AuctionError::FastPathNotApplicable(_))));
        input.solver = SolverChoice::Auto;
        let out = run(&input).unwrap();
        assert_eq!(out.solver, SolverUsed::Mip);
        // 2000m: b (1500m, 4) + nothing else fits beside it except… a's 500m replica (3) → 7.
        assert_eq!(out.welfare, 7.0);
    }

    #[test]
    fn nodes_with_u64_max_capacity_are_auctioned_without_sizing_anything_by_the_capacity() {
        // Two request classes (the fast two-class path) and capacities at u64::MAX: this once
        // tried to allocate ~147 PB for a prefix table sized by how many replicas would fit.
        let mut b = bid("b", &[6.0, 2.0]);
        b.request.cpu_millis = 1000;
        let huge = |name: &str, mem: u64| NodeCapacity {
            node: name.into(),
            cpu_millis: u64::MAX,
            memory_bytes: mem,
            cost: 1.0,
        };
        let input = AuctionInput {
            bids: vec![bid("a", &[5.0, 4.0, 3.0]), b],
            nodes: vec![huge("n", u64::MAX), huge("m", 1 << 40)],
            solver: SolverChoice::Auto,
            shapley: Default::default(),
            mip_max_integer_variables: None,
            fill_unvalued: false,
        };
        let out = run(&input).unwrap();
        // Everything fits: every positive value is won.
        assert_eq!(out.welfare, 20.0);
    }

    #[test]
    fn an_integer_program_over_the_size_guard_is_refused_with_its_size() {
        let mut b = bid("b", &[4.0]);
        b.request.cpu_millis = 1500;
        let mut c = bid("c", &[]);
        c.request.cpu_millis = 100;
        let mut input = AuctionInput {
            bids: vec![bid("a", &[3.0]), b, c],
            nodes: vec![node("n1"), node("n2")],
            solver: SolverChoice::Auto,
            shapley: Default::default(),
            mip_max_integer_variables: Some(3),
            fill_unvalued: false,
        };
        let err = run(&input).unwrap_err();
        assert!(
            err.to_string().contains("4 integer variables") && err.to_string().contains("is 3"),
            "{err}"
        );
        input.mip_max_integer_variables = Some(4);
        assert_eq!(run(&input).unwrap().solver, SolverUsed::Mip);
    }

    #[test]
    fn an_outcome_round_trips_through_json_and_replays_byte_identically() {
        let input = generate::random_instance(
            generate::GenConfig {
                bidders: 40,
                nodes: 4,
                max_replicas: 6,
                homogeneous: true,
                tenants: 15,
            },
            5,
        );
        let json = serde_json::to_string(&input).unwrap();
        let replayed: AuctionInput = serde_json::from_str(&json).unwrap();
        let a = serde_json::to_string(&run(&input).unwrap()).unwrap();
        let b = serde_json::to_string(&run(&replayed).unwrap()).unwrap();
        assert_eq!(a, b);
        let out: AuctionOutcome = serde_json::from_str(&a).unwrap();
        // 15 tenants > 12: sampled Shapley with a stated bound; shares still add up to the pool cost.
        assert!(matches!(out.shapley_method, ShapleyMethod::MonteCarlo { error_bound, .. } if error_bound > 0.0));
        let total: f64 = out.tenant_costs.iter().map(|t| t.shapley_cost).sum();
        assert!((total - out.pool_cost).abs() < 1e-9);
    }

    #[test]
    fn vcg_welfare_is_at_least_that_of_both_baselines() {
        for seed in 0..5 {
            let input = generate::random_instance(
                generate::GenConfig {
                    bidders: 60,
                    nodes: 5,
                    max_replicas: 10,
                    homogeneous: true,
                    tenants: 3,
                },
                seed,
            );
            let out = run(&input).unwrap();
            assert!(out.welfare >= out.baselines.drf - 1e-9);
            assert!(out.welfare >= out.baselines.proportional_share - 1e-9);
        }
    }
}
