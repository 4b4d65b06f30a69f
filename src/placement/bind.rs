//! The record of one extender bind (receipt decision kind `placement.bind`): what the extender
//! knew when it bound a pod to a node, and the one thing it derives from that — how far the
//! node lies from the pod's agent target — so `mom verify --replay` can recompute it.
//!
//! Inputs ([`BindInputs`]): the pod, the node the scheduler chose, the pod's agent, the agent's
//! target point and the node's position in the Poincaré ball, and the curvature κ. Output
//! ([`BindOutcome`]): the node and `d(target, position)` (hyperbolic distance, curvature −κ),
//! absent when the pod has no agent target or the node has no known position.
//!
//! The node itself is kube-scheduler's choice (it combines MOM's scores with its own plugins),
//! so the replay checks the recorded distance claim, not the choice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::receipts::replay::ReplayError;

/// Decision kind of bind receipts.
pub const BIND_KIND: &str = "placement.bind";

/// What the extender used when it bound a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindInputs {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// The pod's GeometricAgent, if it belongs to one.
    pub agent: Option<String>,
    /// The agent's target point (empty when the extender knows no policy for the pod).
    pub target: Vec<f64>,
    /// The node's position in the embedding (absent when the node is not in the node cache).
    pub node_position: Option<Vec<f64>>,
    /// Curvature κ of the embedding.
    pub kappa: f64,
}

/// What a bind decided, as recorded in the receipt's `decision.output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindOutcome {
    pub node: String,
    /// `d(target, node position)`; absent without a target or a position of the same dimension.
    pub distance_from_target: Option<f64>,
}

/// The outcome of a bind from its inputs (pure).
pub fn outcome(inputs: &BindInputs) -> BindOutcome {
    let distance = match &inputs.node_position {
        Some(pos) if !inputs.target.is_empty() && pos.len() == inputs.target.len() => {
            let d = crate::geometry::poincare::distance(&inputs.target, pos, inputs.kappa);
            d.is_finite().then_some(d)
        }
        _ => None,
    };
    BindOutcome {
        node: inputs.node.clone(),
        distance_from_target: distance,
    }
}

/// The receipt decision of a bind: `{kind, namespace, pod, node, agent, target, inputs, output}`
/// (the inputs inline, so the decision replays without an inputs store).
pub fn decision(inputs: &BindInputs) -> Value {
    serde_json::json!({
        "kind": BIND_KIND,
        "namespace": inputs.namespace,
        "pod": inputs.pod,
        "node": inputs.node,
        "agent": inputs.agent,
        "target": inputs.target,
        "inputs": inputs,
        "output": outcome(inputs),
    })
}

/// Replays a recorded bind: recomputes [`outcome`] from the recorded inputs.
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    let parsed: BindInputs = serde_json::from_value(inputs.clone()).map_err(|e| ReplayError::BadInputs {
        field: "inputs".into(),
        message: e.to_string(),
    })?;
    if !parsed.kappa.is_finite() || parsed.kappa <= 0.0 {
        return Err(ReplayError::BadInputs {
            field: "kappa".into(),
            message: format!("{} is not a positive curvature", parsed.kappa),
        });
    }
    serde_json::to_value(outcome(&parsed)).map_err(|e| ReplayError::BadInputs {
        field: "output".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs() -> BindInputs {
        BindInputs {
            namespace: "team-a".into(),
            pod: "web-x7k2p".into(),
            node: "region-0-zone-1-host-0".into(),
            agent: Some("web".into()),
            target: vec![0.1, -0.2],
            node_position: Some(vec![0.3, 0.25]),
            kappa: 1.0,
        }
    }

    #[test]
    fn a_recorded_bind_replays_to_the_same_distance_from_the_target() {
        let i = inputs();
        let d = decision(&i);
        assert_eq!(d["kind"], BIND_KIND);
        assert_eq!(
            (d["pod"].as_str(), d["node"].as_str()),
            (Some("web-x7k2p"), Some("region-0-zone-1-host-0"))
        );
        let replayed = replay(&d["inputs"]).unwrap();
        assert_eq!(replayed, d["output"]);
        let expected = crate::geometry::poincare::distance(&[0.1, -0.2], &[0.3, 0.25], 1.0);
        assert_eq!(replayed["distanceFromTarget"].as_f64(), Some(expected));
    }

    #[test]
    fn a_pod_without_a_target_or_an_unknown_node_has_no_distance() {
        let mut i = inputs();
        i.target.clear();
        assert_eq!(outcome(&i).distance_from_target, None);
        let mut i = inputs();
        i.node_position = None;
        assert_eq!(outcome(&i).distance_from_target, None);
        let mut i = inputs();
        i.node_position = Some(vec![0.1, 0.1, 0.1]);
        assert_eq!(outcome(&i).distance_from_target, None);
    }

    #[test]
    fn an_edited_distance_no_longer_replays() {
        let d = decision(&inputs());
        let mut recorded = d["output"].clone();
        recorded["distanceFromTarget"] = json!(0.01);
        assert_ne!(replay(&d["inputs"]).unwrap(), recorded);
    }

    #[test]
    fn inputs_with_a_missing_field_or_a_bad_curvature_are_refused_naming_it() {
        let mut v = serde_json::to_value(inputs()).unwrap();
        v.as_object_mut().unwrap().remove("node");
        let e = replay(&v).unwrap_err();
        assert!(e.to_string().contains("node"), "{e}");
        let mut v = serde_json::to_value(inputs()).unwrap();
        v["kappa"] = json!(-1.0);
        let e = replay(&v).unwrap_err();
        assert!(e.to_string().contains("kappa"), "{e}");
    }
}
