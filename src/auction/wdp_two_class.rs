//! Fast exact winner determination and Clarke payments when bids use exactly two request shapes.
//!
//! Input: a validated [`Instance`]. Output: an [`Assignment`] and all payments, or the reason the
//! condition fails (then the caller falls back to the integer program).
//!
//! **Exactness condition:** the bids' per-replica requests take exactly two distinct values
//! ρ⁰ < ρ¹ (class 0 and class 1). Replicas within a class are interchangeable, so what matters
//! is how many of each class run, (q₀, q₁), and which of those are feasible does not depend on
//! the bids. Per node j, with p class-0 replicas, at most hⱼ(p) = minᵣ ⌊(Cⱼᵣ − p·ρ⁰ᵣ)/ρ¹ᵣ⌋
//! class-1 replicas fit. The feasibility frontier
//!
//! ```text
//! g(q₀) = max Σⱼ hⱼ(pⱼ)  over  Σⱼ pⱼ = q₀       (a (max, +) convolution over nodes, DP)
//! ```
//!
//! is computed once in O(m·Q₀·P) (Q₀ = class-0 slots, P = per-node class-0 slots). With
//! F_c(q) = the sum of the q largest class-c marginal values (each agent's units form a prefix,
//! as values are non-increasing), the optimum is W* = max_{q₀} F₀(q₀) + F₁(g(q₀)).
//! Because g does not depend on the bids, W*₋ᵢ only needs i's class recomputed without i:
//! O(U + Q₀) per winner, where U counts the listed units. Ties: the smallest q₀ reaching the
//! maximum; within a class, value desc, agent asc, replica asc.

use super::{Assignment, Instance, ResourceRequest};

/// The two request classes and, per bid, its class.
fn classes(inst: &Instance) -> Result<([ResourceRequest; 2], Vec<usize>), String> {
    let mut shapes: Vec<ResourceRequest> = inst.bids.iter().map(|b| b.request).collect();
    shapes.sort();
    shapes.dedup();
    if shapes.len() != 2 {
        return Err(format!(
            "{} distinct request shapes; the two-class path needs exactly 2",
            shapes.len()
        ));
    }
    let class = inst.bids.iter().map(|b| usize::from(b.request != shapes[0])).collect();
    Ok(([shapes[0], shapes[1]], class))
}

/// True when the bids use exactly two request shapes (this path's condition).
pub fn applies(inst: &Instance) -> bool {
    classes(inst).is_ok()
}

fn fit(req: [u64; 2], cap: [u64; 2]) -> u64 {
    (0..2)
        .filter(|&r| req[r] > 0)
        .map(|r| cap[r] / req[r])
        .min()
        .unwrap_or(0)
}

/// Units of one class in canonical order: (value, agent index, replica).
fn class_units(inst: &Instance, class: &[usize], c: usize) -> Vec<(f64, usize, usize)> {
    let mut u: Vec<(f64, usize, usize)> = inst
        .bids
        .iter()
        .enumerate()
        .filter(|(i, _)| class[*i] == c)
        .flat_map(|(i, b)| {
            b.marginal_values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(move |(t, &v)| (v, i, t))
        })
        .collect();
    u.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    u
}

/// prefix[q] = sum of the q largest values.
fn prefix(units: &[(f64, usize, usize)]) -> Vec<f64> {
    let mut p = Vec::with_capacity(units.len() + 1);
    p.push(0.0);
    for u in units {
        p.push(p[p.len() - 1] + u.0);
    }
    p
}

/// prefix sums of the first `limit` units not belonging to agent `skip`.
fn prefix_without(units: &[(f64, usize, usize)], skip: usize, limit: usize) -> Vec<f64> {
    // `limit` comes from capacity and may be astronomically large: size by the units there are.
    let mut p = Vec::with_capacity(limit.min(units.len()) + 1);
    p.push(0.0);
    for u in units.iter().filter(|u| u.1 != skip).take(limit) {
        p.push(p[p.len() - 1] + u.0);
    }
    p
}

/// The frontier g(q₀) (None = infeasible) and the DP choices for backtracking.
struct Frontier {
    g: Vec<Option<u64>>,
    choice: Vec<Vec<u32>>,
    per_node: Vec<Vec<u64>>,
}

fn frontier(inst: &Instance, shapes: &[ResourceRequest; 2], q0_max: usize) -> Frontier {
    let r0 = shapes[0].as_array();
    let r1 = shapes[1].as_array();
    let mut g: Vec<Option<u64>> = vec![None; q0_max + 1];
    g[0] = Some(0);
    let mut choice = Vec::with_capacity(inst.nodes.len());
    let mut per_node = Vec::with_capacity(inst.nodes.len());
    for nd in &inst.nodes {
        let cap = nd.as_array();
        let p_max = (fit(r0, cap) as usize).min(q0_max);
        // h[p] = class-1 replicas that fit beside p class-0 replicas.
        let h: Vec<u64> = (0..=p_max)
            .map(|p| fit(r1, [cap[0] - p as u64 * r0[0], cap[1] - p as u64 * r0[1]]))
            .collect();
        let mut next: Vec<Option<u64>> = vec![None; q0_max + 1];
        let mut pick = vec![0u32; q0_max + 1];
        for q in 0..=q0_max {
            for (p, hp) in h.iter().enumerate().take(p_max.min(q) + 1) {
                if let Some(prev) = g[q - p] {
                    let cand = prev + hp;
                    if next[q].is_none_or(|cur| cand > cur) {
                        next[q] = Some(cand);
                        pick[q] = p as u32;
                    }
                }
            }
        }
        g = next;
        choice.push(pick);
        per_node.push(h);
    }
    Frontier { g, choice, per_node }
}

/// (best welfare, q₀, q₁) over the frontier for class prefix sums f0, f1.
fn best(fr: &Frontier, f0: &[f64], f1: &[f64]) -> (f64, usize, usize) {
    let mut out = (f64::NEG_INFINITY, 0, 0);
    for (q0, g) in fr.g.iter().enumerate() {
        let Some(g) = *g else { continue };
        if q0 >= f0.len() {
            break;
        }
        let q1 = (g as usize).min(f1.len() - 1);
        let w = f0[q0] + f1[q1];
        if w > out.0 {
            out = (w, q0, q1);
        }
    }
    out
}

/// Winner determination plus all Clarke payments; `Err(reason)` unless exactly two shapes.
pub fn solve_with_payments(inst: &Instance) -> Result<(Assignment, Vec<f64>), String> {
    let (shapes, class) = classes(inst)?;
    let u0 = class_units(inst, &class, 0);
    let u1 = class_units(inst, &class, 1);
    let slots0: u64 = inst
        .nodes
        .iter()
        .map(|nd| fit(shapes[0].as_array(), nd.as_array()))
        .sum();
    let q0_max = (slots0 as usize).min(u0.len());
    let fr = frontier(inst, &shapes, q0_max);
    let (f0, f1) = (prefix(&u0), prefix(&u1));
    let (welfare, q0, q1) = best(&fr, &f0, &f1);

    let mut replicas = vec![[0u64; 2]; inst.bids.len()];
    for &(_, i, _) in &u0[..q0] {
        replicas[i][0] += 1;
    }
    for &(_, i, _) in &u1[..q1] {
        replicas[i][1] += 1;
    }
    // Backtrack class-0 counts per node, then the class-1 room each node has left.
    let m = inst.nodes.len();
    let mut p = vec![0u64; m];
    let mut q = q0;
    for j in (0..m).rev() {
        let pj = fr.choice[j][q] as usize;
        p[j] = pj as u64;
        q -= pj;
    }
    let room1: Vec<u64> = (0..m).map(|j| fr.per_node[j][p[j] as usize]).collect();
    let mut a = Assignment::empty(inst.bids.len(), m);
    for (c, room) in [p, room1].into_iter().enumerate() {
        let mut room = room;
        let mut j = 0;
        for (i, k) in replicas.iter().enumerate() {
            let mut left = k[c];
            while left > 0 && j < m {
                let take = left.min(room[j]);
                a.counts[i][j] += take as u32;
                room[j] -= take;
                left -= take;
                if room[j] == 0 {
                    j += 1;
                }
            }
        }
    }

    let q1_cap = fr.g.iter().flatten().copied().max().unwrap_or(0) as usize;
    let tol = 1e-9 * (1.0 + welfare.abs());
    let mut payments = vec![0.0; inst.bids.len()];
    for (i, b) in inst.bids.iter().enumerate() {
        let k = (replicas[i][0] + replicas[i][1]) as usize;
        if k == 0 {
            continue;
        }
        let own = b.value_of(k);
        let c = class[i];
        // Only the first `limit` values of the class can ever be chosen (capacity), so the
        // prefix without i is built from the already sorted list in O(limit + kᵢ).
        let (units, limit) = if c == 0 { (&u0, q0_max) } else { (&u1, q1_cap) };
        let without = prefix_without(units, i, limit);
        let (w_minus, _, _) = if c == 0 {
            best(&fr, &without, &f1)
        } else {
            best(&fr, &f0, &without)
        };
        let pay = w_minus - (welfare - own);
        if pay < -tol || pay > own + tol {
            return Err(format!(
                "internal: payment {pay} of agent {:?} outside [0, {own}]",
                b.agent
            ));
        }
        payments[i] = pay.clamp(0.0, own);
    }
    Ok((a, payments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::test_support::bid;
    use crate::auction::{NodeCapacity, validate, wdp_mip};

    #[test]
    fn three_shapes_are_reported_as_not_applicable() {
        let inst = validate(
            &[bid("a", &[1.0], 1, 1), bid("b", &[1.0], 2, 1), bid("c", &[1.0], 3, 1)],
            &[NodeCapacity {
                node: "n".into(),
                cpu_millis: 4,
                memory_bytes: 4,
                cost: 1.0,
            }],
        )
        .unwrap();
        assert!(
            solve_with_payments(&inst)
                .unwrap_err()
                .contains("3 distinct request shapes")
        );
    }

    #[test]
    fn the_packing_trade_off_between_the_two_shapes_is_solved_exactly() {
        // Node 4 cpu / 4 mem. Small (1, 1) worth 3 each ×4; big (3, 1) worth 10 ×1.
        // Options: 4 small = 12; 1 big + 1 small = 13 → the big one wins and pays for the 3 small it displaces.
        let inst = validate(
            &[bid("big", &[10.0], 3, 1), bid("small", &[3.0, 3.0, 3.0, 3.0], 1, 1)],
            &[NodeCapacity {
                node: "n".into(),
                cpu_millis: 4,
                memory_bytes: 4,
                cost: 1.0,
            }],
        )
        .unwrap();
        let (a, p) = solve_with_payments(&inst).unwrap();
        assert_eq!((a.replicas(0), a.replicas(1)), (1, 1));
        assert!(a.fits(&inst));
        let mip = wdp_mip::solve(&inst).unwrap();
        assert_eq!(a.welfare(&inst.bids), mip.welfare(&inst.bids));
        // big: W₋ = 12, others with big = 3 → 9; small: W₋ = 10, others with small = 10 → 0.
        assert_eq!(p, vec![9.0, 0.0]);
    }
}
