//! The operator's web view in a real headless browser: Debian's Chromium driven by
//! `chromedriver` over WebDriver (HTTP + JSON, sent with curl like the other tests' HTTP calls),
//! against the operator on the private control plane. The page loads without console errors,
//! shows every node and agent (DOM), follows an agent's scale-up live (server-sent events, no
//! reload), colours a node labelled unhealthy, draws the descheduler's moves as arrows (its
//! anchor agent is told to prefer the other region), shows a receipt's decision and
//! verification state when clicked, and its screenshot
//! is not blank (decoded and measured). With `MOM_UPDATE_SCREENSHOT=1` the screenshot is also
//! saved as `docs/webview.png` (the README's picture).
//!
//! Chromium and chromedriver are required: the test fails, naming the packages, without them.

mod common;

use common::browser::{Browser, png_spread, severe};

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// An OrchestrationStrategy preferring `region` (manual scaling).
fn home(ns: &str, region: &str) -> String {
    json!({"apiVersion": "mom.hypersync.io/v1alpha1", "kind": "OrchestrationStrategy",
           "metadata": {"name": "home", "namespace": ns},
           "spec": {"priority": 10, "scaling": {"method": "manual", "minReplicas": 0, "maxReplicas": 20},
                    "placement": {"preferredRegions": [region]}}})
    .to_string()
}

fn agent(ns: &str, name: &str, replicas: u32, peers: &[&str]) -> String {
    let peers: Vec<Value> = peers.iter().map(|p| json!({"agent": p, "weight": 1.0})).collect();
    let strategy = (name == "api").then(|| json!({"name": "home"}));
    json!({"apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"workloadType": "interactive", "replicas": replicas, "peers": peers, "strategyRef": strategy,
                    "template": {"spec": {"containers": [{"name": "c", "image": "pause",
                        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]}}}})
    .to_string()
}

/// MOM for this binary, with the descheduler on (2 s ticks, 1 s cool-off) so a drained node's
/// moves reach the page; every test here calls it, so the first one decides the flags.
fn start() -> &'static common::Mom {
    let dir = std::env::temp_dir().join(format!("mom-webview-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = dir.join("deschedule.json");
    std::fs::write(
        &settings,
        r#"{"planner":{"coolOffSeconds":1,"minGain":0.5,"migrationCost":0.5,"maxEvictionsPerAgent":5,"maxEvictionsPerNode":5}}"#,
    )
    .unwrap();
    common::mom_with(&[
        "--deschedule",
        "--deschedule-tick-seconds",
        "2",
        "--deschedule-settings",
        settings.to_str().unwrap(),
    ])
}

fn state(metrics_url: &str) -> Option<Value> {
    serde_json::from_str(&common::http_get(&format!("{metrics_url}/ui/api/state"))?).ok()
}

#[tokio::test]
async fn the_page_shows_nodes_and_agents_follows_a_scale_up_and_explains_a_receipt_in_a_real_browser() {
    let started = Instant::now();
    Browser::require();
    let mom = start();
    common::apply_test_momconfig("full_audit");
    mom.wait_leading().await;
    let ns = common::TestNamespace::new("webview").await;
    let n = ns.name.clone();
    common::apply(&home(&n, "region-0"));
    common::apply(&agent(&n, "web", 1, &["api"]));
    // 'api' is the anchor (no peers of its own), 'web' talks to it.
    common::apply(&agent(&n, "api", 2, &[]));
    let (web, api) = (format!("{n}/web"), format!("{n}/api"));
    let (ok, nodes, err) = common::kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"], None);
    assert!(ok, "listing nodes: {err}");
    let nodes: Vec<String> = nodes.split_whitespace().map(str::to_string).collect();
    assert!(!nodes.is_empty());

    // The operator has placed both agents (replicas running, targets known) before we look.
    common::eventually(
        "both agents placed with targets in /ui/api/state",
        Duration::from_secs(90),
        || async {
            let s = state(&mom.metrics_url)?;
            let agents = s["agents"].as_array()?;
            let placed = |id: &str, want: i64| {
                agents
                    .iter()
                    .any(|a| a["id"] == id && a["replicas"] == want && !a["target"].is_null())
            };
            (placed(&web, 1) && placed(&api, 2) && !s["edges"].as_array()?.is_empty()).then_some(())
        },
    )
    .await;

    let browser = Browser::start();
    browser.open(&format!("{}/ui/", mom.metrics_url));
    let title = browser.run("return document.title");
    assert_eq!(title, "MOM — cluster view");

    // Every node is drawn on the disk and listed; both agents are drawn (target) and listed.
    let drawn: Vec<String> = serde_json::from_value(browser.wait_for(
        "every node drawn on the disk",
        Duration::from_secs(20),
        &format!(
            "const n = [...document.querySelectorAll('#nodes [data-node]')].map(e => e.dataset.node); \
             return n.length >= {} ? n : null",
            nodes.len()
        ),
    ))
    .unwrap();
    for node in &nodes {
        assert!(drawn.contains(node), "node {node} not drawn; drawn: {drawn:?}");
        let listed = browser.run(&format!(
            "return !!document.querySelector('[data-node-row=\"{node}\"]')"
        ));
        assert_eq!(listed, true, "node {node} not listed");
    }
    for id in [&web, &api] {
        browser.wait_for(
            &format!("agent {id} listed and its target drawn"),
            Duration::from_secs(10),
            &format!(
                "return !!document.querySelector('tr[data-agent=\"{id}\"]') && \
                 !!document.querySelector('#targets [data-target=\"{id}\"]')"
            ),
        );
    }
    let peer_arcs = browser.run("return document.querySelectorAll('#edges path.peer').length");
    assert!(
        peer_arcs.as_u64().unwrap_or(0) >= 1,
        "peer geodesics drawn: {peer_arcs}"
    );
    let conn = browser.wait_for(
        "the event stream to connect",
        Duration::from_secs(10),
        "const c = document.getElementById('conn'); return c.className.includes('live') ? c.textContent : null",
    );
    assert_eq!(conn, "live");

    // Scale 'web' to 3: the page (not reloaded) follows through the event stream.
    let loads_before =
        browser.run("return performance.getEntriesByType('navigation').length + ':' + performance.timeOrigin");
    let (ok, _, err) = common::kubectl(
        &[
            "-n",
            &n,
            "patch",
            "geometricagent",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
        None,
    );
    assert!(ok, "patching replicas: {err}");
    let scaled_at = Instant::now();
    browser.wait_for(
        "the agents table to show web wanting and having 3 replicas",
        Duration::from_secs(90),
        &format!(
            "const r = document.querySelector('tr[data-agent=\"{web}\"]'); \
             return r && r.dataset.desired === '3' && r.dataset.replicas === '3'"
        ),
    );
    println!(
        "scale-up visible in the page {:.1} s after the patch",
        scaled_at.elapsed().as_secs_f64()
    );
    let loads_after =
        browser.run("return performance.getEntriesByType('navigation').length + ':' + performance.timeOrigin");
    assert_eq!(loads_before, loads_after, "the page was reloaded instead of updated");

    // Receipts: click the newest; its decision and verification state are shown.
    let ticks = browser.wait_for(
        "the receipt timeline",
        Duration::from_secs(30),
        "const t = document.querySelectorAll('#timeline .tick'); return t.length > 0 ? t.length : null",
    );
    println!("{ticks} receipts on the timeline");
    // The timeline follows the chain: the scale-up's receipts (the newest sequence in the
    // cluster) are on it without a reload.
    let newest = common::eventually("receipts of the scale-up", Duration::from_secs(30), || async {
        let t: Value = serde_json::from_str(&common::http_get(&format!(
            "{}/ui/api/receipts?limit=1",
            mom.metrics_url
        ))?)
        .ok()?;
        t["report"]["lastSequence"].as_u64().filter(|s| *s >= 6)
    })
    .await;
    browser.wait_for(
        &format!("receipt #{newest} on the timeline"),
        Duration::from_secs(20),
        &format!("return !!document.querySelector('#timeline .tick[data-sequence=\"{newest}\"]')"),
    );
    browser.run("const t = document.querySelectorAll('#timeline .tick'); t[t.length - 1].click(); return null");
    let verification = browser.wait_for(
        "the clicked receipt's verification state",
        Duration::from_secs(5),
        "const v = document.getElementById('verification'); return v ? v.textContent : null",
    );
    assert_eq!(verification, "verified", "the operator's own chain must verify");
    let decision = browser.run("return document.getElementById('decision').textContent");
    assert!(
        decision.as_str().unwrap_or_default().contains("\"kind\""),
        "decision shown: {decision}"
    );

    // A node without agent pods labelled unhealthy turns red (nothing there to replace).
    let s = state(&mom.metrics_url).expect("state");
    let idle = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|n| n["agentPods"] == 0)
        .and_then(|n| n["name"].as_str())
        .expect("a node without agent pods")
        .to_string();
    let unhealthy = format!("{}=true", mom::labels::UNHEALTHY_LABEL);
    let (ok, _, err) = common::kubectl(&["label", "node", &idle, &unhealthy, "--overwrite"], None);
    assert!(ok, "labelling {idle}: {err}");
    browser.wait_for(
        &format!("node {idle} drawn as failed"),
        Duration::from_secs(30),
        &format!("return !!document.querySelector('#nodes .node.failed[data-node=\"{idle}\"]')"),
    );

    // 'api' is told to prefer region-1: the descheduler (on here, 2 s ticks) moves its replicas
    // there, each eviction an `evict` receipt recording the move, drawn as an arrow.
    common::apply(&home(&n, "region-1"));
    let moves = browser.wait_for(
        "the descheduler's moves drawn as arrows",
        Duration::from_secs(90),
        "const m = document.querySelectorAll('#moves line.move'); return m.length > 0 ? m.length : null",
    );
    println!("{moves} move arrow(s) drawn");
    // Back to a picture where the latest receipt is selected.
    browser.run("const t = document.querySelectorAll('#timeline .tick'); t[t.length - 1].click(); return null");

    let errors = severe(&browser.console());
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A screenshot that is a picture, not a blank page.
    let png = browser.screenshot();
    let (colours, not_background, size) = png_spread(&png);
    println!(
        "screenshot {size:?}: {colours} colours, {:.0}% not background",
        not_background * 100.0
    );
    assert!(
        colours >= 50 && not_background >= 0.05,
        "blank screenshot: {colours} colours, {not_background} not background"
    );
    let out = std::env::temp_dir().join("mom-webview.png");
    std::fs::write(&out, &png).unwrap();
    if std::env::var_os("MOM_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/webview.png");
        std::fs::write(&docs, &png).unwrap();
        println!("saved {}", docs.display());
    }
    let unlabel = format!("{}-", mom::labels::UNHEALTHY_LABEL);
    let _ = common::kubectl(&["label", "node", &idle, &unlabel], None);
    println!("web view test took {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn unknown_paths_are_404_and_bad_query_parameters_are_400_naming_the_parameter() {
    let mom = start();
    let status = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
            .arg(format!("{}{path}", mom.metrics_url))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    let (code, body) = status("/ui/nope");
    assert_eq!((code.as_str(), body.as_str()), ("404", "not found: /ui/nope"));
    let (code, body) = status("/ui/api/receipts?limit=lots");
    assert_eq!(code, "400");
    assert!(body.contains("'limit'") && body.contains("lots"), "{body}");
    let (code, body) = status("/ui/api/state?since=4");
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("400", "unknown query parameter 'since'")
    );
    let (code, body) = status("/ui/");
    assert_eq!(code, "200");
    assert!(
        body.contains("/ui/app.js") && !body.contains("http://") && !body.contains("https://"),
        "{body}"
    );
    let (code, _) = status("/metrics");
    assert_eq!(code, "200");

    // The event stream outlives the listener's 10 s request deadline: curl's own 13 s limit
    // ends it (exit 28), not the server, and it carried a snapshot.
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "13"])
        .arg(format!("{}/ui/api/events", mom.metrics_url))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(28), "the stream ended early: {text}");
    assert!(text.contains("event: snapshot"), "{text}");
}
