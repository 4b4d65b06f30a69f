//! Node positions in the ball from topology labels: the label path of each node
//! (e.g. region → zone → rack → hostname) forms a hierarchy, embedded by Sarkar's construction
//! in the requested dimension (`TreeEmbedding::ball_points`: siblings spread over the sphere,
//! so more dimensions mean wider angles between siblings and less distortion at the same edge
//! length).
//!
//! The edge length is capped so that the deepest leaf stays within hyperbolic radius 30 of the
//! origin, inside the ≈ 35 that f64 ball coordinates hold (DESIGN §3). Placement needs plain
//! coordinates (targets are Fréchet means of arbitrary points). At radius 30, `1 − ‖x‖²` ≈ 4·10⁻¹³
//! carries ~3 good digits, and since distances enter through `arcosh`, that is an absolute error
//! below 10⁻³ — far below the gap between hierarchy levels. Shorter edges would not help: Sarkar
//! needs long edges to separate siblings, and at radius 20 the level order already breaks for
//! 40-node racks (the tests check the order for narrow and wide layouts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::GeometryError;
use crate::geometry::tree::{SarkarConfig, TreeEmbedding};

/// Positions of nodes, with the embedding's quality against the exact tree metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEmbedding {
    /// Poincaré-ball coordinates (κ = 1) per node name, `dimension` of them each.
    pub positions: BTreeMap<String, Vec<f64>>,
    /// Number of coordinates of every position.
    #[serde(default = "two")]
    pub dimension: usize,
    /// Worst-case distortion of the embedded distances against the tree metric.
    pub max_distortion: f64,
    /// Mean relative distortion `|d_ball − τ·d_tree| / (τ·d_tree)` over measured pairs of
    /// points of the topology tree (nodes and the region/zone/rack points above them), with
    /// `d_ball` the ball distance between the coordinates placement uses.
    pub avg_distortion: f64,
    /// Mean average precision of tree neighbourhoods ranked by embedded distance.
    pub map: f64,
    /// Hyperbolic length of one tree edge.
    pub edge_length: f64,
}

fn two() -> usize {
    2
}

/// Largest hyperbolic radius of a leaf (see the module doc).
const MAX_LEAF_RADIUS: f64 = 30.0;

/// Embeds nodes by their topology labels in `dimension` coordinates (< 2 is read as 2). A node
/// missing a key gets the value `""` for it, so it still has a place (next to its siblings with
/// the same gap). `nodes` maps name → labels. Quality is measured from at most 64 evenly spaced
/// tree points against every other; cost O(N·dimension) for the positions and
/// O(64·N·dimension) for the quality.
pub fn embed_nodes(
    nodes: &BTreeMap<String, BTreeMap<String, String>>,
    topology_keys: &[String],
    dimension: usize,
) -> Result<NodeEmbedding, GeometryError> {
    let dimension = dimension.max(2);
    if nodes.is_empty() {
        return Ok(NodeEmbedding {
            dimension,
            positions: BTreeMap::new(),
            max_distortion: 1.0,
            avg_distortion: 0.0,
            map: 1.0,
            edge_length: 0.0,
        });
    }
    let paths: Vec<Vec<String>> = nodes
        .iter()
        .map(|(name, labels)| {
            let mut path: Vec<String> = topology_keys
                .iter()
                .filter(|k| k.as_str() != crate::labels::HOSTNAME_LABEL)
                .map(|k| labels.get(k).cloned().unwrap_or_default())
                .collect();
            path.push(format!("node/{name}"));
            path
        })
        .collect();
    let depth = paths.first().map(Vec::len).unwrap_or(1) as f64;
    let probe = TreeEmbedding::from_paths(&paths, SarkarConfig::default())?;
    let edge_length = probe.tau().min(MAX_LEAF_RADIUS / depth);
    let emb = TreeEmbedding::from_paths(
        &paths,
        SarkarConfig {
            epsilon: 0.1,
            edge_length: Some(edge_length),
        },
    )?;
    let points = emb.ball_points(dimension);
    let mut positions = BTreeMap::new();
    for (i, name) in nodes.keys().enumerate() {
        if let Some(p) = emb.leaf_node(i).and_then(|v| points.get(v)) {
            positions.insert(name.clone(), p.clone());
        }
    }
    let quality = emb.evaluate_points(&points, 64);
    Ok(NodeEmbedding {
        dimension,
        positions,
        max_distortion: quality.max_distortion,
        avg_distortion: quality.avg_distortion,
        map: quality.map,
        edge_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_layout::UniformLayout;
    use crate::geometry::poincare;
    use crate::labels::{HOSTNAME_LABEL, RACK_LABEL, REGION_LABEL, ZONE_LABEL};

    fn ordering_holds(layout: UniformLayout, keys: &[&str]) {
        for dimension in [2, 8, 64] {
            ordering_holds_in(layout.clone(), keys, dimension);
        }
    }

    fn ordering_holds_in(layout: UniformLayout, keys: &[&str], dimension: usize) {
        let nodes = layout.nodes().unwrap();
        let labels: BTreeMap<String, BTreeMap<String, String>> =
            nodes.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let emb = embed_nodes(&labels, &keys, dimension).unwrap();
        assert_eq!(emb.dimension, dimension);
        assert!(emb.positions.values().all(|p| p.len() == dimension));
        // Number of leading hierarchy levels two nodes share (higher = closer in the tree).
        let common = |a: &str, b: &str| {
            keys.iter()
                .filter(|k| k.as_str() != HOSTNAME_LABEL)
                .take_while(|k| labels[a].get(*k) == labels[b].get(*k))
                .count()
        };
        let names: Vec<&String> = labels.keys().collect();
        let probe: Vec<&String> = names.iter().step_by((names.len() / 7).max(1)).copied().collect();
        for a in &probe {
            let pa = &emb.positions[*a];
            let mut by_level: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
            for b in &names {
                if a == b {
                    continue;
                }
                let d = poincare::distance(pa, &emb.positions[*b], 1.0);
                assert!(d.is_finite() && d > 0.0);
                let e = by_level.entry(common(a, b)).or_insert((f64::INFINITY, 0.0));
                e.0 = e.0.min(d);
                e.1 = e.1.max(d);
            }
            let levels: Vec<&(f64, f64)> = by_level.values().collect();
            for w in levels.windows(2) {
                // Every node sharing fewer levels is farther than every node sharing more.
                assert!(w[0].0 > w[1].1, "{a}: level order broken: {by_level:?}");
            }
        }
    }

    #[test]
    fn embedded_distances_keep_the_hierarchy_order_for_wide_and_deep_layouts() {
        let four = [REGION_LABEL, ZONE_LABEL, RACK_LABEL, HOSTNAME_LABEL];
        let three = [REGION_LABEL, ZONE_LABEL, HOSTNAME_LABEL];
        let small = UniformLayout {
            regions: 2,
            zones_per_region: 3,
            racks_per_zone: 1,
            nodes_per_rack: 2,
            ..Default::default()
        };
        ordering_holds(small.clone(), &three);
        ordering_holds(small, &four);
        let wide = UniformLayout {
            regions: 3,
            zones_per_region: 4,
            racks_per_zone: 4,
            nodes_per_rack: 40,
            ..Default::default()
        };
        ordering_holds(wide.clone(), &four);
        ordering_holds(wide, &three);
    }

    #[test]
    fn more_dimensions_lower_the_distortion_of_a_wide_layout_and_positions_have_that_many_coordinates() {
        let wide = UniformLayout {
            regions: 3,
            zones_per_region: 4,
            racks_per_zone: 4,
            nodes_per_rack: 40,
            ..Default::default()
        };
        let nodes = wide.nodes().unwrap();
        let labels: BTreeMap<String, BTreeMap<String, String>> =
            nodes.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
        let keys: Vec<String> = [REGION_LABEL, ZONE_LABEL, RACK_LABEL, HOSTNAME_LABEL]
            .iter()
            .map(|k| k.to_string())
            .collect();
        let at = |d: usize| embed_nodes(&labels, &keys, d).unwrap();
        let (two, eight, many) = (at(2), at(8), at(64));
        // Measured: mean 0.091 → 0.067 → 0.061, worst-case 1.61 → 1.24 → 1.08 (40 nodes a rack).
        assert!(
            eight.avg_distortion < 0.8 * two.avg_distortion,
            "{} vs {}",
            eight.avg_distortion,
            two.avg_distortion
        );
        assert!(many.avg_distortion <= eight.avg_distortion + 1e-9);
        assert!(two.max_distortion - eight.max_distortion > 0.3 && eight.max_distortion - many.max_distortion > 0.1);
        assert!(
            many.positions
                .values()
                .all(|p| p.len() == 64 && p.iter().all(|c| c.is_finite()))
        );
        // Deterministic: the same input gives the same bytes.
        assert_eq!(at(64), many);
    }
}
