//! Geometry hot paths: ball distance (ns/op), Sarkar embedding of a ~10,000-leaf topology,
//! latency embedding of PlanetLab 490×490, one greedy route on the largest topozoo graph.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mom::geometry::{data, latency, poincare, routing, tree};

fn distance(c: &mut Criterion) {
    for dim in [2usize, 10, 128, 512] {
        let x: Vec<f64> = (0..dim)
            .map(|i| ((i as f64) * 0.7).sin() * 0.5 / (dim as f64).sqrt())
            .collect();
        let y: Vec<f64> = (0..dim)
            .map(|i| ((i as f64) * 0.3).cos() * 0.5 / (dim as f64).sqrt())
            .collect();
        c.bench_function(&format!("poincare_distance_d{dim}"), |b| {
            b.iter(|| poincare::distance(black_box(&x), black_box(&y), black_box(1.0)))
        });
    }
}

fn topology(c: &mut Criterion) {
    let wide = tree::balanced_paths(22, 3).expect("valid"); // 10,648 leaves
    let thin = tree::balanced_paths(2, 13).expect("valid"); // 8,192 leaves, depth 13
    let mut g = c.benchmark_group("sarkar_embedding");
    g.sample_size(20);
    g.bench_function("fanout22_depth3_10648_leaves", |b| {
        b.iter(|| tree::TreeEmbedding::from_paths(black_box(&wide), tree::SarkarConfig::default()))
    });
    g.bench_function("fanout2_depth13_8192_leaves", |b| {
        b.iter(|| tree::TreeEmbedding::from_paths(black_box(&thin), tree::SarkarConfig::default()))
    });
    g.finish();
}

fn latency_embedding(c: &mut Criterion) {
    let m =
        data::load_rtt_matrix(&data::data_dir().join("NetLatency/PlanetLab/PlanetLabData_1")).expect("PlanetLab data");
    let (train, _) = latency::holdout_split(&m, 0.2, 1).expect("split");
    let mut g = c.benchmark_group("latency_embedding_planetlab_490");
    g.sample_size(10);
    // One restart of 100 full-batch epochs; the CLI default (3 × 1500) costs ≈ 45× this.
    let cfg = latency::HyperbolicConfig {
        dim: 5,
        epochs: 100,
        restarts: 1,
        ..Default::default()
    };
    g.bench_function("hyperbolic_d5_100_epochs", |b| {
        b.iter(|| latency::fit_hyperbolic(m.n, black_box(&train), &cfg))
    });
    let v = latency::VivaldiConfig::default();
    g.bench_function("vivaldi_4000_rounds", |b| {
        b.iter(|| latency::fit_vivaldi(m.n, black_box(&train), &v))
    });
    g.finish();
}

fn greedy_route(c: &mut Criterion) {
    let g = data::load_node_link(&data::data_dir().join("TopoHub/topozoo/TataNld.json")).expect("graph");
    let sp = routing::shortest_path_delays(&g);
    let emb = routing::Embedding::spt_sarkar(&g, &sp, tree::SarkarConfig::default()).expect("embed");
    let n = g.node_count();
    c.bench_function("greedy_route_tatanld_143_nodes_one_pair", |b| {
        b.iter(|| {
            routing::route(
                &g,
                &emb,
                black_box(0),
                black_box(n - 1),
                routing::Policy::DelayAware,
                None,
            )
        })
    });
    let fit = latency::HyperbolicConfig {
        dim: 4,
        epochs: 800,
        restarts: 1,
        ..Default::default()
    };
    let hybrid = routing::Embedding::hybrid(&g, &sp, tree::SarkarConfig::default(), &fit, false).expect("embed");
    c.bench_function("hybrid_route_tatanld_143_nodes_one_pair", |b| {
        b.iter(|| {
            routing::route(
                &g,
                &hybrid,
                black_box(0),
                black_box(n - 1),
                routing::Policy::DelayAware,
                None,
            )
        })
    });
    let mut grp = c.benchmark_group("route_all_pairs");
    grp.sample_size(10);
    grp.bench_function("greedy_tatanld_all_20306_pairs", |b| {
        b.iter(|| routing::evaluate(&g, &sp, &emb, routing::Policy::DelayAware, 1))
    });
    grp.finish();
}

criterion_group!(benches, distance, topology, latency_embedding, greedy_route);
criterion_main!(benches);
