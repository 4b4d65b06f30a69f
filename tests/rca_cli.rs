//! `mom rca` as a process, no cluster: `eval` on a real TopoHub file prints the JSON shape and
//! beats its own chance baseline; bad input exits 2 naming the file or field.

mod cli_support;

use cli_support::{data_dir, mom};

#[test]
fn rca_eval_on_abilene_prints_the_shape_and_beats_chance() {
    let topo = data_dir().join("TopoHub/topozoo/Abilene.json");
    let topo = topo.to_string_lossy();
    let (code, out, err) = mom(&[
        "rca",
        "eval",
        "--topology",
        &topo,
        "--faults",
        "40",
        "--seed",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for level in ["node", "rack", "zone", "region"] {
        assert!(v["by_level"].get(level).is_some(), "{v}");
    }
    assert!(v.get("median_seconds").is_some(), "{v}");
    let (top1, chance) = (v["top1"].as_f64().unwrap(), v["chance_top1"].as_f64().unwrap());
    assert!(top1 > chance, "top1 {top1} not above chance {chance}");
    // The default evidence is the level-shift detector's, and with it every level is localised
    // at least 9 times in 10 (the issue's target).
    assert_eq!(v["evidence"], "shift", "{v}");
    for level in ["node", "rack", "zone", "region"] {
        let acc = v["by_level"][level].as_f64().unwrap();
        assert!(acc >= 0.9, "{level}: top-1 {acc} below 0.9: {v}");
    }
}

#[test]
fn rca_eval_with_the_anomaly_detectors_flags_names_its_evidence_and_localises_worse() {
    let topo = data_dir().join("TopoHub/topozoo/Abilene.json");
    let topo = topo.to_string_lossy();
    let run = |evidence: &str| {
        let (code, out, err) = mom(&[
            "rca",
            "eval",
            "--topology",
            &topo,
            "--faults",
            "40",
            "--seed",
            "3",
            "--evidence",
            evidence,
            "--format",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let (detector, shift) = (run("detector"), run("shift"));
    assert_eq!(detector["evidence"], "detector", "{detector}");
    // The detector rarely holds a level shift above its threshold (README, root cause): the
    // shift evidence is what reaches the target.
    assert!(
        detector["top1"].as_f64().unwrap() < shift["top1"].as_f64().unwrap(),
        "detector {detector} vs shift {shift}"
    );
}

#[test]
fn rca_bad_input_exits_2_naming_the_file_or_field() {
    let dir = std::env::temp_dir().join(format!("rca-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    let empty = dir.join("empty.json");
    std::fs::write(&empty, r#"{"nodes": [], "edges": []}"#).unwrap();
    let abilene = data_dir().join("TopoHub/topozoo/Abilene.json");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["eval".into(), "--topology".into(), "/no/such.json".into()],
            "/no/such.json".into(),
        ),
        (
            vec!["eval".into(), "--topology".into(), bad.display().to_string()],
            bad.display().to_string(),
        ),
        (
            vec!["eval".into(), "--topology".into(), empty.display().to_string()],
            "no nodes".into(),
        ),
        (
            vec![
                "eval".into(),
                "--topology".into(),
                abilene.display().to_string(),
                "--faults".into(),
                "0".into(),
            ],
            "--faults".into(),
        ),
        (
            vec![
                "eval".into(),
                "--topology".into(),
                abilene.display().to_string(),
                "--param".into(),
                "shift_min=5".into(),
                "--param".into(),
                "shift_max=4".into(),
            ],
            "shift_min".into(),
        ),
        (
            vec![
                "eval".into(),
                "--topology".into(),
                abilene.display().to_string(),
                "--param".into(),
                "shift_limit=0".into(),
            ],
            "shift limit".into(),
        ),
        (
            vec!["explain".into(), "--snapshot".into(), bad.display().to_string()],
            "bad JSON".into(),
        ),
        // Neither a snapshot nor the cluster, both, and cluster options without --cluster.
        (vec!["explain".into()], "--snapshot".into()),
        (
            vec![
                "explain".into(),
                "--cluster".into(),
                "--snapshot".into(),
                bad.display().to_string(),
            ],
            "cannot be used with".into(),
        ),
        (
            vec!["explain".into(), "--snapshot-out".into(), "/tmp/x.json".into()],
            "--cluster".into(),
        ),
        // An unreadable kubeconfig is named.
        (
            vec![
                "explain".into(),
                "--cluster".into(),
                "--kubeconfig".into(),
                "/no/such/kubeconfig".into(),
            ],
            "/no/such/kubeconfig".into(),
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["rca"];
        all.extend(args.iter().map(String::as_str));
        let (code, _, err) = mom(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(&needle) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn rca_eval_progress_goes_to_stderr_and_leaves_the_json_on_stdout_unchanged() {
    let topo = data_dir().join("TopoHub/topozoo/Abilene.json");
    let topo = topo.to_string_lossy();
    let base = [
        "rca",
        "eval",
        "--topology",
        &topo,
        "--faults",
        "10",
        "--seed",
        "3",
        "--format",
        "json",
    ];
    let (code, plain, err) = mom(&base);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('%'), "progress without --progress off a terminal: {err}");
    let mut args = base.to_vec();
    args.push("--progress");
    let (code, out, err) = mom(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("faults: 100%"), "no progress on stderr: {err}");
    assert_eq!(err.lines().filter(|l| l.contains('%')).count(), 11, "{err}");
    // The same JSON (the evaluation is deterministic for a seed).
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("stdout is JSON");
    assert_eq!(parse(&out), parse(&plain));
}
