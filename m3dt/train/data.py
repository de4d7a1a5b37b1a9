"""The batch sources of training: the task-data files of a run and the samplers over them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from m3dt import tasks as registry
from m3dt.config import TrainConfig
from m3dt.data.sampler import Batch, MultiTaskSampler
from m3dt.data.store import open_task_data


def data_path(data_dir: str | Path, task: str) -> Path:
    """`<data_dir>/<task>.h5`, the store's file of a registry task."""
    return Path(data_dir) / f"{registry.get(task).name}.h5"


def data_files(data_dir: str | Path, tasks: Sequence[str]) -> list[Path]:
    return [data_path(data_dir, t) for t in tasks]


def load_sampler(data_dir: str | Path, tasks: Sequence[str], cfg: TrainConfig, seed_offset: int = 0) -> MultiTaskSampler:
    """A `MultiTaskSampler` over `tasks` (in that order) read from `data_dir/<task>.h5`."""
    names = registry.resolve(list(tasks))
    missing = [str(data_path(data_dir, t)) for t in names if not data_path(data_dir, t).is_file()]
    if missing:
        raise FileNotFoundError(f"no task data for {len(missing)} task(s): {missing[:5]}")
    datas = {t: open_task_data(data_path(data_dir, t)) for t in names}
    scfg = cfg.sampler
    if seed_offset:
        scfg = dataclasses.replace(scfg, seed=scfg.seed + seed_offset)
    try:
        return MultiTaskSampler(datas, scfg)
    finally:
        for d in datas.values():
            d.close()


class GroupedSource:
    """Stage 2 for all experts at once: each step concatenates one batch of every group
    (group e's sampler, its own round robin), in expert order; routing "grouped"."""

    def __init__(self, samplers: Sequence[MultiTaskSampler]):
        self.samplers = list(samplers)

    def next(self, step: int) -> tuple[str, Batch]:
        parts = [s.next(step)[1] for s in self.samplers]
        fields = {f: torch.cat([getattr(p, f) for p in parts]) for f in Batch.__dataclass_fields__}
        return "grouped", Batch(**fields)

    def state_dict(self) -> dict[str, Any]:
        return {"samplers": [s.state_dict() for s in self.samplers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for s, st in zip(self.samplers, state["samplers"], strict=True):
            s.load_state_dict(st)
