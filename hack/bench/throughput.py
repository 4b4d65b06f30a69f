#!/usr/bin/env python3
"""Scheduling throughput benchmark (run by hack/bench-throughput.sh on a fresh control plane
with MOM running and NODES kwok nodes already Ready).

Two phases on the same cluster: PODS plain pods with `schedulerName: default-scheduler`, then
PODS with `schedulerName: mom-scheduler` (kube-scheduler + MOM's extender: filter, prioritize,
bind). Pods are created by CREATORS parallel `kubectl create` of List chunks; pods/s = pods
bound / (time of the last bind seen - time creation started), binds observed by polling every
POLL_S. Each phase's pods are deleted before the next. Extender server-side latency per verb:
p50/p99 interpolated inside the buckets of the Prometheus histogram
`mom_extender_request_duration_seconds` (difference of the scrapes before and after the MOM
phase). Prints one JSON line.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

KUBECTL = os.environ.get("KUBECTL", "kubectl")
NODES = int(os.environ["NODES"])
PODS = int(os.environ.get("PODS", "1000"))
CREATORS = int(os.environ.get("CREATORS", "4"))
POLL_S = float(os.environ.get("POLL_S", "0.25"))
METRICS_URL = os.environ["METRICS_URL"]
HIST = "mom_extender_request_duration_seconds"


def log(*a):
    print("bench-throughput:", *a, file=sys.stderr, flush=True)


def kubectl(*args, stdin=None):
    r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:3])} failed: {r.stderr.strip()}")
    return r.stdout


def pods(ns, scheduler):
    return [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": f"p-{i:05d}", "namespace": ns, "labels": {"bench": ns}},
             "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                      "containers": [{"name": "c", "image": "pause",
                                      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}
            for i in range(PODS)]


def bound_count(ns):
    out = kubectl("get", "pods", "-n", ns, "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}")
    return sum(1 for line in out.splitlines() if line.strip())


def phase(ns, scheduler, timeout=600):
    kubectl("create", "namespace", ns)
    items = pods(ns, scheduler)
    chunks = [items[i::CREATORS] for i in range(CREATORS)]
    start = time.monotonic()
    procs = [subprocess.Popen([KUBECTL, "create", "-f", "-", "-o", "name"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in chunks]
    for p, c in zip(procs, chunks):
        p.stdin.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": c}))
        p.stdin.close()
    created_at = None
    last_bound_at, bound = start, 0
    while True:
        if created_at is None and all(p.poll() is not None for p in procs):
            created_at = time.monotonic()
            for p in procs:
                if p.returncode != 0:
                    raise SystemExit(f"creating pods failed: {p.stderr.read().strip()}")
        n = bound_count(ns)
        now = time.monotonic()
        if n > bound:
            bound, last_bound_at = n, now
        if bound >= PODS:
            break
        if now - start > timeout:
            raise SystemExit(f"{scheduler}: only {bound}/{PODS} pods bound after {timeout}s")
        time.sleep(POLL_S)
    wall = last_bound_at - start
    log(f"{scheduler}: {bound} pods bound in {wall:.2f} s (creation took {(created_at or now) - start:.2f} s)")
    kubectl("delete", "namespace", ns, "--wait=true", "--timeout=300s")
    return bound / wall, wall


def scrape():
    """{verb: [(le, cumulative count)]} of the extender histogram."""
    text = urllib.request.urlopen(METRICS_URL + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith(HIST + "_bucket{"):
            continue
        labels, value = line[len(HIST + "_bucket{"):].rsplit("} ", 1)
        kv = dict(p.split("=", 1) for p in labels.split(","))
        verb, le = kv["verb"].strip('"'), kv["le"].strip('"')
        out.setdefault(verb, []).append((float("inf") if le == "+Inf" else float(le), float(value)))
    return {v: sorted(b) for v, b in out.items()}


def quantile(buckets, q):
    """Linear interpolation inside the bucket holding the q-th observation (as PromQL's
    histogram_quantile); the lower edge of the first bucket is 0."""
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_le, prev_c = le, c
    return prev_le


def main():
    before = scrape()
    default_rate, default_wall = phase("bench-default", "default-scheduler")
    mom_rate, mom_wall = phase("bench-mom", "mom-scheduler")
    after = scrape()
    p50, p99, calls = {}, {}, {}
    for verb in ("filter", "prioritize", "bind"):
        b_after = after.get(verb, [])
        b_before = dict(before.get(verb, []))
        diff = [(le, c - b_before.get(le, 0.0)) for le, c in b_after]
        if not diff or diff[-1][1] <= 0:
            p50[verb] = p99[verb] = None
            calls[verb] = 0
            continue
        calls[verb] = int(diff[-1][1])
        p50[verb] = round(quantile(diff, 0.5) * 1e6, 1)
        p99[verb] = round(quantile(diff, 0.99) * 1e6, 1)
    print(json.dumps({
        "pods_per_s_with_extender": round(mom_rate, 2),
        "pods_per_s_without": round(default_rate, 2),
        "ratio": round(mom_rate / default_rate, 4),
        "extender_p50_us": p50, "extender_p99_us": p99,
        "nodes": NODES, "pods": PODS,
        "wall_s": {"with_extender": round(mom_wall, 3), "without": round(default_wall, 3)},
        "extender_calls": calls,
    }))


if __name__ == "__main__":
    main()
