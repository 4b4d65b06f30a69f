//! Concurrent binds under a redundancy cap, end to end: the pods of one agent are released to
//! the real `mom-scheduler` together while each has a single candidate node, so kube-scheduler
//! skips prioritize and binds asynchronously; the extender must count each pod from its filter
//! on, or the next pod takes the same failure domain's last slot and its bind is refused.

mod common;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use mom::labels::ZONE_LABEL;

const GATE: &str = "mom.test/hold";

#[tokio::test]
async fn pods_released_together_with_one_candidate_node_each_are_bound_without_a_refused_bind() {
    setup();
    let ns = common::TestNamespace::new("place-burst").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    // One node per zone stays usable (the first by name); the others are avoided. Under
    // `n_plus_1` (at most one replica per zone) the extender's filter then passes one node.
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    for (node, l) in &labels {
        if let Some(zone) = l.get(ZONE_LABEL) {
            kept.entry(zone.clone()).or_insert_with(|| node.clone());
        }
    }
    assert_eq!(kept.len(), 6, "the test cluster has 6 zones: {labels:?}");
    let usable: BTreeSet<&String> = kept.values().collect();
    let avoided: Vec<&String> = labels.keys().filter(|node| !usable.contains(node)).collect();
    assert!(
        !avoided.is_empty(),
        "every zone has one node: nothing to narrow ({labels:?})"
    );
    common::apply(&strategy(
        n,
        "burst",
        &format!(r#""avoidNodes":{}"#, serde_json::to_string(&avoided).unwrap()),
        Some("n_plus_1"),
    ));
    // 4 replicas + 1 spare; the pods are created held by a scheduling gate.
    common::apply(&agent(
        n,
        "burst",
        4,
        r#","strategyRef":{"name":"burst"}"#,
        &format!(r#""schedulingGates":[{{"name":"{GATE}"}}],"#),
    ));
    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    let selector = ListParams::default().labels("mom.hypersync.io/agent=burst");
    let gated: Vec<String> = common::eventually("5 gated pods of burst", Duration::from_secs(60), || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let names: Vec<String> = pods
                .list(&selector)
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            (names.len() == 5).then_some(names)
        }
    })
    .await;
    // Release them together: the scheduler queues all five before the first bind lands.
    let ungate = serde_json::json!({"spec": {"schedulingGates": null}});
    let releases = gated.iter().map(|name| {
        let (pods, ungate) = (pods.clone(), ungate.clone());
        async move { pods.patch(name, &PatchParams::default(), &Patch::Merge(&ungate)).await }
    });
    for released in futures::future::join_all(releases).await {
        released.expect("removing the scheduling gate");
    }
    let placed = running_pods(&ns, "burst", 5).await;
    let mut per_zone: BTreeMap<&String, usize> = BTreeMap::new();
    for node in placed.values() {
        assert!(
            usable.contains(node),
            "a replica landed on avoided node {node}: {placed:?}"
        );
        *per_zone.entry(&labels[node][ZONE_LABEL]).or_default() += 1;
    }
    assert!(
        per_zone.values().all(|&c| c == 1),
        "n_plus_1 allows one replica per zone: {per_zone:?}"
    );

    // The scheduler's events of these pods: a Scheduled event for each (the positive control:
    // the scheduler's events are seen), and no bind the extender refused.
    let events: Api<Event> = Api::namespaced(ns.client(), n);
    let all = common::eventually("a Scheduled event of each pod", Duration::from_secs(60), || {
        let events = events.clone();
        let gated = gated.clone();
        async move {
            let items = events.list(&ListParams::default()).await.ok()?.items;
            let scheduled = items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("Scheduled"))
                .filter_map(|e| e.involved_object.name.as_ref())
                .collect::<BTreeSet<_>>();
            gated.iter().all(|p| scheduled.contains(p)).then_some(items)
        }
    })
    .await;
    let refused: Vec<String> = all
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .filter_map(|e| e.message.clone())
        .filter(|m| m.contains("no longer fits"))
        .collect();
    println!("burst: {per_zone:?}, refused binds: {}", refused.len());
    assert!(refused.is_empty(), "binds refused by the extender: {refused:#?}");
}
