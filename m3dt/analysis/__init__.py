"""Gradient-conflict analysis and task grouping (paper §1; Fig. 2, 7, 12; stage-2 groups).

- `m3dt.analysis.conflict`: per-task gradients per parameter group, conflict metrics
  (`METRICS`), conflict tables and CSVs.
- `m3dt.analysis.measure`: `measure_conflict`, one checkpoint's conflict CSV (the job of
  `python -m m3dt conflict` and of the workflow's `conflict` rule).
- `m3dt.analysis.grouping`: random and gradient (k-means) task groups, `group_tasks` (the
  job of `python -m m3dt group` and of the `group_tasks` rule) and that command (the
  groups file itself is `m3dt.groups`).
- `m3dt.analysis.model_batches`: a trained model, its batches and its loss for both.

Names are re-exported here and loaded on first use, so `python -m m3dt` does not import
torch and scikit-learn for commands that do not need them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "conflict": (
        "DEFAULT_METRIC", "GROUP_ORDER", "METRICS", "conflict_table", "cosine_to_mean", "gram",
        "mean_pairwise_cosine", "negative_pair_fraction", "pairwise_negative_cosine",
        "parameter_groups", "per_task_gradients", "sign_disagreement", "stack_group",
        "write_conflict_csv",
    ),
    "grouping": (
        "conflict_features", "gradient_groups", "gradient_matrix", "group_tasks", "random_groups",
    ),
    "measure": ("measure_conflict",),
    "model_batches": ("batches_of", "load_model_and_batches"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'm3dt.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"m3dt.analysis.{_MODULE_OF[name]}"), name)
