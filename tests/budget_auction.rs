//! The auction clears against `MomConfig.spec.budget.maxHourlyCost`: the default pool (12
//! kwok nodes of 8 cpus at 1 per hour) is offered only the capacity the budget pays for, so a
//! budget of 0.75 (6 cpus) makes 8 wanted replicas of 1 cpu contended and the auction gives the
//! replicas to the higher bid. The low bidder `cheap` comes first and gets its 4 replicas (0.5
//! per hour); then `dear` (bidding 5 per replica against 1) asks for 4: the auction grants 4 to
//! `dear` and 2 to `cheap`, recorded in an `allocate` receipt whose `budget` names what was left
//! and whose offered capacity is 6 cpus, and the MomConfig condition `BudgetExceeded` is True
//! (`MaxHourlyCostCappedAuction`) naming the pool and the agent held back. Without the auction clearing against the budget,
//! first come would win: `cheap` would keep 4 and the budget cap would leave `dear` 2.
//! Positive control: without a budget the pool is relaxed and both get 4.
//!
//! Runs on a control plane of its own: the budget counts every agent pod in the cluster.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mom::operator::crd::{GeometricAgent, Receipt};
use serde_json::json;

fn patch_momconfig(patch: serde_json::Value) {
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "momconfig",
            "default",
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
    assert!(ok, "patching the MomConfig with {patch}: {err}");
    common::wait_config_in_effect(&common::mom().metrics_url);
}

fn agent(ns: &str, name: &str, value: f64) -> String {
    json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "workloadType": "batch", "replicas": 4, "bid": {"valuePerReplica": value},
            "template": {"spec": {"containers": [{"name": "c", "image": "pause",
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}
        }
    })
    .to_string()
}

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

async fn counts(pods: &Api<Pod>) -> Option<(usize, usize)> {
    Some((pods_of(pods, "dear").await?, pods_of(pods, "cheap").await?))
}

async fn quota(agents: &Api<GeometricAgent>, name: &str) -> Option<i32> {
    agents.get(name).await.ok()?.status?.allocation.map(|a| a.quota)
}

#[tokio::test]
async fn the_auction_is_offered_only_the_capacity_the_budget_pays_for_and_gives_it_to_the_higher_bid() {
    common::use_private_control_plane();
    common::mom();
    common::apply_test_momconfig("full_audit");
    patch_momconfig(json!({"spec": {"tickSeconds": 1, "budget": {"maxHourlyCost": 0.75}}}));
    let ns = common::TestNamespace::new("budget-auction").await;
    let n = ns.name.as_str();
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let agents: Api<GeometricAgent> = Api::namespaced(client.clone(), n);

    // The low bidder first: 4 cpus of the 6 the budget pays for, uncontended.
    common::apply(&agent(n, "cheap", 1.0));
    common::eventually("cheap's 4 pods", Duration::from_secs(60), || async {
        pods_of(&pods, "cheap").await.filter(|c| *c == 4)
    })
    .await;

    // The high bidder: 8 wanted against 6 affordable, so the auction decides.
    common::apply(&agent(n, "dear", 5.0));
    common::eventually(
        "quotas dear 4, cheap 2 and the pods to match",
        Duration::from_secs(90),
        || async {
            let q = (quota(&agents, "dear").await?, quota(&agents, "cheap").await?);
            let c = counts(&pods).await?;
            (q == (4, 2) && c == (4, 2)).then_some(())
        },
    )
    .await;

    // The MomConfig says the budget held the auction back, naming the pool and the agent.
    let configs: Api<mom::operator::crd::MomConfig> = Api::all(client.clone());
    let budget_exceeded = || {
        let configs = configs.clone();
        async move {
            let status = configs.get("default").await.ok()?.status?;
            let c = status.conditions.into_iter().find(|c| c.type_ == "BudgetExceeded")?;
            Some((c.status, c.reason, c.message))
        }
    };
    let (_, _, message) = common::eventually(
        "BudgetExceeded=True MaxHourlyCostCappedAuction",
        Duration::from_secs(30),
        || async {
            budget_exceeded()
                .await
                .filter(|(s, r, _)| s == "True" && r == "MaxHourlyCostCappedAuction")
        },
    )
    .await;
    assert!(message.contains("spec.budget.maxHourlyCost 0.75"), "{message}");
    assert!(
        message.contains("auction of pool default: offered 6000 of 96000 cpu millis")
            && message.contains(&format!("{n}/cheap granted 2 of 4")),
        "{message}"
    );

    // The allocate receipt says what the budget left and offered.
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), "mom-system");
    let record = common::eventually("an allocate receipt with a budget", Duration::from_secs(30), || {
        let receipts = receipts.clone();
        async move {
            let mut list: Vec<Receipt> = receipts
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|r| r.spec.decision["kind"] == "auction.vcg" && r.spec.decision.get("budget").is_some())
                .collect();
            list.sort_by_key(|r| r.spec.sequence);
            list.pop().map(|r| r.spec.decision)
        }
    })
    .await;
    assert_eq!(record["budget"]["maxHourlyCost"], 0.75, "{record}");
    assert_eq!(record["budget"]["left"], 0.75, "{record}");
    let offered: u64 = record["inputs"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["cpu_millis"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(offered, 6000, "{record}");

    // Positive control: without a budget the pool (96 cpus) is relaxed and both get all 4.
    patch_momconfig(json!({"spec": {"budget": null}}));
    common::eventually(
        "no quotas and 4 pods each without a budget",
        Duration::from_secs(90),
        || async {
            let released = quota(&agents, "dear").await.is_none() && quota(&agents, "cheap").await.is_none();
            (released && counts(&pods).await? == (4, 4)).then_some(())
        },
    )
    .await;
    common::eventually("BudgetExceeded=False NoBudget", Duration::from_secs(30), || async {
        budget_exceeded()
            .await
            .filter(|(s, r, _)| s == "False" && r == "NoBudget")
    })
    .await;
}
