//! What the anomaly loop ([`super::anomaly`]) last concluded, shared through the context with
//! the scaler (agent flags) and the status writer (the `AnomalyDetection` condition). Its own
//! module so the context does not import the loop.

use std::collections::{BTreeMap, BTreeSet};

use super::view::AgentKey;

/// What the loop last concluded: the agents' flags (for strategy matching) and, for the
/// MomConfig condition, how the series answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyState {
    pub agent_flags: BTreeMap<AgentKey, BTreeSet<String>>,
    /// `None`: the loop is off (no `spec.anomaly`, disabled, or no series).
    pub series: Option<usize>,
    /// `series name: error` of the series whose query failed at the last pass.
    pub errors: Vec<String>,
    /// Nodes flagged now (their names, sorted).
    pub flagged_nodes: BTreeSet<String>,
    /// Whether `spec.anomaly` names agent series (then agents count as evidence for the root
    /// cause: an unflagged agent in a domain speaks against it).
    pub agent_series: bool,
}
