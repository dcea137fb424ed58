#!/usr/bin/env bash
# Stop the test cluster started by slurm-up.sh and remove its slurm.conf (restoring a saved one):
# a slurm.conf naming a controller that is down makes every `scontrol` call, hence every
# snakemake start with the SLURM executor plugin installed, wait for a connect timeout.
set -u
pkill -x slurmd 2>/dev/null
pkill -x slurmctld 2>/dev/null
pkill -x munged 2>/dev/null
sleep 1
conf=/etc/slurm/slurm.conf
if [ -f "$conf" ] && grep -q "^# Written by imagedepot" "$conf"; then
  rm -f "$conf"
  [ -f "$conf.imagedepot-saved" ] && mv "$conf.imagedepot-saved" "$conf"
fi
echo "slurm-down: stopped"
