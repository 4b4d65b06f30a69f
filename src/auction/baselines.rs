//! Value-blind baseline allocations, for comparing welfare with VCG on the same instance.
//!
//! Input: a validated [`Instance`]. Output: an [`Assignment`] (replicas per agent per node).
//! Both baselines use *progressive filling*: repeatedly give one more replica to the active
//! agent with the smallest key (ties: lower index), placing it first-fit on the nodes in name
//! order; an agent leaves when it has all Kᵢ listed replicas or its next replica fits nowhere.
//!
//! - **Proportional share** (demand-proportional): key = kᵢ / Kᵢ, so every agent receives about
//!   the same fraction of the replicas it asked for.
//! - **DRF** (dominant resource fairness, Ghodsi et al., NSDI 2011): key = kᵢ · dᵢ with
//!   dᵢ = maxᵣ ρᵢᵣ / Σⱼ Cⱼᵣ the dominant share of one replica, so dominant shares are equalised.
//!
//! Neither looks at the declared values, which is exactly why their welfare can be lower.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Assignment, Instance};

fn progressive_fill(inst: &Instance, key: impl Fn(usize, usize) -> f64) -> Assignment {
    let n = inst.bids.len();
    let mut a = Assignment::empty(n, inst.nodes.len());
    let mut free: Vec<[u64; 2]> = inst.nodes.iter().map(|nd| nd.as_array()).collect();
    let mut replicas = vec![0usize; n];
    // Keys are ≥ 0, so their IEEE bit patterns order like the values.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = (0..n)
        .filter(|&i| !inst.bids[i].marginal_values.is_empty())
        .map(|i| Reverse((key(i, 0).to_bits(), i)))
        .collect();
    while let Some(Reverse((_, i))) = heap.pop() {
        let req = inst.bids[i].request.as_array();
        let Some(j) = free.iter().position(|f| f[0] >= req[0] && f[1] >= req[1]) else {
            continue;
        };
        free[j][0] -= req[0];
        free[j][1] -= req[1];
        a.counts[i][j] += 1;
        replicas[i] += 1;
        if replicas[i] < inst.bids[i].marginal_values.len() {
            heap.push(Reverse((key(i, replicas[i]).to_bits(), i)));
        }
    }
    a
}

/// Demand-proportional share by progressive filling on kᵢ / Kᵢ.
pub fn proportional_share(inst: &Instance) -> Assignment {
    progressive_fill(inst, |i, k| k as f64 / inst.bids[i].marginal_values.len() as f64)
}

/// Dominant resource fairness by progressive filling on kᵢ · dᵢ.
pub fn drf(inst: &Instance) -> Assignment {
    let mut total = [0u128; 2];
    for nd in &inst.nodes {
        for (r, c) in nd.as_array().into_iter().enumerate() {
            total[r] += c as u128;
        }
    }
    let dominant: Vec<f64> = inst
        .bids
        .iter()
        .map(|b| {
            let req = b.request.as_array();
            (0..2).map(|r| req[r] as f64 / total[r] as f64).fold(0.0, f64::max)
        })
        .collect();
    progressive_fill(inst, |i, k| k as f64 * dominant[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::{Bid, NodeCapacity, ResourceRequest, validate};

    fn bid(agent: &str, k: usize, cpu: u64, mem: u64) -> Bid {
        Bid {
            agent: agent.into(),
            tenant: "t".into(),
            marginal_values: vec![1.0; k],
            request: ResourceRequest {
                cpu_millis: cpu,
                memory_bytes: mem,
            },
        }
    }

    #[test]
    fn drf_reproduces_the_example_of_the_drf_paper() {
        // Ghodsi et al.: 9 CPUs, 18 GB; A needs <1 CPU, 4 GB>, B <3 CPU, 1 GB> → A 3 tasks, B 2 tasks.
        let inst = validate(
            &[bid("A", 100, 1, 4), bid("B", 100, 3, 1)],
            &[NodeCapacity {
                node: "n".into(),
                cpu_millis: 9,
                memory_bytes: 18,
                cost: 1.0,
            }],
        )
        .unwrap();
        let a = drf(&inst);
        assert_eq!((a.replicas(0), a.replicas(1)), (3, 2));
    }

    #[test]
    fn proportional_share_gives_each_agent_the_same_fraction_of_its_demand() {
        let inst = validate(
            &[bid("a", 2, 1, 1), bid("b", 4, 1, 1), bid("c", 8, 1, 1)],
            &[NodeCapacity {
                node: "n".into(),
                cpu_millis: 7,
                memory_bytes: 100,
                cost: 1.0,
            }],
        )
        .unwrap();
        let a = proportional_share(&inst);
        assert_eq!((a.replicas(0), a.replicas(1), a.replicas(2)), (1, 2, 4));
        assert!(a.fits(&inst));
    }
}
