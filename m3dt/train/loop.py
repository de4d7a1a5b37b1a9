"""The one training loop. Every stage and baseline is a configuration of `train()`.

AdamW, linear warm-up then constant learning rate, gradient-norm clipping, optional bf16
autocast, CSV metrics, progress lines with rate and ETA, checkpoints that hold everything
needed to resume (model, optimiser, scheduler, every RNG, the batch source's state, step,
config) and a loud stop on a non-finite loss. Resuming from a checkpoint reproduces an
uninterrupted CPU run exactly.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import math
import pickle
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from m3dt.checkpoint import load_checkpoint, load_state, save_checkpoint
from m3dt.config import LoopConfig, OptimConfig
from m3dt.runtime import fmt_eta, resolve_device, truncate_metrics_csv, use_bf16

log = logging.getLogger("m3dt.train")


class StepHook(Protocol):
    """Extra work around the optimiser step (e.g. HarmoDT's gradient masks and mask updates)."""

    def after_backward(self, step: int, task: str, batch: Any) -> None: ...

    def after_step(self, step: int, task: str, batch: Any) -> None: ...


class BatchSource(Protocol):
    """Yields the next training batch; its RNG state is checkpointed with the model."""

    def next(self, step: int) -> tuple[str, Any]: ...  # (task name, batch)

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


LossFn = Callable[[nn.Module, Any], torch.Tensor]


def build_optimizer(model: nn.Module, trainable: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `trainable`, without weight decay on biases, LayerNorms and embeddings
    (the grouping rule of `m3dt.models.optim_groups`)."""
    from m3dt.models.prompt_dt import optim_groups

    trainable = list(trainable)
    groups = optim_groups(model, cfg.weight_decay, trainable)
    n = sum(len(g["params"]) for g in groups)
    assert n, "no trainable parameters"
    assert n == len({id(p) for p in trainable}), "trainable parameters must belong to the model and require grad"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def warmup_lambda(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up from lr/warmup to lr over `warmup_steps`, then constant."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class RunResult:
    out_dir: Path
    final_checkpoint: Path
    metrics_csv: Path
    steps_done: int
    resumed_from: int


class MetricsWriter:
    """`metrics.csv`: one row per logging step, namespaced columns (`train/loss`, ...)."""

    COLUMNS = ("step", "train/loss", "train/lr", "train/grad_norm", "train/steps_per_s", "train/task")

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        truncate_metrics_csv(path, resume_step, self.COLUMNS)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.COLUMNS).writerow(row)


def train(
    model: nn.Module,
    trainable: Iterable[nn.Parameter],
    batches: BatchSource,
    loss_fn: LossFn,
    cfg: LoopConfig,
    out_dir: str | Path,
    meta: Mapping[str, Any] | None = None,
    state_fn: Callable[[nn.Module], Mapping[str, Any]] | None = None,
    hooks: Sequence[StepHook] = (),
    clip_fn: Callable[[], torch.Tensor] | None = None,
) -> RunResult:
    """Train `trainable` (a subset of `model`'s parameters) for `cfg.steps` steps.

    `out_dir/checkpoints/last.pt` (written every `checkpoint_every` steps, removed when the
    run finishes) is resumed from when it belongs to the same run (`resume_key`). `meta` (model config,
    stage, tasks, normalisation statistics, ...) is stored in every checkpoint.
    `state_fn(model)` chooses what model state a checkpoint holds (default: the whole
    `state_dict`; stage 2 saves only its expert's weights). Each hook's
    `after_backward(step, task, batch)` runs between backward and the optimiser step (it
    may edit gradients) and `after_step(step, task, batch)` after it (HarmoDT's mask
    updates); state a hook keeps must live in the model's buffers to be checkpointed.
    `clip_fn()` replaces the global grad-norm clip (stage 2 with all experts in one
    process clips each expert on its own) and returns the norm to log.
    """
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    trainable = list(trainable)
    trainable_ids = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable_ids)
    model.to(device)
    opt = build_optimizer(model, trainable, cfg.optim)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_lambda(cfg.optim.warmup_steps))
    state_fn = state_fn or (lambda m: m.state_dict())

    start = 0
    last = ckpt_dir / "last.pt"
    key = resume_key(cfg, meta)
    ck = _resumable(last, key, device)
    if ck is not None:
        load_state(model, ck["model"], str(last), missing_ok=True)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        batches.load_state_dict(ck["batches"])
        set_rng_state(ck["rng"])
        start = int(ck["step"])
        log.info("resumed from %s at step %d", last, start)
    metrics = MetricsWriter(out / "metrics.csv", start)

    def checkpoint(step: int, path: Path) -> Path:
        return save_checkpoint(path, {
            "model": {k: v.detach().cpu() for k, v in state_fn(model).items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "batches": batches.state_dict(),
            "rng": rng_state(),
            "step": step,
            "loop_config": asdict(cfg),
            "meta": dict(meta or {}),
            "resume_key": key,
        })

    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.bf16, device))
    model.train()
    t0, done_since = time.perf_counter(), 0
    for step in range(start + 1, cfg.steps + 1):
        task, batch = batches.next(step)
        with amp:
            loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step} on task {task!r}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for h in hooks:
            h.after_backward(step, task, batch)
        if clip_fn is None:
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip)
        else:
            grad_norm = clip_fn()
        opt.step()
        sched.step()
        for h in hooks:
            h.after_step(step, task, batch)
        done_since += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - t0
            rate = done_since / max(elapsed, 1e-9)
            eta = (cfg.steps - step) / rate if rate > 0 else math.inf
            metrics.write({"step": step, "train/loss": f"{loss.item():.6g}", "train/lr": f"{sched.get_last_lr()[0]:.6g}",
                           "train/grad_norm": f"{float(grad_norm):.6g}", "train/steps_per_s": f"{rate:.4g}",
                           "train/task": task})
            log.info("step %d/%d loss %.4f lr %.2e %.2f steps/s ETA %s", step, cfg.steps, loss.item(),
                     sched.get_last_lr()[0], rate, fmt_eta(eta))
        if step % cfg.checkpoint_every == 0 and step != cfg.steps:
            checkpoint(step, last)
        if step in cfg.keep_steps:
            checkpoint(step, ckpt_dir / f"step_{step}.pt")
    final = checkpoint(cfg.steps, ckpt_dir / "final.pt")
    last.unlink(missing_ok=True)  # a finished run leaves nothing to resume: a forced rerun retrains
    return RunResult(out, final, out / "metrics.csv", cfg.steps, start)


def _resumable(last: Path, key: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at `last` if it belongs to this run (same `resume_key`), else None.

    A checkpoint of another run (other settings, data or code) is left for the new run to
    overwrite; an unreadable one (e.g. a truncated copy) is removed, saying so."""
    if not last.exists():
        return None
    try:
        ck = load_checkpoint(last, device)
    except RuntimeError as e:
        log.warning("%s; removing it and training from step 0", e)
        last.unlink(missing_ok=True)
        return None
    if not isinstance(ck, dict) or ck.get("resume_key") != key:
        log.warning("%s belongs to a different run (config, data, inputs or m3dt code changed): starting "
                    "from step 0", last)
        return None
    return ck


def resume_key(cfg: LoopConfig, meta: Mapping[str, Any] | None) -> str:
    """Identity of a run: a hash of the loop config, the checkpoint meta (model spec, tasks,
    data statistics and prompts, input fingerprints) and the `m3dt` package's source code.
    `last.pt` is resumed from only when it has the same key, so a rerun with changed
    settings, data or code starts afresh."""
    blob = pickle.dumps((asdict(cfg), dict(meta or {}), code_fingerprint()), protocol=4)
    return hashlib.sha256(blob).hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the path and content of every `.py` file of the `m3dt` package."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
