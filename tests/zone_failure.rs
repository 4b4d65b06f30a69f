//! A zone outage on the real control plane, made faithfully by `tests/cluster/fail-domain.sh`:
//! the zone's kubelets (kwok) stop, so its node Leases go stale while the nodes stay in the API
//! and still look Ready for the node lifecycle controller's grace period. MOM sees the silent
//! heartbeats, replaces every replica stranded there with one outside the zone (the extender
//! keeps new pods off the silent nodes), and once the replacements are Ready deletes the
//! stranded pods (receipt `agent.stranded` first, Event `ReplacedStranded`). When the zone comes
//! back its kubelets finish those deletions: each agent has exactly its replicas again, nothing
//! duplicated, and the receipt chain verifies.
//!
//! Prints the measured recovery time (failure → every agent has its replicas Ready outside the
//! zone) and when the node lifecycle controller marked the zone NotReady, for comparison; the
//! numbers are reported, not asserted (`make bench-failover` measures them properly).
//!
//! The same for a whole region (its three zones).
//!
//! Also: a spot node that gets a termination notice (the AWS Node Termination Handler's taint)
//! is drained the same way, replacements first, while a node with an unrelated taint keeps its
//! pods; and a replica whose replacement cannot become Ready is deleted anyway one grace period
//! before the deadline its node's notice carries.
//!
//! And: a replacement the scheduler bound to a node that then fails before the replacement is
//! Ready (the failure reaches MOM late) is deleted at once, not left holding its place.
//!
//! Runs on a control plane of its own: the outage would disturb other tests' pods.

mod common;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams};
use mom::labels::{REGION_LABEL, ZONE_LABEL};
use mom::operator::crd::Receipt;

const AGENTS: [(&str, usize); 2] = [("web", 4), ("api", 3)];

/// The tests of this binary take turns: an outage or a drained node moves the other's pods.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fail_domain(args: &[&str]) -> u64 {
    let state = common::control_plane()
        .kubeconfig
        .parent()
        .expect("state dir")
        .to_path_buf();
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/fail-domain.sh"))
        .arg(&state)
        .args(args)
        .output()
        .expect("running fail-domain.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fail-domain.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("_at_ms=").map(|(_, v)| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("fail-domain.sh printed no time: {stdout}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// pod → (node, Ready, being deleted) of an agent's pods.
type PodStates = BTreeMap<String, (Option<String>, bool, bool)>;

async fn pods_of(pods: &Api<Pod>, agent: &str) -> PodStates {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (
                p.metadata.name.clone().unwrap_or_default(),
                (
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    ready,
                    p.metadata.deletion_timestamp.is_some(),
                ),
            )
        })
        .collect()
}

fn node_not_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True")
}

#[tokio::test]
async fn a_failed_zones_replicas_are_replaced_outside_it_before_the_node_grace_period_and_nothing_is_duplicated_on_return()
 {
    outage(ZONE_LABEL, "--zone").await;
}

#[tokio::test]
async fn a_failed_regions_replicas_are_replaced_in_the_other_region_before_the_node_grace_period_and_nothing_is_duplicated_on_return()
 {
    outage(REGION_LABEL, "--region").await;
}

/// Fails the domain (values of the label `key`, `fail-domain.sh flag`) running most of the
/// agents' replicas, checks the recovery and the return.
async fn outage(key: &'static str, flag: &str) {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("domain-failure").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let labels = node_labels(client.clone()).await;
    let zone_of = |node: &str| labels.get(node).and_then(|l| l.get(key)).cloned();
    for (agent_name, replicas) in AGENTS {
        common::apply(&agent(n, agent_name, replicas as i32, "", ""));
    }
    for (agent_name, replicas) in AGENTS {
        common::eventually(
            &format!("{agent_name}'s {replicas} replicas Ready"),
            Duration::from_secs(90),
            || {
                let pods = pods.clone();
                async move {
                    let p = pods_of(&pods, agent_name).await;
                    (p.values().filter(|(node, ready, _)| node.is_some() && *ready).count() == replicas).then_some(())
                }
            },
        )
        .await;
    }
    // The zone with the most of the agents' replicas goes dark.
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut before: BTreeMap<&str, PodStates> = BTreeMap::new();
    for (agent_name, _) in AGENTS {
        let p = pods_of(&pods, agent_name).await;
        for (node, ..) in p.values() {
            if let Some(zone) = node.as_deref().and_then(zone_of) {
                *per_zone.entry(zone).or_default() += 1;
            }
        }
        before.insert(agent_name, p);
    }
    let zone = per_zone
        .iter()
        .max_by_key(|(z, c)| (**c, std::cmp::Reverse((*z).clone())))
        .map(|(z, _)| z.clone())
        .expect("the agents have pods");
    let in_zone = |node: &Option<String>| node.as_deref().and_then(zone_of).as_deref() == Some(zone.as_str());
    let stranded: BTreeSet<String> = before
        .values()
        .flat_map(|p| {
            p.iter()
                .filter(|(_, (node, ..))| in_zone(node))
                .map(|(name, _)| name.clone())
        })
        .collect();
    println!("failing {zone}, which runs {stranded:?}");
    assert!(!stranded.is_empty());
    let failed_at = fail_domain(&[flag, &zone]);

    // Recovery: every agent has its replicas Ready outside the zone. Meanwhile, note when the
    // node lifecycle controller marks the zone's nodes NotReady.
    let nodes: Api<Node> = Api::all(client.clone());
    let zone_nodes: BTreeSet<String> = labels
        .iter()
        .filter(|(_, l)| l.get(key) == Some(&zone))
        .map(|(n, _)| n.clone())
        .collect();
    let not_ready_at = std::cell::Cell::new(None);
    // What the last check saw, per agent: its pods as (node, ready, deleting).
    let last_seen = std::cell::RefCell::new(String::new());
    let recovered_at = common::eventually_explained(
        "every agent's replicas Ready outside the failed zone",
        // ~17-30 s alone; one loaded CI run (2026-12-05) needed more than 150 s for the region.
        Duration::from_secs(300),
        || {
            let pods = pods.clone();
            let nodes = nodes.clone();
            let zone_nodes = zone_nodes.clone();
            let in_zone = &in_zone;
            let not_ready_at = &not_ready_at;
            let last_seen = &last_seen;
            async move {
                if not_ready_at.get().is_none()
                    && let Ok(list) = nodes.list(&ListParams::default()).await
                    && list
                        .items
                        .iter()
                        .filter(|n| zone_nodes.contains(n.metadata.name.as_deref().unwrap_or("")))
                        .all(node_not_ready)
                {
                    not_ready_at.set(Some(now_ms()));
                }
                let mut seen = Vec::new();
                let mut short = false;
                for (agent_name, replicas) in AGENTS {
                    let p = pods_of(&pods, agent_name).await;
                    let outside = p
                        .values()
                        .filter(|(node, ready, deleting)| node.is_some() && !in_zone(node) && *ready && !deleting)
                        .count();
                    seen.push(format!("{agent_name}: {outside}/{replicas} Ready outside, pods {p:?}"));
                    short |= outside < replicas;
                }
                *last_seen.borrow_mut() = seen.join("; ");
                (!short).then(now_ms)
            }
        },
        || last_seen.borrow().clone(),
    )
    .await;
    let rto = (recovered_at.saturating_sub(failed_at)) as f64 / 1000.0;
    println!(
        "{key}={zone}: replicas Ready outside it {rto:.1} s after the failure; the node lifecycle controller marked it NotReady {}",
        not_ready_at.get().map_or("not yet".to_string(), |t| format!(
            "after {:.1} s",
            t.saturating_sub(failed_at) as f64 / 1000.0
        ))
    );
    // MOM acted on the silent heartbeats, not on the node lifecycle controller's verdict.
    assert!(
        not_ready_at.get().is_none_or(|t| t > recovered_at),
        "the zone was marked NotReady before its replicas were replaced: MOM waited for the grace period"
    );
    // No pod made after the failure went into the failed zone.
    for (agent_name, _) in AGENTS {
        for (name, (node, ..)) in pods_of(&pods, agent_name).await {
            if !before[agent_name].contains_key(&name) {
                assert!(
                    !in_zone(&node),
                    "{name}, made after the failure, was placed in {zone} ({node:?})"
                );
            }
        }
    }
    // The stranded pods are retired once replaced, the receipt first.
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let retired: BTreeSet<String> = common::eventually(
        "agent.stranded receipts retiring every stranded pod",
        Duration::from_secs(60),
        || {
            let receipts = receipts.clone();
            let stranded = stranded.clone();
            async move {
                let retired: BTreeSet<String> = receipts
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .iter()
                    .filter(|r| r.spec.decision["kind"] == "agent.stranded")
                    .flat_map(|r| r.spec.decision["retire"].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                stranded.is_subset(&retired).then_some(retired)
            }
        },
    )
    .await;
    assert_eq!(retired, stranded, "only the stranded pods are retired");
    let events: Api<Event> = Api::namespaced(client.clone(), n);
    common::eventually("a ReplacedStranded Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ReplacedStranded"))
        }
    })
    .await;

    // The zone returns: its kubelets finish the deletions; exactly the replicas remain.
    fail_domain(&["--restore"]);
    for (agent_name, replicas) in AGENTS {
        let left = common::eventually(
            &format!("{agent_name} back to exactly {replicas} pods, none Terminating"),
            Duration::from_secs(90),
            || {
                let pods = pods.clone();
                async move {
                    let p = pods_of(&pods, agent_name).await;
                    (p.len() == replicas && p.values().all(|(_, ready, deleting)| *ready && !deleting)).then_some(p)
                }
            },
        )
        .await;
        assert!(
            left.keys().all(|name| !stranded.contains(name)),
            "{agent_name}: a stranded pod survived the return: {left:?}"
        );
    }
    let (ok, report) = common::verify_cluster_with_published_keys(&client).await;
    assert!(ok, "mom verify after the outage: {report}");
    retire(ns);
}

/// Deletes the test's agents (their pods go with them) but keeps the namespace and so its
/// receipts: the next test of this binary verifies the whole chain on the same control plane.
fn retire(ns: common::TestNamespace) {
    let (ok, _, err) = common::kubectl(
        &["delete", "geometricagents", "--all", "-n", &ns.name, "--wait=true"],
        None,
    );
    assert!(ok, "deleting the agents of {}: {err}", ns.name);
    ns.keep();
}

/// Sets (or with `None` removes) a NoSchedule taint on a node.
fn taint(node: &str, key: &str, value: Option<&str>) {
    let arg = match value {
        Some(v) => format!("{key}={v}:NoSchedule"),
        None => format!("{key}:NoSchedule-"),
    };
    let (ok, _, err) = common::kubectl(&["taint", "nodes", node, &arg, "--overwrite"], None);
    assert!(ok, "kubectl taint {node} {arg}: {err}");
}

#[tokio::test]
async fn a_spot_node_with_a_termination_notice_is_drained_replacements_first_and_an_unrelated_taint_changes_nothing() {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("spot-notice").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let replicas = 6;
    common::apply(&agent(n, "batch", replicas as i32, "", ""));
    let placed = common::eventually("6 replicas Ready", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "batch").await;
            (p.values().filter(|(node, ready, _)| node.is_some() && *ready).count() == replicas).then_some(p)
        }
    })
    .await;
    // The node holding most of them gets the taints.
    let mut by_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (node, ..)) in &placed {
        by_node
            .entry(node.clone().unwrap_or_default())
            .or_default()
            .insert(name.clone());
    }
    let (noticed, doomed) = by_node
        .iter()
        .max_by_key(|(node, pods)| (pods.len(), std::cmp::Reverse((*node).clone())))
        .map(|(n, p)| (n.clone(), p.clone()))
        .unwrap();
    println!("taints on {noticed}, which runs {doomed:?}");
    // Control first: an unrelated NoSchedule taint drains nothing. Barrier: one more replica,
    // reconciled (status.observedGeneration) after the taint, and Ready.
    taint(&noticed, "example.com/maintenance-window", Some("tonight"));
    common::apply(&agent(n, "batch", replicas as i32 + 1, "", ""));
    let agents: Api<mom::operator::crd::GeometricAgent> = Api::namespaced(client.clone(), n);
    common::eventually("the 7th replica Ready and reconciled", Duration::from_secs(60), || {
        let (pods, agents) = (pods.clone(), agents.clone());
        async move {
            let a = agents.get("batch").await.ok()?;
            let observed = a.status.as_ref()?.observed_generation? == a.metadata.generation?;
            let p = pods_of(&pods, "batch").await;
            (observed
                && p.values()
                    .filter(|(node, ready, d)| node.is_some() && *ready && !d)
                    .count()
                    == replicas + 1)
                .then_some(())
        }
    })
    .await;
    let p = pods_of(&pods, "batch").await;
    for pod in &doomed {
        assert!(
            p.get(pod)
                .is_some_and(|(node, _, deleting)| node.as_deref() == Some(noticed.as_str()) && !deleting),
            "{pod} left {noticed}, whose taint is no termination notice: {p:?}"
        );
    }
    let replicas = replicas + 1;
    // The termination notice: every replica there is replaced elsewhere, then deleted.
    taint(&noticed, "aws-node-termination-handler/spot-itn", Some("1796400000"));
    let drained = common::eventually(
        "the noticed node's replicas replaced elsewhere and deleted",
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            let noticed = noticed.clone();
            async move {
                let p = pods_of(&pods, "batch").await;
                let elsewhere = p
                    .values()
                    .filter(|(node, ready, deleting)| *ready && !deleting && node.as_deref() != Some(noticed.as_str()))
                    .count();
                let left = p.values().any(|(node, ..)| node.as_deref() == Some(noticed.as_str()));
                (elsewhere == replicas && !left).then_some(p)
            }
        },
    )
    .await;
    assert_eq!(drained.len(), replicas, "exactly the replicas remain: {drained:?}");
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let retired: BTreeSet<String> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|r| r.spec.decision["kind"] == "agent.stranded")
        .flat_map(|r| r.spec.decision["retire"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        retired, doomed,
        "the receipts retire exactly the noticed node's replicas"
    );
    taint(&noticed, "example.com/maintenance-window", None);
    taint(&noticed, "aws-node-termination-handler/spot-itn", None);
    retire(ns);
}

/// A termination notice whose written deadline leaves no time for a replacement: the replica is
/// pinned to the noticed node (`nodeSelector`), so its replacement can go nowhere and stays
/// Pending, and it is deleted anyway, one grace period before the deadline, with the deadline
/// in its `agent.stranded` receipt (`dueToDeadline`, `retireByMs` = deadline − grace). Prints
/// how long before the deadline the deletion was seen (measured, not asserted).
#[tokio::test]
async fn a_replica_is_deleted_a_grace_period_before_its_nodes_termination_deadline_even_without_a_ready_replacement() {
    let _turn = SERIAL.lock().await;
    common::use_private_control_plane();
    setup();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("spot-deadline").await;
    let n = &ns.name;
    let client = ns.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|node| node.metadata.name)
        .collect();
    let noticed = nodes.last().expect("a node").clone();
    let grace_s: u64 = 20;
    common::apply(&agent(
        n,
        "pinned",
        1,
        "",
        &format!(
            r#""nodeSelector":{{"kubernetes.io/hostname":"{noticed}"}},"terminationGracePeriodSeconds":{grace_s},"#
        ),
    ));
    let placed = common::eventually("the pinned replica Ready", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "pinned").await;
            p.iter()
                .find(|(_, (node, ready, _))| *ready && node.is_some())
                .map(|(name, (node, ..))| (name.clone(), node.clone().unwrap_or_default()))
        }
    })
    .await;
    assert_eq!(placed.1, noticed);
    let doomed = placed.0;
    // The notice, with a deadline written 60 s ahead (before the EC2 two-minute rule).
    let deadline_s = now_ms() / 1000 + 60;
    taint(
        &noticed,
        "aws-node-termination-handler/spot-itn",
        Some(&deadline_s.to_string()),
    );
    common::eventually(
        "the pinned replica deleted before its replacement is Ready",
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            let doomed = doomed.clone();
            async move {
                let p = pods_of(&pods, "pinned").await;
                p.get(&doomed).is_none_or(|(_, _, deleting)| *deleting).then_some(())
            }
        },
    )
    .await;
    let seen_ms = now_ms();
    let p = pods_of(&pods, "pinned").await;
    assert!(
        p.iter().all(|(name, (_, ready, _))| *name == doomed || !ready),
        "a replacement became Ready, so this is not the deadline path: {p:?}"
    );
    let receipts: Api<Receipt> = Api::namespaced(client.clone(), n);
    let record = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.spec.decision)
        .find(|d| d["kind"] == "agent.stranded")
        .expect("an agent.stranded receipt");
    assert_eq!(record["dueToDeadline"], serde_json::json!([doomed]), "{record:#}");
    assert_eq!(record["healthyReady"], 0, "{record:#}");
    assert_eq!(
        record["retireByMs"][&doomed].as_u64(),
        Some(deadline_s * 1000 - grace_s * 1000),
        "{record:#}"
    );
    println!(
        "measured: deletion seen {:.1} s before the deadline (retire-by was {} s before it)",
        (deadline_s * 1000).saturating_sub(seen_ms) as f64 / 1000.0,
        grace_s
    );
    taint(&noticed, "aws-node-termination-handler/spot-itn", None);
    retire(ns);
}

/// Sets (or with `None` removes) a label on a node.
fn label_node(node: &str, key: &str, value: Option<&str>) {
    let arg = match value {
        Some(v) => format!("{key}={v}"),
        None => format!("{key}-"),
    };
    let (ok, _, err) = common::kubectl(&["label", "nodes", node, &arg, "--overwrite"], None);
    assert!(ok, "kubectl label {node} {arg}: {err}");
}

#[tokio::test]
async fn a_replacement_bound_to_a_node_that_fails_before_it_is_ready_is_deleted_at_once_and_made_again() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    use mom::labels::UNHEALTHY_LABEL;
    let _turn = SERIAL.lock().await;
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
    let original = common::eventually("the replica Ready", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let p = pods_of(&pods, "late").await;
            p.iter()
                .find(|(_, (node, ready, _))| *ready && node.is_some())
                .map(|(name, (node, ..))| (name.clone(), node.clone().unwrap_or_default()))
        }
    })
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
