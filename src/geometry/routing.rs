//! Greedy routing over an embedded graph: greedy forwarding, a multipath variant and the
//! gravity–pressure fallback (Cvetkovski & Crovella, INFOCOM 2009) for dead ends, plus the
//! evaluation over all ordered pairs (delivery rate, stretch against shortest-path delay).
//!
//! Input: a [`Graph`] (edge weight = delay ms) and a node embedding; output: routes and
//! [`RouteStats`]. Two embeddings are provided:
//! - [`Embedding::spt_sarkar`]: Sarkar embedding of a shortest-path tree rooted at the graph's
//!   delay centre. Greedy on it never dead-ends (the tree neighbour towards the target is always
//!   closer), so it is a greedy embedding in Kleinberg's sense; graph edges act as shortcuts.
//! - [`Embedding::fitted`]: the graph's shortest-path delay matrix fitted into hyperbolic space
//!   by [`latency::fit_hyperbolic`]; the distance estimate is close to the true delay, so
//!   delay-aware greedy is near-optimal, but dead ends are possible — gravity–pressure then
//!   guarantees delivery on every connected graph.
//!
//! Forwarding rule ([`Policy`]): among neighbours v strictly closer to the target t than the
//! current node u (in the embedding), `Greedy` takes the one nearest to t, `DelayAware` the one
//! minimising `delay(u,v) + est(v,t)`, where est is the embedding distance in ms.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::GeometryError;
use super::data::Graph;
use super::latency::{self, HyperbolicConfig, HyperbolicModel, Sample};
use super::tree::{SarkarConfig, TreeEmbedding};

/// All-pairs shortest-path delays by Dijkstra from every node (∞ where unreachable).
pub fn shortest_path_delays(g: &Graph) -> Vec<Vec<f64>> {
    (0..g.node_count()).map(|s| dijkstra(g, s).0).collect()
}

#[derive(PartialEq)]
struct Entry(f64, usize);
impl Eq for Entry {}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Dijkstra from `s`: (distance, parent) per node; ties broken by lower node index.
fn dijkstra(g: &Graph, s: usize) -> (Vec<f64>, Vec<Option<usize>>) {
    let n = g.node_count();
    let mut dist = vec![f64::INFINITY; n];
    let mut par = vec![None; n];
    let mut heap = BinaryHeap::new();
    dist[s] = 0.0;
    heap.push(Entry(0.0, s));
    while let Some(Entry(d, u)) = heap.pop() {
        if d > dist[u] {
            continue;
        }
        for &(v, w) in &g.adj[u] {
            let nd = d + w;
            if nd < dist[v] {
                dist[v] = nd;
                par[v] = Some(u);
                heap.push(Entry(nd, v));
            }
        }
    }
    (dist, par)
}

/// A node embedding used for forwarding decisions.
#[derive(Debug, Clone)]
pub enum Embedding {
    /// Sarkar embedding of a shortest-path forest (components hang under a virtual root);
    /// `ms_per_unit` converts embedded distance to ms for `DelayAware`.
    Tree {
        tree: TreeEmbedding,
        ms_per_unit: f64,
        /// Delay along the tree between u and v (the spanning-tree routing baseline).
        tree_delay: Vec<Vec<f64>>,
        /// Embedded distances between all node pairs, precomputed (graphs up to 4,096 nodes)
        /// because folding positions up to the LCA costs O(depth) per pair.
        cache: Option<Vec<Vec<f64>>>,
    },
    /// A fitted hyperbolic model whose predictions are in ms.
    Fitted(HyperbolicModel),
    /// Fitted estimates for choosing hops, the spanning-tree embedding for guaranteed
    /// progress: greedy on the fitted estimate while it makes progress; at a dead end the
    /// packet switches to *tree mode* (progress measured in the Sarkar tree embedding, which
    /// never dead-ends; hops still chosen by `delay + fitted estimate`). With
    /// `tree_progress_always` tree mode is used from the first hop.
    Hybrid {
        tree: Box<Embedding>,
        fitted: HyperbolicModel,
        tree_progress_always: bool,
    },
}

impl Embedding {
    /// Sarkar embedding of the shortest-path tree rooted at the node of least eccentricity
    /// (per component; components joined under a virtual root).
    pub fn spt_sarkar(g: &Graph, sp: &[Vec<f64>], cfg: SarkarConfig) -> Result<Self, GeometryError> {
        let n = g.node_count();
        if n == 0 {
            return Err(GeometryError::EmptyInput("graph"));
        }
        let mut comp = vec![usize::MAX; n];
        let mut parent: Vec<Option<usize>> = vec![None; n + 1];
        for s in 0..n {
            if comp[s] != usize::MAX {
                continue;
            }
            let members: Vec<usize> = (0..n).filter(|v| sp[s][*v].is_finite()).collect();
            for &m in &members {
                comp[m] = s;
            }
            let ecc = |v: usize| members.iter().map(|w| sp[v][*w]).fold(0.0, f64::max);
            let root = members
                .iter()
                .copied()
                .min_by(|a, b| ecc(*a).total_cmp(&ecc(*b)).then(a.cmp(b)))
                .unwrap_or(s);
            let (_, par) = dijkstra(g, root);
            for &m in &members {
                parent[m] = par[m];
            }
            parent[root] = Some(n);
        }
        let tree = TreeEmbedding::from_parents(&parent, cfg)?;
        // Tree delays: delay from the virtual root along the tree, then via the LCA.
        let mut rootd = vec![0.0; n + 1];
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|v| tree.tree_distance(*v, n).unwrap_or(0));
        for &v in &order {
            if let Some(p) = parent[v]
                && p < n
            {
                let w = g.adj[v].iter().find(|(x, _)| *x == p).map_or(0.0, |e| e.1);
                rootd[v] = rootd[p] + w;
            }
        }
        let mut tree_delay = vec![vec![f64::INFINITY; n]; n];
        let anc = |mut v: usize| {
            let mut a = vec![v];
            while let Some(p) = parent[v] {
                a.push(p);
                v = p;
            }
            a
        };
        let ancestors: Vec<Vec<usize>> = (0..n).map(anc).collect();
        for u in 0..n {
            for v in 0..n {
                if comp[u] != comp[v] {
                    continue;
                }
                let au = &ancestors[u];
                let lca = ancestors[v].iter().find(|a| au.contains(a)).copied().unwrap_or(n);
                tree_delay[u][v] = rootd[u] + rootd[v] - 2.0 * rootd[lca.min(n)];
            }
        }
        let edges: Vec<f64> = (0..n)
            .filter_map(|v| parent[v].filter(|p| *p < n).map(|p| rootd[v] - rootd[p]))
            .collect();
        let mean_edge = if edges.is_empty() {
            1.0
        } else {
            edges.iter().sum::<f64>() / edges.len() as f64
        };
        let ms_per_unit = mean_edge.max(1e-9) / tree.tau();
        let cache = (n <= 4096).then(|| {
            (0..n)
                .map(|u| {
                    (0..n)
                        .map(|v| tree.embedded_distance(u, v).unwrap_or(f64::INFINITY))
                        .collect()
                })
                .collect()
        });
        Ok(Self::Tree {
            tree,
            ms_per_unit,
            tree_delay,
            cache,
        })
    }

    /// Fit the shortest-path delay matrix (all reachable ordered pairs with delay > 0) into
    /// hyperbolic space of dimension `cfg.dim`.
    pub fn fitted(sp: &[Vec<f64>], cfg: &HyperbolicConfig) -> Result<Self, GeometryError> {
        let n = sp.len();
        let train: Vec<Sample> = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|(i, j)| i != j && sp[*i][*j].is_finite() && sp[*i][*j] > 0.0)
            .map(|(i, j)| Sample { i, j, rtt: sp[i][j] })
            .collect();
        Ok(Self::Fitted(latency::fit_hyperbolic(n, &train, cfg)?))
    }

    /// Estimated delay (ms) between u and v according to the embedding.
    pub fn estimate(&self, u: usize, v: usize) -> f64 {
        match self {
            Self::Tree {
                tree,
                ms_per_unit,
                cache,
                ..
            } => {
                let d = match cache {
                    Some(c) => c.get(u).and_then(|row| row.get(v)).copied(),
                    None => tree.embedded_distance(u, v),
                };
                d.unwrap_or(f64::INFINITY) * ms_per_unit
            }
            Self::Fitted(m) | Self::Hybrid { fitted: m, .. } => m.predict(u, v),
        }
    }

    /// The embedding used for progress in tree mode (Hybrid only).
    fn tree_part(&self) -> Option<&Embedding> {
        match self {
            Self::Hybrid { tree, .. } => Some(tree),
            _ => None,
        }
    }
}

/// How the next hop is chosen among the neighbours that make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The neighbour nearest the target in the embedding.
    Greedy,
    /// The neighbour minimising `delay(u,v) + est(v,t)`.
    DelayAware,
}

/// One forwarded packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path: Vec<usize>,
    pub delay: f64,
    pub delivered: bool,
    /// Hops taken in a fallback mode — pressure, or tree mode entered at a dead end (0 when
    /// greedy alone delivered).
    pub fallback_hops: usize,
}

/// Forward a packet from `s` to `t` with gravity–pressure: greedy (per `policy`) while some
/// neighbour is closer to t; at a dead end switch to pressure mode — go to the least-visited
/// neighbour (ties: closest to t, then lowest index) — until a node closer to t than the dead
/// end is reached. Gives up after 4·n² hops (never happens on a connected graph).
pub fn route(g: &Graph, emb: &Embedding, s: usize, t: usize, policy: Policy, first_hop: Option<usize>) -> Route {
    let n = g.node_count();
    let mut visits = vec![0u32; n];
    let mut path = vec![s];
    let mut delay = 0.0;
    let mut cur = s;
    let mut pressure: Option<f64> = None;
    let mut fallback_hops = 0;
    let limit = 4 * n * n + 4;
    let mut first = first_hop;
    let always_tree = matches!(
        emb,
        Embedding::Hybrid {
            tree_progress_always: true,
            ..
        }
    );
    let mut tree_mode = always_tree;
    while cur != t && path.len() <= limit {
        visits[cur] += 1;
        let progress = match (tree_mode, emb.tree_part()) {
            (true, Some(tr)) => tr,
            _ => emb,
        };
        let here = progress.estimate(cur, t);
        let mut next = None;
        if let Some(f) = first.take() {
            next = g.adj[cur].iter().find(|(v, _)| *v == f).copied();
        }
        if next.is_none() && pressure.is_none() {
            let mut best: Option<(f64, usize, f64)> = None;
            for &(v, w) in &g.adj[cur] {
                let est = emb.estimate(v, t);
                if progress.estimate(v, t) < here || v == t {
                    let score = match policy {
                        Policy::Greedy => est,
                        Policy::DelayAware => w + est,
                    };
                    if best.is_none_or(|b| score < b.0) {
                        best = Some((score, v, w));
                    }
                }
            }
            match best {
                Some((_, v, w)) => next = Some((v, w)),
                None if !tree_mode && emb.tree_part().is_some() => {
                    // Dead end in the fitted embedding: retry this hop in tree mode.
                    tree_mode = true;
                    visits[cur] -= 1;
                    continue;
                }
                None => pressure = Some(here),
            }
        }
        if next.is_none() {
            let mut best: Option<(u32, f64, usize, f64)> = None;
            for &(v, w) in &g.adj[cur] {
                let key = (visits[v], emb.estimate(v, t));
                if best.is_none_or(|b| key.0 < b.0 || (key.0 == b.0 && key.1 < b.1)) {
                    best = Some((key.0, key.1, v, w));
                }
            }
            if let Some((_, _, v, w)) = best {
                next = Some((v, w));
                fallback_hops += 1;
            }
        }
        let Some((v, w)) = next else { break };
        if tree_mode && !always_tree && pressure.is_none() {
            fallback_hops += 1;
        }
        if let Some(p) = pressure
            && progress.estimate(v, t) < p
        {
            pressure = None;
        }
        path.push(v);
        delay += w;
        cur = v;
    }
    Route {
        delivered: cur == t,
        path,
        delay,
        fallback_hops,
    }
}

impl Embedding {
    /// Hybrid of [`Embedding::spt_sarkar`] and [`Embedding::fitted`] (see the variant doc).
    pub fn hybrid(
        g: &Graph,
        sp: &[Vec<f64>],
        tree_cfg: SarkarConfig,
        fit_cfg: &HyperbolicConfig,
        tree_progress_always: bool,
    ) -> Result<Self, GeometryError> {
        let tree = Box::new(Self::spt_sarkar(g, sp, tree_cfg)?);
        let Self::Fitted(fitted) = Self::fitted(sp, fit_cfg)? else {
            return Err(GeometryError::InvalidGraph("fit failed".into()));
        };
        Ok(Self::Hybrid {
            tree,
            fitted,
            tree_progress_always,
        })
    }
}

/// Multipath variant: up to `k` copies leave through the `k` best progressing neighbours of s
/// (per `policy`), each then routed by [`route`]; returns all of them.
pub fn route_multipath(g: &Graph, emb: &Embedding, s: usize, t: usize, policy: Policy, k: usize) -> Vec<Route> {
    let here = emb.estimate(s, t);
    let mut firsts: Vec<(f64, usize)> = g.adj[s]
        .iter()
        .filter(|(v, _)| *v == t || emb.estimate(*v, t) < here)
        .map(|&(v, w)| {
            let est = emb.estimate(v, t);
            (if policy == Policy::Greedy { est } else { w + est }, v)
        })
        .collect();
    firsts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    if firsts.is_empty() {
        return vec![route(g, emb, s, t, policy, None)];
    }
    firsts
        .iter()
        .take(k.max(1))
        .map(|(_, v)| route(g, emb, s, t, policy, Some(*v)))
        .collect()
}

/// Delivery and stretch over all ordered pairs of distinct, mutually reachable nodes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RouteStats {
    pub pairs: usize,
    pub delivery_rate: f64,
    /// Mean over delivered pairs with shortest delay > 0 of route delay / shortest delay.
    pub mean_stretch: f64,
    pub max_stretch: f64,
    /// Pairs that needed at least one pressure-mode hop.
    pub fallback_pairs: usize,
    /// Pairs at zero shortest-path delay (co-located sites), left out of stretch.
    pub zero_delay_pairs: usize,
}

/// Route every ordered pair (single path, or best of `multipath` copies when > 1).
pub fn evaluate(g: &Graph, sp: &[Vec<f64>], emb: &Embedding, policy: Policy, multipath: usize) -> RouteStats {
    let n = g.node_count();
    let (mut pairs, mut delivered, mut fallback, mut zero) = (0usize, 0usize, 0usize, 0usize);
    let (mut sum, mut count, mut max) = (0.0, 0usize, 1.0f64);
    for (s, row) in sp.iter().enumerate().take(n) {
        for (t, &d) in row.iter().enumerate().take(n) {
            if s == t || !d.is_finite() {
                continue;
            }
            pairs += 1;
            let routes = if multipath > 1 {
                route_multipath(g, emb, s, t, policy, multipath)
            } else {
                vec![route(g, emb, s, t, policy, None)]
            };
            let best = routes
                .iter()
                .filter(|r| r.delivered)
                .min_by(|a, b| a.delay.total_cmp(&b.delay));
            if routes.iter().any(|r| r.fallback_hops > 0) {
                fallback += 1;
            }
            let Some(best) = best else { continue };
            delivered += 1;
            if d <= 0.0 {
                zero += 1;
                continue;
            }
            let st = best.delay / d;
            sum += st;
            count += 1;
            max = max.max(st);
        }
    }
    RouteStats {
        pairs,
        delivery_rate: if pairs == 0 {
            1.0
        } else {
            delivered as f64 / pairs as f64
        },
        mean_stretch: if count == 0 { 1.0 } else { sum / count as f64 },
        max_stretch: max,
        fallback_pairs: fallback,
        zero_delay_pairs: zero,
    }
}

/// Stretch of routing along the shortest-path tree itself (the baseline the embedding must
/// beat): mean and max over pairs with shortest delay > 0.
pub fn tree_baseline(sp: &[Vec<f64>], emb: &Embedding) -> Option<(f64, f64)> {
    let emb = emb.tree_part().unwrap_or(emb);
    let Embedding::Tree { tree_delay, .. } = emb else {
        return None;
    };
    let (mut sum, mut count, mut max) = (0.0, 0usize, 1.0f64);
    for (s, row) in sp.iter().enumerate() {
        for (t, d) in row.iter().enumerate() {
            if s != t && d.is_finite() && *d > 0.0 {
                let st = tree_delay[s][t] / d;
                sum += st;
                count += 1;
                max = max.max(st);
            }
        }
    }
    Some((if count == 0 { 1.0 } else { sum / count as f64 }, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::data::{data_dir, load_node_link, parse_node_link};

    fn ring_with_chord() -> Graph {
        // 0-1-2-3-4-5-0 ring plus a chord 0-3.
        let e: Vec<String> = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)]
            .iter()
            .map(|(a, b)| format!(r#"{{"source":"{a}","target":"{b}","dist":200}}"#))
            .collect();
        let nodes: Vec<String> = (0..6).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
        parse_node_link(
            &format!(r#"{{"nodes":[{}],"edges":[{}]}}"#, nodes.join(","), e.join(",")),
            "ring",
        )
        .unwrap()
    }

    #[test]
    fn greedy_on_the_spanning_tree_embedding_delivers_every_pair() {
        let g = ring_with_chord();
        let sp = shortest_path_delays(&g);
        let emb = Embedding::spt_sarkar(&g, &sp, SarkarConfig::default()).unwrap();
        for policy in [Policy::Greedy, Policy::DelayAware] {
            let st = evaluate(&g, &sp, &emb, policy, 1);
            assert_eq!(st.pairs, 30);
            assert_eq!(st.delivery_rate, 1.0);
            assert_eq!(st.fallback_pairs, 0, "{st:?}");
            assert!(st.mean_stretch >= 1.0 && st.max_stretch.is_finite());
        }
    }

    #[test]
    fn gravity_pressure_delivers_when_the_embedding_has_dead_ends() {
        // A useless embedding (all estimates equal except at the target) forces pressure mode.
        let g = ring_with_chord();
        let sp = shortest_path_delays(&g);
        let m = HyperbolicModel {
            points: (0..6).map(|_| vec![1.0, 0.0]).collect(),
            heights: vec![5.0; 6],
            scale: 1.0,
            loss: 0.0,
        };
        let emb = Embedding::Fitted(m);
        let st = evaluate(&g, &sp, &emb, Policy::Greedy, 1);
        assert_eq!(st.delivery_rate, 1.0);
        assert!(st.fallback_pairs > 0);
    }

    #[test]
    fn hybrid_falls_back_to_the_tree_embedding_and_still_delivers_every_pair() {
        let g = ring_with_chord();
        let sp = shortest_path_delays(&g);
        let useless = HyperbolicModel {
            points: (0..6).map(|_| vec![1.0, 0.0]).collect(),
            heights: vec![5.0; 6],
            scale: 1.0,
            loss: 0.0,
        };
        let emb = Embedding::Hybrid {
            tree: Box::new(Embedding::spt_sarkar(&g, &sp, SarkarConfig::default()).unwrap()),
            fitted: useless,
            tree_progress_always: false,
        };
        for s in 0..6 {
            for t in 0..6 {
                let r = route(&g, &emb, s, t, Policy::DelayAware, None);
                assert!(r.delivered, "{s}->{t}: {r:?}");
                assert!(r.path.len() <= 6, "tree mode never loops: {r:?}");
            }
        }
        assert!(evaluate(&g, &sp, &emb, Policy::DelayAware, 1).fallback_pairs > 0);
    }

    #[test]
    fn hybrid_on_a_real_graph_beats_routing_along_its_spanning_tree() {
        let g = load_node_link(&data_dir().join("TopoHub/topozoo/Abilene.json")).unwrap();
        let sp = shortest_path_delays(&g);
        let fit = HyperbolicConfig {
            dim: 3,
            epochs: 200,
            restarts: 1,
            ..Default::default()
        };
        let emb = Embedding::hybrid(&g, &sp, SarkarConfig::default(), &fit, false).unwrap();
        let st = evaluate(&g, &sp, &emb, Policy::DelayAware, 1);
        let (tree_mean, _) = tree_baseline(&sp, &emb).unwrap();
        assert_eq!(st.delivery_rate, 1.0);
        assert!(st.mean_stretch < tree_mean, "{st:?} vs tree {tree_mean}");
    }

    #[test]
    fn an_empty_graph_is_rejected() {
        let g = parse_node_link(r#"{"nodes":[],"edges":[]}"#, "empty").unwrap();
        assert!(Embedding::spt_sarkar(&g, &[], SarkarConfig::default()).is_err());
    }

    #[test]
    fn multipath_is_never_worse_than_single_path() {
        let g = load_node_link(&data_dir().join("TopoHub/topozoo/Abilene.json")).unwrap();
        let sp = shortest_path_delays(&g);
        let emb = Embedding::spt_sarkar(&g, &sp, SarkarConfig::default()).unwrap();
        let one = evaluate(&g, &sp, &emb, Policy::DelayAware, 1);
        let three = evaluate(&g, &sp, &emb, Policy::DelayAware, 3);
        assert_eq!(one.delivery_rate, 1.0);
        assert!(three.mean_stretch <= one.mean_stretch + 1e-12);
        let (tree_mean, _) = tree_baseline(&sp, &emb).unwrap();
        assert!(tree_mean >= 1.0);
    }
}
