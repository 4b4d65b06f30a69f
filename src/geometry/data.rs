//! Loaders for the measured data sets: NetLatency RTT matrices (tab-separated, 0 = not
//! measured) and TopoHub node-link JSON graphs (edge `dist` in km → delay km/200 ms).
//! Inputs: a path or the file text; outputs: [`RttMatrix`] and [`Graph`]. Missing values are
//! handled here at load time; the files are never modified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::GeometryError;

/// The data directory: `$MOM_DATA_DIR`, else `<crate>/../shared/data`.
pub fn data_dir() -> PathBuf {
    std::env::var("MOM_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

/// Most nodes a latency matrix or a topology may declare: the geometry commands compute
/// all-pairs delays (n² entries, 800 MB at this limit), and the shared data's largest matrix has
/// 490 rows and its largest topology 143 nodes.
pub const MAX_NODES: usize = 10_000;

/// A square RTT matrix; `None` where not measured (a 0 off the diagonal in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct RttMatrix {
    pub n: usize,
    /// Row-major, `n*n` entries; the diagonal is `None`.
    pub rtt: Vec<Option<f64>>,
}

impl RttMatrix {
    /// Entry (i, j), `None` if not measured or out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<f64> {
        if i >= self.n || j >= self.n {
            return None;
        }
        self.rtt[i * self.n + j]
    }

    /// Measured ordered pairs `(i, j, rtt)` with i ≠ j, row-major order.
    pub fn measured_pairs(&self) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        for i in 0..self.n {
            for j in 0..self.n {
                if let Some(v) = self.rtt[i * self.n + j] {
                    out.push((i, j, v));
                }
            }
        }
        out
    }

    /// Symmetrised, one entry per unordered pair: (i, j) with i < j holds the mean of the
    /// measured values of (i, j) and (j, i); the lower triangle is `None`. Use it to score
    /// symmetric models on unordered pairs (no pair can then sit in both train and test).
    pub fn symmetrized(&self) -> RttMatrix {
        let n = self.n;
        let mut rtt = vec![None; n * n];
        for i in 0..n {
            for j in (i + 1)..n {
                let v: Vec<f64> = [self.rtt[i * n + j], self.rtt[j * n + i]]
                    .into_iter()
                    .flatten()
                    .collect();
                if !v.is_empty() {
                    rtt[i * n + j] = Some(v.iter().sum::<f64>() / v.len() as f64);
                }
            }
        }
        RttMatrix { n, rtt }
    }

    /// The top-left `k×k` sub-matrix (for quick tests).
    pub fn submatrix(&self, k: usize) -> RttMatrix {
        let k = k.min(self.n);
        let mut rtt = Vec::with_capacity(k * k);
        for i in 0..k {
            rtt.extend_from_slice(&self.rtt[i * self.n..i * self.n + k]);
        }
        RttMatrix { n: k, rtt }
    }
}

/// Parse a NetLatency matrix: whitespace-separated rows of equal length, as many rows as
/// columns; 0, negative or non-finite entries off the diagonal are "not measured".
pub fn parse_rtt_matrix(text: &str, origin: &str) -> Result<RttMatrix, GeometryError> {
    parse_rtt_matrix_capped(text, origin, MAX_NODES)
}

/// [`parse_rtt_matrix`] refusing more than `max_nodes` rows (a parameter so tests need no
/// 200 MB matrix).
fn parse_rtt_matrix_capped(text: &str, origin: &str, max_nodes: usize) -> Result<RttMatrix, GeometryError> {
    let rows: Vec<Vec<f64>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(r, l)| {
            l.split_whitespace()
                .enumerate()
                .map(|(c, t)| {
                    t.parse::<f64>().map_err(|e| GeometryError::Parse {
                        path: origin.to_string(),
                        reason: format!("row {}, column {}: `{t}`: {e}", r + 1, c + 1),
                    })
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let n = rows.len();
    if n == 0 {
        return Err(GeometryError::Parse {
            path: origin.to_string(),
            reason: "no rows".into(),
        });
    }
    // Every row is checked before the n×n matrix is allocated: n one-column rows must not
    // allocate n² entries.
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != n) {
        return Err(GeometryError::Parse {
            path: origin.to_string(),
            reason: format!("row {} has {} columns, expected {n}", i + 1, row.len()),
        });
    }
    if n > max_nodes {
        return Err(GeometryError::Parse {
            path: origin.to_string(),
            reason: format!("{n} rows, more than the limit of {max_nodes} nodes"),
        });
    }
    let mut rtt = Vec::with_capacity(n * n);
    for (i, row) in rows.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            rtt.push((i != j && v.is_finite() && *v > 0.0).then_some(*v));
        }
    }
    Ok(RttMatrix { n, rtt })
}

/// Read and parse a NetLatency matrix file.
pub fn load_rtt_matrix(path: &Path) -> Result<RttMatrix, GeometryError> {
    let text = crate::bounded_input::read_to_string(path, crate::bounded_input::MAX_DOCUMENT_BYTES).map_err(|e| {
        GeometryError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    parse_rtt_matrix(&text, &path.display().to_string())
}

/// An undirected weighted graph (edge weight = one-way delay in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub name: String,
    /// Node ids as given in the file, index = node number.
    pub ids: Vec<String>,
    /// Adjacency: `(neighbour, delay_ms)`, sorted by neighbour; parallel edges keep the
    /// shortest, self-loops are dropped.
    pub adj: Vec<Vec<(usize, f64)>>,
}

impl Graph {
    pub fn node_count(&self) -> usize {
        self.ids.len()
    }
}

#[derive(serde::Deserialize)]
struct NodeLink {
    #[serde(default)]
    graph: serde_json::Value,
    nodes: Vec<NodeLinkNode>,
    #[serde(alias = "links")]
    edges: Vec<NodeLinkEdge>,
}
#[derive(serde::Deserialize)]
struct NodeLinkNode {
    id: serde_json::Value,
}
#[derive(serde::Deserialize)]
struct NodeLinkEdge {
    source: serde_json::Value,
    target: serde_json::Value,
    dist: Option<f64>,
}

fn id_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parse networkx node-link JSON (`nodes[].id`, `edges[]` or `links[]` with `source`,
/// `target`, `dist` km). Delay = dist/200 ms. Errors: bad JSON, an edge naming an unknown
/// node, a missing/negative/non-finite `dist`.
pub fn parse_node_link(text: &str, origin: &str) -> Result<Graph, GeometryError> {
    parse_node_link_capped(text, origin, MAX_NODES)
}

/// [`parse_node_link`] refusing more than `max_nodes` nodes.
fn parse_node_link_capped(text: &str, origin: &str, max_nodes: usize) -> Result<Graph, GeometryError> {
    let nl: NodeLink = serde_json::from_str(text).map_err(|e| GeometryError::Parse {
        path: origin.to_string(),
        reason: e.to_string(),
    })?;
    if nl.nodes.len() > max_nodes {
        return Err(GeometryError::Parse {
            path: origin.to_string(),
            reason: format!("{} nodes, more than the limit of {max_nodes}", nl.nodes.len()),
        });
    }
    let ids: Vec<String> = nl.nodes.iter().map(|n| id_string(&n.id)).collect();
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut adj: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); ids.len()];
    for (k, e) in nl.edges.iter().enumerate() {
        let find = |v: &serde_json::Value| {
            let s = id_string(v);
            index.get(s.as_str()).copied().ok_or_else(|| GeometryError::Parse {
                path: origin.to_string(),
                reason: format!("edge {k} names unknown node `{s}`"),
            })
        };
        let (a, b) = (find(&e.source)?, find(&e.target)?);
        let dist = match e.dist {
            Some(d) if d.is_finite() && d >= 0.0 => d,
            other => {
                return Err(GeometryError::Parse {
                    path: origin.to_string(),
                    reason: format!("edge {k} has invalid `dist` {other:?}"),
                });
            }
        };
        if a == b {
            continue;
        }
        let delay = dist / 200.0;
        for (x, y) in [(a, b), (b, a)] {
            let slot = adj[x].entry(y).or_insert(delay);
            *slot = slot.min(delay);
        }
    }
    let name = nl
        .graph
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(origin)
        .to_string();
    Ok(Graph {
        name,
        ids,
        adj: adj.into_iter().map(|m| m.into_iter().collect()).collect(),
    })
}

/// Read and parse a TopoHub graph file.
pub fn load_node_link(path: &Path) -> Result<Graph, GeometryError> {
    let text = crate::bounded_input::read_to_string(path, crate::bounded_input::MAX_DOCUMENT_BYTES).map_err(|e| {
        GeometryError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    parse_node_link(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_off_the_diagonal_are_read_as_not_measured() {
        let m = parse_rtt_matrix("0\t1.5\t0\n2\t0\t3\n0.5\t0\t0\n", "t").unwrap();
        assert_eq!(m.n, 3);
        assert_eq!(m.get(0, 1), Some(1.5));
        assert_eq!(m.get(0, 2), None);
        assert_eq!(m.get(1, 1), None);
        assert_eq!(m.measured_pairs().len(), 4);
        let s = m.symmetrized();
        assert_eq!(s.get(0, 1), Some(1.75));
        assert_eq!(s.get(0, 2), Some(0.5));
        assert_eq!(s.get(1, 0), None);
        assert_eq!(s.measured_pairs().len(), 3);
    }

    #[test]
    fn ragged_or_non_numeric_matrices_are_rejected_with_the_position() {
        let err = parse_rtt_matrix("0 1\n1\n", "m.txt").unwrap_err();
        assert!(err.to_string().contains("row 2"), "{err}");
        let err = parse_rtt_matrix("0 x\n1 0\n", "m.txt").unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
        assert!(parse_rtt_matrix("", "m.txt").is_err());
    }

    #[test]
    fn a_matrix_with_more_rows_than_the_node_limit_is_refused_naming_the_limit() {
        let square = |n: usize| vec![vec!["1"; n].join(" "); n].join("\n");
        assert_eq!(parse_rtt_matrix_capped(&square(3), "m.txt", 3).unwrap().n, 3);
        let err = parse_rtt_matrix_capped(&square(4), "m.txt", 3).unwrap_err();
        assert!(err.to_string().contains("m.txt"), "{err}");
        assert!(
            err.to_string().contains("4 rows, more than the limit of 3 nodes"),
            "{err}"
        );
    }

    #[test]
    fn a_topology_with_more_nodes_than_the_limit_is_refused_naming_the_limit() {
        let doc = |n: usize| {
            let nodes: Vec<_> = (0..n).map(|i| serde_json::json!({"id": i})).collect();
            serde_json::json!({"nodes": nodes, "edges": []}).to_string()
        };
        assert_eq!(parse_node_link_capped(&doc(3), "g.json", 3).unwrap().node_count(), 3);
        let err = parse_node_link_capped(&doc(4), "g.json", 3).unwrap_err();
        assert!(err.to_string().contains("g.json"), "{err}");
        assert!(err.to_string().contains("4 nodes, more than the limit of 3"), "{err}");
    }

    #[test]
    fn node_link_edges_become_delays_of_km_over_200() {
        let g = parse_node_link(
            r#"{"graph":{"name":"g"},"nodes":[{"id":"0"},{"id":"1"},{"id":"2"}],
               "edges":[{"source":"0","target":"1","dist":400.0},{"source":"1","target":"2","dist":20}]}"#,
            "g.json",
        )
        .unwrap();
        assert_eq!(g.name, "g");
        assert_eq!(g.adj[0], vec![(1, 2.0)]);
        assert_eq!(g.adj[1], vec![(0, 2.0), (2, 0.1)]);
    }

    #[test]
    fn node_link_with_an_unknown_node_is_rejected() {
        let err = parse_node_link(
            r#"{"nodes":[{"id":"0"}],"edges":[{"source":"0","target":"7","dist":1}]}"#,
            "g.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`7`"), "{err}");
    }

    #[test]
    fn the_real_data_sets_load() {
        let dir = data_dir();
        let m = load_rtt_matrix(&dir.join("NetLatency/PlanetLab/PlanetLabData_1")).unwrap();
        assert_eq!(m.n, 490);
        let g = load_node_link(&dir.join("TopoHub/topozoo/Abilene.json")).unwrap();
        assert!(g.node_count() > 5);
    }
}
