//! Batch agents on the real control plane (GeometricAgent `spec.batch`, MomConfig
//! `spec.pricing`): without pricing the agent is not scaled (`ScalingReady=False`, `NoPricing`);
//! with a spot pool at 0.1 per replica-hour holding one replica and the default pool at 1.0, the
//! scaler plans 0.01 replica-hours into the spot pool (one replica), records a `batch.plan`
//! receipt before `spec.replicas` changes, the pod requires a spot node and binds to one, the
//! Ready time is counted in `status.batch`, and once the work is done the agent scales to 0
//! (`BatchComplete`); `mom whatif --cluster` rebuilds it from the plans' receipts and runs it
//! planned and at once; `mom verify --replay` reproduces every plan. Admission refuses
//! `spec.batch` on a non-batch agent, naming the field. A second agent whose deadline has
//! passed, with a budget of 0, runs at full width over both pools, flagged late and over budget.
//!
//! Runs on a control plane of its own: it labels nodes with pools.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mom::operator::crd::{GeometricAgent, Receipt};

/// `ScalingReady` of the agent: (status, reason, message).
async fn scaling_ready(agents: &Api<GeometricAgent>, name: &str) -> Option<(String, String, String)> {
    let a = agents.get(name).await.ok()?;
    let c = a.status?.conditions.into_iter().find(|c| c.type_ == "ScalingReady")?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test]
async fn a_batch_agent_runs_its_work_in_the_cheap_spot_pool_and_scales_to_zero_when_it_is_done() {
    common::use_private_control_plane();
    common::mom_with(&["--scaler-tick-seconds=1"]);
    common::apply_test_momconfig("full_audit");
    // Two of the kwok nodes form the spot pool; the others have no pool label (`default`).
    let (ok, out, err) = common::kubectl(&["get", "nodes", "-o", "name"], None);
    assert!(ok, "{err}");
    let nodes: Vec<&str> = out.lines().map(|l| l.trim_start_matches("node/")).collect();
    assert!(nodes.len() >= 4, "{out}");
    let spot: Vec<&str> = nodes[..2].to_vec();
    for n in &spot {
        let (ok, _, err) = common::kubectl(&["label", "node", n, "mom.hypersync.io/pool=spot", "--overwrite"], None);
        assert!(ok, "{err}");
    }
    let ns = common::TestNamespace::new("batch").await;
    let n = ns.name.as_str();
    let client = ns.client();
    let agents: Api<GeometricAgent> = Api::namespaced(client.clone(), n);
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);

    // Admission: spec.batch needs workloadType batch.
    let deadline = (k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1)).to_string();
    let agent = |name: &str, workload: &str| {
        format!(
            r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"{name}","namespace":"{n}"}},
                "spec":{{"workloadType":"{workload}","replicas":0,
                  "batch":{{"replicaHours":0.01,"deadline":"{deadline}","maxReplicas":2}},
                  "template":{{"spec":{{"containers":[{{"name":"c","image":"pause",
                    "resources":{{"requests":{{"cpu":"100m","memory":"64Mi"}}}}}}]}}}}}}}}"#
        )
    };
    let (ok, _, err) = common::kubectl(&["apply", "-f", "-"], Some(&agent("service", "interactive")));
    assert!(!ok && err.contains("spec.batch needs spec.workloadType batch"), "{err}");

    // No pricing yet: not scaled, and the condition says why.
    common::apply(&agent("render", "batch"));
    let (status, reason, message) = common::eventually("ScalingReady NoPricing", Duration::from_secs(30), || async {
        scaling_ready(&agents, "render").await.filter(|c| c.1 == "NoPricing")
    })
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("spec.pricing"), "{reason}: {message}");
    assert_eq!(agents.get("render").await.unwrap().spec.replicas, 0);

    let pricing = serde_json::json!({"spec": {"pricing": {"slotSeconds": 60, "pools": {
        "spot": {"price": [0.1], "capacity": [1]},
        "default": {"price": [1.0]}}}}})
    .to_string();
    let (ok, _, err) = common::kubectl(
        &["patch", "momconfig", "default", "--type", "merge", "-p", &pricing],
        None,
    );
    assert!(ok, "{err}");

    // The plan: one replica in the spot pool, recorded before spec.replicas changed.
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let first = common::eventually("a batch.plan receipt", Duration::from_secs(60), || {
        let receipts = receipts.clone();
        async move {
            let mut plans: Vec<Receipt> = receipts
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|r| r.spec.decision["kind"] == "batch.plan")
                .collect();
            plans.sort_by_key(|r| r.spec.sequence);
            plans.into_iter().next()
        }
    })
    .await;
    let d = &first.spec.decision;
    assert_eq!(d["output"]["replicas"], 1, "{d}");
    assert_eq!(d["output"]["pools"], serde_json::json!({"spot": 1}), "{d}");
    assert!(
        d["output"]["plannedCost"].as_f64().unwrap() < d["output"]["atOnceCost"].as_f64().unwrap() + 1e-12,
        "{d}"
    );
    assert_eq!(d["inputs"]["job"]["maxReplicas"], 2, "{d}");

    // The pod requires the spot pool and binds there.
    let explain = || {
        let (_, pods, _) = common::kubectl(&["get", "pods,events", "-n", n, "-o", "wide"], None);
        let (_, agent, _) = common::kubectl(&["get", "geometricagent", "render", "-n", n, "-o", "yaml"], None);
        format!("{pods}\n{agent}")
    };
    let pod = common::eventually_explained(
        "a bound pod",
        Duration::from_secs(60),
        || async {
            pods.list(&ListParams::default().labels("mom.hypersync.io/agent=render"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        },
        explain,
    )
    .await;
    let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    assert!(
        spot.contains(&node.as_str()),
        "bound to {node}, not a spot node {spot:?}"
    );
    let terms = serde_json::to_value(&pod.spec.as_ref().unwrap().affinity).unwrap();
    assert!(
        terms.to_string().contains("mom.hypersync.io/pool") && terms.to_string().contains("spot"),
        "{terms}"
    );

    // A deadline already past and a budget of 0: the work runs at full width at once (spot
    // holds one replica, the default pool the other), flagged late and over budget. Were the
    // deadline ignored, the plan would wait in the cheap spot pool; were the budget ignored,
    // withinBudget would be absent.
    let late = agent("late", "batch")
        .replace(&deadline, "2020-01-01T00:00:00Z")
        .replace(r#""maxReplicas":2}"#, r#""maxReplicas":2,"budget":0}"#);
    common::apply(&late);
    let late_plan = common::eventually("the late agent's batch.plan receipt", Duration::from_secs(60), || {
        let receipts = receipts.clone();
        async move {
            receipts
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|r| r.spec.decision["kind"] == "batch.plan" && r.spec.subject.name == "late")
                .min_by_key(|r| r.spec.sequence)
        }
    })
    .await;
    let d = &late_plan.spec.decision;
    assert_eq!(d["output"]["deadlineMet"], false, "{d}");
    assert_eq!(d["output"]["replicas"], 2, "{d}");
    assert_eq!(
        d["output"]["pools"],
        serde_json::json!({"default": 1, "spot": 1}),
        "{d}"
    );
    assert_eq!(d["output"]["withinBudget"], false, "{d}");
    let late_status = common::eventually("the late agent's status.batch", Duration::from_secs(30), || async {
        agents.get("late").await.ok()?.status?.batch
    })
    .await;
    assert_eq!(late_status.within_budget, Some(false), "{late_status:?}");

    // 0.01 replica-hours of one Ready replica: 36 s; then the agent scales to 0.
    let done = common::eventually("the work done and 0 replicas", Duration::from_secs(120), || async {
        let a = agents.get("render").await.ok()?;
        let b = a.status.as_ref()?.batch.clone()?;
        (b.phase == "Complete" && a.spec.replicas == 0).then_some(b)
    })
    .await;
    assert!(done.completed_replica_hours >= 0.01, "{done:?}");
    // Counted at the spot price only (0.1 per replica-hour): 0.001 for the work, plus at most
    // one 30-s accounting interval (0.0008); at the default pool's 1.0 it would be over 0.01.
    assert!(done.cost > 0.0009 && done.cost < 0.002, "{done:?}");
    let (status, reason, message) = common::eventually("BatchComplete", Duration::from_secs(30), || async {
        scaling_ready(&agents, "render")
            .await
            .filter(|c| c.1 == "BatchComplete")
    })
    .await;
    assert_eq!(status, "True", "{message}");
    assert!(message.contains("replica-hours are done"), "{reason}: {message}");
    common::eventually("no pods left", Duration::from_secs(60), || async {
        let list = pods
            .list(&ListParams::default().labels("mom.hypersync.io/agent=render"))
            .await
            .ok()?;
        list.items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;

    // `mom whatif --cluster` rebuilds the batch agent from its plans' receipts (work, deadline,
    // forecasts) and runs it by the plan and, as the counterfactual, at once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["whatif", "--cluster", "--since", "15m", "--namespace", n])
        .args(["--set", "batch.timing=atOnce", "--format", "json"])
        .env("KUBECONFIG", &common::control_plane().kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let whatif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let render = |run: &str| {
        whatif["batch"][run]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["agent"] == format!("{n}/render")))
            .cloned()
            .unwrap_or_else(|| panic!("no {run} outcome of render: {whatif}"))
    };
    let (planned, at_once) = (&render("recorded"), &render("counterfactual"));
    assert_eq!(planned["agent"], format!("{n}/render"), "{whatif}");
    assert_eq!(planned["deadlineMet"], true, "{whatif}");
    assert!(planned["replicaHours"].as_f64().unwrap() >= 0.01 - 1e-9, "{whatif}");
    assert_eq!(at_once["timing"], "atOnce", "{whatif}");
    // Planned in the spot pool at 0.1: cheaper than at once, which also fills the default pool.
    assert!(
        planned["cost"].as_f64().unwrap() <= at_once["cost"].as_f64().unwrap() + 1e-12,
        "{whatif}"
    );

    // `mom verify --replay` reproduces every batch plan from its recorded inputs.
    let keys = common::published_keys(&client).await;
    let mut args = vec!["--cluster", "--replay"];
    for key in &keys {
        args.extend(["--public-key", key.as_str()]);
    }
    let (ok, report) = common::mom_verify(&args);
    assert!(ok, "{report}");
    assert!(report["replay"]["unregistered"].get("batch.plan").is_none(), "{report}");
    let mismatches = report["replay"]["mismatches"].as_array().cloned().unwrap_or_default();
    assert!(!mismatches.iter().any(|m| m["kind"] == "batch.plan"), "{report}");
    let plans: Vec<Receipt> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.decision["kind"] == "batch.plan")
        .collect();
    // Up to one replica, then down to 0.
    assert!(plans.len() >= 2, "{} batch.plan receipts", plans.len());
    assert!(plans.iter().any(|r| r.spec.decision["output"]["replicas"] == 0));
}
