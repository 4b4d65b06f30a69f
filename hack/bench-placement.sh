#!/usr/bin/env bash
# `make bench-placement`: traffic-weighted pod-to-pod latency of a microservice graph placed by
# MOM (GeometricAgents via mom-scheduler) vs the default kube-scheduler, on kwok nodes built
# from a real network topology (TopoHub). Prints one JSON line. See hack/bench/placement.py.
#   MOM_BIN=path/to/mom hack/bench-placement.sh      (BENCH_KEEP=1 keeps the cluster)
set -euo pipefail
source "$(dirname "$0")/bench/common.sh"
bench_up
bench_momconfig
python3 "$root/hack/bench/placement.py"
