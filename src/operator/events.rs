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
        note: Some(truncate_note(note)),
        action: action.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, reference).await {
        tracing::debug!(error = %err, reason, "cannot publish an event");
    }
}

/// Longest note the apiserver accepts on an `events.k8s.io/v1` Event (bytes).
pub const MAX_NOTE_BYTES: usize = 1024;

/// Cuts `note` to [`MAX_NOTE_BYTES`] at a character boundary (ending in "…"), so that an Event
/// carrying a long API error is still accepted rather than dropped.
pub fn truncate_note(note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let ellipsis = "…";
    let mut end = MAX_NOTE_BYTES - ellipsis.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_to_the_apiserver_limit_at_a_character_boundary() {
        assert_eq!(truncate_note("short".into()), "short");
        let long = "é".repeat(800);
        let cut = truncate_note(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
        let exact = "a".repeat(MAX_NOTE_BYTES);
        assert_eq!(truncate_note(exact.clone()), exact);
    }
}
