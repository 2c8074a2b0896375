#!/usr/bin/env bash
# A real single-node SLURM cluster for the CI (Debian's slurm-wlm + munge, no systemd, no
# cgroups):  slurm-cluster.sh start | stop.  State, spool, pid and log files live under
# $SLURM_STATE (deleted on start: a fresh cluster each time). Run as root.
set -euo pipefail
SLURM_STATE="${SLURM_STATE:-/tmp/bids-dl-slurm}"
conf="$SLURM_STATE/slurm.conf"
node=$(hostname -s)

stop() {
  for daemon in slurmd slurmctld; do
    if [ -f "$SLURM_STATE/$daemon.pid" ]; then
      kill "$(cat "$SLURM_STATE/$daemon.pid")" 2>/dev/null || true
      rm -f "$SLURM_STATE/$daemon.pid"
    fi
  done
}

start() {
  stop
  rm -rf "$SLURM_STATE" && mkdir -p "$SLURM_STATE"/{spool,state}
  getent hosts "$node" >/dev/null || echo "127.0.0.1 $node" >> /etc/hosts
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  cat > "$conf" <<CONF
ClusterName=bidsdl
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_STATE/state
SlurmdSpoolDir=$SLURM_STATE/spool
SlurmctldPidFile=$SLURM_STATE/slurmctld.pid
SlurmdPidFile=$SLURM_STATE/slurmd.pid
SlurmctldLogFile=$SLURM_STATE/slurmctld.log
SlurmdLogFile=$SLURM_STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=512
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
ReturnToService=2
NodeName=$node CPUs=8 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$conf"
  slurmctld -f "$conf"
  for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
  slurmd -f "$conf"
  for _ in $(seq 100); do [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ] && break; sleep 0.1; done
  [ "$(sinfo -h -N -o %T)" = idle ] || { echo "slurmd did not come up" >&2; tail "$SLURM_STATE"/*.log >&2; exit 1; }
  echo "SLURM up: export SLURM_CONF=$conf"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
