//! Batch agents in the scaler: at every tick, count the replica-hours the agent's Ready pods
//! ran since the last count, plan the rest over the MomConfig's `spec.pricing`
//! ([`crate::batch::decide`]), and set `spec.replicas` and `status.batch.pools` to the plan's
//! now (a `scale` receipt with decision `batch.plan` and its inputs inline, written before the
//! change).
//!
//! Order of writes: `status.batch` first, over the agent's `resourceVersion` as read (the
//! agent controller pins the pods it creates to `status.batch.pools`), then the receipt and
//! `spec.replicas` over the version that write returned. A tick whose status write fails
//! leaves `accountedAt` where it was, so the next one counts the same time once; once it is
//! written, a failed receipt or a conflicting spec patch leaves the replicas to the next tick
//! (a receipt may then be written twice for one change, as for the other scaling methods).
//! Cost is counted at the price of the slot of the count for the whole interval since the last
//! one (exact while counts are at most a slot apart). While the plan's now
//! (pools, phase) and the replicas stand, `status.batch` is written at most every
//! [`ACCOUNT_EVERY_SECONDS`]: the Ready pods seen at that write count for the whole interval.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::decide::{SCALER_MANAGER, SCALING_READY};
use super::{ScaleError, count, publish, report};
use crate::batch::{self, BatchDecision, BatchInputs, BatchJob, Weights};
use crate::operator::context::Context;
use crate::operator::crd::GeometricAgent;
use crate::operator::crd::agent::BatchStatus;
use crate::operator::crd::conditions::{ConditionStatus, DesiredCondition};
use crate::operator::crd::momconfig::MomConfig;
use crate::operator::receipts::{Intent, agent_subject};
use crate::operator::view::AgentKey;
use crate::receipts::Action as ReceiptAction;

/// Most seconds between two writes of `status.batch` while the plan's now stands.
pub const ACCOUNT_EVERY_SECONDS: f64 = 30.0;

/// Reasons of `ScalingReady` for batch agents.
pub mod reason {
    /// The plan runs replicas now.
    pub const BATCH_RUNNING: &str = "BatchRunning";
    /// The plan runs nothing now: cheaper slots come before the deadline.
    pub const BATCH_WAITING: &str = "BatchWaiting";
    /// The work is done.
    pub const BATCH_COMPLETE: &str = "BatchComplete";
    /// The work does not fit before the deadline: it runs at full width.
    pub const BATCH_LATE: &str = "BatchLate";
    /// No MomConfig `spec.pricing`: the agent is not scaled.
    pub const NO_PRICING: &str = "NoPricing";
    /// `spec.batch` or the pricing cannot be planned over (the message names the field).
    pub const INVALID_BATCH: &str = "InvalidBatch";
}

/// Whether a pod counts as running work: Ready.
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn seconds(t: k8s_openapi::jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// One tick of a batch agent (module doc).
#[tracing::instrument(skip_all, fields(agent = %AgentKey::of(agent)))]
pub(super) async fn scale_batch(
    ctx: &Context,
    agent: &GeometricAgent,
    config: Option<&MomConfig>,
) -> Result<(), ScaleError> {
    let Some(spec) = agent.spec.batch.as_ref() else {
        return Ok(());
    };
    let (ns, name) = (agent.namespace().unwrap_or_default(), agent.name_any());
    let invalid =
        |reason: &str, message: String| DesiredCondition::new(SCALING_READY, ConditionStatus::False, reason, message);
    let deadline = match spec.deadline.parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(d) => d,
        Err(e) => {
            count(ctx, "batch", "not_ready");
            let message = format!(
                "spec.batch.deadline {:?} is not an RFC 3339 time: {e}; replicas left unchanged",
                spec.deadline
            );
            return report(ctx, agent, invalid(reason::INVALID_BATCH, message), None).await;
        }
    };
    let Some(pricing) = config.and_then(|c| c.spec.pricing.as_ref()) else {
        count(ctx, "batch", "not_ready");
        let message = "the MomConfig has no spec.pricing to plan batch work over; replicas left unchanged".to_string();
        return report(ctx, agent, invalid(reason::NO_PRICING, message), None).await;
    };
    let pricing = pricing.to_core();
    let weights = config.map_or_else(Weights::default, |c| Weights {
        cost: c.spec.objectives.cost,
        sustainability: c.spec.objectives.sustainability,
    });
    // Count the work done since the last count.
    let now = k8s_openapi::jiff::Timestamp::now();
    let previous = agent.status.as_ref().and_then(|s| s.batch.clone()).unwrap_or_default();
    let since = previous
        .accounted_at
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map_or(0.0, |t| (seconds(now) - seconds(t)).max(0.0) / 3600.0);
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("{}={name}", crate::labels::AGENT_LABEL)))
        .await?
        .items;
    let slot = (seconds(now) / pricing.slot_seconds).floor() as u64;
    let ready_pools: Vec<String> = {
        let v = ctx.view.read();
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .map(|node| {
                v.node_labels(&node)
                    .and_then(|l| l.get(crate::labels::POOL_LABEL).cloned())
                    .unwrap_or_else(|| batch::DEFAULT_POOL.to_string())
            })
            .collect()
    };
    let completed = previous.completed_replica_hours + ready_pools.len() as f64 * since;
    let cost = previous.cost
        + ready_pools
            .iter()
            .filter_map(|pool| pricing.pools.get(pool))
            .map(|f| f.at(slot).0 * since)
            .sum::<f64>();
    // Plan the rest.
    let inputs = BatchInputs {
        job: BatchJob {
            work_replica_hours: (spec.replica_hours - completed).max(0.0),
            max_replicas: u32::try_from(spec.max_replicas).unwrap_or(1).max(1),
            now_seconds: seconds(now),
            deadline_seconds: seconds(deadline),
            budget: spec.budget.map(|b| (b - cost).max(0.0)),
        },
        pricing,
        weights,
    };
    let decision = match batch::decide(&inputs) {
        Ok(d) => d,
        Err(e) => {
            count(ctx, "batch", "not_ready");
            let message = format!("batch plan refused: {e}; replicas left unchanged");
            return report(ctx, agent, invalid(reason::INVALID_BATCH, message), None).await;
        }
    };
    let done = inputs.job.work_replica_hours <= batch::EPSILON_REPLICA_HOURS;
    let phase = if done {
        "Complete"
    } else if !decision.deadline_met {
        "Late"
    } else if decision.replicas > 0 {
        "Running"
    } else {
        "Waiting"
    };
    let status = BatchStatus {
        completed_replica_hours: completed,
        cost,
        accounted_at: now.to_string(),
        pools: decision
            .pools
            .iter()
            .map(|(p, r)| (p.clone(), i32::try_from(*r).unwrap_or(i32::MAX)))
            .collect(),
        planned_finish: decision
            .finish_seconds
            .and_then(|f| k8s_openapi::jiff::Timestamp::from_millisecond((f * 1000.0) as i64).ok())
            .map(|t| t.to_string()),
        planned_cost: decision.planned_cost,
        at_once_cost: decision.at_once_cost,
        phase: phase.to_string(),
        within_budget: spec.budget.map(|b| cost + decision.planned_cost <= b + 1e-9),
    };
    let agents = Api::<GeometricAgent>::namespaced(ctx.client.clone(), &ns);
    let desired = i32::try_from(decision.replicas).unwrap_or(i32::MAX);
    // One status write per agent per tick would load the apiserver with many batch agents:
    // while the plan's now (pools, phase) and the replicas stand, the count is written at most
    // every ACCOUNT_EVERY_SECONDS (the time since `accountedAt` is counted at the next write).
    let steady = previous.pools == status.pools
        && previous.phase == status.phase
        && desired == agent.spec.replicas
        && since * 3600.0 < ACCOUNT_EVERY_SECONDS;
    if steady {
        return Ok(());
    }
    // Only over the version read (the scaler reads the controller's cache, which may lag): a
    // newer agent (its spec.batch or spec.replicas changed) is decided on at the next tick. The
    // spec patch below is then made over the version this write returns.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": agent.resource_version()},
        "status": {"batch": status},
    });
    let mut latest = match agents
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(a) => a,
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if desired != agent.spec.replicas {
        let record = batch::decision_record(&inputs, &decision);
        let intent = Intent {
            action: ReceiptAction::Scale,
            subject: agent_subject(agent),
            inputs: record["inputs"].clone(),
            decision: record,
            regarding: Some(agent.object_ref(&())),
            withheld: format!("the replicas of {} were not changed", AgentKey::of(agent)),
        };
        if let Err(withheld) = ctx.record_before(intent).await {
            count(ctx, "batch", "receipt_failed");
            let condition = invalid(super::decide::reason::RECEIPT_FAILED, withheld.message);
            return report(ctx, agent, condition, None).await;
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": latest.resource_version()},
            "spec": {"replicas": desired},
        });
        let params = PatchParams {
            field_manager: Some(SCALER_MANAGER.into()),
            ..Default::default()
        };
        match agents.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(updated) => latest = updated,
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        count(
            ctx,
            "batch",
            if desired > agent.spec.replicas {
                "scaled_up"
            } else {
                "scaled_down"
            },
        );
        publish(
            ctx,
            agent,
            EventType::Normal,
            "Scaled",
            format!(
                "batch plan: {} → {desired} replicas ({})",
                agent.spec.replicas,
                describe(&decision)
            ),
        )
        .await;
    }
    let (reason, state) = match phase {
        "Complete" => (reason::BATCH_COMPLETE, ConditionStatus::True),
        "Late" => (reason::BATCH_LATE, ConditionStatus::True),
        "Running" => (reason::BATCH_RUNNING, ConditionStatus::True),
        _ => (reason::BATCH_WAITING, ConditionStatus::True),
    };
    // Progress and costs are in `status.batch`; the condition changes with the plan's now.
    let message = if phase == "Complete" {
        format!("the {} replica-hours are done (status.batch)", spec.replica_hours)
    } else {
        describe(&decision)
    };
    report(
        ctx,
        &latest,
        DesiredCondition::new(SCALING_READY, state, reason, message),
        None,
    )
    .await
}

/// The plan in words, for the condition and the Event.
fn describe(d: &BatchDecision) -> String {
    let pools: BTreeMap<&str, u32> = d.pools.iter().map(|(p, r)| (p.as_str(), *r)).collect();
    let now = if pools.is_empty() {
        "nothing runs now".to_string()
    } else {
        format!(
            "now {}",
            pools
                .iter()
                .map(|(p, r)| format!("{r} in pool {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let finish = if d.deadline_met {
        "the plan finishes by the deadline (progress and costs: status.batch)"
    } else {
        "the work does not fit before the deadline: it runs at full width"
    };
    format!("{now}; {finish}")
}
