//! Topology hierarchy → hyperbolic coordinates by Sarkar's construction, with the exact tree
//! metric kept as reference and distortion / mean average precision (MAP) measured against it.
//!
//! Input: one label path per leaf, top level first (e.g. `[region, zone, rack, hostname]`), any
//! depth and fan-out. Output: a [`TreeEmbedding`] with, per leaf, a point of the Poincaré disk
//! (κ = 1), the exact tree distance (hops) and the embedded hyperbolic distance.
//!
//! **Precision.** Sarkar needs edge length τ ≈ (1+ε)/ε·2·ln(deg) — for fan-out 64 and ε = 0.1
//! τ ≈ 82, so depth 3 needs radius ≈ 250, far beyond the ≈ 35 that f64 ball coordinates hold.
//! So the embedding is stored in **re-centred polar form**: each node keeps its direction φ as
//! seen from its parent, in the parent's own frame (where the grandparent lies at angle π), at
//! hyperbolic distance τ. The position of a node relative to any ancestor is folded up one edge
//! at a time with the hyperbolic law of cosines in log space
//! (`cosh R = cosh(τ−r) + 2·sinh τ·sinh r·cos²(θ/2)`, never a difference of large numbers) and
//! the cotangent rule for the angle; a distance between two nodes is computed in the frame of
//! their lowest common ancestor, where their directions differ by at least ≈ 2π/deg. Radii of
//! thousands are fine. Only [`TreeEmbedding::leaf_point`], which must give plain ball
//! coordinates, saturates at the ball's edge beyond radius ≈ 35 (documented there).

use std::collections::BTreeMap;
use std::f64::consts::PI;

use super::GeometryError;

/// Parameters of Sarkar's construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SarkarConfig {
    /// Target distortion 1+ε; sets τ = (1+ε)/ε·(−2·ln sin(π/(2·deg_max))). Must be > 0.
    pub epsilon: f64,
    /// Override τ (hyperbolic length of every edge), e.g. to keep leaves within radius 35.
    pub edge_length: Option<f64>,
}

impl Default for SarkarConfig {
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            edge_length: None,
        }
    }
}

/// `ln cosh x`, stable for any x.
fn ln_cosh(x: f64) -> f64 {
    let a = x.abs();
    a - std::f64::consts::LN_2 + (-2.0 * a).exp().ln_1p()
}

/// `ln sinh x` for x > 0, stable for any x (−∞ at 0).
fn ln_sinh(x: f64) -> f64 {
    if x <= 0.0 {
        f64::NEG_INFINITY
    } else if x < 1.0 {
        x.sinh().ln()
    } else {
        x - std::f64::consts::LN_2 + (-(-2.0 * x).exp()).ln_1p()
    }
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// `arcosh(e^L)` for L = ln cosh R ≥ 0, without overflow: small L via `expm1`, large L as
/// `L + ln(1 + √(1 − e^{−2L}))`.
fn acosh_of_exp(l: f64) -> f64 {
    let l = l.max(0.0);
    if l < 20.0 {
        let c1 = l.exp_m1();
        (c1 + (c1 * (c1 + 2.0)).sqrt()).ln_1p()
    } else {
        l + (1.0 + (1.0 - (-2.0 * l).exp()).sqrt()).ln()
    }
}

/// Normalise an angle to (−π, π].
fn wrap(a: f64) -> f64 {
    let mut a = a % (2.0 * PI);
    if a <= -PI {
        a += 2.0 * PI;
    } else if a > PI {
        a -= 2.0 * PI;
    }
    a
}

/// Distance between points at polar (r1, a1) and (r2, a2) of one frame:
/// `cosh d = cosh(r1−r2) + 2·sinh r1·sinh r2·sin²((a1−a2)/2)`, evaluated in log space.
pub fn polar_distance(r1: f64, a1: f64, r2: f64, a2: f64) -> f64 {
    let s = ((a1 - a2) / 2.0).sin().abs();
    let second = if s == 0.0 {
        f64::NEG_INFINITY
    } else {
        std::f64::consts::LN_2 + ln_sinh(r1) + ln_sinh(r2) + 2.0 * s.ln()
    };
    acosh_of_exp(log_add_exp(ln_cosh(r1 - r2), second))
}

/// Move a point from a child's frame to its parent's frame. The child sits at distance `tau`
/// in direction `phi` from the parent; in the child's frame the parent lies at angle π and the
/// point at polar (r, θ). Returns the point's polar (R, A) in the parent's frame:
/// `cosh R = cosh(τ−r) + 2·sinh τ·sinh r·cos²(θ/2)` and, by the cotangent rule,
/// `A = φ + atan2(sin θ·sech τ, tanh τ·coth r + cos θ)`.
fn lift(r: f64, theta: f64, phi: f64, tau: f64) -> (f64, f64) {
    if r == 0.0 {
        return (tau, phi);
    }
    let c = (theta / 2.0).cos().abs();
    let second = if c == 0.0 {
        f64::NEG_INFINITY
    } else {
        std::f64::consts::LN_2 + ln_sinh(tau) + ln_sinh(r) + 2.0 * c.ln()
    };
    let big_r = acosh_of_exp(log_add_exp(ln_cosh(tau - r), second));
    let sech = 2.0 * (-tau).exp() / (1.0 + (-2.0 * tau).exp());
    let coth_r = if r > 20.0 { 1.0 } else { 1.0 / r.tanh() };
    let a = (theta.sin() * sech).atan2(tau.tanh() * coth_r + theta.cos());
    (big_r, wrap(phi + a))
}

/// A hierarchy embedded by Sarkar's construction (κ = 1), in re-centred polar form.
#[derive(Debug, Clone)]
pub struct TreeEmbedding {
    tau: f64,
    parent: Vec<Option<usize>>,
    depth: Vec<usize>,
    /// Direction of the node as seen from its parent, in the parent's frame.
    phi: Vec<f64>,
    /// Polar position relative to the root.
    root_polar: Vec<(f64, f64)>,
    /// Node index of each leaf, in input order.
    leaves: Vec<usize>,
}

/// Distortion and MAP of an embedding against the exact tree metric.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EmbeddingQuality {
    /// max over pairs of (d_E/(τ·d_T)) divided by the min over pairs (≥ 1).
    pub max_distortion: f64,
    /// mean over pairs of |d_E − τ·d_T| / (τ·d_T).
    pub avg_distortion: f64,
    /// Mean average precision of tree neighbours ranked by embedded distance.
    pub map: f64,
    /// Number of source nodes evaluated (all nodes, or an evenly spaced sample).
    pub sources: usize,
    /// Number of (source, node) pairs measured.
    pub pairs: usize,
}

impl TreeEmbedding {
    /// Build the hierarchy from one label path per leaf and embed it.
    ///
    /// Children are ordered by label, so the result does not depend on the order of `paths`
    /// except for leaf indices. Errors: no paths, an empty path, the same path twice, or a
    /// path that is a prefix of another (a leaf cannot also be an inner node); ε ≤ 0 or a
    /// non-positive / non-finite edge length.
    pub fn from_paths(paths: &[Vec<String>], config: SarkarConfig) -> Result<Self, GeometryError> {
        if paths.is_empty() {
            return Err(GeometryError::EmptyInput("hierarchy paths"));
        }
        Self::check_config(config)?;
        let mut parent = vec![None];
        let mut depth = vec![0usize];
        let mut kids: Vec<BTreeMap<&str, usize>> = vec![BTreeMap::new()];
        let mut leaves = Vec::with_capacity(paths.len());
        let mut is_leaf = vec![false];
        for (i, path) in paths.iter().enumerate() {
            if path.is_empty() {
                return Err(GeometryError::InvalidHierarchy {
                    index: i,
                    reason: "the path has no labels".into(),
                });
            }
            let mut cur = 0usize;
            for label in path {
                if is_leaf[cur] {
                    return Err(GeometryError::InvalidHierarchy {
                        index: i,
                        reason: format!("goes below an existing leaf (at label `{label}`)"),
                    });
                }
                cur = match kids[cur].get(label.as_str()) {
                    Some(&c) => c,
                    None => {
                        let id = parent.len();
                        kids[cur].insert(label.as_str(), id);
                        parent.push(Some(cur));
                        depth.push(depth[cur] + 1);
                        kids.push(BTreeMap::new());
                        is_leaf.push(false);
                        id
                    }
                };
            }
            if is_leaf[cur] {
                return Err(GeometryError::InvalidHierarchy {
                    index: i,
                    reason: format!("duplicate path {path:?}"),
                });
            }
            if !kids[cur].is_empty() {
                return Err(GeometryError::InvalidHierarchy {
                    index: i,
                    reason: format!("{path:?} is also an inner node of another path"),
                });
            }
            is_leaf[cur] = true;
            leaves.push(cur);
        }
        let children: Vec<Vec<usize>> = kids.iter().map(|m| m.values().copied().collect()).collect();
        Ok(Self::build(parent, depth, children, leaves, config))
    }

    /// Embed a rooted tree given by parent pointers (exactly one `None`: the root); children
    /// are ordered by index. Every node counts as a "leaf" for [`Self::leaf_point`] etc. (leaf
    /// index = node index). Errors: not exactly one root, a parent index out of range, a cycle.
    pub fn from_parents(parent: &[Option<usize>], config: SarkarConfig) -> Result<Self, GeometryError> {
        Self::check_config(config)?;
        let n = parent.len();
        let roots: Vec<usize> = (0..n).filter(|v| parent[*v].is_none()).collect();
        if roots.len() != 1 {
            return Err(GeometryError::InvalidGraph(format!(
                "{} roots (need exactly 1)",
                roots.len()
            )));
        }
        let mut children = vec![Vec::new(); n];
        for (v, p) in parent.iter().enumerate() {
            if let Some(p) = *p {
                if p >= n {
                    return Err(GeometryError::InvalidGraph(format!("node {v} has parent {p} ≥ {n}")));
                }
                children[p].push(v);
            }
        }
        // Depths by BFS from the root; an unvisited node means a cycle.
        let mut depth = vec![usize::MAX; n];
        depth[roots[0]] = 0;
        let mut queue = std::collections::VecDeque::from([roots[0]]);
        while let Some(u) = queue.pop_front() {
            for &c in &children[u] {
                depth[c] = depth[u] + 1;
                queue.push_back(c);
            }
        }
        if let Some(v) = depth.iter().position(|d| *d == usize::MAX) {
            return Err(GeometryError::InvalidGraph(format!("node {v} is on a cycle")));
        }
        // Re-index so that the root is node 0 (the builder's convention).
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|v| (depth[*v], *v));
        let mut new_of = vec![0; n];
        for (k, v) in order.iter().enumerate() {
            new_of[*v] = k;
        }
        let par: Vec<Option<usize>> = order.iter().map(|v| parent[*v].map(|p| new_of[p])).collect();
        let dep: Vec<usize> = order.iter().map(|v| depth[*v]).collect();
        let mut ch = vec![Vec::new(); n];
        for (k, p) in par.iter().enumerate() {
            if let Some(p) = p {
                ch[*p].push(k);
            }
        }
        let leaves: Vec<usize> = (0..n).map(|v| new_of[v]).collect();
        Ok(Self::build(par, dep, ch, leaves, config))
    }

    fn check_config(config: SarkarConfig) -> Result<(), GeometryError> {
        if !(config.epsilon.is_finite() && config.epsilon > 0.0) {
            return Err(GeometryError::InvalidParameter {
                name: "epsilon",
                value: config.epsilon,
                reason: "must be finite and > 0",
            });
        }
        if let Some(t) = config.edge_length
            && !(t.is_finite() && t > 0.0)
        {
            return Err(GeometryError::InvalidParameter {
                name: "edge_length",
                value: t,
                reason: "must be finite and > 0",
            });
        }
        Ok(())
    }

    fn build(
        parent: Vec<Option<usize>>,
        depth: Vec<usize>,
        children: Vec<Vec<usize>>,
        leaves: Vec<usize>,
        config: SarkarConfig,
    ) -> Self {
        let n = parent.len();
        let deg_max = (0..n)
            .map(|v| children[v].len() + usize::from(parent[v].is_some()))
            .max()
            .unwrap_or(1)
            .max(2);
        let tau = config.edge_length.unwrap_or_else(|| {
            let loss = -2.0 * (PI / (2.0 * deg_max as f64)).sin().ln();
            (1.0 + config.epsilon) / config.epsilon * loss.max(1.0)
        });
        // Sarkar: the root spreads its children evenly; any other node spreads its children
        // evenly over the directions left after the one to its parent (at angle π).
        let mut phi = vec![0.0; n];
        for v in 0..n {
            let k = children[v].len();
            for (j, &c) in children[v].iter().enumerate() {
                phi[c] = if parent[v].is_none() {
                    wrap(2.0 * PI * j as f64 / k as f64)
                } else {
                    wrap(PI + 2.0 * PI * (j + 1) as f64 / (k + 1) as f64)
                };
            }
        }
        let mut emb = Self {
            tau,
            parent,
            depth,
            phi,
            root_polar: Vec::new(),
            leaves,
        };
        emb.root_polar = (0..n).map(|v| emb.polar_relative_to(v, 0)).collect();
        emb
    }

    /// Hyperbolic length τ of each tree edge.
    pub fn tau(&self) -> f64 {
        self.tau
    }
    /// Number of tree nodes (root, inner nodes and leaves).
    pub fn node_count(&self) -> usize {
        self.parent.len()
    }
    /// Number of leaves (input paths).
    pub fn leaf_count(&self) -> usize {
        self.leaves.len()
    }

    /// Polar position of node `v` in the frame of its ancestor `anc` (folds up edge by edge).
    fn polar_relative_to(&self, v: usize, anc: usize) -> (f64, f64) {
        let (mut r, mut a) = (0.0, 0.0);
        let mut cur = v;
        while cur != anc {
            let Some(p) = self.parent[cur] else { break };
            (r, a) = lift(r, a, self.phi[cur], self.tau);
            cur = p;
        }
        (r, a)
    }

    fn lca(&self, mut u: usize, mut v: usize) -> usize {
        while self.depth[u] > self.depth[v] {
            u = self.parent[u].unwrap_or(u);
        }
        while self.depth[v] > self.depth[u] {
            v = self.parent[v].unwrap_or(v);
        }
        while u != v {
            u = self.parent[u].unwrap_or(u);
            v = self.parent[v].unwrap_or(v);
        }
        u
    }

    /// Exact tree distance (hops) between internal node numbers u and v (< `node_count`).
    pub fn node_tree_distance(&self, u: usize, v: usize) -> usize {
        let w = self.lca(u, v);
        self.depth[u] + self.depth[v] - 2 * self.depth[w]
    }

    /// Embedded hyperbolic distance between nodes u and v, computed in the frame of their LCA.
    pub fn node_distance(&self, u: usize, v: usize) -> f64 {
        if u == v {
            return 0.0;
        }
        let w = self.lca(u, v);
        let (r1, a1) = self.polar_relative_to(u, w);
        let (r2, a2) = self.polar_relative_to(v, w);
        polar_distance(r1, a1, r2, a2)
    }

    /// Exact tree distance in hops between leaves i and j (indices into the input paths);
    /// `None` if an index is out of range.
    pub fn tree_distance(&self, i: usize, j: usize) -> Option<usize> {
        Some(self.node_tree_distance(*self.leaves.get(i)?, *self.leaves.get(j)?))
    }

    /// Embedded hyperbolic distance (curvature −1) between leaves i and j, exact to f64
    /// precision at any radius; ≈ τ·tree_distance within a factor 1+ε.
    pub fn embedded_distance(&self, i: usize, j: usize) -> Option<f64> {
        Some(self.node_distance(*self.leaves.get(i)?, *self.leaves.get(j)?))
    }

    /// Poincaré-disk coordinates (κ = 1) of leaf i. Clamp: a leaf further than radius
    /// [`super::poincare::MAX_RADIUS`] from the root is placed on that sphere in its direction
    /// (choose `edge_length` ≤ 35/depth to avoid saturation); use
    /// [`Self::embedded_distance`] for exact distances.
    pub fn leaf_point(&self, i: usize) -> Option<Vec<f64>> {
        let (r, a) = self.root_polar[*self.leaves.get(i)?];
        let s = (r / 2.0).tanh().min(super::poincare::MAX_SCALED_NORM);
        Some(vec![s * a.cos(), s * a.sin()])
    }

    /// Distortion and MAP over `(source, node)` pairs, with sources = all nodes when there are
    /// at most `max_sources`, else `max_sources` evenly spaced nodes (deterministic).
    ///
    /// MAP (Nickel & Kiela): for source u with tree neighbours N(u), rank all other nodes by
    /// embedded distance; `AP(u) = mean_{v∈N(u)} |{v'∈N(u): d(u,v') ≤ d(u,v)}| / |{x: d(u,x) ≤ d(u,v)}|`.
    pub fn evaluate(&self, max_sources: usize) -> EmbeddingQuality {
        let n = self.node_count();
        let step = n.div_ceil(max_sources.max(1)).max(1);
        let sources: Vec<usize> = (0..n).step_by(step).collect();
        let (mut lo, mut hi, mut sum_rel, mut pairs) = (f64::INFINITY, 0.0_f64, 0.0, 0usize);
        let mut ap_sum = 0.0;
        let mut ap_count = 0usize;
        for &u in &sources {
            let mut all = Vec::with_capacity(n);
            let mut nb = Vec::new();
            for v in 0..n {
                if v == u {
                    continue;
                }
                let de = self.node_distance(u, v);
                let dt = self.node_tree_distance(u, v) as f64 * self.tau;
                let ratio = de / dt;
                lo = lo.min(ratio);
                hi = hi.max(ratio);
                sum_rel += (de - dt).abs() / dt;
                pairs += 1;
                all.push(de);
                if self.parent[v] == Some(u) || self.parent[u] == Some(v) {
                    nb.push(de);
                }
            }
            if nb.is_empty() {
                continue;
            }
            all.sort_by(f64::total_cmp);
            nb.sort_by(f64::total_cmp);
            let mut ap = 0.0;
            for (k, d) in nb.iter().enumerate() {
                let rank = all.partition_point(|x| x <= d);
                let hits = nb.partition_point(|x| x <= d).max(k + 1);
                ap += hits as f64 / rank.max(1) as f64;
            }
            ap_sum += ap / nb.len() as f64;
            ap_count += 1;
        }
        EmbeddingQuality {
            max_distortion: if pairs == 0 || lo <= 0.0 { 1.0 } else { hi / lo },
            avg_distortion: if pairs == 0 { 0.0 } else { sum_rel / pairs as f64 },
            map: if ap_count == 0 { 1.0 } else { ap_sum / ap_count as f64 },
            sources: sources.len(),
            pairs,
        }
    }
}

/// Label paths of a complete tree: `fanout^depth` leaves, labels `l{level}-{index}`.
/// Returns an error if that is more than 10⁷ leaves, or fanout/depth is 0.
pub fn balanced_paths(fanout: usize, depth: usize) -> Result<Vec<Vec<String>>, GeometryError> {
    if fanout == 0 || depth == 0 {
        return Err(GeometryError::InvalidParameter {
            name: if fanout == 0 { "fanout" } else { "depth" },
            value: 0.0,
            reason: "must be ≥ 1",
        });
    }
    let count = (fanout as f64).powi(depth as i32);
    if count > 1e7 {
        return Err(GeometryError::InvalidParameter {
            name: "fanout^depth",
            value: count,
            reason: "more than 10^7 leaves",
        });
    }
    let total = fanout.pow(depth as u32);
    Ok((0..total)
        .map(|mut k| {
            let mut digits = vec![0; depth];
            for d in (0..depth).rev() {
                digits[d] = k % fanout;
                k /= fanout;
            }
            digits
                .iter()
                .enumerate()
                .map(|(lvl, x)| format!("l{lvl}-{x:05}"))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::poincare;

    fn paths(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|p| p.iter().map(|s| s.to_string()).collect()).collect()
    }

    #[test]
    fn tree_distance_counts_hops_through_the_lowest_common_ancestor() {
        let p = paths(&[
            &["eu", "a", "r1", "n1"],
            &["eu", "a", "r1", "n2"],
            &["eu", "b", "r9", "n3"],
            &["us", "c", "r2", "n4"],
        ]);
        let e = TreeEmbedding::from_paths(&p, SarkarConfig::default()).unwrap();
        assert_eq!(e.tree_distance(0, 1), Some(2));
        assert_eq!(e.tree_distance(0, 2), Some(6));
        assert_eq!(e.tree_distance(0, 3), Some(8));
        assert_eq!(e.tree_distance(0, 0), Some(0));
        assert_eq!(e.tree_distance(0, 9), None);
    }

    #[test]
    fn polar_distances_agree_with_ball_distances_where_the_ball_is_exact() {
        // Small τ keeps everything inside radius 35 so the two computations can be compared.
        let p = balanced_paths(3, 3).unwrap();
        let cfg = SarkarConfig {
            epsilon: 1.0,
            edge_length: Some(2.0),
        };
        let e = TreeEmbedding::from_paths(&p, cfg).unwrap();
        for i in 0..p.len() {
            for j in 0..p.len() {
                let a = e.embedded_distance(i, j).unwrap();
                let b = poincare::distance(&e.leaf_point(i).unwrap(), &e.leaf_point(j).unwrap(), 1.0);
                assert!((a - b).abs() < 1e-8 * (1.0 + a), "{i},{j}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn distortion_stays_within_one_plus_epsilon_on_a_wide_tree() {
        let p = balanced_paths(12, 3).unwrap();
        for eps in [0.5, 0.1] {
            let e = TreeEmbedding::from_paths(
                &p,
                SarkarConfig {
                    epsilon: eps,
                    edge_length: None,
                },
            )
            .unwrap();
            let q = e.evaluate(60);
            assert!(q.max_distortion <= 1.0 + eps, "eps {eps}: {q:?}");
            assert!(q.max_distortion.is_finite() && q.avg_distortion.is_finite());
            assert!((q.map - 1.0).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn a_deep_thin_tree_stays_finite_far_beyond_the_ball_radius() {
        let p = balanced_paths(2, 9).unwrap();
        let e = TreeEmbedding::from_paths(&p, SarkarConfig::default()).unwrap();
        assert!(e.tau() * 9.0 > 100.0);
        let d = e.embedded_distance(0, p.len() - 1).unwrap();
        assert!(d.is_finite() && d > 0.9 * 18.0 * e.tau(), "{d}");
        let q = e.evaluate(40);
        assert!(q.max_distortion <= 1.1, "{q:?}");
        assert!(e.leaf_point(0).unwrap().iter().all(|c| c.is_finite()));
    }

    #[test]
    fn uneven_depths_are_embedded() {
        let p = paths(&[&["eu", "n1"], &["eu", "z", "r", "n2"], &["us", "n3"]]);
        let e = TreeEmbedding::from_paths(&p, SarkarConfig::default()).unwrap();
        assert_eq!(e.tree_distance(0, 1), Some(4));
        assert!(e.evaluate(100).max_distortion <= 1.1);
    }

    #[test]
    fn invalid_hierarchies_are_rejected_with_the_offending_path() {
        let cfg = SarkarConfig::default();
        assert!(TreeEmbedding::from_paths(&[], cfg).is_err());
        let err = TreeEmbedding::from_paths(&paths(&[&["a", "b"], &["a", "b"]]), cfg).unwrap_err();
        assert!(
            err.to_string().contains("path 1") && err.to_string().contains("duplicate"),
            "{err}"
        );
        assert!(TreeEmbedding::from_paths(&paths(&[&["a", "b"], &["a"]]), cfg).is_err());
        assert!(TreeEmbedding::from_paths(&paths(&[&["a"], &["a", "b"]]), cfg).is_err());
        assert!(TreeEmbedding::from_paths(&paths(&[&[]]), cfg).is_err());
        let bad = SarkarConfig {
            epsilon: 0.0,
            edge_length: None,
        };
        assert!(TreeEmbedding::from_paths(&paths(&[&["a"]]), bad).is_err());
        assert!(balanced_paths(0, 3).is_err());
        assert!(balanced_paths(1000, 5).is_err());
    }
}
