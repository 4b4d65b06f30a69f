//! Constraint violations that appeared after placement: the pod's node is now on its agent's
//! avoid-list, shares the node with another tenant under strict isolation, no longer matches
//! the pod's node selector (a label changed), or lies beyond the agent's maximum distance from
//! its (moved) target.
//!
//! Input: the shared [`PlanContext`] and [`ClusterState`] and [`Args`]. Output: nominated pods
//! ([`nominate`]) and this strategy's objective term ([`gain`]): `penalty` per tick for a pod
//! that violates a checked constraint where it is. Destinations never violate (the planner only
//! considers nodes that pass `placement::filter` and [`selector_matches`]), so a move of a
//! violating pod gains `penalty · H` over a horizon of H ticks.
//!
//! Isolation is broken by two tenants, but one of them moving is enough: only pods of tenants
//! other than the node's *majority tenant* (most pods; ties: smallest name) are nominated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::{ClusterState, PlanContext};
use super::{Candidate, Pod, Strategy};
use crate::geometry::poincare;

/// Arguments of the violations strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Args {
    pub enabled: bool,
    /// Objective gain per tick of ending one violation.
    pub penalty: f64,
    pub avoid_list: bool,
    pub tenant_isolation: bool,
    pub node_selector: bool,
    pub max_distance: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            enabled: true,
            penalty: 100.0,
            avoid_list: true,
            tenant_isolation: true,
            node_selector: true,
            max_distance: true,
        }
    }
}

impl Args {
    /// Every problem, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.penalty.is_finite() || self.penalty < 0.0 {
            problems.push(format!(
                "violations.penalty must be finite and ≥ 0, got {}",
                self.penalty
            ));
        }
        if self.enabled && !(self.avoid_list || self.tenant_isolation || self.node_selector || self.max_distance) {
            problems.push(
                "violations: enabled but every check (avoidList, tenantIsolation, nodeSelector, maxDistance) is off"
                    .into(),
            );
        }
        problems
    }
}

/// Every `key: value` of the pod's node selector is among the node's labels.
pub fn selector_matches(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    pod.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The node's majority tenant: most pods, ties by smallest name.
fn majority_tenant(tenants: &BTreeMap<String, (u32, u32)>) -> Option<&str> {
    tenants
        .iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(a.0)))
        .map(|(t, _)| t.as_str())
}

/// What the pod violates where it runs now, if anything.
pub fn violation(ctx: &PlanContext<'_>, state: &ClusterState, args: &Args, pod: usize) -> Option<String> {
    let p = &ctx.snapshot.pods[pod];
    let n = ctx.pod_node[pod];
    let node = &ctx.snapshot.nodes[n];
    let agent = ctx.pod_agent[pod].map(|a| &ctx.snapshot.agents[a]);
    if args.avoid_list
        && let Some(a) = agent
        && a.avoid_nodes.contains(&node.name)
    {
        return Some(format!("node {} is on agent {}'s avoid-list", node.name, a.name));
    }
    if args.node_selector && !selector_matches(p, &node.labels) {
        return Some(format!("node {} no longer matches the pod's nodeSelector", node.name));
    }
    if args.max_distance
        && let Some(a) = ctx.pod_agent[pod]
        && let (Some(max), Some(Some(t0))) = (
            ctx.snapshot.agents[a].max_distance,
            ctx.horizon[a].as_ref().map(|h| h.first()),
        )
    {
        let d = poincare::distance(t0, &node.position, ctx.kappa);
        if d > max {
            return Some(format!(
                "node {} is {d:.2} from agent {}'s target, beyond maxDistance {max}",
                node.name, ctx.snapshot.agents[a].name
            ));
        }
    }
    if args.tenant_isolation {
        let tenants = &state.tenants[n];
        let mine = p.tenant.as_deref().unwrap_or("");
        // Flags before names: most nodes hold no strict pod, and comparing names is the cost.
        let strict_elsewhere = tenants.iter().any(|(t, &(_, strict))| strict > 0 && t != mine);
        if (p.strict_isolation || strict_elsewhere)
            && tenants.keys().any(|t| t != mine)
            && majority_tenant(tenants) != Some(mine)
        {
            return Some(format!(
                "strict tenant isolation: node {} also runs pods of {:?}",
                node.name,
                majority_tenant(tenants).unwrap_or("")
            ));
        }
    }
    None
}

/// Pods that violate a checked constraint where they run, in pod order.
pub fn nominate(ctx: &PlanContext<'_>, state: &ClusterState, args: &Args) -> Vec<Candidate> {
    (0..ctx.snapshot.pods.len())
        .filter_map(|p| {
            violation(ctx, state, args, p).map(|reason| Candidate {
                pod: p,
                strategy: Strategy::Violations,
                reason,
            })
        })
        .collect()
}

/// Per-tick gain: `penalty` when the pod violates a constraint where it is (destinations are
/// feasible, so they do not).
pub fn gain(ctx: &PlanContext<'_>, state: &ClusterState, args: &Args, pod: usize) -> f64 {
    if violation(ctx, state, args, pod).is_some() {
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
    fn defaults_are_valid_and_every_bad_field_is_reported() {
        assert!(Args::default().validate().is_empty());
        let problems = Args {
            penalty: -3.0,
            avoid_list: false,
            tenant_isolation: false,
            node_selector: false,
            max_distance: false,
            ..Args::default()
        }
        .validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("violations.penalty") && problems[1].contains("every check"));
    }

    /// Table: a change to the cluster after placement, and the reason text the pod must get.
    #[test]
    fn each_kind_of_violation_is_detected_and_named() {
        type Change = fn(&mut crate::descheduler::Snapshot);
        let cases: [(&str, Change, Option<&str>); 5] = [
            ("nothing changed", |_| {}, None),
            (
                "node added to the avoid-list",
                |s| {
                    s.agents[0].avoid_nodes.insert("east-1".into());
                },
                Some("avoid-list"),
            ),
            (
                "node label changed",
                |s| {
                    s.nodes[0].labels.insert("disk".into(), "hdd".into());
                },
                Some("nodeSelector"),
            ),
            (
                "maximum distance tightened",
                |s| {
                    s.agents[0].max_distance = Some(0.5);
                    s.agents[0].target = Some(s.nodes[2].position.clone());
                },
                Some("maxDistance"),
            ),
            (
                "a strict tenant arrived with more pods",
                |s| {
                    for i in 0..2 {
                        let mut p = pod(&format!("other-{i}"), "east-1", None);
                        p.tenant = Some("blue".into());
                        p.strict_isolation = true;
                        s.pods.push(p);
                    }
                },
                Some("isolation"),
            ),
        ];
        for (what, change, want) in cases {
            let mut snap = four_node_snapshot();
            snap.nodes[0].labels.insert("disk".into(), "ssd".into());
            let mut p = pod("p", "east-1", Some("a"));
            p.tenant = Some("red".into());
            p.node_selector.insert("disk".into(), "ssd".into());
            snap.pods = vec![p];
            snap.agents = vec![agent_at("a", &snap.nodes[0].position.clone())];
            change(&mut snap);
            let settings = Settings::default();
            let ctx = PlanContext::new(&snap, &settings).unwrap();
            let state = ClusterState::new(&ctx);
            let got = violation(&ctx, &state, &settings.violations, 0);
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(reason)) => assert!(reason.contains(w), "{what}: {reason}"),
                _ => panic!("{what}: expected {want:?}, got {got:?}"),
            }
            let g = gain(&ctx, &state, &settings.violations, 0);
            assert_eq!(g > 0.0, want.is_some(), "{what}");
        }
    }

    #[test]
    fn only_the_minority_tenant_is_nominated_under_isolation() {
        let mut snap = four_node_snapshot();
        let mk = |name: &str, tenant: &str| {
            let mut p = pod(name, "east-1", None);
            p.tenant = Some(tenant.into());
            p.strict_isolation = true;
            p
        };
        snap.pods = vec![mk("r1", "red"), mk("r2", "red"), mk("b1", "blue")];
        let settings = Settings::default();
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        let state = ClusterState::new(&ctx);
        let c = nominate(&ctx, &state, &settings.violations);
        let names: Vec<&str> = c.iter().map(|c| snap.pods[c.pod].name.as_str()).collect();
        assert_eq!(names, ["b1"]);
    }

    #[test]
    fn a_disabled_check_ignores_its_violation() {
        let mut snap = four_node_snapshot();
        let mut p = pod("p", "east-1", Some("a"));
        p.node_selector.insert("disk".into(), "ssd".into());
        snap.pods = vec![p];
        snap.agents = vec![agent_at("a", &snap.nodes[0].position.clone())];
        let settings = Settings::default();
        let args = Args {
            node_selector: false,
            ..Args::default()
        };
        let ctx = PlanContext::new(&snap, &settings).unwrap();
        let state = ClusterState::new(&ctx);
        assert!(violation(&ctx, &state, &settings.violations, 0).is_some());
        assert!(violation(&ctx, &state, &args, 0).is_none());
    }
}
