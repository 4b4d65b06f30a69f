//! `mom simulate` as a process, no cluster: with `--progress` the progress goes to stderr and
//! stdout stays the same JSON; `--plot FILE.svg` writes one well-formed SVG (checked with a
//! small XML parser here) with a demand line and one line per policy, as many points as the
//! replay has ticks, and a legend naming the policies; a plot path that cannot be written
//! exits 2 naming it, before anything is simulated, and a failed run leaves no empty plot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn mom(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mom")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A fresh directory with a five-hour NAB trace (`trace.csv`, one row a minute).
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-simulate-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("timestamp,value\n");
    for i in 0..300u32 {
        let burst = if (150..160).contains(&i) { 15.0 } else { 0.0 };
        let value = 10.0 + 8.0 * (f64::from(i) / 20.0).sin() + burst;
        csv.push_str(&format!("2024-01-01 {:02}:{:02}:00,{value:.3}\n", i / 60, i % 60));
    }
    std::fs::write(dir.join("trace.csv"), csv).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An element of a parsed XML document: its name, attributes and the text right after its
/// start tag.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

fn check_entities(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        let tail = &rest[at..];
        let end = tail
            .find(';')
            .ok_or_else(|| format!("unterminated entity in {text:?}"))?;
        let entity = &tail[1..end];
        let numeric = entity.strip_prefix('#').is_some_and(|n| {
            n.strip_prefix('x')
                .map_or_else(|| n.parse::<u32>().is_ok(), |h| u32::from_str_radix(h, 16).is_ok())
        });
        if !(numeric || ["amp", "lt", "gt", "quot", "apos"].contains(&entity)) {
            return Err(format!("unknown entity &{entity}; in {text:?}"));
        }
        rest = &tail[end + 1..];
    }
    Ok(())
}

/// Parses `doc` as XML far enough to know it is well formed (one root, tags nested and closed,
/// attributes quoted and unique, entities known); returns its elements in document order.
fn parse_xml(doc: &str) -> Result<Vec<Element>, String> {
    let mut elements = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = doc;
    let mut last_text_owner: Option<usize> = None;
    loop {
        let Some(lt) = rest.find('<') else {
            if !rest.trim().is_empty() && open.is_empty() {
                return Err(format!("text after the root: {rest:?}"));
            }
            check_entities(rest)?;
            break;
        };
        let text = &rest[..lt];
        check_entities(text)?;
        if text.contains('>') {
            return Err(format!("stray '>' in text {text:?}"));
        }
        if let Some(i) = last_text_owner.take() {
            let e: &mut Element = &mut elements[i];
            e.text.push_str(text);
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<?") {
            let end = after.find("?>").ok_or("unterminated processing instruction")?;
            rest = &after[end + 2..];
            continue;
        }
        let gt = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = open.pop().ok_or_else(|| format!("</{name}> closes nothing"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
            continue;
        }
        let (body, empty) = match tag.strip_suffix('/') {
            Some(b) => (b, true),
            None => (tag, false),
        };
        let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
        let name = &body[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || "-_:.".contains(c)) {
            return Err(format!("bad element name in <{tag}>"));
        }
        if open.is_empty() {
            roots += 1;
            if roots > 1 {
                return Err(format!("a second root <{name}>"));
            }
        }
        let mut attrs = BTreeMap::new();
        let mut a = body[name_end..].trim_start();
        while !a.is_empty() {
            let eq = a
                .find('=')
                .ok_or_else(|| format!("attribute without value in <{tag}>"))?;
            let key = a[..eq].trim();
            let after = a[eq + 1..].trim_start();
            let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'');
            let quote = quote.ok_or_else(|| format!("unquoted attribute {key} in <{tag}>"))?;
            let close = after[1..]
                .find(quote)
                .ok_or_else(|| format!("unterminated attribute {key}"))?;
            let value = &after[1..1 + close];
            if value.contains('<') {
                return Err(format!("'<' in attribute {key}"));
            }
            check_entities(value)?;
            if attrs.insert(key.to_string(), value.to_string()).is_some() {
                return Err(format!("attribute {key} twice in <{name}>"));
            }
            a = after[close + 2..].trim_start();
        }
        elements.push(Element {
            name: name.to_string(),
            attrs,
            text: String::new(),
        });
        last_text_owner = Some(elements.len() - 1);
        if !empty {
            open.push(name.to_string());
        }
    }
    if let Some(name) = open.pop() {
        return Err(format!("<{name}> is never closed"));
    }
    if roots != 1 {
        return Err("no root element".into());
    }
    Ok(elements)
}

/// The JSON with every `seconds` (wall-clock time of a run) removed.
fn without_timings(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("seconds");
            for value in map.values_mut() {
                *value = without_timings(value.take());
            }
        }
        Value::Array(items) => {
            for value in items.iter_mut() {
                *value = without_timings(value.take());
            }
        }
        _ => {}
    }
    v
}

#[test]
fn the_test_xml_parser_rejects_malformed_documents_it_would_otherwise_accept() {
    assert!(parse_xml(r#"<svg a="1"><g><text>x &amp; y</text></g></svg>"#).is_ok());
    for bad in [
        "<svg><g></svg>",
        "<svg>",
        r#"<svg a=1></svg>"#,
        r#"<svg a="1" a="2"></svg>"#,
        "<svg>x & y</svg>",
        "<svg></svg><svg></svg>",
        "<svg></g>",
    ] {
        assert!(parse_xml(bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn simulate_with_progress_keeps_stdout_json_and_plots_every_policy_in_well_formed_svg() {
    let dir = workdir("plot");
    let trace = dir.join("trace.csv");
    let plot = dir.join("policies.svg");
    let base = [
        "simulate",
        "--trace",
        path(&trace),
        "--policy",
        "all",
        "--format",
        "json",
    ];

    let (code, plain_out, plain_err) = mom(&base);
    assert_eq!(code, 0, "{plain_err}");
    assert!(
        !plain_err.contains('%'),
        "progress shown without --progress on a non-terminal stderr: {plain_err}"
    );

    let mut args = base.to_vec();
    args.extend(["--progress", "--plot", path(&plot), "--out", path(&dir)]);
    let (code, out, err) = mom(&args);
    assert_eq!(code, 0, "{err}");
    for policy in ["predictive", "reactive", "hpa", "static"] {
        assert!(
            err.contains(&format!("trace {policy}: 100%")),
            "no progress of {policy}: {err}"
        );
    }
    assert!(!err.contains('\r'), "in-place progress off a terminal: {err:?}");
    let json: Value = serde_json::from_str(&out).expect("stdout is JSON with --progress");
    let plain: Value = serde_json::from_str(&plain_out).unwrap();
    assert_eq!(
        without_timings(json.clone()),
        without_timings(plain),
        "--progress/--plot changed the result"
    );
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(4), "{json}");

    let svg = std::fs::read_to_string(&plot).expect("the plot file");
    let elements = parse_xml(&svg).unwrap_or_else(|e| panic!("the plot is not well-formed XML: {e}"));
    assert_eq!(elements[0].name, "svg");
    assert_eq!(elements[0].attrs["xmlns"], "http://www.w3.org/2000/svg");
    // As many points per line as the replay has ticks (bucketed past plot::MAX_POINTS): the
    // per-policy CSV of --out has one row per tick.
    let ticks = std::fs::read_to_string(dir.join("trace_predictive.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let want = mom::simulator::plot::points_for(ticks);
    assert!(want > 100, "{ticks} ticks drawn with only {want} points");
    let lines: Vec<&Element> = elements.iter().filter(|e| e.name == "polyline").collect();
    let series: Vec<&str> = lines.iter().map(|e| e.attrs["data-series"].as_str()).collect();
    assert_eq!(series, ["demand", "predictive", "reactive", "hpa", "static"]);
    for line in &lines {
        let points: Vec<&str> = line.attrs["points"].split_whitespace().collect();
        assert_eq!(points.len(), want, "{}", line.attrs["data-series"]);
        for p in points {
            let (x, y) = p.split_once(',').expect("x,y");
            assert!(x.parse::<f64>().is_ok() && y.parse::<f64>().is_ok(), "bad point {p}");
        }
    }
    let texts: Vec<&str> = elements
        .iter()
        .filter(|e| e.name == "text")
        .map(|e| e.text.trim())
        .collect();
    for label in [
        "demand",
        "predictive",
        "reactive",
        "hpa",
        "static",
        "time (hours)",
        "trace",
    ] {
        assert!(texts.contains(&label), "no text {label:?} in the plot: {texts:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_plot_path_exits_2_naming_it_before_simulating_and_a_failed_run_leaves_no_plot() {
    let dir = workdir("badplot");
    let trace = dir.join("trace.csv");
    let plot = dir.join("missing-dir/plot.svg");
    let (code, out, err) = mom(&["simulate", "--trace", path(&trace), "--plot", path(&plot), "--progress"]);
    assert_eq!(code, 2, "stdout {out}\nstderr {err}");
    assert!(err.contains(path(&plot)), "{err}");
    assert!(!err.contains("100%"), "simulated before checking the plot path: {err}");
    assert!(out.is_empty(), "{out}");
    // A run that fails after the plot was opened (a trace that does not exist) leaves no
    // empty plot behind.
    let good = dir.join("plot.svg");
    let missing = dir.join("no-such-trace.csv");
    let (code, _, err) = mom(&["simulate", "--trace", path(&missing), "--plot", path(&good)]);
    assert_ne!(code, 0, "a missing trace was simulated");
    assert!(err.contains("no-such-trace.csv"), "{err}");
    assert!(!good.exists(), "a failed run left {}", good.display());
    // Positive control: the same run with a writable path and a real trace succeeds.
    let (code, _, err) = mom(&["simulate", "--trace", path(&trace), "--plot", path(&good)]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::metadata(&good).is_ok_and(|m| m.len() > 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two trace families (directories) of two small traces each, one row a minute.
fn lofo_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mom-simulate-cli-lofo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (fam, k) in [("famA", 0u32), ("famA", 1), ("famB", 2), ("famB", 3)] {
        std::fs::create_dir_all(dir.join(fam)).unwrap();
        let mut csv = String::from("timestamp,value\n");
        for i in 0..90u32 {
            let burst = if (40 + 5 * k..45 + 5 * k).contains(&i) {
                12.0
            } else {
                0.0
            };
            let value = 10.0 + 6.0 * (f64::from(i + 7 * k) / 9.0).sin() + burst;
            csv.push_str(&format!("2024-01-01 {:02}:{:02}:00,{value:.3}\n", i / 60, i % 60));
        }
        std::fs::write(dir.join(fam).join(format!("t{k}.csv")), csv).unwrap();
    }
    dir
}

#[test]
fn lofo_validation_prints_per_trace_per_family_and_aggregate_json_and_is_deterministic() {
    let dir = lofo_dir();
    let args = |jobs: &'static str| {
        vec![
            "simulate".to_string(),
            "--trace".into(),
            path(&dir).into(),
            "--validate".into(),
            "lofo".into(),
            "--lofo-levels".into(),
            "0.5,0.9".into(),
            "--jobs".into(),
            jobs.into(),
        ]
    };
    let run = |jobs| {
        let a = args(jobs);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        mom(&a)
    };
    let (code, out, err) = run("1");
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["grid"].as_array().unwrap().len(), 2);
    let fams = v["families"].as_array().unwrap();
    assert_eq!(
        fams.iter().map(|f| f["family"].as_str().unwrap()).collect::<Vec<_>>(),
        ["famA", "famB"]
    );
    for f in fams {
        // Each family's guard was chosen on the other family's two traces.
        assert_eq!(f["trained_on_traces"], 2, "{f}");
        assert_eq!(f["held_out_traces"].as_array().unwrap().len(), 2);
    }
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 4);
    for t in traces {
        for side in ["predictive", "hpa"] {
            for field in ["slo_violation_minutes", "replica_hours", "scaling_actions"] {
                assert!(t[side][field].is_number(), "{t}");
            }
        }
        assert!(t["target_met"].is_boolean());
        assert!(t["dominated_by_hpa"].is_boolean());
        assert_eq!(t["every_guard"].as_object().unwrap().len(), 2);
        let fam = t["family"].as_str().unwrap();
        let chosen = &fams.iter().find(|f| f["family"] == fam).unwrap()["chosen"];
        assert_eq!(&t["chosen"], chosen);
    }
    assert!(v["aggregate"]["replica_hours_ratio"].is_number());
    assert_eq!(v["targets"]["per_trace_total"], 4);
    assert!(v["targets"]["aggregate"].is_boolean());
    // The thread count changes nothing in the output.
    let (code, again, err) = run("3");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, again);
    // One family cannot be left out against anything.
    let (code, _, err) = mom(&["simulate", "--trace", path(&dir.join("famA")), "--validate", "lofo"]);
    assert_ne!(code, 0);
    assert!(err.contains("two families"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
