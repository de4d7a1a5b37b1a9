"""A trained model plus what acting needs: the contract between training and evaluation.

Every checkpoint the trainer writes carries, in `meta`:

- `model_spec`: `{"kind": "prompt_dt" | "mtdt" | "m3dt" | "harmodt", "dt": {PromptDTConfig
  fields}, "moe": {MoEConfig fields} | None, "harmo": {HarmoDT config} | None}`, enough to
  rebuild the network with `build_model`;
- `tasks`: the task names the model was trained on (registry names);
- `stats`: `{task: (mean, std)}` of the training states, real dims (float32 lists);
- `prompts`: `{task: [prompt, ...]}`, each prompt a dict of numpy arrays of batch 1 in
  `Segment` order (`states, actions, rtg, timesteps, mask`), from the task's held-out
  prompt episodes; empty for MTDT;
- `prompt_returns`: `{task: [return, ...]}`, the return of each of those prompt episodes
  (evaluation's default prompt is the higher-return one, as the authors' `get_prompt(index=-1)`).

`load_policy(checkpoint)` turns that into a `Policy`, which is all `m3dt.evaluate` uses, so
a checkpoint is self-contained: evaluating it needs neither the data files nor the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import logging

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger("m3dt.policy")

MODEL_KINDS = ("prompt_dt", "mtdt", "m3dt", "harmodt")
PROMPT_KEYS = ("states", "actions", "rtg", "timesteps", "mask")
BEST = "best"  # prompt episode choice: the higher-return prompt episode (the authors' evaluation)


def model_spec(kind: str, dt: Any, moe: Any = None, harmo: Any = None) -> dict[str, Any]:
    """A plain-dict model description (dataclasses are converted) for checkpoints."""
    assert kind in MODEL_KINDS, f"unknown model kind {kind!r}, one of {MODEL_KINDS}"

    def plain(x: Any) -> Any:
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else (dict(x) if x is not None else None)

    return {"kind": kind, "dt": plain(dt), "moe": plain(moe), "harmo": plain(harmo)}


def build_model(spec: Mapping[str, Any], init_masks: bool = True) -> nn.Module:
    """The (untrained) network a `model_spec` describes (`init_masks=False`: HarmoDT's
    masks are left empty, for loading them from a checkpoint right after)."""
    from m3dt.models import M3DT, MTDT, MoEConfig, PromptDT, PromptDTConfig

    kind = spec.get("kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_spec.kind is {kind!r}; expected one of {MODEL_KINDS}")
    dt = PromptDTConfig(**spec["dt"])
    if kind == "prompt_dt":
        return PromptDT(dt)
    if kind == "mtdt":
        return MTDT(dt)
    if kind == "m3dt":
        if not spec.get("moe"):
            raise ValueError("model_spec.kind 'm3dt' needs model_spec.moe")
        return M3DT(dt, MoEConfig(**spec["moe"]))
    from m3dt.models.harmodt import HarmoDT  # kind == "harmodt"

    return HarmoDT.from_spec(spec, init_masks=init_masks)


def prompts_from_sampler(sampler: Any, tasks: Sequence[str]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every prompt episode of every task from a `MultiTaskSampler`, as numpy (batch 1)."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for t in tasks:
        i = sampler.task_index(t)
        out[t] = [dict(zip(PROMPT_KEYS, (x.numpy() for x in sampler.prompt(t, p))))
                  for p in range(int(sampler.n_prompts[i]))]
    return out


def policy_meta(spec: Mapping[str, Any], sampler: Any, tasks: Sequence[str], use_prompt: bool = True) -> dict[str, Any]:
    """The checkpoint `meta` entries of this module (see the module docstring)."""
    stats = {t: tuple(np.asarray(a, np.float32).tolist() for a in sampler.stats(t)) for t in tasks}
    return {"model_spec": dict(spec), "tasks": list(tasks), "stats": stats,
            "prompts": prompts_from_sampler(sampler, tasks) if use_prompt else {},
            "prompt_returns": {t: sampler.prompt_returns(t) for t in tasks} if use_prompt else {}}


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
    """Rebuild the model of a trainer checkpoint (see the module docstring) in eval mode."""
    from m3dt.train.loop import load_checkpoint, resolve_device

    dev = resolve_device(str(device))
    ck = load_checkpoint(checkpoint, "cpu")
    meta = ck.get("meta", {})
    missing = [k for k in ("model_spec", "tasks", "stats") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint {checkpoint} lacks meta keys {missing}: not a policy checkpoint "
                         "(stage-2 expert checkpoints hold one expert; evaluate the assembled model)")
    model = build_model(meta["model_spec"], init_masks=False)
    state = ck["model"]
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"checkpoint {checkpoint} does not match its model_spec: missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    model.to(dev).eval()
    if hasattr(model, "set_routing"):
        model.set_routing(meta.get("routing", "router"))
    stats = {t: (np.asarray(m, np.float32), np.asarray(s, np.float32)) for t, (m, s) in meta["stats"].items()}
    return Policy(model, dict(meta["model_spec"]), list(meta["tasks"]), stats, dict(meta.get("prompts", {})),
                  str(checkpoint), {t: list(map(float, r)) for t, r in meta.get("prompt_returns", {}).items()})
