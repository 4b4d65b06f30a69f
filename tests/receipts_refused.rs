//! When the apiserver refuses receipts (full_audit): the action waits, the agent gets a
//! `ReceiptWriteFailed` Event and MomConfig `ReceiptsWritable` turns False naming the refusal;
//! when receipts are accepted again the action happens and the condition recovers. A receipt
//! refused only by its tenant's namespace is stored in the operator's namespace instead, so the
//! chain has no hole and the action goes ahead.
//!
//! The refusals are real ValidatingAdmissionPolicies; they are removed when the test ends (also
//! on failure). Runs on a control plane of its own: a policy refusing every receipt must not meet
//! other tests' operators.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use mom::operator::crd::{MomConfig, Receipt as ReceiptObject};

/// A policy + binding refusing Receipt creates (in `namespace` only, or everywhere); deleted on drop.
struct Refusal(String);

impl Refusal {
    fn new(name: &str, namespace: Option<&str>) -> Self {
        let selector = namespace
            .map(|ns| format!(r#","matchResources":{{"namespaceSelector":{{"matchLabels":{{"kubernetes.io/metadata.name":"{ns}"}}}}}}"#))
            .unwrap_or_default();
        common::apply(&format!(
            r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicy","metadata":{{"name":"{name}"}},
                "spec":{{"failurePolicy":"Fail",
                  "matchConstraints":{{"resourceRules":[{{"apiGroups":["mom.hypersync.io"],"apiVersions":["*"],"operations":["CREATE"],"resources":["receipts"]}}]}},
                  "validations":[{{"expression":"false","message":"receipts refused by {name}"}}]}}}}"#
        ));
        common::apply(&format!(
            r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicyBinding","metadata":{{"name":"{name}"}},
                "spec":{{"policyName":"{name}","validationActions":["Deny"]{selector}}}}}"#
        ));
        Self(name.to_string())
    }

    fn lift(&self) {
        for kind in ["validatingadmissionpolicybinding", "validatingadmissionpolicy"] {
            let _ = common::kubectl(&["delete", kind, &self.0, "--ignore-not-found"], None);
        }
    }
}

impl Drop for Refusal {
    fn drop(&mut self) {
        self.lift();
    }
}

fn agent(ns: &str, name: &str, replicas: i32) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"batch","replicas":{replicas},
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

async fn pods_of(pods: &Api<Pod>, agent: &str) -> usize {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

/// A valid, signed Receipt object (named `probe`) for checking that a refusal is in force.
fn probe_receipt(namespace: &str) -> String {
    use mom::receipts::{Action, Level, ReceiptDraft, SubjectRef};
    let mut chain = mom::receipts::chain::ChainBuilder::genesis(mom::receipts::signing::Signer::from_seed([7; 32]));
    let receipt = chain
        .seal(ReceiptDraft {
            action: Action::Configure,
            subject: SubjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: namespace.into(),
                name: "probe".into(),
                uid: None,
            },
            decision: serde_json::json!({"kind": "probe"}),
            inputs_digest: mom::receipts::inputs_digest(&serde_json::json!({})).unwrap(),
            time: "2026-11-26T13:00:00Z".into(),
            level: Level::FullAudit,
        })
        .unwrap();
    let mut object = mom::operator::receipts::receipt_object(&receipt, namespace).unwrap();
    object.metadata.name = Some("probe".into());
    serde_json::to_string(&object).unwrap()
}

/// Whether a server-side dry run of creating `probe` is refused with `message` (a dry run, so
/// a probe that gets through never joins the chain).
fn refused(probe: &str, message: &str) -> Option<()> {
    let (ok, _, err) = common::kubectl(&["create", "--dry-run=server", "-f", "-"], Some(probe));
    (!ok && err.contains(message)).then_some(())
}

/// MomConfig `default`'s ReceiptsWritable condition: (status, message).
async fn receipts_writable(client: &kube::Client) -> Option<(String, String)> {
    let cfg = Api::<MomConfig>::all(client.clone()).get("default").await.ok()?;
    cfg.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ReceiptsWritable")
        .map(|c| (c.status, c.message))
}

#[tokio::test]
async fn refused_receipts_hold_the_action_and_say_why_and_a_refusing_namespace_does_not_break_the_chain() {
    common::use_private_audited_control_plane();
    common::mom();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("refused").await;
    let n = ns.name.as_str();
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);

    // 1. Every receipt refused: nothing happens, and the operator says why.
    let everywhere = Refusal::new("mom-test-refuse-all", None);
    // The policy is in force once an admin's (dry-run) create of a valid receipt is refused too.
    let probe = |namespace: &str| probe_receipt(namespace);
    common::eventually("the refusal policy in force", Duration::from_secs(30), || async {
        refused(&probe("default"), "receipts refused by mom-test-refuse-all")
    })
    .await;
    common::apply(&agent(n, "held", 1));
    let events: Api<Event> = Api::namespaced(client.clone(), n);
    let warning = common::eventually(
        "a ReceiptWriteFailed Event on the agent",
        Duration::from_secs(60),
        || {
            let events = events.clone();
            async move {
                events
                    .list(&ListParams::default().fields("involvedObject.name=held"))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("ReceiptWriteFailed"))
            }
        },
    )
    .await;
    assert!(
        warning
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("refused by mom-test-refuse-all"),
        "{warning:?}"
    );
    let (status, message) = common::eventually("ReceiptsWritable=False", Duration::from_secs(30), || {
        let client = client.clone();
        async move { receipts_writable(&client).await.filter(|(s, _)| s == "False") }
    })
    .await;
    assert!(
        message.contains("refused by mom-test-refuse-all"),
        "{status}: {message}"
    );
    assert_eq!(pods_of(&pods, "held").await, 0, "the action ran without its receipt");

    // 2. Receipts accepted again: the action happens and the condition recovers.
    everywhere.lift();
    common::eventually("the held agent's pod", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { (pods_of(&pods, "held").await == 1).then_some(()) }
    })
    .await;
    common::eventually("ReceiptsWritable=True", Duration::from_secs(90), || {
        let client = client.clone();
        async move { receipts_writable(&client).await.filter(|(s, _)| s == "True") }
    })
    .await;

    // 3. Only the tenant's namespace refuses: the receipt goes to mom-system, the action runs.
    let _tenant_only = Refusal::new("mom-test-refuse-tenant", Some(n));
    common::eventually("the tenant refusal in force", Duration::from_secs(30), || async {
        refused(&probe(n), "receipts refused by mom-test-refuse-tenant")
    })
    .await;
    common::apply(&agent(n, "displaced", 2));
    common::eventually("the displaced agent's pods", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { (pods_of(&pods, "displaced").await == 2).then_some(()) }
    })
    .await;
    let receipts: Api<ReceiptObject> = Api::namespaced(client.clone(), "mom-system");
    let displaced: Vec<ReceiptObject> = receipts
        .list(&ListParams::default().labels("mom.hypersync.io/subject=displaced"))
        .await
        .unwrap()
        .items
        .into_iter()
        // Its spec record (`agent.change`) was refused in the namespace too and moved alike.
        .filter(|r| r.spec.decision["kind"] != "agent.change")
        .collect();
    assert_eq!(displaced.len(), 1, "the displaced agent's spawn receipt in mom-system");
    assert_eq!(displaced[0].spec.subject.namespace, n);

    // The whole chain verifies: no hole where receipts were refused or moved.
    let (ok, report) = common::verify_cluster_with_published_keys(&client).await;
    assert!(
        ok && report["report"]["problems"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
}
