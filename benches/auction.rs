//! Auction benchmarks: winner determination + all Clarke payments (the mechanism), growing the
//! bidders at 50 nodes × 2 resources, and the nodes at 1,000 bidders; the full `run` (with
//! baselines and Shapley attribution); and the MIP reference on small instances.
//!
//! `cargo bench --no-default-features --bench auction`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mom::auction::generate::{GenConfig, random_instance};
use mom::auction::{Instance, NodeCapacity, ResourceRequest, SolverChoice, allocate_and_charge, run, validate};

fn instance(bidders: usize, nodes: usize, homogeneous: bool, max_replicas: usize) -> Instance {
    let input = random_instance(
        GenConfig {
            bidders,
            nodes,
            max_replicas,
            homogeneous,
            tenants: 20,
        },
        1,
    );
    validate(&input.bids, &input.nodes).unwrap()
}

fn fast_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("auction/vcg_fast_bidders_50_nodes");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for bidders in [100, 1_000, 10_000] {
        let inst = instance(bidders, 50, true, 20);
        g.bench_with_input(BenchmarkId::from_parameter(bidders), &inst, |b, inst| {
            b.iter(|| allocate_and_charge(black_box(inst), SolverChoice::Fast).unwrap())
        });
    }
    g.finish();
    let mut g = c.benchmark_group("auction/vcg_fast_nodes_1000_bidders");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for nodes in [10, 50, 200, 1_000] {
        let inst = instance(1_000, nodes, true, 20);
        g.bench_with_input(BenchmarkId::from_parameter(nodes), &inst, |b, inst| {
            b.iter(|| allocate_and_charge(black_box(inst), SolverChoice::Fast).unwrap())
        });
    }
    g.finish();
}

fn two_class(c: &mut Criterion) {
    let mut g = c.benchmark_group("auction/vcg_two_class_bidders_50_nodes");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for bidders in [100, 1_000] {
        let mut inst = instance(bidders, 50, true, 20);
        for b in inst.bids.iter_mut().skip(1).step_by(2) {
            b.request = ResourceRequest {
                cpu_millis: 1500,
                memory_bytes: 1 << 29,
            };
        }
        g.bench_with_input(BenchmarkId::from_parameter(bidders), &inst, |b, inst| {
            b.iter(|| allocate_and_charge(black_box(inst), SolverChoice::Fast).unwrap())
        });
    }
    g.finish();
}

fn full_run(c: &mut Criterion) {
    let mut g = c.benchmark_group("auction/run_with_baselines_and_shapley");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for bidders in [100, 1_000] {
        let input = random_instance(
            GenConfig {
                bidders,
                nodes: 50,
                max_replicas: 20,
                homogeneous: true,
                tenants: 20,
            },
            1,
        );
        g.bench_with_input(BenchmarkId::from_parameter(bidders), &input, |b, input| {
            b.iter(|| run(black_box(input)).unwrap())
        });
    }
    g.finish();
}

fn mip_reference(c: &mut Criterion) {
    let mut g = c.benchmark_group("auction/vcg_mip_reference");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    // Mixed requests stop at 8 × 3: at 10 × 4 one run already takes over 10 s (see the report example).
    for (bidders, nodes, homogeneous) in [
        (5, 2, true),
        (10, 3, true),
        (20, 5, true),
        (40, 10, true),
        (5, 2, false),
        (8, 3, false),
    ] {
        let mut inst = instance(bidders, nodes, homogeneous, 6);
        inst.nodes = inst
            .nodes
            .into_iter()
            .map(|n| NodeCapacity {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                ..n
            })
            .collect();
        let id = format!("{}_{bidders}x{nodes}", if homogeneous { "same" } else { "mixed" });
        g.bench_with_input(BenchmarkId::from_parameter(id), &inst, |b, inst| {
            b.iter(|| allocate_and_charge(black_box(inst), SolverChoice::Mip).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, fast_path, two_class, full_run, mip_reference);
criterion_main!(benches);
