//! Which stored receipts a writer may continue its chain from: those signed by a key it trusts.
//!
//! Anyone allowed to create a `Receipt` object (or an admin who bypasses the admission policy)
//! can store one; a writer that adopted every stored receipt would let a forgery become its
//! chain head (or, with `sequence` near the top of the range, stop it writing for good). The
//! writer therefore splits what it lists: a receipt counts only when a trusted key signs its
//! stored hash (the hash itself is checked against the content when the chain is resumed);
//! identical copies of a receipt count once. Everything else is *foreign*: ignored for chaining,
//! and reported with the reason, so the operator can say so and `mom verify` names it.

use super::Receipt;
use super::signing::{TrustedKeys, parse_signature, receipt_message, verify_many};

/// Why a stored receipt is not part of the writer's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// Its `keyId` is not one of the trusted keys.
    UnknownKey(String),
    /// Its signature does not verify under the key its `keyId` names (or is not a signature).
    BadSignature(String),
    /// Its `hash` is not 64 hex digits, so nothing can sign it.
    BadHash(String),
    /// A copy of a trusted receipt already counted (same sequence and hash).
    Copy(u64),
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::UnknownKey(id) => write!(f, "signed by key id {id:?}, which is not trusted"),
            Foreign::BadSignature(id) => write!(f, "its signature does not verify under trusted key id {id:?}"),
            Foreign::BadHash(h) => write!(f, "its hash {h:?} is not 64 hex digits"),
            Foreign::Copy(seq) => write!(f, "a copy of receipt {seq}, which is stored elsewhere"),
        }
    }
}

/// The outcome of [`split_trusted`]: the trusted receipts with their tags, and the foreign ones
/// with their tags and reasons.
pub type Split<T> = (Vec<(T, Receipt)>, Vec<(T, Receipt, Foreign)>);

/// Splits `stored` (each receipt with a caller's tag, e.g. where it is stored) into the trusted
/// ones, in the given order, and the foreign ones with the reason. Pure; signatures are checked
/// in batches.
pub fn split_trusted<T>(stored: Vec<(T, Receipt)>, keys: &TrustedKeys) -> Split<T> {
    let mut candidates = Vec::new();
    let mut triples = Vec::new();
    let mut foreign = Vec::new();
    for (tag, r) in stored {
        let Some(key) = keys.get(&r.key_id) else {
            let id = r.key_id.clone();
            foreign.push((tag, r, Foreign::UnknownKey(id)));
            continue;
        };
        let Ok(hash) = super::decode_hash("hash", &r.hash) else {
            let h: String = r.hash.chars().take(80).collect();
            foreign.push((tag, r, Foreign::BadHash(h)));
            continue;
        };
        let Some(signature) = parse_signature(&r.signature) else {
            let id = r.key_id.clone();
            foreign.push((tag, r, Foreign::BadSignature(id)));
            continue;
        };
        triples.push((*key, receipt_message(&hash).to_vec(), signature));
        candidates.push((tag, r));
    }
    let verdicts = verify_many(&triples);
    let mut trusted: Vec<(T, Receipt)> = Vec::with_capacity(candidates.len());
    let mut seen = std::collections::BTreeSet::new();
    for ((tag, r), ok) in candidates.into_iter().zip(verdicts) {
        if !ok {
            let id = r.key_id.clone();
            foreign.push((tag, r, Foreign::BadSignature(id)));
        } else if !seen.insert((r.sequence, r.hash.clone())) {
            let seq = r.sequence;
            foreign.push((tag, r, Foreign::Copy(seq)));
        } else {
            trusted.push((tag, r));
        }
    }
    (trusted, foreign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::demo::demo_chain;
    use crate::receipts::signing::Signer;

    fn tagged(chain: &[Receipt], tag: &str) -> Vec<(String, Receipt)> {
        chain
            .iter()
            .map(|r| (format!("{tag}/{}", r.sequence), r.clone()))
            .collect()
    }

    #[test]
    fn only_receipts_signed_by_a_trusted_key_count_and_every_other_is_named_with_its_reason() {
        let ours = Signer::from_seed([7; 32]);
        let theirs = Signer::from_seed([9; 32]);
        let mut keys = TrustedKeys::new();
        keys.add(ours.public_key());
        let chain = demo_chain(&ours, 5, 0).unwrap();
        let forged = demo_chain(&theirs, 1, 0).unwrap();
        let mut stored = tagged(&chain, "ours");
        // A forgery by another key, one with our key id but a signature that is not ours, one
        // claiming the largest sequence, and a copy of one of our receipts.
        stored.push(("theirs/0".into(), forged[0].clone()));
        let mut wrong_sig = forged[0].clone();
        wrong_sig.key_id = ours.key_id().to_string();
        stored.push(("wrong-sig".into(), wrong_sig));
        let mut huge = forged[0].clone();
        huge.sequence = i64::MAX as u64;
        stored.push(("huge".into(), huge));
        stored.push(("copy".into(), chain[2].clone()));
        let (trusted, foreign) = split_trusted(stored, &keys);
        assert_eq!(
            trusted.iter().map(|(_, r)| r.sequence).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        let reasons: Vec<(String, Foreign)> = foreign.into_iter().map(|(t, _, why)| (t, why)).collect();
        let theirs_id = theirs.key_id().to_string();
        assert_eq!(
            reasons,
            vec![
                ("theirs/0".to_string(), Foreign::UnknownKey(theirs_id.clone())),
                ("huge".to_string(), Foreign::UnknownKey(theirs_id)),
                (
                    "wrong-sig".to_string(),
                    Foreign::BadSignature(ours.key_id().to_string())
                ),
                ("copy".to_string(), Foreign::Copy(2)),
            ]
        );
    }

    #[test]
    fn with_no_trusted_key_every_receipt_is_foreign() {
        let ours = Signer::from_seed([7; 32]);
        let chain = demo_chain(&ours, 3, 0).unwrap();
        let (trusted, foreign) = split_trusted(tagged(&chain, "ours"), &TrustedKeys::new());
        assert!(trusted.is_empty());
        assert_eq!(foreign.len(), 3);
        assert!(foreign[0].2.to_string().contains("not trusted"), "{}", foreign[0].2);
    }
}
