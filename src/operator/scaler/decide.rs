//! The scaler's pure decision path for one agent (testable without an apiserver): the policy
//! settings and metric sources a strategy gives ([`policy_settings`]), the cooldown clock
//! ([`since_last_change`]), and the conditions and notes that report a decision. The decision
//! itself is the core's [`crate::scaling_policy::decide_observed`], which the simulator runs too.

use std::time::Duration;

use crate::forecast::ModelKind;
use crate::operator::crd::GeometricAgent;
use crate::operator::crd::conditions::{ConditionStatus, DesiredCondition};
use crate::operator::crd::strategy::{ScalingMethod, ScalingSpec, TargetMetric};
use crate::operator::prometheus::QueryError;
use crate::scaling_policy::{Decision, DecisionInputs, Method, PolicySettings};

pub use crate::operator::crd::agent::SCALER_MANAGER;

/// Condition type on the agent: whether its scaling policy can be evaluated.
pub const SCALING_READY: &str = "ScalingReady";

/// Reasons of `ScalingReady`.
pub mod reason {
    /// The policy ran; `spec.replicas` follows it.
    pub const SCALING: &str = "Scaling";
    /// Manual scaling: the user's `spec.replicas` stands (clamped to min/max).
    pub const MANUAL: &str = "Manual";
    /// The demand query failed; replicas are left unchanged.
    pub const QUERY_FAILED: &str = "QueryFailed";
    /// The strategy's scaling policy has no target to scale on.
    pub const NO_TARGET: &str = "NoTarget";
    /// The resource metrics API (cpu/memory targets) failed; replicas are left unchanged.
    pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    /// The resource metrics API answers but has no usage of the agent's pods yet (new pods:
    /// metrics-server reports a pod once it has scraped it twice); replicas are left unchanged,
    /// without a Warning event.
    pub const METRICS_PENDING: &str = "MetricsPending";
    /// No Prometheus is configured (`mom operator --prometheus-url`).
    pub const NO_METRICS_SOURCE: &str = "NoMetricsSource";
    /// The decision function refused its inputs.
    pub const DECISION_FAILED: &str = "DecisionFailed";
    /// The receipt could not be written at full_audit, so nothing was changed.
    pub const RECEIPT_FAILED: &str = "ReceiptFailed";
    /// Method `learned`: the model ConfigMap, its key or the model in it is missing or invalid;
    /// replicas are left unchanged.
    pub const MODEL_UNAVAILABLE: &str = "ModelUnavailable";
}

/// The ConfigMap (in the strategy's namespace) whose keys hold learned scaling models.
pub const MODELS_CONFIGMAP: &str = "mom-scaling-models";

/// The learned model under `key` of the models ConfigMap's `data` (`None`: no such ConfigMap);
/// `Err` is the condition to report, naming the ConfigMap, the key and what is wrong.
pub(super) fn learned_model(
    data: Option<&std::collections::BTreeMap<String, String>>,
    namespace: &str,
    key: &str,
    strategy: &str,
) -> Result<crate::learned::LearnedModel, DesiredCondition> {
    let unavailable = |what: String| {
        DesiredCondition::new(
            SCALING_READY,
            ConditionStatus::False,
            reason::MODEL_UNAVAILABLE,
            format!("strategy {strategy}: spec.scaling.learnedModel {key:?}: {what}; replicas left unchanged"),
        )
    };
    let Some(data) = data else {
        return Err(unavailable(format!(
            "ConfigMap {namespace}/{MODELS_CONFIGMAP} not found"
        )));
    };
    let Some(text) = data.get(key) else {
        return Err(unavailable(format!(
            "ConfigMap {namespace}/{MODELS_CONFIGMAP} has no key {key:?}"
        )));
    };
    crate::learned::LearnedModel::from_json(text)
        .map_err(|e| unavailable(format!("ConfigMap {namespace}/{MODELS_CONFIGMAP} key {key:?}: {e}")))
}

/// How the scaler runs (from `mom operator` flags).
#[derive(Debug, Clone)]
pub struct ScalerSettings {
    /// Time between two evaluations; also the spacing of the demand samples. The loop sets it
    /// to its period in force (see `operator::ticks`) before each tick.
    pub tick: Duration,
    /// Base URL of the Prometheus HTTP API.
    pub prometheus_url: Option<String>,
    /// Length of the demand history fetched for the forecast.
    pub history: Duration,
    /// Time a new replica needs before it serves.
    pub startup: Duration,
    /// Forecasting model of the predictive method.
    pub model: ModelKind,
}

impl Default for ScalerSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(15),
            prometheus_url: None,
            history: Duration::from_secs(3600),
            startup: Duration::from_secs(30),
            model: ModelKind::HoltWinters,
        }
    }
}

/// The policy settings of a strategy for this scaler; `Err` is the condition to report.
pub(super) fn policy_settings(
    spec: &ScalingSpec,
    strategy: &str,
    settings: &ScalerSettings,
) -> Result<(PolicySettings, Vec<(Source, f64)>), DesiredCondition> {
    let method = match spec.method {
        ScalingMethod::Predictive => Method::Predictive,
        ScalingMethod::Reactive => Method::Reactive,
        ScalingMethod::Manual => Method::Manual,
        ScalingMethod::Learned => Method::Learned,
    };
    // Clamped to the CRD's bounds too (an object stored under an older CRD may exceed them):
    // the plan table grows with horizon × replicas.
    use crate::operator::crd::{MAX_COOLDOWN_SECONDS, MAX_HORIZON_SECONDS, MAX_REPLICAS};
    let min = spec.min_replicas.clamp(0, MAX_REPLICAS) as u32;
    let max = spec.max_replicas.clamp(0, MAX_REPLICAS) as u32;
    let tick = settings.tick.as_secs_f64();
    let base = |target: f64| PolicySettings {
        cooldown_seconds: f64::from(spec.cooldown_seconds.clamp(0, MAX_COOLDOWN_SECONDS)),
        horizon_seconds: f64::from(spec.horizon_seconds.clamp(1, MAX_HORIZON_SECONDS)),
        step_seconds: tick,
        lead_seconds: settings.startup.as_secs_f64() + tick,
        model: settings.model,
        ..PolicySettings::new(method, min, max, target)
    };
    if method == Method::Manual {
        return Ok((base(1.0), Vec::new()));
    }
    let not_ready =
        |reason: &str, message: String| DesiredCondition::new(SCALING_READY, ConditionStatus::False, reason, message);
    if spec.targets.is_empty() {
        return Err(not_ready(
            reason::NO_TARGET,
            format!(
                "strategy {strategy} has method {} but spec.scaling.targets is empty",
                method.as_str()
            ),
        ));
    }
    let mut queries = Vec::with_capacity(spec.targets.len());
    for (i, target) in spec.targets.iter().enumerate() {
        match (target.metric, &target.query) {
            (TargetMetric::Custom, Some(query)) => queries.push((Source::Prometheus(query.clone()), target.target)),
            (TargetMetric::Custom, None) => {
                return Err(not_ready(
                    reason::NO_TARGET,
                    format!("strategy {strategy}: spec.scaling.targets[{i}] is custom but has no query"),
                ));
            }
            (metric, _) => queries.push((Source::MetricsApi(metric), target.target)),
        }
    }
    let first = queries.first().map_or(1.0, |q| q.1);
    Ok((base(first), queries))
}

/// Where a target's demand comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    /// A PromQL expression (custom targets).
    Prometheus(String),
    /// The resource metrics API (cpu, memory).
    MetricsApi(TargetMetric),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Prometheus(q) => write!(f, "`{q}`"),
            Source::MetricsApi(m) => write!(
                f,
                "{} usage (metrics.k8s.io)",
                serde_json::to_string(m).unwrap_or_default().trim_matches('"')
            ),
        }
    }
}

/// Seconds since the scaler last wrote `spec.replicas` (its managedFields time).
pub(super) fn since_last_change(agent: &GeometricAgent, now: f64) -> Option<f64> {
    let entry = agent
        .metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|m| m.manager.as_deref() == Some(SCALER_MANAGER))
        .filter_map(|m| m.time.as_ref())
        .max_by_key(|t| t.0)?;
    Some((now - entry.0.as_millisecond() as f64 / 1000.0).max(0.0))
}

pub(super) fn query_failed(err: &QueryError) -> DesiredCondition {
    DesiredCondition::new(
        SCALING_READY,
        ConditionStatus::False,
        reason::QUERY_FAILED,
        format!("{err}; replicas left unchanged"),
    )
}

pub(super) fn scaled_note(inputs: &DecisionInputs, d: &Decision) -> String {
    let now = inputs.demand.last().copied().unwrap_or(0.0);
    let peak = d.forecast.iter().copied().fold(f64::NAN, f64::max);
    let mut note = format!(
        "{}: {} → {} replicas (demand {now:.3}, {:?})",
        inputs.settings.method.as_str(),
        inputs.current_replicas,
        d.desired,
        d.basis
    );
    if peak.is_finite() {
        note.push_str(&format!(
            ", forecast peak {peak:.3} within {} s",
            inputs.settings.horizon_seconds
        ));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::strategy::ScalingTarget;

    fn spec(method: ScalingMethod, targets: Vec<ScalingTarget>) -> ScalingSpec {
        ScalingSpec {
            method,
            min_replicas: 1,
            max_replicas: 8,
            cooldown_seconds: 30,
            targets,
            horizon_seconds: 120,
            learned_model: None,
        }
    }

    #[test]
    fn a_learned_model_is_read_from_its_key_and_every_problem_is_named() {
        use crate::learned::{LearnedModel, PARAMS, Provenance};
        let model = LearnedModel::new(vec![0.25; PARAMS], Provenance::default());
        let mut data = std::collections::BTreeMap::new();
        data.insert("web".to_string(), serde_json::to_string(&model).unwrap());
        data.insert(
            "bad".to_string(),
            r#"{"format":1,"headrooms":[0.0],"weights":[]}"#.to_string(),
        );
        assert_eq!(learned_model(Some(&data), "ns", "web", "s"), Ok(model));
        for (data, key, says) in [
            (None, "web", "ConfigMap ns/mom-scaling-models not found"),
            (Some(&data), "other", "has no key \"other\""),
            (Some(&data), "bad", "headrooms must be"),
        ] {
            let c = learned_model(data, "ns", key, "s").unwrap_err();
            assert_eq!(
                (c.status, c.reason.as_str()),
                (ConditionStatus::False, reason::MODEL_UNAVAILABLE)
            );
            assert!(
                c.message.contains(says) && c.message.contains("strategy s"),
                "{}",
                c.message
            );
        }
    }

    fn custom(query: Option<&str>) -> ScalingTarget {
        ScalingTarget {
            metric: TargetMetric::Custom,
            query: query.map(str::to_string),
            target: 50.0,
        }
    }

    #[test]
    fn a_custom_target_gives_the_settings_and_the_query() {
        let (s, q) = policy_settings(
            &spec(ScalingMethod::Predictive, vec![custom(Some("sum(rate(req[1m]))"))]),
            "s",
            &ScalerSettings::default(),
        )
        .unwrap();
        assert_eq!(q, vec![(Source::Prometheus("sum(rate(req[1m]))".into()), 50.0)]);
        assert_eq!((s.min_replicas, s.max_replicas, s.target_per_replica), (1, 8, 50.0));
        assert_eq!(
            (s.cooldown_seconds, s.horizon_seconds, s.step_seconds),
            (30.0, 120.0, 15.0)
        );
        // Start-up (30 s) plus one tick (15 s).
        assert_eq!(s.lead_seconds, 45.0);
    }

    /// The scaler's decision path (its settings from the strategy, the window, the core's
    /// `decide_observed`) and one step of `mom simulate` give the same replicas on the same
    /// demand window, for both forecasting methods.
    #[test]
    fn the_simulator_and_the_scaler_decide_the_same_replicas_on_the_same_window() {
        use crate::scaling_policy::{Observed, decide_observed};
        use crate::simulator::{ClusterModel, Observation, OperatorPolicy, OperatorPolicyConfig};
        let scaler = ScalerSettings::default();
        // Two hours of 5-minute bins climbing from 10 to 340: a ramp both methods must follow.
        let history: Vec<f64> = (0..24)
            .map(|i| 10.0 + 15.0 * f64::from(i) - 5.0 * f64::from(i % 3))
            .collect();
        for method in [ScalingMethod::Predictive, ScalingMethod::Reactive] {
            let (settings, _) = policy_settings(&spec(method, vec![custom(Some("q"))]), "s", &scaler).unwrap();
            let cluster = ClusterModel {
                capacity_per_replica: settings.target_per_replica,
                startup_seconds: scaler.startup.as_secs_f64(),
                bin_seconds: 300.0,
                sync_seconds: scaler.tick.as_secs_f64(),
                min_replicas: settings.min_replicas,
                max_replicas: settings.max_replicas,
            };
            let cfg = OperatorPolicyConfig {
                settings: settings.clone(),
                history_seconds: scaler.history.as_secs_f64(),
            };
            let mut simulated = OperatorPolicy::new(&cfg, &cluster).unwrap();
            let obs = Observation {
                now: 300.0 * 23.0 + 45.0,
                bin: 23,
                history: &history,
                spec_replicas: 3,
                ready_replicas: 2,
            };
            let window = simulated.window(&obs);
            assert!(window.len() > 1 || method == ScalingMethod::Reactive);
            let observed = Observed {
                settings,
                demands: vec![(window, 50.0)],
                current_replicas: 3,
                ready_replicas: 2,
                since_last_change_seconds: None,
                now_seconds: obs.now,
            };
            let (_, decision, _) = decide_observed(observed, None).unwrap();
            let stepped = simulated.decide(&obs).unwrap();
            assert_eq!(stepped, decision.desired, "{method:?}");
            assert!(stepped > 3, "{method:?}: the ramp needs more replicas, got {stepped}");
        }
    }

    #[test]
    fn a_policy_without_a_usable_target_is_reported_with_the_strategy_named() {
        let e = policy_settings(
            &spec(ScalingMethod::Reactive, vec![]),
            "web",
            &ScalerSettings::default(),
        )
        .unwrap_err();
        assert_eq!(e.reason, reason::NO_TARGET);
        assert!(e.message.contains("strategy web"), "{}", e.message);
        let e = policy_settings(
            &spec(ScalingMethod::Predictive, vec![custom(None)]),
            "web",
            &ScalerSettings::default(),
        )
        .unwrap_err();
        assert!(
            e.message.contains("targets[0] is custom but has no query"),
            "{}",
            e.message
        );
    }

    #[test]
    fn every_target_of_a_strategy_is_read_from_its_source() {
        let second = ScalingTarget {
            target: 5.0,
            ..custom(Some("queue_length"))
        };
        let memory = ScalingTarget {
            metric: TargetMetric::Memory,
            query: None,
            target: 0.5,
        };
        let (s, q) = policy_settings(
            &spec(ScalingMethod::Reactive, vec![custom(Some("rps")), second, memory]),
            "s",
            &ScalerSettings::default(),
        )
        .unwrap();
        assert_eq!(
            q,
            vec![
                (Source::Prometheus("rps".into()), 50.0),
                (Source::Prometheus("queue_length".into()), 5.0),
                (Source::MetricsApi(TargetMetric::Memory), 0.5)
            ]
        );
        assert_eq!(s.target_per_replica, 50.0);
        assert_eq!(q[2].0.to_string(), "memory usage (metrics.k8s.io)");
    }

    #[test]
    fn numbers_beyond_the_crd_bounds_are_clamped_before_they_size_the_plan() {
        // Stored under an older CRD without the bounds.
        let mut huge = spec(ScalingMethod::Manual, vec![]);
        (huge.min_replicas, huge.max_replicas) = (i32::MAX, i32::MAX);
        (huge.horizon_seconds, huge.cooldown_seconds) = (i32::MAX, i32::MAX);
        let (s, _) = policy_settings(&huge, "m", &ScalerSettings::default()).unwrap();
        let max = crate::operator::crd::MAX_REPLICAS as u32;
        assert_eq!((s.min_replicas, s.max_replicas), (max, max));
        assert_eq!(s.horizon_seconds, f64::from(crate::operator::crd::MAX_HORIZON_SECONDS));
        assert_eq!(
            s.cooldown_seconds,
            f64::from(crate::operator::crd::MAX_COOLDOWN_SECONDS)
        );
        // Within the bounds nothing changes.
        let (s, _) = policy_settings(&spec(ScalingMethod::Manual, vec![]), "m", &ScalerSettings::default()).unwrap();
        assert_eq!(
            (s.min_replicas, s.max_replicas, s.horizon_seconds, s.cooldown_seconds),
            (1, 8, 120.0, 30.0)
        );
    }

    #[test]
    fn manual_scaling_needs_no_target() {
        let (s, q) = policy_settings(&spec(ScalingMethod::Manual, vec![]), "m", &ScalerSettings::default()).unwrap();
        assert_eq!(s.method, Method::Manual);
        assert!(q.is_empty());
    }

    #[test]
    fn a_failed_query_condition_names_the_query() {
        let c = query_failed(&QueryError::NoData {
            query: "demand{x=\"1\"}".into(),
        });
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, reason::QUERY_FAILED)
        );
        assert!(c.message.contains("`demand{x=\"1\"}`"), "{}", c.message);
    }
}
