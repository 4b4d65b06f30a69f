//! The kube-scheduler extender webhook (`k8s.io/kube-scheduler/extender/v1`): `filter`,
//! `prioritize` and `bind` over HTTP, a thin shell over [`crate::placement`].
//!
//! Wire format: the Go types carry no JSON tags, so top-level fields are PascalCase
//! (`Pod`, `NodeNames`, `FailedNodes`, `Host`, `Score`…); the embedded Pod and NodeList are
//! ordinary Kubernetes JSON. MOM runs with `nodeCacheCapable: true` (only node names are sent)
//! but also accepts full `Nodes` lists. A malformed request gets 400 with the reason.
//!
//! Who may call: with a client CA (`--extender-client-ca`, on by default in the chart and in
//! `make demo`) the verbs answer 401 to any connection without a client certificate that CA
//! signed, before any state is read or written (see [`Access`]); `/healthz` stays open for
//! probes. `bind` also requires the pod's `spec.schedulerName` to be one of MOM's
//! (`--scheduler-name`), so even an authenticated caller cannot have MOM bind, with its own
//! rights, a pod meant for another scheduler. Connection and request limits: [`super::http`].
//!
//! The extender has no reserve/unreserve hooks, so it binds pods itself (`bindVerb`) and records
//! each binding as *assumed* in the view until the watch shows the pod bound; later decisions in
//! the same burst therefore see the capacity, isolation and spread those pods take. A
//! prioritize-time guess (the top-scored node, before the bind says where the pod went) counts
//! for scores and spread but not for room in the filter: kube-scheduler only sends nodes its own
//! cache says have room, and a wrong guess (kube-scheduler breaks score ties its own way) must
//! not close a node it left free.
//!
//! Binding is an action, so it is receipted (`bind`, decision kind `placement.bind`) and only the
//! Lease holder binds: a bind on another replica is refused with an error (the scheduler retries;
//! the chart's extender Service routes to the pod labelled `mom.hypersync.io/leader=true`). The
//! receipt is written before the Binding is created; at `full_audit` a receipt that cannot be
//! written means no binding (the error goes back to the scheduler, a `ReceiptWriteFailed`
//! Warning Event to the pod).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Resource;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};

use super::context::Context;
use super::http::Caller;
use super::receipts::Intent;
use super::view::pod_record;
use crate::placement;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderArgs {
    pub pod: Option<Pod>,
    #[serde(default)]
    pub nodes: Option<NodeList>,
    #[serde(default)]
    pub node_names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct NodeList {
    #[serde(default)]
    pub items: Vec<Node>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderFilterResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeList>,
    pub node_names: Option<Vec<String>>,
    pub failed_nodes: BTreeMap<String, String>,
    pub failed_and_unresolvable_nodes: BTreeMap<String, String>,
    pub error: String,
}

impl PartialEq for NodeList {
    fn eq(&self, other: &Self) -> bool {
        self.items.len() == other.items.len()
            && self
                .items
                .iter()
                .zip(&other.items)
                .all(|(a, b)| a.metadata.name == b.metadata.name)
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority {
    pub host: String,
    pub score: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderBindingArgs {
    pub pod_name: String,
    pub pod_namespace: String,
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    pub node: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderBindingResult {
    pub error: String,
}

/// The error a replica that does not hold the Lease answers a bind with.
pub const NOT_LEADER: &str = "this replica is not the leader (it does not hold the Lease), so it does not bind; \
     the scheduler retries (route the extender Service to the pod labelled mom.hypersync.io/leader=true)";

/// Who may call the extender and for which pods it binds.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// Refuse `filter`, `prioritize` and `bind` (401) to callers without a client certificate
    /// verified against the client CA (`--extender-client-ca`). Off only when no client CA is
    /// configured, which the operator warns about at start-up.
    pub require_client_certificate: bool,
    /// Bind a pod only when its `spec.schedulerName` is one of these (`--scheduler-name`).
    pub scheduler_names: Vec<String>,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            require_client_certificate: true,
            scheduler_names: vec![DEFAULT_SCHEDULER_NAME.to_string()],
        }
    }
}

/// The scheduler profile MOM's pods name in `spec.schedulerName` unless configured otherwise.
pub const DEFAULT_SCHEDULER_NAME: &str = "mom-scheduler";

/// What an unauthenticated caller of a verb gets (401), before any state is read or written.
pub const UNAUTHENTICATED: &str = "the extender's verbs need a client certificate signed by the extender's client CA \
     (the scheduler's extender tlsConfig certFile/keyFile); this connection presented none";

pub fn router(state: Arc<Context>, access: Arc<Access>) -> Router {
    let verbs = Router::new()
        .route("/filter", post(filter_handler))
        .route("/prioritize", post(prioritize_handler))
        .route("/bind", post(bind_handler))
        .route_layer(axum::middleware::from_fn_with_state(access.clone(), authenticate))
        .layer(axum::Extension(access));
    verbs.route("/healthz", axum::routing::get(healthz)).with_state(state)
}

/// Refuses callers the transport did not authenticate, when [`Access`] requires it.
async fn authenticate(
    State(access): State<Arc<Access>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or(Caller::Anonymous);
    if access.require_client_certificate && caller != Caller::VerifiedCertificate {
        tracing::debug!(path = %req.uri().path(), "extender: refused an unauthenticated caller");
        return (StatusCode::UNAUTHORIZED, UNAUTHENTICATED).into_response();
    }
    next.run(req).await
}

/// `ok`, or 503 naming every watch that ended and every loop that is stuck.
pub async fn healthz(State(state): State<Arc<Context>>) -> Response {
    health_response(&state.health)
}

/// The `/healthz` answer for a health registry (shared with the metrics server).
pub fn health_response(health: &super::health::Health) -> Response {
    match health.check(Instant::now()) {
        Ok(()) => "ok".into_response(),
        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n")).into_response(),
    }
}

/// Why a request could not be answered; every variant is the caller's fault (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ExtenderError {
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for ExtenderError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
}

fn bad_request(reason: String) -> ExtenderError {
    ExtenderError::BadRequest(reason)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ExtenderError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("malformed extender request: {e}")))
}

/// The node names of a request (NodeNames when node-cache capable, taken out of the request,
/// else Nodes.items).
fn requested_nodes(args: &mut ExtenderArgs) -> Result<Vec<String>, ExtenderError> {
    if let Some(names) = args.node_names.take() {
        return Ok(names);
    }
    if let Some(list) = &args.nodes {
        return list
            .items
            .iter()
            .map(|n| {
                n.metadata
                    .name
                    .clone()
                    .ok_or_else(|| bad_request("Nodes.items[].metadata.name is missing".into()))
            })
            .collect();
    }
    Err(bad_request("request has neither NodeNames nor Nodes".into()))
}

#[derive(Debug)]
struct Decision {
    pod: Pod,
    names: Vec<String>,
}

fn decode(body: &[u8]) -> Result<(Decision, ExtenderArgs), ExtenderError> {
    let mut args: ExtenderArgs = parse(body)?;
    let pod = args
        .pod
        .take()
        .ok_or_else(|| bad_request("request has no Pod".into()))?;
    super::view::pod_requests(&pod).map_err(|e| bad_request(format!("Pod resources: {e}")))?;
    let names = requested_nodes(&mut args)?;
    Ok((Decision { pod, names }, args))
}

/// What the filter and prioritize verbs decide from for one pod: its demand, its agent's policy
/// now, and the states of the named nodes (names not in MOM's node cache apart). `kubectl mom
/// why` builds the same from a view rebuilt from lists, so its explanation is the extender's.
#[derive(Debug, Clone)]
pub struct Candidates {
    pub demand: placement::PodDemand,
    pub policy: Option<placement::AgentPolicy>,
    pub states: Vec<placement::NodeState>,
    pub unknown: Vec<String>,
}

impl Candidates {
    pub fn of(view: &super::view::View, rec: &super::view::PodRecord, names: &[String]) -> Self {
        let policy = rec.agent.as_ref().and_then(|k| view.policy_for(k));
        let (states, unknown) = view.node_states(names);
        Self {
            demand: view.demand_of(rec),
            policy,
            states,
            unknown,
        }
    }

    /// The prioritize verb's scores of the known nodes, term by term.
    pub fn score(&self, s: &super::view::Settings) -> Vec<placement::NodeScore> {
        let refs: Vec<&placement::NodeState> = self.states.iter().collect();
        placement::score_breakdown(
            &self.demand,
            self.policy.as_ref(),
            &refs,
            &s.objectives,
            s.routing,
            s.kappa,
        )
    }
}

/// The filter verb over a view: the core's verdict, then nodes whose heartbeat stopped or that
/// are labelled unhealthy (unresolvable), nodes labelled anomalous while another node passes
/// (unresolvable), under a redundancy cap the nodes outside the best-scoring node's failure
/// domain (unresolvable, `placement::one_failure_domain`), and nodes not in MOM's node cache
/// (failed).
pub fn filter_in_view(
    view: &super::view::View,
    rec: &super::view::PodRecord,
    names: &[String],
) -> placement::FilterVerdict {
    let c = Candidates::of(view, rec, names);
    let refs: Vec<&placement::NodeState> = c.states.iter().collect();
    let mut verdict = placement::filter(&c.demand, c.policy.as_ref(), &refs, view.settings.kappa);
    // A node whose heartbeat stopped still looks Ready to the scheduler for up to its grace
    // period, and one labelled unhealthy is not tainted at all: a replacement sent there would
    // be stranded with the pod it replaces.
    for name in &verdict.passed {
        if let Some(reason) = view.failed_reason(name) {
            verdict.unresolvable.insert(name.clone(), reason);
        }
    }
    verdict.passed.retain(|n| !verdict.unresolvable.contains_key(n));
    // Nodes the anomaly loop flagged are avoided while another node passes: the descheduler
    // evacuates them, so a pod sent there would be moved again. When every passing node is
    // flagged they stay (a pod placed on one beats a Pending pod).
    let flagged: Vec<String> = verdict
        .passed
        .iter()
        .filter(|n| view.node_anomalous(n))
        .cloned()
        .collect();
    if !flagged.is_empty() && flagged.len() < verdict.passed.len() {
        for name in flagged {
            let reason = format!(
                "node {name} is labelled {}=true (the anomaly loop flagged it): avoided while other nodes fit",
                crate::labels::ANOMALOUS_LABEL
            );
            verdict.unresolvable.insert(name, reason);
        }
        verdict.passed.retain(|n| !verdict.unresolvable.contains_key(n));
    }
    // Under a redundancy cap: one failure domain, that of the best-scoring node that passes.
    if let Some(policy) = c
        .policy
        .as_ref()
        .filter(|p| p.max_per_domain.is_some() && verdict.passed.len() > 1)
    {
        let passing: std::collections::BTreeSet<&str> = verdict.passed.iter().map(String::as_str).collect();
        let candidates: Vec<&placement::NodeState> = refs
            .iter()
            .copied()
            .filter(|n| passing.contains(n.name.as_str()))
            .collect();
        let s = &view.settings;
        let scores =
            placement::score_breakdown(&c.demand, Some(policy), &candidates, &s.objectives, s.routing, s.kappa);
        placement::one_failure_domain(policy, &candidates, &scores, &mut verdict);
    }
    for name in c.unknown {
        verdict.failed.insert(name, NOT_IN_CACHE.into());
    }
    verdict
}

/// Why a node the scheduler named fails the filter when MOM's node watch has not seen it yet.
pub const NOT_IN_CACHE: &str = "node is not (yet) in MOM's node cache";

/// The extender error of a filter verdict, if it has one: when no node passes and some of the
/// named nodes are only not in MOM's node cache yet (a node that joined moments ago), the verdict
/// is not final. Answered as `Unschedulable`, kube-scheduler would park the pod until a later
/// cluster event (a minute and more); answered as an error, it retries the pod with backoff
/// (1 s, doubling to 10 s).
pub fn retry_error(verdict: &placement::FilterVerdict) -> Option<String> {
    if !verdict.passed.is_empty() {
        return None;
    }
    let unknown: Vec<&str> = verdict
        .failed
        .iter()
        .filter(|(_, reason)| reason.as_str() == NOT_IN_CACHE)
        .map(|(name, _)| name.as_str())
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let shown = unknown.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    let more = unknown.len().saturating_sub(5);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "no node MOM knows fits, and {} node(s) are not yet in MOM's node cache ({shown}{more}): retry",
        unknown.len()
    ))
}

/// Pure core of the filter verb over the current view.
pub fn filter(state: &Context, body: &[u8]) -> Result<ExtenderFilterResult, ExtenderError> {
    let (d, args) = decode(body)?;
    // A pod being filtered is being placed (again): whatever was assumed for it earlier (a
    // prioritize the scheduler did not follow, a bind that failed) must not hold room against
    // it, and stale tentative placements must not hold room against anyone.
    // Checked on the published view first (no lock): the writers' turn only when there is
    // something to drop.
    let uid = d.pod.metadata.uid.as_deref();
    let now = Instant::now();
    let mut view = state.view.read();
    if view.must_forget(uid, now) {
        let mut writer = state
            .view
            .write()
            .map_err(|_| bad_request("internal state unavailable".into()))?;
        if let Some(uid) = uid {
            writer.forget(uid);
        }
        writer.expire_tentative(now);
        drop(writer);
        view = state.view.read();
    }
    let rec = pod_record(&d.pod).ok_or_else(|| bad_request("Pod has already finished".into()))?;
    let verdict = filter_in_view(&view, &rec, &d.names);
    drop(view);
    // kube-scheduler does not call prioritize when a single node is feasible: it binds that node
    // at once, asynchronously, and may filter the agent's next pod before the bind arrives. The
    // pod is counted there now, as prioritize would have, so that next pod does not take the
    // last slot of the same failure domain (a bind the extender would then refuse).
    if let ([only], Some(uid)) = (verdict.passed.as_slice(), uid) {
        let mut view = state
            .view
            .write()
            .map_err(|_| bad_request("internal state unavailable".into()))?;
        view.assume(uid, rec, only, true);
    }
    let error = retry_error(&verdict).unwrap_or_default();
    let failed = verdict.failed;
    let nodes = args.nodes.map(|list| NodeList {
        items: list
            .items
            .into_iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_ref()
                    .is_some_and(|name| verdict.passed.contains(name))
            })
            .collect(),
    });
    Ok(ExtenderFilterResult {
        node_names: if nodes.is_some() { None } else { Some(verdict.passed) },
        nodes,
        failed_nodes: failed,
        failed_and_unresolvable_nodes: verdict.unresolvable,
        error,
    })
}

/// Pure core of the prioritize verb over the current view.
pub fn prioritize(state: &Context, body: &[u8]) -> Result<Vec<HostPriority>, ExtenderError> {
    let (d, _) = decode(body)?;
    let rec = pod_record(&d.pod).ok_or_else(|| bad_request("Pod has already finished".into()))?;
    // Scored on the published view (no lock, O(candidate nodes)); the writers' turn only for
    // the assumption below.
    let scores = {
        let view = state.view.read();
        let c = Candidates::of(&view, &rec, &d.names);
        let policy = c.policy.as_ref();
        let mut scores: Vec<HostPriority> = c
            .score(&view.settings)
            .into_iter()
            .map(|s| HostPriority {
                host: s.node,
                score: s.score,
            })
            .collect();
        scores.extend(c.unknown.into_iter().map(|host| HostPriority { host, score: 0 }));
        if tracing::enabled!(tracing::Level::DEBUG) {
            let best = scores
                .iter()
                .max_by_key(|h| h.score)
                .map(|h| (h.host.as_str(), h.score));
            tracing::debug!(pod = ?d.pod.metadata.name, agent = ?rec.agent, has_policy = policy.is_some(),
                target = ?policy.map(|p| &p.target), ?best, "prioritized");
        }
        scores
    };
    // The scheduler binds asynchronously and may schedule the next pod first: assume now that
    // it follows our top score (ties: first name), so the next decision sees this pod.
    let top = scores
        .iter()
        .filter(|h| h.score >= 0)
        .max_by(|a, b| a.score.cmp(&b.score).then_with(|| b.host.cmp(&a.host)));
    if let (Some(top), Some(uid)) = (top, d.pod.metadata.uid.as_deref()) {
        let host = top.host.clone();
        let mut view = state
            .view
            .write()
            .map_err(|_| bad_request("internal state unavailable".into()))?;
        view.assume(uid, rec, &host, true);
    }
    Ok(scores)
}

async fn filter_handler(State(state): State<Arc<Context>>, body: Bytes) -> Response {
    let start = Instant::now();
    let out = match filter(&state, &body) {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => err.into_response(),
    };
    state.metrics.observe_extender("filter", start.elapsed());
    out
}

async fn prioritize_handler(State(state): State<Arc<Context>>, body: Bytes) -> Response {
    let start = Instant::now();
    let out = match prioritize(&state, &body) {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => err.into_response(),
    };
    state.metrics.observe_extender("prioritize", start.elapsed());
    out
}

async fn bind_handler(
    State(state): State<Arc<Context>>,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let args: ExtenderBindingArgs = match parse(&body) {
        Ok(a) => a,
        Err(err) => return err.into_response(),
    };
    let result = bind(&state, &access, &args).await;
    if result.is_err()
        && let Ok(mut view) = state.view.write()
    {
        // Not bound: the room prioritize assumed for it is free again until it is retried.
        view.forget(&args.pod_uid);
    }
    state.metrics.observe_extender("bind", start.elapsed());
    axum::Json(ExtenderBindingResult {
        error: result.err().unwrap_or_default(),
    })
    .into_response()
}

/// Binds the pod through the API: leader only; the node is first re-checked against the view
/// and claimed in it ([`super::view::View::reserve`]), then the `bind` receipt is written, then
/// the Binding. A failure after the claim releases it (`bind_handler`).
async fn bind(state: &Context, access: &Access, args: &ExtenderBindingArgs) -> Result<(), String> {
    if !state.is_leader() {
        tracing::debug!(pod = %args.pod_name, namespace = %args.pod_namespace, node = %args.node, "bind refused: not the leader");
        return Err(NOT_LEADER.into());
    }
    let pods: Api<Pod> = Api::namespaced(state.client.clone(), &args.pod_namespace);
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": args.pod_name, "namespace": args.pod_namespace, "uid": args.pod_uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": args.node},
    });
    let pod = pods
        .get(&args.pod_name)
        .await
        .map_err(|e| format!("reading pod {}: {e}", args.pod_name))?;
    // A pod replaced under the same name is not the one the scheduler decided for: no receipt
    // for a binding the apiserver would refuse (the Binding carries the scheduler's uid).
    if pod.metadata.uid.as_deref() != Some(args.pod_uid.as_str()) {
        return Err(format!(
            "pod {}/{} has uid {:?}, not {} that the scheduler bound: it was replaced",
            args.pod_namespace, args.pod_name, pod.metadata.uid, args.pod_uid
        ));
    }
    // Only pods that asked for MOM's scheduler: a caller cannot have MOM bind (with MOM's
    // rights, past taints and the default scheduler's checks) a pod meant for another one.
    let scheduler = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    if !access.scheduler_names.iter().any(|n| n == scheduler) {
        return Err(format!(
            "pod {}/{} has spec.schedulerName {scheduler:?}, not one of MOM's ({}): MOM does not bind it",
            args.pod_namespace,
            args.pod_name,
            access.scheduler_names.join(", ")
        ));
    }
    // Claim the node in the view before anything is written: a bind that raced another for
    // the last room a rule leaves (a failure domain's slot, a node's cpu) is refused here,
    // without a receipt, and the scheduler places the pod again.
    {
        let rec = pod_record(&pod)
            .ok_or_else(|| format!("pod {}/{} has already finished", args.pod_namespace, args.pod_name))?;
        let mut view = state
            .view
            .write()
            .map_err(|_| "internal state unavailable".to_string())?;
        view.reserve(&args.pod_uid, rec, &args.node)?;
    }
    write_receipt(state, args, &pod).await?;
    pods.create_subresource::<serde_json::Value, serde_json::Value>(
        "binding",
        &args.pod_name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map_err(|e| format!("binding {}/{} to {}: {e}", args.pod_namespace, args.pod_name, args.node))?;
    state.metrics.decision("bind");
    tracing::debug!(pod = %args.pod_name, namespace = %args.pod_namespace, node = %args.node, "bound");
    Ok(())
}

/// What a bind decision used, read from the view: the pod's agent and its target, the node's
/// position, κ; and the recording level in force.
fn bind_inputs(
    state: &Context,
    args: &ExtenderBindingArgs,
    pod: &Pod,
) -> (placement::bind::BindInputs, super::view::Recording) {
    let agent = pod_record(pod).and_then(|r| r.agent);
    let view = state.view.read();
    let target = agent
        .as_ref()
        .and_then(|key| view.policy_for(key))
        .map(|p| p.target)
        .unwrap_or_default();
    let inputs = placement::bind::BindInputs {
        namespace: args.pod_namespace.clone(),
        pod: args.pod_name.clone(),
        node: args.node.clone(),
        agent: agent.map(|key| key.name),
        target,
        node_position: view.node_position(&args.node).cloned(),
        kappa: view.settings.kappa,
    };
    let recording = view.settings.recording;
    (inputs, recording)
}

/// Records the bind before it is made (write-ahead at `full_audit`). At `full_audit` a failed
/// write is returned (no binding) and reported as a `ReceiptWriteFailed` Warning on the pod;
/// below it the bind goes ahead, as for every other action.
async fn write_receipt(state: &Context, args: &ExtenderBindingArgs, pod: &Pod) -> Result<(), String> {
    use crate::receipts::{Action, SubjectRef};
    let (inputs, _) = bind_inputs(state, args, pod);
    let subject = SubjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: args.pod_namespace.clone(),
        name: args.pod_name.clone(),
        uid: Some(args.pod_uid.clone()),
    };
    let intent = Intent {
        action: Action::Bind,
        subject,
        decision: placement::bind::decision(&inputs),
        inputs: serde_json::to_value(&inputs).map_err(|e| format!("bind inputs: {e}"))?,
        regarding: Some(pod.object_ref(&())),
        withheld: format!(
            "{}/{} was not bound to {}",
            args.pod_namespace, args.pod_name, args.node
        ),
    };
    state
        .record_before(intent)
        .await
        .map(|_| ())
        .map_err(|withheld| withheld.message)
}

/// Serves the extender (over TLS with `tls`) under `limits` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<Context>,
    access: Access,
    limits: super::http::Limits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    super::http::serve(
        listener,
        tls,
        router(state, Arc::new(access)),
        limits,
        shutdown,
        "extender",
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    mod hostile_requests {
        //! Fuzzing of the request decoding (proptest): arbitrary bytes and structured-but-hostile
        //! JSON get a decision or an error, never a panic. The 4 MiB body cap of `http` bounds
        //! what reaches it.
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn request(cpu: &str, memory: &str, names: &[String], depth: usize) -> Vec<u8> {
            let mut nested = serde_json::json!(1);
            for _ in 0..depth {
                nested = serde_json::json!([nested]);
            }
            serde_json::to_vec(&serde_json::json!({
                "Pod": {"metadata": {"name": "p", "namespace": "n", "uid": "u"},
                        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}},
                "NodeNames": names,
                "Extra": nested,
            }))
            .unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic_the_decoders(body in vec(any::<u8>(), 0..2048)) {
                let _ = decode(&body);
                let _ = parse::<ExtenderBindingArgs>(&body);
            }

            #[test]
            fn hostile_quantities_names_and_nesting_get_a_decision_or_an_error(
                cpu in "\\PC{0,40}",
                memory in "[0-9]{0,40}[a-zA-Z]{0,3}",
                names in vec("\\PC{0,30}", 0..64),
                depth in 0usize..300,
            ) {
                match decode(&request(&cpu, &memory, &names, depth)) {
                    Ok((d, _)) => prop_assert_eq!(d.names, names),
                    Err(e) => prop_assert!(matches!(e, ExtenderError::BadRequest(_)), "{e:?}"),
                }
            }
        }

        #[test]
        fn deep_nesting_and_huge_quantities_are_refused_naming_the_problem() {
            // Positive control: a plain request decodes.
            assert!(decode(&request("100m", "64Mi", &["n1".into()], 0)).is_ok());
            // 1,000,000 nested arrays in an unknown field (2 MB, under the body cap): skipped
            // without recursion, no stack overflow; the request has no Pod and is refused.
            let mut deep = br#"{"Extra":"#.to_vec();
            deep.extend(std::iter::repeat_n(b'[', 1_000_000));
            deep.extend(std::iter::repeat_n(b']', 1_000_000));
            deep.push(b'}');
            let err = decode(&deep).unwrap_err();
            assert!(format!("{err:?}").contains("request has no Pod"), "{err:?}");
            // The same depth where a Pod is expected: serde_json's recursion limit refuses it.
            let mut deep_pod = br#"{"Pod":"#.to_vec();
            deep_pod.extend(std::iter::repeat_n(b'[', 1_000_000));
            deep_pod.extend(std::iter::repeat_n(b']', 1_000_000));
            deep_pod.push(b'}');
            assert!(matches!(decode(&deep_pod), Err(ExtenderError::BadRequest(_))));
            let err = decode(&request("99999999999999999999999999999999", "64Mi", &[], 0)).unwrap_err();
            assert!(format!("{err:?}").contains("Pod resources"), "{err:?}");
        }
    }

    #[test]
    fn nodes_flagged_anomalous_are_avoided_while_another_node_fits_and_kept_when_none_does() {
        use crate::operator::view::{PodRecord, View};
        let node = |name: &str, anomalous: bool| -> k8s_openapi::api::core::v1::Node {
            let mut labels = serde_json::json!({crate::labels::ZONE_LABEL: "za"});
            if anomalous {
                labels[crate::labels::ANOMALOUS_LABEL] = "true".into();
            }
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
            }))
            .unwrap()
        };
        let rec = PodRecord {
            namespace: "team".into(),
            name: "web-1".into(),
            node: None,
            demand: placement::PodDemand {
                requests: placement::Resources {
                    cpu_millis: 100,
                    memory_bytes: 0,
                },
                tenant: None,
                strict_isolation: false,
                standby: false,
            },
            agent: None,
            node_selector: Default::default(),
        };
        let mut view = View::default();
        view.apply_node(&node("calm", false));
        view.apply_node(&node("flagged", true));
        view.reembed();
        let names = vec!["calm".to_string(), "flagged".to_string()];
        let v = filter_in_view(&view, &rec, &names);
        assert_eq!(v.passed, vec!["calm".to_string()]);
        let reason = &v.unresolvable["flagged"];
        assert!(reason.contains("mom.hypersync.io/anomalous=true"), "{reason}");
        // Only flagged nodes fit: they are kept rather than leaving the pod Pending.
        let v = filter_in_view(&view, &rec, &["flagged".to_string()]);
        assert_eq!(v.passed, vec!["flagged".to_string()]);
        // Control: the flag cleared, both pass.
        view.apply_node(&node("flagged", false));
        assert_eq!(filter_in_view(&view, &rec, &names).passed.len(), 2);
    }

    #[tokio::test]
    async fn a_pod_with_a_single_passing_node_is_counted_there_from_its_filter_on() {
        let node = |name: &str| -> k8s_openapi::api::core::v1::Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {crate::labels::ZONE_LABEL: name}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
            }))
            .unwrap()
        };
        let (state, _tx) = state(true);
        {
            let mut view = state.view.write().unwrap();
            view.apply_node(&node("a"));
            view.apply_node(&node("b"));
            view.reembed();
        }
        let held = |state: &Context| -> Vec<(String, u32)> {
            let view = state.view.read();
            let (states, _) = view.node_states(&["a".to_string(), "b".to_string()]);
            states.into_iter().map(|s| (s.name, s.tentative_pods)).collect()
        };
        // Two nodes pass: prioritize will be called and decides; nothing is assumed yet.
        let result = filter(&state, &filter_request(&["a", "b"])).unwrap();
        assert_eq!(result.node_names.unwrap().len(), 2);
        assert_eq!(held(&state), vec![("a".into(), 0), ("b".into(), 0)]);
        // One node passes: the scheduler binds it without prioritize; the pod is counted there.
        let result = filter(&state, &filter_request(&["b"])).unwrap();
        assert_eq!(result.node_names.unwrap(), vec!["b".to_string()]);
        assert_eq!(held(&state), vec![("a".into(), 0), ("b".into(), 1)]);
        // Filtered again (the bind failed), with two nodes: the guess is dropped, not doubled.
        filter(&state, &filter_request(&["a", "b"])).unwrap();
        assert_eq!(held(&state), vec![("a".into(), 0), ("b".into(), 0)]);
    }

    #[tokio::test]
    async fn a_pod_whose_only_fitting_nodes_are_not_yet_cached_is_answered_retry_not_unschedulable() {
        let node = |name: &str, cpu: &str| -> k8s_openapi::api::core::v1::Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {crate::labels::ZONE_LABEL: "za"}},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi"}}
            }))
            .unwrap()
        };
        let (state, _tx) = state(true);
        {
            let mut view = state.view.write().unwrap();
            view.apply_node(&node("small", "50m"));
            view.apply_node(&node("big", "4"));
            view.reembed();
        }
        // Only a node too small is known; "new" joined a moment ago: retry, naming it.
        let result = filter(&state, &filter_request(&["small", "new"])).unwrap();
        assert!(result.error.contains("(new): retry"), "{}", result.error);
        assert_eq!(result.failed_nodes["new"], NOT_IN_CACHE);
        // Controls: a known node fits, so the unknown one is only failed; and when every node
        // is known and none fits, the answer is a plain verdict (unschedulable), not an error.
        let result = filter(&state, &filter_request(&["big", "new"])).unwrap();
        assert_eq!(
            (result.error.as_str(), result.node_names.unwrap()),
            ("", vec!["big".to_string()])
        );
        let result = filter(&state, &filter_request(&["small"])).unwrap();
        assert_eq!(result.error, "");
        assert!(result.node_names.unwrap().is_empty());
    }

    /// A filter request for pod `n/p` (uid `u`, 100m CPU) over the named nodes.
    fn filter_request(names: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "Pod": {"metadata": {"name": "p", "namespace": "n", "uid": "u"},
                    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}},
            "NodeNames": names,
        }))
        .unwrap()
    }

    fn state(leading: bool) -> (Context, tokio::sync::watch::Sender<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(leading);
        (Context::offline(rx), tx)
    }

    fn args() -> ExtenderBindingArgs {
        parse(br#"{"PodName":"web-1","PodNamespace":"team-a","PodUID":"u-1","Node":"n-0"}"#).unwrap()
    }

    #[tokio::test]
    async fn a_replica_that_does_not_lead_refuses_to_bind_before_touching_the_api() {
        let (state, _tx) = state(false);
        let err = bind(&state, &Access::default(), &args()).await.unwrap_err();
        assert_eq!(err, NOT_LEADER);
        assert!(err.contains("not the leader"));
    }

    #[tokio::test]
    async fn the_leader_goes_on_to_bind_and_a_follower_that_takes_the_lease_does_too() {
        let (state, tx) = state(false);
        assert_eq!(bind(&state, &Access::default(), &args()).await.unwrap_err(), NOT_LEADER);
        tx.send_replace(true);
        // Past the leadership check: with no apiserver behind the client it stops at the next
        // step, reading the pod.
        let err = bind(&state, &Access::default(), &args()).await.unwrap_err();
        assert!(err.starts_with("reading pod web-1"), "{err}");
    }

    #[tokio::test]
    async fn bind_inputs_of_a_pod_without_an_agent_have_no_target_and_an_unknown_node_no_position() {
        let (state, _tx) = state(true);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "team-a", "uid": "u-1"},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}
        }))
        .unwrap();
        let (inputs, recording) = bind_inputs(&state, &args(), &pod);
        assert_eq!(
            (inputs.namespace.as_str(), inputs.pod.as_str(), inputs.node.as_str()),
            ("team-a", "web-1", "n-0")
        );
        assert_eq!(inputs.agent, None);
        assert!(inputs.target.is_empty());
        assert_eq!(inputs.node_position, None);
        assert_eq!(
            recording.level,
            crate::operator::crd::momconfig::VerificationLevel::FullAudit
        );
        assert_eq!(placement::bind::outcome(&inputs).distance_from_target, None);
    }
}
