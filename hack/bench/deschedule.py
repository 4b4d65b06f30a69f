#!/usr/bin/env python3
"""`make bench-deschedule`: the descheduler on a drifted kwok cluster, end to end.

120 kwok nodes (4 regions x 3 zones x 2 racks x 5 nodes, 8 CPU each). 20 pairs of agents, an
anchor and a dependant that talks to it (peer weight 5), 5 replicas each: 200 pods, placed by
mom-scheduler. Phase 1, MOM without its descheduler: every anchor's strategy moves its home to
the next region and the anchors' pods are replaced there (a drift: the dependants now talk
across regions). Phase 2: MOM is restarted with `--deschedule` (2 s ticks); the benchmark waits
until no eviction happened for 20 s. Latency model (documented, not measured): 0.1 ms within a
zone, 1 ms within a region, 30 ms across regions; every dependant-anchor replica pair of a pair
carries the same traffic. Prints one JSON line: latency before/after, evictions used, pods
evicted twice, time to converge, and the core planning time for 10,000 pods on 1,000 nodes.
"""

import json
import os
import re
import subprocess
import sys
import time

KUBECTL = os.environ["KUBECTL"]
MOM = os.environ["MOM_BIN"]
PAIRS = 20
REPLICAS = 5
REGIONS = 4
NS = "bench"


def log(*a):
    print("bench-deschedule:", *a, file=sys.stderr, flush=True)


def kubectl(*args, stdin=None):
    r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:3])} failed: {r.stderr.strip()}")
    return r.stdout


def apply(obj):
    kubectl("apply", "-f", "-", stdin=json.dumps(obj))


def strategy(i, region):
    return {"apiVersion": "mom.hypersync.io/v1alpha1", "kind": "OrchestrationStrategy",
            "metadata": {"name": f"home-{i}", "namespace": NS},
            "spec": {"priority": 10, "scaling": {"method": "manual", "minReplicas": 0, "maxReplicas": 20},
                     "placement": {"preferredRegions": [f"region-{region}"]}}}


def agent(name, extra):
    spec = {"workloadType": "interactive", "replicas": REPLICAS,
            "template": {"metadata": {"labels": {"bench/agent": name}},
                         "spec": {"terminationGracePeriodSeconds": 0,
                                  "containers": [{"name": "c", "image": "pause",
                                                  "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]}}}
    spec.update(extra)
    return {"apiVersion": "mom.hypersync.io/v1alpha1", "kind": "GeometricAgent",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def placed(timeout=600):
    """agent -> [node] once all 200 pods run (and none is terminating)."""
    want = 2 * PAIRS * REPLICAS
    deadline = time.time() + timeout
    while True:
        pods = json.loads(kubectl("get", "pods", "-n", NS, "-o", "json"))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        running = [p for p in live if p.get("status", {}).get("phase") == "Running" and p["spec"].get("nodeName")]
        if len(running) == want and len(live) == want:
            out = {}
            for p in running:
                out.setdefault(p["metadata"]["labels"]["bench/agent"], []).append(p["spec"]["nodeName"])
            return out
        if time.time() > deadline:
            raise SystemExit(f"only {len(running)}/{want} pods running after {timeout}s")
        time.sleep(1)


def node_labels():
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in nodes}


def latency(by_agent, labels):
    def pair(a, b):
        la, lb = labels[a], labels[b]
        if la.get("topology.kubernetes.io/region") != lb.get("topology.kubernetes.io/region"):
            return 30.0
        if la.get("topology.kubernetes.io/zone") != lb.get("topology.kubernetes.io/zone"):
            return 1.0
        return 0.1
    total = 0.0
    for i in range(PAIRS):
        ds, as_ = by_agent[f"dep-{i}"], by_agent[f"anchor-{i}"]
        total += sum(pair(d, a) for d in ds for a in as_) / (len(ds) * len(as_))
    return total / PAIRS


def evictions(metrics_url):
    text = subprocess.run(["curl", "-sf", f"{metrics_url}/metrics"], capture_output=True, text=True).stdout
    return sum(float(m.group(1)) for m in re.finditer(r"^mom_descheduler_evictions_total\{[^}]*\} (\S+)$", text, re.M))


def main():
    phase = sys.argv[1]
    if phase == "setup":
        nodes = subprocess.run([MOM, "cluster", "nodes", "--regions", str(REGIONS), "--zones-per-region", "3",
                                "--racks-per-zone", "2", "--nodes-per-rack", "5"],
                               capture_output=True, text=True, check=True).stdout
        kubectl("apply", "-f", "-", stdin=nodes)
        kubectl("create", "namespace", NS)
        for i in range(PAIRS):
            apply(strategy(i, i % REGIONS))
            apply(agent(f"anchor-{i}", {"strategyRef": {"name": f"home-{i}"}}))
            apply(agent(f"dep-{i}", {"peers": [{"agent": f"anchor-{i}", "weight": 5}]}))
        settled = placed()
        labels = node_labels()
        log(f"placed: latency {latency(settled, labels):.2f} ms")
        # The drift: every anchor's home moves one region on; its pods are replaced there.
        for i in range(PAIRS):
            apply(strategy(i, (i + 1) % REGIONS))
        time.sleep(3)
        for i in range(PAIRS):
            kubectl("delete", "pods", "-n", NS, "-l", f"bench/agent=anchor-{i}", "--wait=false")
        drifted = placed()
        print(json.dumps({"settled": latency(settled, labels), "drifted": latency(drifted, labels)}))
    elif phase == "converge":
        metrics_url = sys.argv[2]
        labels = node_labels()
        start = time.time()
        last_change, last = time.time(), -1.0
        while time.time() - last_change < 20 and time.time() - start < 900:
            now = evictions(metrics_url)
            if now != last:
                last, last_change = now, time.time()
            time.sleep(1)
        after = placed()
        events = json.loads(kubectl("get", "events.events.k8s.io", "-n", NS, "-o", "json"))["items"]
        evicted = [e["regarding"]["name"] for e in events if e.get("reason") == "Descheduled"]
        repeated = len(evicted) - len(set(evicted))
        print(json.dumps({"after": latency(after, labels), "evictions": last, "evictedPods": len(set(evicted)),
                          "evictedTwice": repeated, "convergeSeconds": round(last_change - start, 1)}))
    else:
        raise SystemExit(f"unknown phase {phase}")


if __name__ == "__main__":
    main()
