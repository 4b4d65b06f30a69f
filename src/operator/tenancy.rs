//! Tenant identity: which tenant a namespace belongs to, and which pods may claim isolation.
//!
//! A tenant is never what a pod or an agent says it is. It comes from the namespace: the
//! namespace's `mom.hypersync.io/tenant` label when set (several namespaces can then form one
//! tenant), else the namespace's name. Only cluster administrators can label namespaces under
//! the usual RBAC (a namespace's users get Roles inside it, not `update` on the Namespace), so a
//! tenant cannot name itself another tenant, charge auction costs to it, or join its nodes.
//!
//! Strict isolation is honoured only on pods a GeometricAgent controls (a controller
//! `ownerReference` to the GeometricAgent that the pod's `mom.hypersync.io/agent` label names);
//! the same label on any other pod grants nothing. An agent's users may ask for strict isolation
//! through the agent's `spec.isolation`, so a pod they build by hand with such an owner claims
//! no more than the agent already could.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::labels::{AGENT_LABEL, TENANT_LABEL};

/// The tenant of the namespace `name` with `labels`: its `mom.hypersync.io/tenant` label when
/// non-empty, else its name.
pub fn namespace_tenant(name: &str, labels: Option<&BTreeMap<String, String>>) -> String {
    labels
        .and_then(|l| l.get(TENANT_LABEL))
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Where a namespace's tenant comes from, for messages.
pub fn tenant_source(labels: Option<&BTreeMap<String, String>>) -> &'static str {
    match labels.and_then(|l| l.get(TENANT_LABEL)).filter(|t| !t.is_empty()) {
        Some(_) => "its mom.hypersync.io/tenant label",
        None => "its name (the namespace has no mom.hypersync.io/tenant label)",
    }
}

/// The name of the GeometricAgent that controls `pod`: the pod's `mom.hypersync.io/agent` label,
/// only when a controller `ownerReference` of kind GeometricAgent (group `mom.hypersync.io`)
/// names the same agent.
pub fn controlling_agent(pod: &Pod) -> Option<&str> {
    let agent = pod.metadata.labels.as_ref()?.get(AGENT_LABEL)?;
    pod.metadata
        .owner_references
        .as_deref()?
        .iter()
        .any(|o| {
            o.controller == Some(true)
                && o.kind == "GeometricAgent"
                && o.api_version.split('/').next() == Some("mom.hypersync.io")
                && &o.name == agent
        })
        .then_some(agent.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(agent_label: Option<&str>, owner: Option<(&str, &str, bool)>) -> Pod {
        let mut p = Pod::default();
        if let Some(a) = agent_label {
            p.metadata.labels = Some([(AGENT_LABEL.to_string(), a.to_string())].into());
        }
        if let Some((kind, name, controller)) = owner {
            p.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: kind.into(),
                name: name.into(),
                uid: "u".into(),
                controller: Some(controller),
                block_owner_deletion: None,
            }]);
        }
        p
    }

    #[test]
    fn a_namespace_label_names_the_tenant_and_its_absence_falls_back_to_the_namespace_name() {
        let labelled: BTreeMap<String, String> = [(TENANT_LABEL.to_string(), "acme".to_string())].into();
        assert_eq!(namespace_tenant("shop", Some(&labelled)), "acme");
        assert_eq!(namespace_tenant("shop", None), "shop");
        let empty: BTreeMap<String, String> = [(TENANT_LABEL.to_string(), String::new())].into();
        assert_eq!(namespace_tenant("shop", Some(&empty)), "shop");
        assert!(tenant_source(Some(&labelled)).contains("label"));
        assert!(tenant_source(None).contains("its name"));
    }

    #[test]
    fn only_a_pod_controlled_by_the_agent_its_label_names_has_a_controlling_agent() {
        assert_eq!(
            controlling_agent(&pod(Some("web"), Some(("GeometricAgent", "web", true)))),
            Some("web")
        );
        // The label alone, another owner kind, another agent, or a non-controller owner: none.
        assert_eq!(controlling_agent(&pod(Some("web"), None)), None);
        assert_eq!(
            controlling_agent(&pod(Some("web"), Some(("ReplicaSet", "web", true)))),
            None
        );
        assert_eq!(
            controlling_agent(&pod(Some("web"), Some(("GeometricAgent", "db", true)))),
            None
        );
        assert_eq!(
            controlling_agent(&pod(Some("web"), Some(("GeometricAgent", "web", false)))),
            None
        );
        assert_eq!(
            controlling_agent(&pod(None, Some(("GeometricAgent", "web", true)))),
            None
        );
    }
}
