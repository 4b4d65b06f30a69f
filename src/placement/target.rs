//! An agent's target point in the ball, from its placement affinity.
//!
//! First rule that applies:
//! 1. explicit coordinates in the strategy, when they have the embedding's dimension (others
//!    are reported as `CoordinatesWrongDimension` and skipped here);
//! 2. the weighted Fréchet mean of its peers' placed replicas (weight = peer weight, split over
//!    the peer's replicas) together with the nodes it should be near;
//! 3. the mean position of the nodes of the first listed preferred region that has nodes;
//! 4. the mean of its own placed replicas (stay together);
//! 5. its previous target (so a new agent's home does not drift while its first replicas are
//!    still being scheduled);
//! 6. the node with the most free CPU — a deterministic home for a new group. Ties go to the
//!    node ranked first for the agent's group (`home_key`) by rendezvous hashing (the largest
//!    [`rendezvous`] weight of the key and the node's name), so groups created together get
//!    homes of their own rather than all the same node, and every agent of one group the same;
//!    without a group key, ties go to the smallest name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::poincare;

/// Everything the target depends on, gathered by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetInputs {
    pub explicit: Option<Vec<f64>>,
    /// Dimension nodes are embedded in; explicit coordinates of another length are skipped
    /// (0: unknown, explicit coordinates are used as given).
    pub dimension: usize,
    /// (weight, positions of that peer's placed replicas).
    pub peers: Vec<(f64, Vec<Vec<f64>>)>,
    /// Positions of nodes matched by the strategy's `nearNodes` selector.
    pub near_nodes: Vec<Vec<f64>>,
    /// Positions of the nodes of the first listed preferred region that has nodes.
    pub preferred_region_nodes: Vec<Vec<f64>>,
    /// Positions of the agent's own placed replicas.
    pub own_replicas: Vec<Vec<f64>>,
    /// The target computed last time, if any.
    pub previous: Option<Vec<f64>>,
    /// (free CPU millis, node name, position) of every schedulable node.
    pub free_capacity: Vec<(u64, String, Vec<f64>)>,
    /// The agent's peer group, as one name for it (the operator's: `namespace/first agent of
    /// its first-placement order`); rule 6 breaks ties by it. `None`: an agent without peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_key: Option<String>,
}

/// The agents whose placed replicas rule 2 follows, by name, with their weights: the agent's
/// peers, then each of its strategy's `nearAgents` that is not already a peer, at weight 1.
pub fn followed_agents(
    peers: impl IntoIterator<Item = (String, f64)>,
    near_agents: &[String],
) -> BTreeMap<String, f64> {
    let mut followed: BTreeMap<String, f64> = peers.into_iter().collect();
    for a in near_agents {
        followed.entry(a.clone()).or_insert(1.0);
    }
    followed
}

/// The target point; `None` only when there is nothing at all to anchor to (no nodes).
pub fn agent_target(inputs: &TargetInputs, kappa: f64) -> Option<Vec<f64>> {
    if let Some(x) = &inputs.explicit
        && (inputs.dimension == 0 || x.len() == inputs.dimension)
    {
        return Some(poincare::project(x, kappa));
    }
    let mut points = Vec::new();
    let mut weights = Vec::new();
    for (w, replicas) in &inputs.peers {
        if *w > 0.0 && w.is_finite() && !replicas.is_empty() {
            let each = w / replicas.len() as f64;
            for r in replicas {
                points.push(r.clone());
                weights.push(each);
            }
        }
    }
    for n in &inputs.near_nodes {
        points.push(n.clone());
        weights.push(1.0);
    }
    if let Some(m) = mean(&points, &weights, kappa) {
        return Some(m);
    }
    for group in [&inputs.preferred_region_nodes, &inputs.own_replicas] {
        let w = vec![1.0; group.len()];
        if let Some(m) = mean(group, &w, kappa) {
            return Some(m);
        }
    }
    if let Some(p) = &inputs.previous {
        return Some(poincare::project(p, kappa));
    }
    let most = inputs.free_capacity.iter().map(|(free, ..)| *free).max()?;
    let tied = inputs.free_capacity.iter().filter(|(free, ..)| *free == most);
    match &inputs.home_key {
        Some(key) => tied.max_by_key(|(_, name, _)| (rendezvous(key, name), std::cmp::Reverse(name.as_str()))),
        None => tied.min_by(|a, b| a.1.cmp(&b.1)),
    }
    .map(|(_, _, p)| p.clone())
}

/// Rendezvous weight of `node` for the group `key`: 64-bit FNV-1a over the key's bytes, a zero
/// byte and the node's name, then MurmurHash3's 64-bit finaliser (FNV alone barely mixes its
/// last bytes, and names differ mostly there). Fixed by its definition, so homes replay across
/// builds and machines.
fn rendezvous(key: &str, node: &str) -> u64 {
    let mut h = crate::stable_hash::fnv1a(key.bytes().chain(std::iter::once(0)).chain(node.bytes()));
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn mean(points: &[Vec<f64>], weights: &[f64], kappa: f64) -> Option<Vec<f64>> {
    if points.is_empty() {
        return None;
    }
    poincare::frechet_mean(points, weights, kappa).ok()
}
