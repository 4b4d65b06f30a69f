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

/// Whether `a` is no worse than `b` on both plotted values and better on one.
fn beats_on_plot(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 <= b.0 && a.1 <= b.1 && (a.0 < b.0 || a.1 < b.1)
}

/// A scatter plot (SVG) of the frontier on the first two named objectives' metrics.
///
/// Axes span the data plus 8 % on each side, with gridlines at "nice" steps (1, 2 or 5 × 10^k).
/// Each point is labelled with the first objective's weight. A point is drawn hollow when
/// another point is at least as good on both plotted metrics and better on one (it is on the
/// frontier only for a metric the plot does not show, e.g. `sloViolationMinutes` for
/// performance, which the caption names), filled otherwise. The dashed line joins the filled
/// points, left to right.
pub fn svg(points: &[Point], objectives: &[String]) -> String {
    use std::fmt::Write as _;
    let (xo, yo) = (&objectives[0], &objectives[1]);
    let mut sorted: Vec<(f64, f64, &Point)> = points
        .iter()
        .filter_map(|p| Some((metric(xo, &p.metrics)?, metric(yo, &p.metrics)?, p)))
        .filter(|(x, y, _)| x.is_finite() && y.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let range = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi > lo {
            let margin = (hi - lo) * 0.08;
            (lo - margin, hi + margin)
        } else {
            let margin = (lo.abs() * 0.05).max(0.5);
            (lo - margin, lo + margin)
        }
    };
    let (x0, x1) = range(&mut sorted.iter().map(|p| p.0));
    let (y0, y1) = range(&mut sorted.iter().map(|p| p.1));
    let (w, h) = (720.0, 540.0);
    let (left, right, top, bottom) = (80.0, 30.0, 50.0, 105.0);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    let name = |o: &str| match o {
        "performance" => "latency (ms)",
        "cost" => "cost ($)",
        "reliability" => "SLO violation (min)",
        _ => "energy (class-weighted replica-h)",
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="26" text-anchor="middle" font-size="15">Pareto frontier: {xo} vs {yo} ({} points)</text>"#,
        w / 2.0,
        sorted.len()
    );
    // Gridlines and tick labels at nice steps inside the padded range.
    let ticks = |lo: f64, hi: f64, n: f64| {
        let step = crate::simulator::plot::nice_step(hi - lo, n);
        let first = (lo / step).ceil();
        // k·step (not a running sum) and + 0.0 (no "-0" label); at most 50 gridlines.
        (0..50)
            .map(|k| ((first + f64::from(k)) * step + 0.0, step))
            .take_while(|(v, _)| *v <= hi)
            .collect::<Vec<_>>()
    };
    let label = |v: f64, step: f64| {
        let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
        format!("{v:.decimals$}")
    };
    for (v, step) in ticks(x0, x1, 6.0) {
        let _ = writeln!(
            out,
            r##"<line class="grid" x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#e6e6e6"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            px(v),
            h - bottom,
            h - bottom + 16.0,
            label(v, step)
        );
    }
    for (v, step) in ticks(y0, y1, 6.0) {
        let _ = writeln!(
            out,
            r##"<line class="grid" x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e6e6e6"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            py(v),
            w - right,
            left - 6.0,
            py(v) + 4.0,
            label(v, step)
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="black"/>"#,
        b = h - bottom,
        r = w - right
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + (w - left - right) / 2.0,
        h - bottom + 38.0,
        name(xo)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + (h - top - bottom) / 2.0,
        name(yo)
    );
    let beaten: Vec<bool> = sorted
        .iter()
        .map(|a| sorted.iter().any(|b| beats_on_plot((b.0, b.1), (a.0, a.1))))
        .collect();
    let path: Vec<String> = sorted
        .iter()
        .zip(&beaten)
        .filter(|(_, beaten)| !**beaten)
        .map(|((x, y, _), _)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    let _ = writeln!(
        out,
        r##"<polyline points="{}" fill="none" stroke="#888" stroke-dasharray="4 3"/>"##,
        path.join(" ")
    );
    for ((x, y, p), beaten) in sorted.iter().zip(&beaten) {
        let fill = if *beaten { "white" } else { "#1f6feb" };
        let _ = writeln!(
            out,
            r##"<circle class="{}" cx="{:.1}" cy="{:.1}" r="5" fill="{fill}" stroke="#1f6feb" stroke-width="2"><title>{xo} {:.2}, {yo} {:.2}: {x:.3}, {y:.3}</title></circle><text class="weight" x="{:.1}" y="{:.1}" font-size="11" fill="#444">{:.2}</text>"##,
            if *beaten { "point beaten-on-plot" } else { "point" },
            px(*x),
            py(*y),
            get(&p.weights, xo),
            get(&p.weights, yo),
            px(*x) + 8.0,
            py(*y) - 7.0,
            get(&p.weights, xo),
        );
    }
    let hidden: Vec<&str> = judged(objectives)
        .into_iter()
        .filter(|m| ![xo, yo].iter().any(|o| judged_by(o).first() == Some(m)))
        .collect();
    let mut caption = vec![format!("Labels: the weight of {xo}.")];
    if beaten.iter().any(|b| *b) {
        caption.push(format!(
            "Hollow: another point is as good on both axes and better on one; kept for {}.",
            if hidden.is_empty() {
                "a tie".to_string()
            } else {
                hidden.join(", ")
            }
        ));
    }
    caption.push(format!("Judged by: {}.", judged(objectives).join(", ")));
    for (k, line) in caption.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text class="caption" x="{left}" y="{:.1}" font-size="11" fill="#444">{line}</text>"##,
            h - 13.0 - 15.0 * (caption.len() - 1 - k) as f64
        );
    }
    out.push_str("</svg>\n");
    out
}
