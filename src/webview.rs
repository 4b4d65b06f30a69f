//! The web view's data: plain inputs (what the operator holds in memory, already read out of
//! its locks) projected into the [`Snapshot`] the page draws — nodes and agent targets on the
//! Poincaré disk ([`crate::geometry::disk`]), peer edges as geodesics, pools and the budget.
//! Pure: no Kubernetes types, no clock; the operator gathers the inputs
//! (`operator::webview`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::disk::{self, Geodesic};

/// How the page's disk relates to the ball, shown on the page.
pub fn projection_note(dimension: Option<usize>) -> String {
    match dimension {
        Some(2) => "2-D embedding: positions drawn as they are".into(),
        Some(d) => format!(
            "{d}-D embedding: drawn by its first two coordinates (orthogonal projection onto e0,e1; \
             points differing only in other coordinates overlap)"
        ),
        None => "no embedding yet".into(),
    }
}

/// One node as the operator knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeInput {
    pub name: String,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub pool: String,
    /// Ball coordinates (any dimension), when embedded.
    pub position: Option<Vec<f64>>,
    /// Why the node counts as failed (not ready, heartbeat silent, terminating), if it does.
    pub failed: Option<String>,
    pub schedulable: bool,
}

/// One GeometricAgent as the operator knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentInput {
    pub namespace: String,
    pub name: String,
    pub workload_type: String,
    /// `spec.replicas`.
    pub desired: i32,
    /// `status.replicas` / `status.readyReplicas`.
    pub replicas: i32,
    pub ready: i32,
    /// The target of its placement policy (ball coordinates), when resolved.
    pub target: Option<Vec<f64>>,
    /// Its pods as (pod, node) — node `None` while unbound.
    pub pods: Vec<(String, Option<String>)>,
    /// `spec.peers`: (agent name in the same namespace, weight).
    pub peers: Vec<(String, f64)>,
    pub pool: String,
    /// `status.allocation` (quota, payment), when the auction set one.
    pub allocation: Option<(i32, f64)>,
    /// The budget refuses its scale-ups for this reason.
    pub budget_refusal: Option<String>,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Input {
    /// Nodes' coordinates dimension, when embedded.
    pub dimension: Option<usize>,
    pub nodes: Vec<NodeInput>,
    /// `None` until the agent cache has been filled.
    pub agents: Option<Vec<AgentInput>>,
    /// Resource pressure per pool, from the auction loop.
    pub pool_pressure: BTreeMap<String, String>,
    /// Pools the budget leaves no capacity, with why.
    pub auction_caps: BTreeMap<String, String>,
    /// MomConfig `spec.budget.maxHourlyCost`.
    pub max_hourly_cost: Option<f64>,
    /// What the agents' pods cost per hour at the nodes' prices, when a budget is set.
    pub hourly_cost: Option<f64>,
    pub leading: bool,
    /// Sequence of the newest receipt this replica wrote (the page refetches receipts when it
    /// changes).
    pub receipt_head: Option<u64>,
}

/// The page's picture of the cluster (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Bumped by the operator each time the snapshot changes (0 on a one-off request).
    pub version: u64,
    pub leading: bool,
    pub dimension: Option<usize>,
    pub projection: String,
    /// What is not known yet (e.g. "no nodes yet"), shown on the page.
    pub notes: Vec<String>,
    pub nodes: Vec<NodeView>,
    pub agents: Vec<AgentView>,
    pub edges: Vec<EdgeView>,
    pub pools: Vec<PoolView>,
    pub budget: BudgetView,
    pub receipt_head: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub pool: String,
    /// Disk coordinates ([`disk::project`]); `None` while not embedded.
    pub xy: Option<[f64; 2]>,
    /// `ok`, `failed` or `cordoned`.
    pub health: String,
    pub failed_reason: Option<String>,
    /// Pods of agents on it.
    pub agent_pods: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// `namespace/name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub workload_type: String,
    pub desired: i32,
    pub replicas: i32,
    pub ready: i32,
    pub target: Option<[f64; 2]>,
    pub pods: Vec<PodView>,
    pub pool: String,
    pub quota: Option<i32>,
    pub payment: Option<f64>,
    pub budget_refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub name: String,
    pub node: Option<String>,
}

/// A peer edge between two agents' targets, drawn as the disk's geodesic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    pub from: String,
    pub to: String,
    pub weight: f64,
    pub geodesic: Geodesic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub name: String,
    pub nodes: usize,
    pub agents: usize,
    /// Resource pressure the auction loop measured (`low` … `critical`), if it ran.
    pub pressure: Option<String>,
    /// Wanted replicas of its agents, and the quotas the auction set (sum over capped agents).
    pub wanted: i64,
    pub payments: f64,
    pub budget_cap: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    pub max_hourly_cost: Option<f64>,
    pub hourly_cost: Option<f64>,
    /// Agents whose scale-ups the budget refuses: (agent id, why).
    pub refusals: Vec<(String, String)>,
}

/// Projects the inputs into the page's snapshot (version 0; the caller numbers versions).
/// Nodes and agents are sorted by name; a peer edge is drawn once per (agent, peer) pair whose
/// both targets are known, to a peer in the agent's namespace.
pub fn build(input: &Input) -> Snapshot {
    let mut notes = Vec::new();
    if input.nodes.is_empty() {
        notes.push("no nodes yet".to_string());
    } else if input.nodes.iter().all(|n| n.position.is_none()) {
        notes.push("nodes not embedded yet".to_string());
    }
    let agents_in = match &input.agents {
        Some(a) => a.as_slice(),
        None => {
            notes.push("agents not loaded yet".to_string());
            &[]
        }
    };
    if input.agents.as_ref().is_some_and(|a| a.is_empty()) {
        notes.push("no agents yet".to_string());
    }
    let mut pods_on: BTreeMap<&str, u32> = BTreeMap::new();
    for a in agents_in {
        for (_, node) in &a.pods {
            if let Some(n) = node {
                *pods_on.entry(n.as_str()).or_default() += 1;
            }
        }
    }
    let mut nodes: Vec<NodeView> = input
        .nodes
        .iter()
        .map(|n| NodeView {
            name: n.name.clone(),
            region: n.region.clone(),
            zone: n.zone.clone(),
            pool: n.pool.clone(),
            xy: n.position.as_deref().and_then(disk::project),
            health: if n.failed.is_some() {
                "failed"
            } else if !n.schedulable {
                "cordoned"
            } else {
                "ok"
            }
            .into(),
            failed_reason: n.failed.clone(),
            agent_pods: pods_on.get(n.name.as_str()).copied().unwrap_or(0),
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    let mut agents: Vec<AgentView> = agents_in
        .iter()
        .map(|a| AgentView {
            id: format!("{}/{}", a.namespace, a.name),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            workload_type: a.workload_type.clone(),
            desired: a.desired,
            replicas: a.replicas,
            ready: a.ready,
            target: a.target.as_deref().and_then(disk::project),
            pods: a
                .pods
                .iter()
                .map(|(name, node)| PodView {
                    name: name.clone(),
                    node: node.clone(),
                })
                .collect(),
            pool: a.pool.clone(),
            quota: a.allocation.map(|(q, _)| q),
            payment: a.allocation.map(|(_, p)| p),
            budget_refusal: a.budget_refusal.clone(),
        })
        .collect();
    agents.sort_by(|a, b| a.id.cmp(&b.id));

    let target_of: BTreeMap<&str, [f64; 2]> = agents
        .iter()
        .filter_map(|a| Some((a.id.as_str(), a.target?)))
        .collect();
    let mut edges = Vec::new();
    for a in agents_in {
        let from = format!("{}/{}", a.namespace, a.name);
        for (peer, weight) in &a.peers {
            let to = format!("{}/{}", a.namespace, peer);
            if let (Some(p), Some(q)) = (target_of.get(from.as_str()), target_of.get(to.as_str())) {
                edges.push(EdgeView {
                    geodesic: disk::geodesic(*p, *q),
                    from: from.clone(),
                    to,
                    weight: *weight,
                });
            }
        }
    }
    edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));

    let mut pool_names: Vec<&str> = input.nodes.iter().map(|n| n.pool.as_str()).collect();
    pool_names.extend(agents_in.iter().map(|a| a.pool.as_str()));
    pool_names.extend(input.pool_pressure.keys().map(String::as_str));
    pool_names.sort();
    pool_names.dedup();
    let pools = pool_names
        .into_iter()
        .map(|p| {
            let members: Vec<&AgentInput> = agents_in.iter().filter(|a| a.pool == p).collect();
            PoolView {
                name: p.to_string(),
                nodes: input.nodes.iter().filter(|n| n.pool == p).count(),
                agents: members.len(),
                pressure: input.pool_pressure.get(p).cloned(),
                wanted: members.iter().map(|a| i64::from(a.desired)).sum(),
                payments: members.iter().filter_map(|a| a.allocation.map(|(_, pay)| pay)).sum(),
                budget_cap: input.auction_caps.get(p).cloned(),
            }
        })
        .collect();
    let refusals = agents
        .iter()
        .filter_map(|a| Some((a.id.clone(), a.budget_refusal.clone()?)))
        .collect();

    Snapshot {
        version: 0,
        leading: input.leading,
        dimension: input.dimension,
        projection: projection_note(input.dimension),
        notes,
        nodes,
        agents,
        edges,
        pools,
        budget: BudgetView {
            max_hourly_cost: input.max_hourly_cost,
            hourly_cost: input.hourly_cost,
            refusals,
        },
        receipt_head: input.receipt_head,
    }
}

/// A descheduler move read from an `evict` receipt's decision (`decision.move.{from,to}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveView {
    pub sequence: u64,
    pub pod: String,
    pub from: String,
    pub to: String,
}

/// The move an eviction receipt's decision records, if it records one.
pub fn move_of(sequence: u64, decision: &serde_json::Value) -> Option<MoveView> {
    let m = decision.get("move")?;
    let text = |k: &str| m.get(k)?.as_str().map(str::to_string);
    Some(MoveView {
        sequence,
        pod: format!("{}/{}", text("namespace").unwrap_or_default(), text("pod")?),
        from: text("from")?,
        to: text("to")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zone: &str, xy: Option<Vec<f64>>) -> NodeInput {
        NodeInput {
            name: name.into(),
            region: Some("r1".into()),
            zone: Some(zone.into()),
            pool: "default".into(),
            position: xy,
            failed: None,
            schedulable: true,
        }
    }

    fn agent(name: &str, target: Option<Vec<f64>>, peers: &[&str]) -> AgentInput {
        AgentInput {
            namespace: "shop".into(),
            name: name.into(),
            workload_type: "interactive".into(),
            desired: 2,
            replicas: 2,
            ready: 1,
            target,
            pods: vec![(format!("{name}-0"), Some("n1".into())), (format!("{name}-1"), None)],
            peers: peers.iter().map(|p| (p.to_string(), 1.0)).collect(),
            pool: "default".into(),
            allocation: None,
            budget_refusal: None,
        }
    }

    #[test]
    fn an_empty_cluster_gives_an_empty_snapshot_that_says_no_nodes_yet() {
        let s = build(&Input::default());
        assert!(s.nodes.is_empty() && s.agents.is_empty() && s.edges.is_empty());
        assert!(s.notes.iter().any(|n| n == "no nodes yet"), "{:?}", s.notes);
        assert!(s.notes.iter().any(|n| n == "agents not loaded yet"), "{:?}", s.notes);
    }

    #[test]
    fn nodes_are_drawn_by_their_first_two_coordinates_with_health_and_agent_pods() {
        let mut failed = node("n2", "z2", Some(vec![-0.1, 0.2, 0.7]));
        failed.failed = Some("heartbeat silent".into());
        let input = Input {
            dimension: Some(3),
            nodes: vec![failed, node("n1", "z1", Some(vec![0.3, 0.4, 0.0]))],
            agents: Some(vec![agent("web", None, &[])]),
            ..Default::default()
        };
        let s = build(&input);
        assert_eq!(s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        assert_eq!(s.nodes[0].xy, Some([0.3, 0.4]));
        assert_eq!((s.nodes[0].health.as_str(), s.nodes[0].agent_pods), ("ok", 1));
        assert_eq!(s.nodes[1].health, "failed");
        assert_eq!(s.nodes[1].failed_reason.as_deref(), Some("heartbeat silent"));
        assert!(s.projection.contains("first two coordinates"), "{}", s.projection);
        assert!(s.notes.is_empty(), "{:?}", s.notes);
    }

    #[test]
    fn peer_edges_join_known_targets_by_the_disks_geodesic() {
        let input = Input {
            dimension: Some(2),
            nodes: vec![node("n1", "z1", Some(vec![0.1, 0.1]))],
            agents: Some(vec![
                agent("web", Some(vec![0.5, 0.1]), &["db", "gone"]),
                agent("db", Some(vec![-0.3, 0.6]), &[]),
            ]),
            ..Default::default()
        };
        let s = build(&input);
        assert_eq!(s.edges.len(), 1, "only the peer with a target: {:?}", s.edges);
        assert_eq!((s.edges[0].from.as_str(), s.edges[0].to.as_str()), ("shop/web", "shop/db"));
        assert_eq!(s.edges[0].geodesic, disk::geodesic([0.5, 0.1], [-0.3, 0.6]));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["agents"][0]["id"], "shop/db");
        assert_eq!(json["edges"][0]["geodesic"]["kind"], "arc");
    }

    #[test]
    fn pools_sum_their_agents_wants_and_payments_and_show_pressure_and_budget_caps() {
        let mut a = agent("web", None, &[]);
        a.allocation = Some((1, 2.5));
        a.budget_refusal = Some("over budget".into());
        let input = Input {
            nodes: vec![node("n1", "z1", None)],
            agents: Some(vec![a, agent("db", None, &[])]),
            pool_pressure: [("default".to_string(), "high".to_string())].into(),
            auction_caps: [("default".to_string(), "no capacity left".to_string())].into(),
            max_hourly_cost: Some(3.0),
            ..Default::default()
        };
        let s = build(&input);
        assert_eq!(s.pools.len(), 1);
        let p = &s.pools[0];
        assert_eq!((p.nodes, p.agents, p.wanted, p.payments), (1, 2, 4, 2.5));
        assert_eq!(p.pressure.as_deref(), Some("high"));
        assert_eq!(p.budget_cap.as_deref(), Some("no capacity left"));
        assert_eq!(s.budget.refusals, vec![("shop/web".to_string(), "over budget".to_string())]);
        assert!(s.notes.iter().any(|n| n == "nodes not embedded yet"));
    }

    #[test]
    fn an_eviction_decision_gives_its_move_and_other_decisions_none() {
        let d = serde_json::json!({"kind": "x", "move": {"pod": "p", "namespace": "shop", "from": "a", "to": "b"}});
        assert_eq!(
            move_of(7, &d),
            Some(MoveView {
                sequence: 7,
                pod: "shop/p".into(),
                from: "a".into(),
                to: "b".into()
            })
        );
        assert_eq!(move_of(1, &serde_json::json!({"kind": "scale"})), None);
    }
}
