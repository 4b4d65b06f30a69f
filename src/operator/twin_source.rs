//! What `mom whatif --cluster` reads from a live cluster for [`crate::twin::recorded`]: the nodes
//! (labels, allocatable cpu/memory/pods, the price, energy-class and spot labels, positions from
//! the label embedding the operator starts from, `placement::embed_nodes` with the MomConfig's
//! `geometry.topologyKeys` and `dimension`), the GeometricAgents (requests of their template,
//! `spec.replicas`, `spec.peers`, `spec.bid`, the pool their template selects, `status.position`, their strategy's coordinates, nearAgents, avoidNodes, maxDistance and preferredRegions), the MomConfig's objectives, budget, curvature and
//! tick, and the `scaling.*` and `batch.plan` receipts of the window, by agent.
//!
//! Receipts are read as stored: a what-if is not a verification (`mom verify` is). Node
//! positions fitted to measured latencies (`geometry.latencySource`) are not reproduced.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::crd::momconfig::ACTIVE_NAME;
use super::crd::strategy::OrchestrationStrategy;
use super::crd::{GeometricAgent, MomConfig, Receipt};
use crate::labels::{ENERGY_CLASS_LABEL, HOURLY_COST_LABEL, SPOT_LABEL};
use crate::placement::{self, Objectives};
use crate::scaling_policy::{DecisionInputs, KINDS};
use crate::twin::recorded::{BatchRecord, RecordedAgent, ScaleRecord, Window};
use crate::twin::snapshot::NodeSpec;

/// Why the cluster could not be read into a twin snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TwinSourceError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
    #[error("embedding the nodes: {0}")]
    Embedding(String),
}

/// A strategy's placement rules the twin applies.
struct PlacementRules {
    avoid_nodes: Vec<String>,
    max_distance: Option<f64>,
    preferred_regions: Vec<String>,
}

/// The cluster's inputs for the window `[since, until]` (Unix seconds); with `namespace`, only
/// that namespace's agents (and their receipts).
pub async fn read(
    client: &kube::Client,
    since: f64,
    until: f64,
    namespace: Option<&str>,
) -> Result<(Vec<NodeSpec>, Vec<RecordedAgent>, Window), TwinSourceError> {
    let config = Api::<MomConfig>::all(client.clone()).get_opt(ACTIVE_NAME).await?;
    let spec = config.map(|c| c.spec);
    let geometry = spec.as_ref().map(|s| s.geometry.clone());
    let (keys, dimension, kappa) = match &geometry {
        Some(g) => (g.topology_keys.clone(), g.dimension.max(2) as usize, g.curvature),
        None => (
            vec![
                crate::labels::REGION_LABEL.to_string(),
                crate::labels::ZONE_LABEL.to_string(),
                crate::labels::HOSTNAME_LABEL.to_string(),
            ],
            64,
            1.0,
        ),
    };
    let objectives = spec
        .as_ref()
        .map(|s| Objectives {
            performance: s.objectives.performance,
            cost: s.objectives.cost,
            reliability: s.objectives.reliability,
            sustainability: s.objectives.sustainability,
        })
        .unwrap_or_default();
    let tick_seconds = spec.as_ref().map_or(15.0, |s| f64::from(s.tick_seconds.max(1)));

    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        nodes.iter().map(|n| (n.name_any(), n.labels().clone())).collect();
    let embedding =
        placement::embed_nodes(&labels, &keys, dimension).map_err(|e| TwinSourceError::Embedding(e.to_string()))?;
    let mut node_specs = Vec::new();
    for n in &nodes {
        let name = n.name_any();
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.clone());
        let bad = |reason: String| TwinSourceError::Node {
            node: name.clone(),
            reason,
        };
        let cpu = get("cpu")
            .map(|q| placement::quantity::cpu_millis(&q))
            .transpose()
            .map_err(|e| bad(format!("allocatable cpu: {e}")))?
            .unwrap_or(0);
        let memory = get("memory")
            .map(|q| placement::quantity::memory_bytes(&q))
            .transpose()
            .map_err(|e| bad(format!("allocatable memory: {e}")))?
            .unwrap_or(0);
        let position = embedding
            .positions
            .get(&name)
            .cloned()
            .ok_or_else(|| bad("not embedded".into()))?;
        let l = n.labels();
        node_specs.push(NodeSpec {
            name: name.clone(),
            labels: l.clone(),
            position,
            cpu_millis: cpu,
            memory_bytes: memory,
            max_pods: get("pods").and_then(|q| q.parse().ok()).unwrap_or(110),
            hourly_cost: l
                .get(HOURLY_COST_LABEL)
                .and_then(|v| v.parse().ok())
                .filter(|c: &f64| c.is_finite() && *c >= 0.0),
            energy_class: l
                .get(ENERGY_CLASS_LABEL)
                .and_then(|v| v.chars().next())
                .filter(|c| ('A'..='E').contains(&c.to_ascii_uppercase())),
            spot: l.get(SPOT_LABEL).map(String::as_str) == Some("true"),
        });
    }
    node_specs.sort_by(|a, b| a.name.cmp(&b.name));

    // Scale receipts of the window, by agent (`namespace/name`).
    let mut scales: BTreeMap<String, Vec<ScaleRecord>> = BTreeMap::new();
    let receipts = match namespace {
        Some(ns) => Api::<Receipt>::namespaced(client.clone(), ns),
        None => Api::<Receipt>::all(client.clone()),
    };
    let mut batch_plans: BTreeMap<String, Vec<BatchRecord>> = BTreeMap::new();
    for r in receipts.list(&ListParams::default()).await?.items {
        let d = &r.spec.decision;
        let kind = d["kind"].as_str().unwrap_or_default();
        let batch = kind == crate::batch::PLAN_KIND;
        if !(KINDS.contains(&kind) || batch) || r.spec.subject.kind != "GeometricAgent" {
            continue;
        }
        let Ok(time) = r.spec.time.parse::<k8s_openapi::jiff::Timestamp>() else {
            continue;
        };
        let time = time.as_millisecond() as f64 / 1000.0;
        if time < since || time > until {
            continue;
        }
        if batch {
            let (Ok(inputs), Some(to)) = (
                serde_json::from_value::<crate::batch::BatchInputs>(d["inputs"].clone()),
                d["output"]["replicas"].as_u64().and_then(|t| u32::try_from(t).ok()),
            ) else {
                continue;
            };
            if namespace.is_some_and(|ns| ns != r.spec.subject.namespace) {
                continue;
            }
            let key = format!("{}/{}", r.spec.subject.namespace, r.spec.subject.name);
            batch_plans
                .entry(key)
                .or_default()
                .push(BatchRecord { time, inputs, to });
            continue;
        }
        let (Ok(inputs), Some(to)) = (
            serde_json::from_value::<DecisionInputs>(d["inputs"].clone()),
            d["to"].as_u64().and_then(|t| u32::try_from(t).ok()),
        ) else {
            continue;
        };
        if namespace.is_some_and(|ns| ns != r.spec.subject.namespace) {
            continue;
        }
        let key = format!("{}/{}", r.spec.subject.namespace, r.spec.subject.name);
        scales.entry(key).or_default().push(ScaleRecord { time, inputs, to });
    }

    let agents = match namespace {
        Some(ns) => Api::<GeometricAgent>::namespaced(client.clone(), ns),
        None => Api::<GeometricAgent>::all(client.clone()),
    };
    let agents = agents.list(&ListParams::default()).await?.items;
    // The coordinates each strategy pins its agents to (`namespace/name`), where they have the
    // nodes' dimension (the agent controller skips others, rule 1 of `placement::agent_target`).
    let strategies = match namespace {
        Some(ns) => Api::<OrchestrationStrategy>::namespaced(client.clone(), ns),
        None => Api::<OrchestrationStrategy>::all(client.clone()),
    };
    // And the agents (names in its namespace) each strategy's agents also follow.
    let mut pinned: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut near: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // And each strategy's placement rules.
    let mut rules: BTreeMap<String, PlacementRules> = BTreeMap::new();
    for s in strategies.list(&ListParams::default()).await?.items {
        let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        let placement = &s.spec.placement;
        rules.insert(
            key.clone(),
            PlacementRules {
                avoid_nodes: placement.avoid_nodes.clone(),
                max_distance: placement.geometric_affinity.as_ref().and_then(|a| a.max_distance),
                preferred_regions: placement.preferred_regions.clone(),
            },
        );
        let Some(affinity) = placement.geometric_affinity.as_ref() else {
            continue;
        };
        if affinity.coordinates.len() == dimension {
            pinned.insert(key.clone(), affinity.coordinates.clone());
        }
        near.insert(key, affinity.near_agents.clone());
    }
    let mut recorded = Vec::new();
    for a in agents {
        let namespace = a.namespace().unwrap_or_default();
        let name = format!("{namespace}/{}", a.name_any());
        let pod = Pod {
            spec: a.spec.template.spec.as_deref().cloned(),
            ..Pod::default()
        };
        let requests = super::view::pod_requests(&pod).unwrap_or_default();
        // Its strategy (`status.strategy`: a name in the agent's namespace).
        let strategy = a
            .status
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .map(|s| format!("{namespace}/{s}"));
        let rules_of = strategy.as_ref().and_then(|s| rules.get(s));
        recorded.push(RecordedAgent {
            tenant: a.spec.tenant.clone(),
            cpu_millis: requests.cpu_millis,
            memory_bytes: requests.memory_bytes,
            replicas: u32::try_from(a.spec.replicas.max(0)).unwrap_or(0),
            target: a
                .status
                .as_ref()
                .and_then(|s| s.position.as_ref())
                .map(|p| p.coordinates.clone())
                .filter(|c| c.len() == dimension)
                .unwrap_or_default(),
            coordinates: strategy.as_ref().and_then(|s| pinned.get(s)).cloned(),
            near_agents: strategy
                .as_ref()
                .and_then(|s| near.get(s))
                .map(|names| names.iter().map(|n| format!("{namespace}/{n}")).collect())
                .unwrap_or_default(),
            peers: a
                .spec
                .peers
                .iter()
                .map(|p| (format!("{namespace}/{}", p.agent), p.weight))
                .collect(),
            scales: scales.remove(&name).unwrap_or_default(),
            batch_plans: batch_plans.remove(&name).unwrap_or_default(),
            // A bid the auction refuses counts as none, as in the operator's auction loop.
            bid: a
                .spec
                .bid
                .as_ref()
                .filter(|b| crate::auction::quota::bid_problem(&b.marginal_values, b.value_per_replica).is_none())
                .map(|b| crate::twin::snapshot::BidSpec {
                    value_per_replica: b.value_per_replica,
                    marginal_values: b.marginal_values.clone(),
                }),
            pool: a
                .spec
                .template
                .summary()
                .node_selector
                .get(crate::labels::POOL_LABEL)
                .cloned(),
            avoid_nodes: rules_of.map(|r| r.avoid_nodes.clone()).unwrap_or_default(),
            max_distance: rules_of.and_then(|r| r.max_distance),
            preferred_regions: rules_of.map(|r| r.preferred_regions.clone()).unwrap_or_default(),
            name,
        });
    }
    let window = Window {
        since,
        until,
        tick_seconds,
        startup_seconds: 60.0,
        objectives,
        kappa,
        max_hourly_cost: spec.as_ref().and_then(|s| s.budget.as_ref()).map(|b| b.max_hourly_cost),
    };
    Ok((node_specs, recorded, window))
}
