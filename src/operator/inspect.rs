//! Read-only inspection of a running MOM for `kubectl mom`: rebuilds the operator's placement
//! view from lists (MomConfig, namespaces, nodes, node heartbeats, pods, agents, strategies)
//! with the same functions the watches and the agent controller feed it with, and answers
//! `status`, `why` and `top` from it. Nothing is written.
//!
//! `why` explains a pod's placement from its bind receipt (only receipts signed by a key the
//! operator published are believed) and a live re-score: the extender's own filter
//! ([`super::extender::filter_in_view`]) and scores ([`super::extender::Candidates::score`],
//! term by term) over every node in MOM's view, with the pod itself taken out of the view (it is
//! being placed, as it was at bind time). kube-scheduler's own filters (taints, affinity) are
//! not re-run.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::crd::{GeometricAgent, MomConfig, OrchestrationStrategy};
use super::view::{AgentKey, Heartbeat, View, pod_record};
use crate::placement::{self, NodeScore};

/// Why an inspection could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The caller named something that does not exist or cannot be read (exit code 2).
    #[error("pod {name:?} not found in namespace {namespace:?}")]
    PodNotFound { namespace: String, name: String },
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("reading receipts: {0}")]
    Receipts(#[from] super::store::StoreError),
}

fn listing(what: &'static str) -> impl FnOnce(kube::Error) -> InspectError {
    move |source| InspectError::List { what, source }
}

/// The cluster as the operator would see it now.
pub struct Live {
    pub view: View,
    pub config: Option<MomConfig>,
    pub agents: Vec<GeometricAgent>,
    pub strategies: Vec<OrchestrationStrategy>,
}

impl Live {
    /// Lists everything placement depends on; `leave_out` (a pod's namespace and name) is not
    /// counted in the view (it is the pod being explained).
    pub async fn load(client: &Client, leave_out: Option<(&str, &str)>) -> Result<Self, InspectError> {
        let lp = ListParams::default();
        let configs: Api<MomConfig> = Api::all(client.clone());
        // No MomConfig CRD or object (both read as not found): the operator runs with its
        // defaults, so does the view. Any other error (e.g. forbidden) is reported.
        let config = configs.get_opt("default").await.map_err(listing("momconfigs"))?;
        let namespaces = Api::<Namespace>::all(client.clone())
            .list(&lp)
            .await
            .map_err(listing("namespaces"))?
            .items;
        let nodes = Api::<Node>::all(client.clone())
            .list(&lp)
            .await
            .map_err(listing("nodes"))?
            .items;
        // Node heartbeats: a node whose kubelet stopped renewing is refused by the filter.
        let leases = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .list(&lp)
            .await
            .map_err(listing("leases in kube-node-lease"))?
            .items;
        let pods: Vec<Pod> = Api::<Pod>::all(client.clone())
            .list(&lp)
            .await
            .map_err(listing("pods"))?
            .items
            .into_iter()
            .filter(|p| leave_out != Some((p.namespace().unwrap_or_default().as_str(), p.name_any().as_str())))
            .collect();
        let agents = Api::<GeometricAgent>::all(client.clone())
            .list(&lp)
            .await
            .map_err(listing("geometricagents"))?
            .items;
        let strategies = Api::<OrchestrationStrategy>::all(client.clone())
            .list(&lp)
            .await
            .map_err(listing("orchestrationstrategies"))?
            .items;

        let mut view = View::default();
        if let Some(cfg) = &config {
            super::watch::apply_config(&mut view, cfg);
        }
        view.replace_namespaces(&namespaces);
        view.replace_nodes(&nodes);
        view.reembed();
        view.replace_heartbeats(leases.iter().filter_map(Heartbeat::of).collect());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        view.mark_silent(now_ms);
        view.replace_pods(&pods);
        // Each agent's policy as the agent controller resolves it, under the strategy it reports.
        let shared = super::view::SharedView::new(view);
        // (namespace, name) → agent, for gathering peer groups without a scan per peer.
        let by_key: BTreeMap<(String, String), &GeometricAgent> = agents
            .iter()
            .map(|a| ((a.namespace().unwrap_or_default(), a.name_any()), a))
            .collect();
        for agent in &agents {
            let ns = agent.namespace().unwrap_or_default();
            let strategy = agent
                .status
                .as_ref()
                .and_then(|s| s.strategy.as_deref())
                .and_then(|name| {
                    strategies
                        .iter()
                        .find(|s| s.name_any() == name && s.namespace().as_deref() == Some(ns.as_str()))
                });
            let home_key =
                super::agents::group_home_key(agent, |name| by_key.get(&(ns.clone(), name.to_string())).copied());
            super::agents::resolve_policy(agent, strategy, &shared, home_key);
        }
        let view = Arc::unwrap_or_clone(shared.read());
        Ok(Self {
            view,
            config,
            agents,
            strategies,
        })
    }
}

/// What the bind receipt of a pod says.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindRecord {
    pub sequence: u64,
    pub time: String,
    pub node: String,
    pub agent: Option<String>,
    pub distance_from_target: Option<f64>,
}

/// One candidate node of a live re-score.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub node: String,
    /// `pass`, `fail` (preemption could help) or `unresolvable`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The score prioritize gives it (for every node MOM knows, passing or not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<NodeScore>,
}

/// `kubectl mom why pod/NAME`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Why {
    pub namespace: String,
    pub pod: String,
    /// Where the pod runs now (`spec.nodeName`).
    pub node: Option<String>,
    pub agent: Option<String>,
    /// The newest trusted bind receipt of this pod (object uid matched when recorded).
    pub bind: Option<BindRecord>,
    /// The agent's target used by the re-score.
    pub target: Vec<f64>,
    pub routing: placement::Routing,
    pub objectives: placement::Objectives,
    pub candidates: Vec<Candidate>,
    /// The best-scored passing node of the re-score (ties: first name).
    pub best: Option<String>,
}

/// Explains where `namespace/name` was placed and how every node scores for it now.
pub async fn why(client: &Client, mom_namespace: &str, namespace: &str, name: &str) -> Result<Why, InspectError> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(listing("pods"))?
        .ok_or_else(|| InspectError::PodNotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?;
    let uid = pod.metadata.uid.clone();
    let receipts = super::store::trusted_objects(client, mom_namespace).await?;
    let bind = receipts
        .iter()
        .rev()
        .map(|(_, _, r)| r)
        .find(|r| {
            r.decision["kind"] == placement::bind::BIND_KIND
                && r.subject.namespace == namespace
                && r.subject.name == name
                && (r.subject.uid.is_none() || r.subject.uid == uid)
        })
        .map(|r| BindRecord {
            sequence: r.sequence,
            time: r.time.clone(),
            node: r.decision["node"].as_str().unwrap_or_default().to_string(),
            agent: r.decision["agent"].as_str().map(str::to_string),
            distance_from_target: r.decision["output"]["distanceFromTarget"].as_f64(),
        });
    let live = Live::load(client, Some((namespace, name))).await?;
    let view = &live.view;
    let mut rec = pod_record(&pod).ok_or_else(|| InspectError::PodNotFound {
        namespace: namespace.to_string(),
        name: format!("{name} (it has finished)"),
    })?;
    rec.node = None;
    let names: Vec<String> = view.node_names().cloned().collect();
    let verdict = super::extender::filter_in_view(view, &rec, &names);
    let candidates = super::extender::Candidates::of(view, &rec, &names);
    let scores: BTreeMap<String, NodeScore> = candidates
        .score(&view.settings)
        .into_iter()
        .map(|s| (s.node.clone(), s))
        .collect();
    let out: Vec<Candidate> = names
        .iter()
        .map(|n| {
            let (verdict, reason) = if let Some(r) = verdict.unresolvable.get(n) {
                ("unresolvable", Some(r.clone()))
            } else if let Some(r) = verdict.failed.get(n) {
                ("fail", Some(r.clone()))
            } else {
                ("pass", None)
            };
            Candidate {
                node: n.clone(),
                verdict,
                reason,
                score: scores.get(n).cloned(),
            }
        })
        .collect();
    let best = out
        .iter()
        .filter(|c| c.verdict == "pass")
        .filter_map(|c| c.score.as_ref().map(|s| (s.score, &c.node)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, n)| n.clone());
    Ok(Why {
        namespace: namespace.to_string(),
        pod: name.to_string(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        agent: rec.agent.as_ref().map(|k| k.name.clone()),
        bind,
        target: candidates.policy.map(|p| p.target).unwrap_or_default(),
        routing: view.settings.routing,
        objectives: view.settings.objectives,
        candidates: out,
        best,
    })
}

/// `kubectl mom status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Holder of the leader Lease, and when it last renewed it.
    pub leader: Option<String>,
    pub leader_renewed: Option<String>,
    /// Whether the MomConfig `default` exists (else the operator runs on its defaults).
    pub config: bool,
    pub mode: String,
    pub routing: placement::Routing,
    pub verification: String,
    pub nodes: usize,
    pub agents: usize,
    /// Resource pressure per node pool (what the auction computes: wanted / capacity).
    pub pools: Vec<PoolPressure>,
    pub chain_head: Option<super::crd::momconfig::ChainHead>,
    pub last_checkpoint: Option<super::crd::momconfig::CheckpointRef>,
    /// `spec.budget.maxHourlyCost`.
    pub budget: Option<f64>,
    /// Cost per hour of the agents' pods now (the budget's pricing), computed live.
    pub hourly_cost: f64,
    /// The MomConfig's `status.rootCause`: the domain behind the current anomaly flags.
    pub root_cause: Option<super::crd::momconfig::RootCauseStatus>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolPressure {
    pub pool: String,
    pub level: &'static str,
    pub utilisation: Option<f64>,
    pub agents: usize,
    pub nodes: usize,
}

/// The leader, modes, pressure per pool, receipt chain head and budget.
pub async fn status(client: &Client, mom_namespace: &str, lease_name: &str) -> Result<Status, InspectError> {
    let lease = Api::<Lease>::namespaced(client.clone(), mom_namespace)
        .get_opt(lease_name)
        .await
        .map_err(listing("leases"))?;
    let spec = lease.and_then(|l| l.spec);
    let live = Live::load(client, None).await?;
    let v = &live.view;
    let nodes: Vec<super::auction::snapshot::NodeSnapshot> = v
        .schedulable_nodes()
        .into_iter()
        .map(|(name, labels, allocatable)| super::auction::snapshot::NodeSnapshot {
            name,
            labels,
            allocatable,
        })
        .collect();
    let mut snapshots = super::auction::snapshot::pool_snapshots(
        live.agents
            .iter()
            .map(|a| super::auction::snapshot::agent_snapshot(a, v.tenant_of(&a.namespace().unwrap_or_default())))
            .collect(),
        &nodes,
        &v.bound_pods(),
    );
    // As the auction loop: with a budget, each pool is offered only what the budget pays for.
    if let Some(max) = v.settings.max_hourly_cost {
        super::auction::snapshot::apply_budget(&mut snapshots, max, &v.priced_pods(), &v.priced_nodes().0);
    }
    let pools = snapshots
        .iter()
        .map(|(pool, snap)| {
            let demands: Vec<_> = snap.agents.iter().map(|a| a.demand.clone()).collect();
            let p = crate::auction::quota::pressure(&demands, &snap.nodes);
            PoolPressure {
                pool: pool.clone(),
                level: p.level.as_str(),
                utilisation: p.utilisation,
                agents: snap.agents.len(),
                nodes: snap.nodes.len(),
            }
        })
        .collect();
    let priced: Vec<_> = v.priced_pods().into_iter().map(|(_, p)| p).collect();
    let cfg = live.config.as_ref();
    let st = cfg.and_then(|c| c.status.as_ref());
    Ok(Status {
        leader: spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        leader_renewed: spec.and_then(|s| s.renew_time).map(|t| t.0.to_string()),
        config: cfg.is_some(),
        mode: cfg
            .map(|c| enum_name(&c.spec.mode))
            .unwrap_or_else(|| "centralized".into()),
        routing: v.settings.routing,
        verification: enum_name(&v.settings.recording.level),
        nodes: v.node_count(),
        agents: live.agents.len(),
        pools,
        chain_head: st.and_then(|s| s.receipt_chain_head.clone()),
        last_checkpoint: st.and_then(|s| s.last_checkpoint.clone()),
        budget: v.settings.max_hourly_cost,
        hourly_cost: crate::budget::hourly_cost(&priced, &v.priced_nodes().0),
        root_cause: st.and_then(|s| s.root_cause.clone()),
    })
}

fn enum_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One agent's row of `kubectl mom top`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUsage {
    pub namespace: String,
    pub agent: String,
    /// Pods of the agent bound to a node.
    pub placed: usize,
    pub replicas: i32,
    /// Cost per hour of its pods (the budget's pricing).
    pub hourly_cost: f64,
    /// Mean hyperbolic distance of its placed pods from its target.
    pub mean_distance: Option<f64>,
    /// That distance in milliseconds, when node positions follow measured latencies.
    pub latency_ms: Option<f64>,
}

/// Every agent's cost and distance (latency) from its target, unsorted.
pub async fn top(client: &Client) -> Result<Vec<AgentUsage>, InspectError> {
    let live = Live::load(client, None).await?;
    let v = &live.view;
    let prices = v.priced_nodes().0;
    let mut cost: BTreeMap<AgentKey, f64> = BTreeMap::new();
    for (key, pod) in v.priced_pods() {
        *cost.entry(key).or_default() += crate::budget::pod_cost(&pod, &prices);
    }
    let ms_per_unit = v.latency_fit().map(|f| f.ms_per_unit);
    Ok(live
        .agents
        .iter()
        .map(|a| {
            let key = AgentKey::of(a);
            let target = v.policy_for(&key).map(|p| p.target).unwrap_or_default();
            let positions = v.agent_replica_positions(&key);
            let distances: Vec<f64> = positions
                .iter()
                .filter(|p| !target.is_empty() && p.len() == target.len())
                .map(|p| crate::geometry::poincare::distance(&target, p, v.settings.kappa))
                .filter(|d| d.is_finite())
                .collect();
            let mean = (!distances.is_empty()).then(|| distances.iter().sum::<f64>() / distances.len() as f64);
            AgentUsage {
                namespace: key.namespace.clone(),
                agent: key.name.clone(),
                placed: positions.len(),
                replicas: a.spec.replicas,
                hourly_cost: cost.get(&key).copied().unwrap_or(0.0),
                mean_distance: mean,
                latency_ms: mean.zip(ms_per_unit).map(|(d, m)| d * m),
            }
        })
        .collect())
}
