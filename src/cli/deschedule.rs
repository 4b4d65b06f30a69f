//! `mom deschedule`: plan descheduling moves offline from a JSON snapshot, or benchmark the
//! planner on a synthetic drifted cluster (latency before/after, evictions, planning time).
//! Timing lives here, at the binary's edge; the core never reads a clock.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use mom::descheduler::synthetic::{self, SyntheticSpec};
use mom::descheduler::{self, Plan, Settings, Snapshot};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Plan one tick from a snapshot file (JSON `Snapshot`; settings optional).
    Plan(PlanArgs),
    /// Run the planner on a synthetic drifted cluster and report latency, evictions and time.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Snapshot JSON (nodes, pods, agents, kappa, now).
    #[arg(long)]
    snapshot: PathBuf,
    /// Settings JSON (planner limits and per-strategy args); defaults when absent.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// `json` prints the plan as one JSON object; otherwise a table.
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Pods of the simulated cluster.
    #[arg(long, default_value_t = 240)]
    pods: usize,
    /// Nodes of the simulated cluster.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Ticks to simulate.
    #[arg(long, default_value_t = 12)]
    ticks: u32,
    /// Seconds per tick (the cool-off is counted in these).
    #[arg(long, default_value_t = 15)]
    tick_seconds: u64,
    /// Churn (re-home one anchor agent, change 2 % of the pods' usage) every this many ticks;
    /// 0 = no churn.
    #[arg(long, default_value_t = 0)]
    churn_every: u32,
    /// Also time the first plan on a second, larger cluster of this many pods…
    #[arg(long)]
    timing_pods: Option<usize>,
    /// …and this many nodes.
    #[arg(long, default_value_t = 1000)]
    timing_nodes: usize,
    /// Timed repetitions of that plan (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: u32,
    /// Settings JSON; defaults when absent.
    #[arg(long)]
    settings: Option<PathBuf>,
    #[arg(long, default_value = "table")]
    format: String,
    /// Show progress (ticks planned, then timed repetitions) on stderr even when it is not a
    /// terminal, one line per tenth; on a terminal it is always shown, in place.
    #[arg(long)]
    progress: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan(args) => run_plan(args),
        Command::Bench(args) => run_bench(args),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text = mom::bounded_input::read_to_string(path, mom::bounded_input::MAX_DOCUMENT_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn run_plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let snapshot: Snapshot = read_json(&args.snapshot)?;
    let settings: Settings = match &args.settings {
        Some(p) => read_json(p)?,
        None => Settings::default(),
    };
    // No agent controller offline: agents without a target follow their peers' replicas.
    let plan = descheduler::plan_standalone(&snapshot, &settings)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string(&plan)?);
    } else {
        print_plan(&plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &Plan) {
    println!(
        "{} candidates, {} moves, gain {:.2}, cost {:.2}",
        plan.candidates,
        plan.moves.len(),
        plan.total_gain,
        plan.total_cost
    );
    println!(
        "{:<40} {:<20} {:<20} {:<11} {:>9} {:>7}",
        "POD", "FROM", "TO", "STRATEGY", "GAIN", "COST"
    );
    for m in &plan.moves {
        println!(
            "{:<40} {:<20} {:<20} {:<11} {:>9.2} {:>7.2}",
            format!("{}/{}", m.namespace, m.pod),
            m.from,
            m.to,
            m.strategy.as_str(),
            m.gain,
            m.cost
        );
    }
    let mut kinds = std::collections::BTreeMap::new();
    for s in &plan.skipped {
        *kinds.entry(format!("{:?}", s.kind)).or_insert(0usize) += 1;
    }
    for (k, n) in kinds {
        println!("skipped ({k}): {n}");
    }
}

fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let settings: Settings = match &args.settings {
        Some(p) => read_json(p)?,
        None => Settings::default(),
    };
    let spec = SyntheticSpec {
        pods: args.pods,
        nodes: args.nodes,
        seed: args.seed,
    };
    let mut cluster = synthetic::drifted_cluster(&spec)?;
    let nodes = cluster.snapshot.nodes.len();
    let mut plan_ms: Vec<f64> = Vec::new();
    let run = synthetic::RunOptions {
        ticks: args.ticks,
        tick_seconds: args.tick_seconds,
        churn_every: args.churn_every,
        seed: args.seed,
    };
    let mode = super::progress::Mode::for_stderr(args.progress);
    let mut progress = super::progress::Progress::stderr("deschedule bench: ticks", mode);
    progress.count(0, args.ticks as usize);
    let report = synthetic::simulate(&mut cluster, &settings, &run, |s, st| {
        let t = Instant::now();
        let p = descheduler::plan_standalone(s, st);
        plan_ms.push(t.elapsed().as_secs_f64() * 1e3);
        progress.count(plan_ms.len(), args.ticks as usize);
        p
    })?;
    progress.finish();
    let mut out = json!({
        "bench": "deschedule",
        "source": "core-synthetic",
        "pods": args.pods,
        "nodes": nodes,
        "seed": args.seed,
        "ticks": args.ticks,
        "tickSeconds": args.tick_seconds,
        "churnEvery": args.churn_every,
        "coolOffSeconds": settings.planner.cool_off_seconds,
        "latencyBeforeMs": report.latency_before_ms,
        "latencyAfterMs": report.latency_after_ms,
        "evictions": report.evictions,
        "evictionsRepeated": report.evicted_within_cool_off,
        "replicasMovedMoreThanOnce": report.replicas_moved_more_than_once,
        "movesBackToAPreviousNode": report.moves_back_to_a_previous_node,
        "evictionsByStrategy": report.evictions_by_strategy,
        "evictionsPerTick": report.evictions_per_tick,
        "podsOnFlaggedNodesBefore": report.pods_on_flagged_nodes_before,
        "podsOnFlaggedNodesAfter": report.pods_on_flagged_nodes_after,
        "planMsMax": plan_ms.iter().copied().fold(0.0, f64::max),
    });
    if let Some(pods) = args.timing_pods {
        let big = synthetic::drifted_cluster(&SyntheticSpec {
            pods,
            nodes: args.timing_nodes,
            seed: args.seed,
        })?;
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut moves = 0;
        let mut candidates = 0;
        let repeats = args.repeats.max(1) as usize;
        let mut progress = super::progress::Progress::stderr("deschedule bench: timed plans", mode);
        progress.count(0, repeats);
        for done in 1..=repeats {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            let p = descheduler::plan_standalone(&big.snapshot, &settings)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (c, thread_cpu_ms()) {
                cpu.push(b - a);
            }
            moves = p.moves.len();
            candidates = p.candidates;
            progress.count(done, repeats);
        }
        progress.finish();
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        out["planning"] = json!({
            "pods": pods,
            "nodes": big.snapshot.nodes.len(),
            "agents": big.snapshot.agents.len(),
            "candidates": candidates,
            "moves": moves,
            "repeats": times.len(),
            "medianMs": times[times.len() / 2],
            // CPU time of the planning thread: wall time on a shared machine overstates it.
            "medianCpuMs": cpu.get(cpu.len() / 2),
            "minMs": times[0],
            "maxMs": times[times.len() - 1],
            "targetMs": 1000,
        });
    }
    if args.format == "json" {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// CPU time of the calling thread in ms (Linux `/proc/thread-self/schedstat`), if readable.
fn thread_cpu_ms() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e6)
}
