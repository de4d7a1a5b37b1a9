"""`ExpertConfig`: every knob of expert training and evaluation, and config-file reading."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from m3dt import tasks
from m3dt.dataclass_io import ConfigError, from_mapping
from m3dt.experts.names import FAMILIES, expert_name
from m3dt.experts.sac_library import check_library

EXPERT_SOURCES = ("bundled", "train")
#: the SAC settings `family_overrides` may change for the family agents
FAMILY_OVERRIDABLE = ("library", "learning_rate", "batch_size", "buffer_size", "learning_starts", "net_arch",
                      "train_freq", "gradient_steps", "gamma", "tau", "ent_coef", "use_sde", "ou_noise_sigma")

#: settings that only change how a SAC expert is trained (not how an expert is installed or evaluated)
TRAINING_KEYS = FAMILY_OVERRIDABLE + ("dmc_sac_steps", "ant_dir_sac_steps", "cheetah_vel_sac_steps",
                                      "sac_steps_overrides", "family_overrides", "checkpoint_every", "keep_checkpoint",
                                      "log_every", "curve_every", "curve_episodes", "curve_goals", "max_train_seconds",
                                      "torch_threads")


@dataclass
class ExpertConfig:
    """Every knob of expert training and evaluation (defaults: the paper-scale preset).

    SAC hyperparameters are the standard ones for MuJoCo/DMC state-based control
    (Haarnoja et al. 2018; stable-baselines3 zoo): Adam 3e-4, batch 256, 256x256 MLPs,
    one gradient step per environment step, automatic entropy tuning; gSDE exploration.

    Budgets (measured on a 2-core EPYC, 1 torch thread, 2026-11-24): SAC runs at
    ~100-113 env steps/s including one update per step for every DMC task, ant-dir and
    cheetah-vel alike (updates ~110/s dominate; the simulators alone do 6k-20k steps/s).
    Quick preset (MT10 + MT20 of seed 0: 5 DMC tasks + 2 families, one job per core on 8
    cores, data in <= ~90 min): dmc_sac_steps 300_000, ant_dir_sac_steps 400_000,
    cheetah_vel_sac_steps 400_000. Paper preset: 1M per DMC task, 3M ant-dir, 1.5M
    cheetah-vel (the defaults here).
    """

    # --- Meta-World scripted policies
    metaworld_action_noise: float = 0.1  #: std of Gaussian noise added to scripted actions (then clipped to [-1, 1])
    # --- SAC budgets (environment steps)
    dmc_sac_steps: int = 1_000_000  #: per DMC task
    ant_dir_sac_steps: int = 3_000_000  #: for the one goal-conditioned ant-dir agent (40 goals)
    cheetah_vel_sac_steps: int = 1_500_000  #: for the one goal-conditioned cheetah-vel agent (40 goals)
    sac_steps_overrides: dict[str, int] = field(default_factory=dict)  #: expert name -> steps (beats the above)
    # --- SAC hyperparameters
    library: str = "sb3"  #: "sb3" (stable-baselines3, PyTorch) or "sbx" (sbx-rl, JAX: pip install -e ".[sbx]")
    learning_rate: float = 3e-4
    batch_size: int = 256
    buffer_size: int = 1_000_000  #: replay capacity (transitions); capped at the training steps
    learning_starts: int = 5_000  #: uniform-random steps before the first update
    net_arch: tuple[int, ...] = (256, 256)  #: hidden sizes of actor and both critics
    train_freq: int = 1  #: environment steps between update phases
    gradient_steps: int = 1  #: gradient steps per update phase (UTD = gradient_steps / train_freq)
    #: SAC settings of the goal-conditioned family agents (ant-dir, cheetah-vel) that differ from the above,
    #: e.g. {train_freq: 1, library: sb3}; keys: FAMILY_OVERRIDABLE
    family_overrides: dict[str, Any] = field(default_factory=dict)
    gamma: float = 0.99
    tau: float = 0.005
    ent_coef: str | float = "auto"  #: "auto" (learned, init 1), "auto_0.1" (learned, init 0.1) or a constant
    use_sde: bool = True  #: gSDE exploration (Raffin et al. 2022); measured: helps sparse DMC + cheetah-vel at low budgets
    ou_noise_sigma: float = 0.0  #: >0 adds temporally correlated Ornstein-Uhlenbeck noise to training actions
    # --- bookkeeping
    checkpoint_every: int = 50_000  #: save model + replay buffer every N env steps (resume point)
    keep_checkpoint: bool = False  #: keep checkpoint/ (large: the replay buffer) after training finishes
    log_every: int = 5_000  #: a progress log line and a metrics.csv row every N env steps
    # --- learning curve (quality against budget): curve.csv + curve.png in the expert folder
    curve_every: int = 10_000  #: evaluate the current policy every N env steps (0: no curve)
    curve_episodes: int = 3  #: evaluation episodes per task (per goal for a family) at each curve point
    curve_goals: int = 4  #: goals of a family evaluated at each curve point (evenly spaced over its 40)
    max_train_seconds: float | None = None  #: stop training after this much wall time (at the next curve/checkpoint point) and keep the expert as trained so far (None: no limit)
    # --- evaluation
    eval_episodes: int = 10  #: evaluation episodes per task (per goal for a family)
    eval_max_steps: int | None = None  #: cap on steps per evaluation episode (tests only; None = full episode)
    near_optimal_threshold: float = 60.0  #: normalised score below which an expert is flagged
    threshold_overrides: dict[str, float] = field(default_factory=dict)  #: task / expert name / suite -> threshold
    # --- runtime
    source: str = "bundled"  #: "bundled": a SAC expert shipped with the package where one exists, else train; "train": always train
    bundle_dir: str | None = None  #: where bundled experts are looked up (None: the package's m3dt/experts/bundled)
    device: str = "auto"  #: "auto" (CUDA when present), "cpu" or "cuda"
    torch_threads: int = 1  #: torch intra-op threads (1: one training job per core is fastest overall); with sbx, 1 also makes XLA single-threaded
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "data.experts") -> "ExpertConfig":
        """The config of the mapping `d` (`where`: its place, for errors); an unknown key or a
        value of the wrong type is a `ConfigError` naming `where.key`."""
        return from_mapping(cls, d, where)

    def __post_init__(self) -> None:
        if self.source not in EXPERT_SOURCES:
            raise ConfigError(f"data.experts.source must be one of {list(EXPERT_SOURCES)}, got {self.source!r}")
        check_library(self.library)
        assert self.curve_every >= 0, f"data.experts.curve_every must be >= 0, got {self.curve_every}"
        assert self.curve_episodes >= 1, f"data.experts.curve_episodes must be >= 1, got {self.curve_episodes}"
        assert self.curve_goals >= 1, f"data.experts.curve_goals must be >= 1, got {self.curve_goals}"
        for key in ("train_freq", "gradient_steps"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"data.experts.{key} must be >= 1, got {getattr(self, key)}")
        bad = sorted(set(self.family_overrides) - set(FAMILY_OVERRIDABLE))
        if bad:
            raise ConfigError(f"data.experts.family_overrides: {bad} cannot differ for a family; "
                              f"valid keys: {list(FAMILY_OVERRIDABLE)}")
        if self.family_overrides:
            self.for_expert("ant-dir")  # checks the overrides' types and values now, naming them

    def for_expert(self, name: str) -> "ExpertConfig":
        """The settings the SAC expert `name` trains with: for a family (ant-dir, cheetah-vel),
        this config with `family_overrides` applied (measured: a family agent needs UTD 1 and
        SB3's gSDE where single-task DMC experts do not: README "SAC expert cost")."""
        if expert_name(name) not in FAMILIES or not self.family_overrides:
            return self
        d = {k: v for k, v in self.to_dict().items() if k != "family_overrides"}
        return from_mapping(ExpertConfig, {**d, **self.family_overrides}, "data.experts.family_overrides")

    def settings_of(self, name: str) -> dict[str, Any]:
        """The settings that decide expert `name`'s files, as a mapping `from_dict` reads: its
        own SAC settings (`for_expert`), without the training ones where nothing is trained
        (a scripted expert, or a bundled one with `source: bundled`). The workflow passes these
        to each `train_expert` job, so a changed setting reruns only the experts it concerns."""
        from m3dt.experts.bundle import bundled_dir
        from m3dt.experts.names import expert_kind

        own = self.for_expert(name)
        d = {k: v for k, v in own.to_dict().items() if k != "family_overrides"}
        if expert_kind(name) == "scripted" or (own.source == "bundled" and bundled_dir(expert_name(name),
                                                                                       own.bundle_dir)):
            d = {k: v for k, v in d.items() if k not in TRAINING_KEYS}
        return d

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["net_arch"] = list(self.net_arch)
        return d

    def sac_steps(self, name: str) -> int:
        """Training steps of the SAC expert `name` (a DMC task or a family)."""
        if name in self.sac_steps_overrides:
            return int(self.sac_steps_overrides[name])
        if name == "ant-dir":
            return int(self.ant_dir_sac_steps)
        if name == "cheetah-vel":
            return int(self.cheetah_vel_sac_steps)
        spec = tasks.get(name)
        if spec.suite != "dmc":
            raise ValueError(f"{name}: only DMC tasks and the ant-dir / cheetah-vel families have SAC experts")
        return int(self.dmc_sac_steps)

    def threshold(self, task: str) -> float:
        """Near-optimal threshold for `task` (task, then expert name, then suite overrides)."""
        spec = tasks.get(task)
        for key in (spec.name, expert_name(spec.name), spec.suite):
            if key in self.threshold_overrides:
                return float(self.threshold_overrides[key])
        return float(self.near_optimal_threshold)


def load_config_file(path: str | None, key: str) -> dict[str, Any]:
    if not path:
        return {}
    text = Path(path).read_text()
    if path.endswith(".json"):
        d = json.loads(text)
    else:
        import yaml

        d = yaml.safe_load(text) or {}
    return dict(d.get(key, d)) if isinstance(d, dict) else {}
