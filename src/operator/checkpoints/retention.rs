//! Receipt retention in the cluster: after a checkpoint, the leader deletes the receipts before
//! the newest checkpoint that still leaves at least `--receipt-retention-keep-last` in the cluster;
//! that checkpoint's signed tree head and Merkle frontier stand for everything pruned.

use std::collections::BTreeSet;

use kube::api::Api;

use crate::operator::crd::Receipt as ReceiptObject;
use crate::operator::receipts::WriteError;
use crate::receipts::Receipt;

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
pub async fn prune_receipts(client: &kube::Client, namespace: &str, keep_last: u64) -> Result<Pruned, WriteError> {
    // Only the trusted chain: a planted "checkpoint" far ahead must not select ours for deletion.
    let stored = crate::operator::store::trusted_objects(client, namespace).await?;
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
