//! Rollback by hand: the spec a GeometricAgent or an OrchestrationStrategy is put back to, taken
//! from a signed `agent.change` / `strategy.change` receipt of that object (`mom rollback`).
//!
//! Input: the stored receipt, the trusted public keys and the object as it is now (kind,
//! namespace, name, uid). Output: the recorded spec and the generation it was recorded at, or
//! why the receipt cannot be trusted or is not that object's. Pure: the caller reads and writes
//! the cluster.
//!
//! A receipt is believed only when its content hashes to its stored `hash`
//! ([`crate::receipts::hash::receipt_hash`]) and a trusted key signs that hash
//! ([`crate::receipts::provenance::split_trusted`]): anyone who can create a Receipt object
//! could otherwise hand the rollback a spec of their choosing.

use serde_json::Value;

use super::config_change::{AGENT_CHANGE_KIND, STRATEGY_CHANGE_KIND};
use crate::receipts::provenance::split_trusted;
use crate::receipts::{Receipt, TrustedKeys};

/// Kind of the subject an `agent.change` receipt is about.
pub const AGENT_KIND: &str = "GeometricAgent";

/// Kind of the subject a `strategy.change` receipt is about.
pub const STRATEGY_KIND: &str = "OrchestrationStrategy";

/// The kinds of object whose specs are recorded and can be rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    Agent,
    Strategy,
}

impl SpecKind {
    /// The Kubernetes kind (the receipt subject's).
    pub fn object_kind(self) -> &'static str {
        match self {
            Self::Agent => AGENT_KIND,
            Self::Strategy => STRATEGY_KIND,
        }
    }

    /// The decision kind of its change receipts.
    pub fn change_kind(self) -> &'static str {
        match self {
            Self::Agent => AGENT_CHANGE_KIND,
            Self::Strategy => STRATEGY_CHANGE_KIND,
        }
    }
}

/// Why a receipt cannot give the object its spec back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RollbackError {
    #[error("receipt {sequence}: its content does not hash to its stored hash (edited after it was written)")]
    Edited { sequence: u64 },
    #[error("receipt {sequence}: not trusted: {why}")]
    Untrusted { sequence: u64, why: String },
    #[error("receipt {sequence} records {found:?}, not {change:?} (a spec change of kind {object}){hint}")]
    NotASpecChange {
        sequence: u64,
        found: String,
        object: &'static str,
        change: &'static str,
        /// Which `mom rollback` the receipt is for, when it is the other kind's spec change.
        hint: &'static str,
    },
    #[error("receipt {sequence} is about {found}, not {wanted}")]
    OtherSubject {
        sequence: u64,
        found: String,
        wanted: String,
    },
    #[error(
        "receipt {sequence} is about an earlier {object} (uid {recorded}); it now has uid {current} (deleted and re-created): give --allow-recreated to apply it anyway"
    )]
    Recreated {
        sequence: u64,
        object: String,
        recorded: String,
        current: String,
    },
    #[error("receipt {sequence}: its decision has no {field}")]
    Incomplete { sequence: u64, field: &'static str },
}

/// The object a rollback is for, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: SpecKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Target {
    /// `Kind namespace/name`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind.object_kind(), self.namespace, self.name)
    }
}

/// The spec recorded by receipt `r` for `target` and the generation it was recorded at.
pub fn spec_to_restore(
    r: &Receipt,
    keys: &TrustedKeys,
    target: &Target,
    allow_recreated: bool,
) -> Result<(Value, i64), RollbackError> {
    let sequence = r.sequence;
    let recomputed = crate::receipts::hash::receipt_hash(r).map_err(|_| RollbackError::Edited { sequence })?;
    if hex::encode(recomputed) != r.hash {
        return Err(RollbackError::Edited { sequence });
    }
    let (_, foreign) = split_trusted(vec![((), r.clone())], keys);
    if let Some((_, _, why)) = foreign.first() {
        return Err(RollbackError::Untrusted {
            sequence,
            why: why.to_string(),
        });
    }
    let kind = r.decision["kind"].as_str().unwrap_or_default();
    if kind != target.kind.change_kind() {
        let hint = match kind {
            STRATEGY_CHANGE_KIND => "; it is a strategy's: mom rollback strategy/NAME",
            AGENT_CHANGE_KIND => "; it is an agent's: mom rollback agent/NAME",
            _ => "",
        };
        return Err(RollbackError::NotASpecChange {
            sequence,
            found: kind.to_string(),
            object: target.kind.object_kind(),
            change: target.kind.change_kind(),
            hint,
        });
    }
    let s = &r.subject;
    if s.kind != target.kind.object_kind() || s.namespace != target.namespace || s.name != target.name {
        return Err(RollbackError::OtherSubject {
            sequence,
            found: format!("{} {}/{}", s.kind, s.namespace, s.name),
            wanted: target.describe(),
        });
    }
    let recorded = r.decision["uid"].as_str().unwrap_or_default();
    if recorded != target.uid && !allow_recreated {
        return Err(RollbackError::Recreated {
            sequence,
            object: target.describe(),
            recorded: recorded.to_string(),
            current: target.uid.clone(),
        });
    }
    let spec = r.decision.get("spec").filter(|v| v.is_object()).cloned();
    let spec = spec.ok_or(RollbackError::Incomplete {
        sequence,
        field: "spec",
    })?;
    let generation = r.decision["generation"].as_i64().ok_or(RollbackError::Incomplete {
        sequence,
        field: "generation",
    })?;
    Ok((spec, generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::config_change::agent_change_record;
    use crate::receipts::chain::ChainBuilder;
    use crate::receipts::testutil::signer;
    use crate::receipts::{Action, ReceiptDraft, SubjectRef, inputs_digest};

    fn receipt(decision: Value, name: &str, seed: u8) -> Receipt {
        receipt_of(AGENT_KIND, decision, name, seed)
    }

    fn receipt_of(kind: &str, decision: Value, name: &str, seed: u8) -> Receipt {
        let spec = decision["spec"].clone();
        let draft = ReceiptDraft {
            action: Action::Configure,
            subject: SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: kind.into(),
                namespace: "shop".into(),
                name: name.into(),
                uid: Some("uid-1".into()),
            },
            decision,
            inputs_digest: inputs_digest(&spec).unwrap(),
            time: "2026-12-05T00:00:00Z".into(),
            level: crate::receipts::Level::FullAudit,
        };
        ChainBuilder::genesis(signer(seed)).seal(draft).unwrap()
    }

    fn agent(uid: &str) -> Target {
        Target {
            kind: SpecKind::Agent,
            namespace: "shop".into(),
            name: "web".into(),
            uid: uid.into(),
        }
    }

    fn keys(seed: u8) -> TrustedKeys {
        let mut k = TrustedKeys::new();
        k.add(signer(seed).public_key());
        k
    }

    #[test]
    fn a_signed_spec_change_of_the_agent_gives_back_its_spec_and_generation() {
        let spec = serde_json::json!({"replicas": 2, "template": {"spec": {"containers": []}}});
        let r = receipt(agent_change_record("uid-1", 3, Some(2), &spec), "web", 1);
        assert_eq!(spec_to_restore(&r, &keys(1), &agent("uid-1"), false), Ok((spec, 3)));
    }

    #[test]
    fn an_edited_unsigned_foreign_or_other_agents_receipt_is_refused_naming_why() {
        let spec = serde_json::json!({"replicas": 2});
        let good = receipt(agent_change_record("uid-1", 3, None, &spec), "web", 1);
        // Positive control.
        assert!(spec_to_restore(&good, &keys(1), &agent("uid-1"), false).is_ok());
        // Edited: the spec changed after signing.
        let mut edited = good.clone();
        edited.decision["spec"]["replicas"] = 50.into();
        let e = spec_to_restore(&edited, &keys(1), &agent("uid-1"), false).unwrap_err();
        assert_eq!(e, RollbackError::Edited { sequence: 0 });
        // Re-hashed but signed by an untrusted key.
        let e = spec_to_restore(&good, &keys(2), &agent("uid-1"), false).unwrap_err();
        assert!(e.to_string().contains("not trusted: signed by key id"), "{e}");
        // Another agent's receipt.
        let other = receipt(agent_change_record("uid-1", 3, None, &spec), "db", 1);
        let e = spec_to_restore(&other, &keys(1), &agent("uid-1"), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("is about GeometricAgent shop/db, not GeometricAgent shop/web"),
            "{e}"
        );
        // Not a spec change.
        let scale = receipt(serde_json::json!({"kind": "placement.scale", "spec": {}}), "web", 1);
        let e = spec_to_restore(&scale, &keys(1), &agent("uid-1"), false).unwrap_err();
        assert!(e.to_string().contains("records \"placement.scale\""), "{e}");
        // The agent was re-created: refused unless allowed.
        let e = spec_to_restore(&good, &keys(1), &agent("uid-2"), false).unwrap_err();
        assert!(e.to_string().contains("--allow-recreated"), "{e}");
        assert!(spec_to_restore(&good, &keys(1), &agent("uid-2"), true).is_ok());
    }

    #[test]
    fn a_strategy_is_given_back_only_its_own_strategy_change() {
        use crate::decisions::config_change::strategy_change_record;
        let spec = serde_json::json!({"scaling": {"maxReplicas": 5}});
        let r = receipt_of(
            STRATEGY_KIND,
            strategy_change_record("uid-1", 2, Some(1), &spec),
            "tuned",
            1,
        );
        let tuned = Target {
            kind: SpecKind::Strategy,
            namespace: "shop".into(),
            name: "tuned".into(),
            uid: "uid-1".into(),
        };
        assert_eq!(spec_to_restore(&r, &keys(1), &tuned, false), Ok((spec, 2)));
        // An agent's change of the same name is not a strategy's.
        let agents = receipt(
            agent_change_record("uid-1", 3, None, &serde_json::json!({})),
            "tuned",
            1,
        );
        let e = spec_to_restore(&agents, &keys(1), &tuned, false).unwrap_err();
        assert!(
            e.to_string().contains(
                "records \"agent.change\", not \"strategy.change\" (a spec change of kind OrchestrationStrategy); it is an agent's: mom rollback agent/NAME"
            ),
            "{e}"
        );
        // Nor is a strategy's change an agent's.
        let e = spec_to_restore(&r, &keys(1), &agent("uid-1"), false).unwrap_err();
        assert!(
            e.to_string().contains(
                "not \"agent.change\" (a spec change of kind GeometricAgent); it is a strategy's: mom rollback strategy/NAME"
            ),
            "{e}"
        );
    }
}
