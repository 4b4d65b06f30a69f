//! Demand from the resource metrics API (`metrics.k8s.io/v1beta1`, served by metrics-server)
//! for `cpu` and `memory` scaling targets.
//!
//! Input: the agent (its namespace, pod selector and pod template requests) and the metric.
//! Output: the agent's total usage (cores or bytes, summed over its pods' containers) and the
//! usage one replica may carry, `target × request per pod`. With `target` a utilisation fraction
//! this reproduces the HPA formula: `⌈Σ usage / (target · request)⌉ = ⌈n · avg_util / target⌉`.
//! Errors name the API path or the missing request.

use super::crd::agent::AgentTemplate;
use serde::Deserialize;

use super::crd::strategy::TargetMetric;

/// Largest resource-metrics answer read (one entry per pod of an agent: at 1,000 pods a few
/// hundred KB).
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Errors of the metrics-API source; each names what to fix.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MetricsApiError {
    #[error("the resource metrics API ({path}) is not available: {reason} (is metrics-server installed?)")]
    Unavailable { path: String, reason: String },
    #[error("{path} reported no pods of the agent yet")]
    NoPods { path: String },
    #[error("spec.template of the agent requests no {metric} in any container; a {metric} target needs a request")]
    NoRequest { metric: &'static str },
    #[error("{what} {value:?} is not a Kubernetes quantity")]
    BadQuantity { what: String, value: String },
}

#[derive(Deserialize)]
struct PodMetricsList {
    #[serde(default)]
    items: Vec<PodMetrics>,
}

#[derive(Deserialize)]
struct PodMetrics {
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    #[serde(default)]
    usage: std::collections::BTreeMap<String, String>,
}

/// A Kubernetes quantity as a number in base units (`250m` → 0.25, `128Mi` → 134217728); the
/// one parser of `placement::quantity`.
pub fn parse_quantity(s: &str) -> Option<f64> {
    crate::placement::quantity::parse(s).ok()
}

fn resource_name(metric: TargetMetric) -> &'static str {
    match metric {
        TargetMetric::Memory => "memory",
        _ => "cpu",
    }
}

/// The request of one pod of the template for `metric` (sum over containers).
pub fn request_per_pod(template: &AgentTemplate, metric: TargetMetric) -> Result<f64, MetricsApiError> {
    let name = resource_name(metric);
    let mut total = 0.0;
    for c in &template.summary().containers {
        if let Some(q) = c.requests.get(name) {
            total += parse_quantity(&q.0).ok_or_else(|| MetricsApiError::BadQuantity {
                what: format!("container {} requests.{name}", c.name),
                value: q.0.clone(),
            })?;
        }
    }
    if total > 0.0 {
        Ok(total)
    } else {
        Err(MetricsApiError::NoRequest { metric: name })
    }
}

/// Total usage of `metric` over the pods in a `PodMetricsList` answer.
pub fn total_usage(path: &str, body: &serde_json::Value, metric: TargetMetric) -> Result<f64, MetricsApiError> {
    let list: PodMetricsList = serde_json::from_value(body.clone()).map_err(|e| MetricsApiError::Unavailable {
        path: path.to_string(),
        reason: format!("unexpected answer: {e}"),
    })?;
    if list.items.is_empty() {
        return Err(MetricsApiError::NoPods { path: path.to_string() });
    }
    let name = resource_name(metric);
    let mut total = 0.0;
    for pod in &list.items {
        for c in &pod.containers {
            if let Some(v) = c.usage.get(name) {
                total += parse_quantity(v).ok_or_else(|| MetricsApiError::BadQuantity {
                    what: format!("{path} usage.{name}"),
                    value: v.clone(),
                })?;
            }
        }
    }
    Ok(total)
}

/// Asks the metrics API for the usage of the pods matching `selector` in `namespace`.
pub async fn pod_usage(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    metric: TargetMetric,
) -> Result<f64, MetricsApiError> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={}",
        super::prometheus::encode_component(selector)
    );
    let unavailable = |reason: String| MetricsApiError::Unavailable {
        path: path.clone(),
        reason,
    };
    let request = http::Request::get(&path)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| unavailable(e.to_string()))?;
    let response = client.send(request).await.map_err(|e| unavailable(e.to_string()))?;
    let status = response.status();
    let bytes = super::http::capped_body(response.into_body(), MAX_RESPONSE_BYTES)
        .await
        .map_err(unavailable)?;
    if !status.is_success() {
        let snippet: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        return Err(unavailable(format!("HTTP {status}: {snippet}")));
    }
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| unavailable(e.to_string()))?;
    total_usage(&path, &body, metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_with_decimal_and_binary_suffixes() {
        for (s, v) in [
            ("250m", 0.25),
            ("1500000n", 0.0015),
            ("2", 2.0),
            ("128Mi", 134_217_728.0),
            ("1Gi", 1_073_741_824.0),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("3M", 3e6),
        ] {
            let got = parse_quantity(s).unwrap();
            assert!((got - v).abs() < 1e-9 * v.max(1.0), "{s}: {got} != {v}");
        }
        assert!(parse_quantity("lots").is_none());
        assert!(parse_quantity("-1").is_none());
    }

    #[test]
    fn usage_is_summed_over_pods_and_containers() {
        let body = serde_json::json!({"items": [
            {"containers": [{"usage": {"cpu": "250m", "memory": "64Mi"}}, {"usage": {"cpu": "50m"}}]},
            {"containers": [{"usage": {"cpu": "700m", "memory": "64Mi"}}]}
        ]});
        assert!((total_usage("p", &body, TargetMetric::Cpu).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(total_usage("p", &body, TargetMetric::Memory).unwrap(), 134_217_728.0);
        let e = total_usage("/apis/x", &serde_json::json!({"items": []}), TargetMetric::Cpu).unwrap_err();
        assert!(e.to_string().contains("/apis/x"), "{e}");
        let bad = serde_json::json!({"items": [{"containers": [{"usage": {"cpu": "x"}}]}]});
        assert!(
            total_usage("p", &bad, TargetMetric::Cpu)
                .unwrap_err()
                .to_string()
                .contains("usage.cpu")
        );
    }

    #[test]
    fn the_request_per_pod_sums_containers_and_a_missing_one_is_an_error() {
        let template: AgentTemplate = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "200m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "300m", "memory": "1Gi"}}}
        ]}}))
        .unwrap();
        assert!((request_per_pod(&template, TargetMetric::Cpu).unwrap() - 0.5).abs() < 1e-12);
        // The same from the summary a cached agent keeps instead of the template.
        assert!((request_per_pod(&template.summarised(), TargetMetric::Cpu).unwrap() - 0.5).abs() < 1e-12);
        let none: AgentTemplate =
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "a"}]}})).unwrap();
        let e = request_per_pod(&none, TargetMetric::Memory).unwrap_err();
        assert!(e.to_string().contains("requests no memory"), "{e}");
    }
}
