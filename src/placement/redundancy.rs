//! Redundancy rules as numbers: how many replicas an agent runs beyond its demand and the most
//! one failure domain may hold, so that losing whole domains still leaves the demand running.

/// A strategy's `spec.resilience.redundancy`, in the terms of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Losing any `k` failure domains keeps the demanded replicas (`n_plus_1`: 1, `n_plus_2`: 2).
    DomainLoss(u32),
    /// A majority of the replicas lives outside any single failure domain (no spares).
    Quorum,
}

/// What a rule asks for, given the demand and the number of failure domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpreadPlan {
    /// Replicas to run: the demand plus the spares.
    pub total: u32,
    /// Most replicas one failure domain may hold.
    pub max_per_domain: u32,
    /// Whether there are enough domains to keep the promise; when not, the plan is the best
    /// effort described at [`plan`].
    pub kept: bool,
}

impl SpreadPlan {
    /// Replicas beyond the demand.
    pub fn spares(&self, demand: u32) -> u32 {
        self.total.saturating_sub(demand)
    }
}

/// The smallest replica count, and the cap per domain, that keep `rule` for `demand` replicas
/// over `domains` failure domains.
///
/// - `DomainLoss(k)` with `domains > k`: a cap `c` per domain loses at most `k·c` replicas with
///   `k` domains, so `total = demand + k·c`; the `total` replicas fit under the cap when
///   `c·domains ≥ total`, i.e. `c·(domains − k) ≥ demand`. The smallest such cap and total:
///   `c = ⌈demand / (domains − k)⌉`, `total = demand + k·c` (no smaller total can work: any
///   cap that fits it is at least `c`). With `domains ≤ k` the promise cannot be kept: `k`
///   spares, spread evenly (`c = ⌈total / domains⌉`), `kept = false`.
/// - `Quorum`: `total = demand`; losing one domain keeps a strict majority when
///   `c = ⌊(total − 1) / 2⌋`, which needs `c ≥ 1` (3 replicas or more) and `c·domains ≥ total`.
///   Otherwise an even spread, `kept = false`.
///
/// A demand of 0 needs nothing: `total = 0`, kept.
pub fn plan(demand: u32, domains: u32, rule: Rule) -> SpreadPlan {
    let even = |total: u32| total.div_ceil(domains.max(1)).max(1);
    if demand == 0 {
        return SpreadPlan {
            total: 0,
            max_per_domain: 1,
            kept: true,
        };
    }
    match rule {
        Rule::DomainLoss(k) if domains > k => {
            let cap = demand.div_ceil(domains - k);
            SpreadPlan {
                total: demand.saturating_add(k.saturating_mul(cap)),
                max_per_domain: cap,
                kept: true,
            }
        }
        Rule::DomainLoss(k) => {
            let total = demand.saturating_add(k);
            SpreadPlan {
                total,
                max_per_domain: even(total),
                kept: false,
            }
        }
        Rule::Quorum => {
            let cap = (demand - 1) / 2;
            let kept = cap >= 1 && cap.saturating_mul(domains) >= demand;
            SpreadPlan {
                total: demand,
                max_per_domain: if kept { cap } else { even(demand) },
                kept,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replicas left after losing the `lost` fullest domains of the fullest placement the
    /// cap allows (as many domains as possible filled to the cap).
    fn worst_survivors(total: u32, cap: u32, domains: u32, lost: u32) -> Option<u32> {
        if cap.checked_mul(domains)? < total {
            return None; // the total does not fit under the cap
        }
        let full = (total / cap).min(domains);
        let mut sizes: Vec<u32> = vec![cap; full as usize];
        if full < domains && total > full * cap {
            sizes.push(total - full * cap);
        }
        Some(total - sizes.iter().take(lost as usize).sum::<u32>())
    }

    #[test]
    fn three_replicas_over_three_zones_need_five_to_survive_a_zone_and_four_zones_need_four() {
        assert_eq!(
            plan(3, 3, Rule::DomainLoss(1)),
            SpreadPlan {
                total: 5,
                max_per_domain: 2,
                kept: true
            }
        );
        assert_eq!(
            plan(3, 4, Rule::DomainLoss(1)),
            SpreadPlan {
                total: 4,
                max_per_domain: 1,
                kept: true
            }
        );
        assert_eq!(plan(4, 6, Rule::DomainLoss(2)).total, 6);
    }

    #[test]
    fn too_few_domains_give_the_spares_spread_evenly_and_say_the_promise_is_not_kept() {
        let p = plan(3, 2, Rule::DomainLoss(2));
        assert_eq!((p.total, p.max_per_domain, p.kept), (5, 3, false));
        let p = plan(3, 1, Rule::DomainLoss(1));
        assert_eq!((p.total, p.max_per_domain, p.kept), (4, 4, false));
        let p = plan(2, 5, Rule::Quorum);
        assert!(!p.kept, "two replicas have no majority that survives losing one");
        let p = plan(5, 2, Rule::Quorum);
        assert_eq!((p.total, p.max_per_domain, p.kept), (5, 3, false));
    }

    #[test]
    fn quorum_keeps_a_strict_majority_outside_any_one_domain_without_spares() {
        for demand in 3..40u32 {
            for domains in 1..12u32 {
                let p = plan(demand, domains, Rule::Quorum);
                assert_eq!(p.total, demand);
                if p.kept {
                    let left = worst_survivors(p.total, p.max_per_domain, domains, 1).unwrap();
                    assert!(2 * left > p.total, "{demand} over {domains}: {p:?} leaves {left}");
                }
                // Kept exactly when some cap can do it.
                let possible = (1..=demand).any(|c| c * domains >= demand && 2 * (demand - c) > demand);
                assert_eq!(p.kept, possible, "{demand} over {domains}");
            }
        }
    }

    #[test]
    fn domain_loss_plans_survive_the_worst_loss_and_no_smaller_total_could() {
        for k in 1..=2u32 {
            for demand in 1..30u32 {
                for domains in (k + 1)..10u32 {
                    let p = plan(demand, domains, Rule::DomainLoss(k));
                    assert!(p.kept);
                    let left = worst_survivors(p.total, p.max_per_domain, domains, k).unwrap();
                    assert!(left >= demand, "k={k} {demand} over {domains}: {p:?} leaves {left}");
                    // Brute force: no (total, cap) with a smaller total fits and survives.
                    for total in demand..p.total {
                        for cap in 1..=total {
                            if let Some(left) = worst_survivors(total, cap, domains, k) {
                                assert!(
                                    left < demand,
                                    "k={k} {demand} over {domains}: {total} with cap {cap} would do"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn no_demand_needs_no_replicas() {
        assert_eq!(plan(0, 3, Rule::DomainLoss(2)).total, 0);
        assert_eq!(plan(0, 0, Rule::Quorum).total, 0);
    }
}
