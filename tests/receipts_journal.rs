//! The writer's batch journal against the real apiserver: a leader that died between the
//! creates of a batch left a hole in the stored chain and the batch in the journal ConfigMap;
//! the next writer re-creates the missing receipts, byte for byte, before writing anything, so
//! `mom verify --cluster` finds the chain whole. A damaged journal stops writing with an error
//! that names its line, and nothing is written past it.
//!
//! No operator runs in this test binary: the test's writers are the chain's only writers.

mod common;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mom::operator::crd::Receipt as ReceiptObject;
use mom::operator::receipts::{ReceiptWriter, Recording, journal_text, receipt_object};
use mom::operator::store::{JOURNAL_CONFIGMAP, JOURNAL_KEY, KEY_FIELD, KEY_SECRET};
use mom::receipts::chain::{ChainBuilder, ChainHead};
use mom::receipts::signing::Signer;
use mom::receipts::{Action, Level, Receipt, ReceiptDraft, SubjectRef};

const OPERATOR_NS: &str = "mom-system";

fn subject(ns: &str, name: &str) -> SubjectRef {
    SubjectRef {
        api_version: "mom.hypersync.io/v1alpha1".into(),
        kind: "GeometricAgent".into(),
        namespace: ns.into(),
        name: name.into(),
        uid: None,
    }
}

fn decision(to: u32) -> serde_json::Value {
    serde_json::json!({"kind": "placement.scale", "from": 0, "to": to, "target": []})
}

async fn record(writer: &ReceiptWriter, ns: &str, name: &str) -> Result<Receipt, String> {
    writer
        .record(
            Recording::default(),
            Action::Spawn,
            subject(ns, name),
            decision(1),
            &serde_json::json!({"agent": name}),
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "full_audit recorded nothing".to_string())
}

async fn ensure_operator_namespace(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": OPERATOR_NS}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating {OPERATOR_NS}: {e}"),
    }
}

async fn write_journal(client: &kube::Client, text: String) {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), OPERATOR_NS);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": JOURNAL_CONFIGMAP},
        "data": {JOURNAL_KEY: text},
    }))
    .unwrap();
    maps.patch(
        JOURNAL_CONFIGMAP,
        &PatchParams::apply("mom-operator").force(),
        &Patch::Apply(&cm),
    )
    .await
    .unwrap();
}

/// `mom verify --cluster` trusting the writer's published key; the (sequence, kind) of every
/// problem at or after `from`.
async fn problems_from(client: &kube::Client, from: u64) -> BTreeSet<(u64, String)> {
    let keys = common::published_keys(client).await;
    let mut args = vec!["--cluster"];
    for key in &keys {
        args.extend(["--public-key", key.as_str()]);
    }
    let (_, report) = common::mom_verify(&args);
    report["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["sequence"].as_u64().unwrap(), p["kind"].as_str().unwrap().to_string()))
        .filter(|(s, _)| *s >= from)
        .collect()
}

#[tokio::test]
async fn a_batch_interrupted_between_its_creates_is_completed_from_the_journal_and_a_damaged_journal_is_named() {
    common::install_crds();
    let client = common::client().await;
    ensure_operator_namespace(&client).await;
    let ns = common::TestNamespace::new("journal").await;

    // A writer's first receipt: the signing key exists from here on.
    let first = record(
        &ReceiptWriter::new(client.clone(), OPERATOR_NS.into()),
        &ns.name,
        "before",
    )
    .await
    .unwrap();

    // What a leader killed mid-batch leaves: three receipts sealed after `first`, the batch in
    // the journal, and only the last one created.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NS);
    let seed = secrets.get(KEY_SECRET).await.unwrap().data.unwrap()[KEY_FIELD]
        .0
        .clone();
    let signer = Signer::from_hex(String::from_utf8(seed).unwrap().trim()).unwrap();
    let mut chain = ChainBuilder::after(
        signer,
        ChainHead {
            sequence: first.sequence,
            hash: first.hash.clone(),
        },
    );
    let batch: Vec<Receipt> = (0..3)
        .map(|i| {
            chain
                .seal(ReceiptDraft {
                    action: Action::Spawn,
                    subject: subject(&ns.name, &format!("batch-{i}")),
                    decision: decision(1),
                    inputs_digest: mom::receipts::inputs_digest(&serde_json::json!({"i": i})).unwrap(),
                    time: "2026-11-26T13:00:00Z".into(),
                    level: Level::FullAudit,
                })
                .unwrap()
        })
        .collect();
    let entries: Vec<(&Receipt, &str)> = batch.iter().map(|r| (r, ns.name.as_str())).collect();
    write_journal(&client, journal_text(&entries).unwrap()).await;
    let receipts: Api<ReceiptObject> = Api::namespaced(client.clone(), &ns.name);
    receipts
        .create(&PostParams::default(), &receipt_object(&batch[2], &ns.name).unwrap())
        .await
        .unwrap();
    let holes = problems_from(&client, first.sequence).await;
    // One gap, reported at its start (receipts batch[0]..=batch[1]).
    assert_eq!(
        holes,
        BTreeSet::from([(batch[0].sequence, "missing".to_string())]),
        "the simulated crash should leave one gap of two receipts"
    );

    // The next leader's writer completes the batch before its own receipt.
    let next = ReceiptWriter::new(client.clone(), OPERATOR_NS.into());
    let after = record(&next, &ns.name, "after").await.unwrap();
    assert_eq!(after.sequence, batch[2].sequence + 1);
    assert_eq!(after.prev_hash, batch[2].hash);
    for sealed in &batch[..2] {
        let name = format!("receipt-{:010}", sealed.sequence);
        let stored: Receipt =
            serde_json::from_value(serde_json::to_value(receipts.get(&name).await.unwrap().spec).unwrap()).unwrap();
        assert_eq!(&stored, sealed, "re-created {name} differs from the sealed receipt");
    }
    assert_eq!(problems_from(&client, first.sequence).await, BTreeSet::new());

    // A damaged journal: the writer refuses to write, naming the line; nothing is written.
    write_journal(&client, "{\"namespace\": \"x\", \"receipt\": 42}\n".into()).await;
    let blocked = ReceiptWriter::new(client.clone(), OPERATOR_NS.into());
    let err = record(&blocked, &ns.name, "blocked").await.unwrap_err();
    assert!(err.contains("mom-receipt-journal line 1"), "{err}");
    assert!(
        receipts
            .get_opt(&format!("receipt-{:010}", after.sequence + 1))
            .await
            .unwrap()
            .is_none(),
        "a receipt was written past a damaged journal"
    );
    // Once the admin removes it, the chain goes on where it was.
    Api::<ConfigMap>::namespaced(client.clone(), OPERATOR_NS)
        .delete(JOURNAL_CONFIGMAP, &DeleteParams::default())
        .await
        .unwrap();
    let resumed = record(&blocked, &ns.name, "resumed").await.unwrap();
    assert_eq!(resumed.sequence, after.sequence + 1);
    assert_eq!(problems_from(&client, first.sequence).await, BTreeSet::new());
}
