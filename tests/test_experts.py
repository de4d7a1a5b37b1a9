"""Experts and data collection: scripted Meta-World, per-task SAC (DMC), goal-conditioned SAC
(ant-dir, cheetah-vel), the HDF5 files they write, determinism, flagging and the expert table."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from m3dt import tasks
from m3dt.data.collect import CollectConfig, collect_episodes, collect_task
from m3dt.experts import sac
from m3dt.dataclass_io import ConfigError
from m3dt.experts.config import ExpertConfig
from m3dt.experts.envs import GoalFamilyEnv
from m3dt.experts.kinds import Expert, FlaggedExpertError, SACExpert, ScriptedExpert, bind_expert, load_expert
from m3dt.experts.names import CHECKPOINT_DIR, expert_kind, expert_name, expert_names, expert_tasks, goal_features
from m3dt.experts.rollout import evaluate_expert
from m3dt.experts.sac import build_sac, train_expert
from m3dt.experts.table import TABLE_COLUMNS, expert_table_rows, write_expert_table
from m3dt.plots.experts import plot_expert_quality

TINY = dict(source="train", learning_starts=50, batch_size=32, net_arch=(32, 32), eval_episodes=1, eval_max_steps=20,
            log_every=100, checkpoint_every=100, device="cpu")


@pytest.fixture(scope="module")
def expert_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experts")


@pytest.fixture(scope="module")
def pendulum_meta(expert_root):
    """A briefly trained SAC expert (a few hundred steps), threshold 0 so it is not flagged."""
    cfg = ExpertConfig(**TINY, sac_steps_overrides={"pendulum-swingup": 250},
                       threshold_overrides={"pendulum-swingup": 0.0})
    return train_expert("pendulum-swingup", cfg, expert_root / "pendulum-swingup")


def _untrained_goal_expert(task: str) -> SACExpert:
    env = GoalFamilyEnv(expert_name(task))
    model = build_sac(env, ExpertConfig(**TINY), total_steps=100)
    return bind_expert(model, task)


def _experts(name: str, expert_root: Path, pendulum_meta) -> Expert:
    if name == "reach-v2":
        return ScriptedExpert("reach-v2", action_noise=0.1)
    if name == "pendulum-swingup":
        return load_expert("pendulum-swingup", expert_root)
    return _untrained_goal_expert(name)


def _read(path: Path):
    from m3dt.data import store

    return store.open_task_data(path)


# ----------------------------------------------------------------------------------- experts


def test_names_and_kinds():
    assert expert_name("ant-dir-7") == "ant-dir" and expert_kind("ant-dir-7") == "sac-goal"
    assert expert_name("cheetah-vel-0") == "cheetah-vel"
    assert expert_kind("reach-v2") == "scripted" and expert_kind("walker-walk") == "sac"
    assert expert_names(["ant-dir-1", "ant-dir-2", "reach-v2", "cheetah-vel-3"]) == ["ant-dir", "reach-v2",
                                                                                      "cheetah-vel"]
    assert len(expert_tasks("ant-dir")) == 40 == len(expert_tasks("cheetah-vel"))
    np.testing.assert_allclose(np.linalg.norm(goal_features("ant-dir-3")), 1.0, rtol=1e-6)
    assert goal_features("cheetah-vel-0").tolist() == pytest.approx([0.075])
    cfg = ExpertConfig(threshold_overrides={"dmc": 40.0, "hopper-hop": 10.0})
    assert cfg.threshold("walker-walk") == 40.0 and cfg.threshold("hopper-hop") == 10.0
    assert cfg.threshold("reach-v2") == cfg.near_optimal_threshold
    assert ExpertConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['data.experts.sac_stepz'\]; valid: .*'sac_steps_overrides'"):
        ExpertConfig.from_dict({"sac_stepz": 1})
    with pytest.raises(ConfigError, match="data.experts.net_arch must be a list"):
        ExpertConfig.from_dict({"net_arch": 256})


def test_scripted_reach_succeeds_without_noise():
    expert = ScriptedExpert("reach-v2", action_noise=0.0)
    row = evaluate_expert(expert, episodes=2, seed=0, threshold=80.0)
    assert row["score_mean"] == 100.0 and row["flagged"] is False


def test_goal_family_env_appends_goal_to_agent_input_only():
    env = GoalFamilyEnv("ant-dir")
    assert env.observation_space.shape == (27 + 2,) and env.action_space.shape == (8,)
    obs, info = env.reset(seed=3)
    np.testing.assert_allclose(obs[27:], goal_features(info["task"]))
    obs2, *_ = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs2[27:], goal_features(info["task"]))
    seen = {env.reset(seed=s)[1]["task"] for s in range(8)}
    assert len(seen) > 1  # a goal per episode
    cv = GoalFamilyEnv("cheetah-vel")
    assert cv.observation_space.shape == (20 + 1,) and cv.action_space.shape == (6,)
    obs, info = cv.reset(seed=0, options={"task": "cheetah-vel-5"})
    assert info["task"] == "cheetah-vel-5" and obs[-1] == pytest.approx(goal_features("cheetah-vel-5")[0])


def test_train_smoke_saves_reloads_and_acts(pendulum_meta, expert_root):
    d = expert_root / "pendulum-swingup"
    assert (d / "model.zip").exists() and (d / "expert.json").exists() and not (d / "checkpoint").exists()
    meta = json.loads((d / "expert.json").read_text())
    assert meta["kind"] == "sac" and meta["train_steps"] == 250 and meta["status"] == "done"
    ev = meta["evaluation"]["pendulum-swingup"]
    assert ev["n_episodes"] == 1 and ev["flagged"] is False
    rows = list(csv.DictReader(open(d / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200, 250] and float(rows[-1]["updates_per_s"]) > 0
    expert = load_expert("pendulum-swingup", expert_root)
    a = expert.act(np.zeros(3, np.float32), np.random.default_rng(0))
    assert a.shape == (1,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    # a finished expert is reused, not retrained
    again = train_expert("pendulum-swingup", ExpertConfig(**meta["config"]), d)
    assert again["train_seconds"] == meta["train_seconds"]


def test_train_resumes_from_checkpoint(tmp_path, monkeypatch, caplog):
    cfg = ExpertConfig(**TINY, sac_steps_overrides={"cartpole-balance": 300})
    out = tmp_path / "cartpole-balance"
    real_save = sac._save_model

    def crash_on_final_save(model, path):
        if path.parent.name != CHECKPOINT_DIR:
            raise KeyboardInterrupt("simulated interruption")
        real_save(model, path)

    monkeypatch.setattr(sac, "_save_model", crash_on_final_save)
    with pytest.raises(KeyboardInterrupt):
        train_expert("cartpole-balance", cfg, out)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 200
    monkeypatch.setattr(sac, "_save_model", real_save)
    with caplog.at_level(logging.INFO, logger="m3dt"):
        meta = train_expert("cartpole-balance", cfg, out)
    assert "resuming from checkpoint at step 200/300" in caplog.text
    assert meta["train_steps"] == 300 and not (out / "checkpoint").exists()
    steps = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv"))]
    assert steps == [100, 200, 300]


# ----------------------------------------------------------------------------------- collection


@pytest.mark.parametrize("task", ["reach-v2", "pendulum-swingup", "ant-dir-0", "cheetah-vel-0"])
def test_collect_one_task_per_suite(task, tmp_path, expert_root, pendulum_meta):
    spec = tasks.get(task)
    expert = _experts(task, expert_root, pendulum_meta)
    cfg = CollectConfig(episodes=2, n_prompt=2, seed=1, max_steps=25)
    path = collect_task(task, expert, cfg, tmp_path / f"{task}.h5")
    episodes = collect_episodes(task, expert, cfg)  # the same episodes, in memory
    with h5py.File(path, "r") as f:
        obs, act = f["observations"][()], f["actions"][()]
        assert obs.shape == (sum(len(e["rewards"]) for e in episodes), spec.obs_dim)
        assert act.shape == (obs.shape[0], spec.action_dim)
        assert f.attrs["source"] == "collect" and int(f.attrs["seed"]) == 1
    assert len(episodes) == 4 and all(len(e["rewards"]) == 25 for e in episodes)
    with _read(path) as data:
        assert data.summary()["n_episodes"] == 4 and data.attrs["expert_kind"] == expert.kind
        assert data.prompt_episodes.tolist() == [2, 3]
        prompts = [data.episode(int(i)) for i in data.prompt_episodes]
    for got, want in zip(prompts, episodes[-2:]):  # the prompts are the last 2 episodes
        np.testing.assert_array_equal(got["observations"], want["observations"])
        np.testing.assert_array_equal(got["actions"], want["actions"])


def test_collection_is_deterministic(tmp_path, expert_root, pendulum_meta):
    cfg = CollectConfig(episodes=2, n_prompt=2, seed=5, max_steps=30)
    for task in ("reach-v2", "pendulum-swingup"):
        expert = _experts(task, expert_root, pendulum_meta)
        a = collect_task(task, expert, cfg, tmp_path / f"a-{task}.h5")
        b = collect_task(task, _experts(task, expert_root, pendulum_meta), cfg, tmp_path / f"b-{task}.h5")
        other = collect_episodes(task, expert, CollectConfig(episodes=2, n_prompt=2, seed=6, max_steps=30))
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            for key in ("observations", "actions", "rewards", "terminals"):
                np.testing.assert_array_equal(fa[key][()], fb[key][()])
            assert not np.array_equal(fa["observations"][:30], other[0]["observations"])


def test_metaworld_collection_gives_each_episode_its_own_goal():
    """Training and prompt episodes each get their own goal variation, which the scripted
    policy reads from the observation (it reaches that goal)."""
    expert = ScriptedExpert("reach-v2", action_noise=0.0)
    episodes = collect_episodes("reach-v2", expert, CollectConfig(episodes=4, n_prompt=2, seed=0, max_steps=150))
    goals = [tuple(ep["observations"][0, 36:39]) for ep in episodes]
    assert len(set(goals)) == 6  # 4 training + 2 prompt episodes, 6 goals
    for ep in episodes:
        hand = ep["observations"][-1, :3]
        assert ep["success"].any(), "the scripted policy should reach the goal it observes"
        assert np.linalg.norm(hand - ep["observations"][0, 36:39]) < 0.05


def test_episodes_by_suite_overrides_episodes(tmp_path):
    cfg = CollectConfig.from_dict({"episodes": 3, "n_prompt": 2, "max_steps": 2,
                                   "episodes_by_suite": {"ant_dir": 1, "cheetah_vel": 2}})
    assert [cfg.episodes_for(t) for t in ("reach-v2", "walker-walk", "ant-dir-4", "cheetah-vel-9")] == [3, 3, 1, 2]
    path = collect_task("ant-dir-0", _untrained_goal_expert("ant-dir-0"), cfg, tmp_path / "ant.h5")
    with _read(path) as data:
        assert data.summary()["n_episodes"] == 1 + 2 and int(data.attrs["episodes"]) == 1
    with pytest.raises(ConfigError, match="data.collect.episodes_by_suite: unknown suite 'antdir'"):
        CollectConfig.from_dict({"episodes_by_suite": {"antdir": 1000}})
    with pytest.raises(ValueError, match="episodes_by_suite.dmc: expected an int >= 1"):
        CollectConfig.from_dict({"episodes_by_suite": {"dmc": 0}})


def test_paper_preset_uses_the_authors_episode_counts_per_suite():
    import yaml

    root = Path(__file__).resolve().parents[1]
    col = yaml.safe_load((root / "workflow" / "presets" / "paper.yaml").read_text())["data"]["collect"]
    cfg = CollectConfig.from_dict(col)
    assert {s: cfg.episodes_for(t) for s, t in [("metaworld", "reach-v2"), ("dmc", "walker-walk"),
                                                 ("ant_dir", "ant-dir-0"), ("cheetah_vel", "cheetah-vel-0")]} \
        == {"metaworld": 2000, "dmc": 2000, "ant_dir": 1000, "cheetah_vel": 1000}


def test_flagged_expert_is_refused(tmp_path, caplog):
    expert = ScriptedExpert("reach-v2", action_noise=0.0,
                               evaluation={"score_mean": 10.0, "threshold": 60.0, "flagged": True})
    cfg = CollectConfig(episodes=1, n_prompt=2, max_steps=5)
    with pytest.raises(FlaggedExpertError, match="flagged"):
        collect_task("reach-v2", expert, cfg, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    cfg.allow_flagged = True
    with caplog.at_level(logging.WARNING, logger="m3dt"):
        collect_task("reach-v2", expert, cfg, tmp_path / "x.h5")
    assert (tmp_path / "x.h5").exists() and "collecting anyway" in caplog.text


def test_expert_table_and_figure(tmp_path, expert_root, pendulum_meta):
    cfg = ExpertConfig(eval_episodes=1, eval_max_steps=60, near_optimal_threshold=60.0)
    meta = train_expert("reach-v2", cfg, expert_root / "reach-v2")
    assert meta["kind"] == "scripted" and meta["evaluation"]["reach-v2"]["n_episodes"] == 1
    rows = expert_table_rows(["reach-v2", "pendulum-swingup"], expert_root)
    rows.append({"task": "ant-dir-0", "suite": "ant_dir", "expert_kind": "sac-goal", "train_steps": 10,
                 "score_mean": 20.0, "score_std": 0.0, "n_episodes": 1, "flagged": True})
    csv_path = write_expert_table(rows, tmp_path / "experts.csv")
    with open(csv_path) as f:
        reader = csv.DictReader(f)
        got = list(reader)
    assert reader.fieldnames[:8] == TABLE_COLUMNS
    assert [r["task"] for r in got] == ["reach-v2", "pendulum-swingup", "ant-dir-0"]
    assert [r["flagged"] for r in got] == ["False", "False", "True"]
    pngs = plot_expert_quality(csv_path, [tmp_path / "experts.png", tmp_path / "experts.pdf"])
    assert all(p.exists() and p.stat().st_size > 1000 for p in pngs)
    with pytest.raises(FileNotFoundError, match="walker-walk"):
        expert_table_rows(["walker-walk"], expert_root)


def test_cli_collect_and_table(tmp_path, expert_root, pendulum_meta):
    from m3dt.__main__ import main

    assert main(["data", "collect", "pendulum-swingup", "--expert-root", str(expert_root), "--out-dir",
                 str(tmp_path), "--episodes", "1", "--max-steps", "10"]) == 0
    assert (tmp_path / "pendulum-swingup.h5").exists()
    assert main(["data", "experts-table", "--tasks", "pendulum-swingup", "--expert-root", str(expert_root),
                 "--csv", str(tmp_path / "e.csv"), "--figure", str(tmp_path / "e.png")]) == 0
    assert (tmp_path / "e.csv").exists() and (tmp_path / "e.png").exists()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("experts:\n  eval_episodes: 1\n  eval_max_steps: 40\n  metaworld_action_noise: 0.0\n")
    root = tmp_path / "experts"
    assert main(["data", "train-expert", "reach-v3", "--expert-root", str(root), "--config", str(cfg)]) == 0
    meta = json.loads((root / "reach-v2" / "expert.json").read_text())
    assert meta["action_noise"] == 0.0 and meta["evaluation"]["reach-v2"]["n_episodes"] == 1
    assert main(["data", "experts-table", "--expert-root", str(root), "--csv", str(tmp_path / "all.csv"),
                 "--figure"]) == 0
    assert (tmp_path / "all.csv").read_text().splitlines()[1].startswith("reach-v2,metaworld,scripted,0,")


def test_family_overrides_reach_the_family_agent_only(tmp_path):
    """`family_overrides` sets a family agent's SAC settings (recorded in its expert.json and
    seen in its update count); a DMC expert keeps the common ones; the workflow's config.yaml
    trains families with SB3 at UTD 1."""
    import yaml

    cfg = ExpertConfig(**dict(TINY, curve_every=0, eval_max_steps=5, train_freq=2,
                              family_overrides={"train_freq": 1}, sac_steps_overrides={"cheetah-vel": 250}))
    assert cfg.for_expert("pendulum-swingup") is cfg and cfg.for_expert("cheetah-vel-3").train_freq == 1
    meta = train_expert("cheetah-vel", cfg, tmp_path / "cheetah-vel", eval_tasks=["cheetah-vel-0"])
    assert meta["config"]["train_freq"] == 1 and meta["train_key"]["train_freq"] == 1
    assert meta["n_updates"] == 250 - 50  # one update per env step after learning_starts (UTD 0.5 would give 100)
    assert ExpertConfig(**dict(TINY, train_freq=2)).for_expert("cheetah-vel").train_freq == 2  # none: the common
    with pytest.raises(ConfigError, match="family_overrides.*eval_episodes"):
        ExpertConfig(family_overrides={"eval_episodes": 3})  # not a SAC setting
    with pytest.raises(ConfigError, match="data.experts.family_overrides.train_freq"):
        ExpertConfig(family_overrides={"train_freq": "fast"})
    with pytest.raises(ConfigError, match="library"):
        ExpertConfig(family_overrides={"library": "tf-agents"})
    experts = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["data"]["experts"]
    workflow_cfg = ExpertConfig.from_dict(experts)
    for family in ("ant-dir", "cheetah-vel"):
        assert (workflow_cfg.for_expert(family).train_freq, workflow_cfg.for_expert(family).library) == (1, "sb3")
    assert workflow_cfg.for_expert("walker-stand").train_freq == 2


def test_settings_of_an_expert_are_only_what_decides_its_files():
    """What the workflow's train_expert job gets (and reruns on): training settings matter for
    a SAC expert that trains, not for a scripted or a bundled one; family_overrides only for
    the families; the result is a valid config of the expert's own settings."""
    from m3dt.experts.bundle import bundled_names

    bundled = "reacher-hard"
    untrained = next(t for t in tasks.tasks_of_suite("dmc") if t not in bundled_names())  # the bundle grows
    assert bundled in bundled_names() and untrained not in bundled_names()
    base = ExpertConfig(source="bundled", train_freq=2, family_overrides={"train_freq": 1})
    changed = ExpertConfig(source="bundled", train_freq=4, library="sbx", family_overrides={"train_freq": 1})
    for name in ("reach-v2", bundled, "ant-dir"):
        assert base.settings_of(name) == changed.settings_of(name), name
    assert base.settings_of(untrained) != changed.settings_of(untrained)
    assert base.settings_of(untrained)["train_freq"] == 2 and "family_overrides" not in base.settings_of(untrained)
    train = ExpertConfig(source="train", train_freq=2, family_overrides={"train_freq": 1})
    assert ExpertConfig.from_dict(train.settings_of("cheetah-vel")).train_freq == 1
    other_family = ExpertConfig(source="train", train_freq=2, family_overrides={"train_freq": 3})
    assert train.settings_of(untrained) == other_family.settings_of(untrained)
    assert train.settings_of("cheetah-vel") != other_family.settings_of("cheetah-vel")
    assert base.settings_of("reach-v2")["eval_episodes"] == base.eval_episodes  # evaluation still counts
