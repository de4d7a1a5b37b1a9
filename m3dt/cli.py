"""Command table of `python -m m3dt`. Each command is (help, add_arguments, run)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import importlib

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]


def _lazy(module: str, add: str = "add_args", run: str = "run") -> tuple[Callable, Callable]:
    """(add_arguments, run) that import `module` only when called."""
    return (lambda p: getattr(importlib.import_module(module), add)(p),
            lambda a: getattr(importlib.import_module(module), run)(a))


def _tasks_args(p: argparse.ArgumentParser) -> None:
    from m3dt.tasks import SUITES

    p.add_argument("--suite", choices=sorted(SUITES), help="only this suite")
    p.add_argument("--benchmark", type=int, metavar="N", help="only the MT-N subset (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed (0-2)")
    p.add_argument("--csv", action="store_true", help="CSV instead of an aligned table")


def _tasks_run(args: argparse.Namespace) -> int:
    import pandas as pd

    from m3dt import tasks

    names = tasks.benchmark(args.benchmark, args.seed) if args.benchmark else tasks.MT160
    rows = [tasks.get(n).as_row() for n in names]
    if args.suite:
        rows = [r for r in rows if r["suite"] == args.suite]
    frame = pd.DataFrame(rows)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        print(frame.to_string(index=False))
    return 0


COMMANDS: dict[str, Command] = {
    "tasks": ("print the MT160 task registry", _tasks_args, _tasks_run),
    "data": ("offline data: train experts, collect, import, tables (see `data -h`)",
             *_lazy("m3dt.data.cli", "add_data_args", "run_data")),
    "train": ("train a stage or a baseline (backbone | expert | router | baseline | assemble)", *_lazy("m3dt.train.cli")),
    "evaluate": ("roll out a checkpoint on tasks, write per-task normalised scores", *_lazy("m3dt.evaluate.cli")),
    "import-checkpoint": ("convert an authors' (KongYilun/M3DT) model into a checkpoint `evaluate` reads",
                          *_lazy("m3dt.train.import_checkpoint")),
    "conflict": ("gradient conflict per parameter group of a checkpoint", *_lazy("m3dt.analysis.conflict_cli")),
    "group": ("partition tasks into expert groups (random | gradient)",
              *_lazy("m3dt.analysis.grouping", "add_group_args", "run_group")),
    "plot": ("figures and tables from collected results (see `plot -h`)", *_lazy("m3dt.plots.cli")),
    "compare": ("a finished run's figures and tables beside reference results; non-zero beyond tolerance",
                *_lazy("m3dt.compare")),
    "budget": ("sum of a preset's rule benchmark times and its wall time on N cores", *_lazy("m3dt.budget")),
}
