//! The receipts benchmark, kept out of the product binary: `receipts_bench bench-write` and
//! `receipts_bench bench-overhead` measure receipt costs on a real apiserver (run by
//! `hack/bench-receipts.sh`, `make bench-receipts`; build it with
//! `cargo build --release --example receipts_bench`).
//!
//! - bench-write: `--count` receipts through the operator's `ReceiptWriter` (sealed, signed,
//!   created as Receipt objects one after another, as the leader writes them), then one
//!   checkpoint. Prints one JSON line: receipts/s and write latency p50/p99/max (ms).
//!   Nothing else may write the chain meanwhile (no operator acting).
//! - bench-overhead: against a running operator, the same scaling workload (`--agents` agents
//!   flipped between 0 and 1 replicas for `--rounds` rounds, each round timed until every agent
//!   has its pods) under MomConfig verification level `none` and `full_audit`, alternating,
//!   `--repeats` times. Prints one JSON line: actions/s of each level and the overhead
//!   `(seconds_full_audit / seconds_none − 1) × 100 %`; then `--serial-actions` single actions
//!   one at a time per level (patch, wait for the pods): p50/p99 latency of one action.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mom::operator::crd::{GeometricAgent, MomConfig};
use mom::operator::receipts::{ReceiptWriter, Recording};
use mom::receipts::{Action, SubjectRef};

/// Receipt costs on a real apiserver (one JSON line per command).
#[derive(Debug, clap::Parser)]
enum Bench {
    /// Benchmark receipt writes to a real apiserver (one JSON line: receipts/s, p50/p99).
    BenchWrite(BenchWriteArgs),
    /// Benchmark a scaling workload under MomConfig levels none and full_audit against a running
    /// operator (one JSON line: actions/s of each and the overhead).
    BenchOverhead(BenchOverheadArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    match <Bench as clap::Parser>::parse() {
        Bench::BenchWrite(args) => bench_write(args),
        Bench::BenchOverhead(args) => bench_overhead(args),
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchWriteArgs {
    /// Kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Receipts to write.
    #[arg(long, default_value_t = 500)]
    count: u64,
    /// Namespace the receipts' subjects (and so the Receipt objects) live in; created if absent.
    #[arg(long, default_value = "mom-bench-receipts")]
    namespace: String,
    /// The operator's namespace (signing key Secret, public keys, checkpoints).
    #[arg(long, default_value = "mom-system")]
    operator_namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct BenchOverheadArgs {
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Agents scaled in each run.
    #[arg(long, default_value_t = 40)]
    agents: usize,
    /// Rounds per run; each flips every agent between 0 and 1 replicas (one action each).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Runs per level (alternating none, full_audit, none, …).
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Also time this many single actions one at a time per level (patch one agent, wait
    /// until its pods match): the latency the write-ahead receipt adds to one action.
    #[arg(long, default_value_t = 40)]
    serial_actions: usize,
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The `q`-quantile (nearest rank) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn bench_write(args: BenchWriteArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client(args.kubeconfig.as_ref()).await?;
        ensure_namespace(&client, &args.operator_namespace).await?;
        ensure_namespace(&client, &args.namespace).await?;
        let writer = ReceiptWriter::new(client, args.operator_namespace.clone());
        let recording = Recording::default();
        let mut latencies = Vec::with_capacity(args.count as usize);
        let mut load_ms = 0.0;
        let started = Instant::now();
        for i in 0..args.count {
            let subject = SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: "GeometricAgent".into(),
                namespace: args.namespace.clone(),
                name: format!("bench-{}", i % 50),
                uid: None,
            };
            let (from, to) = (i % 3, (i + 1) % 3);
            let pods: Vec<String> = (0..from).map(|p| format!("bench-{}-{p}", i % 50)).collect();
            let decision =
                serde_json::json!({"kind": "placement.scale", "from": from, "to": to, "target": [0.12, -0.34]});
            let inputs = serde_json::json!({"specReplicas": to, "pods": pods});
            let action = if to > from { Action::Spawn } else { Action::Terminate };
            let t = Instant::now();
            writer
                .record(recording, action, subject, decision, &inputs)
                .await
                .with_context(|| format!("writing receipt {i}"))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if i == 0 {
                // The first write also loads the stored chain and the signing key.
                load_ms = ms;
            } else {
                latencies.push(ms);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let t = Instant::now();
        let checkpoint = writer.checkpoint().await?;
        let checkpoint_ms = t.elapsed().as_secs_f64() * 1e3;
        latencies.sort_by(f64::total_cmp);
        let out = serde_json::json!({
            "bench": "receipt-write",
            "receipts": args.count,
            "seconds": seconds,
            "receiptsPerSecond": args.count as f64 / seconds,
            "firstWriteMs": load_ms,
            "p50Ms": quantile(&latencies, 0.5),
            "p99Ms": quantile(&latencies, 0.99),
            "maxMs": latencies.last().copied().unwrap_or(0.0),
            "checkpointMs": checkpoint.map(|_| checkpoint_ms),
        });
        println!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

async fn set_level(client: &kube::Client, level: &str) -> anyhow::Result<()> {
    let api: Api<MomConfig> = Api::all(client.clone());
    let patch = serde_json::json!({"spec": {"verification": {"level": level}}});
    api.patch("default", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("patching MomConfig default (apply one first)")?;
    // The operator's MomConfig watch picks it up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// One run of the workload in a fresh namespace; returns the seconds of the timed rounds.
async fn workload(client: &kube::Client, ns: &str, agents: usize, rounds: usize) -> anyhow::Result<f64> {
    ensure_namespace(client, ns).await?;
    let api: Api<GeometricAgent> = Api::namespaced(client.clone(), ns);
    for i in 0..agents {
        let a: GeometricAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": format!("load-{i:03}"), "namespace": ns},
            "spec": {"workloadType": "batch", "replicas": 0,
                     "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
        }))?;
        api.create(&PostParams::default(), &a).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    for round in 0..rounds {
        let replicas = if round % 2 == 0 { 1 } else { 0 };
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        let calls = (0..agents).map(|i| {
            let api = api.clone();
            let patch = patch.clone();
            async move {
                api.patch(&format!("load-{i:03}"), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        let want = agents * replicas as usize;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let active = pods
                .list(&ListParams::default().labels("mom.hypersync.io/agent"))
                .await?
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            if active == want {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "round {round} in {ns}: {active} pods, want {want}, after 300 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::background())
        .await;
    Ok(seconds)
}

/// Times `count` single actions, one at a time, in a fresh namespace; returns latencies (ms).
async fn serial_workload(client: &kube::Client, ns: &str, count: usize) -> anyhow::Result<Vec<f64>> {
    ensure_namespace(client, ns).await?;
    let api: Api<GeometricAgent> = Api::namespaced(client.clone(), ns);
    let a: GeometricAgent = serde_json::from_value(serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": "single", "namespace": ns},
        "spec": {"workloadType": "batch", "replicas": 0,
                 "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
    }))?;
    api.create(&PostParams::default(), &a).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let replicas = if i % 2 == 0 { 1 } else { 0 };
        let t = Instant::now();
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        api.patch("single", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let deadline = t + Duration::from_secs(60);
        loop {
            let active = pods
                .list(&ListParams::default().labels("mom.hypersync.io/agent=single"))
                .await?
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            if active == replicas as usize {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "action {i} in {ns} did not converge in 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::background())
        .await;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

pub fn bench_overhead(args: BenchOverheadArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client(args.kubeconfig.as_ref()).await?;
        let mut runs: Vec<(&str, f64)> = Vec::new();
        for rep in 0..args.repeats {
            for level in ["none", "full_audit"] {
                set_level(&client, level).await?;
                let ns = format!("mom-bench-{}-{rep}", level.replace('_', "-"));
                let seconds = workload(&client, &ns, args.agents, args.rounds).await?;
                eprintln!("bench-overhead: {level} run {rep}: {seconds:.2} s");
                runs.push((level, seconds));
            }
        }
        let mut serial: Vec<(&str, Vec<f64>)> = Vec::new();
        if args.serial_actions > 0 {
            for level in ["none", "full_audit"] {
                set_level(&client, level).await?;
                let ns = format!("mom-bench-serial-{}", level.replace('_', "-"));
                let ms = serial_workload(&client, &ns, args.serial_actions).await?;
                eprintln!(
                    "bench-overhead: {level} single actions: p50 {:.1} ms, p99 {:.1} ms",
                    quantile(&ms, 0.5),
                    quantile(&ms, 0.99)
                );
                serial.push((level, ms));
            }
        }
        let latency = |level: &str| {
            serial.iter().find(|(l, _)| *l == level).map(|(_, ms)| {
                serde_json::json!({"p50Ms": quantile(ms, 0.5), "p99Ms": quantile(ms, 0.99), "actions": ms.len()})
            })
        };
        let actions = (args.agents * args.rounds) as f64;
        let stats = |level: &str| {
            let s: Vec<f64> = runs.iter().filter(|(l, _)| *l == level).map(|(_, s)| *s).collect();
            let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
            (s, mean)
        };
        let (none_runs, none_mean) = stats("none");
        let (full_runs, full_mean) = stats("full_audit");
        let out = serde_json::json!({
            "bench": "receipt-overhead",
            "agents": args.agents,
            "rounds": args.rounds,
            "actionsPerRun": actions,
            "none": {"seconds": none_runs, "actionsPerSecond": actions / none_mean},
            "fullAudit": {"seconds": full_runs, "actionsPerSecond": actions / full_mean},
            "ratio": full_mean / none_mean,
            "overheadPercent": (full_mean / none_mean - 1.0) * 100.0,
            "singleAction": {"none": latency("none"), "fullAudit": latency("full_audit")},
        });
        println!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
