//! `mom train scaling` and `mom simulate --policy learned` as processes, no cluster: a model is
//! trained on small traces, written, read back and simulated; the same seed writes the same
//! file in two processes; leave-one-family-out prints per trace, per family and aggregate JSON;
//! a missing or broken model and a single family are refused naming what is wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn mom(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mom")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two trace families (directories) of two three-hour traces each, one row a minute.
fn traces(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-train-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (fam, k) in [("famA", 0u32), ("famA", 1), ("famB", 2), ("famB", 3)] {
        std::fs::create_dir_all(dir.join(fam)).unwrap();
        let mut csv = String::from("timestamp,value\n");
        for i in 0..180u32 {
            let burst = if (i + 11 * k) % 40 < 6 { 14.0 } else { 0.0 };
            let value = 10.0 + 6.0 * (f64::from(i + 7 * k) / 9.0).sin() + burst;
            csv.push_str(&format!("2024-01-01 {:02}:{:02}:00,{value:.3}\n", i / 60, i % 60));
        }
        std::fs::write(dir.join(fam).join(format!("t{k}.csv")), csv).unwrap();
    }
    dir
}

const SMALL: [&str; 6] = ["--iterations", "2", "--segments", "2", "--segment-hours", "1"];

#[test]
fn a_trained_model_is_written_read_back_and_simulated_and_the_same_seed_writes_the_same_file() {
    let dir = traces("roundtrip");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    for out in [&a, &b] {
        let mut args = vec![
            "train",
            "scaling",
            "--trace",
            path(&dir),
            "--seed",
            "5",
            "--out",
            path(out),
        ];
        args.extend(SMALL);
        let (code, _, err) = mom(&args);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("iteration 2/2"), "progress on stderr: {err}");
    }
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap(), "same seed, same model");
    let model: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(model["provenance"]["seed"], 5);
    assert_eq!(model["provenance"]["traces"].as_array().unwrap().len(), 4);
    // Positive control for the comparison above: another seed writes another model.
    let c = dir.join("c.json");
    let mut args = vec![
        "train",
        "scaling",
        "--trace",
        path(&dir),
        "--seed",
        "6",
        "--out",
        path(&c),
    ];
    args.extend(SMALL);
    assert_eq!(mom(&args).0, 0);
    assert_ne!(text, std::fs::read_to_string(&c).unwrap());

    let trace = dir.join("famA").join("t0.csv");
    let (code, out, err) = mom(&[
        "simulate",
        "--trace",
        path(&trace),
        "--policy",
        "learned",
        "--learned-model",
        path(&a),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["policy"], "learned", "{run}");
    assert!(run["replica_hours"].as_f64().unwrap() > 0.0, "{run}");
    // With `--policy all` the learned policy runs beside the others and has its totals.
    let (code, out, err) = mom(&[
        "simulate",
        "--trace",
        path(&trace),
        "--policy",
        "all",
        "--learned-model",
        path(&a),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let policies: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["predictive", "reactive", "learned", "hpa", "static"], "{v}");
    assert!(v["totals"]["learned"].is_object(), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_or_broken_model_and_a_single_family_are_refused_naming_them() {
    let dir = traces("refused");
    let trace = dir.join("famA").join("t0.csv");
    let (code, _, err) = mom(&["simulate", "--trace", path(&trace), "--policy", "learned"]);
    assert_ne!(code, 0);
    assert!(err.contains("--learned-model"), "{err}");

    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        r#"{"format":1,"headrooms":[0.0,0.1,0.2,0.3,0.5,0.75,1.0],"weights":[0.5]}"#,
    )
    .unwrap();
    let (code, _, err) = mom(&[
        "simulate",
        "--trace",
        path(&trace),
        "--policy",
        "learned",
        "--learned-model",
        path(&broken),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("weights has 1 values"), "{err}");

    let fam_a = dir.join("famA");
    // A grid of costs means something only when validating.
    let grid_out = dir.join("grid.json");
    let mut args = vec![
        "train",
        "scaling",
        "--trace",
        path(&fam_a),
        "--violation-minute-cost",
        "1,5",
        "--out",
        path(&grid_out),
    ];
    args.extend(SMALL);
    let (code, _, err) = mom(&args);
    assert_ne!(code, 0);
    assert!(err.contains("--violation-minute-cost takes one value"), "{err}");
    assert!(!grid_out.exists());

    let mut args = vec!["train", "scaling", "--trace", path(&fam_a), "--validate", "lofo"];
    args.extend(SMALL);
    let (code, _, err) = mom(&args);
    assert_ne!(code, 0);
    assert!(err.contains("two families"), "{err}");
    // Positive control: the same family trains a model when not validating.
    let out = dir.join("famA.json");
    let mut args = vec!["train", "scaling", "--trace", path(&fam_a), "--out", path(&out)];
    args.extend(SMALL);
    assert_eq!(mom(&args).0, 0);
    assert!(out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leave_one_family_out_trains_without_the_held_out_family_and_scores_it_against_the_hpa() {
    let dir = traces("lofo");
    let models = dir.join("models");
    let mut args = vec![
        "train",
        "scaling",
        "--trace",
        path(&dir),
        "--validate",
        "lofo",
        "--out-dir",
        path(&models),
        "--violation-minute-cost",
        "1,20",
    ];
    args.extend(SMALL);
    let (code, out, err) = mom(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let fams = v["families"].as_array().unwrap();
    assert_eq!(fams.len(), 2);
    for f in fams {
        let fam = f["family"].as_str().unwrap();
        let trained: Vec<&str> = f["trained_on_traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let held: Vec<&str> = f["held_out_traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!((trained.len(), held.len()), (2, 2), "{f}");
        assert!(trained.iter().all(|t| !held.contains(t)), "{f}");
        // The model written for the family is the one named in the report, and it was not
        // trained on the held-out traces.
        let model: Value =
            serde_json::from_str(&std::fs::read_to_string(models.join(format!("{fam}.json"))).unwrap()).unwrap();
        let names: Vec<&str> = model["provenance"]["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(names, trained);
        // The cost was chosen from the grid on the training traces' scores, one row per cost.
        let chosen = f["violation_minute_cost"].as_f64().unwrap();
        assert!(chosen == 1.0 || chosen == 20.0, "{f}");
        let grid = f["on_training_traces"].as_array().unwrap();
        assert_eq!(grid.len(), 2, "{f}");
        assert_eq!(
            model["provenance"]["violationMinuteCost"].as_f64().unwrap(),
            chosen,
            "{f}"
        );
    }
    let rows = v["traces"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        for side in ["learned", "hpa"] {
            assert!(r[side]["slo_violation_minutes"].is_number(), "{r}");
            assert!(r[side]["replica_hours"].as_f64().unwrap() > 0.0, "{r}");
        }
        assert!(r["target_met"].is_boolean());
    }
    assert_eq!(v["targets"]["per_trace_total"], 4);
    assert!(v["aggregate"]["replica_hours_ratio"].is_number());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_reward_weight_comes_from_momconfig_objectives_when_given_and_bad_objectives_are_refused_naming_the_field() {
    let dir = traces("objectives");
    let out = dir.join("o.json");
    let train = |objectives: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "scaling",
            "--trace",
            path(&dir),
            "--objectives",
            objectives,
            "--out",
            path(&out),
        ];
        args.extend(extra);
        args.extend(SMALL);
        mom(&args)
    };
    // As `kubectl get momconfig default -o jsonpath='{.spec.objectives}'` prints them.
    let (code, _, err) = train(
        r#"{"cost":0.3,"performance":0.4,"reliability":0.2,"sustainability":0.1}"#,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("a violation minute costs 1.500 replica-hours"), "{err}");
    let model: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let c = model["provenance"]["violationMinuteCost"].as_f64().unwrap_or(0.0);
    assert!((c - 1.5).abs() < 1e-9, "{model}");
    assert_eq!(model["provenance"]["objectives"]["cost"], 0.3, "{model}");
    // Refused, naming what is wrong; no model is written.
    std::fs::remove_file(&out).unwrap();
    for (bad, says) in [
        (
            r#"{"cost":0.5,"performance":0.5,"reliability":0.5,"sustainability":0.0}"#,
            "must sum to 1",
        ),
        (
            r#"{"cost":0.0,"performance":0.6,"reliability":0.4,"sustainability":0.0}"#,
            "cost and sustainability are both 0",
        ),
        (
            r#"{"cost":0.3,"performance":0.4,"reliability":0.2}"#,
            "missing field `sustainability`",
        ),
        (
            r#"{"cost":0.3,"performance":0.4,"reliability":0.2,"sustainability":0.1,"speed":1}"#,
            "unknown field `speed`",
        ),
    ] {
        let (code, _, err) = train(bad, &[]);
        assert_ne!(code, 0, "{bad} was accepted");
        assert!(err.contains("--objectives") && err.contains(says), "{bad}: {err}");
        assert!(!out.exists(), "{bad} wrote a model");
    }
    // Both ways of setting the weight at once is an error.
    let (code, _, err) = train(
        r#"{"cost":0.3,"performance":0.4,"reliability":0.2,"sustainability":0.1}"#,
        &["--violation-minute-cost", "2"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("cannot be used with"), "{err}");
    // Control: without --objectives the provenance has none.
    let mut args = vec!["train", "scaling", "--trace", path(&dir), "--out", path(&out)];
    args.extend(SMALL);
    let (code, _, err) = mom(&args);
    assert_eq!(code, 0, "{err}");
    let model: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(model["provenance"].get("objectives").is_none(), "{model}");
    assert_eq!(model["provenance"]["violationMinuteCost"], 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_price_on_scaling_actions_is_kept_in_the_model_and_a_negative_one_is_refused() {
    let dir = traces("change-cost");
    let out = dir.join("m.json");
    let train = |cost: &str| {
        let flag = format!("--change-cost={cost}");
        let mut args = vec!["train", "scaling", "--trace", path(&dir), &flag, "--out", path(&out)];
        args.extend(SMALL);
        mom(&args)
    };
    let (code, _, err) = train("0.5");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(" changes, "), "progress counts the changes: {err}");
    let model: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(model["provenance"]["changeCost"], 0.5, "{model}");
    std::fs::remove_file(&out).unwrap();
    let (code, _, err) = train("-1");
    assert_ne!(code, 0);
    assert!(err.contains("change_cost must be finite and ≥ 0, got -1"), "{err}");
    assert!(!out.exists());
    // Control: without a price, the provenance has none (files from before are unchanged).
    let (code, _, err) = train("0");
    assert_eq!(code, 0, "{err}");
    let model: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(model["provenance"].get("changeCost").is_none(), "{model}");
    let _ = std::fs::remove_dir_all(&dir);
}
