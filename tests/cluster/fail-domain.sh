#!/usr/bin/env bash
# Makes a failure domain of a control plane started by up.sh go dark as a real outage does, or
# brings it back. The nodes of the domain lose their (simulated) kubelets: their node Leases stop
# being renewed, so the node lifecycle controller marks them Unknown/NotReady and taints them,
# and their pods are no longer updated (a deleted pod stays Terminating: nobody confirms it).
# The other nodes are not touched and the nodes stay in the API, as in a zone outage.
#
# Usage: fail-domain.sh STATE_DIR --zone ZONE | --region REGION | --label KEY=VALUE
#        fail-domain.sh STATE_DIR --restore [--zone ZONE | --region REGION | --label KEY=VALUE]
#   --restore alone brings every failed domain back; with a domain, only that one.
# Prints "failed_at_ms=<unix ms>" (or "restored_at_ms=") when the kubelets stopped (started).
#
# How: one kwok process simulates every kubelet, and a kwok keeps renewing the Lease of any node
# it once managed, even after the node stops matching its selector; so the kwok is restarted
# with the same command line plus a label selector that leaves the failed domains out
# (`KEY notin (V1,V2)`, one term per label key, ANDed with its annotation selector). The other
# nodes' kubelets pause for the restart (about a second), far inside the 40 s Lease.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: fail-domain.sh STATE_DIR (--zone Z | --region R | --label K=V | --restore [domain])"
state=${1:?$usage}
shift
state=$(cd "$state" && pwd)
pids=$state/pids
[[ -f $pids ]] || { echo "fail-domain.sh: no control plane in $state" >&2; exit 1; }
restore=""
domain=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --zone) domain="topology.kubernetes.io/zone=${2:?--zone needs a zone}"; shift 2 ;;
    --region) domain="topology.kubernetes.io/region=${2:?--region needs a region}"; shift 2 ;;
    --label) domain=${2:?--label needs KEY=VALUE}; shift 2 ;;
    --restore) restore=1; shift ;;
    *) echo "fail-domain.sh: unknown argument $1; $usage" >&2; exit 2 ;;
  esac
done
[[ -n $domain || -n $restore ]] || { echo "fail-domain.sh: name a domain; $usage" >&2; exit 2; }
if [[ -n $domain && ! $domain =~ ^[A-Za-z0-9./_-]+=[A-Za-z0-9._-]+$ ]]; then
  echo "fail-domain.sh: $domain is not a KEY=VALUE label" >&2; exit 2
fi

pid=$(awk '$1 == "kwok" { print $2 }' "$pids" | tail -n 1)
[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
  || { echo "fail-domain.sh: no running kwok in $state" >&2; exit 1; }
# The command line up.sh started kwok with (NUL-separated), kept from the first call on.
[[ -f $state/kwok.cmdline ]] || cp "/proc/$pid/cmdline" "$state/kwok.cmdline"
failed=$state/failed-domains
touch "$failed"
if [[ -n $restore ]]; then
  if [[ -n $domain ]]; then
    grep -vxF "$domain" "$failed" > "$failed.new" || true
    mv "$failed.new" "$failed"
  else
    : > "$failed"
  fi
else
  grep -qxF "$domain" "$failed" || echo "$domain" >> "$failed"
fi

# One `KEY notin (V1,V2)` term per label key of the failed domains.
selector=$(sort -u "$failed" | awk -F= '
  { if ($1 in vals) { vals[$1] = vals[$1] "," $2 } else { vals[$1] = $2 } }
  END { n = 0; for (k in vals) { printf "%s%s notin (%s)", (n++ ? "," : ""), k, vals[k] } }')

mapfile -d '' -t argv < "$state/kwok.cmdline"
if [[ -n $selector ]]; then argv+=(--manage-nodes-with-label-selector "$selector"); fi

kubectl() { "$(dirname "${argv[0]}")/kubectl" --kubeconfig "$state/kubeconfig" "$@"; }
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null || true
stamp=$(date +%s%3N)
# A kwok renews only Leases it holds (its identity is new on each start) and takes over another
# holder's Lease only once it expires, 40 s on: the Leases of the nodes the new kwok manages are
# removed so it creates them at once. The failed domains' Leases stay, going stale.
mapfile -t kept < <(kubectl get nodes ${selector:+-l "$selector"} -o \
  jsonpath='{range .items[?(@.metadata.annotations.kwok\.x-k8s\.io/node=="fake")]}{.metadata.name}{"\n"}{end}')
if [[ ${#kept[@]} -gt 0 ]]; then
  kubectl delete lease -n kube-node-lease --ignore-not-found --wait=false "${kept[@]}" >/dev/null
fi
"${argv[@]}" >>"$state/logs/kwok.log" 2>&1 &
new=$!
grep -v "^kwok " "$pids" > "$pids.new" || true
echo "kwok $new" >> "$pids.new"
mv "$pids.new" "$pids"
port=""
for ((i = 0; i < ${#argv[@]}; i++)); do
  [[ ${argv[$i]} == --server-address ]] && port=${argv[$((i + 1))]##*:}
done
for _ in $(seq 1 150); do
  kill -0 "$new" 2>/dev/null || { tail -n 20 "$state/logs/kwok.log" >&2; echo "fail-domain.sh: kwok exited" >&2; exit 1; }
  [[ -z $port ]] && break
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "fail-domain.sh: kwok restarted ($new), failed domains: ${selector:-none}" >&2
if [[ -n $restore ]]; then echo "restored_at_ms=$stamp"; else echo "failed_at_ms=$stamp"; fi
