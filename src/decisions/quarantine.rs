//! Quarantine of a flagged agent (OrchestrationStrategy `spec.resilience.quarantine: isolate`):
//! whether the agent is isolated now (receipt decision kind `agent.quarantine`, replayed by
//! `mom verify --replay`).
//!
//! Input ([`QuarantineInputs`]): the strategy's mode, the agent's anomaly flags now and whether
//! its quarantine NetworkPolicy exists. Output ([`QuarantineOutput`]): isolated or not, and
//! whether that changes anything. The rule: isolated ⇔ mode is `isolate` and at least one flag
//! is up. Pure: the operator writes (or deletes) the NetworkPolicy and holds new replicas back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::receipts::replay::ReplayError;

/// Decision kind of a quarantine change.
pub const QUARANTINE_KIND: &str = "agent.quarantine";

/// Everything the decision depends on (inline in its receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineInputs {
    /// `namespace/name` of the agent.
    pub agent: String,
    /// `isolate` or `none`.
    pub mode: String,
    /// The agent's anomaly flags now.
    pub flags: BTreeSet<String>,
    /// Whether its quarantine NetworkPolicy exists now.
    pub isolated_now: bool,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineOutput {
    pub isolated: bool,
    /// `isolated` differs from `isolatedNow`: the policy is written or removed.
    pub changed: bool,
}

/// Applies the rule of the module doc.
pub fn decide(inputs: &QuarantineInputs) -> QuarantineOutput {
    let isolated = inputs.mode == "isolate" && !inputs.flags.is_empty();
    QuarantineOutput {
        isolated,
        changed: isolated != inputs.isolated_now,
    }
}

/// `{kind: agent.quarantine, inputs, output}`.
pub fn decision_record(inputs: &QuarantineInputs, output: &QuarantineOutput) -> Value {
    serde_json::json!({"kind": QUARANTINE_KIND, "inputs": inputs, "output": output})
}

/// Recomputes a recorded decision from its inputs, for `mom verify --replay`.
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    crate::receipts::replay::replay_typed(inputs, |i: &QuarantineInputs| {
        Ok::<_, std::convert::Infallible>(decide(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(mode: &str, flags: &[&str], isolated_now: bool) -> QuarantineInputs {
        QuarantineInputs {
            agent: "shop/web".into(),
            mode: mode.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            isolated_now,
        }
    }

    #[test]
    fn an_agent_is_isolated_exactly_while_a_flag_is_up_under_isolate() {
        let isolate = |flags: &[&str], now| decide(&inputs("isolate", flags, now));
        assert_eq!(
            isolate(&["errors"], false),
            QuarantineOutput {
                isolated: true,
                changed: true
            }
        );
        assert_eq!(
            isolate(&["errors"], true),
            QuarantineOutput {
                isolated: true,
                changed: false
            }
        );
        assert_eq!(
            isolate(&[], true),
            QuarantineOutput {
                isolated: false,
                changed: true
            }
        );
        assert_eq!(
            isolate(&[], false),
            QuarantineOutput {
                isolated: false,
                changed: false
            }
        );
        // `none`: never isolated; a policy left from an earlier `isolate` is removed.
        assert_eq!(
            decide(&inputs("none", &["errors"], true)),
            QuarantineOutput {
                isolated: false,
                changed: true
            }
        );
    }

    #[test]
    fn the_recorded_decision_replays_to_the_same_output() {
        let i = inputs("isolate", &["errors"], false);
        let record = decision_record(&i, &decide(&i));
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        assert!(replay(&serde_json::json!({"mode": 3})).is_err());
    }
}
