//! Trace-replay autoscaling simulator: replays a demand trace through a modelled cluster on a
//! virtual clock and scores a scaling policy.
//!
//! Model: demand is constant within each trace bin; the clock ticks every
//! `gcd(bin, 15 s, start-up)` seconds; policies decide every 15 s (the HPA sync period); new
//! replicas become ready `startup_seconds` after they are requested, removed replicas go at once
//! (starting ones first). The SLO holds at a tick when `demand ≤ capacity_per_replica × ready`.
//! Output ([`SimReport`]): SLO-violation minutes, replica-hours (every requested replica, ready
//! or starting, is paid for) and scaling actions (syncs that changed the replica count).
//!
//! Policies: the operator's own (`predictive` forecast + MPC, or `reactive`), run through
//! [`crate::scaling_policy::decide_observed`] exactly as the operator's scaler runs it
//! ([`operator_policy`]); `hpa` (the plain Kubernetes HPA of [`crate::hpa`] with metric =
//! demand / ready capacity and a utilisation target, the baseline a user would otherwise run);
//! `static` (a fixed count).

pub mod operator_policy;
pub mod plot;
pub mod report;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::forecast::ForecastError;
use crate::hpa::{HpaConfig, HpaError, HpaState};
use crate::mpc::MpcError;
use crate::scaling_policy::PolicyError;
pub use operator_policy::{OperatorPolicy, OperatorPolicyConfig};

/// Errors of the simulator; each names the offending field and value.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("simulator: trace is empty")]
    EmptyTrace,
    #[error("simulator: trace value [{index}] must be finite and ≥ 0, got {value}")]
    BadDemand { index: usize, value: f64 },
    #[error("simulator: {field} must be finite and > 0, got {value}")]
    BadParameter { field: &'static str, value: f64 },
    #[error("simulator: {field} must be a whole number of seconds, got {value}")]
    NotWholeSeconds { field: &'static str, value: f64 },
    #[error(transparent)]
    Hpa(#[from] HpaError),
    #[error(transparent)]
    Mpc(#[from] MpcError),
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The modelled cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterModel {
    /// Demand one ready replica serves (same unit as the trace).
    pub capacity_per_replica: f64,
    /// Seconds from request to ready.
    pub startup_seconds: f64,
    /// Trace bin length in seconds.
    pub bin_seconds: f64,
    /// Decision period of every policy (HPA sync).
    pub sync_seconds: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

impl ClusterModel {
    /// Default cluster for a trace: capacity = 95th percentile / 10, 60 s start-up.
    pub fn for_trace(values: &[f64], bin_seconds: f64) -> Self {
        let p95 = quantile(values, 0.95);
        Self {
            capacity_per_replica: if p95 > 0.0 { p95 / 10.0 } else { 1.0 },
            startup_seconds: 60.0,
            bin_seconds,
            sync_seconds: 15.0,
            min_replicas: 1,
            max_replicas: 10_000,
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        for (field, value) in [
            ("capacity_per_replica", self.capacity_per_replica),
            ("bin_seconds", self.bin_seconds),
            ("sync_seconds", self.sync_seconds),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(SimError::BadParameter { field, value });
            }
        }
        if !(self.startup_seconds.is_finite() && self.startup_seconds >= 0.0) {
            return Err(SimError::BadParameter {
                field: "startup_seconds",
                value: self.startup_seconds,
            });
        }
        for (field, value) in [
            ("bin_seconds", self.bin_seconds),
            ("sync_seconds", self.sync_seconds),
            ("startup_seconds", self.startup_seconds),
        ] {
            if value.fract() != 0.0 {
                return Err(SimError::NotWholeSeconds { field, value });
            }
        }
        if self.max_replicas < self.min_replicas.max(1) {
            return Err(SimError::BadParameter {
                field: "max_replicas",
                value: f64::from(self.max_replicas),
            });
        }
        Ok(())
    }

    /// Replicas needed to serve `demand` with no headroom: `ceil(demand / capacity)`.
    pub fn replicas_for(&self, demand: f64) -> u32 {
        let r = (demand / self.capacity_per_replica - 1e-9).ceil().max(0.0);
        (r.min(f64::from(self.max_replicas)) as u32).max(self.min_replicas)
    }
}

/// Which policy to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySpec {
    /// The operator's scaling policy (its method: predictive, reactive or manual).
    Operator(OperatorPolicyConfig),
    Hpa(HpaConfig),
    /// Fixed replicas; `None` = sized for the trace's 95th percentile (hindsight).
    Static(Option<u32>),
}

impl PolicySpec {
    pub fn name(&self) -> &'static str {
        match self {
            PolicySpec::Operator(cfg) => cfg.settings.method.as_str(),
            PolicySpec::Hpa(_) => "hpa",
            PolicySpec::Static(_) => "static",
        }
    }
}

/// What a policy sees at a sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    pub now: f64,
    /// Index of the current bin; `history[bin]` is the current demand.
    pub bin: usize,
    /// Demand of bins 0..=bin (the future is not visible).
    pub history: &'a [f64],
    pub spec_replicas: u32,
    pub ready_replicas: u32,
}

/// One tick of the replay, for plots and CSV.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub time_seconds: f64,
    pub demand: f64,
    pub ready_capacity: f64,
    pub replicas: u32,
    pub ready: u32,
}

/// Score of one policy on one trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub policy: String,
    pub slo_violation_minutes: f64,
    pub replica_hours: f64,
    pub scaling_actions: u64,
    pub simulated_hours: f64,
    pub cluster: ClusterModel,
    #[serde(skip)]
    pub timeline: Vec<Sample>,
}

enum Running {
    Operator(Box<OperatorPolicy>),
    Hpa(HpaState),
    Static(u32),
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// q-quantile (linear interpolation) of `values`; 0 for empty input.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Replays `demand` (one value per bin) through `cluster` under `policy`.
pub fn simulate(demand: &[f64], cluster: &ClusterModel, policy: &PolicySpec) -> Result<SimReport, SimError> {
    simulate_with_progress(demand, cluster, policy, &mut |_| {})
}

/// As [`simulate`], calling `progress(fraction done)` about a hundred times.
pub fn simulate_with_progress(
    demand: &[f64],
    cluster: &ClusterModel,
    policy: &PolicySpec,
    progress: &mut dyn FnMut(f64),
) -> Result<SimReport, SimError> {
    check(demand, cluster)?;
    let mut running = match policy {
        PolicySpec::Operator(cfg) => Running::Operator(Box::new(OperatorPolicy::new(cfg, cluster)?)),
        PolicySpec::Hpa(cfg) => {
            let mut cfg = cfg.clone();
            cfg.min_replicas = cfg.min_replicas.max(cluster.min_replicas);
            cfg.max_replicas = cfg.max_replicas.min(cluster.max_replicas);
            cfg.sync_period_seconds = cluster.sync_seconds;
            Running::Hpa(HpaState::new(cfg)?)
        }
        PolicySpec::Static(n) => Running::Static(
            n.unwrap_or_else(|| cluster.replicas_for(quantile(demand, 0.95)))
                .clamp(cluster.min_replicas.max(1), cluster.max_replicas),
        ),
    };
    // Start in a steady state: every policy's initial replicas are ready.
    let initial = match &running {
        Running::Operator(_) => cluster.replicas_for(demand[0]),
        Running::Hpa(h) => cluster.replicas_for(demand[0] / h.config.target_utilisation),
        Running::Static(n) => *n,
    };
    let capacity_per_replica = cluster.capacity_per_replica;
    let mut decide = |obs: &Observation<'_>| -> Result<u32, SimError> {
        Ok(match &mut running {
            Running::Operator(p) => p.decide(obs)?,
            Running::Hpa(h) => {
                let ready = obs.ready_replicas;
                let util = if ready > 0 {
                    obs.history[obs.bin] / (f64::from(ready) * capacity_per_replica)
                } else {
                    0.0
                };
                h.step(obs.now, obs.spec_replicas, ready, util)?.desired
            }
            Running::Static(n) => *n,
        })
    };
    simulate_with(demand, cluster, policy.name(), initial, &mut decide, progress)
}

fn check(demand: &[f64], cluster: &ClusterModel) -> Result<(), SimError> {
    if demand.is_empty() {
        return Err(SimError::EmptyTrace);
    }
    if let Some((index, &value)) = demand.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return Err(SimError::BadDemand { index, value });
    }
    cluster.validate()
}

/// The replay loop with decisions from `decide`, called at every sync (the policies above, or
/// the learned policy's trainer sampling its actions); `initial` replicas are ready at t = 0.
pub fn simulate_with(
    demand: &[f64],
    cluster: &ClusterModel,
    policy: &str,
    initial: u32,
    decide: &mut dyn FnMut(&Observation<'_>) -> Result<u32, SimError>,
    progress: &mut dyn FnMut(f64),
) -> Result<SimReport, SimError> {
    check(demand, cluster)?;
    let bin = cluster.bin_seconds as u64;
    let sync = cluster.sync_seconds as u64;
    let startup = cluster.startup_seconds as u64;
    let tick = gcd(gcd(bin, sync), startup);
    let end = bin * demand.len() as u64;
    let mut ready = initial;
    let mut pending: Vec<u64> = Vec::new(); // ready-at times, ascending
    let mut violation_seconds = 0u64;
    let mut replica_seconds = 0u64;
    let mut actions = 0u64;
    let mut timeline = Vec::with_capacity((end / tick) as usize);
    let mut next_progress = 0u64;
    let mut t = 0u64;
    while t < end {
        if t >= next_progress {
            progress(t as f64 / end as f64);
            next_progress += (end / 100).max(1);
        }
        let promoted = pending.iter().take_while(|&&r| r <= t).count();
        pending.drain(..promoted);
        ready += promoted as u32;
        let k = (t / bin) as usize;
        let d = demand[k];
        if t.is_multiple_of(sync) {
            let spec = ready + pending.len() as u32;
            let obs = Observation {
                now: t as f64,
                bin: k,
                history: &demand[..=k],
                spec_replicas: spec,
                ready_replicas: ready,
            };
            let desired = decide(&obs)?;
            if desired != spec {
                actions += 1;
                if desired > spec {
                    for _ in spec..desired {
                        pending.push(t + startup);
                    }
                } else {
                    let mut remove = spec - desired;
                    while remove > 0 && pending.pop().is_some() {
                        remove -= 1;
                    }
                    ready -= remove.min(ready);
                }
            }
        }
        let spec = ready + pending.len() as u32;
        let capacity = f64::from(ready) * cluster.capacity_per_replica;
        if d > capacity * (1.0 + 1e-12) {
            violation_seconds += tick;
        }
        replica_seconds += u64::from(spec) * tick;
        timeline.push(Sample {
            time_seconds: t as f64,
            demand: d,
            ready_capacity: capacity,
            replicas: spec,
            ready,
        });
        t += tick;
    }
    progress(1.0);
    Ok(SimReport {
        policy: policy.to_string(),
        slo_violation_minutes: violation_seconds as f64 / 60.0,
        replica_hours: replica_seconds as f64 / 3600.0,
        scaling_actions: actions,
        simulated_hours: end as f64 / 3600.0,
        cluster: cluster.clone(),
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterModel {
        ClusterModel {
            capacity_per_replica: 10.0,
            startup_seconds: 60.0,
            bin_seconds: 300.0,
            sync_seconds: 15.0,
            min_replicas: 1,
            max_replicas: 1000,
        }
    }

    #[test]
    fn static_policy_on_flat_demand_never_violates_and_pays_replicas_times_hours() {
        let r = simulate(&[35.0; 12], &cluster(), &PolicySpec::Static(Some(4))).unwrap();
        assert_eq!(r.slo_violation_minutes, 0.0);
        assert!((r.replica_hours - 4.0).abs() < 1e-9);
        assert_eq!(r.scaling_actions, 0);
    }

    #[test]
    fn a_step_up_costs_hpa_at_least_the_startup_delay_in_violations() {
        let mut d = vec![10.0; 6];
        d.extend(vec![100.0; 6]);
        let r = simulate(&d, &cluster(), &PolicySpec::Hpa(HpaConfig::default())).unwrap();
        // Demand jumps at t = 30 min; new pods are ready 60 s later at the earliest; the
        // scale-up limit (max(4, 100 %)) stretches it further.
        assert!(r.slo_violation_minutes >= 1.0, "{}", r.slo_violation_minutes);
        assert!(r.scaling_actions >= 1);
        let last = r.timeline.last().unwrap();
        assert!(last.ready_capacity >= 100.0);
    }

    #[test]
    fn under_provisioned_static_policy_violates_all_the_time() {
        let r = simulate(&[50.0; 4], &cluster(), &PolicySpec::Static(Some(2))).unwrap();
        assert!((r.slo_violation_minutes - 20.0).abs() < 1e-9);
    }

    #[test]
    fn bad_traces_and_parameters_are_rejected() {
        assert!(matches!(
            simulate(&[], &cluster(), &PolicySpec::Static(None)),
            Err(SimError::EmptyTrace)
        ));
        assert!(matches!(
            simulate(&[1.0, -2.0], &cluster(), &PolicySpec::Static(None)),
            Err(SimError::BadDemand { index: 1, .. })
        ));
        let mut c = cluster();
        c.capacity_per_replica = 0.0;
        let e = simulate(&[1.0], &c, &PolicySpec::Static(None)).unwrap_err();
        assert!(e.to_string().contains("capacity_per_replica"));
        let mut c = cluster();
        c.startup_seconds = 0.5;
        assert!(matches!(
            simulate(&[1.0], &c, &PolicySpec::Static(None)),
            Err(SimError::NotWholeSeconds { .. })
        ));
    }

    #[test]
    fn quantile_interpolates_between_order_statistics() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
