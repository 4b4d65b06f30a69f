//! Per-horizon model selection: for each step ahead h, forecast with whichever candidate had the
//! lowest h-step MAE over the last part of the window — Holt-Winters (in-sample h-step errors of
//! its fitted parameters) or seasonal-naive with any season 1..=24 or a detected longer season.
//!
//! `choice(h) = argmin_c mean_{t ∈ last V origins} |y_{t+h−1} − ŷ^c_t(h)|`, V = min(500, n/3).
//! Uses only the history given to `fit`, so it is a fair online forecaster.

use super::holt_winters::HoltWinters;
use super::seasonal_naive::seasonal_naive_at;
use super::{ForecastError, Forecaster, check_history, check_horizon, detect_seasons};

/// Largest step the selection scores; later steps reuse its choice.
const MAX_H: usize = 12;
/// Seasonal-naive candidates always scored: seasons 1..=SHORT_SEASONS.
const SHORT_SEASONS: usize = 24;

#[derive(Debug, Clone)]
pub struct AutoSelect {
    hw: HoltWinters,
    history: Vec<f64>,
    seasons: Vec<usize>,
    fits_since_detect: usize,
    /// Per step (1..=MAX_H): None = Holt-Winters, Some(m) = seasonal-naive with season m.
    choice: Vec<Option<usize>>,
}

impl Default for AutoSelect {
    fn default() -> Self {
        Self {
            hw: HoltWinters::default(),
            history: Vec::new(),
            seasons: Vec::new(),
            fits_since_detect: usize::MAX,
            choice: Vec::new(),
        }
    }
}

impl AutoSelect {
    /// The chosen candidate per step: `None` = Holt-Winters, `Some(m)` = seasonal-naive(m).
    pub fn choices(&self) -> &[Option<usize>] {
        &self.choice
    }
}

impl Forecaster for AutoSelect {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        check_history(history, 3)?;
        self.hw.fit(history)?;
        if self.fits_since_detect >= 24 {
            self.seasons = detect_seasons(history, 2, 400, 0.3);
            self.fits_since_detect = 0;
        }
        self.fits_since_detect += 1;
        let n = history.len();
        let from = n - (n / 3).min(500);
        let hw_mae = self.hw.in_sample_mae(history, from, MAX_H).unwrap_or_default();
        // Every short season 1..=24 (cheap to score, catches periodic spikes that the
        // autocorrelation threshold misses) plus the detected long ones.
        let mut seasons: Vec<usize> = (1..=SHORT_SEASONS).filter(|&m| m < from).collect();
        seasons.extend(self.seasons.iter().copied().filter(|&m| m < from && m > SHORT_SEASONS));
        self.choice = (1..=MAX_H)
            .map(|h| {
                let mut best: (Option<usize>, f64) = (None, hw_mae.get(h - 1).copied().unwrap_or(f64::INFINITY));
                for &m in &seasons {
                    let mut sum = 0.0;
                    let mut count = 0usize;
                    for t in from..=n.saturating_sub(h) {
                        if let Some(p) = seasonal_naive_at(&history[..t], m, h) {
                            sum += (history[t + h - 1] - p).abs();
                            count += 1;
                        }
                    }
                    if count > 0 && sum / (count as f64) < best.1 {
                        best = (Some(m), sum / count as f64);
                    }
                }
                best.0
            })
            .collect();
        self.history = history.to_vec();
        Ok(())
    }

    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError> {
        check_horizon(horizon)?;
        if self.history.is_empty() {
            return Err(ForecastError::NotFitted);
        }
        let hw = self.hw.forecast(horizon)?;
        Ok((1..=horizon)
            .map(|h| {
                let c = self.choice.get(h.min(MAX_H) - 1).copied().flatten();
                match c {
                    Some(m) => seasonal_naive_at(&self.history, m, h).unwrap_or(hw[h - 1]),
                    None => hw[h - 1],
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strictly_periodic_series_is_forecast_by_a_seasonal_candidate_not_the_naive_one() {
        // Period 10 sawtooth with sharp edges: repeating the last period is exact.
        let s: Vec<f64> = (0..300)
            .map(|i| if i % 10 < 3 { 50.0 } else { (i % 10) as f64 })
            .collect();
        let mut a = AutoSelect::default();
        a.fit(&s).unwrap();
        // Holt-Winters with season 10 and seasonal-naive(10) are both (nearly) exact here; the
        // plain naive forecast is far off and must not be chosen.
        assert!(a.choices().iter().all(|c| *c != Some(1)), "{:?}", a.choices());
        let f = a.forecast(12).unwrap();
        for (h, v) in f.iter().enumerate() {
            let actual = if (300 + h) % 10 < 3 {
                50.0
            } else {
                ((300 + h) % 10) as f64
            };
            assert!((v - actual).abs() < 1.0, "step {h}: {v} vs {actual}");
        }
    }
}
