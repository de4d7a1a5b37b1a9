"""The three kinds of expert behind one interface: `Expert.act(obs_unpadded, rng) -> action`.

`ScriptedExpert` (Meta-World's hand-written policies plus Gaussian noise), `SACExpert` (a
SAC actor, goal-conditioned for a family), `bind_expert` and `load_expert` (an expert
folder -> the expert of one task).
"""

from __future__ import annotations

import abc
import os
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from m3dt import tasks
from m3dt.experts.config import ExpertConfig
from m3dt.experts.names import FAMILIES, MODEL_ZIP, expert_dir, expert_kind, expert_name, goal_features, read_expert_json
from m3dt.experts.sac_policy import POLICY_FILE as POLICY_PT
from m3dt.experts.sac_policy import load_actor

if TYPE_CHECKING:  # heavy imports only where used
    from stable_baselines3 import SAC

class FlaggedExpertError(RuntimeError):
    """Raised when data collection is asked to use an expert below its quality threshold."""


class Expert(abc.ABC):
    """An expert bound to one task. `act` gets the task's UNPADDED observation."""

    kind: str = ""

    def __init__(self, task: str, name: str, train_steps: int = 0, evaluation: Mapping[str, Any] | None = None):
        self.spec = tasks.get(task)
        self.task = self.spec.name
        self.name = name
        self.train_steps = int(train_steps)
        self.evaluation = dict(evaluation or {})  # this task's entry of expert.json's evaluation

    @abc.abstractmethod
    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Action (action_dim,) float32 for an unpadded observation (obs_dim,)."""

    @property
    def flagged(self) -> bool | None:
        """True if evaluated below threshold, False if above, None if never evaluated."""
        f = self.evaluation.get("flagged")
        return None if f is None else bool(f)

    def describe(self) -> str:
        return f"{self.kind}:{self.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, name={self.name!r}, flagged={self.flagged})"


class ScriptedExpert(Expert):
    """Meta-World's scripted policy for the task's v3 env, plus Gaussian noise, clipped."""

    kind = "scripted"

    def __init__(self, task: str, action_noise: float = 0.1, evaluation: Mapping[str, Any] | None = None):
        super().__init__(task, tasks.get(task).name, 0, evaluation)
        if self.spec.suite != "metaworld":
            raise ValueError(f"{task}: scripted experts exist only for Meta-World tasks")
        import warnings

        from metaworld.policies import ENV_POLICY_MAP

        # metaworld's policies warn on every clipped move; the clip is what we want anyway
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)
        env_name = self.spec.kwargs["env_name"]
        if env_name not in ENV_POLICY_MAP:
            raise KeyError(f"{task}: no scripted policy for {env_name!r} in metaworld.policies.ENV_POLICY_MAP")
        self.policy = ENV_POLICY_MAP[env_name]()
        self.action_noise = float(action_noise)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = np.asarray(self.policy.get_action(np.asarray(obs, dtype=np.float64)), dtype=np.float64)
        if self.action_noise > 0:
            a = a + rng.normal(0.0, self.action_noise, size=a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


class SACExpert(Expert):
    """A SAC agent's deterministic action (the mean, squashed). Goal-conditioned when
    `goal` is given: the goal features are appended to the observation."""

    def __init__(self, task: str, name: str, model: "SAC", goal: np.ndarray | None = None,
                 train_steps: int = 0, evaluation: Mapping[str, Any] | None = None):
        super().__init__(task, name, train_steps, evaluation)
        self.model = model
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float32)
        self.kind = "sac" if goal is None else "sac-goal"

    def policy_input(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        assert obs.shape == (self.spec.obs_dim,), f"{self.task}: expected obs ({self.spec.obs_dim},), got {obs.shape}"
        return obs if self.goal is None else np.concatenate([obs, self.goal])

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action, _ = self.model.predict(self.policy_input(obs), deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(self.spec.action_dim)


def bind_expert(model: "SAC", task: str, name: str | None = None, **kw: Any) -> SACExpert:
    """A SAC model (trained or not) as the expert of `task` (goal-conditioned for a family)."""
    name = name or expert_name(task)
    goal = goal_features(task) if name in FAMILIES else None
    return SACExpert(task, name, model, goal, **kw)


def load_expert(task: str, expert_root: str | os.PathLike | None, *, device: str = "cpu",
                cfg: ExpertConfig | None = None) -> Expert:
    """The expert of `task`, bound to it, from `<expert_root>/<expert_name(task)>/`.

    Scripted Meta-World experts need no files: without an `expert.json` the policy is built
    with `cfg.metaworld_action_noise` and is unevaluated (`flagged` is None).
    SAC experts need `model.zip` (FileNotFoundError naming the path otherwise). Acting runs
    on `device` (CPU by default: one observation at a time is faster there).
    """
    spec = tasks.get(task)
    name = expert_name(spec.name)
    meta = read_expert_json(name, expert_root) if expert_root is not None else None
    evaluation = (meta or {}).get("evaluation", {}).get(spec.name, {})
    if expert_kind(name) == "scripted":
        noise = (meta or {}).get("action_noise", (cfg or ExpertConfig()).metaworld_action_noise)
        return ScriptedExpert(spec.name, noise, evaluation)
    if expert_root is None:
        raise ValueError(f"{task}: a SAC expert needs an expert_root")
    folder = expert_dir(name, expert_root)
    if (folder / POLICY_PT).exists():  # the actor-only policy: what trained and bundled experts both act with
        model = load_actor(folder / POLICY_PT, expected_sha256=(meta or {}).get("policy_sha256"))
    elif (folder / MODEL_ZIP).exists():  # an expert trained before policy.pt existed
        from stable_baselines3 import SAC

        model = SAC.load(folder / MODEL_ZIP, device=device)
    else:
        raise FileNotFoundError(f"{task}: no trained expert at {folder / POLICY_PT} "
                                f"(run `python -m m3dt data train-expert {name}`)")
    return bind_expert(model, spec.name, name, train_steps=(meta or {}).get("train_steps", 0), evaluation=evaluation)
