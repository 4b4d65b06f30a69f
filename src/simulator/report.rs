//! Writes a replay's timeline as CSV and as a hand-drawn SVG plot of demand against ready
//! capacity (no plotting crate: a few polylines in a fixed 1000×400 frame).

use std::fmt::Write as _;

use super::Sample;

/// CSV with header `time_seconds,demand,ready_capacity,replicas,ready`.
pub fn timeline_csv(samples: &[Sample]) -> String {
    let mut out = String::from("time_seconds,demand,ready_capacity,replicas,ready\n");
    for s in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            s.time_seconds, s.demand, s.ready_capacity, s.replicas, s.ready
        );
    }
    out
}

/// Buckets of at most `max_points`, each keeping the maximum demand and minimum capacity of the
/// ticks it covers (so short violations stay visible after downsampling).
fn downsample(samples: &[Sample], max_points: usize) -> Vec<(f64, f64, f64)> {
    let per = samples.len().div_ceil(max_points.max(1)).max(1);
    samples
        .chunks(per)
        .map(|c| {
            let t = c[0].time_seconds;
            let d = c.iter().map(|s| s.demand).fold(f64::NEG_INFINITY, f64::max);
            let cap = c.iter().map(|s| s.ready_capacity).fold(f64::INFINITY, f64::min);
            (t, d, cap)
        })
        .collect()
}

/// SVG plot: demand (black) and ready capacity (blue) against hours; red ticks under the axis
/// mark buckets with an SLO violation.
pub fn timeline_svg(samples: &[Sample], title: &str) -> String {
    let (w, h, left, right, top, bottom) = (1000.0, 400.0, 60.0, 20.0, 30.0, 40.0);
    let pts = downsample(samples, 1500);
    let t_max = pts.last().map(|p| p.0).unwrap_or(0.0).max(1.0);
    let y_max = pts.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max).max(1e-9) * 1.05;
    let x = |t: f64| left + (w - left - right) * t / t_max;
    let y = |v: f64| h - bottom - (h - top - bottom) * v / y_max;
    let line = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        pts.iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(f(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let esc = title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{left}" y="18">{esc}</text>"#);
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="gray"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="gray"/>"#,
        b = h - bottom,
        r = w - right
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.3}</text>"#,
            left - 4.0,
            y(v) + 4.0,
            v
        );
        let t = t_max * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.1} h</text>"#,
            x(t),
            h - bottom + 16.0,
            t / 3600.0
        );
    }
    for p in &pts {
        if p.1 > p.2 {
            let _ = writeln!(
                s,
                r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="red"/>"#,
                x(p.0),
                h - bottom + 2.0,
                h - bottom + 8.0
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="black" stroke-width="1" points="{}"/>"#,
        line(&|p| p.1)
    );
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="steelblue" stroke-width="1" points="{}"/>"#,
        line(&|p| p.2)
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="18" fill="black">demand</text><text x="{:.1}" y="18" fill="steelblue">ready capacity</text><text x="{:.1}" y="18" fill="red">SLO violation</text>"#,
        w - 330.0,
        w - 260.0,
        w - 150.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Sample> {
        (0..10)
            .map(|i| Sample {
                time_seconds: f64::from(i) * 15.0,
                demand: if i == 5 { 50.0 } else { 10.0 },
                ready_capacity: 20.0,
                replicas: 2,
                ready: 2,
            })
            .collect()
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_tick() {
        let csv = timeline_csv(&samples());
        assert_eq!(csv.lines().count(), 11);
        assert!(csv.starts_with("time_seconds,demand"));
    }

    #[test]
    fn svg_is_well_formed_and_marks_the_violation() {
        let svg = timeline_svg(&samples(), "a <b> & c");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(svg.matches(r#"stroke="red""#).count(), 1);
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
