//! `mom embed latency|topology` and `mom route eval`: reproduce the geometry measurements
//! (latency embedding vs Vivaldi, Sarkar distortion/MAP, greedy routing on TopoHub graphs).
//! Timing (wall clock) lives here only, never in the core.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use mom::geometry::{data, latency, routing, tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `mom embed ...`
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(subcommand)]
    command: EmbedCommand,
}

#[derive(Debug, Subcommand)]
enum EmbedCommand {
    /// Embed a measured RTT matrix (NetLatency format) and compare with Vivaldi on held-out pairs.
    Latency(LatencyArgs),
    /// Embed a complete fanout^depth hierarchy with Sarkar's construction; report distortion/MAP.
    Topology(TopologyArgs),
    /// Make a cluster of a TopoHub graph (sites → zones, k-medoids regions), embed its nodes
    /// by their labels in each dimension as the operator does, and time one extender request
    /// (filter + prioritize over every node) per dimension.
    Cluster(ClusterArgs),
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// TopoHub node-link JSON file.
    #[arg(long)]
    topology: PathBuf,
    /// Regions the sites are grouped into.
    #[arg(long, default_value_t = 6)]
    regions: usize,
    /// Nodes per site (zone).
    #[arg(long, default_value_t = 4)]
    nodes_per_site: u32,
    /// Dimensions to embed in, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [2usize, 8, 64])]
    dims: Vec<usize>,
    /// Extender requests timed per dimension (each with another node's position as target).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// Tab-separated RTT matrix, 0 = not measured.
    #[arg(long)]
    matrix: PathBuf,
    /// Dimension of the hyperbolic space.
    #[arg(long, default_value_t = 5)]
    dim: usize,
    /// Fraction of measured pairs held out for scoring.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1500)]
    epochs: usize,
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    #[arg(long, default_value_t = 0.05)]
    learning_rate: f64,
    #[arg(long, default_value_t = 0.02)]
    huber_delta: f64,
    /// Score unordered pairs of the symmetrised matrix (mean of both directions) instead of
    /// the raw ordered entries.
    #[arg(long)]
    symmetrize: bool,
    /// Vivaldi rounds (each node makes one measurement per round).
    #[arg(long, default_value_t = 4000)]
    vivaldi_rounds: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct TopologyArgs {
    #[arg(long)]
    fanout: usize,
    #[arg(long)]
    depth: usize,
    #[arg(long, default_value_t = 0.1)]
    epsilon: f64,
    /// Override the edge length τ.
    #[arg(long)]
    edge_length: Option<f64>,
    /// Evaluate distortion/MAP from at most this many source nodes (evenly spaced).
    #[arg(long, default_value_t = 200)]
    sources: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `mom route ...`
#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    command: RouteCommand,
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// Route every ordered pair of a TopoHub graph (or of every graph in a directory).
    Eval(EvalArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Sarkar embedding of the shortest-path tree (greedy embedding).
    Spt,
    /// Hyperbolic fit of the shortest-path delay matrix, gravity–pressure fallback.
    Fitted,
    /// Fitted estimates, spanning-tree embedding as the fallback at dead ends.
    Hybrid,
    /// Fitted estimates for choosing hops, progress always measured on the tree embedding.
    HybridTree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    Greedy,
    Delay,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// TopoHub node-link JSON file, or a directory of them.
    #[arg(long)]
    topology: PathBuf,
    #[arg(long, value_enum, default_value_t = Method::Hybrid)]
    method: Method,
    #[arg(long, value_enum, default_value_t = PolicyArg::Delay)]
    policy: PolicyArg,
    /// Copies per packet (multipath); 1 = single path.
    #[arg(long, default_value_t = 1)]
    multipath: usize,
    /// Seed of the fitted embedding.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Dimension for `--method fitted`.
    #[arg(long, default_value_t = 4)]
    dim: usize,
    #[arg(long, default_value_t = 0.1)]
    epsilon: f64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run_embed(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        EmbedCommand::Latency(a) => run_latency(a),
        EmbedCommand::Topology(a) => run_topology(a),
        EmbedCommand::Cluster(a) => run_cluster(a),
    }
}

pub fn run_route(args: RouteArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RouteCommand::Eval(a) => run_eval(a),
    }
}

fn run_latency(a: LatencyArgs) -> anyhow::Result<ExitCode> {
    let m = data::load_rtt_matrix(&a.matrix)?;
    let m = if a.symmetrize { m.symmetrized() } else { m };
    let hyp = latency::HyperbolicConfig {
        dim: a.dim,
        seed: a.seed,
        restarts: a.restarts,
        epochs: a.epochs,
        learning_rate: a.learning_rate,
        huber_delta: a.huber_delta,
        heights: true,
    };
    let viv = latency::VivaldiConfig {
        seed: a.seed,
        rounds: a.vivaldi_rounds,
        symmetric_samples: a.symmetrize,
        ..Default::default()
    };
    let start = Instant::now();
    let c = latency::compare_on_holdout(&m, a.holdout, &hyp, &viv)?;
    let seconds = start.elapsed().as_secs_f64();
    if a.format == Format::Json {
        println!(
            "{}",
            json!({
                "matrix": a.matrix.display().to_string(), "nodes": m.n, "dim": c.dim,
                "holdout": a.holdout, "seed": a.seed, "symmetrize": a.symmetrize,
                "train_pairs": c.train_pairs, "test_pairs": c.test_pairs,
                "median_rel_error": c.hyperbolic.median_rel_error,
                "p90_rel_error": c.hyperbolic.p90_rel_error,
                "kappa": c.kappa,
                "vivaldi": c.vivaldi,
                "seconds": seconds,
            })
        );
    } else {
        println!(
            "matrix {} ({} nodes), {} train / {} test pairs, seed {}",
            a.matrix.display(),
            m.n,
            c.train_pairs,
            c.test_pairs,
            a.seed
        );
        println!("{:<24} {:>12} {:>12}", "method", "median rel", "p90 rel");
        println!(
            "{:<24} {:>12.4} {:>12.4}",
            format!("hyperbolic d={}", c.dim),
            c.hyperbolic.median_rel_error,
            c.hyperbolic.p90_rel_error
        );
        println!(
            "{:<24} {:>12.4} {:>12.4}",
            "vivaldi 2-D + height", c.vivaldi.median_rel_error, c.vivaldi.p90_rel_error
        );
        println!("fitted kappa {:.3e}, {seconds:.2} s", c.kappa);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_topology(a: TopologyArgs) -> anyhow::Result<ExitCode> {
    let paths = tree::balanced_paths(a.fanout, a.depth)?;
    let cfg = tree::SarkarConfig {
        epsilon: a.epsilon,
        edge_length: a.edge_length,
    };
    let start = Instant::now();
    let emb = tree::TreeEmbedding::from_paths(&paths, cfg)?;
    let seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let q = emb.evaluate(a.sources);
    let eval_seconds = start.elapsed().as_secs_f64();
    if a.format == Format::Json {
        println!(
            "{}",
            json!({
                "fanout": a.fanout, "depth": a.depth, "epsilon": a.epsilon,
                "leaves": emb.leaf_count(), "nodes": emb.node_count(), "tau": emb.tau(),
                "max_distortion": q.max_distortion, "avg_distortion": q.avg_distortion, "map": q.map,
                "sources": q.sources, "pairs": q.pairs,
                "seconds": seconds, "eval_seconds": eval_seconds,
            })
        );
    } else {
        println!(
            "fanout {} depth {} ε {}: {} leaves, {} nodes, τ = {:.3}",
            a.fanout,
            a.depth,
            a.epsilon,
            emb.leaf_count(),
            emb.node_count(),
            emb.tau()
        );
        println!("{:<16} {:>12}", "max distortion", format!("{:.5}", q.max_distortion));
        println!("{:<16} {:>12}", "avg distortion", format!("{:.5}", q.avg_distortion));
        println!("{:<16} {:>12}", "MAP", format!("{:.5}", q.map));
        println!("{:<16} {:>12}", "embed seconds", format!("{seconds:.4}"));
        println!(
            "evaluated from {} sources, {} pairs in {eval_seconds:.2} s",
            q.sources, q.pairs
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_cluster(a: ClusterArgs) -> anyhow::Result<ExitCode> {
    use mom::placement::{self, AgentPolicy, NodeState, Objectives, PodDemand, Resources, Routing};
    let g = data::load_node_link(&a.topology)?;
    let delays = routing::shortest_path_delays(&g);
    let nodes = mom::cluster_layout::sites_layout(&delays, a.regions, a.nodes_per_site)?;
    let labels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
        nodes.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
    let keys: Vec<String> = [
        mom::labels::REGION_LABEL,
        mom::labels::ZONE_LABEL,
        mom::labels::HOSTNAME_LABEL,
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    let regions: std::collections::BTreeSet<&String> =
        nodes.iter().map(|n| &n.labels[mom::labels::REGION_LABEL]).collect();
    let mut rows = Vec::new();
    for &dim in &a.dims {
        let start = Instant::now();
        let emb = mom::placement::embed_nodes(&labels, &keys, dim)?;
        let embed_seconds = start.elapsed().as_secs_f64();
        let states: Vec<NodeState> = nodes
            .iter()
            .map(|n| n.empty_state(emb.positions.get(&n.name).cloned().unwrap_or_default()))
            .collect();
        let refs: Vec<&NodeState> = states.iter().collect();
        let pod = PodDemand {
            requests: Resources {
                cpu_millis: 100,
                memory_bytes: 64 << 20,
            },
            ..Default::default()
        };
        let mut micros: Vec<f64> = Vec::with_capacity(a.requests);
        for r in 0..a.requests {
            let agent = AgentPolicy {
                target: states[(r * 7919) % states.len()].position.clone(),
                replicas: 3,
                ..Default::default()
            };
            let start = Instant::now();
            let verdict = placement::filter(&pod, Some(&agent), &refs, 1.0);
            let passed: Vec<&NodeState> = refs
                .iter()
                .copied()
                .filter(|n| !verdict.failed.contains_key(&n.name) && !verdict.unresolvable.contains_key(&n.name))
                .collect();
            let scores = placement::prioritize(
                &pod,
                Some(&agent),
                &passed,
                &Objectives::default(),
                Routing::GreedyForwarding,
                1.0,
            );
            std::hint::black_box(scores);
            micros.push(start.elapsed().as_secs_f64() * 1e6);
        }
        micros.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            micros
                .get(((micros.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        rows.push(json!({
            "topology": g.name, "sites": g.node_count(), "regions": regions.len(), "nodes": nodes.len(),
            "dimension": emb.dimension, "edge_length": emb.edge_length,
            "avg_distortion": emb.avg_distortion, "max_distortion": emb.max_distortion, "map": emb.map,
            "embed_seconds": embed_seconds,
            "request_p50_us": pct(0.5), "request_p99_us": pct(0.99),
        }));
    }
    if a.format == Format::Json {
        for r in &rows {
            println!("{r}");
        }
    } else {
        println!(
            "{:<14} {:>6} {:>4} {:>10} {:>10} {:>8} {:>10} {:>12} {:>12}",
            "topology", "nodes", "dim", "avg dist", "max dist", "MAP", "embed s", "req p50 µs", "req p99 µs"
        );
        for r in &rows {
            println!(
                "{:<14} {:>6} {:>4} {:>10.4} {:>10.4} {:>8.4} {:>10.4} {:>12.1} {:>12.1}",
                r["topology"].as_str().unwrap_or(""),
                r["nodes"].as_u64().unwrap_or(0),
                r["dimension"].as_u64().unwrap_or(0),
                r["avg_distortion"].as_f64().unwrap_or(f64::NAN),
                r["max_distortion"].as_f64().unwrap_or(f64::NAN),
                r["map"].as_f64().unwrap_or(f64::NAN),
                r["embed_seconds"].as_f64().unwrap_or(f64::NAN),
                r["request_p50_us"].as_f64().unwrap_or(f64::NAN),
                r["request_p99_us"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_one(path: &Path, a: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let g = data::load_node_link(path)?;
    let sp = routing::shortest_path_delays(&g);
    let tree_cfg = tree::SarkarConfig {
        epsilon: a.epsilon,
        edge_length: None,
    };
    let fit_cfg = latency::HyperbolicConfig {
        dim: a.dim,
        epochs: 800,
        restarts: 1,
        huber_delta: 0.02,
        seed: a.seed,
        ..Default::default()
    };
    let start = Instant::now();
    let emb = match a.method {
        Method::Spt => routing::Embedding::spt_sarkar(&g, &sp, tree_cfg)?,
        Method::Fitted => routing::Embedding::fitted(&sp, &fit_cfg)?,
        Method::Hybrid | Method::HybridTree => {
            routing::Embedding::hybrid(&g, &sp, tree_cfg, &fit_cfg, a.method == Method::HybridTree)?
        }
    };
    let embed_seconds = start.elapsed().as_secs_f64();
    let policy = match a.policy {
        PolicyArg::Greedy => routing::Policy::Greedy,
        PolicyArg::Delay => routing::Policy::DelayAware,
    };
    let start = Instant::now();
    let st = routing::evaluate(&g, &sp, &emb, policy, a.multipath);
    let route_seconds = start.elapsed().as_secs_f64();
    let tree = routing::tree_baseline(&sp, &emb);
    Ok(json!({
        "graph": g.name, "nodes": g.node_count(),
        "delivery_rate": st.delivery_rate, "mean_stretch": st.mean_stretch, "max_stretch": st.max_stretch,
        "pairs": st.pairs, "fallback_pairs": st.fallback_pairs, "zero_delay_pairs": st.zero_delay_pairs,
        "tree_mean_stretch": tree.map(|t| t.0), "tree_max_stretch": tree.map(|t| t.1),
        "embed_seconds": embed_seconds, "route_seconds": route_seconds,
    }))
}

fn run_eval(a: EvalArgs) -> anyhow::Result<ExitCode> {
    if a.multipath == 0 {
        bail!("--multipath must be ≥ 1");
    }
    if !a.topology.is_dir() {
        let v = eval_one(&a.topology, &a)?;
        if a.format == Format::Json {
            println!("{v}");
        } else {
            print_rows(&[v]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.topology)
        .with_context(|| format!("reading {}", a.topology.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let rows: Vec<serde_json::Value> = files
        .iter()
        .map(|f| eval_one(f, &a).with_context(|| f.display().to_string()))
        .collect::<Result<_, _>>()?;
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let k = rows.len().max(1) as f64;
    let mean_of = |key: &str| rows.iter().map(|r| num(r, key)).sum::<f64>() / k;
    let mut stretches: Vec<f64> = rows.iter().map(|r| num(r, "mean_stretch")).collect();
    stretches.sort_by(f64::total_cmp);
    let summary = json!({
        "graphs": rows.len(),
        "min_delivery_rate": rows.iter().map(|r| num(r, "delivery_rate")).fold(1.0, f64::min),
        "delivery_rate": mean_of("delivery_rate"),
        "mean_stretch": mean_of("mean_stretch"),
        "median_graph_stretch": stretches.get(stretches.len() / 2).copied().unwrap_or(f64::NAN),
        "worst_graph_mean_stretch": stretches.last().copied().unwrap_or(f64::NAN),
        "max_stretch": rows.iter().map(|r| num(r, "max_stretch")).fold(1.0, f64::max),
        "tree_mean_stretch": mean_of("tree_mean_stretch"),
        "pairs": rows.iter().map(|r| r["pairs"].as_u64().unwrap_or(0)).sum::<u64>(),
        "per_graph": rows,
    });
    if a.format == Format::Json {
        println!("{summary}");
    } else {
        print_rows(summary["per_graph"].as_array().map_or(&[][..], |v| v));
        println!(
            "{} graphs: min delivery {:.4}, mean stretch {:.4} (median graph {:.4}, worst graph {:.4}), tree baseline {:.4}",
            summary["graphs"],
            num(&summary, "min_delivery_rate"),
            num(&summary, "mean_stretch"),
            num(&summary, "median_graph_stretch"),
            num(&summary, "worst_graph_mean_stretch"),
            num(&summary, "tree_mean_stretch")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_rows(rows: &[serde_json::Value]) {
    println!(
        "{:<28} {:>5} {:>7} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "graph", "nodes", "pairs", "delivery", "mean st", "max st", "fallback", "tree st"
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<28} {:>5} {:>7} {:>9.4} {:>8.4} {:>8.3} {:>9} {:>9.4}",
            r["graph"].as_str().unwrap_or("?"),
            r["nodes"],
            r["pairs"],
            f("delivery_rate"),
            f("mean_stretch"),
            f("max_stretch"),
            r["fallback_pairs"],
            f("tree_mean_stretch")
        );
    }
}
