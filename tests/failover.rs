//! Leader election on the real apiserver: with two operator processes only the Lease holder
//! acts; when it is killed (-9) the standby takes over and acts within the Lease duration (plus
//! the renew-period lags of the protocol and a slack to act: [`failover_bound`]), with
//! no duplicate pods and the receipt chain continuing where the old leader left it (no gap, no
//! fork: `mom verify --cluster` is clean across the change); a SIGTERM releases the Lease at once.
//! The leader label (`mom.hypersync.io/leader=true`, which the chart's extender Service selects)
//! follows the Lease: each process labels a stand-in pod named by its POD_NAME/POD_NAMESPACE, a
//! process starting in a pod that still carries the label removes it, and SIGTERM removes it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mom::operator::crd::{GeometricAgent, Receipt};

fn agent(namespace: &str, name: &str, replicas: u32) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{name}","namespace":"{namespace}"}},
            "spec":{{"workloadType":"batch","replicas":{replicas},"template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

/// The leader label of stand-in pod `name` (None when absent).
async fn leader_label(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name)
        .await
        .unwrap()
        .metadata
        .labels
        .and_then(|l| l.get("mom.hypersync.io/leader").cloned())
}

/// Waits until stand-in pod `name` has the leader label (`Some("true")`) or has none (`None`).
async fn wait_label(pods: &Api<Pod>, name: &str, want: Option<&str>) {
    common::eventually(
        &format!("pod {name} with leader label {want:?}"),
        Duration::from_secs(60),
        || async move { (leader_label(pods, name).await.as_deref() == want).then_some(()) },
    )
    .await;
}

/// A pod for a replica to label as its own: Pending for ever (no scheduler of that name).
fn stand_in(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"schedulerName": "no-such-scheduler", "containers": [{"name": "c", "image": "pause"}]}
    }))
    .unwrap()
}

/// The Lease timings every replica here runs with (the CLI defaults, spelled out because the
/// failover bound is computed from them).
const LEASE_DURATION_SECONDS: u64 = 10;
const RENEW_PERIOD_SECONDS: u64 = 2;
/// What the new leader may take, once it holds the Lease, to reconcile the agent and create
/// its 3 pods (a receipt before each) on a loaded 2-core machine.
const ACT_SLACK_SECONDS: u64 = 10;

/// The promised failover bound. The killed leader renewed at most one renew period before the
/// kill; the standby polls every renew period, so it sees that last record at most one renew
/// period after it was written, counts it expired a Lease duration later, and takes the Lease at
/// its next poll, at most one more renew period on: kill + duration + 2 × renew period; then
/// it acts.
fn failover_bound() -> Duration {
    Duration::from_secs(LEASE_DURATION_SECONDS + 2 * RENEW_PERIOD_SECONDS + ACT_SLACK_SECONDS)
}

fn lease_flags() -> [String; 4] {
    [
        "--lease-duration-seconds".into(),
        LEASE_DURATION_SECONDS.to_string(),
        "--renew-period-seconds".into(),
        RENEW_PERIOD_SECONDS.to_string(),
    ]
}

fn operator(identity: &str, pod: &str, pod_namespace: &str) -> common::OperatorProcess {
    let [d, dv, r, rv] = lease_flags();
    common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity(identity)
        .text_logs()
        .flag(&d, &dv)
        .flag(&r, &rv)
        .in_pod(pod, pod_namespace)
        .spawn()
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("mom-operator-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn the_standby_takes_over_when_the_leader_is_killed_and_a_sigterm_releases_the_lease() {
    // Stand-in pods for the two replicas' own pods.
    let replicas = common::TestNamespace::new("failover-pods").await;
    let stand_ins: Api<Pod> = Api::namespaced(replicas.client(), &replicas.name);
    for name in ["replica-a", "replica-b"] {
        stand_ins.create(&PostParams::default(), &stand_in(name)).await.unwrap();
    }
    let flags = lease_flags();
    let mut args = vec!["--"];
    args.extend(flags.iter().map(String::as_str));
    let mom = common::start_mom(&args, &[("POD_NAME", "replica-a"), ("POD_NAMESPACE", &replicas.name)]);
    common::apply_test_momconfig("full_audit");
    common::wait_config_in_effect(&mom.metrics_url);
    let cp = common::control_plane();
    let client = common::client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mom-system");
    // Replica A labels its pod once it leads; only then is the Lease's holder A (an operator of
    // an earlier test binary on a shared control plane may still hold it until it expires).
    wait_label(&stand_ins, "replica-a", Some("true")).await;
    let first = common::eventually("a leader", Duration::from_secs(30), || {
        let leases = leases.clone();
        async move { holder(&leases).await }
    })
    .await;
    stand_ins
        .patch(
            "replica-b",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {"mom.hypersync.io/leader": "true"}}})),
        )
        .await
        .unwrap();
    // The standby starts in a pod that (stale) says leader: it removes the label at start-up.
    let standby = operator("standby", "replica-b", &replicas.name);
    wait_label(&stand_ins, "replica-b", None).await;
    // The standby is up and polling. Wait until the leader has renewed through a whole window
    // in which a standby that ignored renewals would have taken the Lease (a Lease duration
    // plus two renew periods after the standby came up, by the Lease's own renew stamps); the
    // standby must still not hold it. (Its positive control: below, the same standby takes
    // the Lease once the leader stops renewing.)
    let renewed = |lease: &Lease| lease.spec.as_ref().and_then(|s| s.renew_time.clone()).map(|t| t.0);
    let standby_up = renewed(&leases.get("mom-operator-leader").await.unwrap()).unwrap();
    let window = Duration::from_secs(LEASE_DURATION_SECONDS + 2 * RENEW_PERIOD_SECONDS);
    let live = common::eventually(
        "the leader to renew through a whole expiry window with the standby up",
        window * 3,
        || {
            let leases = leases.clone();
            async move {
                let lease = leases.get("mom-operator-leader").await.ok()?;
                let at = renewed(&lease)?;
                (at.duration_since(standby_up).as_secs_f64() >= window.as_secs_f64()).then_some(lease)
            }
        },
    )
    .await;
    assert_eq!(
        live.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(first.as_str()),
        "the standby stole a live Lease"
    );
    assert_eq!(
        leader_label(&stand_ins, "replica-b").await,
        None,
        "a follower is labelled leader"
    );
    assert_eq!(leader_label(&stand_ins, "replica-a").await.as_deref(), Some("true"));

    // The first leader acts and records.
    let ns = common::TestNamespace::new("failover").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let receipts: Api<Receipt> = Api::namespaced(ns.client(), &ns.name);
    common::apply(&agent(&ns.name, "before", 2));
    common::eventually("the first leader's receipt", Duration::from_secs(60), || {
        let receipts = receipts.clone();
        async move { (!receipts.list(&ListParams::default()).await.ok()?.items.is_empty()).then_some(()) }
    })
    .await;
    common::eventually("the first leader's pods", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { (pods.list(&ListParams::default()).await.ok()?.items.len() >= 2).then_some(()) }
    })
    .await;

    assert!(
        Command::new("kill")
            .arg("-9")
            .arg(mom.operator_pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    let killed = Instant::now();
    // The standby judges expiry by the duration written in the Lease: the one the bound uses.
    let lease = leases.get("mom-operator-leader").await.unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.lease_duration_seconds),
        Some(LEASE_DURATION_SECONDS as i32)
    );
    common::apply(&agent(&ns.name, "after", 3));
    let after: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let after_selector = ListParams::default().labels("mom.hypersync.io/agent=after");
    let bound = failover_bound();
    common::eventually(
        &format!(
            "the standby to create the agent's pods within {bound:?} of the kill (Lease {LEASE_DURATION_SECONDS} s + 2 × renew period {RENEW_PERIOD_SECONDS} s + {ACT_SLACK_SECONDS} s to act)"
        ),
        bound.saturating_sub(killed.elapsed()),
        || {
            let after = after.clone();
            let selector = after_selector.clone();
            async move { (after.list(&selector).await.ok()?.items.len() >= 3).then_some(()) }
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= bound,
        "the standby acted {took:?} after the kill, beyond {bound:?}"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("standby"));
    println!("standby acted {:.1} s after the leader was killed", took.as_secs_f64());
    // The label moved with the Lease. The killed leader could not remove its own; a process
    // restarted in its pod does, at start-up (and stays a follower).
    wait_label(&stand_ins, "replica-b", Some("true")).await;
    {
        let _restarted = operator("restarted-a", "replica-a", &replicas.name);
        wait_label(&stand_ins, "replica-a", None).await;
    }
    // Barrier instead of a pause: a spec change (a rollout setting, no new pods) that the
    // leader must reconcile after the restart. Once the agent's status reports that generation
    // with 3 replicas, a reconcile ran after the leadership settled and saw exactly 3 pods;
    // any duplicate made before then is in the list below.
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), &ns.name);
    let bumped = agents
        .patch(
            "after",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rollout": {"maxSurge": 1}}})),
        )
        .await
        .unwrap();
    let generation = bumped.metadata.generation;
    common::eventually(
        "the leader to reconcile the changed agent (status at its new generation, 3 replicas)",
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            async move {
                let status = agents.get("after").await.ok()?.status?;
                (status.observed_generation == generation && status.replicas == 3).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        after.list(&after_selector).await.unwrap().items.len(),
        3,
        "duplicate pods after failover"
    );

    // One chain across both leaders: the standby's receipts follow the first leader's, and the
    // chain verifies from the first leader's first receipt in this namespace on.
    // Each receipt by its agent: the agent itself for spawns, the pod's agent for binds.
    let mut ours: Vec<(i64, String)> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| {
            let agent = match r.spec.subject.kind.as_str() {
                "Pod" => r.spec.decision["agent"].as_str().unwrap_or_default().to_string(),
                _ => r.spec.subject.name,
            };
            (r.spec.sequence, agent)
        })
        .collect();
    ours.sort();
    let first_after = ours
        .iter()
        .position(|(_, s)| s == "after")
        .expect("a receipt by the standby");
    assert!(
        first_after > 0,
        "no receipt by the first leader before the standby's: {ours:?}"
    );
    assert!(
        ours[..first_after].iter().all(|(_, s)| s == "before"),
        "receipts out of order across the failover: {ours:?}"
    );
    let from = ours[0].0;
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["verify", "--cluster", "--format", "json"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let problems: Vec<&serde_json::Value> = report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["sequence"].as_i64().unwrap_or(-1) >= from)
        .collect();
    assert!(problems.is_empty(), "the chain broke across the failover: {problems:?}");

    let pid = standby.pid().to_string();
    assert!(Command::new("kill").arg("-TERM").arg(&pid).status().unwrap().success());
    common::eventually("the Lease to be released on SIGTERM", Duration::from_secs(10), || {
        let leases = leases.clone();
        async move { holder(&leases).await.is_none().then_some(()) }
    })
    .await;
    wait_label(&stand_ins, "replica-b", None).await;
}
