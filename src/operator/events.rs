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
        note: Some(fit_note(note)),
        action: action.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, reference).await {
        tracing::debug!(error = %err, reason, "cannot publish an event");
    }
}

/// The apiserver rejects an Event whose note exceeds 1 kB (`events.k8s.io/v1`): longer notes
/// (e.g. an API error with its full status) are cut at a character boundary, marked with `…`.
pub const MAX_NOTE_BYTES: usize = 1024;

fn fit_note(note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_to_what_the_apiserver_accepts() {
        let note = "é".repeat(700);
        let fitted = fit_note(note);
        assert!(fitted.len() <= MAX_NOTE_BYTES, "{}", fitted.len());
        assert!(fitted.ends_with('…'));
        assert!(fitted.starts_with("éé"));
    }

    #[test]
    fn a_short_note_is_kept_whole() {
        assert_eq!(fit_note("scaled 1 → 2".into()), "scaled 1 → 2");
    }
}
