//! `mom anomaly`: run the streaming detector on a NAB data file (`detect`), score it — or the
//! result files of another detector — on a labelled NAB corpus (`eval`), and measure its
//! throughput and memory per series (`bench`). Files and timing live here; the core
//! (`mom::anomaly`) sees text and numbers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use serde_json::{Value, json};

use mom::anomaly::detector::{Detector, Params, score_timed_series};
use mom::anomaly::nab::{Profile, ScoredFile, per_file_raw, score_corpus_with};
use mom::anomaly::{LabelWindows, parse_label_windows, parse_nab_csv, window_rows};
use mom::bounded_input::{MAX_DOCUMENT_BYTES, read_to_string};

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score every row of a NAB data file; write NAB's results format.
    Detect(DetectArgs),
    /// Score the detector (or existing result files) on a labelled corpus with NAB's rules.
    Eval(EvalArgs),
    /// Detector throughput (points per second on one core) and memory per series.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, ClapArgs)]
struct DetectArgs {
    /// NAB data file (`timestamp,value`).
    #[arg(long)]
    trace: PathBuf,
    /// Result file to write (`timestamp,value,anomaly_score`, one row per input row).
    #[arg(long)]
    out: PathBuf,
    /// Override a detector parameter, `name=value` (repeatable; see `detector::Params`).
    #[arg(long, value_name = "NAME=VALUE")]
    param: Vec<String>,
}

#[derive(Debug, ClapArgs)]
struct EvalArgs {
    /// Directory of NAB data files (searched recursively); the detector runs on each.
    #[arg(long, conflicts_with = "results", required_unless_present = "results")]
    data: Option<PathBuf>,
    /// Instead of running the detector: a directory of NAB result files
    /// (`<category>/<detector>_<file>.csv` with an `anomaly_score` column).
    #[arg(long)]
    results: Option<PathBuf>,
    /// NAB's `combined_windows.json`.
    #[arg(long)]
    labels: PathBuf,
    /// Score at fixed thresholds instead of optimising them: NAB's `config/thresholds.json`,
    /// read for the detector named by the `--results` folder (`<detector>.<profile>.threshold`).
    #[arg(long, requires = "results")]
    thresholds: Option<PathBuf>,
    /// Override a detector parameter, `name=value` (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    param: Vec<String>,
    /// Also print each file's raw score per profile at the corpus threshold.
    #[arg(long)]
    per_file: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Show progress (files scored) on stderr even when it is not a terminal, one line per
    /// tenth; on a terminal it is always shown, in place.
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, ClapArgs)]
struct BenchArgs {
    /// Points per series.
    #[arg(long, default_value_t = 2_000_000)]
    points: usize,
    /// Independent series, scored round-robin (one detector each).
    #[arg(long, default_value_t = 1)]
    series: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Detect(a) => run_detect(a),
        Command::Eval(a) => run_eval(a),
        Command::Bench(a) => run_bench(a),
    }
}

fn params(overrides: &[String]) -> anyhow::Result<Params> {
    let mut p = Params::default();
    for o in overrides {
        let Some((name, value)) = o.split_once('=') else {
            bail!("--param `{o}`: expected NAME=VALUE");
        };
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("--param `{o}`: value is not a number"))?;
        p.set(name.trim(), value)?;
    }
    Ok(p)
}

fn read(path: &Path) -> anyhow::Result<String> {
    read_to_string(path, MAX_DOCUMENT_BYTES).with_context(|| format!("reading {}", path.display()))
}

fn run_detect(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let p = params(&args.param)?;
    let name = args.trace.display().to_string();
    let file = parse_nab_csv(&name, &read(&args.trace)?)?;
    let rows: Vec<(f64, f64)> = file.rows.iter().map(|r| (r.time, r.value)).collect();
    let scores = score_timed_series(&rows, p);
    let mut out = String::from("timestamp,value,anomaly_score\n");
    for ((ts, v), s) in file.timestamps.iter().zip(&file.values).zip(&scores) {
        writeln!(out, "{ts},{v},{s}").expect("writing to a String");
    }
    std::fs::write(&args.out, out).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("scored {} rows of {} into {}", scores.len(), name, args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "csv") {
            out.push(p);
        }
    }
    Ok(())
}

/// The label key (`category/file.csv`) of a data or result file: the longest key whose
/// category is the file's folder and whose file name is the file's name, or its end after a
/// `<detector>_` prefix.
fn label_key<'a>(path: &Path, labels: &'a LabelWindows) -> Option<&'a str> {
    let file = path.file_name()?.to_str()?;
    let folder = path.parent()?.file_name()?.to_str()?;
    labels
        .keys()
        .filter(|k| {
            let Some((cat, name)) = k.rsplit_once('/') else {
                return false;
            };
            cat.rsplit('/').next() == Some(folder) && (file == name || file.ends_with(&format!("_{name}")))
        })
        .max_by_key(|k| k.len())
        .map(String::as_str)
}

fn run_eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let p = params(&args.param)?;
    let labels = parse_label_windows(&read(&args.labels)?).with_context(|| format!("in {}", args.labels.display()))?;
    let dir = args
        .data
        .as_ref()
        .or(args.results.as_ref())
        .context("give --data DIR (run the detector) or --results DIR (score result files)")?;
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let started = Instant::now();
    let mut progress =
        super::progress::Progress::stderr("anomaly eval: files", super::progress::Mode::for_stderr(args.progress));
    for (done, path) in paths.iter().enumerate() {
        progress.count(done, paths.len());
        let shown = path.display().to_string();
        if shown.ends_with("_scores.csv") {
            continue;
        }
        let Some(key) = label_key(path, &labels) else {
            skipped.push(shown);
            continue;
        };
        let f = parse_nab_csv(&shown, &read(path)?)?;
        let scores: Vec<f64> = if args.results.is_some() {
            f.rows
                .iter()
                .map(|r| r.score)
                .collect::<Option<Vec<f64>>>()
                .with_context(|| format!("{shown}: no anomaly_score column"))?
        } else {
            score_timed_series(&f.rows.iter().map(|r| (r.time, r.value)).collect::<Vec<_>>(), p)
        };
        let times: Vec<f64> = f.rows.iter().map(|r| r.time).collect();
        let windows = window_rows(key, &times, &labels[key])?;
        files.push(ScoredFile {
            name: key.to_string(),
            scores,
            windows,
        });
    }
    progress.count(paths.len(), paths.len());
    progress.finish();
    if !skipped.is_empty() {
        eprintln!(
            "no labels for {} file(s), not scored: {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let fixed = match &args.thresholds {
        None => None,
        Some(path) => {
            let all: Value =
                serde_json::from_str(&read(path)?).with_context(|| format!("parsing {}", path.display()))?;
            let detector = dir
                .file_name()
                .and_then(|n| n.to_str())
                .context("--results must name a folder")?;
            let mut t = Vec::new();
            for pr in Profile::ALL {
                t.push(
                    all[detector][pr.name()]["threshold"]
                        .as_f64()
                        .with_context(|| format!("{}: no {detector}.{}.threshold", path.display(), pr.name()))?,
                );
            }
            Some(t)
        }
    };
    let results = Profile::ALL
        .iter()
        .enumerate()
        .map(|(i, &pr)| score_corpus_with(&files, pr, fixed.as_ref().map(|t| t[i])))
        .collect::<Result<Vec<_>, _>>()?;
    let seconds = started.elapsed().as_secs_f64();
    let mut scores = serde_json::Map::new();
    let mut thresholds = serde_json::Map::new();
    for r in &results {
        scores.insert(r.profile.into(), json!(r.normalised));
        thresholds.insert(r.profile.into(), json!(r.threshold));
    }
    let mut out = json!({
        "files": files.len(),
        "scores": scores,
        "threshold": results[0].threshold,
        "thresholds": thresholds,
        "profiles": results,
        "source": if args.results.is_some() { "results" } else { "detector" },
        "seconds": seconds,
    });
    if args.results.is_none() {
        out["params"] = serde_json::to_value(p)?;
    }
    if args.per_file {
        let mut per = serde_json::Map::new();
        let raws: Vec<Vec<f64>> = results
            .iter()
            .zip(Profile::ALL)
            .map(|(r, pr)| per_file_raw(&files, pr, r.threshold))
            .collect();
        for (i, f) in files.iter().enumerate() {
            let row: serde_json::Map<String, Value> = Profile::ALL
                .iter()
                .zip(&raws)
                .map(|(pr, raw)| (pr.name().to_string(), json!(raw[i])))
                .chain([("windows".to_string(), json!(f.windows.len()))])
                .collect();
            per.insert(f.name.clone(), Value::Object(row));
        }
        out["per_file"] = Value::Object(per);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Table => {
            println!("{} files", files.len());
            println!(
                "{:<20} {:>10} {:>10} {:>8} {:>8}",
                "profile", "score", "threshold", "TP rows", "FP rows"
            );
            for r in &results {
                println!(
                    "{:<20} {:>10.2} {:>10.4} {:>8} {:>8}",
                    r.profile, r.normalised, r.threshold, r.tp, r.fp
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.points == 0 || args.series == 0 {
        bail!("--points and --series must be ≥ 1");
    }
    // A deterministic synthetic series: daily-like sine, xorshift noise, a spike every 5000.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<f64> = (0..args.points)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let spike = if i % 5000 == 4999 { 30.0 } else { 0.0 };
            50.0 + 10.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin() + (s % 1000) as f64 / 250.0 + spike
        })
        .collect();
    let mut detectors: Vec<Detector> = (0..args.series).map(|_| Detector::new(Params::default())).collect();
    let started = Instant::now();
    let mut checksum = 0.0;
    for (i, &x) in values.iter().enumerate() {
        let t = 1.4e9 + 300.0 * i as f64; // five-minute steps, as most NAB series
        for d in &mut detectors {
            checksum += d.update_at(t, x);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let points = (args.points * args.series) as f64;
    let out = json!({
        "points": points,
        "series": args.series,
        "seconds": seconds,
        "points_per_second": points / seconds,
        "memory_bytes_per_series": Detector::MEMORY_BYTES,
        "score_sum": checksum,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
