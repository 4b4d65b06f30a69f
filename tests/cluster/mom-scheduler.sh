#!/usr/bin/env bash
# Starts a second real kube-scheduler, `mom-scheduler`, wired to MOM's extender, in a control
# plane started by up.sh. Its pid joins STATE_DIR/pids so down.sh stops it.
#   mom-scheduler.sh [--watch-pid PID] STATE_DIR EXTENDER_URL [CA_FILE [CLIENT_CERT CLIENT_KEY]]
# With --watch-pid the scheduler also stops when PID exits (a test that fails before it stops
# the scheduler itself must not leave it running).
# With an https:// EXTENDER_URL, CA_FILE is the CA that signed the extender's certificate
# (the scheduler then verifies it: `enableHTTPS` plus `tlsConfig.caFile`); CLIENT_CERT and
# CLIENT_KEY are the scheduler's client certificate for mutual TLS (`tlsConfig.certFile`,
# `keyFile`).
# MOM_SCHEDULER_NAME (default mom-scheduler) names the scheduler profile, so a test can run a
# second one beside it. MOM_SCHEDULER_PERCENTAGE_OF_NODES_TO_SCORE (unset: kube-scheduler's
# adaptive default) sets `percentageOfNodesToScore`, so a benchmark can offer the extender
# every feasible node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
watch_pid=""
if [[ ${1:-} == --watch-pid ]]; then
  watch_pid=${2:?--watch-pid needs a PID}; shift 2
fi
state=${1:?usage: mom-scheduler.sh STATE_DIR EXTENDER_URL}
url=${2:?usage: mom-scheduler.sh STATE_DIR EXTENDER_URL [CA_FILE]}
ca=${3:-}
client_cert=${4:-}
client_key=${5:-}
name=${MOM_SCHEDULER_NAME:-mom-scheduler}
if [[ $url == https://* && -z $ca ]]; then
  echo "mom-scheduler.sh: an https extender URL needs CA_FILE" >&2; exit 2
fi
bin=$("$here/build.sh")
kubeconfig=$state/kubeconfig
config=$state/$name-config.yaml
log=$state/logs/$name.log
mkdir -p "$state/logs"
{
  sed -e "s|EXTENDER_URL|$url|" -e "s|schedulerName: mom-scheduler|schedulerName: $name|" \
    "$root/manifests/scheduler/mom-scheduler-config.yaml"
  if [[ -n $ca ]]; then
    # Appended to the one extender entry (the last list item of the file).
    printf '    enableHTTPS: true\n    tlsConfig:\n      caFile: %s\n' "$ca"
    if [[ -n $client_cert ]]; then
      printf '      certFile: %s\n      keyFile: %s\n' "$client_cert" "$client_key"
    fi
  fi
  if [[ -n ${MOM_SCHEDULER_PERCENTAGE_OF_NODES_TO_SCORE:-} ]]; then
    printf 'percentageOfNodesToScore: %s\n' "$MOM_SCHEDULER_PERCENTAGE_OF_NODES_TO_SCORE"
  fi
  printf 'clientConnection:\n  kubeconfig: %s\n' "$kubeconfig"
} > "$config"
port=$("$here/free-port.py")
"$bin/kube-scheduler" --config "$config" --authentication-kubeconfig "$kubeconfig" \
  --authorization-kubeconfig "$kubeconfig" --bind-address 127.0.0.1 --secure-port "$port" --v 1 \
  >"$log" 2>&1 &
pid=$!
echo "$name $pid" >> "$state/pids"
for _ in $(seq 1 300); do
  if curl -skf "https://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    if [[ -n $watch_pid ]]; then
      nohup bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; kill $pid 2>/dev/null" >/dev/null 2>&1 &
    fi
    echo "$pid"; exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
echo "mom-scheduler.sh: $name did not become healthy; last log lines:" >&2
tail -n 30 "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
