//! `mom report costs`: per-tenant cost reports from auction receipts.
//!
//! Input: receipts as JSON lines (`--file`, as written by `mom verify --cluster --export`) or
//! straight from the cluster (`--cluster`). Output: per tenant the Clarke payments and Shapley
//! shares of node-pool cost, current (per hour) and accrued up to `--until` (default: the newest
//! receipt), and per pool its auctions — a table, or one JSON object with `--format json`.
//! The chain itself is not verified here; run `mom verify` for that.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use mom::auction::cost_report::{CostReport, cost_report};
use mom::receipts::Receipt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Per-tenant costs: Clarke payments and Shapley shares of node-pool cost, from receipts.
    Costs(CostsArgs),
}

#[derive(Debug, clap::Args)]
pub struct CostsArgs {
    /// JSON-lines export of the receipts (one receipt per line).
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    file: Option<PathBuf>,
    /// Read the receipts from the cluster (current kubeconfig) instead of a file.
    #[arg(long)]
    cluster: bool,
    /// End of the accrual period (RFC 3339); default: the time of the newest receipt.
    #[arg(long)]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Costs(args) => {
            let report = build(&args)?;
            match args.format {
                Format::Json => println!("{}", serde_json::to_string(&report)?),
                Format::Table => print_table(&report),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn build(args: &CostsArgs) -> anyhow::Result<CostReport> {
    let receipts = match &args.file {
        Some(path) => super::verify_args::read_receipts(path)?,
        None => from_cluster()?,
    };
    cost_report(&receipts, args.until.as_deref()).context("building the cost report")
}

#[cfg(feature = "operator")]
fn from_cluster() -> anyhow::Result<Vec<Receipt>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the cluster")?;
        Ok(mom::operator::store::stored_chain(&client).await?)
    })
}

#[cfg(not(feature = "operator"))]
fn from_cluster() -> anyhow::Result<Vec<Receipt>> {
    anyhow::bail!("--cluster needs a build with the `operator` feature")
}

fn print_table(r: &CostReport) {
    println!(
        "receipts {} ({} auctions), period {} .. {}",
        r.receipts,
        r.auctions,
        r.from.as_deref().unwrap_or("-"),
        r.until.as_deref().unwrap_or("-")
    );
    println!();
    println!(
        "{:<24} {:>8} {:>14} {:>14} {:>14} {:>14}",
        "TENANT", "REPLICAS", "PAYMENT/H", "SHAPLEY/H", "PAID", "SHAPLEY COST"
    );
    for t in &r.tenants {
        println!(
            "{:<24} {:>8} {:>14.4} {:>14.4} {:>14.4} {:>14.4}",
            t.tenant,
            t.replicas,
            t.payment_per_hour,
            t.shapley_cost_per_hour,
            t.accrued_payment,
            t.accrued_shapley_cost
        );
    }
    println!();
    println!(
        "{:<24} {:>8} {:>10} {:>14} {:>10}",
        "POOL", "AUCTIONS", "CONTENDED", "POOL COST/H", "LAST SEQ"
    );
    for p in &r.pools {
        println!(
            "{:<24} {:>8} {:>10} {:>14.4} {:>10}",
            p.pool, p.auctions, p.contended, p.pool_cost_per_hour, p.last_sequence
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mom::auction::quota::{AgentDemand, QuotaSettings, REPLAY_KIND, auction_input};
    use mom::auction::{NodeCapacity, ResourceRequest};
    use mom::receipts::chain::ChainBuilder;
    use mom::receipts::{Action, Level, ReceiptDraft, Signer, SubjectRef};
    use serde_json::json;

    /// A sealed two-receipt chain (an auction, then a spawn 30 minutes later) as JSON lines.
    fn export(dir: &std::path::Path) -> (PathBuf, mom::auction::AuctionOutcome) {
        let d = |agent: &str, tenant: &str, values: &[f64]| AgentDemand {
            agent: agent.into(),
            tenant: tenant.into(),
            wanted: values.len() as u32,
            request: ResourceRequest {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
            },
            marginal_values: values.to_vec(),
        };
        let input = auction_input(
            &[d("ns/a", "red", &[5.0, 4.0]), d("ns/b", "blue", &[6.0, 1.0])],
            &[NodeCapacity {
                node: "n1".into(),
                cpu_millis: 2000,
                memory_bytes: 4 << 30,
                cost: 3.0,
            }],
            QuotaSettings::default(),
        );
        let outcome = mom::auction::run(&input).unwrap();
        let subject = SubjectRef {
            api_version: "mom.hypersync.io/v1alpha1".into(),
            kind: "NodePool".into(),
            namespace: String::new(),
            name: "pool".into(),
            uid: None,
        };
        let inputs = serde_json::to_value(&input).unwrap();
        let drafts = [
            (
                Action::Allocate,
                json!({"kind": REPLAY_KIND, "pool": "pool", "inputs": inputs, "output": outcome}),
                "2026-01-01T10:00:00Z",
            ),
            (
                Action::Spawn,
                json!({"kind": "placement.scale"}),
                "2026-01-01T10:30:00Z",
            ),
        ];
        let mut chain = ChainBuilder::genesis(Signer::from_seed([3; 32]));
        let mut receipts = Vec::new();
        for (action, decision, time) in drafts {
            let draft = ReceiptDraft {
                action,
                subject: subject.clone(),
                inputs_digest: mom::receipts::inputs_digest(&decision).unwrap(),
                decision,
                time: time.into(),
                level: Level::FullAudit,
            };
            let r = chain.prepare(draft).unwrap();
            chain.commit(&r).unwrap();
            receipts.push(r);
        }
        let path = dir.join("receipts.jsonl");
        std::fs::write(&path, mom::receipts::to_json_lines(&receipts)).unwrap();
        (path, outcome)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mom-report-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn costs_from_an_exported_chain_sum_payments_and_shapley_shares_per_tenant() {
        let dir = temp_dir("ok");
        let (file, outcome) = export(&dir);
        let report = build(&CostsArgs {
            file: Some(file),
            cluster: false,
            until: None,
            format: Format::Json,
        })
        .unwrap();
        assert_eq!((report.receipts, report.auctions), (2, 1));
        for t in &report.tenants {
            let paid: f64 = outcome
                .allocations
                .iter()
                .filter(|a| a.tenant == t.tenant)
                .map(|a| a.payment)
                .sum();
            let share = outcome
                .tenant_costs
                .iter()
                .find(|c| c.tenant == t.tenant)
                .unwrap()
                .shapley_cost;
            assert_eq!(t.payment_per_hour, paid);
            assert_eq!(t.accrued_payment, paid * 0.5, "in effect for half an hour");
            assert_eq!(t.accrued_shapley_cost, share * 0.5);
        }
        // The pool of one 3-per-hour node is fully attributed.
        let shares: f64 = report.tenants.iter().map(|t| t.shapley_cost_per_hour).sum();
        assert!((shares - 3.0).abs() < 1e-12, "{shares}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["pools"][0]["pool"], "pool");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_file_or_a_bad_until_is_reported_naming_it() {
        let dir = temp_dir("bad");
        let (file, _) = export(&dir);
        let missing = build(&CostsArgs {
            file: Some(dir.join("nope.jsonl")),
            cluster: false,
            until: None,
            format: Format::Table,
        })
        .unwrap_err();
        assert!(format!("{missing:#}").contains("nope.jsonl"), "{missing:#}");
        let bad_until = build(&CostsArgs {
            file: Some(file),
            cluster: false,
            until: Some("tomorrow".into()),
            format: Format::Table,
        })
        .unwrap_err();
        assert!(format!("{bad_until:#}").contains("until \"tomorrow\""), "{bad_until:#}");
        std::fs::write(dir.join("garbage.jsonl"), "{not json}\n").unwrap();
        let garbage = build(&CostsArgs {
            file: Some(dir.join("garbage.jsonl")),
            cluster: false,
            until: None,
            format: Format::Table,
        })
        .unwrap_err();
        assert!(format!("{garbage:#}").contains("line 1"), "{garbage:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
