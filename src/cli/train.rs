//! `mom train scaling`: trains the learned scaling policy by PPO in the simulator, and
//! `--validate lofo` scores it the only honest way: per trace family held out, a model trained
//! on the other families only, against the plain HPA on the held-out traces.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::lofo::{
    Score, choose, collect_trace_files, dominated, family_of, sum, summary, trace_target_met, violation_reduction,
    within_budget,
};
use mom::forecast::trace::{Trace, load_trace};
use mom::hpa::HpaConfig;
use mom::learned::LearnedModel;
use mom::learned::ppo::{IterationStats, TrainConfig, TrainingTrace, train};
use mom::scaling_policy::Method;
use mom::simulator::{ClusterModel, OperatorPolicyConfig, PolicySpec, simulate};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the learned scaling policy (PPO in the simulator) on traces; write the model JSON.
    Scaling(ScalingArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateArg {
    /// Leave one trace family (directory) out: train on the others, score it against the HPA.
    Lofo,
}

/// `mom train scaling …`
#[derive(Debug, Args)]
pub struct ScalingArgs {
    /// Trace file or directory of traces; repeatable. A trace's family is its directory.
    #[arg(long, required = true)]
    trace: Vec<PathBuf>,
    /// Seed of the initial weights, the segments drawn and the actions sampled.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PPO iterations.
    #[arg(long, default_value_t = 40)]
    iterations: u32,
    /// Segments simulated per iteration.
    #[arg(long, default_value_t = 8)]
    segments: usize,
    /// Hours per segment (a trace shorter than that is used whole).
    #[arg(long, default_value_t = 24.0)]
    segment_hours: f64,
    /// Replica-hours one SLO-violation minute costs in the reward. With `--validate lofo` a
    /// comma-separated list is a grid: per held-out family, one model per value is trained on
    /// the other families, and the value whose model scores best on those same training traces
    /// (most per-trace targets met, then the aggregate target, fewest violation minutes, fewest
    /// replica-hours, list order) is the one the held-out family is scored with.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0])]
    violation_minute_cost: Vec<f64>,
    /// Take the violation-minute cost from a MomConfig's objectives instead: their JSON, as
    /// `kubectl get momconfig default -o jsonpath='{.spec.objectives}'` prints it. The cost is
    /// (performance + reliability) / (cost + sustainability), and the objectives are kept in
    /// the model's provenance.
    #[arg(long, conflicts_with = "violation_minute_cost")]
    objectives: Option<String>,
    /// Replica-hours one scaling action (a change of the replica count) costs in the reward;
    /// 0 leaves changes free.
    #[arg(long, default_value_t = 0.0)]
    change_cost: f64,
    /// Seconds from request to ready in the simulated cluster.
    #[arg(long, default_value_t = 60.0)]
    startup_seconds: f64,
    /// Bin length in seconds for request logs (Azure).
    #[arg(long, default_value_t = 10.0)]
    bin: f64,
    /// Threads (the model does not depend on it).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Write the trained model here (JSON; `mom simulate --policy learned --learned-model FILE`).
    #[arg(long, required_unless_present = "validate")]
    out: Option<PathBuf>,
    /// `lofo`: per family held out, train on the other families only and score the held-out
    /// traces against the HPA (`--hpa-target`); prints JSON per trace, per family, aggregate.
    #[arg(long, value_enum)]
    validate: Option<ValidateArg>,
    /// LOFO: write each held-out family's model here as `<family>.json`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// LOFO: the HPA baseline's target utilisation.
    #[arg(long, default_value_t = 0.8)]
    hpa_target: f64,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Scaling(args) = command;
    if !(args.segment_hours.is_finite() && args.segment_hours > 0.0) {
        bail!("--segment-hours must be > 0, got {}", args.segment_hours);
    }
    let files = collect_trace_files(&args.trace)?;
    if files.is_empty() {
        bail!("--trace: no .csv traces under {:?}", args.trace);
    }
    let traces: Vec<(String, TrainingTrace)> = files
        .iter()
        .map(|f| {
            let t = load_trace(f, args.bin).with_context(|| format!("loading {}", f.display()))?;
            Ok((family_of(f), training_trace(t, args.startup_seconds)))
        })
        .collect::<anyhow::Result<_>>()?;
    if args.violation_minute_cost.is_empty() || (args.validate.is_none() && args.violation_minute_cost.len() > 1) {
        bail!("--violation-minute-cost takes one value (a list only with --validate lofo)");
    }
    let objectives = args.objectives.as_deref().map(parse_objectives).transpose()?;
    let violation_minute_cost = match &objectives {
        Some(o) => mom::learned::violation_minute_cost(o).context("--objectives")?,
        None => args.violation_minute_cost[0],
    };
    if let Some(o) = &objectives {
        eprintln!(
            "train: --objectives performance {} cost {} reliability {} sustainability {}: a violation minute costs {violation_minute_cost:.3} replica-hours",
            o.performance, o.cost, o.reliability, o.sustainability
        );
    }
    let cfg = TrainConfig {
        seed: args.seed,
        iterations: args.iterations,
        segments: args.segments,
        segment_seconds: args.segment_hours * 3600.0,
        violation_minute_cost,
        change_cost: args.change_cost,
        objectives,
        threads: args.jobs.max(1),
        ..TrainConfig::default()
    };
    match args.validate {
        None => {
            let out = args.out.as_deref().context("--out is required")?;
            let all: Vec<TrainingTrace> = traces.into_iter().map(|(_, t)| t).collect();
            let model = fit(&all, &cfg, "all")?;
            write_model(out, &model)?;
            eprintln!("train: wrote {} ({})", out.display(), model.digest());
            Ok(ExitCode::SUCCESS)
        }
        Some(ValidateArg::Lofo) => lofo(&traces, &cfg, &args),
    }
}

/// `--objectives`: a MomConfig's `spec.objectives` as JSON (every field required, no others).
fn parse_objectives(text: &str) -> anyhow::Result<mom::placement::Objectives> {
    const FIELDS: [&str; 4] = ["performance", "cost", "reliability", "sustainability"];
    let shape = || {
        format!(
            "--objectives: {text:?} is not the JSON of spec.objectives ({})",
            FIELDS.join(", ")
        )
    };
    let value: serde_json::Value = serde_json::from_str(text).with_context(shape)?;
    if let Some(unknown) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str())))
    {
        bail!("{}: unknown field `{unknown}`", shape());
    }
    serde_json::from_value(value).with_context(shape)
}

fn training_trace(t: Trace, startup_seconds: f64) -> TrainingTrace {
    let mut cluster = ClusterModel::for_trace(&t.values, t.step_seconds);
    cluster.startup_seconds = startup_seconds;
    TrainingTrace {
        name: t.name,
        values: t.values,
        cluster,
    }
}

fn fit(traces: &[TrainingTrace], cfg: &TrainConfig, label: &str) -> anyhow::Result<LearnedModel> {
    let started = std::time::Instant::now();
    let (model, _) = train(traces, cfg, &mut |s: &IterationStats| {
        eprintln!(
            "train {label}: iteration {}/{}: reward {:.3}/sync, {:.1} violation min, {:.1} replica-h, {} changes, mean headroom {:.2} ({:.0} s)",
            s.iteration + 1,
            cfg.iterations,
            s.mean_reward,
            s.violation_minutes,
            s.replica_hours,
            s.changes,
            s.mean_headroom,
            started.elapsed().as_secs_f64()
        );
    })?;
    Ok(model)
}

fn write_model(path: &Path, model: &LearnedModel) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(model)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The learned policy with `model` as the simulator runs the operator's scaler.
pub fn learned_policy(model: LearnedModel) -> PolicySpec {
    let mut cfg = OperatorPolicyConfig::new(Method::Learned);
    cfg.settings.learned = Some(model);
    PolicySpec::Operator(cfg)
}

fn lofo(traces: &[(String, TrainingTrace)], cfg: &TrainConfig, args: &ScalingArgs) -> anyhow::Result<ExitCode> {
    let mut families: Vec<String> = traces.iter().map(|(f, _)| f.clone()).collect();
    families.sort();
    families.dedup();
    if families.len() < 2 {
        bail!(
            "--validate lofo needs traces of at least two families (directories), got {}",
            families.len()
        );
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let hpa_policy = PolicySpec::Hpa(HpaConfig {
        target_utilisation: args.hpa_target,
        ..HpaConfig::default()
    });
    let score = |t: usize, policy: &PolicySpec, what: &str| -> anyhow::Result<Score> {
        let tr = &traces[t].1;
        let r = simulate(&tr.values, &tr.cluster, policy).with_context(|| format!("simulating {}", tr.name))?;
        let s = Score::from(&r);
        eprintln!(
            "lofo: {} {what}: {:.1} violation min, {:.1} replica-h, {} actions",
            tr.name, s.violation_minutes, s.replica_hours, s.actions
        );
        Ok(s)
    };
    let all: Vec<usize> = (0..traces.len()).collect();
    let hpa: Vec<Score> = run_jobs(&all, args.jobs, |&t| score(t, &hpa_policy, "hpa"))?;
    // With --objectives, the one cost they give (no grid).
    let from_objectives = [cfg.violation_minute_cost];
    let costs: &[f64] = if cfg.objectives.is_some() {
        &from_objectives
    } else {
        &args.violation_minute_cost
    };
    let mut learned: Vec<Option<Score>> = vec![None; traces.len()];
    let mut family_rows = Vec::new();
    for fam in &families {
        let train: Vec<usize> = all.iter().copied().filter(|&t| &traces[t].0 != fam).collect();
        let held: Vec<usize> = all.iter().copied().filter(|&t| &traces[t].0 == fam).collect();
        let train_on: Vec<TrainingTrace> = train.iter().map(|&t| traces[t].1.clone()).collect();
        // One model per cost; with several, each is scored on the training traces (never on
        // the held-out ones) and the best there is kept.
        let mut models = Vec::new();
        let mut on_training: Vec<Vec<Score>> = Vec::new();
        for &c in costs {
            let cfg = TrainConfig {
                violation_minute_cost: c,
                ..cfg.clone()
            };
            let model = fit(&train_on, &cfg, &format!("{fam} c={c}"))?;
            if costs.len() > 1 {
                let policy = learned_policy(model.clone());
                let what = format!("learned c={c} (training)");
                let scores = run_jobs(&train, args.jobs, |&t| score(t, &policy, &what))?;
                // Held-out entries stay the HPA's: `choose` reads the training ones only.
                let mut row = hpa.clone();
                for (&t, s) in train.iter().zip(scores) {
                    row[t] = s;
                }
                on_training.push(row);
            }
            models.push(model);
        }
        let chosen = if costs.len() > 1 {
            choose(&train, &hpa, &on_training)
        } else {
            0
        };
        let model = models.swap_remove(chosen);
        if let Some(dir) = &args.out_dir {
            write_model(&dir.join(format!("{fam}.json")), &model)?;
        }
        let policy = learned_policy(model.clone());
        for (&t, s) in held
            .iter()
            .zip(run_jobs(&held, args.jobs, |&t| score(t, &policy, "learned"))?)
        {
            learned[t] = Some(s);
        }
        let p = sum(held.iter().filter_map(|&t| learned[t].as_ref()));
        let h = sum(held.iter().map(|&t| &hpa[t]));
        let every_cost: Vec<_> = on_training
            .iter()
            .zip(costs)
            .map(|(row, c)| {
                let met = train.iter().filter(|&&t| trace_target_met(&row[t], &hpa[t])).count();
                json!({
                    "violation_minute_cost": c,
                    "training_traces_meeting_target": met,
                    "learned": sum(train.iter().map(|&t| &row[t])).json(),
                    "hpa": sum(train.iter().map(|&t| &hpa[t])).json(),
                })
            })
            .collect();
        family_rows.push(json!({
            "family": fam,
            "held_out_traces": held.iter().map(|&t| traces[t].1.name.clone()).collect::<Vec<_>>(),
            "trained_on_traces": train_on.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "violation_minute_cost": costs[chosen],
            "on_training_traces": every_cost,
            "model": model.digest(),
            "learned": p.json(),
            "hpa": h.json(),
        }));
    }
    let learned: Vec<Score> = learned
        .into_iter()
        .map(|s| s.context("a trace was not scored"))
        .collect::<anyhow::Result<_>>()?;
    let mut rows = Vec::new();
    let mut met = 0;
    for (t, (fam, tr)) in traces.iter().enumerate() {
        let (p, h) = (&learned[t], &hpa[t]);
        let ok = trace_target_met(p, h);
        met += usize::from(ok);
        rows.push(json!({
            "trace": tr.name,
            "family": fam,
            "learned": p.json(),
            "hpa": h.json(),
            "violation_reduction": violation_reduction(p, h),
            "replica_hours_ratio": p.replica_hours / h.replica_hours.max(1e-12),
            "dominated_by_hpa": dominated(p, h),
            "within_replica_budget": within_budget(p, h),
            "target_met": ok,
        }));
    }
    let p = sum(learned.iter());
    let h = sum(hpa.iter());
    let (aggregate, targets) = summary("learned", &p, &h, met, traces.len());
    let out = json!({
        "protocol": "leave-one-family-out: per held-out family a model is trained (PPO, same seed and settings) per violation-minute cost on the other families' traces only; with several costs the one whose model scores best on those training traces is kept (most per-trace targets met, aggregate target, fewest violation minutes, fewest replica-hours, list order); the held-out traces are scored with it against the HPA",
        "settings": {
            "seed": cfg.seed,
            "iterations": cfg.iterations,
            "segments": cfg.segments,
            "segment_seconds": cfg.segment_seconds,
            "violation_minute_costs": costs,
            "change_cost": cfg.change_cost,
            "hpa_target": args.hpa_target,
        },
        "families": family_rows,
        "traces": rows,
        "aggregate": aggregate,
        "targets": targets,
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` on every job on `threads` threads; results in job order.
fn run_jobs<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    f: impl Fn(&J) -> anyhow::Result<R> + Sync,
) -> anyhow::Result<Vec<R>> {
    let results: Mutex<Vec<Option<anyhow::Result<R>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let r = f(job);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a simulation thread panicked"))?
        .into_iter()
        .map(|r| r.context("a job did not run")?)
        .collect()
}
