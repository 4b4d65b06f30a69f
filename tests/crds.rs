//! The four CRDs against the real apiserver: valid examples apply, invalid ones are rejected
//! with a message naming the field, receipts cannot be edited, printer columns show, the scale
//! subresource works, and the operator reports a dangling strategyRef as a condition.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use kube::api::Api;
use mom::operator::crd::GeometricAgent;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples")
}

/// Applies the valid examples once per test binary (tests run in parallel and two concurrent
/// client-side applies of a new object race to create it) so each test can build on them.
fn apply_valid_examples() {
    static APPLIED: std::sync::Once = std::sync::Once::new();
    APPLIED.call_once(|| {
        common::install_crds();
        for dir in [examples(), examples().join("receipt")] {
            let (ok, out, err) = common::kubectl(&["apply", "-f", dir.to_str().unwrap()], None);
            assert!(ok, "a valid example was rejected: {err}\n{out}");
        }
    });
}

#[test]
fn every_valid_example_is_accepted_by_the_apiserver() {
    apply_valid_examples();
    let (ok, out, _) = common::kubectl(&["get", "geometricagents", "-n", "shop", "-o", "name"], None);
    assert!(ok);
    for agent in ["frontend", "api", "cache", "db"] {
        assert!(
            out.contains(&format!("geometricagent.mom.hypersync.io/{agent}")),
            "{agent} missing in {out}"
        );
    }
}

#[test]
fn every_invalid_example_is_rejected_with_a_message_naming_the_field() {
    apply_valid_examples();
    let dir = examples().join("invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 7, "expected the invalid examples, found {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", file.display()))
            .trim()
            .to_string();
        let (ok, out, err) = common::kubectl(&["apply", "-f", file.to_str().unwrap()], None);
        assert!(!ok, "{} was accepted: {out}", file.display());
        assert!(
            err.contains(&expect),
            "{}: expected {expect:?} in the rejection, got: {err}",
            file.display()
        );
    }
}

#[test]
fn a_receipt_cannot_be_edited_or_patched() {
    apply_valid_examples();
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "receipt",
            "example-receipt",
            "-n",
            "shop",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"sequence":7}}"#,
        ],
        None,
    );
    assert!(!ok, "a receipt patch was accepted");
    assert!(err.contains("receipts are immutable"), "{err}");
}

#[test]
fn kubectl_get_shows_the_printer_columns() {
    apply_valid_examples();
    let (ok, out, err) = common::kubectl(&["get", "geometricagents", "-n", "shop"], None);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    for col in ["NAME", "REPLICAS", "READY", "TENANT", "STRATEGY", "AGE"] {
        assert!(header.contains(col), "column {col} missing from {header:?}");
    }
    let (ok, out, _) = common::kubectl(&["get", "receipts", "-n", "shop"], None);
    assert!(ok);
    let header = out.lines().next().unwrap_or_default();
    for col in ["SEQ", "ACTION", "SUBJECT", "AGE"] {
        assert!(header.contains(col), "column {col} missing from {header:?}");
    }
}

#[tokio::test]
async fn kubectl_scale_changes_spec_replicas_through_the_scale_subresource() {
    let ns = common::TestNamespace::new("crd-scale").await;
    common::install_crds();
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent",
            "metadata":{{"name":"scaled","namespace":"{}"}},
            "spec":{{"workloadType":"batch","replicas":1,
                     "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#,
        ns.name
    ));
    let (ok, _, err) = common::kubectl(
        &["scale", "geometricagent", "scaled", "-n", &ns.name, "--replicas", "4"],
        None,
    );
    assert!(ok, "{err}");
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), &ns.name);
    assert_eq!(agents.get("scaled").await.unwrap().spec.replicas, 4);
}

#[tokio::test]
async fn a_dangling_strategy_ref_is_reported_as_a_condition_naming_it() {
    common::mom();
    let ns = common::TestNamespace::new("crd-dangling").await;
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent",
            "metadata":{{"name":"lost","namespace":"{}"}},
            "spec":{{"workloadType":"batch","replicas":0,"strategyRef":{{"name":"no-such-strategy"}},
                     "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#,
        ns.name
    ));
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), &ns.name);
    let condition = common::eventually("a Ready=False condition on the agent", Duration::from_secs(60), || {
        let agents = agents.clone();
        async move {
            let a = agents.get("lost").await.ok()?;
            let c = a.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (c.status == "False").then_some(c)
        }
    })
    .await;
    assert_eq!(condition.reason, "StrategyNotFound");
    assert!(condition.message.contains("no-such-strategy"), "{}", condition.message);
}

#[tokio::test]
async fn only_the_momconfig_named_default_is_in_effect_and_others_are_marked_ignored() {
    common::mom();
    apply_valid_examples();
    common::apply(
        r#"{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"MomConfig","metadata":{"name":"not-default"},
            "spec":{"objectives":{"performance":0.25,"cost":0.25,"reliability":0.25,"sustainability":0.25}}}"#,
    );
    let api: Api<mom::operator::crd::MomConfig> = Api::all(common::client().await);
    let ignored = common::eventually("the Ignored condition", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let c = api
                .get("not-default")
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == "False").then_some(c)
        }
    })
    .await;
    assert_eq!(ignored.reason, "Ignored");
    assert!(ignored.message.contains("not-default"), "{}", ignored.message);
    let status = common::eventually(
        "the default MomConfig's embedding status",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let s = api.get("default").await.ok()?.status?;
                (s.nodes_embedded.unwrap_or(0) > 0
                    && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                .then_some(s)
            }
        },
    )
    .await;
    assert!(status.embedding_map.is_some_and(|m| m > 0.0 && m <= 1.0), "{status:?}");
}

#[tokio::test]
async fn a_strategy_lists_the_agents_that_use_it() {
    common::mom();
    apply_valid_examples();
    let api: Api<mom::operator::crd::OrchestrationStrategy> = Api::namespaced(common::client().await, "shop");
    let status = common::eventually("web-tier's matched agents", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let s = api.get("web-tier").await.ok()?.status?;
            (s.matched_agent_count > 0).then_some(s)
        }
    })
    .await;
    // frontend and api are `interactive` without a strategyRef: selected by web-tier's trigger.
    assert_eq!(status.matched_agents, vec!["api".to_string(), "frontend".to_string()]);
    assert_eq!(status.matched_agent_count, 2);
}
