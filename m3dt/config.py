"""Typed configuration of a training run, built from a plain dict (the workflow's `train`
section, or a YAML/JSON file given to `python -m m3dt train --config`).

    train:
      model: {width: 256, n_layer: 6, n_head: 8, dropout: 0.1, ...}   # PromptDTConfig
      moe: {n_experts: 8, router: dense, top_k: 4, ...}                # MoEConfig
      harmo: {...}                                                      # HarmoConfig (HarmoDT)
      sampler: {batch_size: 16, mode: round_robin, ...}                 # SamplerConfig
      optim: {lr: 1e-4, weight_decay: 1e-4, warmup_steps: 10000, grad_clip: 0.25}
      loop: {steps: 1000, device: auto, bf16: false, log_every: 100, checkpoint_every: 1000}
      m3dt_block: normed        # FFN residual form of the M3DT block (authors: after LN2)
      expert_batching: separate # stage 2: one process per expert | grouped: all in one

Unknown keys fail with a message naming the key path (e.g. `train.model.widht`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from m3dt.data.sampler import SamplerConfig
from m3dt.models import MoEConfig, PromptDTConfig
from m3dt.runtime import check_bf16
from m3dt.models.harmodt import HarmoConfig

EXPERT_BATCHING = ("separate", "grouped")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up (paper.md §1, Optimisation)."""

    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 10_000
    grad_clip: float = 0.25

    def __post_init__(self) -> None:
        assert self.lr > 0, f"optim.lr must be > 0, got {self.lr}"
        assert self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}"
        assert self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}"
        assert self.grad_clip > 0, f"optim.grad_clip must be > 0, got {self.grad_clip}"


@dataclass(frozen=True)
class LoopConfig:
    """Length, device, logging and checkpointing of one training run."""

    steps: int
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool | str = False  # bf16 autocast of forward/backward: True, False or "auto" (see `use_bf16`)
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_steps: tuple[int, ...] = ()  # also keep checkpoints at these steps (Fig. 7)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        assert self.steps >= 1, f"steps must be >= 1, got {self.steps}"
        assert self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"
        assert self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}"
        check_bf16(self.bf16)
        bad = [s for s in self.keep_steps if not 0 < s <= self.steps]
        assert not bad, f"keep_steps {bad} outside (0, {self.steps}]"


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def _build(cls: type, d: Mapping[str, Any] | None, where: str, **extra: Any) -> Any:
    d = dict(d or {})
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{where}.{k}' for k in unknown]}; valid: {sorted(names)}")
    for f in dataclasses.fields(cls):  # YAML gives lists where dataclasses hold tuples
        if f.name in d and isinstance(d[f.name], list):
            d[f.name] = tuple(d[f.name])
    hints = typing.get_type_hints(cls)
    for k, v in d.items():
        if not _has_type(v, hints[k]):
            raise ConfigError(f"{where}.{k} must be {_type_name(hints[k])}, got {v!r}")
    try:
        return cls(**d, **extra)
    except (AssertionError, ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _has_type(value: Any, hint: Any) -> bool:
    """Whether `value` fits the annotation `hint` (plain scalars, unions, literals, tuples;
    anything else is left to the dataclass's own checks)."""
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_has_type(v, args[0]) for v in value)
        return len(args) == len(value) and all(_has_type(v, a) for v, a in zip(value, args))
    return True


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string",
                "NoneType": "null"}.get(hint.__name__, hint.__name__)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "a list"
    return str(hint)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training stage needs besides its inputs (tasks, data, checkpoints)."""

    model: PromptDTConfig = field(default_factory=PromptDTConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    harmo: dict[str, Any] = field(default_factory=dict)  # HarmoConfig fields (m3dt.models.harmodt)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000))
    m3dt_block: str = "normed"  # "normed": out = LN2(h) + FFN + MoE (authors' M3DT); "stream": h + ...
    expert_batching: str = "separate"

    def __post_init__(self) -> None:
        if self.m3dt_block not in ("normed", "stream"):
            raise ConfigError(f"train.m3dt_block must be normed or stream, got {self.m3dt_block!r}")
        if self.expert_batching not in EXPERT_BATCHING:
            raise ConfigError(f"train.expert_batching must be one of {EXPERT_BATCHING}, got {self.expert_batching!r}")
        if self.sampler.K != self.model.context_len or self.sampler.prompt_len != self.model.prompt_len:
            raise ConfigError(f"train.sampler K/prompt_len ({self.sampler.K}/{self.sampler.prompt_len}) must equal "
                              f"train.model context_len/prompt_len ({self.model.context_len}/{self.model.prompt_len})")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "train") -> TrainConfig:
        d = dict(d or {})
        known = {"model", "moe", "harmo", "sampler", "optim", "loop", "m3dt_block", "expert_batching"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) {[f'{where}.{k}' for k in unknown]}; valid: {sorted(known)}")
        model = _build(PromptDTConfig, d.get("model"), f"{where}.model")
        optim = _build(OptimConfig, d.get("optim"), f"{where}.optim")
        loop_d = {"steps": 1000, **dict(d.get("loop") or {})}
        loop = _build(LoopConfig, loop_d, f"{where}.loop", optim=optim)
        # loop.seed also seeds the sampler unless sampler.seed is given: runs of two seeds
        # draw different batches
        sampler_d = {"K": model.context_len, "prompt_len": model.prompt_len, "seed": loop.seed,
                     **dict(d.get("sampler") or {})}
        sampler = _build(SamplerConfig, sampler_d, f"{where}.sampler")
        harmo = dict(d.get("harmo") or {})
        _build(HarmoConfig, harmo, f"{where}.harmo")  # typed check of every key (the run builds its HarmoConfig)
        return cls(model=model, moe=_build(MoEConfig, d.get("moe"), f"{where}.moe"), harmo=harmo,
                   sampler=sampler, loop=loop, m3dt_block=d.get("m3dt_block", "normed"),
                   expert_batching=d.get("expert_batching", "separate"))

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> TrainConfig:
        """The config a checkpoint's `meta["train_config"]` (an `as_dict()`) was made from."""
        d = {k: v for k, v in stored.items() if k != "loop"}
        loop = dict(stored["loop"])
        d["optim"] = loop.pop("optim")
        d["loop"] = loop
        return cls.from_dict(d)

    def replace(self, **sections: Mapping[str, Any]) -> TrainConfig:
        """A copy with some fields of some sections changed: `cfg.replace(loop={"steps": 5})`."""
        out = self
        for name, changes in sections.items():
            if name == "optim":
                out = dataclasses.replace(out, loop=dataclasses.replace(
                    out.loop, optim=dataclasses.replace(out.loop.optim, **changes)))
            elif name == "harmo":
                out = dataclasses.replace(out, harmo={**out.harmo, **changes})
            else:
                out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **changes)})
        return out

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def moe_with(self, n_experts: int) -> MoEConfig:
        """`moe` with `n_experts` experts: the count comes from the groups file (stage 2,
        assembly) or the assembled checkpoint (stage 3), every other field from here."""
        return dataclasses.replace(self.moe, n_experts=n_experts)
