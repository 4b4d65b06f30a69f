//! A replacement the scheduler bound to a node that then fails before the replacement is Ready
//! (the failure reaches MOM late) is deleted at once by the stranded rule, receipt first, not
//! left holding its place.
//!
//! Runs on a control plane of its own, apart from `tests/zone_failure.rs`: after the outages
//! there (CI run of 2026-12-07) this test's replica never became Ready on the one node it may
//! use ("timed out waiting for the replica Ready"). The likely cause, not confirmed (the run
//! kept no operator log): those outages teach the failover planner that their domains fail,
//! and a domain it drains refuses new pods.

mod common;
mod placement_support;
mod zone_failure_support;

use placement_support::*;
use zone_failure_support::*;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mom::labels::ZONE_LABEL;
use mom::operator::crd::Receipt;

#[tokio::test]
async fn a_replacement_bound_to_a_node_that_fails_before_it_is_ready_is_deleted_at_once_and_made_again() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    use mom::labels::UNHEALTHY_LABEL;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("late-failure").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    // Two nodes of different zones: `first` runs the replica, `late` gets its replacement.
    let labels = node_labels(client.clone()).await;
    let first = labels.keys().next().expect("a node").clone();
    let late = labels
        .iter()
        .find(|(_, l)| l.get(ZONE_LABEL) != labels[&first].get(ZONE_LABEL))
        .map(|(node, _)| node.clone())
        .expect("a node in another zone");
    let hold = "mom.test/hold";
    taint(&late, hold, Some("yes"));
    common::apply(&agent(
        n,
        "late",
        1,
        "",
        &format!(
            r#""affinity":{{"nodeAffinity":{{"requiredDuringSchedulingIgnoredDuringExecution":{{"nodeSelectorTerms":[{{"matchExpressions":[{{"key":"kubernetes.io/hostname","operator":"In","values":["{first}","{late}"]}}]}}]}}}}}},"#
        ),
    ));
    let seen = std::cell::RefCell::new(PodStates::new());
    let original = common::eventually_explained(
        "the replica Ready",
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            let seen = &seen;
            async move {
                let p = pods_of(&pods, "late").await;
                let found = p
                    .iter()
                    .find(|(_, (node, ready, _))| *ready && node.is_some())
                    .map(|(name, (node, ..))| (name.clone(), node.clone().unwrap_or_default()));
                *seen.borrow_mut() = p;
                found
            }
        },
        || format!("pods {:?} (nodes {first} and {late})", seen.borrow()),
    )
    .await;
    assert_eq!(original.1, first, "the other node is tainted");
    // `late` keeps being heard from (its Lease renewed by this test) while nothing runs its
    // pods (its kubelet is gone): a pod bound there stays not Ready, and MOM does not know yet.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewer = {
        let (leases, late, renewing) = (leases.clone(), late.clone(), renewing.clone());
        tokio::spawn(async move {
            while renewing.load(std::sync::atomic::Ordering::SeqCst) {
                let now =
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
                let patch = serde_json::json!({"spec": {"renewTime": now}});
                let _ = leases
                    .patch(&late, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    fail_domain(&["--label", &format!("kubernetes.io/hostname={late}")]);
    taint(&late, hold, None);
    // The first node fails: its replica is stranded, and the replacement can only go to `late`.
    label_node(&first, UNHEALTHY_LABEL, Some("true"));
    let replacement = common::eventually("a replacement bound to the late node", Duration::from_secs(90), || {
        let pods = pods.clone();
        let late = late.clone();
        async move {
            let p = pods_of(&pods, "late").await;
            p.into_iter()
                .find(|(_, (node, _, deleting))| node.as_deref() == Some(late.as_str()) && !deleting)
                .map(|(name, _)| name)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pods_of(&pods, "late").await;
    assert!(
        p.get(&replacement).is_some_and(|(_, ready, _)| !ready),
        "the replacement became Ready on a node without a kubelet: {p:?}"
    );
    // Now `late` falls silent too, with the replacement on it not Ready.
    renewing.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = renewer.await;
    // The stranded rule deletes an unready replica on `late` once MOM hears `late` is silent,
    // its `agent.stranded` receipt first. The replacement first seen there may be gone sooner
    // by another path (the failover planner releasing a standby scales the Deployment down, and
    // the ReplicaSet deletes unready pods first), and its successor may be bound to `late` too
    // before MOM hears the silence: any replica seen on `late` counts (none runs there, and one
    // deleted there stays Terminating while `late` is silent, so each is seen).
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let stranded_records = || {
        let receipts = receipts.clone();
        async move {
            receipts
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.spec.decision)
                .filter(|d| d["kind"] == "agent.stranded")
                .collect::<Vec<serde_json::Value>>()
        }
    };
    let unready_of = |records: &[serde_json::Value]| -> Vec<String> {
        records
            .iter()
            .flat_map(|r| serde_json::from_value::<Vec<String>>(r["unready"].clone()).unwrap_or_default())
            .collect()
    };
    let on_late = std::cell::RefCell::new(BTreeSet::from([replacement.clone()]));
    let last_seen = std::cell::RefCell::new(PodStates::new());
    let deleted = common::eventually_explained(
        "an unready replica on the failed node deleted by the stranded rule",
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            let (late, on_late, last_seen) = (late.clone(), &on_late, &last_seen);
            let records = stranded_records();
            async move {
                let p = pods_of(&pods, "late").await;
                on_late.borrow_mut().extend(
                    p.iter()
                        .filter(|(_, (node, ..))| node.as_deref() == Some(late.as_str()))
                        .map(|(name, _)| name.clone()),
                );
                *last_seen.borrow_mut() = p.clone();
                let unready = unready_of(&records.await);
                let on_late = on_late.borrow();
                unready
                    .into_iter()
                    .find(|u| on_late.contains(u) && p.get(u).is_none_or(|(_, _, deleting)| *deleting))
            }
        },
        || format!("{:?}; seen on {late}: {:?}", last_seen.borrow(), on_late.borrow()),
    )
    .await;
    let records = stranded_records().await;
    let p = pods_of(&pods, "late").await;
    let on_late = on_late.into_inner();
    let context = format!(
        "receipts {records:#?}\npods {p:?}\nfirst replacement {replacement}, deleted {deleted}, seen on {late}: {on_late:?}, original {original:?}"
    );
    let unready = unready_of(&records);
    // Control: the original, Ready on its (labelled) node, is not retired by this rule.
    assert!(!unready.contains(&original.0), "{context}");
    // Every replica retired as unready was on `late`, and nothing else was retired early.
    assert!(unready.iter().all(|u| on_late.contains(u)), "{context}");
    assert!(records.iter().all(|r| r["retire"] == r["unready"]), "{context}");
    label_node(&first, UNHEALTHY_LABEL, None);
    fail_domain(&["--restore"]);
    retire(ns);
}
