//! The extender's trust boundary on the real control plane, set up as the chart and `make demo`
//! set it up (mutual TLS from `tests/cluster/extender-certs.sh`): a caller without the
//! scheduler's client certificate gets 401 from filter, prioritize and bind and changes
//! nothing, one with a certificate from another CA does not even finish the handshake, a bind
//! for a pod of another scheduler is refused, and the real mom-scheduler still places pods.
//! Slow and idle sockets on both servers are closed by the server.

mod common;
mod placement_support;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use placement_support::{agent, running_pods};

/// curl's HTTP status and body for a POST of `body` to `url` with extra arguments.
fn post(url: &str, body: &str, tls: &[String]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
        ])
        .args(["-H", "Content-Type: application/json"])
        .args(tls)
        .args(["--data", body, url])
        .output()
        .expect("running curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (out.status.success(), code.to_string(), body.to_string())
}

/// A made-up pod claiming strict isolation for tenant "x", as an attacker would send it.
fn forged_prioritize(nodes: &[String]) -> String {
    serde_json::json!({
        "Pod": {
            "metadata": {"name": "forged", "namespace": "default", "uid": "forged-uid",
                         "labels": {"mom.hypersync.io/tenant": "x", "mom.hypersync.io/isolation": "strict"}},
            "spec": {"containers": [{"name": "c", "image": "pause",
                      "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
        },
        "NodeNames": nodes,
    })
    .to_string()
}

fn only_server_ca(dir: &Path) -> Vec<String> {
    vec!["--cacert".into(), dir.join("ca.crt").to_string_lossy().into_owned()]
}

/// A client certificate from a CA the extender does not trust.
fn foreign_client(dir: &Path) -> Vec<String> {
    let foreign = dir
        .parent()
        .unwrap()
        .join(format!("foreign-client-{}", std::process::id()));
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/extender-certs.sh"))
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = |f: &str| foreign.join(f).to_string_lossy().into_owned();
    vec![
        "--cacert".into(),
        dir.join("ca.crt").to_string_lossy().into_owned(),
        "--cert".into(),
        path("client.crt"),
        "--key".into(),
        path("client.key"),
    ]
}

#[tokio::test]
async fn only_the_schedulers_certificate_reaches_the_verbs_and_the_scheduler_still_places_pods() {
    placement_support::setup();
    let mom = common::mom();
    let dir = mom
        .tls_dir
        .clone()
        .expect("start-mom.sh runs the extender with mutual TLS by default");
    let nodes: Vec<String> = placement_support::node_labels(common::client().await)
        .await
        .into_keys()
        .collect();
    let forged = forged_prioritize(&nodes);

    // No client certificate: 401 naming what is missing, on every verb.
    for verb in ["filter", "prioritize", "bind"] {
        let body = if verb == "bind" {
            r#"{"PodName":"x","PodNamespace":"default","PodUID":"u","Node":"n"}"#.to_string()
        } else {
            forged.clone()
        };
        let (ok, code, answer) = post(&format!("{}/{verb}", mom.extender_url), &body, &only_server_ca(&dir));
        assert!(ok, "curl failed on {verb}");
        assert_eq!(code, "401", "{verb} answered an unauthenticated caller: {answer}");
        assert!(answer.contains("client certificate"), "{answer}");
    }
    // A certificate from another CA: the handshake itself fails.
    let (ok, code, _) = post(
        &format!("{}/prioritize", mom.extender_url),
        &forged,
        &foreign_client(&dir),
    );
    assert!(
        !ok || code == "000",
        "a foreign client certificate got an HTTP answer: {code}"
    );
    // /healthz stays open to probes without a certificate.
    let (ok, _, _) = post(&format!("{}/healthz", mom.extender_url), "", &only_server_ca(&dir));
    assert!(ok);

    // Positive control: the scheduler's certificate gets scores.
    let (ok, code, answer) = post(
        &format!("{}/prioritize", mom.extender_url),
        &forged,
        &mom.curl_tls_args(),
    );
    assert!(ok && code == "200", "{code}: {answer}");
    let scores: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(scores.as_array().map(Vec::len), Some(nodes.len()), "{answer}");
    // Unbind what that forged prioritize assumed, as the scheduler's next filter would.
    let (ok, code, _) = post(&format!("{}/filter", mom.extender_url), &forged, &mom.curl_tls_args());
    assert!(ok && code == "200");

    // Authenticated, but the pod asked for another scheduler: MOM does not bind it. (The
    // leader check comes first: wait for the Lease, or the refusal says "not the leader".)
    mom.wait_leading().await;
    let ns = common::TestNamespace::new("extender-auth").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "elsewhere"},
        "spec": {"schedulerName": "someone-else", "containers": [{"name": "c", "image": "pause"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let bind = serde_json::json!({
        "PodName": "elsewhere", "PodNamespace": ns.name,
        "PodUID": pod.metadata.uid.unwrap(), "Node": nodes[0],
    })
    .to_string();
    let (ok, code, answer) = post(&format!("{}/bind", mom.extender_url), &bind, &mom.curl_tls_args());
    assert!(ok && code == "200", "{code}: {answer}");
    assert!(
        answer.contains("spec.schedulerName") && answer.contains("someone-else"),
        "{answer}"
    );
    let after = pods.get("elsewhere").await.unwrap();
    assert_eq!(
        after.spec.and_then(|s| s.node_name),
        None,
        "MOM bound another scheduler's pod"
    );

    // The real scheduler, with its client certificate, still places MOM's pods.
    common::apply(&agent(&ns.name, "web", 2, "", ""));
    let placed = running_pods(&ns, "web", 2).await;
    assert_eq!(placed.len(), 2);
}

/// Whether the server closed `stream` (EOF or reset) before `limit`.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slow_and_idle_sockets_are_closed_by_both_servers_which_keep_answering() {
    let mom = common::mom();
    let metrics = mom.metrics_url.trim_start_matches("http://").to_string();
    let extender = mom.extender_addr();
    use std::io::Write;
    // On each server: idle sockets (nothing sent: no TLS handshake on the extender, no headers
    // on the metrics server) and stalled headers.
    let mut sockets = Vec::new();
    for addr in [&metrics, &extender] {
        for i in 0..40 {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 && addr == &metrics {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            }
            sockets.push((addr.clone(), s));
        }
    }
    // The servers still answer while those sockets are open.
    assert!(common::http_get(&format!("http://{metrics}/healthz")).is_some());
    let open: Vec<String> = sockets
        .iter_mut()
        .filter_map(|(addr, s)| (!closed_by_server(s, Duration::from_secs(30))).then(|| addr.clone()))
        .collect();
    assert!(open.is_empty(), "sockets still open after 30 s: {open:?}");
    // Positive control: a socket that sends a whole request gets an answer, not a close.
    let mut s = TcpStream::connect(&metrics).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
