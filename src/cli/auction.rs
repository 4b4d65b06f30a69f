//! `mom auction`: runs one capacity auction offline from JSON files and prints the outcome.
//!
//! Input: `--bids FILE` (a JSON array of bids, or `{"bids": [...]}`) and `--capacity FILE`
//! (a JSON array of nodes, or `{"nodes": [...]}`); see `manifests/examples/auction/`.
//! Output: allocation per agent and node, Clarke payments, welfare, revenue, baseline welfare,
//! Shapley cost shares and the solve time — one JSON object with `--format json`, else a table.
//! As in the operator's auction, capacity the winners leave goes to replicas bid at 0 (no
//! charge) unless `--no-fill`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use mom::auction::{AuctionInput, AuctionOutcome, Bid, NodeCapacity, ShapleyConfig, SolverChoice};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Solver {
    /// Fast structured path when exact, integer program otherwise.
    Auto,
    /// Fast path only (fails when requests differ between bids).
    Fast,
    /// Always the integer program (reference).
    Mip,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON file with the bids.
    #[arg(long)]
    bids: PathBuf,
    /// JSON file with the node capacities.
    #[arg(long)]
    capacity: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Winner-determination path.
    #[arg(long, value_enum, default_value = "auto")]
    solver: Solver,
    /// Permutations for sampled Shapley values (more than 12 tenants).
    #[arg(long, default_value_t = ShapleyConfig::default().samples)]
    shapley_samples: u32,
    /// Seed of the Shapley permutation sampler.
    #[arg(long, default_value_t = 0)]
    shapley_seed: u64,
    /// Refuse to run the integer program with more integer variables than this.
    #[arg(long)]
    mip_max_integer_variables: Option<u64>,
    /// Leave the capacity the winners did not take empty instead of giving it to replicas bid
    /// at 0 (the operator's auction gives it; see `mom::auction::fill_unvalued`).
    #[arg(long)]
    no_fill: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BidsFile {
    List(Vec<Bid>),
    Object { bids: Vec<Bid> },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CapacityFile {
    List(Vec<NodeCapacity>),
    Object { nodes: Vec<NodeCapacity> },
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    outcome: &'a AuctionOutcome,
    solve_time_ms: f64,
}

/// Largest bids or capacity file read (100,000 bids of 1,000 values are ~1 GB of JSON; real
/// inputs are kilobytes).
const MAX_INPUT_BYTES: u64 = 64 << 20;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("reading {what} file {}", path.display()))?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        anyhow::bail!("{what} file {} is larger than {MAX_INPUT_BYTES} bytes", path.display());
    }
    serde_json::from_str(&text).with_context(|| format!("parsing {what} file {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bids = match read_json::<BidsFile>(&args.bids, "bids")? {
        BidsFile::List(b) | BidsFile::Object { bids: b } => b,
    };
    let nodes = match read_json::<CapacityFile>(&args.capacity, "capacity")? {
        CapacityFile::List(n) | CapacityFile::Object { nodes: n } => n,
    };
    let solver = match args.solver {
        Solver::Auto => SolverChoice::Auto,
        Solver::Fast => SolverChoice::Fast,
        Solver::Mip => SolverChoice::Mip,
    };
    let input = AuctionInput {
        bids,
        nodes,
        solver,
        shapley: ShapleyConfig {
            samples: args.shapley_samples,
            seed: args.shapley_seed,
        },
        mip_max_integer_variables: args.mip_max_integer_variables,
        fill_unvalued: !args.no_fill,
    };
    let started = Instant::now();
    let outcome = mom::auction::run(&input)?;
    let solve_time_ms = started.elapsed().as_secs_f64() * 1e3;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string(&Report {
                outcome: &outcome,
                solve_time_ms
            })?
        ),
        Format::Table => print_table(&outcome, solve_time_ms),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(o: &AuctionOutcome, solve_time_ms: f64) {
    println!(
        "{:<24} {:<16} {:>8} {:>12} {:>12} {:>12}  nodes",
        "AGENT", "TENANT", "REPLICAS", "VALUE", "PAYMENT", "UTILITY"
    );
    for a in &o.allocations {
        let nodes: Vec<String> = a.nodes.iter().map(|(n, c)| format!("{n}={c}")).collect();
        println!(
            "{:<24} {:<16} {:>8} {:>12.4} {:>12.4} {:>12.4}  {}",
            a.agent,
            a.tenant,
            a.replicas,
            a.value,
            a.payment,
            a.utility,
            nodes.join(",")
        );
    }
    println!();
    println!("solver:                    {:?}", o.solver);
    println!("welfare (VCG):             {:.4}", o.welfare);
    println!("welfare (proportional):    {:.4}", o.baselines.proportional_share);
    println!("welfare (DRF):             {:.4}", o.baselines.drf);
    println!("revenue:                   {:.4}", o.revenue);
    println!("solve time:                {solve_time_ms:.3} ms");
    println!();
    println!("pool cost {:.4}, Shapley shares ({:?}):", o.pool_cost, o.shapley_method);
    for t in &o.tenant_costs {
        println!("  {:<24} {:>12.4}", t.tenant, t.shapley_cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/examples/auction")
            .join(name)
    }

    fn input(bids: &str) -> anyhow::Result<AuctionInput> {
        let bids = match read_json::<BidsFile>(&example(bids), "bids")? {
            BidsFile::List(b) | BidsFile::Object { bids: b } => b,
        };
        let nodes = match read_json::<CapacityFile>(&example("capacity.json"), "capacity")? {
            CapacityFile::List(n) | CapacityFile::Object { nodes: n } => n,
        };
        Ok(AuctionInput {
            bids,
            nodes,
            solver: SolverChoice::Auto,
            shapley: ShapleyConfig::default(),
            mip_max_integer_variables: None,
            fill_unvalued: true,
        })
    }

    #[test]
    fn the_example_files_run_and_the_mixed_one_needs_the_mip() {
        let mixed = mom::auction::run(&input("bids.json").unwrap()).unwrap();
        assert_eq!(mixed.solver, mom::auction::SolverUsed::Mip);
        let uniform = mom::auction::run(&input("bids-uniform.json").unwrap()).unwrap();
        assert_eq!(uniform.solver, mom::auction::SolverUsed::FastHomogeneous);
    }

    #[test]
    fn the_invalid_example_is_rejected_naming_both_bad_fields() {
        let err = mom::auction::run(&input("bids-invalid.json").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bids[0].marginal_values[1]"), "{err}");
        assert!(err.contains("bids[1].marginal_values[0]: -1 is negative"), "{err}");
    }

    #[test]
    fn a_missing_file_is_reported_with_its_path() {
        let err = read_json::<BidsFile>(&example("no-such.json"), "bids").unwrap_err();
        assert!(format!("{err:#}").contains("reading bids file") && format!("{err:#}").contains("no-such.json"));
    }
}
