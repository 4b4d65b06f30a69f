//! What every descheduling strategy and the planner share: the read-only [`PlanContext`] of one
//! tick (the snapshot, its indexes and each agent's targets over the horizon) and the mutable
//! [`ClusterState`] (what each node holds after the moves chosen so far).
//!
//! Input: a [`Snapshot`] and [`Settings`]. Output: the validated context (every problem of the
//! snapshot reported at once, [`validate_snapshot`]) and the state the planner updates per
//! move. Strategies and the planner import this module; it imports neither.
//!
//! **Targets.** Agent a's optimum `O_a` is `Agent::target`, the agent controller's target
//! (projected into the ball; callers without a controller plan through
//! [`super::plan_standalone`], which fills it with [`super::with_agent_optima`]). Without one
//! the agent has no target this tick. The target this tick is
//! `T₀ = geodesic_step(previous, O_a, targetStep)`: at most `targetStep` along the geodesic, so
//! replicas follow gradually. The predicted targets over the horizon are
//! `T_h = geodesic_step(T_{h−1}, O_a, targetStep)` for h = 1…H−1 (the optimum is assumed to
//! stay).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{DeschedulerError, Settings, Snapshot, TargetStep};
use crate::geometry::poincare;
use crate::placement::{AgentPolicy, NodeState, Resources};

/// The read-only view every strategy sees: the snapshot, indexes and each agent's targets.
#[derive(Debug)]
pub struct PlanContext<'a> {
    pub snapshot: &'a Snapshot,
    pub settings: &'a Settings,
    pub kappa: f64,
    /// Node index of each pod.
    pub pod_node: Vec<usize>,
    /// Agent index of each pod, if it has one.
    pub pod_agent: Vec<Option<usize>>,
    /// Per agent: the targets T₀…T_{H−1}, or `None` when the agent has nothing to anchor to.
    pub horizon: Vec<Option<Vec<Vec<f64>>>>,
    /// Per agent with a target and replicas: `d(T₀, m)` for every node m (else empty).
    pub node_distance: Vec<Vec<f64>>,
    /// Per agent: `min_m d(T₀, m)` over all nodes (∞ without a target).
    pub nearest: Vec<f64>,
    /// Per agent: the target step of this tick.
    pub targets: Vec<Option<TargetStep>>,
    /// Per agent: the placement policy used to check destinations (target = T₀).
    pub policies: Vec<AgentPolicy>,
}

/// Distances `d(T₀, m)` from agents' targets to every node, kept between plans by a caller
/// that plans again and again over nodes that do not move (the twin plans every few ticks).
/// An entry is used only for the same κ, the same node positions and the same T₀, bit for bit,
/// so a plan with a memo is the plan without one; anything else clears the memo.
#[derive(Debug, Default)]
pub struct DistanceMemo {
    kappa_bits: u64,
    positions: Vec<Vec<u64>>,
    by_target: std::collections::HashMap<Vec<u64>, Vec<f64>>,
}

/// Entries kept at most (one per agent target); the memo is cleared when it would grow past.
const MEMO_MAX_TARGETS: usize = 200_000;

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

impl DistanceMemo {
    /// Keeps the entries only if κ and every node position are those of the last plan.
    fn prepare(&mut self, snapshot: &Snapshot) {
        let same =
            self.kappa_bits == snapshot.kappa.to_bits()
                && self.positions.len() == snapshot.nodes.len()
                && self.positions.iter().zip(&snapshot.nodes).all(|(p, n)| {
                    p.len() == n.position.len() && p.iter().zip(&n.position).all(|(a, b)| *a == b.to_bits())
                });
        if !same {
            self.kappa_bits = snapshot.kappa.to_bits();
            self.positions = snapshot.nodes.iter().map(|n| bits(&n.position)).collect();
            self.by_target.clear();
        }
    }

    /// `d(target, m)` for every node m, computed once per target.
    fn distances(&mut self, snapshot: &Snapshot, target: &[f64], kappa: f64) -> Vec<f64> {
        let key = bits(target);
        if let Some(d) = self.by_target.get(&key) {
            return d.clone();
        }
        let d: Vec<f64> = snapshot
            .nodes
            .iter()
            .map(|n| poincare::distance(target, &n.position, kappa))
            .collect();
        if self.by_target.len() >= MEMO_MAX_TARGETS {
            self.by_target.clear();
        }
        self.by_target.insert(key, d.clone());
        d
    }
}

impl<'a> PlanContext<'a> {
    /// Validates the snapshot (every problem reported) and steps each agent's target toward
    /// its optimum `Agent::target` (see the module doc).
    pub fn new(snapshot: &'a Snapshot, settings: &'a Settings) -> Result<Self, DeschedulerError> {
        Self::with_memo(snapshot, settings, &mut DistanceMemo::default())
    }

    /// [`PlanContext::new`], taking the distances from targets to nodes from `memo` when it
    /// holds them (see [`DistanceMemo`]).
    pub fn with_memo(
        snapshot: &'a Snapshot,
        settings: &'a Settings,
        memo: &mut DistanceMemo,
    ) -> Result<Self, DeschedulerError> {
        let Index {
            nodes: node_index,
            agents: agent_index,
        } = validate_and_index(snapshot)?;
        memo.prepare(snapshot);
        let kappa = snapshot.kappa;
        // Validation guarantees these lookups succeed; fall back to 0 rather than panic.
        let pod_node: Vec<usize> = snapshot
            .pods
            .iter()
            .map(|p| node_index.get(p.node.as_str()).copied().unwrap_or(0))
            .collect();
        let pod_agent: Vec<Option<usize>> = snapshot
            .pods
            .iter()
            .map(|p| p.agent.as_deref().and_then(|a| agent_index.get(a).copied()))
            .collect();
        let mut has_replicas = vec![false; snapshot.agents.len()];
        for a in pod_agent.iter().flatten() {
            has_replicas[*a] = true;
        }
        let args = &settings.planner;
        let mut horizon = Vec::with_capacity(snapshot.agents.len());
        let mut nearest = Vec::with_capacity(snapshot.agents.len());
        let mut node_distance = Vec::with_capacity(snapshot.agents.len());
        let mut targets = Vec::with_capacity(snapshot.agents.len());
        let mut policies = Vec::with_capacity(snapshot.agents.len());
        for agent in &snapshot.agents {
            // The agent controller's target is the optimum (projected, as every point taken).
            let optimum = agent.target.as_ref().map(|t| poincare::project(t, kappa));
            let step = optimum.map(|optimum| {
                let target = match &agent.previous_target {
                    Some(prev) => poincare::geodesic_step(prev, &optimum, args.target_step, kappa),
                    None => optimum.clone(),
                };
                TargetStep {
                    agent: agent.name.clone(),
                    previous: agent.previous_target.clone(),
                    remaining: poincare::distance(&target, &optimum, kappa),
                    optimum,
                    target,
                }
            });
            let path = step.as_ref().map(|s| {
                let mut path = vec![s.target.clone()];
                for h in 1..args.horizon as usize {
                    let next = poincare::geodesic_step(&path[h - 1], &s.optimum, args.target_step, kappa);
                    path.push(next);
                }
                path
            });
            // Distances from T₀ are needed only for agents with replicas to move.
            let d: Vec<f64> = match &path {
                Some(p) if has_replicas[node_distance.len()] => memo.distances(snapshot, &p[0], kappa),
                _ => Vec::new(),
            };
            nearest.push(d.iter().copied().fold(f64::INFINITY, f64::min));
            node_distance.push(d);
            policies.push(AgentPolicy {
                target: step.as_ref().map(|s| s.target.clone()).unwrap_or_default(),
                avoid_nodes: agent.avoid_nodes.clone(),
                max_distance: agent.max_distance,
                locality: agent.label_rules.required_data_nodes.clone().map(|data_nodes| {
                    crate::placement::LocalityPolicy {
                        data_nodes,
                        required: true,
                        data_node_positions: Vec::new(),
                    }
                }),
                ..AgentPolicy::default()
            });
            horizon.push(path);
            targets.push(step);
        }
        Ok(Self {
            snapshot,
            settings,
            kappa,
            pod_node,
            pod_agent,
            horizon,
            node_distance,
            nearest,
            targets,
            policies,
        })
    }
}

/// The mutable part: what each node holds after the moves chosen so far.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// Requests, pod count and tenants per node, in the form `placement::filter` checks.
    pub nodes: Vec<NodeState>,
    /// Real usage per node.
    pub used: Vec<Resources>,
    /// Per node: tenant → (pods, pods demanding strict isolation). The empty name is "no tenant".
    pub tenants: Vec<BTreeMap<String, (u32, u32)>>,
}

impl ClusterState {
    pub fn new(ctx: &PlanContext<'_>) -> Self {
        let snap = ctx.snapshot;
        let mut counted = vec![0u32; snap.nodes.len()];
        let mut tenants = vec![BTreeMap::<String, (u32, u32)>::new(); snap.nodes.len()];
        for (p, pod) in snap.pods.iter().enumerate() {
            let n = ctx.pod_node[p];
            counted[n] += 1;
            let e = tenants[n].entry(pod.tenant.clone().unwrap_or_default()).or_default();
            e.0 += 1;
            e.1 += u32::from(pod.strict_isolation);
        }
        let nodes = snap
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeState {
                name: n.name.clone(),
                // Required data locality is checked against them.
                labels: n.labels.clone().into(),
                position: n.position.clone(),
                allocatable: n.allocatable,
                requested: n.requested,
                tentative: Resources::default(),
                tentative_pods: 0,
                pods: n.pods.max(counted[i]),
                max_pods: n.max_pods,
                tenants: tenant_flags(&tenants[i]),
                hourly_cost: None,
                spot: false,
                energy_class: None,
            })
            .collect();
        Self {
            nodes,
            used: snap.nodes.iter().map(|n| n.used).collect(),
            tenants,
        }
    }

    /// Moves pod `p` (of `ctx`) from node `from` to node `to`.
    pub fn apply(&mut self, ctx: &PlanContext<'_>, p: usize, from: usize, to: usize) {
        let pod = &ctx.snapshot.pods[p];
        let tenant = pod.tenant.clone().unwrap_or_default();
        let strict = u32::from(pod.strict_isolation);
        let src = &mut self.nodes[from];
        src.requested = saturating_sub(src.requested, pod.requests);
        src.pods = src.pods.saturating_sub(1);
        self.used[from] = saturating_sub(self.used[from], pod.usage);
        if let Some(e) = self.tenants[from].get_mut(&tenant) {
            e.0 = e.0.saturating_sub(1);
            e.1 = e.1.saturating_sub(strict);
            if e.0 == 0 {
                self.tenants[from].remove(&tenant);
            }
        }
        self.nodes[from].tenants = tenant_flags(&self.tenants[from]);
        let dst = &mut self.nodes[to];
        dst.requested = dst.requested.saturating_add(pod.requests);
        dst.pods += 1;
        self.used[to] = self.used[to].saturating_add(pod.usage);
        let e = self.tenants[to].entry(tenant).or_default();
        e.0 += 1;
        e.1 += strict;
        self.nodes[to].tenants = tenant_flags(&self.tenants[to]);
    }
}

/// `a − b` per resource, floored at 0.
pub fn saturating_sub(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu_millis: a.cpu_millis.saturating_sub(b.cpu_millis),
        memory_bytes: a.memory_bytes.saturating_sub(b.memory_bytes),
    }
}

/// `placement::NodeState::tenants`: tenant → whether any of its pods demands strict isolation.
fn tenant_flags(counts: &BTreeMap<String, (u32, u32)>) -> BTreeMap<String, bool> {
    counts.iter().map(|(t, &(_, s))| (t.clone(), s > 0)).collect()
}

/// Every problem of the snapshot, each naming the field and value.
pub fn validate_snapshot(s: &Snapshot) -> Result<(), DeschedulerError> {
    validate_and_index(s).map(|_| ())
}

/// Node and agent names → their index in a valid snapshot (names are unique). Hash maps, used
/// only for lookups: nothing iterates them, so no order leaks into a plan.
struct Index<'a> {
    nodes: HashMap<&'a str, usize>,
    agents: HashMap<&'a str, usize>,
}

/// [`validate_snapshot`], returning the name indexes it builds on the way.
fn validate_and_index(s: &Snapshot) -> Result<Index<'_>, DeschedulerError> {
    let mut problems = Vec::new();
    if !s.kappa.is_finite() || s.kappa <= 0.0 {
        problems.push(format!("kappa must be finite and > 0, got {}", s.kappa));
    }
    let radius = if s.kappa.is_finite() && s.kappa > 0.0 {
        1.0 / s.kappa.sqrt()
    } else {
        f64::INFINITY
    };
    let dim = s.nodes.first().map(|n| n.position.len()).unwrap_or(0);
    // `what` names the point; it is only built for a problem (plans run every few seconds).
    let check_point = |what: &dyn Fn() -> String, x: &[f64], problems: &mut Vec<String>| {
        if x.len() != dim {
            problems.push(format!("{} has dimension {}, the nodes have {dim}", what(), x.len()));
        } else if x.iter().any(|c| !c.is_finite()) {
            problems.push(format!("{} has a non-finite coordinate", what()));
        } else if poincare::norm(x) >= radius {
            problems.push(format!(
                "{} lies outside the ball (norm {} ≥ radius {radius})",
                what(),
                poincare::norm(x)
            ));
        }
    };
    let mut names = HashMap::with_capacity(s.nodes.len());
    for (i, n) in s.nodes.iter().enumerate() {
        if n.name.is_empty() {
            problems.push(format!("nodes[{i}].name is empty"));
        } else if names.insert(n.name.as_str(), i).is_some() {
            problems.push(format!("nodes[{i}].name {:?} appears twice", n.name));
        }
        if n.position.is_empty() {
            problems.push(format!("nodes[{i}] ({}).position is empty", n.name));
        } else {
            check_point(
                &|| format!("nodes[{i}] ({}).position", n.name),
                &n.position,
                &mut problems,
            );
        }
    }
    let mut agents = HashMap::with_capacity(s.agents.len());
    for (i, a) in s.agents.iter().enumerate() {
        if a.name.is_empty() {
            problems.push(format!("agents[{i}].name is empty"));
        } else if agents.insert(a.name.as_str(), i).is_some() {
            problems.push(format!("agents[{i}].name {:?} appears twice", a.name));
        }
    }
    for (i, a) in s.agents.iter().enumerate() {
        for (j, p) in a.peers.iter().enumerate() {
            if !agents.contains_key(p.agent.as_str()) {
                problems.push(format!(
                    "agents[{i}] ({}).peers[{j}].agent {:?} is not an agent in the snapshot",
                    a.name, p.agent
                ));
            }
            if !p.weight.is_finite() || p.weight < 0.0 {
                problems.push(format!(
                    "agents[{i}] ({}).peers[{j}].weight must be finite and ≥ 0, got {}",
                    a.name, p.weight
                ));
            }
        }
        if let Some(t) = &a.target {
            check_point(&|| format!("agents[{i}] ({}).target", a.name), t, &mut problems);
        }
        if let Some(t) = &a.previous_target {
            check_point(&|| format!("agents[{i}] ({}).previousTarget", a.name), t, &mut problems);
        }
        if let Some(m) = a.max_distance
            && (!m.is_finite() || m < 0.0)
        {
            problems.push(format!(
                "agents[{i}] ({}).maxDistance must be finite and ≥ 0, got {m}",
                a.name
            ));
        }
    }
    let mut pods = HashSet::with_capacity(s.pods.len());
    for (i, p) in s.pods.iter().enumerate() {
        if p.name.is_empty() || p.namespace.is_empty() {
            problems.push(format!("pods[{i}] needs a name and a namespace, got {:?}", p.key()));
        } else if !pods.insert((p.namespace.as_str(), p.name.as_str())) {
            problems.push(format!("pods[{i}] {:?} appears twice", p.key()));
        }
        if !names.contains_key(p.node.as_str()) {
            problems.push(format!(
                "pods[{i}] ({}).node {:?} is not a node in the snapshot",
                p.key(),
                p.node
            ));
        }
        if let Some(a) = &p.agent
            && !agents.contains_key(a.as_str())
        {
            problems.push(format!(
                "pods[{i}] ({}).agent {a:?} is not an agent in the snapshot",
                p.key()
            ));
        }
    }
    if problems.is_empty() {
        Ok(Index { nodes: names, agents })
    } else {
        Err(DeschedulerError::InvalidSnapshot(problems))
    }
}
