#!/usr/bin/env bash
# Stops or starts the kube-apiserver of a control plane started by up.sh, to open a watch gap
# under running clients (what an apiserver upgrade or crash does). etcd keeps running, so
# objects can be changed directly in etcd while the apiserver is away.
#
# Usage: restart-apiserver.sh stop STATE_DIR    stop it, remembering its command line
#        restart-apiserver.sh start STATE_DIR   start it again with the same command line (same
#                                               port and certificates) and wait until it is ready
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=${1:?usage: restart-apiserver.sh stop|start STATE_DIR}
state=${2:?usage: restart-apiserver.sh stop|start STATE_DIR}
state=$(cd "$state" && pwd)
pids=$state/pids
[[ -f $pids ]] || { echo "restart-apiserver.sh: no control plane in $state" >&2; exit 1; }

case $action in
  stop)
    pid=$(awk '$1 == "kube-apiserver" { print $2 }' "$pids" | tail -n 1)
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
      || { echo "restart-apiserver.sh: no running kube-apiserver in $state" >&2; exit 1; }
    # NUL-separated argv, replayed by `start`.
    cp "/proc/$pid/cmdline" "$state/apiserver.cmdline"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    grep -v "^kube-apiserver " "$pids" > "$pids.new" || true
    mv "$pids.new" "$pids"
    echo "restart-apiserver.sh: stopped kube-apiserver ($pid)" >&2
    ;;
  start)
    [[ -f $state/apiserver.cmdline ]] \
      || { echo "restart-apiserver.sh: run 'stop' first (no $state/apiserver.cmdline)" >&2; exit 1; }
    mapfile -d '' argv < "$state/apiserver.cmdline"
    "${argv[@]}" >>"$state/logs/kube-apiserver.log" 2>&1 &
    echo "kube-apiserver $!" >> "$pids"
    bin=$("$here/build.sh")
    for _ in $(seq 1 300); do
      if "$bin/kubectl" --kubeconfig "$state/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
        echo "restart-apiserver.sh: kube-apiserver ready again ($!)" >&2
        exit 0
      fi
      sleep 0.2
    done
    echo "restart-apiserver.sh: kube-apiserver did not become ready within 60 s" >&2
    tail -n 40 "$state/logs/kube-apiserver.log" >&2
    exit 1
    ;;
  *) echo "restart-apiserver.sh: unknown action $action (stop or start)" >&2; exit 2 ;;
esac
