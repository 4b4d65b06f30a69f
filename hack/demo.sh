#!/usr/bin/env bash
# `make demo`: a local control plane with a multi-zone cluster of kwok nodes, the MOM CRDs and
# operator, the example objects applied; prints what happened and leaves it all running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${1:-$root/.cluster}
target=${CARGO_TARGET_DIR:-$root/target}
mom=$target/debug/mom
[[ -x $mom ]] || { echo "demo: $mom is missing; run 'make build' first" >&2; exit 1; }

if [[ -f $state/pids ]] && "$root/tests/cluster/down.sh" --check "$state"; then
  echo "demo: a cluster is already running from $state; 'make down' first" >&2
  exit 1
fi
"$root/tests/cluster/up.sh" "$state" >/dev/null
bin=$("$root/tests/cluster/build.sh")
export KUBECONFIG=$state/kubeconfig
k() { "$bin/kubectl" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "kwok nodes: 2 regions x 3 zones x 2 nodes"
"$mom" cluster nodes --regions 2 --zones-per-region 3 --nodes-per-rack 2 | k apply --server-side -f - >/dev/null
k get nodes -L topology.kubernetes.io/region,topology.kubernetes.io/zone,topology.mom.hypersync.io/rack

say "CRDs"
if compgen -G "$root/crds/*.yaml" >/dev/null; then
  k apply --server-side -f "$root/crds/" >/dev/null
  k wait --for condition=Established crd -l app.kubernetes.io/part-of=mom --timeout 60s >/dev/null 2>&1 || true
  k get crd | grep -E 'NAME|mom.hypersync.io' || true
else
  echo "(no CRDs generated yet)"
fi

say "RBAC and admission policies (manifests/install.yaml without its workloads)"
# The operator runs here as a process, not a Deployment, but with the mom-operator
# ServiceAccount's rights, so the chart's admission policies (only the operator may create,
# update or delete Receipts) hold in the demo as in a real install.
python3 - "$root/manifests/install.yaml" > "$state/install-rbac.yaml" <<'PY'
import re, sys
keep = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
docs = re.split(r"^---\s*$", open(sys.argv[1]).read(), flags=re.M)
kind = lambda d: (re.search(r"^kind:\s*(\S+)", d, re.M) or [None, None])[1]
print("\n---\n".join(d.strip("\n") for d in docs if kind(d) in keep))
PY
k apply -f "$state/install-rbac.yaml" >/dev/null
k get validatingadmissionpolicies -o custom-columns='POLICY:.metadata.name' --no-headers
token=$(k create token mom-operator -n mom-system --duration 24h)
server=$(k config view --raw -o jsonpath='{.clusters[0].cluster.server}')
cat > "$state/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mom-local
  cluster: {server: "$server", insecure-skip-tls-verify: true}
users:
- name: mom-operator
  user: {token: "$token"}
contexts:
- name: mom-operator
  context: {cluster: mom-local, user: mom-operator, namespace: mom-system}
current-context: mom-operator
KC
chmod 600 "$state/operator.kubeconfig"

say "operator (as system:serviceaccount:mom-system:mom-operator) and mom-scheduler"
eval "$(MOM_OPERATOR_KUBECONFIG=$state/operator.kubeconfig "$root/tests/cluster/start-mom.sh" "$state" "$mom" | grep -E '^[A-Z_]+=')"
for _ in $(seq 1 100); do
  holder=$(k get lease -n mom-system mom-operator-leader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  [[ -n $holder ]] && break
  sleep 0.2
done
echo "leader: ${holder:-<none yet>}    metrics: $METRICS_URL/metrics    extender: $EXTENDER_URL"
echo "web view (read-only, live): open $METRICS_URL/ui/ in a browser"
echo "  (in-cluster install: kubectl -n mom-system port-forward svc/mom-metrics 8080:8080, then http://127.0.0.1:8080/ui/)"

if compgen -G "$root/manifests/examples/*.yaml" >/dev/null && compgen -G "$root/crds/*.yaml" >/dev/null; then
  say "example objects (manifests/examples)"
  # The shop's data-tier strategy requires nodes labelled storage.example.com/ssd=true
  # (spec.placement.locality, mode required): the data lives on region-0's nodes.
  k label nodes -l topology.kubernetes.io/region=region-0 storage.example.com/ssd=true --overwrite >/dev/null
  k apply -f "$root/manifests/examples/" || true
  say "waiting for the shop's replicas to be placed by mom-scheduler"
  want=$(k get geometricagents -n shop -o jsonpath='{range .items[*]}{.spec.replicas}{"\n"}{end}' | awk '{s += $1} END {print s + 0}')
  for _ in $(seq 1 90); do
    running=$(k get pods -n shop --no-headers 2>/dev/null | grep -c ' Running ' || true)
    [[ $running -ge $want ]] && break
    sleep 1
  done
  echo "$running of $want replicas running"
  k get momconfigs,orchestrationstrategies -A
  k get geometricagents -n shop -o custom-columns='AGENT:.metadata.name,REPLICAS:.spec.replicas,READY:.status.readyReplicas,STRATEGY:.status.strategy,PEERS:.spec.peers[*].agent,WEIGHTS:.spec.peers[*].weight'

  say "where each replica went, and why"
  echo "Each agent's target is the weighted Fréchet mean of its peers' replicas in the Poincaré ball;"
  echo "mom-scheduler asked MOM's extender, which scored nodes by distance to that target (plus spread,"
  echo "cost, energy and load) and filtered out avoid-listed, isolated or full nodes."
  zones=$(k get nodes -o custom-columns='N:.metadata.name,Z:.metadata.labels.topology\.kubernetes\.io/zone' --no-headers)
  k get pods -n shop -o custom-columns='POD:.metadata.name,AGENT:.metadata.labels.mom\.hypersync\.io/agent,NODE:.spec.nodeName,PHASE:.status.phase' --no-headers \
    | sort -k2 | awk -v zones="$zones" 'BEGIN { n = split(zones, z, "\n"); for (i = 1; i <= n; i++) { split(z[i], f, " "); zone[f[1]] = f[2] }
        printf "%-22s %-10s %-14s %-12s %s\n", "POD", "AGENT", "NODE", "ZONE", "PHASE" }
        { printf "%-22s %-10s %-14s %-12s %s\n", $1, $2, $3, zone[$3], $4 }'
  say "agent positions in the ball (status.position)"
  k get geometricagents -n shop -o custom-columns='AGENT:.metadata.name,POSITION:.status.position.coordinates,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason'
  say "events"
  k get events -n shop --field-selector involvedObject.kind=GeometricAgent --sort-by=.lastTimestamp 2>/dev/null | tail -8 || true
fi

cat <<MSG

The cluster keeps running. Use it with:
  export KUBECONFIG=$state/kubeconfig
  export PATH=$bin:\$PATH        # kubectl v1.36.3 built from source
  kubectl get nodes,pods -A
Logs: $state/logs/   Stop everything: make down
MSG
