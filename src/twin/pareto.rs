//! The Pareto frontier of the objectives over the twin: sweeps the weights of two or more named
//! objectives (the others keep theirs; the named ones share the rest), runs the twin at each
//! point and keeps the non-dominated runs.
//!
//! Each objective is judged by the metrics it stands for (lower is better; [`judged_by`]):
//! `performance` → `latencyMs` and `sloViolationMinutes`, `cost` → `cost`, `reliability` →
//! `sloViolationMinutes` and `evictions`, `sustainability` → `energy`; the plot shows the first
//! of each ([`metric`]). Weights: for two objectives, point `i` of `n` gives the first `r·i/(n−1)` and the
//! second `r·(1 − i/(n−1))`, `r` = 1 − the others' sum; for more, the same sweep between the
//! first and each other in turn (`n` points in all, spread over the pairs). A run is dominated
//! when another is no worse on every named metric and better on one.

use serde::Serialize;

use super::{Metrics, Snapshot, TwinError};
use crate::placement::Objectives;

/// The objectives, in the order the CLI names them.
pub const OBJECTIVES: [&str; 4] = ["performance", "cost", "reliability", "sustainability"];

/// The metrics an objective is judged by (module doc).
pub fn judged_by(objective: &str) -> &'static [&'static str] {
    match objective {
        "performance" => &["latencyMs", "sloViolationMinutes"],
        "cost" => &["cost"],
        "reliability" => &["sloViolationMinutes", "evictions"],
        "sustainability" => &["energy"],
        _ => &[],
    }
}

/// A metric by its JSON name.
pub fn metric_named(name: &str, m: &Metrics) -> Option<f64> {
    match name {
        "latencyMs" => Some(m.latency_ms),
        "sloViolationMinutes" => Some(m.slo_violation_minutes),
        "replicaHours" => Some(m.replica_hours),
        "cost" => Some(m.cost),
        "energy" => Some(m.energy),
        "evictions" => Some(m.evictions as f64),
        _ => None,
    }
}

/// The named objectives' metrics, each once, in order.
fn judged(objectives: &[String]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for n in objectives.iter().flat_map(|o| judged_by(o)) {
        if !names.contains(n) {
            names.push(n);
        }
    }
    names
}

/// The first metric an objective is judged by (the plot's axis).
pub fn metric(objective: &str, m: &Metrics) -> Option<f64> {
    match objective {
        "performance" => Some(m.latency_ms),
        "cost" => Some(m.cost),
        "reliability" => Some(m.slo_violation_minutes),
        "sustainability" => Some(m.energy),
        _ => None,
    }
}

/// One point of the frontier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub weights: Objectives,
    pub metrics: Metrics,
}

fn get(o: &Objectives, name: &str) -> f64 {
    match name {
        "performance" => o.performance,
        "cost" => o.cost,
        "reliability" => o.reliability,
        _ => o.sustainability,
    }
}

fn set(o: &mut Objectives, name: &str, v: f64) {
    match name {
        "performance" => o.performance = v,
        "cost" => o.cost = v,
        "reliability" => o.reliability = v,
        _ => o.sustainability = v,
    }
}

/// The weight vectors of the sweep (module doc).
pub fn sweep(base: &Objectives, objectives: &[String], points: usize) -> Result<Vec<Objectives>, TwinError> {
    let bad = |reason: String| TwinError::BadField {
        field: "--objectives".into(),
        reason,
    };
    if objectives.len() < 2 {
        return Err(bad("name at least two objectives".into()));
    }
    for (i, o) in objectives.iter().enumerate() {
        if !OBJECTIVES.contains(&o.as_str()) {
            return Err(bad(format!("{o:?} is not one of {OBJECTIVES:?}")));
        }
        if objectives[..i].contains(o) {
            return Err(bad(format!("{o:?} is named twice")));
        }
    }
    if points < 2 {
        return Err(TwinError::BadField {
            field: "--points".into(),
            reason: format!("must be at least 2, got {points}"),
        });
    }
    let others: f64 = OBJECTIVES
        .iter()
        .filter(|o| !objectives.iter().any(|n| n == *o))
        .map(|o| get(base, o))
        .sum();
    let r = (1.0 - others).max(0.0);
    let pairs = objectives.len() - 1;
    let mut out = Vec::with_capacity(points);
    for k in 0..points {
        let pair = (k * pairs / points).min(pairs - 1);
        let in_pair: Vec<usize> = (0..points)
            .filter(|&j| (j * pairs / points).min(pairs - 1) == pair)
            .collect();
        let pos = in_pair.iter().position(|&j| j == k).unwrap_or(0);
        let t = if in_pair.len() > 1 {
            pos as f64 / (in_pair.len() - 1) as f64
        } else {
            0.5
        };
        let mut w = *base;
        for o in objectives {
            set(&mut w, o, 0.0);
        }
        set(&mut w, &objectives[0], r * t);
        set(&mut w, &objectives[pair + 1], r * (1.0 - t));
        out.push(w);
    }
    Ok(out)
}

/// Whether `a` dominates `b` on the named objectives' metrics.
pub fn dominates(a: &Metrics, b: &Metrics, objectives: &[String]) -> bool {
    let pairs: Vec<(f64, f64)> = judged(objectives)
        .iter()
        .filter_map(|n| Some((metric_named(n, a)?, metric_named(n, b)?)))
        .collect();
    pairs.iter().all(|(x, y)| x <= y) && pairs.iter().any(|(x, y)| x < y)
}

/// Runs the sweep and returns the non-dominated points (duplicates of a metric vector kept once,
/// the first weights), in sweep order. `progress(done, total)` after each run.
pub fn frontier(
    snapshot: &Snapshot,
    objectives: &[String],
    points: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Point>, TwinError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    frontier_on(snapshot, objectives, points, threads, progress)
}

/// [`frontier`] on `threads` worker threads (at least one). The runs are independent and pure,
/// so the points are the same for any number of threads: each run's metrics are kept at its
/// weight's index and the frontier is taken in that order. The first failing run's error (by
/// index) is returned.
pub fn frontier_on(
    snapshot: &Snapshot,
    objectives: &[String],
    points: usize,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Point>, TwinError> {
    let weights = sweep(&snapshot.objectives, objectives, points)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Metrics, TwinError>>> = (0..weights.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads.clamp(1, weights.len().max(1)) {
            let (tx, next, weights) = (tx.clone(), &next, &weights);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(w) = weights.get(i) else { break };
                    let mut s = snapshot.clone();
                    s.objectives = *w;
                    let run = super::run(&s, &mut |_, _| {});
                    if tx.send((i, run)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (done, (i, run)) in rx.iter().enumerate() {
            results[i] = Some(run);
            progress(done + 1, weights.len());
        }
    });
    let mut runs = Vec::with_capacity(weights.len());
    // Every index was filled: the scope joined every worker (and re-raised a worker's panic).
    for (w, run) in weights.iter().zip(results) {
        if let Some(run) = run {
            runs.push(Point {
                weights: *w,
                metrics: run?,
            });
        }
    }
    let mut out: Vec<Point> = Vec::new();
    for p in &runs {
        let dominated = runs.iter().any(|q| dominates(&q.metrics, &p.metrics, objectives));
        let repeat = out.iter().any(|q| {
            judged(objectives)
                .iter()
                .all(|n| metric_named(n, &q.metrics) == metric_named(n, &p.metrics))
        });
        if !dominated && !repeat {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// A scatter plot (SVG) of the frontier on the first two named objectives' metrics.
pub fn svg(points: &[Point], objectives: &[String]) -> String {
    let (xo, yo) = (&objectives[0], &objectives[1]);
    let xs: Vec<f64> = points.iter().filter_map(|p| metric(xo, &p.metrics)).collect();
    let ys: Vec<f64> = points.iter().filter_map(|p| metric(yo, &p.metrics)).collect();
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (lo.min(0.0), lo.max(0.0) + 1.0)
        }
    };
    let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
    let (w, h, pad) = (640.0, 480.0, 70.0);
    let px = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let py = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
    let name = |o: &str| match o {
        "performance" => "latency (ms)",
        "cost" => "cost ($)",
        "reliability" => "SLO violation (min)",
        _ => "energy (class-weighted replica-h)",
    };
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">Pareto frontier: {xo} vs {yo} ({} points)</text>
<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>
<text x="{pad}" y="{}" text-anchor="middle">{x0:.3}</text><text x="{}" y="{}" text-anchor="middle">{x1:.3}</text>
<text x="{}" y="{}" text-anchor="end">{y0:.3}</text><text x="{}" y="{pad}" text-anchor="end">{y1:.3}</text>
"##,
        w / 2.0,
        points.len(),
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        w / 2.0,
        h - 20.0,
        name(xo),
        h / 2.0,
        h / 2.0,
        name(yo),
        h - pad + 16.0,
        w - pad,
        h - pad + 16.0,
        pad - 6.0,
        h - pad,
        pad - 6.0,
    );
    let mut sorted: Vec<(f64, f64, &Point)> = points
        .iter()
        .filter_map(|p| Some((metric(xo, &p.metrics)?, metric(yo, &p.metrics)?, p)))
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let path: Vec<String> = sorted
        .iter()
        .map(|(x, y, _)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    out.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n",
        path.join(" ")
    ));
    for (x, y, p) in &sorted {
        out.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"#1f6feb\"><title>{xo} {:.2}, {yo} {:.2}: {}</title></circle>\n",
            px(*x),
            py(*y),
            get(&p.weights, xo),
            get(&p.weights, yo),
            format_args!("{x:.3}, {y:.3}")
        ));
    }
    out.push_str("</svg>\n");
    out
}
