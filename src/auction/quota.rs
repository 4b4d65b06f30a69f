//! Replica quotas for one node pool per control-loop tick (DESIGN §6): measures the resource
//! pressure of what the agents want against what the pool can hold and, when pressure is high
//! or critical, runs the VCG auction whose allocation becomes each agent's quota.
//!
//! Input: the agents' [`AgentDemand`]s (wanted replicas, per-replica request, declared marginal
//! values) and the pool's [`NodeCapacity`]s (allocatable minus what pods outside the auction
//! hold). Output: a [`PoolDecision`] — the [`Pressure`] and, under pressure, the exact
//! [`AuctionInput`] given to [`super::run`] (the function `mom auction` calls) and its
//! [`AuctionOutcome`]. A receipt records both; [`replay`] re-runs the input for
//! `mom verify --replay`.
//!
//! Pressure: utilisation u = max over resources r of Σᵢ wantedᵢ·ρᵢᵣ / Σⱼ Cⱼᵣ (a fluid bound:
//! it ignores fragmentation across nodes, which is why the auction already runs at `high`).
//! Levels: `low` u < 0.5, `medium` u < 0.9, `high` u ≤ 1, `critical` u > 1 (also when the pool
//! has no capacity for a resource some agent wants).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    AuctionError, AuctionInput, AuctionOutcome, Bid, NodeCapacity, ResourceRequest, ShapleyConfig, SolverChoice,
};
use crate::receipts::replay::ReplayError;

/// Utilisation from which pressure is `medium`.
pub const MEDIUM_UTILISATION: f64 = 0.5;
/// Utilisation from which pressure is `high` and the auction runs.
pub const HIGH_UTILISATION: f64 = 0.9;
/// Decision kind of an auction receipt (registered for replay).
pub const REPLAY_KIND: &str = "auction.vcg";
/// Decision kind of the receipt that clears quotas when pressure falls below `high`.
pub const RELEASE_KIND: &str = "auction.release";

/// How close a pool is to its capacity (the levels of `OrchestrationStrategy` triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl PressureLevel {
    /// The level for utilisation `u` (see the module docs); NaN counts as critical.
    pub fn from_utilisation(u: f64) -> Self {
        if u < MEDIUM_UTILISATION {
            PressureLevel::Low
        } else if u < HIGH_UTILISATION {
            PressureLevel::Medium
        } else if u <= 1.0 {
            PressureLevel::High
        } else {
            PressureLevel::Critical
        }
    }

    /// Whether capacity is auctioned at this level.
    pub fn auctions(self) -> bool {
        self >= PressureLevel::High
    }

    /// 0 (low) … 3 (critical), for a gauge.
    pub fn ordinal(self) -> i64 {
        self as i64
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PressureLevel::Low => "low",
            PressureLevel::Medium => "medium",
            PressureLevel::High => "high",
            PressureLevel::Critical => "critical",
        }
    }
}

/// Wanted resources against the pool's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// max over cpu and memory of wanted / capacity; `None` when a wanted resource has zero
    /// capacity (infinitely over-subscribed).
    pub utilisation: Option<f64>,
    pub level: PressureLevel,
}

/// What one agent wants this tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDemand {
    /// Unique name of the agent (the operator uses `namespace/name`).
    pub agent: String,
    pub tenant: String,
    /// Replicas the agent wants (`spec.replicas`).
    pub wanted: u32,
    /// What one replica requests.
    pub request: ResourceRequest,
    /// Declared value of the 1st, 2nd, … replica; only the first `wanted` are bid.
    pub marginal_values: Vec<f64>,
}

impl AgentDemand {
    /// Agents that want nothing, or whose replicas request nothing, take no part in an auction.
    pub fn competes(&self) -> bool {
        self.wanted > 0 && (self.request.cpu_millis > 0 || self.request.memory_bytes > 0)
    }

    /// The auction bid: one marginal value per wanted replica (replicas not wanted are not bid
    /// for); wanted replicas beyond the declared values, and every replica of an agent without a
    /// bid, are bid at 0, so they take only capacity nobody values ([`crate::auction::fill_unvalued`]).
    pub fn bid(&self) -> Bid {
        let wanted = self.wanted as usize;
        let mut marginal_values: Vec<f64> = self.marginal_values.iter().take(wanted).copied().collect();
        marginal_values.resize(wanted, 0.0);
        Bid {
            agent: self.agent.clone(),
            tenant: self.tenant.clone(),
            marginal_values,
            request: self.request,
        }
    }
}

/// Problems of a declared bid, naming the field (the rules of the auction's validation).
pub fn bid_problem(values: &[f64], value_per_replica: f64) -> Option<String> {
    if values.is_empty() {
        if !value_per_replica.is_finite() || value_per_replica < 0.0 {
            return Some(format!(
                "spec.bid.valuePerReplica: {value_per_replica} must be a finite number >= 0"
            ));
        }
        return None;
    }
    for (k, &v) in values.iter().enumerate() {
        if !v.is_finite() || v < 0.0 {
            return Some(format!(
                "spec.bid.marginalValues[{k}]: {v} must be a finite number >= 0"
            ));
        }
        if k > 0 && v > values[k - 1] {
            return Some(format!(
                "spec.bid.marginalValues[{k}]: {v} is larger than spec.bid.marginalValues[{}] = {} (marginal values must not increase)",
                k - 1,
                values[k - 1]
            ));
        }
    }
    None
}

/// The marginal values a declared bid gives `wanted` replicas: `marginal_values` as given, or
/// `value_per_replica` for each of them when the list is empty (a GeometricAgent's `spec.bid`;
/// [`AgentDemand::bid`] then bids 0 for wanted replicas beyond the list).
pub fn declared_values(marginal_values: &[f64], value_per_replica: f64, wanted: usize) -> Vec<f64> {
    if marginal_values.is_empty() {
        vec![value_per_replica; wanted]
    } else {
        marginal_values.to_vec()
    }
}

/// What a pool offers its auction: each node's `allocatable` minus what pods outside the pool's
/// agents hold on it (`held_by_others`; the pool's own agents' pods are what the auction
/// reallocates), nodes left without cpu or memory dropped, in node name order.
pub fn offered_capacity<'a>(
    nodes: impl IntoIterator<Item = (&'a str, crate::placement::Resources, crate::placement::Resources, f64)>,
) -> Vec<NodeCapacity> {
    let mut caps: Vec<NodeCapacity> = nodes
        .into_iter()
        .map(|(name, allocatable, held_by_others, cost)| NodeCapacity {
            node: name.to_string(),
            cpu_millis: allocatable.cpu_millis.saturating_sub(held_by_others.cpu_millis),
            memory_bytes: allocatable.memory_bytes.saturating_sub(held_by_others.memory_bytes),
            cost,
        })
        .filter(|c| c.cpu_millis > 0 && c.memory_bytes > 0)
        .collect();
    caps.sort_by(|a, b| a.node.cmp(&b.node));
    caps
}

/// The pool auction refuses an integer program beyond this many variables: a tick must not stall.
pub const MIP_MAX_INTEGER_VARIABLES: u64 = 5_000;

/// Knobs of the pool auction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QuotaSettings {
    pub shapley: ShapleyConfig,
    /// Refuse integer programs larger than this (a control loop must not stall).
    pub mip_max_integer_variables: Option<u64>,
}

/// What a tick decides for one pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolDecision {
    /// Pressure below `high`: no quotas.
    Uncontended { pressure: Pressure },
    /// Pressure `high` or `critical`: the auction's input and outcome.
    Auctioned {
        pressure: Pressure,
        input: AuctionInput,
        outcome: Box<AuctionOutcome>,
    },
}

/// u = max_r Σᵢ wantedᵢ·ρᵢᵣ / Σⱼ Cⱼᵣ over the competing agents (exact integer sums).
pub fn pressure(agents: &[AgentDemand], nodes: &[NodeCapacity]) -> Pressure {
    pressure_of(
        agents.iter().filter(|a| a.competes()).map(|a| (a.wanted, a.request)),
        nodes.iter().map(NodeCapacity::as_array),
    )
}

/// [`pressure`] from each competing agent's wanted replicas and request and each node's
/// capacity, for a caller that has not built the [`AgentDemand`]s (the twin, every tick).
pub fn pressure_of(
    wants: impl IntoIterator<Item = (u32, ResourceRequest)>,
    capacities: impl IntoIterator<Item = [u64; 2]>,
) -> Pressure {
    let mut want = [0u128; 2];
    for (wanted, request) in wants {
        for (r, w) in want.iter_mut().enumerate() {
            *w += request.as_array()[r] as u128 * wanted as u128;
        }
    }
    let mut cap = [0u128; 2];
    for c in capacities {
        for (r, total) in cap.iter_mut().enumerate() {
            *total += c[r] as u128;
        }
    }
    let mut u: f64 = 0.0;
    for r in 0..2 {
        if want[r] == 0 {
            continue;
        }
        if cap[r] == 0 {
            return Pressure {
                utilisation: None,
                level: PressureLevel::Critical,
            };
        }
        u = u.max(want[r] as f64 / cap[r] as f64);
    }
    Pressure {
        utilisation: Some(u),
        level: PressureLevel::from_utilisation(u),
    }
}

/// The auction input for the competing agents of a pool: bids in agent order, nodes in name order.
pub fn auction_input(agents: &[AgentDemand], nodes: &[NodeCapacity], settings: QuotaSettings) -> AuctionInput {
    let mut bids: Vec<Bid> = agents.iter().filter(|a| a.competes()).map(AgentDemand::bid).collect();
    bids.sort_by(|a, b| a.agent.cmp(&b.agent));
    let mut nodes = nodes.to_vec();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    AuctionInput {
        bids,
        nodes,
        solver: SolverChoice::Auto,
        shapley: settings.shapley,
        mip_max_integer_variables: settings.mip_max_integer_variables,
        fill_unvalued: true,
    }
}

/// Measures pressure and, at `high` or `critical`, runs the auction.
pub fn decide(
    agents: &[AgentDemand],
    nodes: &[NodeCapacity],
    settings: QuotaSettings,
) -> Result<PoolDecision, AuctionError> {
    let pressure = pressure(agents, nodes);
    if !pressure.level.auctions() {
        return Ok(PoolDecision::Uncontended { pressure });
    }
    let input = auction_input(agents, nodes, settings);
    let outcome = Box::new(super::run(&input)?);
    Ok(PoolDecision::Auctioned {
        pressure,
        input,
        outcome,
    })
}

/// The receipt decision of an auctioned pool, recorded before the quotas change:
/// `{kind: auction.vcg, pool, pressure, inputs: the AuctionInput, output: the AuctionOutcome}`.
/// The inputs are inline, so [`replay`] re-runs the auction from `record["inputs"]` (which is
/// also what the receipt's `inputsDigest` hashes).
pub fn allocation_record(pool: &str, pressure: &Pressure, input: &AuctionInput, outcome: &AuctionOutcome) -> Value {
    // `to_value` fails on nothing an AuctionInput holds; `null` keeps the record writable if it did.
    let inputs = serde_json::to_value(input).unwrap_or_default();
    serde_json::json!({"kind": REPLAY_KIND, "pool": pool, "pressure": pressure, "inputs": inputs, "output": outcome})
}

/// The receipt decision that clears quotas (pressure fell below `high`, or the pool vanished):
/// `{kind: auction.release, pool, pressure, output: {released: [agent…]}}`. Not replayed: its
/// inputs ([`release_inputs`]) are only hashed into `inputsDigest`.
pub fn release_record(pool: &str, pressure: &Pressure, released: &[&str]) -> Value {
    serde_json::json!({"kind": RELEASE_KIND, "pool": pool, "pressure": pressure, "output": {"released": released}})
}

/// The inputs of a [`release_record`]: `{pool, pressure, released}`.
pub fn release_inputs(pool: &str, pressure: &Pressure, released: &[&str]) -> Value {
    serde_json::json!({"pool": pool, "pressure": pressure, "released": released})
}

/// Replays a recorded auction: `inputs` is an [`AuctionInput`], the result its [`AuctionOutcome`].
pub fn replay(inputs: &Value) -> Result<Value, ReplayError> {
    let input: AuctionInput = serde_json::from_value(inputs.clone()).map_err(|e| ReplayError::BadInputs {
        field: "inputs".into(),
        message: e.to_string(),
    })?;
    let outcome = super::run(&input).map_err(|e| ReplayError::BadInputs {
        field: "inputs".into(),
        message: e.to_string(),
    })?;
    serde_json::to_value(&outcome).map_err(|e| ReplayError::BadInputs {
        field: "output".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::test_support::node;

    fn demand(agent: &str, wanted: u32, values: &[f64], cpu: u64) -> AgentDemand {
        AgentDemand {
            agent: agent.into(),
            tenant: format!("t-{agent}"),
            wanted,
            request: ResourceRequest {
                cpu_millis: cpu,
                memory_bytes: 1 << 20,
            },
            marginal_values: values.to_vec(),
        }
    }

    #[test]
    fn pressure_levels_follow_the_utilisation_thresholds() {
        let table = [
            (0.0, PressureLevel::Low),
            (0.49, PressureLevel::Low),
            (0.5, PressureLevel::Medium),
            (0.89, PressureLevel::Medium),
            (0.9, PressureLevel::High),
            (1.0, PressureLevel::High),
            (1.01, PressureLevel::Critical),
            (f64::NAN, PressureLevel::Critical),
        ];
        for (u, level) in table {
            assert_eq!(PressureLevel::from_utilisation(u), level, "u = {u}");
        }
        assert!(!PressureLevel::Medium.auctions() && PressureLevel::High.auctions());
    }

    #[test]
    fn utilisation_is_the_tighter_resource_and_ignores_agents_that_want_nothing() {
        // cpu: 3 × 1000m of 4000m = 0.75; memory: 3 MiB of 8 GiB ≈ 0.
        let agents = [demand("a", 3, &[1.0; 3], 1000), demand("b", 0, &[9.0], 4000)];
        let p = pressure(&agents, &[node("n1", 2000, 4 << 30), node("n2", 2000, 4 << 30)]);
        assert_eq!(p.utilisation, Some(0.75));
        assert_eq!(p.level, PressureLevel::Medium);
    }

    #[test]
    fn a_pool_without_capacity_for_a_wanted_resource_is_critical() {
        let p = pressure(&[demand("a", 1, &[1.0], 100)], &[]);
        assert_eq!(
            p,
            Pressure {
                utilisation: None,
                level: PressureLevel::Critical
            }
        );
    }

    #[test]
    fn below_high_pressure_no_auction_runs() {
        let d = decide(
            &[demand("a", 1, &[1.0], 1000)],
            &[node("n1", 4000, 1 << 30)],
            QuotaSettings::default(),
        )
        .unwrap();
        assert!(matches!(d, PoolDecision::Uncontended { pressure } if pressure.level == PressureLevel::Low));
    }

    #[test]
    fn under_pressure_the_auction_bids_only_wanted_replicas_and_matches_a_direct_run() {
        // 2 slots of 1000m; a wants 2 (values 5, 4, 3 — the 3 is beyond what it wants), b wants 2.
        let agents = [
            demand("b", 2, &[6.0, 1.0], 1000),
            demand("a", 2, &[5.0, 4.0, 3.0], 1000),
        ];
        let nodes = [node("n1", 2000, 1 << 30)];
        let PoolDecision::Auctioned {
            pressure,
            input,
            outcome,
        } = decide(&agents, &nodes, QuotaSettings::default()).unwrap()
        else {
            panic!("expected an auction");
        };
        assert_eq!(pressure.level, PressureLevel::Critical);
        assert_eq!(input.bids[0].agent, "a");
        assert_eq!(input.bids[0].marginal_values, vec![5.0, 4.0]);
        // Winners: b's 6 and a's 5; a pays b's displaced 1, b pays a's displaced 4.
        let got: Vec<(u32, f64)> = outcome.allocations.iter().map(|a| (a.replicas, a.payment)).collect();
        assert_eq!(got, vec![(1, 1.0), (1, 4.0)]);
        assert_eq!(*outcome, crate::auction::run(&input).unwrap());
    }

    #[test]
    fn agents_without_a_bid_share_the_capacity_the_bidders_left_and_pay_nothing() {
        // 10 one-cpu slots; the bidder wants 6, two agents without a bid want 3 each: u = 1.2.
        let agents = [
            demand("bidder", 6, &[5.0; 6], 1000),
            demand("free-a", 3, &[], 1000),
            demand("free-b", 3, &[], 1000),
        ];
        let nodes = [node("n1", 4000, 1 << 30), node("n2", 6000, 1 << 30)];
        let PoolDecision::Auctioned { input, outcome, .. } = decide(&agents, &nodes, QuotaSettings::default()).unwrap()
        else {
            panic!("expected an auction");
        };
        assert_eq!(
            input.bids[1].marginal_values,
            vec![0.0; 3],
            "no bid: 0 per wanted replica"
        );
        let got: Vec<(&str, u32, f64)> = outcome
            .allocations
            .iter()
            .map(|a| (a.agent.as_str(), a.replicas, a.payment))
            .collect();
        // The bidder's 6 first; the 4 slots left go one by one to free-a and free-b in turn.
        assert_eq!(got, vec![("bidder", 6, 0.0), ("free-a", 2, 0.0), ("free-b", 2, 0.0)]);
        assert_eq!(outcome.welfare, 30.0);
        // Control: the same input without the fill leaves the agents without a bid nothing.
        let mut unfilled = input.clone();
        unfilled.fill_unvalued = false;
        let bare = crate::auction::run(&unfilled).unwrap();
        let bare: Vec<u32> = bare.allocations.iter().map(|a| a.replicas).collect();
        assert_eq!(bare, vec![6, 0, 0]);
    }

    #[test]
    fn wanted_replicas_beyond_the_declared_values_are_bid_at_zero() {
        let d = demand("a", 4, &[3.0, 2.0], 1000);
        assert_eq!(d.bid().marginal_values, vec![3.0, 2.0, 0.0, 0.0]);
        let fewer = demand("a", 1, &[3.0, 2.0], 1000);
        assert_eq!(fewer.bid().marginal_values, vec![3.0]);
    }

    #[test]
    fn a_recorded_input_without_the_fill_field_replays_without_filling() {
        // Inputs recorded before `fill_unvalued` existed lack the field: they replay as they ran.
        let old = serde_json::json!({
            "bids": [
                {"agent": "a", "tenant": "a", "marginal_values": [5.0], "request": {"cpu_millis": 1000, "memory_bytes": 1}},
                {"agent": "b", "tenant": "b", "marginal_values": [0.0, 0.0], "request": {"cpu_millis": 1000, "memory_bytes": 1}}
            ],
            "nodes": [{"node": "n1", "cpu_millis": 3000, "memory_bytes": 10}]
        });
        let out = replay(&old).unwrap();
        assert_eq!(out["allocations"][1]["replicas"], 0);
        let mut new = old.clone();
        new["fill_unvalued"] = serde_json::json!(true);
        let out = replay(&new).unwrap();
        assert_eq!(out["allocations"][1]["replicas"], 2);
    }

    #[test]
    fn a_recorded_auction_replays_to_the_same_outcome_and_bad_inputs_name_the_field() {
        let agents = [
            demand("a", 3, &[3.0, 2.0, 1.0], 1000),
            demand("b", 2, &[2.5, 2.5], 1000),
        ];
        let nodes = [node("n1", 3000, 1 << 30)];
        let input = auction_input(&agents, &nodes, QuotaSettings::default());
        let outcome = crate::auction::run(&input).unwrap();
        let replayed = replay(&serde_json::to_value(&input).unwrap()).unwrap();
        assert_eq!(replayed, serde_json::to_value(&outcome).unwrap());
        let mut bad = serde_json::to_value(&input).unwrap();
        bad["bids"][1]["marginal_values"] = serde_json::json!([1.0, 2.0]);
        let err = replay(&bad).unwrap_err().to_string();
        assert!(err.contains("bids[1].marginal_values[1]"), "{err}");
        let err = replay(&serde_json::json!({"bids": 3})).unwrap_err().to_string();
        assert!(err.contains("inputs"), "{err}");
    }

    #[test]
    fn the_allocation_record_is_byte_identical_to_the_auction_loops_hand_built_one() {
        let agents = [
            demand("b", 2, &[6.0, 1.0], 1000),
            demand("a", 2, &[5.0, 4.0, 3.0], 1000),
        ];
        let nodes = [node("n1", 2000, 1 << 30)];
        let PoolDecision::Auctioned {
            pressure,
            input,
            outcome,
        } = decide(&agents, &nodes, QuotaSettings::default()).unwrap()
        else {
            panic!("expected an auction");
        };
        let pool = "default/gpu";
        // What src/operator/auction.rs `tick_pool` wrote before this function existed.
        let inputs = serde_json::to_value(&input).unwrap_or_default();
        let expected = serde_json::json!({"kind": REPLAY_KIND, "pool": pool, "pressure": pressure, "inputs": inputs, "output": outcome});
        let record = allocation_record(pool, &pressure, &input, &outcome);
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(replay(&record["inputs"]).unwrap(), record["output"]);
    }

    #[test]
    fn the_release_record_and_its_inputs_are_byte_identical_to_the_hand_built_ones() {
        let pressure = pressure(&[demand("a", 1, &[1.0], 1000)], &[node("n1", 4000, 1 << 30)]);
        for released in [vec!["ns/a", "ns/b"], vec![]] {
            let pool = "default";
            // What src/operator/auction.rs wrote (a falling pressure, or a vanished pool).
            let inputs = serde_json::json!({"pool": pool, "pressure": pressure, "released": released});
            let decision = serde_json::json!({"kind": RELEASE_KIND, "pool": pool, "pressure": pressure, "output": {"released": released}});
            assert_eq!(
                serde_json::to_string(&release_record(pool, &pressure, &released)).unwrap(),
                serde_json::to_string(&decision).unwrap()
            );
            assert_eq!(
                serde_json::to_string(&release_inputs(pool, &pressure, &released)).unwrap(),
                serde_json::to_string(&inputs).unwrap()
            );
        }
        // The vanished-pool case passed an empty `Vec<String>`: the same bytes.
        let none: Vec<String> = Vec::new();
        assert_eq!(
            release_record("p", &pressure, &[]),
            serde_json::json!({"kind": RELEASE_KIND, "pool": "p", "pressure": pressure, "output": {"released": none}})
        );
    }
}
