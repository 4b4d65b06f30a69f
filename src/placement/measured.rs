//! Measured node-to-node latencies → node positions (MomConfig `spec.geometry.latencySource`).
//!
//! Input: latencies in milliseconds as `from → to → ms` (a ConfigMap key holding
//! `{"from": {"to": ms}}`, or one node annotation per node holding `{"to": ms}`), the nodes with
//! their topology labels, the topology keys, the dimension, and the previous fit (if any).
//! Output: either a [`LatencyFit`] (a position per node, fitted so that
//! `s·d_ball(xᵢ, xⱼ) ≈ rtt(i, j)`, with its error on held-out pairs), or the problems that
//! keep the input from being used, each naming the entry and its value.
//!
//! **Rules.** A value must be a JSON number of milliseconds in (0, [`MAX_RTT_MS`]]; entries
//! naming a node that does not exist are ignored (nodes come and go; they are counted); the
//! diagonal is ignored. Both directions of a pair are averaged. Every node must have measured
//! latencies to at least `min(2, nodes − 1)` other nodes, and there must be at least 3 pairs;
//! otherwise the input is partial and not used. At most [`MAX_FIT_NODES`] nodes.
//!
//! **Fit.** The pairs are split by a seeded shuffle (seed 1): 20% held out (at least one pair),
//! the rest fitted by `latency::fit_hyperbolic_from` (curvature −1 hyperboloid in `dimension`
//! dimensions, fitted scale s, no per-node heights: placement sees only distances). The start
//! is the previous fit for nodes it had (incremental: [`WARM_EPOCHS`] epochs) and, for the
//! others, the label hierarchy embedded with short edges ([`START_EDGE_LENGTH`]), so nodes
//! without contrary measurements keep their label neighbourhoods ([`COLD_EPOCHS`] epochs).
//! The held-out error is the median and 90th percentile of `|s·d − rtt| / rtt` over the
//! held-out pairs; the positions placement uses then come from that fit continued on every
//! pair ([`WARM_EPOCHS`] more epochs), so no measurement is left out of placement.
//! Deterministic: same input, same bytes.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::geometry::latency::{self, HyperbolicConfig, Sample};
use crate::geometry::tree::{SarkarConfig, TreeEmbedding};

/// Largest accepted latency (one minute).
pub const MAX_RTT_MS: f64 = 60_000.0;
/// Most nodes the operator fits latencies for (the fit is O(pairs·dimension) per epoch).
pub const MAX_FIT_NODES: usize = 1000;
/// Epochs of a fit from the label layout.
pub const COLD_EPOCHS: usize = 800;
/// Epochs of a fit continuing the previous one.
pub const WARM_EPOCHS: usize = 250;
/// Edge length of the label hierarchy the first fit starts from.
pub const START_EDGE_LENGTH: f64 = 0.5;

/// Latencies as given: from → to → milliseconds.
pub type LatencyRows = BTreeMap<String, BTreeMap<String, f64>>;

/// A fit of measured latencies, with its held-out error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyFit {
    /// Poincaré-ball coordinates (κ = 1) per node, `dimension` each.
    pub positions: BTreeMap<String, Vec<f64>>,
    /// Hyperboloid points per node (the start of the next, incremental fit).
    pub points: BTreeMap<String, Vec<f64>>,
    pub dimension: usize,
    /// Milliseconds per unit of hyperbolic distance.
    pub ms_per_unit: f64,
    /// Node pairs measured (after averaging both directions).
    pub pairs: usize,
    /// Pairs held out of the fit and scored.
    pub held_out_pairs: usize,
    /// Median of |s·d − rtt| / rtt over the held-out pairs.
    pub held_out_median_relative_error: f64,
    /// 90th percentile of the same.
    pub held_out_p90_relative_error: f64,
    /// Whether this fit continued the previous one.
    pub incremental: bool,
    /// Entries naming nodes that do not exist (ignored).
    pub ignored_entries: usize,
}

/// Why latencies cannot be used, naming where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyProblem {
    /// Not JSON of the promised shape (`what` says where).
    Malformed(String),
    /// A value that is not a latency in milliseconds.
    BadValue { from: String, to: String, value: String },
    /// Nodes without enough measurements, or too few pairs.
    Partial(String),
    /// More nodes than the fit handles.
    TooLarge(usize),
}

impl LatencyProblem {
    /// A condition reason for the problem.
    pub fn reason(&self) -> &'static str {
        match self {
            LatencyProblem::Malformed(_) => "LatencyMalformed",
            LatencyProblem::BadValue { .. } => "LatencyValueInvalid",
            LatencyProblem::Partial(_) => "LatencyPartial",
            LatencyProblem::TooLarge(_) => "LatencyTooLarge",
        }
    }
}

impl std::fmt::Display for LatencyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LatencyProblem::Malformed(m) => write!(f, "{m}"),
            LatencyProblem::BadValue { from, to, value } => write!(
                f,
                "latency {from:?} → {to:?} is {value}: it must be a number of milliseconds in (0, {MAX_RTT_MS}]"
            ),
            LatencyProblem::Partial(m) => write!(f, "{m}"),
            LatencyProblem::TooLarge(n) => {
                write!(f, "{n} nodes: latencies are fitted for at most {MAX_FIT_NODES} nodes")
            }
        }
    }
}

fn value_ms(from: &str, to: &str, v: &serde_json::Value) -> Result<f64, LatencyProblem> {
    let bad = || LatencyProblem::BadValue {
        from: from.to_string(),
        to: to.to_string(),
        value: truncate(&v.to_string()),
    };
    let x = v.as_f64().ok_or_else(bad)?;
    if x.is_finite() && x > 0.0 && x <= MAX_RTT_MS {
        Ok(x)
    } else {
        Err(bad())
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}…", s.chars().take(64).collect::<String>())
    } else {
        s.to_string()
    }
}

/// One node's latencies `{"to": ms}` (a node annotation's value); `what` names the source in
/// messages. The diagonal (`to` = `from`) may be 0.
pub fn parse_row(from: &str, text: &str, what: &str) -> Result<BTreeMap<String, f64>, LatencyProblem> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LatencyProblem::Malformed(format!("{what} is not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        LatencyProblem::Malformed(format!(
            "{what} must be a JSON object {{\"node\": milliseconds}}, got {}",
            truncate(&v.to_string())
        ))
    })?;
    let mut row = BTreeMap::new();
    for (to, value) in obj {
        if to == from {
            continue;
        }
        row.insert(to.clone(), value_ms(from, to, value)?);
    }
    Ok(row)
}

/// A whole matrix `{"from": {"to": ms}}` (a ConfigMap key's value); `what` names the source.
pub fn parse_matrix(text: &str, what: &str) -> Result<LatencyRows, LatencyProblem> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LatencyProblem::Malformed(format!("{what} is not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        LatencyProblem::Malformed(format!(
            "{what} must be a JSON object {{\"from\": {{\"to\": milliseconds}}}}, got {}",
            truncate(&v.to_string())
        ))
    })?;
    let mut rows = LatencyRows::new();
    for (from, row) in obj {
        let inner = row.as_object().ok_or_else(|| {
            LatencyProblem::Malformed(format!(
                "{what}: the entry of {from:?} must be an object {{\"to\": milliseconds}}, got {}",
                truncate(&row.to_string())
            ))
        })?;
        let mut out = BTreeMap::new();
        for (to, value) in inner {
            if to == from {
                continue;
            }
            out.insert(to.clone(), value_ms(from, to, value)?);
        }
        rows.insert(from.clone(), out);
    }
    Ok(rows)
}

/// Label paths as the label embedding builds them (see `embed::embed_nodes`).
fn label_paths(nodes: &BTreeMap<String, BTreeMap<String, String>>, topology_keys: &[String]) -> Vec<Vec<String>> {
    nodes
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
        .collect()
}

/// Ball point (κ = 1) → hyperboloid `[x₀, x⃗]`: `x₀ = (1+‖b‖²)/(1−‖b‖²)`, `x⃗ = 2b/(1−‖b‖²)`.
fn ball_to_hyperboloid(b: &[f64]) -> Vec<f64> {
    let n2: f64 = b.iter().map(|c| c * c).sum::<f64>().min(1.0 - 1e-12);
    let den = 1.0 - n2;
    std::iter::once((1.0 + n2) / den)
        .chain(b.iter().map(|c| 2.0 * c / den))
        .collect()
}

/// Fits the measured latencies `rows` over `nodes` (name → labels); see the module doc.
pub fn fit_latencies(
    rows: &LatencyRows,
    nodes: &BTreeMap<String, BTreeMap<String, String>>,
    topology_keys: &[String],
    dimension: usize,
    previous: Option<&LatencyFit>,
) -> Result<LatencyFit, LatencyProblem> {
    let dimension = dimension.max(2);
    let names: Vec<&String> = nodes.keys().collect();
    let n = names.len();
    if n > MAX_FIT_NODES {
        return Err(LatencyProblem::TooLarge(n));
    }
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    // Unordered pairs (i < j) → values of either direction.
    let mut measured: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    let mut ignored = 0usize;
    for (from, row) in rows {
        for (to, &ms) in row {
            match (index.get(from.as_str()), index.get(to.as_str())) {
                (Some(&i), Some(&j)) if i != j => measured.entry((i.min(j), i.max(j))).or_default().push(ms),
                (Some(_), Some(_)) => {}
                _ => ignored += 1,
            }
        }
    }
    let mut peers = vec![0usize; n];
    for &(i, j) in measured.keys() {
        peers[i] += 1;
        peers[j] += 1;
    }
    let need = 2.min(n.saturating_sub(1));
    let short: Vec<String> = (0..n)
        .filter(|&i| peers[i] < need)
        .map(|i| format!("{} ({})", names[i], peers[i]))
        .collect();
    if !short.is_empty() {
        let shown: Vec<&String> = short.iter().take(5).collect();
        let more = if short.len() > 5 {
            format!(" and {} more", short.len() - 5)
        } else {
            String::new()
        };
        return Err(LatencyProblem::Partial(format!(
            "{} of {n} nodes have latencies to fewer than {need} other nodes (measured peers in brackets): {}{more}",
            short.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if measured.len() < 3 {
        return Err(LatencyProblem::Partial(format!(
            "{} node pairs are measured among the {n} nodes; at least 3 are needed",
            measured.len()
        )));
    }
    let mut samples: Vec<Sample> = measured
        .iter()
        .map(|(&(i, j), v)| Sample {
            i,
            j,
            rtt: v.iter().sum::<f64>() / v.len() as f64,
        })
        .collect();
    let pairs = samples.len();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    samples.shuffle(&mut rng);
    let held = ((pairs as f64 * 0.2).round() as usize).clamp(1, pairs - 1);
    let test = samples.split_off(pairs - held);
    let train = samples;

    // Start: the previous fit where it has the node (same dimension), else the label hierarchy.
    let paths = label_paths(nodes, topology_keys);
    let tree = TreeEmbedding::from_paths(
        &paths,
        SarkarConfig {
            epsilon: 0.1,
            edge_length: Some(START_EDGE_LENGTH),
        },
    )
    .map_err(|e| LatencyProblem::Malformed(format!("the node labels cannot be embedded: {e}")))?;
    let tree_points = tree.ball_points(dimension);
    let previous = previous.filter(|p| p.dimension == dimension);
    let mut warm = 0usize;
    let init: Vec<Vec<f64>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| match previous.and_then(|p| p.points.get(*name)) {
            Some(p) => {
                warm += 1;
                p.clone()
            }
            None => {
                let b = tree
                    .leaf_node(i)
                    .and_then(|v| tree_points.get(v))
                    .cloned()
                    .unwrap_or_default();
                ball_to_hyperboloid(&b)
            }
        })
        .collect();
    let incremental = previous.is_some() && warm * 2 >= n;
    let scale = match previous {
        Some(p) if incremental => p.ms_per_unit,
        _ => {
            // Median rtt over median start distance of the training pairs.
            let mut r: Vec<f64> = train.iter().map(|s| s.rtt).collect();
            let mut d: Vec<f64> = train
                .iter()
                .map(|s| {
                    let (a, b) = (&init[s.i][1..], &init[s.j][1..]);
                    let to_ball = |x: &[f64], x0: f64| x.iter().map(|c| c / (1.0 + x0)).collect::<Vec<f64>>();
                    crate::geometry::poincare::distance(&to_ball(a, init[s.i][0]), &to_ball(b, init[s.j][0]), 1.0)
                })
                .collect();
            r.sort_by(f64::total_cmp);
            d.sort_by(f64::total_cmp);
            let (rm, dm) = (r[r.len() / 2], d[d.len() / 2]);
            if dm > 1e-9 { rm / dm } else { rm }
        }
    };
    let cfg = HyperbolicConfig {
        dim: dimension,
        seed: 1,
        restarts: 1,
        epochs: if incremental { WARM_EPOCHS } else { COLD_EPOCHS },
        heights: false,
        ..HyperbolicConfig::default()
    };
    let model = latency::fit_hyperbolic_from(n, &train, &cfg, &init, scale)
        .map_err(|e| LatencyProblem::Malformed(format!("the latency fit failed: {e}")))?;
    let stats = latency::relative_error_stats(&test, |i, j| model.predict(i, j));
    // The positions used: the same fit continued on every pair (held-out pairs included), so no
    // measurement is left out of placement; the error above is the honest estimate for pairs a
    // fit has not seen.
    let all: Vec<Sample> = train.iter().chain(&test).copied().collect();
    let refit = HyperbolicConfig {
        epochs: WARM_EPOCHS,
        ..cfg
    };
    let model = latency::fit_hyperbolic_from(n, &all, &refit, &model.points, model.scale)
        .map_err(|e| LatencyProblem::Malformed(format!("the latency fit failed: {e}")))?;
    let mut positions = BTreeMap::new();
    let mut points = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(b) = model.ball_point(i) {
            positions.insert((*name).clone(), b);
        }
        points.insert((*name).clone(), model.points[i].clone());
    }
    Ok(LatencyFit {
        positions,
        points,
        dimension,
        ms_per_unit: model.scale,
        pairs,
        held_out_pairs: test.len(),
        held_out_median_relative_error: stats.median_rel_error,
        held_out_p90_relative_error: stats.p90_rel_error,
        incremental,
        ignored_entries: ignored,
    })
}

/// Node names mentioned in `rows` (as `from` or `to`), for messages.
pub fn mentioned(rows: &LatencyRows) -> BTreeSet<&str> {
    rows.iter()
        .flat_map(|(from, row)| std::iter::once(from.as_str()).chain(row.keys().map(String::as_str)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::poincare;
    use crate::labels::{HOSTNAME_LABEL, REGION_LABEL, ZONE_LABEL};

    /// 2 regions × 3 zones × 2 nodes, named `r{r}-z{z}-n{k}`.
    fn cluster() -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for r in 0..2 {
            for z in 0..3 {
                for k in 0..2 {
                    let name = format!("r{r}-z{z}-n{k}");
                    out.insert(
                        name.clone(),
                        BTreeMap::from([
                            (REGION_LABEL.to_string(), format!("region-{r}")),
                            (ZONE_LABEL.to_string(), format!("zone-{r}{z}")),
                            (HOSTNAME_LABEL.to_string(), name),
                        ]),
                    );
                }
            }
        }
        out
    }

    fn keys() -> Vec<String> {
        vec![REGION_LABEL.into(), ZONE_LABEL.into(), HOSTNAME_LABEL.into()]
    }

    /// Latencies by labels (1 ms in a zone, 5 in a region, 40 across), with `moved` measured as
    /// if it stood in zone `to_zone` (`r{r}-z{z}`).
    fn matrix(moved: Option<(&str, &str)>) -> LatencyRows {
        let nodes = cluster();
        let place = |n: &str| -> String {
            match moved {
                Some((m, zone)) if m == n => zone.to_string(),
                _ => n[..5].to_string(),
            }
        };
        let mut rows = LatencyRows::new();
        for a in nodes.keys() {
            for b in nodes.keys() {
                if a == b {
                    continue;
                }
                let (pa, pb) = (place(a), place(b));
                let ms = if pa == pb {
                    1.0
                } else if pa[..2] == pb[..2] {
                    5.0
                } else {
                    40.0
                };
                rows.entry(a.clone()).or_default().insert(b.clone(), ms);
            }
        }
        rows
    }

    fn nearest(fit_positions: &BTreeMap<String, Vec<f64>>, from: &str) -> String {
        let p = &fit_positions[from];
        fit_positions
            .iter()
            .filter(|(n, _)| n.as_str() != from)
            .min_by(|a, b| poincare::distance(p, a.1, 1.0).total_cmp(&poincare::distance(p, b.1, 1.0)))
            .map(|(n, _)| n.clone())
            .unwrap()
    }

    #[test]
    fn a_node_measured_far_from_its_zone_sibling_is_placed_near_the_nodes_it_is_measured_near() {
        let nodes = cluster();
        // r0-z0-n0 is labelled zone 00 but measured as if it stood in zone 01.
        let fit = fit_latencies(&matrix(Some(("r0-z0-n0", "r0-z1"))), &nodes, &keys(), 8, None).unwrap();
        assert!(
            fit.positions
                .values()
                .all(|p| p.len() == 8 && p.iter().all(|c| c.is_finite()))
        );
        let near = nearest(&fit.positions, "r0-z0-n0");
        assert!(near.starts_with("r0-z1"), "nearest to the moved node: {near}");
        assert!(fit.held_out_median_relative_error < 0.3, "{fit:?}");
        // Control: latencies that agree with the labels keep the zone sibling nearest.
        let plain = fit_latencies(&matrix(None), &nodes, &keys(), 8, None).unwrap();
        assert_eq!(nearest(&plain.positions, "r0-z0-n0"), "r0-z0-n1");
        // Deterministic, and a second fit continues the first.
        assert_eq!(fit_latencies(&matrix(None), &nodes, &keys(), 8, None).unwrap(), plain);
        let again = fit_latencies(&matrix(None), &nodes, &keys(), 8, Some(&plain)).unwrap();
        assert!(again.incremental);
    }

    #[test]
    fn bad_and_partial_inputs_name_the_problem() {
        let nodes = cluster();
        let err = parse_matrix("not json", "ConfigMap a/b key c").unwrap_err();
        assert_eq!(err.reason(), "LatencyMalformed");
        assert!(err.to_string().contains("ConfigMap a/b key c"), "{err}");
        let err = parse_matrix(r#"{"x": 3}"#, "M").unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        for bad in [r#"-1"#, r#""fast""#, r#"0"#, r#"1e9"#, r#"null"#] {
            let err = parse_matrix(&format!(r#"{{"a": {{"b": {bad}}}}}"#), "M").unwrap_err();
            assert_eq!(err.reason(), "LatencyValueInvalid", "{bad}");
            assert!(err.to_string().contains("\"a\" → \"b\""), "{err}");
        }
        let err = parse_row("a", "[1,2]", "annotation k on node a").unwrap_err();
        assert!(err.to_string().contains("annotation k on node a"), "{err}");
        assert_eq!(
            parse_row("a", r#"{"a": 0, "b": 2}"#, "x").unwrap(),
            BTreeMap::from([("b".to_string(), 2.0)])
        );
        // One node without measurements: partial, naming it.
        let mut rows = matrix(None);
        rows.remove("r1-z2-n1");
        for row in rows.values_mut() {
            row.remove("r1-z2-n1");
        }
        let err = fit_latencies(&rows, &nodes, &keys(), 4, None).unwrap_err();
        assert_eq!(err.reason(), "LatencyPartial");
        assert!(err.to_string().contains("r1-z2-n1 (0)"), "{err}");
        // Unknown nodes are ignored and counted.
        let mut rows = matrix(None);
        rows.entry("gone".into()).or_default().insert("r0-z0-n0".into(), 3.0);
        assert_eq!(
            fit_latencies(&rows, &nodes, &keys(), 4, None).unwrap().ignored_entries,
            1
        );
        assert!(fit_latencies(&LatencyRows::new(), &BTreeMap::new(), &keys(), 4, None).is_err());
    }
}
