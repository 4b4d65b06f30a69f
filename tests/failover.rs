//! Leader election on the real apiserver: with two operator processes only the Lease holder
//! acts; when it is killed (-9) the standby takes over and acts within the Lease duration, with
//! no duplicate pods; a SIGTERM releases the Lease at once.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
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
    let mom = common::mom();
    let cp = common::control_plane();
    let client = common::client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mom-system");
    let first = common::eventually("a leader", Duration::from_secs(30), || {
        let leases = leases.clone();
        async move { holder(&leases).await }
    })
    .await;

    let standby = Operator(
        Command::new(env!("CARGO_BIN_EXE_mom"))
            .args([
                "operator",
                "--namespace",
                "mom-system",
                "--identity",
                "standby",
                "--log-format",
                "text",
            ])
            .args(["--metrics-addr", &free_addr(), "--extender-addr", &free_addr()])
            .env("KUBECONFIG", &cp.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some(first.as_str()),
        "the standby must not steal a live Lease"
    );

    assert!(
        Command::new("kill")
            .arg("-9")
            .arg(mom.operator_pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    let killed = Instant::now();
    let ns = common::TestNamespace::new("failover").await;
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"after","namespace":"{}"}},
            "spec":{{"workloadType":"batch","replicas":3,"template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#,
        ns.name
    ));
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    common::eventually(
        "the standby to create the agent's pods",
        // Generous: a loaded 2-core CI machine; the time taken is printed, not asserted.
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            async move { (pods.list(&ListParams::default()).await.ok()?.items.len() >= 3).then_some(()) }
        },
    )
    .await;
    let took = killed.elapsed();
    assert_eq!(holder(&leases).await.as_deref(), Some("standby"));
    println!("standby acted {:.1} s after the leader was killed", took.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        3,
        "duplicate pods after failover"
    );

    let pid = standby.0.id().to_string();
    assert!(Command::new("kill").arg("-TERM").arg(&pid).status().unwrap().success());
    common::eventually("the Lease to be released on SIGTERM", Duration::from_secs(10), || {
        let leases = leases.clone();
        async move { holder(&leases).await.is_none().then_some(()) }
    })
    .await;
}
