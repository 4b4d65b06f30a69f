//! Leader fencing on the real apiserver: a leader whose Lease renewals hang (its apiserver
//! connection goes through a proxy that stops forwarding bytes) stops leading at its renew
//! deadline, while the Lease still names it, and a standby with a direct connection takes the
//! Lease only after the Lease duration. Positive control: before the stall the proxied replica led.

mod common;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

const LEASE: &str = "mom-operator-leader";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get(LEASE)
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

fn leader_gauge(op: &common::OperatorProcess) -> Option<String> {
    let text = common::http_get(&format!("http://{}/metrics", op.metrics_addr))?;
    text.lines()
        .find(|l| l.starts_with("mom_leader ") || l.starts_with("mom_leader{"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
}

fn operator(namespace: &str, identity: &str, kubeconfig: Option<std::path::PathBuf>) -> common::OperatorProcess {
    let mut builder = common::OperatorBuilder::new()
        .namespace(namespace)
        .identity(identity)
        .text_logs()
        .outside_any_pod()
        .flag("--lease-duration-seconds", "6")
        .flag("--renew-period-seconds", "1")
        .flag("--lease-renew-deadline-seconds", "3");
    if let Some(path) = kubeconfig {
        builder = builder.kubeconfig(path);
    }
    builder.spawn()
}

#[tokio::test]
async fn a_leader_whose_renewals_hang_stops_leading_at_its_renew_deadline_before_a_standby_takes_the_lease() {
    let ns = common::TestNamespace::new("leader-fencing").await;
    let leases: Api<Lease> = Api::namespaced(ns.client(), &ns.name);
    let dir = std::env::temp_dir().join(format!("mom-leader-fencing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = common::StallableProxy::start(&common::StallableProxy::apiserver());

    let mut a = operator(&ns.name, "fence-a", Some(proxy.kubeconfig(&dir)));
    // Positive control: through the proxy, A takes the Lease and says it leads.
    common::eventually("A holds the Lease", Duration::from_secs(60), || {
        let leases = leases.clone();
        async move { (holder(&leases).await.as_deref() == Some("fence-a")).then_some(()) }
    })
    .await;
    common::eventually("A's leader gauge is 1", Duration::from_secs(30), || async {
        (leader_gauge(&a).as_deref() == Some("1")).then_some(())
    })
    .await;
    let mut b = operator(&ns.name, "fence-b", None);
    common::eventually("B serves metrics as a follower", Duration::from_secs(60), || {
        // A B that exited (e.g. its metrics port was taken meanwhile) fails here with its log.
        if let Some(status) = b.process.try_wait() {
            panic!("B exited ({status}) before serving metrics:\n{}", b.log());
        }
        let gauge = leader_gauge(&b);
        async move { (gauge.as_deref() == Some("0")).then_some(()) }
    })
    .await;

    proxy.stall();
    let stalled = std::time::Instant::now();
    common::eventually("A stops leading", Duration::from_secs(30), || async {
        (leader_gauge(&a).as_deref() == Some("0")).then_some(())
    })
    .await;
    // A figure, not an assertion: with a 3 s renew deadline and 1 s renew period, ~2-4 s.
    println!("stall to step-down: {:.1} s", stalled.elapsed().as_secs_f64());
    // A stepped down at its renew deadline, before the Lease duration: the Lease still names it.
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("fence-a"),
        "B took the Lease before A stepped down\n{}",
        a.log()
    );
    assert!(
        a.log().contains("no successful renew within the renew deadline"),
        "{}",
        a.log()
    );

    // After the Lease duration without change, B takes it.
    common::eventually("B holds the Lease", Duration::from_secs(60), || {
        let leases = leases.clone();
        async move { (holder(&leases).await.as_deref() == Some("fence-b")).then_some(()) }
    })
    .await;
    common::eventually("B's leader gauge is 1", Duration::from_secs(30), || async {
        (leader_gauge(&b).as_deref() == Some("1")).then_some(())
    })
    .await;
    a.kill();
    b.kill();
}

/// SIGTERM is the operator's stop at every stage, also before the apiserver answers: an
/// operator whose apiserver connection hangs (the proxy holds every byte back) exits 0 at once,
/// instead of dying of the signal or waiting out the client's timeouts.
#[tokio::test]
async fn a_sigterm_while_the_apiserver_does_not_answer_stops_the_operator_cleanly_at_once() {
    let ns = common::TestNamespace::new("stop-connecting").await;
    let dir = std::env::temp_dir().join(format!("mom-stop-connecting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = common::StallableProxy::start(&common::StallableProxy::apiserver());
    proxy.stall();
    let mut op = operator(&ns.name, "stop-connecting", Some(proxy.kubeconfig(&dir)));
    common::eventually("the operator to be connecting", Duration::from_secs(30), || {
        let connecting = op.log().contains("connecting to the apiserver");
        async move { connecting.then_some(()) }
    })
    .await;
    // Still connecting: nothing has answered it.
    assert!(!op.log().contains("connected to the apiserver"), "{}", op.log());
    stops_cleanly_on_sigterm(&mut op, "while connecting", 10, "stopped before the apiserver answered");
}

/// The same once connected: an operator that may read nothing (a ServiceAccount without any
/// binding: its node watch is refused, so its node cache never fills) exits 0 at once on
/// SIGTERM, instead of waiting for a cache that will not come. Positive control: it did
/// connect, and it was still waiting for nodes.
#[tokio::test]
async fn a_sigterm_while_the_node_cache_cannot_fill_stops_the_operator_cleanly_at_once() {
    let ns = common::TestNamespace::new("stop-waiting").await;
    let dir = std::env::temp_dir().join(format!("mom-stop-waiting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, _, err) = common::kubectl(&["create", "serviceaccount", "nobody", "-n", &ns.name], None);
    assert!(ok, "{err}");
    let kubeconfig = common::service_account_kubeconfig(&dir, &ns.name, "nobody");
    let mut op = operator(&ns.name, "stop-waiting", Some(kubeconfig));
    common::eventually("the operator to be connected", Duration::from_secs(30), || {
        let connected = op.log().contains("connected to the apiserver");
        async move { connected.then_some(()) }
    })
    .await;
    // Give the refused watch time to be tried; it never syncs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!op.log().contains("serving the scheduler extender"), "{}", op.log());
    stops_cleanly_on_sigterm(
        &mut op,
        "while waiting for nodes",
        15,
        "stopped before the node cache was ready",
    );
}

/// Sends SIGTERM to `op` and asserts it exits 0 within `seconds`, its log saying `logged`;
/// prints how long it took.
fn stops_cleanly_on_sigterm(op: &mut common::OperatorProcess, when: &str, seconds: u64, logged: &str) {
    let asked = std::time::Instant::now();
    let status = op.terminate(Duration::from_secs(seconds));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM {when}: {status:?} (None: still running after {seconds} s)\n{}",
        op.log()
    );
    println!("SIGTERM to exit {when}: {:.2} s", asked.elapsed().as_secs_f64());
    assert!(op.log().contains(logged), "{}", op.log());
}
