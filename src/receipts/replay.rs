//! Replay: re-run a recorded decision from its recorded inputs and compare the outputs.
//!
//! Inputs: receipts, a [`ReplayRegistry`] of decision kinds (each kind maps to its deterministic
//! decision function; the registry of every kind MOM records is built above the decision
//! modules, in `decisions::registry`), an [`InputsSource`]. Output: a [`ReplayReport`] naming
//! every receipt whose inputs do not match `inputsDigest` or whose replayed output differs.
//!
//! Decision convention: `decision = {"kind": "<module.decision>", "output": <what was decided>,
//! "inputs": <optional, the inputs inline>}`; inputs not inline come from an [`InputsSource`]
//! keyed by `inputsDigest`. Outputs are compared by canonical JSON, so key order and number
//! spelling do not matter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::{Receipt, canonical, inputs_digest};

/// Why a decision could not be replayed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReplayError {
    #[error("inputs field {field}: {message}")]
    BadInputs { field: String, message: String },
    #[error("{0}")]
    Canonical(#[from] canonical::CanonicalError),
}

/// Replays a decision whose recorded inputs are one JSON value of type `I`: parses them, runs
/// `decide` and serialises its output; a parse, decision or serialisation failure is
/// `BadInputs` on field `inputs` with the reason.
pub fn replay_typed<I, O, E>(inputs: &Value, decide: impl FnOnce(&I) -> Result<O, E>) -> Result<Value, ReplayError>
where
    I: serde::de::DeserializeOwned,
    O: Serialize,
    E: std::fmt::Display,
{
    let bad = |message: String| ReplayError::BadInputs {
        field: "inputs".into(),
        message,
    };
    let inputs: I = serde_json::from_value(inputs.clone()).map_err(|e| bad(e.to_string()))?;
    let output = decide(&inputs).map_err(|e| bad(e.to_string()))?;
    serde_json::to_value(output).map_err(|e| bad(e.to_string()))
}

/// A deterministic decision function registered for one decision kind.
pub trait Replayer: Send + Sync {
    /// Recomputes the decision's output from its inputs.
    fn replay(&self, inputs: &Value) -> Result<Value, ReplayError>;
}

impl<F> Replayer for F
where
    F: Fn(&Value) -> Result<Value, ReplayError> + Send + Sync,
{
    fn replay(&self, inputs: &Value) -> Result<Value, ReplayError> {
        self(inputs)
    }
}

/// Where recorded inputs come from when they are not inline in the decision.
pub trait InputsSource {
    fn inputs(&self, inputs_digest: &str) -> Option<Value>;
}

/// No inputs besides those inline in decisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct InlineOnly;

impl InputsSource for InlineOnly {
    fn inputs(&self, _: &str) -> Option<Value> {
        None
    }
}

impl InputsSource for BTreeMap<String, Value> {
    fn inputs(&self, inputs_digest: &str) -> Option<Value> {
        self.get(inputs_digest).cloned()
    }
}

/// Decision kinds that can be replayed.
#[derive(Default)]
pub struct ReplayRegistry {
    by_kind: BTreeMap<String, Box<dyn Replayer>>,
}

impl std::fmt::Debug for ReplayRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayRegistry")
            .field("kinds", &self.by_kind.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Kind of the built-in test decision: `inputs {"values": [n…]}` → `output {"sum": Σn}`.
pub const TEST_SUM_KIND: &str = "test.sum";

/// The built-in `test.sum` decision: integer sum when every value is an integer, else a float.
pub fn test_sum(inputs: &Value) -> Result<Value, ReplayError> {
    let bad = |message: &str| ReplayError::BadInputs {
        field: "values".into(),
        message: message.into(),
    };
    let values = inputs
        .get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing or not an array"))?;
    if values.iter().all(|v| v.is_i64()) {
        let mut sum: i64 = 0;
        for v in values {
            sum = sum
                .checked_add(v.as_i64().unwrap_or(0))
                .ok_or_else(|| bad("sum overflows i64"))?;
        }
        return Ok(serde_json::json!({ "sum": sum }));
    }
    let mut sum = 0.0;
    for v in values {
        sum += v.as_f64().ok_or_else(|| bad("holds a value that is not a number"))?;
    }
    Ok(serde_json::json!({ "sum": canonical::float(sum)? }))
}

impl ReplayRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that knows only the [`TEST_SUM_KIND`] decision (demo chains and tests). The
    /// registry of every decision MOM records lives above the decision modules, in
    /// `decisions::registry`.
    pub fn with_test_sum() -> Self {
        let mut r = Self::new();
        r.register(TEST_SUM_KIND, Box::new(test_sum));
        r
    }

    /// Registers (or replaces) the replayer for `kind`.
    pub fn register(&mut self, kind: &str, replayer: Box<dyn Replayer>) {
        self.by_kind.insert(kind.to_string(), replayer);
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.by_kind.keys().map(String::as_str)
    }

    /// Replays every receipt whose decision names a registered kind.
    pub fn replay_all(&self, receipts: &[Receipt], source: &dyn InputsSource) -> ReplayReport {
        let mut rep = ReplayReport::default();
        for r in receipts {
            let Some(kind) = r.decision.get("kind").and_then(Value::as_str) else {
                rep.without_kind += 1;
                continue;
            };
            let Some(replayer) = self.by_kind.get(kind) else {
                *rep.unregistered.entry(kind.to_string()).or_default() += 1;
                continue;
            };
            let inputs = match r.decision.get("inputs") {
                Some(v) => Some(v.clone()),
                None => source.inputs(&r.inputs_digest),
            };
            let Some(inputs) = inputs else {
                rep.without_inputs += 1;
                continue;
            };
            let mut mismatch = |what: MismatchKind, detail: String| {
                rep.mismatches.push(ReplayMismatch {
                    sequence: r.sequence,
                    kind: kind.to_string(),
                    what,
                    detail,
                });
            };
            match inputs_digest(&inputs) {
                Ok(d) if d == r.inputs_digest => {}
                Ok(d) => {
                    mismatch(
                        MismatchKind::InputsDigest,
                        format!("recorded inputs hash to {d}, receipt says {}", r.inputs_digest),
                    );
                    continue;
                }
                Err(e) => {
                    mismatch(MismatchKind::InputsDigest, e.to_string());
                    continue;
                }
            }
            rep.replayed += 1;
            let recorded = r.decision.get("output").cloned().unwrap_or(Value::Null);
            match replayer.replay(&inputs) {
                Err(e) => mismatch(MismatchKind::Failed, e.to_string()),
                Ok(out) => {
                    let a = canonical::to_string(&recorded);
                    let b = canonical::to_string(&out);
                    match (a, b) {
                        (Ok(a), Ok(b)) if a == b => rep.matched += 1,
                        (Ok(a), Ok(b)) => mismatch(MismatchKind::Output, format!("recorded {a}, replay gives {b}")),
                        (Err(e), _) | (_, Err(e)) => mismatch(MismatchKind::Failed, e.to_string()),
                    }
                }
            }
        }
        rep
    }
}

/// How a replay failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The recorded inputs do not hash to `inputsDigest`.
    InputsDigest,
    /// The replayed output differs from the recorded one.
    Output,
    /// The decision function refused the inputs.
    Failed,
}

/// One receipt whose replay did not reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayMismatch {
    pub sequence: u64,
    pub kind: String,
    pub what: MismatchKind,
    pub detail: String,
}

/// Results of [`ReplayRegistry::replay_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub replayed: usize,
    pub matched: usize,
    /// Decisions without a `kind` (e.g. checkpoints).
    pub without_kind: usize,
    /// Decisions whose inputs were neither inline nor in the source.
    pub without_inputs: usize,
    /// Decision kinds seen but not registered, with counts.
    pub unregistered: BTreeMap<String, usize>,
    pub mismatches: Vec<ReplayMismatch>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::testutil::{chain, signer};
    use serde_json::json;

    #[test]
    fn recorded_test_decisions_replay_to_the_same_output() {
        let rs = chain(20, 5, &signer(1));
        let rep = ReplayRegistry::with_test_sum().replay_all(&rs, &InlineOnly);
        // Checkpoints at 5, 10 and 15 carry no decision kind.
        assert_eq!(rep.replayed, 17);
        assert_eq!(rep.matched, 17);
        assert_eq!(rep.without_kind, 3);
        assert!(rep.mismatches.is_empty());
    }

    #[test]
    fn a_changed_output_is_reported_as_a_mismatch_at_its_sequence() {
        let mut rs = chain(6, 0, &signer(1));
        rs[3].decision["output"] = json!({"sum": 999});
        let rep = ReplayRegistry::with_test_sum().replay_all(&rs, &InlineOnly);
        assert_eq!(rep.mismatches.len(), 1);
        let m = &rep.mismatches[0];
        assert_eq!((m.sequence, m.what), (3, MismatchKind::Output));
        assert!(m.detail.contains("999"), "{}", m.detail);
    }

    #[test]
    fn inputs_that_do_not_match_the_digest_are_reported_not_replayed() {
        let mut rs = chain(3, 0, &signer(1));
        rs[1].decision["inputs"] = json!({"values": [100]});
        let rep = ReplayRegistry::with_test_sum().replay_all(&rs, &InlineOnly);
        assert_eq!(rep.mismatches[0].sequence, 1);
        assert_eq!(rep.mismatches[0].what, MismatchKind::InputsDigest);
        assert_eq!(rep.replayed, 2);
    }

    #[test]
    fn inputs_can_come_from_a_store_keyed_by_digest_and_unknown_kinds_are_counted() {
        let mut rs = chain(4, 0, &signer(1));
        let mut store = BTreeMap::new();
        let inputs = rs[0].decision["inputs"].clone();
        store.insert(rs[0].inputs_digest.clone(), inputs);
        rs[0].decision.as_object_mut().unwrap().remove("inputs");
        rs[1].decision.as_object_mut().unwrap().remove("inputs");
        rs[2].decision["kind"] = json!("nobody.registered");
        let rep = ReplayRegistry::with_test_sum().replay_all(&rs, &store);
        assert_eq!(rep.matched, 2); // 0 via the store, 3 inline
        assert_eq!(rep.without_inputs, 1);
        assert_eq!(rep.unregistered.get("nobody.registered"), Some(&1));
    }

    #[test]
    fn a_registered_closure_replaces_the_decision_and_its_errors_are_reported() {
        let rs = chain(2, 0, &signer(1));
        let mut reg = ReplayRegistry::new();
        reg.register(
            TEST_SUM_KIND,
            Box::new(|_: &Value| {
                Err(ReplayError::BadInputs {
                    field: "x".into(),
                    message: "refused".into(),
                })
            }),
        );
        let rep = reg.replay_all(&rs, &InlineOnly);
        assert_eq!(rep.mismatches.len(), 2);
        assert!(
            rep.mismatches
                .iter()
                .all(|m| m.what == MismatchKind::Failed && m.detail.contains("refused"))
        );
    }

    #[test]
    fn the_test_sum_rejects_inputs_without_values() {
        let e = test_sum(&json!({"vals": []})).unwrap_err();
        assert!(e.to_string().contains("values"), "{e}");
        assert_eq!(test_sum(&json!({"values": [1, 2.5]})).unwrap(), json!({"sum": 3.5}));
    }
}
