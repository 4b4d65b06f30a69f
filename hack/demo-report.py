#!/usr/bin/env python3
"""`make demo`: says what each rule of the example strategies did, from what the cluster shows.

Usage: demo-report.py STATE_DIR APP_YAML
Reads STATE_DIR/demo-{pods,nodes,agents,strategies,usage,events}.json (kubectl -o json dumps
and the metrics API's PodMetricsList) and APP_YAML (the agents as applied, for their first
replica counts). Prints one line per pod, then per strategy one line per rule: its counts, the
agents' targets in readable form (status.position.nearest) and the scaler's decisions.
"""
import json
import re
import sys
from collections import Counter, defaultdict

REGION, ZONE = "topology.kubernetes.io/region", "topology.kubernetes.io/zone"
AGENT = "mom.hypersync.io/agent"


def load(state, name):
    with open(f"{state}/demo-{name}.json") as f:
        return json.load(f)


def quantity(q):
    """A Kubernetes quantity in base units (enough for what kubectl and metrics-server write)."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m:
        return 0.0
    factor = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}.get(m.group(2), 1)
    return float(m.group(1)) * factor


def matches(labels, match_labels):
    return all(labels.get(k) == v for k, v in (match_labels or {}).items())


def main(state, app_yaml):
    pods = [p for p in load(state, "pods")["items"] if p["spec"].get("nodeName")]
    nodes = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in load(state, "nodes")["items"]}
    agents = {a["metadata"]["name"]: a for a in load(state, "agents")["items"]}
    strategies = load(state, "strategies")["items"]
    usage = load(state, "usage")["items"]
    events = load(state, "events")["items"]
    # First replica counts, as the example file states them (name line followed by replicas line).
    first = {}
    name = None
    for line in open(app_yaml):
        if m := re.match(r"^  name: (\S+)", line):
            name = m.group(1)
        if (m := re.match(r"^  replicas: (\d+)", line)) and name:
            first[name] = int(m.group(1))

    print(f"{'POD':<22} {'AGENT':<9} {'NODE':<14} {'REGION':<13} {'ZONE':<14} PHASE")
    for p in sorted(pods, key=lambda p: (p["metadata"]["labels"].get(AGENT, ""), p["metadata"]["name"])):
        node = p["spec"]["nodeName"]
        lbl = nodes.get(node, {})
        print(f"{p['metadata']['name']:<22} {p['metadata']['labels'].get(AGENT, '-'):<9} {node:<14} "
              f"{lbl.get(REGION, '-'):<13} {lbl.get(ZONE, '-'):<14} {p['status'].get('phase', '-')}")

    pods_of = defaultdict(list)
    for p in pods:
        pods_of[p["metadata"]["labels"].get(AGENT, "")].append(p)
    used = defaultdict(lambda: defaultdict(float))  # agent -> resource -> total usage
    reported = Counter()  # agent -> pods the metrics API reports
    for item in usage:
        pod = next((p for p in pods if p["metadata"]["name"] == item["metadata"]["name"]), None)
        if pod is None:
            continue
        reported[pod["metadata"]["labels"].get(AGENT, "")] += 1
        for c in item.get("containers", []):
            for res, q in c.get("usage", {}).items():
                used[pod["metadata"]["labels"].get(AGENT, "")][res] += quantity(q)

    print("\n\033[1m== what each rule of the example strategies did\033[0m")
    for s in strategies:
        sname = s["metadata"]["name"]
        spec = s["spec"]
        members = sorted(a for a, obj in agents.items() if obj.get("status", {}).get("strategy") == sname)
        mine = [p for a in members for p in pods_of[a]]
        where = [nodes.get(p["spec"]["nodeName"], {}) for p in mine]
        total = len(mine)
        print(f"\nstrategy {sname} (agents {', '.join(members) or 'none'}; {total} pods placed)")
        placement = spec.get("placement", {})
        aff = placement.get("geometricAffinity", {})
        near = aff.get("nearNodes", {}).get("matchLabels")
        if near:
            n_near = sum(matches(lbl, near) for lbl in where)
            sel = ",".join(f"{k}={v}" for k, v in near.items())
            print(f"  geometricAffinity.nearNodes {sel}: {n_near} of {total} pods on such nodes")
        if "maxDistance" in aff:
            print(f"  geometricAffinity.maxDistance {aff['maxDistance']}: each agent's target, in readable form:")
        for a in members:
            near_node = agents[a].get("status", {}).get("position", {}).get("nearest")
            if near_node:
                print(f"    agent {a}: target nearest {near_node.get('region', '-')}/{near_node.get('zone', '-')} "
                      f"(node {near_node['node']}), d={near_node['distance']:.2f}")
        if placement.get("preferredRegions"):
            counts = Counter(lbl.get(REGION, "-") for lbl in where)
            listed = ", ".join(f"{r}: {counts.get(r, 0)}" for r in placement["preferredRegions"])
            others = total - sum(counts.get(r, 0) for r in placement["preferredRegions"])
            print(f"  preferredRegions [{', '.join(placement['preferredRegions'])}]: pods per region {listed}; "
                  f"elsewhere {others}")
        for avoided in placement.get("avoidNodes", []):
            on = sum(p["spec"]["nodeName"] == avoided for p in mine)
            if avoided not in nodes:
                print(f"  avoidNodes {avoided}: no such node in this cluster")
                continue
            zone = nodes[avoided].get(ZONE, "-")
            neighbours = sum(lbl.get(ZONE) == zone for lbl in where)
            print(f"  avoidNodes {avoided}: {on} pods ON it: the rule did not hold" if on else
                  f"  avoidNodes {avoided}: 0 pods on it, kept out of it "
                  f"(its zone {zone} holds {neighbours} of this strategy's pods on its other nodes)")
        loc = placement.get("locality", {})
        data = loc.get("dataNodes", {}).get("matchLabels")
        if data:
            sel = ",".join(f"{k}={v}" for k, v in data.items())
            eligible = sum(matches(lbl, data) for lbl in nodes.values())
            on = sum(matches(lbl, data) for lbl in where)
            print(f"  locality.dataNodes {sel} ({loc.get('mode', 'preferred')}): {on} of {total} pods on "
                  f"the {eligible} such nodes of {len(nodes)}")
        scaling = spec.get("scaling", {})
        for t in scaling.get("targets", []):
            metric = t["metric"]
            if metric not in ("cpu", "memory"):
                print(f"  scaling target {metric}: not shown here")
                continue
            print(f"  scaling ({scaling.get('method')}) {metric} target {t['target']:.0%} of the request "
                  f"(metrics API):")
            for a in members:
                reqs = 0.0
                for c in agents[a]["spec"]["template"]["spec"]["containers"]:
                    reqs += quantity(c.get("resources", {}).get("requests", {}).get(metric, "0"))
                n = reported[a]
                util = used[a][metric] / (reqs * n) if reqs and n else float("nan")
                before, now = first.get(a), agents[a]["spec"]["replicas"]
                did = f"scaled {before} -> {now}" if before != now else f"kept {now}"
                ready = next((c for c in agents[a].get("status", {}).get("conditions", [])
                              if c["type"] == "ScalingReady"), {})
                print(f"    agent {a}: usage {util:.0%} of request over {n} pods (metrics API) -> {did} "
                      f"(ScalingReady={ready.get('status', '?')} {ready.get('reason', '')})")
    scaled = [e for e in events if e.get("reason") == "Scaled"]
    if scaled:
        print("\nscaler events:")
        for e in scaled[-6:]:
            print(f"  {e['involvedObject']['name']}: {e.get('message', '')}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
