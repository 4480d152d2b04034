#!/usr/bin/env bash
# Start a Dask scheduler and N worker processes on this machine, for `audiofeat ... --scheduler`.
#
#   cluster/local/start.sh [N_WORKERS]      # default: one worker per CPU core
#   audiofeat extract job.yaml --scheduler "$(cat "$AUDIOFEAT_CLUSTER_DIR/address")"
#   cluster/local/stop.sh
#
# Everything listens on 127.0.0.1 (scheduler, workers, nannies, dashboards) unless
# AUDIOFEAT_HOST says otherwise. Each worker runs one thread and one BLAS/OpenMP thread.
# GPU: when nvidia-smi lists a GPU, one GPU worker per GPU is added (`dask cuda worker` when
# dask-cuda is installed, else a plain worker), each offering the resource GPU=1 that
# `compute.device: cuda` tasks ask for. AUDIOFEAT_GPU=0 skips them.
#
# Environment (all optional):
#   AUDIOFEAT_CLUSTER_DIR  state folder: scheduler.json, address, pids, logs
#                          (default ${XDG_RUNTIME_DIR:-/tmp}/audiofeat-cluster-${USER:-$(id -un)})
#   AUDIOFEAT_HOST         bind address (default 127.0.0.1)
#   AUDIOFEAT_PORT         scheduler port (default 0: a free port)
#   AUDIOFEAT_DASHBOARD    dashboard host:port (default 127.0.0.1:0; "none" to disable)
#   AUDIOFEAT_TLS_CA / AUDIOFEAT_TLS_CERT / AUDIOFEAT_TLS_KEY   TLS for every connection
#   PYTHON                 python with audiofeat installed (default: python3)
# Prints the scheduler address as the last line of stdout.
set -euo pipefail

N="${1:-$(nproc)}"
DIR="${AUDIOFEAT_CLUSTER_DIR:-${XDG_RUNTIME_DIR:-/tmp}/audiofeat-cluster-${USER:-$(id -un)}}"
HOST="${AUDIOFEAT_HOST:-127.0.0.1}"
PORT="${AUDIOFEAT_PORT:-0}"
DASHBOARD="${AUDIOFEAT_DASHBOARD:-127.0.0.1:0}"
PYTHON="${PYTHON:-python3}"
WAIT_S="${AUDIOFEAT_START_TIMEOUT:-90}"

case "$N" in ''|*[!0-9]*) echo "start.sh: N_WORKERS must be a number, got '$N'" >&2; exit 2 ;; esac
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export DASK_DISTRIBUTED__LOGGING__DISTRIBUTED="${DASK_DISTRIBUTED__LOGGING__DISTRIBUTED:-warning}"

mkdir -p "$DIR"
chmod 700 "$DIR"
if [ -s "$DIR/pids" ]; then
  while read -r pid; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "start.sh: a cluster from $DIR is running (pid $pid); run cluster/local/stop.sh first" >&2
      exit 2
    fi
  done < "$DIR/pids"
fi
rm -f "$DIR/pids" "$DIR/scheduler.json" "$DIR/address"

TLS=()
PROTO=""
if [ -n "${AUDIOFEAT_TLS_CA:-}${AUDIOFEAT_TLS_CERT:-}${AUDIOFEAT_TLS_KEY:-}" ]; then
  TLS=(--tls-ca-file "$AUDIOFEAT_TLS_CA" --tls-cert "$AUDIOFEAT_TLS_CERT" --tls-key "$AUDIOFEAT_TLS_KEY")
  PROTO="tls://"
fi
if [ "$DASHBOARD" = "none" ]; then SDASH=(--no-dashboard); WDASH=(--no-dashboard)
else SDASH=(--dashboard-address "$DASHBOARD"); WDASH=(--dashboard-address "$HOST:0"); fi

launch() {  # launch NAME CMD...: in the background, detached from this shell, pid recorded
  local name="$1"; shift
  nohup "$@" > "$DIR/$name.log" 2>&1 < /dev/null &
  echo $! >> "$DIR/pids"
}

fail() {
  echo "start.sh: $1 (logs in $DIR)" >&2
  tail -n 20 "$DIR"/*.log >&2 || true
  "$(dirname "$0")/stop.sh" >/dev/null 2>&1 || true
  exit 1
}

launch scheduler "$PYTHON" -m distributed.cli.dask_scheduler --host "$PROTO$HOST" --port "$PORT" \
  "${SDASH[@]}" --scheduler-file "$DIR/scheduler.json" "${TLS[@]}"

for _ in $(seq 1 $((WAIT_S * 5))); do
  [ -s "$DIR/scheduler.json" ] && break
  kill -0 "$(head -n 1 "$DIR/pids")" 2>/dev/null || fail "the scheduler exited"
  sleep 0.2
done
[ -s "$DIR/scheduler.json" ] || fail "no scheduler after ${WAIT_S}s"
ADDRESS="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$DIR/scheduler.json")"

WORKER=(--host "$HOST" --nthreads 1 --local-directory "$DIR/work" "${WDASH[@]}" "${TLS[@]}")
for i in $(seq 1 "$N"); do
  launch "worker-$i" "$PYTHON" -m distributed.cli.dask_worker "$ADDRESS" --nworkers 1 \
    --name "cpu-$i" "${WORKER[@]}"
done

EXPECTED="$N"
if [ "${AUDIOFEAT_GPU:-1}" != "0" ] && command -v nvidia-smi >/dev/null 2>&1; then
  GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
  if [ "${GPUS:-0}" -gt 0 ]; then
    if "$PYTHON" -c 'import dask_cuda' 2>/dev/null; then
      # one worker per visible GPU, each pinned to its device
      launch gpu-workers "$PYTHON" -m dask cuda worker "$ADDRESS" --resources GPU=1 \
        "${WORKER[@]}"
    else
      for g in $(seq 0 $((GPUS - 1))); do
        CUDA_VISIBLE_DEVICES="$g" launch "gpu-worker-$g" "$PYTHON" -m distributed.cli.dask_worker \
          "$ADDRESS" --nworkers 1 --name "gpu-$g" --resources GPU=1 "${WORKER[@]}"
      done
    fi
    EXPECTED=$((N + GPUS))
    echo "start.sh: $GPUS GPU worker(s) with resource GPU=1" >&2
  fi
fi

"$PYTHON" - "$ADDRESS" "$EXPECTED" "$WAIT_S" "${AUDIOFEAT_TLS_CA:-}" "${AUDIOFEAT_TLS_CERT:-}" \
  "${AUDIOFEAT_TLS_KEY:-}" <<'PY' || fail "workers did not join"
import sys
from distributed import Client
address, n, wait_s, ca, cert, key = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:]
security = None
if ca:
    from distributed.security import Security
    security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
with Client(address, security=security, timeout="30s") as client:
    client.wait_for_workers(n, timeout=wait_s)
    link = client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else "none"
print(f"start.sh: {n} worker(s) on {address}; dashboard {link}", file=sys.stderr)
PY

echo "$ADDRESS" > "$DIR/address"
echo "start.sh: state in $DIR; stop with cluster/local/stop.sh" >&2
echo "$ADDRESS"
