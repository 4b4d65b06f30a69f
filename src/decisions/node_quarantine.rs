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
//! The rule, with q ⇔ (mode is `cordon` ∧ at least one flag is up):
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
}

/// Applies the rule of the module doc.
pub fn decide(inputs: &NodeQuarantineInputs) -> NodeQuarantineOutput {
    let quarantined = inputs.mode == "cordon" && !inputs.flags.is_empty();
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
    fn the_recorded_decision_replays_to_the_same_output() {
        let i = inputs("cordon", &["x"], false, true, false);
        let record = decision_record(&i, &decide(&i));
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        assert!(replay(&serde_json::json!({"mode": 3})).is_err());
    }
}
