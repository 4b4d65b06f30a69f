//! The anomaly flag decision: one series' window of points, scored from a fresh state by the
//! series' detector (the streaming detector [`super::detector`] by default, or the level-shift
//! CUSUM [`super::shift`]), gives whether the series' flag is raised now.
//!
//! Hysteresis as a pure function of the window: the flag is raised while some point among the
//! last `clearPoints` scored at least `threshold`; it is set by the first point that crosses and
//! cleared once `clearPoints` points in a row stayed below. The same window always gives the
//! same answer, so the operator rebuilds its state on a new leader by reading the window again
//! (a range query), and `mom verify --replay` recomputes a recorded decision from the window
//! stored inline in its receipt ([`replay`], kind [`FLAG_KIND`]).
//!
//! The first [`SETTLE_POINTS`] points of a window only train the detector and never raise a
//! flag: its surprise tails need a few dozen points before a score means anything (on uniform
//! noise, scores reach 1 around point 40; after point 60 none of 200 seeds passed 0.58).
//!
//! Bounded: a window holds at most [`MAX_POINTS`] points; the detector itself has fixed memory.
//!
//! A flag that no series names any more (its series was removed from `spec.anomaly`, or its
//! flag renamed, or the whole `spec.anomaly` removed) has no window to decide it: [`unnamed`]
//! decides it instead, from the series the spec lists now (kind [`UNNAMED_KIND`]): it stays
//! raised only while some series names it, so such a flag is cleared on the next pass.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::detector::{Params, score_timed_series};
use crate::receipts::replay::ReplayError;

/// The decision kind recorded in receipts.
pub const FLAG_KIND: &str = "anomaly.flag";
/// Points at the start of a window that never raise a flag (see the module doc).
pub const SETTLE_POINTS: usize = 60;
/// The decision kind of a flag that no series names ([`unnamed`]).
pub const UNNAMED_KIND: &str = "anomaly.unnamed";
/// Most points one window may hold.
pub const MAX_POINTS: usize = 4096;

/// Errors of a flag decision's inputs; each names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagError {
    #[error("threshold must be in (0, 1], got {0}")]
    BadThreshold(f64),
    #[error("clearPoints must be at least 1")]
    BadClearPoints,
    #[error("the window has {times} timestamps and {values} values")]
    LengthMismatch { times: usize, values: usize },
    #[error("the window has {0} points; at most {MAX_POINTS} are allowed")]
    TooManyPoints(usize),
    #[error("the window's timestamps are not increasing at point {0}")]
    NotIncreasing(usize),
    #[error("rarityEdge must be in [0, 1e9], got {0}")]
    BadRarityEdge(f64),
}

/// Everything a flag decision depends on (recorded inline in its receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagInputs {
    /// The series' name in the MomConfig.
    pub series: String,
    /// Who the series is about (`node/<name>` or `agent/<namespace>/<name>`).
    pub subject: String,
    /// The flag the series raises.
    pub flag: String,
    /// A point scoring at least this raises the flag.
    pub threshold: f64,
    /// Points in a row below the threshold that clear it.
    pub clear_points: u32,
    /// Point times, Unix seconds, increasing.
    pub times: Vec<f64>,
    /// Point values (non-finite ones are skipped by the detector).
    pub values: Vec<f64>,
    /// Which detector scores the window (absent in receipts written before the choice existed,
    /// and for the default, so their inputs and replay are unchanged).
    #[serde(default, skip_serializing_if = "Detector::is_default")]
    pub detector: Detector,
    /// The streaming detector's rarity `edge` ([`Params::edge`]) the window was scored with.
    /// Absent in receipts written before that rule existed: they replay with 0, the rule they
    /// ran with (a value beyond the range as rare as an empty bin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rarity_edge: Option<f64>,
}

/// The detector a series is scored with (MomConfig `spec.anomaly.*Series[].detector`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// The streaming surprise detector ([`super::detector`]): spikes and new records.
    #[default]
    Nab,
    /// The level-shift CUSUM ([`super::shift`]): a lasting move to a new level, not one-point
    /// spikes. Its score is the CUSUM's evidence `min(1, max(U, D)/h)`.
    Shift,
}

impl Detector {
    fn is_default(&self) -> bool {
        *self == Detector::Nab
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagOutput {
    pub flagged: bool,
    /// Largest score among the last `clearPoints` points (0 for an empty window).
    pub recent_score: f64,
    /// Index in the window of the newest point at or above the threshold, if any.
    pub last_crossing: Option<usize>,
    /// Points scored.
    pub points: usize,
}

/// Scores the window and decides the flag (see the module doc).
pub fn evaluate(inputs: &FlagInputs) -> Result<FlagOutput, FlagError> {
    if !(inputs.threshold > 0.0 && inputs.threshold <= 1.0) {
        return Err(FlagError::BadThreshold(inputs.threshold));
    }
    if inputs.clear_points == 0 {
        return Err(FlagError::BadClearPoints);
    }
    if inputs.times.len() != inputs.values.len() {
        return Err(FlagError::LengthMismatch {
            times: inputs.times.len(),
            values: inputs.values.len(),
        });
    }
    if inputs.values.len() > MAX_POINTS {
        return Err(FlagError::TooManyPoints(inputs.values.len()));
    }
    if let Some(i) = inputs
        .times
        .windows(2)
        .position(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater))
    {
        return Err(FlagError::NotIncreasing(i + 1));
    }
    let rows: Vec<(f64, f64)> = inputs
        .times
        .iter()
        .copied()
        .zip(inputs.values.iter().copied())
        .collect();
    let edge = inputs.rarity_edge.unwrap_or(0.0);
    if !(0.0..=1e9).contains(&edge) {
        return Err(FlagError::BadRarityEdge(edge));
    }
    let mut scores = match inputs.detector {
        Detector::Nab => score_timed_series(
            &rows,
            Params {
                edge,
                ..Params::default()
            },
        ),
        Detector::Shift => {
            let mut d = super::shift::ShiftDetector::new(super::shift::ShiftParams::default());
            rows.iter().map(|&(_, v)| d.update(v)).collect()
        }
    };
    for s in scores.iter_mut().take(SETTLE_POINTS) {
        *s = 0.0;
    }
    let last_crossing = scores.iter().rposition(|&s| s >= inputs.threshold);
    let recent_from = scores.len().saturating_sub(inputs.clear_points as usize);
    let recent_score = scores[recent_from..].iter().copied().fold(0.0, f64::max);
    Ok(FlagOutput {
        flagged: last_crossing.is_some_and(|i| i >= recent_from),
        recent_score,
        last_crossing,
        points: scores.len(),
    })
}

/// The receipt's decision: `{kind, inputs, output}`.
pub fn decision_record(inputs: &FlagInputs, output: &FlagOutput) -> Value {
    json!({ "kind": FLAG_KIND, "inputs": inputs, "output": output })
}

/// Recomputes a recorded flag decision from its inputs, for `mom verify --replay`.
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    crate::receipts::replay::replay_typed(inputs, |i: &FlagInputs| evaluate(i))
}

/// One series the spec lists now: its name and the flag it raises.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamedSeries {
    pub name: String,
    pub flag: String,
}

/// Everything the decision on a flag without a window depends on (inline in its receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnnamedInputs {
    /// Who carries the flag (`node/<name>` or `agent/<namespace>/<name>`).
    pub subject: String,
    /// The flag the subject carries now.
    pub flag: String,
    /// The series of the subject's scope (node or agent) the spec lists now, sorted; empty
    /// when `spec.anomaly` is removed or lists none.
    pub series: Vec<NamedSeries>,
}

/// The decision: whether the flag stays, and the series that name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnnamedOutput {
    pub flagged: bool,
    pub named_by: Vec<String>,
}

/// Whether a flag a subject carries is still named by a series of the spec: if not, it is
/// cleared (`flagged: false`); if so, the series' own window decides it ([`evaluate`]).
pub fn unnamed(inputs: &UnnamedInputs) -> UnnamedOutput {
    let mut named_by: Vec<String> = inputs
        .series
        .iter()
        .filter(|s| s.flag == inputs.flag)
        .map(|s| s.name.clone())
        .collect();
    named_by.sort();
    UnnamedOutput {
        flagged: !named_by.is_empty(),
        named_by,
    }
}

/// The flags among `carried` that no series in `series` names, each with its decision inputs
/// (in flag order): what the anomaly loop clears.
pub fn unnamed_flags<'a>(
    subject: &str,
    carried: impl IntoIterator<Item = &'a String>,
    series: &[NamedSeries],
) -> Vec<(UnnamedInputs, UnnamedOutput)> {
    let mut sorted = series.to_vec();
    sorted.sort();
    let mut flags: Vec<&String> = carried.into_iter().collect();
    flags.sort();
    flags.dedup();
    flags
        .into_iter()
        .filter_map(|flag| {
            let inputs = UnnamedInputs {
                subject: subject.to_string(),
                flag: flag.clone(),
                series: sorted.clone(),
            };
            let out = unnamed(&inputs);
            (!out.flagged).then_some((inputs, out))
        })
        .collect()
}

/// The receipt's decision for a flag without a window: `{kind, inputs, output}`.
pub fn unnamed_record(inputs: &UnnamedInputs, output: &UnnamedOutput) -> Value {
    json!({ "kind": UNNAMED_KIND, "inputs": inputs, "output": output })
}

/// Recomputes a recorded [`unnamed`] decision, for `mom verify --replay`.
pub fn replay_unnamed(inputs: &Value) -> Result<Value, ReplayError> {
    crate::receipts::replay::replay_typed(inputs, |i: &UnnamedInputs| {
        Ok::<_, std::convert::Infallible>(unnamed(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noisy level (xorshift): `n` points every 15 s around 10 ± 0.5, with
    /// `spike` added to the points in `at`.
    pub(crate) fn window(n: usize, at: std::ops::Range<usize>, spike: f64) -> FlagInputs {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let values = (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let noise = (s % 1000) as f64 / 1000.0 - 0.5;
                10.0 + noise + if at.contains(&i) { spike } else { 0.0 }
            })
            .collect();
        FlagInputs {
            series: "latency".into(),
            subject: "node/n1".into(),
            flag: "latency-high".into(),
            threshold: 0.7,
            clear_points: 10,
            times: (0..n).map(|i| 1_700_000_000.0 + 15.0 * i as f64).collect(),
            values,
            detector: Detector::Nab,
            rarity_edge: Some(Params::default().edge),
        }
    }

    #[test]
    fn the_shift_detector_flags_a_lasting_level_shift_and_not_a_spike_that_the_default_flags() {
        // A one-point spike: the default detector flags it, the shift detector does not (a
        // clipped point adds at most clip − slack = 2σ to the CUSUM, 0.4 of its limit).
        let spike = window(120, 118..119, 50.0);
        assert!(evaluate(&spike).unwrap().flagged);
        let shift = FlagInputs {
            detector: Detector::Shift,
            ..spike
        };
        let out = evaluate(&shift).unwrap();
        assert!(!out.flagged, "{out:?}");
        // A lasting shift of +5 (≈ 17σ of the ±0.5 noise) from point 100 on: flagged, and still
        // flagged at the end of the window.
        let lasting = FlagInputs {
            detector: Detector::Shift,
            ..window(140, 100..140, 5.0)
        };
        let out = evaluate(&lasting).unwrap();
        assert!(out.flagged && out.last_crossing == Some(139), "{out:?}");
        // Its decision replays, and the detector is in the recorded inputs.
        let record = decision_record(&lasting, &out);
        assert_eq!(record["inputs"]["detector"], "shift");
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        // The default is left out of the inputs: receipts from before the choice replay as they were.
        let record = decision_record(&window(120, 0..0, 0.0), &evaluate(&window(120, 0..0, 0.0)).unwrap());
        assert!(record["inputs"].get("detector").is_none(), "{record:#}");
    }

    #[test]
    fn a_receipt_from_before_the_rarity_edge_replays_with_the_rule_it_ran_with() {
        // A window whose last point is a new maximum by a hair: the rarity edge scores it as
        // common as the top bin, the rule before it as an empty bin (a record).
        let mut inputs = window(400, 0..0, 0.0);
        let top = inputs.values.iter().cloned().fold(f64::MIN, f64::max);
        *inputs.values.last_mut().unwrap() = top + 1e-6;
        inputs.threshold = 0.45;
        inputs.clear_points = 1;
        let now = evaluate(&inputs).unwrap();
        let record = decision_record(&inputs, &now);
        assert_eq!(record["inputs"]["rarityEdge"], Params::default().edge);
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        // The same inputs as an older receipt holds them (no `rarityEdge`).
        let mut old = record["inputs"].clone();
        old.as_object_mut().unwrap().remove("rarityEdge");
        let before = evaluate(&FlagInputs {
            rarity_edge: None,
            ..inputs.clone()
        })
        .unwrap();
        assert_eq!(replay(&old).unwrap(), serde_json::to_value(&before).unwrap());
        assert!(before.recent_score > now.recent_score, "{before:?} vs {now:?}");
        // A bad edge is named.
        let err = evaluate(&FlagInputs {
            rarity_edge: Some(-1.0),
            ..inputs
        })
        .unwrap_err();
        assert!(err.to_string().contains("rarityEdge"), "{err}");
    }

    #[test]
    fn a_spike_after_warm_up_raises_the_flag_and_a_quiet_series_does_not() {
        let quiet = evaluate(&window(120, 0..0, 0.0)).unwrap();
        assert!(!quiet.flagged, "{quiet:?}");
        let spiked = evaluate(&window(120, 115..120, 50.0)).unwrap();
        assert!(spiked.flagged, "{spiked:?}");
        assert!(spiked.last_crossing.is_some_and(|i| i >= 115), "{spiked:?}");
    }

    #[test]
    fn points_before_the_detector_settles_never_raise_the_flag() {
        let early = evaluate(&window(80, 40..43, 50.0)).unwrap();
        assert!(!early.flagged && early.last_crossing.is_none(), "{early:?}");
        // Positive control: the same spike once the detector has settled.
        let late = evaluate(&window(80, 70..73, 50.0)).unwrap();
        assert!(late.flagged, "{late:?}");
    }

    #[test]
    fn uniform_noise_rarely_raises_a_flag() {
        // Measured: 1 of 49 seeds crosses 0.7 once in 300 points (15 s apart, so the daily
        // profile meets a new hour); false alarms exist, they are rare.
        let mut alarms = 0;
        for seed in 1..50u64 {
            let mut w = window(300, 0..0, 0.0);
            let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for v in &mut w.values {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *v = 10.0 + (s % 1000) as f64 / 1000.0 - 0.5;
            }
            if evaluate(&w).unwrap().last_crossing.is_some() {
                alarms += 1;
            }
        }
        assert!(alarms <= 2, "{alarms} of 49 noise series raised a flag");
    }

    #[test]
    fn the_flag_clears_only_after_clear_points_below_the_threshold() {
        // Spike at 100..103; the series recovers after it.
        let mut w = window(120, 100..103, 50.0);
        w.clear_points = 30;
        let held = evaluate(&w).unwrap();
        assert!(held.flagged, "still within 30 points of the spike: {held:?}");
        w.clear_points = 10;
        let cleared = evaluate(&w).unwrap();
        assert!(!cleared.flagged, "17 quiet points after the spike: {cleared:?}");
        assert_eq!(held.last_crossing, cleared.last_crossing);
    }

    #[test]
    fn the_same_window_gives_the_same_decision_and_replay_recomputes_it() {
        let w = window(120, 115..120, 50.0);
        let out = evaluate(&w).unwrap();
        assert_eq!(evaluate(&w).unwrap(), out);
        let record = decision_record(&w, &out);
        assert_eq!(record["kind"], FLAG_KIND);
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
        // An edited window replays to another decision (the comparison can fail).
        let mut edited = record["inputs"].clone();
        edited["values"] = json!(window(120, 0..0, 0.0).values);
        assert_ne!(replay(&edited).unwrap(), record["output"]);
    }

    fn named(name: &str, flag: &str) -> NamedSeries {
        NamedSeries {
            name: name.into(),
            flag: flag.into(),
        }
    }

    #[test]
    fn a_flag_no_series_names_is_cleared_and_one_still_named_is_left_to_its_window() {
        let carried = ["slow".to_string(), "errors".to_string(), "old".to_string()];
        // `old` was renamed to `slow`; `errors` lost its series; `slow` is still named.
        let series = [named("lat", "slow"), named("lat2", "slow")];
        let cleared = unnamed_flags("node/n1", &carried, &series);
        let flags: Vec<&str> = cleared.iter().map(|(i, _)| i.flag.as_str()).collect();
        assert_eq!(flags, ["errors", "old"]);
        assert!(cleared.iter().all(|(_, o)| !o.flagged && o.named_by.is_empty()));
        // Positive control: the named flag stays, naming its series.
        let kept = unnamed(&UnnamedInputs {
            subject: "node/n1".into(),
            flag: "slow".into(),
            series: series.to_vec(),
        });
        assert_eq!(
            kept,
            UnnamedOutput {
                flagged: true,
                named_by: vec!["lat".into(), "lat2".into()]
            }
        );
        // The whole `spec.anomaly` removed: no series names anything, every flag is cleared.
        assert_eq!(unnamed_flags("node/n1", &carried, &[]).len(), 3);
        assert!(unnamed_flags("node/n1", &[], &series).is_empty());
    }

    #[test]
    fn an_unnamed_flag_decision_replays_and_an_edited_one_does_not() {
        let (inputs, out) = unnamed_flags("agent/ns/web", &["gone".to_string()], &[named("lat", "slow")])
            .pop()
            .unwrap();
        let record = unnamed_record(&inputs, &out);
        assert_eq!(record["kind"], UNNAMED_KIND);
        assert_eq!(replay_unnamed(&record["inputs"]).unwrap(), record["output"]);
        let mut edited = record["inputs"].clone();
        edited["series"] = json!([{"name": "lat", "flag": "gone"}]);
        assert_ne!(replay_unnamed(&edited).unwrap(), record["output"]);
        for garbage in [json!(null), json!({"subject": 3}), json!([])] {
            assert!(replay_unnamed(&garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let mut w = window(5, 0..0, 0.0);
        w.threshold = 0.0;
        assert_eq!(evaluate(&w), Err(FlagError::BadThreshold(0.0)));
        let mut w = window(5, 0..0, 0.0);
        w.clear_points = 0;
        assert_eq!(evaluate(&w), Err(FlagError::BadClearPoints));
        let mut w = window(5, 0..0, 0.0);
        w.values.pop();
        assert!(matches!(evaluate(&w), Err(FlagError::LengthMismatch { .. })));
        let mut w = window(5, 0..0, 0.0);
        w.times[3] = w.times[2];
        assert_eq!(evaluate(&w), Err(FlagError::NotIncreasing(3)));
        let empty = evaluate(&window(0, 0..0, 0.0)).unwrap();
        assert!(!empty.flagged && empty.points == 0);
        for garbage in [json!(null), json!({"series": 3}), json!([])] {
            assert!(replay(&garbage).is_err(), "{garbage}");
        }
    }
}
