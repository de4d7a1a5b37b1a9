"""Importer of the authors' layout SRC/<task>/<i>.npz: good imports and every malformed case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from m3dt import tasks
from m3dt.__main__ import main
from m3dt.data.importer import ImportDataError, import_dir
from m3dt.data.store import open_task_data

REPO = Path(__file__).resolve().parents[1]


def episode(task: str, T: int, seed: int, *, done_key: str = "terminals", obs_width: int | None = None,
            act_width: int | None = None) -> dict[str, np.ndarray]:
    spec = tasks.get(task)
    rng = np.random.default_rng(seed)
    obs = np.zeros((T, obs_width or spec.obs_dim), np.float64)  # authors' files may be float64
    obs[:, :spec.obs_dim] = rng.normal(size=(T, spec.obs_dim))
    act = np.zeros((T, act_width or spec.action_dim), np.float32)
    act[:, :spec.action_dim] = rng.uniform(-1, 1, (T, spec.action_dim))
    return {"observations": obs, "actions": act, "rewards": rng.uniform(0, 1, T).astype(np.float32),
            done_key: (np.arange(T) == T - 1).astype(np.float32)}


def write_task_dir(src: Path, folder: str, n: int, task: str | None = None, lengths: list[int] | None = None,
                   **kw) -> list[dict[str, np.ndarray]]:
    d = src / folder
    d.mkdir(parents=True, exist_ok=True)
    eps = []
    for i in range(n):
        ep = episode(task or folder, (lengths or [5 + i % 3] * n)[i], seed=1000 + i, **kw)
        np.savez(d / f"{i}.npz", **ep)
        eps.append(ep)
    return eps


def assert_same(path: Path, eps: list[dict], task: str) -> None:
    spec = tasks.get(task)
    with open_task_data(path) as data:
        assert data.task == spec.name and data.attrs["source"] == "import" and data.attrs["expert"] == "authors"
        assert data.n_episodes == len(eps) and data.prompt_episodes.tolist() == [len(eps) - 2, len(eps) - 1]
        for i, ep in enumerate(eps):
            got = data.episode(i)
            np.testing.assert_array_equal(got["observations"], ep["observations"][:, :spec.obs_dim].astype(np.float32))
            np.testing.assert_array_equal(got["actions"], ep["actions"][:, :spec.action_dim])
            np.testing.assert_array_equal(got["rewards"], ep["rewards"])
            done = ep["terminals"] if "terminals" in ep else ep["dones"]
            np.testing.assert_array_equal(got["terminals"], done != 0)


def test_good_import_three_suites(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    data = {
        "reach-v2": write_task_dir(src, "reach-v2", 12),  # 12 files: 10.npz and 11.npz sort after 9.npz
        "pendulum-swingup": write_task_dir(src, "pendulum-swingup", 4),
        "cheetah-vel-3": write_task_dir(src, "cheetah-vel-3", 3),
    }
    (src / "README.txt").write_text("top-level files are not task folders")
    (src / "reach-v2" / ".DS_Store").write_text("hidden files are ignored")
    paths = import_dir(src, out)
    assert sorted(p.name for p in paths) == ["cheetah-vel-3.h5", "pendulum-swingup.h5", "reach-v2.h5"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    for task, eps in data.items():
        assert_same(out / f"{task}.h5", eps, task)
    with open_task_data(out / "reach-v2.h5") as d:
        assert d.attrs["prompt_files"] == "10.npz,11.npz" and d.attrs["import_files"] == 12


def test_dones_v3_folder_padding_and_task_filter(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    reach = write_task_dir(src, "reach-v3", 4, task="reach-v2", done_key="dones", act_width=8)
    pend = write_task_dir(src, "pendulum-swingup", 3, obs_width=39, act_width=8)
    write_task_dir(src, "cheetah-vel-3", 3)
    assert main(["data", "import", "--src", str(src), "--out", str(out), "--tasks", "reach-v3",
                 "pendulum-swingup"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pendulum-swingup.h5", "reach-v2.h5"]
    assert_same(out / "reach-v2.h5", reach, "reach-v2")
    assert_same(out / "pendulum-swingup.h5", pend, "pendulum-swingup")
    with open_task_data(out / "pendulum-swingup.h5") as d:
        assert d.observations.shape == (18, 3) and d.actions.shape == (18, 1)


def test_max_episodes_takes_the_first_n_files_last_two_as_prompts(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    eps = write_task_dir(src, "pendulum-swingup", 12)
    (path,) = import_dir(src, out, max_episodes=5)
    assert_same(path, eps[:5], "pendulum-swingup")  # files 0..4; prompts 3.npz and 4.npz
    with open_task_data(path) as d:
        assert d.attrs["prompt_files"] == "3.npz,4.npz" and d.train_episodes.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="max_episodes must be >= 3"):
        import_dir(src, out, max_episodes=2)


# ----------------------------------------------------------------------------------- malformed


def _save(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


def _without(key):
    return lambda d, bad, ep: _save(bad, **{k: v for k, v in ep.items() if k != key})


def _replaced(key, value):
    """`value`: the new array, or a function of the episode's array."""
    return lambda d, bad, ep: _save(bad, **dict(ep, **{key: value(ep[key].copy()) if callable(value) else value}))


def _set(index, x):
    def f(a):
        a[index] = x
        return a
    return f


def _npy(d, bad, ep):
    with open(bad, "wb") as f:
        np.save(f, np.zeros(3))


def _too_few(d, bad, ep):
    for i in (2, 3, 4):
        (d / f"{i}.npz").unlink()


# (id, how to break the pendulum-swingup folder (d, d/3.npz, a good 6-step episode), the file
# or folder the error must name, the key it must name or None)
MALFORMED = [
    ("missing_key", _without("rewards"), "3.npz", "rewards"),
    ("missing_terminals", _without("terminals"), "3.npz", "terminals"),
    ("wrong_obs_dims", _replaced("observations", np.zeros((6, 4))), "3.npz", "observations"),
    ("obs_padding_not_zero", _replaced("observations", _set((slice(None), 10), 1.0)(np.zeros((6, 39)))),
     "3.npz", "observations"),
    ("wrong_action_dims", _replaced("actions", np.zeros((6, 9), np.float32)), "3.npz", "actions"),
    ("action_padding_not_zero", _replaced("actions", np.full((6, 8), -10.0, np.float32)), "3.npz", "actions"),
    ("rewards_length", _replaced("rewards", np.zeros(5, np.float32)), "3.npz", "rewards"),
    ("nan_rewards", _replaced("rewards", _set(2, np.nan)), "3.npz", "rewards"),
    ("inf_observations", _replaced("observations", _set((4, 1), -np.inf)), "3.npz", "observations"),
    ("empty_episode", lambda d, bad, ep: _save(bad, observations=np.zeros((0, 3)), actions=np.zeros((0, 1)),
                                               rewards=np.zeros(0), terminals=np.zeros(0)), "3.npz", "observations"),
    ("string_array", _replaced("terminals", np.array(["no"] * 6)), "3.npz", "terminals"),
    ("unknown_task_folder", lambda d, bad, ep: (write_task_dir(d.parent, "reach-v2", 3),
                                                (d.parent / "not-a-task").mkdir()), "not-a-task", None),
    ("non_npz_file", lambda d, bad, ep: (d / "notes.txt").write_text("hello"), "notes.txt", None),
    ("unreadable_npz", lambda d, bad, ep: bad.write_bytes(b"PK\x03\x04 this is not really a zip archive"),
     "3.npz", None),
    ("npy_named_npz", _npy, "3.npz", None),
    ("too_few_episodes", _too_few, "pendulum-swingup", None),
]


def _malformed(src: Path, case: str) -> tuple[str, str | None]:
    """Make task folders with one bad file (case `case` of MALFORMED); return (the file or
    folder name, the key) the error must name."""
    (_, breaker, name, key), = [c for c in MALFORMED if c[0] == case]
    write_task_dir(src, "pendulum-swingup", 5)
    d = src / "pendulum-swingup"
    breaker(d, d / "3.npz", episode("pendulum-swingup", 6, seed=3))
    return name, key


@pytest.mark.parametrize("case", [c[0] for c in MALFORMED])
def test_malformed_input_exits_nonzero_with_one_line(tmp_path, capsys, case):
    src, out = tmp_path / "src", tmp_path / "out"
    name, key = _malformed(src, case)
    with pytest.raises(SystemExit) as exc:
        main(["data", "import", "--src", str(src), "--out", str(out)])
    msg = str(exc.value.code)
    assert exc.value.code not in (0, None)
    assert "\n" not in msg and msg.startswith("m3dt data import: error: ")
    assert name in msg, msg
    if key is not None:
        assert f"key {key!r}" in msg, msg
    assert not out.exists() or [p.name for p in out.iterdir()] == []  # nothing written, no temp file


def test_import_error_type_and_unknown_requested_task(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_task_dir(src, "pendulum-swingup", 3)
    with pytest.raises(ImportDataError, match="no folder for task walker-walk"):
        import_dir(src, out, tasks=["walker-walk"])
    with pytest.raises(ImportDataError, match="unknown task 'walker-wlk'.*closest: walker-walk"):
        import_dir(src, out, tasks=["walker-wlk"])
    write_task_dir(src, "reach-v2", 3)
    write_task_dir(src, "reach-v3", 3, task="reach-v2")
    with pytest.raises(ImportDataError, match="reach-v2"):
        import_dir(src, out)
    with pytest.raises(ImportDataError, match="source folder does not exist"):
        import_dir(tmp_path / "missing", out)


def test_cli_subprocess_exit_code(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _malformed(src, "nan_rewards")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "m3dt", "data", "import", "--src", str(src), "--out", str(out)]
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "3.npz" in lines[0] and "key 'rewards'" in lines[0] and "NaN" in lines[0]
    assert not out.exists() or list(out.iterdir()) == []
    (src / "pendulum-swingup" / "3.npz").unlink()
    (src / "pendulum-swingup" / "4.npz").rename(src / "pendulum-swingup" / "3.npz")
    good = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert good.returncode == 0, good.stderr
    assert (out / "pendulum-swingup.h5").exists() and "pendulum-swingup.h5" in good.stdout
