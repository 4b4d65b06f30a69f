//! Model-predictive replica planning for one agent: given a demand forecast over H stages,
//! choose integer replica counts u(0..H) and apply u(0) only (receding horizon).
//!
//! The problem (DESIGN §5):
//! ```text
//! minimise   Σ_t  price·u(t) + penalty·s(t) + λ·|u(t) − u(t−1)|
//! subject to s(t) ≥ demand(t) − capacity·u(t),  s(t) ≥ 0,
//!            min ≤ u(t) ≤ max,  −step_down ≤ u(t) − u(t−1) ≤ step_up,
//!            u(t) = u(−1) for t < cooldown_remaining,      u(−1) = current replicas.
//! ```
//! Cooldown is the time left since the last applied change; the plan is re-solved every tick, so
//! the cooldown is enforced on every applied step (changes later inside one plan are not spaced).
//!
//! Solvers (all return the same `MpcPlan`):
//! - [`Solver::DynamicProgramming`] (default, exact over integers): the stage cost is separable
//!   and the coupling is the L1 change term with a step window, so
//!   `C_t(u) = stage_t(u) + min_{u−up ≤ v ≤ u+down} C_{t−1}(v) + λ|u−v|`, computed in O(N) per
//!   stage with two monotone-deque passes (N = max − min + 1): O(H·N) per agent.
//! - [`Solver::Mip`]: the same model as an integer program through `good_lp` with the `microlp`
//!   backend — pure Rust, no system library (CBC/HiGHS/GLPK need C/C++ toolchains and shared
//!   libraries that the cluster image and this build machine do not have). Used as reference.
//! - [`Solver::LpRoundUp`]: the LP relaxation through `good_lp`/`microlp`, each u(t) rounded up
//!   (stays feasible: ceil preserves integer step limits and bounds); cost may exceed the optimum.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of the planner; each names the offending field and value.
#[derive(Debug, Error, PartialEq)]
pub enum MpcError {
    #[error("mpc.demand must have at least one stage")]
    EmptyHorizon,
    #[error("mpc.demand[{index}] must be finite and ≥ 0, got {value}")]
    BadDemand { index: usize, value: f64 },
    #[error("mpc.{field} must be finite and ≥ 0, got {value}")]
    BadCoefficient { field: &'static str, value: f64 },
    #[error("mpc.capacity_per_replica must be finite and > 0, got {0}")]
    BadCapacity(f64),
    #[error("mpc.min_replicas ({min}) must be ≤ max_replicas ({max})")]
    BadBounds { min: u32, max: u32 },
    #[error("mpc.max_replicas − min_replicas ({0}) is larger than the supported 1,000,000")]
    RangeTooLarge(u32),
    #[error("mpc: no feasible plan: current_replicas {current} cannot reach [{min}, {max}] within the step limits")]
    Infeasible { current: u32, min: u32, max: u32 },
    #[error("mpc: LP solver failed: {0}")]
    Solver(String),
}

/// Inputs of one planning problem (serialisable so a receipt can record it for replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MpcProblem {
    /// Forecast demand per stage, in demand units (e.g. requests/s).
    pub demand: Vec<f64>,
    /// Demand one ready replica serves per stage.
    pub capacity_per_replica: f64,
    /// Cost of one replica for one stage.
    pub price_per_replica: f64,
    /// Cost of one unit of unmet demand for one stage.
    pub shortfall_penalty: f64,
    /// λ: cost per replica added or removed.
    pub change_penalty: f64,
    pub current_replicas: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Largest increase between consecutive stages.
    pub max_step_up: u32,
    /// Largest decrease between consecutive stages.
    pub max_step_down: u32,
    /// Number of leading stages frozen at `current_replicas` (cooldown still running).
    pub cooldown_remaining: u32,
}

/// Which algorithm solved the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    DynamicProgramming,
    Mip,
    LpRoundUp,
}

/// The plan: replica counts per stage; apply `replicas[0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MpcPlan {
    pub replicas: Vec<u32>,
    /// Objective value of `replicas` under the problem's cost.
    pub cost: f64,
    pub solver: Solver,
}

impl MpcPlan {
    /// The replica count to apply now.
    pub fn first(&self) -> u32 {
        self.replicas.first().copied().unwrap_or(0)
    }
}

impl MpcProblem {
    /// Checks every field; returns the first problem found.
    pub fn validate(&self) -> Result<(), MpcError> {
        if self.demand.is_empty() {
            return Err(MpcError::EmptyHorizon);
        }
        for (index, &value) in self.demand.iter().enumerate() {
            if !(value.is_finite() && value >= 0.0) {
                return Err(MpcError::BadDemand { index, value });
            }
        }
        if !(self.capacity_per_replica.is_finite() && self.capacity_per_replica > 0.0) {
            return Err(MpcError::BadCapacity(self.capacity_per_replica));
        }
        for (field, value) in [
            ("price_per_replica", self.price_per_replica),
            ("shortfall_penalty", self.shortfall_penalty),
            ("change_penalty", self.change_penalty),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(MpcError::BadCoefficient { field, value });
            }
        }
        if self.min_replicas > self.max_replicas {
            return Err(MpcError::BadBounds {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if self.max_replicas - self.min_replicas > 1_000_000 {
            return Err(MpcError::RangeTooLarge(self.max_replicas - self.min_replicas));
        }
        Ok(())
    }

    /// Cost of one stage at `u` replicas: `price·u + penalty·max(0, demand − capacity·u)`.
    fn stage_cost(&self, t: usize, u: u32) -> f64 {
        let u = f64::from(u);
        let short = (self.demand[t] - self.capacity_per_replica * u).max(0.0);
        self.price_per_replica * u + self.shortfall_penalty * short
    }

    /// Objective value of a full plan (the same formula the solvers minimise).
    pub fn cost_of(&self, replicas: &[u32]) -> f64 {
        let mut prev = self.current_replicas;
        let mut total = 0.0;
        for (t, &u) in replicas.iter().enumerate().take(self.demand.len()) {
            total += self.stage_cost(t, u) + self.change_penalty * f64::from(u.abs_diff(prev));
            prev = u;
        }
        total
    }

    fn frozen(&self, t: usize) -> bool {
        (t as u64) < u64::from(self.cooldown_remaining)
    }
}

/// Plans with the exact dynamic-programming solver (the default).
pub fn plan(problem: &MpcProblem) -> Result<MpcPlan, MpcError> {
    plan_with(problem, Solver::DynamicProgramming)
}

/// Plans with the chosen solver.
pub fn plan_with(problem: &MpcProblem, solver: Solver) -> Result<MpcPlan, MpcError> {
    problem.validate()?;
    let replicas = match solver {
        Solver::DynamicProgramming => solve_dp(problem)?,
        Solver::Mip => solve_lp(problem, true)?,
        Solver::LpRoundUp => solve_lp(problem, false)?,
    };
    Ok(MpcPlan {
        cost: problem.cost_of(&replicas),
        replicas,
        solver,
    })
}

/// For every state u (index i = u − min), `out[i] = min_{j} prev[j] + λ|i − j|` over
/// `i − up ≤ j ≤ i + down` (coming from v = j, a rise of i − j ≤ up, a fall of j − i ≤ down),
/// with the arg-min in `arg`. Two sliding-window minima:
/// `j ≤ i`: λi + min(prev[j] − λj) over j ∈ [i − up, i]; `j ≥ i`: −λi + min(prev[j] + λj).
fn min_plus_l1(prev: &[f64], lambda: f64, up: usize, down: usize, out: &mut [f64], arg: &mut [u32]) {
    let n = prev.len();
    let mut deque: std::collections::VecDeque<usize> = std::collections::VecDeque::with_capacity(n);
    for i in 0..n {
        let key = |j: usize| prev[j] - lambda * j as f64;
        while let Some(&b) = deque.back() {
            if key(b) >= key(i) {
                deque.pop_back();
            } else {
                break;
            }
        }
        deque.push_back(i);
        while let Some(&f) = deque.front() {
            if i - f > up {
                deque.pop_front();
            } else {
                break;
            }
        }
        let j = deque.front().copied().unwrap_or(i);
        out[i] = prev[j] + lambda * (i - j) as f64;
        arg[i] = j as u32;
    }
    deque.clear();
    for i in (0..n).rev() {
        let key = |j: usize| prev[j] + lambda * j as f64;
        while let Some(&b) = deque.back() {
            if key(b) >= key(i) {
                deque.pop_back();
            } else {
                break;
            }
        }
        deque.push_back(i);
        while let Some(&f) = deque.front() {
            if f - i > down {
                deque.pop_front();
            } else {
                break;
            }
        }
        let j = deque.front().copied().unwrap_or(i);
        let v = prev[j] + lambda * (j - i) as f64;
        if v < out[i] {
            out[i] = v;
            arg[i] = j as u32;
        }
    }
}

fn solve_dp(p: &MpcProblem) -> Result<Vec<u32>, MpcError> {
    let h = p.demand.len();
    let lo = p.min_replicas;
    // States above B = max(current, ⌈max demand / capacity⌉) are never needed: clipping a plan
    // at B keeps it feasible (step limits still hold) and lowers no term of the cost.
    let peak = p.demand.iter().copied().fold(0.0, f64::max) / p.capacity_per_replica;
    let bound = if peak.ceil() >= f64::from(p.max_replicas) {
        p.max_replicas
    } else {
        (peak.ceil() as u32).max(p.current_replicas).clamp(lo, p.max_replicas)
    };
    let n = (bound - lo) as usize + 1;
    let up = p.max_step_up as usize;
    let down = p.max_step_down as usize;
    let cur = p.current_replicas;
    let infeasible = MpcError::Infeasible {
        current: cur,
        min: p.min_replicas,
        max: p.max_replicas,
    };
    // Frozen leading stages: u = current, fixed cost.
    let frozen = (0..h).take_while(|&t| p.frozen(t)).count();
    let mut plan = vec![cur; frozen];
    if frozen == h {
        return Ok(plan);
    }
    // cost[i] = best cost to be in state lo+i after the current stage; back[t][i] = predecessor.
    let mut cost = vec![f64::INFINITY; n];
    let mut back: Vec<Vec<u32>> = Vec::with_capacity(h - frozen);
    // First free stage: transition from the single value `cur`.
    for (i, c) in cost.iter_mut().enumerate() {
        let u = lo + i as u32;
        let ok = if u >= cur {
            (u - cur) as usize <= up
        } else {
            (cur - u) as usize <= down
        };
        if ok {
            *c = p.stage_cost(frozen, u) + p.change_penalty * f64::from(u.abs_diff(cur));
        }
    }
    if cost.iter().all(|c| c.is_infinite()) {
        return Err(infeasible);
    }
    back.push(vec![0; n]);
    let mut next = vec![0.0; n];
    for t in frozen + 1..h {
        let mut arg = vec![0u32; n];
        min_plus_l1(&cost, p.change_penalty, up, down, &mut next, &mut arg);
        for (i, v) in next.iter_mut().enumerate() {
            *v += p.stage_cost(t, lo + i as u32);
        }
        std::mem::swap(&mut cost, &mut next);
        back.push(arg);
    }
    // Arg-min of the final stage; ties go to the fewest replicas.
    let mut best = 0usize;
    for i in 1..n {
        if cost[i] < cost[best] {
            best = i;
        }
    }
    if cost[best].is_infinite() {
        return Err(infeasible);
    }
    let mut states = vec![0u32; h - frozen];
    let mut i = best;
    for k in (0..h - frozen).rev() {
        states[k] = lo + i as u32;
        if k > 0 {
            i = back[k][i] as usize;
        }
    }
    plan.extend(states);
    Ok(plan)
}

fn solve_lp(p: &MpcProblem, integer: bool) -> Result<Vec<u32>, MpcError> {
    use good_lp::{Expression, ProblemVariables, Solution, SolverModel, constraint, microlp, variable};
    let h = p.demand.len();
    let mut vars = ProblemVariables::new();
    let mut u = Vec::with_capacity(h);
    let mut s = Vec::with_capacity(h);
    let mut a = Vec::with_capacity(h);
    for t in 0..h {
        let (lo, hi) = if p.frozen(t) {
            (p.current_replicas, p.current_replicas)
        } else {
            (p.min_replicas, p.max_replicas)
        };
        let mut def = variable().min(f64::from(lo)).max(f64::from(hi));
        if integer {
            def = def.integer();
        }
        u.push(vars.add(def));
        s.push(vars.add(variable().min(0.0)));
        a.push(vars.add(variable().min(0.0)));
    }
    let mut objective = Expression::from(0.0);
    for t in 0..h {
        objective += p.price_per_replica * u[t] + p.shortfall_penalty * s[t] + p.change_penalty * a[t];
    }
    let mut model = vars.minimise(objective).using(microlp);
    let cur = f64::from(p.current_replicas);
    for t in 0..h {
        model = model.with(constraint!(s[t] + p.capacity_per_replica * u[t] >= p.demand[t]));
        let prev: Expression = if t == 0 { Expression::from(cur) } else { u[t - 1].into() };
        model = model.with(constraint!(a[t] >= u[t] - prev.clone()));
        model = model.with(constraint!(a[t] >= prev.clone() - u[t]));
        model = model.with(constraint!(u[t] - prev.clone() <= f64::from(p.max_step_up)));
        model = model.with(constraint!(prev - u[t] <= f64::from(p.max_step_down)));
    }
    let solution = model.solve().map_err(|e| match e {
        good_lp::ResolutionError::Infeasible => MpcError::Infeasible {
            current: p.current_replicas,
            min: p.min_replicas,
            max: p.max_replicas,
        },
        other => MpcError::Solver(other.to_string()),
    })?;
    Ok(u.iter()
        .map(|&v| {
            let x = solution.value(v);
            // Integer solutions come back as floats: snap before rounding up.
            let x = if (x - x.round()).abs() < 1e-6 {
                x.round()
            } else {
                x.ceil()
            };
            x.max(0.0) as u32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn problem(demand: Vec<f64>) -> MpcProblem {
        MpcProblem {
            demand,
            capacity_per_replica: 10.0,
            price_per_replica: 1.0,
            shortfall_penalty: 1.0,
            change_penalty: 0.5,
            current_replicas: 2,
            min_replicas: 1,
            max_replicas: 20,
            max_step_up: 20,
            max_step_down: 20,
            cooldown_remaining: 0,
        }
    }

    #[test]
    fn plan_covers_demand_when_shortfall_costs_more_than_a_replica() {
        let p = problem(vec![35.0, 35.0, 35.0]);
        let plan = plan(&p).unwrap();
        assert_eq!(plan.replicas, vec![4, 4, 4]);
        assert!((plan.cost - (12.0 + 0.5 * 2.0)).abs() < 1e-9);
    }

    #[test]
    fn a_short_dip_is_ridden_out_when_changes_are_expensive() {
        let mut p = problem(vec![50.0, 10.0, 50.0]);
        p.current_replicas = 5;
        p.change_penalty = 10.0;
        assert_eq!(plan(&p).unwrap().replicas, vec![5, 5, 5]);
        p.change_penalty = 0.0;
        assert_eq!(plan(&p).unwrap().replicas, vec![5, 1, 5]);
    }

    #[test]
    fn step_limits_and_cooldown_are_respected() {
        let mut p = problem(vec![100.0; 4]);
        p.max_step_up = 3;
        p.cooldown_remaining = 1;
        let plan = plan(&p).unwrap();
        assert_eq!(plan.replicas, vec![2, 5, 8, 10]);
    }

    #[test]
    fn current_outside_the_bounds_that_cannot_reach_them_is_infeasible() {
        let mut p = problem(vec![10.0]);
        p.current_replicas = 30;
        p.max_step_down = 2;
        let e = plan(&p).unwrap_err();
        assert!(matches!(e, MpcError::Infeasible { current: 30, .. }));
        assert!(matches!(
            plan_with(&p, Solver::Mip).unwrap_err(),
            MpcError::Infeasible { .. }
        ));
    }

    #[test]
    fn bad_inputs_are_rejected_with_the_field_named() {
        let mut p = problem(vec![1.0, f64::NAN]);
        assert!(plan(&p).unwrap_err().to_string().contains("demand[1]"));
        p.demand = vec![];
        assert_eq!(plan(&p).unwrap_err(), MpcError::EmptyHorizon);
        let mut p = problem(vec![1.0]);
        p.capacity_per_replica = 0.0;
        assert!(plan(&p).unwrap_err().to_string().contains("capacity_per_replica"));
        let mut p = problem(vec![1.0]);
        p.change_penalty = -1.0;
        assert!(plan(&p).unwrap_err().to_string().contains("change_penalty"));
        let mut p = problem(vec![1.0]);
        p.min_replicas = 9;
        p.max_replicas = 3;
        assert!(plan(&p).unwrap_err().to_string().contains("min_replicas"));
    }

    #[test]
    fn plan_round_trips_through_json() {
        let p = problem(vec![12.0, 40.0]);
        let plan = plan(&p).unwrap();
        let back: MpcPlan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
        let pb: MpcProblem = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(pb, p);
    }

    #[test]
    fn lp_round_up_is_feasible_and_never_cheaper_than_the_exact_plan() {
        let mut p = problem(vec![15.0, 33.0, 7.0, 61.0]);
        p.max_step_up = 3;
        let exact = plan(&p).unwrap();
        let lp = plan_with(&p, Solver::LpRoundUp).unwrap();
        assert!(lp.cost >= exact.cost - 1e-9);
        let mut prev = p.current_replicas;
        for &u in &lp.replicas {
            assert!(u <= prev + 3);
            prev = u;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn dynamic_programming_matches_the_mip_optimum(
            demand in proptest::collection::vec(0.0f64..120.0, 1..7),
            price in 0.1f64..3.0,
            penalty in 0.0f64..1.0,
            lambda in 0.0f64..4.0,
            current in 0u32..14,
            min in 0u32..4,
            span in 0u32..10,
            up in 1u32..5,
            down in 1u32..5,
            cooldown in 0u32..3,
        ) {
            let p = MpcProblem {
                demand, capacity_per_replica: 10.0, price_per_replica: price,
                shortfall_penalty: penalty, change_penalty: lambda, current_replicas: current,
                min_replicas: min, max_replicas: min + span, max_step_up: up,
                max_step_down: down, cooldown_remaining: cooldown,
            };
            let dp = plan(&p);
            let mip = plan_with(&p, Solver::Mip);
            match (dp, mip) {
                (Ok(dp), Ok(mip)) => {
                    prop_assert!((dp.cost - mip.cost).abs() < 1e-6 * (1.0 + mip.cost),
                        "dp {:?} mip {:?}", dp, mip);
                    prop_assert!((p.cost_of(&dp.replicas) - dp.cost).abs() < 1e-9);
                }
                (Err(MpcError::Infeasible{..}), Err(MpcError::Infeasible{..})) => {}
                (a, b) => prop_assert!(false, "disagree: {:?} vs {:?}", a, b),
            }
        }
    }
}
