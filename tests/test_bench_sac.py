"""benchmarks/bench_sac.py: variant parsing, ratios against today's SB3 row, the table (no training)."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sac", ROOT / "benchmarks" / "bench_sac.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sac"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _row(variant, device, task, steps_per_s, score, train_s):
    return {"variant": variant, "device": device, "platform": "torch-cpu", "task": task, "seed": 0,
            "steps": 1000, "truncated": False, "train_s": train_s, "steps_per_s": steps_per_s, "score": score}


def test_parse_variant(bench):
    v, d = bench.parse_variant("sbx-tf8@cpu", "auto")
    assert (v.library, v.overrides["train_freq"], v.overrides["gradient_steps"], d) == ("sbx", 8, 8, "cpu")
    v, d = bench.parse_variant("sb3", "auto")
    assert v.overrides == {} and d == "auto"  # today's setup: ExpertConfig() untouched
    with pytest.raises(SystemExit, match="unknown variant 'sb4'"):
        bench.parse_variant("sb4", "auto")
    with pytest.raises(SystemExit, match="device must be"):
        bench.parse_variant("sb3@tpu", "auto")


def test_ratios_against_sb3_of_the_same_task_and_device(bench):
    frame = pd.DataFrame([
        _row("sb3", "auto", "a", 100.0, 80.0, 100.0),
        _row("sb3", "cpu", "a", 50.0, 80.0, 200.0),  # same variant on another device: not the baseline
        _row("sbx", "auto", "a", 300.0, 40.0, 33.3),
        _row("sb3", "auto", "b", 10.0, 0.0, 1000.0),  # score 0 is clipped at 1 in the cost
        _row("sbx", "auto", "b", 20.0, 0.5, 500.0),
    ])
    out = bench.add_ratios(frame, "auto").set_index(["task", "variant", "device"])
    assert out.loc[("a", "sbx", "auto"), "speedup"] == pytest.approx(3.0)
    # (100 s / 80) / (33.3 s / 40) = 1.5: 3x the speed at half the score
    assert out.loc[("a", "sbx", "auto"), "cost_ratio"] == pytest.approx(1.25 / (33.3 / 40))
    assert out.loc[("a", "sb3", "cpu"), "speedup"] == pytest.approx(0.5)
    assert out.loc[("a", "sbx", "auto"), "score_delta"] == pytest.approx(-40.0)
    assert out.loc[("b", "sbx", "auto"), "cost_ratio"] == pytest.approx(2.0)
    summary = bench.summary(out.reset_index()).set_index(["variant", "device"])
    assert summary.loc[("sbx", "auto"), "speedup"] == pytest.approx((3.0 * 2.0) ** 0.5)


def test_markdown_table(bench):
    text = bench.markdown(pd.DataFrame({"variant": ["sb3", "sbx"], "speedup": [1.0, float("nan")]}))
    lines = text.splitlines()
    assert lines[0] == "| variant | speedup |" and lines[1] == "|---|---|"
    assert lines[3] == "| sbx | – |"


def test_baseline_is_required(bench, tmp_path):
    with pytest.raises(SystemExit, match="must include 'sb3'"):
        bench.main(["--variants", "sbx", "--tasks", "cartpole-swingup", "--out", str(tmp_path)])


def _job(variant, device, task, steps=1000, truncated=False, eval_episodes=2, learning_starts=500):
    row = _row(variant, device, task, 100.0, 50.0, steps / 100.0)
    row.update(steps=steps, truncated=truncated, eval_episodes=eval_episodes, n_updates=0,
               config={"learning_starts": learning_starts})
    return row


def test_finished_jobs_are_reused_on_a_rerun(bench, tmp_path, capsys):
    """An interrupted benchmark resumes: result files of the same settings are read, not retrained."""
    import json

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for seed in (0, 1):
        for stem, variant in (("sb3_cpu", "sb3"), ("sb3-utd0.5_cpu", "sb3-utd0.5")):
            row = _job(variant, "cpu", "cartpole-swingup")
            row["seed"] = seed
            (jobs / f"{stem}__cartpole-swingup__s{seed}.json").write_text(json.dumps(row))
    rc = bench.main(["--variants", "sb3", "sb3-utd0.5", "--device", "cpu", "--tasks", "cartpole-swingup",
                     "--seeds", "0", "1", "--steps", "1000", "--eval-episodes", "2", "--learning-starts", "500",
                     "--jobs", "1", "--no-pin", "--out", str(tmp_path)])
    assert rc in (0, None)
    out = capsys.readouterr().out
    assert sum(line.startswith("reused ") for line in out.splitlines()) == 4 and "(4 of 4 jobs reused" in out
    assert "Pooled over seeds" in out
    table = pd.read_csv(tmp_path / "bench_sac.csv")
    assert sorted(table["variant"]) == ["sb3", "sb3", "sb3-utd0.5", "sb3-utd0.5"]
    pooled = pd.read_csv(tmp_path / "bench_sac_seeds.csv")
    assert pooled["seeds"].tolist() == [2, 2]


def test_reuse_needs_the_same_settings(bench):
    import argparse

    args = argparse.Namespace(steps=1000, eval_episodes=2, learning_starts=None)
    assert bench.reusable(_job("sb3", "cpu", "a"), args)
    assert not bench.reusable(_job("sb3", "cpu", "a", steps=500), args)  # another budget
    assert not bench.reusable(_job("sb3", "cpu", "a", truncated=True), args)  # stopped by --max-minutes
    assert not bench.reusable(_job("sb3", "cpu", "a", eval_episodes=5), args)
    args.learning_starts = 100
    assert not bench.reusable(_job("sb3", "cpu", "a"), args)


def test_pooled_over_seeds(bench):
    """Several seeds: the cost ratio of the means per task, then geometric means over tasks."""
    rows = []
    for seed, (b_score, v_score) in enumerate([(40.0, 60.0), (80.0, 60.0)]):
        for variant, score, train_s in (("sb3", b_score, 200.0), ("sb3-utd0.5", v_score, 100.0)):
            r = _row(variant, "cpu", "a", 1000 / train_s, score, train_s)
            r["seed"] = seed
            rows.append(r)
    frame = pd.DataFrame(rows)
    per, overall = bench.over_seeds(frame, "cpu")
    v = per.set_index("variant").loc["sb3-utd0.5"]
    assert v["seeds"] == 2 and v["score"] == pytest.approx(60.0) and v["score_std"] == pytest.approx(0.0)
    # means: sb3 200 s for 60 points, utd0.5 100 s for 60 points -> 2x cheaper per unit of score
    assert v["speedup"] == pytest.approx(2.0) and v["cost_ratio"] == pytest.approx(2.0)
    # the per-seed ratios would say otherwise: 3x on seed 0, 1.5x on seed 1
    paired = bench.add_ratios(frame, "cpu")
    assert sorted(paired.loc[paired["variant"] == "sb3-utd0.5", "cost_ratio"]) == pytest.approx([1.5, 3.0])
    assert overall.set_index("variant").loc["sb3-utd0.5", "cost_ratio"] == pytest.approx(2.0)
