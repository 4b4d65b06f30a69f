//! Health of one failure domain (node, rack, zone, region): the four states and the documented
//! rule that maps one [`Observation`] of the domain to a state.
//!
//! Input: an observation (heartbeat lag, Ready, anomaly flag, restarts, evictions) and
//! [`Thresholds`]. Output: a [`HealthState`]. Pure; the caller reads the clock and the API.

use serde::{Deserialize, Serialize};

use super::FailoverMdpError;

/// The health of a failure domain, from best to worst. The order is the index used by the
/// transition matrices (`healthy = 0 … failed = 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Heartbeats on time, Ready, nothing unusual.
    Healthy,
    /// Working, with a warning sign (a late heartbeat, an anomaly flag, some restarts/evictions).
    Degraded,
    /// Likely failing: heartbeats well overdue, NotReady, or many restarts/evictions.
    Suspect,
    /// Gone: heartbeats stopped for the node lifecycle controller's grace period.
    Failed,
}

impl HealthState {
    /// Every state, in index order.
    pub const ALL: [HealthState; 4] = [
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::Suspect,
        HealthState::Failed,
    ];
    /// Number of states.
    pub const COUNT: usize = 4;

    /// The state's index in [`HealthState::ALL`] and in transition matrices.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Suspect => "suspect",
            HealthState::Failed => "failed",
        }
    }
}

/// The kind of a failure domain. Only a label here: the model is the same for every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainKind {
    Node,
    Rack,
    Zone,
    Region,
}

/// What the operator saw of a domain at one instant (for a rack, zone or region: its worst node,
/// or whatever aggregate the caller chooses; restarts and evictions over the caller's window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// Seconds since the last node Lease renewal (the kubelet renews every 10 s).
    pub heartbeat_lag_seconds: f64,
    /// The node Ready condition is True.
    pub ready: bool,
    /// The anomaly detector (or the unhealthy node label) flags the domain.
    #[serde(default)]
    pub anomaly: bool,
    /// Container restarts in the domain over the observation window.
    #[serde(default)]
    pub restarts: u32,
    /// Pod evictions in the domain over the observation window.
    #[serde(default)]
    pub evictions: u32,
}

/// Limits of the classification rule ([`classify`]). Defaults follow the kubelet's 10 s Lease
/// renewal and the node lifecycle controller's 40 s grace period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Lag at or above which a domain is at least degraded (one missed renewal). Default 10.
    pub degraded_lag_seconds: f64,
    /// Lag at or above which a domain is at least suspect (two missed renewals). Default 20.
    pub suspect_lag_seconds: f64,
    /// Lag at or above which a domain is failed (the grace period). Default 40.
    pub failed_lag_seconds: f64,
    /// Restarts at or above which a domain is at least degraded. Default 3.
    pub degraded_restarts: u32,
    /// Restarts at or above which a domain is at least suspect. Default 10.
    pub suspect_restarts: u32,
    /// Evictions at or above which a domain is at least degraded. Default 1.
    pub degraded_evictions: u32,
    /// Evictions at or above which a domain is at least suspect. Default 5.
    pub suspect_evictions: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            degraded_lag_seconds: 10.0,
            suspect_lag_seconds: 20.0,
            failed_lag_seconds: 40.0,
            degraded_restarts: 3,
            suspect_restarts: 10,
            degraded_evictions: 1,
            suspect_evictions: 5,
        }
    }
}

impl Thresholds {
    /// Lags finite, ≥ 0 and ordered `degraded ≤ suspect ≤ failed`; counts ordered likewise.
    pub fn validate(&self) -> Result<(), FailoverMdpError> {
        for (field, value) in [
            ("thresholds.degraded_lag_seconds", self.degraded_lag_seconds),
            ("thresholds.suspect_lag_seconds", self.suspect_lag_seconds),
            ("thresholds.failed_lag_seconds", self.failed_lag_seconds),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(FailoverMdpError::BadSetting { field, value });
            }
        }
        let lags_ordered = self.degraded_lag_seconds <= self.suspect_lag_seconds
            && self.suspect_lag_seconds <= self.failed_lag_seconds;
        let counts_ordered =
            self.degraded_restarts <= self.suspect_restarts && self.degraded_evictions <= self.suspect_evictions;
        if !(lags_ordered && counts_ordered) {
            return Err(FailoverMdpError::ThresholdsOutOfOrder);
        }
        Ok(())
    }
}

impl Observation {
    /// The lag must be finite and ≥ 0 (a negative lag is clock skew the caller must clamp).
    pub fn validate(&self, domain: &str) -> Result<(), FailoverMdpError> {
        let lag = self.heartbeat_lag_seconds;
        if !(lag.is_finite() && lag >= 0.0) {
            return Err(FailoverMdpError::BadObservation {
                domain: domain.to_string(),
                field: "heartbeat_lag_seconds",
                value: lag,
            });
        }
        Ok(())
    }
}

/// The state of a domain from one observation; the first rule that matches, worst first:
///
/// ```text
/// failed   ⇐ lag ≥ failed_lag  ∨ (¬ready ∧ lag ≥ suspect_lag)
/// suspect  ⇐ lag ≥ suspect_lag ∨ ¬ready ∨ restarts ≥ suspect_restarts ∨ evictions ≥ suspect_evictions
///            ∨ (anomaly ∧ (restarts ≥ degraded_restarts ∨ evictions ≥ degraded_evictions))
/// degraded ⇐ lag ≥ degraded_lag ∨ anomaly ∨ restarts ≥ degraded_restarts ∨ evictions ≥ degraded_evictions
/// healthy  otherwise
/// ```
///
/// An anomaly alone only degrades: detectors have false positives; with restarts or evictions
/// beside it, it is evidence of a failing domain. A NotReady node whose heartbeats still arrive
/// is suspect, not failed (the kubelet is alive and says so).
pub fn classify(observation: &Observation, thresholds: &Thresholds) -> HealthState {
    let o = observation;
    let t = thresholds;
    let lag = o.heartbeat_lag_seconds;
    let some_restarts = o.restarts >= t.degraded_restarts;
    let some_evictions = o.evictions >= t.degraded_evictions;
    if lag >= t.failed_lag_seconds || (!o.ready && lag >= t.suspect_lag_seconds) {
        HealthState::Failed
    } else if lag >= t.suspect_lag_seconds
        || !o.ready
        || o.restarts >= t.suspect_restarts
        || o.evictions >= t.suspect_evictions
        || (o.anomaly && (some_restarts || some_evictions))
    {
        HealthState::Suspect
    } else if lag >= t.degraded_lag_seconds || o.anomaly || some_restarts || some_evictions {
        HealthState::Degraded
    } else {
        HealthState::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(lag: f64, ready: bool, anomaly: bool, restarts: u32, evictions: u32) -> Observation {
        Observation {
            heartbeat_lag_seconds: lag,
            ready,
            anomaly,
            restarts,
            evictions,
        }
    }

    #[test]
    fn observations_map_to_states_by_the_documented_rule() {
        use HealthState::*;
        let t = Thresholds::default();
        let table = [
            (seen(2.0, true, false, 0, 0), Healthy),
            (seen(9.9, true, false, 2, 0), Healthy),
            (seen(10.0, true, false, 0, 0), Degraded),
            (seen(2.0, true, true, 0, 0), Degraded),
            (seen(2.0, true, false, 3, 0), Degraded),
            (seen(2.0, true, false, 0, 1), Degraded),
            (seen(2.0, true, true, 3, 0), Suspect),
            (seen(2.0, true, true, 0, 1), Suspect),
            (seen(2.0, false, false, 0, 0), Suspect),
            (seen(20.0, true, false, 0, 0), Suspect),
            (seen(2.0, true, false, 10, 0), Suspect),
            (seen(2.0, true, false, 0, 5), Suspect),
            (seen(20.0, false, false, 0, 0), Failed),
            (seen(40.0, true, false, 0, 0), Failed),
            (seen(3600.0, false, true, 99, 99), Failed),
        ];
        for (observation, want) in table {
            assert_eq!(classify(&observation, &t), want, "{observation:?}");
        }
    }

    #[test]
    fn a_nan_or_negative_lag_is_rejected_naming_the_domain_and_field_and_a_normal_lag_is_accepted() {
        for lag in [f64::NAN, -1.0, f64::INFINITY] {
            let err = seen(lag, true, false, 0, 0).validate("zone-a").unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("zone-a") && text.contains("heartbeat_lag_seconds"),
                "{text}"
            );
        }
        assert!(seen(0.0, true, false, 0, 0).validate("zone-a").is_ok());
    }

    #[test]
    fn thresholds_out_of_order_are_rejected_and_the_defaults_are_accepted() {
        assert!(Thresholds::default().validate().is_ok());
        let swapped = Thresholds {
            suspect_lag_seconds: 50.0,
            ..Thresholds::default()
        };
        assert_eq!(swapped.validate(), Err(FailoverMdpError::ThresholdsOutOfOrder));
        let nan = Thresholds {
            failed_lag_seconds: f64::NAN,
            ..Thresholds::default()
        };
        assert!(matches!(nan.validate(), Err(FailoverMdpError::BadSetting { .. })));
    }
}
