//! MPC solve time per agent at H = 12 (exact DP, MIP and LP-round-up through good_lp/microlp)
//! and for 10,000 agents per tick with the DP solver.

use criterion::{Criterion, criterion_group, criterion_main};
use mom::mpc::{MpcProblem, Solver, plan, plan_with};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn agent(rng: &mut ChaCha8Rng) -> MpcProblem {
    let base = rng.random_range(20.0..400.0);
    let demand = (0..12)
        .map(|t| base * (1.0 + 0.3 * (t as f64 / 3.0).sin()) + rng.random_range(0.0..20.0))
        .collect();
    MpcProblem {
        demand,
        capacity_per_replica: 10.0,
        price_per_replica: 1.0,
        shortfall_penalty: 9.9,
        change_penalty: 0.5,
        current_replicas: rng.random_range(1..50),
        min_replicas: 1,
        max_replicas: 100,
        max_step_up: 10,
        max_step_down: 10,
        cooldown_remaining: 0,
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let one = agent(&mut rng);
    let mut g = c.benchmark_group("mpc_h12_one_agent");
    g.bench_function("dynamic_programming", |b| b.iter(|| plan(&one).unwrap()));
    g.bench_function("mip_good_lp_microlp", |b| {
        b.iter(|| plan_with(&one, Solver::Mip).unwrap())
    });
    g.bench_function("lp_round_up_good_lp_microlp", |b| {
        b.iter(|| plan_with(&one, Solver::LpRoundUp).unwrap())
    });
    g.finish();
    let agents: Vec<MpcProblem> = (0..10_000).map(|_| agent(&mut rng)).collect();
    let mut g = c.benchmark_group("mpc_h12_tick");
    g.sample_size(10);
    g.bench_function("10000_agents_dynamic_programming", |b| {
        b.iter(|| agents.iter().map(|p| plan(p).unwrap().first()).sum::<u32>())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
