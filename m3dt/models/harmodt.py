"""HarmoDT: Prompt-DT with a task-specific binary "harmony" mask over its parameters.

HarmoDT (Hu et al., "HarmoDT: Harmony Multi-Task Decision Transformer for Offline RL",
ICML 2024) gives every task i a binary mask m_i over the shared model's parameters. Task i
trains and acts with the weights w * m_i, and only the coordinates where m_i = 1 are
updated by task i's batches. The masks are the upper level of a bi-level problem: every
`mask_interval` steps each task swaps a few of its active coordinates that disagree with the
other tasks for inactive ones that agree (the rule and schedule are in
`m3dt.train.harmodt`). This module holds the model side: the masks, their initialisation and
the masked forward. Baseline of the M3DT paper's Table 1 at two sizes (`HARMO_PRESETS`).

Facts taken from the authors' code (charleshsc/HarmoDT; `main.py`, `prompt_dt/fl_utils.py`,
`prompt_dt/prompt_seq_trainer.py`):

- Every parameter of the model has a mask (`ERK_maskinit` loops over `named_parameters()`).
- Initial masks: Erdős–Rényi-Kernel densities (`ERK_maskinit`, `erk_power_scale` 1): the
  density of a parameter of shape s is proportional to (sum(s) / prod(s)) ** power, scaled
  so the whole model keeps 1 - sparsity (`--sparsity 0.2`) of its coordinates; a parameter
  whose density would exceed 1 is dense (1-D parameters, biases and LayerNorms, always
  are). Each task draws its own random mask (`mode = "random"`, not `"random_same"`).
- Parameters whose name contains "embed" or "predict" (the embeddings, the embedding
  LayerNorm, the action head) are used unmasked in the forward pass (`apply_mask_model`)
  and get their full gradient (`apply_mask_grad` skips them), but their masked-out
  coordinates are still restored after the optimiser step (`load_original_parameters`
  restores every masked key), so their masks gate the update only. All other parameters
  (the transformer blocks and the final LayerNorm) are multiplied by the mask in the forward
  pass, for training, for the mask scores and for evaluation.

Memory: one bit per masked coordinate per task, packed 8 to a byte (buffers
`masks.<param>` of shape (n_tasks, ceil(numel / 8)) uint8), plus the current task's
unpacked masks (one byte per coordinate). For the Large preset (width 1536, 173.24M
parameters, all masked) on MT160: 160 x 173.24M bits = 3.47 GB (3.23 GiB) of masks, plus
173 MB for the current task's unpacked mask; Small (1.46M parameters) on MT160: 29 MB.
The authors store one float32 mask tensor per parameter per task (32x more: 111 GB at
Large x 160 tasks).

Initial masks are drawn as the authors' are: each coordinate independently active with its
parameter's density, from the global torch RNG (so `set_seed` fixes them), task by task and
parameter by parameter; the sparsity therefore holds in expectation at initialisation, and
exactly from then on (every update swaps as many coordinates in as out). Drawing them takes
about 2 s per task for the Large preset on 2 CPU cores (5 min for MT160);
`from_spec(spec, init_masks=False)` skips it when a checkpoint's masks will be loaded.

Training memory beyond Prompt-DT's (Large): a copy of the parameters for restoring
masked-out coordinates after each step (0.69 GB), and during a mask update a few (N,)
float32 vectors (scoring gradient, mean gradient, scores: about 3 GB); the per-task scoring
gradients (111 GB for MT160) are recomputed rather than stored (`grad_store_gb`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from m3dt.models.prompt_dt import PromptDT, PromptDTConfig, Segment, masked_action_loss

# Sizes of the M3DT paper's Table 1 rows: PromptDTConfig fields (6 layers, 8 heads, like
# Prompt-DT at that width). `PromptDT.num_params(authors_convention=True)` gives 1.466M
# and 173.30M, the paper's 1.47M and 173.3M.
HARMO_PRESETS: dict[str, dict[str, int]] = {
    "small": {"width": 128, "n_layer": 6, "n_head": 8},
    "large": {"width": 1536, "n_layer": 6, "n_head": 8},
}
PAPER_HARMO_PARAMS: dict[str, float] = {"small": 1.47e6, "large": 173.3e6}

INITS = ("erk", "uniform")
ANNEALS = ("bump", "cosine")
SELECTS = ("fisher", "magnitude", "none")
SCORE_GRADS = ("masked", "dense")


@dataclass(frozen=True)
class HarmoConfig:
    """HarmoDT's hyperparameters; defaults are the authors' (`main.py` argparse defaults).

    The optimiser, batch size, warm-up of the learning rate and gradient clip are the
    training loop's (`OptimConfig`, `SamplerConfig`), not HarmoDT's.
    """

    # --- masks: which parameters, how sparse, how initialised
    sparsity: float = 0.2  # fraction of a task's masked coordinates that are 0 (`--sparsity`); kept constant
    init: str = "erk"  # per-parameter densities: "erk" (authors' ERK_maskinit) | "uniform" (1 - sparsity each)
    erk_power_scale: float = 1.0  # exponent of the ERK raw density (sum(shape) / prod(shape)) ** power
    same_init: bool = False  # one initial mask shared by all tasks (authors' "random_same"); False: one per task
    # name substrings of parameters used unmasked in the forward pass, masked in the update only
    forward_exempt: tuple[str, ...] = ("embed", "predict")
    unmasked: tuple[str, ...] = ()  # name substrings of parameters with no mask at all (authors: none)
    # restore a task's masked-out coordinates after each of its optimiser steps, so that
    # AdamW momentum and weight decay cannot move them (authors' load_original_parameters)
    freeze_masked_out: bool = True
    # --- mask updates: when and how many
    mask_interval: int = 500  # steps between mask updates (`--mask_interval`)
    change_max: int = 100  # eta_max: coordinates swapped per task per update, at the peak (`--eta_max`)
    change_min: int = 0  # eta_min: the same at the ends of the schedule (`--eta_min`)
    # schedule of the swap count over a = (step - 1) / total_steps:
    # "bump" (the authors' main.py, which shadows fl_utils): int(max + (min - max)(1 + cos 2 pi a) / 2),
    #   = min at the start and end of training, max half way;
    # "cosine" (fl_utils.cosine_annealing, unused by the authors): int(min + (max - min)(1 + cos pi a) / 2)
    anneal: str = "bump"
    total_steps: int | None = None  # steps of the run (a's denominator; `--max_iters`); None: harmodt_parts'
    warmup_steps: int = 0  # no mask update at steps <= warmup_steps (authors: none; "bump" swaps 0 early on)
    # --- the agreement score
    gamma: float = 10.0  # weight of the agreement g_i * g_mean in the prune score (`--gamma`)
    select: str = "fisher"  # importance added to the prune score: "fisher" g_i^2 | "magnitude" |w| | "none"
    score_clip: float = 0.25  # grad-norm clip of each task's scoring gradient (authors: the training clip)
    # "masked": task i's scoring gradient is zero where m_i = 0 on forward-masked parameters
    # (authors' apply_mask_grad), so revived coordinates are chosen among ties at random
    # unless they belong to forward-exempt parameters; "dense": the gradient w.r.t. the
    # effective weight w * m_i everywhere (tells which masked-out coordinates would agree)
    score_grad: str = "masked"
    grad_store_gb: float = 4.0  # keep every task's scoring gradient in memory up to this; else recompute

    def __post_init__(self) -> None:
        for name in ("forward_exempt", "unmasked"):  # YAML/JSON give lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        assert 0.0 <= self.sparsity < 1.0, f"harmo.sparsity must be in [0, 1), got {self.sparsity}"
        assert self.init in INITS, f"harmo.init must be one of {INITS}, got {self.init!r}"
        assert self.erk_power_scale >= 0, f"harmo.erk_power_scale must be >= 0, got {self.erk_power_scale}"
        assert self.mask_interval >= 1, f"harmo.mask_interval must be >= 1, got {self.mask_interval}"
        assert 0 <= self.change_min <= self.change_max, \
            f"harmo needs 0 <= change_min <= change_max, got {self.change_min}, {self.change_max}"
        assert self.anneal in ANNEALS, f"harmo.anneal must be one of {ANNEALS}, got {self.anneal!r}"
        assert self.total_steps is None or self.total_steps >= 1, f"harmo.total_steps must be >= 1: {self.total_steps}"
        assert self.warmup_steps >= 0, f"harmo.warmup_steps must be >= 0, got {self.warmup_steps}"
        assert self.gamma >= 0, f"harmo.gamma must be >= 0, got {self.gamma}"
        assert self.select in SELECTS, f"harmo.select must be one of {SELECTS}, got {self.select!r}"
        assert self.score_clip > 0, f"harmo.score_clip must be > 0, got {self.score_clip}"
        assert self.score_grad in SCORE_GRADS, f"harmo.score_grad must be one of {SCORE_GRADS}, got {self.score_grad!r}"
        assert self.grad_store_gb >= 0, f"harmo.grad_store_gb must be >= 0, got {self.grad_store_gb}"


# ------------------------------------------------------------------------- bit packing


def pack_bits(bits: Tensor) -> Tensor:
    """(..., n) bool -> (..., ceil(n / 8)) uint8; element 8k + j is bit j of byte k."""
    if bits.device.type == "cpu":  # numpy's packbits is ~100x faster than the tensor ops on CPU
        return torch.from_numpy(np.packbits(bits.numpy(), axis=-1, bitorder="little"))
    return pack_bits_torch(bits)


def unpack_bits(packed: Tensor, n: int) -> Tensor:
    """(..., ceil(n / 8)) uint8 -> (..., n) bool, the inverse of `pack_bits`."""
    if packed.device.type == "cpu":
        return torch.from_numpy(np.unpackbits(packed.numpy(), axis=-1, count=n, bitorder="little").view(np.bool_))
    return unpack_bits_torch(packed, n)


def pack_bits_torch(bits: Tensor) -> Tensor:
    """`pack_bits` in tensor ops (any device)."""
    n = bits.shape[-1]
    b = torch.nn.functional.pad(bits.to(torch.uint8), (0, (-n) % 8))
    b = b.view(*bits.shape[:-1], -1, 8)  # (..., n8, 8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    return (b * weights).sum(-1, dtype=torch.uint8)


def unpack_bits_torch(packed: Tensor, n: int) -> Tensor:
    """`unpack_bits` in tensor ops (any device)."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1  # (..., n8, 8)
    return bits.flatten(-2)[..., :n].bool()


# ------------------------------------------------------------------------- initial masks


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float, power: float = 1.0) -> dict[str, float]:
    """Per-parameter densities of the Erdős–Rényi-Kernel rule (the authors' `ERK_maskinit`).

    Density of a parameter of shape s = eps * (sum(s) / prod(s)) ** power, with eps chosen
    so that the total number of kept coordinates is `density` x all coordinates; parameters
    that would get a density above 1 are made dense (largest raw density first) and eps
    is solved again for the rest.
    """
    numel = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: (sum(s) / math.prod(s)) ** power for k, s in shapes.items()}
    dense: set[str] = set()
    while True:
        sparse = [k for k in shapes if k not in dense]
        if not sparse:
            return {k: 1.0 for k in shapes}
        # kept coordinates the sparse parameters must hold: the target minus what the dense ones keep beyond it
        budget = sum(density * numel[k] for k in sparse) - sum((1 - density) * numel[k] for k in dense)
        eps = budget / sum(raw[k] * numel[k] for k in sparse)
        top = max(raw[k] for k in sparse)
        if eps * top <= 1.0:
            return {k: 1.0 if k in dense else max(0.0, eps * raw[k]) for k in shapes}
        dense |= {k for k in sparse if raw[k] == top}


def random_mask(shape: Sequence[int], density: float) -> Tensor:
    """A bool mask of `shape` whose entries are True with probability `density`, independently
    (the authors' `torch.rand(shape) < density`); all True when density >= 1."""
    if density >= 1.0:
        return torch.ones(shape, dtype=torch.bool)
    return torch.rand(shape) < density


# ------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class MaskedParam:
    """A parameter with a mask: its name in `PromptDT`, its buffer and shape."""

    name: str  # e.g. "blocks.0.attn.c_attn.weight"
    buffer: str  # name of its packed-mask buffer in `HarmoDT.masks`
    shape: tuple[int, ...]
    numel: int
    in_forward: bool  # multiplied by the mask in the forward pass (False: update-masked only)


class HarmoDT(nn.Module):
    """A `PromptDT` whose parameters are multiplied by the current task's binary mask.

    `set_task(name)` (or `set_task_index(i)`) selects the mask; `forward`, `get_action`
    and `loss` then act as Prompt-DT with weights w * m_task on the forward-masked
    parameters. A forward pass must be one task's batch. Masks live in uint8 buffers
    (`masks.<param>`, (n_tasks, ceil(numel / 8)), bit-packed), so `state_dict` and the
    training loop's checkpoints carry them.
    """

    def __init__(self, cfg: PromptDTConfig, harmo: HarmoConfig, tasks: Sequence[str], init_masks: bool = True):
        super().__init__()
        assert len(tasks) >= 1, "HarmoDT needs at least one task"
        assert len(set(tasks)) == len(tasks), f"duplicate task names in {list(tasks)}"
        self.cfg, self.harmo_cfg = cfg, harmo
        self.tasks: list[str] = list(tasks)
        self._index = {t: i for i, t in enumerate(self.tasks)}
        self.dt = PromptDT(cfg)
        self.masks = nn.Module()  # holds one packed-mask buffer per masked parameter
        self.masked: list[MaskedParam] = []
        for name, p in self.dt.named_parameters():
            if any(s in name for s in harmo.unmasked):
                continue
            mp = MaskedParam(name, name.replace(".", "__"), tuple(p.shape), p.numel(),
                             not any(s in name for s in harmo.forward_exempt))
            self.masks.register_buffer(mp.buffer, torch.zeros(len(self.tasks), (mp.numel + 7) // 8, dtype=torch.uint8))
            self.masked.append(mp)
        self.current: int | None = None  # index of the task set by set_task
        self._cache: tuple[tuple[int, int], list[Tensor]] | None = None  # ((task, version), bool masks)
        self._full: tuple[tuple[int, int], list[bool]] | None = None  # ((task, version), all-ones flags)
        self._version = 0
        if init_masks:
            self.init_masks()

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], init_masks: bool = True) -> HarmoDT:
        """The model of a `checkpoint.model_spec` of kind "harmodt"; tasks from spec["tasks"]
        (or spec["harmo"]["tasks"])."""
        harmo = dict(spec.get("harmo") or {})
        tasks = spec.get("tasks") or harmo.get("tasks")
        harmo.pop("tasks", None)
        if not tasks:
            raise ValueError("a 'harmodt' model_spec needs its task list in spec['tasks'] (one mask per task)")
        return cls(PromptDTConfig(**spec["dt"]), HarmoConfig(**harmo), list(tasks), init_masks=init_masks)

    def spec(self) -> dict[str, Any]:
        """The `model_spec` of this model, task list included (`from_spec` inverts it)."""
        return {"kind": "harmodt", "dt": dataclasses.asdict(self.cfg), "moe": None,
                "harmo": dataclasses.asdict(self.harmo_cfg), "tasks": list(self.tasks)}

    def mask_densities(self) -> dict[str, float]:
        """Initial density of each masked parameter (ERK or uniform), from `harmo_cfg`."""
        h = self.harmo_cfg
        shapes = {mp.name: mp.shape for mp in self.masked}
        if h.init == "uniform":
            return {k: 1.0 - h.sparsity for k in shapes}
        return erk_densities(shapes, 1.0 - h.sparsity, h.erk_power_scale)

    @torch.no_grad()
    def init_masks(self) -> None:
        """Random initial masks with `mask_densities()`, from the global torch RNG."""
        dens = self.mask_densities()
        n_draw = 1 if self.harmo_cfg.same_init else len(self.tasks)
        for i in range(n_draw):  # task by task, parameter by parameter, as the authors
            for mp in self.masked:
                buf = getattr(self.masks, mp.buffer)
                packed = pack_bits(random_mask((mp.numel,), dens[mp.name])).to(buf.device)
                if n_draw == 1:
                    buf.copy_(packed.expand_as(buf))
                else:
                    buf[i] = packed
        self._invalidate()

    # ---------------------------------------------------------------- tasks and masks

    def set_task(self, name: str) -> None:
        """Act as task `name` (one of `tasks`) from now on."""
        if name not in self._index:
            raise KeyError(f"HarmoDT has no mask for task {name!r}; it knows {len(self.tasks)} tasks: "
                           f"{self.tasks[:8]}{' ...' if len(self.tasks) > 8 else ''}")
        self.current = self._index[name]

    def set_task_index(self, i: int) -> None:
        if not 0 <= i < len(self.tasks):
            raise IndexError(f"task index {i} outside [0, {len(self.tasks)})")
        self.current = int(i)

    def task_masks(self, i: int | None = None) -> list[Tensor]:
        """Task i's (default: the current task's) masks, bool, one per `masked` entry, in
        its parameter's shape; cached until the masks change (do not modify them)."""
        i = self._require_task() if i is None else i
        key = (i, self._version)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        ms = [unpack_bits(getattr(self.masks, mp.buffer)[i], mp.numel).view(mp.shape) for mp in self.masked]
        self._cache = (key, ms)
        return ms

    def task_mask_full(self, i: int) -> list[bool]:
        """Per `masked` entry: is task i's mask all ones there? (cached like `task_masks`)"""
        key = (i, self._version)
        if self._full is None or self._full[0] != key:
            self._full = (key, [bool(m.all()) for m in self.task_masks(i)])
        return self._full[1]

    def task_mask_flat(self, i: int) -> Tensor:
        """Task i's masks as one bool vector (N,), `masked` order, N = masked coordinates."""
        return torch.cat([m.reshape(-1) for m in self.task_masks(i)])

    @torch.no_grad()
    def set_task_mask_flat(self, i: int, flat: Tensor) -> None:
        """Replace task i's masks by the bool vector `flat` (N,) (`task_mask_flat`'s layout)."""
        assert flat.shape == (self.n_masked,), f"flat mask {tuple(flat.shape)} != ({self.n_masked},)"
        off = 0
        for mp in self.masked:
            getattr(self.masks, mp.buffer)[i] = pack_bits(flat[off:off + mp.numel])
            off += mp.numel
        self._invalidate()

    @property
    def n_masked(self) -> int:
        return sum(mp.numel for mp in self.masked)

    def masked_parameters(self) -> list[nn.Parameter]:
        """The parameters that have masks, in `masked` order."""
        params = dict(self.dt.named_parameters())
        return [params[mp.name] for mp in self.masked]

    def density(self, i: int) -> float:
        """Fraction of task i's masked coordinates that are active."""
        return float(self.task_mask_flat(i).float().mean())

    def mask_bytes(self) -> int:
        """Bytes of the packed mask buffers."""
        return sum(getattr(self.masks, mp.buffer).numel() for mp in self.masked)

    def _require_task(self) -> int:
        if self.current is None:
            raise RuntimeError("HarmoDT: call set_task(name) before forward/get_action")
        return self.current

    def _invalidate(self) -> None:
        self._version += 1
        self._cache = self._full = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._invalidate()  # loaded masks replace the cached ones

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> HarmoDT:
        self._invalidate()  # .to(device) / .half(): drop masks cached on the old device
        return super()._apply(fn, *args, **kwargs)

    # ---------------------------------------------------------------- forward

    def effective_params(self, i: int | None = None) -> dict[str, Tensor]:
        """{name: w * m_i} for the forward-masked parameters (differentiable w.r.t. w)."""
        ms, params = self.task_masks(i), dict(self.dt.named_parameters())
        return {mp.name: params[mp.name] * m for mp, m in zip(self.masked, ms) if mp.in_forward}

    def forward_with(self, params: Mapping[str, Tensor], *args: Any, **kwargs: Any) -> Tensor:
        """`PromptDT.forward` with the given tensors in place of its parameters of those names."""
        return functional_call(self.dt, dict(params), args, kwargs, strict=False)

    def forward(self, seg: Segment, prompt: Any = None) -> Tensor:
        """Predicted actions (B, K, act_dim) of the current task (`seg`, `prompt` as `PromptDT.forward`)."""
        return self.forward_with(self.effective_params(), seg, prompt)

    @torch.no_grad()
    def get_action(self, states: Tensor, actions: Tensor, rtg: Tensor, timesteps: Tensor, prompt: Any = None) -> Tensor:
        """The current task's action for the last step of each history (B, act_dim), as
        `PromptDT.get_action` (which calls this model's masked forward)."""
        return PromptDT.get_action(self, states, actions, rtg, timesteps, prompt)  # type: ignore[arg-type]

    @staticmethod
    def loss(pred: Tensor, target_actions: Tensor, action_mask: Tensor, attn_mask: Tensor) -> Tensor:
        """Masked action MSE (`masked_action_loss`)."""
        return masked_action_loss(pred, target_actions, action_mask, attn_mask)

    # ---------------------------------------------------------------- bookkeeping

    def num_params(self, authors_convention: bool = False) -> int:
        """Parameters of the shared network (the masks are buffers, not parameters)."""
        return self.dt.num_params(authors_convention)

    def conflict_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.dt.conflict_groups()
