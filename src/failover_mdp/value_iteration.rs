//! A finite Markov decision process and its two solvers: value iteration (the one used) and
//! exact evaluation of a fixed policy by a linear solve (the reference for tests and receipts).
//!
//! Input: an [`Mdp`] (per state, the available choices in a fixed order, each with a reward and
//! a next-state distribution) and [`Settings`] (discount γ, tolerance, iteration cap).
//! Output: a [`Solution`] — values, the greedy policy, iterations and the last residual.
//! Deterministic: Jacobi sweeps in state order, ties broken by the first choice.

use serde::{Deserialize, Serialize};

use super::FailoverMdpError;

/// One action available in a state: its label (the caller's action id), the expected reward of
/// taking it, and the distribution of the next state (dense, one entry per state).
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub action: usize,
    pub reward: f64,
    pub next: Vec<f64>,
}

/// A finite MDP: `choices[s]` lists the actions available in state `s`, in tie-breaking order.
#[derive(Debug, Clone, PartialEq)]
pub struct Mdp {
    pub choices: Vec<Vec<Choice>>,
}

/// Solver settings, with the defaults used by `mom failover plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// γ ∈ [0, 1): weight of the next step's value. Default 0.9 (a horizon of about 10 ticks).
    pub discount: f64,
    /// ε > 0: the greedy policy's values are within ε of the optimum. Default 1e-6.
    pub tolerance: f64,
    /// Sweeps before giving up (a fallback, never a loop without end), 1 to 1,000,000.
    /// Default 10,000.
    pub max_iterations: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            discount: 0.9,
            tolerance: 1e-6,
            max_iterations: 10_000,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), FailoverMdpError> {
        if !(self.discount.is_finite() && (0.0..1.0).contains(&self.discount)) {
            return Err(FailoverMdpError::BadSetting {
                field: "solver.discount",
                value: self.discount,
            });
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(FailoverMdpError::BadSetting {
                field: "solver.tolerance",
                value: self.tolerance,
            });
        }
        if !(1..=MAX_ITERATIONS_LIMIT).contains(&self.max_iterations) {
            return Err(FailoverMdpError::BadSetting {
                field: "solver.max_iterations",
                value: f64::from(self.max_iterations),
            });
        }
        Ok(())
    }
}

/// Largest accepted `max_iterations`: with a tolerance below rounding the residual never
/// reaches the threshold, so the cap is what ends the loop; a million sweeps of the 16-state
/// failover model take about a second.
pub const MAX_ITERATIONS_LIMIT: u32 = 1_000_000;

/// What value iteration found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    /// V(s): the optimal expected discounted reward from each state (within the tolerance).
    pub values: Vec<f64>,
    /// The greedy policy: for each state, the index of the chosen entry of `choices[s]`.
    pub policy: Vec<usize>,
    /// Q(s, a) of every choice, in the order of `choices[s]`.
    pub q: Vec<Vec<f64>>,
    /// Sweeps done.
    pub iterations: u32,
    /// ‖V_k − V_{k−1}‖∞ of the last sweep.
    pub residual: f64,
    /// Whether the stopping rule was met before `max_iterations`.
    pub converged: bool,
}

/// Two Q-values closer than this are a tie, won by the earlier choice (so rounding noise never
/// flips the policy between equivalent actions).
pub const TIE_EPSILON: f64 = 1e-9;

impl Mdp {
    /// Number of states.
    pub fn states(&self) -> usize {
        self.choices.len()
    }

    /// Every state has a choice; rewards finite; each next-state vector has one finite entry in
    /// [0, 1] per state and sums to 1 within 1e-6.
    pub fn validate(&self) -> Result<(), FailoverMdpError> {
        let n = self.states();
        for (s, choices) in self.choices.iter().enumerate() {
            if choices.is_empty() {
                return Err(FailoverMdpError::InvalidMdp {
                    state: s,
                    reason: "no action available".into(),
                });
            }
            for c in choices {
                let bad = |reason: String| FailoverMdpError::InvalidMdp { state: s, reason };
                if !c.reward.is_finite() {
                    return Err(bad(format!("action {} has reward {}", c.action, c.reward)));
                }
                if c.next.len() != n {
                    return Err(bad(format!(
                        "action {} has {} next-state entries, not {n}",
                        c.action,
                        c.next.len()
                    )));
                }
                if c.next.iter().any(|p| !p.is_finite() || !(0.0..=1.0).contains(p)) {
                    return Err(bad(format!(
                        "action {} has a next-state entry outside [0, 1]",
                        c.action
                    )));
                }
                let sum: f64 = c.next.iter().sum();
                if (sum - 1.0).abs() > 1e-6 {
                    return Err(bad(format!(
                        "action {} next-state probabilities sum to {sum}",
                        c.action
                    )));
                }
            }
        }
        Ok(())
    }

    /// Q(s, c) = r(s, c) + γ Σ_s' P(s' | s, c) V(s').
    fn q_value(&self, choice: &Choice, discount: f64, values: &[f64]) -> f64 {
        let future: f64 = choice.next.iter().zip(values).map(|(p, v)| p * v).sum();
        choice.reward + discount * future
    }

    /// The greedy choice index and Q-values of state `s` against `values`: the first choice
    /// whose Q exceeds every earlier one by more than [`TIE_EPSILON`] wins.
    fn greedy(&self, s: usize, discount: f64, values: &[f64]) -> (usize, Vec<f64>) {
        let q: Vec<f64> = self.choices[s]
            .iter()
            .map(|c| self.q_value(c, discount, values))
            .collect();
        let mut best = 0;
        for (k, &qk) in q.iter().enumerate().skip(1) {
            if qk > q[best] + TIE_EPSILON {
                best = k;
            }
        }
        (best, q)
    }
}

/// Value iteration (Bellman 1957; Puterman 1994 §6.3), Jacobi sweeps from V₀ = 0:
///
/// ```text
/// V_{k+1}(s) = max_{a ∈ A(s)} [ r(s,a) + γ Σ_{s'} P(s'|s,a) V_k(s') ]
/// stop when δ_k = ‖V_{k+1} − V_k‖∞ < ε (1 − γ) / (2γ)     (any δ when γ = 0)
/// ```
///
/// At that point ‖V_{k+1} − V*‖∞ < ε/2 and the greedy policy of V_{k+1} is ε-optimal
/// (Puterman Thm 6.3.1), which is what `values` and `policy` are. The sweep count is bounded
/// by `max_iterations`; when reached, `converged` is false and the caller must not trust the
/// policy (the failover model falls back). Invalid input is an error, never a panic.
pub fn value_iteration(mdp: &Mdp, settings: &Settings) -> Result<Solution, FailoverMdpError> {
    settings.validate()?;
    mdp.validate()?;
    let n = mdp.states();
    let gamma = settings.discount;
    let threshold = if gamma > 0.0 {
        settings.tolerance * (1.0 - gamma) / (2.0 * gamma)
    } else {
        f64::INFINITY
    };
    let mut values = vec![0.0; n];
    let mut iterations = 0;
    let mut residual = f64::INFINITY;
    let mut converged = false;
    while iterations < settings.max_iterations {
        // The sweep needs only max_a Q(s, a) (no tie-breaking, no Q vector per state).
        let next: Vec<f64> = mdp
            .choices
            .iter()
            .map(|choices| {
                choices
                    .iter()
                    .map(|c| mdp.q_value(c, gamma, &values))
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        residual = next.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        values = next;
        iterations += 1;
        if residual < threshold {
            converged = true;
            break;
        }
    }
    let mut policy = Vec::with_capacity(n);
    let mut q = Vec::with_capacity(n);
    for s in 0..n {
        let (best, qs) = mdp.greedy(s, gamma, &values);
        policy.push(best);
        q.push(qs);
    }
    Ok(Solution {
        values,
        policy,
        q,
        iterations,
        residual,
        converged,
    })
}

/// The exact values of a fixed policy (`policy[s]` indexes `choices[s]`): the solution of
///
/// ```text
/// (I − γ P_π) V = r_π
/// ```
///
/// by Gaussian elimination with partial pivoting. For γ < 1 the matrix is strictly diagonally
/// dominant, hence invertible. Errors when the policy does not fit the MDP.
pub fn evaluate_policy(mdp: &Mdp, policy: &[usize], discount: f64) -> Result<Vec<f64>, FailoverMdpError> {
    mdp.validate()?;
    let n = mdp.states();
    if policy.len() != n {
        return Err(FailoverMdpError::InvalidMdp {
            state: policy.len().min(n),
            reason: format!("the policy has {} entries for {n} states", policy.len()),
        });
    }
    if !(discount.is_finite() && (0.0..1.0).contains(&discount)) {
        return Err(FailoverMdpError::BadSetting {
            field: "solver.discount",
            value: discount,
        });
    }
    // Augmented matrix [I − γP | r].
    let mut a = vec![vec![0.0; n + 1]; n];
    for (s, &k) in policy.iter().enumerate() {
        let choice = mdp.choices[s].get(k).ok_or_else(|| FailoverMdpError::InvalidMdp {
            state: s,
            reason: format!("the policy picks choice {k} of {}", mdp.choices[s].len()),
        })?;
        for (t, p) in choice.next.iter().enumerate() {
            a[s][t] = -discount * p;
        }
        a[s][s] += 1.0;
        a[s][n] = choice.reward;
    }
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-300 {
            return Err(FailoverMdpError::InvalidMdp {
                state: col,
                reason: "singular policy system".into(),
            });
        }
        let pivot_row = a[col].clone();
        for (row, target) in a.iter_mut().enumerate() {
            let factor = target[col] / p;
            if row != col && factor != 0.0 {
                for (x, y) in target[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= factor * y;
                }
            }
        }
    }
    Ok((0..n).map(|s| a[s][n] / a[s][s]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every deterministic policy of `mdp`, as choice indices (odometer order).
    fn all_policies(mdp: &Mdp) -> Vec<Vec<usize>> {
        let mut out = vec![vec![]];
        for choices in &mdp.choices {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    (0..choices.len()).map(move |k| {
                        let mut p = prefix.clone();
                        p.push(k);
                        p
                    })
                })
                .collect();
        }
        out
    }

    /// The best policy by exhaustive search, comparing exact values state by state: the optimal
    /// policy dominates every other one in every state, so the maximum of the sum is it.
    fn brute_force(mdp: &Mdp, discount: f64) -> (Vec<usize>, Vec<f64>) {
        let mut best: Option<(Vec<usize>, Vec<f64>)> = None;
        for policy in all_policies(mdp) {
            let v = evaluate_policy(mdp, &policy, discount).unwrap();
            let better = match &best {
                None => true,
                Some((_, bv)) => v.iter().sum::<f64>() > bv.iter().sum::<f64>() + 1e-12,
            };
            if better {
                best = Some((policy, v));
            }
        }
        best.unwrap()
    }

    fn two_state_example() -> Mdp {
        // State 0: action 0 stays (reward 1), action 1 goes to 1 (reward 0).
        // State 1: action 0 stays (reward 2).
        Mdp {
            choices: vec![
                vec![
                    Choice {
                        action: 0,
                        reward: 1.0,
                        next: vec![1.0, 0.0],
                    },
                    Choice {
                        action: 1,
                        reward: 0.0,
                        next: vec![0.0, 1.0],
                    },
                ],
                vec![Choice {
                    action: 0,
                    reward: 2.0,
                    next: vec![0.0, 1.0],
                }],
            ],
        }
    }

    #[test]
    fn a_hand_solved_example_has_the_values_computed_on_paper() {
        // V(1) = 2 / (1 − 0.9) = 20; moving from 0 is worth 0 + 0.9·20 = 18 > staying, 1/(0.1) = 10.
        let s = value_iteration(&two_state_example(), &Settings::default()).unwrap();
        assert!(s.converged);
        assert!((s.values[1] - 20.0).abs() < 1e-6, "{:?}", s.values);
        assert!((s.values[0] - 18.0).abs() < 1e-6, "{:?}", s.values);
        assert_eq!(s.policy, vec![1, 0]);
        let exact = evaluate_policy(&two_state_example(), &[0, 0], 0.9).unwrap();
        assert!((exact[0] - 10.0).abs() < 1e-9 && (exact[1] - 20.0).abs() < 1e-9);
    }

    #[test]
    fn ties_go_to_the_first_choice_in_order_and_a_clear_winner_still_wins() {
        let mut mdp = two_state_example();
        // A second way to move from 0, identical to the first but later in order.
        let mut twin = mdp.choices[0][1].clone();
        twin.action = 2;
        mdp.choices[0].push(twin);
        let s = value_iteration(&mdp, &Settings::default()).unwrap();
        assert_eq!(s.policy[0], 1, "{:?}", s.q);
        mdp.choices[0][2].reward = 0.01;
        let s = value_iteration(&mdp, &Settings::default()).unwrap();
        assert_eq!(s.policy[0], 2, "{:?}", s.q);
    }

    #[test]
    fn the_iteration_cap_ends_the_loop_unconverged_and_a_generous_cap_converges() {
        let settings = Settings {
            discount: 0.999,
            tolerance: 1e-9,
            max_iterations: 5,
        };
        let s = value_iteration(&two_state_example(), &settings).unwrap();
        assert_eq!(s.iterations, 5);
        assert!(!s.converged);
        let s = value_iteration(
            &two_state_example(),
            &Settings {
                max_iterations: 100_000,
                ..settings
            },
        )
        .unwrap();
        assert!(s.converged, "{} iterations", s.iterations);
    }

    #[test]
    fn invalid_mdps_and_settings_are_errors_and_a_valid_one_is_not() {
        let ok = two_state_example();
        assert!(ok.validate().is_ok());
        let mut nan = ok.clone();
        nan.choices[0][1].next = vec![f64::NAN, 1.0];
        assert!(value_iteration(&nan, &Settings::default()).is_err());
        let mut short = ok.clone();
        short.choices[1][0].next = vec![0.5, 0.4];
        assert!(value_iteration(&short, &Settings::default()).is_err());
        let mut empty = ok.clone();
        empty.choices[1].clear();
        assert!(value_iteration(&empty, &Settings::default()).is_err());
        for discount in [1.0, -0.1, f64::NAN] {
            let settings = Settings {
                discount,
                ..Settings::default()
            };
            assert!(value_iteration(&ok, &settings).is_err());
        }
        for max_iterations in [0, MAX_ITERATIONS_LIMIT + 1] {
            let settings = Settings {
                max_iterations,
                ..Settings::default()
            };
            assert!(value_iteration(&ok, &settings).is_err());
        }
        let at_limit = Settings {
            max_iterations: MAX_ITERATIONS_LIMIT,
            ..Settings::default()
        };
        assert!(value_iteration(&ok, &at_limit).is_ok());
        assert!(evaluate_policy(&ok, &[0], 0.9).is_err());
        assert!(evaluate_policy(&ok, &[0, 3], 0.9).is_err());
    }

    /// A random MDP: `states` states, 1–3 choices each, rewards in [−10, 10].
    fn arb_mdp() -> impl Strategy<Value = Mdp> {
        (2usize..=4).prop_flat_map(|n| {
            let choice = (-10.0f64..10.0, proptest::collection::vec(0.0f64..1.0, n), any::<bool>()).prop_map(
                move |(reward, weights, sparse)| {
                    // Normalise; `sparse` puts all mass on the largest entry (deterministic moves).
                    let mut next = weights.clone();
                    if sparse {
                        let top = (0..n).max_by(|&a, &b| weights[a].total_cmp(&weights[b])).unwrap_or(0);
                        next = vec![0.0; n];
                        next[top] = 1.0;
                    } else {
                        let sum: f64 = next.iter().sum::<f64>() + 1e-3;
                        next.iter_mut().for_each(|x| *x = (*x + 1e-3 / n as f64) / sum);
                    }
                    (reward, next)
                },
            );
            proptest::collection::vec(proptest::collection::vec(choice, 1..=3), n).prop_map(|states| Mdp {
                choices: states
                    .into_iter()
                    .map(|cs| {
                        cs.into_iter()
                            .enumerate()
                            .map(|(action, (reward, next))| Choice { action, reward, next })
                            .collect()
                    })
                    .collect(),
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn value_iteration_agrees_with_brute_force_policy_evaluation_and_its_greedy_policy_is_optimal(
            mdp in arb_mdp(),
            discount in 0.0f64..0.95,
        ) {
            let settings = Settings { discount, tolerance: 1e-7, max_iterations: 100_000 };
            let solution = value_iteration(&mdp, &settings).unwrap();
            prop_assert!(solution.converged);
            let (_, best_values) = brute_force(&mdp, discount);
            for (vi, bf) in solution.values.iter().zip(&best_values) {
                prop_assert!((vi - bf).abs() <= 1e-6, "VI {:?} vs brute force {:?}", solution.values, best_values);
            }
            // The greedy policy, evaluated exactly, is as good as the best in every state.
            let greedy = evaluate_policy(&mdp, &solution.policy, discount).unwrap();
            for (g, bf) in greedy.iter().zip(&best_values) {
                prop_assert!(*g >= bf - 1e-6, "greedy {:?} vs best {:?}", greedy, best_values);
            }
            // And no policy beats the best found in any state (the optimum dominates).
            for policy in all_policies(&mdp) {
                let v = evaluate_policy(&mdp, &policy, discount).unwrap();
                for (x, bf) in v.iter().zip(&best_values) {
                    prop_assert!(*x <= bf + 1e-6);
                }
            }
        }
    }
}
