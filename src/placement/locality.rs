//! Strategy rules that tie an agent's pods to places named by labels: data locality
//! (`spec.placement.locality`, a label selector over nodes, `required` or `preferred`) and
//! preferred regions (`spec.placement.preferredRegions`, a hard tier in list order).
//!
//! - **required locality**: a node whose labels the `dataNodes` selector does not match is
//!   rejected by the filter (unresolvable), with one reason for every such node naming the
//!   strategy and the selector, so the scheduler's `FailedScheduling` message says why.
//! - **preferred locality**: in prioritize, every node the selector matches scores in 6…10 and
//!   every other node in 0…4 (see [`super::score`]), ordered among themselves by closeness in
//!   the ball to the nearest data node.
//! - **preferred regions**: among the nodes that pass every other check, only those of the
//!   first listed region that has any pass; when none of the listed regions has one, every
//!   passing node stays (the regions are preferred, not required).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A label selector over node labels, with Kubernetes `LabelSelector` semantics: every
/// `matchLabels` pair and every expression must hold; an empty selector matches every node.
/// Either list may be left out in JSON, as in a Kubernetes `LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    /// Empty (and may be left out) for `Exists` and `DoesNotExist`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// The operators of a `LabelSelectorRequirement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOperator {
    /// Parses the wire name (`In`, `NotIn`, `Exists`, `DoesNotExist`).
    pub fn parse(op: &str) -> Option<Self> {
        match op {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }
}

impl NodeSelector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

impl fmt::Display for NodeSelector {
    /// The selector in `kubectl -l` syntax (`disk=ssd,zone in (a,b),!gpu`); `{}` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &self.match_expressions {
            parts.push(match e.operator {
                SelectorOperator::In => format!("{} in ({})", e.key, e.values.join(",")),
                SelectorOperator::NotIn => format!("{} notin ({})", e.key, e.values.join(",")),
                SelectorOperator::Exists => e.key.clone(),
                SelectorOperator::DoesNotExist => format!("!{}", e.key),
            });
        }
        if parts.is_empty() {
            write!(f, "{{}}")
        } else {
            write!(f, "{}", parts.join(","))
        }
    }
}

/// The data locality of an agent's strategy, resolved for placement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalityPolicy {
    /// Nodes holding the data (`dataNodes`).
    pub data_nodes: NodeSelector,
    /// `mode: required` (a filter) rather than `preferred` (a score tier).
    pub required: bool,
    /// Positions of every node the selector matches right now (filled by the operator's view;
    /// prioritize scores other nodes by closeness to the nearest of them).
    pub data_node_positions: Vec<Vec<f64>>,
}

/// Why a node fails required locality; the same text for every such node, so the scheduler
/// aggregates it into one line of its `FailedScheduling` message.
pub fn locality_reason(strategy: &str, selector: &NodeSelector) -> String {
    format!(
        "spec.placement.locality (mode required) of OrchestrationStrategy {strategy}: node does not match dataNodes {selector}"
    )
}

/// The region the preferred-regions tier keeps: the first of `preferred` that one of the
/// passing nodes is in (`passing_regions`: their region label values); `None` when no listed
/// region has one.
pub fn preferred_region<'a>(preferred: &'a [String], passing_regions: &[Option<&str>]) -> Option<&'a str> {
    preferred
        .iter()
        .map(String::as_str)
        .find(|r| passing_regions.contains(&Some(*r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn a_selector_needs_every_label_and_every_expression_and_an_empty_one_matches_all() {
        let ssd = labels(&[("disk", "ssd"), ("zone", "a")]);
        let hdd = labels(&[("disk", "hdd"), ("zone", "b"), ("gpu", "1")]);
        assert!(NodeSelector::default().matches(&ssd));
        let s = NodeSelector {
            match_labels: labels(&[("disk", "ssd")]),
            match_expressions: vec![req("zone", SelectorOperator::In, &["a", "c"])],
        };
        assert!(s.matches(&ssd));
        assert!(!s.matches(&hdd));
        let not = NodeSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![
                req("zone", SelectorOperator::NotIn, &["a"]),
                req("gpu", SelectorOperator::Exists, &[]),
                req("spot", SelectorOperator::DoesNotExist, &[]),
            ],
        };
        assert!(!not.matches(&ssd));
        assert!(not.matches(&hdd));
        assert_eq!(s.to_string(), "disk=ssd,zone in (a,c)");
        assert_eq!(not.to_string(), "zone notin (a),gpu,!spot");
        assert_eq!(NodeSelector::default().to_string(), "{}");
        assert_eq!(SelectorOperator::parse("Exists"), Some(SelectorOperator::Exists));
        assert_eq!(SelectorOperator::parse("Gt"), None);
    }

    #[test]
    fn the_preferred_region_is_the_first_listed_one_with_a_passing_node() {
        let prefs = vec!["b".to_string(), "a".to_string()];
        assert_eq!(preferred_region(&prefs, &[Some("a"), Some("b")]), Some("b"));
        assert_eq!(preferred_region(&prefs, &[Some("a"), None]), Some("a"));
        assert_eq!(preferred_region(&prefs, &[Some("c"), None]), None);
        assert_eq!(preferred_region(&[], &[Some("a")]), None);
    }
}
