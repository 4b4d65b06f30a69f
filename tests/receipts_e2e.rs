//! Receipts end to end: every scaling action of the operator leaves a signed, hash-chained
//! Receipt before it is taken (full_audit), and so does every bind of the pods it creates;
//! `mom verify --cluster` checks the chain, and a deleted receipt is named as missing.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use mom::operator::crd::Receipt;
use mom::operator::crd::receipt::ReceiptAction;

/// Runs `mom verify --cluster` trusting the operator's published key and the key that sealed the
/// example receipt; returns (success, JSON report).
fn verify(published: &str) -> (bool, serde_json::Value) {
    let example_key = mom::receipts::signing::Signer::from_seed([7; 32]).public_hex();
    let cp = common::control_plane();
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args([
            "verify",
            "--cluster",
            "--format",
            "json",
            "--public-key",
            published,
            "--public-key",
            &example_key,
        ])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

/// (sequence, kind) of every problem at or after `from`.
fn problems_from(report: &serde_json::Value, from: u64) -> BTreeSet<(u64, String)> {
    report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["sequence"].as_u64().unwrap(), p["kind"].as_str().unwrap().to_string()))
        .filter(|(s, _)| *s >= from)
        .collect()
}

#[tokio::test]
async fn every_scaling_action_leaves_a_verifiable_receipt_and_a_deleted_one_is_named_missing() {
    common::mom();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("receipts").await;
    let n = &ns.name;
    let agent = |replicas: i32| {
        format!(
            r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"audited","namespace":"{n}"}},
                "spec":{{"workloadType":"batch","replicas":{replicas},
                  "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
        )
    };
    let receipts: Api<Receipt> = Api::namespaced(ns.client(), n);
    // Scaling receipts (on the agent) and bind receipts (one per pod the scheduler binds
    // through the extender) share the namespace; `wait_for` counts those of one kind.
    let wait_for = |count: usize, binds: bool| {
        let receipts = receipts.clone();
        async move {
            common::eventually(
                &format!("{count} receipts (binds: {binds}) in the namespace"),
                Duration::from_secs(60),
                || {
                    let receipts = receipts.clone();
                    async move {
                        let mut list: Vec<Receipt> = receipts
                            .list(&ListParams::default())
                            .await
                            .ok()?
                            .items
                            .into_iter()
                            // The agent's spec change (`configure`, `tests/rollback.rs`) is
                            // neither.
                            .filter(|r| r.spec.action != ReceiptAction::Configure)
                            .filter(|r| (r.spec.action == ReceiptAction::Bind) == binds)
                            .collect();
                        list.sort_by_key(|r| r.spec.sequence);
                        (list.len() >= count).then_some(list)
                    }
                },
            )
            .await
        }
    };
    common::apply(&agent(2));
    wait_for(1, false).await;
    let (ok, _, err) = common::kubectl(
        &["scale", "geometricagent", "audited", "-n", n, "--replicas", "4"],
        None,
    );
    assert!(ok, "{err}");
    let scaled_up = wait_for(2, false).await;
    // The agent's status.lastReceipt points at its newest receipt, and moves with each one.
    let last_receipt_is = |r: Receipt| {
        let agents: Api<mom::operator::crd::GeometricAgent> = Api::namespaced(ns.client(), n);
        async move {
            common::eventually(
                &format!("status.lastReceipt = {:?}", r.metadata.name),
                Duration::from_secs(30),
                || {
                    let agents = agents.clone();
                    let r = r.clone();
                    async move {
                        let last = agents.get("audited").await.ok()?.status?.last_receipt?;
                        (Some(&last.name) == r.metadata.name.as_ref()
                            && last.sequence == r.spec.sequence
                            && last.hash == r.spec.hash)
                            .then_some(())
                    }
                },
            )
            .await
        }
    };
    last_receipt_is(scaled_up[1].clone()).await;
    // The 4 pods are bound (one bind receipt each) before the scale-down.
    wait_for(4, true).await;
    let (ok, _, err) = common::kubectl(
        &["scale", "geometricagent", "audited", "-n", n, "--replicas", "1"],
        None,
    );
    assert!(ok, "{err}");
    let ours = wait_for(3, false).await;
    let actions: Vec<String> = ours
        .iter()
        .map(|r| format!("{:?}", r.spec.action).to_lowercase())
        .collect();
    assert_eq!(actions, ["spawn", "spawn", "terminate"]);
    last_receipt_is(ours[2].clone()).await;
    assert!(ours.iter().all(|r| r.spec.subject.name == "audited"));
    // The agent's creation is one spec change, recorded before its first spawn; the scales
    // are not spec changes.
    let configured: Vec<Receipt> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.action == ReceiptAction::Configure)
        .collect();
    assert_eq!(configured.len(), 1, "{configured:?}");
    assert_eq!(configured[0].spec.decision["kind"], "agent.change");
    assert!(configured[0].spec.sequence < ours[0].spec.sequence);
    // The 4 pods the agent created were each bound once, after its spawn receipt; the
    // scale-down bound nothing.
    let binds = wait_for(4, true).await;
    let bound: BTreeSet<&str> = binds.iter().map(|r| r.spec.subject.name.as_str()).collect();
    assert_eq!(bound.len(), binds.len(), "a pod has two bind receipts: {bound:?}");
    assert_eq!(binds.len(), 4, "{bound:?}");
    assert!(
        binds
            .iter()
            .all(|r| r.spec.subject.kind == "Pod" && r.spec.subject.name.starts_with("audited-")),
        "{bound:?}"
    );
    assert!(binds[0].spec.sequence > ours[0].spec.sequence);
    let first = ours[0].spec.sequence as u64;

    // /metrics counts what was written and shows the newest sequence. A receipt is written
    // before its action, so the decision counters may lag the receipts for a moment.
    let metrics = common::eventually(
        "the scale-down decision in /metrics",
        Duration::from_secs(30),
        || async {
            let text = common::scrape_metrics(&common::mom().metrics_url);
            text.contains(r#"mom_decisions_total{kind="scale_down"}"#)
                .then_some(text)
        },
    )
    .await;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"))
    };
    assert!(value(r#"mom_receipts_written_total{action="spawn"}"#) >= 2.0);
    assert!(value(r#"mom_receipts_written_total{action="terminate"}"#) >= 1.0);
    assert!(value(r#"mom_receipts_written_total{action="bind"}"#) >= 4.0);
    assert!(value("mom_receipt_chain_head_sequence") >= ours[2].spec.sequence as f64);
    assert!(value(r#"mom_decisions_total{kind="scale_up"}"#) >= 2.0);
    assert!(value(r#"mom_decisions_total{kind="scale_down"}"#) >= 1.0);

    let maps: Api<ConfigMap> = Api::namespaced(ns.client(), "mom-system");
    let published = maps
        .get("mom-receipt-public-keys")
        .await
        .unwrap()
        .data
        .unwrap()
        .into_values()
        .next()
        .unwrap();
    let (_, report) = verify(&published);
    // Earlier test binaries deleted their namespaces (and receipts) — evident as gaps before
    // our receipts; from our first receipt on, the chain must be clean.
    assert_eq!(problems_from(&report, first), BTreeSet::new(), "{report}");

    let victim = ours[1].metadata.name.clone().unwrap();
    let (ok, _, err) = common::kubectl(&["delete", "receipt", &victim, "-n", n], None);
    assert!(ok, "{err}");
    let (ok, report) = verify(&published);
    assert!(!ok, "verify passed with a deleted receipt");
    let problems = problems_from(&report, first);
    assert!(
        problems.contains(&(ours[1].spec.sequence as u64, "missing".to_string())),
        "{problems:?}"
    );
}
