"""The SLURM profile: the paper DAG plans with it, and jobs reach `sbatch` with the right resources.

No cluster here: fake `sbatch` / `sacct` / `squeue` / `sinfo` / `scontrol` / `scancel`
executables on PATH record every call. `sbatch` answers with a job id, `sacct` reports every
job FAILED, so the run ends quickly after submitting; the test reads the recorded calls.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from m3dt import tasks

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
PROFILE = "workflow/profiles/slurm"

SBATCH = """#!/usr/bin/env bash
log="${FAKE_SLURM_LOG:?}"
touch "$log"
n=$(( $(grep -c '^sbatch' "$log") + 1000 ))
echo "sbatch $*" >> "$log"
echo "$n"
"""
SACCT = """#!/usr/bin/env bash
log="${FAKE_SLURM_LOG:?}"
echo "sacct $*" >> "$log.other"
case "$*" in
  *Account*) echo "none" ;;
  *JobIdRaw,State*) i=1000; while read -r line; do case "$line" in sbatch*) echo "$i|FAILED"; i=$((i+1));; esac; done < "$log" ;;
esac
"""
OTHER = """#!/usr/bin/env bash
echo "{name} $*" >> "${{FAKE_SLURM_LOG:?}}.other"
"""


def _fake_slurm(bin_dir: Path) -> None:
    bin_dir.mkdir()
    scripts = {"sbatch": SBATCH, "sacct": SACCT}
    scripts.update({n: OTHER.format(name=n) for n in ("squeue", "sinfo", "scontrol", "scancel", "sacctmgr", "sshare")})
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_paper_preset_plans_the_full_dag_with_the_profile():
    r = subprocess.run([SNAKEMAKE, "all", "-n", "--quiet", "rules", "--workflow-profile", PROFILE,
                        "--configfile", "workflow/presets/paper.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    total = [line.split()[-1] for line in out.splitlines() if line.startswith("total")]
    assert total and int(total[-1]) > 3500, out[-2000:]  # MT160 and subsets x 3 seeds x every experiment (3,787)
    for rule in ("train_expert", "collect", "train_dense", "train_expert_stage2", "train_router", "evaluate",
                 "figure", "table"):
        assert rule in out


@pytest.fixture
def submitted(tmp_path):
    """sbatch calls of a run with the profile: a stage-1 training job, an evaluation, an expert."""
    results = tmp_path / "results"
    (results / "data").mkdir(parents=True)
    for t in tasks.benchmark(10, 0):
        (results / "data" / f"{t}.h5").write_text("stand-in: the job is never run")
    ckpt = results / "runs/mt10/s0/mtdt_w16/checkpoints/final.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("stand-in")
    os.utime(ckpt, (ckpt.stat().st_mtime + 10,) * 2)  # newer than the data: only its evaluation runs
    _fake_slurm(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "FAKE_SLURM_LOG": str(tmp_path / "slurm.log")}
    targets = [results / "runs/mt10/s0/prompt_dt_w16/checkpoints/final.pt",
               results / "runs/mt10/s0/mtdt_w16/eval/summary.csv", results / "experts/cheetah-run/expert.json"]
    r = subprocess.run([SNAKEMAKE, *map(str, targets), "--workflow-profile", PROFILE, "--latency-wait", "0",
                        "--retries", "0", "--seconds-between-status-checks", "1",
                        "--slurm-init-seconds-before-status-checks", "1",
                        "--configfile", "workflow/presets/smoke.yaml",
                        "--config", f"results={results}", "resources={gpu: 1, train_mem_mb: 12000, train_runtime: 99}"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0  # the fake cluster fails every job
    lines = (tmp_path / "slurm.log").read_text().splitlines()
    calls = {}
    for line in lines:
        rule = line.split("--comment rule_", 1)[1].split("_wildcards")[0].split()[0]
        calls[rule] = line
    return calls, r.stdout + r.stderr


def test_jobs_are_submitted_with_the_expected_resources(submitted):
    calls, log = submitted
    assert set(calls) == {"train_dense", "evaluate", "train_expert"}, log[-3000:]
    train = calls["train_dense"]  # GPU partition, one GPU, the training memory and wall time
    assert " -p gpu " in train and "--cpus-per-task=4" in train
    assert "--mem 12000" in train and " -t 99 " in train
    assert "--gpus=1" in train or "--gres=gpu:1" in train
    ev = calls["evaluate"]  # CPU partition, no GPU
    assert " -p cpu " in ev and "--cpus-per-task=4" in ev and "gpu" not in ev.split("--wrap")[0]
    expert = calls["train_expert"]
    assert " -p cpu " in expert and "--cpus-per-task=2" in expert and "--mem 6000" in expert
    for call in calls.values():  # every job runs this workflow's rule remotely
        assert "--wrap=" in call and "Snakefile" in call
