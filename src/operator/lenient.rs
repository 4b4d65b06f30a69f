//! GeometricAgents read one object at a time, so one undecodable object never stops a loop for
//! the others.
//!
//! An agent's pod template is stored with an open schema (see `crd::agent`), so the apiserver
//! accepts templates the operator cannot decode (e.g. `containerPort: "http"`). A typed list or
//! watch fails as a whole on such an object; here every object is decoded on its own, the bad
//! ones are left out and remembered in [`BadAgents`] with the path of the offending field, and
//! the status loop gives each a condition and a Warning Event. Logs name the object and the
//! field, never the list.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};

use super::crd::GeometricAgent;

/// An agent object that does not decode: where it is and which field is wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Undecodable {
    pub namespace: String,
    pub name: String,
    /// `<field path>: <what is wrong>`, e.g.
    /// `spec.template.spec.containers[0].ports[0].containerPort: invalid type: string "http", expected i32`.
    pub error: String,
}

/// The agents that do not decode right now, by (namespace, name).
#[derive(Debug, Default)]
pub struct BadAgents(Mutex<BTreeMap<(String, String), Undecodable>>);

impl BadAgents {
    fn note(&self, bad: Undecodable) {
        if let Ok(mut m) = self.0.lock() {
            let key = (bad.namespace.clone(), bad.name.clone());
            if m.get(&key) != Some(&bad) {
                tracing::warn!(agent = %format!("{}/{}", bad.namespace, bad.name), error = %bad.error, "GeometricAgent cannot be decoded; skipped until it is fixed");
            }
            m.insert(key, bad);
        }
    }

    fn clear(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&(namespace.to_string(), name.to_string()));
        }
    }

    /// Every undecodable agent, sorted.
    pub fn all(&self) -> Vec<Undecodable> {
        self.0.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

/// The API resource of GeometricAgents, for untyped reads.
pub fn agent_resource() -> ApiResource {
    ApiResource::erase::<GeometricAgent>(&())
}

/// Decodes one stored agent, naming the offending field on failure.
pub fn decode(obj: &DynamicObject) -> Result<GeometricAgent, Undecodable> {
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let fail = |error: String| Undecodable {
        namespace: namespace.clone(),
        name: name.clone(),
        error,
    };
    let value = serde_json::to_value(obj).map_err(|e| fail(e.to_string()))?;
    serde_path_to_error::deserialize::<_, GeometricAgent>(value)
        .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))
}

/// kubectl's copy of the last applied manifest (client-side apply): a second copy of the spec.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no loop reads and what dominates a stored agent's size: the field sets of
/// `metadata.managedFields` (each entry keeps its manager, operation and time: the scaler's
/// cooldown reads its own write time) and kubectl's last-applied-configuration annotation.
/// Every cached or listed agent goes through this before it is decoded and kept.
pub fn slim(obj: &mut DynamicObject) {
    for entry in obj.metadata.managed_fields.iter_mut().flatten() {
        entry.fields_v1 = None;
    }
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            obj.metadata.annotations = None;
        }
    }
}

/// Reduces a decoded agent to what the loops read from the shared cache: the pod template to
/// its [`TemplateSummary`](super::crd::agent::TemplateSummary) (requests and node selector;
/// a pod is built from a freshly read agent) and `managedFields` to the scaler's own entries
/// (its cooldown reads their time). A cached agent then costs ~3 KB instead of ~7 KB (heap
/// profile at 2,000 agents: the cache was a third of the operator's peak heap).
pub fn compact(agent: &mut GeometricAgent) {
    agent.spec.template = agent.spec.template.summarised();
    if let Some(fields) = agent.metadata.managed_fields.as_mut() {
        fields.retain(|e| e.manager.as_deref() == Some(super::crd::agent::SCALER_MANAGER));
        if fields.is_empty() {
            agent.metadata.managed_fields = None;
        }
    }
}

fn agent_ns(obj: &DynamicObject) -> String {
    obj.metadata.namespace.clone().unwrap_or_default()
}

fn agent_name(obj: &DynamicObject) -> String {
    obj.metadata.name.clone().unwrap_or_default()
}

/// A minimal agent carrying only `namespace/name`, for deleting that key from a cache.
fn stand_in(namespace: &str, name: &str) -> Option<GeometricAgent> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"workloadType": "batch", "template": {}},
    }))
    .ok()
}

/// A watch of untyped agents turned into one of decoded agents: undecodable objects are noted
/// in `bad` (a delete of one clears it), the rest pass [`compact`]ed (the whole template is
/// decoded first, so a bad one is still found). An update that makes an agent
/// undecodable, and the deletion of an undecodable one, pass as a `Delete` of a stand-in with
/// its name, so a cache fed by this stream (the agent controller's, read by every loop) drops
/// the last good version instead of acting on it.
pub fn decoded_events<S>(
    events: S,
    bad: std::sync::Arc<BadAgents>,
) -> impl Stream<Item = Result<Event<GeometricAgent>, watcher::Error>> + Send
where
    S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send,
{
    events.filter_map(move |event| {
        let bad = bad.clone();
        async move {
            let decoded = |mut obj: DynamicObject| {
                slim(&mut obj);
                match decode(&obj) {
                    Ok(mut agent) => {
                        bad.clear(&agent_ns(&obj), &agent_name(&obj));
                        compact(&mut agent);
                        Some(agent)
                    }
                    Err(u) => {
                        bad.note(u);
                        None
                    }
                }
            };
            match event {
                Err(e) => Some(Err(e)),
                Ok(Event::Init) => Some(Ok(Event::Init)),
                Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
                Ok(Event::InitApply(obj)) => decoded(obj).map(|a| Ok(Event::InitApply(a))),
                Ok(Event::Apply(obj)) => {
                    let (ns, name) = (agent_ns(&obj), agent_name(&obj));
                    match decoded(obj) {
                        Some(a) => Some(Ok(Event::Apply(a))),
                        None => stand_in(&ns, &name).map(|a| Ok(Event::Delete(a))),
                    }
                }
                Ok(Event::Delete(obj)) => {
                    let (ns, name) = (agent_ns(&obj), agent_name(&obj));
                    bad.clear(&ns, &name);
                    decode(&obj)
                        .ok()
                        .or_else(|| stand_in(&ns, &name))
                        .map(|a| Ok(Event::Delete(a)))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(port: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workloadType": "batch", "replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "pause", "ports": [{"containerPort": port}]}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn slimming_drops_field_sets_and_the_last_applied_copy_but_keeps_write_times_and_other_annotations() {
        let mut obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": "a", "namespace": "n",
                "annotations": {LAST_APPLIED: "{\"spec\":{}}", "team": "blue"},
                "managedFields": [{"manager": "mom-scaler", "operation": "Apply", "time": "2026-12-04T05:00:00Z",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"workloadType": "batch", "template": {}},
        }))
        .unwrap();
        slim(&mut obj);
        let annotations = obj.metadata.annotations.clone().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), vec!["team"]);
        let entry = &obj.metadata.managed_fields.as_ref().unwrap()[0];
        assert!(entry.fields_v1.is_none());
        assert_eq!(entry.manager.as_deref(), Some("mom-scaler"));
        assert!(entry.time.is_some(), "the scaler's cooldown reads its write time");
        assert!(decode(&obj).is_ok());
    }

    #[test]
    fn a_compacted_agent_keeps_what_the_loops_read_and_drops_the_rest_of_its_template() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": "a", "namespace": "n", "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-04T04:00:00Z"},
                {"manager": "mom-scaler", "operation": "Apply", "time": "2026-12-04T05:00:00Z"}]},
            "spec": {"workloadType": "batch", "replicas": 2, "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"nodeSelector": {crate::labels::POOL_LABEL: "gpu"},
                         "initContainers": [{"name": "i", "image": "busybox", "resources": {"requests": {"cpu": "2"}}}],
                         "containers": [{"name": "c", "image": "nginx", "command": ["nginx", "-g", "daemon off;"],
                                         "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}}},
        }))
        .unwrap();
        let full = decode(&obj).unwrap();
        let mut cached = full.clone();
        compact(&mut cached);
        // Positive control: the full agent has a template to build pods from.
        assert!(!full.spec.template.is_summary_only());
        assert!(cached.spec.template.is_summary_only());
        assert!(cached.spec.template.metadata.is_none() && cached.spec.template.spec.is_none());
        // What the auction, the pools and the scaler read is the same from both.
        assert_eq!(super::super::pools::pool_of(&cached), "gpu");
        assert_eq!(super::super::pools::pool_of(&full), "gpu");
        assert_eq!(cached.spec.template.summary(), full.spec.template.summary());
        let summary = cached.spec.template.summary();
        let requests = crate::operator::view::effective_requests(
            summary.containers.iter().map(|c| &c.requests),
            summary.init_containers.iter().map(|c| &c.requests),
        )
        .unwrap();
        assert_eq!(
            (requests.cpu_millis, requests.memory_bytes),
            (2000, 64 << 20),
            "init containers count"
        );
        // Only the scaler's write time stays.
        let managers: Vec<_> = cached
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|m| m.manager.clone().unwrap_or_default())
            .collect();
        assert_eq!(managers, ["mom-scaler"]);
        // The summary never reaches the wire: serialised, the compacted template is empty.
        let json = serde_json::to_value(&cached).unwrap();
        assert_eq!(json["spec"]["template"], serde_json::json!({}));
        let round: GeometricAgent = serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        assert_eq!(round, full, "the template round-trips as a PodTemplateSpec");
    }

    #[test]
    fn an_undecodable_agent_is_named_with_the_path_of_its_bad_field() {
        assert!(decode(&object(8080.into())).is_ok());
        let bad = decode(&object("http".into())).unwrap_err();
        assert_eq!((bad.namespace.as_str(), bad.name.as_str()), ("shop", "web"));
        assert!(
            bad.error
                .starts_with("spec.template.spec.containers[0].ports[0].containerPort: invalid type: string \"http\""),
            "{}",
            bad.error
        );
    }

    #[tokio::test]
    async fn a_watch_skips_an_undecodable_agent_and_passes_the_others() {
        let bad = std::sync::Arc::new(BadAgents::default());
        let mut good = object(8080.into());
        good.metadata.name = Some("api".into());
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(object("http".into()))),
            Ok(Event::InitApply(good)),
            Ok(Event::InitDone),
        ]);
        let out: Vec<_> = decoded_events(events, bad.clone()).collect().await;
        let names: Vec<String> = out
            .iter()
            .map(|e| match e {
                Ok(Event::InitApply(a)) => a.metadata.name.clone().unwrap(),
                Ok(Event::Init) => "init".into(),
                Ok(Event::InitDone) => "done".into(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(names, vec!["init", "api", "done"]);
        assert_eq!(bad.all().len(), 1);
        // Its delete clears it.
        let _: Vec<_> = decoded_events(
            futures::stream::iter(vec![Ok(Event::Delete(object("http".into())))]),
            bad.clone(),
        )
        .collect()
        .await;
        assert!(bad.all().is_empty());
    }

    #[tokio::test]
    async fn an_agent_that_turns_undecodable_leaves_a_cache_fed_by_the_watch() {
        let bad = std::sync::Arc::new(BadAgents::default());
        // A cache fed a list of `web` and `api`, then `later`: the names it holds.
        let cached = |later: Vec<Result<Event<DynamicObject>, watcher::Error>>| {
            let bad = bad.clone();
            async move {
                let (store, writer) = kube::runtime::reflector::store::<GeometricAgent>();
                let mut api = object(8080.into());
                api.metadata.name = Some("api".into());
                let mut events = vec![
                    Ok(Event::Init),
                    Ok(Event::InitApply(object(8080.into()))),
                    Ok(Event::InitApply(api)),
                    Ok(Event::InitDone),
                ];
                events.extend(later);
                let _: Vec<_> = kube::runtime::reflector(writer, decoded_events(futures::stream::iter(events), bad))
                    .collect()
                    .await;
                let mut names: Vec<String> = store
                    .state()
                    .iter()
                    .map(|a| a.metadata.name.clone().unwrap_or_default())
                    .collect();
                names.sort();
                names
            }
        };
        assert_eq!(cached(vec![]).await, ["api", "web"], "positive control: both cached");
        // An update that breaks `web`: it leaves, `api` stays.
        assert_eq!(cached(vec![Ok(Event::Apply(object("http".into())))]).await, ["api"]);
        assert_eq!(bad.all().len(), 1);
    }
}
