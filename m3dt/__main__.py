"""`python -m m3dt <command>`: every workflow step without Snakemake.

Commands register themselves in `COMMANDS` (name -> (help, add_arguments, run)); each
`run` lives in the module that owns the step.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from m3dt.cli import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m m3dt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = COMMANDS[args.command][2]
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
