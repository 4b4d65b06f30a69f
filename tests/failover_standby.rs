//! Standbys ahead of a possible failure, on the real control plane: the failover planner
//! restores counts (ConfigMap `mom-failover-history`) in which a degraded zone went on to fail
//! 30 times in 100. When half of a zone's nodes are labelled `mom.hypersync.io/anomalous=true`
//! the zone is degraded, and value iteration chooses `add_standby` (not a drain: the zone
//! mostly recovers). The agent with replicas there then gets exactly one replica more, placed
//! outside the zone by the extender, while its replicas in the zone stay where they are (the
//! descheduler runs with its evacuation strategy and sees no drained node). When the label goes
//! the zone is healthy, the row with a standby says `release_standby`, and the agent is back to
//! its demanded count, exactly. Receipted (`failover.plan`, actions `add_standby` and
//! `release_standby`), announced (Events `PredictedFailure` / `PredictionCleared`), verified.
//!
//! The same with restarts instead of the label: 3 container restarts of one replica in the
//! zone (its `restartCount`, written to the pod's status as its kubelet would) degrade it; it
//! recovers when the restarts leave the planner's 60 s window.
//!
//! Runs on a control plane of its own: the planner acts on whole zones.

mod common;
mod failover_support;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use mom::labels::{ANOMALOUS_LABEL, ZONE_LABEL};
use mom::operator::crd::Receipt;

/// The agent's live pods: name → zone of its node (unbound pods: zone "").
async fn pods_of(pods: &Api<Pod>, agent: &str, zone_of: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let zone = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(zone_of)
                .unwrap_or_default();
            Some((p.metadata.name.clone()?, zone))
        })
        .collect()
}

fn label(node: &str, value: Option<&str>) {
    let arg = match value {
        Some(v) => format!("{ANOMALOUS_LABEL}={v}"),
        None => format!("{ANOMALOUS_LABEL}-"),
    };
    let (ok, _, err) = common::kubectl(&["label", "node", node, &arg, "--overwrite"], None);
    assert!(ok, "kubectl label {node} {arg}: {err}");
}

async fn event(client: &kube::Client, reason: &str, zone: &str, within: Duration) -> Event {
    let events: Api<Event> = Api::all(client.clone());
    common::eventually(&format!("an Event {reason} naming {zone}"), within, || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.contains(&format!("failure domain {zone}:")))
                })
        }
    })
    .await
}

/// The `failover.plan` receipts' agent decisions for `zone`: (agent, standby, action).
async fn plan_decisions(client: &kube::Client, zone: &str) -> Vec<(String, bool, String)> {
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), "mom-system");
    receipts
        .list(&ListParams::default())
        .await
        .expect("listing receipts")
        .items
        .into_iter()
        .filter(|r| r.spec.decision["kind"] == "failover.plan")
        .flat_map(|r| {
            r.spec.decision["output"]["agents"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|a| a["domain"] == zone)
        .map(|a| {
            (
                a["agent"].as_str().unwrap_or_default().to_string(),
                a["standby"].as_bool().unwrap_or_default(),
                a["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// How the test degrades a zone.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Degrade {
    /// Half its nodes labelled `mom.hypersync.io/anomalous=true`, removed to recover.
    AnomalousLabel,
    /// One of its replicas' containers restarts 3 times (the kubelet's `restartCount`, here
    /// written to the pod's status as a kubelet would); it recovers when the restarts leave the
    /// planner's 60 s window.
    Restarts,
}

/// The two tests share the zones the planner acts on: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_zone_that_may_fail_gets_one_standby_outside_it_per_agent_and_gives_it_back_exactly_when_it_recovers() {
    standby_while_degraded(Degrade::AnomalousLabel).await;
}

#[tokio::test]
async fn a_zone_whose_replicas_keep_restarting_gets_a_standby_until_the_restarts_stop() {
    standby_while_degraded(Degrade::Restarts).await;
}

/// Sets the restart count of the first container of `pod` in its status, as its kubelet would.
fn restarted(ns: &str, pod: &str, count: i32) {
    let patch = serde_json::json!({"status": {"containerStatuses": [{
        "name": "c", "image": "pause", "imageID": "", "ready": true, "started": true,
        "restartCount": count, "state": {"running": {}}
    }]}});
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "pod",
            pod,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
    assert!(ok, "setting the restart count of {pod}: {err}");
}

/// Passes of the failover planner so far (`mom_loop_ticks_total{loop="failover-plan"}`).
fn planner_ticks() -> u64 {
    common::scrape_metrics(&common::mom().metrics_url)
        .lines()
        .find(|l| l.starts_with("mom_loop_ticks_total{") && l.contains(r#"loop="failover-plan""#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn standby_while_degraded(how: Degrade) {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    common::ensure_kwok_nodes(2, 3, 2);
    let bootstrap = common::TestNamespace::new("failover-standby-seed").await;
    let labels = node_labels(bootstrap.client()).await;
    let zones: BTreeSet<String> = labels.values().filter_map(|l| l.get(ZONE_LABEL).cloned()).collect();
    assert!(zones.len() >= 3, "{zones:?}");
    // A degraded zone failed 30 times in 100.
    failover_support::seed_history(&zones, &failover_support::history(30));
    failover_support::start_mom_evacuating_only("standby");
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new(match how {
        Degrade::AnomalousLabel => "failover-standby",
        Degrade::Restarts => "failover-restarts",
    })
    .await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let zone_of = |node: &str| labels.get(node).and_then(|l| l.get(ZONE_LABEL)).cloned();
    common::apply(&agent(n, "shop", 4, "", ""));
    let placed = common::eventually("shop's 4 replicas bound", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "shop", &zone_of).await;
            (p.len() == 4 && p.values().all(|z| !z.is_empty())).then_some(p)
        }
    })
    .await;
    let mut per_zone: BTreeMap<&String, usize> = BTreeMap::new();
    for z in placed.values() {
        *per_zone.entry(z).or_default() += 1;
    }
    let zone = per_zone
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(z, _)| (*z).clone())
        .unwrap();
    let in_zone: Vec<&String> = labels
        .iter()
        .filter(|(_, l)| l.get(ZONE_LABEL) == Some(&zone))
        .map(|(node, _)| node)
        .collect();
    let flagged: Vec<String> = in_zone
        .iter()
        .take(in_zone.len().div_ceil(2))
        .map(|n| n.to_string())
        .collect();
    let kept_in_zone: BTreeSet<&String> = placed.iter().filter(|(_, z)| **z == zone).map(|(p, _)| p).collect();
    println!("placed {placed:?}; {how:?}: flagging {flagged:?} or restarting {kept_in_zone:?} of zone {zone}");

    let flagged_at = Instant::now();
    match how {
        Degrade::AnomalousLabel => {
            for node in &flagged {
                label(node, Some("true"));
            }
        }
        Degrade::Restarts => {
            // The planner counts restarts within its window from its first look at a domain:
            // let it look twice before the restarts.
            let first = planner_ticks();
            common::eventually("two planner passes", Duration::from_secs(60), || async move {
                (planner_ticks() >= first + 2).then_some(())
            })
            .await;
            // 3 restarts in the zone: degraded (10 would be suspect, and drained).
            let pod = kept_in_zone.iter().next().expect("a replica in the zone");
            restarted(n, pod, 3);
        }
    }
    let announced = event(&client, "PredictedFailure", &zone, Duration::from_secs(60)).await;
    let message = announced.message.clone().unwrap_or_default();
    assert!(message.contains("add_standby"), "{message}");
    let with_standby = common::eventually(
        &format!("shop has 5 bound replicas, the new one outside zone {zone}"),
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            async move {
                let p = pods_of(&pods, "shop", &zone_of).await;
                (p.len() == 5 && p.values().all(|z| !z.is_empty())).then_some(p)
            }
        },
    )
    .await;
    println!(
        "standby bound {:.1} s after the label: {with_standby:?}",
        flagged_at.elapsed().as_secs_f64()
    );
    let new: Vec<(&String, &String)> = with_standby.iter().filter(|(p, _)| !placed.contains_key(*p)).collect();
    assert_eq!(new.len(), 1, "exactly one new pod: {with_standby:?} after {placed:?}");
    assert_ne!(new[0].1, &zone, "the standby {} landed in the suspect zone", new[0].0);
    // Not a drain: the replicas in the zone are still there.
    for p in &kept_in_zone {
        assert_eq!(
            with_standby.get(*p),
            Some(&zone),
            "{p} left zone {zone}: {with_standby:?}"
        );
    }
    let decisions = plan_decisions(&client, &zone).await;
    let agent_at = format!("{n}/shop@{zone}");
    assert!(
        decisions.contains(&(agent_at.clone(), false, "add_standby".into())),
        "no failover.plan receipt adds shop's standby: {decisions:?}"
    );

    // The zone recovers: the standby is given back, the count is exact again.
    let cleared_at = Instant::now();
    if how == Degrade::AnomalousLabel {
        for node in &flagged {
            label(node, None);
        }
    }
    // Restarts: nothing to undo, the window forgets them.
    event(&client, "PredictionCleared", &zone, Duration::from_secs(150)).await;
    let back = common::eventually("shop back to 4 replicas", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "shop", &zone_of).await;
            (p.len() == 4).then_some(p)
        }
    })
    .await;
    println!(
        "standby released {:.1} s after the label went: {back:?}",
        cleared_at.elapsed().as_secs_f64()
    );
    let decisions = plan_decisions(&client, &zone).await;
    assert!(
        decisions.contains(&(agent_at, true, "release_standby".into())),
        "no failover.plan receipt releases shop's standby: {decisions:?}"
    );
    let agents: Api<mom::operator::crd::GeometricAgent> = Api::namespaced(client.clone(), n);
    let spec = agents.get("shop").await.expect("agent shop").spec.replicas;
    assert_eq!(spec, 4, "the agent's demanded replicas changed");
    let (ok, report) = common::verify_cluster_with_published_keys(&client).await;
    assert!(ok, "mom verify after the standby: {report}");
    // The other test verifies the whole chain too: deleting this namespace would delete its
    // receipts (a gap), so only the agent goes.
    let (ok, _, err) = common::kubectl(&["delete", "geometricagents", "--all", "-n", n, "--wait=true"], None);
    assert!(ok, "deleting the agents of {n}: {err}");
    ns.keep();
}
