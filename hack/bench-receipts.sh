#!/usr/bin/env bash
# `make bench-receipts`: receipt costs on a fresh local control plane with MOM running.
#  1. `receipts_bench bench-write` (examples/receipts_bench.rs, not part of `mom`): COUNT receipts written one after another by the operator's
#     ReceiptWriter (the operator itself is at level none meanwhile, so nothing else writes the
#     chain): receipts/s, write latency p50/p99/max, one checkpoint.
#  2. `receipts_bench bench-overhead`: AGENTS agents flipped 0 <-> 1 replicas for ROUNDS rounds,
#     under MomConfig level none and full_audit alternately, REPEATS times each: actions/s of
#     each and the overhead of full_audit; then SERIAL single actions one at a time per level
#     (p50/p99 latency of one action).
# Prints two JSON lines (everything else goes to stderr).
#   MOM_BIN=path/to/mom RECEIPTS_BENCH_BIN=path/to/receipts_bench COUNT=500 AGENTS=40 ROUNDS=6 REPEATS=2 hack/bench-receipts.sh
set -euo pipefail
source "$(dirname "$0")/bench/common.sh"
bench_up
bench_momconfig
"$MOM_BIN" cluster nodes --regions 2 --zones-per-region 3 --nodes-per-rack 2 | "$KUBECTL" apply -f - >/dev/null
echo "bench-receipts: writing ${COUNT:-500} receipts" >&2
"${RECEIPTS_BENCH_BIN:?the receipts_bench example (cargo build --release --example receipts_bench)}" bench-write --count "${COUNT:-500}"
echo "bench-receipts: scaling workload, level none vs full_audit" >&2
"$RECEIPTS_BENCH_BIN" bench-overhead --agents "${AGENTS:-40}" --rounds "${ROUNDS:-6}" --repeats "${REPEATS:-2}" --serial-actions "${SERIAL:-40}"
