#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (simulated nodes and kubelets), each on a
# free port, and writes a kubeconfig. Everything runs from the version-keyed build of build.sh.
#
# Usage: up.sh STATE_DIR [--watch-pid PID [--remove-state]] [--audit]
#   (environment) MOM_METRICS_SERVER=1  also serve the resource metrics API: metrics-server
#                (built by build.sh on first use) scrapes kwok's simulated kubelet resource
#                metrics and is registered as the APIService v1beta1.metrics.k8s.io
#   STATE_DIR  where pki, data, logs, pids and the kubeconfig go (created; must not be running)
#   --watch-pid  tear everything down when process PID exits (used by the Rust test harness)
#   --remove-state  with --watch-pid: then also delete STATE_DIR (etcd data and logs, ~130 MB;
#                the harness asks for it unless MOM_KEEP_CLUSTER_STATE=1, so test runs do not
#                fill /tmp)
#   --audit      write an apiserver audit log (Metadata level, ServiceAccount users only) to
#                STATE_DIR/logs/audit.log, e.g. to list the permissions a component really uses
#
# On success prints "KUBECONFIG=<path>" as the last line and returns; the components keep
# running until `down.sh STATE_DIR`, or until the watched PID exits. On any failure it tears
# down what it started, prints the failing component's log tail and exits non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${1:?usage: up.sh STATE_DIR [--watch-pid PID]}
shift
watch_pid=""
audit=""
remove_state=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --watch-pid) watch_pid=${2:?--watch-pid needs a PID}; shift 2 ;;
    --audit) audit=1; shift ;;
    --remove-state) remove_state=1; shift ;;
    *) echo "up.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

metrics_server=${MOM_METRICS_SERVER:-}
bin=$("$here/build.sh")
cache=$(dirname "$bin")
mkdir -p "$state"
state=$(cd "$state" && pwd)
if [[ -f "$state/pids" ]] && "$here/down.sh" --check "$state"; then
  echo "up.sh: a control plane is already running from $state (run down.sh $state first)" >&2
  exit 1
fi
rm -rf "$state/etcd" "$state/logs" "$state/pids" "$state/pki"
mkdir -p "$state/logs" "$state/pki"
: > "$state/pids"

log() { echo "up.sh: $*" >&2; }
fail() {
  log "FAILED: $1"
  if [[ -n ${2:-} && -f "$state/logs/$2.log" ]]; then
    log "last lines of $2.log:"; tail -n 40 "$state/logs/$2.log" >&2
  fi
  "$here/down.sh" "$state" >/dev/null 2>&1 || true
  exit 1
}
trap 'fail "interrupted or errored at line $LINENO"' ERR INT TERM

free_port() { "$here/free-port.py"; }   # below the ephemeral range (see free-port.py)
start() { # name args...
  local name=$1; shift
  "$@" >"$state/logs/$name.log" 2>&1 &
  echo "$name $!" >> "$state/pids"
}

# --- credentials: a static admin token, a service-account signing key -----------------------
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin,system:masters" > "$state/pki/tokens.csv"
openssl genrsa -out "$state/pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$state/pki/sa.key" -pubout -out "$state/pki/sa.pub" 2>/dev/null

# --- aggregation layer: a front-proxy CA and the client certificate the apiserver proxies with to
# aggregated APIs (metrics-server trusts the CA through kube-system/extension-apiserver-authentication).
pki=$state/pki
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj /CN=front-proxy-ca \
  -keyout "$pki/front-proxy-ca.key" -out "$pki/front-proxy-ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=front-proxy-client \
  -keyout "$pki/front-proxy-client.key" -out "$pki/front-proxy-client.csr" 2>/dev/null
openssl x509 -req -in "$pki/front-proxy-client.csr" -CA "$pki/front-proxy-ca.crt" -CAkey "$pki/front-proxy-ca.key" \
  -CAcreateserial -days 3650 -out "$pki/front-proxy-client.crt" 2>/dev/null
# A client CA (no client certificates are issued: users authenticate with tokens); it only gives
# extension-apiserver-authentication the client-ca-file that aggregated servers expect.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj /CN=client-ca \
  -keyout "$pki/client-ca.key" -out "$pki/client-ca.crt" 2>/dev/null

read -r etcd_port etcd_peer api_port sched_port kcm_port kwok_port <<< "$("$here/free-port.py" 6 | tr '\n' ' ')"
echo "$api_port" > "$state/apiserver-port"
echo "$etcd_port" > "$state/etcd-port"

# --- etcd ---------------------------------------------------------------------------------------
start etcd "$bin/etcd" --name mom-test --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "mom-test=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --quota-backend-bytes 4294967296 \
  --log-level warn
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null || fail "etcd did not become healthy" etcd

# --- kube-apiserver -----------------------------------------------------------------------------
audit_flags=()
if [[ -n $audit ]]; then
  mkdir -p "$state/logs"
  cat > "$state/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
POLICY
  audit_flags=(--audit-policy-file "$state/audit-policy.yaml" --audit-log-path "$state/logs/audit.log"
    --audit-log-format json --audit-log-maxsize 200 --audit-log-maxbackup 2)
fi
start kube-apiserver "$bin/kube-apiserver" "${audit_flags[@]}" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$state/pki" --token-auth-file "$state/pki/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$state/pki/sa.pub" --service-account-signing-key-file "$state/pki/sa.key" \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range 10.96.0.0/16 --allow-privileged \
  --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
  --client-ca-file "$pki/client-ca.crt" --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
  --profiling=false --v 1

kubeconfig=$state/kubeconfig
cat > "$kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mom-local
  cluster:
    server: https://127.0.0.1:$api_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: mom-local
  context: {cluster: mom-local, user: admin, namespace: default}
current-context: mom-local
KC
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
ready=""
for _ in $(seq 1 300); do
  if kubectl get --raw /readyz >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[[ -n $ready ]] || fail "kube-apiserver did not become ready within 60 s" kube-apiserver

# --- kube-controller-manager, kube-scheduler ----------------------------------------------------
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
  --service-account-private-key-file "$state/pki/sa.key" --use-service-account-credentials=false \
  --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route' \
  --concurrent-gc-syncs 20 --v 1
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --v 1

# --- kwok: simulated kubelets for nodes annotated kwok.x-k8s.io/node=fake; it renews each node's
# Lease (as a kubelet does) so the node lifecycle controller keeps them Ready ------------------
# With the metrics API, kwok also serves the simulated kubelet resource metrics, and gives nodes
# the loopback address and its own port (status.daemonEndpoints) for metrics-server to scrape.
kwok_metrics=(--node-ip 10.1.0.1)
if [[ $metrics_server == 1 ]]; then
  kwok_metrics=(--config "$cache/kwok-metrics.yaml" --node-ip 127.0.0.1 --node-port "$kwok_port")
fi
# A real cluster's kubelets each renew their own Lease; kwok renews them all from a pool of
# workers (4 by default), so at thousands of nodes renewals queue behind one another and
# arrive late — the nodes look silent though nothing failed. More workers keep the simulated
# heartbeats as independent as real ones (the same renewals per second, less queueing). A
# configuration file gets none of kwok's defaults, so the other options carry kwok v0.8.0's.
cat > "$state/kwok-options.yaml" <<'YAML'
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  nodeLeaseParallelism: 64
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  podsOnNodeSyncParallelism: 1
  enableDebuggingHandlers: true
  enableContentionProfiling: false
  enableProfilingHandler: true
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
YAML
start kwok "$bin/kwok" --kubeconfig "$kubeconfig" --config "$cache/kwok-stages.yaml" "${kwok_metrics[@]}" \
  --config "$state/kwok-options.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --server-address "127.0.0.1:$kwok_port" --cidr 10.244.0.0/16 \
  --node-lease-duration-seconds 40

wait_healthy() { # name port
  for _ in $(seq 1 300); do
    curl -skf "https://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "$1 did not become healthy within 60 s" "$1"
}
wait_healthy kube-controller-manager "$kcm_port"
wait_healthy kube-scheduler "$sched_port"
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$kwok_port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$kwok_port/healthz" >/dev/null 2>&1 || fail "kwok did not become healthy within 30 s" kwok

# The default ServiceAccount appears once the controller-manager runs; pods need it.
for _ in $(seq 1 150); do
  kubectl get serviceaccount default -n default >/dev/null 2>&1 && break
  sleep 0.2
done

# --- metrics-server (MOM_METRICS_SERVER=1): a local process on its own port, registered as the
# APIService v1beta1.metrics.k8s.io through an ExternalName Service naming 127.0.0.1 (the
# aggregator dials ExternalName:port directly). It reads each node's
# metrics.k8s.io/resource-metrics-path annotation (kwok's /metrics/nodes/NAME/metrics/resource;
# `mom cluster nodes` sets it) and scrapes kwok over plain HTTP.
if [[ $metrics_server == 1 ]]; then
  ms_port=$(free_port)
  echo "$ms_port" > "$state/metrics-server-port"
  start metrics-server "$bin/metrics-server" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$ms_port" --cert-dir "$state/pki/metrics-server" \
    --kubelet-preferred-address-types InternalIP --kubelet-use-node-status-port \
    --deprecated-kubelet-completely-insecure --metric-resolution 10s --kubelet-request-timeout 5s
  kubectl apply -f - >/dev/null <<MS
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  type: ExternalName
  externalName: 127.0.0.1
  ports: [{name: https, port: $ms_port}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: $ms_port}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
MS
  ms_ok=""
  for _ in $(seq 1 300); do
    if [[ $(kubectl get apiservice v1beta1.metrics.k8s.io \
            -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null) == True ]]; then
      ms_ok=1; break
    fi
    sleep 0.2
  done
  [[ -n $ms_ok ]] || fail "the APIService v1beta1.metrics.k8s.io did not become Available within 60 s" metrics-server
fi

if [[ -n $watch_pid ]]; then
  # Watchdog: tear down when the owner dies, however it dies.
  after=""
  [[ -n $remove_state ]] && after="; rm -rf '$state'"
  nohup bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; '$here/down.sh' '$state'$after" \
    >"$state/logs/watchdog.log" 2>&1 &
  echo "watchdog $!" >> "$state/pids"
fi
trap - ERR INT TERM
log "control plane up: apiserver https://127.0.0.1:$api_port, logs in $state/logs"
echo "KUBECONFIG=$kubeconfig"
