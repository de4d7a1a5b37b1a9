"""`python -m m3dt data <subcommand>`: the data step's commands.

`DATA_SUBCOMMANDS` maps a subcommand name to (help, add_arguments, run), the same shape as
`m3dt.cli.COMMANDS`; `m3dt.cli` registers one `data` command that dispatches on it. To add
a subcommand (e.g. `data import`), add an entry here; keep its argument parsing and run
function in the module that owns the step, and import heavy dependencies inside `run`.
"""

from __future__ import annotations

import argparse
from typing import Callable

from m3dt.experts.bundle import _bundle_args, _bundle_run, _list_args, _list_run
from m3dt.data.collect import _collect_args, _collect_run
from m3dt.experts.cli import _table_args, _table_run, _train_args, _train_run
from m3dt.data.importer import _import_args, _import_run

DataCommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]

DATA_SUBCOMMANDS: dict[str, DataCommand] = {
    "train-expert": ("train (SAC) or set up (scripted) experts and evaluate them", _train_args, _train_run),
    "collect": ("roll out experts to write results/data/<task>.h5", _collect_args, _collect_run),
    "experts-table": ("results/data/experts.csv and the expert-quality figure", _table_args, _table_run),
    "bundle-expert": ("copy trained SAC experts into the package's bundle (actor, provenance, curve)", _bundle_args,
                      _bundle_run),
    "list-bundled": ("the SAC experts that ship with the package", _list_args, _list_run),
    "import": ("import the authors' data (SRC/<task>/<i>.npz) into OUT/<task>.h5", _import_args, _import_run),
}


def add_data_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    for name, (help_text, add_args, _) in DATA_SUBCOMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False))


def run_data(args: argparse.Namespace) -> int:
    return int(DATA_SUBCOMMANDS[args.data_command][2](args) or 0)
