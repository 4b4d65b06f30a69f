#!/usr/bin/env bash
# Runs a command against a fresh local control plane, then tears the control plane down
# (also on failure or Ctrl-C). The command sees MOM_TEST_KUBECONFIG and KUBECONFIG.
#   with-cluster.sh cargo test --tests
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=$(mktemp -d "${TMPDIR:-/tmp}/mom-cluster.XXXXXX")
# The state (etcd data, logs) is deleted afterwards unless MOM_KEEP_CLUSTER_STATE=1.
cleanup() {
  "$here/down.sh" "$state" || true
  if [[ ${MOM_KEEP_CLUSTER_STATE:-} == 1 ]]; then echo "with-cluster.sh: state kept in $state" >&2; else rm -rf "$state"; fi
}
trap cleanup EXIT
"$here/up.sh" "$state" --watch-pid $$
export MOM_TEST_KUBECONFIG=$state/kubeconfig KUBECONFIG=$state/kubeconfig
"$@"
