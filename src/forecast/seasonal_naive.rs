//! Seasonal-naive forecaster: `ŷ(n+h) = y(n + h − m·⌈h/m⌉)`, the value one season earlier
//! (m = 1 is the plain naive "last value" forecast). The baseline of MASE.

use super::{ForecastError, Forecaster, check_history, check_horizon, detect_season};

/// Seasonal naive with a fixed season, or one detected by autocorrelation at each fit.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalNaive {
    fixed: Option<usize>,
    season: usize,
    history: Vec<f64>,
}

impl SeasonalNaive {
    /// Fixed season length `m ≥ 1`.
    pub fn with_season(m: usize) -> Result<Self, ForecastError> {
        if m == 0 {
            return Err(ForecastError::BadSeason(m));
        }
        Ok(Self {
            fixed: Some(m),
            season: m,
            history: Vec::new(),
        })
    }

    /// Season detected from each fitted history (1 when none is found).
    pub fn auto() -> Self {
        Self {
            fixed: None,
            season: 1,
            history: Vec::new(),
        }
    }

    pub fn season(&self) -> usize {
        self.season
    }
}

/// `ŷ(n+h)` for a history of length n with season m, or `None` if the history is too short.
pub fn seasonal_naive_at(history: &[f64], m: usize, h: usize) -> Option<f64> {
    let n = history.len();
    let back = m * h.div_ceil(m);
    (n + h).checked_sub(back + 1).filter(|&i| i < n).map(|i| history[i])
}

impl Forecaster for SeasonalNaive {
    fn name(&self) -> &'static str {
        "seasonal_naive"
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        check_history(history, 2)?;
        self.season = match self.fixed {
            Some(m) => m,
            None => detect_season(history, 2, 400, 0.3).unwrap_or(1),
        };
        if history.len() < self.season {
            return Err(ForecastError::TooShort {
                got: history.len(),
                need: self.season,
            });
        }
        self.history = history.to_vec();
        Ok(())
    }

    fn forecast(&self, horizon: usize) -> Result<Vec<f64>, ForecastError> {
        check_horizon(horizon)?;
        if self.history.is_empty() {
            return Err(ForecastError::NotFitted);
        }
        (1..=horizon)
            .map(|h| seasonal_naive_at(&self.history, self.season, h).ok_or(ForecastError::NotFitted))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_repeats_the_last_value_and_seasonal_repeats_the_last_season() {
        let y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(seasonal_naive_at(&y, 1, 3), Some(6.0));
        assert_eq!(seasonal_naive_at(&y, 3, 1), Some(4.0));
        assert_eq!(seasonal_naive_at(&y, 3, 3), Some(6.0));
        assert_eq!(seasonal_naive_at(&y, 3, 4), Some(4.0));
        let mut m = SeasonalNaive::with_season(3).unwrap();
        m.fit(&y).unwrap();
        assert_eq!(m.forecast(4).unwrap(), vec![4.0, 5.0, 6.0, 4.0]);
    }

    #[test]
    fn zero_season_and_unfitted_model_are_errors() {
        assert_eq!(SeasonalNaive::with_season(0), Err(ForecastError::BadSeason(0)));
        assert_eq!(SeasonalNaive::auto().forecast(1), Err(ForecastError::NotFitted));
    }
}
