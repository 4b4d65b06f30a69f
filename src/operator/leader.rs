//! Leader election on a `coordination.k8s.io/v1` Lease, following client-go's protocol.
//!
//! Only the Lease holder acts (creates pods, evicts, writes receipts); every replica serves the
//! extender and metrics. A candidate takes the Lease when it is free (no holder), or expired:
//! its record has not changed for `leaseDurationSeconds` as seen by this process (robust to clock
//! skew, as client-go), or its `renewTime` is older than that by the local clock. Writes use the
//! object's `resourceVersion`, so two candidates racing for one Lease cannot both win.
//! On shutdown the holder releases the Lease so a successor need not wait for expiry.

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
}

/// Runs the election loop and publishes whether this process currently leads.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: watch::Sender<bool>,
    /// The last Lease spec seen and when it was first seen (client-go's observedTime).
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        let (leading, _) = watch::channel(false);
        Self {
            api,
            settings,
            leading,
            observed: None,
        }
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
                Ok(leading) => leading,
                Err(err) => {
                    metrics.record_error(&err);
                    tracing::warn!(error = %err, "leader election attempt failed");
                    false
                }
            };
            if leading != *self.leading.borrow() {
                tracing::info!(leading, identity = %self.settings.identity, lease = %self.settings.name, "leadership changed");
            }
            self.leading.send_replace(leading);
            metrics.set_leader(leading);
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_period) => {}
                _ = shutdown.changed() => break,
            }
        }
        if *self.leading.borrow() {
            self.leading.send_replace(false);
            metrics.set_leader(false);
            self.release().await?;
            tracing::info!(lease = %self.settings.name, "released the Lease");
        }
        Ok(())
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
        let current = self.api.get_opt(&name).await.map_err(|e| self.lease_error(e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.my_spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(self.lease_error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let now = Instant::now();
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => now,
        };
        self.observed = Some((spec.clone(), observed_at));

        let i_hold = holder.as_deref() == Some(self.settings.identity.as_str());
        if !i_hold && holder.is_some() && !self.expired(&spec, observed_at, now) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if i_hold { 0 } else { 1 };
        let acquire_time = if i_hold { spec.acquire_time.clone() } else { None };
        lease.spec = Some(self.my_spec(transitions, acquire_time));
        match self.api.replace(&name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.observed = updated.spec.map(|s| (s, Instant::now()));
                Ok(true)
            }
            // Someone else wrote first: they hold it now.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.lease_error(e)),
        }
    }

    fn expired(&self, spec: &LeaseSpec, observed_at: Instant, now: Instant) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.settings.lease_duration);
        if now.duration_since(observed_at) >= duration {
            return true;
        }
        match &spec.renew_time {
            Some(renew) => {
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(renew.0);
                age.as_secs_f64() >= duration.as_secs_f64()
            }
            None => true,
        }
    }

    /// Gives the Lease up: clears the holder so a candidate can take it at once.
    async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.settings.name)
            .await
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
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
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
