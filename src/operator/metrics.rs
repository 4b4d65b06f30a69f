//! Prometheus metrics of the operator, exposed at `/metrics`.
//!
//! We use `prometheus-client` (the official Rust client, also used by kube-rs's controller
//! template): typed families, no global registry, OpenMetrics text output.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabels {
    /// `nodes` or `pods`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScalingLabels {
    /// predictive, reactive, learned, manual (none when the policy could not be read).
    pub method: String,
    /// scaled_up, scaled_down, unchanged, query_failed, metrics_pending, failed, receipt_failed,
    /// not_ready, model_unavailable (learned: its model could not be read).
    pub outcome: String,
}

/// Labels of `mom_loop_errors_total`: the leader loop and the kind of its error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabels {
    pub r#loop: String,
    pub kind: String,
}

/// Labels of `mom_loop_ticks_total` and `mom_loop_period_seconds`: the leader loop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopNameLabels {
    pub r#loop: String,
}

/// Labels of `mom_anomalies_total`: `node` or `agent`, and the flag raised.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabels {
    pub scope: String,
    pub flag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabels {
    pub strategy: String,
}

/// All metric families of the process, registered once.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    /// Failed ticks of the leader loops, per loop and error kind.
    pub loop_errors: Family<LoopLabels, Counter>,
    /// Ticks the leader loops ran on this replica while it led (failed ones included), per loop.
    pub loop_ticks: Family<LoopNameLabels, Counter>,
    /// The period each leader loop runs at now (see `operator::ticks`), per loop.
    pub loop_period: Family<LoopNameLabels, Gauge<f64, AtomicU64>>,
    pub leader: Gauge,
    pub extender_duration: Family<VerbLabels, Histogram>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub receipts_written: Family<ActionLabels, Counter>,
    pub receipt_chain_head: Gauge,
    /// `metadata.generation` of the MomConfig `default` in effect in this process (-1: none).
    pub config_generation: Gauge,
    pub scaling_decisions: Family<ScalingLabels, Counter>,
    /// Auctions run per node pool (ticks at high or critical pressure).
    pub auctions: Family<PoolLabels, Counter>,
    /// Resource pressure per node pool: 0 low, 1 medium, 2 high, 3 critical.
    pub resource_pressure: Family<PoolLabels, Gauge>,
    pub descheduler_evictions: Family<StrategyLabels, Counter>,
    pub descheduler_blocked: Counter,
    pub descheduler_plan_duration: Histogram,
    /// Objects the placement view holds, per kind, as the watches left it.
    pub view_objects: Family<ViewLabels, Gauge>,
    /// Cost per hour of every GeometricAgent pod (`crate::budget`), as the status loop last priced it.
    pub hourly_cost: Gauge<f64, AtomicU64>,
    /// Scale-ups the budget refused or capped (one per refusal receipt).
    pub budget_refusals: Counter,
    /// Anomaly flags raised by the anomaly loop (one per flag set, not per point).
    pub anomalies: Family<AnomalyLabels, Counter>,
    /// Resident memory of this process (from `/proc/self/status`), refreshed at each scrape.
    pub process_resident_memory: Gauge,
    /// CPU seconds (user + system) this process used (from `/proc/self/stat`), refreshed at each scrape.
    pub process_cpu_seconds: Counter<f64, AtomicU64>,
    encode_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mom");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let errors = Family::<ErrorLabels, Counter>::default();
        let leader = Gauge::default();
        let extender_duration = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
        });
        registry.register(
            "extender_request_duration_seconds",
            "Server-side duration of scheduler-extender calls, per verb",
            extender_duration.clone(),
        );
        let descheduler_evictions = Family::<StrategyLabels, Counter>::default();
        let descheduler_blocked = Counter::default();
        let descheduler_plan_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "descheduler_evictions",
            "Pods evicted by the descheduler, per strategy",
            descheduler_evictions.clone(),
        );
        registry.register(
            "descheduler_evictions_blocked",
            "Evictions refused because a PodDisruptionBudget allowed no disruption",
            descheduler_blocked.clone(),
        );
        registry.register(
            "descheduler_plan_duration_seconds",
            "Time to plan one descheduling tick",
            descheduler_plan_duration.clone(),
        );
        registry.register("reconciles", "Reconciliations run, per controller", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations, per controller",
            reconcile_duration.clone(),
        );
        let scaling_decisions = Family::<ScalingLabels, Counter>::default();
        registry.register(
            "scaling_decisions",
            "Scaler evaluations of an agent, per scaling method and outcome",
            scaling_decisions.clone(),
        );
        registry.register("errors", "Process-level errors, per kind", errors.clone());
        let loop_errors = Family::<LoopLabels, Counter>::default();
        registry.register(
            "loop_errors",
            "Failed ticks of the leader loops, per loop and error kind",
            loop_errors.clone(),
        );
        let loop_ticks = Family::<LoopNameLabels, Counter>::default();
        registry.register(
            "loop_ticks",
            "Ticks the leader loops ran while this replica led (failed ones included), per loop",
            loop_ticks.clone(),
        );
        let loop_period = Family::<LoopNameLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "loop_period_seconds",
            "Seconds between two ticks of each leader loop now (flag, MomConfig spec.tickSeconds or built-in)",
            loop_period.clone(),
        );
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions taken (acted on), per kind: scale_up, scale_down, bind, ...",
            decisions.clone(),
        );
        let receipts_written = Family::<ActionLabels, Counter>::default();
        registry.register(
            "receipts_written",
            "Receipts persisted to the apiserver, per action",
            receipts_written.clone(),
        );
        let receipt_chain_head = Gauge::default();
        registry.register(
            "receipt_chain_head_sequence",
            "Sequence number of the newest receipt this replica persisted (-1: none yet)",
            receipt_chain_head.clone(),
        );
        receipt_chain_head.set(-1);
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "metadata.generation of the MomConfig default in effect in this replica (-1: none)",
            config_generation.clone(),
        );
        config_generation.set(-1);
        let auctions = Family::<PoolLabels, Counter>::default();
        let resource_pressure = Family::<PoolLabels, Gauge>::default();
        registry.register("auctions", "Capacity auctions run, per node pool", auctions.clone());
        registry.register(
            "resource_pressure",
            "Resource pressure per node pool (0 low, 1 medium, 2 high, 3 critical)",
            resource_pressure.clone(),
        );
        let view_objects = Family::<ViewLabels, Gauge>::default();
        registry.register(
            "view_objects",
            "Objects the placement view holds, per kind (nodes, pods), after the last watch event",
            view_objects.clone(),
        );
        let hourly_cost = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "hourly_cost",
            "Cost per hour of the pods of every GeometricAgent: node price (label mom.hypersync.io/hourly-cost, 1 without; x0.3 on spot) x the pod's larger share of the node's cpu or memory; unbound pods at the dearest node they may go to",
            hourly_cost.clone(),
        );
        let budget_refusals = Counter::default();
        registry.register(
            "budget_refusals",
            "Scale-ups of GeometricAgents refused or capped by MomConfig spec.budget.maxHourlyCost",
            budget_refusals.clone(),
        );
        let anomalies = Family::<AnomalyLabels, Counter>::default();
        registry.register(
            "anomalies",
            "Anomaly flags raised by the anomaly loop (MomConfig spec.anomaly), by scope (node, agent) and flag",
            anomalies.clone(),
        );
        let process_resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the operator process (VmRSS of /proc/self/status), read at each scrape; 0 where /proc is missing",
            process_resident_memory.clone(),
        );
        let process_cpu_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "User and system CPU seconds of the operator process (/proc/self/stat), read at each scrape; 0 where /proc is missing",
            process_cpu_seconds.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            errors,
            loop_errors,
            loop_ticks,
            loop_period,
            leader,
            extender_duration,
            decisions,
            receipts_written,
            receipt_chain_head,
            config_generation,
            scaling_decisions,
            auctions,
            resource_pressure,
            descheduler_evictions,
            descheduler_blocked,
            descheduler_plan_duration,
            view_objects,
            hourly_cost,
            budget_refusals,
            anomalies,
            process_resident_memory,
            process_cpu_seconds,
            encode_lock: Mutex::new(()),
        }
    }
}

impl Metrics {
    pub fn record_error(&self, err: &Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: err.metric_label().to_string(),
            })
            .inc();
    }

    /// Counts one failed tick of the leader loop `name`.
    pub fn loop_error(&self, name: &str, kind: &str) {
        self.loop_errors
            .get_or_create(&LoopLabels {
                r#loop: name.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts one tick the leader loop `name` ran.
    pub fn loop_tick(&self, name: &str) {
        self.loop_ticks
            .get_or_create(&LoopNameLabels {
                r#loop: name.to_string(),
            })
            .inc();
    }

    /// Sets the period gauge of the leader loop `name`.
    pub fn set_loop_period(&self, name: &str, period: std::time::Duration) {
        self.loop_period
            .get_or_create(&LoopNameLabels {
                r#loop: name.to_string(),
            })
            .set(period.as_secs_f64());
    }

    pub fn observe_extender(&self, verb: &str, elapsed: std::time::Duration) {
        self.extender_duration
            .get_or_create(&VerbLabels { verb: verb.to_string() })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one decision of `kind` that was acted on.
    pub fn decision(&self, kind: &str) {
        self.decisions
            .get_or_create(&DecisionLabels { kind: kind.to_string() })
            .inc();
    }

    /// Sets the view-size gauge of `kind` (`nodes`, `pods`).
    pub fn set_view_objects(&self, kind: &str, count: usize) {
        self.view_objects
            .get_or_create(&ViewLabels { kind: kind.into() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a persisted receipt and moves the chain-head gauge.
    pub fn receipt_written(&self, action: &str, sequence: u64) {
        self.receipts_written
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc();
        self.receipt_chain_head.set(i64::try_from(sequence).unwrap_or(i64::MAX));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Reads this process's RSS and CPU time from `/proc/self` into their series (called under
    /// the encode lock, so the CPU counter only moves forward by what was used since).
    fn refresh_process(&self) {
        if let Some(rss) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| crate::proc_status::resident_bytes_in(&s))
        {
            self.process_resident_memory.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_seconds(&s))
        {
            let delta = cpu - self.process_cpu_seconds.get();
            if delta > 0.0 {
                self.process_cpu_seconds.inc_by(delta);
            }
        }
    }

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> String {
        let _guard = self.encode_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh_process();
        let mut out = String::new();
        // Encoding into a String cannot fail (fmt::Write on String is infallible).
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Clock ticks per second of the times in `/proc/PID/stat` (Linux's `USER_HZ`, 100 on every
/// architecture the kernel exposes to user space).
const USER_HZ: f64 = 100.0;

/// utime + stime of a `/proc/PID/stat` line, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_add_user_and_system_ticks_past_a_name_with_spaces() {
        let stat = "42 (mom (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("42 (mom) S 1"), None);
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn a_scrape_exposes_this_process_rss_and_cpu_time() {
        let metrics = Metrics::default();
        let text = metrics.encode();
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        };
        assert!(value("mom_process_resident_memory_bytes ") > 0.0);
        assert!(value("mom_process_cpu_seconds_total ") >= 0.0);
    }
}
