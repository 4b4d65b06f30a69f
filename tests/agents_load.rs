//! Many agents applied at once (the smaller, CI-sized version of `make bench-scale`): 300
//! GeometricAgents of one replica each, every one naming the next as its peer (a ring), in one
//! `kubectl apply` under `full_audit`. Every pod ends up bound, the operator's peak resident
//! memory stays under 100 MB + 2 KB per agent (issue "Survive load"; it reached gigabytes
//! before), and `mom verify --cluster` finds no problem in a chain that holds a receipt for every
//! pod created and bound.
//!
//! Runs on a control plane of its own: the memory and the chain are this operator's alone.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

const AGENTS: usize = 300;

/// One multi-document manifest: agent `a{i}` peers with `a{i+1 mod AGENTS}`.
fn ring(ns: &str) -> String {
    let mut out = String::new();
    for i in 0..AGENTS {
        let peer = (i + 1) % AGENTS;
        write!(
            out,
            r#"---
apiVersion: mom.hypersync.io/v1alpha1
kind: GeometricAgent
metadata: {{name: a{i}, namespace: {ns}}}
spec:
  workloadType: interactive
  replicas: 1
  peers: [{{agent: a{peer}}}]
  template:
    metadata: {{labels: {{app: a{i}}}}}
    spec:
      schedulerName: mom-scheduler
      containers: [{{name: c, image: pause, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]
"#
        )
        .unwrap();
    }
    out
}

/// A `kB` field of the operator's /proc status, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the operator is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        * 1024
}

#[tokio::test]
async fn three_hundred_peered_agents_applied_at_once_are_all_bound_within_bounded_memory_and_an_intact_chain() {
    common::use_private_audited_control_plane();
    let mom = common::start_mom(&[], &[]);
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("load").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let idle = status_bytes(mom.operator_pid, "VmRSS");

    let started = std::time::Instant::now();
    common::apply(&ring(&ns.name));
    common::eventually(
        &format!("all {AGENTS} pods bound"),
        Duration::from_secs(300),
        || async {
            let bound = pods
                .list(&ListParams::default().fields("spec.nodeName!="))
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            (bound >= AGENTS).then_some(())
        },
    )
    .await;
    let peak = status_bytes(mom.operator_pid, "VmHWM");
    let limit = 100 * 1024 * 1024 + 2048 * AGENTS as u64;
    println!(
        "{AGENTS} agents bound in {:.1} s; operator RSS idle {} MB, peak {} MB (limit {} MB)",
        started.elapsed().as_secs_f64(),
        idle >> 20,
        peak >> 20,
        limit >> 20
    );
    assert!(
        peak >= idle && idle > 0,
        "the memory reading is not real (idle {idle}, peak {peak})"
    );
    assert!(
        peak < limit,
        "operator peak RSS {} MB is above 100 MB + 2 KB x {AGENTS} agents",
        peak >> 20
    );

    let (ok, report) = common::verify_cluster_with_published_keys(&ns.client()).await;
    assert!(
        ok && report["report"]["problems"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    let receipts = report["report"]["receipts"].as_u64().unwrap_or(0);
    assert!(
        receipts >= 2 * AGENTS as u64,
        "the chain holds {receipts} receipts; a pod create and a bind of each of {AGENTS} agents need {}",
        2 * AGENTS
    );
    drop(mom);
}
