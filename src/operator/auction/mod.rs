//! The auction loop (leader only): every tick, per node pool, turns the replicas the
//! GeometricAgents want into quotas when capacity is scarce (DESIGN §6).
//!
//! Pipeline per tick: observe (agents from the agent controller's cache; nodes and bound pods from the shared
//! view) → snapshot (pure, [`pool_snapshots`]: per pool the agents' wanted replicas, requests
//! and bids, and each node's allocatable minus what pods outside the pool's agents hold) →
//! decide (core [`quota::decide`]: pressure, and at `high`/`critical` the VCG auction through
//! [`crate::auction::run`], the function `mom auction` calls, so the same bids and capacity give
//! the same allocation byte for byte) → record (an `allocate` receipt with the full auction
//! input and outcome, written before anything is applied; at `full_audit` a failed write stops
//! the tick) → apply (merge patch of `status.allocation` {quota, payment} of each agent whose
//! allocation changed; the agent controller caps its replicas at the quota) → Events
//! (`CappedByAuction`, `QuotaReleased`, `InvalidBid`), metrics, and the pool's pressure in the view (the
//! agent controller matches `OrchestrationStrategy` `resourcePressure` triggers against it).
//!
//! Pools: a node belongs to the pool named by its label [`POOL_LABEL`] (nodes without it to
//! [`DEFAULT_POOL`]); an agent competes in the pool its pod template selects with
//! `nodeSelector: {mom.hypersync.io/pool: NAME}` (else the default pool). Pools are disjoint, so
//! each has its own auction. Taint a pool's nodes to keep other pods off them; pods that run
//! there anyway are subtracted from its capacity.
//!
//! Budget: with MomConfig `spec.budget.maxHourlyCost` set, each pool is offered only the
//! capacity the budget pays for after the pods of agents outside the pool
//! ([`apply_budget`], `crate::budget::affordable_capacity`: cheapest nodes first, the last one
//! in part); pressure is measured against that capacity too, so a budget that cannot pay for
//! what the agents want makes the pool contended and the auction gives the affordable replicas
//! to the highest bids. The `allocate` receipt records it under `budget` (the budget, the cost of
//! the other pods, what was left and the capacity before the cut). A pool the budget leaves no
//! capacity at all is not auctioned (its quotas stay as they are; the agent controller's budget
//! cap holds its agents).
//!
//! Bids: `spec.bid` (marginal values, or `valuePerReplica` for each wanted replica); an agent
//! without a bid values its replicas at 0 and so gets only the capacity the bids leave while the
//! pool is contended ([`crate::auction::fill_unvalued`]). A bid the CRD schema let through but the auction rejects (e.g. increasing
//! marginal values) counts as no bid, with a Warning Event naming the field.

pub mod snapshot;

pub use snapshot::*;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, LeaderLoop, LoopError};
use super::crd::GeometricAgent;
use super::crd::agent::Allocation;
use super::metrics::PoolLabels;
use super::receipts::Intent;
use crate::auction::AuctionError;
use crate::auction::quota::{self, AgentDemand, PoolDecision, QuotaSettings};
use crate::receipts::{Action as ReceiptAction, SubjectRef};

pub use crate::auction::quota::MIP_MAX_INTEGER_VARIABLES;

#[derive(Debug, thiserror::Error)]
pub enum AuctionLoopError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("auction of pool {pool}: {source}")]
    Auction {
        pool: String,
        #[source]
        source: AuctionError,
    },
    #[error("the allocate receipt of pool {pool} could not be written, so the quotas were not applied: {source}")]
    Receipt {
        pool: String,
        #[source]
        source: super::receipts::Withheld,
    },
}

impl LoopError for AuctionLoopError {
    fn metric_label(&self) -> &'static str {
        match self {
            AuctionLoopError::Api(_) => "auction_api",
            AuctionLoopError::Auction { .. } => "auction_solver",
            AuctionLoopError::Receipt { .. } => "auction_receipt",
        }
    }
}

/// The auction loop: how its period is chosen (`--auction-tick-seconds` or `spec.tickSeconds`)
/// and the pools whose quotas are in force (so a pool whose agents all vanished is released
/// too); run by [`super::context::run_leader_loop`].
pub struct Auctioneer {
    tick: super::ticks::Tick,
    contended: BTreeSet<String>,
}

impl Auctioneer {
    pub fn new(tick: super::ticks::Tick) -> Self {
        Self {
            tick,
            contended: BTreeSet::new(),
        }
    }
}

impl LeaderLoop for Auctioneer {
    const NAME: &'static str = "auction";
    type Error = AuctionLoopError;

    fn period(&self, ctx: &Context) -> super::ticks::Period {
        self.tick.resolve(ctx.configured_tick_seconds())
    }

    async fn tick(&mut self, ctx: &Context) -> Result<(), AuctionLoopError> {
        tick(ctx, &mut self.contended).await
    }

    fn reset(&mut self) {
        self.contended.clear();
    }
}

/// One tick over every pool; a failing pool does not stop the others (the first error is
/// returned). `contended`: the pools with quotas in force, updated.
pub async fn tick(ctx: &Context, contended: &mut BTreeSet<String>) -> Result<(), AuctionLoopError> {
    // The agent controller's cache; before its first full list the tick is skipped.
    let Some(agents) = ctx.agents.sorted() else {
        return Ok(());
    };
    let (nodes, pods, tenants) = {
        let v = ctx.view.read();
        (
            v.schedulable_nodes()
                .into_iter()
                .map(|(name, labels, allocatable)| NodeSnapshot {
                    name,
                    labels,
                    allocatable,
                })
                .collect::<Vec<_>>(),
            v.bound_pods(),
            // Costs go to the namespace's tenant, never to one an agent names (`tenancy`).
            agents
                .iter()
                .map(|a| v.tenant_of(&a.namespace().unwrap_or_default()))
                .collect::<Vec<_>>(),
        )
    };
    let by_key: BTreeMap<String, &GeometricAgent> = agents
        .iter()
        .map(|a| (agent_id(&a.namespace().unwrap_or_default(), &a.name_any()), a.as_ref()))
        .collect();
    let mut snapshots = pool_snapshots(
        agents.iter().zip(tenants).map(|(a, t)| agent_snapshot(a, t)).collect(),
        &nodes,
        &pods,
    );
    // MomConfig `spec.budget`: each pool is offered only the capacity the budget left pays for.
    let budget = {
        let v = ctx.view.read();
        v.settings
            .max_hourly_cost
            .map(|max| (max, v.priced_pods(), v.priced_nodes().0))
    };
    if let Some((max, priced_pods, prices)) = &budget {
        apply_budget(&mut snapshots, *max, priced_pods, prices);
    }
    let settings = QuotaSettings {
        shapley: Default::default(),
        mip_max_integer_variables: Some(MIP_MAX_INTEGER_VARIABLES),
    };
    let mut first_error = None;
    for (pool, snap) in &snapshots {
        match tick_pool(ctx, pool, snap, &by_key, settings).await {
            Ok(Some(true)) => {
                contended.insert(pool.clone());
            }
            Ok(Some(false)) => {
                contended.remove(pool);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(pool = %pool, error = %err, "auction of a pool failed");
                first_error.get_or_insert(err);
            }
        }
    }
    ctx.budget.retain_auction_caps(|p| snapshots.contains_key(p));
    let vanished: Vec<String> = contended
        .iter()
        .filter(|p| !snapshots.contains_key(*p))
        .cloned()
        .collect();
    for pool in vanished {
        // Its agents are gone: record that its quotas ended (cost reports stop accruing here).
        let pressure = quota::pressure(&[], &[]);
        let inputs = quota::release_inputs(&pool, &pressure, &[]);
        let decision = quota::release_record(&pool, &pressure, &[]);
        match record(ctx, &pool, decision, &inputs).await {
            Ok(()) => {
                contended.remove(&pool);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[tracing::instrument(skip_all, fields(pool = %pool))]
async fn tick_pool(
    ctx: &Context,
    pool: &str,
    snap: &PoolSnapshot,
    objects: &BTreeMap<String, &GeometricAgent>,
    settings: QuotaSettings,
) -> Result<Option<bool>, AuctionLoopError> {
    for a in &snap.agents {
        if let (Some(problem), Some(obj)) = (&a.bid_problem, objects.get(&a.demand.agent)) {
            publish(
                ctx,
                obj,
                EventType::Warning,
                "InvalidBid",
                format!("{problem}; bidding 0 until it is fixed"),
            )
            .await;
        }
    }
    let demands: Vec<AgentDemand> = snap.agents.iter().map(|a| a.demand.clone()).collect();
    let labels = PoolLabels { pool: pool.to_string() };
    if snap.nodes.is_empty() {
        // Nothing to auction (no nodes, or the node watch not synced yet): leave quotas as they are.
        let level = quota::pressure(&demands, &snap.nodes).level;
        ctx.metrics
            .resource_pressure
            .get_or_create(&labels)
            .set(level.ordinal());
        if let Ok(mut v) = ctx.view.write() {
            v.set_pool_pressure(pool, level);
        }
        let starved = snap
            .budget
            .as_ref()
            .filter(|b| !b.capacity_before.is_empty() && demands.iter().any(|d| d.wanted > 0))
            .map(|b| {
                format!(
                    "{:.4} per hour left after the pods of other pools pays for no capacity; not auctioned",
                    b.left
                )
            });
        ctx.budget.set_auction_cap(pool, starved);
        tracing::debug!(pool = %pool, "pool has no schedulable capacity; no auction");
        return Ok(None);
    }
    let nodes = snap.nodes.clone();
    let auctioned = demands.clone();
    let decision = Context::off_runtime(move || quota::decide(&auctioned, &nodes, settings))
        .await
        .map_err(|source| AuctionLoopError::Auction {
            pool: pool.to_string(),
            source,
        })?;
    let pressure = match &decision {
        PoolDecision::Uncontended { pressure } | PoolDecision::Auctioned { pressure, .. } => *pressure,
    };
    ctx.metrics
        .resource_pressure
        .get_or_create(&labels)
        .set(pressure.level.ordinal());
    if let Ok(mut v) = ctx.view.write() {
        v.set_pool_pressure(pool, pressure.level);
    }
    if matches!(decision, PoolDecision::Auctioned { .. }) {
        ctx.metrics.auctions.get_or_create(&labels).inc();
    }
    let targets = target_allocations(snap, &decision);
    ctx.budget.set_auction_cap(pool, budget_cap(snap, &targets));
    let changed: Vec<(&AgentSnapshot, &Option<Allocation>)> = snap
        .agents
        .iter()
        .zip(&targets)
        .filter(|(a, t)| a.allocation != **t)
        .collect();
    let auctioned = matches!(decision, PoolDecision::Auctioned { .. });
    if changed.is_empty() {
        return Ok(Some(auctioned));
    }
    // Record before acting.
    let (decision_json, inputs) = match &decision {
        PoolDecision::Auctioned {
            pressure,
            input,
            outcome,
        } => {
            let mut record = quota::allocation_record(pool, pressure, input, outcome);
            if let Some(budget) = &snap.budget {
                // Why the offered capacity is smaller than the pool (not an input of the replay).
                record["budget"] = serde_json::to_value(budget).unwrap_or_default();
            }
            // The digest covers the auction input recorded inline.
            let inputs = record["inputs"].clone();
            (record, inputs)
        }
        PoolDecision::Uncontended { pressure } => {
            let released: Vec<&str> = changed.iter().map(|(a, _)| a.demand.agent.as_str()).collect();
            (
                quota::release_record(pool, pressure, &released),
                quota::release_inputs(pool, pressure, &released),
            )
        }
    };
    record(ctx, pool, decision_json, &inputs).await?;
    // Apply.
    for (agent, target) in changed {
        let api: Api<GeometricAgent> = Api::namespaced(ctx.client.clone(), &agent.namespace);
        let patch = json!({"status": {"allocation": target}});
        match api
            .patch_status(&agent.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        let Some(obj) = objects.get(&agent.demand.agent) else {
            continue;
        };
        match target {
            Some(a) if (a.quota.max(0) as u32) < agent.demand.wanted => {
                let note = format!(
                    "capped at {} of {} wanted replicas by the auction of pool {pool}; pays {} per hour",
                    a.quota, agent.demand.wanted, a.payment
                );
                publish(ctx, obj, EventType::Normal, "CappedByAuction", note).await;
            }
            Some(a) => {
                let note = format!(
                    "granted all {} replicas by the auction of pool {pool}; pays {} per hour",
                    a.quota, a.payment
                );
                publish(ctx, obj, EventType::Normal, "AllocatedByAuction", note).await;
            }
            None => {
                let note = format!("pool {pool} is no longer contended; no quota");
                publish(ctx, obj, EventType::Normal, "QuotaReleased", note).await;
            }
        }
    }
    Ok(Some(auctioned))
}

/// What the budget held back in a pool's auction, if anything: it cut the capacity offered and
/// some agent got a quota below what it wants.
fn budget_cap(snap: &PoolSnapshot, targets: &[Option<Allocation>]) -> Option<String> {
    let budget = snap.budget.as_ref()?;
    let cpu = |nodes: &[crate::auction::NodeCapacity]| nodes.iter().map(|n| n.cpu_millis).sum::<u64>();
    let (offered, before) = (cpu(&snap.nodes), cpu(&budget.capacity_before));
    if snap.nodes == budget.capacity_before {
        return None;
    }
    let short: Vec<String> = snap
        .agents
        .iter()
        .zip(targets)
        .filter_map(|(a, t)| {
            let quota = t.as_ref()?.quota.max(0) as u32;
            (quota < a.demand.wanted).then(|| format!("{} granted {quota} of {}", a.demand.agent, a.demand.wanted))
        })
        .collect();
    (!short.is_empty()).then(|| {
        format!(
            "offered {offered} of {before} cpu millis ({:.4} per hour left after the pods of other pools); {}",
            budget.left,
            short.join(", ")
        )
    })
}

/// Writes the `allocate` receipt of a pool's decision; at `full_audit` a failed write is an
/// error (the caller must not apply), below it is logged.
async fn record(
    ctx: &Context,
    pool: &str,
    decision: serde_json::Value,
    inputs: &serde_json::Value,
) -> Result<(), AuctionLoopError> {
    let subject = SubjectRef {
        api_version: GeometricAgent::api_version(&()).into_owned(),
        kind: "NodePool".into(),
        namespace: String::new(),
        name: pool.to_string(),
        uid: None,
    };
    let intent = Intent {
        action: ReceiptAction::Allocate,
        subject,
        decision,
        inputs: inputs.clone(),
        regarding: None,
        withheld: format!("the quotas of pool {pool} were not applied"),
    };
    ctx.record_before(intent)
        .await
        .map(|_| ())
        .map_err(|source| AuctionLoopError::Receipt {
            pool: pool.to_string(),
            source,
        })
}

async fn publish(ctx: &Context, agent: &GeometricAgent, type_: EventType, reason: &str, note: String) {
    ctx.publish(&agent.object_ref(&()), type_, "Allocate", reason, note)
        .await;
}
