//! The Kubernetes HorizontalPodAutoscaler algorithm with its default behaviour, as a pure state
//! machine: each sync (`HpaState::step`) takes the current replica count, the ready pods and
//! their average utilisation, and returns the new desired replica count.
//!
//! Follows `pkg/controller/podautoscaler` (replica_calculator.go, horizontal.go):
//! - recommendation: `desired = ceil(current × metric / target)`, no change when
//!   `|metric/target − 1| ≤ tolerance` (0.1). Pods still starting count as 0 % utilisation when
//!   the ratio says "scale up", and a ratio that flips across 1 after that correction means no
//!   change — so with `r` ready pods the recommendation is `ceil(r × metric / target)`.
//! - scale-down stabilisation: the applied recommendation is the **maximum** of all
//!   recommendations of the last 300 s (and at least the current count when scaling down).
//! - scale-up rate: at most `max(period_start + 4, ceil(period_start × 2))` replicas, with
//!   `period_start = current − replicas added in the last 15 s`;
//!   scale-down rate: 100 % per 15 s (no extra limit).
//! - then clamp to `[min_replicas, max_replicas]`; sync every 15 s (the caller's clock).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of the HPA model; each names the offending field and value.
#[derive(Debug, Error, PartialEq)]
pub enum HpaError {
    #[error("hpa.target_utilisation must be finite and > 0, got {0}")]
    BadTarget(f64),
    #[error("hpa.tolerance must be finite and in [0, 1), got {0}")]
    BadTolerance(f64),
    #[error("hpa.min_replicas ({min}) must be ≥ 1 and ≤ max_replicas ({max})")]
    BadBounds { min: u32, max: u32 },
    #[error("hpa step: utilisation must be finite and ≥ 0, got {0}")]
    BadUtilisation(f64),
    #[error("hpa step: ready pods ({ready}) exceed current replicas ({current})")]
    ReadyExceedsCurrent { ready: u32, current: u32 },
    #[error("hpa step: time {now} s is before the previous sync at {last} s")]
    TimeWentBack { now: f64, last: f64 },
}

/// HPA spec: target and the default `behavior` (Kubernetes ≥ 1.18 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HpaConfig {
    /// Target average utilisation of ready pods (e.g. 0.8 = 80 %).
    pub target_utilisation: f64,
    /// `--horizontal-pod-autoscaler-tolerance`, default 0.1.
    pub tolerance: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `behavior.scaleDown.stabilizationWindowSeconds`, default 300.
    pub scale_down_stabilisation_seconds: f64,
    /// `behavior.scaleUp` policies: Pods 4 / Percent 100, period 15 s, selectPolicy Max.
    pub scale_up_pods: u32,
    pub scale_up_percent: u32,
    pub scale_up_period_seconds: f64,
    /// `behavior.scaleDown` policy Percent 100 per 15 s.
    pub scale_down_percent: u32,
    pub scale_down_period_seconds: f64,
    /// `--horizontal-pod-autoscaler-sync-period`, default 15 s.
    pub sync_period_seconds: f64,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            target_utilisation: 0.8,
            tolerance: 0.1,
            min_replicas: 1,
            max_replicas: 10_000,
            scale_down_stabilisation_seconds: 300.0,
            scale_up_pods: 4,
            scale_up_percent: 100,
            scale_up_period_seconds: 15.0,
            scale_down_percent: 100,
            scale_down_period_seconds: 15.0,
            sync_period_seconds: 15.0,
        }
    }
}

impl HpaConfig {
    /// Checks every field; returns the first problem found.
    pub fn validate(&self) -> Result<(), HpaError> {
        if !(self.target_utilisation.is_finite() && self.target_utilisation > 0.0) {
            return Err(HpaError::BadTarget(self.target_utilisation));
        }
        if !(self.tolerance.is_finite() && (0.0..1.0).contains(&self.tolerance)) {
            return Err(HpaError::BadTolerance(self.tolerance));
        }
        if self.min_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(HpaError::BadBounds {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        Ok(())
    }
}

/// Recommendation of the replica calculator for one sync (before behaviour).
///
/// `ratio = utilisation / target`. Without starting pods: `|ratio − 1| ≤ tol` → `current`,
/// else `ceil(ratio × ready)`. With starting (unready) pods and `ratio > 1`, those pods count as
/// 0 %: `ratio' = ratio × ready / current`; no change when `|ratio' − 1| ≤ tol` or when `ratio'`
/// fell below 1, else `ceil(ratio' × current)`.
pub fn recommend(cfg: &HpaConfig, current: u32, ready: u32, utilisation: f64) -> u32 {
    if ready == 0 {
        // No pod reports a metric: the controller cannot compute a ratio and keeps the count.
        return current;
    }
    let ratio = utilisation / cfg.target_utilisation;
    let unready = current.saturating_sub(ready);
    let scale_up_with_unready = unready > 0 && ratio > 1.0;
    if !scale_up_with_unready {
        if (1.0 - ratio).abs() <= cfg.tolerance {
            return current;
        }
        return ceil_u32(ratio * f64::from(ready));
    }
    let new_ratio = ratio * f64::from(ready) / f64::from(current);
    if (1.0 - new_ratio).abs() <= cfg.tolerance || new_ratio < 1.0 {
        return current;
    }
    ceil_u32(new_ratio * f64::from(current))
}

fn ceil_u32(x: f64) -> u32 {
    // Guard against float noise such as 2.0000000000000004 → 3 (Kubernetes computes in float64
    // too, so we keep its arithmetic, only saturating at u32::MAX).
    let c = x.ceil();
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c.max(0.0) as u32
    }
}

/// Mutable HPA controller state: recommendation history and recent scale events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HpaState {
    pub config: HpaConfig,
    /// (time s, recommendation) of past syncs, kept for the stabilisation window.
    recommendations: Vec<(f64, u32)>,
    /// (time s, replicas added (>0) or removed (<0)) of past rescales.
    scale_events: Vec<(f64, i64)>,
    last_sync: Option<f64>,
}

/// Outcome of one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HpaDecision {
    /// Raw recommendation of the replica calculator.
    pub recommendation: u32,
    /// Replica count after stabilisation, rate limits and min/max.
    pub desired: u32,
}

impl HpaState {
    pub fn new(config: HpaConfig) -> Result<Self, HpaError> {
        config.validate()?;
        Ok(Self {
            config,
            recommendations: Vec::new(),
            scale_events: Vec::new(),
            last_sync: None,
        })
    }

    /// One sync at time `now` (seconds): `current` = spec replicas, `ready` = ready pods,
    /// `utilisation` = average utilisation of the ready pods (1.0 = 100 %).
    pub fn step(&mut self, now: f64, current: u32, ready: u32, utilisation: f64) -> Result<HpaDecision, HpaError> {
        if !(utilisation.is_finite() && utilisation >= 0.0) {
            return Err(HpaError::BadUtilisation(utilisation));
        }
        if ready > current {
            return Err(HpaError::ReadyExceedsCurrent { ready, current });
        }
        if let Some(last) = self.last_sync
            && now < last
        {
            return Err(HpaError::TimeWentBack { now, last });
        }
        self.last_sync = Some(now);
        let cfg = self.config.clone();
        if current == 0 {
            // Kubernetes: scaling is disabled while the target has 0 replicas.
            return Ok(HpaDecision {
                recommendation: 0,
                desired: 0,
            });
        }
        let recommendation = recommend(&cfg, current, ready, utilisation);

        // Stabilisation (horizontal.go stabilizeRecommendationWithBehaviors); the scale-up
        // window is 0 s by default, so only the current recommendation counts upwards.
        let down_cutoff = now - cfg.scale_down_stabilisation_seconds;
        self.recommendations.retain(|&(t, _)| t > down_cutoff);
        let mut down = recommendation;
        for &(_, r) in &self.recommendations {
            down = down.max(r);
        }
        let up = recommendation;
        self.recommendations.push((now, recommendation));
        let mut stabilised = current;
        if stabilised < up {
            stabilised = up;
        }
        if stabilised > down {
            stabilised = down;
        }

        // Rate limits (convertDesiredReplicasWithBehaviorRate).
        let longest = cfg.scale_up_period_seconds.max(cfg.scale_down_period_seconds);
        self.scale_events.retain(|&(t, _)| t + longest > now);
        let mut desired = stabilised;
        if stabilised > current {
            let added: i64 = self
                .scale_events
                .iter()
                .filter(|&&(t, d)| d > 0 && t + cfg.scale_up_period_seconds > now)
                .map(|&(_, d)| d)
                .sum();
            let removed: i64 = self
                .scale_events
                .iter()
                .filter(|&&(t, d)| d < 0 && t + cfg.scale_up_period_seconds > now)
                .map(|&(_, d)| -d)
                .sum();
            let start = (i64::from(current) - added + removed).max(0) as f64;
            let by_pods = start + f64::from(cfg.scale_up_pods);
            let by_percent = (start * (1.0 + f64::from(cfg.scale_up_percent) / 100.0)).ceil();
            let limit = by_pods.max(by_percent).max(f64::from(current));
            let max_allowed = f64::from(cfg.max_replicas).min(limit);
            if f64::from(desired) > max_allowed {
                desired = max_allowed as u32;
            }
        } else if stabilised < current {
            let removed: i64 = self
                .scale_events
                .iter()
                .filter(|&&(t, d)| d < 0 && t + cfg.scale_down_period_seconds > now)
                .map(|&(_, d)| -d)
                .sum();
            let added: i64 = self
                .scale_events
                .iter()
                .filter(|&&(t, d)| d > 0 && t + cfg.scale_down_period_seconds > now)
                .map(|&(_, d)| d)
                .sum();
            let start = (i64::from(current) + removed - added).max(0) as f64;
            let limit = (start * (1.0 - f64::from(cfg.scale_down_percent) / 100.0))
                .floor()
                .min(f64::from(current));
            let min_allowed = f64::from(cfg.min_replicas).max(limit);
            if f64::from(desired) < min_allowed {
                desired = min_allowed as u32;
            }
        }
        desired = desired.clamp(cfg.min_replicas, cfg.max_replicas);
        if desired != current {
            self.scale_events.push((now, i64::from(desired) - i64::from(current)));
        }
        Ok(HpaDecision {
            recommendation,
            desired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa() -> HpaState {
        HpaState::new(HpaConfig {
            target_utilisation: 0.5,
            ..HpaConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn utilisation_double_the_target_doubles_the_replicas() {
        // Kubernetes docs: current 1 pod at 200m with target 100m → 2 pods.
        let mut h = hpa();
        let d = h.step(0.0, 4, 4, 1.0).unwrap();
        assert_eq!(d.recommendation, 8);
        assert_eq!(d.desired, 8);
    }

    #[test]
    fn ratio_within_tolerance_keeps_the_count() {
        let mut h = hpa();
        // ratio 1.08 → inside 0.1 tolerance.
        assert_eq!(h.step(0.0, 10, 10, 0.54).unwrap().desired, 10);
        // ratio 1.12 → ceil(11.2) = 12.
        assert_eq!(h.step(15.0, 10, 10, 0.56).unwrap().desired, 12);
    }

    #[test]
    fn scale_up_is_limited_to_four_pods_or_double_per_period() {
        let mut h = hpa();
        // 1 pod at 10× target: limit max(1+4, 2) = 5.
        assert_eq!(h.step(0.0, 1, 1, 5.0).unwrap().desired, 5);
        // 10 pods at 10× target: limit max(14, 20) = 20.
        let mut h = hpa();
        assert_eq!(h.step(0.0, 10, 10, 5.0).unwrap().desired, 20);
    }

    #[test]
    fn scale_up_limit_counts_replicas_added_earlier_in_the_period() {
        let mut h = HpaState::new(HpaConfig {
            target_utilisation: 0.5,
            sync_period_seconds: 5.0,
            ..HpaConfig::default()
        })
        .unwrap();
        assert_eq!(h.step(0.0, 1, 1, 5.0).unwrap().desired, 5);
        // 5 s later: period start is still 1 → limit 5, no further growth.
        assert_eq!(h.step(5.0, 5, 1, 5.0).unwrap().desired, 5);
        // 15 s after the first event the window has passed: start = 5 → limit 10.
        assert_eq!(h.step(15.0, 5, 5, 5.0).unwrap().desired, 10);
    }

    #[test]
    fn scale_down_waits_for_the_five_minute_stabilisation_window() {
        let mut h = hpa();
        assert_eq!(h.step(0.0, 10, 10, 0.5).unwrap().desired, 10);
        // Load halves: recommendation 5, but the max over the window is still 10.
        let mut t = 15.0;
        while t < 300.0 {
            assert_eq!(h.step(t, 10, 10, 0.25).unwrap().desired, 10, "at {t}");
            t += 15.0;
        }
        // At t = 300 the recommendation from t = 0 has left the window (cutoff is exclusive).
        assert_eq!(h.step(300.0, 10, 10, 0.25).unwrap().desired, 5);
    }

    #[test]
    fn starting_pods_count_as_idle_when_scaling_up() {
        let mut h = hpa();
        // 4 ready of 8 at 1.5× target... ratio 3 on ready, corrected ratio 1.5 → ceil(12) = 12.
        assert_eq!(recommend(&h.config, 8, 4, 1.5), 12);
        // Corrected ratio 0.75 crosses below 1 → keep 8.
        assert_eq!(recommend(&h.config, 8, 2, 1.5), 8);
        assert_eq!(h.step(0.0, 8, 4, 1.5).unwrap().desired, 12);
    }

    #[test]
    fn desired_is_clamped_to_min_and_max() {
        let mut h = HpaState::new(HpaConfig {
            target_utilisation: 0.5,
            min_replicas: 2,
            max_replicas: 6,
            scale_down_stabilisation_seconds: 0.0,
            ..HpaConfig::default()
        })
        .unwrap();
        assert_eq!(h.step(0.0, 4, 4, 5.0).unwrap().desired, 6);
        assert_eq!(h.step(15.0, 6, 6, 0.0).unwrap().desired, 2);
    }

    #[test]
    fn bad_config_and_inputs_are_rejected_with_the_field_named() {
        let e = HpaState::new(HpaConfig {
            target_utilisation: 0.0,
            ..HpaConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("target_utilisation"));
        let e = HpaState::new(HpaConfig {
            min_replicas: 5,
            max_replicas: 2,
            ..HpaConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("min_replicas"));
        let mut h = hpa();
        assert!(matches!(
            h.step(0.0, 2, 3, 0.5),
            Err(HpaError::ReadyExceedsCurrent { .. })
        ));
        assert!(matches!(h.step(0.0, 2, 2, f64::NAN), Err(HpaError::BadUtilisation(_))));
        h.step(30.0, 2, 2, 0.5).unwrap();
        assert!(matches!(h.step(15.0, 2, 2, 0.5), Err(HpaError::TimeWentBack { .. })));
    }
}
