//! Receipt retention in the cluster (`--receipt-retention-keep-last`): after each checkpoint
//! the leader deletes the receipts folded into it, keeping at least the newest N. The kept
//! chain starts at a checkpoint and `mom verify --cluster` still checks it whole; a tenant's
//! bundle is republished without the pruned receipts (and verifies), and the bundle of a
//! namespace left with no receipt is removed.
//!
//! Runs on a control plane of its own: retention prunes the one cluster-wide chain.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use mom::operator::crd::Receipt as ReceiptObject;
use mom::receipts::{Action, Receipt};

const KEEP_LAST: u64 = 8;

async fn chain(client: &kube::Client) -> Vec<(String, Receipt)> {
    let api: Api<ReceiptObject> = Api::all(client.clone());
    let mut out: Vec<(String, Receipt)> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let r: Receipt = serde_json::from_value(serde_json::to_value(&o.spec).unwrap()).unwrap();
            (o.metadata.namespace.unwrap_or_default(), r)
        })
        .collect();
    out.sort_by_key(|(_, r)| r.sequence);
    out
}

fn agent(ns: &str, name: &str, replicas: i32) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"batch","replicas":{replicas},"tenant":"acme",
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

#[tokio::test]
async fn pruned_receipts_leave_a_chain_that_starts_at_a_checkpoint_and_still_verifies() {
    common::use_private_audited_control_plane();
    common::mom_with(&[
        "--checkpoint-every-receipts",
        "5",
        "--checkpoint-interval-seconds",
        "2",
        "--receipt-retention-keep-last",
        &KEEP_LAST.to_string(),
    ]);
    common::apply_test_momconfig("full_audit");
    let client = common::client().await;

    // An early tenant namespace: its receipts will all be folded away.
    let early = common::TestNamespace::for_tenant("retention-early", "acme").await;
    common::apply(&agent(&early.name, "early", 1));
    common::eventually("the early namespace's bundle", Duration::from_secs(60), || {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &early.name);
        async move { maps.get_opt("mom-receipt-checkpoints").await.ok()? }
    })
    .await;

    // A later one that keeps acting: each step is one receipt or more (spawn/terminate, binds).
    let late = common::TestNamespace::for_tenant("retention-late", "acme").await;
    for replicas in [1, 2, 3, 2, 1, 2, 3, 4, 3, 2] {
        common::apply(&agent(&late.name, "late", replicas));
        let late_ns = late.name.clone();
        let client = client.clone();
        common::eventually(
            &format!("late at {replicas} pod(s)"),
            Duration::from_secs(60),
            move || {
                let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &late_ns);
                async move {
                    let n = pods
                        .list(&ListParams::default().labels("mom.hypersync.io/agent=late"))
                        .await
                        .ok()?
                        .items
                        .into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .count();
                    (n == replicas as usize).then_some(())
                }
            },
        )
        .await;
    }

    // Pruned: the chain now starts at a checkpoint past the beginning, keeps at least
    // KEEP_LAST receipts, and none of the early namespace's are left.
    let kept = common::eventually("receipts pruned to a checkpoint", Duration::from_secs(60), || {
        let client = client.clone();
        let early = early.name.clone();
        async move {
            let kept = chain(&client).await;
            let (_, first) = kept.first()?;
            let early_left = kept.iter().any(|(_, r)| r.subject.namespace == early);
            (first.sequence > 0 && first.action == Action::Checkpoint && !early_left).then_some(kept)
        }
    })
    .await;
    let (_, first) = &kept[0];
    let (_, last) = kept.last().unwrap();
    assert!(
        last.sequence - first.sequence + 1 >= KEEP_LAST,
        "kept {}..={}: fewer than {KEEP_LAST}",
        first.sequence,
        last.sequence
    );
    let sequences: Vec<u64> = kept.iter().map(|(_, r)| r.sequence).collect();
    let contiguous: Vec<u64> = (first.sequence..=last.sequence).collect();
    assert_eq!(sequences, contiguous, "retention must delete only a prefix");

    // MomConfig status.lastCheckpoint names the newest stored checkpoint: the last sequence it
    // covers (treeSize − 1), its root and its time. Checkpoints keep coming every 2 s while
    // receipts are written, so the two are compared until they agree.
    common::eventually(
        "status.lastCheckpoint = the newest checkpoint",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let chain = chain(&client).await;
                let newest = chain
                    .iter()
                    .rev()
                    .find(|(_, r)| r.action == Action::Checkpoint)?
                    .1
                    .clone();
                let cp = mom::receipts::chain::CheckpointDecision::from_receipt(&newest).ok()?;
                let config = Api::<mom::operator::crd::MomConfig>::all(client)
                    .get("default")
                    .await
                    .ok()?;
                let last = config.status?.last_checkpoint?;
                (last.sequence == cp.tree_size as i64 - 1
                    && last.merkle_root == cp.root_hash
                    && last.time == newest.time)
                    .then_some(())
            }
        },
    )
    .await;

    let published = common::published_keys(&client).await.remove(0);
    let (ok, report) = common::mom_verify(&["--cluster", "--public-key", &published]);
    assert!(ok, "the pruned chain must verify: {report}");
    assert_eq!(report["report"]["startsAtCheckpoint"], true, "{report}");

    // The early namespace's stale bundle is gone; the late one's verifies against the newest
    // published checkpoint, without the pruned receipts.
    common::eventually("the early bundle removed", Duration::from_secs(60), || {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &early.name);
        async move {
            maps.get_opt("mom-receipt-checkpoints")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    let report = common::eventually("the late tenant's bundle to verify", Duration::from_secs(60), || {
        let args = [
            "--tenant-bundle",
            late.name.as_str(),
            "--public-key",
            published.as_str(),
        ];
        // Until the bundle is republished, `mom verify` may find none (an error, no report).
        async move { common::try_mom_verify(&args).and_then(|(ok, report)| ok.then_some(report)) }
    })
    .await;
    let verified: u64 = report["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verified"].as_u64().unwrap_or(0))
        .sum();
    assert!(verified > 0, "{report}");
}
