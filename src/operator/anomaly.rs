//! The anomaly loop (leader): scores the Prometheus series MomConfig `spec.anomaly` names and
//! keeps the flags they raise on nodes (label `mom.hypersync.io/anomalous`, annotation
//! `mom.hypersync.io/anomaly-flags`) and agents (in memory, read by the scaler's strategy
//! matching through `triggers.anomalyFlags`).
//!
//! Each pass, per series: one range query over the window, one result series per node (label
//! `node`) or agent (labels `namespace`, `agent`), each decided by [`crate::anomaly::flag`]
//! from a fresh detector, so the state is the window and a new leader rebuilds it by the same
//! query. A node's flags now are what its annotation says (whoever wrote it), so a new leader
//! changes nothing that the window does not change. A series whose query fails keeps every
//! flag it raised (Prometheus down flips nothing); its error is reported in the MomConfig
//! condition `AnomalyDetection`. Every change is first an `anomaly.flag` receipt (the window
//! inline), then the label/annotation patch, an Event, and for a raised flag
//! `mom_anomalies_total{scope,flag}`.
//!
//! A flag that no series of its scope names any more (series removed, flag renamed, or
//! `spec.anomaly` removed or left without series) is cleared at the next pass, first with an
//! `anomaly.unnamed` receipt ([`flag::unnamed`]); `enabled: false` and a missing MomConfig
//! change no flag. The agent controller turns an agent's flags into its condition `Anomalous`.
//!
//! Under `spec.anomaly.nodeQuarantine: cordon` a flagged node is also quarantined in the same
//! patch (taint, cordon, label; [`crate::decisions::node_quarantine`], its own `node.quarantine`
//! receipt first).
//!
//! Not done: node conditions (the label is the signal). Agent flags live in the leader's
//! memory; a new leader rebuilds them from the window and records their first raise again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::{Context, LeaderLoop, LoopError};
use super::crd::MomConfig;
use super::crd::momconfig::NodeQuarantine;
use super::crd::momconfig::{ACTIVE_NAME, AnomalySeries, AnomalySpec};
use super::prometheus::{Prometheus, QueryError};
use super::receipts::{Intent, Withheld};
use super::ticks::Period;
use super::view::AgentKey;
use crate::anomaly::flag::{self, FlagInputs};
use crate::decisions::node_quarantine::{
    self, NodeQuarantineInputs, NodeQuarantineOutput, QUARANTINE_LABEL, QUARANTINE_TAINT,
};

/// The label the descheduler and the failover planner read.
pub const ANOMALOUS_LABEL: &str = "mom.hypersync.io/anomalous";
/// The node's flags, comma-separated and sorted.
pub const FLAGS_ANNOTATION: &str = "mom.hypersync.io/anomaly-flags";
/// Pass period before a MomConfig sets one.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AnomalyLoopError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("an anomaly flag's receipt could not be written, so the flag did not change: {0}")]
    Receipt(#[source] Withheld),
}

impl LoopError for AnomalyLoopError {
    fn metric_label(&self) -> &'static str {
        match self {
            AnomalyLoopError::Api(_) => "api",
            AnomalyLoopError::Receipt(_) => "receipt",
        }
    }
}

pub use super::anomaly_state::AnomalyState;

/// The leader loop.
#[derive(Debug)]
pub struct AnomalyLoop {
    prometheus: Option<Result<Prometheus, QueryError>>,
    period: Duration,
    /// Nodes the quarantine cap held back at the last pass (their Event is published when they
    /// become held back, not at every pass).
    held_back: BTreeSet<String>,
}

impl AnomalyLoop {
    pub fn new(prometheus_url: Option<&str>) -> Self {
        AnomalyLoop {
            prometheus: prometheus_url.map(Prometheus::new),
            period: DEFAULT_PERIOD,
            held_back: BTreeSet::new(),
        }
    }
}

/// One series' answer: per subject key, its points; or why there is none.
pub type Answer = Result<BTreeMap<String, Vec<(f64, f64)>>, String>;

impl LeaderLoop for AnomalyLoop {
    const NAME: &'static str = "anomaly";
    type Error = AnomalyLoopError;

    /// A new term announces every node the cap holds back again.
    fn reset(&mut self) {
        self.held_back.clear();
    }

    fn period(&self, _ctx: &Context) -> Period {
        Period::fixed(self.period)
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), AnomalyLoopError> {
        let Some(config) = Api::<MomConfig>::all(ctx.client.clone()).get_opt(ACTIVE_NAME).await? else {
            // No MomConfig at all: nothing is configured, nothing changes.
            set_state(ctx, |s| {
                s.series = None;
                s.errors.clear();
            });
            return Ok(());
        };
        let spec = match config.spec.anomaly {
            // Paused: no series is queried and no flag changes (the field doc of `enabled`).
            Some(a) if !a.enabled => {
                set_state(ctx, |s| {
                    s.series = None;
                    s.errors.clear();
                });
                return Ok(());
            }
            Some(a) if !(a.node_series.is_empty() && a.agent_series.is_empty()) => Some(a),
            // Removed, or naming no series: every flag the loop set is named by no series and is
            // cleared below (each with its `anomaly.unnamed` receipt).
            _ => None,
        };
        self.period = spec.as_ref().map_or(DEFAULT_PERIOD, |spec| {
            Duration::from_secs(u64::try_from(spec.step_seconds.max(1)).unwrap_or(15))
        });
        let prometheus = match &self.prometheus {
            None => Err("the operator was started without --prometheus-url".to_string()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(p)) => Ok(p),
        };
        let end = (unix_now() / self.period.as_secs_f64()).floor() * self.period.as_secs_f64();
        let minutes = spec.as_ref().map_or(0, |s| s.window_minutes);
        let start = end - f64::from(minutes) * 60.0 + self.period.as_secs_f64();
        let step = self.period.as_secs_f64();
        let mut errors = Vec::new();
        let window = (start, end, step);
        let no_series = Vec::new();
        let node_series = spec.as_ref().map_or(&no_series, |s| &s.node_series);
        let agent_series = spec.as_ref().map_or(&no_series, |s| &s.agent_series);
        let node_answers = answers(&prometheus, node_series, &["node"], window).await;
        let agent_answers = answers(&prometheus, agent_series, &["namespace", "agent"], window).await;
        for (s, a) in node_answers.iter().chain(agent_answers.iter()) {
            if let Err(e) = a {
                errors.push(format!("series {}: {e}", s.name));
            }
        }
        let node_named = named(node_series);
        let agent_named = named(agent_series);

        // Nodes: the flags now are the annotation's. Without series only flagged nodes matter.
        let nodes_api: Api<Node> = Api::all(ctx.client.clone());
        let nodes = if spec.is_some() {
            nodes_api.list(&ListParams::default()).await?.items
        } else {
            // Without series only flagged or quarantined nodes can change.
            let mut by_name = BTreeMap::new();
            for selector in [ANOMALOUS_LABEL, QUARANTINE_LABEL] {
                for n in nodes_api.list(&ListParams::default().labels(selector)).await?.items {
                    by_name.insert(n.name_any(), n);
                }
            }
            by_name.into_values().collect()
        };
        let quarantine = spec.as_ref().map_or(NodeQuarantine::None, |s| s.node_quarantine);
        // The cap counts the cluster's nodes (listed whole whenever there is a spec) and the
        // nodes in quarantine as this pass leaves them, admitting flagged nodes in name order.
        let limit = spec.as_ref().and_then(|s| s.quarantine_limit(nodes.len()));
        let mut nodes = nodes;
        nodes.sort_by_key(|n| n.name_any());
        let mut in_quarantine: BTreeSet<String> = nodes
            .iter()
            .filter(|n| {
                let i = quarantine_inputs(n, quarantine, &BTreeSet::new());
                i.tainted || i.label.is_some()
            })
            .map(|n| n.name_any())
            .collect();
        let mut flagged_nodes = BTreeSet::new();
        for node in &nodes {
            let name = node.name_any();
            let now = node_flags(node);
            let (mut want, decisions) = match &spec {
                Some(spec) => node_decision(spec, &node_answers, &name, &now),
                None => (now.clone(), Vec::new()),
            };
            let unnamed = flag::unnamed_flags(&format!("node/{name}"), &now, &node_named);
            for (inputs, _) in &unnamed {
                want.remove(&inputs.flag);
            }
            let mut q_inputs = quarantine_inputs(node, quarantine, &want);
            q_inputs.limit = limit;
            q_inputs.quarantined_others = in_quarantine.iter().filter(|n| **n != name).count() as u32;
            let q_out = node_quarantine::decide(&q_inputs);
            if q_out.quarantined {
                in_quarantine.insert(name.clone());
            } else {
                in_quarantine.remove(&name);
            }
            if q_out.held_back {
                if self.held_back.insert(name.clone()) {
                    hold_back(ctx, node, &q_inputs).await;
                }
            } else {
                self.held_back.remove(&name);
            }
            if want != now || q_out.changed {
                if want != now {
                    for (inputs, out) in &decisions {
                        if out.flagged == want.contains(&inputs.flag) {
                            record(ctx, "v1", "Node", "", &name, Decided::Window(inputs, out)).await?;
                        }
                    }
                    for (inputs, out) in &unnamed {
                        record(ctx, "v1", "Node", "", &name, Decided::Unnamed(inputs, out)).await?;
                    }
                }
                if q_out.changed {
                    record(ctx, "v1", "Node", "", &name, Decided::Quarantine(&q_inputs, &q_out)).await?;
                }
                let quarantine = q_out.changed.then_some((&q_inputs, &q_out));
                patch_node(&nodes_api, node, &want, quarantine).await?;
                let reference = node_reference(node);
                announce(ctx, &reference, "node", &format!("node {name}"), &now, &want).await;
                if q_out.changed && q_out.quarantined != q_inputs.tainted {
                    announce_quarantine(ctx, &reference, &name, &q_out, &want).await;
                }
            }
            if !want.is_empty() {
                flagged_nodes.insert(name.clone());
            }
        }

        // Forget nodes that are gone.
        let listed: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.held_back.retain(|n| listed.contains(n));

        // Agents: the flags now are the last pass's (memory of this term).
        let before = ctx.anomaly.lock().map(|s| s.agent_flags.clone()).unwrap_or_default();
        let mut after: BTreeMap<AgentKey, BTreeSet<String>> = BTreeMap::new();
        let mut after_series: BTreeMap<AgentKey, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        let agents = ctx.agents.sorted().unwrap_or_default();
        let agent_api_version = GeometricAgentRef::api_version();
        for agent in &agents {
            let key = AgentKey::of(agent);
            let now = before.get(&key).cloned().unwrap_or_default();
            let mut want = now.clone();
            let subject = format!("{}/{}", key.namespace, key.name);
            let mut raised_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (series, answer) in &agent_answers {
                let Some(spec) = &spec else { break };
                let Ok(by_agent) = answer else { continue };
                let inputs = inputs_for(spec, series, &format!("agent/{subject}"), by_agent.get(&subject));
                let Ok(out) = flag::evaluate(&inputs) else { continue };
                if out.flagged {
                    raised_by
                        .entry(series.flag.clone())
                        .or_default()
                        .insert(series.name.clone());
                }
                if out.flagged == now.contains(&series.flag) {
                    continue;
                }
                let (namespace, name) = (&key.namespace, &key.name);
                let decided = Decided::Window(&inputs, &out);
                record(ctx, &agent_api_version, "GeometricAgent", namespace, name, decided).await?;
                if out.flagged {
                    want.insert(series.flag.clone());
                } else {
                    want.remove(&series.flag);
                }
            }
            for (inputs, out) in flag::unnamed_flags(&format!("agent/{subject}"), &now, &agent_named) {
                let (namespace, name) = (&key.namespace, &key.name);
                let decided = Decided::Unnamed(&inputs, &out);
                record(ctx, &agent_api_version, "GeometricAgent", namespace, name, decided).await?;
                want.remove(&inputs.flag);
            }
            if want != now {
                let reference = agent.object_ref(&());
                let what = format!("agent {}/{}", key.namespace, key.name);
                announce(ctx, &reference, "agent", &what, &now, &want).await;
            }
            if !want.is_empty() {
                // Each flag with the series that raised it this pass, or (a failed query keeps
                // its flag) the series that name it.
                let series = want
                    .iter()
                    .map(|f| {
                        let by = raised_by.remove(f).unwrap_or_else(|| {
                            agent_named
                                .iter()
                                .filter(|s| &s.flag == f)
                                .map(|s| s.name.clone())
                                .collect()
                        });
                        (f.clone(), by)
                    })
                    .collect();
                after_series.insert(key.clone(), series);
                after.insert(key, want);
            }
        }
        let series = spec.as_ref().map(|s| s.node_series.len() + s.agent_series.len());
        let watches_agents = spec.as_ref().is_some_and(|s| !s.agent_series.is_empty());
        set_state(ctx, |s| {
            s.agent_flags = after;
            s.agent_flag_series = after_series;
            s.series = series;
            s.errors = errors;
            s.flagged_nodes = flagged_nodes;
            s.agent_series = watches_agents;
        });
        Ok(())
    }
}

/// The (name, flag) of each series.
fn named(series: &[AnomalySeries]) -> Vec<flag::NamedSeries> {
    series
        .iter()
        .map(|s| flag::NamedSeries {
            name: s.name.clone(),
            flag: s.flag.clone(),
        })
        .collect()
}

/// A recorded flag decision: from a series' window, or for a flag no series names.
#[derive(Clone, Copy)]
enum Decided<'a> {
    Window(&'a FlagInputs, &'a flag::FlagOutput),
    Unnamed(&'a flag::UnnamedInputs, &'a flag::UnnamedOutput),
    Quarantine(&'a NodeQuarantineInputs, &'a NodeQuarantineOutput),
}

struct GeometricAgentRef;
impl GeometricAgentRef {
    fn api_version() -> String {
        super::crd::GeometricAgent::api_version(&()).into_owned()
    }
}

/// Runs each series' range query over `(start, end, step)`.
async fn answers(
    prometheus: &Result<&Prometheus, String>,
    series: &[AnomalySeries],
    labels: &[&str],
    (start, end, step): (f64, f64, f64),
) -> Vec<(AnomalySeries, Answer)> {
    let mut out = Vec::new();
    for s in series {
        let answer = match prometheus {
            Err(why) => Err(why.clone()),
            Ok(p) => p
                .query_range_by(&s.query, labels, start, end, step)
                .await
                .map_err(|e| e.to_string()),
        };
        out.push((s.clone(), answer));
    }
    out
}

fn set_state(ctx: &Context, f: impl FnOnce(&mut AnomalyState)) {
    if let Ok(mut s) = ctx.anomaly.lock() {
        f(&mut s);
    }
}

/// A node's flags after this pass, and the decisions that changed one: a series that answered
/// raises or clears its flag; one that failed keeps what the node has.
pub fn node_decision(
    spec: &AnomalySpec,
    answers: &[(AnomalySeries, Answer)],
    name: &str,
    now: &BTreeSet<String>,
) -> (BTreeSet<String>, Vec<(FlagInputs, flag::FlagOutput)>) {
    let mut want = now.clone();
    let mut decisions = Vec::new();
    for (series, answer) in answers {
        let Ok(by_node) = answer else { continue };
        let inputs = inputs_for(spec, series, &format!("node/{name}"), by_node.get(name));
        let Ok(out) = flag::evaluate(&inputs) else { continue };
        let had = now.contains(&series.flag);
        if out.flagged {
            want.insert(series.flag.clone());
        } else if had && !flag_raised_elsewhere(answers, spec, series, name) {
            want.remove(&series.flag);
        }
        if out.flagged != had {
            decisions.push((inputs, out));
        }
    }
    (want, decisions)
}

/// Whether another node series with the same flag raises it on this node this pass (then
/// clearing it for this series must not remove it).
fn flag_raised_elsewhere(
    answers: &[(AnomalySeries, Answer)],
    spec: &AnomalySpec,
    series: &AnomalySeries,
    node: &str,
) -> bool {
    answers.iter().any(|(s, a)| {
        s.name != series.name
            && s.flag == series.flag
            && match a {
                // A failed series keeps what it raised.
                Err(_) => true,
                Ok(by_node) => flag::evaluate(&inputs_for(spec, s, &format!("node/{node}"), by_node.get(node)))
                    .is_ok_and(|o| o.flagged),
            }
    })
}

/// The decision's inputs for one subject's points (none: an empty window, never flagged).
pub fn inputs_for(
    spec: &AnomalySpec,
    series: &AnomalySeries,
    subject: &str,
    points: Option<&Vec<(f64, f64)>>,
) -> FlagInputs {
    let points = points.map(Vec::as_slice).unwrap_or_default();
    let points = &points[points.len().saturating_sub(flag::MAX_POINTS)..];
    FlagInputs {
        series: series.name.clone(),
        subject: subject.to_string(),
        flag: series.flag.clone(),
        threshold: spec.threshold,
        clear_points: u32::try_from(spec.clear_points.max(1)).unwrap_or(1),
        times: points.iter().map(|p| p.0).collect(),
        values: points.iter().map(|p| p.1).collect(),
        detector: series.detector.into(),
        // Recorded so a receipt replays with the rule it ran with (the shift detector has none).
        rarity_edge: (flag::Detector::from(series.detector) == flag::Detector::Nab)
            .then(|| crate::anomaly::detector::Params::default().edge),
    }
}

/// The root-cause snapshot of the live cluster as the status writer's `rootCause` sees it, read
/// from the API (`mom rca explain --cluster`): every node with its labels, flagged when labelled
/// `mom.hypersync.io/anomalous=true`; and, when the MomConfig `default` lists agent series,
/// every GeometricAgent with bound pods (on the nodes that exist), flagged when its condition
/// `Anomalous` is True, calling the peers (`spec.peers`) that have bound pods. Flagged members
/// score 1.
pub async fn rca_snapshot(client: &kube::Client) -> Result<crate::anomaly::rca::Snapshot, kube::Error> {
    use crate::anomaly::rca::{Snapshot, TopoAgent, TopoNode};
    use k8s_openapi::api::core::v1::Pod;
    let mut snapshot = Snapshot::default();
    for n in Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        let name = n.name_any();
        if n.labels().get(ANOMALOUS_LABEL).map(String::as_str) == Some("true") {
            snapshot.anomalous_nodes.insert(name.clone(), 1.0);
        }
        snapshot.nodes.push(TopoNode {
            name,
            labels: n.labels().clone(),
        });
    }
    snapshot.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let config = Api::<MomConfig>::all(client.clone()).get_opt(ACTIVE_NAME).await?;
    let watches_agents = config
        .and_then(|c| c.spec.anomaly)
        .is_some_and(|a| !a.agent_series.is_empty());
    if !watches_agents {
        return Ok(snapshot);
    }
    let known: BTreeSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut on: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels(crate::labels::AGENT_LABEL))
        .await?
        .items;
    for p in &pods {
        let (Some(agent), Some(node)) = (
            p.labels().get(crate::labels::AGENT_LABEL),
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        ) else {
            continue;
        };
        if known.contains(node) {
            let key = format!("{}/{agent}", p.namespace().unwrap_or_default());
            on.entry(key).or_default().insert(node.to_string());
        }
    }
    let agents = Api::<super::crd::GeometricAgent>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    // Agents that exist and have bound pods (a deleted agent's pods may still be terminating).
    let existing: BTreeSet<String> = agents
        .iter()
        .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
        .collect();
    let placed: BTreeSet<String> = on.keys().filter(|k| existing.contains(*k)).cloned().collect();
    for a in &agents {
        let namespace = a.namespace().unwrap_or_default();
        let key = format!("{namespace}/{}", a.name_any());
        let Some(nodes) = on.remove(&key) else { continue };
        // The peers it calls (with bound pods), as the status writer reads them.
        let upstream: BTreeSet<String> = a
            .spec
            .peers
            .iter()
            .map(|p| format!("{namespace}/{}", p.agent))
            .filter(|p| *p != key && placed.contains(p))
            .collect();
        let anomalous = a
            .status
            .as_ref()
            .and_then(|s| super::crd::conditions::find(&s.conditions, super::crd::conditions::ANOMALOUS))
            .is_some_and(|c| c.status == "True");
        if anomalous {
            snapshot.anomalous_agents.insert(key.clone(), 1.0);
        }
        snapshot.agents.push(TopoAgent {
            name: key,
            nodes: nodes.into_iter().collect(),
            upstream: upstream.into_iter().collect(),
        });
    }
    Ok(snapshot)
}

/// A node's flags as its annotation lists them (the label alone, without the annotation, is
/// someone else's and left alone).
pub fn node_flags(node: &Node) -> BTreeSet<String> {
    node.annotations()
        .get(FLAGS_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The quarantine decision's inputs for `node` with the flags `flags` it has after this pass,
/// without a cap (`limit` and `quarantinedOthers` are the pass's to set).
pub fn quarantine_inputs(node: &Node, mode: NodeQuarantine, flags: &BTreeSet<String>) -> NodeQuarantineInputs {
    let spec = node.spec.as_ref();
    NodeQuarantineInputs {
        node: node.name_any(),
        mode: mode.as_str().into(),
        flags: flags.clone(),
        tainted: spec
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key == QUARANTINE_TAINT)),
        cordoned: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        label: node.labels().get(QUARANTINE_LABEL).cloned(),
        // The caller sets the cap and the count of other nodes in quarantine.
        limit: None,
        quarantined_others: 0,
    }
}

/// The merge patch that gives `node` the flags `flags` (label `mom.hypersync.io/anomalous=true`
/// and the annotation listing them, or neither when `flags` is empty) and, when `quarantine` is
/// given, the quarantine state its decision says: the label `mom.hypersync.io/quarantined`,
/// the taint `mom.hypersync.io/quarantined:NoSchedule` (the node's other taints kept as they
/// are) and `spec.unschedulable`. A patch with a quarantine change carries the node's
/// `resourceVersion`, so a concurrent change (of the taint list, or someone's cordon) is a
/// conflict, not a lost taint or a cordon taken for MOM's.
pub fn node_patch(
    node: &Node,
    flags: &BTreeSet<String>,
    quarantine: Option<(&NodeQuarantineInputs, &NodeQuarantineOutput)>,
) -> serde_json::Value {
    let mut patch = if flags.is_empty() {
        serde_json::json!({"metadata": {
            "labels": {ANOMALOUS_LABEL: null},
            "annotations": {FLAGS_ANNOTATION: null}}})
    } else {
        let list: Vec<&str> = flags.iter().map(String::as_str).collect();
        serde_json::json!({"metadata": {
            "labels": {ANOMALOUS_LABEL: "true"},
            "annotations": {FLAGS_ANNOTATION: list.join(",")}}})
    };
    let Some((inputs, out)) = quarantine else {
        return patch;
    };
    patch["metadata"]["labels"][QUARANTINE_LABEL] = out.label.clone().map_or(serde_json::Value::Null, Into::into);
    if out.cordoned != inputs.cordoned {
        // `null` removes the field: an uncordoned node has no `unschedulable`, as kubectl leaves it.
        patch["spec"]["unschedulable"] = if out.cordoned {
            true.into()
        } else {
            serde_json::Value::Null
        };
    }
    if out.tainted != inputs.tainted {
        let mut taints: Vec<serde_json::Value> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.key != QUARANTINE_TAINT)
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect();
        if out.tainted {
            taints.push(serde_json::json!({"key": QUARANTINE_TAINT, "effect": "NoSchedule"}));
        }
        patch["spec"]["taints"] = if taints.is_empty() {
            serde_json::Value::Null
        } else {
            taints.into()
        };
    }
    if let Some(rv) = &node.metadata.resource_version {
        patch["metadata"]["resourceVersion"] = rv.clone().into();
    }
    patch
}

/// Patches `node` with [`node_patch`] once.
async fn patch_once(
    api: &Api<Node>,
    node: &Node,
    flags: &BTreeSet<String>,
    quarantine: Option<(&NodeQuarantineInputs, &NodeQuarantineOutput)>,
) -> Result<(), kube::Error> {
    let patch = node_patch(node, flags, quarantine);
    api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Patches `node` with [`node_patch`] (the only node write the operator makes; the chart's node
/// policy allows exactly these keys), with up to three retries when the node changed under a
/// patch with a quarantine change (a conflict: e.g. the node lifecycle controller adding
/// `node.kubernetes.io/unschedulable` after a cordon) while the quarantine inputs that were
/// decided on still hold; otherwise the conflict is returned and the next pass decides again.
pub async fn patch_node(
    api: &Api<Node>,
    node: &Node,
    flags: &BTreeSet<String>,
    quarantine: Option<(&NodeQuarantineInputs, &NodeQuarantineOutput)>,
) -> Result<(), kube::Error> {
    let mut node = node.clone();
    let mut attempt = 0;
    loop {
        match patch_once(api, &node, flags, quarantine).await {
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 3 => {
                attempt += 1;
                // The operator may list nodes but not get them.
                let fresh = api
                    .list(&ListParams::default().fields(&format!("metadata.name={}", node.name_any())))
                    .await?
                    .items
                    .into_iter()
                    .next();
                let (Some(fresh), Some((inputs, _))) = (fresh, quarantine) else {
                    return Err(kube::Error::Api(e));
                };
                let mode = if inputs.mode == "cordon" {
                    NodeQuarantine::Cordon
                } else {
                    NodeQuarantine::None
                };
                let mut now = quarantine_inputs(&fresh, mode, &inputs.flags);
                now.limit = inputs.limit;
                now.quarantined_others = inputs.quarantined_others;
                if now != *inputs {
                    return Err(kube::Error::Api(e));
                }
                node = fresh;
            }
            other => return other,
        }
    }
}

/// What the node's Events are about.
fn node_reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.name_any()),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

/// A Warning Event for a flagged node the cap keeps out of quarantine.
async fn hold_back(ctx: &Context, node: &Node, inputs: &NodeQuarantineInputs) {
    let name = node.name_any();
    let limit = inputs.limit.unwrap_or_default();
    tracing::warn!(node = %name, limit, "a flagged node is not quarantined: the cap is reached");
    let reference = node_reference(node);
    let flags: Vec<&str> = inputs.flags.iter().map(String::as_str).collect();
    ctx.publish(
        &reference,
        EventType::Warning,
        "Quarantine",
        "NodeQuarantineHeldBack",
        format!(
            "node {name} is flagged ({}) but not quarantined: {} other nodes are, and spec.anomaly.maxQuarantinedNodes allows {limit}",
            flags.join(", "),
            inputs.quarantined_others
        ),
    )
    .await;
}

/// An Event for a node entering or leaving quarantine.
async fn announce_quarantine(
    ctx: &Context,
    reference: &ObjectReference,
    name: &str,
    out: &NodeQuarantineOutput,
    flags: &BTreeSet<String>,
) {
    if out.quarantined {
        let how = if out.marked {
            "cordoned and tainted"
        } else {
            "tainted (its cordon was already set by someone else)"
        };
        let list = flags.iter().cloned().collect::<Vec<_>>().join(", ");
        tracing::warn!(node = name, "node quarantined");
        ctx.publish(
            reference,
            EventType::Warning,
            "Quarantine",
            "NodeQuarantined",
            format!("node {name} {how} {QUARANTINE_TAINT}:NoSchedule while flags are up: {list}"),
        )
        .await;
    } else {
        tracing::info!(node = name, "node quarantine lifted");
        ctx.publish(
            reference,
            EventType::Normal,
            "Quarantine",
            "NodeQuarantineLifted",
            format!("node {name}: taint {QUARANTINE_TAINT} removed and MOM's cordon (if any) lifted"),
        )
        .await;
    }
}

async fn record(
    ctx: &Context,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    decided: Decided<'_>,
) -> Result<(), AnomalyLoopError> {
    let (decision, inputs, withheld) = match decided {
        Decided::Window(inputs, out) => (
            flag::decision_record(inputs, out),
            serde_json::to_value(inputs).unwrap_or_default(),
            format!(
                "flag {} on {} stayed {}",
                inputs.flag,
                inputs.subject,
                if out.flagged { "clear" } else { "raised" }
            ),
        ),
        Decided::Quarantine(inputs, out) => (
            node_quarantine::decision_record(inputs, out),
            serde_json::to_value(inputs).unwrap_or_default(),
            format!(
                "node {} was not {}",
                inputs.node,
                if out.quarantined {
                    "quarantined"
                } else {
                    "released from quarantine"
                }
            ),
        ),
        Decided::Unnamed(inputs, out) => (
            flag::unnamed_record(inputs, out),
            serde_json::to_value(inputs).unwrap_or_default(),
            format!(
                "flag {} on {} stayed raised though no series names it",
                inputs.flag, inputs.subject
            ),
        ),
    };
    let intent = Intent {
        action: crate::receipts::Action::Configure,
        subject: crate::receipts::SubjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
        },
        decision,
        inputs,
        regarding: None,
        withheld,
    };
    ctx.record_before(intent).await.map_err(AnomalyLoopError::Receipt)?;
    Ok(())
}

async fn announce(
    ctx: &Context,
    reference: &ObjectReference,
    scope: &str,
    what: &str,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
) {
    for f in after.difference(before) {
        tracing::warn!(subject = what, flag = %f, "anomaly flag raised");
        ctx.metrics
            .anomalies
            .get_or_create(&super::metrics::AnomalyLabels {
                scope: scope.into(),
                flag: f.clone(),
            })
            .inc();
        ctx.publish(
            reference,
            EventType::Warning,
            "Flag",
            "AnomalyDetected",
            format!("{what}: anomaly flag {f} raised (see its anomaly.flag receipt)"),
        )
        .await;
    }
    for f in before.difference(after) {
        tracing::info!(subject = what, flag = %f, "anomaly flag cleared");
        ctx.publish(
            reference,
            EventType::Normal,
            "Flag",
            "AnomalyCleared",
            format!("{what}: anomaly flag {f} cleared (see its anomaly.flag receipt)"),
        )
        .await;
    }
}

fn unix_now() -> f64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AnomalySpec {
        serde_json::from_value(serde_json::json!({"nodeSeries": [], "threshold": 0.7, "clearPoints": 10})).unwrap()
    }

    fn series(name: &str, flag: &str) -> AnomalySeries {
        AnomalySeries {
            name: name.into(),
            query: "q".into(),
            flag: flag.into(),
            detector: Default::default(),
        }
    }

    /// 120 points 15 s apart around 10, with a spike on the last 3 when `spike`.
    fn points(spike: bool) -> Vec<(f64, f64)> {
        (0..120)
            .map(|i| {
                let noise = f64::from((i * 7919) % 100) / 100.0 - 0.5;
                let v = 10.0 + noise + if spike && i >= 117 { 60.0 } else { 0.0 };
                (1.7e9 + 15.0 * f64::from(i), v)
            })
            .collect()
    }

    #[test]
    fn prometheus_down_changes_no_flag_in_either_direction() {
        let spec = spec();
        let answers = vec![
            (series("lat", "slow"), Err("cannot reach Prometheus".to_string())),
            (series("err", "errors"), Err("cannot reach Prometheus".to_string())),
        ];
        let now = BTreeSet::from(["slow".to_string()]);
        let (want, decisions) = node_decision(&spec, &answers, "n1", &now);
        assert_eq!(want, now);
        assert!(decisions.is_empty());
        let (want, decisions) = node_decision(&spec, &answers, "n1", &BTreeSet::new());
        assert!(want.is_empty() && decisions.is_empty());
    }

    #[test]
    fn an_answering_series_raises_and_clears_its_flag_and_a_failed_one_keeps_its_own() {
        let spec = spec();
        let spiked = BTreeMap::from([("n1".to_string(), points(true))]);
        let calm = BTreeMap::from([("n1".to_string(), points(false))]);
        let failed: Answer = Err("bad query".into());
        // Raised by the spike; the failed series' flag stays as it was.
        let answers = vec![
            (series("lat", "slow"), Ok(spiked)),
            (series("err", "errors"), failed.clone()),
        ];
        let now = BTreeSet::from(["errors".to_string()]);
        let (want, decisions) = node_decision(&spec, &answers, "n1", &now);
        assert_eq!(want, BTreeSet::from(["errors".to_string(), "slow".to_string()]));
        assert_eq!(decisions.len(), 1);
        assert!(decisions[0].1.flagged);
        // Cleared when calm; a node the answer does not mention is calm too.
        let answers = vec![(series("lat", "slow"), Ok(calm)), (series("err", "errors"), failed)];
        let now = BTreeSet::from(["errors".to_string(), "slow".to_string()]);
        let (want, decisions) = node_decision(&spec, &answers, "n1", &now);
        assert_eq!(want, BTreeSet::from(["errors".to_string()]));
        assert_eq!(decisions.len(), 1);
        let (want, _) = node_decision(&spec, &answers, "n2", &BTreeSet::from(["slow".to_string()]));
        assert!(want.is_empty());
    }

    #[test]
    fn a_series_scored_for_level_shifts_ignores_the_spike_that_the_default_detector_flags() {
        let spec = spec();
        // One spiked point (the last).
        let mut one = points(false);
        if let Some(last) = one.last_mut() {
            last.1 += 60.0;
        }
        let spiked = BTreeMap::from([("n1".to_string(), one)]);
        let mut shift = series("lat", "slow");
        shift.detector = crate::operator::crd::momconfig::AnomalyDetector::Shift;
        let inputs = inputs_for(&spec, &shift, "node/n1", spiked.get("n1"));
        assert_eq!(inputs.detector, crate::anomaly::flag::Detector::Shift);
        let (want, _) = node_decision(&spec, &[(shift, Ok(spiked.clone()))], "n1", &BTreeSet::new());
        assert!(want.is_empty(), "{want:?}");
        // Control: the default detector flags the same window.
        let (want, _) = node_decision(&spec, &[(series("lat", "slow"), Ok(spiked))], "n1", &BTreeSet::new());
        assert_eq!(want, BTreeSet::from(["slow".to_string()]));
    }

    #[test]
    fn a_nodes_flags_come_from_its_annotation_and_a_bare_label_is_not_ours() {
        let mut node = Node::default();
        assert!(node_flags(&node).is_empty());
        node.metadata.labels = Some(BTreeMap::from([(ANOMALOUS_LABEL.to_string(), "true".to_string())]));
        assert!(node_flags(&node).is_empty());
        node.metadata.annotations = Some(BTreeMap::from([(FLAGS_ANNOTATION.to_string(), "b, a,,".to_string())]));
        assert_eq!(node_flags(&node), BTreeSet::from(["a".to_string(), "b".to_string()]));
    }
}
