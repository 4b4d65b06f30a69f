//! `GeometricAgent` (namespaced): a workload MOM places, scales and moves — its type, tenant,
//! strategy, replica count, pod template, the peers it talks to and its bid for scarce capacity.
//!
//! It has the `scale` subresource (`spec.replicas`, `status.replicas`, `status.selector`), so
//! `kubectl scale` and a HorizontalPodAutoscaler work on it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::strategy::WorkloadType;

/// Desired state of a workload managed by MOM.
// Several `printcolumn(...)` entries repeat `type_ = ...`; clippy mistakes them for duplicate attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mom.hypersync.io",
    version = "v1alpha1",
    kind = "GeometricAgent",
    plural = "geometricagents",
    singular = "geometricagent",
    shortname = "gagent",
    category = "mom",
    namespaced,
    status = "GeometricAgentStatus",
    derive = "PartialEq",
    selectable = ".spec.tenant",
    selectable = ".spec.workloadType",
    doc = "A workload MOM places, scales and moves in hyperbolic space.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready replicas"
    ),
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenant",
        description = "Owning tenant"
    ),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".status.strategy",
        description = "The OrchestrationStrategy in use"
    ),
    printcolumn(
        name = "Near",
        type_ = "string",
        json_path = ".status.position.nearest.zone",
        description = "Zone of the node nearest to the agent's target position"
    ),
    printcolumn(
        name = "Distance",
        type_ = "number",
        json_path = ".status.position.nearest.distance",
        description = "Hyperbolic distance from the target position to that node"
    ),
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.workloadType",
        description = "Workload type",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!has(self.batch) || self.workloadType == 'batch'").message("spec.batch needs spec.workloadType batch"))]
#[serde(rename_all = "camelCase")]
pub struct GeometricAgentSpec {
    /// The kind of work; selects strategies by their `triggers.workloadTypes`.
    pub workload_type: WorkloadType,
    /// The tenant that owns and pays for this agent. A tenant is set by the agent's namespace,
    /// never by the agent: the namespace's `mom.hypersync.io/tenant` label (which only cluster
    /// admins can set), else the namespace's name. When set, this field must name that tenant;
    /// an agent naming another is not acted on (condition Ready=False, reason TenantMismatch).
    /// When omitted, the namespace's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self != ''").message("spec.tenant must not be empty"))]
    pub tenant: Option<String>,
    /// `strict`: pods of this agent never share a node with pods of another tenant.
    #[serde(default)]
    pub isolation: Isolation,
    /// The OrchestrationStrategy (same namespace) to use; when absent the highest-priority strategy
    /// whose triggers match is selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_ref: Option<StrategyRef>,
    /// Desired replicas (set by MOM for predictive/reactive scaling, by you for manual); 0…1000.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("spec.replicas must be between 0 and 1000"))]
    pub replicas: i32,
    /// Pod template of the replicas, as in a Deployment: an edit is rolled out to the running
    /// pods (see `rollout`). Its schema is kept open
    /// (`x-kubernetes-preserve-unknown-fields`) rather than inlining the full PodTemplateSpec
    /// schema (hundreds of KB); the operator decodes it as a `PodTemplateSpec` and reports errors.
    #[schemars(schema_with = "super::preserved_object")]
    pub template: AgentTemplate,
    /// Agents (same namespace) this agent talks to, and how much; pulls its replicas towards theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["agent".into()]))]
    pub peers: Vec<Peer>,
    /// What this agent declares each replica is worth, used when capacity is auctioned. Without
    /// a bid every replica is worth 0: while its pool is contended the agent gets only the
    /// capacity the bids leave, one replica at a time in turn with the other agents bidding 0
    /// for a replica, with no payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<Bid>,
    /// How an edit of `template` replaces the running pods: a rolling update as a Deployment's.
    /// Pods carry the hash of the template they were made from (label
    /// `mom.hypersync.io/template-hash`); pods made before MOM labelled them count as current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// What MOM does when someone else changes one of this agent's pods (a label or annotation,
    /// a container image, a debug container: any write recorded in the pod's `managedFields`
    /// under another field manager than MOM's, except on the `status`, `binding` and `eviction`
    /// subresources). `report` (default): condition `Drifted` True naming the pods, the fields
    /// and who wrote them, and a Warning Event (reason `ChangedOutsideMom`) when that changes.
    /// `replace`: the same, and a changed pod is deleted (after an `agent.drift` receipt) so
    /// that it is re-created from the template: one at a time, only while every other replica
    /// is Ready and the agent is neither scaling nor rolling out.
    #[serde(default)]
    pub on_drift: DriftResponse,
    /// Work to finish by a deadline (`workloadType: batch` only). MOM's scaler then sets
    /// `spec.replicas` at every tick from the least-cost plan over the MomConfig's
    /// `spec.pricing` forecasts (when and in which node pool the remaining replica-hours run),
    /// and the pods it creates from then on require a node of the pools the plan runs now
    /// (`status.batch`). Unset: the replicas are yours or your strategy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<AgentBatch>,
}

/// A batch agent's work (`spec.batch`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentBatch {
    /// Replica-hours of work. MOM counts the hours the agent's Ready replicas run
    /// (`status.batch.completedReplicaHours`); it does not read the job's own progress.
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1000000.0").message("spec.batch.replicaHours must be in (0, 1000000]"))]
    pub replica_hours: f64,
    /// When the work must be done (RFC 3339, e.g. `2026-12-08T06:00:00Z`).
    #[schemars(extend("format" = "date-time"))]
    pub deadline: String,
    /// Most replicas at once (1…1000).
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("spec.batch.maxReplicas must be between 1 and 1000"))]
    pub max_replicas: i32,
    /// Most the work may cost, in the price unit of the MomConfig `spec.pricing`. Reported in
    /// `status.batch.withinBudget`, not enforced: the deadline comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("spec.batch.budget must be >= 0"))]
    pub budget: Option<f64>,
}

/// What MOM knows of a batch agent's work (`status.batch`), written by the scaler.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BatchStatus {
    /// Replica-hours done: the agent's Ready replicas × the time since the last count
    /// (`accountedAt`), counted at a scaler tick when the plan's now changes and at least every
    /// 30 s.
    pub completed_replica_hours: f64,
    /// What those replica-hours cost at their pools' forecast prices.
    pub cost: f64,
    /// When the last count was made (RFC 3339).
    pub accounted_at: String,
    /// Replicas per node pool the plan runs now; pods created now require a node of these
    /// pools (`default`: nodes without the `mom.hypersync.io/pool` label).
    #[serde(default)]
    pub pools: BTreeMap<String, i32>,
    /// When the plan expects the work done (RFC 3339); absent when it cannot be done by the
    /// deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_finish: Option<String>,
    /// What the plan expects the remaining work to cost.
    pub planned_cost: f64,
    /// What running the remaining work at full width from now would cost.
    pub at_once_cost: f64,
    /// `Waiting` (nothing runs now: cheaper hours come), `Running`, `Complete`, or `Late` (the
    /// work does not fit before the deadline: it runs at full width from now).
    pub phase: String,
    /// False when `cost` plus `plannedCost` is over `spec.batch.budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_budget: Option<bool>,
}

/// Rolling-update settings of an agent (defaults: 25 %, 25 %, 600 s).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Pods that may exist above `replicas` during a rollout: a count (`2`) or a percentage of
    /// `replicas` (`"25%"`, rounded up). Default `"25%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')").message("spec.rollout.maxSurge must be a count >= 0 or a percentage from 0% to 100%"))]
    pub max_surge: Option<IntOrString>,
    /// Pods that may be unready below `replicas` because of a rollout: a count or a percentage
    /// (rounded down). Default `"25%"`. When both are 0 the surge is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')").message("spec.rollout.maxUnavailable must be a count >= 0 or a percentage from 0% to 100%"))]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds a pod of the new template may stay unready before the rollout stops: nothing more
    /// is created or deleted, condition `Progressing` turns False with reason
    /// `ProgressDeadlineExceeded`, and a Warning Event names the pod. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.rollout.progressDeadlineSeconds must be at least 1"))]
    pub progress_deadline_seconds: Option<i32>,
}

/// An agent's pod template: a `PodTemplateSpec` on the wire (same fields, same JSON), with its
/// parts boxed so that a template reduced to its [`TemplateSummary`] costs a few hundred bytes
/// instead of the ~1.8 KB a `PodTemplateSpec` holds inline. The shared agent cache keeps only
/// the summary (see `operator::lenient::compact`); a pod is built from a freshly read agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AgentTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<ObjectMeta>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<PodSpec>>,
    /// Set only on a cached agent whose `metadata` and `spec` were set aside; never serialised.
    #[serde(skip)]
    #[schemars(skip)]
    pub summary: Option<Box<TemplateSummary>>,
}

/// What the loops read from a template besides pod creation: each container's resource
/// requests (the auction's and the extender's demand, the scaler's per-pod request) and the
/// node selector (the agent's pool).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateSummary {
    /// The template's hash (see [`template_hash`]).
    pub hash: String,
    pub containers: Vec<ContainerRequests>,
    pub init_containers: Vec<ContainerRequests>,
    pub node_selector: BTreeMap<String, String>,
}

/// A container's name and `resources.requests`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerRequests {
    pub name: String,
    pub requests: BTreeMap<String, Quantity>,
}

/// The first 10 hex digits of SHA-256 over the template's JSON (`metadata` and `spec`; maps
/// serialise in key order, so equal templates give equal hashes): the value of a pod's
/// `mom.hypersync.io/template-hash` label.
pub fn template_hash(template: &AgentTemplate) -> String {
    use sha2::Digest;
    let bare = AgentTemplate {
        metadata: template.metadata.clone(),
        spec: template.spec.clone(),
        summary: None,
    };
    let json = serde_json::to_vec(&bare).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..5])
}

impl TemplateSummary {
    /// The summary of a template.
    pub fn of(template: &AgentTemplate) -> Self {
        let mut summary = Self::of_spec(template.spec.as_deref());
        summary.hash = template_hash(template);
        summary
    }

    /// The requests and node selector of a pod spec (empty for none); no hash.
    fn of_spec(spec: Option<&PodSpec>) -> Self {
        let requests = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<ContainerRequests> {
            cs.iter()
                .map(|c| ContainerRequests {
                    name: c.name.clone(),
                    requests: c
                        .resources
                        .as_ref()
                        .and_then(|r| r.requests.clone())
                        .unwrap_or_default(),
                })
                .collect()
        };
        match spec {
            None => Self::default(),
            Some(s) => Self {
                hash: String::new(),
                containers: requests(&s.containers),
                init_containers: requests(s.init_containers.as_deref().unwrap_or_default()),
                node_selector: s.node_selector.clone().unwrap_or_default(),
            },
        }
    }
}

impl AgentTemplate {
    /// The summary: the kept one, or computed from `spec`.
    pub fn summary(&self) -> Cow<'_, TemplateSummary> {
        match &self.summary {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(TemplateSummary::of(self)),
        }
    }

    /// The same template reduced to its summary: no `metadata`, no `spec`.
    pub fn summarised(&self) -> Self {
        Self {
            metadata: None,
            spec: None,
            summary: Some(Box::new(self.summary().into_owned())),
        }
    }

    /// Whether `metadata` and `spec` were set aside (the pod cannot be built from this copy).
    pub fn is_summary_only(&self) -> bool {
        self.summary.is_some() && self.spec.is_none()
    }
}

/// Field manager of the scaler's writes of `spec.replicas` (its cooldown reads the time of its
/// own managedFields entry; the agent cache keeps only that entry).
pub const SCALER_MANAGER: &str = "mom-scaler";

fn default_replicas() -> i32 {
    1
}

/// What MOM does about pods someone else changed (`spec.onDrift`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DriftResponse {
    /// Condition `Drifted` and a Warning Event; the pod is left as it is.
    #[default]
    Report,
    /// Also delete the changed pod, one at a time, so it is re-created from the template.
    Replace,
}

/// Tenant isolation of an agent's pods.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Pods may share nodes with any tenant.
    #[default]
    None,
    /// Pods never share a node with pods of another tenant.
    Strict,
}

/// A reference to an OrchestrationStrategy in the agent's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StrategyRef {
    /// Name of the OrchestrationStrategy.
    pub name: String,
}

/// Another agent this one talks to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Name of the peer GeometricAgent (same namespace).
    pub agent: String,
    /// Relative traffic volume to that peer; > 0. Weights are normalised over all peers.
    #[serde(default = "default_peer_weight")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.peers.weight must be > 0"))]
    pub weight: f64,
}

fn default_peer_weight() -> f64 {
    1.0
}

/// The agent's declared valuation of replicas (VCG bid).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// Value of one replica per hour; ≥ 0. When `marginalValues` is empty every replica up to the
    /// agent's `spec.replicas` (what it asks the auction for) is worth this much.
    #[x_kube(validation = Rule::new("self >= 0.0").message("spec.bid.valuePerReplica must be >= 0"))]
    pub value_per_replica: f64,
    /// Value per hour of the 1st, 2nd, … replica, each ≥ 0; must not increase (diminishing marginal
    /// value). Replicas beyond the list are worth 0 (they get only capacity the bids leave).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(
        validation = Rule::new("self.all(v, v >= 0.0)").message("spec.bid.marginalValues must all be >= 0"),
        validation = Rule::new("self.map(v, -v).isSorted()").message("spec.bid.marginalValues must not increase (each value <= the one before)")
    )]
    pub marginal_values: Vec<f64>,
}

impl Bid {
    /// The marginal values the auction uses: `marginalValues` as given, or `valuePerReplica`
    /// repeated `max_replicas` times (the auction passes `spec.replicas`) when the list is empty.
    pub fn marginal_values_up_to(&self, max_replicas: usize) -> Vec<f64> {
        crate::auction::quota::declared_values(&self.marginal_values, self.value_per_replica, max_replicas)
    }
}

/// Observed state of an agent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeometricAgentStatus {
    /// Pods of this agent that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Pods of this agent that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the agent's pods, in string form (for the scale subresource and HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The OrchestrationStrategy in use (from `strategyRef` or selected by triggers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The agent's target point in the ball, with one coordinate per dimension nodes are
    /// embedded in (MomConfig `spec.geometry.dimension`); recomputed when that changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// What the last auction granted this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
    /// `Ready` and `Degraded`, following the Kubernetes condition conventions; problems such as a
    /// missing strategy or peer are reported here with a reason naming the object. `Progressing`
    /// follows a rollout. `Anomalous` is `True` (`AnomalyFlagged`, naming each flag and the
    /// MomConfig `spec.anomaly.agentSeries` that raised it) while the leader's anomaly loop has
    /// a flag up on the agent, `False` (`NoAnomaly`) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The newest receipt MOM wrote about this agent's pods and replica count: a scale decision
    /// (agent controller or scaler) or a rollout step. Binds, evictions and auctions are recorded
    /// under their own subjects (the pod, the pool). Written after the receipt is stored; absent
    /// at verification level `none` or for a receipt not sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_receipt: Option<ReceiptRef>,
    /// Pods made from the current `template` (see `spec.rollout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Replicas run beyond `spec.replicas` for the redundancy rule of the agent's strategy
    /// (`spec.resilience.redundancy`), its failover standbys, and the failover planner's
    /// standby (one while a failure domain the agent has replicas in is expected to fail);
    /// included in `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spare_replicas: Option<i32>,
    /// While `Anomalous` is `True`: the failure domain that best explains this agent's flag, from
    /// the same diagnosis as MomConfig `status.rootCause` (the best-ranked domain that contains
    /// this agent: a node or rack, zone or region it runs in, `upstream` itself alone, or a peer
    /// it calls, directly or through other peers, named `upstream` NAMESPACE/NAME). Absent
    /// otherwise. `confidence` is that domain's posterior, which may be below `noneConfidence`
    /// when the evidence is weak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<super::momconfig::RootCauseStatus>,
    /// A batch agent's progress and plan (see `spec.batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchStatus>,
}

/// A point in the Poincaré ball.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// Coordinates, one per dimension of the node embedding (Euclidean norm < 1/√κ).
    pub coordinates: Vec<f64>,
    /// The node nearest to these coordinates, its zone and region, and the hyperbolic distance
    /// to it: the position in readable form. Absent while no node is embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nearest: Option<NearestNode>,
}

/// The node nearest to a position (see `Position.nearest`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NearestNode {
    /// Name of the nearest node.
    pub node: String,
    /// Its `topology.kubernetes.io/region` label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Its `topology.kubernetes.io/zone` label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Hyperbolic distance from the position to the node, rounded to 2 decimals.
    pub distance: f64,
}

impl From<crate::placement::nearest::NearestPlace> for NearestNode {
    fn from(p: crate::placement::nearest::NearestPlace) -> Self {
        Self {
            node: p.node,
            region: p.region,
            zone: p.zone,
            distance: (p.distance * 100.0).round() / 100.0,
        }
    }
}

/// The outcome of the last auction for this agent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// Replicas granted (an upper bound on `spec.replicas` while capacity is scarce).
    pub quota: i32,
    /// Clarke-pivot payment per hour for the granted replicas.
    pub payment: f64,
}

/// A pointer to a Receipt.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRef {
    /// Name of the Receipt object.
    pub name: String,
    /// Its sequence number in the global chain.
    pub sequence: i64,
    /// Its hash (hex).
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bid_without_marginal_values_values_every_replica_up_to_the_maximum_equally() {
        let bid = Bid {
            value_per_replica: 2.5,
            marginal_values: Vec::new(),
        };
        assert_eq!(bid.marginal_values_up_to(3), vec![2.5, 2.5, 2.5]);
        assert!(bid.marginal_values_up_to(0).is_empty());
    }

    #[test]
    fn a_bid_with_marginal_values_uses_them_as_given() {
        let bid = Bid {
            value_per_replica: 9.0,
            marginal_values: vec![4.0, 3.0],
        };
        assert_eq!(bid.marginal_values_up_to(10), vec![4.0, 3.0]);
    }
}
