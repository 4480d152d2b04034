#!/usr/bin/env bash
# A throw-away one-node SLURM on this machine, for trying cluster/slurm configs and for the
# opt-in test (AUDIOFEAT_TEST_SLURM=1 pytest tests/test_cluster_slurm.py -m slurm).
#
#   sudo apt-get install slurmctld slurmd slurm-client munge     # Debian/Ubuntu
#   cluster/slurm/one-node.sh start        # prints: export SLURM_CONF=...
#   cluster/slurm/one-node.sh stop
#
# Everything (config, state, logs, pid files) lives in $AUDIOFEAT_SLURM_DIR (default
# /tmp/audiofeat-slurm); the daemons listen on 127.0.0.1 ports 16817/16818 unless
# AUDIOFEAT_SLURM_PORT (controller; slurmd uses the next port) says otherwise. Needs root
# (slurmd runs jobs as their users) and munge's key (/etc/munge/munge.key, made by the package).
set -euo pipefail

DIR="${AUDIOFEAT_SLURM_DIR:-/tmp/audiofeat-slurm}"
PORT="${AUDIOFEAT_SLURM_PORT:-16817}"
NODE="$(hostname -s)"

stop() {
  for name in slurmd slurmctld munged; do
    if [ -s "$DIR/$name.pid" ]; then
      pid="$(cat "$DIR/$name.pid")"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$DIR/$name.pid"
    fi
  done
  echo "one-node.sh: stopped (state kept in $DIR)"
}

start() {
  for exe in slurmctld slurmd sbatch munged; do
    command -v "$exe" >/dev/null || { echo "one-node.sh: $exe not found (install slurm-wlm and munge)" >&2; exit 2; }
  done
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge" "$DIR/jobs"
  chmod 700 "$DIR/munge"
  chmod 1777 "$DIR/jobs"
  local cpus mem
  cpus="$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')"
  mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
  cat > "$DIR/slurm.conf" <<CONF
ClusterName=audiofeat-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$((mem * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$DIR/slurm.conf"
  munged --force --socket "$DIR/munge/munge.socket" --pid-file "$DIR/munged.pid" \
    --log-file "$DIR/munged.log" --seed-file "$DIR/munge/seed"
  slurmctld -f "$SLURM_CONF" -i
  slurmd -f "$SLURM_CONF" -N "$NODE"
  for _ in $(seq 1 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qx 'idle'; then
      echo "one-node.sh: SLURM up (partition debug, node $NODE, $cpus CPUs)" >&2
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.2
  done
  echo "one-node.sh: the node did not come up; logs in $DIR" >&2
  sinfo >&2 || true
  tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  stop >&2
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
