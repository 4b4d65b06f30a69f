//! The MOM CustomResourceDefinitions, generated from Rust types (`mom crdgen`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Every CRD MOM serves, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    Vec::new()
}

/// Serialises a CRD as YAML, the way `crds/` holds it.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser_error::Error> {
    serde_saphyr::to_string(crd)
}
