//! `MomConfig.spec.tickSeconds` sets the periods of the decision loops (scaler, auction,
//! descheduler) of an operator started without their flags, live: the tick counters on its
//! `/metrics` follow the field from 1 s to 60 s and back, with no restart. A loop whose flag is
//! given keeps the flag's period while another loop of the same process follows the field.
//! The counts use generous bounds over 20 s (1 s: ≥ 8 ticks; 60 s: ≤ 2).

mod common;

use std::time::Duration;

/// Both tests set the cluster-wide MomConfig `default`.
static MOMCONFIG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WINDOW: Duration = Duration::from_secs(20);

fn set_tick_seconds(seconds: i32) {
    let patch = serde_json::json!({"spec": {"tickSeconds": seconds}}).to_string();
    let (ok, _, err) = common::kubectl(
        &["patch", "momconfig", "default", "--type", "merge", "-p", &patch],
        None,
    );
    assert!(ok, "setting tickSeconds to {seconds}: {err}");
}

/// The value of the series `name{loop="LOOP"}` on the operator's `/metrics`.
fn sample(operator: &common::OperatorProcess, name: &str, r#loop: &str) -> Option<f64> {
    let text = common::http_get(&format!("http://{}/metrics", operator.metrics_addr))?;
    let prefix = format!("{name}{{loop=\"{loop}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn ticks(operator: &common::OperatorProcess, r#loop: &str) -> f64 {
    sample(operator, "mom_loop_ticks_total", r#loop).unwrap_or(0.0)
}

/// Waits until the operator leads, has ticked `loops` at least once and reports `periods`.
async fn wait_for_periods(operator: &common::OperatorProcess, periods: &[(&str, f64)]) {
    let what = format!("the operator to lead and report the periods {periods:?}");
    let ok = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let all = periods
                .iter()
                .all(|(l, p)| sample(operator, "mom_loop_period_seconds", l) == Some(*p) && ticks(operator, l) >= 1.0);
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}; log:\n{}", operator.log());
}

/// Ticks of each loop over [`WINDOW`].
async fn ticks_over_window(operator: &common::OperatorProcess, loops: &[&str]) -> Vec<f64> {
    let before: Vec<f64> = loops.iter().map(|l| ticks(operator, l)).collect();
    tokio::time::sleep(WINDOW).await;
    loops.iter().zip(before).map(|(l, b)| ticks(operator, l) - b).collect()
}

fn start_operator(lease: &str, flags: &[(&str, &str)]) -> common::OperatorProcess {
    common::install_crds();
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    let mut builder = common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity(lease)
        .flag("--lease-name", lease)
        .text_logs();
    for (name, value) in flags {
        builder = builder.flag(name, value);
    }
    builder.spawn()
}

#[tokio::test]
async fn loops_without_a_flag_tick_at_the_momconfig_tick_seconds_and_follow_its_changes() {
    let _guard = MOMCONFIG.lock().await;
    common::install_crds();
    common::apply_test_momconfig("none");
    set_tick_seconds(1);
    let operator = start_operator("tick-follows", &[]);
    let loops = ["scaler", "auction"];
    wait_for_periods(&operator, &[("scaler", 1.0), ("auction", 1.0)]).await;

    let fast = ticks_over_window(&operator, &loops).await;
    println!("tickSeconds=1: ticks in 20 s {loops:?} = {fast:?}");
    for (l, n) in loops.iter().zip(&fast) {
        assert!(*n >= 8.0, "{l} ticked {n} times in 20 s at tickSeconds=1");
    }

    set_tick_seconds(60);
    wait_for_periods(&operator, &[("scaler", 60.0), ("auction", 60.0)]).await;
    let slow = ticks_over_window(&operator, &loops).await;
    println!("tickSeconds=60: ticks in 20 s {loops:?} = {slow:?}");
    for (l, n) in loops.iter().zip(&slow) {
        assert!(*n <= 2.0, "{l} ticked {n} times in 20 s at tickSeconds=60");
    }

    // Control: back to 1 s the same process ticks fast again (it is alive and counting), and
    // the 60 s wait already begun does not hold the change up.
    set_tick_seconds(1);
    wait_for_periods(&operator, &[("scaler", 1.0), ("auction", 1.0)]).await;
    let again = ticks_over_window(&operator, &loops).await;
    println!("tickSeconds=1 again: ticks in 20 s {loops:?} = {again:?}");
    for (l, n) in loops.iter().zip(&again) {
        assert!(*n >= 8.0, "{l} ticked {n} times in 20 s back at tickSeconds=1");
    }
    let log = operator.log();
    assert!(
        log.contains("loop period changed"),
        "no log line for the change:\n{log}"
    );
    set_tick_seconds(15);
}

#[tokio::test]
async fn a_tick_flag_overrides_tick_seconds_for_its_loop_only() {
    let _guard = MOMCONFIG.lock().await;
    common::install_crds();
    common::apply_test_momconfig("none");
    set_tick_seconds(1);
    let operator = start_operator("tick-override", &[("--scaler-tick-seconds", "60")]);
    wait_for_periods(&operator, &[("scaler", 60.0), ("auction", 1.0)]).await;

    let counts = ticks_over_window(&operator, &["scaler", "auction"]).await;
    println!("--scaler-tick-seconds 60, tickSeconds=1: ticks in 20 s [scaler, auction] = {counts:?}");
    assert!(
        counts[0] <= 2.0,
        "the flagged scaler ticked {} times in 20 s",
        counts[0]
    );
    // Control: the auction in the same process, without a flag, follows the field.
    assert!(counts[1] >= 8.0, "the auction ticked {} times in 20 s", counts[1]);

    // A change of the field moves the auction, never the flagged scaler.
    set_tick_seconds(2);
    wait_for_periods(&operator, &[("auction", 2.0)]).await;
    assert_eq!(sample(&operator, "mom_loop_period_seconds", "scaler"), Some(60.0));
    let log = operator.log();
    assert!(
        log.contains("overrides MomConfig spec.tickSeconds"),
        "the override is not logged:\n{log}"
    );
    set_tick_seconds(15);
}

/// `(status, reason, message)` of the MomConfig `default`'s `SpecSupported` condition.
fn spec_supported() -> Option<(String, String, String)> {
    let (ok, out, _) = common::kubectl(
        &[
            "get",
            "momconfig",
            "default",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="SpecSupported")]['status','reason','message']}"#,
        ],
        None,
    );
    let mut parts = out.splitn(3, ' ');
    ok.then(|| {
        Some((
            parts.next()?.to_string(),
            parts.next()?.to_string(),
            parts.next()?.to_string(),
        ))
    })
    .flatten()
}

#[tokio::test]
async fn a_mode_that_is_not_implemented_is_named_in_spec_supported_and_a_budget_is_not() {
    let _guard = MOMCONFIG.lock().await;
    common::install_crds();
    common::apply_test_momconfig("none");
    let _operator = start_operator("spec-supported", &[]);
    // Positive control: the test MomConfig (default mode, no budget) is fully supported.
    common::eventually("SpecSupported=True", Duration::from_secs(60), || async {
        spec_supported().filter(|(s, r, _)| s == "True" && r == "Supported")
    })
    .await;
    let patch = r#"{"spec": {"mode": "federated", "budget": {"maxHourlyCost": 5}}}"#;
    let (ok, _, err) = common::kubectl(&["patch", "momconfig", "default", "--type", "merge", "-p", patch], None);
    assert!(ok, "{err}");
    let (_, _, message) = common::eventually(
        "SpecSupported=False NotImplemented",
        Duration::from_secs(60),
        || async { spec_supported().filter(|(s, r, _)| s == "False" && r == "NotImplemented") },
    )
    .await;
    assert!(message.contains("spec.mode federated is not implemented"), "{message}");
    // The budget is enforced (tests/budget.rs): not named among what changes nothing.
    assert!(!message.contains("budget"), "{message}");
    let patch = r#"{"spec": {"mode": "centralized", "budget": null}}"#;
    let (ok, _, err) = common::kubectl(&["patch", "momconfig", "default", "--type", "merge", "-p", patch], None);
    assert!(ok, "{err}");
    common::eventually("SpecSupported=True again", Duration::from_secs(60), || async {
        spec_supported().filter(|(s, _, _)| s == "True")
    })
    .await;
}
