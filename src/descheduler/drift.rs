//! Geometric drift: replicas that sit far from their agent's target in the ball.
//!
//! Input: the shared [`PlanContext`] (each agent's targets over the horizon, node positions) and
//! [`Args`]. Output: nominated pods ([`nominate`]) and this strategy's objective term
//! ([`gain`]).
//!
//! A replica of agent a on node s is nominated when its *excess distance*
//! `e = d(T₀, s) − min_m d(T₀, m)` exceeds `minExcess`: it is further from the agent's target
//! T₀ than the nearest node by more than the slack (the target itself is usually between nodes,
//! so the absolute distance says little). The term counts, over the horizon's predicted
//! targets T₀…T_{H−1} (the target keeps stepping toward the optimum),
//! `gain(s → t) = weight · Σ_h [d(T_h, s) − d(T_h, t)]`.

use serde::{Deserialize, Serialize};

use super::context::PlanContext;
use super::{Candidate, Strategy};
use crate::geometry::poincare;

/// Arguments of the drift strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Args {
    pub enabled: bool,
    /// Objective gain per unit of hyperbolic distance a replica comes closer to its target,
    /// per tick.
    pub weight: f64,
    /// Slack (hyperbolic distance) beyond the nearest node before a replica counts as drifted.
    pub min_excess: f64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 1.0,
            min_excess: 10.0,
        }
    }
}

impl Args {
    /// Every problem, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.weight.is_finite() || self.weight < 0.0 {
            problems.push(format!("drift.weight must be finite and ≥ 0, got {}", self.weight));
        }
        if !self.min_excess.is_finite() || self.min_excess < 0.0 {
            problems.push(format!(
                "drift.minExcess must be finite and ≥ 0, got {}",
                self.min_excess
            ));
        }
        problems
    }
}

/// Pods whose excess distance exceeds `min_excess`, in pod order.
pub fn nominate(ctx: &PlanContext<'_>, args: &Args) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (p, pod_agent) in ctx.pod_agent.iter().enumerate() {
        let Some(a) = *pod_agent else { continue };
        let Some(&here) = ctx.node_distance[a].get(ctx.pod_node[p]) else {
            continue;
        };
        let excess = here - ctx.nearest[a];
        if excess > args.min_excess {
            out.push(Candidate {
                pod: p,
                strategy: Strategy::Drift,
                reason: format!(
                    "replica is {here:.2} from its agent's target; the nearest node is {:.2} (excess {excess:.2} > {})",
                    ctx.nearest[a], args.min_excess
                ),
            });
        }
    }
    out
}

/// `weight · Σ_h [d(T_h, from) − d(T_h, to)]`; 0 for pods without a target.
pub fn gain(ctx: &PlanContext<'_>, args: &Args, pod: usize, from: usize, to: usize) -> f64 {
    gain_from(ctx, args, pod, from, to, &source_distances(ctx, pod, from))
}

/// The terms `d(T_h, from)` of [`gain`] that do not depend on the destination, computed once
/// for all the destinations a scan weighs (`NaN` where `T_h = T₀`, whose distances are at hand).
pub fn source_distances(ctx: &PlanContext<'_>, pod: usize, from: usize) -> Vec<f64> {
    let Some(a) = ctx.pod_agent[pod] else { return Vec::new() };
    let Some(horizon) = &ctx.horizon[a] else {
        return Vec::new();
    };
    let d0 = &ctx.node_distance[a];
    let s = &ctx.snapshot.nodes[from].position;
    horizon
        .iter()
        .skip(if d0.is_empty() { 0 } else { 1 })
        .map(|th| {
            if !d0.is_empty() && same_point(th, &horizon[0]) {
                f64::NAN
            } else {
                poincare::distance(th, s, ctx.kappa)
            }
        })
        .collect()
}

/// [`gain`] given [`source_distances`]`(ctx, pod, from)`: the same sum, term by term.
pub fn gain_from(ctx: &PlanContext<'_>, args: &Args, pod: usize, from: usize, to: usize, source: &[f64]) -> f64 {
    let Some(a) = ctx.pod_agent[pod] else { return 0.0 };
    let Some(horizon) = &ctx.horizon[a] else { return 0.0 };
    let t = &ctx.snapshot.nodes[to].position;
    // h = 0 from the cached distances to T₀.
    let d0 = &ctx.node_distance[a];
    let mut sum = match (d0.get(from), d0.get(to)) {
        (Some(ds), Some(dt)) => ds - dt,
        _ => 0.0,
    };
    for (h, th) in horizon.iter().skip(if d0.is_empty() { 0 } else { 1 }).enumerate() {
        // A target that has reached its optimum stays: T_h = T₀ bit for bit, and the distances
        // are T₀'s, already at hand.
        let at_t0 = !d0.is_empty() && same_point(th, &horizon[0]);
        sum += match (d0.get(from), d0.get(to)) {
            (Some(ds), Some(dt)) if at_t0 => ds - dt,
            _ => source[h] - poincare::distance(th, t, ctx.kappa),
        };
    }
    args.weight * sum
}

/// Whether two points are the same bit for bit (so every function of them is the same).
fn same_point(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descheduler::testutil::*;
    use crate::descheduler::{Settings, context::PlanContext};

    #[test]
    fn defaults_are_valid_and_every_bad_field_is_reported() {
        assert!(Args::default().validate().is_empty());
        let bad = Args {
            enabled: true,
            weight: -1.0,
            min_excess: f64::NAN,
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("drift.weight") && problems[1].contains("drift.minExcess"));
    }

    #[test]
    fn replicas_far_from_the_target_are_nominated_and_near_ones_are_not() {
        // Table: (node of the replica, nominated?)
        let cases = [("east-1", false), ("east-2", false), ("west-1", true), ("west-2", true)];
        for (node, expected) in cases {
            let mut snap = four_node_snapshot();
            snap.pods = vec![pod("p", node, Some("a"))];
            snap.agents = vec![agent_at("a", &snap.nodes[0].position.clone())];
            let settings = Settings::default();
            let ctx = PlanContext::new(&snap, &settings).unwrap();
            let c = nominate(&ctx, &settings.drift);
            assert_eq!(!c.is_empty(), expected, "replica on {node}");
            if expected {
                assert_eq!(c[0].strategy, Strategy::Drift);
                assert!(c[0].reason.contains("excess"), "{}", c[0].reason);
            }
        }
    }

    #[test]
    fn the_gain_is_positive_toward_the_target_and_antisymmetric() {
        let mut snap = four_node_snapshot();
        snap.pods = vec![pod("p", "west-1", Some("a"))];
        snap.agents = vec![agent_at("a", &snap.nodes[0].position.clone())];
        let settings = Settings::default();
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        let (east, west) = (0, 2);
        let toward = gain(&ctx, &settings.drift, 0, west, east);
        let away = gain(&ctx, &settings.drift, 0, east, west);
        assert!(toward > 0.0, "{toward}");
        assert!((toward + away).abs() < 1e-9);
    }

    /// `Σ_h [d(T_h, s) − d(T_h, t)]` term by term, at κ = 1.
    fn direct_sum(horizon: &[Vec<f64>], s: &[f64], t: &[f64]) -> f64 {
        horizon
            .iter()
            .map(|th| poincare::distance(th, s, 1.0) - poincare::distance(th, t, 1.0))
            .sum()
    }

    #[test]
    fn the_gain_is_the_sum_of_distances_over_the_horizon_whether_or_not_the_target_still_moves() {
        let mut snap = four_node_snapshot();
        snap.pods = vec![pod("p", "west-1", Some("a"))];
        let at = snap.nodes[1].position.clone();
        // At its optimum (previous = optimum: T_h = T₀ for every h), and far from it (T_h moves).
        for previous in [Some(at.clone()), Some(vec![-0.5, 0.3])] {
            let mut a = agent_at("a", &at);
            a.previous_target = previous.clone();
            snap.agents = vec![a];
            let settings = Settings::default();
            let ctx = PlanContext::new(&snap, &settings).unwrap();
            let horizon = ctx.horizon[0].as_ref().unwrap();
            let stationary = horizon.iter().all(|t| same_point(t, &horizon[0]));
            assert_eq!(stationary, previous.as_ref() == Some(&at), "{horizon:?}");
            let (from, to) = (2, 0);
            let direct = direct_sum(horizon, &snap.nodes[from].position, &snap.nodes[to].position);
            let g = gain(&ctx, &settings.drift, 0, from, to);
            assert_eq!(
                g.to_bits(),
                (settings.drift.weight * direct).to_bits(),
                "{g} vs {direct}"
            );
        }
    }

    #[test]
    fn the_gain_is_the_sum_of_distances_over_the_horizon_when_the_target_moves_at_every_step() {
        let mut snap = four_node_snapshot();
        snap.pods = vec![pod("p", "west-1", Some("a"))];
        let mut a = agent_at("a", &snap.nodes[1].position.clone());
        a.previous_target = Some(vec![-0.5, 0.3]);
        snap.agents = vec![a];
        let mut settings = Settings::default();
        // Short steps: T₀ … T₃ all differ, so every term of the sum is its own.
        settings.planner.target_step = 0.05;
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        let horizon = ctx.horizon[0].as_ref().unwrap();
        assert_eq!(horizon.len(), 4);
        for (i, x) in horizon.iter().enumerate() {
            assert!(horizon[i + 1..].iter().all(|y| !same_point(x, y)), "{horizon:?}");
        }
        for (from, to) in [(2, 0), (0, 2), (3, 1)] {
            let direct = direct_sum(horizon, &snap.nodes[from].position, &snap.nodes[to].position);
            let g = gain(&ctx, &settings.drift, 0, from, to);
            assert_eq!(
                g.to_bits(),
                (settings.drift.weight * direct).to_bits(),
                "{g} vs {direct}"
            );
        }
    }

    #[test]
    fn pods_without_an_agent_have_no_drift() {
        let mut snap = four_node_snapshot();
        snap.pods = vec![pod("p", "west-1", None)];
        let settings = Settings::default();
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        assert!(nominate(&ctx, &settings.drift).is_empty());
        assert_eq!(gain(&ctx, &settings.drift, 0, 2, 0), 0.0);
    }
}
