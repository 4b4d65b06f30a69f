//! Strategy placement fields on the real control plane (kube-scheduler `mom-scheduler` + MOM's
//! extender, kwok nodes over 2 regions × 3 zones × 2 nodes of 8 CPU): `locality` required and
//! preferred, `preferredRegions` in order, and `geometricAffinity.coordinates` checked against
//! the dimension nodes are embedded in. Each test fails when its field is ignored.
//!
//! The placement tests fill nodes with 5-CPU pods (one fits per 8-CPU node), so they take turns
//! ([`SERIAL`]) and each removes its pods before the next starts.

mod common;
mod placement_support;

use placement_support::*;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use mom::labels::REGION_LABEL;
use mom::operator::crd::{GeometricAgent, OrchestrationStrategy};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The 3 nodes `…-n1` of region-1's three zones: the data nodes of the locality tests. Without
/// locality, replicas go near the agent's target (the node with the most free CPU, ties by
/// name: a `…-n0` node), never to exactly these.
async fn data_nodes(client: kube::Client) -> Vec<String> {
    let labels = node_labels(client).await;
    let nodes: Vec<String> = labels
        .iter()
        .filter(|(name, l)| l.get(REGION_LABEL).map(String::as_str) == Some("region-1") && name.ends_with("-n1"))
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(nodes.len(), 3, "expected one -n1 node per zone of region-1: {labels:?}");
    nodes
}

/// Deletes every agent of the namespace and waits until their pods are gone, so the room they
/// held is free for the next test.
async fn remove_agents(ns: &common::TestNamespace) {
    let (ok, _, err) = common::kubectl(&["delete", "geometricagents", "--all", "-n", &ns.name], None);
    assert!(ok, "{err}");
    let (ok, _, err) = common::kubectl(
        &["delete", "pods", "--all", "-n", &ns.name, "--grace-period=0", "--force"],
        None,
    );
    assert!(ok, "{err}");
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    common::eventually("the test's pods to be gone", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
}

/// The pods of `agent` as name → node (None while pending), once `count` exist.
async fn pods_of(ns: &common::TestNamespace, agent: &str, count: usize) -> BTreeMap<String, Option<String>> {
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let selector = format!("mom.hypersync.io/agent={agent}");
    common::eventually(&format!("{count} pods of {agent}"), Duration::from_secs(60), || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
            let out: BTreeMap<String, Option<String>> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| Some((p.metadata.name?, p.spec.and_then(|s| s.node_name))))
                .collect();
            (out.len() == count).then_some(out)
        }
    })
    .await
}

/// The message of a FailedScheduling event of `pod` that contains `needle`.
async fn failed_scheduling(ns: &common::TestNamespace, pod: &str, needle: &str) -> String {
    let events: Api<Event> = Api::namespaced(ns.client(), &ns.name);
    let field = format!("involvedObject.name={pod}");
    common::eventually(
        &format!("a FailedScheduling event of {pod} containing {needle:?}"),
        Duration::from_secs(90),
        || {
            let events = events.clone();
            let field = field.clone();
            async move {
                events
                    .list(&ListParams::default().fields(&field))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                    .filter_map(|e| e.message)
                    .find(|m| m.contains(needle))
            }
        },
    )
    .await
}

fn locality_strategy(ns: &str, name: &str, key: &str, mode: &str) -> String {
    strategy(
        ns,
        name,
        &format!(r#""locality":{{"dataNodes":{{"matchLabels":{{"{key}":"true"}}}},"mode":"{mode}"}}"#),
        None,
    )
}

#[tokio::test]
async fn required_locality_binds_only_to_data_nodes_and_leaves_a_pod_pending_naming_the_strategy() {
    setup();
    let _turn = SERIAL.lock().await;
    let ns = common::TestNamespace::new("loc-req").await;
    let n = &ns.name;
    let data = data_nodes(ns.client()).await;
    let key = format!("data.mom-test.io/{n}");
    let _label = NodeLabel::set(&key, &data);
    common::apply(&locality_strategy(n, "near-data", &key, "required"));
    // Three small replicas, one per zone (n_plus_1): all on data nodes.
    common::apply(&agent(n, "reader", 3, r#","strategyRef":{"name":"near-data"}"#, ""));
    let placed = running_pods(&ns, "reader", 3).await;
    for node in placed.values() {
        assert!(
            data.contains(node),
            "a replica of reader landed on {node}, not a data node {data:?}"
        );
    }
    // Fill every data node with a 5-CPU pod (one fits per 8-CPU node)…
    common::apply(&agent_requesting(
        n,
        "big",
        3,
        "5",
        r#","strategyRef":{"name":"near-data"}"#,
        "",
    ));
    for node in running_pods(&ns, "big", 3).await.values() {
        assert!(data.contains(node), "a replica of big landed on {node}");
    }
    // …and one more 5-CPU pod under the same strategy has nowhere to go.
    common::apply(&agent_requesting(
        n,
        "more",
        1,
        "5",
        r#","strategyRef":{"name":"near-data"}"#,
        "",
    ));
    let pods = pods_of(&ns, "more", 1).await;
    let (pod, _) = pods.iter().next().unwrap();
    let message = failed_scheduling(&ns, pod, "spec.placement.locality").await;
    for part in [
        "spec.placement.locality (mode required)",
        &format!("OrchestrationStrategy {n}/near-data"),
        &format!("dataNodes {key}=true"),
    ] {
        assert!(message.contains(part), "{part:?} missing in: {message}");
    }
    let pods_api: Api<Pod> = Api::namespaced(ns.client(), n);
    let node = pods_api.get(pod).await.unwrap().spec.and_then(|s| s.node_name);
    assert_eq!(node, None, "the pod was bound although no data node has room");
    println!("FailedScheduling: {message}");

    // Positive control: the same pod without the strategy (another namespace) binds elsewhere.
    let free = common::TestNamespace::new("loc-req-free").await;
    common::apply(&agent_requesting(&free.name, "more", 1, "5", "", ""));
    let bound = running_pods(&free, "more", 1).await;
    assert!(bound.values().all(|node| !data.contains(node)), "{bound:?}");
    remove_agents(&free).await;
    remove_agents(&ns).await;
}

#[tokio::test]
async fn preferred_locality_wins_while_data_nodes_have_room_and_yields_when_they_are_full() {
    setup();
    let _turn = SERIAL.lock().await;
    let ns = common::TestNamespace::new("loc-pref").await;
    let n = &ns.name;
    let data = data_nodes(ns.client()).await;
    let key = format!("data.mom-test.io/{n}");
    let _label = NodeLabel::set(&key, &data);
    common::apply(&locality_strategy(n, "near-data", &key, "preferred"));
    common::apply(&agent(n, "reader", 3, r#","strategyRef":{"name":"near-data"}"#, ""));
    for node in running_pods(&ns, "reader", 3).await.values() {
        assert!(
            data.contains(node),
            "a replica of reader landed on {node}, not a data node {data:?}"
        );
    }
    common::apply(&agent_requesting(
        n,
        "big",
        3,
        "5",
        r#","strategyRef":{"name":"near-data"}"#,
        "",
    ));
    for node in running_pods(&ns, "big", 3).await.values() {
        assert!(data.contains(node), "a replica of big landed on {node}");
    }
    // Preferred, not required: with the data nodes full the next pod still binds.
    common::apply(&agent_requesting(
        n,
        "more",
        1,
        "5",
        r#","strategyRef":{"name":"near-data"}"#,
        "",
    ));
    let more = running_pods(&ns, "more", 1).await;
    assert!(more.values().all(|node| !data.contains(node)), "{more:?}");
    remove_agents(&ns).await;
}

#[tokio::test]
async fn preferred_regions_fill_the_first_listed_region_then_the_next_whatever_the_peers() {
    setup();
    let _turn = SERIAL.lock().await;
    let ns = common::TestNamespace::new("regions").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    let region_of = |node: &String| labels[node][REGION_LABEL].clone();
    // A peer in region-0 pulls the agent's target there: the region tier must still win.
    common::apply(&strategy(n, "home", r#""preferredRegions":["region-0"]"#, None));
    common::apply(&agent(n, "anchor", 1, r#","strategyRef":{"name":"home"}"#, ""));
    let anchor = running_pods(&ns, "anchor", 1).await;
    assert!(anchor.values().all(|node| region_of(node) == "region-0"), "{anchor:?}");
    // region-1 is listed first although region-0 sorts first, holds the default home and the peer.
    common::apply(&strategy(
        n,
        "regional",
        r#""preferredRegions":["region-1","region-0"]"#,
        None,
    ));
    common::apply(&agent_requesting(
        n,
        "wide",
        7,
        "5",
        r#","strategyRef":{"name":"regional"},"peers":[{"agent":"anchor","weight":5}]"#,
        "",
    ));
    let placed = running_pods(&ns, "wide", 7).await;
    let mut per_region: BTreeMap<String, usize> = BTreeMap::new();
    for node in placed.values() {
        *per_region.entry(region_of(node)).or_default() += 1;
    }
    // One 5-CPU pod fits per 8-CPU node: region-1's 6 nodes take 6, the 7th goes to region-0.
    assert_eq!(
        per_region,
        BTreeMap::from([("region-0".to_string(), 1), ("region-1".to_string(), 6)]),
        "{placed:?}"
    );
    remove_agents(&ns).await;
}

#[tokio::test]
async fn coordinates_of_the_wrong_dimension_are_reported_on_the_strategy_and_its_agent() {
    // Small pods only: no turn needed.
    setup();
    let ns = common::TestNamespace::new("coords").await;
    let n = &ns.name;
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), n);
    let strategies: Api<OrchestrationStrategy> = Api::namespaced(ns.client(), n);
    // The dimension nodes are embedded in, as the operator shows it: the length of a position.
    common::apply(&strategy(
        n,
        "right",
        r#""geometricAffinity":{"coordinates":[0.1,0.2]}"#,
        None,
    ));
    common::apply(&agent(n, "probe", 1, r#","strategyRef":{"name":"right"}"#, ""));
    let dimension = common::eventually("the probe agent's position", Duration::from_secs(60), || {
        let agents = agents.clone();
        async move { Some(agents.get("probe").await.ok()?.status?.position?.coordinates.len()) }
    })
    .await;
    let right: Vec<String> = (0..dimension).map(|i| format!("0.0{}", i + 1)).collect();
    let wrong: Vec<String> = (0..=dimension).map(|i| format!("0.0{}", i + 1)).collect();
    common::apply(&strategy(
        n,
        "right",
        &format!(r#""geometricAffinity":{{"coordinates":[{}]}}"#, right.join(",")),
        None,
    ));
    common::apply(&strategy(
        n,
        "wrong",
        &format!(r#""geometricAffinity":{{"coordinates":[{}]}}"#, wrong.join(",")),
        None,
    ));
    common::apply(&agent(n, "lost", 1, r#","strategyRef":{"name":"wrong"}"#, ""));
    let ready = |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (status, _, message) = common::eventually(
        "CoordinatesWrongDimension on strategy wrong",
        Duration::from_secs(60),
        || {
            let strategies = strategies.clone();
            async move {
                let c = ready(&strategies.get("wrong").await.ok()?.status?.conditions)?;
                (c.1 == "CoordinatesWrongDimension").then_some(c)
            }
        },
    )
    .await;
    assert_eq!(status, "False");
    for part in [
        "spec.placement.geometricAffinity.coordinates".to_string(),
        format!("has {} entries", dimension + 1),
        format!("in {dimension} dimensions"),
    ] {
        assert!(message.contains(&part), "{part:?} missing in: {message}");
    }
    let agent_message = common::eventually(
        "CoordinatesWrongDimension on agent lost",
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            async move {
                let c = ready(&agents.get("lost").await.ok()?.status?.conditions)?;
                (c.1 == "CoordinatesWrongDimension").then_some(c.2)
            }
        },
    )
    .await;
    assert!(agent_message.contains(&format!("{n}/wrong")), "{agent_message}");
    let events: Api<Event> = Api::namespaced(ns.client(), n);
    common::eventually(
        "a CoordinatesWrongDimension Warning Event",
        Duration::from_secs(60),
        || {
            let events = events.clone();
            async move {
                events
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("CoordinatesWrongDimension")
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .map(|_| ())
            }
        },
    )
    .await;
    // Positive control: the right dimension raises nothing on the strategy or its agent.
    let (status, reason, _) = common::eventually("strategy right Ready", Duration::from_secs(60), || {
        let strategies = strategies.clone();
        async move { ready(&strategies.get("right").await.ok()?.status?.conditions) }
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Reconciled"));
    let probe = agents.get("probe").await.unwrap().status.unwrap();
    assert!(
        probe.conditions.iter().all(|c| c.reason != "CoordinatesWrongDimension"),
        "{:?}",
        probe.conditions
    );
    remove_agents(&ns).await;
}

#[test]
fn coordinates_and_locality_selectors_that_can_never_work_are_rejected_at_admission() {
    common::install_crds();
    let ns = "default";
    let one = strategy(
        ns,
        "one-coordinate",
        r#""geometricAffinity":{"coordinates":[0.5]}"#,
        None,
    );
    let (ok, _, err) = common::kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&one));
    assert!(!ok, "a 1-entry coordinates list was accepted");
    assert!(err.contains("coordinates"), "{err}");
    let bad_op = strategy(
        ns,
        "bad-operator",
        r#""locality":{"dataNodes":{"matchExpressions":[{"key":"disk","operator":"Gt","values":["1"]}]}}"#,
        None,
    );
    let (ok, _, err) = common::kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&bad_op));
    assert!(!ok, "an unknown selector operator was accepted");
    assert!(
        err.contains("spec.placement.locality.dataNodes.matchExpressions: operator must be"),
        "{err}"
    );
    // Positive control: the same objects made valid are accepted.
    let two = strategy(
        ns,
        "two-coordinates",
        r#""geometricAffinity":{"coordinates":[0.1,0.2]}"#,
        None,
    );
    let in_op = strategy(
        ns,
        "in-operator",
        r#""locality":{"dataNodes":{"matchExpressions":[{"key":"disk","operator":"In","values":["ssd"]}]}}"#,
        None,
    );
    for manifest in [two, in_op] {
        let (ok, _, err) = common::kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&manifest));
        assert!(ok, "{err}\n{manifest}");
    }
}
