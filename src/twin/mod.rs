//! The cluster twin (what-if): a discrete-time simulation of nodes and agents that runs MOM's own
//! decision functions — the scaling policy the operator's scaler runs
//! ([`crate::simulator::OperatorPolicy`], i.e. `scaling_policy::decide_observed`), the
//! extender's filter and scores ([`crate::placement::filter`], [`crate::placement::score_breakdown`],
//! the scheduler binding the top score) and the scale-down order
//! ([`crate::placement::scale_down_order`]) — and reports what they cost.
//!
//! Model, per tick of `tickSeconds` (the scaler's sync): each agent's demand is the value of its
//! trace bin holding the tick; its policy decides the replicas; added replicas are placed one by
//! one (filter, then the best score, ties by name) and serve `startupSeconds` later; removed
//! replicas go at once, starting ones first, then the farthest from the agent's target. A
//! replica that fits nowhere stays Pending (requested, not serving) and is tried again each tick.
//!
//! Metrics ([`Metrics`]), summed over the run:
//! - `latencyMs`: time- and traffic-weighted mean latency between the serving replicas of each
//!   agent and of its peers: Σ w·mean-pair-latency / Σ w over agent–peer pairs with replicas on
//!   both sides, averaged over ticks; pair latency = the snapshot's zone-to-zone matrix
//!   (`zoneLatencyMs`, 0 within a zone unless given);
//! - `sloViolationMinutes`: Σ over agents and ticks of `tick/60` where demand > serving
//!   replicas × `capacityPerReplica`;
//! - `replicaHours`: Σ requested replicas × `tick/3600`;
//! - `cost`: Σ over ticks and nodes hosting at least one replica of `hourlyCost × tick/3600`
//!   (what the node-hours of used nodes cost);
//! - `energy`: Σ replica-hours × the node's energy-class weight (A = 1 … E = 5, unknown 3).
//!
//! Not modelled (yet): the descheduler, the auction, failover, the strategies' placement rules
//! (avoid-lists, locality, preferred regions, redundancy caps and the extender's narrowing to one
//! failure domain, tenancy isolation), and recorded decisions to agree with (`agreement` is
//! reported as unknown). Pure and deterministic: sorted maps, no clock.

pub mod pareto;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::placement::{self, AgentPolicy, NodeState, Objectives, PodDemand, Resources, Routing};
use crate::scaling_policy::{Method, PolicySettings};
use crate::simulator::{ClusterModel, Observation, OperatorPolicy, OperatorPolicyConfig};
pub use snapshot::{AgentSpec, NodeSpec, Snapshot};

/// Errors of the twin; each names the field and value.
#[derive(Debug, Error)]
pub enum TwinError {
    #[error("twin snapshot: {field}: {reason}")]
    BadField { field: String, reason: String },
    #[error("twin: agent {agent}: {source}")]
    Policy {
        agent: String,
        #[source]
        source: crate::simulator::SimError,
    },
}

/// What a run cost (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub latency_ms: f64,
    pub slo_violation_minutes: f64,
    pub replica_hours: f64,
    pub cost: f64,
    pub energy: f64,
    /// Placements made (one per replica bound).
    pub placements: u64,
    /// Replica-ticks that found no node.
    pub pending_ticks: u64,
}

/// One replica in the twin.
#[derive(Debug, Clone)]
struct Replica {
    id: u64,
    /// Index into the snapshot's nodes; `None` while Pending.
    node: Option<usize>,
    /// Tick index from which it serves.
    serves_from: u64,
}

struct AgentRun {
    policy: OperatorPolicy,
    replicas: Vec<Replica>,
    history: Vec<f64>,
}

/// Energy-class weight (A = 1 … E = 5, unknown 3).
fn energy_weight(class: Option<char>) -> f64 {
    match class.map(|c| c.to_ascii_uppercase()) {
        Some(c @ 'A'..='E') => f64::from(c as u8 - b'A' + 1),
        _ => 3.0,
    }
}

/// Runs the snapshot through the twin and returns its metrics. `progress(done, total)` is called
/// about a hundred times.
pub fn run(s: &Snapshot, progress: &mut dyn FnMut(u64, u64)) -> Result<Metrics, TwinError> {
    s.validate()?;
    let tick = s.tick_seconds;
    let zone_of: Vec<String> = s
        .nodes
        .iter()
        .map(|n| n.labels.get(crate::labels::ZONE_LABEL).cloned().unwrap_or_default())
        .collect();
    let labels: Vec<Arc<BTreeMap<String, String>>> = s.nodes.iter().map(|n| Arc::new(n.labels.clone())).collect();
    let mut requested: Vec<Resources> = vec![Resources::default(); s.nodes.len()];
    let mut pods: Vec<u32> = vec![0; s.nodes.len()];
    let ticks = s.ticks();
    let mut runs: Vec<AgentRun> = Vec::with_capacity(s.agents.len());
    for a in &s.agents {
        let cluster = ClusterModel {
            capacity_per_replica: a.capacity_per_replica,
            startup_seconds: s.startup_seconds,
            bin_seconds: a.bin_seconds,
            sync_seconds: tick,
            min_replicas: a.min_replicas,
            max_replicas: a.max_replicas,
        };
        let mut cfg = OperatorPolicyConfig::new(a.method);
        cfg.settings = PolicySettings::new(a.method, a.min_replicas, a.max_replicas, a.capacity_per_replica);
        let policy = OperatorPolicy::new(&cfg, &cluster).map_err(|source| TwinError::Policy {
            agent: a.name.clone(),
            source,
        })?;
        runs.push(AgentRun {
            policy,
            replicas: Vec::new(),
            history: Vec::new(),
        });
    }
    let agent_index: BTreeMap<&str, usize> = s.agents.iter().enumerate().map(|(i, a)| (a.name.as_str(), i)).collect();
    let mut m = Metrics::default();
    let mut next_id = 0u64;
    let mut latency_sum = 0.0;
    let mut latency_ticks = 0u64;
    let startup_ticks = (s.startup_seconds / tick).ceil() as u64;
    for t in 0..ticks {
        if t % (ticks / 100).max(1) == 0 {
            progress(t, ticks);
        }
        let now = t as f64 * tick;
        // Scaling, then placement, agent by agent in snapshot order (sorted by name).
        for (i, a) in s.agents.iter().enumerate() {
            let bin = ((now / a.bin_seconds).floor() as usize).min(a.demand.len().saturating_sub(1));
            let run = &mut runs[i];
            if run.history.len() <= bin {
                run.history.extend_from_slice(&a.demand[run.history.len()..=bin]);
            }
            let spec = run.replicas.len() as u32;
            let ready = run
                .replicas
                .iter()
                .filter(|r| r.node.is_some() && r.serves_from <= t)
                .count() as u32;
            let desired = if t == 0 {
                // A steady start, as the simulator's: the replicas the first demand needs, serving.
                let first = (a.demand[0] / a.capacity_per_replica - 1e-9).ceil().max(0.0) as u32;
                match a.method {
                    Method::Manual => a.replicas,
                    _ => first,
                }
                .clamp(a.min_replicas, a.max_replicas)
            } else {
                let obs = Observation {
                    now,
                    bin,
                    history: &run.history,
                    spec_replicas: spec,
                    ready_replicas: ready,
                };
                run.policy.decide(&obs).map_err(|source| TwinError::Policy {
                    agent: a.name.clone(),
                    source,
                })?
            };
            let serves_from = if t == 0 { 0 } else { t + startup_ticks };
            for _ in spec..desired {
                run.replicas.push(Replica {
                    id: next_id,
                    node: None,
                    serves_from,
                });
                next_id += 1;
            }
            if desired < spec {
                remove_replicas(s, a, run, spec - desired, t, &mut requested, &mut pods);
            }
        }
        // Place every Pending replica (new ones and earlier misses), agents in order.
        for (i, a) in s.agents.iter().enumerate() {
            let pending: Vec<usize> = (0..runs[i].replicas.len())
                .filter(|&k| runs[i].replicas[k].node.is_none())
                .collect();
            for k in pending {
                let choice = place(s, a, &runs[i].replicas, &labels, &zone_of, &requested, &pods);
                match choice {
                    Some(n) => {
                        runs[i].replicas[k].node = Some(n);
                        requested[n] = requested[n].saturating_add(a.requests());
                        pods[n] += 1;
                        m.placements += 1;
                    }
                    None => m.pending_ticks += 1,
                }
            }
        }
        // Metrics of this tick.
        let hours = tick / 3600.0;
        for (i, a) in s.agents.iter().enumerate() {
            let run = &runs[i];
            let serving = run
                .replicas
                .iter()
                .filter(|r| r.node.is_some() && r.serves_from <= t)
                .count();
            let bin = ((now / a.bin_seconds).floor() as usize).min(a.demand.len() - 1);
            if a.demand[bin] > serving as f64 * a.capacity_per_replica * (1.0 + 1e-12) {
                m.slo_violation_minutes += tick / 60.0;
            }
            m.replica_hours += run.replicas.len() as f64 * hours;
            for r in &run.replicas {
                if let Some(n) = r.node {
                    m.energy += hours * energy_weight(s.nodes[n].energy_class);
                }
            }
        }
        for (n, node) in s.nodes.iter().enumerate() {
            if pods[n] > 0 {
                m.cost += node.hourly_cost.unwrap_or(0.0) * hours;
            }
        }
        if let Some(l) = traffic_latency(s, &runs, &agent_index, &zone_of, t) {
            latency_sum += l;
            latency_ticks += 1;
        }
    }
    progress(ticks, ticks);
    m.latency_ms = if latency_ticks > 0 {
        latency_sum / latency_ticks as f64
    } else {
        0.0
    };
    Ok(m)
}

/// Removes `count` replicas of agent `a`: Pending and starting ones first (newest first), then
/// the serving ones in [`placement::scale_down_order`].
fn remove_replicas(
    s: &Snapshot,
    a: &AgentSpec,
    run: &mut AgentRun,
    count: u32,
    t: u64,
    requested: &mut [Resources],
    pods: &mut [u32],
) {
    let mut order: Vec<u64> = run
        .replicas
        .iter()
        .rev()
        .filter(|r| r.node.is_none() || r.serves_from > t)
        .map(|r| r.id)
        .collect();
    let serving: Vec<(String, Option<Vec<f64>>)> = run
        .replicas
        .iter()
        .filter(|r| r.node.is_some() && r.serves_from <= t)
        .map(|r| (format!("{:020}", r.id), r.node.map(|n| s.nodes[n].position.clone())))
        .collect();
    order.extend(
        placement::scale_down_order(&serving, &a.target, s.kappa)
            .iter()
            .filter_map(|name| name.parse::<u64>().ok()),
    );
    for id in order.into_iter().take(count as usize) {
        if let Some(k) = run.replicas.iter().position(|r| r.id == id) {
            let r = run.replicas.remove(k);
            if let Some(n) = r.node {
                requested[n] = Resources {
                    cpu_millis: requested[n].cpu_millis.saturating_sub(a.cpu_millis),
                    memory_bytes: requested[n].memory_bytes.saturating_sub(a.memory_bytes),
                };
                pods[n] = pods[n].saturating_sub(1);
            }
        }
    }
}

/// The node the scheduler with MOM's extender binds one more replica of `a` to: the extender's
/// filter over every node, then the top score among those that pass (ties: first name).
fn place(
    s: &Snapshot,
    a: &AgentSpec,
    replicas: &[Replica],
    labels: &[Arc<BTreeMap<String, String>>],
    zone_of: &[String],
    requested: &[Resources],
    pods: &[u32],
) -> Option<usize> {
    let states: Vec<NodeState> = s
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeState {
            name: n.name.clone(),
            labels: labels[i].clone(),
            position: n.position.clone(),
            allocatable: Resources {
                cpu_millis: n.cpu_millis,
                memory_bytes: n.memory_bytes,
            },
            requested: requested[i],
            tentative: Resources::default(),
            tentative_pods: 0,
            pods: pods[i],
            max_pods: n.max_pods,
            tenants: BTreeMap::new(),
            hourly_cost: n.hourly_cost,
            spot: n.spot,
            energy_class: n.energy_class,
        })
        .collect();
    let mut by_domain: BTreeMap<String, u32> = BTreeMap::new();
    let mut positions = Vec::new();
    for n in replicas.iter().filter_map(|r| r.node) {
        *by_domain.entry(zone_of[n].clone()).or_default() += 1;
        positions.push(s.nodes[n].position.clone());
    }
    let policy = AgentPolicy {
        target: a.target.clone(),
        spread_label: Some(crate::labels::ZONE_LABEL.to_string()),
        replicas_by_domain: by_domain,
        replica_positions: positions,
        replicas: replicas.len() as u32,
        ..AgentPolicy::default()
    };
    let demand = PodDemand {
        requests: a.requests(),
        tenant: a.tenant.clone(),
        strict_isolation: false,
        standby: false,
    };
    let refs: Vec<&NodeState> = states.iter().collect();
    let verdict = placement::filter(&demand, Some(&policy), &refs, s.kappa);
    let passing: Vec<&NodeState> = refs
        .iter()
        .copied()
        .filter(|n| verdict.passed.contains(&n.name))
        .collect();
    let scores = placement::score_breakdown(&demand, Some(&policy), &passing, &s.objectives, s.routing, s.kappa);
    let best = scores
        .iter()
        .max_by(|x, y| x.score.cmp(&y.score).then_with(|| y.node.cmp(&x.node)))?;
    s.nodes.iter().position(|n| n.name == best.node)
}

/// Traffic-weighted mean replica-to-replica latency between agents and their peers at tick `t`
/// (module doc); `None` when no agent–peer pair has serving replicas on both sides.
fn traffic_latency(
    s: &Snapshot,
    runs: &[AgentRun],
    agent_index: &BTreeMap<&str, usize>,
    zone_of: &[String],
    t: u64,
) -> Option<f64> {
    let zones = |i: usize| -> BTreeMap<&str, u32> {
        let mut z: BTreeMap<&str, u32> = BTreeMap::new();
        for r in runs[i].replicas.iter().filter(|r| r.serves_from <= t) {
            if let Some(n) = r.node {
                *z.entry(zone_of[n].as_str()).or_default() += 1;
            }
        }
        z
    };
    let mut weighted = 0.0;
    let mut weights = 0.0;
    for (i, a) in s.agents.iter().enumerate() {
        let mine = zones(i);
        if mine.is_empty() {
            continue;
        }
        for (peer, &w) in &a.peers {
            let Some(&j) = agent_index.get(peer.as_str()) else {
                continue;
            };
            let theirs = zones(j);
            let pairs: u32 = mine.values().sum::<u32>() * theirs.values().sum::<u32>();
            if pairs == 0 || w <= 0.0 {
                continue;
            }
            let mut total = 0.0;
            for (za, ca) in &mine {
                for (zb, cb) in &theirs {
                    total += f64::from(ca * cb) * s.zone_latency(za, zb);
                }
            }
            weighted += w * total / f64::from(pairs);
            weights += w;
        }
    }
    (weights > 0.0).then(|| weighted / weights)
}

/// A copy of `objectives` with `name` set to `value` and the other three scaled so that the four
/// still sum to 1 (they keep their proportions; all equal when they were all 0).
pub fn with_objective(objectives: &Objectives, name: &str, value: f64) -> Result<Objectives, TwinError> {
    if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
        return Err(TwinError::BadField {
            field: format!("objectives.{name}"),
            reason: format!("must be in [0, 1], got {value}"),
        });
    }
    let mut w = [
        ("performance", objectives.performance),
        ("cost", objectives.cost),
        ("reliability", objectives.reliability),
        ("sustainability", objectives.sustainability),
    ];
    let Some(k) = w.iter().position(|(n, _)| *n == name) else {
        return Err(TwinError::BadField {
            field: format!("objectives.{name}"),
            reason: "unknown objective (performance, cost, reliability, sustainability)".into(),
        });
    };
    let rest: f64 = w.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, (_, v))| v).sum();
    for (i, (_, v)) in w.iter_mut().enumerate() {
        *v = if i == k {
            value
        } else if rest > 0.0 {
            *v / rest * (1.0 - value)
        } else {
            (1.0 - value) / 3.0
        };
    }
    Ok(Objectives {
        performance: w[0].1,
        cost: w[1].1,
        reliability: w[2].1,
        sustainability: w[3].1,
    })
}

/// Applies one `--set KEY=VALUE` to a snapshot: `objectives.NAME=W` (the others rescaled, see
/// [`with_objective`]), `agent/NAME.scaling.method=predictive|reactive|manual` (`agent/*` for
/// every agent), `kappa=K`, `routing=greedy_forwarding|multipath_hyperbolic|gradient_flow`.
pub fn apply_set(s: &mut Snapshot, set: &str) -> Result<(), TwinError> {
    let bad = |field: &str, reason: String| TwinError::BadField {
        field: field.to_string(),
        reason,
    };
    let Some((key, value)) = set.split_once('=') else {
        return Err(bad(set, "expected KEY=VALUE".into()));
    };
    let (key, value) = (key.trim(), value.trim());
    if let Some(name) = key.strip_prefix("objectives.") {
        let v: f64 = value
            .parse()
            .map_err(|_| bad(key, format!("{value:?} is not a number")))?;
        s.objectives = with_objective(&s.objectives, name, v)?;
        return Ok(());
    }
    if let Some(rest) = key.strip_prefix("agent/") {
        let Some((agent, "scaling.method")) = rest.split_once('.') else {
            return Err(bad(key, "known agent fields: agent/NAME.scaling.method".into()));
        };
        let method: Method = serde_json::from_value(serde_json::Value::String(value.into()))
            .map_err(|_| bad(key, format!("{value:?} is not predictive, reactive or manual")))?;
        let mut found = false;
        for a in s.agents.iter_mut().filter(|a| agent == "*" || a.name == agent) {
            a.method = method;
            found = true;
        }
        return if found {
            Ok(())
        } else {
            Err(bad(key, format!("no agent named {agent:?} in the snapshot")))
        };
    }
    match key {
        "kappa" => {
            s.kappa = value
                .parse()
                .map_err(|_| bad(key, format!("{value:?} is not a number")))?;
        }
        "routing" => {
            s.routing = serde_json::from_value::<Routing>(serde_json::Value::String(value.into()))
                .map_err(|_| bad(key, format!("{value:?} is not a routing algorithm")))?;
        }
        _ => {
            return Err(bad(
                key,
                "unknown key (known: objectives.NAME, agent/NAME.scaling.method, kappa, routing)".into(),
            ));
        }
    }
    s.validate()
}

#[cfg(test)]
mod tests;
