//! Latency embedding: measured RTTs (with missing entries) → hyperbolic coordinates by
//! Riemannian optimisation, and the Vivaldi baseline (2-D + height, Dabek et al. SIGCOMM 2004)
//! in the same module so both are scored on the same held-out pairs.
//!
//! Inputs: the number of nodes and training samples `(i, j, rtt)`; a seed. Outputs: a model
//! with `predict(i, j)`. [`holdout_split`] + [`relative_error_stats`] give the evaluation
//! protocol (fit on a random 80% of measured pairs, score the other 20%).
//!
//! **Hyperbolic model.** `rtt̂(i,j) = s·d_H(xᵢ, xⱼ) + hᵢ + hⱼ` with xᵢ on the hyperboloid
//! (Lorentz model) of curvature −1 in dimension d, a fitted scale s = 1/√κ (so the curvature is
//! fitted) and per-node heights hᵢ ≥ 0 (access-link delay). Loss: pseudo-Huber of the relative
//! error `r = (rtt̂ − rtt)/rtt`, `δ²(√(1+(r/δ)²) − 1)`, robust to triangle-inequality
//! violations. Optimiser: full-batch Riemannian Adam (Bécigneul & Ganea 2019) — per-point
//! Riemannian gradient `grad = h + ⟨x,h⟩_L·x` (h = ∇ with the time component negated), scalar
//! second moment per point, momentum carried to the new tangent space by projection, update
//! by the exponential map `exp_x(v) = cosh‖v‖·x + sinh‖v‖·v/‖v‖`. Heights and log s use plain
//! Adam. Several seeded restarts; the one with the lowest training loss wins. The hyperboloid
//! distance is computed without cancellation as `arcosh(1 + (‖Δ‖² − δ₀²)/2)`, Δ = x⃗−y⃗,
//! δ₀ = x₀−y₀ = Δ·(x⃗+y⃗)/(x₀+y₀).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GeometryError;
use super::data::RttMatrix;
use super::poincare::acosh1p;

/// One measured round-trip time from node i to node j.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub i: usize,
    pub j: usize,
    pub rtt: f64,
}

/// Split the measured ordered pairs of `m` into (train, test), `holdout` ∈ (0, 1) of them in
/// test, by a seeded shuffle. Errors on an invalid fraction or fewer than 2 measured pairs.
pub fn holdout_split(m: &RttMatrix, holdout: f64, seed: u64) -> Result<(Vec<Sample>, Vec<Sample>), GeometryError> {
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(GeometryError::InvalidParameter {
            name: "holdout",
            value: holdout,
            reason: "must be strictly between 0 and 1",
        });
    }
    let mut all: Vec<Sample> = m
        .measured_pairs()
        .into_iter()
        .map(|(i, j, rtt)| Sample { i, j, rtt })
        .collect();
    if all.len() < 2 {
        return Err(GeometryError::EmptyInput("measured pairs"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    let n_test = ((all.len() as f64 * holdout).round() as usize).clamp(1, all.len() - 1);
    let test = all.split_off(all.len() - n_test);
    Ok((all, test))
}

/// Median and 90th percentile of |pred − rtt|/rtt.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ErrorStats {
    pub median_rel_error: f64,
    pub p90_rel_error: f64,
}

/// Relative errors of `predict` on `samples`, summarised (nearest-rank percentiles).
pub fn relative_error_stats(samples: &[Sample], predict: impl Fn(usize, usize) -> f64) -> ErrorStats {
    let mut e: Vec<f64> = samples
        .iter()
        .map(|s| (predict(s.i, s.j) - s.rtt).abs() / s.rtt)
        .collect();
    e.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if e.is_empty() {
            0.0
        } else {
            e[((p * e.len() as f64).ceil() as usize).clamp(1, e.len()) - 1]
        }
    };
    ErrorStats {
        median_rel_error: q(0.5),
        p90_rel_error: q(0.9),
    }
}

fn validate(n: usize, train: &[Sample]) -> Result<(), GeometryError> {
    if train.is_empty() {
        return Err(GeometryError::EmptyInput("training samples"));
    }
    for (k, s) in train.iter().enumerate() {
        if s.i >= n || s.j >= n {
            return Err(GeometryError::InvalidHierarchy {
                index: k,
                reason: format!("sample ({}, {}) names a node ≥ n = {n}", s.i, s.j),
            });
        }
        if !(s.rtt.is_finite() && s.rtt > 0.0) {
            return Err(GeometryError::InvalidWeight { index: k, value: s.rtt });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Hyperbolic embedding
// ---------------------------------------------------------------------------------------------

/// Settings of [`fit_hyperbolic`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HyperbolicConfig {
    /// Dimension d of the hyperbolic space (≥ 1).
    pub dim: usize,
    pub seed: u64,
    /// Independent restarts; the lowest training loss wins.
    pub restarts: usize,
    /// Full-batch optimisation steps per restart.
    pub epochs: usize,
    /// Adam learning rate (decays linearly to 10% over the epochs).
    pub learning_rate: f64,
    /// Pseudo-Huber scale δ on the relative error.
    pub huber_delta: f64,
    /// Fit per-node heights (access delays).
    pub heights: bool,
}

impl Default for HyperbolicConfig {
    fn default() -> Self {
        Self {
            dim: 5,
            seed: 1,
            restarts: 3,
            epochs: 1500,
            learning_rate: 0.05,
            huber_delta: 0.02,
            heights: true,
        }
    }
}

/// A fitted hyperbolic latency model.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperbolicModel {
    /// Hyperboloid coordinates `[x₀, x⃗]` (x₀ = √(1+‖x⃗‖²)), curvature −1.
    pub points: Vec<Vec<f64>>,
    /// Per-node height ≥ 0 (same unit as the RTTs).
    pub heights: Vec<f64>,
    /// Scale s: RTT units per unit of hyperbolic distance (the fitted curvature is −1/s²).
    pub scale: f64,
    /// Final training loss (mean pseudo-Huber).
    pub loss: f64,
}

/// Hyperboloid distance without cancellation, and z − 1 where z = −⟨x,y⟩_L.
fn lorentz_dist(x: &[f64], y: &[f64]) -> (f64, f64) {
    let mut dd = 0.0;
    let mut ds = 0.0;
    for k in 1..x.len() {
        let d = x[k] - y[k];
        dd += d * d;
        ds += d * (x[k] + y[k]);
    }
    let d0 = ds / (x[0] + y[0]);
    let zm1 = ((dd - d0 * d0) / 2.0).max(0.0);
    (acosh1p(zm1), zm1)
}

impl HyperbolicModel {
    /// Predicted RTT between i and j (0 for an out-of-range index).
    pub fn predict(&self, i: usize, j: usize) -> f64 {
        if i >= self.points.len() || j >= self.points.len() {
            return 0.0;
        }
        if i == j {
            return 0.0;
        }
        self.scale * lorentz_dist(&self.points[i], &self.points[j]).0 + self.heights[i] + self.heights[j]
    }

    /// Poincaré-ball coordinates (κ = 1) of node i: `x⃗/(1+x₀)`, projected into the ball.
    pub fn ball_point(&self, i: usize) -> Option<Vec<f64>> {
        let p = self.points.get(i)?;
        let v: Vec<f64> = p[1..].iter().map(|c| c / (1.0 + p[0])).collect();
        Some(super::poincare::project(&v, 1.0))
    }
}

fn lift_to_hyperboloid(spatial: &[f64]) -> Vec<f64> {
    let n2: f64 = spatial.iter().map(|c| c * c).sum();
    let mut p = Vec::with_capacity(spatial.len() + 1);
    p.push((1.0 + n2).sqrt());
    p.extend_from_slice(spatial);
    p
}

fn minkowski(a: &[f64], b: &[f64]) -> f64 {
    -a[0] * b[0] + a[1..].iter().zip(&b[1..]).map(|(x, y)| x * y).sum::<f64>()
}

/// Fit the hyperbolic model to `train` (see the module doc). Deterministic given the seed.
/// Errors: no samples, an index ≥ n, a non-positive RTT, dim = 0 or restarts/epochs = 0.
pub fn fit_hyperbolic(n: usize, train: &[Sample], cfg: &HyperbolicConfig) -> Result<HyperbolicModel, GeometryError> {
    check_config(n, train, cfg)?;
    fit_restarts(n, train, cfg, None)
}

fn check_config(n: usize, train: &[Sample], cfg: &HyperbolicConfig) -> Result<(), GeometryError> {
    validate(n, train)?;
    for (name, v) in [("dim", cfg.dim), ("restarts", cfg.restarts), ("epochs", cfg.epochs)] {
        if v == 0 {
            return Err(GeometryError::InvalidParameter {
                name,
                value: 0.0,
                reason: "must be ≥ 1",
            });
        }
    }
    if !(cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0) {
        return Err(GeometryError::InvalidParameter {
            name: "learning_rate",
            value: cfg.learning_rate,
            reason: "must be finite and > 0",
        });
    }
    if !(cfg.huber_delta.is_finite() && cfg.huber_delta > 0.0) {
        return Err(GeometryError::InvalidParameter {
            name: "huber_delta",
            value: cfg.huber_delta,
            reason: "must be finite and > 0",
        });
    }
    Ok(())
}

/// [`fit_hyperbolic`] starting its first restart from `init` (hyperboloid points `[x₀, x⃗]` of
/// dimension `cfg.dim`, one per node, and a scale s > 0) instead of a random start: refining an
/// earlier fit, or a layout known to be close, in fewer epochs. Points of another length or not
/// finite are replaced by a seeded random start. Same errors as [`fit_hyperbolic`].
pub fn fit_hyperbolic_from(
    n: usize,
    train: &[Sample],
    cfg: &HyperbolicConfig,
    init: &[Vec<f64>],
    scale: f64,
) -> Result<HyperbolicModel, GeometryError> {
    check_config(n, train, cfg)?;
    fit_restarts(n, train, cfg, Some((init, scale)))
}

fn fit_restarts(
    n: usize,
    train: &[Sample],
    cfg: &HyperbolicConfig,
    init: Option<(&[Vec<f64>], f64)>,
) -> Result<HyperbolicModel, GeometryError> {
    let mut best: Option<HyperbolicModel> = None;
    for r in 0..cfg.restarts {
        let seed = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(r as u64);
        let m = fit_once(n, train, cfg, seed, if r == 0 { init } else { None });
        if best.as_ref().is_none_or(|b| m.loss < b.loss) {
            best = Some(m);
        }
    }
    best.ok_or(GeometryError::EmptyInput("restarts"))
}

fn fit_once(
    n: usize,
    train: &[Sample],
    cfg: &HyperbolicConfig,
    seed: u64,
    init: Option<(&[Vec<f64>], f64)>,
) -> HyperbolicModel {
    let d = cfg.dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rtts: Vec<f64> = train.iter().map(|s| s.rtt).collect();
    rtts.sort_by(f64::total_cmp);
    let median = rtts[rtts.len() / 2];
    let mut pts: Vec<Vec<f64>> = (0..n)
        .map(|a| {
            let v: Vec<f64> = (0..d).map(|_| rng.random_range(-0.5..0.5)).collect();
            match init.and_then(|(p, _)| p.get(a)) {
                // The spatial part is lifted again, so x₀ is consistent whatever was given.
                Some(p) if p.len() == d + 1 && p.iter().all(|c| c.is_finite()) => lift_to_hyperboloid(&p[1..]),
                _ => lift_to_hyperboloid(&v),
            }
        })
        .collect();
    let mut heights = vec![0.0; n];
    let mut log_s = match init {
        Some((_, s)) if s.is_finite() && s > 0.0 => s.ln(),
        _ => median.ln(),
    };
    let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
    let mut m_pt = vec![vec![0.0; d + 1]; n];
    let mut v_pt = vec![0.0; n];
    let (mut m_h, mut v_h) = (vec![0.0; n], vec![0.0; n]);
    let (mut m_s, mut v_s) = (0.0, 0.0);
    let delta = cfg.huber_delta;
    let mut g_pt = vec![vec![0.0; d + 1]; n];
    let mut g_h = vec![0.0; n];
    let mut loss = 0.0;
    let inv_n = 1.0 / train.len() as f64;
    for epoch in 0..cfg.epochs {
        for g in &mut g_pt {
            g.iter_mut().for_each(|c| *c = 0.0);
        }
        g_h.iter_mut().for_each(|c| *c = 0.0);
        let mut g_s = 0.0;
        loss = 0.0;
        let s = log_s.exp();
        for smp in train {
            let (i, j) = (smp.i, smp.j);
            if i == j {
                continue;
            }
            let (dist, zm1) = lorentz_dist(&pts[i], &pts[j]);
            let pred = s * dist + heights[i] + heights[j];
            let r = (pred - smp.rtt) / smp.rtt;
            let q = (1.0 + (r / delta).powi(2)).sqrt();
            loss += delta * delta * (q - 1.0);
            // dL/dpred = ρ'(r)/rtt, ρ'(r) = r/√(1+(r/δ)²).
            let gp = r / q / smp.rtt * inv_n;
            g_s += gp * s * dist; // d/d(log s)
            if cfg.heights {
                g_h[i] += gp;
                g_h[j] += gp;
            }
            // d dist / dz = 1/√(z²−1) = 1/√((z−1)(z+1)); clamp z−1 ≥ 1e-12 (coincident points).
            let zm1 = zm1.max(1e-12);
            let gz = gp * s / (zm1 * (zm1 + 2.0)).sqrt();
            // z = x₀y₀ − x⃗·y⃗: ∂z/∂x₀ = y₀, ∂z/∂x⃗ = −y⃗.
            let (pi, pj) = (&pts[i], &pts[j]);
            let gi = &mut g_pt[i];
            gi[0] += gz * pj[0];
            for k in 1..=d {
                gi[k] -= gz * pj[k];
            }
            let gj = &mut g_pt[j];
            gj[0] += gz * pi[0];
            for k in 1..=d {
                gj[k] -= gz * pi[k];
            }
        }
        loss *= inv_n;
        let t = (epoch + 1) as i32;
        let lr = cfg.learning_rate * (1.0 - 0.9 * epoch as f64 / cfg.epochs as f64);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for a in 0..n {
            let x = &pts[a];
            // Riemannian gradient: h = J∇ (negate time part), then project onto T_x.
            let mut h = g_pt[a].clone();
            h[0] = -h[0];
            let xh = minkowski(x, &h);
            for (hk, xk) in h.iter_mut().zip(x) {
                *hk += xh * xk;
            }
            let gnorm2 = minkowski(&h, &h).max(0.0);
            for (mk, hk) in m_pt[a].iter_mut().zip(&h) {
                *mk = b1 * *mk + (1.0 - b1) * hk;
            }
            v_pt[a] = b2 * v_pt[a] + (1.0 - b2) * gnorm2;
            let denom = (v_pt[a] / c2).sqrt() + eps;
            let step: Vec<f64> = m_pt[a].iter().map(|mk| -lr * mk / c1 / denom).collect();
            let new_x = lorentz_exp(x, &step);
            // Vector transport by projection onto the new tangent space.
            let mx = minkowski(&new_x, &m_pt[a]);
            for (mk, xk) in m_pt[a].iter_mut().zip(&new_x) {
                *mk += mx * xk;
            }
            pts[a] = new_x;
            if cfg.heights {
                m_h[a] = b1 * m_h[a] + (1.0 - b1) * g_h[a];
                v_h[a] = b2 * v_h[a] + (1.0 - b2) * g_h[a] * g_h[a];
                let hs = lr * median * 0.1 * (m_h[a] / c1) / ((v_h[a] / c2).sqrt() + eps);
                heights[a] = (heights[a] - hs).max(0.0);
            }
        }
        m_s = b1 * m_s + (1.0 - b1) * g_s;
        v_s = b2 * v_s + (1.0 - b2) * g_s * g_s;
        log_s -= lr * 0.2 * (m_s / c1) / ((v_s / c2).sqrt() + eps);
    }
    HyperbolicModel {
        points: pts,
        heights,
        scale: log_s.exp(),
        loss,
    }
}

/// Exponential map on the hyperboloid, re-projected onto it (x₀ = √(1+‖x⃗‖²)) to stop drift.
/// The tangent norm is clamped to 50 so cosh/sinh stay finite.
fn lorentz_exp(x: &[f64], v: &[f64]) -> Vec<f64> {
    let nv = minkowski(v, v).max(0.0).sqrt().min(50.0);
    if nv < 1e-300 {
        return x.to_vec();
    }
    let raw = minkowski(v, v).max(0.0).sqrt();
    let (c, s) = (nv.cosh(), nv.sinh() / raw);
    let y: Vec<f64> = x.iter().zip(v).map(|(a, b)| c * a + s * b).collect();
    lift_to_hyperboloid(&y[1..])
}

// ---------------------------------------------------------------------------------------------
// Vivaldi
// ---------------------------------------------------------------------------------------------

/// Settings of [`fit_vivaldi`]; defaults are the paper's cc = ce = 0.25.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VivaldiConfig {
    pub seed: u64,
    /// Rounds; in each round every node makes one measurement to a random training neighbour.
    pub rounds: usize,
    pub cc: f64,
    pub ce: f64,
    /// Each sample (i, j) is also a measurement for j (use with symmetrised, unordered pairs).
    pub symmetric_samples: bool,
}

impl Default for VivaldiConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            rounds: 4000,
            cc: 0.25,
            ce: 0.25,
            symmetric_samples: false,
        }
    }
}

/// Vivaldi coordinates: 2-D Euclidean plus a height per node.
#[derive(Debug, Clone, PartialEq)]
pub struct VivaldiModel {
    pub coords: Vec<[f64; 2]>,
    pub heights: Vec<f64>,
    pub errors: Vec<f64>,
}

impl VivaldiModel {
    /// Predicted RTT `‖xᵢ − xⱼ‖ + hᵢ + hⱼ` (0 for an out-of-range index or i = j).
    pub fn predict(&self, i: usize, j: usize) -> f64 {
        if i >= self.coords.len() || j >= self.coords.len() || i == j {
            return 0.0;
        }
        let (a, b) = (self.coords[i], self.coords[j]);
        (a[0] - b[0]).hypot(a[1] - b[1]) + self.heights[i] + self.heights[j]
    }
}

/// Vivaldi with height vectors and the adaptive timestep (Dabek et al. 2004, Fig. 3 and §5.5):
/// on a sample rtt from i to j, `w = eᵢ/(eᵢ+eⱼ)`, `eₛ = |‖xᵢ−xⱼ‖−rtt|/rtt`,
/// `eᵢ ← eₛ·ce·w + eᵢ·(1−ce·w)`, `δ = cc·w`, `xᵢ ← xᵢ + δ·(rtt − ‖xᵢ−xⱼ‖)·u(xᵢ−xⱼ)`, where for
/// height vectors `[x,h]−[y,g] = [x−y, h+g]`, `‖[x,h]‖ = ‖x‖+h`, so the unit vector moves the
/// plane part along (x−y)/‖·‖ and the height by (hᵢ+hⱼ)/‖·‖; heights stay ≥ 0. Coincident
/// nodes are pushed apart in a seeded random direction. Deterministic given the seed.
pub fn fit_vivaldi(n: usize, train: &[Sample], cfg: &VivaldiConfig) -> Result<VivaldiModel, GeometryError> {
    validate(n, train)?;
    let mut nbrs: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for s in train {
        if s.i != s.j {
            nbrs[s.i].push((s.j, s.rtt));
            if cfg.symmetric_samples {
                nbrs[s.j].push((s.i, s.rtt));
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut rtts: Vec<f64> = train.iter().map(|s| s.rtt).collect();
    rtts.sort_by(f64::total_cmp);
    let median = rtts[rtts.len() / 2];
    // The height update is multiplicative in (hᵢ+hⱼ): heights starting at 0 would never move.
    // Start at 1% of the median RTT and keep them ≥ 10⁻⁴·median (Serf uses a 10 µs floor).
    let h_min = 1e-4 * median;
    let mut x = vec![[0.0f64; 2]; n];
    let mut h = vec![0.01 * median; n];
    let mut e = vec![1.0f64; n];
    for _ in 0..cfg.rounds {
        for i in 0..n {
            if nbrs[i].is_empty() {
                continue;
            }
            let (j, rtt) = nbrs[i][rng.random_range(0..nbrs[i].len())];
            let w = if e[i] + e[j] > 0.0 { e[i] / (e[i] + e[j]) } else { 0.5 };
            let dx = [x[i][0] - x[j][0], x[i][1] - x[j][1]];
            let plane = dx[0].hypot(dx[1]);
            let dist = plane + h[i] + h[j];
            let es = (dist - rtt).abs() / rtt;
            e[i] = es * cfg.ce * w + e[i] * (1.0 - cfg.ce * w);
            let force = cfg.cc * w * (rtt - dist);
            let (ux, uh) = if dist > 1e-12 && plane > 1e-12 {
                ([dx[0] / dist, dx[1] / dist], (h[i] + h[j]) / dist)
            } else {
                let a: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                ([a.cos(), a.sin()], 0.0)
            };
            x[i][0] += force * ux[0];
            x[i][1] += force * ux[1];
            h[i] = (h[i] + force * uh).max(h_min);
        }
    }
    Ok(VivaldiModel {
        coords: x,
        heights: h,
        errors: e,
    })
}

/// Both methods on the same held-out pairs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HoldoutComparison {
    pub dim: usize,
    pub train_pairs: usize,
    pub test_pairs: usize,
    pub hyperbolic: ErrorStats,
    pub vivaldi: ErrorStats,
    /// Fitted curvature −1/s² expressed as κ = 1/s² (per RTT unit²).
    pub kappa: f64,
}

/// Fit both methods on the same 1−holdout of measured pairs and score both on the rest.
pub fn compare_on_holdout(
    m: &RttMatrix,
    holdout: f64,
    hyp: &HyperbolicConfig,
    viv: &VivaldiConfig,
) -> Result<HoldoutComparison, GeometryError> {
    let (train, test) = holdout_split(m, holdout, hyp.seed)?;
    let hm = fit_hyperbolic(m.n, &train, hyp)?;
    let vm = fit_vivaldi(m.n, &train, viv)?;
    Ok(HoldoutComparison {
        dim: hyp.dim,
        train_pairs: train.len(),
        test_pairs: test.len(),
        hyperbolic: relative_error_stats(&test, |i, j| hm.predict(i, j)),
        vivaldi: relative_error_stats(&test, |i, j| vm.predict(i, j)),
        kappa: 1.0 / (hm.scale * hm.scale),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::data::{data_dir, load_rtt_matrix};

    /// RTTs generated by a known hyperbolic configuration plus heights.
    fn synthetic(n: usize) -> RttMatrix {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let pts: Vec<Vec<f64>> = (0..n)
            .map(|_| lift_to_hyperboloid(&[rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0)]))
            .collect();
        let mut rtt = vec![None; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    rtt[i * n + j] = Some(10.0 * lorentz_dist(&pts[i], &pts[j]).0 + 3.0);
                }
            }
        }
        RttMatrix { n, rtt }
    }

    #[test]
    fn lorentz_distance_matches_the_poincare_distance() {
        let a = lift_to_hyperboloid(&[0.3, -1.2]);
        let b = lift_to_hyperboloid(&[2.0, 0.7]);
        let to_ball = |p: &[f64]| vec![p[1] / (1.0 + p[0]), p[2] / (1.0 + p[0])];
        let d1 = lorentz_dist(&a, &b).0;
        let d2 = crate::geometry::poincare::distance(&to_ball(&a), &to_ball(&b), 1.0);
        assert!((d1 - d2).abs() < 1e-10);
    }

    #[test]
    fn hyperbolic_fit_recovers_a_hyperbolic_metric_on_held_out_pairs() {
        let m = synthetic(40);
        let cfg = HyperbolicConfig {
            dim: 2,
            epochs: 400,
            restarts: 1,
            ..Default::default()
        };
        let c = compare_on_holdout(
            &m,
            0.2,
            &cfg,
            &VivaldiConfig {
                rounds: 500,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(c.hyperbolic.median_rel_error < 0.05, "{c:?}");
        assert!(c.hyperbolic.median_rel_error.is_finite() && c.vivaldi.median_rel_error.is_finite());
    }

    #[test]
    fn fits_are_deterministic_given_the_seed() {
        let m = synthetic(15);
        let (train, _) = holdout_split(&m, 0.2, 3).unwrap();
        let cfg = HyperbolicConfig {
            epochs: 30,
            restarts: 2,
            ..Default::default()
        };
        assert_eq!(
            fit_hyperbolic(m.n, &train, &cfg).unwrap(),
            fit_hyperbolic(m.n, &train, &cfg).unwrap()
        );
        let v = VivaldiConfig {
            rounds: 50,
            ..Default::default()
        };
        assert_eq!(
            fit_vivaldi(m.n, &train, &v).unwrap(),
            fit_vivaldi(m.n, &train, &v).unwrap()
        );
    }

    #[test]
    fn vivaldi_learns_planetlab_latencies_on_a_small_subset() {
        let m = load_rtt_matrix(&data_dir().join("NetLatency/PlanetLab/PlanetLabData_1"))
            .unwrap()
            .submatrix(60);
        let (train, test) = holdout_split(&m, 0.2, 1).unwrap();
        let v = fit_vivaldi(
            m.n,
            &train,
            &VivaldiConfig {
                rounds: 1000,
                ..Default::default()
            },
        )
        .unwrap();
        let stats = relative_error_stats(&test, |i, j| v.predict(i, j));
        assert!(stats.median_rel_error < 0.3, "{stats:?}");
    }

    #[test]
    fn bad_training_input_is_rejected_with_a_clear_error() {
        let s = |i, j, rtt| Sample { i, j, rtt };
        let cfg = HyperbolicConfig::default();
        assert!(fit_hyperbolic(3, &[], &cfg).is_err());
        let err = fit_hyperbolic(3, &[s(0, 5, 1.0)], &cfg).unwrap_err();
        assert!(err.to_string().contains("(0, 5)"), "{err}");
        assert!(fit_vivaldi(3, &[s(0, 1, -1.0)], &VivaldiConfig::default()).is_err());
        let zero_dim = HyperbolicConfig { dim: 0, ..cfg };
        assert!(fit_hyperbolic(3, &[s(0, 1, 1.0)], &zero_dim).is_err());
        let m = synthetic(5);
        assert!(holdout_split(&m, 1.0, 1).is_err());
        assert!(holdout_split(&m, 0.0, 1).is_err());
    }
}
