#!/usr/bin/env bash
# `make bench-failover`: recovery time of the demo shop from a zone and a region outage
# (tests/cluster/fail-domain.sh) under MOM, against plain Deployments under stock Kubernetes on
# the same cluster. Prints one JSON line. See hack/bench/failover.py.
#   MOM_BIN=path/to/mom hack/bench-failover.sh      (BENCH_KEEP=1 keeps the cluster)
set -euo pipefail
source "$(dirname "$0")/bench/common.sh"
bench_up
python3 "$root/hack/bench/failover.py"
