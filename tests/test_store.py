"""HDF5 task-data store: round trip, attributes, atomic writes, validation against the registry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from m3dt import tasks
from m3dt.data import store
from m3dt.data.store import TaskData, TaskDataError, open_task_data, write_task_data


def make_episodes(task: str, lengths: list[int], seed: int = 0, success_at: dict[int, int] | None = None) -> list[dict]:
    spec = tasks.get(task)
    rng = np.random.default_rng(seed)
    eps = []
    for i, T in enumerate(lengths):
        succ = np.zeros(T, bool)
        if success_at and i in success_at:
            succ[success_at[i]] = True
        eps.append({
            "observations": rng.normal(size=(T, spec.obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (T, spec.action_dim)).astype(np.float32),
            "rewards": rng.uniform(0, 1, T).astype(np.float32),
            "terminals": np.arange(T) == T - 1,
            "success": succ,
        })
    return eps


def test_round_trip_arrays_and_attrs(tmp_path):
    eps = make_episodes("reach-v2", [5, 7, 3, 4, 6], success_at={1: 3, 3: 0})
    path = write_task_data(tmp_path / "sub" / "reach-v2.h5", "reach-v3", eps,
                           attrs={"expert": "scripted", "seed": 7, "note": {"a": [1, 2]}, "source": "collect"})
    assert path == tmp_path / "sub" / "reach-v2.h5" and path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["reach-v2.h5"]  # no temp file left
    with open_task_data(path) as data:
        assert data.task == "reach-v2" and data.spec is tasks.get("reach-v2")
        assert data.n_episodes == 5 and data.n_steps == 25
        np.testing.assert_array_equal(data.observations, np.concatenate([e["observations"] for e in eps]))
        np.testing.assert_array_equal(data.actions, np.concatenate([e["actions"] for e in eps]))
        np.testing.assert_array_equal(data.rewards, np.concatenate([e["rewards"] for e in eps]))
        np.testing.assert_array_equal(data.terminals, np.concatenate([e["terminals"] for e in eps]))
        assert data.observations.dtype == np.float32 and data.terminals.dtype == bool
        assert data.episode_starts.tolist() == [0, 5, 12, 15, 19]
        assert data.episode_lengths.tolist() == [5, 7, 3, 4, 6]
        np.testing.assert_allclose(data.episode_returns, [float(np.sum(e["rewards"], dtype=np.float64)) for e in eps])
        assert data.episode_success.tolist() == [False, True, False, True, False]
        assert data.prompt_episodes.tolist() == [3, 4] == data.prompt_indices.tolist()
        assert data.train_episodes.tolist() == [0, 1, 2]
        train_obs = np.concatenate([e["observations"] for e in eps[:3]]).astype(np.float64)
        np.testing.assert_allclose(data.state_mean, train_obs.mean(0), rtol=1e-6)
        np.testing.assert_allclose(data.state_std, train_obs.std(0), rtol=1e-5)
        ep = data.episode(1)
        for k in ("observations", "actions", "rewards", "terminals"):
            np.testing.assert_array_equal(ep[k], eps[1][k])
        assert ep["success"] is True and ep["length"] == 7
        a = data.attrs
        assert a["task"] == "reach-v2" and a["suite"] == "metaworld" and a["source"] == "collect"
        assert a["obs_dim"] == 39 and a["action_dim"] == 4 and a["expert"] == "scripted" and a["seed"] == 7
        assert json.loads(a["note"]) == {"a": [1, 2]} and a["success_recorded"] is True
        assert dt.datetime.fromisoformat(a["created"]).tzinfo is not None
        assert a["version_numpy"] == np.__version__ and a["version_h5py"] == h5py.__version__
        assert "version_m3dt" in a and a["schema_version"] == 1
        s = data.summary()
        assert s["episodes"] == 5 and s["train_episodes"] == 3 and s["prompt_episodes"] == 2 and s["steps"] == 25
        assert s["success_rate"] == pytest.approx(0.4) and s["score_mean"] == pytest.approx(40.0)
        assert s["return_max"] == pytest.approx(data.episode_returns.max())
        mem = data.load()
        assert mem.in_memory and not data.in_memory
        for k in store.DATASETS:
            np.testing.assert_array_equal(getattr(mem, k), getattr(data, k))


def test_non_metaworld_success_is_false_and_scores(tmp_path):
    eps = make_episodes("pendulum-swingup", [4, 4, 4], success_at={0: 1})
    with open_task_data(write_task_data(tmp_path / "p.h5", "pendulum-swingup", eps)) as data:
        assert data.episode_success.tolist() == [False, False, False]
        s = data.summary()
        assert s["success_rate"] == 0.0
        assert s["score_mean"] == pytest.approx(np.mean(data.episode_returns) / 10)
        assert data.attrs["source"] == "collect" and data.attrs["seed"] == -1


def test_metaworld_without_success_reports_unknown(tmp_path):
    eps = make_episodes("reach-v2", [3, 3, 3])
    for e in eps:
        del e["success"]
    with open_task_data(write_task_data(tmp_path / "r.h5", "reach-v2", eps)) as data:
        assert data.attrs["success_recorded"] is False
        assert data.summary()["success_rate"] is None and data.summary()["score_mean"] is None


def test_std_floor_and_scalar_success(tmp_path):
    eps = make_episodes("reach-v2", [3, 3, 3])
    for e in eps:
        e["observations"][:, 5] = 2.5  # a constant dim
        e["success"] = True
    data = TaskData.from_episodes("reach-v2", eps)
    assert data.state_std[5] == np.float32(1e-6) and data.state_mean[5] == np.float32(2.5)
    assert data.episode_success.all()


@pytest.mark.parametrize("mutate, match", [
    (lambda e: e[1].update(observations=np.zeros((3, 4), np.float32)),
     r"pendulum-swingup: episode 1: 'observations' has shape \(3, 4\), expected \(3, 3\)"),
    (lambda e: e[2].update(actions=np.zeros((3, 2), np.float32)),
     r"episode 2: 'actions' has shape \(3, 2\), expected \(3, 1\)"),
    (lambda e: e[0].update(rewards=np.zeros(4, np.float32)), r"episode 0: 'rewards' has shape \(4,\), expected \(3,\)"),
    (lambda e: e[0]["rewards"].__setitem__(1, np.nan), r"episode 0: 'rewards' has a NaN/inf value \(first at step 1\)"),
    (lambda e: e[1]["observations"].__setitem__((2, 0), np.inf), r"episode 1: 'observations' has a NaN/inf"),
    (lambda e: e[1].update(observations=np.zeros((0, 3), np.float32)), r"episode 1: 'observations' has shape \(0, 3\)"),
    (lambda e: e[2].pop("terminals"), r"episode 2: 'terminals' is missing"),
])
def test_dims_and_values_checked_against_registry(tmp_path, mutate, match):
    eps = make_episodes("pendulum-swingup", [3, 3, 3])
    mutate(eps)
    with pytest.raises(ValueError, match=match):
        write_task_data(tmp_path / "p.h5", "pendulum-swingup", eps)
    assert list(tmp_path.iterdir()) == []


def test_episode_count_and_task_checked(tmp_path):
    with pytest.raises(ValueError, match="no episodes"):
        write_task_data(tmp_path / "x.h5", "pendulum-swingup", [])
    with pytest.raises(ValueError, match="n_prompt=2 needs at least 3 episodes"):
        write_task_data(tmp_path / "x.h5", "pendulum-swingup", make_episodes("pendulum-swingup", [2, 2]))
    with pytest.raises(KeyError, match="unknown task"):
        write_task_data(tmp_path / "x.h5", "pendulum-swingupp", make_episodes("pendulum-swingup", [2, 2, 2]))
    with pytest.raises(ValueError, match="source"):
        write_task_data(tmp_path / "x.h5", "pendulum-swingup", make_episodes("pendulum-swingup", [2, 2, 2]),
                        attrs={"source": "magic"})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "p.h5"
    write_task_data(path, "pendulum-swingup", make_episodes("pendulum-swingup", [3, 3, 3], seed=1))
    before = path.read_bytes()

    def boom(value):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(store, "_attr_value", boom)  # fails after the datasets are written
    with pytest.raises(RuntimeError, match="simulated"):
        write_task_data(path, "pendulum-swingup", make_episodes("pendulum-swingup", [4, 4, 4], seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.h5"]


def test_open_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        open_task_data(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(TaskDataError, match="junk.h5: not a readable HDF5 file"):
        open_task_data(junk)
    good = write_task_data(tmp_path / "g.h5", "pendulum-swingup", make_episodes("pendulum-swingup", [3, 3, 3]))
    with h5py.File(good, "a") as f:
        del f["state_std"]
    with pytest.raises(TaskDataError, match=r"g.h5: missing dataset\(s\) \['state_std'\]"):
        open_task_data(good)
    bad = write_task_data(tmp_path / "b.h5", "pendulum-swingup", make_episodes("pendulum-swingup", [3, 3, 3]))
    with h5py.File(bad, "a") as f:
        f.attrs["task"] = "walker-walk"  # walker has 24 obs dims, the file 3
    with pytest.raises(TaskDataError, match=r"b.h5: dataset 'observations' has shape \(9, 3\), expected \(9, 24\)"):
        open_task_data(bad)


def test_from_arrays_validates():
    arrays = store.episodes_to_arrays("pendulum-swingup", make_episodes("pendulum-swingup", [3, 3, 3]))
    arrays.pop("_success_recorded")
    TaskData.from_arrays("pendulum-swingup", arrays)
    broken = dict(arrays, episode_lengths=np.array([3, 3, 2]))
    with pytest.raises(TaskDataError, match="do not tile"):
        TaskData.from_arrays("pendulum-swingup", broken)
    with pytest.raises(TaskDataError, match="miss dataset"):
        TaskData.from_arrays("pendulum-swingup", {k: v for k, v in arrays.items() if k != "rewards"})


def test_collect_style_usage(tmp_path: Path):
    """What `m3dt.data.collect` does: extra per-episode keys ignored, attrs kept."""
    eps = make_episodes("cheetah-vel-3", [4, 4, 4])
    for e in eps:
        e["normalized_score"] = 1.0
    path = write_task_data(tmp_path / "c.h5", "cheetah-vel-3", eps, n_prompt=2,
                           attrs={"source": "collect", "expert": "sac-goal", "episodes": 1, "max_steps": -1})
    with open_task_data(path) as d:
        assert d.attrs["expert"] == "sac-goal" and d.attrs["episodes"] == 1
        assert d.observations.shape == (12, 20) and d.actions.shape == (12, 6)


@pytest.mark.parametrize("key, change, match", [
    ("observations", lambda a: a.__setitem__((4, 1), np.nan),
     r"dataset 'observations' has a NaN/inf value \(first at row 4\)"),
    ("rewards", lambda a: a.__setitem__(7, np.inf), r"dataset 'rewards' has a NaN/inf value \(first at row 7\)"),
    ("state_std", lambda a: a.__setitem__(0, np.nan), r"dataset 'state_std' has a NaN/inf value"),
    ("rewards", lambda a: a[:-2], r"dataset 'rewards' has shape \(7,\), expected \(9,\)"),
    ("episode_returns", lambda a: a[:-1], r"dataset 'episode_returns' has shape \(2,\), expected \(3,\)"),
])
def test_open_checks_values_and_names_the_culprit(tmp_path, key, change, match):
    path = write_task_data(tmp_path / "t.h5", "pendulum-swingup", make_episodes("pendulum-swingup", [3, 3, 3]))
    with h5py.File(path, "a") as f:
        arr = f[key][()]
        out = change(arr)
        del f[key]
        f[key] = arr if out is None else out
    with pytest.raises(TaskDataError, match=rf"t.h5: {match}"):
        open_task_data(path)
