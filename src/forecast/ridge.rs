//! Learned forecaster: ridge regression on lags, moving means and seasonal features, one direct
//! model per step ahead, refitted on the window at every `forecast`.
//!
//! Features at origin i (values known up to y_{i−1}, target y_{i+h−1}), all standardised by the
//! window's mean and standard deviation: lags y_{i−1..i−6}; means of the last 6 and 24 values;
//! with a detected season m: y_{i+h−1−m·k} (same phase one season back, k = ⌈h/m⌉), the mean of
//! its two neighbours, and y_{i−1−m}; plus an intercept.
//! Robust cleaning: each value is clipped to its causal local level (median of the previous 12
//! cleaned values) ± 6σ̂, σ̂ = MAD scale of the first differences — NAB spikes of 1000× the level
//! would otherwise dominate the squared loss, while a lasting level shift passes after a few
//! steps. The cleaned window is centred on its median and scaled by its MAD. With two
//! detected seasons (e.g. daily and weekly) both sets of seasonal features are used.
//! Weights `w = (XᵀX + λI)⁻¹ Xᵀy` (λ = 1 + 0.01·rows, intercept unpenalised) by Cholesky.

use super::{ForecastError, Forecaster, check_history, check_horizon, detect_seasons, robust_centre_scale};

const LAGS: usize = 6;
const LONG_MEAN: usize = 24;
const MIN_ROWS: usize = 20;

/// Ridge regression on lag features (direct multi-step).
#[derive(Debug, Clone, PartialEq)]
pub struct RidgeLags {
    pub max_season: usize,
    pub redetect_every: usize,
    fits_since_detect: usize,
    seasons: Vec<usize>,
    /// Cleaned window, centred and scaled: `z = (clean(y) − mu) / sd`.
    z: Vec<f64>,
    mu: f64,
    sd: f64,
}

impl Default for RidgeLags {
    fn default() -> Self {
        Self {
            max_season: 400,
            redetect_every: 24,
            fits_since_detect: usize::MAX,
            seasons: Vec::new(),
            z: Vec::new(),
            mu: 0.0,
            sd: 1.0,
        }
    }
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        0.0
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// Feature vector for origin `i`, step `h`, season `m` (None = no seasonal features).
fn features(z: &[f64], i: usize, h: usize, ms: &[usize], out: &mut Vec<f64>) {
    out.clear();
    out.push(1.0);
    for l in 1..=LAGS {
        out.push(z[i - l]);
    }
    out.push(mean(&z[i - LAGS..i]));
    out.push(mean(&z[i - LONG_MEAN..i]));
    for &m in ms {
        let back = m * h.div_ceil(m);
        let j = i + h - 1 - back;
        out.push(z[j]);
        let lo = j.saturating_sub(1);
        let hi = (j + 1).min(i - 1);
        out.push(0.5 * (z[lo] + z[hi]));
        out.push(z[i - 1 - m]);
    }
}

/// First origin with every feature defined.
fn first_origin(ms: &[usize]) -> usize {
    ms.iter().fold(LONG_MEAN, |a, &m| a.max(m + 2))
}

/// Solves `(A + λI') w = b` for symmetric positive-definite A by Cholesky; None if singular.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        if s <= 1e-12 {
            return None;
        }
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / l;
        }
    }
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * d + k] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= a[k * d + i] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    Some(b)
}

/// Clips spikes: `x_i ← clamp(x_i, m_i − 6σ̂, m_i + 6σ̂)`, m_i = median of the previous 12
/// cleaned values, σ̂ = 1.4826 · MAD of the first differences (see module doc).
fn clean(y: &[f64]) -> Vec<f64> {
    let diffs: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let (_, scale) = robust_centre_scale(&diffs);
    let band = 6.0 * scale;
    let mut out: Vec<f64> = Vec::with_capacity(y.len());
    for (i, &v) in y.iter().enumerate() {
        if i < 3 {
            out.push(v);
            continue;
        }
        let local = super::median(&out[i.saturating_sub(12)..i]);
        out.push(v.clamp(local - band, local + band));
    }
    out
}

impl RidgeLags {
    fn seasons_for(&self, n: usize, h: usize) -> Vec<usize> {
        self.seasons
            .iter()
            .copied()
            .filter(|&m| n >= first_origin(&[m]) + h + MIN_ROWS.max(2 * m))
            .collect()
    }

    /// Weights of the direct model for step `h` and the seasons it uses.
    fn weights(&self, h: usize) -> Result<(Vec<f64>, Vec<usize>), ForecastError> {
        let n = self.z.len();
        if n == 0 {
            return Err(ForecastError::NotFitted);
        }
        let m = self.seasons_for(n, h);
        let w = self.weights_upto(h, &m, n)?;
        Ok((w, m))
    }

    /// Weights for step `h` with seasons `m`, trained only on targets before index `end`
    /// (origins `i0..=end − h`).
    fn weights_upto(&self, h: usize, m: &[usize], end: usize) -> Result<Vec<f64>, ForecastError> {
        let z = &self.z;
        let n = end.min(z.len());
        let i0 = first_origin(m);
        if n < i0 + h + MIN_ROWS {
            return Err(ForecastError::TooShort {
                got: n,
                need: i0 + h + MIN_ROWS,
            });
        }
        let mut x = Vec::new();
        features(z, i0, h, m, &mut x);
        let d = x.len();
        let mut xtx = vec![0.0; d * d];
        let mut xty = vec![0.0; d];
        let mut rows = 0usize;
        for i in i0..=n - h {
            features(z, i, h, m, &mut x);
            let target = z[i + h - 1];
            for a in 0..d {
                xty[a] += x[a] * target;
                for b in 0..=a {
                    xtx[a * d + b] += x[a] * x[b];
                }
            }
            rows += 1;
        }
        for a in 0..d {
            for b in 0..a {
                xtx[b * d + a] = xtx[a * d + b];
            }
        }
        let lambda = 1.0 + 0.01 * rows as f64;
        for a in 1..d {
            xtx[a * d + a] += lambda;
        }
        xtx[0] += 1e-9;
        solve_spd(xtx, xty, d).ok_or(ForecastError::NotFitted)
    }

    fn predict_with(&self, w: &[f64], m: &[usize], i: usize, h: usize, x: &mut Vec<f64>) -> f64 {
        features(&self.z, i, h, m, x);
        let pred: f64 = w.iter().zip(x.iter()).map(|(a, b)| a * b).sum();
        self.mu + self.sd * pred
    }

    fn forecast_step(&self, h: usize) -> Result<f64, ForecastError> {
        let (w, m) = self.weights(h)?;
        Ok(self.predict_with(&w, &m, self.z.len(), h, &mut Vec::new()))
    }

    /// The step-`h` forecast and held-out step-`h` forecasts from origins `from..=n − h`
    /// (`out[t − from]`), for validation inside the window: the validation forecasts come from
    /// weights trained only on targets before `from`, so they are out of sample.
    pub fn forecast_and_validation(&self, h: usize, from: usize) -> Result<(f64, Vec<f64>), ForecastError> {
        check_horizon(h)?;
        let (w, m) = self.weights(h)?;
        let n = self.z.len();
        let held = self.weights_upto(h, &m, from)?;
        let mut x = Vec::new();
        let validation = (from..=n.saturating_sub(h))
            .map(|t| self.predict_with(&held, &m, t, h, &mut x))
            .collect();
        Ok((self.predict_with(&w, &m, n, h, &mut x), validation))
    }
}

impl Forecaster for RidgeLags {
    fn name(&self) -> &'static str {
        "ridge"
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        check_history(history, first_origin(&[]) + 1 + MIN_ROWS)?;
        if self.fits_since_detect >= self.redetect_every.max(1) {
            self.seasons = detect_seasons(history, 2, self.max_season, 0.3);
            self.fits_since_detect = 0;
        }
        self.fits_since_detect += 1;
        let y = clean(history);
        let (mu, sd) = robust_centre_scale(&y);
        self.z = y.iter().map(|v| (v - mu) / sd).collect();
        self.mu = mu;
        self.sd = sd;
        Ok(())
    }

    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError> {
        check_horizon(horizon)?;
        if self.z.is_empty() {
            return Err(ForecastError::NotFitted);
        }
        (1..=horizon).map(|h| self.forecast_step(h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::tests::seasonal_series;

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4,2],[2,3]] w = [2, 1] → w = [0.5, 0].
        let w = solve_spd(vec![4.0, 2.0, 2.0, 3.0], vec![2.0, 1.0], 2).unwrap();
        assert!((w[0] - 0.5).abs() < 1e-12 && w[1].abs() < 1e-12);
        assert!(solve_spd(vec![0.0; 4], vec![1.0, 1.0], 2).is_none());
    }

    #[test]
    fn held_out_validation_forecasts_cover_the_validation_origins_or_fail_when_too_short() {
        let s = seasonal_series(24 * 12, 24);
        let mut r = RidgeLags::default();
        r.fit(&s).unwrap();
        let n = s.len();
        let (f, v) = r.forecast_and_validation(3, n - 60).unwrap();
        assert_eq!(f, r.forecast(3).unwrap()[2]);
        assert_eq!(v.len(), 60 - 3 + 1);
        // Out of sample but on a clean periodic series: still close to the truth.
        let mae: f64 = v.iter().zip(&s[n - 60 + 2..]).map(|(p, y)| (p - y).abs()).sum::<f64>() / v.len() as f64;
        assert!(mae < 3.0, "mae {mae}");
        assert!(matches!(
            r.forecast_and_validation(3, 30),
            Err(ForecastError::TooShort { .. })
        ));
        assert_eq!(r.forecast_and_validation(0, 100), Err(ForecastError::BadHorizon(0)));
    }

    #[test]
    fn seasonal_pattern_is_learned_from_the_window() {
        let s = seasonal_series(24 * 12, 24);
        let mut r = RidgeLags::default();
        r.fit(&s[..24 * 11]).unwrap();
        let f = r.forecast(12).unwrap();
        let mae: f64 = f.iter().zip(&s[24 * 11..]).map(|(a, b)| (a - b).abs()).sum::<f64>() / 12.0;
        assert!(mae < 3.0, "mae {mae}");
    }
}
