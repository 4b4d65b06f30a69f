//! `mom rollback`: puts a GeometricAgent or an OrchestrationStrategy back to the spec a signed
//! `agent.change` / `strategy.change` receipt recorded (the decision is `decisions::rollback`;
//! this reads and writes the cluster), and the automatic rollback of both
//! (`decisions::auto_rollback`).

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};

use crate::decisions::config_change::change_subject;
use crate::decisions::rollback::{RollbackError, SpecKind, Target, spec_to_restore};
use crate::receipts::{Receipt, TrustedKeys};

/// Why a rollback was not applied.
#[derive(Debug, thiserror::Error)]
pub enum RollbackFailure {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
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
    /// `GeometricAgent` or `OrchestrationStrategy`.
    pub kind: &'static str,
    /// `namespace/name` of the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `namespace/name` of the strategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    pub receipt: u64,
    /// The generation the receipt recorded.
    pub recorded_generation: i64,
    /// The object's generation before and after (the same when dry, or when nothing changed).
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

/// The API resource of the objects of `kind`, read and written untyped (the spec goes back
/// as the receipt recorded it).
pub fn resource(kind: SpecKind) -> ApiResource {
    match kind {
        SpecKind::Agent => crate::operator::lenient::agent_resource(),
        SpecKind::Strategy => ApiResource::erase::<crate::operator::crd::OrchestrationStrategy>(&()),
    }
}

/// Puts agent or strategy `namespace/name` back to the spec of receipt `sequence` (stored in
/// its namespace), for an agent all but `replicas`, after checking the receipt's hash, its
/// signature by one of `keys`, and that it records this object's spec. The write replaces
/// `spec` as a whole, guarded by the object's uid and generation (a concurrent spec edit fails
/// the rollback instead of being overwritten; a status write, which changes the resourceVersion
/// but not the generation, does not).
#[allow(clippy::too_many_arguments)]
pub async fn rollback(
    client: &Client,
    kind: SpecKind,
    namespace: &str,
    name: &str,
    sequence: u64,
    keys: &TrustedKeys,
    allow_recreated: bool,
    dry_run: bool,
) -> Result<Rolled, RollbackFailure> {
    let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource(kind));
    let current = objects
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading {} {namespace}/{name}", kind.object_kind())))?
        .ok_or_else(|| RollbackFailure::NotFound {
            kind: kind.object_kind(),
            namespace: namespace.into(),
            name: name.into(),
        })?;
    let target = Target {
        kind,
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
        match spec_to_restore(r, keys, &target, allow_recreated) {
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
    // An agent's `replicas` stays as it is (scaling has its own receipts and the scaler would
    // move it).
    let mut spec = change_subject(kind.change_kind(), &spec);
    if kind == SpecKind::Agent
        && let (Some(m), Some(r)) = (spec.as_object_mut(), current.data["spec"].get("replicas"))
    {
        m.insert("replicas".into(), r.clone());
    }
    let before = current.metadata.generation.unwrap_or(0);
    let changed = current.data.get("spec") != Some(&spec);
    let full_name = format!("{namespace}/{name}");
    let mut rolled = Rolled {
        kind: kind.object_kind(),
        agent: (kind == SpecKind::Agent).then(|| full_name.clone()),
        strategy: (kind == SpecKind::Strategy).then(|| full_name.clone()),
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
        {"op": "test", "path": "/metadata/uid", "value": target.uid},
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
    let after = objects
        .patch(name, &params, &Patch::<()>::Json(patch))
        .await
        .map_err(api_err(format!(
            "writing the spec of {} {full_name}",
            kind.object_kind()
        )))?;
    rolled.generation_after = after.metadata.generation.unwrap_or(before);
    Ok(rolled)
}

/// Automatic rollback under a strategy with `spec.resilience.rollback.mode: auto`, for an agent
/// with a flag up: reads the trusted `agent.change`, `strategy.change`, flag and rollback
/// receipts of the namespace; first lets [`crate::decisions::auto_rollback::decide_strategy`]
/// judge the strategy (over the flags of every agent it governs: `status.matchedAgents` and this
/// one), then [`crate::decisions::auto_rollback::decide`] the agent, the newest change before
/// the raise being the one blamed and a raise a rollback receipt already names never blamed
/// again. When one says so, records its `strategy.rollback` / `agent.rollback` receipt, then
/// writes the spec back ([`rollback`]), then the Event `RolledBack` on the object rolled back.
/// `done` holds the (object uid, raise receipt) pairs this process is acting or has acted on,
/// claimed before the receipt, so concurrent reconciles of two agents act on one raise once.
/// `Ok(None)`: nothing to roll back.
pub async fn auto_rollback(
    ctx: &crate::operator::context::Context,
    agent: &crate::operator::crd::GeometricAgent,
    strategy: &crate::operator::crd::OrchestrationStrategy,
    within_minutes: i32,
    done: &std::sync::Mutex<std::collections::BTreeSet<(String, u64)>>,
) -> Result<Option<Rolled>, AutoRollbackFailure> {
    use crate::decisions::auto_rollback::{
        AutoRollbackInputs, StrategyRollbackInputs, decide, decide_strategy, decision_record, strategy_decision_record,
    };
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
    let within_ms = i64::from(within_minutes.clamp(1, 1440)) * 60_000;
    let trusted = trusted_intact(&stored, &keys);
    let acted_raises = acted_raises(&trusted);

    // The strategy first: blamed for a raise after its change on an agent whose own spec did
    // not change in between.
    let strategy_name = strategy.name_any();
    let mut strategy_changes = Vec::new();
    if let (Some(strategy_uid), Some(strategy_generation)) = (strategy.uid(), strategy.metadata.generation) {
        let mut governed: std::collections::BTreeSet<String> = strategy
            .status
            .as_ref()
            .map(|s| s.matched_agents.iter().cloned().collect())
            .unwrap_or_default();
        governed.insert(name.clone());
        let (changes, flags, agent_changes) =
            strategy_history(&trusted, &namespace, &strategy_name, &strategy_uid, &governed);
        // Its first record is the spec it had, not a change.
        strategy_changes = replacing_changes(&trusted, &namespace, &strategy_name, &strategy_uid);
        let inputs = StrategyRollbackInputs {
            strategy: format!("{namespace}/{strategy_name}"),
            generation: strategy_generation,
            changes,
            flags,
            agent_changes,
            within_ms,
            acted_raises: acted_raises.clone(),
        };
        let output = decide_strategy(&inputs);
        if let (true, Some(to), Some(raised)) = (output.rollback, output.to_sequence, output.raised_sequence) {
            let object = Acting {
                kind: SpecKind::Strategy,
                namespace: &namespace,
                name: &strategy_name,
                uid: &strategy_uid,
                reference: strategy.object_ref(&()),
            };
            let decision = strategy_decision_record(&inputs, &output);
            let inputs = serde_json::to_value(&inputs).unwrap_or_default();
            return act(ctx, object, decision, inputs, (to, raised), &output.reason, &keys, done).await;
        }
        tracing::debug!(strategy = %inputs.strategy, reason = %output.reason, "no automatic rollback of the strategy");
    }

    let (changes, flags) = agent_history(&trusted, &namespace, &name, &uid);
    let inputs = AutoRollbackInputs {
        agent: format!("{namespace}/{name}"),
        generation,
        changes,
        flags,
        within_ms,
        strategy_changes,
        acted_raises,
    };
    let output = decide(&inputs);
    let (true, Some(to), Some(raised)) = (output.rollback, output.to_sequence, output.raised_sequence) else {
        tracing::debug!(agent = %inputs.agent, reason = %output.reason, "no automatic rollback");
        return Ok(None);
    };
    let object = Acting {
        kind: SpecKind::Agent,
        namespace: &namespace,
        name: &name,
        uid: &uid,
        reference: agent.object_ref(&()),
    };
    let decision = decision_record(&inputs, &output);
    let inputs = serde_json::to_value(&inputs).unwrap_or_default();
    act(ctx, object, decision, inputs, (to, raised), &output.reason, &keys, done).await
}

/// The object an automatic rollback writes.
struct Acting<'a> {
    kind: SpecKind,
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    reference: k8s_openapi::api::core::v1::ObjectReference,
}

/// Claims the raise in `done`, records the decision, writes the spec of receipt `to` back and
/// publishes `RolledBack`. The claim is given up when the receipt fails; once the receipt is
/// written it names the raise, which is then not acted on again: the write is tried 3 times,
/// 1 s apart, and when it still fails a `RollbackFailed` Event says so (`mom rollback` by hand).
#[allow(clippy::too_many_arguments)]
async fn act(
    ctx: &crate::operator::context::Context,
    object: Acting<'_>,
    decision: serde_json::Value,
    inputs: serde_json::Value,
    (to, raised): (u64, u64),
    reason: &str,
    keys: &TrustedKeys,
    done: &std::sync::Mutex<std::collections::BTreeSet<(String, u64)>>,
) -> Result<Option<Rolled>, AutoRollbackFailure> {
    let key = (object.uid.to_string(), raised);
    let claimed = done.lock().is_ok_and(|mut d| d.insert(key.clone()));
    if !claimed {
        return Ok(None);
    }
    let release = || {
        if let Ok(mut d) = done.lock() {
            d.remove(&key);
        }
    };
    let (namespace, name) = (object.namespace, object.name);
    let intent = crate::operator::receipts::Intent {
        action: crate::receipts::Action::Configure,
        subject: crate::receipts::SubjectRef {
            api_version: "mom.hypersync.io/v1alpha1".into(),
            kind: object.kind.object_kind().into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: Some(object.uid.to_string()),
        },
        decision,
        inputs,
        regarding: Some(object.reference.clone()),
        withheld: format!(
            "{} {namespace}/{name} was not rolled back to receipt {to}",
            object.kind.object_kind()
        ),
    };
    if let Err(w) = ctx.record_before(intent).await {
        release();
        return Err(AutoRollbackFailure::Receipt(w.message));
    }
    let mut attempt = 1;
    let written = loop {
        match rollback(&ctx.client, object.kind, namespace, name, to, keys, false, false).await {
            Err(RollbackFailure::Api { .. }) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    let rolled = match written {
        Ok(rolled) => rolled,
        Err(e) => {
            // The receipt names the raise, so it is not acted on again: say so where users look.
            ctx.publish(
                &object.reference,
                kube::runtime::events::EventType::Warning,
                "Rollback",
                "RollbackFailed",
                format!("the spec of receipt {to} was not written back: {e}"),
            )
            .await;
            return Err(e.into());
        }
    };
    ctx.publish(
        &object.reference,
        kube::runtime::events::EventType::Warning,
        "Rollback",
        "RolledBack",
        format!("spec rolled back to the one recorded by receipt {to}: {reason}"),
    )
    .await;
    Ok(Some(rolled))
}

/// The sequences of the trusted `strategy.change` receipts of strategy `namespace/name` (uid
/// `uid`) that replaced a recorded spec (`previousGeneration` set): its first record, the spec
/// it had when recording began, is not a change. Sorted.
pub fn replacing_changes(trusted: &[(Receipt, i64)], namespace: &str, name: &str, uid: &str) -> Vec<u64> {
    let mut sequences: Vec<u64> = trusted
        .iter()
        .filter(|(r, _)| {
            let d = &r.decision;
            d["kind"] == SpecKind::Strategy.change_kind()
                && r.subject.kind == SpecKind::Strategy.object_kind()
                && r.subject.namespace == namespace
                && r.subject.name == name
                && d["uid"] == uid
                && !d["previousGeneration"].is_null()
        })
        .map(|(r, _)| r.sequence)
        .collect();
    sequences.sort_unstable();
    sequences
}

/// The raises (receipt sequences) trusted `agent.rollback` / `strategy.rollback` receipts acted
/// on, sorted.
pub fn acted_raises(trusted: &[(Receipt, i64)]) -> Vec<u64> {
    use crate::decisions::auto_rollback::{AUTO_ROLLBACK_KIND, STRATEGY_ROLLBACK_KIND};
    let mut raises: Vec<u64> = trusted
        .iter()
        .filter(|(r, _)| {
            let kind = &r.decision["kind"];
            (kind == AUTO_ROLLBACK_KIND || kind == STRATEGY_ROLLBACK_KIND) && r.decision["output"]["rollback"] == true
        })
        .filter_map(|(r, _)| r.decision["output"]["raisedSequence"].as_u64())
        .collect();
    raises.sort_unstable();
    raises.dedup();
    raises
}

/// Why an automatic rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AutoRollbackFailure {
    #[error("reading the published receipt keys: {0}")]
    Keys(String),
    #[error("the rollback receipt could not be written, so nothing was rolled back: {0}")]
    Receipt(String),
    #[error(transparent)]
    Failed(#[from] RollbackFailure),
}

/// The receipts a rollback may believe, with their time (ms since the Unix epoch): a trusted key
/// signs the hash and the content hashes to it; of two with one sequence, the first.
pub fn trusted_intact(stored: &[Receipt], keys: &TrustedKeys) -> Vec<(Receipt, i64)> {
    let (trusted, _) =
        crate::receipts::provenance::split_trusted(stored.iter().map(|r| ((), r.clone())).collect(), keys);
    let mut seen = std::collections::BTreeSet::new();
    trusted
        .into_iter()
        .filter_map(|(_, r)| {
            // The signature covers the stored hash; the content must hash to it too.
            let intact = crate::receipts::hash::receipt_hash(&r).is_ok_and(|h| hex::encode(h) == r.hash);
            if !intact || !seen.insert(r.sequence) {
                return None;
            }
            let at = crate::auction::cost_report::rfc3339_seconds(&r.time).map(|s| (s * 1000.0).round() as i64)?;
            Some((r, at))
        })
        .collect()
}

/// The recorded spec changes of `kind` `namespace/name` (of uid `uid` when given).
fn spec_changes(
    trusted: &[(Receipt, i64)],
    kind: SpecKind,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Vec<crate::decisions::auto_rollback::SpecChange> {
    trusted
        .iter()
        .filter_map(|(r, at)| {
            let d = &r.decision;
            let ours = d["kind"] == kind.change_kind()
                && r.subject.kind == kind.object_kind()
                && r.subject.namespace == namespace
                && r.subject.name == name
                && uid.is_none_or(|u| d["uid"] == u);
            if !ours {
                return None;
            }
            let (generation, spec) = (d["generation"].as_i64()?, d.get("spec")?);
            Some(crate::decisions::auto_rollback::SpecChange {
                sequence: r.sequence,
                at_ms: *at,
                generation,
                spec_digest: crate::receipts::inputs_digest(&change_subject(kind.change_kind(), spec))
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The flags of agent `namespace/name` raised or cleared (`anomaly.flag`/`anomaly.unnamed`
/// receipts about `agent/<namespace>/<name>`).
fn flag_changes(
    trusted: &[(Receipt, i64)],
    namespace: &str,
    name: &str,
) -> Vec<crate::decisions::auto_rollback::FlagChange> {
    let subject = format!("agent/{namespace}/{name}");
    trusted
        .iter()
        .filter_map(|(r, at)| {
            let d = &r.decision;
            let kind = d["kind"].as_str().unwrap_or_default();
            let is_flag = kind == crate::anomaly::flag::FLAG_KIND || kind == crate::anomaly::flag::UNNAMED_KIND;
            if !is_flag || d["inputs"]["subject"] != subject.as_str() {
                return None;
            }
            Some(crate::decisions::auto_rollback::FlagChange {
                sequence: r.sequence,
                at_ms: *at,
                flag: d["inputs"]["flag"].as_str()?.to_string(),
                raised: d["output"]["flagged"].as_bool().unwrap_or(false),
                agent: None,
            })
        })
        .collect()
}

/// Keeps the flags from the first change on.
fn since_first(
    changes: &[crate::decisions::auto_rollback::SpecChange],
    mut flags: Vec<crate::decisions::auto_rollback::FlagChange>,
) -> Vec<crate::decisions::auto_rollback::FlagChange> {
    let first = changes.iter().map(|c| c.at_ms).min();
    flags.retain(|f| first.is_some_and(|t| f.at_ms >= t));
    flags
}

/// The agent's spec changes (its `agent.change` receipts of this uid) and flag changes, from
/// its first change on, out of [`trusted_intact`] receipts of its namespace.
pub fn agent_history(
    trusted: &[(Receipt, i64)],
    namespace: &str,
    name: &str,
    uid: &str,
) -> (
    Vec<crate::decisions::auto_rollback::SpecChange>,
    Vec<crate::decisions::auto_rollback::FlagChange>,
) {
    let changes = spec_changes(trusted, SpecKind::Agent, namespace, name, Some(uid));
    let flags = since_first(&changes, flag_changes(trusted, namespace, name));
    (changes, flags)
}

/// The strategy's spec changes (its `strategy.change` receipts of this uid), the flag changes
/// of the agents named in `governed` from its first change on, and per governed agent the
/// sequences of its `agent.change` receipts (`namespace/name` → sorted sequences; by name: a
/// deleted agent of the same name counts too), out of [`trusted_intact`] receipts of the
/// namespace.
pub fn strategy_history(
    trusted: &[(Receipt, i64)],
    namespace: &str,
    name: &str,
    uid: &str,
    governed: &std::collections::BTreeSet<String>,
) -> (
    Vec<crate::decisions::auto_rollback::SpecChange>,
    Vec<crate::decisions::auto_rollback::FlagChange>,
    std::collections::BTreeMap<String, Vec<u64>>,
) {
    let changes = spec_changes(trusted, SpecKind::Strategy, namespace, name, Some(uid));
    // One pass over the receipts, each governed agent looked up by name.
    let prefix = format!("agent/{namespace}/");
    fn governed_agent<'a>(
        subject: &'a str,
        prefix: &str,
        governed: &std::collections::BTreeSet<String>,
    ) -> Option<&'a str> {
        subject.strip_prefix(prefix).filter(|a| governed.contains(*a))
    }
    let mut flags = Vec::new();
    let mut own: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
    for (r, at) in trusted {
        let d = &r.decision;
        let kind = d["kind"].as_str().unwrap_or_default();
        if kind == crate::anomaly::flag::FLAG_KIND || kind == crate::anomaly::flag::UNNAMED_KIND {
            let (Some(agent), Some(flag)) = (
                d["inputs"]["subject"]
                    .as_str()
                    .and_then(|s| governed_agent(s, &prefix, governed)),
                d["inputs"]["flag"].as_str(),
            ) else {
                continue;
            };
            flags.push(crate::decisions::auto_rollback::FlagChange {
                sequence: r.sequence,
                at_ms: *at,
                flag: flag.to_string(),
                raised: d["output"]["flagged"].as_bool().unwrap_or(false),
                agent: Some(format!("{namespace}/{agent}")),
            });
        } else if kind == SpecKind::Agent.change_kind()
            && r.subject.kind == SpecKind::Agent.object_kind()
            && r.subject.namespace == namespace
            && governed.contains(&r.subject.name)
        {
            own.entry(format!("{namespace}/{}", r.subject.name))
                .or_default()
                .push(r.sequence);
        }
    }
    flags.sort_by_key(|f| f.sequence);
    let flags = since_first(&changes, flags);
    for sequences in own.values_mut() {
        sequences.sort_unstable();
    }
    (changes, flags, own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::config_change::{agent_change_record, agent_change_subject};
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
        let (changes, flags) = agent_history(&trusted_intact(&stored, &keys), "shop", "web", "uid-1");
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
            strategy_changes: vec![],
            acted_raises: vec![],
        });
        assert_eq!((d.rollback, d.to_sequence), (true, Some(0)), "{d:?}");
    }

    #[test]
    fn a_strategys_history_holds_its_changes_the_flags_and_spec_changes_of_the_agents_it_governs_and_the_raises_acted_on()
     {
        use crate::decisions::config_change::strategy_change_record;
        let of = |kind: &str, name: &str, decision: serde_json::Value, minute: u32| {
            let mut d = draft(decision, minute);
            d.subject.kind = kind.into();
            d.subject.name = name.into();
            d
        };
        let max = |n: i64| serde_json::json!({"scaling": {"maxReplicas": n}});
        let image = |i: &str| serde_json::json!({"template": {"spec": {"containers": [{"image": i}]}}});
        let mut b = ChainBuilder::genesis(signer(1));
        let stored = vec![
            b.seal(of(
                "GeometricAgent",
                "svc",
                agent_change_record("a1", 1, None, &image("v1")),
                0,
            ))
            .unwrap(),
            b.seal(of(
                "OrchestrationStrategy",
                "tuned",
                strategy_change_record("s1", 1, None, &max(5)),
                1,
            ))
            .unwrap(),
            b.seal(of(
                "GeometricAgent",
                "svc",
                agent_change_record("a1", 2, Some(1), &image("v2")),
                2,
            ))
            .unwrap(),
            b.seal(of(
                "OrchestrationStrategy",
                "tuned",
                strategy_change_record("s1", 2, Some(1), &max(4)),
                10,
            ))
            .unwrap(),
            b.seal(draft(flag("agent/shop/svc", true), 12)).unwrap(),
            // Not governed: another agent's flag, and a strategy of another name.
            b.seal(draft(flag("agent/shop/db", true), 13)).unwrap(),
            b.seal(of(
                "OrchestrationStrategy",
                "other",
                strategy_change_record("s2", 1, None, &max(1)),
                14,
            ))
            .unwrap(),
        ];
        // Rollback receipts: one that acted on raise 4, one that did not act (raise 5).
        let rolled = |acted: bool, raise: u64| {
            serde_json::json!({"kind": "agent.rollback", "inputs": {},
                               "output": {"rollback": acted, "raisedSequence": raise}})
        };
        let mut stored = stored;
        stored.push(b.seal(draft(rolled(true, 4), 15)).unwrap());
        stored.push(b.seal(draft(rolled(false, 5), 16)).unwrap());
        let mut keys = TrustedKeys::new();
        keys.add(signer(1).public_key());
        assert_eq!(acted_raises(&trusted_intact(&stored, &keys)), vec![4]);
        // Signed by an untrusted key: not believed.
        let forged = ChainBuilder::genesis(signer(9))
            .seal(draft(rolled(true, 6), 17))
            .unwrap();
        stored.push(forged);
        assert_eq!(acted_raises(&trusted_intact(&stored, &keys)), vec![4]);
        let governed: std::collections::BTreeSet<String> = ["svc".to_string()].into();
        let trusted = trusted_intact(&stored, &keys);
        let (changes, flags, own) = strategy_history(&trusted, "shop", "tuned", "s1", &governed);
        assert_eq!(changes.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(
            replacing_changes(&trusted, "shop", "tuned", "s1"),
            vec![3],
            "the first record is not a change"
        );
        assert_eq!(changes[0].spec_digest, inputs_digest(&max(5)).unwrap());
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].agent.as_deref(), Some("shop/svc"));
        assert_eq!(own.len(), 1, "{own:?}");
        assert_eq!(own["shop/svc"], vec![0, 2], "svc's two agent.change receipts");
        // The decision: svc's newest spec (receipt 2) is older than the strategy's change (3),
        // so the raise (4) is the strategy's, unless a rollback receipt already acted on it.
        let mut inputs = crate::decisions::auto_rollback::StrategyRollbackInputs {
            strategy: "shop/tuned".into(),
            generation: 2,
            changes,
            flags,
            agent_changes: own,
            within_ms: 30 * 60_000,
            acted_raises: vec![],
        };
        let d = crate::decisions::auto_rollback::decide_strategy(&inputs);
        assert_eq!((d.rollback, d.to_sequence), (true, Some(1)), "{d:?}");
        inputs.acted_raises = acted_raises(&trusted);
        let d = crate::decisions::auto_rollback::decide_strategy(&inputs);
        assert_eq!((d.rollback, d.raised_sequence), (false, Some(4)), "{d:?}");
        // With db governed too, its flag is in the history; db has no recorded spec of its own.
        let governed: std::collections::BTreeSet<String> = ["svc".to_string(), "db".to_string()].into();
        let (_, flags, own) = strategy_history(&trusted, "shop", "tuned", "s1", &governed);
        assert_eq!(flags.len(), 2);
        assert!(!own.contains_key("shop/db"), "db has no recorded spec");
    }
}
