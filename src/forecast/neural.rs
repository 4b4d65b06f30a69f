//! Neural forecaster: a small feed-forward network on lag windows (N-BEATS-style MLP with a
//! linear skip), trained online by Adam on the L1 loss and warm-started across fits; its
//! validation forecasts are prequential (each made before its targets were trained on).
//!
//! **Inputs at origin t** (the values `y[..t]` known): the last [`LAGS`] values and, when a
//! season m is known, the seasonal-naive forecasts `y[t + h − 1 − m·⌈h/m⌉]` for h = 1..=[`OUT`],
//! plus a flag saying whether those are present; all normalised by the window's centre and scale
//! `x̃ = clip((x − c)/s, ±CLIP)` with `c = mean(y[t−LAGS..t])` and
//! `s = max(mean|y[t−LAGS..t] − c|, ¼·s̄, 10⁻⁹·(1 + |c|))`, s̄ an exponential mean of the local
//! scales seen (so a flat stretch does not blow the inputs up).
//!
//! **Network**: `o = W₂ tanh(W₁ x̃ + b₁) + b₂ + W_s x̃`, [`HIDDEN`] hidden units, [`OUT`] outputs,
//! one direct output per step ahead; the forecast is `ŷ(h) = c + s·o_h`. `W_s` starts as the
//! naive forecast (`o_h = x̃_last`), `W₂` near 0, so an untrained network forecasts the last value.
//!
//! **Training** (L1, the loss MASE is scored with): when `y[j]` arrives, the origin
//! `j + 1 − OUT` has all its targets; one Adam step on it (gradient `sign(o − ỹ)/OUT`), then
//! [`REPLAY`] steps on origins drawn uniformly from the complete ones still in the window
//! (ChaCha8 from the seed: same histories → same weights, bit for bit on one platform — `tanh`
//! comes from the platform's maths library); then the forecast from
//! origin `j + 1` is made and stored. A fit whose history continues the previous one (the old
//! window's tail is the new one's head) only consumes the new points: warm start. Any other
//! history resets the network to its seeded initial weights and streams the whole window.
//!
//! Why by hand and not a tensor crate: the network has 1,256 weights ([`PARAMS`]); a step is
//! ~2,700 multiply-adds for the gradient plus the Adam update of the weights, so per-call
//! dispatch and allocation of a general framework (candle, burn)
//! would cost more than the arithmetic, and exact reproducibility is simplest with one loop
//! order in plain `f64`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

use super::seasonal_naive::seasonal_naive_at;
use super::{ForecastError, Forecaster, check_history, check_horizon, detect_season};

/// Lagged values the network sees.
pub const LAGS: usize = 24;
/// Steps ahead forecast directly (later steps repeat the last).
pub const OUT: usize = 12;
/// Inputs: lags, seasonal-naive forecasts per step, and the "season known" flag.
const D_IN: usize = LAGS + OUT + 1;
/// Hidden units.
pub const HIDDEN: usize = 16;
/// Replayed origins per new point.
pub const REPLAY: usize = 3;
/// Normalised inputs are clipped to ±CLIP.
const CLIP: f64 = 20.0;
/// Forecasts kept for validation: the origins the ensemble scores, `min(500, ⌊n/3⌋)` of a
/// window of n, plus the one from the window's end.
fn kept_for(n: usize) -> usize {
    (n / 3).min(super::MAX_VALIDATION) + 1
}
/// The season is re-detected every this many points consumed.
const REDETECT: u64 = 1000;
/// Shortest history: the lags, plus the targets of one origin.
pub const MIN_HISTORY: usize = LAGS + OUT;
/// While no season is known, detection is retried every this many points.
const DETECT_EVERY: u64 = 100;

// Parameter layout in one vector.
const W1: usize = 0;
const B1: usize = W1 + HIDDEN * D_IN;
const W2: usize = B1 + HIDDEN;
const B2: usize = W2 + OUT * HIDDEN;
const WS: usize = B2 + OUT;
/// Number of weights.
pub const PARAMS: usize = WS + OUT * D_IN;

/// Settings of the neural forecaster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeuralConfig {
    /// Seed of the initial weights and of the replay draws.
    pub seed: u64,
    /// Adam step size.
    pub learning_rate: f64,
}

impl Default for NeuralConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            learning_rate: 2e-3,
        }
    }
}

/// The online neural forecaster (see the module doc).
#[derive(Debug, Clone)]
pub struct Neural {
    config: NeuralConfig,
    w: Vec<f64>,
    adam_m: Vec<f64>,
    adam_v: Vec<f64>,
    steps: u64,
    rng: ChaCha8Rng,
    scale_mean: f64,
    season: Option<usize>,
    /// The window of the last fit.
    history: Vec<f64>,
    /// Points consumed since the last reset: `history` is `[consumed − len, consumed)`.
    consumed: u64,
    consumed_at_detect: u64,
    /// Forecasts from origins `first_kept ..`, in absolute indices.
    kept: VecDeque<[f64; OUT]>,
    first_kept: u64,
    keep: usize,
    /// Fits that warm-started (continued the previous window) and that reset.
    pub warm_fits: u64,
    pub cold_fits: u64,
}

impl Default for Neural {
    fn default() -> Self {
        Self::new(NeuralConfig::default())
    }
}

/// Centre, scale and normalised inputs at origin `t` of `y` (t ≥ LAGS).
struct Frame {
    c: f64,
    s: f64,
    x: [f64; D_IN],
}

impl Neural {
    pub fn new(config: NeuralConfig) -> Self {
        let mut n = Self {
            config,
            w: vec![0.0; PARAMS],
            adam_m: vec![0.0; PARAMS],
            adam_v: vec![0.0; PARAMS],
            steps: 0,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            scale_mean: 0.0,
            season: None,
            history: Vec::new(),
            consumed: 0,
            consumed_at_detect: 0,
            kept: VecDeque::new(),
            first_kept: 0,
            keep: 1,
            warm_fits: 0,
            cold_fits: 0,
        };
        n.reset();
        n
    }

    /// Seeded initial weights, empty optimiser state and memory.
    fn reset(&mut self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        let a1 = 1.0 / (D_IN as f64).sqrt();
        let a2 = 0.1 / (HIDDEN as f64).sqrt();
        self.w.fill(0.0);
        for v in &mut self.w[W1..B1] {
            *v = rng.random_range(-a1..a1);
        }
        for v in &mut self.w[W2..B2] {
            *v = rng.random_range(-a2..a2);
        }
        // Skip path = the naive forecast: o_h = x̃[LAGS − 1].
        for h in 0..OUT {
            self.w[WS + h * D_IN + LAGS - 1] = 1.0;
        }
        self.adam_m.fill(0.0);
        self.adam_v.fill(0.0);
        self.steps = 0;
        self.rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x9e37_79b9_7f4a_7c15);
        self.scale_mean = 0.0;
        self.season = None;
        self.history.clear();
        self.consumed = 0;
        self.consumed_at_detect = 0;
        self.kept.clear();
        self.first_kept = 0;
    }

    /// Bytes this forecaster holds (weights, optimiser state, window, kept forecasts).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 8 * (self.w.capacity() + self.adam_m.capacity() + self.adam_v.capacity() + self.history.capacity())
            + self.kept.capacity() * std::mem::size_of::<[f64; OUT]>()
    }

    /// The season the inputs use, if any.
    pub fn season(&self) -> Option<usize> {
        self.season
    }

    fn frame(&self, y: &[f64], t: usize) -> Frame {
        let lags = &y[t - LAGS..t];
        let (c, local) = centre_and_spread(lags);
        let s = local.max(0.25 * self.scale_mean).max(1e-9 * (1.0 + c.abs()));
        let norm = |v: f64| ((v - c) / s).clamp(-CLIP, CLIP);
        let mut x = [0.0; D_IN];
        for (xi, &v) in x.iter_mut().zip(lags) {
            *xi = norm(v);
        }
        if let Some(m) = self.season {
            let prefix = &y[..t];
            if (1..=OUT).all(|h| seasonal_naive_at(prefix, m, h).is_some()) {
                for h in 1..=OUT {
                    x[LAGS + h - 1] = norm(seasonal_naive_at(prefix, m, h).unwrap_or(c));
                }
                x[D_IN - 1] = 1.0;
            }
        }
        Frame { c, s, x }
    }

    /// Network output (normalised) and the hidden activations.
    fn forward(&self, x: &[f64; D_IN]) -> ([f64; OUT], [f64; HIDDEN]) {
        let w = &self.w;
        let mut a = [0.0; HIDDEN];
        for (j, aj) in a.iter_mut().enumerate() {
            let row = &w[W1 + j * D_IN..W1 + (j + 1) * D_IN];
            let z = w[B1 + j] + row.iter().zip(x).map(|(p, q)| p * q).sum::<f64>();
            *aj = z.tanh();
        }
        let mut o = [0.0; OUT];
        for (h, oh) in o.iter_mut().enumerate() {
            let r2 = &w[W2 + h * HIDDEN..W2 + (h + 1) * HIDDEN];
            let rs = &w[WS + h * D_IN..WS + (h + 1) * D_IN];
            *oh = w[B2 + h]
                + r2.iter().zip(&a).map(|(p, q)| p * q).sum::<f64>()
                + rs.iter().zip(x).map(|(p, q)| p * q).sum::<f64>();
        }
        (o, a)
    }

    /// One Adam step on the L1 loss of origin `t` of `y` (its targets `y[t..t + OUT]` known).
    fn train_on(&mut self, y: &[f64], t: usize) {
        let f = self.frame(y, t);
        let (o, a) = self.forward(&f.x);
        // 10 KB on the stack: no allocation per step.
        let mut g = [0.0; PARAMS];
        let mut da = [0.0; HIDDEN];
        for h in 0..OUT {
            let target = ((y[t + h] - f.c) / f.s).clamp(-CLIP, CLIP);
            let d = o[h] - target;
            let go = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            } / OUT as f64;
            if go == 0.0 {
                continue;
            }
            g[B2 + h] += go;
            for j in 0..HIDDEN {
                g[W2 + h * HIDDEN + j] += go * a[j];
                da[j] += go * self.w[W2 + h * HIDDEN + j];
            }
            for i in 0..D_IN {
                g[WS + h * D_IN + i] += go * f.x[i];
            }
        }
        for j in 0..HIDDEN {
            let dz = da[j] * (1.0 - a[j] * a[j]);
            if dz == 0.0 {
                continue;
            }
            g[B1 + j] += dz;
            for i in 0..D_IN {
                g[W1 + j * D_IN + i] += dz * f.x[i];
            }
        }
        self.adam(&g);
    }

    /// Adam (β₁ 0.9, β₂ 0.999, ε 10⁻⁸) with bias correction.
    fn adam(&mut self, g: &[f64]) {
        const B1C: f64 = 0.9;
        const B2C: f64 = 0.999;
        self.steps += 1;
        // The bias corrections are 1 to machine precision long before 2^20 steps.
        let k = self.steps.min(1 << 20) as i32;
        let lr = self.config.learning_rate * (1.0 - B2C.powi(k)).sqrt() / (1.0 - B1C.powi(k));
        for (((w, m), v), &gi) in self.w.iter_mut().zip(&mut self.adam_m).zip(&mut self.adam_v).zip(g) {
            *m = B1C * *m + (1.0 - B1C) * gi;
            *v = B2C * *v + (1.0 - B2C) * gi * gi;
            *w -= lr * *m / (v.sqrt() + 1e-8);
        }
    }

    fn forecast_at(&self, y: &[f64], t: usize) -> [f64; OUT] {
        let f = self.frame(y, t);
        let (o, _) = self.forward(&f.x);
        o.map(|v| f.c + f.s * v)
    }

    /// Consumes `y[j]` (the window `y` holds it): trains on the origin it completes, replays,
    /// then stores the forecast from origin `j + 1`.
    fn consume(&mut self, y: &[f64], j: usize) {
        self.consumed += 1;
        let due = if self.season.is_some() { REDETECT } else { DETECT_EVERY };
        if self.consumed - self.consumed_at_detect >= due {
            // Detect on the window so far (cheap next to the training steps in between).
            self.season = detect_season(&y[..=j], 2, 400, 0.3);
            self.consumed_at_detect = self.consumed;
        }
        if j + 1 >= LAGS {
            let (_, local) = centre_and_spread(&y[j + 1 - LAGS..=j]);
            self.scale_mean = if self.scale_mean == 0.0 {
                local
            } else {
                0.99 * self.scale_mean + 0.01 * local
            };
        }
        // Origin whose last target is y[j].
        if j + 1 >= LAGS + OUT {
            let done = j + 1 - OUT;
            self.train_on(y, done);
            for _ in 0..REPLAY {
                let t = self.rng.random_range(LAGS..=done);
                self.train_on(y, t);
            }
        }
        let origin = self.consumed; // absolute index of origin j + 1
        if j + 1 >= LAGS {
            if self.kept.is_empty() {
                self.first_kept = origin;
            }
            let f = self.forecast_at(y, j + 1);
            self.kept.push_back(f);
            while self.kept.len() > self.keep {
                self.kept.pop_front();
                self.first_kept += 1;
            }
        }
    }

    /// How many leading values of `new` the previous window already holds, if `new` continues
    /// it (the previous window's tail from some shift is `new`'s head, with at least LAGS of overlap).
    fn continuation(&self, new: &[f64]) -> Option<usize> {
        let old = &self.history;
        if old.len() < LAGS || new.len() < LAGS {
            return None;
        }
        let last = *old.last()?;
        (0..=old.len() - LAGS).find_map(|s| {
            let overlap = old.len() - s;
            (overlap <= new.len()
                && new[overlap - 1].to_bits() == last.to_bits()
                && old[s].to_bits() == new[0].to_bits()
                && old[s..].iter().zip(new).all(|(a, b)| a.to_bits() == b.to_bits()))
            .then_some(overlap)
        })
    }

    /// Forecasts made from origins `from..n` of the last fitted window (n its length), laid out
    /// `p[(t − from)·max_h + h − 1]`, `max_h ≤ OUT`; NaN where none was made (an origin before
    /// the lags were full, or forgotten). Each was made before its targets were trained on.
    pub fn validation_forecasts(&self, from: usize, max_h: usize) -> Vec<f64> {
        let n = self.history.len();
        let max_h = max_h.min(OUT);
        let mut p = vec![f64::NAN; n.saturating_sub(from) * max_h];
        let base = self.consumed - n as u64;
        for t in from..n {
            let abs = base + t as u64;
            if abs >= self.first_kept
                && let Some(f) = self.kept.get((abs - self.first_kept) as usize)
            {
                p[(t - from) * max_h..(t - from + 1) * max_h].copy_from_slice(&f[..max_h]);
            }
        }
        p
    }
}

impl Forecaster for Neural {
    fn name(&self) -> &'static str {
        "neural"
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        check_history(history, MIN_HISTORY)?;
        let start = match self.continuation(history) {
            Some(k) => {
                self.warm_fits += 1;
                k
            }
            None => {
                self.reset();
                self.cold_fits += 1;
                0
            }
        };
        self.keep = kept_for(history.len());
        for j in start..history.len() {
            self.consume(history, j);
        }
        self.history = history.to_vec();
        Ok(())
    }

    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError> {
        check_horizon(horizon)?;
        let f = self
            .kept
            .back()
            .filter(|_| !self.history.is_empty())
            .ok_or(ForecastError::NotFitted)?;
        Ok((0..horizon).map(|h| f[h.min(OUT - 1)]).collect())
    }
}

/// The mean `c` of the lags and their mean absolute deviation from it (the module doc's `c` and
/// local scale).
fn centre_and_spread(lags: &[f64]) -> (f64, f64) {
    let n = lags.len() as f64;
    let c = lags.iter().sum::<f64>() / n;
    (c, lags.iter().map(|v| (v - c).abs()).sum::<f64>() / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::tests::seasonal_series;

    fn mae(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
    }

    #[test]
    fn the_network_has_the_documented_number_of_weights() {
        assert_eq!(PARAMS, 1_256);
        assert_eq!(Neural::default().w.len(), PARAMS);
    }

    #[test]
    fn an_untrained_network_forecasts_close_to_the_last_value() {
        let y: Vec<f64> = (0..MIN_HISTORY).map(|i| (i % 5) as f64 * 10.0).collect();
        let fresh = Neural::default();
        let frame = fresh.frame(&y, y.len());
        let f = fresh.forecast_at(&y, y.len());
        // The skip path is the naive forecast; the hidden path adds at most Σ|W₂| ≤ 0.4 scales.
        for v in f {
            assert!((v - y[y.len() - 1]).abs() <= 0.4 * frame.s, "{f:?} scale {}", frame.s);
        }
        // Fitting the shortest history completes exactly one origin: one step and its replays.
        let mut n = Neural::default();
        n.fit(&y).unwrap();
        assert_eq!(n.steps, 1 + REPLAY as u64);
    }

    #[test]
    fn a_seasonal_series_is_learned_beyond_the_naive_forecast() {
        let s = seasonal_series(24 * 40, 24);
        let mut n = Neural::default();
        n.fit(&s[..24 * 39]).unwrap();
        let f = n.forecast(12).unwrap();
        let truth = &s[24 * 39..24 * 39 + 12];
        let naive = vec![s[24 * 39 - 1]; 12];
        let (m_net, m_naive) = (mae(&f, truth), mae(&naive, truth));
        assert!(m_net < 0.5 * m_naive, "network {m_net} vs naive {m_naive}");
    }

    #[test]
    fn a_window_that_continues_the_last_one_warm_starts_on_its_new_points_and_another_window_resets() {
        let s = seasonal_series(900, 24);
        let mut stepwise = Neural::default();
        stepwise.fit(&s[..600]).unwrap();
        // Sliding windows of 600 that advance by 7, 1 and 50 points continue the last one.
        stepwise.fit(&s[7..607]).unwrap();
        stepwise.fit(&s[8..608]).unwrap();
        stepwise.fit(&s[58..658]).unwrap();
        assert_eq!((stepwise.cold_fits, stepwise.warm_fits), (1, 3));
        // Growing windows continue too.
        let mut growing = Neural::default();
        growing.fit(&s[..600]).unwrap();
        growing.fit(&s[..658]).unwrap();
        assert_eq!((growing.cold_fits, growing.warm_fits), (1, 1));
        // Replays draw from the window in force, so weights differ from the growing run's, but
        // both consumed the same points.
        assert_eq!(stepwise.consumed, growing.consumed);
        // An unrelated window resets.
        let other: Vec<f64> = s[..600].iter().map(|v| v + 1000.0).collect();
        stepwise.fit(&other).unwrap();
        assert_eq!(stepwise.cold_fits, 2);
        assert_eq!(stepwise.consumed, 600);
    }

    #[test]
    fn the_same_histories_give_bit_identical_forecasts_and_another_seed_does_not() {
        let s = seasonal_series(800, 24);
        let run = |seed| {
            let mut n = Neural::new(NeuralConfig {
                seed,
                ..NeuralConfig::default()
            });
            let mut out = Vec::new();
            for end in [400, 420, 500, 800] {
                n.fit(&s[end - 400..end]).unwrap();
                out.extend(n.forecast(12).unwrap().iter().map(|v| v.to_bits()));
            }
            out
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn validation_forecasts_were_made_before_their_targets_were_seen() {
        let s = seasonal_series(700, 24);
        let mut a = Neural::default();
        a.fit(&s[..500]).unwrap();
        let p = a.validation_forecasts(400, OUT);
        assert_eq!(p.len(), 100 * OUT);
        // The stored forecast from origin 450 equals one made by a network that never saw y[450..].
        let mut b = Neural::default();
        b.fit(&s[..450]).unwrap();
        let f = b.forecast(OUT).unwrap();
        let stored = &p[50 * OUT..51 * OUT];
        assert_eq!(
            stored.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            f.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // Only the origins the ensemble scores are kept: ⌊n/3⌋ + 1 of a window of n.
        let mut c = Neural::default();
        c.fit(&s[..600]).unwrap();
        let all = c.validation_forecasts(0, OUT);
        // Origins 24..=600 were forecast from (600 the end); the last 201 are kept.
        assert!(all[..400 * OUT].iter().all(|v| v.is_nan()));
        assert!(all[400 * OUT..].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn short_non_finite_and_unfitted_inputs_are_errors() {
        let mut n = Neural::default();
        assert_eq!(n.forecast(3), Err(ForecastError::NotFitted));
        assert_eq!(
            n.fit(&[1.0; MIN_HISTORY - 1]),
            Err(ForecastError::TooShort {
                got: MIN_HISTORY - 1,
                need: MIN_HISTORY
            })
        );
        let mut y = vec![1.0; 100];
        y[40] = f64::NAN;
        assert!(matches!(n.fit(&y), Err(ForecastError::NotFinite { index: 40, .. })));
        n.fit(&[3.0; 100]).unwrap();
        assert_eq!(n.forecast(0), Err(ForecastError::BadHorizon(0)));
        let f = n.forecast(20).unwrap();
        assert_eq!(f.len(), 20);
        assert!(f.iter().all(|v| (v - 3.0).abs() < 1e-6), "{f:?}");
    }
}
