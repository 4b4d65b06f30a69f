//! The budget (`MomConfig.spec.budget.maxHourlyCost`): what MOM's pods cost per hour, and how
//! many more replicas of an agent the budget affords.
//!
//! Inputs: the priced nodes ([`PricedNode`]: allocatable, price label, spot label), the pods of
//! every GeometricAgent ([`PricedPod`]: requests, the node it is bound to or its nodeSelector)
//! and the replica change asked for ([`BudgetInputs`]). Output: the hourly cost
//! ([`hourly_cost`]) and the replicas allowed ([`decide`], a [`BudgetOutcome`]), recorded as
//! decision kind [`REFUSED_KIND`] when it refuses some and replayed by [`replay`].
//!
//! Prices. A node costs its label `mom.hypersync.io/hourly-cost` per hour (a number ≥ 0; 1
//! when absent or unreadable, the problem then named), times [`SPOT_PRICE_FACTOR`] (0.3, the
//! extender's cost score uses the same) when labelled `mom.hypersync.io/spot=true`.
//!
//! Pro rata. A pod bound to node n costs
//!   price(n) · min(1, max(cpu_req / cpu_alloc(n), mem_req / mem_alloc(n)))
//! — the share of the node it keeps others from using (its larger share, as a scheduler packing
//! on the scarcer resource sees it). A resource requested from a node with none of it counts as
//! the whole node. A pod not bound yet (or bound to a node not known) costs the most it could:
//! its cost on the most expensive node its nodeSelector (`matchLabels` semantics) admits, any
//! node when none does; 0 when there are no nodes.
//!
//! Cap. With C the cost of the pods that exist, p the cost of one more replica (its estimate
//! as a pod not yet bound) and B the budget, a scale-up from `active` to `wanted` replicas is
//! allowed up to `active + k`, k = max(0, ⌊(B − C)/p + 1e-9⌋) (every replica when p = 0).
//! Scale-downs are never refused.
//!
//! Auction. A node pool's auction is offered only the capacity the budget left pays for
//! ([`affordable_capacity`]): with L = B − the cost of the pods of agents outside the pool, the
//! pool's nodes (capacity: allocatable minus what other pods hold) are taken cheapest price
//! first (ties by name); a node whose free capacity costs f = price · max(cpu_free/cpu_alloc,
//! mem_free/mem_alloc) ≤ L is offered whole (L −= f), the first that costs more is offered a
//! fraction L/f of its free cpu and memory (rounded down), the rest nothing. Filling what is
//! offered costs at most L when the pool's pods all have their larger share on the same
//! resource (pods larger in cpu beside pods larger in memory can cost up to 2L); the agent
//! controller's cap above is exact in any case.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auction::NodeCapacity;
use crate::labels::{HOURLY_COST_LABEL, SPOT_LABEL};
use crate::placement::Resources;
use crate::receipts::replay::ReplayError;

/// Decision kind of the receipt of a scale-up the budget refused or capped.
pub const REFUSED_KIND: &str = "budget.refused";
/// Price factor of a spot node (a 70 % discount).
pub const SPOT_PRICE_FACTOR: f64 = 0.3;
/// Hourly cost of a node without a readable price label.
pub const DEFAULT_HOURLY_COST: f64 = 1.0;
/// Slack on `(B − C)/p`, so a budget of exactly k replicas affords k despite rounding.
const SLACK: f64 = 1e-9;

/// A node with its price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricedNode {
    pub name: String,
    pub allocatable: Resources,
    /// Price per hour before the spot discount.
    pub hourly_cost: f64,
    pub spot: bool,
    /// Labels, as far as a pod's nodeSelector may ask for them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl PricedNode {
    /// A node priced from its labels; the second value names a price label that could not be
    /// read (the node then costs [`DEFAULT_HOURLY_COST`]).
    pub fn from_labels(
        name: &str,
        labels: &BTreeMap<String, String>,
        allocatable: Resources,
    ) -> (Self, Option<String>) {
        let (hourly_cost, problem) = match labels.get(HOURLY_COST_LABEL) {
            None => (DEFAULT_HOURLY_COST, None),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(c) if c.is_finite() && c >= 0.0 => (c, None),
                _ => (
                    DEFAULT_HOURLY_COST,
                    Some(format!(
                        "node {name}: label {HOURLY_COST_LABEL}={v:?} is not a number >= 0; counted as {DEFAULT_HOURLY_COST}"
                    )),
                ),
            },
        };
        let node = PricedNode {
            name: name.to_string(),
            allocatable,
            hourly_cost,
            spot: labels.get(SPOT_LABEL).map(String::as_str) == Some("true"),
            labels: labels.clone(),
        };
        (node, problem)
    }

    /// Price per hour after the spot discount.
    pub fn effective_price(&self) -> f64 {
        if self.spot {
            self.hourly_cost * SPOT_PRICE_FACTOR
        } else {
            self.hourly_cost
        }
    }

    /// What a pod requesting `requests` costs per hour on this node (see the module doc).
    pub fn pod_cost(&self, requests: Resources) -> f64 {
        let share = |req: u64, alloc: u64| match (req, alloc) {
            (0, _) => 0.0,
            (_, 0) => 1.0,
            (r, a) => r as f64 / a as f64,
        };
        let s = share(requests.cpu_millis, self.allocatable.cpu_millis)
            .max(share(requests.memory_bytes, self.allocatable.memory_bytes))
            .min(1.0);
        self.effective_price() * s
    }
}

/// One pod of a GeometricAgent as the budget sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricedPod {
    /// `namespace/name`.
    pub name: String,
    pub requests: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The pod's `spec.nodeSelector` (used while it is not bound).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// The most a pod not bound yet could cost: the most expensive node its selector admits (any
/// node when none does; 0 without nodes).
pub fn unbound_cost(requests: Resources, node_selector: &BTreeMap<String, String>, nodes: &[PricedNode]) -> f64 {
    let admits = |n: &PricedNode| node_selector.iter().all(|(k, v)| n.labels.get(k) == Some(v));
    let dearest = |admitted: &dyn Fn(&PricedNode) -> bool| {
        nodes
            .iter()
            .filter(|n| admitted(n))
            .map(|n| n.pod_cost(requests))
            .reduce(f64::max)
    };
    dearest(&admits).or_else(|| dearest(&|_| true)).unwrap_or(0.0)
}

/// What one pod costs per hour: pro rata on its node, or [`unbound_cost`].
pub fn pod_cost(pod: &PricedPod, nodes: &[PricedNode]) -> f64 {
    match pod.node.as_ref().and_then(|n| nodes.iter().find(|x| &x.name == n)) {
        Some(node) => node.pod_cost(pod.requests),
        None => unbound_cost(pod.requests, &pod.node_selector, nodes),
    }
}

/// Σ over `pods` of [`pod_cost`] (nodes looked up by name once: O((pods + nodes) · log nodes),
/// plus a pass over the nodes per unbound pod).
pub fn hourly_cost(pods: &[PricedPod], nodes: &[PricedNode]) -> f64 {
    let by_name: BTreeMap<&str, &PricedNode> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    pods.iter()
        .map(|p| match p.node.as_deref().and_then(|n| by_name.get(n)) {
            Some(node) => node.pod_cost(p.requests),
            None => unbound_cost(p.requests, &p.node_selector, nodes),
        })
        .sum()
}

/// How many more replicas costing `per_replica` each fit between `current` and `max`; `None`
/// when a replica costs nothing (no limit).
pub fn affordable_replicas(current: f64, per_replica: f64, max: f64) -> Option<u64> {
    if per_replica <= 0.0 {
        return None;
    }
    let k = ((max - current) / per_replica + SLACK).floor();
    Some(if k.is_finite() && k > 0.0 { k as u64 } else { 0 })
}

/// The part of a pool's capacity `budget_left` pays for (see the module doc): `nodes` as the
/// auction would be offered them, `prices` every node's price (a node without one is priced
/// [`DEFAULT_HOURLY_COST`] over its free capacity). Nodes left with no cpu or no memory are not
/// offered; the result is in node-name order.
pub fn affordable_capacity(nodes: &[NodeCapacity], prices: &[PricedNode], budget_left: f64) -> Vec<NodeCapacity> {
    let priced: Vec<(f64, f64, &NodeCapacity)> = nodes
        .iter()
        .map(|n| {
            let node = prices.iter().find(|p| p.name == n.node);
            let price = node.map_or(DEFAULT_HOURLY_COST, PricedNode::effective_price);
            let share = |free: u64, alloc: Option<u64>| match alloc {
                Some(a) if a > 0 => (free as f64 / a as f64).min(1.0),
                _ => 1.0,
            };
            let free_share = share(n.cpu_millis, node.map(|p| p.allocatable.cpu_millis))
                .max(share(n.memory_bytes, node.map(|p| p.allocatable.memory_bytes)));
            (price, price * free_share, n)
        })
        .collect();
    let mut order: Vec<usize> = (0..priced.len()).collect();
    order.sort_by(|&a, &b| {
        priced[a]
            .0
            .total_cmp(&priced[b].0)
            .then_with(|| priced[a].2.node.cmp(&priced[b].2.node))
    });
    let mut left = if budget_left.is_finite() {
        budget_left.max(0.0)
    } else {
        0.0
    };
    let mut offered = Vec::new();
    for i in order {
        let (_, cost, n) = priced[i];
        if cost <= left + SLACK {
            left = (left - cost).max(0.0);
            offered.push(n.clone());
        } else if left > 0.0 {
            let f = left / cost;
            left = 0.0;
            offered.push(NodeCapacity {
                cpu_millis: (n.cpu_millis as f64 * f).floor() as u64,
                memory_bytes: (n.memory_bytes as f64 * f).floor() as u64,
                ..n.clone()
            });
        }
    }
    offered.retain(|n| n.cpu_millis > 0 && n.memory_bytes > 0);
    offered.sort_by(|a, b| a.node.cmp(&b.node));
    offered
}

/// The new replica of an agent: what each of its pods requests and where it may go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewReplica {
    pub requests: Resources,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// Everything a budget decision reads (recorded inline in its receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetInputs {
    /// `spec.budget.maxHourlyCost`.
    pub max_hourly_cost: f64,
    /// The agent (`namespace/name`).
    pub agent: String,
    /// Its pods now.
    pub active: u32,
    /// The replicas it would have without the budget.
    pub wanted: u32,
    pub replica: NewReplica,
    /// Every GeometricAgent pod (the agent's own included).
    pub pods: Vec<PricedPod>,
    pub nodes: Vec<PricedNode>,
}

impl BudgetInputs {
    /// The inputs with node labels cut to the keys some nodeSelector asks for (a recorded
    /// receipt need not carry every label of every node; the decision is unchanged).
    pub fn compact(mut self) -> Self {
        let keys: BTreeSet<String> = self
            .pods
            .iter()
            .flat_map(|p| p.node_selector.keys())
            .chain(self.replica.node_selector.keys())
            .cloned()
            .collect();
        for n in &mut self.nodes {
            n.labels.retain(|k, _| keys.contains(k));
        }
        self
    }
}

/// What the budget allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetOutcome {
    /// Cost per hour of the pods that exist.
    pub hourly_cost: f64,
    /// Cost per hour of one more replica.
    pub per_replica_cost: f64,
    /// Replicas allowed: `wanted` when it fits (or is no scale-up), else `active + k`.
    pub allowed: u32,
}

impl BudgetOutcome {
    /// Whether the budget refused some of the replicas wanted.
    pub fn refused(&self, inputs: &BudgetInputs) -> bool {
        self.allowed < inputs.wanted
    }
}

/// The replicas the budget allows (see the module doc).
pub fn decide(inputs: &BudgetInputs) -> BudgetOutcome {
    let hourly_cost = hourly_cost(&inputs.pods, &inputs.nodes);
    let per_replica_cost = unbound_cost(inputs.replica.requests, &inputs.replica.node_selector, &inputs.nodes);
    BudgetOutcome {
        hourly_cost,
        per_replica_cost,
        allowed: allowed(
            hourly_cost,
            per_replica_cost,
            inputs.active,
            inputs.wanted,
            inputs.max_hourly_cost,
        ),
    }
}

/// The replicas allowed from `active` toward `wanted` when the pods that exist cost
/// `hourly_cost` per hour and one more `per_replica_cost`, under a budget of `max_hourly_cost`
/// (the cap of the module doc): `wanted` when it is no scale-up or a replica costs nothing,
/// else `min(wanted, active + k)`. [`decide`] computes its costs and calls this; the twin calls
/// it with the costs of its own replicas.
pub fn allowed(hourly_cost: f64, per_replica_cost: f64, active: u32, wanted: u32, max_hourly_cost: f64) -> u32 {
    if wanted <= active {
        return wanted;
    }
    match affordable_replicas(hourly_cost, per_replica_cost, max_hourly_cost) {
        None => wanted,
        Some(k) => (u64::from(active) + k).min(u64::from(wanted)) as u32,
    }
}

/// The receipt decision of a refusal: `{kind: budget.refused, agent, inputs, output}`, the
/// inputs inline so [`replay`] re-runs it.
pub fn refusal_record(inputs: &BudgetInputs, outcome: &BudgetOutcome) -> Value {
    serde_json::json!({
        "kind": REFUSED_KIND,
        "agent": inputs.agent,
        "inputs": serde_json::to_value(inputs).unwrap_or_default(),
        "output": outcome,
    })
}

/// Replays a recorded refusal: `inputs` is a [`BudgetInputs`], the result its [`BudgetOutcome`].
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    let inputs: BudgetInputs = serde_json::from_value(inputs.clone()).map_err(|e| ReplayError::BadInputs {
        field: "inputs".into(),
        message: e.to_string(),
    })?;
    serde_json::to_value(decide(&inputs)).map_err(|e| ReplayError::BadInputs {
        field: "output".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn node(name: &str, cost: Option<&str>, spot: bool) -> PricedNode {
        let mut labels = BTreeMap::new();
        if let Some(c) = cost {
            labels.insert(HOURLY_COST_LABEL.to_string(), c.to_string());
        }
        if spot {
            labels.insert(SPOT_LABEL.to_string(), "true".to_string());
        }
        let (n, _) = PricedNode::from_labels(
            name,
            &labels,
            Resources {
                cpu_millis: 8_000,
                memory_bytes: 32 * GIB,
            },
        );
        n
    }

    fn req(cpu_millis: u64, memory_bytes: u64) -> Resources {
        Resources {
            cpu_millis,
            memory_bytes,
        }
    }

    fn pod(name: &str, requests: Resources, node: Option<&str>) -> PricedPod {
        PricedPod {
            name: name.into(),
            requests,
            node: node.map(str::to_string),
            node_selector: BTreeMap::new(),
        }
    }

    #[test]
    fn a_pod_costs_its_nodes_price_times_its_larger_share_of_the_node() {
        let n = node("a", Some("2"), false);
        // cpu 2/8 = 0.25, memory 4/32 = 0.125: the larger share counts.
        assert_eq!(n.pod_cost(req(2_000, 4 * GIB)), 0.5);
        // memory 16/32 = 0.5 beats cpu 1/8.
        assert_eq!(n.pod_cost(req(1_000, 16 * GIB)), 1.0);
        // No requests: nothing; more than the node: the whole node.
        assert_eq!(n.pod_cost(req(0, 0)), 0.0);
        assert_eq!(n.pod_cost(req(16_000, 0)), 2.0);
    }

    #[test]
    fn a_spot_node_costs_three_tenths_of_its_label() {
        let n = node("s", Some("2"), true);
        assert!((n.pod_cost(req(2_000, 0)) - 0.15).abs() < 1e-12);
    }

    #[test]
    fn a_node_without_a_readable_price_costs_one_and_the_label_is_named() {
        assert_eq!(node("a", None, false).hourly_cost, 1.0);
        let labels = BTreeMap::from([(HOURLY_COST_LABEL.to_string(), "cheap".to_string())]);
        let (n, problem) = PricedNode::from_labels("a", &labels, req(1, 1));
        assert_eq!(n.hourly_cost, 1.0);
        let problem = problem.unwrap();
        assert!(problem.contains("node a") && problem.contains(HOURLY_COST_LABEL) && problem.contains("\"cheap\""));
        let negative = BTreeMap::from([(HOURLY_COST_LABEL.to_string(), "-1".to_string())]);
        assert!(PricedNode::from_labels("a", &negative, req(1, 1)).1.is_some());
    }

    #[test]
    fn an_unbound_pod_costs_the_most_expensive_node_its_selector_admits() {
        let mut cheap = node("cheap", Some("1"), false);
        cheap.labels.insert("pool".into(), "batch".into());
        let dear = node("dear", Some("4"), false);
        let nodes = vec![cheap, dear];
        let mut p = pod("ns/p", req(2_000, 0), None);
        assert_eq!(pod_cost(&p, &nodes), 1.0, "any node: the dear one");
        p.node_selector.insert("pool".into(), "batch".into());
        assert_eq!(pod_cost(&p, &nodes), 0.25, "only the cheap one admits it");
        p.node_selector.insert("pool".into(), "none".into());
        assert_eq!(pod_cost(&p, &nodes), 1.0, "no node admits it: the dearest");
        p.node = Some("cheap".into());
        assert_eq!(pod_cost(&p, &nodes), 0.25, "bound: its own node");
        assert_eq!(unbound_cost(req(2_000, 0), &BTreeMap::new(), &[]), 0.0);
    }

    #[test]
    fn the_hourly_cost_is_the_sum_of_each_pods_cost_bound_unbound_or_on_an_unknown_node() {
        let nodes = vec![node("a", Some("2"), false), node("s", Some("4"), true)];
        let pods = vec![
            pod("ns/1", req(2_000, 0), Some("a")),    // 2 · 0.25 = 0.5
            pod("ns/2", req(0, 16 * GIB), Some("s")), // 4 · 0.3 · 0.5 = 0.6
            pod("ns/3", req(4_000, 0), None),         // dearest: a at 2 · 0.5 = 1.0 (s: 0.6)
            pod("ns/4", req(4_000, 0), Some("gone")), // as unbound: 1.0
        ];
        let total = hourly_cost(&pods, &nodes);
        assert!((total - 3.1).abs() < 1e-12, "{total}");
        let each: f64 = pods.iter().map(|p| pod_cost(p, &nodes)).sum();
        assert!((total - each).abs() < 1e-12);
    }

    fn inputs(max: f64, active: u32, wanted: u32) -> BudgetInputs {
        let nodes = vec![node("a", None, false), node("b", None, false)];
        let pods = (0..active)
            .map(|i| pod(&format!("ns/w-{i}"), req(2_000, GIB), Some("a")))
            .collect();
        BudgetInputs {
            max_hourly_cost: max,
            agent: "ns/w".into(),
            active,
            wanted,
            replica: NewReplica {
                requests: req(2_000, GIB),
                node_selector: BTreeMap::new(),
            },
            pods,
            nodes,
        }
    }

    #[test]
    fn a_scale_up_is_capped_to_what_the_budget_affords() {
        // Each replica costs 0.25 (2 of 8 cpus of a node at 1/h).
        let table = [
            // (budget, active, wanted) → allowed
            (1.1, 0, 6, 4),
            (1.0, 0, 6, 4),  // exactly four
            (0.99, 0, 6, 3), // just short of four
            (1.1, 2, 6, 4),
            (0.4, 2, 6, 2), // already over budget: no more, none removed
            (10.0, 0, 6, 6),
            (0.0, 0, 3, 0),
        ];
        for (max, active, wanted, allowed) in table {
            let i = inputs(max, active, wanted);
            let out = decide(&i);
            assert_eq!(out.allowed, allowed, "budget {max}, {active} → {wanted}");
            assert_eq!(out.refused(&i), allowed < wanted);
            assert_eq!(out.per_replica_cost, 0.25);
            assert_eq!(out.hourly_cost, 0.25 * active as f64);
        }
    }

    #[test]
    fn a_scale_down_is_never_refused_even_over_budget() {
        let i = inputs(0.1, 4, 2);
        let out = decide(&i);
        assert_eq!(out.allowed, 2);
        assert!(!out.refused(&i));
    }

    #[test]
    fn replicas_that_cost_nothing_are_never_capped() {
        let mut i = inputs(0.0, 0, 5);
        i.replica.requests = req(0, 0);
        assert_eq!(decide(&i).allowed, 5);
        assert_eq!(affordable_replicas(3.0, 0.0, 1.0), None);
        assert_eq!(affordable_replicas(3.0, 1.0, 1.0), Some(0));
    }

    fn capacity(name: &str, cpu_millis: u64, memory_bytes: u64) -> NodeCapacity {
        NodeCapacity {
            node: name.into(),
            cpu_millis,
            memory_bytes,
            cost: 1.0,
        }
    }

    #[test]
    fn the_auction_is_offered_the_cheapest_capacity_the_budget_left_pays_for_and_no_more() {
        // Prices: spot 0.6 (2 × 0.3), a at 1, b at 3; all 8 cpu / 32 GiB.
        let prices = vec![
            node("a", None, false),
            node("b", Some("3"), false),
            node("s", Some("2"), true),
        ];
        let free = vec![
            capacity("a", 8_000, 32 * GIB),
            capacity("b", 8_000, 32 * GIB),
            capacity("s", 8_000, 32 * GIB),
        ];
        // Plenty: everything.
        assert_eq!(affordable_capacity(&free, &prices, 100.0), free);
        // 1.1 pays for s (0.6) and half of a (0.5 of 1.0): b nothing.
        let half = affordable_capacity(&free, &prices, 1.1);
        assert_eq!(
            half,
            vec![capacity("a", 4_000, 16 * GIB), capacity("s", 8_000, 32 * GIB)]
        );
        // A node half taken by others costs half as much to fill: 0.5 pays for what is free of a.
        let taken = vec![capacity("a", 4_000, 16 * GIB)];
        assert_eq!(affordable_capacity(&taken, &prices, 0.5), taken);
        // Nothing left (or less than nothing): nothing offered.
        assert!(affordable_capacity(&free, &prices, 0.0).is_empty());
        assert!(affordable_capacity(&free, &prices, -3.0).is_empty());
        assert!(affordable_capacity(&free, &prices, f64::NAN).is_empty());
    }

    #[test]
    fn filling_the_offered_capacity_with_same_shaped_pods_stays_within_the_budget() {
        let prices = vec![node("a", None, false), node("b", Some("3"), false)];
        let free = vec![capacity("a", 8_000, 32 * GIB), capacity("b", 8_000, 32 * GIB)];
        for budget in [0.3, 1.0, 1.7, 2.5, 3.9] {
            let offered = affordable_capacity(&free, &prices, budget);
            // Pods of 1 cpu / 1 GiB (larger share on cpu) packed into every offered node.
            let cost: f64 = offered
                .iter()
                .map(|n| {
                    let p = prices.iter().find(|p| p.name == n.node).unwrap();
                    (n.cpu_millis / 1_000) as f64 * p.pod_cost(req(1_000, GIB))
                })
                .sum();
            assert!(cost <= budget + 1e-9, "budget {budget}: {cost}");
        }
    }

    #[test]
    fn a_recorded_refusal_replays_to_the_same_outcome_and_a_changed_input_does_not() {
        let mut i = inputs(1.1, 1, 6);
        i.nodes[0].labels.insert("unused".into(), "x".into());
        let i = i.compact();
        assert!(
            i.nodes[0].labels.is_empty(),
            "labels no selector asks for are not recorded"
        );
        let out = decide(&i);
        let record = refusal_record(&i, &out);
        assert_eq!(record["kind"], REFUSED_KIND);
        let stored: Value = serde_json::from_str(&record.to_string()).unwrap();
        assert_eq!(replay(&stored["inputs"]).unwrap(), stored["output"]);
        let mut changed = stored["inputs"].clone();
        changed["maxHourlyCost"] = serde_json::json!(10.0);
        assert_ne!(replay(&changed).unwrap(), stored["output"]);
        assert!(replay(&serde_json::json!({"agent": 1})).is_err());
    }
}
