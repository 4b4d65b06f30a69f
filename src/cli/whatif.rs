//! `mom whatif`: counterfactuals on the cluster twin (`mom::twin`). `mom whatif --snapshot FILE
//! --set KEY=VALUE…` runs a snapshot as it is and with the changes; `pareto` sweeps objective
//! weights and prints the non-dominated runs (JSON or SVG); `snapshot` builds a snapshot from a
//! TopoHub topology and demand traces. `--cluster --since D` (for a run and for `snapshot`)
//! builds it instead from the live cluster and its scale receipts of the last D
//! (`mom::twin::recorded`). Files live here; the core sees text and numbers. Bad input exits 2
//! naming the file, field or key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use serde_json::json;

use mom::bounded_input::read_to_string;
use mom::twin::{self, Snapshot, pareto};

/// Largest snapshot file read (1,000 agents × a week of 5-minute bins fit well below it).
const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

#[derive(Debug, ClapArgs)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sweep objective weights over the twin and print the Pareto frontier.
    Pareto(ParetoArgs),
    /// Build a twin snapshot from a TopoHub topology and demand traces.
    Snapshot(SnapshotArgs),
    /// Time the twin on a generated snapshot (default: 1,000 agents × 200 nodes × 1 day) and a
    /// Pareto sweep; one JSON line on stdout.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, ClapArgs)]
struct RunArgs {
    /// Twin snapshot JSON (`mom whatif snapshot` writes one).
    #[arg(long, conflicts_with = "cluster")]
    snapshot: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A change for the counterfactual run (repeatable): `objectives.NAME=W` (the other weights
    /// rescaled to keep the sum 1), `agent/NAME.scaling.method=predictive|reactive|manual`
    /// (`agent/*` for all), `descheduler.everyTicks=N` (0: none), `targets.fixed=true|false`,
    /// `kappa=K`, `routing=ALGORITHM`, `scheduler=mom|default`, `scheduler.seed=N`,
    /// `batch.timing=planned|atOnce` (batch agents by their least-cost plan, or all at once),
    /// `outage=node/NAME@FROM-UNTIL` or `outage=LABEL=VALUE@FROM-UNTIL` (those nodes fail over
    /// that window of run seconds; repeatable), `failure.detectionSeconds=S` (default 15),
    /// `budget.maxHourlyCost=X|none` (the MomConfig budget: scale-ups capped, pools cut).
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    progress: bool,
    /// Also print each tick's metrics (JSON: `steps.recorded`, `steps.counterfactual`) and, in
    /// JSON, each agent's target and the nodes of its replicas at the end of each run
    /// (`targets.*`, `placements.*`).
    #[arg(long)]
    steps: bool,
}

/// The live cluster as the snapshot's source.
#[derive(Debug, ClapArgs)]
struct ClusterArgs {
    /// Build the snapshot from the live cluster: its nodes, GeometricAgents and MomConfig now,
    /// and the scale receipts of the last `--since` (the recorded decisions the run as given
    /// is checked against).
    #[arg(long)]
    cluster: bool,
    /// How far back the window opens: a number with `s`, `m`, `h` or `d` (with `--cluster`;
    /// default 24h).
    #[arg(long)]
    since: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use.
    #[arg(long)]
    context: Option<String>,
    /// Only the GeometricAgents of this namespace (and their receipts); every node still counts.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(Debug, ClapArgs)]
struct BenchArgs {
    /// TopoHub topology; default `$MOM_DATA_DIR/TopoHub/topozoo/Geant2012.json`.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Demand traces; default `$MOM_DATA_DIR/NAB/data/realAWSCloudwatch`.
    #[arg(long)]
    traces: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Nodes per site (Geant2012 has 37 sites: 6 gives 222 nodes).
    #[arg(long, default_value_t = 6)]
    nodes_per_site: u32,
    /// Every agent's scaling method (`predictive` is the snapshot generator's).
    #[arg(long, default_value = "predictive")]
    method: String,
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Runs of the Pareto sweep (0: none).
    #[arg(long, default_value_t = 20)]
    points: usize,
    /// Hours of each sweep run (the sweep's own snapshot).
    #[arg(long, default_value_t = 24.0)]
    pareto_hours: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A change to the generated snapshot, as `mom whatif --set` (repeatable; applied after
    /// `--method`, to the run and to the sweep), e.g. `targets.fixed=true`.
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, ClapArgs)]
struct ParetoArgs {
    #[arg(long)]
    snapshot: PathBuf,
    /// Two or more of performance, cost, reliability, sustainability, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "performance,cost")]
    objectives: Vec<String>,
    /// Runs in the sweep (at least 2).
    #[arg(long, default_value_t = 20)]
    points: usize,
    #[arg(long, value_enum, default_value_t = ParetoFormat::Json)]
    format: ParetoFormat,
    /// Also write the frontier's SVG plot to this file (created before the sweep; removed if
    /// the sweep fails), whatever --format prints.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ParetoFormat {
    Json,
    Svg,
}

#[derive(Debug, ClapArgs)]
struct SnapshotArgs {
    /// TopoHub topology (networkx node-link JSON); each site becomes a zone.
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    topology: Option<PathBuf>,
    /// Directory of demand traces (NAB CSV `timestamp,value`), read in name order.
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    traces: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[arg(long, default_value_t = 20)]
    agents: usize,
    #[arg(long, default_value_t = 1)]
    nodes_per_site: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hours the snapshot runs for.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let result = match args.command {
        Some(Command::Pareto(a)) => run_pareto(a),
        Some(Command::Snapshot(a)) => run_snapshot(a),
        Some(Command::Bench(a)) => run_bench(a),
        None => run_whatif(args.run),
    };
    Ok(result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::from(2)
    }))
}

fn load(path: &Path) -> anyhow::Result<Snapshot> {
    let text = read_to_string(path, MAX_SNAPSHOT_BYTES).with_context(|| format!("reading {}", path.display()))?;
    Ok(Snapshot::parse(&path.display().to_string(), &text)?)
}

fn progress_for(label: String, forced: bool) -> super::progress::Progress {
    super::progress::Progress::stderr(label, super::progress::Mode::for_stderr(forced))
}

fn run_twin(s: &Snapshot, label: &str, forced: bool, steps: bool) -> anyhow::Result<twin::Report> {
    let mut p = progress_for(format!("whatif {label}: ticks"), forced);
    let r = twin::run_report(s, steps, &mut |done, total| p.count(done as usize, total as usize))?;
    p.finish();
    Ok(r)
}

/// `--since`: `90m`, `24h`, `2d`, `3600s` (or plain seconds) → seconds.
fn since_seconds(text: &str) -> anyhow::Result<f64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86_400.0,
        other => bail!("--since {text}: unknown unit {other:?} (use s, m, h or d)"),
    };
    let v: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .with_context(|| format!("--since {text}: not a positive duration"))?;
    Ok(v * scale)
}

/// Refuses the cluster options without `--cluster` (clap's `requires` counts the flag's default).
fn check_cluster_args(a: &ClusterArgs) -> anyhow::Result<()> {
    if a.cluster {
        return Ok(());
    }
    for (flag, given) in [
        ("--since", a.since.is_some()),
        ("--kubeconfig", a.kubeconfig.is_some()),
        ("--context", a.context.is_some()),
        ("--namespace", a.namespace.is_some()),
    ] {
        if given {
            bail!("{flag} applies only with --cluster");
        }
    }
    Ok(())
}

/// The snapshot of the live cluster over the last `--since` and what it covers.
#[cfg(feature = "operator")]
fn cluster_snapshot(a: &ClusterArgs) -> anyhow::Result<(Snapshot, twin::recorded::Coverage)> {
    let back = since_seconds(a.since.as_deref().unwrap_or("24h"))?;
    let target = super::kube_target::KubeTarget {
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
    };
    let until = k8s_openapi::jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (nodes, agents, window) = runtime.block_on(async {
        let client = target.client().await?;
        mom::operator::twin_source::read(&client, until - back, until, a.namespace.as_deref())
            .await
            .context("reading nodes, agents, the MomConfig and receipts")
    })?;
    if nodes.is_empty() {
        bail!("the cluster has no nodes");
    }
    Ok(twin::recorded::snapshot_of(nodes, agents, &window)?)
}

#[cfg(not(feature = "operator"))]
fn cluster_snapshot(a: &ClusterArgs) -> anyhow::Result<(Snapshot, twin::recorded::Coverage)> {
    since_seconds(a.since.as_deref().unwrap_or("24h"))?;
    bail!("--cluster: this mom was built without the operator feature")
}

fn run_whatif(a: RunArgs) -> anyhow::Result<ExitCode> {
    check_cluster_args(&a.cluster)?;
    let (recorded, coverage) = match (&a.snapshot, a.cluster.cluster) {
        (Some(path), _) => (load(path)?, None),
        (None, true) => {
            let (s, c) = cluster_snapshot(&a.cluster)?;
            (s, Some(c))
        }
        (None, false) => bail!("--snapshot FILE or --cluster is required (or a subcommand: pareto, snapshot)"),
    };
    let mut changed = recorded.clone();
    for set in &a.set {
        twin::apply_set(&mut changed, set).with_context(|| format!("--set {set}"))?;
    }
    let started = Instant::now();
    let as_given = run_twin(&recorded, "as given", a.progress, a.steps)?;
    let changes = run_twin(&changed, "with the changes", a.progress, a.steps)?;
    let seconds = started.elapsed().as_secs_f64();
    let (before, after) = (as_given.metrics, changes.metrics);
    // Decisions the twin took in both runs: scaling changes, bindings and evictions.
    let decisions = [before, after]
        .iter()
        .map(|m| m.scaling_decisions + m.placements + m.evictions)
        .sum::<u64>();
    match a.format {
        Format::Json => {
            let mut out = json!({"agreement": as_given.agreement, "recorded": before, "counterfactual": after,
                   "decisions": decisions, "changes": a.set, "ticks": recorded.ticks(),
                   "agents": recorded.agents.len(), "nodes": recorded.nodes.len(), "seconds": seconds});
            if !as_given.batch.is_empty() || !changes.batch.is_empty() {
                out["batch"] = json!({"recorded": as_given.batch, "counterfactual": changes.batch});
            }
            if let Some(c) = &coverage {
                out["recordedDecisions"] = json!(recorded.recorded.as_ref().map_or(0, |r| r.replicas.len()));
                out["coverage"] = json!(c);
            }
            if a.steps {
                out["steps"] = json!({"recorded": as_given.steps, "counterfactual": changes.steps});
                out["targets"] = json!({"recorded": as_given.targets, "counterfactual": changes.targets});
                out["placements"] = json!({"recorded": as_given.placements, "counterfactual": changes.placements});
            }
            println!("{out}");
        }
        Format::Text => {
            println!(
                "{} agents, {} nodes, {} ticks of {} s; changes: {}",
                recorded.agents.len(),
                recorded.nodes.len(),
                recorded.ticks(),
                recorded.tick_seconds,
                if a.set.is_empty() {
                    "none".to_string()
                } else {
                    a.set.join(" ")
                }
            );
            println!("{:<22} {:>14} {:>14}", "metric", "as given", "with changes");
            let rows = [
                ("latency ms", before.latency_ms, after.latency_ms),
                (
                    "SLO violation min",
                    before.slo_violation_minutes,
                    after.slo_violation_minutes,
                ),
                ("replica-hours", before.replica_hours, after.replica_hours),
                ("cost", before.cost, after.cost),
                ("batch cost", before.batch_cost, after.batch_cost),
                ("energy", before.energy, after.energy),
                ("evictions", before.evictions as f64, after.evictions as f64),
                ("stranded replicas", before.stranded as f64, after.stranded as f64),
                ("auctions", before.auctions as f64, after.auctions as f64),
                ("auction payments", before.auction_payments, after.auction_payments),
                (
                    "budget refusals",
                    before.budget_refusals as f64,
                    after.budget_refusals as f64,
                ),
            ];
            for (name, x, y) in rows {
                println!("{name:<22} {x:>14.3} {y:>14.3}");
            }
            if a.steps {
                println!(
                    "{:>7} {:>12} {:>12} {:>12} {:>12}",
                    "tick", "latency ms", "latency ms'", "cost", "cost'"
                );
                for (x, y) in as_given.steps.iter().zip(&changes.steps) {
                    println!(
                        "{:>7} {:>12.3} {:>12.3} {:>12.4} {:>12.4}",
                        x.tick,
                        x.latency_ms.unwrap_or(f64::NAN),
                        y.latency_ms.unwrap_or(f64::NAN),
                        x.cost,
                        y.cost
                    );
                }
            }
            if let Some(c) = &coverage {
                println!(
                    "from the cluster: {} agents with scale receipts ({} receipts, {} set aside), {} held at their count, \
                     {} without a position left out; {} of {} demand bins estimated",
                    c.agents_recorded,
                    c.receipts,
                    c.receipts_set_aside,
                    c.agents_held,
                    c.agents_without_position.len(),
                    c.estimated_bins,
                    c.bins
                );
            }
            match as_given.agreement {
                Some(x) => println!("agreement with recorded decisions: {x:.4}"),
                None => println!("agreement with recorded decisions: unknown (the snapshot records none)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_pareto(a: ParetoArgs) -> anyhow::Result<ExitCode> {
    let s = load(&a.snapshot)?;
    let objectives: Vec<String> = a.objectives.iter().map(|o| o.trim().to_string()).collect();
    let plot = match a.plot.as_deref().map(super::plot_file::PlotFile::create).transpose() {
        Ok(plot) => plot,
        Err(code) => return Ok(code),
    };
    let mut p = progress_for("whatif pareto: runs".into(), a.progress);
    let points = pareto::frontier(&s, &objectives, a.points, &mut |done, total| p.count(done, total))?;
    p.finish();
    if let Some(plot) = plot
        && let Err(code) = plot.finish(&pareto::svg(&points, &objectives))
    {
        return Ok(code);
    }
    match a.format {
        ParetoFormat::Json => println!("{}", json!({"objectives": objectives, "points": points})),
        ParetoFormat::Svg => print!("{}", pareto::svg(&points, &objectives)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A snapshot generated from a topology file and a directory of traces.
fn generated(topology: &Path, traces: &Path, cfg: &twin::snapshot::GenerateConfig) -> anyhow::Result<Snapshot> {
    let origin = topology.display().to_string();
    let text = read_to_string(topology, mom::bounded_input::MAX_DOCUMENT_BYTES)
        .with_context(|| format!("reading {origin}"))?;
    let graph = mom::geometry::data::parse_node_link(&text, &origin)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(traces)
        .with_context(|| format!("--traces {}", traces.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("--traces {}: no .csv files", traces.display());
    }
    let traces = files
        .iter()
        .map(|f| mom::forecast::trace::load_trace(f, 60.0).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(twin::snapshot::generate(&graph, &traces, cfg)?)
}

fn run_snapshot(a: SnapshotArgs) -> anyhow::Result<ExitCode> {
    check_cluster_args(&a.cluster)?;
    if a.cluster.cluster {
        let (s, c) = cluster_snapshot(&a.cluster)?;
        std::fs::write(&a.out, serde_json::to_string(&s)?).with_context(|| format!("writing {}", a.out.display()))?;
        eprintln!(
            "wrote {}: {} nodes, {} agents ({} with scale receipts, {} held at their count), {} recorded decisions, {} ticks of {} s",
            a.out.display(),
            s.nodes.len(),
            s.agents.len(),
            c.agents_recorded,
            c.agents_held,
            s.recorded.as_ref().map_or(0, |r| r.replicas.len()),
            s.ticks(),
            s.tick_seconds
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(topology), Some(traces)) = (&a.topology, &a.traces) else {
        bail!("--topology and --traces are required without --cluster");
    };
    if !(a.hours.is_finite() && a.hours > 0.0) {
        bail!("--hours: must be > 0, got {}", a.hours);
    }
    let cfg = twin::snapshot::GenerateConfig {
        agents: a.agents,
        nodes_per_site: a.nodes_per_site,
        seed: a.seed,
        duration_seconds: (a.hours * 3600.0).round(),
    };
    let s = generated(topology, traces, &cfg)?;
    std::fs::write(&a.out, serde_json::to_string(&s)?).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {}: {} nodes in {} zones, {} agents, {} ticks",
        a.out.display(),
        s.nodes.len(),
        s.zone_latency_ms.len() + 1,
        s.agents.len(),
        s.ticks()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let data = PathBuf::from(std::env::var("MOM_DATA_DIR").unwrap_or_else(|_| "../shared/data".into()));
    let topology = a
        .topology
        .unwrap_or_else(|| data.join("TopoHub/topozoo/Geant2012.json"));
    let traces = a.traces.unwrap_or_else(|| data.join("NAB/data/realAWSCloudwatch"));
    for (flag, h) in [("--hours", a.hours), ("--pareto-hours", a.pareto_hours)] {
        if !(h.is_finite() && h > 0.0) {
            bail!("{flag}: must be > 0, got {h}");
        }
    }
    let mut cfg = twin::snapshot::GenerateConfig {
        agents: a.agents,
        nodes_per_site: a.nodes_per_site,
        seed: a.seed,
        duration_seconds: (a.hours * 3600.0).round(),
    };
    let mut s = generated(&topology, &traces, &cfg)?;
    let method = format!("agent/*.scaling.method={}", a.method);
    let changes = |s: &mut twin::Snapshot| -> anyhow::Result<()> {
        twin::apply_set(s, &method).with_context(|| format!("--method {}", a.method))?;
        for set in &a.set {
            twin::apply_set(s, set).with_context(|| format!("--set {set}"))?;
        }
        Ok(())
    };
    changes(&mut s)?;
    eprintln!(
        "whatif bench: {} agents, {} nodes, {} ticks",
        s.agents.len(),
        s.nodes.len(),
        s.ticks()
    );
    let started = Instant::now();
    let report = run_twin(&s, "bench", a.progress, false)?;
    let run_seconds = started.elapsed().as_secs_f64();
    let mut out = json!({"bench": "whatif", "method": a.method, "agents": s.agents.len(), "nodes": s.nodes.len(),
        "ticks": s.ticks(), "runSeconds": run_seconds, "metrics": report.metrics});
    if a.points > 0 {
        cfg.duration_seconds = (a.pareto_hours * 3600.0).round();
        let mut sweep = generated(&topology, &traces, &cfg)?;
        changes(&mut sweep)?;
        let objectives = vec!["performance".to_string(), "cost".to_string()];
        let started = Instant::now();
        let mut p = progress_for("whatif bench pareto: runs".into(), a.progress);
        let points = pareto::frontier(&sweep, &objectives, a.points, &mut |done, total| p.count(done, total))?;
        p.finish();
        out["pareto"] = json!({"points": a.points, "frontier": points.len(), "ticks": sweep.ticks(),
            "seconds": started.elapsed().as_secs_f64()});
    }
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::since_seconds;

    #[test]
    fn since_takes_a_number_with_a_unit_and_names_what_is_wrong() {
        assert_eq!(since_seconds("90m").unwrap(), 5400.0);
        assert_eq!(since_seconds("24h").unwrap(), 86_400.0);
        assert_eq!(since_seconds("2d").unwrap(), 172_800.0);
        assert_eq!(since_seconds("30").unwrap(), 30.0);
        assert_eq!(since_seconds("1.5h").unwrap(), 5400.0);
        for bad in ["", "h", "-1h", "0s", "3w", "nanh"] {
            let err = since_seconds(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--since {bad}")), "{bad}: {err}");
        }
    }
}
