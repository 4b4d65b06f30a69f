//! Evaluation of the root-cause localiser ([`super::rca`]) on injected faults: builds a cluster
//! from a TopoHub topology, injects a fault at a random node, rack, zone or region, gives every
//! node a metric series (faulty nodes shift after the fault, decoys elsewhere spike now and
//! then), runs the streaming detector ([`super::detector`]) on each series, localises from the
//! nodes it flags, and reports top-1 accuracy per level and the time to localise.
//! Inputs: a parsed [`Graph`] and an [`EvalConfig`]; output: an [`EvalReport`]. Deterministic:
//! fault `f` draws from ChaCha8 seeded with `splitmix64(seed + f)`.
//!
//! # Cluster
//! Sites of the topology are zones `site-NNN`; sites are grouped into
//! `R = max(2, round(√(sites / 2)))` regions by k-medoids on shortest-path delay
//! ([`sites_layout`]); each site holds `racks_per_site` racks `site-NNN-rK` of
//! `nodes_per_rack` nodes `sNNN-nJ` (rack `K = J / nodes_per_rack`).
//!
//! # Series and detection
//! `points` samples, one every `period_seconds`. Node `i` has level `μᵢ ~ U(20, 80)` and noise
//! `σᵢ = μᵢ · U(0.03, 0.10)`, `xₜ = μᵢ + σᵢ·zₜ` with `zₜ` standard normal (Box–Muller). The fault
//! starts at `t_f ~ U[points/2, 3·points/4)`; a faulty node shifts by `Δᵢ·σᵢ`,
//! `Δᵢ ~ U(shift_min, shift_max)` (default 3–6),
//! from `t_f + ℓᵢ`, lag `ℓᵢ ~ U{0..max_lag}`. Every other node is a decoy with probability
//! `decoy_share`: 1–3 one-point spikes of `U(4, 8)·σᵢ` at uniform times after the warm-up.
//! A node's evidence at `t` comes from one of two sources ([`Evidence`]):
//! - `shift` (default): the level-shift detector ([`super::shift`], a two-sided CUSUM on a
//!   spike-resistant baseline) run on the node's series; 1 while its CUSUM is at its limit
//!   (evidence 1), else 0. Binary, as the localiser's `p`/`q` model assumes: partial sums of
//!   noise on a flagged node's rack sibling would otherwise tip a node fault to its rack;
//! - `detector`: the streaming anomaly detector; 1 when it scored at least `threshold` at some
//!   point of the last `window` points, else 0 (the rule the anomaly loop's flags follow).
//!
//! # Scores
//! The localiser runs at every point from `t_f`. Top-1 is judged `horizon` points after the
//! fault: correct when the top cause has the same nodes as the injected domain (a region of one
//! site is its zone: the metrics cannot tell them apart). Time to localise: from `t_f` to the
//! first point whose top cause is correct, in seconds (`points × period_seconds`); faults never
//! localised within the horizon are left out of the median and counted in `never_localised`.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::detector::{Detector, Params as DetectorParams};
use super::rca::{Domains, Level, Params as RcaParams, RcaError, TopoNode};
use super::shift::{ShiftDetector, ShiftParams};
use crate::cluster_layout::sites_layout;
use crate::geometry::data::Graph;
use crate::geometry::routing::shortest_path_delays;
use crate::labels::{RACK_LABEL, REGION_LABEL, ZONE_LABEL};

/// The levels faults are injected at.
pub const FAULT_LEVELS: [Level; 4] = [Level::Node, Level::Rack, Level::Zone, Level::Region];

/// Where a node's evidence comes from (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    Shift,
    Detector,
}

/// Settings of an evaluation run (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalConfig {
    pub faults: usize,
    pub seed: u64,
    pub points: usize,
    pub period_seconds: f64,
    pub racks_per_site: u32,
    pub nodes_per_rack: u32,
    pub max_lag: usize,
    /// The faulty nodes' shift, in σ, is drawn from `shift_min..shift_max`.
    pub shift_min: f64,
    pub shift_max: f64,
    pub decoy_share: f64,
    pub threshold: f64,
    pub window: usize,
    pub horizon: usize,
    pub rca: RcaParams,
    pub detector: DetectorParams,
    pub evidence: Evidence,
    pub shift: ShiftParams,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            faults: 200,
            seed: 1,
            points: 200,
            period_seconds: 30.0,
            racks_per_site: 2,
            nodes_per_rack: 2,
            max_lag: 3,
            shift_min: 3.0,
            shift_max: 6.0,
            decoy_share: 0.1,
            threshold: 0.45,
            window: 20,
            horizon: 20,
            rca: RcaParams::default(),
            detector: DetectorParams::default(),
            evidence: Evidence::Shift,
            shift: ShiftParams::default(),
        }
    }
}

/// Accuracy at one level.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LevelScore {
    pub faults: usize,
    pub correct: usize,
}

impl LevelScore {
    pub fn accuracy(&self) -> Option<f64> {
        (self.faults > 0).then(|| self.correct as f64 / self.faults as f64)
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub topology: String,
    pub nodes: usize,
    pub faults: usize,
    pub correct: usize,
    pub by_level: BTreeMap<Level, LevelScore>,
    /// Seconds from the fault to the first correct localisation, one per localised fault.
    pub seconds_to_localise: Vec<f64>,
    pub never_localised: usize,
    /// Top-1 accuracy of a guess that knows the level and picks a domain of it uniformly
    /// (the chance baseline), averaged over the injected faults.
    pub chance_top1: f64,
}

impl EvalReport {
    pub fn top1(&self) -> f64 {
        if self.faults == 0 {
            0.0
        } else {
            self.correct as f64 / self.faults as f64
        }
    }

    /// Median of `seconds_to_localise` (mean of the middle two when even), `None` when empty.
    pub fn median_seconds(&self) -> Option<f64> {
        let mut v = self.seconds_to_localise.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        })
    }
}

/// The cluster of a topology (see the module doc, "Cluster"); `origin` names it in errors.
pub fn cluster_from_graph(
    g: &Graph,
    origin: &str,
    racks_per_site: u32,
    nodes_per_rack: u32,
) -> Result<Vec<TopoNode>, RcaError> {
    let sites = g.node_count();
    if sites == 0 {
        return Err(RcaError::NoNodes { file: origin.into() });
    }
    let bad = |reason: String| RcaError::BadField {
        field: "layout".into(),
        reason,
    };
    if racks_per_site == 0 || nodes_per_rack == 0 {
        return Err(bad("racks per site and nodes per rack must be at least 1".into()));
    }
    let regions = ((sites as f64 / 2.0).sqrt().round() as usize).max(2);
    let delays = shortest_path_delays(g);
    let specs = sites_layout(&delays, regions, racks_per_site * nodes_per_rack).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let j: u32 = s
            .name
            .rsplit_once("-n")
            .and_then(|(_, j)| j.parse().ok())
            .ok_or_else(|| bad(format!("node name `{}` has no index", s.name)))?;
        let mut labels = s.labels;
        let zone = labels.get(ZONE_LABEL).cloned().unwrap_or_default();
        labels.insert(RACK_LABEL.into(), format!("{zone}-r{}", j / nodes_per_rack));
        out.push(TopoNode { name: s.name, labels });
    }
    Ok(out)
}

/// SplitMix64: decorrelates the per-fault seeds.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The injectable domains per level: (name, sorted node indices).
fn fault_domains(nodes: &[TopoNode]) -> BTreeMap<Level, Vec<(String, Vec<usize>)>> {
    let mut grouped: BTreeMap<Level, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        grouped.entry(Level::Node).or_default().insert(n.name.clone(), vec![i]);
        for (level, key) in [
            (Level::Rack, RACK_LABEL),
            (Level::Zone, ZONE_LABEL),
            (Level::Region, REGION_LABEL),
        ] {
            if let Some(v) = n.labels.get(key) {
                grouped.entry(level).or_default().entry(v.clone()).or_default().push(i);
            }
        }
    }
    grouped.into_iter().map(|(l, m)| (l, m.into_iter().collect())).collect()
}

/// One fault's outcome: (level, correct at the horizon, seconds to the first correct answer).
fn run_fault(
    cfg: &EvalConfig,
    nodes: &[TopoNode],
    domains: &Domains,
    faults: &BTreeMap<Level, Vec<(String, Vec<usize>)>>,
    f: usize,
) -> Result<(Level, bool, Option<f64>, f64), RcaError> {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(cfg.seed.wrapping_add(f as u64)));
    let level = FAULT_LEVELS[rng.random_range(0..FAULT_LEVELS.len())];
    let candidates = faults.get(&level).map(Vec::as_slice).unwrap_or(&[]);
    if candidates.is_empty() {
        return Err(RcaError::BadField {
            field: "topology".into(),
            reason: format!("no {} domain to inject a fault into", level.as_str()),
        });
    }
    let (_, truth) = &candidates[rng.random_range(0..candidates.len())];
    let chance = 1.0 / candidates.len() as f64;
    let n = nodes.len();
    let t_points = cfg.points;
    let t_fault = rng.random_range(t_points / 2..(3 * t_points / 4).max(t_points / 2 + 1));
    let warm = cfg.detector.warmup as usize;
    let mut affected = vec![false; n];
    for &i in truth {
        affected[i] = true;
    }
    // detector scores per node and point
    let mut scores = vec![vec![0.0; t_points]; n];
    for i in 0..n {
        let mu = rng.random_range(20.0..80.0);
        let sigma = mu * rng.random_range(0.03..0.10);
        let mut bump = vec![0.0; t_points];
        if affected[i] {
            let lag = rng.random_range(0..=cfg.max_lag);
            let delta = rng.random_range(cfg.shift_min..cfg.shift_max) * sigma;
            for b in bump.iter_mut().skip(t_fault + lag) {
                *b = delta;
            }
        } else if rng.random_bool(cfg.decoy_share.clamp(0.0, 1.0)) {
            for _ in 0..rng.random_range(1..=3) {
                let t = rng.random_range(warm.min(t_points - 1)..t_points);
                bump[t] += rng.random_range(4.0..8.0) * sigma;
            }
        }
        let mut det = Detector::new(cfg.detector);
        let mut shift = ShiftDetector::new(cfg.shift);
        for (t, b) in bump.iter().enumerate() {
            let x = mu + sigma * normal(&mut rng) + b;
            scores[i][t] = match cfg.evidence {
                Evidence::Detector => det.update(x),
                Evidence::Shift => shift.update(x),
            };
        }
    }
    let end = (t_fault + cfg.horizon).min(t_points - 1);
    let mut first_correct = None;
    let mut correct_at_end = false;
    let mut evidence = vec![0.0; n];
    for t in t_fault..=end {
        let from = (t + 1).saturating_sub(cfg.window.max(1));
        for (i, e) in evidence.iter_mut().enumerate() {
            *e = match cfg.evidence {
                Evidence::Shift => {
                    if scores[i][t] >= 1.0 {
                        1.0
                    } else {
                        0.0
                    }
                }
                Evidence::Detector => {
                    let peak = scores[i][from..=t].iter().copied().fold(0.0, f64::max);
                    if peak >= cfg.threshold { 1.0 } else { 0.0 }
                }
            };
        }
        let d = domains.localise_scores(&evidence, &[], &cfg.rca)?;
        // a fault was injected: judge the best domain, not its odds against "nothing failed"
        let ok = d.causes.first().is_some_and(|c| {
            domains
                .node_domains()
                .find(|(l, name, _)| *l == c.level && *name == c.name)
                .is_some_and(|(_, _, members)| members == truth.as_slice())
        });
        if ok && first_correct.is_none() {
            first_correct = Some((t - t_fault) as f64 * cfg.period_seconds);
        }
        if t == end {
            correct_at_end = ok;
        }
    }
    Ok((level, correct_at_end, first_correct, chance))
}

/// Runs `cfg.faults` injected faults on the cluster built from `g` (`origin` names it).
pub fn evaluate(g: &Graph, origin: &str, cfg: &EvalConfig) -> Result<EvalReport, RcaError> {
    evaluate_with_progress(g, origin, cfg, &mut |_, _| {})
}

/// As [`evaluate`], calling `progress(faults done, faults)` after each fault.
pub fn evaluate_with_progress(
    g: &Graph,
    origin: &str,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, RcaError> {
    if cfg.faults == 0 {
        return Err(RcaError::BadField {
            field: "faults".into(),
            reason: "must be at least 1".into(),
        });
    }
    if !(cfg.shift_min.is_finite() && cfg.shift_max.is_finite() && 0.0 < cfg.shift_min && cfg.shift_min < cfg.shift_max)
    {
        return Err(RcaError::BadField {
            field: "shift_min/shift_max".into(),
            reason: format!(
                "need 0 < shift_min < shift_max, got {} and {}",
                cfg.shift_min, cfg.shift_max
            ),
        });
    }
    if cfg.points < 8 || cfg.window == 0 || !(cfg.period_seconds > 0.0 && cfg.period_seconds.is_finite()) {
        return Err(RcaError::BadField {
            field: "eval".into(),
            reason: "need points ≥ 8, window ≥ 1 and a positive period".into(),
        });
    }
    cfg.rca.validate()?;
    cfg.shift.check().map_err(|reason| RcaError::BadField {
        field: "shift".into(),
        reason,
    })?;
    let nodes = cluster_from_graph(g, origin, cfg.racks_per_site, cfg.nodes_per_rack)?;
    let domains = Domains::new(&nodes, &[])?;
    let faults = fault_domains(&nodes);
    let mut report = EvalReport {
        topology: g.name.clone(),
        nodes: nodes.len(),
        faults: cfg.faults,
        correct: 0,
        by_level: FAULT_LEVELS.iter().map(|&l| (l, LevelScore::default())).collect(),
        seconds_to_localise: Vec::new(),
        never_localised: 0,
        chance_top1: 0.0,
    };
    for f in 0..cfg.faults {
        let (level, ok, seconds, chance) = run_fault(cfg, &nodes, &domains, &faults, f)?;
        let slot = report.by_level.entry(level).or_default();
        slot.faults += 1;
        if ok {
            slot.correct += 1;
            report.correct += 1;
        }
        match seconds {
            Some(s) => report.seconds_to_localise.push(s),
            None => report.never_localised += 1,
        }
        report.chance_top1 += chance / cfg.faults as f64;
        progress(f + 1, cfg.faults);
    }
    Ok(report)
}
