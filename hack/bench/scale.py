#!/usr/bin/env python3
"""Scale benchmark (run by hack/bench-scale.sh on a fresh control plane with MOM running, the
example namespace `shop` and the example MomConfig applied).

1. NODES kwok nodes (2 regions x 3 zones, racks of ceil(NODES/6)), each admitting
   max(110, 2 * AGENTS / NODES) pods so capacity never limits the run.
2. AGENTS GeometricAgents `a0..` of one replica each; agent i names agent (i+1) mod AGENTS as
   its only peer (a ring). All of them in one file, applied with one `kubectl apply -f`.
3. Every POLL_S seconds: the operator's resident memory (/proc/PID/status VmRSS) and the pods of
   `shop` bound to a node, until all AGENTS are bound or TIMEOUT_S passes.
4. Scrapes the operator's metrics (agent reconcile histogram, receipts written) and runs
   `mom verify --cluster --format json` with the keys the operator published.

Prints one JSON line:
  rss_mb             peak resident set (VmHWM) of the operator, MB (2^20 bytes)
  idle_rss_mb        resident set before the agents were applied
  bytes_per_agent    (peak - idle) / AGENTS
  rss_target_mb      100 MB + 2 KB per agent (issue "Survive load")
  seconds_to_all_bound  from the start of `kubectl apply` to the poll that saw every pod bound
  seconds_to_applied    from the start of `kubectl apply` to its exit (null: still applying)
                     (null on timeout; `bound` says how many were)
  reconcile_p99_ms   p99 of mom_reconcile_duration_seconds{controller="geometricagent"},
                     interpolated inside its buckets as PromQL's histogram_quantile does
  receipts_per_s     receipts written during the run / seconds to all bound (or the timeout)
  verify_ok          `mom verify --cluster` passed
"""
import json
import math
import os
import subprocess
import sys
import time
import urllib.request

KUBECTL = os.environ.get("KUBECTL", "kubectl")
MOM_BIN = os.environ["MOM_BIN"]
AGENTS = int(os.environ["AGENTS"])
NODES = int(os.environ["NODES"])
OPERATOR_PID = int(os.environ["OPERATOR_PID"])
METRICS_URL = os.environ["METRICS_URL"]
STATE = os.environ["BENCH_STATE"]
POLL_S = float(os.environ.get("POLL_S", max(2.0, AGENTS / 1000)))
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", 600 + 0.3 * AGENTS))
NAMESPACE = "shop"


def log(*a):
    print("bench-scale:", *a, file=sys.stderr, flush=True)


def kubectl(*args, stdin=None, check=True):
    r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:3])} failed: {r.stderr.strip()}")
    return r


def status_kb(field):
    """A `kB` field of /proc/PID/status of the operator (SystemExit if it is gone)."""
    try:
        with open(f"/proc/{OPERATOR_PID}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    raise SystemExit(f"the operator (pid {OPERATOR_PID}) is gone; see {STATE}/logs/operator.log")


def create_nodes():
    per_rack = math.ceil(NODES / 6)
    pods = max(110, math.ceil(2 * AGENTS / NODES))
    out = subprocess.run([MOM_BIN, "cluster", "nodes", "--regions", "2", "--zones-per-region", "3",
                          "--nodes-per-rack", str(per_rack), "--pods", str(pods)],
                         capture_output=True, text=True, check=True).stdout
    nodes = json.loads(out)
    nodes["items"] = nodes["items"][:NODES]
    kubectl("create", "-f", "-", "-o", "name", stdin=json.dumps(nodes))
    for _ in range(300):
        ready = kubectl("get", "nodes", "-l", "type=kwok", "--no-headers").stdout.count(" Ready ")
        if ready >= NODES:
            return
        time.sleep(1)
    raise SystemExit(f"only {ready}/{NODES} kwok nodes Ready after 300 s")


def agents_file():
    path = os.path.join(STATE, "agents.yaml")
    with open(path, "w") as f:
        for i in range(AGENTS):
            f.write(f"""---
apiVersion: mom.hypersync.io/v1alpha1
kind: GeometricAgent
metadata: {{name: a{i}, namespace: {NAMESPACE}}}
spec:
  workloadType: interactive
  replicas: 1
  peers: [{{agent: a{(i + 1) % AGENTS}}}]
  template:
    metadata: {{labels: {{app: a{i}}}}}
    spec:
      schedulerName: mom-scheduler
      containers: [{{name: c, image: nginx, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]
""")
    return path


def bound_pods():
    r = kubectl("get", "pods", "-n", NAMESPACE, "--field-selector", "spec.nodeName!=",
                "-o", "name", check=False)
    return sum(1 for line in r.stdout.splitlines() if line.strip()) if r.returncode == 0 else None


def scrape():
    return urllib.request.urlopen(METRICS_URL + "/metrics", timeout=30).read().decode()


def series(text, name, want=None):
    """[(labels dict, value)] of the samples of `name` whose labels include `want`."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            labels, value = rest[1:].rsplit("} ", 1)
            kv = dict((k, v.strip('"')) for k, v in (p.split("=", 1) for p in labels.split(",") if p))
        elif rest.startswith(" "):
            kv, value = {}, rest
        else:
            continue
        if all(kv.get(k) == v for k, v in (want or {}).items()):
            out.append((kv, float(value)))
    return out


def p99_ms(text):
    buckets = sorted((float("inf") if kv["le"] == "+Inf" else float(kv["le"]), v)
                     for kv, v in series(text, "mom_reconcile_duration_seconds_bucket",
                                         {"controller": "geometricagent"}))
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = 0.99 * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return round(prev_le * 1e3, 2)
            return round((prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)) * 1e3, 2)
        prev_le, prev_c = le, c
    return round(prev_le * 1e3, 2)


def receipts_written(text):
    return sum(v for _, v in series(text, "mom_receipts_written_total"))


def main():
    create_nodes()
    path = agents_file()
    time.sleep(2)
    idle_kb = status_kb("VmRSS")
    receipts_before = receipts_written(scrape())
    log(f"{NODES} nodes Ready; operator at {idle_kb // 1024} MB; applying {AGENTS} agents")
    start = time.monotonic()
    apply = subprocess.Popen([KUBECTL, "apply", "-f", path], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    all_bound_s, bound, last_log, applied_s = None, 0, start, None
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        rss_kb = status_kb("VmRSS")
        n = bound_pods()
        bound = n if n is not None else bound
        if applied_s is None and apply.poll() is not None:
            # When kubectl is still applying, the time to all bound is kubectl's, not MOM's.
            applied_s = now - start
            log(f"t={applied_s:.0f}s kubectl apply finished (exit {apply.returncode}); bound={bound}/{AGENTS}")
        if now - last_log >= 30:
            log(f"t={now - start:.0f}s rss={rss_kb // 1024}MB bound={bound}/{AGENTS}")
            last_log = now
        if bound >= AGENTS:
            all_bound_s = now - start
            break
        if now - start > TIMEOUT_S:
            log(f"timeout: {bound}/{AGENTS} pods bound after {TIMEOUT_S:.0f} s")
            break
    apply_err = apply.communicate()[1] if apply.poll() is not None else None
    if apply.returncode not in (0, None):
        log(f"kubectl apply failed: {apply_err.strip()[:500]}")
    elapsed = all_bound_s if all_bound_s is not None else time.monotonic() - start
    peak_kb = status_kb("VmHWM")
    text = scrape()
    receipts = receipts_written(text) - receipts_before
    verify = subprocess.run([MOM_BIN, "verify", "--cluster", "--format", "json"],
                            capture_output=True, text=True)
    if verify.returncode != 0:
        log(f"mom verify --cluster failed: {(verify.stdout + verify.stderr).strip()[-800:]}")
    peak_mb = peak_kb / 1024
    print(json.dumps({
        "agents": AGENTS, "nodes": NODES,
        "rss_mb": round(peak_mb, 1),
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "bytes_per_agent": round((peak_kb - idle_kb) * 1024 / AGENTS),
        "rss_target_mb": round(100 + 2 * AGENTS / 1024, 1),
        "seconds_to_all_bound": round(all_bound_s, 1) if all_bound_s is not None else None,
        "seconds_to_applied": round(applied_s, 1) if applied_s is not None else None,
        "bound": bound,
        "reconcile_p99_ms": p99_ms(text),
        "receipts_per_s": round(receipts / elapsed, 2) if elapsed > 0 else None,
        "receipts_written": int(receipts),
        "verify_ok": verify.returncode == 0,
    }))


if __name__ == "__main__":
    main()
