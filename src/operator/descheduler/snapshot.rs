//! The descheduler's snapshot, built purely from listed nodes, pods and agents and the placement
//! view (testable without an apiserver): which pods must never move ([`protection`]), which nodes
//! are unhealthy or anomalous ([`node_flags`]), and the core [`crate::descheduler::Snapshot`] the
//! planner takes ([`build_snapshot`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::descheduler::{self as core, Agent, Peer, Snapshot};
use crate::labels::{AGENT_LABEL, ANOMALOUS_LABEL, ISOLATION_LABEL, OPT_OUT_ANNOTATION, ROLE_LABEL};
use crate::operator::crd::GeometricAgent;
use crate::operator::view::{AgentKey, View};
use crate::placement::Resources;

/// Why a pod must never be evicted, if it must not.
pub fn protection(pod: &Pod) -> Option<&'static str> {
    if pod
        .annotations()
        .get(OPT_OUT_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        return Some("opted out by annotation");
    }
    if pod.owner_references().iter().any(|o| o.kind == "DaemonSet") {
        return Some("DaemonSet pod");
    }
    if pod.annotations().contains_key("kubernetes.io/config.mirror") {
        return Some("static (mirror) pod");
    }
    let spec = pod.spec.as_ref()?;
    if spec
        .priority_class_name
        .as_deref()
        .is_some_and(|c| c == "system-cluster-critical" || c == "system-node-critical")
    {
        return Some("system-critical pod");
    }
    if spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.empty_dir.is_some() || v.host_path.is_some())
    {
        return Some("pod with local storage");
    }
    None
}

/// (unhealthy, anomalous) of a node: the MOM labels, or a Ready condition that is not True.
pub fn node_flags(node: &Node) -> (bool, bool) {
    let label = |k: &str| node.labels().get(k).is_some_and(|v| v == "true");
    (crate::operator::view::node_unhealthy(node), label(ANOMALOUS_LABEL))
}

/// What the snapshot reads of a pod, kept instead of the pod: the descheduler reads every pod
/// of the cluster a page at a time, and a decoded `Pod` is several KB (tens of MB at 10,000
/// pods) where these facts are a few hundred bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub requests: Resources,
    /// The value of [`AGENT_LABEL`], when set.
    pub agent_label: Option<String>,
    /// Strict isolation on a pod an agent controls (`tenancy`).
    pub strict_isolation: bool,
    /// A failover standby (`mom.hypersync.io/role=standby`).
    pub standby: bool,
    /// When its cool-off starts ([`cool_off_start`]: `creationTimestamp` + 1 s).
    pub created: Option<u64>,
    pub node_selector: BTreeMap<String, String>,
    /// Why the pod must never be evicted ([`protection`]).
    pub protection: Option<&'static str>,
}

impl PodFacts {
    /// The facts of a pod the descheduler may consider: bound to a node, not being deleted, not
    /// finished; `None` otherwise.
    pub fn of(p: &Pod) -> Option<Self> {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone())?;
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if p.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let labels = p.labels();
        Some(Self {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            node,
            requests: crate::operator::view::pod_requests(p).unwrap_or_default(),
            agent_label: labels.get(AGENT_LABEL).cloned(),
            strict_isolation: crate::operator::tenancy::controlling_agent(p).is_some()
                && labels.get(ISOLATION_LABEL).map(String::as_str) == Some("strict"),
            standby: labels.get(ROLE_LABEL).map(String::as_str) == Some("standby"),
            created: cool_off_start(p),
            node_selector: p
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default(),
            protection: protection(p),
        })
    }
}

/// When a pod's cool-off starts, in whole seconds: its `creationTimestamp` rounded **up**.
///
/// The apiserver keeps `creationTimestamp` in whole seconds, cut down, so a pod stamped `t` was
/// created somewhere in `[t, t + 1)`. Taking `t + 1` (the latest possible instant) and the
/// caller's `now` cut down too, `now − start ≥ coolOffSeconds` can only hold once the pod is
/// really at least `coolOffSeconds` old; with `t` a pod created at `t + 0.9` could be evicted
/// `coolOffSeconds − 0.9` s after its birth.
pub fn cool_off_start(pod: &Pod) -> Option<u64> {
    let t = pod.metadata.creation_timestamp.as_ref()?.0;
    Some((t.as_second().max(0) as u64).saturating_add(1))
}

/// The core snapshot from listed objects and the placement view. Nodes without a position
/// (not embedded yet) and pods not bound to a known node are left out. Each agent's target of
/// the last tick comes from the view ([`View::steered_target`]); `blocked` pods (PDB back-off)
/// are marked protected.
pub fn build_snapshot(
    nodes: &[Node],
    pods: &[PodFacts],
    agents: &[std::sync::Arc<GeometricAgent>],
    view: &View,
    blocked: &BTreeSet<String>,
    now: u64,
) -> Snapshot {
    let mut out_nodes: BTreeMap<String, core::Node> = BTreeMap::new();
    for n in nodes {
        let name = n.name_any();
        let Some(position) = view.node_position(&name).cloned() else {
            continue;
        };
        let (unhealthy, anomalous) = node_flags(n);
        // A domain the failover planner drains is evacuated like an unhealthy node.
        let unhealthy = unhealthy || view.predicted_drain(&name);
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.clone());
        out_nodes.insert(
            name.clone(),
            core::Node {
                labels: n.labels().clone().into_iter().collect(),
                name,
                position,
                allocatable: Resources {
                    cpu_millis: get("cpu")
                        .and_then(|q| crate::placement::quantity::cpu_millis(&q).ok())
                        .unwrap_or(0),
                    memory_bytes: get("memory")
                        .and_then(|q| crate::placement::quantity::memory_bytes(&q).ok())
                        .unwrap_or(0),
                },
                requested: Resources::default(),
                used: Resources::default(),
                max_pods: get("pods").and_then(|q| q.parse().ok()).unwrap_or(110),
                pods: 0,
                unhealthy,
                anomalous,
            },
        );
    }
    let agent_keys: BTreeSet<String> = agents.iter().map(|a| AgentKey::of(a).to_string()).collect();
    let mut out_pods = Vec::new();
    for p in pods {
        let Some(n) = out_nodes.get_mut(&p.node) else { continue };
        n.requested = n.requested.saturating_add(p.requests);
        n.used = n.used.saturating_add(p.requests);
        n.pods += 1;
        let ns = p.namespace.clone();
        let key = format!("{ns}/{}", p.name);
        let agent = p
            .agent_label
            .as_ref()
            .map(|a| AgentKey::new(ns.clone(), a.clone()).to_string())
            .filter(|k| agent_keys.contains(k));
        let tenant = view.tenant_of(&ns);
        out_pods.push(core::Pod {
            name: p.name.clone(),
            namespace: ns,
            node: p.node.clone(),
            agent,
            // The namespace's tenant; isolation only on pods an agent controls (`tenancy`).
            tenant: Some(tenant),
            strict_isolation: p.strict_isolation,
            standby: p.standby,
            requests: p.requests,
            usage: p.requests,
            node_selector: p.node_selector.clone().into_iter().collect(),
            last_evicted_at: p.created,
            protected: p.protection.is_some() || blocked.contains(&key),
        });
    }
    out_pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut out_agents: Vec<Agent> = agents
        .iter()
        .map(|a| {
            let ns = a.namespace().unwrap_or_default();
            let agent_key = AgentKey::of(a);
            let key = agent_key.to_string();
            let policy = view.policy_for(&agent_key);
            Agent {
                target: policy.as_ref().map(|p| p.target.clone()).filter(|t| !t.is_empty()),
                previous_target: view.steered_target(&key).cloned(),
                peers: a
                    .spec
                    .peers
                    .iter()
                    .map(|p| Peer {
                        agent: AgentKey::new(ns.clone(), p.agent.clone()).to_string(),
                        weight: p.weight,
                    })
                    .filter(|p| agent_keys.contains(&p.agent))
                    .collect(),
                avoid_nodes: policy.as_ref().map(|p| p.avoid_nodes.clone()).unwrap_or_default(),
                max_distance: policy.as_ref().and_then(|p| p.max_distance),
                label_rules: policy
                    .as_ref()
                    .map(|p| crate::descheduler::LabelRules {
                        required_data_nodes: p.locality.as_ref().filter(|l| l.required).map(|l| l.data_nodes.clone()),
                        preferred_regions: p.preferred_regions.clone(),
                        region_label: p.region_label.clone(),
                    })
                    .unwrap_or_default(),
                name: key,
            }
        })
        .collect();
    out_agents.sort_by(|a, b| a.name.cmp(&b.name));
    // A previous target from another embedding would not be a point of this one.
    let dim = out_nodes.values().next().map(|n| n.position.len()).unwrap_or(0);
    for a in &mut out_agents {
        if a.previous_target.as_ref().is_some_and(|t| t.len() != dim) {
            a.previous_target = None;
        }
        if a.target.as_ref().is_some_and(|t| t.len() != dim) {
            a.target = None;
        }
    }
    Snapshot {
        kappa: view.settings.kappa,
        now,
        nodes: out_nodes.into_values().collect(),
        pods: out_pods,
        agents: out_agents,
    }
}
