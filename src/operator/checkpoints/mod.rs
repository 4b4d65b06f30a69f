//! Leader-only receipt housekeeping: periodic checkpoints, the tenants' checkpoint bundles, and
//! `configure` receipts for MomConfig changes.
//!
//! - Checkpoints: every `every_receipts` receipts or `interval` (whichever comes first, and only
//!   when something was written since the last one) the writer seals a checkpoint receipt: a
//!   signed Merkle tree head over every receipt before it, stored in the operator's namespace.
//! - Bundles: after each checkpoint, every namespace holding receipts gets (server-side apply)
//!   the ConfigMap [`crate::operator::store::BUNDLE_CONFIGMAP`]: `checkpoint.json` (the checkpoint receipt),
//!   `public-keys` (the signing keys, hex, one a line) and one `tenant.<tenant>.json` per tenant
//!   with agents there — a `receipts::tenant::TenantBundle` with the inclusion proofs of that
//!   tenant's receipts in the namespace. The namespace is the read boundary: the Receipt objects
//!   themselves already live there, so a tenant reading its ConfigMap learns nothing new about
//!   anyone else. `mom verify --tenant-bundle NAMESPACE|FILE` checks it offline.
//! - Signing key: every 2 s the key `spec.verification.signingKey` names is read; when it is not
//!   the key the chain is signed with, the writer hands the chain over to it (see
//!   `receipts::keys`).
//! - Configure receipts: when the MomConfig `default` changes (a new uid or generation), one
//!   `configure` receipt records the new spec. The last recorded (uid, generation) is read back
//!   from the stored receipts at the start of every term, so a restart or failover does not
//!   record the same generation twice. A change is recorded unless both the old and the new
//!   level are `none` (turning auditing off is itself audited).

mod bundles;
mod configure;
mod retention;

use bundles::retire_bundles;
pub use bundles::{MAX_CONFIGMAP_BYTES, PUBLISH_MIN_INTERVAL, UNATTRIBUTED, bundle_key, publish_bundles};
pub use configure::config_change_to_record;
use configure::record_config_change;
pub use retention::{Pruned, prune_receipts};

use std::time::{Duration, Instant};

use super::context::{Context, LeaderLoop, LoopError};
use super::receipts::{ReceiptWriter, WriteError};

/// When checkpoints are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// A checkpoint after this many receipts (0 disables the count trigger).
    pub every_receipts: u64,
    /// A checkpoint at least this often while receipts are written (zero disables the timer).
    pub interval: Duration,
    /// Retention: after each checkpoint, delete the receipts before the newest checkpoint that
    /// still leaves at least this many (0 keeps every receipt); see [`prune_receipts`].
    pub keep_last: u64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self {
            every_receipts: 256,
            interval: Duration::from_secs(60),
            keep_last: 0,
        }
    }
}

/// Whether a checkpoint is due (pure; the loop supplies the elapsed time).
pub fn checkpoint_due(settings: &CheckpointSettings, since_checkpoint: u64, elapsed: Duration) -> bool {
    since_checkpoint > 0
        && ((settings.every_receipts > 0 && since_checkpoint >= settings.every_receipts)
            || (!settings.interval.is_zero() && elapsed >= settings.interval))
}

/// What the checkpoint loop hands to [`final_checkpoint`] when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishState {
    /// Tree size of the last checkpoint whose bundles were published this term.
    pub published: Option<u64>,
    /// A checkpoint (or the term's first publication) whose bundles are not published yet.
    pub pending: bool,
}

/// The checkpoint loop: every second or after a receipt is persisted (leader only) it records
/// MomConfig changes, writes a checkpoint when one is due, prunes by retention and publishes
/// the tenant bundles; run by [`super::context::run_leader_loop`], which hands it back at
/// shutdown so [`Checkpointer::publish_state`] feeds [`final_checkpoint`].
pub struct Checkpointer {
    settings: CheckpointSettings,
    last_checkpoint: Instant,
    last_config_check: Option<Instant>,
    config_seen: Option<(String, i64)>,
    publish_pending: bool,
    /// Tree size of the last published checkpoint this term (namespaces with no receipt since
    /// keep their bundle: its proofs stay valid) and when it was published.
    published: Option<u64>,
    last_publish: Option<Instant>,
}

impl Checkpointer {
    pub fn new(settings: CheckpointSettings) -> Self {
        Self {
            settings,
            last_checkpoint: Instant::now(),
            last_config_check: None,
            config_seen: None,
            publish_pending: true,
            published: None,
            last_publish: None,
        }
    }

    /// The bundle publication state for the final checkpoint.
    pub fn publish_state(&self) -> PublishState {
        PublishState {
            published: self.published,
            pending: self.publish_pending,
        }
    }
}

impl LoopError for WriteError {
    fn metric_label(&self) -> &'static str {
        match self {
            WriteError::Api(_) => "api",
            WriteError::Receipt(_) => "receipt",
            WriteError::Key(..) | WriteError::KeyHandover(_) => "key",
            WriteError::Stored(..) => "stored",
            WriteError::NotPersisted(_) => "not_persisted",
            WriteError::Refused(_) => "refused",
            WriteError::Conflict { .. } => "conflict",
        }
    }
}

impl LeaderLoop for Checkpointer {
    const NAME: &'static str = "checkpoints";
    type Error = WriteError;

    fn period(&self, _ctx: &Context) -> super::ticks::Period {
        super::ticks::Period::fixed(Duration::from_secs(1))
    }

    fn wake<'a>(&'a self, ctx: &'a Context) -> impl std::future::Future<Output = ()> + Send + 'a {
        ctx.writer.wait_for_write()
    }

    fn reset(&mut self) {
        // The next term reads back what is persisted.
        self.config_seen = None;
        self.publish_pending = true;
        self.published = None;
        self.last_checkpoint = Instant::now();
    }

    /// Each step runs even when an earlier one failed; the first failure is returned.
    async fn tick(&mut self, ctx: &Context) -> Result<(), WriteError> {
        let (client, writer) = (&ctx.client, &ctx.writer);
        let mut first_error = None;
        if self
            .last_config_check
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        {
            self.last_config_check = Some(Instant::now());
            // The key first: a configure receipt of a new signingKey is then signed by the new
            // key, after the hand-over.
            if let Err(err) = writer.sync_signing_key().await {
                tracing::warn!(error = %err, "receipt signing key not in effect");
                first_error.get_or_insert(err);
            }
            if let Err(err) = record_config_change(client, writer, &mut self.config_seen).await {
                tracing::warn!(error = %err, "configure receipt not written");
                first_error.get_or_insert(err);
            }
        }
        if checkpoint_due(
            &self.settings,
            writer.since_checkpoint(),
            self.last_checkpoint.elapsed(),
        ) {
            match writer.checkpoint().await {
                Ok(written) => {
                    self.last_checkpoint = Instant::now();
                    self.publish_pending |= written.is_some();
                    if written.is_some() && self.settings.keep_last > 0 {
                        match prune_receipts(client, writer.namespace(), self.settings.keep_last).await {
                            Ok(pruned) if pruned.receipts > 0 => {
                                // Every bundle must stop listing the pruned receipts.
                                self.published = None;
                                self.publish_pending = true;
                                retire_bundles(client, &pruned.emptied_namespaces).await;
                                tracing::info!(
                                    pruned = pruned.receipts,
                                    first_kept = pruned.first_kept,
                                    "receipts before a checkpoint pruned by retention"
                                );
                            }
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "receipt retention: pruning failed");
                                first_error.get_or_insert(err);
                            }
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "checkpoint not written");
                    first_error.get_or_insert(err);
                }
            }
        }
        // Publishing lists the whole chain: at most every PUBLISH_MIN_INTERVAL.
        if self.publish_pending && self.last_publish.is_none_or(|t| t.elapsed() >= PUBLISH_MIN_INTERVAL) {
            let t = Instant::now();
            self.last_publish = Some(t);
            match publish_bundles(client, writer.namespace(), self.published).await {
                Ok((n, size)) => {
                    self.publish_pending = false;
                    self.published = size.or(self.published);
                    tracing::info!(
                        namespaces = n,
                        ms = t.elapsed().as_millis() as u64,
                        "tenant checkpoint bundles published"
                    );
                }
                Err(err) => {
                    tracing::warn!(error = %err, "tenant checkpoint bundles not published");
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Bound of the final checkpoint (and its bundles) at shutdown.
pub const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the final checkpoint at shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalCheckpoint {
    /// This replica does not hold the Lease: the leader's chain is not its to seal.
    NotLeading,
    /// Every receipt written is already covered by a checkpoint (and its bundles published).
    NothingNew,
    /// A checkpoint at `sequence` (when one was written) and bundles in `namespaces` namespaces.
    Written { sequence: Option<u64>, namespaces: usize },
    /// The checkpoint or its bundles could not be written (the next leader covers them).
    Failed(String),
    /// It took longer than the timeout (the next leader covers what is missing).
    TimedOut,
}

/// Whether a stopping replica seals a final checkpoint: only the leader, and only over
/// receipts not yet covered by one.
pub fn final_checkpoint_due(leading: bool, since_checkpoint: u64) -> bool {
    leading && since_checkpoint > 0
}

/// At shutdown, before the Lease is released: a leader with receipts since the last
/// checkpoint seals one more and publishes its tenant bundles (also bundles of a checkpoint
/// the loop had not published yet). Bounded by `timeout`; failures are logged, never fatal.
pub async fn final_checkpoint(
    client: &kube::Client,
    writer: &ReceiptWriter,
    leading: bool,
    state: PublishState,
    timeout: Duration,
) -> FinalCheckpoint {
    if !leading {
        return FinalCheckpoint::NotLeading;
    }
    let since = writer.since_checkpoint();
    if !final_checkpoint_due(leading, since) && !state.pending {
        tracing::info!("final checkpoint: every receipt is already covered");
        return FinalCheckpoint::NothingNew;
    }
    let started = Instant::now();
    let work = async {
        let sequence = if final_checkpoint_due(leading, since) {
            writer.checkpoint().await?.map(|r| r.sequence)
        } else {
            None
        };
        let (namespaces, _) = publish_bundles(client, writer.namespace(), state.published).await?;
        Ok::<_, WriteError>(FinalCheckpoint::Written { sequence, namespaces })
    };
    let outcome = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(err)) => FinalCheckpoint::Failed(err.to_string()),
        Err(_) => FinalCheckpoint::TimedOut,
    };
    let ms = started.elapsed().as_millis() as u64;
    match &outcome {
        FinalCheckpoint::Written {
            sequence: Some(sequence),
            namespaces,
        } => tracing::info!(sequence, uncovered = since, namespaces, ms, "final checkpoint written"),
        FinalCheckpoint::Written {
            sequence: None,
            namespaces,
        } => tracing::info!(
            namespaces,
            ms,
            "final checkpoint: none needed; pending bundles published"
        ),
        FinalCheckpoint::Failed(err) => {
            tracing::warn!(error = %err, uncovered = since, ms, "final checkpoint not written; the next leader covers these receipts")
        }
        FinalCheckpoint::TimedOut => tracing::warn!(
            seconds = timeout.as_secs(),
            uncovered = since,
            "final checkpoint timed out; the next leader covers these receipts"
        ),
        FinalCheckpoint::NotLeading | FinalCheckpoint::NothingNew => {}
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_enough_receipts_or_enough_time_but_never_for_nothing() {
        let s = CheckpointSettings {
            every_receipts: 100,
            interval: Duration::from_secs(30),
            keep_last: 0,
        };
        assert!(!checkpoint_due(&s, 0, Duration::from_secs(3600)));
        assert!(!checkpoint_due(&s, 99, Duration::from_secs(29)));
        assert!(checkpoint_due(&s, 100, Duration::ZERO));
        assert!(checkpoint_due(&s, 1, Duration::from_secs(30)));
        let count_only = CheckpointSettings {
            every_receipts: 10,
            interval: Duration::ZERO,
            keep_last: 0,
        };
        assert!(!checkpoint_due(&count_only, 9, Duration::from_secs(86_400)));
        assert!(checkpoint_due(&count_only, 10, Duration::ZERO));
    }

    #[test]
    fn only_a_leader_with_uncovered_receipts_seals_a_final_checkpoint() {
        assert!(final_checkpoint_due(true, 1));
        assert!(!final_checkpoint_due(true, 0));
        assert!(!final_checkpoint_due(false, 7));
    }
}
