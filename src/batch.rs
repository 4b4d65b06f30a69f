//! Batch work under a deadline and a budget: when, and in which node pool, to run a batch
//! agent's replica-hours so they are done by the deadline at the least cost, from per-pool
//! forecasts of price, carbon intensity and spot capacity.
//!
//! Model. Time is cut into slots of `slotSeconds`, counted from the forecasts' origin (the
//! operator's origin is the Unix epoch, so hourly slots are UTC hours). Slot `i`'s usable hours
//! `u_i` are its overlap with `[now, deadline)`. Pool `p` in slot `i` offers up to `cap_{p,i}`
//! replicas (its spot capacity; unlimited when no capacity is forecast) at `price_{p,i}` per
//! replica-hour, emitting `carbon_{p,i}` gCO₂e per replica-hour. A forecast shorter than the
//! horizon repeats (24 hourly values: a daily profile, entry `i mod 24`). The job needs `W`
//! replica-hours and may run at most `R` replicas at once. A plan chooses whole replicas
//! `r_{p,i}`:
//!
//! `minimise Σ r_{p,i}·u_i·e_{p,i}  subject to  Σ r_{p,i}·u_i ≥ W,  Σ_p r_{p,i} ≤ R,  r_{p,i} ≤ cap_{p,i}`
//!
//! with the effective price `e = w_c·price/p̄ + w_s·carbon/c̄` (`p̄`, `c̄`: means over the
//! horizon and the pools, so the two terms are comparable; `w_c`, `w_s`: the objectives' `cost`
//! and `sustainability`, both 0 counting as cost only; no carbon forecast: the price alone).
//!
//! Greedy: take the offers in increasing `e` (ties: the earlier slot, then the pool name),
//! each at the replicas its slot still has room for under `R` and the pool's capacity, until
//! `W` is covered; the last one taken runs whole replicas for only the part of its slot the
//! work left needs. So the cheapest replica-hours carry all the work and the plan costs exactly
//! the optimum without the integrality of `r` (the constraints nest, a pool's cap inside its
//! slot's `R`: a fractional knapsack on a laminar matroid), which is a lower bound on any
//! whole-replica plan. The plan is then executed in time order ([`Execution`]), and the
//! reported cost, carbon and finish time are those of the execution.
//!
//! Run at once ([`run_at_once`], the baseline): from now, in every slot, `R` replicas (as far as
//! capacity allows) on the pools with the lowest `e` in that slot, until `W` is done.
//!
//! Not enough room before the deadline: the plan is to run at once from now and on past the
//! deadline until the work is done (the soonest finish), with `deadlineMet: false` and the
//! shortfall (the replica-hours that do not fit before it). Not modelled: start-up time
//! (the caller re-plans with the work actually done, which makes up for it), preemption of spot
//! replicas within a slot. Pure and deterministic: no clock (now and the deadline are inputs),
//! sorted maps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The pool of nodes without the `mom.hypersync.io/pool` label.
pub const DEFAULT_POOL: &str = "default";

/// Most slots one plan may span (a year of hourly slots is 8,760).
pub const MAX_SLOTS: u64 = 100_000;
/// Latest time accepted, seconds since the origin (about the year 33,658 from the epoch).
pub const MAX_SECONDS: f64 = 1e12;
/// Highest price (or carbon) per replica-hour accepted.
pub const MAX_PRICE: f64 = 1e9;
/// Most replicas at once accepted.
pub const MAX_REPLICAS: u32 = 100_000;

/// Errors naming the offending field and value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("{field}: {reason}")]
    BadField { field: String, reason: String },
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> BatchError {
    BatchError::BadField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Forecasts per node pool (module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    /// Length of one forecast slot, seconds.
    pub slot_seconds: f64,
    /// Forecast per pool (the node label `mom.hypersync.io/pool`; `default` for unlabelled
    /// nodes).
    pub pools: BTreeMap<String, PoolForecast>,
}

/// One pool's forecast, one entry per slot from the origin, repeated when shorter than needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolForecast {
    /// Price of one replica-hour.
    pub price: Vec<f64>,
    /// gCO₂e emitted by one replica-hour; empty: not forecast (counted as 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carbon: Vec<f64>,
    /// Replicas the pool can host for the job in each slot (spot capacity); absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Vec<u32>>,
}

impl PoolForecast {
    /// Price and carbon (0 when not forecast) in slot `slot` (counted from the origin).
    pub fn at(&self, slot: u64) -> (f64, f64) {
        let carbon = if self.carbon.is_empty() {
            0.0
        } else {
            cyclic(&self.carbon, slot)
        };
        (cyclic(&self.price, slot), carbon)
    }
}

/// The work to place in time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchJob {
    /// Replica-hours still to run.
    pub work_replica_hours: f64,
    /// Most replicas at once.
    pub max_replicas: u32,
    /// Seconds since the forecasts' origin.
    pub now_seconds: f64,
    /// Seconds since the forecasts' origin by which the work must be done.
    pub deadline_seconds: f64,
    /// Most the run may cost (in the prices' unit); `None`: no budget.
    pub budget: Option<f64>,
}

/// How the effective price weighs cost against carbon (the MomConfig objectives).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub cost: f64,
    pub sustainability: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 1.0,
            sustainability: 0.0,
        }
    }
}

/// Replicas of the job in one pool during one slot (clipped to `[now, deadline)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// Slot number counted from the origin.
    pub slot: u64,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub pool: String,
    pub replicas: u32,
}

/// What running a plan in time order costs (module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub cost: f64,
    pub carbon: f64,
    pub replica_hours: f64,
    /// When the work is done; `None` when the plan does not cover it.
    pub finish_seconds: Option<f64>,
}

/// A plan: allocations in time order (then pool), and its execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPlan {
    pub allocations: Vec<Allocation>,
    pub execution: Execution,
    pub deadline_met: bool,
    /// Replica-hours that do not fit before the deadline (0 when it is met).
    pub shortfall_replica_hours: f64,
    /// `Some(false)` when the execution costs more than the budget.
    pub within_budget: Option<bool>,
}

impl BatchPlan {
    /// Replicas per pool the plan runs at `t` (seconds since the origin); empty outside it or
    /// once the execution has finished.
    pub fn replicas_at(&self, t: f64) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        if self.execution.finish_seconds.is_some_and(|f| t >= f) {
            return out;
        }
        for a in &self.allocations {
            if a.start_seconds <= t && t < a.end_seconds && a.replicas > 0 {
                *out.entry(a.pool.clone()).or_insert(0) += a.replicas;
            }
        }
        out
    }
}

/// One slot of the horizon: its number, its span within `[now, deadline)`, usable hours.
#[derive(Debug, Clone, Copy)]
struct Slot {
    number: u64,
    start: f64,
    end: f64,
    hours: f64,
}

/// A pool's values in one slot.
#[derive(Debug, Clone, Copy)]
struct Offer {
    price: f64,
    carbon: f64,
    capacity: u32,
    effective: f64,
}

fn validate(job: &BatchJob, pricing: &Pricing, weights: &Weights) -> Result<Vec<Slot>, BatchError> {
    if !(pricing.slot_seconds.is_finite() && pricing.slot_seconds >= 1.0) {
        return Err(bad(
            "pricing.slotSeconds",
            format!("must be finite and ≥ 1, got {}", pricing.slot_seconds),
        ));
    }
    if pricing.pools.is_empty() {
        return Err(bad("pricing.pools", "no pool is forecast"));
    }
    for (name, pool) in &pricing.pools {
        let field = |f: &str| format!("pricing.pools.{name}.{f}");
        if pool.price.is_empty() {
            return Err(bad(field("price"), "needs at least one value"));
        }
        for (i, v) in pool.price.iter().enumerate() {
            if !(v.is_finite() && (0.0..=MAX_PRICE).contains(v)) {
                return Err(bad(
                    format!("{}[{i}]", field("price")),
                    format!("must be within [0, {MAX_PRICE}], got {v}"),
                ));
            }
        }
        for (i, v) in pool.carbon.iter().enumerate() {
            if !(v.is_finite() && (0.0..=MAX_PRICE).contains(v)) {
                return Err(bad(
                    format!("{}[{i}]", field("carbon")),
                    format!("must be within [0, {MAX_PRICE}], got {v}"),
                ));
            }
        }
        if pool.capacity.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad(field("capacity"), "needs at least one value when given"));
        }
    }
    let work = job.work_replica_hours;
    if !(work.is_finite() && (0.0..=1e9).contains(&work)) {
        return Err(bad("workReplicaHours", format!("must be within [0, 1e9], got {work}")));
    }
    if job.max_replicas == 0 {
        return Err(bad("maxReplicas", "must be at least 1"));
    }
    if !(job.now_seconds.is_finite() && (0.0..=MAX_SECONDS).contains(&job.now_seconds)) {
        return Err(bad(
            "now",
            format!("must be within [0, {MAX_SECONDS}] s, got {}", job.now_seconds),
        ));
    }
    if !(job.deadline_seconds.is_finite() && job.deadline_seconds <= MAX_SECONDS) {
        return Err(bad(
            "deadline",
            format!("must be at most {MAX_SECONDS} s, got {}", job.deadline_seconds),
        ));
    }
    if job.max_replicas > MAX_REPLICAS {
        return Err(bad(
            "maxReplicas",
            format!("at most {MAX_REPLICAS}, got {}", job.max_replicas),
        ));
    }
    if let Some(b) = job.budget
        && !(b.is_finite() && b >= 0.0)
    {
        return Err(bad("budget", format!("must be finite and ≥ 0, got {b}")));
    }
    for (field, w) in [
        ("objectives.cost", weights.cost),
        ("objectives.sustainability", weights.sustainability),
    ] {
        if !(w.is_finite() && w >= 0.0) {
            return Err(bad(field, format!("must be finite and ≥ 0, got {w}")));
        }
    }
    let s = pricing.slot_seconds;
    let mut slots = Vec::new();
    if job.deadline_seconds <= job.now_seconds {
        return Ok(slots);
    }
    let first = (job.now_seconds / s).floor() as u64;
    let last = ((job.deadline_seconds / s).ceil() as u64).max(first + 1);
    if last - first > MAX_SLOTS {
        return Err(bad(
            "deadline",
            format!("{} slots of {s} s from now; at most {MAX_SLOTS}", last - first),
        ));
    }
    for number in first..last {
        let start = (number as f64 * s).max(job.now_seconds);
        let end = ((number + 1) as f64 * s).min(job.deadline_seconds);
        if end > start {
            slots.push(Slot {
                number,
                start,
                end,
                hours: (end - start) / 3600.0,
            });
        }
    }
    Ok(slots)
}

fn cyclic<T: Copy>(values: &[T], slot: u64) -> T {
    values[(slot % values.len() as u64) as usize]
}

/// Every pool's offer in every slot, with effective prices (module doc).
fn offers(slots: &[Slot], pricing: &Pricing, weights: &Weights, max_replicas: u32) -> Vec<BTreeMap<String, Offer>> {
    let mut raw: Vec<BTreeMap<String, (f64, f64, u32)>> = Vec::with_capacity(slots.len());
    let (mut price_sum, mut carbon_sum, mut n) = (0.0, 0.0, 0usize);
    for slot in slots {
        let mut per_pool = BTreeMap::new();
        for (name, pool) in &pricing.pools {
            let price = cyclic(&pool.price, slot.number);
            let carbon = if pool.carbon.is_empty() {
                0.0
            } else {
                cyclic(&pool.carbon, slot.number)
            };
            let capacity = pool
                .capacity
                .as_ref()
                .map_or(max_replicas, |c| cyclic(c, slot.number).min(max_replicas));
            price_sum += price;
            carbon_sum += carbon;
            n += 1;
            per_pool.insert(name.clone(), (price, carbon, capacity));
        }
        raw.push(per_pool);
    }
    let mean = |sum: f64| if n == 0 || sum <= 0.0 { 1.0 } else { sum / n as f64 };
    let (price_mean, carbon_mean) = (mean(price_sum), mean(carbon_sum));
    let (w_cost, w_sus) = if weights.cost == 0.0 && weights.sustainability == 0.0 {
        (1.0, 0.0)
    } else {
        (weights.cost, weights.sustainability)
    };
    raw.into_iter()
        .map(|per_pool| {
            per_pool
                .into_iter()
                .map(|(name, (price, carbon, capacity))| {
                    let effective = w_cost * price / price_mean + w_sus * carbon / carbon_mean;
                    (
                        name,
                        Offer {
                            price,
                            carbon,
                            capacity,
                            effective,
                        },
                    )
                })
                .collect()
        })
        .collect()
}

/// Work below this many replica-hours counts as none (float noise; 0.0036 replica-seconds).
pub const EPSILON_REPLICA_HOURS: f64 = 1e-9;

/// A chosen offer: whole replicas for a fraction of its slot's usable time (1 but for the
/// greedy's last pick).
#[derive(Debug, Clone, Copy)]
struct Pick {
    replicas: u32,
    fraction: f64,
}

/// Runs the picks (slot index → pool → pick) in time order until `work` is done.
fn execute(
    job: &BatchJob,
    slots: &[Slot],
    offers: &[BTreeMap<String, Offer>],
    chosen: &[BTreeMap<String, Pick>],
) -> (Vec<Allocation>, Execution) {
    let mut allocations = Vec::new();
    let mut exec = Execution::default();
    let mut done = 0.0;
    let work = job.work_replica_hours;
    if work <= EPSILON_REPLICA_HOURS {
        exec.finish_seconds = Some(job.now_seconds);
        return (allocations, exec);
    }
    for (i, slot) in slots.iter().enumerate() {
        let picks = &chosen[i];
        let slot_work: f64 = picks
            .values()
            .map(|p| f64::from(p.replicas) * slot.hours * p.fraction)
            .sum();
        if slot_work <= 0.0 {
            continue;
        }
        // The work may end inside this slot: every pick of it stops then.
        let cut = ((work - done) / slot_work).min(1.0);
        let mut end = slot.start;
        for (pool, pick) in picks.iter().filter(|(_, p)| p.replicas > 0 && p.fraction > 0.0) {
            let offer = &offers[i][pool];
            let fraction = pick.fraction * cut;
            let rh = f64::from(pick.replicas) * slot.hours * fraction;
            exec.cost += rh * offer.price;
            exec.carbon += rh * offer.carbon;
            exec.replica_hours += rh;
            let until = slot.start + (slot.end - slot.start) * fraction;
            end = end.max(until);
            allocations.push(Allocation {
                slot: slot.number,
                start_seconds: slot.start,
                end_seconds: until,
                pool: pool.clone(),
                replicas: pick.replicas,
            });
        }
        done += slot_work * cut;
        if done >= work - EPSILON_REPLICA_HOURS {
            exec.finish_seconds = Some(end);
            break;
        }
    }
    (allocations, exec)
}

fn finish(
    job: &BatchJob,
    allocations: Vec<Allocation>,
    execution: Execution,
    deadline_met: bool,
    room: f64,
) -> BatchPlan {
    let shortfall = if deadline_met {
        0.0
    } else {
        (job.work_replica_hours - room).max(0.0)
    };
    BatchPlan {
        allocations,
        deadline_met,
        shortfall_replica_hours: shortfall,
        within_budget: job.budget.map(|b| execution.cost <= b),
        execution,
    }
}

/// Replica-hours that fit in `slots` (every pool's capacity, at most `R` per slot).
fn room(job: &BatchJob, slots: &[Slot], offers: &[BTreeMap<String, Offer>]) -> f64 {
    slots
        .iter()
        .zip(offers)
        .map(|(slot, per_pool)| {
            let cap = per_pool
                .values()
                .map(|o| u64::from(o.capacity))
                .sum::<u64>()
                .min(u64::from(job.max_replicas));
            cap as f64 * slot.hours
        })
        .sum()
}

/// The least-cost plan that finishes by the deadline (module doc); when none does, the
/// run-at-once plan from now, past the deadline until the work is done, flagged.
pub fn plan(job: &BatchJob, pricing: &Pricing, weights: &Weights) -> Result<BatchPlan, BatchError> {
    let slots = validate(job, pricing, weights)?;
    let offers = offers(&slots, pricing, weights, job.max_replicas);
    let room = room(job, &slots, &offers);
    if room + EPSILON_REPLICA_HOURS < job.work_replica_hours {
        return late(job, pricing, weights, room);
    }
    // Every (slot, pool) offer, cheapest first; ties: earlier slot, then pool name.
    let mut order: Vec<(usize, &String, &Offer)> = offers
        .iter()
        .enumerate()
        .flat_map(|(i, per_pool)| per_pool.iter().map(move |(name, o)| (i, name, o)))
        .collect();
    order.sort_by(|a, b| {
        a.2.effective
            .total_cmp(&b.2.effective)
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(b.1))
    });
    let mut chosen: Vec<BTreeMap<String, Pick>> = vec![BTreeMap::new(); slots.len()];
    let mut used: Vec<u32> = vec![0; slots.len()];
    let mut covered = 0.0;
    for (i, name, offer) in order {
        let left = job.work_replica_hours - covered;
        if left <= EPSILON_REPLICA_HOURS {
            break;
        }
        let slot = &slots[i];
        let free = offer.capacity.min(job.max_replicas.saturating_sub(used[i]));
        if free == 0 {
            continue;
        }
        let full = f64::from(free) * slot.hours;
        // The last pick runs only as long as the work left needs (whole replicas, part of the
        // slot), so the cheapest offers carry all of it.
        let pick = if full <= left {
            Pick {
                replicas: free,
                fraction: 1.0,
            }
        } else {
            let replicas = ((left / slot.hours).ceil() as u32).clamp(1, free);
            Pick {
                replicas,
                fraction: (left / (f64::from(replicas) * slot.hours)).min(1.0),
            }
        };
        chosen[i].insert(name.clone(), pick);
        used[i] += pick.replicas;
        covered += f64::from(pick.replicas) * slot.hours * pick.fraction;
    }
    let (allocations, execution) = execute(job, &slots, &offers, &chosen);
    Ok(finish(job, allocations, execution, true, room))
}

/// Runs the job from now at full width on the cheapest pools of each slot (module doc), past
/// the deadline when the work needs it.
pub fn run_at_once(job: &BatchJob, pricing: &Pricing, weights: &Weights) -> Result<BatchPlan, BatchError> {
    let slots = validate(job, pricing, weights)?;
    let offers = offers(&slots, pricing, weights, job.max_replicas);
    let room = room(job, &slots, &offers);
    if room + EPSILON_REPLICA_HOURS < job.work_replica_hours {
        return late(job, pricing, weights, room);
    }
    let (allocations, execution) = execute(job, &slots, &offers, &at_once_picks(job, &offers));
    Ok(finish(job, allocations, execution, true, room))
}

/// Work that does not fit before the deadline: run at once from now over a horizon doubled
/// until it is done (at most [`MAX_SLOTS`] slots), flagged late with the shortfall.
fn late(job: &BatchJob, pricing: &Pricing, weights: &Weights, room_by_deadline: f64) -> Result<BatchPlan, BatchError> {
    let width = f64::from(job.max_replicas.max(1));
    let mut horizon = (job.work_replica_hours / width * 3600.0).max(pricing.slot_seconds) * 2.0;
    loop {
        let extended = BatchJob {
            deadline_seconds: job.now_seconds + horizon,
            ..*job
        };
        let slots = match validate(&extended, pricing, weights) {
            Ok(slots) => slots,
            // Past the longest horizon (a pool with no capacity at all): as far as it goes.
            Err(_) => break,
        };
        let offers = offers(&slots, pricing, weights, job.max_replicas);
        let (allocations, execution) = execute(&extended, &slots, &offers, &at_once_picks(job, &offers));
        if execution.finish_seconds.is_some() || slots.len() as u64 >= MAX_SLOTS / 2 {
            return Ok(finish(job, allocations, execution, false, room_by_deadline));
        }
        horizon *= 2.0;
    }
    let extended = BatchJob {
        deadline_seconds: job.now_seconds + pricing.slot_seconds * (MAX_SLOTS / 2) as f64,
        ..*job
    };
    let slots = validate(&extended, pricing, weights)?;
    let offers = offers(&slots, pricing, weights, job.max_replicas);
    let (allocations, execution) = execute(&extended, &slots, &offers, &at_once_picks(job, &offers));
    Ok(finish(job, allocations, execution, false, room_by_deadline))
}

/// Full width in every slot, on the pools with the lowest effective price there.
fn at_once_picks(job: &BatchJob, offers: &[BTreeMap<String, Offer>]) -> Vec<BTreeMap<String, Pick>> {
    offers
        .iter()
        .map(|per_pool| {
            let mut pools: Vec<(&String, &Offer)> = per_pool.iter().collect();
            pools.sort_by(|a, b| a.1.effective.total_cmp(&b.1.effective).then(a.0.cmp(b.0)));
            let mut left = job.max_replicas;
            let mut out = BTreeMap::new();
            for (name, offer) in pools {
                let take = offer.capacity.min(left);
                if take > 0 {
                    out.insert(
                        name.clone(),
                        Pick {
                            replicas: take,
                            fraction: 1.0,
                        },
                    );
                    left -= take;
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hourly(pools: &[(&str, Vec<f64>)]) -> Pricing {
        Pricing {
            slot_seconds: 3600.0,
            pools: pools
                .iter()
                .map(|(n, p)| {
                    (
                        n.to_string(),
                        PoolForecast {
                            price: p.clone(),
                            carbon: vec![],
                            capacity: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn job(work: f64, max: u32, now_h: f64, deadline_h: f64) -> BatchJob {
        BatchJob {
            work_replica_hours: work,
            max_replicas: max,
            now_seconds: now_h * 3600.0,
            deadline_seconds: deadline_h * 3600.0,
            budget: None,
        }
    }

    /// A day-night profile: expensive by day (hours 8–19), cheap at night.
    fn day_night() -> Vec<f64> {
        (0..24).map(|h| if (8..20).contains(&h) { 1.0 } else { 0.25 }).collect()
    }

    #[test]
    fn work_waits_for_the_cheap_night_hours_and_still_meets_the_deadline() {
        let pricing = hourly(&[("default", day_night())]);
        // At 09:00, 8 replica-hours, 4 replicas at most, due in 24 h.
        let j = job(8.0, 4, 9.0, 33.0);
        let p = plan(&j, &pricing, &Weights::default()).unwrap();
        let once = run_at_once(&j, &pricing, &Weights::default()).unwrap();
        assert!(p.deadline_met);
        assert!((p.execution.replica_hours - 8.0).abs() < 1e-9);
        assert!((p.execution.cost - 2.0).abs() < 1e-9, "{:?}", p.execution);
        assert!((once.execution.cost - 8.0).abs() < 1e-9, "{:?}", once.execution);
        // Every allocation is at night (20:00–08:00), the first night hours first.
        assert!(p.allocations.iter().all(|a| !(8..20).contains(&(a.slot % 24))));
        assert_eq!(p.allocations[0].slot, 20);
        assert_eq!(p.execution.finish_seconds, Some(22.0 * 3600.0));
        assert!(p.execution.finish_seconds.unwrap() <= j.deadline_seconds);
        // Run at once starts now at full width and is done in two hours.
        assert_eq!(once.allocations[0].slot, 9);
        assert_eq!(once.execution.finish_seconds, Some(11.0 * 3600.0));
    }

    #[test]
    fn a_deadline_before_the_cheap_hours_forces_the_expensive_ones() {
        let pricing = hourly(&[("default", day_night())]);
        // Due at 12:00: only day hours are left, and they must all be used at full width.
        let j = job(12.0, 4, 9.0, 12.0);
        let p = plan(&j, &pricing, &Weights::default()).unwrap();
        assert!(p.deadline_met);
        assert!((p.execution.cost - 12.0).abs() < 1e-9);
        assert_eq!(p.execution.finish_seconds, Some(12.0 * 3600.0));
    }

    #[test]
    fn too_much_work_for_the_deadline_runs_at_once_and_says_how_much_is_short() {
        let pricing = hourly(&[("default", day_night())]);
        let j = job(20.0, 4, 9.0, 12.0);
        let p = plan(&j, &pricing, &Weights::default()).unwrap();
        assert!(!p.deadline_met);
        assert!(
            (p.shortfall_replica_hours - 8.0).abs() < 1e-9,
            "{}",
            p.shortfall_replica_hours
        );
        // It keeps running at full width past the deadline until the work is done: 14:00.
        assert_eq!(p.execution.finish_seconds, Some(14.0 * 3600.0));
        assert_eq!(
            p.replicas_at(12.5 * 3600.0),
            BTreeMap::from([("default".to_string(), 4)])
        );
        // Positive control: the same work with room enough meets it.
        let ok = plan(&job(12.0, 4, 9.0, 12.0), &pricing, &Weights::default()).unwrap();
        assert!(ok.deadline_met && ok.shortfall_replica_hours == 0.0);
    }

    #[test]
    fn the_cheaper_pool_is_chosen_within_its_spot_capacity() {
        let mut pricing = hourly(&[("ondemand", vec![1.0]), ("spot", vec![0.3])]);
        pricing.pools.get_mut("spot").unwrap().capacity = Some(vec![1]);
        // 4 replica-hours due in 2 hours at most 2 replicas: spot holds 1 replica an hour.
        let p = plan(&job(4.0, 2, 0.0, 2.0), &pricing, &Weights::default()).unwrap();
        assert!(p.deadline_met);
        assert!((p.execution.cost - (2.0 * 0.3 + 2.0 * 1.0)).abs() < 1e-9, "{:?}", p);
        // More time: spot alone, one replica for four hours.
        let later = plan(&job(4.0, 2, 0.0, 4.0), &pricing, &Weights::default()).unwrap();
        assert!((later.execution.cost - 1.2).abs() < 1e-9, "{:?}", later);
        assert!(later.allocations.iter().all(|a| a.pool == "spot" && a.replicas == 1));
        assert_eq!(
            later.replicas_at(3.5 * 3600.0),
            BTreeMap::from([("spot".to_string(), 1)])
        );
        assert!(later.replicas_at(4.0 * 3600.0).is_empty());
    }

    #[test]
    fn the_sustainability_weight_trades_price_for_carbon() {
        let mut pricing = hourly(&[("coal", vec![0.5]), ("wind", vec![0.6])]);
        pricing.pools.get_mut("coal").unwrap().carbon = vec![800.0];
        pricing.pools.get_mut("wind").unwrap().carbon = vec![20.0];
        let j = job(2.0, 1, 0.0, 10.0);
        let cheap = plan(&j, &pricing, &Weights::default()).unwrap();
        assert!(cheap.allocations.iter().all(|a| a.pool == "coal"));
        let green = plan(
            &j,
            &pricing,
            &Weights {
                cost: 0.5,
                sustainability: 0.5,
            },
        )
        .unwrap();
        assert!(green.allocations.iter().all(|a| a.pool == "wind"));
        assert!(green.execution.carbon < cheap.execution.carbon);
        assert!(green.execution.cost > cheap.execution.cost);
    }

    #[test]
    fn a_plan_over_budget_says_so() {
        let pricing = hourly(&[("default", vec![1.0])]);
        let mut j = job(3.0, 1, 0.0, 5.0);
        j.budget = Some(2.5);
        assert_eq!(
            plan(&j, &pricing, &Weights::default()).unwrap().within_budget,
            Some(false)
        );
        j.budget = Some(3.0);
        assert_eq!(
            plan(&j, &pricing, &Weights::default()).unwrap().within_budget,
            Some(true)
        );
    }

    #[test]
    fn the_greedy_plan_is_never_dearer_than_any_whole_replica_plan_on_small_cases() {
        // Exhaustive check over 4 slots × 2 pools with ≤ 2 replicas per slot.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let a: Vec<f64> = (0..4).map(|_| f64::from(rng.random_range(1..10u32))).collect();
            let b: Vec<f64> = (0..4).map(|_| f64::from(rng.random_range(1..10u32))).collect();
            let mut pricing = hourly(&[("a", a), ("b", b)]);
            pricing.pools.get_mut("b").unwrap().capacity = Some((0..4).map(|_| rng.random_range(0..3u32)).collect());
            let work = f64::from(rng.random_range(1..7u32));
            let j = job(work, 2, 0.0, 4.0);
            let p = plan(&j, &pricing, &Weights::default()).unwrap();
            // Brute force: r_a, r_b per slot with r_a + r_b ≤ 2, r_b ≤ cap_b.
            let slots = validate(&j, &pricing, &Weights::default()).unwrap();
            let offers = offers(&slots, &pricing, &Weights::default(), 2);
            let mut best = f64::INFINITY;
            let choices: Vec<(u32, u32)> = (0..=2)
                .flat_map(|x| (0..=2).map(move |y| (x, y)))
                .filter(|(x, y)| x + y <= 2)
                .collect();
            let mut idx = [0usize; 4];
            loop {
                let chosen: Vec<BTreeMap<String, u32>> = (0..4)
                    .map(|i| {
                        BTreeMap::from([
                            ("a".to_string(), choices[idx[i]].0),
                            ("b".to_string(), choices[idx[i]].1),
                        ])
                    })
                    .collect();
                let fits = (0..4).all(|i| choices[idx[i]].1 <= offers[i]["b"].capacity);
                let rh: f64 = (0..4).map(|i| f64::from(choices[idx[i]].0 + choices[idx[i]].1)).sum();
                if fits && rh >= work {
                    let cost: f64 = (0..4)
                        .map(|i| {
                            f64::from(choices[idx[i]].0) * offers[i]["a"].price
                                + f64::from(choices[idx[i]].1) * offers[i]["b"].price
                        })
                        .sum();
                    let _ = &chosen;
                    best = best.min(cost);
                }
                let mut k = 0;
                while k < 4 {
                    idx[k] += 1;
                    if idx[k] < choices.len() {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == 4 {
                    break;
                }
            }
            if best.is_finite() {
                assert!(p.deadline_met);
                // Whole hours and whole work: the execution's cost is the plan's.
                assert!(
                    p.execution.cost <= best + 1e-9,
                    "greedy {} > best {best} for {pricing:?} work {work}",
                    p.execution.cost
                );
            } else {
                assert!(!p.deadline_met);
            }
        }
    }

    #[test]
    fn the_last_pick_runs_only_as_long_as_the_work_needs_so_the_cheapest_hours_carry_it() {
        // 1.5 replica-hours, one replica, hours priced 0.5, 1.0, 0.25: all of the 0.25 hour and
        // half of the 0.5 hour (0.5), not all of the 0.5 hour and half of the 0.25 one (0.625).
        let pricing = hourly(&[("default", vec![0.5, 1.0, 0.25])]);
        let p = plan(&job(1.5, 1, 0.0, 3.0), &pricing, &Weights::default()).unwrap();
        assert!((p.execution.cost - 0.5).abs() < 1e-9, "{p:?}");
        assert!((p.execution.replica_hours - 1.5).abs() < 1e-9, "{p:?}");
        assert_eq!(p.execution.finish_seconds, Some(3.0 * 3600.0));
        // The half hour is the first half of hour 0; hour 1 is idle.
        assert_eq!(p.replicas_at(0.25 * 3600.0).values().sum::<u32>(), 1);
        assert!(p.replicas_at(0.75 * 3600.0).is_empty() && p.replicas_at(1.5 * 3600.0).is_empty());
    }

    #[test]
    fn the_plan_costs_what_the_fractional_optimum_costs_on_random_cases_with_partial_slots() {
        // Without whole replicas the problem is a fractional knapsack over nested caps, whose
        // optimum fills the cheapest replica-hours first; the plan's whole replicas run for
        // part of a slot, so it must cost exactly that.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..300 {
            let n = rng.random_range(2..6usize);
            let a: Vec<f64> = (0..n).map(|_| f64::from(rng.random_range(1..20u32)) / 4.0).collect();
            let pricing = hourly(&[("a", a.clone())]);
            let now = f64::from(rng.random_range(0..60u32)) / 60.0;
            let r = rng.random_range(1..4u32);
            let j = BatchJob {
                work_replica_hours: f64::from(rng.random_range(1..40u32)) / 10.0,
                ..job(0.0, r, now, n as f64)
            };
            let p = plan(&j, &pricing, &Weights::default()).unwrap();
            // The optimum: sort the slots' replica-hours by price and take the cheapest.
            let mut units: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let hours = (i as f64 + 1.0).min(n as f64) - (i as f64).max(now);
                    (a[i], hours.max(0.0) * f64::from(r))
                })
                .collect();
            units.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (mut left, mut best) = (j.work_replica_hours, 0.0);
            for (price, rh) in units {
                let take = rh.min(left);
                best += take * price;
                left -= take;
            }
            if left > 1e-9 {
                assert!(!p.deadline_met);
                continue;
            }
            assert!(p.deadline_met, "{j:?} {p:?}");
            assert!(
                (p.execution.cost - best).abs() < 1e-6,
                "plan {} optimum {best}: {j:?} {a:?}",
                p.execution.cost
            );
            assert!((p.execution.replica_hours - j.work_replica_hours).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_forecasts_and_jobs_are_refused_naming_the_field() {
        let mut pricing = hourly(&[("default", vec![1.0, f64::NAN])]);
        let err = plan(&job(1.0, 1, 0.0, 5.0), &pricing, &Weights::default()).unwrap_err();
        assert!(err.to_string().contains("pricing.pools.default.price[1]"), "{err}");
        pricing = hourly(&[("default", vec![])]);
        let err = plan(&job(1.0, 1, 0.0, 5.0), &pricing, &Weights::default()).unwrap_err();
        assert!(err.to_string().contains("pricing.pools.default.price"), "{err}");
        pricing = hourly(&[("default", vec![1.0])]);
        let err = plan(&job(1.0, 0, 0.0, 5.0), &pricing, &Weights::default()).unwrap_err();
        assert!(err.to_string().contains("maxReplicas"), "{err}");
        let err = plan(&job(f64::INFINITY, 1, 0.0, 5.0), &pricing, &Weights::default()).unwrap_err();
        assert!(err.to_string().contains("workReplicaHours"), "{err}");
        let err = plan(&job(1.0, 1, 0.0, 1e12), &pricing, &Weights::default()).unwrap_err();
        assert!(err.to_string().contains("deadline"), "{err}");
        // Positive control.
        assert!(plan(&job(1.0, 1, 0.0, 5.0), &pricing, &Weights::default()).is_ok());
    }

    #[test]
    fn a_deadline_already_past_is_not_met_unless_nothing_is_left() {
        let pricing = hourly(&[("default", vec![1.0])]);
        let p = plan(&job(1.0, 1, 5.0, 4.0), &pricing, &Weights::default()).unwrap();
        // Late: still run, at full width from now.
        assert!(!p.deadline_met, "{p:?}");
        assert_eq!(p.replicas_at(5.0 * 3600.0).values().sum::<u32>(), 1);
        assert_eq!(p.execution.finish_seconds, Some(6.0 * 3600.0));
        let done = plan(&job(0.0, 1, 5.0, 4.0), &pricing, &Weights::default()).unwrap();
        assert!(done.deadline_met);
    }
}

/// The decision kind of a batch agent's replicas in receipts.
pub const PLAN_KIND: &str = "batch.plan";

/// What the operator decides a batch agent's replicas from (recorded inline in its receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchInputs {
    pub job: BatchJob,
    pub pricing: Pricing,
    pub weights: Weights,
}

/// The decision: replicas per pool now (and their sum), and what the plan expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDecision {
    pub replicas: u32,
    pub pools: BTreeMap<String, u32>,
    pub deadline_met: bool,
    pub shortfall_replica_hours: f64,
    pub finish_seconds: Option<f64>,
    pub planned_cost: f64,
    pub at_once_cost: f64,
    pub within_budget: Option<bool>,
}

/// Plans the job from `inputs` and reads off the replicas to run at its `now`.
pub fn decide(inputs: &BatchInputs) -> Result<BatchDecision, BatchError> {
    let plan = plan(&inputs.job, &inputs.pricing, &inputs.weights)?;
    let at_once = run_at_once(&inputs.job, &inputs.pricing, &inputs.weights)?;
    let pools = plan.replicas_at(inputs.job.now_seconds);
    Ok(BatchDecision {
        replicas: pools.values().sum(),
        pools,
        deadline_met: plan.deadline_met,
        shortfall_replica_hours: plan.shortfall_replica_hours,
        finish_seconds: plan.execution.finish_seconds,
        planned_cost: plan.execution.cost,
        at_once_cost: at_once.execution.cost,
        within_budget: plan.within_budget,
    })
}

/// The receipt's decision record: `{"kind": "batch.plan", "output": decision, "inputs": inputs}`.
pub fn decision_record(inputs: &BatchInputs, decision: &BatchDecision) -> serde_json::Value {
    serde_json::json!({"kind": PLAN_KIND, "output": decision, "inputs": inputs})
}

/// Replays a `batch.plan` receipt from its inline inputs.
pub fn replay(inputs: &serde_json::Value) -> Result<serde_json::Value, crate::receipts::replay::ReplayError> {
    crate::receipts::replay::replay_typed(inputs, decide)
}

#[cfg(test)]
mod decision_tests {
    use super::*;

    fn inputs(now_h: f64) -> BatchInputs {
        BatchInputs {
            job: BatchJob {
                work_replica_hours: 4.0,
                max_replicas: 2,
                now_seconds: now_h * 3600.0,
                deadline_seconds: (now_h + 12.0) * 3600.0,
                budget: None,
            },
            pricing: Pricing {
                slot_seconds: 3600.0,
                pools: BTreeMap::from([(
                    "default".to_string(),
                    PoolForecast {
                        price: (0..24).map(|h| if (8..20).contains(&h) { 1.0 } else { 0.25 }).collect(),
                        carbon: vec![],
                        capacity: None,
                    },
                )]),
            },
            weights: Weights::default(),
        }
    }

    #[test]
    fn a_batch_decision_waits_by_day_runs_at_night_and_replays_from_its_record() {
        let day = decide(&inputs(10.0)).unwrap();
        assert_eq!(day.replicas, 0);
        assert!((day.planned_cost - 1.0).abs() < 1e-9 && (day.at_once_cost - 4.0).abs() < 1e-9);
        let night = decide(&inputs(21.0)).unwrap();
        assert_eq!(night.replicas, 2);
        assert_eq!(night.pools, BTreeMap::from([("default".to_string(), 2)]));
        // The record round-trips through JSON text and replays to the same output.
        let record: serde_json::Value =
            serde_json::from_str(&decision_record(&inputs(21.0), &night).to_string()).unwrap();
        assert_eq!(record["kind"], PLAN_KIND);
        let replayed = replay(&record["inputs"]).unwrap();
        assert_eq!(
            crate::receipts::canonical::to_string(&replayed).unwrap(),
            crate::receipts::canonical::to_string(&record["output"]).unwrap()
        );
        // A changed input replays to another output (the check can fail).
        let mut other = record["inputs"].clone();
        other["job"]["nowSeconds"] = serde_json::json!(10.0 * 3600.0);
        assert_ne!(replay(&other).unwrap(), record["output"]);
    }
}
