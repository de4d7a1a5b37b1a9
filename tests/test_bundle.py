"""Bundled SAC experts: actor-only export, the bundled/train switch, integrity checks,
learning curves and byte-identical collection from a bundled expert."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from m3dt.data.collect import CollectConfig, collect_task
from m3dt.experts.bundle import bundled_names, make_bundle, read_bundle_meta
from m3dt.experts.config import ExpertConfig
from m3dt.experts.kinds import load_expert
from m3dt.experts.sac import train_expert
from m3dt.experts.sac_policy import BadPolicyFile, load_actor
from m3dt.experts.table import expert_table_rows

TASK = "cartpole-balance"
TINY = dict(learning_starts=50, batch_size=32, net_arch=(32, 32), eval_episodes=1, eval_max_steps=20,
            log_every=100, checkpoint_every=1000, curve_every=100, curve_episodes=1, device="cpu",
            sac_steps_overrides={TASK: 250}, threshold_overrides={TASK: 0.0})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A briefly trained expert (source: train) with its curve, and a bundle made from it."""
    root = tmp_path_factory.mktemp("bundle")
    train_expert(TASK, ExpertConfig(source="train", **TINY), root / "trained" / TASK)
    make_bundle(root / "trained" / TASK, root / "bundle")
    return root


def test_curve_csv_written_by_training(trained):
    rows = list(csv.DictReader(open(trained / "trained" / TASK / "curve.csv")))
    assert [int(r["step"]) for r in rows] == [0, 100, 200, 250]
    assert {r["task"] for r in rows} == {TASK}
    assert all(0.0 <= float(r["score_mean"]) <= 100.0 for r in rows)
    assert (trained / "trained" / TASK / "curve.png").stat().st_size > 0


def test_exported_actor_acts_as_sac_predict(trained):
    from stable_baselines3 import SAC

    d = trained / "trained" / TASK
    model = SAC.load(d / "model.zip", device="cpu")
    actor = load_actor(d / "policy.pt", expected_sha256=json.loads((d / "expert.json").read_text())["policy_sha256"])
    obs = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    for o in obs:
        np.testing.assert_array_equal(actor.predict(o)[0], model.predict(o, deterministic=True)[0])
    assert (d / "policy.pt").stat().st_size < 1_000_000


def test_bundle_has_provenance(trained):
    meta = read_bundle_meta(trained / "bundle" / TASK)
    assert meta["tasks"] == [TASK] and meta["train_steps"] == 250 and meta["config"]["seed"] == 0
    assert meta["algorithm"].startswith("SAC") and "stable-baselines3" in meta["versions"]
    assert TASK in meta["evaluation"] and len(meta["policy_sha256"]) == 64
    assert sorted(p.name for p in (trained / "bundle" / TASK).iterdir()) == ["curve.csv", "curve.png",
                                                                            "expert.json", "policy.pt"]
    assert bundled_names(trained / "bundle") == [TASK]


def test_source_bundled_uses_bundle_and_train_trains(trained, tmp_path, caplog):
    bundle = str(trained / "bundle")
    other = dict(TINY, sac_steps_overrides={TASK: 150})  # a budget the bundle was not trained with
    with caplog.at_level(logging.INFO, logger="m3dt"):
        meta = train_expert(TASK, ExpertConfig(source="bundled", bundle_dir=bundle, **other), tmp_path / "b")
    assert meta["source"] == "bundled" and meta["train_steps"] == 250 and "using the bundled expert" in caplog.text
    assert not (tmp_path / "b" / "metrics.csv").exists()  # nothing was trained
    meta = train_expert(TASK, ExpertConfig(source="train", bundle_dir=bundle, **other), tmp_path / "t")
    assert meta["source"] == "trained" and meta["train_steps"] == 150
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="m3dt"):  # no bundle for this expert: trains, saying so
        meta = train_expert(TASK, ExpertConfig(source="bundled", bundle_dir=str(tmp_path / "none"), **other),
                               tmp_path / "n")
    assert meta["source"] == "trained" and "no bundled expert" in caplog.text


def test_bundled_expert_acts_deterministically_and_collects_identical_bytes(trained, tmp_path):
    cfg = ExpertConfig(source="bundled", bundle_dir=str(trained / "bundle"), **TINY)
    train_expert(TASK, cfg, tmp_path / "experts" / TASK)
    expert = load_expert(TASK, tmp_path / "experts")
    obs = np.linspace(-1, 1, 5).astype(np.float32)
    a1, a2 = expert.act(obs, np.random.default_rng(0)), expert.act(obs, np.random.default_rng(1))
    np.testing.assert_array_equal(a1, a2)
    ccfg = CollectConfig(episodes=2, max_steps=15, allow_flagged=True)
    paths = [collect_task(TASK, load_expert(TASK, tmp_path / "experts"), ccfg, tmp_path / f"{i}.h5")
             for i in range(2)]
    with h5py.File(paths[0]) as f0, h5py.File(paths[1]) as f1:
        for key in ("observations", "actions", "rewards", "terminals"):
            assert f0[key][()].tobytes() == f1[key][()].tobytes(), key


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_bundle_gives_one_clear_error(trained, tmp_path, damage):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(trained / "bundle", bundle)
    policy = bundle / TASK / "policy.pt"
    if damage == "corrupt":
        policy.write_bytes(policy.read_bytes()[:100])
    else:
        policy.unlink()
    with pytest.raises(BadPolicyFile, match=str(policy)):
        train_expert(TASK, ExpertConfig(source="bundled", bundle_dir=str(bundle), **TINY), tmp_path / "x")


def test_expert_table_has_references(trained, tmp_path):
    cfg = ExpertConfig(source="bundled", bundle_dir=str(trained / "bundle"), **TINY)
    train_expert(TASK, cfg, tmp_path / TASK)
    train_expert("reach-v2", cfg, tmp_path / "reach-v2")
    rows = {r["task"]: r for r in expert_table_rows([TASK, "reach-v2"], tmp_path)}
    assert rows[TASK]["sac_1000k"] == pytest.approx(99.8) and rows[TASK]["source"] == "bundled"
    assert rows["reach-v2"]["authors_promptdt_single"] == pytest.approx(78.0)
    assert np.isnan(rows["reach-v2"]["sac_1000k"])
    gap = rows["reach-v2"]["score_mean"] - 78.0
    assert rows["reach-v2"]["ref_gap"] == pytest.approx(gap) and rows["reach-v2"]["far_below_ref"] == (gap < -25)


def test_max_train_seconds_stops_early_and_keeps_the_expert(tmp_path):
    cfg = ExpertConfig(source="train", max_train_seconds=0.0, **dict(TINY, sac_steps_overrides={TASK: 400}))
    meta = train_expert(TASK, cfg, tmp_path / TASK)
    assert meta["stopped_early"] and meta["budget_steps"] == 400 and meta["train_steps"] == 100
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / TASK / "curve.csv"))] == [0, 100]
    assert (tmp_path / TASK / "policy.pt").exists() and meta["status"] == "done"


def test_list_bundled_says_what_a_benchmark_trains(trained, capsys):
    """`data list-bundled --benchmark N --seeds ...`: the SAC experts of those benchmarks, bundled
    or to train; the package's bundle covers the quick preset (MT10 and MT20 of seed 0)."""
    from m3dt import tasks
    from m3dt.__main__ import main
    from m3dt.experts.bundle import needed_sac_experts
    from m3dt.experts.names import expert_kind, expert_names

    needed = needed_sac_experts(10, [0])
    assert needed == [e for e in expert_names(tasks.benchmark(10, 0)) if expert_kind(e) != "scripted"]
    assert {"ant-dir", "cheetah-vel"} <= set(needed) and {expert_kind(e) for e in needed} == {"sac", "sac-goal"}
    for n in (10, 20):
        assert main(["data", "list-bundled", "--benchmark", str(n), "--seeds", "0"]) == 0
        assert capsys.readouterr().out.splitlines()[-1].endswith(" 0 to train")
    assert main(["data", "list-bundled", "--benchmark", "10", "--root", str(trained / "bundle")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"MT10, seeds 0: {len(needed)} SAC experts, 0 bundled, {len(needed)} to train"
    assert main(["data", "list-bundled", "--root", str(trained / "bundle")]) == 0
    assert capsys.readouterr().out.split()[:5] == [TASK, "250", "env", "steps", "UTD"]
