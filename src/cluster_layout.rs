//! Synthetic cluster layouts: turns a topology description (regions → zones → racks → nodes)
//! into a sorted list of nodes with topology labels and capacities.
//!
//! Used by the test harness and `make demo` to create kwok nodes, and by benchmarks and the
//! simulator to model a cluster. Pure and deterministic: the same description always gives
//! the same nodes in the same order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{HOSTNAME_LABEL, RACK_LABEL, REGION_LABEL, ZONE_LABEL};

/// A uniform hierarchy: every region has the same number of zones, and so on down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UniformLayout {
    pub regions: u32,
    pub zones_per_region: u32,
    pub racks_per_zone: u32,
    pub nodes_per_rack: u32,
    /// Allocatable CPU of each node, in millicores.
    pub cpu_millis: u64,
    /// Allocatable memory of each node, in bytes.
    pub memory_bytes: u64,
    /// Maximum pods per node.
    pub pods: u32,
}

impl Default for UniformLayout {
    fn default() -> Self {
        Self {
            regions: 2,
            zones_per_region: 2,
            racks_per_zone: 1,
            nodes_per_rack: 2,
            cpu_millis: 8_000,
            memory_bytes: 32 << 30,
            pods: 110,
        }
    }
}

/// One node of a layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub name: String,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LayoutError {
    #[error("layout field `{field}` must be at least 1, got 0")]
    Zero { field: &'static str },
    #[error("layout has {nodes} nodes, more than the limit of {limit}")]
    TooLarge { nodes: u64, limit: u64 },
    #[error("{given} region names given for {regions} regions; give one per region")]
    RegionNameCount { given: usize, regions: usize },
    #[error(
        "region name {name:?} is not a valid label value (1-50 of a-z, 0-9, '-', starting and ending alphanumeric) or is given twice"
    )]
    BadRegionName { name: String },
}

/// Path of kwok's simulated kubelet resource metrics for `node` (its `Metric` document
/// `metrics-resource`); metrics-server reads it from the node annotation
/// `metrics.k8s.io/resource-metrics-path` instead of `/metrics/resource`.
pub fn kwok_resource_metrics_path(node: &str) -> String {
    format!("/metrics/nodes/{node}/metrics/resource")
}

/// Renames the regions of a [`UniformLayout`]'s nodes: `region-{r}` becomes `names[r]` in the
/// region, zone (`<region><letter>`) and rack labels, so a layout can carry the regions its
/// manifests name (e.g. `eu-west-1`, zones `eu-west-1a` …). Node names are unchanged.
pub fn with_region_names(nodes: Vec<NodeSpec>, names: &[String]) -> Result<Vec<NodeSpec>, LayoutError> {
    let regions: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.labels.get(REGION_LABEL))
        .map(String::as_str)
        .collect();
    if names.len() != regions.len() {
        return Err(LayoutError::RegionNameCount {
            given: names.len(),
            regions: regions.len(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let ok = (1..=50).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok || !seen.insert(name.as_str()) {
            return Err(LayoutError::BadRegionName { name: name.clone() });
        }
    }
    Ok(nodes
        .into_iter()
        .map(|mut n| {
            let old = n.labels.get(REGION_LABEL).cloned().unwrap_or_default();
            let index = old
                .strip_prefix("region-")
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < names.len());
            if let Some(i) = index {
                for key in [REGION_LABEL, ZONE_LABEL, RACK_LABEL] {
                    if let Some(v) = n.labels.get_mut(key)
                        && let Some(rest) = v.strip_prefix(&old)
                    {
                        *v = format!("{}{rest}", names[i]);
                    }
                }
            }
            n
        })
        .collect())
}

/// The largest layout we generate (far above what one machine's kwok can simulate well).
pub const MAX_NODES: u64 = 100_000;

impl UniformLayout {
    /// The smallest uniform layout over `regions` × `zones_per_region` zones holding at least
    /// `nodes` nodes, one rack per zone.
    pub fn with_total_nodes(regions: u32, zones_per_region: u32, nodes: u32) -> Self {
        let zones = regions.max(1) * zones_per_region.max(1);
        Self {
            regions: regions.max(1),
            zones_per_region: zones_per_region.max(1),
            racks_per_zone: 1,
            nodes_per_rack: nodes.max(1).div_ceil(zones),
            ..Self::default()
        }
    }

    /// All nodes, named `r{region}-z{zone}-k{rack}-n{node}`, sorted by name.
    ///
    /// Zone names follow the cloud convention `<region><letter>` (e.g. `region-0a`).
    pub fn nodes(&self) -> Result<Vec<NodeSpec>, LayoutError> {
        for (field, v) in [
            ("regions", self.regions),
            ("zonesPerRegion", self.zones_per_region),
            ("racksPerZone", self.racks_per_zone),
            ("nodesPerRack", self.nodes_per_rack),
            ("pods", self.pods),
        ] {
            if v == 0 {
                return Err(LayoutError::Zero { field });
            }
        }
        let total = u64::from(self.regions)
            * u64::from(self.zones_per_region)
            * u64::from(self.racks_per_zone)
            * u64::from(self.nodes_per_rack);
        if total > MAX_NODES {
            return Err(LayoutError::TooLarge {
                nodes: total,
                limit: MAX_NODES,
            });
        }
        let mut out = Vec::with_capacity(total as usize);
        for r in 0..self.regions {
            let region = format!("region-{r}");
            for z in 0..self.zones_per_region {
                let zone = format!("{region}{}", zone_letter(z));
                for k in 0..self.racks_per_zone {
                    let rack = format!("{zone}-rack-{k}");
                    for n in 0..self.nodes_per_rack {
                        let name = format!("r{r}-z{z}-k{k}-n{n}");
                        let labels = BTreeMap::from([
                            (REGION_LABEL.to_string(), region.clone()),
                            (ZONE_LABEL.to_string(), zone.clone()),
                            (RACK_LABEL.to_string(), rack.clone()),
                            (HOSTNAME_LABEL.to_string(), name.clone()),
                        ]);
                        out.push(NodeSpec {
                            name,
                            labels,
                            cpu_millis: self.cpu_millis,
                            memory_bytes: self.memory_bytes,
                            pods: self.pods,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

impl NodeSpec {
    /// The node as placement sees it with nothing on it yet, at `position` in the ball (no
    /// price, spot or energy class: layouts carry none).
    pub fn empty_state(&self, position: Vec<f64>) -> crate::placement::NodeState {
        use crate::placement::{NodeState, Resources};
        NodeState {
            name: self.name.clone(),
            labels: std::sync::Arc::new(self.labels.clone()),
            position,
            allocatable: Resources {
                cpu_millis: self.cpu_millis,
                memory_bytes: self.memory_bytes,
            },
            requested: Resources::default(),
            tentative: Resources::default(),
            tentative_pods: 0,
            pods: 0,
            max_pods: self.pods,
            tenants: BTreeMap::new(),
            hourly_cost: None,
            spot: false,
            energy_class: None,
        }
    }

    /// The Node object for kwok (run with `--manage-nodes-with-annotation-selector
    /// kwok.x-k8s.io/node=fake`), which marks it Ready, keeps its Lease fresh and runs the pods
    /// bound to it. Carries the layout's labels plus `type=kwok`.
    pub fn kwok_manifest(&self) -> serde_json::Value {
        let mut labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        labels.insert("type".into(), serde_json::json!("kwok"));
        labels.insert("kubernetes.io/os".into(), serde_json::json!("linux"));
        labels.insert("kubernetes.io/arch".into(), serde_json::json!("amd64"));
        let resources = serde_json::json!({
            "cpu": format!("{}m", self.cpu_millis),
            "memory": self.memory_bytes.to_string(),
            "pods": self.pods.to_string(),
        });
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {
                    "kwok.x-k8s.io/node": "fake",
                    "metrics.k8s.io/resource-metrics-path": kwok_resource_metrics_path(&self.name),
                },
                "labels": labels,
            },
            "status": {
                "allocatable": resources.clone(),
                "capacity": resources,
            },
        })
    }
}

/// The sites of a network (e.g. a TopoHub graph) as a cluster: each site is a zone
/// `site-NNN` holding `nodes_per_site` nodes `sNNN-nK`, and the sites are grouped into
/// `regions` regions `region-R` by k-medoids (PAM) on `delays` (site × site one-way delay, ms;
/// ∞ = unreachable, counted as 10⁶ ms). BUILD adds the medoid that lowers the total delay to
/// the nearest medoid most (ties: lower index); SWAP then exchanges a medoid with a non-medoid
/// while that lowers the total, at most 100 passes. Regions are numbered by their medoid's
/// index; a site joins its nearest medoid (ties: lower region). Deterministic. Nodes have 8 CPU,
/// 32 GiB, 110 pods, no rack label; sorted by name.
pub fn sites_layout(delays: &[Vec<f64>], regions: usize, nodes_per_site: u32) -> Result<Vec<NodeSpec>, LayoutError> {
    let n = delays.len();
    if n == 0 {
        return Err(LayoutError::Zero { field: "sites" });
    }
    if regions == 0 {
        return Err(LayoutError::Zero { field: "regions" });
    }
    if nodes_per_site == 0 {
        return Err(LayoutError::Zero { field: "nodesPerSite" });
    }
    let total = n as u64 * u64::from(nodes_per_site);
    if total > MAX_NODES {
        return Err(LayoutError::TooLarge {
            nodes: total,
            limit: MAX_NODES,
        });
    }
    let d = |i: usize, j: usize| -> f64 {
        let x = delays.get(i).and_then(|r| r.get(j)).copied().unwrap_or(f64::INFINITY);
        if x.is_finite() { x.max(0.0) } else { 1e6 }
    };
    let cost = |medoids: &[usize]| -> f64 {
        (0..n)
            .map(|i| medoids.iter().map(|&m| d(i, m)).fold(f64::INFINITY, f64::min))
            .sum()
    };
    let k = regions.min(n);
    let mut medoids: Vec<usize> = Vec::with_capacity(k);
    while medoids.len() < k {
        let best = (0..n)
            .filter(|c| !medoids.contains(c))
            .map(|c| {
                let mut with = medoids.clone();
                with.push(c);
                (cost(&with), c)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        match best {
            Some((_, c)) => medoids.push(c),
            None => break,
        }
    }
    for _ in 0..100 {
        let current = cost(&medoids);
        let mut best: Option<(f64, usize, usize)> = None;
        for slot in 0..medoids.len() {
            for c in (0..n).filter(|c| !medoids.contains(c)) {
                let mut with = medoids.clone();
                with[slot] = c;
                let v = cost(&with);
                if v < current - 1e-9 && best.is_none_or(|b| v < b.0) {
                    best = Some((v, slot, c));
                }
            }
        }
        match best {
            Some((_, slot, c)) => medoids[slot] = c,
            None => break,
        }
    }
    medoids.sort_unstable();
    let mut out = Vec::with_capacity(total as usize);
    for site in 0..n {
        let region = (0..medoids.len())
            .min_by(|&a, &b| d(site, medoids[a]).total_cmp(&d(site, medoids[b])).then(a.cmp(&b)))
            .unwrap_or(0);
        for j in 0..nodes_per_site {
            let name = format!("s{site:03}-n{j}");
            out.push(NodeSpec {
                labels: BTreeMap::from([
                    (REGION_LABEL.to_string(), format!("region-{region}")),
                    (ZONE_LABEL.to_string(), format!("site-{site:03}")),
                    (HOSTNAME_LABEL.to_string(), name.clone()),
                ]),
                name,
                cpu_millis: 8_000,
                memory_bytes: 32 << 30,
                pods: 110,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `a`…`z`, then `aa`, `ab`, … so any number of zones gets a distinct suffix.
fn zone_letter(mut i: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'a' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uniform_layout_labels_every_node_with_its_whole_path() {
        let nodes = UniformLayout {
            regions: 2,
            zones_per_region: 3,
            racks_per_zone: 2,
            nodes_per_rack: 2,
            ..Default::default()
        }
        .nodes()
        .unwrap();
        assert_eq!(nodes.len(), 24);
        let n = nodes.iter().find(|n| n.name == "r1-z2-k1-n0").unwrap();
        assert_eq!(n.labels[REGION_LABEL], "region-1");
        assert_eq!(n.labels[ZONE_LABEL], "region-1c");
        assert_eq!(n.labels[RACK_LABEL], "region-1c-rack-1");
        assert_eq!(n.labels[HOSTNAME_LABEL], "r1-z2-k1-n0");
    }

    #[test]
    fn layouts_are_deterministic_and_sorted_by_name() {
        let l = UniformLayout::with_total_nodes(3, 2, 50);
        let a = l.nodes().unwrap();
        assert_eq!(a, l.nodes().unwrap());
        assert!(a.len() >= 50);
        assert!(a.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn a_zero_sized_level_is_rejected_naming_the_field() {
        let err = UniformLayout {
            racks_per_zone: 0,
            ..Default::default()
        }
        .nodes()
        .unwrap_err();
        assert_eq!(err, LayoutError::Zero { field: "racksPerZone" });
        assert!(err.to_string().contains("racksPerZone"));
    }

    #[test]
    fn an_absurdly_large_layout_is_rejected() {
        let err = UniformLayout {
            regions: 1000,
            zones_per_region: 1000,
            ..Default::default()
        }
        .nodes()
        .unwrap_err();
        assert!(matches!(err, LayoutError::TooLarge { .. }));
    }

    #[test]
    fn region_names_replace_the_region_in_region_zone_and_rack_labels_and_bad_names_are_refused() {
        let nodes = UniformLayout::default().nodes().unwrap();
        let names = vec!["eu-west-1".to_string(), "eu-central-1".to_string()];
        let renamed = with_region_names(nodes.clone(), &names).unwrap();
        let first = &renamed[0];
        assert_eq!(first.name, nodes[0].name);
        assert_eq!(first.labels[REGION_LABEL], "eu-west-1");
        assert_eq!(first.labels[ZONE_LABEL], "eu-west-1a");
        assert_eq!(first.labels[RACK_LABEL], "eu-west-1a-rack-0");
        assert!(renamed.iter().any(|n| n.labels[ZONE_LABEL] == "eu-central-1b"));
        assert!(renamed.iter().all(|n| !n.labels[ZONE_LABEL].starts_with("region-")));
        // Positive control above; the refusals below name what is wrong.
        let one = with_region_names(nodes.clone(), &names[..1]).unwrap_err();
        assert_eq!(one, LayoutError::RegionNameCount { given: 1, regions: 2 });
        for bad in ["EU", "-x", "a b", "", "same"] {
            let twice = if bad == "same" {
                vec![bad.to_string(), bad.to_string()]
            } else {
                vec![bad.to_string(), "ok".to_string()]
            };
            assert!(
                matches!(
                    with_region_names(nodes.clone(), &twice),
                    Err(LayoutError::BadRegionName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn kwok_nodes_tell_metrics_server_where_kwok_serves_their_resource_metrics() {
        let node = &UniformLayout::default().nodes().unwrap()[0];
        let m = node.kwok_manifest();
        assert_eq!(
            m["metadata"]["annotations"]["metrics.k8s.io/resource-metrics-path"],
            format!("/metrics/nodes/{}/metrics/resource", node.name)
        );
    }

    #[test]
    fn zone_suffixes_stay_distinct_past_the_alphabet() {
        let names: Vec<String> = (0..800).map(zone_letter).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 800);
        assert_eq!(zone_letter(0), "a");
        assert_eq!(zone_letter(25), "z");
        assert_eq!(zone_letter(26), "aa");
    }

    #[test]
    fn sites_are_grouped_into_regions_of_nearby_sites() {
        // Two far-apart triangles of sites: two regions, one per triangle.
        let near = 1.0;
        let far = 50.0;
        let delays: Vec<Vec<f64>> = (0..6)
            .map(|i| {
                (0..6)
                    .map(|j| {
                        if i == j {
                            0.0
                        } else if i / 3 == j / 3 {
                            near
                        } else {
                            far
                        }
                    })
                    .collect()
            })
            .collect();
        let nodes = sites_layout(&delays, 2, 2).unwrap();
        assert_eq!(nodes.len(), 12);
        let region = |site: usize| nodes[2 * site].labels[REGION_LABEL].clone();
        assert_eq!(region(0), region(2));
        assert_eq!(region(3), region(5));
        assert_ne!(region(0), region(3));
        assert_eq!(sites_layout(&delays, 2, 2).unwrap(), nodes);
        assert!(sites_layout(&[], 2, 2).is_err() && sites_layout(&delays, 0, 2).is_err());
    }
}
