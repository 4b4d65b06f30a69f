//! The receipt writer: the one place the operator turns an action into a sealed, signed
//! `Receipt` object. Only the leader calls it.
//!
//! - Key: an Ed25519 seed in the Secret `<namespace>/mom-receipt-signing-key` (generated from the
//!   OS's randomness when absent); its public key is published in the ConfigMap
//!   `<namespace>/mom-receipt-public-keys`, which `mom verify --cluster` trusts by default.
//! - Chain: on first use (and after any failed write) the writer lists every Receipt, orders them
//!   by sequence and resumes the chain from the last checkpoint (or the start), so after a crash
//!   or failover it continues from the last persisted receipt with no gap and no fork.
//! - Levels: `none` writes nothing; `sample` writes a deterministic sample (by draft hash);
//!   `full_audit` writes every action, and the caller acts only after `record` returned Ok — a
//!   receipt that could not be persisted means the action is not taken.

use std::collections::BTreeMap;
use std::io::Read as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, Notify};

use super::crd::Receipt as ReceiptObject;
use super::crd::momconfig::VerificationLevel;
use crate::receipts::chain::{ChainBuilder, ChainHead, SamplingPolicy};
use crate::receipts::signing::Signer;
use crate::receipts::{Action, Level, Receipt, ReceiptDraft, ReceiptError, SubjectRef};

pub const KEY_SECRET: &str = "mom-receipt-signing-key";
pub const KEY_FIELD: &str = "ed25519-seed";
pub const PUBLIC_KEYS_CONFIGMAP: &str = "mom-receipt-public-keys";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
    #[error("signing key Secret {0}: {1}")]
    Key(String, String),
    #[error("receipt {0} in the cluster cannot be read: {1}")]
    Stored(String, String),
}

/// What the writer is configured to record (from the MomConfig `default`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recording {
    pub level: VerificationLevel,
    pub sample_rate: f64,
}

impl Default for Recording {
    fn default() -> Self {
        Self {
            level: VerificationLevel::FullAudit,
            sample_rate: 1.0,
        }
    }
}

pub struct ReceiptWriter {
    client: kube::Client,
    namespace: String,
    chain: Mutex<Option<ChainBuilder>>,
    head: std::sync::RwLock<Option<ChainHead>>,
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
    /// Receipts written since the newest checkpoint (as far as this process knows).
    since_checkpoint: AtomicU64,
    /// Woken after every persisted receipt (the checkpointer waits on it).
    written: Notify,
}

/// The subject of checkpoint receipts: the chain itself (stored in the operator's namespace, so
/// they outlive any tenant namespace).
pub fn checkpoint_subject() -> SubjectRef {
    SubjectRef {
        api_version: format!("{}/{}", super::crd::GROUP, super::crd::VERSION),
        kind: "ReceiptChain".into(),
        namespace: String::new(),
        name: "default".into(),
        uid: None,
    }
}

fn core_level(level: VerificationLevel) -> Level {
    match level {
        VerificationLevel::None => Level::None,
        VerificationLevel::Sample => Level::Sample,
        VerificationLevel::FullAudit => Level::FullAudit,
    }
}

/// The current time as RFC 3339 (operator side: the core never reads the clock).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl ReceiptWriter {
    pub fn new(client: kube::Client, namespace: String) -> Self {
        Self {
            client,
            namespace,
            chain: Mutex::new(None),
            head: std::sync::RwLock::new(None),
            metrics: None,
            since_checkpoint: AtomicU64::new(0),
            written: Notify::new(),
        }
    }

    /// The operator's namespace (where chain-level receipts are stored).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Receipts persisted since the newest checkpoint.
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint.load(Ordering::Relaxed)
    }

    /// Resolves after the next persisted receipt (or at once if one was written since the last call).
    pub async fn wait_for_write(&self) {
        self.written.notified().await;
    }

    /// Seals and persists a checkpoint (signed Merkle tree head over every receipt so far).
    /// `Ok(None)` when there is nothing new to checkpoint or the Merkle state is unknown (a
    /// stored chain with holes that cannot be bridged; logged).
    pub async fn checkpoint(&self) -> Result<Option<Receipt>, WriteError> {
        let mut guard = self.chain.lock().await;
        if guard.is_none() {
            *guard = Some(self.load().await?);
        }
        let Some(builder) = guard.as_mut() else { return Ok(None) };
        if builder.head().is_none() || self.since_checkpoint() == 0 {
            return Ok(None);
        }
        if builder.frontier().is_none() {
            tracing::warn!(
                "no checkpoint: the Merkle state of the stored chain is unknown (holes since the last checkpoint)"
            );
            return Ok(None);
        }
        let receipt = builder.prepare_checkpoint(checkpoint_subject(), now_rfc3339())?;
        let object = receipt_object(&receipt, &self.namespace)?;
        let api: Api<ReceiptObject> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PostParams {
            field_manager: Some("mom-operator".into()),
            ..Default::default()
        };
        if let Err(e) = api.create(&params, &object).await {
            *guard = None;
            return Err(e.into());
        }
        builder.commit(&receipt)?;
        self.since_checkpoint.store(0, Ordering::Relaxed);
        if let Ok(mut h) = self.head.write() {
            *h = builder.head().cloned();
        }
        if let Some(metrics) = &self.metrics {
            metrics.receipt_written(receipt.action.as_str(), receipt.sequence);
        }
        tracing::info!(sequence = receipt.sequence, "checkpoint written");
        Ok(Some(receipt))
    }

    /// Counts written receipts and exposes the chain head in these metrics.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<super::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The newest persisted receipt, for MomConfig status.
    pub fn head(&self) -> Option<ChainHead> {
        self.head.read().ok().and_then(|h| h.clone())
    }

    /// Forgets the in-memory chain (e.g. after losing leadership); the next write reloads it.
    pub async fn reset(&self) {
        *self.chain.lock().await = None;
    }

    async fn signer(&self) -> Result<Signer, WriteError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = format!("{}/{KEY_SECRET}", self.namespace);
        let signer = match secrets.get_opt(KEY_SECRET).await? {
            Some(secret) => {
                let bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEY_FIELD))
                    .ok_or_else(|| WriteError::Key(name.clone(), format!("has no data key {KEY_FIELD}")))?;
                let text = String::from_utf8_lossy(&bytes.0).trim().to_string();
                Signer::from_hex(&text).map_err(|e| WriteError::Key(name.clone(), e.to_string()))?
            }
            None => {
                let mut seed = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut seed))
                    .map_err(|e| WriteError::Key(name.clone(), format!("cannot read randomness: {e}")))?;
                let signer = Signer::from_seed(seed);
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(KEY_SECRET.into()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        KEY_FIELD.to_string(),
                        ByteString(signer.secret_hex().into_bytes()),
                    )])),
                    ..Default::default()
                };
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => signer,
                    // Another replica generated it first: use theirs.
                    Err(kube::Error::Api(s)) if s.code == 409 => return Box::pin(self.signer()).await,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.publish_public_key(&signer).await?;
        Ok(signer)
    }

    async fn publish_public_key(&self, signer: &Signer) -> Result<(), WriteError> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut data = maps
            .get_opt(PUBLIC_KEYS_CONFIGMAP)
            .await?
            .and_then(|c| c.data)
            .unwrap_or_default();
        if data.get(signer.key_id()).map(String::as_str) == Some(signer.public_hex().as_str()) {
            return Ok(());
        }
        data.insert(signer.key_id().to_string(), signer.public_hex());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(PUBLIC_KEYS_CONFIGMAP.into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let params = kube::api::PatchParams::apply("mom-operator").force();
        maps.patch(PUBLIC_KEYS_CONFIGMAP, &params, &kube::api::Patch::Apply(&cm))
            .await?;
        Ok(())
    }

    /// Every receipt in the cluster, ordered by sequence.
    pub async fn stored_chain(client: &kube::Client) -> Result<Vec<Receipt>, WriteError> {
        let api: Api<ReceiptObject> = Api::all(client.clone());
        let mut out = Vec::new();
        for obj in api.list(&ListParams::default()).await?.items {
            let name = format!(
                "{}/{}",
                obj.metadata.namespace.clone().unwrap_or_default(),
                obj.metadata.name.clone().unwrap_or_default()
            );
            let value = serde_json::to_value(&obj.spec).map_err(|e| WriteError::Stored(name.clone(), e.to_string()))?;
            let receipt: Receipt =
                serde_json::from_value(value).map_err(|e| WriteError::Stored(name, e.to_string()))?;
            out.push(receipt);
        }
        out.sort_by_key(|r| r.sequence);
        Ok(out)
    }

    async fn load(&self) -> Result<ChainBuilder, WriteError> {
        let signer = self.signer().await?;
        let stored = Self::stored_chain(&self.client).await?;
        let last_checkpoint = stored.iter().rposition(|r| r.action == Action::Checkpoint);
        let start = last_checkpoint.unwrap_or(0);
        let since = stored.len() - last_checkpoint.map_or(0, |i| i + 1);
        self.since_checkpoint.store(since as u64, Ordering::Relaxed);
        let builder = match ChainBuilder::resume(signer.clone(), &stored[start..]) {
            Ok(b) => b,
            // Holes (receipts deleted with their namespace) can often be bridged: a deleted
            // receipt's hash is its successor's prevHash, and checkpoints carry their frontier.
            Err(err) if recovered_frontier(&stored).is_some() => {
                let (head, tree) =
                    recovered_frontier(&stored).ok_or(WriteError::Stored("chain".into(), err.to_string()))?;
                tracing::warn!(error = %err, head = head.sequence, "stored receipt chain has holes; Merkle state recovered, continuing after its newest receipt");
                ChainBuilder::with_frontier(signer, head, tree)?
            }
            // A stored chain with a hole or an edit (e.g. receipts deleted with their namespace)
            // must not stop the operator: continue after the newest persisted receipt and leave
            // the damage for `mom verify` to name. Checkpoints need the Merkle state, so none
            // can be written until the chain is whole again.
            Err(err) => match stored.last() {
                Some(last) => {
                    tracing::warn!(error = %err, head = last.sequence, "stored receipt chain is broken; continuing after its newest receipt");
                    ChainBuilder::after(
                        signer,
                        ChainHead {
                            sequence: last.sequence,
                            hash: last.hash.clone(),
                        },
                    )
                }
                None => return Err(err.into()),
            },
        };
        if let Ok(mut h) = self.head.write() {
            *h = builder.head().cloned();
        }
        tracing::info!(receipts = stored.len(), head = ?builder.head().map(|h| h.sequence), "receipt chain loaded");
        Ok(builder)
    }

    /// Seals and persists a receipt for an action about to be taken. Returns `Ok(None)` when the
    /// level says not to record it. On `Err`, nothing was persisted and, at `full_audit`, the
    /// caller must not act.
    pub async fn record(
        &self,
        recording: Recording,
        action: Action,
        subject: SubjectRef,
        decision: serde_json::Value,
        inputs: &serde_json::Value,
    ) -> Result<Option<Receipt>, WriteError> {
        if recording.level == VerificationLevel::None {
            return Ok(None);
        }
        let draft = ReceiptDraft {
            action,
            subject: subject.clone(),
            decision,
            inputs_digest: crate::receipts::inputs_digest(inputs)?,
            time: now_rfc3339(),
            level: core_level(recording.level),
        };
        let policy = SamplingPolicy {
            rate_ppm: (recording.sample_rate.clamp(0.0, 1.0) * 1e6).round() as u32,
        };
        if recording.level == VerificationLevel::Sample && !crate::receipts::chain::is_sampled(&draft, &policy)? {
            return Ok(None);
        }
        let mut guard = self.chain.lock().await;
        if guard.is_none() {
            *guard = Some(self.load().await?);
        }
        let Some(builder) = guard.as_mut() else { return Ok(None) };
        let receipt = builder.prepare(draft)?;
        let namespace = if subject.namespace.is_empty() {
            self.namespace.clone()
        } else {
            subject.namespace.clone()
        };
        let object = receipt_object(&receipt, &namespace)?;
        let api: Api<ReceiptObject> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api
            .create(
                &PostParams {
                    field_manager: Some("mom-operator".into()),
                    ..Default::default()
                },
                &object,
            )
            .await
        {
            // The stored chain may have moved (another writer, a conflict): reload next time.
            *guard = None;
            return Err(e.into());
        }
        builder.commit(&receipt)?;
        if let Ok(mut h) = self.head.write() {
            *h = builder.head().cloned();
        }
        if let Some(metrics) = &self.metrics {
            metrics.receipt_written(receipt.action.as_str(), receipt.sequence);
        }
        self.since_checkpoint.fetch_add(1, Ordering::Relaxed);
        self.written.notify_one();
        Ok(Some(receipt))
    }
}

/// The head and Merkle state of a stored chain with holes, when its receipts still determine
/// them (see `receipts::tenant::PartialTree`).
fn recovered_frontier(stored: &[Receipt]) -> Option<(ChainHead, crate::receipts::merkle::Frontier)> {
    let last = stored.last()?;
    let mut tree = crate::receipts::tenant::PartialTree::from_chain(stored, last.sequence + 1);
    let frontier = tree.frontier()?;
    Some((
        ChainHead {
            sequence: last.sequence,
            hash: last.hash.clone(),
        },
        frontier,
    ))
}

/// The `Receipt` object holding a sealed receipt, named by its sequence number.
pub fn receipt_object(receipt: &Receipt, namespace: &str) -> Result<ReceiptObject, WriteError> {
    let spec = serde_json::from_value(
        serde_json::to_value(receipt).map_err(|e| WriteError::Stored("new".into(), e.to_string()))?,
    )
    .map_err(|e| WriteError::Stored("new".into(), e.to_string()))?;
    let mut object = ReceiptObject::new(&format!("receipt-{:010}", receipt.sequence), spec);
    object.metadata.namespace = Some(namespace.to_string());
    object.metadata.labels = Some(BTreeMap::from([
        (
            "mom.hypersync.io/action".to_string(),
            receipt.action.as_str().to_string(),
        ),
        (
            "mom.hypersync.io/subject".to_string(),
            receipt.subject.name.chars().take(63).collect(),
        ),
    ]));
    Ok(object)
}
