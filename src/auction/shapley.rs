//! Shapley values: attribute the cost of a node pool to the tenants it serves.
//!
//! Input: players with additive demands dᵢ = (cpu, memory) and a cost c(D) of serving total
//! demand D. Output: one cost share per player, φᵢ = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! ·
//! (c(S ∪ {i}) − c(S)), with Σᵢ φᵢ = c(N) (efficiency).
//!
//! - **Exact** for n ≤ [`EXACT_MAX_PLAYERS`] (2ⁿ coalitions).
//! - **Monte Carlo** beyond: the average marginal cost over `m` random permutations drawn with
//!   `ChaCha8Rng::seed_from_u64(seed)`. For a monotone cost every marginal lies in [0, R] with
//!   R = c(N), so by Hoeffding's inequality and a union bound over the n players
//!   P(∃i: |φ̂ᵢ − φᵢ| ≥ ε) ≤ 2n·exp(−2mε²/R²), i.e. with confidence 1 − δ every share is within
//!   ε = R·√(ln(2n/δ) / (2m)). We report ε for δ = 0.05.
//!
//! The cost game of an auction ([`pool_cost`]): the pool grows in a fixed order (nodes by
//! ascending cost, then name, like a cluster autoscaler's priority list) and a coalition pays
//! for the shortest prefix whose summed cpu and memory cover its summed requests (a fluid
//! model: it ignores fragmentation across nodes). This is monotone in the coalition.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Assignment, Instance, ShapleyConfig, ShapleyMethod, TenantCost};

/// Largest number of players computed exactly.
pub const EXACT_MAX_PLAYERS: usize = 12;

/// Confidence level of the reported Monte Carlo error bound (1 − δ).
pub const CONFIDENCE: f64 = 0.95;

/// A demand: (cpu millicores, memory bytes).
pub type Demand = [u128; 2];

fn add(a: Demand, b: Demand) -> Demand {
    [a[0] + b[0], a[1] + b[1]]
}

/// Exact Shapley values of the demand game `cost`; `None` when there are more than
/// [`EXACT_MAX_PLAYERS`] players.
pub fn exact(demands: &[Demand], cost: impl Fn(Demand) -> f64) -> Option<Vec<f64>> {
    let n = demands.len();
    if n > EXACT_MAX_PLAYERS {
        return None;
    }
    let masks = 1usize << n;
    let mut c = vec![0.0; masks];
    let mut d = vec![[0u128; 2]; masks];
    for mask in 1..masks {
        let low = mask.trailing_zeros() as usize;
        d[mask] = add(d[mask & (mask - 1)], demands[low]);
        c[mask] = cost(d[mask]);
    }
    // weight[s] = s!(n−s−1)!/n!
    let fact: Vec<f64> = (0..=n)
        .scan(1.0, |f, k| {
            if k > 0 {
                *f *= k as f64;
            }
            Some(*f)
        })
        .collect();
    let weight: Vec<f64> = (0..n).map(|s| fact[s] * fact[n - s - 1] / fact[n]).collect();
    let mut phi = vec![0.0; n];
    for (i, p) in phi.iter_mut().enumerate() {
        let bit = 1usize << i;
        for mask in 0..masks {
            if mask & bit == 0 {
                *p += weight[mask.count_ones() as usize] * (c[mask | bit] - c[mask]);
            }
        }
    }
    Some(phi)
}

/// Hoeffding error bound ε = R·√(ln(2n/δ) / (2m)) for `m` permutations, `n` players, range R.
pub fn hoeffding_error_bound(range: f64, players: usize, samples: u32, confidence: f64) -> f64 {
    if players == 0 || samples == 0 {
        return range;
    }
    let delta = 1.0 - confidence;
    range * ((2.0 * players as f64 / delta).ln() / (2.0 * samples as f64)).sqrt()
}

/// Monte Carlo permutation-sampling Shapley values (deterministic for a given seed).
pub fn monte_carlo(demands: &[Demand], cost: impl Fn(Demand) -> f64, samples: u32, seed: u64) -> Vec<f64> {
    let n = demands.len();
    let mut phi = vec![0.0; n];
    if samples == 0 {
        return phi;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..samples {
        order.shuffle(&mut rng);
        let mut d = [0u128; 2];
        let mut before = cost(d);
        for &i in &order {
            d = add(d, demands[i]);
            let after = cost(d);
            phi[i] += after - before;
            before = after;
        }
    }
    phi.iter_mut().for_each(|p| *p /= samples as f64);
    phi
}

/// The node-pool cost function: nodes in order (cost asc, name asc); c(D) = total cost of the
/// shortest prefix with Σcpu ≥ D_cpu and Σmemory ≥ D_mem (the whole pool if none covers D).
pub struct PoolCost {
    cum_cpu: Vec<u128>,
    cum_mem: Vec<u128>,
    cum_cost: Vec<f64>,
}

impl PoolCost {
    pub fn new(inst: &Instance) -> Self {
        let mut nodes: Vec<_> = inst.nodes.iter().collect();
        nodes.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(a.node.cmp(&b.node)));
        let mut s = Self {
            cum_cpu: vec![0],
            cum_mem: vec![0],
            cum_cost: vec![0.0],
        };
        for nd in nodes {
            s.cum_cpu.push(s.cum_cpu[s.cum_cpu.len() - 1] + nd.cpu_millis as u128);
            s.cum_mem.push(s.cum_mem[s.cum_mem.len() - 1] + nd.memory_bytes as u128);
            s.cum_cost.push(s.cum_cost[s.cum_cost.len() - 1] + nd.cost);
        }
        s
    }

    /// c(D), by binary search on the prefix sums.
    pub fn cost(&self, d: Demand) -> f64 {
        let k_cpu = self.cum_cpu.partition_point(|&c| c < d[0]);
        let k_mem = self.cum_mem.partition_point(|&c| c < d[1]);
        let k = k_cpu.max(k_mem).min(self.cum_cost.len() - 1);
        self.cum_cost[k]
    }
}

/// Tenants' Shapley shares of the pool cost of serving what they won.
pub struct Attribution {
    pub pool_cost: f64,
    pub tenant_costs: Vec<TenantCost>,
    pub method: ShapleyMethod,
}

/// Pool cost of the allocation and its Shapley split over tenants (players sorted by name).
pub fn attribute_pool_cost(inst: &Instance, assignment: &Assignment, cfg: ShapleyConfig) -> Attribution {
    let mut tenants: std::collections::BTreeMap<&str, Demand> = std::collections::BTreeMap::new();
    for (i, b) in inst.bids.iter().enumerate() {
        let k = assignment.replicas(i) as u128;
        let e = tenants.entry(b.tenant.as_str()).or_insert([0, 0]);
        *e = add(
            *e,
            [b.request.cpu_millis as u128 * k, b.request.memory_bytes as u128 * k],
        );
    }
    let names: Vec<&str> = tenants.keys().copied().collect();
    let demands: Vec<Demand> = tenants.values().copied().collect();
    let pool = PoolCost::new(inst);
    let total = demands.iter().fold([0u128; 2], |acc, d| add(acc, *d));
    let pool_cost = pool.cost(total);
    let (phi, method) = match exact(&demands, |d| pool.cost(d)) {
        Some(phi) => (phi, ShapleyMethod::Exact),
        None => (
            monte_carlo(&demands, |d| pool.cost(d), cfg.samples, cfg.seed),
            ShapleyMethod::MonteCarlo {
                samples: cfg.samples,
                seed: cfg.seed,
                error_bound: hoeffding_error_bound(pool_cost, demands.len(), cfg.samples, CONFIDENCE),
                confidence: CONFIDENCE,
            },
        ),
    };
    let tenant_costs = names
        .iter()
        .zip(phi)
        .map(|(t, shapley_cost)| TenantCost {
            tenant: t.to_string(),
            shapley_cost,
        })
        .collect();
    Attribution {
        pool_cost,
        tenant_costs,
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airport_game_splits_each_runway_segment_among_its_users() {
        // Airport game: c(S) = longest runway any member of S needs (lengths 1, 3, 6). Each player's
        // demand is a distinct bit so the cost function can tell which players are present.
        let lengths = [1.0, 3.0, 6.0];
        let demands: Vec<Demand> = (0..3).map(|i| [1u128 << i, 0]).collect();
        let cost = |d: Demand| {
            (0..3)
                .filter(|i| d[0] >> i & 1 == 1)
                .map(|i| lengths[i])
                .fold(0.0, f64::max)
        };
        let phi = exact(&demands, cost).unwrap();
        // Segment [0,1] shared by 3, [1,3] by 2, [3,6] by 1.
        let want = [1.0 / 3.0, 1.0 / 3.0 + 1.0, 1.0 / 3.0 + 1.0 + 3.0];
        for (p, w) in phi.iter().zip(want) {
            assert!((p - w).abs() < 1e-12, "{phi:?}");
        }
    }

    #[test]
    fn shares_sum_to_the_grand_coalition_cost_and_symmetric_players_pay_alike() {
        let cost = |d: Demand| ((d[0] as f64) / 10.0).ceil();
        let demands = vec![[4, 0], [4, 0], [7, 0]];
        let phi = exact(&demands, cost).unwrap();
        assert!((phi.iter().sum::<f64>() - cost([15, 0])).abs() < 1e-12);
        assert!((phi[0] - phi[1]).abs() < 1e-12);
    }

    #[test]
    fn monte_carlo_is_within_its_hoeffding_bound_of_the_exact_values() {
        let cost = |d: Demand| ((d[0] as f64) / 10.0).ceil() + ((d[1] as f64) / 7.0).ceil();
        let demands: Vec<Demand> = (0..10).map(|i| [(i * 3 % 11) as u128, (i * 5 % 7) as u128]).collect();
        let ex = exact(&demands, cost).unwrap();
        let samples = 4000;
        let mc = monte_carlo(&demands, cost, samples, 7);
        let total: Demand = demands.iter().fold([0, 0], |a, d| add(a, *d));
        let eps = hoeffding_error_bound(cost(total), demands.len(), samples, CONFIDENCE);
        for (e, m) in ex.iter().zip(&mc) {
            assert!((e - m).abs() <= eps, "exact {e} vs sampled {m}, bound {eps}");
        }
        assert!((mc.iter().sum::<f64>() - cost(total)).abs() < 1e-9);
    }

    #[test]
    fn pool_cost_pays_for_the_cheapest_prefix_that_covers_both_resources() {
        use crate::auction::{Bid, NodeCapacity, ResourceRequest, validate};
        let nodes = [
            NodeCapacity {
                node: "big".into(),
                cpu_millis: 8000,
                memory_bytes: 32,
                cost: 5.0,
            },
            NodeCapacity {
                node: "small-b".into(),
                cpu_millis: 2000,
                memory_bytes: 4,
                cost: 1.0,
            },
            NodeCapacity {
                node: "small-a".into(),
                cpu_millis: 2000,
                memory_bytes: 8,
                cost: 1.0,
            },
        ];
        let bid = Bid {
            agent: "a".into(),
            tenant: "t".into(),
            marginal_values: vec![1.0],
            request: ResourceRequest {
                cpu_millis: 1,
                memory_bytes: 1,
            },
        };
        let pool = PoolCost::new(&validate(&[bid], &nodes).unwrap());
        // Order: small-a (1), small-b (1), big (5).
        assert_eq!(pool.cost([0, 0]), 0.0);
        assert_eq!(pool.cost([2000, 8]), 1.0);
        assert_eq!(pool.cost([2000, 9]), 2.0);
        assert_eq!(pool.cost([4001, 1]), 7.0);
        // Beyond the pool: the whole pool.
        assert_eq!(pool.cost([100_000, 1]), 7.0);
    }

    #[test]
    fn monte_carlo_is_reproducible_for_a_seed() {
        let cost = |d: Demand| (d[0] as f64).sqrt();
        let demands: Vec<Demand> = (1..20).map(|i| [i as u128, 0]).collect();
        assert_eq!(monte_carlo(&demands, cost, 50, 3), monte_carlo(&demands, cost, 50, 3));
        assert!(exact(&demands, cost).is_none());
    }
}
