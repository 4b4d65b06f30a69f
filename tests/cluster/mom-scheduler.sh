#!/usr/bin/env bash
# Starts a second real kube-scheduler, `mom-scheduler`, wired to MOM's extender, in a control
# plane started by up.sh. Its pid joins STATE_DIR/pids so down.sh stops it.
#   mom-scheduler.sh STATE_DIR EXTENDER_URL
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${1:?usage: mom-scheduler.sh STATE_DIR EXTENDER_URL}
url=${2:?usage: mom-scheduler.sh STATE_DIR EXTENDER_URL}
bin=$("$here/build.sh")
kubeconfig=$state/kubeconfig
config=$state/mom-scheduler-config.yaml
{
  sed "s|EXTENDER_URL|$url|" "$root/manifests/scheduler/mom-scheduler-config.yaml"
  printf 'clientConnection:\n  kubeconfig: %s\n' "$kubeconfig"
} > "$config"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/kube-scheduler" --config "$config" --authentication-kubeconfig "$kubeconfig" \
  --authorization-kubeconfig "$kubeconfig" --bind-address 127.0.0.1 --secure-port "$port" --v 1 \
  >"$state/logs/mom-scheduler.log" 2>&1 &
pid=$!
echo "mom-scheduler $pid" >> "$state/pids"
for _ in $(seq 1 300); do
  curl -skf "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { echo "$pid"; exit 0; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
echo "mom-scheduler.sh: mom-scheduler did not become healthy; last log lines:" >&2
tail -n 30 "$state/logs/mom-scheduler.log" >&2
exit 1
