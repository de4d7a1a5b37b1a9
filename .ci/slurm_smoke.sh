#!/usr/bin/env bash
# A documented subset of the smoke preset through a real SLURM (.ci/slurm_start.sh) with
# workflow/profiles/slurm and snakemake-executor-plugin-slurm, on the data and runs a
# local smoke run left in results/smoke: Fig. 3 again with its training forced, i.e.
# every Prompt-DT width trained, evaluated and plotted as SLURM jobs (train_dense ->
# evaluate -> figure). Then checks the outputs are new and that SLURM ran the jobs.
#
# What differs from the profile, and why: the node has 2 CPUs, so the rules the profile
# gives 4 CPUs get 1 (a job asking for more than the node has pends forever); there is no
# accounting database, so job status comes from squeue (MinJobAge=600 keeps finished jobs
# visible). Partitions (training rules -> gpu) are kept; GPU requests cannot be shown on
# this node and are covered by tests/test_slurm.py with a fake sbatch.
set -euo pipefail
cd "$(dirname "$0")/.."
results=results/smoke
fig=$results/figures/fig3.png
[ -f "$fig" ] || { echo "slurm_smoke: run the smoke preset locally first ($fig missing)"; exit 1; }
before=$(stat -c %Y "$fig")
sleep 1
one_cpu=()
for r in train_dense train_expert_stage2 train_router train_e2e_moe train_single_task conflict; do
  one_cpu+=("$r:slurm_partition=gpu" "$r:cpus_per_task=1")
done
one_cpu+=("evaluate:cpus_per_task=1" "train_expert:cpus_per_task=1")
snakemake fig3 --workflow-profile workflow/profiles/slurm --configfile workflow/presets/smoke.yaml \
  --forcerun train_dense --jobs 2 --retries 0 --latency-wait 10 \
  --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 --slurm-keep-successful-logs \
  --set-resources "${one_cpu[@]}"
after=$(stat -c %Y "$fig")
[ "$after" -gt "$before" ] || { echo "slurm_smoke: $fig was not rebuilt"; exit 1; }
n_logs=$(find .snakemake/slurm_logs -name '*.log' -newermt "@$before" 2>/dev/null | wc -l)
[ "$n_logs" -ge 5 ] || { echo "slurm_smoke: $n_logs SLURM job logs, expected 5 (train_dense x2, evaluate x2, figure)"; exit 1; }
echo "slurm_smoke: $fig rebuilt through SLURM ($n_logs job logs in .snakemake/slurm_logs)"
squeue -t all -o "%.10i %.20j %.10P %.10T %.6C" | head -20
