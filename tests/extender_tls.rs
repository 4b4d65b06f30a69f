//! The extender over TLS on the real control plane: a real kube-scheduler configured with
//! `enableHTTPS` and the CA schedules through MOM's HTTPS extender; a scheduler that does not
//! trust the certificate binds nothing; bad certificate files stop the operator naming them.
//!
//! The certificates are made here with openssl in the layout of a cert-manager Secret
//! (`tls.crt`, `tls.key`, `ca.crt`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{TestNamespace, control_plane, eventually};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh CA and a serving certificate for 127.0.0.1 signed by it (P-256 keys), laid out as a
/// cert-manager Secret is mounted: `ca.crt`, `tls.crt`, `tls.key`.
fn tls_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-extender-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let subject = format!("/CN=mom-test-ca-{name}");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca: Vec<&str> = ["req", "-x509"]
        .into_iter()
        .chain(ec)
        .chain(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", &subject])
        .collect();
    openssl(&dir, &ca);
    let csr: Vec<&str> = ["req"]
        .into_iter()
        .chain(ec)
        .chain(["-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=mom-extender"])
        .collect();
    openssl(&dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    dir
}

struct TlsMom {
    mom: common::Mom,
    dir: PathBuf,
}

static TLS_MOM: OnceLock<TlsMom> = OnceLock::new();

const TLS_SCHEDULER: &str = "mom-scheduler-tls";

/// MOM with its extender on HTTPS and a scheduler (`mom-scheduler-tls`) that trusts its CA.
fn tls_mom() -> &'static TlsMom {
    TLS_MOM.get_or_init(|| {
        let dir = tls_dir("good");
        // It binds for both scheduler profiles of this file, so the untrusting one is refused
        // by TLS alone.
        let mom = common::start_mom(
            &[
                "--tls-dir",
                dir.to_str().unwrap(),
                "--",
                "--scheduler-name",
                "mom-scheduler-untrusting",
            ],
            &[("MOM_SCHEDULER_NAME", TLS_SCHEDULER)],
        );
        assert!(mom.extender_url.starts_with("https://"), "{}", mom.extender_url);
        TlsMom { mom, dir }
    })
}

fn pod(name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]
        }
    }))
    .unwrap()
}

fn metric_count(metrics: &str, verb: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.contains("extender_request_duration_seconds_count") && l.contains(&format!("verb=\"{verb}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("{url}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_scheduler_trusting_the_ca_places_pods_through_the_https_extender() {
    let tls = tls_mom();
    let ns = TestNamespace::new("tls-ok").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let binds_before = metric_count(&scrape(&tls.mom.metrics_url), "bind");
    pods.create(&PostParams::default(), &pod("over-tls", TLS_SCHEDULER))
        .await
        .unwrap();
    let node = eventually(
        "the pod to be bound by mom-scheduler-tls",
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            async move {
                pods.get("over-tls")
                    .await
                    .ok()
                    .and_then(|p| p.spec.and_then(|s| s.node_name))
            }
        },
    )
    .await;
    assert!(!node.is_empty());
    // The extender itself bound it (bindVerb), over TLS: its bind counter moved.
    let binds_after = metric_count(&scrape(&tls.mom.metrics_url), "bind");
    assert!(
        binds_after > binds_before,
        "the extender's bind count did not move ({binds_before} → {binds_after})"
    );
    // And plain HTTP on the extender port is refused (no silent downgrade).
    let plain = tls.mom.extender_url.replacen("https://", "http://", 1);
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("{plain}/healthz")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain HTTP was answered on the TLS port");
    // The CA verifies the served certificate for 127.0.0.1.
    let out = Command::new("curl")
        .args([
            "-sf",
            "--cacert",
            tls.dir.join("ca.crt").to_str().unwrap(),
            &format!("{}/healthz", tls.mom.extender_url),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl with the CA failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_scheduler_that_does_not_trust_the_certificate_binds_nothing_and_says_why() {
    let tls = tls_mom();
    let cp = control_plane();
    let state = cp.kubeconfig.parent().unwrap();
    let other_ca = tls_dir("other");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/mom-scheduler.sh"))
        // Stops with this test process even if the test fails before it kills it below.
        .args(["--watch-pid", &std::process::id().to_string()])
        .arg(state)
        .arg(&tls.mom.extender_url)
        .arg(other_ca.join("ca.crt"))
        .env("MOM_SCHEDULER_NAME", "mom-scheduler-untrusting")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sched_pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // Killed when this test ends, passed or failed (the unwinding of a panic drops it too).
    let _scheduler = KillOnDrop(sched_pid);

    let ns = TestNamespace::new("tls-bad").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    pods.create(&PostParams::default(), &pod("untrusted", "mom-scheduler-untrusting"))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(ns.client(), &ns.name);
    let message = eventually(
        "a FailedScheduling event naming the certificate problem",
        Duration::from_secs(90),
        || {
            let events = events.clone();
            async move {
                events
                    .list(&ListParams::default().fields("involvedObject.name=untrusted"))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                    .filter_map(|e| e.message)
                    .find(|m| m.contains("certificate") || m.contains("x509"))
            }
        },
    )
    .await;
    assert!(
        message.contains("unknown authority") || message.contains("x509"),
        "{message}"
    );
    let node = pods.get("untrusted").await.unwrap().spec.and_then(|s| s.node_name);
    assert_eq!(node, None, "a pod was bound although the extender could not be trusted");
}

/// Sends SIGTERM to a process when dropped.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

#[test]
fn the_operator_refuses_to_start_with_an_unreadable_certificate_and_names_the_file() {
    let missing = std::env::temp_dir().join("mom-no-such-dir/tls.crt");
    let out = common::OperatorBuilder::new()
        .namespace("mom-system")
        .metrics_addr("127.0.0.1:0")
        .extender_addr("127.0.0.1:0")
        .flag("--extender-tls-cert", missing.to_str().unwrap())
        .flag("--extender-tls-key", "/dev/null")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the operator started with a missing certificate");
    assert!(stderr.contains("mom-no-such-dir/tls.crt"), "{stderr}");
}

#[test]
fn the_certificate_flag_needs_the_key_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["operator", "--extender-tls-cert", "/tmp/tls.crt"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--extender-tls-key"), "{stderr}");
}
