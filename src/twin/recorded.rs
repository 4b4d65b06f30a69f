//! A twin snapshot of a recorded window (`mom whatif --cluster --since D`): the cluster as it is
//! now (nodes, agents, their peers and targets) and, per agent, what the operator's scale
//! receipts of the window recorded — the demand the scaler observed, the settings it decided
//! with, and the replica counts it chose — so the twin can run the window as recorded (and
//! report how many recorded decisions it reproduces) and with changes.
//!
//! Per agent with scale receipts in the window, each receipt's inputs are first reduced to the
//! single-target problem the policy solves ([`DecisionInputs::combined`]: with several targets,
//! demand in replicas and a target of 1):
//! - demand: sample `j` of a receipt's window (`m` samples `step` apart, the last at the
//!   receipt's time `t`) is the demand at `t − (m − 1 − j)·step`; it fills the tick bin holding
//!   that time (later receipts win); a bin no receipt covers holds the last value before it
//!   (before the first known value: that value). The scaler records a receipt only when the
//!   count changes; a predictive receipt holds the history window and a reactive one the
//!   samples since the agent's previous receipt (receipts written before that, and the first
//!   after a new leader took over, hold fewer), so a gap between windows is an estimate.
//! - settings: the newest receipt's (its method, bounds, target and guard); the step is the
//!   twin's tick and `lead − step` its start-up time: those of most receipts, and receipts made
//!   with another step or lead (the tick changed within the window) are set aside.
//! - recorded decisions: the receipt's `to` at tick `⌊(t − since)/tick⌋` (tick 0, the start
//!   state, excluded); the replicas at tick 0 are the first receipt's `from` (its `to` when it
//!   falls in tick 0).
//!
//! An agent without a scale receipt in the window made no scaling decision there: it is held at
//! its replica count (`manual`), whatever its method, and its demand is unknown (0).
//!
//! Pure: the CLI reads the cluster and the receipts; this sees plain values.

use std::collections::BTreeMap;

use super::TwinError;
use super::snapshot::{AgentSpec, NodeSpec, RecordedReplicas, Snapshot, VERSION};
use crate::placement::{Objectives, Routing};
use crate::scaling_policy::{DecisionInputs, Method};

/// One scale receipt of an agent: when, the recorded inputs, and the count chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRecord {
    /// Unix seconds of the receipt.
    pub time: f64,
    pub inputs: DecisionInputs,
    pub to: u32,
}

/// A `batch.plan` receipt of a batch agent: when, what it was planned from, the replicas set.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// Unix seconds of the receipt.
    pub time: f64,
    pub inputs: crate::batch::BatchInputs,
    pub to: u32,
}

/// An agent as the cluster holds it now, with its scale receipts of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedAgent {
    /// `namespace/name`.
    pub name: String,
    pub tenant: Option<String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// `spec.replicas` now.
    pub replicas: u32,
    /// Its `status.position` (empty: none yet; the window is replayed from where the agents
    /// are, so the agent is left out).
    pub target: Vec<f64>,
    /// The coordinates its strategy pins it to (`placement.geometricAffinity.coordinates`, with
    /// the nodes' dimension), if any.
    pub coordinates: Option<Vec<f64>>,
    /// Peers (`namespace/name`) and weights.
    pub peers: BTreeMap<String, f64>,
    /// Its strategy's `nearAgents` (`namespace/name`).
    pub near_agents: Vec<String>,
    /// Its scale receipts in the window, in any order.
    pub scales: Vec<ScaleRecord>,
    /// Its `batch.plan` receipts in the window (a batch agent), in any order.
    pub batch_plans: Vec<BatchRecord>,
    /// Its `spec.bid`, if any (see [`super::snapshot::AgentSpec::bid`]).
    pub bid: Option<super::snapshot::BidSpec>,
    /// The pool its template selects, if any.
    pub pool: Option<String>,
    /// Its strategy's `placement.avoidNodes`.
    pub avoid_nodes: Vec<String>,
    /// Its strategy's `placement.geometricAffinity.maxDistance`, if any.
    pub max_distance: Option<f64>,
    /// Its strategy's `placement.preferredRegions`.
    pub preferred_regions: Vec<String>,
}

/// The window and the settings the cluster does not record per agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Unix seconds: the start and the end of the window.
    pub since: f64,
    pub until: f64,
    /// The tick when no receipt gives the scaler's step (MomConfig `spec.tickSeconds`).
    pub tick_seconds: f64,
    /// Start-up seconds when no receipt gives the lead.
    pub startup_seconds: f64,
    pub objectives: Objectives,
    pub kappa: f64,
    /// MomConfig `spec.budget.maxHourlyCost`, if any.
    pub max_hourly_cost: Option<f64>,
}

/// What [`snapshot_of`] left out or estimated, for the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// Agents with scale receipts in the window.
    pub agents_recorded: usize,
    /// Agents held at their count: no scale receipt in the window.
    pub agents_held: usize,
    /// Agents left out: no position yet.
    pub agents_without_position: Vec<String>,
    /// Scale receipts used.
    pub receipts: usize,
    /// Scale receipts set aside: made with another scaler step or lead than most.
    pub receipts_set_aside: usize,
    /// Tick bins (over the recorded agents) no receipt's demand window covered.
    pub estimated_bins: usize,
    /// Tick bins in all (over the recorded agents).
    pub bins: usize,
}

/// The snapshot of the window (module doc) and what it covers.
pub fn snapshot_of(
    nodes: Vec<NodeSpec>,
    agents: Vec<RecordedAgent>,
    window: &Window,
) -> Result<(Snapshot, Coverage), TwinError> {
    let bad = |field: String, reason: String| TwinError::BadField { field, reason };
    if !(window.since.is_finite() && window.until.is_finite() && window.until > window.since) {
        return Err(bad(
            "since".into(),
            format!("the window [{}, {}] is empty", window.since, window.until),
        ));
    }
    // The scaler's step and lead: those of most receipts (ties: the shorter step). Receipts
    // made with others (the tick changed in the window) are set aside.
    let mut counts: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for r in agents.iter().flat_map(|a| &a.scales) {
        let key = (
            r.inputs.settings.step_seconds.to_bits(),
            r.inputs.settings.lead_seconds.to_bits(),
        );
        *counts.entry(key).or_default() += 1;
    }
    let step_lead = counts
        .iter()
        .max_by(|a, b| {
            a.1.cmp(b.1)
                .then(f64::from_bits(b.0.0).total_cmp(&f64::from_bits(a.0.0)))
        })
        .map(|((s, l), _)| (f64::from_bits(*s), f64::from_bits(*l)));
    let mut coverage = Coverage::default();
    let mut agents = agents;
    if let Some((step, lead)) = step_lead {
        for a in &mut agents {
            let before = a.scales.len();
            a.scales
                .retain(|r| r.inputs.settings.step_seconds == step && r.inputs.settings.lead_seconds == lead);
            coverage.receipts_set_aside += before - a.scales.len();
        }
    }
    let (tick, startup) = match step_lead {
        Some((step, lead)) => (step, (lead - step).max(0.0)),
        None => (window.tick_seconds, window.startup_seconds),
    };
    let tick = tick.round().max(1.0);
    let startup = (startup / tick).round() * tick;
    let duration = ((window.until - window.since) / tick).floor().max(1.0) * tick;
    if duration / tick > super::snapshot::MAX_TICKS as f64 {
        return Err(bad(
            "since".into(),
            format!(
                "a window of {duration} s is {} ticks of {tick} s; at most {}",
                duration / tick,
                super::snapshot::MAX_TICKS
            ),
        ));
    }
    let bins = (duration / tick) as usize;
    let mut specs = Vec::new();
    let mut recorded = Vec::new();
    // The forecasts of the newest batch plan of the window (one pricing per snapshot).
    let mut pricing: Option<crate::batch::Pricing> = None;
    let mut sorted = agents;
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for mut a in sorted {
        if a.target.is_empty() {
            coverage.agents_without_position.push(a.name);
            continue;
        }
        if !a.batch_plans.is_empty() {
            // A batch agent: the work and deadline of its first plan in the window, run by the
            // twin's planner from the window's start (module doc).
            a.batch_plans.sort_by(|x, y| x.time.total_cmp(&y.time));
            let first = &a.batch_plans[0].inputs;
            for r in &a.batch_plans {
                let t = ((r.time - window.since) / tick).floor();
                if t >= 1.0 && (t as usize) < bins {
                    recorded.push(RecordedReplicas {
                        tick: t as u64,
                        agent: a.name.clone(),
                        replicas: r.to,
                    });
                }
            }
            if let Some(newest) = a.batch_plans.last() {
                pricing = Some(newest.inputs.pricing.clone());
            }
            coverage.agents_recorded += 1;
            coverage.receipts += a.batch_plans.len();
            specs.push(AgentSpec {
                name: a.name,
                tenant: a.tenant,
                cpu_millis: a.cpu_millis,
                memory_bytes: a.memory_bytes,
                capacity_per_replica: 1.0,
                bin_seconds: tick,
                demand: vec![0.0],
                method: Method::Manual,
                min_replicas: 0,
                max_replicas: first.job.max_replicas.max(1),
                replicas: a.replicas,
                target: a.target,
                coordinates: a.coordinates,
                near_agents: a.near_agents,
                peers: a.peers,
                scaling: None,
                history_seconds: None,
                initial_replicas: None,
                batch: Some(super::snapshot::BatchSpec {
                    replica_hours: first.job.work_replica_hours,
                    deadline_seconds: first.job.deadline_seconds - window.since,
                    budget: first.job.budget,
                }),
                bid: a.bid.clone(),
                pool: a.pool.clone(),
                avoid_nodes: a.avoid_nodes.clone(),
                max_distance: a.max_distance,
                preferred_regions: a.preferred_regions.clone(),
            });
            continue;
        }
        a.scales.sort_by(|x, y| x.time.total_cmp(&y.time));
        let combined: Vec<(f64, DecisionInputs, u32)> = a
            .scales
            .iter()
            .map(|r| {
                r.inputs
                    .combined()
                    .map(|c| (r.time, c, r.to))
                    .map_err(|e| bad(format!("receipts of {}", a.name), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let Some((_, newest, _)) = combined.last() else {
            coverage.agents_held += 1;
            specs.push(AgentSpec {
                name: a.name,
                tenant: a.tenant,
                cpu_millis: a.cpu_millis,
                memory_bytes: a.memory_bytes,
                capacity_per_replica: 1.0,
                bin_seconds: tick,
                demand: vec![0.0],
                method: Method::Manual,
                min_replicas: a.replicas.min(1),
                max_replicas: a.replicas.max(1),
                replicas: a.replicas,
                target: a.target,
                coordinates: a.coordinates,
                near_agents: a.near_agents,
                peers: a.peers,
                scaling: None,
                history_seconds: None,
                initial_replicas: None,
                batch: None,
                bid: a.bid.clone(),
                pool: a.pool.clone(),
                avoid_nodes: a.avoid_nodes.clone(),
                max_distance: a.max_distance,
                preferred_regions: a.preferred_regions.clone(),
            });
            continue;
        };
        coverage.agents_recorded += 1;
        coverage.receipts += combined.len();
        let mut demand: Vec<Option<f64>> = vec![None; bins];
        let mut longest = 1usize;
        for (time, inputs, _) in &combined {
            let m = inputs.demand.len();
            longest = longest.max(m);
            let step = inputs.settings.step_seconds;
            for (j, v) in inputs.demand.iter().enumerate() {
                let at = time - (m - 1 - j) as f64 * step;
                let bin = ((at - window.since) / tick).floor();
                if bin >= 0.0 && (bin as usize) < bins {
                    demand[bin as usize] = Some(*v);
                }
            }
        }
        coverage.bins += bins;
        coverage.estimated_bins += demand.iter().filter(|v| v.is_none()).count();
        let first_known = demand.iter().flatten().next().copied().unwrap_or(0.0);
        let mut last = first_known;
        let demand: Vec<f64> = demand
            .into_iter()
            .map(|v| {
                last = v.unwrap_or(last);
                last
            })
            .collect();
        for (time, _, to) in &combined {
            let t = ((time - window.since) / tick).floor();
            if t >= 1.0 && (t as usize) < bins {
                recorded.push(RecordedReplicas {
                    tick: t as u64,
                    agent: a.name.clone(),
                    replicas: *to,
                });
            }
        }
        let settings = newest.settings.clone();
        specs.push(AgentSpec {
            name: a.name,
            tenant: a.tenant,
            cpu_millis: a.cpu_millis,
            memory_bytes: a.memory_bytes,
            capacity_per_replica: settings.target_per_replica,
            bin_seconds: tick,
            demand,
            method: settings.method,
            min_replicas: settings.min_replicas,
            max_replicas: settings.max_replicas,
            replicas: a.replicas,
            target: a.target,
            coordinates: a.coordinates,
            near_agents: a.near_agents,
            peers: a.peers,
            history_seconds: Some(longest as f64 * tick),
            // The count when the window opens: a decision at tick 0 is the start state.
            initial_replicas: Some(match combined.first() {
                Some((time, _, to)) if ((time - window.since) / tick).floor() < 1.0 => *to,
                Some((_, inputs, _)) => inputs.current_replicas,
                None => a.replicas,
            }),
            scaling: Some(settings),
            batch: None,
            bid: a.bid.clone(),
            pool: a.pool.clone(),
            avoid_nodes: a.avoid_nodes.clone(),
            max_distance: a.max_distance,
            preferred_regions: a.preferred_regions.clone(),
        });
    }
    // Peers outside the snapshot (no position) are dropped.
    let names: std::collections::BTreeSet<String> = specs.iter().map(|a| a.name.clone()).collect();
    for a in &mut specs {
        a.peers.retain(|p, _| names.contains(p));
    }
    recorded.sort_by(|x, y| x.tick.cmp(&y.tick).then(x.agent.cmp(&y.agent)));
    let snapshot = Snapshot {
        version: VERSION,
        objectives: window.objectives,
        kappa: window.kappa,
        routing: Routing::default(),
        tick_seconds: tick,
        startup_seconds: startup,
        duration_seconds: duration,
        nodes,
        zone_latency_ms: BTreeMap::new(),
        agents: specs,
        ms_per_distance: 1.0,
        descheduler_every_ticks: 0,
        fixed_targets: false,
        agent_resync_seconds: 300.0,
        scheduler: Default::default(),
        scheduler_seed: 0,
        // Batch agents plan over the recorded forecasts, on the operator's clock (Unix seconds).
        clock_start_seconds: if pricing.is_some() { window.since } else { 0.0 },
        pricing,
        batch_timing: Default::default(),
        outages: Vec::new(),
        failure_detection_seconds: 15.0,
        max_hourly_cost: window.max_hourly_cost,
        // The agents' names are `namespace/name` already.
        namespace: String::new(),
        recorded: Some(super::snapshot::Recorded {
            replicas: recorded,
            placements: Vec::new(),
        }),
    };
    snapshot.validate()?;
    Ok((snapshot, coverage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling_policy::{Observed, PolicySettings, decide_observed};

    fn nodes() -> Vec<NodeSpec> {
        (0..3)
            .map(|i| NodeSpec {
                name: format!("n{i}"),
                labels: BTreeMap::from([(crate::labels::ZONE_LABEL.to_string(), format!("z{i}"))]),
                position: vec![0.1 * f64::from(i), 0.0],
                cpu_millis: 64_000,
                memory_bytes: 256 << 30,
                max_pods: 110,
                hourly_cost: Some(0.1),
                energy_class: None,
                spot: false,
            })
            .collect()
    }

    fn window() -> Window {
        Window {
            since: 1_000_000.0,
            until: 1_000_000.0 + 3600.0,
            tick_seconds: 15.0,
            startup_seconds: 0.0,
            objectives: Objectives::default(),
            kappa: 1.0,
            max_hourly_cost: None,
        }
    }

    /// A demand with a ramp up and back down (per 15 s sample).
    fn demand(t: usize) -> f64 {
        let x = t as f64;
        if (60..120).contains(&t) {
            20.0 + 2.0 * (x - 60.0)
        } else if (120..180).contains(&t) {
            140.0 - 2.0 * (x - 120.0)
        } else {
            20.0
        }
    }

    /// Runs the operator's scaler path (`decide_observed`, one sync per tick, a replica ready one
    /// tick after it is asked for, the real HPA state carried) over the window and returns the
    /// receipts it writes: one per change, with its inputs.
    fn scaler_receipts(method: Method) -> Vec<ScaleRecord> {
        scaler_receipts_with(method, false)
    }

    fn scaler_receipts_with(method: Method, one_sample: bool) -> Vec<ScaleRecord> {
        let w = window();
        let mut settings = PolicySettings::new(method, 1, 20, 10.0);
        settings.step_seconds = 15.0;
        settings.lead_seconds = 15.0;
        let mut replicas = 2u32;
        let mut ready = 2u32;
        let mut hpa = None;
        let mut last_change: Option<f64> = None;
        let mut out = Vec::new();
        let mut since_receipt: Vec<f64> = Vec::new();
        for t in 0..240usize {
            let now = w.since + 15.0 * t as f64;
            // Predictive: the history window; reactive: as the scaler keeps them, the samples
            // since the last receipt (`one_sample`: only the current one, as before).
            since_receipt.push(demand(t));
            let window: Vec<f64> = match method {
                Method::Reactive if one_sample => vec![demand(t)],
                Method::Reactive => since_receipt.clone(),
                _ => (t.saturating_sub(239)..=t).map(demand).collect(),
            };
            let observed = Observed {
                settings: settings.clone(),
                demands: vec![(window, 10.0)],
                current_replicas: replicas,
                ready_replicas: ready,
                since_last_change_seconds: last_change.map(|c| now - c),
                now_seconds: now - w.since,
            };
            let (inputs, decision, state) = decide_observed(observed, hpa.as_ref()).unwrap();
            if let Some(s) = state {
                hpa = Some(s);
            }
            ready = replicas;
            if decision.desired != replicas {
                since_receipt.clear();
                out.push(ScaleRecord {
                    time: now,
                    inputs,
                    to: decision.desired,
                });
                replicas = decision.desired;
                last_change = Some(now);
            }
        }
        out
    }

    fn agent(name: &str, scales: Vec<ScaleRecord>) -> RecordedAgent {
        RecordedAgent {
            name: name.into(),
            tenant: None,
            cpu_millis: 100,
            memory_bytes: 64 << 20,
            replicas: 3,
            target: vec![0.0, 0.0],
            coordinates: None,
            peers: BTreeMap::new(),
            near_agents: Vec::new(),
            scales,
            batch_plans: Vec::new(),
            bid: None,
            pool: None,
            avoid_nodes: Vec::new(),
            max_distance: None,
            preferred_regions: Vec::new(),
        }
    }

    #[test]
    fn a_batch_agents_plans_in_the_window_become_a_batch_agent_of_the_snapshot_that_reproduces_them() {
        let w = window();
        let inputs = |time: f64, work: f64| crate::batch::BatchInputs {
            job: crate::batch::BatchJob {
                work_replica_hours: work,
                max_replicas: 2,
                now_seconds: time,
                deadline_seconds: w.since + 2.0 * 3600.0,
                budget: None,
            },
            pricing: crate::batch::Pricing {
                slot_seconds: 3600.0,
                pools: BTreeMap::from([(
                    "default".to_string(),
                    crate::batch::PoolForecast {
                        price: vec![1.0],
                        carbon: vec![],
                        capacity: None,
                    },
                )]),
            },
            weights: crate::batch::Weights::default(),
        };
        let mut a = agent("ns/render", Vec::new());
        let decided = |time: f64, work: f64| {
            let i = inputs(time, work);
            let to = crate::batch::decide(&i).unwrap().replicas;
            BatchRecord { time, inputs: i, to }
        };
        // As the scaler records them: two replicas from the start (tick 2); the hour turns 800 s
        // in (the window starts at 13:46:40 UTC) and the 0.05 replica-hours left take one
        // replica (tick 54); none once the half replica-hour is done (990 s, tick 66).
        a.batch_plans = vec![
            decided(w.since + 30.0, 0.5),
            decided(w.since + 810.0, 0.5 - 2.0 * 810.0 / 3600.0),
            decided(w.since + 990.0, 0.0),
        ];
        let to: Vec<u32> = a.batch_plans.iter().map(|r| r.to).collect();
        assert_eq!(to, [2, 1, 0]);
        let (s, coverage) = snapshot_of(nodes(), vec![a], &w).unwrap();
        assert_eq!(coverage.agents_recorded, 1);
        assert_eq!(s.clock_start_seconds, w.since);
        assert!(s.pricing.is_some());
        let b = s.agents[0].batch.as_ref().unwrap();
        assert_eq!((b.replica_hours, b.deadline_seconds), (0.5, 7200.0));
        let report = crate::twin::run_report(&s, false, &mut |_, _| {}).unwrap();
        assert_eq!(report.agreement, Some(1.0), "{report:?}");
        let outcome = &report.batch[0];
        assert!(
            outcome.deadline_met && outcome.replica_hours >= 0.5 - 1e-9,
            "{outcome:?}"
        );
        // Control: a recorded count the plan never makes is not reproduced.
        let mut wrong = agent("ns/render", Vec::new());
        let mut r = decided(w.since + 30.0, 0.5);
        r.to = 1;
        wrong.batch_plans = vec![r];
        let (s, _) = snapshot_of(nodes(), vec![wrong], &w).unwrap();
        assert_eq!(
            crate::twin::run_report(&s, false, &mut |_, _| {}).unwrap().agreement,
            Some(0.0)
        );
    }

    #[test]
    fn the_twin_reproduces_every_predictive_decision_the_scaler_recorded() {
        let scales = scaler_receipts(Method::Predictive);
        assert!(scales.len() >= 4, "the ramp makes the scaler act: {}", scales.len());
        let (s, coverage) = snapshot_of(nodes(), vec![agent("ns/web", scales.clone())], &window()).unwrap();
        assert_eq!((coverage.agents_recorded, coverage.receipts), (1, scales.len()));
        assert_eq!((s.tick_seconds, s.startup_seconds), (15.0, 0.0));
        let recorded = &s.recorded.as_ref().unwrap().replicas;
        // The first receipt falls in tick 0 (the start state); every other is a recorded decision.
        assert_eq!(scales[0].time, window().since);
        assert_eq!(recorded.len(), scales.len() - 1, "{recorded:?}");
        assert_eq!(s.agents[0].initial_replicas, Some(scales[0].to));
        let report = super::super::run_report(&s, false, &mut |_, _| {}).unwrap();
        assert_eq!(report.agreement, Some(1.0), "{} decisions", recorded.len());
        // A counterfactual of another method drops the recorded settings and runs.
        let mut reactive = s.clone();
        super::super::apply_set(&mut reactive, "agent/*.scaling.method=reactive").unwrap();
        assert_eq!(
            (reactive.agents[0].method, reactive.agents[0].scaling.is_none()),
            (Method::Reactive, true)
        );
        let other = super::super::run_report(&reactive, false, &mut |_, _| {}).unwrap();
        assert_ne!(other.metrics, report.metrics);
    }

    #[test]
    fn a_changed_demand_record_is_not_reproduced() {
        // Control for the test above: the same receipts with the demand they record doubled.
        let mut scales = scaler_receipts(Method::Predictive);
        for r in &mut scales {
            for v in &mut r.inputs.demand {
                *v *= 2.0;
            }
        }
        let (s, _) = snapshot_of(nodes(), vec![agent("ns/web", scales)], &window()).unwrap();
        let report = super::super::run_report(&s, false, &mut |_, _| {}).unwrap();
        assert!(report.agreement.unwrap() < 0.5, "{:?}", report.agreement);
    }

    #[test]
    fn the_twin_reproduces_every_reactive_decision_from_the_samples_since_each_receipt() {
        let scales = scaler_receipts(Method::Reactive);
        assert!(scales.len() >= 4, "{}", scales.len());
        let (s, coverage) = snapshot_of(nodes(), vec![agent("ns/web", scales)], &window()).unwrap();
        let estimated = coverage.estimated_bins;
        let agreement = super::super::run_report(&s, false, &mut |_, _| {})
            .unwrap()
            .agreement
            .unwrap();
        assert_eq!(agreement, 1.0);
        // Control: receipts of one sample each (what the scaler recorded before) leave the
        // demand between changes to estimate, and the twin misses decisions.
        let scales = scaler_receipts_with(Method::Reactive, true);
        let (s, coverage) = snapshot_of(nodes(), vec![agent("ns/web", scales.clone())], &window()).unwrap();
        assert_eq!(coverage.bins - coverage.estimated_bins, scales.len());
        assert!(
            estimated < coverage.estimated_bins / 2,
            "{estimated} vs {}",
            coverage.estimated_bins
        );
        let agreement = super::super::run_report(&s, false, &mut |_, _| {})
            .unwrap()
            .agreement
            .unwrap();
        assert!(agreement < 0.9, "{agreement}");
    }

    #[test]
    fn an_agent_without_receipts_is_held_and_one_without_a_position_is_left_out() {
        let mut lost = agent("ns/lost", Vec::new());
        lost.target.clear();
        let mut held = agent("ns/held", Vec::new());
        held.peers.insert("ns/lost".into(), 1.0);
        let (s, coverage) = snapshot_of(nodes(), vec![held, lost], &window()).unwrap();
        assert_eq!(coverage.agents_held, 1);
        assert_eq!(coverage.agents_without_position, vec!["ns/lost".to_string()]);
        assert_eq!(s.agents.len(), 1);
        assert_eq!(s.agents[0].method, Method::Manual);
        assert!(s.agents[0].peers.is_empty());
        let report = super::super::run_report(&s, false, &mut |_, _| {}).unwrap();
        assert_eq!(report.metrics.scaling_decisions, 0);
        assert_eq!(report.agreement, None);
    }

    #[test]
    fn receipts_of_another_scaler_step_are_set_aside_and_an_empty_window_is_refused() {
        let a = scaler_receipts(Method::Predictive);
        let mut b = a.clone();
        b.truncate(3);
        for r in &mut b {
            r.inputs.settings.step_seconds = 30.0;
        }
        let (s, coverage) = snapshot_of(nodes(), vec![agent("ns/a", a.clone()), agent("ns/b", b)], &window()).unwrap();
        assert_eq!((coverage.receipts, coverage.receipts_set_aside), (a.len(), 3));
        assert_eq!(s.tick_seconds, 15.0);
        assert_eq!(coverage.agents_held, 1, "ns/b has no receipt left: held");
        let mut w = window();
        w.until = w.since;
        let err = snapshot_of(nodes(), Vec::new(), &w).unwrap_err();
        assert!(err.to_string().contains("since"), "{err}");
        // A window longer than a run may take is refused before anything is allocated.
        w.until = w.since + 1e20;
        let err = snapshot_of(nodes(), vec![agent("ns/a", a)], &w).unwrap_err();
        assert!(err.to_string().contains("ticks"), "{err}");
    }
}
