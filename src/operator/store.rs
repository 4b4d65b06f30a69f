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

/// Receipt objects per list request. A page is parsed and turned into compact [`Receipt`]s
/// before the next is read, so reading a chain of 20,000 receipts never holds 20,000 full API
/// objects (managed fields and all) at once. Continue tokens keep the pages one consistent
/// snapshot; a token that expired mid-read fails the read (410), and the caller retries.
pub const RECEIPT_PAGE: u32 = 200;

/// Calls `each` on every object `api` lists, `page` at a time (continue tokens keep the pages
/// one consistent snapshot), so a caller that keeps a compact form of each object never holds
/// the whole list.
pub async fn for_each_page<K, F>(api: &Api<K>, page: u32, mut each: F) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: FnMut(K),
{
    let mut params = ListParams::default().limit(page);
    loop {
        let page = api.list(&params).await?;
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Every receipt in the cluster, ordered by sequence.
pub async fn stored_chain(client: &kube::Client) -> Result<Vec<Receipt>, StoreError> {
    Ok(stored_objects(client)
        .await?
        .into_iter()
        .map(|(_, _, receipt)| receipt)
        .collect())
}

/// Every Receipt object in the cluster, read leniently: the readable ones with the namespace
/// and name of their object, by sequence, and the unreadable ones as (namespace, name, why).
/// One malformed object (e.g. planted by someone who bypassed the admission policy) then does
/// not stop the receipt writer.
#[allow(clippy::type_complexity)]
pub async fn stored_objects_lenient(
    client: &kube::Client,
) -> Result<(Vec<(String, String, Receipt)>, Vec<(String, String, String)>), StoreError> {
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &receipt_resource());
    let mut readable = Vec::new();
    let mut unreadable = Vec::new();
    for_each_page(&api, RECEIPT_PAGE, |obj: kube::api::DynamicObject| {
        match read_object(obj) {
            (namespace, name, Ok(receipt)) => readable.push((namespace, name, receipt)),
            (namespace, name, Err(why)) => unreadable.push((namespace, name, why)),
        }
    })
    .await?;
    readable.sort_by_key(|(_, _, r)| r.sequence);
    Ok((readable, unreadable))
}

/// The namespace and name of a Receipt object and its receipt, or why it cannot be read.
pub fn read_object(mut obj: kube::api::DynamicObject) -> (String, String, Result<Receipt, String>) {
    let namespace = obj.metadata.namespace.take().unwrap_or_default();
    let name = obj.metadata.name.take().unwrap_or_default();
    let spec = obj
        .data
        .get_mut("spec")
        .map(serde_json::Value::take)
        .unwrap_or_default();
    let receipt = serde_json::from_value::<crate::operator::crd::ReceiptSpec>(spec)
        .map_err(|e| e.to_string())
        .and_then(|spec| Receipt::try_from(spec).map_err(|e| e.to_string()));
    (namespace, name, receipt)
}

/// The keys published in `<namespace>/mom-receipt-public-keys` (unparsable entries left out).
pub async fn published_trusted_keys(
    client: &kube::Client,
    namespace: &str,
) -> Result<crate::receipts::signing::TrustedKeys, StoreError> {
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut keys = crate::receipts::signing::TrustedKeys::new();
    for hex in maps
        .get_opt(PUBLIC_KEYS_CONFIGMAP)
        .await?
        .and_then(|c| c.data)
        .unwrap_or_default()
        .into_values()
    {
        if let Ok(key) = crate::receipts::signing::parse_public_key(&hex) {
            keys.add(key);
        }
    }
    Ok(keys)
}

/// Calls `each` with the receipts signed by one of `keys` among the Receipt objects of
/// `namespace` (every namespace when `None`), one page of [`RECEIPT_PAGE`] objects at a time,
/// each with the namespace of its object, in list order (namespace, then name). Foreign and
/// unreadable objects are left out; copies of a receipt are left out within a page only (a
/// caller reading several pages tells copies apart itself). Nothing but one page is held.
pub async fn for_each_trusted_page<F>(
    client: &kube::Client,
    namespace: Option<&str>,
    keys: &crate::receipts::signing::TrustedKeys,
    mut each: F,
) -> Result<(), StoreError>
where
    F: FnMut(Vec<(String, Receipt)>),
{
    let api: Api<kube::api::DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &receipt_resource()),
        None => Api::all_with(client.clone(), &receipt_resource()),
    };
    let mut page = Vec::new();
    let mut flush = |page: &mut Vec<(String, Receipt)>| {
        let (trusted, _) = crate::receipts::provenance::split_trusted(std::mem::take(page), keys);
        if !trusted.is_empty() {
            each(trusted);
        }
    };
    for_each_page(&api, RECEIPT_PAGE, |obj: kube::api::DynamicObject| {
        if let (namespace, _, Ok(receipt)) = read_object(obj) {
            page.push((namespace, receipt));
        }
        if page.len() >= RECEIPT_PAGE as usize {
            flush(&mut page);
        }
    })
    .await?;
    flush(&mut page);
    Ok(())
}

/// The stored receipts signed by a key published in `<namespace>/mom-receipt-public-keys`
/// (the writer publishes its own there), with the namespace and name of their object, by
/// sequence; foreign and unreadable objects are left out (see `receipts::provenance`). What
/// retention and the tenant bundles work on, so a planted receipt can neither pose as the newest
/// checkpoint nor enter a tenant's proofs.
pub async fn trusted_objects(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<(String, String, Receipt)>, StoreError> {
    let keys = published_trusted_keys(client, namespace).await?;
    let (readable, _) = stored_objects_lenient(client).await?;
    let tagged = readable.into_iter().map(|(ns, name, r)| ((ns, name), r)).collect();
    let (trusted, _) = crate::receipts::provenance::split_trusted(tagged, &keys);
    Ok(trusted.into_iter().map(|((ns, name), r)| (ns, name, r)).collect())
}

pub fn receipt_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<ReceiptObject>(&())
}

/// Every receipt in the cluster with the namespace and name of its object, by sequence.
pub async fn stored_objects(client: &kube::Client) -> Result<Vec<(String, String, Receipt)>, StoreError> {
    let api: Api<ReceiptObject> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut first_unreadable = None;
    for_each_page(&api, RECEIPT_PAGE, |obj: ReceiptObject| {
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        match Receipt::try_from(obj.spec) {
            Ok(receipt) => out.push((namespace, name, receipt)),
            Err(e) => {
                first_unreadable
                    .get_or_insert_with(|| StoreError::Unreadable(format!("{namespace}/{name}"), e.to_string()));
            }
        }
    })
    .await?;
    if let Some(err) = first_unreadable {
        return Err(err);
    }
    out.sort_by_key(|(_, _, r)| r.sequence);
    Ok(out)
}
