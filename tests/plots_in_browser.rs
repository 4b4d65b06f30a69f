//! The SVG plots a user opens in a browser, opened in a real one: `mom simulate --plot` on a
//! week of the NAB `nyc_taxi` trace and `mom whatif pareto --plot` on a Geant2012 + NAB
//! CloudWatch snapshot, each loaded from its file into headless Chromium (WebDriver). Each
//! renders without console errors; the browser's DOM holds the lines, points and legend the CLI
//! promises, drawn with a real extent; every text lies inside the picture as the browser lays it
//! out (a clipped label or caption fails); and the screenshot is a picture, not a blank page
//! (decoded and measured). With `MOM_UPDATE_SCREENSHOT=1` they are saved as `docs/simulate.png`
//! and `docs/pareto.png` (the README's pictures). No cluster.

mod cli_support;
mod common;

use std::path::{Path, PathBuf};

use cli_support::data_dir;
use common::browser::{Browser, png_spread, severe};
use serde_json::Value;

/// `mom ARGS…`'s stdout, after checking it succeeded.
fn mom(args: &[&str]) -> String {
    let (code, out, err) = cli_support::mom(args);
    assert_eq!(code, 0, "mom {args:?}: {err}");
    out
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-plots-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Texts whose laid-out box (the browser's `getBBox`) leaves the SVG's `width` × `height`:
/// a label drawn past an edge is cut off in every viewer.
const TEXTS_OUTSIDE: &str = "const svg = document.documentElement;
    const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
    return [...document.querySelectorAll('text')].filter(t => {
        const r = t.getBoundingClientRect();
        return r.left < -0.5 || r.top < -0.5 || r.right > w + 0.5 || r.bottom > h + 0.5;
    }).map(t => t.textContent.trim());";

/// Opens `file` and checks what every plot must be: an SVG document, no console errors, no text
/// outside the picture, and a screenshot that is not blank (saved as `docs/<doc_name>` with
/// `MOM_UPDATE_SCREENSHOT=1`).
fn check_common(browser: &Browser, file: &Path, doc_name: &str) {
    browser.open(&format!("file://{}", file.display()));
    let root = browser.run("return document.documentElement.tagName");
    assert_eq!(root, "svg", "{} did not open as an SVG document", file.display());
    let outside = browser.run(TEXTS_OUTSIDE);
    assert_eq!(outside, Value::Array(vec![]), "texts cut off at the picture's edge");
    let errors = severe(&browser.console());
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let png = browser.element_screenshot("svg");
    let (colours, not_background, size) = png_spread(&png);
    println!(
        "{doc_name}: {size:?}, {colours} colours, {:.1}% not background",
        not_background * 100.0
    );
    assert!(
        colours >= 20 && not_background >= 0.02,
        "blank screenshot of {}: {colours} colours, {not_background} not background",
        file.display()
    );
    std::fs::write(file.with_extension("png"), &png).unwrap();
    if std::env::var_os("MOM_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs").join(doc_name);
        std::fs::write(&docs, &png).unwrap();
        println!("saved {}", docs.display());
    }
}

#[test]
fn the_simulate_plot_of_a_real_trace_renders_every_policy_across_the_plot_in_a_real_browser() {
    let dir = workdir("simulate");
    // One week of nyc_taxi (30-minute samples), read from the shared data.
    let full = std::fs::read_to_string(data_dir().join("NAB/data/realKnownCause/nyc_taxi.csv"))
        .expect("the NAB nyc_taxi trace (MOM_DATA_DIR or ../shared/data)");
    let week: Vec<&str> = full.lines().take(1 + 7 * 48).collect();
    let trace = dir.join("nyc_taxi_week.csv");
    std::fs::write(&trace, week.join("\n") + "\n").unwrap();
    let plot = dir.join("policies.svg");
    mom(&[
        "simulate",
        "--trace",
        path(&trace),
        "--policy",
        "all",
        "--plot",
        path(&plot),
        "--format",
        "json",
    ]);

    let browser = Browser::start();
    check_common(&browser, &plot, "simulate.png");
    // Each series is a line the browser draws across (nearly) the whole time axis.
    let widths = browser
        .run("return [...document.querySelectorAll('polyline')].map(l => [l.dataset.series, l.getBBox().width]);");
    let axis = browser.run(
        "const a = [...document.querySelectorAll('line')].find(l => l.getAttribute('stroke') === 'black');
         return a.x2.baseVal.value - a.x1.baseVal.value;",
    );
    let axis = axis.as_f64().expect("the time axis");
    let mut series = Vec::new();
    for entry in widths.as_array().unwrap() {
        let name = entry[0].as_str().unwrap().to_string();
        let width = entry[1].as_f64().unwrap();
        assert!(
            width > 0.95 * axis,
            "{name} drawn {width:.0} px wide on a {axis:.0} px axis"
        );
        series.push(name);
    }
    assert_eq!(series, ["demand", "predictive", "reactive", "hpa", "static"]);
    let texts = browser.run("return [...document.querySelectorAll('text')].map(t => t.textContent.trim());");
    for label in [
        "nyc_taxi_week",
        "demand",
        "predictive",
        "reactive",
        "hpa",
        "static",
        "time (hours)",
    ] {
        assert!(
            texts.as_array().unwrap().iter().any(|t| t == label),
            "no text {label:?}: {texts}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_pareto_plot_on_real_data_marks_exactly_the_points_beaten_on_both_axes_in_a_real_browser() {
    let dir = workdir("pareto");
    let d = data_dir();
    let snapshot = dir.join("snapshot.json");
    mom(&[
        "whatif",
        "snapshot",
        "--topology",
        path(&d.join("TopoHub/topozoo/Geant2012.json")),
        "--traces",
        path(&d.join("NAB/data/realAWSCloudwatch")),
        "--agents",
        "12",
        "--hours",
        "6",
        "--seed",
        "1",
        "--out",
        path(&snapshot),
    ]);
    // One sweep: the frontier as JSON on stdout and its plot in --plot.
    let svg = dir.join("pareto.svg");
    let out = mom(&[
        "whatif",
        "pareto",
        "--snapshot",
        path(&snapshot),
        "--points",
        "10",
        "--format",
        "json",
        "--plot",
        path(&svg),
    ]);
    let json: Value = serde_json::from_str(&out).unwrap();

    // Which points another point beats on both plotted metrics (latency, cost), from the JSON.
    let xy: Vec<(f64, f64)> = json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metrics"]["latencyMs"].as_f64().unwrap(),
                p["metrics"]["cost"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(xy.len() >= 2, "a frontier of {} point(s): {json}", xy.len());
    let beaten = xy
        .iter()
        .filter(|a| xy.iter().any(|b| b.0 <= a.0 && b.1 <= a.1 && (b.0 < a.0 || b.1 < a.1)))
        .count();
    println!(
        "{} points on the frontier, {beaten} beaten on both plotted axes",
        xy.len()
    );

    let browser = Browser::start();
    check_common(&browser, &svg, "pareto.png");
    let drawn = browser.run(
        "return [document.querySelectorAll('circle.point').length,
                 document.querySelectorAll('circle.beaten-on-plot').length,
                 document.querySelectorAll('text.weight').length];",
    );
    assert_eq!(
        drawn,
        serde_json::json!([xy.len(), beaten, xy.len()]),
        "circles, hollow circles, weight labels"
    );
    // The points spread over the plot, not piled on one spot or an axis.
    let spread = browser.run(
        "const c = [...document.querySelectorAll('circle.point')].map(c => c.getBoundingClientRect());
         const xs = c.map(r => r.left), ys = c.map(r => r.top);
         return [Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];",
    );
    let (dx, dy) = (spread[0].as_f64().unwrap(), spread[1].as_f64().unwrap());
    assert!(dx > 200.0 || dy > 200.0, "points within {dx:.0} × {dy:.0} px");
    // This snapshot (seed 1) has hollow points (4 of 8 when written): without them the marking
    // above would compare 0 with 0.
    assert!(
        beaten > 0,
        "no point beaten on the plot: the hollow marking is not exercised"
    );
    let caption = browser.run("return document.documentElement.textContent");
    assert!(
        caption
            .as_str()
            .unwrap()
            .contains("Hollow: another point is as good on both axes and better on one; kept for sloViolationMinutes"),
        "hollow points without the caption that explains them"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
