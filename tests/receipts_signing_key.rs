//! `MomConfig.spec.verification.signingKey` on the real control plane (one of its own: the
//! tests change the cluster-wide MomConfig and the chain from sequence 0 is theirs):
//! - pointed at a custom Secret, the operator hands the chain over (a `receipts.key_rotation`
//!   receipt signed by the old key) and signs every later receipt with the custom key: `mom
//!   verify --cluster` passes trusting that key and the old one, and fails trusting the old one
//!   only (positive control: the key in use really changed);
//! - replacing the seed in that Secret rotates again: the third key is published beside the
//!   others, the second hand-over is in the chain, and `mom verify --cluster` with the published
//!   keys passes across both switches (and fails without the middle key);
//! - a Secret without the named key, or with a malformed seed, gives `SigningKeyReady=False`
//!   naming the Secret, the key and the problem, and a Warning Event; at `full_audit` the agent
//!   waits (no new pod, no receipt) until the key is fixed, then scales (positive control).
//! - a restarted operator that never held the chain's key reads it again from the Secret it was
//!   published from to sign the hand-over; when that key is gone (its seed replaced while no
//!   operator ran) nothing is signed, `SigningKeyReady=False` names the lost key, and the agent
//!   waits until the key is back (positive control).

mod common;

use std::time::Duration;

use kube::api::{Api, ListParams, Patch, PatchParams};
use mom::operator::crd::{GeometricAgent, Receipt as ReceiptObject};
use mom::receipts::{Receipt, Signer};

/// The tests share the control plane's MomConfig `default`: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn setup() -> kube::Client {
    common::use_private_control_plane();
    common::control_plane();
    common::install_crds();
    common::ensure_kwok_nodes(2, 3, 2);
    let _ = common::kubectl(&["create", "namespace", "mom-system"], None);
    common::client().await
}

/// The namespace's name, the namespace kept: its receipts are part of the chain the other test
/// of this binary verifies (deleting it would leave holes). The control plane is this binary's
/// own and goes away with it.
struct Kept {
    name: String,
}

fn keep(ns: common::TestNamespace) -> Kept {
    let name = ns.name.clone();
    std::mem::forget(ns);
    Kept { name }
}

fn start_operator(name: &str) -> common::OperatorProcess {
    let log = common::control_plane()
        .kubeconfig
        .parent()
        .unwrap()
        .join(format!("logs/operator-{name}.log"));
    common::OperatorBuilder::new()
        .namespace("mom-system")
        .identity(name)
        .text_logs()
        .flag("--lease-duration-seconds", "2")
        .flag("--renew-period-seconds", "1")
        .log(log)
        .spawn()
}

/// The test MomConfig at `full_audit`, with `signingKey` when given (`{"name":…,"key":…}`).
fn apply_momconfig(signing_key: Option<serde_json::Value>) {
    let mut verification = serde_json::json!({"level": "full_audit"});
    if let Some(k) = signing_key {
        verification["signingKey"] = k;
    }
    // Replace (not merge) the spec so an earlier signingKey is really gone.
    let doc = serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "MomConfig", "metadata": {"name": "default"},
        "spec": {"objectives": {"performance": 0.55, "cost": 0.15, "reliability": 0.2, "sustainability": 0.1},
                 "geometry": {"curvature": 1.0, "dimension": 2, "routingAlgorithm": "greedy_forwarding",
                              "topologyKeys": ["topology.kubernetes.io/region", "topology.kubernetes.io/zone", "kubernetes.io/hostname"]},
                 "verification": verification}
    });
    common::apply(&doc.to_string());
}

/// Creates Secret `mom-system/name` with `data`, or replaces its data.
fn put_secret(name: &str, data: &[(&str, &[u8])]) {
    let data: std::collections::BTreeMap<String, k8s_openapi::ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
        .collect();
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "mom-system"}, "data": data});
    // Applied, not deleted and created again: the operator generates a named Secret that is
    // absent, and could do so between the two.
    common::apply(&doc.to_string());
}

fn agent(ns: &str, replicas: i32) -> String {
    serde_json::json!({
        "apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
        "metadata": {"name": "signed", "namespace": ns},
        "spec": {"workloadType": "batch", "replicas": replicas,
                 "template": {"spec": {"containers": [{"name": "c", "image": "pause"}]}}}
    })
    .to_string()
}

async fn scale(client: &kube::Client, ns: &str, replicas: i32) {
    Api::<GeometricAgent>::namespaced(client.clone(), ns)
        .patch(
            "signed",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

/// Every stored receipt, by sequence.
async fn chain(client: &kube::Client) -> Vec<Receipt> {
    let mut out: Vec<Receipt> = Api::<ReceiptObject>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .map(|o| serde_json::from_value(serde_json::to_value(&o.spec).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|r| r.sequence);
    out
}

/// The hand-over receipts in the chain: (sequence, from key id, to key id, signed by).
async fn handovers(client: &kube::Client) -> Vec<(u64, String, String, String)> {
    chain(client)
        .await
        .iter()
        .filter(|r| r.decision["kind"] == "receipts.key_rotation")
        .map(|r| {
            (
                r.sequence,
                r.decision["fromKeyId"].as_str().unwrap_or_default().to_string(),
                r.decision["toKeyId"].as_str().unwrap_or_default().to_string(),
                r.key_id.clone(),
            )
        })
        .collect()
}

/// The signer of the seed in Secret `mom-system/name` under `key`.
async fn signer_in_secret(client: &kube::Client, name: &str, key: &str) -> Signer {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "mom-system")
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading Secret {name}: {e}"));
    let bytes = secret
        .data
        .unwrap_or_default()
        .remove(key)
        .unwrap_or_else(|| panic!("Secret {name} has no {key}"));
    mom::operator::receipts::parse_seed(&bytes.0).unwrap()
}

fn condition(kind: &str) -> (String, String, String) {
    let (_, out, _) = common::kubectl(
        &[
            "get",
            "momconfig",
            "default",
            "-o",
            &format!(
                "jsonpath={{.status.conditions[?(@.type==\"{kind}\")].status}}|{{.status.conditions[?(@.type==\"{kind}\")].reason}}|{{.status.conditions[?(@.type==\"{kind}\")].message}}"
            ),
        ],
        None,
    );
    let mut parts = out.splitn(3, '|').map(str::to_string);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// `mom verify --cluster --all-signatures` trusting every published key but `left_out` (the
/// chain of this control plane may hold another test's keys too).
async fn verify_without(client: &kube::Client, left_out: &[&Signer]) -> (bool, serde_json::Value) {
    let excluded: Vec<String> = left_out.iter().map(|k| k.public_hex()).collect();
    let keys: Vec<String> = common::published_keys(client)
        .await
        .into_iter()
        .filter(|k| !excluded.contains(k))
        .collect();
    let mut args = vec!["--cluster", "--all-signatures"];
    for h in &keys {
        args.extend(["--public-key", h.as_str()]);
    }
    common::mom_verify(&args)
}

fn problem_kinds(report: &serde_json::Value) -> Vec<String> {
    report["report"]["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}@{}", p["kind"].as_str().unwrap_or(""), p["sequence"]))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_are_signed_with_the_referenced_key_and_rotations_are_recorded_and_verify() {
    let _serial = SERIAL.lock().await;
    let client = setup().await;
    apply_momconfig(None);
    let ns = common::TestNamespace::new("signing").await;
    let ns = keep(ns);
    let _operator = start_operator("signing-key");

    // Today's default: receipts signed with the key in mom-system/mom-receipt-signing-key.
    common::apply(&agent(&ns.name, 1));
    common::eventually("the agent's first pod", Duration::from_secs(90), || async {
        (common::live_pods_of(&client, &ns.name, "signed").await == 1).then_some(())
    })
    .await;
    let default_key = signer_in_secret(&client, "mom-receipt-signing-key", "ed25519-seed").await;
    let default_id = default_key.key_id().to_string();
    // This test's receipts so far (another test of this binary may have left the chain on
    // another key: the operator handed it back to the default one first).
    let before: Vec<Receipt> = chain(&client)
        .await
        .into_iter()
        .filter(|r| r.subject.namespace == ns.name)
        .collect();
    assert!(
        !before.is_empty() && before.iter().all(|r| r.key_id == default_id),
        "{before:?}"
    );

    // signingKey → a custom Secret (namespace omitted: the operator's), seed as 64 hex digits.
    let a = Signer::from_seed([0xA1; 32]);
    put_secret("receipt-key-custom", &[("seed", a.secret_hex().as_bytes())]);
    apply_momconfig(Some(serde_json::json!({"name": "receipt-key-custom", "key": "seed"})));
    let first = common::eventually("the hand-over to the custom key", Duration::from_secs(60), || async {
        handovers(&client).await.into_iter().find(|h| h.2 == a.key_id())
    })
    .await;
    assert_eq!(
        (first.1.as_str(), first.3.as_str()),
        (default_id.as_str(), default_id.as_str()),
        "the hand-over names the default key and is signed by it: {first:?}"
    );
    scale(&client, &ns.name, 2).await;
    common::eventually("the agent scaled to 2", Duration::from_secs(90), || async {
        (common::live_pods_of(&client, &ns.name, "signed").await == 2).then_some(())
    })
    .await;
    let after_a = chain(&client).await;
    let signed_by_a: Vec<&Receipt> = after_a.iter().filter(|r| r.sequence > first.0).collect();
    assert!(!signed_by_a.is_empty(), "no receipt after the hand-over");
    assert!(
        signed_by_a.iter().all(|r| r.key_id == a.key_id()),
        "receipts after the hand-over not all signed by the custom key {}: {:?}",
        a.key_id(),
        signed_by_a.iter().map(|r| (r.sequence, &r.key_id)).collect::<Vec<_>>()
    );
    assert!(
        common::published_keys(&client).await.contains(&a.public_hex()),
        "the custom key is not published"
    );
    let (ok, report) = verify_without(&client, &[]).await;
    assert!(
        ok,
        "verify trusting the published keys (the custom one among them): {report}"
    );
    // Positive control: without the custom key, what it signed does not verify.
    let (ok, report) = verify_without(&client, &[&a]).await;
    assert!(!ok, "receipts signed with the custom key verified without it: {report}");
    // Its receipts are foreign then, and the hand-over to it is not accepted.
    assert!(report["foreign"].to_string().contains(a.key_id()), "{report}");
    assert!(
        problem_kinds(&report).iter().any(|k| k.starts_with("key_handover")),
        "{report}"
    );
    let (status, _, message) = common::eventually(
        "SigningKeyReady naming the custom key",
        Duration::from_secs(30),
        || async {
            let c = condition("SigningKeyReady");
            c.2.contains(a.key_id()).then_some(c)
        },
    )
    .await;
    assert!(
        status == "True" && message.contains("mom-system/receipt-key-custom"),
        "{message}"
    );

    // Rotation: a new seed in the same Secret.
    let b = Signer::from_seed([0xB2; 32]);
    put_secret("receipt-key-custom", &[("seed", b.secret_hex().as_bytes())]);
    let second = common::eventually(
        "the hand-over to the replaced seed",
        Duration::from_secs(60),
        || async { handovers(&client).await.into_iter().find(|h| h.2 == b.key_id()) },
    )
    .await;
    assert!(second.0 > first.0);
    assert_eq!(
        (second.1.as_str(), second.3.as_str()),
        (a.key_id(), a.key_id()),
        "{second:?}"
    );
    scale(&client, &ns.name, 3).await;
    common::eventually("the agent scaled to 3", Duration::from_secs(90), || async {
        (common::live_pods_of(&client, &ns.name, "signed").await == 3).then_some(())
    })
    .await;
    let after_b = chain(&client).await;
    assert!(
        after_b
            .iter()
            .filter(|r| r.sequence > second.0)
            .all(|r| r.key_id == b.key_id())
    );
    assert!(after_b.iter().any(|r| r.sequence > second.0));

    // Every key is published, and `mom verify --cluster` with the published keys passes
    // across both switches.
    let published = common::published_keys(&client).await;
    for k in [&default_key, &a, &b] {
        assert!(
            published.contains(&k.public_hex()),
            "{} not published: {published:?}",
            k.key_id()
        );
    }
    let (ok, report) = common::mom_verify(&["--cluster", "--all-signatures"]);
    assert!(ok, "mom verify --cluster across two rotations: {report}");
    let (ok, report) = common::verify_cluster_with_published_keys(&client).await;
    assert!(ok, "{report}");
    // Without the middle key the hand-over to b is not verifiable.
    let (ok, report) = verify_without(&client, &[&a]).await;
    assert!(!ok, "verified without the middle key: {report}");
    assert!(
        problem_kinds(&report).iter().any(|k| k.starts_with("key_handover")),
        "{report}"
    );
    println!(
        "chain: {} receipts; hand-overs at {} ({} -> {}) and {} ({} -> {})",
        after_b.len(),
        first.0,
        first.1,
        first.2,
        second.0,
        second.1,
        second.2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_without_the_key_or_with_a_malformed_seed_is_named_and_actions_wait() {
    let _serial = SERIAL.lock().await;
    let client = setup().await;
    apply_momconfig(None);
    let ns = common::TestNamespace::new("badkey").await;
    let ns = keep(ns);
    let _operator = start_operator("bad-key");
    common::apply(&agent(&ns.name, 1));
    common::eventually("the agent's first pod", Duration::from_secs(90), || async {
        (common::live_pods_of(&client, &ns.name, "signed").await == 1).then_some(())
    })
    .await;
    // Positive control: the default key is ready (the condition may still show what an earlier
    // test's operator left until this operator's status loop runs).
    common::eventually(
        "SigningKeyReady=True for the default key",
        Duration::from_secs(30),
        || async { (condition("SigningKeyReady").0 == "True").then_some(()) },
    )
    .await;

    // The Secret exists but has no key "seed".
    put_secret("receipt-key-broken", &[("other", b"not the seed")]);
    apply_momconfig(Some(serde_json::json!({"name": "receipt-key-broken", "key": "seed"})));
    let (_, reason, message) = common::eventually(
        "SigningKeyReady=False for the missing key",
        Duration::from_secs(60),
        || async {
            let c = condition("SigningKeyReady");
            (c.0 == "False").then_some(c)
        },
    )
    .await;
    assert_eq!(reason, "SigningKeyInvalid", "{message}");
    assert!(
        message.contains("mom-system/receipt-key-broken")
            && message.contains("\"seed\"")
            && message.contains("has no data key")
            && message.contains("other"),
        "{message}"
    );
    let head = chain(&client).await.last().map(|r| r.sequence);

    // At full_audit the action waits: the scale to 2 is refused until the key is usable.
    scale(&client, &ns.name, 2).await;
    common::eventually(
        "ReceiptsWritable=False after the refused scale",
        Duration::from_secs(60),
        || async {
            let c = condition("ReceiptsWritable");
            (c.0 == "False" && c.2.contains("receipt-key-broken")).then_some(())
        },
    )
    .await;
    assert_eq!(
        common::live_pods_of(&client, &ns.name, "signed").await,
        1,
        "a pod was created without a receipt"
    );
    assert_eq!(
        chain(&client).await.last().map(|r| r.sequence),
        head,
        "a receipt was written with the key unusable"
    );
    let (ok, events, err) = common::kubectl(
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=SigningKeyInvalid",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        events.contains("receipt-key-broken"),
        "no SigningKeyInvalid Event: {events}"
    );

    // Malformed seed under the right key: named too.
    put_secret("receipt-key-broken", &[("seed", b"0123")]);
    common::eventually(
        "SigningKeyReady=False for the malformed seed",
        Duration::from_secs(60),
        || async {
            let c = condition("SigningKeyReady");
            (c.0 == "False" && c.2.contains("not 64 hex digits")).then_some(())
        },
    )
    .await;
    assert_eq!(common::live_pods_of(&client, &ns.name, "signed").await, 1);

    // Positive control: a valid seed there, and the waiting action proceeds, signed by it after
    // a hand-over.
    let c = Signer::from_seed([0xC3; 32]);
    put_secret("receipt-key-broken", &[("seed", c.secret_hex().as_bytes())]);
    common::eventually(
        "the agent scaled to 2 once the key is fixed",
        Duration::from_secs(90),
        || async { (common::live_pods_of(&client, &ns.name, "signed").await == 2).then_some(()) },
    )
    .await;
    let (status, _, message) = common::eventually(
        "SigningKeyReady=True after the fix",
        Duration::from_secs(30),
        || async {
            let c = condition("SigningKeyReady");
            (c.0 == "True").then_some(c)
        },
    )
    .await;
    assert!(message.contains(c.key_id()), "{status}: {message}");
    assert!(handovers(&client).await.iter().any(|h| h.2 == c.key_id()));
    let (ok, report) = common::mom_verify(&["--cluster", "--all-signatures"]);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_hands_over_with_the_old_secret_and_waits_when_the_old_key_is_gone() {
    let _serial = SERIAL.lock().await;
    let client = setup().await;
    let ns = common::TestNamespace::new("restart").await;
    let ns = keep(ns);
    let d = Signer::from_seed([0xD4; 32]);
    put_secret("receipt-key-d", &[("seed", d.secret_hex().as_bytes())]);
    apply_momconfig(Some(serde_json::json!({"name": "receipt-key-d", "key": "seed"})));
    let mut first = start_operator("restart-1");
    common::apply(&agent(&ns.name, 1));
    common::eventually("the agent's first pod", Duration::from_secs(90), || async {
        (common::live_pods_of(&client, &ns.name, "signed").await == 1).then_some(())
    })
    .await;
    common::eventually("a receipt signed with key d", Duration::from_secs(30), || async {
        chain(&client)
            .await
            .iter()
            .any(|r| r.subject.namespace == ns.name && r.key_id == d.key_id())
            .then_some(())
    })
    .await;
    first.kill();

    // While no operator runs, signingKey moves to another Secret: the next operator never held
    // key d, and reads it again from the Secret it was published from.
    let e = Signer::from_seed([0xE5; 32]);
    put_secret("receipt-key-e", &[("seed", e.secret_hex().as_bytes())]);
    apply_momconfig(Some(serde_json::json!({"name": "receipt-key-e", "key": "seed"})));
    let mut second = start_operator("restart-2");
    scale(&client, &ns.name, 2).await;
    common::eventually("the agent scaled to 2", Duration::from_secs(90), || async {
        (common::live_pods_of(&client, &ns.name, "signed").await == 2).then_some(())
    })
    .await;
    let handover = handovers(&client)
        .await
        .into_iter()
        .find(|h| h.2 == e.key_id())
        .expect("no hand-over to key e");
    assert_eq!(
        (handover.1.as_str(), handover.3.as_str()),
        (d.key_id(), d.key_id()),
        "{handover:?}"
    );
    second.kill();

    // While no operator runs, the seed in that Secret is replaced: key e, which the chain is
    // signed with, is gone. Nothing may be signed with the new key without a hand-over.
    let f = Signer::from_seed([0xF6; 32]);
    put_secret("receipt-key-e", &[("seed", f.secret_hex().as_bytes())]);
    let head = chain(&client).await.last().map(|r| r.sequence);
    let _third = start_operator("restart-3");
    scale(&client, &ns.name, 3).await;
    let (_, reason, message) = common::eventually(
        "SigningKeyReady=False naming the lost key",
        Duration::from_secs(60),
        || async {
            let c = condition("SigningKeyReady");
            (c.0 == "False" && c.2.contains(e.key_id())).then_some(c)
        },
    )
    .await;
    assert_eq!(reason, "SigningKeyInvalid");
    assert!(
        message.contains("no longer readable") && message.contains(f.key_id()),
        "{message}"
    );
    common::eventually(
        "ReceiptsWritable=False after the refused scale",
        Duration::from_secs(60),
        || async {
            let c = condition("ReceiptsWritable");
            (c.0 == "False" && c.2.contains(e.key_id())).then_some(())
        },
    )
    .await;
    assert_eq!(common::live_pods_of(&client, &ns.name, "signed").await, 2);
    assert_eq!(chain(&client).await.last().map(|r| r.sequence), head);
    assert!(!handovers(&client).await.iter().any(|h| h.2 == f.key_id()));

    // Positive control: key e back in its Secret, and the waiting scale proceeds.
    put_secret("receipt-key-e", &[("seed", e.secret_hex().as_bytes())]);
    common::eventually(
        "the agent scaled to 3 once key e is back",
        Duration::from_secs(90),
        || async { (common::live_pods_of(&client, &ns.name, "signed").await == 3).then_some(()) },
    )
    .await;
    let (ok, report) = common::mom_verify(&["--cluster", "--all-signatures"]);
    assert!(ok, "{report}");
}
