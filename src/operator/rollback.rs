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
/// and resourceVersion (a concurrent edit fails the rollback instead of being overwritten).
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
        {"op": "test", "path": "/metadata/resourceVersion", "value": current.metadata.resource_version},
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
