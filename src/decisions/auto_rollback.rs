//! Automatic rollback (`OrchestrationStrategy` `spec.resilience.rollback.mode: auto`): which
//! recorded spec a GeometricAgent goes back to when an anomaly flag is raised on it soon after a
//! change of its spec (receipt decision kind `agent.rollback`, replayed by `mom verify --replay`).
//!
//! Input ([`AutoRollbackInputs`]): the agent's spec changes as its trusted `agent.change`
//! receipts recorded them (sequence, time, generation, a digest of the spec without `replicas`),
//! its flag history from its `anomaly.flag` receipts (time, flag, raised or cleared), its
//! generation now and the window. Output ([`AutoRollback`]): roll back or not, from which change
//! to which, and why. Pure: the operator reads the receipts and writes the spec.
//!
//! The rule, with the changes sorted by sequence and `C` the newest one at or below the agent's
//! generation (a `replicas`-only edit bumps the generation without a change record):
//! 1. a flag must have been raised at `t ≥ C.time` with `t − C.time ≤ within`
//!    (a flag long after the change is not blamed on it);
//! 2. the target is the newest earlier change `R` (before `C`) whose spec differs from `C`'s and
//!    under which no flag was up: none raised in `[R.time, next.time)` and none still up from
//!    before `R.time` ("the last spec under which its SLO series was healthy");
//! 3. no such `R` (the agent's first spec, or every earlier one was flagged too): no rollback.
//!
//! After a rollback the restored spec is recorded as a new change, later than the raise, so the
//! same raise never rolls back twice; a new raise within the window of that change would look
//! for a healthy spec before it, and the flagged one is skipped by rule 2.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::receipts::replay::ReplayError;

/// Decision kind of an automatic rollback.
pub const AUTO_ROLLBACK_KIND: &str = "agent.rollback";

/// One recorded spec of the agent (`agent.change` receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecChange {
    pub sequence: u64,
    /// Receipt time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The agent's generation the spec was recorded at.
    pub generation: i64,
    /// SHA-256 (hex) of the canonical JSON of the spec without `replicas`.
    pub spec_digest: String,
}

/// A flag of the agent raised or cleared (`anomaly.flag` / `anomaly.unnamed` receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagChange {
    pub sequence: u64,
    pub at_ms: i64,
    pub flag: String,
    pub raised: bool,
}

/// Everything the decision depends on (inline in its receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollbackInputs {
    /// `namespace/name` of the agent.
    pub agent: String,
    /// The agent's `metadata.generation` now.
    pub generation: i64,
    pub changes: Vec<SpecChange>,
    pub flags: Vec<FlagChange>,
    /// `spec.resilience.rollback.withinMinutes`, in milliseconds.
    pub within_ms: i64,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    pub rollback: bool,
    /// The change in force (`C`), if any.
    pub from_sequence: Option<u64>,
    /// The change whose spec is restored (`R`), when rolling back.
    pub to_sequence: Option<u64>,
    /// The raise blamed on `C` (its receipt's sequence), if any.
    pub raised_sequence: Option<u64>,
    pub reason: String,
}

/// `{kind: agent.rollback, inputs, output}`.
pub fn decision_record(inputs: &AutoRollbackInputs, output: &AutoRollback) -> Value {
    serde_json::json!({"kind": AUTO_ROLLBACK_KIND, "inputs": inputs, "output": output})
}

/// Applies the rule of the module doc.
pub fn decide(inputs: &AutoRollbackInputs) -> AutoRollback {
    let mut changes = inputs.changes.clone();
    changes.sort_by_key(|c| c.sequence);
    let mut flags = inputs.flags.clone();
    flags.sort_by_key(|f| f.sequence);
    let no = |from: Option<u64>, raised: Option<u64>, reason: String| AutoRollback {
        rollback: false,
        from_sequence: from,
        to_sequence: None,
        raised_sequence: raised,
        reason,
    };
    let Some(at) = changes.iter().rposition(|c| c.generation <= inputs.generation) else {
        return no(
            None,
            None,
            format!(
                "no recorded spec of {} at or below generation {}",
                inputs.agent, inputs.generation
            ),
        );
    };
    let current = &changes[at];
    let Some(raise) = flags.iter().find(|f| f.raised && f.at_ms >= current.at_ms) else {
        return no(
            Some(current.sequence),
            None,
            format!("no flag raised since the spec of receipt {}", current.sequence),
        );
    };
    let after_ms = raise.at_ms - current.at_ms;
    if after_ms > inputs.within_ms {
        return no(
            Some(current.sequence),
            Some(raise.sequence),
            format!(
                "flag {} was raised {} s after the spec of receipt {}, later than withinMinutes ({} s)",
                raise.flag,
                after_ms / 1000,
                current.sequence,
                inputs.within_ms / 1000
            ),
        );
    }
    for i in (0..at).rev() {
        let candidate = &changes[i];
        if candidate.spec_digest == current.spec_digest {
            continue;
        }
        let until = changes[i + 1].at_ms;
        if !flag_up_during(&flags, candidate.at_ms, until) {
            return AutoRollback {
                rollback: true,
                from_sequence: Some(current.sequence),
                to_sequence: Some(candidate.sequence),
                raised_sequence: Some(raise.sequence),
                reason: format!(
                    "flag {} was raised {} s after the spec of receipt {}; the spec of receipt {} ran without a flag",
                    raise.flag,
                    after_ms / 1000,
                    current.sequence,
                    candidate.sequence
                ),
            };
        }
    }
    no(
        Some(current.sequence),
        Some(raise.sequence),
        format!(
            "flag {} was raised after the spec of receipt {}, but no earlier different spec ran without a flag",
            raise.flag, current.sequence
        ),
    )
}

/// Whether any flag was up at some time in `[from, until)`: up at `from` (raised before and not
/// cleared by then) or raised inside.
fn flag_up_during(flags: &[FlagChange], from: i64, until: i64) -> bool {
    let mut up: BTreeSet<&str> = BTreeSet::new();
    for f in flags.iter().filter(|f| f.at_ms < from) {
        if f.raised {
            up.insert(&f.flag);
        } else {
            up.remove(f.flag.as_str());
        }
    }
    !up.is_empty() || flags.iter().any(|f| f.raised && f.at_ms >= from && f.at_ms < until)
}

/// Recomputes a recorded decision from its inputs, for `mom verify --replay`.
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    crate::receipts::replay::replay_typed(inputs, |i: &AutoRollbackInputs| {
        Ok::<_, std::convert::Infallible>(decide(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn change(sequence: u64, at_min: i64, generation: i64, spec: &str) -> SpecChange {
        SpecChange {
            sequence,
            at_ms: at_min * MIN,
            generation,
            spec_digest: spec.into(),
        }
    }

    fn flag(sequence: u64, at_min: i64, raised: bool) -> FlagChange {
        FlagChange {
            sequence,
            at_ms: at_min * MIN,
            flag: "latency-high".into(),
            raised,
        }
    }

    fn inputs(generation: i64, changes: Vec<SpecChange>, flags: Vec<FlagChange>) -> AutoRollbackInputs {
        AutoRollbackInputs {
            agent: "shop/web".into(),
            generation,
            changes,
            flags,
            within_ms: 30 * MIN,
        }
    }

    #[test]
    fn a_flag_raised_soon_after_a_change_rolls_back_to_the_spec_before_it() {
        let d = decide(&inputs(
            2,
            vec![change(1, 0, 1, "good"), change(5, 60, 2, "bad")],
            vec![flag(6, 65, true)],
        ));
        assert!(d.rollback, "{d:?}");
        assert_eq!(
            (d.from_sequence, d.to_sequence, d.raised_sequence),
            (Some(5), Some(1), Some(6))
        );
        assert!(
            d.reason.contains("raised 300 s after the spec of receipt 5"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn no_flag_a_flag_before_the_change_or_one_after_the_window_rolls_nothing_back() {
        let changes = vec![change(1, 0, 1, "good"), change(5, 60, 2, "bad")];
        // Control: raised 5 min after: a rollback.
        assert!(decide(&inputs(2, changes.clone(), vec![flag(6, 65, true)])).rollback);
        let none = decide(&inputs(2, changes.clone(), vec![]));
        assert!(!none.rollback && none.reason.contains("no flag raised"), "{none:?}");
        let before = decide(&inputs(2, changes.clone(), vec![flag(3, 30, true)]));
        assert!(!before.rollback, "{before:?}");
        let late = decide(&inputs(2, changes, vec![flag(6, 95, true)]));
        assert!(
            !late.rollback && late.reason.contains("later than withinMinutes (1800 s)"),
            "{late:?}"
        );
    }

    #[test]
    fn the_first_spec_of_an_agent_has_nothing_to_go_back_to() {
        let d = decide(&inputs(1, vec![change(1, 0, 1, "only")], vec![flag(2, 1, true)]));
        assert!(!d.rollback && d.reason.contains("no earlier different spec"), "{d:?}");
    }

    #[test]
    fn a_spec_that_was_flagged_too_is_skipped_for_the_last_healthy_one() {
        // good (0..60) → shaky (60..120, flagged at 70, cleared at 80) → bad (120..), flagged at 125.
        let d = decide(&inputs(
            3,
            vec![
                change(1, 0, 1, "good"),
                change(4, 60, 2, "shaky"),
                change(9, 120, 3, "bad"),
            ],
            vec![flag(5, 70, true), flag(6, 80, false), flag(10, 125, true)],
        ));
        assert_eq!((d.rollback, d.to_sequence), (true, Some(1)), "{d:?}");
        // A flag still up from before a spec counts against that spec.
        let d = decide(&inputs(
            3,
            vec![
                change(1, 0, 1, "good"),
                change(4, 60, 2, "shaky"),
                change(9, 120, 3, "bad"),
            ],
            vec![flag(3, 50, true), flag(10, 125, true)],
        ));
        assert_eq!((d.rollback, d.to_sequence), (false, None), "{d:?}");
    }

    #[test]
    fn the_restored_spec_is_not_rolled_back_again_by_the_same_raise() {
        // bad at 60 flagged at 65; rolled back to good, recorded at 66 (generation 3).
        let d = decide(&inputs(
            3,
            vec![
                change(1, 0, 1, "good"),
                change(5, 60, 2, "bad"),
                change(8, 66, 3, "good"),
            ],
            vec![flag(6, 65, true)],
        ));
        assert!(!d.rollback, "{d:?}");
        // A replicas-only edit (generation 4, no change record) keeps receipt 8 in force.
        assert_eq!(
            decide(&inputs(
                4,
                vec![change(1, 0, 1, "good"), change(8, 66, 3, "good")],
                vec![]
            ))
            .from_sequence,
            Some(8)
        );
    }

    #[test]
    fn the_recorded_decision_replays_to_the_same_output() {
        let i = inputs(
            2,
            vec![change(5, 60, 2, "bad"), change(1, 0, 1, "good")],
            vec![flag(6, 65, true)],
        );
        let out = decide(&i);
        let record = decision_record(&i, &out);
        let replayed = replay(&record["inputs"]).unwrap();
        assert_eq!(replayed, record["output"]);
        let e = replay(&serde_json::json!({"agent": 1})).unwrap_err();
        assert!(e.to_string().contains("inputs field inputs"), "{e}");
    }
}
