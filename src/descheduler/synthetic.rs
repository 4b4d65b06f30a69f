//! Synthetic drifted clusters and multi-tick descheduling runs, for the benchmark, the CLI and
//! tests. Seeded (ChaCha8), so the same spec always gives the same cluster and the same run.
//!
//! **Cluster.** Nodes from `cluster_layout::UniformLayout` (regions × 3 zones), placed in the
//! ball by `placement::embed_nodes` (Sarkar over region → zone → node). Latency model, in ms:
//! same node 0.1, same zone 0.5, same region 2, across regions a fixed seeded value in 10…150
//! per region pair. Workload: applications of four agents — an *anchor* with an explicit
//! target and three dependents whose targets follow their peers (traffic weights 1…10),
//! 2…6 replicas each — all placed in the application's home zone.
//!
//! **Drift** (what happened since placement): 30 % of the anchors were re-homed, with their
//! replicas, to a zone in another region (their dependents stayed behind), 5 % of the replicas were scattered to random nodes, 2 % of the nodes are unhealthy
//! and 1 % anomalous, 3 % are overloaded (real usage ≈ 95 %), 1 % of the agents put one of
//! their nodes on the avoid-list.
//!
//! **Metric.** Traffic-weighted latency `Σ_e w_e · mean_{replica pairs of e} lat / Σ_e w_e`
//! over the peer edges, as in `make bench-placement`.
//!
//! **Run.** [`simulate`] plans a tick (with `super::plan_standalone`: there is no agent
//! controller, so the anchors' explicit targets and the dependents' peers' replicas give the
//! optima), applies the moves (the replacement lands where the plan reserved room, the
//! replica's `lastEvictedAt` becomes now), steps every agent's `previousTarget` to the planned
//! target, advances the clock, and repeats; it counts
//! evictions, evictions inside a replica's cool-off, replicas moved more than once and moves
//! back to a node the replica already left.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::context::saturating_sub;
use super::optimum::agent_optima;
use super::{Agent, DeschedulerError, Node, Peer, Plan, Pod, Settings, Snapshot};
use crate::cluster_layout::UniformLayout;
use crate::geometry::poincare;
use crate::labels::{HOSTNAME_LABEL, REGION_LABEL, ZONE_LABEL};
use crate::placement::{self, Resources};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSpec {
    pub pods: usize,
    pub nodes: usize,
    pub seed: u64,
}

/// Pairwise latency of nodes (indexes into the snapshot's nodes), in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    region: Vec<usize>,
    zone: Vec<usize>,
    region_ms: Vec<Vec<f64>>,
}

impl LatencyModel {
    pub fn latency_ms(&self, a: usize, b: usize) -> f64 {
        if a == b {
            0.1
        } else if self.zone[a] == self.zone[b] {
            0.5
        } else if self.region[a] == self.region[b] {
            2.0
        } else {
            self.region_ms[self.region[a]][self.region[b]]
        }
    }
}

/// A generated cluster: the drifted snapshot and its latency model.
#[derive(Debug, Clone)]
pub struct SyntheticCluster {
    pub snapshot: Snapshot,
    pub latency: LatencyModel,
}

/// Builds a drifted cluster (see the module doc).
pub fn drifted_cluster(spec: &SyntheticSpec) -> Result<SyntheticCluster, DeschedulerError> {
    let err = |m: String| DeschedulerError::Synthetic(m);
    if spec.nodes < 6 || spec.pods < 8 {
        return Err(err(format!(
            "need at least 6 nodes and 8 pods, got {} nodes and {} pods",
            spec.nodes, spec.pods
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let regions = (spec.nodes / 50).clamp(2, 8) as u32;
    let layout = UniformLayout {
        cpu_millis: 16_000,
        memory_bytes: 64 << 30,
        ..UniformLayout::with_total_nodes(regions, 3, spec.nodes as u32)
    };
    let specs = layout.nodes().map_err(|e| err(e.to_string()))?;
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        specs.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
    let keys = [REGION_LABEL, ZONE_LABEL, HOSTNAME_LABEL].map(String::from);
    let emb = placement::embed_nodes(&labels, &keys, 2).map_err(|e| err(e.to_string()))?;

    let mut region_names = BTreeMap::new();
    let mut zone_names = BTreeMap::new();
    let mut nodes = Vec::with_capacity(specs.len());
    let (mut region, mut zone) = (Vec::new(), Vec::new());
    for s in &specs {
        let r = s.labels.get(REGION_LABEL).cloned().unwrap_or_default();
        let z = s.labels.get(ZONE_LABEL).cloned().unwrap_or_default();
        let nr = region_names.len();
        region.push(*region_names.entry(r).or_insert(nr));
        let nz = zone_names.len();
        zone.push(*zone_names.entry(z).or_insert(nz));
        let position = emb
            .positions
            .get(&s.name)
            .cloned()
            .ok_or_else(|| err(format!("node {} has no position", s.name)))?;
        nodes.push(Node {
            name: s.name.clone(),
            labels: s.labels.clone(),
            position,
            allocatable: Resources {
                cpu_millis: s.cpu_millis,
                memory_bytes: s.memory_bytes,
            },
            requested: Resources::default(),
            used: Resources::default(),
            max_pods: s.pods,
            pods: 0,
            unhealthy: false,
            anomalous: false,
        });
    }
    let n_regions = region_names.len();
    let mut pair_ms = BTreeMap::new();
    for i in 0..n_regions {
        for j in i + 1..n_regions {
            pair_ms.insert((i, j), rng.random_range(10.0..150.0_f64).round());
        }
    }
    let region_ms: Vec<Vec<f64>> = (0..n_regions)
        .map(|i| {
            (0..n_regions)
                .map(|j| pair_ms.get(&(i.min(j), i.max(j))).copied().unwrap_or(0.0))
                .collect()
        })
        .collect();
    let n_zones = zone_names.len();
    let zone_nodes: Vec<Vec<usize>> = (0..n_zones)
        .map(|z| (0..nodes.len()).filter(|&n| zone[n] == z).collect())
        .collect();
    let zone_region: Vec<usize> = zone_nodes.iter().map(|ns| region[ns[0]]).collect();
    let zone_center: Vec<Vec<f64>> = zone_nodes
        .iter()
        .map(|ns| {
            let pts: Vec<Vec<f64>> = ns.iter().map(|&n| nodes[n].position.clone()).collect();
            poincare::frechet_mean(&pts, &vec![1.0; pts.len()], 1.0).map_err(|e| err(e.to_string()))
        })
        .collect::<Result<_, _>>()?;

    // Applications of four agents, all replicas in the home zone.
    let mut agents: Vec<Agent> = Vec::new();
    let mut pods: Vec<Pod> = Vec::new();
    let mut app = 0usize;
    while pods.len() < spec.pods {
        let home = rng.random_range(0..n_zones);
        let ns = format!("app-{app:04}");
        let names: Vec<String> = (0..4).map(|i| format!("{ns}/svc-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let peers = match i {
                0 => Vec::new(),
                1 => vec![(0, rng.random_range(1..=10))],
                2 => vec![(1, rng.random_range(1..=10)), (0, rng.random_range(1..=5))],
                _ => vec![(2, rng.random_range(1..=10))],
            };
            agents.push(Agent {
                name: name.clone(),
                target: (i == 0).then(|| zone_center[home].clone()),
                previous_target: None,
                peers: peers
                    .into_iter()
                    .map(|(j, w)| Peer {
                        agent: names[j].clone(),
                        weight: f64::from(w),
                    })
                    .collect(),
                avoid_nodes: BTreeSet::new(),
                max_distance: None,
                label_rules: Default::default(),
            });
            let replicas = rng.random_range(2..=6usize).min(spec.pods - pods.len()).max(1);
            for r in 0..replicas {
                let zn = &zone_nodes[home];
                let node = zn[rng.random_range(0..zn.len())];
                let cpu = rng.random_range(100..=400u64);
                let mem = rng.random_range(128..=512u64) << 20;
                let load = rng.random_range(0.3..1.2_f64);
                pods.push(Pod {
                    name: format!("svc-{i}-{r}"),
                    namespace: ns.clone(),
                    node: nodes[node].name.clone(),
                    agent: Some(name.clone()),
                    tenant: None,
                    strict_isolation: false,
                    standby: false,
                    requests: Resources {
                        cpu_millis: cpu,
                        memory_bytes: mem,
                    },
                    usage: Resources {
                        cpu_millis: (cpu as f64 * load) as u64,
                        memory_bytes: (mem as f64 * load.min(1.0)) as u64,
                    },
                    node_selector: BTreeMap::new(),
                    last_evicted_at: None,
                    protected: r == 0 && rng.random_bool(0.02),
                });
                if pods.len() >= spec.pods {
                    break;
                }
            }
            if pods.len() >= spec.pods {
                break;
            }
        }
        app += 1;
    }
    // Agents cut short by the pod budget have no replicas; keep them (a peer may name them).

    let mut snapshot = Snapshot {
        kappa: 1.0,
        now: 100_000,
        nodes,
        pods,
        agents,
    };
    // Where the replicas were steered before the drift: the optimum of the placed cluster.
    let before = agent_optima(&snapshot);
    for (a, prev) in snapshot.agents.iter_mut().zip(before) {
        a.previous_target = prev;
    }

    // Drift.
    let n_nodes = snapshot.nodes.len();
    for a in (0..snapshot.agents.len()).step_by(4) {
        if rng.random_bool(0.3) {
            let here = snapshot.agents[a]
                .target
                .as_ref()
                .and_then(|t| zone_center.iter().position(|c| c == t))
                .unwrap_or(0);
            let others: Vec<usize> = (0..n_zones).filter(|&z| zone_region[z] != zone_region[here]).collect();
            if !others.is_empty() {
                // The anchor was re-homed (its replicas were rescheduled there); its
                // dependents were left behind.
                let z = others[rng.random_range(0..others.len())];
                let anchor = &mut snapshot.agents[a];
                anchor.target = Some(zone_center[z].clone());
                anchor.previous_target = anchor.target.clone();
                let name = anchor.name.clone();
                for p in snapshot
                    .pods
                    .iter_mut()
                    .filter(|p| p.agent.as_deref() == Some(name.as_str()))
                {
                    let zn = &zone_nodes[z];
                    p.node = snapshot.nodes[zn[rng.random_range(0..zn.len())]].name.clone();
                }
            }
        }
    }
    for p in 0..snapshot.pods.len() {
        if rng.random_bool(0.05) {
            snapshot.pods[p].node = snapshot.nodes[rng.random_range(0..n_nodes)].name.clone();
        }
    }
    let flagged = |rng: &mut ChaCha8Rng, share: f64| {
        let k = ((n_nodes as f64 * share).ceil() as usize).max(1);
        (0..k)
            .map(|_| rng.random_range(0..n_nodes))
            .collect::<BTreeSet<usize>>()
    };
    for n in flagged(&mut rng, 0.02) {
        snapshot.nodes[n].unhealthy = true;
    }
    for n in flagged(&mut rng, 0.01) {
        snapshot.nodes[n].anomalous = true;
    }
    let hot = flagged(&mut rng, 0.03);
    for p in 0..snapshot.pods.len() {
        if rng.random_bool(0.01)
            && let Some(a) = snapshot.pods[p].agent.clone()
            && let Some(agent) = snapshot.agents.iter_mut().find(|x| x.name == a)
        {
            agent.avoid_nodes.insert(snapshot.pods[p].node.clone());
        }
    }

    // Requests and usage per node, then the overloaded nodes' background usage.
    let index = node_index(&snapshot);
    for p in &snapshot.pods {
        if let Some(&n) = index.get(&p.node) {
            let node = &mut snapshot.nodes[n];
            node.requested = node.requested.saturating_add(p.requests);
            node.used = node.used.saturating_add(p.usage);
        }
    }
    for n in 0..n_nodes {
        let node = &mut snapshot.nodes[n];
        let target = if hot.contains(&n) {
            0.95
        } else {
            rng.random_range(0.05..0.3)
        };
        let want = (node.allocatable.cpu_millis as f64 * target) as u64;
        node.used.cpu_millis = node.used.cpu_millis.max(want);
    }
    Ok(SyntheticCluster {
        latency: LatencyModel {
            region,
            zone,
            region_ms,
        },
        snapshot,
    })
}

/// Node name → index into `snapshot.nodes`.
fn node_index(snapshot: &Snapshot) -> BTreeMap<String, usize> {
    snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect()
}

/// Traffic-weighted latency in ms: `Σ_e w_e · mean_{replica pairs of e} lat / Σ_e w_e` over
/// every agent's peer edges whose both ends have replicas. 0 without such edges.
pub fn traffic_weighted_latency(snapshot: &Snapshot, model: &LatencyModel) -> f64 {
    let index: BTreeMap<&str, usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut replicas: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for p in &snapshot.pods {
        if let (Some(a), Some(&n)) = (p.agent.as_deref(), index.get(p.node.as_str())) {
            replicas.entry(a).or_default().push(n);
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    for a in &snapshot.agents {
        let Some(ra) = replicas.get(a.name.as_str()) else {
            continue;
        };
        for peer in &a.peers {
            let Some(rb) = replicas.get(peer.agent.as_str()) else {
                continue;
            };
            let mut sum = 0.0;
            for &x in ra {
                for &y in rb {
                    sum += model.latency_ms(x, y);
                }
            }
            num += peer.weight * sum / (ra.len() * rb.len()) as f64;
            den += peer.weight;
        }
    }
    if den > 0.0 { num / den } else { 0.0 }
}

/// Applies a plan to a snapshot as the cluster would: each moved replica runs on its planned
/// destination (the reservation held) with `lastEvictedAt = now`; every agent's
/// `previousTarget` becomes its planned target; the clock advances by `tick_seconds`.
pub fn apply_plan(snapshot: &mut Snapshot, plan: &Plan, tick_seconds: u64) {
    let index = node_index(snapshot);
    let pods: BTreeMap<(String, String), usize> = snapshot
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.namespace.clone(), p.name.clone()), i))
        .collect();
    for m in &plan.moves {
        let (Some(&p), Some(&from), Some(&to)) = (
            pods.get(&(m.namespace.clone(), m.pod.clone())),
            index.get(&m.from),
            index.get(&m.to),
        ) else {
            continue;
        };
        let pod = &mut snapshot.pods[p];
        pod.node = m.to.clone();
        pod.last_evicted_at = Some(snapshot.now);
        let (req, use_) = (pod.requests, pod.usage);
        let src = &mut snapshot.nodes[from];
        src.requested = saturating_sub(src.requested, req);
        src.used = saturating_sub(src.used, use_);
        let dst = &mut snapshot.nodes[to];
        dst.requested = dst.requested.saturating_add(req);
        dst.used = dst.used.saturating_add(use_);
    }
    let targets: BTreeMap<&str, &Vec<f64>> = plan.targets.iter().map(|t| (t.agent.as_str(), &t.target)).collect();
    for a in &mut snapshot.agents {
        if let Some(t) = targets.get(a.name.as_str()) {
            a.previous_target = Some((*t).clone());
        }
    }
    snapshot.now += tick_seconds;
}

/// What a multi-tick run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub ticks: u32,
    pub latency_before_ms: f64,
    pub latency_after_ms: f64,
    pub evictions: usize,
    pub evictions_by_strategy: BTreeMap<String, usize>,
    /// Evictions of a replica inside its cool-off (the planner forbids them: target 0).
    pub evicted_within_cool_off: usize,
    /// Replicas evicted more than once over the whole run.
    pub replicas_moved_more_than_once: usize,
    /// Moves back to a node the replica had already left (an eviction loop).
    pub moves_back_to_a_previous_node: usize,
    pub pods_on_flagged_nodes_before: usize,
    pub pods_on_flagged_nodes_after: usize,
    /// Evictions per tick.
    pub evictions_per_tick: Vec<usize>,
}

fn on_flagged(s: &Snapshot) -> usize {
    let flagged: BTreeSet<&str> = s
        .nodes
        .iter()
        .filter(|n| n.unhealthy || n.anomalous)
        .map(|n| n.name.as_str())
        .collect();
    s.pods
        .iter()
        .filter(|p| !p.protected && flagged.contains(p.node.as_str()))
        .count()
}

/// How a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOptions {
    pub ticks: u32,
    pub tick_seconds: u64,
    /// Every this many ticks, [`churn`] the cluster (0: never).
    pub churn_every: u32,
    /// Seed of the churn.
    pub seed: u64,
}

/// Churn: one agent with an explicit target is re-homed to a random node's position (its
/// previous target stays, so it moves there step by step), and the real usage of 2 % of the
/// pods changes by a factor 0.5…1.5 (the node's usage with it).
pub fn churn(snapshot: &mut Snapshot, rng: &mut ChaCha8Rng) {
    let anchors: Vec<usize> = (0..snapshot.agents.len())
        .filter(|&a| snapshot.agents[a].target.is_some())
        .collect();
    if !anchors.is_empty() && !snapshot.nodes.is_empty() {
        let a = anchors[rng.random_range(0..anchors.len())];
        let n = rng.random_range(0..snapshot.nodes.len());
        snapshot.agents[a].target = Some(snapshot.nodes[n].position.clone());
    }
    let index = node_index(snapshot);
    for p in 0..snapshot.pods.len() {
        if rng.random_bool(0.02) {
            let f = rng.random_range(0.5..1.5_f64);
            let pod = &mut snapshot.pods[p];
            let old = pod.usage;
            pod.usage.cpu_millis = (old.cpu_millis as f64 * f) as u64;
            let new = pod.usage;
            if let Some(&n) = index.get(&pod.node) {
                let node = &mut snapshot.nodes[n];
                node.used = saturating_sub(node.used, old).saturating_add(new);
            }
        }
    }
}

/// Runs `ticks` plan-apply rounds with `planner` (normally [`super::plan_standalone`], which
/// computes the agents' optima itself; the CLI wraps it to time it) and reports the run.
pub fn simulate<F>(
    cluster: &mut SyntheticCluster,
    settings: &Settings,
    run: &RunOptions,
    mut planner: F,
) -> Result<RunReport, DeschedulerError>
where
    F: FnMut(&Snapshot, &Settings) -> Result<Plan, DeschedulerError>,
{
    let RunOptions {
        ticks,
        tick_seconds,
        churn_every,
        seed,
    } = *run;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = RunReport {
        ticks,
        latency_before_ms: traffic_weighted_latency(&cluster.snapshot, &cluster.latency),
        pods_on_flagged_nodes_before: on_flagged(&cluster.snapshot),
        ..RunReport::default()
    };
    let mut history: BTreeMap<(String, String), (Vec<u64>, BTreeSet<String>)> = BTreeMap::new();
    for tick in 0..ticks {
        if churn_every > 0 && tick > 0 && tick % churn_every == 0 {
            churn(&mut cluster.snapshot, &mut rng);
        }
        let plan = planner(&cluster.snapshot, settings)?;
        let now = cluster.snapshot.now;
        for m in &plan.moves {
            let (times, left) = history.entry((m.namespace.clone(), m.pod.clone())).or_default();
            if times
                .last()
                .is_some_and(|&t| now.saturating_sub(t) < settings.planner.cool_off_seconds)
            {
                report.evicted_within_cool_off += 1;
            }
            if left.contains(&m.to) {
                report.moves_back_to_a_previous_node += 1;
            }
            times.push(now);
            left.insert(m.from.clone());
            *report
                .evictions_by_strategy
                .entry(m.strategy.as_str().to_string())
                .or_default() += 1;
        }
        report.evictions += plan.moves.len();
        report.evictions_per_tick.push(plan.moves.len());
        apply_plan(&mut cluster.snapshot, &plan, tick_seconds);
    }
    report.replicas_moved_more_than_once = history.values().filter(|(t, _)| t.len() > 1).count();
    report.latency_after_ms = traffic_weighted_latency(&cluster.snapshot, &cluster.latency);
    report.pods_on_flagged_nodes_after = on_flagged(&cluster.snapshot);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descheduler::plan_standalone;

    /// Small enough for a debug-build test; `mom deschedule bench` runs the large ones.
    fn small() -> SyntheticCluster {
        drifted_cluster(&SyntheticSpec {
            pods: 96,
            nodes: 36,
            seed: 7,
        })
        .unwrap()
    }

    #[test]
    fn the_same_seed_builds_the_same_cluster_and_another_seed_a_different_one() {
        let a = small();
        let b = small();
        assert_eq!(a.snapshot, b.snapshot);
        let c = drifted_cluster(&SyntheticSpec {
            pods: 96,
            nodes: 36,
            seed: 8,
        })
        .unwrap();
        assert_ne!(a.snapshot, c.snapshot);
        assert_eq!(a.snapshot.pods.len(), 96);
        assert!(a.snapshot.nodes.len() >= 36);
    }

    #[test]
    fn too_small_a_cluster_is_refused_with_the_sizes() {
        let e = drifted_cluster(&SyntheticSpec {
            pods: 3,
            nodes: 2,
            seed: 1,
        })
        .unwrap_err();
        assert!(e.to_string().contains("2 nodes and 3 pods"), "{e}");
    }

    #[test]
    fn descheduling_a_drifted_cluster_lowers_latency_without_eviction_loops() {
        let mut c = small();
        let settings = Settings::default();
        let run = RunOptions {
            ticks: 8,
            tick_seconds: 15,
            churn_every: 0,
            seed: 1,
        };
        let r = simulate(&mut c, &settings, &run, plan_standalone).unwrap();
        assert!(r.evictions > 0);
        assert!(
            r.latency_after_ms < r.latency_before_ms,
            "latency {} → {}",
            r.latency_before_ms,
            r.latency_after_ms
        );
        assert_eq!(r.evicted_within_cool_off, 0);
        assert_eq!(r.moves_back_to_a_previous_node, 0);
        assert!(r.pods_on_flagged_nodes_before > 0);
        assert_eq!(r.pods_on_flagged_nodes_after, 0, "{r:?}");
        assert!(
            r.evictions_per_tick
                .iter()
                .all(|&e| e <= settings.planner.max_evictions_total as usize),
            "{r:?}"
        );
    }

    #[test]
    fn no_replica_is_evicted_twice_within_its_cool_off_over_a_long_run_with_churn() {
        let mut c = small();
        let mut settings = Settings::default();
        // 30 ticks of 15 s against a 120 s cool-off: replicas become movable again mid-run.
        settings.planner.cool_off_seconds = 120;
        let run = RunOptions {
            ticks: 30,
            tick_seconds: 15,
            churn_every: 3,
            seed: 11,
        };
        let r = simulate(&mut c, &settings, &run, plan_standalone).unwrap();
        assert!(r.evictions > 0);
        assert_eq!(r.evicted_within_cool_off, 0, "{r:?}");
    }

    #[test]
    fn a_replayed_run_is_identical() {
        let settings = Settings::default();
        let mut a = small();
        let mut b = small();
        let run = RunOptions {
            ticks: 3,
            tick_seconds: 15,
            churn_every: 1,
            seed: 5,
        };
        let ra = simulate(&mut a, &settings, &run, plan_standalone).unwrap();
        let rb = simulate(&mut b, &settings, &run, plan_standalone).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(a.snapshot, b.snapshot);
    }
}
