//! Offline verification of a receipt chain: every problem, named by sequence number and kind.
//!
//! Inputs: receipts in the order they were exported (the claimed chain order), the trusted
//! public keys, [`VerifyOptions`]. Output: a [`Report`] listing each [`Problem`]
//! (edited, missing, reordered, inserted, forked, bad signature, unknown key, checkpoint
//! mismatch) with its sequence number, sorted by sequence then kind.
//!
//! How each kind is decided:
//! - **reordered** — the export is not in sequence order; the receipts outside a longest
//!   non-decreasing run of sequence numbers (the fewest that moved) are named. Checking then
//!   continues in sequence order, so a reordering does not cascade.
//! - **edited** — a receipt's content does not hash to its `hash` field; or its content is
//!   self-consistent but its successor committed (`prevHash`) to a different hash (it was
//!   rewritten and re-hashed).
//! - **missing** — a gap in the sequence numbers (one problem per gap, at its first sequence),
//!   a chain that starts after 0 without a checkpoint to anchor it, or a pinned head beyond the end.
//! - **forked** — two different receipts with the same sequence, both validly signed by a
//!   trusted key over a correct hash (the key holder equivocated); or a pinned head whose hash
//!   differs from the chain's.
//! - **inserted** — an extra receipt at a sequence that is not the one the chain continues
//!   from and is not itself authentic (forged hash, unknown key or bad signature), or an exact
//!   duplicate.
//! - **bad signature** / **unknown key** — Ed25519 check of `"mom-receipt-v1\0" ‖ hash`;
//!   key ids are checked on every receipt.
//! - **key handover** — along the chain (sequence order) the signing key changes without a
//!   `receipts.key_rotation` receipt signed by the outgoing key handing over to the new one, or
//!   such a receipt is invalid (see [`super::rotation`]); a trusted key alone is not enough, so
//!   a key retired by a rotation cannot sign later receipts.
//! - **checkpoint mismatch** — a checkpoint whose tree size, root or frontier differs from the
//!   Merkle tree recomputed over the receipts before it, whose tree-head signature fails, or whose
//!   decision is not a checkpoint.
//!
//! Signatures: see the module doc of [`crate::receipts`] — by default only anchors are checked
//! (checkpoints, the last receipt of each intact run, receipts at forked sequences, and the
//! first receipt of a pruned chain); when an anchor fails, every receipt of its run is checked
//! so the bad ones are named.

use serde::{Deserialize, Serialize};

use super::borrowed::{ReceiptRef, parse_receipt_ref};
use super::chain::{ChainHead, CheckpointDecision};
use super::hash::receipt_hash_with;
use super::merkle::{Frontier, Hash, leaf_hash};
use super::signing::{TrustedKeys, checkpoint_message, parse_signature, receipt_message, verify_many};
use super::{Action, GENESIS_PREV_HASH, Receipt, ReceiptError, parse_line};

/// What is wrong at a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Edited,
    Missing,
    Reordered,
    Inserted,
    Forked,
    BadSignature,
    UnknownKey,
    CheckpointMismatch,
    /// The signing key changes without a valid hand-over receipt (see `receipts::rotation`).
    KeyHandover,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Forked => "forked",
            ProblemKind::BadSignature => "bad_signature",
            ProblemKind::UnknownKey => "unknown_key",
            ProblemKind::CheckpointMismatch => "checkpoint_mismatch",
            ProblemKind::KeyHandover => "key_handover",
        }
    }
}

/// One problem found by the verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub sequence: u64,
    pub kind: ProblemKind,
    pub detail: String,
}

/// Which Ed25519 signatures the verifier checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureCheck {
    /// Checkpoints, run ends and anomalies (the hash chain carries the rest).
    #[default]
    Anchors,
    /// Every receipt, with batch verification.
    All,
}

/// Verifier settings.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub signatures: SignatureCheck,
    /// Heads known from elsewhere (an earlier verification, a published checkpoint): each must
    /// be in the chain with that hash, or lie before a pruned start. A pin past the end makes
    /// truncation of the tail evident.
    pub pinned: Vec<ChainHead>,
}

/// The verifier's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub receipts: usize,
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// The chain starts at a checkpoint after sequence 0 (older receipts were pruned).
    pub starts_at_checkpoint: bool,
    /// Checkpoints whose root was recomputed from the receipts and matched.
    pub checkpoints_recomputed: usize,
    /// Checkpoints accepted on their signature alone (the receipts before them are not present).
    pub checkpoints_on_signature: usize,
    /// Ed25519 signatures checked (receipt and tree-head signatures).
    pub signatures_checked: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Where an item came from: a parsed receipt, or a line read without copying.
#[derive(Clone, Copy)]
enum Source<'a> {
    Owned(&'a Receipt),
    Line(&'a ReceiptRef<'a>),
}

impl Source<'_> {
    /// The receipt as serde_json reads it (parsed from the line when needed; rare: only for
    /// checkpoints and sequences claimed twice).
    fn receipt(&self) -> Result<std::borrow::Cow<'_, Receipt>, ReceiptError> {
        match self {
            Source::Owned(r) => Ok(std::borrow::Cow::Borrowed(*r)),
            Source::Line(r) => r.to_receipt().map(std::borrow::Cow::Owned),
        }
    }
}

/// The fields verification reads, borrowed from either source.
struct Item<'a> {
    sequence: u64,
    action: Action,
    hash: &'a str,
    prev_hash: &'a str,
    key_id: &'a str,
    signature: &'a str,
    src: Source<'a>,
    /// The `hash` field decoded, `None` when it is not 64 hex digits.
    stored: Option<Hash>,
    /// The content hashes to `stored`.
    content_ok: bool,
}

struct Findings {
    problems: Vec<Problem>,
}

impl Findings {
    fn add(&mut self, sequence: u64, kind: ProblemKind, detail: impl Into<String>) {
        self.problems.push(Problem {
            sequence,
            kind,
            detail: detail.into(),
        });
    }
}

/// Indices (into `seqs`) of a longest non-decreasing subsequence, by patience sorting.
fn longest_non_decreasing(seqs: &[u64]) -> Vec<bool> {
    let mut tails: Vec<usize> = Vec::new(); // index of the smallest tail per length
    let mut parent: Vec<Option<usize>> = vec![None; seqs.len()];
    for (i, &x) in seqs.iter().enumerate() {
        let pos = tails.partition_point(|&t| seqs[t] <= x);
        parent[i] = if pos > 0 { Some(tails[pos - 1]) } else { None };
        if pos == tails.len() {
            tails.push(i);
        } else {
            tails[pos] = i;
        }
    }
    let mut keep = vec![false; seqs.len()];
    let mut cur = tails.last().copied();
    while let Some(i) = cur {
        keep[i] = true;
        cur = parent[i];
    }
    keep
}

fn decode(hex_str: &str) -> Option<Hash> {
    super::hex32(hex_str)
}

impl<'a> Item<'a> {
    fn owned(r: &'a Receipt, buf: &mut String) -> Self {
        let stored = decode(&r.hash);
        let content_ok = match (stored, receipt_hash_with(r, buf)) {
            (Some(s), Ok(h)) => s == h,
            _ => false,
        };
        Item {
            sequence: r.sequence,
            action: r.action,
            hash: &r.hash,
            prev_hash: &r.prev_hash,
            key_id: &r.key_id,
            signature: &r.signature,
            src: Source::Owned(r),
            stored,
            content_ok,
        }
    }

    fn line(r: &'a ReceiptRef<'a>, buf: &mut String) -> Self {
        let stored = decode(r.hash);
        let content_ok = stored.is_some_and(|s| s == r.content_hash(buf));
        Item {
            sequence: r.sequence,
            action: r.action,
            hash: r.hash,
            prev_hash: r.prev_hash,
            key_id: r.key_id,
            signature: r.signature,
            src: Source::Line(r),
            stored,
            content_ok,
        }
    }

    /// The same receipt (field for field, decision by value).
    fn same_as(&self, other: &Item<'_>) -> bool {
        match (self.src, other.src) {
            (Source::Owned(a), Source::Owned(b)) => a == b,
            _ => match (self.src.receipt(), other.src.receipt()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

/// Verifies `receipts` (in export order) against `keys`.
pub fn verify_chain(receipts: &[Receipt], keys: &TrustedKeys, options: &VerifyOptions) -> Report {
    let mut buf = String::with_capacity(1024);
    let items: Vec<Item<'_>> = receipts.iter().map(|r| Item::owned(r, &mut buf)).collect();
    verify_items(items, keys, options)
}

/// Verifies receipts straight from JSON lines (blank lines skipped): the same [`Report`] as
/// `verify_chain(&parse_json_lines(text)?, …)`, and the same error for a line that is not a
/// receipt, but lines in MOM's own canonical shape ([`super::borrowed`]) are hashed from the
/// text without building a `Receipt` (no allocation per receipt); other lines go through
/// serde_json as before.
pub fn verify_json_lines(text: &str, keys: &TrustedKeys, options: &VerifyOptions) -> Result<Report, ReceiptError> {
    enum Slot {
        Ref(usize),
        Owned(usize),
    }
    let mut refs: Vec<ReceiptRef<'_>> = Vec::new();
    let mut owned: Vec<Receipt> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(r) = parse_receipt_ref(line) {
            slots.push(Slot::Ref(refs.len()));
            refs.push(r);
        } else if let Some(r) = parse_line(line, i + 1)? {
            slots.push(Slot::Owned(owned.len()));
            owned.push(r);
        }
    }
    let mut buf = String::with_capacity(1024);
    let items: Vec<Item<'_>> = slots
        .iter()
        .map(|s| match *s {
            Slot::Ref(i) => Item::line(&refs[i], &mut buf),
            Slot::Owned(i) => Item::owned(&owned[i], &mut buf),
        })
        .collect();
    Ok(verify_items(items, keys, options))
}

fn verify_items(items: Vec<Item<'_>>, keys: &TrustedKeys, options: &VerifyOptions) -> Report {
    let mut f = Findings { problems: Vec::new() };
    let mut report = Report {
        receipts: items.len(),
        ..Report::default()
    };
    check_export_order(&items, &mut f);
    check_key_ids(&items, keys, &mut f);
    let (order, groups) = sequence_groups(&items);
    let mut sigs_checked = 0usize;
    let walk = walk_chain(
        &items,
        &order,
        &groups,
        keys,
        options,
        &mut report,
        &mut f,
        &mut sigs_checked,
    );
    check_chain_signatures(&items, &walk, keys, options, &mut f, &mut sigs_checked);
    check_key_handovers(&items, &walk.canon, keys, &mut f, &mut sigs_checked);
    report.signatures_checked = sigs_checked;
    check_pinned_heads(&items, &groups, &walk.canon, options, &report, &mut f);
    f.problems.sort_by_key(|p| (p.sequence, p.kind));
    f.problems.dedup_by(|a, b| a.sequence == b.sequence && a.kind == b.kind);
    report.problems = f.problems;
    report
}

/// Step 1, the order as exported: only the first receipt claiming each sequence takes part
/// (later ones are forks or insertions, judged in [`walk_chain`] wherever they stand); any
/// sequence outside the longest non-decreasing run is `reordered`.
fn check_export_order(items: &[Item<'_>], f: &mut Findings) {
    // Only the first receipt claiming each sequence takes part: later ones are forks or
    // insertions, judged in step 3 wherever they stand.
    let seqs: Vec<u64> = items.iter().map(|it| it.sequence).collect();
    if !seqs.is_sorted() {
        let mut seen = std::collections::HashSet::with_capacity(seqs.len());
        let firsts: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
        for (i, keep) in longest_non_decreasing(&firsts).into_iter().enumerate() {
            if !keep {
                f.add(
                    firsts[i],
                    ProblemKind::Reordered,
                    "receipt is out of sequence order in the export",
                );
            }
        }
    }
}

/// Step 2, for every receipt: a key id that is not trusted is `unknown_key`.
fn check_key_ids(items: &[Item<'_>], keys: &TrustedKeys, f: &mut Findings) {
    for it in items {
        if keys.get(it.key_id).is_none() {
            f.add(
                it.sequence,
                ProblemKind::UnknownKey,
                format!("key id {:?} is not trusted", it.key_id),
            );
        }
    }
}

/// The receipts in sequence order (stable: file order within a sequence), and the groups of
/// equal sequence as ranges of that order.
#[allow(clippy::type_complexity)]
fn sequence_groups(items: &[Item<'_>]) -> (Vec<usize>, Vec<(u64, std::ops::Range<usize>)>) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].sequence); // stable: file order within a sequence
    // Groups of equal sequence, as ranges of `order`.
    let mut groups: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
    let mut start = 0;
    for k in 1..=order.len() {
        if k == order.len() || items[order[k]].sequence != items[order[start]].sequence {
            groups.push((items[order[start]].sequence, start..k));
            start = k;
        }
    }

    (order, groups)
}

/// What [`walk_chain`] settles for each sequence (one entry per group, in sequence order).
struct Walk {
    /// The canonical receipt (index into the items).
    canon: Vec<usize>,
    /// Whether it links to its predecessor.
    linked_from_prev: Vec<bool>,
    /// Whether its signature must be checked even inside a linked run.
    must_sign: Vec<bool>,
}

/// Step 3, the chain in sequence order: the canonical receipt of each sequence, forks and
/// insertions beside it, gaps and the chain's start, edited content and broken links, the
/// Merkle tree and every checkpoint against it.
#[allow(clippy::too_many_arguments)]
fn walk_chain(
    items: &[Item<'_>],
    order: &[usize],
    groups: &[(u64, std::ops::Range<usize>)],
    keys: &TrustedKeys,
    options: &VerifyOptions,
    report: &mut Report,
    f: &mut Findings,
    sigs_checked: &mut usize,
) -> Walk {
    let sig_ok = |it: &Item<'_>, checked: &mut usize| -> bool {
        match (keys.get(it.key_id), it.stored, parse_signature(it.signature)) {
            (Some(k), Some(h), Some(sig)) => {
                *checked += 1;
                k.verify_strict(&receipt_message(&h), &sig).is_ok()
            }
            _ => false,
        }
    };

    // Canonical receipt per group (index into items), whether it links to its predecessor.
    let mut canon: Vec<usize> = Vec::with_capacity(groups.len());
    let mut linked_from_prev: Vec<bool> = Vec::with_capacity(groups.len());
    let mut must_sign: Vec<bool> = Vec::with_capacity(groups.len());
    let mut tree: Option<Frontier> = None;
    let mut prev: Option<(u64, usize)> = None; // (sequence, item index) of the previous canonical
    for (g, (seq, range)) in groups.iter().enumerate() {
        let seq = *seq;
        let members: &[usize] = &order[range.clone()];
        let expected_prev: Option<&str> = match prev {
            Some((ps, pi)) if ps + 1 == seq => Some(items[pi].hash),
            None if seq == 0 => Some(GENESIS_PREV_HASH),
            _ => None,
        };
        // With several receipts at one sequence, the chain continues from the one the next
        // sequence commits to, else the one that links back, else an intact one.
        let c = if members.len() == 1 {
            members[0]
        } else {
            let next: &[usize] = match groups.get(g + 1) {
                Some((ns, nr)) if *ns == seq + 1 => &order[nr.clone()],
                _ => &[],
            };
            let referenced = |i: usize| next.iter().any(|&j| items[j].prev_hash == items[i].hash);
            members
                .iter()
                .copied()
                .find(|&i| referenced(i))
                .or_else(|| {
                    members
                        .iter()
                        .copied()
                        .find(|&i| items[i].content_ok && expected_prev.is_some_and(|p| items[i].prev_hash == p))
                })
                .or_else(|| members.iter().copied().find(|&i| items[i].content_ok))
                .unwrap_or(members[0])
        };
        let ci = &items[c];
        let mut sign_this = false;

        // Other receipts claiming the same sequence.
        if members.len() > 1 {
            sign_this = true;
            let c_auth = ci.content_ok && sig_ok(ci, sigs_checked);
            for &o in members.iter().filter(|&&o| o != c) {
                let oi = &items[o];
                if oi.same_as(ci) {
                    f.add(
                        seq,
                        ProblemKind::Inserted,
                        "exact duplicate of the receipt at this sequence",
                    );
                    continue;
                }
                let o_auth = oi.content_ok && sig_ok(oi, sigs_checked);
                if o_auth && c_auth && oi.prev_hash == ci.prev_hash {
                    f.add(
                        seq,
                        ProblemKind::Forked,
                        format!("two signed receipts: {} and {}", ci.hash, oi.hash),
                    );
                } else {
                    let why = if !oi.content_ok {
                        "its content does not match its hash"
                    } else if keys.get(oi.key_id).is_none() {
                        "it is signed by an untrusted key"
                    } else if !o_auth {
                        "its signature is bad"
                    } else {
                        "it does not extend the chain"
                    };
                    f.add(
                        seq,
                        ProblemKind::Inserted,
                        format!("extra receipt with hash {} is not part of the chain: {why}", oi.hash),
                    );
                }
            }
        }

        // Gaps and the start of the chain.
        let gap_start = match prev {
            Some((ps, _)) => ps + 1,
            None => 0,
        };
        let mut starts_here = false;
        if prev.is_none() {
            report.first_sequence = Some(seq);
            if seq > 0 {
                let pinned_before = options.pinned.iter().any(|p| p.sequence.checked_add(1) == Some(seq));
                if ci.action == Action::Checkpoint {
                    report.starts_at_checkpoint = true;
                    starts_here = true;
                    sign_this = true;
                } else if !pinned_before {
                    f.add(
                        0,
                        ProblemKind::Missing,
                        format!(
                            "receipts 0..={} are missing: the chain starts at {seq} without a checkpoint",
                            seq - 1
                        ),
                    );
                }
            }
        } else if seq > gap_start {
            f.add(
                gap_start,
                ProblemKind::Missing,
                format!("receipts {gap_start}..={} are missing ({})", seq - 1, seq - gap_start),
            );
            // One missing leaf is still known: the successor's prevHash.
            let single = seq - gap_start == 1;
            match (&mut tree, decode(ci.prev_hash)) {
                (Some(t), Some(h)) if single && t.size() == gap_start => t.push_leaf_hash(leaf_hash(&h)),
                _ => tree = None,
            }
        }

        // Content and link.
        if !ci.content_ok {
            let what = if ci.stored.is_none() {
                "its hash field is not 64 lowercase hex digits"
            } else {
                "its content does not match its hash"
            };
            f.add(
                seq,
                ProblemKind::Edited,
                format!("receipt was changed after sealing: {what}"),
            );
        }
        let mut linked = false;
        match expected_prev {
            Some(p) if ci.prev_hash == p => linked = true,
            Some(_) if seq == 0 && ci.content_ok => f.add(
                0,
                ProblemKind::Edited,
                "prevHash of sequence 0 is not the genesis value",
            ),
            Some(_) if seq == 0 => {}
            Some(_) => {
                // `ci` is self-consistent yet links elsewhere: its predecessor was rewritten.
                if let Some((ps, pi)) = prev
                    && ci.content_ok
                    && items[pi].content_ok
                {
                    f.add(
                        ps,
                        ProblemKind::Edited,
                        format!(
                            "rewritten and re-hashed: receipt {seq} committed to prevHash {}",
                            ci.prev_hash
                        ),
                    );
                }
            }
            None => {}
        }
        linked_from_prev.push(linked);

        // Merkle tree and checkpoints.
        if tree.as_ref().is_some_and(|t| t.size() != seq) {
            tree = None;
        }
        if prev.is_none() && seq == 0 {
            tree = Some(Frontier::new());
        }
        if ci.action == Action::Checkpoint {
            sign_this = true;
            match ci.src.receipt().and_then(|r| CheckpointDecision::from_receipt(&r)) {
                Err(e) => f.add(seq, ProblemKind::CheckpointMismatch, e.to_string()),
                Ok(cp) => {
                    let head_ok = match (keys.get(ci.key_id), cp.root(seq), parse_signature(&cp.signature)) {
                        (Some(k), Ok(root), Some(sig)) => {
                            *sigs_checked += 1;
                            k.verify_strict(&checkpoint_message(cp.tree_size, &root), &sig).is_ok()
                        }
                        _ => false,
                    };
                    if !head_ok {
                        f.add(
                            seq,
                            ProblemKind::CheckpointMismatch,
                            "tree-head signature does not verify",
                        );
                    }
                    match &tree {
                        Some(t) => {
                            let root = t.root();
                            let frontier: Vec<String> = t.subtrees().iter().map(hex::encode).collect();
                            if cp.tree_size != t.size() || cp.root_hash != hex::encode(root) || cp.frontier != frontier
                            {
                                f.add(
                                    seq,
                                    ProblemKind::CheckpointMismatch,
                                    format!(
                                        "checkpoint says size {} root {}; the receipts give size {} root {}",
                                        cp.tree_size,
                                        cp.root_hash,
                                        t.size(),
                                        hex::encode(root)
                                    ),
                                );
                            } else {
                                report.checkpoints_recomputed += 1;
                            }
                        }
                        None => match cp.frontier(seq) {
                            Ok(fr) if head_ok && cp.tree_size == seq => {
                                report.checkpoints_on_signature += 1;
                                tree = Some(fr);
                            }
                            Ok(_) if cp.tree_size != seq => f.add(
                                seq,
                                ProblemKind::CheckpointMismatch,
                                format!("treeSize {} is not the checkpoint's sequence {seq}", cp.tree_size),
                            ),
                            Ok(_) => {}
                            Err(e) => f.add(seq, ProblemKind::CheckpointMismatch, e.to_string()),
                        },
                    }
                }
            }
        }
        if let (Some(t), Some(h)) = (&mut tree, ci.stored) {
            t.push_leaf_hash(leaf_hash(&h));
        } else {
            tree = None;
        }
        if starts_here {
            // A pruned chain's first checkpoint is trusted only through its signatures.
            sign_this = true;
        }

        must_sign.push(sign_this);
        canon.push(c);
        report.last_sequence = Some(seq);
        prev = Some((seq, c));
    }

    Walk {
        canon,
        linked_from_prev,
        must_sign,
    }
}

/// Step 4, signatures: every receipt with `SignatureCheck::All`, else the anchors (where a run
/// of linked receipts ends, plus those [`walk_chain`] marked); a failing anchor has its whole
/// run checked to name the bad receipts.
fn check_chain_signatures(
    items: &[Item<'_>],
    walk: &Walk,
    keys: &TrustedKeys,
    options: &VerifyOptions,
    f: &mut Findings,
    sigs_checked: &mut usize,
) {
    let Walk {
        canon,
        linked_from_prev,
        must_sign,
    } = walk;
    let n = canon.len();
    let mut anchor = must_sign.clone();
    for k in 0..n {
        let next_links = k + 1 < n && linked_from_prev[k + 1];
        if !next_links {
            anchor[k] = true;
        }
    }
    let all = options.signatures == SignatureCheck::All;
    let check: Vec<usize> = (0..n).filter(|&k| all || anchor[k]).collect();
    let mut bad = check_signatures(items, canon, &check, keys, sigs_checked);
    if !all {
        // A failing anchor: check every receipt of its run to name the bad ones.
        let mut extra = Vec::new();
        for &k in &bad {
            let mut j = k;
            while j > 0 && linked_from_prev[j] && !anchor[j - 1] {
                j -= 1;
                extra.push(j);
            }
        }
        extra.sort_unstable();
        extra.dedup();
        bad.extend(check_signatures(items, canon, &extra, keys, sigs_checked));
    }
    for k in bad {
        let r = &items[canon[k]];
        f.add(
            r.sequence,
            ProblemKind::BadSignature,
            format!("signature by key {} does not verify", r.key_id),
        );
    }
}

/// Step 4b, keys: every change of signing key along the canonical chain is recorded by a valid
/// hand-over ([`super::rotation::check_handovers`]). Only `configure` receipts are parsed to
/// look for hand-overs.
fn check_key_handovers(
    items: &[Item<'_>],
    canon: &[usize],
    keys: &TrustedKeys,
    f: &mut Findings,
    sigs_checked: &mut usize,
) {
    let chain: Vec<super::rotation::KeyedReceipt<'_>> = canon
        .iter()
        .map(|&i| {
            let it = &items[i];
            let rotation = if it.action == Action::Configure {
                match it.src.receipt() {
                    Ok(r) => super::rotation::KeyRotation::from_receipt(&r),
                    Err(_) => None,
                }
            } else {
                None
            };
            super::rotation::KeyedReceipt {
                sequence: it.sequence,
                key_id: it.key_id,
                rotation,
                prev_hash: it.prev_hash,
                signature: it.signature,
                hash: it.stored,
            }
        })
        .collect();
    let (problems, checked) = super::rotation::check_handovers(&chain, keys);
    *sigs_checked += checked;
    for p in problems {
        f.add(p.sequence, ProblemKind::KeyHandover, p.detail);
    }
}

/// Step 5, pinned heads: a pinned hash that differs is `forked`; a pin beyond the chain's end
/// means the receipts up to it are `missing`.
fn check_pinned_heads(
    items: &[Item<'_>],
    groups: &[(u64, std::ops::Range<usize>)],
    canon: &[usize],
    options: &VerifyOptions,
    report: &Report,
    f: &mut Findings,
) {
    for pin in &options.pinned {
        match groups.binary_search_by_key(&pin.sequence, |(s, _)| *s) {
            Ok(g) => {
                if items[canon[g]].hash != pin.hash {
                    f.add(
                        pin.sequence,
                        ProblemKind::Forked,
                        format!("hash differs from the pinned head {}", pin.hash),
                    );
                }
            }
            Err(_) => match (report.first_sequence, report.last_sequence) {
                (_, Some(last)) if pin.sequence > last => f.add(
                    last + 1,
                    ProblemKind::Missing,
                    format!(
                        "receipts {}..={} are missing: the pinned head is {}",
                        last + 1,
                        pin.sequence,
                        pin.sequence
                    ),
                ),
                (Some(first), _)
                    if pin.sequence.checked_add(1) == Some(first) && items[canon[0]].prev_hash != pin.hash =>
                {
                    f.add(
                        first,
                        ProblemKind::Forked,
                        format!("prevHash differs from the pinned head {}", pin.hash),
                    )
                }
                (None, None) => f.add(
                    pin.sequence,
                    ProblemKind::Missing,
                    "the chain is empty but a head is pinned",
                ),
                _ => {} // before a pruned start, or inside a gap already reported
            },
        }
    }
}

/// Checks the receipt signatures of `canon[k]` for each `k` in `which`; returns the failing `k`s.
fn check_signatures(
    items: &[Item<'_>],
    canon: &[usize],
    which: &[usize],
    keys: &TrustedKeys,
    checked: &mut usize,
) -> Vec<usize> {
    let mut batch = Vec::with_capacity(which.len());
    let mut batch_k = Vec::with_capacity(which.len());
    let mut bad = Vec::new();
    for &k in which {
        let it = &items[canon[k]];
        let Some(key) = keys.get(it.key_id) else {
            continue; // reported as unknown key
        };
        let Some(h) = it.stored else {
            continue; // reported as edited
        };
        match parse_signature(it.signature) {
            Some(sig) => {
                batch.push((*key, receipt_message(&h).to_vec(), sig));
                batch_k.push(k);
            }
            None => bad.push(k),
        }
    }
    *checked += batch.len();
    for (ok, k) in verify_many(&batch).into_iter().zip(batch_k) {
        if !ok {
            bad.push(k);
        }
    }
    bad.sort_unstable();
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::chain::ChainBuilder;
    use crate::receipts::hash::receipt_hash;
    use crate::receipts::testutil::{chain, draft, signer};
    use crate::receipts::{Signer, TrustedKeys};
    use proptest::prelude::*;

    fn keys_for(s: &Signer) -> TrustedKeys {
        let mut k = TrustedKeys::new();
        k.add(s.public_key());
        k
    }

    fn kinds(rep: &Report) -> Vec<(u64, ProblemKind)> {
        rep.problems.iter().map(|p| (p.sequence, p.kind)).collect()
    }

    fn run(rs: &[Receipt], s: &Signer, check: SignatureCheck) -> Report {
        verify_chain(
            rs,
            &keys_for(s),
            &VerifyOptions {
                signatures: check,
                pinned: Vec::new(),
            },
        )
    }

    type Found = Vec<(u64, ProblemKind)>;

    fn both(rs: &[Receipt], s: &Signer) -> (Found, Found) {
        (
            kinds(&run(rs, s, SignatureCheck::Anchors)),
            kinds(&run(rs, s, SignatureCheck::All)),
        )
    }

    /// Re-hash and re-sign a receipt with `by`, as someone holding that key would.
    fn reseal(r: &mut Receipt, by: &Signer) {
        let h = receipt_hash(r).unwrap();
        r.hash = hex::encode(h);
        r.signature = by.sign_receipt(&h);
    }

    #[test]
    fn an_intact_chain_with_checkpoints_has_no_problems_and_checks_few_signatures() {
        let s = signer(1);
        let rs = chain(200, 50, &s);
        let rep = run(&rs, &s, SignatureCheck::Anchors);
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert_eq!(rep.checkpoints_recomputed, 3);
        assert_eq!((rep.first_sequence, rep.last_sequence), (Some(0), Some(199)));
        // 3 checkpoints × (receipt + tree head) + the last receipt.
        assert_eq!(rep.signatures_checked, 7);
        let all = run(&rs, &s, SignatureCheck::All);
        assert!(all.is_ok());
        assert_eq!(all.signatures_checked, 203);
    }

    #[test]
    fn an_empty_export_has_no_problems() {
        let s = signer(1);
        assert!(run(&[], &s, SignatureCheck::Anchors).is_ok());
    }

    #[test]
    fn receipt_edited_after_write_is_reported_by_verify_at_its_sequence() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs[13].subject.name = "someone-else".into();
        assert_eq!(
            both(&rs, &s),
            (vec![(13, ProblemKind::Edited)], vec![(13, ProblemKind::Edited)])
        );
    }

    #[test]
    fn an_edited_and_rehashed_receipt_is_edited_badly_signed_and_breaks_the_next_checkpoint() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs[13].decision["output"]["sum"] = serde_json::json!(0);
        let h = receipt_hash(&rs[13]).unwrap();
        rs[13].hash = hex::encode(h);
        let (anchors, all) = both(&rs, &s);
        let want = vec![
            (13, ProblemKind::Edited),
            (13, ProblemKind::BadSignature),
            (20, ProblemKind::CheckpointMismatch),
        ];
        assert_eq!(anchors, want);
        assert_eq!(all, want);
    }

    #[test]
    fn a_removed_receipt_is_reported_missing_and_the_next_checkpoint_still_verifies() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs.remove(14);
        let rep = run(&rs, &s, SignatureCheck::Anchors);
        assert_eq!(kinds(&rep), vec![(14, ProblemKind::Missing)]);
        assert_eq!(rep.checkpoints_recomputed, 2);
        assert!(rep.problems[0].detail.contains("14..=14"), "{}", rep.problems[0].detail);
    }

    #[test]
    fn several_removed_receipts_are_one_missing_range() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs.drain(3..7);
        let rep = run(&rs, &s, SignatureCheck::Anchors);
        assert_eq!(kinds(&rep), vec![(3, ProblemKind::Missing)]);
        // The checkpoint at 10 cannot be recomputed but is accepted on its signature.
        assert_eq!(rep.checkpoints_on_signature, 1);
        assert_eq!(rep.checkpoints_recomputed, 1);
    }

    #[test]
    fn two_swapped_receipts_are_reported_reordered_and_nothing_else() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs.swap(4, 17);
        let (anchors, all) = both(&rs, &s);
        assert_eq!(anchors, vec![(4, ProblemKind::Reordered), (17, ProblemKind::Reordered)]);
        assert_eq!(all, anchors);
    }

    #[test]
    fn a_forged_receipt_signed_by_another_key_is_inserted_with_an_unknown_key() {
        let s = signer(1);
        let mallory = signer(66);
        let mut rs = chain(30, 10, &s);
        let mut forged = rs[12].clone();
        forged.subject.name = "exfiltrate".into();
        forged.key_id = mallory.key_id().to_string();
        reseal(&mut forged, &mallory);
        rs.insert(13, forged);
        let want = vec![(12, ProblemKind::Inserted), (12, ProblemKind::UnknownKey)];
        assert_eq!(both(&rs, &s), (want.clone(), want));
    }

    #[test]
    fn a_forged_receipt_under_the_trusted_key_id_is_inserted_with_a_bad_signature_named() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        let mut forged = rs[12].clone();
        forged.subject.name = "exfiltrate".into();
        reseal(&mut forged, &signer(66)); // keyId stays the trusted one
        rs.insert(12, forged); // even placed before the real one
        let rep = run(&rs, &s, SignatureCheck::Anchors);
        assert_eq!(kinds(&rep), vec![(12, ProblemKind::Inserted)]);
        assert!(
            rep.problems[0].detail.contains("signature is bad"),
            "{}",
            rep.problems[0].detail
        );
    }

    #[test]
    fn two_signed_receipts_with_the_same_sequence_are_a_fork() {
        let s = signer(1);
        let mut b = ChainBuilder::genesis(s.clone());
        let mut rs: Vec<Receipt> = (0..5).map(|i| b.seal(draft(i)).unwrap()).collect();
        let mut other = b.clone();
        let twin = other.seal(draft(500)).unwrap();
        rs.extend((5..9).map(|i| b.seal(draft(i)).unwrap()));
        rs.push(twin);
        rs.sort_by_key(|r| r.sequence);
        let rep = run(&rs, &s, SignatureCheck::Anchors);
        assert_eq!(kinds(&rep), vec![(5, ProblemKind::Forked)]);
        assert_eq!(kinds(&run(&rs, &s, SignatureCheck::All)), kinds(&rep));
    }

    #[test]
    fn an_exact_duplicate_is_reported_inserted() {
        let s = signer(1);
        let mut rs = chain(10, 0, &s);
        rs.insert(4, rs[3].clone());
        assert_eq!(
            kinds(&run(&rs, &s, SignatureCheck::Anchors)),
            vec![(3, ProblemKind::Inserted)]
        );
    }

    #[test]
    fn verifying_with_the_wrong_key_reports_every_receipt_as_an_unknown_key() {
        let s = signer(1);
        let rs = chain(12, 5, &s);
        let rep = run(&rs, &signer(2), SignatureCheck::Anchors);
        let want: Vec<(u64, ProblemKind)> = (0..12).map(|i| (i, ProblemKind::UnknownKey)).collect();
        // Checkpoints also cannot be verified.
        let mut want = want;
        want.insert(6, (5, ProblemKind::CheckpointMismatch));
        want.insert(12, (10, ProblemKind::CheckpointMismatch));
        assert_eq!(kinds(&rep), want);
    }

    #[test]
    fn a_corrupted_signature_is_named_when_all_signatures_are_checked() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs[7].signature = s.sign_receipt(&[0; 32]);
        assert_eq!(
            kinds(&run(&rs, &s, SignatureCheck::All)),
            vec![(7, ProblemKind::BadSignature)]
        );
        // Inside an intact run the content is still authenticated by the anchors: no problem.
        assert!(run(&rs, &s, SignatureCheck::Anchors).is_ok());
        rs[29].signature = "not hex".into();
        assert_eq!(
            kinds(&run(&rs, &s, SignatureCheck::Anchors)),
            vec![(29, ProblemKind::BadSignature)]
        );
    }

    #[test]
    fn a_tail_rewritten_with_another_key_under_the_trusted_key_id_is_bad_on_every_receipt() {
        let s = signer(1);
        let mallory = signer(66);
        let mut rs = chain(20, 0, &s);
        let mut b = ChainBuilder::after(
            mallory.clone(),
            ChainHead {
                sequence: 14,
                hash: rs[14].hash.clone(),
            },
        );
        for r in rs.iter_mut().skip(15) {
            let mut d = draft(r.sequence);
            d.subject.name = "rewritten".into();
            let mut forged = b.prepare(d).unwrap();
            forged.key_id = s.key_id().to_string();
            reseal(&mut forged, &mallory);
            b.commit(&forged).unwrap();
            *r = forged;
        }
        let want: Vec<(u64, ProblemKind)> = (15..20).map(|i| (i, ProblemKind::BadSignature)).collect();
        assert_eq!(both(&rs, &s), (want.clone(), want));
    }

    #[test]
    fn a_tampered_checkpoint_root_is_a_checkpoint_mismatch() {
        let s = signer(1);
        let mut rs = chain(30, 10, &s);
        rs[20].decision["rootHash"] = serde_json::json!("ab".repeat(32));
        reseal(&mut rs[20], &s); // even re-sealed by the real key
        let rep = run(&rs, &s, SignatureCheck::Anchors);
        // Receipt 21 still commits to the old hash, so the rewrite is also evident as an edit.
        assert_eq!(
            kinds(&rep),
            vec![(20, ProblemKind::Edited), (20, ProblemKind::CheckpointMismatch)]
        );
        let mut rs = chain(30, 10, &s);
        rs[10].decision = serde_json::json!({"treeSize": "ten"});
        let k = kinds(&run(&rs, &s, SignatureCheck::Anchors));
        assert!(
            k.contains(&(10, ProblemKind::CheckpointMismatch)) && k.contains(&(10, ProblemKind::Edited)),
            "{k:?}"
        );
    }

    #[test]
    fn a_chain_whose_first_receipt_does_not_start_at_genesis_is_edited() {
        let s = signer(1);
        let mut rs = chain(5, 0, &s);
        rs[0].prev_hash = "11".repeat(32);
        reseal(&mut rs[0], &s);
        let k = kinds(&run(&rs, &s, SignatureCheck::Anchors));
        assert!(k.contains(&(0, ProblemKind::Edited)), "{k:?}");
    }

    #[test]
    fn a_chain_continuing_right_after_a_pinned_head_is_accepted() {
        let s = signer(1);
        let rs = chain(30, 10, &s);
        let pin = ChainHead {
            sequence: 4,
            hash: rs[4].hash.clone(),
        };
        let opts = VerifyOptions {
            pinned: vec![pin],
            ..Default::default()
        };
        let rep = verify_chain(&rs[5..], &keys_for(&s), &opts);
        assert!(rep.is_ok(), "{:?}", rep.problems);
        // The first checkpoint after the pin cannot be recomputed; it is taken on signature.
        assert_eq!((rep.checkpoints_on_signature, rep.checkpoints_recomputed), (1, 1));
        let wrong = ChainHead {
            sequence: 4,
            hash: rs[3].hash.clone(),
        };
        let opts = VerifyOptions {
            pinned: vec![wrong],
            ..Default::default()
        };
        let rep = verify_chain(&rs[5..], &keys_for(&s), &opts);
        assert_eq!(kinds(&rep), vec![(5, ProblemKind::Forked)]);
    }

    #[test]
    fn a_pinned_head_that_differs_is_a_fork() {
        let s = signer(1);
        let rs = chain(10, 0, &s);
        let opts = VerifyOptions {
            pinned: vec![ChainHead {
                sequence: 4,
                hash: "22".repeat(32),
            }],
            ..Default::default()
        };
        let rep = verify_chain(&rs, &keys_for(&s), &opts);
        assert_eq!(kinds(&rep), vec![(4, ProblemKind::Forked)]);
    }

    #[test]
    fn sequence_numbers_at_the_top_of_the_range_are_reported_without_panicking() {
        let s = signer(1);
        let mut rs = chain(3, 0, &s);
        rs[2].sequence = u64::MAX;
        reseal(&mut rs[2], &s);
        let opts = VerifyOptions {
            pinned: vec![ChainHead {
                sequence: u64::MAX,
                hash: "33".repeat(32),
            }],
            ..Default::default()
        };
        let rep = verify_chain(&rs, &keys_for(&s), &opts);
        let k = kinds(&rep);
        assert!(
            k.contains(&(2, ProblemKind::Missing)) && k.contains(&(u64::MAX, ProblemKind::Forked)),
            "{k:?}"
        );
        let mut b = ChainBuilder::after(
            s,
            ChainHead {
                sequence: u64::MAX,
                hash: rs[2].hash.clone(),
            },
        );
        assert!(b.seal(draft(0)).unwrap_err().to_string().contains("sequence"));
    }

    #[test]
    fn problems_serialise_with_snake_case_kinds() {
        let p = Problem {
            sequence: 3,
            kind: ProblemKind::BadSignature,
            detail: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"sequence":3,"kind":"bad_signature","detail":"x"}"#
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_single_tampering_is_reported_at_its_sequence(
            n in 3usize..40, every in 0usize..9, pick in any::<prop::sample::Index>(), kind in 0u8..5,
        ) {
            let s = signer(1);
            let mut rs = chain(n, every, &s);
            let k = pick.index(n);
            let seq = k as u64;
            let expect: ProblemKind = match kind {
                0 => { rs[k].time.push('!'); ProblemKind::Edited }
                1 => {
                    rs.remove(k);
                    ProblemKind::Missing
                }
                2 => {
                    let j = if k + 1 < n { k + 1 } else { k - 1 };
                    rs.swap(k, j);
                    ProblemKind::Reordered
                }
                3 => {
                    let mut f = rs[k].clone();
                    f.inputs_digest = "cd".repeat(32);
                    reseal(&mut f, &signer(9));
                    rs.insert(k + 1, f);
                    ProblemKind::Inserted
                }
                _ => {
                    let mut b = ChainBuilder::resume(s.clone(), &rs[..k]).unwrap();
                    let mut d = draft(seq + 1000);
                    d.time = "fork".into();
                    if rs[k].action == Action::Checkpoint {
                        // A fork at a checkpoint slot: the twin is an ordinary receipt.
                    }
                    rs.push(b.seal(d).unwrap());
                    ProblemKind::Forked
                }
            };
            for check in [SignatureCheck::Anchors, SignatureCheck::All] {
                let rep = run(&rs, &s, check);
                let found = kinds(&rep);
                if kind == 1 && k == n - 1 {
                    // Dropping the last receipt is only evident against a pinned head.
                    prop_assert!(rep.is_ok(), "{:?}", found);
                    continue;
                }
                if kind == 1 && k == 0 && rs[0].action == Action::Checkpoint {
                    // Indistinguishable from retention pruning up to that checkpoint; a pinned
                    // head makes it evident (see a_pin_past_the_kept_start_…).
                    prop_assert!(rep.is_ok() && rep.starts_at_checkpoint, "{:?}", found);
                    continue;
                }
                if kind == 2 {
                    prop_assert!(found.iter().all(|(_, p)| *p == ProblemKind::Reordered), "{:?}", found);
                    prop_assert!(!found.is_empty());
                    continue;
                }
                prop_assert!(found.contains(&(seq, expect)), "want {:?} at {} in {:?}", expect, seq, found);
                prop_assert!(found.iter().all(|(q, _)| *q == seq), "{:?}", found);
            }
        }

        #[test]
        fn a_pinned_last_head_makes_dropping_the_tail_evident(n in 2usize..30, drop in 1usize..5) {
            let s = signer(1);
            let rs = chain(n, 7, &s);
            let keep = n.saturating_sub(drop).max(1);
            let pin = ChainHead { sequence: n as u64 - 1, hash: rs[n - 1].hash.clone() };
            let opts = VerifyOptions { pinned: vec![pin], ..Default::default() };
            let rep = verify_chain(&rs[..keep], &keys_for(&s), &opts);
            if keep == n {
                prop_assert!(rep.is_ok());
            } else {
                prop_assert_eq!(kinds(&rep), vec![(keep as u64, ProblemKind::Missing)]);
            }
        }
    }
}
