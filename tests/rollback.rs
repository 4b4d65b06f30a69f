//! Rollback by hand on the real control plane: every change of a GeometricAgent's spec other
//! than `replicas` is recorded as a signed `agent.change` receipt (action `configure`), and
//! `mom rollback AGENT --to SEQ` puts the agent back to the spec such a receipt recorded —
//! keeping today's replica count — after checking the receipt's hash, its signature by a
//! published key and that it is this agent's. Refused, naming why: a receipt of another agent,
//! a forged one (edited content), a sequence with no configure receipt. `--dry-run` writes
//! nothing. An OrchestrationStrategy's spec is recorded the same way (`strategy.change`, when an
//! agent it governs is reconciled under a new generation) and `mom rollback strategy/NAME --to
//! SEQ` puts it back; an agent's receipt is refused for it.

mod common;

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, ListParams, PostParams};
use mom::operator::crd::{GeometricAgent, Receipt};

fn agent(ns: &str, name: &str, replicas: i32, version: &str) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"batch","replicas":{replicas},
              "template":{{"metadata":{{"annotations":{{"example.com/version":"{version}"}}}},
                          "spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

/// The operator's `agent.change` receipts of agent `name`, in chain order, once there are
/// `count`. The forgery this test plants (named `forged-change`) is not one of them.
async fn changes(receipts: &Api<Receipt>, name: &str, count: usize) -> Vec<Receipt> {
    recorded(receipts, "agent.change", name, count).await
}

/// The operator's `strategy.change` receipts of strategy `name`, in chain order, once there are
/// `count`.
async fn strategy_changes(receipts: &Api<Receipt>, name: &str, count: usize) -> Vec<Receipt> {
    recorded(receipts, "strategy.change", name, count).await
}

/// The receipts of decision `kind` about `name`, in chain order, once there are `count` (the
/// planted `forged-change` left out).
async fn recorded(receipts: &Api<Receipt>, kind: &str, name: &str, count: usize) -> Vec<Receipt> {
    common::eventually(
        &format!("{count} {kind} receipts of {name}"),
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
                    .filter(|r| r.spec.decision["kind"] == kind && r.spec.subject.name == name)
                    .filter(|r| r.metadata.name.as_deref() != Some("forged-change"))
                    .collect();
                list.sort_by_key(|r| r.spec.sequence);
                (list.len() >= count).then_some(list)
            }
        },
    )
    .await
}

fn version_of(spec: &serde_json::Value) -> &str {
    spec["template"]["metadata"]["annotations"]["example.com/version"]
        .as_str()
        .unwrap_or_default()
}

/// `mom rollback ARGS…`: (exit code, stdout, stderr).
fn rollback(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .arg("rollback")
        .args(args)
        .env("KUBECONFIG", &common::control_plane().kubeconfig)
        .output()
        .expect("running mom rollback");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_bad_template_change_is_rolled_back_from_its_signed_receipt_and_forged_or_foreign_receipts_are_refused() {
    common::mom();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("rollback").await;
    let n = &ns.name;
    let receipts: Api<Receipt> = Api::namespaced(ns.client(), n);
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), n);

    common::apply(&agent(n, "web", 2, "good"));
    let first = changes(&receipts, "web", 1).await;
    assert_eq!(version_of(&first[0].spec.decision["spec"]), "good");
    assert_eq!(first[0].spec.decision["generation"], 1);
    assert!(first[0].spec.decision["previousGeneration"].is_null());
    let good_seq = first[0].spec.sequence.to_string();

    // A change of replicas alone is scaling (its own receipts), not a spec change: the barrier
    // is the agent reconciled at the new generation with its 3 pods.
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "web", "-n", n, "--replicas", "3"], None);
    assert!(ok, "{err}");
    common::eventually("web reconciled at 3 replicas", Duration::from_secs(60), || {
        let agents = agents.clone();
        let client = ns.client();
        let n = n.clone();
        async move {
            let a = agents.get("web").await.ok()?;
            let observed = a.status.as_ref()?.observed_generation? == a.metadata.generation?;
            (observed && common::live_pods_of(&client, &n, "web").await == 3).then_some(())
        }
    })
    .await;
    assert_eq!(
        changes(&receipts, "web", 1).await.len(),
        1,
        "a scale was recorded as a spec change"
    );

    // The bad change: a new template. Recorded, with the replicas of the time.
    common::apply(&agent(n, "web", 3, "bad"));
    let two = changes(&receipts, "web", 2).await;
    assert_eq!(version_of(&two[1].spec.decision["spec"]), "bad");
    assert_eq!(two[1].spec.decision["previousGeneration"], 2);
    // Someone else's agent, for the refusal below.
    common::apply(&agent(n, "other", 1, "good"));
    let other_seq = changes(&receipts, "other", 1).await[0].spec.sequence.to_string();
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "web", "-n", n, "--replicas", "4"], None);
    assert!(ok, "{err}");

    // Refusals first; none writes anything.
    let generation = || async { agents.get("web").await.unwrap().metadata.generation.unwrap() };
    let before = generation().await;
    let (code, _, err) = rollback(&["web", "-n", n, "--to", &other_seq]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "is about GeometricAgent {n}/other, not GeometricAgent {n}/web"
        )),
        "{err}"
    );
    let (code, _, err) = rollback(&["web", "-n", n, "--to", "999999999"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no Receipt with sequence 999999999"), "{err}");
    // A forgery: the good receipt's content with another spec, under a fresh sequence.
    let mut forged = first[0].clone();
    forged.metadata = kube::api::ObjectMeta {
        name: Some("forged-change".into()),
        namespace: Some(n.clone()),
        labels: first[0].metadata.labels.clone(),
        ..Default::default()
    };
    forged.spec.sequence = 999_999_998;
    forged.spec.decision["spec"]["template"]["spec"]["containers"][0]["image"] = "evil".into();
    receipts
        .create(&PostParams::default(), &forged)
        .await
        .expect("creating the forged receipt as the admin");
    let (code, _, err) = rollback(&["web", "-n", n, "--to", "999999998"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receipt 999999998: its content does not hash to its stored hash"),
        "{err}"
    );
    // Dry run of the real one: it would change the spec, and writes nothing.
    let (code, out, err) = rollback(&["web", "-n", n, "--to", &good_seq, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let dry: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (dry["changed"].as_bool(), dry["dryRun"].as_bool()),
        (Some(true), Some(true)),
        "{out}"
    );
    assert_eq!(generation().await, before, "a refusal or a dry run wrote the agent");

    // The rollback: the good template is back, the replicas stay 4.
    let (code, out, err) = rollback(&["web", "-n", n, "--to", &good_seq]);
    assert_eq!(code, 0, "{err}");
    println!("{out}{err}");
    let rolled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rolled["recordedGeneration"], 1, "{out}");
    assert!(
        rolled["generationAfter"].as_i64() > rolled["generationBefore"].as_i64(),
        "{out}"
    );
    let now = agents.get("web").await.unwrap();
    assert_eq!(now.spec.replicas, 4);
    let template = serde_json::to_value(&now.spec.template).unwrap();
    assert_eq!(
        template["metadata"]["annotations"]["example.com/version"], "good",
        "{template}"
    );
    // The operator records the restored spec as the next change, and rolls the pods back to it.
    let three = changes(&receipts, "web", 3).await;
    assert_eq!(version_of(&three[2].spec.decision["spec"]), "good");
    assert_eq!(three[2].spec.decision["spec"]["replicas"], 4);
    // Control: rolling back to it again changes nothing.
    let (code, out, err) = rollback(&["web", "-n", n, "--to", &good_seq]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""changed":false"#), "{out}");
    let _ = receipts.delete("forged-change", &Default::default()).await;
}

#[tokio::test]
async fn a_strategy_change_is_recorded_and_put_back_by_hand_and_an_agents_receipt_is_refused_for_it() {
    common::mom();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("rollback-strategy").await;
    let n = &ns.name;
    let receipts: Api<Receipt> = Api::namespaced(ns.client(), n);
    let strategy = |max: i32| {
        format!(
            r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy","metadata":{{"name":"tuned","namespace":"{n}"}},
                "spec":{{"scaling":{{"method":"manual","minReplicas":0,"maxReplicas":{max}}}}}}}"#
        )
    };
    common::apply(&strategy(5));
    let mut job: serde_json::Value = serde_json::from_str(&agent(n, "job", 1, "good")).unwrap();
    job["spec"]["strategyRef"] = serde_json::json!({"name": "tuned"});
    common::apply(&job.to_string());
    let first = strategy_changes(&receipts, "tuned", 1).await;
    assert_eq!(first[0].spec.subject.kind, "OrchestrationStrategy");
    assert_eq!(first[0].spec.decision["spec"]["scaling"]["maxReplicas"], 5);
    assert!(first[0].spec.decision["previousGeneration"].is_null());
    let good_seq = first[0].spec.sequence.to_string();

    // The change: the strategy watch wakes the agent, whose reconcile records it.
    common::apply(&strategy(4));
    let two = strategy_changes(&receipts, "tuned", 2).await;
    assert_eq!(two[1].spec.decision["spec"]["scaling"]["maxReplicas"], 4);
    assert_eq!(two[1].spec.decision["previousGeneration"], 1);
    let max_replicas = || {
        common::kubectl(
            &[
                "get",
                "orchestrationstrategy",
                "tuned",
                "-n",
                n,
                "-o",
                "jsonpath={.spec.scaling.maxReplicas}",
            ],
            None,
        )
        .1
    };

    // Refusals: the agent's receipt is not a strategy's, and an unknown kind is named.
    let agent_seq = changes(&receipts, "job", 1).await[0].spec.sequence.to_string();
    let (code, _, err) = rollback(&["strategy/tuned", "-n", n, "--to", &agent_seq]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(r#"records "agent.change", not "strategy.change" (a spec change of kind OrchestrationStrategy); it is an agent's: mom rollback agent/NAME"#),
        "{err}"
    );
    let (code, _, err) = rollback(&["pod/tuned", "-n", n, "--to", &good_seq]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(r#"unknown kind "pod""#), "{err}");
    assert_eq!(max_replicas(), "4", "a refusal wrote the strategy");

    // The rollback, recorded by the operator as the next change.
    let (code, out, err) = rollback(&["strategy/tuned", "-n", n, "--to", &good_seq]);
    assert_eq!(code, 0, "{err}");
    let rolled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            rolled["kind"].as_str(),
            rolled["strategy"].as_str(),
            rolled["changed"].as_bool()
        ),
        (
            Some("OrchestrationStrategy"),
            Some(format!("{n}/tuned").as_str()),
            Some(true)
        ),
        "{out}"
    );
    assert_eq!(max_replicas(), "5");
    let three = strategy_changes(&receipts, "tuned", 3).await;
    assert_eq!(three[2].spec.decision["spec"]["scaling"]["maxReplicas"], 5);
    // Control: again changes nothing.
    let (code, out, err) = rollback(&["strategy/tuned", "-n", n, "--to", &good_seq]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""changed":false"#), "{out}");
}
