//! `mom rollback`: puts a GeometricAgent back to the spec a signed `agent.change` receipt
//! recorded (the decision is `decisions::rollback`; this reads and writes the cluster).

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};

use crate::decisions::config_change::agent_change_subject;
use crate::decisions::rollback::{Agent, RollbackError, spec_to_restore};
use crate::receipts::{Receipt, TrustedKeys};

/// Why a rollback was not applied.
#[derive(Debug, thiserror::Error)]
pub enum RollbackFailure {
    #[error("GeometricAgent {namespace}/{name} not found")]
    AgentNotFound { namespace: String, name: String },
    #[error("no Receipt with sequence {sequence} in namespace {namespace} (action configure)")]
    NoSuchReceipt { namespace: String, sequence: u64 },
    #[error("{0}")]
    Refused(#[from] RollbackError),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// What a rollback did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rolled {
    pub agent: String,
    pub receipt: u64,
    /// The generation the receipt recorded.
    pub recorded_generation: i64,
    /// The agent's generation before and after (the same when dry, or when nothing changed).
    pub generation_before: i64,
    pub generation_after: i64,
    /// Whether the spec differed from the recorded one.
    pub changed: bool,
    pub dry_run: bool,
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RollbackFailure {
    let what = what.into();
    move |source| RollbackFailure::Api { what, source }
}

/// Puts agent `namespace/name` back to the spec of receipt `sequence` (stored in the agent's
/// namespace), all but `replicas`, after checking the receipt's hash, its signature by one of `keys`, and that it
/// records this agent's spec. The write replaces `spec` as a whole, guarded by the agent's uid
/// and generation (a concurrent spec edit fails the rollback instead of being overwritten; a
/// status write, which changes the resourceVersion but not the generation, does not).
pub async fn rollback(
    client: &Client,
    namespace: &str,
    name: &str,
    sequence: u64,
    keys: &TrustedKeys,
    allow_recreated: bool,
    dry_run: bool,
) -> Result<Rolled, RollbackFailure> {
    let agents: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &crate::operator::lenient::agent_resource());
    let current = agents
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading GeometricAgent {namespace}/{name}")))?
        .ok_or_else(|| RollbackFailure::AgentNotFound {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    let agent = Agent {
        namespace: namespace.into(),
        name: name.into(),
        uid: current.metadata.uid.clone().unwrap_or_default(),
    };
    // Read one by one: a malformed Receipt object must not make the others unreadable.
    let receipts: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &crate::operator::store::receipt_resource());
    let selector = format!("{}=configure", crate::labels::RECEIPT_ACTION_LABEL);
    let candidates: Vec<Receipt> = receipts
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_err(format!("listing Receipts in {namespace}")))?
        .items
        .into_iter()
        .filter_map(|o| crate::operator::store::read_object(o).2.ok())
        .filter(|r| r.sequence == sequence)
        .collect();
    // A forged copy beside the real receipt must not hide it: the first that passes wins, else
    // the first refusal is reported.
    let mut refusal = None;
    let mut restored = None;
    for r in &candidates {
        match spec_to_restore(r, keys, &agent, allow_recreated) {
            Ok(found) => {
                restored = Some(found);
                break;
            }
            Err(e) => refusal = refusal.or(Some(e)),
        }
    }
    let (spec, recorded_generation) = match (restored, refusal) {
        (Some(found), _) => found,
        (None, Some(e)) => return Err(e.into()),
        (None, None) => {
            return Err(RollbackFailure::NoSuchReceipt {
                namespace: namespace.into(),
                sequence,
            });
        }
    };
    // `replicas` stays as it is (scaling has its own receipts and the scaler would move it).
    let mut spec = agent_change_subject(&spec);
    if let (Some(m), Some(r)) = (spec.as_object_mut(), current.data["spec"].get("replicas")) {
        m.insert("replicas".into(), r.clone());
    }
    let before = current.metadata.generation.unwrap_or(0);
    let changed = current.data.get("spec") != Some(&spec);
    let mut rolled = Rolled {
        agent: format!("{namespace}/{name}"),
        receipt: sequence,
        recorded_generation,
        generation_before: before,
        generation_after: before,
        changed,
        dry_run,
    };
    if dry_run || !changed {
        return Ok(rolled);
    }
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/uid", "value": agent.uid},
        {"op": "test", "path": "/metadata/generation", "value": current.metadata.generation},
        {"op": "replace", "path": "/spec", "value": spec},
    ]);
    let patch = serde_json::from_value(patch).map_err(|e| RollbackFailure::Api {
        what: "building the patch".into(),
        source: kube::Error::SerdeError(e),
    })?;
    let params = PatchParams {
        field_manager: Some("mom-rollback".into()),
        ..Default::default()
    };
    let after = agents
        .patch(name, &params, &Patch::<()>::Json(patch))
        .await
        .map_err(api_err(format!(
            "writing the spec of GeometricAgent {namespace}/{name}"
        )))?;
    rolled.generation_after = after.metadata.generation.unwrap_or(before);
    Ok(rolled)
}

/// Automatic rollback (strategy `spec.resilience.rollback.mode: auto`) of a flagged agent:
/// reads the agent's trusted `agent.change` and flag receipts from its namespace, lets
/// [`crate::decisions::auto_rollback::decide`] pick the spec, and when it says so records the
/// `agent.rollback` receipt and then writes the spec back ([`rollback`]). `done` holds the
/// (agent uid, raise receipt) pairs this process has acted on, so one raise rolls back once.
/// `Ok(None)`: nothing to roll back.
pub async fn auto_rollback(
    ctx: &crate::operator::context::Context,
    agent: &crate::operator::crd::GeometricAgent,
    within_minutes: i32,
    done: &std::sync::Mutex<std::collections::BTreeSet<(String, u64)>>,
) -> Result<Option<Rolled>, AutoRollbackFailure> {
    use crate::decisions::auto_rollback::{AutoRollbackInputs, decide, decision_record};
    use kube::{Resource, ResourceExt};
    let (Some(uid), Some(generation)) = (agent.uid(), agent.metadata.generation) else {
        return Ok(None);
    };
    let (namespace, name) = (agent.namespace().unwrap_or_default(), agent.name_any());
    let keys = crate::operator::store::published_trusted_keys(&ctx.client, ctx.writer.namespace())
        .await
        .map_err(|e| AutoRollbackFailure::Keys(e.to_string()))?;
    let receipts: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &crate::operator::store::receipt_resource(),
    );
    let selector = format!("{}=configure", crate::labels::RECEIPT_ACTION_LABEL);
    let stored: Vec<Receipt> = receipts
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| {
            AutoRollbackFailure::Failed(RollbackFailure::Api {
                what: format!("listing Receipts in {namespace}"),
                source,
            })
        })?
        .items
        .into_iter()
        .filter_map(|o| crate::operator::store::read_object(o).2.ok())
        .collect();
    let (changes, flags) = history(&stored, &keys, &namespace, &name, &uid);
    let inputs = AutoRollbackInputs {
        agent: format!("{namespace}/{name}"),
        generation,
        changes,
        flags,
        within_ms: i64::from(within_minutes.clamp(1, 1440)) * 60_000,
    };
    let output = decide(&inputs);
    let (true, Some(to), Some(raised)) = (output.rollback, output.to_sequence, output.raised_sequence) else {
        tracing::debug!(agent = %inputs.agent, reason = %output.reason, "no automatic rollback");
        return Ok(None);
    };
    if done.lock().is_ok_and(|d| d.contains(&(uid.clone(), raised))) {
        return Ok(None);
    }
    let intent = crate::operator::receipts::Intent {
        action: crate::receipts::Action::Configure,
        subject: crate::receipts::SubjectRef {
            api_version: "mom.hypersync.io/v1alpha1".into(),
            kind: crate::decisions::rollback::AGENT_KIND.into(),
            namespace: namespace.clone(),
            name: name.clone(),
            uid: Some(uid.clone()),
        },
        decision: decision_record(&inputs, &output),
        inputs: serde_json::to_value(&inputs).unwrap_or_default(),
        regarding: Some(agent.object_ref(&())),
        withheld: format!("{namespace}/{name} was not rolled back to receipt {to}"),
    };
    ctx.record_before(intent)
        .await
        .map_err(|w| AutoRollbackFailure::Receipt(w.message))?;
    let rolled = rollback(&ctx.client, &namespace, &name, to, &keys, false, false).await?;
    if let Ok(mut d) = done.lock() {
        d.insert((uid, raised));
    }
    ctx.publish(
        &agent.object_ref(&()),
        kube::runtime::events::EventType::Warning,
        "Rollback",
        "RolledBack",
        format!(
            "spec rolled back to the one recorded by receipt {to}: {}",
            output.reason
        ),
    )
    .await;
    Ok(Some(rolled))
}

/// Why an automatic rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AutoRollbackFailure {
    #[error("reading the published receipt keys: {0}")]
    Keys(String),
    #[error("the agent.rollback receipt could not be written, so nothing was rolled back: {0}")]
    Receipt(String),
    #[error(transparent)]
    Failed(#[from] RollbackFailure),
}

/// The agent's spec changes (trusted `agent.change` receipts of this uid) and flag changes
/// (trusted `anomaly.flag`/`anomaly.unnamed` receipts of `agent/<namespace>/<name>`, from its
/// first change on), from the Receipts of its namespace. A receipt is used only when a trusted
/// key signs its hash and its content hashes to that hash; of two with one sequence, the first.
pub fn history(
    stored: &[Receipt],
    keys: &TrustedKeys,
    namespace: &str,
    name: &str,
    uid: &str,
) -> (
    Vec<crate::decisions::auto_rollback::SpecChange>,
    Vec<crate::decisions::auto_rollback::FlagChange>,
) {
    use crate::decisions::auto_rollback::{FlagChange, SpecChange};
    use crate::decisions::config_change::AGENT_CHANGE_KIND;
    let (trusted, _) =
        crate::receipts::provenance::split_trusted(stored.iter().map(|r| ((), r.clone())).collect(), keys);
    let at_ms =
        |r: &Receipt| crate::auction::cost_report::rfc3339_seconds(&r.time).map(|s| (s * 1000.0).round() as i64);
    let mut changes = Vec::new();
    let mut flags = Vec::new();
    let subject = format!("agent/{namespace}/{name}");
    let mut seen = std::collections::BTreeSet::new();
    for (_, r) in trusted {
        // The signature covers the stored hash; the content must hash to it too.
        let intact = crate::receipts::hash::receipt_hash(&r).is_ok_and(|h| hex::encode(h) == r.hash);
        if !intact || !seen.insert(r.sequence) {
            continue;
        }
        let Some(at) = at_ms(&r) else { continue };
        let d = &r.decision;
        match d["kind"].as_str().unwrap_or_default() {
            AGENT_CHANGE_KIND
                if r.subject.kind == crate::decisions::rollback::AGENT_KIND
                    && r.subject.namespace == namespace
                    && r.subject.name == name
                    && d["uid"] == uid =>
            {
                let (Some(generation), Some(spec)) = (d["generation"].as_i64(), d.get("spec")) else {
                    continue;
                };
                let digest = crate::receipts::inputs_digest(&agent_change_subject(spec)).unwrap_or_default();
                changes.push(SpecChange {
                    sequence: r.sequence,
                    at_ms: at,
                    generation,
                    spec_digest: digest,
                });
            }
            crate::anomaly::flag::FLAG_KIND | crate::anomaly::flag::UNNAMED_KIND
                if d["inputs"]["subject"] == subject.as_str() =>
            {
                let Some(flag) = d["inputs"]["flag"].as_str() else {
                    continue;
                };
                flags.push(FlagChange {
                    sequence: r.sequence,
                    at_ms: at,
                    flag: flag.to_string(),
                    raised: d["output"]["flagged"].as_bool().unwrap_or(false),
                });
            }
            _ => {}
        }
    }
    let first = changes.iter().map(|c| c.at_ms).min();
    flags.retain(|f| first.is_some_and(|t| f.at_ms >= t));
    (changes, flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::config_change::agent_change_record;
    use crate::receipts::chain::ChainBuilder;
    use crate::receipts::testutil::signer;
    use crate::receipts::{Action, Level, ReceiptDraft, SubjectRef, inputs_digest};

    fn draft(decision: serde_json::Value, minute: u32) -> ReceiptDraft {
        ReceiptDraft {
            action: Action::Configure,
            subject: SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: "GeometricAgent".into(),
                namespace: "shop".into(),
                name: "web".into(),
                uid: None,
            },
            inputs_digest: inputs_digest(&decision).unwrap(),
            decision,
            time: format!("2026-12-05T10:{minute:02}:00Z"),
            level: Level::FullAudit,
        }
    }

    fn flag(subject: &str, flagged: bool) -> serde_json::Value {
        serde_json::json!({"kind": "anomaly.flag", "inputs": {"subject": subject, "flag": "errors"},
                           "output": {"flagged": flagged}})
    }

    #[test]
    fn the_history_holds_this_agents_trusted_changes_and_flags_and_nothing_forged_or_foreign() {
        let spec =
            |image: &str| serde_json::json!({"replicas": 2, "template": {"spec": {"containers": [{"image": image}]}}});
        let mut b = ChainBuilder::genesis(signer(1));
        let mut stored = vec![
            b.seal(draft(agent_change_record("uid-1", 1, None, &spec("good")), 0))
                .unwrap(),
            b.seal(draft(agent_change_record("uid-1", 2, Some(1), &spec("bad")), 10))
                .unwrap(),
            b.seal(draft(flag("agent/shop/web", true), 12)).unwrap(),
            // Another agent's flag and an earlier agent's (other uid) change: not this one's.
            b.seal(draft(flag("agent/shop/db", true), 13)).unwrap(),
            b.seal(draft(agent_change_record("uid-0", 7, None, &spec("old")), 14))
                .unwrap(),
        ];
        // Forged: a signed receipt's content edited (a raise moved earlier), and one signed by
        // an untrusted key.
        let mut edited = stored[2].clone();
        edited.sequence = 40;
        edited.time = "2026-12-05T10:05:00Z".into();
        stored.push(edited);
        stored.push(
            ChainBuilder::genesis(signer(9))
                .seal(draft(flag("agent/shop/web", true), 1))
                .unwrap(),
        );
        let mut keys = TrustedKeys::new();
        keys.add(signer(1).public_key());
        let (changes, flags) = history(&stored, &keys, "shop", "web", "uid-1");
        let seqs: Vec<u64> = changes.iter().map(|c| c.sequence).collect();
        assert_eq!(seqs, vec![0, 1]);
        assert_ne!(changes[0].spec_digest, changes[1].spec_digest);
        // `replicas` is not part of what is compared.
        let same = agent_change_subject(&spec("good"));
        assert_eq!(changes[0].spec_digest, crate::receipts::inputs_digest(&same).unwrap());
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(
            (flags[0].sequence, flags[0].raised, flags[0].at_ms % 3_600_000),
            (2, true, 12 * 60_000)
        );
        // What the decision makes of it: back to receipt 0.
        let d = crate::decisions::auto_rollback::decide(&crate::decisions::auto_rollback::AutoRollbackInputs {
            agent: "shop/web".into(),
            generation: 2,
            changes,
            flags,
            within_ms: 30 * 60_000,
        });
        assert_eq!((d.rollback, d.to_sequence), (true, Some(0)), "{d:?}");
    }
}
