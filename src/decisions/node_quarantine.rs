//! Quarantine of a flagged node (MomConfig `spec.anomaly.nodeQuarantine: cordon`): whether the
//! node is cordoned and tainted now (receipt decision kind `node.quarantine`, replayed by
//! `mom verify --replay`).
//!
//! Input ([`NodeQuarantineInputs`]): the mode, the node's anomaly flags, whether it carries
//! MOM's taint `mom.hypersync.io/quarantined:NoSchedule`, whether it is cordoned
//! (`spec.unschedulable`) and whether MOM's label `mom.hypersync.io/quarantined=cordoned` says
//! MOM did the cordoning ("marked"). Output ([`NodeQuarantineOutput`]): the taint, the cordon and
//! the mark after the decision.
//!
//! The rule, with q ⇔ (mode is `cordon` ∧ at least one flag is up ∧ admitted), where a node is
//! admitted when it is in quarantine already (MOM's taint or label on it), when there is no cap,
//! or when fewer than `limit` other nodes are in quarantine (`quarantinedOthers`, counted by the
//! operator over the nodes in name order, those this pass admitted included); a node kept out by
//! the cap is `heldBack`:
//! - taint ⇔ q;
//! - q: cordoned, and marked unless the node was already cordoned by someone else (their
//!   cordon is theirs: MOM neither claims nor, later, lifts it);
//! - ¬q: a cordon MOM set (marked) is lifted; any other cordon stays as it is; not marked.
//!
//! The label [`QUARANTINE_LABEL`] is present exactly while q: `cordoned` when marked, else
//! `tainted` (so quarantined nodes can be listed by label). Pure: the operator patches the node.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::receipts::replay::ReplayError;

/// Decision kind of a node quarantine change.
pub const NODE_QUARANTINE_KIND: &str = "node.quarantine";
/// Key of the taint a quarantined node carries (effect `NoSchedule`, empty value).
pub const QUARANTINE_TAINT: &str = "mom.hypersync.io/quarantined";
/// Label on a quarantined node: [`CORDONED_BY_MOM`] when MOM set the cordon (and lifts it),
/// [`TAINTED_ONLY`] when the node was already cordoned by someone else.
pub const QUARANTINE_LABEL: &str = "mom.hypersync.io/quarantined";
/// [`QUARANTINE_LABEL`]'s value when MOM cordoned the node.
pub const CORDONED_BY_MOM: &str = "cordoned";
/// [`QUARANTINE_LABEL`]'s value when MOM only tainted the node.
pub const TAINTED_ONLY: &str = "tainted";

/// Everything the decision depends on (inline in its receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeQuarantineInputs {
    /// The node's name.
    pub node: String,
    /// `cordon` or `none`.
    pub mode: String,
    /// The node's anomaly flags now.
    pub flags: BTreeSet<String>,
    /// Whether it carries [`QUARANTINE_TAINT`] now.
    pub tainted: bool,
    /// Whether `spec.unschedulable` is true now.
    pub cordoned: bool,
    /// [`QUARANTINE_LABEL`]'s value now (none: no label); [`CORDONED_BY_MOM`] marks MOM's
    /// cordon.
    pub label: Option<String>,
    /// Most nodes in quarantine at once (none: no cap; receipts from before the cap have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Other nodes in quarantine when this one is decided.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantined_others: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The node's quarantine state after the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeQuarantineOutput {
    /// Under quarantine: mode `cordon` and a flag up.
    pub quarantined: bool,
    pub tainted: bool,
    pub cordoned: bool,
    pub marked: bool,
    /// [`QUARANTINE_LABEL`]'s value after the decision (none: no label).
    pub label: Option<String>,
    /// Something differs from the inputs: the node is patched.
    pub changed: bool,
    /// Flagged under `cordon` but not quarantined: `limit` other nodes are.
    #[serde(default, skip_serializing_if = "is_false")]
    pub held_back: bool,
}

/// Applies the rule of the module doc.
pub fn decide(inputs: &NodeQuarantineInputs) -> NodeQuarantineOutput {
    let wanted = inputs.mode == "cordon" && !inputs.flags.is_empty();
    let already = inputs.tainted || inputs.label.is_some();
    let admitted = already || inputs.limit.is_none_or(|l| inputs.quarantined_others < l);
    let quarantined = wanted && admitted;
    let was_marked = inputs.label.as_deref() == Some(CORDONED_BY_MOM);
    // Someone else's cordon: present and not marked as MOM's.
    let theirs = inputs.cordoned && !was_marked;
    let (cordoned, marked) = if quarantined {
        (true, !theirs)
    } else if was_marked {
        (false, false)
    } else {
        (inputs.cordoned, false)
    };
    let label: Option<String> = quarantined.then(|| if marked { CORDONED_BY_MOM } else { TAINTED_ONLY }.to_string());
    let changed = quarantined != inputs.tainted || cordoned != inputs.cordoned || label != inputs.label;
    NodeQuarantineOutput {
        quarantined,
        tainted: quarantined,
        cordoned,
        marked,
        label,
        changed,
        held_back: wanted && !admitted,
    }
}

/// The cap on nodes in quarantine at once, from `maxQuarantinedNodes`: a count, or a
/// percentage of the cluster's `nodes` rounded up (`"20%"` of 3 nodes is 1).
pub fn quarantine_limit(count: Option<u32>, percent: Option<u32>, nodes: usize) -> Option<u32> {
    match (count, percent) {
        (Some(c), _) => Some(c),
        (None, Some(p)) => Some(((nodes as u64 * u64::from(p)).div_ceil(100)).min(u64::from(u32::MAX)) as u32),
        (None, None) => None,
    }
}

/// `{kind: node.quarantine, inputs, output}`.
pub fn decision_record(inputs: &NodeQuarantineInputs, output: &NodeQuarantineOutput) -> Value {
    serde_json::json!({"kind": NODE_QUARANTINE_KIND, "inputs": inputs, "output": output})
}

/// Recomputes a recorded decision from its inputs, for `mom verify --replay`.
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    crate::receipts::replay::replay_typed(inputs, |i: &NodeQuarantineInputs| {
        Ok::<_, std::convert::Infallible>(decide(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `marked`: labelled `cordoned` when true; when false, labelled `tainted` if `tainted`.
    fn inputs(mode: &str, flags: &[&str], tainted: bool, cordoned: bool, marked: bool) -> NodeQuarantineInputs {
        let label = if marked {
            Some("cordoned")
        } else {
            tainted.then_some("tainted")
        };
        NodeQuarantineInputs {
            node: "kwok-1".into(),
            mode: mode.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            tainted,
            cordoned,
            label: label.map(String::from),
            limit: None,
            quarantined_others: 0,
        }
    }

    fn state(out: &NodeQuarantineOutput) -> (bool, bool, bool, bool) {
        let want = out
            .quarantined
            .then_some(if out.marked { "cordoned" } else { "tainted" });
        assert_eq!(out.label.as_deref(), want, "{out:?}");
        (out.tainted, out.cordoned, out.marked, out.changed)
    }

    #[test]
    fn a_flagged_node_under_cordon_is_tainted_and_cordoned_and_marked_as_moms() {
        let out = decide(&inputs("cordon", &["latency-high"], false, false, false));
        assert!(out.quarantined);
        assert_eq!(state(&out), (true, true, true, true));
        // Already so: nothing to do.
        let out = decide(&inputs("cordon", &["latency-high"], true, true, true));
        assert_eq!(state(&out), (true, true, true, false));
    }

    #[test]
    fn a_cleared_node_loses_the_taint_and_the_cordon_mom_set() {
        let out = decide(&inputs("cordon", &[], true, true, true));
        assert!(!out.quarantined);
        assert_eq!(state(&out), (false, false, false, true));
        // Mode `none` releases a quarantine left from an earlier `cordon`, flags or not.
        let out = decide(&inputs("none", &["latency-high"], true, true, true));
        assert_eq!(state(&out), (false, false, false, true));
        // Control: a node never quarantined is left alone under either mode.
        assert_eq!(
            state(&decide(&inputs("none", &["x"], false, false, false))),
            (false, false, false, false)
        );
        assert_eq!(
            state(&decide(&inputs("cordon", &[], false, false, false))),
            (false, false, false, false)
        );
    }

    #[test]
    fn someone_elses_cordon_is_neither_claimed_nor_lifted() {
        // Cordoned by hand, then flagged: tainted, cordon kept, not marked.
        let out = decide(&inputs("cordon", &["x"], false, true, false));
        assert_eq!(state(&out), (true, true, false, true));
        // Flag clears: the taint goes, their cordon stays.
        let out = decide(&inputs("cordon", &[], true, true, false));
        assert_eq!(state(&out), (false, true, false, true));
    }

    #[test]
    fn a_cordon_lifted_by_hand_while_flagged_is_put_back() {
        // MOM's marker is there but the node was uncordoned: the quarantine holds while flagged.
        let out = decide(&inputs("cordon", &["x"], true, false, true));
        assert_eq!(state(&out), (true, true, true, true));
    }

    #[test]
    fn a_missing_label_on_a_quarantined_node_is_put_back() {
        let mut i = inputs("cordon", &["x"], true, true, false);
        assert!(!decide(&i).changed);
        i.label = None;
        let out = decide(&i);
        assert!(out.changed);
        assert_eq!(out.label.as_deref(), Some("tainted"));
    }

    #[test]
    fn the_cap_holds_back_new_quarantines_but_keeps_those_in_place() {
        let mut i = inputs("cordon", &["x"], false, false, false);
        i.limit = Some(2);
        i.quarantined_others = 1;
        // Positive control: below the cap a flagged node is quarantined.
        let out = decide(&i);
        assert!(out.quarantined && !out.held_back);
        // At the cap: held back, nothing changes.
        i.quarantined_others = 2;
        let out = decide(&i);
        assert!(!out.quarantined && out.held_back && !out.changed, "{out:?}");
        // A node in quarantine already stays so at the cap (and over it, after the cap shrank).
        let mut q = inputs("cordon", &["x"], true, true, true);
        q.limit = Some(1);
        q.quarantined_others = 3;
        let out = decide(&q);
        assert!(out.quarantined && !out.held_back && !out.changed, "{out:?}");
        // A cap of 0 quarantines nothing new; a node that is not flagged is never held back.
        i.limit = Some(0);
        i.quarantined_others = 0;
        assert!(decide(&i).held_back);
        assert!(!decide(&inputs("cordon", &[], false, false, false)).held_back);
    }

    #[test]
    fn the_limit_is_a_count_or_a_percentage_of_the_nodes_rounded_up() {
        assert_eq!(quarantine_limit(Some(3), None, 100), Some(3));
        assert_eq!(quarantine_limit(None, Some(20), 3), Some(1));
        assert_eq!(quarantine_limit(None, Some(20), 10), Some(2));
        assert_eq!(quarantine_limit(None, Some(20), 11), Some(3));
        assert_eq!(quarantine_limit(None, Some(0), 50), Some(0));
        assert_eq!(quarantine_limit(None, Some(100), 7), Some(7));
        assert_eq!(quarantine_limit(None, None, 7), None);
    }

    #[test]
    fn a_receipt_from_before_the_cap_replays_unchanged() {
        // Recorded before `limit`, `quarantinedOthers` and `heldBack` existed.
        let inputs = serde_json::json!({"node": "n", "mode": "cordon", "flags": ["x"], "tainted": false, "cordoned": false, "label": null});
        let output = serde_json::json!({"quarantined": true, "tainted": true, "cordoned": true, "marked": true, "label": "cordoned", "changed": true});
        assert_eq!(replay(&inputs).unwrap(), output);
    }

    #[test]
    fn the_recorded_decision_replays_to_the_same_output() {
        let i = inputs("cordon", &["x"], false, true, false);
        let record = decision_record(&i, &decide(&i));
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        assert!(replay(&serde_json::json!({"mode": 3})).is_err());
    }
}
