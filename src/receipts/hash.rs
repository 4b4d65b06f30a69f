//! Receipt hashing: the canonical body of a receipt (every field but `hash` and `signature`),
//! its SHA-256 `hash`, and the Merkle leaf hashes of a chain.
//! `hash = SHA-256(canonical JSON of {action, decision, inputsDigest, keyId, level, prevHash,
//! sequence, subject, time})`.

use super::canonical::{self, write_str, write_value};
use super::merkle::{Hash, leaf_hash};
use super::{Receipt, ReceiptError};
use sha2::{Digest, Sha256};

/// The canonical JSON of a receipt without `hash` and `signature` (what [`receipt_hash`] hashes).
///
/// Written field by field in sorted key order; equal to `canonical::to_string` of the same
/// object (a test checks this), only faster.
pub fn write_canonical_body(s: &mut String, r: &Receipt) -> Result<(), ReceiptError> {
    s.push_str("{\"action\":");
    write_str(s, r.action.as_str());
    s.push_str(",\"decision\":");
    write_value(s, &r.decision)?;
    s.push_str(",\"inputsDigest\":");
    write_str(s, &r.inputs_digest);
    s.push_str(",\"keyId\":");
    write_str(s, &r.key_id);
    s.push_str(",\"level\":");
    write_str(s, r.level.as_str());
    s.push_str(",\"prevHash\":");
    write_str(s, &r.prev_hash);
    s.push_str(",\"sequence\":");
    canonical::push_u64(s, r.sequence);
    s.push_str(",\"subject\":{\"apiVersion\":");
    let sub = &r.subject;
    write_str(s, &sub.api_version);
    s.push_str(",\"kind\":");
    write_str(s, &sub.kind);
    s.push_str(",\"name\":");
    write_str(s, &sub.name);
    s.push_str(",\"namespace\":");
    write_str(s, &sub.namespace);
    if let Some(uid) = &sub.uid {
        s.push_str(",\"uid\":");
        write_str(s, uid);
    }
    s.push_str("},\"time\":");
    write_str(s, &r.time);
    s.push('}');
    Ok(())
}

/// [`canonical_body`] as a new string.
pub fn canonical_body(r: &Receipt) -> Result<String, ReceiptError> {
    let mut s = String::with_capacity(1024);
    write_canonical_body(&mut s, r)?;
    Ok(s)
}

/// `SHA-256(canonical_body(r))`: the value `r.hash` must hold.
pub fn receipt_hash(r: &Receipt) -> Result<Hash, ReceiptError> {
    receipt_hash_with(r, &mut String::with_capacity(1024))
}

/// [`receipt_hash`] reusing `buf` (cleared first) for the canonical body.
pub fn receipt_hash_with(r: &Receipt, buf: &mut String) -> Result<Hash, ReceiptError> {
    buf.clear();
    write_canonical_body(buf, r)?;
    Ok(Sha256::digest(buf.as_bytes()).into())
}

/// Merkle leaf hashes of `receipts` (which must be the chain from sequence 0, in order):
/// leaf `i` = `SHA-256(0x00 ‖ hash of receipt i)`. Feed them to [`super::merkle`] for proofs.
pub fn leaf_hashes(receipts: &[Receipt]) -> Result<Vec<Hash>, ReceiptError> {
    receipts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.sequence != i as u64 {
                return Err(ReceiptError::NotNext {
                    sequence: r.sequence,
                    expected: i as u64,
                });
            }
            Ok(leaf_hash(&super::decode_hash("hash", &r.hash)?))
        })
        .collect()
}
