use super::*;

fn cluster() -> Vec<TopoNode> {
    // 2 regions × 2 zones × 2 racks × 2 nodes
    let mut out = Vec::new();
    for r in 0..2 {
        for z in 0..2 {
            for k in 0..2 {
                for n in 0..2 {
                    let name = format!("r{r}z{z}k{k}n{n}");
                    out.push(TopoNode {
                        labels: BTreeMap::from([
                            (REGION_LABEL.to_string(), format!("r{r}")),
                            (ZONE_LABEL.to_string(), format!("r{r}z{z}")),
                            (RACK_LABEL.to_string(), format!("r{r}z{z}k{k}")),
                            (HOSTNAME_LABEL.to_string(), name.clone()),
                        ]),
                        name,
                    });
                }
            }
        }
    }
    out
}

fn top(anomalous: &[&str]) -> Option<(Level, String)> {
    let s = Snapshot {
        nodes: cluster(),
        anomalous_nodes: anomalous.iter().map(|n| (n.to_string(), 1.0)).collect(),
        ..Snapshot::default()
    };
    localise(&s, &Params::default())
        .unwrap()
        .top()
        .map(|c| (c.level, c.name.clone()))
}

#[test]
fn a_whole_zone_anomalous_is_the_zone_not_its_region_nor_one_rack() {
    let zone = ["r0z1k0n0", "r0z1k0n1", "r0z1k1n0", "r0z1k1n1"];
    assert_eq!(top(&zone), Some((Level::Zone, "r0z1".into())));
}

#[test]
fn one_node_anomalous_is_the_node() {
    assert_eq!(top(&["r1z0k1n0"]), Some((Level::Node, "r1z0k1n0".into())));
}

#[test]
fn decoys_elsewhere_do_not_move_the_answer() {
    let with_decoy = ["r0z1k0n0", "r0z1k0n1", "r0z1k1n0", "r0z1k1n1", "r1z1k0n1"];
    assert_eq!(top(&with_decoy), Some((Level::Zone, "r0z1".into())));
}

#[test]
fn empty_input_is_no_cause_not_a_panic() {
    assert_eq!(top(&[]), None);
    let d = localise(&Snapshot::default(), &Params::default()).unwrap();
    assert!(d.causes.is_empty() && d.top().is_none());
}

#[test]
fn a_failing_upstream_agent_explains_its_callers() {
    let agents = vec![
        TopoAgent {
            name: "db".into(),
            nodes: vec!["r0z0k0n0".into()],
            upstream: vec![],
        },
        TopoAgent {
            name: "api".into(),
            nodes: vec!["r1z0k0n0".into()],
            upstream: vec!["db".into()],
        },
        TopoAgent {
            name: "web".into(),
            nodes: vec!["r1z1k1n1".into()],
            upstream: vec!["api".into()],
        },
    ];
    let s = Snapshot {
        nodes: cluster(),
        agents,
        anomalous_agents: ["db", "api", "web"].iter().map(|a| (a.to_string(), 1.0)).collect(),
        ..Snapshot::default()
    };
    let d = localise(&s, &Params::default()).unwrap();
    let c = d.top().unwrap();
    assert_eq!((c.level, c.name.as_str()), (Level::Upstream, "db"));
    assert!(c.confidence > 0.5 && c.confidence <= 1.0);
}

#[test]
fn each_agent_gets_the_best_cause_that_contains_it() {
    // web and api run in zone r0z1 (which fails as a whole); db calls nothing and is flagged
    // alone elsewhere; cache is quiet, on a healthy node.
    let agents = vec![
        TopoAgent {
            name: "web".into(),
            nodes: vec!["r0z1k0n0".into()],
            upstream: vec![],
        },
        TopoAgent {
            name: "api".into(),
            nodes: vec!["r0z1k1n1".into()],
            upstream: vec![],
        },
        TopoAgent {
            name: "db".into(),
            nodes: vec!["r1z0k0n0".into()],
            upstream: vec![],
        },
        TopoAgent {
            name: "cache".into(),
            nodes: vec!["r1z1k1n1".into()],
            upstream: vec![],
        },
    ];
    let zone = ["r0z1k0n0", "r0z1k0n1", "r0z1k1n0", "r0z1k1n1"];
    let domains = Domains::new(&cluster(), &agents).unwrap();
    let node_a: Vec<f64> = domains
        .node_names()
        .iter()
        .map(|n| f64::from(u8::from(zone.contains(&n.as_str()))))
        .collect();
    let agent_a = vec![1.0, 1.0, 1.0, 0.0];
    let d = domains.localise_scores(&node_a, &agent_a, &Params::default()).unwrap();
    assert_eq!(domains.agent_names(), ["web", "api", "db", "cache"]);
    let causes: Vec<Option<(Level, &str)>> = domains
        .agent_causes(&d)
        .into_iter()
        .map(|c| c.map(|c| (c.level, c.name.as_str())))
        .collect();
    assert_eq!(causes[0], Some((Level::Zone, "r0z1")));
    assert_eq!(causes[1], Some((Level::Zone, "r0z1")));
    // db's own anomaly is not the zone's, nor its node's (the node is quiet): db on its own.
    assert_eq!(causes[2], Some((Level::Upstream, "db")));
    // cache is quiet: the best domain holding it is region r1, which holds db, and it is a
    // weak explanation.
    assert_eq!(causes[3], Some((Level::Region, "r1")));
    let region = domains.agent_causes(&d)[3].unwrap().confidence;
    assert!(region < d.none_confidence, "{region} vs {}", d.none_confidence);
    // Control: no evidence at all, no cause for anyone.
    let quiet = domains
        .localise_scores(&vec![0.0; node_a.len()], &[0.0; 4], &Params::default())
        .unwrap();
    assert!(domains.agent_causes(&quiet).iter().all(Option::is_none));
}

#[test]
fn an_unknown_anomalous_name_is_an_error_naming_the_field() {
    let s = Snapshot {
        nodes: cluster(),
        anomalous_nodes: BTreeMap::from([("ghost".to_string(), 1.0)]),
        ..Snapshot::default()
    };
    let err = localise(&s, &Params::default()).unwrap_err();
    assert!(err.to_string().contains("anomalous_nodes"), "{err}");
}
