//! Receipts: every orchestration action as a hash-chained, signed, Merkle-checkpointed record.
//!
//! Inputs: unsigned receipt drafts from the decision code, an Ed25519 signing key, the chain
//! head. Outputs: sealed [`Receipt`]s, signed checkpoints, proofs, and a verifier [`Report`]
//! naming each problem by sequence number and kind. Pure: no clock (the caller supplies `time`),
//! no randomness (the caller supplies key seeds), no I/O.
//!
//! # What is hashed and what is signed
//! - `hash = SHA-256(canonical JSON of the receipt without "hash" and "signature")`; this covers
//!   `sequence`, `prevHash`, `keyId`, `time` and `level`, so each receipt commits to the whole
//!   chain before it ([`hash::receipt_hash`]).
//! - Every receipt is signed by the writer: `Ed25519(key, "mom-receipt-v1\0" ‖ hash)`. Signing
//!   costs the writer ~20 µs per action (nothing next to an apiserver write) and keeps each
//!   receipt self-authenticating when it is shown alone with an inclusion proof.
//! - Every checkpoint (a receipt with action `checkpoint`) additionally signs the Merkle tree
//!   head: `Ed25519(key, "mom-checkpoint-v1\0" ‖ treeSize (u64 BE) ‖ root)`.
//! - The verifier by default checks *every* hash and link, but Ed25519 signatures only on
//!   anchors ([`verify::SignatureCheck::Anchors`]): checkpoints, the last receipt of every
//!   unbroken run, and every receipt involved in an anomaly. Because each hash covers `prevHash`,
//!   one valid signature on the last receipt of an intact run authenticates the whole run, so
//!   this is as strong for content as checking every signature, at a hashing cost of ~1–2 µs a
//!   receipt instead of ~25 µs (batch) to ~50 µs (single) per signature. The only thing it does
//!   not see is a corrupted *signature field* on an otherwise intact receipt inside a run (the
//!   content is still authenticated); [`verify::SignatureCheck::All`] (`mom verify
//!   --all-signatures`) checks every signature with batch verification for that.
//!
//! Measured (`cargo bench --no-default-features --bench receipts`, CPU time of one thread,
//! 20,000 demo receipts of ~730 bytes, a checkpoint every 1,000, on a shared 2-core machine):
//! verifying parsed receipts ≈ 430,000/s with anchors, ≈ 47,000/s checking every signature in
//! batches; parsing the JSON lines into `Receipt`s ≈ 190,000/s, so parse + verify ≈ 175,000/s.
//! A profile shows that cost is glibc malloc/free of the ~25 allocations a `Receipt` with its
//! `decision` tree needs, not JSON scanning (a hand-written parser building the same values
//! was no faster). [`verify_json_lines`] therefore verifies straight from the text, hashing
//! MOM's own canonical lines from borrowed slices ([`borrowed`]): ≈ 360,000/s from text.
//! Sealing (hash + sign) ≈ 20 µs.
//!
//! # What is evident and what needs outside help
//! Edits, re-hashed rewrites, gaps, reordering, insertions, forks, foreign keys and forged
//! checkpoints are evident from the chain alone. Deleting the *newest* receipts, or everything
//! before some checkpoint, looks like a shorter or a pruned chain: that is evident only against
//! a head remembered elsewhere ([`verify::VerifyOptions::pinned`], `mom verify --pin SEQ:HASH`),
//! as for any transparency log. Retention ([`retention`]) prunes only up to a checkpoint, whose
//! signed tree head and frontier keep later checkpoints and inclusion proofs verifiable.

pub mod borrowed;
pub mod canonical;
pub mod chain;
pub mod cluster;
pub mod demo;
pub mod hash;
pub mod merkle;
pub mod proof;
pub mod provenance;
pub mod replay;
pub mod retention;
pub mod rotation;
pub mod signing;
pub mod tenant;
pub mod verify;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use chain::{ChainBuilder, ChainHead, SamplingPolicy};
pub use hash::receipt_hash;
pub use signing::{Signer, TrustedKeys};
pub use verify::{Problem, ProblemKind, Report, SignatureCheck, VerifyOptions, verify_chain, verify_json_lines};

/// `prevHash` of the first receipt of a chain (sequence 0): 32 zero bytes in hex.
pub const GENESIS_PREV_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What kind of state change a receipt records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Spawn,
    Terminate,
    Scale,
    Migrate,
    Evict,
    Allocate,
    Configure,
    /// A signed Merkle tree head over every receipt before it.
    Checkpoint,
    /// A pod was bound to a node by the scheduler extender (decision kind `placement.bind`).
    Bind,
}

impl Action {
    /// The JSON spelling (`"spawn"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Spawn => "spawn",
            Action::Terminate => "terminate",
            Action::Scale => "scale",
            Action::Migrate => "migrate",
            Action::Evict => "evict",
            Action::Allocate => "allocate",
            Action::Configure => "configure",
            Action::Checkpoint => "checkpoint",
            Action::Bind => "bind",
        }
    }
}

/// The audit level the receipt was written under (DESIGN §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// No receipts are written.
    None,
    /// A deterministic sample of actions is written, still one unbroken chain.
    Sample,
    /// Every action is written before it is taken.
    FullAudit,
}

impl Level {
    /// The JSON spelling (`"none"`, `"sample"`, `"full_audit"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Sample => "sample",
            Level::FullAudit => "full_audit",
        }
    }
}

/// The Kubernetes object an action was applied to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectRef {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A sealed receipt, exactly as stored in the `Receipt` CRD spec and in JSON-lines exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    /// Position in the chain; 0 for the first receipt, +1 for each written receipt.
    pub sequence: u64,
    pub action: Action,
    pub subject: SubjectRef,
    /// The decision as the deciding module recorded it; preserved as is.
    pub decision: serde_json::Value,
    /// Hex SHA-256 of the canonical JSON of the decision's inputs.
    pub inputs_digest: String,
    /// Hex `hash` of the receipt at `sequence − 1` ([`GENESIS_PREV_HASH`] for sequence 0).
    pub prev_hash: String,
    /// Hex SHA-256 of this receipt's canonical JSON without `hash` and `signature`.
    pub hash: String,
    /// Hex Ed25519 signature over `"mom-receipt-v1\0" ‖ hash`.
    pub signature: String,
    /// Which key signed: first 8 bytes of SHA-256(public key), hex.
    pub key_id: String,
    /// RFC 3339 time supplied by the writer.
    pub time: String,
    pub level: Level,
}

/// What the decision code hands the writer: a receipt before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptDraft {
    pub action: Action,
    pub subject: SubjectRef,
    pub decision: serde_json::Value,
    pub inputs_digest: String,
    pub time: String,
    pub level: Level,
}

/// Errors building, sealing, signing or reading receipts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("canonical JSON: {0}")]
    Canonical(#[from] canonical::CanonicalError),
    #[error("field {field}: {value:?} is not {expected}")]
    BadField {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("public key {0:?}: not a valid Ed25519 public key (want 32 bytes, 64 hex digits)")]
    BadPublicKey(String),
    #[error("secret key: want 32 bytes (64 hex digits), got {0} bytes")]
    BadSecretKey(usize),
    #[error("draft with action `checkpoint`: checkpoints are made by ChainBuilder::checkpoint")]
    CheckpointDraft,
    #[error("receipt {sequence} cannot extend a chain whose next sequence is {expected}")]
    NotNext { sequence: u64, expected: u64 },
    #[error("receipt {sequence}: prevHash {found} does not match the chain head {expected}")]
    BrokenLink {
        sequence: u64,
        found: String,
        expected: String,
    },
    #[error("receipt {sequence}: {message}")]
    BadCheckpoint { sequence: u64, message: String },
    #[error("chain tail must start at sequence 0 or at a checkpoint; it starts at {0} which is not")]
    NoMerkleState(u64),
}

/// Decodes exactly 64 lowercase hex digits (the only spelling MOM writes) into 32 bytes.
pub fn hex32(text: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let b = text.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

/// Decodes a 64-digit lowercase hex string into 32 bytes, naming the field when it is not one.
pub fn decode_hash(field: &'static str, hex_str: &str) -> Result<[u8; 32], ReceiptError> {
    hex32(hex_str).ok_or_else(|| ReceiptError::BadField {
        field,
        value: hex_str.to_string(),
        expected: "64 lowercase hex digits",
    })
}

/// Reads receipts from JSON lines (one receipt per line; blank lines are skipped).
///
/// A line that is not a receipt is an error naming its 1-based line number and the cause.
pub fn parse_json_lines(text: &str) -> Result<Vec<Receipt>, ReceiptError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(r) = parse_line(line, i + 1)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Reads one JSON line (`line_number` is 1-based, for the error); `None` for a blank line.
pub fn parse_line(line: &str, line_number: usize) -> Result<Option<Receipt>, ReceiptError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(line).map(Some).map_err(|e| {
        // serde_json appends " at line 1 column N" (of this one line); say column only.
        let text = e.to_string();
        let cause = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
        ReceiptError::Parse {
            line: line_number,
            message: format!("column {}: {cause}", e.column()),
        }
    })
}

/// Writes receipts as JSON lines, one per line, in the given order.
pub fn to_json_lines(receipts: &[Receipt]) -> String {
    let mut out = String::new();
    for r in receipts {
        // A Receipt always serialises: all its fields are plain data.
        if let Ok(line) = serde_json::to_string(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Hex SHA-256 of the canonical JSON of `inputs`: the `inputsDigest` of a decision.
pub fn inputs_digest(inputs: &serde_json::Value) -> Result<String, ReceiptError> {
    use sha2::{Digest, Sha256};
    let text = canonical::to_string(inputs)?;
    Ok(hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers to build signed chains in tests.
    use super::*;
    use serde_json::json;

    pub fn signer(seed: u8) -> Signer {
        Signer::from_seed([seed; 32])
    }

    pub fn draft(i: u64) -> ReceiptDraft {
        let inputs = json!({"values": [i, i + 1, 2]});
        ReceiptDraft {
            action: Action::Scale,
            subject: SubjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: "default".into(),
                name: format!("web-{}", i % 7),
                uid: None,
            },
            decision: json!({"kind": "test.sum", "inputs": inputs, "output": {"sum": 2 * i + 3}}),
            inputs_digest: inputs_digest(&inputs).unwrap(),
            time: format!("2026-11-26T07:{:02}:{:02}Z", (i / 60) % 60, i % 60),
            level: Level::FullAudit,
        }
    }

    /// A chain of `n` receipts with a checkpoint every `every` receipts (0 = none).
    pub fn chain(n: usize, every: usize, signer: &Signer) -> Vec<Receipt> {
        let mut b = ChainBuilder::genesis(signer.clone());
        let mut out = Vec::new();
        while out.len() < n {
            let i = out.len() as u64;
            if every > 0 && i > 0 && (i as usize).is_multiple_of(every) {
                out.push(b.checkpoint(checkpoint_subject(), format!("t{i}")).unwrap());
            } else {
                out.push(b.seal(draft(i)).unwrap());
            }
        }
        out
    }

    pub fn checkpoint_subject() -> SubjectRef {
        SubjectRef {
            api_version: "mom.example/v1alpha1".into(),
            kind: "ReceiptChain".into(),
            namespace: String::new(),
            name: "default".into(),
            uid: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_json_line_is_reported_with_its_line_number() {
        let s = testutil::signer(1);
        let chain = testutil::chain(3, 0, &s);
        let mut text = to_json_lines(&chain);
        text.push_str("{\"sequence\": 3, \"action\": \"spawn\"\n");
        let err = parse_json_lines(&text).unwrap_err();
        assert!(matches!(err, ReceiptError::Parse { line: 4, .. }), "{err}");
        assert!(err.to_string().starts_with("line 4: column"), "{err}");
        assert!(!err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn an_unknown_action_is_a_parse_error_naming_the_line() {
        let s = testutil::signer(1);
        let chain = testutil::chain(2, 0, &s);
        let text = to_json_lines(&chain).replacen("\"scale\"", "\"explode\"", 1);
        let err = parse_json_lines(&text).unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("explode"),
            "{err}"
        );
    }

    #[test]
    fn receipts_round_trip_through_json_lines_in_camel_case() {
        let s = testutil::signer(2);
        let chain = testutil::chain(5, 3, &s);
        let text = to_json_lines(&chain);
        assert!(text.contains("\"prevHash\"") && text.contains("\"inputsDigest\""));
        assert!(text.contains("\"level\":\"full_audit\"") && text.contains("\"apiVersion\""));
        assert_eq!(parse_json_lines(&text).unwrap(), chain);
    }

    #[test]
    fn hashes_decode_from_lowercase_hex_only() {
        let h: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(hex32(&hex::encode(h)), Some(h));
        assert_eq!(hex32(&hex::encode(h).to_uppercase()), None);
        assert_eq!(hex32(&"g".repeat(64)), None);
    }

    #[test]
    fn a_short_hash_is_rejected_naming_the_field() {
        let err = decode_hash("prevHash", "abcd").unwrap_err();
        assert!(err.to_string().contains("prevHash"), "{err}");
    }
}
