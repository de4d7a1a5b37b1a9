"""Entry points of the workflow's figure rules: dispatch by name, build the single-task table
from evaluation outputs."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import pandas as pd

from m3dt.plots.figures import fig2, fig3, fig6, fig7, fig9, fig12
from m3dt.plots.single_task import single_task_figure, single_task_table
from m3dt.plots.tables import table1, table2

log = logging.getLogger("m3dt.plots")
NEEDS = {  # figure -> (needs scores, needs conflict)
    "fig2": (True, True), "fig3": (True, False), "fig6": (True, False), "fig7": (True, True),
    "fig9": (True, False), "fig12": (False, True), "table1": (True, False), "table2": (True, False),
}


def make(figure: str, prefix: str, preset: str, scores: pd.DataFrame | None = None,
         conflict: pd.DataFrame | None = None, metric: str = "cosine_to_mean",
         single_task: pd.DataFrame | None = None) -> pd.DataFrame:
    """Draw `figure` (fig2 ... table2) to `prefix`.*; see each function for what it shows."""
    if figure not in NEEDS:
        raise ValueError(f"unknown figure {figure!r}; one of {sorted(NEEDS)}")
    need_s, need_c = NEEDS[figure]
    if need_s and scores is None:
        raise ValueError(f"{figure} needs evaluation scores")
    if need_c and conflict is None:
        raise ValueError(f"{figure} needs conflict CSVs")
    if figure == "fig2":
        return fig2(scores, conflict, prefix, preset, metric=metric)
    if figure == "fig3":
        return fig3(scores, prefix, preset)
    if figure == "fig6":
        return fig6(scores, prefix, preset)
    if figure == "fig7":
        return fig7(scores, conflict, prefix, preset, metric=metric)
    if figure == "fig9":
        return fig9(scores, prefix, preset)
    if figure == "fig12":
        return fig12(conflict, prefix, preset, metric=metric)
    if figure == "table1":
        return table1(scores, prefix, preset, single_task_gap=single_task)
    return table2(scores, prefix, preset)


def single_task_from_runs(score_csvs: Sequence[str | os.PathLike], tasks: Sequence[str],
                          expert_root: str | os.PathLike | None, table_prefix: str, figure_prefix: str,
                          preset: str) -> pd.DataFrame:
    """The single-task study: the per-task score CSVs (`eval/scores.csv`, one row per task)
    of the single-task runs (one run per task) -> `<table_prefix>.{csv,md}` and the figure
    `<figure_prefix>.{pdf,png,csv}`.
    The expert column comes from the data experts' `expert.json` under `expert_root`
    (None: imported data, no expert column)."""
    frames = [pd.read_csv(p) for p in score_csvs]
    ours = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["task", "normalized_score"])
    ours = ours.groupby("task", as_index=False)["normalized_score"].mean().rename(
        columns={"normalized_score": "score"})
    experts = None
    if expert_root:
        from m3dt.experts.table import expert_table_rows

        rows = expert_table_rows(tasks, expert_root)
        experts = pd.DataFrame(rows).rename(columns={"score_mean": "score"})[["task", "score"]]
    table = single_task_table(ours, None, experts, table_prefix, expected=list(tasks), preset=preset)
    single_task_figure(table, figure_prefix, preset)
    return table
