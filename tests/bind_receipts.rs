//! Receipts for the extender's binds, one writer at a time, on the real control plane: every
//! pod the real `mom-scheduler` binds through MOM's extender leaves one `bind` receipt naming
//! the pod and the node, and the chain verifies (and replays); at `full_audit` a bind whose
//! receipt the apiserver rejects is not made (the scheduler retries, the pod gets a
//! `ReceiptWriteFailed` Warning) until the receipt can be written; a replica that does not hold
//! the Lease refuses to bind and records nothing.

mod common;
mod placement_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use mom::operator::crd::Receipt;
use mom::operator::crd::receipt::ReceiptAction;
use placement_support::{agent, running_pods};

/// A scheduler name no scheduler runs under: MOM binds such pods (it is one of its
/// `--scheduler-name`s), but only when a test calls `/bind` by hand.
const BY_HAND: &str = "bind-by-hand";

/// MOM running at `full_audit` (the level every test of this binary needs).
fn setup() -> &'static common::Mom {
    let mom = common::mom_with(&["--scheduler-name", "mom-scheduler", "--scheduler-name", BY_HAND]);
    common::apply_test_momconfig("full_audit");
    mom
}

async fn bind_receipts(ns: &common::TestNamespace) -> Vec<Receipt> {
    let receipts: Api<Receipt> = Api::namespaced(ns.client(), &ns.name);
    let mut list: Vec<Receipt> = receipts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.action == ReceiptAction::Bind)
        .collect();
    list.sort_by_key(|r| r.spec.sequence);
    list
}

/// `mom verify --cluster --replay --format json` (trusting the published key).
fn verify_cluster() -> serde_json::Value {
    let cp = common::control_plane();
    let out = Command::new(env!("CARGO_BIN_EXE_mom"))
        .args(["verify", "--cluster", "--replay", "--format", "json"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

async fn lease_holder(client: kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client, "mom-system")
        .get("mom-operator-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// A plain pod for `scheduler` (one that does not exist stays Pending: nobody binds it).
fn plain_pod(name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "c", "image": "pause",
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn every_bound_pod_leaves_one_bind_receipt_naming_pod_and_node_and_the_chain_verifies() {
    setup();
    let ns = common::TestNamespace::new("bind-rcpt").await;
    common::apply(&agent(&ns.name, "web", 3, "", ""));
    let placed = running_pods(&ns, "web", 3).await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);

    let want = placed.len();
    let binds = common::eventually("a bind receipt per pod", Duration::from_secs(60), || {
        let ns = &ns;
        async move {
            let binds = bind_receipts(ns).await;
            (binds.len() >= want).then_some(binds)
        }
    })
    .await;
    let mut per_pod: BTreeMap<String, Vec<&Receipt>> = BTreeMap::new();
    for r in &binds {
        per_pod.entry(r.spec.subject.name.clone()).or_default().push(r);
    }
    assert_eq!(
        per_pod.keys().cloned().collect::<Vec<_>>(),
        placed.keys().cloned().collect::<Vec<_>>(),
        "bind receipts name other pods than the bound ones: {binds:#?}"
    );
    for (pod, node) in &placed {
        let rs = &per_pod[pod];
        assert_eq!(rs.len(), 1, "pod {pod} has {} bind receipts", rs.len());
        let spec = &rs[0].spec;
        let uid = pods.get(pod).await.unwrap().metadata.uid;
        assert_eq!(
            (spec.subject.api_version.as_str(), spec.subject.kind.as_str()),
            ("v1", "Pod")
        );
        assert_eq!(spec.subject.namespace, ns.name);
        assert_eq!(spec.subject.uid, uid, "the receipt names another pod object than {pod}");
        assert_eq!(spec.decision["kind"], "placement.bind");
        assert_eq!(spec.decision["node"].as_str(), Some(node.as_str()), "{pod}");
        assert_eq!(spec.decision["pod"].as_str(), Some(pod.as_str()));
        assert_eq!(spec.decision["agent"], "web");
        assert!(
            spec.decision["output"]["distanceFromTarget"].as_f64().is_some(),
            "the bind of an agent pod records its distance from the agent's target: {}",
            spec.decision
        );
    }

    // The chain (with the bind receipts in it) verifies from our first receipt on, and each
    // bind decision replays from its recorded inputs.
    let first = binds[0].spec.sequence;
    let report = verify_cluster();
    let problems: Vec<&serde_json::Value> = report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["sequence"].as_i64().unwrap_or(-1) >= first)
        .collect();
    assert!(problems.is_empty(), "the chain is not clean: {problems:?}");
    let ours: Vec<i64> = binds.iter().map(|r| r.spec.sequence).collect();
    let mismatches: Vec<&serde_json::Value> = report["replay"]["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| ours.contains(&m["sequence"].as_i64().unwrap_or(-1)))
        .collect();
    assert!(mismatches.is_empty(), "bind decisions do not replay: {mismatches:?}");
    assert!(
        report["replay"]["matched"].as_u64().unwrap() >= ours.len() as u64,
        "{}",
        report["replay"]
    );
}

#[tokio::test]
async fn at_full_audit_a_bind_whose_receipt_is_rejected_is_not_made_until_the_receipt_can_be_written() {
    setup();
    let ns = common::TestNamespace::new("bind-denied").await;
    let n = &ns.name;
    // A real rejection: an admission policy refuses bind Receipts whose pod is in this
    // namespace, wherever they are stored (the writer falls back to the operator's namespace
    // when a tenant namespace refuses a receipt); spawn receipts still go through.
    let policy = format!("deny-bind-receipts-{n}");
    common::apply(&format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicy",
            "metadata":{{"name":"{policy}"}},
            "spec":{{"failurePolicy":"Fail",
              "matchConstraints":{{"resourceRules":[{{"apiGroups":["mom.hypersync.io"],"apiVersions":["*"],
                 "operations":["CREATE"],"resources":["receipts"]}}]}},
              "validations":[{{"expression":"!has(object.metadata.labels) || object.metadata.labels[?'mom.hypersync.io/action'].orValue('') != 'bind' || object.spec.subject.namespace != '{n}'",
                               "message":"bind receipts are refused in this namespace (test)"}}]}}}}"#
    ));
    common::apply(&format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicyBinding",
            "metadata":{{"name":"{policy}"}},
            "spec":{{"policyName":"{policy}","validationActions":["Deny"]}}}}"#
    ));
    let cleanup = PolicyGuard(policy.clone());
    // Wait until the policy is in force: a server-side dry run of a valid bind receipt is refused.
    let probe = {
        let signer = mom::receipts::Signer::from_seed([9; 32]);
        let mut chain = mom::receipts::ChainBuilder::genesis(signer);
        let inputs = serde_json::json!({"probe": true});
        let receipt = chain
            .seal(mom::receipts::ReceiptDraft {
                action: mom::receipts::Action::Bind,
                subject: mom::receipts::SubjectRef {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    namespace: n.clone(),
                    name: "probe".into(),
                    uid: None,
                },
                decision: serde_json::json!({"kind": "placement.bind"}),
                inputs_digest: mom::receipts::inputs_digest(&inputs).unwrap(),
                time: "2026-11-26T00:00:00Z".into(),
                level: mom::receipts::Level::FullAudit,
            })
            .unwrap();
        serde_json::to_string(&mom::operator::receipts::receipt_object(&receipt, n).unwrap()).unwrap()
    };
    common::eventually("the deny policy to be in force", Duration::from_secs(60), || {
        let probe = probe.clone();
        async move {
            let (ok, _, err) = common::kubectl(&["create", "--dry-run=server", "-f", "-"], Some(&probe));
            (!ok && err.contains("bind receipts are refused")).then_some(())
        }
    })
    .await;

    common::apply(&agent(n, "blocked", 1, "", ""));
    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    let pod_name = common::eventually("the agent's pod", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .first()?
                .metadata
                .name
                .clone()
        }
    })
    .await;
    let events: Api<Event> = Api::namespaced(ns.client(), n);
    let warning = common::eventually(
        "a ReceiptWriteFailed Warning on the pod",
        Duration::from_secs(90),
        || {
            let events = events.clone();
            let pod_name = pod_name.clone();
            async move {
                events
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("ReceiptWriteFailed")
                            && e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod_name.as_str())
                    })
            }
        },
    )
    .await;
    let note = warning.note.unwrap_or_default();
    assert!(
        note.contains(&pod_name) && note.contains("not bound"),
        "the Event does not say which bind was not made: {note}"
    );
    // Not bound, and no bind receipt, while the policy holds: checked once the scheduler has
    // retried the bind and been refused again (the Warning repeated: a second Event or its
    // series count), so the refusal is not a one-off.
    common::eventually(
        "the bind to be retried and refused again",
        Duration::from_secs(90),
        || {
            let (events, pods) = (events.clone(), pods.clone());
            let pod_name = pod_name.clone();
            async move {
                if pods.get(&pod_name).await.ok()?.spec?.node_name.is_some() {
                    return Some(()); // bound: the assertion below names it
                }
                let refusals: i32 = events
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .iter()
                    .filter(|e| {
                        e.reason.as_deref() == Some("ReceiptWriteFailed")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod_name.as_str())
                    })
                    .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                    .sum();
                (refusals >= 2).then_some(())
            }
        },
    )
    .await;
    let pod = pods.get(&pod_name).await.unwrap();
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        None,
        "the pod was bound without its receipt"
    );
    assert!(bind_receipts(&ns).await.is_empty());

    drop(cleanup);
    let placed = running_pods(&ns, "blocked", 1).await;
    let binds = common::eventually("the bind receipt", Duration::from_secs(60), || {
        let ns = &ns;
        async move {
            let b = bind_receipts(ns).await;
            (!b.is_empty()).then_some(b)
        }
    })
    .await;
    assert_eq!(binds.len(), 1, "{binds:#?}");
    assert_eq!(binds[0].spec.subject.name, pod_name);
    assert_eq!(
        binds[0].spec.decision["node"].as_str(),
        placed.get(&pod_name).map(String::as_str)
    );
}

/// Deletes the test's admission policy and its binding when dropped.
struct PolicyGuard(String);

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        let _ = common::kubectl(
            &[
                "delete",
                "validatingadmissionpolicybinding",
                &self.0,
                "--ignore-not-found",
            ],
            None,
        );
        let _ = common::kubectl(
            &["delete", "validatingadmissionpolicy", &self.0, "--ignore-not-found"],
            None,
        );
    }
}

#[tokio::test]
async fn a_replica_that_does_not_hold_the_lease_refuses_to_bind_and_records_nothing() {
    let mom = setup();
    let client = common::client().await;
    // MOM's operator leads before the standby starts (a Lease left by an earlier process
    // expires first), so the standby stays a follower.
    mom.wait_leading().await;
    let dir = std::env::temp_dir().join(format!("mom-bind-standby-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let standby = common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity("bind-standby")
        .text_logs()
        .outside_any_pod()
        .flag("--scheduler-name", BY_HAND)
        .log(dir.join("standby.log"))
        .spawn();
    standby.wait_until_the_extender_serves("the standby's extender");
    let extender = &standby.extender_addr;

    let ns = common::TestNamespace::new("bind-follower").await;
    let pods: Api<Pod> = Api::namespaced(ns.client(), &ns.name);
    let pod = pods
        .create(&PostParams::default(), &plain_pod("unbound", BY_HAND))
        .await
        .unwrap();
    let node = placement_support::node_labels(ns.client())
        .await
        .into_keys()
        .next()
        .expect("a kwok node");
    let body = serde_json::json!({
        "PodName": "unbound",
        "PodNamespace": ns.name,
        "PodUID": pod.metadata.uid.clone().unwrap(),
        "Node": node,
    })
    .to_string();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["--data", &body, &format!("http://{extender}/bind")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = answer["Error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not the leader"),
        "the standby did not refuse the bind: {answer}"
    );
    assert_ne!(
        lease_holder(client.clone()).await.as_deref(),
        Some("bind-standby"),
        "the standby took the Lease meanwhile: the refusal proves nothing"
    );
    // No wait is needed: the extender binds (and writes its receipt first) inside the request,
    // so whatever the standby did is done by the time its answer arrived. The leader's bind of
    // the same request below is the positive control, and its single receipt the barrier.
    let after = pods.get("unbound").await.unwrap();
    assert_eq!(after.spec.and_then(|s| s.node_name), None, "the standby bound the pod");
    assert!(
        Api::<Receipt>::namespaced(ns.client(), &ns.name)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the standby wrote a receipt"
    );
    // The leader's extender would have bound it (the refusal is about leadership, not the pod).
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
        ])
        .args(mom.curl_tls_args())
        .args(["--data", &body, &format!("{}/bind", mom.extender_url)])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["Error"], "", "the leader refused the bind: {answer}");
    let bound = pods.get("unbound").await.unwrap();
    assert_eq!(bound.spec.and_then(|s| s.node_name), Some(node.clone()));
    let binds = bind_receipts(&ns).await;
    assert_eq!(binds.len(), 1, "{binds:#?}");
    assert_eq!(binds[0].spec.decision["node"].as_str(), Some(node.as_str()));
    assert_eq!(binds[0].spec.decision["agent"], serde_json::Value::Null);
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
}
