//! The record of one change of an agent's replica count by the agent controller (receipt
//! decision kind `placement.scale`): pods spawned toward, or terminated down to, the wanted
//! count, and the target point the new replicas are steered to.
//!
//! Inputs: the replica count before (`from`, the agent's active pods) and after (`to`), the
//! agent's target point, and what the count came from ([`scale_inputs`]: `spec.replicas`, the
//! active pods' names, the auction quota when one caps the agent). Output: the decision
//! ([`scale_record`]) and the receipt action ([`scale_action`]). Not replayed: the inputs are only
//! hashed into the receipt's `inputsDigest`.

use serde_json::Value;

use crate::receipts::Action;

/// Decision kind of an agent's replica change.
pub const SCALE_KIND: &str = "placement.scale";

/// `{kind: placement.scale, from, to, target}`.
pub fn scale_record(from: usize, to: usize, target: &[f64]) -> Value {
    serde_json::json!({"kind": SCALE_KIND, "from": from, "to": to, "target": target})
}

/// `{specReplicas, pods, quota?}`, the pods sorted by name; `quota` only when an auction
/// allocation caps the agent.
pub fn scale_inputs(spec_replicas: i32, pods: &[String], quota: Option<i32>) -> Value {
    let mut pods = pods.to_vec();
    pods.sort();
    let mut inputs = serde_json::json!({"specReplicas": spec_replicas, "pods": pods});
    if let Some(quota) = quota {
        inputs["quota"] = quota.into();
    }
    inputs
}

/// `Spawn` when the count grows (`to > from`), else `Terminate`.
pub fn scale_action(from: usize, to: usize) -> Action {
    if to > from { Action::Spawn } else { Action::Terminate }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_record_and_its_inputs_are_byte_identical_to_the_agent_controllers_hand_built_ones() {
        let target = vec![0.25, -0.5];
        let pods = vec!["web-b".to_string(), "web-a".to_string(), "web-c".to_string()];
        for (from, to, spec, quota) in [(3usize, 5usize, 5i32, None), (3, 2, 4, Some(2i32)), (0, 0, 0, None)] {
            // What src/operator/agents.rs `write_receipt` wrote before these functions existed.
            let decision = serde_json::json!({"kind": "placement.scale", "from": from, "to": to, "target": target});
            let mut sorted = pods.clone();
            sorted.sort();
            let mut inputs = serde_json::json!({"specReplicas": spec, "pods": sorted});
            if let Some(q) = quota {
                inputs["quota"] = q.into();
            }
            assert_eq!(
                serde_json::to_string(&scale_record(from, to, &target)).unwrap(),
                serde_json::to_string(&decision).unwrap()
            );
            assert_eq!(
                serde_json::to_string(&scale_inputs(spec, &pods, quota)).unwrap(),
                serde_json::to_string(&inputs).unwrap()
            );
        }
    }

    #[test]
    fn growing_spawns_and_shrinking_or_staying_terminates() {
        assert_eq!(scale_action(2, 3), Action::Spawn);
        assert_eq!(scale_action(3, 2), Action::Terminate);
        assert_eq!(scale_action(3, 3), Action::Terminate);
    }
}
