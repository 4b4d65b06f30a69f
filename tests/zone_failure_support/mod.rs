//! Helpers shared by the outage test binaries (`zone_failure`, `zone_failure_late`): failing
//! and restoring nodes with `tests/cluster/fail-domain.sh`, an agent's pods as (node, Ready,
//! being deleted), and node taints and labels.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use crate::common;

/// Runs `fail-domain.sh` on this binary's control plane with `args`; returns the time (ms since
/// the epoch) it printed.
pub fn fail_domain(args: &[&str]) -> u64 {
    let state = common::control_plane()
        .kubeconfig
        .parent()
        .expect("state dir")
        .to_path_buf();
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/fail-domain.sh"))
        .arg(&state)
        .args(args)
        .output()
        .expect("running fail-domain.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fail-domain.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("_at_ms=").map(|(_, v)| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("fail-domain.sh printed no time: {stdout}"))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// pod → (node, Ready, being deleted) of an agent's pods.
pub type PodStates = BTreeMap<String, (Option<String>, bool, bool)>;

pub async fn pods_of(pods: &Api<Pod>, agent: &str) -> PodStates {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (
                p.metadata.name.clone().unwrap_or_default(),
                (
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    ready,
                    p.metadata.deletion_timestamp.is_some(),
                ),
            )
        })
        .collect()
}

pub fn node_not_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True")
}

/// Deletes the test's agents (their pods go with them) but keeps the namespace and so its
/// receipts: the next test of the binary verifies the whole chain on the same control plane.
pub fn retire(ns: common::TestNamespace) {
    let (ok, _, err) = common::kubectl(
        &["delete", "geometricagents", "--all", "-n", &ns.name, "--wait=true"],
        None,
    );
    assert!(ok, "deleting the agents of {}: {err}", ns.name);
    ns.keep();
}

/// Sets (or with `None` removes) a NoSchedule taint on a node.
pub fn taint(node: &str, key: &str, value: Option<&str>) {
    let arg = match value {
        Some(v) => format!("{key}={v}:NoSchedule"),
        None => format!("{key}:NoSchedule-"),
    };
    let (ok, _, err) = common::kubectl(&["taint", "nodes", node, &arg, "--overwrite"], None);
    assert!(ok, "kubectl taint {node} {arg}: {err}");
}

/// Sets (or with `None` removes) a label on a node.
pub fn label_node(node: &str, key: &str, value: Option<&str>) {
    let arg = match value {
        Some(v) => format!("{key}={v}"),
        None => format!("{key}-"),
    };
    let (ok, _, err) = common::kubectl(&["label", "nodes", node, &arg, "--overwrite"], None);
    assert!(ok, "kubectl label {node} {arg}: {err}");
}
