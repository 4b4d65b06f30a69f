//! Automatic rollback (`OrchestrationStrategy` `spec.resilience.rollback.mode: auto`): which
//! recorded spec a GeometricAgent (receipt decision kind `agent.rollback`) or its
//! OrchestrationStrategy (`strategy.rollback`) goes back to when an anomaly flag is raised on the
//! agent soon after a change of that spec. Both are replayed by `mom verify --replay`.
//!
//! Input ([`AutoRollbackInputs`], [`StrategyRollbackInputs`]): the object's spec changes as its
//! trusted `agent.change` / `strategy.change` receipts recorded them (sequence, time, generation,
//! a digest of the spec — an agent's without `replicas`), the flag history from the `anomaly.flag`
//! receipts of the agent (for a strategy: of every agent it governs), the object's generation
//! now and the window. Output ([`AutoRollback`]): roll back or not, from which change to which,
//! and why. Pure: the operator reads the receipts and writes the spec.
//!
//! The rule, with the changes sorted by sequence and `C` the newest one at or below the object's
//! generation (a `replicas`-only edit of an agent bumps the generation without a change record):
//! 1. a flag must have been raised at `t ≥ C.time` with `t − C.time ≤ within`
//!    (a flag long after the change is not blamed on it);
//! 2. the newest change before the raise (in receipt order) is blamed, the agent's or its
//!    strategy's, never both: an agent's raise is not blamed on the agent when its strategy's
//!    spec changed after `C` and before the raise (a strategy's first record is the spec it
//!    had, not a change); a strategy is not blamed for a raise on an agent whose own spec
//!    changed after `C` and before the raise; and a raise a rollback receipt already acted on
//!    is not blamed again;
//! 3. the target is the newest earlier change `R` (before `C`) whose spec differs from `C`'s and
//!    under which no flag was up: none raised in `[R.time, next.time)` and none still up from
//!    before `R.time` ("the last spec under which its SLO series was healthy"; for a strategy,
//!    the series of every agent it governs now);
//! 4. no such `R` (the first spec, or every earlier one was flagged too): no rollback.
//!
//! After a rollback the restored spec is recorded as a new change, later than the raise, and the
//! rollback receipt names the raise, so the same raise never rolls back twice; a new raise within the window of that change would look
//! for a healthy spec before it, and the flagged one is skipped by rule 3.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::receipts::replay::ReplayError;

/// Decision kind of an automatic rollback of an agent.
pub const AUTO_ROLLBACK_KIND: &str = "agent.rollback";

/// Decision kind of an automatic rollback of a strategy.
pub const STRATEGY_ROLLBACK_KIND: &str = "strategy.rollback";

/// One recorded spec of the agent or strategy (`agent.change` / `strategy.change` receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecChange {
    pub sequence: u64,
    /// Receipt time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The agent's generation the spec was recorded at.
    pub generation: i64,
    /// SHA-256 (hex) of the canonical JSON of the spec (an agent's without `replicas`).
    pub spec_digest: String,
}

/// A flag of an agent raised or cleared (`anomaly.flag` / `anomaly.unnamed` receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagChange {
    pub sequence: u64,
    pub at_ms: i64,
    pub flag: String,
    pub raised: bool,
    /// `namespace/name` of the flagged agent, in a strategy's inputs (absent in an agent's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
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
    /// Receipt sequences of the changes of the agent's strategy (each `strategy.change` but its
    /// first, which records the spec it had, not a change): a raise after one newer than the
    /// agent's spec is blamed on the strategy (rule 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strategy_changes: Vec<u64>,
    /// Raises (receipt sequences) a trusted `agent.rollback` / `strategy.rollback` receipt has
    /// already acted on: none is blamed again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acted_raises: Vec<u64>,
}

/// Everything a strategy's decision depends on (inline in its receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyRollbackInputs {
    /// `namespace/name` of the strategy.
    pub strategy: String,
    /// The strategy's `metadata.generation` now.
    pub generation: i64,
    pub changes: Vec<SpecChange>,
    /// The flag changes of every agent the strategy governs, each naming its agent.
    pub flags: Vec<FlagChange>,
    /// Per governed agent (`namespace/name`): the receipt sequences of its `agent.change`
    /// receipts; an agent without one is left out.
    pub agent_changes: BTreeMap<String, Vec<u64>>,
    /// `spec.resilience.rollback.withinMinutes`, in milliseconds.
    pub within_ms: i64,
    /// Raises a trusted rollback receipt has already acted on (as for an agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acted_raises: Vec<u64>,
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

/// `{kind: strategy.rollback, inputs, output}`.
pub fn strategy_decision_record(inputs: &StrategyRollbackInputs, output: &AutoRollback) -> Value {
    serde_json::json!({"kind": STRATEGY_ROLLBACK_KIND, "inputs": inputs, "output": output})
}

/// Applies the rule of the module doc to an agent.
pub fn decide(inputs: &AutoRollbackInputs) -> AutoRollback {
    decide_for(
        &inputs.agent,
        inputs.generation,
        &inputs.changes,
        &inputs.flags,
        inputs.within_ms,
        &inputs.acted_raises,
        |raise, current| {
            let s = inputs
                .strategy_changes
                .iter()
                .find(|s| **s > current.sequence && **s < raise.sequence)?;
            Some(format!(
                "its strategy's spec changed (receipt {s}) after the spec of receipt {} and before flag {} was raised: the raise is blamed on the strategy",
                current.sequence, raise.flag
            ))
        },
    )
}

/// Applies the rule of the module doc to a strategy.
pub fn decide_strategy(inputs: &StrategyRollbackInputs) -> AutoRollback {
    decide_for(
        &inputs.strategy,
        inputs.generation,
        &inputs.changes,
        &inputs.flags,
        inputs.within_ms,
        &inputs.acted_raises,
        |raise, current| {
            let agent = raise.agent.as_deref().unwrap_or_default();
            let own = inputs
                .agent_changes
                .get(agent)?
                .iter()
                .find(|a| **a > current.sequence && **a < raise.sequence)?;
            Some(format!(
                "flag {} of {agent} was raised after its own spec changed (receipt {own}), later than the spec of receipt {}: the raise is blamed on the agent",
                raise.flag, current.sequence
            ))
        },
    )
}

/// Rules 1, 3 and 4 for `what`; `elsewhere(raise, C)` says why a raise is blamed on another
/// change (rule 2), `None` when it may be blamed on `C`. A raise in `acted` is not blamed again.
fn decide_for(
    what: &str,
    generation: i64,
    changes: &[SpecChange],
    flags: &[FlagChange],
    within_ms: i64,
    acted: &[u64],
    elsewhere: impl Fn(&FlagChange, &SpecChange) -> Option<String>,
) -> AutoRollback {
    let mut changes = changes.to_vec();
    changes.sort_by_key(|c| c.sequence);
    let mut flags = flags.to_vec();
    flags.sort_by_key(|f| f.sequence);
    let no = |from: Option<u64>, raised: Option<u64>, reason: String| AutoRollback {
        rollback: false,
        from_sequence: from,
        to_sequence: None,
        raised_sequence: raised,
        reason,
    };
    let Some(at) = changes.iter().rposition(|c| c.generation <= generation) else {
        return no(
            None,
            None,
            format!("no recorded spec of {what} at or below generation {generation}"),
        );
    };
    let current = &changes[at];
    let mut blamed_elsewhere = None;
    let raise = flags.iter().filter(|f| f.raised && f.at_ms >= current.at_ms).find(|f| {
        let why = if acted.contains(&f.sequence) {
            Some(format!(
                "flag {} (receipt {}) was already acted on by a rollback",
                f.flag, f.sequence
            ))
        } else {
            elsewhere(f, current)
        };
        match why {
            Some(why) => {
                blamed_elsewhere.get_or_insert((f.sequence, why));
                false
            }
            None => true,
        }
    });
    let Some(raise) = raise else {
        return match blamed_elsewhere {
            Some((sequence, why)) => no(Some(current.sequence), Some(sequence), why),
            None => no(
                Some(current.sequence),
                None,
                format!("no flag raised since the spec of receipt {}", current.sequence),
            ),
        };
    };
    let after_ms = raise.at_ms - current.at_ms;
    if after_ms > within_ms {
        return no(
            Some(current.sequence),
            Some(raise.sequence),
            format!(
                "flag {} was raised {} s after the spec of receipt {}, later than withinMinutes ({} s)",
                raise.flag,
                after_ms / 1000,
                current.sequence,
                within_ms / 1000
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
/// cleared by then, per agent and flag) or raised inside.
fn flag_up_during(flags: &[FlagChange], from: i64, until: i64) -> bool {
    let mut up: BTreeSet<(Option<&str>, &str)> = BTreeSet::new();
    for f in flags.iter().filter(|f| f.at_ms < from) {
        let key = (f.agent.as_deref(), f.flag.as_str());
        if f.raised {
            up.insert(key);
        } else {
            up.remove(&key);
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

/// Recomputes a recorded strategy decision from its inputs, for `mom verify --replay`.
pub fn replay_strategy(inputs: &Value) -> Result<Value, ReplayError> {
    crate::receipts::replay::replay_typed(inputs, |i: &StrategyRollbackInputs| {
        Ok::<_, std::convert::Infallible>(decide_strategy(i))
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
            agent: None,
        }
    }

    fn inputs(generation: i64, changes: Vec<SpecChange>, flags: Vec<FlagChange>) -> AutoRollbackInputs {
        AutoRollbackInputs {
            agent: "shop/web".into(),
            generation,
            changes,
            flags,
            within_ms: 30 * MIN,
            strategy_changes: vec![],
            acted_raises: vec![],
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

    fn raised_on(sequence: u64, at_min: i64, agent: &str, raised: bool) -> FlagChange {
        FlagChange {
            agent: Some(agent.into()),
            ..flag(sequence, at_min, raised)
        }
    }

    fn strategy_inputs(
        generation: i64,
        changes: Vec<SpecChange>,
        flags: Vec<FlagChange>,
        own: &[(&str, u64)],
    ) -> StrategyRollbackInputs {
        StrategyRollbackInputs {
            strategy: "shop/tuned".into(),
            generation,
            changes,
            flags,
            agent_changes: own.iter().map(|(a, seq)| (a.to_string(), vec![*seq])).collect(),
            within_ms: 30 * MIN,
            acted_raises: vec![],
        }
    }

    #[test]
    fn a_flag_raised_on_a_governed_agent_soon_after_a_strategy_change_rolls_the_strategy_back() {
        let changes = vec![change(1, 0, 1, "max5"), change(5, 60, 2, "max4")];
        let raise = vec![raised_on(8, 65, "shop/svc", true)];
        let d = decide_strategy(&strategy_inputs(2, changes.clone(), raise.clone(), &[("shop/svc", 0)]));
        assert_eq!(
            (d.rollback, d.from_sequence, d.to_sequence, d.raised_sequence),
            (true, Some(5), Some(1), Some(8)),
            "{d:?}"
        );
        // No raise: nothing.
        let d = decide_strategy(&strategy_inputs(2, changes.clone(), vec![], &[("shop/svc", 0)]));
        assert!(!d.rollback && d.reason.contains("no flag raised"), "{d:?}");
        // The agent's own spec changed after the strategy's and before the raise: the agent is
        // blamed, not the strategy.
        let d = decide_strategy(&strategy_inputs(2, changes.clone(), raise.clone(), &[("shop/svc", 6)]));
        assert!(
            !d.rollback && d.reason.contains("blamed on the agent") && d.raised_sequence == Some(8),
            "{d:?}"
        );
        // An agent change after the raise (its own rollback, say) does not take the blame.
        assert!(decide_strategy(&strategy_inputs(2, changes.clone(), raise.clone(), &[("shop/svc", 9)])).rollback);
        // A raise a rollback receipt already acted on is not blamed again.
        let mut acted = strategy_inputs(2, changes, raise, &[("shop/svc", 0)]);
        acted.acted_raises = vec![8];
        let d = decide_strategy(&acted);
        assert!(
            !d.rollback && d.reason.contains("already acted on by a rollback"),
            "{d:?}"
        );
    }

    #[test]
    fn an_earlier_strategy_spec_is_healthy_only_if_no_governed_agent_was_flagged_under_it() {
        // good (0..60) → shaky (60..120: db flagged at 70, never cleared) → bad (120..).
        let changes = vec![
            change(1, 0, 1, "good"),
            change(4, 60, 2, "shaky"),
            change(9, 120, 3, "bad"),
        ];
        let d = decide_strategy(&strategy_inputs(
            3,
            changes.clone(),
            vec![raised_on(5, 70, "shop/db", true), raised_on(10, 125, "shop/svc", true)],
            &[("shop/svc", 0), ("shop/db", 0)],
        ));
        assert_eq!((d.rollback, d.to_sequence), (true, Some(1)), "{d:?}");
        // Cleared on db before 120, and svc's flag of the same name is another agent's: still
        // up only if the same agent's flag was not cleared.
        let d = decide_strategy(&strategy_inputs(
            3,
            changes.clone(),
            vec![
                raised_on(3, 50, "shop/db", true),
                raised_on(5, 58, "shop/svc", false),
                raised_on(10, 125, "shop/svc", true),
            ],
            &[("shop/svc", 0), ("shop/db", 0)],
        ));
        assert_eq!(
            (d.rollback, d.to_sequence),
            (false, None),
            "db's flag is up through every earlier spec (svc's clear does not clear it): {d:?}"
        );
    }

    #[test]
    fn an_agent_is_not_blamed_for_a_raise_after_its_strategy_changed_nor_for_one_already_acted_on() {
        let changes = vec![change(1, 0, 1, "good"), change(5, 60, 2, "bad")];
        let flags = vec![flag(8, 70, true)];
        // Control: the strategy changed before the agent's spec: the agent is rolled back.
        let mut i = inputs(2, changes.clone(), flags.clone());
        i.strategy_changes = vec![3];
        assert!(decide(&i).rollback);
        // The strategy changed (receipt 6) between the agent's change and the raise; its
        // restored spec (receipt 9, after the raise) does not hand the blame back to the agent.
        i.strategy_changes = vec![3, 6, 9];
        let d = decide(&i);
        assert!(!d.rollback && d.reason.contains("blamed on the strategy"), "{d:?}");
        // Only after the raise: the agent is blamed.
        i.strategy_changes = vec![9];
        assert!(decide(&i).rollback);
        // The strategy's rollback receipt named this raise: not again, whatever the changes say.
        i.acted_raises = vec![8];
        let d = decide(&i);
        assert!(!d.rollback && d.reason.contains("already acted on"), "{d:?}");
    }

    #[test]
    fn the_recorded_strategy_decision_replays_and_old_agent_inputs_still_read() {
        let i = strategy_inputs(
            2,
            vec![change(5, 60, 2, "max4"), change(1, 0, 1, "max5")],
            vec![raised_on(6, 65, "shop/svc", true)],
            &[("shop/svc", 0)],
        );
        let out = decide_strategy(&i);
        let record = strategy_decision_record(&i, &out);
        assert_eq!(record["kind"], STRATEGY_ROLLBACK_KIND);
        assert_eq!(replay_strategy(&record["inputs"]).unwrap(), record["output"]);
        // An agent.rollback recorded before flags named agents and strategies had changes.
        let old = serde_json::json!({"agent": "shop/web", "generation": 2, "withinMs": 1_800_000,
            "changes": [{"sequence": 1, "atMs": 0, "generation": 1, "specDigest": "a"},
                        {"sequence": 5, "atMs": 3_600_000, "generation": 2, "specDigest": "b"}],
            "flags": [{"sequence": 6, "atMs": 3_900_000, "flag": "x", "raised": true}]});
        let same = inputs(
            2,
            vec![change(1, 0, 1, "a"), change(5, 60, 2, "b")],
            vec![FlagChange {
                flag: "x".into(),
                ..flag(6, 65, true)
            }],
        );
        assert_eq!(
            replay(&old).unwrap(),
            serde_json::to_value(decide(&same)).unwrap(),
            "the whole output, reason included"
        );
        assert_eq!(
            serde_json::to_value(&same).unwrap(),
            old,
            "written as before: no new keys when empty"
        );
    }
}
