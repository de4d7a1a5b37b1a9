"""Per-task scores, benchmark summaries and their CSV files.

The benchmark score is the mean over tasks of each task's mean normalised score over its
episodes (paper.md §3), so a task with 10 episodes weighs as much as one with 1.

- `per_task(df)`: one row per (task, suite, seed) of the per-episode frame of
  `evaluate`: episodes, mean / std (over episodes, ddof 0) of the raw return, mean
  length, success_rate (Meta-World: fraction of successful episodes; NaN elsewhere),
  normalized_score (mean) and score_std.
- `summarize(df)`: rows for scope "all" and each suite present (registry order):
  n_tasks, n_episodes, score_mean (mean over tasks), score_std (std over tasks, ddof 0,
  0 for a single task), success_rate (mean over the Meta-World tasks of their success
  rates; NaN when the scope has none). Accepts the per-episode frame or `per_task`'s.
- `write_scores(df, per_task_csv, summary_csv, episodes_csv, n_params)`: the CSV files,
  each written atomically (`m3dt.io.atomic_path`), all renamed into place only once every
  one of them was written; `n_params` (the evaluated model's parameter count) adds a
  column of that name to the summary.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import pandas as pd

from m3dt import tasks as registry
from m3dt.io import atomic_path

PER_TASK_COLUMNS = ("task", "suite", "seed", "episodes", "return", "return_std", "length", "success_rate",
                    "normalized_score", "score_std")
SUMMARY_COLUMNS = ("scope", "n_tasks", "n_episodes", "score_mean", "score_std", "success_rate")


def per_task(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, suite, seed) of a per-episode frame, in order of first appearance."""
    if "episodes" in df.columns:  # already per task
        return df.loc[:, [c for c in PER_TASK_COLUMNS if c in df.columns]].reset_index(drop=True)
    rows = []
    for (task, suite, seed), g in df.groupby(["task", "suite", "seed"], sort=False):
        ret = g["return"].to_numpy(float)
        score = g["normalized_score"].to_numpy(float)
        succ = g["success"].to_numpy(float)
        rows.append({"task": task, "suite": suite, "seed": seed, "episodes": len(g),
                     "return": ret.mean(), "return_std": ret.std(), "length": g["length"].mean(),
                     "success_rate": float(np.nanmean(succ)) if np.isfinite(succ).any() else math.nan,
                     "normalized_score": score.mean(), "score_std": score.std()})
    return pd.DataFrame(rows, columns=list(PER_TASK_COLUMNS))


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean normalised score over tasks for scope "all" and per suite (see the module docstring)."""
    pt = per_task(df)
    # one score per task: weighted by episodes over its rows (several seeds of one task)
    w = pt["episodes"].to_numpy(float)
    g = pt.assign(_ws=pt["normalized_score"] * w, _wr=pt["success_rate"] * w).groupby(["task", "suite"], sort=False)
    tasks_df = pd.DataFrame({
        "episodes": g["episodes"].sum(),
        "score": g["_ws"].sum() / g["episodes"].sum(),
        "success": g["_wr"].sum(min_count=1) / g["episodes"].sum(),
    }).reset_index()
    suites = [s for s in registry.SUITES if s in set(tasks_df["suite"])]
    suites += sorted(set(tasks_df["suite"]) - set(suites))
    rows = []
    for scope in ["all", *suites]:
        sel = tasks_df if scope == "all" else tasks_df[tasks_df["suite"] == scope]
        score = sel["score"].to_numpy(float)
        mw = sel.loc[sel["suite"] == "metaworld", "success"].to_numpy(float)
        rows.append({"scope": scope, "n_tasks": len(sel), "n_episodes": int(sel["episodes"].sum()),
                     "score_mean": float(score.mean()) if len(score) else math.nan,
                     "score_std": float(score.std()) if len(score) else math.nan,
                     "success_rate": float(mw.mean()) if len(mw) else math.nan})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def write_scores(df: pd.DataFrame, per_task_csv: str | Path | None, summary_csv: str | Path | None = None,
                 episodes_csv: str | Path | None = None, n_params: int | None = None) -> dict[str, Path]:
    """Write `per_task(df)`, `summarize(df)` (with an `n_params` column when given) and the
    episode rows (each optional) atomically."""

    def summary(d: pd.DataFrame) -> pd.DataFrame:
        out = summarize(d)
        if n_params is not None:
            out["n_params"] = int(n_params)
        return out

    frames = {"per_task": (per_task_csv, per_task), "summary": (summary_csv, summary),
              "episodes": (episodes_csv, lambda d: d)}
    out: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        for key, (path, fn) in frames.items():
            if path is None:
                continue
            tmp = stack.enter_context(atomic_path(path))
            fn(df).to_csv(tmp, index=False)
            out[key] = Path(path)
    return out
