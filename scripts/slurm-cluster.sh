#!/usr/bin/env bash
# A one-node Slurm cluster for the tests: `start` installs slurm-wlm and munge if missing,
# writes a slurm.conf with Licenses=mock:2 under /tmp/drover-slurm, and starts munged,
# slurmctld and slurmd; `stop` stops them. Needs root (as apt-get does); a cluster that
# already answers (`sinfo`) is left as it is.
set -euo pipefail
dir=/tmp/drover-slurm
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

stop() {
  for name in slurmd slurmctld; do
    if [ -f "$dir/$name.pid" ]; then $sudo kill "$(cat "$dir/$name.pid")" 2>/dev/null || true; fi
  done
  $sudo pkill -x munged 2>/dev/null || true
  # Killed daemons can linger: wait until they are gone, so the next start finds the ports free.
  for _ in $(seq 1 50); do
    pgrep -x 'slurmd|slurmctld|munged' >/dev/null 2>&1 || break
    sleep 0.1
  done
}

start() {
  if sinfo -h >/dev/null 2>&1 && scontrol show licenses 2>/dev/null | grep -q 'LicenseName=mock'; then
    echo "slurm-cluster: a cluster with the mock license is up already"
    return 0
  fi
  if ! command -v srun >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  host=$(hostname -s)
  $sudo mkdir -p "$dir/state" "$dir/spool" /run/munge /etc/slurm
  $sudo chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || $sudo /usr/sbin/mungekey --create >/dev/null 2>&1 || true
  pgrep -x munged >/dev/null 2>&1 || $sudo runuser -u munge -- /usr/sbin/munged
  $sudo tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=drovertest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=2
Licenses=mock:2
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:16
CONF
  $sudo /usr/sbin/slurmctld
  $sudo /usr/sbin/slurmd
  for _ in $(seq 1 100); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "slurm-cluster: up ($(scontrol show licenses -o | head -1))"
      return 0
    fi
    sleep 0.2
  done
  echo "slurm-cluster: the node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log" >&2
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
