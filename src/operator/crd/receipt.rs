//! `Receipt` (namespaced, in the subject's namespace): one immutable, hash-chained, signed record
//! of an action MOM took. All receipts form one global chain through `sequence` and `prevHash`.
//!
//! The apiserver rejects any change to `spec` (CEL `self == oldSelf`, message
//! "receipts are immutable"). `decision` keeps arbitrary JSON (`x-kubernetes-preserve-unknown-fields`)
//! so the recorded decision can be replayed byte for byte.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::momconfig::VerificationLevel;

/// The message of the immutability rule (tests match on it).
pub const IMMUTABLE_MESSAGE: &str = "receipts are immutable";

/// What was decided, about what, from which inputs; chained and signed.
// Several `printcolumn(...)` entries repeat `type_ = ...`; clippy mistakes them for duplicate attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mom.hypersync.io",
    version = "v1alpha1",
    kind = "Receipt",
    plural = "receipts",
    singular = "receipt",
    shortname = "rcpt",
    category = "mom",
    namespaced,
    derive = "PartialEq",
    selectable = ".spec.action",
    selectable = ".spec.subject.kind",
    selectable = ".spec.subject.name",
    selectable = ".spec.subject.namespace",
    doc = "An immutable, hash-chained, signed record of one action MOM took.",
    printcolumn(
        name = "Seq",
        type_ = "integer",
        json_path = ".spec.sequence",
        description = "Position in the global chain"
    ),
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".spec.action",
        description = "What was done"
    ),
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.subject.kind",
        description = "Kind of the subject"
    ),
    printcolumn(
        name = "Subject",
        type_ = "string",
        json_path = ".spec.subject.name",
        description = "Name of the subject"
    ),
    printcolumn(
        name = "Hash",
        type_ = "string",
        json_path = ".spec.hash",
        description = "Hash of this receipt",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("receipts are immutable"))]
pub struct ReceiptSpec {
    /// Position in the global chain, starting at 0; consecutive receipts differ by 1.
    /// (The receipts core and this spec share one JSON shape: a sealed receipt is stored as is.)
    #[x_kube(validation = Rule::new("self >= 0").message("spec.sequence must be >= 0"))]
    pub sequence: i64,
    /// What was done.
    pub action: ReceiptAction,
    /// The object acted on.
    pub subject: SubjectRef,
    /// The decision as recorded by the deciding function (arbitrary JSON, kept verbatim).
    #[schemars(schema_with = "super::preserved_any")]
    pub decision: serde_json::Value,
    /// SHA-256 of the canonical JSON of the decision's inputs (64 lowercase hex digits).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub inputs_digest: String,
    /// `hash` of the receipt at `sequence − 1` (64 lowercase hex digits; 64 zeros for sequence 0).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub prev_hash: String,
    /// SHA-256 of this receipt's canonical JSON without `hash` and `signature` (64 lowercase hex digits).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub hash: String,
    /// Ed25519 signature over `"mom-receipt-v1\0" ‖ hash` (128 lowercase hex digits).
    #[schemars(regex(pattern = r"^[0-9a-f]{128}$"))]
    pub signature: String,
    /// Which key signed: the first 8 bytes of SHA-256(public key), in lowercase hex.
    #[schemars(regex(pattern = r"^[0-9a-f]{1,64}$"))]
    pub key_id: String,
    /// When the receipt was made (RFC 3339, UTC).
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
    /// The verification level in force when the receipt was written.
    pub level: VerificationLevel,
}

/// The kind of action a receipt records.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptAction {
    /// A pod was created.
    Spawn,
    /// A pod was deleted.
    Terminate,
    /// An agent's replica count changed.
    Scale,
    /// A pod was moved to another node (create there, then delete here).
    Migrate,
    /// A pod was evicted through the Eviction API.
    Evict,
    /// Capacity was allocated by an auction.
    Allocate,
    /// The configuration in force changed.
    Configure,
    /// A signed checkpoint (Merkle root) of the chain was written.
    Checkpoint,
    /// A pod was bound to a node by the scheduler extender.
    Bind,
}

/// A reference to any Kubernetes object.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRef {
    /// API version of the subject (e.g. "v1", "mom.hypersync.io/v1alpha1").
    pub api_version: String,
    /// Kind of the subject (e.g. "Pod", "GeometricAgent").
    pub kind: String,
    /// Namespace of the subject; empty for cluster-scoped objects (always present, so the
    /// receipt's canonical JSON, and hence its hash, is the same in the CRD and in exports).
    #[serde(default)]
    pub namespace: String,
    /// Name of the subject.
    pub name: String,
    /// UID of the subject, when it existed at the time of the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

// The CRD types mirror the core's receipt field for field: the CRD needs a schema, and the core
// must not depend on Kubernetes or schemars. These conversions are the one bridge between them,
// exact both ways (see the round-trip tests), used wherever a Receipt object is written or read.

impl From<crate::receipts::Action> for ReceiptAction {
    fn from(action: crate::receipts::Action) -> Self {
        use crate::receipts::Action as A;
        match action {
            A::Spawn => Self::Spawn,
            A::Terminate => Self::Terminate,
            A::Scale => Self::Scale,
            A::Migrate => Self::Migrate,
            A::Evict => Self::Evict,
            A::Allocate => Self::Allocate,
            A::Configure => Self::Configure,
            A::Checkpoint => Self::Checkpoint,
            A::Bind => Self::Bind,
        }
    }
}

impl From<ReceiptAction> for crate::receipts::Action {
    fn from(action: ReceiptAction) -> Self {
        use ReceiptAction as A;
        match action {
            A::Spawn => Self::Spawn,
            A::Terminate => Self::Terminate,
            A::Scale => Self::Scale,
            A::Migrate => Self::Migrate,
            A::Evict => Self::Evict,
            A::Allocate => Self::Allocate,
            A::Configure => Self::Configure,
            A::Checkpoint => Self::Checkpoint,
            A::Bind => Self::Bind,
        }
    }
}

impl From<crate::receipts::SubjectRef> for SubjectRef {
    fn from(s: crate::receipts::SubjectRef) -> Self {
        Self {
            api_version: s.api_version,
            kind: s.kind,
            namespace: s.namespace,
            name: s.name,
            uid: s.uid,
        }
    }
}

impl From<SubjectRef> for crate::receipts::SubjectRef {
    fn from(s: SubjectRef) -> Self {
        Self {
            api_version: s.api_version,
            kind: s.kind,
            namespace: s.namespace,
            name: s.name,
            uid: s.uid,
        }
    }
}

impl From<crate::receipts::Level> for VerificationLevel {
    fn from(level: crate::receipts::Level) -> Self {
        match level {
            crate::receipts::Level::None => Self::None,
            crate::receipts::Level::Sample => Self::Sample,
            crate::receipts::Level::FullAudit => Self::FullAudit,
        }
    }
}

impl From<VerificationLevel> for crate::receipts::Level {
    fn from(level: VerificationLevel) -> Self {
        match level {
            VerificationLevel::None => Self::None,
            VerificationLevel::Sample => Self::Sample,
            VerificationLevel::FullAudit => Self::FullAudit,
        }
    }
}

/// A sequence number one side cannot hold: the CRD's `int64` is signed, the core's is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receipt sequence {0} is outside 0..=9223372036854775807")]
pub struct SequenceOutOfRange(pub i128);

impl TryFrom<&crate::receipts::Receipt> for ReceiptSpec {
    type Error = SequenceOutOfRange;

    fn try_from(r: &crate::receipts::Receipt) -> Result<Self, Self::Error> {
        Ok(Self {
            sequence: i64::try_from(r.sequence).map_err(|_| SequenceOutOfRange(i128::from(r.sequence)))?,
            action: r.action.into(),
            subject: r.subject.clone().into(),
            decision: r.decision.clone(),
            inputs_digest: r.inputs_digest.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
            signature: r.signature.clone(),
            key_id: r.key_id.clone(),
            time: r.time.clone(),
            level: r.level.into(),
        })
    }
}

impl TryFrom<ReceiptSpec> for crate::receipts::Receipt {
    type Error = SequenceOutOfRange;

    fn try_from(s: ReceiptSpec) -> Result<Self, Self::Error> {
        Ok(Self {
            sequence: u64::try_from(s.sequence).map_err(|_| SequenceOutOfRange(i128::from(s.sequence)))?,
            action: s.action.into(),
            subject: s.subject.into(),
            decision: s.decision,
            inputs_digest: s.inputs_digest,
            prev_hash: s.prev_hash,
            hash: s.hash,
            signature: s.signature,
            key_id: s.key_id,
            time: s.time,
            level: s.level.into(),
        })
    }
}

#[cfg(test)]
mod conversion_tests {
    use super::*;
    use crate::receipts::chain::ChainBuilder;
    use crate::receipts::signing::Signer;
    use crate::receipts::{Action, Level, Receipt, ReceiptDraft};

    const ACTIONS: [Action; 9] = [
        Action::Spawn,
        Action::Terminate,
        Action::Scale,
        Action::Migrate,
        Action::Evict,
        Action::Allocate,
        Action::Configure,
        Action::Checkpoint,
        Action::Bind,
    ];

    fn sealed() -> Vec<Receipt> {
        let mut chain = ChainBuilder::genesis(Signer::from_seed([3; 32]));
        // Checkpoints are sealed by the chain itself (`ChainBuilder::checkpoint`), not as drafts.
        ACTIONS
            .iter()
            .filter(|a| **a != Action::Checkpoint)
            .zip([Level::FullAudit, Level::Sample, Level::None].iter().cycle())
            .enumerate()
            .map(|(i, (action, level))| {
                chain
                    .seal(ReceiptDraft {
                        action: *action,
                        subject: crate::receipts::SubjectRef {
                            api_version: "mom.hypersync.io/v1alpha1".into(),
                            kind: "GeometricAgent".into(),
                            namespace: if i % 2 == 0 { "team-a".into() } else { String::new() },
                            name: format!("agent-{i}"),
                            uid: (i % 3 == 0).then(|| format!("uid-{i}")),
                        },
                        decision: serde_json::json!({"kind": "test.sum", "output": {"sum": i}, "x": [1.5, null]}),
                        inputs_digest: crate::receipts::inputs_digest(&serde_json::json!({"i": i})).unwrap(),
                        time: "2026-12-03T09:00:00Z".into(),
                        level: *level,
                    })
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_action_and_level_converts_to_the_crd_and_back_unchanged() {
        for a in ACTIONS {
            let crd = ReceiptAction::from(a);
            assert_eq!(Action::from(crd), a);
            // Same spelling on the wire.
            assert_eq!(serde_json::to_value(crd).unwrap(), serde_json::to_value(a).unwrap());
        }
        for l in [Level::None, Level::Sample, Level::FullAudit] {
            let crd = VerificationLevel::from(l);
            assert_eq!(Level::from(crd), l);
            assert_eq!(serde_json::to_value(crd).unwrap(), serde_json::to_value(l).unwrap());
        }
    }

    #[test]
    fn a_sealed_receipt_round_trips_through_the_crd_spec_with_the_same_json() {
        for r in sealed() {
            let spec = ReceiptSpec::try_from(&r).unwrap();
            assert_eq!(
                serde_json::to_string(&spec).unwrap(),
                serde_json::to_string(&r).unwrap(),
                "the CRD spec and the core receipt must serialise alike"
            );
            assert_eq!(Receipt::try_from(spec).unwrap(), r);
        }
    }

    #[test]
    fn a_sequence_the_other_side_cannot_hold_is_refused_naming_it() {
        let mut r = sealed().remove(0);
        r.sequence = u64::MAX;
        let e = ReceiptSpec::try_from(&r).unwrap_err();
        assert!(e.to_string().contains("18446744073709551615"), "{e}");
        let mut spec = ReceiptSpec::try_from(&sealed()[0]).unwrap();
        spec.sequence = -1;
        assert_eq!(Receipt::try_from(spec).unwrap_err(), SequenceOutOfRange(-1));
    }
}
