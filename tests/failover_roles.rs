//! `spec.resilience.failover` on the real control plane: an `active_passive` agent runs its
//! actives in one region and its standby in the other, every pod labelled with its role, and a
//! Service selecting `role=active` gets endpoints for the actives only (the real EndpointSlice
//! controller); when an active's node fails, the standby is promoted at once (receipt
//! `agent.failover` first), the failed active is deleted and a new standby is made — which the
//! extender keeps out of both regions, now that both run actives. Control: an `active_active`
//! agent beside it has no standby, all its pods active.

mod common;
mod placement_support;

use placement_support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use mom::labels::{REGION_LABEL, ROLE_LABEL, UNHEALTHY_LABEL};
use mom::operator::crd::{GeometricAgent, Receipt};

/// The tests of this binary take turns: one of them changes the MomConfig the other applies.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn failover_strategy(ns: &str, name: &str, failover: &str, placement: &str) -> String {
    format!(
        r#"{{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"OrchestrationStrategy",
            "metadata":{{"name":"{name}","namespace":"{ns}"}},
            "spec":{{"priority":10,"scaling":{{"method":"manual","minReplicas":0,"maxReplicas":20}},
                     "placement":{{{placement}}},"resilience":{{"failover":"{failover}"}}}}}}"#
    )
}

/// pod name → (role label, node, being deleted) of the agent's pods.
async fn roles(pods: &Api<Pod>, agent: &str) -> BTreeMap<String, (String, Option<String>, bool)> {
    pods.list(&ListParams::default().labels(&format!("mom.hypersync.io/agent={agent}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let role = p.metadata.labels.as_ref().and_then(|l| l.get(ROLE_LABEL)).cloned();
            (
                p.metadata.name.clone().unwrap_or_default(),
                (
                    role.unwrap_or_default(),
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    p.metadata.deletion_timestamp.is_some(),
                ),
            )
        })
        .collect()
}

/// The pods the Service's EndpointSlices point at.
async fn endpoints(slices: &Api<EndpointSlice>, service: &str) -> BTreeSet<String> {
    slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect()
}

#[tokio::test]
async fn active_passive_promotes_its_standby_when_an_actives_node_fails_and_services_follow_the_active_label() {
    let _turn = SERIAL.lock().await;
    common::mom();
    common::apply_test_momconfig("full_audit");
    let ns = common::TestNamespace::new("failover-roles").await;
    let n = &ns.name;
    let labels = node_labels(ns.client()).await;
    let region = |node: &String| labels[node][REGION_LABEL].clone();
    let regions: BTreeSet<String> = labels.values().map(|l| l[REGION_LABEL].clone()).collect();
    assert_eq!(regions.len(), 2, "{regions:?}");

    // Actives in region-0 (preferredRegions), so the standby must go to region-1.
    common::apply(&failover_strategy(
        n,
        "hot-standby",
        "active_passive",
        r#""preferredRegions":["region-0"]"#,
    ));
    common::apply(&failover_strategy(n, "all-serve", "active_active", ""));
    // One api pod per node (anti-affinity): failing the victim's node must not also fail the
    // survivor, whose replacement would then be another story (stranded replicas).
    common::apply(&agent(
        n,
        "api",
        2,
        r#","strategyRef":{"name":"hot-standby"}"#,
        r#""affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"mom.hypersync.io/agent":"api"}},"topologyKey":"kubernetes.io/hostname"}]}},"#,
    ));
    common::apply(&agent(n, "web", 2, r#","strategyRef":{"name":"all-serve"}"#, ""));
    let services: Api<Service> = Api::namespaced(ns.client(), n);
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api"},
        "spec": {"selector": {"mom.hypersync.io/agent": "api", ROLE_LABEL: "active"},
                 "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(ns.client(), n);
    let placed = running_pods(&ns, "api", 3).await;
    let before = roles(&pods, "api").await;
    let actives: Vec<&String> = before.iter().filter(|(_, r)| r.0 == "active").map(|(p, _)| p).collect();
    let standbys: Vec<&String> = before
        .iter()
        .filter(|(_, r)| r.0 == "standby")
        .map(|(p, _)| p)
        .collect();
    assert_eq!((actives.len(), standbys.len()), (2, 1), "{before:?}");
    let active_regions: BTreeSet<String> = actives.iter().map(|p| region(&placed[*p])).collect();
    let standby = standbys[0].clone();
    assert!(
        !active_regions.contains(&region(&placed[&standby])),
        "the standby {standby} runs in a region of the actives {active_regions:?}: {placed:?}"
    );
    // Control: active_active has no standby, every pod serves.
    running_pods(&ns, "web", 2).await;
    let web = roles(&pods, "web").await;
    assert!(web.values().all(|r| r.0 == "active"), "{web:?}");

    // The Service selects the actives only (the EndpointSlice controller of the control plane).
    let slices: Api<EndpointSlice> = Api::namespaced(ns.client(), n);
    let want: BTreeSet<String> = actives.iter().map(|p| p.to_string()).collect();
    common::eventually(
        "the Service's endpoints to be the actives",
        Duration::from_secs(60),
        || {
            let (slices, want) = (slices.clone(), want.clone());
            async move { (endpoints(&slices, "api").await == want).then_some(()) }
        },
    )
    .await;

    // An active's node fails.
    let victim = actives[0].clone();
    let survivor = actives[1].clone();
    assert_ne!(
        placed[&victim], placed[&survivor],
        "two actives share a node: {placed:?}"
    );
    let _failed = NodeLabel::set(UNHEALTHY_LABEL, std::slice::from_ref(&placed[&victim]));
    let after = common::eventually(
        "the standby promoted, the failed active deleted and a new standby made",
        Duration::from_secs(60),
        || {
            let (pods, victim, standby) = (pods.clone(), victim.clone(), standby.clone());
            async move {
                let now = roles(&pods, "api").await;
                let promoted = now.get(&standby).is_some_and(|r| r.0 == "active");
                let retired = now.get(&victim).is_none_or(|r| r.2);
                let new_standby = now
                    .iter()
                    .any(|(p, r)| r.0 == "standby" && !r.2 && *p != standby && *p != victim);
                (promoted && retired && new_standby).then_some(now)
            }
        },
    )
    .await;
    let serving: BTreeSet<String> = after
        .iter()
        .filter(|(_, r)| r.0 == "active" && !r.2)
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(serving, [standby.clone(), survivor.clone()].into(), "{after:?}");
    common::eventually(
        "the Service's endpoints to follow: survivor and promoted standby",
        Duration::from_secs(60),
        || {
            let (slices, serving) = (slices.clone(), serving.clone());
            async move { (endpoints(&slices, "api").await == serving).then_some(()) }
        },
    )
    .await;

    // The receipt came first and names both; the Event says it.
    let receipts = Api::<Receipt>::namespaced(ns.client(), n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let failovers: Vec<&Receipt> = receipts
        .iter()
        .filter(|r| r.spec.decision["kind"] == "agent.failover")
        .collect();
    assert_eq!(failovers.len(), 1, "{failovers:#?}");
    assert_eq!(failovers[0].spec.subject.name, "api");
    assert_eq!(failovers[0].spec.decision["promote"], serde_json::json!([standby]));
    assert_eq!(failovers[0].spec.decision["retire"], serde_json::json!([victim]));
    let events = Api::<Event>::namespaced(ns.client(), n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedOver")
                && e.message.as_deref().is_some_and(|m| m.contains(&standby))),
        "no FailedOver Event naming {standby}"
    );

    // Both regions now run actives: the new standby has nowhere to go, and the scheduler says
    // why (the extender's reason).
    let new_standby = after
        .iter()
        .find(|(p, r)| r.0 == "standby" && !r.2 && **p != standby)
        .map(|(p, _)| p.clone())
        .unwrap();
    common::eventually(
        "the new standby to be refused every node, naming active_passive",
        Duration::from_secs(60),
        || {
            let (pods, new_standby) = (pods.clone(), new_standby.clone());
            async move {
                let p = pods.get(&new_standby).await.ok()?;
                let unschedulable = p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
                (unschedulable.status == "False"
                    && unschedulable
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains("active_passive")))
                .then_some(())
            }
        },
    )
    .await;
    // The control agent was not touched.
    assert_eq!(roles(&pods, "web").await.len(), 2);
}

/// The `Degraded` condition of agent `name`: (status, reason).
async fn degraded(agents: &Api<GeometricAgent>, name: &str) -> Option<(String, String)> {
    let status = agents.get(name).await.ok()?.status?;
    status
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| (c.status, c.reason))
}

#[tokio::test]
async fn a_redundancy_rule_that_the_failure_domains_cannot_keep_is_reported_degraded() {
    let _turn = SERIAL.lock().await;
    common::mom();
    // Failure domains are the deepest topologyKeys entry but the hostname: with region → host,
    // the 2 regions. Losing 2 of 2 cannot keep anything (n_plus_2); losing 1 can (n_plus_1).
    // (Only this binary's tests see the MomConfig; the other one reads regions, the first key,
    // which this keeps.)
    common::apply(
        r#"{"apiVersion":"mom.hypersync.io/v1alpha1","kind":"MomConfig","metadata":{"name":"default"},
            "spec":{"objectives":{"performance":0.55,"cost":0.15,"reliability":0.2,"sustainability":0.1},
                    "geometry":{"dimension":2,"routingAlgorithm":"greedy_forwarding","topologyKeys":["topology.kubernetes.io/region","kubernetes.io/hostname"]},
                    "verification":{"level":"full_audit"}}}"#,
    );
    common::wait_config_in_effect(&common::mom().metrics_url);
    let ns = common::TestNamespace::new("failover-domains").await;
    let n = &ns.name;
    for (name, rule) in [("tight", "n_plus_2"), ("fine", "n_plus_1")] {
        common::apply(&strategy(n, name, "", Some(rule)));
        common::apply(&agent(
            n,
            name,
            2,
            &format!(r#","strategyRef":{{"name":"{name}"}}"#),
            "",
        ));
    }
    let agents: Api<GeometricAgent> = Api::namespaced(ns.client(), n);
    let (status, reason) = common::eventually("tight reported Degraded", Duration::from_secs(60), || {
        let agents = agents.clone();
        async move { degraded(&agents, "tight").await.filter(|(s, _)| s == "True") }
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "InsufficientFailureDomains")
    );
    let message = agents
        .get("tight")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(
        message.contains("2 failure domain") && message.contains(REGION_LABEL),
        "{message}"
    );
    // Best effort still: 2 spares, spread evenly over the 2 regions.
    let placed = running_pods(&ns, "tight", 4).await;
    // Control: n_plus_1 over 2 regions is kept — 2 + 2 pods, one region lost keeps 2.
    let fine = common::eventually("fine reconciled with its spares", Duration::from_secs(60), || {
        let agents = agents.clone();
        async move {
            let status = agents.get("fine").await.ok()?.status?;
            (status.spare_replicas == Some(2)).then_some(())?;
            degraded(&agents, "fine").await
        }
    })
    .await;
    assert_eq!(fine.0, "False", "n_plus_1 over 2 regions is keepable: {fine:?}");
    println!("tight: {message}; placed {placed:?}");
    common::apply_test_momconfig("full_audit");
}
