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

Every section is read by `m3dt.dataclass_io.from_mapping`: an unknown key or a value of the
wrong type fails with a `ConfigError` naming the key path (e.g. `train.model.widht`).

Layering: the section dataclasses live with the code they configure, below this module
(`PromptDTConfig`, `MoEConfig`, `HarmoConfig` in `m3dt.models`, layer 2; `SamplerConfig` in
`m3dt.data`, layer 3); this module (layer 4) only imports them, so no import goes upward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from m3dt.data.sampler import SamplerConfig
from m3dt.dataclass_io import ConfigError, check_keys, from_mapping
from m3dt.models import MoEConfig, PromptDTConfig
from m3dt.models.harmodt import HarmoConfig
from m3dt.runtime import check_bf16

__all__ = ["ConfigError", "EXPERT_BATCHING", "LoopConfig", "OptimConfig", "TrainConfig"]

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


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training stage needs besides its inputs (tasks, data, checkpoints)."""

    model: PromptDTConfig = field(default_factory=PromptDTConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    harmo: HarmoConfig = field(default_factory=HarmoConfig)  # HarmoDT's masks and mask updates
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000))
    m3dt_block: str = "normed"  # "normed": out = LN2(h) + FFN + MoE (authors' M3DT); "stream": h + ...
    expert_batching: str = "separate"

    def __post_init__(self) -> None:
        if isinstance(self.harmo, Mapping):  # the plain dict of older code and checkpoints
            object.__setattr__(self, "harmo", from_mapping(HarmoConfig, self.harmo, "train.harmo"))
        if self.m3dt_block not in ("normed", "stream"):
            raise ConfigError(f"train.m3dt_block must be normed or stream, got {self.m3dt_block!r}")
        if self.expert_batching not in EXPERT_BATCHING:
            raise ConfigError(f"train.expert_batching must be one of {EXPERT_BATCHING}, got {self.expert_batching!r}")
        if self.sampler.K != self.model.context_len or self.sampler.prompt_len != self.model.prompt_len:
            raise ConfigError(f"train.sampler K/prompt_len ({self.sampler.K}/{self.sampler.prompt_len}) must equal "
                              f"train.model context_len/prompt_len ({self.model.context_len}/{self.model.prompt_len})")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "train") -> TrainConfig:
        """The config of the `train` section `d`; a bad key or value is a `ConfigError`
        naming it (`train.model.widht`), so the workflow fails when the DAG is built."""
        d = {} if d is None else d
        check_keys(cls, d, where, also=("optim",))  # optim: written beside loop, held in loop.optim
        model = from_mapping(PromptDTConfig, d.get("model"), f"{where}.model")
        optim = from_mapping(OptimConfig, d.get("optim"), f"{where}.optim")
        loop_d = {"steps": 1000, **_section(d, "loop", where)}
        loop = from_mapping(LoopConfig, loop_d, f"{where}.loop", optim=optim)
        # loop.seed also seeds the sampler unless sampler.seed is given: runs of two seeds
        # draw different batches
        sampler_d = {"K": model.context_len, "prompt_len": model.prompt_len, "seed": loop.seed,
                     **_section(d, "sampler", where)}
        return cls(model=model, moe=from_mapping(MoEConfig, d.get("moe"), f"{where}.moe"),
                   harmo=from_mapping(HarmoConfig, d.get("harmo"), f"{where}.harmo"),
                   sampler=from_mapping(SamplerConfig, sampler_d, f"{where}.sampler"), loop=loop,
                   m3dt_block=d.get("m3dt_block", "normed"), expert_batching=d.get("expert_batching", "separate"))

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> TrainConfig:
        """The config a checkpoint's `meta["train_config"]` (an `as_dict()`) was made from.
        Older checkpoints stored `harmo` as a dict of only the fields given; it loads the same."""
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
            else:
                out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **changes)})
        return out

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def moe_with(self, n_experts: int) -> MoEConfig:
        """`moe` with `n_experts` experts: the count comes from the groups file (stage 2,
        assembly) or the assembled checkpoint (stage 3), every other field from here."""
        return dataclasses.replace(self.moe, n_experts=n_experts)


def _section(d: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    """`d[name]` as a dict ({} when absent or null); not a mapping -> `ConfigError`."""
    v = d.get(name)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}.{name} must be a mapping, got {type(v).__name__}")
    return dict(v)
