//! One undecodable GeometricAgent stops nothing else: an agent whose pod template has
//! `containerPort: "http"` (accepted by the apiserver: the template schema is open) is skipped,
//! gets `Ready=False` (reason `InvalidSpec`) and a Warning Event naming the field, while another
//! tenant's agent is still created, scaled and given status by the same operator.

mod common;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use mom::operator::crd::GeometricAgent;

fn agent(ns: &str, name: &str, replicas: i32, port: serde_json::Value) -> String {
    serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"workloadType": "batch", "replicas": replicas,
                 "template": {"spec": {"containers": [{"name": "c", "image": "pause",
                     "ports": [{"containerPort": port}]}]}}}
    })
    .to_string()
}

#[tokio::test]
async fn a_malformed_agent_in_one_namespace_does_not_stop_another_tenants_agent() {
    common::install_crds();
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    common::apply_test_momconfig("none");
    let bad_ns = common::TestNamespace::new("malformed").await;
    let good_ns = common::TestNamespace::new("wellformed").await;
    let client = good_ns.client();
    // The malformed agent exists before the operator starts (its first list holds it).
    common::apply(&agent(&bad_ns.name, "broken", 2, "http".into()));
    let operator = common::OperatorBuilder::new()
        .namespace("mom-system")
        .text_logs()
        .spawn();
    common::apply(&agent(&good_ns.name, "healthy", 1, 8080.into()));

    let first = tokio::time::timeout(Duration::from_secs(60), async {
        while common::live_pods_of(&client, &good_ns.name, "healthy").await != 1 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "the healthy agent got no pod; operator log:\n{}",
        operator.log()
    );
    Api::<GeometricAgent>::namespaced(client.clone(), &good_ns.name)
        .patch(
            "healthy",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    common::eventually("the healthy agent scaled to 2", Duration::from_secs(60), || async {
        (common::live_pods_of(&client, &good_ns.name, "healthy").await == 2).then_some(())
    })
    .await;
    // The status loop and the agent controller keep writing its status.
    common::eventually("the healthy agent's status", Duration::from_secs(60), || async {
        let (_, out, _) = common::kubectl(
            &[
                "get",
                "geometricagent",
                "healthy",
                "-n",
                &good_ns.name,
                "-o",
                "jsonpath={.status.replicas}",
            ],
            None,
        );
        (out.trim() == "2").then_some(())
    })
    .await;

    // The malformed agent: no pods, a condition and an Event naming the field.
    assert_eq!(common::live_pods_of(&client, &bad_ns.name, "broken").await, 0);
    let field = "spec.template.spec.containers[0].ports[0].containerPort";
    let condition = common::eventually("the InvalidSpec condition", Duration::from_secs(60), || async {
        let (_, out, _) = common::kubectl(
            &["get", "geometricagent", "broken", "-n", &bad_ns.name, "-o",
              "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}|{.status.conditions[?(@.type==\"Ready\")].message}"],
            None,
        );
        out.starts_with("InvalidSpec|").then_some(out)
    })
    .await;
    assert!(
        condition.contains(field) && condition.contains("\"http\""),
        "{condition}"
    );
    let (ok, events, err) = common::kubectl(
        &[
            "get",
            "events",
            "-n",
            &bad_ns.name,
            "--field-selector",
            "reason=InvalidSpec",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(events.contains(field), "no InvalidSpec Event naming {field}: {events}");
}
