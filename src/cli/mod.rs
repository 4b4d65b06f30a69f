//! Command-line entry: parses arguments and dispatches to one module per area.
//!
//! Each area keeps its subcommand in its own file (`cli/<area>.rs`) with an `Args` type and a
//! `run` function; this file only lists them. `anyhow` is used here, at the binary's edge.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod auction;
#[cfg(feature = "operator")]
mod crdgen;
#[cfg(feature = "operator")]
mod operator;

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
    /// Run one capacity auction (VCG) offline from JSON bids and capacities.
    Auction(auction::Args),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD with `--out-dir`.
    #[cfg(feature = "operator")]
    Crdgen(crdgen::Args),
    /// Run the operator: controllers, leader election, metrics and health endpoints.
    #[cfg(feature = "operator")]
    Operator(operator::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Version => {
            println!("mom {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Auction(args) => auction::run(args),
        #[cfg(feature = "operator")]
        Command::Crdgen(args) => crdgen::run(args),
        #[cfg(feature = "operator")]
        Command::Operator(args) => operator::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
