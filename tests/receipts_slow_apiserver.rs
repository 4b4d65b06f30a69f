//! The receipt chain under an overloaded apiserver: the operator's connection goes through a
//! proxy that delays every answer past the receipt write timeout, so Receipt creates are carried
//! out but their answers come too late. The writer must recognise its own stored receipts (same
//! sequence, hash and signature) instead of sealing those sequences again, hold new actions
//! while a receipt is unconfirmed, and carry on once answers are timely again: every pod ends
//! up bound and `mom verify --cluster` finds no problem (no fork, no hole). Positive control:
//! the operator's log shows that creates failed while their receipts were stored.
//!
//! Runs on a control plane of its own (its operator's chain is the only one there).

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

fn agent(ns: &str, name: &str, replicas: i32) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"batch","replicas":{replicas},
              "template":{{"spec":{{"schedulerName":"mom-scheduler","containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

/// Pods of `agent` bound to a node.
async fn bound(pods: &Api<Pod>, agent: &str) -> usize {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn late_answers_to_receipt_creates_neither_fork_nor_break_the_chain() {
    common::use_private_audited_control_plane();
    let dir = std::env::temp_dir().join(format!("mom-slow-apiserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = common::StallableProxy::start(&common::StallableProxy::apiserver());
    let proxied = proxy.kubeconfig(&dir);
    let mom = common::start_mom(
        &[
            "--",
            "--receipt-write-timeout-seconds",
            "1",
            "--lease-duration-seconds",
            "40",
            "--renew-period-seconds",
            "2",
            "--lease-renew-deadline-seconds",
            "30",
            "--log-format",
            "text",
        ],
        &[("MOM_OPERATOR_KUBECONFIG", proxied.to_str().unwrap())],
    );
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("slow-apiserver").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);

    // Timely answers: the baseline works.
    common::apply(&agent(&ns.name, "steady", 2));
    common::eventually("steady's 2 pods bound", Duration::from_secs(60), || async {
        (bound(&pods, "steady").await == 2).then_some(())
    })
    .await;

    // Every answer 1.5 s late, the write timeout 1 s: creates land but look failed.
    proxy.delay_responses(Duration::from_millis(1500));
    common::apply(&agent(&ns.name, "burst", 6));
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.delay_responses(Duration::ZERO);

    common::eventually("burst's 6 pods bound", Duration::from_secs(120), || async {
        (bound(&pods, "burst").await == 6).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(
        common::control_plane()
            .kubeconfig
            .parent()
            .unwrap()
            .join("logs/operator.log"),
    )
    .unwrap();
    let recognised = log.matches("the receipt is stored as sealed: it is ours").count();
    println!("receipts whose create looked failed but was stored: {recognised}");
    assert!(
        recognised > 0,
        "the fault never hit a receipt create (no late answer recognised); log tail:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );

    let (ok, report) = common::verify_cluster_with_published_keys(&ns.client()).await;
    assert!(
        ok && report["report"]["problems"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    drop(mom);
}
