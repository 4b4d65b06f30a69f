//! Retention: fold old receipts into a checkpoint and prune them without breaking verification.
//!
//! Inputs: the chain in sequence order and a [`RetentionPolicy`]. Output: a split into the
//! receipts to export-then-delete and the receipts to keep. The kept part always starts at a
//! checkpoint, whose signed tree head and frontier stand for everything pruned: the verifier
//! accepts such a chain ([`crate::receipts::verify::Report::starts_at_checkpoint`]), later
//! checkpoints are still recomputed from the frontier, and an exported (pruned) receipt can
//! still be proven included in any later checkpoint with [`crate::receipts::merkle`].
//!
//! Folding is two steps for the writer: seal a checkpoint ([`super::ChainBuilder::checkpoint`]),
//! then prune with [`split`] once the export is safely written.

use serde::{Deserialize, Serialize};

use super::{Action, Receipt};

/// How many receipts stay in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// Keep at least the newest `keep_last` receipts (more, back to the checkpoint before them).
    pub keep_last: u64,
}

/// The split a policy makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Receipts to export and then delete (sequence order).
    pub pruned: Vec<Receipt>,
    /// Receipts to keep; starts at a checkpoint when anything was pruned.
    pub kept: Vec<Receipt>,
}

/// The sequence the kept chain starts at: the latest checkpoint at or before
/// `last − keep_last + 1`, if it is after the first receipt. `None` = nothing to prune.
pub fn prune_point(receipts: &[Receipt], policy: &RetentionPolicy) -> Option<u64> {
    let first = receipts.first()?.sequence;
    let last = receipts.last()?.sequence;
    let cutoff = last.saturating_add(1).saturating_sub(policy.keep_last);
    receipts
        .iter()
        .rev()
        .find(|r| r.action == Action::Checkpoint && r.sequence <= cutoff)
        .map(|r| r.sequence)
        .filter(|&s| s > first)
}

/// Splits `receipts` (sequence order) by the policy.
pub fn split(receipts: &[Receipt], policy: &RetentionPolicy) -> Split {
    match prune_point(receipts, policy) {
        None => Split {
            pruned: Vec::new(),
            kept: receipts.to_vec(),
        },
        Some(at) => {
            let k = receipts.partition_point(|r| r.sequence < at);
            Split {
                pruned: receipts[..k].to_vec(),
                kept: receipts[k..].to_vec(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::chain::CheckpointDecision;
    use crate::receipts::hash::leaf_hashes;
    use crate::receipts::merkle::{inclusion_proof, verify_inclusion};
    use crate::receipts::testutil::{chain, signer};
    use crate::receipts::{ChainHead, TrustedKeys, VerifyOptions, verify_chain};

    fn keys() -> TrustedKeys {
        let mut k = TrustedKeys::new();
        k.add(signer(1).public_key());
        k
    }

    #[test]
    fn a_pruned_chain_starts_at_a_checkpoint_and_still_verifies() {
        let rs = chain(100, 10, &signer(1));
        let s = split(&rs, &RetentionPolicy { keep_last: 25 });
        // last = 99, cutoff = 75, latest checkpoint ≤ 75 is 70.
        assert_eq!(s.kept[0].sequence, 70);
        assert_eq!(s.pruned.len(), 70);
        let rep = verify_chain(&s.kept, &keys(), &VerifyOptions::default());
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert!(rep.starts_at_checkpoint);
        assert_eq!(rep.checkpoints_on_signature, 1);
        assert_eq!(rep.checkpoints_recomputed, 2); // 80 and 90 from the frontier
    }

    #[test]
    fn a_pruned_receipt_is_still_provably_included_in_a_later_checkpoint() {
        let rs = chain(64, 20, &signer(1));
        let s = split(&rs, &RetentionPolicy { keep_last: 10 });
        assert_eq!(s.kept[0].sequence, 40);
        let cp = CheckpointDecision::from_receipt(&rs[60]).unwrap();
        let archive = s
            .pruned
            .iter()
            .chain(s.kept.iter())
            .take(60)
            .cloned()
            .collect::<Vec<_>>();
        let leaves = leaf_hashes(&archive).unwrap();
        let proof = inclusion_proof(&leaves, 7).unwrap();
        assert!(verify_inclusion(
            &leaves[7],
            7,
            cp.tree_size,
            &proof,
            &cp.root(60).unwrap()
        ));
    }

    #[test]
    fn deleting_the_start_of_a_chain_without_a_checkpoint_is_reported_missing() {
        let rs = chain(30, 10, &signer(1));
        let rep = verify_chain(&rs[5..], &keys(), &VerifyOptions::default());
        assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
        assert_eq!(rep.problems[0].sequence, 0);
        assert_eq!(rep.problems[0].kind, crate::receipts::ProblemKind::Missing);
    }

    #[test]
    fn a_pin_past_the_kept_start_makes_pruning_to_a_later_checkpoint_evident() {
        let rs = chain(50, 10, &signer(1));
        // The auditor pinned receipt 45; an admin drops everything before 40 and the tail after 44.
        let pin = ChainHead {
            sequence: 45,
            hash: rs[45].hash.clone(),
        };
        let opts = VerifyOptions {
            pinned: vec![pin],
            ..VerifyOptions::default()
        };
        let rep = verify_chain(&rs[40..45], &keys(), &opts);
        assert!(rep.starts_at_checkpoint);
        assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
        assert_eq!(
            (rep.problems[0].sequence, rep.problems[0].kind),
            (45, crate::receipts::ProblemKind::Missing)
        );
    }

    #[test]
    fn nothing_is_pruned_when_no_checkpoint_is_old_enough() {
        let rs = chain(30, 10, &signer(1));
        assert!(split(&rs, &RetentionPolicy { keep_last: 25 }).pruned.is_empty());
        assert!(split(&[], &RetentionPolicy { keep_last: 0 }).kept.is_empty());
        assert_eq!(split(&rs, &RetentionPolicy { keep_last: 0 }).kept[0].sequence, 20);
    }
}
