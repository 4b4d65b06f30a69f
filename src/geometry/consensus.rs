//! Geometric consensus: voters at points of the ball vote on a proposal at a point; voter i
//! weighs `wᵢ ∝ exp(−s·d(voterᵢ, proposal))`, normalised in log space (log-sum-exp), so weights
//! never underflow to an all-zero vector even at d = 1000. Inputs: voter points, their choices,
//! the proposal point, curvature κ and sharpness s; output: the normalised weights, the weight
//! per choice and the winner.

use super::{GeometryError, poincare};

/// Normalised weights from distances: `wᵢ = exp(−s·dᵢ − logΣⱼ exp(−s·dⱼ))`.
///
/// Log-sum-exp is taken about the largest log-weight, so the nearest voter always has
/// weight ≥ 1/n and no weight is NaN. A negative or non-finite `sharpness` is an error; a
/// non-finite distance is an error too (distances from [`poincare::distance`] are finite).
pub fn weights_from_distances(distances: &[f64], sharpness: f64) -> Result<Vec<f64>, GeometryError> {
    if distances.is_empty() {
        return Err(GeometryError::EmptyInput("voters"));
    }
    if !sharpness.is_finite() || sharpness < 0.0 {
        return Err(GeometryError::InvalidParameter {
            name: "sharpness",
            value: sharpness,
            reason: "must be finite and ≥ 0",
        });
    }
    if let Some((i, d)) = distances.iter().enumerate().find(|(_, d)| !d.is_finite() || **d < 0.0) {
        return Err(GeometryError::InvalidWeight { index: i, value: *d });
    }
    let logs: Vec<f64> = distances.iter().map(|d| -sharpness * d).collect();
    let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logs.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    Ok(logs.iter().map(|l| (l - lse).exp()).collect())
}

/// Result of a weighted vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Normalised weight of each voter (sums to 1).
    pub weights: Vec<f64>,
    /// Total weight per choice index (`0..choices`).
    pub per_choice: Vec<f64>,
    /// The choice with the largest total weight (lowest index on an exact tie).
    pub winner: usize,
}

/// Tally a vote: voter i at `voters[i]` chose `choices[i]` (an index below `n_choices`); weights
/// are `exp(−sharpness·d(voterᵢ, proposal))` in the ball of curvature −κ, normalised.
pub fn tally(
    voters: &[Vec<f64>],
    choices: &[usize],
    n_choices: usize,
    proposal: &[f64],
    kappa: f64,
    sharpness: f64,
) -> Result<Tally, GeometryError> {
    if voters.len() != choices.len() {
        return Err(GeometryError::LengthMismatch {
            what: "choices",
            expected: voters.len(),
            found: choices.len(),
        });
    }
    if let Some((i, c)) = choices.iter().enumerate().find(|(_, c)| **c >= n_choices) {
        return Err(GeometryError::InvalidHierarchy {
            index: i,
            reason: format!("choice {c} is not below n_choices = {n_choices}"),
        });
    }
    let d: Vec<f64> = voters.iter().map(|v| poincare::distance(v, proposal, kappa)).collect();
    let weights = weights_from_distances(&d, sharpness)?;
    let mut per_choice = vec![0.0; n_choices];
    for (w, c) in weights.iter().zip(choices) {
        per_choice[*c] += w;
    }
    let mut winner = 0;
    for (i, w) in per_choice.iter().enumerate() {
        if *w > per_choice[winner] {
            winner = i;
        }
    }
    Ok(Tally {
        weights,
        per_choice,
        winner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters() -> (Vec<Vec<f64>>, Vec<usize>) {
        let v = vec![
            vec![0.1, 0.0],
            vec![-0.6, 0.2],
            vec![-0.5, -0.4],
            vec![0.0, 0.7],
            vec![0.3, -0.6],
        ];
        // Majority says 1; the voter nearest the proposal (index 0) says 0.
        (v, vec![0, 1, 1, 1, 0])
    }

    #[test]
    fn vanishing_sharpness_gives_plain_majority() {
        let (v, c) = voters();
        let t = tally(&v, &c, 2, &[0.12, 0.01], 1.0, 1e-12).unwrap();
        assert_eq!(t.winner, 1);
        assert!((t.per_choice[1] - 0.6).abs() < 1e-9);
    }

    #[test]
    fn large_sharpness_gives_the_nearest_voters_choice() {
        let (v, c) = voters();
        let t = tally(&v, &c, 2, &[0.12, 0.01], 1.0, 200.0).unwrap();
        assert_eq!(t.winner, 0);
        assert!(t.weights[0] > 0.999);
    }

    #[test]
    fn weights_are_invariant_under_a_mobius_isometry() {
        let (v, c) = voters();
        let p = vec![0.12, 0.01];
        let a = vec![-0.3, 0.45];
        let moved: Vec<Vec<f64>> = v.iter().map(|x| poincare::mobius_add(&a, x, 1.0)).collect();
        let t1 = tally(&v, &c, 2, &p, 1.0, 1.5).unwrap();
        let t2 = tally(&moved, &c, 2, &poincare::mobius_add(&a, &p, 1.0), 1.0, 1.5).unwrap();
        for (x, y) in t1.weights.iter().zip(&t2.weights) {
            assert!((x - y).abs() < 1e-9);
        }
    }

    #[test]
    fn weights_do_not_underflow_at_distance_one_thousand() {
        let w = weights_from_distances(&[1000.0, 1001.0, 1000.0], 1.0).unwrap();
        assert!(w.iter().all(|x| x.is_finite()));
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let e = (-1.0f64).exp();
        assert!((w[1] - e / (2.0 + e)).abs() < 1e-12);
    }

    #[test]
    fn bad_votes_are_rejected_with_a_clear_error() {
        let (v, _) = voters();
        assert!(tally(&v, &[0, 1], 2, &[0.0, 0.0], 1.0, 1.0).is_err());
        let err = tally(&v, &[0, 1, 5, 0, 0], 2, &[0.0, 0.0], 1.0, 1.0).unwrap_err();
        assert!(err.to_string().contains("choice 5"), "{err}");
        assert!(weights_from_distances(&[1.0], -1.0).is_err());
        assert!(weights_from_distances(&[], 1.0).is_err());
        assert!(weights_from_distances(&[f64::NAN], 1.0).is_err());
    }
}
