//! Every label and annotation key MOM reads or writes, in one place.
//!
//! Topology keys are the well-known Kubernetes ones plus MOM's rack label; the others live
//! under `mom.hypersync.io/`. Pure constants, shared by the core, the operator and the CLI.

/// Region of a node (well-known Kubernetes label).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Zone of a node (well-known Kubernetes label).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Rack of a node (MOM's own topology level below the zone).
pub const RACK_LABEL: &str = "topology.mom.hypersync.io/rack";
/// Host name of a node (well-known Kubernetes label).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Failover role of an agent's pod: `active` (serves; Services select it) or `standby`
/// (strategies with `spec.resilience.failover` `active_passive` or `n_plus_1`).
pub const ROLE_LABEL: &str = "mom.hypersync.io/role";

/// Pod label naming the GeometricAgent that owns the pod.
pub const AGENT_LABEL: &str = "mom.hypersync.io/agent";
/// Pod label naming the pod's tenant.
pub const TENANT_LABEL: &str = "mom.hypersync.io/tenant";
/// Pod label with the tenant isolation mode (`strict` keeps other tenants off the node).
pub const ISOLATION_LABEL: &str = "mom.hypersync.io/isolation";
/// Pod label: the hash of the agent template the pod was made from (see `spec.rollout`).
pub const TEMPLATE_HASH_LABEL: &str = "mom.hypersync.io/template-hash";

/// Annotation with value `"false"` that opts a pod out of descheduling.
pub const OPT_OUT_ANNOTATION: &str = "mom.hypersync.io/deschedule";
/// Node label (value `"true"`) that flags a node unhealthy: its pods are evacuated.
pub const UNHEALTHY_LABEL: &str = "mom.hypersync.io/unhealthy";
/// Node label (value `"true"`) set by anomaly detection: its pods are evacuated.
pub const ANOMALOUS_LABEL: &str = "mom.hypersync.io/anomalous";

/// Label the leader puts on its own pod (value `"true"`), so a Service can route to the leader
/// only (the chart's extender Service selects it: only the leader binds).
pub const LEADER_LABEL: &str = "mom.hypersync.io/leader";

/// Node label (and pod-template nodeSelector key) naming a node pool.
pub const POOL_LABEL: &str = "mom.hypersync.io/pool";
/// Node label with the node's cost per hour (used for the Shapley attribution); 1 when absent.
pub const HOURLY_COST_LABEL: &str = "mom.hypersync.io/hourly-cost";
/// Node label (value `"true"`) marking a spot / preemptible node.
pub const SPOT_LABEL: &str = "mom.hypersync.io/spot";
/// Node taints announcing that the node is about to go away (any effect): a spot interruption
/// or a scale-down. MOM replaces the replicas on such a node first and deletes them once the
/// replacements are Ready. Karpenter v1 (`karpenter.sh/disrupted`) and before v1
/// (`karpenter.sh/disruption`); AWS Node Termination Handler (spot interruption notice,
/// scheduled maintenance, ASG lifecycle termination — not its advisory rebalance
/// recommendation); GKE's spot/preemptible shutdown; the Cluster Autoscaler's scale-down.
pub const TERMINATION_TAINTS: &[&str] = &[
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
    "aws-node-termination-handler/spot-itn",
    "aws-node-termination-handler/scheduled-maintenance",
    "aws-node-termination-handler/asg-lifecycle-termination",
    "cloud.google.com/impending-node-termination",
    "ToBeDeletedByClusterAutoscaler",
];
/// Node label with the node's energy class.
pub const ENERGY_CLASS_LABEL: &str = "mom.hypersync.io/energy-class";

/// Receipt label with the receipt's action (`spawn`, `scale`, `configure`, …).
pub const RECEIPT_ACTION_LABEL: &str = "mom.hypersync.io/action";
/// Receipt label with the receipt's subject.
pub const RECEIPT_SUBJECT_LABEL: &str = "mom.hypersync.io/subject";
