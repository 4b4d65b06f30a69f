//! Leader-only receipt housekeeping: periodic checkpoints, the tenants' checkpoint bundles, and
//! `configure` receipts for MomConfig changes.
//!
//! - Checkpoints: every `every_receipts` receipts or `interval` (whichever comes first, and only
//!   when something was written since the last one) the writer seals a checkpoint receipt: a
//!   signed Merkle tree head over every receipt before it, stored in the operator's namespace.
//! - Bundles: after each checkpoint, every namespace holding receipts gets (server-side apply)
//!   the ConfigMap [`BUNDLE_CONFIGMAP`]: `checkpoint.json` (the checkpoint receipt),
//!   `public-keys` (the signing keys, hex, one a line) and one `tenant.<tenant>.json` per tenant
//!   with agents there — a `receipts::tenant::TenantBundle` with the inclusion proofs of that
//!   tenant's receipts in the namespace. The namespace is the read boundary: the Receipt objects
//!   themselves already live there, so a tenant reading its ConfigMap learns nothing new about
//!   anyone else. `mom verify --tenant-bundle NAMESPACE|FILE` checks it offline.
//! - Configure receipts: when the MomConfig `default` changes (a new uid or generation), one
//!   `configure` receipt records the new spec. The last recorded (uid, generation) is read back
//!   from the stored receipts at the start of every term, so a restart or failover does not
//!   record the same generation twice. A change is recorded unless both the old and the new
//!   level are `none` (turning auditing off is itself audited).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::context::{Context, LeaderLoop, LoopError};
use super::crd::momconfig::{ACTIVE_NAME, VerificationLevel};
use super::crd::{GeometricAgent, MomConfig, Receipt as ReceiptObject};
use super::receipts::{ReceiptWriter, Recording, WriteError};
use super::store::{BUNDLE_CONFIGMAP, PUBLIC_KEYS_CONFIGMAP};
use crate::receipts::chain::CheckpointDecision;
use crate::receipts::tenant::{PartialTree, build_bundle};
use crate::receipts::{Action, Receipt, SubjectRef};

/// Data budget of one bundle ConfigMap (the apiserver's limit is 1 MiB).
pub const MAX_CONFIGMAP_BYTES: usize = 900 * 1024;
/// Bundles are published at most this often (each publication lists the whole chain).
pub const PUBLISH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Tenant of receipts whose agent no longer exists.
pub const UNATTRIBUTED: &str = "unattributed";

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

/// The ConfigMap data key of a tenant's bundle: `tenant.<name>.json`, with any character a
/// ConfigMap key may not hold replaced by `_`.
pub fn bundle_key(tenant: &str) -> String {
    let clean: String = tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("tenant.{clean}.json")
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
            WriteError::Key(..) => "key",
            WriteError::Stored(..) => "stored",
            WriteError::NotPersisted(_) => "not_persisted",
            WriteError::Refused(_) => "refused",
        }
    }
}

impl LeaderLoop for Checkpointer {
    const NAME: &'static str = "checkpoints";
    type Error = WriteError;

    fn period(&self) -> Duration {
        Duration::from_secs(1)
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
                        match prune_receipts(client, self.settings.keep_last).await {
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

/// What one retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Receipt objects deleted.
    pub receipts: usize,
    /// Sequence of the first receipt kept (a checkpoint).
    pub first_kept: Option<u64>,
    /// Namespaces (of subjects) that held pruned receipts and hold none now.
    pub emptied_namespaces: Vec<String>,
}

/// Retention: folds old receipts into the checkpoint that stands for them and deletes them
/// ([`crate::receipts::retention::split`]: the kept chain starts at a checkpoint, so
/// `mom verify --cluster` still checks it whole, and the checkpoint's signed tree head still
/// proves any exported copy of a pruned receipt). Export first (`mom verify --cluster
/// --export FILE`) to keep their content. Deletes only what the policy selects; a receipt
/// already gone is not an error.
pub async fn prune_receipts(client: &kube::Client, keep_last: u64) -> Result<Pruned, WriteError> {
    let stored = super::store::stored_objects(client).await?;
    let chain: Vec<Receipt> = stored.iter().map(|(_, _, r)| r.clone()).collect();
    let split = crate::receipts::retention::split(&chain, &crate::receipts::retention::RetentionPolicy { keep_last });
    if split.pruned.is_empty() {
        return Ok(Pruned::default());
    }
    let cut = split.kept.first().map(|r| r.sequence);
    let mut out = Pruned {
        first_kept: cut,
        ..Default::default()
    };
    let mut touched = BTreeSet::new();
    for (ns, name, receipt) in stored.iter().filter(|(_, _, r)| cut.is_some_and(|c| r.sequence < c)) {
        let namespaced: Api<ReceiptObject> = Api::namespaced(client.clone(), ns);
        match namespaced.delete(name, &Default::default()).await {
            Ok(_) => out.receipts += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        touched.insert(receipt.subject.namespace.clone());
    }
    let remaining: BTreeSet<&str> = split.kept.iter().map(|r| r.subject.namespace.as_str()).collect();
    out.emptied_namespaces = touched
        .into_iter()
        .filter(|ns| !ns.is_empty() && !remaining.contains(ns.as_str()))
        .collect();
    Ok(out)
}

/// Deletes the bundle ConfigMap of namespaces whose receipts were all pruned (it would name
/// them as missing). Best effort: logged.
async fn retire_bundles(client: &kube::Client, namespaces: &[String]) {
    for ns in namespaces {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.delete(BUNDLE_CONFIGMAP, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => tracing::warn!(namespace = %ns, error = %err, "stale checkpoint bundle not removed"),
        }
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

/// Whether MomConfig (uid, generation) `key` at `level` needs a `configure` receipt, given the
/// newest one recorded `(uid, generation, level)`: not when that generation (or a later one of
/// the same object) is recorded, nor when auditing was off and stays off.
pub fn config_change_to_record(
    previous: Option<&(String, i64, Option<String>)>,
    key: &(String, i64),
    level: VerificationLevel,
) -> bool {
    if previous.is_some_and(|(uid, generation, _)| *uid == key.0 && *generation >= key.1) {
        return false;
    }
    let was_off = previous.is_none_or(|(_, _, l)| l.as_deref() == Some("none"));
    !(level == VerificationLevel::None && was_off)
}

/// The newest `configure` receipt for the MomConfig `default`: (uid, generation, level).
async fn last_recorded_config(
    client: &kube::Client,
    namespace: &str,
) -> Result<Option<(String, i64, Option<String>)>, WriteError> {
    let api: Api<ReceiptObject> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("{}=configure", crate::labels::RECEIPT_ACTION_LABEL)))
        .await?;
    let newest = list
        .items
        .iter()
        .filter(|r| r.spec.subject.kind == MomConfig::kind(&()) && r.spec.subject.name == ACTIVE_NAME)
        .max_by_key(|r| r.spec.sequence);
    Ok(newest.map(|r| {
        let d = &r.spec.decision;
        (
            d["uid"].as_str().unwrap_or_default().to_string(),
            d["generation"].as_i64().unwrap_or(-1),
            d["spec"]["verification"]["level"].as_str().map(str::to_string),
        )
    }))
}

/// Records a `configure` receipt when the MomConfig `default` has a (uid, generation) not yet
/// recorded. `seen` caches the last one handled in this term.
async fn record_config_change(
    client: &kube::Client,
    writer: &ReceiptWriter,
    seen: &mut Option<(String, i64)>,
) -> Result<(), WriteError> {
    let api: Api<MomConfig> = Api::all(client.clone());
    let cfg = match api.get_opt(ACTIVE_NAME).await {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return Ok(()),
        // The CRD may not be installed (yet).
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let key = (cfg.uid().unwrap_or_default(), cfg.metadata.generation.unwrap_or(0));
    if seen.as_ref() == Some(&key) {
        return Ok(());
    }
    let previous = last_recorded_config(client, writer.namespace()).await?;
    if !config_change_to_record(previous.as_ref(), &key, cfg.spec.verification.level) {
        *seen = Some(key);
        return Ok(());
    }
    let spec = serde_json::to_value(&cfg.spec).map_err(|e| WriteError::Stored(ACTIVE_NAME.into(), e.to_string()))?;
    let subject = SubjectRef {
        api_version: MomConfig::api_version(&()).into_owned(),
        kind: MomConfig::kind(&()).into_owned(),
        namespace: String::new(),
        name: ACTIVE_NAME.into(),
        uid: cfg.uid(),
    };
    let decision = serde_json::json!({
        "kind": "momconfig.change",
        "uid": key.0,
        "generation": key.1,
        "previousGeneration": previous.as_ref().filter(|p| p.0 == key.0).map(|p| p.1),
        "spec": spec,
    });
    let recording = Recording {
        level: VerificationLevel::FullAudit,
        sample_rate: 1.0,
    };
    writer
        .record(recording, Action::Configure, subject, decision, &spec)
        .await?;
    tracing::info!(generation = key.1, "configure receipt written for MomConfig default");
    *seen = Some(key);
    Ok(())
}

/// Publishes the bundles of the newest stored checkpoint; returns the number of namespaces
/// written and the checkpoint's tree size. With `since` (the tree size of the last published
/// checkpoint), only namespaces holding a receipt at or after it are written: the others keep
/// their bundle, whose proofs stay valid.
pub async fn publish_bundles(
    client: &kube::Client,
    operator_namespace: &str,
    since: Option<u64>,
) -> Result<(usize, Option<u64>), WriteError> {
    let stored = super::store::stored_chain(client).await?;
    let Some(checkpoint) = stored.iter().rev().find(|r| r.action == Action::Checkpoint) else {
        return Ok((0, None));
    };
    let size = CheckpointDecision::from_receipt(checkpoint)?.tree_size;
    if since == Some(size) {
        return Ok((0, Some(size)));
    }
    let mut tree = PartialTree::from_chain(&stored, size);
    let agents: Api<GeometricAgent> = Api::all(client.clone());
    let tenants: BTreeMap<(String, String), String> = agents
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|a| ((a.namespace().unwrap_or_default(), a.name_any()), a.spec.tenant.clone()))
        .collect();
    let mut groups: BTreeMap<&str, BTreeMap<String, Vec<&Receipt>>> = BTreeMap::new();
    for r in stored.iter().filter(|r| r.sequence < size) {
        let ns = r.subject.namespace.as_str();
        if ns.is_empty() || ns == operator_namespace {
            continue;
        }
        // A bind receipt's subject is the pod; its tenant is its agent's.
        let owner = match (
            r.subject.kind.as_str(),
            r.decision.get("agent").and_then(|a| a.as_str()),
        ) {
            ("Pod", Some(agent)) => agent.to_string(),
            _ => r.subject.name.clone(),
        };
        let tenant = tenants
            .get(&(ns.to_string(), owner))
            .cloned()
            .unwrap_or_else(|| UNATTRIBUTED.to_string());
        groups.entry(ns).or_default().entry(tenant).or_default().push(r);
    }
    let keys: Vec<String> = Api::<ConfigMap>::namespaced(client.clone(), operator_namespace)
        .get_opt(PUBLIC_KEYS_CONFIGMAP)
        .await?
        .and_then(|c| c.data)
        .map(|d| d.into_values().collect())
        .unwrap_or_default();
    let checkpoint_json =
        serde_json::to_string(checkpoint).map_err(|e| WriteError::Stored("checkpoint".into(), e.to_string()))?;
    let mut published = 0;
    for (ns, by_tenant) in &groups {
        let newest = by_tenant.values().flatten().map(|r| r.sequence).max().unwrap_or(0);
        if since.is_some_and(|s| newest < s) {
            continue;
        }
        let budget = MAX_CONFIGMAP_BYTES.saturating_sub(checkpoint_json.len() + 1024) / by_tenant.len().max(1);
        let mut data = BTreeMap::from([
            ("checkpoint.json".to_string(), checkpoint_json.clone()),
            ("public-keys".to_string(), keys.join("\n")),
        ]);
        for (tenant, mine) in by_tenant {
            match build_bundle(&mut tree, checkpoint, tenant, ns, mine, budget) {
                Ok(bundle) => {
                    let text = serde_json::to_string(&bundle)
                        .map_err(|e| WriteError::Stored("bundle".into(), e.to_string()))?;
                    data.insert(bundle_key(tenant), text);
                }
                Err(err) => {
                    tracing::warn!(namespace = %ns, tenant = %tenant, error = %err, "no checkpoint bundle");
                }
            }
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(BUNDLE_CONFIGMAP.into()),
                namespace: Some(ns.to_string()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "mom".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        match api
            .patch(
                BUNDLE_CONFIGMAP,
                &PatchParams::apply("mom-operator").force(),
                &Patch::Apply(&cm),
            )
            .await
        {
            Ok(_) => published += 1,
            // A namespace being deleted (its receipts still listed) is skipped.
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 || s.code == 409 => {
                tracing::debug!(namespace = %ns, error = %s.message, "bundle ConfigMap not written");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((published, Some(size)))
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
    fn a_config_generation_is_recorded_once_and_turning_auditing_off_is_recorded() {
        let key = ("u1".to_string(), 3);
        let full = Some("full_audit".to_string());
        // Nothing recorded yet: record unless auditing is off.
        assert!(config_change_to_record(None, &key, VerificationLevel::FullAudit));
        assert!(!config_change_to_record(None, &key, VerificationLevel::None));
        // The same or a later generation of the same object is already recorded (a restart).
        assert!(!config_change_to_record(
            Some(&("u1".into(), 3, full.clone())),
            &key,
            VerificationLevel::FullAudit
        ));
        assert!(!config_change_to_record(
            Some(&("u1".into(), 4, full.clone())),
            &key,
            VerificationLevel::FullAudit
        ));
        // A new generation, or the object re-created (new uid, generation restarts).
        assert!(config_change_to_record(
            Some(&("u1".into(), 2, full.clone())),
            &key,
            VerificationLevel::FullAudit
        ));
        assert!(config_change_to_record(
            Some(&("u0".into(), 9, full.clone())),
            &key,
            VerificationLevel::FullAudit
        ));
        // Switching auditing off is itself recorded; staying off is not.
        assert!(config_change_to_record(
            Some(&("u1".into(), 2, full)),
            &key,
            VerificationLevel::None
        ));
        assert!(!config_change_to_record(
            Some(&("u1".into(), 2, Some("none".into()))),
            &key,
            VerificationLevel::None
        ));
    }

    #[test]
    fn only_a_leader_with_uncovered_receipts_seals_a_final_checkpoint() {
        assert!(final_checkpoint_due(true, 1));
        assert!(!final_checkpoint_due(true, 0));
        assert!(!final_checkpoint_due(false, 7));
    }

    #[test]
    fn bundle_keys_hold_only_characters_a_configmap_key_allows() {
        assert_eq!(bundle_key("acme"), "tenant.acme.json");
        assert_eq!(bundle_key("team a/b"), "tenant.team_a_b.json");
    }
}
