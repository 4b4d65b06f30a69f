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
    let sk = clamp_kappa(kappa).sqrt();
    let mut v: Vec<f64> = x.iter().map(|a| sanitize(*a)).collect();
    let s = sk * norm(&v);
    if s > MAX_SCALED_NORM || !s.is_finite() {
        // Divide in two steps so that a huge norm cannot underflow the factor to 0.
        let n = norm(&v);
        for c in &mut v {
            *c = (*c / n) * (PROJECTED_SCALED_NORM / sk);
        }
    }
    v
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
    let xy = dot(&x, &y);
    let x2 = dot(&x, &x);
    let y2 = dot(&y, &y);
    let a = 1.0 + 2.0 * k * xy + k * y2;
    let b = 1.0 - k * x2;
    // Clamp: the denominator is positive in exact arithmetic; keep it so after rounding.
    let den = (1.0 + 2.0 * k * xy + k * k * x2 * y2).max(f64::MIN_POSITIVE);
    let out: Vec<f64> = x.iter().zip(&y).map(|(xi, yi)| (a * xi + b * yi) / den).collect();
    project(&out, k)
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
/// Starts from the weighted Einstein midpoint (computed in the Klein model) and runs Riemannian
/// gradient descent `m ← exp_m(η·Σ wᵢ log_m(xᵢ) / Σ wᵢ)` with η = 1, halved while the objective
/// does not decrease, for at most 100 steps or until the step is below 10⁻¹³ (hyperbolic).
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

    // Einstein midpoint: Klein kᵢ = 2xᵢ/(1+κ‖xᵢ‖²), γᵢ = 1/√(1−κ‖kᵢ‖²); k̄ = Σwᵢγᵢkᵢ/Σwᵢγᵢ;
    // back to Poincaré: x = k̄/(1+√(1−κ‖k̄‖²)).
    let mut num = vec![0.0; dim];
    let mut den = 0.0;
    for (p, wi) in pts.iter().zip(&w) {
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
    let mut m: Vec<f64> = project(
        &kbar.iter().map(|c| c / (1.0 + (1.0 - kb2).sqrt())).collect::<Vec<_>>(),
        k,
    );

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
        let step_len = conformal_factor(&m, k) * norm(&g);
        if step_len < 1e-13 {
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
    Ok(m)
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
        fn frechet_mean_of_two_equal_weights_is_the_geodesic_midpoint(
            (x, y) in (2usize..6).prop_flat_map(|d| (point(d, 5.0), point(d, 5.0))),
        ) {
            let m = frechet_mean(&[x.clone(), y.clone()], &[1.0, 1.0], 1.0).unwrap();
            let mid = geodesic(&x, &y, 0.5, 1.0);
            prop_assert!(distance(&m, &mid, 1.0) <= 1e-5, "{}", distance(&m, &mid, 1.0));
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
