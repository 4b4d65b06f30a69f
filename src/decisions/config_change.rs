//! The record of a change of the cluster's MomConfig (receipt decision kind `momconfig.change`,
//! action `configure`), or of a GeometricAgent's spec (`agent.change`): which object and
//! generation took effect, after which recorded generation, and its whole spec.
//!
//! Input: plain data — the MomConfig's uid and generation, the generation of the newest
//! recorded change of the same object (if any), and its spec as JSON (the core does not see the
//! CRD types). Output: the decision ([`change_record`]); its inputs, hashed into the receipt's
//! `inputsDigest`, are the spec itself. Not replayed: nothing is computed from the spec.

use serde_json::Value;

/// Decision kind of a MomConfig change.
pub const CONFIG_CHANGE_KIND: &str = "momconfig.change";

/// `{kind: momconfig.change, uid, generation, previousGeneration, spec}`; `previousGeneration`
/// is `null` when no change of this object (same uid) was recorded before.
pub fn change_record(uid: &str, generation: i64, previous_generation: Option<i64>, spec: &Value) -> Value {
    serde_json::json!({
        "kind": CONFIG_CHANGE_KIND,
        "uid": uid,
        "generation": generation,
        "previousGeneration": previous_generation,
        "spec": spec,
    })
}

/// Decision kind of a GeometricAgent spec change.
pub const AGENT_CHANGE_KIND: &str = "agent.change";

/// `{kind: agent.change, uid, generation, previousGeneration, spec}`: a GeometricAgent's spec
/// at `generation`, recorded when the agent controller first acts on it; `previousGeneration`
/// is the generation it acted on before (`status.observedGeneration`), `null` for a new agent.
/// A change of `replicas` alone is not one (scaling has its own receipts). `mom rollback` puts
/// an agent back to such a spec ([`super::rollback`]).
pub fn agent_change_record(uid: &str, generation: i64, previous_generation: Option<i64>, spec: &Value) -> Value {
    serde_json::json!({
        "kind": AGENT_CHANGE_KIND,
        "uid": uid,
        "generation": generation,
        "previousGeneration": previous_generation,
        "spec": spec,
    })
}

/// What an `agent.change` is about: the spec without `replicas` (which the scaler, the HPA or
/// `kubectl scale` change, each with its own receipt).
pub fn agent_change_subject(spec: &Value) -> Value {
    let mut s = spec.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("replicas");
    }
    s
}

/// Decision kind of an OrchestrationStrategy spec change.
pub const STRATEGY_CHANGE_KIND: &str = "strategy.change";

/// `{kind: strategy.change, uid, generation, previousGeneration, spec}`: an
/// OrchestrationStrategy's whole spec at `generation`, recorded when an agent it governs is
/// first reconciled under that generation; `previousGeneration` is the generation recorded
/// before (`null` for the first). Automatic rollback ([`super::auto_rollback`]) and `mom rollback
/// strategy/NAME` put a strategy back to such a spec.
pub fn strategy_change_record(uid: &str, generation: i64, previous_generation: Option<i64>, spec: &Value) -> Value {
    serde_json::json!({
        "kind": STRATEGY_CHANGE_KIND,
        "uid": uid,
        "generation": generation,
        "previousGeneration": previous_generation,
        "spec": spec,
    })
}

/// What a recorded spec change is about: an agent's spec without `replicas`
/// ([`agent_change_subject`]), a strategy's whole spec.
pub fn change_subject(kind: &str, spec: &Value) -> Value {
    if kind == AGENT_CHANGE_KIND {
        agent_change_subject(spec)
    } else {
        spec.clone()
    }
}

/// A recorded agent or strategy spec, as compared with the next generation: the object's uid,
/// the generation, and the digest of its [`change_subject`] (`None` for any other decision).
/// Uids are unique across kinds, so one map keyed by uid holds both.
pub fn recorded_spec(decision: &Value) -> Option<(String, i64, String)> {
    let kind = decision["kind"].as_str()?;
    if kind != AGENT_CHANGE_KIND && kind != STRATEGY_CHANGE_KIND {
        return None;
    }
    let uid = decision["uid"].as_str()?;
    let generation = decision["generation"].as_i64()?;
    let digest = crate::receipts::inputs_digest(&change_subject(kind, decision.get("spec")?)).ok()?;
    Some((uid.to_string(), generation, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_agent_spec_ignores_replicas_and_other_decisions() {
        let spec = |replicas: i64, image: &str| serde_json::json!({"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}});
        let (uid, generation, a) = recorded_spec(&agent_change_record("u", 3, Some(2), &spec(1, "v1"))).unwrap();
        assert_eq!((uid.as_str(), generation), ("u", 3));
        let (_, _, b) = recorded_spec(&agent_change_record("u", 4, Some(3), &spec(5, "v1"))).unwrap();
        assert_eq!(a, b, "replicas alone is not part of what an agent.change is about");
        let (_, _, c) = recorded_spec(&agent_change_record("u", 5, Some(4), &spec(1, "v2"))).unwrap();
        assert_ne!(a, c, "a template change is");
        assert_eq!(recorded_spec(&change_record("u", 3, None, &spec(1, "v1"))), None);
    }

    #[test]
    fn a_recorded_strategy_spec_is_its_whole_spec() {
        let spec = |max: i64| serde_json::json!({"scaling": {"maxReplicas": max}});
        let (uid, generation, a) = recorded_spec(&strategy_change_record("s", 2, Some(1), &spec(5))).unwrap();
        assert_eq!((uid.as_str(), generation), ("s", 2));
        let (_, _, b) = recorded_spec(&strategy_change_record("s", 3, Some(2), &spec(4))).unwrap();
        assert_ne!(a, b, "every field of a strategy's spec is part of it");
        assert_eq!(a, crate::receipts::inputs_digest(&spec(5)).unwrap());
    }

    #[test]
    fn the_change_record_is_byte_identical_to_the_checkpoint_loops_hand_built_one() {
        let spec = serde_json::json!({
            "verification": {"level": "full_audit", "sampleRate": 1.0},
            "kappa": 1.0,
            "retention": {"maxReceipts": 100000},
        });
        let key = ("7f1c2a9e-0000-4000-8000-000000000001".to_string(), 4i64);
        let same = (key.0.clone(), 3i64, Some("sample".to_string()));
        let other = ("another-uid".to_string(), 9i64, None);
        for previous in [None, Some(&same), Some(&other)] {
            // What src/operator/checkpoints.rs `record_config_change` wrote before this function.
            let expected = serde_json::json!({
                "kind": "momconfig.change",
                "uid": key.0,
                "generation": key.1,
                "previousGeneration": previous.as_ref().filter(|p| p.0 == key.0).map(|p| p.1),
                "spec": spec,
            });
            let previous_generation = previous.filter(|p| p.0 == key.0).map(|p| p.1);
            assert_eq!(
                serde_json::to_string(&change_record(&key.0, key.1, previous_generation, &spec)).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }
}
