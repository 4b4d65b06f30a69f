//! Failover roles of an agent's replicas: which pods serve (`active`) and which wait
//! (`standby`), and which standbys take over when active replicas fail.
//!
//! The roles live in the pod label `mom.hypersync.io/role`; Services select `role=active`. One
//! pure decision per reconcile ([`plan`]), recorded as an `agent.failover` receipt when it
//! promotes or retires anything.

use serde::{Deserialize, Serialize};

/// A strategy's `spec.resilience.failover`, in the terms of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every replica serves.
    ActiveActive,
    /// Standbys in regions without an active replica; promoted when actives fail.
    ActivePassive,
    /// Standbys anywhere; any standby replaces any failed active.
    NPlus1,
}

impl Mode {
    /// Whether the mode keeps standbys.
    pub fn has_standbys(self) -> bool {
        !matches!(self, Mode::ActiveActive)
    }
}

/// A replica's role as its label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Active,
    Standby,
    /// No (or an unknown) role label: made before the mode applied.
    Unlabelled,
}

impl Role {
    /// The label value (`active`, `standby`); `None` for [`Role::Unlabelled`].
    pub fn label(self) -> Option<&'static str> {
        match self {
            Role::Active => Some("active"),
            Role::Standby => Some("standby"),
            Role::Unlabelled => None,
        }
    }

    /// A label value read back (anything else is [`Role::Unlabelled`]).
    pub fn from_label(value: Option<&str>) -> Role {
        match value {
            Some("active") => Role::Active,
            Some("standby") => Role::Standby,
            _ => Role::Unlabelled,
        }
    }
}

/// One live replica as the plan sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    pub name: String,
    pub role: Role,
    /// Ready condition True.
    pub ready: bool,
    /// On a node that failed (NotReady or labelled unhealthy).
    pub failed: bool,
}

/// What to change this reconcile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Standbys relabelled `active`.
    pub promote: Vec<String>,
    /// Failed actives replaced by a promoted standby: deleted (their replacement serves).
    pub retire: Vec<String>,
    /// Pods given their first role (`active` in `active_active`; otherwise actives up to the
    /// demand, then standbys), as (pod, role).
    pub assign: Vec<(String, Role)>,
    /// Actives relabelled `standby`: switching to a mode with standbys, or actives beyond the
    /// demand.
    pub demote: Vec<String>,
}

impl Plan {
    /// Whether the plan promotes or retires anything (what a failover receipt records).
    pub fn fails_over(&self) -> bool {
        !self.promote.is_empty() || !self.retire.is_empty()
    }

    /// Whether anything changes.
    pub fn is_empty(&self) -> bool {
        self.promote.is_empty() && self.retire.is_empty() && self.assign.is_empty() && self.demote.is_empty()
    }
}

/// The role changes for `replicas` (the agent's live pods) given `demand` serving replicas.
///
/// - `active_active`: every pod labelled `standby` is assigned `active` (after a switch from a
///   mode with standbys); nothing else.
/// - With standbys: a healthy active is an `active` pod not on a failed node. While healthy
///   actives are fewer than `demand`, ready standbys not on failed nodes are promoted (by name),
///   and each promotion retires one failed active (by name) if there is one. Unlabelled pods are
///   assigned `active` up to the demand (healthy ones first), then `standby`. Healthy actives
///   beyond the demand are demoted, the last by name first (never below the demand).
///
/// Deterministic: every list is in name order of its candidates.
pub fn plan(mode: Mode, replicas: &[Replica], demand: usize) -> Plan {
    let mut sorted: Vec<&Replica> = replicas.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Plan::default();
    if !mode.has_standbys() {
        out.assign = sorted
            .iter()
            .filter(|r| r.role == Role::Standby)
            .map(|r| (r.name.clone(), Role::Active))
            .collect();
        return out;
    }
    fn healthy_active(r: &Replica) -> bool {
        r.role == Role::Active && !r.failed
    }
    let mut serving = sorted.iter().filter(|r| healthy_active(r)).count();
    let mut failed_actives = sorted.iter().filter(|r| r.role == Role::Active && r.failed);
    // Unlabelled pods: healthy ones first fill the demand.
    let mut unlabelled: Vec<&&Replica> = sorted.iter().filter(|r| r.role == Role::Unlabelled).collect();
    unlabelled.sort_by_key(|r| r.failed);
    for r in unlabelled {
        let role = if serving < demand && !r.failed {
            serving += 1;
            Role::Active
        } else {
            Role::Standby
        };
        out.assign.push((r.name.clone(), role));
    }
    for standby in sorted
        .iter()
        .filter(|r| r.role == Role::Standby && r.ready && !r.failed)
    {
        if serving >= demand {
            break;
        }
        out.promote.push(standby.name.clone());
        serving += 1;
        if let Some(gone) = failed_actives.next() {
            out.retire.push(gone.name.clone());
        }
    }
    if serving > demand {
        // Only pre-existing actives can exceed the demand: assignments and promotions stop at it.
        let excess = serving - demand;
        let mut actives: Vec<String> = sorted
            .iter()
            .filter(|r| healthy_active(r))
            .map(|r| r.name.clone())
            .collect();
        out.demote = actives.split_off(actives.len().saturating_sub(excess));
    }
    out
}

/// The decision record of a failover receipt (kind `agent.failover`).
pub fn failover_record(mode: Mode, demand: usize, plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "kind": "agent.failover",
        "mode": mode,
        "demand": demand,
        "promote": plan.promote,
        "retire": plan.retire,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, role: Role, ready: bool, failed: bool) -> Replica {
        Replica {
            name: name.into(),
            role,
            ready,
            failed,
        }
    }

    #[test]
    fn a_failed_active_is_retired_and_a_ready_standby_promoted_in_its_place() {
        let pods = [
            r("a-0", Role::Active, true, false),
            r("a-1", Role::Active, false, true),
            r("s-0", Role::Standby, true, false),
        ];
        let p = plan(Mode::ActivePassive, &pods, 2);
        assert_eq!(p.promote, vec!["s-0"]);
        assert_eq!(p.retire, vec!["a-1"]);
        assert!(p.assign.is_empty() && p.demote.is_empty());
        assert!(p.fails_over());
    }

    #[test]
    fn healthy_actives_at_the_demand_change_nothing_and_active_active_labels_everything_active() {
        let pods = [
            r("a-0", Role::Active, true, false),
            r("a-1", Role::Active, true, false),
            r("s-0", Role::Standby, true, false),
        ];
        assert!(plan(Mode::ActivePassive, &pods, 2).is_empty());
        let p = plan(Mode::ActiveActive, &pods, 2);
        assert_eq!(p.assign, vec![("s-0".to_string(), Role::Active)]);
        assert!(!p.fails_over());
    }

    #[test]
    fn a_standby_that_is_not_ready_or_on_a_failed_node_is_not_promoted() {
        let pods = [
            r("a-0", Role::Active, false, true),
            r("s-0", Role::Standby, false, false),
            r("s-1", Role::Standby, true, true),
        ];
        let p = plan(Mode::NPlus1, &pods, 1);
        assert!(p.promote.is_empty() && p.retire.is_empty(), "{p:?}");
    }

    #[test]
    fn a_lost_active_without_a_failed_pod_is_replaced_by_promotion_alone() {
        // The active pod was deleted (evicted, its node removed): nothing to retire.
        let pods = [
            r("a-0", Role::Active, true, false),
            r("s-0", Role::Standby, true, false),
        ];
        let p = plan(Mode::ActivePassive, &pods, 2);
        assert_eq!((p.promote.clone(), p.retire.clone()), (vec!["s-0".to_string()], vec![]));
    }

    #[test]
    fn unlabelled_pods_fill_the_demand_with_healthy_ones_first_then_become_standbys() {
        let pods = [
            r("p-0", Role::Unlabelled, true, true),
            r("p-1", Role::Unlabelled, true, false),
            r("p-2", Role::Unlabelled, true, false),
        ];
        let p = plan(Mode::ActivePassive, &pods, 1);
        assert_eq!(
            p.assign,
            vec![
                ("p-1".to_string(), Role::Active),
                ("p-2".to_string(), Role::Standby),
                ("p-0".to_string(), Role::Standby),
            ]
        );
    }

    #[test]
    fn actives_beyond_the_demand_are_demoted_last_name_first_never_below_the_demand() {
        let pods = [
            r("a-0", Role::Active, true, false),
            r("a-1", Role::Active, true, false),
            r("a-2", Role::Active, true, false),
        ];
        let p = plan(Mode::ActivePassive, &pods, 2);
        assert_eq!(p.demote, vec!["a-2"]);
        let p = plan(Mode::ActivePassive, &pods, 5);
        assert!(p.demote.is_empty());
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order_of_the_pods() {
        let mut pods = vec![
            r("a-1", Role::Active, false, true),
            r("s-1", Role::Standby, true, false),
            r("a-0", Role::Active, false, true),
            r("s-0", Role::Standby, true, false),
            r("u-0", Role::Unlabelled, true, false),
        ];
        let first = plan(Mode::ActivePassive, &pods, 3);
        pods.reverse();
        assert_eq!(plan(Mode::ActivePassive, &pods, 3), first);
        assert_eq!(first.assign, vec![("u-0".to_string(), Role::Active)]);
        assert_eq!(first.promote, vec!["s-0", "s-1"]);
        assert_eq!(first.retire, vec!["a-0", "a-1"]);
    }
}
