//! Demand forecasting: fits a model on a sliding window of past values and returns point
//! forecasts for the next `horizon` steps. Deterministic: same history → same forecast.
//!
//! Models: [`seasonal_naive`] (baseline), [`holt_winters`] (additive ETS with damped trend,
//! season length detected by autocorrelation) and [`ridge`] (ridge regression on lags and
//! seasonal features, one direct model per step). [`metrics`] scores them with MAE/MASE by
//! rolling-origin evaluation; [`trace`] loads the NAB and Azure traces. [`ensemble`] averages
//! the best of these and of robust level forecasts per step, chosen by validation in the window;
//! [`neural`] is a small online-trained network, used alone or as one more ensemble candidate.

pub mod auto;
pub mod ensemble;
pub mod holt_winters;
pub mod metrics;
pub mod neural;
pub mod ridge;
pub mod seasonal_naive;
pub mod trace;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// At most this many validation origins in the ensemble (and forecasts the network keeps for it).
pub(crate) const MAX_VALIDATION: usize = 500;

/// Errors of the forecasting area; each names the offending field and value.
#[derive(Debug, Error, PartialEq)]
pub enum ForecastError {
    #[error("forecast: history has {got} points, the model needs at least {need}")]
    TooShort { got: usize, need: usize },
    #[error("forecast: history[{index}] is not finite ({value})")]
    NotFinite { index: usize, value: f64 },
    #[error("forecast: horizon must be ≥ 1, got {0}")]
    BadHorizon(usize),
    #[error("forecast: model is not fitted; call fit first")]
    NotFitted,
    #[error("forecast: season length must be ≥ 1, got {0}")]
    BadSeason(usize),
    #[error(
        "forecast: unknown model `{0}` (expected seasonal_naive, holt_winters, ridge, combo, auto, ensemble, neural, ensemble_neural)"
    )]
    UnknownModel(String),
}

/// A forecasting model fitted online: `fit` on the latest window, then `forecast`.
pub trait Forecaster {
    /// Short stable name used in reports.
    fn name(&self) -> &'static str;
    /// Fits to `history` (oldest first). May keep state between calls (e.g. a detected season)
    /// but the result depends only on the sequence of histories given.
    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError>;
    /// Point forecasts for steps 1..=horizon after the end of the fitted history.
    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError>;
}

/// The models this crate offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    SeasonalNaive,
    HoltWinters,
    Ridge,
    /// Mean of Holt-Winters and ridge.
    Combo,
    /// Per-step choice of Holt-Winters or seasonal-naive by recent in-window error.
    Auto,
    /// Per-step mean of the best candidates (naive, seasonal, robust level, Holt-Winters,
    /// ridge) by rolling-origin validation inside the window.
    Ensemble,
    /// The online-trained network of [`neural`] alone.
    Neural,
    /// [`ModelKind::Ensemble`] with the network as one more candidate.
    EnsembleNeural,
}

impl ModelKind {
    pub const ALL: [ModelKind; 8] = [
        ModelKind::SeasonalNaive,
        ModelKind::HoltWinters,
        ModelKind::Ridge,
        ModelKind::Combo,
        ModelKind::Auto,
        ModelKind::Ensemble,
        ModelKind::Neural,
        ModelKind::EnsembleNeural,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::SeasonalNaive => "seasonal_naive",
            ModelKind::HoltWinters => "holt_winters",
            ModelKind::Ridge => "ridge",
            ModelKind::Combo => "combo",
            ModelKind::Auto => "auto",
            ModelKind::Ensemble => "ensemble",
            ModelKind::Neural => "neural",
            ModelKind::EnsembleNeural => "ensemble_neural",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ForecastError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ForecastError::UnknownModel(s.to_string()))
    }

    /// A fresh forecaster of this kind with default settings.
    pub fn build(self) -> Box<dyn Forecaster + Send> {
        match self {
            ModelKind::SeasonalNaive => Box::new(seasonal_naive::SeasonalNaive::auto()),
            ModelKind::HoltWinters => Box::new(holt_winters::HoltWinters::default()),
            ModelKind::Ridge => Box::new(ridge::RidgeLags::default()),
            ModelKind::Combo => Box::new(Combo::default()),
            ModelKind::Auto => Box::new(auto::AutoSelect::default()),
            ModelKind::Ensemble => Box::new(ensemble::Ensemble::default()),
            ModelKind::Neural => Box::new(neural::Neural::default()),
            ModelKind::EnsembleNeural => Box::new(ensemble::Ensemble::with_config(ensemble::EnsembleConfig {
                neural: true,
                ..ensemble::EnsembleConfig::default()
            })),
        }
    }
}

/// Mean of the Holt-Winters and ridge forecasts (forecast combination is a cheap, robust way
/// to cut the variance of either model's errors).
#[derive(Debug, Clone, Default)]
pub struct Combo {
    hw: holt_winters::HoltWinters,
    ridge: ridge::RidgeLags,
}

impl Forecaster for Combo {
    fn name(&self) -> &'static str {
        "combo"
    }
    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        self.hw.fit(history)?;
        self.ridge.fit(history)
    }
    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError> {
        let a = self.hw.forecast(horizon)?;
        let b = self.ridge.forecast(horizon)?;
        Ok(a.iter().zip(&b).map(|(x, y)| 0.5 * (x + y)).collect())
    }
}

/// Fits a fresh model of `kind` on `history` and forecasts `horizon` steps.
pub fn fit_and_forecast(kind: ModelKind, history: &[f64], horizon: usize) -> Result<Vec<f64>, ForecastError> {
    let mut m = kind.build();
    m.fit(history)?;
    m.forecast(horizon)
}

/// Checks a history: every value finite, at least `need` points.
pub(crate) fn check_history(history: &[f64], need: usize) -> Result<(), ForecastError> {
    if history.len() < need {
        return Err(ForecastError::TooShort {
            got: history.len(),
            need,
        });
    }
    if let Some((index, &value)) = history.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ForecastError::NotFinite { index, value });
    }
    Ok(())
}

pub(crate) fn check_horizon(h: usize) -> Result<(), ForecastError> {
    if h == 0 {
        Err(ForecastError::BadHorizon(h))
    } else {
        Ok(())
    }
}

/// Season length by autocorrelation: the lag in `[min_lag, max_lag]` (max_lag ≤ n/2) with the
/// highest local-maximum autocorrelation `r(k) = Σ (x_t − x̄)(x_{t+k} − x̄) / Σ (x_t − x̄)²`,
/// provided `r(k) ≥ threshold`; the smallest lag within 90 % of that peak wins, so a multiple of
/// the true period is not chosen over the period itself. `None` when nothing is seasonal.
pub fn detect_season(history: &[f64], min_lag: usize, max_lag: usize, threshold: f64) -> Option<usize> {
    detect_seasons(history, min_lag, max_lag, threshold).first().copied()
}

/// Up to three candidate seasons: the one [`detect_season`] picks, then the lags of the highest
/// remaining autocorrelation peaks (e.g. daily and weekly cycles).
pub fn detect_seasons(history: &[f64], min_lag: usize, max_lag: usize, threshold: f64) -> Vec<usize> {
    let n = history.len();
    let max_lag = max_lag.min(n / 2);
    if n < 8 || max_lag < min_lag.max(2) {
        return Vec::new();
    }
    let mean = history.iter().sum::<f64>() / n as f64;
    let dev: Vec<f64> = history.iter().map(|x| x - mean).collect();
    let var: f64 = dev.iter().map(|d| d * d).sum();
    if var <= 0.0 {
        return Vec::new();
    }
    let acf: Vec<f64> = (0..=max_lag + 1)
        .map(|k| {
            if k >= n {
                return 0.0;
            }
            dev[..n - k].iter().zip(&dev[k..]).map(|(a, b)| a * b).sum::<f64>() / var
        })
        .collect();
    let lo = min_lag.max(2);
    let peaks: Vec<usize> = (lo..=max_lag)
        .filter(|&k| acf[k] >= acf[k - 1] && acf[k] >= acf[k + 1] && acf[k] >= threshold)
        .collect();
    let best = peaks.iter().map(|&k| acf[k]).fold(f64::NEG_INFINITY, f64::max);
    let mut out: Vec<usize> = peaks
        .iter()
        .copied()
        .find(|&k| acf[k] >= 0.9 * best)
        .into_iter()
        .collect();
    // Then the strongest remaining peaks, up to three candidates in all.
    let mut by_strength = peaks.clone();
    by_strength.sort_by(|&a, &b| acf[b].total_cmp(&acf[a]).then(a.cmp(&b)));
    for k in by_strength {
        if out.len() >= 3 {
            break;
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Robust centre and scale of a window: median and 1.4826 × median absolute deviation
/// (the normal-consistent MAD), falling back to the standard deviation, then 1.
pub(crate) fn robust_centre_scale(x: &[f64]) -> (f64, f64) {
    let med = median(x);
    let dev: Vec<f64> = x.iter().map(|v| (v - med).abs()).collect();
    let mad = 1.4826 * median(&dev);
    if mad > 0.0 {
        return (med, mad);
    }
    let mean = x.iter().sum::<f64>() / x.len().max(1) as f64;
    let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / x.len().max(1) as f64).sqrt();
    (med, if sd > 0.0 { sd } else { 1.0 })
}

pub(crate) fn median(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn seasonal_series(n: usize, period: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * (i % period) as f64 / period as f64;
                // Deterministic "noise" from a cheap hash.
                let noise = (((i * 7919) % 13) as f64 - 6.0) * 0.3;
                100.0 + 20.0 * phase.sin() + noise
            })
            .collect()
    }

    #[test]
    fn season_of_a_sine_with_period_24_is_detected_as_24() {
        let s = seasonal_series(24 * 10, 24);
        assert_eq!(detect_season(&s, 2, 100, 0.3), Some(24));
    }

    #[test]
    fn white_noise_like_series_has_no_season() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let s: Vec<f64> = (0..300).map(|_| rng.random::<f64>()).collect();
        assert_eq!(detect_season(&s, 2, 100, 0.3), None);
    }

    #[test]
    fn every_model_forecasts_the_requested_number_of_finite_steps() {
        let s = seasonal_series(24 * 12, 24);
        for kind in ModelKind::ALL {
            let f = fit_and_forecast(kind, &s, 12).unwrap();
            assert_eq!(f.len(), 12, "{}", kind.name());
            assert!(f.iter().all(|v| v.is_finite()), "{}", kind.name());
        }
    }

    #[test]
    fn unknown_model_names_and_bad_histories_are_rejected() {
        assert_eq!(
            ModelKind::parse("lstm").unwrap_err(),
            ForecastError::UnknownModel("lstm".into())
        );
        for kind in ModelKind::ALL {
            assert!(matches!(
                fit_and_forecast(kind, &[1.0], 3),
                Err(ForecastError::TooShort { .. })
            ));
            let mut s = seasonal_series(100, 10);
            s[50] = f64::NAN;
            assert!(matches!(
                fit_and_forecast(kind, &s, 3),
                Err(ForecastError::NotFinite { index: 50, .. })
            ));
            assert!(matches!(
                fit_and_forecast(kind, &seasonal_series(100, 10), 0),
                Err(ForecastError::BadHorizon(0))
            ));
        }
    }
}
