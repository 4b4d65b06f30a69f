//! Failover roles in the operator: reads the roles of an agent's pods, and carries out the
//! core's [`crate::placement::failover::plan`] — a receipt first when it promotes or retires,
//! then the label patches and deletions, and an Event.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::{Context, MANAGER};
use super::crd::GeometricAgent;
use super::crd::agent::ReceiptRef;
use super::crd::strategy::Failover;
use super::receipts::{Intent, Withheld, agent_subject};
use crate::labels::ROLE_LABEL;
use crate::placement::failover::{self, Mode, Plan, Replica, Role, Stranded};

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the failover receipt of {agent} could not be written, so nothing was promoted: {source}")]
    Receipt {
        agent: String,
        #[source]
        source: Withheld,
    },
}

/// The core's mode for a strategy's `spec.resilience.failover`.
pub fn mode_of(failover: Failover) -> Mode {
    match failover {
        Failover::ActiveActive => Mode::ActiveActive,
        Failover::ActivePassive => Mode::ActivePassive,
        Failover::NPlus1 => Mode::NPlus1,
    }
}

/// A pod's role label.
pub fn role_of(pod: &Pod) -> Role {
    Role::from_label(pod.labels().get(ROLE_LABEL).map(String::as_str))
}

/// The role each pod of `replicas` has once `plan` is carried out (retired pods left out).
pub fn roles_after(replicas: &[Replica], plan: &Plan) -> std::collections::BTreeMap<String, Role> {
    let mut roles: std::collections::BTreeMap<String, Role> =
        replicas.iter().map(|r| (r.name.clone(), r.role)).collect();
    for name in &plan.promote {
        roles.insert(name.clone(), Role::Active);
    }
    for (name, role) in &plan.assign {
        roles.insert(name.clone(), *role);
    }
    for name in &plan.demote {
        roles.insert(name.clone(), Role::Standby);
    }
    for name in &plan.retire {
        roles.remove(name);
    }
    roles
}

/// Carries out `plan` for `agent`: the `agent.failover` receipt (write-ahead) when it promotes
/// or retires, then promotions, role assignments and demotions (label patches), then the
/// retirements (deletions), and a `FailedOver` Event. Returns the receipt written, if any.
pub async fn apply(
    ctx: &Context,
    agent: &GeometricAgent,
    pods: &Api<Pod>,
    mode: Mode,
    demand: usize,
    plan: &Plan,
) -> Result<Option<ReceiptRef>, FailoverError> {
    let name = agent.name_any();
    let mut receipt = None;
    if plan.fails_over() {
        let intent = Intent {
            action: crate::receipts::Action::Migrate,
            subject: agent_subject(agent),
            decision: failover::failover_record(mode, demand, plan),
            inputs: serde_json::json!({"demand": demand, "promote": plan.promote, "retire": plan.retire}),
            regarding: Some(agent.object_ref(&())),
            withheld: format!(
                "standbys {:?} were not promoted and {:?} not retired",
                plan.promote, plan.retire
            ),
        };
        receipt = ctx
            .record_before(intent)
            .await
            .map_err(|source| FailoverError::Receipt {
                agent: name.clone(),
                source,
            })?;
    }
    let label = |role: Role| Patch::Merge(serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role.label()}}}));
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let changes = plan
        .promote
        .iter()
        .map(|n| (n, Role::Active))
        .chain(plan.assign.iter().map(|(n, r)| (n, *r)))
        .chain(plan.demote.iter().map(|n| (n, Role::Standby)));
    for (pod, role) in changes {
        match pods.patch(pod, &params, &label(role)).await {
            Ok(_) => {}
            // Gone meanwhile: the next reconcile counts without it.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for pod in &plan.retire {
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if plan.fails_over() {
        ctx.metrics.decision("failover");
        ctx.publish(
            &agent.object_ref(&()),
            EventType::Normal,
            "Failover",
            "FailedOver",
            format!(
                "promoted standby {} to active in place of {} (failover {})",
                plan.promote.join(", "),
                if plan.retire.is_empty() {
                    "lost replicas".to_string()
                } else {
                    format!("failed {}", plan.retire.join(", "))
                },
                serde_json::to_value(mode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        )
        .await;
    }
    Ok(receipt)
}

/// Retires replicas stranded on failed nodes once their replacements are Ready: the
/// `agent.stranded` receipt (write-ahead), the deletions, and a `ReplacedStranded` Event.
pub async fn retire_stranded(
    ctx: &Context,
    agent: &GeometricAgent,
    pods: &Api<Pod>,
    desired: usize,
    stranded: &Stranded,
) -> Result<Option<ReceiptRef>, FailoverError> {
    let name = agent.name_any();
    let intent = Intent {
        action: crate::receipts::Action::Migrate,
        subject: agent_subject(agent),
        decision: failover::stranded_record(desired, stranded),
        inputs: serde_json::json!({
            "desired": desired,
            "stranded": stranded.pods,
            "healthyReady": stranded.healthy_ready,
            "dueToDeadline": stranded.due,
            "unready": stranded.unready,
        }),
        regarding: Some(agent.object_ref(&())),
        withheld: format!("stranded replicas {:?} were not retired", stranded.retire),
    };
    let receipt = ctx
        .record_before(intent)
        .await
        .map_err(|source| FailoverError::Receipt {
            agent: name.clone(),
            source,
        })?;
    for pod in &stranded.retire {
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.metrics.decision("stranded");
    ctx.publish(
        &agent.object_ref(&()),
        EventType::Normal,
        "Failover",
        "ReplacedStranded",
        if !stranded.unready.is_empty() && stranded.due.is_empty() {
            format!(
                "{} on failed nodes and not Ready deleted before their replacements are Ready ({} Ready elsewhere): they serve nothing, and new replicas are made off failed nodes",
                stranded.unready.join(", "),
                stranded.healthy_ready
            )
        } else if stranded.due.is_empty() {
            format!(
                "{} on failed nodes replaced by {} Ready replicas elsewhere; deleted (each stays Terminating until its node is back or gone)",
                stranded.retire.join(", "),
                stranded.healthy_ready
            )
        } else {
            format!(
                "{} deleted before their replacements are Ready ({} Ready elsewhere): their node's termination deadline leaves only their grace period{}",
                stranded.due.join(", "),
                stranded.healthy_ready,
                if stranded.retire.len() > stranded.due.len() {
                    format!("; also retired (replaced, or not Ready): {}", stranded.retire.iter().filter(|p| !stranded.due.contains(p)).cloned().collect::<Vec<_>>().join(", "))
                } else {
                    String::new()
                }
            )
        },
    )
    .await;
    Ok(receipt)
}
