"""Learning curves of SAC experts: quality against budget (`curve.csv`; the figure is
`m3dt.plots.experts.plot_curves`).

Every `ExpertConfig.curve_every` env steps the training pauses and the current policy's
deterministic action is evaluated on `curve_episodes` episodes of each curve task (the DMC
task itself; `curve_goals` evenly spaced goals of a family), with the same evaluation
seeds as the final evaluation. One row per (step, task): `step, wall_s, task,
score_mean, score_std, return_mean`. Evaluation does not touch the training env or the
agent's RNG, so a curve does not change what is trained.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from m3dt.experts.kinds import bind_expert
from m3dt.io import atomic_path
from m3dt.experts.rollout import evaluate_expert

if TYPE_CHECKING:
    from stable_baselines3 import SAC

CURVE_COLUMNS = ["step", "wall_s", "task", "score_mean", "score_std", "return_mean"]
_QUIET = logging.getLogger("m3dt.experts.curve")
_QUIET.setLevel(logging.WARNING)


def curve_tasks(all_tasks: Sequence[str], n_goals: int) -> list[str]:
    """The tasks a curve point evaluates: all of a single-task expert, `n_goals` evenly
    spaced of a family's goals."""
    if len(all_tasks) <= max(1, n_goals):
        return list(all_tasks)
    idx = np.linspace(0, len(all_tasks) - 1, max(1, n_goals)).round().astype(int)
    return [all_tasks[i] for i in sorted(set(idx.tolist()))]


def curve_point(model: "SAC", name: str, task_names: Sequence[str], *, episodes: int, seed: int, step: int,
                wall_s: float, max_steps: int | None = None) -> list[dict[str, Any]]:
    """Evaluate `model` (as the expert `name`) on `task_names`: one curve row per task."""
    rows = []
    for t in task_names:
        ev = evaluate_expert(bind_expert(model, t, name), episodes=episodes, seed=seed, max_steps=max_steps,
                             log=_QUIET)
        rows.append({"step": int(step), "wall_s": round(float(wall_s), 2), "task": t,
                     "score_mean": round(ev["score_mean"], 4), "score_std": round(ev["score_std"], 4),
                     "return_mean": round(ev["return_mean"], 4)})
    return rows


def append_rows(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = tuple(CURVE_COLUMNS)) -> None:
    """Append `rows` to the CSV `path` (curve or metrics), writing the header if it is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        if new:
            w.writeheader()
        w.writerows(rows)


def read_curve(path: str | os.PathLike):
    """curve.csv as a DataFrame (ValueError naming the file if columns are missing)."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [c for c in CURVE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: curve file lacks columns {missing}")
    return frame


def expert_curves(expert_names: Sequence[str], expert_root: str | os.PathLike) -> dict[str, Path]:
    """name -> curve.csv for each of `expert_names` whose folder has one."""
    out = {}
    for n in expert_names:
        p = Path(expert_root) / n / "curve.csv"
        if p.is_file():
            out[n] = p
    return out


def plot_curves(curves: dict[str, str | os.PathLike], out_paths: Sequence[str | os.PathLike],
                threshold: float | None = None, title: str | None = None) -> list[Path]:
    """One panel per expert: normalised score (mean over its curve tasks, band: mean of the
    per-task stds) against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    if not names:  # e.g. a Meta-World-only plan: scripted experts have no curve
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no SAC expert in this plan (scripted experts have no learning curve)", ha="center",
                va="center", fontsize=7)
        return _save(fig, out_paths)
    ncol = min(4, max(1, len(names)))
    nrow = (len(names) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        frame = read_curve(curves[name])
        g = frame.groupby("step").agg(score=("score_mean", "mean"), std=("score_std", "mean"),
                                      n=("task", "nunique")).reset_index()
        ax.plot(g["step"], g["score"], marker="o", markersize=2.5, linewidth=1.2)
        ax.fill_between(g["step"], g["score"] - g["std"], g["score"] + g["std"], alpha=0.2)
        if threshold is not None:
            ax.axhline(threshold, color="crimson", linestyle="--", linewidth=0.8)
        n_tasks = int(g["n"].max()) if len(g) else 0
        ax.set_title(f"{name} ({n_tasks} task{'s' if n_tasks != 1 else ''})", fontsize=8)
        ax.set_xlabel("env steps", fontsize=7)
        ax.set_ylim(0, 105)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("normalised score", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, out_paths)


def _save(fig, out_paths: Sequence[str | os.PathLike]) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [Path(p) for p in out_paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", dpi=130)
    plt.close(fig)
    return paths
