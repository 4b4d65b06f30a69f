//! A streaming level-shift detector: evidence in [0, 1] that a series has moved to a new level
//! and stays there, which one-point spikes do not give. O(1) time and memory per point, no
//! look-ahead, deterministic.
//!
//! # Model
//! A baseline level `m` and spread `d` (exponentially weighted mean and mean absolute
//! deviation, σ̂ = d·√(π/2), the normal-law relation `E|X − μ| = σ·√(2/π)`), learnt from the
//! first `warmup` points by plain averages and afterwards at rate `alpha` from the *winsorised*
//! point `m + clamp(z)·σ̂`, so a spike moves it by at most `alpha·clip·σ̂`. Each point's standard
//! score `z = clamp((x − m)/σ̂, −clip, clip)` feeds a two-sided CUSUM (Page, 1954):
//!
//! `U ← max(0, U + z − k)`, `D ← max(0, D − z − k)`, evidence `= min(1, max(U, D)/h)`
//!
//! with slack `k` and limit `h` in σ. A shift of `Δ ≥ 3σ` adds about `Δ − k` per point and
//! reaches `h` within a few points; a spike adds at most `clip − k` once and then drains by `k`
//! per point. While `max(U, D) ≥ h` the baseline is frozen, so a lasting shift stays evident
//! instead of being learnt as the new normal.

use serde::Serialize;

/// Settings of a [`ShiftDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShiftParams {
    /// Points that only learn the baseline (evidence 0).
    pub warmup: u32,
    /// Rate at which the baseline follows the (winsorised) series after the warm-up.
    pub alpha: f64,
    /// CUSUM slack `k`, in σ.
    pub slack: f64,
    /// Standard scores are clipped to ±`clip` (σ) before they reach the CUSUM and the baseline.
    pub clip: f64,
    /// CUSUM limit `h`, in σ: the sum at which the evidence is 1.
    pub limit: f64,
}

impl Default for ShiftParams {
    fn default() -> Self {
        ShiftParams {
            warmup: 30,
            alpha: 0.02,
            slack: 1.0,
            clip: 3.0,
            limit: 5.0,
        }
    }
}

impl ShiftParams {
    /// Why these settings cannot run, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        if self.warmup < 2 {
            return Err(format!("shift warmup must be at least 2 points, got {}", self.warmup));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!("shift alpha must be in (0, 1), got {}", self.alpha));
        }
        for (name, v) in [("slack", self.slack), ("clip", self.clip), ("limit", self.limit)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("shift {name} must be finite and > 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// The detector's state for one series (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftDetector {
    params: ShiftParams,
    seen: u64,
    mean: f64,
    deviation: f64,
    up: f64,
    down: f64,
}

impl ShiftDetector {
    pub fn new(params: ShiftParams) -> Self {
        ShiftDetector {
            params,
            seen: 0,
            mean: 0.0,
            deviation: 0.0,
            up: 0.0,
            down: 0.0,
        }
    }

    /// The evidence after the last point.
    pub fn evidence(&self) -> f64 {
        (self.up.max(self.down) / self.params.limit).clamp(0.0, 1.0)
    }

    /// Takes one point and returns the evidence of a level shift so far. Non-finite points are
    /// skipped (the evidence stays).
    pub fn update(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return self.evidence();
        }
        self.seen += 1;
        let p = self.params;
        if self.seen <= u64::from(p.warmup) {
            let n = self.seen as f64;
            self.mean += (x - self.mean) / n;
            self.deviation += ((x - self.mean).abs() - self.deviation) / n;
            return 0.0;
        }
        let sigma = (self.deviation * std::f64::consts::FRAC_PI_2.sqrt()).max(1e-9 * self.mean.abs().max(1.0));
        let z = ((x - self.mean) / sigma).clamp(-p.clip, p.clip);
        self.up = (self.up + z - p.slack).max(0.0);
        self.down = (self.down - z - p.slack).max(0.0);
        if self.up.max(self.down) < p.limit {
            let winsorised = self.mean + z * sigma;
            self.mean += p.alpha * (winsorised - self.mean);
            self.deviation += p.alpha * ((winsorised - self.mean).abs() - self.deviation);
        }
        self.evidence()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-0.5, 0.5) (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 10_000) as f64 / 10_000.0 - 0.5
            })
            .collect()
    }

    fn run(values: &[f64]) -> Vec<f64> {
        let mut d = ShiftDetector::new(ShiftParams::default());
        values.iter().map(|&v| d.update(v)).collect()
    }

    #[test]
    fn a_lasting_shift_of_three_sigma_is_fully_evident_within_ten_points_and_stays() {
        // uniform noise of width 1: σ ≈ 0.29; a shift of 1.0 is about 3.5σ
        let mut v: Vec<f64> = noise(200, 7).iter().map(|z| 50.0 + z).collect();
        for x in v.iter_mut().skip(120) {
            *x += 1.0;
        }
        let e = run(&v);
        assert!(e[..120].iter().all(|&x| x < 1.0), "no full evidence before the shift");
        assert!(e[130] >= 1.0, "evident 10 points after the shift: {:?}", &e[118..131]);
        assert!(e[131..].iter().all(|&x| x >= 1.0), "and it stays while the level does");
    }

    #[test]
    fn isolated_spikes_never_give_full_evidence_and_drain_away() {
        let mut v: Vec<f64> = noise(200, 11).iter().map(|z| 50.0 + z).collect();
        for t in [60, 100, 140] {
            v[t] += 3.0; // about 10σ, one point each
        }
        let e = run(&v);
        assert!(
            e.iter().all(|&x| x < 1.0),
            "max evidence {}",
            e.iter().copied().fold(0.0, f64::max)
        );
        assert!(e[150] < 0.2, "drained 10 points after the last spike: {}", e[150]);
        // positive control: the same spike held for 4 points is a shift
        let mut held = v.clone();
        for x in held.iter_mut().skip(170).take(4) {
            *x += 3.0;
        }
        assert!(run(&held)[173] >= 1.0);
    }

    #[test]
    fn a_downward_shift_is_evident_too() {
        let mut v: Vec<f64> = noise(120, 3).iter().map(|z| 50.0 + z).collect();
        for x in v.iter_mut().skip(80) {
            *x -= 1.5;
        }
        assert!(run(&v)[95] >= 1.0);
    }

    #[test]
    fn the_warmup_gives_no_evidence_and_non_finite_points_are_skipped() {
        let mut d = ShiftDetector::new(ShiftParams::default());
        for i in 0..30 {
            assert_eq!(d.update(f64::from(i % 3)), 0.0);
        }
        let before = d.clone();
        assert_eq!(d.update(f64::NAN), 0.0);
        assert_eq!(d, before, "a NaN changes nothing");
    }

    #[test]
    fn a_constant_series_stays_silent_and_a_jump_off_it_is_evident() {
        let mut d = ShiftDetector::new(ShiftParams::default());
        for _ in 0..100 {
            assert_eq!(d.update(5.0), 0.0);
        }
        let mut last = 0.0;
        for _ in 0..5 {
            last = d.update(6.0);
        }
        assert_eq!(last, 1.0);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = ShiftParams {
            alpha: 1.5,
            ..ShiftParams::default()
        };
        assert!(bad.check().unwrap_err().contains("alpha"));
        let bad = ShiftParams {
            limit: 0.0,
            ..ShiftParams::default()
        };
        assert!(bad.check().unwrap_err().contains("limit"));
        assert!(ShiftParams::default().check().is_ok());
    }
}
