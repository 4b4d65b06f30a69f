//! The budget's state in the operator: the gate that serialises scale-ups under a budget, the
//! refusals in force per agent, and the `BudgetExceeded` condition computed from them (pure).

use std::collections::BTreeMap;

use crate::operator::crd::conditions::{ConditionStatus, DesiredCondition};
use crate::operator::view::AgentKey;

/// Condition type on the MomConfig `default`.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";

/// Reasons of [`BUDGET_EXCEEDED`].
pub mod reason {
    /// True: a scale-up was refused or capped and still is.
    pub const SCALE_UP_REFUSED: &str = "MaxHourlyCostRefusedScaleUp";
    /// True: no scale-up refused, but an auction was offered less capacity than its pool
    /// because of the budget and granted some agent fewer replicas than it wants.
    pub const AUCTION_CAPPED: &str = "MaxHourlyCostCappedAuction";
    /// True: the pods cost more than the budget (e.g. it was lowered); the agent controller removes no pod for it.
    pub const OVER_BUDGET: &str = "MaxHourlyCostExceeded";
    /// False: within the budget and nothing refused.
    pub const WITHIN_BUDGET: &str = "WithinMaxHourlyCost";
    /// False: no `spec.budget`.
    pub const NO_BUDGET: &str = "NoBudget";
}

/// A scale-up the budget refused (part of).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub wanted: u32,
    pub allowed: u32,
    pub per_replica_cost: f64,
    pub max_hourly_cost: f64,
}

/// The gate that serialises scale-ups under a budget, and the refusals in force.
#[derive(Default)]
pub struct Ledger {
    pub(super) gate: tokio::sync::Mutex<()>,
    refusals: std::sync::Mutex<BTreeMap<AgentKey, Refusal>>,
    /// Pools whose last auction the budget held back, with what it says (auction loop).
    auction_caps: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Ledger {
    fn refusals_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<AgentKey, Refusal>> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `refusal` differs from the one in force for `key` (so it needs a receipt).
    pub(super) fn is_new(&self, key: &AgentKey, refusal: &Refusal) -> bool {
        self.refusals_lock().get(key) != Some(refusal)
    }

    pub(super) fn set(&self, key: AgentKey, refusal: Refusal) {
        self.refusals_lock().insert(key, refusal);
    }

    pub(super) fn clear(&self, key: &AgentKey) {
        self.refusals_lock().remove(key);
    }

    /// The refusals in force, by agent.
    pub fn refusals(&self) -> Vec<(AgentKey, Refusal)> {
        self.refusals_lock()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// Forgets the refusals of agents `keep` rejects (deleted ones).
    pub fn retain(&self, keep: impl Fn(&AgentKey) -> bool) {
        self.refusals_lock().retain(|k, _| keep(k));
    }

    fn caps_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.auction_caps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (`Some`: what the budget held back) or clears the budget's hold on `pool`'s auction.
    pub fn set_auction_cap(&self, pool: &str, cap: Option<String>) {
        match cap {
            Some(message) => self.caps_lock().insert(pool.to_string(), message),
            None => self.caps_lock().remove(pool),
        };
    }

    /// Forgets the pools `keep` rejects (gone).
    pub fn retain_auction_caps(&self, keep: impl Fn(&str) -> bool) {
        self.caps_lock().retain(|p, _| keep(p));
    }

    /// The pools whose auction the budget holds back: (pool, what it says).
    pub fn auction_caps(&self) -> Vec<(String, String)> {
        self.caps_lock().iter().map(|(p, m)| (p.clone(), m.clone())).collect()
    }
}

/// `BudgetExceeded` of the MomConfig `default`: `max` is `spec.budget.maxHourlyCost`, `cost`
/// what every GeometricAgent pod costs per hour now, `problems` unreadable price labels.
pub fn condition(
    max: Option<f64>,
    cost: f64,
    refusals: &[(AgentKey, Refusal)],
    auction_caps: &[(String, String)],
    problems: &[String],
) -> DesiredCondition {
    let labels = if problems.is_empty() {
        String::new()
    } else {
        format!("; {}", problems.join("; "))
    };
    let Some(max) = max else {
        return DesiredCondition::new(
            BUDGET_EXCEEDED,
            ConditionStatus::False,
            reason::NO_BUDGET,
            format!("no spec.budget: scale-ups are not limited; GeometricAgent pods cost {cost:.4} per hour{labels}"),
        );
    };
    if !refusals.is_empty() || !auction_caps.is_empty() {
        let named: Vec<String> = refusals
            .iter()
            .map(|(k, r)| {
                format!(
                    "{k} wants {} replicas, allowed {} ({:.4} per hour each)",
                    r.wanted, r.allowed, r.per_replica_cost
                )
            })
            .chain(
                auction_caps
                    .iter()
                    .map(|(pool, m)| format!("auction of pool {pool}: {m}")),
            )
            .collect();
        let more = named.len().saturating_sub(10);
        let (reason, what) = if refusals.is_empty() {
            (reason::AUCTION_CAPPED, "held back auctions")
        } else {
            (reason::SCALE_UP_REFUSED, "refused scale-ups")
        };
        return DesiredCondition::new(
            BUDGET_EXCEEDED,
            ConditionStatus::True,
            reason,
            format!(
                "spec.budget.maxHourlyCost {max} {what} (GeometricAgent pods cost {cost:.4} per hour): {}{}{labels}",
                named[..named.len().min(10)].join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        );
    }
    if cost > max + 1e-9 {
        return DesiredCondition::new(
            BUDGET_EXCEEDED,
            ConditionStatus::True,
            reason::OVER_BUDGET,
            format!(
                "GeometricAgent pods cost {cost:.4} per hour, over spec.budget.maxHourlyCost {max}: scale-ups are refused (the agent controller removes no pod for it){labels}"
            ),
        );
    }
    DesiredCondition::new(
        BUDGET_EXCEEDED,
        ConditionStatus::False,
        reason::WITHIN_BUDGET,
        format!("GeometricAgent pods cost {cost:.4} per hour, within spec.budget.maxHourlyCost {max}{labels}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> (AgentKey, Refusal) {
        (
            AgentKey::new("team", "web"),
            Refusal {
                wanted: 6,
                allowed: 4,
                per_replica_cost: 0.25,
                max_hourly_cost: 1.1,
            },
        )
    }

    #[test]
    fn budget_exceeded_is_true_naming_the_budget_and_the_agent_while_a_refusal_is_in_force() {
        let c = condition(Some(1.1), 1.0, &[refusal()], &[], &[]);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::True, reason::SCALE_UP_REFUSED)
        );
        assert!(c.message.contains("spec.budget.maxHourlyCost 1.1"), "{}", c.message);
        assert!(
            c.message.contains("team/web wants 6 replicas, allowed 4"),
            "{}",
            c.message
        );
    }

    #[test]
    fn budget_exceeded_is_true_over_budget_false_within_and_without_one() {
        let over = condition(Some(1.0), 1.5, &[], &[], &[]);
        assert_eq!(
            (over.status, over.reason.as_str()),
            (ConditionStatus::True, reason::OVER_BUDGET)
        );
        let within = condition(Some(1.0), 0.5, &[], &[], &["node n: label x".into()]);
        assert_eq!(
            (within.status, within.reason.as_str()),
            (ConditionStatus::False, reason::WITHIN_BUDGET)
        );
        assert!(within.message.contains("node n: label x"));
        let none = condition(None, 2.0, &[], &[], &[]);
        assert_eq!(
            (none.status, none.reason.as_str()),
            (ConditionStatus::False, reason::NO_BUDGET)
        );
    }

    #[test]
    fn an_auction_the_budget_held_back_makes_budget_exceeded_true_naming_the_pool() {
        let caps = vec![(
            "gpu".to_string(),
            "offered 6000 of 96000 cpu millis; ns/a granted 2 of 4".to_string(),
        )];
        let c = condition(Some(0.75), 0.75, &[], &caps, &[]);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::True, reason::AUCTION_CAPPED)
        );
        assert!(c.message.contains("spec.budget.maxHourlyCost 0.75"), "{}", c.message);
        assert!(c.message.contains("auction of pool gpu: offered 6000"), "{}", c.message);
        let both = condition(Some(0.75), 0.75, &[refusal()], &caps, &[]);
        assert_eq!(both.reason, reason::SCALE_UP_REFUSED);
        assert!(both.message.contains("auction of pool gpu"), "{}", both.message);
        let ledger = Ledger::default();
        ledger.set_auction_cap("gpu", Some("x".into()));
        assert_eq!(ledger.auction_caps().len(), 1);
        ledger.set_auction_cap("gpu", None);
        assert!(ledger.auction_caps().is_empty());
    }

    #[test]
    fn a_refusal_needs_a_receipt_only_when_it_changes_and_clearing_forgets_it() {
        let ledger = Ledger::default();
        let (key, r) = refusal();
        assert!(ledger.is_new(&key, &r));
        ledger.set(key.clone(), r.clone());
        assert!(!ledger.is_new(&key, &r));
        let mut other = r.clone();
        other.allowed = 5;
        assert!(ledger.is_new(&key, &other));
        ledger.clear(&key);
        assert!(ledger.refusals().is_empty());
    }
}
