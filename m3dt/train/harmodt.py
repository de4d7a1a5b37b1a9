"""HarmoDT training: the masked loss and the mask updates, as a hook of the one loop.

`harmodt_parts(dt_cfg, harmo_cfg, tasks, total_steps=...)` returns what `loop.train`
needs: the `HarmoDT` model, its parameters, `harmodt_loss` and a `HarmoHook`.

Inner level (every step; the authors' `train_step_mix`): the batch is one task's (round
robin); the forward pass uses w * m_task (`HarmoDT.forward`), so the gradient of a
forward-masked parameter is zero where m_task = 0; after the optimiser step the hook puts
back every coordinate with m_task = 0 as it was before the step (`freeze_masked_out`), so
neither AdamW's momentum nor its weight decay moves a task's masked-out coordinates (the
authors' `load_original_parameters`).

Upper level (every `mask_interval` steps; the authors' `main.py` loop and
`fl_utils.mask_dead_harmo` / `mask_generate_harmo`):

1. n = `change_count(step)` coordinates per task; skipped when n = 0.
2. For each task i, one batch of task i: the scoring gradient g_i of the masked loss
   w.r.t. the effective weights w * m_i, in training mode (dropout on), grad-norm clipped
   to `score_clip` over all parameters, then multiplied by m_i on the forward-masked
   parameters (`score_grad="masked"`, the authors' `apply_mask_grad`).
3. g = mean_i g_i (the "harmony" gradient), a_i = g * g_i elementwise (agreement).
4. Prune: among task i's active coordinates, the n with the lowest
   gamma * a_i + g_i^2 (`select="fisher"`; "magnitude": + |w|; "none": + 0) become 0.
5. Revive: among task i's inactive coordinates, the n with the highest a_i become 1.
   Both are chosen from the old mask over all masked coordinates of the model together
   (one flat vector), so each task keeps its number of active coordinates (its sparsity).

The swap count follows the authors' schedule (`HarmoConfig.anneal`, default "bump"):
n(a) = int(eta_max + (eta_min - eta_max)(1 + cos 2 pi a) / 2), a = (step - 1) / total_steps,
eta_min = 0 and eta_max = 100: no swaps at the start and the end of training, 100 per task
half way (first swap at a ~ 3%, with interval 500 and 1M steps). This is the warm-up
the authors have; `warmup_steps` adds an explicit one.

Deviations from the authors' code:
- `mask_dead_harmo` / `mask_generate_harmo` select with torch.topk over scores offset by
  +-100000; ties (frequent: with masked scoring gradients every masked-out coordinate of a
  forward-masked parameter scores exactly 0) are broken by the topk kernel. Here ties at the
  threshold are broken uniformly at random (seeded by the step and task), and candidates
  are restricted exactly (min(n, active, inactive) swaps).
- The authors average the task gradients into the first task's gradient in place
  (`get_harmo_gradient` aliases `gradient_set[first]`), so the first task's own gradient is
  replaced by the mean; here every task scores with its own gradient.
- Scoring batches: the authors draw a fresh batch per task at update time; here that is
  `sample_batch(task)` when given (pass `sampler.sample_task`), else the task's most recent
  training batch (no extra sampling; not checkpointed: after a resume a task takes part in
  updates once it has had a training batch again).
- Scoring gradients: dropout is seeded per (step, task) in a forked RNG, so the training
  RNG stream is untouched and the gradients can be recomputed identically: they are kept in
  memory when n_tasks x N x 4 bytes <= `grad_store_gb` GiB (N = masked coordinates), else
  recomputed in a second pass (Large on MT160: 111 GB would not fit).
- The loop clips the training gradient after masking (norm of the masked gradient); the
  authors clip the dense gradient, then mask. The step direction is the same; the clip
  factor differs slightly.
- Updates with n = 0 are skipped (the authors compute the scoring gradients anyway).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from m3dt.models.harmodt import HarmoConfig, HarmoDT
from m3dt.models.prompt_dt import PromptDTConfig, Segment, masked_action_loss

log = logging.getLogger("m3dt.train")


# ------------------------------------------------------------------------- the rule


def change_count(step: int, total_steps: int, cfg: HarmoConfig) -> int:
    """Coordinates swapped per task by the mask update at `step` (1-based)."""
    a = (step - 1) / total_steps
    lo, hi = cfg.change_min, cfg.change_max
    if cfg.anneal == "bump":
        v = hi + 0.5 * (lo - hi) * (1.0 + math.cos(2.0 * math.pi * a))
    else:  # "cosine"
        v = lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * a))
    return max(0, int(v))


def topk_random_ties(score: Tensor, k: int, largest: bool, generator: torch.Generator | None = None) -> Tensor:
    """Indices of the k largest (smallest) entries of the 1-D `score`; entries tied with the
    k-th value are drawn uniformly at random."""
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=score.device)
    thr = torch.topk(score, k, largest=largest, sorted=True).values[-1]
    sure = ((score > thr) if largest else (score < thr)).nonzero().flatten()
    ties = (score == thr).nonzero().flatten()
    pick = torch.randperm(ties.numel(), generator=generator, device=ties.device)[: k - sure.numel()]
    return torch.cat([sure, ties[pick]])


def select_swaps(mask: Tensor, g: Tensor, g_mean: Tensor, k: int, gamma: float, select: str = "fisher",
                 weight: Tensor | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(prune, revive) flat indices of one task's mask update.

    mask (N,) bool, the task's current mask; g (N,) its scoring gradient; g_mean (N,) the
    mean over tasks; weight (N,) the raw weights (for select="magnitude"). Prune: the
    min(k, active, inactive) active coordinates with the lowest gamma * g * g_mean +
    importance; revive: as many inactive ones with the highest g * g_mean.
    """
    agree = g * g_mean  # (N,)
    k = min(k, int(mask.sum()), int((~mask).sum()))
    prune_score = gamma * agree
    if select == "fisher":
        prune_score = prune_score + g * g
    elif select == "magnitude":
        assert weight is not None, "select='magnitude' needs the weights"
        prune_score = prune_score + weight.abs()
    prune = topk_random_ties(prune_score.masked_fill(~mask, math.inf), k, largest=False, generator=generator)
    revive = topk_random_ties(agree.masked_fill(mask, -math.inf), k, largest=True, generator=generator)
    return prune, revive


# ------------------------------------------------------------------------- loss


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def batch_task(batch: Any) -> int:
    """The task index of a one-task batch (asserts that every sample has the same task)."""
    idx = batch.task_index
    first = int(idx[0])
    if not bool((idx == first).all()):
        raise ValueError("HarmoDT needs one-task batches (sampler mode round_robin); got task indices "
                         f"{sorted(set(idx.tolist()))}")
    return first


def harmodt_loss(model: HarmoDT, batch: Any) -> Tensor:
    """Masked action MSE of a one-task batch with that task's mask (`batch.task_index`
    indexes `model.tasks`, the sampler's task order)."""
    model.set_task_index(batch_task(batch))
    b = batch.to(_device_of(model))
    pred = model(Segment(*b.inputs), prompt=b.prompt if model.cfg.use_prompt else None)  # (B, K, act_dim)
    return masked_action_loss(pred, b.actions, b.action_mask, b.attn_mask)


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with the RNG of `device` (and the CPU's) seeded, restoring both afterwards."""
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


# ------------------------------------------------------------------------- the hook


class HarmoHook:
    """`loop.train` hook: keeps masked-out coordinates fixed and updates the masks.

    `after_backward` remembers the batch (for scoring) and the pre-step values of the
    masked parameters; `after_step` restores the masked-out ones and, every
    `mask_interval` steps, runs `update_masks`. `history` holds one dict per update.
    """

    def __init__(self, model: HarmoDT, total_steps: int, sample_batch: Callable[[str], Any] | None = None):
        self.model, self.cfg = model, model.harmo_cfg
        assert total_steps >= 1, f"total_steps must be >= 1, got {total_steps}"
        self.total_steps = int(total_steps)
        self.sample_batch = sample_batch
        self.last_batch: dict[int, Any] = {}  # task index -> its latest training batch
        self._before: list[Tensor | None] | None = None
        self.history: list[dict[str, Any]] = []

    # -- loop protocol
    def after_backward(self, step: int, task: str, batch: Any) -> None:
        i = self.model.current
        assert i is not None, "HarmoHook: the loss did not set the model's task (use harmodt_loss)"
        if self.sample_batch is None:
            self.last_batch[i] = batch
        if self.cfg.freeze_masked_out:
            full = self.model.task_mask_full(i)
            self._before = [None if f else p.detach().clone()
                            for p, f in zip(self.model.masked_parameters(), full)]

    @torch.no_grad()
    def after_step(self, step: int, task: str, batch: Any) -> None:
        if self._before is not None:
            masks = self.model.task_masks(self.model.current)
            for p, m, before in zip(self.model.masked_parameters(), masks, self._before):
                if before is not None:
                    p.copy_(torch.where(m, p, before))
            self._before = None
        if step % self.cfg.mask_interval == 0 and step > self.cfg.warmup_steps:
            self.update_masks(step)

    # -- upper level
    def scoring_gradient(self, i: int, batch: Any, seed: int) -> Tensor:
        """Task i's flat (N,) scoring gradient on `batch` (see the module docstring, step 2)."""
        model, cfg = self.model, self.cfg
        b = batch.to(_device_of(model))
        masks = model.task_masks(i)
        named = dict(model.dt.named_parameters())
        leaves = {n: p.detach().requires_grad_() for n, p in named.items()}
        for mp, m in zip(model.masked, masks):
            if mp.in_forward:
                leaves[mp.name] = (named[mp.name].detach() * m).requires_grad_()
        was_training = model.training
        model.train()  # the authors score in training mode (dropout on)
        try:
            with torch.enable_grad(), _seeded(seed, b.states.device):
                prompt = b.prompt if model.cfg.use_prompt else None
                pred = model.forward_with(leaves, Segment(*b.inputs), prompt=prompt)  # (B, K, act_dim)
                loss = masked_action_loss(pred, b.actions, b.action_mask, b.attn_mask)
                grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        finally:
            model.train(was_training)
        g = {n: (x if x is not None else torch.zeros_like(leaves[n])) for n, x in zip(leaves, grads)}
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x.float()) for x in g.values()]))
        coef = torch.clamp(cfg.score_clip / (total + 1e-6), max=1.0)  # as clip_grad_norm_
        flat = []
        for mp, m in zip(model.masked, masks):
            x = g[mp.name].float() * coef
            if cfg.score_grad == "masked" and mp.in_forward:
                x = x * m
            flat.append(x.reshape(-1))
        return torch.cat(flat)

    def _scoring_batches(self) -> dict[int, Any]:
        if self.sample_batch is not None:
            return {i: self.sample_batch(t) for i, t in enumerate(self.model.tasks)}
        missing = [t for i, t in enumerate(self.model.tasks) if i not in self.last_batch]
        if missing:
            log.warning("HarmoDT mask update: %d task(s) have had no training batch yet and keep their masks: %s",
                        len(missing), missing[:5])
        return dict(sorted(self.last_batch.items()))

    @torch.no_grad()
    def update_masks(self, step: int) -> dict[str, Any] | None:
        """One upper-level step (module docstring, 1-5); returns its record or None (n = 0)."""
        model, cfg = self.model, self.cfg
        n = change_count(step, self.total_steps, cfg)
        if n == 0:
            return None
        t0 = time.perf_counter()
        batches = self._scoring_batches()
        if not batches:
            return None
        seeds = {i: (step * 1_000_003 + i) % (2**62) for i in batches}
        N = model.n_masked
        store = len(batches) * N * 4 <= cfg.grad_store_gb * 2**30
        stored: dict[int, Tensor] = {}
        g_mean = None
        for i, b in batches.items():  # pass 1: the mean gradient
            g = self.scoring_gradient(i, b, seeds[i])
            g_mean = g.clone() if g_mean is None else g_mean.add_(g)
            if store:
                stored[i] = g
        g_mean.div_(len(batches))
        weight = (torch.cat([p.detach().reshape(-1).float() for p in model.masked_parameters()])
                  if cfg.select == "magnitude" else None)
        gen = torch.Generator(device=g_mean.device)
        swapped, conflict = 0, 0.0
        for i, b in batches.items():  # pass 2: each task's swaps, from the old masks
            g = stored.pop(i) if store else self.scoring_gradient(i, b, seeds[i])
            mask = model.task_mask_flat(i)
            conflict += float(((g * g_mean < 0) & mask).sum()) / max(1, int(mask.sum()))
            gen.manual_seed(seeds[i])
            prune, revive = select_swaps(mask, g, g_mean, n, cfg.gamma, cfg.select, weight, gen)
            new = mask.clone()
            new[prune] = False
            new[revive] = True
            model.set_task_mask_flat(i, new)
            swapped += int(prune.numel())
        rec = {"step": step, "change": n, "tasks": len(batches), "swapped": swapped,
               "conflict_frac": conflict / len(batches), "stored_grads": store,
               "seconds": time.perf_counter() - t0}
        self.history.append(rec)
        log.info("HarmoDT masks at step %d: %d swaps per task over %d tasks; %.3f of active coordinates "
                 "disagree with the mean gradient (%.1fs)", step, n, len(batches), rec["conflict_frac"], rec["seconds"])
        return rec


# ------------------------------------------------------------------------- assembly


def harmodt_parts(dt_cfg: PromptDTConfig, harmo_cfg: HarmoConfig, tasks: Sequence[str], *,
                  total_steps: int | None = None, sample_batch: Callable[[str], Any] | None = None
                  ) -> tuple[HarmoDT, list[nn.Parameter], Callable[[nn.Module, Any], Tensor], list[HarmoHook]]:
    """(model, trainable parameters, loss_fn, hooks) of a HarmoDT run for `loop.train`.

    `tasks` in the sampler's order (`batch.task_index` indexes it). `total_steps`: the
    run's length for the swap-count schedule (`cfg.loop.steps`; or `harmo_cfg.total_steps`).
    `sample_batch(task)`: a fresh batch of one task for scoring (e.g. `sampler.sample_task`);
    None: each task's latest training batch. Masks are drawn from the global torch RNG.
    """
    steps = total_steps if total_steps is not None else harmo_cfg.total_steps
    if steps is None:
        raise ValueError("HarmoDT's mask schedule needs the run length: pass total_steps=cfg.loop.steps to "
                         "harmodt_parts or set harmo.total_steps")
    model = HarmoDT(dt_cfg, harmo_cfg, tasks)
    hook = HarmoHook(model, steps, sample_batch)
    return model, list(model.parameters()), harmodt_loss, [hook]
