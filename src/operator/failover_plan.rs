//! The failover planner in the operator: each tick observes every failure domain's health,
//! counts its transitions, asks the core's decision process ([`crate::failover_mdp::plan`]) what
//! each agent should do there, and carries out the result per domain — ahead of the failure.
//!
//! - Observation of a domain ([`observation`]): a sign counts when at least half its nodes show
//!   it — the heartbeat delay that half its nodes reach, not ready when half are out of service
//!   (silent, NotReady, labelled unhealthy, under a termination notice), anomalous when half are
//!   labelled `mom.hypersync.io/anomalous=true` — so one lost node does not condemn a zone (the
//!   node itself is handled at once by the heartbeat rule). Restarts and evictions count for
//!   the whole domain: the container restarts and kubelet evictions (`status.reason: Evicted`)
//!   of pods on its nodes over the last [`SIGN_WINDOW_TICKS`] ticks ([`SignWindow`]); evictions
//!   through the API (the descheduler's own, drains) are not signs of ill health and are not
//!   counted.
//! - Counts: one transition per tick and domain (previous state → state now), kept per term and
//!   persisted in the ConfigMap `mom-failover-history` (operator namespace, key `counts.json`)
//!   at most every [`PERSIST_EVERY`], so a new leader restores them.
//! - Standbys: a domain's decision is its policy row with a standby while the planner holds
//!   standbys for it (its previous action was `add_standby`), without one otherwise: an agent's
//!   replicas in other domains are actives serving their share, not the model's paid spare.
//!   Promoting an `active_passive` standby stays the failover loop's job ([`super::failover`]).
//! - Evidence: the model decides a domain only once its current state has been left at least
//!   [`MIN_STATE_EVIDENCE`] times in the counts; before that the row is the prior alone and the
//!   core's conservative rule decides (it moves pods only out of a failed domain).
//! - Acting ([`domain_actions`]): a domain whose policy says `drain_gradually` is drained
//!   (the extender refuses its nodes, the descheduler moves pods out within its limits and
//!   PDBs); `evacuate_now` or `fail_over` makes its nodes count as failed (replacements first,
//!   then the old pods retire). `add_standby` gives every agent with pods there one replica
//!   more ([`standbys`], [`super::view::View::set_standbys`]; the agent controller adds it to
//!   its spares), which the extender places outside the domain; `stay` keeps them,
//!   `release_standby` takes them back, and any move drops them (after `fail_over` the running
//!   standby is one of the replacements). At least one domain always stays open: when every
//!   domain would be acted on, none is.
//! - Every change of the domains acted on is first a `failover.plan` receipt (the snapshot and
//!   report, replayable by `mom verify --replay`), then a Normal Event `PredictedFailure` or
//!   `PredictionCleared` on the MomConfig `default`.
//! - Model trouble (too little history, a degenerate matrix) is not an error: the core's
//!   conservative rule decides, and the MomConfig condition `FailoverModel` says so.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;

use super::context::{Context, LeaderLoop, LoopError, MANAGER};
use super::receipts::{Intent, Withheld};
use super::ticks::Period;
use super::view::{AgentExposure, AgentKey, DomainFacts, PlanSummary};
use crate::failover_mdp::{
    self, Action, AgentInput, DomainInput, DomainKind, HealthState, Location, Observation, Report, Snapshot,
    TransitionCounts, Weights,
};
use crate::placement::Objectives;

/// Time between two planning passes. One pass is one step of the decision process.
pub const PLAN_TICK: Duration = Duration::from_secs(5);
/// The ConfigMap the transition counts persist in.
pub const HISTORY_CONFIGMAP: &str = "mom-failover-history";
/// Its key: `{"domain": {"counts": [[…4]…4]}, …}`.
pub const HISTORY_KEY: &str = "counts.json";
/// Counts are written at most this often (and only when they changed).
pub const PERSIST_EVERY: Duration = Duration::from_secs(60);
/// Observed transitions out of a domain's current state before the model decides it.
pub const MIN_STATE_EVIDENCE: u64 = 5;
/// Restarts and evictions are counted over this many ticks (60 s).
pub const SIGN_WINDOW_TICKS: usize = 12;
/// Agents recorded in one receipt: those of the domains that changed, up to this many.
pub const RECEIPT_AGENTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum FailoverPlanError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the failover plan could not be made: {0}")]
    Plan(#[from] failover_mdp::FailoverMdpError),
    #[error("the failover plan's receipt could not be written, so the drained domains did not change: {0}")]
    Receipt(#[source] Withheld),
}

impl LoopError for FailoverPlanError {
    fn metric_label(&self) -> &'static str {
        match self {
            FailoverPlanError::Api(_) => "api",
            FailoverPlanError::Plan(_) => "plan",
            FailoverPlanError::Receipt(_) => "receipt",
        }
    }
}

/// The leader loop.
#[derive(Debug, Default)]
pub struct Planner {
    /// Transition counts per domain (restored ones included).
    counts: BTreeMap<String, TransitionCounts>,
    /// Each domain's state at the previous tick.
    last_state: BTreeMap<String, HealthState>,
    /// Whether this term restored the persisted counts yet.
    restored: bool,
    /// Counts changed since the last write, and when that was.
    dirty: bool,
    persisted_at: Option<Instant>,
    /// Each domain's cumulative restarts and evictions over the last ticks.
    signs: SignWindow,
}

/// The last [`SIGN_WINDOW_TICKS`] + 1 cumulative (restarts, evictions) of each domain, so an
/// observation counts what happened within the window. A domain seen for the first time
/// counts nothing yet; a total that went down (a node left) counts from the new level.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SignWindow {
    totals: BTreeMap<String, std::collections::VecDeque<(u64, u64)>>,
}

impl SignWindow {
    /// Records this tick's totals and returns each domain's increase over the window, capped
    /// at `u32::MAX`: domain → (restarts, evictions).
    pub fn observe(&mut self, facts: &[DomainFacts]) -> BTreeMap<String, (u32, u32)> {
        let seen: BTreeSet<&str> = facts.iter().map(|f| f.domain.as_str()).collect();
        self.totals.retain(|d, _| seen.contains(d.as_str()));
        let mut out = BTreeMap::new();
        for f in facts {
            let q = self.totals.entry(f.domain.clone()).or_default();
            let now = (f.restarts_total, f.evictions_total);
            if q.back().is_some_and(|last| now.0 < last.0 || now.1 < last.1) {
                q.clear();
            }
            q.push_back(now);
            while q.len() > SIGN_WINDOW_TICKS + 1 {
                q.pop_front();
            }
            let first = q.front().copied().unwrap_or(now);
            let cap = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            out.insert(f.domain.clone(), (cap(now.0 - first.0), cap(now.1 - first.1)));
        }
        out
    }
}

impl LeaderLoop for Planner {
    const NAME: &'static str = "failover-plan";
    type Error = FailoverPlanError;

    fn period(&self, _ctx: &Context) -> Period {
        Period::fixed(PLAN_TICK)
    }

    fn reset(&mut self) {
        *self = Planner::default();
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), FailoverPlanError> {
        let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ctx.writer.namespace());
        if !self.restored {
            self.counts = restore(&configmaps).await?;
            self.restored = true;
        }
        let now_ms = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        let (facts, objectives, kind, drained_now) = {
            let v = ctx.view.read();
            (
                v.domain_facts(now_ms),
                v.settings.objectives,
                domain_kind(&v.failure_domain_key()),
                v.predicted().clone(),
            )
        };
        let thresholds = failover_mdp::Thresholds::default();
        let window = self.signs.observe(&facts);
        for f in &facts {
            let state = failover_mdp::classify(&observation(f, window.get(&f.domain).copied()), &thresholds);
            if let Some(prev) = self.last_state.insert(f.domain.clone(), state) {
                self.counts
                    .entry(f.domain.clone())
                    .or_default()
                    .observe_sequence(&[prev, state]);
                self.dirty = true;
            }
        }
        // Domain decisions come from the policy table, so the pass needs no agents; the
        // receipt adds those of the domains that change.
        let snapshot = snapshot(&facts, &window, &[], &self.counts, &objectives, kind);
        let report = Ctx::plan(snapshot.clone()).await?;
        let held: BTreeSet<String> = drained_now
            .iter()
            .filter(|(_, a)| **a == Action::AddStandby)
            .map(|(d, _)| d.clone())
            .collect();
        let (drained, thin) = domain_actions(&report, facts.len(), &held);
        let fallback: Vec<String> = report.fallback.iter().cloned().chain(thin).collect();
        if let Ok(mut v) = ctx.view.write() {
            v.set_failover_summary(PlanSummary {
                drained: drained.clone(),
                fallback: (!fallback.is_empty()).then(|| fallback.join("; ")),
                domains: facts.len(),
            });
        }
        let (exposure, standbys_now) = {
            let v = ctx.view.read();
            (v.agent_exposure(), v.standbys().clone())
        };
        // Agents keep the standby they hold while its domain keeps `add_standby`, even once
        // their last pod there has gone; new ones are the agents with pods there now.
        let mut standby_set: BTreeMap<AgentKey, String> = standbys_now
            .into_iter()
            .filter(|(_, d)| drained.get(d) == Some(&Action::AddStandby))
            .collect();
        for (agent, domain) in standbys(&drained, &exposure) {
            standby_set.entry(agent).or_insert(domain);
        }
        if drained != drained_now {
            let changed: Vec<String> = drained
                .keys()
                .chain(drained_now.keys())
                .filter(|d| drained.get(*d) != drained_now.get(*d))
                .cloned()
                .collect();
            let recorded = receipt_snapshot(&snapshot, &exposure, &changed, &held);
            let recorded_report = Ctx::plan(recorded.clone()).await?;
            let intent = Intent {
                action: crate::receipts::Action::Migrate,
                subject: crate::receipts::SubjectRef {
                    api_version: format!("{}/{}", super::crd::GROUP, super::crd::VERSION),
                    kind: "MomConfig".into(),
                    namespace: String::new(),
                    name: super::crd::momconfig::ACTIVE_NAME.into(),
                    uid: None,
                },
                decision: failover_mdp::decision_record(&recorded, &recorded_report),
                inputs: serde_json::to_value(&recorded).unwrap_or_default(),
                regarding: None,
                withheld: format!(
                    "the failure domains acted on stayed {:?}",
                    drained_now.keys().collect::<Vec<_>>()
                ),
            };
            ctx.record_before(intent).await.map_err(FailoverPlanError::Receipt)?;
            if let Ok(mut v) = ctx.view.write() {
                v.set_predicted(drained.clone());
                v.set_standbys(standby_set);
            }
            announce(ctx, &drained_now, &drained).await;
        } else if let Ok(mut v) = ctx.view.write() {
            // Same domains: agents that newly have pods in one holding standbys get theirs
            // (each standby is named in the receipt of its domain's `add_standby`, by domain).
            v.set_standbys(standby_set);
        }
        let due = self.persisted_at.is_none_or(|at| at.elapsed() >= PERSIST_EVERY);
        if self.dirty && due {
            persist(&configmaps, &self.counts).await?;
            self.dirty = false;
            self.persisted_at = Some(Instant::now());
        }
        Ok(())
    }
}

/// The blocking pool runs the value iterations.
struct Ctx;

impl Ctx {
    async fn plan(snapshot: Snapshot) -> Result<Report, FailoverPlanError> {
        Ok(Context::off_runtime(move || failover_mdp::plan(&snapshot)).await?)
    }
}

/// The kind of the domains named by a label key.
fn domain_kind(key: &str) -> DomainKind {
    match key {
        crate::labels::REGION_LABEL => DomainKind::Region,
        crate::labels::ZONE_LABEL => DomainKind::Zone,
        crate::labels::RACK_LABEL => DomainKind::Rack,
        crate::labels::HOSTNAME_LABEL => DomainKind::Node,
        _ => DomainKind::Zone,
    }
}

/// A domain's observation (see the module doc: each node sign counts when half its nodes show
/// it; `signs` are the domain's (restarts, evictions) within the window, `None`: none).
pub fn observation(facts: &DomainFacts, signs: Option<(u32, u32)>) -> Observation {
    let (restarts, evictions) = signs.unwrap_or_default();
    let half = facts.nodes.div_ceil(2).max(1);
    let mut overdue = facts.overdue_seconds.clone();
    overdue.sort_by(|a, b| b.total_cmp(a));
    Observation {
        heartbeat_lag_seconds: overdue.get(half as usize - 1).copied().unwrap_or(0.0).max(0.0),
        ready: facts.not_ready < half,
        anomaly: facts.anomalous >= half,
        restarts,
        evictions,
    }
}

/// The decision process's weights from the MomConfig objectives, scaled so that the default
/// objectives (performance 0.55, cost 0.15, reliability 0.2) give the model's default weights:
///
/// ```text
/// w_slo = 10 · reliability / 0.2     w_migration = performance / 0.55     w_spare = 0.2 · cost / 0.15
/// ```
pub fn weights(objectives: &Objectives) -> Weights {
    Weights {
        slo_risk: 10.0 * objectives.reliability / 0.2,
        migration: objectives.performance / 0.55,
        spare_capacity: 0.2 * objectives.cost / 0.15,
    }
}

/// One planning pass's input: every domain with its observation and counts, every agent in
/// every domain it has pods in (named `namespace/name@domain`).
pub fn snapshot(
    facts: &[DomainFacts],
    signs: &BTreeMap<String, (u32, u32)>,
    exposure: &[AgentExposure],
    counts: &BTreeMap<String, TransitionCounts>,
    objectives: &Objectives,
    kind: DomainKind,
) -> Snapshot {
    Snapshot {
        domains: facts
            .iter()
            .map(|f| DomainInput {
                name: f.domain.clone(),
                kind,
                observation: Some(observation(f, signs.get(&f.domain).copied())),
                state: None,
                history: Vec::new(),
                counts: counts.get(&f.domain).cloned(),
                transitions: None,
            })
            .collect(),
        agents: exposure
            .iter()
            .map(|e| AgentInput {
                name: format!("{}@{}", e.agent, e.domain),
                domain: e.domain.clone(),
                standby: false,
            })
            .collect(),
        weights: weights(objectives),
        costs: Default::default(),
        solver: Default::default(),
        thresholds: Default::default(),
        estimation: Default::default(),
    }
}

/// The action per domain: a move (`drain_gradually`, `evacuate_now`, `fail_over`) or
/// `add_standby` while the domain's agents hold standbys outside it. `held` are the domains
/// holding standbys now (the previous pass's `add_standby` domains): their row is the one with
/// a standby, where `stay` keeps the standbys, `release_standby` gives them back and `fail_over`
/// lets them take over (the domain's nodes then count as failed). For a domain whose current
/// state has [`MIN_STATE_EVIDENCE`] observed transitions out of it, the policy table's row for
/// replicas at home in that state; otherwise the conservative rule. Taken from the policy
/// rather than from the agents there, so a domain stays drained after its pods left, for as
/// long as its state lasts. When every one of the `domains` would be left, none is (the pods
/// would have nowhere to go), and none holds standbys either (they would have nowhere to
/// be placed). Also returns the domains decided by the conservative rule for want of
/// evidence, as text.
pub fn domain_actions(
    report: &Report,
    domains: usize,
    held: &BTreeSet<String>,
) -> (BTreeMap<String, Action>, Vec<String>) {
    let mut out: BTreeMap<String, Action> = BTreeMap::new();
    let mut thin = Vec::new();
    for d in &report.domains {
        let standby = held.contains(&d.domain);
        let seen: u64 = d.counts.counts[d.state.index()].iter().sum();
        let action = if d.fallback.is_none() && seen < MIN_STATE_EVIDENCE {
            thin.push(format!(
                "domain {}: state {} seen leaving {seen} times (< {MIN_STATE_EVIDENCE})",
                d.domain,
                d.state.as_str()
            ));
            failover_mdp::conservative_action(d.state, standby)
        } else {
            report
                .policy
                .iter()
                .find(|r| {
                    r.domain == d.domain && r.location == Location::Home && r.standby == standby && r.health == d.state
                })
                .map_or(Action::Stay, |r| r.action)
        };
        let kept = match action {
            Action::Stay if standby => Some(Action::AddStandby),
            Action::Stay | Action::ReleaseStandby => None,
            other => Some(other),
        };
        if let Some(a) = kept {
            out.insert(d.domain.clone(), a);
        }
    }
    if out.len() >= domains {
        out.clear();
    }
    (out, thin)
}

/// The standbys the planner holds: every agent with pods in a domain whose action is
/// `add_standby` gets one, against the first such domain (sorted).
pub fn standbys(actions: &BTreeMap<String, Action>, exposure: &[AgentExposure]) -> BTreeMap<AgentKey, String> {
    let mut out = BTreeMap::new();
    for e in exposure {
        if actions.get(&e.domain) == Some(&Action::AddStandby) {
            out.entry(e.agent.clone()).or_insert_with(|| e.domain.clone());
        }
    }
    out
}

/// What a receipt records: the pass's snapshot (every domain) with the agents of the `changed`
/// domains added (at most [`RECEIPT_AGENTS`]), so the receipt names who is moved. Replaying it
/// gives the same policy table: agents do not enter the domains' models.
///
/// An agent's `standby` is whether the pass decided from the row with a standby (its domain
/// was in `held`), so the report's action for it is the domain's: `add_standby`, `stay` (keep),
/// `release_standby`, a move.
pub fn receipt_snapshot(
    pass: &Snapshot,
    exposure: &[AgentExposure],
    changed: &[String],
    held: &BTreeSet<String>,
) -> Snapshot {
    let mut s = pass.clone();
    s.agents = exposure
        .iter()
        .filter(|e| changed.contains(&e.domain))
        .take(RECEIPT_AGENTS)
        .map(|e| AgentInput {
            name: format!("{}@{}", e.agent, e.domain),
            domain: e.domain.clone(),
            standby: held.contains(&e.domain),
        })
        .collect();
    s
}

async fn announce(ctx: &Context, before: &BTreeMap<String, Action>, after: &BTreeMap<String, Action>) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(<super::crd::MomConfig as kube::Resource>::api_version(&()).into_owned()),
        kind: Some(<super::crd::MomConfig as kube::Resource>::kind(&()).into_owned()),
        name: Some(super::crd::momconfig::ACTIVE_NAME.to_string()),
        ..Default::default()
    };
    for (domain, action) in after {
        if before.get(domain) != Some(action) {
            tracing::warn!(%domain, action = action.as_str(), "acting on a failure domain ahead of a predicted failure");
            ctx.publish(
                &reference,
                EventType::Normal,
                "Drain",
                "PredictedFailure",
                match action {
                    Action::AddStandby => format!(
                        "failure domain {domain}: add_standby (the failover plan expects it may fail: each agent with replicas there gets one standby replica outside it; see the failover.plan receipt)"
                    ),
                    _ => format!(
                        "failure domain {domain}: {} (the failover plan expects it to fail; see the failover.plan receipt)",
                        action.as_str()
                    ),
                },
            )
            .await;
        }
    }
    for domain in before.keys().filter(|d| !after.contains_key(*d)) {
        tracing::info!(%domain, "failure domain no longer drained");
        ctx.publish(
            &reference,
            EventType::Normal,
            "Drain",
            "PredictionCleared",
            format!(
                "failure domain {domain}: no longer drained and no standbys held for it (the failover plan says stay or release_standby)"
            ),
        )
        .await;
    }
}

/// Reads the persisted counts; a missing ConfigMap is an empty history, an unreadable one is
/// logged and ignored (it is overwritten at the next write).
async fn restore(api: &Api<ConfigMap>) -> Result<BTreeMap<String, TransitionCounts>, kube::Error> {
    let Some(cm) = api.get_opt(HISTORY_CONFIGMAP).await? else {
        return Ok(BTreeMap::new());
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(HISTORY_KEY))
        .cloned()
        .unwrap_or_default();
    Ok(parse_history(&text).unwrap_or_else(|err| {
        tracing::warn!(configmap = HISTORY_CONFIGMAP, error = %err, "failover history unreadable; starting afresh");
        BTreeMap::new()
    }))
}

/// The persisted counts (`{}` or empty text: none).
pub fn parse_history(text: &str) -> Result<BTreeMap<String, TransitionCounts>, serde_json::Error> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text)
}

async fn persist(api: &Api<ConfigMap>, counts: &BTreeMap<String, TransitionCounts>) -> Result<(), kube::Error> {
    let data = BTreeMap::from([(HISTORY_KEY.to_string(), data_text(counts))]);
    if api.get_opt(HISTORY_CONFIGMAP).await?.is_none() {
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(HISTORY_CONFIGMAP.into()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/part-of".to_string(),
                    "mom".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let patch = serde_json::json!({ "data": { HISTORY_KEY: data_text(counts) } });
    api.patch(HISTORY_CONFIGMAP, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn data_text(counts: &BTreeMap<String, TransitionCounts>) -> String {
    serde_json::to_string(counts).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover_mdp::HealthState::*;
    use crate::operator::view::AgentKey;

    fn facts(domain: &str, overdue: f64, not_ready: u32, anomalous: u32) -> DomainFacts {
        DomainFacts {
            domain: domain.into(),
            nodes: 2,
            overdue_seconds: vec![overdue, 0.0],
            not_ready,
            anomalous,
            restarts_total: 0,
            evictions_total: 0,
        }
    }

    /// A history in which an anomalous (degraded) domain fails `fails` times out of 10.
    fn counts(fails: u64) -> TransitionCounts {
        let mut c = TransitionCounts::default();
        c.counts[Healthy.index()][Healthy.index()] = 1000;
        c.counts[Healthy.index()][Degraded.index()] = 10;
        c.counts[Degraded.index()][Failed.index()] = fails;
        c.counts[Degraded.index()][Healthy.index()] = 10 - fails;
        c.counts[Failed.index()][Healthy.index()] = 10;
        c
    }

    #[test]
    fn a_sign_counts_for_a_domain_when_half_its_nodes_show_it() {
        // Two nodes: one is half.
        let o = observation(&facts("z", 12.5, 0, 1), None);
        assert_eq!(o.heartbeat_lag_seconds, 12.5);
        assert!(o.ready && o.anomaly);
        let o = observation(&facts("z", 0.0, 1, 0), None);
        assert!(!o.ready && !o.anomaly);
        // Five nodes: one late, out of service and anomalous node is not enough; three are.
        let mut f = DomainFacts {
            domain: "z".into(),
            nodes: 5,
            overdue_seconds: vec![50.0, 0.0, 0.0, 0.0, 0.0],
            not_ready: 1,
            anomalous: 1,
            restarts_total: 0,
            evictions_total: 0,
        };
        let o = observation(&f, None);
        assert_eq!((o.heartbeat_lag_seconds, o.ready, o.anomaly), (0.0, true, false));
        f.overdue_seconds = vec![50.0, 30.0, 25.0, 0.0, 0.0];
        f.not_ready = 3;
        f.anomalous = 3;
        let o = observation(&f, None);
        assert_eq!((o.heartbeat_lag_seconds, o.ready, o.anomaly), (25.0, false, true));
        // No nodes: nothing to see, no panic.
        let o = observation(
            &DomainFacts {
                domain: "e".into(),
                nodes: 0,
                overdue_seconds: vec![],
                not_ready: 0,
                anomalous: 0,
                restarts_total: 0,
                evictions_total: 0,
            },
            None,
        );
        assert!(o.ready && o.heartbeat_lag_seconds == 0.0);
    }

    #[test]
    fn a_state_seen_too_rarely_is_decided_by_the_conservative_rule() {
        // Plenty of history, none of it degraded: the degraded row is the prior alone.
        let mut thin = TransitionCounts::default();
        thin.counts[Healthy.index()][Healthy.index()] = 1000;
        let fx = vec![facts("z", 0.0, 0, 1), facts("y", 0.0, 0, 0), facts("x", 0.0, 0, 0)];
        let history: BTreeMap<String, TransitionCounts> =
            ["x", "y", "z"].iter().map(|d| (d.to_string(), thin.clone())).collect();
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure(&["z"]),
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let (out, why) = domain_actions(&failover_mdp::plan(&s).unwrap(), 3, &BTreeSet::new());
        assert!(out.is_empty(), "{out:?}");
        assert!(why.iter().any(|w| w.contains("domain z: state degraded")), "{why:?}");
        // Positive control: with the degraded row observed, the model decides.
        let history = BTreeMap::from([
            ("z".to_string(), counts(9)),
            ("y".into(), counts(0)),
            ("x".into(), counts(0)),
        ]);
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure(&["z"]),
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let (out, why) = domain_actions(&failover_mdp::plan(&s).unwrap(), 3, &BTreeSet::new());
        assert_eq!(out.get("z"), Some(&Action::DrainGradually), "{why:?}");
    }

    #[test]
    fn the_default_objectives_give_the_models_default_weights() {
        let w = weights(&Objectives::default());
        let d = Weights::default();
        assert!((w.slo_risk - d.slo_risk).abs() < 1e-9);
        assert!((w.migration - d.migration).abs() < 1e-9);
        assert!((w.spare_capacity - d.spare_capacity).abs() < 1e-9);
    }

    fn exposure(domains: &[&str]) -> Vec<AgentExposure> {
        domains
            .iter()
            .map(|d| AgentExposure {
                agent: AgentKey::new("ns", "shop"),
                domain: d.to_string(),
            })
            .collect()
    }

    #[test]
    fn the_objectives_change_the_decision_without_reliability_nothing_is_drained() {
        let fx = vec![facts("bad", 0.0, 0, 1), facts("calm", 0.0, 0, 0)];
        let history = BTreeMap::from([("bad".to_string(), counts(9)), ("calm".to_string(), counts(0))]);
        let plan_with = |o: &Objectives| {
            let s = snapshot(&fx, &BTreeMap::new(), &[], &history, o, DomainKind::Zone);
            domain_actions(&failover_mdp::plan(&s).unwrap(), 2, &BTreeSet::new()).0
        };
        // Positive control: the default objectives drain the domain.
        assert!(plan_with(&Objectives::default()).contains_key("bad"));
        let careless = Objectives {
            performance: 0.7,
            cost: 0.3,
            reliability: 0.0,
            sustainability: 0.0,
        };
        assert!(plan_with(&careless).is_empty());
    }

    #[test]
    fn when_every_domain_would_be_drained_none_is() {
        let fx = vec![facts("a", 0.0, 0, 1), facts("b", 0.0, 0, 1)];
        let history = BTreeMap::from([("a".to_string(), counts(9)), ("b".to_string(), counts(9))]);
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure(&["a", "b"]),
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let r = failover_mdp::plan(&s).unwrap();
        assert!(domain_actions(&r, 2, &BTreeSet::new()).0.is_empty());
        // Positive control: with a third domain open, both are drained.
        assert_eq!(
            domain_actions(&r, 3, &BTreeSet::new()).0.len(),
            2,
            "{:?}",
            domain_actions(&r, 3, &BTreeSet::new())
        );
    }

    #[test]
    fn a_drained_domain_stays_drained_after_its_pods_left_while_its_state_lasts() {
        let fx = vec![facts("bad", 0.0, 0, 1), facts("calm", 0.0, 0, 0)];
        let history = BTreeMap::from([("bad".to_string(), counts(9)), ("calm".to_string(), counts(0))]);
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure(&["calm"]),
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let r = failover_mdp::plan(&s).unwrap();
        assert_eq!(
            domain_actions(&r, 2, &BTreeSet::new()).0.get("bad"),
            Some(&Action::DrainGradually)
        );
        // Once healthy again, it reopens.
        let fx = vec![facts("bad", 0.0, 0, 0), facts("calm", 0.0, 0, 0)];
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure(&["calm"]),
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        assert!(
            domain_actions(&failover_mdp::plan(&s).unwrap(), 2, &BTreeSet::new())
                .0
                .is_empty()
        );
    }

    #[test]
    fn a_failed_domain_without_a_usable_model_is_evacuated_by_the_conservative_rule() {
        let fx = vec![facts("down", 45.0, 2, 0), facts("up", 0.0, 0, 0)];
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure(&["down", "up"]),
            &BTreeMap::new(),
            &Objectives::default(),
            DomainKind::Zone,
        );
        let r = failover_mdp::plan(&s).unwrap();
        assert!(r.fallback.is_some());
        let (out, _) = domain_actions(&r, 2, &BTreeSet::new());
        assert_eq!(out.get("down"), Some(&Action::EvacuateNow), "{out:?}");
        assert!(!out.contains_key("up"));
    }

    #[test]
    fn an_anomalous_domain_with_a_history_of_failing_is_drained_and_one_that_recovers_is_not() {
        let fx = vec![
            facts("bad", 0.0, 0, 1),
            facts("good", 0.0, 0, 1),
            facts("calm", 0.0, 0, 0),
        ];
        let exposure = exposure(&["bad", "good", "calm"]);
        let history = BTreeMap::from([
            ("bad".to_string(), counts(9)),
            ("good".to_string(), counts(0)),
            ("calm".to_string(), counts(0)),
        ]);
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &exposure,
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let r = failover_mdp::plan(&s).unwrap();
        let (out, _) = domain_actions(&r, 3, &BTreeSet::new());
        assert_eq!(out.get("bad"), Some(&Action::DrainGradually), "{out:?}");
        assert!(!out.contains_key("good") && !out.contains_key("calm"), "{out:?}");
    }

    #[test]
    fn a_receipt_records_every_domain_and_only_the_agents_of_the_changed_ones() {
        let fx = vec![facts("a", 0.0, 0, 0), facts("b", 0.0, 0, 0)];
        let exposure: Vec<AgentExposure> = (0..100)
            .flat_map(|i| {
                ["a", "b"].map(|d| AgentExposure {
                    agent: AgentKey::new("ns", format!("x{i:03}")),
                    domain: d.into(),
                })
            })
            .collect();
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &[],
            &BTreeMap::new(),
            &Objectives::default(),
            DomainKind::Zone,
        );
        let r = receipt_snapshot(&s, &exposure, &["b".to_string()], &BTreeSet::new());
        assert_eq!(r.domains.len(), 2);
        assert_eq!(r.agents.len(), RECEIPT_AGENTS);
        assert!(r.agents.iter().all(|a| a.domain == "b"));
        // Replaying it gives the recorded report.
        let report = failover_mdp::plan(&r).unwrap();
        let record = failover_mdp::decision_record(&r, &report);
        assert_eq!(
            failover_mdp::replay(&record["inputs"]).unwrap(),
            serde_json::to_value(&report).unwrap()
        );
    }

    #[test]
    fn a_domain_that_sometimes_fails_gets_standbys_keeps_them_while_degraded_and_releases_them_when_healthy() {
        let history = BTreeMap::from([
            ("risky".to_string(), counts(2)),
            ("calm".to_string(), counts(0)),
            ("other".to_string(), counts(0)),
        ]);
        let pass = |risky_anomalous: u32, held: &[&str]| {
            let fx = vec![
                facts("calm", 0.0, 0, 0),
                facts("other", 0.0, 0, 0),
                facts("risky", 0.0, 0, risky_anomalous),
            ];
            let s = snapshot(
                &fx,
                &BTreeMap::new(),
                &[],
                &history,
                &Objectives::default(),
                DomainKind::Zone,
            );
            let held: BTreeSet<String> = held.iter().map(|d| d.to_string()).collect();
            domain_actions(&failover_mdp::plan(&s).unwrap(), 3, &held)
        };
        // Degraded, no standby yet: add one.
        let (out, why) = pass(1, &[]);
        assert_eq!(
            out,
            BTreeMap::from([("risky".to_string(), Action::AddStandby)]),
            "{why:?}"
        );
        // Degraded with standbys held: keep them (the row with a standby says stay).
        assert_eq!(pass(1, &["risky"]).0.get("risky"), Some(&Action::AddStandby));
        // Healthy again: released.
        assert!(pass(0, &["risky"]).0.is_empty());
        // Positive control: a domain that never fails from degraded gets none.
        let calm = BTreeMap::from([("risky".to_string(), counts(0)), ("calm".to_string(), counts(0))]);
        let fx = vec![facts("calm", 0.0, 0, 0), facts("risky", 0.0, 0, 1)];
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &[],
            &calm,
            &Objectives::default(),
            DomainKind::Zone,
        );
        assert!(
            domain_actions(&failover_mdp::plan(&s).unwrap(), 2, &BTreeSet::new())
                .0
                .is_empty()
        );
    }

    #[test]
    fn a_failed_domain_holding_standbys_fails_over_to_them() {
        let history = BTreeMap::from([("risky".to_string(), counts(2)), ("calm".to_string(), counts(0))]);
        let fx = vec![facts("calm", 0.0, 0, 0), facts("risky", 45.0, 2, 0)];
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &[],
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let r = failover_mdp::plan(&s).unwrap();
        let held = BTreeSet::from(["risky".to_string()]);
        assert_eq!(domain_actions(&r, 2, &held).0.get("risky"), Some(&Action::FailOver));
        // Positive control: without standbys it is evacuated.
        assert_eq!(
            domain_actions(&r, 2, &BTreeSet::new()).0.get("risky"),
            Some(&Action::EvacuateNow)
        );
    }

    #[test]
    fn every_agent_with_pods_in_a_domain_holding_standbys_gets_one_and_others_none() {
        let actions = BTreeMap::from([
            ("a".to_string(), Action::AddStandby),
            ("b".to_string(), Action::AddStandby),
            ("d".to_string(), Action::DrainGradually),
        ]);
        let exposure = vec![
            AgentExposure {
                agent: AgentKey::new("ns", "one"),
                domain: "a".into(),
            },
            AgentExposure {
                agent: AgentKey::new("ns", "one"),
                domain: "b".into(),
            },
            AgentExposure {
                agent: AgentKey::new("ns", "two"),
                domain: "c".into(),
            },
            AgentExposure {
                agent: AgentKey::new("ns", "three"),
                domain: "d".into(),
            },
            AgentExposure {
                agent: AgentKey::new("ns", "four"),
                domain: "b".into(),
            },
        ];
        let s = standbys(&actions, &exposure);
        assert_eq!(
            s,
            BTreeMap::from([
                (AgentKey::new("ns", "four"), "b".to_string()),
                (AgentKey::new("ns", "one"), "a".to_string()),
            ])
        );
    }

    #[test]
    fn a_receipt_of_released_standbys_records_the_agents_with_their_standby_and_replays() {
        let history = BTreeMap::from([("risky".to_string(), counts(2)), ("calm".to_string(), counts(0))]);
        let fx = vec![facts("calm", 0.0, 0, 0), facts("risky", 0.0, 0, 0)];
        let s = snapshot(
            &fx,
            &BTreeMap::new(),
            &[],
            &history,
            &Objectives::default(),
            DomainKind::Zone,
        );
        let held = BTreeSet::from(["risky".to_string()]);
        let r = receipt_snapshot(&s, &exposure(&["risky", "calm"]), &["risky".to_string()], &held);
        assert_eq!(r.agents.len(), 1);
        assert!(r.agents[0].standby);
        let report = failover_mdp::plan(&r).unwrap();
        assert_eq!(report.agents[0].action, Action::ReleaseStandby);
        let record = failover_mdp::decision_record(&r, &report);
        assert_eq!(
            failover_mdp::replay(&record["inputs"]).unwrap(),
            serde_json::to_value(&report).unwrap()
        );
    }

    fn totals(domain: &str, restarts: u64, evictions: u64) -> DomainFacts {
        DomainFacts {
            restarts_total: restarts,
            evictions_total: evictions,
            ..facts(domain, 0.0, 0, 0)
        }
    }

    #[test]
    fn restarts_and_evictions_count_over_the_window_and_map_to_the_domains_state() {
        let classify = |f: &DomainFacts, w: &BTreeMap<String, (u32, u32)>| {
            failover_mdp::classify(
                &observation(f, w.get(&f.domain).copied()),
                &failover_mdp::Thresholds::default(),
            )
        };
        let mut window = SignWindow::default();
        // First sight: the history before it is not news.
        let f = totals("z", 50, 7);
        let w = window.observe(std::slice::from_ref(&f));
        assert_eq!(w["z"], (0, 0));
        assert_eq!(classify(&f, &w), Healthy);
        // Two restarts: still healthy; a third within the window: degraded.
        let w = window.observe(&[totals("z", 52, 7)]);
        assert_eq!((w["z"], classify(&totals("z", 52, 7), &w)), ((2, 0), Healthy));
        let w = window.observe(&[totals("z", 53, 7)]);
        assert_eq!((w["z"], classify(&totals("z", 53, 7), &w)), ((3, 0), Degraded));
        // Ten: suspect.
        let w = window.observe(&[totals("z", 60, 7)]);
        assert_eq!(classify(&totals("z", 60, 7), &w), Suspect);
        // One kubelet eviction alone is degraded, five suspect.
        let mut other = SignWindow::default();
        other.observe(&[totals("y", 0, 0)]);
        let w = other.observe(&[totals("y", 0, 1)]);
        assert_eq!(classify(&totals("y", 0, 1), &w), Degraded);
        let w = other.observe(&[totals("y", 0, 5)]);
        assert_eq!(classify(&totals("y", 0, 5), &w), Suspect);
        // Quiet for a whole window: healthy again.
        let mut w = BTreeMap::new();
        for _ in 0..=SIGN_WINDOW_TICKS {
            w = window.observe(&[totals("z", 60, 7)]);
        }
        assert_eq!((w["z"], classify(&totals("z", 60, 7), &w)), ((0, 0), Healthy));
        // A total that went down (a node left) counts from the new level, no underflow.
        let w = window.observe(&[totals("z", 10, 0)]);
        assert_eq!(w["z"], (0, 0));
    }

    #[test]
    fn persisted_counts_read_back_and_bad_text_is_an_error_not_a_panic() {
        let c = BTreeMap::from([("z".to_string(), counts(3))]);
        assert_eq!(parse_history(&data_text(&c)).unwrap(), c);
        assert!(parse_history("").unwrap().is_empty());
        assert!(parse_history("{\"z\": 1}").is_err());
    }
}
