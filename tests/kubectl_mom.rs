//! `kubectl mom` end to end on the real control plane: a `kubectl-mom` symlink to the built
//! `mom` on PATH, run by the real `kubectl` as a plugin — `status`, `why pod/NAME` (for a pod
//! MOM's extender bound: the bind receipt's node, a verdict for every node, score terms that
//! sum to each node's score), `top` and `verify`; and bad input (a pod that does not exist, a
//! malformed argument) refused with exit code 2 naming it.

mod cli_support;
mod common;
mod placement_support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use placement_support::{agent, running_pods, strategy};

/// A directory holding only `kubectl-mom` → the built `mom`.
fn plugin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mom-kubectl-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("kubectl-mom");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mom"), &link).unwrap();
        dir
    })
}

/// `kubectl mom ARGS` through the real kubectl, finding the plugin on PATH; (exit code, stdout,
/// stderr).
fn kubectl_mom(args: &[&str]) -> (i32, String, String) {
    let cp = common::control_plane();
    let path = format!(
        "{}:{}",
        plugin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(cp.bin.join("kubectl"))
        .arg("mom")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("running kubectl mom");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = kubectl_mom(&all);
    assert_eq!(code, 0, "kubectl mom {args:?} failed: {err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl mom {args:?} printed no JSON ({e}): {out}"))
}

/// MOM (operator + mom-scheduler) at `full_audit`, so every bind is receipted, on a control
/// plane of this binary's own: the receipt chain is whole from sequence 0 (`verify` can be
/// asserted OK) and deleting one of its receipts disturbs no other test binary.
fn setup() {
    common::use_private_control_plane();
    common::mom();
    common::apply_test_momconfig("full_audit");
}

async fn node_names(client: kube::Client) -> Vec<String> {
    let mut names: Vec<String> = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn why_names_the_bound_node_a_verdict_for_every_node_and_terms_that_sum_to_each_score() {
    setup();
    let ns = common::TestNamespace::new("kubectl-why").await;
    let n = &ns.name;
    let nodes = node_names(ns.client()).await;
    // One node on the agent's avoid-list: the re-score must refuse it, naming the rule.
    let avoided = nodes[0].clone();
    common::apply(&strategy(
        n,
        "avoid-one",
        &format!(r#""avoidNodes":["{avoided}"]"#),
        None,
    ));
    common::apply(&agent(n, "web", 2, r#","strategyRef":{"name":"avoid-one"}"#, ""));
    let placed = running_pods(&ns, "web", 2).await;
    let (pod, node) = placed.iter().next().unwrap();
    // The bind receipt is written before the Binding, so it exists once the pod is bound.
    let why = json(&["why", &format!("pod/{pod}"), "-n", n]);
    assert_eq!(why["pod"], pod.as_str());
    assert_eq!(why["namespace"], n.as_str());
    assert_eq!(why["node"], node.as_str());
    assert_eq!(why["agent"], "web");
    assert_eq!(
        why["bind"]["node"],
        node.as_str(),
        "the bind receipt names another node: {why}"
    );
    assert!(why["bind"]["sequence"].is_u64(), "{why}");
    assert!(why["bind"]["distanceFromTarget"].is_f64(), "{why}");
    assert!(!why["target"].as_array().unwrap().is_empty(), "{why}");

    let candidates = why["candidates"].as_array().unwrap();
    let mut named: Vec<String> = candidates
        .iter()
        .map(|c| c["node"].as_str().unwrap().to_string())
        .collect();
    named.sort();
    assert_eq!(named, nodes, "a verdict for every node");
    for c in candidates {
        let name = c["node"].as_str().unwrap();
        let verdict = c["verdict"].as_str().unwrap();
        assert!(["pass", "fail", "unresolvable"].contains(&verdict), "{c}");
        assert_eq!(
            verdict != "pass",
            c["reason"].is_string(),
            "a refused node has a reason: {c}"
        );
        let score = &c["score"];
        let terms = score["terms"].as_array().unwrap();
        let names: Vec<&str> = terms.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["performance", "reliability", "cost", "sustainability", "load"],
            "{c}"
        );
        let sum: f64 = terms.iter().map(|t| t["points"].as_f64().unwrap()).sum();
        let points = score["points"].as_f64().unwrap();
        assert!((sum - points).abs() < 1e-9, "terms sum to {sum}, not {points}: {c}");
        assert_eq!(
            points.clamp(0.0, 10.0).round() as i64,
            score["score"].as_i64().unwrap(),
            "{name}: the score is not its rounded sum: {c}"
        );
        for t in terms {
            let (v, w, p) = (
                t["value"].as_f64().unwrap(),
                t["weight"].as_f64().unwrap(),
                t["points"].as_f64().unwrap(),
            );
            assert!((10.0 * w * v - p).abs() < 1e-9, "{t}");
        }
    }
    // Negative check: the avoided node is refused for the avoid-list …
    let refused = candidates.iter().find(|c| c["node"] == avoided.as_str()).unwrap();
    assert_eq!(refused["verdict"], "unresolvable", "{refused}");
    assert!(refused["reason"].as_str().unwrap().contains("avoid-list"), "{refused}");
    // … and its positive control: the node the pod runs on passes.
    let own = candidates.iter().find(|c| c["node"] == node.as_str()).unwrap();
    assert_eq!(own["verdict"], "pass", "{own}");
    assert!(why["best"].is_string(), "{why}");

    // The table: the same facts for people, with --kubeconfig given explicitly too.
    let cp = common::control_plane();
    let (code, table, err) = kubectl_mom(&[
        "why",
        &format!("po/{pod}"),
        "--namespace",
        n,
        "--kubeconfig",
        cp.kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains(&format!("pod           {n}/{pod}")), "{table}");
    assert!(table.contains(&format!("bound to {node}")), "{table}");
    for head in [
        "NODE", "VERDICT", "SCORE", "SUM", "PERF", "RELIAB", "COST", "SUSTAIN", "LOAD",
    ] {
        assert!(table.contains(head), "{head} missing:\n{table}");
    }
    assert!(table.lines().any(|l| l.starts_with(&format!("{node}*"))), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(avoided.as_str()) && l.contains("avoid-list")),
        "{table}"
    );
}

#[tokio::test]
async fn why_refuses_a_missing_pod_and_malformed_arguments_with_exit_code_2_naming_them() {
    setup();
    let ns = common::TestNamespace::new("kubectl-bad").await;
    let n = &ns.name;
    common::apply(&agent(n, "api", 1, "", ""));
    let placed = running_pods(&ns, "api", 1).await;
    let pod = placed.keys().next().unwrap();
    // Positive control: the pod that exists is explained (exit 0).
    let (code, out, err) = kubectl_mom(&["why", &format!("pod/{pod}"), "-n", n]);
    assert_eq!(code, 0, "{err}{out}");
    let why = json(&["why", &format!("pod/{pod}"), "-n", n]);
    assert!(why["bind"]["sequence"].is_u64(), "{why}");
    // A pod the default scheduler bound has no bind receipt, and says so; it is still re-scored.
    common::apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"plain","namespace":"{n}"}},
            "spec":{{"tolerations":[{{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}}],
                    "containers":[{{"name":"c","image":"pause"}}]}}}}"#
    ));
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ns.client(), n);
    common::eventually("the plain pod bound", std::time::Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { pods.get("plain").await.ok()?.spec?.node_name }
    })
    .await;
    let plain = json(&["why", "pod/plain", "-n", n]);
    assert!(plain["bind"].is_null(), "{plain}");
    assert!(!plain["candidates"].as_array().unwrap().is_empty(), "{plain}");
    let (code, table, _) = kubectl_mom(&["why", "pod/plain", "-n", n]);
    assert_eq!(code, 0);
    assert!(table.contains("no bind receipt"), "{table}");
    // A pod that does not exist: exit 2, naming the pod and the namespace.
    let (code, out, err) = kubectl_mom(&["why", "pod/missing", "-n", n]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("\"missing\"") && err.contains(n.as_str()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The existing pod in another namespace does not exist there either.
    let (code, _, err) = kubectl_mom(&["why", &format!("pod/{pod}"), "-n", "default"]);
    assert_eq!(code, 2, "{err}");
    // Malformed arguments: exit 2, naming what was given.
    for (arg, says) in [
        ("deployment/web", "explains pods only"),
        ("pod/", "want pod/NAME"),
        ("pod/Not_A_Name", "not a valid pod name"),
    ] {
        let (code, out, err) = kubectl_mom(&["why", arg, "-n", n]);
        assert_eq!(code, 2, "{arg}: {out}{err}");
        assert!(err.contains(arg) && err.contains(says), "{arg}: {err}");
    }
    // No argument, or an unknown subcommand: clap's usage error, exit 2.
    assert_eq!(kubectl_mom(&["why"]).0, 2);
    assert_eq!(kubectl_mom(&["whatif"]).0, 2);
    // The kubeconfig's own context works when named (positive control) …
    let (ok, context, err) = common::kubectl(&["config", "current-context"], None);
    assert!(ok, "{err}");
    let (code, _, err) = kubectl_mom(&["status", "--context", context.trim()]);
    assert_eq!(code, 0, "{err}");
    // … an unknown one is named (a failure, not bad input of the command: exit 1).
    let (code, _, err) = kubectl_mom(&["status", "--context", "no-such-context"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no-such-context"), "{err}");
}

#[tokio::test]
async fn status_top_and_verify_report_the_leader_pools_chain_head_and_agents() {
    setup();
    common::mom().wait_leading().await;
    let ns = common::TestNamespace::new("kubectl-top").await;
    let n = &ns.name;
    common::apply(&agent(n, "shop", 2, "", ""));
    running_pods(&ns, "shop", 2).await;

    let status = json(&["status"]);
    assert!(status["leader"].is_string(), "no leader: {status}");
    assert_eq!(status["verification"], "full_audit", "{status}");
    assert_eq!(status["routing"], "greedy_forwarding", "{status}");
    assert!(status["nodes"].as_u64().unwrap() > 0, "{status}");
    let pools = status["pools"].as_array().unwrap();
    assert!(
        pools.iter().any(|p| p["pool"] == "default" && p["level"].is_string()),
        "{status}"
    );
    // The binds above were receipted: the chain has a head.
    let head = common::eventually("a receipt chain head", std::time::Duration::from_secs(30), || async {
        let s = json(&["status"]);
        s["chainHead"]["sequence"].as_u64().map(|_| s)
    })
    .await;
    assert_eq!(head["chainHead"]["hash"].as_str().map(str::len), Some(64), "{head}");
    assert!(head["hourlyCost"].as_f64().unwrap() > 0.0, "{head}");
    let (code, table, err) = kubectl_mom(&["status"]);
    assert_eq!(code, 0, "{err}");
    for line in ["leader", "modes", "chain head", "budget", "POOL", "PRESSURE"] {
        assert!(table.contains(line), "{line} missing:\n{table}");
    }

    let top = json(&["top"]);
    let rows = top.as_array().unwrap();
    let shop = rows
        .iter()
        .find(|r| r["namespace"] == n.as_str() && r["agent"] == "shop")
        .unwrap_or_else(|| panic!("shop missing: {top}"));
    assert_eq!(shop["placed"], 2, "{shop}");
    assert!(shop["hourlyCost"].as_f64().unwrap() > 0.0, "{shop}");
    assert!(shop["meanDistance"].is_f64(), "{shop}");
    let costs: Vec<f64> = rows.iter().map(|r| r["hourlyCost"].as_f64().unwrap()).collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "not by cost: {costs:?}");
    let (code, table, _) = kubectl_mom(&["top", "--sort-by", "latency"]);
    assert_eq!(code, 0);
    assert!(table.contains("shop") && table.contains("COST/H"), "{table}");

    // verify is `mom verify --cluster`: the same answer, through the plugin. Positive control
    // first: the chain MOM wrote alone on this control plane verifies.
    let verified = json(&["verify"]);
    let (_, direct) = common::verify_cluster_with_published_keys(&ns.client()).await;
    assert_eq!(verified["ok"], direct["ok"], "{verified}\n{direct}");
    assert_eq!(verified["report"]["receipts"], direct["report"]["receipts"]);
    assert_eq!(verified["ok"], true, "{verified}");
    let (code, table, err) = kubectl_mom(&["verify", "--replay"]);
    assert_eq!(code, 0, "{table}{err}");
    assert!(table.contains("result       OK"), "{table}");
    // Negative check: one of our bind receipts deleted, verify fails (exit 1) naming the gap.
    let receipts: Api<mom::operator::crd::Receipt> = Api::namespaced(ns.client(), n);
    let mut ours = receipts.list(&ListParams::default()).await.unwrap().items;
    ours.sort_by_key(|r| r.spec.sequence);
    let gone = ours.first().expect("a receipt in the agent's namespace");
    let (ok, _, err) = common::kubectl(
        &["delete", "receipt", gone.metadata.name.as_deref().unwrap(), "-n", n],
        None,
    );
    assert!(ok, "{err}");
    let (code, out, err) = kubectl_mom(&["verify", "-o", "json"]);
    assert_eq!(code, 1, "verify passed a chain with a receipt deleted: {out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    let named = report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["kind"] == "missing" && p["sequence"].as_i64() == Some(gone.spec.sequence));
    assert!(named, "sequence {} not named missing: {report}", gone.spec.sequence);
}

#[test]
fn mom_kubectl_is_the_same_plugin_under_the_mom_binary() {
    // Positive control of the argv[0] dispatch: `mom kubectl --help` names the plugin's
    // subcommands, and `mom --help` (argv[0] `mom`) is the ordinary CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["kubectl", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["status", "why", "verify", "top"] {
        assert!(text.contains(sub), "{sub} missing: {text}");
    }
    let out = Command::new(plugin_dir().join("kubectl-mom"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kubectl mom") && text.contains("why"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_mom")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("crdgen"));
}

#[test]
fn whatif_through_kubectl_gives_what_mom_whatif_gives_and_refuses_dash_o() {
    // No cluster is read: the twin runs a snapshot built from the shared Geant topology and
    // NAB traces. kubectl still needs a kubeconfig to start the plugin, so this binary's plane.
    setup();
    let data = cli_support::data_dir();
    let snapshot = std::env::temp_dir().join(format!("kubectl-mom-whatif-{}.json", std::process::id()));
    let (topology, traces) = (
        data.join("TopoHub/topozoo/Geant2012.json"),
        data.join("NAB/data/realAWSCloudwatch"),
    );
    let snapshot_s = snapshot.to_str().unwrap();
    let (code, _, err) = kubectl_mom(&[
        "whatif",
        "snapshot",
        "--topology",
        topology.to_str().unwrap(),
        "--traces",
        traces.to_str().unwrap(),
        "--agents",
        "4",
        "--hours",
        "1",
        "--out",
        snapshot_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let run = [
        "whatif",
        "--snapshot",
        snapshot_s,
        "--set",
        "objectives.cost=1",
        "--format",
        "json",
    ];
    let (code, out, err) = kubectl_mom(&run);
    assert_eq!(code, 0, "{err}");
    let via_kubectl: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let direct = Command::new(env!("CARGO_BIN_EXE_mom")).args(run).output().unwrap();
    assert!(direct.status.success(), "{}", String::from_utf8_lossy(&direct.stderr));
    let direct: serde_json::Value = serde_json::from_slice(&direct.stdout).unwrap();
    for run in ["recorded", "counterfactual"] {
        assert!(via_kubectl[run]["cost"].as_f64().is_some(), "{via_kubectl}");
        assert_eq!(via_kubectl[run], direct[run], "{run}");
    }
    // -o is kubectl mom's output flag for the other verbs; whatif says which flag to use.
    let mut with_o = run[..run.len() - 2].to_vec();
    with_o.extend(["-o", "json"]);
    let (code, _, err) = kubectl_mom(&with_o);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-o does not apply; use --format json"), "{err}");
    let _ = std::fs::remove_file(&snapshot);
}
