//! The receipt writer: the one place the operator turns an action into a sealed, signed
//! `Receipt` object. Only the leader calls it.
//!
//! - Key: an Ed25519 seed in the Secret the MomConfig names in `spec.verification.signingKey`
//!   (default `<namespace>/mom-receipt-signing-key`; generated from the OS's randomness when
//!   absent); its public key is published in the ConfigMap `<namespace>/mom-receipt-public-keys`,
//!   which `mom verify --cluster` trusts by default. A changed key is handed over in the chain
//!   (a `receipts.key_rotation` receipt signed by the outgoing key), see [`keys`].
//! - Chain: on first use (and after a refused or conflicting write) the writer lists every
//!   Receipt, orders them by sequence and resumes the chain from the last checkpoint (or the
//!   start), so after a crash or failover it continues from the last persisted receipt with no
//!   gap and no fork.
//! - Unknown outcomes (a create that timed out after `--receipt-write-timeout-seconds`, a 5xx, a
//!   dropped connection, a 409): the writer reads the object under that name; holding the same
//!   sequence, hash and signature, it was its own create and counts as stored. Otherwise the
//!   sealed receipt stays unconfirmed and is sent again byte for byte before anything new is
//!   sealed (no re-list, and never a second version of a sequence); the actions wait meanwhile.
//!   Another receipt under that name means a second writer: the chain is reloaded.
//! - Levels: `none` writes nothing; `sample` writes a deterministic sample (by draft hash);
//!   `full_audit` writes every action, and the caller acts only after `record` returned Ok — a
//!   receipt that could not be persisted means the action is not taken.
//! - Group commit: concurrent actions are sealed as one batch; a batch of several receipts is
//!   first written to the journal ConfigMap `<namespace>/mom-receipt-journal`, then its Receipt
//!   objects are created concurrently. A leader killed between those creates leaves the journal,
//!   and the next one re-creates the missing receipts from it before writing anything, so the
//!   chain has no hole.

mod journal;
mod keys;
mod write_ahead;

pub use journal::{journal_text, parse_journal};
pub use keys::{KEY_SOURCE_ANNOTATION, KeySource, KeyState, parse_seed};
pub use write_ahead::{Intent, Withheld};

use std::collections::BTreeMap;

use kube::api::{Api, PostParams};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, Notify, oneshot};

use super::crd::Receipt as ReceiptObject;
use super::crd::momconfig::VerificationLevel;
use crate::receipts::chain::{ChainBuilder, ChainHead, SamplingPolicy};
use crate::receipts::signing::Signer;
use crate::receipts::{Action, Level, Receipt, ReceiptDraft, ReceiptError, SubjectRef};

use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
    #[error("signing key Secret {0}: {1}")]
    Key(String, String),
    /// The chain's current key cannot be found to sign the hand-over to the configured one.
    #[error("signing key hand-over: {0}")]
    KeyHandover(String),
    #[error("receipt {0} in the cluster cannot be read: {1}")]
    Stored(String, String),
    #[error("receipt not persisted: {0}")]
    NotPersisted(String),
    #[error("receipt refused: {0}")]
    Refused(String),
    /// The object named for this sequence holds another receipt: a second writer sealed it.
    #[error(
        "receipt {sequence}: {namespace}/{name} holds a different receipt (hash {stored_hash}, ours {hash}); another writer sealed this sequence"
    )]
    Conflict {
        sequence: u64,
        namespace: String,
        name: String,
        hash: String,
        stored_hash: String,
    },
}

impl From<StoreError> for WriteError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Api(e) => WriteError::Api(e),
            StoreError::Unreadable(place, why) => WriteError::Stored(place, why),
        }
    }
}

pub use super::view::Recording;

pub struct ReceiptWriter {
    client: kube::Client,
    namespace: String,
    chain: Mutex<Option<ChainBuilder>>,
    head: std::sync::RwLock<Option<ChainHead>>,
    /// The newest stored checkpoint, for MomConfig `status.lastCheckpoint`.
    last_checkpoint: std::sync::RwLock<Option<super::crd::momconfig::CheckpointRef>>,
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
    /// Receipts written since the newest checkpoint (as far as this process knows).
    since_checkpoint: AtomicU64,
    /// Woken after every persisted receipt (the checkpointer waits on it).
    written: Notify,
    /// Drafts waiting for the next batch (see [`ReceiptWriter::record`]).
    queue: std::sync::Mutex<Vec<Queued>>,
    /// The newest failed write: when, and why (for the MomConfig `ReceiptsWritable` condition).
    failure: std::sync::Mutex<Option<(std::time::Instant, String)>>,
    /// Stored receipts the writer does not continue from (not signed by a trusted key), as of
    /// the last load (for the MomConfig `ReceiptsTrusted` condition and an Event).
    foreign: std::sync::Mutex<Vec<ForeignReceipt>>,
    /// How long a Receipt create may take before its outcome counts as unknown.
    write_timeout: std::time::Duration,
    /// Receipts sealed and sent whose storing is not confirmed (a create that timed out, a 5xx,
    /// a dropped connection), oldest first, with their namespace. The in-memory head is already
    /// past them; each is sent again byte for byte before anything new is sealed, so no
    /// sequence is ever sealed twice with different content (resealing one whose first create
    /// landed late is how a chain forks under an overloaded apiserver).
    unconfirmed: std::sync::Mutex<Vec<(Receipt, String)>>,
    /// Per GeometricAgent or OrchestrationStrategy uid: the newest generation known to carry
    /// the spec its newest `agent.change` / `strategy.change` receipt records, and that spec's
    /// digest. Rebuilt from the stored chain at every load (so a new leader knows what the chain
    /// says) and kept up as this writer seals change receipts (and as the agent controller
    /// decides on specs sampling left out).
    recorded_specs: std::sync::Mutex<std::collections::HashMap<String, (i64, String)>>,
    /// See [`Self::spec_recording`].
    spec_recording: tokio::sync::Mutex<()>,
    /// Signing keys this process has read (key id → signer): a changed key is handed over by
    /// the outgoing one, which may no longer be in its Secret.
    held_keys: std::sync::Mutex<BTreeMap<String, Signer>>,
    /// The signing key as of the last look (for the MomConfig `SigningKeyReady` condition).
    key_state: std::sync::Mutex<Option<keys::KeyState>>,
}

/// The default of [`ReceiptWriter::with_write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A stored Receipt object that is not part of the writer's chain, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignReceipt {
    pub namespace: String,
    pub name: String,
    /// Its claimed sequence (`None` when the object cannot be read as a receipt).
    pub sequence: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for ForeignReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.sequence {
            Some(seq) => write!(f, "{}/{} (sequence {seq}): {}", self.namespace, self.name, self.reason),
            None => write!(f, "{}/{}: {}", self.namespace, self.name, self.reason),
        }
    }
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

/// The subject of a GeometricAgent's receipts (spawn, terminate, scale).
pub fn agent_subject(agent: &super::crd::GeometricAgent) -> SubjectRef {
    use kube::{Resource as _, ResourceExt as _};
    SubjectRef {
        api_version: super::crd::GeometricAgent::api_version(&()).into_owned(),
        kind: super::crd::GeometricAgent::kind(&()).into_owned(),
        namespace: agent.namespace().unwrap_or_default(),
        name: agent.name_any(),
        uid: agent.uid(),
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
            last_checkpoint: std::sync::RwLock::new(None),
            metrics: None,
            since_checkpoint: AtomicU64::new(0),
            written: Notify::new(),
            queue: std::sync::Mutex::new(Vec::new()),
            failure: std::sync::Mutex::new(None),
            foreign: std::sync::Mutex::new(Vec::new()),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            unconfirmed: std::sync::Mutex::new(Vec::new()),
            recorded_specs: std::sync::Mutex::default(),
            spec_recording: tokio::sync::Mutex::default(),
            held_keys: std::sync::Mutex::new(BTreeMap::new()),
            key_state: std::sync::Mutex::new(None),
        }
    }

    /// How long a Receipt create may take before its outcome counts as unknown (default 10 s).
    pub fn with_write_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Stored receipts left out of the chain at the last load (see [`ForeignReceipt`]).
    pub fn foreign_receipts(&self) -> Vec<ForeignReceipt> {
        self.foreign.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Whether `namespace/name` is held by a foreign receipt (the writer then stores its own
    /// receipt of that sequence under another name, see [`receipt_object_name`]).
    /// Where a persisted receipt is stored: its object's name (as [`Self::create_receipt`] chose
    /// it), sequence and hash.
    pub fn reference(&self, receipt: &Receipt, namespace: &str) -> super::crd::agent::ReceiptRef {
        let taken = self.name_taken(namespace, &receipt_object_name(receipt, false));
        super::crd::agent::ReceiptRef {
            name: receipt_object_name(receipt, taken),
            sequence: receipt.sequence as i64,
            hash: receipt.hash.clone(),
        }
    }

    /// The newest checkpoint known to be stored (written by this writer or found on loading).
    pub fn last_checkpoint(&self) -> Option<super::crd::momconfig::CheckpointRef> {
        self.last_checkpoint.read().ok().and_then(|c| c.clone())
    }

    fn note_checkpoint(&self, receipt: &Receipt) {
        if receipt.action != Action::Checkpoint {
            return;
        }
        let Ok(cp) = crate::receipts::chain::CheckpointDecision::from_receipt(receipt) else {
            return;
        };
        if let Ok(mut last) = self.last_checkpoint.write() {
            *last = Some(super::crd::momconfig::CheckpointRef {
                sequence: cp.tree_size as i64 - 1,
                merkle_root: cp.root_hash,
                time: receipt.time.clone(),
            });
        }
    }

    fn name_taken(&self, namespace: &str, name: &str) -> bool {
        self.foreign
            .lock()
            .map(|f| f.iter().any(|x| x.namespace == namespace && x.name == name))
            .unwrap_or(false)
    }

    /// The receipts the writer continues from: every stored one signed by a key it trusts (its
    /// own, and those published in `mom-receipt-public-keys`, e.g. a rotated predecessor), in
    /// sequence order. The rest are remembered as foreign and logged (count and the first few).
    async fn trusted_chain(&self, signer: &Signer) -> Result<Vec<Receipt>, WriteError> {
        let keys = self.trust_set(signer).await?;
        let (readable, unreadable) = super::store::stored_objects_lenient(&self.client).await?;
        let tagged = readable.into_iter().map(|(ns, name, r)| ((ns, name), r)).collect();
        let (trusted, foreign) = crate::receipts::provenance::split_trusted(tagged, &keys);
        let mut report: Vec<ForeignReceipt> = foreign
            .into_iter()
            .map(|((namespace, name), r, why)| ForeignReceipt {
                namespace,
                name,
                sequence: Some(r.sequence),
                reason: why.to_string(),
            })
            .chain(unreadable.into_iter().map(|(namespace, name, why)| ForeignReceipt {
                namespace,
                name,
                sequence: None,
                reason: format!("not a readable receipt: {why}"),
            }))
            .collect();
        report.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        if !report.is_empty() {
            let first: Vec<String> = report.iter().take(3).map(ToString::to_string).collect();
            tracing::warn!(
                count = report.len(),
                first = %first.join("; "),
                "stored receipts not signed by a trusted key are ignored for chaining"
            );
        }
        if let Ok(mut f) = self.foreign.lock() {
            *f = report;
        }
        Ok(trusted.into_iter().map(|(_, r)| r).collect())
    }

    /// The operator's namespace (where chain-level receipts are stored).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Receipts persisted since the newest checkpoint.
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint.load(Ordering::Relaxed)
    }

    /// The newest write failure if it happened within `window`.
    pub fn recent_failure(&self, window: std::time::Duration) -> Option<String> {
        let failure = self.failure.lock().ok()?;
        failure
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= window)
            .map(|(_, why)| why.clone())
    }

    fn note_failure(&self, error: &WriteError) {
        tracing::warn!(%error, "receipt write failed");
        if let Ok(mut failure) = self.failure.lock() {
            *failure = Some((std::time::Instant::now(), error.to_string()));
        }
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
        // A checkpoint covers stored receipts only: earlier unconfirmed ones first.
        self.confirm_unconfirmed(&mut guard).await?;
        let Some(builder) = guard.as_mut() else {
            return Err(WriteError::NotPersisted(
                "the receipt chain is being reloaded after a failed write".into(),
            ));
        };
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
        if let Err(e) = self.create_receipt(&receipt, &self.namespace).await {
            self.note_failure(&e);
            if refused_for_sure(&e) || matches!(e, WriteError::Conflict { .. }) {
                *guard = None;
            } else {
                // Its fate is unknown: it stands, and is sent again before anything else.
                builder.commit(&receipt)?;
                self.since_checkpoint.store(0, Ordering::Relaxed);
                if let Ok(mut u) = self.unconfirmed.lock() {
                    u.push((receipt, self.namespace.clone()));
                }
            }
            return Err(e);
        }
        builder.commit(&receipt)?;
        self.since_checkpoint.store(0, Ordering::Relaxed);
        if let Ok(mut h) = self.head.write() {
            *h = builder.head().cloned();
        }
        self.note_checkpoint(&receipt);
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

    /// What the chain records of the spec of agent or strategy `uid`: the newest generation
    /// known to carry the spec of its newest `agent.change` / `strategy.change` receipt, and
    /// that spec's digest (see
    /// [`crate::decisions::config_change::recorded_spec`]). Loads the chain first when
    /// this writer has none loaded (a new process, or after [`Self::reset`]: the agent
    /// controller resets the writer when it finds it no longer leads, and a failed write
    /// drops the chain).
    pub async fn recorded_spec(&self, uid: &str) -> Result<Option<(i64, String)>, WriteError> {
        {
            let mut guard = self.chain.lock().await;
            if guard.is_none() {
                *guard = Some(self.load().await?);
            }
        }
        Ok(self.recorded_specs.lock().ok().and_then(|m| m.get(uid).cloned()))
    }

    /// What this writer holds of `uid`'s recorded spec, without loading the chain (see
    /// [`Self::recorded_spec`]): what the last loaded chain and the receipts written since
    /// say (kept across [`Self::reset`]; empty before the first load). For a fast check on
    /// every reconcile: it takes no lock a receipt write holds.
    pub fn known_spec(&self, uid: &str) -> Option<(i64, String)> {
        self.recorded_specs.lock().ok().and_then(|m| m.get(uid).cloned())
    }

    /// Notes that `generation` of agent or strategy `uid` carries the spec its newest change
    /// receipt records (for an agent, a change of `replicas` alone), so it is not compared again.
    pub fn same_spec_at(&self, uid: &str, generation: i64) {
        if let Ok(mut m) = self.recorded_specs.lock()
            && let Some(entry) = m.get_mut(uid)
        {
            entry.0 = entry.0.max(generation);
        }
    }

    /// Notes `generation` of agent or strategy `uid` with the spec digest `digest` as the one decided
    /// on (recorded, or left out by sampling), until the next load of the chain.
    pub fn decided_spec(&self, uid: &str, generation: i64, digest: String) {
        if let Ok(mut m) = self.recorded_specs.lock() {
            let entry = m.entry(uid.to_string()).or_insert((generation, digest.clone()));
            if generation >= entry.0 {
                *entry = (generation, digest);
            }
        }
    }

    /// Held while a spec change is compared with the chain and recorded (the agent controller's
    /// strategy records), so two reconciles do not record one generation twice and neither
    /// acts before the receipt is written.
    pub async fn spec_recording(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.spec_recording.lock().await
    }

    /// Keeps [`Self::recorded_spec`] current over a receipt now stored.
    fn note_recorded_spec(&self, receipt: &Receipt) {
        if let Some((uid, generation, digest)) = crate::decisions::config_change::recorded_spec(&receipt.decision)
            && let Ok(mut m) = self.recorded_specs.lock()
        {
            m.insert(uid, (generation, digest));
        }
    }

    /// Forgets the in-memory chain (e.g. after losing leadership); the next write reloads it.
    pub async fn reset(&self) {
        let mut chain = self.chain.lock().await;
        *chain = None;
        self.take_unconfirmed();
    }

    fn take_unconfirmed(&self) -> Vec<(Receipt, String)> {
        self.unconfirmed
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default()
    }

    /// Counts a receipt now known to be stored and moves the published head over it.
    fn confirmed(&self, receipt: &Receipt) {
        self.note_recorded_spec(receipt);
        if let Some(metrics) = &self.metrics {
            metrics.receipt_written(receipt.action.as_str(), receipt.sequence);
        }
        if let Ok(mut h) = self.head.write() {
            *h = Some(ChainHead {
                sequence: receipt.sequence,
                hash: receipt.hash.clone(),
            });
        }
        if receipt.action == Action::Checkpoint {
            self.since_checkpoint.store(0, Ordering::Relaxed);
            self.note_checkpoint(receipt);
        } else {
            self.since_checkpoint.fetch_add(1, Ordering::Relaxed);
        }
        self.written.notify_one();
    }

    /// Sends every unconfirmed receipt again, byte for byte and in order, until each is seen
    /// stored. On the first that is still not confirmed, the rest wait for the next write and
    /// nothing new may be sealed (an error says which sequence holds the chain). A receipt
    /// refused for good, or a sequence holding another writer's receipt, drops the in-memory
    /// chain: the next write reloads it from what is stored.
    async fn confirm_unconfirmed(&self, guard: &mut Option<ChainBuilder>) -> Result<(), WriteError> {
        let pending = self.take_unconfirmed();
        for (i, (receipt, namespace)) in pending.iter().enumerate() {
            if let Err(e) = self.store_receipt(receipt, namespace).await {
                self.note_failure(&e);
                if refused_for_sure(&e) || matches!(e, WriteError::Conflict { .. }) {
                    tracing::error!(sequence = receipt.sequence, error = %e, "an unconfirmed receipt cannot be stored as sealed; reloading the chain");
                    *guard = None;
                } else if let Ok(mut u) = self.unconfirmed.lock() {
                    *u = pending[i..].to_vec();
                }
                return Err(WriteError::NotPersisted(format!(
                    "receipt {} (sealed earlier) is not confirmed stored, so nothing is sealed after it yet: {e}",
                    receipt.sequence
                )));
            }
            tracing::info!(
                sequence = receipt.sequence,
                "an unconfirmed receipt is now confirmed stored"
            );
            self.confirmed(receipt);
        }
        Ok(())
    }

    async fn load(&self) -> Result<ChainBuilder, WriteError> {
        // What is stored is the truth from here on.
        self.take_unconfirmed();
        // The key the MomConfig names, and the one the stored chain is signed with now: when
        // they differ, the chain continues with the outgoing key for one hand-over receipt.
        let incoming = self.signer().await?;
        let mut stored = self.trusted_chain(&incoming).await?;
        let trusted = self.trust_set(&incoming).await?;
        if self.replay_journal(&stored, &trusted).await? > 0 {
            stored = self.trusted_chain(&incoming).await?;
        }
        let outgoing = match crate::receipts::rotation::key_after(&stored) {
            Some(current) if current != incoming.key_id() => match self.outgoing_signer(&current, &incoming).await {
                Ok(s) => Some(s),
                Err(e) => {
                    self.note_key(Err(e.to_string()));
                    return Err(e);
                }
            },
            _ => None,
        };
        let signer = outgoing.clone().unwrap_or_else(|| incoming.clone());
        let last_checkpoint = stored.iter().rposition(|r| r.action == Action::Checkpoint);
        if let Some(i) = last_checkpoint {
            self.note_checkpoint(&stored[i]);
        }
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
        if let Ok(mut specs) = self.recorded_specs.lock() {
            specs.clear();
            for (uid, generation, digest) in stored
                .iter()
                .filter_map(|r| crate::decisions::config_change::recorded_spec(&r.decision))
            {
                specs.insert(uid, (generation, digest));
            }
        }
        tracing::info!(receipts = stored.len(), head = ?builder.head().map(|h| h.sequence), "receipt chain loaded");
        let mut builder = builder;
        if outgoing.is_some() {
            self.hand_over(&mut builder, &incoming).await?;
        }
        Ok(builder)
    }

    /// Seals and persists a receipt for an action about to be taken. Returns `Ok(None)` when the
    /// level says not to record it. On `Err`, the caller must not act at `full_audit` (the
    /// receipt may or may not have been persisted: a write-ahead receipt announces an intent).
    ///
    /// Group commit: concurrent callers queue their drafts; whoever holds the chain lock seals
    /// everything queued as one batch and persists it (see [`Self::persist_batch`]), so a burst
    /// of N actions costs about two apiserver round trips instead of N one after another.
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
            level: Level::from(recording.level),
        };
        let policy = SamplingPolicy {
            rate_ppm: (recording.sample_rate.clamp(0.0, 1.0) * 1e6).round() as u32,
        };
        if recording.level == VerificationLevel::Sample && !crate::receipts::chain::is_sampled(&draft, &policy)? {
            return Ok(None);
        }
        let namespace = if subject.namespace.is_empty() {
            self.namespace.clone()
        } else {
            subject.namespace.clone()
        };
        let (done, mut outcome) = oneshot::channel();
        self.queue
            .lock()
            .map_err(|_| WriteError::NotPersisted("the receipt queue is poisoned".into()))?
            .push(Queued { draft, namespace, done });
        let mut guard = self.chain.lock().await;
        // The previous lock holder may have committed this draft with its batch: it delivers
        // every outcome before releasing the lock, so the draft is either done or still queued.
        match outcome.try_recv() {
            Ok(result) => return result.map(Some),
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(WriteError::NotPersisted("the batch writer went away".into()));
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(
            &mut *self
                .queue
                .lock()
                .map_err(|_| WriteError::NotPersisted("the receipt queue is poisoned".into()))?,
        );
        self.persist_batch(&mut guard, batch).await;
        drop(guard);
        match outcome.await {
            Ok(result) => result.map(Some),
            Err(_) => Err(WriteError::NotPersisted("the batch writer went away".into())),
        }
    }

    /// Seals `batch` in queue order after the current head and persists it, delivering each
    /// draft's outcome. One draft: one create. Several: the sealed batch is first written to
    /// the journal ConfigMap (one write, so a crash between the receipts' creates leaves no
    /// hole: the next leader re-creates the missing ones from the journal before anything else),
    /// then every Receipt object is created concurrently. Only the longest persisted prefix
    /// succeeds: an action never runs while an earlier receipt is missing. After a failure the
    /// chain is reloaded (replaying the journal) on the next write, unless the apiserver
    /// plainly refused every receipt of the batch (then nothing moved).
    async fn persist_batch(&self, guard: &mut Option<ChainBuilder>, batch: Vec<Queued>) {
        if batch.is_empty() {
            return;
        }
        if guard.is_none() {
            match self.load().await {
                Ok(b) => *guard = Some(b),
                Err(e) => {
                    self.note_failure(&e);
                    let reason = e.to_string();
                    let mut batch = batch.into_iter();
                    if let Some(first) = batch.next() {
                        let _ = first.done.send(Err(e));
                    }
                    for q in batch {
                        let _ = q.done.send(Err(WriteError::NotPersisted(reason.clone())));
                    }
                    return;
                }
            }
        }
        if let Err(e) = self.confirm_unconfirmed(guard).await {
            let reason = e.to_string();
            for q in batch {
                let _ = q.done.send(Err(WriteError::NotPersisted(reason.clone())));
            }
            return;
        }
        let Some(builder) = guard.as_mut() else {
            // An unconfirmed receipt could not be stored as sealed: the next write reloads.
            for q in batch {
                let _ = q.done.send(Err(WriteError::NotPersisted(
                    "the receipt chain is being reloaded after a failed write".into(),
                )));
            }
            return;
        };
        // Seal on a scratch copy: the real head moves only over what was persisted.
        let mut scratch = builder.clone();
        let mut sealed: Vec<(Receipt, String, Outcome)> = Vec::new();
        for q in batch {
            // A caller that gave up (its task was cancelled) will not act: nothing to record.
            if q.done.is_closed() {
                continue;
            }
            match scratch.prepare(q.draft).and_then(|r| scratch.commit(&r).map(|()| r)) {
                Ok(r) => sealed.push((r, q.namespace, q.done)),
                Err(e) => {
                    let _ = q.done.send(Err(e.into()));
                }
            }
        }
        if sealed.is_empty() {
            return;
        }
        if sealed.len() > 1 {
            let entries: Vec<(&Receipt, &str)> = sealed.iter().map(|(r, ns, _)| (r, ns.as_str())).collect();
            if let Err(e) = self.write_journal(&entries).await {
                self.note_failure(&e);
                let reason = e.to_string();
                for (_, _, done) in sealed {
                    let _ = done.send(Err(WriteError::NotPersisted(format!("journal: {reason}"))));
                }
                return;
            }
        }
        let creates = sealed.iter().map(|(r, ns, _)| self.store_receipt(r, ns));
        let results = futures::future::join_all(creates).await;
        let persisted = results.iter().take_while(|r| r.is_ok()).count();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            self.note_failure(e);
        }
        let unknown_fates_only = results.iter().all(|r| {
            r.as_ref()
                .is_err_and(|e| !refused_for_sure(e) && !matches!(e, WriteError::Conflict { .. }))
                || r.is_ok()
        });
        if persisted == sealed.len() {
            *builder = scratch;
        } else if results.iter().all(|r| r.as_ref().is_err_and(refused_for_sure)) {
            // The apiserver refused every one of them: nothing moved and the head stays; no
            // need to list the whole chain again on each retry of a refused action.
        } else if unknown_fates_only {
            // Timeouts, 5xx, dropped connections: the sealed receipts stand (some may be stored
            // already) and are sent again byte for byte before anything new is sealed. No
            // re-list, and no second version of any of these sequences.
            *builder = scratch;
            // They stand: an `agent.change` among them is what the chain records (a retried
            // reconcile must not seal a second one for the same spec).
            for (r, _, _) in &sealed[persisted..] {
                self.note_recorded_spec(r);
            }
            if let Ok(mut u) = self.unconfirmed.lock() {
                *u = sealed[persisted..]
                    .iter()
                    .map(|(r, ns, _)| (r.clone(), ns.clone()))
                    .collect();
            }
        } else {
            // A refusal past a stored receipt, or another writer's receipt at one of these
            // sequences: reload (and replay the journal) before the next write.
            *guard = None;
        }
        let mut head = None;
        for (i, ((receipt, _, done), result)) in sealed.into_iter().zip(results).enumerate() {
            if i < persisted {
                self.note_recorded_spec(&receipt);
                if let Some(metrics) = &self.metrics {
                    metrics.receipt_written(receipt.action.as_str(), receipt.sequence);
                }
                head = Some(ChainHead {
                    sequence: receipt.sequence,
                    hash: receipt.hash.clone(),
                });
                let _ = done.send(Ok(receipt));
            } else {
                let error = match result {
                    Err(e) => e,
                    Ok(()) => WriteError::NotPersisted(format!(
                        "receipt {} was written but an earlier receipt of its batch was not",
                        receipt.sequence
                    )),
                };
                let _ = done.send(Err(error));
            }
        }
        if persisted > 0 {
            if let (Ok(mut h), Some(head)) = (self.head.write(), head) {
                *h = Some(head);
            }
            self.since_checkpoint.fetch_add(persisted as u64, Ordering::Relaxed);
            self.written.notify_one();
        }
    }

    /// Stores a sealed receipt in `namespace` (its subject's) or, when that namespace refuses
    /// it for good — 403 (a quota, a namespace being deleted, a denying webhook), 404 (no such
    /// namespace) or 422 (a ValidatingAdmissionPolicy's default denial) — in the operator's namespace. A receipt's place is not part of what is
    /// hashed and `mom verify --cluster` reads every namespace, so the chain stays whole; without
    /// the fallback a refused receipt would leave a hole under the batch receipts sealed after it.
    async fn store_receipt(&self, receipt: &Receipt, namespace: &str) -> Result<(), WriteError> {
        match self.create_receipt(receipt, namespace).await {
            Err(WriteError::Api(kube::Error::Api(s)))
                if matches!(s.code, 403 | 404 | 422) && namespace != self.namespace =>
            {
                tracing::warn!(sequence = receipt.sequence, namespace, reason = %s.message,
                    operator_namespace = %self.namespace, "namespace refused the receipt; storing it in the operator's namespace");
                self.create_receipt(receipt, &self.namespace).await.map_err(|fallback| {
                    let message = format!(
                        "namespace {namespace} refused receipt {}: {}; and so did {}: {}",
                        receipt.sequence,
                        s.message,
                        self.namespace,
                        match &fallback {
                            WriteError::Api(kube::Error::Api(f)) => f.message.clone(),
                            other => other.to_string(),
                        }
                    );
                    if refused_for_sure(&fallback) {
                        WriteError::Refused(message)
                    } else {
                        WriteError::NotPersisted(message)
                    }
                })
            }
            other => other,
        }
    }

    /// Creates the Receipt object for a sealed receipt (in `namespace`).
    async fn create_receipt(&self, receipt: &Receipt, namespace: &str) -> Result<(), WriteError> {
        let mut object = receipt_object(receipt, namespace)?;
        let plain = receipt_object_name(receipt, false);
        if self.name_taken(namespace, &plain) {
            object.metadata.name = Some(receipt_object_name(receipt, true));
        }
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<ReceiptObject> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams {
            field_manager: Some("mom-operator".into()),
            ..Default::default()
        };
        let error = match tokio::time::timeout(self.write_timeout, api.create(&params, &object)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => WriteError::Api(e),
            Err(_) => WriteError::NotPersisted(format!(
                "creating {namespace}/{name} took longer than {:.1} s",
                self.write_timeout.as_secs_f64()
            )),
        };
        if refused_for_sure(&error) {
            return Err(error);
        }
        // The outcome is unknown (a timeout, a 5xx, a dropped connection) or the name is taken
        // (409, e.g. by this very receipt's earlier create whose answer was lost): look.
        match tokio::time::timeout(self.write_timeout, api.get_opt(&name)).await {
            Ok(Ok(Some(stored))) => match stored_as(&stored.spec, receipt) {
                StoredAs::Ours => {
                    tracing::info!(sequence = receipt.sequence, %namespace, %name, %error,
                        "the create failed, but the receipt is stored as sealed: it is ours");
                    Ok(())
                }
                StoredAs::Other => Err(WriteError::Conflict {
                    sequence: receipt.sequence,
                    namespace: namespace.to_string(),
                    name,
                    hash: receipt.hash.clone(),
                    stored_hash: stored.spec.hash.clone(),
                }),
            },
            _ => Err(error),
        }
    }
}

/// Whether a failed create certainly persisted nothing: the apiserver answered with a client
/// error other than a conflict (someone else holds that sequence) or throttling.
fn refused_for_sure(error: &WriteError) -> bool {
    match error {
        WriteError::Api(kube::Error::Api(s)) => (400..500).contains(&s.code) && s.code != 409 && s.code != 429,
        WriteError::Refused(_) => true,
        _ => false,
    }
}

/// What a stored Receipt object is, compared with a receipt the writer sealed.
#[derive(Debug, PartialEq, Eq)]
enum StoredAs {
    /// The same sealed receipt (same sequence, hash and signature): the writer's own create.
    Ours,
    /// Anything else under that name.
    Other,
}

fn stored_as(stored: &crate::operator::crd::ReceiptSpec, receipt: &Receipt) -> StoredAs {
    let same = u64::try_from(stored.sequence).ok() == Some(receipt.sequence)
        && stored.hash == receipt.hash
        && stored.signature == receipt.signature;
    if same { StoredAs::Ours } else { StoredAs::Other }
}

/// Where a queued draft's outcome is delivered.
type Outcome = oneshot::Sender<Result<Receipt, WriteError>>;

/// A draft waiting for the batch that persists it.
struct Queued {
    draft: ReceiptDraft,
    namespace: String,
    done: Outcome,
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

/// The name of the object holding `receipt`: `receipt-<sequence>`, or, when a foreign receipt
/// already holds that name (`taken`), `receipt-<sequence>-<first 8 hex digits of its hash>`.
/// Names are only addresses: verification orders receipts by their signed sequence.
pub fn receipt_object_name(receipt: &Receipt, taken: bool) -> String {
    if taken {
        let short: String = receipt.hash.chars().take(8).collect();
        format!("receipt-{:010}-{short}", receipt.sequence)
    } else {
        format!("receipt-{:010}", receipt.sequence)
    }
}

/// The `Receipt` object holding a sealed receipt, named by its sequence number.
pub fn receipt_object(receipt: &Receipt, namespace: &str) -> Result<ReceiptObject, WriteError> {
    let spec = crate::operator::crd::ReceiptSpec::try_from(receipt)
        .map_err(|e| WriteError::Stored(format!("receipt {}", receipt.sequence), e.to_string()))?;
    let mut object = ReceiptObject::new(&receipt_object_name(receipt, false), spec);
    object.metadata.namespace = Some(namespace.to_string());
    object.metadata.labels = Some(BTreeMap::from([
        (
            crate::labels::RECEIPT_ACTION_LABEL.to_string(),
            receipt.action.as_str().to_string(),
        ),
        (
            crate::labels::RECEIPT_SUBJECT_LABEL.to_string(),
            receipt.subject.name.chars().take(63).collect(),
        ),
    ]));
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_receipt_is_ours_only_when_sequence_hash_and_signature_all_match() {
        let ours = crate::receipts::demo::demo_chain(&Signer::from_seed([7; 32]), 3, 0).unwrap();
        let theirs = crate::receipts::demo::demo_chain(&Signer::from_seed([8; 32]), 3, 0).unwrap();
        let spec = |r: &Receipt| crate::operator::crd::ReceiptSpec::try_from(r).unwrap();
        assert_eq!(stored_as(&spec(&ours[1]), &ours[1]), StoredAs::Ours);
        // Another writer's receipt at the same sequence, or ours at another one, is not.
        assert_eq!(stored_as(&spec(&theirs[1]), &ours[1]), StoredAs::Other);
        assert_eq!(stored_as(&spec(&ours[2]), &ours[1]), StoredAs::Other);
        let mut forged = spec(&ours[1]);
        forged.signature = spec(&theirs[1]).signature;
        assert_eq!(stored_as(&forged, &ours[1]), StoredAs::Other);
    }

    #[test]
    fn only_a_plain_refusal_counts_as_nothing_persisted() {
        let api = |code: u16| {
            WriteError::Api(kube::Error::Api(
                kube::core::Status::failure("refused", "Invalid")
                    .with_code(code)
                    .boxed(),
            ))
        };
        assert!(refused_for_sure(&api(422)));
        assert!(refused_for_sure(&api(403)));
        assert!(refused_for_sure(&WriteError::Refused("both namespaces".into())));
        // Someone else wrote that sequence, throttling, a server error: the state is unknown.
        assert!(!refused_for_sure(&api(409)));
        assert!(!refused_for_sure(&api(429)));
        assert!(!refused_for_sure(&api(500)));
        assert!(!refused_for_sure(&WriteError::NotPersisted("timeout".into())));
    }
}
