//! Cross-object checks that CEL cannot express, as pure functions over plain facts.
//!
//! Input: one agent ([`AgentFacts`]), the names of the agents in its namespace, the strategies
//! ([`StrategyFacts`]) and the observed cluster resource pressure. Output: the strategy the agent
//! uses (if any) and every [`Problem`] found — a `strategyRef` or peer that does not exist, an
//! agent peering with itself, two strategies of equal top priority matching the agent, a bid whose
//! marginal values increase. Each problem names the objects involved and maps to a condition
//! reason; the controllers report them in status (never crash, never ignore them silently).
//!
//! For a strategy ([`check_strategy`]): every `nearAgents` entry exists, and explicit
//! coordinates ([`check_coordinates`], also reported on every agent using the strategy) have
//! the dimension the operator embeds nodes in and lie strictly inside the ball (‖x‖ < 1/√κ).
//!
//! Strategy selection: a `strategyRef` wins (and is never silently replaced by a trigger match
//! when it dangles). Otherwise a strategy of the agent's namespace matches when every trigger
//! dimension matches — workload type listed (or list empty), current pressure listed (or list
//! empty; an unknown pressure matches only an empty list), one of the agent's raised anomaly
//! flags listed (or list empty). The highest priority wins; a tie at the top is a problem.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::agent::GeometricAgent;
use super::conditions::{self, ConditionStatus, DesiredCondition, reason};
use super::strategy::{OrchestrationStrategy, ResourcePressure, Triggers, WorkloadType};

/// What the checks need to know about an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentFacts {
    pub namespace: String,
    pub name: String,
    pub workload_type: WorkloadType,
    /// `spec.strategyRef.name`.
    pub strategy_ref: Option<String>,
    /// `spec.peers[].agent`.
    pub peers: Vec<String>,
    /// `spec.bid.marginalValues`.
    pub marginal_values: Vec<f64>,
    /// Anomaly flags currently raised on the agent (by anomaly detection).
    pub anomaly_flags: BTreeSet<String>,
}

impl AgentFacts {
    /// Facts of an agent object, with the anomaly flags currently raised on it.
    pub fn from_agent(agent: &GeometricAgent, anomaly_flags: BTreeSet<String>) -> Self {
        Self {
            namespace: agent.namespace().unwrap_or_default(),
            name: agent.name_any(),
            workload_type: agent.spec.workload_type,
            strategy_ref: agent.spec.strategy_ref.as_ref().map(|r| r.name.clone()),
            peers: agent.spec.peers.iter().map(|p| p.agent.clone()).collect(),
            marginal_values: agent
                .spec
                .bid
                .as_ref()
                .map(|b| b.marginal_values.clone())
                .unwrap_or_default(),
            anomaly_flags,
        }
    }
}

/// What the checks need to know about a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyFacts {
    pub namespace: String,
    pub name: String,
    pub priority: i32,
    pub triggers: Triggers,
    /// `spec.placement.geometricAffinity.nearAgents`.
    pub near_agents: Vec<String>,
    /// `spec.placement.geometricAffinity.coordinates`.
    pub coordinates: Vec<f64>,
}

impl StrategyFacts {
    pub fn from_strategy(strategy: &OrchestrationStrategy) -> Self {
        let affinity = strategy.spec.placement.geometric_affinity.as_ref();
        Self {
            namespace: strategy.namespace().unwrap_or_default(),
            name: strategy.name_any(),
            priority: strategy.spec.priority,
            triggers: strategy.spec.triggers.clone(),
            near_agents: affinity.map(|a| a.near_agents.clone()).unwrap_or_default(),
            coordinates: affinity.map(|a| a.coordinates.clone()).unwrap_or_default(),
        }
    }

    /// Whether this strategy's triggers match the agent under the given pressure (module doc).
    pub fn matches(&self, agent: &AgentFacts, pressure: Option<ResourcePressure>) -> bool {
        let t = &self.triggers;
        self.namespace == agent.namespace
            && (t.workload_types.is_empty() || t.workload_types.contains(&agent.workload_type))
            && (t.resource_pressure.is_empty() || pressure.is_some_and(|p| t.resource_pressure.contains(&p)))
            && (t.anomaly_flags.is_empty() || t.anomaly_flags.iter().any(|f| agent.anomaly_flags.contains(f)))
    }
}

/// A problem found by the checks; the message names the objects involved.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error(
        "spec.strategyRef: OrchestrationStrategy {namespace}/{strategy} not found (referenced by GeometricAgent {namespace}/{agent})"
    )]
    StrategyNotFound {
        namespace: String,
        agent: String,
        strategy: String,
    },
    #[error("spec.peers: GeometricAgent {namespace}/{peer} not found (peer of GeometricAgent {namespace}/{agent})")]
    PeerNotFound {
        namespace: String,
        agent: String,
        peer: String,
    },
    #[error("spec.peers: GeometricAgent {namespace}/{agent} lists itself as a peer")]
    SelfPeer { namespace: String, agent: String },
    #[error(
        "OrchestrationStrategies {} in {namespace} all match GeometricAgent {namespace}/{agent} at priority {priority}; set spec.strategyRef or change a priority",
        strategies.join(", ")
    )]
    AmbiguousStrategy {
        namespace: String,
        agent: String,
        priority: i32,
        strategies: Vec<String>,
    },
    #[error(
        "spec.bid.marginalValues of GeometricAgent {namespace}/{agent} increase at index {index} ({previous} then {value}); marginal values must not increase"
    )]
    BidNotDiminishing {
        namespace: String,
        agent: String,
        index: usize,
        previous: f64,
        value: f64,
    },
    #[error(
        "spec.placement.geometricAffinity.nearAgents: GeometricAgent {namespace}/{agent} not found (named by OrchestrationStrategy {namespace}/{strategy})"
    )]
    NearAgentNotFound {
        namespace: String,
        strategy: String,
        agent: String,
    },
    #[error(
        "spec.placement.geometricAffinity.coordinates of OrchestrationStrategy {namespace}/{strategy} has {got} entries, but the operator embeds nodes in {want} dimensions: the coordinates are ignored (the agent's target is chosen as if they were absent) until they have {want} entries"
    )]
    CoordinatesWrongDimension {
        namespace: String,
        strategy: String,
        got: usize,
        want: usize,
    },
    #[error(
        "spec.placement.geometricAffinity.coordinates of OrchestrationStrategy {namespace}/{strategy} has norm {norm} but must be < 1/sqrt(curvature) = {radius}"
    )]
    CoordinatesOutsideBall {
        namespace: String,
        strategy: String,
        norm: f64,
        radius: f64,
    },
    #[error(
        "spec.tenant: GeometricAgent {namespace}/{agent} names tenant {declared:?}, but namespace {namespace} belongs to tenant {tenant:?} (from {source_}); the agent is not acted on until spec.tenant is {tenant:?} or removed"
    )]
    TenantMismatch {
        namespace: String,
        agent: String,
        declared: String,
        tenant: String,
        source_: String,
    },
}

/// The problem with an agent's `spec.tenant` when it names a tenant other than its namespace's
/// (`namespace_tenant`, resolved by the operator from the namespace; `source` says how).
pub fn check_tenant(
    namespace: &str,
    agent: &str,
    declared: Option<&str>,
    namespace_tenant: &str,
    source: &str,
) -> Option<Problem> {
    let declared = declared?;
    (declared != namespace_tenant).then(|| Problem::TenantMismatch {
        namespace: namespace.to_string(),
        agent: agent.to_string(),
        declared: declared.to_string(),
        tenant: namespace_tenant.to_string(),
        source_: source.to_string(),
    })
}

impl Problem {
    /// The condition reason reporting this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::StrategyNotFound { .. } => reason::STRATEGY_NOT_FOUND,
            Problem::PeerNotFound { .. } => reason::PEER_NOT_FOUND,
            Problem::SelfPeer { .. } => reason::SELF_PEER,
            Problem::AmbiguousStrategy { .. } => reason::AMBIGUOUS_STRATEGY,
            Problem::BidNotDiminishing { .. } => reason::BID_NOT_DIMINISHING,
            Problem::NearAgentNotFound { .. } => reason::NEAR_AGENT_NOT_FOUND,
            Problem::CoordinatesWrongDimension { .. } => reason::COORDINATES_WRONG_DIMENSION,
            Problem::CoordinatesOutsideBall { .. } => reason::COORDINATES_OUTSIDE_BALL,
            Problem::TenantMismatch { .. } => reason::TENANT_MISMATCH,
        }
    }
}

/// The outcome of checking one agent.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AgentCheck {
    /// Name of the strategy the agent uses, when one is resolved unambiguously.
    pub strategy: Option<String>,
    /// Every problem found, in a stable order (strategy, peers, bid).
    pub problems: Vec<Problem>,
}

/// Which strategy an agent uses: `Ok(Some(name))`, `Ok(None)` when nothing matches and it has no
/// `strategyRef`, or the problem (dangling `strategyRef`, or a tie at the top priority naming
/// every tied strategy, sorted).
pub fn select_strategy(
    agent: &AgentFacts,
    strategies: &[StrategyFacts],
    pressure: Option<ResourcePressure>,
) -> Result<Option<String>, Problem> {
    if let Some(wanted) = &agent.strategy_ref {
        let exists = strategies
            .iter()
            .any(|s| s.namespace == agent.namespace && &s.name == wanted);
        return if exists {
            Ok(Some(wanted.clone()))
        } else {
            Err(Problem::StrategyNotFound {
                namespace: agent.namespace.clone(),
                agent: agent.name.clone(),
                strategy: wanted.clone(),
            })
        };
    }
    let matching: Vec<&StrategyFacts> = strategies.iter().filter(|s| s.matches(agent, pressure)).collect();
    let Some(top) = matching.iter().map(|s| s.priority).max() else {
        return Ok(None);
    };
    let tied: BTreeSet<&str> = matching
        .iter()
        .filter(|s| s.priority == top)
        .map(|s| s.name.as_str())
        .collect();
    match tied.len() {
        1 => Ok(tied.first().map(|n| n.to_string())),
        _ => Err(Problem::AmbiguousStrategy {
            namespace: agent.namespace.clone(),
            agent: agent.name.clone(),
            priority: top,
            strategies: tied.into_iter().map(str::to_string).collect(),
        }),
    }
}

/// Checks one agent against the names of the agents in its namespace and the strategies.
pub fn check_agent(
    agent: &AgentFacts,
    agents_in_namespace: &BTreeSet<String>,
    strategies: &[StrategyFacts],
    pressure: Option<ResourcePressure>,
) -> AgentCheck {
    let mut check = AgentCheck::default();
    match select_strategy(agent, strategies, pressure) {
        Ok(name) => check.strategy = name,
        Err(problem) => check.problems.push(problem),
    }
    let mut seen = BTreeSet::new();
    for peer in &agent.peers {
        if !seen.insert(peer.as_str()) {
            continue;
        }
        if peer == &agent.name {
            check.problems.push(Problem::SelfPeer {
                namespace: agent.namespace.clone(),
                agent: agent.name.clone(),
            });
        } else if !agents_in_namespace.contains(peer) {
            check.problems.push(Problem::PeerNotFound {
                namespace: agent.namespace.clone(),
                agent: agent.name.clone(),
                peer: peer.clone(),
            });
        }
    }
    if let Some((index, pair)) = agent.marginal_values.windows(2).enumerate().find(|(_, w)| w[1] > w[0]) {
        check.problems.push(Problem::BidNotDiminishing {
            namespace: agent.namespace.clone(),
            agent: agent.name.clone(),
            index: index + 1,
            previous: pair[0],
            value: pair[1],
        });
    }
    check
}

/// The ball explicit coordinates must fit in: the dimension the operator embeds nodes in (the
/// length of its node positions) and the active MomConfig's curvature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ball {
    pub dimension: usize,
    /// κ > 0 (CEL guarantees it on the MomConfig).
    pub curvature: f64,
}

/// Checks one strategy: `nearAgents` exist in its namespace; explicit coordinates (when given
/// and a ball is known) have the ball's dimension and satisfy ‖x‖ < 1/√κ.
pub fn check_strategy(
    strategy: &StrategyFacts,
    agents_in_namespace: &BTreeSet<String>,
    ball: Option<Ball>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for agent in &strategy.near_agents {
        if seen.insert(agent.as_str()) && !agents_in_namespace.contains(agent) {
            problems.push(Problem::NearAgentNotFound {
                namespace: strategy.namespace.clone(),
                strategy: strategy.name.clone(),
                agent: agent.clone(),
            });
        }
    }
    problems.extend(check_coordinates(strategy, ball));
    problems
}

/// Checks a strategy's explicit coordinates (when given and a ball is known): they have the
/// ball's dimension and satisfy ‖x‖ < 1/√κ.
pub fn check_coordinates(strategy: &StrategyFacts, ball: Option<Ball>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let (Some(ball), false) = (ball, strategy.coordinates.is_empty()) {
        if strategy.coordinates.len() != ball.dimension {
            problems.push(Problem::CoordinatesWrongDimension {
                namespace: strategy.namespace.clone(),
                strategy: strategy.name.clone(),
                got: strategy.coordinates.len(),
                want: ball.dimension,
            });
        }
        let norm = strategy.coordinates.iter().map(|x| x * x).sum::<f64>().sqrt();
        let radius = 1.0 / ball.curvature.sqrt();
        // Inside means norm < radius with both finite; NaN (or a non-positive curvature, which gives
        // an infinite or NaN radius) counts as outside.
        let inside = norm.is_finite() && radius.is_finite() && norm < radius;
        if !inside {
            problems.push(Problem::CoordinatesOutsideBall {
                namespace: strategy.namespace.clone(),
                strategy: strategy.name.clone(),
                norm,
                radius,
            });
        }
    }
    problems
}

/// The `Ready` condition a check implies (agent or strategy): `True` when there are no problems, otherwise
/// `False` with the first problem's reason and every problem's message joined by "; ".
pub fn readiness(problems: &[Problem]) -> DesiredCondition {
    match problems.first() {
        None => DesiredCondition::new(
            conditions::READY,
            ConditionStatus::True,
            reason::RECONCILED,
            "all references resolved",
        ),
        Some(first) => {
            let message = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            DesiredCondition::new(conditions::READY, ConditionStatus::False, first.reason(), message)
        }
    }
}

/// For every strategy (keyed by namespace and name), the sorted names of the agents that use it.
/// Agents whose selection fails are counted nowhere.
pub fn matched_agents(
    agents: &[AgentFacts],
    strategies: &[StrategyFacts],
    pressure_of: impl Fn(&AgentFacts) -> Option<ResourcePressure>,
) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = strategies
        .iter()
        .map(|s| ((s.namespace.clone(), s.name.clone()), Vec::new()))
        .collect();
    for agent in agents {
        if let Ok(Some(name)) = select_strategy(agent, strategies, pressure_of(agent))
            && let Some(list) = out.get_mut(&(agent.namespace.clone(), name))
        {
            list.push(agent.name.clone());
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_naming_another_tenant_than_its_namespaces_is_a_problem_naming_the_field() {
        assert_eq!(check_tenant("shop", "web", None, "acme", "its label"), None);
        assert_eq!(check_tenant("shop", "web", Some("acme"), "acme", "its label"), None);
        let problem = check_tenant("shop", "web", Some("globex"), "acme", "its label").unwrap();
        assert_eq!(problem.reason(), reason::TENANT_MISMATCH);
        let message = problem.to_string();
        for part in ["spec.tenant", "shop/web", "\"globex\"", "\"acme\"", "its label"] {
            assert!(message.contains(part), "{part} missing in {message}");
        }
    }

    fn agent(name: &str, workload_type: WorkloadType) -> AgentFacts {
        AgentFacts {
            namespace: "shop".into(),
            name: name.into(),
            workload_type,
            strategy_ref: None,
            peers: Vec::new(),
            marginal_values: Vec::new(),
            anomaly_flags: BTreeSet::new(),
        }
    }

    fn strategy(name: &str, priority: i32, workload_types: &[WorkloadType]) -> StrategyFacts {
        StrategyFacts {
            namespace: "shop".into(),
            name: name.into(),
            priority,
            triggers: Triggers {
                workload_types: workload_types.to_vec(),
                ..Triggers::default()
            },
            near_agents: Vec::new(),
            coordinates: Vec::new(),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_dangling_strategy_ref_is_reported_naming_the_missing_strategy() {
        let mut a = agent("api", WorkloadType::Interactive);
        a.strategy_ref = Some("fast-lane".into());
        let check = check_agent(&a, &names(&["api"]), &[strategy("other", 1, &[])], None);
        assert_eq!(check.strategy, None);
        assert_eq!(check.problems.len(), 1);
        assert_eq!(check.problems[0].reason(), "StrategyNotFound");
        let message = check.problems[0].to_string();
        assert!(message.contains("shop/fast-lane"), "{message}");
        assert!(message.contains("GeometricAgent shop/api"), "{message}");
    }

    #[test]
    fn a_strategy_ref_is_used_even_when_another_strategy_matches_with_higher_priority() {
        let mut a = agent("api", WorkloadType::Interactive);
        a.strategy_ref = Some("chosen".into());
        let strategies = [
            strategy("chosen", 0, &[WorkloadType::Batch]),
            strategy("greedy", 100, &[]),
        ];
        assert_eq!(select_strategy(&a, &strategies, None), Ok(Some("chosen".into())));
    }

    #[test]
    fn a_strategy_ref_to_another_namespace_does_not_resolve() {
        let mut a = agent("api", WorkloadType::Interactive);
        a.strategy_ref = Some("s".into());
        let mut s = strategy("s", 1, &[]);
        s.namespace = "elsewhere".into();
        assert!(matches!(
            select_strategy(&a, &[s], None),
            Err(Problem::StrategyNotFound { .. })
        ));
    }

    #[test]
    fn equal_top_priority_is_reported_naming_both_strategies() {
        let a = agent("api", WorkloadType::Interactive);
        let strategies = [
            strategy("zeta", 10, &[WorkloadType::Interactive]),
            strategy("alpha", 10, &[]),
            strategy("low", 1, &[WorkloadType::Interactive]),
        ];
        let err = select_strategy(&a, &strategies, None).unwrap_err();
        assert_eq!(
            err,
            Problem::AmbiguousStrategy {
                namespace: "shop".into(),
                agent: "api".into(),
                priority: 10,
                strategies: vec!["alpha".into(), "zeta".into()],
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("alpha") && message.contains("zeta") && message.contains("priority 10"),
            "{message}"
        );
        assert_eq!(err.reason(), "AmbiguousStrategy");
    }

    #[test]
    fn a_tie_below_the_top_priority_is_not_a_problem() {
        let a = agent("api", WorkloadType::Interactive);
        let strategies = [strategy("top", 5, &[]), strategy("b", 1, &[]), strategy("c", 1, &[])];
        assert_eq!(select_strategy(&a, &strategies, None), Ok(Some("top".into())));
    }

    #[test]
    fn highest_priority_matching_strategy_wins_and_non_matching_ones_are_skipped() {
        let a = agent("job", WorkloadType::Batch);
        let strategies = [
            strategy("web", 50, &[WorkloadType::Interactive]),
            strategy("batchy", 5, &[WorkloadType::Batch]),
        ];
        assert_eq!(select_strategy(&a, &strategies, None), Ok(Some("batchy".into())));
    }

    #[test]
    fn no_matching_strategy_and_no_ref_selects_nothing_without_a_problem() {
        let a = agent("job", WorkloadType::MlTraining);
        let check = check_agent(
            &a,
            &names(&["job"]),
            &[strategy("web", 1, &[WorkloadType::Interactive])],
            None,
        );
        assert_eq!(check, AgentCheck::default());
    }

    #[test]
    fn pressure_triggers_match_only_the_observed_pressure() {
        let a = agent("api", WorkloadType::Interactive);
        let mut surge = strategy("surge", 10, &[]);
        surge.triggers.resource_pressure = vec![ResourcePressure::High, ResourcePressure::Critical];
        let strategies = [surge, strategy("calm", 1, &[])];
        assert_eq!(
            select_strategy(&a, &strategies, Some(ResourcePressure::Critical)),
            Ok(Some("surge".into()))
        );
        assert_eq!(
            select_strategy(&a, &strategies, Some(ResourcePressure::Low)),
            Ok(Some("calm".into()))
        );
        assert_eq!(select_strategy(&a, &strategies, None), Ok(Some("calm".into())));
    }

    #[test]
    fn anomaly_triggers_match_only_agents_with_a_listed_flag_raised() {
        let mut a = agent("api", WorkloadType::Interactive);
        let mut quarantine = strategy("quarantine", 99, &[]);
        quarantine.triggers.anomaly_flags = vec!["latency_spike".into()];
        let strategies = [quarantine, strategy("normal", 1, &[])];
        assert_eq!(select_strategy(&a, &strategies, None), Ok(Some("normal".into())));
        a.anomaly_flags.insert("latency_spike".into());
        assert_eq!(select_strategy(&a, &strategies, None), Ok(Some("quarantine".into())));
    }

    #[test]
    fn a_missing_peer_is_reported_naming_it_and_present_peers_are_not() {
        let mut a = agent("frontend", WorkloadType::Interactive);
        a.peers = vec!["api".into(), "ghost".into(), "ghost".into()];
        let check = check_agent(&a, &names(&["frontend", "api"]), &[], None);
        assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
        assert_eq!(check.problems[0].reason(), "PeerNotFound");
        assert!(
            check.problems[0]
                .to_string()
                .contains("GeometricAgent shop/ghost not found")
        );
    }

    #[test]
    fn an_agent_peering_with_itself_is_reported() {
        let mut a = agent("api", WorkloadType::Interactive);
        a.peers = vec!["api".into()];
        let check = check_agent(&a, &names(&["api"]), &[], None);
        assert_eq!(
            check.problems,
            vec![Problem::SelfPeer {
                namespace: "shop".into(),
                agent: "api".into()
            }]
        );
    }

    #[test]
    fn an_increasing_bid_is_reported_with_its_index() {
        let mut a = agent("api", WorkloadType::Interactive);
        a.marginal_values = vec![5.0, 4.0, 4.0, 6.0];
        let check = check_agent(&a, &names(&["api"]), &[], None);
        assert!(
            matches!(check.problems.as_slice(), [Problem::BidNotDiminishing { index: 3, .. }]),
            "{:?}",
            check.problems
        );
        a.marginal_values = vec![5.0, 4.0, 4.0, 1.0];
        assert!(check_agent(&a, &names(&["api"]), &[], None).problems.is_empty());
    }

    #[test]
    fn every_problem_is_collected_not_just_the_first() {
        let mut a = agent("api", WorkloadType::Interactive);
        a.strategy_ref = Some("missing".into());
        a.peers = vec!["db".into(), "cache".into()];
        let check = check_agent(&a, &names(&["api"]), &[], None);
        let reasons: Vec<&str> = check.problems.iter().map(Problem::reason).collect();
        assert_eq!(reasons, vec!["StrategyNotFound", "PeerNotFound", "PeerNotFound"]);
        let ready = readiness(&check.problems);
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "StrategyNotFound");
        assert!(ready.message.contains("missing") && ready.message.contains("db") && ready.message.contains("cache"));
    }

    #[test]
    fn no_problems_means_ready() {
        let ready = readiness(&[]);
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.type_, conditions::READY);
    }

    #[test]
    fn matched_agents_lists_each_agent_under_its_selected_strategy_only() {
        let web = agent("web", WorkloadType::Interactive);
        let job = agent("job", WorkloadType::Batch);
        let mut pinned = agent("pinned", WorkloadType::Batch);
        pinned.strategy_ref = Some("interactive".into());
        let strategies = [
            strategy("interactive", 1, &[WorkloadType::Interactive]),
            strategy("batch", 1, &[WorkloadType::Batch]),
        ];
        let matched = matched_agents(&[web, job, pinned], &strategies, |_| None);
        assert_eq!(
            matched[&("shop".to_string(), "interactive".to_string())],
            vec!["pinned", "web"]
        );
        assert_eq!(matched[&("shop".to_string(), "batch".to_string())], vec!["job"]);
    }

    #[test]
    fn matched_agents_follow_the_pressure_of_each_agents_own_pool() {
        let hot = agent("hot", WorkloadType::Batch);
        let cool = agent("cool", WorkloadType::Batch);
        let mut surge = strategy("surge", 9, &[]);
        surge.triggers.resource_pressure = vec![ResourcePressure::High];
        let strategies = [surge, strategy("calm", 1, &[])];
        // Only `hot`'s pool is under high pressure.
        let matched = matched_agents(&[hot, cool], &strategies, |a| {
            (a.name == "hot").then_some(ResourcePressure::High)
        });
        assert_eq!(matched[&("shop".to_string(), "surge".to_string())], vec!["hot"]);
        assert_eq!(matched[&("shop".to_string(), "calm".to_string())], vec!["cool"]);
    }

    #[test]
    fn a_missing_near_agent_is_reported_naming_it() {
        let mut s = strategy("web-tier", 1, &[]);
        s.near_agents = vec!["api".into(), "gone".into()];
        let problems = check_strategy(&s, &names(&["api"]), None);
        assert_eq!(
            problems,
            vec![Problem::NearAgentNotFound {
                namespace: "shop".into(),
                strategy: "web-tier".into(),
                agent: "gone".into()
            }]
        );
        assert!(problems[0].to_string().contains("shop/gone"));
    }

    #[test]
    fn coordinates_must_have_the_ball_dimension_and_lie_inside_it() {
        let ball = Ball {
            dimension: 2,
            curvature: 4.0,
        }; // radius 1/2
        let mut s = strategy("s", 1, &[]);
        s.coordinates = vec![0.3, 0.3];
        assert!(
            check_strategy(&s, &names(&[]), Some(ball)).is_empty(),
            "norm 0.42 < 0.5"
        );
        s.coordinates = vec![0.3, 0.4];
        let problems = check_strategy(&s, &names(&[]), Some(ball));
        assert!(
            matches!(problems.as_slice(), [Problem::CoordinatesOutsideBall { .. }]),
            "norm 0.5 is on the boundary: {problems:?}"
        );
        s.coordinates = vec![0.1, 0.1, 0.1];
        let problems = check_strategy(&s, &names(&[]), Some(ball));
        assert!(
            matches!(
                problems.as_slice(),
                [Problem::CoordinatesWrongDimension { got: 3, want: 2, .. }]
            ),
            "{problems:?}"
        );
        assert_eq!(problems[0].reason(), "CoordinatesWrongDimension");
        let message = problems[0].to_string();
        for part in [
            "spec.placement.geometricAffinity.coordinates",
            "shop/s",
            "has 3 entries",
            "in 2 dimensions",
        ] {
            assert!(message.contains(part), "{part} missing in {message}");
        }
        assert_eq!(
            check_coordinates(&s, Some(ball)),
            problems,
            "the agent gets the same problem"
        );
    }

    #[test]
    fn coordinates_are_not_checked_without_a_ball_and_absent_coordinates_never_fail() {
        let mut s = strategy("s", 1, &[]);
        s.coordinates = vec![5.0, 5.0];
        assert!(check_strategy(&s, &names(&[]), None).is_empty());
        s.coordinates.clear();
        assert!(
            check_strategy(
                &s,
                &names(&[]),
                Some(Ball {
                    dimension: 8,
                    curvature: 1.0
                })
            )
            .is_empty()
        );
    }

    #[test]
    fn a_non_positive_curvature_reports_coordinates_outside_instead_of_panicking() {
        let mut s = strategy("s", 1, &[]);
        s.coordinates = vec![0.0, 0.0];
        let problems = check_strategy(
            &s,
            &names(&[]),
            Some(Ball {
                dimension: 2,
                curvature: 0.0,
            }),
        );
        assert!(
            matches!(problems.as_slice(), [Problem::CoordinatesOutsideBall { .. }]),
            "{problems:?}"
        );
    }
}
