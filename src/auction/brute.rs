//! Brute-force winner determination for tiny instances: the test oracle.
//!
//! Input: a validated [`Instance`] with at most [`MAX_ASSIGNMENTS`] candidate assignments.
//! Output: a welfare-maximising [`Assignment`] found by enumerating every vector of
//! per-node replica counts xᵢⱼ with Σⱼ xᵢⱼ ≤ Kᵢ, and VCG payments computed the same way.
//! Among optimal assignments the first in enumeration order is kept (deterministic).

use super::{Assignment, AuctionError, Instance, vcg};

/// Refuse instances with more candidate assignments than this.
pub const MAX_ASSIGNMENTS: u64 = 2_000_000;

/// All ways to spread at most `k` replicas over `m` nodes.
fn spreads(k: usize, m: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut cur = vec![0u32; m];
    fn rec(j: usize, left: usize, cur: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
        if j == cur.len() {
            out.push(cur.clone());
            return;
        }
        for c in 0..=left {
            cur[j] = c as u32;
            rec(j + 1, left - c, cur, out);
        }
        cur[j] = 0;
    }
    rec(0, k, &mut cur, &mut out);
    out
}

/// Exhaustive winner determination.
pub fn solve(inst: &Instance) -> Result<Assignment, AuctionError> {
    let m = inst.nodes.len();
    let options: Vec<Vec<Vec<u32>>> = inst.bids.iter().map(|b| spreads(b.marginal_values.len(), m)).collect();
    let total = options
        .iter()
        .try_fold(1u64, |acc, o| acc.checked_mul(o.len() as u64))
        .unwrap_or(u64::MAX);
    if total > MAX_ASSIGNMENTS {
        return Err(AuctionError::TooLarge(format!(
            "{total} assignments, limit {MAX_ASSIGNMENTS}"
        )));
    }
    let n = inst.bids.len();
    let mut best = Assignment::empty(n, m);
    let mut best_welfare = 0.0;
    let mut idx = vec![0usize; n];
    let mut cand = Assignment::empty(n, m);
    loop {
        for i in 0..n {
            cand.counts[i].clone_from(&options[i][idx[i]]);
        }
        if cand.fits(inst) {
            let w = cand.welfare(&inst.bids);
            if w > best_welfare {
                best_welfare = w;
                best = cand.clone();
            }
        }
        // Odometer increment.
        let mut i = 0;
        loop {
            if i == n {
                return Ok(best);
            }
            idx[i] += 1;
            if idx[i] < options[i].len() {
                break;
            }
            idx[i] = 0;
            i += 1;
        }
    }
}

/// Exhaustive VCG: brute-force winners and Clarke payments.
pub fn vcg(inst: &Instance) -> Result<(Assignment, Vec<f64>), AuctionError> {
    let a = solve(inst)?;
    let p = vcg::clarke_payments_with(inst, &a, solve)?;
    Ok((a, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::{Bid, NodeCapacity, ResourceRequest, validate};

    #[test]
    fn spreads_enumerates_every_split_of_at_most_k_replicas() {
        // (a, b) with a + b ≤ 2: 6 splits.
        assert_eq!(spreads(2, 2).len(), 6);
        assert_eq!(spreads(0, 3), vec![vec![0, 0, 0]]);
    }

    #[test]
    fn oversized_instances_are_refused() {
        let bids: Vec<Bid> = (0..8)
            .map(|i| Bid {
                agent: format!("a{i}"),
                tenant: "t".into(),
                marginal_values: vec![1.0; 6],
                request: ResourceRequest {
                    cpu_millis: 1,
                    memory_bytes: 1,
                },
            })
            .collect();
        let nodes: Vec<NodeCapacity> = (0..4)
            .map(|j| NodeCapacity {
                node: format!("n{j}"),
                cpu_millis: 3,
                memory_bytes: 3,
                cost: 1.0,
            })
            .collect();
        let inst = validate(&bids, &nodes).unwrap();
        assert!(matches!(solve(&inst), Err(AuctionError::TooLarge(_))));
    }
}
