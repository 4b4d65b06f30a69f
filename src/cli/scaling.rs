//! `mom forecast eval` and `mom simulate`: score the forecasters on traces (MAE, MASE against
//! the best seasonal-naive) and replay traces through the autoscaling simulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use mom::forecast::metrics::{RollingConfig, rolling_mae, seasonal_naive_mae};
use mom::forecast::trace::{Trace, load_trace};
use mom::forecast::{ModelKind, detect_season};
use mom::hpa::HpaConfig;
use mom::scaling_policy::Method;
use mom::simulator::plot::{Panel, policies_svg};
use mom::simulator::report::{timeline_csv, timeline_svg};
use mom::simulator::{ClusterModel, OperatorPolicyConfig, PolicySpec, SimReport, simulate_with_progress};

use super::plot_file::PlotFile;
use super::progress::{Mode, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `mom forecast …`
#[derive(Debug, Args)]
pub struct ForecastArgs {
    #[command(subcommand)]
    command: ForecastCommand,
}

#[derive(Debug, Subcommand)]
enum ForecastCommand {
    /// Rolling-origin MAE and MASE (against the best seasonal-naive) of every model.
    Eval(EvalArgs),
    /// CPU per scaler tick: every agent refits its sliding window (one new sample) and
    /// forecasts, on one core; JSON.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Trace file or directory of them; agent i replays trace i mod (number of traces) from an
    /// offset of its own; repeatable.
    #[arg(long, required = true)]
    trace: Vec<PathBuf>,
    /// Agents, each with its own forecaster.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Samples in each agent's window (the scaler's 1 h at 15 s is 240).
    #[arg(long, default_value_t = 240)]
    window: usize,
    /// Ticks timed after the first (which fits every window from nothing).
    #[arg(long, default_value_t = 5)]
    ticks: usize,
    /// Steps forecast per agent and tick (the scaler's 900 s horizon + 45 s lead at 15 s is 63).
    #[arg(long, default_value_t = 63)]
    horizon: usize,
    /// Models to time (repeatable; default: neural, ensemble, ensemble_neural).
    #[arg(long)]
    model: Vec<String>,
    /// Also time each model built afresh at every tick (what `mom operator --scaler-model`
    /// does today: a cold fit per decision, so a receipt's window alone replays it).
    #[arg(long)]
    cold: bool,
    /// Bin length in seconds for request logs (Azure).
    #[arg(long, default_value_t = 10.0)]
    bin: f64,
}

fn run_forecast_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.agents == 0 || args.window == 0 || args.horizon == 0 {
        bail!("--agents, --window and --horizon must be ≥ 1");
    }
    let traces = collect_traces(&args.trace, args.bin)?;
    let need = args.window + args.ticks + 1;
    let usable: Vec<&Trace> = traces.iter().filter(|t| t.values.len() >= need).collect();
    if usable.is_empty() {
        bail!(
            "no trace has the {need} points --window {} and --ticks {} need",
            args.window,
            args.ticks
        );
    }
    let names: Vec<String> = if args.model.is_empty() {
        vec!["neural".into(), "ensemble".into(), "ensemble_neural".into()]
    } else {
        args.model.clone()
    };
    let models = names
        .iter()
        .map(|m| ModelKind::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    // Agent i: trace i mod T from offset (i·7919) mod (len − need + 1).
    let series: Vec<(&[f64], usize)> = (0..args.agents)
        .map(|i| {
            let y = &usable[i % usable.len()].values;
            (y.as_slice(), (i * 7919) % (y.len() - need + 1))
        })
        .collect();
    let mut results = Vec::new();
    for &kind in &models {
        for cold in [false, true] {
            if cold && !args.cold {
                continue;
            }
            let rss0 = mom::proc_status::resident_bytes();
            let mut agents: Vec<Box<dyn mom::forecast::Forecaster + Send>> =
                (0..args.agents).map(|_| kind.build()).collect();
            let mut tick_seconds = Vec::new();
            let mut sink = 0.0;
            for tick in 0..=args.ticks {
                let t0 = Instant::now();
                for (agent, &(y, off)) in agents.iter_mut().zip(&series) {
                    if cold {
                        *agent = kind.build();
                    }
                    let w = &y[off + tick..off + tick + args.window];
                    agent.fit(w).with_context(|| format!("{} fit", kind.name()))?;
                    sink += agent.forecast(args.horizon)?[args.horizon - 1];
                }
                tick_seconds.push(t0.elapsed().as_secs_f64());
            }
            let rss = match (rss0, mom::proc_status::resident_bytes()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / args.agents as f64),
                _ => None,
            };
            drop(agents);
            let first = tick_seconds[0];
            let mut rest = tick_seconds[1..].to_vec();
            rest.sort_by(f64::total_cmp);
            let median = rest.get(rest.len() / 2).copied();
            results.push(json!({
                "model": kind.name(),
                "mode": if cold { "cold" } else { "warm" },
                "first_tick_seconds": first,
                "tick_seconds_median": median,
                "tick_seconds_max": rest.last(),
                "ms_per_agent": median.map(|m| 1e3 * m / args.agents as f64),
                "rss_bytes_per_agent": rss,
                "checksum": sink,
            }));
            eprintln!("{}", results.last().map(|r| r.to_string()).unwrap_or_default());
        }
    }
    println!(
        "{}",
        json!({"agents": args.agents, "window": args.window, "ticks": args.ticks, "horizon": args.horizon, "results": results})
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Trace file (NAB CSV or Azure request log) or a directory of them; repeatable.
    #[arg(long, required = true)]
    trace: Vec<PathBuf>,
    /// Score only this horizon (default: 1, 6 and 12).
    #[arg(long)]
    horizon: Option<usize>,
    /// Sliding window (steps) the models are fitted on.
    #[arg(long, default_value_t = 2016)]
    window: usize,
    /// At most this many forecast origins per trace (evenly spread over the last two thirds).
    #[arg(long, default_value_t = 300)]
    max_origins: usize,
    /// Bin length in seconds for request logs (Azure).
    #[arg(long, default_value_t = 10.0)]
    bin: f64,
    /// Score only these models (repeatable; default: ensemble, auto, holt_winters, ridge, combo,
    /// seasonal_naive; `neural` and `ensemble_neural` only when named).
    #[arg(long)]
    model: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Show progress on stderr even when it is not a terminal (one line per tenth of the
    /// traces); on a terminal it is always shown, in place.
    #[arg(long)]
    progress: bool,
}

/// `mom simulate …`
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Trace file or directory of traces; repeatable.
    #[arg(long, required = true)]
    trace: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = PolicyArg::Predictive)]
    policy: PolicyArg,
    /// Demand one replica serves (default: the trace's 95th percentile / 10).
    #[arg(long)]
    capacity_per_replica: Option<f64>,
    #[arg(long, default_value_t = 60.0)]
    startup_seconds: f64,
    /// Bin length in seconds for request logs (Azure).
    #[arg(long, default_value_t = 10.0)]
    bin: f64,
    /// Forecaster of the predictive policy, as `mom operator --scaler-model` sets it (seasonal_naive,
    /// holt_winters, ridge, combo, auto, ensemble, neural, ensemble_neural).
    #[arg(long, default_value = "holt_winters")]
    model: String,
    /// `learned` policy: the model file `mom train scaling --out` wrote.
    #[arg(long, value_name = "FILE.json")]
    learned_model: Option<PathBuf>,
    /// `hpa` policy: target utilisation of the plain Kubernetes HPA baseline.
    #[arg(long, default_value_t = 0.8)]
    hpa_target: f64,
    /// Operator policies: seconds of demand history the scaler queries
    /// (`mom operator --scaler-history-seconds`).
    #[arg(long, default_value_t = 3600.0)]
    history_seconds: f64,
    /// Operator policies: the strategy's `scaling.horizonSeconds` (default: the operator's).
    #[arg(long)]
    horizon_seconds: Option<f64>,
    /// Operator policies: the strategy's `scaling.cooldownSeconds` (default: the operator's).
    #[arg(long)]
    cooldown_seconds: Option<f64>,
    /// Predictive: SLO target in (0, 1); sets the MPC penalty/price ratio s/(1 − s).
    #[arg(long)]
    slo_target: Option<f64>,
    /// Predictive: fraction added on top of the forecast (the strategy's `scaling.headroom`).
    #[arg(long)]
    headroom: Option<f64>,
    /// Predictive: MPC change penalty λ in replica-stages per replica changed.
    #[arg(long)]
    change_penalty: Option<f64>,
    /// Write `<trace>_<policy>.csv` and `.svg` (demand vs ready capacity) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write one SVG plot here: per trace, demand (as replicas needed) and every simulated
    /// policy's replicas over time, with axes and a legend. Checked before simulating; a path
    /// that cannot be written exits 2 naming it.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Show progress on stderr even when it is not a terminal (one line per tenth of each
    /// run); on a terminal it is always shown, in place. Never on stdout.
    #[arg(long)]
    progress: bool,
    /// `lofo`: leave-one-trace-family-out validation of the guarded predictive policy against
    /// the `hpa` baseline. A trace's family is its directory's name. For each family held out,
    /// the guard (conformal level × skill threshold, from `--lofo-levels` × `--lofo-skills`) is
    /// chosen on the other families' traces only, then the held-out traces are scored with it.
    /// Prints JSON: per trace, per family, aggregate, and the targets met or missed.
    #[arg(long, value_enum)]
    validate: Option<ValidateArg>,
    /// LOFO grid: conformal levels (comma-separated, each in (0, 1)).
    #[arg(long, value_delimiter = ',', default_values_t = [0.8, 0.9, 0.95])]
    lofo_levels: Vec<f64>,
    /// LOFO grid: forecast-skill thresholds (comma-separated, each in [-1, 1)).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0])]
    lofo_skills: Vec<f64>,
    /// LOFO grid: the guard's HPA target as a fraction of the per-replica target
    /// (comma-separated, each in (0, 1]; 1 = the strategy's own target, 0.8 = the `hpa`
    /// baseline's 80 %).
    #[arg(long, value_delimiter = ',', default_values_t = [1.0])]
    lofo_hpa_utilisations: Vec<f64>,
    /// LOFO grid: guard modes (comma-separated): `mpc` (the MPC decides when the forecast has
    /// skill) and/or `floor` (never below the HPA's decision; pre-scaled on a skilful forecast).
    #[arg(long, value_delimiter = ',', default_values = ["mpc"])]
    lofo_modes: Vec<String>,
    /// LOFO: simulations run on this many threads (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ValidateArg {
    /// Leave one trace family out.
    Lofo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// The operator's predictive policy (forecast + MPC), as its scaler runs it.
    Predictive,
    /// The operator's reactive policy (the HPA algorithm on the demand per replica).
    Reactive,
    /// The learned policy of `mom train scaling` (`--learned-model FILE`), as the scaler runs it.
    Learned,
    /// The plain Kubernetes HPA with a utilisation target (`--hpa-target`).
    Hpa,
    /// A fixed count sized for the trace's 95th percentile (hindsight).
    Static,
    /// All four (and `learned` when `--learned-model` is given), and the predictive-vs-hpa and
    /// predictive-vs-reactive comparisons.
    All,
}

fn collect_traces(paths: &[PathBuf], bin: f64) -> anyhow::Result<Vec<Trace>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files
        .iter()
        .map(|f| load_trace(f, bin).with_context(|| format!("loading {}", f.display())))
        .collect()
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

pub fn run_forecast(args: ForecastArgs) -> anyhow::Result<ExitCode> {
    let args = match args.command {
        ForecastCommand::Eval(args) => args,
        ForecastCommand::Bench(args) => return run_forecast_bench(args),
    };
    let horizons = match args.horizon {
        Some(0) => bail!("--horizon must be ≥ 1"),
        Some(h) => vec![h],
        None => vec![1, 6, 12],
    };
    let traces = collect_traces(&args.trace, args.bin)?;
    let all = [
        ModelKind::Ensemble,
        ModelKind::Auto,
        ModelKind::HoltWinters,
        ModelKind::Ridge,
        ModelKind::Combo,
        ModelKind::SeasonalNaive,
    ];
    let models: Vec<ModelKind> = if args.model.is_empty() {
        all.to_vec()
    } else {
        let mut v = args
            .model
            .iter()
            .map(|m| ModelKind::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        v.dedup();
        v
    };
    let mut rows = Vec::new();
    // mase_sum[h][model]
    let mut mase_sum = vec![vec![0.0; models.len()]; horizons.len()];
    let mut counted = vec![vec![0usize; models.len()]; horizons.len()];
    let mut progress = Progress::stderr("forecast eval", Mode::for_stderr(args.progress));
    progress.count(0, traces.len());
    for trace in &traces {
        let y = &trace.values;
        let start = y.len() / 3;
        let cfg = RollingConfig {
            horizons: horizons.clone(),
            window: args.window,
            start,
            max_origins: args.max_origins,
        };
        // Candidate seasons of the baseline: naive, daily, weekly and the detected one.
        let mut seasons = vec![1usize];
        for period in [86_400.0, 604_800.0] {
            let m = (period / trace.step_seconds).round() as usize;
            if m > 1 && m < start && (period / trace.step_seconds).fract() == 0.0 {
                seasons.push(m);
            }
        }
        if let Some(m) = detect_season(&y[..start], 2, 400, 0.3) {
            seasons.push(m);
        }
        seasons.sort_unstable();
        seasons.dedup();
        let base: Vec<(usize, Vec<f64>)> = seasons.iter().map(|&m| (m, seasonal_naive_mae(y, m, &cfg))).collect();
        let mut model_mae = Vec::new();
        for &kind in &models {
            let mut m = kind.build();
            let t0 = Instant::now();
            let mae = rolling_mae(y, m.as_mut(), &cfg).with_context(|| format!("{} on {}", kind.name(), trace.name))?;
            model_mae.push((kind, mae, t0.elapsed().as_secs_f64()));
        }
        let mut per_h = Vec::new();
        for (hi, &h) in horizons.iter().enumerate() {
            let (best_m, best_mae) = base
                .iter()
                .map(|(m, v)| (*m, v[hi]))
                .fold((1, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            let mut mm = serde_json::Map::new();
            for (mi, (kind, mae, secs)) in model_mae.iter().enumerate() {
                let mase = if best_mae > 0.0 { Some(mae[hi] / best_mae) } else { None };
                if let Some(v) = mase {
                    mase_sum[hi][mi] += v;
                    counted[hi][mi] += 1;
                }
                mm.insert(
                    kind.name().into(),
                    json!({"mae": mae[hi], "mase": mase, "seconds": secs}),
                );
            }
            per_h.push(json!({
                "horizon": h,
                "baseline": {"season": best_m, "mae": best_mae},
                "models": mm,
            }));
        }
        rows.push(json!({
            "trace": trace.name,
            "points": y.len(),
            "step_seconds": trace.step_seconds,
            "origins": mom::forecast::metrics::origins(y.len(), &cfg).len(),
            "horizons": per_h,
        }));
        progress.count(rows.len(), traces.len());
    }
    progress.finish();
    let mut summary = serde_json::Map::new();
    for (hi, &h) in horizons.iter().enumerate() {
        let mut mm = serde_json::Map::new();
        for (mi, kind) in models.iter().enumerate() {
            let n = counted[hi][mi].max(1) as f64;
            mm.insert(kind.name().into(), json!(mase_sum[hi][mi] / n));
        }
        summary.insert(format!("h{h}"), Value::Object(mm));
    }
    let out = json!({"mean_mase": summary, "traces": rows, "window": args.window});
    match args.format {
        Format::Json => println!("{out}"),
        Format::Table => {
            let short = |k: &ModelKind| match k {
                ModelKind::Ensemble => "ens",
                ModelKind::HoltWinters => "hw",
                ModelKind::SeasonalNaive => "snaive",
                ModelKind::EnsembleNeural => "ens+nn",
                ModelKind::Neural => "nn",
                other => other.name(),
            };
            let mut header = format!("{:<40} {:>3} {:>6} {:>12}", "trace", "h", "season", "base_mae");
            for k in &models {
                header.push_str(&format!(" {:>7}", short(k)));
            }
            println!("{header}");
            for r in out["traces"].as_array().into_iter().flatten() {
                for hr in r["horizons"].as_array().into_iter().flatten() {
                    let mut line = format!(
                        "{:<40} {:>3} {:>6} {:>12.4}",
                        r["trace"].as_str().unwrap_or(""),
                        hr["horizon"],
                        hr["baseline"]["season"],
                        hr["baseline"]["mae"].as_f64().unwrap_or(f64::NAN),
                    );
                    for k in &models {
                        let v = hr["models"][k.name()]["mase"].as_f64().unwrap_or(f64::NAN);
                        line.push_str(&format!(" {v:>7.3}"));
                    }
                    println!("{line}");
                }
            }
            println!("mean MASE: {}", out["mean_mase"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_one(
    trace: &Trace,
    cluster: &ClusterModel,
    policy: &PolicySpec,
    out: Option<&Path>,
    mode: Mode,
) -> anyhow::Result<(SimReport, f64)> {
    let t0 = Instant::now();
    let label = format!("{} {}", trace.name, policy.name());
    let mut progress = Progress::stderr(label.clone(), mode);
    let report = simulate_with_progress(&trace.values, cluster, policy, &mut |f| progress.fraction(f))
        .with_context(|| format!("simulating {label}"))?;
    progress.finish();
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = format!("{}_{}", trace.name, policy.name());
        let csv = dir.join(format!("{stem}.csv"));
        std::fs::write(&csv, timeline_csv(&report.timeline)).with_context(|| format!("writing {}", csv.display()))?;
        let svg = dir.join(format!("{stem}.svg"));
        let title = format!(
            "{} — {}: {:.1} SLO-violation min, {:.1} replica-h, {} actions",
            trace.name,
            policy.name(),
            report.slo_violation_minutes,
            report.replica_hours,
            report.scaling_actions
        );
        std::fs::write(&svg, timeline_svg(&report.timeline, &title))
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    Ok((report, t0.elapsed().as_secs_f64()))
}

fn report_json(trace: &Trace, r: &SimReport, secs: f64) -> Value {
    json!({
        "trace": trace.name,
        "policy": r.policy,
        "slo_violation_minutes": r.slo_violation_minutes,
        "replica_hours": r.replica_hours,
        "scaling_actions": r.scaling_actions,
        "simulated_hours": r.simulated_hours,
        "capacity_per_replica": r.cluster.capacity_per_replica,
        "startup_seconds": r.cluster.startup_seconds,
        "bin_seconds": r.cluster.bin_seconds,
        "seconds": secs,
    })
}

pub fn run_simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let model = ModelKind::parse(&args.model)?;
    if args.validate == Some(ValidateArg::Lofo) {
        return super::lofo::run(&args.trace, &lofo_options(&args, model)?);
    }
    if let Some(c) = args.capacity_per_replica
        && !(c.is_finite() && c > 0.0)
    {
        bail!("--capacity-per-replica must be > 0, got {c}");
    }
    // The plot file is created before the (long) simulation, so a bad path fails at once.
    let plot_file = match args.plot.as_deref().map(PlotFile::create).transpose() {
        Ok(file) => file,
        Err(code) => return Ok(code),
    };
    let mode = Mode::for_stderr(args.progress);
    let traces = collect_traces(&args.trace, args.bin)?;
    let policies: Vec<PolicySpec> = {
        let operator = |method: Method| {
            let mut cfg = OperatorPolicyConfig::new(method);
            let s = &mut cfg.settings;
            s.model = model;
            s.horizon_seconds = args.horizon_seconds.unwrap_or(s.horizon_seconds);
            s.cooldown_seconds = args.cooldown_seconds.unwrap_or(s.cooldown_seconds);
            s.slo_target = args.slo_target.unwrap_or(s.slo_target);
            s.headroom = args.headroom.unwrap_or(s.headroom);
            s.change_penalty = args.change_penalty.unwrap_or(s.change_penalty);
            cfg.history_seconds = args.history_seconds;
            cfg
        };
        let learned = match &args.learned_model {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --learned-model {}", path.display()))?;
                let model = mom::learned::LearnedModel::from_json(&text)
                    .with_context(|| format!("--learned-model {}", path.display()))?;
                let mut cfg = operator(Method::Learned);
                cfg.settings.learned = Some(model);
                Some(PolicySpec::Operator(cfg))
            }
            None if args.policy == PolicyArg::Learned => {
                bail!("--policy learned needs --learned-model FILE (written by `mom train scaling --out FILE`)")
            }
            None => None,
        };
        let predictive = PolicySpec::Operator(operator(Method::Predictive));
        let reactive = PolicySpec::Operator(operator(Method::Reactive));
        let hpa = PolicySpec::Hpa(HpaConfig {
            target_utilisation: args.hpa_target,
            ..HpaConfig::default()
        });
        match args.policy {
            PolicyArg::Predictive => vec![predictive],
            PolicyArg::Reactive => vec![reactive],
            PolicyArg::Hpa => vec![hpa],
            PolicyArg::Static => vec![PolicySpec::Static(None)],
            PolicyArg::Learned => learned.into_iter().collect(),
            PolicyArg::All => [
                Some(predictive),
                Some(reactive),
                learned,
                Some(hpa),
                Some(PolicySpec::Static(None)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    };
    let mut runs = Vec::new();
    let mut comparisons = Vec::new();
    // Per trace: its name, capacity per replica and every policy's report (for --plot).
    let mut plotted: Vec<(String, f64, Vec<SimReport>)> = Vec::new();
    for trace in &traces {
        let mut cluster = ClusterModel::for_trace(&trace.values, trace.step_seconds);
        cluster.startup_seconds = args.startup_seconds;
        if let Some(c) = args.capacity_per_replica {
            cluster.capacity_per_replica = c;
        }
        let mut per = Vec::new();
        for policy in &policies {
            let (r, secs) = run_one(trace, &cluster, policy, args.out.as_deref(), mode)?;
            runs.push(report_json(trace, &r, secs));
            per.push(r);
        }
        for baseline in ["hpa", "reactive"] {
            if let (Some(p), Some(h)) = (
                per.iter().find(|r| r.policy == "predictive"),
                per.iter().find(|r| r.policy == baseline),
            ) {
                let reduction = if h.slo_violation_minutes > 0.0 {
                    Some(1.0 - p.slo_violation_minutes / h.slo_violation_minutes)
                } else {
                    None
                };
                comparisons.push(json!({
                    "trace": trace.name,
                    "baseline": baseline,
                    "violation_reduction": reduction,
                    "replica_hours_ratio": p.replica_hours / h.replica_hours.max(1e-12),
                    "meets_target": p.replica_hours <= h.replica_hours
                        && p.slo_violation_minutes <= 0.5 * h.slo_violation_minutes,
                }));
            }
        }
        if plot_file.is_some() {
            plotted.push((trace.name.clone(), cluster.capacity_per_replica, per));
        }
    }
    if let Some(plot) = plot_file {
        let panels: Vec<Panel<'_>> = plotted
            .iter()
            .map(|(name, capacity, reports)| Panel {
                title: name.clone(),
                capacity_per_replica: *capacity,
                policies: reports
                    .iter()
                    .map(|r| (r.policy.clone(), r.timeline.as_slice()))
                    .collect(),
            })
            .collect();
        if let Err(code) = plot.finish(&policies_svg(&panels)) {
            return Ok(code);
        }
    }
    let out = if runs.len() == 1 {
        runs[0].clone()
    } else {
        let total = |pol: &str, field: &str| -> f64 {
            runs.iter()
                .filter(|r| r["policy"] == pol)
                .map(|r| r[field].as_f64().unwrap_or(0.0))
                .sum()
        };
        let mut totals = serde_json::Map::new();
        for pol in ["predictive", "reactive", "learned", "hpa", "static"] {
            if runs.iter().any(|r| r["policy"] == pol) {
                totals.insert(
                    pol.into(),
                    json!({
                        "slo_violation_minutes": total(pol, "slo_violation_minutes"),
                        "replica_hours": total(pol, "replica_hours"),
                        "scaling_actions": total(pol, "scaling_actions"),
                    }),
                );
            }
        }
        json!({"runs": runs, "comparison": comparisons, "totals": totals})
    };
    match args.format {
        Format::Json => println!("{out}"),
        Format::Table => {
            println!(
                "{:<45} {:<11} {:>12} {:>12} {:>8}",
                "trace", "policy", "slo_viol_min", "replica_h", "actions"
            );
            for r in &runs {
                println!(
                    "{:<45} {:<11} {:>12.2} {:>12.2} {:>8}",
                    r["trace"].as_str().unwrap_or(""),
                    r["policy"].as_str().unwrap_or(""),
                    r["slo_violation_minutes"].as_f64().unwrap_or(f64::NAN),
                    r["replica_hours"].as_f64().unwrap_or(f64::NAN),
                    r["scaling_actions"]
                );
            }
            for c in &comparisons {
                println!("{c}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lofo_options(args: &SimulateArgs, model: ModelKind) -> anyhow::Result<super::lofo::Options> {
    if args.lofo_levels.is_empty() || args.lofo_skills.is_empty() {
        bail!("--lofo-levels and --lofo-skills need at least one value each");
    }
    let mut settings = OperatorPolicyConfig::new(Method::Predictive);
    let s = &mut settings.settings;
    s.model = model;
    s.horizon_seconds = args.horizon_seconds.unwrap_or(s.horizon_seconds);
    s.cooldown_seconds = args.cooldown_seconds.unwrap_or(s.cooldown_seconds);
    s.slo_target = args.slo_target.unwrap_or(s.slo_target);
    s.change_penalty = args.change_penalty.unwrap_or(s.change_penalty);
    settings.history_seconds = args.history_seconds;
    let mut grid = Vec::new();
    let mut modes = Vec::new();
    for m in &args.lofo_modes {
        match m.as_str() {
            "mpc" => modes.push(false),
            "floor" => modes.push(true),
            other => bail!("--lofo-modes: unknown mode {other:?} (mpc, floor)"),
        }
    }
    if args.lofo_hpa_utilisations.is_empty() || modes.is_empty() {
        bail!("--lofo-hpa-utilisations and --lofo-modes need at least one value each");
    }
    for &hpa_floor in &modes {
        for &hpa_utilisation in &args.lofo_hpa_utilisations {
            for &conformal_level in &args.lofo_levels {
                for &skill_threshold in &args.lofo_skills {
                    let guard = mom::scaling_policy::Guard {
                        conformal_level,
                        skill_threshold,
                        hpa_utilisation,
                        hpa_floor,
                    };
                    let mut check = settings.settings.clone();
                    check.guard = Some(guard);
                    check.validate()?;
                    grid.push(guard);
                }
            }
        }
    }
    Ok(super::lofo::Options {
        base: settings,
        grid,
        hpa: HpaConfig {
            target_utilisation: args.hpa_target,
            ..HpaConfig::default()
        },
        bin: args.bin,
        startup_seconds: args.startup_seconds,
        capacity_per_replica: args.capacity_per_replica,
        jobs: args.jobs.max(1),
    })
}
