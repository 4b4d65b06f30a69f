//! Quarantine of a flagged agent (strategy `spec.resilience.quarantine: isolate`): keeps the
//! agent's deny-all NetworkPolicy in step with [`crate::decisions::quarantine::decide`]
//! (receipt, then the write, then an Event). The agent controller holds new replicas back while
//! the agent is isolated.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::crd::GeometricAgent;
use super::crd::strategy::Quarantine;
use super::receipts::Intent;
use crate::decisions::quarantine::{QuarantineInputs, decide, decision_record};

/// Prefix of the quarantine NetworkPolicy's name.
pub const POLICY_PREFIX: &str = "mom-quarantine-";

/// Why the quarantine did not change.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the agent.quarantine receipt could not be written, so the quarantine did not change: {0}")]
    Receipt(String),
}

/// The NetworkPolicy name for agent `name` (a DNS subdomain of at most 253 characters; longer
/// agent names are cut and end in a digest of the whole name).
pub fn policy_name(name: &str) -> String {
    let full = format!("{POLICY_PREFIX}{name}");
    if full.len() <= 253 {
        return full;
    }
    let digest = crate::receipts::inputs_digest(&serde_json::Value::String(name.into())).unwrap_or_default();
    format!("{}-{}", &full[..253 - 17], &digest[..16])
}

/// The deny-all policy over the agent's pods (label `mom.hypersync.io/agent`), owned by it.
fn policy(agent: &GeometricAgent, name: &str) -> NetworkPolicy {
    let owner = agent.controller_owner_ref(&());
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": policy_name(name),
            "labels": {crate::labels::AGENT_LABEL: name, "app.kubernetes.io/managed-by": "mom"},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": {
            "podSelector": {"matchLabels": {crate::labels::AGENT_LABEL: name}},
            "policyTypes": ["Ingress", "Egress"],
        }
    }))
    .unwrap_or_default()
}

/// Isolates or releases `agent` as the decision says for `mode` and `flags`; returns whether it
/// is isolated now (on an error: whether its policy existed, so replicas stay held back).
pub async fn reconcile(
    ctx: &Context,
    agent: &GeometricAgent,
    mode: Quarantine,
    flags: &BTreeSet<String>,
) -> Result<bool, QuarantineError> {
    let (namespace, name) = (agent.namespace().unwrap_or_default(), agent.name_any());
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = api.get_opt(&policy_name(&name)).await?;
    // Only a policy this agent owns counts as its quarantine; anything else of that name is
    // left alone.
    let uid = agent.uid();
    let owned = existing
        .as_ref()
        .filter(|p| p.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()));
    let inputs = QuarantineInputs {
        agent: format!("{namespace}/{name}"),
        mode: match mode {
            Quarantine::None => "none".into(),
            Quarantine::Isolate => "isolate".into(),
        },
        flags: flags.clone(),
        isolated_now: owned.is_some(),
    };
    let output = decide(&inputs);
    if !output.changed {
        return Ok(output.isolated);
    }
    let intent = Intent {
        action: crate::receipts::Action::Configure,
        subject: crate::receipts::SubjectRef {
            api_version: "mom.hypersync.io/v1alpha1".into(),
            kind: "GeometricAgent".into(),
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
        },
        decision: decision_record(&inputs, &output),
        inputs: serde_json::to_value(&inputs).unwrap_or_default(),
        regarding: Some(agent.object_ref(&())),
        withheld: format!(
            "{namespace}/{name} was not {}",
            if output.isolated {
                "isolated"
            } else {
                "released from quarantine"
            }
        ),
    };
    ctx.record_before(intent)
        .await
        .map_err(|w| QuarantineError::Receipt(w.message))?;
    let flag_list = flags.iter().cloned().collect::<Vec<_>>().join(", ");
    if output.isolated {
        match api.create(&PostParams::default(), &policy(agent, &name)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.publish(
            &agent.object_ref(&()),
            EventType::Warning,
            "Quarantine",
            "Quarantined",
            format!(
                "NetworkPolicy {} isolates the agent's pods and no new replicas are made while flags are up: {flag_list}",
                policy_name(&name)
            ),
        )
        .await;
    } else {
        let params = DeleteParams {
            preconditions: owned.and_then(|p| p.uid()).map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&policy_name(&name), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.publish(
            &agent.object_ref(&()),
            EventType::Normal,
            "Quarantine",
            "QuarantineLifted",
            format!("NetworkPolicy {} deleted: no flag is up", policy_name(&name)),
        )
        .await;
    }
    Ok(output.isolated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_name_is_a_dns_subdomain_even_for_the_longest_agent_names() {
        assert_eq!(policy_name("web"), "mom-quarantine-web");
        let long = "a".repeat(253);
        let name = policy_name(&long);
        assert_eq!(name.len(), 253);
        assert_ne!(name, policy_name(&"a".repeat(252)));
    }

    #[test]
    fn the_policy_selects_the_agents_pods_and_allows_no_traffic() {
        let agent: GeometricAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {"workloadType": "interactive", "replicas": 1, "template": {"spec": {"containers": []}}}
        }))
        .unwrap();
        let p = serde_json::to_value(policy(&agent, "web")).unwrap();
        assert_eq!(
            p["spec"]["podSelector"]["matchLabels"][crate::labels::AGENT_LABEL],
            "web"
        );
        assert_eq!(p["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
        assert!(p["spec"].get("ingress").is_none() && p["spec"].get("egress").is_none());
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u-1");
    }
}
