//! Each agent's optimum computed from the snapshot alone, for the callers that run the planner
//! without an agent controller: the synthetic runs (`synthetic`), `mom deschedule plan`
//! on a snapshot file, benchmarks and tests. The operator never calls this: it passes the agent
//! controller's target as `Agent::target`, the one home of an agent's target.
//!
//! Input: a [`Snapshot`]. Output: per agent (in snapshot order) `placement::agent_target` over
//! - its explicit target `Agent::target` (an anchor),
//! - its peers' replica positions with the traffic weights (a dependent: the weighted Fréchet
//!   mean `argmin_x Σ_peers Σ_replicas (w_peer / n_peer)·d(x, r)²`),
//! - its previous target,
//!
//! first rule that applies; `None` when none does. [`with_agent_optima`] writes them into a copy
//! of the snapshot as `Agent::target`, which the planner then reads as the optimum.

use std::collections::BTreeMap;

use super::Snapshot;
use crate::placement::{self, TargetInputs};

/// Every agent's optimum, in `snapshot.agents` order. Pods on nodes or of agents the snapshot
/// does not hold are left out (the planner's validation reports them).
pub fn agent_optima(snapshot: &Snapshot) -> Vec<Option<Vec<f64>>> {
    let nodes: BTreeMap<&str, &Vec<f64>> = snapshot.nodes.iter().map(|n| (n.name.as_str(), &n.position)).collect();
    let agent_index: BTreeMap<&str, usize> = snapshot
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i))
        .collect();
    // Replica positions per agent, in pod order.
    let mut replicas: Vec<Vec<Vec<f64>>> = vec![Vec::new(); snapshot.agents.len()];
    for p in &snapshot.pods {
        let agent = p.agent.as_deref().and_then(|a| agent_index.get(a));
        if let (Some(&a), Some(position)) = (agent, nodes.get(p.node.as_str())) {
            replicas[a].push((*position).clone());
        }
    }
    snapshot
        .agents
        .iter()
        .map(|agent| {
            let inputs = TargetInputs {
                explicit: agent.target.clone(),
                peers: agent
                    .peers
                    .iter()
                    .filter_map(|peer| {
                        let i = *agent_index.get(peer.agent.as_str())?;
                        Some((peer.weight, replicas[i].clone()))
                    })
                    .collect(),
                previous: agent.previous_target.clone(),
                ..TargetInputs::default()
            };
            placement::agent_target(&inputs, snapshot.kappa)
        })
        .collect()
}

/// A copy of `snapshot` whose agents' targets are their [`agent_optima`]: what an agent
/// controller would have passed.
pub fn with_agent_optima(snapshot: &Snapshot) -> Snapshot {
    let mut out = snapshot.clone();
    for (agent, optimum) in out.agents.iter_mut().zip(agent_optima(snapshot)) {
        agent.target = optimum;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descheduler::testutil::*;
    use crate::descheduler::{Agent, Peer};
    use crate::geometry::poincare;

    /// `dep` follows `peer`'s two replicas in the east; `lone` has only a previous target;
    /// `peer` has an explicit one.
    fn snapshot() -> Snapshot {
        let mut s = four_node_snapshot();
        s.pods = vec![
            pod("peer-0", "east-1", Some("peer")),
            pod("peer-1", "east-2", Some("peer")),
            pod("dep-0", "west-1", Some("dep")),
        ];
        s.agents = vec![
            Agent {
                peers: vec![Peer {
                    agent: "peer".into(),
                    weight: 5.0,
                }],
                target: None,
                ..agent_at("dep", &[0.0, 0.0])
            },
            agent_at("peer", &[0.5, 0.1]),
            Agent {
                previous_target: Some(vec![0.3, 0.3]),
                target: None,
                ..agent_at("lone", &[0.0, 0.0])
            },
            Agent {
                target: None,
                ..agent_at("idle", &[0.0, 0.0])
            },
        ];
        s
    }

    #[test]
    fn explicit_targets_peers_and_previous_targets_give_the_optimum_in_that_order() {
        let s = snapshot();
        let o = agent_optima(&s);
        let mean = poincare::frechet_mean(
            &[s.nodes[0].position.clone(), s.nodes[1].position.clone()],
            &[2.5, 2.5],
            1.0,
        )
        .unwrap();
        assert_eq!(o[0].as_deref(), Some(mean.as_slice()), "dep follows its peer");
        assert_eq!(o[1], Some(vec![0.5, 0.1]), "peer keeps its explicit target");
        assert_eq!(o[2], Some(vec![0.3, 0.3]), "lone keeps its previous target");
        assert_eq!(o[3], None, "idle has nothing to anchor to");
    }

    #[test]
    fn the_filled_snapshot_differs_only_in_the_agents_targets() {
        let s = snapshot();
        let filled = with_agent_optima(&s);
        assert_eq!(filled.pods, s.pods);
        assert_eq!(filled.nodes, s.nodes);
        let targets: Vec<_> = filled.agents.iter().map(|a| a.target.clone()).collect();
        assert_eq!(targets, agent_optima(&s));
        // Filling twice changes nothing: an explicit target is its own optimum.
        assert_eq!(with_agent_optima(&filled), filled);
    }
}
