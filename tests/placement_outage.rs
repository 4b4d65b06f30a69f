//! With MOM down, its pods stay Pending (the extender is not ignorable and binds them, as
//! documented in `manifests/scheduler/mom-scheduler-config.yaml`); when MOM returns on the same
//! address, they are scheduled. Pods of the default scheduler are unaffected throughout.

mod common;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

fn pod(name: &str, scheduler: Option<&str>) -> Pod {
    let mut spec = serde_json::json!({
        "containers": [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": "10m"}}}],
    });
    if let Some(s) = scheduler {
        spec["schedulerName"] = serde_json::json!(s);
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn phase(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.status?.phase
}

#[tokio::test]
async fn mom_pods_wait_while_the_operator_is_down_and_are_placed_when_it_returns() {
    let mom = common::mom();
    let ns = common::TestNamespace::new("outage").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);

    let killed = Command::new("kill")
        .arg("-9")
        .arg(mom.operator_pid.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    pods.create(&PostParams::default(), &pod("geo", Some("mom-scheduler")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("plain", None)).await.unwrap();
    common::eventually("the default scheduler's pod to run", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { (phase(&pods, "plain").await.as_deref() == Some("Running")).then_some(()) }
    })
    .await;
    // The MOM pod has been tried by its scheduler: PodScheduled False (set when an attempt
    // fails) or bound. Only then does "not bound" mean the outage held it back.
    let waiting = common::eventually("mom-scheduler to try the MOM pod", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("geo").await.ok()?;
            let bound = p.spec.as_ref()?.node_name.is_some();
            let failed = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "PodScheduled" && c.status == "False");
            (bound || failed).then_some(p)
        }
    })
    .await;
    assert!(
        waiting.spec.and_then(|s| s.node_name).is_none(),
        "bound while MOM was down"
    );
    assert_eq!(waiting.status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    let addr = |url: &str| url.trim_start_matches("http://").to_string();
    // Killed when the test ends, however it ends. Same addresses and certificates, so the
    // scheduler (which authenticates with its client certificate) reaches it as before.
    let builder = common::OperatorBuilder::new()
        .namespace("mom-system")
        .text_logs()
        .metrics_addr(&addr(&mom.metrics_url))
        .extender_addr(&mom.extender_addr());
    let builder = match &mom.tls_dir {
        Some(dir) => builder.extender_tls(dir),
        None => builder,
    };
    let _operator = builder.spawn();
    common::eventually(
        "the MOM pod to be scheduled after the restart",
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            async move { (phase(&pods, "geo").await.as_deref() == Some("Running")).then_some(()) }
        },
    )
    .await;
}
