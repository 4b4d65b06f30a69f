//! Helpers shared by the anomaly test binaries: the spike trace `mom exporter replay` serves,
//! a node's anomaly label, patching the MomConfig, and `mom verify --cluster --replay` with the
//! published keys.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;

use crate::common;

/// `points` points, one a second: 10 ± 0.5 (seeded xorshift noise), with 60 added to points
/// 80..83.
pub fn spike_trace(points: u32) -> String {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut csv = String::from("timestamp,value\n");
    for i in 0..points {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let noise = (s % 1000) as f64 / 1000.0 - 0.5;
        let v = 10.0 + noise + if (80..83).contains(&i) { 60.0 } else { 0.0 };
        csv.push_str(&format!(
            "2026-01-01 {:02}:{:02}:{:02},{v}\n",
            i / 3600,
            (i / 60) % 60,
            i % 60
        ));
    }
    csv
}

pub async fn node(name: &str) -> Node {
    Api::<Node>::all(common::client().await).get(name).await.unwrap()
}

/// Whether the node carries `mom.hypersync.io/anomalous=true`.
pub fn flagged(n: &Node) -> bool {
    n.labels().get("mom.hypersync.io/anomalous").map(String::as_str) == Some("true")
}

/// `kubectl patch momconfig default --type KIND -p PATCH`, which must succeed.
pub fn patch_momconfig(kind: &str, patch: &str) {
    let (ok, _, err) = common::kubectl(&["patch", "momconfig", "default", "--type", kind, "-p", patch], None);
    assert!(ok, "{err}");
}

/// `mom verify --cluster --replay` trusting every published key: its `replay` report.
pub async fn replay_report() -> serde_json::Value {
    let mut args = vec!["--cluster".to_string(), "--replay".to_string()];
    for key in common::published_keys(&common::client().await).await {
        args.extend(["--public-key".to_string(), key]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, report) = common::mom_verify(&args);
    report["replay"].clone()
}

/// The nodes the pods of agent `agent` in `ns` are bound to, sorted.
pub async fn agent_pod_nodes(ns: &str, agent: &str) -> Vec<String> {
    use k8s_openapi::api::core::v1::Pod;
    let pods = Api::<Pod>::namespaced(common::client().await, ns)
        .list(&kube::api::ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .unwrap()
        .items;
    let nodes: std::collections::BTreeSet<String> =
        pods.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    nodes.into_iter().collect()
}
