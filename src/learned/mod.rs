//! The learned scaling policy: a small network, trained by PPO in the simulator ([`ppo`]),
//! that chooses the headroom of an HPA-like rule from features of the demand window.
//!
//! **Why a headroom and not a replica count.** The network never outputs replicas. It chooses
//! one of [`HEADROOMS`] (m), and the count follows a fixed rule that every method shares the
//! spirit of (demand `r` in replicas needed, `r = demand / target_per_replica`, oldest first,
//! one sample per `step_seconds`):
//!
//! - `up = ⌈r_now · (1 + m)⌉`: enough for the current demand plus the chosen headroom;
//! - `hold = ⌈max(r over the last 5 min) · (1 + m)⌉`: the HPA's 5-minute scale-down
//!   stabilisation, on the same headroom;
//! - `desired = max(up, min(current, hold))`, clamped to `[min, max]`; no change while the
//!   strategy's cooldown runs.
//!
//! So the policy scales up at once, scales down no faster than the HPA's stabilisation allows,
//! and what is learned is only *how much to keep in reserve, given what the window looks like*.
//! A bounded action on scale-free features is what lets it carry over to traces of other sizes
//! and families; a network that emitted replica counts would learn the training traces' sizes.
//!
//! **Features** ([`features`], `s = max(r_now, 1)`, each clipped to ±[`CLIP`]):
//! `ln(1 + r_now)/4` (size: rounding matters at small counts); `(current − r_now)/s`;
//! `(ready − r_now)/s`; `(max₅ − r_now)/s` and `(r_now − min₅)/s` over the last 5 minutes;
//! `(max₆₀ − r_now)/s` and `(mean₆₀ − r_now)/s` over the window; the 0.9-quantile of the
//! window's 5-minute rises `max(r[k+1..=k+W₅]) − r[k]` over s; and the fraction of an hour of
//! history the window holds.
//!
//! **Network**: `logits = W₂ tanh(W₁ x + b₁) + b₂` ([`FEATURES`] → [`HIDDEN`] → [`HEADROOMS`]).
//! A decision takes the arg-max (the lowest index on a tie): pure, no randomness, so a receipt
//! that records the inputs (the model's weights included) replays bit for bit.

pub mod ppo;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The headrooms the policy chooses among (fractions of the current demand).
pub const HEADROOMS: [f64; 7] = [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0];
/// Actions: one per headroom.
pub const ACTIONS: usize = HEADROOMS.len();
/// Inputs of the network.
pub const FEATURES: usize = 9;
/// Hidden units.
pub const HIDDEN: usize = 16;
/// Features are clipped to ±CLIP.
pub const CLIP: f64 = 5.0;
/// The model file's format version.
pub const FORMAT: u32 = 1;
/// Seconds of the scale-down stabilisation window (the HPA's default).
pub const STABILISATION_SECONDS: f64 = 300.0;
/// Seconds of history that count as a full window (the fill feature's unit).
pub const FULL_WINDOW_SECONDS: f64 = 3600.0;

// Parameter layout of the policy network in one vector.
pub(crate) const W1: usize = 0;
pub(crate) const B1: usize = W1 + HIDDEN * FEATURES;
pub(crate) const W2: usize = B1 + HIDDEN;
pub(crate) const B2: usize = W2 + ACTIONS * HIDDEN;
/// Number of weights of the policy network.
pub const PARAMS: usize = B2 + ACTIONS;

/// Errors of a learned model; each names the field and value at fault.
#[derive(Debug, Error, PartialEq)]
pub enum LearnedError {
    #[error("learned model: format {got} is not supported (this build reads format {FORMAT})")]
    Format { got: u32 },
    #[error("learned model: weights has {got} values, a {FEATURES}-{HIDDEN}-{ACTIONS} network needs {PARAMS}")]
    WeightCount { got: usize },
    #[error("learned model: weights[{index}] is not finite ({value})")]
    NotFinite { index: usize, value: f64 },
    #[error("learned model: headrooms must be {HEADROOMS:?}, got {got:?}")]
    Headrooms { got: Vec<f64> },
    #[error("learned model: not valid JSON: {0}")]
    Parse(String),
    #[error("objectives: {field} must be a number in [0, 1], got {value}")]
    ObjectiveRange { field: &'static str, value: f64 },
    #[error("objectives: performance + cost + reliability + sustainability must sum to 1 (within 1e-6), got {sum}")]
    ObjectiveSum { sum: f64 },
    #[error(
        "objectives: {which} are both 0, so a violation minute costs {cost} replica-hours; give {which} some weight"
    )]
    ObjectiveDegenerate { which: &'static str, cost: f64 },
}

/// Replica-hours one SLO-violation minute costs in the trainer's reward, from a MomConfig's
/// `spec.objectives`: violations hurt performance and reliability, replica-hours are cost and
/// sustainability, so
///
/// `c = (performance + reliability) / (cost + sustainability)`
///
/// — 1 when both sides weigh the same (the trainer's default), 1.5 for the example MomConfig
/// (0.4, 0.3, 0.2, 0.1), 3 for the operator's defaults (0.55, 0.15, 0.2, 0.1). The weights must
/// be what the CRD admits (each in [0, 1], summing to 1 within 1e-6), and neither side may be
/// 0 (a reward that ignores violations or replicas trains nothing useful).
pub fn violation_minute_cost(objectives: &crate::placement::Objectives) -> Result<f64, LearnedError> {
    let fields = [
        ("performance", objectives.performance),
        ("cost", objectives.cost),
        ("reliability", objectives.reliability),
        ("sustainability", objectives.sustainability),
    ];
    for (field, value) in fields {
        if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
            return Err(LearnedError::ObjectiveRange { field, value });
        }
    }
    let sum: f64 = fields.iter().map(|(_, v)| v).sum();
    if (sum - 1.0).abs() > crate::placement::OBJECTIVE_SUM_TOLERANCE {
        return Err(LearnedError::ObjectiveSum { sum });
    }
    let harm = objectives.performance + objectives.reliability;
    let spend = objectives.cost + objectives.sustainability;
    if spend == 0.0 {
        return Err(LearnedError::ObjectiveDegenerate {
            which: "cost and sustainability",
            cost: f64::INFINITY,
        });
    }
    if harm == 0.0 {
        return Err(LearnedError::ObjectiveDegenerate {
            which: "performance and reliability",
            cost: 0.0,
        });
    }
    Ok(harm / spend)
}

/// How a model was trained (kept with it, for the reader; decisions do not read it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub seed: u64,
    /// Names of the traces trained on.
    #[serde(default)]
    pub traces: Vec<String>,
    pub iterations: u32,
    /// Replica-hours one SLO-violation minute costs in the reward.
    pub violation_minute_cost: f64,
    /// Replica-hours one scaling action cost in the reward (0: changes were free).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub change_cost: f64,
    /// The MomConfig objectives that cost was derived from ([`violation_minute_cost`]), when
    /// it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<crate::placement::Objectives>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// A trained policy: what `scaling.method: learned` decides with. Recorded whole in every
/// decision's inputs, so a receipt replays without the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedModel {
    pub format: u32,
    /// Must equal [`HEADROOMS`]; stored so a file says what its outputs mean.
    pub headrooms: Vec<f64>,
    /// The policy network's weights, layout `W₁ b₁ W₂ b₂` (row-major).
    pub weights: Vec<f64>,
    #[serde(default)]
    pub provenance: Provenance,
}

impl LearnedModel {
    /// A model with these weights.
    pub fn new(weights: Vec<f64>, provenance: Provenance) -> Self {
        Self {
            format: FORMAT,
            headrooms: HEADROOMS.to_vec(),
            weights,
            provenance,
        }
    }

    /// Checks the format, the action set and every weight.
    pub fn validate(&self) -> Result<(), LearnedError> {
        if self.format != FORMAT {
            return Err(LearnedError::Format { got: self.format });
        }
        if self.headrooms != HEADROOMS {
            return Err(LearnedError::Headrooms {
                got: self.headrooms.clone(),
            });
        }
        if self.weights.len() != PARAMS {
            return Err(LearnedError::WeightCount {
                got: self.weights.len(),
            });
        }
        if let Some((index, &value)) = self.weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(LearnedError::NotFinite { index, value });
        }
        Ok(())
    }

    /// Parses and validates a model file.
    pub fn from_json(text: &str) -> Result<Self, LearnedError> {
        let model: LearnedModel = serde_json::from_str(text).map_err(|e| LearnedError::Parse(e.to_string()))?;
        model.validate()?;
        Ok(model)
    }

    /// `sha256:` of the weights' bytes (little-endian f64): names the model in reports.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for w in &self.weights {
            h.update(w.to_le_bytes());
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// The network's logits for `x`.
    pub fn logits(&self, x: &[f64; FEATURES]) -> [f64; ACTIONS] {
        logits(&self.weights, x).0
    }

    /// The action a decision takes: the arg-max of the logits, the lowest index on a tie.
    pub fn greedy(&self, x: &[f64; FEATURES]) -> usize {
        argmax(&self.logits(x))
    }
}

/// Index of the largest value; the first one on a tie (NaN never wins).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate().skip(1) {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Logits and the hidden activations (the trainer needs them for the gradient).
pub(crate) fn logits(w: &[f64], x: &[f64; FEATURES]) -> ([f64; ACTIONS], [f64; HIDDEN]) {
    let mut h = [0.0; HIDDEN];
    for (j, hj) in h.iter_mut().enumerate() {
        let row = &w[W1 + j * FEATURES..W1 + (j + 1) * FEATURES];
        let mut a = w[B1 + j];
        for (wi, xi) in row.iter().zip(x) {
            a += wi * xi;
        }
        *hj = a.tanh();
    }
    let mut out = [0.0; ACTIONS];
    for (k, o) in out.iter_mut().enumerate() {
        let row = &w[W2 + k * HIDDEN..W2 + (k + 1) * HIDDEN];
        let mut a = w[B2 + k];
        for (wi, hi) in row.iter().zip(&h) {
            a += wi * hi;
        }
        *o = a;
    }
    (out, h)
}

/// What the rule and the features read of one decision's inputs (one target; several are
/// combined first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window<'a> {
    /// Demand, oldest first; the last is now. Not empty.
    pub demand: &'a [f64],
    /// Demand one replica carries (> 0): `r = demand / per_replica` is in replicas needed.
    pub per_replica: f64,
    pub current: u32,
    pub ready: u32,
    pub step_seconds: f64,
}

impl Window<'_> {
    /// The window in replicas needed.
    fn needed(&self) -> Vec<f64> {
        self.demand.iter().map(|d| d / self.per_replica).collect()
    }

    /// Samples in the 5-minute stabilisation window (at least 1).
    fn recent(&self) -> usize {
        ((STABILISATION_SECONDS / self.step_seconds).round() as usize).max(1)
    }
}

/// `⌈x⌉` for a count of replicas, tolerant of rounding just above a whole number.
fn ceil_replicas(x: f64) -> f64 {
    (x - 1e-9).ceil().max(0.0)
}

/// The features of a window (see the module doc).
pub fn features(w: &Window<'_>) -> [f64; FEATURES] {
    let r = &w.needed()[..];
    let n = r.len();
    let now = r[n - 1];
    let s = now.max(1.0);
    let recent = &r[n.saturating_sub(w.recent())..];
    let (min5, max5) = recent.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    let max60 = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean60 = r.iter().sum::<f64>() / n as f64;
    let span = w.recent();
    let mut rises: Vec<f64> = (0..n.saturating_sub(1))
        .step_by(span.div_ceil(4).max(1))
        .map(|k| {
            let ahead = &r[k + 1..(k + 1 + span).min(n)];
            ahead.iter().copied().fold(f64::NEG_INFINITY, f64::max) - r[k]
        })
        .collect();
    let rise = if rises.is_empty() {
        0.0
    } else {
        let rank = ((rises.len() as f64) * 0.9).floor() as usize;
        let rank = rank.min(rises.len() - 1);
        *rises.select_nth_unstable_by(rank, f64::total_cmp).1
    };
    let full = (FULL_WINDOW_SECONDS / w.step_seconds).max(1.0);
    let x = [
        (1.0 + now).ln() / 4.0,
        (f64::from(w.current) - now) / s,
        (f64::from(w.ready) - now) / s,
        (max5 - now) / s,
        (now - min5) / s,
        (max60 - now) / s,
        (mean60 - now) / s,
        rise / s,
        n as f64 / full,
    ];
    x.map(|v| if v.is_finite() { v.clamp(-CLIP, CLIP) } else { 0.0 })
}

/// The replicas the rule gives for headroom `HEADROOMS[action]` (before bounds and cooldown).
pub fn rule(w: &Window<'_>, action: usize) -> u32 {
    let m = HEADROOMS[action.min(ACTIONS - 1)];
    let r = &w.needed()[..];
    let now = r[r.len() - 1];
    let max5 = r[r.len().saturating_sub(w.recent())..]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let up = ceil_replicas(now * (1.0 + m));
    let hold = ceil_replicas(max5 * (1.0 + m));
    let desired = up.max(f64::from(w.current).min(hold));
    desired.min(f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::Objectives;

    fn objectives(performance: f64, cost: f64, reliability: f64, sustainability: f64) -> Objectives {
        Objectives {
            performance,
            cost,
            reliability,
            sustainability,
        }
    }

    #[test]
    fn the_reward_weighs_a_violation_minute_by_performance_and_reliability_over_cost_and_sustainability() {
        let c = |o: Objectives| violation_minute_cost(&o).unwrap();
        assert!((c(objectives(0.25, 0.25, 0.25, 0.25)) - 1.0).abs() < 1e-12);
        assert!((c(objectives(0.4, 0.3, 0.2, 0.1)) - 1.5).abs() < 1e-12);
        assert!((c(Objectives::default()) - 3.0).abs() < 1e-12);
        // More weight on cost makes violations cheaper, on reliability dearer.
        assert!(c(objectives(0.1, 0.6, 0.1, 0.2)) < 1.0);
        assert!(c(objectives(0.1, 0.1, 0.7, 0.1)) > 1.0);
    }

    #[test]
    fn objectives_the_crd_would_refuse_or_that_ignore_one_side_are_refused_naming_the_field() {
        let err = |o: Objectives| violation_minute_cost(&o).unwrap_err().to_string();
        assert!(err(objectives(1.2, -0.2, 0.0, 0.0)).contains("performance must be a number in [0, 1], got 1.2"));
        assert!(err(objectives(0.5, 0.5, f64::NAN, 0.0)).contains("reliability"));
        assert!(err(objectives(0.5, 0.5, 0.5, 0.0)).contains("sum to 1"));
        assert!(err(objectives(0.6, 0.0, 0.4, 0.0)).contains("cost and sustainability are both 0"));
        assert!(err(objectives(0.0, 0.7, 0.0, 0.3)).contains("performance and reliability are both 0"));
        // Control: one side light but not empty is fine.
        assert!(violation_minute_cost(&objectives(0.0, 0.7, 0.01, 0.29)).is_ok());
    }

    fn window(r: &[f64], current: u32) -> Window<'_> {
        Window {
            demand: r,
            per_replica: 1.0,
            current,
            ready: current,
            step_seconds: 15.0,
        }
    }

    #[test]
    fn the_rule_scales_up_at_once_with_the_chosen_headroom() {
        let r = [4.0, 4.0, 10.0];
        assert_eq!(rule(&window(&r, 4), 0), 10);
        assert_eq!(rule(&window(&r, 4), 4), 15, "50 % headroom on 10 replicas needed");
    }

    #[test]
    fn the_rule_scales_down_only_after_five_minutes_of_lower_demand() {
        // 15-s samples: 20 of them are the 5-minute window.
        let mut r = vec![10.0; 30];
        r.extend(vec![2.0; 10]);
        assert_eq!(rule(&window(&r, 10), 0), 10, "the peak is still within 5 minutes");
        r.extend(vec![2.0; 10]);
        assert_eq!(rule(&window(&r, 10), 0), 2, "5 minutes of low demand: down to it");
        // Positive control: a count above the stabilised one is not raised to it.
        let r = vec![10.0; 3];
        assert_eq!(rule(&window(&r, 3), 0), 10);
    }

    #[test]
    fn features_are_finite_and_clipped_whatever_the_window() {
        for r in [
            vec![0.0],
            vec![0.0; 300],
            vec![1e12, 0.0, 1e-12],
            vec![3.0, 5.0, 1.0, 8.0],
        ] {
            for current in [0, 1, 1000] {
                let x = features(&window(&r, current));
                assert!(
                    x.iter().all(|v| v.is_finite() && v.abs() <= CLIP),
                    "{r:?} {current}: {x:?}"
                );
            }
        }
        // The rise feature sees a burst in the window; a flat window has none.
        let mut burst = vec![5.0; 100];
        for v in burst.iter_mut().skip(40).step_by(20) {
            *v = 10.0;
        }
        assert!(features(&window(&burst, 5))[7] > 0.5);
        assert_eq!(features(&window(&[5.0; 100], 5))[7], 0.0);
    }

    #[test]
    fn a_model_with_a_wrong_shape_or_a_nan_weight_is_refused_naming_it() {
        let ok = LearnedModel::new(vec![0.0; PARAMS], Provenance::default());
        assert_eq!(ok.validate(), Ok(()));
        let mut short = ok.clone();
        short.weights.pop();
        assert_eq!(short.validate(), Err(LearnedError::WeightCount { got: PARAMS - 1 }));
        let mut nan = ok.clone();
        nan.weights[7] = f64::NAN;
        assert!(matches!(nan.validate(), Err(LearnedError::NotFinite { index: 7, .. })));
        let mut other = ok.clone();
        other.headrooms[1] = 0.15;
        assert!(other.validate().unwrap_err().to_string().contains("headrooms"));
        assert!(
            LearnedModel::from_json("{")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn greedy_takes_the_largest_logit_and_the_first_on_a_tie() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f64::NAN, 1.0]), 1);
        let mut w = vec![0.0; PARAMS];
        assert_eq!(
            LearnedModel::new(w.clone(), Provenance::default()).greedy(&[0.0; FEATURES]),
            0
        );
        w[B2 + 3] = 1.0;
        assert_eq!(LearnedModel::new(w, Provenance::default()).greedy(&[0.0; FEATURES]), 3);
    }
}
