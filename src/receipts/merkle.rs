//! Merkle tree over the receipt chain with RFC 6962 / RFC 9162 semantics.
//!
//! Inputs: leaf data (a receipt's 32-byte hash is leaf `sequence`). Outputs: tree roots,
//! inclusion and consistency proofs, and their verification.
//! - leaf hash `= SHA-256(0x00 ‖ data)`, node hash `= SHA-256(0x01 ‖ left ‖ right)`;
//! - `MTH({}) = SHA-256("")`; `MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))` with `k` the largest
//!   power of two below `n`.
//!
//! [`Frontier`] is the compact form of a tree (the roots of its perfect subtrees, left to right,
//! one per set bit of the size): it appends in O(log n), gives the root, and is what a
//! checkpoint stores so that receipts before it can be pruned.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a proof could not be produced.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency between sizes {old} and {new} is undefined (need 0 < old <= new)")]
    BadSizes { old: u64, new: u64 },
    #[error("frontier of {got} subtree roots does not fit a tree of size {size}")]
    BadFrontier { got: usize, size: u64 },
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// `MTH` over already-hashed leaves.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Audit path for leaf `index` (RFC 6962 §2.1.1 `PATH`).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, MerkleError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index as usize, leaves, &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// Checks an audit path (RFC 9162 §2.1.3.2): does `leaf` sit at `index` in the tree of `size`
/// leaves with root `root`?
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// Consistency proof between the first `old` leaves and all of them (RFC 6962 §2.1.2 `PROOF`).
pub fn consistency_proof(leaves: &[Hash], old: u64) -> Result<Vec<Hash>, MerkleError> {
    let new = leaves.len() as u64;
    if old == 0 || old > new {
        return Err(MerkleError::BadSizes { old, new });
    }
    let mut out = Vec::new();
    subproof(old as usize, leaves, true, &mut out);
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !whole {
            out.push(root(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], whole, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): is the tree of `old` leaves with root
/// `old_root` a prefix of the tree of `new` leaves with root `new_root`?
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    &fr == old_root && &sr == new_root && snode == 0
}

/// Compact Merkle tree: the perfect-subtree roots of the binary decomposition of `size`,
/// largest (leftmost) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its parts; the number of roots must equal popcount(size).
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Result<Self, MerkleError> {
        if subtrees.len() != size.count_ones() as usize {
            return Err(MerkleError::BadFrontier {
                got: subtrees.len(),
                size,
            });
        }
        Ok(Frontier { size, subtrees })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// Appends an already-hashed leaf: merge equal-height subtrees while the size's low bit is set.
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // popcount(size) roots are present, so a pop exists for each set low bit.
            if let Some(left) = self.subtrees.pop() {
                h = node_hash(&left, &h);
            }
            s >>= 1;
        }
        self.subtrees.push(h);
        self.size += 1;
    }

    /// Appends leaf data (hashes it as a leaf first).
    pub fn push(&mut self, data: &[u8]) {
        self.push_leaf_hash(leaf_hash(data));
    }

    /// `MTH` of the leaves appended so far: fold the subtree roots from the right.
    pub fn root(&self) -> Hash {
        let mut it = self.subtrees.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect()
    }

    #[test]
    fn the_empty_tree_root_is_the_digest_of_nothing() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Frontier::new().root(), root(&[]));
    }

    #[test]
    fn a_two_leaf_root_is_the_node_hash_of_the_two_leaf_hashes() {
        let l = leaves(3);
        assert_eq!(root(&l[..2]), node_hash(&l[0], &l[1]));
        // Unbalanced: MTH(3) = node(node(l0,l1), l2).
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn the_frontier_root_equals_the_recursive_root_for_sizes_up_to_64() {
        let l = leaves(64);
        let mut f = Frontier::new();
        for (i, leaf) in l.iter().enumerate() {
            f.push_leaf_hash(*leaf);
            assert_eq!(f.root(), root(&l[..=i]), "size {}", i + 1);
            assert_eq!(f.subtrees().len(), (i + 1).count_ones() as usize);
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_leaf_or_index_does_not_for_sizes_1_to_64() {
        let l = leaves(64);
        for n in 1..=64usize {
            let r = root(&l[..n]);
            for i in 0..n {
                let p = inclusion_proof(&l[..n], i as u64).unwrap();
                assert!(verify_inclusion(&l[i], i as u64, n as u64, &p, &r), "n={n} i={i}");
                let other = l[(i + 1) % 64];
                assert!(!verify_inclusion(&other, i as u64, n as u64, &p, &r));
                if n > 1 {
                    let j = ((i + 1) % n) as u64;
                    assert!(!verify_inclusion(&l[i], j, n as u64, &p, &r), "n={n} i={i} j={j}");
                }
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(&l[i], i as u64, n as u64, &bad, &r));
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_wrong_old_root_does_not_for_sizes_1_to_64() {
        let l = leaves(64);
        for n in 1..=64usize {
            let rn = root(&l[..n]);
            for m in 1..=n {
                let rm = root(&l[..m]);
                let p = consistency_proof(&l[..n], m as u64).unwrap();
                assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &p), "m={m} n={n}");
                let wrong = leaf_hash(b"not a root");
                assert!(!verify_consistency(m as u64, n as u64, &wrong, &rn, &p));
                assert!(!verify_consistency(m as u64, n as u64, &rm, &wrong, &p));
                if m < n {
                    // A tree with a changed leaf before `m` is not an extension.
                    let mut forked = l[..n].to_vec();
                    forked[m - 1] = leaf_hash(b"rewritten");
                    let rf = root(&forked);
                    let pf = consistency_proof(&forked, m as u64).unwrap();
                    assert!(!verify_consistency(m as u64, n as u64, &rm, &rf, &pf), "m={m} n={n}");
                }
            }
        }
    }

    #[test]
    fn proofs_for_impossible_positions_are_errors_that_name_them() {
        let l = leaves(4);
        let e = inclusion_proof(&l, 4).unwrap_err();
        assert!(
            e.to_string().contains("index 4") && e.to_string().contains("size 4"),
            "{e}"
        );
        assert!(consistency_proof(&l, 0).is_err());
        assert!(consistency_proof(&l, 5).is_err());
        assert!(!verify_consistency(0, 4, &root(&l), &root(&l), &[]));
        assert!(Frontier::from_parts(3, vec![l[0]]).is_err());
    }
}
