//! Set-up shared by the failover planner's tests on a private control plane: transition counts
//! a previous leader left (ConfigMap `mom-system/mom-failover-history`) and a MOM whose
//! descheduler only evacuates (every 2 s), so the planner's drains and standbys are what moves
//! pods.

use std::collections::{BTreeMap, BTreeSet};

use super::common;

/// Counts in which a degraded zone failed `fails` times out of 100 (else it recovered), after
/// a long healthy stretch.
pub fn history(fails: u64) -> serde_json::Value {
    // Rows and columns: healthy, degraded, suspect, failed.
    serde_json::json!({ "counts": [
        [5000, 100, 0, 0],
        [100 - fails, 0, 0, fails],
        [0, 0, 0, 0],
        [100, 0, 0, 0],
    ]})
}

/// Stores `counts` (a 4×4 matrix of healthy/degraded/suspect/failed transitions) for every zone.
pub fn seed_history(zones: &BTreeSet<String>, counts: &serde_json::Value) {
    let per_zone: BTreeMap<&String, &serde_json::Value> = zones.iter().map(|z| (z, counts)).collect();
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "mom-failover-history", "namespace": "mom-system"},
        "data": {"counts.json": serde_json::to_string(&per_zone).unwrap()},
    });
    let (_, _, _) = common::kubectl(&["create", "namespace", "mom-system"], None);
    common::apply(&cm.to_string());
}

/// Starts this binary's MOM with the descheduler on, ticking every 2 s, evacuation only (no
/// drift, imbalance or violation moves, anomalous nodes not evacuated), planner cool-off 5 s.
pub fn start_mom_evacuating_only(name: &str) {
    let settings = std::env::temp_dir().join(format!("mom-{name}-{}.json", std::process::id()));
    std::fs::write(
        &settings,
        r#"{"planner":{"coolOffSeconds":5,"maxEvictionsPerAgent":3,"maxEvictionsPerNode":4},
            "drift":{"enabled":false},"imbalance":{"enabled":false},"violations":{"enabled":false},
            "evacuation":{"includeAnomalous":false}}"#,
    )
    .unwrap();
    common::mom_with(&[
        "--deschedule",
        "--deschedule-tick-seconds",
        "2",
        "--deschedule-settings",
        settings.to_str().unwrap(),
    ]);
}
