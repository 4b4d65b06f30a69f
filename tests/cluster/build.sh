#!/usr/bin/env bash
# Builds the real control-plane components from their official Go modules, once per version,
# into a version-keyed folder, and prints that folder's bin/ path on stdout.
#
#   kube     multi-call: kube-apiserver, kube-scheduler, kube-controller-manager, kubectl
#   etcd     go.etcd.io/etcd/server/v3
#   kwok     sigs.k8s.io/kwok (plus its Stage documents, which kwok needs at run time)
#   helm     helm.sh/helm/v3
#   metrics-server  sigs.k8s.io/metrics-server, only when MOM_METRICS_SERVER=1 (the demo and the
#            resource-metrics test); its own cache folder, so it never rebuilds the others
#   prometheus  Debian's package, unpacked by prometheus.sh (its own cache folder)
#
# Cache: ${MOM_CACHE_DIR:-$HOME/.cache/mom}/components/<versions>-<go version>-<go.sum hash>/
# A second run finds every binary there and does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

command -v go >/dev/null || { echo "build.sh: Go is required (go 1.26+ on PATH)" >&2; exit 1; }
go_version=$(go env GOVERSION)
sum_hash=$(cat "$here"/{kube,etcd,kwok,helm}/go.{mod,sum} | sha256sum | cut -c1-12)
key="kube-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_${go_version}_${sum_hash}"
cache=${MOM_CACHE_DIR:-$HOME/.cache/mom}/components/$key
bin=$cache/bin
mkdir -p "$bin"

log() { echo "build.sh: $*" >&2; }
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local

build() { # name module-dir package ldflags
  local name=$1 dir=$2 pkg=$3 ldflags=$4
  if [[ -x "$bin/$name" ]]; then return 0; fi
  log "building $name ($pkg) — first time for this version, this takes a while"
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  log "built $name in $((SECONDS - start)) s"
}

kube_minor=${KUBE_VERSION#v1.}; kube_minor=${kube_minor%%.*}
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $p.gitVersion=${KUBE_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${kube_minor}"
  kube_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

build kube kube . "$kube_ldflags"
build etcd etcd . "-s -w"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
build helm helm helm.sh/helm/v3/cmd/helm "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"

for c in kube-apiserver kube-scheduler kube-controller-manager kubectl; do
  ln -sf kube "$bin/$c"
done

# kwok simulates nothing without Stage documents; they ship inside its module.
if [[ ! -s "$cache/kwok-stages.yaml" ]]; then
  moddir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"; cat "$moddir/kustomize/stage/$f"
    done
  } > "$cache/kwok-stages.yaml.tmp"
  mv "$cache/kwok-stages.yaml.tmp" "$cache/kwok-stages.yaml"
fi

# kwok's simulated kubelet resource metrics (its Metric for /metrics/nodes/{nodeName}/metrics/resource)
# and pod usage taken from the annotations kwok.x-k8s.io/usage-cpu and -memory (ClusterResourceUsage;
# 1m and 1Mi without them); up.sh gives them to kwok when it starts metrics-server.
if [[ ! -s "$cache/kwok-metrics.yaml" ]]; then
  moddir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  {
    for f in metrics/resource/metrics-resource.yaml metrics/usage/usage-from-annotation.yaml; do
      echo "---"; cat "$moddir/kustomize/$f"
    done
  } > "$cache/kwok-metrics.yaml.tmp"
  mv "$cache/kwok-metrics.yaml.tmp" "$cache/kwok-metrics.yaml"
fi

# metrics-server (the resource metrics API), only when asked: in its own version-keyed folder,
# linked into bin/.
if [[ ${MOM_METRICS_SERVER:-} == 1 ]]; then
  ms_hash=$(cat "$here"/metrics-server/go.{mod,sum} | sha256sum | cut -c1-12)
  ms_bin=${MOM_CACHE_DIR:-$HOME/.cache/mom}/components/metrics-server-${METRICS_SERVER_VERSION}_${go_version}_${ms_hash}/bin
  mkdir -p "$ms_bin"
  bin=$ms_bin build metrics-server metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server \
    "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=${METRICS_SERVER_VERSION}"
  ln -sf "$ms_bin/metrics-server" "$bin/metrics-server"
fi

# Prometheus for the scaling end-to-end tests: Debian's package, unpacked without root install.
"$here/prometheus.sh" >&2

echo "$bin"
