//! The receipt store: reads the chain as it is stored in the cluster (every `Receipt` object,
//! by sequence) and names the ConfigMaps the chain publishes. Shared by the writer, the
//! checkpointer and the CLI (`mom verify --cluster`, `mom report`), which read the chain
//! without ever holding a writer.

use kube::api::{Api, ListParams};

use super::crd::Receipt as ReceiptObject;
use crate::receipts::Receipt;

/// The Secret (operator namespace) holding the Ed25519 signing seed.
pub const KEY_SECRET: &str = "mom-receipt-signing-key";
/// The Secret's field holding the seed.
pub const KEY_FIELD: &str = "ed25519-seed";
/// The ConfigMap (operator namespace) publishing the signing keys `mom verify` trusts.
pub const PUBLIC_KEYS_CONFIGMAP: &str = "mom-receipt-public-keys";
/// The ConfigMap (operator namespace) holding the newest sealed batch until its receipts exist.
pub const JOURNAL_CONFIGMAP: &str = "mom-receipt-journal";
/// The journal ConfigMap's key.
pub const JOURNAL_KEY: &str = "batch.jsonl";
/// The ConfigMap in each namespace holding receipts: the newest checkpoint, the signing keys and
/// each tenant's inclusion proofs.
pub const BUNDLE_CONFIGMAP: &str = "mom-receipt-checkpoints";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("receipt {0} in the cluster cannot be read: {1}")]
    Unreadable(String, String),
}

/// Every receipt in the cluster, ordered by sequence.
pub async fn stored_chain(client: &kube::Client) -> Result<Vec<Receipt>, StoreError> {
    Ok(stored_objects(client)
        .await?
        .into_iter()
        .map(|(_, _, receipt)| receipt)
        .collect())
}

/// Every receipt in the cluster with the namespace and name of its object, by sequence.
pub async fn stored_objects(client: &kube::Client) -> Result<Vec<(String, String, Receipt)>, StoreError> {
    let api: Api<ReceiptObject> = Api::all(client.clone());
    let mut out = Vec::new();
    for obj in api.list(&ListParams::default()).await?.items {
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let place = format!("{namespace}/{name}");
        let receipt = Receipt::try_from(obj.spec).map_err(|e| StoreError::Unreadable(place, e.to_string()))?;
        out.push((namespace, name, receipt));
    }
    out.sort_by_key(|(_, _, r)| r.sequence);
    Ok(out)
}
