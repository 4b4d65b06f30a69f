//! The MOM CustomResourceDefinitions (group `mom.hypersync.io`, version `v1alpha1`), generated
//! from the Rust types in this module (`mom crdgen` writes them to `crds/`).
//!
//! - [`momconfig`]: `MomConfig`, cluster-scoped global settings;
//! - [`strategy`]: `OrchestrationStrategy`, scaling/placement/resilience policies;
//! - [`agent`]: `GeometricAgent`, a managed workload (with the scale subresource);
//! - [`receipt`]: `Receipt`, an immutable record of one action;
//! - [`conditions`]: merging status conditions the Kubernetes way;
//! - [`validate`]: the cross-object checks CEL cannot express.
//!
//! CEL rules (`x-kubernetes-validations`) are attached with `#[x_kube(validation = ...)]`
//! (kube's `KubeSchema` derive); every rule's message names the offending field.

/// Most replicas an agent may ask for (`spec.replicas`, `minReplicas`, `maxReplicas`): bounds what
/// the scaler's plan table, the auction's bid vectors and the agent controller allocate per agent.
pub const MAX_REPLICAS: i32 = 1000;
/// Longest forecast/MPC horizon (`spec.scaling.horizonSeconds`): one hour.
pub const MAX_HORIZON_SECONDS: i32 = 3600;
/// Longest cool-down between two scaling actions (`spec.scaling.cooldownSeconds`): one day.
pub const MAX_COOLDOWN_SECONDS: i32 = 86400;

pub mod agent;
pub mod conditions;
pub mod momconfig;
pub mod receipt;
pub mod strategy;
pub mod validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use agent::{GeometricAgent, GeometricAgentSpec, GeometricAgentStatus};
pub use momconfig::{MomConfig, MomConfigSpec, MomConfigStatus};
pub use receipt::{Receipt, ReceiptSpec};
pub use strategy::{OrchestrationStrategy, OrchestrationStrategySpec, OrchestrationStrategyStatus};

/// The API group of every MOM CRD.
pub const GROUP: &str = "mom.hypersync.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD MOM serves, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        MomConfig::crd(),
        OrchestrationStrategy::crd(),
        GeometricAgent::crd(),
        Receipt::crd(),
    ]
}

/// Serialises a CRD as YAML, the way `crds/` holds it.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser_error::Error> {
    serde_saphyr::to_string(crd)
}

/// Schema of a field kept as an open object (`type: object`, unknown fields preserved).
/// Used for embedded Kubernetes types whose full schema would bloat the CRD (the pod template).
pub(crate) fn preserved_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema of a field holding arbitrary JSON of any type, kept verbatim.
pub(crate) fn preserved_any(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests;
