use std::collections::BTreeMap;

use super::*;
use crate::cluster_layout::UniformLayout;
use crate::labels::{REGION_LABEL, ZONE_LABEL};

fn cluster() -> (Vec<NodeState>, NodeEmbedding) {
    let layout = UniformLayout {
        regions: 2,
        zones_per_region: 2,
        racks_per_zone: 1,
        nodes_per_rack: 2,
        ..Default::default()
    };
    let specs = layout.nodes().unwrap();
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        specs.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
    let keys: Vec<String> = [
        crate::labels::REGION_LABEL,
        ZONE_LABEL,
        crate::labels::RACK_LABEL,
        crate::labels::HOSTNAME_LABEL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let emb = embed_nodes(&labels, &keys, 2).unwrap();
    let nodes = specs
        .iter()
        .map(|n| NodeState {
            name: n.name.clone(),
            labels: n.labels.clone().into(),
            position: emb.positions[&n.name].clone(),
            allocatable: Resources {
                cpu_millis: n.cpu_millis,
                memory_bytes: n.memory_bytes,
            },
            requested: Resources::default(),
            tentative: Resources::default(),
            tentative_pods: 0,
            pods: 0,
            max_pods: n.pods,
            tenants: BTreeMap::new(),
            hourly_cost: None,
            spot: false,
            energy_class: None,
        })
        .collect();
    (nodes, emb)
}

fn refs(nodes: &[NodeState]) -> Vec<&NodeState> {
    nodes.iter().collect()
}

fn pod(cpu: u64) -> PodDemand {
    PodDemand {
        requests: Resources {
            cpu_millis: cpu,
            memory_bytes: 1 << 20,
        },
        ..Default::default()
    }
}

#[test]
fn nodes_in_the_same_zone_are_closer_than_nodes_in_another_region() {
    let (nodes, emb) = cluster();
    let p = |n: &str| emb.positions[n].clone();
    let same_rack = poincare::distance(&p("r0-z0-k0-n0"), &p("r0-z0-k0-n1"), 1.0);
    let same_region = poincare::distance(&p("r0-z0-k0-n0"), &p("r0-z1-k0-n0"), 1.0);
    let other_region = poincare::distance(&p("r0-z0-k0-n0"), &p("r1-z0-k0-n0"), 1.0);
    assert!(same_rack < same_region, "{same_rack} < {same_region}");
    assert!(same_region < other_region, "{same_region} < {other_region}");
    assert!(nodes.iter().all(|n| n.position.iter().all(|x| x.is_finite())));
}

#[test]
fn greedy_forwarding_gives_the_best_score_to_the_node_nearest_the_target() {
    let (nodes, _) = cluster();
    let target = nodes.iter().find(|n| n.name == "r1-z1-k0-n1").unwrap().position.clone();
    let agent = AgentPolicy {
        target,
        replicas: 1,
        ..Default::default()
    };
    let scores = prioritize(
        &pod(100),
        Some(&agent),
        &refs(&nodes),
        &Objectives::default(),
        Routing::GreedyForwarding,
        1.0,
    );
    let best = scores
        .iter()
        .max_by_key(|(n, s)| (*s, std::cmp::Reverse(n.clone())))
        .unwrap();
    assert_eq!(best.0, "r1-z1-k0-n1");
    assert!(scores.iter().all(|(_, s)| (0..=10).contains(s)));
}

#[test]
fn scores_are_sorted_by_node_name_and_reproducible() {
    let (nodes, _) = cluster();
    let agent = AgentPolicy {
        target: nodes[3].position.clone(),
        replicas: 3,
        ..Default::default()
    };
    for routing in [
        Routing::GreedyForwarding,
        Routing::MultipathHyperbolic,
        Routing::GradientFlow,
    ] {
        let a = prioritize(
            &pod(100),
            Some(&agent),
            &refs(&nodes),
            &Objectives::default(),
            routing,
            1.0,
        );
        let b = prioritize(
            &pod(100),
            Some(&agent),
            &refs(&nodes),
            &Objectives::default(),
            routing,
            1.0,
        );
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

#[test]
fn avoid_listed_nodes_are_rejected_as_unresolvable_with_a_reason() {
    let (nodes, _) = cluster();
    let agent = AgentPolicy {
        avoid_nodes: ["r0-z0-k0-n0".to_string()].into(),
        ..Default::default()
    };
    let v = filter(&pod(100), Some(&agent), &refs(&nodes), 1.0);
    assert!(!v.passed.contains(&"r0-z0-k0-n0".to_string()));
    assert!(v.unresolvable["r0-z0-k0-n0"].contains("avoid-list"));
    assert_eq!(v.passed.len(), nodes.len() - 1);
}

#[test]
fn strict_isolation_keeps_tenants_apart_in_both_directions() {
    let (mut nodes, _) = cluster();
    nodes[0].tenants.insert("blue".into(), true);
    nodes[1].tenants.insert("green".into(), false);
    let red_strict = PodDemand {
        tenant: Some("red".into()),
        strict_isolation: true,
        ..pod(100)
    };
    let v = filter(&red_strict, None, &refs(&nodes), 1.0);
    assert!(v.unresolvable[&nodes[0].name].contains("blue"));
    assert!(v.unresolvable[&nodes[1].name].contains("green"));
    let green_relaxed = PodDemand {
        tenant: Some("green".into()),
        ..pod(100)
    };
    let v = filter(&green_relaxed, None, &refs(&nodes), 1.0);
    assert!(
        v.unresolvable.contains_key(&nodes[0].name),
        "a strict tenant's node is closed to others"
    );
    assert!(v.passed.contains(&nodes[1].name), "same tenant may share");
}

#[test]
fn a_full_node_fails_as_resolvable_naming_the_resource() {
    let (mut nodes, _) = cluster();
    nodes[2].requested.cpu_millis = nodes[2].allocatable.cpu_millis - 50;
    let v = filter(&pod(100), None, &refs(&nodes), 1.0);
    assert!(v.failed[&nodes[2].name].contains("insufficient cpu"));
}

#[test]
fn max_distance_rejects_far_nodes() {
    let (nodes, _) = cluster();
    let agent = AgentPolicy {
        target: nodes[0].position.clone(),
        max_distance: Some(1e-6),
        ..Default::default()
    };
    let v = filter(&pod(100), Some(&agent), &refs(&nodes), 1.0);
    assert_eq!(v.passed, vec![nodes[0].name.clone()]);
    assert!(v.unresolvable.values().all(|r| r.contains("maxDistance")));
}

#[test]
fn the_filter_refuses_a_zone_that_holds_the_redundancy_cap_already() {
    let (nodes, _) = cluster();
    let zone = nodes[0].labels[ZONE_LABEL].clone();
    let agent = AgentPolicy {
        spread_label: Some(ZONE_LABEL.into()),
        max_per_domain: Some(2),
        replicas_by_domain: [(zone.clone(), 2)].into(),
        ..Default::default()
    };
    let v = filter(&pod(100), Some(&agent), &refs(&nodes), 1.0);
    for n in &nodes {
        let capped = v
            .unresolvable
            .get(&n.name)
            .is_some_and(|r| r.contains("the redundancy policy allows 2"));
        assert_eq!(capped, n.labels[ZONE_LABEL] == zone, "{n:?}: {v:?}");
    }
    assert!(!v.passed.is_empty());
}

#[test]
fn under_a_redundancy_cap_what_passes_is_narrowed_to_the_best_scoring_nodes_failure_domain() {
    let (nodes, _) = cluster();
    let zone_of = |name: &str| nodes.iter().find(|n| n.name == name).unwrap().labels[ZONE_LABEL].clone();
    let far = nodes.last().unwrap();
    let agent = AgentPolicy {
        target: far.position.clone(),
        spread_label: Some(ZONE_LABEL.into()),
        max_per_domain: Some(1),
        ..Default::default()
    };
    let narrowed = |agent: &AgentPolicy| {
        let mut v = filter(&pod(100), Some(agent), &refs(&nodes), 1.0);
        let passing: Vec<&NodeState> = nodes.iter().filter(|n| v.passed.contains(&n.name)).collect();
        let scores = score_breakdown(
            &pod(100),
            Some(agent),
            &passing,
            &Objectives::default(),
            Routing::GreedyForwarding,
            1.0,
        );
        let best = scores.iter().max_by_key(|s| s.score).unwrap().node.clone();
        one_failure_domain(agent, &passing, &scores, &mut v);
        (v, best)
    };
    let (v, best) = narrowed(&agent);
    let zones: std::collections::BTreeSet<String> = v.passed.iter().map(|n| zone_of(n)).collect();
    assert_eq!(zones, [far.labels[ZONE_LABEL].clone()].into(), "{v:?}");
    assert_eq!(zone_of(&best), far.labels[ZONE_LABEL]);
    assert_eq!(v.passed.len() + v.unresolvable.len(), nodes.len());
    let reason = v.unresolvable.values().next().unwrap();
    assert!(reason.contains("the redundancy policy of 1 per domain"), "{reason}");
    // That zone full: the zone of the next best node, alone.
    let full = AgentPolicy {
        replicas_by_domain: [(far.labels[ZONE_LABEL].clone(), 1)].into(),
        ..agent.clone()
    };
    let (v, best) = narrowed(&full);
    let zones: std::collections::BTreeSet<String> = v.passed.iter().map(|n| zone_of(n)).collect();
    assert_eq!(zones, [zone_of(&best)].into(), "{v:?}");
    assert!(!zones.contains(&far.labels[ZONE_LABEL]));
    // Control: without a cap nothing is narrowed.
    let free = AgentPolicy {
        max_per_domain: None,
        ..agent
    };
    assert_eq!(narrowed(&free).0.passed.len(), nodes.len());
}

#[test]
fn scale_down_removes_the_farthest_replicas_first() {
    let (nodes, _) = cluster();
    let target = nodes[0].position.clone();
    let replicas = vec![
        ("near".to_string(), Some(nodes[1].position.clone())),
        ("far".to_string(), Some(nodes[7].position.clone())),
        ("pending".to_string(), None),
        ("mid".to_string(), Some(nodes[2].position.clone())),
    ];
    assert_eq!(
        scale_down_order(&replicas, &target, 1.0),
        vec!["pending", "far", "mid", "near"]
    );
}

#[test]
fn a_target_follows_the_peers_and_falls_back_deterministically() {
    let (nodes, _) = cluster();
    let peer = vec![nodes[6].position.clone(), nodes[7].position.clone()];
    let t = agent_target(
        &TargetInputs {
            peers: vec![(1.0, peer)],
            ..Default::default()
        },
        1.0,
    )
    .unwrap();
    let nearest = nodes
        .iter()
        .min_by(|a, b| poincare::distance(&t, &a.position, 1.0).total_cmp(&poincare::distance(&t, &b.position, 1.0)))
        .unwrap();
    assert_eq!(nearest.labels[ZONE_LABEL], nodes[6].labels[ZONE_LABEL]);
    let free: Vec<_> = nodes
        .iter()
        .map(|n| (1000, n.name.clone(), n.position.clone()))
        .collect();
    let fallback = agent_target(
        &TargetInputs {
            free_capacity: free,
            ..Default::default()
        },
        1.0,
    )
    .unwrap();
    assert_eq!(fallback, nodes[0].position, "ties go to the first name");
    assert_eq!(agent_target(&TargetInputs::default(), 1.0), None);
    let sticky = TargetInputs {
        previous: Some(nodes[5].position.clone()),
        free_capacity: nodes
            .iter()
            .map(|n| (1000, n.name.clone(), n.position.clone()))
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        agent_target(&sticky, 1.0).unwrap(),
        nodes[5].position,
        "the previous home wins over free capacity"
    );
}

#[test]
fn new_groups_get_homes_of_their_own_among_equally_free_nodes_and_each_group_one_home() {
    // 1,000 equally free nodes named as the benches name them, 10 groups named alike.
    let free: Vec<(u64, String, Vec<f64>)> = (0..1000)
        .map(|i| (2000, format!("site{}-{}", i / 6, i % 6), vec![0.0005 * i as f64, 0.0]))
        .collect();
    let home = |key: Option<&str>| {
        agent_target(
            &TargetInputs {
                free_capacity: free.clone(),
                home_key: key.map(str::to_string),
                ..Default::default()
            },
            1.0,
        )
        .unwrap()
    };
    let homes: Vec<Vec<f64>> = (0..10).map(|k| home(Some(&format!("bench/a{k}-gateway")))).collect();
    let distinct: std::collections::BTreeSet<String> = homes.iter().map(|h| format!("{h:?}")).collect();
    assert_eq!(distinct.len(), 10, "groups share homes: {homes:?}");
    // The same group, asked again (any agent of it, any order of the nodes), the same home.
    let mut shuffled = free.clone();
    shuffled.reverse();
    let again = agent_target(
        &TargetInputs {
            free_capacity: shuffled,
            home_key: Some("bench/a3-gateway".into()),
            ..Default::default()
        },
        1.0,
    )
    .unwrap();
    assert_eq!(again, homes[3]);
    // Without a group, ties go to the smallest name, as before.
    assert_eq!(home(None), free.iter().min_by(|a, b| a.1.cmp(&b.1)).unwrap().2);
    // Free capacity still comes first: one node with more room is every group's home.
    let mut roomy = free.clone();
    roomy[517].0 = 2001;
    for k in 0..10 {
        let t = agent_target(
            &TargetInputs {
                free_capacity: roomy.clone(),
                home_key: Some(format!("bench/a{k}-gateway")),
                ..Default::default()
            },
            1.0,
        )
        .unwrap();
        assert_eq!(t, roomy[517].2);
    }
}

fn data_selector() -> NodeSelector {
    NodeSelector {
        match_labels: [("data".to_string(), "yes".to_string())].into(),
        match_expressions: Vec::new(),
    }
}

fn with_data_label(nodes: &mut [NodeState], names: &[&str]) {
    for n in nodes.iter_mut().filter(|n| names.contains(&n.name.as_str())) {
        std::sync::Arc::make_mut(&mut n.labels).insert("data".into(), "yes".into());
    }
}

fn locality(nodes: &[NodeState], required: bool) -> AgentPolicy {
    let sel = data_selector();
    AgentPolicy {
        target: nodes[0].position.clone(),
        strategy: Some("shop/near-data".into()),
        locality: Some(LocalityPolicy {
            data_node_positions: nodes
                .iter()
                .filter(|n| sel.matches(&n.labels))
                .map(|n| n.position.clone())
                .collect(),
            data_nodes: sel,
            required,
        }),
        ..Default::default()
    }
}

#[test]
fn required_locality_passes_only_data_nodes_and_names_the_strategy_and_selector_for_the_rest() {
    let (mut nodes, _) = cluster();
    with_data_label(&mut nodes, &["r1-z0-k0-n0", "r1-z0-k0-n1"]);
    // Positive control: without locality every node passes.
    let mut open = locality(&nodes, true);
    open.locality = None;
    assert_eq!(
        filter(&pod(100), Some(&open), &refs(&nodes), 1.0).passed.len(),
        nodes.len()
    );
    let v = filter(&pod(100), Some(&locality(&nodes, true)), &refs(&nodes), 1.0);
    assert_eq!(v.passed, vec!["r1-z0-k0-n0", "r1-z0-k0-n1"]);
    assert_eq!(v.unresolvable.len(), nodes.len() - 2);
    let reasons: std::collections::BTreeSet<&String> = v.unresolvable.values().collect();
    assert_eq!(
        reasons.len(),
        1,
        "one reason for every node, so the scheduler aggregates it"
    );
    let reason = reasons.first().unwrap();
    for part in [
        "spec.placement.locality",
        "required",
        "shop/near-data",
        "dataNodes data=yes",
    ] {
        assert!(reason.contains(part), "{part} missing in {reason}");
    }
    // A full data node fails on capacity (resolvable); the others still on locality.
    nodes[4].requested.cpu_millis = nodes[4].allocatable.cpu_millis;
    let v = filter(&pod(100), Some(&locality(&nodes, true)), &refs(&nodes), 1.0);
    assert_eq!(v.passed, vec!["r1-z0-k0-n1"]);
    assert!(v.failed["r1-z0-k0-n0"].contains("insufficient cpu"));
    // Preferred locality filters nothing.
    let v = filter(&pod(100), Some(&locality(&nodes, false)), &refs(&nodes), 1.0);
    assert_eq!(v.passed.len(), nodes.len() - 1);
}

#[test]
fn preferred_locality_scores_data_nodes_above_all_others_and_near_ones_above_far_ones() {
    let (mut nodes, _) = cluster();
    with_data_label(&mut nodes, &["r1-z1-k0-n1"]);
    let score = |agent: &AgentPolicy| -> BTreeMap<String, i64> {
        prioritize(
            &pod(100),
            Some(agent),
            &refs(&nodes),
            &Objectives::default(),
            Routing::GreedyForwarding,
            1.0,
        )
        .into_iter()
        .collect()
    };
    // Positive control: without locality the node nearest the target (r0-z0-k0-n0) wins and the
    // data node, in the other region, does not.
    let mut open = locality(&nodes, false);
    open.locality = None;
    let plain = score(&open);
    assert!(plain["r0-z0-k0-n0"] > plain["r1-z1-k0-n1"], "{plain:?}");
    let s = score(&locality(&nodes, false));
    assert!(s["r1-z1-k0-n1"] >= 6, "{s:?}");
    assert!(
        s.iter().filter(|(n, _)| *n != "r1-z1-k0-n1").all(|(_, v)| *v <= 4),
        "{s:?}"
    );
    // Same zone as the data node beats the other region (the target pulls the other way).
    assert!(s["r1-z1-k0-n0"] > s["r0-z0-k0-n1"], "{s:?}");
    // Required locality does not change scores (the filter already did the work).
    let mut required = locality(&nodes, true);
    required.locality.as_mut().unwrap().required = true;
    assert_eq!(score(&required), plain);
}

fn regions(nodes: &[NodeState], order: &[&str]) -> AgentPolicy {
    AgentPolicy {
        target: nodes[0].position.clone(),
        strategy: Some("shop/regional".into()),
        preferred_regions: order.iter().map(|r| r.to_string()).collect(),
        region_label: Some(crate::labels::REGION_LABEL.into()),
        ..Default::default()
    }
}

#[test]
fn preferred_regions_are_a_tier_in_list_order_falling_to_the_next_region_when_the_first_is_full() {
    let (mut nodes, _) = cluster();
    // Node names start with their region: r0-… is region-0.
    let in_region = |v: &FilterVerdict, r: &str| {
        let prefix = format!("r{}-", r.trim_start_matches("region-"));
        v.passed.iter().all(|n| n.starts_with(&prefix)) && !v.passed.is_empty()
    };
    let v = filter(
        &pod(100),
        Some(&regions(&nodes, &["region-1", "region-0"])),
        &refs(&nodes),
        1.0,
    );
    assert!(in_region(&v, "region-1"), "{v:?}");
    assert_eq!(v.passed.len(), 4);
    let reason = v.unresolvable.values().next().unwrap();
    for part in ["spec.placement.preferredRegions", "shop/regional", "region-1"] {
        assert!(reason.contains(part), "{part} missing in {reason}");
    }
    // The order decides, not the target (which sits in region-0).
    let v = filter(
        &pod(100),
        Some(&regions(&nodes, &["region-0", "region-1"])),
        &refs(&nodes),
        1.0,
    );
    assert!(in_region(&v, "region-0"), "{v:?}");
    // Positive control: without the region label no tier applies.
    let mut unlabelled = regions(&nodes, &["region-1"]);
    unlabelled.region_label = None;
    assert_eq!(filter(&pod(100), Some(&unlabelled), &refs(&nodes), 1.0).passed.len(), 8);
    // region-1 full: the next listed region.
    for n in nodes
        .iter_mut()
        .filter(|n| n.labels[crate::labels::REGION_LABEL] == "region-1")
    {
        n.requested.cpu_millis = n.allocatable.cpu_millis;
    }
    let v = filter(
        &pod(100),
        Some(&regions(&nodes, &["region-1", "region-0"])),
        &refs(&nodes),
        1.0,
    );
    assert!(in_region(&v, "region-0"), "{v:?}");
    // No listed region has room: any passing node may be used.
    let v = filter(
        &pod(100),
        Some(&regions(&nodes, &["region-1", "elsewhere"])),
        &refs(&nodes),
        1.0,
    );
    assert_eq!(v.passed.len(), 4);
}

#[test]
fn explicit_coordinates_of_another_dimension_are_skipped_for_the_next_rule() {
    let (nodes, _) = cluster();
    let peer = vec![nodes[6].position.clone()];
    let inputs = |explicit: Vec<f64>| TargetInputs {
        explicit: Some(explicit),
        dimension: 2,
        peers: vec![(1.0, peer.clone())],
        ..Default::default()
    };
    assert_eq!(agent_target(&inputs(vec![0.1, 0.2]), 1.0).unwrap(), vec![0.1, 0.2]);
    let t = agent_target(&inputs(vec![0.1, 0.2, 0.3]), 1.0).unwrap();
    let peers_only = TargetInputs {
        explicit: None,
        ..inputs(Vec::new())
    };
    assert_eq!(Some(t), agent_target(&peers_only, 1.0), "the peer rule decides");
}

#[test]
fn a_tentative_guess_does_not_close_a_node_kube_scheduler_left_free() {
    let (mut nodes, _) = cluster();
    nodes[0].requested.cpu_millis = nodes[0].allocatable.cpu_millis;
    nodes[0].pods = 1;
    // Positive control: a node full of bound pods fails on room.
    let v = filter(&pod(100), None, &refs(&nodes), 1.0);
    assert!(v.failed[&nodes[0].name].contains("insufficient cpu"), "{v:?}");
    // The same load, guessed at prioritize time for a pod the scheduler has not bound yet.
    nodes[0].tentative.cpu_millis = nodes[0].allocatable.cpu_millis;
    nodes[0].tentative_pods = 1;
    let v = filter(&pod(100), None, &refs(&nodes), 1.0);
    assert!(v.passed.contains(&nodes[0].name), "{v:?}");
}

#[test]
fn a_standby_never_passes_a_node_in_a_region_of_the_agents_actives_and_an_active_pod_does() {
    let (nodes, _) = cluster();
    let active_region = nodes[0].labels[REGION_LABEL].clone();
    let agent = AgentPolicy {
        active_regions: Some(ActiveRegions {
            label: REGION_LABEL.into(),
            regions: [active_region.clone()].into(),
        }),
        ..AgentPolicy::default()
    };
    let standby = PodDemand {
        standby: true,
        ..pod(100)
    };
    let v = filter(&standby, Some(&agent), &refs(&nodes), 1.0);
    assert!(!v.passed.is_empty(), "the other region has room");
    for n in &nodes {
        let in_active = n.labels[REGION_LABEL] == active_region;
        assert_eq!(v.passed.contains(&n.name), !in_active, "{}", n.name);
        if in_active {
            assert!(v.unresolvable[&n.name].contains("active_passive"));
        }
    }
    // Control: an active replica of the same agent may go anywhere.
    assert_eq!(
        filter(&pod(100), Some(&agent), &refs(&nodes), 1.0).passed.len(),
        nodes.len()
    );
}

#[test]
fn the_terms_of_a_score_sum_to_its_points_and_round_to_the_score_prioritize_answers() {
    let (mut nodes, _) = cluster();
    // Prices, spot, energy classes and load differ per node, so every term varies.
    for (i, n) in nodes.iter_mut().enumerate() {
        n.hourly_cost = Some(0.5 + i as f64);
        n.spot = i % 3 == 0;
        n.energy_class = Some((b'A' + (i % 5) as u8) as char);
        n.requested.cpu_millis = n.allocatable.cpu_millis / (i as u64 + 2);
    }
    let mut agent = AgentPolicy {
        target: nodes[2].position.clone(),
        replicas: 3,
        spread_label: Some(ZONE_LABEL.into()),
        ..Default::default()
    };
    agent.replicas_by_domain.insert(nodes[0].labels[ZONE_LABEL].clone(), 2);
    for routing in [
        Routing::GreedyForwarding,
        Routing::MultipathHyperbolic,
        Routing::GradientFlow,
    ] {
        let o = Objectives::default();
        let broken = score_breakdown(&pod(100), Some(&agent), &refs(&nodes), &o, routing, 1.0);
        let answered = prioritize(&pod(100), Some(&agent), &refs(&nodes), &o, routing, 1.0);
        assert_eq!(broken.len(), nodes.len());
        for (b, (node, score)) in broken.iter().zip(&answered) {
            assert_eq!(&b.node, node);
            assert_eq!(b.score, *score, "{b:?}");
            let names: Vec<&str> = b.terms.iter().map(|t| t.name).collect();
            assert_eq!(names, ["performance", "reliability", "cost", "sustainability", "load"]);
            let sum: f64 = b.terms.iter().map(|t| t.points).sum();
            assert!((sum - b.points).abs() < 1e-9, "{b:?}");
            assert_eq!(b.points.clamp(0.0, 10.0).round() as i64, b.score, "{b:?}");
            let weights: f64 = b.terms.iter().map(|t| t.weight).sum();
            assert!((weights - 1.0).abs() < 1e-9, "weights sum to {weights}");
        }
        // The terms are not all flat: something tells the nodes apart.
        assert!(broken.iter().any(|b| b.score != broken[0].score), "{broken:?}");
    }
}

#[test]
fn node_scores_are_the_breakdowns_scores_and_points_in_input_order() {
    let (mut nodes, _) = cluster();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.hourly_cost = Some(0.5 + i as f64);
        n.energy_class = Some((b'A' + (i % 5) as u8) as char);
        n.requested.cpu_millis = n.allocatable.cpu_millis / (i as u64 + 2);
    }
    // Input order is not name order, so a lookup by position would be caught.
    nodes.reverse();
    let mut agent = AgentPolicy {
        target: nodes[2].position.clone(),
        replicas: 3,
        spread_label: Some(ZONE_LABEL.into()),
        ..Default::default()
    };
    let no_replicas = agent.clone();
    agent.replicas_by_domain.insert(nodes[0].labels[ZONE_LABEL].clone(), 2);
    let mut local = agent.clone();
    local.locality = Some(LocalityPolicy {
        data_nodes: NodeSelector {
            match_labels: [(ZONE_LABEL.to_string(), nodes[5].labels[ZONE_LABEL].clone())].into(),
            ..Default::default()
        },
        required: false,
        data_node_positions: vec![nodes[5].position.clone()],
    });
    for policy in [None, Some(&no_replicas), Some(&agent), Some(&local)] {
        for routing in [
            Routing::GreedyForwarding,
            Routing::MultipathHyperbolic,
            Routing::GradientFlow,
        ] {
            let o = Objectives::default();
            let fast = node_scores(&pod(100), policy, &refs(&nodes), &o, routing, 1.0);
            let broken = score_breakdown(&pod(100), policy, &refs(&nodes), &o, routing, 1.0);
            assert_eq!(fast.len(), nodes.len());
            for (n, (score, points)) in nodes.iter().zip(&fast) {
                let b = broken.iter().find(|b| b.node == n.name).unwrap();
                assert_eq!((b.score, b.points.to_bits()), (*score, points.to_bits()), "{}", n.name);
            }
        }
    }
}

#[test]
fn near_agents_are_followed_at_weight_one_unless_already_a_peer() {
    let followed = crate::placement::followed_agents(
        [("db".to_string(), 3.0), ("cache".to_string(), 0.5)],
        &["db".to_string(), "auth".to_string()],
    );
    assert_eq!(
        followed.into_iter().collect::<Vec<_>>(),
        vec![
            ("auth".to_string(), 1.0),
            ("cache".to_string(), 0.5),
            ("db".to_string(), 3.0)
        ]
    );
}
