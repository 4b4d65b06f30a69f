//! Leader election on a `coordination.k8s.io/v1` Lease, following client-go's protocol.
//!
//! Only the Lease holder acts (creates pods, evicts, writes receipts); every replica serves the
//! extender and metrics. A candidate takes the Lease when it is free (no holder), or expired:
//! its record (spec and `resourceVersion`) has not changed for `leaseDurationSeconds` as seen on
//! this process's monotonic clock since it first saw that record (client-go's rule). The remote
//! `renewTime` is never compared with the local wall clock, so clock skew between replicas cannot
//! make a live Lease look expired. Writes use the object's `resourceVersion`, so two candidates
//! racing for one Lease cannot both win.
//!
//! The holder stops leading once it has not renewed successfully for `renew_deadline` (shorter
//! than the Lease duration) on its monotonic clock: the `leading` channel turns false and the
//! shared [`Fence`] reports stale, so `Context::is_leader` is false even before the channel
//! is read. Every Lease request is bounded by a timeout, so a hung connection cannot hold the
//! loop past the deadline. On shutdown the holder releases the Lease so a successor need not
//! wait for expiry.
//!
//! Why hand-written rather than a crate: `kube-leader-election` (a small Lease wrapper) and
//! `kube-lease-manager` were weighed. Both would save the protocol code, but (as far as their
//! docs show) neither exposes a renew deadline separate from the Lease duration together with a
//! fence readable without an await, and `kube-leader-election` judges expiry by comparing the
//! remote `renewTime` with the local clock — the clock-skew behaviour this module avoids. The
//! protocol is ~150 lines here, its expiry and deadline rules are pure functions with unit
//! tests, and it keeps one fewer dependency to track against the `kube` version.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::Error;
use super::metrics::Metrics;
use crate::labels::LEADER_LABEL;

/// Where the Lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_period: Duration,
    /// The holder stops leading when it has not renewed for this long (below `lease_duration`).
    pub renew_deadline: Duration,
}

impl LeaseSettings {
    /// Checks `0 < renew_period < renew_deadline < lease_duration`.
    pub fn validate(&self) -> Result<(), Error> {
        validate_timings(self.renew_period, self.renew_deadline, self.lease_duration)
    }
}

/// Checks `0 < renew_period < renew_deadline < lease_duration`, naming all three values if not.
pub fn validate_timings(
    renew_period: Duration,
    renew_deadline: Duration,
    lease_duration: Duration,
) -> Result<(), Error> {
    if renew_period.is_zero() || renew_period >= renew_deadline || renew_deadline >= lease_duration {
        return Err(Error::LeaseTimings {
            renew_period,
            renew_deadline,
            lease_duration,
        });
    }
    Ok(())
}

/// When this replica last renewed the Lease (monotonic clock), shared with the loops so a
/// stale `true` in the `leading` channel is not trusted past the renew deadline.
#[derive(Debug, Clone)]
pub struct Fence {
    last_renew: Arc<Mutex<Option<Instant>>>,
    renew_deadline: Duration,
}

impl Fence {
    pub fn new(renew_deadline: Duration) -> Self {
        Self {
            last_renew: Arc::default(),
            renew_deadline,
        }
    }

    /// Records a successful acquire or renew at `at`.
    pub fn renewed(&self, at: Instant) {
        if let Ok(mut last) = self.last_renew.lock() {
            *last = Some(at);
        }
    }

    /// Forgets the last renew (the Lease was lost or released).
    pub fn clear(&self) {
        if let Ok(mut last) = self.last_renew.lock() {
            *last = None;
        }
    }

    /// When the current hold ends unless renewed, or `None` when not holding.
    pub fn deadline(&self) -> Option<Instant> {
        let last = *self.last_renew.lock().ok()?;
        last.map(|at| at + self.renew_deadline)
    }

    /// Whether a renew happened less than `renew_deadline` before `now`.
    pub fn fresh(&self, now: Instant) -> bool {
        let last = self.last_renew.lock().ok().and_then(|l| *l);
        within_deadline(last, now, self.renew_deadline)
    }
}

/// Whether the last successful renew (`None`: never, or lost) is younger than `deadline` at `now`.
pub fn within_deadline(last_renew: Option<Instant>, now: Instant, deadline: Duration) -> bool {
    match last_renew {
        Some(at) => now.saturating_duration_since(at) < deadline,
        None => false,
    }
}

/// A Lease record as observed: its spec and `resourceVersion`, and when this process first saw
/// exactly that record on its monotonic clock (client-go's `observedTime`).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub spec: LeaseSpec,
    pub resource_version: Option<String>,
    pub first_seen: Instant,
}

/// The observation after reading `spec`/`resource_version` at `now`: an unchanged record keeps
/// its first-seen instant, any change (renewTime, holder, resourceVersion) restarts it.
pub fn observe(
    previous: Option<&Observed>,
    spec: LeaseSpec,
    resource_version: Option<String>,
    now: Instant,
) -> Observed {
    let first_seen = match previous {
        Some(p) if p.spec == spec && p.resource_version == resource_version => p.first_seen,
        _ => now,
    };
    Observed {
        spec,
        resource_version,
        first_seen,
    }
}

/// Whether an observed Lease held by someone else has expired: its record has not changed for
/// its `leaseDurationSeconds` (else `default_duration`) since this process first saw it.
pub fn expired(observed: &Observed, now: Instant, default_duration: Duration) -> bool {
    let duration = observed
        .spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(default_duration);
    now.saturating_duration_since(observed.first_seen) >= duration
}

/// Runs the election loop and publishes whether this process currently leads.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: watch::Sender<bool>,
    /// The last Lease record seen and when it was first seen (client-go's observedTime).
    observed: Option<Observed>,
    fence: Fence,
}

impl LeaderElector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        let (leading, _) = watch::channel(false);
        let fence = Fence::new(settings.renew_deadline);
        Self {
            api,
            settings,
            leading,
            observed: None,
            fence,
        }
    }

    /// The fence the loops check before acting (see [`Fence::fresh`]).
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The timeout of the next Lease request: the time left before the renew deadline while
    /// holding, else the renew deadline.
    fn request_timeout(&self) -> Duration {
        match self.fence.deadline() {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => self.settings.renew_deadline,
        }
    }

    async fn bounded<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, Error> {
        let limit = self.request_timeout();
        tokio::time::timeout(limit, request)
            .await
            .map_err(|_| Error::LeaseTimeout {
                namespace: self.settings.namespace.clone(),
                name: self.settings.name.clone(),
                after: limit,
            })
    }

    /// A receiver that is `true` while this process holds the Lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Tries to acquire or renew every `renew_period` until `shutdown` turns true, then releases.
    pub async fn run(
        mut self,
        metrics: std::sync::Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        loop {
            let leading = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.fence.renewed(Instant::now());
                    true
                }
                Ok(false) => {
                    self.fence.clear();
                    false
                }
                Err(err) => {
                    metrics.record_error(&err);
                    tracing::warn!(error = %err, "leader election attempt failed");
                    // A failed renew keeps the hold until the renew deadline, as client-go.
                    let still = self.fence.fresh(Instant::now());
                    if !still && *self.leading.borrow() {
                        tracing::warn!(lease = %self.settings.name, deadline = ?self.settings.renew_deadline, "no successful renew within the renew deadline: stopping leading");
                    }
                    still
                }
            };
            self.publish(leading, &metrics);
            let deadline = self.fence.deadline().filter(|_| leading);
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_period) => {}
                _ = async { tokio::time::sleep_until(deadline.expect("guarded").into()).await }, if deadline.is_some() => {
                    tracing::warn!(lease = %self.settings.name, deadline = ?self.settings.renew_deadline, "no successful renew within the renew deadline: stopping leading");
                    self.fence.clear();
                    self.publish(false, &metrics);
                }
                _ = shutdown.changed() => break,
            }
        }
        if *self.leading.borrow() {
            self.fence.clear();
            self.leading.send_replace(false);
            metrics.set_leader(false);
            self.release().await?;
            tracing::info!(lease = %self.settings.name, "released the Lease");
        }
        Ok(())
    }

    /// Publishes the leadership after a renew attempt. Receivers are notified only when it
    /// changes: a renew (every `renew_period`) that keeps leading wakes nobody. (Notifying on
    /// every renew made the agent controller reconcile every agent every 2 s.)
    fn publish(&self, leading: bool, metrics: &Metrics) {
        let changed = self.leading.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
        if changed {
            tracing::info!(leading, identity = %self.settings.identity, lease = %self.settings.name, "leadership changed");
        }
        metrics.set_leader(leading);
    }

    fn lease_error(&self, source: kube::Error) -> Error {
        Error::Lease {
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source,
        }
    }

    fn now() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    fn my_spec(&self, transitions: i32, acquire_time: Option<MicroTime>) -> LeaseSpec {
        let now = Self::now();
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire_time.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round of the protocol; returns whether this process holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let name = self.settings.name.clone();
        let current = self
            .bounded(self.api.get_opt(&name))
            .await?
            .map_err(|e| self.lease_error(e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.my_spec(0, None)),
            };
            return match self.bounded(self.api.create(&PostParams::default(), &lease)).await? {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(self.lease_error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let now = Instant::now();
        let observed = observe(
            self.observed.as_ref(),
            spec.clone(),
            lease.metadata.resource_version.clone(),
            now,
        );
        let is_expired = expired(&observed, now, self.settings.lease_duration);
        self.observed = Some(observed);

        let i_hold = holder.as_deref() == Some(self.settings.identity.as_str());
        if !i_hold && holder.is_some() && !is_expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if i_hold { 0 } else { 1 };
        let acquire_time = if i_hold { spec.acquire_time.clone() } else { None };
        lease.spec = Some(self.my_spec(transitions, acquire_time));
        match self
            .bounded(self.api.replace(&name, &PostParams::default(), &lease))
            .await?
        {
            Ok(updated) => {
                let now = Instant::now();
                self.observed = updated
                    .spec
                    .map(|s| observe(None, s, updated.metadata.resource_version, now));
                Ok(true)
            }
            // Someone else wrote first: they hold it now.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.lease_error(e)),
        }
    }

    /// Gives the Lease up: clears the holder so a candidate can take it at once.
    async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self
            .bounded(self.api.get_opt(&self.settings.name))
            .await?
            .map_err(|e| self.lease_error(e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(Self::now());
        match self
            .bounded(self.api.replace(&self.settings.name, &PostParams::default(), &lease))
            .await?
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(self.lease_error(e)),
        }
    }
}

/// This process's pod `(namespace, name)` from the downward API (`POD_NAMESPACE`, `POD_NAME`),
/// or `None` when either is unset or empty (e.g. run outside a pod).
pub fn own_pod(namespace: Option<String>, name: Option<String>) -> Option<(String, String)> {
    let namespace = namespace.filter(|s| !s.is_empty())?;
    let name = name.filter(|s| !s.is_empty())?;
    Some((namespace, name))
}

/// The merge patch that sets the leader label (`leading`) or removes it.
pub fn leader_label_patch(leading: bool) -> serde_json::Value {
    let value = if leading {
        serde_json::Value::String("true".into())
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({ "metadata": { "labels": { LEADER_LABEL: value } } })
}

/// Keeps [`LEADER_LABEL`] on this process's pod while it leads: removes it at start-up (a
/// restarted container in the same pod must not keep it), sets it on gaining the Lease, removes
/// it on losing the Lease and at shutdown. A failed patch is retried every 5 s; a pod that does
/// not exist is reported once and left alone. Without a pod (`pod` is `None`) it does nothing.
pub async fn label_own_pod(
    client: kube::Client,
    pod: Option<(String, String)>,
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some((namespace, name)) = pod else {
        tracing::debug!("POD_NAME/POD_NAMESPACE unset: not labelling a pod as the leader");
        return;
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, &namespace);
    let patch = |want: bool| {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            pods.patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(leader_label_patch(want)),
            )
            .await
        }
    };
    let mut applied: Option<bool> = None;
    loop {
        let want = *leading.borrow_and_update();
        if applied != Some(want) {
            match patch(want).await {
                Ok(_) => {
                    tracing::info!(pod = %name, namespace = %namespace, leader = want, "leader label updated");
                    applied = Some(want);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    tracing::warn!(pod = %name, namespace = %namespace, "POD_NAME names no pod: not labelling the leader");
                    return;
                }
                Err(err) => tracing::warn!(pod = %name, error = %err, "cannot update the leader label; retrying"),
            }
        }
        let retry = applied != Some(want);
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_secs(5)), if retry => {}
        }
    }
    if applied != Some(false) {
        match patch(false).await {
            Ok(_) => tracing::info!(pod = %name, "leader label removed at shutdown"),
            Err(err) => tracing::warn!(pod = %name, error = %err, "cannot remove the leader label at shutdown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_renew_that_keeps_leading_notifies_nobody_and_a_change_does() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a valid URI"));
        let client = kube::Client::try_from(config).expect("a client needs no connection to be built");
        let settings = LeaseSettings {
            namespace: "mom-system".into(),
            name: "mom-operator-leader".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(8),
            renew_period: Duration::from_secs(2),
        };
        let elector = LeaderElector::new(client, settings);
        let metrics = Metrics::default();
        let mut rx = elector.subscribe();
        elector.publish(true, &metrics);
        assert!(rx.has_changed().unwrap(), "taking the Lease is a change");
        assert!(*rx.borrow_and_update());
        elector.publish(true, &metrics);
        elector.publish(true, &metrics);
        assert!(!rx.has_changed().unwrap(), "renewals republished an unchanged value");
        elector.publish(false, &metrics);
        assert!(rx.has_changed().unwrap(), "losing the Lease is a change");
    }

    #[test]
    fn the_leader_label_patch_sets_true_or_removes_the_label() {
        assert_eq!(
            leader_label_patch(true),
            serde_json::json!({"metadata": {"labels": {"mom.hypersync.io/leader": "true"}}})
        );
        assert_eq!(
            leader_label_patch(false),
            serde_json::json!({"metadata": {"labels": {"mom.hypersync.io/leader": null}}})
        );
    }

    fn spec(holder: &str, renew_secs: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(renew_secs).expect("a valid timestamp"),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn an_unchanged_lease_expires_only_after_its_duration_on_the_local_monotonic_clock() {
        let t0 = Instant::now();
        let first = observe(None, spec("other", 100), Some("7".into()), t0);
        // The same record seen again keeps its first-seen instant.
        let again = observe(
            Some(&first),
            spec("other", 100),
            Some("7".into()),
            t0 + Duration::from_secs(10),
        );
        assert_eq!(again.first_seen, t0);
        assert!(!expired(&again, t0 + Duration::from_secs(14), Duration::from_secs(99)));
        assert!(expired(&again, t0 + Duration::from_secs(15), Duration::from_secs(99)));
    }

    #[test]
    fn a_renewed_lease_restarts_the_observation_whatever_its_renew_time_says() {
        let t0 = Instant::now();
        let first = observe(None, spec("other", 100), Some("7".into()), t0);
        let t1 = t0 + Duration::from_secs(14);
        // A renewTime far in the past (a skewed holder clock) is still a change: not expired.
        let renewed = observe(Some(&first), spec("other", 1), Some("8".into()), t1);
        assert_eq!(renewed.first_seen, t1);
        assert!(!expired(
            &renewed,
            t0 + Duration::from_secs(20),
            Duration::from_secs(15)
        ));
        // A new resourceVersion alone (same spec) is also a change.
        let bumped = observe(
            Some(&renewed),
            spec("other", 1),
            Some("9".into()),
            t0 + Duration::from_secs(21),
        );
        assert_eq!(bumped.first_seen, t0 + Duration::from_secs(21));
        // Positive control: unchanged for the full duration does expire.
        assert!(expired(&renewed, t1 + Duration::from_secs(15), Duration::from_secs(15)));
    }

    #[test]
    fn a_lease_without_a_duration_uses_the_configured_one() {
        let t0 = Instant::now();
        let mut s = spec("other", 100);
        s.lease_duration_seconds = None;
        let seen = observe(None, s, None, t0);
        assert!(!expired(&seen, t0 + Duration::from_secs(4), Duration::from_secs(5)));
        assert!(expired(&seen, t0 + Duration::from_secs(5), Duration::from_secs(5)));
    }

    #[test]
    fn a_holder_leads_only_while_its_last_renew_is_younger_than_the_renew_deadline() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        assert!(within_deadline(Some(t0), t0 + Duration::from_secs(9), deadline));
        assert!(!within_deadline(Some(t0), t0 + Duration::from_secs(10), deadline));
        assert!(!within_deadline(None, t0, deadline));
    }

    #[test]
    fn the_fence_is_fresh_after_a_renew_and_stale_after_clear_or_the_deadline() {
        let fence = Fence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!fence.fresh(t0), "never renewed");
        fence.renewed(t0);
        assert!(fence.fresh(t0 + Duration::from_secs(1)));
        assert_eq!(fence.deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(!fence.fresh(t0 + Duration::from_secs(10)));
        fence.clear();
        assert!(!fence.fresh(t0));
        assert_eq!(fence.deadline(), None);
    }

    #[test]
    fn lease_timings_must_be_ordered_period_deadline_duration() {
        let s = Duration::from_secs;
        assert!(validate_timings(s(2), s(10), s(15)).is_ok());
        let err = validate_timings(s(2), s(15), s(15)).unwrap_err().to_string();
        assert!(
            err.contains("renew deadline (15s)") && err.contains("lease duration (15s)"),
            "{err}"
        );
        assert!(validate_timings(s(10), s(10), s(15)).is_err());
        assert!(validate_timings(s(0), s(10), s(15)).is_err());
    }

    #[test]
    fn the_own_pod_needs_both_namespace_and_name() {
        assert_eq!(
            own_pod(Some("mom-system".into()), Some("mom-0".into())),
            Some(("mom-system".into(), "mom-0".into()))
        );
        assert_eq!(own_pod(None, Some("mom-0".into())), None);
        assert_eq!(own_pod(Some("mom-system".into()), Some(String::new())), None);
        assert_eq!(own_pod(Some("mom-system".into()), None), None);
    }
}
