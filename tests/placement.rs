//! Placement end to end: GeometricAgents create pods that the real `mom-scheduler`
//! (kube-scheduler + MOM's extender) places on kwok nodes over 2 regions × 3 zones.

mod common;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mom::labels::{REGION_LABEL, ZONE_LABEL};

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

/// CPU one `busy` replica requests: a kwok node (8 CPU) holds one, so region-1's nodes hold
/// fewer replicas than the agent has.
const BIG_CPU: &str = "5";

#[tokio::test]
async fn avoid_listed_nodes_are_never_used_even_when_the_other_nodes_are_full() {
    setup();
    let ns = common::TestNamespace::new("place-avoid").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    let region = |node: &String| labels[node].get(REGION_LABEL).cloned().unwrap_or_default();
    // Avoid every node of region-0; region-1 has room for one 5-CPU replica per node, fewer
    // than the 8 replicas: the rest must wait rather than use an avoided node.
    let avoided: Vec<String> = labels.keys().filter(|n| region(n) == "region-0").cloned().collect();
    let room = labels.keys().filter(|n| region(n) == "region-1").count();
    assert!(!avoided.is_empty() && room < 8, "{labels:?}");
    let list = serde_json::to_string(&avoided).unwrap();
    common::apply(&strategy(n, "avoid", &format!(r#""avoidNodes":{list}"#), None));
    common::apply(&agent_requesting(
        n,
        "busy",
        8,
        BIG_CPU,
        r#","strategyRef":{"name":"avoid"}"#,
        "",
    ));
    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    let busy = ListParams::default().labels("mom.hypersync.io/agent=busy");
    // Wait until every replica is either bound or judged unschedulable by the scheduler (its
    // PodScheduled condition False, reason Unschedulable): every one has been tried.
    let (bound, waiting) = common::eventually(
        "every busy replica bound or unschedulable",
        Duration::from_secs(120),
        || {
            let (pods, busy) = (pods.clone(), busy.clone());
            async move {
                let list = pods.list(&busy).await.ok()?.items;
                let mut bound = Vec::new();
                let mut waiting = Vec::new();
                for p in &list {
                    if let Some(node) = p.spec.as_ref()?.node_name.clone() {
                        bound.push(node);
                    } else if unschedulable(p) {
                        waiting.push(p.metadata.name.clone()?);
                    } else {
                        return None;
                    }
                }
                (list.len() == 8).then_some((bound, waiting))
            }
        },
    )
    .await;
    for node in &bound {
        assert!(!avoided.contains(node), "a replica landed on avoided node {node}");
    }
    assert!(
        !waiting.is_empty(),
        "all 8 replicas fitted outside the avoided nodes: no contention to test ({bound:?})"
    );
    // Positive control: the avoided nodes had room. The same replica without the avoid-list
    // (another agent, no strategy) is placed, and only region-0 can take it.
    // (In a namespace of its own: a strategy without a selector applies to every agent of its
    // namespace.)
    let free = common::TestNamespace::new("place-avoid-control").await;
    common::apply(&agent_requesting(&free.name, "control", 1, BIG_CPU, "", ""));
    let control = running_pods(&free, "control", 1).await;
    let node = control.values().next().unwrap();
    assert!(
        avoided.contains(node),
        "the control replica landed on {node}, outside region-0: region-1 was not full"
    );
    // Still: nothing of `busy` moved onto an avoided node meanwhile.
    for p in pods.list(&busy).await.unwrap().items {
        if let Some(node) = p.spec.and_then(|s| s.node_name) {
            assert!(!avoided.contains(&node), "a replica landed on avoided node {node}");
        }
    }
    println!(
        "busy: {} bound in region-1, {} unschedulable; control on {node}",
        bound.len(),
        waiting.len()
    );
    // The twin's snapshot of the cluster carries the strategy's avoid-list on the agent.
    let twin = common::twin_snapshot(n);
    let agent = twin["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == format!("{n}/busy"))
        .unwrap_or_else(|| panic!("no busy agent in the twin snapshot: {}", twin["agents"]));
    let mut listed: Vec<String> = serde_json::from_value(agent["avoidNodes"].clone()).unwrap();
    let mut expected = avoided.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "the twin agent's avoidNodes");
}

/// Whether the scheduler has tried `pod` and found no node for it.
fn unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
}

/// What each redundancy rule asks for an agent of 4 replicas over the test cluster's 6 zones
/// (`placement::redundancy::plan`): (rule, pods in all, most per zone, zones it survives losing).
/// `none` is the positive control: without a rule the locality pull puts all 4 in one zone.
const RULES: [(&str, usize, usize, usize); 4] = [
    ("none", 4, 4, 0),
    ("n_plus_1", 5, 1, 1),
    ("n_plus_2", 6, 1, 2),
    ("quorum", 4, 1, 0),
];

#[tokio::test]
async fn each_redundancy_rule_adds_its_spares_and_caps_the_zone_that_data_locality_pulls_replicas_into() {
    setup();
    let ns = common::TestNamespace::new("place-spread").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    let zone = |node: &String| labels[node][ZONE_LABEL].clone();
    let zones: BTreeSet<String> = labels.values().map(|l| l[ZONE_LABEL].clone()).collect();
    assert_eq!(zones.len(), 6, "the rules' numbers below are for 6 zones: {zones:?}");
    // Preferred data locality on one zone's nodes: a data node outscores every other node
    // whenever it is feasible, so without a cap all replicas of each agent would land there
    // (the zone's 2 nodes have room for all of them). The agents differ only in the redundancy
    // rule: the rule, not the scores, decides how many pods run and how many share that zone.
    let pulled = labels.values().next().unwrap()[ZONE_LABEL].clone();
    for (rule, ..) in RULES {
        let name = rule.replace('_', "-");
        common::apply(&strategy(
            n,
            &name,
            &format!(
                r#""locality":{{"mode":"preferred","dataNodes":{{"matchLabels":{{"{ZONE_LABEL}":"{pulled}"}}}}}}"#
            ),
            Some(rule),
        ));
        common::apply(&agent(
            n,
            &name,
            4,
            &format!(r#","strategyRef":{{"name":"{name}"}}"#),
            "",
        ));
    }
    let agents: Api<mom::operator::crd::GeometricAgent> = Api::namespaced(ns.client(), &ns.name);
    for (rule, total, cap, survives) in RULES {
        let name = rule.replace('_', "-");
        let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
        for node in running_pods(&ns, &name, total).await.values() {
            *per_zone.entry(zone(node)).or_default() += 1;
        }
        println!("{rule}: {total} pods, {per_zone:?} (pulled into {pulled})");
        assert_eq!(
            per_zone.get(&pulled).copied(),
            Some(cap),
            "{rule} allows {cap} of {total} replicas in one zone; locality pulls them into {pulled}: {per_zone:?}"
        );
        assert!(
            per_zone.values().all(|&c| c <= cap),
            "{rule} allows at most {cap} per zone: {per_zone:?}"
        );
        // The promise itself: losing the `survives` fullest zones leaves the 4 demanded.
        let mut sizes: Vec<usize> = per_zone.values().copied().collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let lost: usize = sizes.iter().take(survives).sum();
        assert!(
            total - lost >= 4,
            "{rule}: losing the {survives} fullest zone(s) of {per_zone:?} leaves {}",
            total - lost
        );
        if rule == "quorum" {
            assert!(
                2 * (total - sizes[0]) > total,
                "quorum: losing the fullest zone of {per_zone:?} leaves no majority"
            );
        }
        let spares = common::eventually(
            &format!("{name}'s status to report its spares"),
            Duration::from_secs(60),
            || {
                let agents = agents.clone();
                let name = name.clone();
                async move { agents.get(&name).await.ok()?.status?.spare_replicas }
            },
        )
        .await;
        assert_eq!(spares as usize, total - 4, "{rule}: status.spareReplicas");
    }
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
