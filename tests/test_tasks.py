"""The MT160 registry and the padded environments of all 160 tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from m3dt import tasks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "task_lists"


def test_counts_per_suite():
    assert len(tasks.MT160) == 160 == len(set(tasks.MT160)) == len(tasks.REGISTRY)
    counts = Counter(tasks.get(n).suite for n in tasks.MT160)
    assert counts == {"metaworld": 50, "dmc": 30, "ant_dir": 40, "cheetah_vel": 40}


def test_authors_names_and_order():
    assert tasks.MT160[0] == "basketball-v2"
    assert "cartpole-balance-sparse" in tasks.MT160
    assert tasks.MT160[-1] == "cheetah-vel-39"
    assert [n for n in tasks.MT160 if n.startswith("ant-dir-")] == [f"ant-dir-{i}" for i in range(40)]


@pytest.mark.parametrize("n", tasks.BENCHMARK_SIZES)
@pytest.mark.parametrize("seed", tasks.BENCHMARK_SEEDS)
def test_benchmark_subsets(n, seed):
    subset = tasks.benchmark(n, seed)
    assert len(subset) == n == len(set(subset))
    assert set(subset) <= set(tasks.MT160)
    if SHARED.exists():  # the package data are the authors' lists, verbatim
        raw = json.loads((SHARED / f"task_160_seed{seed}.json").read_text())
        assert list(subset) == raw[f"mt{n}_task_list"]


def test_benchmark_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        tasks.benchmark(30, 0)
    with pytest.raises(ValueError, match="seed"):
        tasks.benchmark(10, 7)


def test_action_dims_from_mask_file():
    masks = json.loads((Path(tasks.__file__).parent / "data" / "action_mask.json").read_text())
    for name in tasks.MT160:
        spec = tasks.get(name)
        family = {"metaworld": "meta-world", "ant_dir": "ant-dir", "cheetah_vel": "cheetah-vel"}.get(spec.suite, name)
        assert spec.action_dim == masks[family], name
        assert sum(spec.action_mask) == spec.action_dim
    assert tasks.get("reacher-three-easy").action_dim == 3
    assert tasks.get("fish-swim").action_dim == 5
    assert tasks.get("ant-dir-7").action_dim == 8
    assert tasks.get("cheetah-vel-0").action_dim == 6


def test_suite_constants():
    mw, dmc, ant, chv = (tasks.get(n) for n in ("reach-v2", "walker-walk", "ant-dir-0", "cheetah-vel-0"))
    assert (mw.episode_length, mw.rtg_target, mw.rtg_scale, mw.eval_episodes) == (500, 4500, 1000, 10)
    assert (dmc.episode_length, dmc.rtg_target, dmc.rtg_scale, dmc.eval_episodes) == (500, 1000, 200, 10)
    assert (ant.episode_length, ant.rtg_target, ant.rtg_scale, ant.eval_episodes) == (200, 500, 500, 1)
    assert (chv.episode_length, chv.rtg_target, chv.rtg_scale, chv.eval_episodes) == (200, 0, 200, 1)
    assert (mw.obs_dim, ant.obs_dim, chv.obs_dim) == (39, 27, 20)
    assert chv.goal == pytest.approx(0.075) and tasks.get("cheetah-vel-39").goal == pytest.approx(3.0)


def test_unknown_name_lists_closest():
    with pytest.raises(KeyError, match="reach-v2"):
        tasks.get("reach-v4")
    with pytest.raises(KeyError, match="walker-walk"):
        tasks.get("walker_walk")
    assert tasks.get("reach-v3").name == "reach-v2"


@pytest.mark.parametrize(
    "task,ret,success,expected",
    [
        ("reach-v2", 0.0, True, 100.0),
        ("reach-v2", 4000.0, False, 0.0),
        ("walker-walk", 0.0, None, 0.0),
        ("walker-walk", 1000.0, None, 100.0),
        ("walker-walk", 537.0, None, 53.7),
        ("ant-dir-0", -50.0, None, 0.0),
        ("ant-dir-0", 0.0, None, 0.0),
        ("ant-dir-0", 250.0, None, 50.0),
        ("ant-dir-0", 500.0, None, 100.0),
        ("ant-dir-0", 900.0, None, 100.0),
        ("cheetah-vel-0", -100.5, None, 0.0),
        ("cheetah-vel-0", -100.0, None, 0.0),
        ("cheetah-vel-0", -65.0, None, 50.0),
        ("cheetah-vel-0", -30.0, None, 100.0),
        ("cheetah-vel-0", -29.0, None, 100.0),
        ("cheetah-vel-0", -5.0, None, 100.0),
    ],
)
def test_normalized_score_boundaries(task, ret, success, expected):
    assert tasks.get(task).normalized_score(ret, success) == pytest.approx(expected)


def test_normalized_score_bad_input():
    with pytest.raises(ValueError, match="success"):
        tasks.get("reach-v2").normalized_score(10.0)
    with pytest.raises(ValueError, match="finite"):
        tasks.get("walker-walk").normalized_score(float("nan"))


@pytest.mark.parametrize("name", tasks.MT160)
def test_every_task_constructs_and_steps(name):
    spec = tasks.get(name)
    env = tasks.make_env(name, seed=0)
    obs, info = env.reset(seed=1)
    assert obs.shape == (tasks.OBS_PAD,) and obs.dtype == np.float32
    assert np.all(obs[spec.obs_dim:] == 0)
    assert info["action_mask"].tolist() == list(spec.action_mask)
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, tasks.ACT_PAD))
        assert obs.shape == (tasks.OBS_PAD,) and np.isfinite(obs).all() and np.isfinite(reward)
        assert np.all(obs[spec.obs_dim:] == 0)
        assert not truncated
    env.close()


@pytest.mark.parametrize("name", ["reach-v2", "cartpole-swingup", "walker-run-backwards", "ant-dir-5", "cheetah-vel-7"])
def test_full_episode_reports_score(name):
    spec = tasks.get(name)
    env = tasks.make_env(name, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, tasks.ACT_PAD) * 0.1)
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert steps <= spec.episode_length
    assert terminated or steps == spec.episode_length
    ep = info["episode"]
    assert ep["length"] == steps and ep["return"] == pytest.approx(total)
    success = ep["success"] if spec.suite == "metaworld" else None
    assert ep["normalized_score"] == pytest.approx(spec.normalized_score(total, success))


@pytest.mark.parametrize("name", ["door-open-v2", "finger-turn-hard", "cup-spin", "ant-dir-3", "cheetah-vel-20"])
def test_reset_is_deterministic(name):
    def rollout(seed):
        env = tasks.make_env(name, seed=123)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        rng = np.random.default_rng(0)
        for _ in range(5):
            out.append(env.step(rng.uniform(-1, 1, tasks.ACT_PAD))[0])
        return np.stack(out)

    a, b = rollout(7), rollout(7)
    np.testing.assert_array_equal(a, b)


def test_reset_seed_changes_initial_state():
    env = tasks.make_env("walker-walk", seed=0)
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=2)
    c, _ = env.reset(seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_padded_actions_beyond_action_dim_are_ignored():
    def first_step(pad_value):
        env = tasks.make_env("pendulum-swingup", seed=0)
        env.reset(seed=0)
        action = np.full(tasks.ACT_PAD, pad_value)
        action[0] = 0.5
        return env.step(action)[0]

    np.testing.assert_array_equal(first_step(0.0), first_step(-10.0))


def _mt1_goal(env_name, i):
    """The goal position of `MT1(env_name, seed=0).train_tasks[i]` (the last 3 dims of its rand_vec)."""
    import pickle

    import metaworld

    return np.asarray(pickle.loads(metaworld.MT1(env_name, seed=0).train_tasks[i].data)["rand_vec"][-3:])


def test_metaworld_goal_varies_over_reset_seeds_and_is_deterministic():
    env = tasks.make_env("reach-v2", seed=0)
    goals, infos = [], []
    for s in range(10):
        obs, info = env.reset(seed=s)
        goals.append(obs[36:39].copy())
        infos.append(info["goal_index"])
    assert np.all(np.stack(goals) != 0)  # goal-observable
    assert len({tuple(g) for g in goals}) == 10  # ten seeds, ten goals
    assert infos == list(range(10))  # reset(seed=s) uses variation s % 50
    np.testing.assert_allclose(goals[3], _mt1_goal("reach-v3", 3), atol=1e-6)
    again, _ = tasks.make_env("reach-v2").reset(seed=3)
    np.testing.assert_array_equal(again[36:39], goals[3])  # deterministic per seed, across envs
    assert env.reset(seed=53)[1]["goal_index"] == 3
    assert env.reset()[1]["goal_index"] == 4  # an unseeded reset moves on to the next goal


def test_metaworld_pinned_goal_is_train_task_i():
    for i in (0, 7, 49):
        env = tasks.make_env("reach-v2", goal_index=i)
        for s in (0, 11, 12):
            obs, info = env.reset(seed=s)
            assert info["goal_index"] == i
            np.testing.assert_allclose(obs[36:39], _mt1_goal("reach-v3", i), atol=1e-6)
    free = tasks.make_env("reach-v2")
    obs, info = free.reset(seed=5, options={"goal_index": 8})  # per-reset pin
    assert info["goal_index"] == 8
    np.testing.assert_allclose(obs[36:39], _mt1_goal("reach-v3", 8), atol=1e-6)


@pytest.mark.parametrize("name,goal_index,match", [("reach-v2", 50, "goal_index must be an int in"),
                                                   ("reach-v2", -1, "goal_index must be an int in"),
                                                   ("walker-walk", 0, "walker-walk: goal_index=0 given"),
                                                   ("ant-dir-3", 1, "one fixed goal")])
def test_goal_index_bad_input(name, goal_index, match):
    with pytest.raises(ValueError, match=match):
        tasks.make_env(name, goal_index=goal_index)


def test_goal_variations_in_registry():
    assert tasks.get("reach-v2").goal_variations == 50
    assert tasks.get("walker-walk").goal_variations == tasks.get("ant-dir-3").goal_variations == 0


def test_ant_dir_reward_follows_goal_direction():
    """Moving along the goal direction pays, moving against it costs."""
    from m3dt.tasks.envs.locomotion import AntDirEnv

    env = AntDirEnv(angle=0.0)
    env.reset(seed=0)
    data = env.unwrapped.data
    data.qvel[0] = 2.0  # torso moving along +x (the goal direction)
    _, r_fwd, *_ = env.step(np.zeros(8))
    env.reset(seed=0)
    env.unwrapped.data.qvel[0] = -2.0
    _, r_back, *_ = env.step(np.zeros(8))
    assert r_fwd > 1.0 > r_back


def test_cheetah_vel_reward_peaks_at_target():
    from m3dt.tasks.envs.locomotion import CheetahVelEnv

    def reward_at(v):
        env = CheetahVelEnv(target_velocity=1.5)
        env.reset(seed=0)
        env.unwrapped.data.qvel[0] = v
        return env.step(np.zeros(6))[1]

    assert reward_at(1.5) > reward_at(0.0)
    assert reward_at(1.5) > reward_at(3.0)
    assert reward_at(1.5) > -0.5


def test_ant_dir_reward_terms_match_the_authors_formula():
    """PEARL / Prompt-DT ant-dir: r = v_torso . (cos t, sin t) - 0.5 |a|^2 + 1 (contact cost
    0, as their mujoco-py 2.0 data), the survive reward paid on the terminating step too;
    obs = (qpos[2:], qvel); done when torso z leaves [0.2, 1]."""
    from m3dt.tasks.envs.locomotion import AntDirEnv

    theta = 2.1
    env = AntDirEnv(angle=theta)
    env.reset(seed=3)
    data, dt = env.unwrapped.data, env.unwrapped.dt
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.uniform(-1, 1, 8)
        before = data.body("torso").xpos.copy()
        obs, r, terminated, _, info = env.step(a)
        vel = (data.body("torso").xpos - before)[:2] / dt
        want = vel @ np.array([np.cos(theta), np.sin(theta)]) - 0.5 * a @ a + 1.0
        assert r == pytest.approx(want, abs=1e-9) and not terminated
        np.testing.assert_allclose(obs, np.concatenate([data.qpos[2:], data.qvel]))
    assert info["reward_contact"] != 0.0  # the simulator has contact forces; the reward ignores them
    with_contact = AntDirEnv(angle=theta, contact_cost=True)
    with_contact.reset(seed=3)
    for _ in range(5):
        a = rng.uniform(-1, 1, 8)
        before = with_contact.unwrapped.data.body("torso").xpos.copy()
        _, r, _, _, info = with_contact.step(a)
        vel = (with_contact.unwrapped.data.body("torso").xpos - before)[:2] / dt
        want = vel @ np.array([np.cos(theta), np.sin(theta)]) - 0.5 * a @ a + 1.0 + info["reward_contact"]
        assert r == pytest.approx(want, abs=1e-9)
    env.reset(seed=3)
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    qpos[2], qvel[:] = 1.5, 0.0  # torso above 1.0: unhealthy
    env.unwrapped.set_state(qpos, qvel)
    before = data.body("torso").xpos.copy()
    _, r, terminated, _, _ = env.step(np.zeros(8))
    vel = (data.body("torso").xpos - before)[:2] / dt
    assert terminated and r == pytest.approx(vel @ np.array([np.cos(theta), np.sin(theta)]) + 1.0, abs=1e-9)


def test_cheetah_vel_reward_terms_match_the_authors_formula():
    """PEARL / Prompt-DT cheetah-vel: r = -|dx/dt - v*| - 0.05 |a|^2, obs = (qpos[1:], qvel,
    torso com), never terminates, 200-step episodes."""
    spec = tasks.get("cheetah-vel-7")
    env = tasks.make_env("cheetah-vel-7", seed=0)
    raw = env.unwrapped
    rng = np.random.default_rng(1)
    for t in range(spec.episode_length):
        a = rng.uniform(-1, 1, 8)
        x0 = raw.data.qpos[0]
        obs, r, terminated, truncated, _ = env.step(a)
        want = -abs((raw.data.qpos[0] - x0) / raw.dt - spec.goal) - 0.05 * a[:6] @ a[:6]
        assert r == pytest.approx(want, abs=1e-9) and not terminated
        assert truncated == (t == spec.episode_length - 1)
    np.testing.assert_allclose(obs[:20], np.concatenate([raw.data.qpos[1:], raw.data.qvel,
                                                         raw.data.body("torso").xpos]), rtol=1e-6, atol=1e-6)
    assert tasks.get("ant-dir-0").episode_length == spec.episode_length == 200


def test_cli_prints_registry_csv():
    out = subprocess.run([sys.executable, "-m", "m3dt", "tasks", "--suite", "ant_dir", "--csv"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()
    assert out[0].startswith("task,suite,obs_dim,action_dim")
    assert len(out) == 41 and out[1].startswith("ant-dir-0,ant_dir,27,8")
