//! Time of one scaler decision per agent (`scaling_policy::decide`), as the operator runs it at
//! its defaults: predictive with Holt-Winters on one hour of 15 s samples (240 points, a daily-ish
//! wave with noise) and a 900 s horizon (60 stages), and reactive (the HPA) on the current value.

use criterion::{Criterion, criterion_group, criterion_main};
use mom::hpa::HpaState;
use mom::scaling_policy::{DecisionInputs, HpaSync, Method, PolicySettings, decide};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn history(n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|t| 200.0 + 80.0 * (t as f64 / 40.0).sin() + rng.random_range(0.0..20.0))
        .collect()
}

fn inputs(method: Method, demand: Vec<f64>) -> DecisionInputs {
    let settings = PolicySettings::new(method, 1, 100, 20.0);
    let hpa = (method == Method::Reactive).then(|| HpaSync {
        state: HpaState::new(settings.hpa_config()).unwrap(),
        now_seconds: 1000.0,
    });
    DecisionInputs {
        settings,
        demand,
        current_replicas: 12,
        ready_replicas: 12,
        since_last_change_seconds: None,
        hpa,
        other_targets: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling_decision_one_agent");
    let predictive = inputs(Method::Predictive, history(240));
    g.bench_function("predictive_holt_winters_240_points_h60", |b| {
        b.iter(|| decide(&predictive).unwrap())
    });
    let reactive = inputs(Method::Reactive, vec![300.0]);
    g.bench_function("reactive_hpa", |b| b.iter(|| decide(&reactive).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
