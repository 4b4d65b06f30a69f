//! The anomaly loop end to end: a real Prometheus scrapes `mom exporter replay`, which serves a
//! noisy level with an injected spike; MomConfig `spec.anomaly` attributes it to one kwok node
//! (`label_replace` adds the `node` label). The operator flags that node (label, annotation,
//! Event, `anomaly.flag` receipt with the window inline, `mom_anomalies_total`), clears it after
//! the series recovers, and `mom verify --replay` recomputes every flag decision. A second
//! series with a broken query flags nothing and is named in the MomConfig condition
//! `AnomalyDetection`; `enabled: false` turns the condition to `AnomalyDetectionOff`. The same spike, attributed to a GeometricAgent by an agent series, raises
//! an agent flag: the OrchestrationStrategy whose `triggers.anomalyFlags` names it takes over
//! the agent (`status.strategy`, the strategy's `status.matchedAgents`) while the flag is up,
//! and the untriggered one has it again once the flag clears. While flags are up the MomConfig's
//! `status.rootCause` names a domain holding them, and the flagged agent's own
//! `status.rootCause` a domain holding the agent; both go when the flags clear.

mod anomaly_support;
mod common;

use std::process::Command;
use std::time::Duration;

use anomaly_support::{flagged, node, patch_momconfig, replay_report};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use mom::operator::crd::Receipt;

const FLAG: &str = "latency-high";
const AGENT_FLAG: &str = "agent-latency-high";
/// Not the defaults (0.7, 20), so a loop that ignored the fields shows in the receipts. A flag
/// stays up for 60 one-second points after the spike: long enough to be seen under CI load.
const THRESHOLD: f64 = 0.72;
const CLEAR_POINTS: u32 = 60;

/// A strategy of `priority`, triggered by `flags` when given.
fn strategy(ns: &str, name: &str, priority: u32, flags: &[&str]) -> String {
    let triggers = if flags.is_empty() {
        String::new()
    } else {
        format!(r#","triggers":{{"anomalyFlags":{}}}"#, serde_json::json!(flags))
    };
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"priority":{priority},"scaling":{{"method":"manual","minReplicas":0,"maxReplicas":4}}{triggers}}}}}"#
    )
}

/// The agent's `status.strategy` and whether `strategy` lists it in `status.matchedAgents`.
fn selected(ns: &str, agent: &str, strategy: &str) -> (Option<String>, bool) {
    let get = |args: &[&str]| {
        let (ok, out, _) = common::kubectl(args, None);
        ok.then(|| serde_json::from_str::<serde_json::Value>(&out).ok())
            .flatten()
    };
    let chosen = get(&["get", "geometricagent", agent, "-n", ns, "-o", "json"])
        .and_then(|v| v["status"]["strategy"].as_str().map(String::from));
    let matched = get(&["get", "orchestrationstrategy", strategy, "-n", ns, "-o", "json"]).is_some_and(|v| {
        v["status"]["matchedAgents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == agent))
    });
    (chosen, matched)
}

/// GeometricAgent web's `status.rootCause`: `Some(None)` when absent, `None` when the agent
/// could not be read.
fn agent_root_cause(ns: &str) -> Option<Option<serde_json::Value>> {
    let (ok, out, _) = common::kubectl(&["get", "geometricagent", "web", "-n", ns, "-o", "json"], None);
    let v: serde_json::Value = ok.then(|| serde_json::from_str(&out).ok()).flatten()?;
    Some(v["status"].get("rootCause").cloned())
}

/// The `anomaly.flag` decisions recorded, in chain order.
async fn flag_decisions() -> Vec<serde_json::Value> {
    let api: Api<Receipt> = Api::all(common::client().await);
    let mut list = api.list(&ListParams::default()).await.unwrap().items;
    list.sort_by_key(|r| r.spec.sequence);
    list.into_iter()
        .map(|r| r.spec.decision)
        .filter(|d| d["kind"] == "anomaly.flag")
        .collect()
}

fn condition(kind: &str) -> Option<(String, String, String)> {
    let (ok, out, _) = common::kubectl(&["get", "momconfig", "default", "-o", "json"], None);
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let c = v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["message"].as_str()?.to_string(),
    ))
}

fn events(reason: &str, node: &str) -> usize {
    let (ok, out, _) = common::kubectl(
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason={reason}"),
            "-o",
            "json",
        ],
        None,
    );
    if !ok {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["involvedObject"]["name"] == node || e["regarding"]["name"] == node)
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_node_series_with_an_injected_spike_flags_the_node_then_clears_and_every_flag_replays() {
    common::ensure_kwok_nodes(1, 2, 1);
    let dir = std::env::temp_dir().join(format!("mom-anomaly-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace_path = dir.join("spike.csv");
    std::fs::write(&trace_path, anomaly_support::spike_trace(600)).unwrap();
    let port = common::free_port();
    let (prometheus_url, mut prometheus) =
        common::start_prometheus(&dir, &[("anomaly".to_string(), format!("127.0.0.1:{port}"))]);
    let mom = common::mom_with_flags(&[format!("--prometheus-url={prometheus_url}")]);
    common::apply_test_momconfig("full_audit");

    let nodes = Api::<Node>::all(common::client().await)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
    names.sort();
    let target = names[0].clone();
    let others: Vec<String> = names[1..].to_vec();

    // An agent whose strategy an agent flag switches.
    let ns = common::TestNamespace::new("anomaly-agent").await;
    let agent_ns = ns.name.as_str();
    common::apply(&strategy(agent_ns, "steady", 10, &[]));
    common::apply(&strategy(agent_ns, "degraded", 20, &[AGENT_FLAG]));
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent",
            "metadata":{{"name":"web","namespace":"{agent_ns}"}},
            "spec":{{"workloadType":"interactive","replicas":1,
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    ));
    // Control: without a flag the untriggered strategy has the agent.
    common::eventually("web under strategy steady", Duration::from_secs(60), || async {
        (selected(agent_ns, "web", "steady") == (Some("steady".into()), true)).then_some(())
    })
    .await;

    let query = format!(r#"label_replace(mom_replay_demand{{job="anomaly"}}, "node", "{target}", "", "")"#);
    let agent_query = format!(
        r#"label_replace(label_replace(mom_replay_demand{{job="anomaly"}}, "namespace", "{agent_ns}", "", ""), "agent", "web", "", "")"#
    );
    let patch = serde_json::json!({"spec": {"anomaly": {
    "windowMinutes": 3, "stepSeconds": 1, "threshold": THRESHOLD, "clearPoints": CLEAR_POINTS,
    "nodeSeries": [
        {"name": "latency", "query": query, "flag": FLAG},
        {"name": "broken", "query": "rate(", "flag": "never"}
    ],
    "agentSeries": [{"name": "web-latency", "query": agent_query, "flag": AGENT_FLAG}]}}});
    patch_momconfig("merge", &patch.to_string());
    // Start serving the trace only now: the window is the trace from its first point.
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
    mom.wait_leading().await;

    // The broken series is named in the condition and raises nothing.
    let (status, reason, message) =
        common::eventually("condition AnomalyDetection", Duration::from_secs(60), || async {
            condition("AnomalyDetection").filter(|c| c.1 == "QueryFailed")
        })
        .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("series broken") && message.contains("rate("),
        "{reason}: {message}"
    );

    // The spike flags the target node. On a time-out, what the loop saw says why.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !flagged(&node(&target).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 240 s waiting for the target node to be labelled anomalous; \
             condition AnomalyDetection: {:?}; flag decisions: {:#?}",
            condition("AnomalyDetection"),
            flag_decisions().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = node(&target).await;
    assert_eq!(
        n.annotations()
            .get("mom.hypersync.io/anomaly-flags")
            .map(String::as_str),
        Some(FLAG)
    );
    for other in &others {
        assert!(!flagged(&node(other).await), "{other} was flagged");
    }
    let raised = flag_decisions().await;
    let first = raised
        .iter()
        .find(|d| d["output"]["flagged"] == true)
        .unwrap_or_else(|| panic!("no raise receipt: {raised:#?}"));
    assert_eq!(first["inputs"]["subject"], format!("node/{target}"));
    assert_eq!(first["inputs"]["flag"], FLAG);
    let points = first["inputs"]["values"].as_array().unwrap();
    assert!(
        points.iter().any(|v| v.as_f64().unwrap() > 60.0),
        "the window of the first raise holds the spike: {first:#}"
    );
    // The spec's fields, as the decision used them.
    assert_eq!(first["inputs"]["threshold"], THRESHOLD, "{first:#}");
    assert_eq!(first["inputs"]["clearPoints"], CLEAR_POINTS, "{first:#}");
    let times: Vec<f64> = first["inputs"]["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| (w[1] - w[0] - 1.0).abs() < 1e-9),
        "stepSeconds 1: points 1 s apart: {times:?}"
    );
    let span = times.last().unwrap() - times.first().unwrap();
    assert!(span <= 180.0, "windowMinutes 3: the window spans {span} s");
    assert!(raised.iter().all(|d| d["inputs"]["flag"] != "never"), "{raised:#?}");
    common::eventually(
        "an AnomalyDetected Event on the node",
        Duration::from_secs(30),
        || async { (events("AnomalyDetected", &target) > 0).then_some(()) },
    )
    .await;
    // The MomConfig names a root cause: a domain holding the flagged node (or the flagged agent
    // on its own), more likely than "nothing failed". The exact ranking is unit-tested.
    let cause = common::eventually("status.rootCause", Duration::from_secs(30), || async {
        let (ok, out, _) = common::kubectl(&["get", "momconfig", "default", "-o", "json"], None);
        let v: serde_json::Value = ok.then(|| serde_json::from_str(&out).ok()).flatten()?;
        let c = v["status"]["rootCause"].clone();
        c.is_object().then_some(c)
    })
    .await;
    let n = node(&target).await;
    let label = |key: &str| n.labels().get(key).cloned().unwrap_or_default();
    let holds_target = match cause["level"].as_str().unwrap_or_default() {
        "node" => cause["name"] == target.as_str() || cause["name"] == label("kubernetes.io/hostname").as_str(),
        "zone" => cause["name"] == label("topology.kubernetes.io/zone").as_str(),
        "region" => cause["name"] == label("topology.kubernetes.io/region").as_str(),
        "upstream" => cause["name"] == format!("{agent_ns}/web").as_str(),
        _ => false,
    };
    assert!(
        holds_target,
        "the root cause holds neither {target} nor the agent: {cause}"
    );
    assert!(
        cause["flagged"].as_i64().unwrap() >= 1
            && cause["flaggedTotal"].as_i64().unwrap() >= cause["flagged"].as_i64().unwrap()
            && cause["confidence"].as_f64().unwrap() > cause["noneConfidence"].as_f64().unwrap(),
        "{cause}"
    );
    // `mom rca explain --cluster` reads the same flags from the API and names the same cause
    // (read again until both saw the same flags: the status is rewritten every 3 s).
    let cp = common::control_plane();
    common::eventually(
        "mom rca explain --cluster to name the status' cause",
        Duration::from_secs(30),
        || async {
            let out = Command::new(env!("CARGO_BIN_EXE_mom"))
                .args(["rca", "explain", "--cluster", "--format", "json"])
                .env("KUBECONFIG", &cp.kubeconfig)
                .output()
                .ok()?;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let explained: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let (ok, status, _) = common::kubectl(&["get", "momconfig", "default", "-o", "json"], None);
            let status: serde_json::Value = ok.then(|| serde_json::from_str(&status).ok()).flatten()?;
            let cause = &status["status"]["rootCause"];
            let top = &explained["top"];
            (top["level"] == cause["level"] && top["name"] == cause["name"]).then_some(())
        },
    )
    .await;
    // The agent flag hands the agent to the triggered strategy.
    common::eventually("web under strategy degraded", Duration::from_secs(120), || async {
        (selected(agent_ns, "web", "degraded") == (Some("degraded".into()), true)).then_some(())
    })
    .await;
    // The flagged agent's own status names a domain that holds it: itself (upstream) or a node,
    // zone or region one of its pods runs in.
    let agent_cause = common::eventually("web's status.rootCause", Duration::from_secs(60), || async {
        agent_root_cause(agent_ns)
            .flatten()
            .filter(serde_json::Value::is_object)
    })
    .await;
    let web_node = anomaly_support::agent_pod_nodes(agent_ns, "web").await;
    assert!(!web_node.is_empty(), "web has no bound pod");
    let mut holds_web = agent_cause["level"] == "upstream" && agent_cause["name"] == format!("{agent_ns}/web").as_str();
    for name in &web_node {
        let n = node(name).await;
        let label = |key: &str| n.labels().get(key).cloned().unwrap_or_default();
        holds_web |= match agent_cause["level"].as_str().unwrap_or_default() {
            "node" => {
                agent_cause["name"] == name.as_str() || agent_cause["name"] == label("kubernetes.io/hostname").as_str()
            }
            "rack" => agent_cause["name"] == label("topology.mom.hypersync.io/rack").as_str(),
            "zone" => agent_cause["name"] == label("topology.kubernetes.io/zone").as_str(),
            "region" => agent_cause["name"] == label("topology.kubernetes.io/region").as_str(),
            _ => false,
        };
    }
    assert!(
        holds_web,
        "web's root cause does not hold web (on {web_node:?}): {agent_cause}"
    );
    assert!(agent_cause["flagged"].as_i64().unwrap() >= 1, "{agent_cause}");
    let metrics = common::scrape_metrics(&mom.metrics_url);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&format!(r#"mom_anomalies_total{{scope="node",flag="{FLAG}"}} "#))),
        "{metrics}"
    );

    // After the spike the flag clears (60 quiet points), with its own receipt.
    common::eventually("the target node's flag to clear", Duration::from_secs(240), || async {
        (!flagged(&node(&target).await)).then_some(())
    })
    .await;
    assert!(
        node(&target)
            .await
            .annotations()
            .get("mom.hypersync.io/anomaly-flags")
            .is_none()
    );
    common::eventually("web back under strategy steady", Duration::from_secs(240), || async {
        (selected(agent_ns, "web", "steady") == (Some("steady".into()), true)).then_some(())
    })
    .await;
    common::eventually(
        "web's status.rootCause gone with its flag",
        Duration::from_secs(60),
        || async { agent_root_cause(agent_ns)?.is_none().then_some(()) },
    )
    .await;
    common::eventually(
        "status.rootCause gone with the flags",
        Duration::from_secs(60),
        || async {
            let (ok, out, _) = common::kubectl(&["get", "momconfig", "default", "-o", "json"], None);
            let v: serde_json::Value = ok.then(|| serde_json::from_str(&out).ok()).flatten()?;
            v["status"].get("rootCause").is_none().then_some(())
        },
    )
    .await;
    let all = flag_decisions().await;
    assert!(all.iter().any(|d| d["output"]["flagged"] == false), "{all:#?}");
    assert!(
        all.iter()
            .any(|d| d["inputs"]["flag"] == AGENT_FLAG && d["output"]["flagged"] == true),
        "no raise receipt for the agent flag: {all:#?}"
    );
    common::eventually(
        "an AnomalyCleared Event on the node",
        Duration::from_secs(30),
        || async { (events("AnomalyCleared", &target) > 0).then_some(()) },
    )
    .await;

    // Every flag decision replays from its receipt.
    let replay = &replay_report().await;
    assert!(replay["mismatches"].as_array().is_none_or(|m| m.is_empty()), "{replay}");
    assert!(replay["unregistered"].get("anomaly.flag").is_none(), "{replay}");
    assert!(replay["matched"].as_u64().unwrap() >= all.len() as u64, "{replay}");

    // enabled: false stops the loop, and the condition says so.
    patch_momconfig("merge", r#"{"spec":{"anomaly":{"enabled":false}}}"#);
    let (status, _, message) = common::eventually("condition AnomalyDetectionOff", Duration::from_secs(60), || async {
        condition("AnomalyDetection").filter(|c| c.1 == "AnomalyDetectionOff")
    })
    .await;
    assert_eq!(status, "False", "{message}");

    patch_momconfig("json", r#"[{"op":"remove","path":"/spec/anomaly"}]"#);
    for child in [&mut exporter, &mut prometheus] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
