//! Holt-Winters / additive ETS(A,Ad,A) forecaster with the season length detected from the
//! data by autocorrelation; smoothing parameters chosen by grid search on one-step SSE.
//!
//! ```text
//! level   l_t = α (y_t − s_{t−m}) + (1 − α)(l_{t−1} + φ b_{t−1})
//! trend   b_t = β (l_t − l_{t−1}) + (1 − β) φ b_{t−1}
//! season  s_t = γ (y_t − l_t) + (1 − γ) s_{t−m}
//! ŷ(n+h) = l_n + (φ + … + φ^h) b_n + s_{n+h−m⌈h/m⌉}
//! ```
//! Robustness (NAB series carry spikes 1000× their level): the recursions run in
//! error-correction form with the one-step error clipped to ±4σ̂, σ̂ = robust scale (MAD) of the
//! first differences, and parameters and season (none / detected candidates) are chosen by the
//! sum of absolute one-step errors, which matches MAE scoring.
//! Without a detected season (or with fewer than two seasons of data) s ≡ 0 (Holt's damped
//! trend / simple exponential smoothing when β = 0).

use super::{ForecastError, Forecaster, check_history, check_horizon, detect_seasons, robust_centre_scale};

const ALPHAS: [f64; 7] = [0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9];
const BETAS: [f64; 3] = [0.0, 0.02, 0.1];
const GAMMAS: [f64; 3] = [0.02, 0.1, 0.3];
const PHI: f64 = 0.98;

/// Fitted Holt-Winters model.
#[derive(Debug, Clone, PartialEq)]
pub struct HoltWinters {
    /// Largest season length searched (in steps).
    pub max_season: usize,
    /// Re-run season detection every this many fits (detection is O(n·max_season)).
    pub redetect_every: usize,
    fits_since_detect: usize,
    season: Option<usize>,
    candidates: Vec<usize>,
    state: Option<State>,
}

#[derive(Debug, Clone, PartialEq)]
struct State {
    level: f64,
    trend: f64,
    phi: f64,
    /// Seasonal terms of the last m steps, `seasonal[(n + k) % m]` for step n + k.
    seasonal: Vec<f64>,
    n: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
    clip: f64,
}

impl State {
    /// `ŷ(n+h) = l + (φ + … + φ^h) b + s_{(n+h−1) mod m}`.
    fn predict(&self, h: usize) -> f64 {
        let m = self.seasonal.len();
        let mut damp = 0.0;
        let mut pw = 1.0;
        for _ in 0..h {
            pw *= self.phi;
            damp += pw;
        }
        let season = if m > 1 {
            self.seasonal[(self.n + h - 1) % m]
        } else {
            0.0
        };
        self.level + damp * self.trend + season
    }
}

impl Default for HoltWinters {
    fn default() -> Self {
        Self {
            max_season: 400,
            redetect_every: 24,
            fits_since_detect: usize::MAX,
            season: None,
            candidates: Vec::new(),
            state: None,
        }
    }
}

impl HoltWinters {
    /// Season length in use (None = non-seasonal).
    pub fn season(&self) -> Option<usize> {
        self.season
    }

    /// Mean absolute in-sample h-step error, h = 1..=max_h, of the fitted parameters over the
    /// origins `from..` of `history` (the history last given to `fit`).
    pub fn in_sample_mae(&self, history: &[f64], from: usize, max_h: usize) -> Option<Vec<f64>> {
        let st = self.state.as_ref()?;
        let m = st.seasonal.len();
        let mut sums = vec![0.0; max_h];
        let mut counts = vec![0usize; max_h];
        run_observed(history, m, st.alpha, st.beta, st.gamma, st.clip, |t, view| {
            if t < from {
                return;
            }
            for h in 1..=max_h {
                if let Some(&actual) = history.get(t + h - 1) {
                    sums[h - 1] += (actual - view.predict(h)).abs();
                    counts[h - 1] += 1;
                }
            }
        });
        Some(
            sums.iter()
                .zip(&counts)
                .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::INFINITY })
                .collect(),
        )
    }

    /// In-sample h-step forecasts of the fitted parameters: `out[(t − from)·max_h + h − 1]` is
    /// the forecast of `history[t + h − 1]` made from the state that has seen `history[..t]`,
    /// for origins `t` in `from..history.len()` (NaN for origins before the recursions start).
    /// `history` must be the history last given to `fit`. Used for rolling-origin validation.
    pub fn in_sample_forecasts(&self, history: &[f64], from: usize, max_h: usize) -> Option<Vec<f64>> {
        let st = self.state.as_ref()?;
        let m = st.seasonal.len();
        let n = history.len();
        let mut out = vec![f64::NAN; n.saturating_sub(from) * max_h];
        run_observed(history, m, st.alpha, st.beta, st.gamma, st.clip, |t, view| {
            if t < from {
                return;
            }
            for h in 1..=max_h {
                out[(t - from) * max_h + h - 1] = view.predict(h);
            }
        });
        Some(out)
    }

    /// Chosen (α, β, γ) after a fit.
    pub fn parameters(&self) -> Option<(f64, f64, f64)> {
        self.state.as_ref().map(|s| (s.alpha, s.beta, s.gamma))
    }
}

/// Runs the recursions with fixed parameters; returns the final state and the one-step SSE.
fn run(y: &[f64], m: usize, alpha: f64, beta: f64, gamma: f64, clip: f64) -> (State, f64) {
    run_observed(y, m, alpha, beta, gamma, clip, |_, _| {})
}

/// One point of the parameter grid; `index` is its place in the grid's defining order.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    index: usize,
    m: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
}

/// The parameter grid in its defining order: `seasons` as listed, then α, β, γ ascending (γ only
/// with a season).
fn grid(seasons: &[usize]) -> Vec<Candidate> {
    let mut grid = Vec::new();
    for &m in seasons {
        let gammas: &[f64] = if m > 1 { &GAMMAS } else { &[0.0] };
        for &alpha in &ALPHAS {
            for &beta in &BETAS {
                for &gamma in gammas {
                    grid.push(Candidate {
                        index: grid.len(),
                        m,
                        alpha,
                        beta,
                        gamma,
                    });
                }
            }
        }
    }
    grid
}

/// Search order of α: middling values first.
fn alpha_rank(alpha: f64) -> usize {
    [0.2, 0.35, 0.1, 0.5, 0.05, 0.7, 0.9]
        .iter()
        .position(|a| *a == alpha)
        .unwrap_or(usize::MAX)
}

/// The one-step error per point of [`run`] with `c`'s parameters (its sum of absolute errors
/// over `points`), when `c` beats `best` = (error, grid index) — a smaller error, or an equal
/// one earlier in the grid — or when there is no `best`; `None` as soon as the running sum
/// shows it cannot: the sum only grows (every term is ≥ 0, also in floating point), so a
/// candidate abandoned here would not have been chosen. Same recursions as [`run_observed`],
/// without the state.
fn per_point_error(y: &[f64], c: &Candidate, clip: f64, points: f64, best: Option<(f64, usize)>) -> Option<f64> {
    let Candidate {
        m, alpha, beta, gamma, ..
    } = *c;
    // Cannot win with an error of `e`: more than the best's, or equal and later in the grid.
    let loses = |e: f64| best.is_some_and(|(b, i)| e > b || (e == b && c.index > i));
    let (mut level, mut seasonal, start) = initial(y, m);
    let phi = if beta > 0.0 { PHI } else { 1.0 };
    let mut trend = 0.0;
    let mut sae = 0.0;
    // The phase `t mod m` and the next bound check, counted instead of divided (this loop is
    // most of a predictive scaling decision's time).
    let mut k = start % m;
    let mut check = 16 - start % 16;
    for &yt in &y[start..] {
        let s_prev = if m > 1 { seasonal[k] } else { 0.0 };
        let pred = level + phi * trend + s_prev;
        let raw = yt - pred;
        sae += raw.abs();
        check -= 1;
        if check == 0 {
            check = 16;
            if loses(sae / points) {
                return None;
            }
        }
        let e = raw.clamp(-clip, clip);
        level = level + phi * trend + alpha * e;
        trend = phi * trend + alpha * beta * e;
        if m > 1 {
            seasonal[k] = s_prev + gamma * (1.0 - alpha) * e;
        }
        k += 1;
        if k == m {
            k = 0;
        }
    }
    let per_point = sae / points;
    let wins = best.is_none_or(|(b, i)| per_point < b || (per_point == b && c.index < i));
    wins.then_some(per_point)
}

/// Candidates run side by side by [`lane_errors`].
const LANES: usize = 4;

/// [`per_point_error`] for up to [`LANES`] candidates of one season at once against the same
/// `best`: the recursions of different candidates are independent, so running them interleaved
/// lets the processor overlap them (one alone is a chain of dependent multiply-adds). Each
/// lane does exactly the operations [`per_point_error`] does, in the same order, so its error
/// is bit for bit the same; a lane stops counting once it loses to `best`, and the group stops
/// when every lane has.
fn lane_errors(y: &[f64], group: &[Candidate], clip: f64, points: f64, best: (f64, usize)) -> Vec<Option<f64>> {
    let n = group.len();
    debug_assert!((1..=LANES).contains(&n) && group.iter().all(|c| c.m == group[0].m));
    let m = group[0].m;
    let (level0, seasonal0, start) = initial(y, m);
    let mut alpha = [0.0; LANES];
    let mut beta = [0.0; LANES];
    let mut gamma = [0.0; LANES];
    let mut phi = [1.0; LANES];
    for (j, c) in group.iter().enumerate() {
        alpha[j] = c.alpha;
        beta[j] = c.beta;
        gamma[j] = c.gamma;
        phi[j] = if c.beta > 0.0 { PHI } else { 1.0 };
    }
    let mut level = [level0; LANES];
    let mut trend = [0.0; LANES];
    let mut sae = [0.0; LANES];
    // seasonal[k][j]: phase k of lane j.
    let mut seasonal: Vec<[f64; LANES]> = seasonal0.iter().map(|&v| [v; LANES]).collect();
    let mut alive = [false; LANES];
    alive[..n].fill(true);
    let loses = |e: f64, index: usize| e > best.0 || (e == best.0 && index > best.1);
    let mut k = start % m;
    let mut check = 16;
    for &yt in &y[start..] {
        let s_prev = if m > 1 { seasonal[k] } else { [0.0; LANES] };
        let mut next = s_prev;
        for j in 0..LANES {
            let pred = level[j] + phi[j] * trend[j] + s_prev[j];
            let raw = yt - pred;
            sae[j] += raw.abs();
            let e = raw.clamp(-clip, clip);
            level[j] = level[j] + phi[j] * trend[j] + alpha[j] * e;
            trend[j] = phi[j] * trend[j] + alpha[j] * beta[j] * e;
            next[j] = s_prev[j] + gamma[j] * (1.0 - alpha[j]) * e;
        }
        if m > 1 {
            seasonal[k] = next;
        }
        check -= 1;
        if check == 0 {
            check = 16;
            for j in 0..n {
                if alive[j] && loses(sae[j] / points, group[j].index) {
                    alive[j] = false;
                }
            }
            if !alive.iter().any(|a| *a) {
                break;
            }
        }
        k += 1;
        if k == m {
            k = 0;
        }
    }
    (0..n)
        .map(|j| {
            let e = sae[j] / points;
            (alive[j] && !loses(e, group[j].index) && !e.is_nan()).then_some(e)
        })
        .collect()
}

/// Initial level, seasonal terms and first step of the recursions: with a season (m > 1) the
/// mean of the first season and the mean deviation per phase over the first two; else `y[0]`.
fn initial(y: &[f64], m: usize) -> (f64, Vec<f64>, usize) {
    if m > 1 {
        let level = y[..m].iter().sum::<f64>() / m as f64;
        let level2 = y[m..2 * m].iter().sum::<f64>() / m as f64;
        let seasonal: Vec<f64> = (0..m).map(|i| 0.5 * ((y[i] - level) + (y[m + i] - level2))).collect();
        (level, seasonal, m)
    } else {
        (y[0], vec![0.0], 1)
    }
}

/// As `run`, calling `on_step(t, state)` with the state that has seen `y[..t]`, before `y[t]`.
fn run_observed(
    y: &[f64],
    m: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
    clip: f64,
    mut on_step: impl FnMut(usize, &State),
) -> (State, f64) {
    let n = y.len();
    let (mut level, mut seasonal, start) = initial(y, m);
    let phi = if beta > 0.0 { PHI } else { 1.0 };
    let mut trend = 0.0;
    let mut sse = 0.0;
    let mut view = State {
        level,
        trend,
        phi,
        seasonal: Vec::new(),
        n: start,
        alpha,
        beta,
        gamma,
        clip,
    };
    for (t, &yt) in y.iter().enumerate().skip(start) {
        view.level = level;
        view.trend = trend;
        view.n = t;
        if view.seasonal.len() != seasonal.len() {
            view.seasonal.clone_from(&seasonal);
        } else if m > 1 {
            // Only phase (t − 1) % m changed since the last step.
            let j = (t + m - 1) % m;
            view.seasonal[j] = seasonal[j];
        }
        on_step(t, &view);
        let k = t % m;
        let s_prev = if m > 1 { seasonal[k] } else { 0.0 };
        let pred = level + phi * trend + s_prev;
        let raw = yt - pred;
        sse += raw.abs();
        // Error-correction form of the recursions, with the error clipped.
        let e = raw.clamp(-clip, clip);
        level = level + phi * trend + alpha * e;
        trend = phi * trend + alpha * beta * e;
        if m > 1 {
            seasonal[k] = s_prev + gamma * (1.0 - alpha) * e;
        }
    }
    (
        State {
            level,
            trend,
            phi,
            seasonal,
            n,
            alpha,
            beta,
            gamma: if m > 1 { gamma } else { 0.0 },
            clip,
        },
        sse,
    )
}

impl Forecaster for HoltWinters {
    fn name(&self) -> &'static str {
        "holt_winters"
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        check_history(history, 3)?;
        if self.fits_since_detect >= self.redetect_every.max(1) {
            self.candidates = detect_seasons(history, 2, self.max_season, 0.3);
            self.fits_since_detect = 0;
        }
        self.fits_since_detect += 1;
        let diffs: Vec<f64> = history.windows(2).map(|w| w[1] - w[0]).collect();
        let (_, scale) = robust_centre_scale(&diffs);
        let clip = 4.0 * scale;
        let mut seasons = vec![1usize];
        seasons.extend(self.candidates.iter().copied().filter(|&m| history.len() >= 3 * m));
        // The grid in its defining order: seasons as listed, then α, β, γ ascending. The choice
        // is the first candidate in this order with the least per-point error (as a scan that
        // replaces its best only on a strictly smaller error).
        let grid = grid(&seasons);
        let points = |m: usize| (history.len() - if m > 1 { m } else { 1 }) as f64;
        // The first candidate, run to the end: the scan keeps it whatever its error (a NaN from
        // an overflow included, which nothing then replaces).
        let first = grid[0];
        let first_error = per_point_error(history, &first, clip, points(first.m), None).unwrap_or(f64::NAN);
        let mut best = (first_error, first);
        if !first_error.is_nan() {
            // The rest in an order that tends to meet good candidates early (seasonal before
            // not, middling α first), so the running bound abandons more of the others; ties are
            // broken by the defining order, so the choice is the scan's.
            // Candidates of one season are run LANES at a time, each lane its own recursion.
            let mut order: Vec<Candidate> = grid[1..].to_vec();
            order.sort_by_key(|c| (c.m == 1, c.m, alpha_rank(c.alpha), c.index));
            let mut rest = &order[..];
            while let Some(first) = rest.first() {
                let same = rest.iter().take(LANES).take_while(|c| c.m == first.m).count();
                let (group, tail) = rest.split_at(same);
                rest = tail;
                let errors = lane_errors(history, group, clip, points(first.m), (best.0, best.1.index));
                // In grid order within the group: the choice is the lexicographic least (error, index).
                for (c, e) in group.iter().zip(errors) {
                    if let Some(e) = e
                        && (e < best.0 || (e == best.0 && c.index < best.1.index))
                    {
                        best = (e, *c);
                    }
                }
            }
        }
        let best = Some(best.1);
        self.season = best.map(|b| b.m).filter(|&m| m > 1);
        self.state = best.map(|c| run(history, c.m, c.alpha, c.beta, c.gamma, clip).0);
        Ok(())
    }

    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError> {
        check_horizon(horizon)?;
        let s = self.state.as_ref().ok_or(ForecastError::NotFitted)?;
        Ok((1..=horizon).map(|h| s.predict(h)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::tests::seasonal_series;

    #[test]
    fn season_is_found_and_the_next_season_is_forecast_closely() {
        let s = seasonal_series(24 * 12, 24);
        let mut hw = HoltWinters::default();
        hw.fit(&s[..24 * 11]).unwrap();
        // 24 or a multiple of it (all fit a strictly periodic pattern equally well).
        assert!(hw.season().is_some_and(|m| m % 24 == 0), "{:?}", hw.season());
        let f = hw.forecast(24).unwrap();
        let mae: f64 = f.iter().zip(&s[24 * 11..]).map(|(a, b)| (a - b).abs()).sum::<f64>() / 24.0;
        // Noise amplitude is ±1.8; the seasonal swing is ±20.
        assert!(mae < 2.5, "mae {mae}");
    }

    #[test]
    fn a_linear_trend_is_extrapolated_upwards() {
        let s: Vec<f64> = (0..100).map(|i| 2.0 * i as f64).collect();
        let mut hw = HoltWinters::default();
        hw.fit(&s).unwrap();
        let f = hw.forecast(3).unwrap();
        assert!(f[0] > 195.0 && f[2] > f[0], "{f:?}");
    }

    /// The search as it was before candidates were abandoned early: every candidate run to the
    /// end, the first strictly best kept.
    fn exhaustive(history: &[f64], seasons: &[usize], clip: f64) -> Option<(State, usize)> {
        let mut best: Option<(State, f64, usize)> = None;
        for &m in seasons {
            let gammas: &[f64] = if m > 1 { &GAMMAS } else { &[0.0] };
            for &alpha in &ALPHAS {
                for &beta in &BETAS {
                    for &gamma in gammas {
                        let (state, sae) = run(history, m, alpha, beta, gamma, clip);
                        let per_point = sae / (history.len() - if m > 1 { m } else { 1 }) as f64;
                        if best.as_ref().is_none_or(|(_, b, _)| per_point < *b) {
                            best = Some((state, per_point, m));
                        }
                    }
                }
            }
        }
        best.map(|(s, _, m)| (s, m))
    }

    #[test]
    fn abandoning_candidates_early_chooses_exactly_what_the_exhaustive_search_chooses() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
        let mut seasonal_fits = 0;
        for case in 0..60 {
            let n = rng.random_range(10..400);
            let period = [6usize, 12, 24, 48][case % 4];
            let trend = rng.random_range(-0.5..0.5);
            let noise = rng.random_range(0.0..5.0);
            let mut y: Vec<f64> = (0..n)
                .map(|i| {
                    let phase = (i % period) as f64 / period as f64 * std::f64::consts::TAU;
                    50.0 + trend * i as f64 + 20.0 * phase.sin() + rng.random_range(-noise..=noise)
                })
                .collect();
            // Spikes, as NAB series carry.
            for _ in 0..case % 3 {
                let i = rng.random_range(0..n);
                y[i] *= 1000.0;
            }
            let mut hw = HoltWinters::default();
            hw.fit(&y).unwrap();
            let mut seasons = vec![1usize];
            seasons.extend(hw.candidates.iter().copied().filter(|&m| y.len() >= 3 * m));
            let (state, m) = exhaustive(&y, &seasons, hw.state.as_ref().unwrap().clip).unwrap();
            assert_eq!(
                hw.state.as_ref(),
                Some(&state),
                "case {case}: n {n}, seasons {seasons:?}"
            );
            assert_eq!(hw.season(), Some(m).filter(|&m| m > 1), "case {case}");
            seasonal_fits += usize::from(m > 1);
        }
        // Positive control: the cases exercise the seasonal search too, not only Holt's.
        assert!(seasonal_fits >= 10, "{seasonal_fits} seasonal fits of 60");
    }

    #[test]
    fn every_lane_computes_bit_for_bit_the_error_of_the_candidate_run_alone() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let y: Vec<f64> = (0..200)
            .map(|i| 30.0 + 0.1 * i as f64 + 9.0 * ((i % 12) as f64).sin() + rng.random_range(-2.0..2.0))
            .collect();
        let clip = 6.0;
        let mut compared = 0;
        for m in [1usize, 12, 24] {
            let grid = grid(&[m]);
            let points = (y.len() - if m > 1 { m } else { 1 }) as f64;
            for group in grid.chunks(LANES) {
                let lanes = lane_errors(&y, group, clip, points, (f64::INFINITY, usize::MAX));
                for (c, e) in group.iter().zip(lanes) {
                    let alone = per_point_error(&y, c, clip, points, None).unwrap();
                    assert_eq!(e.map(f64::to_bits), Some(alone.to_bits()), "m {m}, {c:?}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 21 + 63 + 63);
    }

    #[test]
    fn among_equal_errors_the_first_candidate_of_the_grid_is_chosen() {
        // Every candidate predicts a constant series exactly: all tie at 0, and the scan keeps
        // the grid's first (no season, α = 0.05, β = 0), however the search is ordered.
        let mut hw = HoltWinters::default();
        hw.fit(&[5.0; 100]).unwrap();
        assert_eq!(hw.parameters(), Some((0.05, 0.0, 0.0)));
        assert_eq!(hw.season(), None);
        // A repeating pattern seen exactly: the seasonal candidates with the same season tie.
        let y: Vec<f64> = (0..96).map(|i| [1.0, 4.0, 2.0, 8.0][i % 4]).collect();
        let mut hw = HoltWinters::default();
        hw.fit(&y).unwrap();
        let mut seasons = vec![1usize];
        seasons.extend(hw.candidates.iter().copied().filter(|&m| y.len() >= 3 * m));
        let (state, _) = exhaustive(&y, &seasons, hw.state.as_ref().unwrap().clip).unwrap();
        assert_eq!(hw.state.as_ref(), Some(&state));
    }

    #[test]
    fn forecast_before_fit_is_an_error() {
        assert_eq!(HoltWinters::default().forecast(2), Err(ForecastError::NotFitted));
    }
}
