//! Strict tenant isolation end to end, in its own test binary: it adds (and removes) a node
//! pool, which changes the node embedding that the other placement tests reason about.

mod common;
mod placement_support;

use std::collections::BTreeSet;

use placement_support::*;

#[tokio::test]
async fn strict_tenants_never_share_a_node() {
    setup();
    let ns = common::TestNamespace::new("place-iso").await;
    let n = &ns.name;
    // A pool of its own, tainted so that no other test's pods land there.
    let pool = format!("iso-{}", &n[n.len() - 5..]);
    let mut nodes = Vec::new();
    for (i, zone) in ["a", "a", "b", "b"].iter().enumerate() {
        nodes.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("{pool}-{i}"), "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"type": "kwok", "pool": pool, "topology.kubernetes.io/region": "region-iso",
                           "topology.kubernetes.io/zone": format!("region-iso{zone}"),
                           "kubernetes.io/hostname": format!("{pool}-{i}")}},
            "spec": {"taints": [{"key": "pool", "value": pool, "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
        }));
    }
    common::apply(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": nodes}).to_string());
    let pod_extra = format!(
        r#""nodeSelector":{{"pool":"{pool}"}},"tolerations":[{{"key":"pool","operator":"Equal","value":"{pool}","effect":"NoSchedule"}}],"#
    );
    common::apply(&agent(
        n,
        "red",
        3,
        r#","tenant":"red","isolation":"strict""#,
        &pod_extra,
    ));
    common::apply(&agent(
        n,
        "blue",
        3,
        r#","tenant":"blue","isolation":"strict""#,
        &pod_extra,
    ));
    let red: BTreeSet<String> = running_pods(&ns, "red", 3).await.into_values().collect();
    let blue: BTreeSet<String> = running_pods(&ns, "blue", 3).await.into_values().collect();
    assert!(
        red.is_disjoint(&blue),
        "tenants share nodes: red {red:?}, blue {blue:?}"
    );
    let (ok, _, err) = common::kubectl(
        &["delete", "nodes", "-l", &format!("pool={pool}"), "--wait=false"],
        None,
    );
    assert!(ok, "{err}");
}
