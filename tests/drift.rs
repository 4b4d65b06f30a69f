//! Drift on the real control plane: a pod of a GeometricAgent changed by someone other than MOM
//! (`kubectl label`, `kubectl set image`; read from the pod's managedFields) is reported in the
//! agent's condition `Drifted` and a Warning Event (reason `ChangedOutsideMom`), naming the pod, the field and the
//! writer; with `spec.onDrift: replace` the changed pod is deleted after an `agent.drift`
//! receipt and re-created from the template. Control: before any edit the condition is False,
//! and with the default `report` nothing is deleted.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use mom::operator::crd::{GeometricAgent, Receipt};

fn agent(ns: &str, on_drift: &str) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"web","namespace":"{ns}"}},
            "spec":{{"workloadType":"batch","replicas":2,"onDrift":"{on_drift}",
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

/// The agent's condition `Drifted` once `check` accepts (status, reason, message).
async fn drifted(agents: &Api<GeometricAgent>, what: &str, check: impl Fn(&str, &str) -> bool) -> String {
    common::eventually(what, Duration::from_secs(60), || {
        let agents = agents.clone();
        let check = &check;
        async move {
            let a = agents.get("web").await.ok()?;
            let c = a.status?.conditions.into_iter().find(|c| c.type_ == "Drifted")?;
            check(&c.status, &c.message).then_some(format!("{} {} {}", c.status, c.reason, c.message))
        }
    })
    .await
}

/// Names of the agent's Ready pods that are not being deleted, once there are 2.
async fn two_ready(pods: &Api<Pod>) -> BTreeSet<String> {
    common::eventually("2 Ready pods of web", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("mom.hypersync.io/agent=web"))
                .await
                .ok()?;
            let ready: BTreeSet<String> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .map(|p| p.name_any())
                .collect();
            (ready.len() == 2 && list.items.len() == 2).then_some(ready)
        }
    })
    .await
}

#[tokio::test]
async fn a_pod_changed_outside_mom_is_reported_naming_field_and_writer_and_replaced_when_the_agent_says_so() {
    common::mom();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("drift").await;
    let n = &ns.name;
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), n);
    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    common::apply(&agent(n, "report"));
    let first = two_ready(&pods).await;
    let c = drifted(&agents, "Drifted False before any edit", |s, _| s == "False").await;
    assert!(c.contains("NoDrift"), "{c}");

    // Report: a label set by hand is named, the pod stays.
    let labelled = first.iter().next().unwrap().clone();
    let (ok, _, err) = common::kubectl(&["label", "pod", &labelled, "-n", n, "example.com/hotfix=1"], None);
    assert!(ok, "{err}");
    let c = drifted(&agents, "Drifted True naming the label", |s, m| {
        s == "True" && m.contains(&labelled)
    })
    .await;
    assert!(
        c.contains(&format!(
            "pod {labelled}: metadata.labels.example.com/hotfix by kubectl-label"
        )),
        "{c}"
    );
    assert!(c.contains("ChangedOutsideMom"), "{c}");
    let events: Api<Event> = Api::namespaced(ns.client(), n);
    common::eventually("a Warning Event Drift", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("ChangedOutsideMom"))
        }
    })
    .await;
    // Barrier: the agent reconciled after the label (its condition says so); the pod is still
    // there a few reconciles later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(two_ready(&pods).await, first, "report deleted a pod");

    // Replace: the labelled pod is replaced, then one whose image is set by hand.
    common::apply(&agent(n, "replace"));
    let second = common::eventually("the labelled pod replaced", Duration::from_secs(60), || {
        let pods = pods.clone();
        let labelled = labelled.clone();
        async move {
            let now = two_ready(&pods).await;
            (!now.contains(&labelled)).then_some(now)
        }
    })
    .await;
    let kept = first.iter().find(|p| **p != labelled).unwrap().clone();
    assert!(second.contains(&kept), "a pod nobody changed was replaced: {second:?}");
    let (ok, _, err) = common::kubectl(&["set", "image", &format!("pod/{kept}"), "-n", n, "c=pause:evil"], None);
    assert!(ok, "{err}");
    common::eventually("the re-imaged pod replaced", Duration::from_secs(60), || {
        let pods = pods.clone();
        let kept = kept.clone();
        async move { (!two_ready(&pods).await.contains(&kept)).then_some(()) }
    })
    .await;
    let c = drifted(&agents, "Drifted False again", |s, _| s == "False").await;
    assert!(c.contains("NoDrift"), "{c}");

    // Each replacement has its receipt, naming the pod, the field and the writer.
    let receipts: Api<Receipt> = Api::namespaced(ns.client(), n);
    let drift: Vec<serde_json::Value> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.decision["kind"] == "agent.drift")
        .map(|r| r.spec.decision)
        .collect();
    let named: BTreeSet<(String, String)> = drift
        .iter()
        .map(|d| (d["pod"].as_str().unwrap().to_string(), d["changes"].to_string()))
        .collect();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(
        named.iter().any(|(p, c)| *p == labelled
            && c.contains("metadata.labels.example.com/hotfix")
            && c.contains("kubectl-label")),
        "{named:?}"
    );
    assert!(
        named
            .iter()
            .any(|(p, c)| *p == kept && c.contains("spec.containers[name=c].image") && c.contains("kubectl-set")),
        "{named:?}"
    );
}
