//! Observability end to end: a real Prometheus (Debian's package) scrapes the operator's
//! `/metrics` while MOM places and scales an agent at `full_audit`, and every series the
//! operator promises is queryable there: reconciles, errors and durations per controller,
//! extender latency per verb, decisions by kind, receipts written, the chain head, leadership.
//! Kubernetes Events for the actions are checked too.
//!
//! The Grafana dashboard of the chart (`charts/mom/dashboards/mom.json`) is checked against the
//! same Prometheus: every panel's query, with the dashboard variables substituted
//! ([`SUBSTITUTIONS`]), must return at least one series with a finite value while the operator
//! works. The test makes the traffic each panel needs: placement through the extender, a
//! manual-scaling strategy (scaler evaluations), a contended pool (auctions), the descheduler in
//! dry-run (planning time), and a template that cannot become a pod (reconcile errors).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use mom::labels::POOL_LABEL;
use serde_json::{Value, json};

/// What the dashboard variables stand for in the queries run here. Grafana fills them in
/// before it sends a query: `$job` is the Prometheus job scraping the operator (`mom` here),
/// `$instance` the replicas chosen, whose "All" value is the regex `.*`, and
/// `$__rate_interval` Grafana's window for `rate()` (at least four scrape intervals). `5m`
/// spans the whole test, so a rate sees every event the test caused, however long ago.
const SUBSTITUTIONS: [(&str, &str); 3] = [("$__rate_interval", "5m"), ("$instance", ".*"), ("$job", "mom")];

/// The value of a Prometheus instant query that must return exactly one sample.
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let url = format!(
        "{prometheus}/api/v1/query?query={}",
        mom::operator::prometheus::encode_component(promql)
    );
    let body: serde_json::Value = serde_json::from_str(&common::http_get(&url)?).ok()?;
    let result = body["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

/// The values of every series a Prometheus instant query returns; `None` when Prometheus
/// refused the query (a syntax error) or did not answer.
fn query_all(prometheus: &str, promql: &str) -> Option<Vec<f64>> {
    let url = format!(
        "{prometheus}/api/v1/query?query={}",
        mom::operator::prometheus::encode_component(promql)
    );
    let body: Value = serde_json::from_str(&common::http_get(&url)?).ok()?;
    if body["status"] != "success" {
        return None;
    }
    let values = body["data"]["result"]
        .as_array()?
        .iter()
        .filter_map(|series| series["value"][1].as_str()?.parse().ok())
        .collect();
    Some(values)
}

/// (panel title, query) of every query of every panel of the chart's dashboard, the variables
/// substituted.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mom/dashboards/mom.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("the dashboard has panels") {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let mut expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a target of panel {title:?} has no expr"))
                .to_string();
            for (variable, value) in SUBSTITUTIONS {
                expr = expr.replace(variable, value);
            }
            assert!(
                !expr.contains('$'),
                "panel {title:?} uses a variable this test does not substitute: {expr}"
            );
            queries.push((title.clone(), expr));
        }
    }
    queries
}

/// A tainted kwok node of its own pool, deleted (after the namespace's agents and pods) when
/// dropped.
struct PoolNode {
    namespace: String,
    name: String,
}

impl PoolNode {
    fn create(pool: &str, namespace: &str) -> Self {
        let name = format!("{pool}-n0");
        let spec = mom::cluster_layout::NodeSpec {
            name: name.clone(),
            labels: BTreeMap::from([
                (POOL_LABEL.to_string(), pool.to_string()),
                ("topology.kubernetes.io/region".to_string(), pool.to_string()),
                ("topology.kubernetes.io/zone".to_string(), format!("{pool}-a")),
                ("kubernetes.io/hostname".to_string(), name.clone()),
            ]),
            cpu_millis: 2000,
            memory_bytes: 4 << 30,
            pods: 110,
        };
        let mut node = spec.kwok_manifest();
        node["spec"] = json!({"taints": [{"key": POOL_LABEL, "value": pool, "effect": "NoSchedule"}]});
        let (ok, _, err) = common::kubectl(
            &["apply", "--server-side", "--field-manager", "mom-tests", "-f", "-"],
            Some(&node.to_string()),
        );
        assert!(ok, "creating the pool's kwok node failed: {err}");
        Self {
            namespace: namespace.to_string(),
            name,
        }
    }
}

impl Drop for PoolNode {
    fn drop(&mut self) {
        let ns = self.namespace.as_str();
        let _ = common::kubectl(&["delete", "geometricagents", "--all", "-n", ns, "--timeout=60s"], None);
        let _ = common::kubectl(&["delete", "pods", "--all", "-n", ns, "--timeout=60s"], None);
        let _ = common::kubectl(&["delete", "node", "--wait=false", &self.name], None);
    }
}

/// An agent of `pool` wanting `replicas` one-cpu replicas, bidding `value` per replica.
fn pool_agent(ns: &str, pool: &str, name: &str, replicas: u32, value: u32) -> String {
    json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "workloadType": "batch", "replicas": replicas, "bid": {"valuePerReplica": value},
            "template": {"spec": {
                "nodeSelector": {POOL_LABEL: pool},
                "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": pool, "effect": "NoSchedule"}],
                "containers": [{"name": "c", "image": "pause",
                                "resources": {"requests": {"cpu": "1", "memory": "256Mi"}}}]
            }}
        }
    })
    .to_string()
}

#[tokio::test]
async fn prometheus_scrapes_every_operator_series_while_mom_places_and_records() {
    // Fast leader loops, and the descheduler planning (dry run: it evicts nothing) so its
    // planning time is measured.
    let mom = common::mom_with(&[
        "--auction-tick-seconds",
        "1",
        "--scaler-tick-seconds",
        "1",
        "--deschedule-dry-run",
        "--deschedule-tick-seconds",
        "1",
    ]);
    common::apply_test_momconfig("full_audit");
    let dir = std::env::temp_dir().join(format!("mom-observability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = mom.metrics_url.trim_start_matches("http://").to_string();
    let (prometheus, _process) = common::start_prometheus(&dir, &[("mom".to_string(), target)]);

    // Work for the operator: an agent placed through the extender, and one whose template
    // cannot become a pod (a reconcile error).
    let ns = common::TestNamespace::new("observe").await;
    let n = &ns.name;
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"watched","namespace":"{n}"}},
            "spec":{{"workloadType":"interactive","replicas":2,
              "template":{{"spec":{{"containers":[{{"name":"c","image":"pause",
                 "resources":{{"requests":{{"cpu":"50m","memory":"32Mi"}}}}}}]}}}}}}}}"#
    ));
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"GeometricAgent","metadata":{{"name":"broken","namespace":"{n}"}},
            "spec":{{"workloadType":"batch","replicas":1,"template":{{"metadata":{{"labels":{{"a":"b"}}}}}}}}}}"#
    ));

    // Scaler evaluations: a manual-scaling strategy for the namespace's agents.
    common::apply(&format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"steady","namespace":"{n}"}},
            "spec":{{"priority":10,"scaling":{{"method":"manual","minReplicas":0,"maxReplicas":20}}}}}}"#
    ));
    // Auctions: a pool of one two-cpu node two agents want six one-cpu replicas of.
    let contended = common::TestNamespace::new("observe-pool").await;
    let pool = contended.name.clone();
    let _pool_node = PoolNode::create(&pool, &pool);
    common::apply(&pool_agent(&pool, &pool, "high", 3, 5));
    common::apply(&pool_agent(&pool, &pool, "low", 3, 2));

    let up = common::eventually("Prometheus to scrape the operator", Duration::from_secs(60), || async {
        query(&prometheus, r#"up{job="mom"}"#).filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(up, 1.0);

    let series = [
        r#"mom_leader{job="mom"}"#,
        r#"mom_reconciles_total{controller="geometricagent"}"#,
        r#"mom_reconcile_errors_total{controller="geometricagent"}"#,
        r#"mom_reconcile_duration_seconds_count{controller="geometricagent"}"#,
        r#"mom_extender_request_duration_seconds_count{verb="filter"}"#,
        r#"mom_extender_request_duration_seconds_count{verb="prioritize"}"#,
        r#"mom_extender_request_duration_seconds_count{verb="bind"}"#,
        r#"mom_decisions_total{kind="scale_up"}"#,
        r#"mom_decisions_total{kind="bind"}"#,
        r#"mom_receipts_written_total{action="spawn"}"#,
        "mom_receipt_chain_head_sequence",
    ];
    for promql in series {
        let value = common::eventually(
            &format!("{promql} in Prometheus with a positive value"),
            Duration::from_secs(90),
            || async { query(&prometheus, promql).filter(|v| *v > 0.0 || promql.contains("chain_head")) },
        )
        .await;
        println!("{promql} = {value}");
    }
    assert_eq!(query(&prometheus, r#"mom_leader{job="mom"}"#), Some(1.0));
    // The chain head is a sequence number, at least that of the newest receipt written for our
    // agent (read from the apiserver; the series starts at -1 before any receipt).
    let receipts: Api<mom::operator::crd::Receipt> = Api::namespaced(ns.client(), n);
    let newest = receipts
        .list(&ListParams::default().labels("mom.hypersync.io/subject=watched"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.spec.sequence)
        .max()
        .expect("a receipt written for the agent 'watched' (its pods were created and bound)");
    let head = common::eventually(
        &format!("mom_receipt_chain_head_sequence at or past {newest}, the newest receipt of 'watched'"),
        Duration::from_secs(60),
        || async { query(&prometheus, "mom_receipt_chain_head_sequence").filter(|h| *h >= newest as f64) },
    )
    .await;
    println!("chain head {head}, newest receipt of 'watched' {newest}");
    // The agent whose template cannot become a pod failed before any action was recorded: its
    // only receipt is the record of its spec (`agent.change`, written before the controller acts
    // on a generation), no spawn.
    let broken = receipts
        .list(&ListParams::default().labels("mom.hypersync.io/subject=broken"))
        .await
        .unwrap()
        .items;
    let actions: Vec<&serde_json::Value> = broken
        .iter()
        .map(|r| &r.spec.decision)
        .filter(|d| d["kind"] != "agent.change")
        .collect();
    assert!(
        actions.is_empty() && broken.len() <= 1,
        "receipts for an action that never happened: {actions:?} ({} in all)",
        broken.len()
    );

    // Every query of the dashboard returns data from this operator. A rate needs the counter to
    // move while Prometheus watches it (a series first scraped at 3 and never again changed
    // has a rate of 0, and a latency quantile of NaN), so more placement work now: two more
    // replicas of 'watched', filtered, prioritised, bound and recorded.
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "geometricagent",
            "watched",
            "-n",
            n,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
        None,
    );
    assert!(ok, "scaling 'watched' to 4: {err}");
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "the dashboard has only {} queries", queries.len());
    for (title, promql) in &queries {
        let values = common::eventually(
            &format!("panel {title:?}: {promql} to return a series with a finite value"),
            Duration::from_secs(120),
            || async { query_all(&prometheus, promql).filter(|v| v.iter().any(|x| x.is_finite())) },
        )
        .await;
        println!("panel {title:?}: {promql} = {values:?}");
    }
    // The check tells a query without data apart: the first panel's query with a misspelt
    // metric returns no series (while, above, the right one returned some).
    let (title, first) = &queries[0];
    let misspelt = first.replacen("mom_", "mom_misspelt_", 1);
    assert_ne!(&misspelt, first, "panel {title:?} queries no mom_ metric");
    assert_eq!(query_all(&prometheus, &misspelt), Some(vec![]), "{misspelt}");

    // Events for the actions, on the agent.
    let events: Api<Event> = Api::namespaced(ns.client(), n);
    common::eventually("a ScaledUp Event on the agent", Duration::from_secs(60), || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default().fields("involvedObject.name=watched"))
                .await
                .ok()?
                .items
                .into_iter()
                .any(|e| e.reason.as_deref() == Some("ScaledUp"))
                .then_some(())
        }
    })
    .await;
}
