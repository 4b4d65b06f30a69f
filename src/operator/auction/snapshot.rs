//! What the auction sees of the cluster, built purely from listed objects and the placement view
//! (testable without an apiserver): each agent's demand and bid ([`agent_snapshot`]), each node
//! pool's capacity net of other pods ([`pool_snapshots`]), and the allocations an auction outcome
//! gives the pool's agents ([`target_allocations`]).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::auction::quota::{AgentDemand, PoolDecision};
use crate::auction::{NodeCapacity, ResourceRequest};
use crate::labels::{HOURLY_COST_LABEL, POOL_LABEL};
use crate::operator::crd::GeometricAgent;
use crate::operator::crd::agent::Allocation;
use crate::operator::pools::{DEFAULT_POOL, pool_of};
use crate::operator::view::{AgentKey, PodRecord};
use crate::placement::Resources;

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
    /// The budget the capacity was cut to ([`apply_budget`]), when one is set.
    pub budget: Option<PoolBudget>,
}

/// What MomConfig `spec.budget` left a pool's auction (recorded in its `allocate` receipt).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolBudget {
    pub max_hourly_cost: f64,
    /// Cost per hour of the pods of agents outside the pool.
    pub other_pods_cost: f64,
    /// What is left for the pool: `maxHourlyCost − otherPodsCost`.
    pub left: f64,
    /// The pool's capacity before the cut (the auction's `nodes` hold what is offered).
    pub capacity_before: Vec<NodeCapacity>,
}

/// Cuts every pool's capacity to what `max_hourly_cost` leaves it
/// (`crate::budget::affordable_capacity`): the budget minus the cost of the pods (`pods`, with
/// their agents) of agents outside the pool.
pub fn apply_budget(
    pools: &mut BTreeMap<String, PoolSnapshot>,
    max_hourly_cost: f64,
    pods: &[(AgentKey, crate::budget::PricedPod)],
    prices: &[crate::budget::PricedNode],
) {
    for snap in pools.values_mut() {
        let members: BTreeSet<AgentKey> = snap
            .agents
            .iter()
            .map(|a| AgentKey::new(a.namespace.clone(), a.name.clone()))
            .collect();
        let others: Vec<crate::budget::PricedPod> = pods
            .iter()
            .filter(|(k, _)| !members.contains(k))
            .map(|(_, p)| p.clone())
            .collect();
        let other_pods_cost = crate::budget::hourly_cost(&others, prices);
        let left = max_hourly_cost - other_pods_cost;
        let before = std::mem::take(&mut snap.nodes);
        snap.nodes = crate::budget::affordable_capacity(&before, prices, left);
        snap.budget = Some(PoolBudget {
            max_hourly_cost,
            other_pods_cost,
            left,
            capacity_before: before,
        });
    }
}

/// The auction's name of an agent: `namespace/name`.
pub fn agent_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

pub use crate::auction::quota::bid_problem;

/// What the auction needs from an agent object; `tenant` is its namespace's tenant (the one
/// its costs are charged to, see `operator::tenancy`).
pub fn agent_snapshot(agent: &GeometricAgent, tenant: String) -> AgentSnapshot {
    let namespace = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let pool = pool_of(agent);
    let template = agent.spec.template.summary();
    // Unparsable quantities are reported by the agent controller; here they request nothing.
    let requests = crate::operator::view::effective_requests(
        template.containers.iter().map(|c| &c.requests),
        template.init_containers.iter().map(|c| &c.requests),
    )
    .unwrap_or_default();
    // Clamped to the CRD's bound: the bid vector below has one entry per wanted replica.
    let wanted = agent.spec.replicas.clamp(0, crate::operator::crd::MAX_REPLICAS) as u32;
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
            tenant,
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

pub(super) fn node_cost(labels: &BTreeMap<String, String>) -> f64 {
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
        snap.nodes = crate::auction::quota::offered_capacity(
            by_pool
                .get(pool)
                .map(|ns| ns.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    let u = used.get(n.name.as_str()).copied().unwrap_or_default();
                    (n.name.as_str(), n.allocatable, u, node_cost(&n.labels))
                }),
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::quota::{self, PressureLevel, QuotaSettings};
    use crate::placement::PodDemand;
    use serde_json::json;

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

    /// The snapshot of `a` for tenant `t-<name>`.
    fn snap(a: &GeometricAgent) -> AgentSnapshot {
        agent_snapshot(a, format!("t-{}", a.name_any()))
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
                standby: false,
            },
            agent: agent.map(|(n, a)| AgentKey::new(n, a)),
            node_selector: BTreeMap::new(),
        }
    }

    #[test]
    fn an_agent_competes_in_the_pool_its_template_selects_with_its_requests_and_bid() {
        let s = snap(&agent(
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
        let plain = snap(&agent("ns", "b", 1, "1", None, serde_json::Value::Null));
        assert_eq!(
            (plain.pool.as_str(), plain.demand.marginal_values.len()),
            (DEFAULT_POOL, 0)
        );
    }

    #[test]
    fn an_agent_without_a_bid_in_a_contended_pool_gets_the_capacity_the_bidders_left() {
        // 5 one-cpu slots, 6 wanted (critical): the bidder's 3, then the 2 left for `free`.
        let agents = vec![
            snap(&agent("ns", "bidder", 3, "1", None, json!({"valuePerReplica": 4.0}))),
            snap(&agent("ns", "free", 3, "1", None, serde_json::Value::Null)),
        ];
        let pools = pool_snapshots(agents, &[node("d1", None, 5000)], &[]);
        let pool = &pools[DEFAULT_POOL];
        let demands: Vec<_> = pool.agents.iter().map(|a| a.demand.clone()).collect();
        let decision = quota::decide(&demands, &pool.nodes, QuotaSettings::default()).unwrap();
        let quotas: Vec<Option<i32>> = target_allocations(pool, &decision)
            .into_iter()
            .map(|a| a.map(|a| a.quota))
            .collect();
        assert_eq!(quotas, vec![Some(3), Some(2)]);
    }

    #[test]
    fn replicas_beyond_the_crd_bound_are_clamped_before_a_bid_vector_is_sized() {
        // Stored under an older CRD without the bound: the vector stays at MAX_REPLICAS.
        let s = snap(&agent("ns", "a", i32::MAX, "1", None, json!({"valuePerReplica": 1.0})));
        assert_eq!(s.demand.wanted, crate::operator::crd::MAX_REPLICAS as u32);
        assert_eq!(
            s.demand.marginal_values.len(),
            crate::operator::crd::MAX_REPLICAS as usize
        );
    }

    #[test]
    fn an_increasing_or_negative_bid_counts_as_no_bid_and_names_the_field() {
        let s = snap(&agent(
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
            snap(&agent("ns", "a", 4, "1", Some("p"), json!({"valuePerReplica": 1.0}))),
            snap(&agent("ns", "b", 1, "1", None, serde_json::Value::Null)),
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
    fn a_budget_cuts_the_pool_to_the_capacity_it_pays_for_and_the_auction_clears_against_it() {
        // Two agents of 1 cpu in pool p (two 8-cpu nodes at 1 per hour: 0.125 per replica):
        // 6 wanted, 16 slots — relaxed without a budget.
        let agents = || {
            vec![
                snap(&agent("ns", "a", 3, "1", Some("p"), json!({"valuePerReplica": 5.0}))),
                snap(&agent("ns", "b", 3, "1", Some("p"), json!({"valuePerReplica": 1.0}))),
            ]
        };
        let nodes = [node("p1", Some("p"), 8000), node("p2", Some("p"), 8000)];
        let prices: Vec<crate::budget::PricedNode> = nodes
            .iter()
            .map(|n| crate::budget::PricedNode::from_labels(&n.name, &n.labels, n.allocatable).0)
            .collect();
        // A pod of an agent outside the pool costs 0.25 (2 of 8 cpus).
        let other = (
            AgentKey::new("ns", "c"),
            crate::budget::PricedPod {
                name: "ns/c-1".into(),
                requests: Resources {
                    cpu_millis: 2000,
                    memory_bytes: 0,
                },
                node: Some("p2".into()),
                node_selector: BTreeMap::new(),
            },
        );
        let decide = |pools: &BTreeMap<String, PoolSnapshot>| {
            let snap = &pools["p"];
            let demands: Vec<AgentDemand> = snap.agents.iter().map(|a| a.demand.clone()).collect();
            quota::decide(&demands, &snap.nodes, QuotaSettings::default()).unwrap()
        };
        let mut pools = pool_snapshots(agents(), &nodes, &[]);
        assert!(matches!(decide(&pools), PoolDecision::Uncontended { .. }));
        // maxHourlyCost 0.75: 0.5 left after the other pod, which pays for half of p1 (4 cpus):
        // 4 replicas for 6 wanted — the auction gives them to the higher bidder first.
        apply_budget(&mut pools, 0.75, &[other], &prices);
        let p = &pools["p"];
        assert_eq!(
            p.nodes
                .iter()
                .map(|n| (n.node.as_str(), n.cpu_millis))
                .collect::<Vec<_>>(),
            [("p1", 4000)]
        );
        let budget = p.budget.as_ref().unwrap();
        assert_eq!((budget.other_pods_cost, budget.left), (0.25, 0.5));
        assert_eq!(budget.capacity_before.len(), 2);
        let decision = decide(&pools);
        let PoolDecision::Auctioned { pressure, .. } = &decision else {
            panic!("expected an auction under the budget")
        };
        assert_eq!(pressure.level, PressureLevel::Critical);
        let quotas: Vec<i32> = target_allocations(p, &decision)
            .iter()
            .map(|a| a.as_ref().map_or(-1, |a| a.quota))
            .collect();
        assert_eq!(quotas, [3, 1]);
    }

    #[test]
    fn an_oversubscribed_pool_gets_quotas_from_the_auction_and_a_relaxed_one_none() {
        let agents = vec![
            snap(&agent("ns", "a", 3, "1", Some("p"), json!({"valuePerReplica": 5.0}))),
            snap(&agent(
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
