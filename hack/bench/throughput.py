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
phase). CPU seconds each component of the control plane used per phase (`cpu_s`: user +
system time from /proc/PID/stat of the processes in STATE_DIR/pids, STATE_DIR being LOG_DIR's
parent), so a slower phase shows where the machine's two cores went, and the apiserver
requests each phase made (`apiserver_requests`: the ten largest counts of
`apiserver_request_total` by verb and resource, from the apiserver's /metrics; they include
this script's own pod LISTs while polling). Prints one JSON line.

A phase that does not bind every pod (TIMEOUT_S in all, or no new bind for STALL_S) fails
saying why: pods bound / pending, the scheduler's last FailedScheduling messages, the last
extender and error lines of the scheduler's and the operator's logs (LOG_DIR), the extender's
calls so far.
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
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", "600"))
STALL_S = float(os.environ.get("STALL_S", "180"))
LOG_DIR = os.environ.get("LOG_DIR", "")
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


def tail_matching(path, words, n):
    """The last n lines of a log file that contain any of words (case-insensitive)."""
    try:
        with open(path, errors="replace") as f:
            lines = [l.rstrip() for l in f if any(w in l.lower() for w in words)]
    except OSError as e:
        return [f"(cannot read {path}: {e})"]
    return [l[:400] for l in lines[-n:]]


def why_not_bound(ns, scheduler, bound):
    """What a phase that did not bind every pod leaves to go on, for the failure message."""
    out = [f"{scheduler}: {bound}/{PODS} pods bound in namespace {ns}"]
    r = subprocess.run([KUBECTL, "get", "pods", "-n", ns, "--no-headers",
                        "-o", "custom-columns=PHASE:.status.phase,NODE:.spec.nodeName"],
                       capture_output=True, text=True)
    rows = [l.split() for l in r.stdout.splitlines() if l.strip()]
    pending = sum(1 for row in rows if row and row[0] == "Pending" and (len(row) < 2 or row[1] == "<none>"))
    out.append(f"pods seen: {len(rows)}, pending without a node: {pending}")
    r = subprocess.run([KUBECTL, "get", "events", "-n", ns, "--field-selector", "reason=FailedScheduling",
                        "--sort-by=.lastTimestamp", "-o",
                        "jsonpath={range .items[*]}{.count}x {.involvedObject.name}: {.message}{\"\\n\"}{end}"],
                       capture_output=True, text=True)
    events = [l for l in r.stdout.splitlines() if l.strip()]
    out.append(f"FailedScheduling events: {len(events)}" + (", last:" if events else " (none)"))
    out += ["  " + e[:400] for e in events[-5:]]
    if LOG_DIR:
        sched_log = os.path.join(LOG_DIR, "mom-scheduler.log" if scheduler == "mom-scheduler" else "kube-scheduler.log")
        lines = tail_matching(sched_log, ["extender", "error", "failed"], 8)
        out.append(f"last extender/error lines of {sched_log}:" + ("" if lines else " (none)"))
        out += ["  " + l for l in lines]
        lines = tail_matching(os.path.join(LOG_DIR, "operator.log"), ["error", "warn"], 8)
        out.append("last warnings/errors of the operator log:" + ("" if lines else " (none)"))
        out += ["  " + l for l in lines]
    try:
        calls = {v: int(b[-1][1]) for v, b in scrape().items() if b}
        out.append(f"extender calls so far (histogram counts): {calls}")
    except Exception as e:  # the operator may be the problem
        out.append(f"cannot scrape the operator's metrics at {METRICS_URL}: {e}")
    return "\n".join(out)


def phase(ns, scheduler, timeout=TIMEOUT_S):
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
            raise SystemExit(f"bench-throughput: FAILED: {scheduler} bound only {bound}/{PODS} pods "
                             f"in {timeout:.0f} s\n" + why_not_bound(ns, scheduler, bound))
        if created_at is not None and now - max(last_bound_at, created_at) > STALL_S:
            raise SystemExit(f"bench-throughput: FAILED: {scheduler} bound no pod for {STALL_S:.0f} s "
                             f"({bound}/{PODS} bound)\n" + why_not_bound(ns, scheduler, bound))
        time.sleep(POLL_S)
    wall = last_bound_at - start
    log(f"{scheduler}: {bound} pods bound in {wall:.2f} s (creation took {(created_at or now) - start:.2f} s)")
    kubectl("delete", "namespace", ns, "--wait=true", "--timeout=300s")
    return bound / wall, wall


def cpu_seconds():
    """{component: user + system CPU seconds so far} of the processes listed in STATE_DIR/pids
    (one line "name pid" each; both kube-schedulers, the operator, the apiserver, etcd, kwok...)."""
    out = {}
    if not LOG_DIR:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    try:
        lines = open(os.path.join(os.path.dirname(LOG_DIR.rstrip("/")), "pids")).read().split("\n")
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            continue
        name, pid = parts
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        # Fields after the parenthesised command: utime and stime are the 12th and 13th.
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_used(before, after):
    return {k: round(after[k] - before.get(k, 0.0), 1) for k in sorted(after) if after[k] - before.get(k, 0.0) >= 0.05}


def apiserver_requests():
    """{"VERB resource[/subresource]": count} from the apiserver's apiserver_request_total."""
    r = subprocess.run([KUBECTL, "get", "--raw", "/metrics"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"reading the apiserver's /metrics failed: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
        kv = {}
        for part in labels.split('",'):
            if "=" in part:
                k, v = part.split("=", 1)
                kv[k] = v.strip('"')
        what = kv.get("resource", "") + ("/" + kv["subresource"] if kv.get("subresource") else "")
        key = f'{kv.get("verb", "?")} {what}'
        out[key] = out.get(key, 0.0) + float(value)
    return out


def requests_made(before, after, top=10):
    diff = {k: int(after[k] - before.get(k, 0.0)) for k in after}
    return dict(sorted(((k, v) for k, v in diff.items() if v > 0), key=lambda kv: -kv[1])[:top])


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
    load = {"start": os.getloadavg()[0]}
    before = scrape()
    cpu0, req0 = cpu_seconds(), apiserver_requests()
    default_rate, default_wall = phase("bench-default", "default-scheduler")
    load["after_default"] = os.getloadavg()[0]
    cpu1, req1 = cpu_seconds(), apiserver_requests()
    mom_rate, mom_wall = phase("bench-mom", "mom-scheduler")
    load["after_mom"] = os.getloadavg()[0]
    cpu2, req2 = cpu_seconds(), apiserver_requests()
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
        "load_avg_1m": {k: round(v, 2) for k, v in load.items()}, "cores": os.cpu_count(),
        # Each phase includes deleting its namespace (the pods' deletion).
        "cpu_s": {"without": cpu_used(cpu0, cpu1), "with_extender": cpu_used(cpu1, cpu2)},
        "apiserver_requests": {"without": requests_made(req0, req1), "with_extender": requests_made(req1, req2)},
    }))


if __name__ == "__main__":
    main()
