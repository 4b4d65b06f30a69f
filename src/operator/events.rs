//! Kubernetes Events for MOM's actions, built and published in one place. Events are
//! best-effort: one that cannot be published is logged (debug) and never fails the action.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};

/// A repeat of an Event within this long is folded into the first one's series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// At most this many Events are remembered for folding repeats (memory stays bounded however
/// many objects MOM acts on; past it, the least recently seen is forgotten and its next repeat
/// starts a new Event).
pub const MAX_REMEMBERED: usize = 4096;

/// What makes two Events the same (the note is not part of it: a repeat keeps the first note).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    action: String,
    reason: String,
    namespace: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

/// An Event already created: its object, how often it happened and when it last did.
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// Publishes `events.k8s.io/v1` Events, folding a repeat within [`SERIES_WINDOW`] into the
/// first Event's `series` (a patch) instead of creating another object. Unlike kube-runtime's
/// recorder, whose cache has no size bound and is scanned in full under one lock on every
/// publish, this one remembers at most [`MAX_REMEMBERED`] Events and drops expired ones only
/// when full.
pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    seen: Mutex<HashMap<Key, Seen>>,
}

impl Recorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the Event, or patches the series of the same Event published within the window.
    pub async fn publish(
        &self,
        type_: EventType,
        action: &str,
        reason: &str,
        note: String,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let type_name = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let key = Key {
            type_: type_name,
            action: action.into(),
            reason: reason.into(),
            namespace: regarding.namespace.clone(),
            kind: regarding.kind.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
        };
        let now = Instant::now();
        let repeat = self.with_seen(|seen| {
            seen.get_mut(&key)
                .filter(|s| now.duration_since(s.last) < SERIES_WINDOW)
                .map(|s| {
                    s.count += 1;
                    s.last = now;
                    (s.namespace.clone(), s.name.clone(), s.count)
                })
        });
        let stamp = k8s_openapi::jiff::Timestamp::now();
        if let Some((namespace, name, count)) = repeat {
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(stamp) }
            });
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            return match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Ok(()),
                // Gone (expired by the apiserver's TTL): start a new one next time.
                Err(err) => {
                    self.with_seen(|seen| seen.remove(&key));
                    Err(err)
                }
            };
        }
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.reporter.controller),
            stamp.as_nanosecond()
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(type_name.into()),
            event_time: Some(MicroTime(stamp)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event).await?;
        self.with_seen(|seen| {
            remember(
                seen,
                key,
                Seen {
                    namespace,
                    name,
                    count: 1,
                    last: now,
                },
                now,
            );
        });
        Ok(())
    }

    fn with_seen<T>(&self, f: impl FnOnce(&mut HashMap<Key, Seen>) -> T) -> T {
        let mut guard = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// Inserts `seen` under `key`; when [`MAX_REMEMBERED`] are held, first forgets the expired ones,
/// then, if none expired, the least recently seen one.
fn remember(map: &mut HashMap<Key, Seen>, key: Key, seen: Seen, now: Instant) {
    if map.len() >= MAX_REMEMBERED && !map.contains_key(&key) {
        map.retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        if map.len() >= MAX_REMEMBERED
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    map.insert(key, seen);
}

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
    if let Err(err) = recorder
        .publish(type_, action, reason, truncate_note(note), reference)
        .await
    {
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

    fn key(name: &str) -> Key {
        Key {
            type_: "Normal",
            action: "Scale".into(),
            reason: "Scaled".into(),
            namespace: Some("shop".into()),
            kind: Some("GeometricAgent".into()),
            name: Some(name.into()),
            uid: None,
        }
    }

    fn seen(last: Instant) -> Seen {
        Seen {
            namespace: "shop".into(),
            name: "e".into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn the_remembered_events_stay_bounded_forgetting_the_least_recently_seen() {
        let start = Instant::now();
        let mut map = HashMap::new();
        for i in 0..MAX_REMEMBERED + 10 {
            let at = start + Duration::from_millis(i as u64);
            remember(&mut map, key(&format!("a{i}")), seen(at), at);
        }
        assert_eq!(map.len(), MAX_REMEMBERED);
        // The first ten were the least recently seen; the newest are all still there.
        assert!((0..10).all(|i| !map.contains_key(&key(&format!("a{i}")))));
        assert!(map.contains_key(&key(&format!("a{}", MAX_REMEMBERED + 9))));
        assert!(map.contains_key(&key("a10")));
    }

    #[test]
    fn when_full_the_expired_events_are_forgotten_first() {
        let start = Instant::now();
        let mut map = HashMap::new();
        for i in 0..MAX_REMEMBERED {
            remember(&mut map, key(&format!("a{i}")), seen(start), start);
        }
        let later = start + SERIES_WINDOW + Duration::from_secs(1);
        remember(&mut map, key("fresh"), seen(later), later);
        assert_eq!(map.len(), 1, "every expired Event is forgotten at once");
        // Re-remembering a known key never evicts anything.
        remember(&mut map, key("fresh"), seen(later), later);
        assert_eq!(map.len(), 1);
    }

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
