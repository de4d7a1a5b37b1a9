"""Rollouts of one checkpoint -> per-task scores and their summary: `m3dt.evaluate.checkpoint`.
The worker count is the job's threads."""

import torch

from m3dt.evaluate.checkpoint import EvalConfig, evaluate_to_files
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    p = sm.params
    cfg = EvalConfig(episodes=p.episodes, seed=p.seed, max_steps=p.max_steps, device=p.device,
                     prompt_episode=p.prompt_episode, action_history=p.action_history, bf16=p.bf16,
                     workers=sm.threads)
    evaluate_to_files(sm.input[0], sm.output.scores, sm.output.summary, cfg)
