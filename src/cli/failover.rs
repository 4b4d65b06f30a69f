//! `mom failover plan`: one failover planning pass offline, from a JSON snapshot of failure
//! domains and agents; prints each domain's model, the policy table and each agent's action.
//!
//! Bad input (missing or unreadable file, invalid JSON, unknown field, invalid values) is an
//! error naming the file and the field, with exit code 2; a missing or degenerate transition
//! model is not an error but a fallback reported in the output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use mom::failover_mdp::{self, Report, Snapshot};

/// Exit code for input that cannot be planned (like clap's own usage errors).
const BAD_INPUT: u8 = 2;

/// Largest snapshot read (real snapshots are kilobytes).
const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

const SNAPSHOT_SCHEMA: &str = "\
SNAPSHOT (JSON; snake_case; unknown fields are errors; of the top-level fields only `domains` is
required; a domain needs `name`, `kind` and `observation` or `state`; an agent `name` and `domain`):
  {
    \"domains\": [{
      \"name\": \"zone-a\", \"kind\": \"node\" | \"rack\" | \"zone\" | \"region\",
      // exactly one of:
      \"observation\": {\"heartbeat_lag_seconds\": 2.0, \"ready\": true,
                      \"anomaly\": false, \"restarts\": 0, \"evictions\": 0},
      \"state\": \"healthy\" | \"degraded\" | \"suspect\" | \"failed\",
      // the transition model, either estimated from
      \"history\": [[\"healthy\", \"degraded\", \"suspect\", \"failed\", ...], ...],
      \"counts\": {\"counts\": [[n_hh, n_hd, n_hs, n_hf], ...4 rows]},   // persisted, added to history
      // or given as is (rows healthy..failed, each summing to 1):
      \"transitions\": [[p_hh, p_hd, p_hs, p_hf], ...4 rows]
    }],
    \"agents\": [{\"name\": \"shop/cart\", \"domain\": \"zone-a\", \"standby\": false}],
    \"weights\": {\"slo_risk\": 10, \"migration\": 1, \"spare_capacity\": 0.2},
    \"costs\": {\"severity\": {\"healthy\": 0, \"degraded\": 0.02, \"suspect\": 0.1, \"failed\": 1},
              \"effort\": {\"stay\": 0, \"add_standby\": 0.3, \"drain_gradually\": 1,
                         \"evacuate_now\": 1, \"fail_over\": 0.2, \"release_standby\": 0},
              \"drain_exposure\": 0.5, \"evacuation_disruption\": 0.2, \"failover_disruption\": 0.05},
    \"solver\": {\"discount\": 0.9, \"tolerance\": 1e-6, \"max_iterations\": 10000},  // γ in [0,1); 1..1000000
    \"thresholds\": {\"degraded_lag_seconds\": 10, \"suspect_lag_seconds\": 20,
                   \"failed_lag_seconds\": 40, \"degraded_restarts\": 3, \"suspect_restarts\": 10,
                   \"degraded_evictions\": 1, \"suspect_evictions\": 5},
    \"estimation\": {\"prior_pseudo_count\": 1, \"min_transitions\": 10}
  }
  (the values shown for weights, costs, solver, thresholds and estimation are the defaults;
  the output's per-domain `counts` are history plus restored counts: persist them and pass only
  newer sequences as `history` next time)

OUTPUT (--format json): {\"domains\": [{\"domain\", \"kind\", \"state\", \"counts\",
  \"observed_transitions\", \"transitions\", \"iterations\", \"residual\", \"fallback\"}],
  \"fleet_transitions\", \"policy\": [{\"domain\", \"location\", \"health\", \"standby\", \"action\",
  \"value\"}], \"agents\": [{\"agent\", \"domain\", \"state\", \"standby\", \"action\",
  \"expected_value\", \"fallback\"}], \"fallback\": null | \"reason\"}
  Values are expected discounted rewards (minus costs): closer to 0 is better. A domain with no
  or too little history (`min_transitions`), a given matrix that is not stochastic, or no
  convergence within `max_iterations`, uses the conservative rule (healthy: stay, or
  release_standby with one; degraded: stay; suspect: add_standby, or stay with one; failed: fail_over with a standby, else evacuate_now);
  its values are null and `fallback` says why.

EXIT CODES: 0 planned (with or without fallback); 2 bad input.";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Plan failover actions per agent from a snapshot (value iteration over domain health).
    #[command(after_long_help = SNAPSHOT_SCHEMA)]
    Plan(PlanArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Snapshot JSON (domains, agents, weights…; schema in `mom failover plan --help`).
    #[arg(long)]
    snapshot: PathBuf,
    /// `json` prints the report as one JSON object (deterministic); `table` for people.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan(args) => run_plan(args),
    }
}

fn read_snapshot(path: &Path) -> anyhow::Result<Snapshot> {
    let text = mom::bounded_input::read_to_string(path, MAX_SNAPSHOT_BYTES)
        .with_context(|| format!("reading snapshot file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing snapshot file {}", path.display()))
}

fn run_plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let planned = read_snapshot(&args.snapshot).and_then(|snapshot| {
        failover_mdp::plan(&snapshot).with_context(|| format!("invalid snapshot file {}", args.snapshot.display()))
    });
    let report = match planned {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err:#}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Table => print_table(&report, elapsed_ms),
    }
    Ok(ExitCode::SUCCESS)
}

fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

fn print_table(r: &Report, elapsed_ms: f64) {
    println!(
        "{:<20} {:<7} {:<9} {:>11} {:>10}  FALLBACK",
        "DOMAIN", "KIND", "STATE", "TRANSITIONS", "ITERATIONS"
    );
    for d in &r.domains {
        println!(
            "{:<20} {:<7} {:<9} {:>11} {:>10}  {}",
            d.domain,
            format!("{:?}", d.kind).to_lowercase(),
            d.state.as_str(),
            d.observed_transitions,
            d.iterations.map_or_else(|| "-".to_string(), |i| i.to_string()),
            d.fallback.as_deref().unwrap_or("-")
        );
    }
    println!();
    println!(
        "{:<20} {:<8} {:<9} {:<7} {:<16} {:>10}",
        "POLICY DOMAIN", "LOCATION", "HEALTH", "STANDBY", "ACTION", "VALUE"
    );
    for p in &r.policy {
        println!(
            "{:<20} {:<8} {:<9} {:<7} {:<16} {:>10}",
            p.domain,
            format!("{:?}", p.location).to_lowercase(),
            p.health.as_str(),
            p.standby,
            p.action.as_str(),
            value(p.value)
        );
    }
    println!();
    println!(
        "{:<28} {:<20} {:<9} {:<7} {:<16} {:>14}",
        "AGENT", "DOMAIN", "STATE", "STANDBY", "ACTION", "EXPECTED_VALUE"
    );
    for a in &r.agents {
        println!(
            "{:<28} {:<20} {:<9} {:<7} {:<16} {:>14}",
            a.agent,
            a.domain,
            a.state.as_str(),
            a.standby,
            a.action.as_str(),
            value(a.expected_value)
        );
    }
    println!();
    println!("fallback: {}", r.fallback.as_deref().unwrap_or("none"));
    println!("planned in {elapsed_ms:.2} ms");
}
