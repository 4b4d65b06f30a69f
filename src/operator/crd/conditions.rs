//! Status conditions, merged the Kubernetes way (as `meta.SetStatusCondition` in apimachinery).
//!
//! Input: the conditions currently in a status, the conditions a reconcile wants to assert, the
//! object's `metadata.generation` and the current time (passed in — no clock here). Output: the new
//! list. Rules: one entry per `type`; an asserted type replaces its reason, message, status and
//! observedGeneration; `lastTransitionTime` changes only when `status` changes (or the type is
//! new); types not asserted are kept untouched; order is stable (existing first, new appended).
//! Reasons are sanitised to the apiserver's pattern and messages truncated to its limit, so a
//! merged list is always accepted by the apiserver.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the object is in effect and everything it refers to resolved.
pub const READY: &str = "Ready";
/// Condition type: running, but with a problem needing attention.
pub const DEGRADED: &str = "Degraded";
/// Condition type (MomConfig): every field set in the spec takes effect (`False`,
/// `NotImplemented`, names those that are accepted but not acted on).
pub const SPEC_SUPPORTED: &str = "SpecSupported";
/// Condition type (GeometricAgent): the pods follow the current template (`RolloutComplete`),
/// are being replaced (`RollingUpdate`), or the rollout stopped (`False`,
/// `ProgressDeadlineExceeded`).
pub const PROGRESSING: &str = "Progressing";
/// Condition type (MomConfig): the leader's receipt writes are succeeding; `False` while writes
/// keep failing (at `full_audit` the actions they would record are not taken).
pub const RECEIPTS_WRITABLE: &str = "ReceiptsWritable";
/// Condition type (MomConfig): every stored receipt is signed by a key the writer trusts;
/// `False` names the foreign ones, which the writer ignores for chaining.
pub const RECEIPTS_TRUSTED: &str = "ReceiptsTrusted";
/// Condition type (MomConfig): the receipt signing key `spec.verification.signingKey` names is
/// read and in use; `False` names the Secret, the key and the problem (nothing is signed).
pub const SIGNING_KEY_READY: &str = "SigningKeyReady";
/// Condition type (MomConfig): whether node positions follow `spec.geometry.latencySource`.
pub const MEASURED_LATENCY: &str = "MeasuredLatency";
/// Condition type (MomConfig): whether the failover planner's decision process decides every
/// failure domain (`True`), or some fall back to the conservative rule (`False`, naming why).
pub const FAILOVER_MODEL: &str = "FailoverModel";
/// MomConfig: whether every anomaly series' query answered at the last pass.
pub const ANOMALY_DETECTION: &str = "AnomalyDetection";
/// Condition type (GeometricAgent): whether the anomaly loop raised a flag on the agent
/// (`True`, `AnomalyFlagged`, naming the flags and their series; `False`, `NoAnomaly`).
pub const ANOMALOUS: &str = "Anomalous";
/// GeometricAgent: someone other than MOM changed one of its pods (`spec.onDrift`).
pub const DRIFTED: &str = "Drifted";
/// GeometricAgent: isolated by its strategy's `spec.resilience.quarantine` while flagged
/// (`True`, `AnomalyFlagged`; `False`, `NotQuarantined`).
pub const QUARANTINED: &str = "Quarantined";

/// Reasons used across the controllers (CamelCase, as the conventions require).
pub mod reason {
    /// Everything resolved and applied.
    pub const RECONCILED: &str = "Reconciled";
    /// A MomConfig not named `default`: the operator does not act on it.
    pub const IGNORED: &str = "Ignored";
    /// The agent's `strategyRef` names a strategy that does not exist.
    pub const STRATEGY_NOT_FOUND: &str = "StrategyNotFound";
    /// A peer of the agent does not exist.
    pub const PEER_NOT_FOUND: &str = "PeerNotFound";
    /// An agent lists itself as a peer.
    pub const SELF_PEER: &str = "SelfPeer";
    /// Two or more strategies of equal top priority match the agent.
    pub const AMBIGUOUS_STRATEGY: &str = "AmbiguousStrategy";
    /// No strategy matches the agent and it has no `strategyRef`.
    pub const NO_MATCHING_STRATEGY: &str = "NoMatchingStrategy";
    /// The agent's bid has increasing marginal values.
    pub const BID_NOT_DIMINISHING: &str = "BidNotDiminishing";
    /// A strategy's `geometricAffinity.nearAgents` names an agent that does not exist.
    pub const NEAR_AGENT_NOT_FOUND: &str = "NearAgentNotFound";
    /// A strategy's coordinates do not have the MomConfig's dimension.
    pub const COORDINATES_WRONG_DIMENSION: &str = "CoordinatesWrongDimension";
    /// A strategy's coordinates lie on or outside the ball's boundary.
    pub const COORDINATES_OUTSIDE_BALL: &str = "CoordinatesOutsideBall";
    /// No receipt write failed recently.
    pub const RECEIPTS_WRITTEN: &str = "ReceiptsWritten";
    /// A receipt write failed recently (the message names the error).
    pub const RECEIPT_WRITE_FAILED: &str = "ReceiptWriteFailed";
    /// The object cannot be decoded (a field has the wrong type): it is not acted on.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Every stored receipt is signed by a trusted key.
    pub const RECEIPTS_SIGNED: &str = "ReceiptsSigned";
    /// Stored receipts not signed by a trusted key exist (ignored for chaining).
    pub const FOREIGN_RECEIPTS: &str = "ForeignReceipts";
    /// The signing key was read and receipts are signed with it.
    pub const SIGNING_KEY_LOADED: &str = "SigningKeyLoaded";
    /// The signing key cannot be used (missing key, malformed seed, no hand-over possible).
    pub const SIGNING_KEY_INVALID: &str = "SigningKeyInvalid";
    /// The agent's `spec.tenant` is not its namespace's tenant: it is not acted on.
    pub const TENANT_MISMATCH: &str = "TenantMismatch";
    /// Every field set in the MomConfig spec takes effect.
    pub const SUPPORTED: &str = "Supported";
    /// A field set in the MomConfig spec is accepted but not acted on.
    pub const NOT_IMPLEMENTED: &str = "NotImplemented";
    /// Every pod of the agent is made from the current template.
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    /// The strategy's redundancy rule cannot be kept with the failure domains there are.
    pub const INSUFFICIENT_FAILURE_DOMAINS: &str = "InsufficientFailureDomains";
    /// Pods of an older template are being replaced.
    pub const ROLLING_UPDATE: &str = "RollingUpdate";
    /// A pod of the current template stayed unready past `spec.rollout.progressDeadlineSeconds`.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// Every failure domain's transition model is estimated and solved.
    pub const MODEL_ESTIMATED: &str = "ModelEstimated";
    /// Some failure domain's model is missing or degenerate: the conservative rule decides.
    pub const CONSERVATIVE_RULE: &str = "ConservativeRule";
    /// Every anomaly series answered.
    pub const SERIES_ANSWERED: &str = "SeriesAnswered";
    /// Some anomaly series' query failed (its flags did not change).
    pub const QUERY_FAILED: &str = "QueryFailed";
    /// Drifted=True: a pod of the agent was changed by another field manager.
    pub const CHANGED_OUTSIDE_MOM: &str = "ChangedOutsideMom";
    /// Drifted=False.
    pub const NO_DRIFT: &str = "NoDrift";
    /// No anomaly series is configured, or the loop is disabled.
    pub const ANOMALY_OFF: &str = "AnomalyDetectionOff";
    /// The anomaly loop raised a flag on the agent.
    pub const ANOMALY_FLAGGED: &str = "AnomalyFlagged";
    /// No anomaly flag is raised on the agent.
    pub const NO_ANOMALY: &str = "NoAnomaly";
    /// Quarantined=False.
    pub const NOT_QUARANTINED: &str = "NotQuarantined";
}

/// Longest message the apiserver accepts in a condition.
pub const MAX_MESSAGE_LEN: usize = 32768;
/// Longest reason the apiserver accepts in a condition.
pub const MAX_REASON_LEN: usize = 1024;

/// The three values of a condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// The wire value ("True", "False", "Unknown").
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// A condition a reconcile asserts (without times: those come from the merge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// Condition type, e.g. [`READY`].
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase reason, e.g. [`reason::STRATEGY_NOT_FOUND`].
    pub reason: String,
    /// Human-readable detail, naming the objects involved.
    pub message: String,
}

impl DesiredCondition {
    pub fn new(type_: &str, status: ConditionStatus, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Merges `desired` into `existing` (see the module doc); `now` stamps new transitions.
/// When `desired` repeats a type, the last assertion wins.
pub fn merge(
    existing: &[Condition],
    desired: &[DesiredCondition],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::with_capacity(existing.len() + desired.len());
    // Existing lists may (if written by someone else) repeat a type; keep the first entry only.
    for condition in existing {
        if !out.iter().any(|c| c.type_ == condition.type_) {
            out.push(condition.clone());
        }
    }
    for want in desired {
        let status = want.status.as_str().to_string();
        let reason = sanitize_reason(&want.reason);
        let message = truncate(&want.message, MAX_MESSAGE_LEN);
        match out.iter_mut().find(|c| c.type_ == want.type_) {
            Some(current) => {
                if current.status != status {
                    current.last_transition_time = now.clone();
                    current.status = status;
                }
                current.reason = reason;
                current.message = message;
                current.observed_generation = observed_generation;
            }
            None => out.push(Condition {
                type_: want.type_.clone(),
                status,
                reason,
                message,
                last_transition_time: now.clone(),
                observed_generation,
            }),
        }
    }
    out
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Makes a reason match the apiserver's pattern `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`
/// (max 1024): invalid characters are dropped, a leading non-letter gets an `R` prefix, a
/// trailing `,`/`:` is removed, and an empty reason becomes `Unspecified`.
pub fn sanitize_reason(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
        .collect();
    if !out.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !out.is_empty() {
        out.insert(0, 'R');
    }
    out.truncate(MAX_REASON_LEN);
    while out.ends_with([',', ':']) {
        out.pop();
    }
    if out.is_empty() { "Unspecified".to_string() } else { out }
}

/// Truncates to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn ready(status: ConditionStatus, reason: &str, message: &str) -> DesiredCondition {
        DesiredCondition::new(READY, status, reason, message)
    }

    #[test]
    fn a_new_condition_is_stamped_with_now_and_the_generation() {
        let merged = merge(
            &[],
            &[ready(ConditionStatus::True, reason::RECONCILED, "ok")],
            Some(3),
            &at(100),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].type_, READY);
        assert_eq!(merged[0].status, "True");
        assert_eq!(merged[0].reason, "Reconciled");
        assert_eq!(merged[0].last_transition_time, at(100));
        assert_eq!(merged[0].observed_generation, Some(3));
    }

    #[test]
    fn unchanged_status_keeps_the_last_transition_time_but_updates_reason_and_message() {
        let first = merge(
            &[],
            &[ready(ConditionStatus::False, reason::PEER_NOT_FOUND, "peer a missing")],
            Some(1),
            &at(100),
        );
        let second = merge(
            &first,
            &[ready(
                ConditionStatus::False,
                reason::STRATEGY_NOT_FOUND,
                "strategy s missing",
            )],
            Some(2),
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].reason, "StrategyNotFound");
        assert_eq!(second[0].message, "strategy s missing");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_moves_the_last_transition_time() {
        let first = merge(
            &[],
            &[ready(ConditionStatus::False, reason::PEER_NOT_FOUND, "x")],
            Some(1),
            &at(100),
        );
        let second = merge(
            &first,
            &[ready(ConditionStatus::True, reason::RECONCILED, "ok")],
            Some(1),
            &at(250),
        );
        assert_eq!(second[0].status, "True");
        assert_eq!(second[0].last_transition_time, at(250));
    }

    #[test]
    fn conditions_not_asserted_are_kept_and_order_is_stable() {
        let first = merge(
            &[],
            &[
                DesiredCondition::new(DEGRADED, ConditionStatus::False, reason::RECONCILED, ""),
                ready(ConditionStatus::True, reason::RECONCILED, "ok"),
            ],
            Some(1),
            &at(100),
        );
        let second = merge(
            &first,
            &[ready(ConditionStatus::False, reason::AMBIGUOUS_STRATEGY, "a, b")],
            Some(2),
            &at(200),
        );
        let types: Vec<&str> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![DEGRADED, READY]);
        assert_eq!(second[0], first[0], "Degraded was not asserted and must be untouched");
        assert_eq!(second[1].last_transition_time, at(200));
    }

    #[test]
    fn repeated_types_collapse_to_one_entry_and_the_last_assertion_wins() {
        let merged = merge(
            &[],
            &[
                ready(ConditionStatus::False, "First", "1"),
                ready(ConditionStatus::True, "Second", "2"),
            ],
            None,
            &at(5),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].reason, "Second");
        assert_eq!(merged[0].status, "True");
    }

    #[test]
    fn merging_the_same_assertion_twice_changes_nothing() {
        let desired = [ready(ConditionStatus::True, reason::RECONCILED, "ok")];
        let once = merge(&[], &desired, Some(4), &at(10));
        let twice = merge(&once, &desired, Some(4), &at(99));
        assert_eq!(once, twice);
    }

    #[test]
    fn invalid_reasons_are_sanitised_to_the_apiserver_pattern() {
        assert_eq!(sanitize_reason("Strategy Not-Found!"), "StrategyNotFound");
        assert_eq!(sanitize_reason("404Missing"), "R404Missing");
        assert_eq!(sanitize_reason(""), "Unspecified");
        assert_eq!(sanitize_reason("  ---"), "Unspecified");
        assert_eq!(sanitize_reason("Bad:"), "Bad");
        assert_eq!(sanitize_reason(&"A".repeat(5000)).len(), MAX_REASON_LEN);
    }

    #[test]
    fn overlong_messages_are_truncated_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN); // 2 bytes each
        let merged = merge(&[], &[ready(ConditionStatus::False, "Long", &long)], None, &at(1));
        assert!(merged[0].message.len() <= MAX_MESSAGE_LEN);
        assert!(merged[0].message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn is_true_reads_the_status_of_one_type() {
        let merged = merge(
            &[],
            &[ready(ConditionStatus::True, reason::RECONCILED, "ok")],
            None,
            &at(1),
        );
        assert!(is_true(&merged, READY));
        assert!(!is_true(&merged, DEGRADED));
    }
}
