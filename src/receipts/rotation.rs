//! Signing-key rotation recorded in the chain: the hand-over receipt and the rule the verifier
//! applies to the keys of a chain.
//!
//! Inputs: the outgoing and incoming signers (writer side), or the receipts in sequence order and
//! the trusted keys (verifier side). Outputs: the hand-over receipt, and [`KeyProblem`]s.
//!
//! A chain is signed by one key at a time. Changing it takes one `configure` receipt with the
//! decision `{kind: "receipts.key_rotation", fromKeyId, toKeyId, toPublicKey, proof}`:
//! - it is signed, like any receipt, by the **outgoing** key (`keyId == fromKeyId`): the holder
//!   of the key in force hands the chain over;
//! - `proof` is the incoming key's Ed25519 signature over
//!   `"mom-key-rotation-v1\0" ‖ sequence (u64 BE) ‖ prevHash₃₂ ‖ fromKeyId (16 ASCII hex digits)`,
//!   so the incoming key accepted this very place in this very chain (no replay elsewhere);
//! - every receipt after it is signed by `toKeyId`.
//!
//! The verifier ([`check_handovers`]) walks the chain in sequence order. The key in force is the
//! first receipt's (or, after a gap, the first receipt's after the gap); a receipt signed by any
//! other key is a switch not recorded in the chain, even when that key is trusted (e.g. a key
//! retired by an earlier rotation). A hand-over to a key that is not trusted, whose public key
//! does not match its id, or whose proof does not verify is itself a problem and does not switch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::ChainBuilder;
pub use super::signing::rotation_message;
use super::signing::{Signer, TrustedKeys, parse_public_key, parse_signature, receipt_message};
use super::{Action, Level, Receipt, ReceiptDraft, ReceiptError, SubjectRef};

/// Decision kind of a key hand-over (action `configure`).
pub const KEY_ROTATION_KIND: &str = "receipts.key_rotation";

/// The decision of a hand-over receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    pub kind: String,
    pub from_key_id: String,
    pub to_key_id: String,
    /// The incoming public key, 64 hex digits.
    pub to_public_key: String,
    /// The incoming key's signature (hex) over [`rotation_message`].
    pub proof: String,
}

impl KeyRotation {
    /// The hand-over a receipt records, if it is one (action `configure`, decision kind
    /// [`KEY_ROTATION_KIND`]); `Err` when it claims that kind but is malformed.
    pub fn from_receipt(r: &Receipt) -> Option<Result<Self, String>> {
        if r.action != Action::Configure || r.decision.get("kind").and_then(Value::as_str) != Some(KEY_ROTATION_KIND) {
            return None;
        }
        Some(serde_json::from_value(r.decision.clone()).map_err(|e| format!("malformed key rotation: {e}")))
    }
}

/// The hand-over receipt from the builder's signer to `to`, next in the chain (not committed):
/// signed by the outgoing key, with the incoming key's proof. `time` comes from the caller.
pub fn prepare_handover(
    builder: &ChainBuilder,
    to: &Signer,
    subject: SubjectRef,
    time: String,
) -> Result<Receipt, ReceiptError> {
    let (sequence, prev_hash) = match builder.head() {
        None => (0, super::GENESIS_PREV_HASH.to_string()),
        Some(h) => (h.sequence.saturating_add(1), h.hash.clone()),
    };
    let prev = super::decode_hash("prevHash", &prev_hash)?;
    let from = builder.signer().key_id().to_string();
    let decision = KeyRotation {
        kind: KEY_ROTATION_KIND.into(),
        proof: to.sign_rotation(sequence, &prev, &from),
        from_key_id: from,
        to_key_id: to.key_id().to_string(),
        to_public_key: to.public_hex(),
    };
    let decision = serde_json::to_value(&decision).map_err(|e| ReceiptError::BadField {
        field: "decision",
        value: e.to_string(),
        expected: "a key rotation",
    })?;
    let inputs = serde_json::json!({"toPublicKey": to.public_hex()});
    let receipt = builder.prepare(ReceiptDraft {
        action: Action::Configure,
        subject,
        decision,
        inputs_digest: super::inputs_digest(&inputs)?,
        time,
        level: Level::FullAudit,
    })?;
    debug_assert_eq!(receipt.sequence, sequence);
    Ok(receipt)
}

/// The key id in force after the last of `chain` (sequence order): the key of its last receipt,
/// or the incoming key when that receipt is a hand-over. `None` for an empty chain.
pub fn key_after(chain: &[Receipt]) -> Option<String> {
    let last = chain.last()?;
    match KeyRotation::from_receipt(last) {
        Some(Ok(rotation)) => Some(rotation.to_key_id),
        _ => Some(last.key_id.clone()),
    }
}

/// A problem with the keys of a chain, at a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    pub sequence: u64,
    pub detail: String,
}

/// What [`check_handovers`] needs of one receipt.
pub struct KeyedReceipt<'a> {
    pub sequence: u64,
    pub key_id: &'a str,
    /// `Some` when the receipt claims to be a hand-over (see [`KeyRotation::from_receipt`]).
    pub rotation: Option<Result<KeyRotation, String>>,
    /// The receipt's `prevHash` and `signature`, and its stored hash when it decodes.
    pub prev_hash: &'a str,
    pub signature: &'a str,
    pub hash: Option<[u8; 32]>,
}

/// Checks that every change of signing key along `chain` (canonical receipts, sequence order) is
/// recorded by a valid hand-over; returns the problems (empty when every switch is recorded).
/// Also returns how many Ed25519 signatures it checked (each hand-over's own signature and proof).
pub fn check_handovers(chain: &[KeyedReceipt<'_>], keys: &TrustedKeys) -> (Vec<KeyProblem>, usize) {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    let mut current: Option<String> = None;
    let mut prev_seq: Option<u64> = None;
    for r in chain {
        if prev_seq.is_some_and(|p| p.checked_add(1) != Some(r.sequence)) {
            // A gap (reported as missing): the hand-over may be among the missing receipts.
            current = None;
        }
        prev_seq = Some(r.sequence);
        match &current {
            None => current = Some(r.key_id.to_string()),
            Some(k) if k != r.key_id => {
                problems.push(KeyProblem {
                    sequence: r.sequence,
                    detail: format!(
                        "signed by key {} but the chain's key here is {k}: no key_rotation receipt hands the chain over to {}",
                        r.key_id, r.key_id
                    ),
                });
                // Name the switch once, not every receipt after it.
                current = Some(r.key_id.to_string());
            }
            Some(_) => {}
        }
        let Some(rotation) = &r.rotation else { continue };
        let verdict = rotation.clone().and_then(|rot| {
            if rot.from_key_id != r.key_id {
                return Err(format!(
                    "hands over from key {} but is signed by key {}: a hand-over is signed by the outgoing key",
                    rot.from_key_id, r.key_id
                ));
            }
            let own = match (keys.get(r.key_id), r.hash, parse_signature(r.signature)) {
                (Some(k), Some(h), Some(sig)) => {
                    checked += 1;
                    k.verify_strict(&receipt_message(&h), &sig).is_ok()
                }
                _ => false,
            };
            if !own {
                return Err(format!(
                    "its signature by the outgoing key {} does not verify",
                    r.key_id
                ));
            }
            let to = parse_public_key(&rot.to_public_key).map_err(|e| e.to_string())?;
            if super::signing::key_id(&to) != rot.to_key_id {
                return Err(format!(
                    "toPublicKey has key id {}, not toKeyId {}",
                    super::signing::key_id(&to),
                    rot.to_key_id
                ));
            }
            if keys.get(&rot.to_key_id).is_none() {
                return Err(format!(
                    "hands over to key {}, which is not trusted (not published)",
                    rot.to_key_id
                ));
            }
            let prev = super::hex32(r.prev_hash).ok_or_else(|| "prevHash is not 64 hex digits".to_string())?;
            let proof = parse_signature(&rot.proof).ok_or_else(|| "proof is not a hex signature".to_string())?;
            checked += 1;
            to.verify_strict(&rotation_message(r.sequence, &prev, &rot.from_key_id), &proof)
                .map_err(|_| format!("the incoming key {}'s proof does not verify", rot.to_key_id))?;
            Ok(rot.to_key_id)
        });
        match verdict {
            Ok(to) => current = Some(to),
            Err(why) => problems.push(KeyProblem {
                sequence: r.sequence,
                detail: format!("key rotation not accepted: {why}"),
            }),
        }
    }
    (problems, checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::testutil::{checkpoint_subject, draft, signer};
    use crate::receipts::verify::{ProblemKind, VerifyOptions, verify_chain};

    /// `before` receipts by `a`, a hand-over to `b`, then `after` receipts by `b`.
    fn rotated(a: &Signer, b: &Signer, before: u64, after: u64) -> Vec<Receipt> {
        let mut builder = ChainBuilder::genesis(a.clone());
        let mut out = Vec::new();
        for i in 0..before {
            out.push(builder.seal(draft(i)).unwrap());
        }
        let h = prepare_handover(&builder, b, checkpoint_subject(), "t-rotate".into()).unwrap();
        builder.commit(&h).unwrap();
        out.push(h);
        builder.set_signer(b.clone());
        for i in 0..after {
            out.push(builder.seal(draft(before + 1 + i)).unwrap());
        }
        out
    }

    fn trusting(signers: &[&Signer]) -> TrustedKeys {
        let mut keys = TrustedKeys::new();
        for s in signers {
            keys.add(s.public_key());
        }
        keys
    }

    fn kinds(report: &crate::receipts::Report) -> Vec<(u64, ProblemKind)> {
        report.problems.iter().map(|p| (p.sequence, p.kind)).collect()
    }

    #[test]
    fn a_chain_rotated_by_a_hand_over_verifies_with_both_keys_published() {
        let (a, b) = (signer(1), signer(2));
        let chain = rotated(&a, &b, 3, 3);
        assert_eq!(
            chain[3].key_id,
            a.key_id(),
            "the hand-over is signed by the outgoing key"
        );
        assert_eq!(chain[4].key_id, b.key_id());
        for all in [false, true] {
            let options = VerifyOptions {
                signatures: if all {
                    crate::receipts::SignatureCheck::All
                } else {
                    crate::receipts::SignatureCheck::Anchors
                },
                ..Default::default()
            };
            let report = verify_chain(&chain, &trusting(&[&a, &b]), &options);
            assert!(report.is_ok(), "{report:?}");
        }
        assert_eq!(key_after(&chain), Some(b.key_id().to_string()));
        assert_eq!(key_after(&chain[..4]), Some(b.key_id().to_string()));
        assert_eq!(key_after(&chain[..3]), Some(a.key_id().to_string()));
    }

    #[test]
    fn the_rotated_chain_fails_when_the_new_key_is_not_published() {
        let (a, b) = (signer(1), signer(2));
        let chain = rotated(&a, &b, 2, 2);
        let report = verify_chain(&chain, &trusting(&[&a]), &VerifyOptions::default());
        let k = kinds(&report);
        assert!(k.contains(&(3, ProblemKind::UnknownKey)), "{k:?}");
        assert!(k.contains(&(2, ProblemKind::KeyHandover)), "{k:?}");
        let report = verify_chain(&chain, &trusting(&[&b]), &VerifyOptions::default());
        assert!(kinds(&report).contains(&(0, ProblemKind::UnknownKey)), "{report:?}");
    }

    #[test]
    fn a_switch_to_a_trusted_key_without_a_hand_over_is_named_at_the_switch() {
        let (a, b) = (signer(1), signer(2));
        let mut builder = ChainBuilder::genesis(a.clone());
        let mut chain: Vec<Receipt> = (0..3).map(|i| builder.seal(draft(i)).unwrap()).collect();
        builder.set_signer(b.clone());
        chain.extend((3..6).map(|i| builder.seal(draft(i)).unwrap()));
        let report = verify_chain(&chain, &trusting(&[&a, &b]), &VerifyOptions::default());
        assert_eq!(kinds(&report), vec![(3, ProblemKind::KeyHandover)], "{report:?}");
        assert!(report.problems[0].detail.contains(b.key_id()), "{report:?}");
    }

    #[test]
    fn a_key_retired_by_a_rotation_cannot_sign_later_receipts() {
        let (a, b) = (signer(1), signer(2));
        let mut chain = rotated(&a, &b, 2, 2);
        // The retired key a signs the next receipt.
        let mut builder = ChainBuilder::resume(a.clone(), &chain).unwrap();
        chain.push(builder.seal(draft(9)).unwrap());
        let report = verify_chain(&chain, &trusting(&[&a, &b]), &VerifyOptions::default());
        assert_eq!(kinds(&report), vec![(5, ProblemKind::KeyHandover)], "{report:?}");
    }

    #[test]
    fn a_hand_over_signed_by_the_incoming_key_or_with_a_bad_proof_is_rejected() {
        let (a, b, c) = (signer(1), signer(2), signer(3));
        // Signed by the incoming key b instead of the outgoing a.
        let mut builder = ChainBuilder::genesis(a.clone());
        let mut chain: Vec<Receipt> = (0..2).map(|i| builder.seal(draft(i)).unwrap()).collect();
        let mut by_b = builder.clone();
        by_b.set_signer(b.clone());
        let h = prepare_handover(&by_b, &b, checkpoint_subject(), "t".into()).unwrap();
        builder.commit(&h).unwrap();
        chain.push(h);
        builder.set_signer(b.clone());
        chain.push(builder.seal(draft(3)).unwrap());
        let report = verify_chain(&chain, &trusting(&[&a, &b]), &VerifyOptions::default());
        assert!(kinds(&report).contains(&(2, ProblemKind::KeyHandover)), "{report:?}");

        // A proof by another key than the one handed over to (c signs, b is named).
        let mut builder = ChainBuilder::genesis(a.clone());
        let mut chain: Vec<Receipt> = (0..2).map(|i| builder.seal(draft(i)).unwrap()).collect();
        let honest = prepare_handover(&builder, &b, checkpoint_subject(), "t".into()).unwrap();
        let by_c = prepare_handover(&builder, &c, checkpoint_subject(), "t".into()).unwrap();
        let mut forged = honest.clone();
        forged.decision["proof"] = by_c.decision["proof"].clone();
        let h = crate::receipts::hash::receipt_hash(&forged).unwrap();
        forged.hash = hex::encode(h);
        forged.signature = a.sign_receipt(&h);
        builder.commit(&forged).unwrap();
        chain.push(forged);
        builder.set_signer(b.clone());
        chain.push(builder.seal(draft(3)).unwrap());
        let report = verify_chain(&chain, &trusting(&[&a, &b, &c]), &VerifyOptions::default());
        let k = kinds(&report);
        assert!(k.contains(&(2, ProblemKind::KeyHandover)), "{k:?}");
        assert!(report.problems.iter().any(|p| p.detail.contains("proof")), "{report:?}");
        // Positive control: the honest hand-over at the same place verifies.
        let mut builder = ChainBuilder::genesis(a.clone());
        let mut chain: Vec<Receipt> = (0..2).map(|i| builder.seal(draft(i)).unwrap()).collect();
        builder.commit(&honest).unwrap();
        chain.push(honest);
        builder.set_signer(b.clone());
        chain.push(builder.seal(draft(3)).unwrap());
        assert!(verify_chain(&chain, &trusting(&[&a, &b]), &VerifyOptions::default()).is_ok());
    }

    #[test]
    fn a_proof_does_not_carry_over_to_another_place_in_the_chain() {
        let (a, b) = (signer(1), signer(2));
        let chain = rotated(&a, &b, 2, 1);
        let proof = chain[2].decision["proof"].as_str().unwrap().to_string();
        let prev = crate::receipts::hex32(&chain[2].prev_hash).unwrap();
        let sig = parse_signature(&proof).unwrap();
        assert!(
            b.public_key()
                .verify_strict(&rotation_message(2, &prev, a.key_id()), &sig)
                .is_ok()
        );
        assert!(
            b.public_key()
                .verify_strict(&rotation_message(3, &prev, a.key_id()), &sig)
                .is_err()
        );
        assert!(
            b.public_key()
                .verify_strict(&rotation_message(2, &[0; 32], a.key_id()), &sig)
                .is_err()
        );
    }

    #[test]
    fn two_rotations_in_a_row_verify_from_json_lines_as_from_receipts() {
        let (a, b, c) = (signer(1), signer(2), signer(3));
        let mut chain = rotated(&a, &b, 2, 2);
        let mut builder = ChainBuilder::resume(b.clone(), &chain).unwrap();
        let h = prepare_handover(&builder, &c, checkpoint_subject(), "t2".into()).unwrap();
        builder.commit(&h).unwrap();
        chain.push(h);
        builder.set_signer(c.clone());
        chain.push(builder.checkpoint(checkpoint_subject(), "cp".into()).unwrap());
        chain.push(builder.seal(draft(20)).unwrap());
        let keys = trusting(&[&a, &b, &c]);
        assert!(verify_chain(&chain, &keys, &VerifyOptions::default()).is_ok());
        let text = crate::receipts::to_json_lines(&chain);
        let report = crate::receipts::verify_json_lines(&text, &keys, &VerifyOptions::default()).unwrap();
        assert!(report.is_ok(), "{report:?}");
        // Without the middle key the chain does not verify.
        let report = verify_chain(&chain, &trusting(&[&a, &c]), &VerifyOptions::default());
        assert!(!report.is_ok());
    }
}
