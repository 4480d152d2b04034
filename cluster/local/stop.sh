#!/usr/bin/env bash
# Stop what cluster/local/start.sh started (same AUDIOFEAT_CLUSTER_DIR): workers first, then the
# scheduler; SIGTERM, then SIGKILL (with their child processes) after AUDIOFEAT_STOP_TIMEOUT s.
set -uo pipefail

DIR="${AUDIOFEAT_CLUSTER_DIR:-${XDG_RUNTIME_DIR:-/tmp}/audiofeat-cluster-${USER:-$(id -un)}}"
WAIT_S="${AUDIOFEAT_STOP_TIMEOUT:-20}"

if [ ! -s "$DIR/pids" ]; then
  echo "stop.sh: nothing to stop in $DIR"
  exit 0
fi
mapfile -t PIDS < <(tac "$DIR/pids")   # workers first, the scheduler last

children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }

ALL=()
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || continue
  ALL+=("$pid")
  for c in $(children "$pid"); do ALL+=("$c"); for g in $(children "$c"); do ALL+=("$g"); done; done
  kill -TERM "$pid" 2>/dev/null || true
done

for _ in $(seq 1 $((WAIT_S * 5))); do
  alive=0
  for pid in "${ALL[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.2
done
for pid in "${ALL[@]}"; do
  if kill -0 "$pid" 2>/dev/null; then
    echo "stop.sh: pid $pid did not stop in ${WAIT_S}s: killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
rm -f "$DIR/pids" "$DIR/scheduler.json" "$DIR/address"
echo "stop.sh: stopped ${#PIDS[@]} process(es) from $DIR"
