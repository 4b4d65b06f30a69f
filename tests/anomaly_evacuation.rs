//! Anomaly flags acted on, end to end on a private control plane (issue 18 item 5): a real
//! Prometheus scrapes `mom exporter replay`, whose spike MomConfig `spec.anomaly` attributes to
//! the kwok node that runs the most pods of GeometricAgent `web` (a node series) and to `web`
//! itself (an agent series). The anomaly loop flags the node; the descheduler (on, evacuation
//! only) evicts `web`'s pods from it; the receipts show the flag before the evictions in chain
//! order, each eviction a `descheduler.plan` move of strategy `evacuation` from that node. The
//! agent carries condition `Anomalous` while its flag is up. With `nodeQuarantine: cordon` and
//! `maxQuarantinedNodes: 0` the flagged node is held back (not tainted or cordoned, a Warning
//! Event `NodeQuarantineHeldBack`); under the default cap it is then quarantined: a
//! `node.quarantine` receipt (recording the cap) after the raise, then the
//! taint `mom.hypersync.io/quarantined:NoSchedule`, the cordon and the label
//! `mom.hypersync.io/quarantined=cordoned`; all three go when the flag clears. Zones have four nodes, so one
//! flagged node does not make the failover planner drain its zone: the move's reason is the
//! label (`flagged anomalous`), not a predicted failure. Then `spec.anomaly` is removed:
//! both flags, named by no series any more, are cleared at the next pass with `anomaly.unnamed`
//! receipts (not by their windows: the spike stays in the 10-minute window and `clearPoints`
//! is 1000), the agent's condition turns False, and `mom verify --cluster --replay` recomputes
//! every decision. Controls: `web`'s pods on the other nodes are never evicted, no other node is
//! flagged, and the agent is `NoAnomaly` before the spike.

mod anomaly_support;
mod common;
mod placement_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anomaly_support::{flagged, node, patch_momconfig, replay_report};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use mom::operator::crd::Receipt;
use placement_support::{agent, running_pods, strategy};

const FLAG: &str = "latency-high";
const AGENT_FLAG: &str = "agent-latency-high";
/// Spread by redundancy `quorum` (at most 2 per failure domain), so other nodes run some too.
const REPLICAS: usize = 5;

/// MOM with the anomaly loop reading `prometheus_url` and the descheduler on (2 s ticks, 4 s
/// cool-off, only the evacuation strategy), on a control plane of this binary's own: a flagged
/// node must not disturb other test binaries, nor their pods this descheduler.
fn start(dir: &std::path::Path, prometheus_url: &str) -> &'static common::Mom {
    let settings = dir.join("settings.json");
    std::fs::write(
        &settings,
        r#"{"planner":{"coolOffSeconds":4,"maxEvictionsPerAgent":2,"maxEvictionsPerNode":4},
            "drift":{"enabled":false},"imbalance":{"enabled":false},"violations":{"enabled":false}}"#,
    )
    .unwrap();
    common::mom_with(&[
        &format!("--prometheus-url={prometheus_url}"),
        "--deschedule",
        "--deschedule-tick-seconds",
        "2",
        "--deschedule-settings",
        settings.to_str().unwrap(),
    ])
}

/// Every receipt, in chain order: (sequence, action, subject name, decision).
async fn receipts() -> Vec<(i64, String, String, serde_json::Value)> {
    let api: Api<Receipt> = Api::all(common::client().await);
    let mut list = api.list(&ListParams::default()).await.unwrap().items;
    list.sort_by_key(|r| r.spec.sequence);
    list.into_iter()
        .map(|r| {
            let action = serde_json::to_value(r.spec.action)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            (r.spec.sequence, action, r.spec.subject.name, r.spec.decision)
        })
        .collect()
}

/// The agent's condition `type`: (status, reason, message).
fn agent_condition(ns: &str, name: &str, type_: &str) -> Option<(String, String, String)> {
    let (ok, out, _) = common::kubectl(&["get", "geometricagent", name, "-n", ns, "-o", "json"], None);
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let c = v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["message"].as_str()?.to_string(),
    ))
}

/// A node's quarantine: (MOM's taint, cordoned, label `mom.hypersync.io/quarantined`).
fn quarantine(n: &Node) -> (bool, bool, Option<String>) {
    let spec = n.spec.clone().unwrap_or_default();
    (
        spec.taints
            .iter()
            .flatten()
            .any(|t| t.key == "mom.hypersync.io/quarantined" && t.effect == "NoSchedule"),
        spec.unschedulable.unwrap_or(false),
        n.labels().get("mom.hypersync.io/quarantined").cloned(),
    )
}

/// Live (not terminating) pods of `web`: name → node.
async fn live(ns: &common::TestNamespace) -> BTreeMap<String, String> {
    Api::<Pod>::namespaced(ns.client(), &ns.name)
        .list(&ListParams::default().labels("mom.hypersync.io/agent=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.metadata.name.clone()?, p.spec.as_ref()?.node_name.clone()?)))
        .collect()
}

#[tokio::test]
async fn the_descheduler_evacuates_the_node_an_anomaly_flags_and_flags_named_by_no_series_are_cleared() {
    common::use_private_control_plane();
    // Four nodes per zone: one flagged node is not half its zone, so the failover planner does
    // not drain the zone (which the descheduler would evacuate as unhealthy) and the evictions
    // come from the anomalous label alone.
    common::ensure_kwok_nodes(2, 3, 4);
    let dir = std::env::temp_dir().join(format!("mom-anomaly-evac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace_path = dir.join("spike.csv");
    std::fs::write(&trace_path, anomaly_support::spike_trace(1200)).unwrap();
    let port = common::free_port();
    let (prometheus_url, mut prometheus) =
        common::start_prometheus(&dir, &[("anomaly".to_string(), format!("127.0.0.1:{port}"))]);
    let mom = start(&dir, &prometheus_url);
    common::apply_test_momconfig("full_audit");
    mom.wait_leading().await;

    let ns = common::TestNamespace::new("anomaly-evac").await;
    let n = ns.name.as_str();
    common::apply(&strategy(n, "home", "", Some("quorum")));
    common::apply(&agent(
        n,
        "web",
        REPLICAS as i32,
        r#","strategyRef":{"name":"home"}"#,
        "",
    ));
    let placed = running_pods(&ns, "web", REPLICAS).await;
    // The target: the node with the most of web's pods (ties: the first name).
    let mut per_node: BTreeMap<&String, usize> = BTreeMap::new();
    for node in placed.values() {
        *per_node.entry(node).or_default() += 1;
    }
    let target = per_node
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(n, _)| (*n).clone())
        .unwrap();
    let on_target: Vec<String> = placed
        .iter()
        .filter(|(_, node)| **node == target)
        .map(|(p, _)| p.clone())
        .collect();
    let elsewhere: Vec<String> = placed
        .iter()
        .filter(|(_, node)| **node != target)
        .map(|(p, _)| p.clone())
        .collect();
    eprintln!("target {target}: {on_target:?}; elsewhere: {elsewhere:?}");
    assert!(
        !elsewhere.is_empty(),
        "every pod on one node leaves no control: {placed:?}"
    );
    let all_nodes: Vec<String> = Api::<Node>::all(common::client().await)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();

    // Control: no flag, no anomaly on the agent.
    let (status, reason, _) = common::eventually("web's Anomalous condition", Duration::from_secs(60), || async {
        agent_condition(n, "web", "Anomalous")
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoAnomaly"));

    let query = format!(r#"label_replace(mom_replay_demand{{job="anomaly"}}, "node", "{target}", "", "")"#);
    let agent_query = format!(
        r#"label_replace(label_replace(mom_replay_demand{{job="anomaly"}}, "namespace", "{n}", "", ""), "agent", "web", "", "")"#
    );
    let patch = serde_json::json!({"spec": {"anomaly": {
        "windowMinutes": 10, "stepSeconds": 1, "threshold": 0.72, "clearPoints": 1000,
        "nodeQuarantine": "cordon", "maxQuarantinedNodes": 0,
        "nodeSeries": [{"name": "node-latency", "query": query, "flag": FLAG}],
        "agentSeries": [{"name": "web-latency", "query": agent_query, "flag": AGENT_FLAG}]}}});
    patch_momconfig("merge", &patch.to_string());
    let exporter_log = dir.join("exporter.log");
    let mut exporter = common::spawn_guarded(
        Command::new(env!("CARGO_BIN_EXE_mom")).args([
            "exporter",
            "replay",
            "--trace",
            trace_path.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--step-seconds",
            "1",
        ]),
        &exporter_log,
        None,
    );
    let served = std::time::Instant::now();

    // The spike flags the target node, and the agent.
    common::eventually("the target node to be flagged", Duration::from_secs(300), || async {
        flagged(&node(&target).await).then_some(())
    })
    .await;
    eprintln!(
        "measured: node flagged {:.1} s after the trace was first served",
        served.elapsed().as_secs_f64()
    );
    // The cap (0 nodes) holds the quarantine back: flagged (the descheduler evacuates it), not
    // tainted or cordoned, and a Warning Event says why.
    assert_eq!(
        quarantine(&node(&target).await),
        (false, false, None),
        "{target} quarantined over a cap of 0"
    );
    let held = common::eventually("a NodeQuarantineHeldBack Event", Duration::from_secs(60), || async {
        let (ok, out, _) = common::kubectl(
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                "reason=NodeQuarantineHeldBack",
                "-o",
                "json",
            ],
            None,
        );
        let list: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        list["items"]
            .as_array()?
            .iter()
            .find(|e| e["involvedObject"]["name"] == target.as_str())
            .cloned()
    })
    .await;
    let note = held["message"].as_str().unwrap_or_default();
    assert!(note.contains("maxQuarantinedNodes allows 0"), "{held:#}");
    // Positive control: the default cap (20 % of the nodes, rounded up) admits it at the next pass.
    patch_momconfig("merge", r#"{"spec": {"anomaly": {"maxQuarantinedNodes": null}}}"#);
    common::eventually(
        "the target node quarantined under the default cap",
        Duration::from_secs(60),
        || async { (quarantine(&node(&target).await) == (true, true, Some("cordoned".to_string()))).then_some(()) },
    )
    .await;
    let (status, reason, message) = common::eventually("web to be Anomalous", Duration::from_secs(120), || async {
        agent_condition(n, "web", "Anomalous").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(reason, "AnomalyFlagged", "{status} {message}");
    assert!(
        message.contains(AGENT_FLAG) && message.contains("web-latency"),
        "{message}"
    );

    // The descheduler evacuates it: each of web's pods there is evicted.
    common::eventually("web's pods off the target node", Duration::from_secs(180), || async {
        let now = live(&ns).await;
        on_target.iter().all(|p| !now.contains_key(p)).then_some(())
    })
    .await;
    eprintln!(
        "measured: its pods evicted {:.1} s after the trace was first served",
        served.elapsed().as_secs_f64()
    );
    // Their replacements are placed, and not on the flagged node: the extender avoids it while
    // other nodes fit.
    let back = common::eventually("web's replicas placed again", Duration::from_secs(120), || async {
        let now = live(&ns).await;
        (now.len() >= REPLICAS).then_some(now)
    })
    .await;
    assert!(
        back.values().all(|node| *node != target),
        "a replacement was placed on the flagged node {target}: {back:?}"
    );
    let now = live(&ns).await;
    for p in &elsewhere {
        assert!(now.contains_key(p), "{p}, not on the flagged node, was moved: {now:?}");
    }
    for other in all_nodes.iter().filter(|x| **x != target) {
        let n = node(other).await;
        assert!(!flagged(&n), "{other} was flagged");
        assert_eq!(quarantine(&n), (false, false, None), "{other} was quarantined");
    }

    // Receipts, in chain order: the raise, then one evacuation per pod that was on the node.
    let chain = receipts().await;
    let raise = chain
        .iter()
        .find(|(_, _, name, d)| d["kind"] == "anomaly.flag" && *name == target && d["output"]["flagged"] == true)
        .unwrap_or_else(|| panic!("no raise receipt for {target}: {chain:#?}"))
        .0;
    let quarantined = chain
        .iter()
        .find(|(_, _, name, d)| d["kind"] == "node.quarantine" && *name == target)
        .unwrap_or_else(|| panic!("no node.quarantine receipt for {target}: {chain:#?}"));
    assert!(
        quarantined.0 > raise,
        "quarantined (#{}) before the flag (#{raise})",
        quarantined.0
    );
    assert_eq!(quarantined.3["output"]["quarantined"], true, "{:#}", quarantined.3);
    assert_eq!(quarantined.3["inputs"]["mode"], "cordon", "{:#}", quarantined.3);
    // The cap the receipt records: 20 % of the cluster's nodes, rounded up.
    assert_eq!(
        quarantined.3["inputs"]["limit"],
        all_nodes.len().div_ceil(5),
        "{:#}",
        quarantined.3
    );
    assert_eq!(
        chain
            .iter()
            .filter(|(_, _, _, d)| d["kind"] == "node.quarantine")
            .count(),
        1,
        "{chain:#?}"
    );
    for p in &on_target {
        let (seq, action, _, d) = chain
            .iter()
            .find(|(_, _, name, d)| name == p && d["kind"] == "descheduler.plan")
            .unwrap_or_else(|| panic!("no eviction receipt for {p}"));
        assert_eq!(action, "evict", "{d:#}");
        assert!(*seq > raise, "{p} was evicted (#{seq}) before the flag (#{raise})");
        assert_eq!(d["move"]["from"], target.as_str(), "{d:#}");
        assert_eq!(d["move"]["strategy"], "evacuation", "{d:#}");
        assert_eq!(
            d["move"]["reason"],
            format!("node {target} is flagged anomalous"),
            "{d:#}"
        );
    }
    for p in &elsewhere {
        assert!(
            !chain
                .iter()
                .any(|(_, _, name, d)| name == p && d["kind"] == "descheduler.plan"),
            "{p} has an eviction receipt"
        );
    }

    // spec.anomaly removed: no series names either flag; both clear at the next pass.
    patch_momconfig("json", r#"[{"op":"remove","path":"/spec/anomaly"}]"#);
    let removed = std::time::Instant::now();
    common::eventually("the target node's flag to clear", Duration::from_secs(120), || async {
        (!flagged(&node(&target).await)).then_some(())
    })
    .await;
    eprintln!(
        "measured: node flag cleared {:.1} s after spec.anomaly was removed",
        removed.elapsed().as_secs_f64()
    );
    let released = node(&target).await;
    assert!(released.annotations().get("mom.hypersync.io/anomaly-flags").is_none());
    assert_eq!(
        quarantine(&released),
        (false, false, None),
        "{target} still quarantined"
    );
    let chain = receipts().await;
    let lifted = chain
        .iter()
        .rfind(|(_, _, name, d)| d["kind"] == "node.quarantine" && *name == target)
        .unwrap();
    assert_eq!(lifted.3["output"]["quarantined"], false, "{:#}", lifted.3);
    assert_eq!(lifted.3["inputs"]["label"], "cordoned", "{:#}", lifted.3);
    let (_, reason, _) = common::eventually("web no longer Anomalous", Duration::from_secs(120), || async {
        agent_condition(n, "web", "Anomalous").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "NoAnomaly");
    let chain = receipts().await;
    let unnamed: Vec<&serde_json::Value> = chain
        .iter()
        .filter(|(_, _, _, d)| d["kind"] == "anomaly.unnamed")
        .map(|(_, _, _, d)| d)
        .collect();
    for (subject, flag) in [(format!("node/{target}"), FLAG), (format!("agent/{n}/web"), AGENT_FLAG)] {
        let d = unnamed
            .iter()
            .find(|d| d["inputs"]["subject"] == subject.as_str())
            .unwrap_or_else(|| panic!("no anomaly.unnamed receipt for {subject}: {unnamed:#?}"));
        assert_eq!(d["inputs"]["flag"], flag, "{d:#}");
        assert_eq!(d["output"]["flagged"], false, "{d:#}");
    }
    // Cleared by the removal, not by the window (which still holds the spike).
    assert!(
        !chain
            .iter()
            .any(|(_, _, _, d)| d["kind"] == "anomaly.flag" && d["output"]["flagged"] == false),
        "a window cleared a flag: {chain:#?}"
    );

    // Every decision replays from its receipt.
    let replay = &replay_report().await;
    assert!(replay["mismatches"].as_array().is_none_or(|m| m.is_empty()), "{replay}");
    for kind in ["anomaly.flag", "anomaly.unnamed", "descheduler.plan", "node.quarantine"] {
        assert!(replay["unregistered"].get(kind).is_none(), "{replay}");
    }
    let replayable = chain
        .iter()
        .filter(|(_, _, _, d)| {
            ["anomaly.flag", "anomaly.unnamed", "node.quarantine"].contains(&d["kind"].as_str().unwrap_or_default())
        })
        .count();
    assert!(replay["matched"].as_u64().unwrap() >= replayable as u64, "{replay}");
    eprintln!(
        "measured: replay matched {} ({replayable} anomaly decisions)",
        replay["matched"]
    );

    for child in [&mut exporter, &mut prometheus] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
