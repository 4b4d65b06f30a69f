//! PPO training of the learned scaling policy in the simulator, on the operator's own decision
//! path: every sync builds the scaler's demand window ([`OperatorPolicy::window`]) and the
//! count comes from [`crate::scaling_policy::learned_decision`], the function `decide` runs;
//! only the action is sampled instead of taken by arg-max.
//!
//! **Episodes**: segments of `segment_seconds` cut from the training traces at random (trace
//! and start drawn from the seed), each replayed by [`crate::simulator::simulate_with`] on the
//! trace's [`ClusterModel::for_trace`] (capacity = p95/10, 60 s start-up, 15 s syncs).
//!
//! **Reward** of the decision at sync k, over the sync period that follows it:
//! `r_k = −(c · violation_minutes_k + replica_hours_k + k_Δ · [desired_k ≠ current_k]) / (r̄ · sync/3600)`,
//! with `c` ([`TrainConfig::violation_minute_cost`]) the replica-hours one SLO-violation minute
//! costs, `k_Δ` ([`TrainConfig::change_cost`], 0 by default) the replica-hours one scaling
//! action costs, and `r̄` the segment's mean replicas needed, so a segment that is provisioned
//! exactly earns about −1 per sync whatever the trace's size.
//!
//! **PPO** (Schulman et al. 2017): clipped surrogate `min(ρÂ, clip(ρ, 1 ± ε)Â)` with
//! `ρ = π(a|x)/π_old(a|x)`, advantages by GAE(γ, λ) normalised per batch, an entropy bonus, and a
//! separate value network (`V = v₂·tanh(V₁x + c₁) + c₂`) fitted to the returns by squared
//! error; Adam on both. Rewards are scaled by `1 − γ` so returns stay near −1.
//!
//! Deterministic: every draw comes from ChaCha8 seeded by `(seed, iteration, segment)` or
//! `(seed, iteration)`, segments are simulated on threads but gathered by index, so the same
//! seed and traces give the same model bit for bit on one platform.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use super::{ACTIONS, B1, B2, FEATURES, HIDDEN, LearnedModel, PARAMS, Provenance, W1, W2, Window, features, logits};
use crate::scaling_policy::{Method, PolicyError, learned_decision};
use crate::simulator::{ClusterModel, Observation, OperatorPolicy, OperatorPolicyConfig, SimError, simulate_with};

/// Errors of training; each names the setting or trace at fault.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error("train: no training traces")]
    NoTraces,
    #[error("train: {field} must be {rule}, got {value}")]
    BadSetting {
        field: &'static str,
        rule: &'static str,
        value: f64,
    },
    #[error("train: trace {trace}: {source}")]
    Simulation {
        trace: String,
        #[source]
        source: SimError,
    },
    #[error("train: {0}")]
    Policy(#[from] PolicyError),
}

/// A trace to train on, with the cluster it is replayed on.
#[derive(Debug, Clone)]
pub struct TrainingTrace {
    pub name: String,
    pub values: Vec<f64>,
    pub cluster: ClusterModel,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub seed: u64,
    pub iterations: u32,
    /// Segments simulated per iteration.
    pub segments: usize,
    /// Length of one segment (shorter traces are used whole).
    pub segment_seconds: f64,
    /// Replica-hours one SLO-violation minute costs in the reward (> 0).
    pub violation_minute_cost: f64,
    /// Replica-hours one scaling action (a change of the replica count) costs in the reward
    /// (≥ 0; 0 leaves changes free).
    pub change_cost: f64,
    /// The MomConfig objectives `violation_minute_cost` came from, if it did (kept in the
    /// model's provenance; training reads only the cost).
    pub objectives: Option<crate::placement::Objectives>,
    /// Seconds of demand history the scaler queries (the window the features read).
    pub history_seconds: f64,
    /// The strategy's cooldown in the simulated policy.
    pub cooldown_seconds: f64,
    pub gamma: f64,
    pub lambda: f64,
    pub clip: f64,
    pub entropy: f64,
    pub epochs: usize,
    pub minibatch: usize,
    pub learning_rate: f64,
    pub value_learning_rate: f64,
    /// Threads simulating segments (the model does not depend on it).
    pub threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            iterations: 40,
            segments: 8,
            segment_seconds: 86_400.0,
            violation_minute_cost: 1.0,
            change_cost: 0.0,
            objectives: None,
            history_seconds: 3600.0,
            cooldown_seconds: 60.0,
            gamma: 0.99,
            lambda: 0.95,
            clip: 0.2,
            entropy: 0.01,
            epochs: 4,
            minibatch: 512,
            learning_rate: 3e-3,
            value_learning_rate: 3e-3,
            threads: 1,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let checks = [
            (
                "violation_minute_cost",
                self.violation_minute_cost,
                "finite and > 0",
                self.violation_minute_cost > 0.0,
            ),
            (
                "change_cost",
                self.change_cost,
                "finite and ≥ 0",
                self.change_cost >= 0.0,
            ),
            (
                "segment_seconds",
                self.segment_seconds,
                "finite and > 0",
                self.segment_seconds > 0.0,
            ),
            ("gamma", self.gamma, "in (0, 1)", self.gamma > 0.0 && self.gamma < 1.0),
            ("lambda", self.lambda, "in [0, 1]", (0.0..=1.0).contains(&self.lambda)),
            ("clip", self.clip, "in (0, 1)", self.clip > 0.0 && self.clip < 1.0),
            ("entropy", self.entropy, "finite and ≥ 0", self.entropy >= 0.0),
            (
                "learning_rate",
                self.learning_rate,
                "finite and > 0",
                self.learning_rate > 0.0,
            ),
            (
                "value_learning_rate",
                self.value_learning_rate,
                "finite and > 0",
                self.value_learning_rate > 0.0,
            ),
            ("segments", self.segments as f64, "≥ 1", self.segments >= 1),
            ("epochs", self.epochs as f64, "≥ 1", self.epochs >= 1),
            ("minibatch", self.minibatch as f64, "≥ 1", self.minibatch >= 1),
        ];
        for (field, value, rule, ok) in checks {
            if !(ok && value.is_finite()) {
                return Err(TrainError::BadSetting { field, rule, value });
            }
        }
        Ok(())
    }
}

/// What one iteration did (for progress and the model's report).
#[derive(Debug, Clone, PartialEq)]
pub struct IterationStats {
    pub iteration: u32,
    /// Mean reward per sync of the iteration's samples.
    pub mean_reward: f64,
    /// Summed over the iteration's segments.
    pub violation_minutes: f64,
    pub replica_hours: f64,
    /// Mean headroom chosen.
    pub mean_headroom: f64,
    /// Scaling actions (changes of the replica count), summed over the segments.
    pub changes: usize,
}

const V_W1: usize = 0;
const V_B1: usize = V_W1 + HIDDEN * FEATURES;
const V_W2: usize = V_B1 + HIDDEN;
const V_B2: usize = V_W2 + HIDDEN;
const V_PARAMS: usize = V_B2 + 1;

/// One decision of a rollout.
#[derive(Debug, Clone, Copy)]
struct Step {
    x: [f64; FEATURES],
    action: usize,
    logp: f64,
    value: f64,
    reward: f64,
    /// The decision changed the replica count.
    changed: bool,
}

/// Adam state for one parameter vector.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
    lr: f64,
}

impl Adam {
    fn new(n: usize, lr: f64) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            lr,
        }
    }

    fn step(&mut self, w: &mut [f64], g: &[f64]) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        for i in 0..w.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * g[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * g[i] * g[i];
            w[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

fn softmax(z: &[f64; ACTIONS]) -> [f64; ACTIONS] {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p = z.map(|v| (v - max).exp());
    let sum: f64 = p.iter().sum();
    for v in &mut p {
        *v /= sum;
    }
    p
}

fn value(v: &[f64], x: &[f64; FEATURES]) -> (f64, [f64; HIDDEN]) {
    let mut h = [0.0; HIDDEN];
    let mut out = v[V_B2];
    for (j, hj) in h.iter_mut().enumerate() {
        let mut a = v[V_B1 + j];
        for (i, xi) in x.iter().enumerate() {
            a += v[V_W1 + j * FEATURES + i] * xi;
        }
        *hj = a.tanh();
        out += v[V_W2 + j] * *hj;
    }
    (out, h)
}

/// Seeded initial weights: `W₁ ~ U(±1/√F)`, output layers near 0 (a uniform first policy).
fn initial(rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<f64>) {
    let scale = 1.0 / (FEATURES as f64).sqrt();
    let mut w = vec![0.0; PARAMS];
    for x in &mut w[W1..B1] {
        *x = rng.random_range(-scale..scale);
    }
    for x in &mut w[W2..B2] {
        *x = rng.random_range(-0.01..0.01);
    }
    let mut v = vec![0.0; V_PARAMS];
    for x in &mut v[V_W1..V_B1] {
        *x = rng.random_range(-scale..scale);
    }
    for x in &mut v[V_W2..V_B2] {
        *x = rng.random_range(-0.01..0.01);
    }
    v[V_B2] = -1.0;
    (w, v)
}

fn stream(seed: u64, iteration: u32, segment: usize) -> ChaCha8Rng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..12].copy_from_slice(&iteration.to_le_bytes());
    s[12..20].copy_from_slice(&(segment as u64).to_le_bytes());
    ChaCha8Rng::from_seed(s)
}

/// One segment replayed under the sampling policy `w`: its steps (rewards filled in), violation
/// minutes and replica-hours.
fn rollout(
    trace: &TrainingTrace,
    start: usize,
    bins: usize,
    w: &[f64],
    v: &[f64],
    cfg: &TrainConfig,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<Step>, f64, f64), TrainError> {
    let demand = &trace.values[start..start + bins];
    let cluster = &trace.cluster;
    let fail = |source| TrainError::Simulation {
        trace: trace.name.clone(),
        source,
    };
    let mut settings = OperatorPolicyConfig::new(Method::Learned);
    settings.history_seconds = cfg.history_seconds;
    settings.settings.cooldown_seconds = cfg.cooldown_seconds;
    settings.settings.learned = Some(LearnedModel::new(w.to_vec(), Provenance::default()));
    let scaler = OperatorPolicy::new(&settings, cluster).map_err(fail)?;
    let policy = scaler.settings().clone();
    let needed: f64 = demand.iter().map(|d| d / cluster.capacity_per_replica).sum::<f64>() / bins as f64;
    let norm = needed.max(1.0) * cluster.sync_seconds / 3600.0;
    let mut last_change: Option<f64> = None;
    let mut steps: Vec<Step> = Vec::new();
    let mut decide = |obs: &Observation<'_>| -> Result<u32, SimError> {
        let window = scaler.window(obs);
        let win = Window {
            demand: &window,
            per_replica: cluster.capacity_per_replica,
            current: obs.spec_replicas,
            ready: obs.ready_replicas.min(obs.spec_replicas),
            step_seconds: cluster.sync_seconds,
        };
        let x = features(&win);
        let p = softmax(&logits(w, &x).0);
        let mut u: f64 = rng.random();
        let mut action = ACTIONS - 1;
        for (k, pk) in p.iter().enumerate() {
            if u < *pk {
                action = k;
                break;
            }
            u -= pk;
        }
        let cooling = last_change
            .map(|t| obs.now - t)
            .filter(|since| *since < policy.cooldown_seconds)
            .map(|since| policy.cooldown_seconds - since);
        let desired = learned_decision(&win, &policy, cooling, action, String::new()).desired;
        let changed = desired != obs.spec_replicas;
        if changed {
            last_change = Some(obs.now);
        }
        steps.push(Step {
            x,
            action,
            logp: p[action].max(1e-300).ln(),
            value: value(v, &x).0,
            reward: if changed { -cfg.change_cost / norm } else { 0.0 },
            changed,
        });
        Ok(desired)
    };
    let initial = cluster.replicas_for(demand[0]);
    let report = simulate_with(demand, cluster, "learned", initial, &mut decide, &mut |_| {}).map_err(fail)?;
    let sync = cluster.sync_seconds;
    let tick = report
        .timeline
        .windows(2)
        .next()
        .map_or(sync, |pair| pair[1].time_seconds - pair[0].time_seconds);
    for s in &report.timeline {
        let k = ((s.time_seconds / sync).floor() as usize).min(steps.len().saturating_sub(1));
        let violated = s.demand > s.ready_capacity * (1.0 + 1e-12);
        let cost = cfg.violation_minute_cost * if violated { tick / 60.0 } else { 0.0 }
            + f64::from(s.replicas) * tick / 3600.0;
        if let Some(step) = steps.get_mut(k) {
            step.reward -= cost / norm;
        }
    }
    Ok((steps, report.slo_violation_minutes, report.replica_hours))
}

/// Trains a policy on `traces` (see the module doc); `progress` hears each iteration.
pub fn train(
    traces: &[TrainingTrace],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&IterationStats),
) -> Result<(LearnedModel, Vec<IterationStats>), TrainError> {
    cfg.validate()?;
    if traces.is_empty() {
        return Err(TrainError::NoTraces);
    }
    let mut rng = stream(cfg.seed, u32::MAX, usize::MAX);
    let (mut w, mut v) = initial(&mut rng);
    let mut adam_w = Adam::new(PARAMS, cfg.learning_rate);
    let mut adam_v = Adam::new(V_PARAMS, cfg.value_learning_rate);
    let mut history = Vec::new();
    for iteration in 0..cfg.iterations {
        // Draw the segments first (trace and start), then simulate them on threads.
        let mut draw = stream(cfg.seed, iteration, usize::MAX);
        let plan: Vec<(usize, usize, usize)> = (0..cfg.segments)
            .map(|_| {
                let t = draw.random_range(0..traces.len());
                let tr = &traces[t];
                let bins = ((cfg.segment_seconds / tr.cluster.bin_seconds).round() as usize).clamp(1, tr.values.len());
                let start = draw.random_range(0..=tr.values.len() - bins);
                (t, start, bins)
            })
            .collect();
        let results = run_segments(traces, &plan, &w, &v, cfg, iteration)?;
        let mut batch: Vec<(Step, f64, f64)> = Vec::new(); // step, advantage, return
        let (mut viol, mut rh, mut reward_sum, mut headroom_sum) = (0.0, 0.0, 0.0, 0.0);
        let mut changes = 0;
        for (steps, vm, rhs) in results {
            viol += vm;
            rh += rhs;
            let scale = 1.0 - cfg.gamma;
            let mut adv = 0.0;
            let mut next_value = steps.last().map_or(0.0, |s| s.value);
            let mut out = vec![(0.0, 0.0); steps.len()];
            for k in (0..steps.len()).rev() {
                let s = &steps[k];
                let delta = s.reward * scale + cfg.gamma * next_value - s.value;
                adv = delta + cfg.gamma * cfg.lambda * adv;
                out[k] = (adv, adv + s.value);
                next_value = s.value;
            }
            for (s, (a, r)) in steps.into_iter().zip(out) {
                reward_sum += s.reward;
                headroom_sum += super::HEADROOMS[s.action];
                changes += usize::from(s.changed);
                batch.push((s, a, r));
            }
        }
        let n = batch.len().max(1) as f64;
        let mean_adv = batch.iter().map(|b| b.1).sum::<f64>() / n;
        let std_adv = (batch.iter().map(|b| (b.1 - mean_adv).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-8);
        for b in &mut batch {
            b.1 = (b.1 - mean_adv) / std_adv;
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        let mut shuffle = stream(cfg.seed, iteration, usize::MAX - 1);
        for _ in 0..cfg.epochs {
            for i in (1..order.len()).rev() {
                let j = shuffle.random_range(0..=i);
                order.swap(i, j);
            }
            for chunk in order.chunks(cfg.minibatch) {
                let (gw, gv) = gradients(&w, &v, chunk.iter().map(|&i| &batch[i]), cfg);
                adam_w.step(&mut w, &gw);
                adam_v.step(&mut v, &gv);
            }
        }
        let stats = IterationStats {
            iteration,
            mean_reward: reward_sum / n,
            violation_minutes: viol,
            replica_hours: rh,
            mean_headroom: headroom_sum / n,
            changes,
        };
        progress(&stats);
        history.push(stats);
    }
    let provenance = Provenance {
        seed: cfg.seed,
        traces: traces.iter().map(|t| t.name.clone()).collect(),
        iterations: cfg.iterations,
        violation_minute_cost: cfg.violation_minute_cost,
        change_cost: cfg.change_cost,
        objectives: cfg.objectives,
    };
    Ok((LearnedModel::new(w, provenance), history))
}

type Segment = (Vec<Step>, f64, f64);

fn run_segments(
    traces: &[TrainingTrace],
    plan: &[(usize, usize, usize)],
    w: &[f64],
    v: &[f64],
    cfg: &TrainConfig,
    iteration: u32,
) -> Result<Vec<Segment>, TrainError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Segment, TrainError>>> = (0..plan.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..cfg.threads.clamp(1, plan.len()) {
            let (tx, next) = (tx.clone(), &next);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(t, start, bins)) = plan.get(i) else { break };
                    let mut rng = stream(cfg.seed, iteration, i);
                    let run = rollout(&traces[t], start, bins, w, v, cfg, &mut rng);
                    if tx.send((i, run)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, run) in rx {
            results[i] = Some(run);
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(TrainError::NoTraces)))
        .collect()
}

/// Mean gradients over a minibatch: the clipped surrogate with the entropy bonus (policy), the
/// squared error to the return (value).
fn gradients<'a>(
    w: &[f64],
    v: &[f64],
    batch: impl Iterator<Item = &'a (Step, f64, f64)>,
    cfg: &TrainConfig,
) -> (Vec<f64>, Vec<f64>) {
    let mut gw = vec![0.0; PARAMS];
    let mut gv = vec![0.0; V_PARAMS];
    let mut count = 0usize;
    for (s, adv, ret) in batch {
        count += 1;
        let (z, h) = logits(w, &s.x);
        let p = softmax(&z);
        let ratio = (p[s.action].max(1e-300).ln() - s.logp).exp();
        // d(−surrogate)/d log π(a): −ρÂ unless the clipped term is the one taken.
        let clipped = (*adv > 0.0 && ratio > 1.0 + cfg.clip) || (*adv < 0.0 && ratio < 1.0 - cfg.clip);
        let g = if clipped { 0.0 } else { -ratio * adv };
        let entropy: f64 = -p.iter().map(|&q| if q > 0.0 { q * q.ln() } else { 0.0 }).sum::<f64>();
        let mut dz = [0.0; ACTIONS];
        for (j, d) in dz.iter_mut().enumerate() {
            let onehot = if j == s.action { 1.0 } else { 0.0 };
            let log_p = p[j].max(1e-300).ln();
            *d = g * (onehot - p[j]) + cfg.entropy * p[j] * (log_p + entropy);
        }
        let mut dh = [0.0; HIDDEN];
        for (k, dzk) in dz.iter().enumerate() {
            gw[B2 + k] += dzk;
            for j in 0..HIDDEN {
                gw[W2 + k * HIDDEN + j] += dzk * h[j];
                dh[j] += dzk * w[W2 + k * HIDDEN + j];
            }
        }
        for j in 0..HIDDEN {
            let da = dh[j] * (1.0 - h[j] * h[j]);
            gw[B1 + j] += da;
            for i in 0..FEATURES {
                gw[W1 + j * FEATURES + i] += da * s.x[i];
            }
        }
        let (out, vh) = value(v, &s.x);
        let dv = out - ret;
        gv[V_B2] += dv;
        for j in 0..HIDDEN {
            gv[V_W2 + j] += dv * vh[j];
            let da = dv * v[V_W2 + j] * (1.0 - vh[j] * vh[j]);
            gv[V_B1 + j] += da;
            for i in 0..FEATURES {
                gv[V_W1 + j * FEATURES + i] += da * s.x[i];
            }
        }
    }
    let n = count.max(1) as f64;
    for g in gw.iter_mut().chain(gv.iter_mut()) {
        *g /= n;
    }
    (gw, gv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One trace of 5-minute bins, one replica per 10 of demand.
    fn traces(name: &str, values: Vec<f64>) -> Vec<TrainingTrace> {
        let cluster = ClusterModel {
            capacity_per_replica: 10.0,
            startup_seconds: 60.0,
            bin_seconds: 300.0,
            sync_seconds: 15.0,
            min_replicas: 1,
            max_replicas: 1000,
        };
        vec![TrainingTrace {
            name: name.into(),
            values,
            cluster,
        }]
    }

    #[test]
    fn the_policy_gradient_matches_finite_differences() {
        let mut rng = stream(3, 0, 0);
        let (mut w, v) = initial(&mut rng);
        for x in &mut w[W2..] {
            *x = rng.random_range(-0.5..0.5);
        }
        let cfg = TrainConfig::default();
        let x = [0.3, -0.2, 0.1, 0.5, -0.4, 0.2, 0.0, 0.7, 1.0];
        let p0 = softmax(&logits(&w, &x).0);
        // Old log-probability equal to the current one: ρ = 1, never clipped.
        let step = Step {
            x,
            action: 2,
            logp: p0[2].ln(),
            value: 0.0,
            reward: 0.0,
            changed: false,
        };
        let item = (step, 0.7, 0.0);
        let (g, _) = gradients(&w, &v, std::iter::once(&item), &cfg);
        let loss = |w: &[f64]| {
            let p = softmax(&logits(w, &x).0);
            let ratio = (p[2].ln() - step.logp).exp();
            let entropy: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
            -(ratio * 0.7) - cfg.entropy * entropy
        };
        for i in [W1 + 3, B1 + 5, W2 + 2 * HIDDEN + 4, B2 + 2, B2 + 6] {
            let mut plus = w.clone();
            plus[i] += 1e-6;
            let mut minus = w.clone();
            minus[i] -= 1e-6;
            let numeric = (loss(&plus) - loss(&minus)) / 2e-6;
            assert!((numeric - g[i]).abs() < 1e-6, "weight {i}: {numeric} vs {}", g[i]);
        }
    }

    #[test]
    fn the_same_seed_trains_the_same_model_on_any_number_of_threads() {
        let values: Vec<f64> = (0..200).map(|i| 50.0 + 40.0 * ((i as f64) / 9.0).sin()).collect();
        let traces = traces("sine", values);
        let cfg = TrainConfig {
            iterations: 2,
            segments: 3,
            segment_seconds: 6.0 * 3600.0,
            ..TrainConfig::default()
        };
        let (a, _) = train(&traces, &cfg, &mut |_| {}).unwrap();
        let (b, _) = train(
            &traces,
            &TrainConfig {
                threads: 2,
                ..cfg.clone()
            },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(a.weights, b.weights);
        // Positive control: another seed gives another model.
        let (c, _) = train(&traces, &TrainConfig { seed: 2, ..cfg }, &mut |_| {}).unwrap();
        assert_ne!(a.weights, c.weights);
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn training_learns_to_keep_headroom_when_violations_are_dear() {
        // Demand that jumps by half every few bins: with 60 s start-up, only headroom avoids
        // violations. Dear violations should raise the chosen headroom above the untrained
        // policy's mean (uniform over the headrooms: ~0.41).
        let values: Vec<f64> = (0..400).map(|i| if (i / 3) % 2 == 0 { 40.0 } else { 60.0 }).collect();
        let traces = traces("steps", values);
        let cfg = TrainConfig {
            iterations: 25,
            segments: 4,
            segment_seconds: 6.0 * 3600.0,
            violation_minute_cost: 20.0,
            ..TrainConfig::default()
        };
        let (_, stats) = train(&traces, &cfg, &mut |_| {}).unwrap();
        let first = &stats[0];
        let last = stats.last().unwrap();
        assert!(
            last.mean_reward > first.mean_reward,
            "reward {} → {}",
            first.mean_reward,
            last.mean_reward
        );
        assert!(
            last.violation_minutes < first.violation_minutes,
            "violations {} → {}",
            first.violation_minutes,
            last.violation_minutes
        );
    }

    #[test]
    fn a_price_on_changes_costs_exactly_the_changing_decisions_and_training_under_it_changes_less() {
        let values: Vec<f64> = (0..400)
            .map(|i| 50.0 + 15.0 * (f64::from(i) / 7.0).sin() + if i % 23 < 3 { 20.0 } else { 0.0 })
            .collect();
        let traces = traces("wavy", values);
        let free = TrainConfig {
            segment_seconds: 6.0 * 3600.0,
            ..TrainConfig::default()
        };
        let priced = TrainConfig {
            change_cost: 2.0,
            ..free.clone()
        };
        // The same sampled decisions (same stream): only the changing ones cost more, by k/norm.
        let (w, v) = initial(&mut stream(1, u32::MAX, usize::MAX));
        let bins = traces[0].values.len();
        let run = |cfg: &TrainConfig| {
            rollout(&traces[0], 0, bins, &w, &v, cfg, &mut stream(1, 0, 0))
                .unwrap()
                .0
        };
        let (a, b) = (run(&free), run(&priced));
        assert_eq!(a.len(), b.len());
        let needed = traces[0]
            .values
            .iter()
            .map(|d| d / traces[0].cluster.capacity_per_replica)
            .sum::<f64>()
            / bins as f64;
        let norm = needed.max(1.0) * traces[0].cluster.sync_seconds / 3600.0;
        let changing = a.iter().filter(|s| s.changed).count();
        assert!(changing > 0, "the untrained policy changes the count");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.action, x.changed), (y.action, y.changed));
            let expected = if x.changed { 2.0 / norm } else { 0.0 };
            assert!(
                (x.reward - y.reward - expected).abs() < 1e-9,
                "{} vs {}",
                x.reward,
                y.reward
            );
        }
        // Trained under a high price, the policy changes the count less than trained without.
        let train_cfg = |change_cost| TrainConfig {
            iterations: 12,
            segments: 4,
            segment_seconds: 3.0 * 3600.0,
            change_cost,
            ..free.clone()
        };
        let last_changes = |cfg: TrainConfig| train(&traces, &cfg, &mut |_| {}).unwrap().1.last().unwrap().changes;
        let (without, with) = (last_changes(train_cfg(0.0)), last_changes(train_cfg(20.0)));
        eprintln!("changes in the last iteration: {with} priced, {without} free");
        assert!(
            with < without,
            "changes in the last iteration: {with} priced, {without} free"
        );
    }

    #[test]
    fn bad_settings_and_no_traces_are_refused_naming_them() {
        let cfg = TrainConfig {
            violation_minute_cost: 0.0,
            ..TrainConfig::default()
        };
        let e = train(&[], &cfg, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("violation_minute_cost"), "{e}");
        let e = train(
            &[],
            &TrainConfig {
                change_cost: -1.0,
                ..TrainConfig::default()
            },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("change_cost must be finite and ≥ 0, got -1"),
            "{e}"
        );
        let e = train(&[], &TrainConfig::default(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, TrainError::NoTraces));
    }
}
