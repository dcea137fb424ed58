#!/usr/bin/env bash
# Stop the test cluster started by slurm-up.sh.
set -u
pkill -x slurmd 2>/dev/null
pkill -x slurmctld 2>/dev/null
pkill -x munged 2>/dev/null
sleep 1
echo "slurm-down: stopped"
