//! When a node under a termination notice goes away: the deadline a notice taint carries or
//! implies, and when a replica on it must be deleted so that it stops gracefully before then.
//!
//! What the taints of [`crate::labels::TERMINATION_TAINTS`] carry (checked in the handlers'
//! sources):
//! - `aws-node-termination-handler/spot-itn` (and `scheduled-maintenance`,
//!   `asg-lifecycle-termination`): the value is the handler's event ID (cut to 63 characters),
//!   not a time. The EC2 spot interruption notice comes two minutes before the interruption
//!   ([`SPOT_ITN_NOTICE_MS`]), so for `spot-itn` the deadline is when the taint was first seen
//!   plus two minutes. The other two carry no usable bound.
//! - `cloud.google.com/impending-node-termination`: no value; GCE gives a preempted spot VM 30 s
//!   ([`GCE_PREEMPTION_NOTICE_MS`]): first seen plus 30 s.
//! - `karpenter.sh/disrupted` / `karpenter.sh/disruption`: no value. Karpenter's own deadline
//!   (`karpenter.sh/nodeclaim-termination-timestamp`) is an annotation of its NodeClaim, which
//!   MOM does not read: no deadline.
//! - `ToBeDeletedByClusterAutoscaler`: the value is the time the autoscaler tainted the node
//!   (not a deadline; it deletes the node once drained): no deadline.
//! - Any of them whose value is a Unix time in seconds after the first sighting (10 or 11
//!   digits, as a handler that knows the deadline may write it, and the tests do): that time,
//!   when earlier than the rule above.
//!
//! Pure: the caller passes when it first saw the taint and the time now.

use serde::{Deserialize, Serialize};

/// EC2 spot interruption notice: two minutes.
pub const SPOT_ITN_NOTICE_MS: u64 = 120_000;
/// GCE preemption notice: 30 s.
pub const GCE_PREEMPTION_NOTICE_MS: u64 = 30_000;
/// A pod's termination grace period when it sets none (the Kubernetes default, 30 s).
pub const DEFAULT_GRACE_MS: u64 = 30_000;

/// A termination deadline and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deadline {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `taint value`, `EC2 spot two-minute notice` or `GCE 30 s preemption notice`.
    pub source: String,
}

/// The deadline of a node tainted `key=value`, first seen at `first_seen_ms`; `None` when the
/// taint implies none (see the module doc).
pub fn deadline(key: &str, value: Option<&str>, first_seen_ms: u64) -> Option<Deadline> {
    let implied = match key {
        "aws-node-termination-handler/spot-itn" => Some((SPOT_ITN_NOTICE_MS, "EC2 spot two-minute notice")),
        "cloud.google.com/impending-node-termination" => Some((GCE_PREEMPTION_NOTICE_MS, "GCE 30 s preemption notice")),
        _ => None,
    }
    .map(|(notice, source)| Deadline {
        at_ms: first_seen_ms.saturating_add(notice),
        source: source.into(),
    });
    let written = value
        .filter(|v| (10..=11).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .and_then(|s| s.checked_mul(1000))
        .filter(|ms| *ms > first_seen_ms)
        .map(|at_ms| Deadline {
            at_ms,
            source: "taint value".into(),
        });
    match (written, implied) {
        (Some(w), Some(i)) => Some(if w.at_ms <= i.at_ms { w } else { i }),
        (w, i) => w.or(i),
    }
}

/// When a replica on a node with deadline `at_ms` must be deleted at the latest so that its
/// `grace_ms` termination grace period ends before the node does.
pub fn retire_by(at_ms: u64, grace_ms: u64) -> u64 {
    at_ms.saturating_sub(grace_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEEN: u64 = 1_796_400_000_000;

    #[test]
    fn the_nth_event_id_is_no_time_and_the_two_minute_notice_applies() {
        let d = deadline(
            "aws-node-termination-handler/spot-itn",
            Some("spot-itn-4f1c0f7a9b"),
            SEEN,
        )
        .unwrap();
        assert_eq!(d.at_ms, SEEN + 120_000);
        assert_eq!(d.source, "EC2 spot two-minute notice");
        // Positive control: a Unix time in seconds, 90 s after the sighting, is earlier: it wins.
        let d = deadline("aws-node-termination-handler/spot-itn", Some("1796400090"), SEEN).unwrap();
        assert_eq!((d.at_ms, d.source.as_str()), (SEEN + 90_000, "taint value"));
        // A later written time does not extend the two-minute notice.
        let d = deadline("aws-node-termination-handler/spot-itn", Some("1796400500"), SEEN).unwrap();
        assert_eq!(d.at_ms, SEEN + 120_000);
    }

    #[test]
    fn taints_without_a_known_notice_have_no_deadline_unless_their_value_is_a_future_time() {
        for key in [
            "karpenter.sh/disrupted",
            "karpenter.sh/disruption",
            "ToBeDeletedByClusterAutoscaler",
            "aws-node-termination-handler/scheduled-maintenance",
        ] {
            assert_eq!(deadline(key, None, SEEN), None, "{key}");
        }
        // The autoscaler's value is when it tainted the node: in the past, so no deadline.
        assert_eq!(
            deadline("ToBeDeletedByClusterAutoscaler", Some("1796399990"), SEEN),
            None
        );
        // A future Unix time written by a handler is used.
        let d = deadline("karpenter.sh/disrupted", Some("1796400060"), SEEN).unwrap();
        assert_eq!(d.at_ms, SEEN + 60_000);
        // Not a time: too short, too long, not digits, overflowing.
        for v in ["", "123", "179640006000000", "17964000x0", "-1796400060", "99999999999"] {
            let got = deadline("karpenter.sh/disrupted", Some(v), SEEN);
            assert!(got.is_none() || v == "99999999999", "{v}: {got:?}");
        }
    }

    #[test]
    fn a_gce_preemption_gives_thirty_seconds() {
        let d = deadline("cloud.google.com/impending-node-termination", None, SEEN).unwrap();
        assert_eq!(d.at_ms, SEEN + 30_000);
    }

    #[test]
    fn a_replica_is_retired_one_grace_period_before_the_deadline() {
        assert_eq!(retire_by(SEEN + 120_000, DEFAULT_GRACE_MS), SEEN + 90_000);
        assert_eq!(retire_by(10, 30_000), 0);
    }
}
