//! The auction loop (leader only): every tick, per node pool, turns the replicas the
//! GeometricAgents want into quotas when capacity is scarce (DESIGN §6).
//!
//! Pipeline per tick: observe (agents by a fresh list; nodes and bound pods from the shared
//! view) → snapshot (pure, [`pool_snapshots`]: per pool the agents' wanted replicas, requests
//! and bids, and each node's allocatable minus what pods outside the pool's agents hold) →
//! decide (core [`quota::decide`]: pressure, and at `high`/`critical` the VCG auction through
//! [`crate::auction::run`], the function `mom auction` calls, so the same bids and capacity give
//! the same allocation byte for byte) → record (an `allocate` receipt with the full auction
//! input and outcome, written before anything is applied; at `full_audit` a failed write stops
//! the tick) → apply (merge patch of `status.allocation` {quota, payment} of each agent whose
//! allocation changed; the agent controller caps its replicas at the quota) → Events
//! (`CappedByAuction`, `QuotaReleased`, `InvalidBid`), metrics, and the pool's pressure in the view (the
//! agent controller matches `OrchestrationStrategy` `resourcePressure` triggers against it).
//!
//! Pools: a node belongs to the pool named by its label [`POOL_LABEL`] (nodes without it to
//! [`DEFAULT_POOL`]); an agent competes in the pool its pod template selects with
//! `nodeSelector: {mom.hypersync.io/pool: NAME}` (else the default pool). Pools are disjoint, so
//! each has its own auction. Taint a pool's nodes to keep other pods off them; pods that run
//! there anyway are subtracted from its capacity.
//!
//! Bids: `spec.bid` (marginal values, or `valuePerReplica` for each wanted replica); an agent
//! without a bid values its replicas at 0 and so gets only what nobody values while the pool is
//! contended. A bid the CRD schema let through but the auction rejects (e.g. increasing
//! marginal values) counts as no bid, with a Warning Event naming the field.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, LeaderLoop, LoopError};
use super::crd::GeometricAgent;
use super::crd::agent::Allocation;
use super::metrics::PoolLabels;
use super::pools::{DEFAULT_POOL, pool_of};
use super::receipts::Intent;
use super::view::{AgentKey, PodRecord};
use crate::auction::quota::{self, AgentDemand, PoolDecision, QuotaSettings};
use crate::auction::{AuctionError, NodeCapacity, ResourceRequest};
use crate::labels::{HOURLY_COST_LABEL, POOL_LABEL};
use crate::placement::Resources;
use crate::receipts::{Action as ReceiptAction, SubjectRef};

/// The integer program is refused beyond this many variables: a tick must not stall.
pub const MIP_MAX_INTEGER_VARIABLES: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum AuctionLoopError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("auction of pool {pool}: {source}")]
    Auction {
        pool: String,
        #[source]
        source: AuctionError,
    },
    #[error("the allocate receipt of pool {pool} could not be written, so the quotas were not applied: {source}")]
    Receipt {
        pool: String,
        #[source]
        source: super::receipts::Withheld,
    },
}

impl LoopError for AuctionLoopError {
    fn metric_label(&self) -> &'static str {
        match self {
            AuctionLoopError::Api(_) => "auction_api",
            AuctionLoopError::Auction { .. } => "auction_solver",
            AuctionLoopError::Receipt { .. } => "auction_receipt",
        }
    }
}

/// One agent as the auction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSnapshot {
    pub namespace: String,
    pub name: String,
    pub pool: String,
    pub demand: AgentDemand,
    /// Why the declared bid was not used (it names the field), if it was not.
    pub bid_problem: Option<String>,
    /// `status.allocation` as last written.
    pub allocation: Option<Allocation>,
}

/// A node as the auction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Resources,
}

/// The agents and capacity of one pool.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolSnapshot {
    pub agents: Vec<AgentSnapshot>,
    pub nodes: Vec<NodeCapacity>,
}

/// The auction's name of an agent: `namespace/name`.
pub fn agent_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Problems of a declared bid, naming the field (the rules of the auction's validation).
pub fn bid_problem(values: &[f64], value_per_replica: f64) -> Option<String> {
    if values.is_empty() {
        if !value_per_replica.is_finite() || value_per_replica < 0.0 {
            return Some(format!(
                "spec.bid.valuePerReplica: {value_per_replica} must be a finite number >= 0"
            ));
        }
        return None;
    }
    for (k, &v) in values.iter().enumerate() {
        if !v.is_finite() || v < 0.0 {
            return Some(format!(
                "spec.bid.marginalValues[{k}]: {v} must be a finite number >= 0"
            ));
        }
        if k > 0 && v > values[k - 1] {
            return Some(format!(
                "spec.bid.marginalValues[{k}]: {v} is larger than spec.bid.marginalValues[{}] = {} (marginal values must not increase)",
                k - 1,
                values[k - 1]
            ));
        }
    }
    None
}

/// What the auction needs from an agent object.
pub fn agent_snapshot(agent: &GeometricAgent) -> AgentSnapshot {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let spec: Option<&PodSpec> = agent.spec.template.spec.as_ref();
    let pool = pool_of(agent);
    let pod = Pod {
        spec: spec.cloned(),
        ..Default::default()
    };
    // Unparsable quantities are reported by the agent controller; here they request nothing.
    let requests = super::view::pod_requests(&pod).unwrap_or_default();
    let wanted = agent.spec.replicas.max(0) as u32;
    let (marginal_values, bid_problem) = match &agent.spec.bid {
        None => (Vec::new(), None),
        Some(bid) => match bid_problem(&bid.marginal_values, bid.value_per_replica) {
            Some(problem) => (Vec::new(), Some(problem)),
            None => (bid.marginal_values_up_to(wanted as usize), None),
        },
    };
    AgentSnapshot {
        demand: AgentDemand {
            agent: agent_id(&namespace, &name),
            tenant: agent.spec.tenant.clone(),
            wanted,
            request: ResourceRequest {
                cpu_millis: requests.cpu_millis,
                memory_bytes: requests.memory_bytes,
            },
            marginal_values,
        },
        namespace,
        name,
        pool,
        bid_problem,
        allocation: agent.status.as_ref().and_then(|s| s.allocation.clone()),
    }
}

fn node_cost(labels: &BTreeMap<String, String>) -> f64 {
    labels
        .get(HOURLY_COST_LABEL)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|c| c.is_finite() && *c >= 0.0)
        .unwrap_or(1.0)
}

/// Groups agents and nodes by pool. A node's capacity is its allocatable minus the requests of
/// the pods bound to it that belong to none of the pool's agents (those the auction reallocates);
/// nodes left without cpu or memory are not offered.
pub fn pool_snapshots(
    agents: Vec<AgentSnapshot>,
    nodes: &[NodeSnapshot],
    bound_pods: &[PodRecord],
) -> BTreeMap<String, PoolSnapshot> {
    let mut pools: BTreeMap<String, PoolSnapshot> = BTreeMap::new();
    for a in agents {
        pools.entry(a.pool.clone()).or_default().agents.push(a);
    }
    for snap in pools.values_mut() {
        snap.agents.sort_by(|a, b| a.demand.agent.cmp(&b.demand.agent));
    }
    let mut by_pool: BTreeMap<String, Vec<&NodeSnapshot>> = BTreeMap::new();
    for n in nodes {
        let pool = n
            .labels
            .get(POOL_LABEL)
            .cloned()
            .unwrap_or_else(|| DEFAULT_POOL.to_string());
        by_pool.entry(pool).or_default().push(n);
    }
    for (pool, snap) in pools.iter_mut() {
        let members: BTreeSet<AgentKey> = snap
            .agents
            .iter()
            .map(|a| AgentKey::new(a.namespace.clone(), a.name.clone()))
            .collect();
        let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
        for p in bound_pods {
            if p.agent.as_ref().is_some_and(|k| members.contains(k)) {
                continue;
            }
            if let Some(node) = p.node.as_deref() {
                let u = used.entry(node).or_default();
                *u = u.saturating_add(p.demand.requests);
            }
        }
        let mut caps: Vec<NodeCapacity> = by_pool
            .get(pool)
            .map(|ns| ns.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|n| {
                let u = used.get(n.name.as_str()).copied().unwrap_or_default();
                NodeCapacity {
                    node: n.name.clone(),
                    cpu_millis: n.allocatable.cpu_millis.saturating_sub(u.cpu_millis),
                    memory_bytes: n.allocatable.memory_bytes.saturating_sub(u.memory_bytes),
                    cost: node_cost(&n.labels),
                }
            })
            .filter(|c| c.cpu_millis > 0 && c.memory_bytes > 0)
            .collect();
        caps.sort_by(|a, b| a.node.cmp(&b.node));
        snap.nodes = caps;
    }
    pools
}

/// The allocation each agent of the pool should have after `decision` (`None`: no quota).
pub fn target_allocations(pool: &PoolSnapshot, decision: &PoolDecision) -> Vec<Option<Allocation>> {
    match decision {
        PoolDecision::Uncontended { .. } => pool.agents.iter().map(|_| None).collect(),
        PoolDecision::Auctioned { outcome, .. } => pool
            .agents
            .iter()
            .map(|a| {
                outcome
                    .allocations
                    .iter()
                    .find(|x| x.agent == a.demand.agent)
                    .map(|x| Allocation {
                        quota: x.replicas.min(i32::MAX as u32) as i32,
                        payment: x.payment,
                    })
            })
            .collect(),
    }
}

/// The auction loop: its period and the pools whose quotas are in force (so a pool whose
/// agents all vanished is released too); run by [`super::context::run_leader_loop`].
pub struct Auctioneer {
    period: Duration,
    contended: BTreeSet<String>,
}

impl Auctioneer {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            contended: BTreeSet::new(),
        }
    }
}

impl LeaderLoop for Auctioneer {
    const NAME: &'static str = "auction";
    type Error = AuctionLoopError;

    fn period(&self) -> Duration {
        self.period
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), AuctionLoopError> {
        tick(ctx, &mut self.contended).await
    }

    fn reset(&mut self) {
        self.contended.clear();
    }
}

/// One tick over every pool; a failing pool does not stop the others (the first error is
/// returned). `contended`: the pools with quotas in force, updated.
pub async fn tick(ctx: &Context, contended: &mut BTreeSet<String>) -> Result<(), AuctionLoopError> {
    let agents: Vec<GeometricAgent> = Api::<GeometricAgent>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let (nodes, pods) = match ctx.view.read() {
        Ok(v) => (
            v.schedulable_nodes()
                .into_iter()
                .map(|(name, labels, allocatable)| NodeSnapshot {
                    name,
                    labels,
                    allocatable,
                })
                .collect::<Vec<_>>(),
            v.bound_pods(),
        ),
        Err(_) => return Ok(()),
    };
    let by_key: BTreeMap<String, &GeometricAgent> = agents
        .iter()
        .map(|a| (agent_id(&a.namespace().unwrap_or_default(), &a.name_any()), a))
        .collect();
    let snapshots = pool_snapshots(agents.iter().map(agent_snapshot).collect(), &nodes, &pods);
    let settings = QuotaSettings {
        shapley: Default::default(),
        mip_max_integer_variables: Some(MIP_MAX_INTEGER_VARIABLES),
    };
    let mut first_error = None;
    for (pool, snap) in &snapshots {
        match tick_pool(ctx, pool, snap, &by_key, settings).await {
            Ok(Some(true)) => {
                contended.insert(pool.clone());
            }
            Ok(Some(false)) => {
                contended.remove(pool);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(pool = %pool, error = %err, "auction of a pool failed");
                first_error.get_or_insert(err);
            }
        }
    }
    let vanished: Vec<String> = contended
        .iter()
        .filter(|p| !snapshots.contains_key(*p))
        .cloned()
        .collect();
    for pool in vanished {
        // Its agents are gone: record that its quotas ended (cost reports stop accruing here).
        let pressure = quota::pressure(&[], &[]);
        let released: Vec<String> = Vec::new();
        let inputs = json!({"pool": pool, "pressure": pressure, "released": released});
        let decision =
            json!({"kind": quota::RELEASE_KIND, "pool": pool, "pressure": pressure, "output": {"released": released}});
        match record(ctx, &pool, decision, &inputs).await {
            Ok(()) => {
                contended.remove(&pool);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[tracing::instrument(skip_all, fields(pool = %pool))]
async fn tick_pool(
    ctx: &Context,
    pool: &str,
    snap: &PoolSnapshot,
    objects: &BTreeMap<String, &GeometricAgent>,
    settings: QuotaSettings,
) -> Result<Option<bool>, AuctionLoopError> {
    for a in &snap.agents {
        if let (Some(problem), Some(obj)) = (&a.bid_problem, objects.get(&a.demand.agent)) {
            publish(
                ctx,
                obj,
                EventType::Warning,
                "InvalidBid",
                format!("{problem}; bidding 0 until it is fixed"),
            )
            .await;
        }
    }
    let demands: Vec<AgentDemand> = snap.agents.iter().map(|a| a.demand.clone()).collect();
    let labels = PoolLabels { pool: pool.to_string() };
    if snap.nodes.is_empty() {
        // Nothing to auction (no nodes, or the node watch not synced yet): leave quotas as they are.
        let level = quota::pressure(&demands, &snap.nodes).level;
        ctx.metrics
            .resource_pressure
            .get_or_create(&labels)
            .set(level.ordinal());
        if let Ok(mut v) = ctx.view.write() {
            v.set_pool_pressure(pool, level);
        }
        tracing::debug!(pool = %pool, "pool has no schedulable capacity; no auction");
        return Ok(None);
    }
    let decision = quota::decide(&demands, &snap.nodes, settings).map_err(|source| AuctionLoopError::Auction {
        pool: pool.to_string(),
        source,
    })?;
    let pressure = match &decision {
        PoolDecision::Uncontended { pressure } | PoolDecision::Auctioned { pressure, .. } => *pressure,
    };
    ctx.metrics
        .resource_pressure
        .get_or_create(&labels)
        .set(pressure.level.ordinal());
    if let Ok(mut v) = ctx.view.write() {
        v.set_pool_pressure(pool, pressure.level);
    }
    if matches!(decision, PoolDecision::Auctioned { .. }) {
        ctx.metrics.auctions.get_or_create(&labels).inc();
    }
    let targets = target_allocations(snap, &decision);
    let changed: Vec<(&AgentSnapshot, &Option<Allocation>)> = snap
        .agents
        .iter()
        .zip(&targets)
        .filter(|(a, t)| a.allocation != **t)
        .collect();
    let auctioned = matches!(decision, PoolDecision::Auctioned { .. });
    if changed.is_empty() {
        return Ok(Some(auctioned));
    }
    // Record before acting.
    let (decision_json, inputs) = match &decision {
        PoolDecision::Auctioned {
            pressure,
            input,
            outcome,
        } => {
            let inputs = serde_json::to_value(input).unwrap_or_default();
            (
                json!({"kind": quota::REPLAY_KIND, "pool": pool, "pressure": pressure, "inputs": inputs, "output": outcome}),
                inputs,
            )
        }
        PoolDecision::Uncontended { pressure } => {
            let released: Vec<&str> = changed.iter().map(|(a, _)| a.demand.agent.as_str()).collect();
            let inputs = json!({"pool": pool, "pressure": pressure, "released": released});
            (
                json!({"kind": quota::RELEASE_KIND, "pool": pool, "pressure": pressure, "output": {"released": released}}),
                inputs,
            )
        }
    };
    record(ctx, pool, decision_json, &inputs).await?;
    // Apply.
    for (agent, target) in changed {
        let api: Api<GeometricAgent> = Api::namespaced(ctx.client.clone(), &agent.namespace);
        let patch = json!({"status": {"allocation": target}});
        match api
            .patch_status(&agent.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        let Some(obj) = objects.get(&agent.demand.agent) else {
            continue;
        };
        match target {
            Some(a) if (a.quota.max(0) as u32) < agent.demand.wanted => {
                let note = format!(
                    "capped at {} of {} wanted replicas by the auction of pool {pool}; pays {} per hour",
                    a.quota, agent.demand.wanted, a.payment
                );
                publish(ctx, obj, EventType::Normal, "CappedByAuction", note).await;
            }
            Some(a) => {
                let note = format!(
                    "granted all {} replicas by the auction of pool {pool}; pays {} per hour",
                    a.quota, a.payment
                );
                publish(ctx, obj, EventType::Normal, "AllocatedByAuction", note).await;
            }
            None => {
                let note = format!("pool {pool} is no longer contended; no quota");
                publish(ctx, obj, EventType::Normal, "QuotaReleased", note).await;
            }
        }
    }
    Ok(Some(auctioned))
}

/// Writes the `allocate` receipt of a pool's decision; at `full_audit` a failed write is an
/// error (the caller must not apply), below it is logged.
async fn record(
    ctx: &Context,
    pool: &str,
    decision: serde_json::Value,
    inputs: &serde_json::Value,
) -> Result<(), AuctionLoopError> {
    let subject = SubjectRef {
        api_version: GeometricAgent::api_version(&()).into_owned(),
        kind: "NodePool".into(),
        namespace: String::new(),
        name: pool.to_string(),
        uid: None,
    };
    let intent = Intent {
        action: ReceiptAction::Allocate,
        subject,
        decision,
        inputs: inputs.clone(),
        regarding: None,
        withheld: format!("the quotas of pool {pool} were not applied"),
    };
    ctx.record_before(intent)
        .await
        .map_err(|source| AuctionLoopError::Receipt {
            pool: pool.to_string(),
            source,
        })
}

async fn publish(ctx: &Context, agent: &GeometricAgent, type_: EventType, reason: &str, note: String) {
    ctx.publish(&agent.object_ref(&()), type_, "Allocate", reason, note)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::quota::PressureLevel;
    use crate::placement::PodDemand;

    fn agent(
        ns: &str,
        name: &str,
        replicas: i32,
        cpu: &str,
        pool: Option<&str>,
        bid: serde_json::Value,
    ) -> GeometricAgent {
        let mut spec = json!({"containers": [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
        if let Some(p) = pool {
            spec["nodeSelector"] = json!({POOL_LABEL: p});
        }
        let mut a: GeometricAgent = serde_json::from_value(json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"workloadType": "batch", "tenant": format!("t-{name}"), "replicas": replicas, "template": {"spec": spec}}
        }))
        .unwrap();
        if !bid.is_null() {
            a.spec.bid = Some(serde_json::from_value(bid).unwrap());
        }
        a
    }

    fn node(name: &str, pool: Option<&str>, cpu: u64) -> NodeSnapshot {
        let mut labels = BTreeMap::new();
        if let Some(p) = pool {
            labels.insert(POOL_LABEL.to_string(), p.to_string());
        }
        NodeSnapshot {
            name: name.into(),
            labels,
            allocatable: Resources {
                cpu_millis: cpu,
                memory_bytes: 1 << 30,
            },
        }
    }

    fn pod(node: &str, agent: Option<(&str, &str)>, cpu: u64) -> PodRecord {
        PodRecord {
            namespace: "x".into(),
            name: "p".into(),
            node: Some(node.into()),
            demand: PodDemand {
                requests: Resources {
                    cpu_millis: cpu,
                    memory_bytes: 0,
                },
                tenant: None,
                strict_isolation: false,
            },
            agent: agent.map(|(n, a)| AgentKey::new(n, a)),
        }
    }

    #[test]
    fn an_agent_competes_in_the_pool_its_template_selects_with_its_requests_and_bid() {
        let s = agent_snapshot(&agent(
            "ns",
            "a",
            3,
            "500m",
            Some("gpu"),
            json!({"valuePerReplica": 2.0}),
        ));
        assert_eq!(s.pool, "gpu");
        assert_eq!(s.demand.agent, "ns/a");
        assert_eq!(s.demand.tenant, "t-a");
        assert_eq!(s.demand.wanted, 3);
        assert_eq!(s.demand.request.cpu_millis, 500);
        assert_eq!(s.demand.request.memory_bytes, 64 << 20);
        assert_eq!(s.demand.marginal_values, vec![2.0; 3]);
        let plain = agent_snapshot(&agent("ns", "b", 1, "1", None, serde_json::Value::Null));
        assert_eq!(
            (plain.pool.as_str(), plain.demand.marginal_values.len()),
            (DEFAULT_POOL, 0)
        );
    }

    #[test]
    fn an_increasing_or_negative_bid_counts_as_no_bid_and_names_the_field() {
        let s = agent_snapshot(&agent(
            "ns",
            "a",
            2,
            "1",
            None,
            json!({"valuePerReplica": 1.0, "marginalValues": [1.0, 5.0]}),
        ));
        assert!(s.demand.marginal_values.is_empty());
        let problem = s.bid_problem.unwrap();
        assert!(
            problem.starts_with("spec.bid.marginalValues[1]: 5 is larger than spec.bid.marginalValues[0] = 1"),
            "{problem}"
        );
        assert_eq!(
            bid_problem(&[], -2.0).unwrap(),
            "spec.bid.valuePerReplica: -2 must be a finite number >= 0"
        );
        assert!(
            bid_problem(&[3.0, f64::NAN], 0.0)
                .unwrap()
                .starts_with("spec.bid.marginalValues[1]")
        );
        assert_eq!(bid_problem(&[3.0, 3.0, 1.0], 0.0), None);
    }

    #[test]
    fn pool_capacity_excludes_other_pools_and_subtracts_only_pods_outside_the_pool_agents() {
        let agents = vec![
            agent_snapshot(&agent("ns", "a", 4, "1", Some("p"), json!({"valuePerReplica": 1.0}))),
            agent_snapshot(&agent("ns", "b", 1, "1", None, serde_json::Value::Null)),
        ];
        let nodes = [
            node("p1", Some("p"), 4000),
            node("p2", Some("p"), 1000),
            node("d1", None, 8000),
        ];
        let pods = [
            pod("p1", Some(("ns", "a")), 1000), // the pool's own agent: reallocated, not subtracted
            pod("p1", None, 1500),              // a stranger on the pool: subtracted
            pod("p2", Some(("ns", "b")), 1000), // another pool's agent: subtracted, leaving nothing
        ];
        let pools = pool_snapshots(agents, &nodes, &pods);
        assert_eq!(pools.keys().collect::<Vec<_>>(), ["default", "p"]);
        let p = &pools["p"];
        assert_eq!(p.agents.len(), 1);
        assert_eq!(
            p.nodes
                .iter()
                .map(|n| (n.node.as_str(), n.cpu_millis))
                .collect::<Vec<_>>(),
            [("p1", 2500)]
        );
        assert_eq!(pools["default"].nodes[0].node, "d1");
    }

    #[test]
    fn an_oversubscribed_pool_gets_quotas_from_the_auction_and_a_relaxed_one_none() {
        let agents = vec![
            agent_snapshot(&agent("ns", "a", 3, "1", Some("p"), json!({"valuePerReplica": 5.0}))),
            agent_snapshot(&agent(
                "ns",
                "b",
                3,
                "1",
                Some("p"),
                json!({"marginalValues": [4.0, 3.0, 1.0], "valuePerReplica": 0.0}),
            )),
        ];
        let pools = pool_snapshots(agents, &[node("n", Some("p"), 4000)], &[]);
        let snap = &pools["p"];
        let settings = QuotaSettings::default();
        let demands: Vec<AgentDemand> = snap.agents.iter().map(|a| a.demand.clone()).collect();
        let decision = quota::decide(&demands, &snap.nodes, settings).unwrap();
        let PoolDecision::Auctioned { pressure, input, .. } = &decision else {
            panic!("expected an auction")
        };
        assert_eq!(pressure.level, PressureLevel::Critical);
        let targets = target_allocations(snap, &decision);
        // 4 slots of 1000m: a's three 5s and b's 4 win; a pays the values it displaces (b's 3
        // and 1), b displaces nothing (a already has all it wants).
        let direct = crate::auction::run(input).unwrap();
        let want: Vec<Option<Allocation>> = direct
            .allocations
            .iter()
            .map(|x| {
                Some(Allocation {
                    quota: x.replicas as i32,
                    payment: x.payment,
                })
            })
            .collect();
        assert_eq!(targets, want);
        let got: Vec<(i32, f64)> = targets.iter().flatten().map(|a| (a.quota, a.payment)).collect();
        assert_eq!(got, [(3, 4.0), (1, 0.0)]);
        let relaxed = pool_snapshots(
            snap.agents.clone(),
            &[node("n", Some("p"), 4000), node("m", Some("p"), 8000)],
            &[],
        );
        let d = quota::decide(&demands, &relaxed["p"].nodes, settings).unwrap();
        assert_eq!(target_allocations(&relaxed["p"], &d), vec![None, None]);
    }
}
