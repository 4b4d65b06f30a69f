//! Progress of long CLI runs, on stderr only, so stdout stays the command's output (JSON stays
//! parseable with progress on).
//!
//! When: on a terminal, one line rewritten in place (`\r`) at each whole percent; elsewhere
//! (a pipe, a CI log) nothing, unless the command's `--progress` flag asks, then one plain
//! line per tenth of the work (`label: 40% (12.3 s)`), so logs stay short and greppable.

use std::io::{IsTerminal as _, Write};
use std::time::Instant;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Off,
    /// One line rewritten in place (a terminal).
    InPlace,
    /// One line per tenth of the work.
    Lines,
}

impl Mode {
    /// In place on a terminal; lines when `forced` (`--progress`) and stderr is not one; else off.
    pub fn for_stderr(forced: bool) -> Self {
        match (std::io::stderr().is_terminal(), forced) {
            (true, _) => Mode::InPlace,
            (false, true) => Mode::Lines,
            (false, false) => Mode::Off,
        }
    }
}

/// Reports the progress of one task (`label`) to `out` (stderr by default).
pub struct Progress<W: Write = std::io::Stderr> {
    label: String,
    mode: Mode,
    out: W,
    /// The last step shown: a percent (in place) or a tenth (lines).
    last: Option<u64>,
    started: Instant,
}

impl Progress {
    /// A reporter on stderr.
    pub fn stderr(label: impl Into<String>, mode: Mode) -> Self {
        Progress::to(label, mode, std::io::stderr())
    }
}

impl<W: Write> Progress<W> {
    pub fn to(label: impl Into<String>, mode: Mode, out: W) -> Self {
        Progress {
            label: label.into(),
            mode,
            out,
            last: None,
            started: Instant::now(),
        }
    }

    /// `done` of `total` units finished.
    pub fn count(&mut self, done: usize, total: usize) {
        let fraction = if total == 0 { 1.0 } else { done as f64 / total as f64 };
        self.fraction(fraction);
    }

    /// `fraction` (0..=1, clamped) of the work finished; prints only when the shown step moved.
    pub fn fraction(&mut self, fraction: f64) {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let percent = (fraction * 100.0).floor() as u64;
        let step = match self.mode {
            Mode::Off => return,
            Mode::InPlace => percent,
            Mode::Lines => percent / 10,
        };
        if self.last == Some(step) {
            return;
        }
        self.last = Some(step);
        let secs = self.started.elapsed().as_secs_f64();
        // Progress is best effort: a closed stderr must not fail the command.
        let _ = match self.mode {
            Mode::InPlace => write!(self.out, "\r{}: {percent:>3}% ({secs:.1} s)", self.label),
            _ => writeln!(self.out, "{}: {:>3}% ({secs:.1} s)", self.label, step * 10),
        };
        let _ = self.out.flush();
    }

    /// Ends the task: completes the in-place line.
    pub fn finish(mut self) {
        if self.mode == Mode::InPlace && self.last.is_some() {
            let _ = writeln!(self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(mode: Mode, fractions: &[f64]) -> String {
        let mut buf = Vec::new();
        let mut p = Progress::to("sim", mode, &mut buf);
        for &f in fractions {
            p.fraction(f);
        }
        p.finish();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn lines_mode_prints_one_line_per_tenth_however_often_it_is_told() {
        let fractions: Vec<f64> = (0..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let out = shown(Mode::Lines, &fractions);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 11, "{out}");
        assert!(lines[0].starts_with("sim:   0%"), "{out}");
        assert!(lines[10].starts_with("sim: 100%"), "{out}");
        assert!(!out.contains('\r'));
    }

    #[test]
    fn in_place_mode_rewrites_one_line_and_ends_it() {
        let out = shown(Mode::InPlace, &[0.0, 0.001, 0.5, 1.0]);
        assert_eq!(out.matches('\r').count(), 3, "{out:?}");
        assert!(out.ends_with('\n') && out.matches('\n').count() == 1, "{out:?}");
    }

    #[test]
    fn off_mode_prints_nothing_while_lines_mode_prints_for_the_same_calls() {
        assert_eq!(shown(Mode::Off, &[0.0, 0.5, 1.0]), "");
        assert_eq!(shown(Mode::Lines, &[0.0, 0.5, 1.0]).lines().count(), 3);
    }

    #[test]
    fn counts_and_odd_fractions_are_clamped() {
        let mut buf = Vec::new();
        let mut p = Progress::to("n", Mode::Lines, &mut buf);
        p.count(0, 0);
        p.fraction(f64::NAN);
        p.fraction(7.0);
        p.finish();
        let out = String::from_utf8(buf).unwrap();
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.lines().all(|l| l.contains("100%") || l.contains("  0%")), "{out}");
    }
}
