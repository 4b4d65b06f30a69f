//! A zone outage on the real control plane, made faithfully by `tests/cluster/fail-domain.sh`:
//! the zone's kubelets (kwok) stop, so its node Leases go stale while the nodes stay in the API
//! and still look Ready for the node lifecycle controller's grace period. MOM sees the silent
//! heartbeats, replaces every replica stranded there with one outside the zone (the extender
//! keeps new pods off the silent nodes), and once the replacements are Ready deletes the
//! stranded pods (receipt `agent.stranded` first, Event `ReplacedStranded`). When the zone comes
//! back its kubelets finish those deletions: each agent has exactly its replicas again, nothing
//! duplicated, and the receipt chain verifies.
//!
//! Prints the measured recovery time (failure → every agent has its replicas Ready outside the
//! zone) and when the node lifecycle controller marked the zone NotReady, for comparison; the
//! numbers are reported, not asserted (`make bench-failover` measures them properly).
//!
//! The same for a whole region (its three zones).
//!
//! Also: a spot node that gets a termination notice (the AWS Node Termination Handler's taint)
//! is drained the same way, replacements first, while a node with an unrelated taint keeps its
//! pods; and a replica whose replacement cannot become Ready is deleted anyway one grace period
//! before the deadline its node's notice carries.
//!
//! (A replacement bound to a node that fails before it is Ready: `tests/zone_failure_late.rs`.)
//!
//! Runs on a control plane of its own: the outage would disturb other tests' pods.

mod common;
mod placement_support;
mod zone_failure_support;

use placement_support::*;
use zone_failure_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams};
use mom::labels::{REGION_LABEL, ZONE_LABEL};
use mom::operator::crd::Receipt;

const AGENTS: [(&str, usize); 2] = [("web", 4), ("api", 3)];

/// The tests of this binary take turns: an outage or a drained node moves the other's pods.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_failed_zones_replicas_are_replaced_outside_it_before_the_node_grace_period_and_nothing_is_duplicated_on_return()
 {
    outage(ZONE_LABEL, "--zone").await;
}

#[tokio::test]
async fn a_failed_regions_replicas_are_replaced_in_the_other_region_before_the_node_grace_period_and_nothing_is_duplicated_on_return()
 {
    outage(REGION_LABEL, "--region").await;
}

/// Fails the domain (values of the label `key`, `fail-domain.sh flag`) running most of the
/// agents' replicas, checks the recovery and the return.
async fn outage(key: &'static str, flag: &str) {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("domain-failure").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let labels = node_labels(client.clone()).await;
    let zone_of = |node: &str| labels.get(node).and_then(|l| l.get(key)).cloned();
    for (agent_name, replicas) in AGENTS {
        common::apply(&agent(n, agent_name, replicas as i32, "", ""));
    }
    for (agent_name, replicas) in AGENTS {
        common::eventually(
            &format!("{agent_name}'s {replicas} replicas Ready"),
            Duration::from_secs(90),
            || {
                let pods = pods.clone();
                async move {
                    let p = pods_of(&pods, agent_name).await;
                    (p.values().filter(|(node, ready, _)| node.is_some() && *ready).count() == replicas).then_some(())
                }
            },
        )
        .await;
    }
    // The zone with the most of the agents' replicas goes dark.
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut before: BTreeMap<&str, PodStates> = BTreeMap::new();
    for (agent_name, _) in AGENTS {
        let p = pods_of(&pods, agent_name).await;
        for (node, ..) in p.values() {
            if let Some(zone) = node.as_deref().and_then(zone_of) {
                *per_zone.entry(zone).or_default() += 1;
            }
        }
        before.insert(agent_name, p);
    }
    let zone = per_zone
        .iter()
        .max_by_key(|(z, c)| (**c, std::cmp::Reverse((*z).clone())))
        .map(|(z, _)| z.clone())
        .expect("the agents have pods");
    let in_zone = |node: &Option<String>| node.as_deref().and_then(zone_of).as_deref() == Some(zone.as_str());
    let stranded: BTreeSet<String> = before
        .values()
        .flat_map(|p| {
            p.iter()
                .filter(|(_, (node, ..))| in_zone(node))
                .map(|(name, _)| name.clone())
        })
        .collect();
    println!("failing {zone}, which runs {stranded:?}");
    assert!(!stranded.is_empty());
    let failed_at = fail_domain(&[flag, &zone]);

    // Recovery: every agent has its replicas Ready outside the zone. Meanwhile, note when the
    // node lifecycle controller marks the zone's nodes NotReady.
    let nodes: Api<Node> = Api::all(client.clone());
    let zone_nodes: BTreeSet<String> = labels
        .iter()
        .filter(|(_, l)| l.get(key) == Some(&zone))
        .map(|(n, _)| n.clone())
        .collect();
    let not_ready_at = std::cell::Cell::new(None);
    // What the last check saw, per agent: its pods as (node, ready, deleting).
    let last_seen = std::cell::RefCell::new(String::new());
    let recovered_at = common::eventually_explained(
        "every agent's replicas Ready outside the failed zone",
        // ~17-30 s alone; one loaded CI run (2026-12-05) needed more than 150 s for the region.
        Duration::from_secs(300),
        || {
            let pods = pods.clone();
            let nodes = nodes.clone();
            let zone_nodes = zone_nodes.clone();
            let in_zone = &in_zone;
            let not_ready_at = &not_ready_at;
            let last_seen = &last_seen;
            async move {
                if not_ready_at.get().is_none()
                    && let Ok(list) = nodes.list(&ListParams::default()).await
                    && list
                        .items
                        .iter()
                        .filter(|n| zone_nodes.contains(n.metadata.name.as_deref().unwrap_or("")))
                        .all(node_not_ready)
                {
                    not_ready_at.set(Some(now_ms()));
                }
                let mut seen = Vec::new();
                let mut short = false;
                for (agent_name, replicas) in AGENTS {
                    let p = pods_of(&pods, agent_name).await;
                    let outside = p
                        .values()
                        .filter(|(node, ready, deleting)| node.is_some() && !in_zone(node) && *ready && !deleting)
                        .count();
                    seen.push(format!("{agent_name}: {outside}/{replicas} Ready outside, pods {p:?}"));
                    short |= outside < replicas;
                }
                *last_seen.borrow_mut() = seen.join("; ");
                (!short).then(now_ms)
            }
        },
        || last_seen.borrow().clone(),
    )
    .await;
    let rto = (recovered_at.saturating_sub(failed_at)) as f64 / 1000.0;
    println!(
        "{key}={zone}: replicas Ready outside it {rto:.1} s after the failure; the node lifecycle controller marked it NotReady {}",
        not_ready_at.get().map_or("not yet".to_string(), |t| format!(
            "after {:.1} s",
            t.saturating_sub(failed_at) as f64 / 1000.0
        ))
    );
    // MOM acted on the silent heartbeats, not on the node lifecycle controller's verdict.
    assert!(
        not_ready_at.get().is_none_or(|t| t > recovered_at),
        "the zone was marked NotReady before its replicas were replaced: MOM waited for the grace period"
    );
    // No pod made after the failure went into the failed zone.
    for (agent_name, _) in AGENTS {
        for (name, (node, ..)) in pods_of(&pods, agent_name).await {
            if !before[agent_name].contains_key(&name) {
                assert!(
                    !in_zone(&node),
                    "{name}, made after the failure, was placed in {zone} ({node:?})"
                );
            }
        }
    }
    // The stranded pods are retired once replaced, the receipt first.
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let retired: BTreeSet<String> = common::eventually(
        "agent.stranded receipts retiring every stranded pod",
        Duration::from_secs(60),
        || {
            let receipts = receipts.clone();
            let stranded = stranded.clone();
            async move {
                let retired: BTreeSet<String> = receipts
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .iter()
                    .filter(|r| r.spec.decision["kind"] == "agent.stranded")
                    .flat_map(|r| r.spec.decision["retire"].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                stranded.is_subset(&retired).then_some(retired)
            }
        },
    )
    .await;
    assert_eq!(retired, stranded, "only the stranded pods are retired");
    let events: Api<Event> = Api::namespaced(client.clone(), n);
    common::eventually("a ReplacedStranded Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ReplacedStranded"))
        }
    })
    .await;

    // The zone returns: its kubelets finish the deletions; exactly the replicas remain.
    fail_domain(&["--restore"]);
    for (agent_name, replicas) in AGENTS {
        let left = common::eventually(
            &format!("{agent_name} back to exactly {replicas} pods, none Terminating"),
            Duration::from_secs(90),
            || {
                let pods = pods.clone();
                async move {
                    let p = pods_of(&pods, agent_name).await;
                    (p.len() == replicas && p.values().all(|(_, ready, deleting)| *ready && !deleting)).then_some(p)
                }
            },
        )
        .await;
        assert!(
            left.keys().all(|name| !stranded.contains(name)),
            "{agent_name}: a stranded pod survived the return: {left:?}"
        );
    }
    let (ok, report) = common::verify_cluster_with_published_keys(&client).await;
    assert!(ok, "mom verify after the outage: {report}");
    retire(ns);
}

#[tokio::test]
async fn a_spot_node_with_a_termination_notice_is_drained_replacements_first_and_an_unrelated_taint_changes_nothing() {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("spot-notice").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let replicas = 6;
    common::apply(&agent(n, "batch", replicas as i32, "", ""));
    let placed = common::eventually("6 replicas Ready", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "batch").await;
            (p.values().filter(|(node, ready, _)| node.is_some() && *ready).count() == replicas).then_some(p)
        }
    })
    .await;
    // The node holding most of them gets the taints.
    let mut by_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (node, ..)) in &placed {
        by_node
            .entry(node.clone().unwrap_or_default())
            .or_default()
            .insert(name.clone());
    }
    let (noticed, doomed) = by_node
        .iter()
        .max_by_key(|(node, pods)| (pods.len(), std::cmp::Reverse((*node).clone())))
        .map(|(n, p)| (n.clone(), p.clone()))
        .unwrap();
    println!("taints on {noticed}, which runs {doomed:?}");
    // Control first: an unrelated NoSchedule taint drains nothing. Barrier: one more replica,
    // reconciled (status.observedGeneration) after the taint, and Ready.
    taint(&noticed, "example.com/maintenance-window", Some("tonight"));
    common::apply(&agent(n, "batch", replicas as i32 + 1, "", ""));
    let agents: Api<mom::operator::crd::GeometricAgent> = Api::namespaced(client.clone(), n);
    common::eventually("the 7th replica Ready and reconciled", Duration::from_secs(60), || {
        let (pods, agents) = (pods.clone(), agents.clone());
        async move {
            let a = agents.get("batch").await.ok()?;
            let observed = a.status.as_ref()?.observed_generation? == a.metadata.generation?;
            let p = pods_of(&pods, "batch").await;
            (observed
                && p.values()
                    .filter(|(node, ready, d)| node.is_some() && *ready && !d)
                    .count()
                    == replicas + 1)
                .then_some(())
        }
    })
    .await;
    let p = pods_of(&pods, "batch").await;
    for pod in &doomed {
        assert!(
            p.get(pod)
                .is_some_and(|(node, _, deleting)| node.as_deref() == Some(noticed.as_str()) && !deleting),
            "{pod} left {noticed}, whose taint is no termination notice: {p:?}"
        );
    }
    let replicas = replicas + 1;
    // The termination notice: every replica there is replaced elsewhere, then deleted.
    taint(&noticed, "aws-node-termination-handler/spot-itn", Some("1796400000"));
    let drained = common::eventually(
        "the noticed node's replicas replaced elsewhere and deleted",
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            let noticed = noticed.clone();
            async move {
                let p = pods_of(&pods, "batch").await;
                let elsewhere = p
                    .values()
                    .filter(|(node, ready, deleting)| *ready && !deleting && node.as_deref() != Some(noticed.as_str()))
                    .count();
                let left = p.values().any(|(node, ..)| node.as_deref() == Some(noticed.as_str()));
                (elsewhere == replicas && !left).then_some(p)
            }
        },
    )
    .await;
    assert_eq!(drained.len(), replicas, "exactly the replicas remain: {drained:?}");
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let retired: BTreeSet<String> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|r| r.spec.decision["kind"] == "agent.stranded")
        .flat_map(|r| r.spec.decision["retire"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        retired, doomed,
        "the receipts retire exactly the noticed node's replicas"
    );
    taint(&noticed, "example.com/maintenance-window", None);
    taint(&noticed, "aws-node-termination-handler/spot-itn", None);
    retire(ns);
}

/// A termination notice whose written deadline leaves no time for a replacement: the replica is
/// pinned to the noticed node (`nodeSelector`), so its replacement can go nowhere and stays
/// Pending, and it is deleted anyway, one grace period before the deadline, with the deadline
/// in its `agent.stranded` receipt (`dueToDeadline`, `retireByMs` = deadline − grace). Prints
/// how long before the deadline the deletion was seen (measured, not asserted).
#[tokio::test]
async fn a_replica_is_deleted_a_grace_period_before_its_nodes_termination_deadline_even_without_a_ready_replacement() {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("spot-deadline").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|node| node.metadata.name)
        .collect();
    let noticed = nodes.last().expect("a node").clone();
    let grace_s: u64 = 20;
    common::apply(&agent(
        n,
        "pinned",
        1,
        "",
        &format!(
            r#""nodeSelector":{{"kubernetes.io/hostname":"{noticed}"}},"terminationGracePeriodSeconds":{grace_s},"#
        ),
    ));
    let placed = common::eventually("the pinned replica Ready", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "pinned").await;
            p.iter()
                .find(|(_, (node, ready, _))| *ready && node.is_some())
                .map(|(name, (node, ..))| (name.clone(), node.clone().unwrap_or_default()))
        }
    })
    .await;
    assert_eq!(placed.1, noticed);
    let doomed = placed.0;
    // The notice, with a deadline written 60 s ahead (before the EC2 two-minute rule).
    let deadline_s = now_ms() / 1000 + 60;
    taint(
        &noticed,
        "aws-node-termination-handler/spot-itn",
        Some(&deadline_s.to_string()),
    );
    common::eventually(
        "the pinned replica deleted before its replacement is Ready",
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            let doomed = doomed.clone();
            async move {
                let p = pods_of(&pods, "pinned").await;
                p.get(&doomed).is_none_or(|(_, _, deleting)| *deleting).then_some(())
            }
        },
    )
    .await;
    let seen_ms = now_ms();
    let p = pods_of(&pods, "pinned").await;
    assert!(
        p.iter().all(|(name, (_, ready, _))| *name == doomed || !ready),
        "a replacement became Ready, so this is not the deadline path: {p:?}"
    );
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let record = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.spec.decision)
        .find(|d| d["kind"] == "agent.stranded")
        .expect("an agent.stranded receipt");
    assert_eq!(record["dueToDeadline"], serde_json::json!([doomed]), "{record:#}");
    assert_eq!(record["healthyReady"], 0, "{record:#}");
    assert_eq!(
        record["retireByMs"][&doomed].as_u64(),
        Some(deadline_s * 1000 - grace_s * 1000),
        "{record:#}"
    );
    println!(
        "measured: deletion seen {:.1} s before the deadline (retire-by was {} s before it)",
        (deadline_s * 1000).saturating_sub(seen_ms) as f64 / 1000.0,
        grace_s
    );
    taint(&noticed, "aws-node-termination-handler/spot-itn", None);
    retire(ns);
}
