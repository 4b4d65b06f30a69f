//! `mom whatif` as a process, no cluster: a snapshot built from the real Geant topology and NAB
//! CloudWatch traces; a counterfactual with a cost weight of 1 costs less than one with a
//! performance weight of 1; the Pareto points are mutually non-dominated; bad input exits 2
//! naming the file, field or key.

mod cli_support;

use std::path::PathBuf;

use cli_support::{data_dir, mom};

/// A 3-hour snapshot of 6 agents on Geant2012 (one node per site), written to a temp file.
fn snapshot(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("whatif-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("snapshot.json");
    let d = data_dir();
    let (code, _, err) = mom(&[
        "whatif",
        "snapshot",
        "--topology",
        d.join("TopoHub/topozoo/Geant2012.json").to_str().unwrap(),
        "--traces",
        d.join("NAB/data/realAWSCloudwatch").to_str().unwrap(),
        "--agents",
        "6",
        "--hours",
        "3",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    out
}

fn metric(v: &serde_json::Value, run: &str, name: &str) -> f64 {
    v[run][name]
        .as_f64()
        .unwrap_or_else(|| panic!("{run}.{name} missing: {v}"))
}

#[test]
fn a_cost_weight_of_one_costs_less_than_a_performance_weight_of_one_on_real_data() {
    let s = snapshot("cost");
    let s = s.to_str().unwrap();
    // The placement weights alone: the descheduler off (its drift strategy pulls replicas back
    // toward their agent's target whatever the weights; checked below).
    let (code, out, err) = mom(&[
        "whatif",
        "--snapshot",
        s,
        "--set",
        "objectives.performance=1",
        "--set",
        "descheduler.everyTicks=0",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let fast: serde_json::Value = serde_json::from_str(&out).unwrap();
    for name in [
        "latencyMs",
        "sloViolationMinutes",
        "replicaHours",
        "cost",
        "energy",
        "evictions",
    ] {
        assert!(metric(&fast, "recorded", name) >= 0.0);
        assert!(metric(&fast, "counterfactual", name) >= 0.0);
    }
    assert!(
        fast["agreement"].is_null() && fast["decisions"].as_u64().unwrap() > 0,
        "{fast}"
    );
    let (code, out, err) = mom(&[
        "whatif",
        "--snapshot",
        s,
        "--set",
        "objectives.cost=1",
        "--set",
        "descheduler.everyTicks=0",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let cheap: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The same snapshot as given, twice: identical (deterministic).
    assert_eq!(fast["recorded"], cheap["recorded"]);
    let (c, f) = (
        metric(&cheap, "counterfactual", "cost"),
        metric(&fast, "counterfactual", "cost"),
    );
    println!("cost: weight on cost {c:.3}, weight on performance {f:.3}");
    assert!(c < f, "cost-weighted {cheap} vs performance-weighted {fast}");
    assert_eq!(metric(&cheap, "counterfactual", "evictions"), 0.0);
    // With the descheduler on (every 20 ticks, the snapshot's default) the cost-placed replicas
    // far from their target are moved back: evictions.
    let (code, out, err) = mom(&[
        "whatif",
        "--snapshot",
        s,
        "--set",
        "objectives.cost=1",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(metric(&v, "counterfactual", "evictions") > 0.0, "{v}");
    // --steps: one entry per tick for each run, summing to the totals.
    let (code, out, err) = mom(&["whatif", "--snapshot", s, "--steps", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps = v["steps"]["recorded"].as_array().unwrap();
    assert_eq!(steps.len() as u64, v["ticks"].as_u64().unwrap());
    let cost: f64 = steps.iter().map(|x| x["cost"].as_f64().unwrap()).sum();
    assert!(
        (cost - metric(&v, "recorded", "cost")).abs() < 1e-6,
        "{cost} vs {}",
        v["recorded"]
    );
}

#[test]
fn the_pareto_points_on_real_data_are_mutually_non_dominated_and_plot_as_svg() {
    let s = snapshot("pareto");
    let s = s.to_str().unwrap();
    let (code, out, err) = mom(&["whatif", "pareto", "--snapshot", s, "--points", "4", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let points = v["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{v}");
    // performance is judged by latency and SLO minutes, cost by cost.
    let judged = |p: &serde_json::Value| -> Vec<f64> {
        ["latencyMs", "sloViolationMinutes", "cost"]
            .iter()
            .map(|k| p["metrics"][*k].as_f64().unwrap())
            .collect()
    };
    for a in points {
        let w = &a["weights"];
        let sum: f64 = ["performance", "cost", "reliability", "sustainability"]
            .iter()
            .map(|k| w[*k].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "{w}");
        for b in points {
            let (x, y) = (judged(a), judged(b));
            let dominates = x.iter().zip(&y).all(|(p, q)| p <= q) && x.iter().zip(&y).any(|(p, q)| p < q);
            assert!(!dominates, "{a} dominates {b}");
        }
    }
    let (code, svg, err) = mom(&["whatif", "pareto", "--snapshot", s, "--points", "2", "--format", "svg"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        svg.starts_with("<svg") && svg.contains("<circle") && svg.contains("latency (ms)"),
        "{svg}"
    );
}

#[test]
fn bad_whatif_input_exits_2_naming_the_file_field_or_key() {
    let dir = std::env::temp_dir().join(format!("whatif-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    let wrong = dir.join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"version": 9, "durationSeconds": 60, "nodes": [], "agents": []}"#,
    )
    .unwrap();
    let good = snapshot("bad");
    let (bad, wrong, good) = (bad.to_str().unwrap(), wrong.to_str().unwrap(), good.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["whatif"], "--snapshot"),
        (vec!["whatif", "--snapshot", "/no/such.json"], "/no/such.json"),
        (vec!["whatif", "--snapshot", bad], "bad.json"),
        (vec!["whatif", "--snapshot", wrong], "version"),
        (
            vec!["whatif", "--snapshot", good, "--set", "objectives.speed=1"],
            "objectives.speed",
        ),
        (
            vec![
                "whatif",
                "--snapshot",
                good,
                "--set",
                "agent/nobody.scaling.method=reactive",
            ],
            "nobody",
        ),
        (
            vec!["whatif", "pareto", "--snapshot", good, "--objectives", "cost"],
            "at least two",
        ),
        (
            vec!["whatif", "pareto", "--snapshot", good, "--objectives", "cost,speed"],
            "speed",
        ),
        (
            vec!["whatif", "pareto", "--snapshot", good, "--points", "1"],
            "--points",
        ),
        (
            vec![
                "whatif",
                "snapshot",
                "--topology",
                "/no/topo.json",
                "--traces",
                "/tmp",
                "--out",
                "/tmp/x.json",
            ],
            "/no/topo.json",
        ),
        (vec!["whatif", "--cluster", "--since", "3w"], "--since 3w"),
        (vec!["whatif", "--snapshot", good, "--since", "1h"], "--cluster"),
        (vec!["whatif", "--snapshot", good, "--cluster"], "--cluster"),
        (
            vec!["whatif", "--cluster", "--kubeconfig", "/no/such/kubeconfig"],
            "/no/such/kubeconfig",
        ),
        (vec!["whatif", "snapshot", "--out", "/tmp/x.json"], "--topology"),
        (
            vec!["whatif", "--snapshot", good, "--set", "outage=node/nowhere@0-60"],
            "outages[0].nodes",
        ),
        (
            vec!["whatif", "--snapshot", good, "--set", "budget.maxHourlyCost=-1"],
            "maxHourlyCost",
        ),
        (
            vec![
                "whatif",
                "--snapshot",
                good,
                "--set",
                "outage=topology.kubernetes.io/zone=site-000@60-30",
            ],
            "outages[0].untilSeconds",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = mom(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_node_outage_on_real_data_strands_its_replicas_and_a_slow_judgement_costs_violation_minutes() {
    let s = snapshot("outage");
    let s = s.to_str().unwrap();
    // The node the six agents gather on (the run as given, end of the run).
    let (code, out, err) = mom(&["whatif", "--snapshot", s, "--steps", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for nodes in v["placements"]["recorded"].as_object().unwrap().values() {
        for n in nodes.as_array().unwrap() {
            *counts.entry(n.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let (busiest, _) = counts.iter().max_by_key(|(_, c)| **c).unwrap();
    let outage = format!("outage=node/{busiest}@3600-7200");
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["whatif", "--snapshot", s, "--set", &outage, "--format", "json"];
        args.extend_from_slice(extra);
        let (code, out, err) = mom(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    // Judged silent within a tick (the default 15 s): replicas are replaced before demand goes
    // unserved on this snapshot, but the agents serve from farther away.
    let v = run(&[]);
    println!("{outage}: {}", v["counterfactual"]);
    assert_eq!(metric(&v, "recorded", "stranded"), 0.0);
    assert!(metric(&v, "counterfactual", "stranded") > 0.0, "{v}");
    assert!(
        metric(&v, "counterfactual", "latencyMs") > metric(&v, "recorded", "latencyMs"),
        "{v}"
    );
    // Judged silent only after 5 minutes: demand goes unserved meanwhile.
    let slow = run(&["--set", "failure.detectionSeconds=300"]);
    println!("{outage}, 300 s to judge: {}", slow["counterfactual"]);
    assert!(
        metric(&slow, "counterfactual", "sloViolationMinutes") > metric(&slow, "recorded", "sloViolationMinutes"),
        "{slow}"
    );
}

#[test]
fn the_bench_times_a_generated_snapshot_and_its_sweep_and_refuses_a_zero_duration() {
    let d = data_dir();
    let (topology, traces) = (
        d.join("TopoHub/topozoo/Geant2012.json"),
        d.join("NAB/data/realAWSCloudwatch"),
    );
    let (topology, traces) = (topology.to_str().unwrap(), traces.to_str().unwrap());
    let common = [
        "whatif",
        "bench",
        "--topology",
        topology,
        "--traces",
        traces,
        "--agents",
        "8",
        "--nodes-per-site",
        "1",
        "--method",
        "reactive",
        "--points",
        "3",
    ];
    let mut args = common.to_vec();
    args.extend(["--hours", "0.5", "--pareto-hours", "0.25"]);
    let (code, out, err) = mom(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((v["agents"].as_u64(), v["nodes"].as_u64()), (Some(8), Some(37)), "{v}");
    // Half an hour at the 15-s sync, and a quarter hour for each sweep run.
    assert_eq!(v["ticks"], 120, "{v}");
    assert_eq!(v["pareto"]["ticks"], 60, "{v}");
    assert_eq!(v["method"], "reactive", "{v}");
    assert!(v["runSeconds"].as_f64().is_some_and(|s| s >= 0.0), "{v}");
    assert!(v["metrics"]["placements"].as_u64().is_some_and(|p| p >= 8), "{v}");
    let frontier = v["pareto"]["frontier"].as_u64().unwrap_or(0);
    assert!((1..=3).contains(&frontier), "{v}");
    // A duration of zero is refused, naming the flag.
    let mut args = common.to_vec();
    args.extend(["--hours", "0"]);
    let (code, _, err) = mom(&args);
    assert_ne!(code, 0);
    assert!(err.contains("--hours: must be > 0, got 0"), "{err}");
    // A `--set` reaches the run: with fixed targets the metrics differ; a bad one is named.
    let no_sweep = &common[..common.len() - 2];
    let mut args = no_sweep.to_vec();
    args.extend(["--hours", "0.5", "--points", "0", "--set", "targets.fixed=true"]);
    let (code, out, err) = mom(&args);
    assert_eq!(code, 0, "{err}");
    let fixed: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_ne!(fixed["metrics"], v["metrics"], "fixed targets changed nothing: {fixed}");
    let mut args = no_sweep.to_vec();
    args.extend(["--hours", "0.5", "--points", "0", "--set", "targets.fixed=sometimes"]);
    let (code, _, err) = mom(&args);
    assert_ne!(code, 0);
    assert!(err.contains("--set targets.fixed=sometimes"), "{err}");
}

#[test]
fn a_pareto_plot_path_that_cannot_be_written_exits_2_naming_it_and_a_failed_sweep_leaves_no_plot() {
    let s = snapshot("pareto-plot");
    let s = s.to_str().unwrap();
    let dir = std::path::Path::new(s).parent().unwrap().to_path_buf();
    let sweep = |points: &str, plot: &std::path::Path| {
        mom(&[
            "whatif",
            "pareto",
            "--snapshot",
            s,
            "--points",
            points,
            "--plot",
            plot.to_str().unwrap(),
        ])
    };
    let missing = dir.join("no-such-dir/frontier.svg");
    let (code, out, err) = sweep("2", &missing);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("--plot {}", missing.display())), "{err}");
    assert!(out.is_empty(), "printed a frontier despite the bad plot path: {out}");
    // A sweep refused after the plot was opened (one point) leaves no plot.
    let plot = dir.join("frontier.svg");
    let (code, _, err) = sweep("1", &plot);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--points"), "{err}");
    assert!(!plot.exists(), "a failed sweep left {}", plot.display());
    // An existing plot stays as it was, with no temporary file behind.
    std::fs::write(&plot, "the plot of an earlier sweep").unwrap();
    let (code, _, _) = sweep("1", &plot);
    assert_eq!(code, 2);
    assert_eq!(std::fs::read_to_string(&plot).unwrap(), "the plot of an earlier sweep");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // Positive control: a good sweep writes the plot and still prints its JSON.
    let (code, out, err) = sweep("2", &plot);
    assert_eq!(code, 0, "{err}");
    assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok(), "{out}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<circle"), "{svg}");
}

#[test]
fn new_agents_on_real_data_place_closer_under_mom_than_under_the_default_scheduler_model() {
    // The generated snapshot's six agents made new: no target, two replicas each, one tick, no
    // descheduler; placement weighs performance alone (the snapshot's nodes have random prices
    // and energy classes, which the default scheduler ignores). The generated ring names each
    // agent's next one only; here each also names its previous one, as a user lists both ends
    // of a call (an agent follows the peers it lists, not those that list it).
    let path = snapshot("new");
    let mut s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let n = s["agents"].as_array().unwrap().len();
    for (i, a) in s["agents"].as_array_mut().unwrap().iter_mut().enumerate() {
        a["peers"][format!("agent-{:03}", (i + n - 1) % n)] = 1.0.into();
        a["target"] = serde_json::json!([]);
        a["method"] = "manual".into();
        a["replicas"] = 2.into();
        a["initialReplicas"] = 2.into();
    }
    s["durationSeconds"] = 15.0.into();
    s["deschedulerEveryTicks"] = 0.into();
    std::fs::write(&path, s.to_string()).unwrap();
    let p = path.to_str().unwrap();
    let latency = |set: &[&str]| {
        let mut args = vec![
            "whatif",
            "--snapshot",
            p,
            "--format",
            "json",
            "--set",
            "objectives.performance=1",
        ];
        for x in set {
            args.extend(["--set", x]);
        }
        let (code, out, err) = mom(&args);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["counterfactual"]["placements"].as_u64(), Some(12), "{v}");
        metric(&v, "counterfactual", "latencyMs")
    };
    let mom_ms = latency(&[]);
    let mut default_ms = Vec::new();
    for seed in 0..4 {
        default_ms.push(latency(&["scheduler=default", &format!("scheduler.seed={seed}")]));
    }
    println!("new ring of 6 on Geant2012: mom {mom_ms:.3} ms, default model {default_ms:?}");
    assert!(
        default_ms.iter().all(|&d| d > 2.0 * mom_ms),
        "mom {mom_ms} default {default_ms:?}"
    );
    // The seed draws among ties: not every seed places alike.
    assert!(default_ms.iter().any(|&d| d != default_ms[0]), "{default_ms:?}");
    // --steps: where each agent's replicas ended, under each scheduler.
    let (code, out, err) = mom(&[
        "whatif",
        "--snapshot",
        p,
        "--set",
        "scheduler=default",
        "--steps",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for run in ["recorded", "counterfactual"] {
        let placed = v["placements"][run].as_object().unwrap();
        assert_eq!(placed.len(), n, "{v}");
        assert!(placed.values().all(|nodes| nodes.as_array().unwrap().len() == 2), "{v}");
        assert_eq!(v["targets"][run].as_object().unwrap().len(), n, "{v}");
    }
    let (code, _, err) = mom(&["whatif", "--snapshot", p, "--set", "scheduler=kube"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("scheduler") && err.contains("kube"), "{err}");
}

#[test]
fn a_batch_agent_planned_into_the_night_costs_less_than_running_it_at_once_on_a_geant_snapshot() {
    // A 12-hour Geant snapshot from 18:00, plus a batch agent (8 replica-hours, at most 4
    // replicas, due by 05:00) and an hourly price profile: 1.0 by day, 0.25 from 20:00 to 08:00.
    let dir = std::env::temp_dir().join(format!("whatif-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = data_dir();
    let base = dir.join("base.json");
    let (code, _, err) = mom(&[
        "whatif",
        "snapshot",
        "--topology",
        d.join("TopoHub/topozoo/Geant2012.json").to_str().unwrap(),
        "--traces",
        d.join("NAB/data/realAWSCloudwatch").to_str().unwrap(),
        "--agents",
        "4",
        "--hours",
        "12",
        "--seed",
        "5",
        "--out",
        base.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let mut s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    let day_night: Vec<f64> = (0..24).map(|h| if (8..20).contains(&h) { 1.0 } else { 0.25 }).collect();
    s["pricing"] = serde_json::json!({"slotSeconds": 3600, "pools": {"default": {"price": day_night}}});
    s["clockStartSeconds"] = serde_json::json!(18 * 3600);
    let mut batch = s["agents"][0].clone();
    batch["name"] = "render".into();
    batch["peers"] = serde_json::json!({});
    batch["maxReplicas"] = 4.into();
    batch["batch"] = serde_json::json!({"replicaHours": 8, "deadlineSeconds": 11 * 3600});
    s["agents"].as_array_mut().unwrap().push(batch);
    let with_batch = dir.join("batch.json");
    std::fs::write(&with_batch, s.to_string()).unwrap();
    let (code, out, err) = mom(&[
        "whatif",
        "--snapshot",
        with_batch.to_str().unwrap(),
        "--set",
        "batch.timing=atOnce",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (planned, at_once) = (&v["batch"]["recorded"][0], &v["batch"]["counterfactual"][0]);
    assert_eq!(planned["agent"], "render", "{v}");
    assert_eq!(planned["deadlineMet"], true, "{planned}");
    assert_eq!(at_once["deadlineMet"], true, "{at_once}");
    let cost = |b: &serde_json::Value| b["cost"].as_f64().unwrap();
    // At once: 4 replicas from 18:00 (serving from the first tick, as the twin starts every
    // agent), two day hours at 1.0. Planned: from 20:00, at 0.25.
    assert!(
        cost(planned) < 0.5 * cost(at_once),
        "planned {planned} at once {at_once}"
    );
    assert!(
        planned["finishedAtSeconds"].as_f64().unwrap() >= 4.0 * 3600.0,
        "{planned}"
    );
    assert!(
        at_once["finishedAtSeconds"].as_f64().unwrap() <= 2.5 * 3600.0,
        "{at_once}"
    );
    assert!((metric(&v, "recorded", "batchCost") - cost(planned)).abs() < 1e-9);
    // Without the pricing the batch agent is refused, naming it.
    s.as_object_mut().unwrap().remove("pricing");
    std::fs::write(&with_batch, s.to_string()).unwrap();
    let (code, _, err) = mom(&["whatif", "--snapshot", with_batch.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("agents[4].batch") && err.contains("pricing"), "{err}");
}

#[test]
fn a_budget_on_real_data_caps_scale_ups_and_a_roomy_one_changes_nothing() {
    let s = snapshot("budget");
    let s = s.to_str().unwrap();
    let run = |budget: &str| -> serde_json::Value {
        let set = format!("budget.maxHourlyCost={budget}");
        let (code, out, err) = mom(&["whatif", "--snapshot", s, "--set", &set, "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    // Six agents of 250m on Geant2012 cost well under 1 per hour: 5 changes nothing.
    let roomy = run("5");
    assert_eq!(metric(&roomy, "counterfactual", "budgetRefusals"), 0.0, "{roomy}");
    for name in ["sloViolationMinutes", "replicaHours", "cost"] {
        assert_eq!(
            metric(&roomy, "counterfactual", name),
            metric(&roomy, "recorded", name),
            "{name}: {roomy}"
        );
    }
    // 0.2 per hour holds scale-ups back: less spent, more demand unserved.
    let tight = run("0.2");
    println!("budget 0.2: {}", tight["counterfactual"]);
    assert!(metric(&tight, "counterfactual", "budgetRefusals") > 0.0, "{tight}");
    assert!(metric(&tight, "counterfactual", "cost") < metric(&tight, "recorded", "cost"));
    assert!(
        metric(&tight, "counterfactual", "sloViolationMinutes") > metric(&tight, "recorded", "sloViolationMinutes"),
        "{tight}"
    );
}
