//! The predictive scaling policy: forecast the demand of the coming bins, add an uncertainty
//! margin learned from recent forecast errors, and let the MPC choose the replica count.
//!
//! At a sync at time `now` in bin k (demand y_k observed):
//! - when a new bin starts, refit the forecaster on the last `window` bins and record the error
//!   `e_k = y_k − ŷ_{k−1}(1)` of the previous one-step forecast;
//! - `margin = factor · max(0, quantile_q(e over the last residual_window bins))` — the amount by
//!   which the forecast under-shot in all but (1 − q) of recent bins, times a safety factor;
//! - a replica requested now is ready at `now + startup`, in bin `b = ⌊(now + startup)/bin⌋`;
//!   removing one takes effect at once. So stage 0 must cover the current demand and every bin up
//!   to `b`: `D_0 = max(y_k, ŷ(k+1..=b) + margin)`, and stage j ≥ 1 is `ŷ(b + j) + margin`;
//! - MPC (see [`crate::mpc`]) with price 1 per replica-bin, shortfall penalty
//!   `(price / capacity) · s/(1 − s)` for SLO target s (a replica's worth of unmet demand costs
//!   s/(1 − s) replicas: the newsvendor ratio that makes covering demand right with probability s),
//!   change penalty λ, step limits and cooldown; apply u(0). Stage demands are rounded up to
//!   whole replicas first, because the SLO counts any shortfall, however small.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{ClusterModel, Observation, SimError, quantile};
use crate::forecast::{Forecaster, ModelKind};
use crate::mpc::{self, MpcProblem};

/// Settings of the predictive policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictiveConfig {
    pub model: ModelKind,
    /// Bins of history the forecaster is fitted on.
    pub window: usize,
    /// MPC horizon in bins.
    pub horizon: usize,
    /// SLO target (fraction of time demand must be served); sets the penalty/price ratio.
    pub slo_target: f64,
    /// Quantile of recent one-step errors added as margin.
    pub margin_quantile: f64,
    /// Number of recent one-step errors kept.
    pub residual_window: usize,
    /// Multiplier on the error quantile (safety factor for errors larger than any seen).
    pub margin_factor: f64,
    /// λ, in replica-bins per replica changed.
    pub change_penalty: f64,
    /// Minimum seconds between applied changes.
    pub cooldown_seconds: f64,
    pub max_step_up: Option<u32>,
    pub max_step_down: Option<u32>,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            model: ModelKind::HoltWinters,
            window: 2016,
            horizon: 12,
            slo_target: 0.99,
            margin_quantile: 0.99,
            residual_window: 288,
            margin_factor: 1.5,
            change_penalty: 0.05,
            cooldown_seconds: 0.0,
            max_step_up: None,
            max_step_down: None,
        }
    }
}

/// Running state of the predictive policy.
pub struct PredictivePolicy {
    cfg: PredictiveConfig,
    cluster: ClusterModel,
    model: Box<dyn Forecaster + Send>,
    fitted_bin: Option<usize>,
    /// Forecasts for bins fitted_bin + 1, + 2, …
    forecast: Vec<f64>,
    /// One-step forecasts awaiting their actual value, by bin.
    pending_one_step: BTreeMap<usize, f64>,
    residuals: VecDeque<f64>,
    last_change: Option<f64>,
}

impl PredictivePolicy {
    pub fn new(cfg: PredictiveConfig, cluster: &ClusterModel) -> Result<Self, SimError> {
        for (field, value, ok) in [
            (
                "slo_target",
                cfg.slo_target,
                cfg.slo_target > 0.0 && cfg.slo_target < 1.0,
            ),
            (
                "margin_quantile",
                cfg.margin_quantile,
                (0.0..=1.0).contains(&cfg.margin_quantile),
            ),
            ("change_penalty", cfg.change_penalty, cfg.change_penalty >= 0.0),
            ("margin_factor", cfg.margin_factor, cfg.margin_factor >= 0.0),
            ("cooldown_seconds", cfg.cooldown_seconds, cfg.cooldown_seconds >= 0.0),
            ("horizon", cfg.horizon as f64, cfg.horizon >= 1),
            ("window", cfg.window as f64, cfg.window >= 2),
        ] {
            if !(ok && value.is_finite()) {
                return Err(SimError::BadParameter { field, value });
            }
        }
        Ok(Self {
            model: cfg.model.build(),
            cfg,
            cluster: cluster.clone(),
            fitted_bin: None,
            forecast: Vec::new(),
            pending_one_step: BTreeMap::new(),
            residuals: VecDeque::new(),
            last_change: None,
        })
    }

    fn refresh(&mut self, obs: &Observation<'_>, steps: usize) {
        let k = obs.bin;
        let y = obs.history[k];
        // Forget stale one-step forecasts; score the one for this bin.
        if let Some(f) = self.pending_one_step.remove(&k) {
            self.residuals.push_back(y - f);
            while self.residuals.len() > self.cfg.residual_window.max(1) {
                self.residuals.pop_front();
            }
        }
        self.pending_one_step.retain(|&b, _| b > k);
        let start = (k + 1).saturating_sub(self.cfg.window);
        let hist = &obs.history[start..=k];
        let forecast = self.model.fit(hist).and_then(|()| self.model.forecast(steps));
        // Too little history yet (or a degenerate window): persistence.
        self.forecast = match forecast {
            Ok(f) => f.into_iter().map(|v| v.max(0.0)).collect(),
            Err(_) => vec![y; steps],
        };
        self.pending_one_step.insert(k + 1, self.forecast[0]);
        self.fitted_bin = Some(k);
    }

    /// Replica count to apply at this sync.
    pub fn decide(&mut self, obs: &Observation<'_>) -> Result<u32, SimError> {
        let bin_s = self.cluster.bin_seconds;
        let k = obs.bin;
        let ready_bin = ((obs.now + self.cluster.startup_seconds) / bin_s).floor() as usize;
        // Forecast far enough for the longest lead any tick of this bin can have.
        let max_lead = (self.cluster.startup_seconds / bin_s).ceil() as usize + 1;
        let steps = max_lead.max(ready_bin.saturating_sub(k)) + self.cfg.horizon;
        if self.fitted_bin != Some(k) || self.forecast.len() < steps {
            self.refresh(obs, steps);
        }
        let y = obs.history[k];
        let residuals: Vec<f64> = self.residuals.iter().copied().collect();
        let margin = if residuals.len() >= 8 {
            self.cfg.margin_factor * quantile(&residuals, self.cfg.margin_quantile).max(0.0)
        } else {
            // Warm-up: no error record yet, keep 20 % headroom.
            0.2 * y
        };
        let f = |b: usize| self.forecast[b - k - 1] + margin;
        let mut d0 = y;
        for b in k + 1..=ready_bin {
            d0 = d0.max(f(b));
        }
        let mut demand = Vec::with_capacity(self.cfg.horizon);
        demand.push(d0);
        for j in 1..self.cfg.horizon {
            demand.push(f(ready_bin.max(k) + j));
        }
        // The SLO is binary (any unmet demand is a violation) while the MPC's penalty is linear:
        // round each stage up to whole replicas, so one replica short costs penalty·capacity =
        // price·s/(1 − s) and a sliver of shortfall is never "cheaper than a replica".
        let cap = self.cluster.capacity_per_replica;
        for d in &mut demand {
            *d = (*d / cap - 1e-9).ceil().max(0.0) * cap;
        }
        let price = 1.0;
        let s = self.cfg.slo_target;
        let cooldown_remaining = match self.last_change {
            Some(t) if obs.now - t < self.cfg.cooldown_seconds => {
                ((self.cfg.cooldown_seconds - (obs.now - t)) / bin_s).ceil() as u32
            }
            _ => 0,
        };
        let problem = MpcProblem {
            demand,
            capacity_per_replica: self.cluster.capacity_per_replica,
            price_per_replica: price,
            shortfall_penalty: price / self.cluster.capacity_per_replica * s / (1.0 - s),
            change_penalty: self.cfg.change_penalty * price,
            current_replicas: obs.spec_replicas,
            min_replicas: self.cluster.min_replicas,
            max_replicas: self.cluster.max_replicas,
            max_step_up: self.cfg.max_step_up.unwrap_or(self.cluster.max_replicas),
            max_step_down: self.cfg.max_step_down.unwrap_or(self.cluster.max_replicas),
            cooldown_remaining,
        };
        Ok(mpc::plan(&problem)?.first())
    }

    /// Tells the policy what was applied (for the cooldown).
    pub fn record_applied(&mut self, obs: &Observation<'_>, desired: u32) {
        if desired != obs.spec_replicas {
            self.last_change = Some(obs.now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PolicySpec, simulate};
    use super::*;
    use crate::hpa::HpaConfig;

    fn cyclic_pattern(cycles: usize) -> Vec<f64> {
        // 5-minute bins, a 2-hour cycle: low for an hour, then a sharp ramp and a plateau.
        (0..cycles * 24)
            .map(|i| {
                let k = (i % 24) as f64;
                if k >= 12.0 {
                    100.0 + 5.0 * (k - 12.0).min(4.0)
                } else {
                    20.0
                }
            })
            .collect()
    }

    #[test]
    fn predictive_scales_up_before_a_recurring_ramp_and_beats_hpa() {
        let d = cyclic_pattern(12);
        let cluster = ClusterModel {
            capacity_per_replica: 10.0,
            startup_seconds: 60.0,
            bin_seconds: 300.0,
            sync_seconds: 15.0,
            min_replicas: 1,
            max_replicas: 100,
        };
        let cfg = PredictiveConfig {
            window: 24 * 6,
            margin_quantile: 0.9,
            margin_factor: 1.0,
            ..PredictiveConfig::default()
        };
        let p = simulate(&d, &cluster, &PolicySpec::Predictive(cfg)).unwrap();
        let h = simulate(&d, &cluster, &PolicySpec::Hpa(HpaConfig::default())).unwrap();
        // Once three cycles of history are there, the ramp is foreseen.
        assert!(
            p.slo_violation_minutes < h.slo_violation_minutes,
            "predictive {} vs hpa {}",
            p.slo_violation_minutes,
            h.slo_violation_minutes
        );
        assert!(
            p.replica_hours < h.replica_hours,
            "predictive {} vs hpa {}",
            p.replica_hours,
            h.replica_hours
        );
    }

    #[test]
    fn bad_policy_settings_are_rejected() {
        let c = ClusterModel::for_trace(&[1.0, 2.0], 60.0);
        let e = PredictivePolicy::new(
            PredictiveConfig {
                slo_target: 1.0,
                ..PredictiveConfig::default()
            },
            &c,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("slo_target"));
    }
}
