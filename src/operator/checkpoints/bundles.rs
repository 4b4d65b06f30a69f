//! Tenant bundles: after each checkpoint, every namespace holding receipts gets the ConfigMap
//! `mom-receipt-checkpoints`: the checkpoint, the signing keys and, per tenant
//! (`tenant.<name>.json`), the inclusion proofs of that tenant's receipts stored there, so a tenant
//! checks its own receipts without reading anyone else's. Bundles of namespaces left without
//! receipts are removed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};

use crate::operator::receipts::WriteError;
use crate::operator::store::{BUNDLE_CONFIGMAP, PUBLIC_KEYS_CONFIGMAP};
use crate::receipts::chain::CheckpointDecision;
use crate::receipts::tenant::{PartialTree, build_bundle};
use crate::receipts::{Action, Receipt};

/// Data budget of one bundle ConfigMap (the apiserver's limit is 1 MiB).
pub const MAX_CONFIGMAP_BYTES: usize = 900 * 1024;

/// Bundles are published at most this often (each publication lists the whole chain).
pub const PUBLISH_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Tenant of receipts whose namespace no longer exists.
pub const UNATTRIBUTED: &str = "unattributed";

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

/// Deletes the bundle ConfigMap of namespaces whose receipts were all pruned (it would name
/// them as missing). Best effort: logged.
pub(super) async fn retire_bundles(client: &kube::Client, namespaces: &[String]) {
    for ns in namespaces {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.delete(BUNDLE_CONFIGMAP, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => tracing::warn!(namespace = %ns, error = %err, "stale checkpoint bundle not removed"),
        }
    }
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
    let stored: Vec<Receipt> = crate::operator::store::trusted_objects(client, operator_namespace)
        .await?
        .into_iter()
        .map(|(_, _, r)| r)
        .collect();
    let Some(checkpoint) = stored.iter().rev().find(|r| r.action == Action::Checkpoint) else {
        return Ok((0, None));
    };
    let size = CheckpointDecision::from_receipt(checkpoint)?.tree_size;
    if since == Some(size) {
        return Ok((0, Some(size)));
    }
    let mut tree = PartialTree::from_chain(&stored, size);
    // A namespace's receipts belong to its tenant (`operator::tenancy`).
    let tenants: BTreeMap<String, String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| {
            let name = n.name_any();
            let tenant = crate::operator::tenancy::namespace_tenant(&name, n.metadata.labels.as_ref());
            (name, tenant)
        })
        .collect();
    let mut groups: BTreeMap<&str, BTreeMap<String, Vec<&Receipt>>> = BTreeMap::new();
    for r in stored.iter().filter(|r| r.sequence < size) {
        let ns = r.subject.namespace.as_str();
        if ns.is_empty() || ns == operator_namespace {
            continue;
        }
        let tenant = tenants.get(ns).cloned().unwrap_or_else(|| UNATTRIBUTED.to_string());
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
    fn bundle_keys_hold_only_characters_a_configmap_key_allows() {
        assert_eq!(bundle_key("acme"), "tenant.acme.json");
        assert_eq!(bundle_key("team a/b"), "tenant.team_a_b.json");
    }
}
