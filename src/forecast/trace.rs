//! Trace loading: NAB CSV (`timestamp,value`) and the Azure LLM inference request log
//! (`TIMESTAMP,ContextTokens,GeneratedTokens`) binned to requests per second.
//! Output: a [`Trace`] — equally spaced values and the step in seconds.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of trace loading; each names the file position and the offending text.
#[derive(Debug, Error)]
pub enum TraceError {
    #[error("trace: cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("trace line {line}: bad timestamp `{text}` (expected YYYY-MM-DD HH:MM:SS[.fff])")]
    BadTimestamp { line: usize, text: String },
    #[error("trace line {line}: bad value `{text}`")]
    BadValue { line: usize, text: String },
    #[error("trace: header `{0}` is neither NAB (timestamp,value) nor Azure (TIMESTAMP,...)")]
    UnknownHeader(String),
    #[error("trace: fewer than 2 data rows")]
    TooShort,
    #[error("trace: bin_seconds must be > 0, got {0}")]
    BadBin(f64),
    #[error("trace: {path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error(
        "trace: spans {points} points at a step of {step} s (from line {first_line} to line {last_line}); at most {limit} are allowed"
    )]
    TooLong {
        points: f64,
        step: f64,
        first_line: usize,
        last_line: usize,
        limit: usize,
    },
}

/// Largest trace file read (the shared traces are under 1 MB each).
pub const MAX_TRACE_BYTES: u64 = 256 << 20;

/// Most points a trace may expand to once equally spaced (gaps filled, requests binned): a trace
/// spanning centuries binned to seconds is refused before anything is allocated.
pub const MAX_TRACE_POINTS: usize = 2_000_000;

/// The error when `span` seconds at `step` would make more than [`MAX_TRACE_POINTS`] points.
fn check_span(span: f64, step: f64, first_line: usize, last_line: usize) -> Result<usize, TraceError> {
    let points = (span / step).floor() + 1.0;
    if !points.is_finite() || points > MAX_TRACE_POINTS as f64 {
        return Err(TraceError::TooLong {
            points,
            step,
            first_line,
            last_line,
            limit: MAX_TRACE_POINTS,
        });
    }
    Ok(points as usize)
}

/// An equally spaced series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub name: String,
    pub step_seconds: f64,
    pub values: Vec<f64>,
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.frac]` (proleptic Gregorian, UTC); years 1…9999
/// (anything else is `None`, so the arithmetic below cannot overflow).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

/// Parses a NAB CSV. Rows are ordered by time; missing timestamps (gaps) are filled by carrying the last value forward so
/// the series stays equally spaced at the most common step.
pub fn parse_nab(name: &str, text: &str) -> Result<Trace, TraceError> {
    let mut rows: Vec<(f64, f64, usize)> = Vec::new();
    for (idx, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (ts, v) = line.split_once(',').ok_or_else(|| TraceError::BadValue {
            line: idx + 1,
            text: line.to_string(),
        })?;
        let t = parse_timestamp(ts).ok_or_else(|| TraceError::BadTimestamp {
            line: idx + 1,
            text: ts.to_string(),
        })?;
        let v: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .ok_or_else(|| TraceError::BadValue {
                line: idx + 1,
                text: v.to_string(),
            })?;
        rows.push((t, v, idx + 1));
    }
    if rows.len() < 2 {
        return Err(TraceError::TooShort);
    }
    // Some NAB files repeat or reorder an hour; order by time (stable, so for a repeated
    // timestamp the later row wins below).
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut steps: Vec<i64> = rows
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).round() as i64)
        .filter(|&d| d > 0)
        .collect();
    steps.sort_unstable();
    // Most common step; ties go to the smaller one.
    let mut step = 1i64;
    let mut best = 0usize;
    for run in steps.chunk_by(|a, b| a == b) {
        if run.len() > best {
            best = run.len();
            step = run[0];
        }
    }
    let step = step.max(1) as f64;
    let t0 = rows[0].0;
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    check_span(last.0 - t0, step, first.2, last.2)?;
    let mut values = Vec::with_capacity(rows.len());
    for &(t, v, _) in &rows {
        let k = ((t - t0) / step).round() as usize;
        if k < values.len() {
            // Duplicate or off-grid row: the later value wins.
            if let Some(last) = values.last_mut() {
                *last = v;
            }
            continue;
        }
        while values.len() < k {
            let last = values.last().copied().unwrap_or(v);
            values.push(last);
        }
        values.push(v);
    }
    Ok(Trace {
        name: name.to_string(),
        step_seconds: step,
        values,
    })
}

/// Bins the Azure request log to requests per second over bins of `bin_seconds`.
pub fn parse_azure(name: &str, text: &str, bin_seconds: f64) -> Result<Trace, TraceError> {
    if !(bin_seconds.is_finite() && bin_seconds > 0.0) {
        return Err(TraceError::BadBin(bin_seconds));
    }
    let mut times: Vec<(f64, usize)> = Vec::new();
    for (idx, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let ts = line.split(',').next().unwrap_or("");
        let t = parse_timestamp(ts).ok_or_else(|| TraceError::BadTimestamp {
            line: idx + 1,
            text: ts.to_string(),
        })?;
        times.push((t, idx + 1));
    }
    if times.len() < 2 {
        return Err(TraceError::TooShort);
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = times[0].0;
    let (first, last) = (times[0], times[times.len() - 1]);
    let bins = check_span(last.0 - t0, bin_seconds, first.1, last.1)?;
    let mut counts = vec![0.0; bins];
    for (t, _) in times {
        let k = (((t - t0) / bin_seconds).floor() as usize).min(bins - 1);
        counts[k] += 1.0;
    }
    Ok(Trace {
        name: name.to_string(),
        step_seconds: bin_seconds,
        values: counts.into_iter().map(|c| c / bin_seconds).collect(),
    })
}

/// Parses either format, chosen by the header line.
pub fn parse_trace(name: &str, text: &str, azure_bin_seconds: f64) -> Result<Trace, TraceError> {
    let header = text.lines().next().unwrap_or("").trim().to_ascii_lowercase();
    if header.starts_with("timestamp,value") {
        parse_nab(name, text)
    } else if header.starts_with("timestamp,") {
        parse_azure(name, text, azure_bin_seconds)
    } else {
        Err(TraceError::UnknownHeader(header))
    }
}

/// Reads and parses a trace file; the name is the file stem.
pub fn load_trace(path: &Path, azure_bin_seconds: f64) -> Result<Trace, TraceError> {
    use std::io::Read as _;
    let io = |source| TraceError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_TRACE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_TRACE_BYTES {
        return Err(TraceError::TooLarge {
            path: path.display().to_string(),
            limit: MAX_TRACE_BYTES,
        });
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_trace(&name, &text, azure_bin_seconds)
}

/// The data directory: `$MOM_DATA_DIR`, else `../shared/data` next to the crate.
pub fn data_dir() -> std::path::PathBuf {
    std::env::var("MOM_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Fuzzing (proptest): any text, in either format, gives a trace or an error, never a
        /// panic or an allocation beyond MAX_TRACE_POINTS.
        #[test]
        fn arbitrary_trace_text_never_panics(
            header in proptest::prop_oneof!["timestamp,value", "TIMESTAMP,ContextTokens,GeneratedTokens"],
            rows in proptest::collection::vec(
                ("[0-9-]{0,22}", "[ T]", "[0-9:.]{0,16}", "\\PC{0,12}"),
                0..40,
            ),
            bin in proptest::prop_oneof![proptest::prelude::Just(1.0), 0.001f64..1e7],
        ) {
            let mut text = header.to_string();
            for (date, sep, time, rest) in rows {
                text.push_str(&format!("\n{date}{sep}{time},{rest}"));
            }
            if let Ok(t) = parse_trace("fuzz", &text, bin) {
                proptest::prop_assert!(t.values.len() <= MAX_TRACE_POINTS);
            }
        }
    }

    #[test]
    fn a_huge_year_is_a_bad_timestamp_not_an_overflow() {
        for ts in [
            "99999999999999-01-01 00:00:00",
            "0-01-01 00:00:00",
            "-5-01-01 00:00:00",
            "10000-01-01 00:00:00",
        ] {
            assert_eq!(parse_timestamp(ts), None, "{ts}");
        }
        let text = "timestamp,value\n2020-01-01 00:00:00,1\n99999999999999-01-01 00:00:00,2\n";
        let err = parse_nab("t", text).unwrap_err();
        assert!(
            err.to_string().contains("line 3") && err.to_string().contains("99999999999999"),
            "{err}"
        );
        assert!(parse_timestamp("9999-12-31 23:59:59").is_some());
    }

    #[test]
    fn a_trace_spanning_centuries_at_a_short_step_is_refused_before_allocating() {
        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n1900-01-01 00:00:00,1,1\n2100-01-01 00:00:00,1,1\n";
        let err = parse_azure("a", azure, 1.0).unwrap_err();
        assert!(
            matches!(
                err,
                TraceError::TooLong {
                    first_line: 2,
                    last_line: 3,
                    ..
                }
            ),
            "{err}"
        );
        let nab = "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:01,1\n2020-01-01 00:00:02,1\n9000-01-01 00:00:00,1\n";
        let err = parse_nab("n", nab).unwrap_err();
        assert!(err.to_string().contains("at most 2000000"), "{err}");
        // Positive control: the same span binned coarsely is fine.
        assert!(parse_azure("a", azure, 86_400.0 * 365.0).is_ok());
    }

    #[test]
    fn timestamps_parse_to_unix_seconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(parse_timestamp("2014-07-01 00:30:00"), Some(1_404_174_600.0));
        assert_eq!(parse_timestamp("2023-11-16 18:15:46.5"), Some(1_700_158_546.5));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn nab_csv_with_a_gap_is_filled_forward() {
        let t = parse_nab(
            "x",
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2\n2014-01-01 00:15:00,4\n",
        )
        .unwrap();
        assert_eq!(t.step_seconds, 300.0);
        assert_eq!(t.values, vec![1.0, 2.0, 2.0, 4.0]);
    }

    #[test]
    fn azure_requests_are_binned_to_a_rate() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,1,1\n2023-11-16 18:00:05.0,1,1\n2023-11-16 18:00:12.0,1,1\n";
        let t = parse_trace("az", text, 10.0).unwrap();
        assert_eq!(t.values, vec![0.2, 0.1]);
    }

    #[test]
    fn malformed_traces_name_the_line_and_text() {
        let e = parse_nab("x", "timestamp,value\n2014-01-01 00:00:00,abc\n2014-01-01 00:05:00,1\n").unwrap_err();
        assert!(e.to_string().contains("line 2") && e.to_string().contains("abc"), "{e}");
        assert!(matches!(
            parse_trace("x", "a,b\n", 10.0),
            Err(TraceError::UnknownHeader(_))
        ));
        assert!(matches!(
            parse_azure("x", "TIMESTAMP\n", 0.0),
            Err(TraceError::BadBin(_))
        ));
        assert!(matches!(
            parse_nab("x", "timestamp,value\n2014-01-01 00:00:00,1\n"),
            Err(TraceError::TooShort)
        ));
    }

    #[test]
    fn a_slice_of_the_real_nyc_taxi_trace_loads_at_30_minute_steps() {
        let path = data_dir().join("NAB/data/realKnownCause/nyc_taxi.csv");
        let text = std::fs::read_to_string(path).unwrap();
        let head: String = text.lines().take(200).collect::<Vec<_>>().join("\n");
        let t = parse_trace("nyc_taxi", &head, 10.0).unwrap();
        assert_eq!(t.step_seconds, 1800.0);
        assert_eq!(t.values.len(), 199);
        assert_eq!(t.values[0], 10844.0);
    }
}
