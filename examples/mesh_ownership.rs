//! Mesh ownership under membership changes (`make bench-ownership`): how many agents change
//! owner when one operator replica joins or leaves, by position in the ball ([`mom::mesh`]) and
//! by a consistent-hash ring (the baseline of Lease-based controller sharding); prints one JSON
//! line.
//!
//! The cluster: a TopoHub network (default `TataNld`, read from `$MOM_DATA_DIR/TopoHub/topozoo`)
//! as `cluster_layout::sites_layout` makes it (REGIONS regions, NODES_PER_SITE nodes per site),
//! embedded by its topology labels in 64 coordinates as the operator does. AGENTS agents of 1–3
//! replicas on seeded random nodes; an agent's position is the Fréchet mean of its replicas'
//! nodes (the agent controller's target without peers).
//!
//! For every replica count R in 1..=MAX_REPLICAS: owners with R replicas `mom-0…` and with R+1,
//! then `moved / agents` for the join (the leave is the same set in reverse), the ideal share
//! `1/(R+1)`, agents moved between two replicas that stayed (0 for both rules), and the load
//! `max / mean` with R+1 replicas. Ring: 100 virtual nodes per replica, positions by `stable_hash::mixed`.
//! Also the time to compute the owner of every agent with MAX_REPLICAS replicas.
//!
//! `mesh_bounded` is the same rule with bounded loads ([`mesh::Anchors::owners_bounded`], ε =
//! EPSILON).
//!
//! Usage: `cargo run --release --example mesh_ownership -- [AGENTS [MAX_REPLICAS [ANCHORS
//! [TOPOLOGY [SEED [EPSILON]]]]]]` (defaults 10000 8 16 TataNld 1 0.25).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use mom::geometry::{data, poincare, routing};
use mom::mesh::{self, Replica};
use mom::stable_hash::mixed;
use rand::{Rng, SeedableRng};

fn arg(i: usize) -> Option<String> {
    std::env::args().nth(i)
}

fn number(i: usize, default: u64) -> u64 {
    arg(i)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("argument {i} ({a:?}) must be a whole number"))
        })
        .unwrap_or(default)
}

/// Consistent hashing: each replica at `vnodes` points `h(identity ‖ 0 ‖ i)` of a 64-bit ring
/// (`h` = [`mixed`]);
/// an agent belongs to the first point clockwise from `h(agent)`.
fn ring_owners(agents: &[String], replicas: &[String], vnodes: usize) -> BTreeMap<String, String> {
    let mut ring: Vec<(u64, &str)> = replicas
        .iter()
        .flat_map(|r| {
            (0..vnodes).map(move |i| {
                let i = i.to_string();
                (mixed(r.bytes().chain([0]).chain(i.bytes())), r.as_str())
            })
        })
        .collect();
    ring.sort();
    agents
        .iter()
        .map(|a| {
            let h = mixed(a.bytes());
            let at = ring.partition_point(|(p, _)| *p < h) % ring.len();
            (a.clone(), ring[at].1.to_string())
        })
        .collect()
}

fn main() {
    let agent_count = number(1, 10_000) as usize;
    let max_replicas = number(2, 8).max(1) as usize;
    let per_replica = number(3, 16) as usize;
    let topology = arg(4).unwrap_or_else(|| "TataNld".into());
    let seed = number(5, 1);
    let epsilon: f64 = arg(6).map_or(0.25, |a| a.parse().expect("EPSILON must be a number"));
    let kappa = 1.0;

    let path = data::data_dir()
        .join("TopoHub/topozoo")
        .join(format!("{topology}.json"));
    let graph = data::load_node_link(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let delays = routing::shortest_path_delays(&graph);
    let nodes = mom::cluster_layout::sites_layout(&delays, 4, 6).expect("a valid layout");
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        nodes.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
    let keys = [
        mom::labels::REGION_LABEL,
        mom::labels::ZONE_LABEL,
        mom::labels::HOSTNAME_LABEL,
    ]
    .map(String::from);
    let embedding = mom::placement::embed_nodes(&labels, &keys, 64).expect("nodes embed");
    let node_points: Vec<&Vec<f64>> = embedding.positions.values().collect();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let agents: BTreeMap<String, Option<Vec<f64>>> = (0..agent_count)
        .map(|i| {
            let replicas: Vec<Vec<f64>> = (0..rng.random_range(1..=3))
                .map(|_| node_points[rng.random_range(0..node_points.len())].clone())
                .collect();
            let weights = vec![1.0; replicas.len()];
            let position = poincare::frechet_mean(&replicas, &weights, kappa).expect("a mean");
            (format!("bench/agent-{i:06}"), Some(position))
        })
        .collect();
    let agent_keys: Vec<String> = agents.keys().cloned().collect();

    let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("mom-{i}")).collect() };
    let mut rows = Vec::new();
    let mut mesh_seconds = 0.0;
    for r in 1..=max_replicas {
        let (before_names, after_names) = (names(r), names(r + 1));
        let before_set: BTreeSet<String> = before_names.iter().cloned().collect();
        let after_set: BTreeSet<String> = after_names.iter().cloned().collect();
        let anchors = |n: &[String]| {
            let replicas: Vec<Replica> = n.iter().map(|x| Replica::new(x.clone())).collect();
            mesh::anchors(&replicas, &embedding.positions, per_replica, kappa, 1.0).expect("anchors")
        };
        let started = Instant::now();
        let anchors_before = anchors(&before_names);
        let mesh_before = anchors_before.owners(&agents);
        if r == max_replicas {
            mesh_seconds = started.elapsed().as_secs_f64();
        }
        let anchors_after = anchors(&after_names);
        let mesh_after = anchors_after.owners(&agents);
        let bounded_before = anchors_before
            .owners_bounded(&agents, epsilon)
            .expect("a valid epsilon");
        let bounded_after = anchors_after.owners_bounded(&agents, epsilon).expect("a valid epsilon");
        let ring_before = ring_owners(&agent_keys, &before_names, 100);
        let ring_after = ring_owners(&agent_keys, &after_names, 100);
        let report = |before: &BTreeMap<String, String>, after: &BTreeMap<String, String>| {
            let m = mesh::movement(before, after, &before_set, &after_set);
            let (max, mean) = mesh::load(after, &after_set);
            serde_json::json!({
                "moved_fraction": m.moved as f64 / m.agents as f64,
                "between_stayers": m.between_stayers,
                "load_max_over_mean": max as f64 / mean,
            })
        };
        rows.push(serde_json::json!({
            "replicas": format!("{r}->{}", r + 1),
            "ideal_fraction": 1.0 / (r + 1) as f64,
            "mesh": report(&mesh_before, &mesh_after),
            "mesh_bounded": report(&bounded_before, &bounded_after),
            "ring": report(&ring_before, &ring_after),
        }));
        eprintln!("{}", rows.last().expect("a row"));
    }
    println!(
        "{}",
        serde_json::json!({
            "topology": topology,
            "nodes": embedding.positions.len(),
            "agents": agent_count,
            "anchors_per_replica": per_replica,
            "ring_vnodes_per_replica": 100,
            "bounded_epsilon": epsilon,
            "owners_seconds_at_max_replicas": mesh_seconds,
            "joins": rows,
        })
    );
}
