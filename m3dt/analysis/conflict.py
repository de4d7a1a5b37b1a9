"""Per-task gradients and gradient-conflict metrics (paper Fig. 2, 7, 12).

`per_task_gradients` measures, for every task, the gradient of the training loss averaged
over a few batches, without any optimiser update, flattened per parameter group
(`parameter_groups`). The metrics below turn the (T, D) matrix of task gradients
G = [g_1; ...; g_T] of one group into one number. Notation, used by every docstring:

- ḡ = (1/T) Σ_i g_i, the mean task gradient.
- cos(u, v) = u·v / (‖u‖ ‖v‖).
- A vector counts as zero when its norm is at most `tol` (default 1e-6) times the largest
  task-gradient norm max_i ‖g_i‖ (a relative threshold, so float32 round-off of an exact
  cancellation is still read as ḡ = 0). Zero-norm tasks have no direction: they are left
  out of every cosine average (T' = number of non-zero tasks, P' = T'(T'-1)/2 pairs).

The metric plotted by the workflow is a config key; `DEFAULT_METRIC` is `cosine_to_mean`.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from m3dt.io import atomic_path

GROUP_ORDER = ("embeddings", "attention", "mlp", "experts", "routers", "other")
ALL = "all"
DEFAULT_TOL = 1e-6
_CHUNK = 1 << 20  # coordinates per chunk when a metric streams over D


# ---------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------

# Name rules, tried in this order on the lower-cased qualified parameter name (norm layers
# and nn.Embedding are decided by module type first).
_NAME_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("routers", ("router", "gating")),
    ("attention", ("attn", "attention")),
    ("experts", ("expert",)),
    ("mlp", ("mlp", "ffn", "feed_forward", "feedforward")),
    ("embeddings", ("embed", "wte", "wpe")),
)


def _classify(qualified: str, module_name: str, module: nn.Module) -> str:
    cls = type(module).__name__.lower()
    if "norm" in cls:
        return "other"  # LayerNorm / RMSNorm / BatchNorm, wherever they sit
    if isinstance(module, nn.Embedding):
        return "embeddings"
    name = qualified.lower()
    owner = module_name.rpartition(".")[2].lower()
    for group, needles in _NAME_RULES:
        if any(n in name for n in needles):
            return group
        if group == "experts" and ("moe" in cls or "moe" in owner):
            return group  # stacked expert weights held directly by an MoE module
    return "other"


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Named groups of `model`'s parameters for the per-module conflict analysis.

    If the model has a method `conflict_groups() -> dict[str, list[nn.Parameter]]`, its
    answer is used as is (the model knows its own structure best). Otherwise each
    parameter is classified by the module that owns it, first rule that matches:

    1. a normalisation layer (class name containing "Norm") -> "other";
    2. an `nn.Embedding` -> "embeddings";
    3. by the lower-cased qualified parameter name: "router"/"gating" -> "routers";
       "attn"/"attention" -> "attention"; "expert" -> "experts" (also any parameter held
       directly by a module whose name or class contains "moe": stacked expert weights);
       "mlp"/"ffn"/"feed_forward" -> "mlp" (the backbone FFN); "embed"/"wte"/"wpe" ->
       "embeddings" (the per-modality Linear embeddings of the first layer);
    4. anything else (LayerNorms, prediction heads, ...) -> "other".

    Groups come in `GROUP_ORDER`; empty groups are left out; a shared (tied) parameter is
    listed once, in the group of its first name.
    """
    custom = getattr(model, "conflict_groups", None)
    if callable(custom):
        groups = {str(k): list(v) for k, v in custom().items() if len(v) > 0}
        for name, params in groups.items():
            bad = [type(p).__name__ for p in params if not isinstance(p, torch.Tensor)]
            if bad:
                raise TypeError(f"{type(model).__name__}.conflict_groups()[{name!r}] holds non-tensors: {bad[:3]}")
        return groups

    found: dict[str, list[nn.Parameter]] = {g: [] for g in GROUP_ORDER}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            qualified = f"{mod_name}.{p_name}" if mod_name else p_name
            found[_classify(qualified, mod_name, module)].append(p)
    return {g: ps for g, ps in found.items() if ps}


# ---------------------------------------------------------------------------------------
# Per-task gradients
# ---------------------------------------------------------------------------------------


def per_task_gradients(
    model: nn.Module,
    batches: Callable[[str], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], Tensor],
    tasks: Sequence[str],
    n_batches: int = 10,
    params: Mapping[str, Sequence[nn.Parameter]] | None = None,
    grad_clip: float | None = 0.25,
    train_mode: bool = True,
) -> dict[str, dict[str, Tensor]]:
    """Per task, the training-loss gradient averaged over `n_batches`, per parameter group.

    For task t, g_t = (1/N) Σ_b clip(∇ loss_fn(model, batch_b)), over the first N =
    `n_batches` batches of `batches(t)`. As in the authors' code, each batch's gradient is
    clipped to total norm `grad_clip` (0.25, the training clip; None disables it) before
    averaging; the norm is taken over all analysed parameters together (for the stage-1
    backbone: the whole model, like the authors). No optimiser step is taken: parameters,
    their `requires_grad` flags, any existing `.grad` and every module's train/eval flag
    are as before when this returns. Frozen parameters listed in the groups are unfrozen
    for the measurement, so the gradient of a frozen module can be analysed too.

    `train_mode=True` (default) runs the model in train mode, dropout on, as the authors'
    `update_gradient` (so the gradient also depends on the torch RNG: seed it first).
    `train_mode=False` runs it in eval mode: dropout off, so the gradient is a deterministic
    function of the batches and dropout noise does not show up as conflict.

    `params` (group name -> parameters) defaults to `parameter_groups(model)`.
    Returns {task: {group: 1-D float32 CPU tensor}}, groups in the order of `params`.

    Memory: one float32 accumulator per analysed parameter (one model size) on the model's
    device, plus the result, T times the analysed size in float32 on the CPU.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
    groups = {k: list(v) for k, v in (params if params is not None else parameter_groups(model)).items()}
    if not groups or not any(groups.values()):
        raise ValueError("no parameters to analyse (empty parameter groups)")
    analysed: list[nn.Parameter] = []
    ids: set[int] = set()
    for ps in groups.values():
        for p in ps:
            if id(p) not in ids:
                ids.add(id(p))
                analysed.append(p)

    all_params = list(model.parameters())
    model_ids = {id(p) for p in all_params}
    all_params += [p for p in analysed if id(p) not in model_ids]  # groups may name outside tensors
    saved_flags = [(p, p.requires_grad) for p in all_params]
    saved_grads = [(p, p.grad) for p in all_params]
    saved_modes = [(m, m.training) for m in model.modules()]
    result: dict[str, dict[str, Tensor]] = {}
    try:
        for p in all_params:
            p.requires_grad_(id(p) in ids)
        for p in analysed:
            p.requires_grad_(True)
        model.train(train_mode)
        for task in tasks:
            acc = {id(p): torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in analysed}
            seen = 0
            for batch in itertools.islice(batches(task), n_batches):
                for p in all_params:
                    p.grad = None
                loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} on task {task!r}, batch {seen}")
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(analysed, grad_clip)
                for p in analysed:
                    if p.grad is not None:
                        acc[id(p)] += p.grad.detach().float()
                seen += 1
            if seen < n_batches:
                raise ValueError(f"batches({task!r}) yielded {seen} batches, {n_batches} needed")
            result[task] = {
                name: torch.cat([acc[id(p)].flatten() for p in ps]).div_(n_batches).cpu() if ps
                else torch.zeros(0)
                for name, ps in groups.items()
            }
    finally:
        for p, grad in saved_grads:
            p.grad = grad
        for p, flag in saved_flags:
            p.requires_grad_(flag)
        for m, mode in saved_modes:
            m.training = mode
    return result


# ---------------------------------------------------------------------------------------
# Conflict metrics on a (T, D) matrix of task gradients
# ---------------------------------------------------------------------------------------


def _as_matrix(grads: Tensor | np.ndarray) -> Tensor:
    g = torch.as_tensor(grads)
    if g.ndim != 2:
        raise ValueError(f"task gradients must be a (T, D) matrix, got shape {tuple(g.shape)}")
    if not torch.isfinite(g).all():
        raise ValueError("task gradients hold NaN or inf")
    return g


def gram(grads: Tensor | np.ndarray, chunk: int = _CHUNK) -> Tensor:
    """K = G Gᵀ in float64, accumulated over chunks of `chunk` coordinates (T x T)."""
    g = _as_matrix(grads)
    k = torch.zeros(g.shape[0], g.shape[0], dtype=torch.float64)
    for s in range(0, g.shape[1], chunk):
        c = g[:, s:s + chunk].to(dtype=torch.float64, device="cpu")
        k += c @ c.T
    return k


def _norms(k: Tensor, tol: float) -> tuple[Tensor, Tensor, float]:
    norms = k.diagonal().clamp_min(0).sqrt()
    scale = float(norms.max()) if norms.numel() else 0.0
    nonzero = norms > tol * scale if scale > 0 else torch.zeros_like(norms, dtype=torch.bool)
    return norms, nonzero, scale


def _pair_cosines(grads: Tensor | np.ndarray, tol: float) -> Tensor:
    """cos(g_i, g_j) for i < j among the non-zero tasks (1-D, P' entries)."""
    k = gram(grads)
    norms, nonzero, _ = _norms(k, tol)
    idx = nonzero.nonzero().flatten()
    kk = k[idx][:, idx]
    nn_ = norms[idx]
    cos = (kk / torch.outer(nn_, nn_)).clamp(-1.0, 1.0)
    iu = torch.triu_indices(len(idx), len(idx), offset=1)
    return cos[iu[0], iu[1]]


def cosine_to_mean(grads: Tensor | np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """1 − (1/T') Σ_{i: g_i ≠ 0} cos(g_i, ḡ).

    0 when all task gradients point the same way; 1 when ḡ = 0 (the tasks cancel exactly:
    every cos is taken as 0); up to 2 when most tasks point against the mean. Range [0, 2].
    No non-zero task -> 0. Computed from the Gram matrix: g_i·ḡ = mean_j K_ij,
    ‖ḡ‖² = mean_ij K_ij.
    """
    k = gram(grads)
    norms, nonzero, scale = _norms(k, tol)
    if not bool(nonzero.any()):
        return 0.0
    mean_norm = math.sqrt(max(float(k.mean()), 0.0))
    if mean_norm <= tol * scale:
        return 1.0
    dots = k.mean(dim=1)[nonzero]
    cos = (dots / (norms[nonzero] * mean_norm)).clamp(-1.0, 1.0)
    return float(1.0 - cos.mean())


def sign_disagreement(grads: Tensor | np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """Share of non-zero entries g_id whose sign differs from the sign of ḡ_d.

    Σ_d Σ_{i: g_id ≠ 0} w_id / #{(i, d): g_id ≠ 0}, with w_id = 1[sign g_id ≠ sign ḡ_d]
    where ḡ_d ≠ 0, and w_id = 1/2 where ḡ_d = 0 (|ḡ_d| ≤ tol · max_i |g_id|: the tasks
    cancel on that coordinate, the sign of the mean is undefined, half agreement).
    Coordinates where every task is zero do not count. Identical gradients -> 0; two
    opposite gradients -> 0.5, which is the maximum for T = 2 (in general (T−1)/T).
    No non-zero entry -> 0.
    """
    g = _as_matrix(grads)
    disagree, total = 0.0, 0
    for s in range(0, g.shape[1], _CHUNK):
        c = g[:, s:s + _CHUNK].to(dtype=torch.float64, device="cpu")
        mean = c.mean(dim=0)
        nz = c != 0
        n_nz = nz.sum(dim=0)
        cancel = mean.abs() <= tol * c.abs().amax(dim=0)
        opposite = (torch.sign(c) != torch.sign(mean)) & nz
        disagree += float(opposite.sum(dim=0)[~cancel].sum()) + 0.5 * float(n_nz[cancel].sum())
        total += int(n_nz.sum())
    return disagree / total if total else 0.0


def pairwise_negative_cosine(grads: Tensor | np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """(1/P') Σ_{i<j} max(0, −cos(g_i, g_j)) over pairs of non-zero tasks.

    0 when no pair points apart (identical or orthogonal gradients); 1 when every pair is
    exactly opposite. Fewer than two non-zero tasks -> 0.
    """
    cos = _pair_cosines(grads, tol)
    return float((-cos).clamp_min(0).mean()) if cos.numel() else 0.0


def negative_pair_fraction(grads: Tensor | np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """(1/P') #{i<j : cos(g_i, g_j) < 0}: the fraction of task pairs whose gradients point apart.

    Pairs of non-zero tasks only; fewer than two non-zero tasks -> 0.
    """
    cos = _pair_cosines(grads, tol)
    return float((cos < 0).double().mean()) if cos.numel() else 0.0


def mean_pairwise_cosine(grads: Tensor | np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """(1/P') Σ_{i<j} cos(g_i, g_j) over pairs of non-zero tasks (a similarity, not a conflict).

    1 for identical gradients, 0 for orthogonal ones, −1 for two opposite ones. Fewer than
    two non-zero tasks -> 1 (nothing disagrees).
    """
    cos = _pair_cosines(grads, tol)
    return float(cos.mean()) if cos.numel() else 1.0


METRICS: dict[str, Callable[..., float]] = {
    "cosine_to_mean": cosine_to_mean,
    "sign_disagreement": sign_disagreement,
    "pairwise_negative_cosine": pairwise_negative_cosine,
    "negative_pair_fraction": negative_pair_fraction,
    "mean_pairwise_cosine": mean_pairwise_cosine,
}
DEFAULT_METRIC = "cosine_to_mean"


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def stack_group(grads_by_task: Mapping[str, Mapping[str, Tensor]], group: str) -> Tensor:
    """The (T, D) matrix of one group (or of all groups concatenated, `group="all"`)."""
    tasks = list(grads_by_task)
    if not tasks:
        raise ValueError("no tasks in grads_by_task")
    names = list(grads_by_task[tasks[0]])
    for t in tasks[1:]:
        if list(grads_by_task[t]) != names:
            raise ValueError(f"task {t!r} has groups {list(grads_by_task[t])}, task {tasks[0]!r} has {names}")
    wanted = names if group == ALL else [group]
    if group != ALL and group not in names:
        raise KeyError(f"unknown parameter group {group!r}; have {names}")
    rows = []
    for t in tasks:
        rows.append(torch.cat([torch.as_tensor(grads_by_task[t][n]).flatten().float() for n in wanted]))
    sizes = {r.numel() for r in rows}
    if len(sizes) != 1:
        raise ValueError(f"group {group!r} has different sizes across tasks: {sorted(sizes)}")
    return torch.stack(rows)


def conflict_table(
    grads_by_task: Mapping[str, Mapping[str, Tensor]],
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per parameter group plus "all" (every group concatenated), one column per metric.

    The index is named "group". `metrics` defaults to every entry of `METRICS`. Each row
    stacks its (T, D) matrix once (the "all" row: a float32 copy of every gradient).
    """
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise KeyError(f"unknown conflict metrics {unknown}; valid: {list(METRICS)}")
    first = next(iter(grads_by_task.values()), None)
    if first is None:
        raise ValueError("no tasks in grads_by_task")
    rows = {}
    for group in [*first, ALL]:
        g = stack_group(grads_by_task, group)
        rows[group] = {m: METRICS[m](g) for m in names}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=names)
    table.index.name = "group"
    return table


def write_conflict_csv(
    path: str | os.PathLike,
    table: pd.DataFrame | Mapping[str, Mapping[str, Tensor]],
    metrics: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a conflict table (or compute it from per-task gradients) to CSV, atomically.

    Columns: the `meta` entries (constant columns first, e.g. step, n_tasks, seed), then
    "group", then one column per metric.
    """
    frame = table if isinstance(table, pd.DataFrame) else conflict_table(table, metrics)
    frame = frame.reset_index()
    for i, (key, value) in enumerate((meta or {}).items()):
        if key in frame.columns:
            raise ValueError(f"meta key {key!r} clashes with a table column")
        frame.insert(i, key, value)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
