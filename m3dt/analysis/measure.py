"""One conflict measurement: a checkpoint's per-task gradients -> one conflict CSV.

`measure_conflict` is the job behind both `python -m m3dt conflict`
(`m3dt.analysis.conflict_cli`) and the workflow's `conflict` rule
(`workflow/scripts/conflict.py`): restore the model, average each task's gradient over
`n_batches` batches of its training data (no update), and write one CSV row per
parameter group (embeddings, attention, mlp, experts, routers, other, all) with one
column per metric (`m3dt.analysis.conflict.METRICS`), preceded by the `meta` columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("m3dt.analysis")


def measure_conflict(
    checkpoint: str | os.PathLike,
    tasks: Sequence[str],
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    n_batches: int = 10,
    batch_size: int | None = None,
    metrics: Sequence[str] | None = None,
    train_mode: bool = True,
    device: str = "cpu",
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Gradient conflict per parameter group of `checkpoint` on `tasks`, written to `out`.

    tasks: registry names (resolved; Meta-World v3 names are accepted). data_dir: the
    folder of `<task>.h5` files. seed: the batch-sampling seed and the dropout seed.
    n_batches: batches averaged per task gradient (paper: 10). batch_size: segments per
    batch (default: the checkpoint's). metrics: columns to compute (default: all).
    train_mode: dropout on while measuring (the authors) or off. meta: constant columns
    written first (e.g. n_tasks, seed, run, checkpoint). Returns `out`.
    """
    import torch

    from m3dt import tasks as registry
    from m3dt.analysis.conflict import parameter_groups, per_task_gradients, write_conflict_csv
    from m3dt.analysis.model_batches import load_model_and_batches

    names = list(registry.resolve(list(tasks)))
    model, batches, loss_fn = load_model_and_batches(checkpoint, data_dir, names, device, batch_size, seed)
    torch.manual_seed(seed)  # dropout masks in train mode
    groups = model.conflict_groups() if hasattr(model, "conflict_groups") else parameter_groups(model)
    groups = {k: v for k, v in groups.items() if v}
    grads = per_task_gradients(model, batches, loss_fn, names, n_batches=n_batches, params=groups,
                               train_mode=train_mode)
    path = write_conflict_csv(out, grads, metrics, dict(meta or {}))
    log.info("conflict of %d tasks, groups %s -> %s", len(names), list(groups), out)
    return path
