//! Predictive draining on the real control plane: the operator's failover planner restores the
//! transition counts a previous leader persisted (ConfigMap `mom-failover-history`), in which a
//! degraded zone went on to fail 9 times in 10. When a node of a zone is labelled
//! `mom.hypersync.io/anomalous=true` (one of its two nodes: half the zone), the zone is
//! degraded; value iteration then chooses `drain_gradually`, so the extender keeps new pods out
//! of the WHOLE zone and the descheduler moves the agent's replicas out of it — off the node
//! without the label too — before anything has failed. The descheduler runs with only its
//! evacuation strategy and `includeAnomalous: false`, so no move here is its own idea. The plan
//! is receipted first (`failover.plan`), announced (Event `PredictedFailure`) and shown in the
//! MomConfig condition `FailoverModel`. When the label goes, the zone is open again
//! (`PredictionCleared`); the planner has persisted its counts on top of the restored ones, and
//! the receipt chain verifies.
//!
//! Runs on a control plane of its own: draining a zone moves every test's pods.

mod common;
mod failover_support;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, ListParams};
use mom::labels::{ANOMALOUS_LABEL, ZONE_LABEL};
use mom::operator::crd::{MomConfig, Receipt};

async fn zones_of_pods(
    pods: &Api<Pod>,
    agent: &str,
    zone_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            Some((p.metadata.name.clone()?, zone_of(&node)?))
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

async fn event(client: &kube::Client, reason: &str, zone: &str) -> Event {
    let events: Api<Event> = Api::all(client.clone());
    common::eventually(
        &format!("an Event {reason} naming {zone}"),
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
                        e.reason.as_deref() == Some(reason)
                            && e.message
                                .as_deref()
                                .is_some_and(|m| m.contains(&format!("failure domain {zone}:")))
                    })
            }
        },
    )
    .await
}

async fn failover_model_message(client: &kube::Client) -> Option<String> {
    let configs: Api<MomConfig> = Api::all(client.clone());
    let cfg = configs.get("default").await.ok()?;
    cfg.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "FailoverModel")
        .map(|c| c.message)
}

#[tokio::test]
async fn a_zone_whose_history_says_degraded_means_failing_is_emptied_before_it_fails_and_reopened_when_it_recovers() {
    common::use_private_control_plane();
    common::ensure_kwok_nodes(2, 3, 2);
    // The counts a previous leader left, before this operator starts.
    let bootstrap = common::TestNamespace::new("failover-predictive-seed").await;
    let labels = node_labels(bootstrap.client()).await;
    let zones: BTreeSet<String> = labels.values().filter_map(|l| l.get(ZONE_LABEL).cloned()).collect();
    assert!(zones.len() >= 3, "{zones:?}");
    failover_support::seed_history(&zones, &failover_support::history(90));
    failover_support::start_mom_evacuating_only("predictive");
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("failover-predictive").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let zone_of = |node: &str| labels.get(node).and_then(|l| l.get(ZONE_LABEL)).cloned();
    common::apply(&agent(n, "shop", 6, "", ""));
    let placed = common::eventually("shop's 6 replicas bound", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = zones_of_pods(&pods, "shop", &zone_of).await;
            (p.len() == 6).then_some(p)
        }
    })
    .await;
    // The zone with the most replicas, and one of its nodes: the anomaly's node.
    let mut per_zone: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, z) in &placed {
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
    assert!(in_zone.len() >= 2, "zone {zone} has nodes {in_zone:?}");
    let flagged = in_zone[0].clone();
    println!("placed {placed:?}; flagging {flagged} of zone {zone}");
    // Positive control of the prediction: nothing is drained while every zone is healthy.
    let quiet = common::eventually("the FailoverModel condition", Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            failover_model_message(&client)
                .await
                .filter(|m| m.contains("value iteration decides"))
        }
    })
    .await;
    assert!(quiet.contains("no failure domain is drained"), "{quiet}");

    label(&flagged, Some("true"));
    let drained = event(&client, "PredictedFailure", &zone).await;
    println!("{:?}", drained.message);
    common::eventually(
        &format!("shop's 6 replicas bound outside zone {zone}"),
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            let zone = zone.clone();
            async move {
                let p = zones_of_pods(&pods, "shop", &zone_of).await;
                (p.len() == 6 && p.iter().all(|(_, z)| *z != zone)).then_some(())
            }
        },
    )
    .await;
    // The plan was receipted, and names the zone with a moving action.
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), "mom-system");
    let plans: Vec<Receipt> = receipts
        .list(&ListParams::default())
        .await
        .expect("listing receipts")
        .items
        .into_iter()
        .filter(|r| r.spec.decision["kind"] == "failover.plan")
        .collect();
    let moving = plans.iter().any(|r| {
        r.spec.decision["output"]["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["domain"] == zone.as_str() && a["action"] != "stay" && a["action"] != "add_standby")
    });
    assert!(moving, "no failover.plan receipt moves zone {zone}: {plans:?}");
    let message = failover_model_message(&client).await.unwrap_or_default();
    assert!(message.contains(&zone), "FailoverModel does not name {zone}: {message}");

    // The anomaly clears: the zone is healthy again and reopened.
    label(&flagged, None);
    event(&client, "PredictionCleared", &zone).await;
    common::eventually(
        "FailoverModel: no failure domain is drained",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                failover_model_message(&client)
                    .await
                    .filter(|m| m.contains("no failure domain is drained"))
            }
        },
    )
    .await;
    // The planner persisted what it counted on top of what it restored.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "mom-system");
    let healthy_stays = common::eventually("the planner's counts persisted", Duration::from_secs(90), || {
        let configmaps = configmaps.clone();
        let zone = zone.clone();
        async move {
            let cm = configmaps.get("mom-failover-history").await.ok()?;
            let text = cm.data?.get("counts.json")?.clone();
            let counts: serde_json::Value = serde_json::from_str(&text).ok()?;
            let stays = counts[&zone]["counts"][0][0].as_u64()?;
            (stays > 5000).then_some(stays)
        }
    })
    .await;
    println!("zone {zone}: healthy→healthy {healthy_stays} (5000 seeded)");
    let (ok, report) = common::verify_cluster_with_published_keys(&client).await;
    assert!(ok, "mom verify after the drain: {report}");
}
