//! The operator's shared context and its one leader-loop runner.
//!
//! [`Context`] is built once in [`super::run`] and holds everything a controller, loop or the
//! extender may touch: the API client, the placement view fed by the watches, the metrics, the
//! leader flag, the Event recorder, the receipt writer and the agent cache. Each loop is this context plus its own
//! settings and memory.
//!
//! [`run_leader_loop`] owns what every periodic loop shares: the period (re-resolved whenever
//! the MomConfig `default`'s `spec.tickSeconds` changes, see [`super::ticks`]; the new period
//! counts from the start of the last tick), the shutdown signal, the leader check (a replica
//! that does not hold the Lease only resets the loop's memory), the tick's tracing span, the
//! metrics `mom_loop_ticks_total{loop}`, `mom_loop_period_seconds{loop}` and
//! `mom_loop_errors_total{loop,kind}`, a log line whenever the period is set or changes, and the
//! loop's heartbeat in [`Health`] (a tick that never finishes makes `/healthz` fail).

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt as _;
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, Store};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::crd::GeometricAgent;
use super::events::Recorder;
use super::health::Health;
use super::metrics::Metrics;
use super::receipts::{Intent, ReceiptWriter, Withheld};
use super::ticks::Period;
use super::view::{Recording, SharedView};

/// Field manager of MOM's writes, and the Events' reporting controller.
pub const MANAGER: &str = "mom-operator";

/// Everything the operator's controllers, loops and the extender share.
pub struct Context {
    pub client: kube::Client,
    /// The placement view (nodes, pods, policies, settings), fed by the watches on every replica.
    pub view: SharedView,
    pub metrics: Arc<Metrics>,
    /// `true` while this replica holds the leader Lease; only the leader acts.
    pub leading: watch::Receiver<bool>,
    /// Publishes the Events of every loop (one recorder per process).
    pub recorder: Recorder,
    /// The operator's one receipt writer.
    pub writer: Arc<ReceiptWriter>,
    /// Liveness of the watches and loops, read by `/healthz`.
    pub health: Arc<Health>,
    /// GeometricAgents that do not decode (reported by the status loop, skipped elsewhere).
    pub bad_agents: Arc<super::lenient::BadAgents>,
    /// When set, leading also needs a Lease renew younger than the renew deadline.
    pub fence: Option<super::leader::Fence>,
    /// Every GeometricAgent, as the agent controller's watch last saw it; read by every loop.
    pub agents: AgentCache,
    /// The cache's writer, until the agent controller takes it to feed the cache.
    agent_writer: std::sync::Mutex<Option<Writer<GeometricAgent>>>,
    /// `spec.tickSeconds` of the MomConfig `default` as its watch last saw it (`None`: no such
    /// object); the governed loops' periods follow it (see [`super::ticks`]).
    pub tick_seconds: watch::Receiver<Option<i32>>,
    /// The budget's gate over scale-ups and the refusals in force ([`super::budget`]).
    pub budget: super::budget::ledger::Ledger,
    /// The anomaly loop's agent flags and last pass ([`super::anomaly`]).
    pub anomaly: std::sync::Mutex<super::anomaly_state::AnomalyState>,
}

/// The agent controller's cache of GeometricAgents (slimmed and decoded by `lenient`;
/// undecodable ones are left out and reported by the status loop). Every loop reads it instead
/// of listing every agent on every tick, so the operator holds one copy of each agent, shared as
/// `Arc`s, whatever the number of loops.
#[derive(Clone)]
pub struct AgentCache(Store<GeometricAgent>);

impl AgentCache {
    /// Every cached agent sorted by namespace and name, or `None` until the watch's first full
    /// list has been applied (a loop then skips its tick rather than act on a partial picture).
    pub fn sorted(&self) -> Option<Vec<Arc<GeometricAgent>>> {
        self.0.wait_until_ready().now_or_never()?.ok()?;
        let mut all = self.0.state();
        all.sort_by_cached_key(|a| (a.namespace().unwrap_or_default(), a.name_any()));
        Some(all)
    }

    /// The store itself (for lookups by name).
    pub fn store(&self) -> Store<GeometricAgent> {
        self.0.clone()
    }
}

/// The Events' reporter: MOM's field manager and this replica's identity.
pub fn reporter(identity: &str) -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance: Some(identity.to_string()),
    }
}

impl Context {
    /// A context over `client`; `identity` names this replica in Events.
    pub fn new(
        client: kube::Client,
        view: SharedView,
        metrics: Arc<Metrics>,
        leading: watch::Receiver<bool>,
        writer: Arc<ReceiptWriter>,
        identity: &str,
    ) -> Self {
        let (agents, agent_writer) = reflector::store::<GeometricAgent>();
        Self {
            agents: AgentCache(agents),
            agent_writer: std::sync::Mutex::new(Some(agent_writer)),
            recorder: Recorder::new(client.clone(), reporter(identity)),
            client,
            view,
            metrics,
            leading,
            writer,
            health: Arc::default(),
            bad_agents: Arc::default(),
            fence: None,
            tick_seconds: watch::channel(None).1,
            budget: super::budget::ledger::Ledger::default(),
            anomaly: Default::default(),
        }
    }

    /// This context, with the governed loops' periods following `tick_seconds` (fed by the
    /// MomConfig watch).
    pub fn with_tick_seconds(mut self, tick_seconds: watch::Receiver<Option<i32>>) -> Self {
        self.tick_seconds = tick_seconds;
        self
    }

    /// `spec.tickSeconds` of the MomConfig `default` now (`None`: no such object seen).
    pub fn configured_tick_seconds(&self) -> Option<i32> {
        *self.tick_seconds.borrow()
    }

    /// This context, trusting `leading` only while `fence` is fresh.
    pub fn with_fence(mut self, fence: super::leader::Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// A context whose client reaches no apiserver (every request fails to connect), for unit
    /// tests of one step that must stop at its first API call. Needs a Tokio runtime.
    #[cfg(test)]
    pub fn offline(leading: watch::Receiver<bool>) -> Self {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a valid URI"));
        let client = kube::Client::try_from(config).expect("a client needs no connection to be built");
        let writer = Arc::new(ReceiptWriter::new(client.clone(), "mom-system".into()));
        Self::new(
            client,
            SharedView::default(),
            Arc::default(),
            leading,
            writer,
            "offline",
        )
    }

    /// The writer of [`Self::agents`], for the one task that feeds it (the agent controller's
    /// watch); `None` once taken.
    pub fn take_agent_writer(&self) -> Option<Writer<GeometricAgent>> {
        self.agent_writer.lock().ok()?.take()
    }

    /// Whether this replica holds the leader Lease now.
    /// A `true` in the channel is not trusted once the last successful renew is older than the
    /// renew deadline (the fence), so a stale channel cannot let a deposed replica act.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow() && self.fence.as_ref().is_none_or(|f| f.fresh(std::time::Instant::now()))
    }

    /// What the MomConfig `default` says to record (full_audit until it is read).
    pub fn recording(&self) -> Recording {
        self.view.read().settings.recording
    }

    /// Runs CPU-heavy pure work (an auction, a descheduling plan, a scaling decision) on tokio's blocking pool, so
    /// the runtime's threads stay free for Lease renewal, watches and the extender.
    pub async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        match tokio::task::spawn_blocking(f).await {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Publishes an Event on `regarding` (best effort, see [`super::events::publish`]).
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        action: &str,
        reason: &str,
        note: String,
    ) {
        super::events::publish(&self.recorder, regarding, type_, action, reason, note).await;
    }

    /// The anomaly flags the anomaly loop raised on an agent: its strategy triggers
    /// (`triggers.anomalyFlags`) see them wherever a strategy is selected (agent controller,
    /// scaler, status).
    pub fn anomaly_flags(&self, agent: &super::view::AgentKey) -> std::collections::BTreeSet<String> {
        self.anomaly
            .lock()
            .ok()
            .and_then(|s| s.agent_flags.get(agent).cloned())
            .unwrap_or_default()
    }

    /// The agent's root cause while it carries a flag (see [`super::anomaly_state::AnomalyState`]).
    pub fn agent_root_cause(&self, agent: &super::view::AgentKey) -> Option<super::crd::momconfig::RootCauseStatus> {
        let state = self.anomaly.lock().ok()?;
        state.agent_flags.get(agent).filter(|f| !f.is_empty())?;
        state.agent_root_causes.get(agent).cloned()
    }

    /// The agent's `Anomalous` condition from the anomaly loop's last pass.
    pub fn anomaly_condition(&self, agent: &super::view::AgentKey) -> super::crd::conditions::DesiredCondition {
        let state = self.anomaly.lock().map(|s| s.clone()).unwrap_or_default();
        super::anomaly_state::agent_condition(&state, agent)
    }

    /// The write-ahead rule for an action about to be taken, at the level the MomConfig sets
    /// (see [`ReceiptWriter::record_before`]): `Ok` means act, `Err` means do not.
    pub async fn record_before(&self, intent: Intent) -> Result<Option<super::crd::agent::ReceiptRef>, Withheld> {
        self.writer
            .record_before(self.recording(), &self.recorder, intent)
            .await
    }
}

/// The kind of a failed tick, as the `kind` label of `mom_loop_errors_total`.
pub trait LoopError: std::fmt::Display {
    fn metric_label(&self) -> &'static str;
}

impl LoopError for kube::Error {
    fn metric_label(&self) -> &'static str {
        "api"
    }
}

/// A periodic loop that acts only while this replica leads. [`run_leader_loop`] drives it.
pub trait LeaderLoop: Send + 'static {
    /// The `loop` label of its metrics and spans (`scaler`, `auction`, …).
    const NAME: &'static str;
    type Error: LoopError + Send;

    /// Time between the starts of two ticks, and where it comes from; asked again whenever
    /// `spec.tickSeconds` changes (a loop it governs resolves it with [`super::ticks::Tick`]).
    fn period(&self, ctx: &Context) -> Period;

    /// One tick, on the leader only.
    fn tick(&mut self, ctx: &Context) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Called at each tick while this replica does not lead: forget what a term learned (the
    /// next term starts from what is persisted).
    fn reset(&mut self) {}

    /// Wakes the loop before its next tick is due (default: never).
    fn wake<'a>(&'a self, _ctx: &'a Context) -> impl Future<Output = ()> + Send + 'a {
        std::future::pending()
    }
}

/// Runs `job` every [`LeaderLoop::period`] (or when it wakes) until `shutdown` turns true, and
/// returns it, so a caller can read what it holds at the end (the checkpointer's state).
///
/// The first tick is immediate. When `spec.tickSeconds` changes, the period is resolved again at
/// once and the next tick is due one new period after the start of the last one (at once if
/// that has passed), so a shorter period is not held up by the longer wait already begun.
pub async fn run_leader_loop<L: LeaderLoop>(ctx: Arc<Context>, mut job: L, mut shutdown: watch::Receiver<bool>) -> L {
    let mut tick_seconds = ctx.tick_seconds.clone();
    tick_seconds.borrow_and_update();
    let mut period = job.period(&ctx);
    announce_period::<L>(&ctx, None, period);
    let mut last = tokio::time::Instant::now();
    // `None`: the first tick, at once, without waiting for the timer (a task that is first
    // polled late still starts with the leadership it was started under).
    let mut due: Option<tokio::time::Instant> = None;
    let beat = |ctx: &Context, period: Period| ctx.health.beat(L::NAME, period.every, std::time::Instant::now());
    beat(&ctx, period);
    loop {
        tokio::select! {
            _ = async {
                if let Some(due) = due {
                    tokio::time::sleep_until(due).await;
                }
            } => {
                last = tokio::time::Instant::now();
                due = Some(last + period.every);
            }
            _ = job.wake(&ctx) => {}
            Ok(()) = tick_seconds.changed() => {
                let now = job.period(&ctx);
                if now != period {
                    announce_period::<L>(&ctx, Some(period), now);
                    period = now;
                    // Before the first tick it stays at once.
                    due = due.map(|_| last + period.every);
                    beat(&ctx, period);
                }
                continue;
            }
            _ = shutdown.wait_for(|stop| *stop) => return job,
        }
        beat(&ctx, period);
        if !ctx.is_leader() {
            job.reset();
            continue;
        }
        let span = tracing::info_span!("tick", r#loop = L::NAME);
        if let Err(err) = job.tick(&ctx).instrument(span).await {
            ctx.metrics.loop_error(L::NAME, err.metric_label());
            tracing::warn!(r#loop = L::NAME, kind = err.metric_label(), error = %err, "tick failed");
        }
        ctx.metrics.loop_tick(L::NAME);
        beat(&ctx, period);
    }
}

/// Logs a loop's period when it is first set (`before` is `None`) or changes, and sets
/// `mom_loop_period_seconds{loop}`. A flag that overrides `spec.tickSeconds` is named once, at
/// start.
fn announce_period<L: LeaderLoop>(ctx: &Context, before: Option<Period>, now: Period) {
    ctx.metrics.set_loop_period(L::NAME, now.every);
    let seconds = now.every.as_secs_f64();
    match before {
        None if now.origin == super::ticks::Origin::Flag => tracing::info!(
            r#loop = L::NAME,
            seconds,
            from = now.origin.as_str(),
            "loop period set by its command-line flag, which overrides MomConfig spec.tickSeconds"
        ),
        None => tracing::info!(r#loop = L::NAME, seconds, from = now.origin.as_str(), "loop period"),
        Some(before) => tracing::info!(
            r#loop = L::NAME,
            seconds,
            before = before.every.as_secs_f64(),
            from = now.origin.as_str(),
            "loop period changed; the next tick is due one new period after the last"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::momconfig::VerificationLevel;
    use crate::receipts::{Action, SubjectRef};
    use std::time::Duration;

    /// A loop that counts its ticks and resets, and fails every other tick.
    #[derive(Default)]
    struct Counting {
        ticks: u32,
        resets: u32,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("odd tick")]
    struct OddTick;

    impl LoopError for OddTick {
        fn metric_label(&self) -> &'static str {
            "odd"
        }
    }

    impl LeaderLoop for Counting {
        const NAME: &'static str = "counting";
        type Error = OddTick;

        fn period(&self, _ctx: &Context) -> Period {
            Period::fixed(Duration::from_millis(10))
        }

        async fn tick(&mut self, _ctx: &Context) -> Result<(), OddTick> {
            self.ticks += 1;
            if self.ticks % 2 == 1 { Err(OddTick) } else { Ok(()) }
        }

        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    /// A loop governed by `spec.tickSeconds` (unless `tick` has a flag) that counts its ticks.
    struct Governed {
        tick: crate::operator::ticks::Tick,
        ticks: Arc<std::sync::atomic::AtomicU32>,
    }

    impl LeaderLoop for Governed {
        const NAME: &'static str = "governed";
        type Error = OddTick;

        fn period(&self, ctx: &Context) -> Period {
            self.tick.resolve(ctx.configured_tick_seconds())
        }

        async fn tick(&mut self, _ctx: &Context) -> Result<(), OddTick> {
            self.ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    fn period_gauge(ctx: &Context, name: &str) -> f64 {
        ctx.metrics
            .loop_period
            .get_or_create(&crate::operator::metrics::LoopNameLabels { r#loop: name.into() })
            .get()
    }

    #[tokio::test]
    async fn a_tick_seconds_change_applies_at_the_next_tick_without_a_restart() {
        use std::sync::atomic::Ordering::SeqCst;
        let (_lead_tx, lead_rx) = watch::channel(true);
        let (tick_tx, tick_rx) = watch::channel(Some(3600));
        let ctx = Arc::new(Context::offline(lead_rx).with_tick_seconds(tick_rx));
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let job = Governed {
            tick: crate::operator::ticks::Tick::from_momconfig(),
            ticks: ticks.clone(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_leader_loop(ctx.clone(), job, stop_rx));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            ticks.load(SeqCst),
            1,
            "only the immediate first tick within an hour's period"
        );
        assert_eq!(period_gauge(&ctx, "governed"), 3600.0);

        // 3600 s → 1 s: the wait already begun does not hold it up.
        tick_tx.send_replace(Some(1));
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let fast = ticks.load(SeqCst);
        assert!((2..=4).contains(&fast), "ticks at 1 s after the change: {fast}");
        assert_eq!(period_gauge(&ctx, "governed"), 1.0);

        // 1 s → 3600 s: at most the tick already due, then none.
        tick_tx.send_replace(Some(3600));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = ticks.load(SeqCst);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(ticks.load(SeqCst), before, "no tick within an hour's period");
        assert_eq!(period_gauge(&ctx, "governed"), 3600.0);
        let counted = ctx
            .metrics
            .loop_ticks
            .get_or_create(&crate::operator::metrics::LoopNameLabels {
                r#loop: "governed".into(),
            })
            .get();
        assert_eq!(counted, u64::from(before), "mom_loop_ticks_total counts every tick");
        stop_tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_loop_with_its_flag_given_ignores_tick_seconds_and_its_changes() {
        use std::sync::atomic::Ordering::SeqCst;
        let (_lead_tx, lead_rx) = watch::channel(true);
        let (tick_tx, tick_rx) = watch::channel(Some(1));
        let ctx = Arc::new(Context::offline(lead_rx).with_tick_seconds(tick_rx));
        let overridden = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let job = Governed {
            tick: crate::operator::ticks::Tick::overridden(Duration::from_secs(3600)),
            ticks: overridden.clone(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_leader_loop(ctx.clone(), job, stop_rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        tick_tx.send_replace(Some(2));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            overridden.load(SeqCst),
            1,
            "the flag's hour holds whatever tickSeconds says"
        );
        assert_eq!(period_gauge(&ctx, "governed"), 3600.0);
        stop_tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_true_leading_channel_is_not_trusted_once_the_fence_is_stale() {
        let (_lead_tx, lead_rx) = watch::channel(true);
        let fence = crate::operator::leader::Fence::new(Duration::from_secs(3600));
        let ctx = Context::offline(lead_rx).with_fence(fence.clone());
        assert!(!ctx.is_leader(), "never renewed: not leading despite the channel");
        fence.renewed(std::time::Instant::now());
        assert!(ctx.is_leader(), "renewed just now: leading");
        fence.clear();
        assert!(!ctx.is_leader(), "lost: not leading despite the channel");
    }

    #[tokio::test]
    async fn a_loop_ticks_only_while_leading_resets_otherwise_and_counts_its_failures() {
        let (lead_tx, lead_rx) = watch::channel(false);
        let ctx = Arc::new(Context::offline(lead_rx));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_leader_loop(ctx.clone(), Counting::default(), stop_rx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        lead_tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send_replace(true);
        let job = task.await.unwrap();
        // The first tick is immediate: a follower resets at once, the leader ticks at once.
        assert!(job.resets >= 1, "a follower resets at every tick: {}", job.resets);
        assert!(job.ticks >= 1, "the leader ticks: {}", job.ticks);
        let failed = ctx
            .metrics
            .loop_errors
            .get_or_create(&crate::operator::metrics::LoopLabels {
                r#loop: "counting".into(),
                kind: "odd".into(),
            })
            .get();
        assert_eq!(failed, u64::from(job.ticks.div_ceil(2)));
        let text = ctx.metrics.encode();
        assert!(
            text.contains(r#"mom_loop_errors_total{loop="counting",kind="odd"}"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_loop_stops_at_shutdown_and_hands_its_state_back() {
        let (_lead_tx, lead_rx) = watch::channel(true);
        let ctx = Arc::new(Context::offline(lead_rx));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_leader_loop(ctx, Counting::default(), stop_rx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop_tx.send_replace(true);
        let job = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(job.ticks >= 1);
        assert_eq!(job.resets, 0);
    }

    fn intent() -> Intent {
        Intent {
            action: Action::Scale,
            subject: SubjectRef {
                api_version: "mom.hypersync.io/v1alpha1".into(),
                kind: "GeometricAgent".into(),
                namespace: "team-a".into(),
                name: "web".into(),
                uid: None,
            },
            decision: serde_json::json!({"kind": "scaling.manual"}),
            inputs: serde_json::json!({}),
            regarding: None,
            withheld: "the replicas of team-a/web were not changed".into(),
        }
    }

    fn recording(level: VerificationLevel) -> Recording {
        Recording {
            level,
            sample_rate: 1.0,
        }
    }

    #[tokio::test]
    async fn at_full_audit_an_unwritable_receipt_withholds_the_action_and_says_which() {
        let (_tx, rx) = watch::channel(true);
        let ctx = Context::offline(rx);
        let withheld = ctx.record_before(intent()).await.unwrap_err();
        assert!(
            withheld
                .message
                .starts_with("the receipt could not be written, so the replicas of team-a/web were not changed: "),
            "{}",
            withheld.message
        );
        assert!(ctx.writer.recent_failure(Duration::from_secs(60)).is_some());
    }

    #[tokio::test]
    async fn below_full_audit_an_unwritable_receipt_does_not_stop_the_action() {
        let (_tx, rx) = watch::channel(true);
        let ctx = Context::offline(rx);
        for level in [VerificationLevel::Sample, VerificationLevel::None] {
            ctx.view.write().unwrap().settings.recording = recording(level);
            assert!(ctx.record_before(intent()).await.is_ok(), "{level:?}");
        }
    }
}
