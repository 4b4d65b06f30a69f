//! Configure receipts: each generation of the MomConfig `default` is recorded once as a
//! `configure` receipt (read back from the chain at each term, so restarts do not repeat them).

use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use crate::operator::crd::momconfig::{ACTIVE_NAME, VerificationLevel};
use crate::operator::crd::{MomConfig, Receipt as ReceiptObject};
use crate::operator::receipts::{ReceiptWriter, Recording, WriteError};
use crate::receipts::{Action, SubjectRef};

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
pub(super) async fn record_config_change(
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
    let previous_generation = previous.as_ref().filter(|p| p.0 == key.0).map(|p| p.1);
    let decision = crate::decisions::config_change::change_record(&key.0, key.1, previous_generation, &spec);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
