//! Strict tenant isolation end to end, in its own test binary: it adds (and removes) a node
//! pool, which changes the node embedding that the other placement tests reason about.

mod common;
mod placement_support;

use std::collections::BTreeSet;
use std::time::Duration;

use placement_support::*;

#[tokio::test]
async fn strict_tenants_never_share_a_node() {
    setup();
    // Tenants come from namespaces: two labelled by a cluster admin, two named by themselves.
    let red_ns = common::TestNamespace::for_tenant("place-iso-red", "red").await;
    let blue_ns = common::TestNamespace::for_tenant("place-iso-blue", "blue").await;
    let other = common::TestNamespace::new("place-iso-other").await;
    let green = common::TestNamespace::new("place-iso-green").await;
    let n = &red_ns.name;
    // A pool of its own, tainted so that no other test's pods land there, and two spare nodes
    // (another pool value) that no agent here selects.
    let pool = format!("iso-{}", &n[n.len() - 5..]);
    let spare = format!("{pool}-spare");
    let mut nodes = Vec::new();
    for (i, (zone, p)) in [
        ("a", &pool),
        ("a", &pool),
        ("b", &pool),
        ("b", &pool),
        ("a", &spare),
        ("b", &spare),
    ]
    .iter()
    .enumerate()
    {
        nodes.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("{pool}-{i}"), "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"type": "kwok", "pool": p, "topology.kubernetes.io/region": "region-iso",
                           "topology.kubernetes.io/zone": format!("region-iso{zone}"),
                           "kubernetes.io/hostname": format!("{pool}-{i}")}},
            "spec": {"taints": [{"key": "pool", "value": p, "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
        }));
    }
    common::apply(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": nodes}).to_string());
    let pod_extra = format!(
        r#""nodeSelector":{{"pool":"{pool}"}},"tolerations":[{{"key":"pool","operator":"Equal","value":"{pool}","effect":"NoSchedule"}}],"#
    );
    // spec.tenant may repeat the namespace's tenant, or be left out.
    common::apply(&agent(
        &red_ns.name,
        "red",
        3,
        r#","tenant":"red","isolation":"strict""#,
        &pod_extra,
    ));
    common::apply(&agent(&blue_ns.name, "blue", 3, r#","isolation":"strict""#, &pod_extra));
    // An agent naming a tenant its namespace does not belong to is not acted on.
    common::apply(&agent(
        &other.name,
        "claims-red",
        2,
        r#","tenant":"red","isolation":"strict""#,
        &pod_extra,
    ));
    let red: BTreeSet<String> = running_pods(&red_ns, "red", 3).await.into_values().collect();
    let blue: BTreeSet<String> = running_pods(&blue_ns, "blue", 3).await.into_values().collect();
    assert!(
        red.is_disjoint(&blue),
        "tenants share nodes: red {red:?}, blue {blue:?}"
    );

    let condition = common::eventually(
        "claims-red refused with TenantMismatch",
        Duration::from_secs(60),
        || async {
            let (ok, out, _) = common::kubectl(
                &["get", "geometricagent", "claims-red", "-n", &other.name, "-o",
                  "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason} {.status.conditions[?(@.type==\"Ready\")].message}"],
                None,
            );
            (ok && out.starts_with("TenantMismatch")).then_some(out)
        },
    )
    .await;
    assert!(
        condition.contains("spec.tenant") && condition.contains(&other.name),
        "the condition names the field and the namespace: {condition}"
    );
    let (ok, pods, err) = common::kubectl(
        &[
            "get",
            "pods",
            "-n",
            &other.name,
            "-l",
            "mom.hypersync.io/agent=claims-red",
            "-o",
            "name",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(pods.trim().is_empty(), "a refused agent got pods: {pods}");

    // A pod MOM did not create that claims strict isolation (and another tenant's label) on a
    // spare node grants nothing: a pod of another tenant still lands beside it.
    let pinned = |ns: &str, name: &str, node: &str, labels: serde_json::Value| {
        let node_pool = if node.ends_with("-4") || node.ends_with("-5") {
            &spare
        } else {
            &pool
        };
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"schedulerName": "mom-scheduler",
                     "nodeSelector": {"kubernetes.io/hostname": node},
                     "tolerations": [{"key": "pool", "operator": "Equal", "value": node_pool, "effect": "NoSchedule"}],
                     "containers": [{"name": "c", "image": "pause",
                                     "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]}
        })
        .to_string()
    };
    let spare_node = format!("{pool}-4");
    common::apply(&pinned(
        &other.name,
        "forged",
        &spare_node,
        serde_json::json!({"mom.hypersync.io/tenant": "blue", "mom.hypersync.io/isolation": "strict",
                           "mom.hypersync.io/agent": "blue"}),
    ));
    scheduled_on(&other.name, "forged", &spare_node).await;
    common::apply(&pinned(
        &green.name,
        "beside-forged",
        &spare_node,
        serde_json::json!({}),
    ));
    scheduled_on(&green.name, "beside-forged", &spare_node).await;

    // Positive control: next to a pod of a strict agent, the same pod is refused by the filter.
    let red_node = red.iter().next().expect("a red node").clone();
    common::apply(&pinned(&green.name, "beside-red", &red_node, serde_json::json!({})));
    let refused = common::eventually(
        "beside-red unschedulable for isolation",
        Duration::from_secs(60),
        || async {
            let (ok, out, _) = common::kubectl(
                &[
                    "get",
                    "pod",
                    "beside-red",
                    "-n",
                    &green.name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
                ],
                None,
            );
            (ok && out.contains("isolation")).then_some(out)
        },
    )
    .await;
    println!("refused beside a strict agent's pod: {refused}");

    let (ok, _, err) = common::kubectl(
        &[
            "delete",
            "nodes",
            "-l",
            &format!("pool in ({pool},{spare})"),
            "--wait=false",
        ],
        None,
    );
    assert!(ok, "{err}");
}

/// Waits until pod `ns/name` is bound to `node`.
async fn scheduled_on(ns: &str, name: &str, node: &str) {
    common::eventually(
        &format!("{ns}/{name} bound to {node}"),
        Duration::from_secs(60),
        || async {
            let (ok, out, _) =
                common::kubectl(&["get", "pod", name, "-n", ns, "-o", "jsonpath={.spec.nodeName}"], None);
            (ok && out.trim() == node).then_some(())
        },
    )
    .await;
}
