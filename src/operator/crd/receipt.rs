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
