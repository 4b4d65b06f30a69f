//! Descheduler planning time: one tick on a synthetic drifted cluster of 240 pods / 100 nodes
//! and of 10,000 pods / 1,000 nodes (the target: < 1 s for the latter).

use criterion::{Criterion, criterion_group, criterion_main};
use mom::descheduler::synthetic::{SyntheticSpec, drifted_cluster};
use mom::descheduler::{Settings, plan_standalone};

fn bench(c: &mut Criterion) {
    let settings = Settings::default();
    let mut g = c.benchmark_group("deschedule_plan_one_tick");
    g.sample_size(10);
    for (pods, nodes) in [(240, 100), (10_000, 1_000)] {
        let cluster = drifted_cluster(&SyntheticSpec { pods, nodes, seed: 1 }).unwrap();
        g.bench_function(format!("{pods}_pods_{nodes}_nodes"), |b| {
            b.iter(|| plan_standalone(&cluster.snapshot, &settings).unwrap().moves.len())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
