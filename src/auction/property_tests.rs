//! Property tests of the mechanism against the brute-force oracle on tiny random instances.
//!
//! Case counts: `PROPTEST_CASES` if set, else 1,024 per property (all of them: ~8 s in a debug
//! `cargo test` on the 2-core CI machine).
//! The 10,000-case sweep is `PROPTEST_CASES=10000 cargo test --release --no-default-features
//! auction::property_tests`.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

const TOL: f64 = 1e-9;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Up to 3 bidders with up to 3 replicas each (integer values 0..=4, so ties are common) and
/// up to 2 nodes with capacities 1..=4 in each resource.
fn tiny_instance(homogeneous: bool) -> impl Strategy<Value = Instance> {
    let bid = (vec(0u8..=4, 1..=3), 1u64..=3, 0u64..=2);
    let node = (1u64..=4, 1u64..=4);
    (vec(bid, 1..=3), vec(node, 1..=2)).prop_map(move |(bids, nodes)| {
        let bids: Vec<Bid> = bids
            .into_iter()
            .enumerate()
            .map(|(i, (mut vals, cpu, mem))| {
                vals.sort_unstable_by(|a, b| b.cmp(a));
                let request = if homogeneous {
                    ResourceRequest {
                        cpu_millis: 1,
                        memory_bytes: 1,
                    }
                } else {
                    ResourceRequest {
                        cpu_millis: cpu,
                        memory_bytes: mem,
                    }
                };
                Bid {
                    agent: format!("a{i}"),
                    tenant: format!("t{}", i % 2),
                    marginal_values: vals.into_iter().map(f64::from).collect(),
                    request,
                }
            })
            .collect();
        let nodes: Vec<NodeCapacity> = nodes
            .into_iter()
            .enumerate()
            .map(|(j, (cpu, mem))| NodeCapacity {
                node: format!("n{j}"),
                cpu_millis: cpu,
                memory_bytes: mem,
                cost: 1.0,
            })
            .collect();
        validate(&bids, &nodes).expect("generated instance is valid")
    })
}

/// Like [`tiny_instance`] but every bid uses one of two request shapes (the two-class path).
fn two_shape_instance() -> impl Strategy<Value = Instance> {
    let shape = (1u64..=3, 0u64..=2);
    let bid = (vec(0u8..=4, 1..=3), any::<bool>());
    let node = (1u64..=5, 1u64..=5);
    (shape.clone(), shape, vec(bid, 1..=3), vec(node, 1..=2)).prop_map(|(s0, s1, bids, nodes)| {
        let shapes = [s0, s1];
        let bids: Vec<Bid> = bids
            .into_iter()
            .enumerate()
            .map(|(i, (mut vals, second))| {
                vals.sort_unstable_by(|a, b| b.cmp(a));
                let (cpu, mem) = shapes[usize::from(second)];
                Bid {
                    agent: format!("a{i}"),
                    tenant: "t".into(),
                    marginal_values: vals.into_iter().map(f64::from).collect(),
                    request: ResourceRequest {
                        cpu_millis: cpu,
                        memory_bytes: mem,
                    },
                }
            })
            .collect();
        let nodes: Vec<NodeCapacity> = nodes
            .into_iter()
            .enumerate()
            .map(|(j, (cpu, mem))| NodeCapacity {
                node: format!("n{j}"),
                cpu_millis: cpu,
                memory_bytes: mem,
                cost: 1.0,
            })
            .collect();
        validate(&bids, &nodes).expect("generated instance is valid")
    })
}

/// Every non-increasing vector of length ≤ `max_len` over {0, …, 4}: the misreport grid.
fn misreport_grid(max_len: usize) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new()];
    let mut frontier: Vec<Vec<f64>> = vec![Vec::new()];
    for _ in 0..max_len {
        let mut next = Vec::new();
        for v in &frontier {
            let top = v.last().copied().unwrap_or(4.0) as u8;
            for x in 0..=top {
                let mut w = v.clone();
                w.push(f64::from(x));
                next.push(w);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

/// Checks efficiency, utilities, IR, no positive transfers and losers-pay-zero against brute force.
fn check_against_brute_force(inst: &Instance, choice: SolverChoice) -> Result<(), TestCaseError> {
    let (a, p, _) = allocate_and_charge(inst, choice).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (ba, bp) = brute::vcg(inst).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(a.fits(inst), "allocation exceeds capacity");
    let w = a.welfare(&inst.bids);
    let bw = ba.welfare(&inst.bids);
    prop_assert!((w - bw).abs() < TOL, "welfare {w} vs brute force {bw}");
    for (i, b) in inst.bids.iter().enumerate() {
        let value = b.value_of(a.replicas(i));
        let utility = value - p[i];
        let brute_utility = b.value_of(ba.replicas(i)) - bp[i];
        // uᵢ = W* − W*₋ᵢ does not depend on which optimum was picked.
        prop_assert!(
            (utility - brute_utility).abs() < TOL,
            "agent {i}: utility {utility} vs brute {brute_utility}"
        );
        prop_assert!(
            utility >= -TOL,
            "agent {i}: individual rationality violated ({utility})"
        );
        prop_assert!(p[i] >= 0.0, "agent {i}: positive transfer (payment {})", p[i]);
        if a.replicas(i) == 0 {
            prop_assert_eq!(p[i], 0.0, "loser {} pays", i);
        }
    }
    Ok(())
}

/// No misreport of agent i's values on the grid raises its true utility.
fn check_truthful(inst: &Instance, choice: SolverChoice, grid: &[Vec<f64>]) -> Result<(), TestCaseError> {
    let (a, p, _) = allocate_and_charge(inst, choice).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (i, truth) in inst.bids.iter().enumerate() {
        let truthful = truth.value_of(a.replicas(i)) - p[i];
        for lie in grid {
            let mut reported = inst.clone();
            reported.bids[i].marginal_values.clone_from(lie);
            let (la, lp, _) = allocate_and_charge(&reported, choice).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let lying = truth.value_of(la.replicas(i)) - lp[i];
            prop_assert!(
                lying <= truthful + TOL,
                "agent {i}: reporting {lie:?} gives {lying} > truthful {truthful}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn fast_path_is_efficient_rational_and_charges_no_one_negatively_like_brute_force(inst in tiny_instance(true)) {
        check_against_brute_force(&inst, SolverChoice::Fast)?;
    }

    #[test]
    fn truthful_bidding_is_dominant_on_the_fast_path(inst in tiny_instance(true)) {
        check_truthful(&inst, SolverChoice::Fast, &misreport_grid(3))?;
    }

    #[test]
    fn two_class_path_is_efficient_rational_and_charges_no_one_negatively_like_brute_force(inst in two_shape_instance()) {
        check_against_brute_force(&inst, SolverChoice::Fast)?;
    }

    #[test]
    fn truthful_bidding_is_dominant_on_the_two_class_path(inst in two_shape_instance()) {
        check_truthful(&inst, SolverChoice::Fast, &misreport_grid(3))?;
    }

    #[test]
    fn a_single_slot_is_sold_by_second_price(values in vec(vec(0u8..=9, 1..=3), 1..=6), mip in any::<bool>()) {
        let bids: Vec<Bid> = values.iter().enumerate().map(|(i, v)| {
            let mut v = v.clone();
            v.sort_unstable_by(|a, b| b.cmp(a));
            Bid { agent: format!("a{i}"), tenant: "t".into(), marginal_values: v.into_iter().map(f64::from).collect(),
                  request: ResourceRequest { cpu_millis: 3, memory_bytes: 2 } }
        }).collect();
        let nodes = [NodeCapacity { node: "n".into(), cpu_millis: 5, memory_bytes: 3, cost: 1.0 }];
        let inst = validate(&bids, &nodes).unwrap();
        let choice = if mip { SolverChoice::Mip } else { SolverChoice::Fast };
        let (a, p, _) = allocate_and_charge(&inst, choice).unwrap();
        let mut firsts: Vec<f64> = inst.bids.iter().map(|b| b.marginal_values[0]).collect();
        firsts.sort_by(|x, y| y.total_cmp(x));
        let second = firsts.get(1).copied().unwrap_or(0.0);
        let winners: Vec<usize> = (0..inst.bids.len()).filter(|&i| a.replicas(i) > 0).collect();
        if firsts[0] == 0.0 {
            prop_assert!(winners.is_empty());
        } else {
            prop_assert_eq!(winners.len(), 1);
            let w = winners[0];
            prop_assert_eq!(inst.bids[w].marginal_values[0], firsts[0]);
            prop_assert_eq!(a.replicas(w), 1);
            prop_assert!((p[w] - second).abs() < TOL, "winner pays {} not the second price {second}", p[w]);
        }
        for i in (0..inst.bids.len()).filter(|i| !winners.contains(i)) {
            prop_assert_eq!(p[i], 0.0);
        }
    }
}

proptest! {
    // Each case solves several integer programs: fewer cases by default.
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn mip_is_efficient_rational_and_charges_no_one_negatively_like_brute_force(inst in tiny_instance(false)) {
        check_against_brute_force(&inst, SolverChoice::Mip)?;
    }

    #[test]
    fn mip_agrees_with_brute_force_on_homogeneous_instances_too(inst in tiny_instance(true)) {
        check_against_brute_force(&inst, SolverChoice::Mip)?;
    }

    #[test]
    fn fast_path_equals_the_mip_on_random_homogeneous_instances(seed in any::<u64>(), bidders in 1usize..=6, nodes in 1usize..=3) {
        let input = generate::random_instance(
            generate::GenConfig { bidders, nodes, max_replicas: 8, homogeneous: true, tenants: 2 },
            seed,
        );
        // Shrink nodes so the instance is contested: 4 cores / 4 GiB each.
        let nodes: Vec<NodeCapacity> = input.nodes.iter().map(|n| NodeCapacity { cpu_millis: 4000, memory_bytes: 4 << 30, ..n.clone() }).collect();
        let inst = validate(&input.bids, &nodes).unwrap();
        let (fa, fp, used) = allocate_and_charge(&inst, SolverChoice::Auto).unwrap();
        prop_assert_eq!(used, SolverUsed::FastHomogeneous);
        let (ma, mp, _) = allocate_and_charge(&inst, SolverChoice::Mip).unwrap();
        prop_assert!((fa.welfare(&inst.bids) - ma.welfare(&inst.bids)).abs() < 1e-6);
        // Continuous values: no ties, so the optimum and the payments are unique.
        for i in 0..inst.bids.len() {
            prop_assert_eq!(fa.replicas(i), ma.replicas(i));
            prop_assert!((fp[i] - mp[i]).abs() < 1e-6, "agent {i}: fast pays {} mip pays {}", fp[i], mp[i]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn two_class_path_equals_the_mip_on_random_two_shape_instances(seed in any::<u64>(), bidders in 2usize..=6, nodes in 1usize..=3) {
        let input = generate::random_instance(
            generate::GenConfig { bidders, nodes, max_replicas: 6, homogeneous: true, tenants: 2 },
            seed,
        );
        let mut bids = input.bids.clone();
        // Every other bid gets the second shape: 1.5 cores / 0.5 GiB.
        for b in bids.iter_mut().skip(1).step_by(2) {
            b.request = ResourceRequest { cpu_millis: 1500, memory_bytes: 1 << 29 };
        }
        let nodes: Vec<NodeCapacity> = input.nodes.iter().map(|n| NodeCapacity { cpu_millis: 4000, memory_bytes: 3 << 30, ..n.clone() }).collect();
        let inst = validate(&bids, &nodes).unwrap();
        let (fa, fp, used) = allocate_and_charge(&inst, SolverChoice::Auto).unwrap();
        prop_assert_eq!(used, SolverUsed::FastTwoClass);
        prop_assert!(fa.fits(&inst));
        let (ma, mp, _) = allocate_and_charge(&inst, SolverChoice::Mip).unwrap();
        prop_assert!((fa.welfare(&inst.bids) - ma.welfare(&inst.bids)).abs() < 1e-6);
        for i in 0..inst.bids.len() {
            prop_assert_eq!(fa.replicas(i), ma.replicas(i));
            prop_assert!((fp[i] - mp[i]).abs() < 1e-6, "agent {i}: two-class pays {} mip pays {}", fp[i], mp[i]);
        }
    }
}

proptest! {
    // Each case runs ~60 misreports × up to 4 integer programs (1,024 cases: ~3 s in debug).
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn truthful_bidding_is_dominant_with_the_mip(inst in tiny_instance(false)) {
        check_truthful(&inst, SolverChoice::Mip, &misreport_grid(2))?;
    }
}

#[test]
fn the_misreport_grid_lists_every_non_increasing_vector_up_to_the_length() {
    let g = misreport_grid(2);
    // 1 empty + 5 singletons + 15 pairs (a ≥ b over 0..=4).
    assert_eq!(g.len(), 21);
    assert!(g.iter().all(|v| v.windows(2).all(|w| w[0] >= w[1])));
}

/// Filling leftover capacity with zero-valued replicas: still within capacity, no bid beyond its
/// listed replicas, no replica taken away, welfare unchanged, and nothing zero-valued left that
/// would still fit (the fill is maximal).
fn check_fill(inst: &Instance, choice: SolverChoice) -> Result<(), TestCaseError> {
    let (before, _, _) = allocate_and_charge(inst, choice).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut after = before.clone();
    fill_unvalued(inst, &mut after);
    prop_assert!(after.fits(inst), "the fill exceeds capacity");
    let (w0, w1) = (before.welfare(&inst.bids), after.welfare(&inst.bids));
    prop_assert!((w0 - w1).abs() < TOL, "welfare {w0} -> {w1}");
    for (i, b) in inst.bids.iter().enumerate() {
        prop_assert!(after.replicas(i) >= before.replicas(i), "agent {i} lost replicas");
        prop_assert!(after.replicas(i) <= b.marginal_values.len(), "agent {i} beyond its bid");
        for j in 0..inst.nodes.len() {
            prop_assert!(
                after.counts[i][j] >= before.counts[i][j],
                "agent {i} moved off node {j}"
            );
        }
        let open = b.marginal_values.iter().skip(after.replicas(i)).any(|v| *v == 0.0);
        if open {
            // No node has room for one more of its replicas.
            for j in 0..inst.nodes.len() {
                let mut more = after.clone();
                more.counts[i][j] += 1;
                prop_assert!(
                    !more.fits(inst),
                    "agent {i}: a zero-valued replica still fits on node {j}"
                );
            }
        }
    }
    // Through `run`: every payment is the one without the fill (`run` charges before filling;
    // this guards that order).
    let input = |fill_unvalued| AuctionInput {
        bids: inst.bids.clone(),
        nodes: inst.nodes.clone(),
        solver: choice,
        shapley: ShapleyConfig::default(),
        mip_max_integer_variables: None,
        fill_unvalued,
    };
    let (plain, filled) = (run(&input(false)), run(&input(true)));
    let (plain, filled) = (
        plain.map_err(|e| TestCaseError::fail(e.to_string()))?,
        filled.map_err(|e| TestCaseError::fail(e.to_string()))?,
    );
    for (p, f) in plain.allocations.iter().zip(&filled.allocations) {
        prop_assert_eq!(p.payment, f.payment, "agent {}: payment changed by the fill", &p.agent);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn the_fill_keeps_welfare_and_capacity_and_leaves_no_zero_valued_replica_that_fits(inst in tiny_instance(false)) {
        check_fill(&inst, SolverChoice::Auto)?;
    }

    #[test]
    fn the_fill_is_maximal_on_the_fast_path_too(inst in tiny_instance(true)) {
        check_fill(&inst, SolverChoice::Auto)?;
    }
}
