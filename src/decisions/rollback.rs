//! Rollback by hand: the spec a GeometricAgent is put back to, taken from a signed
//! `agent.change` receipt of that agent (`mom rollback`).
//!
//! Input: the stored receipt, the trusted public keys and the agent as it is now (namespace,
//! name, uid). Output: the recorded spec and the generation it was recorded at, or why the
//! receipt cannot be trusted or is not that agent's. Pure: the caller reads and writes the
//! cluster.
//!
//! A receipt is believed only when its content hashes to its stored `hash`
//! ([`crate::receipts::hash::receipt_hash`]) and a trusted key signs that hash
//! ([`crate::receipts::provenance::split_trusted`]): anyone who can create a Receipt object
//! could otherwise hand the rollback a spec of their choosing.

use serde_json::Value;

use super::config_change::AGENT_CHANGE_KIND;
use crate::receipts::provenance::split_trusted;
use crate::receipts::{Receipt, TrustedKeys};

/// Kind of the subject an `agent.change` receipt is about.
pub const AGENT_KIND: &str = "GeometricAgent";

/// Why a receipt cannot give the agent its spec back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RollbackError {
    #[error("receipt {sequence}: its content does not hash to its stored hash (edited after it was written)")]
    Edited { sequence: u64 },
    #[error("receipt {sequence}: not trusted: {why}")]
    Untrusted { sequence: u64, why: String },
    #[error(
        "receipt {sequence} records {found:?}, not a GeometricAgent spec change (decision kind {AGENT_CHANGE_KIND:?})"
    )]
    NotASpecChange { sequence: u64, found: String },
    #[error("receipt {sequence} is about {found}, not GeometricAgent {wanted}")]
    OtherSubject {
        sequence: u64,
        found: String,
        wanted: String,
    },
    #[error(
        "receipt {sequence} is about an earlier GeometricAgent {agent} (uid {recorded}); the agent now has uid {current} (deleted and re-created): give --allow-recreated to apply it anyway"
    )]
    Recreated {
        sequence: u64,
        agent: String,
        recorded: String,
        current: String,
    },
    #[error("receipt {sequence}: its decision has no {field}")]
    Incomplete { sequence: u64, field: &'static str },
}

/// The agent a rollback is for, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The spec recorded by receipt `r` for `agent` and the generation it was recorded at.
pub fn spec_to_restore(
    r: &Receipt,
    keys: &TrustedKeys,
    agent: &Agent,
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
    if kind != AGENT_CHANGE_KIND {
        return Err(RollbackError::NotASpecChange {
            sequence,
            found: kind.to_string(),
        });
    }
    let s = &r.subject;
    if s.kind != AGENT_KIND || s.namespace != agent.namespace || s.name != agent.name {
        return Err(RollbackError::OtherSubject {
            sequence,
            found: format!("{} {}/{}", s.kind, s.namespace, s.name),
            wanted: format!("{}/{}", agent.namespace, agent.name),
        });
    }
    let recorded = r.decision["uid"].as_str().unwrap_or_default();
    if recorded != agent.uid && !allow_recreated {
        return Err(RollbackError::Recreated {
            sequence,
            agent: format!("{}/{}", agent.namespace, agent.name),
            recorded: recorded.to_string(),
            current: agent.uid.clone(),
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
        let spec = decision["spec"].clone();
        let draft = ReceiptDraft {
            action: Action::Configure,
            subject: SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: AGENT_KIND.into(),
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

    fn agent(uid: &str) -> Agent {
        Agent {
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
}
