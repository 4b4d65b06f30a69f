//! The operator's own scaling policy inside the simulator: at every sync it builds the
//! [`Observed`] the operator's scaler builds and runs [`decide_observed`], the same function
//! the scaler runs, so every simulator figure describes the policy the operator runs.
//!
//! What the scaler observes at time `now` (see `operator::scaler`):
//! - the demand window of a Prometheus range query with `step = step_seconds`, ending at
//!   `end = ⌊now/step⌋·step` and starting `points − 1` steps earlier, where
//!   `points = clamp(⌊history/step⌋, 1, 10 000)` for `predictive` and `learned` and 4 (of which the last is
//!   kept) for `reactive`; a sample at time t is the demand of the trace bin holding t, and times
//!   before the trace starts have no sample (Prometheus returns none);
//! - `spec.replicas` (requested, ready or starting) and the ready replicas;
//! - the seconds since the policy's last change (none before the first);
//! - for `reactive`, the HPA state kept from the previous sync.

use serde::{Deserialize, Serialize};

use super::{ClusterModel, Observation, SimError};
use crate::hpa::HpaState;
use crate::scaling_policy::{Method, Observed, PolicySettings, decide_observed};

/// The simulator's settings of the operator's policy: the strategy's scaling settings and the
/// scaler's demand history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorPolicyConfig {
    /// The strategy's settings; `min/max_replicas`, `target_per_replica`, `step_seconds` and
    /// `lead_seconds` are taken from the cluster model by [`OperatorPolicy::new`].
    pub settings: PolicySettings,
    /// Seconds of demand history the scaler queries (`--scaler-history-seconds`).
    pub history_seconds: f64,
}

impl OperatorPolicyConfig {
    /// The operator's defaults for `method` (strategy defaults, 1 h of history).
    pub fn new(method: Method) -> Self {
        Self {
            settings: PolicySettings::new(method, 1, 10_000, 1.0),
            history_seconds: 3600.0,
        }
    }
}

/// Running state: the settings in force, the time of the last change and the HPA state.
pub struct OperatorPolicy {
    settings: PolicySettings,
    points: usize,
    bin_seconds: f64,
    last_change: Option<f64>,
    hpa: Option<HpaState>,
}

impl OperatorPolicy {
    /// The policy on `cluster`: one replica carries `capacity_per_replica`, the scaler ticks every
    /// `sync_seconds` (its samples are that far apart) and an added replica serves after
    /// `startup_seconds` plus one tick, as `mom operator` sets `lead_seconds`.
    pub fn new(cfg: &OperatorPolicyConfig, cluster: &ClusterModel) -> Result<Self, SimError> {
        let mut settings = cfg.settings.clone();
        settings.min_replicas = cluster.min_replicas;
        settings.max_replicas = cluster.max_replicas;
        settings.target_per_replica = cluster.capacity_per_replica;
        settings.step_seconds = cluster.sync_seconds;
        settings.lead_seconds = cluster.startup_seconds + cluster.sync_seconds;
        settings.validate()?;
        if !(cfg.history_seconds.is_finite() && cfg.history_seconds > 0.0) {
            return Err(SimError::BadParameter {
                field: "history_seconds",
                value: cfg.history_seconds,
            });
        }
        let points = if matches!(settings.method, Method::Predictive | Method::Learned) {
            ((cfg.history_seconds / settings.step_seconds).floor() as usize).clamp(1, 10_000)
        } else {
            4
        };
        Ok(Self {
            settings,
            points,
            bin_seconds: cluster.bin_seconds,
            last_change: None,
            hpa: None,
        })
    }

    /// The settings in force (the cluster's bounds, target and timings applied).
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The demand window the scaler's range query returns at `obs.now` (oldest first).
    pub fn window(&self, obs: &Observation<'_>) -> Vec<f64> {
        let step = self.settings.step_seconds;
        let end = (obs.now / step).floor() * step;
        let mut values: Vec<f64> = (0..self.points)
            .rev()
            .map(|back| end - step * back as f64)
            .filter(|t| *t >= 0.0)
            .filter_map(|t| obs.history.get((t / self.bin_seconds).floor() as usize).copied())
            .collect();
        if self.settings.method == Method::Reactive {
            let keep = values.len().saturating_sub(1);
            values.drain(..keep);
        }
        values
    }

    /// What the scaler would observe at this sync, with `window` as its demand.
    pub fn observed(&self, obs: &Observation<'_>, window: Vec<f64>) -> Observed {
        Observed {
            settings: self.settings.clone(),
            demands: vec![(window, self.settings.target_per_replica)],
            current_replicas: obs.spec_replicas,
            ready_replicas: obs.ready_replicas,
            since_last_change_seconds: self.last_change.map(|t| obs.now - t),
            now_seconds: obs.now,
        }
    }

    /// One sync: the replicas the operator's scaler would set now.
    pub fn decide(&mut self, obs: &Observation<'_>) -> Result<u32, SimError> {
        let observed = self.observed(obs, self.window(obs));
        let (_, decision, hpa) = decide_observed(observed, self.hpa.as_ref())?;
        if let Some(state) = hpa {
            self.hpa = Some(state);
        }
        if decision.desired != obs.spec_replicas {
            self.last_change = Some(obs.now);
        }
        Ok(decision.desired)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PolicySpec, simulate};
    use super::*;
    use crate::hpa::HpaConfig;
    use crate::scaling_policy::decide;

    fn cluster() -> ClusterModel {
        ClusterModel {
            capacity_per_replica: 10.0,
            startup_seconds: 60.0,
            bin_seconds: 300.0,
            sync_seconds: 15.0,
            min_replicas: 1,
            max_replicas: 100,
        }
    }

    /// 5-minute bins, a 2-hour cycle: low for an hour, then a sharp ramp and a plateau.
    fn cyclic_pattern(cycles: usize) -> Vec<f64> {
        (0..cycles * 24)
            .map(|i| {
                let k = (i % 24) as f64;
                if k >= 12.0 { 80.0 } else { 10.0 + k }
            })
            .collect()
    }

    #[test]
    fn the_window_is_what_the_scalers_range_query_returns() {
        let history: Vec<f64> = (0..10).map(f64::from).collect();
        let mut cfg = OperatorPolicyConfig::new(Method::Predictive);
        cfg.history_seconds = 60.0;
        let p = OperatorPolicy::new(&cfg, &cluster()).unwrap();
        let obs = Observation {
            now: 607.0,
            bin: 2,
            history: &history[..=2],
            spec_replicas: 1,
            ready_replicas: 1,
        };
        // end = 600 s (bin 2); 4 points, 15 s apart: 555, 570, 585 (bin 1) and 600 (bin 2).
        assert_eq!(p.window(&obs), vec![1.0, 1.0, 1.0, 2.0]);
        // At the start there is no history before t = 0.
        let early = Observation {
            now: 20.0,
            bin: 0,
            ..obs
        };
        assert_eq!(p.window(&early), vec![0.0, 0.0]);
        let reactive = OperatorPolicy::new(&OperatorPolicyConfig::new(Method::Reactive), &cluster()).unwrap();
        assert_eq!(reactive.window(&obs), vec![2.0]);
    }

    #[test]
    fn a_simulator_step_decides_what_the_operators_policy_decides_on_the_same_window() {
        let history = cyclic_pattern(3);
        for method in [Method::Predictive, Method::Reactive, Method::Learned] {
            let mut cfg = OperatorPolicyConfig::new(method);
            if method == Method::Learned {
                let weights = (0..crate::learned::PARAMS)
                    .map(|k| ((k * 37 % 11) as f64 - 5.0) / 7.0)
                    .collect();
                cfg.settings.learned = Some(crate::learned::LearnedModel::new(weights, Default::default()));
            }
            let mut policy = OperatorPolicy::new(&cfg, &cluster()).unwrap();
            // Bin 36 opens the plateau (80 = 8 replicas' worth).
            let obs = Observation {
                now: 300.0 * 36.0,
                bin: 36,
                history: &history[..=36],
                spec_replicas: 3,
                ready_replicas: 3,
            };
            let observed = policy.observed(&obs, policy.window(&obs));
            let stepped = policy.decide(&obs).unwrap();
            // The same inputs through the policy's decision function directly.
            let mut inputs = crate::scaling_policy::DecisionInputs {
                settings: observed.settings.clone(),
                demand: observed.demands[0].0.clone(),
                current_replicas: 3,
                ready_replicas: 3,
                since_last_change_seconds: None,
                hpa: None,
                other_targets: Vec::new(),
            };
            if method == Method::Reactive {
                inputs.hpa = Some(crate::scaling_policy::HpaSync {
                    state: HpaState::new(inputs.settings.hpa_config()).unwrap(),
                    now_seconds: obs.now,
                });
            }
            let (direct, _) = decide(&inputs).unwrap();
            assert_eq!(stepped, direct.desired, "{method:?}");
            assert!(
                stepped > 3,
                "{method:?}: the plateau needs more than 3 replicas, got {stepped}"
            );
        }
    }

    #[test]
    fn predictive_scales_up_before_a_recurring_ramp_and_has_fewer_violations_than_reactive() {
        let d = cyclic_pattern(5);
        let mut cfg = OperatorPolicyConfig::new(Method::Predictive);
        cfg.history_seconds = 3.0 * 3600.0;
        let p = simulate(&d, &cluster(), &PolicySpec::Operator(cfg)).unwrap();
        let r = simulate(
            &d,
            &cluster(),
            &PolicySpec::Operator(OperatorPolicyConfig::new(Method::Reactive)),
        )
        .unwrap();
        assert_eq!((p.policy.as_str(), r.policy.as_str()), ("predictive", "reactive"));
        assert!(
            p.slo_violation_minutes < r.slo_violation_minutes,
            "predictive {} vs reactive {}",
            p.slo_violation_minutes,
            r.slo_violation_minutes
        );
        let h = simulate(&d, &cluster(), &PolicySpec::Hpa(HpaConfig::default())).unwrap();
        assert!(h.slo_violation_minutes > 0.0);
    }

    #[test]
    fn bad_policy_settings_are_rejected_naming_the_field() {
        let mut cfg = OperatorPolicyConfig::new(Method::Predictive);
        cfg.settings.slo_target = 1.0;
        let e = OperatorPolicy::new(&cfg, &cluster()).err().unwrap();
        assert!(e.to_string().contains("slo_target"), "{e}");
        let mut cfg = OperatorPolicyConfig::new(Method::Predictive);
        cfg.history_seconds = 0.0;
        let e = OperatorPolicy::new(&cfg, &cluster()).err().unwrap();
        assert!(e.to_string().contains("history_seconds"), "{e}");
    }
}
