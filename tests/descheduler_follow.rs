//! The descheduler end to end with the whole operator (issue 10, case a): an anchor agent and a
//! dependent agent that talks to it live in region-0; the anchor's strategy is changed to
//! prefer region-1. The descheduler (on, with a short cool-off) moves the anchor's replicas
//! there, then the dependent's replicas follow their peer, and the traffic-weighted latency
//! between them falls.
//!
//! A second test flips the anchor's home back and forth (churn) and checks from the pods' own
//! creation times and the `Descheduled` Events that no pod was evicted inside its cool-off and
//! none twice.
//!
//! Latency model (documented, not measured): 0.1 ms within a zone, 1 ms within a region, 30 ms
//! across regions; each replica pair carries the same traffic.

mod common;
mod placement_support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mom::labels::{REGION_LABEL, ZONE_LABEL};
use placement_support::{agent, node_labels, running_pods, strategy};

type Labels = BTreeMap<String, BTreeMap<String, String>>;

fn pair_latency_ms(labels: &Labels, a: &str, b: &str) -> f64 {
    let get = |n: &str, k: &str| labels.get(n).and_then(|l| l.get(k)).cloned().unwrap_or_default();
    if get(a, REGION_LABEL) != get(b, REGION_LABEL) {
        30.0
    } else if get(a, ZONE_LABEL) != get(b, ZONE_LABEL) {
        1.0
    } else {
        0.1
    }
}

/// Mean latency over every (dependent replica, anchor replica) pair.
fn traffic_weighted_latency(labels: &Labels, dep: &[String], anchor: &[String]) -> f64 {
    let mut sum = 0.0;
    for a in dep {
        for b in anchor {
            sum += pair_latency_ms(labels, a, b);
        }
    }
    sum / (dep.len() * anchor.len()).max(1) as f64
}

/// Nodes of the live (not terminating) pods of `agent`, once `count` of them run.
async fn nodes_of(pods: &Api<Pod>, agent: &str) -> Vec<String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut nodes: Vec<String> = list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.sort();
    nodes
}

/// Seconds a replica is left alone after it was created (the descheduler's cool-off here).
const COOL_OFF_SECONDS: i64 = 5;

/// MOM with the descheduler on: 2 s ticks, a short cool-off, small gains and costs, on a
/// control plane of this binary's own (another test binary's leftovers in a shared one must not
/// be moved by this descheduler, nor get in its way).
fn start() -> &'static common::Mom {
    common::use_private_audited_control_plane();
    let dir = std::env::temp_dir().join(format!("mom-desched-follow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = dir.join("settings.json");
    std::fs::write(
        &settings,
        format!(
            r#"{{"planner":{{"coolOffSeconds":{COOL_OFF_SECONDS},"minGain":0.5,"migrationCost":0.5,
                "maxEvictionsPerAgent":2,"maxEvictionsPerNode":4}}}}"#
        ),
    )
    .unwrap();
    common::mom_with(&[
        "--deschedule",
        "--deschedule-tick-seconds",
        "2",
        "--deschedule-settings",
        settings.to_str().unwrap(),
    ])
}

#[tokio::test]
async fn when_a_peer_moves_to_another_region_its_dependants_follow_and_latency_falls() {
    start();
    common::apply_test_momconfig("none");
    let ns = common::TestNamespace::new("follow").await;
    let n = &ns.name;
    common::apply(&strategy(n, "home", r#""preferredRegions":["region-0"]"#, None));
    common::apply(&agent(n, "anchor", 2, r#","strategyRef":{"name":"home"}"#, ""));
    common::apply(&agent(n, "dep", 2, r#","peers":[{"agent":"anchor","weight":5}]"#, ""));
    running_pods(&ns, "anchor", 2).await;
    running_pods(&ns, "dep", 2).await;
    let labels = node_labels(ns.client()).await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    let region = |node: &String| labels[node][REGION_LABEL].clone();
    let before_anchor = nodes_of(&pods, "anchor").await;
    assert!(
        before_anchor.iter().all(|node| region(node) == "region-0"),
        "the anchor did not start in its preferred region: {before_anchor:?}"
    );

    // The pods in region-0 before the change, each of which must be moved by the descheduler.
    let first_pods: Vec<String> = pods
        .list(&ListParams::default().labels("mom.hypersync.io/agent in (anchor,dep)"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(first_pods.len(), 4, "{first_pods:?}");

    // The anchor's home moves to region-1.
    common::apply(&strategy(n, "home", r#""preferredRegions":["region-1"]"#, None));
    let moved = common::eventually(
        "the anchor's replicas to move to region-1",
        Duration::from_secs(180),
        || {
            let pods = pods.clone();
            let labels = labels.clone();
            async move {
                let anchor = nodes_of(&pods, "anchor").await;
                let dep = nodes_of(&pods, "dep").await;
                (anchor.len() == 2 && anchor.iter().all(|node| labels[node][REGION_LABEL] == "region-1"))
                    .then(|| traffic_weighted_latency(&labels, &dep, &anchor))
            }
        },
    )
    .await;
    let after = common::eventually(
        "the dependent's replicas to follow into region-1",
        Duration::from_secs(180),
        || {
            let pods = pods.clone();
            let labels = labels.clone();
            async move {
                let anchor = nodes_of(&pods, "anchor").await;
                let dep = nodes_of(&pods, "dep").await;
                (dep.len() == 2 && dep.iter().all(|node| labels[node][REGION_LABEL] == "region-1"))
                    .then(|| traffic_weighted_latency(&labels, &dep, &anchor))
            }
        },
    )
    .await;
    println!(
        "traffic-weighted latency: {moved:.2} ms when the anchor had moved, {after:.2} ms after the dependants followed"
    );
    assert!(after < moved, "latency did not fall: {moved} → {after}");
    // It was the descheduler that moved them (the agent controller never moves a replica):
    // every pod of the start has a `Descheduled` Event in this namespace (the other test in
    // this binary works in its own namespace, so nothing else here can be counted).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ns.client(), n);
    let descheduled: std::collections::BTreeSet<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Descheduled"))
        .filter_map(|e| e.regarding?.name)
        .collect();
    for pod in &first_pods {
        assert!(
            descheduled.contains(pod),
            "{pod} left region-0 without a Descheduled Event: {descheduled:?}"
        );
    }
    println!("descheduled: {descheduled:?}");
}

#[tokio::test]
async fn with_churn_no_pod_is_evicted_inside_its_cool_off_or_twice() {
    start();
    common::apply_test_momconfig("none");
    let ns = common::TestNamespace::new("churn").await;
    let n = &ns.name;
    common::apply(&strategy(n, "home", r#""preferredRegions":["region-0"]"#, None));
    common::apply(&agent(n, "anchor", 2, r#","strategyRef":{"name":"home"}"#, ""));
    common::apply(&agent(n, "dep", 2, r#","peers":[{"agent":"anchor","weight":5}]"#, ""));
    running_pods(&ns, "anchor", 2).await;
    running_pods(&ns, "dep", 2).await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    // Every pod ever seen, with its creation time.
    let mut created: BTreeMap<String, k8s_openapi::jiff::Timestamp> = BTreeMap::new();
    let regions = ["region-1", "region-0", "region-1", "region-0"];
    for (flip, region) in regions.iter().enumerate() {
        common::apply(&strategy(
            n,
            "home",
            &format!(r#""preferredRegions":["{region}"]"#),
            None,
        ));
        // Watch the pods for a while after each flip (the descheduler ticks every 2 s).
        for _ in 0..24 {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    if let (Some(name), Some(t)) = (p.metadata.name.clone(), p.metadata.creation_timestamp.clone()) {
                        created.entry(name).or_insert(t.0);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("after flip {flip} to {region}: {} pods seen so far", created.len());
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ns.client(), n);
    let descheduled: Vec<(String, k8s_openapi::jiff::Timestamp)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Descheduled"))
        .filter_map(|e| {
            let pod = e.regarding.as_ref()?.name.clone()?;
            let at = e.event_time.as_ref().map(|t| t.0)?;
            Some((pod, at))
        })
        .collect();
    assert!(
        descheduled.len() >= 4,
        "the churn moved too little to say anything: {descheduled:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for (pod, at) in &descheduled {
        assert!(seen.insert(pod.clone()), "{pod} was evicted twice");
        let born = created
            .get(pod)
            .unwrap_or_else(|| panic!("evicted pod {pod} was never seen"));
        let age = at.duration_since(*born).as_secs_f64();
        assert!(
            age >= COOL_OFF_SECONDS as f64,
            "{pod} was evicted {age:.1} s after its creation, inside the {COOL_OFF_SECONDS} s cool-off"
        );
    }
    println!(
        "{} evictions over {} flips, none inside the cool-off or repeated",
        descheduled.len(),
        regions.len()
    );
}
