//! Soft preferences of the prioritize verb: each node gets 0…10 from the MomConfig objective
//! weights, the routing algorithm and current load.
//!
//! Per node m, with every term in [0, 1]:
//! - performance `p(m)`: closeness to the agent's target, shaped by the routing algorithm:
//!   - greedy_forwarding: `p = 1` for the nearest feasible node(s), else `0.5·(1 − d/d_max)`;
//!   - multipath_hyperbolic: the k = max(replicas, 2) nearest nodes get `p = 1 − 0.5·u(m)`
//!     (u = utilisation), so replicas spread over them by load; the rest `0.4·(1 − d/d_max)`;
//!   - gradient_flow: potential `φ(m) = d(target, m) + γ·Σⱼ exp(−d(m, rⱼ))` over the agent's
//!     placed replicas rⱼ (repulsion, γ = 1), `p = 1 − (φ − φ_min)/(φ_max − φ_min)`;
//! - reliability `r = 1 − c(m)/(c_max + 1)`, c = the agent's replicas in m's failure domain;
//! - cost `c = 1 − price/price_max` (spot nodes at 0.3× price); 1 when prices are unknown;
//! - sustainability `s`: energy class A…E → 1, 0.75, 0.5, 0.25, 0; unknown 0.5;
//! - load `l = 1 − max(cpu, memory utilisation after placing the pod)`.
//!
//! `score = round(10·(0.85·(w_p·p + w_r·r + w_c·c + w_s·s) + 0.15·l))`.
//!
//! Preferred data locality (`spec.placement.locality.mode: preferred`) makes two tiers, so a
//! data node wins whenever one is feasible (the extender's weight in the scheduler makes a gap
//! of 2 points outweigh any in-tree score): a node the `dataNodes` selector matches scores
//! `6 + round(4·t)`, any other `round(4·(0.5·n + 0.5·t))`, with `t` the score above divided
//! by 10 and `n = 1 − d/d_max` its closeness to the nearest data node (d: hyperbolic distance
//! to the nearest node the selector matches anywhere in the cluster, d_max: the largest d among
//! the candidates; `n = 0` when no node matches).

use serde::Serialize;

use super::{AgentPolicy, NodeState, Objectives, PodDemand, Routing};
use crate::geometry::poincare;

/// Scores the candidate nodes; the result is sorted by node name. The score of each node is
/// [`NodeScore::score`] of [`score_breakdown`]: both come from one blend, so an explanation
/// cannot drift from it.
pub fn prioritize(
    pod: &PodDemand,
    agent: Option<&AgentPolicy>,
    nodes: &[&NodeState],
    objectives: &Objectives,
    routing: Routing,
    kappa: f64,
) -> Vec<(String, i64)> {
    let scores = node_scores(pod, agent, nodes, objectives, routing, kappa);
    let mut out: Vec<(String, i64)> = nodes
        .iter()
        .zip(scores)
        .map(|(node, (score, _))| (node.name.clone(), score))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Each candidate's `(score, points)` in input order: [`NodeScore::score`] and
/// [`NodeScore::points`] of [`score_breakdown`], without the names, terms and sort it builds
/// (for callers that pick one node, as the cluster twin does for every replica).
pub fn node_scores(
    pod: &PodDemand,
    agent: Option<&AgentPolicy>,
    nodes: &[&NodeState],
    objectives: &Objectives,
    routing: Routing,
    kappa: f64,
) -> Vec<(i64, f64)> {
    let blend = Blend::new(pod, agent, nodes, objectives, routing, kappa);
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let n = blend.node(i, node);
            (n.score, n.points)
        })
        .collect()
}

/// One term of a node's score: its value in [0, 1], its weight in the blend (objective weight
/// × 0.85, or 0.15 for load) and the points it contributes, `10 · weight · value`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreTerm {
    pub name: &'static str,
    pub value: f64,
    pub weight: f64,
    pub points: f64,
}

/// The preferred-data-locality tier of a node (module doc), when the agent has one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataTier {
    /// The `dataNodes` selector matches this node: it scores `6 + round(4·t)`.
    pub data_node: bool,
    /// `n = 1 − d/d_max`, closeness to the nearest data node (used when not a data node).
    pub closeness: f64,
}

/// A node's score and how it is made: the five terms (performance, reliability, cost,
/// sustainability, load) whose points sum to [`NodeScore::points`] (10·the blend before it is
/// clamped to [0, 1]), the data-locality tier, and the integer score the extender answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeScore {
    pub node: String,
    pub terms: Vec<ScoreTerm>,
    /// Σ points of the terms.
    pub points: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_tier: Option<DataTier>,
    /// What prioritize answers for the node (0…10).
    pub score: i64,
}

/// Scores the candidate nodes term by term (module doc); sorted by node name.
pub fn score_breakdown(
    pod: &PodDemand,
    agent: Option<&AgentPolicy>,
    nodes: &[&NodeState],
    objectives: &Objectives,
    routing: Routing,
    kappa: f64,
) -> Vec<NodeScore> {
    let blend = Blend::new(pod, agent, nodes, objectives, routing, kappa);
    let mut out: Vec<NodeScore> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let n = blend.node(i, node);
            NodeScore {
                node: node.name.clone(),
                terms: TERMS
                    .iter()
                    .zip(n.values)
                    .zip(blend.weights)
                    .map(|((&name, value), weight)| ScoreTerm {
                        name,
                        value,
                        weight,
                        points: term_points(value, weight),
                    })
                    .collect(),
                points: n.points,
                data_tier: n.data_tier,
                score: n.score,
            }
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// The terms of the blend, in the order of [`Blend::weights`] and [`NodeScore::terms`].
const TERMS: [&str; 5] = ["performance", "reliability", "cost", "sustainability", "load"];

/// `10 · weight · value`: the points a term contributes.
fn term_points(value: f64, weight: f64) -> f64 {
    10.0 * weight * value
}

/// What one node's blend comes to (module doc).
struct Blended {
    values: [f64; 5],
    points: f64,
    data_tier: Option<DataTier>,
    score: i64,
}

/// The per-candidate terms that depend on the whole candidate set (performance, reliability,
/// the highest price, data closeness), computed once; [`Blend::node`] finishes one node.
struct Blend<'a> {
    pod: &'a PodDemand,
    perf: Vec<f64>,
    reliability: Vec<f64>,
    max_price: f64,
    near_data: Option<(&'a super::LocalityPolicy, Vec<f64>)>,
    weights: [f64; 5],
}

impl<'a> Blend<'a> {
    fn new(
        pod: &'a PodDemand,
        agent: Option<&'a AgentPolicy>,
        nodes: &[&NodeState],
        objectives: &Objectives,
        routing: Routing,
        kappa: f64,
    ) -> Self {
        Self {
            pod,
            perf: performance_terms(agent, nodes, routing, kappa),
            reliability: reliability_terms(agent, nodes),
            max_price: nodes.iter().filter_map(|n| effective_price(n)).fold(0.0_f64, f64::max),
            near_data: agent
                .and_then(|a| a.locality.as_ref())
                .filter(|l| !l.required)
                .map(|l| (l, data_closeness(l, nodes, kappa))),
            weights: [
                0.85 * objectives.performance,
                0.85 * objectives.reliability,
                0.85 * objectives.cost,
                0.85 * objectives.sustainability,
                0.15,
            ],
        }
    }

    /// Candidate `i` (`node`): its term values, their points summed, the data tier and the
    /// integer score.
    fn node(&self, i: usize, node: &NodeState) -> Blended {
        let cost = match effective_price(node) {
            Some(p) if self.max_price > 0.0 => 1.0 - p / self.max_price,
            _ => 1.0,
        };
        let green = match node.energy_class.map(|c| c.to_ascii_uppercase()) {
            Some(c @ 'A'..='E') => 1.0 - f64::from(c as u8 - b'A') * 0.25,
            _ => 0.5,
        };
        let load = 1.0 - utilisation_after(node, self.pod);
        let values = [self.perf[i], self.reliability[i], cost, green, load];
        let points: f64 = values.iter().zip(self.weights).map(|(&v, w)| term_points(v, w)).sum();
        let total = (points / 10.0).clamp(0.0, 1.0);
        let total = if total.is_finite() { total } else { 0.0 };
        let (score, data_tier) = match &self.near_data {
            Some((loc, near)) => {
                let data_node = loc.data_nodes.matches(&node.labels);
                let score = if data_node {
                    6.0 + (4.0 * total).round()
                } else {
                    (4.0 * (0.5 * near[i] + 0.5 * total)).round()
                };
                (
                    score,
                    Some(DataTier {
                        data_node,
                        closeness: near[i],
                    }),
                )
            }
            None => ((10.0 * total).round(), None),
        };
        Blended {
            values,
            points,
            data_tier,
            score: score as i64,
        }
    }
}

/// `1 − d/d_max` per candidate, d = hyperbolic distance to the nearest data node (module doc).
fn data_closeness(loc: &super::LocalityPolicy, nodes: &[&NodeState], kappa: f64) -> Vec<f64> {
    let d: Vec<Option<f64>> = nodes
        .iter()
        .map(|n| {
            loc.data_node_positions
                .iter()
                .filter(|p| p.len() == n.position.len())
                .map(|p| poincare::distance(p, &n.position, kappa))
                .filter(|x| x.is_finite())
                .reduce(f64::min)
        })
        .collect();
    let d_max = d.iter().flatten().copied().fold(0.0_f64, f64::max);
    d.iter()
        .map(|x| match x {
            Some(x) if d_max > 0.0 => 1.0 - x / d_max,
            Some(_) => 1.0,
            None => 0.0,
        })
        .collect()
}

fn effective_price(node: &NodeState) -> Option<f64> {
    let p = node.hourly_cost.filter(|p| p.is_finite() && *p >= 0.0)?;
    Some(if node.spot { p * 0.3 } else { p })
}

fn utilisation(node: &NodeState) -> f64 {
    utilisation_after(node, &PodDemand::default())
}

fn utilisation_after(node: &NodeState, pod: &PodDemand) -> f64 {
    let after = node.requested.saturating_add(pod.requests);
    let frac = |used: u64, cap: u64| {
        if cap == 0 {
            1.0
        } else {
            (used as f64 / cap as f64).min(1.0)
        }
    };
    frac(after.cpu_millis, node.allocatable.cpu_millis).max(frac(after.memory_bytes, node.allocatable.memory_bytes))
}

fn distances(agent: &AgentPolicy, nodes: &[&NodeState], kappa: f64) -> Option<Vec<f64>> {
    if agent.target.is_empty() {
        return None;
    }
    nodes
        .iter()
        .map(|n| {
            (n.position.len() == agent.target.len()).then(|| poincare::distance(&agent.target, &n.position, kappa))
        })
        .collect()
}

fn performance_terms(agent: Option<&AgentPolicy>, nodes: &[&NodeState], routing: Routing, kappa: f64) -> Vec<f64> {
    let neutral = vec![0.5; nodes.len()];
    let Some(agent) = agent else { return neutral };
    let Some(d) = distances(agent, nodes, kappa) else {
        return neutral;
    };
    if nodes.is_empty() {
        return neutral;
    }
    let d_max = d.iter().copied().fold(0.0_f64, f64::max);
    let d_min = d.iter().copied().fold(f64::INFINITY, f64::min);
    let closeness = |x: f64| if d_max > 0.0 { 1.0 - x / d_max } else { 1.0 };
    match routing {
        Routing::GreedyForwarding => d
            .iter()
            .map(|&x| if x <= d_min + 1e-9 { 1.0 } else { 0.5 * closeness(x) })
            .collect(),
        Routing::MultipathHyperbolic => {
            let k = (agent.replicas.max(2) as usize).min(nodes.len());
            let mut order: Vec<usize> = (0..nodes.len()).collect();
            order.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then_with(|| nodes[a].name.cmp(&nodes[b].name)));
            let mut p: Vec<f64> = d.iter().map(|&x| 0.4 * closeness(x)).collect();
            for &i in order.iter().take(k) {
                p[i] = 1.0 - 0.5 * utilisation(nodes[i]);
            }
            p
        }
        Routing::GradientFlow => {
            let phi: Vec<f64> = nodes
                .iter()
                .zip(&d)
                .map(|(n, &x)| {
                    let repulsion: f64 = agent
                        .replica_positions
                        .iter()
                        .filter(|r| r.len() == n.position.len())
                        .map(|r| (-poincare::distance(r, &n.position, kappa)).exp())
                        .sum();
                    x + repulsion
                })
                .collect();
            let lo = phi.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = phi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            phi.iter()
                .map(|&v| if hi > lo { 1.0 - (v - lo) / (hi - lo) } else { 1.0 })
                .collect()
        }
    }
}

fn reliability_terms(agent: Option<&AgentPolicy>, nodes: &[&NodeState]) -> Vec<f64> {
    let Some(agent) = agent else {
        return vec![1.0; nodes.len()];
    };
    let Some(label) = &agent.spread_label else {
        return vec![1.0; nodes.len()];
    };
    if agent.replicas_by_domain.is_empty() {
        // Every c(m) is 0: r = 1 − 0/1 everywhere, without looking up each node's domain.
        return vec![1.0; nodes.len()];
    }
    let counts: Vec<u32> = nodes
        .iter()
        .map(|n| {
            let domain = n.labels.get(label).map(String::as_str).unwrap_or("");
            agent.replicas_by_domain.get(domain).copied().unwrap_or(0)
        })
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&c| 1.0 - f64::from(c) / f64::from(max + 1))
        .collect()
}

/// Order in which to remove replicas on scale-down: farthest from the target first (ties by
/// name, descending, so the newest-looking generated names go first). Input: (pod, position).
pub fn scale_down_order(replicas: &[(String, Option<Vec<f64>>)], target: &[f64], kappa: f64) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = replicas
        .iter()
        .map(|(name, pos)| {
            let d = match pos {
                // Unplaced replicas go first: they serve nobody yet.
                None => f64::INFINITY,
                Some(p) if p.len() == target.len() && !target.is_empty() => poincare::distance(target, p, kappa),
                Some(_) => 0.0,
            };
            (d, name.as_str())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(a.1)));
    scored.into_iter().map(|(_, n)| n.to_string()).collect()
}
