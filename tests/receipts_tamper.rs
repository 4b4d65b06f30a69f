//! Receipts under attack, on a control plane of its own (so the whole chain is this test's):
//! 1,000 real scaling actions by the operator (100 agents in two tenants' namespaces, scaled
//! 0 ↔ 1 ten times), checkpoints every 200 receipts and every 5 s, then
//! - `mom verify --cluster` is clean and recomputes the checkpoints;
//! - each tenant's `mom-receipt-checkpoints` ConfigMap proves exactly its own receipts
//!   (`mom verify --tenant-bundle NAMESPACE`);
//! - the ValidatingAdmissionPolicy stops even a cluster admin from deleting a receipt; once the
//!   admin removes its binding and edits one receipt, deletes another and inserts a forged one,
//!   `mom verify --cluster` names all three (edited and missing by sequence number, the forgery
//!   as a foreign object with the sequence it claims), and the tenant bundles name them too.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mom::operator::crd::{GeometricAgent, Receipt as ReceiptObject};
use mom::receipts::{Action, ChainBuilder, ChainHead, Receipt, Signer};

const AGENTS_PER_NAMESPACE: usize = 50;
const ROUNDS: usize = 10;

fn start_operator() -> common::OperatorProcess {
    let cp = common::control_plane();
    let log = cp.kubeconfig.parent().unwrap().join("logs/operator-tamper.log");
    common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity("tamper")
        .text_logs()
        .checkpoints("200", "5")
        .log(log)
        .spawn()
}

fn agent(ns: &str, i: usize, tenant: &str, replicas: i32) -> GeometricAgent {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": format!("worker-{i:03}"), "namespace": ns},
        "spec": {"workloadType": "batch", "tenant": tenant, "replicas": replicas,
                 "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
    }))
    .unwrap()
}

fn to_receipt(obj: &ReceiptObject) -> Receipt {
    serde_json::from_value(serde_json::to_value(&obj.spec).unwrap()).unwrap()
}

async fn receipts_in(client: &kube::Client, ns: &str) -> Vec<Receipt> {
    let api: Api<ReceiptObject> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<Receipt> = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().map(to_receipt).collect())
        .unwrap_or_default();
    out.sort_by_key(|r| r.sequence);
    out
}

/// (sequence, kind) of every problem in a `mom verify` report.
fn problems(report: &serde_json::Value) -> BTreeSet<(u64, String)> {
    report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["sequence"].as_u64().unwrap(), p["kind"].as_str().unwrap().to_string()))
        .collect()
}

/// (sequence, kind) of every problem of every bundle in a `mom verify --tenant-bundle` report.
fn bundle_problems(report: &serde_json::Value) -> BTreeSet<(u64, String)> {
    report["reports"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["problems"].as_array().unwrap().iter())
        .map(|p| (p["sequence"].as_u64().unwrap(), p["kind"].as_str().unwrap().to_string()))
        .collect()
}

/// The receipt-protection policy and its binding, as rendered into manifests/install.yaml.
fn receipt_policy_manifests() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/install.yaml")).unwrap();
    let docs: Vec<String> = text
        .split("\n---")
        .filter(|d| {
            (d.contains("kind: ValidatingAdmissionPolicy\n") || d.contains("kind: ValidatingAdmissionPolicyBinding\n"))
                && d.contains("receipts-append-only")
        })
        .map(str::to_string)
        .collect();
    assert_eq!(
        docs.len(),
        2,
        "install.yaml should hold the receipt policy and its binding"
    );
    docs
}

fn manifest_name(doc: &str) -> String {
    let meta = doc.split("metadata:").nth(1).unwrap();
    meta.lines()
        .find_map(|l| l.trim().strip_prefix("name: "))
        .unwrap()
        .trim()
        .to_string()
}

/// Re-creates `obj` (as an admin would after deleting it) with `edit` applied to its spec.
fn recreate(obj: &ReceiptObject, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut spec = serde_json::to_value(&obj.spec).unwrap();
    edit(&mut spec);
    let manifest = serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "Receipt",
        "metadata": {"name": name, "namespace": obj.metadata.namespace},
        "spec": spec,
    });
    let (ok, _, err) = common::kubectl(&["create", "-f", "-"], Some(&manifest.to_string()));
    assert!(ok, "creating receipt {name}: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_actions_verify_clean_and_an_edit_a_deletion_and_a_forgery_are_each_named() {
    // A control plane of its own: the chain from sequence 0 is this test's alone, and the
    // admission policy installed here cannot disturb other test binaries.
    common::use_private_control_plane();
    common::control_plane();
    common::install_crds();
    common::ensure_kwok_nodes(2, 3, 2);
    common::apply_test_momconfig("full_audit");
    let client = common::client().await;
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    let _operator = start_operator();

    let tenants = [
        ("acme", common::TestNamespace::for_tenant("acme", "acme").await),
        ("globex", common::TestNamespace::for_tenant("globex", "globex").await),
    ];
    let started = Instant::now();
    // Round 0 creates every agent with one replica (one spawn each); rounds 1.. flip them
    // between 0 and 1 (one terminate or spawn each). One receipt per agent per round.
    let total_agents = AGENTS_PER_NAMESPACE * tenants.len();
    for round in 0..ROUNDS {
        let replicas = if round % 2 == 0 { 1 } else { 0 };
        let mut calls = Vec::new();
        for (tenant, ns) in &tenants {
            let api: Api<GeometricAgent> = Api::namespaced(client.clone(), &ns.name);
            for i in 0..AGENTS_PER_NAMESPACE {
                let api = api.clone();
                let a = agent(&ns.name, i, tenant, replicas);
                calls.push(async move {
                    if round == 0 {
                        api.create(&PostParams::default(), &a).await.map(|_| ())
                    } else {
                        let patch = serde_json::json!({"spec": {"replicas": replicas}});
                        api.patch(
                            &a.metadata.name.clone().unwrap(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                        .map(|_| ())
                    }
                });
            }
        }
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        let want = total_agents * (round + 1);
        common::eventually(
            &format!("{want} receipts after round {round}"),
            Duration::from_secs(120),
            || {
                let client = client.clone();
                let names: Vec<String> = tenants.iter().map(|(_, n)| n.name.clone()).collect();
                async move {
                    // Actions only: each agent's creation is also recorded (`agent.change`).
                    let mut n = 0;
                    for ns in &names {
                        n += receipts_in(&client, ns)
                            .await
                            .iter()
                            .filter(|r| matches!(r.action, Action::Spawn | Action::Terminate))
                            .count();
                    }
                    (n >= want).then_some(())
                }
            },
        )
        .await;
    }
    let took = started.elapsed();
    let mut ours: Vec<Receipt> = Vec::new();
    for (_, ns) in &tenants {
        ours.extend(receipts_in(&client, &ns.name).await);
    }
    ours.sort_by_key(|r| r.sequence);
    let actions = ours
        .iter()
        .filter(|r| matches!(r.action, Action::Spawn | Action::Terminate))
        .count();
    assert_eq!(actions, total_agents * ROUNDS, "one receipt per agent per round");
    println!(
        "{actions} actions (receipts written before acting) in {:.1} s: {:.1} actions/s",
        took.as_secs_f64(),
        actions as f64 / took.as_secs_f64()
    );
    let last = ours.last().unwrap().sequence;

    // Checkpoints: a checkpoint after our last receipt, and every bundle published for it.
    let system: Api<ReceiptObject> = Api::namespaced(client.clone(), "mom-system");
    let checkpoints = common::eventually("a checkpoint covering every action", Duration::from_secs(60), || {
        let system = system.clone();
        async move {
            let all: Vec<Receipt> = system
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .map(to_receipt)
                .collect();
            let cps: Vec<Receipt> = all.into_iter().filter(|r| r.action == Action::Checkpoint).collect();
            cps.iter().any(|c| c.sequence > last).then_some(cps)
        }
    })
    .await;
    assert!(
        checkpoints.len() >= 5,
        "1,000 receipts with a checkpoint every 200 give at least 5, got {}",
        checkpoints.len()
    );
    let configures = system
        .list(&ListParams::default().labels("mom.hypersync.io/action=configure"))
        .await
        .unwrap()
        .items;
    assert_eq!(
        configures.len(),
        1,
        "one configure receipt for the MomConfig the operator started with"
    );

    for (_, ns) in &tenants {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        common::eventually(
            &format!("the checkpoint bundle of {}", ns.name),
            Duration::from_secs(60),
            || {
                let maps = maps.clone();
                async move {
                    let cm = maps.get_opt("mom-receipt-checkpoints").await.ok()??;
                    let cp: Receipt = serde_json::from_str(cm.data?.get("checkpoint.json")?).ok()?;
                    (cp.sequence > last).then_some(())
                }
            },
        )
        .await;
    }

    let published = common::published_keys(&client).await.remove(0);
    let (ok, report) = common::mom_verify(&["--cluster", "--public-key", &published]);
    assert!(ok, "the untouched chain must verify: {report}");
    assert_eq!(report["report"]["firstSequence"], 0);
    assert!(
        report["report"]["checkpointsRecomputed"].as_u64().unwrap() >= 5,
        "{report}"
    );

    for (tenant, ns) in &tenants {
        let (ok, report) = common::mom_verify(&["--tenant-bundle", &ns.name, "--public-key", &published]);
        assert!(ok, "{report}");
        let reports = report["reports"].as_array().unwrap();
        assert_eq!(reports.len(), 1, "one tenant per namespace: {report}");
        assert_eq!(reports[0]["tenant"], *tenant);
        // One action per agent per round, plus each agent's spec recorded at its creation
        // (`agent.change`; the later rounds change only `replicas`, which is not recorded so).
        let own = AGENTS_PER_NAMESPACE * (ROUNDS + 1);
        assert_eq!(
            reports[0]["verified"].as_u64().unwrap() as usize,
            own,
            "every receipt of the tenant, and only those, is proven: {report}"
        );
        assert_eq!(reports[0]["liveChecked"].as_u64().unwrap() as usize, own);
    }

    // The admission policy stops even a cluster admin from deleting a receipt.
    let policy = receipt_policy_manifests();
    for doc in &policy {
        common::apply(doc);
    }
    let (acme_ns, globex_ns) = (&tenants[0].1.name, &tenants[1].1.name);
    let acme_objs = {
        let api: Api<ReceiptObject> = Api::namespaced(client.clone(), acme_ns);
        let mut l = api.list(&ListParams::default()).await.unwrap().items;
        l.sort_by_key(|r| r.spec.sequence);
        l
    };
    let globex_objs = {
        let api: Api<ReceiptObject> = Api::namespaced(client.clone(), globex_ns);
        let mut l = api.list(&ListParams::default()).await.unwrap().items;
        l.sort_by_key(|r| r.spec.sequence);
        l
    };
    let edited = &acme_objs[100];
    let forged_at = &acme_objs[300];
    let deleted = &globex_objs[200];
    let delete_dry_run = |obj: &ReceiptObject| {
        common::kubectl(
            &[
                "delete",
                "receipt",
                obj.metadata.name.as_deref().unwrap(),
                "-n",
                obj.metadata.namespace.as_deref().unwrap(),
                "--dry-run=server",
            ],
            None,
        )
    };
    let denial = common::eventually("the policy to deny an admin's delete", Duration::from_secs(30), || {
        let (ok, _, err) = delete_dry_run(deleted);
        async move { (!ok).then_some(err) }
    })
    .await;
    assert!(denial.contains("append-only"), "{denial}");

    // The admin removes the binding, then tampers.
    let binding = policy
        .iter()
        .find(|d| d.contains("kind: ValidatingAdmissionPolicyBinding\n"))
        .unwrap();
    let (ok, _, err) = common::kubectl(
        &["delete", "validatingadmissionpolicybinding", &manifest_name(binding)],
        None,
    );
    assert!(ok, "{err}");
    common::eventually("deletes allowed again", Duration::from_secs(30), || {
        let (ok, _, _) = delete_dry_run(deleted);
        async move { ok.then_some(()) }
    })
    .await;
    // 1. Edit: the spec is immutable (CEL), so delete and re-create it with another decision.
    let (ok, _, err) = common::kubectl(
        &[
            "delete",
            "receipt",
            edited.metadata.name.as_deref().unwrap(),
            "-n",
            acme_ns,
        ],
        None,
    );
    assert!(ok, "{err}");
    recreate(edited, edited.metadata.name.as_deref().unwrap(), |spec| {
        spec["decision"]["to"] = serde_json::json!(7);
    });
    // 2. Delete.
    let (ok, _, err) = common::kubectl(
        &[
            "delete",
            "receipt",
            deleted.metadata.name.as_deref().unwrap(),
            "-n",
            globex_ns,
        ],
        None,
    );
    assert!(ok, "{err}");
    // 3. Insert: a well-formed receipt at an existing sequence, chained to the real predecessor,
    //    hashed correctly, but signed by a key the operator never had.
    let target = to_receipt(forged_at);
    let prev = acme_objs
        .iter()
        .chain(globex_objs.iter())
        .map(to_receipt)
        .chain(checkpoints.iter().cloned())
        .find(|r| r.sequence + 1 == target.sequence);
    let prev_head = match prev {
        Some(p) => ChainHead {
            sequence: p.sequence,
            hash: p.hash,
        },
        None => ChainHead {
            sequence: target.sequence - 1,
            hash: target.prev_hash.clone(),
        },
    };
    let mut forger = ChainBuilder::after(Signer::from_seed([66; 32]), prev_head);
    let mut draft_decision = target.decision.clone();
    draft_decision["to"] = serde_json::json!(40);
    let forged = forger
        .seal(mom::receipts::ReceiptDraft {
            action: Action::Spawn,
            subject: target.subject.clone(),
            decision: draft_decision,
            inputs_digest: target.inputs_digest.clone(),
            time: target.time.clone(),
            level: target.level,
        })
        .unwrap();
    assert_eq!(forged.sequence, target.sequence);
    let mut forged_obj = mom::operator::receipts::receipt_object(&forged, acme_ns).unwrap();
    forged_obj.metadata.name = Some("receipt-forged".into());
    recreate(&forged_obj, "receipt-forged", |_| {});

    let (e, d, s) = (
        edited.spec.sequence as u64,
        deleted.spec.sequence as u64,
        target.sequence,
    );
    let (ok, report) = common::mom_verify(&["--cluster", "--public-key", &published]);
    assert!(!ok, "verify passed a tampered chain");
    let found = problems(&report);
    for want in [(e, "edited"), (d, "missing")] {
        assert!(
            found.contains(&(want.0, want.1.to_string())),
            "{want:?} not named: {found:?}"
        );
    }
    let at: BTreeSet<u64> = found.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        at,
        BTreeSet::from([e, d]),
        "problems only where the chain was touched: {found:?}"
    );
    // The forgery is not part of the chain (no trusted key signed it): it is named as foreign,
    // with its object and the sequence it claims.
    let foreign: Vec<(String, u64)> = report["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["object"].as_str().unwrap().to_string(),
                f["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(foreign, vec![(format!("{acme_ns}/receipt-forged"), s)], "{report}");
    println!("mom verify --cluster named: {found:?}");

    // The tenants see it too, from their own namespaces only.
    let (ok, report) = common::mom_verify(&["--tenant-bundle", acme_ns, "--public-key", &published]);
    assert!(!ok);
    assert_eq!(
        bundle_problems(&report),
        BTreeSet::from([(e, "edited".to_string()), (s, "edited".to_string())]),
        "{report}"
    );
    let (ok, report) = common::mom_verify(&["--tenant-bundle", globex_ns, "--public-key", &published]);
    assert!(!ok);
    assert_eq!(
        bundle_problems(&report),
        BTreeSet::from([(d, "missing".to_string())]),
        "{report}"
    );

    // Leave the cluster as found: the policy goes with its binding.
    let policy_doc = policy
        .iter()
        .find(|d| d.contains("kind: ValidatingAdmissionPolicy\n"))
        .unwrap();
    let _ = common::kubectl(
        &["delete", "validatingadmissionpolicy", &manifest_name(policy_doc)],
        None,
    );
}
