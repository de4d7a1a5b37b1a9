"""Evaluation: batched policy rollouts, normalised scores, summaries (paper.md §3).

>>> from m3dt.evaluate import evaluate, summarize, write_scores
>>> df = evaluate("results/runs/.../final.pt", ["reach-v2", "cheetah-vel-0"], workers=2)
>>> summarize(df)          # scope, n_tasks, n_episodes, score_mean, score_std, success_rate

`evaluate_task` runs all episodes of one task as one batch of environments (one forward
pass per time step); `evaluate` runs many tasks, optionally in worker processes. See
`m3dt.evaluate.rollout` for the model-input conventions and the seeding, and
`m3dt.evaluate.scores` for the score tables. `evaluate_to_files(checkpoint, scores_csv,
summary_csv, EvalConfig(...))` (`m3dt.evaluate.checkpoint`) is the whole job of the CLI
(`python -m m3dt evaluate -h`) and of the workflow's `evaluate` rule.
"""

from m3dt.evaluate.checkpoint import BadEvalInput, EvalConfig, evaluate_checkpoint, evaluate_to_files
from m3dt.evaluate.rollout import EPISODE_COLUMNS, evaluate, evaluate_task, rollout
from m3dt.evaluate.scores import PER_TASK_COLUMNS, SUMMARY_COLUMNS, per_task, summarize, write_scores

__all__ = [
    "BadEvalInput",
    "EPISODE_COLUMNS",
    "EvalConfig",
    "PER_TASK_COLUMNS",
    "SUMMARY_COLUMNS",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_task",
    "evaluate_to_files",
    "per_task",
    "rollout",
    "summarize",
    "write_scores",
]
