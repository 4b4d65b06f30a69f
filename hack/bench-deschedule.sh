#!/usr/bin/env bash
# `make bench-deschedule`: the descheduler on a drifted kwok cluster (120 nodes, 200 pods; see
# hack/bench/deschedule.py), plus the core's planning time for 10,000 pods on 1,000 nodes and
# the core simulation. Prints one JSON line.
#   MOM_BIN=path/to/mom hack/bench-deschedule.sh      (BENCH_KEEP=1 keeps the cluster)
set -euo pipefail
source "$(dirname "$0")/bench/common.sh"
bench_up
bench_momconfig
drift=$(python3 "$root/hack/bench/deschedule.py" setup)
# Phase 2: the same cluster, MOM restarted with its descheduler on.
while read -r name pid; do
  case $name in operator|mom-scheduler) kill "$pid" 2>/dev/null || true ;; esac
done < "$BENCH_STATE/pids"
sleep 12   # the old Lease runs out (10 s)
settings=$BENCH_STATE/deschedule-settings.json
echo '{"planner":{"coolOffSeconds":30}}' > "$settings"
out=$("$cluster/start-mom.sh" "$BENCH_STATE" "$MOM_BIN" --watch-pid $$ -- \
  --deschedule --deschedule-tick-seconds 2 --deschedule-settings "$settings")
metrics=$(sed -n 's/^METRICS_URL=//p' <<<"$out")
converge=$(python3 "$root/hack/bench/deschedule.py" converge "$metrics")
core=$("$MOM_BIN" deschedule bench --pods 240 --nodes 100 --seed 1 --ticks 12 \
  --timing-pods 10000 --timing-nodes 1000 --format json)
python3 - "$drift" "$converge" "$core" <<'PY'
import json, sys
drift, conv, core = (json.loads(a) for a in sys.argv[1:4])
print(json.dumps({
    "cluster": {"kwokNodes": 120, "pods": 200, "pairs": 20},
    "latencyMsSettled": round(drift["settled"], 3),
    "latencyMsBefore": round(drift["drifted"], 3),
    "latencyMsAfter": round(conv["after"], 3),
    "evictions": conv["evictions"],
    "evictedPods": conv["evictedPods"],
    "evictionsRepeated": conv["evictedTwice"],
    "convergeSeconds": conv["convergeSeconds"],
    "planning10kPods1kNodes": core.get("planning"),
    "coreSimulation": {k: core[k] for k in core if k != "planning"},
}))
PY
