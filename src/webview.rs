//! The web view's data: plain inputs (what the operator holds in memory, already read out of
//! its locks) projected into the [`Snapshot`] the page draws — nodes and agent targets on the
//! Poincaré disk ([`crate::geometry::disk`]), peer edges as geodesics, pools and the budget.
//! Pure: no Kubernetes types, no clock; the operator gathers the inputs
//! (`operator::webview`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::disk::{self, Geodesic};

/// Largest Euclidean radius of a node in the display layout ([`display_layout`]).
pub const DISPLAY_LEAF_RADIUS: f64 = 0.92;

/// How node positions are turned into points of the page's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Positions come from the topology labels (a tree embedding): the page draws a 2-D tree
    /// embedding of the same hierarchy made for the eye ([`display_layout`]).
    #[default]
    Tree,
    /// Positions follow measured latencies: the page draws them ([`disk::project`]).
    Measured,
}

/// How the page's disk relates to the operator's ball, shown on the page.
pub fn projection_note(layout: Layout, dimension: Option<usize>) -> String {
    let d = dimension.map_or("?".to_string(), |d| d.to_string());
    match layout {
        Layout::Tree => format!(
            "{d}-D tree embedding of the topology labels, drawn as a 2-D Sarkar embedding of the same \
             hierarchy (edge length chosen so the nodes lie within radius {DISPLAY_LEAF_RADIUS}; the \
             operator's own edges are far longer, which puts its nodes within 1e-12 of the rim). \
             Agent targets are drawn next to the node nearest to them in the operator's embedding."
        ),
        Layout::Measured if dimension == Some(2) => "latency fit, 2-D: positions drawn as they are".into(),
        Layout::Measured => format!(
            "latency fit, {d}-D: drawn by the first two coordinates (orthogonal projection onto e0,e1; \
             points differing only in other coordinates overlap)"
        ),
    }
}

/// Disk points for nodes from their topology paths (top level first, e.g. region, zone, rack;
/// the node's own name is appended): Sarkar's construction in 2-D
/// ([`crate::geometry::tree::TreeEmbedding`]) with every edge `τ = 2·artanh(`
/// [`DISPLAY_LEAF_RADIUS`]`)/depth` long, so no node lies beyond that Euclidean radius (a path
/// straight out from the origin would end on it; siblings turn away, so most lie a little inside).
/// Siblings are spread evenly around their parent, as in the operator's embedding; only the
/// edge length differs. Nodes whose path cannot be embedded are left out.
pub fn display_layout(paths: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, [f64; 2]> {
    use crate::geometry::tree::{SarkarConfig, TreeEmbedding};
    let full: Vec<Vec<String>> = paths
        .iter()
        .map(|(name, path)| {
            let mut p = path.clone();
            p.push(format!("node/{name}"));
            p
        })
        .collect();
    let depth = full.iter().map(Vec::len).max().unwrap_or(1).max(1) as f64;
    let tau = 2.0 * DISPLAY_LEAF_RADIUS.atanh() / depth;
    let Ok(emb) = TreeEmbedding::from_paths(
        &full,
        SarkarConfig {
            epsilon: 0.1,
            edge_length: Some(tau),
        },
    ) else {
        return BTreeMap::new();
    };
    let points = emb.ball_points(2);
    paths
        .keys()
        .enumerate()
        .filter_map(|(i, name)| {
            let p = points.get(emb.leaf_node(i)?)?;
            Some((name.clone(), disk::project(p)?))
        })
        .collect()
}

/// One node as the operator knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeInput {
    pub name: String,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub pool: String,
    /// Values of the topology keys above the node (region, zone, rack; hostname left out).
    pub path: Vec<String>,
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
    pub layout: Layout,
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
    pub layout: Layout,
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
    /// Where the page draws the target (see [`projection_note`]).
    pub target: Option<[f64; 2]>,
    /// In the tree layout: the node nearest to the target in the operator's embedding.
    pub target_near: Option<String>,
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
    let tree = match input.layout {
        Layout::Tree => display_layout(
            &input
                .nodes
                .iter()
                .filter(|n| n.position.is_some())
                .map(|n| (n.name.clone(), n.path.clone()))
                .collect(),
        ),
        Layout::Measured => BTreeMap::new(),
    };
    let draw = |n: &NodeInput| match input.layout {
        Layout::Tree => tree.get(&n.name).copied(),
        Layout::Measured => n.position.as_deref().and_then(disk::project),
    };
    // A target's spot: projected (measured layout), or just inside its nearest node (tree).
    let place_target = |target: &[f64]| -> (Option<[f64; 2]>, Option<String>) {
        match input.layout {
            Layout::Measured => (disk::project(target), None),
            Layout::Tree => {
                let nearest = input
                    .nodes
                    .iter()
                    .filter_map(|n| {
                        let p = n.position.as_deref()?;
                        (p.len() == target.len()).then(|| (crate::geometry::poincare::distance(p, target, 1.0), n))
                    })
                    .filter(|(d, _)| d.is_finite())
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                match nearest {
                    Some((_, n)) => (tree.get(&n.name).map(|[x, y]| [x * 0.9, y * 0.9]), Some(n.name.clone())),
                    None => (None, None),
                }
            }
        }
    };
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
            xy: draw(n),
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
        .map(|a| {
            let (target, target_near) = a.target.as_deref().map(place_target).unwrap_or_default();
            AgentView {
                id: format!("{}/{}", a.namespace, a.name),
                namespace: a.namespace.clone(),
                name: a.name.clone(),
                workload_type: a.workload_type.clone(),
                desired: a.desired,
                replicas: a.replicas,
                ready: a.ready,
                target,
                target_near,
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
            }
        })
        .collect();
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    fan_out(&mut agents);

    let target_of: BTreeMap<&str, [f64; 2]> = agents.iter().filter_map(|a| Some((a.id.as_str(), a.target?))).collect();
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
        layout: input.layout,
        projection: projection_note(input.layout, input.dimension),
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

/// Radius (Euclidean) of the ring on which targets drawn at one spot are spread.
pub const FAN_RADIUS: f64 = 0.06;

/// Spreads the drawn targets that share one spot (agents whose targets are nearest the same
/// node, or equal) evenly on a ring of [`FAN_RADIUS`] around it, pulled inside the disk, so
/// each stays visible and peer edges between them have a length. Display only.
fn fan_out(agents: &mut [AgentView]) {
    let mut spots: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
    for (i, a) in agents.iter().enumerate() {
        if let Some([x, y]) = a.target {
            spots.entry((x.to_bits(), y.to_bits())).or_default().push(i);
        }
    }
    for members in spots.values().filter(|m| m.len() > 1) {
        for (k, &i) in members.iter().enumerate() {
            let Some([x, y]) = agents[i].target else { continue };
            let angle = std::f64::consts::TAU * k as f64 / members.len() as f64;
            let (mut fx, mut fy) = (x + FAN_RADIUS * angle.cos(), y + FAN_RADIUS * angle.sin());
            let r = (fx * fx + fy * fy).sqrt();
            if r > 0.97 {
                (fx, fy) = (fx * 0.97 / r, fy * 0.97 / r);
            }
            agents[i].target = Some([fx, fy]);
        }
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
            path: vec!["r1".into(), zone.into()],
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
            layout: Layout::Measured,
            nodes: vec![failed, node("n1", "z1", Some(vec![0.3, 0.4, 0.0]))],
            agents: Some(vec![agent("web", None, &[])]),
            ..Default::default()
        };
        let s = build(&input);
        assert_eq!(
            s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n1", "n2"]
        );
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
            layout: Layout::Measured,
            nodes: vec![node("n1", "z1", Some(vec![0.1, 0.1]))],
            agents: Some(vec![
                agent("web", Some(vec![0.5, 0.1]), &["db", "gone"]),
                agent("db", Some(vec![-0.3, 0.6]), &[]),
            ]),
            ..Default::default()
        };
        let s = build(&input);
        assert_eq!(s.edges.len(), 1, "only the peer with a target: {:?}", s.edges);
        assert_eq!(
            (s.edges[0].from.as_str(), s.edges[0].to.as_str()),
            ("shop/web", "shop/db")
        );
        assert_eq!(s.edges[0].geodesic, disk::geodesic([0.5, 0.1], [-0.3, 0.6]));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["agents"][0]["id"], "shop/db");
        assert_eq!(json["edges"][0]["geodesic"]["kind"], "arc");
    }

    #[test]
    fn the_tree_layout_spreads_the_hierarchy_inside_the_disk_and_puts_targets_by_their_nearest_node() {
        let mut nodes = Vec::new();
        for (i, (region, zone)) in [("a", "a1"), ("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")]
            .iter()
            .enumerate()
        {
            let mut n = node(&format!("n{i}"), zone, Some(vec![0.0, 0.0]));
            n.path = vec![region.to_string(), zone.to_string()];
            // Operator positions: only their nearness to a target matters here.
            n.position = Some(vec![0.1 * i as f64, 0.0]);
            nodes.push(n);
        }
        let input = Input {
            dimension: Some(2),
            nodes,
            agents: Some(vec![agent("web", Some(vec![0.39, 0.0]), &[])]),
            ..Default::default()
        };
        let s = build(&input);
        let xy: BTreeMap<&str, [f64; 2]> = s.nodes.iter().map(|n| (n.name.as_str(), n.xy.unwrap())).collect();
        let dist = |a: &str, b: &str| crate::geometry::poincare::distance(&xy[a], &xy[b], 1.0);
        for p in xy.values() {
            let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
            assert!(r > 0.5 && r <= DISPLAY_LEAF_RADIUS + 1e-9, "leaf at radius {r}");
        }
        assert!(dist("n0", "n1") < dist("n0", "n2"), "same zone closer than same region");
        assert!(
            dist("n0", "n2") < dist("n0", "n3"),
            "same region closer than another region"
        );
        assert_eq!(s.agents[0].target_near.as_deref(), Some("n4"));
        let [tx, ty] = s.agents[0].target.unwrap();
        assert!((tx - xy["n4"][0] * 0.9).abs() < 1e-12 && (ty - xy["n4"][1] * 0.9).abs() < 1e-12);
        assert!(s.projection.contains("tree embedding"), "{}", s.projection);
    }

    #[test]
    fn targets_drawn_at_one_spot_are_fanned_out_and_their_peer_edge_has_a_length() {
        let input = Input {
            dimension: Some(2),
            layout: Layout::Measured,
            nodes: vec![node("n1", "z1", Some(vec![0.1, 0.1]))],
            agents: Some(vec![
                agent("web", Some(vec![0.5, 0.1]), &["db"]),
                agent("db", Some(vec![0.5, 0.1]), &[]),
            ]),
            ..Default::default()
        };
        let s = build(&input);
        let (a, b) = (s.agents[0].target.unwrap(), s.agents[1].target.unwrap());
        let gap = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        assert!(
            (gap - 2.0 * FAN_RADIUS).abs() < 1e-9,
            "two targets opposite on the ring: {gap}"
        );
        assert_eq!(
            s.edges[0].geodesic,
            disk::geodesic(b, a),
            "the edge joins the drawn spots"
        );
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
        assert_eq!(
            s.budget.refusals,
            vec![("shop/web".to_string(), "over budget".to_string())]
        );
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
