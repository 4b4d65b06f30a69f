//! VCG with Clarke pivot payments.
//!
//! Input: a validated [`Instance`] and the welfare-maximising [`Assignment`] a* found for it.
//! Output: one payment per bid (same order as `inst.bids`).
//!
//! ```text
//! pᵢ = W*₋ᵢ − (W* − vᵢ(a*))
//! ```
//! where W* is the optimal declared welfare, vᵢ(a*) bid i's declared value of what it got, and
//! W*₋ᵢ the optimal welfare of the same instance with bid i removed. So pᵢ is the welfare the
//! others lose because i is present (its externality). With an exact solver: pᵢ ≥ 0 (a* without
//! i's replicas is feasible for the others, so W*₋ᵢ ≥ W* − vᵢ(a*)); pᵢ ≤ vᵢ(a*) (W*₋ᵢ ≤ W*, so
//! individual rationality); a loser pays 0. Truthful bidding is a dominant strategy: i's utility
//! is vᵢ(a*) − pᵢ = W* − W*₋ᵢ, W*₋ᵢ does not depend on i's bid, and W* is the best welfare
//! reachable with i's true values.
//!
//! The fast path computes all payments in closed form ([`super::wdp_fast`]); the generic path
//! re-solves winner determination once per winner. Floating-point noise below
//! `1e-9·(1 + W*)` is clamped into [0, vᵢ(a*)]; a larger violation means the solver was not
//! optimal and is reported as an error rather than hidden.

use super::{Assignment, AuctionError, Instance, SolverUsed, wdp_fast, wdp_mip, wdp_two_class};

/// Clarke payments for `assignment`, using the same solver that produced it.
pub fn clarke_payments(inst: &Instance, assignment: &Assignment, solver: SolverUsed) -> Result<Vec<f64>, AuctionError> {
    match solver {
        SolverUsed::FastHomogeneous => wdp_fast::payments(inst).map_err(AuctionError::FastPathNotApplicable),
        SolverUsed::FastTwoClass => wdp_two_class::solve_with_payments(inst)
            .map(|(_, p)| p)
            .map_err(AuctionError::FastPathNotApplicable),
        SolverUsed::Mip => clarke_payments_with(inst, assignment, wdp_mip::solve),
    }
}

/// The instance with bid `i` removed (its marginal values emptied, so indices stay aligned).
pub fn without_bidder(inst: &Instance, i: usize) -> Instance {
    let mut reduced = inst.clone();
    reduced.bids[i].marginal_values.clear();
    reduced
}

/// Clarke payments with any exact winner-determination routine `wdp`.
pub fn clarke_payments_with<F>(inst: &Instance, assignment: &Assignment, wdp: F) -> Result<Vec<f64>, AuctionError>
where
    F: Fn(&Instance) -> Result<Assignment, AuctionError>,
{
    let welfare = assignment.welfare(&inst.bids);
    let tol = 1e-9 * (1.0 + welfare.abs());
    let mut payments = Vec::with_capacity(inst.bids.len());
    for (i, b) in inst.bids.iter().enumerate() {
        let own = b.value_of(assignment.replicas(i));
        if assignment.replicas(i) == 0 {
            payments.push(0.0);
            continue;
        }
        let reduced = without_bidder(inst, i);
        let w_without = wdp(&reduced)?.welfare(&reduced.bids);
        let p = w_without - (welfare - own);
        if p < -tol || p > own + tol {
            return Err(AuctionError::Solver(format!(
                "payment of agent {:?} is {p}, outside [0, {own}]: winner determination was not optimal",
                b.agent
            )));
        }
        payments.push(p.clamp(0.0, own));
    }
    Ok(payments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::test_support::{bid, node};
    use crate::auction::{AuctionInput, SolverChoice, run, validate};

    /// The combinatorial vector in the replica model: the node's cpu is item A and its memory
    /// item B. Bidder 1 needs both (one replica of 1 cpu + 1 mem), bidder 2 only A, bidder 3 only B.
    fn known_vector(with_third: bool) -> AuctionInput {
        let mut bids = vec![bid("b1", &[2.0], 1, 1), bid("b2", &[2.0], 1, 0)];
        if with_third {
            bids.push(bid("b3", &[2.0], 0, 1));
        }
        AuctionInput {
            bids,
            nodes: vec![node("n", 1, 1)],
            solver: SolverChoice::Mip,
            shapley: Default::default(),
            mip_max_integer_variables: None,
            fill_unvalued: false,
        }
    }

    #[test]
    fn known_vector_in_the_replica_model_has_revenue_zero_with_three_bidders() {
        let out = run(&known_vector(true)).unwrap();
        assert_eq!(out.welfare, 4.0);
        assert_eq!(out.revenue, 0.0);
        let winners: Vec<_> = out
            .allocations
            .iter()
            .filter(|a| a.replicas > 0)
            .map(|a| a.agent.as_str())
            .collect();
        assert_eq!(winners, vec!["b2", "b3"]);
    }

    #[test]
    fn known_vector_in_the_replica_model_has_revenue_two_without_bidder_three() {
        let out = run(&known_vector(false)).unwrap();
        assert_eq!(out.welfare, 2.0);
        assert_eq!(out.revenue, 2.0);
    }

    #[test]
    fn mip_payments_equal_fast_closed_form_payments_on_a_homogeneous_instance() {
        let inst = validate(
            &[
                bid("a", &[9.0, 3.0], 500, 1),
                bid("b", &[8.0, 7.0, 2.0], 500, 1),
                bid("c", &[6.5], 500, 1),
            ],
            &[node("n1", 1000, 10), node("n2", 600, 10)],
        )
        .unwrap();
        let fast = wdp_fast::solve(&inst).unwrap();
        let fast_p = clarke_payments(&inst, &fast, SolverUsed::FastHomogeneous).unwrap();
        let mip = wdp_mip::solve(&inst).unwrap();
        let mip_p = clarke_payments(&inst, &mip, SolverUsed::Mip).unwrap();
        // 3 slots: a9, b8, b7 win; c6.5 and a3 are displaced.
        assert_eq!(fast_p, vec![6.5, 9.5, 0.0]);
        for (f, m) in fast_p.iter().zip(&mip_p) {
            assert!((f - m).abs() < 1e-9, "{fast_p:?} vs {mip_p:?}");
        }
    }

    #[test]
    fn a_suboptimal_winner_determination_is_reported_not_hidden() {
        let inst = validate(&[bid("a", &[5.0], 1, 1), bid("b", &[1.0], 1, 1)], &[node("n", 1, 1)]).unwrap();
        // Give the slot to b (welfare 1, optimum 5): b's payment would be 5 − 0 > its value 1.
        let mut bad = Assignment::empty(2, 1);
        bad.counts[1][0] = 1;
        let err = clarke_payments_with(&inst, &bad, wdp_mip::solve).unwrap_err();
        assert!(
            matches!(err, AuctionError::Solver(ref m) if m.contains("\"b\"")),
            "{err}"
        );
    }
}
