# Sourced by the benchmark scripts: a fresh local control plane in a temp dir, MOM on it, and
# teardown on exit (trap). Needs MOM_BIN (a `mom` binary built with the operator feature).
# After `bench_up`: KUBECONFIG, KUBECTL, METRICS_URL, EXTENDER_URL, OPERATOR_PID, BENCH_STATE are set.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cluster=$root/tests/cluster

bench_up() {
  : "${MOM_BIN:?set MOM_BIN to a mom binary built with the operator feature}"
  BENCH_STATE=$(mktemp -d "${TMPDIR:-/tmp}/mom-bench.XXXXXX")
  trap 'bench_down' EXIT
  trap 'exit 130' INT TERM
  "$cluster/up.sh" "$BENCH_STATE" --watch-pid $$ >&2
  export KUBECONFIG=$BENCH_STATE/kubeconfig
  KUBECTL="$("$cluster/build.sh")/kubectl"
  export KUBECTL
  "$KUBECTL" apply -f "$root/crds/" >/dev/null
  local out
  # MOM_OPERATOR_FLAGS: extra `mom operator` flags (e.g. --checkpoint-every-receipts 0).
  # shellcheck disable=SC2086
  out=$("$cluster/start-mom.sh" "$BENCH_STATE" "$MOM_BIN" --watch-pid $$ -- ${MOM_OPERATOR_FLAGS:-})
  METRICS_URL=$(sed -n 's/^METRICS_URL=//p' <<<"$out")
  EXTENDER_URL=$(sed -n 's/^EXTENDER_URL=//p' <<<"$out")
  OPERATOR_PID=$(sed -n 's/^OPERATOR_PID=//p' <<<"$out")
  export METRICS_URL EXTENDER_URL OPERATOR_PID BENCH_STATE
}

bench_down() {
  if [[ -n ${BENCH_STATE:-} && -d $BENCH_STATE ]]; then
    if [[ -n ${BENCH_KEEP:-} ]]; then
      echo "bench: keeping $BENCH_STATE (logs in $BENCH_STATE/logs); stop with tests/cluster/down.sh $BENCH_STATE" >&2
    else
      "$cluster/down.sh" "$BENCH_STATE" >/dev/null 2>&1 || true
      rm -rf "$BENCH_STATE"
    fi
  fi
}

# The MomConfig `default` the benchmarks run with (as in tests/placement.rs: greedy forwarding).
bench_momconfig() {
  "$KUBECTL" apply -f - >/dev/null <<'YAML'
apiVersion: mom.hypersync.io/v1alpha1
kind: MomConfig
metadata: {name: default}
spec:
  objectives: {performance: 0.55, cost: 0.15, reliability: 0.2, sustainability: 0.1}
  geometry:
    curvature: 1.0
    dimension: 2
    routingAlgorithm: greedy_forwarding
    topologyKeys: [topology.kubernetes.io/region, topology.kubernetes.io/zone, kubernetes.io/hostname]
  verification: {level: none}
YAML
  sleep 1
}
