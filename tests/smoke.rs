//! Smoke tests proving the local control plane is the real thing: the apiserver reports the
//! pinned version, the real kube-scheduler binds a pod to a kwok node which kwok then runs, and
//! the real kube-controller-manager garbage-collects an owned object.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};

#[tokio::test]
async fn apiserver_reports_the_pinned_kubernetes_version() {
    let client = common::client().await;
    let info = client.apiserver_version().await.expect("GET /version");
    assert_eq!(info.git_version, "v1.36.3");
}

#[tokio::test]
async fn real_scheduler_binds_a_pod_to_a_kwok_node_and_kwok_runs_it() {
    common::ensure_kwok_nodes(1, 2, 1);
    let ns = common::TestNamespace::new("smoke-sched").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hello"},
        "spec": {
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            "nodeSelector": {"type": "kwok"},
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating the pod");
    let (node, phase) = common::eventually("the pod to be bound and running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("hello").await.ok()?;
            let node = p.spec.as_ref()?.node_name.clone()?;
            let phase = p.status.as_ref()?.phase.clone()?;
            (phase == "Running").then_some((node, phase))
        }
    })
    .await;
    assert!(node.starts_with('r'), "bound to an unexpected node {node}");
    assert_eq!(phase, "Running");
}

#[tokio::test]
async fn real_controller_manager_garbage_collects_an_owned_config_map() {
    let ns = common::TestNamespace::new("smoke-gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(ns.client(), &ns.name);
    let owner: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = cms
        .create(&PostParams::default(), &owner)
        .await
        .expect("creating the owner");
    let uid = owner.metadata.uid.clone().expect("owner uid");
    let child: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "child", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
        ]}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &child)
        .await
        .expect("creating the child");
    cms.delete("owner", &common::background_delete())
        .await
        .expect("deleting the owner");
    common::eventually(
        "the garbage collector to delete the child",
        Duration::from_secs(60),
        || {
            let cms = cms.clone();
            async move { matches!(cms.get_opt("child").await, Ok(None)).then_some(()) }
        },
    )
    .await;
}
