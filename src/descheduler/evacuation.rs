//! Evacuation: pods on nodes flagged unhealthy (e.g. labelled so by an operator or a health
//! check) or anomalous (anomaly detection on the node's metrics).
//!
//! Input: the shared [`PlanContext`] and [`Args`]. Output: nominated pods ([`nominate`]) and this
//! strategy's objective term ([`gain`]): `penalty` per tick for a pod on a flagged node. The
//! planner never chooses a flagged node as a destination, so every evacuating move gains
//! `penalty · H`; the planner's per-node and total limits pace the drain.

use serde::{Deserialize, Serialize};

use super::context::PlanContext;
use super::{Candidate, Strategy};

/// Arguments of the evacuation strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Args {
    pub enabled: bool,
    /// Objective gain per tick of taking one pod off a flagged node.
    pub penalty: f64,
    /// Also evacuate nodes flagged anomalous (not only unhealthy).
    pub include_anomalous: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            enabled: true,
            penalty: 1000.0,
            include_anomalous: true,
        }
    }
}

impl Args {
    /// Every problem, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.penalty.is_finite() || self.penalty < 0.0 {
            problems.push(format!(
                "evacuation.penalty must be finite and ≥ 0, got {}",
                self.penalty
            ));
        }
        problems
    }
}

/// Why node `n` must be drained under `args`, if it must.
pub fn flag(ctx: &PlanContext<'_>, args: &Args, n: usize) -> Option<&'static str> {
    let node = &ctx.snapshot.nodes[n];
    if node.unhealthy {
        Some("unhealthy")
    } else if node.anomalous && args.include_anomalous {
        Some("anomalous")
    } else {
        None
    }
}

/// Pods on flagged nodes, in pod order.
pub fn nominate(ctx: &PlanContext<'_>, args: &Args) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (p, &n) in ctx.pod_node.iter().enumerate() {
        if let Some(why) = flag(ctx, args, n) {
            out.push(Candidate {
                pod: p,
                strategy: Strategy::Evacuation,
                reason: format!("node {} is flagged {why}", ctx.snapshot.nodes[n].name),
            });
        }
    }
    out
}

/// Per-tick gain of moving a pod off node `from`.
pub fn gain(ctx: &PlanContext<'_>, args: &Args, from: usize) -> f64 {
    if flag(ctx, args, from).is_some() {
        args.penalty
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descheduler::Settings;
    use crate::descheduler::testutil::*;

    #[test]
    fn defaults_are_valid_and_a_bad_penalty_is_reported() {
        assert!(Args::default().validate().is_empty());
        let problems = Args {
            penalty: f64::NAN,
            ..Args::default()
        }
        .validate();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("evacuation.penalty"), "{problems:?}");
    }

    /// Table: (unhealthy, anomalous, includeAnomalous) → nominated with this word.
    #[test]
    fn pods_on_flagged_nodes_are_nominated_according_to_the_flags() {
        let cases = [
            (false, false, true, None),
            (true, false, true, Some("unhealthy")),
            (false, true, true, Some("anomalous")),
            (false, true, false, None),
            (true, true, false, Some("unhealthy")),
        ];
        for (unhealthy, anomalous, include, want) in cases {
            let mut snap = four_node_snapshot();
            snap.nodes[0].unhealthy = unhealthy;
            snap.nodes[0].anomalous = anomalous;
            snap.pods = vec![pod("p", "east-1", None), pod("q", "east-2", None)];
            let settings = Settings::default();
            let args = Args {
                include_anomalous: include,
                ..Args::default()
            };
            let ctx = PlanContext::new(&snap, &settings).unwrap();
            let c = nominate(&ctx, &args);
            match want {
                None => assert!(c.is_empty(), "{unhealthy} {anomalous} {include}: {c:?}"),
                Some(w) => {
                    assert_eq!(c.len(), 1);
                    assert_eq!(c[0].pod, 0);
                    assert!(c[0].reason.contains(w), "{}", c[0].reason);
                    assert_eq!(gain(&ctx, &args, 0), args.penalty);
                }
            }
            assert_eq!(gain(&ctx, &args, 1), 0.0);
        }
    }
}
