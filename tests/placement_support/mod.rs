//! Helpers shared by the placement test binaries: MOM set up with the MomConfig they assume,
//! GeometricAgent / OrchestrationStrategy JSON, and waiting for an agent's running pods.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use crate::common;

/// MOM running, with the MomConfig `default` these tests assume (greedy forwarding; other test
/// binaries may have applied the examples' multipath config).
pub fn setup() {
    common::mom();
    common::apply_test_momconfig("none");
}

pub fn agent(ns: &str, name: &str, replicas: i32, extra_spec: &str, extra_pod_spec: &str) -> String {
    agent_requesting(ns, name, replicas, "50m", extra_spec, extra_pod_spec)
}

/// [`agent`] whose pods request `cpu` (a Kubernetes quantity) each.
pub fn agent_requesting(
    ns: &str,
    name: &str,
    replicas: i32,
    cpu: &str,
    extra_spec: &str,
    extra_pod_spec: &str,
) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"interactive","replicas":{replicas}{extra_spec},
              "template":{{"spec":{{{extra_pod_spec}"containers":[{{"name":"c","image":"pause",
                 "resources":{{"requests":{{"cpu":"{cpu}","memory":"32Mi"}}}}}}]}}}}}}}}"#
    )
}

pub fn strategy(ns: &str, name: &str, placement: &str, redundancy: Option<&str>) -> String {
    let resilience = redundancy
        .map(|r| format!(r#","resilience":{{"redundancy":"{r}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"priority":10,"scaling":{{"method":"manual","minReplicas":0,"maxReplicas":20}},
                     "placement":{{{placement}}}{resilience}}}}}"#
    )
}

/// Waits until `count` pods of `agent` run, and returns pod name → node.
pub async fn running_pods(ns: &common::TestNamespace, agent: &str, count: usize) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let selector = format!("mom.hypersync.io/agent={agent}");
    common::eventually(
        &format!("{count} running pods of {agent}"),
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move {
                let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
                let live: Vec<&Pod> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let running: BTreeMap<String, String> = live
                    .iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                    .filter_map(|p| Some((p.metadata.name.clone()?, p.spec.as_ref()?.node_name.clone()?)))
                    .collect();
                (running.len() == count && live.len() == count).then_some(running)
            }
        },
    )
    .await
}

pub async fn node_labels(client: kube::Client) -> BTreeMap<String, BTreeMap<String, String>> {
    let nodes: Api<Node> = Api::all(client);
    nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap(),
                n.metadata.labels.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Labels `nodes` with `key=true` (and removes the label again when dropped).
pub struct NodeLabel {
    key: String,
    nodes: Vec<String>,
}

impl NodeLabel {
    pub fn set(key: &str, nodes: &[String]) -> Self {
        for node in nodes {
            let (ok, _, err) = common::kubectl(&["label", "node", node, &format!("{key}=true"), "--overwrite"], None);
            assert!(ok, "labelling {node}: {err}");
        }
        Self {
            key: key.to_string(),
            nodes: nodes.to_vec(),
        }
    }
}

impl Drop for NodeLabel {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = common::kubectl(&["label", "node", node, &format!("{}-", self.key)], None);
        }
    }
}
