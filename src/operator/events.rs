//! Kubernetes Events for MOM's actions, built and published in one place. Events are
//! best-effort: one that cannot be published is logged (debug) and never fails the action.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// Publishes an Event of `type_` with `reason` and `note` on `reference`; `action` names what
/// MOM did (`Reconcile`, `Scale`, `Allocate`, `Deschedule`, `Record`).
pub async fn publish(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    action: &str,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, reference).await {
        tracing::debug!(error = %err, reason, "cannot publish an event");
    }
}
