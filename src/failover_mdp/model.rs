//! The failover decision process of one agent whose active replicas live in one failure domain:
//! states, actions, costs and transitions, built into an [`Mdp`] and solved; plus the
//! conservative rule used when the model cannot be trusted.
//!
//! # States
//! `s = (location, health, standby)`, 2 × 4 × 2 = 16 states:
//! - `location`: `home` — the active replicas are in the domain being judged; `away` — they were
//!   moved to another domain (the continuation after a move, evolving with the fleet's matrix);
//! - `health`: the [`HealthState`] of the domain the active replicas are in;
//! - `standby`: a standby replica is running in another domain.
//!
//! # Actions (fixed order, ties go to the first)
//! `stay`, `add_standby` (only without a standby), `drain_gradually`, `evacuate_now`,
//! `fail_over` (only with a standby), `release_standby` (only with a standby).
//!
//! `release_standby` exists so that a standby can be given up without moving anything. Without
//! it the only way to stop paying `w_spare` per tick for a standby was `fail_over`, and the
//! optimal policy failed over even from a healthy domain (a one-off disruption bought the
//! standby's whole discounted cost back): an artefact of the action set, not a wish of the
//! objectives.
//!
//! # Transitions
//! `P_home` is the domain's matrix, `P_fleet` the fleet's (mean of every usable domain's). A move
//! lands in a domain that is healthy when chosen, so its next health is drawn from the fleet's
//! healthy row:
//! ```text
//! stay            (l, h, b) → (l, h', b)        h' ~ P_l[h]
//! add_standby     (l, h, 0) → (l, h', 1)        h' ~ P_l[h]
//! drain_gradually (l, h, b) → (away, h', 0)     h' ~ P_fleet[healthy]
//! evacuate_now    (l, h, b) → (away, h', 0)     h' ~ P_fleet[healthy]
//! fail_over       (l, h, 1) → (away, h', 0)     h' ~ P_fleet[healthy]
//! release_standby (l, h, 1) → (l, h', 0)        h' ~ P_l[h]
//! ```
//! A move absorbs a standby: it becomes one of the replicas outside the domain (the operator
//! drops the extra replica when it drains, evacuates or fails over a domain).
//! One step is one decision tick; a gradual drain finishes within the tick with a share
//! `drain_exposure` of the replicas still exposed to the old domain during it.
//!
//! # Rewards
//! The reward is minus the cost of the tick:
//! ```text
//! c(s, a) = w_slo · risk(s, a) + w_migration · effort(a) + w_spare · b'(s, a)
//! risk(s, stay) = risk(s, add_standby) = risk(s, release_standby) = severity(h)
//! risk(s, drain_gradually) = drain_exposure · severity(h)
//! risk(s, evacuate_now)    = evacuation_disruption        (every replica cold-starts at once)
//! risk(s, fail_over)       = failover_disruption          (the standby is already warm)
//! b'(s, a) = 1 when a standby runs after the action (kept by stay, or just added), else 0
//! ```
//! The solver maximises the expected discounted reward, i.e. minimises the discounted cost.

use serde::{Deserialize, Serialize};

use super::FailoverMdpError;
use super::health::HealthState;
use super::transitions::TransitionMatrix;
use super::value_iteration::{Choice, Mdp, Settings, Solution, value_iteration};

/// What the operator may do with an agent, in tie-breaking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Change nothing.
    Stay,
    /// Start a standby replica in another domain.
    AddStandby,
    /// Move the replicas out of the domain within disruption limits.
    DrainGradually,
    /// Move every replica out now (replacements first, all at once).
    EvacuateNow,
    /// Promote the standby (in another domain) and retire the actives here.
    FailOver,
    /// Stop the standby; the actives stay where they are.
    ReleaseStandby,
}

impl Action {
    /// Every action, in tie-breaking order.
    pub const ALL: [Action; 6] = [
        Action::Stay,
        Action::AddStandby,
        Action::DrainGradually,
        Action::EvacuateNow,
        Action::FailOver,
        Action::ReleaseStandby,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stay => "stay",
            Action::AddStandby => "add_standby",
            Action::DrainGradually => "drain_gradually",
            Action::EvacuateNow => "evacuate_now",
            Action::FailOver => "fail_over",
            Action::ReleaseStandby => "release_standby",
        }
    }

    /// Whether the action takes the active replicas out of their domain.
    pub fn relocates(self) -> bool {
        matches!(self, Action::DrainGradually | Action::EvacuateNow | Action::FailOver)
    }

    /// Whether the action is available with (`true`) or without a standby.
    pub fn available(self, standby: bool) -> bool {
        match self {
            Action::AddStandby => !standby,
            Action::FailOver | Action::ReleaseStandby => standby,
            _ => true,
        }
    }
}

/// Where the agent's active replicas are, relative to the domain being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Home,
    Away,
}

/// One state of the decision process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentState {
    pub location: Location,
    pub health: HealthState,
    pub standby: bool,
}

impl AgentState {
    /// Number of states.
    pub const COUNT: usize = 2 * HealthState::COUNT * 2;

    /// `location · 8 + health · 2 + standby`.
    pub fn index(self) -> usize {
        let l = match self.location {
            Location::Home => 0,
            Location::Away => 1,
        };
        l * 2 * HealthState::COUNT + self.health.index() * 2 + usize::from(self.standby)
    }

    /// Every state, in index order.
    pub fn all() -> Vec<AgentState> {
        let mut out = Vec::with_capacity(Self::COUNT);
        for location in [Location::Home, Location::Away] {
            for health in HealthState::ALL {
                for standby in [false, true] {
                    out.push(AgentState {
                        location,
                        health,
                        standby,
                    });
                }
            }
        }
        out
    }
}

/// Weights of the three objectives in the cost of a tick (defaults: an SLO breach costs ten
/// migrations; a standby costs a fifth of a migration per tick).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// w_slo: cost of a full SLO breach during one tick. Default 10.
    pub slo_risk: f64,
    /// w_migration: cost of moving every replica once. Default 1.
    pub migration: f64,
    /// w_spare: cost of running a standby for one tick. Default 0.2.
    pub spare_capacity: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            slo_risk: 10.0,
            migration: 1.0,
            spare_capacity: 0.2,
        }
    }
}

/// Severity of each health state: the expected share of an SLO breach per tick while all active
/// replicas sit in a domain in that state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Severity {
    pub healthy: f64,
    pub degraded: f64,
    pub suspect: f64,
    pub failed: f64,
}

impl Default for Severity {
    fn default() -> Self {
        Severity {
            healthy: 0.0,
            degraded: 0.02,
            suspect: 0.1,
            failed: 1.0,
        }
    }
}

impl Severity {
    pub fn of(&self, h: HealthState) -> f64 {
        match h {
            HealthState::Healthy => self.healthy,
            HealthState::Degraded => self.degraded,
            HealthState::Suspect => self.suspect,
            HealthState::Failed => self.failed,
        }
    }
}

/// Migration effort of each action, in units of "every replica moved once".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Effort {
    pub stay: f64,
    pub add_standby: f64,
    pub drain_gradually: f64,
    pub evacuate_now: f64,
    pub fail_over: f64,
    pub release_standby: f64,
}

impl Default for Effort {
    fn default() -> Self {
        Effort {
            stay: 0.0,
            add_standby: 0.3,
            drain_gradually: 1.0,
            evacuate_now: 1.0,
            fail_over: 0.2,
            release_standby: 0.0,
        }
    }
}

impl Effort {
    pub fn of(&self, a: Action) -> f64 {
        match a {
            Action::Stay => self.stay,
            Action::AddStandby => self.add_standby,
            Action::DrainGradually => self.drain_gradually,
            Action::EvacuateNow => self.evacuate_now,
            Action::FailOver => self.fail_over,
            Action::ReleaseStandby => self.release_standby,
        }
    }
}

/// The model's constants besides the weights (defaults documented per field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostModel {
    /// Defaults: healthy 0, degraded 0.02, suspect 0.1, failed 1 (a suspect domain mostly still
    /// serves: its cost is the risk of what comes next, which the transitions carry).
    pub severity: Severity,
    /// Defaults: stay 0, add_standby 0.3, drain_gradually 1, evacuate_now 1, fail_over 0.2,
    /// release_standby 0.
    pub effort: Effort,
    /// Share of replicas still in the old domain during a gradual drain. Default 0.5.
    pub drain_exposure: f64,
    /// SLO risk of evacuating everything at once (cold starts). Default 0.2.
    pub evacuation_disruption: f64,
    /// SLO risk of promoting a warm standby. Default 0.05.
    pub failover_disruption: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            severity: Severity::default(),
            effort: Effort::default(),
            drain_exposure: 0.5,
            evacuation_disruption: 0.2,
            failover_disruption: 0.05,
        }
    }
}

/// The constants of the whole model, checked together.
pub fn validate(weights: &Weights, costs: &CostModel) -> Result<(), FailoverMdpError> {
    let s = &costs.severity;
    let e = &costs.effort;
    let fields = [
        ("weights.slo_risk", weights.slo_risk),
        ("weights.migration", weights.migration),
        ("weights.spare_capacity", weights.spare_capacity),
        ("costs.severity.healthy", s.healthy),
        ("costs.severity.degraded", s.degraded),
        ("costs.severity.suspect", s.suspect),
        ("costs.severity.failed", s.failed),
        ("costs.effort.stay", e.stay),
        ("costs.effort.add_standby", e.add_standby),
        ("costs.effort.drain_gradually", e.drain_gradually),
        ("costs.effort.evacuate_now", e.evacuate_now),
        ("costs.effort.fail_over", e.fail_over),
        ("costs.effort.release_standby", e.release_standby),
        ("costs.evacuation_disruption", costs.evacuation_disruption),
        ("costs.failover_disruption", costs.failover_disruption),
    ];
    for (field, value) in fields {
        // Bounded so that rewards, and so values, stay far from overflow.
        if !(value.is_finite() && (0.0..=1e12).contains(&value)) {
            return Err(FailoverMdpError::BadSetting { field, value });
        }
    }
    if !(costs.drain_exposure.is_finite() && (0.0..=1.0).contains(&costs.drain_exposure)) {
        return Err(FailoverMdpError::BadSetting {
            field: "costs.drain_exposure",
            value: costs.drain_exposure,
        });
    }
    Ok(())
}

/// The cost of one tick, `c(s, a)` in the module docs.
pub fn cost(state: AgentState, action: Action, weights: &Weights, costs: &CostModel) -> f64 {
    let severity = costs.severity.of(state.health);
    let risk = match action {
        Action::Stay | Action::AddStandby | Action::ReleaseStandby => severity,
        Action::DrainGradually => costs.drain_exposure * severity,
        Action::EvacuateNow => costs.evacuation_disruption,
        Action::FailOver => costs.failover_disruption,
    };
    let standby_after = match action {
        Action::AddStandby => true,
        Action::Stay => state.standby,
        _ => false,
    };
    weights.slo_risk * risk
        + weights.migration * costs.effort.of(action)
        + weights.spare_capacity * f64::from(u8::from(standby_after))
}

/// The decision process for a domain with matrix `home`, the fleet's matrix `fleet`, and the
/// given constants. Choices carry the index of their [`Action`] in [`Action::ALL`].
pub fn build(home: &TransitionMatrix, fleet: &TransitionMatrix, weights: &Weights, costs: &CostModel) -> Mdp {
    let choices = AgentState::all()
        .into_iter()
        .map(|s| {
            Action::ALL
                .iter()
                .enumerate()
                .filter(|(_, a)| a.available(s.standby))
                .map(|(id, &a)| {
                    let mut next = vec![0.0; AgentState::COUNT];
                    let (location, row, standby) = match a {
                        Action::Stay => (s.location, s.health, s.standby),
                        Action::AddStandby => (s.location, s.health, true),
                        Action::ReleaseStandby => (s.location, s.health, false),
                        Action::DrainGradually | Action::EvacuateNow | Action::FailOver => {
                            (Location::Away, HealthState::Healthy, false)
                        }
                    };
                    let matrix = match (a.relocates(), location) {
                        (false, Location::Home) => home,
                        _ => fleet,
                    };
                    for h in HealthState::ALL {
                        let to = AgentState {
                            location,
                            health: h,
                            standby,
                        };
                        next[to.index()] = matrix[row.index()][h.index()];
                    }
                    Choice {
                        action: id,
                        reward: -cost(s, a, weights, costs),
                        next,
                    }
                })
                .collect()
        })
        .collect();
    Mdp { choices }
}

/// A solved domain: the solution and the action of each state.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainPolicy {
    pub solution: Solution,
    mdp: Mdp,
}

impl DomainPolicy {
    /// The chosen action and its expected value V(s) in `state`.
    pub fn decide(&self, state: AgentState) -> (Action, f64) {
        let s = state.index();
        let choice = &self.mdp.choices[s][self.solution.policy[s]];
        (Action::ALL[choice.action], self.solution.values[s])
    }

    /// Q(s, a) of every available action in `state`, in action order.
    pub fn q_values(&self, state: AgentState) -> Vec<(Action, f64)> {
        let s = state.index();
        self.mdp.choices[s]
            .iter()
            .zip(&self.solution.q[s])
            .map(|(c, &q)| (Action::ALL[c.action], q))
            .collect()
    }

    /// The underlying process (for exact evaluation in tests and replay).
    pub fn mdp(&self) -> &Mdp {
        &self.mdp
    }
}

/// Builds and solves the process; `Err(reason)` when value iteration does not converge within
/// the cap (the caller falls back). Inputs are assumed checked ([`validate`],
/// [`super::transitions::check_stochastic`]); a failure of that assumption is also a reason.
pub fn solve(
    home: &TransitionMatrix,
    fleet: &TransitionMatrix,
    weights: &Weights,
    costs: &CostModel,
    settings: &Settings,
) -> Result<DomainPolicy, String> {
    let mdp = build(home, fleet, weights, costs);
    let solution = value_iteration(&mdp, settings).map_err(|e| e.to_string())?;
    if !solution.converged {
        return Err(format!(
            "value iteration did not converge within {} iterations (residual {:.3e}, tolerance {:.3e})",
            solution.iterations, solution.residual, settings.tolerance
        ));
    }
    Ok(DomainPolicy { solution, mdp })
}

/// The conservative rule used when the model is missing or degenerate:
///
/// ```text
/// healthy           → stay, or release_standby when there is one
/// degraded          → stay
/// suspect           → add_standby if there is none, else stay
/// failed            → fail_over if there is a standby, else evacuate_now
/// ```
///
/// It never moves replicas away from a domain that still answers, never leaves an agent in
/// a failed one, and never keeps a standby for a healthy one.
pub fn conservative_action(health: HealthState, standby: bool) -> Action {
    match (health, standby) {
        (HealthState::Healthy, true) => Action::ReleaseStandby,
        (HealthState::Healthy | HealthState::Degraded, _) => Action::Stay,
        (HealthState::Suspect, false) => Action::AddStandby,
        (HealthState::Suspect, true) => Action::Stay,
        (HealthState::Failed, true) => Action::FailOver,
        (HealthState::Failed, false) => Action::EvacuateNow,
    }
}

#[cfg(test)]
mod tests {
    use super::HealthState::*;
    use super::*;
    use crate::failover_mdp::transitions::TransitionCounts;
    use crate::failover_mdp::value_iteration::evaluate_policy;

    fn home(location: Location, health: HealthState, standby: bool) -> AgentState {
        AgentState {
            location,
            health,
            standby,
        }
    }

    /// A domain that goes healthy → degraded → suspect and then fails with `fail_share` of the
    /// time (else recovers), repeated; learned with Laplace's prior.
    fn domain_failing(fail_share_in_ten: usize) -> TransitionMatrix {
        let mut counts = TransitionCounts::default();
        for k in 0..10 {
            let end = if k < fail_share_in_ten { Failed } else { Healthy };
            counts.observe_sequence(&[Healthy, Healthy, Healthy, Degraded, Suspect, end, Healthy]);
        }
        counts.posterior_mean(1.0)
    }

    fn fleet() -> TransitionMatrix {
        domain_failing(1)
    }

    fn policy_for(matrix: &TransitionMatrix) -> DomainPolicy {
        solve(
            matrix,
            &fleet(),
            &Weights::default(),
            &CostModel::default(),
            &Settings::default(),
        )
        .unwrap()
    }

    /// The least severe health at which the agent (home, no standby) leaves the domain.
    fn first_relocation(policy: &DomainPolicy, standby: bool) -> Option<HealthState> {
        HealthState::ALL
            .into_iter()
            .find(|&h| policy.decide(home(Location::Home, h, standby)).0.relocates())
    }

    #[test]
    fn states_index_in_documented_order_and_cover_all_sixteen() {
        let all = AgentState::all();
        assert_eq!(all.len(), AgentState::COUNT);
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        assert_eq!(home(Location::Away, Failed, true).index(), 15);
    }

    #[test]
    fn a_domain_that_fails_more_often_is_left_earlier() {
        let often = policy_for(&domain_failing(9));
        let rarely = policy_for(&domain_failing(0));
        let early = first_relocation(&often, false);
        let late = first_relocation(&rarely, false);
        // Positive control: the reliable domain is still left once it has failed.
        assert_eq!(late, Some(Failed), "{:?}", rarely.solution.q);
        assert!(early.is_some_and(|h| h < Failed), "often-failing: {early:?}");
        // And both stay while healthy.
        assert_eq!(often.decide(home(Location::Home, Healthy, false)).0, Action::Stay);
        assert_eq!(rarely.decide(home(Location::Home, Healthy, false)).0, Action::Stay);
    }

    #[test]
    fn relocation_moves_no_later_as_the_failure_share_grows() {
        let mut previous = Failed;
        for share in 0..=10 {
            let h = first_relocation(&policy_for(&domain_failing(share)), false).unwrap_or(Failed);
            assert!(
                h <= previous,
                "share {share}: first relocation at {h:?} after {previous:?}"
            );
            previous = h;
        }
        assert!(previous < Failed);
    }

    #[test]
    fn with_a_standby_a_failed_domain_fails_over_and_without_one_it_evacuates() {
        let p = policy_for(&domain_failing(3));
        assert_eq!(p.decide(home(Location::Home, Failed, true)).0, Action::FailOver);
        assert_eq!(p.decide(home(Location::Home, Failed, false)).0, Action::EvacuateNow);
    }

    #[test]
    fn the_greedy_failover_policy_cannot_be_improved_by_changing_any_single_state() {
        // Policy iteration's optimality test: the exact values of the greedy policy match value
        // iteration's, and no one-state deviation (one improvement step) raises any value.
        for share in [0, 3, 9] {
            let p = policy_for(&domain_failing(share));
            let gamma = Settings::default().discount;
            let exact = evaluate_policy(p.mdp(), &p.solution.policy, gamma).unwrap();
            for (x, v) in exact.iter().zip(&p.solution.values) {
                assert!((x - v).abs() < 1e-5, "exact {x} vs VI {v}");
            }
            for (s, choices) in p.mdp().choices.iter().enumerate() {
                for c in choices {
                    let future: f64 = c.next.iter().zip(&exact).map(|(a, b)| a * b).sum();
                    assert!(
                        c.reward + gamma * future <= exact[s] + 1e-6,
                        "state {s} action {}",
                        c.action
                    );
                }
            }
        }
    }

    #[test]
    fn enumerating_every_home_policy_finds_no_better_one_than_value_iteration() {
        // Away states never lead home, so their values do not depend on the home policy: with
        // the away part fixed at value iteration's, the 4^4 · 5^4 = 160,000 home policies (four
        // actions without a standby, five with one) contain the optimal one. Each is solved exactly; the best must match value iteration's values.
        let p = policy_for(&domain_failing(3));
        let gamma = Settings::default().discount;
        let mdp = p.mdp();
        let home_states = AgentState::COUNT / 2;
        let sizes: Vec<usize> = mdp.choices[..home_states].iter().map(Vec::len).collect();
        let total: usize = sizes.iter().product();
        assert_eq!(total, 160_000);
        let mut policy = p.solution.policy.clone();
        let mut best_sum = f64::NEG_INFINITY;
        let mut best_values = vec![];
        for code in 0..total {
            let mut rest = code;
            for (s, &k) in sizes.iter().enumerate() {
                policy[s] = rest % k;
                rest /= k;
            }
            let v = evaluate_policy(mdp, &policy, gamma).unwrap();
            let sum: f64 = v[..home_states].iter().sum();
            if sum > best_sum {
                best_sum = sum;
                best_values = v;
            }
        }
        for (s, (bf, vi)) in best_values.iter().zip(&p.solution.values).enumerate() {
            assert!(
                (bf - vi).abs() < 1e-5,
                "state {s}: brute force {bf} vs value iteration {vi}"
            );
        }
    }

    #[test]
    fn with_a_standby_a_domain_that_still_answers_is_never_left_and_a_healthy_one_releases_it() {
        // The defect this action set fixes: with a standby and no way to release it, failing
        // over was the cheapest way to stop paying for it, even from a healthy domain.
        for share in 0..=10 {
            let p = policy_for(&domain_failing(share));
            for h in [Healthy, Degraded] {
                let (a, _) = p.decide(home(Location::Home, h, true));
                assert!(!a.relocates(), "share {share}, {h:?} with a standby: {a:?}");
            }
            assert_eq!(
                p.decide(home(Location::Home, Healthy, true)).0,
                Action::ReleaseStandby,
                "share {share}"
            );
            // Positive control: a failed domain is still left, through the standby.
            assert_eq!(p.decide(home(Location::Home, Failed, true)).0, Action::FailOver);
        }
    }

    #[test]
    fn a_domain_that_sometimes_fails_gets_a_standby_while_degraded_and_keeps_it_there() {
        for share in [1, 3, 9] {
            let p = policy_for(&domain_failing(share));
            assert_eq!(
                p.decide(home(Location::Home, Degraded, false)).0,
                Action::AddStandby,
                "share {share}"
            );
            assert_eq!(
                p.decide(home(Location::Home, Degraded, true)).0,
                Action::Stay,
                "share {share}"
            );
            // Once suspect, the warm standby takes over (cheaper than one more tick at risk).
            assert_eq!(p.decide(home(Location::Home, Suspect, true)).0, Action::FailOver);
        }
        // Positive control: a domain that never fails gets none.
        let calm = policy_for(&domain_failing(0));
        assert_eq!(calm.decide(home(Location::Home, Degraded, false)).0, Action::Stay);
    }

    #[test]
    fn costs_follow_the_documented_formula() {
        let w = Weights::default();
        let c = CostModel::default();
        let s = home(Location::Home, Suspect, false);
        assert!((cost(s, Action::Stay, &w, &c) - 1.0).abs() < 1e-12);
        assert!((cost(s, Action::AddStandby, &w, &c) - (1.0 + 0.3 + 0.2)).abs() < 1e-12);
        assert!((cost(s, Action::DrainGradually, &w, &c) - (0.5 + 1.0)).abs() < 1e-12);
        assert!((cost(s, Action::EvacuateNow, &w, &c) - (2.0 + 1.0)).abs() < 1e-12);
        let b = home(Location::Home, Failed, true);
        assert!((cost(b, Action::Stay, &w, &c) - (10.0 + 0.2)).abs() < 1e-12);
        assert!((cost(b, Action::FailOver, &w, &c) - (0.5 + 0.2)).abs() < 1e-12);
        // Releasing the standby keeps the risk, costs no effort and no spare.
        assert!((cost(b, Action::ReleaseStandby, &w, &c) - 10.0).abs() < 1e-12);
        // A move absorbs the standby: no spare after it.
        assert!((cost(b, Action::DrainGradually, &w, &c) - (5.0 + 1.0)).abs() < 1e-12);
    }

    #[test]
    fn the_conservative_rule_never_stays_in_a_failed_domain_and_never_leaves_a_healthy_one() {
        assert_eq!(conservative_action(Healthy, true), Action::ReleaseStandby);
        for standby in [false, true] {
            assert!(!conservative_action(Healthy, standby).relocates());
            assert_eq!(conservative_action(Degraded, standby), Action::Stay);
            assert!(conservative_action(Failed, standby).relocates());
            assert!(conservative_action(Suspect, standby).available(standby));
            assert!(conservative_action(Failed, standby).available(standby));
        }
        assert_eq!(conservative_action(Suspect, false), Action::AddStandby);
    }

    #[test]
    fn a_capped_solve_is_refused_with_a_reason_and_an_uncapped_one_solves() {
        let tight = Settings {
            max_iterations: 2,
            ..Settings::default()
        };
        let err = solve(&fleet(), &fleet(), &Weights::default(), &CostModel::default(), &tight).unwrap_err();
        assert!(err.contains("did not converge within 2 iterations"), "{err}");
        assert!(
            solve(
                &fleet(),
                &fleet(),
                &Weights::default(),
                &CostModel::default(),
                &Settings::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_weights_are_rejected_naming_the_field_and_defaults_are_accepted() {
        assert!(validate(&Weights::default(), &CostModel::default()).is_ok());
        let w = Weights {
            migration: f64::NAN,
            ..Weights::default()
        };
        let err = validate(&w, &CostModel::default()).unwrap_err().to_string();
        assert!(err.contains("weights.migration"), "{err}");
        let c = CostModel {
            drain_exposure: 1.5,
            ..CostModel::default()
        };
        let err = validate(&Weights::default(), &c).unwrap_err().to_string();
        assert!(err.contains("costs.drain_exposure"), "{err}");
    }
}
