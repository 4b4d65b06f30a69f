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
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": labels,
            },
            "status": {
                "allocatable": resources.clone(),
                "capacity": resources,
            },
        })
    }
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
}
