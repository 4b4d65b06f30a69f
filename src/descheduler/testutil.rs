//! Small snapshot builders shared by the descheduler's unit tests.

use std::collections::BTreeMap;

use super::{Agent, Node, Pod, Snapshot};
use crate::placement::Resources;

pub fn res(cpu_millis: u64, memory_bytes: u64) -> Resources {
    Resources {
        cpu_millis,
        memory_bytes,
    }
}

pub fn node(name: &str, position: [f64; 2]) -> Node {
    Node {
        name: name.into(),
        labels: BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
        position: position.to_vec(),
        allocatable: res(4_000, 16 << 30),
        requested: res(0, 0),
        used: res(0, 0),
        max_pods: 110,
        pods: 0,
        unhealthy: false,
        anomalous: false,
    }
}

/// Two close nodes (≈ 1 apart) in the "east" of the disk and two in the "west", ≈ 15 away.
pub fn four_node_snapshot() -> Snapshot {
    Snapshot {
        kappa: 1.0,
        now: 10_000,
        nodes: vec![
            node("east-1", [0.999, 0.0005]),
            node("east-2", [0.999, -0.0005]),
            node("west-1", [-0.999, 0.0005]),
            node("west-2", [-0.999, -0.0005]),
        ],
        pods: Vec::new(),
        agents: Vec::new(),
    }
}

pub fn pod(name: &str, node: &str, agent: Option<&str>) -> Pod {
    Pod {
        name: name.into(),
        namespace: "default".into(),
        node: node.into(),
        agent: agent.map(str::to_string),
        tenant: None,
        strict_isolation: false,
        standby: false,
        requests: res(100, 128 << 20),
        usage: res(100, 128 << 20),
        node_selector: BTreeMap::new(),
        last_evicted_at: None,
        protected: false,
    }
}

/// An agent with an explicit target.
pub fn agent_at(name: &str, target: &[f64]) -> Agent {
    Agent {
        name: name.into(),
        target: Some(target.to_vec()),
        previous_target: None,
        peers: Vec::new(),
        avoid_nodes: Default::default(),
        max_distance: None,
        label_rules: Default::default(),
    }
}

/// Requests of the snapshot's pods added to each node's `requested`.
pub fn account_requests(s: &mut Snapshot) {
    for p in &s.pods {
        if let Some(n) = s.nodes.iter_mut().find(|n| n.name == p.node) {
            n.requested = n.requested.saturating_add(p.requests);
        }
    }
}
