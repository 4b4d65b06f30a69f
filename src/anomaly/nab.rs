//! The Numenta Anomaly Benchmark (NAB) scorer: given anomaly scores per row and labelled
//! anomaly windows per file, the corpus score of a detector under NAB's three application
//! profiles, with the threshold optimised over the corpus and the score normalised so that
//! the null detector (never fires) scores 0 and the perfect detector scores 100.
//!
//! The rules, as NAB's `sweeper.py`, `optimizer.py` and `runner.py` apply them:
//! - The first `min(⌊0.15·n⌋, 750)` rows of a file (the probation) are not scored.
//! - A row is a detection when its anomaly score is ≥ the threshold θ.
//! - A row inside window w = [a, b] (width W = b − a + 1) weighs
//!   `A_tp · σ₂(−(b − i + 1)/W) / σ₂(−1)`, where `σ₂(x) = 2/(1 + e^{5x}) − 1` for x ≤ 3 and −1
//!   beyond (the scaled sigmoid). Only the best detection of a window counts; a window with
//!   no detection costs `−A_fn`.
//! - A detection outside every window costs `A_fp · σ₂(|i − b_prev| / (W_prev − 1))` after a
//!   window (cheap just after its right edge, −A_fp far from it) and `−A_fp` before the first.
//! - Raw score S(θ) = Σ windows + Σ false positives over the corpus; θ* = argmax S (the
//!   highest θ on ties); normalised = `100 · (S(θ*) − S_null) / (S_perfect − S_null)` with
//!   `S_null = −A_fn · (windows with a scored row)` and `S_perfect = A_tp · (all windows)`.

use serde::Serialize;

use super::AnomalyError;

/// NAB's probation: the share of a file's first rows that is not scored.
pub const PROBATION_PERCENT: f64 = 0.15;

/// Weights of true positives, false positives and false negatives in one profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostMatrix {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's application profiles (`config/profiles.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Profile {
    Standard,
    RewardLowFpRate,
    RewardLowFnRate,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Standard, Profile::RewardLowFpRate, Profile::RewardLowFnRate];

    /// The profile's name in NAB's files and in our JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::RewardLowFpRate => "reward_low_FP_rate",
            Profile::RewardLowFnRate => "reward_low_FN_rate",
        }
    }

    pub fn costs(self) -> CostMatrix {
        match self {
            Profile::Standard => CostMatrix {
                tp: 1.0,
                fp: 0.11,
                fn_: 1.0,
            },
            Profile::RewardLowFpRate => CostMatrix {
                tp: 1.0,
                fp: 0.22,
                fn_: 1.0,
            },
            Profile::RewardLowFnRate => CostMatrix {
                tp: 1.0,
                fp: 0.11,
                fn_: 2.0,
            },
        }
    }
}

/// One file to score: its name (for errors), the anomaly score of every row in file order,
/// and its windows as inclusive row ranges (see [`super::window_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredFile {
    pub name: String,
    pub scores: Vec<f64>,
    pub windows: Vec<(usize, usize)>,
}

/// The score of a corpus under one profile at its optimised threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileScore {
    pub profile: &'static str,
    pub threshold: f64,
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
    pub normalised: f64,
    /// Scored rows at the threshold: detections inside / outside windows, and the rest.
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

/// NAB's scaled sigmoid `σ₂(x) = 2·sigmoid(−5x) − 1`, and −1 for x > 3.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Rows at the start of an `n`-row file that are not scored: `min(⌊0.15·n⌋, 0.15·5000)`.
pub fn probation_length(n: usize) -> usize {
    let p = (PROBATION_PERCENT * n as f64).floor().min(PROBATION_PERCENT * 5000.0);
    p as usize
}

/// A scored row: its anomaly score, its weight when it is a detection, its window (corpus-wide
/// index) if any.
#[derive(Debug, Clone, Copy)]
struct Point {
    score: f64,
    weight: f64,
    window: Option<usize>,
}

/// The scored rows of one file (probation left out), windows numbered from `first_window`.
fn sweep(file: &ScoredFile, costs: CostMatrix, first_window: usize) -> Vec<Point> {
    let n = file.scores.len();
    let probation = probation_length(n);
    let max_tp = scaled_sigmoid(-1.0);
    let mut out = Vec::with_capacity(n.saturating_sub(probation));
    let mut next = 0usize;
    let mut current: Option<(usize, usize, usize)> = None; // (index, a, b)
    let mut previous: Option<(usize, f64)> = None; // (b, width)
    for (i, &score) in file.scores.iter().enumerate() {
        if current.is_none() && next < file.windows.len() && file.windows[next].0 == i {
            current = Some((first_window + next, file.windows[next].0, file.windows[next].1));
            next += 1;
        }
        let (weight, window) = match current {
            Some((w, a, b)) => {
                let width = (b - a + 1) as f64;
                let position = -((b - i + 1) as f64) / width;
                (scaled_sigmoid(position) * costs.tp / max_tp, Some(w))
            }
            None => match previous {
                None => (-costs.fp, None),
                Some((b, width)) => (scaled_sigmoid(i.abs_diff(b) as f64 / (width - 1.0)) * costs.fp, None),
            },
        };
        if i >= probation {
            out.push(Point { score, weight, window });
        }
        if let Some((_, a, b)) = current
            && i == b
        {
            previous = Some((b, (b - a + 1) as f64));
            current = None;
        }
    }
    out
}

/// The corpus raw score at every distinct threshold, from "no detection" (θ = 1.1) down to the
/// lowest anomaly score: `(θ, S(θ), tp, fp)`, θ decreasing.
fn sweep_thresholds(points: &mut [Point], windows: usize, costs: CostMatrix) -> Vec<(f64, f64, usize, usize)> {
    points.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut best: Vec<Option<f64>> = vec![None; windows];
    for p in points.iter() {
        if let Some(w) = p.window {
            best[w] = Some(-costs.fn_);
        }
    }
    let mut window_sum: f64 = best.iter().flatten().sum();
    let mut fp_sum = 0.0;
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut threshold = 1.1;
    let mut out = Vec::new();
    for p in points.iter() {
        if p.score != threshold {
            out.push((threshold, fp_sum + window_sum, tp, fp));
            threshold = p.score;
        }
        match p.window {
            Some(w) => {
                tp += 1;
                let old = best[w].unwrap_or(-costs.fn_);
                if p.weight > old {
                    window_sum += p.weight - old;
                    best[w] = Some(p.weight);
                }
            }
            None => {
                fp += 1;
                fp_sum += p.weight;
            }
        }
    }
    out.push((threshold, fp_sum + window_sum, tp, fp));
    out
}

fn check(files: &[ScoredFile]) -> Result<(Vec<usize>, usize), AnomalyError> {
    if files.is_empty() {
        return Err(AnomalyError::NothingToScore);
    }
    let mut offsets = Vec::with_capacity(files.len());
    let mut total = 0;
    for f in files {
        if let Some(&(_, b)) = f.windows.last()
            && b >= f.scores.len()
        {
            return Err(AnomalyError::LengthMismatch {
                file: f.name.clone(),
                scores: f.scores.len(),
                rows: b + 1,
            });
        }
        offsets.push(total);
        total += f.windows.len();
    }
    Ok((offsets, total))
}

fn all_points(files: &[ScoredFile], costs: CostMatrix, offsets: &[usize]) -> Vec<Point> {
    files
        .iter()
        .zip(offsets)
        .flat_map(|(f, &o)| sweep(f, costs, o))
        .collect()
}

/// Scores the corpus under `profile` with the threshold optimised over the whole corpus.
pub fn score_corpus(files: &[ScoredFile], profile: Profile) -> Result<ProfileScore, AnomalyError> {
    score_corpus_with(files, profile, None)
}

/// Scores the corpus under `profile` at `threshold` when given, else at the optimised one.
pub fn score_corpus_with(
    files: &[ScoredFile],
    profile: Profile,
    threshold: Option<f64>,
) -> Result<ProfileScore, AnomalyError> {
    let costs = profile.costs();
    let (offsets, windows) = check(files)?;
    let mut points = all_points(files, costs, &offsets);
    let scored_rows = points.len();
    let in_windows = points.iter().filter(|p| p.window.is_some()).count();
    let rows = sweep_thresholds(&mut points, windows, costs);
    let scorable_windows = {
        let mut seen = vec![false; windows];
        for p in &points {
            if let Some(w) = p.window {
                seen[w] = true;
            }
        }
        seen.iter().filter(|&&s| s).count()
    };
    let null = -costs.fn_ * scorable_windows as f64;
    let perfect = costs.tp * windows as f64;
    if perfect - null <= 0.0 {
        return Err(AnomalyError::NothingToScore);
    }
    let chosen = match threshold {
        // The first (highest) threshold with the largest score, as NAB's stable sort picks.
        None => rows
            .iter()
            .fold(rows[0], |best, r| if r.1 > best.1 { *r } else { best }),
        // Detections are the rows scoring ≥ θ: the last row whose threshold is ≥ θ.
        Some(t) => rows.iter().take_while(|r| r.0 >= t).last().copied().unwrap_or(rows[0]),
    };
    let (threshold, raw, tp, fp) = chosen;
    Ok(ProfileScore {
        profile: profile.name(),
        threshold,
        raw,
        null,
        perfect,
        normalised: 100.0 * (raw - null) / (perfect - null),
        tp,
        fp,
        tn: scored_rows - in_windows - fp,
        fn_: in_windows - tp,
    })
}

/// Raw NAB score of each file at `threshold` (windows plus false positives of that file), to
/// see where a detector gains and loses.
pub fn per_file_raw(files: &[ScoredFile], profile: Profile, threshold: f64) -> Vec<f64> {
    let costs = profile.costs();
    files
        .iter()
        .map(|f| {
            let mut best: Vec<f64> = vec![f64::NEG_INFINITY; f.windows.len()];
            let mut fp = 0.0;
            for p in sweep(f, costs, 0) {
                if let Some(w) = p.window {
                    if best[w] == f64::NEG_INFINITY {
                        best[w] = -costs.fn_;
                    }
                    if p.score >= threshold {
                        best[w] = best[w].max(p.weight);
                    }
                } else if p.score >= threshold {
                    fp += p.weight;
                }
            }
            fp + best.iter().filter(|b| b.is_finite()).sum::<f64>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 rows (probation 15), one window at rows 60..=69.
    fn file(scores: Vec<f64>) -> ScoredFile {
        ScoredFile {
            name: "t.csv".into(),
            scores,
            windows: vec![(60, 69)],
        }
    }

    fn score(scores: Vec<f64>, profile: Profile) -> ProfileScore {
        score_corpus(&[file(scores)], profile).unwrap()
    }

    #[test]
    fn the_scaled_sigmoid_matches_nabs_documented_values() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614).abs() < 1e-6);
        assert!((scaled_sigmoid(-0.5) - 0.848_284).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(1.0) + 0.986_614).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750_rows() {
        assert_eq!(probation_length(100), 15);
        assert_eq!(probation_length(4032), 604);
        assert_eq!(probation_length(22_695), 750);
    }

    #[test]
    fn a_detector_firing_at_the_start_of_every_window_scores_100() {
        let mut s = vec![0.0; 100];
        s[60] = 1.0;
        for p in Profile::ALL {
            let r = score(s.clone(), p);
            assert!((r.normalised - 100.0).abs() < 1e-9, "{p:?}: {r:?}");
            assert_eq!((r.tp, r.fp), (1, 0));
        }
    }

    #[test]
    fn the_null_detector_scores_0_in_every_profile() {
        for p in Profile::ALL {
            let r = score(vec![0.5; 100], p);
            assert_eq!(r.normalised, 0.0, "{p:?}");
            assert_eq!(r.raw, -p.costs().fn_);
            assert_eq!(r.threshold, 1.1, "firing everywhere costs more than never firing");
        }
    }

    #[test]
    fn one_early_false_positive_costs_the_profiles_fp_weight() {
        // Row 20 is after probation and before any window: −A_fp, on top of a perfect detection.
        let mut s = vec![0.0; 100];
        s[60] = 1.0;
        s[20] = 1.0;
        for (p, fp) in [
            (Profile::Standard, 0.11),
            (Profile::RewardLowFpRate, 0.22),
            (Profile::RewardLowFnRate, 0.11),
        ] {
            let r = score_corpus_with(&[file(s.clone())], p, Some(1.0)).unwrap();
            assert!((r.raw - (1.0 - fp)).abs() < 1e-12, "{p:?}: {r:?}");
            let expected = 100.0 * (1.0 - fp + p.costs().fn_) / (1.0 + p.costs().fn_);
            assert!((r.normalised - expected).abs() < 1e-9);
            assert_eq!((r.tp, r.fp), (1, 1));
        }
    }

    #[test]
    fn a_detection_in_probation_is_not_scored() {
        let mut s = vec![0.0; 100];
        s[60] = 1.0;
        s[14] = 1.0;
        let r = score_corpus_with(&[file(s)], Profile::Standard, Some(1.0)).unwrap();
        assert!((r.raw - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_late_detection_earns_less_than_an_early_one_and_only_the_best_counts() {
        let at = |rows: &[usize]| {
            let mut s = vec![0.0; 100];
            for &r in rows {
                s[r] = 1.0;
            }
            score_corpus_with(&[file(s)], Profile::Standard, Some(1.0)).unwrap().raw
        };
        let early = at(&[60]);
        let middle = at(&[65]);
        let last = at(&[69]);
        assert!(early > middle && middle > last && last > 0.0);
        // Row 65 is at position −5/10: σ₂(−0.5)/σ₂(−1).
        assert!((middle - scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)).abs() < 1e-12);
        assert_eq!(at(&[60, 65, 69]), early);
    }

    #[test]
    fn a_false_positive_just_after_a_window_costs_little_and_far_after_costs_fully() {
        let mut s = vec![0.0; 100];
        s[60] = 1.0;
        s[70] = 1.0; // one row past b = 69, W = 10: σ₂(1/9)·A_fp
        let r = score_corpus_with(&[file(s.clone())], Profile::Standard, Some(1.0)).unwrap();
        assert!((r.raw - (1.0 + 0.11 * scaled_sigmoid(1.0 / 9.0))).abs() < 1e-12);
        s[70] = 0.0;
        s[99] = 1.0; // 30 rows past: position 30/9 > 3 → −A_fp
        let r = score_corpus_with(&[file(s)], Profile::Standard, Some(1.0)).unwrap();
        assert!((r.raw - (1.0 - 0.11)).abs() < 1e-12);
    }

    #[test]
    fn the_optimised_threshold_separates_windows_from_noise() {
        // Noise at 0.4 everywhere, 0.9 at the window start: θ* = 0.9 gives the perfect score.
        let mut s = vec![0.4; 100];
        s[60] = 0.9;
        let r = score(s, Profile::Standard);
        assert_eq!(r.threshold, 0.9);
        assert!((r.normalised - 100.0).abs() < 1e-9);
    }

    #[test]
    fn per_file_scores_add_up_to_the_corpus_score() {
        let mut a = vec![0.3; 100];
        a[62] = 0.8;
        a[30] = 0.7;
        let mut b = vec![0.1; 100];
        b[90] = 0.9;
        let files = [file(a), file(b)];
        let r = score_corpus(&files, Profile::Standard).unwrap();
        let sum: f64 = per_file_raw(&files, Profile::Standard, r.threshold).iter().sum();
        assert!((sum - r.raw).abs() < 1e-9, "{sum} vs {r:?}");
    }
}
