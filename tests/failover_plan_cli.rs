//! `mom failover plan` through the binary: a snapshot planned to JSON and to a table, a
//! degenerate model reported as a fallback, and bad input refused with exit code 2. No cluster.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

fn mom(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(args)
        .output()
        .expect("the mom binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file in this test's own temporary directory.
fn tmp(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-failover-plan-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn write(test: &str, name: &str, text: &str) -> String {
    let path = tmp(test, name);
    std::fs::write(&path, text).expect("write snapshot");
    path.to_string_lossy().into_owned()
}

/// Two zones: `zone-a` reliable and healthy, `zone-b` failing often and suspect now.
fn snapshot() -> Value {
    let reliable: Vec<Value> = (0..4)
        .map(|_| json!(["healthy", "healthy", "degraded", "healthy", "healthy"]))
        .collect();
    let failing: Vec<Value> = (0..4)
        .map(|_| json!(["healthy", "degraded", "suspect", "failed", "healthy"]))
        .collect();
    json!({
        "domains": [
            {"name": "zone-b", "kind": "zone",
             "observation": {"heartbeat_lag_seconds": 25.0, "ready": true},
             "history": failing},
            {"name": "zone-a", "kind": "zone",
             "observation": {"heartbeat_lag_seconds": 1.5, "ready": true, "anomaly": false, "restarts": 0, "evictions": 0},
             "history": reliable}
        ],
        "agents": [
            {"name": "shop/web", "domain": "zone-a", "standby": false},
            {"name": "shop/cart", "domain": "zone-b", "standby": true}
        ],
        "weights": {"slo_risk": 10.0, "migration": 1.0, "spare_capacity": 0.2}
    })
}

fn plan_json(path: &str) -> Value {
    let (code, out, err) = mom(&["failover", "plan", "--snapshot", path, "--format", "json"]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    serde_json::from_str(&out).expect("one JSON object on stdout")
}

#[test]
fn a_snapshot_is_planned_to_json_with_one_decision_and_expected_value_per_agent() {
    let path = write("json", "snapshot.json", &snapshot().to_string());
    let report = plan_json(&path);
    assert_eq!(report["fallback"], Value::Null, "{report}");
    assert_eq!(report["policy"].as_array().map(Vec::len), Some(2 * 16));
    let agents = report["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 2);
    // Sorted by name: shop/cart first.
    assert_eq!(agents[0]["agent"], "shop/cart");
    assert_eq!(agents[0]["domain"], "zone-b");
    assert_eq!(agents[0]["state"], "suspect");
    assert_ne!(agents[0]["action"], "stay", "{report}");
    assert_eq!(agents[1]["agent"], "shop/web");
    assert_eq!(agents[1]["state"], "healthy");
    assert_eq!(agents[1]["action"], "stay");
    for a in agents {
        assert!(a["expected_value"].as_f64().is_some_and(f64::is_finite), "{a}");
    }
    // Same input, same bytes.
    let (_, again, _) = mom(&["failover", "plan", "--snapshot", &path, "--format", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&again).ok(), Some(report));
}

#[test]
fn the_table_format_lists_domains_policy_and_agents() {
    let path = write("table", "snapshot.json", &snapshot().to_string());
    let (code, out, err) = mom(&["failover", "plan", "--snapshot", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("POLICY DOMAIN") && out.contains("EXPECTED_VALUE"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("shop/web") && l.contains("stay")),
        "{out}"
    );
    assert!(out.contains("fallback: none"), "{out}");
}

#[test]
fn a_transition_matrix_that_is_not_stochastic_falls_back_with_a_reason_and_exit_code_zero() {
    let mut s = snapshot();
    s["domains"][0]["history"] = json!([]);
    s["domains"][0]["transitions"] = json!([
        [0.5, 0.5, 0.0, 0.0],
        [0.2, 0.2, 0.2, 0.2],
        [0.0, 0.0, 0.5, 0.5],
        [0.0, 0.0, 0.0, 1.0]
    ]);
    let path = write("degenerate", "snapshot.json", &s.to_string());
    let report = plan_json(&path);
    let reason = report["fallback"].as_str().expect("a fallback reason");
    assert!(
        reason.contains("zone-b") && reason.contains("`degraded` sums to 0.8"),
        "{reason}"
    );
    let cart = &report["agents"][0];
    assert_eq!(cart["agent"], "shop/cart");
    assert_eq!(
        cart["action"], "stay",
        "suspect with a standby: the conservative rule stays"
    );
    assert_eq!(cart["expected_value"], Value::Null);
    // The healthy domain keeps its model.
    assert!(report["agents"][1]["expected_value"].as_f64().is_some());
}

/// Runs a plan expected to be refused: exit code 2, no panic; returns stderr.
fn refused(path: &str) -> String {
    let (code, out, err) = mom(&["failover", "plan", "--snapshot", path, "--format", "json"]);
    assert_eq!(code, 2, "stdout {out}\nstderr {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.is_empty(), "nothing on stdout when refused: {out}");
    err
}

#[test]
fn bad_input_is_refused_with_exit_code_two_naming_the_file_or_field() {
    let good = write("bad", "good.json", &snapshot().to_string());
    assert_eq!(mom(&["failover", "plan", "--snapshot", &good]).0, 0, "positive control");

    let missing = tmp("bad", "does-not-exist.json");
    let err = refused(&missing.to_string_lossy());
    assert!(err.contains("does-not-exist.json"), "{err}");

    let err = refused(&write("bad", "invalid.json", "{\"domains\": ["));
    assert!(err.contains("invalid.json") && err.contains("parsing"), "{err}");

    let mut s = snapshot();
    s["domains"][1]["observation"]["heartbeat_lag"] = json!(3);
    let err = refused(&write("bad", "unknown-field.json", &s.to_string()));
    assert!(
        err.contains("unknown field `heartbeat_lag`") && err.contains("unknown-field.json"),
        "{err}"
    );

    let mut s = snapshot();
    s["agents"][0]["domain"] = json!("zone-z");
    let err = refused(&write("bad", "unknown-domain.json", &s.to_string()));
    assert!(err.contains("zone-z") && err.contains("unknown-domain.json"), "{err}");

    let mut s = snapshot();
    s["solver"] = json!({"discount": 1.0});
    let err = refused(&write("bad", "discount.json", &s.to_string()));
    assert!(err.contains("solver.discount"), "{err}");
}

#[test]
fn the_help_documents_the_snapshot_schema() {
    let (code, out, _) = mom(&["failover", "plan", "--help"]);
    assert_eq!(code, 0);
    for field in [
        "heartbeat_lag_seconds",
        "history",
        "transitions",
        "standby",
        "slo_risk",
        "expected_value",
    ] {
        assert!(out.contains(field), "{field} missing from --help:\n{out}");
    }
}
