//! Prints the auction measurements: time of winner determination + all Clarke payments as the
//! number of bidders and nodes grows (fast path and MIP reference), and welfare of VCG against
//! the proportional-share and DRF baselines on the same instances.
//!
//! `cargo run --release --no-default-features --example auction_report [-- --mip-max-bidders N]`

use std::time::Instant;

use mom::auction::generate::{GenConfig, random_instance};
use mom::auction::{SolverChoice, allocate_and_charge, baselines, validate};

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn cfg(bidders: usize, nodes: usize, homogeneous: bool) -> GenConfig {
    GenConfig {
        bidders,
        nodes,
        max_replicas: 20,
        homogeneous,
        tenants: 20,
    }
}

/// Every other bid asks for 1500m / 0.5 GiB instead of 500m / 1 GiB.
fn two_shape(bidders: usize, nodes: usize, seed: u64) -> mom::auction::Instance {
    let input = random_instance(cfg(bidders, nodes, true), seed);
    let mut bids = input.bids.clone();
    for b in bids.iter_mut().skip(1).step_by(2) {
        b.request = mom::auction::ResourceRequest {
            cpu_millis: 1500,
            memory_bytes: 1 << 29,
        };
    }
    let nodes: Vec<_> = if bidders <= 20 {
        input
            .nodes
            .iter()
            .map(|x| mom::auction::NodeCapacity {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                ..x.clone()
            })
            .collect()
    } else {
        input.nodes.clone()
    };
    validate(&bids, &nodes).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mip_max: usize = args
        .iter()
        .position(|a| a == "--mip-max-bidders")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(80);

    println!("## Fast path (homogeneous requests): winner determination + all Clarke payments, median ms");
    println!("| bidders | nodes | listed units | winners | time ms |");
    println!("|---:|---:|---:|---:|---:|");
    for &(b, n) in &[
        (100, 50),
        (1_000, 50),
        (10_000, 50),
        (100_000, 50),
        (1_000, 10),
        (1_000, 200),
        (1_000, 1_000),
        (10_000, 1_000),
    ] {
        let input = random_instance(cfg(b, n, true), 1);
        let inst = validate(&input.bids, &input.nodes).unwrap();
        let units: usize = inst.bids.iter().map(|x| x.marginal_values.len()).sum();
        let (a, _, _) = allocate_and_charge(&inst, SolverChoice::Fast).unwrap();
        let winners = (0..inst.bids.len()).filter(|&i| a.replicas(i) > 0).count();
        let ms = median_ms(|| drop(allocate_and_charge(&inst, SolverChoice::Fast).unwrap()), 7);
        println!("| {b} | {n} | {units} | {winners} | {ms:.3} |");
    }

    println!();
    println!("## Two-class path (two request shapes: 500m/1GiB and 1500m/0.5GiB, alternating), median ms");
    println!("| bidders | nodes | winners | time ms | welfare == MIP |");
    println!("|---:|---:|---:|---:|---|");
    for &(b, n) in &[
        (10, 3),
        (20, 5),
        (100, 50),
        (1_000, 50),
        (10_000, 50),
        (1_000, 10),
        (1_000, 200),
    ] {
        let inst = two_shape(b, n, 1);
        let (a, _, used) = allocate_and_charge(&inst, SolverChoice::Fast).unwrap();
        assert_eq!(used, mom::auction::SolverUsed::FastTwoClass);
        let winners = (0..inst.bids.len()).filter(|&i| a.replicas(i) > 0).count();
        let ms = median_ms(|| drop(allocate_and_charge(&inst, SolverChoice::Fast).unwrap()), 5);
        let agree = if b <= 20 {
            let (m, _, _) = allocate_and_charge(&inst, SolverChoice::Mip).unwrap();
            format!("{}", (m.welfare(&inst.bids) - a.welfare(&inst.bids)).abs() < 1e-6)
        } else {
            "not run".to_string()
        };
        println!("| {b} | {n} | {winners} | {ms:.3} | {agree} |");
    }

    println!();
    println!("## MIP reference (microlp): winner determination + all Clarke payments (one solve per winner), ms");
    println!("| requests | bidders | nodes | winners | time ms | welfare == fast |");
    println!("|---|---:|---:|---:|---:|---|");
    for homogeneous in [true, false] {
        let sizes: &[(usize, usize)] = if homogeneous {
            &[(5, 2), (10, 3), (20, 5), (40, 5), (40, 10), (80, 10)]
        } else {
            &[(4, 2), (6, 2), (8, 2), (6, 3), (8, 3), (10, 3), (12, 3), (10, 4)]
        };
        let mut too_slow = false;
        for &(b, n) in sizes {
            // Stop a series once one size took over 10 s: the next would take much longer.
            if b > mip_max || too_slow {
                continue;
            }
            let mut c = cfg(b, n, homogeneous);
            c.max_replicas = 6;
            let input = random_instance(c, 1);
            // Small nodes so the instance is contested.
            let nodes: Vec<_> = input
                .nodes
                .iter()
                .map(|x| mom::auction::NodeCapacity {
                    cpu_millis: 4000,
                    memory_bytes: 8 << 30,
                    ..x.clone()
                })
                .collect();
            let inst = validate(&input.bids, &nodes).unwrap();
            let s = Instant::now();
            let (a, _, _) = allocate_and_charge(&inst, SolverChoice::Mip).unwrap();
            let ms = s.elapsed().as_secs_f64() * 1e3;
            too_slow = ms > 10_000.0;
            let winners = (0..inst.bids.len()).filter(|&i| a.replicas(i) > 0).count();
            let agree = if homogeneous {
                let (f, _, _) = allocate_and_charge(&inst, SolverChoice::Fast).unwrap();
                format!("{}", (f.welfare(&inst.bids) - a.welfare(&inst.bids)).abs() < 1e-6)
            } else {
                "n/a".to_string()
            };
            let kind = if homogeneous { "same" } else { "mixed" };
            println!("| {kind} | {b} | {n} | {winners} | {ms:.1} | {agree} |");
        }
    }

    println!();
    println!("## Welfare: VCG vs value-blind baselines on the same instances (declared values)");
    println!("| requests | bidders | nodes | VCG | proportional share | DRF | PS/VCG | DRF/VCG |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<(bool, usize, usize, u64)> = Vec::new();
    for seed in 1..=3 {
        rows.push((true, 100, 50, seed));
        rows.push((true, 1_000, 50, seed));
    }
    for seed in 1..=3 {
        rows.push((false, 8.min(mip_max), 2, seed));
    }
    for seed in 1..=3 {
        for (b, n) in [(100, 50), (1_000, 50)] {
            let inst = two_shape(b, n, seed);
            let (a, _, _) = allocate_and_charge(&inst, SolverChoice::Auto).unwrap();
            let w = a.welfare(&inst.bids);
            let ps = baselines::proportional_share(&inst).welfare(&inst.bids);
            let drf = baselines::drf(&inst).welfare(&inst.bids);
            println!(
                "| two shapes | {b} | {n} | {w:.1} | {ps:.1} | {drf:.1} | {:.3} | {:.3} |",
                ps / w,
                drf / w
            );
        }
    }
    for (homogeneous, b, n, seed) in rows {
        let mut c = cfg(b, n, homogeneous);
        if !homogeneous {
            c.max_replicas = 6;
        }
        let input = random_instance(c, seed);
        let nodes: Vec<_> = if homogeneous {
            input.nodes.clone()
        } else {
            input
                .nodes
                .iter()
                .map(|x| mom::auction::NodeCapacity {
                    cpu_millis: 4000,
                    memory_bytes: 8 << 30,
                    ..x.clone()
                })
                .collect()
        };
        let inst = validate(&input.bids, &nodes).unwrap();
        let (a, _, _) = allocate_and_charge(&inst, SolverChoice::Auto).unwrap();
        let w = a.welfare(&inst.bids);
        let ps = baselines::proportional_share(&inst).welfare(&inst.bids);
        let drf = baselines::drf(&inst).welfare(&inst.bids);
        let kind = if homogeneous { "same" } else { "mixed" };
        println!(
            "| {kind} | {b} | {n} | {w:.1} | {ps:.1} | {drf:.1} | {:.3} | {:.3} |",
            ps / w,
            drf / w
        );
    }
}
