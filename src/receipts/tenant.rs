//! Tenant checkpoint bundles: the latest signed checkpoint plus inclusion proofs of one tenant's
//! receipts in it, so a tenant can check its own receipts without reading anyone else's.
//!
//! Inputs: the stored chain (sorted by sequence, possibly with holes: receipts are deleted with
//! their namespace), a checkpoint receipt, the receipts to prove. Outputs: [`TenantBundle`]s
//! (what the operator publishes in each tenant namespace's `mom-receipt-checkpoints` ConfigMap)
//! and a [`BundleReport`] from [`verify_bundle`] naming each problem by sequence number.
//!
//! Proofs need the Merkle tree's nodes, not the whole chain: [`PartialTree`] knows
//! - leaf `i` from receipt `i` (when its content hashes to its `hash`), or from receipt `i+1`'s
//!   `prevHash` when receipt `i` is gone (each receipt commits to its predecessor's hash);
//! - the perfect subtrees `[start, start + 2^k)` recorded in every stored checkpoint's frontier
//!   (the binary decomposition of its `treeSize`, largest first).
//!
//! and computes `MTH(D[a : a+n])` recursively (`node(a, n) = H(node(a, k), node(a+k, n−k))`,
//! `k` the largest power of two below `n`). A leaf after checkpoint `m` always has its audit path
//! in the tree of size `n > m` from `m`'s frontier and the leaves in `[m, n)`: every sibling
//! left of its path that ends at or before `m` is one of the frontier's blocks.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::chain::CheckpointDecision;
use super::hash::receipt_hash;
use super::merkle::{Frontier, Hash, leaf_hash, node_hash};
use super::proof::verify_inclusion_in_checkpoint;
use super::{Action, Receipt, TrustedKeys};

/// The `format` of a bundle this version writes and reads.
pub const BUNDLE_FORMAT: &str = "mom-tenant-checkpoint-v1";

/// Why a bundle could not be built or read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TenantError {
    #[error("receipt {0} is not a checkpoint")]
    NotACheckpoint(u64),
    #[error("checkpoint {sequence}: {message}")]
    BadCheckpoint { sequence: u64, message: String },
    #[error("checkpoint {sequence}: the stored receipts give root {found}, the checkpoint signs {signed}")]
    RootMismatch {
        sequence: u64,
        found: String,
        signed: String,
    },
    #[error("checkpoint {checkpoint}: the stored receipts do not determine the audit path of receipt {sequence}")]
    NoProof { checkpoint: u64, sequence: u64 },
    #[error("bundle: {0}")]
    Json(String),
    #[error("bundle format {0:?} is not {BUNDLE_FORMAT:?}")]
    Format(String),
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The blocks `(start, len)` of the binary decomposition of `size`, largest first.
pub fn frontier_blocks(size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    for bit in (0..64).rev() {
        let len = 1u64 << bit;
        if size & len != 0 {
            out.push((start, len));
            start += len;
        }
    }
    out
}

/// A perfect subtree `(start, len)` of a checkpoint's frontier and its hash.
type Block = ((u64, u64), Hash);

/// What [`PartialTree`] needs of a stored chain, gathered one receipt at a time, so a caller
/// reading the chain a page at a time keeps ~100 bytes per receipt instead of the receipts:
/// the hash each receipt's successor committed to (its `prevHash`), each receipt's own hash
/// when its content hashes to it, and the frontier blocks of every checkpoint.
#[derive(Debug, Clone, Default)]
pub struct TreeFacts {
    /// Leaf hash of `sequence` as its successor's `prevHash` commits to it.
    committed: BTreeMap<u64, Hash>,
    /// Leaf hash of `sequence` from its own content (only when that content hashes to `hash`).
    own: BTreeMap<u64, Hash>,
    /// Per checkpoint, in the order observed: its `treeSize` and its frontier blocks.
    frontiers: Vec<(u64, Vec<Block>)>,
}

impl TreeFacts {
    /// Takes what the tree needs from `r`.
    pub fn observe(&mut self, r: &Receipt) {
        if let Some(prev) = r.sequence.checked_sub(1)
            && let Some(h) = super::hex32(&r.prev_hash)
        {
            self.committed.entry(prev).or_insert_with(|| leaf_hash(&h));
        }
        if !self.own.contains_key(&r.sequence)
            && let Some(h) = super::hex32(&r.hash)
            && receipt_hash(r).is_ok_and(|c| c == h)
        {
            self.own.insert(r.sequence, leaf_hash(&h));
        }
        if r.action == Action::Checkpoint
            && let Ok(cp) = CheckpointDecision::from_receipt(r)
            && let Ok(f) = cp.frontier(r.sequence)
        {
            let blocks = frontier_blocks(f.size())
                .into_iter()
                .zip(f.subtrees().iter().copied())
                .collect();
            self.frontiers.push((cp.tree_size, blocks));
        }
    }

    /// The tree of the first `size` receipts. What a successor committed to comes first: a
    /// receipt rewritten and re-hashed after the fact must not enter the tree.
    pub fn into_tree(self, size: u64) -> PartialTree {
        let mut leaves: BTreeMap<u64, Hash> = self.committed.into_iter().filter(|(s, _)| *s < size).collect();
        for (sequence, h) in self.own.into_iter().filter(|(s, _)| *s < size) {
            leaves.entry(sequence).or_insert(h);
        }
        let mut nodes = HashMap::new();
        for (tree_size, blocks) in self.frontiers {
            if tree_size <= size {
                for (block, h) in blocks {
                    nodes.insert(block, Some(h));
                }
            }
        }
        PartialTree { size, leaves, nodes }
    }
}

/// The Merkle tree of the first `size` receipts, as far as the stored chain determines it.
#[derive(Debug, Clone)]
pub struct PartialTree {
    size: u64,
    /// Leaf hashes (`SHA-256(0x00 ‖ receipt hash)`) by sequence.
    leaves: BTreeMap<u64, Hash>,
    /// `MTH` of ranges `(start, len)`: checkpoint frontiers and memoised nodes (`None` = unknown).
    nodes: HashMap<(u64, u64), Option<Hash>>,
}

impl PartialTree {
    /// The tree of the first `size` receipts from `stored` (any order, holes allowed).
    pub fn from_chain(stored: &[Receipt], size: u64) -> Self {
        let mut facts = TreeFacts::default();
        stored.iter().for_each(|r| facts.observe(r));
        facts.into_tree(size)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The leaf hash at `sequence`, when known.
    pub fn leaf(&self, sequence: u64) -> Option<Hash> {
        self.leaves.get(&sequence).copied()
    }

    /// `MTH` of leaves `[start, start + len)`, when determined.
    fn node(&mut self, start: u64, len: u64) -> Option<Hash> {
        if len == 1
            && let Some(l) = self.leaves.get(&start)
        {
            return Some(*l);
        }
        if let Some(known) = self.nodes.get(&(start, len)) {
            return *known;
        }
        let h = if len <= 1 {
            None
        } else {
            let k = split(len);
            match self.node(start, k) {
                Some(left) => self.node(start + k, len - k).map(|right| node_hash(&left, &right)),
                None => None,
            }
        };
        self.nodes.insert((start, len), h);
        h
    }

    /// The root, when determined (`None` also for the empty tree, which no checkpoint signs).
    pub fn root(&mut self) -> Option<Hash> {
        if self.size == 0 {
            return None;
        }
        self.node(0, self.size)
    }

    /// The compact tree (for resuming a writer after holes in the stored chain).
    pub fn frontier(&mut self) -> Option<Frontier> {
        let mut roots = Vec::new();
        for (start, len) in frontier_blocks(self.size) {
            roots.push(self.node(start, len)?);
        }
        Frontier::from_parts(self.size, roots).ok()
    }

    /// RFC 6962 audit path of leaf `index`, when determined.
    pub fn proof(&mut self, index: u64) -> Option<Vec<Hash>> {
        if index >= self.size {
            return None;
        }
        let mut out = Vec::new();
        self.path(index, 0, self.size, &mut out)?;
        Some(out)
    }

    fn path(&mut self, m: u64, start: u64, len: u64, out: &mut Vec<Hash>) -> Option<()> {
        if len <= 1 {
            return Some(());
        }
        let k = split(len);
        if m < k {
            self.path(m, start, k, out)?;
            out.push(self.node(start + k, len - k)?);
        } else {
            self.path(m - k, start + k, len - k, out)?;
            out.push(self.node(start, k)?);
        }
        Some(())
    }
}

/// One receipt with its audit path in the bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvenReceipt {
    pub receipt: Receipt,
    /// Hex sibling hashes, leaf to root.
    pub proof: Vec<String>,
}

/// What a tenant reads: a signed checkpoint and its own receipts proven in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantBundle {
    pub format: String,
    pub tenant: String,
    pub namespace: String,
    pub checkpoint: Receipt,
    /// In sequence order; every one has `sequence < checkpoint treeSize`.
    pub receipts: Vec<ProvenReceipt>,
    /// The tenant's receipts in the tree left out to keep the bundle under its size limit
    /// (the oldest go first); 0 when the bundle is complete.
    pub omitted: u64,
    /// The lowest sequence the bundle covers completely: every receipt of the tenant with a
    /// sequence in `[coversFrom, treeSize)` is in it.
    pub covers_from: u64,
}

/// Builds the bundle of `tenant` in `namespace` for `checkpoint` from `tree` (of the same size).
///
/// `mine` are the tenant's receipts (any order); only those in the tree are proven. When their
/// JSON would exceed `max_bytes`, the oldest are left out and counted in `omitted`. The same as
/// offering each to a [`BundleBuilder`].
pub fn build_bundle(
    tree: &mut PartialTree,
    checkpoint: &Receipt,
    tenant: &str,
    namespace: &str,
    mine: &[&Receipt],
    max_bytes: usize,
) -> Result<TenantBundle, TenantError> {
    let mut builder = BundleBuilder::new(tree, checkpoint, tenant, namespace, max_bytes)?;
    for r in mine {
        builder.offer(r)?;
    }
    builder.finish()
}

/// A tenant's bundle built from receipts offered one at a time, in any order, holding no more
/// than the bundle itself: the operator streams a namespace's receipts page by page instead of
/// holding all of them (tens of thousands under load).
///
/// What it keeps is the longest run of the newest provable receipts whose JSON (receipt and
/// proof) fits the budget `max_bytes − |checkpoint| − 256`; equivalently, walking the receipts
/// newest first and stopping at the first that does not fit. Offered receipts are kept in a
/// map by sequence; when the total passes the budget the oldest are dropped, and `floor`
/// remembers the newest dropped sequence: anything offered later at or below it can never fit
/// (the newer ones alone already passed the budget). A receipt offered twice under one sequence
/// counts once, the first copy deciding (as a sort and dedup by sequence would).
pub struct BundleBuilder<'t> {
    tree: &'t mut PartialTree,
    checkpoint: Receipt,
    tree_size: u64,
    tenant: String,
    namespace: String,
    budget: usize,
    /// sequence → the proven receipt and its JSON length, or the error proving it gave
    /// (raised by [`Self::finish`] only if that receipt would be in the bundle).
    kept: BTreeMap<u64, (Result<ProvenReceipt, TenantError>, usize)>,
    used: usize,
    floor: Option<u64>,
    /// Every offered sequence in the tree, for `omitted` (8 bytes each, not a receipt each).
    offered: std::collections::BTreeSet<u64>,
}

impl<'t> BundleBuilder<'t> {
    /// Checks that `checkpoint` signs `tree`'s root (same errors as [`build_bundle`]).
    pub fn new(
        tree: &'t mut PartialTree,
        checkpoint: &Receipt,
        tenant: &str,
        namespace: &str,
        max_bytes: usize,
    ) -> Result<Self, TenantError> {
        if checkpoint.action != Action::Checkpoint {
            return Err(TenantError::NotACheckpoint(checkpoint.sequence));
        }
        let cp = CheckpointDecision::from_receipt(checkpoint).map_err(|e| TenantError::BadCheckpoint {
            sequence: checkpoint.sequence,
            message: e.to_string(),
        })?;
        if cp.tree_size != tree.size() {
            return Err(TenantError::BadCheckpoint {
                sequence: checkpoint.sequence,
                message: format!("treeSize {} is not the tree's size {}", cp.tree_size, tree.size()),
            });
        }
        let found = tree.root().map(hex::encode).unwrap_or_default();
        if found != cp.root_hash {
            return Err(TenantError::RootMismatch {
                sequence: checkpoint.sequence,
                found,
                signed: cp.root_hash,
            });
        }
        let base = serde_json::to_string(checkpoint)
            .map_err(|e| TenantError::Json(e.to_string()))?
            .len()
            + 256;
        Ok(Self {
            tree,
            checkpoint: checkpoint.clone(),
            tree_size: cp.tree_size,
            tenant: tenant.into(),
            namespace: namespace.into(),
            budget: max_bytes.saturating_sub(base),
            kept: BTreeMap::new(),
            used: 0,
            floor: None,
            offered: Default::default(),
        })
    }

    /// Takes one of the tenant's receipts into account; returns an error only when it cannot be
    /// serialised.
    pub fn offer(&mut self, r: &Receipt) -> Result<(), TenantError> {
        if r.sequence >= self.tree_size || !self.offered.insert(r.sequence) {
            return Ok(());
        }
        // A stored receipt that is not the one the chain committed to cannot be proven.
        let content = receipt_hash(r).ok().filter(|h| super::hex32(&r.hash) == Some(*h));
        if content.map(|h| leaf_hash(&h)) != self.tree.leaf(r.sequence) {
            return Ok(());
        }
        if self.floor.is_some_and(|f| r.sequence <= f) {
            return Ok(());
        }
        let entry = match self.tree.proof(r.sequence) {
            None => (
                Err(TenantError::NoProof {
                    checkpoint: self.checkpoint.sequence,
                    sequence: r.sequence,
                }),
                0,
            ),
            Some(path) => {
                let item = ProvenReceipt {
                    receipt: r.clone(),
                    proof: path.iter().map(hex::encode).collect(),
                };
                let len = serde_json::to_string(&item)
                    .map_err(|e| TenantError::Json(e.to_string()))?
                    .len()
                    + 1;
                (Ok(item), len)
            }
        };
        self.used += entry.1;
        self.kept.insert(r.sequence, entry);
        while self.used > self.budget {
            let Some((sequence, (_, len))) = self.kept.pop_first() else {
                break;
            };
            self.used -= len;
            self.floor = Some(self.floor.map_or(sequence, |f| f.max(sequence)));
        }
        Ok(())
    }

    /// JSON bytes of the receipts held now (never more than the budget).
    pub fn held_bytes(&self) -> usize {
        self.used
    }

    /// The bundle; the error of the newest receipt in it that has no audit path, if any.
    pub fn finish(self) -> Result<TenantBundle, TenantError> {
        let mut kept = Vec::with_capacity(self.kept.len());
        for (_, (item, _)) in self.kept.into_iter().rev() {
            kept.push(item?);
        }
        kept.reverse();
        let omitted = self
            .offered
            .iter()
            .filter(|s| kept.first().is_none_or(|k| **s < k.receipt.sequence))
            .count() as u64;
        let covers_from = if omitted == 0 {
            0
        } else {
            kept.first().map_or(self.tree_size, |p| p.receipt.sequence)
        };
        Ok(TenantBundle {
            format: BUNDLE_FORMAT.into(),
            tenant: self.tenant,
            namespace: self.namespace,
            checkpoint: self.checkpoint,
            receipts: kept,
            omitted,
            covers_from,
        })
    }
}

/// Reads a bundle from JSON, checking its format.
pub fn parse_bundle(text: &str) -> Result<TenantBundle, TenantError> {
    let b: TenantBundle = serde_json::from_str(text).map_err(|e| TenantError::Json(e.to_string()))?;
    if b.format != BUNDLE_FORMAT {
        return Err(TenantError::Format(b.format));
    }
    Ok(b)
}

/// One thing wrong with a tenant's receipts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleProblem {
    pub sequence: u64,
    /// `not_included` (bad proof or content), `bad_checkpoint`, `foreign` (another namespace's
    /// receipt), `edited` / `missing` / `not_checkpointed` (against the live receipts).
    pub kind: String,
    pub detail: String,
}

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleReport {
    pub tenant: String,
    pub namespace: String,
    pub checkpoint_sequence: u64,
    pub tree_size: u64,
    /// Receipts whose inclusion proof verified against the signed tree head.
    pub verified: usize,
    pub omitted: u64,
    /// Live receipts compared with the bundle (0 when none were given).
    pub live_checked: usize,
    pub problems: Vec<BundleProblem>,
}

impl BundleReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the checkpoint's tree-head signature against `keys`.
fn check_tree_head(checkpoint: &Receipt, keys: &TrustedKeys) -> Result<(), String> {
    let cp = CheckpointDecision::from_receipt(checkpoint).map_err(|e| e.to_string())?;
    let root = cp.root(checkpoint.sequence).map_err(|e| e.to_string())?;
    let message = super::signing::checkpoint_message(cp.tree_size, &root);
    if keys.verify(&checkpoint.key_id, &message, &cp.signature) {
        Ok(())
    } else {
        Err(format!(
            "tree-head signature by key {} does not verify against the trusted keys",
            checkpoint.key_id
        ))
    }
}

fn problem(sequence: u64, kind: &str, detail: impl Into<String>) -> BundleProblem {
    BundleProblem {
        sequence,
        kind: kind.into(),
        detail: detail.into(),
    }
}

/// Verifies every tenant bundle of one ConfigMap with [`verify_bundle`]. A namespace may hold
/// several tenants: a stored receipt of the namespace is checked against a tenant's bundle
/// unless another tenant's bundle in `bundles` proves it, so one tenant's receipts are never
/// named `not_checkpointed` in another's report.
pub fn verify_bundles(bundles: &[TenantBundle], keys: &TrustedKeys, live: Option<&[Receipt]>) -> Vec<BundleReport> {
    bundles
        .iter()
        .map(|b| {
            let others: std::collections::BTreeSet<u64> = bundles
                .iter()
                .filter(|o| o.namespace == b.namespace && o.tenant != b.tenant)
                .flat_map(|o| o.receipts.iter().map(|p| p.receipt.sequence))
                .collect();
            let mine: Option<Vec<Receipt>> = live.map(|l| {
                l.iter()
                    .filter(|r| r.subject.namespace == b.namespace && !others.contains(&r.sequence))
                    .cloned()
                    .collect()
            });
            verify_bundle(b, keys, mine.as_deref())
        })
        .collect()
}

/// Checks every proof of `bundle` against its checkpoint's tree head signed by a key in `keys`;
/// with `live` (the receipts now stored in the tenant's namespace), also names each live receipt
/// that differs from its checkpointed version (`edited`), each checkpointed one that is gone
/// (`missing`), and each live one in the covered range that the checkpoint does not hold
/// (`not_checkpointed`: inserted after the fact, or never proven).
pub fn verify_bundle(bundle: &TenantBundle, keys: &TrustedKeys, live: Option<&[Receipt]>) -> BundleReport {
    let cp_seq = bundle.checkpoint.sequence;
    let mut report = BundleReport {
        tenant: bundle.tenant.clone(),
        namespace: bundle.namespace.clone(),
        checkpoint_sequence: cp_seq,
        omitted: bundle.omitted,
        ..BundleReport::default()
    };
    let tree_size = match CheckpointDecision::from_receipt(&bundle.checkpoint) {
        Ok(cp) if bundle.checkpoint.action == Action::Checkpoint => cp.tree_size,
        Ok(_) => {
            report.problems.push(problem(
                cp_seq,
                "bad_checkpoint",
                "the bundle's checkpoint is not a checkpoint",
            ));
            return report;
        }
        Err(e) => {
            report.problems.push(problem(cp_seq, "bad_checkpoint", e.to_string()));
            return report;
        }
    };
    report.tree_size = tree_size;
    if let Err(e) = check_tree_head(&bundle.checkpoint, keys) {
        report.problems.push(problem(cp_seq, "bad_checkpoint", e));
        return report;
    }
    for item in &bundle.receipts {
        let seq = item.receipt.sequence;
        if item.receipt.subject.namespace != bundle.namespace {
            report.problems.push(problem(
                seq,
                "foreign",
                format!(
                    "receipt of namespace {:?} in the bundle of {:?}",
                    item.receipt.subject.namespace, bundle.namespace
                ),
            ));
            continue;
        }
        let proof: Option<Vec<Hash>> = item.proof.iter().map(|h| super::hex32(h)).collect();
        let Some(proof) = proof else {
            report.problems.push(problem(
                seq,
                "not_included",
                "the proof holds a value that is not a hash",
            ));
            continue;
        };
        match verify_inclusion_in_checkpoint(&item.receipt, &proof, &bundle.checkpoint, keys) {
            Ok(()) => report.verified += 1,
            Err(e) => report.problems.push(problem(seq, "not_included", e.to_string())),
        }
    }
    if let Some(live) = live {
        let proven: BTreeMap<u64, &Receipt> = bundle
            .receipts
            .iter()
            .map(|p| (p.receipt.sequence, &p.receipt))
            .collect();
        let mut seen = BTreeMap::new();
        for r in live.iter().filter(|r| r.subject.namespace == bundle.namespace) {
            report.live_checked += 1;
            seen.insert(r.sequence, ());
            match proven.get(&r.sequence) {
                Some(p) if *p == r => {}
                Some(_) => report.problems.push(problem(
                    r.sequence,
                    "edited",
                    "the stored receipt differs from the one proven in the checkpoint",
                )),
                None if r.sequence < tree_size && r.sequence >= bundle.covers_from => report.problems.push(problem(
                    r.sequence,
                    "not_checkpointed",
                    format!("stored, but not among this tenant's receipts in checkpoint {cp_seq}"),
                )),
                None => {}
            }
        }
        for seq in proven.keys() {
            if !seen.contains_key(seq) {
                report.problems.push(problem(
                    *seq,
                    "missing",
                    format!("proven in checkpoint {cp_seq} but no longer stored"),
                ));
            }
        }
    }
    report.problems.sort();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::merkle;
    use crate::receipts::testutil::{chain, signer};
    use proptest::prelude::*;

    fn keys() -> TrustedKeys {
        let mut k = TrustedKeys::new();
        k.add(signer(1).public_key());
        k
    }

    fn leaves(rs: &[Receipt]) -> Vec<Hash> {
        rs.iter()
            .map(|r| leaf_hash(&super::super::hex32(&r.hash).unwrap()))
            .collect()
    }

    #[test]
    fn frontier_blocks_are_the_binary_decomposition_of_the_size() {
        assert_eq!(frontier_blocks(13), vec![(0, 8), (8, 4), (12, 1)]);
        assert_eq!(frontier_blocks(0), vec![]);
        assert_eq!(frontier_blocks(16), vec![(0, 16)]);
    }

    #[test]
    fn a_whole_chain_gives_the_same_root_and_proofs_as_the_full_tree() {
        let rs = chain(37, 10, &signer(1));
        let all = leaves(&rs);
        for size in [1u64, 2, 7, 20, 37] {
            let mut t = PartialTree::from_chain(&rs, size);
            assert_eq!(t.root(), Some(merkle::root(&all[..size as usize])));
            for i in 0..size {
                assert_eq!(
                    t.proof(i),
                    Some(merkle::inclusion_proof(&all[..size as usize], i).unwrap())
                );
            }
        }
    }

    #[test]
    fn facts_gathered_one_receipt_at_a_time_in_any_order_give_the_whole_chains_tree() {
        // Checkpoints at 10, 20, 30; receipts 0..20 but the checkpoint at 20 gone, and 25 gone.
        let rs = chain(37, 10, &signer(1));
        let all = leaves(&rs);
        let kept: Vec<Receipt> = rs
            .iter()
            .filter(|r| (r.sequence >= 20 && r.sequence != 25) || r.action == Action::Checkpoint)
            .cloned()
            .collect();
        // Read newest first, as pages in another order than the sequence would come.
        let mut facts = TreeFacts::default();
        kept.iter().rev().for_each(|r| facts.observe(r));
        for size in [30u64, 37] {
            let mut t = facts.clone().into_tree(size);
            assert_eq!(t.root(), Some(merkle::root(&all[..size as usize])), "size {size}");
            for i in 20..size {
                assert_eq!(
                    t.proof(i),
                    Some(merkle::inclusion_proof(&all[..size as usize], i).unwrap()),
                    "leaf {i} of {size}"
                );
            }
        }
        // Positive control: without the checkpoints' frontiers, the old part is undetermined.
        let mut bare = TreeFacts::default();
        kept.iter()
            .filter(|r| r.action != Action::Checkpoint)
            .for_each(|r| bare.observe(r));
        assert_eq!(bare.into_tree(37).root(), None);
    }

    #[test]
    fn a_rewritten_receipt_does_not_enter_the_tree_whatever_order_it_is_read_in() {
        let rs = chain(12, 0, &signer(1));
        let mut forged = rs[5].clone();
        forged.decision = serde_json::json!({"rewritten": true});
        forged.hash = hex::encode(receipt_hash(&forged).unwrap());
        let all = leaves(&rs);
        for forged_first in [true, false] {
            let mut facts = TreeFacts::default();
            if forged_first {
                facts.observe(&forged);
            }
            rs.iter().filter(|r| r.sequence != 5).for_each(|r| facts.observe(r));
            if !forged_first {
                facts.observe(&forged);
            }
            let mut t = facts.into_tree(12);
            assert_eq!(t.root(), Some(merkle::root(&all)), "forged first: {forged_first}");
            assert_ne!(t.leaf(5), Some(leaf_hash(&super::super::hex32(&forged.hash).unwrap())));
        }
    }

    #[test]
    fn a_deleted_receipt_is_recovered_from_its_successors_prev_hash() {
        let rs = chain(12, 0, &signer(1));
        let mut holed = rs.clone();
        holed.remove(5);
        let mut t = PartialTree::from_chain(&holed, 12);
        assert_eq!(t.root(), Some(merkle::root(&leaves(&rs))));
    }

    #[test]
    fn receipts_after_a_checkpoint_are_provable_when_everything_before_it_is_gone() {
        // Checkpoints at 10 and 20: drop every receipt before 20 but the checkpoint at 20.
        let rs = chain(33, 10, &signer(1));
        let kept: Vec<Receipt> = rs.iter().filter(|r| r.sequence >= 20).cloned().collect();
        let mut t = PartialTree::from_chain(&kept, 33);
        let all = leaves(&rs);
        assert_eq!(t.root(), Some(merkle::root(&all)));
        for i in 20..33 {
            assert_eq!(t.proof(i), Some(merkle::inclusion_proof(&all, i).unwrap()), "leaf {i}");
        }
        // Receipt 3 is not determined (its leaf and its successor are gone).
        assert!(t.proof(3).is_none());
    }

    #[test]
    fn two_adjacent_deleted_receipts_leave_the_root_undetermined() {
        let rs = chain(12, 0, &signer(1));
        let holed: Vec<Receipt> = rs
            .iter()
            .filter(|r| r.sequence != 4 && r.sequence != 5)
            .cloned()
            .collect();
        let mut t = PartialTree::from_chain(&holed, 12);
        assert_eq!(t.root(), None);
        assert_eq!(t.frontier(), None);
    }

    fn bundle_for(rs: &[Receipt], ns: &str, max_bytes: usize) -> TenantBundle {
        let cp = rs.iter().rev().find(|r| r.action == Action::Checkpoint).unwrap();
        let size = CheckpointDecision::from_receipt(cp).unwrap().tree_size;
        let mut tree = PartialTree::from_chain(rs, size);
        let mine: Vec<&Receipt> = rs.iter().filter(|r| r.subject.namespace == ns).collect();
        build_bundle(&mut tree, cp, "acme", ns, &mine, max_bytes).unwrap()
    }

    /// A chain whose receipts alternate between namespaces `a` and `b`.
    fn two_tenant_chain() -> Vec<Receipt> {
        two_tenant_chain_with(|_, d| d)
    }

    /// [`two_tenant_chain`] with draft `i` passed through `edit` before it is sealed.
    fn two_tenant_chain_with(
        edit: impl Fn(u64, crate::receipts::ReceiptDraft) -> crate::receipts::ReceiptDraft,
    ) -> Vec<Receipt> {
        use crate::receipts::ChainBuilder;
        use crate::receipts::testutil::{checkpoint_subject, draft};
        let mut b = ChainBuilder::genesis(signer(1));
        let mut out = Vec::new();
        for i in 0..30u64 {
            if i == 24 {
                out.push(b.checkpoint(checkpoint_subject(), "t".into()).unwrap());
                continue;
            }
            let mut d = draft(i);
            d.subject.namespace = if i % 2 == 0 { "a".into() } else { "b".into() };
            out.push(b.seal(edit(i, d)).unwrap());
        }
        out
    }

    #[test]
    fn two_tenants_in_one_namespace_do_not_name_each_others_receipts() {
        let rs = two_tenant_chain();
        let cp = rs.iter().rev().find(|r| r.action == Action::Checkpoint).unwrap();
        let size = CheckpointDecision::from_receipt(cp).unwrap().tree_size;
        let mut tree = PartialTree::from_chain(&rs, size);
        let in_a: Vec<&Receipt> = rs.iter().filter(|r| r.subject.namespace == "a").collect();
        let (x, y): (Vec<&Receipt>, Vec<&Receipt>) = in_a.iter().partition(|r| r.sequence % 4 == 0);
        let bx = build_bundle(&mut tree, cp, "x", "a", &x, 1 << 20).unwrap();
        let by = build_bundle(&mut tree, cp, "y", "a", &y, 1 << 20).unwrap();
        let live: Vec<Receipt> = in_a.iter().map(|r| (*r).clone()).collect();
        let reports = verify_bundles(&[bx.clone(), by], &keys(), Some(&live));
        assert!(reports.iter().all(BundleReport::is_ok), "{reports:?}");
        assert_eq!(reports.iter().map(|r| r.verified).sum::<usize>(), 12);
        // Without y's bundle nobody proves y's receipts: x's report names those the checkpoint
        // covers.
        let alone = verify_bundles(&[bx], &keys(), Some(&live));
        let named: Vec<u64> = alone[0]
            .problems
            .iter()
            .filter(|p| p.kind == "not_checkpointed")
            .map(|p| p.sequence)
            .collect();
        let ys: Vec<u64> = y.iter().map(|r| r.sequence).filter(|s| *s < size).collect();
        assert!(!ys.is_empty());
        assert_eq!(named, ys);
    }

    #[test]
    fn a_tenant_bundle_verifies_and_holds_only_that_namespaces_receipts() {
        let rs = two_tenant_chain();
        let b = bundle_for(&rs, "a", 1 << 20);
        assert_eq!(b.receipts.len(), 12); // even sequences below 24
        assert!(b.receipts.iter().all(|p| p.receipt.subject.namespace == "a"));
        let live: Vec<Receipt> = rs.iter().filter(|r| r.subject.namespace == "a").cloned().collect();
        let rep = verify_bundle(&b, &keys(), Some(&live));
        assert!(rep.is_ok(), "{rep:?}");
        assert_eq!(rep.verified, 12);
        // Round trip through JSON.
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(parse_bundle(&text).unwrap(), b);
    }

    #[test]
    fn an_edited_deleted_or_inserted_live_receipt_is_named_against_the_bundle() {
        let rs = two_tenant_chain();
        let b = bundle_for(&rs, "a", 1 << 20);
        let mut live: Vec<Receipt> = rs.iter().filter(|r| r.subject.namespace == "a").cloned().collect();
        live[1].decision = serde_json::json!({"forged": true}); // sequence 2
        live.retain(|r| r.sequence != 6);
        let mut extra = live[0].clone();
        extra.sequence = 9;
        live.push(extra);
        let rep = verify_bundle(&b, &keys(), Some(&live));
        let got: Vec<(u64, String)> = rep.problems.iter().map(|p| (p.sequence, p.kind.clone())).collect();
        assert_eq!(
            got,
            vec![
                (2, "edited".to_string()),
                (6, "missing".to_string()),
                (9, "not_checkpointed".to_string())
            ]
        );
    }

    #[test]
    fn a_tampered_bundle_fails_its_proofs_and_an_untrusted_checkpoint_is_rejected() {
        let rs = two_tenant_chain();
        let mut b = bundle_for(&rs, "a", 1 << 20);
        b.receipts[3].receipt.decision = serde_json::json!({"edited": 1});
        b.receipts[4].proof[0] = "00".repeat(32);
        let rep = verify_bundle(&b, &keys(), None);
        let got: Vec<(u64, String)> = rep.problems.iter().map(|p| (p.sequence, p.kind.clone())).collect();
        assert_eq!(got, vec![(6, "not_included".into()), (8, "not_included".into())]);

        let mut other = TrustedKeys::new();
        other.add(signer(9).public_key());
        let rep = verify_bundle(&bundle_for(&rs, "a", 1 << 20), &other, None);
        assert_eq!(rep.problems.len(), 1);
        assert_eq!(rep.problems[0].kind, "bad_checkpoint");
        assert_eq!(rep.problems[0].sequence, 24);
    }

    #[test]
    fn a_bundle_over_its_size_limit_keeps_the_newest_receipts_and_counts_the_rest() {
        let rs = two_tenant_chain();
        let full = bundle_for(&rs, "a", 1 << 20);
        let one = serde_json::to_string(&full.receipts[0]).unwrap().len();
        let cp = serde_json::to_string(&full.checkpoint).unwrap().len();
        let b = bundle_for(&rs, "a", cp + 256 + 5 * (one + 40));
        assert!(b.omitted > 0 && !b.receipts.is_empty());
        assert_eq!(b.omitted as usize + b.receipts.len(), 12);
        assert_eq!(b.receipts.last().unwrap().receipt.sequence, 22);
        assert_eq!(b.covers_from, b.receipts[0].receipt.sequence);
        // An older live receipt outside the covered range is not reported as uncheckpointed.
        let live: Vec<Receipt> = rs.iter().filter(|r| r.subject.namespace == "a").cloned().collect();
        let live: Vec<Receipt> = live
            .into_iter()
            .filter(|r| r.sequence >= b.covers_from || r.sequence >= 24)
            .collect();
        assert!(verify_bundle(&b, &keys(), Some(&live)).is_ok());
    }

    /// As [`two_tenant_chain`], with decisions of sizes varying with `seed` (0 to ~600 bytes), so
    /// a newer receipt may not fit where an older, smaller one would.
    fn varied_two_tenant_chain(seed: u64) -> Vec<Receipt> {
        two_tenant_chain_with(|i, mut d| {
            let pad = (seed.wrapping_mul(i + 7).rotate_left(i as u32) % 600) as usize;
            d.decision = serde_json::json!({"pad": "x".repeat(pad)});
            d
        })
    }

    /// The bundle's receipts as the specification says: newest provable first, stop at the
    /// first that does not fit; written here without the builder, as the oracle.
    fn newest_that_fit(rs: &[Receipt], tree: &mut PartialTree, ns: &str, budget: usize) -> Vec<u64> {
        let size = tree.size();
        let mut mine: Vec<&Receipt> = rs
            .iter()
            .filter(|r| r.subject.namespace == ns && r.sequence < size)
            .collect();
        mine.sort_by_key(|r| std::cmp::Reverse(r.sequence));
        let mut used = 0;
        let mut kept = Vec::new();
        for r in mine {
            let proof: Vec<String> = tree.proof(r.sequence).unwrap().iter().map(hex::encode).collect();
            let item = ProvenReceipt {
                receipt: r.clone(),
                proof,
            };
            let len = serde_json::to_string(&item).unwrap().len() + 1;
            if used + len > budget {
                break;
            }
            used += len;
            kept.push(r.sequence);
        }
        kept.reverse();
        kept
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn receipts_offered_one_at_a_time_in_any_order_give_the_newest_that_fit_holding_no_more_than_the_budget(
            seed in any::<u64>(),
            slots in 0usize..14,
        ) {
            let rs = varied_two_tenant_chain(seed);
            let cp = rs.iter().rev().find(|r| r.action == Action::Checkpoint).unwrap();
            let size = CheckpointDecision::from_receipt(cp).unwrap().tree_size;
            let mut tree = PartialTree::from_chain(&rs, size);
            let one = {
                let p = tree.proof(0).unwrap().iter().map(hex::encode).collect();
                serde_json::to_string(&ProvenReceipt { receipt: rs[0].clone(), proof: p }).unwrap().len() + 1
            };
            let base = serde_json::to_string(cp).unwrap().len() + 256;
            let max_bytes = base + slots * one + one / 2;
            let expected = newest_that_fit(&rs, &mut tree, "a", max_bytes - base);
            // A deterministic shuffle of namespace a's receipts, some offered twice.
            let mut mine: Vec<&Receipt> = rs.iter().filter(|r| r.subject.namespace == "a").collect();
            let mut state = seed | 1;
            for i in (1..mine.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                mine.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let again = mine[..3].to_vec();
            mine.extend(again);
            let mut builder = BundleBuilder::new(&mut tree, cp, "acme", "a", max_bytes).unwrap();
            for r in &mine {
                builder.offer(r).unwrap();
                prop_assert!(builder.held_bytes() <= max_bytes - base);
            }
            let bundle = builder.finish().unwrap();
            let got: Vec<u64> = bundle.receipts.iter().map(|p| p.receipt.sequence).collect();
            prop_assert_eq!(&got, &expected);
            // 12 receipts of namespace a are in the tree (sequences 0..24 even).
            prop_assert_eq!(bundle.omitted as usize + got.len(), 12);
            prop_assert!(verify_bundle(&bundle, &keys(), None).is_ok());
        }
    }

    #[test]
    fn a_rewritten_receipt_is_left_out_and_a_checkpoint_with_a_wrong_root_is_refused() {
        let mut rs = two_tenant_chain();
        // Re-hash an edited receipt so its content is self-consistent but not what 4 committed to.
        rs[2].decision = serde_json::json!({"rewritten": true});
        rs[2].hash = hex::encode(receipt_hash(&rs[2]).unwrap());
        let b = bundle_for(&rs, "a", 1 << 20);
        assert!(b.receipts.iter().all(|p| p.receipt.sequence != 2));
        assert_eq!(b.receipts.len(), 11);
        let live: Vec<Receipt> = rs.iter().filter(|r| r.subject.namespace == "a").cloned().collect();
        let rep = verify_bundle(&b, &keys(), Some(&live));
        assert_eq!(rep.problems.len(), 1, "{rep:?}");
        assert_eq!(
            (rep.problems[0].sequence, rep.problems[0].kind.as_str()),
            (2, "not_checkpointed")
        );

        let mut cp = rs[24].clone();
        cp.decision["rootHash"] = serde_json::json!("00".repeat(32));
        let mut tree = PartialTree::from_chain(&rs[..24], 24);
        let mine: Vec<&Receipt> = rs.iter().collect();
        let err = build_bundle(&mut tree, &cp, "acme", "a", &mine, 1 << 20).unwrap_err();
        assert!(matches!(err, TenantError::RootMismatch { sequence: 24, .. }), "{err}");
        let err = build_bundle(&mut tree, &rs[3], "acme", "a", &mine, 1 << 20).unwrap_err();
        assert_eq!(err, TenantError::NotACheckpoint(3));
    }

    #[test]
    fn a_bundle_of_another_format_is_refused_naming_it() {
        let rs = two_tenant_chain();
        let mut b = bundle_for(&rs, "a", 1 << 20);
        b.format = "v0".into();
        let err = parse_bundle(&serde_json::to_string(&b).unwrap()).unwrap_err();
        assert!(err.to_string().contains("v0"), "{err}");
        assert!(matches!(parse_bundle("{").unwrap_err(), TenantError::Json(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn proofs_from_any_single_deletion_match_the_full_tree(n in 2usize..40, hole in 0usize..39) {
            let rs = chain(n, 0, &signer(1));
            let hole = hole % (n - 1); // never the newest (its hash is in no successor)
            let mut holed = rs.clone();
            holed.remove(hole);
            let all = leaves(&rs);
            let mut t = PartialTree::from_chain(&holed, n as u64);
            prop_assert_eq!(t.root(), Some(merkle::root(&all)));
            for i in 0..n as u64 {
                prop_assert_eq!(t.proof(i), Some(merkle::inclusion_proof(&all, i).unwrap()));
            }
        }
    }
}
