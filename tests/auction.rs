//! Capacity auctions end to end: three GeometricAgents want more replicas than a small kwok node
//! pool holds; the operator's auction loop gives them quotas equal to the offline
//! `mom auction` result on the same bids and capacity, records the payments in an `allocate`
//! receipt (which `mom verify --replay` re-runs and `mom report costs` adds up), caps the
//! agents' pods at their quotas, follows a bid edit on the next tick, and the apiserver rejects
//! malformed bids naming the field.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mom::auction::{AuctionInput, AuctionOutcome};
use mom::labels::POOL_LABEL;
use mom::operator::crd::{GeometricAgent, Receipt};
use serde_json::{Value, json};

const NODE_CPU_MILLIS: u64 = 4000;
const NODE_MEMORY: u64 = 8 << 30;
const REPLICA_MEMORY: u64 = 1 << 30;

/// Two tainted kwok nodes of the test's own pool (deleted again when dropped, so later tests see
/// the cluster as before). The pool is named after the test namespace.
struct PoolNodes {
    namespace: String,
    names: Vec<String>,
}

impl PoolNodes {
    fn create(pool: &str) -> Self {
        let names: Vec<String> = (0..2).map(|i| format!("{pool}-n{i}")).collect();
        let items: Vec<Value> = names
            .iter()
            .map(|name| {
                let spec = mom::cluster_layout::NodeSpec {
                    name: name.clone(),
                    labels: BTreeMap::from([
                        (POOL_LABEL.to_string(), pool.to_string()),
                        ("topology.kubernetes.io/region".to_string(), pool.to_string()),
                        ("topology.kubernetes.io/zone".to_string(), format!("{pool}-a")),
                        ("kubernetes.io/hostname".to_string(), name.clone()),
                    ]),
                    cpu_millis: NODE_CPU_MILLIS,
                    memory_bytes: NODE_MEMORY,
                    pods: 110,
                };
                let mut node = spec.kwok_manifest();
                node["spec"] = json!({"taints": [{"key": POOL_LABEL, "value": pool, "effect": "NoSchedule"}]});
                node
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let (ok, _, err) = common::kubectl(
            &["apply", "--server-side", "--field-manager", "mom-tests", "-f", "-"],
            Some(&list),
        );
        assert!(ok, "creating the pool's kwok nodes failed: {err}");
        Self {
            namespace: pool.to_string(),
            names,
        }
    }
}

impl Drop for PoolNodes {
    fn drop(&mut self) {
        // Agents and their pods go first, while kwok still runs the nodes: a pod on a deleted
        // node stays Terminating (and its namespace with it) until the pod GC finds it.
        let ns = self.namespace.as_str();
        let _ = common::kubectl(&["delete", "geometricagents", "--all", "-n", ns, "--timeout=60s"], None);
        let _ = common::kubectl(&["delete", "pods", "--all", "-n", ns, "--timeout=60s"], None);
        let mut args = vec!["delete", "node", "--wait=false"];
        args.extend(self.names.iter().map(String::as_str));
        let _ = common::kubectl(&args, None);
    }
}

/// One competing agent: name, tenant, wanted replicas, bid (the object's `spec.bid`) and the
/// marginal values that bid means for the wanted replicas.
struct Want {
    name: &'static str,
    tenant: String,
    wanted: u32,
    bid: Value,
    values: Vec<f64>,
}

fn agent_manifest(ns: &str, pool: &str, w: &Want) -> String {
    json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": w.name, "namespace": ns},
        "spec": {
            "workloadType": "batch", "tenant": w.tenant, "replicas": w.wanted, "bid": w.bid,
            "template": {"spec": {
                "nodeSelector": {POOL_LABEL: pool},
                "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": pool, "effect": "NoSchedule"}],
                "containers": [{"name": "c", "image": "pause",
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]
            }}
        }
    })
    .to_string()
}

/// Runs `mom auction` offline on the bids and capacity the test knows; returns the input it
/// wrote and the outcome it printed.
fn offline_auction(dir: &Path, ns: &str, nodes: &PoolNodes, wants: &[Want]) -> (AuctionInput, AuctionOutcome) {
    let bids: Vec<Value> = wants
        .iter()
        .map(|w| {
            json!({"agent": format!("{ns}/{}", w.name), "tenant": w.tenant, "marginal_values": w.values,
                   "request": {"cpu_millis": 1000, "memory_bytes": REPLICA_MEMORY}})
        })
        .collect();
    let capacity: Vec<Value> = nodes
        .names
        .iter()
        .map(|n| json!({"node": n, "cpu_millis": NODE_CPU_MILLIS, "memory_bytes": NODE_MEMORY, "cost": 1.0}))
        .collect();
    std::fs::write(dir.join("bids.json"), Value::from(bids).to_string()).unwrap();
    std::fs::write(dir.join("capacity.json"), Value::from(capacity).to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args([
            "auction",
            "--format",
            "json",
            "--mip-max-integer-variables",
            "5000",
            "--bids",
        ])
        .arg(dir.join("bids.json"))
        .arg("--capacity")
        .arg(dir.join("capacity.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mom auction failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    printed.as_object_mut().unwrap().remove("solve_time_ms");
    let input: AuctionInput = serde_json::from_value(json!({
        "bids": serde_json::from_str::<Value>(&std::fs::read_to_string(dir.join("bids.json")).unwrap()).unwrap(),
        "nodes": serde_json::from_str::<Value>(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap(),
        "mip_max_integer_variables": 5000,
        // `mom auction` and the operator both hand leftover capacity to replicas bid at 0.
        "fill_unvalued": true
    }))
    .unwrap();
    (input, serde_json::from_value(printed).unwrap())
}

/// (quota, payment) per agent name as the offline outcome says.
fn quotas(ns: &str, outcome: &AuctionOutcome) -> BTreeMap<String, (i32, f64)> {
    outcome
        .allocations
        .iter()
        .map(|a| {
            (
                a.agent.strip_prefix(&format!("{ns}/")).unwrap().to_string(),
                (a.replicas as i32, a.payment),
            )
        })
        .collect()
}

async fn status_allocations(api: &Api<GeometricAgent>) -> Option<BTreeMap<String, (i32, f64)>> {
    let mut out = BTreeMap::new();
    for a in api.list(&ListParams::default()).await.ok()?.items {
        let alloc = a.status.as_ref()?.allocation.as_ref()?;
        out.insert(a.metadata.name.clone()?, (alloc.quota, alloc.payment));
    }
    Some(out)
}

/// The pool's allocate receipts, by sequence.
async fn allocate_receipts(client: kube::Client, pool: &str) -> Vec<Receipt> {
    let api: Api<Receipt> = Api::namespaced(client, "mom-system");
    let selector = format!("mom.hypersync.io/action=allocate,mom.hypersync.io/subject={pool}");
    let mut list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.sort_by_key(|r| r.spec.sequence);
    list
}

fn run_mom(args: &[&str]) -> (bool, Value, String) {
    let cp = common::control_plane();
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(args)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("mom {args:?} printed no JSON ({e}): {stderr}"));
    (out.status.success(), json, stderr)
}

#[tokio::test]
async fn three_agents_competing_for_a_small_pool_get_the_offline_auction_allocation() {
    let mom = common::mom_with(&["--auction-tick-seconds", "2", "--scaler-tick-seconds", "2"]);
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("auction").await;
    let n = ns.name.clone();
    let pool = n.clone();
    let nodes = PoolNodes::create(&pool);
    let dir = std::env::temp_dir().join(format!("mom-auction-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 2 nodes × 4 cpu = 8 one-cpu replicas; the agents want 5 + 4 + 3 = 12 (critical pressure).
    let mut wants = vec![
        Want {
            name: "alpha",
            tenant: n.clone(),
            wanted: 5,
            bid: json!({"valuePerReplica": 0, "marginalValues": [10, 8, 6, 4, 2]}),
            values: vec![10.0, 8.0, 6.0, 4.0, 2.0],
        },
        Want {
            name: "beta",
            tenant: n.clone(),
            wanted: 4,
            bid: json!({"valuePerReplica": 5}),
            values: vec![5.0; 4],
        },
        Want {
            name: "gamma",
            tenant: n.clone(),
            wanted: 3,
            bid: json!({"valuePerReplica": 0, "marginalValues": [9, 7, 3]}),
            values: vec![9.0, 7.0, 3.0],
        },
    ];
    // A strategy that applies only while the agents' pool is under critical pressure.
    common::apply(
        &json!({
            "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "OrchestrationStrategy",
            "metadata": {"name": "surge", "namespace": n},
            "spec": {"priority": 10, "scaling": {"method": "manual", "minReplicas": 0, "maxReplicas": 20},
                     "triggers": {"resourcePressure": ["critical"]}}
        })
        .to_string(),
    );
    for w in &wants {
        common::apply(&agent_manifest(&n, &pool, w));
    }
    let created = std::time::Instant::now();
    let (input, outcome) = offline_auction(&dir, &n, &nodes, &wants);
    let expected = quotas(&n, &outcome);
    // Computed by hand, so the oracle is not only the library under test: 8 one-cpu slots go to
    // the 8 highest marginal values 10 8 6 (alpha) 9 7 (gamma) 5 5 5 (beta), welfare 55. Clarke
    // payment = the others' best welfare without the agent − the others' welfare with it.
    // alpha: beta's 4 and gamma's 3 replicas all fit, 20 + 19 = 39, minus 15 + 16 = 31: pays 8.
    // beta: alpha's 5 and gamma's 3 fill the 8 slots, 30 + 19 = 49, minus 24 + 16 = 40: pays 9.
    // gamma: the best 8 of alpha's and beta's (10 8 6 5 5 5 5 4) = 48, minus 24 + 15 = 39: pays 9.
    let by_hand = [("alpha", 3, 8.0), ("beta", 3, 9.0), ("gamma", 2, 9.0)];
    for (agent, quota, payment) in by_hand {
        let (q, p) = expected[agent];
        assert!(
            q == quota && (p - payment).abs() < 1e-6,
            "{agent}: the offline auction gave quota {q} paying {p}; by hand {quota} paying {payment}"
        );
    }

    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), &n);
    let got = common::eventually(
        "allocations equal to the offline auction",
        Duration::from_secs(90),
        || {
            let agents = agents.clone();
            let expected = expected.clone();
            async move { status_allocations(&agents).await.filter(|got| *got == expected) }
        },
    )
    .await;
    println!(
        "allocation (quota, payment per hour) after {:.1} s: {got:?}",
        created.elapsed().as_secs_f64()
    );
    common::eventually(
        "the critical-pressure strategy selected",
        Duration::from_secs(30),
        || {
            let agents = agents.clone();
            async move {
                let a = agents.get("alpha").await.ok()?;
                (a.status?.strategy.as_deref() == Some("surge")).then_some(())
            }
        },
    )
    .await;
    // The status loop counts the agents under their pool's pressure too.
    common::eventually("surge's status lists its agents", Duration::from_secs(30), || {
        let strategies: Api<mom::operator::crd::OrchestrationStrategy> = Api::namespaced(ns.client(), &n);
        async move {
            let s = strategies.get("surge").await.ok()?;
            (s.status?.matched_agents == ["alpha", "beta", "gamma"]).then_some(())
        }
    })
    .await;

    // The receipt written before the quotas were applied holds the same input and outcome.
    // A receipt written before the quotas were applied holds the same input and outcome (earlier
    // ones may hold auctions among the agents created first).
    let receipts = allocate_receipts(ns.client(), &pool).await;
    let recorded: Vec<(AuctionInput, AuctionOutcome)> = receipts
        .iter()
        .map(|r| {
            let decision = serde_json::to_value(&r.spec.decision).unwrap();
            assert_eq!(decision["kind"], "auction.vcg");
            (
                serde_json::from_value(decision["inputs"].clone()).unwrap(),
                serde_json::from_value(decision["output"].clone()).unwrap(),
            )
        })
        .collect();
    assert!(
        recorded.iter().any(|(i, o)| *i == input && *o == outcome),
        "no receipt records the offline input and outcome: {recorded:?}"
    );

    // Agents above their quota are capped: each ends with exactly its quota of running pods.
    let pods: Api<Pod> = Api::namespaced(ns.client(), &n);
    common::eventually("each agent running exactly its quota", Duration::from_secs(90), || {
        let pods = pods.clone();
        let expected = expected.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?.items;
            let mut running: BTreeMap<String, i32> = BTreeMap::new();
            for p in &list {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let agent = p.metadata.labels.as_ref()?.get("mom.hypersync.io/agent")?.clone();
                let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                *running.entry(agent).or_default() += i32::from(bound);
                if !bound {
                    return None;
                }
            }
            let want: BTreeMap<String, i32> = expected.iter().map(|(k, v)| (k.clone(), v.0)).collect();
            (running == want).then_some(())
        }
    })
    .await;

    let metrics = operator_metrics(&mom.metrics_url).await;
    assert!(
        metrics.contains(&format!("mom_resource_pressure{{pool=\"{pool}\"}} 3")),
        "pressure not critical in {metrics}"
    );
    assert!(metrics.contains(&format!("mom_auctions_total{{pool=\"{pool}\"}}")));

    // The scaler follows the pressure-triggered strategy too: with surge's floor raised to 3,
    // gamma scaled down to 1 (demand 10 of 8 slots: still critical) is scaled back to 3.
    let strategies: Api<mom::operator::crd::OrchestrationStrategy> = Api::namespaced(ns.client(), &n);
    let floor = |min: i32| {
        let strategies = strategies.clone();
        async move {
            strategies
                .patch(
                    "surge",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"scaling": {"minReplicas": min}}})),
                )
                .await
                .unwrap();
        }
    };
    floor(3).await;
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "gamma", "-n", &n, "--replicas", "1"], None);
    assert!(ok, "{err}");
    common::eventually(
        "the scaler to raise gamma to surge's floor of 3 under critical pressure",
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            async move { (agents.get("gamma").await.ok()?.spec.replicas == 3).then_some(()) }
        },
    )
    .await;
    floor(0).await;

    // A bid edit changes the next tick's outcome.
    wants[2].bid = json!({"valuePerReplica": 0, "marginalValues": [20, 19, 18]});
    wants[2].values = vec![20.0, 19.0, 18.0];
    common::apply(&agent_manifest(&n, &pool, &wants[2]));
    let edited_at = std::time::Instant::now();
    let (_, edited_outcome) = offline_auction(&dir, &n, &nodes, &wants);
    let edited = quotas(&n, &edited_outcome);
    assert_ne!(edited, expected, "the edit should change the outcome");
    common::eventually("allocations after the bid edit", Duration::from_secs(60), || {
        let agents = agents.clone();
        let edited = edited.clone();
        async move { status_allocations(&agents).await.filter(|got| *got == edited) }
    })
    .await;
    println!(
        "outcome after the bid edit in {:.1} s",
        edited_at.elapsed().as_secs_f64()
    );
    let receipts = allocate_receipts(ns.client(), &pool).await;
    let last = receipts.last().unwrap();
    let recorded: AuctionOutcome =
        serde_json::from_value(serde_json::to_value(&last.spec.decision).unwrap()["output"].clone()).unwrap();
    assert_eq!(recorded, edited_outcome);
    let ours: Vec<u64> = receipts.iter().map(|r| r.spec.sequence as u64).collect();

    // `mom verify --replay` re-runs the recorded auctions and gets the same outcomes.
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ns.client(), "mom-system");
    let published = maps
        .get("mom-receipt-public-keys")
        .await
        .unwrap()
        .data
        .unwrap()
        .into_values()
        .next()
        .unwrap();
    let export = dir.join("chain.jsonl");
    let (_, verify, _) = run_mom(&[
        "verify",
        "--cluster",
        "--replay",
        "--format",
        "json",
        "--public-key",
        &published,
        "--export",
        export.to_str().unwrap(),
    ]);
    let mismatches: Vec<&Value> = verify["replay"]["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| ours.contains(&m["sequence"].as_u64().unwrap()))
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:?}");
    assert!(
        verify["replay"]["matched"].as_u64().unwrap() >= ours.len() as u64,
        "{verify}"
    );

    // `mom report costs` adds the payments up per tenant from the receipts, read from the
    // cluster or from the export.
    let (ok, report, err) = run_mom(&["report", "costs", "--cluster", "--format", "json"]);
    assert!(ok, "{err}");
    let (ok, from_file, err) = run_mom(&[
        "report",
        "costs",
        "--file",
        export.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    for report in [&report, &from_file] {
        // One tenant: the namespace's (tenant identity comes from the namespace, not the agent).
        let tenant = n.as_str();
        let paid: f64 = edited_outcome
            .allocations
            .iter()
            .filter(|a| a.tenant == tenant)
            .map(|a| a.payment)
            .sum();
        let line = report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == tenant)
            .unwrap_or_else(|| panic!("{tenant} missing in {report}"));
        assert_eq!(line["payment_per_hour"].as_f64().unwrap(), paid, "{line}");
    }
    println!("cost report: {report}");

    // Malformed bids are rejected by the apiserver, naming the field; the allocation stays.
    let mut bad = Want {
        name: "alpha",
        tenant: n.clone(),
        wanted: 5,
        bid: json!({"valuePerReplica": 0, "marginalValues": [1, 5]}),
        values: vec![],
    };
    let (ok, _, err) = common::kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&agent_manifest(&n, &pool, &bad)),
    );
    assert!(
        !ok && err.contains("spec.bid.marginalValues must not increase"),
        "{err}"
    );
    bad.bid = json!({"valuePerReplica": -1});
    let (ok, _, err) = common::kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&agent_manifest(&n, &pool, &bad)),
    );
    assert!(!ok && err.contains("spec.bid.valuePerReplica"), "{err}");
    assert_eq!(status_allocations(&agents).await, Some(edited));

    // An agent above its quota is told so by an Event.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ns.client(), &n);
    common::eventually("a CappedByAuction event for beta", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .find(|e| {
                    e.reason.as_deref() == Some("CappedByAuction")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("beta")
                })
                .map(|_| ())
        }
    })
    .await;

    // When demand falls below high pressure, the quotas are released (and the release recorded).
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "alpha", "-n", &n, "--replicas", "0"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "beta", "-n", &n, "--replicas", "1"], None);
    assert!(ok, "{err}");
    common::eventually("quotas released at medium pressure", Duration::from_secs(60), || {
        let agents = agents.clone();
        async move {
            let list = agents.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .all(|a| a.status.as_ref().is_some_and(|s| s.allocation.is_none()))
                .then_some(())
        }
    })
    .await;
    let last = allocate_receipts(ns.client(), &pool).await.pop().unwrap();
    assert_eq!(
        serde_json::to_value(&last.spec.decision).unwrap()["kind"],
        "auction.release"
    );
    common::eventually(
        "the strategy dropped at medium pressure",
        Duration::from_secs(30),
        || {
            let agents = agents.clone();
            async move {
                let a = agents.get("gamma").await.ok()?;
                a.status?.strategy.is_none().then_some(())
            }
        },
    )
    .await;
    // Control: out of pressure the strategy does not apply, so its floor does not either. With
    // the floor at 3 again and the pool at low pressure, gamma scaled to 1 stays at 1 through
    // two scaler ticks (the barrier: the scaler has had its chance twice).
    floor(3).await;
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "gamma", "-n", &n, "--replicas", "1"], None);
    assert!(ok, "{err}");
    let ticks = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("mom_loop_ticks_total{loop=\"scaler\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let start = ticks(&operator_metrics(&mom.metrics_url).await);
    common::eventually("two scaler ticks", Duration::from_secs(60), || {
        let url = mom.metrics_url.clone();
        async move { (ticks(&operator_metrics(&url).await) >= start + 2.0).then_some(()) }
    })
    .await;
    assert_eq!(
        agents.get("gamma").await.unwrap().spec.replicas,
        1,
        "the scaler applied surge's floor without pressure"
    );
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}

/// The operator's /metrics text.
async fn operator_metrics(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("{url}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An agent without `spec.bid` (every replica bid at 0) in a contended pool gets the capacity the
/// bidder leaves (CRD `spec.bid`: "while its pool is contended the agent gets only the capacity
/// the bids leave"), with no payment, and runs that many pods. Before the fill it got quota 0.
#[tokio::test]
async fn an_agent_without_a_bid_gets_the_capacity_the_bidder_leaves_in_a_contended_pool() {
    let _mom = common::mom_with(&["--auction-tick-seconds", "2", "--scaler-tick-seconds", "2"]);
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("auction-free").await;
    let n = ns.name.clone();
    let _nodes = PoolNodes::create(&n);
    // 2 nodes × 4 cpu = 8 one-cpu slots; 5 + 4 = 9 wanted (critical pressure).
    let bidder = Want {
        name: "bidder",
        tenant: n.clone(),
        wanted: 5,
        bid: json!({"valuePerReplica": 5}),
        values: vec![5.0; 5],
    };
    let free = Want {
        name: "free",
        tenant: n.clone(),
        wanted: 4,
        bid: Value::Null,
        values: Vec::new(),
    };
    for w in [&bidder, &free] {
        let mut manifest: Value = serde_json::from_str(&agent_manifest(&n, &n, w)).unwrap();
        if w.bid.is_null() {
            manifest["spec"].as_object_mut().unwrap().remove("bid");
        }
        common::apply(&manifest.to_string());
    }
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), &n);
    let want = BTreeMap::from([("bidder".to_string(), (5, 0.0)), ("free".to_string(), (3, 0.0))]);
    common::eventually(
        "quotas bidder 5, free 3 (what the bidder leaves)",
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            let want = want.clone();
            async move { (status_allocations(&agents).await? == want).then_some(()) }
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &n);
    common::eventually("free running its 3 pods", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("mom.hypersync.io/agent=free"))
                .await
                .ok()?
                .items;
            let bound = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .count();
            (bound == 3 && list.len() == 3).then_some(())
        }
    })
    .await;
}
