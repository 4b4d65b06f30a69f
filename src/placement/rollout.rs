//! Template rollout: one step of replacing an agent's pods made from an older template with pods
//! of the current one, as a Deployment does (`maxSurge`, `maxUnavailable`, a progress deadline).
//! Pure: the operator passes the pods it sees and acts on the returned [`RolloutStep`].
//!
//! With `n` desired replicas, `surge = ⌈maxSurge·n⌉` and `unavailable = ⌊maxUnavailable·n⌋`
//! (percentages; absolute counts are taken as they are; both 0 means a surge of 1):
//! - create: `min(n + surge − total, n − updated)` pods of the current template (never below 0);
//! - delete: old pods, not-ready ones first, then the ready ones farthest from the target, up to
//!   `total − (n − unavailable) − updated_not_ready`, and never a ready one that would take the
//!   ready count below `n − unavailable`.
//!
//! So the pods never exceed `n + surge` and the ready pods never drop below `n − unavailable`
//! because of the rollout. A new pod that is not ready `progress_deadline_s` after its creation
//! stalls the rollout: nothing more is created or deleted until the template changes (a new
//! template hash) or the pod becomes ready.

use serde::Serialize;
use serde_json::Value;

/// The `kind` of a rollout step's receipt decision.
pub const ROLLOUT_KIND: &str = "agent.rollout";

/// `maxSurge` or `maxUnavailable`: a count, or a percentage of the desired replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    Count(u32),
    Percent(u32),
}

impl Budget {
    /// Parses `"25%"` or `"2"` (what an `IntOrString` holds); `None` when it is neither.
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().filter(|p| *p <= 100).map(Budget::Percent),
            None => text.trim().parse().ok().map(Budget::Count),
        }
    }

    /// Pods for `n` desired replicas, rounding percentages up (`surge`) or down.
    fn pods(self, n: u32, round_up: bool) -> u32 {
        match self {
            Budget::Count(c) => c,
            Budget::Percent(p) => {
                let scaled = u64::from(n) * u64::from(p);
                let pods = if round_up { scaled.div_ceil(100) } else { scaled / 100 };
                pods.min(u64::from(u32::MAX)) as u32
            }
        }
    }
}

/// The rollout settings of an agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutSettings {
    pub max_surge: Budget,
    pub max_unavailable: Budget,
    pub progress_deadline_s: u64,
}

impl Default for RolloutSettings {
    /// A Deployment's defaults: 25 % surge, 25 % unavailable, 600 s.
    fn default() -> Self {
        Self {
            max_surge: Budget::Percent(25),
            max_unavailable: Budget::Percent(25),
            progress_deadline_s: 600,
        }
    }
}

/// One pod of the agent as the step sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPod {
    pub name: String,
    /// Made from the current template.
    pub updated: bool,
    pub ready: bool,
    /// Seconds since the pod was created.
    pub age_s: u64,
    /// Distance from the agent's target (larger goes first among ready old pods); `None` for an
    /// unplaced pod (goes first).
    #[serde(skip)]
    pub distance: Option<f64>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStep {
    /// Pods of the current template to create.
    pub create: u32,
    /// Old pods to delete, in order.
    pub delete: Vec<String>,
    /// A new pod missed the progress deadline: the rollout waits.
    pub stalled: Option<String>,
    /// Pods made from the current template (before this step).
    pub updated: u32,
    /// `n + surge` and `n − unavailable` for this step.
    pub max_pods: u32,
    pub min_ready: u32,
    /// Seconds until the first unready new pod reaches the progress deadline (when to look
    /// again if nothing else changes).
    #[serde(skip)]
    pub recheck_after_s: Option<u64>,
}

impl RolloutStep {
    /// Whether the step changes anything.
    pub fn acts(&self) -> bool {
        self.create > 0 || !self.delete.is_empty()
    }
}

/// The next step of a rollout to `desired` replicas of the current template.
pub fn plan(desired: u32, pods: &[RolloutPod], settings: &RolloutSettings) -> RolloutStep {
    let n = desired;
    let mut surge = settings.max_surge.pods(n, true);
    let unavailable = settings.max_unavailable.pods(n, false).min(n);
    if surge == 0 && unavailable == 0 {
        surge = 1;
    }
    let total = pods.len() as u32;
    let updated = pods.iter().filter(|p| p.updated).count() as u32;
    let ready = pods.iter().filter(|p| p.ready).count() as u32;
    let updated_not_ready = pods.iter().filter(|p| p.updated && !p.ready).count() as u32;
    let max_pods = n.saturating_add(surge);
    let min_ready = n - unavailable;
    let mut step = RolloutStep {
        updated,
        max_pods,
        min_ready,
        ..RolloutStep::default()
    };
    let mut late: Vec<&RolloutPod> = pods
        .iter()
        .filter(|p| p.updated && !p.ready && p.age_s >= settings.progress_deadline_s)
        .collect();
    late.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(p) = late.first() {
        step.stalled = Some(p.name.clone());
        return step;
    }
    step.recheck_after_s = pods
        .iter()
        .filter(|p| p.updated && !p.ready)
        .map(|p| settings.progress_deadline_s.saturating_sub(p.age_s))
        .min();
    step.create = max_pods.saturating_sub(total).min(n.saturating_sub(updated));
    // Old pods: not ready first (by name), then ready ones farthest from the target (then by name).
    let mut old: Vec<&RolloutPod> = pods.iter().filter(|p| !p.updated).collect();
    old.sort_by(|a, b| {
        a.ready.cmp(&b.ready).then_with(|| {
            let d = |p: &RolloutPod| p.distance.unwrap_or(f64::INFINITY);
            d(b).total_cmp(&d(a)).then_with(|| a.name.cmp(&b.name))
        })
    });
    let mut may_go = total.saturating_sub(min_ready).saturating_sub(updated_not_ready);
    let mut ready_left = ready;
    for p in old {
        if may_go == 0 {
            break;
        }
        if p.ready {
            if ready_left <= min_ready {
                break;
            }
            ready_left -= 1;
        }
        step.delete.push(p.name.clone());
        may_go -= 1;
    }
    step
}

/// The receipt decision of a step: `{kind, templateHash, desired, step}`.
pub fn rollout_record(template_hash: &str, desired: u32, step: &RolloutStep) -> Value {
    serde_json::json!({"kind": ROLLOUT_KIND, "templateHash": template_hash, "desired": desired, "step": step})
}

/// The receipt inputs of a step: the pods it saw, sorted by name.
pub fn rollout_inputs(pods: &[RolloutPod], settings: &RolloutSettings) -> Value {
    let mut pods = pods.to_vec();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    let budget = |b: Budget| match b {
        Budget::Count(c) => c.to_string(),
        Budget::Percent(p) => format!("{p}%"),
    };
    serde_json::json!({
        "pods": pods,
        "maxSurge": budget(settings.max_surge),
        "maxUnavailable": budget(settings.max_unavailable),
        "progressDeadlineSeconds": settings.progress_deadline_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pod(name: &str, updated: bool, ready: bool) -> RolloutPod {
        RolloutPod {
            name: name.into(),
            updated,
            ready,
            age_s: 1,
            distance: Some(0.1),
        }
    }

    fn settings(surge: Budget, unavailable: Budget) -> RolloutSettings {
        RolloutSettings {
            max_surge: surge,
            max_unavailable: unavailable,
            progress_deadline_s: 600,
        }
    }

    #[test]
    fn budgets_parse_counts_and_percentages_and_refuse_anything_else() {
        assert_eq!(Budget::parse("25%"), Some(Budget::Percent(25)));
        assert_eq!(Budget::parse("3"), Some(Budget::Count(3)));
        for bad in ["", "x", "-1", "101%", "1.5", "%"] {
            assert_eq!(Budget::parse(bad), None, "{bad}");
        }
        // Surge rounds up, unavailable down (as a Deployment's).
        assert_eq!(Budget::Percent(25).pods(5, true), 2);
        assert_eq!(Budget::Percent(25).pods(5, false), 1);
    }

    #[test]
    fn surge_one_unavailable_zero_replaces_one_pod_at_a_time_keeping_every_replica_ready() {
        let s = settings(Budget::Count(1), Budget::Count(0));
        let olds: Vec<RolloutPod> = (0..4).map(|i| pod(&format!("old-{i}"), false, true)).collect();
        // Step 1: one new pod, nothing deleted (4 ready, 4 needed).
        let step = plan(4, &olds, &s);
        assert_eq!((step.create, step.delete.len()), (1, 0));
        // The new pod is not ready yet: still nothing deleted, nothing more created.
        let mut pods = olds.clone();
        pods.push(pod("new-0", true, false));
        let step = plan(4, &pods, &s);
        assert_eq!((step.create, step.delete.len()), (0, 0));
        // Ready: one old pod goes.
        pods[4].ready = true;
        let step = plan(4, &pods, &s);
        assert_eq!((step.create, step.delete.len()), (0, 1));
    }

    #[test]
    fn a_new_pod_past_the_progress_deadline_stalls_the_rollout() {
        let s = RolloutSettings {
            progress_deadline_s: 30,
            ..settings(Budget::Count(1), Budget::Count(0))
        };
        let mut pods: Vec<RolloutPod> = (0..3).map(|i| pod(&format!("old-{i}"), false, true)).collect();
        pods.push(pod("new-0", true, false));
        // Positive control: young and not ready, the rollout waits without stalling, and says
        // when the deadline comes.
        let waiting = plan(3, &pods, &s);
        assert_eq!((waiting.stalled, waiting.recheck_after_s), (None, Some(29)));
        pods[3].age_s = 30;
        let step = plan(3, &pods, &s);
        assert_eq!(step.stalled.as_deref(), Some("new-0"));
        assert!(!step.acts());
    }

    #[test]
    fn not_ready_old_pods_go_first() {
        let s = settings(Budget::Percent(25), Budget::Percent(25));
        let pods = vec![
            pod("old-a", false, true),
            pod("old-b", false, false),
            pod("new-a", true, true),
            pod("new-b", true, true),
        ];
        let step = plan(4, &pods, &s);
        assert_eq!(step.delete.first().map(String::as_str), Some("old-b"));
    }

    /// Runs a rollout to the end: every step's pods become ready before the next.
    fn run(n: u32, old: u32, s: &RolloutSettings) -> (u32, u32, usize) {
        let mut pods: Vec<RolloutPod> = (0..old).map(|i| pod(&format!("old-{i:03}"), false, true)).collect();
        let (mut most, mut fewest_ready, mut steps) = (pods.len() as u32, u32::MAX, 0);
        let mut made = 0;
        while steps < 1000 {
            let step = plan(n, &pods, s);
            if !step.acts() {
                break;
            }
            steps += 1;
            pods.retain(|p| !step.delete.contains(&p.name));
            fewest_ready = fewest_ready.min(pods.iter().filter(|p| p.ready).count() as u32);
            for _ in 0..step.create {
                pods.push(pod(&format!("new-{made:03}"), true, false));
                made += 1;
            }
            most = most.max(pods.len() as u32);
            for p in &mut pods {
                p.ready = true;
            }
        }
        assert!(
            pods.iter().all(|p| p.updated),
            "the rollout ends with every pod updated"
        );
        assert_eq!(pods.len() as u32, n);
        (most, fewest_ready, steps)
    }

    proptest! {
        #[test]
        fn a_rollout_stays_within_its_budgets_and_ends_with_every_pod_updated(
            n in 1u32..12,
            surge in 0u32..4,
            unavailable in 0u32..4,
            percent in any::<bool>(),
        ) {
            let (surge, unavailable) = if percent {
                (Budget::Percent(surge * 25), Budget::Percent(unavailable * 25))
            } else {
                (Budget::Count(surge), Budget::Count(unavailable))
            };
            let s = settings(surge, unavailable);
            let step0 = plan(n, &[], &s);
            let (most, fewest_ready, steps) = run(n, n, &s);
            prop_assert!(most <= step0.max_pods, "{most} pods > {}", step0.max_pods);
            prop_assert!(fewest_ready == u32::MAX || fewest_ready >= step0.min_ready, "{fewest_ready} ready < {}", step0.min_ready);
            prop_assert!(steps >= 1);
        }
    }
}
