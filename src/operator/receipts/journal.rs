//! The batch journal: a batch of several receipts is first written to the ConfigMap
//! `<namespace>/mom-receipt-journal` (one JSON line per receipt with its namespace), then its
//! Receipt objects are created; a writer that finds a journal entry missing from the cluster
//! re-creates it byte for byte before writing anything, so a crash never leaves a hole.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta};

use super::*;
use crate::operator::store::{JOURNAL_CONFIGMAP, JOURNAL_KEY};
use crate::receipts::{Action, Receipt};

/// The journal's text: one JSON object per line, `{"namespace": …, "receipt": …}`.
pub fn journal_text(entries: &[(&Receipt, &str)]) -> Result<String, WriteError> {
    let mut out = String::new();
    for (receipt, namespace) in entries {
        let line = serde_json::to_string(&serde_json::json!({"namespace": namespace, "receipt": receipt}))
            .map_err(|e| WriteError::Stored(JOURNAL_CONFIGMAP.into(), e.to_string()))?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Parses [`journal_text`]; names the line of any entry that is not a receipt.
pub fn parse_journal(text: &str) -> Result<Vec<(Receipt, String)>, WriteError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        namespace: String,
        receipt: Receipt,
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<Entry>(line)
                .map(|e| (e.receipt, e.namespace))
                .map_err(|e| WriteError::Stored(format!("{JOURNAL_CONFIGMAP} line {}", i + 1), e.to_string()))
        })
        .collect()
}

impl ReceiptWriter {
    /// Records a sealed batch in the journal ConfigMap before any of its receipts is created.
    pub(super) async fn write_journal(&self, entries: &[(&Receipt, &str)]) -> Result<(), WriteError> {
        let text = journal_text(entries)?;
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(JOURNAL_CONFIGMAP.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(JOURNAL_KEY.to_string(), text)])),
            ..Default::default()
        };
        let params = kube::api::PatchParams::apply("mom-operator").force();
        maps.patch(JOURNAL_CONFIGMAP, &params, &kube::api::Patch::Apply(&cm))
            .await?;
        Ok(())
    }

    /// Re-creates the journal's receipts that are missing from the cluster (a leader that died
    /// between a batch's creates). Entries at or below the newest stored checkpoint are skipped:
    /// a checkpoint is only written after its predecessors were persisted, and retention may
    /// have pruned them since. Returns how many were re-created.
    pub(super) async fn replay_journal(
        &self,
        stored: &[Receipt],
        own: &crate::receipts::signing::TrustedKeys,
    ) -> Result<usize, WriteError> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let Some(text) = maps
            .get_opt(JOURNAL_CONFIGMAP)
            .await?
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(JOURNAL_KEY))
        else {
            return Ok(0);
        };
        // Only receipts the writer's keys (its own and those it published) signed are
        // re-created: the journal ConfigMap is no way to put anyone else's receipt into the chain.
        let entries: Vec<(Receipt, String)> = parse_journal(&text)?
            .into_iter()
            .filter(|(r, _)| {
                let signed = crate::receipts::decode_hash("hash", &r.hash)
                    .is_ok_and(|h| own.verify(&r.key_id, &crate::receipts::signing::receipt_message(&h), &r.signature));
                if !signed {
                    tracing::warn!(
                        sequence = r.sequence,
                        "journal entry not signed by this writer's key; not re-created"
                    );
                }
                signed
            })
            .collect();
        let present: std::collections::BTreeSet<u64> = stored.iter().map(|r| r.sequence).collect();
        let floor = stored
            .iter()
            .rev()
            .find(|r| r.action == Action::Checkpoint)
            .map(|r| r.sequence);
        let mut created = 0;
        for (receipt, namespace) in entries {
            if present.contains(&receipt.sequence) || floor.is_some_and(|f| receipt.sequence <= f) {
                continue;
            }
            match self.store_receipt(&receipt, &namespace).await {
                Ok(()) => created += 1,
                Err(WriteError::Api(kube::Error::Api(s))) if s.code == 409 => {}
                // Its namespace is gone or going: the hole is bridged like any deleted receipt.
                Err(e) => {
                    tracing::warn!(sequence = receipt.sequence, namespace, error = %e, "journal receipt could not be re-created")
                }
            }
        }
        if created > 0 {
            tracing::info!(created, "re-created receipts from the journal of an interrupted batch");
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::signing::Signer;

    fn sealed(n: usize) -> Vec<Receipt> {
        let mut chain = ChainBuilder::genesis(Signer::from_seed([7; 32]));
        (0..n)
            .map(|i| {
                let draft = ReceiptDraft {
                    action: Action::Spawn,
                    subject: SubjectRef {
                        api_version: "mom.hypersync.io/v1alpha1".into(),
                        kind: "GeometricAgent".into(),
                        namespace: "team-a".into(),
                        name: format!("agent-{i}"),
                        uid: None,
                    },
                    decision: serde_json::json!({"kind": "placement.scale", "from": 0, "to": 1}),
                    inputs_digest: crate::receipts::inputs_digest(&serde_json::json!({"i": i})).unwrap(),
                    time: "2026-11-26T12:00:00Z".into(),
                    level: Level::FullAudit,
                };
                chain.seal(draft).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_journal_gives_back_every_receipt_with_its_namespace() {
        let receipts = sealed(3);
        let entries: Vec<(&Receipt, &str)> = receipts.iter().zip(["team-a", "team-b", "mom-system"]).collect();
        let text = journal_text(&entries).unwrap();
        let back = parse_journal(&text).unwrap();
        assert_eq!(back.len(), 3);
        for ((r, ns), (r2, ns2)) in entries.iter().zip(&back) {
            assert_eq!(*r, r2);
            assert_eq!(*ns, ns2);
        }
        // The receipts come back byte-identical, so a re-created one keeps its hash and signature.
        assert_eq!(
            crate::receipts::hash::receipt_hash(&back[2].0).unwrap(),
            crate::receipts::hash::receipt_hash(&receipts[2]).unwrap()
        );
    }

    #[test]
    fn a_damaged_journal_line_is_named() {
        let receipts = sealed(2);
        let mut text = journal_text(&[(&receipts[0], "a"), (&receipts[1], "b")]).unwrap();
        text.push_str("{\"namespace\": \"c\", \"receipt\": {\"sequence\": \"x\"}}\n");
        let err = parse_journal(&text).unwrap_err().to_string();
        assert!(err.contains("mom-receipt-journal line 3"), "{err}");
    }

    #[test]
    fn an_empty_journal_has_no_entries() {
        assert!(parse_journal("").unwrap().is_empty());
        assert!(parse_journal("\n\n").unwrap().is_empty());
    }
}
