//! Load imbalance on real usage: pods on nodes whose measured utilisation is above a threshold.
//!
//! Input: the shared [`PlanContext`] and [`ClusterState`] (real usage per node, updated as moves
//! are chosen) and [`Args`]. Output: nominated pods ([`nominate`]) and this strategy's
//! objective term ([`gain`]).
//!
//! Utilisation of node n: `u(n) = max(used_cpu / alloc_cpu, used_mem / alloc_mem)` (real usage,
//! not requests — requests are what the scheduler already balances). Every pod on a node with
//! `u > highThreshold` is nominated. The term penalises the squared excess over the threshold,
//! `L = Σ_n max(0, u(n) − high)²`, so moving pod p (usage δ) from s to t gains, per tick,
//! `weight · [L_s + L_t − L_s(−δ) − L_t(+δ)]` — positive only when the source's excess falls
//! by more than the destination's rises, which stops load from just being swapped around.

use serde::{Deserialize, Serialize};

use super::context::{ClusterState, PlanContext, saturating_sub};
use super::{Candidate, Strategy};
use crate::placement::Resources;

/// Arguments of the imbalance strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Args {
    pub enabled: bool,
    /// Utilisation (0…1] above which a node is overloaded.
    pub high_threshold: f64,
    /// Objective gain per unit of squared excess utilisation removed, per tick.
    pub weight: f64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            enabled: true,
            high_threshold: 0.8,
            weight: 200.0,
        }
    }
}

impl Args {
    /// Every problem, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.high_threshold > 0.0 && self.high_threshold <= 1.0) {
            problems.push(format!(
                "imbalance.highThreshold must be in (0, 1], got {}",
                self.high_threshold
            ));
        }
        if !self.weight.is_finite() || self.weight < 0.0 {
            problems.push(format!("imbalance.weight must be finite and ≥ 0, got {}", self.weight));
        }
        problems
    }
}

/// `max(cpu, memory)` fraction of allocatable; a resource with no allocatable counts as full
/// when anything uses it and empty otherwise.
pub fn utilisation(used: Resources, allocatable: Resources) -> f64 {
    let frac = |u: u64, cap: u64| {
        if cap == 0 {
            if u == 0 { 0.0 } else { 1.0 }
        } else {
            u as f64 / cap as f64
        }
    };
    frac(used.cpu_millis, allocatable.cpu_millis).max(frac(used.memory_bytes, allocatable.memory_bytes))
}

fn excess_sq(u: f64, high: f64) -> f64 {
    let e = (u - high).max(0.0);
    e * e
}

/// Non-protected and protected pods alike on overloaded nodes, in pod order (the planner
/// decides what may move).
pub fn nominate(ctx: &PlanContext<'_>, state: &ClusterState, args: &Args) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (p, &n) in ctx.pod_node.iter().enumerate() {
        let u = utilisation(state.used[n], ctx.snapshot.nodes[n].allocatable);
        if u > args.high_threshold {
            out.push(Candidate {
                pod: p,
                strategy: Strategy::Imbalance,
                reason: format!(
                    "node {} is at {:.0}% utilisation (threshold {:.0}%)",
                    ctx.snapshot.nodes[n].name,
                    u * 100.0,
                    args.high_threshold * 100.0
                ),
            });
        }
    }
    out
}

/// Per-tick gain of moving `pod` from `from` to `to` under the current state.
pub fn gain(ctx: &PlanContext<'_>, state: &ClusterState, args: &Args, pod: usize, from: usize, to: usize) -> f64 {
    let delta = ctx.snapshot.pods[pod].usage;
    let (sa, ta) = (ctx.snapshot.nodes[from].allocatable, ctx.snapshot.nodes[to].allocatable);
    let s_before = utilisation(state.used[from], sa);
    let t_before = utilisation(state.used[to], ta);
    let s_after = utilisation(saturating_sub(state.used[from], delta), sa);
    let t_after = utilisation(state.used[to].saturating_add(delta), ta);
    let h = args.high_threshold;
    args.weight * (excess_sq(s_before, h) + excess_sq(t_before, h) - excess_sq(s_after, h) - excess_sq(t_after, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descheduler::Settings;
    use crate::descheduler::testutil::*;

    #[test]
    fn defaults_are_valid_and_every_bad_field_is_reported() {
        assert!(Args::default().validate().is_empty());
        let problems = Args {
            enabled: true,
            high_threshold: 1.5,
            weight: f64::INFINITY,
        }
        .validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("imbalance.highThreshold") && problems[1].contains("imbalance.weight"));
    }

    #[test]
    fn utilisation_is_the_larger_fraction_and_zero_capacity_is_handled() {
        let cases = [
            ((500, 1 << 30), (1000, 4 << 30), 0.5),
            ((100, 3 << 30), (1000, 4 << 30), 0.75),
            ((0, 0), (0, 0), 0.0),
            ((1, 0), (0, 1 << 30), 1.0),
        ];
        for ((uc, um), (ac, am), want) in cases {
            let u = utilisation(res(uc, um), res(ac, am));
            assert!((u - want).abs() < 1e-12, "{uc},{um} of {ac},{am}: {u}");
        }
    }

    #[test]
    fn only_pods_on_nodes_above_the_threshold_are_nominated() {
        let mut snap = four_node_snapshot();
        snap.nodes[0].used = res(3_600, 1 << 30); // 90 % cpu
        snap.nodes[1].used = res(2_000, 1 << 30); // 50 %
        snap.pods = vec![pod("hot", "east-1", None), pod("cool", "east-2", None)];
        let settings = Settings::default();
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        let state = ClusterState::new(&ctx);
        let c = nominate(&ctx, &state, &settings.imbalance);
        assert_eq!(c.len(), 1);
        assert_eq!(snap.pods[c[0].pod].name, "hot");
        assert!(c[0].reason.contains("90%"), "{}", c[0].reason);
    }

    #[test]
    fn moving_load_to_an_idle_node_gains_and_onto_a_hot_node_loses() {
        let mut snap = four_node_snapshot();
        snap.nodes[0].used = res(3_800, 1 << 30); // 95 %
        snap.nodes[1].used = res(500, 1 << 30);
        snap.nodes[2].used = res(3_700, 1 << 30);
        let mut p = pod("hot", "east-1", None);
        p.usage = res(800, 1 << 20);
        snap.pods = vec![p];
        let settings = Settings::default();
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        let state = ClusterState::new(&ctx);
        let to_idle = gain(&ctx, &state, &settings.imbalance, 0, 0, 1);
        let to_hot = gain(&ctx, &state, &settings.imbalance, 0, 0, 2);
        assert!(to_idle > 0.0, "{to_idle}");
        assert!(to_hot < to_idle, "{to_hot} vs {to_idle}");
    }
}
