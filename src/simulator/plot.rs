//! One SVG comparing scaling policies on the same traces: per trace a panel of demand (as the
//! replicas it needs, demand ÷ capacity per replica) and each policy's requested replicas over
//! time, with axes, gridlines and a legend. Plain SVG text, no plotting crate; a browser opens it.

use std::fmt::Write as _;

use super::Sample;

/// Points per polyline at most; longer timelines are bucketed (max demand, min replicas per
/// bucket, so short shortfalls stay visible).
pub const MAX_POINTS: usize = 1000;

/// Colours of the policies' lines, in order (demand is black).
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// One trace: its name, the demand one replica serves, and each policy's timeline (same trace,
/// so the same clock and demand).
pub struct Panel<'a> {
    pub title: String,
    pub capacity_per_replica: f64,
    pub policies: Vec<(String, &'a [Sample])>,
}

/// Points a timeline of `len` ticks is drawn with.
pub fn points_for(len: usize) -> usize {
    len.div_ceil(bucket(len))
}

fn bucket(len: usize) -> usize {
    len.div_ceil(MAX_POINTS).max(1)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One drawn point: (time, demand in replicas, replicas).
type Point = (f64, f64, f64);

/// A [`Point`] per bucket of `samples`.
fn buckets(samples: &[Sample], capacity: f64) -> Vec<Point> {
    samples
        .chunks(bucket(samples.len()))
        .map(|c| {
            let demand = c.iter().map(|s| s.demand).fold(0.0, f64::max) / capacity;
            let replicas = c.iter().map(|s| s.replicas).min().unwrap_or(0);
            (c[0].time_seconds, demand, f64::from(replicas))
        })
        .collect()
}

/// A "nice" step (1, 2 or 5 × 10^k) giving about `ticks` intervals up to `max`.
pub(crate) fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The SVG document: one panel per entry of `panels`, stacked.
pub fn policies_svg(panels: &[Panel<'_>]) -> String {
    let (w, ph) = (1000.0, 360.0);
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 50.0);
    let h = ph * panels.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    for (i, panel) in panels.iter().enumerate() {
        let y0 = ph * i as f64;
        let capacity = if panel.capacity_per_replica > 0.0 && panel.capacity_per_replica.is_finite() {
            panel.capacity_per_replica
        } else {
            1.0
        };
        let series: Vec<(&str, Vec<Point>)> = panel
            .policies
            .iter()
            .map(|(name, samples)| (name.as_str(), buckets(samples, capacity)))
            .collect();
        let demand: &[Point] = series.first().map(|(_, b)| b.as_slice()).unwrap_or_default();
        let t_max = series
            .iter()
            .filter_map(|(_, b)| b.last().map(|p| p.0))
            .fold(0.0, f64::max)
            .max(1.0);
        let v_max = series
            .iter()
            .flat_map(|(_, b)| b.iter().map(|p| p.1.max(p.2)))
            .fold(1.0, f64::max);
        let y_step = nice_step(v_max, 5.0);
        let y_top = (v_max / y_step).ceil() * y_step;
        let plot_w = w - left - right;
        let plot_h = ph - top - bottom;
        let x = |t: f64| left + plot_w * t / t_max;
        let y = |v: f64| y0 + top + plot_h * (1.0 - v / y_top);
        let _ = writeln!(s, r#"<g class="panel">"#);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
            y0 + 22.0,
            escape(&panel.title)
        );
        // Gridlines and y labels.
        let decimals = (-y_step.log10().floor()).clamp(0.0, 6.0) as usize;
        for k in 0..=((y_top / y_step).round() as usize).min(100) {
            let v = k as f64 * y_step;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e0e0e0"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4:.5$}</text>"##,
                y(v),
                left + plot_w,
                left - 6.0,
                y(v) + 4.0,
                v,
                decimals
            );
        }
        // x labels, in hours.
        let hours = t_max / 3600.0;
        let x_step = nice_step(hours, 8.0);
        let mut t = 0.0;
        // Only labels inside the axis: the last nice step may lie past the data.
        while t <= hours * (1.0 + 1e-9) {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x(t * 3600.0),
                y0 + top + plot_h + 16.0,
                (t * 1000.0).round() / 1000.0
            );
            t += x_step;
        }
        // Axes and their titles.
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{b:.1}" x2="{r:.1}" y2="{b:.1}" stroke="black"/><line x1="{left}" y1="{t:.1}" x2="{left}" y2="{b:.1}" stroke="black"/>"#,
            b = y0 + top + plot_h,
            r = left + plot_w,
            t = y0 + top
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (hours)</text>"#,
            left + plot_w / 2.0,
            y0 + ph - 12.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">replicas (demand ÷ {})</text>"#,
            y0 + top + plot_h / 2.0,
            (capacity * 1000.0).round() / 1000.0
        );
        // Lines: demand first, then each policy.
        let polyline = |points: &[Point], value: &dyn Fn(&Point) -> f64| {
            points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.0), y(value(p))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            s,
            r#"<polyline data-series="demand" fill="none" stroke="black" stroke-width="1.5" points="{}"/>"#,
            polyline(demand, &|p| p.1)
        );
        for (k, (name, points)) in series.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<polyline data-series="{}" fill="none" stroke="{}" stroke-width="1.2" points="{}"/>"#,
                escape(name),
                COLOURS[k % COLOURS.len()],
                polyline(points, &|p| p.2)
            );
        }
        // Legend, right of the plot.
        let lx = left + plot_w + 15.0;
        let entries = std::iter::once(("demand", "black")).chain(
            series
                .iter()
                .enumerate()
                .map(|(k, (name, _))| (*name, COLOURS[k % COLOURS.len()])),
        );
        for (k, (name, colour)) in entries.enumerate() {
            let ly = y0 + top + 10.0 + 20.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 20.0,
                lx + 26.0,
                ly + 4.0,
                escape(name)
            );
        }
        let _ = writeln!(s, "</g>");
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(len: usize, replicas: u32) -> Vec<Sample> {
        (0..len)
            .map(|i| Sample {
                time_seconds: i as f64 * 15.0,
                demand: (i % 7) as f64,
                ready_capacity: 10.0,
                replicas,
                ready: replicas,
            })
            .collect()
    }

    #[test]
    fn each_policy_and_the_demand_get_a_polyline_with_one_point_per_tick() {
        let (a, b) = (timeline(40, 2), timeline(40, 3));
        let svg = policies_svg(&[Panel {
            title: "trace <1>".into(),
            capacity_per_replica: 2.0,
            policies: vec![("predictive".into(), &a), ("hpa".into(), &b)],
        }]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
            let points = line.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            assert_eq!(points.split(' ').count(), 40, "{line}");
        }
        assert!(svg.contains(r#"data-series="predictive""#) && svg.contains(r#"data-series="hpa""#));
        assert!(svg.contains("trace &lt;1&gt;"));
    }

    #[test]
    fn long_timelines_are_bucketed_to_at_most_max_points() {
        let a = timeline(2500, 1);
        assert_eq!(points_for(2500), 834);
        assert_eq!(points_for(40), 40);
        let svg = policies_svg(&[Panel {
            title: "t".into(),
            capacity_per_replica: 1.0,
            policies: vec![("static".into(), &a)],
        }]);
        for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
            let points = line.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            assert_eq!(points.split(' ').count(), 834);
        }
    }

    #[test]
    fn empty_or_odd_input_still_gives_a_document() {
        let svg = policies_svg(&[]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let svg = policies_svg(&[Panel {
            title: "t".into(),
            capacity_per_replica: f64::NAN,
            policies: vec![("p".into(), &[])],
        }]);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn time_labels_stay_on_the_time_axis_when_the_last_nice_step_lies_past_the_data() {
        // 672 half-hours = 336 h: the 50-h step would put a "350" label past the axis' end.
        let a: Vec<Sample> = (0..673)
            .map(|i| Sample {
                time_seconds: i as f64 * 1800.0,
                demand: 1.0,
                ready_capacity: 1.0,
                replicas: 1,
                ready: 1,
            })
            .collect();
        let svg = policies_svg(&[Panel {
            title: "t".into(),
            capacity_per_replica: 1.0,
            policies: vec![("static".into(), &a)],
        }]);
        let axis_end = 1000.0 - 170.0;
        let labels: Vec<f64> = svg
            .lines()
            .filter(|l| {
                l.starts_with("<text x=") && l.contains(r#"text-anchor="middle">"#) && !l.contains("time (hours)")
            })
            .map(|l| {
                l.split("x=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(labels.len(), 7, "0, 50, …, 300: {svg}");
        assert!(labels.iter().all(|&x| x <= axis_end + 1e-6), "labels at {labels:?}");
        // Value labels are printed at the step's precision (no 0.6000000000000001).
        assert!(svg.contains(">0.6</text>") && !svg.contains("00000"), "{svg}");
    }
}
