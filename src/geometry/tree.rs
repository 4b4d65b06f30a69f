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
    /// Position of each node among its parent's children (label order); 0 for the root.
    slot: Vec<usize>,
    /// Number of children of each node.
    fanout: Vec<usize>,
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
        let mut slot = vec![0; n];
        let fanout: Vec<usize> = children.iter().map(Vec::len).collect();
        for v in 0..n {
            let k = children[v].len();
            for (j, &c) in children[v].iter().enumerate() {
                slot[c] = j;
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
            slot,
            fanout,
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

    /// Poincaré-ball coordinates (κ = 1) of every tree node (root, inner nodes and leaves, by
    /// internal node number) in `dim` dimensions (`dim` < 2 is read as 2): Sarkar's
    /// construction with the siblings spread over the sphere of directions instead of a circle.
    ///
    /// In a node's own frame (the node moved to the origin by the Möbius translation
    /// `z ↦ (−x)⊕z`), its parent and its k children take the slots of [`sphere_slots`]: slot 0
    /// is turned onto the parent's direction by a rotation, child j gets slot
    /// j+1 (the root's children slots 0…k−1), at hyperbolic distance τ: `y = tanh(τ/2)·u`,
    /// placed at `x⊕y`. A rotation and a Möbius translation are isometries, so every edge is
    /// exactly τ long and the angles between siblings are those of the slots. More dimensions
    /// give wider angles (at most ⌈(k+1)/⌊dim/2⌋⌉ slots share a circle, instead of k+1), so
    /// siblings are pulled together less by the short edges the ball's radius allows:
    /// `d(siblings) ≈ 2τ + 2·ln sin(θ/2)`.
    ///
    /// In 2 dimensions this is exactly the disk embedding of [`Self::leaf_point`].
    /// Clamp: like [`Self::leaf_point`], points beyond radius [`super::poincare::MAX_RADIUS`]
    /// saturate at the ball's edge (keep τ·depth ≤ 35).
    pub fn ball_points(&self, dim: usize) -> Vec<Vec<f64>> {
        let dim = dim.max(2);
        let n = self.node_count();
        let r = (self.tau / 2.0).tanh();
        let mut pts: Vec<Vec<f64>> = vec![vec![0.0; dim]; n];
        // Parents are numbered before their children (both constructors guarantee it).
        for v in 1..n {
            let Some(p) = self.parent[v] else { continue };
            let grand = self.parent[p];
            let slots = self.fanout[p] + usize::from(grand.is_some());
            let mut u = sphere_slot(slots, self.slot[v] + usize::from(grand.is_some()), dim);
            if let Some(g) = grand {
                // The grandparent's direction as seen from p, in p's frame.
                let minus_p: Vec<f64> = pts[p].iter().map(|c| -c).collect();
                let towards = super::poincare::mobius_add(&minus_p, &pts[g], 1.0);
                rotate_first_axis_onto(&mut u, &towards);
            }
            let y: Vec<f64> = u.iter().map(|c| c * r).collect();
            pts[v] = super::poincare::mobius_add(&pts[p], &y, 1.0);
        }
        pts
    }

    /// Internal node number of leaf i (an index into [`Self::ball_points`]).
    pub fn leaf_node(&self, i: usize) -> Option<usize> {
        self.leaves.get(i).copied()
    }

    /// Distortion and MAP over `(source, node)` pairs, with sources = all nodes when there are
    /// at most `max_sources`, else `max_sources` evenly spaced nodes (deterministic).
    ///
    /// MAP (Nickel & Kiela): for source u with tree neighbours N(u), rank all other nodes by
    /// embedded distance; `AP(u) = mean_{v∈N(u)} |{v'∈N(u): d(u,v') ≤ d(u,v)}| / |{x: d(u,x) ≤ d(u,v)}|`.
    /// Distances are the exact ones of the polar form ([`Self::node_distance`]).
    pub fn evaluate(&self, max_sources: usize) -> EmbeddingQuality {
        self.evaluate_with(max_sources, |u, v| self.node_distance(u, v))
    }

    /// [`Self::evaluate`] for the coordinates `points` of every tree node (as from
    /// [`Self::ball_points`]), measured with the ball's distance: what placement actually sees.
    pub fn evaluate_points(&self, points: &[Vec<f64>], max_sources: usize) -> EmbeddingQuality {
        self.evaluate_with(max_sources, |u, v| match (points.get(u), points.get(v)) {
            (Some(a), Some(b)) => super::poincare::distance(a, b, 1.0),
            _ => 0.0,
        })
    }

    fn evaluate_with(&self, max_sources: usize, distance: impl Fn(usize, usize) -> f64) -> EmbeddingQuality {
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
                let de = distance(u, v);
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

/// Unit vector of slot `s` among `slots` directions spread over the sphere in `dim` dimensions
/// (`dim` ≥ 2): P = min(⌊dim/2⌋, ⌈slots/4⌉) coordinate planes (e₀,e₁), (e₂,e₃), … take the slots
/// in turn (slot s in plane s mod P), and the c slots of one plane are evenly spaced on its
/// circle, slot 0 on e₀. Two slots in different planes are orthogonal, so the smallest angle is
/// `min(π/2, 2π/⌈slots/P⌉)`; up to 4 slots share a plane (90° and 180° apart, wider on average
/// than all-orthogonal), so more dimensions help only once ⌈slots/4⌉ > ⌊dim/2⌋ — never hurt.
/// Deterministic; O(dim).
pub fn sphere_slot(slots: usize, s: usize, dim: usize) -> Vec<f64> {
    let dim = dim.max(2);
    let slots = slots.max(1);
    let planes = slot_planes(slots, dim);
    let plane = s % planes;
    let index = s / planes;
    // Slots of this plane: plane, plane + P, … below `slots`.
    let in_plane = (slots.saturating_sub(plane)).div_ceil(planes).max(1);
    let angle = 2.0 * PI * index as f64 / in_plane as f64;
    let mut u = vec![0.0; dim];
    u[2 * plane] = angle.cos();
    u[2 * plane + 1] = angle.sin();
    u
}

/// Number of coordinate planes [`sphere_slot`] spreads `slots` directions over.
fn slot_planes(slots: usize, dim: usize) -> usize {
    (dim.max(2) / 2).min(slots.max(1).div_ceil(4)).max(1)
}

/// Rotates `u` by the rotation that turns e₀ onto the direction t of `target` inside the plane
/// span{e₀, t} (identity on its orthogonal complement, so orientation is kept):
/// with c = (t − t₀e₀)/‖t − t₀e₀‖ and cos θ = t₀,
/// `u ↦ u + (cos θ − 1)(u₀e₀ + u_c·c) + sin θ (u₀·c − u_c·e₀)`, u_c = ⟨u, c⟩. When t = −e₀ the
/// plane is span{e₀, e₁}. Leaves `u` alone when `target` is 0 or not finite. O(dim).
fn rotate_first_axis_onto(u: &mut [f64], target: &[f64]) {
    let norm = super::poincare::norm(target);
    if !(norm.is_finite() && norm > 0.0) || u.len() < 2 || target.len() != u.len() {
        return;
    }
    let cos = (target[0] / norm).clamp(-1.0, 1.0);
    let mut c: Vec<f64> = target.iter().map(|x| x / norm).collect();
    c[0] = 0.0;
    let cn = super::poincare::norm(&c);
    if cn < 1e-300 {
        if cos > 0.0 {
            return;
        }
        c = vec![0.0; u.len()];
        c[1] = 1.0;
    } else {
        c.iter_mut().for_each(|x| *x /= cn);
    }
    let sin = (1.0 - cos * cos).max(0.0).sqrt();
    let u0 = u[0];
    let uc: f64 = u.iter().zip(&c).map(|(a, b)| a * b).sum();
    for (k, (ui, ck)) in u.iter_mut().zip(&c).enumerate() {
        let e0 = if k == 0 { 1.0 } else { 0.0 };
        *ui += (cos - 1.0) * (u0 * e0 + uc * ck) + sin * (u0 * ck - uc * e0);
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
    fn ball_points_in_two_dimensions_have_the_exact_polar_distances() {
        let p = balanced_paths(3, 3).unwrap();
        let cfg = SarkarConfig {
            epsilon: 1.0,
            edge_length: Some(2.0),
        };
        let e = TreeEmbedding::from_paths(&p, cfg).unwrap();
        let pts = e.ball_points(2);
        for u in 0..e.node_count() {
            assert_eq!(pts[u].len(), 2);
            for v in 0..e.node_count() {
                let a = e.node_distance(u, v);
                let b = poincare::distance(&pts[u], &pts[v], 1.0);
                assert!((a - b).abs() < 1e-8 * (1.0 + a), "{u},{v}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn every_edge_is_tau_long_in_any_dimension_and_more_dimensions_spread_siblings_wider() {
        let p = balanced_paths(30, 3).unwrap();
        let cfg = SarkarConfig {
            epsilon: 0.1,
            edge_length: Some(8.0),
        };
        let e = TreeEmbedding::from_paths(&p, cfg).unwrap();
        let mut avg = Vec::new();
        for dim in [2, 3, 8, 64] {
            let pts = e.ball_points(dim);
            for v in 1..e.node_count() {
                assert_eq!(pts[v].len(), dim);
                let parent = e.parent[v].unwrap();
                let d = poincare::distance(&pts[v], &pts[parent], 1.0);
                assert!((d - 8.0).abs() < 1e-4, "dim {dim} node {v}: edge {d}");
            }
            let q = e.evaluate_points(&pts, 50);
            assert!(q.avg_distortion.is_finite() && q.max_distortion.is_finite(), "{q:?}");
            avg.push(q.avg_distortion);
        }
        // 3 dimensions still have one plane: no better than 2; 8 and 64 are strictly better, and
        // 64 no worse than 8.
        assert!((avg[1] - avg[0]).abs() < 1e-6, "{avg:?}");
        assert!(avg[2] < avg[0] * 0.8 && avg[3] <= avg[2] + 1e-9, "{avg:?}");
    }

    #[test]
    fn sphere_slots_are_unit_vectors_at_least_the_promised_angle_apart() {
        for (slots, dim) in [(1, 2), (5, 2), (11, 8), (41, 8), (41, 64), (200, 64), (7, 5)] {
            let u: Vec<Vec<f64>> = (0..slots).map(|s| sphere_slot(slots, s, dim)).collect();
            let planes = slot_planes(slots, dim);
            let promised = (PI / 2.0).min(2.0 * PI / slots.div_ceil(planes) as f64);
            for a in 0..slots {
                assert!((poincare::norm(&u[a]) - 1.0).abs() < 1e-12);
                for b in 0..a {
                    let cos: f64 = u[a].iter().zip(&u[b]).map(|(x, y)| x * y).sum();
                    assert!(
                        cos.clamp(-1.0, 1.0).acos() >= promised - 1e-9,
                        "{slots} slots in {dim}: {a},{b}"
                    );
                }
            }
        }
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
