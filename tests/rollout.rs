//! Template rollout on the real control plane (kube-scheduler `mom-scheduler` + MOM's extender,
//! kwok nodes that make bound pods Ready): editing a GeometricAgent's `spec.template` replaces its
//! pods as a Deployment would, within `spec.rollout.maxSurge` / `maxUnavailable`, every step
//! receipted; a template whose pods never become Ready stops the rollout with
//! `Progressing=False` (`ProgressDeadlineExceeded`) and a Warning Event, and fixing the template
//! finishes it. Bad budgets are refused at admission naming the field.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use mom::labels::TEMPLATE_HASH_LABEL;
use mom::operator::crd::{GeometricAgent, Receipt};

fn agent(ns: &str, name: &str, replicas: i32, rollout: serde_json::Value) -> String {
    serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"workloadType": "batch", "replicas": replicas, "rollout": rollout,
                 "template": {"metadata": {"labels": {"version": "1"}},
                              "spec": {"containers": [{"name": "c", "image": "pause",
                                  "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}]}}}
    })
    .to_string()
}

/// The agent's pods that are not being deleted: name → (template hash, version label, ready).
async fn pods_of(client: &kube::Client, ns: &str, agent: &str) -> BTreeMap<String, (String, String, bool)> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (
                p.metadata.name.clone().unwrap_or_default(),
                (
                    labels.get(TEMPLATE_HASH_LABEL).cloned().unwrap_or_default(),
                    labels.get("version").cloned().unwrap_or_default(),
                    ready,
                ),
            )
        })
        .collect()
}

/// The agent's `Progressing` condition: (status, reason).
async fn progressing(client: &kube::Client, ns: &str, agent: &str) -> Option<(String, String)> {
    let a = Api::<GeometricAgent>::namespaced(client.clone(), ns)
        .get(agent)
        .await
        .ok()?;
    a.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .map(|c| (c.status, c.reason))
}

async fn updated_replicas(client: &kube::Client, ns: &str, agent: &str) -> Option<i32> {
    Api::<GeometricAgent>::namespaced(client.clone(), ns)
        .get(agent)
        .await
        .ok()?
        .status?
        .updated_replicas
}

/// Waits until the agent has `n` pods, all Ready and all made from one template; returns its hash.
async fn settled(client: &kube::Client, ns: &str, agent: &str, n: usize, version: &str) -> String {
    common::eventually(
        &format!("{n} ready pods of {agent} at version {version}"),
        Duration::from_secs(120),
        || async {
            let pods = pods_of(client, ns, agent).await;
            let hashes: std::collections::BTreeSet<&String> = pods.values().map(|(h, _, _)| h).collect();
            (pods.len() == n
                && hashes.len() == 1
                && pods
                    .values()
                    .all(|(h, v, ready)| *ready && v == version && !h.is_empty()))
            .then(|| pods.values().next().map(|(h, _, _)| h.clone()).unwrap_or_default())
        },
    )
    .await
}

async fn patch_template(client: &kube::Client, ns: &str, agent: &str, template: serde_json::Value) {
    Api::<GeometricAgent>::namespaced(client.clone(), ns)
        .patch(
            agent,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"template": template}})),
        )
        .await
        .expect("patching the template");
}

async fn rollout_receipts(client: &kube::Client, ns: &str) -> Vec<Receipt> {
    let mut list: Vec<Receipt> = Api::<Receipt>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("listing receipts")
        .items
        .into_iter()
        .filter(|r| r.spec.decision["kind"] == "agent.rollout")
        .collect();
    list.sort_by_key(|r| r.spec.sequence);
    list
}

#[tokio::test]
async fn editing_the_template_replaces_every_pod_within_the_surge_and_unavailability_budgets() {
    common::install_crds();
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    common::apply_test_momconfig("full_audit");
    let _mom = common::mom();
    let ns = common::TestNamespace::new("rollout").await;
    let client = ns.client();
    common::apply(&agent(
        &ns.name,
        "web",
        4,
        serde_json::json!({"maxSurge": 1, "maxUnavailable": 0}),
    ));
    let first = settled(&client, &ns.name, "web", 4, "1").await;
    // Positive control: before any edit the pods are current and nothing is being rolled.
    common::eventually(
        "updatedReplicas 4, RolloutComplete",
        Duration::from_secs(60),
        || async {
            (updated_replicas(&client, &ns.name, "web").await == Some(4)
                && progressing(&client, &ns.name, "web").await
                    == Some(("True".to_string(), "RolloutComplete".to_string())))
            .then_some(())
        },
    )
    .await;
    assert!(
        rollout_receipts(&client, &ns.name).await.is_empty(),
        "no rollout before an edit"
    );

    patch_template(
        &client,
        &ns.name,
        "web",
        serde_json::json!({"metadata": {"labels": {"version": "2"}}}),
    )
    .await;
    // Sample while it rolls: never more than replicas + maxSurge pods, never fewer than
    // replicas − maxUnavailable Ready ones.
    let (mut most, mut fewest_ready) = (0usize, usize::MAX);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let second = loop {
        let pods = pods_of(&client, &ns.name, "web").await;
        most = most.max(pods.len());
        fewest_ready = fewest_ready.min(pods.values().filter(|(_, _, ready)| *ready).count());
        let hashes: std::collections::BTreeSet<&String> = pods.values().map(|(h, _, _)| h).collect();
        if pods.len() == 4 && hashes.len() == 1 && pods.values().all(|(_, v, ready)| *ready && v == "2") {
            break pods.values().next().map(|(h, _, _)| h.clone()).unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollout did not finish in 180 s: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(first, second, "a new template gives pods a new hash");
    assert!(most <= 5, "{most} pods existed at once; maxSurge 1 allows 5");
    assert!(
        fewest_ready >= 4,
        "{fewest_ready} ready pods at one point; maxUnavailable 0 keeps 4"
    );
    common::eventually(
        "updatedReplicas 4, RolloutComplete again",
        Duration::from_secs(60),
        || async {
            (updated_replicas(&client, &ns.name, "web").await == Some(4)
                && progressing(&client, &ns.name, "web").await
                    == Some(("True".to_string(), "RolloutComplete".to_string())))
            .then_some(())
        },
    )
    .await;
    // Every step is receipted before it is taken, with the budgets it kept.
    let receipts = rollout_receipts(&client, &ns.name).await;
    let created: u64 = receipts
        .iter()
        .map(|r| r.spec.decision["step"]["create"].as_u64().unwrap_or(0))
        .sum();
    let deleted: usize = receipts
        .iter()
        .map(|r| r.spec.decision["step"]["delete"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!((created, deleted), (4, 4), "receipted steps: {receipts:#?}");
    for r in &receipts {
        assert_eq!(r.spec.decision["templateHash"], second.as_str());
        assert_eq!(r.spec.decision["step"]["maxPods"], 5);
        assert_eq!(r.spec.decision["step"]["minReady"], 4);
    }
    // (`mom verify --cluster` is not asserted here: on the shared control plane other tests'
    // namespaces, and their receipts, are deleted meanwhile; tests/receipts_e2e.rs verifies.)
}

#[tokio::test]
async fn a_template_whose_pods_never_become_ready_stops_the_rollout_and_a_fixed_one_finishes_it() {
    common::install_crds();
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    common::apply_test_momconfig("full_audit");
    let _mom = common::mom();
    let ns = common::TestNamespace::new("rollout-stall").await;
    let client = ns.client();
    common::apply(&agent(
        &ns.name,
        "api",
        2,
        serde_json::json!({"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 5}),
    ));
    let first = settled(&client, &ns.name, "api", 2, "1").await;
    // No node has this label: the new template's pod stays Pending, never Ready.
    patch_template(
        &client,
        &ns.name,
        "api",
        serde_json::json!({"metadata": {"labels": {"version": "2"}},
                           "spec": {"nodeSelector": {"mom-test/nowhere": "true"}}}),
    )
    .await;
    common::eventually(
        "Progressing=False ProgressDeadlineExceeded",
        Duration::from_secs(90),
        || async {
            (progressing(&client, &ns.name, "api").await
                == Some(("False".to_string(), "ProgressDeadlineExceeded".to_string())))
            .then_some(())
        },
    )
    .await;
    // Stopped: the two old pods still serve, one new pod was tried, nothing more is created.
    // Barrier instead of a pause: a shorter deadline (still exceeded) is a new generation the
    // operator must reconcile; once the status reports it, still stalled, a whole reconcile
    // ran after the stall and created nothing more (any pod it made is in the list below).
    let agents = Api::<GeometricAgent>::namespaced(client.clone(), &ns.name);
    let generation = agents
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rollout": {"progressDeadlineSeconds": 4}}})),
        )
        .await
        .unwrap()
        .metadata
        .generation;
    common::eventually(
        "a reconcile of the stalled rollout at its new generation, still stalled",
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let observed = agents.get("api").await.ok()?.status?.observed_generation;
                (observed == generation
                    && progressing(&client, &ns, "api").await
                        == Some(("False".to_string(), "ProgressDeadlineExceeded".to_string())))
                .then_some(())
            }
        },
    )
    .await;
    let pods = pods_of(&client, &ns.name, "api").await;
    let old_ready = pods.values().filter(|(h, _, ready)| *h == first && *ready).count();
    let new: Vec<_> = pods.values().filter(|(h, _, _)| *h != first).collect();
    assert_eq!(old_ready, 2, "maxUnavailable 0 keeps the old pods: {pods:?}");
    assert_eq!(new.len(), 1, "maxSurge 1 tries one new pod: {pods:?}");
    assert!(!new[0].2, "the new pod cannot be Ready: {pods:?}");
    let events = Api::<Event>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("ProgressDeadlineExceeded")
                && e.type_.as_deref() == Some("Warning")
                && e.message.as_deref().is_some_and(|m| m.contains("not ready"))),
        "no Warning Event ProgressDeadlineExceeded"
    );
    // Fixed template: the stalled pod (now of an older template) goes, and the rollout ends.
    Api::<GeometricAgent>::namespaced(client.clone(), &ns.name)
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({"spec": {"template": {"metadata": {"labels": {"version": "3"}},
                                                                     "spec": {"nodeSelector": null}}}}),
            ),
        )
        .await
        .unwrap();
    let third = settled(&client, &ns.name, "api", 2, "3").await;
    assert_ne!(third, first);
    common::eventually("RolloutComplete after the fix", Duration::from_secs(60), || async {
        (progressing(&client, &ns.name, "api").await == Some(("True".to_string(), "RolloutComplete".to_string())))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rollout_budget_that_is_neither_a_count_nor_a_percentage_is_refused_naming_the_field() {
    common::install_crds();
    let ns = common::TestNamespace::new("rollout-bad").await;
    // Positive control: valid budgets are accepted.
    let good = agent(
        &ns.name,
        "ok",
        0,
        serde_json::json!({"maxSurge": "50%", "maxUnavailable": 1}),
    );
    let (ok, _, err) = common::kubectl(&["apply", "-f", "-"], Some(&good));
    assert!(ok, "valid budgets refused: {err}");
    for (field, rollout) in [
        ("spec.rollout.maxSurge", serde_json::json!({"maxSurge": "lots"})),
        (
            "spec.rollout.maxUnavailable",
            serde_json::json!({"maxUnavailable": "150%"}),
        ),
        ("spec.rollout.maxSurge", serde_json::json!({"maxSurge": -1})),
        (
            "spec.rollout.progressDeadlineSeconds",
            serde_json::json!({"progressDeadlineSeconds": 0}),
        ),
    ] {
        let (ok, _, err) = common::kubectl(&["apply", "-f", "-"], Some(&agent(&ns.name, "bad", 0, rollout.clone())));
        assert!(!ok, "{rollout} was accepted");
        assert!(err.contains(field), "{rollout}: {err}");
    }
}
