#!/usr/bin/env bash
# Stop the daemons .ci/slurm_start.sh started (by their pid files).
for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
