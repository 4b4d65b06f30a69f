//! Observability end to end: a real Prometheus (Debian's package) scrapes the operator's
//! `/metrics` while MOM places and scales an agent at `full_audit`, and every series the
//! operator promises is queryable there: reconciles, errors and durations per controller,
//! extender latency per verb, decisions by kind, receipts written, the chain head, leadership.
//! Kubernetes Events for the actions are checked too.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

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

#[tokio::test]
async fn prometheus_scrapes_every_operator_series_while_mom_places_and_records() {
    let mom = common::mom();
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
    // The agent whose template cannot become a pod failed before anything was recorded.
    let broken = receipts
        .list(&ListParams::default().labels("mom.hypersync.io/subject=broken"))
        .await
        .unwrap()
        .items;
    assert!(
        broken.is_empty(),
        "receipts for an action that never happened: {}",
        broken.len()
    );

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
