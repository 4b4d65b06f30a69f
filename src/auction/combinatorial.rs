//! A small general combinatorial VCG over bundles: the reference for textbook vectors.
//!
//! Input: distinct items (one unit each) and XOR bids — each bidder lists bundles (sets of items)
//! with a value and wants at most one of them (free disposal: holding more items than a bundle
//! is worth the best bundle contained). Output: the welfare-maximising item assignment found by
//! enumerating all (n+1)^m ways to hand out m items to n bidders or to nobody, and Clarke pivot
//! payments pᵢ = W*₋ᵢ − (W* − vᵢ(a*)). Exponential: for tests with a handful of items only.
//! Among optimal assignments the first in enumeration order is kept.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::AuctionError;

/// Refuse more candidate assignments than this.
pub const MAX_ASSIGNMENTS: u64 = 1_000_000;

/// One bidder's XOR bid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleBid {
    pub bidder: String,
    /// (bundle of item names, value of getting that bundle).
    pub bundles: Vec<(Vec<String>, f64)>,
}

/// The result of a combinatorial auction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleOutcome {
    /// Items each bidder receives (bid order).
    pub items: Vec<BTreeSet<String>>,
    /// Declared value each bidder gets from its items.
    pub values: Vec<f64>,
    pub payments: Vec<f64>,
    pub welfare: f64,
    pub revenue: f64,
}

fn value_of(bid: &BundleBid, held: &BTreeSet<String>) -> f64 {
    bid.bundles
        .iter()
        .filter(|(bundle, _)| bundle.iter().all(|it| held.contains(it)))
        .map(|(_, v)| *v)
        .fold(0.0, f64::max)
}

/// owner[k] = Some(i): item k goes to bidder i. Returns (best owners, welfare).
fn best_assignment(items: &[String], bids: &[BundleBid], skip: Option<usize>) -> (Vec<Option<usize>>, f64) {
    let n = bids.len();
    let m = items.len();
    let mut owner = vec![0usize; m]; // 0 = nobody, i + 1 = bidder i
    let mut best = (vec![None; m], 0.0);
    loop {
        if owner.iter().all(|&o| o == 0 || Some(o - 1) != skip) {
            let w: f64 = (0..n)
                .map(|i| {
                    let held = (0..m)
                        .filter(|&k| owner[k] == i + 1)
                        .map(|k| items[k].clone())
                        .collect();
                    value_of(&bids[i], &held)
                })
                .sum();
            if w > best.1 {
                best = (owner.iter().map(|&o| o.checked_sub(1)).collect(), w);
            }
        }
        let mut k = 0;
        loop {
            if k == m {
                return best;
            }
            owner[k] += 1;
            if owner[k] <= n {
                break;
            }
            owner[k] = 0;
            k += 1;
        }
    }
}

/// Exhaustive combinatorial VCG.
pub fn vcg(items: &[String], bids: &[BundleBid]) -> Result<BundleOutcome, AuctionError> {
    let mut problems = Vec::new();
    let known: BTreeSet<&String> = items.iter().collect();
    if known.len() != items.len() {
        problems.push("items: duplicate item names".to_string());
    }
    for (i, b) in bids.iter().enumerate() {
        for (k, (bundle, v)) in b.bundles.iter().enumerate() {
            if !v.is_finite() || *v < 0.0 {
                problems.push(format!("bids[{i}].bundles[{k}].value: {v} must be finite and >= 0"));
            }
            if let Some(unknown) = bundle.iter().find(|it| !known.contains(it)) {
                problems.push(format!("bids[{i}].bundles[{k}]: unknown item {unknown:?}"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(AuctionError::Invalid(problems));
    }
    let total = (bids.len() as u64 + 1)
        .checked_pow(items.len() as u32)
        .unwrap_or(u64::MAX);
    if total > MAX_ASSIGNMENTS {
        return Err(AuctionError::TooLarge(format!(
            "{total} assignments, limit {MAX_ASSIGNMENTS}"
        )));
    }
    let (owners, welfare) = best_assignment(items, bids, None);
    let held: Vec<BTreeSet<String>> = (0..bids.len())
        .map(|i| {
            (0..items.len())
                .filter(|&k| owners[k] == Some(i))
                .map(|k| items[k].clone())
                .collect()
        })
        .collect();
    let values: Vec<f64> = bids.iter().zip(&held).map(|(b, h)| value_of(b, h)).collect();
    let payments: Vec<f64> = (0..bids.len())
        .map(|i| {
            if values[i] == 0.0 {
                return 0.0;
            }
            let (_, without) = best_assignment(items, bids, Some(i));
            (without - (welfare - values[i])).max(0.0)
        })
        .collect();
    let revenue = payments.iter().fold(0.0, |acc, p| acc + p);
    Ok(BundleOutcome {
        items: held,
        values,
        payments,
        welfare,
        revenue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(name: &str, bundle: &[&str], value: f64) -> BundleBid {
        BundleBid {
            bidder: name.into(),
            bundles: vec![(bundle.iter().map(|s| s.to_string()).collect(), value)],
        }
    }

    fn items() -> Vec<String> {
        vec!["A".into(), "B".into()]
    }

    #[test]
    fn known_vector_with_three_bidders_gives_zero_revenue() {
        let out = vcg(
            &items(),
            &[bid("1", &["A", "B"], 2.0), bid("2", &["A"], 2.0), bid("3", &["B"], 2.0)],
        )
        .unwrap();
        assert_eq!(out.welfare, 4.0);
        assert_eq!(out.payments, vec![0.0, 0.0, 0.0]);
        assert_eq!(out.revenue, 0.0);
    }

    #[test]
    fn known_vector_without_bidder_three_gives_revenue_two() {
        let out = vcg(&items(), &[bid("1", &["A", "B"], 2.0), bid("2", &["A"], 2.0)]).unwrap();
        assert_eq!(out.welfare, 2.0);
        assert_eq!(out.revenue, 2.0);
    }

    #[test]
    fn single_item_is_a_second_price_auction() {
        let out = vcg(
            &["A".to_string()],
            &[bid("x", &["A"], 3.0), bid("y", &["A"], 7.0), bid("z", &["A"], 5.0)],
        )
        .unwrap();
        assert_eq!(out.payments, vec![0.0, 5.0, 0.0]);
        assert!(out.items[1].contains("A"));
    }

    #[test]
    fn a_bundle_naming_an_unknown_item_is_rejected_with_its_position() {
        let err = vcg(&items(), &[bid("1", &["C"], 1.0)]).unwrap_err();
        assert!(
            err.to_string().contains("bids[0].bundles[0]: unknown item \"C\""),
            "{err}"
        );
    }
}
