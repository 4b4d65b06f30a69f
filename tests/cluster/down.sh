#!/usr/bin/env bash
# Stops a control plane started by up.sh.
#   down.sh STATE_DIR          stop every component (TERM, then KILL after 5 s)
#   down.sh --check STATE_DIR  exit 0 if any component of STATE_DIR is still running
set -uo pipefail
check=""
if [[ ${1:-} == --check ]]; then check=1; shift; fi
state=${1:?usage: down.sh [--check] STATE_DIR}
pids_file=$state/pids
[[ -f $pids_file ]] || { [[ -n $check ]] && exit 1; exit 0; }
mapfile -t entries < "$pids_file"
pids=()
for e in "${entries[@]}"; do
  pid=${e##* }
  [[ $pid =~ ^[0-9]+$ ]] && pids+=("$pid")
done
if [[ -n $check ]]; then
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && exit 0; done
  exit 1
fi
# Stop in reverse start order, the watchdog (if any) last-started first.
for ((i=${#pids[@]}-1; i>=0; i--)); do
  p=${pids[$i]}
  [[ $p == "$$" || $p == "$PPID" ]] && continue
  kill -TERM "$p" 2>/dev/null || true
done
for _ in $(seq 1 50); do
  alive=""
  for p in "${pids[@]}"; do
    [[ $p == "$$" || $p == "$PPID" ]] && continue
    kill -0 "$p" 2>/dev/null && alive=1
  done
  [[ -z $alive ]] && break
  sleep 0.1
done
for p in "${pids[@]}"; do
  [[ $p == "$$" || $p == "$PPID" ]] && continue
  kill -KILL "$p" 2>/dev/null || true
done
rm -f "$pids_file"
echo "down.sh: stopped the control plane in $state" >&2
