//! cpu targets against a real resource metrics API: metrics-server (built from its Go module by
//! `tests/cluster/build.sh`) scrapes kwok's simulated kubelet resource metrics, registered as
//! the APIService `v1beta1.metrics.k8s.io` (`up.sh` with `MOM_METRICS_SERVER=1`). kwok reports
//! each pod's cpu usage from its `kwok.x-k8s.io/usage-cpu` annotation.
//!
//! - an agent whose pods use four times the target utilisation scales up from what the metrics
//!   API reports, with `ScalingReady=True` and no `MetricsUnavailable` condition or event;
//! - the control: an agent whose pods use less than the target, evaluated by the same scaler
//!   from the same API, keeps its replicas.
//!
//! (Without the metrics API the failure path is `tests/scaling.rs`.)

mod common;

use std::time::Duration;

use kube::api::Api;
use mom::operator::crd::GeometricAgent;

/// Utilisation target of both agents: 50 % of the 100m request.
const TARGET: f64 = 0.5;

fn strategy_and_agent(ns: &str, agent: &str, usage_cpu: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[
          {{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy","metadata":{{"name":"{agent}","namespace":"{ns}"}},
           "spec":{{"scaling":{{"method":"reactive","minReplicas":1,"maxReplicas":6,"cooldownSeconds":0,
                               "targets":[{{"metric":"cpu","target":{TARGET}}}]}}}}}},
          {{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{agent}","namespace":"{ns}"}},
           "spec":{{"workloadType":"interactive","replicas":2,"strategyRef":{{"name":"{agent}"}},
                   "template":{{"metadata":{{"annotations":{{"kwok.x-k8s.io/usage-cpu":"{usage_cpu}"}}}},
                               "spec":{{"containers":[{{"name":"c","image":"pause","resources":{{"requests":{{"cpu":"100m"}}}}}}]}}}}}}}}]}}"#
    )
}

async fn agent(ns: &str, name: &str) -> GeometricAgent {
    let api: Api<GeometricAgent> = Api::namespaced(common::client().await, ns);
    api.get(name).await.unwrap()
}

fn scaling_ready(a: &GeometricAgent) -> Option<(String, String, String)> {
    let c = a
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "ScalingReady")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The agent's pods' cpu usage as the metrics API reports it (cores, summed), once it reports
/// every one of `pods` pods.
fn api_cpu(ns: &str, agent: &str, pods: usize) -> Option<f64> {
    let path =
        format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector=mom.hypersync.io/agent%3D{agent}");
    let (ok, out, _) = common::kubectl(&["get", "--raw", &path], None);
    if !ok {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(&out).ok()?;
    let items = body["items"].as_array()?;
    (items.len() >= pods).then(|| {
        mom::operator::metrics_api::total_usage(&path, &body, mom::operator::crd::strategy::TargetMetric::Cpu)
            .unwrap_or(0.0)
    })
}

fn scaler_evaluations() -> f64 {
    let metrics = &common::mom().metrics_url;
    common::http_get(&format!("{metrics}/metrics"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("mom_scaling_decisions_total{") && l.contains("method=\"reactive\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn pods_using_more_cpu_than_the_target_scale_up_from_the_metrics_api_and_pods_using_less_do_not() {
    common::use_private_control_plane_with_metrics_server();
    common::mom_with(&["--scaler-tick-seconds=1"]);
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("scaling-resource").await;
    let n = ns.name.clone();
    // hot: 200m of a 100m request = 200 % against 50 %; cold: 40m = 40 %.
    common::apply(&strategy_and_agent(&n, "hot", "200m"));
    common::apply(&strategy_and_agent(&n, "cold", "40m"));

    // The metrics API serves the pods' simulated usage.
    let hot_usage = common::eventually(
        "the metrics API reporting hot's 2 pods",
        Duration::from_secs(120),
        || {
            let n = n.clone();
            async move { api_cpu(&n, "hot", 2).filter(|u| *u > 0.0) }
        },
    )
    .await;
    assert!(hot_usage > 2.0 * 0.1 * TARGET, "hot's pods use {hot_usage} cores");
    let cold_usage = common::eventually(
        "the metrics API reporting cold's 2 pods",
        Duration::from_secs(120),
        || {
            let n = n.clone();
            async move { api_cpu(&n, "cold", 2).filter(|u| *u > 0.0) }
        },
    )
    .await;
    assert!(cold_usage < 2.0 * 0.1 * TARGET, "cold's pods use {cold_usage} cores");

    // hot scales up, from the metrics API.
    common::eventually("hot scaled above 2 replicas", Duration::from_secs(120), || {
        let n = n.clone();
        async move { (agent(&n, "hot").await.spec.replicas > 2).then_some(()) }
    })
    .await;
    // Its new pods show up in the metrics API after two scrapes (MetricsPending until then).
    common::eventually("ScalingReady=True on hot", Duration::from_secs(60), || {
        let n = n.clone();
        async move { scaling_ready(&agent(&n, "hot").await).filter(|c| c.0 == "True") }
    })
    .await;

    // cold: read by the same scaler from the same API (ScalingReady=True), over several more
    // evaluations, keeps its replicas.
    common::eventually("ScalingReady=True on cold", Duration::from_secs(60), || {
        let n = n.clone();
        async move { scaling_ready(&agent(&n, "cold").await).filter(|c| c.0 == "True") }
    })
    .await;
    let before = scaler_evaluations();
    common::eventually("six more scaler evaluations", Duration::from_secs(60), || async {
        (scaler_evaluations() >= before + 6.0).then_some(())
    })
    .await;
    let cold = agent(&n, "cold").await;
    assert_eq!(cold.spec.replicas, 2, "cold scaled: {:?}", scaling_ready(&cold));
    assert!(agent(&n, "hot").await.spec.replicas > 2);

    // No MetricsUnavailable, neither as a condition nor as an event.
    for name in ["hot", "cold"] {
        let c = scaling_ready(&agent(&n, name).await).expect("ScalingReady");
        assert_ne!(c.1, "MetricsUnavailable", "{name}: {c:?}");
    }
    let (ok, reasons, err) = common::kubectl(&["get", "events", "-n", &n, "-o", "jsonpath={.items[*].reason}"], None);
    assert!(ok, "{err}");
    assert!(
        reasons.contains("Scaled"),
        "positive control: no Scaled event: {reasons}"
    );
    assert!(!reasons.contains("MetricsUnavailable"), "{reasons}");
}
