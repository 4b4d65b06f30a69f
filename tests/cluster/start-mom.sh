#!/usr/bin/env bash
# Starts MOM against a control plane from up.sh: `mom operator` (extender + controllers) on free
# loopback ports, then the `mom-scheduler` kube-scheduler wired to its extender.
#   start-mom.sh STATE_DIR MOM_BINARY [--watch-pid PID] [--tls-dir DIR | --plain-http] [-- extra operator flags]
# By default the extender runs with mutual TLS, as the chart does: extender-certs.sh issues
# STATE_DIR/extender-tls once (serving certificate, client CA, the scheduler's client
# certificate); the extender serves HTTPS and answers its verbs only to that client certificate.
# --tls-dir DIR: use DIR instead; it holds tls.crt, tls.key and ca.crt (the layout of a
# cert-manager Secret), and optionally client-ca.crt, client.crt and client.key (mutual TLS).
# --plain-http: no TLS and no caller authentication (the operator warns).
# MOM_OPERATOR_KUBECONFIG: credentials of the operator (default: the admin kubeconfig of
# STATE_DIR), e.g. a mom-operator ServiceAccount token, as `make demo` does.
# Prints OPERATOR_PID=, METRICS_URL=, EXTENDER_URL= and EXTENDER_TLS_DIR= lines. Both processes join
# STATE_DIR/pids (down.sh stops them); with --watch-pid they also stop when PID exits.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${1:?usage: start-mom.sh STATE_DIR MOM_BINARY [--watch-pid PID] [-- flags]}
mom=${2:?usage: start-mom.sh STATE_DIR MOM_BINARY [--watch-pid PID] [-- flags]}
shift 2
watch_pid=""
tls_dir=""
plain=0
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --watch-pid) watch_pid=$2; shift 2 ;;
    --tls-dir) tls_dir=$2; shift 2 ;;
    --plain-http) plain=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "start-mom.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=$("$here/build.sh")
export KUBECONFIG=$state/kubeconfig
"$bin/kubectl" create namespace mom-system --dry-run=client -o yaml | "$bin/kubectl" apply -f - >/dev/null
free_port() { "$here/free-port.py"; }   # below the ephemeral range (see free-port.py)
metrics_port=$(free_port); extender_port=$(free_port)
mkdir -p "$state/logs"
scheme=http
curl_tls=()
if [[ -z $tls_dir && $plain == 0 ]]; then
  tls_dir=$state/extender-tls
  "$here/extender-certs.sh" "$tls_dir"
fi
client=()
if [[ -n $tls_dir ]]; then
  for f in tls.crt tls.key ca.crt; do
    [[ -f $tls_dir/$f ]] || { echo "start-mom.sh: --tls-dir $tls_dir has no $f" >&2; exit 2; }
  done
  scheme=https
  curl_tls=(--cacert "$tls_dir/ca.crt")
  extra=(--extender-tls-cert "$tls_dir/tls.crt" --extender-tls-key "$tls_dir/tls.key" "${extra[@]}")
  if [[ -f $tls_dir/client-ca.crt ]]; then
    extra=(--extender-client-ca "$tls_dir/client-ca.crt" "${extra[@]}")
    client=("$tls_dir/client.crt" "$tls_dir/client.key")
  fi
fi
# The operator binds only pods of the scheduler profile it runs beside.
if [[ -n ${MOM_SCHEDULER_NAME:-} ]]; then
  extra=(--scheduler-name "$MOM_SCHEDULER_NAME" "${extra[@]}")
fi
KUBECONFIG=${MOM_OPERATOR_KUBECONFIG:-$KUBECONFIG} "$mom" operator --namespace mom-system --metrics-addr "127.0.0.1:$metrics_port" \
  --extender-addr "127.0.0.1:$extender_port" "${extra[@]}" >>"$state/logs/operator.log" 2>&1 &
op=$!
echo "operator $op" >> "$state/pids"
for _ in $(seq 1 300); do
  curl -sf "${curl_tls[@]}" "$scheme://127.0.0.1:$extender_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$op" 2>/dev/null || { echo "start-mom.sh: the operator exited; log:" >&2; tail -n 30 "$state/logs/operator.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "${curl_tls[@]}" "$scheme://127.0.0.1:$extender_port/healthz" >/dev/null 2>&1 || { echo "start-mom.sh: extender not up" >&2; exit 1; }
sched=$("$here/mom-scheduler.sh" "$state" "$scheme://127.0.0.1:$extender_port" ${tls_dir:+"$tls_dir/ca.crt"} "${client[@]}")
if [[ -n $watch_pid ]]; then
  nohup bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; kill $op $sched 2>/dev/null" >/dev/null 2>&1 &
fi
echo "OPERATOR_PID=$op"
echo "SCHEDULER_PID=$sched"
echo "METRICS_URL=http://127.0.0.1:$metrics_port"
echo "EXTENDER_URL=$scheme://127.0.0.1:$extender_port"
echo "EXTENDER_TLS_DIR=$tls_dir"
