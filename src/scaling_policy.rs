//! One scaling decision for one agent, as a pure, replayable function: the operator's scaler
//! observes demand and replica counts, calls [`decide`] and applies `desired`; the receipt
//! records the [`DecisionInputs`] and the [`Decision`], and [`replay`] recomputes the latter from
//! the former (`mom verify --replay`).
//!
//! Inputs: the strategy's settings ([`PolicySettings`]), the demand history (one sample per
//! `step_seconds`, oldest first, the last one observed now), spec and ready replicas, seconds
//! since the scaler's last change, and for `reactive` the HPA controller state. Output: the
//! desired replica count with everything that led to it (forecast, MPC problem and plan, HPA
//! recommendation).
//!
//! Methods:
//! - `manual`: `desired = clamp(spec.replicas, min, max)`; nothing else.
//! - `reactive`: the Kubernetes HPA ([`crate::hpa`]) on `utilisation = demand_now / ready` with
//!   `target = target_per_replica` (an HPA `AverageValue` target), so the raw recommendation is
//!   `ceil(demand_now / target)`; then its stabilisation and rate limits; no change while the
//!   strategy's cooldown runs.
//! - `predictive`: forecast `L + H` steps (`L = ⌈lead/step⌉`, `H = ⌈horizon/step⌉`) with the
//!   configured model (persistence while the history is too short for it), then an MPC
//!   ([`crate::mpc`]) over H stages with
//!   `D_0 = max(y_now, ŷ(1..=L))·(1 + headroom)` — the replicas chosen now must serve until the
//!   next decision and new ones only serve after start-up, so stage 0 covers that lead —
//!   `D_j = ŷ(L + j)·(1 + headroom)`, each rounded up to whole replicas
//!   (`⌈D/target⌉·target`); price 1 per replica-stage, shortfall penalty
//!   `(1/target)·s/(1 − s)` for SLO target `s` (one replica short costs `s/(1 − s)` replicas),
//!   change penalty λ, and the cooldown as `⌈(cooldown − since_last_change)/step⌉` frozen stages.
//!   Apply `u(0)`. That is the unguarded policy (`guard: None`, what older receipts hold).
//!   With a [`Guard`] (opt-in; off by default): the margin is the conformal `q`-quantile of the history's
//!   lead-time rises ([`conformal_margin`]) instead of `headroom`; the HPA algorithm runs every
//!   time on `(y_now + margin) / ready` (its state in [`DecisionInputs::hpa`], a new one when
//!   absent); the forecast's skill against persistence on the newest `L + H` samples
//!   ([`forecast_skill`]) decides: above `skill_threshold` the MPC runs with
//!   `D_0 = max(y_now + margin, ŷ(1..=L))`, `D_j = ŷ(L + j) + margin` and scales down no lower
//!   than the HPA's stabilised recommendation; otherwise (and while skill cannot be measured)
//!   the HPA's decision is applied. With [`Guard::hpa_floor`] the MPC is not used: the HPA runs
//!   on `y_now / ready` at `hpa_utilisation · target` (the plain HPA's metric and target), its
//!   decision is the floor, and only while the forecast has skill the count is pre-scaled to
//!   `max(floor, ⌈max(y_now + margin, ŷ(1..=L)) / target⌉)` (the margin scored only where the
//!   demand changes within the lead, [`conformal_margin_on_changes`]), so the decision is never below the
//!   HPA's and scales down exactly as the HPA's stabilised recommendation allows.
//!
//! In every method a spec outside `[min, max]` is first brought back into range. With several
//! targets, demand is first turned into replicas needed, `max_i demand_i(t)/target_i`, and the
//! decision runs on that with a target of one replica ([`DecisionInputs::combined`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::forecast::{self, ModelKind};
use crate::hpa::{HpaConfig, HpaDecision, HpaError, HpaState};
use crate::learned::{self, LearnedError, LearnedModel};
use crate::mpc::{self, MpcError, MpcProblem};
use crate::receipts::replay::ReplayError;

/// Decision kinds written into receipts, one per method.
pub const KIND_PREDICTIVE: &str = "scaling.predictive";
pub const KIND_REACTIVE: &str = "scaling.reactive";
pub const KIND_MANUAL: &str = "scaling.manual";
pub const KIND_LEARNED: &str = "scaling.learned";
/// Every kind [`replay`] handles.
pub const KINDS: [&str; 4] = [KIND_PREDICTIVE, KIND_REACTIVE, KIND_MANUAL, KIND_LEARNED];

/// Errors of a scaling decision; each names the offending field and value.
#[derive(Debug, Error, PartialEq)]
pub enum PolicyError {
    #[error("scaling.{field} must be {rule}, got {value}")]
    BadSetting {
        field: &'static str,
        rule: &'static str,
        value: f64,
    },
    #[error("scaling.min_replicas ({min}) must be ≤ max_replicas ({max})")]
    BadBounds { min: u32, max: u32 },
    #[error("scaling.demand is empty: the {method} method needs at least the current demand")]
    EmptyDemand { method: &'static str },
    #[error("scaling.demand[{index}] must be finite and ≥ 0, got {value}")]
    BadDemand { index: usize, value: f64 },
    #[error("scaling.other_targets[{target}].target_per_replica must be finite and > 0, got {value}")]
    BadOtherTarget { target: usize, value: f64 },
    #[error("scaling.other_targets[{target}].demand[{index}] must be finite and ≥ 0, got {value}")]
    BadOtherDemand { target: usize, index: usize, value: f64 },
    #[error("scaling.learned is missing: the learned method needs a trained model")]
    MissingModel,
    #[error("scaling.{0}")]
    Model(#[from] LearnedError),
    #[error("scaling.hpa is missing: the reactive method needs the HPA state")]
    MissingHpaState,
    #[error("scaling.hpa.state.config does not match the settings (min/max/target changed; start a new state)")]
    HpaConfigMismatch,
    #[error("scaling: {0}")]
    Mpc(#[from] MpcError),
    #[error("scaling: {0}")]
    Hpa(#[from] HpaError),
}

/// How the replica count is chosen (the strategy's `scaling.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Predictive,
    Reactive,
    Manual,
    /// The trained policy of [`crate::learned`] (its model in [`PolicySettings::learned`]).
    Learned,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Predictive => "predictive",
            Method::Reactive => "reactive",
            Method::Manual => "manual",
            Method::Learned => "learned",
        }
    }

    /// The receipt decision kind of this method.
    pub fn kind(self) -> &'static str {
        match self {
            Method::Predictive => KIND_PREDICTIVE,
            Method::Reactive => KIND_REACTIVE,
            Method::Manual => KIND_MANUAL,
            Method::Learned => KIND_LEARNED,
        }
    }
}

/// Everything about the policy that is not observed: the strategy plus the scaler's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySettings {
    pub method: Method,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Seconds after an applied change during which no other change is made.
    pub cooldown_seconds: f64,
    /// Demand one replica should carry (the strategy target's `target`); > 0.
    pub target_per_replica: f64,
    /// Forecast/MPC horizon in seconds (predictive); > 0.
    pub horizon_seconds: f64,
    /// Spacing of the demand samples in seconds; > 0.
    pub step_seconds: f64,
    /// Seconds from a decision until an added replica serves and until the next decision
    /// (pod start-up + the scaler's tick): stage 0 of the MPC must cover that long.
    pub lead_seconds: f64,
    /// Forecasting model (predictive).
    pub model: ModelKind,
    /// SLO target s in (0, 1): sets the shortfall penalty to s/(1 − s) replicas per replica short.
    pub slo_target: f64,
    /// Fraction added on top of the forecast (predictive), ≥ 0.
    pub headroom: f64,
    /// λ: cost per replica added or removed, in replica-stages, ≥ 0.
    pub change_penalty: f64,
    /// Predictive: the guards meant to make the policy generalise (conformal margin, forecast-skill
    /// fallback to the HPA algorithm, HPA-paced scale-down). `None` (what receipts written
    /// before they existed hold) is the unguarded policy: fixed `headroom`, forecast always used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// Learned: the trained model, recorded whole so a receipt replays without its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedModel>,
}

/// The predictive policy's guards (see [`decide`]): margins from a conformal quantile of the
/// demand's own lead-time rises instead of a fixed headroom, and the forecast used only while it
/// beats persistence on the newest part of the history; otherwise the HPA algorithm decides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    /// q in (0, 1): the margin is the conformal q-quantile of `max(y[t+1..=t+L]) − y[t]` over
    /// the history (split conformal, rank ⌈(n+1)q⌉), so demand over the next lead stays within
    /// `y_now + margin` about a fraction q of the time. Read as a newsvendor ratio it is
    /// `penalty / (penalty + price)` of one replica short vs one replica idle.
    pub conformal_level: f64,
    /// The forecast is used only when its skill `1 − MAE_model / MAE_persistence` on the last
    /// `L + H` samples (model fitted on the samples before them) exceeds this; otherwise, and
    /// while the history is too short to measure it, the HPA algorithm decides. In [-1, 1).
    pub skill_threshold: f64,
    /// The guard's HPA runs at this fraction of `target_per_replica` (its `AverageValue` target is
    /// `hpa_utilisation · target_per_replica`), in (0, 1]. 1 (what receipts written before the
    /// field existed hold) is the strategy's own target; 0.8 is the 80 % a plain HPA is run at.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub hpa_utilisation: f64,
    /// `true`: the **HPA floor** — the decision is never below the HPA's (at `hpa_utilisation`,
    /// on the current demand alone, stabilised as the HPA stabilises), and only when the forecast
    /// has skill it pre-scales to `⌈max(y_now + margin, ŷ(1..=L)) / target_per_replica⌉`; no MPC.
    /// Its margin is scored only where the demand changes ([`conformal_margin_on_changes`]).
    /// `false` (receipts written before it existed): the MPC decides when the forecast has skill.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hpa_floor: bool,
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            conformal_level: 0.9,
            skill_threshold: 0.0,
            hpa_utilisation: 1.0,
            hpa_floor: false,
        }
    }
}

impl PolicySettings {
    /// Settings with the scaler's defaults for everything the strategy does not say.
    pub fn new(method: Method, min_replicas: u32, max_replicas: u32, target_per_replica: f64) -> Self {
        Self {
            method,
            min_replicas,
            max_replicas,
            cooldown_seconds: 60.0,
            target_per_replica,
            horizon_seconds: 900.0,
            step_seconds: 15.0,
            lead_seconds: 45.0,
            model: ModelKind::HoltWinters,
            slo_target: 0.99,
            headroom: 0.1,
            change_penalty: 0.05,
            guard: None,
            learned: None,
        }
    }

    /// Checks every field; returns the first problem found.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_replicas > self.max_replicas {
            return Err(PolicyError::BadBounds {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        let positive = "finite and > 0";
        let non_negative = "finite and ≥ 0";
        for (field, value, rule, ok) in [
            (
                "target_per_replica",
                self.target_per_replica,
                positive,
                self.target_per_replica > 0.0,
            ),
            (
                "horizon_seconds",
                self.horizon_seconds,
                positive,
                self.horizon_seconds > 0.0,
            ),
            ("step_seconds", self.step_seconds, positive, self.step_seconds > 0.0),
            (
                "lead_seconds",
                self.lead_seconds,
                non_negative,
                self.lead_seconds >= 0.0,
            ),
            (
                "cooldown_seconds",
                self.cooldown_seconds,
                non_negative,
                self.cooldown_seconds >= 0.0,
            ),
            ("headroom", self.headroom, non_negative, self.headroom >= 0.0),
            (
                "change_penalty",
                self.change_penalty,
                non_negative,
                self.change_penalty >= 0.0,
            ),
            (
                "slo_target",
                self.slo_target,
                "in (0, 1)",
                self.slo_target > 0.0 && self.slo_target < 1.0,
            ),
        ] {
            if !(ok && value.is_finite()) {
                return Err(PolicyError::BadSetting { field, rule, value });
            }
        }
        if self.method == Method::Learned {
            self.learned.as_ref().ok_or(PolicyError::MissingModel)?.validate()?;
        }
        if let Some(g) = &self.guard {
            if !(g.conformal_level > 0.0 && g.conformal_level < 1.0) {
                return Err(PolicyError::BadSetting {
                    field: "guard.conformal_level",
                    rule: "in (0, 1)",
                    value: g.conformal_level,
                });
            }
            if !(g.skill_threshold >= -1.0 && g.skill_threshold < 1.0) {
                return Err(PolicyError::BadSetting {
                    field: "guard.skill_threshold",
                    rule: "in [-1, 1)",
                    value: g.skill_threshold,
                });
            }
            if !(g.hpa_utilisation > 0.0 && g.hpa_utilisation <= 1.0) {
                return Err(PolicyError::BadSetting {
                    field: "guard.hpa_utilisation",
                    rule: "in (0, 1]",
                    value: g.hpa_utilisation,
                });
            }
        }
        Ok(())
    }

    /// The HPA configuration of the reactive method: Kubernetes defaults, the strategy's bounds
    /// (at least 1: the HPA never scales to zero) and its target as the average value per pod.
    /// For the guarded predictive method, the guard's HPA: the target times
    /// [`Guard::hpa_utilisation`].
    pub fn hpa_config(&self) -> HpaConfig {
        let min = self.min_replicas.max(1);
        let fraction = match (self.method, &self.guard) {
            (Method::Predictive, Some(g)) => g.hpa_utilisation,
            _ => 1.0,
        };
        HpaConfig {
            target_utilisation: self.target_per_replica * fraction,
            min_replicas: min,
            max_replicas: self.max_replicas.max(min),
            sync_period_seconds: self.step_seconds,
            ..HpaConfig::default()
        }
    }
}

/// The HPA state before this sync and the sync's time (reactive only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaSync {
    pub state: HpaState,
    /// Seconds on the scaler's clock (any origin, increasing).
    pub now_seconds: f64,
}

/// Everything one decision depends on; recorded in the receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionInputs {
    pub settings: PolicySettings,
    /// Observed demand, oldest first, one sample per `step_seconds`; the last is the current one.
    #[serde(default)]
    pub demand: Vec<f64>,
    /// The agent's `spec.replicas`.
    pub current_replicas: u32,
    /// Ready pods of the agent.
    pub ready_replicas: u32,
    /// Seconds since the scaler last changed the replica count (None: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_last_change_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa: Option<HpaSync>,
    /// Further targets of the strategy; replicas are sized for the most demanding one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_targets: Vec<TargetDemand>,
}

/// The demand of one more scaling target and what one replica carries of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetDemand {
    pub target_per_replica: f64,
    /// Oldest first, same spacing as `DecisionInputs::demand`; aligned at the newest sample.
    pub demand: Vec<f64>,
}

impl DecisionInputs {
    /// With several targets, the single-target problem they reduce to: demand in replicas,
    /// `r(t) = max_i demand_i(t) / target_i` over the samples all series have (aligned at the
    /// newest), and a target of 1 replica. With one target, the inputs themselves.
    pub fn combined(&self) -> Result<DecisionInputs, PolicyError> {
        if self.other_targets.is_empty() {
            return Ok(self.clone());
        }
        let mut series: Vec<(f64, &[f64])> = vec![(self.settings.target_per_replica, &self.demand)];
        for (k, t) in self.other_targets.iter().enumerate() {
            if !(t.target_per_replica.is_finite() && t.target_per_replica > 0.0) {
                return Err(PolicyError::BadOtherTarget {
                    target: k,
                    value: t.target_per_replica,
                });
            }
            series.push((t.target_per_replica, &t.demand));
        }
        for (k, (_, d)) in series.iter().enumerate().skip(1) {
            if let Some((index, &value)) = d.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
                return Err(PolicyError::BadOtherDemand {
                    target: k - 1,
                    index,
                    value,
                });
            }
        }
        let n = series.iter().map(|(_, d)| d.len()).min().unwrap_or(0);
        let combined = (0..n)
            .map(|j| {
                series
                    .iter()
                    .map(|(target, d)| d[d.len() - n + j] / target)
                    .fold(0.0, f64::max)
            })
            .collect();
        let mut out = self.clone();
        out.other_targets.clear();
        out.demand = combined;
        out.settings.target_per_replica = 1.0;
        Ok(out)
    }
}

impl DecisionInputs {
    /// `combined()?.settings.hpa_config()`, without copying the inputs when there is one target.
    fn combined_hpa_config(&self) -> Result<HpaConfig, PolicyError> {
        if self.other_targets.is_empty() {
            return Ok(self.settings.hpa_config());
        }
        Ok(self.combined()?.settings.hpa_config())
    }
}

/// Why `desired` is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// `spec.replicas` was outside `[min, max]` and is brought back into range.
    Bounds,
    /// Manual scaling: the user's count stands.
    Manual,
    /// The cooldown of the last change is still running.
    Cooldown,
    /// The MPC plan's first stage.
    Mpc,
    /// The HPA algorithm.
    Hpa,
    /// Guarded predictive with the HPA floor: pre-scaled above the HPA's decision on the forecast.
    Prescale,
    /// The learned policy's headroom rule.
    Learned,
}

/// The outcome of [`decide`]; recorded in the receipt as the decision's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub desired: u32,
    pub basis: Basis,
    /// Predictive: the forecast for the next `L + H` steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forecast: Vec<f64>,
    /// Predictive: the model that produced it (`persistence` while history is too short).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecaster: Option<String>,
    /// Predictive: the MPC problem solved and its plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpc: Option<MpcProblem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<u32>,
    /// Reactive: the HPA's raw recommendation and its desired count (guarded predictive: the
    /// HPA algorithm's decision on `demand_now + margin`, the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa: Option<HpaDecision>,
    /// Guarded predictive: the conformal margin added to the current demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Guarded predictive: the forecast's skill against persistence (None: not measurable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<f64>,
    /// Learned: the headroom the network chose, and the model's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedChoice>,
}

/// What the learned policy chose at one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedChoice {
    /// Index into [`learned::HEADROOMS`].
    pub action: usize,
    pub headroom: f64,
    /// [`LearnedModel::digest`] of the model that chose.
    pub model: String,
}

impl Decision {
    fn simple(desired: u32, basis: Basis) -> Self {
        Self {
            desired,
            basis,
            forecast: Vec::new(),
            forecaster: None,
            mpc: None,
            plan: Vec::new(),
            hpa: None,
            margin: None,
            skill: None,
            learned: None,
        }
    }
}

fn check_demand(demand: &[f64], method: Method) -> Result<f64, PolicyError> {
    if let Some((index, &value)) = demand.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return Err(PolicyError::BadDemand { index, value });
    }
    demand.last().copied().ok_or(PolicyError::EmptyDemand {
        method: method.as_str(),
    })
}

/// Steps covering `seconds` (at least `min`).
fn steps(seconds: f64, step: f64, min: usize) -> usize {
    let n = (seconds / step - 1e-9).ceil();
    if n.is_finite() && n > 0.0 {
        (n as usize).max(min)
    } else {
        min
    }
}

/// One scaling decision (see the module doc). For `reactive` the second value is the HPA state
/// after this sync, to pass in at the next one.
pub fn decide(inputs: &DecisionInputs) -> Result<(Decision, Option<HpaState>), PolicyError> {
    if !inputs.other_targets.is_empty() {
        return decide(&inputs.combined()?);
    }
    let s = &inputs.settings;
    s.validate()?;
    let current = inputs.current_replicas;
    let clamped = current.clamp(s.min_replicas, s.max_replicas);
    if s.method == Method::Manual {
        let basis = if clamped == current {
            Basis::Manual
        } else {
            Basis::Bounds
        };
        return Ok((Decision::simple(clamped, basis), None));
    }
    let demand_now = check_demand(&inputs.demand, s.method)?;
    if clamped != current {
        return Ok((Decision::simple(clamped, Basis::Bounds), None));
    }
    let cooling = inputs
        .since_last_change_seconds
        .filter(|since| *since < s.cooldown_seconds)
        .map(|since| s.cooldown_seconds - since.max(0.0));
    match s.method {
        Method::Predictive => match s.guard {
            Some(guard) => guarded(inputs, &guard, demand_now, cooling),
            None => predictive(inputs, demand_now, cooling).map(|d| (d, None)),
        },
        Method::Reactive => {
            let sync = inputs.hpa.as_ref().ok_or(PolicyError::MissingHpaState)?;
            if sync.state.config != s.hpa_config() {
                return Err(PolicyError::HpaConfigMismatch);
            }
            let mut state = sync.state.clone();
            let ready = inputs.ready_replicas.min(current);
            let utilisation = if ready == 0 { 0.0 } else { demand_now / f64::from(ready) };
            let hpa = state.step(sync.now_seconds, current, ready, utilisation)?;
            let (desired, basis) = if cooling.is_some() {
                (current, Basis::Cooldown)
            } else {
                (hpa.desired, Basis::Hpa)
            };
            let mut decision = Decision::simple(desired, basis);
            decision.hpa = Some(hpa);
            Ok((decision, Some(state)))
        }
        Method::Manual => Ok((Decision::simple(clamped, Basis::Manual), None)),
        Method::Learned => {
            let model = s.learned.as_ref().ok_or(PolicyError::MissingModel)?;
            let window = learned_window(inputs);
            let action = model.greedy(&learned::features(&window));
            Ok((learned_decision(&window, s, cooling, action, model.digest()), None))
        }
    }
}

/// What the learned policy reads of single-target inputs (demand already checked, not empty).
pub fn learned_window(inputs: &DecisionInputs) -> learned::Window<'_> {
    learned::Window {
        demand: &inputs.demand,
        per_replica: inputs.settings.target_per_replica,
        current: inputs.current_replicas,
        ready: inputs.ready_replicas.min(inputs.current_replicas),
        step_seconds: inputs.settings.step_seconds,
    }
}

/// The learned method's decision for `action` (the trainer samples it, [`decide`] takes the
/// arg-max): the headroom rule, within bounds, held while the cooldown runs.
pub fn learned_decision(
    window: &learned::Window<'_>,
    s: &PolicySettings,
    cooling: Option<f64>,
    action: usize,
    model: String,
) -> Decision {
    let current = window.current;
    let ruled = learned::rule(window, action).clamp(s.min_replicas, s.max_replicas);
    let (desired, basis) = if cooling.is_some() && ruled != current {
        (current, Basis::Cooldown)
    } else {
        (ruled, Basis::Learned)
    };
    let mut d = Decision::simple(desired, basis);
    d.learned = Some(LearnedChoice {
        action,
        headroom: learned::HEADROOMS[action.min(learned::ACTIONS - 1)],
        model,
    });
    d
}

fn predictive(inputs: &DecisionInputs, demand_now: f64, cooling: Option<f64>) -> Result<Decision, PolicyError> {
    predictive_with(inputs, demand_now, cooling, f64::NAN)
}

/// The forecast + MPC decision; `margin` NaN: the fixed `headroom` on every stage (unguarded);
/// otherwise stage 0 covers `max(y_now + margin, ŷ(1..=L))` and stage j `ŷ(L + j) + margin`.
fn predictive_with(
    inputs: &DecisionInputs,
    demand_now: f64,
    cooling: Option<f64>,
    margin: f64,
) -> Result<Decision, PolicyError> {
    let s = &inputs.settings;
    let lead = steps(s.lead_seconds, s.step_seconds, 0);
    let horizon = steps(s.horizon_seconds, s.step_seconds, 1);
    let total = lead + horizon;
    let (forecast, forecaster) = match forecast::fit_and_forecast(s.model, &inputs.demand, total) {
        Ok(f) if f.len() == total && f.iter().all(|v| v.is_finite()) => {
            (f.into_iter().map(|v| v.max(0.0)).collect::<Vec<_>>(), s.model.name())
        }
        // Too little history for the model (or a degenerate fit): the last value persists.
        _ => (vec![demand_now; total], "persistence"),
    };
    let cap = s.target_per_replica;
    let guarded = !margin.is_nan();
    let whole = |d: f64| {
        let d = if guarded { d + margin } else { d * (1.0 + s.headroom) };
        (d / cap - 1e-9).ceil().max(0.0) * cap
    };
    let mut stage0 = demand_now;
    for &v in &forecast[..lead] {
        stage0 = stage0.max(if guarded { v - margin } else { v });
    }
    let mut demand = Vec::with_capacity(horizon);
    demand.push(whole(stage0));
    for &v in &forecast[lead + 1..] {
        demand.push(whole(v));
    }
    let cooldown_remaining = match cooling {
        Some(left) => steps(left, s.step_seconds, 1).min(horizon) as u32,
        None => 0,
    };
    let range = s.max_replicas - s.min_replicas;
    let problem = MpcProblem {
        demand,
        capacity_per_replica: cap,
        price_per_replica: 1.0,
        shortfall_penalty: s.slo_target / (1.0 - s.slo_target) / cap,
        change_penalty: s.change_penalty,
        current_replicas: inputs.current_replicas,
        min_replicas: s.min_replicas,
        max_replicas: s.max_replicas,
        max_step_up: range.max(1),
        max_step_down: range.max(1),
        cooldown_remaining,
    };
    let plan = mpc::plan(&problem)?;
    Ok(Decision {
        desired: plan.first(),
        basis: if cooldown_remaining > 0 {
            Basis::Cooldown
        } else {
            Basis::Mpc
        },
        forecast,
        forecaster: Some(forecaster.to_string()),
        mpc: Some(problem),
        plan: plan.replicas,
        hpa: None,
        margin: None,
        skill: None,
        learned: None,
    })
}

/// The conformal margin at level `q` for a lead of `lead` steps: with scores
/// `s_t = max(y[t+1..=t+lead]) − y[t]` over every origin of `history` that has `lead` samples
/// after it (n scores), the ⌈(n+1)q⌉-th smallest (the largest when that rank exceeds n), at least
/// 0; 0 without scores. Under exchangeable scores, `y_next ≤ y_now + margin` holds with
/// probability ≥ q.
pub fn conformal_margin(history: &[f64], lead: usize, q: f64) -> f64 {
    let lead = lead.max(1);
    if history.len() <= lead {
        return 0.0;
    }
    let mut scores: Vec<f64> = (0..history.len() - lead)
        .map(|t| history[t + 1..=t + lead].iter().copied().fold(f64::MIN, f64::max) - history[t])
        .collect();
    scores.sort_by(f64::total_cmp);
    let n = scores.len();
    let rank = (((n + 1) as f64) * q).ceil() as usize;
    scores[rank.clamp(1, n) - 1].max(0.0)
}

/// As [`conformal_margin`], but scored only at the origins whose next `lead` samples hold a
/// change (some `y[t+j] ≠ y[t]`). Samples of a series that moves in steps (a metric scraped
/// every 15 s from 5-minute bins) mostly see no change within the lead, so the plain margin's
/// quantile is 0 at most levels; at the origins where a step does come, it covers far less
/// than q. Conditioning on a change sizes the margin by the steps themselves; on a series that
/// changes every sample it is [`conformal_margin`].
pub fn conformal_margin_on_changes(history: &[f64], lead: usize, q: f64) -> f64 {
    let lead = lead.max(1);
    if history.len() <= lead {
        return 0.0;
    }
    let mut scores: Vec<f64> = (0..history.len() - lead)
        .filter(|&t| history[t + 1..=t + lead].iter().any(|&v| v != history[t]))
        .map(|t| history[t + 1..=t + lead].iter().copied().fold(f64::MIN, f64::max) - history[t])
        .collect();
    if scores.is_empty() {
        return 0.0;
    }
    scores.sort_by(f64::total_cmp);
    let n = scores.len();
    let rank = (((n + 1) as f64) * q).ceil() as usize;
    scores[rank.clamp(1, n) - 1].max(0.0)
}

/// Skill of `model` against persistence on the last `h` samples of `history`, the model fitted
/// on the samples before them: `1 − MAE_model / MAE_persistence`. `None` when the history is too
/// short for the fit or the fit degenerates; `-1` when persistence is exact and the model is not.
pub fn forecast_skill(model: ModelKind, history: &[f64], h: usize) -> Option<f64> {
    if h == 0 || history.len() <= h + 1 {
        return None;
    }
    let (train, test) = history.split_at(history.len() - h);
    let f = forecast::fit_and_forecast(model, train, h).ok()?;
    if f.len() != h || !f.iter().all(|v| v.is_finite()) {
        return None;
    }
    let last = *train.last()?;
    let mae_model = test.iter().zip(&f).map(|(y, p)| (y - p.max(0.0)).abs()).sum::<f64>() / h as f64;
    let mae_persist = test.iter().map(|y| (y - last).abs()).sum::<f64>() / h as f64;
    if mae_persist > 0.0 {
        Some(1.0 - mae_model / mae_persist)
    } else if mae_model > 0.0 {
        Some(-1.0)
    } else {
        Some(0.0)
    }
}

/// The guarded predictive decision (see [`decide`]).
fn guarded(
    inputs: &DecisionInputs,
    guard: &Guard,
    demand_now: f64,
    cooling: Option<f64>,
) -> Result<(Decision, Option<HpaState>), PolicyError> {
    let s = &inputs.settings;
    let lead = steps(s.lead_seconds, s.step_seconds, 1);
    let horizon = steps(s.horizon_seconds, s.step_seconds, 1);
    let margin = if guard.hpa_floor {
        conformal_margin_on_changes(&inputs.demand, lead, guard.conformal_level)
    } else {
        conformal_margin(&inputs.demand, lead, guard.conformal_level)
    };
    // The fallback: the HPA algorithm (its state recorded in the inputs; a new one when absent)
    // on the demand plus the margin per ready replica.
    let cfg = s.hpa_config();
    let mut state = match &inputs.hpa {
        Some(sync) if sync.state.config == cfg => sync.state.clone(),
        Some(_) => return Err(PolicyError::HpaConfigMismatch),
        None => HpaState::new(cfg)?,
    };
    let now = inputs.hpa.as_ref().map_or(0.0, |sync| sync.now_seconds);
    let current = inputs.current_replicas;
    let ready = inputs.ready_replicas.min(current);
    // With the HPA floor the HPA sees the demand alone (the plain HPA's metric); otherwise the
    // demand plus the margin.
    let metric = if guard.hpa_floor {
        demand_now
    } else {
        demand_now + margin
    };
    let utilisation = if ready == 0 { 0.0 } else { metric / f64::from(ready) };
    let hpa = state.step(now, current, ready, utilisation)?;
    let skill = forecast_skill(s.model, &inputs.demand, lead + horizon);
    if guard.hpa_floor {
        let mut decision = hpa_floor(inputs, guard, demand_now, margin, lead, skill, &hpa, cooling);
        decision.hpa = Some(hpa);
        decision.margin = Some(margin);
        decision.skill = skill;
        return Ok((decision, Some(state)));
    }
    let mut decision = if skill.is_some_and(|k| k > guard.skill_threshold) {
        // The forecast has skill: the MPC on it, stage 0 covering y_now + margin.
        let mut d = predictive_with(inputs, demand_now, cooling, margin)?;
        // Scale-down no faster than the HPA's stabilised recommendation.
        if d.desired < current && cooling.is_none() {
            d.desired = d.desired.max(hpa.desired.min(current));
        }
        d
    } else {
        let (desired, basis) = if cooling.is_some() {
            (current, Basis::Cooldown)
        } else {
            (hpa.desired, Basis::Hpa)
        };
        Decision::simple(desired, basis)
    };
    decision.hpa = Some(hpa);
    decision.margin = Some(margin);
    decision.skill = skill;
    Ok((decision, Some(state)))
}

/// The HPA-floor decision (see [`Guard::hpa_floor`]): `floor` = the HPA's decision; when the
/// forecast's skill exceeds the threshold, `pre = ⌈max(y_now + margin, ŷ(1..=L)) / target⌉`
/// and `desired = max(floor, pre)` (within the bounds); otherwise `desired = floor`. A running
/// cooldown holds scale-downs only: the count is never held below the HPA's decision.
#[allow(clippy::too_many_arguments)]
fn hpa_floor(
    inputs: &DecisionInputs,
    guard: &Guard,
    demand_now: f64,
    margin: f64,
    lead: usize,
    skill: Option<f64>,
    hpa: &HpaDecision,
    cooling: Option<f64>,
) -> Decision {
    let s = &inputs.settings;
    let current = inputs.current_replicas;
    let floor = hpa.desired;
    let mut desired = floor;
    let mut basis = Basis::Hpa;
    let mut forecast = Vec::new();
    let mut forecaster = None;
    if skill.is_some_and(|k| k > guard.skill_threshold) {
        let (f, name) = match forecast::fit_and_forecast(s.model, &inputs.demand, lead) {
            Ok(f) if f.len() == lead && f.iter().all(|v| v.is_finite()) => {
                (f.into_iter().map(|v| v.max(0.0)).collect::<Vec<_>>(), s.model.name())
            }
            _ => (vec![demand_now; lead], "persistence"),
        };
        let need = f.iter().copied().fold(demand_now + margin, f64::max);
        let pre = (need / s.target_per_replica - 1e-9).ceil().max(0.0);
        let pre = pre.min(f64::from(s.max_replicas)) as u32;
        if pre > floor {
            desired = pre;
            basis = Basis::Prescale;
        }
        forecast = f;
        forecaster = Some(name.to_string());
    }
    if cooling.is_some() && desired < current {
        desired = current;
        basis = Basis::Cooldown;
    }
    let mut d = Decision::simple(desired.clamp(s.min_replicas, s.max_replicas), basis);
    d.forecast = forecast;
    d.forecaster = forecaster;
    d
}

/// The receipt decision of one scaling change, recorded before the replicas change:
/// `{kind: method.kind(), from: currentReplicas, to: desired, output: decision, inputs}` with the
/// inputs inline, so `mom verify --replay` re-runs [`decide`] on `record["inputs"]` (which is
/// also what the receipt's `inputsDigest` hashes).
pub fn decision_record(inputs: &DecisionInputs, decision: &Decision) -> Value {
    // `to_value` fails on nothing these types hold; `null` keeps the record writable if it did.
    let inputs_json = serde_json::to_value(inputs).unwrap_or_default();
    serde_json::json!({
        "kind": inputs.settings.method.kind(),
        "from": inputs.current_replicas,
        "to": decision.desired,
        "output": serde_json::to_value(decision).unwrap_or_default(),
        "inputs": inputs_json,
    })
}

/// What the scaler observed of one agent at one tick: the strategy's settings, each target's
/// demand window (oldest first, the last observed now) with what one replica carries of it,
/// the replicas, the time since the scaler's last change and the time now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub settings: PolicySettings,
    pub demands: Vec<(Vec<f64>, f64)>,
    pub current_replicas: u32,
    pub ready_replicas: u32,
    pub since_last_change_seconds: Option<f64>,
    pub now_seconds: f64,
}

/// The scaler's decision path for one agent (the operator's scaler and the simulator both run
/// it): the [`DecisionInputs`] the receipt records
/// (for `reactive`, with the HPA state kept from the previous tick, `hpa`, or a new one when
/// absent or configured differently), the [`Decision`] of [`scaling_policy::decide`] and the
/// HPA state to keep for the next tick.
pub fn decide_observed(
    observed: Observed,
    hpa: Option<&HpaState>,
) -> Result<(DecisionInputs, Decision, Option<HpaState>), PolicyError> {
    let Observed {
        mut settings,
        demands,
        current_replicas,
        ready_replicas,
        since_last_change_seconds,
        now_seconds,
    } = observed;
    let mut demands = demands.into_iter();
    let (first_demand, first_per_replica) = demands.next().unwrap_or((Vec::new(), settings.target_per_replica));
    settings.target_per_replica = first_per_replica;
    let method = settings.method;
    let mut inputs = DecisionInputs {
        settings,
        demand: first_demand,
        current_replicas,
        ready_replicas,
        since_last_change_seconds,
        hpa: None,
        other_targets: demands
            .map(|(demand, per_replica)| TargetDemand {
                target_per_replica: per_replica,
                demand,
            })
            .collect(),
    };
    let guarded = method == Method::Predictive && inputs.settings.guard.is_some();
    if method == Method::Reactive || guarded {
        // The HPA runs on the combined problem when there are several targets (the guarded
        // predictive method keeps it as its fallback).
        let cfg = inputs.combined_hpa_config()?;
        let state = match hpa {
            Some(s) if s.config == cfg => s.clone(),
            _ => HpaState::new(cfg)?,
        };
        inputs.hpa = Some(HpaSync { state, now_seconds });
    }
    let (decision, new_state) = decide(&inputs)?;
    Ok((inputs, decision, new_state))
}

/// The replayer of the `scaling.*` decision kinds: recorded inputs → the decision output.
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    let parsed: DecisionInputs = serde_json::from_value(inputs.clone()).map_err(|e| ReplayError::BadInputs {
        field: "scaling".into(),
        message: e.to_string(),
    })?;
    let (decision, _) = decide(&parsed).map_err(|e| ReplayError::BadInputs {
        field: "scaling".into(),
        message: e.to_string(),
    })?;
    serde_json::to_value(&decision).map_err(|e| ReplayError::BadInputs {
        field: "scaling".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::replay::{InlineOnly, MismatchKind, ReplayRegistry};
    use crate::receipts::testutil::signer;
    use crate::receipts::{Action, ReceiptDraft, SubjectRef};

    /// The `scaling.*` kinds alone (the full registry, `decisions::registry`, sits above this
    /// module and is tested there).
    fn registry() -> ReplayRegistry {
        let mut r = ReplayRegistry::new();
        for kind in KINDS {
            r.register(kind, Box::new(replay));
        }
        r
    }

    fn settings(method: Method) -> PolicySettings {
        PolicySettings {
            step_seconds: 1.0,
            horizon_seconds: 20.0,
            lead_seconds: 3.0,
            cooldown_seconds: 0.0,
            // The unguarded policy: the tests below pin its MPC arithmetic; the guarded one
            // has its own tests (`guarded_*`).
            guard: None,
            ..PolicySettings::new(method, 1, 10, 20.0)
        }
    }

    fn guarded_inputs(demand: Vec<f64>, current: u32) -> DecisionInputs {
        let mut i = inputs(Method::Predictive, demand, current);
        i.settings.guard = Some(Guard::default());
        i.hpa = Some(HpaSync {
            state: HpaState::new(i.settings.hpa_config()).unwrap(),
            now_seconds: 100.0,
        });
        i
    }

    /// Deterministic uniform numbers in [0, 1) (a 64-bit LCG).
    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn the_conformal_margin_covers_the_next_lead_at_its_level_on_exchangeable_data() {
        // i.i.d. demand: over many independent histories, the next lead's maximum stays within
        // y_now + margin about q of the time (conformal: at least q, a little above).
        for (q, lead) in [(0.8, 1usize), (0.9, 3), (0.95, 1)] {
            let trials = 2000;
            let mut covered = 0;
            for seed in 0..trials {
                let mut u = lcg(seed);
                let y: Vec<f64> = (0..200 + lead).map(|_| 50.0 + 20.0 * u()).collect();
                let (hist, future) = y.split_at(200);
                let m = conformal_margin(hist, lead, q);
                let next = future.iter().copied().fold(f64::MIN, f64::max);
                covered += usize::from(next <= hist[199] + m);
            }
            let rate = covered as f64 / trials as f64;
            assert!(
                rate >= q - 0.03 && rate <= q + 0.04,
                "q={q} lead={lead}: coverage {rate}"
            );
        }
        assert_eq!(conformal_margin(&[5.0], 1, 0.9), 0.0);
        assert_eq!(conformal_margin(&[5.0; 30], 2, 0.9), 0.0);
    }

    #[test]
    fn the_margin_scored_on_changes_covers_the_steps_of_a_series_held_in_bins() {
        // i.i.d. levels held for 20 samples each (a 5-minute bin scraped every 15 s): at the
        // origins whose next lead crosses a step, the plain margin covers the step far less
        // often than q; the margin scored on changes covers it about q of the time.
        let (q, lead) = (0.9, 5usize);
        let (mut plain, mut on_changes, mut n) = (0, 0, 0);
        for seed in 0..400 {
            let mut u = lcg(seed);
            let levels: Vec<f64> = (0..14).map(|_| 50.0 + 20.0 * u()).collect();
            let y: Vec<f64> = (0..280).map(|i| levels[i / 20]).collect();
            // Origins 255..259: the next lead crosses the step at 260.
            for t in 260 - lead..260 {
                let hist = &y[t + 1 - 240..=t];
                let next = y[t + 1..=t + lead].iter().copied().fold(f64::MIN, f64::max);
                plain += usize::from(next <= y[t] + conformal_margin(hist, lead, q));
                on_changes += usize::from(next <= y[t] + conformal_margin_on_changes(hist, lead, q));
                n += 1;
            }
        }
        let (plain, on_changes) = (plain as f64 / n as f64, on_changes as f64 / n as f64);
        assert!(plain < 0.75, "plain margin covered {plain}");
        assert!(on_changes >= q - 0.06, "margin on changes covered {on_changes}");
        // A series that changes every sample: the same margin.
        let mut u = lcg(1);
        let y: Vec<f64> = (0..200).map(|_| u()).collect();
        assert_eq!(conformal_margin_on_changes(&y, 3, q), conformal_margin(&y, 3, q));
        assert_eq!(conformal_margin_on_changes(&[4.0; 30], 3, q), 0.0);
    }

    #[test]
    fn guarded_falls_back_to_the_hpa_decision_when_the_forecast_is_worse_than_persistence() {
        // A ramp that stops: the holdout is flat, so persistence is exact and a trend model
        // that extrapolates the ramp is worse.
        let mut demand: Vec<f64> = (0..40).map(|i| 10.0 + 2.0 * f64::from(i)).collect();
        demand.extend(vec![88.0; 30]);
        let i = guarded_inputs(demand.clone(), 3);
        let (d, state) = decide(&i).unwrap();
        assert!(d.skill.unwrap() <= 0.0, "{:?}", d.skill);
        assert_eq!(d.basis, Basis::Hpa);
        // Exactly the HPA algorithm on (demand + margin) per ready replica, same state.
        let mut hpa = i.hpa.clone().unwrap().state;
        let margin = d.margin.unwrap();
        let direct = hpa.step(100.0, 3, 3, (88.0 + margin) / 3.0).unwrap();
        assert_eq!(d.desired, direct.desired);
        assert_eq!(d.hpa, Some(direct));
        assert_eq!(state, Some(hpa));
        // A ramp that goes on: the trend forecast beats persistence and the MPC decides.
        let ramp: Vec<f64> = (0..70).map(|i| 10.0 + 2.0 * f64::from(i)).collect();
        let d = decide(&guarded_inputs(ramp, 3)).unwrap().0;
        assert!(d.skill.unwrap() > 0.0, "{:?}", d.skill);
        assert_eq!(d.basis, Basis::Mpc);
        // Too little history to measure skill: the HPA decides.
        let d = decide(&guarded_inputs(vec![50.0], 1)).unwrap().0;
        assert_eq!((d.skill, d.basis), (None, Basis::Hpa));
    }

    #[test]
    fn a_lower_conformal_level_buys_fewer_replicas_on_a_bursty_series() {
        // Flat at 20 with a burst to 120 one sample in ten: the margin at a high level buys the
        // burst; at a lower level (a cheaper replica against the shortfall) it does not.
        let demand: Vec<f64> = (0..120).map(|i| if i % 10 == 5 { 120.0 } else { 20.0 }).collect();
        let mut now = demand.clone();
        now.push(20.0);
        let high = conformal_margin(&now, 3, 0.95);
        let low = conformal_margin(&now, 3, 0.5);
        assert!(low < high, "{low} vs {high}");
        let mut i = guarded_inputs(now.clone(), 1);
        i.settings.guard = Some(Guard {
            conformal_level: 0.95,
            skill_threshold: 0.0,
            ..Guard::default()
        });
        let expensive = decide(&i).unwrap().0.desired;
        i.settings.guard = Some(Guard {
            conformal_level: 0.5,
            skill_threshold: 0.0,
            ..Guard::default()
        });
        let cheap = decide(&i).unwrap().0.desired;
        assert!(cheap < expensive, "{cheap} vs {expensive}");
    }

    #[test]
    fn bad_guard_settings_are_rejected_naming_the_field() {
        let mut i = guarded_inputs(vec![1.0], 1);
        i.settings.guard = Some(Guard {
            conformal_level: 1.0,
            skill_threshold: 0.0,
            ..Guard::default()
        });
        assert!(decide(&i).unwrap_err().to_string().contains("guard.conformal_level"));
        i.settings.guard = Some(Guard {
            conformal_level: 0.9,
            skill_threshold: 1.0,
            ..Guard::default()
        });
        assert!(decide(&i).unwrap_err().to_string().contains("guard.skill_threshold"));
        i.settings.guard = Some(Guard {
            hpa_utilisation: 1.2,
            ..Guard::default()
        });
        assert!(decide(&i).unwrap_err().to_string().contains("guard.hpa_utilisation"));
    }

    #[test]
    fn guarded_decisions_replay_from_their_recorded_inputs_including_the_hpa_state() {
        // Three syncs along a ramp, the HPA state carried from one to the next as the scaler
        // keeps it; every recorded decision replays to the same output.
        let mut hpa: Option<HpaState> = None;
        let mut rs = Vec::new();
        let mut current = 1;
        for t in [45usize, 60, 75] {
            let mut s = settings(Method::Predictive);
            s.guard = Some(Guard {
                hpa_floor: t == 60,
                hpa_utilisation: if t == 60 { 0.8 } else { 1.0 },
                ..Guard::default()
            });
            let observed = Observed {
                settings: s,
                demands: vec![(ramp_until(t), 20.0)],
                current_replicas: current,
                ready_replicas: current,
                since_last_change_seconds: None,
                now_seconds: t as f64,
            };
            let (i, d, state) = decide_observed(observed, hpa.as_ref()).unwrap();
            assert!(i.hpa.is_some());
            hpa = state;
            current = d.desired;
            rs.push(receipt_for(&i));
        }
        assert!(current > 1);
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!((rep.replayed, rep.matched), (3, 3), "{rep:?}");
    }

    /// A model with seeded random weights (not trained: the tests pin the decision path).
    fn some_model(seed: u64) -> LearnedModel {
        let mut next = lcg(seed);
        let weights = (0..learned::PARAMS).map(|_| 2.0 * next() - 1.0).collect();
        LearnedModel::new(weights, learned::Provenance::default())
    }

    fn learned_inputs(demand: Vec<f64>, current: u32, seed: u64) -> DecisionInputs {
        let mut i = inputs(Method::Learned, demand, current);
        i.settings.learned = Some(some_model(seed));
        i
    }

    #[test]
    fn a_learned_decision_is_the_rule_at_the_networks_arg_max_headroom() {
        let i = learned_inputs(ramp_until(60), 2, 7);
        let (d, state) = decide(&i).unwrap();
        assert!(state.is_none());
        let model = i.settings.learned.as_ref().unwrap();
        let window = learned_window(&i);
        let action = model.greedy(&learned::features(&window));
        assert_eq!(d.basis, Basis::Learned);
        assert_eq!(d.desired, learned::rule(&window, action).clamp(1, 10));
        let choice = d.learned.as_ref().unwrap();
        assert_eq!((choice.action, choice.headroom), (action, learned::HEADROOMS[action]));
        assert_eq!(choice.model, model.digest());
        // Demand 30 at 20 per replica with no headroom is 2 replicas; the ramp asks for more.
        assert!(d.desired >= 2);
    }

    #[test]
    fn the_learned_method_holds_during_the_cooldown_and_refuses_a_missing_or_broken_model() {
        let mut i = learned_inputs(vec![100.0; 10], 1, 3);
        i.settings.cooldown_seconds = 60.0;
        i.since_last_change_seconds = Some(10.0);
        let d = decide(&i).unwrap().0;
        assert_eq!((d.desired, d.basis), (1, Basis::Cooldown));
        // Positive control: after the cooldown the same inputs scale up.
        i.since_last_change_seconds = Some(61.0);
        let d = decide(&i).unwrap().0;
        assert!(d.desired >= 5 && d.basis == Basis::Learned, "{d:?}");
        let mut none = i.clone();
        none.settings.learned = None;
        assert_eq!(decide(&none).unwrap_err(), PolicyError::MissingModel);
        let mut broken = i.clone();
        broken.settings.learned.as_mut().unwrap().weights[3] = f64::INFINITY;
        let e = decide(&broken).unwrap_err().to_string();
        assert!(e.contains("weights[3]"), "{e}");
    }

    #[test]
    fn learned_decisions_replay_from_their_recorded_inputs_with_the_model_inline() {
        let rs: Vec<_> = [(ramp_until(47), 1, 1), (vec![5.0; 30], 4, 2), (ramp_until(80), 3, 3)]
            .into_iter()
            .map(|(demand, current, seed)| receipt_for(&learned_inputs(demand, current, seed)))
            .collect();
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!((rep.replayed, rep.matched), (3, 3), "{rep:?}");
        // Positive controls: weights edited after the fact no longer hash to the recorded
        // digest; a recorded choice the model did not make does not replay.
        let mut r = receipt_for(&learned_inputs(ramp_until(47), 1, 1));
        r.decision["inputs"]["settings"]["learned"]["weights"][0] = serde_json::json!(0.125);
        let rep = registry().replay_all(&[r], &InlineOnly);
        assert_eq!(rep.mismatches.len(), 1);
        assert_eq!(rep.mismatches[0].what, MismatchKind::InputsDigest);
        let mut r = receipt_for(&learned_inputs(ramp_until(47), 1, 1));
        let action = r.decision["output"]["learned"]["action"].as_u64().unwrap();
        r.decision["output"]["learned"]["action"] = serde_json::json!((action + 1) % 7);
        let rep = registry().replay_all(&[r], &InlineOnly);
        assert_eq!(rep.mismatches.len(), 1);
        assert_eq!(rep.mismatches[0].what, MismatchKind::Output);
    }

    fn floor_guard() -> Guard {
        Guard {
            hpa_floor: true,
            hpa_utilisation: 0.8,
            ..Guard::default()
        }
    }

    #[test]
    fn the_hpa_floor_policy_is_never_below_the_plain_hpa_at_the_same_target() {
        // A noisy rising and falling series, tick by tick: the HPA-floor policy (its HPA state
        // carried as the scaler carries it) against a plain HPA at 80 % of the same target that
        // sees the same replica counts; the policy's count is never below the plain HPA's.
        let mut u = lcg(7);
        let series: Vec<f64> = (0..400)
            .map(|i| {
                let x = f64::from(i);
                (60.0 + 50.0 * (x / 6.0).sin() + 5.0 * u()).max(0.0)
            })
            .collect();
        let mut s = settings(Method::Predictive);
        s.guard = Some(floor_guard());
        s.max_replicas = 100;
        let mut plain = HpaState::new(HpaConfig {
            target_utilisation: 0.8 * 20.0,
            min_replicas: 1,
            max_replicas: 100,
            sync_period_seconds: 1.0,
            ..HpaConfig::default()
        })
        .unwrap();
        let mut hpa: Option<HpaState> = None;
        let mut current = 4;
        let (mut prescaled, mut below) = (0, 0);
        for t in 30..series.len() {
            let window = series[t.saturating_sub(120)..=t].to_vec();
            let observed = Observed {
                settings: s.clone(),
                demands: vec![(window, 20.0)],
                current_replicas: current,
                ready_replicas: current,
                since_last_change_seconds: None,
                now_seconds: t as f64,
            };
            let (_, d, state) = decide_observed(observed, hpa.as_ref()).unwrap();
            hpa = state;
            let baseline = plain
                .step(t as f64, current, current, series[t] / f64::from(current))
                .unwrap()
                .desired;
            below += usize::from(d.desired < baseline);
            prescaled += usize::from(d.basis == Basis::Prescale);
            current = d.desired;
        }
        // Positive control: the forecast did lift the count above the HPA's on some ticks.
        assert!(prescaled > 0, "never pre-scaled");
        assert_eq!(below, 0, "below the plain HPA on {below} ticks");
    }

    #[test]
    fn the_hpa_floor_prescales_on_a_rising_ramp_only_when_the_forecast_has_skill() {
        // A ramp that goes on: the trend forecast beats persistence and lifts the count above
        // the HPA's decision.
        // (A small target, so the HPA's scale-up rate limit holds its decision below the need.)
        let ramp: Vec<f64> = (0..70).map(|i| 10.0 + 2.0 * f64::from(i)).collect();
        let mut i = guarded_inputs(ramp, 7);
        i.settings.guard = Some(floor_guard());
        i.settings.max_replicas = 100;
        i.settings.target_per_replica = 2.0;
        i.hpa = Some(HpaSync {
            state: HpaState::new(i.settings.hpa_config()).unwrap(),
            now_seconds: 100.0,
        });
        let d = decide(&i).unwrap().0;
        assert!(d.skill.unwrap() > 0.0, "{:?}", d.skill);
        assert_eq!(d.basis, Basis::Prescale);
        assert!(d.desired > d.hpa.unwrap().desired, "{d:?}");
        // A ramp that stops: no skill, and the decision is exactly the HPA's, which runs at
        // 80 % of the target on the demand alone.
        let mut demand: Vec<f64> = (0..40).map(|i| 10.0 + 2.0 * f64::from(i)).collect();
        demand.extend(vec![88.0; 30]);
        i.demand = demand;
        let (d, _) = decide(&i).unwrap();
        assert!(d.skill.unwrap() <= 0.0, "{:?}", d.skill);
        assert_eq!(d.basis, Basis::Hpa);
        // ceil(7 · (88/7) / 1.6) = 55, rate-limited to max(7 + 4, 2 · 7) = 14.
        assert_eq!((d.desired, d.hpa.unwrap().recommendation), (14, 55));
    }

    #[test]
    fn guards_recorded_before_the_floor_existed_read_as_the_mpc_guard_at_the_full_target() {
        let g: Guard = serde_json::from_str(r#"{"conformalLevel":0.9,"skillThreshold":0}"#).unwrap();
        assert_eq!(g, Guard::default());
        // And the default guard is written without the new fields (old inputs stay byte-identical).
        let json = serde_json::to_string(&Guard::default()).unwrap();
        assert!(!json.contains("hpaFloor") && !json.contains("hpaUtilisation"), "{json}");
        let json = serde_json::to_string(&floor_guard()).unwrap();
        assert!(
            json.contains("\"hpaFloor\":true") && json.contains("\"hpaUtilisation\":0.8"),
            "{json}"
        );
    }

    fn inputs(method: Method, demand: Vec<f64>, current: u32) -> DecisionInputs {
        let settings = settings(method);
        let hpa = (method == Method::Reactive).then(|| HpaSync {
            state: HpaState::new(settings.hpa_config()).unwrap(),
            now_seconds: 100.0,
        });
        DecisionInputs {
            settings,
            demand,
            current_replicas: current,
            ready_replicas: current,
            since_last_change_seconds: None,
            hpa,
            other_targets: Vec::new(),
        }
    }

    /// 40 s flat at 10, then +1 per second: the ramp the end-to-end test replays.
    fn ramp_until(t: usize) -> Vec<f64> {
        (0..=t)
            .map(|i| if i < 40 { 10.0 } else { 10.0 + (i - 40) as f64 })
            .collect()
    }

    #[test]
    fn predictive_scales_up_on_a_rising_ramp_before_demand_exceeds_current_capacity() {
        // Tick by tick along the ramp: the first scale-up comes while one replica (capacity 20)
        // still serves the observed demand, because the forecast over the lead crosses 20.
        let first = (40..80)
            .map(|t| (t, decide(&inputs(Method::Predictive, ramp_until(t), 1)).unwrap().0))
            .find(|(_, d)| d.desired >= 2)
            .unwrap();
        let (t, d) = first;
        let observed = ramp_until(t)[t];
        assert!(observed < 20.0, "first scale-up at t={t} with demand {observed}: {d:?}");
        assert_eq!(d.basis, Basis::Mpc);
        assert!(d.forecast.iter().any(|&v| v > 20.0), "{:?}", d.forecast);
    }

    #[test]
    fn predictive_holds_on_flat_demand_within_capacity() {
        let d = decide(&inputs(Method::Predictive, vec![10.0; 60], 1)).unwrap().0;
        assert_eq!(d.desired, 1, "{d:?}");
    }

    #[test]
    fn predictive_uses_persistence_while_history_is_too_short() {
        let d = decide(&inputs(Method::Predictive, vec![50.0], 1)).unwrap().0;
        assert_eq!(d.forecaster.as_deref(), Some("persistence"));
        // 50 · 1.1 = 55 → 3 replicas of 20.
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn a_running_cooldown_freezes_the_replica_count() {
        let mut i = inputs(Method::Predictive, vec![100.0; 30], 1);
        i.settings.cooldown_seconds = 30.0;
        i.since_last_change_seconds = Some(10.0);
        let d = decide(&i).unwrap().0;
        assert_eq!((d.desired, d.basis), (1, Basis::Cooldown));
        i.since_last_change_seconds = Some(31.0);
        assert!(decide(&i).unwrap().0.desired > 1);
        let mut r = inputs(Method::Reactive, vec![100.0], 1);
        r.settings.cooldown_seconds = 30.0;
        r.since_last_change_seconds = Some(0.0);
        let d = decide(&r).unwrap().0;
        assert_eq!((d.desired, d.basis), (1, Basis::Cooldown));
    }

    #[test]
    fn reactive_follows_the_hpa_formula_on_demand_per_ready_replica() {
        // 2 ready replicas carry 90 → 45 each against a target of 20: ceil(2 · 45/20) = 5.
        let (d, state) = decide(&inputs(Method::Reactive, vec![10.0, 90.0], 2)).unwrap();
        assert_eq!(d.hpa.unwrap().recommendation, 5);
        assert_eq!((d.desired, d.basis), (5, Basis::Hpa));
        assert!(state.is_some());
    }

    #[test]
    fn manual_keeps_the_users_count_within_bounds() {
        assert_eq!(decide(&inputs(Method::Manual, vec![], 4)).unwrap().0.desired, 4);
        let d = decide(&inputs(Method::Manual, vec![], 40)).unwrap().0;
        assert_eq!((d.desired, d.basis), (10, Basis::Bounds));
        let d = decide(&inputs(Method::Predictive, vec![1.0], 0)).unwrap().0;
        assert_eq!((d.desired, d.basis), (1, Basis::Bounds));
    }

    #[test]
    fn bad_inputs_are_rejected_with_the_field_named() {
        let e = decide(&inputs(Method::Predictive, vec![], 1)).unwrap_err();
        assert!(e.to_string().contains("scaling.demand"), "{e}");
        let e = decide(&inputs(Method::Reactive, vec![1.0, f64::NAN], 1)).unwrap_err();
        assert!(e.to_string().contains("demand[1]"), "{e}");
        let mut i = inputs(Method::Predictive, vec![1.0], 1);
        i.settings.target_per_replica = 0.0;
        assert!(decide(&i).unwrap_err().to_string().contains("target_per_replica"));
        i.settings.target_per_replica = 1.0;
        i.settings.min_replicas = 11;
        assert!(decide(&i).unwrap_err().to_string().contains("min_replicas (11)"));
        let mut r = inputs(Method::Reactive, vec![1.0], 1);
        r.hpa = None;
        assert_eq!(decide(&r).unwrap_err(), PolicyError::MissingHpaState);
        let mut r = inputs(Method::Reactive, vec![1.0], 1);
        r.settings.max_replicas = 3;
        assert_eq!(decide(&r).unwrap_err(), PolicyError::HpaConfigMismatch);
    }

    #[test]
    fn with_several_targets_replicas_follow_the_most_demanding_one() {
        // Target 0: 30 of 20 per replica (1.5 replicas); target 1: 90 of 10 (9 replicas).
        let mut r = inputs(Method::Reactive, vec![30.0, 30.0], 2);
        r.other_targets = vec![TargetDemand {
            target_per_replica: 10.0,
            demand: vec![10.0, 90.0, 90.0],
        }];
        let c = r.combined().unwrap();
        assert_eq!(c.demand, vec![9.0, 9.0]);
        assert_eq!(c.settings.target_per_replica, 1.0);
        // The HPA state belongs to the combined problem.
        r.hpa = Some(HpaSync {
            state: HpaState::new(c.settings.hpa_config()).unwrap(),
            now_seconds: 1.0,
        });
        let d = decide(&r).unwrap().0;
        assert_eq!(d.hpa.unwrap().recommendation, 9);
        r.other_targets[0].demand[1] = -1.0;
        let e = decide(&r).unwrap_err();
        assert!(e.to_string().contains("other_targets[0].demand[1]"), "{e}");
        r.other_targets[0].target_per_replica = 0.0;
        assert!(
            decide(&r)
                .unwrap_err()
                .to_string()
                .contains("other_targets[0].target_per_replica")
        );
    }

    #[test]
    fn the_same_inputs_give_a_byte_identical_decision() {
        let i = inputs(Method::Predictive, ramp_until(70), 2);
        let a = serde_json::to_string(&decide(&i).unwrap().0).unwrap();
        let b = serde_json::to_string(&decide(&i.clone()).unwrap().0).unwrap();
        assert_eq!(a, b);
    }

    /// A receipt as the scaler writes it: inputs inline, output = the decision.
    fn receipt_for(i: &DecisionInputs) -> crate::receipts::Receipt {
        let (d, _) = decide(i).unwrap();
        let inputs = serde_json::to_value(i).unwrap();
        // What the apiserver gives back: the JSON re-parsed from text.
        let inputs: Value = serde_json::from_str(&inputs.to_string()).unwrap();
        let decision = serde_json::json!({
            "kind": i.settings.method.kind(),
            "output": serde_json::to_value(&d).unwrap(),
            "inputs": inputs.clone(),
        });
        let draft = ReceiptDraft {
            action: Action::Scale,
            subject: SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: "GeometricAgent".into(),
                namespace: "ns".into(),
                name: "a".into(),
                uid: None,
            },
            decision,
            inputs_digest: crate::receipts::inputs_digest(&inputs).unwrap(),
            time: "2026-01-01T00:00:00Z".into(),
            level: crate::receipts::Level::FullAudit,
        };
        crate::receipts::chain::ChainBuilder::genesis(signer(3))
            .seal(draft)
            .unwrap()
    }

    #[test]
    fn recorded_scaling_decisions_replay_to_the_same_output() {
        let rs = vec![
            receipt_for(&inputs(Method::Predictive, ramp_until(47), 1)),
            receipt_for(&inputs(Method::Reactive, vec![5.0, 90.0], 2)),
            receipt_for(&inputs(Method::Manual, vec![], 12)),
        ];
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!((rep.replayed, rep.matched), (3, 3), "{rep:?}");
        assert!(rep.mismatches.is_empty());
    }

    #[test]
    fn a_tampered_scaling_input_or_output_is_reported() {
        let mut r = receipt_for(&inputs(Method::Predictive, ramp_until(47), 1));
        // Demand edited after the fact: the inputs no longer hash to the recorded digest.
        r.decision["inputs"]["demand"][47] = serde_json::json!(1000.0);
        let rep = registry().replay_all(&[r], &InlineOnly);
        assert_eq!(rep.mismatches.len(), 1);
        assert_eq!(rep.mismatches[0].what, MismatchKind::InputsDigest);

        let mut r = receipt_for(&inputs(Method::Predictive, ramp_until(47), 1));
        r.decision["output"]["desired"] = serde_json::json!(9);
        let rep = registry().replay_all(&[r], &InlineOnly);
        assert_eq!(rep.mismatches.len(), 1);
        assert_eq!(rep.mismatches[0].what, MismatchKind::Output);
        assert!(
            rep.mismatches[0].detail.contains("\"desired\":9"),
            "{}",
            rep.mismatches[0].detail
        );
    }

    #[test]
    fn the_decision_record_is_byte_identical_to_the_scalers_hand_built_one() {
        for (method, demand, current) in [
            (Method::Predictive, ramp_until(47), 1),
            (Method::Reactive, vec![5.0, 90.0], 2),
            (Method::Manual, vec![], 12),
        ] {
            let i = inputs(method, demand, current);
            let (d, _) = decide(&i).unwrap();
            // What src/operator/scaler.rs `write_receipt` wrote before this function existed.
            let inputs_json = serde_json::to_value(&i).unwrap_or_default();
            let expected = serde_json::json!({
                "kind": i.settings.method.kind(),
                "from": i.current_replicas,
                "to": d.desired,
                "output": serde_json::to_value(&d).unwrap_or_default(),
                "inputs": inputs_json.clone(),
            });
            let record = decision_record(&i, &d);
            assert_eq!(
                serde_json::to_string(&record).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "{method:?}"
            );
            assert_eq!(record["inputs"], inputs_json);
            assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        }
    }

    #[test]
    fn replay_of_inputs_that_are_not_scaling_inputs_fails_with_a_message() {
        let e = replay(&serde_json::json!({"values": [1]})).unwrap_err();
        assert!(e.to_string().contains("scaling"), "{e}");
    }
}
