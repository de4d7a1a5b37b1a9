"""Figures and tables of the paper from collected results (one function each).

Formats of the input frames: `m3dt.plots.common` (scores frame, conflict frame).
Figures write `<prefix>.{pdf,png,csv}`, tables `<prefix>.{csv,md}`; each states its preset.

>>> from m3dt import plots
>>> scores = plots.collect_scores(["runs/a/summary.csv"], [{"model": "prompt_dt", "n_tasks": 10, "seed": 0}])
>>> plots.fig3(scores, "results/figures/fig3", preset="quick")
"""

from m3dt.plots.common import (
    CONFLICT_METRICS,
    MODELS,
    PlotDataError,
    collect_conflict,
    collect_scores,
    paper_numbers,
    preset_label,
)
from m3dt.plots.figures import fig2, fig3, fig6, fig7, fig9, fig12
from m3dt.plots.single_task import single_task_figure, single_task_suite_means, single_task_table
from m3dt.plots.tables import table1, table2

__all__ = [
    "CONFLICT_METRICS",
    "MODELS",
    "PlotDataError",
    "collect_conflict",
    "collect_scores",
    "fig2",
    "fig3",
    "fig6",
    "fig7",
    "fig9",
    "fig12",
    "paper_numbers",
    "preset_label",
    "single_task_figure",
    "single_task_suite_means",
    "single_task_table",
    "table1",
    "table2",
]
