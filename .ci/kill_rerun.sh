#!/usr/bin/env bash
# Interrupt the smoke workflow the hard way and rerun the same command: it must finish.
# Starts `snakemake all --cores 2 --configfile workflow/presets/smoke.yaml` in its own
# process group, waits until some data exists and jobs are running (.snakemake/incomplete
# holds their outputs), kills the whole group with SIGKILL (Snakemake, its jobs: no
# cleanup of any kind), then runs the same command again and checks it succeeds without
# --unlock or --rerun-incomplete on the command line (the default profile and the
# workflow's stale-lock check do that).
set -euo pipefail
cd "$(dirname "$0")/.."
results=${SMOKE_RESULTS:-results/smoke}
cmd=(snakemake all --cores 2 --configfile workflow/presets/smoke.yaml)
log=$(mktemp)
setsid "${cmd[@]}" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  if compgen -G "$results/data/*.h5" >/dev/null && [ -n "$(find .snakemake/incomplete -type f 2>/dev/null | head -1)" ]; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { tail -30 "$log"; echo "kill_rerun: the first run ended before it could be killed"; exit 1; }
  sleep 1
done
echo "kill_rerun: SIGKILL to the process group of $pid while these ran:"
find .snakemake/incomplete -type f | head -5
kill -KILL -- "-$pid"
wait "$pid" || true
ls .snakemake/locks/ | sed 's/^/kill_rerun: lock left behind: /'
echo "kill_rerun: rerunning the same command"
"${cmd[@]}"
echo "kill_rerun: the rerun finished"
