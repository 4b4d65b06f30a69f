//! One failover planning pass over a [`Snapshot`]: classify each domain, estimate its transition
//! matrix, solve its decision process (or fall back), and choose each agent's action.
//!
//! Input: a [`Snapshot`] (domains with an observation or a state and their history; agents with
//! their domain and standby; weights, costs, solver and estimation settings). Output: a
//! [`Report`] — per domain the model used, the policy table, each agent's action with its
//! expected value, and the fallback reasons. Same snapshot → same report, so a receipt that
//! records the snapshot ([`decision_record`], kind [`PLAN_KIND`]) is re-planned by [`replay`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FailoverMdpError;
use super::health::{DomainKind, HealthState, Observation, Thresholds, classify};
use super::model::{self, Action, AgentState, CostModel, DomainPolicy, Location, Weights, conservative_action};
use super::transitions::{TransitionCounts, TransitionMatrix, check_stochastic, mean};
use super::value_iteration::Settings;

/// How transition matrices are estimated from counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Estimation {
    /// α of the symmetric Dirichlet prior on each row (1 = Laplace). Default 1.
    pub prior_pseudo_count: f64,
    /// Fewest observed transitions (history plus restored counts) for a domain's estimate to be
    /// used; below it the domain falls back. Default 10.
    pub min_transitions: u64,
}

impl Default for Estimation {
    fn default() -> Self {
        Estimation {
            prior_pseudo_count: 1.0,
            min_transitions: 10,
        }
    }
}

/// One failure domain in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainInput {
    pub name: String,
    pub kind: DomainKind,
    /// The latest observation; classified with the snapshot's thresholds. Give this or `state`.
    #[serde(default)]
    pub observation: Option<Observation>,
    /// The current state, when the caller classified it already. Give this or `observation`.
    #[serde(default)]
    pub state: Option<HealthState>,
    /// Observed state sequences (one state per tick, oldest first), counted pairwise.
    #[serde(default)]
    pub history: Vec<Vec<HealthState>>,
    /// Counts persisted by a previous leader, added to those of `history`. The report's
    /// `counts` are the sum, so a caller that persists them passes only newer sequences as
    /// `history` next time (or the same transitions are counted twice).
    #[serde(default)]
    pub counts: Option<TransitionCounts>,
    /// A transition matrix given as is (rows healthy, degraded, suspect, failed); replaces the
    /// estimate, so `history` and `counts` must then be absent.
    #[serde(default)]
    pub transitions: Option<TransitionMatrix>,
}

/// One agent in a snapshot: its active replicas' domain and whether a standby runs elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub name: String,
    pub domain: String,
    #[serde(default)]
    pub standby: bool,
}

/// Everything one planning pass reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub domains: Vec<DomainInput>,
    #[serde(default)]
    pub agents: Vec<AgentInput>,
    #[serde(default)]
    pub weights: Weights,
    #[serde(default)]
    pub costs: CostModel,
    #[serde(default)]
    pub solver: Settings,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub estimation: Estimation,
}

/// The model of one domain as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainReport {
    pub domain: String,
    pub kind: DomainKind,
    pub state: HealthState,
    /// Counts of history plus restored counts: what the caller persists for the next leader.
    pub counts: TransitionCounts,
    pub observed_transitions: u64,
    /// The matrix the decision process used (`None` when it fell back before having one).
    pub transitions: Option<TransitionMatrix>,
    /// Value-iteration sweeps (`None` on fallback).
    pub iterations: Option<u32>,
    pub residual: Option<f64>,
    /// Why this domain uses the conservative rule, or `None`.
    pub fallback: Option<String>,
}

/// One row of a domain's policy table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub domain: String,
    pub location: Location,
    pub health: HealthState,
    pub standby: bool,
    pub action: Action,
    /// V(s), the expected discounted reward (minus cost); `None` under the conservative rule.
    pub value: Option<f64>,
}

/// One agent's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDecision {
    pub agent: String,
    pub domain: String,
    pub state: HealthState,
    pub standby: bool,
    pub action: Action,
    /// V(s) of the agent's state under the optimal policy; `None` under the conservative rule.
    pub expected_value: Option<f64>,
    pub fallback: Option<String>,
}

/// The result of a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub domains: Vec<DomainReport>,
    /// The fleet matrix a move lands in (mean of the usable domains' matrices).
    pub fleet_transitions: Option<TransitionMatrix>,
    pub policy: Vec<PolicyRow>,
    pub agents: Vec<AgentDecision>,
    /// Every domain's fallback reason joined with "; ", or `None` when none fell back: the text
    /// of the condition the operator sets.
    pub fallback: Option<String>,
}

/// Checks the whole snapshot; the first problem found is the error.
fn validate(snapshot: &Snapshot) -> Result<BTreeMap<&str, &DomainInput>, FailoverMdpError> {
    snapshot.solver.validate()?;
    snapshot.thresholds.validate()?;
    model::validate(&snapshot.weights, &snapshot.costs)?;
    let alpha = snapshot.estimation.prior_pseudo_count;
    if !(alpha.is_finite() && alpha > 0.0 && alpha <= 1e12) {
        return Err(FailoverMdpError::BadSetting {
            field: "estimation.prior_pseudo_count",
            value: alpha,
        });
    }
    let mut domains = BTreeMap::new();
    for d in &snapshot.domains {
        if d.name.is_empty() {
            return Err(FailoverMdpError::EmptyName("domains[].name"));
        }
        if domains.insert(d.name.as_str(), d).is_some() {
            return Err(FailoverMdpError::Duplicate {
                what: "domain",
                name: d.name.clone(),
            });
        }
        match (&d.observation, &d.state) {
            (Some(o), None) => o.validate(&d.name)?,
            (None, Some(_)) => {}
            _ => return Err(FailoverMdpError::ObservationOrState(d.name.clone())),
        }
        if d.transitions.is_some() && (!d.history.is_empty() || d.counts.is_some()) {
            return Err(FailoverMdpError::ConflictingModel(d.name.clone()));
        }
    }
    let mut agents = BTreeMap::new();
    for a in &snapshot.agents {
        if a.name.is_empty() {
            return Err(FailoverMdpError::EmptyName("agents[].name"));
        }
        if agents.insert(a.name.as_str(), a).is_some() {
            return Err(FailoverMdpError::Duplicate {
                what: "agent",
                name: a.name.clone(),
            });
        }
        if !domains.contains_key(a.domain.as_str()) {
            return Err(FailoverMdpError::UnknownDomain {
                agent: a.name.clone(),
                domain: a.domain.clone(),
            });
        }
    }
    Ok(domains)
}

/// A domain's matrix, or why it has none worth trusting.
fn domain_matrix(
    d: &DomainInput,
    counts: &TransitionCounts,
    estimation: &Estimation,
) -> Result<TransitionMatrix, String> {
    if let Some(given) = &d.transitions {
        check_stochastic(given).map_err(|why| format!("the given transition matrix is unusable: {why}"))?;
        return Ok(*given);
    }
    let n = counts.total();
    if n == 0 {
        return Err("no observed transitions (empty history), so no transition model".into());
    }
    if n < estimation.min_transitions {
        return Err(format!(
            "only {n} observed transitions, fewer than the {} the model needs",
            estimation.min_transitions
        ));
    }
    let p = counts.posterior_mean(estimation.prior_pseudo_count);
    check_stochastic(&p).map_err(|why| format!("the estimated transition matrix is unusable: {why}"))?;
    Ok(p)
}

/// One planning pass (see the module docs). Errors only for invalid input; a missing or
/// degenerate model is a fallback, reported per domain and in [`Report::fallback`].
pub fn plan(snapshot: &Snapshot) -> Result<Report, FailoverMdpError> {
    let domains = validate(snapshot)?;
    struct Work<'a> {
        input: &'a DomainInput,
        state: HealthState,
        counts: TransitionCounts,
        matrix: Result<TransitionMatrix, String>,
    }
    let mut work: BTreeMap<&str, Work<'_>> = BTreeMap::new();
    for (&name, &d) in &domains {
        let state = match (&d.observation, d.state) {
            (Some(o), _) => classify(o, &snapshot.thresholds),
            (None, Some(s)) => s,
            (None, None) => return Err(FailoverMdpError::ObservationOrState(name.to_string())),
        };
        let mut counts = d.counts.clone().unwrap_or_default();
        for sequence in &d.history {
            counts.observe_sequence(sequence);
        }
        let matrix = domain_matrix(d, &counts, &snapshot.estimation);
        work.insert(
            name,
            Work {
                input: d,
                state,
                counts,
                matrix,
            },
        );
    }
    let usable: Vec<TransitionMatrix> = work.values().filter_map(|w| w.matrix.as_ref().ok().copied()).collect();
    let fleet = mean(&usable);

    let mut reports = Vec::new();
    let mut policy_rows = Vec::new();
    let mut policies: BTreeMap<&str, Result<DomainPolicy, String>> = BTreeMap::new();
    for (&name, w) in &work {
        let solved: Result<DomainPolicy, String> = match (&w.matrix, &fleet) {
            (Err(why), _) => Err(why.clone()),
            (Ok(_), None) => Err("no domain has a usable transition model, so a move cannot be valued".into()),
            (Ok(home), Some(fleet)) => model::solve(home, fleet, &snapshot.weights, &snapshot.costs, &snapshot.solver),
        };
        for s in AgentState::all() {
            let (action, value) = match &solved {
                Ok(p) => {
                    let (a, v) = p.decide(s);
                    (a, Some(v))
                }
                Err(_) => (conservative_action(s.health, s.standby), None),
            };
            policy_rows.push(PolicyRow {
                domain: name.to_string(),
                location: s.location,
                health: s.health,
                standby: s.standby,
                action,
                value,
            });
        }
        reports.push(DomainReport {
            domain: name.to_string(),
            kind: w.input.kind,
            state: w.state,
            observed_transitions: w.counts.total(),
            counts: w.counts.clone(),
            transitions: w.matrix.as_ref().ok().copied(),
            iterations: solved.as_ref().ok().map(|p| p.solution.iterations),
            residual: solved.as_ref().ok().map(|p| p.solution.residual),
            fallback: solved
                .as_ref()
                .err()
                .map(|why| format!("domain {name}: {why}; conservative rule applied")),
        });
        policies.insert(name, solved);
    }

    let fallbacks: BTreeMap<&str, Option<String>> = reports
        .iter()
        .map(|r| (r.domain.as_str(), r.fallback.clone()))
        .collect();
    let mut agents: Vec<&AgentInput> = snapshot.agents.iter().collect();
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    let mut decisions = Vec::new();
    for a in agents {
        let (Some(w), Some(solved), Some(fallback)) = (
            work.get(a.domain.as_str()),
            policies.get(a.domain.as_str()),
            fallbacks.get(a.domain.as_str()),
        ) else {
            return Err(FailoverMdpError::UnknownDomain {
                agent: a.name.clone(),
                domain: a.domain.clone(),
            });
        };
        let state = AgentState {
            location: Location::Home,
            health: w.state,
            standby: a.standby,
        };
        let (action, expected_value) = match solved {
            Ok(p) => {
                let (action, value) = p.decide(state);
                (action, Some(value))
            }
            Err(_) => (conservative_action(w.state, a.standby), None),
        };
        decisions.push(AgentDecision {
            agent: a.name.clone(),
            domain: a.domain.clone(),
            state: w.state,
            standby: a.standby,
            action,
            expected_value,
            fallback: fallback.clone(),
        });
    }
    let reasons: Vec<&str> = reports.iter().filter_map(|r| r.fallback.as_deref()).collect();
    Ok(Report {
        fallback: (!reasons.is_empty()).then(|| reasons.join("; ")),
        domains: reports,
        fleet_transitions: fleet,
        policy: policy_rows,
        agents: decisions,
    })
}

/// Decision kind of a failover plan in receipts.
pub const PLAN_KIND: &str = "failover.plan";

/// The receipt decision of a plan: `{kind: failover.plan, output: the report, inputs: the
/// snapshot}` (the report holds the policy table and each agent's action and expected value).
pub fn decision_record(snapshot: &Snapshot, report: &Report) -> serde_json::Value {
    serde_json::json!({ "kind": PLAN_KIND, "output": report, "inputs": snapshot })
}

/// Re-plans a recorded decision from its inputs (the snapshot), for `mom verify --replay`.
pub fn replay(inputs: &serde_json::Value) -> Result<serde_json::Value, crate::receipts::replay::ReplayError> {
    use crate::receipts::replay::ReplayError;
    let bad = |field: &str, message: String| ReplayError::BadInputs {
        field: field.into(),
        message,
    };
    let snapshot: Snapshot = serde_json::from_value(inputs.clone()).map_err(|e| bad("snapshot", e.to_string()))?;
    let report = plan(&snapshot).map_err(|e| bad("snapshot", e.to_string()))?;
    serde_json::to_value(&report).map_err(|e| bad("output", e.to_string()))
}
