"""`python -m m3dt <command>`: every workflow step without Snakemake.

Commands register themselves in `COMMANDS` (name -> (help, add_arguments, run)); each
`run` lives in the module that owns the step.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from m3dt.cli import COMMANDS


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s arguments are added (each command imports its module)."""
    parser = argparse.ArgumentParser(prog="python -m m3dt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = COMMANDS[args.command][2]
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
