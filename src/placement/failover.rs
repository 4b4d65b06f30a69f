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
    /// Bound to a node (a Pending pod the scheduler cannot place is not).
    pub placed: bool,
    /// When its node is under a termination notice with a deadline: the time (ms since the
    /// epoch) by which it must be deleted to stop gracefully before the node goes
    /// ([`super::termination::retire_by`]).
    #[serde(default)]
    pub retire_by_ms: Option<u64>,
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

/// Replicas on failed nodes, whatever their role: they no longer count toward the demand, so
/// the agent controller makes replacements elsewhere first (stock Kubernetes waits for the
/// taint eviction, 300 s by default, before anything is replaced).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stranded {
    /// Every replica on a failed node, by name.
    pub pods: Vec<String>,
    /// The stranded replicas to delete now: all of them once `desired` replicas off failed
    /// nodes are Ready; before that only those `due` and those `unready`. On an unreachable
    /// node the deleted pod stays Terminating until the node is back (its kubelet stops it) or
    /// gone (the pod garbage collector removes it), so nothing runs twice once the domain
    /// returns.
    pub retire: Vec<String>,
    /// Ready replicas off failed nodes.
    pub healthy_ready: usize,
    /// Of `retire`, those retired before their replacements are Ready because their node's
    /// termination deadline leaves only their grace period (the node takes them anyway).
    #[serde(default)]
    pub due: Vec<String>,
    /// Each stranded replica's retire-by time (ms since the epoch), when its node has a
    /// termination deadline.
    #[serde(default)]
    pub retire_by: std::collections::BTreeMap<String, u64>,
    /// Of `retire`, those retired before their replacements are Ready because they are not
    /// Ready themselves: they serve nothing, and a replacement bound to a node that failed
    /// after it was placed would otherwise hold its slot for good (no Ready replacement can
    /// ever retire it).
    #[serde(default)]
    pub unready: Vec<String>,
}

/// Which of `replicas` are stranded on failed nodes, and whether they are replaced yet.
///
/// In a mode with standbys, a failed active is the failover [`plan`]'s to handle while a
/// standby placed off failed nodes exists to be promoted for it (once Ready): the first failed
/// actives by name, one per such standby, are not stranded. The rest (failed actives without a
/// placed standby, failed standbys, unlabelled pods on failed nodes) are. A standby the
/// scheduler cannot place (`active_passive` with no region free of actives) covers nothing.
///
/// [`stranded_at`] without deadlines due.
pub fn stranded(mode: Mode, replicas: &[Replica], desired: usize) -> Stranded {
    stranded_at(mode, replicas, desired, 0, desired)
}

/// [`stranded`] at `now_ms`: the stranded replicas come earliest retire-by time first (then by
/// name), so the first replaced are the first to go; a stranded replica whose retire-by time
/// has come is retired even before replacements are Ready (`due`), and so are up to
/// `unready_budget` stranded replicas that are not Ready (`unready`, in the same order).
///
/// The budget is the caller's bound on churn: the operator passes `desired` minus the agent's
/// pods already Terminating on failed nodes, so should replacements keep landing on failed
/// nodes (a scheduler without the extender), at most `desired` of them are ever left behind.
pub fn stranded_at(mode: Mode, replicas: &[Replica], desired: usize, now_ms: u64, unready_budget: usize) -> Stranded {
    let mut failed: Vec<&Replica> = replicas.iter().filter(|r| r.failed).collect();
    failed.sort_by(|a, b| {
        (a.retire_by_ms.unwrap_or(u64::MAX), &a.name).cmp(&(b.retire_by_ms.unwrap_or(u64::MAX), &b.name))
    });
    let mut covered = if mode.has_standbys() {
        replicas
            .iter()
            .filter(|r| r.role == Role::Standby && r.placed && !r.failed)
            .count()
    } else {
        0
    };
    let mut pods: Vec<String> = Vec::new();
    for r in &failed {
        if r.role == Role::Active && covered > 0 {
            covered -= 1;
        } else {
            pods.push(r.name.clone());
        }
    }
    let healthy_ready = replicas.iter().filter(|r| !r.failed && r.ready).count();
    let due: Vec<String> = failed
        .iter()
        .filter(|r| pods.contains(&r.name) && r.retire_by_ms.is_some_and(|t| t <= now_ms))
        .map(|r| r.name.clone())
        .collect();
    let unready: Vec<String> = failed
        .iter()
        .filter(|r| pods.contains(&r.name) && !r.ready && !due.contains(&r.name))
        .take(unready_budget)
        .map(|r| r.name.clone())
        .collect();
    let (retire, due, unready) = if healthy_ready >= desired {
        (pods.clone(), Vec::new(), Vec::new())
    } else {
        let early = pods
            .iter()
            .filter(|p| due.contains(p) || unready.contains(p))
            .cloned()
            .collect();
        (early, due, unready)
    };
    let retire_by = failed
        .iter()
        .filter(|r| pods.contains(&r.name))
        .filter_map(|r| Some((r.name.clone(), r.retire_by_ms?)))
        .collect();
    Stranded {
        pods,
        retire,
        healthy_ready,
        due,
        retire_by,
        unready,
    }
}

/// The decision record of a receipt retiring replaced stranded replicas (kind
/// `agent.stranded`).
pub fn stranded_record(desired: usize, stranded: &Stranded) -> serde_json::Value {
    let mut record = serde_json::json!({
        "kind": "agent.stranded",
        "desired": desired,
        "healthyReady": stranded.healthy_ready,
        "retire": stranded.retire,
    });
    if !stranded.due.is_empty() {
        // Retired for their node's termination deadline, before replacements were Ready.
        record["dueToDeadline"] = serde_json::json!(stranded.due);
    }
    if !stranded.unready.is_empty() {
        // Retired before replacements are Ready because they were not Ready either.
        record["unready"] = serde_json::json!(stranded.unready);
    }
    if !stranded.retire_by.is_empty() {
        // When each had to go at the latest (its node's deadline minus its grace period).
        record["retireByMs"] = serde_json::json!(stranded.retire_by);
    }
    record
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
            placed: true,
            retire_by_ms: None,
        }
    }

    #[test]
    fn under_a_termination_deadline_the_earliest_go_first_and_are_retired_once_only_their_grace_is_left() {
        let doomed = |name: &str, by: u64| Replica {
            retire_by_ms: Some(by),
            ..r(name, Role::Active, true, true)
        };
        // a and b on a node retiring at 90 s, c at 60 s; one healthy replica, three wanted.
        // (No budget for unready ones: e waits like a Ready replica would.)
        let replicas = vec![
            doomed("a", 90_000),
            doomed("b", 90_000),
            doomed("c", 60_000),
            r("d", Role::Active, true, false),
            r("e", Role::Active, false, true),
        ];
        let s = stranded_at(Mode::ActiveActive, &replicas, 3, 59_999, 0);
        // Earliest deadline first, no deadline last.
        assert_eq!(s.pods, vec!["c", "a", "b", "e"]);
        assert!(s.retire.is_empty() && s.due.is_empty(), "{s:?}");
        let s = stranded_at(Mode::ActiveActive, &replicas, 3, 60_000, 0);
        assert_eq!(
            (s.retire.clone(), s.due.clone()),
            (vec!["c".to_string()], vec!["c".to_string()])
        );
        let s = stranded_at(Mode::ActiveActive, &replicas, 3, 90_000, 0);
        assert_eq!(s.due, vec!["c", "a", "b"]);
        assert!(
            !s.retire.contains(&"e".to_string()),
            "no deadline: waits for replacements"
        );
        assert_eq!(
            stranded_record(3, &s)["dueToDeadline"],
            serde_json::json!(["c", "a", "b"])
        );
        assert_eq!(
            stranded_record(3, &s)["retireByMs"],
            serde_json::json!({"a": 90_000, "b": 90_000, "c": 60_000})
        );
        // Positive control: once replacements are Ready, all go and none is counted as due.
        let mut ready = replicas.clone();
        ready.extend(["x", "y"].map(|n| r(n, Role::Active, true, false)));
        let s = stranded_at(Mode::ActiveActive, &ready, 3, 0, 0);
        assert_eq!(s.retire.len(), 4);
        assert!(s.due.is_empty() && stranded_record(3, &s).get("dueToDeadline").is_none());
    }

    #[test]
    fn stranded_replicas_stop_counting_at_once_and_are_retired_only_once_replacements_are_ready() {
        let mut pods = vec![
            r("web-a", Role::Active, true, false),
            r("web-b", Role::Active, true, true),
            r("web-c", Role::Active, true, true),
        ];
        // Two stranded, one healthy of three: nothing is retired, both are to be replaced.
        let s = stranded(Mode::ActiveActive, &pods, 3);
        assert_eq!(s.pods, vec!["web-b", "web-c"]);
        assert!(s.retire.is_empty());
        // Replacements made but one not Ready yet: still nothing retired.
        pods.push(r("web-d", Role::Active, true, false));
        pods.push(r("web-e", Role::Active, false, false));
        assert!(stranded(Mode::ActiveActive, &pods, 3).retire.is_empty());
        // Both Ready: the stranded ones go.
        pods[4].ready = true;
        let s = stranded(Mode::ActiveActive, &pods, 3);
        assert_eq!(s.retire, vec!["web-b", "web-c"]);
        assert_eq!(s.healthy_ready, 3);
        // Control: nothing on a failed node, nothing stranded.
        let healthy: Vec<Replica> = pods.iter().filter(|p| !p.failed).cloned().collect();
        assert_eq!(
            stranded(Mode::ActiveActive, &healthy, 3),
            Stranded {
                pods: vec![],
                retire: vec![],
                healthy_ready: 3,
                due: vec![],
                retire_by: Default::default(),
                unready: vec![],
            }
        );
    }

    #[test]
    fn a_replacement_whose_node_fails_before_it_is_ready_is_retired_at_once_so_another_can_be_made() {
        // A zone failed: web-a and web-b (Ready when it went dark) were replaced by web-c and
        // web-d, which the scheduler bound to a node of the same region that failed next,
        // before they were Ready.
        let pods = vec![
            r("web-a", Role::Active, true, true),
            r("web-b", Role::Active, true, true),
            r("web-c", Role::Active, false, true),
            r("web-d", Role::Active, false, true),
        ];
        let s = stranded_at(Mode::ActiveActive, &pods, 2, 0, 2);
        assert_eq!(s.pods, vec!["web-a", "web-b", "web-c", "web-d"]);
        // The unready replacements go now; the Ready ones wait for their replacements.
        assert_eq!(s.retire, vec!["web-c", "web-d"]);
        assert_eq!(s.unready, vec!["web-c", "web-d"]);
        assert_eq!(stranded_record(2, &s)["unready"], serde_json::json!(["web-c", "web-d"]));
        // The budget bounds the churn: one left, one goes; none left, none goes (then the
        // replicas stay counted out, and the agent stops at twice its size).
        assert_eq!(stranded_at(Mode::ActiveActive, &pods, 2, 0, 1).retire, vec!["web-c"]);
        let s = stranded_at(Mode::ActiveActive, &pods, 2, 0, 0);
        assert!(s.retire.is_empty() && s.unready.is_empty(), "{s:?}");
        assert!(stranded_record(2, &s).get("unready").is_none());
        // Positive control: with two Ready elsewhere all four go, none of them as unready.
        let mut replaced = pods.clone();
        replaced.extend(["web-e", "web-f"].map(|n| r(n, Role::Active, true, false)));
        let s = stranded_at(Mode::ActiveActive, &replaced, 2, 0, 2);
        assert_eq!(s.retire.len(), 4);
        assert!(s.unready.is_empty());
    }

    #[test]
    fn a_failed_active_with_a_standby_to_promote_is_left_to_the_failover_plan() {
        let pods = [
            r("a-0", Role::Active, true, false),
            r("a-1", Role::Active, true, true),
            r("a-2", Role::Active, true, true),
            // Not Ready yet: still the one to promote, not a reason to make a new active.
            r("s-0", Role::Standby, false, false),
            r("s-1", Role::Standby, true, true),
        ];
        // One healthy standby covers a-1; a-2 and the failed standby s-1 are stranded.
        let s = stranded(Mode::ActivePassive, &pods, 3);
        assert_eq!(s.pods, vec!["a-2", "s-1"]);
        // A standby the scheduler cannot place covers nothing.
        let mut unplaced = pods.to_vec();
        unplaced[3].placed = false;
        assert_eq!(
            stranded(Mode::ActivePassive, &unplaced, 3).pods,
            vec!["a-1", "a-2", "s-1"]
        );
        // Control: without standbys every pod on a failed node is stranded.
        assert_eq!(stranded(Mode::ActiveActive, &pods, 3).pods, vec!["a-1", "a-2", "s-1"]);
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
