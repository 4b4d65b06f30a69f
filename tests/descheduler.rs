//! The descheduler's evictor against the real control plane (kwok nodes): the Eviction API with
//! a PodDisruptionBudget, dry-run, and the drain of an unhealthy node within the per-node limit.
//!
//! These tests drive `operator::descheduler::execute` directly, one call per tick, with their
//! own context (receipts off: the running MOM of other test binaries owns the chain), on a
//! snapshot of their own namespace. The node to drain is flagged in the snapshot, not labelled
//! in the cluster, so tests running in parallel on the same nodes are not disturbed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use mom::descheduler::{Settings, Snapshot, Strategy};
use mom::operator::context::Context;
use mom::operator::crd::momconfig::VerificationLevel;
use mom::operator::descheduler::{Descheduler, DeschedulerConfig, LoopState, PodFacts, build_snapshot, execute};
use mom::operator::metrics::Metrics;
use mom::operator::view::View;

fn setup() {
    common::control_plane();
    common::ensure_kwok_nodes(2, 3, 2);
}

/// A context over a fresh view of the cluster's nodes (embedded), receipts off, and the
/// descheduler loop with `settings`.
async fn context(client: kube::Client, dry_run: bool, settings: Settings) -> (Context, Descheduler) {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut view = View::default();
    view.settings.recording.level = VerificationLevel::None;
    for n in &nodes.items {
        view.apply_node(n);
    }
    view.reembed();
    let (_, leading) = tokio::sync::watch::channel(true);
    let kc = kube::config::Kubeconfig::read_from(&common::control_plane().kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let ctx = Context::new(
        client.clone(),
        mom::operator::view::SharedView::new(view),
        Arc::new(Metrics::default()),
        leading,
        Arc::new(mom::operator::receipts::ReceiptWriter::new(client, "mom-system".into())),
        "descheduler-test",
    );
    let job = Descheduler {
        evict_client: mom::operator::descheduler::client_without_retries(config).unwrap(),
        config: DeschedulerConfig {
            tick: mom::operator::ticks::Tick::overridden(Duration::from_secs(1)),
            dry_run,
            settings,
        },
        state: LoopState::default(),
    };
    (ctx, job)
}

/// Running pods `name-0…` pinned to `node`, labelled app=`name`.
async fn pinned_pods(ns: &common::TestNamespace, name: &str, node: &str, count: usize) {
    for i in 0..count {
        common::apply(&format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}-{i}","namespace":"{}","labels":{{"app":"{name}"}}}},
                "spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox",
                "resources":{{"requests":{{"cpu":"100m","memory":"64Mi"}}}}}}]}}}}"#,
            ns.name
        ));
    }
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    common::eventually("pinned pods running", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={name}")))
                .await
                .ok()?;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == count).then_some(())
        }
    })
    .await;
}

/// The namespace's snapshot with `node` flagged unhealthy.
async fn snapshot(ctx: &Context, ns: &str, state: &mut LoopState, node: &str) -> Snapshot {
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let blocked = state.blocked_this_tick();
    let mut s = {
        let view = ctx.view.read();
        let pods: Vec<PodFacts> = pods.items.iter().filter_map(PodFacts::of).collect();
        build_snapshot(&nodes.items, &pods, &[], &view, &blocked, 1_000_000)
    };
    // Pods just created are inside the cool-off; these tests are not about it.
    for p in &mut s.pods {
        p.last_evicted_at = None;
    }
    for n in &mut s.nodes {
        n.unhealthy = n.name == node;
    }
    s
}

async fn live_pods(ns: &common::TestNamespace, app: &str) -> usize {
    Api::<Pod>::namespaced(ns.client(), &ns.name)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count()
}

#[tokio::test]
async fn a_pdb_with_max_unavailable_zero_blocks_eviction_and_retries_back_off() {
    setup();
    let ns = common::TestNamespace::new("desched-pdb").await;
    let node = "r0-z0-k0-n0";
    pinned_pods(&ns, "guarded", node, 1).await;
    common::apply(&format!(
        r#"{{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{{"name":"guarded","namespace":"{}"}},
            "spec":{{"maxUnavailable":0,"selector":{{"matchLabels":{{"app":"guarded"}}}}}}}}"#,
        ns.name
    ));
    // The disruption controller must have processed the PDB before it blocks anything.
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(ns.client(), &ns.name);
    common::eventually("PDB status observed", Duration::from_secs(60), || {
        let pdbs = pdbs.clone();
        async move {
            let p = pdbs.get("guarded").await.ok()?;
            (p.status?.observed_generation? >= 1).then_some(())
        }
    })
    .await;
    let (ctx, mut job) = context(ns.client(), false, Settings::default()).await;
    let mut planned = 0;
    for _ in 0..6 {
        let s = snapshot(&ctx, &ns.name, &mut job.state, node).await;
        let plan = execute(&ctx, &mut job, &s).await.unwrap();
        planned += plan.moves.len();
    }
    // Attempts on ticks 1, 3 and 6 only (back-off 1, 2 ticks), each refused with 429.
    assert_eq!(planned, 3, "the eviction was retried every tick");
    assert_eq!(ctx.metrics.descheduler_blocked.get(), 3);
    assert_eq!(live_pods(&ns, "guarded").await, 1, "the PDB did not hold");
}

#[tokio::test]
async fn dry_run_plans_the_drain_and_changes_nothing() {
    setup();
    let ns = common::TestNamespace::new("desched-dry").await;
    let node = "r0-z1-k0-n0";
    pinned_pods(&ns, "dry", node, 2).await;
    let (ctx, mut job) = context(ns.client(), true, Settings::default()).await;
    let s = snapshot(&ctx, &ns.name, &mut job.state, node).await;
    let plan = execute(&ctx, &mut job, &s).await.unwrap();
    assert_eq!(plan.moves.len(), 2, "{plan:?}");
    assert!(
        plan.moves
            .iter()
            .all(|m| m.strategy == Strategy::Evacuation && m.to != node)
    );
    // `execute` returns after its evictions (each awaited until the apiserver has marked the
    // pod deleted), so the count right now is the evidence, not a count after a pause.
    assert_eq!(live_pods(&ns, "dry").await, 2, "dry run evicted a pod");
    // Positive control: the same plan without dry run, on the same pods, shows its evictions
    // just as immediately.
    let (ctx, mut job) = context(ns.client(), false, Settings::default()).await;
    let s = snapshot(&ctx, &ns.name, &mut job.state, node).await;
    let plan = execute(&ctx, &mut job, &s).await.unwrap();
    assert_eq!(plan.moves.len(), 2, "{plan:?}");
    assert_eq!(
        live_pods(&ns, "dry").await,
        0,
        "the evictions were not visible when execute returned"
    );
}

#[tokio::test]
async fn an_unhealthy_node_is_drained_within_the_per_node_limit() {
    setup();
    let ns = common::TestNamespace::new("desched-drain").await;
    let node = "r1-z2-k0-n1";
    pinned_pods(&ns, "drain", node, 5).await;
    let mut settings = Settings::default();
    settings.planner.max_evictions_per_node = 2;
    let (ctx, mut job) = context(ns.client(), false, settings).await;
    let mut per_tick = Vec::new();
    for _ in 0..4 {
        let s = snapshot(&ctx, &ns.name, &mut job.state, node).await;
        per_tick.push(execute(&ctx, &mut job, &s).await.unwrap().moves.len());
        // Let the apiserver and kwok finish the evictions before the next look.
        let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
        common::eventually("evicted pods gone", Duration::from_secs(60), || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_none())
                    .then_some(())
            }
        })
        .await;
    }
    assert_eq!(per_tick, [2, 2, 1, 0]);
    assert_eq!(live_pods(&ns, "drain").await, 0);
}
