//! Placement end to end: GeometricAgents create pods that the real `mom-scheduler`
//! (kube-scheduler + MOM's extender) places on kwok nodes over 2 regions × 3 zones.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use mom::cluster_layout::ZONE_LABEL;

/// MOM running, with the MomConfig `default` these tests assume (greedy forwarding; other test
/// binaries may have applied the examples' multipath config).
fn setup() {
    common::mom();
    common::apply_test_momconfig("none");
}

fn agent(ns: &str, name: &str, replicas: i32, extra_spec: &str, extra_pod_spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"interactive","replicas":{replicas}{extra_spec},
              "template":{{"spec":{{{extra_pod_spec}"containers":[{{"name":"c","image":"pause",
                 "resources":{{"requests":{{"cpu":"50m","memory":"32Mi"}}}}}}]}}}}}}}}"#
    )
}

fn strategy(ns: &str, name: &str, placement: &str, redundancy: Option<&str>) -> String {
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
async fn running_pods(ns: &common::TestNamespace, agent: &str, count: usize) -> BTreeMap<String, String> {
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

async fn node_labels(client: kube::Client) -> BTreeMap<String, BTreeMap<String, String>> {
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

#[tokio::test]
async fn a_three_tier_app_lands_with_its_talking_replicas_in_one_zone() {
    setup();
    let ns = common::TestNamespace::new("place-3tier").await;
    let n = &ns.name;
    common::apply(&agent(n, "a-db", 2, r#","peers":[{"agent":"b-api","weight":3}]"#, ""));
    common::apply(&agent(
        n,
        "b-api",
        2,
        r#","peers":[{"agent":"a-db","weight":3},{"agent":"c-web","weight":1}]"#,
        "",
    ));
    common::apply(&agent(n, "c-web", 2, r#","peers":[{"agent":"b-api","weight":1}]"#, ""));
    let labels = node_labels(ns.client()).await;
    let mut zones = BTreeSet::new();
    let mut placed = Vec::new();
    for a in ["a-db", "b-api", "c-web"] {
        for node in running_pods(&ns, a, 2).await.values() {
            zones.insert(labels[node][ZONE_LABEL].clone());
            placed.push(format!("{a}→{node}"));
        }
    }
    assert_eq!(zones.len(), 1, "the app spread over zones {zones:?}: {placed:?}");
}

#[tokio::test]
async fn avoid_listed_nodes_are_never_used_even_under_contention() {
    setup();
    let ns = common::TestNamespace::new("place-avoid").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    // Avoid every node of region-0: all 8 replicas must squeeze into region-1.
    let avoided: Vec<String> = labels
        .iter()
        .filter(|(_, l)| l.get("topology.kubernetes.io/region").map(String::as_str) == Some("region-0"))
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!avoided.is_empty());
    let list = serde_json::to_string(&avoided).unwrap();
    common::apply(&strategy(n, "avoid", &format!(r#""avoidNodes":{list}"#), None));
    common::apply(&agent(n, "busy", 8, r#","strategyRef":{"name":"avoid"}"#, ""));
    for node in running_pods(&ns, "busy", 8).await.values() {
        assert!(!avoided.contains(node), "a replica landed on avoided node {node}");
    }
}

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

#[tokio::test]
async fn n_plus_1_spreads_an_agents_replicas_over_zones() {
    setup();
    let ns = common::TestNamespace::new("place-spread").await;
    let n = &ns.name;
    common::apply(&strategy(n, "spread", "", Some("n_plus_1")));
    common::apply(&agent(n, "spread", 4, r#","strategyRef":{"name":"spread"}"#, ""));
    let labels = node_labels(ns.client()).await;
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for node in running_pods(&ns, "spread", 4).await.values() {
        *per_zone.entry(labels[node][ZONE_LABEL].clone()).or_default() += 1;
    }
    assert!(per_zone.len() >= 2, "all replicas in one zone: {per_zone:?}");
    assert!(
        per_zone.values().all(|&c| c <= 3),
        "n_plus_1 keeps one spare outside the fullest zone: {per_zone:?}"
    );
}

#[tokio::test]
async fn kubectl_scale_up_and_down_removes_the_farthest_replicas_first() {
    setup();
    let ns = common::TestNamespace::new("place-scale").await;
    let n = &ns.name;
    // quorum spreads 4 replicas over 4 zones, so they sit at different distances from the target.
    common::apply(&strategy(n, "quorum", "", Some("quorum")));
    common::apply(&agent(n, "elastic", 4, r#","strategyRef":{"name":"quorum"}"#, ""));
    let before = running_pods(&ns, "elastic", 4).await;
    let agents: Api<mom::operator::crd::GeometricAgent> = Api::namespaced(ns.client(), &ns.name);
    let target = common::eventually("the agent's position in status", Duration::from_secs(30), || {
        let agents = agents.clone();
        async move { Some(agents.get("elastic").await.ok()?.status?.position?.coordinates) }
    })
    .await;
    let (ok, _, err) = common::kubectl(
        &["scale", "geometricagent", "elastic", "-n", n, "--replicas", "2"],
        None,
    );
    assert!(ok, "{err}");
    let after = running_pods(&ns, "elastic", 2).await;
    assert!(
        after.keys().all(|p| before.contains_key(p)),
        "scale-down must not create pods"
    );
    // Recompute node positions as the operator does (same labels, same keys) and check that
    // every removed replica was at least as far from the target as every kept one.
    let labels = node_labels(ns.client()).await;
    let keys: Vec<String> = mom::operator::view::Settings::default().topology_keys;
    let keys = momconfig_keys().await.unwrap_or(keys);
    let emb = mom::placement::embed_nodes(&labels, &keys).unwrap();
    let dist = |node: &String| mom::geometry::poincare::distance(&target, &emb.positions[node], 1.0);
    let kept = after.values().map(dist).fold(0.0_f64, f64::max);
    let removed = before
        .iter()
        .filter(|(p, _)| !after.contains_key(*p))
        .map(|(_, n)| dist(n))
        .fold(f64::INFINITY, f64::min);
    assert!(
        removed + 1e-9 >= kept,
        "kept a replica at {kept} but removed one at {removed}"
    );
    let (ok, _, err) = common::kubectl(
        &["scale", "geometricagent", "elastic", "-n", n, "--replicas", "3"],
        None,
    );
    assert!(ok, "{err}");
    running_pods(&ns, "elastic", 3).await;
}

async fn momconfig_keys() -> Option<Vec<String>> {
    let api: Api<mom::operator::crd::MomConfig> = Api::all(common::client().await);
    Some(api.get("default").await.ok()?.spec.geometry.topology_keys)
}
