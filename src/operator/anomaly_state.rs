//! What the anomaly loop ([`super::anomaly`]) last concluded, shared through the context with
//! the scaler (agent flags) and the status writer (the `AnomalyDetection` condition). Its own
//! module so the context does not import the loop.

use std::collections::{BTreeMap, BTreeSet};

use super::crd::conditions::{self, ConditionStatus, DesiredCondition};
use super::view::AgentKey;

/// What the loop last concluded: the agents' flags (for strategy matching) and, for the
/// MomConfig condition, how the series answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyState {
    pub agent_flags: BTreeMap<AgentKey, BTreeSet<String>>,
    /// Per agent, each flag with the series that raised it (for the agent's `Anomalous`
    /// condition).
    pub agent_flag_series: BTreeMap<AgentKey, BTreeMap<String, BTreeSet<String>>>,
    /// `None`: the loop is off (no `spec.anomaly`, disabled, or no series).
    pub series: Option<usize>,
    /// `series name: error` of the series whose query failed at the last pass.
    pub errors: Vec<String>,
    /// Nodes flagged now (their names, sorted).
    pub flagged_nodes: BTreeSet<String>,
    /// Whether `spec.anomaly` names agent series (then agents count as evidence for the root
    /// cause: an unflagged agent in a domain speaks against it).
    pub agent_series: bool,
    /// Per flagged agent, the best-ranked root-cause domain that contains it (written by the
    /// status loop from the same diagnosis as the MomConfig's `rootCause`; the agent's own
    /// `status.rootCause`).
    pub agent_root_causes: BTreeMap<AgentKey, super::crd::momconfig::RootCauseStatus>,
}

/// A GeometricAgent's condition `Anomalous`: `True` (`AnomalyFlagged`) naming each flag the
/// anomaly loop raised on it with the series that raised it; `False` (`NoAnomaly`) otherwise.
pub fn agent_condition(state: &AnomalyState, agent: &AgentKey) -> DesiredCondition {
    let flags = state.agent_flags.get(agent).filter(|f| !f.is_empty());
    let Some(flags) = flags else {
        return DesiredCondition::new(
            conditions::ANOMALOUS,
            ConditionStatus::False,
            conditions::reason::NO_ANOMALY,
            "no anomaly flag is raised on this agent",
        );
    };
    let series = state.agent_flag_series.get(agent);
    let named: Vec<String> = flags
        .iter()
        .map(|f| {
            let by: Vec<&str> = series
                .and_then(|s| s.get(f))
                .map(|s| s.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if by.is_empty() {
                format!("flag {f}")
            } else {
                format!("flag {f} (series {})", by.join(", "))
            }
        })
        .collect();
    DesiredCondition::new(
        conditions::ANOMALOUS,
        ConditionStatus::True,
        conditions::reason::ANOMALY_FLAGGED,
        format!("anomaly detection raised {}", named.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_with_flags_is_anomalous_naming_flags_and_series_and_one_without_is_not() {
        let web = AgentKey {
            namespace: "ns".into(),
            name: "web".into(),
        };
        let other = AgentKey {
            namespace: "ns".into(),
            name: "db".into(),
        };
        let mut state = AnomalyState::default();
        state.agent_flags.insert(
            web.clone(),
            BTreeSet::from(["latency-high".to_string(), "errors".to_string()]),
        );
        state.agent_flag_series.insert(
            web.clone(),
            BTreeMap::from([(
                "latency-high".to_string(),
                BTreeSet::from(["p99".to_string(), "p50".to_string()]),
            )]),
        );
        let c = agent_condition(&state, &web);
        assert_eq!(c.status, ConditionStatus::True);
        assert_eq!(c.reason, conditions::reason::ANOMALY_FLAGGED);
        assert_eq!(
            c.message,
            "anomaly detection raised flag errors; flag latency-high (series p50, p99)"
        );
        let c = agent_condition(&state, &other);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, conditions::reason::NO_ANOMALY)
        );
    }
}
