//! Proofs over the chain: inclusion of a receipt in a checkpoint's signed tree head, and
//! consistency between two checkpoints (the later tree extends the earlier one), produced from the
//! receipts and verified against the trusted keys.

use super::chain::CheckpointDecision;
use super::hash::{leaf_hashes, receipt_hash};
use super::merkle::{Hash, leaf_hash};
use super::{Action, Receipt, ReceiptError};

/// A tree head read from a checkpoint receipt whose tree-head signature verifies under `keys`.
fn signed_tree_head(checkpoint: &Receipt, keys: &super::TrustedKeys) -> Result<(u64, Hash), ReceiptError> {
    let seq = checkpoint.sequence;
    if checkpoint.action != Action::Checkpoint {
        return Err(ReceiptError::BadCheckpoint {
            sequence: seq,
            message: "not a checkpoint".into(),
        });
    }
    let cp = CheckpointDecision::from_receipt(checkpoint)?;
    let root = cp.root(seq)?;
    let msg = super::signing::checkpoint_message(cp.tree_size, &root);
    if !keys.verify(&checkpoint.key_id, &msg, &cp.signature) {
        return Err(ReceiptError::BadCheckpoint {
            sequence: seq,
            message: format!("tree-head signature by key {} does not verify", checkpoint.key_id),
        });
    }
    Ok((cp.tree_size, root))
}

/// Audit path showing that receipt `sequence` is in the tree of the first `tree_size`
/// receipts. `receipts` is the chain from sequence 0 (e.g. an archive export).
pub fn prove_inclusion(receipts: &[Receipt], sequence: u64, tree_size: u64) -> Result<Vec<Hash>, ReceiptError> {
    let leaves = leaf_hashes(receipts.get(..tree_size as usize).unwrap_or(receipts))?;
    if (leaves.len() as u64) < tree_size {
        return Err(ReceiptError::NotNext {
            sequence: leaves.len() as u64,
            expected: tree_size,
        });
    }
    super::merkle::inclusion_proof(&leaves, sequence).map_err(|e| ReceiptError::BadCheckpoint {
        sequence,
        message: e.to_string(),
    })
}

/// Checks that `receipt` (its stored hash, which must match its content) is leaf
/// `receipt.sequence` of the tree whose head `checkpoint` signs.
pub fn verify_inclusion_in_checkpoint(
    receipt: &Receipt,
    proof: &[Hash],
    checkpoint: &Receipt,
    keys: &super::TrustedKeys,
) -> Result<(), ReceiptError> {
    let (size, root) = signed_tree_head(checkpoint, keys)?;
    let h = super::decode_hash("hash", &receipt.hash)?;
    if receipt_hash(receipt)? != h {
        return Err(ReceiptError::BadField {
            field: "hash",
            value: receipt.hash.clone(),
            expected: "the hash of the receipt's content",
        });
    }
    if super::merkle::verify_inclusion(&leaf_hash(&h), receipt.sequence, size, proof, &root) {
        Ok(())
    } else {
        Err(ReceiptError::BadCheckpoint {
            sequence: checkpoint.sequence,
            message: format!("receipt {} is not included in tree size {size}", receipt.sequence),
        })
    }
}

/// Consistency proof between the trees of the first `old_size` and `new_size` receipts.
pub fn prove_consistency(receipts: &[Receipt], old_size: u64, new_size: u64) -> Result<Vec<Hash>, ReceiptError> {
    let leaves = leaf_hashes(receipts.get(..new_size as usize).unwrap_or(receipts))?;
    if (leaves.len() as u64) < new_size {
        return Err(ReceiptError::NotNext {
            sequence: leaves.len() as u64,
            expected: new_size,
        });
    }
    super::merkle::consistency_proof(&leaves, old_size).map_err(|e| ReceiptError::BadCheckpoint {
        sequence: new_size,
        message: e.to_string(),
    })
}

/// Checks that the tree signed by checkpoint `old` is a prefix of the one signed by `new`
/// (nothing before `old` was rewritten since), both heads signed by trusted keys.
pub fn verify_checkpoint_consistency(
    old: &Receipt,
    new: &Receipt,
    proof: &[Hash],
    keys: &super::TrustedKeys,
) -> Result<(), ReceiptError> {
    let (m, old_root) = signed_tree_head(old, keys)?;
    let (n, new_root) = signed_tree_head(new, keys)?;
    if super::merkle::verify_consistency(m, n, &old_root, &new_root, proof) {
        Ok(())
    } else {
        Err(ReceiptError::BadCheckpoint {
            sequence: new.sequence,
            message: format!(
                "tree size {n} is not an extension of checkpoint {} (size {m})",
                old.sequence
            ),
        })
    }
}

#[cfg(test)]
mod proof_tests {
    use super::*;
    use crate::receipts::TrustedKeys;
    use crate::receipts::chain::ChainBuilder;
    use crate::receipts::testutil::{chain, signer};

    fn keys() -> TrustedKeys {
        let mut k = TrustedKeys::new();
        k.add(signer(1).public_key());
        k
    }

    #[test]
    fn every_receipt_before_a_checkpoint_is_provably_included_in_it() {
        let rs = chain(41, 20, &signer(1));
        let cp = &rs[40];
        for seq in 0..40u64 {
            let proof = prove_inclusion(&rs, seq, 40).unwrap();
            verify_inclusion_in_checkpoint(&rs[seq as usize], &proof, cp, &keys()).unwrap();
        }
        // A receipt after the checkpoint, an edited receipt, an untrusted key: refused.
        assert!(prove_inclusion(&rs, 40, 40).is_err());
        let proof = prove_inclusion(&rs, 3, 40).unwrap();
        let mut edited = rs[3].clone();
        edited.time.push('!');
        assert!(verify_inclusion_in_checkpoint(&edited, &proof, cp, &keys()).is_err());
        let mut other = TrustedKeys::new();
        other.add(signer(2).public_key());
        let err = verify_inclusion_in_checkpoint(&rs[3], &proof, cp, &other).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn a_later_checkpoint_is_consistent_with_an_earlier_one_unless_history_was_rewritten() {
        let s = signer(1);
        let rs = chain(41, 20, &s);
        let proof = prove_consistency(&rs, 20, 40).unwrap();
        verify_checkpoint_consistency(&rs[20], &rs[40], &proof, &keys()).unwrap();

        // Rewrite receipt 5 and re-seal everything after it with the real key (a key-holder's
        // fork of history): the new checkpoint at 40 is not an extension of the one at 20.
        let mut b = ChainBuilder::resume(s.clone(), &rs[..5]).unwrap();
        let mut forked = rs[..5].to_vec();
        for r in &rs[5..] {
            let next = if r.action == Action::Checkpoint {
                b.checkpoint(r.subject.clone(), r.time.clone()).unwrap()
            } else {
                let mut d = crate::receipts::testutil::draft(r.sequence);
                if r.sequence == 5 {
                    d.time = "rewritten".into();
                }
                b.seal(d).unwrap()
            };
            forked.push(next);
        }
        let proof = prove_consistency(&forked, 20, 40).unwrap();
        assert!(verify_checkpoint_consistency(&rs[20], &forked[40], &proof, &keys()).is_err());
        assert!(verify_checkpoint_consistency(&rs[3], &rs[40], &proof, &keys()).is_err());
    }
}
