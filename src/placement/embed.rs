//! Node positions in the ball from topology labels: the label path of each node
//! (e.g. region → zone → rack → hostname) forms a hierarchy, embedded by Sarkar's construction.
//!
//! The edge length is capped so that the deepest leaf stays within hyperbolic radius 30 of the
//! origin, where plain f64 ball coordinates are exact enough (DESIGN §3); distances between
//! nodes then follow the hierarchy (same rack < same zone < same region < elsewhere).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::GeometryError;
use crate::geometry::tree::{SarkarConfig, TreeEmbedding};

/// Positions of nodes, with the embedding's quality against the exact tree metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEmbedding {
    /// Poincaré-disk coordinates (κ = 1) per node name.
    pub positions: BTreeMap<String, Vec<f64>>,
    /// Worst-case distortion of the embedded distances against the tree metric.
    pub max_distortion: f64,
    /// Hyperbolic length of one tree edge.
    pub edge_length: f64,
}

/// Largest hyperbolic radius of a leaf (see the module doc).
const MAX_LEAF_RADIUS: f64 = 30.0;

/// Embeds nodes by their topology labels. A node missing a key gets the value `""` for it, so it
/// still has a place (next to its siblings with the same gap). `nodes` maps name → labels.
pub fn embed_nodes(
    nodes: &BTreeMap<String, BTreeMap<String, String>>,
    topology_keys: &[String],
) -> Result<NodeEmbedding, GeometryError> {
    if nodes.is_empty() {
        return Ok(NodeEmbedding {
            positions: BTreeMap::new(),
            max_distortion: 1.0,
            edge_length: 0.0,
        });
    }
    let paths: Vec<Vec<String>> = nodes
        .iter()
        .map(|(name, labels)| {
            let mut path: Vec<String> = topology_keys
                .iter()
                .filter(|k| k.as_str() != crate::cluster_layout::HOSTNAME_LABEL)
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
    let mut positions = BTreeMap::new();
    for (i, name) in nodes.keys().enumerate() {
        if let Some(p) = emb.leaf_point(i) {
            positions.insert(name.clone(), p);
        }
    }
    let quality = emb.evaluate(64);
    Ok(NodeEmbedding {
        positions,
        max_distortion: quality.max_distortion,
        edge_length,
    })
}
