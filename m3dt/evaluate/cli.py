"""`python -m m3dt evaluate`: roll out a checkpoint on tasks, write per-task normalised scores.

    python -m m3dt evaluate --checkpoint run/final.pt --benchmark 10 --seed 0 \\
        --out scores.csv --summary summary.csv --workers 4

Tasks: `--tasks T ...`, or `--benchmark N --seed S` (the authors' MT-N subset), or by
default every task the checkpoint was trained on. `--out` gets one row per task
(`m3dt.evaluate.scores.PER_TASK_COLUMNS`), `--summary` the mean over tasks for "all" and
each suite, `--episodes-csv` one row per episode. A bad checkpoint, an unknown task or a
task the checkpoint does not know prints one `error:` line and exits with status 2,
writing nothing. The job itself is `m3dt.evaluate.checkpoint.evaluate_to_files`.
"""

from __future__ import annotations

import argparse
import sys

from m3dt.io import log_to


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (trainer output)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--tasks", nargs="+", metavar="T", help="task names (default: the checkpoint's tasks)")
    src.add_argument("--benchmark", type=int, metavar="N", help="the MT-N subset (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed (0-2) of --benchmark")
    p.add_argument("--episodes", type=int, metavar="E", help="episodes per task (default: the registry's, 10 or 1)")
    p.add_argument("--eval-seed", type=int, default=0, help="environment i of each task is reset with eval-seed + i")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="worker processes (one task at a time each)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--prompt-episode", type=_prompt_episode, default="best",
                   help="which of the task's prompt episodes: best (the higher return, the authors; default) or an index")
    p.add_argument("--action-history", choices=["full", "masked"], default="full",
                   help="actions fed back to the model: the full predicted 8 dims (the authors; default) or the "
                        "task's real dims with zeros beyond (masked)")
    p.add_argument("--max-steps", type=int, help="cut episodes after this many steps (quick checks only)")
    p.add_argument("--bf16", choices=["off", "on", "auto"], default="off",
                   help="bf16 autocast of the model: off, on, or auto (where bf16 is native: AVX512-BF16 CPU, CUDA)")
    p.add_argument("--out", required=True, help="per-task scores CSV")
    p.add_argument("--summary", help="summary CSV (all tasks and per suite)")
    p.add_argument("--episodes-csv", help="per-episode CSV")
    p.add_argument("--log", help="also log to this file")


def _prompt_episode(value: str) -> int | str:
    if value == "best":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'best' or an index, got {value!r}") from None


def _error(msg: str) -> int:
    print(f"m3dt evaluate: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from m3dt import tasks as registry
    from m3dt.evaluate.checkpoint import BadEvalInput, EvalConfig, error_message, evaluate_to_files
    from m3dt.evaluate.scores import summarize

    try:
        cfg = EvalConfig(episodes=args.episodes, seed=args.eval_seed, max_steps=args.max_steps, device=args.device,
                         prompt_episode=args.prompt_episode, action_history=args.action_history,
                         bf16={"off": False, "on": True, "auto": "auto"}[args.bf16], workers=args.workers)
        names = registry.benchmark(args.benchmark, args.seed) if args.benchmark is not None else args.tasks
    except (ValueError, KeyError) as e:
        return _error(error_message(e))

    with log_to(args.log):
        try:
            df = evaluate_to_files(args.checkpoint, args.out, args.summary, cfg, tasks=names,
                                   episodes_csv=args.episodes_csv)
        except BadEvalInput as e:
            return _error(str(e))
        print(summarize(df).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return 0
