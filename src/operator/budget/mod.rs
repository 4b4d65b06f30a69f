//! The budget in the operator: MomConfig `spec.budget.maxHourlyCost` caps the scale-ups of the
//! agent controller, and the status loop reports the cost.
//!
//! Scale-up (agent controller, [`cap_scale_up`]): while a budget is set, every scale-up of a
//! GeometricAgent takes the [`Ledger`]'s gate (one at a time across agents, so two agents never
//! spend the same money), prices every GeometricAgent pod from a fresh (quorum) list and the
//! view's nodes, and asks the core ([`crate::budget::decide`]) how many of the replicas wanted
//! fit. The gate is held until the pods are created. When some are refused: a `scale` receipt
//! of decision kind `budget.refused` (inputs inline, replayed by `mom verify --replay`) is
//! written before anything else (once per distinct refusal of the agent, not every reconcile),
//! a Warning Event `BudgetExceeded` on the agent, `mom_budget_refusals_total`, and the refusal
//! stays in the ledger until a reconcile of that agent is not refused any more.
//! Scale-downs and agents whose wish fits are never held back.
//!
//! Status (status loop, [`condition`]): `status.hourlyCost`, gauge `mom_hourly_cost` and the
//! condition `BudgetExceeded` of the MomConfig `default`.

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;

pub mod ledger;

pub use ledger::*;

use super::context::Context;
use super::crd::GeometricAgent;
use super::crd::conditions::DesiredCondition;
use super::receipts::{Intent, Withheld, agent_subject};
use super::view::AgentKey;
use crate::budget::{self, BudgetInputs, NewReplica, PricedPod};
use crate::labels::AGENT_LABEL;
use crate::receipts::Action as ReceiptAction;

/// Why a scale-up could not be decided or its refusal not recorded (nothing is created then).
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the refusal receipt could not be written, so nothing was created: {0}")]
    Receipt(#[source] Withheld),
}

/// What a replica of `agent` requests and where it may go.
pub fn new_replica(agent: &GeometricAgent) -> NewReplica {
    let summary = agent.spec.template.summary();
    let requests = super::view::effective_requests(
        summary.containers.iter().map(|c| &c.requests),
        summary.init_containers.iter().map(|c| &c.requests),
    )
    .unwrap_or_default();
    NewReplica {
        requests,
        node_selector: summary.node_selector.clone(),
    }
}

/// The replicas `agent` may have, from `active` toward `desired`, under the budget (see the
/// module doc), and the gate to hold until its pods are created (`None`: no budget, or no
/// scale-up). A refused part is recorded and announced before this returns.
pub async fn cap_scale_up<'a>(
    ctx: &'a Context,
    agent: &GeometricAgent,
    active: usize,
    desired: usize,
) -> Result<(usize, Option<tokio::sync::MutexGuard<'a, ()>>), BudgetError> {
    let key = AgentKey::of(agent);
    let max = ctx.view.read().settings.max_hourly_cost;
    let Some(max) = max.filter(|_| desired > active) else {
        ctx.budget.clear(&key);
        return Ok((desired, None));
    };
    let gate = ctx.budget.gate.lock().await;
    // Every GeometricAgent pod, fresh: pods another agent created a moment ago under the gate
    // may not be in the view's watch yet.
    let listed = Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default().labels(AGENT_LABEL))
        .await?
        .items;
    let pods: Vec<PricedPod> = listed
        .iter()
        .filter_map(super::view::pod_record)
        .map(|p| PricedPod {
            name: format!("{}/{}", p.namespace, p.name),
            requests: p.demand.requests,
            node: p.node,
            node_selector: p.node_selector,
        })
        .collect();
    let (nodes, _) = ctx.view.read().priced_nodes();
    let inputs = BudgetInputs {
        max_hourly_cost: max,
        agent: key.to_string(),
        active: active as u32,
        wanted: desired as u32,
        replica: new_replica(agent),
        pods,
        nodes,
    }
    .compact();
    let outcome = budget::decide(&inputs);
    if !outcome.refused(&inputs) {
        ctx.budget.clear(&key);
        return Ok((desired, Some(gate)));
    }
    let refusal = Refusal {
        wanted: inputs.wanted,
        allowed: outcome.allowed,
        per_replica_cost: outcome.per_replica_cost,
        max_hourly_cost: max,
    };
    if ctx.budget.is_new(&key, &refusal) {
        let record = budget::refusal_record(&inputs, &outcome);
        let intent = Intent {
            action: ReceiptAction::Scale,
            subject: agent_subject(agent),
            inputs: record["inputs"].clone(),
            decision: record,
            regarding: Some(agent.object_ref(&())),
            withheld: format!(
                "the budget's refusal to scale {key} beyond {} replicas was not recorded, so nothing was created",
                outcome.allowed
            ),
        };
        ctx.record_before(intent).await.map_err(BudgetError::Receipt)?;
        ctx.metrics.budget_refusals.inc();
        let note = format!(
            "spec.budget.maxHourlyCost {max} of MomConfig {}: {} of {} wanted replicas allowed (pods of every agent cost {:.4} per hour; one more costs {:.4})",
            super::crd::momconfig::ACTIVE_NAME,
            outcome.allowed,
            inputs.wanted,
            outcome.hourly_cost,
            outcome.per_replica_cost
        );
        ctx.publish(
            &agent.object_ref(&()),
            EventType::Warning,
            "Scale",
            BUDGET_EXCEEDED,
            note,
        )
        .await;
        ctx.budget.set(key, refusal);
    }
    Ok((outcome.allowed as usize, Some(gate)))
}

/// Conditions the status loop writes for the budget: [`condition`] over the view.
pub fn status(ctx: &Context) -> (f64, DesiredCondition) {
    let (max, cost, problems) = {
        let v = ctx.view.read();
        let (pods, nodes, problems) = v.priced();
        (v.settings.max_hourly_cost, budget::hourly_cost(&pods, &nodes), problems)
    };
    ctx.metrics.hourly_cost.set(cost);
    let (refusals, caps) = if max.is_some() {
        (ctx.budget.refusals(), ctx.budget.auction_caps())
    } else {
        (Vec::new(), Vec::new())
    };
    (cost, condition(max, cost, &refusals, &caps, &problems))
}
