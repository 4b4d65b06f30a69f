//! Core placement at scale (`make bench-core`): one placement decision over every node, and one
//! tick of target updates for every agent, on a synthetic cluster; prints one JSON line.
//!
//! The cluster: NODES nodes in 10 regions × 10 zones (`cluster_layout::UniformLayout`), embedded
//! by their topology labels in DIMENSION coordinates (`placement::embed_nodes`, as the operator
//! does). AGENTS agents of 1–3 replicas each (seeded draw), replicas on seeded random nodes;
//! agent i names agent i+1 as its peer (a ring), as `make bench-scale` does.
//!
//! - A decision is what the extender computes for one pod of an agent when kube-scheduler sends
//!   every node: `placement::filter` then `placement::score_breakdown` over all NODES node
//!   states. The states are built once beforehand; the extender builds them from its view on
//!   every request (`View::node_states`, `View::policy_for`), which is not timed here.
//!   DECISIONS of them, for agents spread over the ring; p50, p99 and max in ms.
//! - A tick is `placement::agent_target` for every agent from its peer's and its own
//!   replica positions (the agent controller's target update); its wall time in seconds.
//!
//! One thread. Usage: `cargo run --release --example core_scale -- AGENTS NODES [DIMENSION
//! [DECISIONS [SEED]]]` (defaults 100000 5000 64 200 1).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use mom::cluster_layout::UniformLayout;
use mom::placement::{
    self, AgentPolicy, NodeState, Objectives, PodDemand, Resources, Routing, TargetInputs, agent_target,
};
use rand::{Rng, SeedableRng};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("argument {i} ({a:?}) must be a whole number"))
        })
        .unwrap_or(default)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let agents = arg(1, 100_000) as usize;
    let nodes = arg(2, 5_000) as u32;
    let dimension = arg(3, 64) as usize;
    let decisions = arg(4, 200).max(1) as usize;
    let seed = arg(5, 1);
    let kappa = 1.0;

    let started = Instant::now();
    let layout = UniformLayout::with_total_nodes(10, 10, nodes);
    let specs = layout.nodes().expect("a valid layout");
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        specs.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
    let keys = [
        mom::labels::REGION_LABEL,
        mom::labels::ZONE_LABEL,
        mom::labels::HOSTNAME_LABEL,
    ]
    .map(String::from);
    let embedding = placement::embed_nodes(&labels, &keys, dimension).expect("nodes embed");
    let embed_s = started.elapsed().as_secs_f64();
    let states: Vec<NodeState> = specs
        .iter()
        .map(|n| n.empty_state(embedding.positions[&n.name].clone()))
        .collect();
    let refs: Vec<&NodeState> = states.iter().collect();

    // Every agent's replicas on seeded random nodes.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let replicas: Vec<Vec<usize>> = (0..agents)
        .map(|_| {
            let count = rng.random_range(1..=3);
            (0..count).map(|_| rng.random_range(0..states.len())).collect()
        })
        .collect();
    let positions =
        |agent: usize| -> Vec<Vec<f64>> { replicas[agent].iter().map(|&n| states[n].position.clone()).collect() };
    let inputs_of = |agent: usize| TargetInputs {
        dimension: embedding.dimension,
        peers: vec![(1.0, positions((agent + 1) % agents))],
        own_replicas: positions(agent),
        ..Default::default()
    };

    // One tick of target updates.
    let tick = Instant::now();
    let mut targets = Vec::with_capacity(agents);
    for agent in 0..agents {
        targets.push(agent_target(&inputs_of(agent), kappa).expect("an anchored target"));
    }
    let tick_s = tick.elapsed().as_secs_f64();

    // Placement decisions over every node.
    let objectives = Objectives::default();
    let demand = PodDemand {
        requests: Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20,
        },
        tenant: Some("bench".into()),
        strict_isolation: false,
        standby: false,
    };
    let mut times_ms = Vec::with_capacity(decisions);
    let mut passed = 0usize;
    for d in 0..decisions {
        let agent = d * agents / decisions;
        let mut by_domain: BTreeMap<String, u32> = BTreeMap::new();
        for &n in &replicas[agent] {
            *by_domain
                .entry(states[n].labels[mom::labels::ZONE_LABEL].clone())
                .or_default() += 1;
        }
        let policy = AgentPolicy {
            target: targets[agent].clone(),
            avoid_nodes: BTreeSet::new(),
            spread_label: Some(mom::labels::ZONE_LABEL.into()),
            max_per_domain: Some(2),
            replicas_by_domain: by_domain,
            replica_positions: positions(agent),
            replicas: replicas[agent].len() as u32 + 1,
            ..Default::default()
        };
        let t = Instant::now();
        let verdict = placement::filter(&demand, Some(&policy), &refs, kappa);
        let fit: BTreeSet<&str> = verdict.passed.iter().map(String::as_str).collect();
        let candidates: Vec<&NodeState> = refs.iter().copied().filter(|n| fit.contains(n.name.as_str())).collect();
        let scores = placement::score_breakdown(
            &demand,
            Some(&policy),
            &candidates,
            &objectives,
            Routing::GreedyForwarding,
            kappa,
        );
        times_ms.push(t.elapsed().as_secs_f64() * 1e3);
        passed += scores.len();
    }
    times_ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "agents": agents,
            "nodes": states.len(),
            "dimension": embedding.dimension,
            "seed": seed,
            "embed_s": (embed_s * 1e3).round() / 1e3,
            "tick_s": (tick_s * 1e3).round() / 1e3,
            "tick_target_s": 1.0,
            "decision_ms": {
                "p50": (quantile(&times_ms, 0.5) * 100.0).round() / 100.0,
                "p99": (quantile(&times_ms, 0.99) * 100.0).round() / 100.0,
                "max": (times_ms[times_ms.len() - 1] * 100.0).round() / 100.0,
                "count": decisions,
            },
            "decision_target_ms": 100.0,
            "nodes_passed_per_decision": passed as f64 / decisions as f64,
        })
    );
}
