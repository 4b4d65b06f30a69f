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
