"""A trained model plus what acting needs: the contract between training and evaluation.

What a checkpoint carries and how it is read is `m3dt.checkpoint`'s contract.
`load_policy(checkpoint)` turns that into a `Policy`, which is all `m3dt.evaluate` uses, so
a checkpoint is self-contained: evaluating it needs neither the data files nor the config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from m3dt.checkpoint import PROMPT_KEYS, check_policy_meta, load_model
from m3dt.runtime import resolve_device

log = logging.getLogger("m3dt.policy")

BEST = "best"  # prompt episode choice: the higher-return prompt episode (the authors' evaluation)


@dataclass
class Policy:
    """A model ready to act on the tasks it was trained on."""

    model: nn.Module  # has get_action(states, actions, rtg, timesteps, prompt) -> (B, 8)
    spec: dict[str, Any]
    tasks: list[str]
    stats: dict[str, tuple[np.ndarray, np.ndarray]]  # real dims: (obs_dim,), (obs_dim,)
    prompts: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    source: str = ""
    prompt_returns: dict[str, list[float]] = field(default_factory=dict)  # return of each prompt episode

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check_task(self, task: str) -> None:
        if task not in self.stats:
            raise KeyError(f"{self.source or 'policy'} was not trained on task {task!r}; "
                           f"it knows {len(self.tasks)} tasks: {self.tasks[:8]}{' ...' if len(self.tasks) > 8 else ''}")

    def prompt_episode(self, task: str, episode: int | str = BEST) -> int:
        """The index of a prompt episode: `episode` itself, or for "best" the one with the highest
        return (the last of equal ones, as the authors' `argsort(returns)[-1]`). A checkpoint
        without `prompt_returns` (written before they were stored) falls back to episode 0,
        with a warning."""
        if episode != BEST:
            return int(episode)
        returns = self.prompt_returns.get(task)
        if not returns:
            log.warning("%s: no prompt returns stored for %s; using prompt episode 0 (not the best)",
                        self.source or "policy", task)
            return 0
        return len(returns) - 1 - int(np.argmax(np.asarray(returns, np.float64)[::-1]))

    def prompt(self, task: str, episode: int | str = BEST) -> tuple[Tensor, ...] | None:
        """The task's prompt (batch 1, `Segment` order) on the model's device; None for MTDT.
        `episode`: an index into the task's prompt episodes, or "best" (the highest return)."""
        self.check_task(task)
        if self.spec.get("kind") == "mtdt" or not self.prompts:
            return None
        if not (episode == BEST or isinstance(episode, (int, np.integer))):
            raise ValueError(f"prompt episode must be an index or {BEST!r}, got {episode!r}")
        episode = self.prompt_episode(task, episode)
        eps = self.prompts[task]
        if not 0 <= episode < len(eps):
            raise IndexError(f"task {task!r} has {len(eps)} prompt episodes, not {episode + 1}")
        return tuple(torch.as_tensor(eps[episode][k], device=self.device) for k in PROMPT_KEYS)

    def select_task(self, task: str) -> None:
        """Tell task-conditioned models (HarmoDT's masks) which task they act on."""
        self.check_task(task)
        if hasattr(self.model, "set_task"):
            self.model.set_task(task)


def load_policy(checkpoint: str | Path, device: str | torch.device = "cpu") -> Policy:
    """Rebuild the model of a policy checkpoint (`m3dt.checkpoint`) in eval mode on `device`."""
    dev = resolve_device(str(device))
    model, meta = load_model(checkpoint)
    check_policy_meta(meta, checkpoint)
    model.to(dev).eval()
    if hasattr(model, "set_routing"):
        model.set_routing(meta.get("routing", "router"))
    stats = {t: (np.asarray(m, np.float32), np.asarray(s, np.float32)) for t, (m, s) in meta["stats"].items()}
    return Policy(model, dict(meta["model_spec"]), list(meta["tasks"]), stats, dict(meta.get("prompts", {})),
                  str(checkpoint), {t: list(map(float, r)) for t, r in meta.get("prompt_returns", {}).items()})
