//! The write-ahead rule: every action the operator takes is first recorded as an [`Intent`]
//! through [`ReceiptWriter::record_before`], which applies the MomConfig's verification level,
//! handles a refused write and publishes the `ReceiptWriteFailed` Event; at `full_audit` a
//! receipt that cannot be written means the action is withheld ([`Withheld`]).

use super::*;
use crate::operator::crd::agent::ReceiptRef;
use crate::operator::crd::momconfig::VerificationLevel;
use crate::receipts::{Action, SubjectRef};

/// An action about to be taken and what its receipt records (see
/// [`ReceiptWriter::record_before`]).
#[derive(Debug, Clone)]
pub struct Intent {
    pub action: Action,
    pub subject: SubjectRef,
    /// The decision document (its `kind` names the decision; replayable kinds carry inputs).
    pub decision: serde_json::Value,
    /// The decision's inputs; the receipt holds their digest.
    pub inputs: serde_json::Value,
    /// The object a `ReceiptWriteFailed` Warning goes to (none for pools and the chain).
    pub regarding: Option<k8s_openapi::api::core::v1::ObjectReference>,
    /// What is not done when the receipt cannot be written: "the pod was not bound", …
    pub withheld: String,
}

/// At `full_audit` the receipt of an action could not be written, so the action is withheld.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Withheld {
    /// What was withheld and why, as the `ReceiptWriteFailed` Event says it.
    pub message: String,
    #[source]
    pub source: Box<WriteError>,
}

impl ReceiptWriter {
    /// The write-ahead rule, the one place every action of the operator goes through before
    /// it is taken: records `intent` at `recording`'s level and says whether to act.
    ///
    /// - `none`, not sampled, or persisted: `Ok` — act.
    /// - the write failed below `full_audit`: logged, `Ok` — act anyway.
    /// - the write failed at `full_audit`: a `ReceiptWriteFailed` Warning on
    ///   `intent.regarding` (when there is one) naming what was withheld and why, and
    ///   `Err` — the caller must not act.
    pub async fn record_before(
        &self,
        recording: Recording,
        recorder: &crate::operator::events::Recorder,
        intent: Intent,
    ) -> Result<Option<ReceiptRef>, Withheld> {
        let Intent {
            action,
            subject,
            decision,
            inputs,
            regarding,
            withheld,
        } = intent;
        let what = format!("{} {}/{}", action.as_str(), subject.namespace, subject.name);
        let namespace = if subject.namespace.is_empty() {
            self.namespace.clone()
        } else {
            subject.namespace.clone()
        };
        match self.record(recording, action, subject, decision, &inputs).await {
            Ok(stored) => Ok(stored.map(|r| self.reference(&r, &namespace))),
            Err(source) if recording.level == VerificationLevel::FullAudit => {
                // The apiserver's own message, not the whole Status dump.
                let cause = match &source {
                    WriteError::Api(kube::Error::Api(status)) => status.message.clone(),
                    other => other.to_string(),
                };
                let message = format!("the receipt could not be written, so {withheld}: {cause}");
                if let Some(reference) = &regarding {
                    super::super::events::publish(
                        recorder,
                        reference,
                        kube::runtime::events::EventType::Warning,
                        "Record",
                        "ReceiptWriteFailed",
                        message.clone(),
                    )
                    .await;
                }
                tracing::warn!(receipt = %what, error = %source, "action not taken: its receipt could not be written");
                Err(Withheld {
                    message,
                    source: Box::new(source),
                })
            }
            Err(err) => {
                tracing::warn!(receipt = %what, error = %err, "receipt not written (level below full_audit: acting anyway)");
                Ok(None)
            }
        }
    }
}
