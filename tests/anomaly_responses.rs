//! The responses to an agent's anomaly flag, end to end: a real Prometheus scrapes `mom
//! exporter replay` (an injected spike), attributed to each agent by an agent series.
//!
//! Automatic rollback (OrchestrationStrategy `spec.resilience.rollback.mode: auto`): two agents
//! get the same bad template change before the spike. The agent whose strategy says `auto` gets
//! its previous spec back (an `agent.rollback` receipt first, then the spec, `replicas` kept,
//! Event `RolledBack`); the one whose strategy says `manual` keeps the bad spec though it is
//! flagged too. A third agent gets a second spec, then its strategy (`auto`) a bad change: the
//! strategy, not the agent, gets its previous spec back (a `strategy.rollback` receipt first,
//! then the spec, Event `RolledBack` on the strategy), and the agent keeps its second spec.
//!
//! Quarantine (`spec.resilience.quarantine: isolate`): a third agent is isolated while its flag
//! is up (a deny-all NetworkPolicy over its pods, condition `Quarantined`, no new replicas when
//! it is scaled up), and released when the flag clears (policy deleted, the held-back replica
//! made). The agents without quarantine get no policy. `mom verify --replay` recomputes the
//! rollback and quarantine decisions.

mod anomaly_support;
mod common;

use std::process::Command;
use std::time::Duration;

use anomaly_support::{patch_momconfig, replay_report};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, Patch, PatchParams};
use mom::operator::crd::{GeometricAgent, OrchestrationStrategy, Receipt};

const FLAG: &str = "agent-errors-high";

fn strategy(ns: &str, name: &str, mode: &str, quarantine: &str) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"scaling":{{"method":"manual","minReplicas":0,"maxReplicas":5}},
                     "resilience":{{"rollback":{{"mode":"{mode}","withinMinutes":15}},
                                    "quarantine":"{quarantine}"}}}}}}"#
    )
}

/// The quarantine NetworkPolicy of agent `name`, if any.
async fn quarantine_policy(ns: &str, name: &str) -> Option<NetworkPolicy> {
    let api: Api<NetworkPolicy> = Api::namespaced(common::client().await, ns);
    api.get_opt(&format!("mom-quarantine-{name}")).await.unwrap()
}

/// Status of condition `kind` of agent `name`.
fn condition(ns: &str, name: &str, kind: &str) -> String {
    let path = format!("jsonpath={{.status.conditions[?(@.type==\"{kind}\")].status}}");
    common::kubectl(&["get", "geometricagent", name, "-n", ns, "-o", &path], None).1
}

/// Pods of agent `name` not being deleted.
async fn pods(ns: &str, name: &str) -> usize {
    let api: Api<Pod> = Api::namespaced(common::client().await, ns);
    let selector = format!("mom.hypersync.io/agent={name}");
    api.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count()
}

fn agent(ns: &str, name: &str, strategy: &str) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"workloadType":"interactive","replicas":2,"strategyRef":{{"name":"{strategy}"}},
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause"}}]}}}}}}}}"#
    )
}

/// The decisions of `kind` recorded about agent `name`, in chain order, with their sequence.
async fn decisions(ns: &str, kind: &str, name: &str) -> Vec<(i64, serde_json::Value)> {
    let api: Api<Receipt> = Api::namespaced(common::client().await, ns);
    let mut list = api.list(&ListParams::default()).await.unwrap().items;
    list.sort_by_key(|r| r.spec.sequence);
    list.into_iter()
        .filter(|r| r.spec.decision["kind"] == kind && r.spec.subject.name == name)
        .map(|r| (r.spec.sequence, r.spec.decision))
        .collect()
}

/// `.spec.<path>` of agent `name` as stored.
fn field(ns: &str, name: &str, path: &str) -> String {
    let jsonpath = format!("jsonpath={{.spec.{path}}}");
    common::kubectl(&["get", "geometricagent", name, "-n", ns, "-o", &jsonpath], None).1
}

fn image(ns: &str, name: &str) -> String {
    field(ns, name, "template.spec.containers[0].image")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flagged_agent_or_its_newer_strategy_change_is_rolled_back_under_auto_kept_under_manual_and_isolated_under_quarantine()
 {
    common::use_private_control_plane();
    common::ensure_kwok_nodes(1, 2, 1);
    let dir = std::env::temp_dir().join(format!("mom-auto-rollback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace_path = dir.join("spike.csv");
    std::fs::write(&trace_path, anomaly_support::spike_trace(600)).unwrap();
    let port = common::free_port();
    let (prometheus_url, mut prometheus) =
        common::start_prometheus(&dir, &[("anomaly".to_string(), format!("127.0.0.1:{port}"))]);
    let mom = common::mom_with_flags(&[format!("--prometheus-url={prometheus_url}")]);
    common::apply_test_momconfig("full_audit");
    mom.wait_leading().await;

    let ns = common::TestNamespace::new("auto-rollback").await;
    let n = ns.name.as_str();
    common::apply(&strategy(n, "guarded", "auto", "none"));
    common::apply(&strategy(n, "by-hand", "manual", "none"));
    common::apply(&strategy(n, "isolating", "manual", "isolate"));
    common::apply(&agent(n, "web", "guarded"));
    common::apply(&agent(n, "api", "by-hand"));
    common::apply(&agent(n, "cache", "isolating"));
    common::apply(&strategy(n, "tuned", "auto", "none"));
    common::apply(&agent(n, "svc", "tuned"));
    for name in ["web", "api", "svc"] {
        common::eventually(
            &format!("{name}'s first spec recorded"),
            Duration::from_secs(60),
            || async move { (decisions(n, "agent.change", name).await.len() == 1).then_some(()) },
        )
        .await;
    }

    // The bad change: another image, and (to see that `replicas` is kept) one more replica.
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), n);
    let bad = serde_json::json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "pause:broken"}]}}}});
    for name in ["web", "api"] {
        agents
            .patch(name, &PatchParams::default(), &Patch::Merge(&bad))
            .await
            .unwrap();
        common::eventually(
            &format!("{name}'s bad spec recorded"),
            Duration::from_secs(60),
            || async move { (decisions(n, "agent.change", name).await.len() == 2).then_some(()) },
        )
        .await;
    }
    let (good_sequence, _) = decisions(n, "agent.change", "web").await[0].clone();
    // svc gets a second spec (so that it has one to be rolled back to, were it blamed), then
    // its strategy changes: maxReplicas 5 → 4.
    let second =
        serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "pause:2"}]}}}});
    agents
        .patch("svc", &PatchParams::default(), &Patch::Merge(&second))
        .await
        .unwrap();
    common::eventually("svc's second spec recorded", Duration::from_secs(60), || async move {
        (decisions(n, "agent.change", "svc").await.len() == 2).then_some(())
    })
    .await;
    let tuned = || async move { decisions(n, "strategy.change", "tuned").await };
    common::eventually("tuned's first spec recorded", Duration::from_secs(60), || async move {
        (tuned().await.len() == 1).then_some(())
    })
    .await;
    let strategies: Api<OrchestrationStrategy> = Api::namespaced(ns.client(), n);
    let lower = serde_json::json!({"spec": {"scaling": {"maxReplicas": 4}}});
    strategies
        .patch("tuned", &PatchParams::default(), &Patch::Merge(&lower))
        .await
        .unwrap();
    common::eventually("tuned's bad spec recorded", Duration::from_secs(60), || async move {
        (tuned().await.len() == 2).then_some(())
    })
    .await;
    let tuned_changes = tuned().await;
    let (tuned_good, first) = tuned_changes[0].clone();
    assert_eq!(first["spec"]["scaling"]["maxReplicas"], 5, "{first:#}");
    assert_eq!(tuned_changes[1].1["previousGeneration"], 1, "{tuned_changes:#?}");

    // Now the series: the same spike for both agents.
    // cache's series is scored by the level-shift detector (MomConfig `detector: shift`): the
    // spike's 3 points of +60 are a shift to it too, and its receipts name the detector.
    let series = |agent: &str| {
        let mut s = serde_json::json!({"name": format!("{agent}-errors"), "flag": FLAG, "query": format!(
            r#"label_replace(label_replace(mom_replay_demand{{job="anomaly"}}, "namespace", "{n}", "", ""), "agent", "{agent}", "", "")"#
        )});
        if agent == "cache" {
            s["detector"] = "shift".into();
        }
        s
    };
    let patch = serde_json::json!({"spec": {"anomaly": {
        "windowMinutes": 3, "stepSeconds": 1, "clearPoints": 60,
        "agentSeries": [series("web"), series("api"), series("cache"), series("svc")]}}});
    patch_momconfig("merge", &patch.to_string());
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
        &dir.join("exporter.log"),
        None,
    );

    // Both are flagged; web (auto) gets its first spec back, with the replicas of now.
    for name in ["web", "api", "cache", "svc"] {
        common::eventually(&format!("{name} flagged"), Duration::from_secs(240), || async move {
            let raised = decisions(n, "anomaly.flag", name).await;
            raised.iter().any(|(_, d)| d["output"]["flagged"] == true).then_some(())
        })
        .await;
    }
    let detector = |name: &'static str| async move {
        let raised = decisions(n, "anomaly.flag", name).await;
        raised
            .iter()
            .find(|(_, d)| d["output"]["flagged"] == true)
            .map(|(_, d)| d["inputs"]["detector"].clone())
    };
    assert_eq!(detector("cache").await, Some(serde_json::json!("shift")));
    assert_eq!(
        detector("web").await,
        Some(serde_json::Value::Null),
        "nab is left out of the inputs"
    );
    common::eventually(
        "web rolled back to image pause",
        Duration::from_secs(60),
        || async move { (image(n, "web") == "pause").then_some(()) },
    )
    .await;
    assert_eq!(
        field(n, "web", "replicas"),
        "3",
        "the rollback keeps the replicas of now"
    );
    let rollbacks = decisions(n, "agent.rollback", "web").await;
    assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    let (rollback_sequence, record) = &rollbacks[0];
    assert_eq!(record["output"]["rollback"], true, "{record:#}");
    assert_eq!(record["output"]["toSequence"], good_sequence, "{record:#}");
    // The receipt comes before the restored spec's own agent.change.
    let changes = decisions(n, "agent.change", "web").await;
    let restored = common::eventually("the restored spec recorded", Duration::from_secs(60), || async move {
        let changes = decisions(n, "agent.change", "web").await;
        (changes.len() == 3).then(|| changes[2].clone())
    })
    .await;
    assert!(restored.0 > *rollback_sequence, "{changes:#?}");
    assert_eq!(
        restored.1["spec"]["template"]["spec"]["containers"][0]["image"],
        "pause"
    );
    let events = common::kubectl(&["get", "events", "-n", n, "-o", "json"], None).1;
    assert!(events.contains("RolledBack"), "no RolledBack Event: {events}");

    // api (manual) was flagged too and keeps its bad spec; nothing rolled it back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(image(n, "api"), "pause:broken");
    assert!(decisions(n, "agent.rollback", "api").await.is_empty());

    // cache (isolate) is quarantined while flagged: a deny-all policy over its pods, and a
    // scale-up makes no new replica. The agents without quarantine get no policy (the control).
    let policy = common::eventually("cache's quarantine policy", Duration::from_secs(60), || async move {
        quarantine_policy(n, "cache").await
    })
    .await;
    let spec = serde_json::to_value(policy.spec.unwrap()).unwrap();
    assert_eq!(
        spec["podSelector"]["matchLabels"]["mom.hypersync.io/agent"], "cache",
        "{spec:#}"
    );
    assert_eq!(
        spec["policyTypes"],
        serde_json::json!(["Ingress", "Egress"]),
        "{spec:#}"
    );
    assert!(
        spec.get("ingress").is_none() && spec.get("egress").is_none(),
        "{spec:#}"
    );
    common::eventually("cache Quarantined=True", Duration::from_secs(30), || async move {
        (condition(n, "cache", "Quarantined") == "True").then_some(())
    })
    .await;
    for name in ["web", "api", "svc"] {
        assert!(quarantine_policy(n, name).await.is_none(), "{name} has no quarantine");
    }
    assert_eq!(pods(n, "cache").await, 2);
    let more = serde_json::json!({"spec": {"replicas": 3}});
    agents
        .patch("cache", &PatchParams::default(), &Patch::Merge(&more))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pods(n, "cache").await, 2, "a new replica was made while quarantined");
    // The flag clears (60 quiet points): the policy goes and the held-back replica is made.
    common::eventually("cache's quarantine lifted", Duration::from_secs(240), || async move {
        quarantine_policy(n, "cache").await.is_none().then_some(())
    })
    .await;
    common::eventually("cache's third replica", Duration::from_secs(60), || async move {
        (pods(n, "cache").await == 3).then_some(())
    })
    .await;
    assert_eq!(condition(n, "cache", "Quarantined"), "False");
    let isolations: Vec<bool> = decisions(n, "agent.quarantine", "cache")
        .await
        .iter()
        .map(|(_, d)| d["output"]["isolated"] == true)
        .collect();
    assert_eq!(isolations, vec![true, false]);

    // (Checked after the quarantine, whose flag clears on its own clock.) svc's strategy changed
    // after svc's spec: the strategy gets maxReplicas 5 back, svc keeps
    // its spec.
    let max_replicas = || {
        common::kubectl(
            &[
                "get",
                "orchestrationstrategy",
                "tuned",
                "-n",
                n,
                "-o",
                "jsonpath={.spec.scaling.maxReplicas}",
            ],
            None,
        )
        .1
    };
    common::eventually(
        "tuned rolled back to maxReplicas 5",
        Duration::from_secs(60),
        || async move { (max_replicas() == "5").then_some(()) },
    )
    .await;
    let strategy_rollbacks = decisions(n, "strategy.rollback", "tuned").await;
    assert_eq!(strategy_rollbacks.len(), 1, "{strategy_rollbacks:#?}");
    let (strategy_rollback_sequence, record) = &strategy_rollbacks[0];
    assert_eq!(record["output"]["toSequence"], tuned_good, "{record:#}");
    assert_eq!(record["inputs"]["flags"][0]["agent"], format!("{n}/svc"), "{record:#}");
    let restored = common::eventually(
        "tuned's restored spec recorded",
        Duration::from_secs(60),
        || async move {
            let changes = tuned().await;
            (changes.len() == 3).then(|| changes[2].clone())
        },
    )
    .await;
    assert!(restored.0 > *strategy_rollback_sequence, "{restored:#?}");
    assert_eq!(restored.1["spec"]["scaling"]["maxReplicas"], 5);
    // Minutes of reconciles have passed since the strategy's restored spec (the quarantine
    // above): the same raise did not roll svc back too.
    assert!(
        decisions(n, "agent.rollback", "svc").await.is_empty(),
        "svc's own spec was blamed"
    );
    assert_eq!(image(n, "svc"), "pause:2");
    assert_eq!(decisions(n, "agent.change", "svc").await.len(), 2);
    let strategy_events = common::kubectl(
        &[
            "get",
            "events",
            "-n",
            n,
            "--field-selector",
            "involvedObject.kind=OrchestrationStrategy,reason=RolledBack",
            "-o",
            "name",
        ],
        None,
    )
    .1;
    assert!(
        !strategy_events.trim().is_empty(),
        "no RolledBack Event on the strategy"
    );

    // The rollback and quarantine decisions replay from their receipts.
    let replay = replay_report().await;
    assert!(replay["mismatches"].as_array().is_none_or(|m| m.is_empty()), "{replay}");
    assert!(replay["unregistered"].get("agent.rollback").is_none(), "{replay}");
    assert!(replay["unregistered"].get("strategy.rollback").is_none(), "{replay}");
    assert!(replay["unregistered"].get("agent.quarantine").is_none(), "{replay}");

    patch_momconfig("json", r#"[{"op":"remove","path":"/spec/anomaly"}]"#);
    for child in [&mut exporter, &mut prometheus] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
