"""The Snakemake workflow: every preset plans a DAG; bad config values fail naming the key."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


# The paper preset's DAG has ~3,800 jobs (40 s to plan); it is planned here on one task
# count and seed, which checks the file against the schema and every rule against it.
SMALLER = "seeds: [0]\ntask_counts: [10]\nexperiments: {expert_task_counts: [10], expert_counts: [8], n_experts: 8}\n"


@pytest.mark.parametrize("preset", ["config.yaml", "workflow/presets/smoke.yaml", "workflow/presets/mini.yaml",
                                    "workflow/presets/paper.yaml"])
def test_every_preset_plans_every_figure(preset, tmp_path):
    extra = []
    if preset.endswith("paper.yaml"):
        (tmp_path / "smaller.yaml").write_text(SMALLER)
        extra = [str(tmp_path / "smaller.yaml")]
    r = dry_run("all", "--forceall", "--configfile", preset, *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    for rule in ("train_dense", "train_expert_stage2", "assemble", "train_router", "train_e2e_moe", "evaluate",
                 "conflict", "group_tasks", "figure", "table", "single_task_table", "collect"):
        assert rule in out, f"{preset}: rule {rule} not planned"


def test_grouped_expert_batching_plans_one_stage2_job_per_build(tmp_path):
    cfg = tmp_path / "grouped.yaml"
    cfg.write_text("train: {expert_batching: grouped}\n")
    r = dry_run("all", "--forceall", "--configfile", "workflow/presets/smoke.yaml", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    counts = {line.split()[0]: int(line.split()[-1]) for line in (r.stdout + r.stderr).splitlines()
              if len(line.split()) == 2 and line.split()[-1].isdigit()}
    # smoke: 4 builds with a groups file (random/gradient) train grouped; grouping "none" keeps one job per expert
    assert counts.get("train_experts_grouped") == 4, counts
    assert counts.get("assemble") == 1, counts


@pytest.mark.parametrize("bad, key", [
    ("train: {model: {widht: 3}}", "train.model.widht"),
    ("train: {sampler: {mode: shuffled}}", "train.sampler"),
    ("steps: {dense: 3}", "experiments.backbone_checkpoints"),
    ("task_counts: [7]", "task_counts"),
    ("evaluation: {episodes: 0}", "episodes"),
    ("data: {source: import}", "data.import_dir"),
    ("experiments: {m3dt_backbone_step: 3}", "experiments.m3dt_backbone_step"),
    ("data: {source: import, import_dir: /no/such/folder}", "data.import_dir"),
    ("experiments: {n_experts: 50}", "experiments.n_experts"),
    ("experiments: {expert_counts: [2, 50]}", "experiments.expert_counts"),
    ("experiments: {n_experts_by_task_count: {10: 11}}", "experiments.n_experts_by_task_count[10] = 11"),
    ("train: {loop: {checkpoint_every: -1}}", "checkpoint_every must be >= 1"),
    ("train: {optim: {lr: fast}}", "train.optim.lr must be a number"),
    ("train: {harmo: {mask_intervl: 2}}", "train.harmo.mask_intervl"),
    ("train: {harmo: {sparsity: dense}}", "train.harmo.sparsity must be a number"),
    ("evaluation: {device: gpu0}", "['evaluation']['device']"),
    ("resources: {train_mem_mb: -1}", "['resources']['train_mem_mb']"),
    ("single_task: {tasks: [foo-bar]}", "single_task.tasks: unknown task 'foo-bar'"),
])
def test_bad_config_names_the_key(bad, key, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(bad + "\n")
    r = dry_run("all", "--configfile", "workflow/presets/smoke.yaml", str(cfg))
    assert r.returncode != 0
    assert key in r.stdout + r.stderr


def test_nested_command_line_overrides_are_typed():
    # Snakemake hands nested --config values over as strings; the workflow types them
    ok = dry_run("all", "--configfile", "workflow/presets/smoke.yaml", "--config", "steps={router: 3, expert: 1}",
                 "evaluation={bf16: false}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = dry_run("all", "--configfile", "workflow/presets/smoke.yaml", "--config", "steps={router: many}")
    assert bad.returncode != 0 and "['steps']['router']" in bad.stdout + bad.stderr


def test_typed_strings():
    from m3dt.io import typed_strings

    got = typed_strings({"a": "300", "b": "-1.5", "c": "1e-4", "d": "true", "e": "null", "f": ["2", "auto"],
                         "g": "door-close-v2", "h": "", "i": 7, "j": {"k": "False"}})
    assert got == {"a": 300, "b": -1.5, "c": 1e-4, "d": True, "e": None, "f": [2, "auto"], "g": "door-close-v2",
                   "h": "", "i": 7, "j": {"k": False}}
    assert isinstance(got["a"], int) and isinstance(got["c"], float)


def test_paper_preset_builds_m3dt_on_the_400k_backbone(tmp_path):
    """Paper preset: dense runs train 600k steps, M3DT (stages 2 and 3) loads the 400k checkpoint."""
    (tmp_path / "smaller.yaml").write_text(SMALLER)
    table1 = "results/paper/tables/table1.csv"
    r = subprocess.run([SNAKEMAKE, "-n", "--forceall", table1, "--configfile", "workflow/presets/paper.yaml",
                        str(tmp_path / "smaller.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    run = "results/paper/runs/mt10/s0"
    assert f"{run}/m3dt_E8_gradient_b400000/router_dense/eval/summary.csv" in out
    assert f"{run}/m3dt_E8_random_b400000/assembled.pt" in out
    assert "_b600000" not in out  # no M3DT of Table 1 on the 600k backbone
    assert f"{run}/prompt_dt_w256/checkpoints/final.pt" in out  # the 600k run; its step_400000.pt is read


def test_training_seed_offset_seeds_training_jobs_not_the_tasks(tmp_path):
    """training_seed_offset: the same benchmark tasks (seed 0's folder and task list), the training-side
    randomness (here the random grouping, a job without inputs) seeded with 0 + offset."""
    got = {}
    for k, offset in enumerate((0, 1, 0)):
        out = tmp_path / f"r{k}"  # a fresh results folder each time
        target = f"{out}/runs/mt20/s0/groups/random_E4_b8000.json"
        r = subprocess.run([SNAKEMAKE, "--cores", "1", target, "--configfile", "config.yaml",
                            "--config", f"results={out}", f"training_seed_offset={offset}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        doc = json.loads(Path(target).read_text())
        assert doc["seed"] == offset
        got.setdefault(offset, doc["groups"])
        assert got[offset] == doc["groups"]  # the same offset gives the same groups
    assert sorted(sum(got[0], [])) == sorted(sum(got[1], []))  # the same 20 tasks
    assert got[0] != got[1]
