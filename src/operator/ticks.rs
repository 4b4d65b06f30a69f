//! Periods of the leader loops that `MomConfig.spec.tickSeconds` governs (the scaler, the
//! auction and the descheduler: the decision loops), and how one is chosen.
//!
//! Input: the loop's command-line flag (`--scaler-tick-seconds`, `--auction-tick-seconds`,
//! `--deschedule-tick-seconds`), when given, and `spec.tickSeconds` of the MomConfig `default`
//! as the operator's MomConfig watch last saw it (`None` while there is none). Output: the
//! period and where it came from, by one rule:
//!
//! period = the flag if given (an override) · else `spec.tickSeconds` (clamped to 1…3600, the
//! CRD's bounds, in case an object was stored under an older schema) · else [`BUILT_IN`] (15 s).
//!
//! The housekeeping loops (status every 3 s, checkpoints every 1 s) keep fixed periods
//! ([`Period::fixed`]): they report and seal, they decide nothing.

use std::time::Duration;

/// The period of a governed loop when neither its flag nor a MomConfig `default` says otherwise
/// (the CRD's default of `spec.tickSeconds`).
pub const BUILT_IN: Duration = Duration::from_secs(15);

/// Bounds of `spec.tickSeconds` (the CRD's CEL rule uses the same numbers).
pub const MIN_TICK_SECONDS: i32 = 1;
pub const MAX_TICK_SECONDS: i32 = 3600;

/// Where a loop's period comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The loop's command-line flag (it overrides the MomConfig).
    Flag,
    /// `spec.tickSeconds` of the MomConfig `default`.
    MomConfig,
    /// [`BUILT_IN`]: no flag and no MomConfig `default`.
    BuiltIn,
    /// A housekeeping loop's own period, which `spec.tickSeconds` does not govern.
    Fixed,
}

impl Origin {
    /// The word used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::MomConfig => "momconfig",
            Origin::BuiltIn => "built-in",
            Origin::Fixed => "fixed",
        }
    }
}

/// A loop's period now, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub every: Duration,
    pub origin: Origin,
}

impl Period {
    /// The period of a loop `spec.tickSeconds` does not govern.
    pub fn fixed(every: Duration) -> Self {
        Self {
            every,
            origin: Origin::Fixed,
        }
    }
}

/// How a governed loop's period is chosen: its command-line flag, if one was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// The flag's value; `None`: the loop follows `spec.tickSeconds`.
    pub flag: Option<Duration>,
}

impl Tick {
    /// A loop that follows `spec.tickSeconds` (no flag).
    pub fn from_momconfig() -> Self {
        Self { flag: None }
    }

    /// A loop whose flag overrides `spec.tickSeconds`.
    pub fn overridden(every: Duration) -> Self {
        Self { flag: Some(every) }
    }

    /// The period given `spec.tickSeconds` of the MomConfig `default` (`None`: no such object).
    pub fn resolve(&self, tick_seconds: Option<i32>) -> Period {
        match (self.flag, tick_seconds) {
            (Some(every), _) => Period {
                every,
                origin: Origin::Flag,
            },
            (None, Some(seconds)) => Period {
                every: Duration::from_secs(seconds.clamp(MIN_TICK_SECONDS, MAX_TICK_SECONDS) as u64),
                origin: Origin::MomConfig,
            },
            (None, None) => Period {
                every: BUILT_IN,
                origin: Origin::BuiltIn,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_given_flag_wins_over_the_momconfig_and_the_built_in_default() {
        let tick = Tick::overridden(secs(7));
        for configured in [None, Some(1), Some(15), Some(3600)] {
            assert_eq!(
                tick.resolve(configured),
                Period {
                    every: secs(7),
                    origin: Origin::Flag
                },
                "{configured:?}"
            );
        }
    }

    #[test]
    fn without_a_flag_the_period_is_the_momconfig_tick_seconds() {
        let tick = Tick::from_momconfig();
        for s in [1, 2, 15, 60, 3600] {
            assert_eq!(
                tick.resolve(Some(s)),
                Period {
                    every: secs(s as u64),
                    origin: Origin::MomConfig
                }
            );
        }
    }

    #[test]
    fn without_a_flag_or_a_momconfig_the_period_is_the_built_in_fifteen_seconds() {
        assert_eq!(
            Tick::from_momconfig().resolve(None),
            Period {
                every: secs(15),
                origin: Origin::BuiltIn
            }
        );
        assert_eq!(BUILT_IN, secs(15));
    }

    #[test]
    fn a_tick_seconds_outside_the_crd_bounds_is_clamped_to_them() {
        let tick = Tick::from_momconfig();
        assert_eq!(tick.resolve(Some(0)).every, secs(1));
        assert_eq!(tick.resolve(Some(-5)).every, secs(1));
        assert_eq!(tick.resolve(Some(i32::MAX)).every, secs(3600));
    }

    #[test]
    fn the_built_in_default_is_the_crd_default_of_tick_seconds() {
        let spec: crate::operator::crd::momconfig::MomConfigSpec = serde_json::from_value(serde_json::json!({
            "objectives": {"performance": 0.25, "cost": 0.25, "reliability": 0.25, "sustainability": 0.25}
        }))
        .unwrap();
        assert_eq!(Duration::from_secs(spec.tick_seconds as u64), BUILT_IN);
    }
}
