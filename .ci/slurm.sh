#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the workflow's SLURM test.
#   .ci/slurm.sh up     install (Debian packages) and start munge, slurmctld, slurmd
#   .ci/slurm.sh down   stop them by their recorded PIDs
# The node has GRES gpu:2 backed by character devices so that --gpus jobs are accepted;
# the jobs find no CUDA and run on the CPU.
set -euo pipefail
STATE=/tmp/ws-slurm
cmd=${1:-up}

if [ "$cmd" = down ]; then
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/ws-munged.pid; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  sleep 1
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
mkdir -p "$STATE" /run/munge /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown munge:munge /run/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
# GPU-less node: fake GPU devices for GRES
for i in 0 1; do [ -e "$STATE/gpu$i" ] || mknod "$STATE/gpu$i" c 1 3; done

node=$(hostname -s)
cpus=$(nproc)
mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
mem_mb=$(( mem_kb / 1024 * 90 / 100 ))
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ws
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# the SLURM test reads finished jobs back from the controller: keep them for the whole run
MinJobAge=7200
ReturnToService=2
SchedulerType=sched/backfill
GresTypes=gpu
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:2 State=UNKNOWN
# the partition names profiles/slurm uses, both on this one node
PartitionName=cpu Nodes=${node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${node} MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=${node} Name=gpu File=$STATE/gpu[0-1]
CONF

pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/ws-munged.pid
pgrep -x slurmctld >/dev/null && scontrol reconfigure >/dev/null 2>&1 || slurmctld -i
for _ in $(seq 30); do scontrol ping >/dev/null 2>&1 && break; sleep 0.5; done
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1)
  case "$state" in idle*) break ;; esac
  sleep 0.5
done
sinfo -N -o '%N %T %G %c %m'
