//! Watch gaps on the real control plane: pods deleted while the apiserver is down (straight from
//! etcd, with etcd's history compacted so no watch can replay the deletions) leave the
//! operator's view once the apiserver is back, through the pod watch's re-list. Positive
//! control: before the gap the view counted the pods.
//!
//! It restarts the apiserver, so it runs on a private control plane.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};

const PODS: usize = 4;

/// `mom_view_objects{kind="<kind>"}` from the operator's metrics.
fn view_objects(op: &common::OperatorProcess, kind: &str) -> Option<i64> {
    let text = common::http_get(&format!("http://{}/metrics", op.metrics_addr))?;
    let prefix = format!("mom_view_objects{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn restart_apiserver(action: &str, state: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/restart-apiserver.sh");
    let out = Command::new(script).arg(action).arg(state).output().unwrap();
    assert!(
        out.status.success(),
        "restart-apiserver.sh {action} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// POSTs `body` to etcd's JSON gateway and returns the answer.
fn etcd(port: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", "-X", "POST", "-d", &body.to_string()])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcd {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn pods_deleted_while_the_apiserver_was_down_leave_the_view_after_the_watch_re_lists() {
    common::use_private_audited_control_plane();
    let state = common::control_plane().kubeconfig.parent().unwrap().to_path_buf();
    let etcd_port = std::fs::read_to_string(state.join("etcd-port"))
        .unwrap()
        .trim()
        .to_string();
    common::ensure_kwok_nodes(1, 1, 2);
    let ns = common::TestNamespace::new("watch-relist").await;
    let op = common::OperatorBuilder::new()
        .namespace(&ns.name)
        .identity("relist")
        .text_logs()
        .outside_any_pod()
        .spawn();

    let nodes: Api<Node> = Api::all(ns.client());
    let node = nodes.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let before = common::eventually(
        "the operator's view reports its pods",
        Duration::from_secs(60),
        || async { view_objects(&op, "pods") },
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let names: Vec<String> = (0..PODS).map(|i| format!("gap-{i}")).collect();
    for name in &names {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    // Positive control: the watch put them in the view.
    let with_pods = before + PODS as i64;
    common::eventually("the view counts the new pods", Duration::from_secs(30), || async {
        (view_objects(&op, "pods") == Some(with_pods)).then_some(())
    })
    .await;

    // The gap: the apiserver goes away, the pods go from etcd, and etcd forgets the history.
    restart_apiserver("stop", &state);
    let mut revision = String::new();
    for name in &names {
        let key = format!("/registry/pods/{}/{name}", ns.name);
        let answer = etcd(
            &etcd_port,
            "/v3/kv/deleterange",
            serde_json::json!({"key": base64(key.as_bytes())}),
        );
        assert_eq!(answer["deleted"], "1", "deleting {key} from etcd: {answer}");
        revision = answer["header"]["revision"].as_str().unwrap().to_string();
    }
    etcd(
        &etcd_port,
        "/v3/kv/compaction",
        serde_json::json!({"revision": revision, "physical": true}),
    );
    restart_apiserver("start", &state);
    let back = Instant::now();

    for name in &names {
        assert!(
            pods.get_opt(name).await.unwrap().is_none(),
            "pod {name} is still in the API"
        );
    }
    common::eventually(
        "the view drops the pods deleted during the gap",
        Duration::from_secs(90),
        || async { (view_objects(&op, "pods") == Some(before)).then_some(()) },
    )
    .await;
    // A figure, not an assertion.
    println!(
        "apiserver ready to view corrected: {:.1} s",
        back.elapsed().as_secs_f64()
    );
    let log = op.log();
    assert!(
        log.contains(&format!("re-list removed {PODS} pods")),
        "the operator did not log the re-list; log tail:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
}
