//! Status of the cluster-wide objects, written by the leader every few seconds:
//! - every MomConfig: the one named `default` is Ready with the node embedding it produced
//!   (nodes embedded, distortion, MAP), the receipt chain head, and `ReceiptsWritable` (False
//!   while receipt writes keep failing, naming the error) and `ReceiptsTrusted` (False naming
//!   stored receipts not signed by a trusted key, with a Warning Event when they change) and
//!   `SigningKeyReady` (False naming the Secret, key and problem of `spec.verification.signingKey`,
//!   with a Warning Event when it changes), `status.hourlyCost` and `BudgetExceeded`
//!   (`operator::budget`); any
//!   other is marked Ignored, naming the rule;
//! - every OrchestrationStrategy: the agents using it, and a Ready condition that names any
//!   `nearAgents` entry that does not exist and explicit coordinates that do not have the
//!   dimension nodes are embedded in (or lie outside the ball), with a Warning Event each time
//!   the Ready condition's problems change.
//!
//! Thin: it reads the objects, calls the pure checks of `crd::validate`, and patches status only
//! when something changed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::context::{Context, LeaderLoop};
use super::crd::conditions::{self, ConditionStatus, DesiredCondition};
use super::crd::momconfig::{self, MomConfigStatus};
use super::crd::strategy::OrchestrationStrategyStatus;
use super::crd::validate::{self, AgentFacts, StrategyFacts};
use super::crd::{GeometricAgent, MomConfig, OrchestrationStrategy};

/// The status loop: every 3 s on the leader, the status of every MomConfig and
/// OrchestrationStrategy; run by [`super::context::run_leader_loop`].
#[derive(Default)]
pub struct StatusWriter {
    /// The foreign receipts last announced in an Event (one Event per change, not per tick).
    announced_foreign: Vec<super::receipts::ForeignReceipt>,
    /// Undecodable agents already given their condition and Event.
    announced_bad: Vec<super::lenient::Undecodable>,
    /// The signing-key problem last announced in an Event.
    announced_key: Option<String>,
}

/// A Warning Event on the MomConfig `default` (the one in force).
async fn warn_on_active_config(ctx: &Context, action: &str, reason: &str, message: String) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(MomConfig::api_version(&()).into_owned()),
        kind: Some(MomConfig::kind(&()).into_owned()),
        name: Some(momconfig::ACTIVE_NAME.to_string()),
        ..Default::default()
    };
    ctx.publish(
        &reference,
        kube::runtime::events::EventType::Warning,
        action,
        reason,
        message,
    )
    .await;
}

impl LeaderLoop for StatusWriter {
    const NAME: &'static str = "status";
    type Error = kube::Error;

    fn period(&self, _ctx: &Context) -> super::ticks::Period {
        super::ticks::Period::fixed(Duration::from_secs(3))
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), kube::Error> {
        let foreign = ctx.writer.foreign_receipts();
        if foreign != self.announced_foreign {
            if !foreign.is_empty() {
                warn_on_active_config(
                    ctx,
                    "VerifyChain",
                    conditions::reason::FOREIGN_RECEIPTS,
                    foreign_message(&foreign),
                )
                .await;
            }
            self.announced_foreign = foreign;
        }
        let key_problem = ctx.writer.key_state().and_then(Result::err);
        if key_problem != self.announced_key {
            if let Some(problem) = &key_problem {
                warn_on_active_config(
                    ctx,
                    "LoadSigningKey",
                    conditions::reason::SIGNING_KEY_INVALID,
                    problem.clone(),
                )
                .await;
            }
            self.announced_key = key_problem;
        }
        self.report_bad_agents(ctx).await;
        reconcile_once(ctx).await
    }
}

impl StatusWriter {
    /// Gives every GeometricAgent that does not decode (see `lenient`) a `Ready=False` condition
    /// (reason `InvalidSpec`) and a Warning Event naming the field, once per distinct error.
    async fn report_bad_agents(&mut self, ctx: &Context) {
        let bad = ctx.bad_agents.all();
        for agent in &bad {
            if self.announced_bad.contains(agent) {
                continue;
            }
            let message = format!(
                "GeometricAgent {}/{} cannot be decoded and is not acted on: {}",
                agent.namespace, agent.name, agent.error
            );
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &agent.namespace, &super::lenient::agent_resource());
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": conditions::READY, "status": "False", "reason": conditions::reason::INVALID_SPEC,
                "message": message.chars().take(conditions::MAX_MESSAGE_LEN).collect::<String>(),
                "lastTransitionTime": now,
            }]}});
            if let Err(err) = api
                .patch_status(&agent.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(agent = %format!("{}/{}", agent.namespace, agent.name), error = %err, "cannot write the InvalidSpec condition");
                continue;
            }
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(GeometricAgent::api_version(&()).into_owned()),
                kind: Some(GeometricAgent::kind(&()).into_owned()),
                name: Some(agent.name.clone()),
                namespace: Some(agent.namespace.clone()),
                ..Default::default()
            };
            ctx.publish(
                &reference,
                kube::runtime::events::EventType::Warning,
                "Decode",
                conditions::reason::INVALID_SPEC,
                message,
            )
            .await;
            self.announced_bad.push(agent.clone());
        }
        self.announced_bad.retain(|a| bad.contains(a));
    }
}

/// How many foreign receipts a condition or Event names (the count is always given).
const FOREIGN_NAMED: usize = 10;

/// "N stored receipt(s) ... ignored for chaining: a; b; …", naming at most [`FOREIGN_NAMED`].
fn foreign_message(foreign: &[super::receipts::ForeignReceipt]) -> String {
    let named: Vec<String> = foreign.iter().take(FOREIGN_NAMED).map(ToString::to_string).collect();
    let more = foreign.len().saturating_sub(FOREIGN_NAMED);
    format!(
        "{} stored receipt(s) not signed by a trusted key are ignored for chaining (mom verify --cluster names them): {}{}",
        foreign.len(),
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// `ReceiptsTrusted` from the foreign receipts the writer found at its last load of the chain.
fn provenance_condition(writer: &super::receipts::ReceiptWriter) -> DesiredCondition {
    let foreign = writer.foreign_receipts();
    if foreign.is_empty() {
        DesiredCondition::new(
            conditions::RECEIPTS_TRUSTED,
            ConditionStatus::True,
            conditions::reason::RECEIPTS_SIGNED,
            "every stored receipt is signed by a trusted key (as of the writer's last load of the chain)",
        )
    } else {
        DesiredCondition::new(
            conditions::RECEIPTS_TRUSTED,
            ConditionStatus::False,
            conditions::reason::FOREIGN_RECEIPTS,
            foreign_message(&foreign),
        )
    }
}

/// `SigningKeyReady` from the writer's last look at the signing key (`None` until the first).
/// `MeasuredLatency` and `status.latencyFit` from the view's latency state; `follows`: node
/// positions currently come from the fit (false while a new node awaits its latencies).
fn latency_condition(
    state: &super::view::LatencyState,
    follows: bool,
) -> (DesiredCondition, Option<momconfig::LatencyFitStatus>) {
    use super::view::LatencyState;
    let c = |status, reason: &str, message: String| {
        DesiredCondition::new(conditions::MEASURED_LATENCY, status, reason, message)
    };
    match state {
        LatencyState::NotConfigured => (
            c(
                ConditionStatus::True,
                "NotConfigured",
                "no spec.geometry.latencySource: nodes are placed by their topology labels".into(),
            ),
            None,
        ),
        LatencyState::Pending => (
            c(
                ConditionStatus::Unknown,
                "Fitting",
                "spec.geometry.latencySource: fitting the measured latencies".into(),
            ),
            None,
        ),
        LatencyState::Problem(reason, message) => (c(ConditionStatus::False, reason, message.clone()), None),
        LatencyState::Fitted(f) if follows => (
            c(
                ConditionStatus::True,
                "Fitted",
                format!(
                    "node positions follow the measured latencies of {} nodes ({} pairs, {} dimensions): held-out median relative error {:.3} (p90 {:.3}) over {} pairs",
                    f.positions.len(),
                    f.pairs,
                    f.dimension,
                    f.held_out_median_relative_error,
                    f.held_out_p90_relative_error,
                    f.held_out_pairs
                ),
            ),
            Some(momconfig::LatencyFitStatus {
                nodes: f.positions.len() as i32,
                pairs: f.pairs as i32,
                held_out_pairs: f.held_out_pairs as i32,
                held_out_median_relative_error: f.held_out_median_relative_error,
                held_out_p90_relative_error: f.held_out_p90_relative_error,
                ms_per_unit: f.ms_per_unit,
                incremental: f.incremental,
                ignored_entries: f.ignored_entries as i32,
            }),
        ),
        LatencyState::Fitted(_) => (
            c(
                ConditionStatus::Unknown,
                "Fitting",
                "spec.geometry.latencySource: the nodes or the dimension changed; fitting again (until then nodes are placed by their topology labels)".into(),
            ),
            None,
        ),
    }
}

fn signing_key_condition(writer: &super::receipts::ReceiptWriter) -> Option<DesiredCondition> {
    Some(match writer.key_state()? {
        Ok(what) => DesiredCondition::new(
            conditions::SIGNING_KEY_READY,
            ConditionStatus::True,
            conditions::reason::SIGNING_KEY_LOADED,
            what,
        ),
        Err(why) => DesiredCondition::new(
            conditions::SIGNING_KEY_READY,
            ConditionStatus::False,
            conditions::reason::SIGNING_KEY_INVALID,
            format!("spec.verification.signingKey: {why}"),
        ),
    })
}

/// How long a failed receipt write keeps `ReceiptsWritable` False after the last failure (the
/// agent controller retries a refused action every 5 s, so a lasting problem stays visible).
pub const RECEIPT_FAILURE_WINDOW: Duration = Duration::from_secs(20);

/// `ReceiptsWritable` from the writer's newest failure.
/// `FailoverModel` from the failover planner's last pass ([`super::failover_plan`]).
fn failover_model_condition(summary: &super::view::PlanSummary) -> DesiredCondition {
    let (guarded, moved): (Vec<_>, Vec<_>) = summary
        .drained
        .iter()
        .partition(|(_, a)| **a == crate::failover_mdp::Action::AddStandby);
    let mut drained = if moved.is_empty() {
        "no failure domain is drained".to_string()
    } else {
        let list: Vec<String> = moved.iter().map(|(d, a)| format!("{d} ({})", a.as_str())).collect();
        format!("drained ahead of a predicted failure: {}", list.join(", "))
    };
    if !guarded.is_empty() {
        let list: Vec<&str> = guarded.iter().map(|(d, _)| d.as_str()).collect();
        drained.push_str(&format!("; standbys held outside (add_standby): {}", list.join(", ")));
    }
    match &summary.fallback {
        Some(why) => DesiredCondition::new(
            conditions::FAILOVER_MODEL,
            ConditionStatus::False,
            conditions::reason::CONSERVATIVE_RULE,
            format!("the conservative rule decides where the model cannot: {why}; {drained}"),
        ),
        None if summary.domains == 0 => DesiredCondition::new(
            conditions::FAILOVER_MODEL,
            ConditionStatus::Unknown,
            conditions::reason::CONSERVATIVE_RULE,
            "the failover planner has observed no failure domain yet".to_string(),
        ),
        None => DesiredCondition::new(
            conditions::FAILOVER_MODEL,
            ConditionStatus::True,
            conditions::reason::MODEL_ESTIMATED,
            format!(
                "value iteration decides all {} failure domains; {drained}",
                summary.domains
            ),
        ),
    }
}

/// `status.rootCause`: the localiser of `mom rca` ([`crate::anomaly::rca`]) over every node
/// (with its topology labels) and, when agent series are watched, every agent with bound pods,
/// given the anomaly loop's current flags. `None` while the loop is off or nothing is flagged.
pub fn root_cause(
    state: &super::anomaly_state::AnomalyState,
    node_labels: &BTreeMap<String, BTreeMap<String, String>>,
    agent_nodes: &BTreeMap<super::view::AgentKey, BTreeSet<String>>,
) -> Option<momconfig::RootCauseStatus> {
    root_causes(state, node_labels, agent_nodes, &BTreeMap::new()).cluster
}

/// The root causes of one diagnosis: the cluster's (MomConfig `status.rootCause`) and, per
/// flagged agent, the best-ranked domain that contains it (its own `status.rootCause`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RootCauses {
    pub cluster: Option<momconfig::RootCauseStatus>,
    pub agents: BTreeMap<super::view::AgentKey, momconfig::RootCauseStatus>,
}

/// [`root_cause`], and each flagged agent's cause ([`crate::anomaly::rca::Domains::agent_causes`]),
/// with each agent's `upstream` its peers (`spec.peers`, the agents it calls) that have bound
/// pods, so a flagged peer can be named as the upstream cause of its callers.
pub fn root_causes(
    state: &super::anomaly_state::AnomalyState,
    node_labels: &BTreeMap<String, BTreeMap<String, String>>,
    agent_nodes: &BTreeMap<super::view::AgentKey, BTreeSet<String>>,
    peers: &BTreeMap<super::view::AgentKey, Vec<super::view::AgentKey>>,
) -> RootCauses {
    use crate::anomaly::rca::{Cause, Domains, Params, TopoAgent, TopoNode};
    if state.series.is_none() {
        return RootCauses::default();
    }
    let flagged_agents: BTreeSet<String> = state
        .agent_flags
        .iter()
        .filter(|(_, flags)| !flags.is_empty())
        .map(|(k, _)| format!("{}/{}", k.namespace, k.name))
        .collect();
    let nodes: Vec<TopoNode> = node_labels
        .iter()
        .map(|(name, labels)| TopoNode {
            name: name.clone(),
            labels: labels.clone(),
        })
        .collect();
    let keys: Vec<&super::view::AgentKey> = if state.agent_series {
        agent_nodes.keys().collect()
    } else {
        Vec::new()
    };
    let agents: Vec<TopoAgent> = keys
        .iter()
        .map(|k| TopoAgent {
            name: format!("{}/{}", k.namespace, k.name),
            nodes: agent_nodes[*k]
                .iter()
                .filter(|n| node_labels.contains_key(*n))
                .cloned()
                .collect(),
            upstream: peers
                .get(*k)
                .into_iter()
                .flatten()
                .filter(|p| *p != *k && agent_nodes.contains_key(*p))
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
        .collect();
    let node_a: Vec<f64> = nodes
        .iter()
        .map(|n| f64::from(u8::from(state.flagged_nodes.contains(&n.name))))
        .collect();
    let agent_a: Vec<f64> = agents
        .iter()
        .map(|a| f64::from(u8::from(flagged_agents.contains(&a.name))))
        .collect();
    let total = node_a.iter().chain(&agent_a).sum::<f64>();
    if total == 0.0 {
        return RootCauses::default();
    }
    let Ok(domains) = Domains::new(&nodes, &agents) else {
        return RootCauses::default();
    };
    let Ok(diagnosis) = domains.localise_scores(&node_a, &agent_a, &Params::default()) else {
        return RootCauses::default();
    };
    // Rounded so that float noise never rewrites the status.
    let round = |x: f64| (x * 1e4).round() / 1e4;
    let status = |c: &Cause| momconfig::RootCauseStatus {
        level: c.level.as_str().to_string(),
        name: c.name.clone(),
        confidence: round(c.confidence),
        none_confidence: round(diagnosis.none_confidence),
        members: i32::try_from(c.members).unwrap_or(i32::MAX),
        flagged: c.anomalous.round() as i32,
        flagged_total: total.round() as i32,
    };
    let agents = keys
        .iter()
        .zip(domains.agent_causes(&diagnosis))
        .zip(&agent_a)
        .filter(|(_, a)| **a > 0.0)
        .filter_map(|((k, c), _)| Some(((*k).clone(), status(c?))))
        .collect();
    RootCauses {
        cluster: diagnosis.causes.first().map(status),
        agents,
    }
}

/// `AnomalyDetection` from the anomaly loop's last pass ([`super::anomaly`]).
fn anomaly_condition(state: &super::anomaly_state::AnomalyState) -> DesiredCondition {
    match state.series {
        None => DesiredCondition::new(
            conditions::ANOMALY_DETECTION,
            ConditionStatus::False,
            conditions::reason::ANOMALY_OFF,
            "spec.anomaly names no series or is disabled: no anomaly flag is set".to_string(),
        ),
        Some(n) if state.errors.is_empty() => DesiredCondition::new(
            conditions::ANOMALY_DETECTION,
            ConditionStatus::True,
            conditions::reason::SERIES_ANSWERED,
            format!("all {n} series answered; {} nodes flagged", state.flagged_nodes.len()),
        ),
        Some(n) => DesiredCondition::new(
            conditions::ANOMALY_DETECTION,
            ConditionStatus::False,
            conditions::reason::QUERY_FAILED,
            format!(
                "{} of {n} series failed, their flags did not change: {}",
                state.errors.len(),
                state.errors.join("; ")
            ),
        ),
    }
}

fn receipts_condition(writer: &super::receipts::ReceiptWriter) -> DesiredCondition {
    match writer.recent_failure(RECEIPT_FAILURE_WINDOW) {
        Some(error) => DesiredCondition::new(
            conditions::RECEIPTS_WRITABLE,
            ConditionStatus::False,
            conditions::reason::RECEIPT_WRITE_FAILED,
            format!(
                "a receipt write failed in the last {} s (at full_audit its action is not taken): {error}",
                RECEIPT_FAILURE_WINDOW.as_secs()
            ),
        ),
        None => DesiredCondition::new(
            conditions::RECEIPTS_WRITABLE,
            ConditionStatus::True,
            conditions::reason::RECEIPTS_WRITTEN,
            format!(
                "no receipt write failed in the last {} s",
                RECEIPT_FAILURE_WINDOW.as_secs()
            ),
        ),
    }
}

fn unchanged(
    old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    new: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|(a, b)| a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message)
}

/// Each agent's peers (`spec.peers`, same namespace), from the controller's cache.
fn agent_peers(agents: &super::context::AgentCache) -> BTreeMap<super::view::AgentKey, Vec<super::view::AgentKey>> {
    agents
        .sorted()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let key = super::view::AgentKey::of(a);
            let peers = a
                .spec
                .peers
                .iter()
                .map(|p| super::view::AgentKey::new(&key.namespace, &p.agent))
                .collect();
            (key, peers)
        })
        .collect()
}

async fn reconcile_once(ctx: &Context) -> Result<(), kube::Error> {
    let (client, view, writer, agents) = (&ctx.client, &ctx.view, &ctx.writer, &ctx.agents);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let configs: Api<MomConfig> = Api::all(client.clone());
    let (nodes_embedded, embedding, ball, latency) = {
        let v = view.read();
        let e = v.embedding().cloned();
        let latency = (v.latency_state().clone(), v.positions_follow_latency());
        let ball = v.dimension().map(|dimension| validate::Ball {
            dimension,
            curvature: v.settings.kappa,
        });
        (e.as_ref().map(|e| e.positions.len() as i32), e, ball, latency)
    };
    let (latency_condition, latency_fit) = latency_condition(&latency.0, latency.1);
    // Refusals of agents that no longer exist are over.
    if let Some(all) = agents.sorted() {
        let keys: BTreeSet<super::view::AgentKey> = all.iter().map(|a| super::view::AgentKey::of(a)).collect();
        ctx.budget.retain(|k| keys.contains(k));
    }
    let (hourly_cost, budget_condition) = super::budget::status(ctx);
    let failover_model = failover_model_condition(view.read().failover_summary());
    let anomaly_state = ctx.anomaly.lock().map(|s| s.clone()).unwrap_or_default();
    let anomaly_detection = anomaly_condition(&anomaly_state);
    // Every node's labels are copied only while something is flagged (this runs every 3 s).
    let anything_flagged =
        !anomaly_state.flagged_nodes.is_empty() || anomaly_state.agent_flags.values().any(|flags| !flags.is_empty());
    let causes = if anything_flagged {
        let (labels, agent_nodes) = {
            let v = view.read();
            (v.node_label_map(), v.agent_nodes())
        };
        root_causes(&anomaly_state, &labels, &agent_nodes, &agent_peers(agents))
    } else {
        RootCauses::default()
    };
    // Each flagged agent's own cause, for its status (the agent controller writes it).
    if let Ok(mut s) = ctx.anomaly.lock() {
        s.agent_root_causes = causes.agents.clone();
    }
    let root_cause = causes.cluster;
    // Rounded so that float noise never rewrites the status.
    let hourly_cost = (hourly_cost * 1e6).round() / 1e6;
    for cfg in configs.list(&ListParams::default()).await?.items {
        let name = cfg.name_any();
        let old = cfg.status.clone().unwrap_or_default();
        let desired = if momconfig::is_active(&cfg) {
            vec![
                DesiredCondition::new(
                    conditions::READY,
                    ConditionStatus::True,
                    conditions::reason::RECONCILED,
                    format!(
                        "in effect; {} nodes embedded in {} dimensions",
                        nodes_embedded.unwrap_or(0),
                        embedding.as_ref().map(|e| e.dimension).unwrap_or(0)
                    ),
                ),
                receipts_condition(writer),
                provenance_condition(writer),
                latency_condition.clone(),
                momconfig::spec_supported_condition(&cfg.spec),
                budget_condition.clone(),
                failover_model.clone(),
                anomaly_detection.clone(),
            ]
            .into_iter()
            .chain(signing_key_condition(writer))
            .collect()
        } else {
            vec![momconfig::ignored_condition(&name)]
        };
        let mut status = MomConfigStatus {
            conditions: conditions::merge(&old.conditions, &desired, cfg.meta().generation, &now),
            observed_generation: cfg.meta().generation,
            ..old.clone()
        };
        if momconfig::is_active(&cfg) {
            status.nodes_embedded = nodes_embedded;
            status.embedding_dimension = embedding.as_ref().map(|e| e.dimension as i32);
            status.embedding_distortion = embedding.as_ref().map(|e| e.avg_distortion);
            status.embedding_max_distortion = embedding.as_ref().map(|e| e.max_distortion);
            status.latency_fit = latency_fit.clone();
            status.embedding_map = embedding.as_ref().map(|e| e.map);
            if let Some(head) = writer.head() {
                status.receipt_chain_head = Some(momconfig::ChainHead {
                    sequence: head.sequence as i64,
                    hash: head.hash.clone(),
                });
            }
            status.last_checkpoint = writer.last_checkpoint();
            status.hourly_cost = Some(hourly_cost);
            status.root_cause = root_cause.clone();
        }
        let same = unchanged(&old.conditions, &status.conditions)
            && old.observed_generation == status.observed_generation
            && old.nodes_embedded == status.nodes_embedded
            && old.embedding_dimension == status.embedding_dimension
            && old.embedding_distortion == status.embedding_distortion
            && old.embedding_max_distortion == status.embedding_max_distortion
            && old.latency_fit == status.latency_fit
            && old.embedding_map == status.embedding_map
            && old.receipt_chain_head == status.receipt_chain_head
            && old.hourly_cost == status.hourly_cost
            && old.root_cause == status.root_cause
            && (status.last_checkpoint.is_none() || old.last_checkpoint == status.last_checkpoint);
        if !same {
            let mut patch = serde_json::json!({ "status": status });
            if status.latency_fit.is_none() && old.latency_fit.is_some() {
                // A merge patch keeps fields it does not name: remove the stale fit explicitly.
                patch["status"]["latencyFit"] = serde_json::Value::Null;
            }
            if status.root_cause.is_none() && old.root_cause.is_some() {
                patch["status"]["rootCause"] = serde_json::Value::Null;
            }
            configs
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }

    let strategies: Api<OrchestrationStrategy> = Api::all(client.clone());
    let strategy_list = strategies.list(&ListParams::default()).await?.items;
    // Strategies' matched agents come from the agent controller's cache; before its first full
    // list they are left as they are.
    let Some(agent_list) = agents.sorted() else {
        return Ok(());
    };
    let agent_facts: Vec<AgentFacts> = agent_list
        .iter()
        .map(|a| AgentFacts::from_agent(a, ctx.anomaly_flags(&super::view::AgentKey::of(a))))
        .collect();
    let strategy_facts: Vec<StrategyFacts> = strategy_list.iter().map(StrategyFacts::from_strategy).collect();
    // Each agent under its own pool's pressure (as the auction last measured it), as the agent
    // controller and the scaler select its strategy.
    let pressures: BTreeMap<(String, String), crate::operator::crd::strategy::ResourcePressure> = {
        let v = ctx.view.read();
        agent_list
            .iter()
            .filter_map(|a| {
                let p = v.pool_pressure(&crate::operator::pools::pool_of(a))?;
                Some((
                    (a.namespace().unwrap_or_default(), a.name_any()),
                    crate::operator::pools::trigger_pressure(p),
                ))
            })
            .collect()
    };
    let matched = validate::matched_agents(&agent_facts, &strategy_facts, |a| {
        pressures.get(&(a.namespace.clone(), a.name.clone())).copied()
    });
    let mut names_by_ns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &agent_facts {
        names_by_ns
            .entry(a.namespace.clone())
            .or_default()
            .insert(a.name.clone());
    }
    for (strategy, facts) in strategy_list.iter().zip(&strategy_facts) {
        let ns = strategy.namespace().unwrap_or_default();
        let name = strategy.name_any();
        let agents_here = names_by_ns.get(&ns).cloned().unwrap_or_default();
        let problems = validate::check_strategy(facts, &agents_here, ball);
        let list = matched.get(&(ns.clone(), name.clone())).cloned().unwrap_or_default();
        let old = strategy.status.clone().unwrap_or_default();
        let status = OrchestrationStrategyStatus {
            matched_agent_count: list.len() as i32,
            matched_agents: list,
            conditions: conditions::merge(
                &old.conditions,
                &[validate::readiness(&problems)],
                strategy.meta().generation,
                &now,
            ),
            observed_generation: strategy.meta().generation,
        };
        let same = old.matched_agents == status.matched_agents
            && old.observed_generation == status.observed_generation
            && unchanged(&old.conditions, &status.conditions);
        if !same {
            let api: Api<OrchestrationStrategy> = Api::namespaced(client.clone(), &ns);
            let patch = serde_json::json!({ "status": status });
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let ready = |c: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
                conditions::find(c, conditions::READY).map(|c| c.message.clone())
            };
            if let Some(first) = problems.first()
                && ready(&old.conditions) != ready(&status.conditions)
            {
                // Once per change of the problems, not every tick.
                ctx.publish(
                    &strategy.object_ref(&()),
                    kube::runtime::events::EventType::Warning,
                    "Validate",
                    first.reason(),
                    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                )
                .await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::anomaly_state::AnomalyState;
    use crate::operator::view::AgentKey;

    /// Two regions × two zones × two nodes, `n-<region><zone><node>`.
    fn cluster() -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for r in 0..2 {
            for z in 0..2 {
                for n in 0..2 {
                    let name = format!("n-{r}{z}{n}");
                    let labels = BTreeMap::from([
                        ("kubernetes.io/hostname".to_string(), name.clone()),
                        ("topology.kubernetes.io/region".to_string(), format!("r{r}")),
                        ("topology.kubernetes.io/zone".to_string(), format!("r{r}-z{z}")),
                    ]);
                    out.insert(name, labels);
                }
            }
        }
        out
    }

    fn state(nodes: &[&str]) -> AnomalyState {
        AnomalyState {
            series: Some(1),
            flagged_nodes: nodes.iter().map(|s| s.to_string()).collect(),
            ..AnomalyState::default()
        }
    }

    #[test]
    fn one_flagged_node_is_its_own_root_cause_and_a_whole_flagged_zone_is_the_zone() {
        let labels = cluster();
        let one = root_cause(&state(&["n-010"]), &labels, &BTreeMap::new()).unwrap();
        assert_eq!((one.level.as_str(), one.name.as_str()), ("node", "n-010"), "{one:?}");
        assert_eq!((one.members, one.flagged, one.flagged_total), (1, 1, 1));
        let zone = root_cause(&state(&["n-010", "n-011"]), &labels, &BTreeMap::new()).unwrap();
        assert_eq!((zone.level.as_str(), zone.name.as_str()), ("zone", "r0-z1"), "{zone:?}");
        assert!(zone.confidence > zone.none_confidence, "{zone:?}");
        let region = root_cause(&state(&["n-100", "n-101", "n-110", "n-111"]), &labels, &BTreeMap::new()).unwrap();
        assert_eq!(
            (region.level.as_str(), region.name.as_str()),
            ("region", "r1"),
            "{region:?}"
        );
    }

    #[test]
    fn nothing_flagged_or_the_loop_off_gives_no_root_cause() {
        let labels = cluster();
        assert_eq!(root_cause(&state(&[]), &labels, &BTreeMap::new()), None);
        let off = AnomalyState {
            series: None,
            ..state(&["n-000"])
        };
        assert_eq!(root_cause(&off, &labels, &BTreeMap::new()), None);
        // positive control: the same flags with the loop on
        assert!(root_cause(&state(&["n-000"]), &labels, &BTreeMap::new()).is_some());
    }

    #[test]
    fn watched_agents_count_as_members_of_the_domains_they_run_in() {
        let labels = cluster();
        let web = AgentKey::new("shop", "web");
        let agent_nodes = BTreeMap::from([(web.clone(), BTreeSet::from(["n-000".to_string(), "n-001".to_string()]))]);
        let mut s = state(&["n-000"]);
        s.agent_series = true;
        s.agent_flags.insert(web, BTreeSet::from(["latency-high".to_string()]));
        // node n-000 holds a replica of the flagged agent: its domain (the node and the agent)
        // explains both flags
        let cause = root_cause(&s, &labels, &agent_nodes).unwrap();
        assert_eq!(
            (cause.level.as_str(), cause.name.as_str()),
            ("node", "n-000"),
            "{cause:?}"
        );
        assert_eq!((cause.members, cause.flagged, cause.flagged_total), (2, 2, 2));
        // the agent alone flagged: the agent itself is the cause, not a node it runs on
        s.flagged_nodes.clear();
        let cause = root_cause(&s, &labels, &agent_nodes).unwrap();
        assert_eq!(
            (cause.level.as_str(), cause.name.as_str()),
            ("upstream", "shop/web"),
            "{cause:?}"
        );
        // without agent series the agent's flags are not evidence
        s.agent_series = false;
        assert_eq!(root_cause(&s, &labels, &agent_nodes), None);
    }

    #[test]
    fn a_flagged_peer_is_the_upstream_root_cause_of_its_flagged_callers_on_their_own_status() {
        let labels = cluster();
        let (web, api, db) = (
            AgentKey::new("shop", "web"),
            AgentKey::new("shop", "api"),
            AgentKey::new("shop", "db"),
        );
        let agent_nodes = BTreeMap::from([
            (web.clone(), BTreeSet::from(["n-000".to_string()])),
            (api.clone(), BTreeSet::from(["n-110".to_string()])),
            (db.clone(), BTreeSet::from(["n-101".to_string()])),
        ]);
        // web calls api; api and web are flagged, in different regions; db is quiet.
        let peers = BTreeMap::from([(web.clone(), vec![api.clone()]), (api.clone(), vec![db.clone()])]);
        let mut s = state(&[]);
        s.agent_series = true;
        for a in [&web, &api] {
            s.agent_flags.insert(a.clone(), BTreeSet::from(["errors".to_string()]));
        }
        let causes = root_causes(&s, &labels, &agent_nodes, &peers);
        let named = |c: &momconfig::RootCauseStatus| (c.level.clone(), c.name.clone());
        let api_cause = ("upstream".to_string(), "shop/api".to_string());
        assert_eq!(
            causes.cluster.as_ref().map(named),
            Some(api_cause.clone()),
            "{causes:?}"
        );
        assert_eq!(causes.agents.get(&web).map(named), Some(api_cause.clone()));
        assert_eq!(causes.agents.get(&api).map(named), Some(api_cause));
        // Only flagged agents get a cause.
        assert!(!causes.agents.contains_key(&db), "{causes:?}");
        // Control: without the call edge web and api are two separate causes, each its own.
        let apart = root_causes(&s, &labels, &agent_nodes, &BTreeMap::new());
        assert_eq!(
            apart.agents.get(&web).map(named),
            Some(("upstream".to_string(), "shop/web".to_string())),
            "{apart:?}"
        );
        // The MomConfig's cause is the same computation's.
        assert_eq!(root_cause(&s, &labels, &agent_nodes), apart.cluster);
    }
}
