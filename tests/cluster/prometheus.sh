#!/usr/bin/env bash
# Installs Debian's `prometheus` package for the end-to-end tests WITHOUT a root install:
# `apt-get download` the .deb into a version-keyed cache folder and unpack it there with
# `dpkg -x`. Prints the path of the prometheus binary on stdout. A second run finds it and only
# prints the path.
#
# Cache: ${MOM_CACHE_DIR:-$HOME/.cache/mom}/components/prometheus-<version>/
# The version is whatever the configured Debian suite offers (bookworm: 2.42.0+ds-5+deb12u1);
# set PROMETHEUS_DEB_VERSION to pin another.
set -euo pipefail
log() { echo "prometheus.sh: $*" >&2; }
components=${MOM_CACHE_DIR:-$HOME/.cache/mom}/components
mkdir -p "$components"

# Fast path: any unpacked version (the newest by name) when no version is pinned.
if [[ -z ${PROMETHEUS_DEB_VERSION:-} ]]; then
  for dir in $(ls -d "$components"/prometheus-*/ 2>/dev/null | sort -r); do
    if [[ -x "$dir/usr/bin/prometheus" ]]; then
      echo "${dir%/}/usr/bin/prometheus"
      exit 0
    fi
  done
fi

command -v apt-get >/dev/null || { log "apt-get is required (a Debian-based machine)"; exit 1; }
command -v dpkg >/dev/null || { log "dpkg is required"; exit 1; }
candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}'; }
version=${PROMETHEUS_DEB_VERSION:-$(candidate)}
if [[ -z $version || $version == "(none)" ]]; then
  # A fresh machine may have no package lists yet; refreshing them needs root.
  if [[ $(id -u) -eq 0 ]]; then
    log "no package list knows prometheus; running apt-get update"
    apt-get update -qq >&2
    version=${PROMETHEUS_DEB_VERSION:-$(candidate)}
  fi
fi
[[ -n $version && $version != "(none)" ]] || { log "Debian's package lists offer no prometheus package"; exit 1; }

dir=$components/prometheus-$version
if [[ ! -x "$dir/usr/bin/prometheus" ]]; then
  tmp=$(mktemp -d "$components/.prometheus-download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "downloading prometheus $version (about 19 MB, once)"
  if ! (cd "$tmp" && apt-get download "prometheus=$version" >&2); then
    # Stale package lists point at a file the mirror no longer has: refresh them (root) once.
    [[ $(id -u) -eq 0 ]] || { log "apt-get download failed (not root: cannot refresh the lists)"; exit 1; }
    log "apt-get download failed; refreshing the package lists and trying again"
    apt-get update -qq >&2
    version=${PROMETHEUS_DEB_VERSION:-$(candidate)}
    dir=$components/prometheus-$version
    (cd "$tmp" && apt-get download "prometheus=$version" >&2)
  fi
  deb=$(ls "$tmp"/prometheus_*.deb)
  mkdir -p "$tmp/root"
  dpkg -x "$deb" "$tmp/root"
  [[ -x "$tmp/root/usr/bin/prometheus" ]] || { log "the package holds no usr/bin/prometheus"; exit 1; }
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
fi
echo "$dir/usr/bin/prometheus"
