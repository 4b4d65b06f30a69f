//! Root cause on the topology: given the nodes (with region/zone/rack/hostname labels), the
//! agents (their nodes and the peer agents they call) and the anomalous nodes/agents with
//! scores, name the smallest failure domain that explains them — a node, rack, zone, region
//! or an upstream peer agent — with a confidence in [0, 1]. Plain data in, a ranked list out;
//! deterministic (every map is a `BTreeMap`, ties break on level then name).
//!
//! # Model
//! The *elements* are the nodes and the agents. Element `i` carries evidence `a_i ∈ [0, 1]`
//! (its anomaly score, 0 when not reported). A hypothesis `H_D` says "domain D failed": its
//! members are anomalous with probability `p` each (`Params::p_member`), every other element
//! with the background (decoy) rate `q` (`Params::q_background`). The null hypothesis `H_0`
//! says nothing failed: every element is anomalous with rate `q`. With soft evidence, the log
//! likelihood ratio of `H_D` against `H_0` is
//!
//! `LLR(D) = Σ_{i∈D} [a_i · w₁ − (1 − a_i) · w₀]`, `w₁ = ln(p/q)`, `w₀ = ln((1−q)/(1−p))`:
//!
//! every anomalous member pays in `w₁`, every quiet member costs `w₀`, anomalies outside D
//! are left to the background and do not count (decoys elsewhere do not move the answer).
//!
//! The prior is a description length (MDL): naming a domain costs choosing its level out of
//! the `L` levels present and then the domain out of the `|level|` domains of that level,
//! `ln π(D) = ln(1 − π₀) − ln L − ln |level(D)|`, and `H_0` has prior `π₀` (`Params::prior_none`).
//! Each hypothesis scores `s_D = LLR(D) + ln π(D)`, `s_0 = ln π₀`, and its confidence is the
//! posterior `P(D | a) = e^{s_D} / (e^{s_0} + Σ_{D'} e^{s_{D'}})`. A domain too large for the
//! evidence loses on its quiet members (`w₀` each), one too small loses the anomalous members
//! it leaves out (`w₁` each): the posterior maximum is the smallest domain that explains most
//! of the anomalies.
//!
//! Domains with the same members are one hypothesis (the metrics cannot tell them apart); it
//! takes the smallest level's name (node < upstream < rack < zone < region) and the posterior
//! mass of all of them.
//!
//! # Members
//! - node `n`: `{n}` ∪ the agents running on `n`;
//! - rack / zone / region `v`: the nodes whose label equals `v` ∪ the agents with a node there
//!   (rack names are taken to be unique in the cluster, as zone and region names are);
//! - upstream agent `x`: `{x}` ∪ every agent that calls `x`, directly or through other agents
//!   (a failing dependency shows in its callers).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::labels::{HOSTNAME_LABEL, RACK_LABEL, REGION_LABEL, ZONE_LABEL};

/// Errors of the root-cause area; each names the file or field at fault.
#[derive(Debug, Error, PartialEq)]
pub enum RcaError {
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: bad JSON: {reason}")]
    BadJson { file: String, reason: String },
    #[error("{file}: the topology has no nodes")]
    NoNodes { file: String },
    #[error("{field}: {reason}")]
    BadField { field: String, reason: String },
    #[error("parameter {name} = {value}: {why}")]
    BadParameter {
        name: &'static str,
        value: f64,
        why: &'static str,
    },
}

/// Failure-domain levels, smallest first (the order breaks ties between equal member sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Node,
    Upstream,
    Rack,
    Zone,
    Region,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Node => "node",
            Level::Upstream => "upstream",
            Level::Rack => "rack",
            Level::Zone => "zone",
            Level::Region => "region",
        }
    }
}

/// A node and its topology labels (only the four topology keys are read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopoNode {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An agent: the nodes its replicas run on and the peer agents it calls (its upstreams).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TopoAgent {
    pub name: String,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// What the localiser sees: the cluster and the anomalies (name → score in [0, 1]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub nodes: Vec<TopoNode>,
    #[serde(default)]
    pub agents: Vec<TopoAgent>,
    /// Anomalous nodes and their scores.
    #[serde(default)]
    pub anomalous_nodes: BTreeMap<String, f64>,
    /// Anomalous agents and their scores.
    #[serde(default)]
    pub anomalous_agents: BTreeMap<String, f64>,
}

/// Constants of the model (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Params {
    /// `p`: chance that a member of the failed domain shows as anomalous.
    pub p_member: f64,
    /// `q`: chance that an element outside it does (decoys, false alarms).
    pub q_background: f64,
    /// `π₀`: prior of "nothing failed".
    pub prior_none: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            p_member: 0.8,
            q_background: 0.02,
            prior_none: 0.05,
        }
    }
}

impl Params {
    /// Checks `0 < q < p < 1` and `0 < π₀ < 1`.
    pub fn validate(&self) -> Result<(), RcaError> {
        let open = |name: &'static str, value: f64| {
            if value > 0.0 && value < 1.0 {
                Ok(())
            } else {
                Err(RcaError::BadParameter {
                    name,
                    value,
                    why: "must be in (0, 1)",
                })
            }
        };
        open("p_member", self.p_member)?;
        open("q_background", self.q_background)?;
        open("prior_none", self.prior_none)?;
        if self.q_background >= self.p_member {
            return Err(RcaError::BadParameter {
                name: "q_background",
                value: self.q_background,
                why: "must be below p_member",
            });
        }
        Ok(())
    }
}

/// One candidate cause, as ranked by [`localise`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    pub level: Level,
    pub name: String,
    /// Posterior probability that this domain failed.
    pub confidence: f64,
    /// Elements of the domain (nodes and agents).
    pub members: usize,
    /// Sum of the members' evidence `a_i`.
    pub anomalous: f64,
    /// Share of all the evidence that the domain explains.
    pub explained: f64,
}

/// The answer: ranked causes (best first) and the posterior of "nothing failed".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub causes: Vec<Cause>,
    pub none_confidence: f64,
}

impl Diagnosis {
    /// The most likely cause, when it is more likely than "nothing failed".
    pub fn top(&self) -> Option<&Cause> {
        self.causes.first().filter(|c| c.confidence > self.none_confidence)
    }
}

/// The candidate domains of a snapshot and their members, built once and reusable for many
/// evidence vectors (the evaluation re-localises at every time step).
#[derive(Debug, Clone)]
pub struct Domains {
    node_names: Vec<String>,
    agent_names: Vec<String>,
    /// (level, name) → sorted member elements, as node indices and agent indices.
    domains: Vec<(Level, String, Vec<usize>, Vec<usize>)>,
    /// Number of distinct domains per level (for the prior).
    per_level: BTreeMap<Level, usize>,
}

impl Domains {
    /// Builds the domains. Errors name the field: a node or agent without a name, a name used
    /// twice, an agent on an unknown node, an upstream naming an unknown agent.
    pub fn new(nodes: &[TopoNode], agents: &[TopoAgent]) -> Result<Self, RcaError> {
        let mut node_index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(RcaError::BadField {
                    field: format!("nodes[{i}].name"),
                    reason: "is empty".into(),
                });
            }
            if node_index.insert(n.name.as_str(), i).is_some() {
                return Err(RcaError::BadField {
                    field: format!("nodes[{i}].name"),
                    reason: format!("`{}` appears twice", n.name),
                });
            }
        }
        let mut agent_index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, a) in agents.iter().enumerate() {
            if a.name.is_empty() {
                return Err(RcaError::BadField {
                    field: format!("agents[{i}].name"),
                    reason: "is empty".into(),
                });
            }
            if agent_index.insert(a.name.as_str(), i).is_some() {
                return Err(RcaError::BadField {
                    field: format!("agents[{i}].name"),
                    reason: format!("`{}` appears twice", a.name),
                });
            }
        }
        // agents per node, and callers per agent
        let mut agents_on: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
        let mut callers: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); agents.len()];
        for (ai, a) in agents.iter().enumerate() {
            for n in &a.nodes {
                let Some(&ni) = node_index.get(n.as_str()) else {
                    return Err(RcaError::BadField {
                        field: format!("agents[{ai}].nodes"),
                        reason: format!("unknown node `{n}`"),
                    });
                };
                agents_on[ni].insert(ai);
            }
            for u in &a.upstream {
                let Some(&ui) = agent_index.get(u.as_str()) else {
                    return Err(RcaError::BadField {
                        field: format!("agents[{ai}].upstream"),
                        reason: format!("unknown agent `{u}`"),
                    });
                };
                if ui != ai {
                    callers[ui].insert(ai);
                }
            }
        }
        let mut grouped: BTreeMap<(Level, String), BTreeSet<usize>> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let host = n.labels.get(HOSTNAME_LABEL).cloned().unwrap_or_else(|| n.name.clone());
            grouped.entry((Level::Node, host)).or_default().insert(i);
            for (level, key) in [
                (Level::Rack, RACK_LABEL),
                (Level::Zone, ZONE_LABEL),
                (Level::Region, REGION_LABEL),
            ] {
                if let Some(v) = n.labels.get(key).filter(|v| !v.is_empty()) {
                    grouped.entry((level, v.clone())).or_default().insert(i);
                }
            }
        }
        let mut domains = Vec::new();
        let mut per_level: BTreeMap<Level, usize> = BTreeMap::new();
        // equal member sets are one hypothesis named after the smallest level; grouped
        // iterates level by level, smallest first, so the first seen keeps the name
        let mut seen: BTreeSet<(Vec<usize>, Vec<usize>)> = BTreeSet::new();
        let mut push = |level: Level, name: String, ns: Vec<usize>, ag: Vec<usize>, domains: &mut Vec<_>| {
            *per_level.entry(level).or_default() += 1;
            if seen.insert((ns.clone(), ag.clone())) {
                domains.push((level, name, ns, ag));
            }
        };
        let mut upstream_domains = Vec::new();
        for (ai, a) in agents.iter().enumerate() {
            // x and every agent that reaches x through calls
            let mut reach: BTreeSet<usize> = BTreeSet::from([ai]);
            let mut stack = vec![ai];
            while let Some(x) = stack.pop() {
                for &c in &callers[x] {
                    if reach.insert(c) {
                        stack.push(c);
                    }
                }
            }
            upstream_domains.push((a.name.clone(), reach.into_iter().collect::<Vec<_>>()));
        }
        let mut upstream_done = false;
        for ((level, name), ns) in grouped {
            if level > Level::Upstream && !upstream_done {
                upstream_done = true;
                for (name, ag) in std::mem::take(&mut upstream_domains) {
                    push(Level::Upstream, name, Vec::new(), ag, &mut domains);
                }
            }
            let ag: BTreeSet<usize> = ns.iter().flat_map(|&n| agents_on[n].iter().copied()).collect();
            push(
                level,
                name,
                ns.into_iter().collect(),
                ag.into_iter().collect(),
                &mut domains,
            );
        }
        for (name, ag) in upstream_domains {
            push(Level::Upstream, name, Vec::new(), ag, &mut domains);
        }
        Ok(Domains {
            node_names: nodes.iter().map(|n| n.name.clone()).collect(),
            agent_names: agents.iter().map(|a| a.name.clone()).collect(),
            domains,
            per_level,
        })
    }

    /// Node names, in input order (the index space of [`Domains::localise_scores`]).
    pub fn node_names(&self) -> &[String] {
        &self.node_names
    }

    /// The (level, name, node indices) of every distinct domain.
    pub fn node_domains(&self) -> impl Iterator<Item = (Level, &str, &[usize])> {
        self.domains.iter().map(|(l, n, ns, _)| (*l, n.as_str(), ns.as_slice()))
    }

    /// Agent names, in input order (the index space of `agent_a`).
    pub fn agent_names(&self) -> &[String] {
        &self.agent_names
    }

    /// Per agent (in input order), the best-ranked cause of `diagnosis` (made from these
    /// domains) whose members include the agent: the domain that best explains this agent's
    /// own anomaly. `None` for an agent no ranked cause contains (no evidence in any of its
    /// domains).
    pub fn agent_causes<'d>(&self, diagnosis: &'d Diagnosis) -> Vec<Option<&'d Cause>> {
        let by_name: BTreeMap<(Level, &str), &[usize]> = self
            .domains
            .iter()
            .map(|(l, n, _, ag)| ((*l, n.as_str()), ag.as_slice()))
            .collect();
        let mut out: Vec<Option<&Cause>> = vec![None; self.agent_names.len()];
        let mut left = out.len();
        for cause in &diagnosis.causes {
            if left == 0 {
                break;
            }
            for &a in by_name
                .get(&(cause.level, cause.name.as_str()))
                .copied()
                .unwrap_or_default()
            {
                if let Some(slot @ None) = out.get_mut(a) {
                    *slot = Some(cause);
                    left -= 1;
                }
            }
        }
        out
    }

    /// Localises from evidence by name; unknown names are an error naming the field.
    pub fn localise(
        &self,
        anomalous_nodes: &BTreeMap<String, f64>,
        anomalous_agents: &BTreeMap<String, f64>,
        params: &Params,
    ) -> Result<Diagnosis, RcaError> {
        let lookup = |names: &[String], scores: &BTreeMap<String, f64>, field: &str| {
            let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
            let mut a = vec![0.0; names.len()];
            for (name, &s) in scores {
                let Some(&i) = index.get(name.as_str()) else {
                    return Err(RcaError::BadField {
                        field: field.into(),
                        reason: format!("unknown name `{name}`"),
                    });
                };
                if !s.is_finite() {
                    return Err(RcaError::BadField {
                        field: format!("{field}.{name}"),
                        reason: format!("score {s} is not a number"),
                    });
                }
                a[i] = s.clamp(0.0, 1.0);
            }
            Ok(a)
        };
        let node_a = lookup(&self.node_names, anomalous_nodes, "anomalous_nodes")?;
        let agent_a = lookup(&self.agent_names, anomalous_agents, "anomalous_agents")?;
        self.localise_scores(&node_a, &agent_a, params)
    }

    /// Localises from evidence vectors indexed like the input nodes and agents (missing
    /// entries count 0). See the module doc for the formulas.
    pub fn localise_scores(&self, node_a: &[f64], agent_a: &[f64], params: &Params) -> Result<Diagnosis, RcaError> {
        params.validate()?;
        let (p, q, pi0) = (params.p_member, params.q_background, params.prior_none);
        let w1 = (p / q).ln();
        let w0 = ((1.0 - q) / (1.0 - p)).ln();
        let get = |v: &[f64], i: usize| {
            v.get(i)
                .copied()
                .filter(|x| x.is_finite())
                .unwrap_or(0.0)
                .clamp(0.0, 1.0)
        };
        let total: f64 = (0..self.node_names.len()).map(|i| get(node_a, i)).sum::<f64>()
            + (0..self.agent_names.len()).map(|i| get(agent_a, i)).sum::<f64>();
        let levels = self.per_level.len().max(1) as f64;
        let s0 = pi0.ln();
        let mut scored: Vec<(f64, Level, &str, usize, f64)> = Vec::with_capacity(self.domains.len());
        for (level, name, ns, ag) in &self.domains {
            let k: f64 =
                ns.iter().map(|&i| get(node_a, i)).sum::<f64>() + ag.iter().map(|&i| get(agent_a, i)).sum::<f64>();
            let n = (ns.len() + ag.len()) as f64;
            let llr = k * w1 - (n - k) * w0;
            let count = self.per_level.get(level).copied().unwrap_or(1).max(1) as f64;
            let s = llr + (1.0 - pi0).ln() - levels.ln() - count.ln();
            scored.push((s, *level, name.as_str(), ns.len() + ag.len(), k));
        }
        // log-sum-exp over H_0 and every domain
        let max = scored.iter().map(|x| x.0).fold(s0, f64::max);
        let z: f64 = (s0 - max).exp() + scored.iter().map(|x| (x.0 - max).exp()).sum::<f64>();
        let none_confidence = (s0 - max).exp() / z;
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
        let causes = scored
            .into_iter()
            .filter(|x| x.4 > 0.0)
            .map(|(s, level, name, members, k)| Cause {
                level,
                name: name.to_string(),
                confidence: (s - max).exp() / z,
                members,
                anomalous: k,
                explained: if total > 0.0 { k / total } else { 0.0 },
            })
            .collect();
        Ok(Diagnosis {
            causes,
            none_confidence,
        })
    }
}

/// Localises the anomalies of a snapshot: builds its domains and ranks them.
pub fn localise(snapshot: &Snapshot, params: &Params) -> Result<Diagnosis, RcaError> {
    Domains::new(&snapshot.nodes, &snapshot.agents)?.localise(
        &snapshot.anomalous_nodes,
        &snapshot.anomalous_agents,
        params,
    )
}

/// Parses a snapshot JSON (`{"nodes": [{"name", "labels"}], "agents": [...],
/// "anomalous_nodes": {name: score}, "anomalous_agents": {...}}`); `file` names it in errors.
pub fn parse_snapshot(file: &str, text: &str) -> Result<Snapshot, RcaError> {
    let s: Snapshot = serde_json::from_str(text).map_err(|e| RcaError::BadJson {
        file: file.into(),
        reason: e.to_string(),
    })?;
    if s.nodes.is_empty() {
        return Err(RcaError::NoNodes { file: file.into() });
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
