//! The chart's node policy, against the real apiserver: the operator's ClusterRole grants node
//! `patch` for the anomaly loop (RBAC cannot narrow it to fields), and the
//! ValidatingAdmissionPolicy `<release>-mom-operator-nodes` takes every other change back.
//! Acting as the operator's ServiceAccount with the chart's own RBAC, the anomaly loop's own
//! patch ([`mom::operator::anomaly::patch_node`]) sets, changes and removes the label
//! `mom.hypersync.io/anomalous` and the annotation `mom.hypersync.io/anomaly-flags`, and
//! quarantines and releases a flagged node (MomConfig `spec.anomaly.nodeQuarantine: cordon`):
//! its taint, its cordon and label, and on a node the admin cordoned only the taint, leaving
//! the admin's cordon when released. Adding another taint, removing the admin's taint, cordoning
//! without MOM's mark, lifting the admin's cordon, changing, adding or removing another label or
//! annotation is rejected with a message naming what changed. The cluster admin is not
//! affected, and without the policy's binding the same RBAC would have allowed every one of
//! those writes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use mom::decisions::node_quarantine::{self, QUARANTINE_LABEL, QUARANTINE_TAINT};
use mom::operator::anomaly::{ANOMALOUS_LABEL, FLAGS_ANNOTATION, patch_node, quarantine_inputs};
use mom::operator::crd::momconfig::NodeQuarantine;

/// The chart's operator ServiceAccount, RBAC and node policy for release `release` in `namespace`.
fn render(release: &str, namespace: &str) -> String {
    common::render_operator_rbac_with(release, namespace, "templates/node-policy.yaml")
}

/// Objects applied from a rendering, the test's own Node and a scratch folder; all removed when
/// dropped, however the test ends.
struct Applied(String, String, std::path::PathBuf);

impl Drop for Applied {
    fn drop(&mut self) {
        let _ = common::kubectl(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.0),
        );
        let _ = common::kubectl(&["delete", "node", "--ignore-not-found", "--wait=false", &self.1], None);
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

/// Patches node `name`; Ok or the apiserver's (code, message).
async fn patch(
    client: &kube::Client,
    name: &str,
    patch: &Patch<serde_json::Value>,
    dry_run: bool,
) -> Result<(), (u16, String)> {
    let params = PatchParams {
        dry_run,
        ..Default::default()
    };
    match Api::<Node>::all(client.clone()).patch(name, &params, patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err((s.code, s.message)),
        Err(e) => panic!("patching node {name}: {e}"),
    }
}

/// The operator's `p` is rejected with 403 by `policy`, naming `changed`; the admin's (dry run)
/// is not.
async fn assert_refused(
    operator: &kube::Client,
    admin: &kube::Client,
    policy: &str,
    node_name: &str,
    what: &str,
    p: &Patch<serde_json::Value>,
    changed: &str,
) {
    let (code, denial) = patch(operator, node_name, p, false)
        .await
        .expect_err(&format!("the operator could {what}"));
    assert_eq!(code, 403, "{what}: {denial}");
    for want in [
        policy,
        &format!("it changed {changed} of node {node_name}"),
        &format!(
            "may change only the labels {ANOMALOUS_LABEL} and {QUARANTINE_LABEL}, the annotation {FLAGS_ANNOTATION}, \
             the taint {QUARANTINE_TAINT}:NoSchedule and a cordon marked by {QUARANTINE_LABEL}=cordoned"
        ),
    ] {
        assert!(denial.contains(want), "{what}: {want:?} not in: {denial}");
    }
    println!("{what}: rejected: {denial}");
    patch(admin, node_name, p, true)
        .await
        .unwrap_or_else(|e| panic!("{what}: the admin was stopped: {e:?}"));
}

fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

#[test]
fn the_node_policy_renders_by_default_and_not_when_disabled() {
    let rendered = render("mom", "mom-system");
    assert!(rendered.contains("kind: ValidatingAdmissionPolicy\n"), "{rendered}");
    assert!(
        rendered.contains("kind: ValidatingAdmissionPolicyBinding\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("request.userInfo.username == 'system:serviceaccount:mom-system:mom-operator'"),
        "{rendered}"
    );
    assert!(rendered.contains(&format!("k != '{ANOMALOUS_LABEL}'")), "{rendered}");
    assert!(rendered.contains(&format!("k != '{FLAGS_ANNOTATION}'")), "{rendered}");
    let (ok, out, err) = common::helm(&[
        "template",
        "mom",
        &common::chart_dir(),
        "--set",
        "nodeProtection.enabled=false",
        "--show-only",
        "templates/node-policy.yaml",
    ]);
    assert!(!ok && out.is_empty(), "disabled, the policy still renders: {out}");
    assert!(err.contains("could not find template"), "{err}");
}

#[tokio::test]
async fn the_operator_serviceaccount_may_change_only_the_anomaly_label_and_annotation_of_a_node() {
    let home = common::TestNamespace::new("nodepolicy").await;
    let release = home.name.clone();
    let node_name = format!("{}-node", home.name);
    let dir = std::env::temp_dir().join(format!("mom-nodepolicy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let applied = Applied(render(&release, &home.name), node_name.clone(), dir.clone());
    let (ok, _, err) = common::kubectl(&["apply", "-f", "-"], Some(&applied.0));
    assert!(ok, "applying the chart's RBAC and policy: {err}");
    let policy = format!("{release}-mom-operator-nodes");
    let sa = format!("{release}-mom-operator");
    let operator = common::client_for(&common::service_account_kubeconfig(&dir, &home.name, &sa)).await;
    let admin = common::client().await;

    // The test's own node (no kubelet; tainted so nothing is scheduled onto it), with a label
    // and an annotation that are not the anomaly loop's.
    let node = Node {
        metadata: ObjectMeta {
            name: Some(node_name.clone()),
            labels: Some(BTreeMap::from([("mom.test/keep".to_string(), "a".to_string())])),
            annotations: Some(BTreeMap::from([("mom.test/keep".to_string(), "a".to_string())])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "mom.test/nodepolicy".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("creating the test node");

    let add_taint = || {
        Patch::Json::<serde_json::Value>(
            serde_json::from_value(serde_json::json!([
                {"op": "add", "path": "/spec/taints/-",
                 "value": {"key": "mom.test/evil", "effect": "NoExecute"}}
            ]))
            .unwrap(),
        )
    };
    // Wait until the policy is enforced (the apiserver loads it asynchronously).
    common::eventually("the node policy to be enforced", Duration::from_secs(30), || {
        let operator = operator.clone();
        let name = node_name.clone();
        async move {
            patch(&operator, &name, &add_taint(), true)
                .await
                .err()
                .filter(|(_, message)| message.contains("operator-nodes"))
        }
    })
    .await;

    // Positive control: the anomaly loop's own patch raises, changes and clears the flags.
    let nodes = Api::<Node>::all(operator.clone());
    // Read back as the admin: the operator's role lists and watches nodes but has no `get`.
    let read = Api::<Node>::all(admin.clone());
    let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    patch_node(
        &nodes,
        &read.get(&node_name).await.unwrap(),
        &flags(&["latency-high"]),
        None,
    )
    .await
    .expect("the anomaly loop's raise was rejected");
    let n = read.get(&node_name).await.unwrap();
    assert_eq!(n.labels().get(ANOMALOUS_LABEL).map(String::as_str), Some("true"));
    assert_eq!(
        n.annotations().get(FLAGS_ANNOTATION).map(String::as_str),
        Some("latency-high")
    );
    patch_node(&nodes, &n, &flags(&["latency-high", "loss-high"]), None)
        .await
        .expect("the anomaly loop's change was rejected");
    assert_eq!(
        read.get(&node_name)
            .await
            .unwrap()
            .annotations()
            .get(FLAGS_ANNOTATION)
            .map(String::as_str),
        Some("latency-high,loss-high")
    );
    patch_node(&nodes, &read.get(&node_name).await.unwrap(), &BTreeSet::new(), None)
        .await
        .expect("the anomaly loop's clear was rejected");
    let n = read.get(&node_name).await.unwrap();
    assert!(!n.labels().contains_key(ANOMALOUS_LABEL), "{:?}", n.labels());
    assert!(!n.annotations().contains_key(FLAGS_ANNOTATION), "{:?}", n.annotations());
    assert_eq!(n.labels().get("mom.test/keep").map(String::as_str), Some("a"));

    // The quarantine: flagged under `cordon`, the node is tainted, cordoned and marked; cleared,
    // all three go and the test's own taint stays.
    let quarantine = |n: &Node, f: &BTreeSet<String>| {
        let inputs = quarantine_inputs(n, NodeQuarantine::Cordon, f);
        let out = node_quarantine::decide(&inputs);
        (inputs, out)
    };
    let state = |n: &Node| {
        let spec = n.spec.clone().unwrap_or_default();
        let ours = spec.taints.iter().flatten().any(|t| t.key == QUARANTINE_TAINT);
        let keep = spec.taints.iter().flatten().any(|t| t.key == "mom.test/nodepolicy");
        (
            ours,
            keep,
            spec.unschedulable.unwrap_or(false),
            n.labels().get(QUARANTINE_LABEL).cloned(),
        )
    };
    let raised = flags(&["latency-high"]);
    let n = read.get(&node_name).await.unwrap();
    let (inputs, out) = quarantine(&n, &raised);
    patch_node(&nodes, &n, &raised, Some((&inputs, &out)))
        .await
        .expect("the quarantine was rejected");
    let n = read.get(&node_name).await.unwrap();
    assert_eq!(state(&n), (true, true, true, Some("cordoned".to_string())));
    let (inputs, out) = quarantine(&n, &BTreeSet::new());
    patch_node(&nodes, &n, &BTreeSet::new(), Some((&inputs, &out)))
        .await
        .expect("the release was rejected");
    let n = read.get(&node_name).await.unwrap();
    assert_eq!(state(&n), (false, true, false, None));
    // On a node the admin cordoned: only the taint (label `tainted`); released, the admin's
    // cordon stays.
    patch(
        &admin,
        &node_name,
        &merge(serde_json::json!({"spec": {"unschedulable": true}})),
        false,
    )
    .await
    .unwrap();
    let n = read.get(&node_name).await.unwrap();
    let (inputs, out) = quarantine(&n, &raised);
    patch_node(&nodes, &n, &raised, Some((&inputs, &out)))
        .await
        .expect("the quarantine of a cordoned node was rejected");
    let n = read.get(&node_name).await.unwrap();
    assert_eq!(state(&n), (true, true, true, Some("tainted".to_string())));
    let (inputs, out) = quarantine(&n, &BTreeSet::new());
    patch_node(&nodes, &n, &BTreeSet::new(), Some((&inputs, &out)))
        .await
        .expect("the release of a cordoned node was rejected");
    let n = read.get(&node_name).await.unwrap();
    assert_eq!(state(&n), (false, true, true, None));
    let lifts: Vec<(&str, Patch<serde_json::Value>, &str)> = vec![
        (
            "lift the admin's cordon",
            merge(serde_json::json!({"spec": {"unschedulable": null}})),
            "spec.unschedulable",
        ),
        (
            "mark the admin's cordon as MOM's",
            merge(serde_json::json!({"metadata": {"labels": {QUARANTINE_LABEL: "cordoned"}}})),
            "label mom.hypersync.io/quarantined (marks a cordon MOM did not set)",
        ),
        (
            "lift the admin's cordon while claiming it was MOM's",
            merge(
                serde_json::json!({"metadata": {"labels": {QUARANTINE_LABEL: "cordoned"}}, "spec": {"unschedulable": null}}),
            ),
            "spec.unschedulable, label mom.hypersync.io/quarantined (marks a cordon MOM did not set)",
        ),
    ];
    for (what, p, changed) in &lifts {
        assert_refused(&operator, &admin, &policy, &node_name, what, p, changed).await;
    }
    patch(
        &admin,
        &node_name,
        &merge(serde_json::json!({"spec": {"unschedulable": null}})),
        false,
    )
    .await
    .unwrap();

    // Everything else: rejected, naming what changed. Each is also tried by the admin (dry run),
    // who is not matched, and, at the end, by the operator without the policy's binding.
    let refused: Vec<(&str, Patch<serde_json::Value>, &str)> = vec![
        ("add a taint", add_taint(), "spec.taints"),
        (
            "set unschedulable (cordon)",
            merge(serde_json::json!({"spec": {"unschedulable": true}})),
            "spec.unschedulable",
        ),
        (
            "change another label",
            merge(serde_json::json!({"metadata": {"labels": {"mom.test/keep": "b"}}})),
            "label mom.test/keep",
        ),
        (
            "add another label",
            merge(serde_json::json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})),
            "label node-role.kubernetes.io/control-plane",
        ),
        (
            "remove another label",
            merge(serde_json::json!({"metadata": {"labels": {"mom.test/keep": null}}})),
            "label mom.test/keep",
        ),
        (
            "change another annotation",
            merge(serde_json::json!({"metadata": {"annotations": {"mom.test/keep": "b"}}})),
            "annotation mom.test/keep",
        ),
        (
            "add another annotation",
            merge(serde_json::json!({"metadata": {"annotations": {"mom.test/other": "x"}}})),
            "annotation mom.test/other",
        ),
        (
            "add a finalizer",
            merge(serde_json::json!({"metadata": {"finalizers": ["mom.test/hold"]}})),
            "metadata.finalizers",
        ),
        (
            "remove the admin's taint",
            merge(serde_json::json!({"spec": {"taints": null}})),
            "spec.taints",
        ),
        (
            // Appended (a JSON patch), so only the effect differs from what MOM may write: the
            // other taints, which the node lifecycle controller may change meanwhile, stay.
            "add the quarantine taint with another effect",
            Patch::Json::<serde_json::Value>(
                serde_json::from_value(serde_json::json!([
                    {"op": "add", "path": "/spec/taints/-",
                     "value": {"key": QUARANTINE_TAINT, "effect": "NoExecute"}}
                ]))
                .unwrap(),
            ),
            "spec.taints",
        ),
        (
            "set the flags and cordon in one patch",
            merge(serde_json::json!({
                "metadata": {"labels": {ANOMALOUS_LABEL: "true"}, "annotations": {FLAGS_ANNOTATION: "x"}},
                "spec": {"unschedulable": true}})),
            "spec.unschedulable",
        ),
    ];
    for (what, p, changed) in &refused {
        assert_refused(&operator, &admin, &policy, &node_name, what, p, changed).await;
    }
    // Nothing of it landed.
    let n = read.get(&node_name).await.unwrap();
    let spec = n.spec.clone().unwrap_or_default();
    assert_eq!(spec.unschedulable, None, "{spec:?}");
    // Only the test's own taint; the node lifecycle controller may add its own
    // `node.kubernetes.io/*` taints to this kubelet-less node meanwhile (seen in CI).
    let foreign: Vec<&str> = spec
        .taints
        .iter()
        .flatten()
        .map(|t| t.key.as_str())
        .filter(|k| !k.starts_with("node.kubernetes.io/"))
        .collect();
    assert_eq!(foreign, vec!["mom.test/nodepolicy"], "{spec:?}");
    assert_eq!(n.labels().get("mom.test/keep").map(String::as_str), Some("a"));

    // The policy is what stops the operator: without its binding, the chart's RBAC allows each.
    let (ok, _, err) = common::kubectl(&["delete", "validatingadmissionpolicybinding", &policy], None);
    assert!(ok, "{err}");
    common::eventually(
        "a taint to be allowed without the policy",
        Duration::from_secs(30),
        || {
            let operator = operator.clone();
            let name = node_name.clone();
            async move { patch(&operator, &name, &add_taint(), true).await.ok() }
        },
    )
    .await;
    for (what, p, _) in &refused {
        patch(&operator, &node_name, p, true)
            .await
            .unwrap_or_else(|e| panic!("{what}: refused without the policy's binding: {e:?}"));
    }
    drop(applied);
}
