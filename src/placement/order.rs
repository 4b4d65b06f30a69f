//! The order in which a group of talking agents created together places its first replicas:
//! the most strongly tied first, so that when the group's home fills up, the replicas that
//! spill to farther nodes are those of its most loosely tied agents.
//!
//! The group is a graph: agents are vertices, and the tie between `a` and `b` is
//! `w(a, b) = a's weight for b + b's weight for a` (a peer listed on one side only counts once;
//! weights that are not finite and positive count 0). The order is Prim's, maximising:
//! 1. first, the agent with the largest total tie `Σ_b w(a, b)` (ties: name);
//! 2. then, repeatedly, the agent not yet ordered with the largest tie to the ordered ones
//!    `Σ_{b ordered} w(a, b)` (ties: larger total tie, then name); an agent with no tie to them
//!    (another part of the graph) only comes when none is left that has one.
//!
//! Every agent but the first of each connected part has a peer before it, so "wait until the
//! peers before you have placed" cannot wait in a circle, and each agent then starts from its
//! placed peers rather than picking a home of its own. Deterministic: the result depends only
//! on the names and weights, not on the order they are given in. `O(n²)` for `n` agents.

use std::collections::BTreeMap;

/// One agent of the group: its name and its peers as `(name, weight)`. Peers that are not
/// members of the group are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMember {
    pub name: String,
    pub peers: Vec<(String, f64)>,
}

/// The members' names in first-placement order (module doc). A name given twice counts once
/// (its peer lists are merged).
pub fn first_placement_order(members: &[GroupMember]) -> Vec<String> {
    let names: Vec<&str> = {
        let mut n: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let n = names.len();
    // Symmetric ties, as a sparse adjacency per agent (sorted by neighbour index).
    let mut ties: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); n];
    for m in members {
        let a = index[m.name.as_str()];
        for (peer, w) in &m.peers {
            let Some(&b) = index.get(peer.as_str()) else {
                continue;
            };
            if a == b || !w.is_finite() || *w <= 0.0 {
                continue;
            }
            *ties[a].entry(b).or_default() += w;
            *ties[b].entry(a).or_default() += w;
        }
    }
    let total: Vec<f64> = ties.iter().map(|t| t.values().sum()).collect();
    let mut to_ordered = vec![0.0_f64; n];
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for _ in 0..n {
        // The best unordered agent: largest tie to the ordered ones, then largest total, then
        // the smallest name (indices follow names).
        let next = (0..n)
            .filter(|&i| !placed[i])
            .max_by(|&i, &j| {
                to_ordered[i]
                    .total_cmp(&to_ordered[j])
                    .then(total[i].total_cmp(&total[j]))
                    .then(j.cmp(&i))
            })
            .expect("an unordered agent is left while the order is shorter than the group");
        placed[next] = true;
        order.push(names[next].to_string());
        for (&b, w) in &ties[next] {
            to_ordered[b] += w;
        }
    }
    order
}

/// Largest group placed as one: a group of this many agents or more does not wait on its
/// peers and gets no shared home key (agents gathering different parts of it would order them
/// differently).
pub const GROUP_MAX: usize = 256;

/// The group of `start`: itself and the agents reached breadth-first through peer lists (a
/// peer listed on one side only is reached from that side only), as `lookup` finds them by
/// name (`None`: not an agent of the group, e.g. one that wants no replicas), at most
/// [`GROUP_MAX`].
pub fn gather_group(start: GroupMember, lookup: impl Fn(&str) -> Option<GroupMember>) -> Vec<GroupMember> {
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::from([start.name.clone()]);
    let mut group = vec![start];
    let mut next = 0;
    while next < group.len() && group.len() < GROUP_MAX {
        let peers: Vec<String> = group[next].peers.iter().map(|(p, _)| p.clone()).collect();
        next += 1;
        for peer in peers {
            if group.len() >= GROUP_MAX || !seen.insert(peer.clone()) {
                continue;
            }
            if let Some(m) = lookup(&peer) {
                group.push(m);
            }
        }
    }
    group
}

/// The name rule 6 of the target ([`crate::placement::agent_target`]) breaks a new home's
/// ties by, for an agent whose group is `group` ([`gather_group`]): `namespace/` and the first
/// agent of the group's first-placement order, the same for every agent of the group. `None`
/// when the agent (the group's first member) has no peers or the group has [`GROUP_MAX`]
/// agents.
pub fn home_key(namespace: &str, group: &[GroupMember]) -> Option<String> {
    if group.first().is_none_or(|m| m.peers.is_empty()) || group.len() >= GROUP_MAX {
        return None;
    }
    let first = first_placement_order(group).into_iter().next()?;
    Some(format!("{namespace}/{first}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, peers: &[(&str, f64)]) -> GroupMember {
        GroupMember {
            name: name.into(),
            peers: peers.iter().map(|(p, w)| (p.to_string(), *w)).collect(),
        }
    }

    #[test]
    fn the_most_tied_agent_goes_first_and_the_loosest_leaf_last() {
        // A hub with a heavy and a light spoke; the light spoke's only tie is to the hub.
        let group = [
            member("a-light", &[("hub", 1.0)]),
            member("hub", &[("a-light", 1.0), ("heavy", 10.0)]),
            member("heavy", &[("hub", 10.0)]),
        ];
        assert_eq!(first_placement_order(&group), ["hub", "heavy", "a-light"]);
    }

    #[test]
    fn each_agent_after_the_first_follows_the_strongest_tie_to_those_already_ordered() {
        // "frontend" (tie 10 to the hub) first, then "catalog" (6), then down the chain to
        // the leaves, the lighter leaf last.
        let group = [
            member("gateway", &[("catalog", 6.0), ("frontend", 10.0)]),
            member("frontend", &[("gateway", 10.0)]),
            member("catalog", &[("gateway", 6.0), ("db", 3.0)]),
            member("db", &[("catalog", 3.0), ("orders", 4.0)]),
            member("orders", &[("db", 4.0), ("notify", 1.0), ("inventory", 2.0)]),
            member("notify", &[("orders", 1.0)]),
            member("inventory", &[("orders", 2.0)]),
        ];
        let order = first_placement_order(&group);
        assert_eq!(
            order,
            ["gateway", "frontend", "catalog", "db", "orders", "inventory", "notify"]
        );
        // Every agent after the first has a peer before it: waiting on them cannot go round.
        for (k, name) in order.iter().enumerate().skip(1) {
            let before = &order[..k];
            let m = group.iter().find(|m| &m.name == name).unwrap();
            let tied_before = m.peers.iter().any(|(p, _)| before.contains(p))
                || group
                    .iter()
                    .any(|o| before.contains(&o.name) && o.peers.iter().any(|(p, _)| p == name));
            assert!(tied_before, "{name} has no peer before it in {order:?}");
        }
    }

    #[test]
    fn a_peer_listed_on_one_side_only_still_ties_the_two() {
        let group = [member("b", &[]), member("a", &[]), member("c", &[("b", 5.0)])];
        // b and c (tie 5) before a (no tie); b before c by name.
        assert_eq!(first_placement_order(&group), ["b", "c", "a"]);
    }

    #[test]
    fn the_order_does_not_depend_on_the_order_the_agents_are_given_in() {
        let group = vec![
            member("x", &[("y", 2.0), ("z", 2.0)]),
            member("y", &[("x", 2.0), ("w", 3.0)]),
            member("z", &[("x", 2.0)]),
            member("w", &[("y", 3.0)]),
        ];
        let mut reversed = group.clone();
        reversed.reverse();
        assert_eq!(first_placement_order(&group), first_placement_order(&reversed));
        assert_eq!(first_placement_order(&group), ["y", "w", "x", "z"]);
    }

    #[test]
    fn weights_that_are_not_finite_and_positive_tie_nothing_and_unknown_peers_are_ignored() {
        let group = [
            member("a", &[("b", f64::NAN), ("c", -4.0), ("ghost", 9.0)]),
            member("b", &[("c", f64::INFINITY)]),
            member("c", &[("c", 7.0)]),
        ];
        assert_eq!(first_placement_order(&group), ["a", "b", "c"]);
        assert!(first_placement_order(&[]).is_empty());
    }

    #[test]
    fn a_groups_home_key_names_its_namespace_and_first_agent_whichever_member_asks() {
        let agents = [
            member("db", &[("catalog", 1.0)]),
            member("catalog", &[("gateway", 10.0), ("db", 1.0)]),
            member("gateway", &[("catalog", 10.0)]),
            member("loner", &[]),
        ];
        let lookup = |name: &str| agents.iter().find(|m| m.name == name).cloned();
        for start in &agents[..3] {
            let group = gather_group(start.clone(), lookup);
            assert_eq!(group.len(), 3, "{group:?}");
            assert_eq!(home_key("shop", &group).as_deref(), Some("shop/catalog"));
        }
        // No peers, no key (rule 6 then takes the smallest name among ties).
        assert_eq!(home_key("shop", &gather_group(agents[3].clone(), lookup)), None);
        // An agent the lookup does not return (e.g. one that wants no replicas) is not gathered.
        let group = gather_group(agents[0].clone(), |n: &str| lookup(n).filter(|m| m.name != "gateway"));
        assert_eq!(
            group.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["db", "catalog"]
        );
    }
}
