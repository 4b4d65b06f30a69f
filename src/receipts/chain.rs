//! Sealing receipts into the chain: signature, checkpoints, sampling (hashing is in
//! [`super::hash`], inclusion and consistency proofs in [`super::proof`]).
//!
//! Inputs: the chain head (or the chain tail to resume from), a [`Signer`], unsigned
//! [`ReceiptDraft`]s, the caller's RFC 3339 time. Outputs: sealed [`Receipt`]s whose
//! `prevHash` is the previous receipt's `hash`, and checkpoint receipts carrying a signed
//! Merkle tree head and the compact tree ([`Frontier`]) so earlier receipts can be pruned.
//!
//! `hash = SHA-256(canonical JSON of {action, decision, inputsDigest, keyId, level, prevHash,
//! sequence, subject, time})` — the receipt without `hash` and `signature`.
//! Merkle leaf `i` is the 32-byte `hash` of the receipt with sequence `i`; a checkpoint at
//! sequence `c` signs the tree head of size `c` (every receipt before it).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical;
use super::hash::receipt_hash;
use super::merkle::{Frontier, Hash, leaf_hash};
use super::signing::Signer;
use super::{Action, GENESIS_PREV_HASH, Level, Receipt, ReceiptDraft, ReceiptError, SubjectRef};

/// The last written receipt of a chain: where the next one attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainHead {
    pub sequence: u64,
    /// Hex hash of the receipt at `sequence`.
    pub hash: String,
}

/// The `decision` of a checkpoint receipt: a signed tree head plus the compact tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointDecision {
    /// Number of leaves: every receipt with sequence < treeSize.
    pub tree_size: u64,
    /// Hex RFC 6962 root over those receipts' hashes.
    pub root_hash: String,
    /// Hex perfect-subtree roots of the tree (popcount(treeSize) of them), leftmost first.
    pub frontier: Vec<String>,
    /// Hex Ed25519 signature over `"mom-checkpoint-v1\0" ‖ treeSize ‖ root` by the receipt's key.
    pub signature: String,
}

impl CheckpointDecision {
    /// Reads the checkpoint fields out of a checkpoint receipt's decision.
    pub fn from_receipt(r: &Receipt) -> Result<Self, ReceiptError> {
        serde_json::from_value(r.decision.clone()).map_err(|e| ReceiptError::BadCheckpoint {
            sequence: r.sequence,
            message: format!("decision is not a checkpoint: {e}"),
        })
    }

    /// The root as bytes.
    pub fn root(&self, sequence: u64) -> Result<Hash, ReceiptError> {
        super::decode_hash("decision.rootHash", &self.root_hash).map_err(|e| ReceiptError::BadCheckpoint {
            sequence,
            message: e.to_string(),
        })
    }

    /// The compact tree, checked to have popcount(treeSize) roots whose fold is `rootHash`.
    pub fn frontier(&self, sequence: u64) -> Result<Frontier, ReceiptError> {
        let bad = |message: String| ReceiptError::BadCheckpoint { sequence, message };
        let mut roots = Vec::with_capacity(self.frontier.len());
        for h in &self.frontier {
            roots.push(super::decode_hash("decision.frontier", h).map_err(|e| bad(e.to_string()))?);
        }
        let f = Frontier::from_parts(self.tree_size, roots).map_err(|e| bad(e.to_string()))?;
        if f.root() != self.root(sequence)? {
            return Err(bad("frontier does not fold to rootHash".into()));
        }
        Ok(f)
    }
}

/// Which share of `sample`-level actions is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingPolicy {
    /// Parts per million of `sample`-level actions to record (1_000_000 = all).
    pub rate_ppm: u32,
}

/// The sampling key of a draft: `SHA-256("mom-sample-v1\0" ‖ canonical JSON of the draft)`.
///
/// It depends on the draft only (not on its future place in the chain), so anyone holding the
/// draft can tell whether it had to be written.
pub fn sample_key(draft: &ReceiptDraft) -> Result<Hash, ReceiptError> {
    let value = serde_json::to_value(draft).map_err(|e| ReceiptError::BadField {
        field: "draft",
        value: e.to_string(),
        expected: "serialisable",
    })?;
    let mut h = Sha256::new();
    h.update(b"mom-sample-v1\0");
    h.update(canonical::to_string(&value)?.as_bytes());
    Ok(h.finalize().into())
}

/// Is this draft written? `none` → never, `full_audit` → always, `sample` → when the first
/// 8 bytes of [`sample_key`] (big-endian) are below `rate_ppm / 10⁶ · 2⁶⁴`.
pub fn is_sampled(draft: &ReceiptDraft, policy: &SamplingPolicy) -> Result<bool, ReceiptError> {
    match draft.level {
        Level::None => Ok(false),
        Level::FullAudit => Ok(true),
        Level::Sample => {
            let key = sample_key(draft)?;
            let mut first = [0u8; 8];
            first.copy_from_slice(&key[..8]);
            let x = u128::from(u64::from_be_bytes(first));
            let threshold = (u128::from(policy.rate_ppm.min(1_000_000)) << 64) / 1_000_000;
            Ok(x < threshold)
        }
    }
}

/// Extends a chain: assigns sequence and prevHash, hashes, signs; keeps the Merkle frontier.
///
/// For `full_audit` the writer calls [`ChainBuilder::prepare`], persists the receipt, and only
/// then [`ChainBuilder::commit`]s it and takes the action; [`ChainBuilder::seal`] does both.
#[derive(Debug, Clone)]
pub struct ChainBuilder {
    signer: Signer,
    head: Option<ChainHead>,
    /// The tree over every receipt so far; `None` when resumed from a bare head.
    tree: Option<Frontier>,
}

impl ChainBuilder {
    /// An empty chain: the first receipt gets sequence 0 and [`GENESIS_PREV_HASH`].
    pub fn genesis(signer: Signer) -> Self {
        ChainBuilder {
            signer,
            head: None,
            tree: Some(Frontier::new()),
        }
    }

    /// Continues after `head` without Merkle state: receipts can be sealed, checkpoints cannot
    /// until the builder is rebuilt with [`ChainBuilder::resume`].
    pub fn after(signer: Signer, head: ChainHead) -> Self {
        ChainBuilder {
            signer,
            head: Some(head),
            tree: None,
        }
    }

    /// Continues a persisted chain from its tail: `tail` (in sequence order) starts at
    /// sequence 0 or at a checkpoint (whose frontier restores the Merkle state) and runs to the
    /// last persisted receipt. Hashes and links are checked; signatures are the verifier's job.
    pub fn resume(signer: Signer, tail: &[Receipt]) -> Result<Self, ReceiptError> {
        let Some(first) = tail.first() else {
            return Ok(Self::genesis(signer));
        };
        let mut b = if first.sequence == 0 {
            Self::genesis(signer)
        } else if first.action == Action::Checkpoint {
            let cp = CheckpointDecision::from_receipt(first)?;
            if cp.tree_size != first.sequence {
                return Err(ReceiptError::BadCheckpoint {
                    sequence: first.sequence,
                    message: format!("treeSize {} is not its sequence", cp.tree_size),
                });
            }
            let frontier = cp.frontier(first.sequence)?;
            let prev = ChainHead {
                sequence: first.sequence - 1,
                hash: first.prev_hash.clone(),
            };
            ChainBuilder {
                signer,
                head: Some(prev),
                tree: Some(frontier),
            }
        } else {
            return Err(ReceiptError::NoMerkleState(first.sequence));
        };
        for r in tail {
            let h = receipt_hash(r)?;
            if hex::encode(h) != r.hash {
                return Err(ReceiptError::BadField {
                    field: "hash",
                    value: r.hash.clone(),
                    expected: "the hash of the receipt's content",
                });
            }
            b.commit(r)?;
        }
        Ok(b)
    }

    pub fn head(&self) -> Option<&ChainHead> {
        self.head.as_ref()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Signs what follows with `signer` (after a hand-over receipt, see `receipts::rotation`).
    pub fn set_signer(&mut self, signer: Signer) {
        self.signer = signer;
    }

    /// The Merkle tree over the chain so far, when known.
    pub fn frontier(&self) -> Option<&Frontier> {
        self.tree.as_ref()
    }

    fn next_position(&self) -> Result<(u64, String), ReceiptError> {
        match &self.head {
            None => Ok((0, GENESIS_PREV_HASH.to_string())),
            Some(h) => match h.sequence.checked_add(1) {
                Some(next) => Ok((next, h.hash.clone())),
                None => Err(ReceiptError::BadField {
                    field: "sequence",
                    value: h.sequence.to_string(),
                    expected: "below u64::MAX so the chain can continue",
                }),
            },
        }
    }

    fn finish(&self, mut r: Receipt) -> Result<Receipt, ReceiptError> {
        let h = receipt_hash(&r)?;
        r.hash = hex::encode(h);
        r.signature = self.signer.sign_receipt(&h);
        Ok(r)
    }

    /// The next sealed receipt for `draft`, without changing the builder.
    pub fn prepare(&self, draft: ReceiptDraft) -> Result<Receipt, ReceiptError> {
        if draft.action == Action::Checkpoint {
            return Err(ReceiptError::CheckpointDraft);
        }
        super::decode_hash("inputsDigest", &draft.inputs_digest)?;
        let (sequence, prev_hash) = self.next_position()?;
        self.finish(Receipt {
            sequence,
            action: draft.action,
            subject: draft.subject,
            decision: draft.decision,
            inputs_digest: draft.inputs_digest,
            prev_hash,
            hash: String::new(),
            signature: String::new(),
            key_id: self.signer.key_id().to_string(),
            time: draft.time,
            level: draft.level,
        })
    }

    /// Makes `receipt` (persisted by the caller) the new head.
    pub fn commit(&mut self, receipt: &Receipt) -> Result<(), ReceiptError> {
        let (sequence, prev_hash) = self.next_position()?;
        if receipt.sequence != sequence {
            return Err(ReceiptError::NotNext {
                sequence: receipt.sequence,
                expected: sequence,
            });
        }
        if receipt.prev_hash != prev_hash {
            return Err(ReceiptError::BrokenLink {
                sequence,
                found: receipt.prev_hash.clone(),
                expected: prev_hash,
            });
        }
        let h = super::decode_hash("hash", &receipt.hash)?;
        if let Some(t) = &mut self.tree {
            t.push_leaf_hash(leaf_hash(&h));
        }
        self.head = Some(ChainHead {
            sequence,
            hash: receipt.hash.clone(),
        });
        Ok(())
    }

    /// [`prepare`](Self::prepare) then [`commit`](Self::commit).
    pub fn seal(&mut self, draft: ReceiptDraft) -> Result<Receipt, ReceiptError> {
        let r = self.prepare(draft)?;
        self.commit(&r)?;
        Ok(r)
    }

    /// Seals `draft` if the sampling decision says so; `None` means nothing is written and the
    /// chain is unchanged (so it stays unbroken over the written receipts).
    pub fn record(&mut self, draft: ReceiptDraft, policy: &SamplingPolicy) -> Result<Option<Receipt>, ReceiptError> {
        if is_sampled(&draft, policy)? {
            self.seal(draft).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The next checkpoint receipt (signed tree head over every receipt so far), unchanged builder.
    pub fn prepare_checkpoint(&self, subject: SubjectRef, time: String) -> Result<Receipt, ReceiptError> {
        let (sequence, prev_hash) = self.next_position()?;
        let tree = self.tree.as_ref().ok_or(ReceiptError::NoMerkleState(sequence))?;
        let root = tree.root();
        let decision = CheckpointDecision {
            tree_size: tree.size(),
            root_hash: hex::encode(root),
            frontier: tree.subtrees().iter().map(hex::encode).collect(),
            signature: self.signer.sign_checkpoint(tree.size(), &root),
        };
        let head = serde_json::json!({"treeSize": tree.size(), "rootHash": decision.root_hash});
        let decision = serde_json::to_value(&decision).map_err(|e| ReceiptError::BadCheckpoint {
            sequence,
            message: e.to_string(),
        })?;
        self.finish(Receipt {
            sequence,
            action: Action::Checkpoint,
            subject,
            decision,
            inputs_digest: super::inputs_digest(&head)?,
            prev_hash,
            hash: String::new(),
            signature: String::new(),
            key_id: self.signer.key_id().to_string(),
            time,
            level: Level::FullAudit,
        })
    }

    /// [`prepare_checkpoint`](Self::prepare_checkpoint) then [`commit`](Self::commit).
    pub fn checkpoint(&mut self, subject: SubjectRef, time: String) -> Result<Receipt, ReceiptError> {
        let r = self.prepare_checkpoint(subject, time)?;
        self.commit(&r)?;
        Ok(r)
    }
}

impl ChainBuilder {
    /// Continues after `head` with the Merkle state `tree` (of size `head.sequence + 1`),
    /// e.g. recovered by [`super::tenant::PartialTree::frontier`] from a chain with holes.
    pub fn with_frontier(signer: Signer, head: ChainHead, tree: Frontier) -> Result<Self, ReceiptError> {
        if tree.size() != head.sequence.saturating_add(1) {
            return Err(ReceiptError::BadCheckpoint {
                sequence: head.sequence,
                message: format!(
                    "a tree of size {} does not end at sequence {}",
                    tree.size(),
                    head.sequence
                ),
            });
        }
        Ok(ChainBuilder {
            signer,
            head: Some(head),
            tree: Some(tree),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::hash::canonical_body;
    use crate::receipts::testutil::{chain, checkpoint_subject, draft, signer};
    use proptest::prelude::*;

    #[test]
    fn the_fast_canonical_body_equals_generic_canonical_json_without_hash_and_signature() {
        let s = signer(1);
        let mut rs = chain(6, 4, &s);
        rs[2].subject.uid = Some("0a-\u{e9}".into());
        rs[3].decision = serde_json::json!({"z": [1.5, -0.0, 1e21], "a": "\"q\"\n"});
        for r in &rs {
            let mut v = serde_json::to_value(r).unwrap();
            let obj = v.as_object_mut().unwrap();
            obj.remove("hash");
            obj.remove("signature");
            assert_eq!(canonical_body(r).unwrap(), canonical::to_string(&v).unwrap());
        }
    }

    #[test]
    fn each_receipt_links_to_the_hash_of_the_one_before() {
        let rs = chain(10, 0, &signer(1));
        assert_eq!(rs[0].prev_hash, GENESIS_PREV_HASH);
        for w in rs.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
            assert_eq!(w[1].sequence, w[0].sequence + 1);
        }
        for r in &rs {
            assert_eq!(hex::encode(receipt_hash(r).unwrap()), r.hash);
        }
    }

    #[test]
    fn sealing_is_deterministic_for_the_same_key_head_and_draft() {
        assert_eq!(chain(8, 3, &signer(9)), chain(8, 3, &signer(9)));
    }

    #[test]
    fn a_prepared_receipt_not_committed_leaves_the_chain_unchanged() {
        let mut b = ChainBuilder::genesis(signer(1));
        let r0 = b.seal(draft(0)).unwrap();
        let lost = b.prepare(draft(1)).unwrap();
        assert_eq!(b.head().unwrap().hash, r0.hash);
        let r1 = b.seal(draft(2)).unwrap();
        assert_eq!(r1.sequence, lost.sequence);
        assert_eq!(r1.prev_hash, r0.hash);
    }

    #[test]
    fn committing_a_receipt_out_of_turn_is_refused_naming_the_sequences() {
        let mut b = ChainBuilder::genesis(signer(1));
        let r0 = b.seal(draft(0)).unwrap();
        let err = b.commit(&r0).unwrap_err();
        assert!(
            err.to_string().contains("receipt 0") && err.to_string().contains("is 1"),
            "{err}"
        );
    }

    #[test]
    fn drafts_with_action_checkpoint_or_a_bad_inputs_digest_are_refused() {
        let mut b = ChainBuilder::genesis(signer(1));
        let mut d = draft(0);
        d.action = Action::Checkpoint;
        assert_eq!(b.seal(d).unwrap_err(), ReceiptError::CheckpointDraft);
        let mut d = draft(0);
        d.inputs_digest = "nope".into();
        assert!(b.seal(d).unwrap_err().to_string().contains("inputsDigest"));
    }

    #[test]
    fn a_checkpoint_signs_the_root_over_every_receipt_before_it() {
        let s = signer(1);
        let rs = chain(9, 8, &s);
        let cp = &rs[8];
        assert_eq!(cp.action, Action::Checkpoint);
        let d = CheckpointDecision::from_receipt(cp).unwrap();
        assert_eq!(d.tree_size, 8);
        let leaves: Vec<Hash> = rs[..8]
            .iter()
            .map(|r| leaf_hash(&crate::receipts::decode_hash("hash", &r.hash).unwrap()))
            .collect();
        assert_eq!(d.root_hash, hex::encode(crate::receipts::merkle::root(&leaves)));
        let mut keys = crate::receipts::TrustedKeys::new();
        keys.add(s.public_key());
        let msg = crate::receipts::signing::checkpoint_message(8, &d.root(8).unwrap());
        assert!(keys.verify(&cp.key_id, &msg, &d.signature));
    }

    #[test]
    fn a_builder_resumed_from_a_checkpoint_continues_the_same_chain() {
        let s = signer(1);
        let rs = chain(20, 6, &s);
        // Tail from the checkpoint at 12 to 15; the rest must be reproduced exactly.
        let mut b = ChainBuilder::resume(s.clone(), &rs[12..16]).unwrap();
        for r in &rs[16..] {
            let next = if r.action == Action::Checkpoint {
                b.checkpoint(checkpoint_subject(), r.time.clone()).unwrap()
            } else {
                b.seal(draft(r.sequence)).unwrap()
            };
            assert_eq!(&next, r);
        }
    }

    #[test]
    fn resuming_from_a_tail_without_merkle_state_is_an_error() {
        let s = signer(1);
        let rs = chain(5, 0, &s);
        assert_eq!(
            ChainBuilder::resume(s.clone(), &rs[2..]).unwrap_err(),
            ReceiptError::NoMerkleState(2)
        );
        let mut b = ChainBuilder::after(
            s,
            ChainHead {
                sequence: 4,
                hash: rs[4].hash.clone(),
            },
        );
        assert!(b.seal(draft(5)).is_ok());
        assert!(b.checkpoint(checkpoint_subject(), "t".into()).is_err());
    }

    #[test]
    fn full_audit_is_always_written_and_none_never() {
        let p = SamplingPolicy { rate_ppm: 0 };
        let mut d = draft(1);
        assert!(is_sampled(&d, &p).unwrap());
        d.level = Level::None;
        assert!(!is_sampled(&d, &SamplingPolicy { rate_ppm: 1_000_000 }).unwrap());
    }

    #[test]
    fn sampling_keeps_about_the_requested_share_and_leaves_no_gap_in_the_chain() {
        let s = signer(1);
        let mut b = ChainBuilder::genesis(s);
        let policy = SamplingPolicy { rate_ppm: 250_000 };
        let mut written = Vec::new();
        for i in 0..2000 {
            let mut d = draft(i);
            d.level = Level::Sample;
            if let Some(r) = b.record(d, &policy).unwrap() {
                written.push(r);
            }
        }
        // Binomial(2000, 0.25): mean 500, sd ≈ 19.4; ±5 sd.
        assert!((403..=597).contains(&written.len()), "{}", written.len());
        for (i, r) in written.iter().enumerate() {
            assert_eq!(r.sequence, i as u64);
        }
        for w in written.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
    }

    proptest! {
        #[test]
        fn the_sampling_decision_depends_only_on_the_draft_and_the_rate(i in 0u64..10_000, ppm in 0u32..=1_000_000) {
            let mut d = draft(i);
            d.level = Level::Sample;
            let p = SamplingPolicy { rate_ppm: ppm };
            let first = is_sampled(&d, &p).unwrap();
            prop_assert_eq!(first, is_sampled(&d.clone(), &p).unwrap());
            // Monotone in the rate: sampled at ppm ⇒ sampled at any higher rate.
            if first {
                let all = SamplingPolicy { rate_ppm: 1_000_000 };
                prop_assert!(is_sampled(&d, &all).unwrap());
            }
            if ppm == 0 { prop_assert!(!first); }
        }
    }
}
