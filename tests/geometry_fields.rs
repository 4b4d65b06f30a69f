//! MomConfig `spec.geometry` fields on the real control plane (kube-scheduler `mom-scheduler` +
//! MOM's extender, kwok nodes over 2 regions × 3 zones × 2 nodes): `dimension` sets how many
//! coordinates nodes and agents have, what the MomConfig status reports and what length
//! strategy coordinates must have. Each test fails when its field is ignored.
//!
//! The tests change the cluster-wide MomConfig `default`, so they take turns ([`MOMCONFIG`])
//! and put back the test MomConfig (dimension 2) when they end.

mod common;
mod placement_support;

use placement_support::*;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use mom::operator::crd::momconfig::MomConfigStatus;
use mom::operator::crd::{GeometricAgent, MomConfig, OrchestrationStrategy};

static MOMCONFIG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn patch_momconfig(patch: serde_json::Value) {
    let (ok, _, err) = common::kubectl(
        &[
            "patch",
            "momconfig",
            "default",
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
    assert!(ok, "patching MomConfig default with {patch}: {err}");
}

/// The MomConfig `default` status once `check` accepts it.
async fn momconfig_status<T>(client: kube::Client, what: &str, check: impl Fn(&MomConfigStatus) -> Option<T>) -> T {
    let api: Api<MomConfig> = Api::all(client);
    common::eventually(what, Duration::from_secs(60), || {
        let api = api.clone();
        let status = async move { api.get("default").await.ok()?.status };
        let check = &check;
        async move { check(&status.await?) }
    })
    .await
}

fn ready(conditions: &[Condition]) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn position_len(agents: &Api<GeometricAgent>, name: &str, len: usize) -> Vec<f64> {
    common::eventually(
        &format!("agent {name} with a position of {len} coordinates"),
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            async move {
                let p = agents.get(name).await.ok()?.status?.position?.coordinates;
                (p.len() == len).then_some(p)
            }
        },
    )
    .await
}

/// `status.position.nearest` names a node of the cluster with that node's region and zone
/// labels, and a finite distance ≥ 0 (the position in readable form).
async fn nearest_is_a_node_with_its_labels(agents: &Api<GeometricAgent>, name: &str) {
    let nearest = common::eventually(
        &format!("agent {name} with status.position.nearest"),
        Duration::from_secs(60),
        || {
            let agents = agents.clone();
            async move { agents.get(name).await.ok()?.status?.position?.nearest }
        },
    )
    .await;
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(common::client().await)
        .get(&nearest.node)
        .await
        .unwrap_or_else(|e| panic!("nearest names node {}, which is not there: {e}", nearest.node));
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(
        nearest.region.as_ref(),
        labels.get("topology.kubernetes.io/region"),
        "{nearest:?}"
    );
    assert_eq!(
        nearest.zone.as_ref(),
        labels.get("topology.kubernetes.io/zone"),
        "{nearest:?}"
    );
    assert!(nearest.zone.is_some(), "{nearest:?}");
    assert!(nearest.distance.is_finite() && nearest.distance >= 0.0, "{nearest:?}");
}

async fn strategy_reason(strategies: &Api<OrchestrationStrategy>, name: &str, reason: &str) -> (String, String) {
    common::eventually(
        &format!("strategy {name} Ready with reason {reason}"),
        Duration::from_secs(60),
        || {
            let strategies = strategies.clone();
            async move {
                let (status, r, message) = ready(&strategies.get(name).await.ok()?.status?.conditions)?;
                (r == reason).then_some((status, message))
            }
        },
    )
    .await
}

#[tokio::test]
async fn dimension_sets_the_coordinates_of_every_position_and_the_momconfig_status_reports_it() {
    let _turn = MOMCONFIG.lock().await;
    setup();
    let ns = common::TestNamespace::new("dimension").await;
    let n = &ns.name;
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), n);
    let strategies: Api<OrchestrationStrategy> = Api::namespaced(ns.client(), n);
    let eight: Vec<f64> = (1..=8).map(|i| 0.01 * i as f64).collect();
    common::apply(&strategy(
        n,
        "eight",
        &format!(
            r#""geometricAffinity":{{"coordinates":{}}}"#,
            serde_json::to_string(&eight).unwrap()
        ),
        None,
    ));
    common::apply(&agent(n, "probe", 1, "", ""));
    common::apply(&agent(n, "pinned", 1, r#","strategyRef":{"name":"eight"}"#, ""));

    // Control: at dimension 2 (the test MomConfig) everything has 2 coordinates and the
    // 8-entry coordinates are the wrong length.
    momconfig_status(ns.client(), "embeddingDimension 2", |s| {
        (s.embedding_dimension == Some(2)).then_some(())
    })
    .await;
    position_len(&agents, "probe", 2).await;
    nearest_is_a_node_with_its_labels(&agents, "probe").await;
    let (status, message) = strategy_reason(&strategies, "eight", "CoordinatesWrongDimension").await;
    assert_eq!(status, "False");
    assert!(
        message.contains("has 8 entries") && message.contains("in 2 dimensions"),
        "{message}"
    );

    patch_momconfig(serde_json::json!({"spec": {"geometry": {"dimension": 8}}}));
    let (distortion, worst, map, ready_message) = momconfig_status(ns.client(), "embeddingDimension 8", |s| {
        (s.embedding_dimension == Some(8)).then(|| {
            (
                s.embedding_distortion,
                s.embedding_max_distortion,
                s.embedding_map,
                ready(&s.conditions).map(|c| c.2).unwrap_or_default(),
            )
        })
    })
    .await;
    let distortion = distortion.expect("embeddingDistortion");
    assert!(
        distortion.is_finite() && (0.0..1.0).contains(&distortion),
        "{distortion}"
    );
    assert!(worst.is_some_and(|w| w.is_finite() && w >= 1.0), "{worst:?}");
    assert!(map.is_some_and(|m| m > 0.0 && m <= 1.0), "{map:?}");
    assert!(ready_message.contains("in 8 dimensions"), "{ready_message}");
    // The agents were not touched: the operator re-targeted them in the new dimension.
    position_len(&agents, "probe", 8).await;
    let pinned = position_len(&agents, "pinned", 8).await;
    assert!(
        pinned.iter().zip(&eight).all(|(a, b)| (a - b).abs() < 1e-9),
        "the 8 explicit coordinates are the target now: {pinned:?}"
    );
    let (status, _) = strategy_reason(&strategies, "eight", "Reconciled").await;
    assert_eq!(status, "True");
    // Placement keeps working in 8 dimensions: a new replica binds.
    let (ok, _, err) = common::kubectl(&["scale", "geometricagent", "probe", "-n", n, "--replicas", "2"], None);
    assert!(ok, "{err}");
    running_pods(&ns, "probe", 2).await;

    // Back to 2: re-embedded again, the 8 coordinates are the wrong length again.
    patch_momconfig(serde_json::json!({"spec": {"geometry": {"dimension": 2}}}));
    momconfig_status(ns.client(), "embeddingDimension 2 again", |s| {
        (s.embedding_dimension == Some(2)).then_some(())
    })
    .await;
    position_len(&agents, "probe", 2).await;
    strategy_reason(&strategies, "eight", "CoordinatesWrongDimension").await;
}

/// Latencies by the nodes' labels (1 ms within a zone, 5 ms within a region, 40 ms across),
/// except that `moved` is measured as if it stood in zone `to_zone`.
fn latency_matrix(
    labels: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    moved: Option<(&str, &str)>,
) -> serde_json::Value {
    let place = |node: &str| -> (String, String) {
        let l = &labels[node];
        let region = l[mom::labels::REGION_LABEL].clone();
        let zone = l[mom::labels::ZONE_LABEL].clone();
        match moved {
            Some((m, to_zone)) if m == node => {
                let other = labels
                    .values()
                    .find(|l| l[mom::labels::ZONE_LABEL] == to_zone)
                    .expect("the zone exists");
                (other[mom::labels::REGION_LABEL].clone(), to_zone.to_string())
            }
            _ => (region, zone),
        }
    };
    let mut rows = serde_json::Map::new();
    for a in labels.keys() {
        let mut row = serde_json::Map::new();
        for b in labels.keys().filter(|b| *b != a) {
            let (pa, pb) = (place(a), place(b));
            let ms = if pa.1 == pb.1 {
                1.0
            } else if pa.0 == pb.0 {
                5.0
            } else {
                40.0
            };
            row.insert(b.clone(), serde_json::json!(ms));
        }
        rows.insert(a.clone(), serde_json::Value::Object(row));
    }
    serde_json::Value::Object(rows)
}

fn latency_configmap(ns: &str, matrix: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "latencies", "namespace": ns},
        "data": {"rtt.json": matrix},
    })
    .to_string()
}

async fn measured_latency(
    client: kube::Client,
    reason: &str,
) -> (String, String, Option<mom::operator::crd::momconfig::LatencyFitStatus>) {
    momconfig_status(
        client,
        &format!("MomConfig condition MeasuredLatency with reason {reason}"),
        |s| {
            let c = s.conditions.iter().find(|c| c.type_ == "MeasuredLatency")?;
            (c.reason == reason).then(|| (c.status.clone(), c.message.clone(), s.latency_fit.clone()))
        },
    )
    .await
}

/// The node the only running pod of `agent` runs on.
async fn node_of(ns: &common::TestNamespace, agent: &str) -> String {
    running_pods(ns, agent, 1).await.into_values().next().unwrap()
}

#[tokio::test]
async fn a_latency_configmap_moves_a_peer_affine_pod_to_the_node_measured_nearest_and_a_bad_one_is_named() {
    let _turn = MOMCONFIG.lock().await;
    setup();
    let ns = common::TestNamespace::new("latency").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    // X: a region-0 node; Y: its zone sibling; `elsewhere`: another zone of region-0.
    let zone_of = |node: &str| labels[node][mom::labels::ZONE_LABEL].clone();
    let region_of = |node: &str| labels[node][mom::labels::REGION_LABEL].clone();
    let x = labels.keys().next().unwrap().clone();
    let y = labels
        .keys()
        .find(|m| **m != x && zone_of(m) == zone_of(&x))
        .unwrap()
        .clone();
    let elsewhere = labels
        .keys()
        .map(|m| zone_of(m))
        .find(|z| {
            *z != zone_of(&x)
                && labels
                    .values()
                    .any(|l| l[mom::labels::ZONE_LABEL] == *z && l[mom::labels::REGION_LABEL] == region_of(&x))
        })
        .unwrap();
    common::apply(&strategy(
        n,
        "at-x",
        &format!(
            r#""locality":{{"mode":"required","dataNodes":{{"matchLabels":{{"kubernetes.io/hostname":"{x}"}}}}}}"#
        ),
        None,
    ));
    common::apply(&strategy(n, "not-x", &format!(r#""avoidNodes":["{x}"]"#), None));
    common::apply(&agent(n, "anchor", 1, r#","strategyRef":{"name":"at-x"}"#, ""));
    assert_eq!(node_of(&ns, "anchor").await, x);
    let peer = |name: &str| {
        agent(
            n,
            name,
            1,
            r#","strategyRef":{"name":"not-x"},"peers":[{"agent":"anchor","weight":1}]"#,
            "",
        )
    };

    // Control: labels only, the peer lands on X's zone sibling.
    let (status, _, fit) = measured_latency(ns.client(), "NotConfigured").await;
    assert_eq!((status.as_str(), fit), ("True", None));
    common::apply(&peer("peer-labels"));
    assert_eq!(
        node_of(&ns, "peer-labels").await,
        y,
        "labels only: next to X in its zone"
    );

    // X measured as if it stood in another zone: the next peer lands in that zone.
    let matrix = latency_matrix(&labels, Some((&x, &elsewhere))).to_string();
    common::apply(&latency_configmap(n, &matrix));
    patch_momconfig(serde_json::json!({"spec": {"geometry": {"latencySource": {
        "configMap": {"namespace": n, "name": "latencies", "key": "rtt.json"}}}}}));
    let (status, message, fit) = measured_latency(ns.client(), "Fitted").await;
    assert_eq!(status, "True", "{message}");
    let fit = fit.expect("status.latencyFit");
    assert_eq!(
        (fit.nodes as usize, fit.pairs as usize),
        (labels.len(), labels.len() * (labels.len() - 1) / 2)
    );
    assert!(
        fit.held_out_pairs > 0 && fit.held_out_median_relative_error.is_finite(),
        "{fit:?}"
    );
    assert!(fit.held_out_median_relative_error < 0.5, "{fit:?}");
    common::apply(&peer("peer-measured"));
    let landed = node_of(&ns, "peer-measured").await;
    assert_eq!(
        zone_of(&landed),
        elsewhere,
        "measured latencies: next to X where it was measured ({landed})"
    );

    // A malformed matrix: the condition names the field and the value; labels only again.
    let bad = serde_json::json!({ &x: { &y: "fast" } }).to_string();
    common::apply(&latency_configmap(n, &bad));
    let (status, message, fit) = measured_latency(ns.client(), "LatencyValueInvalid").await;
    assert_eq!((status.as_str(), fit), ("False", None));
    for part in [
        "spec.geometry.latencySource.configMap",
        "rtt.json",
        "\"fast\"",
        &x,
        "topology labels only",
    ] {
        assert!(message.contains(part), "{part:?} missing in: {message}");
    }
    common::apply(&peer("peer-bad"));
    assert_eq!(
        node_of(&ns, "peer-bad").await,
        y,
        "a bad matrix leaves the label layout"
    );

    // A partial matrix: the node without latencies is named.
    let mut partial = latency_matrix(&labels, None);
    let dropped = labels.keys().last().unwrap().clone();
    partial.as_object_mut().unwrap().remove(&dropped);
    for row in partial.as_object_mut().unwrap().values_mut() {
        row.as_object_mut().unwrap().remove(&dropped);
    }
    common::apply(&latency_configmap(n, &partial.to_string()));
    let (status, message, _) = measured_latency(ns.client(), "LatencyPartial").await;
    assert_eq!(status, "False");
    assert!(message.contains(&format!("{dropped} (0)")), "{message}");

    patch_momconfig(serde_json::json!({"spec": {"geometry": {"latencySource": null}}}));
    measured_latency(ns.client(), "NotConfigured").await;
}

/// Sets (or with `None` removes) the annotation `key` on `node`.
fn annotate(node: &str, key: &str, value: Option<&str>) {
    let arg = match value {
        Some(v) => format!("{key}={v}"),
        None => format!("{key}-"),
    };
    let (ok, _, err) = common::kubectl(&["annotate", "node", node, &arg, "--overwrite"], None);
    assert!(ok, "annotating {node}: {err}");
}

#[tokio::test]
async fn node_annotations_are_a_latency_source_and_a_node_without_one_is_named() {
    let _turn = MOMCONFIG.lock().await;
    setup();
    let client = common::client().await;
    let labels = node_labels(client.clone()).await;
    let key = "mom.hypersync.io/test-rtt";
    let matrix = latency_matrix(&labels, None);
    for (node, row) in matrix.as_object().unwrap() {
        annotate(node, key, Some(&row.to_string()));
    }
    patch_momconfig(serde_json::json!({"spec": {"geometry": {"latencySource": {"nodeAnnotation": key}}}}));
    let (status, message, fit) = measured_latency(client.clone(), "Fitted").await;
    assert_eq!(status, "True", "{message}");
    assert_eq!(fit.map(|f| f.nodes as usize), Some(labels.len()));
    // Without the annotation, a node still has the latencies the others give to it; with every
    // mention of it gone it is named as partial.
    let dropped = labels.keys().last().unwrap().clone();
    annotate(&dropped, key, None);
    for (node, row) in matrix.as_object().unwrap() {
        if *node != dropped {
            let mut row = row.clone();
            row.as_object_mut().unwrap().remove(&dropped);
            annotate(node, key, Some(&row.to_string()));
        }
    }
    let (status, message, fit) = measured_latency(client.clone(), "LatencyPartial").await;
    assert_eq!((status.as_str(), fit), ("False", None));
    for part in [
        "spec.geometry.latencySource.nodeAnnotation",
        key,
        &format!("{dropped} (0)"),
    ] {
        assert!(message.contains(part), "{part:?} missing in: {message}");
    }
    // A value that is not JSON names the node and the annotation.
    annotate(&dropped, key, Some("{oops"));
    let (_, message, _) = measured_latency(client.clone(), "LatencyMalformed").await;
    assert!(
        message.contains(&format!("annotation {key} of node {dropped}")),
        "{message}"
    );
    patch_momconfig(serde_json::json!({"spec": {"geometry": {"latencySource": null}}}));
    for node in labels.keys() {
        annotate(node, key, None);
    }
    measured_latency(client, "NotConfigured").await;
}
