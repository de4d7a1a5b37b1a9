"""Expert names, kinds and the expert folder's layout.

An expert is named after what it covers: the task itself for Meta-World and DMC,
``ant-dir`` / ``cheetah-vel`` for the goal families (one goal-conditioned agent each).
Its folder is `<expert_root>/<expert name>/` (see `m3dt.experts` for the files in it).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from m3dt import tasks

#: expert-family name -> registry suite (one goal-conditioned agent per family)
FAMILIES: dict[str, str] = {"ant-dir": "ant_dir", "cheetah-vel": "cheetah_vel"}
EXPERT_KINDS = ("scripted", "sac", "sac-goal")
EXPERT_JSON = "expert.json"
MODEL_ZIP = "model.zip"
METRICS_CSV = "metrics.csv"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
CHECKPOINT_DIR = "checkpoint"


def expert_name(task: str) -> str:
    """Name (and folder) of the expert that generates `task`'s data."""
    if task in FAMILIES:
        return task
    spec = tasks.get(task)
    for fam, suite in FAMILIES.items():
        if spec.suite == suite:
            return fam
    return spec.name


def expert_kind(name: str) -> str:
    """`scripted`, `sac` or `sac-goal` for an expert name (or a task name)."""
    name = expert_name(name)
    if name in FAMILIES:
        return "sac-goal"
    return "scripted" if tasks.get(name).suite == "metaworld" else "sac"


def expert_tasks(name: str) -> tuple[str, ...]:
    """The registry tasks one expert covers (40 for a family, else the task itself)."""
    if name in FAMILIES:
        return tasks.tasks_of_suite(FAMILIES[name])
    return (tasks.get(name).name,)


def expert_names(task_names: Iterable[str]) -> list[str]:
    """Distinct expert names needed for `task_names`, in first-seen order (for the workflow)."""
    out: list[str] = []
    for t in task_names:
        n = expert_name(t)
        if n not in out:
            out.append(n)
    return out


def goal_features(task: str) -> np.ndarray:
    """What a goal-conditioned agent sees of the goal: (cos, sin) of the ant-dir angle,
    or the cheetah-vel target velocity."""
    spec = tasks.get(task)
    if spec.suite == "ant_dir":
        return np.array([math.cos(spec.goal), math.sin(spec.goal)], dtype=np.float32)
    if spec.suite == "cheetah_vel":
        return np.array([spec.goal], dtype=np.float32)
    raise ValueError(f"{task}: not a goal-family task")


def expert_dir(name_or_task: str, expert_root: str | os.PathLike) -> Path:
    return Path(expert_root) / expert_name(name_or_task)


def read_expert_json(name_or_task: str, expert_root: str | os.PathLike) -> dict[str, Any] | None:
    p = expert_dir(name_or_task, expert_root) / EXPERT_JSON
    return json.loads(p.read_text()) if p.exists() else None
