//! Tenant bundles: after each checkpoint, every namespace holding receipts gets the ConfigMap
//! `mom-receipt-checkpoints`: the checkpoint, the signing keys and, per tenant
//! (`tenant.<name>.json`), the inclusion proofs of that tenant's receipts stored there, so a tenant
//! checks its own receipts without reading anyone else's. Bundles of namespaces left without
//! receipts are removed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};

use crate::operator::receipts::WriteError;
use crate::operator::store::{BUNDLE_CONFIGMAP, PUBLIC_KEYS_CONFIGMAP, for_each_trusted_page};
use crate::receipts::chain::CheckpointDecision;
use crate::receipts::tenant::{BundleBuilder, TreeFacts};
use crate::receipts::{Action, Receipt};

/// Data budget of one bundle ConfigMap (the apiserver's limit is 1 MiB).
pub const MAX_CONFIGMAP_BYTES: usize = 900 * 1024;

/// Bundles are published at most this often (each publication reads the whole chain once).
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
///
/// Two passes, neither holding the chain: the first reads every trusted receipt a page at a time
/// and keeps what the Merkle tree needs ([`TreeFacts`]), the newest checkpoint and which
/// namespace holds each receipt first (a copy stored elsewhere later in list order is foreign,
/// as in `receipts::provenance`), ~200 bytes per receipt; the second reads one namespace's
/// receipts at a time to build its bundle.
pub async fn publish_bundles(
    client: &kube::Client,
    operator_namespace: &str,
    since: Option<u64>,
) -> Result<(usize, Option<u64>), WriteError> {
    let trusted = crate::operator::store::published_trusted_keys(client, operator_namespace).await?;
    let mut facts = TreeFacts::default();
    let mut checkpoint: Option<Receipt> = None;
    let mut namespaces: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // (sequence, hash) → the namespace holding it first.
    let mut holder: HashMap<(u64, [u8; 32]), usize> = HashMap::new();
    for_each_trusted_page(client, None, &trusted, |page| {
        for (ns, r) in page {
            facts.observe(&r);
            let Some(hash) = crate::receipts::hex32(&r.hash) else {
                continue;
            };
            let next = namespaces.len();
            let i = *index.entry(ns).or_insert_with_key(|ns| {
                namespaces.push(ns.clone());
                next
            });
            holder.entry((r.sequence, hash)).or_insert(i);
            if r.action == Action::Checkpoint && checkpoint.as_ref().is_none_or(|c| r.sequence > c.sequence) {
                checkpoint = Some(r);
            }
        }
    })
    .await?;
    let Some(checkpoint) = checkpoint else {
        return Ok((0, None));
    };
    let size = CheckpointDecision::from_receipt(&checkpoint)?.tree_size;
    if since == Some(size) {
        return Ok((0, Some(size)));
    }
    let mut tree = facts.into_tree(size);
    // The newest receipt in the tree per namespace, which decides whether its bundle is stale.
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for (&(sequence, _), &i) in holder.iter().filter(|((s, _), _)| *s < size) {
        let ns = namespaces[i].as_str();
        if ns.is_empty() || ns == operator_namespace {
            continue;
        }
        let n = newest.entry(ns).or_insert(sequence);
        *n = (*n).max(sequence);
    }
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
    let keys: Vec<String> = Api::<ConfigMap>::namespaced(client.clone(), operator_namespace)
        .get_opt(PUBLIC_KEYS_CONFIGMAP)
        .await?
        .and_then(|c| c.data)
        .map(|d| d.into_values().collect())
        .unwrap_or_default();
    let checkpoint_json =
        serde_json::to_string(&checkpoint).map_err(|e| WriteError::Stored("checkpoint".into(), e.to_string()))?;
    let mut published = 0;
    for (ns, newest) in &newest {
        if since.is_some_and(|s| *newest < s) {
            continue;
        }
        let Some(&i) = index.get(*ns) else { continue };
        let tenant = tenants.get(*ns).cloned().unwrap_or_else(|| UNATTRIBUTED.to_string());
        let budget = MAX_CONFIGMAP_BYTES.saturating_sub(checkpoint_json.len() + 1024);
        let mut data = BTreeMap::from([
            ("checkpoint.json".to_string(), checkpoint_json.clone()),
            ("public-keys".to_string(), keys.join("\n")),
        ]);
        // The namespace's receipts are offered a page at a time: the builder holds at most one
        // bundle's worth of them, not the namespace's receipts (all of them under load).
        let built = match BundleBuilder::new(&mut tree, &checkpoint, &tenant, ns, budget) {
            Ok(mut builder) => {
                let mut failed = None;
                for_each_trusted_page(client, Some(ns), &trusted, |page| {
                    for (_, r) in page {
                        let ours = crate::receipts::hex32(&r.hash).and_then(|h| holder.get(&(r.sequence, h)));
                        if ours == Some(&i)
                            && failed.is_none()
                            && let Err(e) = builder.offer(&r)
                        {
                            failed = Some(e);
                        }
                    }
                })
                .await?;
                match failed {
                    Some(e) => Err(e),
                    None => builder.finish(),
                }
            }
            Err(e) => Err(e),
        };
        match built {
            Ok(bundle) => {
                let text =
                    serde_json::to_string(&bundle).map_err(|e| WriteError::Stored("bundle".into(), e.to_string()))?;
                data.insert(bundle_key(&tenant), text);
            }
            Err(err) => {
                tracing::warn!(namespace = %ns, tenant = %tenant, error = %err, "no checkpoint bundle");
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
