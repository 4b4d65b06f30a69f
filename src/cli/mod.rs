//! Command-line entry: parses arguments and dispatches to one module per area.
//!
//! Each area keeps its subcommand in its own file (`cli/<area>.rs`) with an `Args` type and a
//! `run` function; this file only lists them. `anyhow` is used here, at the binary's edge.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod anomaly;
mod auction;
mod cluster;
#[cfg(feature = "operator")]
mod crdgen;
mod deschedule;
mod exporter;
mod failover;
mod geometry;
mod kube_target;
#[cfg(feature = "operator")]
mod kubectl;
mod lofo;
#[cfg(feature = "operator")]
mod operator;
mod plot_file;
mod progress;
mod rca;
mod receipts;
mod report;
#[cfg(feature = "operator")]
mod rollback;
mod scaling;
mod train;
mod verify;
mod verify_args;
mod verify_tenant;
mod whatif;

/// MOM — hyperbolic placement, predictive scaling and verifiable receipts for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "mom", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this build.
    Version,
    /// Synthetic clusters for tests and demos (kwok nodes).
    #[command(subcommand)]
    Cluster(cluster::Command),
    /// Embed latencies or a topology hierarchy in hyperbolic space and report the errors.
    Embed(geometry::EmbedArgs),
    /// Evaluate greedy routing over embedded graphs.
    Route(geometry::RouteArgs),
    /// Forecast accuracy on traces (MAE, MASE against the best seasonal-naive).
    Forecast(scaling::ForecastArgs),
    /// Replay traces through the autoscaling simulator (predictive, reactive, learned, hpa, static).
    Simulate(scaling::SimulateArgs),
    /// Train the learned scaling policy in the simulator (PPO).
    #[command(subcommand)]
    Train(train::Command),
    /// Streaming anomaly detection on metric series, scored with NAB's rules.
    Anomaly(anomaly::Args),
    /// Root cause on the topology: name the failure domain behind anomalies (offline, or the live cluster's flags).
    Rca(rca::Args),
    /// Run one capacity auction (VCG) offline from JSON bids and capacities.
    Auction(auction::Args),
    /// What-if on the cluster twin: counterfactual runs, the Pareto frontier, snapshots.
    Whatif(whatif::Args),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD with `--out-dir`.
    #[cfg(feature = "operator")]
    Crdgen(crdgen::Args),
    /// Run the operator: controllers, leader election, metrics and health endpoints.
    #[cfg(feature = "operator")]
    Operator(Box<operator::Args>),
    /// Verify an exported receipt chain offline: hashes, links, signatures, checkpoints, replay.
    Verify(verify::Args),
    /// Receipt tools: key generation, a demo chain, retention pruning.
    Receipts(receipts::Args),
    /// Serve a trace as a Prometheus gauge, time-compressed (scaling tests and demos).
    #[command(subcommand)]
    Exporter(exporter::Command),
    /// Reports built from receipts (per-tenant costs).
    #[command(subcommand)]
    Report(report::Command),
    /// Descheduling plans: offline from a snapshot, or a benchmark on a synthetic cluster.
    #[command(subcommand)]
    Deschedule(deschedule::Command),
    /// Failover decisions from domain health: value iteration offline from a snapshot.
    #[command(subcommand)]
    Failover(failover::Command),
    /// Put a GeometricAgent back to the spec a signed `agent.change` receipt recorded.
    #[cfg(feature = "operator")]
    Rollback(rollback::Args),
    /// The kubectl plugin (`kubectl mom`: status, why, verify, top); the same as running this
    /// binary under the name `kubectl-mom`.
    #[cfg(feature = "operator")]
    Kubectl(kubectl::Args),
}

pub fn main() -> ExitCode {
    // Installed (or symlinked) as `kubectl-mom`, kubectl runs it as the plugin `kubectl mom`.
    #[cfg(feature = "operator")]
    if std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|name| name == "kubectl-mom")
    {
        return kubectl::plugin_main();
    }
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Version => {
            println!("mom {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cluster(command) => cluster::run(command),
        Command::Embed(args) => geometry::run_embed(args),
        Command::Route(args) => geometry::run_route(args),
        Command::Forecast(args) => scaling::run_forecast(args),
        Command::Simulate(args) => scaling::run_simulate(args),
        Command::Train(command) => train::run(command),
        Command::Anomaly(args) => anomaly::run(args),
        Command::Rca(args) => rca::run(args),
        Command::Auction(args) => auction::run(args),
        Command::Whatif(args) => whatif::run(args),
        #[cfg(feature = "operator")]
        Command::Crdgen(args) => crdgen::run(args),
        #[cfg(feature = "operator")]
        Command::Operator(args) => operator::run(*args),
        Command::Verify(args) => verify::run(args),
        Command::Receipts(args) => receipts::run(args),
        Command::Exporter(command) => exporter::run(command),
        Command::Report(command) => report::run(command),
        Command::Deschedule(command) => deschedule::run(command),
        Command::Failover(command) => failover::run(command),
        #[cfg(feature = "operator")]
        Command::Rollback(args) => rollback::run(args),
        #[cfg(feature = "operator")]
        Command::Kubectl(args) => kubectl::run(args),
    };
    finish(result)
}

/// The exit code of a command's result; an error is printed with its causes (exit code 1).
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
