//! `mom forecast` as a process, no cluster: `eval` scores the neural forecaster and the
//! ensemble with it on a real NAB trace (JSON and table); `bench` times each model warm and
//! cold per tick; bad arguments exit non-zero naming the flag, the need or the model.

mod cli_support;

use cli_support::{data_dir, mom};
use serde_json::Value;

fn nab_trace() -> String {
    let p = data_dir().join("NAB/data/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv");
    assert!(p.exists(), "{} (MOM_DATA_DIR or ../shared/data)", p.display());
    p.to_string_lossy().into_owned()
}

#[test]
fn forecast_eval_scores_the_network_and_the_ensemble_with_it_on_a_real_nab_trace() {
    let trace = nab_trace();
    let args = [
        "forecast",
        "eval",
        "--trace",
        &trace,
        "--window",
        "600",
        "--max-origins",
        "15",
        "--model",
        "ensemble",
        "--model",
        "neural",
        "--model",
        "ensemble_neural",
    ];
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let (code, out, err) = mom(&json_args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let horizons = v["traces"][0]["horizons"].as_array().unwrap();
    assert_eq!(horizons.len(), 3, "{v}");
    for h in horizons {
        for m in ["ensemble", "neural", "ensemble_neural"] {
            let mase = h["models"][m]["mase"].as_f64().unwrap_or(f64::NAN);
            // Every model is scored, and on this trace each beats the best seasonal-naive
            // baseline at every horizon (the README's table: 0.56–0.68 with 300 origins of
            // 2016-point windows; here 15 origins of 600-point windows, to keep the test short).
            assert!(mase.is_finite() && mase > 0.0 && mase < 1.0, "{m}: {h}");
        }
    }
    for key in ["h1", "h6", "h12"] {
        assert!(v["mean_mase"][key]["ensemble_neural"].as_f64().is_some(), "{v}");
    }
    let mut table_args = args[..6].to_vec();
    table_args.extend(["--max-origins", "2", "--model", "neural", "--model", "ensemble_neural"]);
    let (code, table, err) = mom(&table_args);
    assert_eq!(code, 0, "{err}");
    let header = table.lines().next().unwrap_or("");
    assert!(header.contains(" nn") && header.contains("ens+nn"), "{table}");
    assert!(!table.contains("NaN"), "{table}");
}

#[test]
fn forecast_bench_times_each_model_warm_and_cold_and_bad_arguments_are_named() {
    let trace = nab_trace();
    let (code, out, err) = mom(&[
        "forecast",
        "bench",
        "--trace",
        &trace,
        "--agents",
        "3",
        "--ticks",
        "2",
        "--model",
        "neural",
        "--model",
        "ensemble_neural",
        "--cold",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["agents"].as_u64(), v["window"].as_u64()),
        (Some(3), Some(240)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("neural", "warm"),
            ("neural", "cold"),
            ("ensemble_neural", "warm"),
            ("ensemble_neural", "cold")
        ]
    );
    for r in results {
        assert!(r["tick_seconds_median"].as_f64().is_some_and(|s| s > 0.0), "{r}");
        assert!(r["first_tick_seconds"].as_f64().is_some_and(|s| s > 0.0), "{r}");
        assert!(r["checksum"].as_f64().is_some_and(f64::is_finite), "{r}");
    }

    // Positive control above; now the refusals.
    let (code, _, err) = mom(&["forecast", "bench", "--trace", &trace, "--agents", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("--agents"), "{err}");
    let (code, _, err) = mom(&[
        "forecast", "bench", "--trace", &trace, "--window", "100000", "--agents", "1",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("100006 points"), "{err}");
    let (code, _, err) = mom(&[
        "forecast", "bench", "--trace", &trace, "--agents", "1", "--model", "lstm",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown model `lstm`"), "{err}");
}
