//! Geometric mesh ownership: which live operator replica owns each agent, by the agent's
//! position in the Poincaré ball.
//!
//! Each replica `r` holds `V` anchor points. Anchor `i` of `r` is the candidate point (an
//! embedded node) `c` with the largest `h(r, i, c)`, where `h` is 64-bit FNV-1a finished by
//! MurmurHash3's `fmix64` ([`crate::stable_hash::mixed`]) over `identity ‖ 0 ‖ i ‖ 0 ‖ name`
//! (highest-random-weight choice): anchors follow the density
//! of the nodes, and depend only on the replica's own identity and the candidates, never on the
//! other replicas. An agent at `x` is owned by
//!
//! `owner(x) = argmax_r [ ln w_r − s · min_i d(x, p_{r,i}) ]`,
//!
//! ties broken by the larger `h(agent, r)` (the same hash over `agent ‖ 0 ‖ identity`); an agent
//! without a position is owned by `argmax_r h(agent, r)` (rendezvous hashing, weights unused).
//! Because each replica's score depends only on the pair (agent, replica), the rule has the
//! rendezvous property: when a replica joins, only agents that move *to* it change owner; when
//! one leaves, only *its* agents change owner; no agent moves between two replicas that stayed
//! ([`Movement::between_stayers`] is 0). With equal weights `s` does not change the owner (the
//! cells are the Voronoi cells of the anchors); it scales how far a weight moves a boundary.
//!
//! Pure and deterministic: inputs are sorted maps, ties are broken by hashes fixed by their
//! definition.

use std::collections::{BTreeMap, BTreeSet};

use crate::geometry::poincare;
use crate::stable_hash::mixed;

/// Errors of the ownership computation, naming the offending value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MeshError {
    #[error("no replicas: at least one live replica is needed to own agents")]
    NoReplicas,
    #[error("no candidate points: anchors are chosen among embedded nodes, and there are none")]
    NoCandidates,
    #[error("anchors per replica must be between 1 and {max}, got {value}")]
    AnchorsPerReplica { value: usize, max: usize },
    #[error("replica {identity:?}: weight must be finite and > 0, got {value}")]
    Weight { identity: String, value: f64 },
    #[error("replica {identity:?} is listed twice")]
    DuplicateReplica { identity: String },
    #[error("sharpness must be finite and > 0, got {value}")]
    Sharpness { value: f64 },
    #[error("load bound epsilon must be finite and ≥ 0, got {value}")]
    Epsilon { value: f64 },
}

/// The most anchors a replica may hold (bounds the work per agent: `R·V` distances).
pub const MAX_ANCHORS_PER_REPLICA: usize = 1024;

/// A live replica of the mesh: its identity (its pod name, as in its membership Lease) and its
/// weight (`> 0`; a replica of weight 2 wins ties of distance against weight 1 by `ln 2 / s`).
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub identity: String,
    pub weight: f64,
}

impl Replica {
    /// A replica of weight 1.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            identity: identity.into(),
            weight: 1.0,
        }
    }
}

/// The anchors of every live replica, ready to answer [`Anchors::owner`].
#[derive(Debug, Clone)]
pub struct Anchors {
    /// Replicas sorted by identity.
    replicas: Vec<Replica>,
    /// `points[r]`: the anchor points of `replicas[r]`, with the candidate names they came from.
    points: Vec<Vec<(String, Vec<f64>)>>,
    kappa: f64,
    sharpness: f64,
}

fn anchor_hash(identity: &str, index: usize, candidate: &str) -> u64 {
    let index = index.to_string();
    mixed(
        identity
            .bytes()
            .chain([0])
            .chain(index.bytes())
            .chain([0])
            .chain(candidate.bytes()),
    )
}

fn agent_hash(agent: &str, identity: &str) -> u64 {
    mixed(agent.bytes().chain([0]).chain(identity.bytes()))
}

/// Chooses the anchors of `replicas` among `candidates` (node name → position), `per_replica`
/// each, in the ball of curvature −`kappa`; `sharpness` is `s` in the module formula.
pub fn anchors(
    replicas: &[Replica],
    candidates: &BTreeMap<String, Vec<f64>>,
    per_replica: usize,
    kappa: f64,
    sharpness: f64,
) -> Result<Anchors, MeshError> {
    if replicas.is_empty() {
        return Err(MeshError::NoReplicas);
    }
    if candidates.is_empty() {
        return Err(MeshError::NoCandidates);
    }
    if per_replica == 0 || per_replica > MAX_ANCHORS_PER_REPLICA {
        return Err(MeshError::AnchorsPerReplica {
            value: per_replica,
            max: MAX_ANCHORS_PER_REPLICA,
        });
    }
    if !sharpness.is_finite() || sharpness <= 0.0 {
        return Err(MeshError::Sharpness { value: sharpness });
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_by(|a, b| a.identity.cmp(&b.identity));
    for pair in sorted.windows(2) {
        if pair[0].identity == pair[1].identity {
            return Err(MeshError::DuplicateReplica {
                identity: pair[0].identity.clone(),
            });
        }
    }
    if let Some(r) = sorted.iter().find(|r| !r.weight.is_finite() || r.weight <= 0.0) {
        return Err(MeshError::Weight {
            identity: r.identity.clone(),
            value: r.weight,
        });
    }
    let points = sorted
        .iter()
        .map(|r| {
            (0..per_replica)
                .map(|i| {
                    // Highest random weight over the candidates; names are unique (map keys), so
                    // the maximum of (hash, name) is unique.
                    candidates
                        .iter()
                        .max_by_key(|(name, _)| (anchor_hash(&r.identity, i, name), name.as_str()))
                        .map(|(name, position)| (name.clone(), position.clone()))
                        .ok_or(MeshError::NoCandidates)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Anchors {
        replicas: sorted,
        points,
        kappa,
        sharpness,
    })
}

impl Anchors {
    /// The candidate names chosen as anchors of `identity` (empty for an unknown replica).
    pub fn anchor_names(&self, identity: &str) -> Vec<&str> {
        self.replicas
            .iter()
            .position(|r| r.identity == identity)
            .map(|r| self.points[r].iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default()
    }

    /// How much replica index `r` wants `agent` at `position`: the score
    /// `ln w_r − s · min_i d(x, p_{r,i})` (0 without a position), then `h(agent, r)`.
    /// Larger is better; [`Self::prefers`] compares two.
    fn preference(&self, r: usize, agent: &str, position: Option<&[f64]>) -> (f64, u64) {
        let score = position.map_or(0.0, |x| {
            let nearest = self.points[r]
                .iter()
                .map(|(_, p)| poincare::distance(x, p, self.kappa))
                .fold(f64::INFINITY, f64::min);
            self.replicas[r].weight.ln() - self.sharpness * nearest
        });
        (score, agent_hash(agent, &self.replicas[r].identity))
    }

    fn prefers(a: (f64, u64), b: (f64, u64)) -> std::cmp::Ordering {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
    }

    /// The identity of the replica that owns `agent` (its key, e.g. `namespace/name`) at
    /// `position` (`None`: not yet placed; then rendezvous hashing on the key alone).
    pub fn owner(&self, agent: &str, position: Option<&[f64]>) -> &str {
        // `anchors` refuses an empty membership, so index 0 exists.
        let best = (1..self.replicas.len()).fold((0, self.preference(0, agent, position)), |best, r| {
            let p = self.preference(r, agent, position);
            if Self::prefers(p, best.1).is_gt() { (r, p) } else { best }
        });
        &self.replicas[best.0].identity
    }

    /// The owner of every agent (key → position) as a map key → replica identity.
    pub fn owners(&self, agents: &BTreeMap<String, Option<Vec<f64>>>) -> BTreeMap<String, String> {
        agents
            .iter()
            .map(|(key, position)| (key.clone(), self.owner(key, position.as_deref()).to_string()))
            .collect()
    }

    /// Owners with bounded loads (consistent hashing with bounded loads, Mirrokni, Thorup and
    /// Zadimoghaddam, SODA 2018): each replica takes at most `⌈(1+ε)·n·w_r/Σw⌉` agents. Agents
    /// are taken in key order; each goes to its best-scoring replica (the [`Anchors::owner`]
    /// order) that still has room. `ε ≥ 0` trades balance (`max/mean ≤ 1+ε` up to rounding)
    /// against movement: a full replica pushes agents to their second choice, and a membership
    /// change can then move an agent between two replicas that stayed.
    pub fn owners_bounded(
        &self,
        agents: &BTreeMap<String, Option<Vec<f64>>>,
        epsilon: f64,
    ) -> Result<BTreeMap<String, String>, MeshError> {
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(MeshError::Epsilon { value: epsilon });
        }
        let total: f64 = self.replicas.iter().map(|r| r.weight).sum();
        let n = agents.len() as f64;
        let mut room: Vec<usize> = self
            .replicas
            .iter()
            .map(|r| ((1.0 + epsilon) * n * r.weight / total).ceil() as usize)
            .collect();
        let mut owners = BTreeMap::new();
        for (key, position) in agents {
            let mut ranked: Vec<(usize, (f64, u64))> = (0..self.replicas.len())
                .map(|r| (r, self.preference(r, key, position.as_deref())))
                .collect();
            ranked.sort_by(|a, b| Self::prefers(b.1, a.1));
            // Σ room ≥ (1+ε)·n ≥ n, so some replica always has room.
            let r = ranked.iter().map(|x| x.0).find(|&r| room[r] > 0).unwrap_or(ranked[0].0);
            room[r] = room[r].saturating_sub(1);
            owners.insert(key.clone(), self.replicas[r].identity.clone());
        }
        Ok(owners)
    }
}

/// How ownership changed between two assignments of the same agents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Movement {
    /// Agents present in both assignments.
    pub agents: usize,
    /// Agents whose owner changed.
    pub moved: usize,
    /// Of those, agents whose new owner was not a replica before (a joiner).
    pub to_joined: usize,
    /// Of those, agents whose old owner is not a replica after (a leaver).
    pub from_left: usize,
    /// Agents moved from a replica that stayed to another that stayed: 0 for this rule.
    pub between_stayers: usize,
}

/// Compares two assignments (agent → owner); replicas are the owners' identities of each side
/// together with `before_replicas` / `after_replicas` (a replica may own no agent).
pub fn movement(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    before_replicas: &BTreeSet<String>,
    after_replicas: &BTreeSet<String>,
) -> Movement {
    let mut m = Movement::default();
    for (agent, old) in before {
        let Some(new) = after.get(agent) else { continue };
        m.agents += 1;
        if old == new {
            continue;
        }
        m.moved += 1;
        let joined = !before_replicas.contains(new);
        let left = !after_replicas.contains(old);
        if joined {
            m.to_joined += 1;
        }
        if left {
            m.from_left += 1;
        }
        if !joined && !left {
            m.between_stayers += 1;
        }
    }
    m
}

/// Agents per replica: `(max, mean)` over every replica of `replicas` (one owning nothing counts
/// as 0).
pub fn load(owners: &BTreeMap<String, String>, replicas: &BTreeSet<String>) -> (usize, f64) {
    let mut counts: BTreeMap<&str, usize> = replicas.iter().map(|r| (r.as_str(), 0)).collect();
    for owner in owners.values() {
        *counts.entry(owner.as_str()).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    let mean = if counts.is_empty() {
        0.0
    } else {
        owners.len() as f64 / counts.len() as f64
    };
    (max, mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stable_hash::fnv1a;
    use proptest::prelude::*;

    fn grid(n: usize) -> BTreeMap<String, Vec<f64>> {
        (0..n)
            .map(|i| {
                let a = i as f64 * 2.399_963; // golden angle: an even spread in the disk
                let r = 0.9 * ((i as f64 + 0.5) / n as f64).sqrt();
                (format!("node-{i:04}"), vec![r * a.cos(), r * a.sin()])
            })
            .collect()
    }

    fn agents(n: usize, nodes: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Option<Vec<f64>>> {
        let points: Vec<&Vec<f64>> = nodes.values().collect();
        (0..n)
            .map(|i| {
                let p = points[(i * 7919) % points.len()];
                let position = (i % 10 != 0).then(|| vec![p[0] * 0.98, p[1] * 0.98]);
                (format!("ns/agent-{i:05}"), position)
            })
            .collect()
    }

    fn replicas(names: &[&str]) -> Vec<Replica> {
        names.iter().map(|n| Replica::new(*n)).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_joining_replica_takes_agents_only_for_itself_and_a_leaving_one_gives_away_only_its_own() {
        let nodes = grid(400);
        let agents = agents(3000, &nodes);
        let three = ["mom-a", "mom-b", "mom-c"];
        let four = ["mom-a", "mom-b", "mom-c", "mom-d"];
        let before = anchors(&replicas(&three), &nodes, 16, 1.0, 1.0)
            .unwrap()
            .owners(&agents);
        let after = anchors(&replicas(&four), &nodes, 16, 1.0, 1.0).unwrap().owners(&agents);
        let join = movement(&before, &after, &set(&three), &set(&four));
        assert_eq!(join.between_stayers, 0, "{join:?}");
        assert_eq!(join.moved, join.to_joined, "{join:?}");
        // Positive control: the joiner does take a share (not zero, not everything).
        assert!(join.moved > 300 && join.moved < 1500, "{join:?}");
        let leave = movement(&after, &before, &set(&four), &set(&three));
        assert_eq!(leave.between_stayers, 0, "{leave:?}");
        assert_eq!(leave.moved, leave.from_left, "{leave:?}");
        assert_eq!(leave.moved, join.moved, "leaving undoes joining exactly");
    }

    #[test]
    fn a_rule_that_depends_on_the_whole_membership_is_caught_moving_agents_between_stayers() {
        // Negative control for the measure itself: owners by index in the sorted membership
        // (agent hash mod R), the naive sharding, move agents between replicas that stayed.
        let nodes = grid(50);
        let agents = agents(2000, &nodes);
        let modulo = |names: &[&str]| -> BTreeMap<String, String> {
            agents
                .keys()
                .map(|k| {
                    let h = fnv1a(k.bytes()) as usize % names.len();
                    (k.clone(), names[h].to_string())
                })
                .collect()
        };
        let three = ["mom-a", "mom-b", "mom-c"];
        let four = ["mom-a", "mom-b", "mom-c", "mom-d"];
        let m = movement(&modulo(&three), &modulo(&four), &set(&three), &set(&four));
        assert!(m.between_stayers > 500, "{m:?}");
    }

    #[test]
    fn owners_do_not_depend_on_the_order_replicas_and_candidates_are_given_in() {
        let nodes = grid(200);
        let agents = agents(500, &nodes);
        let a = anchors(&replicas(&["x", "y", "z"]), &nodes, 8, 1.0, 1.0).unwrap();
        let b = anchors(&replicas(&["z", "x", "y"]), &nodes, 8, 1.0, 1.0).unwrap();
        assert_eq!(a.owners(&agents), b.owners(&agents));
        assert_eq!(a.anchor_names("y"), b.anchor_names("y"));
        assert_eq!(a.anchor_names("y").len(), 8);
        assert!(a.anchor_names("nobody").is_empty());
    }

    #[test]
    fn an_agent_sitting_on_an_anchor_is_owned_by_that_anchors_replica() {
        let nodes = grid(100);
        let a = anchors(&replicas(&["mom-a", "mom-b", "mom-c"]), &nodes, 4, 1.0, 1.0).unwrap();
        for r in ["mom-a", "mom-b", "mom-c"] {
            let name = a.anchor_names(r)[0].to_string();
            // Skip an anchor another replica also chose (then the agent hash decides).
            let shared = ["mom-a", "mom-b", "mom-c"]
                .iter()
                .any(|o| *o != r && a.anchor_names(o).contains(&name.as_str()));
            if !shared {
                assert_eq!(a.owner("ns/x", Some(&nodes[&name])), r);
            }
        }
    }

    #[test]
    fn a_heavier_replica_owns_more_agents() {
        let nodes = grid(300);
        let agents = agents(3000, &nodes);
        let mut rs = replicas(&["mom-a", "mom-b", "mom-c"]);
        let even = anchors(&rs, &nodes, 16, 1.0, 4.0).unwrap().owners(&agents);
        rs[1].weight = 3.0;
        let heavy = anchors(&rs, &nodes, 16, 1.0, 4.0).unwrap().owners(&agents);
        let count = |o: &BTreeMap<String, String>| o.values().filter(|v| *v == "mom-b").count();
        assert!(count(&heavy) > count(&even), "{} vs {}", count(&heavy), count(&even));
        // Raising one weight only moves agents to that replica.
        assert!(heavy.iter().all(|(k, v)| v == "mom-b" || even[k] == *v));
    }

    #[test]
    fn bad_inputs_are_refused_naming_the_value() {
        let nodes = grid(10);
        assert_eq!(anchors(&[], &nodes, 4, 1.0, 1.0).unwrap_err(), MeshError::NoReplicas);
        assert_eq!(
            anchors(&replicas(&["a"]), &BTreeMap::new(), 4, 1.0, 1.0).unwrap_err(),
            MeshError::NoCandidates
        );
        assert!(matches!(
            anchors(&replicas(&["a"]), &nodes, 0, 1.0, 1.0),
            Err(MeshError::AnchorsPerReplica { value: 0, .. })
        ));
        assert_eq!(
            anchors(&replicas(&["a", "a"]), &nodes, 4, 1.0, 1.0).unwrap_err(),
            MeshError::DuplicateReplica { identity: "a".into() }
        );
        let mut bad = replicas(&["a"]);
        bad[0].weight = f64::NAN;
        let e = anchors(&bad, &nodes, 4, 1.0, 1.0).unwrap_err();
        assert!(e.to_string().contains("replica \"a\": weight"), "{e}");
        assert!(matches!(
            anchors(&replicas(&["a"]), &nodes, 4, 1.0, 0.0),
            Err(MeshError::Sharpness { .. })
        ));
        // Positive control.
        assert!(anchors(&replicas(&["a"]), &nodes, 4, 1.0, 1.0).is_ok());
    }

    #[test]
    fn bounded_loads_cap_every_replica_and_a_loose_bound_gives_the_unbounded_owners() {
        let nodes = grid(300);
        let agents = agents(3000, &nodes);
        let names = ["mom-a", "mom-b", "mom-c", "mom-d"];
        let a = anchors(&replicas(&names), &nodes, 16, 1.0, 1.0).unwrap();
        let members = set(&names);
        let (free_max, mean) = load(&a.owners(&agents), &members);
        // Positive control: without a bound this layout is unbalanced beyond 1.1.
        assert!(free_max as f64 > 1.1 * mean, "{free_max} vs {mean}");
        let bounded = a.owners_bounded(&agents, 0.1).unwrap();
        let (max, _) = load(&bounded, &members);
        assert!(max <= (1.1f64 * 3000.0 / 4.0).ceil() as usize, "{max}");
        assert_eq!(bounded.len(), agents.len());
        assert_eq!(a.owners_bounded(&agents, 100.0).unwrap(), a.owners(&agents));
        assert_eq!(
            a.owners_bounded(&agents, -0.5).unwrap_err(),
            MeshError::Epsilon { value: -0.5 }
        );
    }

    proptest! {
        #[test]
        fn membership_changes_never_move_an_agent_between_two_replicas_that_stayed(
            before_mask in 1u16..256, after_mask in 1u16..256, seed in 0usize..1000,
        ) {
            let names: Vec<String> = (0..8).map(|i| format!("mom-{i}")).collect();
            let pick = |mask: u16| -> Vec<Replica> {
                names.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, n)| Replica::new(n.clone())).collect()
            };
            let nodes = grid(60 + seed % 40);
            let agents = agents(300, &nodes);
            let (rb, ra) = (pick(before_mask), pick(after_mask));
            let b = anchors(&rb, &nodes, 4, 1.0, 1.0).unwrap().owners(&agents);
            let a = anchors(&ra, &nodes, 4, 1.0, 1.0).unwrap().owners(&agents);
            let ids = |rs: &[Replica]| rs.iter().map(|r| r.identity.clone()).collect::<BTreeSet<_>>();
            let m = movement(&b, &a, &ids(&rb), &ids(&ra));
            prop_assert_eq!(m.between_stayers, 0, "{:?}", m);
        }
    }
}
