//! Ed25519 signing of receipt hashes and checkpoint tree heads, key ids, trusted key sets.
//!
//! Inputs: a 32-byte secret seed (the caller brings the randomness), public keys as hex.
//! Outputs: hex signatures over domain-separated messages, and verdicts.
//! Key id = hex of the first 8 bytes of SHA-256(public key bytes).
//! Messages: receipt = `"mom-receipt-v1\0" ‖ hash₃₂`;
//! checkpoint = `"mom-checkpoint-v1\0" ‖ treeSize as u64 big-endian ‖ root₃₂`;
//! key hand-over = `"mom-key-rotation-v1\0" ‖ sequence as u64 big-endian ‖ prevHash₃₂ ‖ fromKeyId`;
//! cluster checkpoint = `"mom-cluster-checkpoint-v1\0" ‖ digest₃₂` (see `receipts::cluster`).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use super::ReceiptError;

const RECEIPT_DOMAIN: &[u8] = b"mom-receipt-v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"mom-checkpoint-v1\0";
const ROTATION_DOMAIN: &[u8] = b"mom-key-rotation-v1\0";
const CLUSTER_DOMAIN: &[u8] = b"mom-cluster-checkpoint-v1\0";

/// The message a shard signs to countersign a cluster checkpoint whose digest is `digest`.
pub fn cluster_checkpoint_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CLUSTER_DOMAIN.len() + 32);
    m.extend_from_slice(CLUSTER_DOMAIN);
    m.extend_from_slice(digest);
    m
}

/// The message signed for a receipt whose hash is `hash`.
pub fn receipt_message(hash: &[u8; 32]) -> [u8; 47] {
    let mut m = [0u8; 47];
    m[..15].copy_from_slice(RECEIPT_DOMAIN);
    m[15..].copy_from_slice(hash);
    m
}

/// The message signed for a Merkle tree head of `size` leaves with root `root`.
pub fn checkpoint_message(size: u64, root: &[u8; 32]) -> [u8; 58] {
    let mut m = [0u8; 58];
    m[..18].copy_from_slice(CHECKPOINT_DOMAIN);
    m[18..26].copy_from_slice(&size.to_be_bytes());
    m[26..].copy_from_slice(root);
    m
}

/// The message an incoming key signs to accept a hand-over (see `receipts::rotation`):
/// `"mom-key-rotation-v1\0" ‖ sequence (u64 BE) ‖ prevHash₃₂ ‖ fromKeyId (ASCII)`.
pub fn rotation_message(sequence: u64, prev_hash: &[u8; 32], from_key_id: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(ROTATION_DOMAIN.len() + 8 + 32 + from_key_id.len());
    m.extend_from_slice(ROTATION_DOMAIN);
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(prev_hash);
    m.extend_from_slice(from_key_id.as_bytes());
    m
}

/// Key id of a public key: hex of SHA-256(public key)[0..8].
pub fn key_id(key: &VerifyingKey) -> String {
    let d = Sha256::digest(key.as_bytes());
    hex::encode(&d[..8])
}

/// Parses a public key from 64 hex digits (surrounding whitespace ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, ReceiptError> {
    let t = text.trim();
    let mut b = [0u8; 32];
    hex::decode_to_slice(t, &mut b).map_err(|_| ReceiptError::BadPublicKey(t.to_string()))?;
    VerifyingKey::from_bytes(&b).map_err(|_| ReceiptError::BadPublicKey(t.to_string()))
}

/// The writer's signing key and its key id.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a 32-byte secret seed (e.g. the bytes in a Kubernetes Secret).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(&key.verifying_key());
        Signer { key, key_id }
    }

    /// A signer from secret seed bytes, which must be exactly 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let seed: [u8; 32] = bytes.try_into().map_err(|_| ReceiptError::BadSecretKey(bytes.len()))?;
        Ok(Self::from_seed(seed))
    }

    /// A signer from 64 hex digits of secret seed (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, ReceiptError> {
        let bytes = hex::decode(text.trim()).map_err(|_| ReceiptError::BadSecretKey(0))?;
        Self::from_bytes(&bytes)
    }

    /// The secret seed as hex (for `mom receipts keygen`).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Public key as 64 hex digits.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Hex signature over a receipt hash.
    pub fn sign_receipt(&self, hash: &[u8; 32]) -> String {
        hex::encode(self.key.sign(&receipt_message(hash)).to_bytes())
    }

    /// Hex signature accepting the hand-over of a chain at `sequence` after `prev_hash` from
    /// `from_key_id` ([`rotation_message`]).
    pub fn sign_rotation(&self, sequence: u64, prev_hash: &[u8; 32], from_key_id: &str) -> String {
        hex::encode(
            self.key
                .sign(&rotation_message(sequence, prev_hash, from_key_id))
                .to_bytes(),
        )
    }

    /// Hex signature over a tree head.
    pub fn sign_checkpoint(&self, size: u64, root: &[u8; 32]) -> String {
        hex::encode(self.key.sign(&checkpoint_message(size, root)).to_bytes())
    }

    /// Hex signature countersigning a cluster checkpoint ([`cluster_checkpoint_message`]).
    pub fn sign_cluster_checkpoint(&self, digest: &[u8; 32]) -> String {
        hex::encode(self.key.sign(&cluster_checkpoint_message(digest)).to_bytes())
    }
}

/// Decodes a hex Ed25519 signature; `None` if it is not 64 bytes of hex.
pub fn parse_signature(text: &str) -> Option<Signature> {
    let mut b = [0u8; 64];
    hex::decode_to_slice(text, &mut b).ok()?;
    Some(Signature::from_bytes(&b))
}

/// Public keys the verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key`; returns its key id.
    pub fn add(&mut self, key: VerifyingKey) -> String {
        let id = key_id(&key);
        self.keys.insert(id.clone(), key);
        id
    }

    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Does `signature_hex` by `key_id` sign `message`? False for unknown keys or bad hex.
    pub fn verify(&self, key_id: &str, message: &[u8], signature_hex: &str) -> bool {
        match (self.get(key_id), parse_signature(signature_hex)) {
            (Some(k), Some(sig)) => k.verify(message, &sig).is_ok(),
            _ => false,
        }
    }
}

/// Verifies many `(key, message, signature)` triples at once.
///
/// Returns one verdict per triple. Batch verification (ed25519-dalek `verify_batch`, ~2× faster
/// per signature) is tried first on chunks; a failing chunk is re-checked one by one so each bad
/// signature is named.
pub fn verify_many(items: &[(VerifyingKey, Vec<u8>, Signature)]) -> Vec<bool> {
    const CHUNK: usize = 256;
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(CHUNK) {
        let msgs: Vec<&[u8]> = chunk.iter().map(|(_, m, _)| m.as_slice()).collect();
        let sigs: Vec<Signature> = chunk.iter().map(|(_, _, s)| *s).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|(k, _, _)| *k).collect();
        if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
            out.extend(std::iter::repeat_n(true, chunk.len()));
        } else {
            out.extend(chunk.iter().map(|(k, m, s)| k.verify_strict(m, s).is_ok()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_the_first_eight_bytes_of_the_public_key_digest() {
        let s = Signer::from_seed([7; 32]);
        let want = hex::encode(&Sha256::digest(s.public_key().as_bytes())[..8]);
        assert_eq!(s.key_id(), want);
        assert_eq!(s.key_id().len(), 16);
    }

    #[test]
    fn the_same_seed_gives_the_same_key_and_signatures() {
        let a = Signer::from_seed([3; 32]);
        let b = Signer::from_hex(&a.secret_hex()).unwrap();
        assert_eq!(a.public_hex(), b.public_hex());
        assert_eq!(a.sign_receipt(&[1; 32]), b.sign_receipt(&[1; 32]));
    }

    #[test]
    fn a_receipt_signature_does_not_verify_as_a_checkpoint_signature() {
        let s = Signer::from_seed([4; 32]);
        let mut keys = TrustedKeys::new();
        let id = keys.add(s.public_key());
        let sig = s.sign_receipt(&[9; 32]);
        assert!(keys.verify(&id, &receipt_message(&[9; 32]), &sig));
        assert!(!keys.verify(&id, &checkpoint_message(0, &[9; 32]), &sig));
        assert!(!keys.verify("0000000000000000", &receipt_message(&[9; 32]), &sig));
    }

    #[test]
    fn bad_key_material_is_rejected_with_a_clear_error() {
        assert!(
            Signer::from_bytes(&[1; 31])
                .unwrap_err()
                .to_string()
                .contains("31 bytes")
        );
        assert!(parse_public_key("xyz").unwrap_err().to_string().contains("xyz"));
        assert!(Signer::from_hex("zz").is_err());
    }

    #[test]
    fn batch_verification_names_the_one_bad_signature() {
        let s = Signer::from_seed([5; 32]);
        let mut items = Vec::new();
        for i in 0..10u8 {
            let m = receipt_message(&[i; 32]).to_vec();
            let sig = parse_signature(&s.sign_receipt(&[i; 32])).unwrap();
            items.push((s.public_key(), m, sig));
        }
        assert!(verify_many(&items).iter().all(|ok| *ok));
        items[6].1[20] ^= 1;
        let verdicts = verify_many(&items);
        assert_eq!(verdicts.iter().filter(|ok| !**ok).count(), 1);
        assert!(!verdicts[6]);
    }
}
