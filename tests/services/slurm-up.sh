#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine for the workflow tests (root needed).
# Debian packages: slurm-wlm, munge (installed by .ci/run). Loopback only; stopped by slurm-down.sh.
# slurm.conf must sit at /etc/slurm/slurm.conf: the SLURM executor's job step drops SLURM_CONF.
set -euo pipefail
for exe in slurmctld slurmd munged sinfo; do
  command -v "$exe" >/dev/null || { echo "slurm-up: $exe not installed (apt-get install slurm-wlm munge)" >&2; exit 2; }
done
if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
  echo "slurm-up: a cluster is already up"; exit 0
fi
cpus=$(nproc)
# Leave 1 GiB to the system; slurmd refuses to start if RealMemory exceeds what it sees.
mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
# Keep a site's own slurm.conf; slurm-down.sh puts it back.
if [ -f /etc/slurm/slurm.conf ] && ! grep -q "^# Written by imagedepot" /etc/slurm/slurm.conf; then
  mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.imagedepot-saved
fi
cat > /etc/slurm/slurm.conf <<CONF
# Written by imagedepot's tests/services/slurm-up.sh: a one-node test cluster.
ClusterName=imagedepot-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
# Keep finished jobs visible to squeue long enough for the executor's status checks.
MinJobAge=300
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- munged
pgrep -x slurmctld >/dev/null || (slurmctld -D >/var/log/slurm/slurmctld.out 2>&1 &)
sleep 1
pgrep -x slurmd >/dev/null || (slurmd -D -N localhost >/var/log/slurm/slurmd.out 2>&1 &)
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
    echo "slurm-up: cluster up ($(sinfo -h -o '%P %D %T %c'))"; exit 0
  fi
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-up: the node did not come up; logs in /var/log/slurm" >&2
tail -n 20 /var/log/slurm/*.log >&2 || true
exit 1
