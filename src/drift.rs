//! Drift: which changes to an object MOM manages were made by someone else, read from the
//! object's field-ownership records (`metadata.managedFields`).
//!
//! Every write to an object is recorded by the apiserver under the writer's field manager, with
//! the fields it set (`fieldsV1`). A pod MOM created from an agent's template has MOM's own entry
//! (`mom-operator`), the kubelet's (here kwok's) on the `status` subresource, and nothing else
//! until someone edits it: `kubectl label` adds an entry `kubectl-label` owning the label,
//! `kubectl set image` one `kubectl-set` owning the container's image, and so on. An entry is
//! drift when its manager is not MOM's and it is on the object itself or on a subresource that
//! changes the pod's spec (`ephemeralcontainers`, `resize`); entries on `status`, `binding` and
//! `eviction` are the normal life of a pod.
//!
//! Pure: input the entries as plain data, output the foreign managers with the fields each owns
//! as readable paths (`metadata.labels.evil`, `spec.containers[name=c].image`).

use serde_json::Value;

/// Subresources whose writes are not drift: the kubelet's status, the scheduler's binding, an
/// eviction.
pub const ROUTINE_SUBRESOURCES: [&str; 3] = ["status", "binding", "eviction"];

/// At most this many field paths are named per manager.
pub const MAX_PATHS: usize = 8;

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldEntry {
    pub manager: String,
    /// `Update` or `Apply`.
    pub operation: String,
    /// Empty for the object itself.
    pub subresource: String,
    /// The `fieldsV1` document.
    pub fields: Value,
}

/// A foreign writer and the fields it owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignChange {
    pub manager: String,
    /// Readable paths, sorted, at most [`MAX_PATHS`] (then `…`).
    pub fields: Vec<String>,
}

impl std::fmt::Display for ForeignChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} by {}", self.fields.join(", "), self.manager)
    }
}

/// The writers other than `own` of an object with `entries`, sorted by manager (entries of one
/// manager merged), with the fields each owns. Empty: no drift.
pub fn foreign_changes(own: &str, entries: &[FieldEntry]) -> Vec<ForeignChange> {
    let mut by_manager: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> = Default::default();
    for e in entries {
        if e.manager == own || ROUTINE_SUBRESOURCES.contains(&e.subresource.as_str()) {
            continue;
        }
        let mut paths = Vec::new();
        field_paths(&e.fields, "", &mut paths);
        if !e.subresource.is_empty() {
            paths
                .iter_mut()
                .for_each(|p| *p = format!("{p} (subresource {})", e.subresource));
        }
        by_manager.entry(e.manager.as_str()).or_default().extend(paths);
    }
    by_manager
        .into_iter()
        .filter(|(_, paths)| !paths.is_empty())
        .map(|(manager, paths)| {
            let mut fields: Vec<String> = paths.iter().take(MAX_PATHS).cloned().collect();
            if paths.len() > MAX_PATHS {
                fields.push("…".into());
            }
            ForeignChange {
                manager: manager.to_string(),
                fields,
            }
        })
        .collect()
}

/// The leaf paths of a `fieldsV1` document: `f:name` is a field, `k:{"name":"c"}` a list item by
/// key (`[name=c]`), `v:…` a set member, `i:N` an item by index; `.` marks the node itself.
fn field_paths(node: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.to_string());
        }
        return;
    }
    for (key, child) in children {
        let step = if let Some(name) = key.strip_prefix("f:") {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        } else if let Some(k) = key.strip_prefix("k:") {
            let inner = serde_json::from_str::<serde_json::Map<String, Value>>(k)
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| {
                            format!(
                                "{a}={}",
                                b.as_str().map(str::to_string).unwrap_or_else(|| b.to_string())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|_| k.to_string());
            format!("{prefix}[{inner}]")
        } else if let Some(v) = key.strip_prefix("v:") {
            format!("{prefix}[{v}]")
        } else if let Some(i) = key.strip_prefix("i:") {
            format!("{prefix}[{i}]")
        } else {
            format!("{prefix}.{key}")
        };
        field_paths(child, &step, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, subresource: &str, fields: Value) -> FieldEntry {
        FieldEntry {
            manager: manager.into(),
            operation: "Update".into(),
            subresource: subresource.into(),
            fields,
        }
    }

    /// What a MOM pod carries before anyone touches it (from a real apiserver).
    fn pristine() -> Vec<FieldEntry> {
        vec![
            entry(
                "mom-operator",
                "",
                json!({"f:metadata": {"f:labels": {".": {}, "f:mom.hypersync.io/agent": {}}},
                       "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}),
            ),
            entry("kwok", "status", json!({"f:status": {"f:phase": {}}})),
            entry("kube-scheduler", "binding", json!({"f:spec": {"f:nodeName": {}}})),
        ]
    }

    #[test]
    fn a_pod_only_mom_and_the_kubelet_wrote_has_no_drift() {
        assert!(foreign_changes("mom-operator", &pristine()).is_empty());
    }

    #[test]
    fn a_label_and_an_image_set_by_kubectl_are_named_with_their_writers() {
        let mut entries = pristine();
        entries.push(entry(
            "kubectl-label",
            "",
            json!({"f:metadata": {"f:labels": {"f:evil": {}}}}),
        ));
        entries.push(entry(
            "kubectl-set",
            "",
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:image": {}}}}}),
        ));
        let drift = foreign_changes("mom-operator", &entries);
        assert_eq!(
            drift,
            vec![
                ForeignChange {
                    manager: "kubectl-label".into(),
                    fields: vec!["metadata.labels.evil".into()],
                },
                ForeignChange {
                    manager: "kubectl-set".into(),
                    fields: vec!["spec.containers[name=c].image".into()],
                },
            ]
        );
        assert_eq!(drift[1].to_string(), "spec.containers[name=c].image by kubectl-set");
        // Control: the same entries seen as the writer's own are no drift.
        assert!(foreign_changes("kubectl-label", &entries[3..4]).is_empty());
    }

    #[test]
    fn a_debug_container_is_drift_and_long_field_lists_are_cut() {
        let debug = entry(
            "kubectl-debug",
            "ephemeralcontainers",
            json!({"f:spec": {"f:ephemeralContainers": {"k:{\"name\":\"debugger\"}": {".": {}, "f:image": {}}}}}),
        );
        let d = foreign_changes("mom-operator", &[debug]);
        assert_eq!(
            d[0].fields,
            vec!["spec.ephemeralContainers[name=debugger].image (subresource ephemeralcontainers)"]
        );
        let many: serde_json::Map<String, Value> = (0..20).map(|i| (format!("f:l{i:02}"), json!({}))).collect();
        let d = foreign_changes(
            "mom-operator",
            &[entry("x", "", json!({"f:metadata": {"f:labels": many}}))],
        );
        assert_eq!(d[0].fields.len(), MAX_PATHS + 1);
        assert_eq!(d[0].fields.last().map(String::as_str), Some("…"));
    }
}
