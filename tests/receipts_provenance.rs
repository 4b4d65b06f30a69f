//! Receipt provenance on the real control plane: receipts planted by a cluster admin who
//! bypassed the admission policy (one claiming the largest sequence the CRD allows, others
//! holding the names of the writer's next receipts) never become the chain head. The operator
//! keeps writing its own chain (an agent still scales, under `full_audit`), stores its receipts
//! beside the squatted names, says so (MomConfig condition `ReceiptsTrusted=False` and a
//! Warning Event, both naming the planted objects), and `mom verify --cluster` names every
//! planted object as foreign while the operator's receipts verify.
//!
//! (That the chart's admission policy refuses such creates by anyone but the operator's
//! ServiceAccount is tested in tests/helm.rs, where the chart is installed.)

mod common;

use std::time::Duration;

use kube::api::{Api, ListParams, Patch, PatchParams};
use mom::operator::crd::{GeometricAgent, MomConfig};

const IDENTITY: &str = "provenance-test";
/// How many of the writer's next receipt names in the test namespace are squatted.
const SQUATTED: u64 = 60;

fn start_operator() -> common::OperatorProcess {
    common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity(IDENTITY)
        .text_logs()
        .flag("--lease-duration-seconds", "2")
        .flag("--renew-period-seconds", "1")
        .spawn()
}

fn agent(ns: &str, replicas: i32) -> String {
    serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": "keeper", "namespace": ns},
        "spec": {"workloadType": "batch", "replicas": replicas,
                 "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
    })
    .to_string()
}

/// The example receipt (sealed with the example key, not the operator's) under another name and
/// sequence, in `namespace`.
fn planted(namespace: &str, name: &str, sequence: u64) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/receipt/receipt.yaml"),
    )
    .unwrap();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    doc["metadata"] = serde_json::json!({"name": name, "namespace": namespace});
    doc["spec"]["sequence"] = sequence.into();
    doc.to_string()
}

fn trusted_condition() -> (String, String, String) {
    let (_, out, _) = common::kubectl(
        &[
            "get",
            "momconfig",
            "default",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ReceiptsTrusted\")].status}|{.status.conditions[?(@.type==\"ReceiptsTrusted\")].reason}|{.status.conditions[?(@.type==\"ReceiptsTrusted\")].message}",
        ],
        None,
    );
    let mut parts = out.splitn(3, '|').map(str::to_string);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

#[tokio::test]
async fn receipts_planted_past_the_policy_never_become_the_chain_head_and_are_named() {
    common::install_crds();
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("provenance").await;
    let client = ns.client();
    let mut operator = start_operator();

    // The operator's own chain: one spawn receipt for the agent.
    common::apply(&agent(&ns.name, 1));
    common::eventually("the agent's first pod", Duration::from_secs(60), || async {
        (common::live_pods_of(&client, &ns.name, "keeper").await == 1).then_some(())
    })
    .await;
    // The newest stored sequence (other agents of the shared cluster may be writing too).
    let head = common::eventually("a stored receipt", Duration::from_secs(30), || async {
        Api::<mom::operator::crd::Receipt>::all(client.clone())
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|r| r.spec.sequence as u64)
            .max()
    })
    .await;
    let (_, _, before) = trusted_condition();
    assert!(
        !before.contains(&ns.name),
        "positive control: nothing of this namespace is foreign yet: {before}"
    );

    // A cluster admin (no admission policy here) plants receipts signed by another key: one at
    // the largest sequence the CRD allows, and the names of the writer's next receipts in the
    // agent's namespace.
    let huge = i64::MAX as u64;
    let mut names = vec![format!("receipt-{huge:010}")];
    let (ok, _, err) = common::kubectl(&["create", "-f", "-"], Some(&planted(&ns.name, &names[0], huge)));
    assert!(ok, "{err}");
    for seq in head + 1..=head + SQUATTED {
        let name = format!("receipt-{seq:010}");
        // A sequence the writer reached meanwhile is its own (stored elsewhere or here): skip.
        if common::kubectl(&["create", "-f", "-"], Some(&planted(&ns.name, &name, seq))).0 {
            names.push(name);
        }
    }
    assert!(names.len() > 1, "no name could be squatted after {head}");

    // A new term (the writer loads the stored chain), then an action to record.
    operator.kill();
    let operator = start_operator();
    let agents: Api<GeometricAgent> = Api::namespaced(client.clone(), &ns.name);
    agents
        .patch(
            "keeper",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    common::eventually(
        "the agent scaled to 3 after the forgeries",
        Duration::from_secs(90),
        || async { (common::live_pods_of(&client, &ns.name, "keeper").await == 3).then_some(()) },
    )
    .await;

    // The chain head is the operator's, not the forgery's.
    let new_head = common::eventually("the chain head to move on", Duration::from_secs(30), || async {
        let cfg = Api::<MomConfig>::all(client.clone()).get("default").await.ok()?;
        let seq = cfg.status?.receipt_chain_head?.sequence as u64;
        (seq > head).then_some(seq)
    })
    .await;
    assert!(new_head < huge, "the forgery became the chain head: {new_head}");

    // The MomConfig says so, naming the planted objects; a Warning Event too.
    let (status, reason, message) = common::eventually(
        "ReceiptsTrusted=False naming planted receipts",
        Duration::from_secs(30),
        || async {
            let c = trusted_condition();
            (c.0 == "False" && c.2.contains(&format!("{}/", ns.name))).then_some(c)
        },
    )
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ForeignReceipts"),
        "{message}"
    );
    assert!(message.contains("not signed by a trusted key"), "{message}");
    let counted: usize = message.split(' ').next().unwrap().parse().unwrap();
    assert!(
        counted >= names.len(),
        "{counted} foreign receipts counted, {} planted: {message}",
        names.len()
    );
    // The Event is published just before the condition is written, but a list is served from
    // the apiserver's watch cache, which may lag the write: wait for it rather than look once.
    let wanted = format!("{}/receipt-", ns.name);
    common::eventually(
        "a ForeignReceipts Event naming a planted receipt",
        Duration::from_secs(30),
        || async {
            let (ok, events, _) = common::kubectl(
                &[
                    "get",
                    "events",
                    "-A",
                    "--field-selector",
                    "reason=ForeignReceipts",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
                None,
            );
            (ok && events.contains(&wanted)).then_some(())
        },
    )
    .await;

    // `mom verify --cluster` names every planted object as foreign; the operator's receipts of
    // this test (after `head`) verify without a problem.
    let (ok, report) = common::mom_verify(&["--cluster"]);
    assert!(!ok, "foreign receipts must fail the check: {report}");
    let foreign: Vec<String> = report["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["object"].as_str().unwrap().to_string())
        .collect();
    for name in &names {
        let at = format!("{}/{name}", ns.name);
        assert!(foreign.contains(&at), "{at} not named as foreign: {foreign:?}");
    }
    let problems: Vec<&serde_json::Value> = report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["sequence"].as_u64().is_some_and(|s| s > head))
        .collect();
    assert!(
        problems.is_empty(),
        "the operator's chain after {head} has problems: {problems:?}"
    );
    // The writer stored its own receipt of a squatted sequence under another name.
    let (_, stored, _) = common::kubectl(&["get", "receipts", "-n", &ns.name, "-o", "name"], None);
    assert!(
        (head + 1..=head + SQUATTED).any(|seq| stored.contains(&format!("receipt-{seq:010}-"))),
        "no receipt of the operator beside a squatted name: {stored}"
    );
    drop(operator);
}
