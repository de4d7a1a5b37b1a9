"""One evaluation job: a checkpoint's rollouts -> per-task scores and a summary.

`evaluate_to_files(checkpoint, scores_csv, summary_csv, cfg)` is the job behind both
`python -m m3dt evaluate` (`m3dt.evaluate.cli`) and the workflow's `evaluate` rule
(`workflow/scripts/evaluate.py`); `evaluate_checkpoint` is the same without the files.
The settings are one `EvalConfig` (the `evaluation` config section, plus the worker count,
which the workflow takes from the job's threads).

Bad input (a missing or malformed checkpoint, an unknown task, a task the checkpoint was
not trained on, a prompt episode it lacks) raises `BadEvalInput` before any rollout, so
nothing is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import pandas as pd
import torch

from m3dt import tasks as registry
from m3dt.evaluate.rollout import ACTION_HISTORIES, evaluate
from m3dt.evaluate.scores import summarize, write_scores
from m3dt.policy import BEST, Policy, load_policy

log = logging.getLogger("m3dt.evaluate")


class BadEvalInput(ValueError):
    """The checkpoint, a task or a prompt episode cannot be evaluated (nothing was run)."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How a checkpoint is evaluated (the `evaluation` config section, and `workers`)."""

    episodes: int | None = None  # per task; None: the registry's (10 per task, the paper)
    seed: int = 0  # environment i of a task is reset with seed + i
    max_steps: int | None = None  # cut episodes after this many steps (quick checks only)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    prompt_episode: int | str = BEST  # "best" (the higher-return prompt episode) or an index
    action_history: str = "full"  # "full": all 8 predicted dims fed back (the authors); "masked"
    bf16: bool | str = False  # bf16 autocast of the model: False, True or "auto" (where native)
    workers: int = 1  # worker processes, one task at a time each

    def __post_init__(self) -> None:
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not (self.prompt_episode == BEST or isinstance(self.prompt_episode, int)):
            raise ValueError(f"prompt_episode must be {BEST!r} or an index, got {self.prompt_episode!r}")
        if self.action_history not in ACTION_HISTORIES:
            raise ValueError(f"action_history must be one of {ACTION_HISTORIES}, got {self.action_history!r}")
        if not (isinstance(self.bf16, bool) or self.bf16 == "auto"):
            raise ValueError(f"bf16 must be true, false or 'auto', got {self.bf16!r}")


def error_message(e: BaseException) -> str:
    """The one-line message of a bad-input error (a KeyError's own text, without quotes)."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _load_checked(checkpoint: str | os.PathLike, cfg: EvalConfig, tasks: Sequence[str] | None) -> tuple[Policy, tuple[str, ...]]:
    """The checkpoint's policy and the tasks to evaluate, or `BadEvalInput` before any rollout
    (the checkpoint cannot be loaded, a task is unknown or untrained, or `cfg.prompt_episode`
    does not exist for a task)."""
    try:
        names = registry.resolve(tasks) if tasks is not None else None
        policy = load_policy(checkpoint, cfg.device)
        names = tuple(policy.tasks) if names is None else tuple(names)
        for n in names:  # fail before any rollout: unknown task or prompt episode
            policy.prompt(n, cfg.prompt_episode)
    except (OSError, RuntimeError, ValueError, KeyError, IndexError) as e:
        raise BadEvalInput(error_message(e)) from e
    return policy, names


def _roll_out(policy: Policy, checkpoint: str | os.PathLike, names: Sequence[str], cfg: EvalConfig) -> pd.DataFrame:
    """The per-episode frame of `policy` (workers > 1: each worker loads `checkpoint` itself)."""
    source = policy if cfg.workers == 1 else checkpoint
    return evaluate(source, names, episodes=cfg.episodes, seed=cfg.seed, workers=cfg.workers, device=cfg.device,
                    prompt_episode=cfg.prompt_episode, max_steps=cfg.max_steps, action_history=cfg.action_history,
                    bf16=cfg.bf16)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    cfg: EvalConfig = EvalConfig(),
    tasks: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Roll out `checkpoint` on `tasks` (default: every task it was trained on).

    Returns the per-episode frame of `m3dt.evaluate.rollout.evaluate` (tasks in order).
    Raises `BadEvalInput` before any rollout when the checkpoint cannot be loaded, a task
    is unknown or untrained, or `cfg.prompt_episode` does not exist for a task.
    """
    policy, names = _load_checked(checkpoint, cfg, tasks)
    return _roll_out(policy, checkpoint, names, cfg)


def model_num_params(model: torch.nn.Module) -> int:
    """Parameter count of a policy's model, counted as the paper counts them
    (`num_params(authors_convention=True)`: with the heads the authors' model holds unused)."""
    count = getattr(model, "num_params", None)
    return int(count(authors_convention=True)) if count else sum(p.numel() for p in model.parameters())


def evaluate_to_files(
    checkpoint: str | os.PathLike,
    scores_csv: str | os.PathLike,
    summary_csv: str | os.PathLike | None = None,
    cfg: EvalConfig = EvalConfig(),
    tasks: Sequence[str] | None = None,
    episodes_csv: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """`evaluate_checkpoint`, then its files (`m3dt.evaluate.scores.write_scores`, atomically):
    `scores_csv` one row per task, `summary_csv` the mean over tasks for "all" and each
    suite, `episodes_csv` one row per episode; the summary also gives the model's parameter
    count (`n_params`, as the paper counts them: `num_params(authors_convention=True)`).
    Returns the per-episode frame."""
    policy, names = _load_checked(checkpoint, cfg, tasks)
    n_params = model_num_params(policy.model)  # the loaded model's count: the checkpoint is read once
    df = _roll_out(policy, checkpoint, names, cfg)
    write_scores(df, scores_csv, summary_csv, episodes_csv, n_params=n_params)
    overall = summarize(df).iloc[0]
    log.info("%s: score %.2f over %d tasks -> %s", checkpoint, overall["score_mean"], overall["n_tasks"], scores_csv)
    return df
