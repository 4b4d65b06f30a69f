//! Placement decisions for the scheduler extender: which nodes a pod may use (filter, with a
//! reason per rejected node) and how good each is (prioritize, 0…10), from a plain snapshot of
//! nodes in the Poincaré ball and the pod's agent policy. Pure and deterministic.
//!
//! Inputs: [`NodeState`] per node (position in the ball, capacity, load, tenants, price,
//! energy class), the pod's [`PodDemand`] and, for pods of a GeometricAgent, its
//! [`AgentPolicy`] (target point, avoid-list, maximum distance, spread rule, replicas placed,
//! data locality, preferred regions; see [`locality`]).
//! Outputs: [`FilterVerdict`] and a sorted list of `(node, score)`.

pub mod bind;
mod embed;
pub mod failover;
pub mod locality;
pub mod measured;
pub mod nearest;
pub mod order;
pub mod quantity;
pub mod redundancy;
pub mod rollout;
pub mod scale;
mod score;
mod target;
pub mod termination;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use embed::{NodeEmbedding, embed_nodes};
pub use locality::{LocalityPolicy, NodeSelector, SelectorOperator, SelectorRequirement};
pub use scale::{SCALE_KIND, scale_action, scale_inputs, scale_record};
pub use score::{DataTier, NodeScore, ScoreTerm, node_scores, prioritize, scale_down_order, score_breakdown};
pub use target::{TargetInputs, agent_target, followed_agents};

use crate::geometry::poincare;

/// CPU and memory, the resources MOM accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Resources {
    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// What the extender knows about one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    pub name: String,
    /// Labels, sorted by key. Shared with the view's node record (an `Arc`): building the
    /// states of the candidate nodes on every extender request must not copy them.
    #[serde(with = "shared_labels")]
    pub labels: Arc<BTreeMap<String, String>>,
    /// Position in the Poincaré ball (curvature −κ).
    pub position: Vec<f64>,
    pub allocatable: Resources,
    /// Sum of the requests of pods bound or assumed on the node.
    pub requested: Resources,
    /// The part of `requested` (and of `pods`) that is only a prioritize-time guess of where
    /// kube-scheduler will put pods it has not bound yet. The filter's room check leaves it out:
    /// kube-scheduler sends the extender only nodes its own cache (which knows where it put
    /// those pods) says have room, so a wrong guess must not close a node the scheduler left
    /// free. Scores still count it.
    pub tentative: Resources,
    pub tentative_pods: u32,
    pub pods: u32,
    pub max_pods: u32,
    /// Tenants with pods on the node, and whether any of those pods demands strict isolation.
    pub tenants: BTreeMap<String, bool>,
    /// Price per hour (label `mom.hypersync.io/hourly-cost`), if known.
    pub hourly_cost: Option<f64>,
    /// Spot/preemptible capacity (label `mom.hypersync.io/spot=true`).
    pub spot: bool,
    /// Energy class A (best) … E (worst), label `mom.hypersync.io/energy-class`.
    pub energy_class: Option<char>,
}

/// Serde for [`NodeState::labels`]: a plain JSON object, whatever owns it.
mod shared_labels {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(labels: &Arc<BTreeMap<String, String>>, s: S) -> Result<S::Ok, S::Error> {
        labels.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<BTreeMap<String, String>>, D::Error> {
        BTreeMap::deserialize(d).map(Arc::new)
    }
}

/// The pod being placed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDemand {
    pub requests: Resources,
    pub tenant: Option<String>,
    /// The pod's agent demands that no other tenant shares its nodes.
    pub strict_isolation: bool,
    /// A failover standby (label `mom.hypersync.io/role=standby`), kept apart from the
    /// agent's active replicas ([`AgentPolicy::active_regions`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

/// How replicas of an agent map to nodes (MomConfig `routingAlgorithm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Each replica to the feasible node nearest to the target.
    #[default]
    GreedyForwarding,
    /// Replicas spread over the k nearest feasible nodes, balanced by load.
    MultipathHyperbolic,
    /// Attraction to the target, repulsion from load and from the agent's own replicas.
    GradientFlow,
}

/// How far from 1 the objective weights' sum may be (the CRD's rule, and the trainer's).
pub const OBJECTIVE_SUM_TOLERANCE: f64 = 1e-6;

/// Objective weights of MomConfig; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Objectives {
    pub performance: f64,
    pub cost: f64,
    pub reliability: f64,
    pub sustainability: f64,
}

impl Default for Objectives {
    fn default() -> Self {
        Self {
            performance: 0.55,
            cost: 0.15,
            reliability: 0.2,
            sustainability: 0.1,
        }
    }
}

/// The placement policy of the pod's GeometricAgent, resolved from its strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPolicy {
    /// Where the agent's replicas belong.
    pub target: Vec<f64>,
    /// Nodes the agent must never use.
    pub avoid_nodes: BTreeSet<String>,
    /// Hard limit on the hyperbolic distance from the target.
    pub max_distance: Option<f64>,
    /// Label of the failure domain replicas spread over (normally the zone label).
    pub spread_label: Option<String>,
    /// Most replicas allowed in one failure domain (from the redundancy policy), if any.
    pub max_per_domain: Option<u32>,
    /// Replicas of the agent already placed, per failure domain value.
    pub replicas_by_domain: BTreeMap<String, u32>,
    /// Positions of the agent's replicas already placed (gradient-flow repulsion).
    pub replica_positions: Vec<Vec<f64>>,
    /// Desired replicas of the agent.
    pub replicas: u32,
    /// The strategy the rules below come from, `namespace/name` (named in filter reasons).
    pub strategy: Option<String>,
    /// Data locality (`spec.placement.locality`): a filter when required, a score tier when
    /// preferred.
    pub locality: Option<LocalityPolicy>,
    /// Regions in order of preference (`spec.placement.preferredRegions`): a hard tier.
    pub preferred_regions: Vec<String>,
    /// The node label whose values are regions (the first MomConfig `topologyKeys` entry).
    pub region_label: Option<String>,
    /// Failover `active_passive`: the regions of the agent's active replicas, where its
    /// standbys may not go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_regions: Option<ActiveRegions>,
}

/// Regions (values of `label`) that hold an agent's active replicas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveRegions {
    pub label: String,
    pub regions: BTreeSet<String>,
}

impl AgentPolicy {
    fn strategy_name(&self) -> &str {
        self.strategy.as_deref().unwrap_or("(none)")
    }
}

/// The result of the filter verb.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterVerdict {
    /// Nodes that pass, in input order.
    pub passed: Vec<String>,
    /// Nodes that fail for a reason preemption could fix (capacity).
    pub failed: BTreeMap<String, String>,
    /// Nodes that fail for a reason preemption cannot fix (avoid-list, isolation, distance,
    /// spread).
    pub unresolvable: BTreeMap<String, String>,
}

/// Hard constraints: avoid-list, required data locality, tenant isolation, maximum distance,
/// failure-domain spread, capacity (without tentative guesses, see [`NodeState::tentative`]); then the preferred-regions tier over the nodes that pass
/// all of them (only the first listed region with a passing node keeps its nodes). Every
/// rejected node gets one reason naming the rule. The extender then narrows what passes to one
/// failure domain under a redundancy cap ([`one_failure_domain`]).
pub fn filter(pod: &PodDemand, agent: Option<&AgentPolicy>, nodes: &[&NodeState], kappa: f64) -> FilterVerdict {
    let mut verdict = FilterVerdict::default();
    let mut passed: Vec<&NodeState> = Vec::new();
    for node in nodes {
        match check_node(pod, agent, node, kappa) {
            Ok(()) => passed.push(node),
            Err(why) if why.resolvable() => {
                verdict.failed.insert(node.name.clone(), why.describe(agent));
            }
            Err(why) => {
                verdict.unresolvable.insert(node.name.clone(), why.describe(agent));
            }
        }
    }
    let tier = agent.and_then(|a| {
        let label = a.region_label.as_ref()?;
        let regions: Vec<Option<&str>> = passed.iter().map(|n| n.labels.get(label).map(String::as_str)).collect();
        let region = locality::preferred_region(&a.preferred_regions, &regions)?;
        Some((a, label, region))
    });
    for node in passed {
        if let Some((agent, label, region)) = tier
            && node.labels.get(label).map(String::as_str) != Some(region)
        {
            verdict.unresolvable.insert(
                node.name.clone(),
                format!(
                    "spec.placement.preferredRegions of OrchestrationStrategy {}: region {region} ({label}) comes first in the list and has a node with room",
                    agent.strategy_name()
                ),
            );
            continue;
        }
        verdict.passed.push(node.name.clone());
    }
    verdict
}

/// Whether [`filter`] passes `node` when it is the only candidate: exactly its hard
/// constraints ([`check_node`]; with one candidate the preferred-regions tier keeps it). For
/// loops that ask about one node at a time (the descheduler's destinations), without building
/// a verdict.
pub fn passes(pod: &PodDemand, agent: Option<&AgentPolicy>, node: &NodeState, kappa: f64) -> bool {
    check_node(pod, agent, node, kappa).is_ok()
}

/// Under a redundancy cap (at most `max_per_domain` replicas per failure domain), narrows the
/// nodes that passed [`filter`] to one failure domain: that of the passing node prioritize ranks
/// first (`scores`, from [`score_breakdown`] over the passing nodes). kube-scheduler binds
/// asynchronously and may filter the agent's next pod before this one's bind arrives; the
/// extender counts this pod in the domain it assumed at prioritize time, and with every
/// candidate in one domain that guess is right whichever node the scheduler picks, so two pods
/// never both take a domain's last slot (which the bind would then have to refuse).
///
/// A passing node `n` ranks by `(score desc, points desc, replicas of the agent in n's domain
/// asc, n asc)`; a node without a score ranks last.
pub fn one_failure_domain(
    agent: &AgentPolicy,
    nodes: &[&NodeState],
    scores: &[NodeScore],
    verdict: &mut FilterVerdict,
) {
    let (Some(label), Some(cap)) = (agent.spread_label.as_ref(), agent.max_per_domain) else {
        return;
    };
    let by_name: BTreeMap<&str, &NodeState> = nodes.iter().map(|n| (n.name.as_str(), *n)).collect();
    let scored: BTreeMap<&str, (i64, f64)> = scores.iter().map(|s| (s.node.as_str(), (s.score, s.points))).collect();
    let domain_of = |name: &str| -> String {
        by_name
            .get(name)
            .and_then(|n| n.labels.get(label))
            .cloned()
            .unwrap_or_default()
    };
    let key = |name: &String| {
        let (score, points) = scored.get(name.as_str()).copied().unwrap_or((i64::MIN, f64::MIN));
        let domain = domain_of(name);
        let have = agent.replicas_by_domain.get(&domain).copied().unwrap_or(0);
        (score, points, have, domain, name.clone())
    };
    let Some(best) = verdict.passed.iter().map(key).min_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| b.1.total_cmp(&a.1))
            .then_with(|| (a.2, &a.4).cmp(&(b.2, &b.4)))
    }) else {
        return;
    };
    let chosen = best.3;
    let (keep, drop): (Vec<String>, Vec<String>) = verdict.passed.drain(..).partition(|n| domain_of(n) == chosen);
    verdict.passed = keep;
    for name in drop {
        let domain = domain_of(&name);
        verdict.unresolvable.insert(
            name,
            format!(
                "{label}={domain}: this replica goes to {label}={chosen}, the failure domain of the best-scoring node that passes (one domain per pod, so that pods bound concurrently stay within the redundancy policy of {cap} per domain)"
            ),
        );
    }
}

/// Why [`check_node`] rejects a node, described only when a verdict needs the text
/// ([`passes`] asks thousands of times per plan and never reads it).
enum Rejection<'a> {
    AvoidList,
    Locality(&'a LocalityPolicy),
    TooFar {
        d: f64,
        max: f64,
    },
    ActiveRegion {
        label: &'a str,
        region: &'a str,
    },
    DomainFull {
        label: &'a str,
        domain: &'a str,
        have: u32,
        cap: u32,
    },
    Tenant {
        other: &'a str,
        tenant: &'a str,
    },
    Cpu {
        after: u64,
        allocatable: u64,
    },
    Memory {
        after: u64,
        allocatable: u64,
    },
    Pods {
        pods: u32,
        max: u32,
    },
}

impl Rejection<'_> {
    /// Whether preemption could fix it (capacity): the verdict's `failed`, else `unresolvable`.
    fn resolvable(&self) -> bool {
        matches!(self, Self::Cpu { .. } | Self::Memory { .. } | Self::Pods { .. })
    }

    /// The reason the verdict gives, naming the rule.
    fn describe(&self, agent: Option<&AgentPolicy>) -> String {
        let strategy = agent.map(AgentPolicy::strategy_name).unwrap_or("(none)");
        match self {
            Self::AvoidList => "node is on the agent's avoid-list".into(),
            Self::Locality(loc) => locality::locality_reason(strategy, &loc.data_nodes),
            Self::TooFar { d, max } => {
                format!("hyperbolic distance {d:.3} from the agent's target exceeds maxDistance {max}")
            }
            Self::ActiveRegion { label, region } => format!(
                "{label}={region} runs the agent's active replicas; its standbys go to another region (failover active_passive of {strategy})"
            ),
            Self::DomainFull {
                label,
                domain,
                have,
                cap,
            } => format!(
                "{label}={domain} already holds {have} of the agent's replicas; the redundancy policy allows {cap}"
            ),
            Self::Tenant { other, tenant } => {
                format!("strict tenant isolation: node runs pods of tenant {other:?}, this pod belongs to {tenant:?}")
            }
            Self::Cpu { after, allocatable } => {
                format!("insufficient cpu: {after}m requested of {allocatable}m allocatable")
            }
            Self::Memory { after, allocatable } => {
                format!("insufficient memory: {after} bytes requested of {allocatable} allocatable")
            }
            Self::Pods { pods, max } => format!("too many pods: {pods} of {max}"),
        }
    }
}

fn check_node<'a>(
    pod: &'a PodDemand,
    agent: Option<&'a AgentPolicy>,
    node: &'a NodeState,
    kappa: f64,
) -> Result<(), Rejection<'a>> {
    if let Some(agent) = agent {
        if agent.avoid_nodes.contains(&node.name) {
            return Err(Rejection::AvoidList);
        }
        if let Some(loc) = agent.locality.as_ref().filter(|l| l.required)
            && !loc.data_nodes.matches(&node.labels)
        {
            return Err(Rejection::Locality(loc));
        }
        if let Some(max) = agent.max_distance
            && !agent.target.is_empty()
            && agent.target.len() == node.position.len()
        {
            let d = poincare::distance(&agent.target, &node.position, kappa);
            if d > max {
                return Err(Rejection::TooFar { d, max });
            }
        }
        if let Some(active) = agent.active_regions.as_ref().filter(|_| pod.standby) {
            let region = node.labels.get(&active.label).map(String::as_str).unwrap_or("");
            if active.regions.contains(region) {
                return Err(Rejection::ActiveRegion {
                    label: &active.label,
                    region,
                });
            }
        }
        if let (Some(label), Some(cap)) = (&agent.spread_label, agent.max_per_domain) {
            let domain = node.labels.get(label).map(String::as_str).unwrap_or("");
            let have = agent.replicas_by_domain.get(domain).copied().unwrap_or(0);
            if have >= cap {
                return Err(Rejection::DomainFull {
                    label,
                    domain,
                    have,
                    cap,
                });
            }
        }
    }
    let tenant = pod.tenant.as_deref().unwrap_or("");
    for (other, strict) in &node.tenants {
        if (pod.strict_isolation || *strict) && other != tenant {
            return Err(Rejection::Tenant { other, tenant });
        }
    }
    let held = Resources {
        cpu_millis: node.requested.cpu_millis.saturating_sub(node.tentative.cpu_millis),
        memory_bytes: node.requested.memory_bytes.saturating_sub(node.tentative.memory_bytes),
    };
    let after = held.saturating_add(pod.requests);
    if after.cpu_millis > node.allocatable.cpu_millis {
        return Err(Rejection::Cpu {
            after: after.cpu_millis,
            allocatable: node.allocatable.cpu_millis,
        });
    }
    if after.memory_bytes > node.allocatable.memory_bytes {
        return Err(Rejection::Memory {
            after: after.memory_bytes,
            allocatable: node.allocatable.memory_bytes,
        });
    }
    let pods = node.pods.saturating_sub(node.tentative_pods);
    if pods >= node.max_pods {
        return Err(Rejection::Pods {
            pods,
            max: node.max_pods,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
