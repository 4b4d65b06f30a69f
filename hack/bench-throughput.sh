#!/usr/bin/env bash
# `make bench-throughput NODES=500`: pods/s through the real kube-scheduler with MOM's extender
# (mom-scheduler) vs without (default-scheduler) on NODES kwok nodes, plus the extender's
# server-side p50/p99 per verb. Prints one JSON line. See hack/bench/throughput.py.
#   MOM_BIN=path/to/mom NODES=500 PODS=1000 hack/bench-throughput.sh   (BENCH_KEEP=1 keeps it)
set -euo pipefail
source "$(dirname "$0")/bench/common.sh"
export NODES=${NODES:-500} PODS=${PODS:-1000}
bench_up
bench_momconfig
# NODES nodes: 10 regions x 10 zones x ceil(NODES/100) per zone, trimmed to exactly NODES.
per_zone=$(( (NODES + 99) / 100 ))
# Created by 4 parallel kubectl (one List chunk each), which is ~4x faster than one.
"$MOM_BIN" cluster nodes --regions 10 --zones-per-region 10 --nodes-per-rack "$per_zone" \
  | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"][:int(sys.argv[1])]
for i in range(4):
    with open(f"{sys.argv[2]}/nodes-{i}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items[i::4]}, f)
' "$NODES" "$BENCH_STATE"
pids=()
for i in 0 1 2 3; do
  "$KUBECTL" create -f "$BENCH_STATE/nodes-$i.json" -o name >/dev/null & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "bench-throughput: waiting for $NODES nodes to be Ready" >&2
# Poll the Ready count: `kubectl wait` checks nodes one by one (minutes at 5000 nodes).
for _ in $(seq 1 600); do
  ready=$("$KUBECTL" get nodes -l type=kwok --no-headers | grep -c ' Ready ' || true)
  [[ $ready -ge $NODES ]] && break
  sleep 1
done
[[ $ready -ge $NODES ]] || { echo "bench-throughput: only $ready/$NODES nodes Ready after 600 s" >&2; exit 1; }
sleep 2 # let the operator's node watch and embedding catch up
echo "bench-throughput: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores before the pods" >&2
LOG_DIR=$BENCH_STATE/logs python3 "$root/hack/bench/throughput.py"
