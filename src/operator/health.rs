//! Liveness of the operator's own tasks, for `/healthz`: a watch that ended or a loop that
//! stopped beating makes the process unhealthy, so the kubelet restarts it instead of leaving a
//! replica that answers "ok" while its view or its loops are frozen.
//!
//! Watches register when they start and are marked ended when their task returns (for any
//! reason: a poisoned lock, a stream that ended, a panic). Leader loops beat at every iteration
//! (leading or not) and after every tick; a loop whose last beat is older than its stall limit
//! is stuck, either in a tick that does not finish or because its task is gone. The limit is
//! [`stall_limit`] of the loop's period, so a slow apiserver (ticks of a few seconds) never
//! counts as stuck.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time without a beat after which a loop counts as stuck.
pub const MIN_STALL: Duration = Duration::from_secs(120);

/// How long a loop with this tick period may go without a beat: ten periods, at least
/// [`MIN_STALL`].
pub fn stall_limit(period: Duration) -> Duration {
    period.saturating_mul(10).max(MIN_STALL)
}

#[derive(Debug, Clone)]
enum State {
    /// A watch that runs.
    Watching,
    /// A task that returned; the text says what it was doing.
    Ended(String),
    /// A loop: its last beat and how long it may go without one.
    Beating { last: Instant, limit: Duration },
}

/// The registry `/healthz` reads.
#[derive(Debug, Default)]
pub struct Health {
    tasks: Mutex<BTreeMap<String, State>>,
}

impl Health {
    fn set(&self, name: &str, state: State) {
        // A poisoned registry still holds valid entries (each update is one insert).
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.insert(name.to_string(), state);
    }

    /// A watch started.
    pub fn watching(&self, name: &str) {
        self.set(name, State::Watching);
    }

    /// A task that should run for the life of the process returned.
    pub fn ended(&self, name: &str, why: &str) {
        self.set(name, State::Ended(why.to_string()));
    }

    /// A loop with tick period `period` is alive now.
    pub fn beat(&self, name: &str, period: Duration, now: Instant) {
        self.set(
            name,
            State::Beating {
                last: now,
                limit: stall_limit(period),
            },
        );
    }

    /// `Ok` when every registered task is alive at `now`; otherwise one line per problem,
    /// sorted by task name.
    pub fn check(&self, now: Instant) -> Result<(), Vec<String>> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let problems: Vec<String> = tasks
            .iter()
            .filter_map(|(name, state)| match state {
                State::Watching => None,
                State::Ended(why) => Some(format!("{name} ended: {why}")),
                State::Beating { last, limit } => {
                    let quiet = now.saturating_duration_since(*last);
                    (quiet > *limit).then(|| {
                        format!(
                            "{name} is stuck: no progress for {} s (limit {} s)",
                            quiet.as_secs(),
                            limit.as_secs()
                        )
                    })
                }
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_with_running_watches_and_beating_loops_is_healthy() {
        let h = Health::default();
        let t0 = Instant::now();
        h.watching("watch/pods");
        h.beat("scaler", Duration::from_secs(15), t0);
        assert_eq!(h.check(t0 + Duration::from_secs(100)), Ok(()));
    }

    #[test]
    fn an_ended_watch_makes_the_process_unhealthy_and_names_it() {
        let h = Health::default();
        h.watching("watch/pods");
        h.ended("watch/pods", "the view lock is poisoned");
        let err = h.check(Instant::now()).unwrap_err();
        assert_eq!(err, vec!["watch/pods ended: the view lock is poisoned".to_string()]);
    }

    #[test]
    fn a_loop_is_stuck_only_after_ten_periods_and_at_least_two_minutes_without_a_beat() {
        let h = Health::default();
        let t0 = Instant::now();
        h.beat("auction", Duration::from_secs(30), t0);
        // 10 × 30 s = 300 s > the 120 s floor.
        assert!(h.check(t0 + Duration::from_secs(299)).is_ok());
        let err = h.check(t0 + Duration::from_secs(301)).unwrap_err();
        assert!(
            err[0].starts_with("auction is stuck: no progress for 301 s (limit 300 s)"),
            "{err:?}"
        );
        // A fast loop still gets the floor.
        h.beat("auction", Duration::from_secs(1), t0);
        assert!(h.check(t0 + Duration::from_secs(119)).is_ok());
        assert!(h.check(t0 + Duration::from_secs(121)).is_err());
    }

    #[test]
    fn a_new_beat_clears_a_stall() {
        let h = Health::default();
        let t0 = Instant::now();
        h.beat("status", Duration::from_secs(1), t0);
        let later = t0 + Duration::from_secs(500);
        assert!(h.check(later).is_err());
        h.beat("status", Duration::from_secs(1), later);
        assert!(h.check(later).is_ok());
    }
}
