//! Anomaly detection on metric series: a streaming detector ([`detector`]) that gives every
//! point a score in [0, 1], and the Numenta Anomaly Benchmark scorer ([`nab`]) that judges
//! such scores against labelled anomaly windows. This file holds what both share: the error
//! type and the readers of NAB files (data/result CSVs, the label windows JSON).
//!
//! Inputs are text (a file's content and its name, for error messages); outputs are plain
//! rows. No file system access happens here: the CLI reads the files.

pub mod detector;
pub mod flag;
pub mod nab;
pub mod rca;
pub mod rca_eval;
pub mod shift;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::forecast::trace::parse_timestamp;

/// Errors of the anomaly area; each names the file, and the line and text when there is one.
#[derive(Debug, Error, PartialEq)]
pub enum AnomalyError {
    #[error("{file}: empty file (expected a header line)")]
    Empty { file: String },
    #[error("{file} line 1: header `{header}` has no `{column}` column")]
    MissingColumn {
        file: String,
        header: String,
        column: String,
    },
    #[error("{file} line {line}: bad timestamp `{text}` (expected YYYY-MM-DD HH:MM:SS[.ffffff])")]
    BadTimestamp { file: String, line: usize, text: String },
    #[error("{file} line {line}: bad {column} `{text}`")]
    BadNumber {
        file: String,
        line: usize,
        column: String,
        text: String,
    },
    #[error("{file} line {line}: has {got} fields, the header has {want}")]
    FieldCount {
        file: String,
        line: usize,
        got: usize,
        want: usize,
    },
    #[error("labels: {0}")]
    BadLabels(String),
    #[error("labels for {file}: window [{start}, {end}] has a timestamp that is not a row of the file")]
    WindowNotInFile { file: String, start: String, end: String },
    #[error("labels for {file}: windows are not in time order or overlap at `{start}`")]
    WindowsOutOfOrder { file: String, start: String },
    #[error("nab: no file to score (none of the files has labels)")]
    NothingToScore,
    #[error("nab: {file} has {scores} anomaly scores for {rows} rows")]
    LengthMismatch { file: String, scores: usize, rows: usize },
    #[error("detector: unknown parameter `{name}` (known: {known})")]
    UnknownParameter { name: String, known: &'static str },
    #[error("detector: bad parameter {name} = {value} ({why})")]
    BadParameter {
        name: &'static str,
        value: f64,
        why: &'static str,
    },
}

/// One row of a NAB data or result file: the timestamp (seconds since 1970, UTC), the value,
/// and the anomaly score when the file is a result file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub time: f64,
    pub value: f64,
    pub score: Option<f64>,
}

/// A parsed NAB CSV: the rows in file order and the raw timestamp text of each (written back
/// unchanged by `mom anomaly detect`).
#[derive(Debug, Clone, PartialEq)]
pub struct NabFile {
    pub rows: Vec<Row>,
    pub timestamps: Vec<String>,
    pub values: Vec<String>,
}

/// Parses a NAB data file (`timestamp,value`) or result file (`timestamp,value,anomaly_score,…`).
/// Columns are found by name; `anomaly_score` is read when present. Any finite score is
/// accepted, as NAB's scorer does (EXPoSE's published results dip slightly below 0).
/// Rows stay in file order (NAB scores by row index); blank lines are skipped.
pub fn parse_nab_csv(file: &str, text: &str) -> Result<NabFile, AnomalyError> {
    let mut lines = text.lines().enumerate();
    let header = loop {
        match lines.next() {
            None => return Err(AnomalyError::Empty { file: file.into() }),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l.trim().trim_start_matches('\u{feff}'),
        }
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| cols.iter().position(|c| *c == name);
    let missing = |column: &str| AnomalyError::MissingColumn {
        file: file.into(),
        header: header.into(),
        column: column.into(),
    };
    let ts_col = find("timestamp").ok_or_else(|| missing("timestamp"))?;
    let value_col = find("value").ok_or_else(|| missing("value"))?;
    let score_col = find("anomaly_score");
    let mut out = NabFile {
        rows: Vec::new(),
        timestamps: Vec::new(),
        values: Vec::new(),
    };
    for (idx, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let line_no = idx + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(AnomalyError::FieldCount {
                file: file.into(),
                line: line_no,
                got: fields.len(),
                want: cols.len(),
            });
        }
        let ts = fields[ts_col];
        let time = parse_timestamp(ts).ok_or_else(|| AnomalyError::BadTimestamp {
            file: file.into(),
            line: line_no,
            text: ts.into(),
        })?;
        let number = |col: usize, column: &str| {
            fields[col]
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| AnomalyError::BadNumber {
                    file: file.into(),
                    line: line_no,
                    column: column.into(),
                    text: fields[col].into(),
                })
        };
        let value = number(value_col, "value")?;
        let score = match score_col {
            None => None,
            Some(c) => Some(number(c, "anomaly_score")?),
        };
        out.rows.push(Row { time, value, score });
        out.timestamps.push(ts.into());
        out.values.push(fields[value_col].into());
    }
    Ok(out)
}

/// NAB's label file (`combined_windows.json`): for each data file (relative path such as
/// `realKnownCause/nyc_taxi.csv`), its anomaly windows as `[start, end]` timestamps (seconds).
pub type LabelWindows = BTreeMap<String, Vec<(f64, f64)>>;

/// Parses `combined_windows.json`: `{"dir/file.csv": [["YYYY-MM-DD HH:MM:SS.ffffff", "…"], …]}`.
pub fn parse_label_windows(text: &str) -> Result<LabelWindows, AnomalyError> {
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(text).map_err(|e| AnomalyError::BadLabels(e.to_string()))?;
    let mut out = LabelWindows::new();
    for (file, windows) in raw {
        let mut parsed = Vec::with_capacity(windows.len());
        for w in windows {
            let [start, end] = w.as_slice() else {
                return Err(AnomalyError::BadLabels(format!(
                    "{file}: a window must be [start, end], got {w:?}"
                )));
            };
            let t = |s: &String| {
                parse_timestamp(s).ok_or_else(|| AnomalyError::BadLabels(format!("{file}: bad timestamp `{s}`")))
            };
            parsed.push((t(start)?, t(end)?));
        }
        out.insert(file, parsed);
    }
    Ok(out)
}

/// Turns time windows into inclusive row ranges `(first, last)` of a file whose rows have
/// these timestamps. Like NAB, both ends must be timestamps of the file (first match), and
/// windows must follow one another without overlap.
pub fn window_rows(file: &str, times: &[f64], windows: &[(f64, f64)]) -> Result<Vec<(usize, usize)>, AnomalyError> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
    for &(start, end) in windows {
        let find = |t: f64| times.iter().position(|&x| x == t);
        let (Some(a), Some(b)) = (find(start), find(end)) else {
            return Err(AnomalyError::WindowNotInFile {
                file: file.into(),
                start: format!("{start}"),
                end: format!("{end}"),
            });
        };
        if b < a || out.last().is_some_and(|&(_, prev_end)| a <= prev_end) {
            return Err(AnomalyError::WindowsOutOfOrder {
                file: file.into(),
                start: format!("{start}"),
            });
        }
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_keeps_its_rows_in_file_order() {
        let f = parse_nab_csv(
            "a.csv",
            "timestamp,value\n2014-01-01 00:05:00,2\n2014-01-01 00:00:00,1.5\n",
        )
        .unwrap();
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.rows[0].value, 2.0);
        assert!(f.rows[0].time > f.rows[1].time);
        assert_eq!(f.timestamps[1], "2014-01-01 00:00:00");
        assert_eq!(f.rows[0].score, None);
    }

    #[test]
    fn a_result_file_gives_its_anomaly_scores_by_column_name() {
        let f = parse_nab_csv(
            "r.csv",
            "timestamp,value,anomaly_score,label\n2014-01-01 00:00:00,1,0.25,0\n",
        )
        .unwrap();
        assert_eq!(f.rows[0].score, Some(0.25));
    }

    #[test]
    fn a_malformed_value_is_an_error_naming_file_line_and_text() {
        let err = parse_nab_csv(
            "x.csv",
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,abc\n",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "x.csv line 3: bad value `abc`");
        let err = parse_nab_csv("x.csv", "timestamp,value\nyesterday,1\n").unwrap_err();
        assert!(
            err.to_string().starts_with("x.csv line 2: bad timestamp `yesterday`"),
            "{err}"
        );
        let err = parse_nab_csv("x.csv", "time,value\n").unwrap_err();
        assert!(err.to_string().contains("no `timestamp` column"), "{err}");
        let err = parse_nab_csv("x.csv", "timestamp,value,anomaly_score\n2014-01-01 00:00:00,1,inf\n").unwrap_err();
        assert!(err.to_string().contains("bad anomaly_score `inf`"), "{err}");
        let err = parse_nab_csv("x.csv", "timestamp,value\n2014-01-01 00:00:00,nan\n").unwrap_err();
        assert!(err.to_string().contains("bad value `nan`"), "{err}");
    }

    #[test]
    fn label_windows_map_to_inclusive_row_ranges() {
        let labels = parse_label_windows(
            r#"{"d/a.csv": [["2014-01-01 00:05:00.000000", "2014-01-01 00:10:00.000000"]], "d/b.csv": []}"#,
        )
        .unwrap();
        let times: Vec<f64> = (0..5).map(|i| 1_388_534_400.0 + 300.0 * f64::from(i)).collect();
        assert_eq!(
            window_rows("d/a.csv", &times, &labels["d/a.csv"]).unwrap(),
            vec![(1, 2)]
        );
        assert!(labels["d/b.csv"].is_empty());
        let missing = [(times[0] + 1.0, times[2])];
        assert!(matches!(
            window_rows("d/a.csv", &times, &missing),
            Err(AnomalyError::WindowNotInFile { .. })
        ));
    }
}
