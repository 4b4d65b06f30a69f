#!/usr/bin/env bash
# `make demo`: a local control plane with a multi-zone cluster of kwok nodes, the MOM CRDs and
# operator, the example objects applied; prints what happened and leaves it all running.
# The cluster serves the resource metrics API (metrics-server scraping kwok's simulated kubelet
# metrics: MOM_METRICS_SERVER=1 for up.sh), so the examples' cpu/memory targets work, and its
# nodes carry the regions, zones and nodes the examples name.
set -euo pipefail
export MOM_METRICS_SERVER=1
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

say "kwok nodes: 2 regions (eu-west-1, eu-central-1) x 3 zones x 2 nodes, plus node-flaky-7 in eu-west-1a"
# The examples' strategies name these: web-tier keeps away from node-flaky-7 (avoidNodes), so the
# demo has one, in the zone web-tier's target is drawn to.
"$mom" cluster nodes --regions 2 --zones-per-region 3 --nodes-per-rack 2 --region-names eu-west-1,eu-central-1 \
  | python3 -c '
import copy, json, sys
nodes = json.load(sys.stdin)
flaky = copy.deepcopy(next(n for n in nodes["items"]
                           if n["metadata"]["labels"]["topology.kubernetes.io/zone"] == "eu-west-1a"))
flaky["metadata"]["name"] = flaky["metadata"]["labels"]["kubernetes.io/hostname"] = "node-flaky-7"
flaky["metadata"]["annotations"]["metrics.k8s.io/resource-metrics-path"] = "/metrics/nodes/node-flaky-7/metrics/resource"
flaky["metadata"]["labels"]["topology.mom.hypersync.io/rack"] = "eu-west-1a-rack-1"
nodes["items"].append(flaky)
json.dump(nodes, sys.stdout)' | k apply --server-side -f - >/dev/null
# The data tier needs ssd nodes (data-tier: locality.dataNodes storage.example.com/ssd=true,
# mode required): the zones of eu-west-1 (data-tier's preferred region) for the active
# replicas, and eu-central-1a for the standbys (failover active_passive puts them in another
# region); eu-central-1b and -1c have none.
for z in eu-west-1a eu-west-1b eu-west-1c eu-central-1a; do
  k label nodes -l topology.kubernetes.io/zone=$z storage.example.com/ssd=true --overwrite >/dev/null
done
k get nodes -L topology.kubernetes.io/region,topology.kubernetes.io/zone,storage.example.com/ssd

say "resource metrics API (metrics-server $(k get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].reason}'), scraping kwok)"
k get apiservice v1beta1.metrics.k8s.io

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
  k apply -f "$root/manifests/examples/"
  say "waiting for the shop's replicas to be placed by mom-scheduler"
  want=$(k get geometricagents -n shop -o jsonpath='{range .items[*]}{.spec.replicas}{"\n"}{end}' | awk '{s += $1} END {print s + 0}')
  for _ in $(seq 1 90); do
    running=$(k get pods -n shop --no-headers 2>/dev/null | grep -c ' Running ' || true)
    [[ $running -ge $want ]] && break
    sleep 1
  done
  echo "$running of $want replicas running"

  say "waiting for the scaler to act on the metrics API (usage kwok reports for the pods)"
  # metrics-server needs two scrapes (10 s apart) for a cpu rate; the scaler then decides each
  # tick (15 s). Wait until every agent's ScalingReady is True and its replicas are all ready
  # (spares of a redundancy rule come on top), the metrics API reports every running pod, and
  # the scaler has changed some agent.
  settled=""
  for _ in $(seq 1 180); do
    states=$(k get geometricagents -n shop -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="ScalingReady")].status}{" "}{.spec.replicas}{" "}{.status.readyReplicas}{"\n"}{end}')
    running=$(k get pods -n shop --field-selector status.phase=Running --no-headers 2>/dev/null | wc -l)
    reported=$(k get --raw /apis/metrics.k8s.io/v1beta1/namespaces/shop/pods 2>/dev/null \
      | python3 -c 'import json, sys; print(len(json.load(sys.stdin).get("items", [])))' 2>/dev/null || echo 0)
    if [[ -n $states ]] && awk 'NF < 3 || $1 != "True" || $3 < $2 { bad = 1 } END { exit bad }' <<<"$states" \
       && [[ $reported -ge $running ]] \
       && k get events -n shop --field-selector reason=Scaled --no-headers 2>/dev/null | grep -q .; then
      settled=1; break
    fi
    sleep 1
  done
  [[ -n $settled ]] || echo "(the scaler has not settled yet; the tables below show where it is)"
  k top pods -n shop --no-headers 2>/dev/null | sort | head -20 | sed 's/^/  /' || true
  k get momconfigs,orchestrationstrategies -A
  k get geometricagents -n shop -o wide

  say "where each replica went"
  echo "Each agent's target is the weighted Fréchet mean of its peers' replicas in the Poincaré ball;"
  echo "mom-scheduler asked MOM's extender, which scored nodes by distance to that target (plus spread,"
  echo "cost, energy and load) and filtered out avoid-listed, isolated or full nodes."
  k get pods -n shop -o json > "$state/demo-pods.json"
  k get nodes -o json > "$state/demo-nodes.json"
  k get geometricagents -n shop -o json > "$state/demo-agents.json"
  k get orchestrationstrategies -n shop -o json > "$state/demo-strategies.json"
  k get --raw /apis/metrics.k8s.io/v1beta1/namespaces/shop/pods > "$state/demo-usage.json"
  k get events -n shop -o json > "$state/demo-events.json"
  python3 "$root/hack/demo-report.py" "$state" "$root/manifests/examples/30-app.yaml"

  say "warnings (events of type Warning in shop)"
  warnings=$(k get events -n shop --field-selector type=Warning --no-headers 2>/dev/null || true)
  if [[ -n $warnings ]]; then echo "$warnings"; else echo "none"; fi
fi

cat <<MSG

The cluster keeps running. Use it with:
  export KUBECONFIG=$state/kubeconfig
  export PATH=$bin:\$PATH        # kubectl v1.36.3 built from source
  kubectl get nodes,pods -A
Logs: $state/logs/   Stop everything: make down
MSG
