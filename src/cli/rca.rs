//! `mom rca`: root cause on the topology. `eval` injects faults into a cluster built from a
//! TopoHub topology and scores the localiser; `explain` ranks the failure domains of a snapshot
//! JSON, or of the live cluster's flags (`--cluster`). Files live here; the core (`mom::anomaly::rca`, `rca_eval`) sees text and
//! numbers. Bad input (unreadable file, bad JSON, no nodes, a zero count) exits with code 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use serde_json::{Value, json};

use mom::anomaly::rca::{self, Params as RcaParams};
use mom::anomaly::rca_eval::{EvalConfig, Evidence, FAULT_LEVELS, evaluate_with_progress};
use mom::bounded_input::{MAX_DOCUMENT_BYTES, read_to_string};
use mom::geometry::data::parse_node_link;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inject faults into a TopoHub-derived cluster, detect, localise; report top-1 accuracy.
    Eval(EvalArgs),
    /// Rank the failure domains that explain a snapshot's anomalous nodes and agents.
    Explain(ExplainArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EvidenceArg {
    Shift,
    Detector,
}

#[derive(Debug, ClapArgs)]
struct EvalArgs {
    /// TopoHub topology (networkx node-link JSON).
    #[arg(long)]
    topology: PathBuf,
    /// Number of injected faults (at least 1).
    #[arg(long, default_value_t = 200)]
    faults: usize,
    /// Seed of the fault draws and series.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where a node's evidence comes from: `shift` (the level-shift detector's CUSUM evidence)
    /// or `detector` (1 when the streaming anomaly detector scored ≥ threshold in the last
    /// `window` points).
    #[arg(long, value_enum, default_value_t = EvidenceArg::Shift)]
    evidence: EvidenceArg,
    /// Override a setting, `name=value` (repeatable): threshold, window, horizon, decoy_share,
    /// p_member, q_background, prior_none, points, period_seconds, shift_slack, shift_limit,
    /// shift_alpha (the detector's), shift_min, shift_max (the injected fault's size in σ).
    #[arg(long, value_name = "NAME=VALUE")]
    param: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Show progress (faults evaluated) on stderr even when it is not a terminal, one line per
    /// tenth; on a terminal it is always shown, in place.
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, ClapArgs)]
struct ExplainArgs {
    /// Snapshot JSON: `{"nodes": [{"name", "labels"}], "agents": [{"name", "nodes",
    /// "upstream"}], "anomalous_nodes": {name: score}, "anomalous_agents": {name: score}}`.
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    snapshot: Option<PathBuf>,
    /// Read the snapshot from the live cluster instead, as the operator's MomConfig
    /// `status.rootCause` sees it: every node with its labels (flagged: label
    /// `mom.hypersync.io/anomalous=true`) and, when `spec.anomaly.agentSeries` is set, every
    /// agent with bound pods (flagged: condition `Anomalous=True`).
    #[arg(long)]
    cluster: bool,
    /// With `--cluster`: also write the snapshot read to this file (for `--snapshot` later).
    #[arg(long, requires = "cluster")]
    snapshot_out: Option<PathBuf>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, requires = "cluster")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, requires = "cluster")]
    context: Option<String>,
    /// Causes to print.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let result = match args.command {
        Command::Eval(a) => run_eval(a),
        Command::Explain(a) => run_explain(a),
    };
    // every failure here is the input's: say so and exit 2, as clap does for bad arguments
    Ok(result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::from(2)
    }))
}

fn read(path: &Path) -> anyhow::Result<String> {
    read_to_string(path, MAX_DOCUMENT_BYTES).with_context(|| format!("reading {}", path.display()))
}

fn eval_config(a: &EvalArgs) -> anyhow::Result<EvalConfig> {
    let mut c = EvalConfig {
        faults: a.faults,
        seed: a.seed,
        evidence: match a.evidence {
            EvidenceArg::Shift => Evidence::Shift,
            EvidenceArg::Detector => Evidence::Detector,
        },
        ..EvalConfig::default()
    };
    for o in &a.param {
        let Some((name, value)) = o.split_once('=') else {
            bail!("--param `{o}`: expected NAME=VALUE");
        };
        let v: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("--param `{o}`: value is not a number ≥ 0"))?;
        let whole = || -> anyhow::Result<usize> {
            if v.fract() == 0.0 && v <= 1e6 {
                Ok(v as usize)
            } else {
                bail!("--param `{o}`: must be a whole number")
            }
        };
        match name.trim() {
            "threshold" => c.threshold = v,
            "window" => c.window = whole()?,
            "horizon" => c.horizon = whole()?,
            "points" => c.points = whole()?,
            "decoy_share" => c.decoy_share = v.min(1.0),
            "period_seconds" => c.period_seconds = v,
            "p_member" => c.rca.p_member = v,
            "q_background" => c.rca.q_background = v,
            "prior_none" => c.rca.prior_none = v,
            "shift_slack" => c.shift.slack = v,
            "shift_limit" => c.shift.limit = v,
            "shift_alpha" => c.shift.alpha = v,
            "shift_min" => c.shift_min = v,
            "shift_max" => c.shift_max = v,
            other => bail!(
                "--param `{other}`: unknown (known: threshold window horizon points decoy_share period_seconds p_member q_background prior_none shift_slack shift_limit shift_alpha shift_min shift_max)"
            ),
        }
    }
    Ok(c)
}

fn run_eval(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let cfg = eval_config(&a)?;
    if cfg.faults == 0 {
        bail!("--faults: must be at least 1, got 0");
    }
    let origin = a.topology.display().to_string();
    let g = parse_node_link(&read(&a.topology)?, &origin)?;
    let mut progress = super::progress::Progress::stderr(
        format!("rca eval {origin}: faults"),
        super::progress::Mode::for_stderr(a.progress),
    );
    progress.count(0, cfg.faults);
    let report = evaluate_with_progress(&g, &origin, &cfg, &mut |done, total| progress.count(done, total))
        .with_context(|| format!("evaluating {origin}"))?;
    progress.finish();
    let by_level: serde_json::Map<String, Value> = FAULT_LEVELS
        .iter()
        .map(|l| {
            let acc = report.by_level.get(l).and_then(|s| s.accuracy());
            (l.as_str().to_string(), json!(acc))
        })
        .collect();
    let counts: serde_json::Map<String, Value> = report
        .by_level
        .iter()
        .map(|(l, s)| (l.as_str().to_string(), json!(s.faults)))
        .collect();
    let out = json!({
        "top1": report.top1(),
        "by_level": by_level,
        "median_seconds": report.median_seconds(),
        "topology": report.topology,
        "nodes": report.nodes,
        "faults": report.faults,
        "faults_by_level": counts,
        "never_localised": report.never_localised,
        "chance_top1": report.chance_top1,
        "period_seconds": cfg.period_seconds,
        "seed": cfg.seed,
        "evidence": cfg.evidence,
    });
    match a.format {
        Format::Json => println!("{out}"),
        Format::Table => {
            println!(
                "{} ({} nodes, {} faults, seed {})",
                report.topology, report.nodes, report.faults, cfg.seed
            );
            println!("{:<8} {:>7} {:>9}", "level", "faults", "top-1");
            for (l, s) in &report.by_level {
                let acc = s.accuracy().map_or("-".to_string(), |x| format!("{x:.3}"));
                println!("{:<8} {:>7} {:>9}", l.as_str(), s.faults, acc);
            }
            println!("{:<8} {:>7} {:>9.3}", "all", report.faults, report.top1());
            println!("chance baseline top-1 {:.3}", report.chance_top1);
            match report.median_seconds() {
                Some(s) => println!(
                    "median time to localise {s:.0} s (period {} s); never localised {}",
                    cfg.period_seconds, report.never_localised
                ),
                None => println!("never localised: {}", report.never_localised),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The snapshot of the live cluster (`--cluster`).
#[cfg(feature = "operator")]
fn cluster_snapshot(a: &ExplainArgs) -> anyhow::Result<rca::Snapshot> {
    let target = super::kube_target::KubeTarget {
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let snapshot = runtime.block_on(async {
        let client = target.client().await?;
        mom::operator::anomaly::rca_snapshot(&client)
            .await
            .context("reading nodes, agents and pods")
    })?;
    if snapshot.nodes.is_empty() {
        bail!("the cluster has no nodes");
    }
    if let Some(path) = &a.snapshot_out {
        std::fs::write(path, serde_json::to_string_pretty(&snapshot)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(snapshot)
}

#[cfg(not(feature = "operator"))]
fn cluster_snapshot(_: &ExplainArgs) -> anyhow::Result<rca::Snapshot> {
    bail!("--cluster: this mom was built without the operator feature")
}

fn run_explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (origin, snapshot) = match &a.snapshot {
        Some(path) => {
            let origin = path.display().to_string();
            let snapshot = rca::parse_snapshot(&origin, &read(path)?)?;
            (origin, snapshot)
        }
        None => ("the cluster".to_string(), cluster_snapshot(&a)?),
    };
    let d = rca::localise(&snapshot, &RcaParams::default()).with_context(|| format!("in {origin}"))?;
    let causes: Vec<&rca::Cause> = d.causes.iter().take(a.top).collect();
    match a.format {
        Format::Json => println!(
            "{}",
            json!({"causes": causes, "none_confidence": d.none_confidence, "top": d.top()})
        ),
        Format::Table => {
            match d.top() {
                Some(c) => println!(
                    "cause: {} {} (confidence {:.3})",
                    c.level.as_str(),
                    c.name,
                    c.confidence
                ),
                None => println!("no cause (nothing failed: confidence {:.3})", d.none_confidence),
            }
            println!(
                "{:<9} {:<28} {:>10} {:>8} {:>10}",
                "level", "name", "confidence", "members", "explained"
            );
            for c in causes {
                println!(
                    "{:<9} {:<28} {:>10.4} {:>8} {:>10.3}",
                    c.level.as_str(),
                    c.name,
                    c.confidence,
                    c.members,
                    c.explained
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
