//! Readable positions: names the node, zone and region nearest to a point of the Poincaré
//! ball, with the hyperbolic distance to that node, so a target can be shown as
//! `eu-west-1/eu-west-1a (node r0-z0-k0-n1), d=3.20` instead of sixteen coordinates.
//!
//! Input: the point, the nodes' positions (from the node embedding) and their labels, the
//! curvature. Output: a [`NearestPlace`] or a [`NearestError`] naming what is wrong. Pure and
//! deterministic: ties go to the node first by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geometry::poincare;
use crate::labels::{REGION_LABEL, ZONE_LABEL};

/// The node nearest to a point and where that node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NearestPlace {
    /// The nearest node.
    pub node: String,
    /// Its `topology.kubernetes.io/region` label, if any.
    pub region: Option<String>,
    /// Its `topology.kubernetes.io/zone` label, if any.
    pub zone: Option<String>,
    /// Hyperbolic distance from the point to that node.
    pub distance: f64,
}

/// Why no nearest place could be named.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum NearestError {
    #[error("no node has a position yet")]
    NoNodes,
    #[error("the point has {point} coordinates but the node positions have {nodes}")]
    DimensionMismatch { point: usize, nodes: usize },
    #[error("the point has a coordinate that is not a finite number")]
    NotFinite,
}

impl NearestPlace {
    /// `region/zone`, or the node name when the node has neither label.
    pub fn place(&self) -> String {
        match (&self.region, &self.zone) {
            (Some(r), Some(z)) => format!("{r}/{z}"),
            (Some(r), None) => r.clone(),
            (None, Some(z)) => z.clone(),
            (None, None) => self.node.clone(),
        }
    }

    /// One line for people: `eu-west-1/eu-west-1a (node r0-z0-k0-n1), d=3.20`.
    pub fn describe(&self) -> String {
        format!("{} (node {}), d={:.2}", self.place(), self.node, self.distance)
    }
}

/// The node nearest to `point` (hyperbolic distance at curvature −`kappa`) among `positions`,
/// with its region and zone from `labels_of(node)` (a node without labels still counts,
/// unnamed).
/// Positions of another dimension than the point's are an error, not skipped: they mean the
/// point belongs to another embedding.
pub fn nearest_place<'a>(
    point: &[f64],
    positions: &BTreeMap<String, Vec<f64>>,
    labels_of: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
    kappa: f64,
) -> Result<NearestPlace, NearestError> {
    if point.iter().any(|c| !c.is_finite()) {
        return Err(NearestError::NotFinite);
    }
    let mut best: Option<(&String, f64)> = None;
    for (node, position) in positions {
        if position.len() != point.len() {
            return Err(NearestError::DimensionMismatch {
                point: point.len(),
                nodes: position.len(),
            });
        }
        let d = poincare::distance(point, position, kappa);
        if best.is_none_or(|(_, b)| d < b) {
            best = Some((node, d));
        }
    }
    let (node, distance) = best.ok_or(NearestError::NoNodes)?;
    let labels = labels_of(node);
    let label = |key: &str| labels.and_then(|l| l.get(key)).cloned();
    Ok(NearestPlace {
        node: node.clone(),
        region: label(REGION_LABEL),
        zone: label(ZONE_LABEL),
        distance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_layout::{UniformLayout, with_region_names};

    type Labels = BTreeMap<String, BTreeMap<String, String>>;

    fn cluster() -> (BTreeMap<String, Vec<f64>>, Labels) {
        let nodes = UniformLayout {
            zones_per_region: 3,
            ..Default::default()
        }
        .nodes()
        .unwrap();
        let nodes = with_region_names(nodes, &["eu-west-1".into(), "eu-central-1".into()]).unwrap();
        let labels: BTreeMap<_, _> = nodes.into_iter().map(|n| (n.name, n.labels)).collect();
        let keys = [
            REGION_LABEL.to_string(),
            ZONE_LABEL.to_string(),
            crate::labels::HOSTNAME_LABEL.to_string(),
        ];
        let embedding = crate::placement::embed_nodes(&labels, &keys, 4).unwrap();
        (embedding.positions, labels)
    }

    #[test]
    fn a_node_position_is_named_by_its_own_node_zone_and_region_at_distance_zero() {
        let (positions, labels) = cluster();
        for (name, p) in &positions {
            let got = nearest_place(p, &positions, |n| labels.get(n), 1.0).unwrap();
            assert_eq!(&got.node, name);
            assert_eq!(got.distance, 0.0);
            assert_eq!(got.zone.as_deref(), labels[name].get(ZONE_LABEL).map(String::as_str));
        }
    }

    #[test]
    fn a_point_between_two_nodes_of_a_zone_is_named_by_that_zone_and_is_nearer_than_other_zones() {
        let (positions, labels) = cluster();
        let (a, b) = (&positions["r1-z2-k0-n0"], &positions["r1-z2-k0-n1"]);
        let mid = poincare::geodesic(a, b, 0.5, 1.0);
        let got = nearest_place(&mid, &positions, |n| labels.get(n), 1.0).unwrap();
        assert_eq!(got.place(), "eu-central-1/eu-central-1c");
        assert!(got.distance > 0.0);
        let other = poincare::distance(&mid, &positions["r0-z0-k0-n0"], 1.0);
        assert!(got.distance < other, "{got:?} vs {other}");
        assert!(
            got.describe()
                .starts_with("eu-central-1/eu-central-1c (node r1-z2-k0-n"),
            "{}",
            got.describe()
        );
        assert!(got.describe().contains("d="), "{}", got.describe());
    }

    #[test]
    fn the_origin_is_named_too_and_ties_go_to_the_first_node_by_name() {
        let positions = BTreeMap::from([("b".to_string(), vec![0.5, 0.0]), ("a".to_string(), vec![-0.5, 0.0])]);
        let got = nearest_place(&[0.0, 0.0], &positions, |_| None, 1.0).unwrap();
        assert_eq!(got.node, "a");
        assert_eq!(got.place(), "a", "no labels: the node names the place");
    }

    #[test]
    fn bad_input_is_an_error_naming_it_and_never_a_panic() {
        let (positions, labels) = cluster();
        let p = positions.values().next().unwrap().clone();
        // Positive control: the same point in the same call is fine.
        assert!(nearest_place(&p, &positions, |n| labels.get(n), 1.0).is_ok());
        assert_eq!(
            nearest_place(&p, &BTreeMap::new(), |n| labels.get(n), 1.0),
            Err(NearestError::NoNodes)
        );
        assert_eq!(
            nearest_place(&[0.1], &positions, |n| labels.get(n), 1.0),
            Err(NearestError::DimensionMismatch { point: 1, nodes: 4 })
        );
        let mut nan = p.clone();
        nan[0] = f64::NAN;
        assert_eq!(
            nearest_place(&nan, &positions, |n| labels.get(n), 1.0),
            Err(NearestError::NotFinite)
        );
        // Outside the ball: projected by the distance, still a named answer.
        let far = vec![5.0; p.len()];
        assert!(
            nearest_place(&far, &positions, |n| labels.get(n), 1.0)
                .unwrap()
                .distance
                .is_finite()
        );
    }
}
