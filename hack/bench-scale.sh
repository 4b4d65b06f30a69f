#!/usr/bin/env bash
# `make bench-scale AGENTS=1000 NODES=60`: AGENTS GeometricAgents of one replica each, every one
# with one peer (a ring), applied with one `kubectl apply` on NODES kwok nodes under the example
# MomConfig (verification full_audit). Measures the operator's memory, the time until every pod is
# bound, the agent reconcile p99, receipts written per second, and `mom verify --cluster`.
# Prints one JSON line (see hack/bench/scale.py).
#   MOM_BIN=path/to/mom AGENTS=1000 NODES=60 hack/bench-scale.sh   (BENCH_KEEP=1 keeps it)
set -euo pipefail
source "$(dirname "$0")/bench/common.sh"
export AGENTS=${AGENTS:-1000} NODES=${NODES:-60}
bench_up
"$KUBECTL" apply -f "$root/manifests/examples/00-namespace.yaml" -f "$root/manifests/examples/10-momconfig.yaml" >/dev/null
python3 "$root/hack/bench/scale.py"
