"""Task grouping for stage 2: expert i trains on group i (paper §1, "Task grouping").

- `random_groups`: a balanced random partition (the authors' M3DT-Random).
- `gradient_groups`: the authors' gradient procedure: per-task backbone gradients g_i
  (`m3dt.analysis.conflict.per_task_gradients`), coordinates that are zero for every task
  dropped, features x_i = ḡ ⊙ g_i with ḡ = mean_i g_i, k-means with E clusters and
  `n_init` restarts (the restart with the least sum of *unsquared* distances to the
  centres kept, as the authors' `run_kmeans_multiple_times`; `kmeans_restarts`), the whole
  k-means repeated `n_repeats` times with different seeds, keeping the first partition
  whose group sizes have the least variance.

Groups are stored as the groups file of `m3dt.groups`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from m3dt.groups import METHODS, write_groups_json

if TYPE_CHECKING:  # torch and scikit-learn load on first use, so the CLI starts fast
    from torch import Tensor, nn

log = logging.getLogger("m3dt.analysis")

REDUCTIONS = ("none", "pca")
CRITERIA = ("distance", "inertia")  # how the best k-means restart is chosen


def _check_n_groups(n_groups: int, n_tasks: int) -> None:
    if not 1 <= n_groups <= n_tasks:
        raise ValueError(
            f"number of groups E={n_groups} must be between 1 and the number of tasks T={n_tasks}"
        )


def _check_tasks(tasks: Sequence[str]) -> list[str]:
    tasks = list(tasks)
    dup = sorted({t for t in tasks if tasks.count(t) > 1})
    if dup:
        raise ValueError(f"tasks listed more than once: {dup}")
    return tasks


def _from_labels(tasks: Sequence[str], labels: Sequence[int], n_groups: int) -> list[list[str]]:
    """Groups from cluster labels, in a canonical order: tasks keep their input order and
    groups are ordered by their first task (so equal partitions compare equal)."""
    groups: list[list[str]] = [[] for _ in range(n_groups)]
    for task, lab in zip(tasks, labels):
        groups[int(lab)].append(task)
    order = {t: i for i, t in enumerate(tasks)}
    return sorted((g for g in groups if g), key=lambda g: order[g[0]])


def random_groups(tasks: Sequence[str], n_groups: int, seed: int) -> list[list[str]]:
    """A balanced random partition of `tasks` into `n_groups` groups (sizes differ by <= 1).

    As the authors: shuffle, then cut into consecutive chunks, the first T mod E chunks one
    task larger. Tasks keep their input order inside a group. Deterministic for a seed
    (NumPy `default_rng(seed)`).
    """
    tasks = _check_tasks(tasks)
    _check_n_groups(n_groups, len(tasks))
    perm = np.random.default_rng(seed).permutation(len(tasks))
    base, extra = divmod(len(tasks), n_groups)
    groups, start = [], 0
    for i in range(n_groups):
        size = base + (i < extra)
        groups.append([tasks[j] for j in sorted(perm[start:start + size])])
        start += size
    return groups


def gradient_matrix(
    grads_by_task: Mapping[str, Tensor | np.ndarray | Mapping[str, Tensor]],
    param_groups: Sequence[str] | None = None,
) -> tuple[list[str], Tensor]:
    """(tasks, G): each task's gradient flattened into one row of a (T, D) float32 matrix.

    Values may be 1-D gradients, or {parameter group: 1-D gradient} as returned by
    `per_task_gradients`; then the groups in `param_groups` (default: all of them, in their
    order) are concatenated.
    """
    import torch

    tasks = list(grads_by_task)
    if not tasks:
        raise ValueError("no tasks given")
    rows = []
    for t in tasks:
        g = grads_by_task[t]
        if isinstance(g, Mapping):
            names = list(g) if param_groups is None else list(param_groups)
            missing = [n for n in names if n not in g]
            if missing:
                raise KeyError(f"task {t!r} has no parameter group(s) {missing}; has {list(g)}")
            row = torch.cat([torch.as_tensor(g[n]).flatten().float() for n in names])
        else:
            row = torch.as_tensor(g).flatten().float()
        rows.append(row)
    sizes = {r.numel() for r in rows}
    if len(sizes) != 1:
        raise ValueError(f"task gradients have different lengths: {sorted(sizes)}")
    return tasks, torch.stack(rows)


def conflict_features(grads: Tensor | np.ndarray) -> tuple[Tensor, int]:
    """The authors' task features: drop the all-zero columns of G, then x_i = ḡ ⊙ g_i.

    Returns (X, n_dropped): X is (T, D') float32 with D' the kept coordinates.
    """
    import torch

    g = torch.as_tensor(grads).float()
    if g.ndim != 2:
        raise ValueError(f"task gradients must be a (T, D) matrix, got shape {tuple(g.shape)}")
    if not torch.isfinite(g).all():
        raise ValueError("task gradients hold NaN or inf")
    keep = (g != 0).any(dim=0)
    g = g[:, keep]
    return g.mean(dim=0, keepdim=True) * g, int((~keep).sum())


def _pca_exact(x: np.ndarray) -> np.ndarray:
    """Coordinates of the T points in their own affine hull (at most T - 1 dims).

    Every pairwise distance is kept, so k-means (distances to means of points) gives the
    same partitions as on `x` up to rounding, with T x T instead of T x D memory.
    """
    centred = x - x.mean(axis=0, keepdims=True)
    gram = centred @ centred.T
    vals, vecs = np.linalg.eigh(gram)
    keep = vals > vals.max() * 1e-12 if vals.max() > 0 else np.zeros_like(vals, dtype=bool)
    if not keep.any():
        return np.zeros((x.shape[0], 1))
    return vecs[:, keep] * np.sqrt(vals[keep])


def kmeans_restarts(
    x: np.ndarray, n_clusters: int, n_init: int, seed: int, init: str = "random", criterion: str = "distance"
) -> tuple[np.ndarray, float, float]:
    """k-means (scikit-learn, Lloyd) from `n_init` initialisations; the best restart by `criterion`.

    x (T, D). "distance" (default, the authors' `run_kmeans_multiple_times`): the least
    Σ_i ‖x_i − c_{label(i)}‖, unsquared; "inertia": the least Σ_i ‖x_i − c_{label(i)}‖²
    (scikit-learn's own choice among `n_init`). Restart r uses `random_state` = the r-th
    number of `SeedSequence(seed)`; ties keep the earlier restart.
    Returns (labels (T,), distance sum, inertia) of the chosen restart.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    best: tuple[float, np.ndarray, float, float] | None = None
    rows = np.arange(x.shape[0])
    # small problems (the PCA coordinates): OpenMP start-up costs more than the work (4 ms vs
    # 20-40 ms per restart measured at 13 x 12 on a busy 2-core machine)
    with threadpool_limits(1, user_api="openmp") if x.size <= 1_000_000 else contextlib.nullcontext():
        for s in np.random.SeedSequence(seed).generate_state(n_init):
            # copy_x=False: sklearn centres x in place and restores it (no T x D copy per restart)
            km = KMeans(n_clusters=n_clusters, n_init=1, init=init, random_state=int(s), copy_x=False).fit(x)
            d = km.transform(x)[rows, km.labels_]  # (T,) distance of each point to its own centre
            dist, inertia = float(d.sum()), float(km.inertia_)
            key = dist if criterion == "distance" else inertia
            if best is None or key < best[0]:
                best = (key, km.labels_.copy(), dist, inertia)
    assert best is not None, "n_init must be >= 1"
    return best[1], best[2], best[3]


def gradient_groups(
    grads_by_task: Mapping[str, Tensor | np.ndarray | Mapping[str, Tensor]],
    n_groups: int,
    seed: int,
    n_init: int = 40,
    n_repeats: int = 40,
    param_groups: Sequence[str] | None = None,
    init: str = "random",
    reduce: str = "none",
    criterion: str = "distance",
) -> tuple[list[list[str]], dict[str, Any]]:
    """Group tasks by k-means on their gradient-conflict features (the authors' procedure).

    1. G (T x D) stacks each task's gradient (`gradient_matrix`; `param_groups` picks a
       subset of parameter groups, default all). Columns zero for every task are dropped.
    2. x_i = ḡ ⊙ g_i, ḡ = (1/T) Σ_i g_i, divided by max |x_id| (one positive constant:
       every k-means partition is unchanged, and float32 stays clear of underflow).
    3. `kmeans_restarts`: scikit-learn k-means from `n_init` initialisations, the restart
       with the least sum of unsquared distances to the centres kept (`criterion`
       "distance", the authors'; "inertia" keeps the least squared sum, sklearn's choice).
       `init="random"` (default) starts from E random tasks, as the authors' own k-means
       did; "k-means++" is the alternative.
    4. Step 3 runs `n_repeats` times with seeds drawn from `seed`; kept: the first partition
       whose group sizes have the smallest variance (np.var), as the authors' strict `<`.

    KMeans never returns an empty cluster (it relocates empty centres), and E <= T is
    checked, so every group is non-empty; fewer than E distinct task features raise a
    ValueError. Deterministic for a seed.

    Memory: G and X are T x D float32 (160 tasks x 5.3M backbone weights = 3.4 GB each);
    KMeans copies X once more. `reduce="pca"` runs k-means on the exact full-rank PCA of X
    (T x (T-1)), which keeps every pairwise distance and so the same partitions up to
    rounding, in a fraction of the time; off by default.

    Returns (groups, stats); groups in canonical order (tasks in input order, groups by
    first task); stats: distance, inertia, size_variance, repeat, n_coordinates, n_dropped,
    n_init, n_repeats, init, reduce, criterion.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if n_init < 1 or n_repeats < 1:
        raise ValueError(f"n_init and n_repeats must be >= 1, got {n_init}, {n_repeats}")
    tasks, g = gradient_matrix(grads_by_task, param_groups)
    _check_tasks(tasks)
    _check_n_groups(n_groups, len(tasks))
    x_t, n_dropped = conflict_features(g)
    n_coordinates = int(x_t.shape[1])
    del g
    scale = float(x_t.abs().max()) if x_t.numel() else 0.0
    if scale > 0:
        x_t.div_(scale)
    x = x_t.numpy()
    if reduce == "pca" or n_coordinates == 0:
        x = _pca_exact(x.astype(np.float64))
    n_distinct = len({row.tobytes() for row in x})
    if n_distinct < n_groups:
        raise ValueError(f"only {n_distinct} distinct task features among T={len(tasks)} tasks: "
                         f"cannot form E={n_groups} groups by k-means")

    seeds = np.random.SeedSequence(seed).generate_state(n_repeats)
    best: tuple[float, float, float, int, np.ndarray] | None = None
    for r, s in enumerate(seeds):
        labels, dist, inertia = kmeans_restarts(x, n_groups, n_init, int(s), init, criterion)
        size_var = float(np.var(np.bincount(labels, minlength=n_groups)))
        if best is None or size_var < best[0]:
            best = (size_var, dist, inertia, r, labels)
    assert best is not None
    size_var, dist, inertia, repeat, labels = best
    groups = _from_labels(tasks, labels, n_groups)
    if len(groups) != n_groups:  # KMeans relocates empty clusters; kept as a guard
        raise RuntimeError(f"k-means returned {len(groups)} non-empty groups, {n_groups} requested")
    stats = {
        "distance": dist, "inertia": inertia, "size_variance": size_var, "repeat": repeat,
        "n_coordinates": n_coordinates, "n_dropped": n_dropped,
        "n_init": n_init, "n_repeats": n_repeats, "init": init, "reduce": reduce, "criterion": criterion,
    }
    return groups, stats


def group_tasks(
    tasks: Sequence[str],
    method: str,
    n_groups: int,
    seed: int,
    out: str | os.PathLike,
    *,
    benchmark: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    n_batches: int = 10,
    n_init: int = 40,
    n_repeats: int = 40,
    reduce: str = "none",
    criterion: str = "distance",
    train_mode: bool = True,
    device: str = "cpu",
) -> list[list[str]]:
    """Partition `tasks` into `n_groups` expert groups and write the groups file `out`.

    The one grouping job of `python -m m3dt group` and the workflow's `group_tasks` rule.
    method "random": `random_groups(tasks, n_groups, seed)`. method "gradient": per-task
    gradients of the stage-1 `checkpoint` on the data in `data_dir` (`n_batches` batches
    each, dropout on with `train_mode`; `seed` seeds the batches and the dropout masks),
    then `gradient_groups` (`n_init`, `n_repeats`, `reduce`, `criterion`). The file's meta:
    method, seed, tasks, benchmark (the MT-N the tasks came from, or None), and for the
    gradient method checkpoint, data_dir, n_batches, train_mode and the k-means stats.
    The other arguments are ignored by the random method. Returns the groups.
    """
    if method not in METHODS:
        raise ValueError(f"grouping method must be one of {METHODS}, got {method!r}")
    names = list(tasks)
    meta: dict[str, Any] = {"method": method, "seed": seed, "tasks": names, "benchmark": benchmark}
    if method == "random":
        groups = random_groups(names, n_groups, seed)
    else:
        if checkpoint is None or data_dir is None:
            raise ValueError("grouping method 'gradient' needs a checkpoint and a data_dir")
        _check_n_groups(n_groups, len(names))
        import torch

        from m3dt.analysis.conflict import per_task_gradients
        from m3dt.analysis.model_batches import load_model_and_batches

        model, batches, loss_fn = load_model_and_batches(checkpoint, data_dir, names, device)
        torch.manual_seed(seed)  # dropout masks in train mode
        grads = per_task_gradients(model, batches, loss_fn, names, n_batches=n_batches, train_mode=train_mode)
        groups, stats = gradient_groups(grads, n_groups, seed, n_init=n_init, n_repeats=n_repeats, reduce=reduce,
                                        criterion=criterion)
        meta.update(checkpoint=str(checkpoint), data_dir=str(data_dir), n_batches=n_batches, train_mode=train_mode,
                    kmeans=stats)
    write_groups_json(out, groups, meta)
    log.info("wrote %d groups (sizes %s) to %s", len(groups), [len(g) for g in groups], out)
    return groups


# ---------------------------------------------------------------------------------------
# `python -m m3dt group`
# ---------------------------------------------------------------------------------------


def add_group_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tasks", nargs="+", metavar="T", help="task names")
    src.add_argument("--benchmark", type=int, metavar="N", help="the MT-N subset (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed and grouping seed")
    p.add_argument("--method", choices=METHODS, default="random", help="grouping method")
    p.add_argument("--experts", type=int, default=8, metavar="E", help="number of groups (experts)")
    p.add_argument("--out", required=True, help="output groups JSON")
    p.add_argument("--checkpoint", help="stage-1 backbone checkpoint (gradient method)")
    p.add_argument("--data-dir", help="task data directory (gradient method)")
    p.add_argument("--n-batches", type=int, default=10, help="batches averaged per task gradient")
    p.add_argument("--n-init", type=int, default=40, help="k-means restarts")
    p.add_argument("--n-repeats", type=int, default=40, help="k-means repeats (least size variance kept)")
    p.add_argument("--reduce", choices=REDUCTIONS, default="none",
                   help="k-means on the features (none) or on their exact PCA coordinates (pca: same "
                        "partitions up to rounding, T x T instead of T x D)")
    p.add_argument("--criterion", choices=CRITERIA, default="distance",
                   help="best k-means restart: least sum of unsquared distances to the centres (distance, the "
                        "authors) or least inertia (sklearn's)")
    p.add_argument("--train-mode", action=argparse.BooleanOptionalAction, default=True,
                   help="measure gradients with dropout on (default, the authors); --no-train-mode: dropout off")
    p.add_argument("--device", default="cpu", help="device for the gradient method")


def run_group(args: argparse.Namespace) -> int:
    from m3dt import tasks as registry

    if args.method == "gradient" and (not args.checkpoint or not args.data_dir):
        raise SystemExit("--method gradient needs --checkpoint and --data-dir")
    names = list(registry.resolve(args.tasks) if args.tasks else registry.benchmark(args.benchmark, args.seed))
    group_tasks(names, args.method, args.experts, args.seed, args.out, benchmark=args.benchmark,
                checkpoint=args.checkpoint, data_dir=args.data_dir, n_batches=args.n_batches, n_init=args.n_init,
                n_repeats=args.n_repeats, reduce=args.reduce, criterion=args.criterion, train_mode=args.train_mode,
                device=args.device)
    return 0
