//! Forecast accuracy by rolling-origin evaluation: MAE per horizon and MASE against the best
//! seasonal-naive forecaster scored on the same origins.
//!
//! `MAE_h = mean_t |y_{t+h−1} − ŷ_t(h)|` over origins t (history = the `window` values before t);
//! `MASE_h = MAE_h(model) / min_m MAE_h(seasonal-naive with season m)`, m over the candidate
//! seasons (1 = naive, plus daily/weekly/detected periods). MASE < 1 beats every baseline.

use serde::{Deserialize, Serialize};

use super::seasonal_naive::seasonal_naive_at;
use super::{ForecastError, Forecaster};

/// Mean absolute error of paired values (0 for empty input).
pub fn mae(actual: &[f64], predicted: &[f64]) -> f64 {
    let n = actual.len().min(predicted.len());
    if n == 0 {
        return 0.0;
    }
    actual.iter().zip(predicted).map(|(a, p)| (a - p).abs()).sum::<f64>() / n as f64
}

/// `mae_model / mae_baseline`; `None` if the baseline is 0 (a constant series).
pub fn mase(mae_model: f64, mae_baseline: f64) -> Option<f64> {
    (mae_baseline > 0.0).then(|| mae_model / mae_baseline)
}

/// Which origins to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollingConfig {
    pub horizons: Vec<usize>,
    /// Sliding window length handed to the model.
    pub window: usize,
    /// First origin (training data before it).
    pub start: usize,
    /// At most this many origins, evenly strided.
    pub max_origins: usize,
}

/// The origins a rolling evaluation uses.
pub fn origins(n: usize, cfg: &RollingConfig) -> Vec<usize> {
    let hmax = cfg.horizons.iter().copied().max().unwrap_or(1);
    if n < cfg.start + hmax {
        return Vec::new();
    }
    let last = n - hmax; // origin t needs y[t + hmax − 1]
    let count = last - cfg.start + 1;
    let stride = count.div_ceil(cfg.max_origins.max(1)).max(1);
    (cfg.start..=last).step_by(stride).collect()
}

/// MAE per horizon of `model` over the rolling origins (same order as `cfg.horizons`).
pub fn rolling_mae(series: &[f64], model: &mut dyn Forecaster, cfg: &RollingConfig) -> Result<Vec<f64>, ForecastError> {
    let hmax = cfg.horizons.iter().copied().max().unwrap_or(1);
    let mut sums = vec![0.0; cfg.horizons.len()];
    let ts = origins(series.len(), cfg);
    for &t in &ts {
        let hist = &series[t.saturating_sub(cfg.window)..t];
        model.fit(hist)?;
        let f = model.forecast(hmax)?;
        for (k, &h) in cfg.horizons.iter().enumerate() {
            sums[k] += (series[t + h - 1] - f[h - 1]).abs();
        }
    }
    let n = ts.len().max(1) as f64;
    Ok(sums.into_iter().map(|s| s / n).collect())
}

/// MAE per horizon of the seasonal-naive forecaster with season `m` on the same origins.
pub fn seasonal_naive_mae(series: &[f64], m: usize, cfg: &RollingConfig) -> Vec<f64> {
    let ts = origins(series.len(), cfg);
    cfg.horizons
        .iter()
        .map(|&h| {
            let mut sum = 0.0;
            let mut count = 0usize;
            for &t in &ts {
                if let Some(p) = seasonal_naive_at(&series[..t], m, h) {
                    sum += (series[t + h - 1] - p).abs();
                    count += 1;
                }
            }
            if count == 0 { f64::INFINITY } else { sum / count as f64 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::seasonal_naive::SeasonalNaive;

    #[test]
    fn mae_and_mase_follow_their_definitions() {
        assert_eq!(mae(&[1.0, 2.0, 3.0], &[2.0, 2.0, 1.0]), 1.0);
        assert_eq!(mase(0.5, 2.0), Some(0.25));
        assert_eq!(mase(0.5, 0.0), None);
    }

    #[test]
    fn seasonal_naive_scored_as_a_model_equals_its_baseline_mae() {
        let s: Vec<f64> = (0..200).map(|i| ((i * 37) % 11) as f64 + (i % 7) as f64).collect();
        let cfg = RollingConfig {
            horizons: vec![1, 3],
            window: 50,
            start: 60,
            max_origins: 40,
        };
        let mut m = SeasonalNaive::with_season(7).unwrap();
        let a = rolling_mae(&s, &mut m, &cfg).unwrap();
        let b = seasonal_naive_mae(&s, 7, &cfg);
        assert_eq!(a, b);
        assert!(origins(s.len(), &cfg).len() <= 40);
    }
}
