//! The scaler: a leader-only loop that, every tick, sets each GeometricAgent's `spec.replicas`
//! from its OrchestrationStrategy's scaling policy — as the HPA does for Deployments — writing
//! through a merge patch of `spec.replicas` with field manager `mom-scaler` (the agent
//! controller then creates or deletes pods).
//!
//! Pipeline per agent and tick: observe (the agent, its strategy through
//! `validate::check_agent`, the demand window from Prometheus by a range query, so a restart
//! sees the same history) → snapshot ([`DecisionInputs`]) → decide (pure,
//! [`crate::scaling_policy::decide`]) → record (a `scale` receipt holding the inputs and the
//! decision, written BEFORE the patch; at `full_audit` no receipt means no change) → apply (the
//! patch, an Event `Scaled`, metrics) → report (condition `ScalingReady`).
//!
//! A query that fails leaves the replicas unchanged and sets `ScalingReady=False` with reason
//! `QueryFailed` and the query in the message, plus a Warning Event. The cooldown is measured
//! from the time of the scaler's last write of `spec.replicas` (its managedFields entry), which
//! survives restarts. `cpu`/`memory` targets read the resource metrics API (`metrics.k8s.io`),
//! which keeps no history: their samples are kept in memory, one per tick (lost on restart).
//! The reactive method decides on the current value only; its receipt's `inputs.demand` holds
//! the values observed at each tick since the agent's previous receipt (kept in memory, at most
//! the history's points; a new leader starts over), the current one last.
//! The learned method reads its model from the key `spec.scaling.learnedModel` of the ConfigMap
//! `mom-scaling-models` in the agent's namespace (one read per namespace per tick); while it is
//! missing or invalid the replicas are left unchanged (`ScalingReady=False`, reason
//! `ModelUnavailable`, a Warning Event). Its receipts hold the whole model.

mod batch;
mod decide;

use decide::*;
pub use decide::{SCALER_MANAGER, SCALING_READY, ScalerSettings, reason};

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::{Context, LeaderLoop};
use super::crd::GeometricAgent;
use super::crd::agent::ReceiptRef;
use super::crd::conditions::{self, ConditionStatus, DesiredCondition};
use super::crd::strategy::OrchestrationStrategy;
use super::crd::validate::{self, AgentFacts, StrategyFacts};
use super::metrics::ScalingLabels;
use super::prometheus::{Prometheus, QueryError};
use super::receipts::{Intent, agent_subject};
use super::view::AgentKey;
use crate::hpa::HpaState;
use crate::receipts::Action as ReceiptAction;
use crate::scaling_policy::{self, Decision, DecisionInputs, Method};

/// Per-agent memory between ticks (the HPA's recommendation history).
#[derive(Default)]
struct Memory {
    hpa: BTreeMap<AgentKey, HpaState>,
    /// Usage samples from the metrics API (it keeps no history), per agent and target index.
    samples: BTreeMap<(AgentKey, usize), Vec<f64>>,
    /// Reactive agents: the demand observed at each tick since the agent's last scale receipt
    /// (at most the history's points), per agent and target index. The HPA decision reads only
    /// the newest; the receipt records them all, so the demand between two changes is on record
    /// (`mom whatif --cluster` rebuilds it from there).
    reactive: BTreeMap<(AgentKey, usize), Vec<f64>>,
    /// Method `learned`: each namespace's models ConfigMap as read this tick (one read per
    /// namespace per tick; `Err` the read's error).
    models: BTreeMap<String, Result<Option<ConfigMap>, String>>,
}

/// The scaler loop: how its period is chosen (`--scaler-tick-seconds` or `spec.tickSeconds`),
/// its settings, the Prometheus client and its memory between ticks; run by
/// [`super::context::run_leader_loop`].
pub struct Scaler {
    tick: super::ticks::Tick,
    settings: ScalerSettings,
    prometheus: Option<Result<Prometheus, QueryError>>,
    memory: Memory,
}

impl Scaler {
    pub fn new(tick: super::ticks::Tick, settings: ScalerSettings) -> Self {
        let prometheus = settings.prometheus_url.as_deref().map(Prometheus::new);
        if let Some(Err(err)) = &prometheus {
            tracing::error!(error = %err, "the scaler cannot use the Prometheus URL");
        }
        Self {
            tick,
            settings,
            prometheus,
            memory: Memory::default(),
        }
    }
}

impl LeaderLoop for Scaler {
    const NAME: &'static str = "scaler";
    type Error = kube::Error;

    fn period(&self, ctx: &Context) -> super::ticks::Period {
        self.tick.resolve(ctx.configured_tick_seconds())
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), kube::Error> {
        // The sample spacing and look-ahead follow the period in force; in-memory samples
        // taken at another spacing would skew the window, so they start over.
        let every = self.period(ctx).every;
        if every != self.settings.tick {
            self.settings.tick = every;
            self.memory.samples.clear();
            self.memory.reactive.clear();
        }
        tick(ctx, &self.settings, self.prometheus.as_ref(), &mut self.memory).await
    }

    fn reset(&mut self) {
        self.memory = Memory::default();
    }
}

fn unix_now() -> f64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

async fn tick(
    ctx: &Context,
    settings: &ScalerSettings,
    prometheus: Option<&Result<Prometheus, QueryError>>,
    memory: &mut Memory,
) -> Result<(), kube::Error> {
    // The agent controller's cache, sorted; before its first full list the tick is skipped.
    let Some(agents) = ctx.agents.sorted() else {
        return Ok(());
    };
    memory.models.clear();
    let strategies = Api::<OrchestrationStrategy>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut by_ns: BTreeMap<String, Vec<&OrchestrationStrategy>> = BTreeMap::new();
    for s in &strategies {
        by_ns.entry(s.namespace().unwrap_or_default()).or_default().push(s);
    }
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &agents {
        names
            .entry(a.namespace().unwrap_or_default())
            .or_default()
            .insert(a.name_any());
    }
    let mut seen = BTreeSet::new();
    // The MomConfig, read once per tick when a batch agent needs its pricing.
    let mut config: Option<Result<Option<crate::operator::crd::momconfig::MomConfig>, String>> = None;
    for agent in &agents {
        let ns = agent.namespace().unwrap_or_default();
        seen.insert(AgentKey::of(agent));
        if agent.spec.batch.is_some() {
            // Batch agents follow their plan, whatever strategy they have (`batch`).
            if config.is_none() {
                config = Some(
                    Api::<crate::operator::crd::momconfig::MomConfig>::all(ctx.client.clone())
                        .get_opt(crate::operator::crd::momconfig::ACTIVE_NAME)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            match config.as_ref() {
                Some(Ok(c)) => {
                    if let Err(err) = batch::scale_batch(ctx, agent, c.as_ref()).await {
                        tracing::warn!(agent = %agent.name_any(), namespace = %ns, error = %err, "scaling a batch agent failed");
                    }
                }
                // The other agents are still scaled; batch agents wait for the next tick.
                _ => {
                    tracing::warn!(agent = %agent.name_any(), namespace = %ns, "the MomConfig could not be read: batch agent left as it is this tick")
                }
            }
            continue;
        }
        let in_ns = by_ns.get(&ns).cloned().unwrap_or_default();
        let facts: Vec<StrategyFacts> = in_ns.iter().map(|s| StrategyFacts::from_strategy(s)).collect();
        // The strategy the agent controller selects: with its pool's pressure, so a strategy
        // triggered by resource pressure scales the agent while the pressure lasts.
        let pressure = ctx
            .view
            .read()
            .pool_pressure(&crate::operator::pools::pool_of(agent))
            .map(crate::operator::pools::trigger_pressure);
        let check = validate::check_agent(
            &AgentFacts::from_agent(agent, ctx.anomaly_flags(&AgentKey::of(agent))),
            names.get(&ns).unwrap_or(&BTreeSet::new()),
            &facts,
            pressure,
        );
        let Some(strategy) = check
            .strategy
            .as_ref()
            .and_then(|n| in_ns.iter().find(|s| &s.name_any() == n))
        else {
            continue;
        };
        if let Err(err) = scale_agent(ctx, settings, prometheus, memory, agent, strategy).await {
            tracing::warn!(agent = %agent.name_any(), namespace = %ns, error = %err, "scaling an agent failed");
        }
    }
    memory.hpa.retain(|k, _| seen.contains(k));
    memory.samples.retain(|(key, _), _| seen.contains(key));
    memory.reactive.retain(|(key, _), _| seen.contains(key));
    Ok(())
}

/// A reactive agent's demand for this tick's decision: the values kept since its last receipt
/// with the current one (the newest of `fetched`) added, at most `cap`, oldest first. A current
/// value the decision refuses (negative, not finite) is not kept: it goes to the decision
/// alone, which names it; no current value gives no demand (the decision says so).
fn since_receipt(kept: &mut Vec<f64>, fetched: &[f64], cap: usize) -> Vec<f64> {
    match fetched.last() {
        Some(&now) if now.is_finite() && now >= 0.0 => {
            kept.push(now);
            let excess = kept.len().saturating_sub(cap);
            kept.drain(..excess);
            kept.clone()
        }
        Some(&bad) => vec![bad],
        None => Vec::new(),
    }
}

#[derive(Debug, thiserror::Error)]
enum ScaleError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

#[tracing::instrument(skip_all, fields(agent = %AgentKey::of(agent)))]
async fn scale_agent(
    ctx: &Context,
    scaler: &ScalerSettings,
    prometheus: Option<&Result<Prometheus, QueryError>>,
    memory: &mut Memory,
    agent: &GeometricAgent,
    strategy: &OrchestrationStrategy,
) -> Result<(), ScaleError> {
    let key = AgentKey::of(agent);
    let (ns, name) = (key.namespace.clone(), key.name.clone());
    let strategy_name = strategy.name_any();
    let (mut settings, queries) = match policy_settings(&strategy.spec.scaling, &strategy_name, scaler) {
        Ok(s) => s,
        Err(condition) => {
            count(ctx, "none", "not_ready");
            return report(ctx, agent, condition, None).await;
        }
    };
    if settings.method == Method::Learned {
        let model_key = strategy.spec.scaling.learned_model.as_deref().unwrap_or_default();
        if !memory.models.contains_key(&ns) {
            let read = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                .get_opt(MODELS_CONFIGMAP)
                .await
                .map_err(|e| e.to_string());
            memory.models.insert(ns.clone(), read);
        }
        let model = match memory.models.get(&ns) {
            Some(Ok(map)) => learned_model(
                map.as_ref().and_then(|m| m.data.as_ref()),
                &ns,
                model_key,
                &strategy_name,
            ),
            Some(Err(e)) => Err(DesiredCondition::new(
                SCALING_READY,
                ConditionStatus::False,
                reason::MODEL_UNAVAILABLE,
                format!(
                    "strategy {strategy_name}: reading ConfigMap {ns}/{MODELS_CONFIGMAP}: {e}; replicas left unchanged"
                ),
            )),
            None => Err(DesiredCondition::new(
                SCALING_READY,
                ConditionStatus::False,
                reason::MODEL_UNAVAILABLE,
                format!("strategy {strategy_name}: ConfigMap {ns}/{MODELS_CONFIGMAP} was not read"),
            )),
        };
        match model {
            Ok(model) => settings.learned = Some(model),
            Err(condition) => {
                count(ctx, "learned", "model_unavailable");
                let warn = condition.message.clone();
                let reason = condition.reason.clone();
                return report(ctx, agent, condition, Some((&reason, warn))).await;
            }
        }
    }
    let method = settings.method;
    let now = unix_now();
    let current = agent.spec.replicas.max(0) as u32;
    let ready = agent.status.as_ref().map_or(0, |s| s.ready_replicas.max(0) as u32);

    // Observe the demand window (predictive) or the current demand (reactive), per target, and
    // what one replica carries of it.
    let step = settings.step_seconds;
    let points = if matches!(method, Method::Predictive | Method::Learned) {
        ((scaler.history.as_secs_f64() / step).floor() as usize).clamp(1, 10_000)
    } else {
        // The HPA reads the current value; a few points bridge a missed scrape.
        4
    };
    let mut demands: Vec<(Vec<f64>, f64)> = Vec::with_capacity(queries.len());
    for (index, (source, target)) in queries.iter().enumerate() {
        let fetched = match source {
            Source::Prometheus(query) => match prometheus {
                None => Err(DesiredCondition::new(
                    SCALING_READY,
                    ConditionStatus::False,
                    reason::NO_METRICS_SOURCE,
                    format!("query `{query}` cannot run: the operator was started without --prometheus-url"),
                )),
                Some(Err(err)) => Err(query_failed(err)),
                Some(Ok(p)) => {
                    let end = (now / step).floor() * step;
                    let start = end - step * (points as f64 - 1.0);
                    p.query_range(query, start, end, step)
                        .await
                        .map(|v| (v, *target))
                        .map_err(|e| query_failed(&e))
                }
            },
            Source::MetricsApi(metric) => {
                let selector = format!("{}={name}", crate::labels::AGENT_LABEL);
                let usage = match super::metrics_api::request_per_pod(&agent.spec.template, *metric) {
                    Ok(request) => super::metrics_api::pod_usage(&ctx.client, &ns, &selector, *metric)
                        .await
                        .map(|u| (u, request * target)),
                    Err(e) => Err(e),
                };
                match usage {
                    Ok((u, per_replica)) => {
                        let history = memory.samples.entry((key.clone(), index)).or_default();
                        history.push(u);
                        let excess = history.len().saturating_sub(points);
                        history.drain(..excess);
                        Ok((history.clone(), per_replica))
                    }
                    // New pods, not scraped yet: wait, without a Warning.
                    Err(e @ super::metrics_api::MetricsApiError::NoPods { .. }) => Err(DesiredCondition::new(
                        SCALING_READY,
                        ConditionStatus::False,
                        reason::METRICS_PENDING,
                        format!("{e}; replicas left unchanged"),
                    )),
                    Err(e) => Err(DesiredCondition::new(
                        SCALING_READY,
                        ConditionStatus::False,
                        reason::METRICS_UNAVAILABLE,
                        format!("{e}; replicas left unchanged"),
                    )),
                }
            }
        };
        match fetched {
            Ok((mut values, per_replica)) => {
                if method == Method::Reactive {
                    // The current value, after the samples since the last receipt (no current
                    // value: none, and the decision reports the empty demand).
                    let kept = memory.reactive.entry((key.clone(), index)).or_default();
                    let cap = ((scaler.history.as_secs_f64() / step).floor() as usize).clamp(1, 10_000);
                    values = since_receipt(kept, &values, cap);
                }
                demands.push((values, per_replica));
            }
            Err(condition) if condition.reason == reason::METRICS_PENDING => {
                count(ctx, method.as_str(), "metrics_pending");
                return report(ctx, agent, condition, None).await;
            }
            Err(condition) => {
                count(ctx, method.as_str(), "query_failed");
                let warn = condition.message.clone();
                let reason = condition.reason.clone();
                return report(ctx, agent, condition, Some((&reason, warn))).await;
            }
        }
    }

    if method != Method::Reactive {
        // Samples kept while the agent was reactive belong to no receipt of this method.
        memory.reactive.retain(|(k, _), _| *k != key);
    }

    // Snapshot → decide.
    let decision_failed = |err: String| {
        DesiredCondition::new(
            SCALING_READY,
            ConditionStatus::False,
            reason::DECISION_FAILED,
            format!("strategy {strategy_name}: {err}"),
        )
    };
    let observed = scaling_policy::Observed {
        settings,
        demands,
        current_replicas: current,
        ready_replicas: ready,
        since_last_change_seconds: since_last_change(agent, now),
        now_seconds: now,
    };
    // The MPC's dynamic program is O(horizon × maxReplicas²): it runs on the blocking pool, not
    // beside Lease renewal and the watches.
    let hpa = memory.hpa.get(&key).cloned();
    let decided = Context::off_runtime(move || scaling_policy::decide_observed(observed, hpa.as_ref())).await;
    let (inputs, decision, new_state) = match decided {
        Ok(d) => d,
        Err(err) => {
            count(ctx, method.as_str(), "failed");
            return report(ctx, agent, decision_failed(err.to_string()), None).await;
        }
    };
    if let Some(state) = new_state {
        memory.hpa.insert(key.clone(), state);
    }

    // Record, then apply.
    let desired = decision.desired;
    if desired != current {
        let receipt = match write_receipt(ctx, agent, &inputs, &decision).await {
            Ok(receipt) => receipt,
            Err(condition) => {
                count(ctx, method.as_str(), "receipt_failed");
                return report(ctx, agent, condition, None).await;
            }
        };
        // The receipt holds the samples since the previous one: start the next stretch.
        memory.reactive.retain(|(k, _), _| *k != key);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": agent.resource_version()},
            "spec": {"replicas": desired},
        });
        let params = PatchParams {
            field_manager: Some(SCALER_MANAGER.into()),
            ..Default::default()
        };
        match Api::<GeometricAgent>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // Someone else changed the agent since the list: decide again next tick.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(receipt) = receipt {
            // Best effort: the receipt is stored whether or not its reference lands here.
            let patch = serde_json::json!({"status": {"lastReceipt": receipt}});
            if let Err(e) = Api::<GeometricAgent>::namespaced(ctx.client.clone(), &ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(agent = %name, error = %e, "status.lastReceipt not written");
            }
        }
        count(
            ctx,
            method.as_str(),
            if desired > current { "scaled_up" } else { "scaled_down" },
        );
        publish(ctx, agent, EventType::Normal, "Scaled", scaled_note(&inputs, &decision)).await;
    } else {
        count(ctx, method.as_str(), "unchanged");
    }
    let condition = if method == Method::Manual || queries.is_empty() {
        DesiredCondition::new(
            SCALING_READY,
            ConditionStatus::True,
            reason::MANUAL,
            format!(
                "manual scaling by strategy {strategy_name}: spec.replicas within [{}, {}]",
                inputs.settings.min_replicas, inputs.settings.max_replicas
            ),
        )
    } else {
        let list: Vec<String> = queries.iter().map(|(q, _)| q.to_string()).collect();
        DesiredCondition::new(
            SCALING_READY,
            ConditionStatus::True,
            reason::SCALING,
            format!(
                "{} scaling by strategy {strategy_name} on {}",
                method.as_str(),
                list.join(", ")
            ),
        )
    };
    report(ctx, agent, condition, None).await
}

fn count(ctx: &Context, method: &str, outcome: &str) {
    ctx.metrics
        .scaling_decisions
        .get_or_create(&ScalingLabels {
            method: method.into(),
            outcome: outcome.into(),
        })
        .inc();
}

/// Writes the `scale` receipt (inputs inline, so `mom verify --replay` re-runs it) before the
/// change. At `full_audit` a failure returns the condition to report and nothing changes.
async fn write_receipt(
    ctx: &Context,
    agent: &GeometricAgent,
    inputs: &DecisionInputs,
    decision: &Decision,
) -> Result<Option<ReceiptRef>, DesiredCondition> {
    let record = scaling_policy::decision_record(inputs, decision);
    // The digest covers the inputs recorded inline.
    let inputs_json = record["inputs"].clone();
    let intent = Intent {
        action: ReceiptAction::Scale,
        subject: agent_subject(agent),
        decision: record,
        inputs: inputs_json,
        regarding: Some(agent.object_ref(&())),
        withheld: format!("the replicas of {} were not changed", AgentKey::of(agent)),
    };
    ctx.record_before(intent).await.map_err(|withheld| {
        DesiredCondition::new(
            SCALING_READY,
            ConditionStatus::False,
            reason::RECEIPT_FAILED,
            withheld.message,
        )
    })
}

/// Sets `ScalingReady` on the agent when it changed (and publishes `warning` then).
async fn report(
    ctx: &Context,
    agent: &GeometricAgent,
    condition: DesiredCondition,
    warning: Option<(&str, String)>,
) -> Result<(), ScaleError> {
    let existing = agent.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let unchanged = conditions::find(&existing, SCALING_READY).is_some_and(|c| {
        c.status == condition.status.as_str() && c.reason == condition.reason && c.message == condition.message
    });
    if unchanged {
        return Ok(());
    }
    if let Some((reason, note)) = warning {
        publish(ctx, agent, EventType::Warning, reason, note).await;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let merged = conditions::merge(&existing, &[condition], agent.metadata.generation, &now);
    // Only over the version read (the agent controller replaces the same list): on a conflict
    // the next tick reports again.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": agent.resource_version()},
        "status": {"conditions": merged},
    });
    match Api::<GeometricAgent>::namespaced(ctx.client.clone(), &agent.namespace().unwrap_or_default())
        .patch_status(&agent.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn publish(ctx: &Context, agent: &GeometricAgent, type_: EventType, reason: &str, note: String) {
    ctx.publish(&agent.object_ref(&()), type_, "Scale", reason, note).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reactive_receipt_keeps_the_values_since_the_last_one_and_never_a_refused_one() {
        let mut kept = Vec::new();
        // Each tick adds the newest value fetched; older points of the fetch are not added.
        assert_eq!(super::since_receipt(&mut kept, &[1.0, 2.0], 3), vec![2.0]);
        assert_eq!(super::since_receipt(&mut kept, &[9.0, 3.0], 3), vec![2.0, 3.0]);
        // A negative or NaN current value goes alone to the decision and is not kept.
        assert_eq!(super::since_receipt(&mut kept, &[-1.0], 3), vec![-1.0]);
        assert!(super::since_receipt(&mut kept, &[f64::NAN], 3)[0].is_nan());
        assert!(super::since_receipt(&mut kept, &[], 3).is_empty());
        assert_eq!(kept, vec![2.0, 3.0]);
        // At most `cap`, the oldest dropped.
        assert_eq!(super::since_receipt(&mut kept, &[4.0], 3), vec![2.0, 3.0, 4.0]);
        assert_eq!(super::since_receipt(&mut kept, &[5.0], 3), vec![3.0, 4.0, 5.0]);
    }
}
