#!/usr/bin/env bash
# Prints manifests/install.yaml: the Helm chart rendered with its default values (except
# extenderTLS.generate=false) for the
# namespace mom-system, CRDs included, preceded by the Namespace. `make manifests` runs it.
#   render-install.sh HELM_BINARY
set -euo pipefail
helm=${1:?usage: render-install.sh HELM_BINARY}
root=$(cd "$(dirname "$0")/.." && pwd)
cat <<'HEADER'
# MOM, plain manifests: generated from charts/mom by `make manifests` (helm template, default
# values, namespace mom-system). Do not edit; change the chart and regenerate.
#   kubectl apply --server-side -f manifests/install.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: mom-system
  labels:
    app.kubernetes.io/part-of: mom
HEADER
# `helm template` cannot keep generated certificates stable, so the rendered manifests expect
# the extender's Secrets to exist (see the README: "Installing without Helm").
"$helm" template mom "$root/charts/mom" --namespace mom-system --include-crds --set extenderTLS.generate=false
