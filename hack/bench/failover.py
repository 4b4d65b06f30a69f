#!/usr/bin/env python3
"""Failover benchmark (run by hack/bench-failover.sh on a fresh local control plane with MOM).

Cluster: kwok nodes in 2 regions x 3 zones x 2 nodes (`mom cluster nodes`), all labelled
storage.example.com/ssd=true (the shop's data tier requires it). Workload: the demo shop
(manifests/examples: 00-namespace, 20-strategies, 30-app), placed by MOM.

1. Zone: the zone running most shop pods goes dark (tests/cluster/fail-domain.sh: its kubelets
   stop). RTO = from then until every agent has spec.replicas pods Ready outside the zone.
   Then the zone returns; after it settles, every agent must have as many pods as before
   (spec.replicas plus its redundancy spares or standbys).
2. Region: the same with the region running most shop pods.
3. Stock: plain Deployments with the agents' spec.replicas and similar requests, default scheduler, no
   MOM involvement; the zone running most of their pods goes dark; the same RTO.

Prints one JSON line: {"zone_rto_s", "region_rto_s", "stock_zone_rto_s", "pods_lost",
"duplicates", "zone_full_s", "region_full_s", ...}; progress on stderr. *_full_s: until the
spares and standbys are back outside the domain too (null when not within FULL_WAIT_S: an
active_passive standby may have no region left to go to). pods_lost: agents short of their replicas once a domain is
back and settled; duplicates: pods beyond them.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
KUBECTL = os.environ.get("KUBECTL", "kubectl")
STATE = os.environ["BENCH_STATE"]
MOM_BIN = os.environ["MOM_BIN"]
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", "900"))
SETTLE_S = float(os.environ.get("SETTLE_S", "20"))
FULL_WAIT_S = float(os.environ.get("FULL_WAIT_S", "180"))
ZONE, REGION = "topology.kubernetes.io/zone", "topology.kubernetes.io/region"


def log(*a):
    print("bench-failover:", *a, file=sys.stderr, flush=True)


def kubectl(*args, stdin=None):
    r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:4])} failed: {r.stderr.strip()}")
    return r.stdout


def fail_domain(*args):
    r = subprocess.run([os.path.join(ROOT, "tests/cluster/fail-domain.sh"), STATE, *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"fail-domain.sh {args}: {r.stderr.strip()}")
    for line in r.stdout.splitlines():
        if "_at_ms=" in line:
            return int(line.split("=", 1)[1]) / 1000.0
    raise SystemExit(f"fail-domain.sh printed no time: {r.stdout}")


def node_labels():
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in nodes}


def pods(namespace, selector_key):
    """group -> list of (name, node, ready, deleting) for pods carrying label selector_key."""
    items = json.loads(kubectl("get", "pods", "-n", namespace, "-l", selector_key, "-o", "json"))["items"]
    out = {}
    for p in items:
        group = p["metadata"]["labels"][selector_key]
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", []) or [])
        out.setdefault(group, []).append((p["metadata"]["name"], p["spec"].get("nodeName"), ready,
                                          "deletionTimestamp" in p["metadata"]))
    return out


def wait(what, check, timeout=TIMEOUT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def all_ready(namespace, key, want, outside=None):
    """True when each group has want[group] Ready, live pods (outside the node set if given)."""
    got = pods(namespace, key)
    for group, n in want.items():
        ok = [p for p in got.get(group, []) if p[1] and p[2] and not p[3] and (outside is None or p[1] not in outside)]
        if len(ok) < n:
            return False
    return True


def busiest(namespace, key, labels, level):
    count = {}
    for plist in pods(namespace, key).values():
        for _, node, _, deleting in plist:
            if node and not deleting:
                d = labels[node].get(level)
                count[d] = count.get(d, 0) + 1
    return max(sorted(count), key=lambda d: count[d])


def outage(namespace, key, want, total, level, labels):
    """Fails the busiest domain at `level`, returns (rto seconds, lost, duplicates)."""
    domain = busiest(namespace, key, labels, level)
    dark = {n for n, l in labels.items() if l.get(level) == domain}
    flag = "--zone" if level == ZONE else "--region"
    log(f"{namespace}: failing {level}={domain} ({len(dark)} nodes)")
    failed_at = fail_domain(flag, domain)
    wait(f"{namespace} replicas Ready outside {domain}", lambda: all_ready(namespace, key, want, dark))
    rto = time.time() - failed_at
    log(f"{namespace}: every group has its replicas Ready outside {domain} after {rto:.1f} s")
    # Spares and standbys too (a standby may have nowhere to go: then None after FULL_WAIT_S).
    full = None
    try:
        wait(f"{namespace} every pod back outside {domain}", lambda: all_ready(namespace, key, total, dark),
             timeout=max(0.0, FULL_WAIT_S - (time.time() - failed_at)))
        full = time.time() - failed_at
        log(f"{namespace}: every pod, spares too, Ready outside {domain} after {full:.1f} s")
    except SystemExit as e:
        log(f"{namespace}: {e}")
    fail_domain("--restore")
    # The domain's kubelets finish the deletions of the replaced pods; then count.
    wait(f"{namespace}: nothing Terminating after the return",
         lambda: all(not p[3] for pl in pods(namespace, key).values() for p in pl), timeout=120)
    time.sleep(SETTLE_S)
    got = pods(namespace, key)
    lost = sum(max(0, n - len([p for p in got.get(g, []) if not p[3]])) for g, n in total.items())
    dup = sum(max(0, len([p for p in got.get(g, []) if not p[3]]) - n) for g, n in total.items())
    log(f"{namespace}: after the return: lost {lost}, duplicates {dup}")
    return rto, full, lost, dup


def main():
    nodes = subprocess.run([MOM_BIN, "cluster", "nodes", "--regions", "2", "--zones-per-region", "3",
                            "--nodes-per-rack", "2"], capture_output=True, text=True, check=True).stdout
    kubectl("apply", "-f", "-", stdin=nodes)
    # The shop's data tier requires nodes labelled storage.example.com/ssd=true (the demo labels
    # region-0's): every node here, so a region outage leaves somewhere to go.
    kubectl("label", "nodes", "--all", "storage.example.com/ssd=true", "--overwrite")
    labels = node_labels()
    wait("nodes Ready", lambda: "False" not in kubectl(
        "get", "nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}")
        and len(labels) > 0)
    ex = os.path.join(ROOT, "manifests/examples")
    for f in ("00-namespace.yaml", "20-strategies.yaml", "30-app.yaml"):
        kubectl("apply", "-f", os.path.join(ex, f))
    agents = json.loads(kubectl("get", "geometricagents", "-n", "shop", "-o", "json"))["items"]
    demand = {a["metadata"]["name"]: a["spec"]["replicas"] for a in agents}
    key = "mom.hypersync.io/agent"
    wait("the shop Ready", lambda: all_ready("shop", key, demand))
    # Spares and standbys (redundancy, active_passive) come on top of spec.replicas: recovery
    # is judged on the demand; lost and duplicated pods on everything that runs.
    time.sleep(5)
    total = {g: len([p for p in pl if not p[3]]) for g, pl in pods("shop", key).items()}
    log(f"shop: demand {demand}, pods {total}")
    if os.environ.get("ONLY_REGION"):
        outage("shop", key, demand, total, REGION, labels)
        return
    zone_rto, zone_full, lost1, dup1 = outage("shop", key, demand, total, ZONE, labels)
    region_rto, region_full, lost2, dup2 = outage("shop", key, demand, total, REGION, labels)
    want = demand
    if os.environ.get("SKIP_STOCK"):
        log(f"zone {zone_rto:.1f} s, region {region_rto:.1f} s; stock skipped")
        return

    # Stock Kubernetes: Deployments with the same counts, default scheduler.
    kubectl("create", "namespace", "stock")
    for name, n in sorted(want.items()):
        kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "stock"},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause",
                                           "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}}))
    wait("the stock Deployments Ready", lambda: all_ready("stock", "app", want))
    stock_rto, _, lost3, dup3 = outage("stock", "app", want, want, ZONE, labels)
    print(json.dumps({
        "zone_rto_s": round(zone_rto, 1),
        "region_rto_s": round(region_rto, 1),
        "stock_zone_rto_s": round(stock_rto, 1),
        "zone_full_s": zone_full and round(zone_full, 1),
        "region_full_s": region_full and round(region_full, 1),
        "pods_lost": lost1 + lost2,
        "duplicates": dup1 + dup2,
        "stock_pods_lost": lost3,
        "stock_duplicates": dup3,
    }))


if __name__ == "__main__":
    main()
