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
    parser = argparse.ArgumentParser(prog="python -m m3dt", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if name == command:
            add_args(p)
    return parser


#: errors a user causes (unknown task, missing or malformed file or config, bad checkpoint):
#: one line naming the culprit; anything else also gets one line, plus a hint.
EXPECTED = (OSError, KeyError, ValueError, RuntimeError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors end it with one line on stderr and exit status 1; `--debug`
    (anywhere on the line) shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = COMMANDS[args.command][2]
    try:
        return int(run(args) or 0)
    except Exception as e:
        if debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and e.filename and e.strerror:
            msg = f"{e.filename}: {e.strerror}"
        if not isinstance(e, EXPECTED):
            msg = f"{type(e).__name__}: {msg} (rerun with --debug for the traceback)"
        print(f"python -m m3dt {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
