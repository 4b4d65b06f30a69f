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
//! 6. the node with the most free CPU (ties: name) — a deterministic home for a new group.

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
    inputs
        .free_capacity
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
        .map(|(_, _, p)| p.clone())
}

fn mean(points: &[Vec<f64>], weights: &[f64], kappa: f64) -> Option<Vec<f64>> {
    if points.is_empty() {
        return None;
    }
    poincare::frechet_mean(points, weights, kappa).ok()
}
