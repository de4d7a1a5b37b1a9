"""Segment sampler: a hand-computed tiny task, normalisation, length-proportional sampling,
identity with the readable per-sample reference, round robin, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m3dt import tasks
from m3dt.data.sampler import (Batch, MultiTaskSampler, SamplerConfig, authors_prompt_rank, prompt_window,
                               returns_to_go, top_episodes)
from m3dt.data.sampler_reference import NaiveSampler, discount_cumsum
from m3dt.data.store import TaskData, open_task_data, write_task_data
from m3dt.dataclass_io import ConfigError


class FixedDraws:
    """Stands in for the sampler's Generator: hands out preset (4, B) uniforms."""

    def __init__(self, *draws: np.ndarray) -> None:
        self.draws = list(draws)

    def random(self, shape):
        u = np.asarray(self.draws.pop(0), dtype=np.float64)
        assert u.shape == tuple(shape)
        return u


def ep(obs, acts, rewards):
    obs = np.asarray(obs, np.float32)
    return {"observations": obs, "actions": np.asarray(acts, np.float32).reshape(len(obs), -1),
            "rewards": np.asarray(rewards, np.float32), "terminals": np.zeros(len(obs), bool)}


@pytest.fixture
def tiny() -> TaskData:
    """pendulum-swingup (obs 3, act 1, rtg_scale 200): two 3-step training episodes and two
    prompt episodes (6 and 3 steps). Training obs: col0 = 0,2,0,2,0,2 (mean 1, std 1),
    col1 = 1 everywhere (std 0 -> floor 1e-6), col2 = 0,0,0,4,4,4 (mean 2, std 2)."""
    episodes = [
        ep([[0, 1, 0], [2, 1, 0], [0, 1, 0]], [0.1, 0.2, 0.3], [1, 2, 3]),
        ep([[2, 1, 4], [0, 1, 4], [2, 1, 4]], [0.4, 0.5, 0.6], [10, 20, 30]),
        ep([[t, 1, 2] for t in range(6)], [-0.1 * t for t in range(6)], [1, 2, 3, 4, 5, 6]),  # prompt 0
        ep([[1, 1, 6], [3, 1, 6], [5, 1, 6]], [0.7, 0.8, 0.9], [7, 8, 9]),  # prompt 1
    ]
    return TaskData.from_episodes("pendulum-swingup", episodes, n_prompt=2)


def draws(episode_step: list[int], start: list[int], prompt: list[int], total=6, ep_len=3, n_prompt=2):
    """Uniforms that pick the selected step `episode_step` (0..5: ep0 steps 0-2, ep1 3-5), the
    start, and the prompt episode."""
    B = len(start)
    return np.stack([np.full(B, 0.5), (np.array(episode_step) + 0.5) / total, (np.array(start) + 0.5) / ep_len,
                     (np.array(prompt) + 0.5) / n_prompt])


def test_hand_computed_tiny_task(tiny):
    assert tiny.state_mean.tolist() == [1, 1, 2] and tiny.state_std.tolist() == [1, np.float32(1e-6), 2]
    # the non-authors prompt options: the last 5 steps, random episode, training statistics
    cfg = SamplerConfig(K=4, prompt_len=5, batch_size=2, prompt_choice="random", prompt_stats="train",
                        prompt_end_offset=0)
    s = MultiTaskSampler({"pendulum-swingup": tiny}, cfg)
    # sample 0: episode 0 from step 0 (3 real steps); sample 1: episode 1 from step 2 (1 real step)
    s.rng = FixedDraws(draws([1, 4], [0, 2], [0, 1]))
    b = s.sample().numpy()
    pad = [0.0] * 39

    def st(*rows):
        return [list(r) + [0.0] * 36 for r in rows]

    assert b["states"].shape == (2, 4, 39)
    np.testing.assert_array_equal(b["states"][0], [pad] + st([-1, 0, -1], [1, 0, -1], [-1, 0, -1]))
    np.testing.assert_array_equal(b["states"][1], [pad, pad, pad] + st([1, 0, 1]))
    A = np.zeros((2, 4, 8), np.float32)
    A[0, 0] = -10
    A[0, 1:, 0] = [0.1, 0.2, 0.3]
    A[1, :3] = -10
    A[1, 3, 0] = 0.6
    np.testing.assert_array_equal(b["actions"], A)
    np.testing.assert_allclose(b["rtg"][..., 0], [[0, 6 / 200, 5 / 200, 3 / 200], [0, 0, 0, 30 / 200]], rtol=1e-7)
    assert b["timesteps"].tolist() == [[0, 0, 1, 2], [0, 0, 0, 2]]
    assert b["attn_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert b["action_mask"].tolist() == [[1, 0, 0, 0, 0, 0, 0, 0]] * 2
    assert b["task_index"].tolist() == [0, 0]
    # prompt of sample 0: prompt episode 0 (6 steps), its last 5 steps 1..5
    np.testing.assert_array_equal(b["prompt_states"][0, :, :3], [[t - 1, 0, 0] for t in range(1, 6)])
    np.testing.assert_allclose(b["prompt_actions"][0, :, 0], [-0.1 * t for t in range(1, 6)], rtol=1e-6)
    assert np.all(b["prompt_actions"][0, :, 1:] == 0)
    np.testing.assert_allclose(b["prompt_rtg"][0, :, 0], np.array([20, 18, 15, 11, 6]) / 200, rtol=1e-7)
    assert b["prompt_timesteps"][0].tolist() == [1, 2, 3, 4, 5] and b["prompt_mask"][0].tolist() == [1] * 5
    # prompt of sample 1: prompt episode 1 (3 steps), left-padded to 5
    np.testing.assert_array_equal(b["prompt_states"][1, :, :3], [[0, 0, 0]] * 2 + [[0, 0, 2], [2, 0, 2], [4, 0, 2]])
    np.testing.assert_allclose(b["prompt_actions"][1, :, 0], [-10, -10, 0.7, 0.8, 0.9], rtol=1e-6)
    assert np.all(b["prompt_actions"][1, :2] == -10) and np.all(b["prompt_actions"][1, 2:, 1:] == 0)
    np.testing.assert_allclose(b["prompt_rtg"][1, :, 0], np.array([0, 0, 24, 17, 9]) / 200, rtol=1e-7)
    assert b["prompt_timesteps"][1].tolist() == [0, 0, 0, 1, 2] and b["prompt_mask"][1].tolist() == [0, 0, 1, 1, 1]
    # the loss mask covers exactly the real action dims (1) of the real steps (3 + 1)
    lm = Batch.from_numpy(b).loss_mask.numpy()
    assert lm.shape == (2, 4, 8) and lm.sum() == 4
    np.testing.assert_array_equal(lm[..., 0], b["attn_mask"])


def test_authors_prompt_options_are_the_default(tiny):
    cfg = SamplerConfig(K=4, batch_size=5)
    assert cfg == SamplerConfig.authors(K=4, batch_size=5)
    assert (cfg.prompt_choice, cfg.prompt_stats, cfg.prompt_end_offset) == ("authors", "prompt", 1)
    s = MultiTaskSampler({"pendulum-swingup": tiny}, cfg)
    s.rng = FixedDraws(draws([0] * 5, [0] * 5, [0] * 5))
    b = s.sample().numpy()
    # window of the authors: si = max(0, T - 5 - 1): episode 0 (6 steps) -> steps 0..4
    # prompt returns: episode 0: 21, episode 1: 24 -> positions 0 and 2 take episode 0, others episode 1
    ts = b["prompt_timesteps"].tolist()
    assert ts == [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 1, 2], [0, 0, 0, 1, 2]]
    np.testing.assert_allclose(b["prompt_rtg"][0, :, 0], np.array([21, 20, 18, 15, 11]) / 200, rtol=1e-7)
    # prompt states normalised with the prompt episodes' own mean / std
    x = np.concatenate([tiny.episode(2)["observations"], tiny.episode(3)["observations"]]).astype(np.float64)
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    np.testing.assert_allclose(b["prompt_states"][0, :, :3], (tiny.episode(2)["observations"][:5] - mean) / std,
                               rtol=1e-5, atol=1e-6)
    assert authors_prompt_rank(np.arange(6), np.full(6, 2)).tolist() == [0, 1, 0, 1, 1, 1]
    assert s.prompt_returns("pendulum-swingup") == [21.0, 24.0]


def test_authors_prompt_window_on_a_long_episode():
    """A 12-step prompt episode: the authors' window is steps T-6..T-2 = 6..10, RTG to the end,
    states normalised with the prompt episodes' own statistics."""
    T = 12
    obs = [[t, (t % 3) * 2.0, 1.0] for t in range(T)]
    short = ep([[100, 0, 0], [102, 0, 2]], [0.0, 0.0], [50, 50])  # the other prompt episode (return 100)
    train = ep([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [0.1, 0.2, 0.3], [1, 2, 3])
    data = TaskData.from_episodes("pendulum-swingup",
                                  [train, ep(obs, [0.01 * t for t in range(T)], list(range(1, T + 1))), short],
                                  n_prompt=2)
    s = MultiTaskSampler({"pendulum-swingup": data}, SamplerConfig(K=4, batch_size=4))
    assert s.prompt_returns("pendulum-swingup") == [78.0, 100.0]
    assert prompt_window(T, 5, 1) == (6, 11)
    p = [x.numpy()[0] for x in s.prompt("pendulum-swingup", 0)]  # states, actions, rtg, timesteps, mask
    assert p[3].tolist() == [6, 7, 8, 9, 10] and p[4].tolist() == [1] * 5
    np.testing.assert_allclose(p[1][:, 0], [0.06, 0.07, 0.08, 0.09, 0.10], rtol=1e-6)
    np.testing.assert_allclose(p[2][:, 0], np.array([sum(range(t + 1, T + 1)) for t in range(6, 11)]) / 200,
                               rtol=1e-6)
    x = np.array(obs + [[100, 0, 0], [102, 0, 2]], np.float64)  # both prompt episodes, not the training data
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    np.testing.assert_allclose(p[0][:, :3], (np.array(obs[6:11]) - mean) / std, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean, s.stats("pendulum-swingup")[0])
    # batch positions 0 and 2 take the lower-return episode (0), the others the higher (1)
    b = s.sample()
    assert b.prompt_timesteps[:, -1].tolist() == [10, 1, 10, 1]


def test_helpers():
    assert prompt_window(6, 5) == (1, 6) and prompt_window(6, 5, 1) == (0, 5) and prompt_window(3, 5, 1) == (0, 3)
    r = np.array([1, 2, 3, 10, 20], np.float32)
    np.testing.assert_array_equal(returns_to_go(r, np.array([0, 3]), np.array([3, 2])), [6, 5, 3, 30, 20])
    assert discount_cumsum([1.0, 2.0, 3.0]) == [6.0, 5.0, 3.0]
    # top pct_traj: returns 1, 4, 3, 2 with 2 steps each; budget 0.5 * 8 = 4 steps -> episodes 1 and 2
    assert top_episodes(np.array([2, 2, 2, 2]), np.array([1, 4, 3, 2.0]), 0.5).tolist() == [1, 2]
    assert top_episodes(np.array([5, 1]), np.array([1.0, 0.0]), 0.1).tolist() == [0]  # the best one always
    assert top_episodes(np.array([2, 2]), np.array([1.0, 0.0]), 1.0).tolist() == [0, 1]


def random_task(task: str, lengths: list[int], seed: int, scale: float = 1.0) -> TaskData:
    spec = tasks.get(task)
    rng = np.random.default_rng(seed)
    eps = [ep(rng.normal(3.0, scale, (T, spec.obs_dim)), rng.uniform(-1, 1, (T, spec.action_dim)),
              rng.normal(size=T)) for T in lengths]
    return TaskData.from_episodes(task, eps)


def test_normalisation_and_padding_on_random_data():
    data = random_task("walker-walk", [30, 25, 40, 7, 9], seed=1, scale=5.0)
    s = MultiTaskSampler({"walker-walk": data}, SamplerConfig(K=10, batch_size=512, seed=2))
    b = s.sample().numpy()
    real = b["attn_mask"].astype(bool)
    od = data.spec.obs_dim
    assert np.all(b["states"][..., od:] == 0) and np.all(b["states"][~real] == 0)
    assert np.all(b["actions"][~real] == -10) and np.all(b["actions"][real][:, data.spec.action_dim:] == 0)
    assert np.all(b["rtg"][~real] == 0) and np.all(b["timesteps"][~real] == 0)
    # real states map back to training rows: x = state * std + mean must be a row of the data
    x = b["states"][real][:, :od] * data.state_std + data.state_mean
    train_rows = np.concatenate([data.episode(i)["observations"] for i in data.train_episodes])
    d = np.abs(x[:, None, :] - train_rows[None, :, :]).max(-1).min(1)
    assert d.max() < 1e-4
    z = b["states"][real][:, :od]
    assert abs(z.mean()) < 0.2 and abs(z.std() - 1) < 0.2  # roughly standardised
    # left padding: all padding comes before the first real step
    assert np.all(np.diff(b["attn_mask"], axis=1) >= 0)


def test_episode_probability_proportional_to_length():
    spec = tasks.get("pendulum-swingup")
    lengths = [1, 3, 6]
    eps = [ep(np.zeros((T, spec.obs_dim)), np.full(T, float(i)), np.zeros(T)) for i, T in enumerate(lengths)]
    eps += [ep(np.zeros((4, 3)), np.zeros(4), np.zeros(4))] * 2
    data = TaskData.from_episodes("pendulum-swingup", eps)
    s = MultiTaskSampler({"pendulum-swingup": data}, SamplerConfig(K=1, seed=0))
    b = s.sample_task("pendulum-swingup", batch_size=30000).numpy()
    which = b["actions"][:, -1, 0].round().astype(int)
    freq = np.bincount(which, minlength=3) / len(which)
    np.testing.assert_allclose(freq, np.array(lengths) / 10, atol=0.015)
    starts = b["timesteps"][which == 2, -1]
    np.testing.assert_allclose(np.bincount(starts, minlength=6) / len(starts), 1 / 6, atol=0.02)


def test_pct_traj_restricts_to_best_episodes():
    spec = tasks.get("pendulum-swingup")
    rets = [1.0, 4.0, 3.0, 2.0]
    eps = [ep(np.zeros((2, 3)), np.full(2, float(i)), np.full(2, r / 2)) for i, r in enumerate(rets)]
    eps += [ep(np.zeros((2, spec.obs_dim)), np.zeros(2), np.zeros(2))] * 2
    data = TaskData.from_episodes("pendulum-swingup", eps)
    s = MultiTaskSampler({"pendulum-swingup": data}, SamplerConfig(K=1, pct_traj=0.5))
    which = s.sample_task("pendulum-swingup", 2000).actions[:, -1, 0].round().int().unique().tolist()
    assert sorted(which) == [1, 2]


@pytest.fixture(scope="module")
def four_tasks() -> dict[str, TaskData]:
    """Four suites, different dims, episodes shorter than K and than the prompt."""
    return {
        "reach-v2": random_task("reach-v2", [30, 3, 50, 12, 2, 40], seed=1),
        "pendulum-swingup": random_task("pendulum-swingup", [1, 7, 25, 4, 3], seed=2),
        "cheetah-vel-3": random_task("cheetah-vel-3", [20, 21, 22, 23, 19], seed=3),
        "ant-dir-1": random_task("ant-dir-1", [60, 5, 8, 33, 70, 4], seed=4),
    }


def assert_same_batch(x: Batch, y: Batch) -> None:
    a, b = x.numpy(), y.numpy()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("cfg", [
    SamplerConfig(K=20, mode="round_robin", seed=0),
    SamplerConfig(K=8, mode="mixed", batch_size=64, seed=1),
    SamplerConfig(K=20, mode="mixed", pct_traj=0.6, prompt_len=7, seed=2),
    SamplerConfig.authors(K=5, mode="mixed", batch_size=40, seed=3),
    SamplerConfig.authors(K=20, mode="round_robin", seed=4),
], ids=["round_robin", "mixed", "mixed_pct", "authors_mixed", "authors_round_robin"])
def test_vectorised_equals_naive_reference(four_tasks, cfg):
    fast, naive = MultiTaskSampler(four_tasks, cfg), NaiveSampler(four_tasks, cfg)
    for _ in range(9):
        assert_same_batch(fast.sample(), naive.sample())
    assert_same_batch(fast.sample_task("ant-dir-1", 33), naive.sample_task("ant-dir-1", 33))
    assert_same_batch(fast.sample("reach-v3"), naive.sample("reach-v3"))


def test_round_robin_cycles_and_mixed_mixes(four_tasks):
    s = MultiTaskSampler(four_tasks, SamplerConfig(mode="round_robin"))
    seen = []
    for step in range(9):
        name, b = s.next(step)
        assert len(set(b.task_index.tolist())) == 1
        assert name == s.tasks[b.task_index[0]]
        seen.append(int(b.task_index[0]))
    assert seen == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert s.tasks == ["reach-v2", "pendulum-swingup", "cheetah-vel-3", "ant-dir-1"]
    m = MultiTaskSampler(four_tasks, SamplerConfig(mode="mixed", batch_size=400))
    name, b = m.next(0)
    counts = np.bincount(b.task_index.numpy(), minlength=4)
    assert name == "mixed" and counts.min() > 60
    # the action mask follows each sample's task
    dims = np.array([tasks.get(t).action_dim for t in m.tasks])
    assert b.action_mask.sum(1).numpy().tolist() == dims[b.task_index.numpy()].tolist()


def test_deterministic_and_resumable(four_tasks):
    cfg = SamplerConfig(mode="mixed", seed=11)
    a, b = MultiTaskSampler(four_tasks, cfg), MultiTaskSampler(four_tasks, cfg)
    assert_same_batch(a.sample(), b.sample())
    c = MultiTaskSampler(four_tasks, SamplerConfig(mode="mixed", seed=12))
    assert not torch.equal(a.sample().states, c.sample().states)
    r = MultiTaskSampler(four_tasks, SamplerConfig(mode="round_robin", seed=5))
    r.sample()
    state = r.state_dict()
    want = [r.sample() for _ in range(3)]
    r2 = MultiTaskSampler(four_tasks, SamplerConfig(mode="round_robin", seed=99))
    r2.load_state_dict(state)
    for w in want:
        assert_same_batch(r2.sample(), w)


def test_file_backed_equals_in_memory(tmp_path, four_tasks):
    files = {}
    for name, d in four_tasks.items():
        eps = [d.episode(i) for i in range(d.n_episodes)]
        files[name] = open_task_data(write_task_data(tmp_path / f"{name}.h5", name, eps))
    cfg = SamplerConfig(mode="mixed", seed=3)
    assert_same_batch(MultiTaskSampler(files, cfg).sample(), MultiTaskSampler(four_tasks, cfg).sample())
    for f in files.values():
        f.close()


def test_batch_to_prompt_and_errors(four_tasks):
    s = MultiTaskSampler(four_tasks, SamplerConfig(batch_size=4))
    b = s.sample().to("cpu")
    assert b.states.dtype == torch.float32 and b.timesteps.dtype == torch.int64 and len(b) == 4
    assert [t.shape for t in b.inputs] == [(4, 20, 39), (4, 20, 8), (4, 20, 1), (4, 20), (4, 20)]
    assert [t.shape for t in b.prompt] == [(4, 5, 39), (4, 5, 8), (4, 5, 1), (4, 5), (4, 5)]
    p = s.prompt("cheetah-vel-3", 1)
    assert [t.shape for t in p] == [(1, 5, 39), (1, 5, 8), (1, 5, 1), (1, 5), (1, 5)]
    mean, std = s.stats("ant-dir-1")
    assert mean.shape == (27,) and np.array_equal(std, four_tasks["ant-dir-1"].state_std)
    with pytest.raises(KeyError, match="not one of this sampler"):
        s.sample_task("walker-walk")
    with pytest.raises(ValueError, match="mode"):
        SamplerConfig(mode="shuffled")
    with pytest.raises(ConfigError, match=r"\['train.sampler.k'\]"):
        SamplerConfig.from_dict({"k": 20})
    with pytest.raises(ValueError, match="holds task"):
        MultiTaskSampler({"reach-v2": four_tasks["pendulum-swingup"]})
