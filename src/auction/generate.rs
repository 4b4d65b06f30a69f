//! Seeded synthetic auction instances for benchmarks, reports and tests.
//!
//! Input: a [`GenConfig`] and a seed. Output: an [`AuctionInput`]. Nodes are drawn from common
//! shapes (4/8/16 cores × 16/32/64 GiB); each bid lists 1..=`max_replicas` marginal values
//! vₜ = base·decayᵗ with base ~ U[1, 100] and decay ~ U[0.5, 1]; requests are either the same
//! for everyone (500m / 1 GiB, the fast path's condition) or drawn from
//! {250m, 500m, 1, 2 cores} × {0.5, 1, 2, 4 GiB}. Same config and seed → same instance.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AuctionInput, Bid, NodeCapacity, ResourceRequest, ShapleyConfig, SolverChoice};

const GIB: u64 = 1 << 30;

/// Shape of a synthetic instance.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    pub bidders: usize,
    pub nodes: usize,
    pub max_replicas: usize,
    /// Every replica requests 500m / 1 GiB.
    pub homogeneous: bool,
    /// Bidders are spread round-robin over this many tenants (at least 1).
    pub tenants: usize,
}

/// A reproducible random instance.
pub fn random_instance(cfg: GenConfig, seed: u64) -> AuctionInput {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes = (0..cfg.nodes)
        .map(|j| {
            let cores = [4u64, 8, 16][rng.random_range(0..3)];
            let gib = [16u64, 32, 64][rng.random_range(0..3)];
            NodeCapacity {
                node: format!("node-{j:04}"),
                cpu_millis: cores * 1000,
                memory_bytes: gib * GIB,
                cost: cores as f64 * 0.03 + gib as f64 * 0.004,
            }
        })
        .collect();
    let bids = (0..cfg.bidders)
        .map(|i| {
            let k = rng.random_range(1..=cfg.max_replicas.max(1));
            let base: f64 = rng.random_range(1.0..100.0);
            let decay: f64 = rng.random_range(0.5..1.0);
            let marginal_values = (0..k).map(|t| base * decay.powi(t as i32)).collect();
            let request = if cfg.homogeneous {
                ResourceRequest {
                    cpu_millis: 500,
                    memory_bytes: GIB,
                }
            } else {
                ResourceRequest {
                    cpu_millis: [250, 500, 1000, 2000][rng.random_range(0..4)],
                    memory_bytes: [GIB / 2, GIB, 2 * GIB, 4 * GIB][rng.random_range(0..4)],
                }
            };
            Bid {
                agent: format!("agent-{i:05}"),
                tenant: format!("tenant-{:03}", i % cfg.tenants.max(1)),
                marginal_values,
                request,
            }
        })
        .collect();
    AuctionInput {
        bids,
        nodes,
        solver: SolverChoice::Auto,
        shapley: ShapleyConfig::default(),
        mip_max_integer_variables: None,
        fill_unvalued: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::validate;

    #[test]
    fn generated_instances_are_valid_and_reproducible() {
        let cfg = GenConfig {
            bidders: 30,
            nodes: 5,
            max_replicas: 6,
            homogeneous: false,
            tenants: 4,
        };
        let a = random_instance(cfg, 11);
        assert_eq!(a, random_instance(cfg, 11));
        assert_ne!(a, random_instance(cfg, 12));
        validate(&a.bids, &a.nodes).unwrap();
    }
}
