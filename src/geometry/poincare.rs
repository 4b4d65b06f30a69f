//! Poincaré-ball arithmetic for curvature −κ in any dimension: distance, Möbius addition,
//! exp/log maps, geodesic interpolation, weighted Fréchet mean and projection into the ball.
//!
//! Inputs are coordinate slices (`&[f64]`) and a curvature magnitude `kappa` (κ > 0, the ball
//! has radius 1/√κ); outputs are plain `f64` or `Vec<f64>`. Every function returns finite
//! numbers for every input; the clamps that make this true are listed here and repeated at the
//! code that applies them:
//!
//! - **curvature**: κ is clamped to [`MIN_KAPPA`, `MAX_KAPPA`]; a non-finite or non-positive κ
//!   becomes `MIN_KAPPA` (the nearly Euclidean limit).
//! - **coordinates**: a NaN coordinate is read as 0, ±∞ as ±`f64::MAX` (then projected).
//! - **the ball**: a point with √κ‖x‖ > [`MAX_SCALED_NORM`] = 1 − 10⁻¹⁵ is scaled back onto the
//!   sphere √κ‖x‖ = 1 − 1.5·10⁻¹⁵. So the largest representable hyperbolic radius is
//!   [`MAX_RADIUS`]/√κ ≈ 35.2/√κ, and the largest distance ≈ 70.5/√κ. Points further out
//!   saturate; use an exact metric (e.g. `tree::TreeEmbedding`, which works in re-centred polar
//!   coordinates and has no radius limit) when more room is needed.
//! - **slices of different length**: the shorter one is padded with zeros.

use super::GeometryError;

/// Smallest curvature magnitude used; smaller or invalid κ is clamped up to it.
pub const MIN_KAPPA: f64 = 1e-12;
/// Largest curvature magnitude used; larger κ is clamped down to it.
pub const MAX_KAPPA: f64 = 1e12;
/// Largest allowed √κ‖x‖. 1 − 10⁻¹⁵ keeps the conformal factor 1 − κ‖x‖² ≥ 2·10⁻¹⁵.
pub const MAX_SCALED_NORM: f64 = 1.0 - 1e-15;
/// √κ‖x‖ that [`project`] moves an outside point to (a little inside `MAX_SCALED_NORM`, so that
/// rounding in a later norm computation cannot push it out again).
const PROJECTED_SCALED_NORM: f64 = 1.0 - 1.5e-15;
/// Hyperbolic radius (for κ = 1) of the sphere √κ‖x‖ = `MAX_SCALED_NORM`:
/// `2·artanh(1 − 10⁻¹⁵) = ln((2 − 10⁻¹⁵)/10⁻¹⁵) ≈ 35.23`.
pub const MAX_RADIUS: f64 = 35.23;

/// Clamp κ into [`MIN_KAPPA`, `MAX_KAPPA`]; NaN and non-positive values give `MIN_KAPPA`.
pub fn clamp_kappa(kappa: f64) -> f64 {
    if kappa.is_nan() || kappa <= MIN_KAPPA {
        MIN_KAPPA
    } else if kappa >= MAX_KAPPA {
        MAX_KAPPA
    } else {
        kappa
    }
}

/// NaN → 0, ±∞ → ±`f64::MAX`.
fn sanitize(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else if v.is_infinite() {
        f64::MAX.copysign(v)
    } else {
        v
    }
}

/// Euclidean norm that neither overflows nor underflows (scaled by the largest |component|).
pub fn norm(x: &[f64]) -> f64 {
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if sq.is_finite() && sq > 1e-290 {
        return sq.sqrt();
    }
    let m = x.iter().fold(0.0_f64, |m, v| m.max(sanitize(*v).abs()));
    if m == 0.0 {
        return 0.0;
    }
    let s: f64 = x
        .iter()
        .map(|v| {
            let t = sanitize(*v) / m;
            t * t
        })
        .sum();
    let n = m * s.sqrt();
    if n.is_finite() { n } else { f64::MAX }
}

fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Pad both slices with zeros to the same length (only used on the slow path).
fn padded(x: &[f64], n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().map(|a| sanitize(*a)).collect();
    v.resize(n, 0.0);
    v
}

/// Project `x` into the ball of curvature −κ: sanitises coordinates and, when
/// √κ‖x‖ > `MAX_SCALED_NORM`, rescales x to √κ‖x‖ = 1 − 1.5·10⁻¹⁵ (direction kept).
pub fn project(x: &[f64], kappa: f64) -> Vec<f64> {
    let mut v = x.to_vec();
    project_in_place(&mut v, clamp_kappa(kappa).sqrt());
    v
}

/// [`project`] without allocating: `v` is sanitised and, if outside, rescaled where it lies.
/// `sk` is √κ of an already clamped κ.
fn project_in_place(v: &mut [f64], sk: f64) {
    let sq: f64 = v.iter().map(|c| c * c).sum();
    // A finite sum of squares means every coordinate is finite, which `sanitize` keeps as is.
    if !sq.is_finite() {
        for c in v.iter_mut() {
            *c = sanitize(*c);
        }
    }
    let n = if sq.is_finite() && sq > 1e-290 {
        sq.sqrt()
    } else {
        norm(v)
    };
    let s = sk * n;
    if s > MAX_SCALED_NORM || !s.is_finite() {
        // Divide in two steps so that a huge norm cannot underflow the factor to 0.
        let n = norm(v);
        for c in v.iter_mut() {
            *c = (*c / n) * (PROJECTED_SCALED_NORM / sk);
        }
    }
}

/// `arcosh(1 + δ)` for δ ≥ 0 without cancellation: `ln1p(δ + √(δ(δ+2)))`.
pub fn acosh1p(delta: f64) -> f64 {
    let d = delta.max(0.0);
    (d + (d * (d + 2.0)).sqrt()).ln_1p()
}

/// Hyperbolic distance in the ball of curvature −κ:
/// `d(x,y) = (1/√κ)·arcosh(1 + 2κ‖x−y‖² / ((1−κ‖x‖²)(1−κ‖y‖²)))`.
///
/// Points outside the ball are projected first (see the module doc), so the result is always
/// finite, ≥ 0, symmetric and exactly 0 for identical inputs.
pub fn distance(x: &[f64], y: &[f64], kappa: f64) -> f64 {
    let k = clamp_kappa(kappa);
    if x.len() == y.len() {
        let (mut nx, mut ny, mut dxy) = (0.0, 0.0, 0.0);
        for (a, b) in x.iter().zip(y) {
            nx += a * a;
            ny += b * b;
            let d = a - b;
            dxy += d * d;
        }
        let m2 = MAX_SCALED_NORM * MAX_SCALED_NORM;
        let (nx, ny, dxy) = (k * nx, k * ny, k * dxy);
        if nx <= m2 && ny <= m2 && dxy.is_finite() {
            return acosh1p(2.0 * dxy / ((1.0 - nx) * (1.0 - ny))) / k.sqrt();
        }
    }
    let n = x.len().max(y.len());
    let px = project(&padded(x, n), k);
    let py = project(&padded(y, n), k);
    // No recursion here: `project` keeps a point whose rounded √κ‖x‖ is ≤ MAX_SCALED_NORM even
    // when its rounded κ‖x‖² is a few ulps above MAX_SCALED_NORM², which failed the test above
    // forever (a stack overflow in the operator). Clamp the squared norms instead.
    let m2 = MAX_SCALED_NORM * MAX_SCALED_NORM;
    let nx = (k * dot(&px, &px)).min(m2);
    let ny = (k * dot(&py, &py)).min(m2);
    let dxy: f64 = px.iter().zip(&py).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() * k;
    acosh1p(2.0 * dxy / ((1.0 - nx) * (1.0 - ny))) / k.sqrt()
}

/// Distance of `x` from the origin: `(2/√κ)·artanh(√κ‖x‖)`.
pub fn distance_from_origin(x: &[f64], kappa: f64) -> f64 {
    let k = clamp_kappa(kappa);
    let s = (k.sqrt() * norm(x)).min(MAX_SCALED_NORM);
    2.0 * s.atanh() / k.sqrt()
}

/// Möbius addition in the ball of curvature −κ:
/// `x⊕y = ((1 + 2κ⟨x,y⟩ + κ‖y‖²)·x + (1 − κ‖x‖²)·y) / (1 + 2κ⟨x,y⟩ + κ²‖x‖²‖y‖²)`.
///
/// The denominator is ≥ (1 − √κ‖x‖·√κ‖y‖)² > 0 inside the ball; the result is projected.
/// `z ↦ a⊕z` is an isometry (a Möbius translation).
pub fn mobius_add(x: &[f64], y: &[f64], kappa: f64) -> Vec<f64> {
    let k = clamp_kappa(kappa);
    let n = x.len().max(y.len());
    let x = project(&padded(x, n), k);
    let y = project(&padded(y, n), k);
    let mut out = vec![0.0; n];
    mobius_add_projected(&x, &y, dot(&x, &x), dot(&y, &y), k, &mut out);
    out
}

/// The arithmetic of [`mobius_add`] on points already projected (same length, κ clamped),
/// with their squared norms `x2 = ⟨x,x⟩`, `y2 = ⟨y,y⟩` given (callers that add many y to one x
/// compute them once). Writes the projected sum into `out` (length of x).
fn mobius_add_projected(x: &[f64], y: &[f64], x2: f64, y2: f64, k: f64, out: &mut [f64]) {
    let xy = dot(x, y);
    let a = 1.0 + 2.0 * k * xy + k * y2;
    let b = 1.0 - k * x2;
    // Clamp: the denominator is positive in exact arithmetic; keep it so after rounding.
    let den = (1.0 + 2.0 * k * xy + k * k * x2 * y2).max(f64::MIN_POSITIVE);
    for ((o, xi), yi) in out.iter_mut().zip(x).zip(y) {
        *o = (a * xi + b * yi) / den;
    }
    project_in_place(out, k.sqrt());
}

/// Conformal factor `λ_x = 2 / (1 − κ‖x‖²)` (finite because x is kept inside the ball).
pub fn conformal_factor(x: &[f64], kappa: f64) -> f64 {
    let k = clamp_kappa(kappa);
    let s = (k.sqrt() * norm(x)).min(MAX_SCALED_NORM);
    2.0 / ((1.0 - s) * (1.0 + s))
}

/// Exponential map at x: `exp_x(v) = x ⊕ (tanh(√κ·λ_x·‖v‖/2) · v / (√κ‖v‖))`.
/// A huge tangent vector saturates at the ball's edge (tanh → 1, then projected).
pub fn exp_map(x: &[f64], v: &[f64], kappa: f64) -> Vec<f64> {
    let k = clamp_kappa(kappa);
    let sk = k.sqrt();
    let n = x.len().max(v.len());
    let x = project(&padded(x, n), k);
    let v = padded(v, n);
    let nv = norm(&v);
    if nv == 0.0 {
        return x;
    }
    let lam = conformal_factor(&x, k);
    let t = (sk * lam * nv / 2.0).tanh();
    let w: Vec<f64> = v.iter().map(|c| (c / nv) * (t / sk)).collect();
    mobius_add(&x, &w, k)
}

/// Logarithmic map at x: `log_x(y) = (2/(√κ·λ_x))·artanh(√κ‖u‖)·u/‖u‖` with `u = (−x)⊕y`.
pub fn log_map(x: &[f64], y: &[f64], kappa: f64) -> Vec<f64> {
    let k = clamp_kappa(kappa);
    let sk = k.sqrt();
    let n = x.len().max(y.len());
    let x = project(&padded(x, n), k);
    let neg: Vec<f64> = x.iter().map(|c| -c).collect();
    let u = mobius_add(&neg, y, k);
    let nu = norm(&u);
    if nu == 0.0 {
        return vec![0.0; n];
    }
    let lam = conformal_factor(&x, k);
    let coef = 2.0 / (sk * lam) * (sk * nu).min(MAX_SCALED_NORM).atanh() / nu;
    u.iter().map(|c| c * coef).collect()
}

/// The point at fraction `t` along the geodesic from x to y (t = 0 → x, t = 1 → y; other t
/// extrapolate): `x ⊕ (tanh(t·artanh(√κ‖u‖))·u/(√κ‖u‖))`, `u = (−x)⊕y`. A NaN `t` is read as 0.
pub fn geodesic(x: &[f64], y: &[f64], t: f64, kappa: f64) -> Vec<f64> {
    let k = clamp_kappa(kappa);
    let sk = k.sqrt();
    let n = x.len().max(y.len());
    let x = project(&padded(x, n), k);
    let t = if t.is_nan() { 0.0 } else { t };
    let neg: Vec<f64> = x.iter().map(|c| -c).collect();
    let u = mobius_add(&neg, y, k);
    let nu = norm(&u);
    if nu == 0.0 {
        return x;
    }
    let a = (sk * nu).min(MAX_SCALED_NORM).atanh();
    let s = (t * a).tanh() / sk;
    let w: Vec<f64> = u.iter().map(|c| (c / nu) * s).collect();
    mobius_add(&x, &w, k)
}

/// The point at most `step` (hyperbolic length) along the geodesic from x toward y:
/// `y` when `d(x,y) ≤ step`, else `geodesic(x, y, step / d(x,y))`, which lies at distance exactly
/// `step` from x. A NaN or negative `step` is read as 0 (stay at x). Used to move an agent's
/// target gradually toward a new optimum, one bounded step per tick.
pub fn geodesic_step(x: &[f64], y: &[f64], step: f64, kappa: f64) -> Vec<f64> {
    let k = clamp_kappa(kappa);
    let step = if step.is_nan() { 0.0 } else { step.max(0.0) };
    let d = distance(x, y, k);
    if d <= step {
        let n = x.len().max(y.len());
        return project(&padded(y, n), k);
    }
    geodesic(x, y, step / d, k)
}

/// Weighted Fréchet (Karcher) mean: the point m minimising `Σ wᵢ·d(m, xᵢ)²`.
///
/// One point of positive weight is its own mean. From two on, a descent from the best of these
/// starts (least objective): the weighted Einstein midpoint (computed in the Klein model), each
/// point, and, for up to 8 points, every pair's two-point mean: `x` and `y` with weights `a` and
/// `b` have theirs on the geodesic between them at `t = b/(a+b)` from `x` (on it
/// `d(m,x) = t·D`, `d(m,y) = (1−t)·D`, and `a·t² + b·(1−t)²` is least there; off it the triangle
/// inequality only makes both distances longer). Near the edge none of them is trusted as the
/// answer: the Einstein midpoint's Lorentz factors grow like e^r and pull it toward the
/// outermost point, and `geodesic`'s Möbius operations lose digits there (its midpoint of two
/// nodes at radius 29 was 3.5× the minimum).
///
/// Each step of the descent first tries a damped Newton step (see `newton_direction`; up to 48
/// weighted points), halved up to 8 times while the objective does not decrease, then a
/// Riemannian gradient step `m ← exp_m(η·Σ wᵢ log_m(xᵢ) / Σ wᵢ)` from η = 1, halved up to 29
/// times. It stops after 100 steps, when the gradient is below 10⁻¹³ (hyperbolic), when the
/// Newton step is at most 10⁻¹⁰·(1 + √f) long, when no step decreases the objective, or when a
/// step gains less than the objective's rounding (10⁻¹²; 10⁻¹⁰ for a full Newton step, which
/// converges quadratically). Gradient steps alone need many steps: in negative
/// curvature `d²` is steeper across the geodesic than along it (by `√κd·coth(√κd)`), so
/// far-apart points need η near `1/d`. The log maps are computed in a form without cancellation
/// (see the loop), which Newton needs near the edge.
///
/// Errors: no points, weights/points length mismatch, points of different dimension, a
/// negative or non-finite weight, or all weights zero.
pub fn frechet_mean(points: &[Vec<f64>], weights: &[f64], kappa: f64) -> Result<Vec<f64>, GeometryError> {
    let k = clamp_kappa(kappa);
    let first = points.first().ok_or(GeometryError::EmptyInput("points"))?;
    if points.len() != weights.len() {
        return Err(GeometryError::LengthMismatch {
            what: "weights",
            expected: points.len(),
            found: weights.len(),
        });
    }
    let dim = first.len();
    for (i, p) in points.iter().enumerate() {
        if p.len() != dim {
            return Err(GeometryError::DimensionMismatch {
                index: i,
                expected: dim,
                found: p.len(),
            });
        }
    }
    for (i, w) in weights.iter().enumerate() {
        if !w.is_finite() || *w < 0.0 {
            return Err(GeometryError::InvalidWeight { index: i, value: *w });
        }
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(GeometryError::ZeroTotalWeight);
    }
    let pts: Vec<Vec<f64>> = points.iter().map(|p| project(p, k)).collect();
    let w: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let weighted: Vec<usize> = (0..pts.len()).filter(|&i| w[i] > 0.0).collect();
    let two_point_mean = |a: usize, b: usize| geodesic(&pts[a], &pts[b], w[b] / (w[a] + w[b]), k);
    if let [only] = weighted[..] {
        return Ok(pts[only].clone());
    }
    // The objective Σ wᵢ·d(m, xᵢ)² over the weighted points, keeping each d(m, xᵢ) in `dists`:
    // the log maps at the next point of the descent reuse those of the point it accepted.
    let objective = |m: &[f64], dists: &mut [f64]| -> f64 {
        let mut f = 0.0;
        for (d, &i) in dists.iter_mut().zip(&weighted) {
            *d = distance(m, &pts[i], k);
            f += w[i] * *d * *d;
        }
        f
    };
    let n = weighted.len();
    let mut dists = vec![0.0; n]; // d(m, xᵢ)
    let mut cand_dists = vec![0.0; n]; // d(candidate, xᵢ)
    // Start from the best of several (see the doc comment).
    let mut m = einstein_midpoint(&pts, &w, k);
    let mut f = objective(&m, &mut dists);
    let pairs = if weighted.len() <= START_PAIRS_MAX_POINTS {
        weighted.len()
    } else {
        0
    };
    let candidates = weighted.iter().map(|&i| pts[i].clone()).chain(
        (0..pairs)
            .flat_map(|a| (a + 1..pairs).map(move |b| (a, b)))
            .map(|(a, b)| two_point_mean(weighted[a], weighted[b])),
    );
    for c in candidates {
        let fc = objective(&c, &mut cand_dists);
        if fc < f {
            (m, f) = (c, fc);
            std::mem::swap(&mut dists, &mut cand_dists);
        }
    }
    let sk = k.sqrt();
    let mut logs = vec![0.0; n * dim]; // log_m(xᵢ) of the weighted points, Euclidean coordinates
    let mut lens = vec![0.0; n]; // ‖log_m(xᵢ)‖ (Euclidean)
    let mut g = vec![0.0; dim];
    let mut newton = vec![0.0; dim];
    let mut v = vec![0.0; dim];
    let mut cand = vec![0.0; dim];
    for _ in 0..100 {
        // m is always a projected point here (the start is, and so is every accepted step).
        let (m2, lam) = (dot(&m, &m), conformal_factor(&m, k));
        let gap = 1.0 - k * m2;
        g.fill(0.0);
        for (j, &i) in weighted.iter().enumerate() {
            // log_m(xᵢ) = (d(m,xᵢ)/λ_m)·u/‖u‖, u = (−m)⊕xᵢ. Expanding the Möbius sum with
            // 1 − 2κ⟨m,x⟩ + κ‖x‖² = κ‖x − m‖² + (1 − κ‖m‖²) gives its direction without the
            // cancellation `mobius_add` suffers near the edge (there it gave gradients 10× too
            // long): u ∝ (1 − κ‖m‖²)·(x − m) − κ‖x − m‖²·m. The distance is the objective's, from
            // `distance`, whose formula uses ‖x − m‖² and the gaps 1 − κ‖·‖² directly too.
            let l = &mut logs[j * dim..(j + 1) * dim];
            let mut diff2 = 0.0;
            for ((o, xi), mi) in l.iter_mut().zip(&pts[i]).zip(&m) {
                *o = xi - mi;
                diff2 += *o * *o;
            }
            for (o, mi) in l.iter_mut().zip(&m) {
                *o = gap * *o - k * diff2 * mi;
            }
            let nu = norm(l);
            let coef = if nu == 0.0 { 0.0 } else { dists[j] / (lam * nu) };
            for c in l.iter_mut() {
                *c *= coef;
            }
            lens[j] = nu * coef;
            for (gi, li) in g.iter_mut().zip(l.iter()) {
                *gi += w[i] * li;
            }
        }
        if lam * norm(&g) < 1e-13 {
            break;
        }
        let have_newton = newton_direction(&logs, &lens, &dists, &weighted, &w, lam, sk, &mut newton);
        // Newton's step is about as long as the way left to the mean: below 10⁻¹⁰ of the
        // distances at play it is done (rounding in the objective is coarser than that).
        if have_newton && lam * norm(&newton) <= 1e-10 * (1.0 + f.sqrt()) {
            break;
        }
        let mut improved = false;
        let mut converged = false;
        for (is_newton, dir) in [(true, &newton), (false, &g)] {
            if is_newton && !have_newton {
                continue;
            }
            let mut eta = 1.0;
            // Newton's step fits the objective's curvature, so one it overshoots by more than
            // 2⁸ was computed from rounding noise: the gradient step is tried next.
            for _ in 0..(if is_newton { 9 } else { 30 }) {
                // exp_m(η·dir) = m ⊕ (tanh(√κ·λ_m·‖η·dir‖/2)·dir/(√κ‖dir‖)).
                for (vi, di) in v.iter_mut().zip(dir) {
                    *vi = sanitize(di * eta);
                }
                let nv = norm(&v);
                if nv == 0.0 {
                    break;
                }
                let t = (sk * lam * nv / 2.0).tanh();
                for vi in v.iter_mut() {
                    *vi = (*vi / nv) * (t / sk);
                }
                project_in_place(&mut v, sk);
                mobius_add_projected(&m, &v, m2, dot(&v, &v), k, &mut cand);
                let fc = objective(&cand, &mut cand_dists);
                if fc < f {
                    std::mem::swap(&mut m, &mut cand);
                    std::mem::swap(&mut dists, &mut cand_dists);
                    // A decrease at the objective's rounding level ends the descent: the steps
                    // that follow would chase rounding, not the mean. So does a full Newton step
                    // that gained less than 10⁻¹⁰ of it: Newton converges quadratically, so
                    // that step left m within about that much of the mean.
                    let enough = if is_newton && eta == 1.0 { 1e-10 } else { 1e-12 };
                    converged = f - fc <= enough * f;
                    f = fc;
                    improved = true;
                    break;
                }
                eta *= 0.5;
            }
            if improved {
                break;
            }
        }
        if !improved || converged {
            break;
        }
    }
    Ok(m)
}

/// The weighted Einstein midpoint of projected points (weights summing to 1): one of the
/// descent's candidate starts.
fn einstein_midpoint(pts: &[Vec<f64>], w: &[f64], k: f64) -> Vec<f64> {
    // Einstein midpoint: Klein kᵢ = 2xᵢ/(1+κ‖xᵢ‖²), γᵢ = 1/√(1−κ‖kᵢ‖²); k̄ = Σwᵢγᵢkᵢ/Σwᵢγᵢ;
    // back to Poincaré: x = k̄/(1+√(1−κ‖k̄‖²)).
    let mut num = vec![0.0; pts[0].len()];
    let mut den = 0.0;
    for (p, wi) in pts.iter().zip(w) {
        if *wi == 0.0 {
            continue;
        }
        let p2 = k * dot(p, p);
        let kl: Vec<f64> = p.iter().map(|c| 2.0 * c / (1.0 + p2)).collect();
        let kl2 = (k * dot(&kl, &kl)).min(1.0 - 1e-16);
        let g = 1.0 / (1.0 - kl2).sqrt();
        for (n, c) in num.iter_mut().zip(&kl) {
            *n += wi * g * c;
        }
        den += wi * g;
    }
    let kbar: Vec<f64> = num.iter().map(|c| c / den).collect();
    let kb2 = (k * dot(&kbar, &kbar)).min(1.0);
    project(
        &kbar.iter().map(|c| c / (1.0 + (1.0 - kb2).sqrt())).collect::<Vec<_>>(),
        k,
    )
}

/// Most weighted points for which [`frechet_mean`] also tries every pair's two-point mean as
/// its start.
const START_PAIRS_MAX_POINTS: usize = 8;

/// Most weighted points for which [`frechet_mean`] takes Newton steps (it solves an n×n system);
/// with more it uses gradient steps only.
const NEWTON_MAX_POINTS: usize = 48;

/// The Newton step of `f(m) = Σ wᵢ·d(m, xᵢ)²` at m, in the ball's Euclidean coordinates, written
/// into `out`; false when there is none (too many points, a singular or non-finite system).
///
/// In orthonormal coordinates at m (`ξ = λ_m·v`), with `êᵢ` the unit vector toward xᵢ, `dᵢ` its
/// distance and `aᵢ = sᵢ·coth sᵢ`, `sᵢ = √κ·dᵢ`: the Hessian of `dᵢ²` is `2·êᵢêᵢᵀ` along the
/// geodesic and `2·aᵢ` across it, so (Σ wᵢ = 1) `H/2 = A·I + Σ wᵢ(1 − aᵢ)·êᵢêᵢᵀ`, `A = Σ wᵢaᵢ`,
/// and `−grad/2 = Σ wᵢdᵢ·êᵢ`. The step `ξ = Σ cⱼêⱼ` lies in the span of the êᵢ; matching
/// coefficients gives the n×n system `A·cᵢ + wᵢ(1 − aᵢ)·Σⱼ⟨êᵢ,êⱼ⟩cⱼ = wᵢdᵢ`, and
/// `v = ξ/λ_m = Σ cⱼ·logⱼ/(‖logⱼ‖·λ_m)`. A point at m itself adds `wᵢ` to A and nothing else.
#[allow(clippy::too_many_arguments)]
fn newton_direction(
    logs: &[f64],
    lens: &[f64],
    dists: &[f64],
    weighted: &[usize],
    w: &[f64],
    lam: f64,
    sk: f64,
    out: &mut [f64],
) -> bool {
    let dim = out.len();
    if weighted.len() > NEWTON_MAX_POINTS || dim == 0 {
        return false;
    }
    // The points m is not on: their indices into `weighted`.
    let far: Vec<usize> = (0..weighted.len()).filter(|&j| lens[j] > 0.0).collect();
    let mut a_total = 0.0;
    let mut across = Vec::with_capacity(far.len()); // aᵢ of the far points
    for (j, &i) in weighted.iter().enumerate() {
        let s = sk * dists[j];
        let a = if s < 1e-4 { 1.0 + s * s / 3.0 } else { s / s.tanh() };
        a_total += w[i] * a;
        if lens[j] > 0.0 {
            across.push(a);
        }
    }
    let n = far.len();
    if n == 0 {
        return false;
    }
    let log = |j: usize| &logs[j * dim..(j + 1) * dim];
    // Augmented matrix [M | r], row-major, n × (n + 1).
    let mut mat = vec![0.0; n * (n + 1)];
    for (r, &jr) in far.iter().enumerate() {
        let wi = w[weighted[jr]];
        for (c, &jc) in far.iter().enumerate() {
            let gram = dot(log(jr), log(jc)) / (lens[jr] * lens[jc]);
            mat[r * (n + 1) + c] = wi * (1.0 - across[r]) * gram + if r == c { a_total } else { 0.0 };
        }
        mat[r * (n + 1) + n] = wi * dists[jr];
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&a, &b| mat[a * (n + 1) + col].abs().total_cmp(&mat[b * (n + 1) + col].abs()))
            .unwrap_or(col);
        let size = mat[pivot * (n + 1) + col].abs();
        if size.is_nan() || size <= 1e-300 {
            return false;
        }
        if pivot != col {
            for c in 0..=n {
                mat.swap(pivot * (n + 1) + c, col * (n + 1) + c);
            }
        }
        for r in col + 1..n {
            let factor = mat[r * (n + 1) + col] / mat[col * (n + 1) + col];
            for c in col..=n {
                mat[r * (n + 1) + c] -= factor * mat[col * (n + 1) + c];
            }
        }
    }
    let mut coef = vec![0.0; n];
    for r in (0..n).rev() {
        let tail: f64 = (r + 1..n).map(|c| mat[r * (n + 1) + c] * coef[c]).sum();
        coef[r] = (mat[r * (n + 1) + n] - tail) / mat[r * (n + 1) + r];
    }
    out.fill(0.0);
    for (c, &j) in coef.iter().zip(&far) {
        let scale = c / (lens[j] * lam);
        for (o, l) in out.iter_mut().zip(log(j)) {
            *o += scale * l;
        }
    }
    out.iter().all(|c| c.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A point at hyperbolic radius `r` from the origin in direction `dir`.
    fn at_radius(dir: &[f64], r: f64, kappa: f64) -> Vec<f64> {
        let n = norm(dir).max(1e-12);
        let s = (r * kappa.sqrt() / 2.0).tanh() / kappa.sqrt();
        dir.iter().map(|c| c / n * s).collect()
    }

    fn point(dim: usize, max_r: f64) -> impl Strategy<Value = Vec<f64>> {
        (prop::collection::vec(-1.0..1.0f64, dim), 0.0..max_r).prop_map(move |(d, r)| at_radius(&d, r, 1.0))
    }

    fn rescale(p: &[f64], kappa: f64) -> Vec<f64> {
        p.iter().map(|c| c / kappa.sqrt()).collect()
    }

    /// The Fréchet mean's descent as first written: no closed forms, η from 1 at every step, one
    /// `log_map` per point and one `exp_map` per trial step. Slow and plain: the yardstick for
    /// `frechet_mean`.
    fn frechet_mean_by_maps(points: &[Vec<f64>], weights: &[f64], kappa: f64) -> Vec<f64> {
        let k = clamp_kappa(kappa);
        let total: f64 = weights.iter().sum();
        let pts: Vec<Vec<f64>> = points.iter().map(|p| project(p, k)).collect();
        let w: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let dim = pts[0].len();
        let mut m = einstein_midpoint(&pts, &w, k);
        let objective = |m: &[f64]| -> f64 {
            pts.iter()
                .zip(&w)
                .map(|(p, wi)| {
                    let d = distance(m, p, k);
                    wi * d * d
                })
                .sum()
        };
        let mut f = objective(&m);
        for _ in 0..100 {
            let mut g = vec![0.0; dim];
            for (p, wi) in pts.iter().zip(&w) {
                if *wi == 0.0 {
                    continue;
                }
                for (gi, li) in g.iter_mut().zip(log_map(&m, p, k)) {
                    *gi += wi * li;
                }
            }
            if conformal_factor(&m, k) * norm(&g) < 1e-13 {
                break;
            }
            let mut eta = 1.0;
            let mut improved = false;
            for _ in 0..30 {
                let cand = exp_map(&m, &g.iter().map(|c| c * eta).collect::<Vec<_>>(), k);
                let fc = objective(&cand);
                if fc < f {
                    m = cand;
                    f = fc;
                    improved = true;
                    break;
                }
                eta *= 0.5;
            }
            if !improved {
                break;
            }
        }
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn distance_satisfies_the_metric_axioms_and_triangle_inequality(
            (x, y, z) in (2usize..9).prop_flat_map(|d| (point(d, 12.0), point(d, 12.0), point(d, 12.0))),
            kappa in 0.05..5.0f64,
        ) {
            let (x, y, z) = (rescale(&x, kappa), rescale(&y, kappa), rescale(&z, kappa));
            let dxy = distance(&x, &y, kappa);
            prop_assert_eq!(distance(&x, &x, kappa), 0.0);
            prop_assert!(dxy >= 0.0);
            prop_assert_eq!(dxy, distance(&y, &x, kappa));
            let lhs = distance(&x, &z, kappa);
            let rhs = dxy + distance(&y, &z, kappa);
            prop_assert!(lhs <= rhs * (1.0 + 1e-9) + 1e-9, "{lhs} > {rhs}");
        }

        #[test]
        fn mobius_translation_preserves_distance(
            (a, x, y) in (2usize..9).prop_flat_map(|d| (point(d, 4.0), point(d, 4.0), point(d, 4.0))),
            kappa in 0.1..3.0f64,
        ) {
            let (a, x, y) = (rescale(&a, kappa), rescale(&x, kappa), rescale(&y, kappa));
            let before = distance(&x, &y, kappa);
            let after = distance(&mobius_add(&a, &x, kappa), &mobius_add(&a, &y, kappa), kappa);
            prop_assert!((before - after).abs() <= 1e-7 * (1.0 + before), "{before} vs {after}");
        }

        #[test]
        fn rotation_preserves_distance(
            (x, y) in (point(3, 10.0), point(3, 10.0)),
            angle in 0.0..6.3f64,
        ) {
            let rot = |p: &[f64]| vec![p[0] * angle.cos() - p[1] * angle.sin(), p[0] * angle.sin() + p[1] * angle.cos(), p[2]];
            let before = distance(&x, &y, 1.0);
            let after = distance(&rot(&x), &rot(&y), 1.0);
            prop_assert!((before - after).abs() <= 1e-7 * (1.0 + before));
        }

        #[test]
        fn exp_of_log_returns_to_the_target_point(
            (x, y) in (2usize..9).prop_flat_map(|d| (point(d, 6.0), point(d, 6.0))),
            kappa in 0.1..3.0f64,
        ) {
            let (x, y) = (rescale(&x, kappa), rescale(&y, kappa));
            let back = exp_map(&x, &log_map(&x, &y, kappa), kappa);
            prop_assert!(distance(&back, &y, kappa) <= 1e-6, "off by {}", distance(&back, &y, kappa));
            // The Riemannian length of log_x(y) is the distance.
            let len = conformal_factor(&x, kappa) * norm(&log_map(&x, &y, kappa));
            let d = distance(&x, &y, kappa);
            prop_assert!((len - d).abs() <= 1e-7 * (1.0 + d));
        }

        #[test]
        fn midpoint_of_a_geodesic_is_equidistant_from_both_ends(
            (x, y) in (2usize..9).prop_flat_map(|d| (point(d, 8.0), point(d, 8.0))),
            kappa in 0.1..3.0f64,
        ) {
            let (x, y) = (rescale(&x, kappa), rescale(&y, kappa));
            let m = geodesic(&x, &y, 0.5, kappa);
            let (a, b, d) = (distance(&x, &m, kappa), distance(&m, &y, kappa), distance(&x, &y, kappa));
            prop_assert!((a - b).abs() <= 1e-6 * (1.0 + d), "{a} vs {b}");
            prop_assert!((a + b - d).abs() <= 1e-6 * (1.0 + d));
        }

        #[test]
        fn every_function_stays_finite_for_any_finite_input(
            x in prop::collection::vec(-1e300..1e300f64, 1..6),
            y in prop::collection::vec(-1e300..1e300f64, 1..6),
            kappa in prop_oneof![Just(0.0), Just(-1.0), 1e-20..1e20f64],
            t in -1e10..1e10f64,
        ) {
            let d = distance(&x, &y, kappa);
            prop_assert!(d.is_finite() && d >= 0.0);
            for v in [project(&x, kappa), mobius_add(&x, &y, kappa), exp_map(&x, &y, kappa),
                      log_map(&x, &y, kappa), geodesic(&x, &y, t, kappa)] {
                prop_assert!(v.iter().all(|c| c.is_finite()), "{v:?}");
            }
            let p = project(&x, kappa);
            prop_assert!(clamp_kappa(kappa).sqrt() * norm(&p) <= MAX_SCALED_NORM);
        }

        #[test]
        fn frechet_mean_reaches_the_minimum_the_plain_descent_with_log_and_exp_maps_reaches(
            pts in (1usize..9).prop_flat_map(|d| prop::collection::vec(point(d, 12.0), 1..6)),
            weights in prop::collection::vec(prop_oneof![Just(0.0), 0.0..5.0f64], 6),
            kappa in prop_oneof![Just(1.0), 0.05..20.0f64],
        ) {
            let pts: Vec<Vec<f64>> = pts.iter().map(|p| rescale(p, kappa)).collect();
            let mut weights = weights[..pts.len()].to_vec();
            weights[0] += 0.5;
            let fast = frechet_mean(&pts, &weights, kappa).unwrap();
            let reference = frechet_mean_by_maps(&pts, &weights, kappa);
            let objective = |m: &[f64]| -> f64 {
                pts.iter().zip(&weights).map(|(p, w)| w * distance(m, p, kappa).powi(2)).sum()
            };
            let (f, f_ref) = (objective(&fast), objective(&reference));
            // Near the edge the closed forms and the descent round differently: 10⁻⁹ relative
            // (the early stop the gradient check below catches cost 5·10⁻⁷).
            prop_assert!(f <= f_ref + 1e-9 * (1.0 + f_ref), "objective {f} against {f_ref}");
            // The objective is strictly convex, so a zero gradient is its minimum. (The plain
            // descent's own gradient is not always zero: it can stop early, e.g. 0.06 for
            // three points at distances up to 5.)
            let total: f64 = weights.iter().sum();
            let mut grad = vec![0.0; fast.len()];
            let mut farthest: f64 = 0.0;
            for (p, w) in pts.iter().zip(&weights) {
                for (g, l) in grad.iter_mut().zip(log_map(&fast, p, kappa)) {
                    *g += w / total * l;
                }
                farthest = farthest.max(distance(&fast, p, kappa));
            }
            let grad = conformal_factor(&fast, kappa) * norm(&grad);
            // log_map loses digits near the edge: rounding of order ε·λ² at conformal factor λ
            // (2·10⁻¹³·λ² covers what was seen, ~6·10⁻⁶ at λ = 1.7·10⁴).
            let edge = pts.iter().map(|p| conformal_factor(p, kappa)).fold(1.0, f64::max);
            let tolerance = 1e-8 * (1.0 + farthest) + 1e-13 * edge * edge;
            prop_assert!(grad <= tolerance, "gradient {grad} at the mean (tolerance {tolerance})");
        }

        #[test]
        fn frechet_mean_near_the_edge_is_never_worse_than_the_plain_descent(
            (base, spread, offsets) in (2usize..12).prop_flat_map(|d| (
                prop::collection::vec(-1.0..1.0f64, d),
                6.0..10.0f64,
                prop::collection::vec((prop::collection::vec(-1.0..1.0f64, d), 22.0..30.0f64), 2..5),
            )),
        ) {
            // Points around one direction, as a tree embedding puts the nodes of one region (at
            // radius 29, 10⁻⁸ rad apart is ~19 apart): their mean is far out too, where the
            // coordinates have lost digits.
            let spread = 10f64.powf(-spread);
            let pts: Vec<Vec<f64>> = offsets
                .iter()
                .map(|(o, r)| {
                    let dir: Vec<f64> = base.iter().zip(o).map(|(b, o)| b + spread * o).collect();
                    at_radius(&dir, *r, 1.0)
                })
                .collect();
            let weights = vec![1.0; pts.len()];
            let fast = frechet_mean(&pts, &weights, 1.0).unwrap();
            let reference = frechet_mean_by_maps(&pts, &weights, 1.0);
            let objective = |m: &[f64]| -> f64 { pts.iter().map(|p| distance(m, p, 1.0).powi(2)).sum() };
            let (f, f_ref) = (objective(&fast), objective(&reference));
            // Out here `distance` itself rounds at ~10⁻⁵ relative; the two stopping rules differ
            // below that (Newton stepping outward into lost digits was 15 % worse).
            prop_assert!(f <= f_ref * (1.0 + 1e-6), "objective {f} against {f_ref}");
        }

        #[test]
        fn frechet_mean_of_two_points_divides_their_distance_in_the_inverse_ratio_of_the_weights(
            (x, y) in (2usize..6).prop_flat_map(|d| (point(d, 5.0), point(d, 5.0))),
            (a, b) in (0.1..5.0f64, 0.1..5.0f64),
        ) {
            // The minimiser of a·d(m,x)² + b·d(m,y)² lies on the geodesic with
            // d(m,x) = b/(a+b)·D and d(m,y) = a/(a+b)·D: checked with `distance` alone.
            let m = frechet_mean(&[x.clone(), y.clone()], &[a, b], 1.0).unwrap();
            let whole = distance(&x, &y, 1.0);
            let (dx, dy) = (distance(&m, &x, 1.0), distance(&m, &y, 1.0));
            prop_assert!((dx - b / (a + b) * whole).abs() <= 1e-6 * (1.0 + whole), "{dx} of {whole}");
            prop_assert!((dy - a / (a + b) * whole).abs() <= 1e-6 * (1.0 + whole), "{dy} of {whole}");
        }
    }

    #[test]
    fn distance_of_points_whose_squared_norm_rounds_past_the_edge_is_finite() {
        // √(x₀² + x₁²) rounds to ≤ MAX_SCALED_NORM (so `project` keeps x) while x₀² + x₁² rounds
        // above MAX_SCALED_NORM²: this used to recurse until the stack overflowed.
        let mut found = 0;
        for i in 0..2000 {
            let a = f64::from(i) * 0.001;
            let r = MAX_SCALED_NORM - f64::from(i % 8) * f64::EPSILON / 2.0;
            let x = [r * a.cos(), r * a.sin()];
            let n2 = x[0] * x[0] + x[1] * x[1];
            if n2.sqrt() <= MAX_SCALED_NORM && n2 > MAX_SCALED_NORM * MAX_SCALED_NORM {
                found += 1;
                let d = distance(&x, &[0.0, 0.0], 1.0);
                assert!(d.is_finite() && d > 30.0, "{d}");
                assert_eq!(distance(&x, &x, 1.0), 0.0);
            }
        }
        assert!(found > 0, "no edge point found: the test would not exercise the clamp");
    }

    #[test]
    fn distance_from_origin_matches_the_closed_form() {
        let x = at_radius(&[1.0, 2.0, -1.0], 7.5, 1.0);
        assert!((distance(&x, &[0.0; 3], 1.0) - 7.5).abs() < 1e-9);
        assert!((distance_from_origin(&x, 1.0) - 7.5).abs() < 1e-9);
    }

    #[test]
    fn points_beyond_the_representable_radius_saturate_without_nan() {
        let far = at_radius(&[1.0, 0.0], 80.0, 1.0);
        let d = distance(&far, &[0.0, 0.0], 1.0);
        assert!(d.is_finite() && d > 34.0 && d <= MAX_RADIUS + 0.1, "{d}");
        let opposite: Vec<f64> = far.iter().map(|c| -c).collect();
        assert!(distance(&far, &opposite, 1.0) <= 2.0 * MAX_RADIUS + 0.2);
    }

    #[test]
    fn frechet_mean_with_all_weight_on_one_point_is_that_point() {
        let pts = vec![vec![0.3, 0.1], vec![-0.5, 0.2], vec![0.0, -0.7]];
        let m = frechet_mean(&pts, &[0.0, 2.0, 0.0], 1.0).unwrap();
        assert!(distance(&m, &pts[1], 1.0) < 1e-9);
    }

    #[test]
    fn frechet_mean_rejects_bad_input_with_a_clear_error() {
        assert!(matches!(frechet_mean(&[], &[], 1.0), Err(GeometryError::EmptyInput(_))));
        let pts = vec![vec![0.1, 0.1], vec![0.2, 0.0]];
        assert!(matches!(
            frechet_mean(&pts, &[1.0], 1.0),
            Err(GeometryError::LengthMismatch { .. })
        ));
        let err = frechet_mean(&pts, &[1.0, -2.0], 1.0).unwrap_err();
        assert!(err.to_string().contains("-2"), "{err}");
        assert!(matches!(
            frechet_mean(&pts, &[0.0, 0.0], 1.0),
            Err(GeometryError::ZeroTotalWeight)
        ));
        assert!(matches!(
            frechet_mean(&[vec![0.1], vec![0.1, 0.2]], &[1.0, 1.0], 1.0),
            Err(GeometryError::DimensionMismatch { index: 1, .. })
        ));
    }

    #[test]
    fn works_in_512_dimensions() {
        let x: Vec<f64> = (0..512).map(|i| ((i as f64) * 0.37).sin() * 0.04).collect();
        let y: Vec<f64> = (0..512).map(|i| ((i as f64) * 0.11).cos() * 0.04).collect();
        let m = geodesic(&x, &y, 0.5, 1.0);
        let (a, b) = (distance(&x, &m, 1.0), distance(&m, &y, 1.0));
        assert!((a - b).abs() < 1e-9);
    }

    #[test]
    fn a_geodesic_step_moves_exactly_the_step_length_and_stops_at_the_goal() {
        let x = vec![0.3, -0.2];
        let y = vec![-0.5, 0.6];
        let d = distance(&x, &y, 1.0);
        let p = geodesic_step(&x, &y, d / 4.0, 1.0);
        assert!((distance(&x, &p, 1.0) - d / 4.0).abs() < 1e-9);
        assert!((distance(&p, &y, 1.0) - 3.0 * d / 4.0).abs() < 1e-9);
        assert_eq!(geodesic_step(&x, &y, 2.0 * d, 1.0), y);
        assert_eq!(geodesic_step(&x, &y, f64::NAN, 1.0), x);
        assert_eq!(geodesic_step(&x, &y, -1.0, 1.0), x);
    }
}
