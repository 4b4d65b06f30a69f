//! Fast exact winner determination and Clarke payments for homogeneous requests.
//!
//! Input: a validated [`Instance`]. Output: an [`Assignment`] (and, via [`clarke_payments`],
//! the VCG payments) — or, when the exactness condition fails, the reason, so the caller can
//! fall back to the integer program in [`super::wdp_mip`].
//!
//! **Exactness condition:** every bid requests the same `(cpu_millis, memory_bytes)` per
//! replica. Then node j holds exactly sⱼ = min over requested resources r of ⌊Cⱼᵣ / ρᵣ⌋
//! replicas of *any* agents, capacity is S = Σⱼ sⱼ interchangeable slots, and because every
//! agent's marginal values are non-increasing, welfare Σᵢ Vᵢ(kᵢ) subject to Σᵢ kᵢ ≤ S is
//! maximised by taking the S largest positive marginal values over all agents (an exchange
//! argument: any allocation missing a larger unit and holding a smaller one improves by the
//! swap, and each agent's chosen units form a prefix of its list). Cost O(N log N) for N
//! listed marginal values.
//!
//! **Clarke payments in closed form.** Order all positive units by (value desc, agent asc,
//! replica asc); winners are the first S. For winner i with kᵢ units, the others' units chosen
//! with i present are the first S − kᵢ units of the others' order; without i they are the first
//! S. So pᵢ = Σ of the others' units at positions S − kᵢ … S − 1 of the others' order = the
//! first kᵢ units after global position S that do not belong to i (the units i displaces).
//!
//! Ties in value go to the agent that sorts first by name (lower index), then the lower replica
//! number. Slots are filled node by node in node-name order, agents in name order.

use super::{Assignment, Instance};

/// Slots per node when all bids share one request, or the reason the condition fails.
pub fn homogeneous_slots(inst: &Instance) -> Result<Vec<u64>, String> {
    let Some(first) = inst.bids.first() else {
        return Ok(inst.nodes.iter().map(|_| 0).collect());
    };
    let rho = first.request;
    if let Some(other) = inst.bids.iter().find(|b| b.request != rho) {
        return Err(format!(
            "requests differ (agent {:?} requests {}m cpu / {} bytes, agent {:?} requests {}m cpu / {} bytes); \
             the fast path is exact only when every replica requests the same resources",
            first.agent,
            rho.cpu_millis,
            rho.memory_bytes,
            other.agent,
            other.request.cpu_millis,
            other.request.memory_bytes
        ));
    }
    let r = rho.as_array();
    Ok(inst
        .nodes
        .iter()
        .map(|n| {
            let c = n.as_array();
            (0..2).filter(|&k| r[k] > 0).map(|k| c[k] / r[k]).min().unwrap_or(0)
        })
        .collect())
}

/// One replica of one agent: (marginal value, agent index, replica number).
type Unit = (f64, usize, usize);

/// All positive units in the canonical order (value desc, agent asc, replica asc).
fn sorted_units(inst: &Instance) -> Vec<Unit> {
    let mut units: Vec<Unit> = inst
        .bids
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            b.marginal_values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(move |(t, &v)| (v, i, t))
        })
        .collect();
    units.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    units
}

/// The greedy result: units in canonical order, total slots S and replicas per agent.
struct Greedy {
    units: Vec<Unit>,
    total_slots: usize,
    replicas: Vec<usize>,
}

fn greedy(inst: &Instance, slots: &[u64]) -> Greedy {
    let units = sorted_units(inst);
    let total: u64 = slots.iter().sum();
    let total_slots = usize::try_from(total).unwrap_or(usize::MAX).min(units.len());
    let mut replicas = vec![0usize; inst.bids.len()];
    for &(_, i, _) in &units[..total_slots] {
        replicas[i] += 1;
    }
    Greedy {
        units,
        total_slots,
        replicas,
    }
}

/// Exact winner determination under the homogeneous-request condition; `Err(reason)` otherwise.
pub fn solve(inst: &Instance) -> Result<Assignment, String> {
    let slots = homogeneous_slots(inst)?;
    let g = greedy(inst, &slots);
    Ok(place(inst, &slots, &g.replicas))
}

/// Fills nodes in name order with each agent's replicas in agent order.
fn place(inst: &Instance, slots: &[u64], replicas: &[usize]) -> Assignment {
    let mut a = Assignment::empty(inst.bids.len(), inst.nodes.len());
    let mut j = 0;
    let mut free = slots.first().copied().unwrap_or(0);
    for (i, &k) in replicas.iter().enumerate() {
        let mut left = k as u64;
        while left > 0 && j < slots.len() {
            if free == 0 {
                j += 1;
                free = slots.get(j).copied().unwrap_or(0);
                continue;
            }
            let take = left.min(free);
            a.counts[i][j] += take as u32;
            left -= take;
            free -= take;
        }
    }
    a
}

/// Winner determination plus all Clarke payments in O(N log N); `Err(reason)` when the
/// homogeneous-request condition fails.
pub fn solve_with_payments(inst: &Instance) -> Result<(Assignment, Vec<f64>), String> {
    let slots = homogeneous_slots(inst)?;
    let g = greedy(inst, &slots);
    let assignment = place(inst, &slots, &g.replicas);
    Ok((assignment, clarke_payments(&g)))
}

/// pᵢ = Σ of the first kᵢ units after position S that are not agent i's (see module doc).
fn clarke_payments(g: &Greedy) -> Vec<f64> {
    let s = g.total_slots;
    let tail = &g.units[s..];
    g.replicas
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            if k == 0 {
                return 0.0;
            }
            tail.iter().filter(|u| u.1 != i).take(k).fold(0.0, |acc, u| acc + u.0)
        })
        .collect()
}

/// Payments for an assignment produced by [`solve`] on the same instance.
pub fn payments(inst: &Instance) -> Result<Vec<f64>, String> {
    solve_with_payments(inst).map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::{Bid, NodeCapacity, ResourceRequest, validate};

    fn bid(agent: &str, values: &[f64]) -> Bid {
        Bid {
            agent: agent.into(),
            tenant: "t".into(),
            marginal_values: values.to_vec(),
            request: ResourceRequest {
                cpu_millis: 500,
                memory_bytes: 1 << 30,
            },
        }
    }

    fn node(name: &str, cpu: u64, gib: u64) -> NodeCapacity {
        NodeCapacity {
            node: name.into(),
            cpu_millis: cpu,
            memory_bytes: gib << 30,
            cost: 1.0,
        }
    }

    #[test]
    fn slots_are_limited_by_the_scarcer_resource() {
        let inst = validate(&[bid("a", &[1.0])], &[node("n1", 2000, 3), node("n2", 1000, 8)]).unwrap();
        assert_eq!(homogeneous_slots(&inst).unwrap(), vec![3, 2]);
    }

    #[test]
    fn different_requests_are_reported_as_not_applicable() {
        let mut b = bid("b", &[1.0]);
        b.request.cpu_millis = 250;
        let inst = validate(&[bid("a", &[1.0]), b], &[node("n1", 2000, 3)]).unwrap();
        let err = solve(&inst).unwrap_err();
        assert!(err.contains("requests differ"), "{err}");
    }

    #[test]
    fn greedy_takes_the_largest_marginal_values_and_payments_are_displaced_values() {
        // 3 slots; units: a 10, 4 ; b 7, 6, 1 ; c 5 → winners a10, b7, b6; losing order: c5, a4, b1.
        let inst = validate(
            &[bid("a", &[10.0, 4.0]), bid("b", &[7.0, 6.0, 1.0]), bid("c", &[5.0])],
            &[node("n1", 1500, 8)],
        )
        .unwrap();
        let (a, p) = solve_with_payments(&inst).unwrap();
        assert_eq!((a.replicas(0), a.replicas(1), a.replicas(2)), (1, 2, 0));
        // a displaces c's 5; b displaces c's 5 and a's 4.
        assert_eq!(p, vec![5.0, 9.0, 0.0]);
    }

    #[test]
    fn equal_values_go_to_the_agent_whose_name_sorts_first() {
        let inst = validate(&[bid("zed", &[3.0]), bid("amy", &[3.0])], &[node("n1", 500, 8)]).unwrap();
        let a = solve(&inst).unwrap();
        assert_eq!(inst.bids[0].agent, "amy");
        assert_eq!((a.replicas(0), a.replicas(1)), (1, 0));
    }

    #[test]
    fn placement_spills_over_nodes_in_name_order_and_fits() {
        let inst = validate(&[bid("a", &[5.0; 5])], &[node("n2", 1000, 8), node("n1", 1000, 8)]).unwrap();
        let a = solve(&inst).unwrap();
        assert_eq!(a.counts[0], vec![2, 2]);
        assert!(a.fits(&inst));
    }
}
