//! Placement end to end: GeometricAgents create pods that the real `mom-scheduler`
//! (kube-scheduler + MOM's extender) places on kwok nodes over 2 regions × 3 zones.

mod common;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::api::Api;
use mom::labels::ZONE_LABEL;

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
    // The target the operator will scale down by: its position once all 4 replicas are placed
    // and ready (computed from them); an earlier status may still hold the pre-placement home.
    let target = common::eventually(
        "the agent's position with 4 ready replicas",
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            async move {
                let status = agents.get("elastic").await.ok()?.status?;
                (status.ready_replicas == 4).then_some(status.position?.coordinates)
            }
        },
    )
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
    let emb = mom::placement::embed_nodes(&labels, &keys, 2).unwrap();
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
