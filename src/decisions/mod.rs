//! The replay registry above the decision modules: every decision kind MOM records in receipts,
//! mapped to the pure function that recomputes it, so `mom verify --replay` can re-run them.
//!
//! Input: nothing. Output: [`registry`], a `receipts::replay::ReplayRegistry` with
//! - `test.sum` (demo chains, `receipts::replay::test_sum`),
//! - `scaling.predictive`, `scaling.reactive`, `scaling.manual` (`scaling_policy::replay`),
//! - `auction.vcg` (`auction::quota::replay`),
//! - `descheduler.plan` (`descheduler::replay_plan`),
//! - `placement.bind` (`placement::bind::replay`),
//! - `budget.refused` (`budget::replay`),
//! - `failover.plan` (`failover_mdp::replay`),
//! - `anomaly.flag` (`anomaly::flag::replay`),
//! - `anomaly.unnamed` (`anomaly::flag::replay_unnamed`: a flag no series names any more),
//! - `agent.rollback` ([`auto_rollback::replay`]: which recorded spec an agent flagged soon
//!   after a spec change goes back to),
//! - `strategy.rollback` ([`auto_rollback::replay_strategy`]: the same for the strategy of a
//!   flagged agent, when its change is the newer),
//! - `agent.quarantine` ([`quarantine::replay`]: whether a flagged agent is isolated),
//! - `node.quarantine` ([`node_quarantine::replay`]: whether a flagged node is cordoned and
//!   tainted),
//! - `batch.plan` (`batch::replay`: a batch agent's replicas per pool now, from its plan).
//!
//! Layering: the receipts layer sits below the decisions it records (it imports no decision
//! module); each decision module exports its decision record and kind, using the generic
//! `ReplayError` from below; this module sits above them all. Kinds recorded but not replayed
//! (their inputs are only hashed): `placement.scale`, `auction.release`, `momconfig.change` and
//! `agent.change` ([`config_change`], the home of the spec change records; [`rollback`] reads
//! an `agent.change` back for `mom rollback`).

pub mod auto_rollback;
pub mod config_change;
pub mod node_quarantine;
pub mod quarantine;
pub mod rollback;

use crate::receipts::replay::{ReplayRegistry, TEST_SUM_KIND, test_sum};
use crate::{anomaly, auction, batch, budget, descheduler, failover_mdp, placement, scaling_policy};

/// Every replayable decision kind, each with its decision function.
pub fn registry() -> ReplayRegistry {
    let mut r = ReplayRegistry::new();
    r.register(TEST_SUM_KIND, Box::new(test_sum));
    for kind in scaling_policy::KINDS {
        r.register(kind, Box::new(scaling_policy::replay));
    }
    r.register(auction::quota::REPLAY_KIND, Box::new(auction::quota::replay));
    r.register(descheduler::PLAN_KIND, Box::new(descheduler::replay_plan));
    r.register(placement::bind::BIND_KIND, Box::new(placement::bind::replay));
    r.register(budget::REFUSED_KIND, Box::new(budget::replay));
    r.register(failover_mdp::PLAN_KIND, Box::new(failover_mdp::replay));
    r.register(anomaly::flag::FLAG_KIND, Box::new(anomaly::flag::replay));
    r.register(anomaly::flag::UNNAMED_KIND, Box::new(anomaly::flag::replay_unnamed));
    r.register(auto_rollback::AUTO_ROLLBACK_KIND, Box::new(auto_rollback::replay));
    r.register(
        auto_rollback::STRATEGY_ROLLBACK_KIND,
        Box::new(auto_rollback::replay_strategy),
    );
    r.register(quarantine::QUARANTINE_KIND, Box::new(quarantine::replay));
    r.register(node_quarantine::NODE_QUARANTINE_KIND, Box::new(node_quarantine::replay));
    r.register(batch::PLAN_KIND, Box::new(batch::replay));
    r
}

/// Decision kinds recorded in receipts whose inputs are only hashed (not replayed).
pub const RECORDED_ONLY_KINDS: [&str; 5] = [
    placement::SCALE_KIND,
    auction::quota::RELEASE_KIND,
    config_change::CONFIG_CHANGE_KIND,
    config_change::AGENT_CHANGE_KIND,
    config_change::STRATEGY_CHANGE_KIND,
];

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::auction::NodeCapacity;
    use crate::auction::ResourceRequest;
    use crate::auction::quota::{self, AgentDemand, PoolDecision, QuotaSettings};
    use crate::descheduler::testutil::{account_requests, agent_at, four_node_snapshot, pod};
    use crate::placement::bind::BindInputs;
    use crate::receipts::replay::{InlineOnly, MismatchKind};
    use crate::receipts::testutil::{chain, signer};
    use crate::receipts::{Action, ChainBuilder, Level, Receipt, ReceiptDraft, SubjectRef, inputs_digest};
    use crate::scaling_policy::{DecisionInputs, Method, PolicySettings};

    /// A chain of one receipt per `(action, decision, inputs)`, the decision as stored (re-parsed
    /// from its JSON text, as the apiserver gives it back).
    fn sealed(records: Vec<(Action, Value, Value)>) -> Vec<Receipt> {
        let mut b = ChainBuilder::genesis(signer(4));
        records
            .into_iter()
            .enumerate()
            .map(|(i, (action, decision, inputs))| {
                let decision: Value = serde_json::from_str(&decision.to_string()).unwrap();
                b.seal(ReceiptDraft {
                    action,
                    subject: SubjectRef {
                        api_version: "mom.hypersync.io/v1alpha1".into(),
                        kind: "GeometricAgent".into(),
                        namespace: "ns".into(),
                        name: format!("a-{i}"),
                        uid: None,
                    },
                    decision,
                    inputs_digest: inputs_digest(&inputs).unwrap(),
                    time: format!("2026-01-01T00:00:{i:02}Z"),
                    level: Level::FullAudit,
                })
                .unwrap()
            })
            .collect()
    }

    fn scaling_record(method: Method, demand: Vec<f64>) -> (Action, Value, Value) {
        let inputs = DecisionInputs {
            settings: PolicySettings {
                step_seconds: 1.0,
                horizon_seconds: 20.0,
                lead_seconds: 3.0,
                cooldown_seconds: 0.0,
                ..PolicySettings::new(method, 1, 10, 20.0)
            },
            demand,
            current_replicas: 2,
            ready_replicas: 2,
            since_last_change_seconds: None,
            hpa: None,
            other_targets: Vec::new(),
        };
        let (decision, _) = scaling_policy::decide(&inputs).unwrap();
        let record = scaling_policy::decision_record(&inputs, &decision);
        let digested = record["inputs"].clone();
        (Action::Scale, record, digested)
    }

    fn auction_record() -> (Action, Value, Value) {
        let demand = |agent: &str, values: &[f64]| AgentDemand {
            agent: agent.into(),
            tenant: agent.into(),
            wanted: values.len() as u32,
            request: ResourceRequest {
                cpu_millis: 1000,
                memory_bytes: 1 << 20,
            },
            marginal_values: values.to_vec(),
        };
        let nodes = [NodeCapacity {
            node: "n1".into(),
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            cost: 1.0,
        }];
        let agents = [demand("ns/a", &[5.0, 4.0]), demand("ns/b", &[6.0, 1.0])];
        let PoolDecision::Auctioned {
            pressure,
            input,
            outcome,
        } = quota::decide(&agents, &nodes, QuotaSettings::default()).unwrap()
        else {
            panic!("expected an auction");
        };
        let record = quota::allocation_record("default", &pressure, &input, &outcome);
        let digested = record["inputs"].clone();
        (Action::Allocate, record, digested)
    }

    fn eviction_record() -> (Action, Value, Value) {
        let mut s = four_node_snapshot();
        s.pods = vec![pod("p0", "west-1", Some("a"))];
        s.agents = vec![agent_at("a", &s.nodes[0].position.clone())];
        account_requests(&mut s);
        let settings = descheduler::Settings::default();
        let plan = descheduler::plan(&s, &settings).unwrap();
        let inputs = descheduler::plan_inputs(&s, &settings);
        let record = descheduler::eviction_record(&plan.moves[0], &plan, Some(&inputs));
        (Action::Evict, record, inputs)
    }

    fn bind_record() -> (Action, Value, Value) {
        let inputs = BindInputs {
            namespace: "ns".into(),
            pod: "p".into(),
            node: "n".into(),
            agent: Some("a".into()),
            target: vec![0.1, 0.2],
            node_position: Some(vec![-0.3, 0.1]),
            kappa: 1.0,
        };
        let record = placement::bind::decision(&inputs);
        let digested = record["inputs"].clone();
        (Action::Bind, record, digested)
    }

    #[test]
    fn the_registry_knows_exactly_the_replayable_kinds() {
        let registry = registry();
        let kinds: Vec<&str> = registry.kinds().collect();
        let mut want = vec![
            "agent.quarantine",
            "batch.plan",
            "agent.rollback",
            "anomaly.flag",
            "anomaly.unnamed",
            "auction.vcg",
            "budget.refused",
            "descheduler.plan",
            "failover.plan",
            "node.quarantine",
            "placement.bind",
            "scaling.learned",
            "scaling.manual",
            "scaling.predictive",
            "scaling.reactive",
            "strategy.rollback",
            "test.sum",
        ];
        want.sort();
        assert_eq!(kinds, want);
        assert!(RECORDED_ONLY_KINDS.iter().all(|k| !kinds.contains(k)));
    }

    fn failover_record() -> (Action, Value, Value) {
        let snapshot: failover_mdp::Snapshot = serde_json::from_value(json!({
            "domains": [{"name": "zone-a", "kind": "zone", "state": "suspect",
                         "history": [["healthy", "degraded", "suspect", "failed", "healthy", "healthy"],
                                     ["healthy", "suspect", "failed", "healthy", "degraded", "healthy"]]}],
            "agents": [{"name": "ns/a", "domain": "zone-a", "standby": false}]
        }))
        .unwrap();
        let report = failover_mdp::plan(&snapshot).unwrap();
        let record = failover_mdp::decision_record(&snapshot, &report);
        let digested = record["inputs"].clone();
        (Action::Migrate, record, digested)
    }

    #[test]
    fn every_record_a_decision_module_exports_replays_through_the_registry() {
        let ramp: Vec<f64> = (0..48).map(|t| 10.0 + 2.0 * f64::from(t)).collect();
        let rs = sealed(vec![
            scaling_record(Method::Predictive, ramp),
            scaling_record(Method::Manual, Vec::new()),
            auction_record(),
            eviction_record(),
            bind_record(),
            failover_record(),
        ]);
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!((rep.replayed, rep.matched), (6, 6), "{rep:?}");
        assert!(rep.mismatches.is_empty() && rep.unregistered.is_empty(), "{rep:?}");
    }

    #[test]
    fn recorded_only_kinds_are_counted_as_unregistered_not_failed() {
        let pressure = quota::pressure(&[], &[]);
        let spec = json!({"kappa": 1.0});
        let rs = sealed(vec![
            (
                Action::Spawn,
                placement::scale_record(1, 2, &[0.1, 0.2]),
                placement::scale_inputs(2, &["p-0".to_string()], None),
            ),
            (
                Action::Allocate,
                quota::release_record("default", &pressure, &["ns/a"]),
                quota::release_inputs("default", &pressure, &["ns/a"]),
            ),
            (
                Action::Configure,
                config_change::change_record("uid-1", 2, Some(1), &spec),
                spec.clone(),
            ),
            (
                Action::Configure,
                config_change::agent_change_record("uid-2", 1, None, &spec),
                spec.clone(),
            ),
            (
                Action::Configure,
                config_change::strategy_change_record("uid-3", 1, None, &spec),
                spec.clone(),
            ),
        ]);
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!(rep.replayed, 0);
        assert!(rep.mismatches.is_empty());
        for kind in RECORDED_ONLY_KINDS {
            assert_eq!(rep.unregistered.get(kind), Some(&1), "{kind}: {rep:?}");
        }
    }

    #[test]
    fn recorded_bind_decisions_replay_and_an_edited_distance_is_a_mismatch() {
        let mut rs = chain(3, 0, &signer(1));
        let inputs = BindInputs {
            namespace: "ns".into(),
            pod: "p".into(),
            node: "n".into(),
            agent: Some("a".into()),
            target: vec![0.1, 0.2],
            node_position: Some(vec![-0.3, 0.1]),
            kappa: 1.0,
        };
        for r in &mut rs[1..] {
            r.action = Action::Bind;
            r.decision = placement::bind::decision(&inputs);
            r.inputs_digest = inputs_digest(&r.decision["inputs"]).unwrap();
        }
        rs[2].decision["output"]["distanceFromTarget"] = json!(0.5);
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!((rep.replayed, rep.matched), (3, 2));
        assert_eq!(rep.mismatches.len(), 1);
        assert_eq!(
            (rep.mismatches[0].sequence, rep.mismatches[0].what),
            (2, MismatchKind::Output)
        );
        assert_eq!(rep.mismatches[0].kind, "placement.bind");
    }

    #[test]
    fn the_demo_chain_replays_through_the_registry() {
        let rs = crate::receipts::demo::demo_chain(&signer(2), 30, 10).unwrap();
        let rep = registry().replay_all(&rs, &InlineOnly);
        assert_eq!((rep.replayed, rep.matched, rep.without_kind), (28, 28, 2));
    }
}
