"""Import the authors' offline data (`SRC/<task>/<i>.npz`) into the HDF5 store.

Input layout (as loaded by the authors' `load_data_prompt`):

    SRC/<task>/0.npz, 1.npz, ...     one episode per file

- `<task>` is a registry name; Meta-World folders may use v2 or v3 names (`reach-v3` is
  imported as `reach-v2`). Entries whose name starts with "." are ignored; every other entry
  of a task folder must be a file `<i>.npz` (i a non-negative integer).
- Keys of each file: `observations (T, obs_dim)`, `actions (T, action_dim)`, `rewards (T,)`
  and `terminals (T,)` or `dones (T,)` (a (T, 1) column is accepted for the vectors); an
  optional `success` ((T,) or scalar) is kept. Padded widths are accepted and stripped only
  when the padding is what the shared interface pads data with: observations exactly 39 wide
  with the columns beyond obs_dim all 0; actions wider than action_dim (up to 8) with the
  columns beyond action_dim all 0 (-10 is the sampler's padding of whole timesteps, not of dims).
  Anything else (missing key, other widths, non-zero padding, NaN/inf, empty episode,
  unreadable file, unknown task folder, stray file) raises `ImportDataError`, whose message
  is one line naming the file (or folder), the key and what was expected.
- Episodes and prompts, as the authors: files are sorted by i; the first
  n = min(#files, max_episodes) are read; of those, the first n - 2 are training episodes and
  the last two of them are the prompt episodes. With more than
  `max_episodes` files, the files after the first n are not read (the authors did the same).

Every episode of a task is read and validated before anything is written, and the write is
atomic, so a failed import leaves no output file for that task (tasks imported before it in
the same run are complete and kept).

CLI: `python -m m3dt data import --src DIR --out DIR [--tasks T ...] [--max-episodes 2000]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from m3dt import tasks
from m3dt.tasks import TaskSpec

LOG = logging.getLogger("m3dt.data.importer")
N_PROMPT = 2
_EPISODE_FILE = re.compile(r"^(\d+)\.npz$")


class ImportDataError(ValueError):
    """Malformed input data; the message is one line naming the file and key."""

    def __init__(self, where: str | os.PathLike, what: str, key: str | None = None) -> None:
        msg = f"{where}: " + (f"key {key!r}: " if key else "") + what
        super().__init__(" ".join(msg.split()))  # one line, whatever the parts contain


# --------------------------------------------------------------------------- folders and files


def _visible(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith("."))


def find_task_dirs(src: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Registry name -> task folder under `src` (all task folders, or those of `names`)."""
    root = Path(src)
    if not root.is_dir():
        raise ImportDataError(root, "source folder does not exist")
    if names is None:
        found: dict[str, Path] = {}
        for d in _visible(root):
            if not d.is_dir():
                continue  # stray top-level files (README, ...) are not task folders
            try:
                name = tasks.canonical_name(d.name)
            except KeyError as e:
                raise ImportDataError(d, f"not a task folder: {e.args[0]}") from None
            if name in found:
                raise ImportDataError(d, f"task {name} also has folder {found[name]}; keep one of them")
            found[name] = d
        if not found:
            raise ImportDataError(root, "no task folders (expected SRC/<task>/<i>.npz)")
        return found
    out: dict[str, Path] = {}
    for n in names:
        try:
            name = tasks.canonical_name(n)
        except KeyError as e:
            raise ImportDataError(root, f"--tasks: {e.args[0]}") from None
        candidates = [name] + ([name[:-1] + "3"] if name.endswith("-v2") else [])
        dirs = [root / c for c in candidates if (root / c).is_dir()]
        if not dirs:
            raise ImportDataError(root, f"no folder for task {name} (looked for {', '.join(candidates)})")
        if len(dirs) > 1:
            raise ImportDataError(root, f"task {name} has two folders ({', '.join(d.name for d in dirs)}); keep one")
        out[name] = dirs[0]
    return out


def episode_files(task_dir: str | os.PathLike, max_episodes: int = 2000) -> list[Path]:
    """The episode files to read, in order: n = min(#files, max_episodes) files sorted by
    number; the last two of them are the prompt episodes."""
    d = Path(task_dir)
    if max_episodes < N_PROMPT + 1:
        raise ValueError(f"max_episodes must be >= {N_PROMPT + 1} (>= 1 training + {N_PROMPT} prompt episodes)")
    numbered: dict[int, Path] = {}
    for p in _visible(d):
        m = _EPISODE_FILE.match(p.name)
        if not m or not p.is_file():
            raise ImportDataError(p, "not an episode file (expected <i>.npz, one episode per file)")
        i = int(m.group(1))
        if i in numbered:
            raise ImportDataError(p, f"episode number {i} also used by {numbered[i].name}")
        numbered[i] = p
    if len(numbered) < N_PROMPT + 1:
        raise ImportDataError(d, f"{len(numbered)} episode file(s); expected >= {N_PROMPT + 1} "
                                 f"(>= 1 training + the last {N_PROMPT} as prompts)")
    return [numbered[i] for i in sorted(numbered)[:max_episodes]]


# --------------------------------------------------------------------------- one episode


def _array(npz: Any, path: Path, key: str) -> np.ndarray:
    try:
        arr = np.asarray(npz[key])
    except Exception as e:  # a corrupt member of the archive
        raise ImportDataError(path, f"unreadable ({type(e).__name__}: {e})", key) from None
    if arr.dtype.kind not in "biuf":
        raise ImportDataError(path, f"expected numbers, got dtype {arr.dtype}", key)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)) if arr.ndim else [0]
        raise ImportDataError(path, f"contains NaN/inf (first at step {int(bad[0])}); expected finite values", key)
    return arr


def _vector(arr: np.ndarray, path: Path, key: str, T: int) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (T,):
        raise ImportDataError(path, f"expected shape ({T},) (one value per step), got {arr.shape}", key)
    return arr


def _strip(arr: np.ndarray, path: Path, key: str, T: int, dim: int, padded: range) -> np.ndarray:
    """(T, dim), accepting a (T, w) with w in `padded` whose columns beyond dim are all 0."""
    widths = [w for w in padded if w > dim]
    expected = f"expected shape ({T}, {dim})"
    if widths:
        expected += f" or zero-padded to ({T}, {widths[0] if len(widths) == 1 else f'{widths[0]}..{widths[-1]}'})"
    if arr.ndim != 2 or arr.shape[0] != T:
        raise ImportDataError(path, f"{expected}, got {arr.shape}", key)
    w = arr.shape[1]
    if w == dim:
        return arr
    if w in widths:
        if np.any(arr[:, dim:] != 0):
            raise ImportDataError(path, f"{expected}; got {arr.shape} whose padding columns {dim}..{w - 1} are "
                                        "not all 0", key)
        return arr[:, :dim]
    raise ImportDataError(path, f"{expected}, got {arr.shape}", key)


def read_episode(path: str | os.PathLike, spec: TaskSpec) -> dict[str, np.ndarray]:
    """One validated episode (real dims, float32 / bool) from an authors' `.npz` file."""
    p = Path(path)
    try:
        npz = np.load(p, allow_pickle=False)
    except Exception as e:
        raise ImportDataError(p, f"unreadable .npz ({type(e).__name__}: {e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ImportDataError(p, "not an .npz archive (a single .npy array?); expected keys observations, "
                                 "actions, rewards, terminals|dones")
    with npz:
        keys = set(npz.files)
        for key in ("observations", "actions", "rewards"):
            if key not in keys:
                raise ImportDataError(p, f"missing; expected keys observations, actions, rewards and terminals or "
                                         f"dones (found: {', '.join(sorted(keys)) or 'none'})", key)
        term_key = "terminals" if "terminals" in keys else "dones" if "dones" in keys else None
        if term_key is None:
            raise ImportDataError(p, f"missing (nor 'dones'); expected one of them (found: {', '.join(sorted(keys))})",
                                  "terminals")
        obs = _array(npz, p, "observations")
        if obs.ndim != 2:
            raise ImportDataError(p, f"expected shape (T, {spec.obs_dim}), got {obs.shape}", "observations")
        T = obs.shape[0]
        if T == 0:
            raise ImportDataError(p, "empty episode (0 steps); expected T >= 1", "observations")
        ep = {
            "observations": _strip(obs, p, "observations", T, spec.obs_dim,
                                   range(tasks.OBS_PAD, tasks.OBS_PAD + 1)).astype(np.float32),
            "actions": _strip(_array(npz, p, "actions"), p, "actions", T, spec.action_dim,
                              range(spec.action_dim + 1, tasks.ACT_PAD + 1)).astype(np.float32),
            "rewards": _vector(_array(npz, p, "rewards"), p, "rewards", T).astype(np.float32),
            "terminals": _vector(_array(npz, p, term_key), p, term_key, T) != 0,
        }
        if "success" in keys:
            s = _array(npz, p, "success")
            ep["success"] = (s if s.ndim == 0 else _vector(s, p, "success", T)) != 0
    return ep


# --------------------------------------------------------------------------- tasks


def read_task(task_dir: str | os.PathLike, task: str, max_episodes: int = 2000) -> list[dict[str, np.ndarray]]:
    """All selected episodes of one task folder, validated (see `episode_files`)."""
    spec = tasks.get(task)
    return [read_episode(f, spec) for f in episode_files(task_dir, max_episodes)]


def import_task(task_dir: str | os.PathLike, task: str, out_path: str | os.PathLike,
                max_episodes: int = 2000) -> Path:
    """Read and validate one task folder, then write `out_path` atomically."""
    from m3dt.data import store

    spec = tasks.get(task)
    files = episode_files(task_dir, max_episodes)
    episodes = [read_episode(f, spec) for f in files]
    attrs = {
        "source": "import",
        "expert": "authors",
        "seed": -1,
        "import_dir": str(Path(task_dir).resolve()),
        "import_files": len(files),
        "import_max_episodes": int(max_episodes),
        "prompt_files": ",".join(f.name for f in files[-N_PROMPT:]),
    }
    return store.write_task_data(out_path, spec.name, episodes, n_prompt=N_PROMPT, attrs=attrs)


def import_dir(src: str | os.PathLike, out: str | os.PathLike, tasks: Sequence[str] | None = None,
               max_episodes: int = 2000) -> list[Path]:
    """Import `src/<task>/<i>.npz` into `out/<task>.h5` for every task folder (or `tasks`).

    Raises `ImportDataError` at the first malformed input; the task being imported then has
    no output file.
    """
    if max_episodes < N_PROMPT + 1:
        raise ValueError(f"max_episodes must be >= {N_PROMPT + 1}, got {max_episodes}")
    dirs = find_task_dirs(src, tasks)
    out_dir = Path(out)
    written = []
    for name, d in dirs.items():
        path = import_task(d, name, out_dir / f"{name}.h5", max_episodes)
        LOG.info("imported %s from %s -> %s", name, d, path)
        written.append(path)
    return written


# --------------------------------------------------------------------------- CLI


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", required=True, help="the authors' data folder: SRC/<task>/<i>.npz")
    p.add_argument("--out", required=True, help="writes OUT/<task>.h5")
    p.add_argument("--tasks", nargs="+", metavar="T", help="only these tasks (default: every task folder)")
    p.add_argument("--max-episodes", type=int, default=2000,
                   help="read the first N files per task, the last 2 of them as prompts (default 2000)")


def _import_run(args: argparse.Namespace) -> int:
    from m3dt.data import store

    try:
        paths = import_dir(args.src, args.out, args.tasks, args.max_episodes)
    except (ImportDataError, ValueError) as e:
        raise SystemExit(f"m3dt data import: error: {' '.join(str(e).split())}") from None
    for path in paths:
        with store.open_task_data(path) as data:
            s = data.summary()
        print(f"{path}: {s['train_episodes']} + {s['prompt_episodes']} prompt episodes, {s['steps']} steps, "
              f"return {s['return_mean']:.1f}")
    return 0
