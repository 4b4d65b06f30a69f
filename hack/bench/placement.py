#!/usr/bin/env python3
"""Placement benchmark (run by hack/bench-placement.sh on a fresh local control plane).

Cluster: the sites of a TopoHub (Topology Zoo) network become zones; regions are the clusters
of a deterministic PAM k-medoids (greedy BUILD + SWAP) over the shortest-path delay matrix;
every site gets NODES_PER_SITE kwok
nodes labelled region/zone/hostname. One-way delay of a link = dist_km / 200 ms; pod-to-pod
latency = shortest-path delay between the pods' sites, or INTRA_SITE_MS within one site.

BENCH_GRAPH may name several networks, comma-separated (e.g. a 5,000-node cluster): each keeps
its largest connected component and is joined, in the order given, to the union of those before
it by one link between the geographically nearest pair of sites (great-circle km / 200 ms);
k-medoids then runs within each network (BENCH_REGIONS regions each).

Workload: a fixed microservice graph (agents, replicas, traffic weights), BENCH_APPS copies of
it (default 1; copy k's agents are named `aK-NAME`, peers only within the copy). Run 1: plain pods
with the same counts and requests, scheduled by the default kube-scheduler. Run 2: the same
plain pods with the rules a careful user would write by hand: each pod prefers the zones of its
peers' pods (preferred inter-pod affinity, topologyKey zone, one term per peer weighted by the
edge's traffic weight x 10, at most 100), still the default kube-scheduler. Run 3:
GeometricAgents with those peers and weights, placed by mom-scheduler + MOM's extender.
Metric: traffic-weighted mean latency = sum_e w_e * mean_{replica pairs of e} lat / sum_e w_e.

Then the twin's figures for the same cluster and workload (issue 20 item 5): `mom whatif
snapshot --cluster` reads the MOM run's nodes (positions as the operator embeds them) and
agents; the agents become new again (no target, held at their replica counts, no descheduler,
one 15 s tick) and the pair latencies those of this benchmark; `mom whatif --snapshot` then
gives the twin's latency under MOM and, for TWIN_SEEDS seeds, under its model of the stock
kube-scheduler (`--set scheduler=default`).
Prints one JSON line on stdout; progress goes to stderr.
"""
import heapq
import json
import os
import subprocess
import sys
import time

DATA = os.environ.get("MOM_DATA_DIR") or os.path.join(os.path.dirname(__file__), "../../../shared/data")
GRAPH = os.environ.get("BENCH_GRAPH", "Geant2012")
REGIONS = int(os.environ.get("BENCH_REGIONS", "6"))
NODES_PER_SITE = int(os.environ.get("BENCH_NODES_PER_SITE", "4"))
NODE_CPU = os.environ.get("BENCH_NODE_CPU", "2")
INTRA_SITE_MS = 0.1
KM_PER_MS = 200.0
CPU_REQ, MEM_REQ = "250m", "256Mi"
KUBECTL = os.environ.get("KUBECTL", "kubectl")
APPS = int(os.environ.get("BENCH_APPS", "1"))
TWIN_SEEDS = max(1, int(os.environ.get("TWIN_SEEDS", "10")))
ZONE_LABEL = "topology.kubernetes.io/zone"

# agent -> replicas (one copy of the application)
APP = {
    "frontend": 3, "gateway": 3, "auth": 2, "catalog": 3, "search": 2, "recommend": 2,
    "cart": 2, "checkout": 2, "payment": 2, "orders": 3, "inventory": 2, "notify": 2,
    "cache": 3, "db": 3,
}
# undirected traffic edges (a, b, weight), one copy
APP_EDGES = [
    ("frontend", "gateway", 10), ("gateway", "auth", 4), ("gateway", "catalog", 6),
    ("gateway", "search", 3), ("gateway", "cart", 4), ("gateway", "checkout", 2),
    ("catalog", "cache", 6), ("catalog", "db", 3), ("search", "catalog", 2),
    ("recommend", "catalog", 2), ("frontend", "recommend", 2), ("cart", "cache", 3),
    ("checkout", "payment", 2), ("checkout", "orders", 3), ("orders", "db", 4),
    ("orders", "inventory", 2), ("inventory", "db", 2), ("orders", "notify", 1),
    ("auth", "cache", 2),
]


def copy_name(k, a):
    return a if APPS == 1 else f"a{k}-{a}"


AGENTS = {copy_name(k, a): r for k in range(APPS) for a, r in APP.items()}
EDGES = [(copy_name(k, a), copy_name(k, b), w) for k in range(APPS) for a, b, w in APP_EDGES]


def log(*a):
    print("bench-placement:", *a, file=sys.stderr, flush=True)


def kubectl(*args, stdin=None):
    r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:3])} failed: {r.stderr.strip()}")
    return r.stdout


def read_network(name):
    """One TopoHub network: its sites' names and positions ([lon, lat]) and its links' delays."""
    g = json.load(open(os.path.join(DATA, "TopoHub/topozoo", name + ".json")))
    names = {n["id"]: n.get("name") or n["id"] for n in g["nodes"]}
    pos = {n["id"]: n.get("pos") for n in g["nodes"]}
    adj = {i: {} for i in names}
    for e in g["edges"]:
        a, b, d = e["source"], e["target"], float(e["dist"]) / KM_PER_MS
        if a == b:
            continue
        adj[a][b] = min(adj[a].get(b, d), d)
        adj[b][a] = min(adj[b].get(a, d), d)
    return names, pos, adj


def great_circle_km(p, q):
    import math
    (lon1, lat1), (lon2, lat2) = [(math.radians(x), math.radians(y)) for x, y in (p, q)]
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def dijkstra_all(ids, adj):
    delay = {}
    for s in ids:
        dist = {s: 0.0}
        heap = [(0.0, s)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in adj[u].items():
                if d + w < dist.get(v, float("inf")):
                    dist[v] = d + w
                    heapq.heappush(heap, (d + w, v))
        delay[s] = dist
    return delay


def load_graph():
    """Sites (sorted ids), names, the all-pairs delay and each site's network index."""
    graphs = [g for g in GRAPH.split(",") if g]
    names, pos, adj, network = {}, {}, {}, {}
    for gi, name in enumerate(graphs):
        n, p, a = read_network(name)
        pre = (lambda i: i) if len(graphs) == 1 else (lambda i, gi=gi: f"{gi}.{i}")
        local = dijkstra_all(sorted(n, key=int), a)
        comp = max((frozenset(local[s]) for s in local), key=len)  # largest connected component
        new = [pre(i) for i in sorted(comp, key=int)]
        for i in comp:
            names[pre(i)] = n[i]
            pos[pre(i)] = p[i]
            adj[pre(i)] = {pre(j): d for j, d in a[i].items() if j in comp}
            network[pre(i)] = gi
        if gi > 0:
            old = [s for s in adj if network[s] < gi and pos[s]]
            fresh = [s for s in new if pos[s]]
            if not old or not fresh:
                raise SystemExit(f"{name}: no site positions to join it by")
            s, t = min(((s, t) for s in old for t in fresh), key=lambda st: (great_circle_km(pos[st[0]], pos[st[1]]), st))
            # Sites in one city still take a hop: at least the intra-site delay.
            d = max(INTRA_SITE_MS, great_circle_km(pos[s], pos[t]) / KM_PER_MS)
            adj[s][t] = adj[t][s] = d
            log(f"joined {name} to {graphs[network[s]]}: {names[s]} - {names[t]}, {d:.2f} ms")
    ids = sorted(adj, key=site_key)
    return ids, names, dijkstra_all(ids, adj), network


def site_key(s):
    return tuple(int(x) for x in str(s).split("."))


def regions(ids, delay, network, k):
    """k regions per network (k-medoids within each), named r0.. in network order."""
    out, offset = {}, 0
    for gi in sorted(set(network.values())):
        sites = [s for s in ids if network[s] == gi]
        part = regions_by_kmedoids(sites, delay, k)
        used = sorted({int(r[1:]) for r in part.values()})
        for s, r in part.items():
            out[s] = f"r{offset + used.index(int(r[1:]))}"
        offset += len(used)
    return out


def regions_by_kmedoids(ids, delay, k):
    """PAM k-medoids on the delay matrix: greedy BUILD, then SWAP while the total delay from
    each site to its nearest medoid drops (ties by site id, so the result is deterministic)."""
    def cost(meds):
        return sum(min(delay[m][s] for m in meds) for s in ids)

    medoids = []
    while len(medoids) < min(k, len(ids)):
        medoids.append(min((s for s in ids if s not in medoids), key=lambda c: (cost(medoids + [c]), site_key(c))))
    best, improved = cost(medoids), True
    while improved:
        improved = False
        for i in range(len(medoids)):
            for c in ids:
                if c in medoids:
                    continue
                trial = medoids[:i] + [c] + medoids[i + 1:]
                if cost(trial) < best - 1e-9:
                    medoids, best, improved = trial, cost(trial), True
    assign = {s: min(medoids, key=lambda m: (delay[m][s], site_key(m))) for s in ids}
    return {s: f"r{medoids.index(assign[s])}" for s in ids}


def slug(s):
    return "".join(c.lower() if c.isalnum() else "-" for c in s).strip("-")


def node_list(ids, names, region):
    items, site_of = [], {}
    for s in ids:
        zone = f"{region[s]}-{slug(names[s])}-{str(s).replace('.', '-')}"
        for k in range(NODES_PER_SITE):
            name = f"site{str(s).replace('.', '-')}-{k}"
            site_of[name] = s
            res = {"cpu": NODE_CPU, "memory": "8Gi", "pods": "110"}
            items.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {"type": "kwok", "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64",
                                        "topology.kubernetes.io/region": region[s],
                                        "topology.kubernetes.io/zone": zone,
                                        "kubernetes.io/hostname": name}},
                "status": {"allocatable": res, "capacity": res},
            })
    return {"apiVersion": "v1", "kind": "List", "items": items}, site_of


def container():
    return [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": CPU_REQ, "memory": MEM_REQ}}}]


def peers_of(a):
    out = []
    for x, y, w in EDGES:
        if x == a:
            out.append({"agent": y, "weight": w})
        elif y == a:
            out.append({"agent": x, "weight": w})
    return out


def default_pods(ns):
    items = []
    for a, r in AGENTS.items():
        for i in range(r):
            items.append({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": f"{a}-{i}", "namespace": ns, "labels": {"bench/agent": a}},
                          "spec": {"containers": container(), "terminationGracePeriodSeconds": 0}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def affinity_pods(ns):
    """default_pods with preferred pod affinity toward each peer's pods by zone."""
    out = default_pods(ns)
    for item in out["items"]:
        a = item["metadata"]["labels"]["bench/agent"]
        terms = [{"weight": min(100, 10 * p["weight"]),
                  "podAffinityTerm": {"labelSelector": {"matchLabels": {"bench/agent": p["agent"]}},
                                      "topologyKey": "topology.kubernetes.io/zone"}}
                 for p in peers_of(a)]
        item["spec"]["affinity"] = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}
    return out


def mom_agents(ns):
    items = []
    for a, r in AGENTS.items():
        items.append({"apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
                      "metadata": {"name": a, "namespace": ns},
                      "spec": {"workloadType": "interactive", "replicas": r, "peers": peers_of(a),
                               "template": {"metadata": {"labels": {"bench/agent": a}},
                                            "spec": {"containers": container(),
                                                     "terminationGracePeriodSeconds": 0}}}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def wait_nodes_ready(want, timeout=600):
    """Polls until `want` kwok nodes are Ready and none carries the node lifecycle controller's
    not-ready or unreachable taint (one `kubectl wait` per node is too slow for thousands: at
    5,064 nodes it timed out after 120 s with every node Ready soon after). The taints go some
    seconds after Ready; a run started before that has only the first nodes to schedule on (on
    2026-12-07 the default scheduler put all 34 pods on the first 4 sites' nodes)."""
    deadline = time.time() + timeout
    while True:
        out = kubectl("get", "nodes", "-l", "type=kwok", "-o",
                      "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}"
                      " {.spec.taints[*].key}{'\\n'}{end}")
        lines = out.splitlines()
        ready = sum(1 for line in lines if line.split(" ", 1)[0].strip() == "True")
        tainted = sum(1 for line in lines if "node.kubernetes.io/not-ready" in line
                      or "node.kubernetes.io/unreachable" in line)
        if ready >= want and tainted == 0:
            return
        if time.time() > deadline:
            raise SystemExit(f"only {ready}/{want} kwok nodes Ready ({tainted} still tainted not-ready or "
                             f"unreachable) after {timeout}s")
        time.sleep(2)


def wait_running(ns, want, timeout=300):
    deadline = time.time() + timeout
    while True:
        pods = json.loads(kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        running = [p for p in live if p.get("status", {}).get("phase") == "Running"]
        if len(running) == want and len(live) == want:
            return [(p["metadata"]["labels"]["bench/agent"], p["spec"]["nodeName"]) for p in running]
        if time.time() > deadline:
            raise SystemExit(f"{ns}: only {len(running)}/{want} pods running after {timeout}s")
        time.sleep(1)


def disturbances(ns):
    """What can spoil a run's placement besides the scheduler: nodes MOM judged silent (its
    heartbeat check, from the operator log) and replicas it replaced as stranded (Events)."""
    import re
    silent = set()
    log_path = os.path.join(os.environ.get("BENCH_STATE", ""), "logs", "operator.log")
    if os.path.exists(log_path):
        for line in open(log_path, errors="replace"):
            if "missed their heartbeats" in line:
                silent.update(re.findall(r'"(site[^"]+)"', line))
    events = json.loads(kubectl("get", "events", "-n", ns, "--field-selector", "reason=ReplacedStranded", "-o", "json"))
    return {"nodes_judged_silent": len(silent), "replaced_stranded_events": len(events["items"])}


def weighted_latency(placed, site_of, delay):
    by_agent = {}
    for a, node in placed:
        by_agent.setdefault(a, []).append(site_of[node])

    def lat(s, t):
        return INTRA_SITE_MS if s == t else delay[s][t]

    num = den = 0.0
    for a, b, w in EDGES:
        pairs = [lat(s, t) for s in by_agent[a] for t in by_agent[b]]
        num += w * sum(pairs) / len(pairs)
        den += w
    return num / den, by_agent


def twin_figures(ns, site_of, delay, placed_sites):
    """The twin's latency for this cluster and workload (module doc), MOM's and the mean over
    TWIN_SEEDS seeds of the default scheduler model's, with their standard deviation; and the
    fraction of MOM's pods the twin put on the same site as the real run (per agent, as
    multisets: pod names differ)."""
    mom_bin = os.environ.get("MOM_BIN")
    if not mom_bin:
        raise SystemExit("MOM_BIN is not set (run through hack/bench-placement.sh)")
    path = os.path.join(os.environ.get("BENCH_STATE") or "/tmp", "twin-snapshot.json")

    def mom(*args):
        r = subprocess.run([mom_bin, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"mom {' '.join(args[:3])} failed: {r.stderr.strip()}")
        return r.stdout

    mom("whatif", "snapshot", "--cluster", "-n", ns, "--since", "1h", "--out", path)
    snap = json.load(open(path))
    zone_site = {n["labels"][ZONE_LABEL]: site_of[n["name"]] for n in snap["nodes"]}
    zones = sorted(zone_site)
    snap["zoneLatencyMs"] = {a: {b: INTRA_SITE_MS if a == b else delay[zone_site[a]][zone_site[b]]
                                 for b in zones} for a in zones}
    for a in snap["agents"]:
        r = AGENTS[a["name"].split("/", 1)[1]]
        a.update(target=[], method="manual", replicas=r, initialReplicas=r, minReplicas=1, maxReplicas=r,
                 demand=[1.0], binSeconds=15.0, capacityPerReplica=1.0)
        for k in ("scaling", "historySeconds", "coordinates"):
            a.pop(k, None)
    snap.update(durationSeconds=15.0, tickSeconds=15.0, deschedulerEveryTicks=0)
    snap.pop("recorded", None)
    if len(snap["agents"]) != len(AGENTS):
        raise SystemExit(f"twin snapshot holds {len(snap['agents'])} of {len(AGENTS)} agents")
    with open(path, "w") as f:
        json.dump(snap, f)
    out = json.loads(mom("whatif", "--snapshot", path, "--format", "json", "--steps"))
    twin_mom = out["recorded"]["latencyMs"]
    same = 0
    for name, nodes in out["placements"]["recorded"].items():
        real = list(placed_sites.get(name.split("/", 1)[1], []))
        for n in nodes:
            if site_of[n] in real:
                real.remove(site_of[n])
                same += 1
    agreement = same / sum(AGENTS.values())
    default = [json.loads(mom("whatif", "--snapshot", path, "--format", "json", "--set", "scheduler=default",
                              "--set", f"scheduler.seed={k}"))["counterfactual"]["latencyMs"]
               for k in range(TWIN_SEEDS)]
    mean = sum(default) / len(default)
    sd = (sum((x - mean) ** 2 for x in default) / max(1, len(default) - 1)) ** 0.5
    return twin_mom, mean, sd, agreement


def main():
    ids, names, delay, network = load_graph()
    region = regions(ids, delay, network, REGIONS)
    nodes, site_of = node_list(ids, names, region)
    log(f"{GRAPH}: {len(ids)} sites, {len(set(region.values()))} regions, {len(nodes['items'])} nodes")
    kubectl("apply", "-f", "-", stdin=json.dumps(nodes))
    wait_nodes_ready(len(nodes["items"]))
    want = sum(AGENTS.values())

    def stock_run(ns, pods, what):
        """Plain pods through the default kube-scheduler; their latency, then the namespace goes."""
        kubectl("create", "namespace", ns)
        kubectl("create", "-f", "-", stdin=json.dumps(pods(ns)))
        ms, sites = weighted_latency(wait_running(ns, want), site_of, delay)
        log(f"{what}: {ms:.3f} ms")
        kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s")
        return ms, sites

    default_ms, default_sites = stock_run("bench-default", default_pods, "default scheduler")
    affinity_ms, affinity_sites = stock_run("bench-affinity", affinity_pods,
                                            "default scheduler with peer affinity by zone")

    kubectl("create", "namespace", "bench-mom")
    kubectl("apply", "-f", "-", stdin=json.dumps(mom_agents("bench-mom")))
    placed_mom = wait_running("bench-mom", want)
    time.sleep(float(os.environ.get("BENCH_SETTLE_S", "0")))
    placed_mom = wait_running("bench-mom", want)
    mom_ms, mom_sites = weighted_latency(placed_mom, site_of, delay)
    log(f"mom-scheduler: {mom_ms:.3f} ms")
    twin_mom, twin_default, twin_default_sd, twin_agreement = twin_figures("bench-mom", site_of, delay, mom_sites)
    log(f"twin: mom {twin_mom:.3f} ms (same site as the run for {twin_agreement:.0%} of the pods), "
        f"default {twin_default:.3f} ± {twin_default_sd:.3f} ms ({TWIN_SEEDS} seeds)")
    disturbed = disturbances("bench-mom")
    if any(disturbed.values()):
        log(f"WARNING: this run does not measure placement alone: {disturbed} (MOM judged nodes "
            "failed from late heartbeats and moved replicas)")

    all_pairs = [delay[s][t] for s in ids for t in ids if s != t]

    def zones_used(by_agent):
        return len({s for sites in by_agent.values() for s in sites})

    def regions_used(by_agent):
        return len({region[s] for sites in by_agent.values() for s in sites})

    if os.environ.get("BENCH_DUMP"):
        # Where each run put each agent's pods (sites), for looking into a result.
        with open(os.environ["BENCH_DUMP"], "w") as f:
            json.dump({"sites_by_agent": {"mom": mom_sites, "default": default_sites,
                                          "affinity": affinity_sites},
                       "region": {str(s): region[s] for s in ids},
                       "delay_ms": {str(s): {str(t): delay[s][t] for t in ids} for s in ids}}, f, default=str)
    print(json.dumps({
        "mom_weighted_latency_ms": round(mom_ms, 4),
        "default_weighted_latency_ms": round(default_ms, 4),
        "reduction": round(1 - mom_ms / default_ms, 4),
        "affinity_weighted_latency_ms": round(affinity_ms, 4),
        "reduction_vs_affinity": round(1 - mom_ms / affinity_ms, 4),
        "graph": GRAPH, "sites": len(ids), "regions": len(set(region.values())), "nodes": len(nodes["items"]),
        "apps": APPS,
        "agents": len(AGENTS), "pods": want, "edges": len(EDGES),
        "mean_site_pair_delay_ms": round(sum(all_pairs) / len(all_pairs), 4),
        "zones_used": {"mom": zones_used(mom_sites), "default": zones_used(default_sites),
                       "affinity": zones_used(affinity_sites)},
        "regions_used": {"mom": regions_used(mom_sites), "default": regions_used(default_sites),
                         "affinity": regions_used(affinity_sites)},
        "mom_disturbances": disturbed,
        "twin": {"mom_weighted_latency_ms": round(twin_mom, 4),
                 "mom_relative_error": round(abs(twin_mom - mom_ms) / mom_ms, 4),
                 "mom_same_site_fraction": round(twin_agreement, 4),
                 "default_weighted_latency_ms": round(twin_default, 4),
                 "default_sd_ms": round(twin_default_sd, 4), "default_seeds": TWIN_SEEDS,
                 "default_relative_error": round(abs(twin_default - default_ms) / default_ms, 4)},
    }))


if __name__ == "__main__":
    main()
