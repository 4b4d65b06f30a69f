//! Transition probabilities between health states, estimated from observed state sequences with
//! a Dirichlet (Laplace) prior, and the check that a matrix is a usable stochastic matrix.
//!
//! Input: sequences of [`HealthState`]s (one per observation tick) and/or counts persisted by a
//! previous leader ([`TransitionCounts`], serde). Output: a row-stochastic
//! [`TransitionMatrix`], or the reason the evidence or a given matrix is not usable.

use serde::{Deserialize, Serialize};

use super::health::HealthState;

const N: usize = HealthState::COUNT;

/// A 4×4 matrix over [`HealthState`] indices: `p[i][j]` = P(next = j | now = i).
pub type TransitionMatrix = [[f64; N]; N];

/// Largest deviation of a row sum from 1 accepted by [`check_stochastic`].
pub const ROW_SUM_TOLERANCE: f64 = 1e-6;

/// Observed transition counts `n[i][j]` (times state `i` was followed by `j`). This is what a
/// leader persists: counts add up, so a new leader restores them and keeps counting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionCounts {
    pub counts: [[u64; N]; N],
}

impl TransitionCounts {
    /// Counts of one sequence of consecutive observations.
    pub fn from_sequence(sequence: &[HealthState]) -> Self {
        let mut counts = TransitionCounts::default();
        counts.observe_sequence(sequence);
        counts
    }

    /// Adds every consecutive pair of `sequence` (saturating: counts never wrap).
    pub fn observe_sequence(&mut self, sequence: &[HealthState]) {
        for pair in sequence.windows(2) {
            let cell = &mut self.counts[pair[0].index()][pair[1].index()];
            *cell = cell.saturating_add(1);
        }
    }

    /// Adds another set of counts (e.g. restored ones to fresh ones).
    pub fn merge(&mut self, other: &TransitionCounts) {
        for (row, other_row) in self.counts.iter_mut().zip(other.counts.iter()) {
            for (cell, add) in row.iter_mut().zip(other_row.iter()) {
                *cell = cell.saturating_add(*add);
            }
        }
    }

    /// Every observed transition.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().fold(0u64, |sum, &n| sum.saturating_add(n))
    }

    /// The posterior mean under a symmetric Dirichlet(α) prior on each row:
    ///
    /// ```text
    /// p[i][j] = (n[i][j] + α) / (Σ_k n[i][k] + 4α)
    /// ```
    ///
    /// α = 1 is Laplace's rule of succession; a row never observed is uniform. Every row sums to
    /// 1 (up to rounding) whenever α > 0 and finite; callers check α ([`super::FailoverMdpError`]).
    pub fn posterior_mean(&self, alpha: f64) -> TransitionMatrix {
        let mut p = [[0.0; N]; N];
        for (i, row) in self.counts.iter().enumerate() {
            // u64 → f64 may round above 2^53 observations; irrelevant at these magnitudes.
            let total: f64 = row.iter().map(|&n| n as f64).sum::<f64>() + N as f64 * alpha;
            for (j, &n) in row.iter().enumerate() {
                p[i][j] = (n as f64 + alpha) / total;
            }
        }
        p
    }
}

/// Why a matrix cannot drive the decision process, or `Ok` when every entry is finite and in
/// [0, 1] and every row sums to 1 within [`ROW_SUM_TOLERANCE`].
pub fn check_stochastic(p: &TransitionMatrix) -> Result<(), String> {
    for (i, row) in p.iter().enumerate() {
        let from = HealthState::ALL[i].as_str();
        for (j, &x) in row.iter().enumerate() {
            if !x.is_finite() || !(0.0..=1.0).contains(&x) {
                let to = HealthState::ALL[j].as_str();
                return Err(format!("transition {from}→{to} is {x}, not a probability"));
            }
        }
        let sum: f64 = row.iter().sum();
        if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
            return Err(format!("transition row `{from}` sums to {sum:.6}, not 1"));
        }
    }
    Ok(())
}

/// Row-wise mean of several stochastic matrices (a mixture of domains); `None` when empty.
pub fn mean(matrices: &[TransitionMatrix]) -> Option<TransitionMatrix> {
    if matrices.is_empty() {
        return None;
    }
    let mut out = [[0.0; N]; N];
    for m in matrices {
        for (out_row, row) in out.iter_mut().zip(m.iter()) {
            for (o, x) in out_row.iter_mut().zip(row.iter()) {
                *o += x;
            }
        }
    }
    let k = matrices.len() as f64;
    for x in out.iter_mut().flatten() {
        *x /= k;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::HealthState::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_of_a_sequence_are_its_consecutive_pairs() {
        let c = TransitionCounts::from_sequence(&[Healthy, Healthy, Degraded, Suspect, Failed, Failed]);
        assert_eq!(c.total(), 5);
        assert_eq!(c.counts[0][0], 1);
        assert_eq!(c.counts[0][1], 1);
        assert_eq!(c.counts[1][2], 1);
        assert_eq!(c.counts[2][3], 1);
        assert_eq!(c.counts[3][3], 1);
        assert_eq!(TransitionCounts::from_sequence(&[Healthy]).total(), 0);
        assert_eq!(TransitionCounts::from_sequence(&[]).total(), 0);
    }

    #[test]
    fn laplace_posterior_follows_the_formula_and_an_unseen_row_is_uniform() {
        let c = TransitionCounts::from_sequence(&[Healthy, Healthy, Healthy, Degraded]);
        let p = c.posterior_mean(1.0);
        // row healthy: n = [2, 1, 0, 0], total 3 + 4.
        assert!((p[0][0] - 3.0 / 7.0).abs() < 1e-12);
        assert!((p[0][1] - 2.0 / 7.0).abs() < 1e-12);
        assert!((p[0][3] - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(p[3], [0.25; 4]);
        assert!(check_stochastic(&p).is_ok());
    }

    #[test]
    fn counts_persisted_as_json_and_restored_keep_counting_like_one_long_history() {
        let first = TransitionCounts::from_sequence(&[Healthy, Degraded, Healthy]);
        let json = serde_json::to_string(&first).unwrap();
        let mut restored: TransitionCounts = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, first);
        restored.observe_sequence(&[Healthy, Suspect, Failed]);
        // The two sequences joined at their shared `healthy`.
        let whole = TransitionCounts::from_sequence(&[Healthy, Degraded, Healthy, Suspect, Failed]);
        assert_eq!(restored, whole);
        let mut merged = first.clone();
        merged.merge(&TransitionCounts::from_sequence(&[Healthy, Suspect, Failed]));
        assert_eq!(merged, whole);
    }

    #[test]
    fn degenerate_matrices_are_refused_with_a_reason_and_a_stochastic_one_is_accepted() {
        let good = [[0.25; 4]; 4];
        assert!(check_stochastic(&good).is_ok());
        let mut short = good;
        short[2] = [0.1, 0.1, 0.1, 0.1];
        assert!(check_stochastic(&short).unwrap_err().contains("`suspect` sums to"));
        let mut nan = good;
        nan[1][3] = f64::NAN;
        assert!(check_stochastic(&nan).unwrap_err().contains("degraded→failed is NaN"));
        let mut negative = good;
        negative[0] = [1.5, -0.5, 0.0, 0.0];
        assert!(check_stochastic(&negative).unwrap_err().contains("not a probability"));
        assert!(check_stochastic(&[[0.0; 4]; 4]).is_err());
    }

    #[test]
    fn the_mean_of_no_matrices_is_none_and_of_two_is_their_average() {
        assert!(mean(&[]).is_none());
        let a = [[1.0, 0.0, 0.0, 0.0]; 4];
        let b = [[0.0, 0.0, 0.0, 1.0]; 4];
        let m = mean(&[a, b]).unwrap();
        assert_eq!(m[2], [0.5, 0.0, 0.0, 0.5]);
    }

    proptest! {
        #[test]
        fn posterior_rows_are_stochastic_for_any_counts_and_positive_prior(
            counts in proptest::array::uniform4(proptest::array::uniform4(0u64..1_000_000)),
            alpha in 0.001f64..100.0,
        ) {
            let p = TransitionCounts { counts }.posterior_mean(alpha);
            prop_assert!(check_stochastic(&p).is_ok());
        }
    }
}
