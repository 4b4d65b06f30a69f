//! `MomConfig.spec.budget.maxHourlyCost` caps scale-ups at what it affords: an agent asking for
//! 6 replicas of 2 cpus on 8-cpu kwok nodes without a price label (1 per hour, so 0.25 per
//! replica) under a budget of 1.1 gets exactly 4 pods, a `budget.refused` receipt that
//! `mom verify --replay` reproduces, a Warning Event `BudgetExceeded`, the MomConfig condition
//! `BudgetExceeded=True` naming the budget, `status.hourlyCost` 1 and the metric
//! `mom_hourly_cost` 1. Positive control: raising the budget to 2 lets it scale to all 6, the
//! condition turns False and the cost reads 1.5. Then: spot labels bring the cost to 0.45, a
//! budget lowered below it turns the condition True (`MaxHourlyCostExceeded`) without removing
//! a pod, an unreadable price label is named, and a negative budget is refused at admission.
//! `mom whatif snapshot --cluster` carries the budget into the twin's snapshot.
//!
//! Runs on a control plane of its own: the budget counts the pods of every agent in the
//! cluster, so other tests' agents must not share it.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use mom::operator::crd::{MomConfig, Receipt};

fn set_budget(max: f64) {
    let patch = serde_json::json!({"spec": {"budget": {"maxHourlyCost": max}}}).to_string();
    let (ok, _, err) = common::kubectl(
        &["patch", "momconfig", "default", "--type", "merge", "-p", &patch],
        None,
    );
    assert!(ok, "setting spec.budget.maxHourlyCost to {max}: {err}");
    common::wait_config_in_effect(&common::mom().metrics_url);
}

/// Live (not terminating) pods of the agent.
async fn pods_of(pods: &Api<Pod>, agent: &str) -> Option<usize> {
    let list = pods
        .list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .ok()?;
    Some(
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count(),
    )
}

/// MomConfig `default`: (BudgetExceeded status, reason, message) and `status.hourlyCost`.
async fn budget_status(client: &kube::Client) -> Option<((String, String, String), Option<f64>)> {
    let status = Api::<MomConfig>::all(client.clone())
        .get("default")
        .await
        .ok()?
        .status?;
    let c = status.conditions.iter().find(|c| c.type_ == "BudgetExceeded")?;
    Some((
        (c.status.clone(), c.reason.clone(), c.message.clone()),
        status.hourly_cost,
    ))
}

/// The value of an unlabelled series on the operator's `/metrics`.
fn metric(name: &str) -> Option<f64> {
    let text = common::http_get(&format!("{}/metrics", common::mom().metrics_url))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn reconciles() -> f64 {
    let text = common::http_get(&format!("{}/metrics", common::mom().metrics_url)).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("mom_reconciles_total{controller=\"geometricagent\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_scale_up_beyond_max_hourly_cost_gets_exactly_the_affordable_replicas_and_a_raised_budget_lets_it_grow() {
    common::use_private_control_plane();
    // The auction (tests/budget_auction.rs) would also cut this contended default pool to what
    // the budget pays for; here the agent controller's own cap is under test, so the auction
    // loop ticks only once, at start, before any agent exists.
    common::mom_with(&["--auction-tick-seconds", "3600"]);
    common::apply_test_momconfig("full_audit");
    // Bad input is refused at admission, naming the field.
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "momconfig",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"budget":{"maxHourlyCost":-1}}}"#,
        ],
        None,
    );
    assert!(
        !ok && err.contains("spec.budget.maxHourlyCost must be >= 0"),
        "a negative budget: {err}"
    );
    set_budget(1.1);
    let ns = common::TestNamespace::new("budget").await;
    let n = ns.name.as_str();
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);

    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"spender","namespace":"{n}"}},
            "spec":{{"workloadType":"batch","replicas":6,
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause",
                "resources":{{"requests":{{"cpu":"2","memory":"1Gi"}}}}}}]}}}}}}}}"#
    ));

    // The refusal is recorded before anything else: a `budget.refused` receipt with the inputs.
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let refusal = common::eventually("a budget.refused receipt", Duration::from_secs(60), || {
        let receipts = receipts.clone();
        async move {
            receipts
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|r| r.spec.decision["kind"] == "budget.refused")
        }
    })
    .await;
    let d = &refusal.spec.decision;
    assert_eq!(d["agent"], format!("{n}/spender"), "{d}");
    assert_eq!(d["inputs"]["maxHourlyCost"], 1.1, "{d}");
    assert_eq!(d["inputs"]["wanted"], 6, "{d}");
    assert_eq!(d["output"]["allowed"], 4, "{d}");
    assert_eq!(d["output"]["perReplicaCost"], 0.25, "{d}");

    // Exactly the affordable count: 4 pods, and still 4 after the agent controller has looked
    // again (it re-checks a held-back agent every 5 s) at least twice.
    common::eventually("4 pods", Duration::from_secs(60), || async {
        pods_of(&pods, "spender").await.filter(|c| *c == 4)
    })
    .await;
    let ((_, reason, message), _) = common::eventually("BudgetExceeded=True", Duration::from_secs(30), || async {
        budget_status(&client).await.filter(|((s, _, _), _)| s == "True")
    })
    .await;
    assert_eq!(reason, "MaxHourlyCostRefusedScaleUp");
    assert!(message.contains("spec.budget.maxHourlyCost 1.1"), "{message}");
    assert!(
        message.contains(&format!("{n}/spender wants 6 replicas, allowed 4")),
        "{message}"
    );
    let before = reconciles();
    common::eventually("two more agent reconciles", Duration::from_secs(60), || async {
        (reconciles() >= before + 2.0).then_some(())
    })
    .await;
    assert_eq!(
        pods_of(&pods, "spender").await,
        Some(4),
        "the budget held after re-checks"
    );

    // The cost now: status.hourlyCost and the metric (4 × 2/8 of a node at 1 per hour).
    common::eventually("status.hourlyCost 1", Duration::from_secs(30), || async {
        budget_status(&client)
            .await
            .and_then(|(_, cost)| cost)
            .filter(|c| (c - 1.0).abs() < 1e-6)
    })
    .await;
    common::eventually("mom_hourly_cost 1", Duration::from_secs(30), || async {
        metric("mom_hourly_cost").filter(|c| (c - 1.0).abs() < 1e-6)
    })
    .await;
    assert_eq!(
        metric("mom_budget_refusals_total"),
        Some(1.0),
        "one receipt per refusal, not per reconcile"
    );

    // The Event on the agent.
    let events: Api<Event> = Api::namespaced(client.clone(), n);
    let note = common::eventually("a BudgetExceeded Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default().fields("involvedObject.name=spender"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("BudgetExceeded") && e.type_.as_deref() == Some("Warning"))
                .and_then(|e| e.message)
        }
    })
    .await;
    assert!(
        note.contains("spec.budget.maxHourlyCost 1.1") && note.contains("4 of 6"),
        "{note}"
    );

    // `mom whatif snapshot --cluster` carries the budget into the twin, which applies it.
    let twin = common::twin_snapshot(n);
    assert_eq!(twin["maxHourlyCost"], 1.1, "the twin snapshot's budget");

    // `mom verify --replay` recomputes the refusal from its recorded inputs.
    let keys = common::published_keys(&client).await;
    let mut args = vec!["--cluster", "--replay"];
    for key in &keys {
        args.extend(["--public-key", key.as_str()]);
    }
    let (ok, report) = common::mom_verify(&args);
    assert!(ok, "{report}");
    // Replayed (a registered kind), and reproduced.
    assert!(
        report["replay"]["replayed"].as_u64().is_some_and(|r| r >= 1),
        "{report}"
    );
    assert!(
        report["replay"]["unregistered"].get("budget.refused").is_none(),
        "{report}"
    );
    let mismatches = report["replay"]["mismatches"].as_array().cloned().unwrap_or_default();
    assert!(
        !mismatches
            .iter()
            .any(|m| m["sequence"].as_i64() == Some(refusal.spec.sequence)),
        "{report}"
    );

    // Positive control: a budget that affords every replica lets it scale up fully.
    set_budget(2.0);
    common::eventually("6 pods under a budget of 2", Duration::from_secs(60), || async {
        pods_of(&pods, "spender").await.filter(|c| *c == 6)
    })
    .await;
    let ((_, reason, message), _) =
        common::eventually("BudgetExceeded=False, cost 1.5", Duration::from_secs(30), || async {
            budget_status(&client)
                .await
                .filter(|((s, _, _), cost)| s == "False" && cost.is_some_and(|c| (c - 1.5).abs() < 1e-6))
        })
        .await;
    assert_eq!(reason, "WithinMaxHourlyCost", "{message}");
    assert!(message.contains("spec.budget.maxHourlyCost 2"), "{message}");

    // Spot nodes cost 0.3 of their price: 6 × 0.25 × 0.3 = 0.45.
    let (ok, _, err) = common::kubectl(
        &["label", "nodes", "--all", "--overwrite", "mom.hypersync.io/spot=true"],
        None,
    );
    assert!(ok, "{err}");
    common::eventually(
        "status.hourlyCost 0.45 on spot nodes",
        Duration::from_secs(30),
        || async {
            budget_status(&client)
                .await
                .and_then(|(_, cost)| cost)
                .filter(|c| (c - 0.45).abs() < 1e-6)
        },
    )
    .await;
    common::eventually("mom_hourly_cost 0.45", Duration::from_secs(30), || async {
        metric("mom_hourly_cost").filter(|c| (c - 0.45).abs() < 1e-6)
    })
    .await;

    // A budget lowered below the cost: True, and no pod is removed for it.
    set_budget(0.3);
    let ((_, _, message), _) = common::eventually(
        "BudgetExceeded=True MaxHourlyCostExceeded",
        Duration::from_secs(30),
        || async {
            budget_status(&client)
                .await
                .filter(|((s, r, _), _)| s == "True" && r == "MaxHourlyCostExceeded")
        },
    )
    .await;
    assert!(message.contains("over spec.budget.maxHourlyCost 0.3"), "{message}");
    assert_eq!(pods_of(&pods, "spender").await, Some(6));

    // A price label that is not a number is named (and the node counted at 1).
    let (ok, out, err) = common::kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    assert!(ok, "{err}");
    let node = out.trim().to_string();
    let (ok, _, err) = common::kubectl(
        &[
            "label",
            "node",
            &node,
            "--overwrite",
            "mom.hypersync.io/hourly-cost=cheap",
        ],
        None,
    );
    assert!(ok, "{err}");
    let ((_, _, message), _) = common::eventually(
        "BudgetExceeded naming the unreadable price label",
        Duration::from_secs(30),
        || async {
            budget_status(&client)
                .await
                .filter(|((_, _, m), _)| m.contains("mom.hypersync.io/hourly-cost=\"cheap\""))
        },
    )
    .await;
    assert!(
        message.contains(&format!(
            "node {node}: label mom.hypersync.io/hourly-cost=\"cheap\" is not a number >= 0"
        )),
        "{message}"
    );
}
