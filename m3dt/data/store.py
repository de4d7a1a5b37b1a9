"""One HDF5 file per task: the offline dataset of that task (`results/data/<task>.h5`).

Schema (version 1). Per-step arrays hold every episode back to back, in episode order;
only a task's REAL dims are stored (the padding to 39 / 8 is the sampler's job).

| dataset           | shape           | dtype   | meaning                                              |
|-------------------|-----------------|---------|------------------------------------------------------|
| `observations`    | (N, obs_dim)    | float32 | observation at each step (before the action)         |
| `actions`         | (N, action_dim) | float32 | action taken                                         |
| `rewards`         | (N,)            | float32 | reward received                                      |
| `terminals`       | (N,)            | bool    | the environment terminated after this step           |
| `episode_starts`  | (E,)            | int64   | first row of each episode                            |
| `episode_lengths` | (E,)            | int64   | steps of each episode (all >= 1)                     |
| `episode_returns` | (E,)            | float64 | undiscounted return (sum of float32 rewards, float64)|
| `episode_success` | (E,)            | bool    | Meta-World: success at any step; other suites: False |
| `prompt_episodes` | (P,)            | int64   | the held-out prompt episodes (default: the last 2)   |
| `state_mean`      | (obs_dim,)      | float32 | mean observation over the training episodes          |
| `state_std`       | (obs_dim,)      | float32 | std over the training episodes, floored at 1e-6      |

The training episodes are all episodes not in `prompt_episodes`.

File attributes: `task`, `suite`, `obs_dim`, `action_dim`, `schema_version` (1), `source`
("collect" | "import"), `expert`, `seed`, `created` (ISO-8601 UTC), `success_recorded`
(whether per-step success was given; if not, Meta-World `episode_success` is all False and
its success rate / score is unknown), `version_<package>` for m3dt, numpy, h5py, mujoco,
dm_control, metaworld, gymnasium (those installed), plus any extra attributes the writer was
given (lists and dicts are stored as JSON strings, None as the string "None").

`write_task_data` writes a temporary file beside the target and renames it onto the target
(`os.replace`), so a reader never sees a half-written file; on any error the temporary file
is removed. `open_task_data` returns a lazy `TaskData` (reads from the file on access);
`TaskData.load()` gives the same object with every array in memory.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from m3dt import tasks
from m3dt.tasks import TaskSpec

SCHEMA_VERSION = 1
STD_FLOOR = 1e-6

#: dataset name -> (dtype, per-step?) ; the order is the order written
DATASETS: dict[str, str] = {
    "observations": "float32",
    "actions": "float32",
    "rewards": "float32",
    "terminals": "bool",
    "episode_starts": "int64",
    "episode_lengths": "int64",
    "episode_returns": "float64",
    "episode_success": "bool",
    "prompt_episodes": "int64",
    "state_mean": "float32",
    "state_std": "float32",
}
_VERSION_PACKAGES = ("m3dt", "numpy", "h5py", "mujoco", "dm_control", "metaworld", "gymnasium")
SOURCES = ("collect", "import")


class TaskDataError(ValueError):
    """A task-data file (or in-memory arrays) does not follow the schema."""


# --------------------------------------------------------------------------- building


def _episode_error(task: str, i: int, key: str, msg: str) -> ValueError:
    return ValueError(f"{task}: episode {i}: {key!r} {msg}")


def _check_array(task: str, i: int, key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`value` as an array of `shape` (a (T, 1) column is accepted for a (T,) vector), finite."""
    arr = np.asarray(value)
    if len(shape) == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != shape:
        raise _episode_error(task, i, key, f"has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "biuf":
        raise _episode_error(task, i, key, f"has dtype {arr.dtype}, expected numbers")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1))[0])
        raise _episode_error(task, i, key, f"has a NaN/inf value (first at step {bad})")
    return arr


def episodes_to_arrays(task: str, episodes: Sequence[Mapping[str, Any]], n_prompt: int = 2) -> dict[str, np.ndarray]:
    """The schema's datasets for `episodes` of `task` (validated against the registry).

    Each episode maps `observations (T, obs_dim)`, `actions (T, action_dim)`, `rewards (T,)`,
    `terminals (T,)` and optionally `success` ((T,) per step, or a scalar) to arrays; other
    keys are ignored. The last `n_prompt` episodes are the prompt episodes.
    """
    spec = tasks.get(task)
    name = spec.name
    if len(episodes) == 0:
        raise ValueError(f"{name}: no episodes")
    if not 0 <= n_prompt < len(episodes):
        raise ValueError(f"{name}: n_prompt={n_prompt} needs at least {n_prompt + 1} episodes "
                         f"(>= 1 training episode), got {len(episodes)}")
    obs_l, act_l, rew_l, term_l, succ = [], [], [], [], []
    success_recorded = False
    for i, ep in enumerate(episodes):
        for key in ("observations", "actions", "rewards", "terminals"):
            if key not in ep:
                raise _episode_error(name, i, key, f"is missing (keys: {sorted(ep)})")
        obs = np.asarray(ep["observations"])
        if obs.ndim != 2 or obs.shape[0] == 0:
            raise _episode_error(name, i, "observations", f"has shape {obs.shape}, expected (T >= 1, {spec.obs_dim})")
        T = obs.shape[0]
        obs_l.append(_check_array(name, i, "observations", obs, (T, spec.obs_dim)).astype(np.float32, copy=False))
        act = _check_array(name, i, "actions", ep["actions"], (T, spec.action_dim))
        act_l.append(act.astype(np.float32, copy=False))
        rew_l.append(_check_array(name, i, "rewards", ep["rewards"], (T,)).astype(np.float32, copy=False))
        term_l.append(_check_array(name, i, "terminals", ep["terminals"], (T,)) != 0)
        s = ep.get("success")
        if s is not None:
            s_arr = np.asarray(s)
            if s_arr.ndim > 0:
                s_arr = _check_array(name, i, "success", s_arr, (T,))
            success_recorded = True
            succ.append(bool(np.any(s_arr != 0)))
        else:
            succ.append(False)
    lengths = np.array([len(r) for r in rew_l], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    returns = np.array([float(np.sum(r, dtype=np.float64)) for r in rew_l], dtype=np.float64)
    success = np.array(succ, dtype=bool) if spec.suite == "metaworld" else np.zeros(len(episodes), dtype=bool)
    prompt = np.arange(len(episodes) - n_prompt, len(episodes), dtype=np.int64)
    observations = np.concatenate(obs_l).astype(np.float32, copy=False)
    is_train = np.ones(len(episodes), dtype=bool)
    is_train[prompt] = False
    mean, std = state_stats(observations, np.repeat(is_train, lengths))
    return {
        "observations": observations,
        "actions": np.concatenate(act_l).astype(np.float32, copy=False),
        "rewards": np.concatenate(rew_l).astype(np.float32, copy=False),
        "terminals": np.concatenate(term_l).astype(bool, copy=False),
        "episode_starts": starts,
        "episode_lengths": lengths,
        "episode_returns": returns,
        "episode_success": success,
        "prompt_episodes": prompt,
        "state_mean": mean,
        "state_std": std,
        "_success_recorded": np.array(success_recorded and spec.suite == "metaworld"),
    }


def state_stats(observations: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim mean and std (float64 accumulation, std floored at 1e-6) of the selected rows."""
    x = observations[rows].astype(np.float64)
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), STD_FLOOR)
    return mean.astype(np.float32), std.astype(np.float32)


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    import m3dt

    out: dict[str, str] = {}
    for pkg in _VERSION_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            if pkg == "m3dt":
                out[pkg] = m3dt.__version__
    return out


def _attr_value(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return json.dumps(value, default=str)


def write_task_data(path: str | os.PathLike, task: str, episodes: Sequence[Mapping[str, Any]], *,
                    n_prompt: int = 2, attrs: Mapping[str, Any] | None = None,
                    compression: str | None = None) -> Path:
    """Validate `episodes` of `task` and write them atomically to `path` (schema above).

    Raises ValueError naming the task, the episode index, the key and got vs expected for
    any malformed episode (wrong dims, NaN/inf, empty, missing key). `attrs` are stored as
    file attributes (`source`, `expert`, `seed` default to "collect", "unknown", -1).
    """
    import h5py

    from m3dt.io import atomic_path

    spec = tasks.get(task)
    arrays = episodes_to_arrays(spec.name, episodes, n_prompt)
    extra = dict(attrs or {})
    source = extra.pop("source", "collect")
    if source not in SOURCES:
        raise ValueError(f"{spec.name}: attrs['source'] must be one of {SOURCES}, got {source!r}")
    meta: dict[str, Any] = {
        "task": spec.name,
        "suite": spec.suite,
        "obs_dim": spec.obs_dim,
        "action_dim": spec.action_dim,
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "expert": extra.pop("expert", "unknown"),
        "seed": extra.pop("seed", -1),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "success_recorded": bool(arrays.pop("_success_recorded")),
    }
    meta.update({f"version_{k}": v for k, v in _package_versions().items()})
    for k, v in extra.items():
        if k in meta and k != "created":
            raise ValueError(f"{spec.name}: attrs[{k!r}] would overwrite a schema attribute")
        meta[k] = v
    target = Path(path)
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as f:
            for key in DATASETS:
                kw = {"compression": compression} if compression and arrays[key].ndim == 2 else {}
                f.create_dataset(key, data=arrays[key], **kw)
            for k, v in meta.items():
                f.attrs[k] = _attr_value(v)
    return target


# --------------------------------------------------------------------------- reading


def _py(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


class TaskData:
    """One task's dataset: lazily read from its HDF5 file, or held in memory.

    Array properties return numpy arrays (read from the file on every access when lazy; use
    `load()` for repeated access). Use as a context manager, or `close()`, to release the file.
    """

    def __init__(self, source: Any, attrs: Mapping[str, Any], path: Path | None = None) -> None:
        self._src = source  # an open h5py.File, or a dict of numpy arrays
        self._attrs = dict(attrs)
        self.path = path
        self.spec: TaskSpec = tasks.get(self._attrs["task"])
        self.task: str = self.spec.name

    # -- construction
    @classmethod
    def from_arrays(cls, task: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any] | None = None) -> "TaskData":
        """In-memory data from a mapping of the schema's datasets (validated)."""
        spec = tasks.get(task)
        missing = [k for k in DATASETS if k not in arrays]
        if missing:
            raise TaskDataError(f"{spec.name}: arrays miss dataset(s) {missing}")
        src = {k: np.asarray(arrays[k]).astype(DATASETS[k], copy=False) for k in DATASETS}
        meta = {"task": spec.name, "suite": spec.suite, "obs_dim": spec.obs_dim, "action_dim": spec.action_dim,
                "source": "memory", "success_recorded": False}
        meta.update(attrs or {})
        meta["task"] = spec.name
        data = cls(src, meta)
        data._validate(f"{spec.name} (in memory)")
        return data

    @classmethod
    def from_episodes(cls, task: str, episodes: Sequence[Mapping[str, Any]], n_prompt: int = 2,
                      attrs: Mapping[str, Any] | None = None) -> "TaskData":
        """In-memory data built exactly as `write_task_data` would write it."""
        arrays = episodes_to_arrays(task, episodes, n_prompt)
        meta = {"success_recorded": bool(arrays.pop("_success_recorded")), **(attrs or {})}
        return cls.from_arrays(task, arrays, meta)

    def _validate(self, where: str) -> None:
        shapes = {k: tuple(self._src[k].shape) for k in DATASETS}
        od, ad = self.spec.obs_dim, self.spec.action_dim
        # N and E are what most datasets agree on, so the odd one out is the one named
        N = _majority(shapes[k][0] if shapes[k] else -1 for k in ("observations", "actions", "rewards", "terminals"))
        E = _majority(shapes[k][0] if shapes[k] else -1
                      for k in ("episode_lengths", "episode_starts", "episode_returns", "episode_success"))
        want = {"rewards": (N,), "episode_lengths": (E,), "observations": (N, od), "actions": (N, ad),
                "terminals": (N,), "episode_starts": (E,), "episode_returns": (E,),
                "episode_success": (E,), "state_mean": (od,), "state_std": (od,)}
        for k, shape in want.items():
            if shapes[k] != shape:
                raise TaskDataError(f"{where}: dataset {k!r} has shape {shapes[k]}, expected {shape} "
                                    f"(task {self.task}: obs_dim {od}, action_dim {ad})")
        if len(shapes["prompt_episodes"]) != 1:
            raise TaskDataError(f"{where}: dataset 'prompt_episodes' has shape {shapes['prompt_episodes']}, "
                                "expected (P,)")
        lengths = np.asarray(self._src["episode_lengths"][()])
        starts = np.asarray(self._src["episode_starts"][()])
        if E < 1 or np.any(lengths < 1) or lengths.sum() != N or \
                np.any(starts != np.concatenate([[0], np.cumsum(lengths)[:-1]])):
            raise TaskDataError(f"{where}: episode_starts / episode_lengths do not tile the {N} steps")
        prompt = np.asarray(self._src["prompt_episodes"][()])
        if np.any((prompt < 0) | (prompt >= E)) or len(np.unique(prompt)) != len(prompt) or len(prompt) >= E:
            raise TaskDataError(f"{where}: prompt_episodes {prompt.tolist()} must be distinct episode indices "
                                f"in [0, {E}) leaving >= 1 training episode")
        for k, dtype in DATASETS.items():
            if dtype.startswith("float"):
                bad = _first_non_finite(self._src[k])
                if bad is not None:
                    raise TaskDataError(f"{where}: dataset {k!r} has a NaN/inf value (first at row {bad})")

    # -- file handling
    def close(self) -> None:
        if not isinstance(self._src, dict):
            try:
                self._src.close()
            except Exception:  # pragma: no cover - already closed
                pass

    def __enter__(self) -> "TaskData":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        return f"TaskData({self.task!r}, episodes={self.n_episodes}, steps={self.n_steps}, {where})"

    @property
    def in_memory(self) -> bool:
        return isinstance(self._src, dict)

    def load(self) -> "TaskData":
        """The same data with every array read into memory (the file is left open)."""
        if self.in_memory:
            return self
        arrays = {k: self._src[k][()] for k in DATASETS}
        return TaskData(arrays, self._attrs, self.path)

    def read_into(self, key: str, out: np.ndarray) -> None:
        """Copy dataset `key` into the preallocated `out` (no intermediate copy from a file)."""
        src = self._src[key]
        if tuple(out.shape) != tuple(src.shape):
            raise ValueError(f"{self.task}: read_into({key!r}) got out {out.shape}, dataset is {src.shape}")
        if isinstance(src, np.ndarray):
            out[...] = src
        else:
            src.read_direct(out)

    # -- arrays
    def _get(self, key: str) -> np.ndarray:
        v = self._src[key]
        return v if isinstance(v, np.ndarray) else v[()]

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    observations = property(lambda self: self._get("observations"), doc="(N, obs_dim) float32")
    actions = property(lambda self: self._get("actions"), doc="(N, action_dim) float32")
    rewards = property(lambda self: self._get("rewards"), doc="(N,) float32")
    terminals = property(lambda self: self._get("terminals"), doc="(N,) bool")
    episode_starts = property(lambda self: self._get("episode_starts"), doc="(E,) int64")
    episode_lengths = property(lambda self: self._get("episode_lengths"), doc="(E,) int64")
    episode_returns = property(lambda self: self._get("episode_returns"), doc="(E,) float64")
    episode_success = property(lambda self: self._get("episode_success"), doc="(E,) bool")
    prompt_episodes = property(lambda self: self._get("prompt_episodes"), doc="(P,) int64 prompt episode indices")
    prompt_indices = prompt_episodes
    state_mean = property(lambda self: self._get("state_mean"), doc="(obs_dim,) float32")
    state_std = property(lambda self: self._get("state_std"), doc="(obs_dim,) float32")

    @property
    def n_episodes(self) -> int:
        return int(self._src["episode_lengths"].shape[0])

    @property
    def n_steps(self) -> int:
        return int(self._src["rewards"].shape[0])

    @property
    def train_episodes(self) -> np.ndarray:
        """Indices of the training episodes (all but the prompt episodes), ascending."""
        return np.setdiff1d(np.arange(self.n_episodes, dtype=np.int64), self.prompt_episodes)

    def episode(self, i: int) -> dict[str, Any]:
        """Episode `i`: its per-step arrays plus `return`, `success`, `length`."""
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"{self.task}: episode {i} out of range ({self.n_episodes} episodes)")
        i = int(i) % self.n_episodes
        s = int(self._src["episode_starts"][i])
        n = int(self._src["episode_lengths"][i])
        out: dict[str, Any] = {k: np.asarray(self._src[k][s:s + n])
                               for k in ("observations", "actions", "rewards", "terminals")}
        out["return"] = float(self._src["episode_returns"][i])
        out["success"] = bool(self._src["episode_success"][i])
        out["length"] = n
        return out

    def summary(self) -> dict[str, Any]:
        """Task, source and statistics over all episodes of the file (prompts included).

        `success_rate` and (Meta-World) `score_mean` are None when success was not recorded.
        """
        returns = self.episode_returns
        success = self.episode_success
        mw = self.spec.suite == "metaworld"
        known = (not mw) or bool(self._attrs.get("success_recorded", False))
        if known:
            scores = [self.spec.normalized_score(float(r), bool(s) if mw else None) for r, s in zip(returns, success)]
            score = float(np.mean(scores))
        else:
            score = None
        return {
            "task": self.task,
            "suite": self.spec.suite,
            "source": self._attrs.get("source"),
            "expert": self._attrs.get("expert"),
            "episodes": self.n_episodes,
            "n_episodes": self.n_episodes,
            "train_episodes": int(len(self.train_episodes)),
            "prompt_episodes": int(len(self.prompt_episodes)),
            "steps": self.n_steps,
            "length_mean": float(np.mean(self.episode_lengths)),
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
            "return_min": float(np.min(returns)),
            "return_max": float(np.max(returns)),
            "success_rate": (float(np.mean(success)) if mw else 0.0) if known else None,
            "score_mean": score,
        }


def _majority(values: Any) -> int:
    """The most common value (ties: the first seen)."""
    values = list(values)
    return max(values, key=values.count)


def _first_non_finite(src: Any, rows: int = 1 << 20) -> int | None:
    """First row of `src` (array or h5py dataset) holding a NaN/inf, read in chunks of `rows`."""
    for lo in range(0, len(src), rows):
        chunk = np.asarray(src[lo:lo + rows])
        ok = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)  # (rows,)
        if not ok.all():
            return lo + int(np.argmin(ok))
    return None


def open_task_data(path: str | os.PathLike) -> TaskData:
    """Open a task file lazily; FileNotFoundError / TaskDataError naming the file if it is
    missing, not HDF5, truncated, or misses a dataset or attribute."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"task data file {p} does not exist")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise TaskDataError(f"{p}: not a readable HDF5 file ({e})") from None
    try:
        missing = [k for k in DATASETS if k not in f]
        if missing:
            raise TaskDataError(f"{p}: missing dataset(s) {missing}; is this an m3dt task-data file?")
        if "task" not in f.attrs:
            raise TaskDataError(f"{p}: missing attribute 'task'")
        attrs = {k: _py(v) for k, v in f.attrs.items()}
        try:
            data = TaskData(f, attrs, p)
        except KeyError as e:
            raise TaskDataError(f"{p}: {e.args[0]}") from None
        data._validate(str(p))
        return data
    except BaseException:
        f.close()
        raise

