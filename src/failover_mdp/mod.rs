//! Failover as a Markov decision process (issue 19, items 1–2): the health of failure domains,
//! their transition probabilities learned from history, and the per-agent choice between
//! staying, adding a standby, draining, evacuating and failing over, by value iteration.
//!
//! Input: a [`Snapshot`] — failure domains (node, rack, zone, region) with an observation and
//! a history of health states (or persisted counts), agents with their domain and standby, the
//! objective weights and solver settings. Output: a [`Report`] — each domain's model and policy
//! table, each agent's action with its expected value, and why any domain fell back to the
//! conservative rule. Pure and deterministic: no clock, no randomness, sorted iteration.
//!
//! - [`health`]: the four states and the observation → state rule;
//! - [`transitions`]: counts, the Dirichlet-prior estimate, the stochastic-matrix check;
//! - [`value_iteration`]: a finite MDP, value iteration, exact policy evaluation;
//! - [`model`]: the failover process (states, actions, costs) and the conservative rule;
//! - [`plan`]: one pass over a snapshot, its receipt record and its replay.
//!
//! A missing or degenerate transition model (no or too little history, a given matrix that is
//! not stochastic, non-convergence within the iteration cap) is not an error: that domain's
//! agents get [`model::conservative_action`] and the report says why. Errors are for input
//! that cannot be read as a snapshot at all (unknown domain, NaN lag, bad weights…).

pub mod health;
pub mod model;
pub mod plan;
pub mod transitions;
pub mod value_iteration;

pub use health::{DomainKind, HealthState, Observation, Thresholds, classify};
pub use model::{Action, AgentState, CostModel, Location, Weights, conservative_action};
pub use plan::{
    AgentDecision, AgentInput, DomainInput, DomainReport, Estimation, PLAN_KIND, PolicyRow, Report, Snapshot,
    decision_record, plan, replay,
};
pub use transitions::{TransitionCounts, TransitionMatrix};
pub use value_iteration::{Settings, Solution, value_iteration};

/// Invalid input to the failover planner; each names the offending field or object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FailoverMdpError {
    #[error("{field} is {value}, outside its allowed range")]
    BadSetting { field: &'static str, value: f64 },
    #[error("thresholds must be ordered degraded ≤ suspect ≤ failed (lags, restarts and evictions)")]
    ThresholdsOutOfOrder,
    #[error("domain {domain}: observation.{field} must be finite and ≥ 0, got {value}")]
    BadObservation {
        domain: String,
        field: &'static str,
        value: f64,
    },
    #[error("domain {0}: give exactly one of `observation` and `state`")]
    ObservationOrState(String),
    #[error("domain {0}: `transitions` replaces the estimate, so `history` and `counts` must be absent")]
    ConflictingModel(String),
    #[error("{0} must not be empty")]
    EmptyName(&'static str),
    #[error("{what} {name} appears twice")]
    Duplicate { what: &'static str, name: String },
    #[error("agent {agent}: domain {domain} is not among the snapshot's domains")]
    UnknownDomain { agent: String, domain: String },
    #[error("decision process state {state}: {reason}")]
    InvalidMdp { state: usize, reason: String },
}

#[cfg(test)]
mod tests {
    use super::HealthState::*;
    use super::*;
    use proptest::prelude::*;

    /// A history in which suspect leads to failed `fails` times out of 10.
    fn history(fails: usize) -> Vec<Vec<HealthState>> {
        (0..10)
            .map(|k| {
                let end = if k < fails { Failed } else { Healthy };
                vec![Healthy, Healthy, Degraded, Suspect, end, Healthy]
            })
            .collect()
    }

    fn domain(name: &str, state: HealthState, fails: usize) -> DomainInput {
        DomainInput {
            name: name.into(),
            kind: DomainKind::Zone,
            observation: None,
            state: Some(state),
            history: history(fails),
            counts: None,
            transitions: None,
        }
    }

    fn agent(name: &str, domain: &str, standby: bool) -> AgentInput {
        AgentInput {
            name: name.into(),
            domain: domain.into(),
            standby,
        }
    }

    fn snapshot(domains: Vec<DomainInput>, agents: Vec<AgentInput>) -> Snapshot {
        Snapshot {
            domains,
            agents,
            weights: Weights::default(),
            costs: CostModel::default(),
            solver: Settings::default(),
            thresholds: Thresholds::default(),
            estimation: Estimation::default(),
        }
    }

    fn decision<'a>(report: &'a Report, agent: &str) -> &'a AgentDecision {
        report.agents.iter().find(|d| d.agent == agent).unwrap()
    }

    #[test]
    fn a_healthy_snapshot_plans_every_agent_from_the_model_without_fallback() {
        let s = snapshot(
            vec![domain("zone-a", Healthy, 1), domain("zone-b", Suspect, 8)],
            vec![agent("shop/cart", "zone-b", false), agent("shop/web", "zone-a", false)],
        );
        let r = plan(&s).unwrap();
        assert_eq!(r.fallback, None);
        assert_eq!(r.policy.len(), 2 * AgentState::COUNT);
        // Sorted by agent name, each with a value.
        assert_eq!(r.agents[0].agent, "shop/cart");
        assert!(
            r.agents
                .iter()
                .all(|a| a.expected_value.is_some() && a.fallback.is_none())
        );
        assert_eq!(decision(&r, "shop/web").action, Action::Stay);
        assert_ne!(decision(&r, "shop/cart").action, Action::Stay);
        assert!(r.domains.iter().all(|d| d.iterations.is_some_and(|i| i > 0)));
    }

    #[test]
    fn an_empty_history_falls_back_to_the_conservative_rule_with_a_reason() {
        let mut empty = domain("zone-b", Failed, 0);
        empty.history.clear();
        let s = snapshot(
            vec![domain("zone-a", Healthy, 1), empty],
            vec![
                agent("a", "zone-a", false),
                agent("b", "zone-b", false),
                agent("c", "zone-b", true),
            ],
        );
        let r = plan(&s).unwrap();
        let reason = r.fallback.clone().unwrap();
        assert!(
            reason.contains("zone-b") && reason.contains("empty history"),
            "{reason}"
        );
        assert_eq!(decision(&r, "b").action, Action::EvacuateNow);
        assert_eq!(decision(&r, "b").expected_value, None);
        assert_eq!(decision(&r, "c").action, Action::FailOver);
        assert!(decision(&r, "c").fallback.is_some());
        // Positive control: the domain with history is still planned by the model.
        assert!(decision(&r, "a").expected_value.is_some() && decision(&r, "a").fallback.is_none());
    }

    #[test]
    fn too_little_history_falls_back_and_enough_history_does_not() {
        let mut short = domain("zone-a", Suspect, 0);
        short.history = vec![vec![Healthy, Degraded, Suspect]];
        let r = plan(&snapshot(vec![short.clone()], vec![agent("a", "zone-a", false)])).unwrap();
        assert!(r.fallback.as_deref().unwrap().contains("only 2 observed transitions"));
        assert_eq!(r.agents[0].action, Action::AddStandby);
        let mut relaxed = snapshot(vec![short], vec![agent("a", "zone-a", false)]);
        relaxed.estimation.min_transitions = 2;
        assert_eq!(plan(&relaxed).unwrap().fallback, None);
    }

    #[test]
    fn a_given_matrix_whose_rows_do_not_sum_to_one_or_hold_nan_falls_back_and_a_stochastic_one_is_used() {
        let mut bad_sum = domain("zone-a", Failed, 0);
        bad_sum.history.clear();
        bad_sum.transitions = Some([[0.7, 0.1, 0.1, 0.0]; 4]);
        let mut nan = bad_sum.clone();
        nan.name = "zone-b".into();
        nan.transitions = Some([[f64::NAN, 0.5, 0.25, 0.25]; 4]);
        let mut good = bad_sum.clone();
        good.name = "zone-c".into();
        good.transitions = Some([[0.7, 0.1, 0.1, 0.1]; 4]);
        let s = snapshot(
            vec![bad_sum, nan, good],
            vec![
                agent("a", "zone-a", false),
                agent("b", "zone-b", false),
                agent("c", "zone-c", false),
            ],
        );
        let r = plan(&s).unwrap();
        let reason = r.fallback.clone().unwrap();
        assert!(
            reason.contains("domain zone-a") && reason.contains("sums to 0.900000"),
            "{reason}"
        );
        assert!(reason.contains("domain zone-b") && reason.contains("NaN"), "{reason}");
        assert!(!reason.contains("zone-c"), "{reason}");
        assert_eq!(decision(&r, "a").action, Action::EvacuateNow);
        assert_eq!(decision(&r, "b").action, Action::EvacuateNow);
        assert!(decision(&r, "c").expected_value.is_some());
        // The fleet is made of the usable domain only.
        assert_eq!(r.fleet_transitions, Some([[0.7, 0.1, 0.1, 0.1]; 4]));
    }

    #[test]
    fn when_no_domain_has_a_model_every_agent_falls_back() {
        let mut a = domain("zone-a", Suspect, 0);
        a.history.clear();
        let r = plan(&snapshot(vec![a], vec![agent("x", "zone-a", false)])).unwrap();
        assert!(r.fallback.is_some());
        assert_eq!(r.agents[0].action, Action::AddStandby);
        assert!(r.policy.iter().all(|row| row.value.is_none()));
    }

    #[test]
    fn an_iteration_cap_too_small_falls_back_and_the_default_cap_does_not() {
        let mut s = snapshot(vec![domain("zone-a", Suspect, 3)], vec![agent("x", "zone-a", false)]);
        assert_eq!(plan(&s).unwrap().fallback, None);
        s.solver.max_iterations = 3;
        let r = plan(&s).unwrap();
        assert!(r.fallback.unwrap().contains("did not converge within 3 iterations"));
    }

    #[test]
    fn invalid_snapshots_are_errors_naming_the_object() {
        let ok = snapshot(vec![domain("zone-a", Healthy, 1)], vec![agent("x", "zone-a", false)]);
        assert!(plan(&ok).is_ok());
        let mut unknown = ok.clone();
        unknown.agents[0].domain = "zone-z".into();
        assert!(plan(&unknown).unwrap_err().to_string().contains("zone-z"));
        let mut twice = ok.clone();
        twice.domains.push(domain("zone-a", Healthy, 1));
        assert!(
            plan(&twice)
                .unwrap_err()
                .to_string()
                .contains("domain zone-a appears twice")
        );
        let mut both = ok.clone();
        both.domains[0].observation = Some(Observation {
            heartbeat_lag_seconds: 1.0,
            ready: true,
            anomaly: false,
            restarts: 0,
            evictions: 0,
        });
        assert!(matches!(plan(&both), Err(FailoverMdpError::ObservationOrState(_))));
        let mut nan = both.clone();
        nan.domains[0].state = None;
        if let Some(o) = nan.domains[0].observation.as_mut() {
            o.heartbeat_lag_seconds = f64::NAN;
        }
        assert!(plan(&nan).unwrap_err().to_string().contains("heartbeat_lag_seconds"));
        let mut alpha = ok.clone();
        alpha.estimation.prior_pseudo_count = 0.0;
        assert!(plan(&alpha).unwrap_err().to_string().contains("prior_pseudo_count"));
        let mut conflict = ok;
        conflict.domains[0].transitions = Some([[0.25; 4]; 4]);
        assert!(matches!(plan(&conflict), Err(FailoverMdpError::ConflictingModel(_))));
    }

    #[test]
    fn restored_counts_plan_like_the_history_they_came_from_and_add_to_new_history() {
        let from_history = snapshot(vec![domain("zone-a", Suspect, 4)], vec![agent("x", "zone-a", false)]);
        let first = plan(&from_history).unwrap();
        // A new leader: the persisted counts, no history.
        let mut restored = from_history.clone();
        restored.domains[0].history.clear();
        restored.domains[0].counts = Some(first.domains[0].counts.clone());
        let again = plan(&restored).unwrap();
        assert_eq!(again, first);
        // New observations add to the restored counts.
        restored.domains[0].history = vec![vec![Suspect, Failed]];
        let more = plan(&restored).unwrap();
        assert_eq!(
            more.domains[0].observed_transitions,
            first.domains[0].observed_transitions + 1
        );
        assert_eq!(
            more.domains[0].counts.counts[2][3],
            first.domains[0].counts.counts[2][3] + 1
        );
    }

    #[test]
    fn a_recorded_plan_replays_to_its_output_and_unreadable_inputs_are_an_error() {
        let s = snapshot(vec![domain("zone-a", Suspect, 5)], vec![agent("x", "zone-a", false)]);
        let report = plan(&s).unwrap();
        let record = decision_record(&s, &report);
        assert_eq!(record["kind"], PLAN_KIND);
        let replayed = replay(&record["inputs"]).unwrap();
        assert_eq!(replayed, record["output"]);
        // A different snapshot replays to a different output (the comparison can fail).
        let mut other = s.clone();
        other.domains[0].state = Some(Failed);
        assert_ne!(
            replay(&serde_json::to_value(&other).unwrap()).unwrap(),
            record["output"]
        );
        for garbage in [
            serde_json::json!(null),
            serde_json::json!({"domains": 3}),
            serde_json::json!({"nope": []}),
        ] {
            assert!(replay(&garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn an_observation_is_classified_into_the_agents_state() {
        let mut d = domain("zone-a", Healthy, 1);
        d.state = None;
        d.observation = Some(Observation {
            heartbeat_lag_seconds: 45.0,
            ready: false,
            anomaly: false,
            restarts: 0,
            evictions: 0,
        });
        let r = plan(&snapshot(vec![d], vec![agent("x", "zone-a", true)])).unwrap();
        assert_eq!(r.agents[0].state, Failed);
        assert_eq!(r.agents[0].action, Action::FailOver);
    }

    #[test]
    fn the_same_snapshot_gives_a_byte_identical_report_after_a_json_round_trip() {
        let s = snapshot(
            vec![domain("zone-b", Suspect, 6), domain("zone-a", Degraded, 2)],
            vec![agent("z", "zone-a", true), agent("y", "zone-b", false)],
        );
        let text = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        let one = serde_json::to_string(&plan(&s).unwrap()).unwrap();
        let two = serde_json::to_string(&plan(&back).unwrap()).unwrap();
        assert_eq!(one, two);
        // Domains come out sorted whatever the input order.
        let r = plan(&s).unwrap();
        assert_eq!(r.domains[0].domain, "zone-a");
    }

    fn arb_matrix() -> impl Strategy<Value = TransitionMatrix> {
        let cell = prop_oneof![
            8 => 0.0f64..1.0,
            1 => Just(f64::NAN),
            1 => Just(-0.5),
            1 => Just(f64::INFINITY),
        ];
        (
            proptest::array::uniform4(proptest::array::uniform4(cell)),
            any::<bool>(),
        )
            .prop_map(|(mut m, normalise)| {
                if normalise {
                    for row in m.iter_mut() {
                        let sum: f64 = row.iter().sum();
                        if sum.is_finite() && sum > 0.0 {
                            row.iter_mut().for_each(|x| *x /= sum);
                        }
                    }
                }
                m
            })
    }

    fn arb_state() -> impl Strategy<Value = HealthState> {
        prop_oneof![Just(Healthy), Just(Degraded), Just(Suspect), Just(Failed)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_history_yields_an_available_action_per_agent_and_a_value_unless_it_fell_back(
            domains in proptest::collection::vec(
                (arb_state(), proptest::collection::vec(proptest::collection::vec(arb_state(), 0..12), 0..4)),
                1..4,
            ),
            standbys in proptest::collection::vec(any::<bool>(), 1..6),
        ) {
            let inputs: Vec<DomainInput> = domains
                .iter()
                .enumerate()
                .map(|(i, (state, history))| DomainInput {
                    history: history.clone(),
                    ..domain(&format!("d{i}"), *state, 0)
                })
                .collect();
            let agents: Vec<AgentInput> = standbys
                .iter()
                .enumerate()
                .map(|(i, &standby)| agent(&format!("a{i}"), &format!("d{}", i % inputs.len()), standby))
                .collect();
            let r = plan(&snapshot(inputs, agents)).unwrap();
            prop_assert_eq!(r.agents.len(), standbys.len());
            for a in &r.agents {
                prop_assert!(a.action.available(a.standby));
                match &a.fallback {
                    None => prop_assert!(a.expected_value.is_some_and(f64::is_finite)),
                    Some(why) => {
                        prop_assert!(why.contains(&a.domain));
                        prop_assert_eq!(a.action, conservative_action(a.state, a.standby));
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_given_matrix_yields_a_plan_or_a_fallback_with_a_reason_never_a_panic(
            m in arb_matrix(),
            state in prop_oneof![Just(Healthy), Just(Degraded), Just(Suspect), Just(Failed)],
            standby in any::<bool>(),
        ) {
            let mut d = domain("zone-a", state, 0);
            d.history.clear();
            d.transitions = Some(m);
            let r = plan(&snapshot(vec![d], vec![agent("x", "zone-a", standby)])).unwrap();
            let a = &r.agents[0];
            prop_assert!(a.action.available(standby));
            match transitions::check_stochastic(&m) {
                Ok(()) => prop_assert!(r.fallback.is_none() && a.expected_value.is_some_and(f64::is_finite)),
                Err(_) => {
                    prop_assert!(r.fallback.is_some());
                    prop_assert_eq!(a.action, conservative_action(state, standby));
                }
            }
        }
    }
}
