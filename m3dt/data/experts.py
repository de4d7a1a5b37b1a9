"""Experts that generate the offline data: scripted Meta-World policies and SAC agents.

Three kinds, one interface (`Expert.act(obs_unpadded, rng) -> action (action_dim,)`):

- ``scripted``: Meta-World's hand-written policy for the task's v3 env
  (`metaworld.policies.ENV_POLICY_MAP`), plus Gaussian action noise
  (`ExpertConfig.metaworld_action_noise`), clipped to [-1, 1]. Needs no training.
- ``sac``: one stable-baselines3 SAC agent per DMC task, trained on the task's unpadded
  environment (obs `obs_dim`, action `action_dim`, 500 agent steps per episode).
- ``sac-goal``: one goal-conditioned SAC agent per family (ant-dir, cheetah-vel), trained
  across the family's 40 goals (a goal is drawn uniformly per episode). The goal features
  -- (cos theta, sin theta) for ant-dir, the target velocity for cheetah-vel -- are appended
  to the agent's input only; recorded observations never contain them. One agent amortises
  the simulation and update budget over the 40 goals (and shares what is common: gait,
  balance) instead of 40 independent agents that each pay for learning to walk.

Layout of an expert folder (`<expert_root>/<expert_name>/`, `expert_name(task)` gives the
name: the task for Meta-World and DMC, ``ant-dir`` / ``cheetah-vel`` for the families)::

    expert.json      kind, tasks covered, config, training stats, per-task evaluation
    model.zip        the SAC agent (SAC experts only)
    metrics.csv      training metrics (step, steps/s, returns, losses, ...)
    checkpoint/      model + replay buffer + state every `checkpoint_every` steps (resume)

An expert whose normalised score is below its near-optimal threshold is *flagged*: logged
with a WARNING, marked in `expert.json` and in the expert table, and refused by data
collection unless the caller passes `allow_flagged=True`.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from m3dt import tasks
from m3dt.data.expert_curve import CURVE_COLUMNS, append_rows, curve_point, curve_tasks, plot_curves
from m3dt.data.sac_policy import POLICY_FILE as POLICY_PT
from m3dt.data.sac_policy import export_actor, load_actor
from m3dt.io import atomic_path, write_text_atomic

if TYPE_CHECKING:  # heavy imports only where used
    import gymnasium as gym
    from stable_baselines3 import SAC

LOG = logging.getLogger("m3dt.data.experts")

#: expert-family name -> registry suite (one goal-conditioned agent per family)
FAMILIES: dict[str, str] = {"ant-dir": "ant_dir", "cheetah-vel": "cheetah_vel"}
EXPERT_KINDS = ("scripted", "sac", "sac-goal")
EXPERT_SOURCES = ("bundled", "train")
ALGORITHM = "SAC (stable-baselines3, MlpPolicy)"
EXPERT_JSON = "expert.json"
MODEL_ZIP = "model.zip"
METRICS_CSV = "metrics.csv"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
CHECKPOINT_DIR = "checkpoint"


class FlaggedExpertError(RuntimeError):
    """Raised when data collection is asked to use an expert below its quality threshold."""


# --------------------------------------------------------------------------- configuration


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
    learning_rate: float = 3e-4
    batch_size: int = 256
    buffer_size: int = 1_000_000  #: replay capacity (transitions); capped at the training steps
    learning_starts: int = 5_000  #: uniform-random steps before the first update
    net_arch: tuple[int, ...] = (256, 256)  #: hidden sizes of actor and both critics
    train_freq: int = 1  #: environment steps between update phases
    gradient_steps: int = 1  #: gradient steps per update phase (UTD = gradient_steps / train_freq)
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
    bundle_dir: str | None = None  #: where bundled experts are looked up (None: the package's m3dt/data/bundled_experts)
    device: str = "auto"  #: "auto" (CUDA when present), "cpu" or "cuda"
    torch_threads: int = 1  #: torch intra-op threads (1: one training job per core is fastest overall)
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ExpertConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ExpertConfig keys {unknown}; valid: {sorted(names)}")
        if "net_arch" in d:
            d["net_arch"] = tuple(int(x) for x in d["net_arch"])
        return cls(**d)

    def __post_init__(self) -> None:
        if self.source not in EXPERT_SOURCES:
            raise ValueError(f"data.experts.source must be one of {list(EXPERT_SOURCES)}, got {self.source!r}")
        assert self.curve_every >= 0, f"data.experts.curve_every must be >= 0, got {self.curve_every}"
        assert self.curve_episodes >= 1, f"data.experts.curve_episodes must be >= 1, got {self.curve_episodes}"
        assert self.curve_goals >= 1, f"data.experts.curve_goals must be >= 1, got {self.curve_goals}"

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


# --------------------------------------------------------------------------- names


def expert_name(task: str) -> str:
    """Name (and folder) of the expert that generates `task`'s data."""
    if task in FAMILIES:
        return task
    spec = tasks.get(task)
    for fam, suite in FAMILIES.items():
        if spec.suite == suite:
            return fam
    return spec.name


def expert_kind(name: str) -> str:
    """`scripted`, `sac` or `sac-goal` for an expert name (or a task name)."""
    name = expert_name(name)
    if name in FAMILIES:
        return "sac-goal"
    return "scripted" if tasks.get(name).suite == "metaworld" else "sac"


def expert_tasks(name: str) -> tuple[str, ...]:
    """The registry tasks one expert covers (40 for a family, else the task itself)."""
    if name in FAMILIES:
        return tasks.tasks_of_suite(FAMILIES[name])
    return (tasks.get(name).name,)


def expert_names(task_names: Iterable[str]) -> list[str]:
    """Distinct expert names needed for `task_names`, in first-seen order (for the workflow)."""
    out: list[str] = []
    for t in task_names:
        n = expert_name(t)
        if n not in out:
            out.append(n)
    return out


def goal_features(task: str) -> np.ndarray:
    """What a goal-conditioned agent sees of the goal: (cos, sin) of the ant-dir angle,
    or the cheetah-vel target velocity."""
    spec = tasks.get(task)
    if spec.suite == "ant_dir":
        return np.array([math.cos(spec.goal), math.sin(spec.goal)], dtype=np.float32)
    if spec.suite == "cheetah_vel":
        return np.array([spec.goal], dtype=np.float32)
    raise ValueError(f"{task}: not a goal-family task")


# --------------------------------------------------------------------------- training envs


def _gym():
    import gymnasium as gym

    return gym


def make_unpadded_env(task: str, seed: int | None = None) -> "gym.Env":
    """The task's padded env seen through `StripPadding`: obs (obs_dim,), action (action_dim,)."""
    return StripPadding(tasks.make_env(task, seed))


class StripPadding(_gym().Wrapper):
    """Undo the multi-task padding for single-task learners.

    Observations are the first `obs_dim` entries (float32); actions of `action_dim` dims are
    zero-padded to 8 for the padded env (so training goes through exactly the env that data
    collection and evaluation use, including its episode-length truncation). The padded
    env's end-of-episode summary moves from `info["episode"]` to `info["m3dt_episode"]`
    (stable-baselines3 reserves `info["episode"]` for its Monitor format).
    """

    def __init__(self, env: "gym.Env"):
        gym = _gym()
        super().__init__(env)
        spec = env.spec_
        self.task = spec
        raw = env.env.action_space
        self.action_space = gym.spaces.Box(np.asarray(raw.low, np.float32), np.asarray(raw.high, np.float32),
                                           dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), dtype=np.float32)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs[: self.task.obs_dim], dtype=np.float32)

    @staticmethod
    def _info(info: dict) -> dict:
        if "episode" in info:
            info = dict(info)
            info["m3dt_episode"] = info.pop("episode")
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), self._info(info)

    def step(self, action):
        padded = np.zeros(tasks.ACT_PAD, dtype=np.float64)
        padded[: self.task.action_dim] = np.asarray(action, dtype=np.float64).reshape(-1)
        obs, reward, terminated, truncated, info = self.env.step(padded)
        return self._obs(obs), reward, terminated, truncated, self._info(info)


class GoalFamilyEnv(_gym().Env):
    """All goals of one family as one env: a goal drawn uniformly at each reset.

    Observation = the task's unpadded observation followed by `goal_features(task)`.
    Per-goal environments are built lazily through `tasks.make_env` and cached.
    `info["task"]` names the goal's registry task.
    """

    metadata = {"render_modes": []}

    def __init__(self, family: str, task_names: Sequence[str] | None = None):
        gym = _gym()
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; valid: {sorted(FAMILIES)}")
        self.family = family
        self.task_names = tuple(task_names or expert_tasks(family))
        self._goals = {t: goal_features(t) for t in self.task_names}
        spec = tasks.get(self.task_names[0])
        self.obs_dim, self.goal_dim = spec.obs_dim, len(self._goals[self.task_names[0]])
        self._envs: dict[str, StripPadding] = {}
        first = self._env(self.task_names[0])
        self.action_space = first.action_space
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim + self.goal_dim,), dtype=np.float32)
        self.current: str = self.task_names[0]

    def _env(self, task: str) -> StripPadding:
        if task not in self._envs:
            self._envs[task] = make_unpadded_env(task)
        return self._envs[task]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.current = tasks.get(options["task"]).name
        else:
            self.current = self.task_names[int(self.np_random.integers(len(self.task_names)))]
        env_seed = int(self.np_random.integers(2**31 - 1))
        obs, info = self._env(self.current).reset(seed=env_seed)
        return self._obs(obs), dict(info, task=self.current)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self._goals[self.current]]).astype(np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env(self.current).step(action)
        return self._obs(obs), reward, terminated, truncated, dict(info, task=self.current)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()


# --------------------------------------------------------------------------- experts


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


def expert_dir(name_or_task: str, expert_root: str | os.PathLike) -> Path:
    return Path(expert_root) / expert_name(name_or_task)


def read_expert_json(name_or_task: str, expert_root: str | os.PathLike) -> dict[str, Any] | None:
    p = expert_dir(name_or_task, expert_root) / EXPERT_JSON
    return json.loads(p.read_text()) if p.exists() else None


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


# --------------------------------------------------------------------------- rollouts


def episode_seed(seed: int, i: int, stream: int = 0) -> int:
    """Reset seed of episode i: collection uses stream 0, evaluation stream 1 (disjoint)."""
    return int((stream * 2**30 + seed * 1_000_003 + i) % (2**31 - 1))


def rollout(env, expert: Expert, reset_seed: int, rng: np.random.Generator, *, action_noise: float = 0.0,
            max_steps: int | None = None) -> dict[str, Any]:
    """One episode of `expert` in a padded env (`tasks.make_env`), recording REAL dims.

    Returns per-step arrays `observations (T, obs_dim)`, `actions (T, action_dim)`, `rewards`,
    `terminals`, `success` and the episode's `return`, `success_any`, `normalized_score`.
    `action_noise` adds Gaussian noise (then clip to the action bounds); `max_steps` caps T.
    """
    spec = expert.spec
    od, ad = spec.obs_dim, spec.action_dim
    limit = spec.episode_length if max_steps is None else min(int(max_steps), spec.episode_length)
    obs_l, act_l, rew_l, term_l, succ_l = [], [], [], [], []
    obs, _ = env.reset(seed=reset_seed)
    padded = np.zeros(tasks.ACT_PAD, dtype=np.float32)
    ret, success_any = 0.0, False
    for _ in range(limit):
        o = np.asarray(obs[:od], dtype=np.float32)
        a = expert.act(o, rng)
        if action_noise > 0:
            a = np.clip(a + rng.normal(0.0, action_noise, size=a.shape), -1.0, 1.0).astype(np.float32)
        padded[:ad] = a
        padded[ad:] = 0.0
        obs, r, terminated, truncated, info = env.step(padded)
        obs_l.append(o)
        act_l.append(np.asarray(a, dtype=np.float32))
        rew_l.append(float(r))
        term_l.append(bool(terminated))
        succ_l.append(bool(info.get("success", False)))
        ret += float(r)
        success_any |= succ_l[-1]
        if terminated or truncated:
            break
    succ = success_any if spec.suite == "metaworld" else None
    return {
        "observations": np.stack(obs_l).astype(np.float32),
        "actions": np.stack(act_l).astype(np.float32),
        "rewards": np.asarray(rew_l, dtype=np.float32),
        "terminals": np.asarray(term_l, dtype=bool),
        "success": np.asarray(succ_l, dtype=bool),
        "return": ret,
        "success_any": success_any,
        "normalized_score": spec.normalized_score(ret, succ),
    }


def evaluate_expert(expert: Expert, *, episodes: int = 10, seed: int = 0, max_steps: int | None = None,
                    threshold: float | None = None, log: logging.Logger | None = None) -> dict[str, Any]:
    """Normalised score of `expert` on its task over `episodes` episodes (evaluation seeds,
    disjoint from collection seeds). `flagged` is set when `threshold` is given."""
    log = log or LOG
    env = tasks.make_env(expert.task)
    scores, returns, lengths = [], [], []
    t0 = time.perf_counter()
    for i in range(episodes):
        ep = rollout(env, expert, episode_seed(seed, i, stream=1), np.random.default_rng([seed, i, 1]),
                     max_steps=max_steps)
        scores.append(ep["normalized_score"])
        returns.append(ep["return"])
        lengths.append(len(ep["rewards"]))
    env.close()
    row: dict[str, Any] = {
        "task": expert.task,
        "suite": expert.spec.suite,
        "expert_kind": expert.kind,
        "train_steps": expert.train_steps,
        "score_mean": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "n_episodes": int(episodes),
        "return_mean": float(np.mean(returns)),
        "length_mean": float(np.mean(lengths)),
        "eval_seconds": round(time.perf_counter() - t0, 3),
    }
    if threshold is not None:
        row["threshold"] = float(threshold)
        row["flagged"] = bool(row["score_mean"] < threshold)
        if row["flagged"]:
            log.warning("expert %s FLAGGED on %s: normalised score %.1f +- %.1f < threshold %.1f",
                        expert.describe(), expert.task, row["score_mean"], row["score_std"], threshold)
    log.info("evaluated %s on %s: score %.1f +- %.1f over %d episodes (return %.1f)", expert.describe(),
             expert.task, row["score_mean"], row["score_std"], episodes, row["return_mean"])
    return row


# --------------------------------------------------------------------------- SAC training


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build_sac(env: "gym.Env", cfg: ExpertConfig, total_steps: int, device: str | None = None) -> "SAC":
    """An untrained SB3 SAC agent for `env` with `cfg`'s hyperparameters."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise

    dim = int(np.prod(env.action_space.shape))
    action_noise = (OrnsteinUhlenbeckActionNoise(np.zeros(dim), cfg.ou_noise_sigma * np.ones(dim))
                    if cfg.ou_noise_sigma > 0 else None)
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=cfg.learning_rate,
        buffer_size=max(1, min(int(cfg.buffer_size), int(total_steps))),
        learning_starts=int(cfg.learning_starts),
        batch_size=int(cfg.batch_size),
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=int(cfg.train_freq),
        gradient_steps=int(cfg.gradient_steps),
        ent_coef=cfg.ent_coef,
        use_sde=bool(cfg.use_sde),
        use_sde_at_warmup=bool(cfg.use_sde),
        action_noise=action_noise,
        policy_kwargs={"net_arch": list(cfg.net_arch)},
        seed=cfg.seed,
        device=_resolve_device(device or cfg.device),
        verbose=0,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def make_training_env(name: str, seed: int) -> "gym.Env":
    """The env an expert trains on: unpadded single task, or the family's goal env."""
    if name in FAMILIES:
        env = GoalFamilyEnv(name)
    else:
        env = make_unpadded_env(name)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


METRIC_COLUMNS = ["step", "wall_s", "steps_per_s", "updates_per_s", "episodes", "ep_return_mean",
                  "ep_score_mean", "actor_loss", "critic_loss", "ent_coef"]


def _progress_callback(total: int, start_step: int, t_start: float, metrics_path: Path, log: logging.Logger,
                       log_every: int, state: dict[str, Any]):
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        """Log line + metrics.csv row every `log_every` steps; fails loudly on NaN losses."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                ep = info.get("m3dt_episode")
                if ep is not None:
                    state["returns"].append(float(ep["return"]))
                    state["scores"].append(float(ep["normalized_score"]))
                    state["episodes"] += 1
            n = self.model.num_timesteps
            if n - state["last_log"] >= log_every or n >= total:
                self._log(n)
            return True

        def _log(self, n: int) -> None:
            now = time.perf_counter()
            dt = max(now - state["last_time"], 1e-9)
            rate = (n - state["last_log"]) / dt
            n_updates = int(self.model._n_updates)
            upd_rate = (n_updates - state["last_updates"]) / dt
            vals = self.model.logger.name_to_value
            row = {
                "step": n,
                "wall_s": round(state["wall_before"] + now - t_start, 2),
                "steps_per_s": round(rate, 2),
                "updates_per_s": round(upd_rate, 2),
                "episodes": state["episodes"],
                "ep_return_mean": float(np.mean(state["returns"][-10:])) if state["returns"] else float("nan"),
                "ep_score_mean": float(np.mean(state["scores"][-10:])) if state["scores"] else float("nan"),
                "actor_loss": vals.get("train/actor_loss", float("nan")),
                "critic_loss": vals.get("train/critic_loss", float("nan")),
                "ent_coef": vals.get("train/ent_coef", float("nan")),
            }
            for k in ("actor_loss", "critic_loss"):
                if n_updates > 0 and not math.isfinite(float(row[k])):
                    raise FloatingPointError(f"SAC {k} is {row[k]} at step {n}; stopping")
            new = not metrics_path.exists()
            with open(metrics_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
                if new:
                    w.writeheader()
                w.writerow(row)
            eta = (total - n) / rate if rate > 0 else float("inf")
            log.info("step %d/%d (%.0f%%) %.0f steps/s %.0f updates/s ETA %s | episodes %d return %.1f score %.1f",
                     n, total, 100 * n / total, rate, upd_rate, _fmt_eta(eta), state["episodes"],
                     row["ep_return_mean"], row["ep_score_mean"])
            state["last_log"], state["last_time"], state["last_updates"] = n, now, n_updates

    return Progress()


def _truncate_metrics(path: Path, step: int, columns: Sequence[str] = tuple(METRIC_COLUMNS)) -> None:
    """Drop metrics (or curve) rows written after the checkpoint we resume from."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)


def _save_model(model: "SAC", path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        model.save(f)


def _save_checkpoint(model: "SAC", ckpt: Path, state: dict[str, Any]) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    _save_model(model, ckpt / MODEL_ZIP)
    with atomic_path(ckpt / "replay_buffer.pkl") as tmp, open(tmp, "wb") as f:
        model.save_replay_buffer(f)
    write_text_atomic(ckpt / "state.json", json.dumps(state, indent=2))  # written last: marks a complete checkpoint


def _config_key(cfg: ExpertConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the checkpoint (not budgets or logging)."""
    keys = ("learning_rate", "batch_size", "buffer_size", "learning_starts", "net_arch", "train_freq",
            "gradient_steps", "gamma", "tau", "ent_coef", "use_sde", "ou_noise_sigma", "seed")
    d = cfg.to_dict()
    return {k: d[k] for k in keys}


def train_expert(name: str, cfg: ExpertConfig | None = None, out_dir: str | os.PathLike | None = None, *,
                 log: logging.Logger | None = None, eval_tasks: Sequence[str] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Train (SAC) or set up (scripted) the expert `name`, evaluate it, write its folder.

    `name`: a Meta-World or DMC task, or a family (`ant-dir`, `cheetah-vel`; a family's
    task name such as `ant-dir-3` also selects it). `out_dir` is the expert's own folder
    (default `results/experts/<name>`). Training logs progress (steps/s, updates/s, ETA)
    every `cfg.log_every` steps, appends `metrics.csv`, checkpoints model + replay buffer
    every `cfg.checkpoint_every` steps and, when restarted, resumes from the last
    checkpoint (same settings required; the resumed run is not bit-identical to an
    uninterrupted one: the episode running at the interruption is dropped). A finished
    expert (`expert.json` with status "done", same training settings and budget) is
    reused unless `overwrite`: returned as is, or re-evaluated if only the evaluation
    settings changed. Evaluation covers `eval_tasks` (default: every task the expert
    covers). Returns the expert.json content.
    """
    cfg = cfg or ExpertConfig()
    log = log or LOG
    name = expert_name(name)
    kind = expert_kind(name)
    out = Path(out_dir) if out_dir is not None else Path("results/experts") / name
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / EXPERT_JSON
    eval_list = [tasks.get(t).name for t in (eval_tasks or expert_tasks(name))]
    train_key, eval_key = _train_key(cfg, name), _eval_key(cfg, eval_list)
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    reuse = (not overwrite and old.get("status") == "done" and old.get("train_key") == train_key
             and (kind == "scripted" or (out / MODEL_ZIP).exists()))
    if reuse and old.get("eval_key") == eval_key:
        log.info("expert %s already trained and evaluated in %s; skipping (overwrite=True to redo)", name, out)
        return old
    from m3dt.seeding import set_seed

    set_seed(cfg.seed)
    meta: dict[str, Any] = {"name": name, "kind": kind, "tasks": list(expert_tasks(name)),
                            "config": cfg.to_dict(), "train_key": train_key, "status": "training"}
    if kind == "scripted":
        meta.update(train_steps=0, action_noise=cfg.metaworld_action_noise)
        experts: dict[str, Expert] = {t: ScriptedExpert(t, cfg.metaworld_action_noise) for t in eval_list}
    else:
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
        bundled = None
        if cfg.source == "bundled" and not reuse:
            from m3dt.data.bundle import install_bundled

            bundled = install_bundled(name, out, log, cfg.bundle_dir)
            if bundled is None:
                log.info("expert %s: no bundled expert ships with the package; training one (%d env steps)", name,
                         cfg.sac_steps(name))
        if bundled is not None:
            model = load_actor(out / POLICY_PT, expected_sha256=bundled["policy_sha256"])
            meta.update({k: bundled[k] for k in ("config", "train_key", "train_steps", "budget_steps", "stopped_early",
                                                 "train_seconds", "steps_per_s", "n_updates", "train_episodes",
                                                 "policy_sha256", "versions", "commit", "bundle_dir") if k in bundled})
            meta["source"] = "bundled"
            if bundled.get("eval_key") == eval_key:  # same evaluation settings (thresholds too): keep its evaluation
                meta.update({k: bundled[k] for k in ("algorithm", "goal_features", "evaluation", "eval_key",
                                                     "score_mean_over_tasks", "n_flagged") if k in bundled})
                meta["status"] = "done"
                write_text_atomic(meta_path, json.dumps(meta, indent=2))
                return meta
        elif reuse:
            from stable_baselines3 import SAC

            log.info("expert %s already trained in %s; re-evaluating with new evaluation settings", name, out)
            model = SAC.load(out / MODEL_ZIP, device=_resolve_device(cfg.device))
            meta.update({k: old[k] for k in ("train_steps", "train_seconds", "steps_per_s", "n_updates",
                                             "train_episodes") if k in old})
        else:
            model, t_train, info = _train_sac(name, cfg, out, cfg.sac_steps(name), log)
            meta.update(train_steps=int(model.num_timesteps), train_seconds=round(t_train, 1), **info)
        if bundled is None:
            meta["policy_sha256"] = export_actor(model, out / POLICY_PT)
            meta["source"] = "trained"
            # evaluate what collection uses: the exported actor (same actions as SAC.predict, tested)
            model = load_actor(out / POLICY_PT, expected_sha256=meta["policy_sha256"])
        meta["algorithm"] = ALGORITHM
        if name in FAMILIES:
            meta["goal_features"] = {t: goal_features(t).tolist() for t in expert_tasks(name)}
        experts = {t: bind_expert(model, t, name, train_steps=meta["train_steps"]) for t in eval_list}
    evaluation = {}
    for t, ex in experts.items():
        evaluation[t] = evaluate_expert(ex, episodes=cfg.eval_episodes, seed=cfg.seed, max_steps=cfg.eval_max_steps,
                                        threshold=cfg.threshold(t), log=log)
    meta.update(evaluation=evaluation, eval_key=eval_key, status="done")
    meta["score_mean_over_tasks"] = float(np.mean([e["score_mean"] for e in evaluation.values()]))
    meta["n_flagged"] = int(sum(e["flagged"] for e in evaluation.values()))
    if "versions" not in meta:
        meta["versions"] = package_versions()
    write_text_atomic(meta_path, json.dumps(meta, indent=2))
    log.info("expert %s done: mean normalised score %.1f over %d task(s), %d flagged", name,
             meta["score_mean_over_tasks"], len(evaluation), meta["n_flagged"])
    return meta


def package_versions() -> dict[str, str]:
    """Versions of what determines an expert's behaviour (recorded in expert.json)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("m3dt", "stable-baselines3", "torch", "numpy", "gymnasium", "mujoco", "dm_control", "metaworld"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _train_key(cfg: ExpertConfig, name: str) -> dict[str, Any]:
    """What makes a finished expert reusable: its kind's settings and budget."""
    if expert_kind(name) == "scripted":
        return {"action_noise": cfg.metaworld_action_noise}
    return dict(_config_key(cfg), steps=cfg.sac_steps(name))


def _eval_key(cfg: ExpertConfig, eval_list: Sequence[str]) -> dict[str, Any]:
    return {"episodes": cfg.eval_episodes, "max_steps": cfg.eval_max_steps, "seed": cfg.seed,
            "tasks": list(eval_list), "thresholds": [cfg.threshold(t) for t in eval_list]}


def _train_sac(name: str, cfg: ExpertConfig, out: Path, total: int, log: logging.Logger):
    from stable_baselines3 import SAC

    env = make_training_env(name, cfg.seed)
    ckpt = out / CHECKPOINT_DIR
    metrics_path = out / METRICS_CSV
    state = {"returns": [], "scores": [], "episodes": 0, "last_log": 0, "last_time": time.perf_counter(),
             "last_updates": 0, "wall_before": 0.0}
    curve_path = out / CURVE_CSV
    ck_state_path = ckpt / "state.json"
    model = None
    if ck_state_path.exists():
        ck = json.loads(ck_state_path.read_text())
        if ck.get("config_key") == _config_key(cfg):
            model = SAC.load(ckpt / MODEL_ZIP, env=env, device=_resolve_device(cfg.device))
            model.load_replay_buffer(ckpt / "replay_buffer.pkl")
            model.set_logger(_null_logger())
            state.update(episodes=ck["episodes"], returns=ck["returns"], scores=ck["scores"],
                         last_log=model.num_timesteps, last_updates=int(model._n_updates),
                         wall_before=float(ck["wall_s"]))
            _truncate_metrics(metrics_path, model.num_timesteps)
            _truncate_metrics(curve_path, model.num_timesteps, CURVE_COLUMNS)
            log.info("expert %s: resuming from checkpoint at step %d/%d", name, model.num_timesteps, total)
        else:
            log.warning("expert %s: checkpoint in %s has other settings; starting over", name, ckpt)
            shutil.rmtree(ckpt)
    if model is None:
        for stale in (metrics_path, curve_path):
            if stale.exists():
                stale.unlink()
        model = build_sac(env, cfg, total)
        log.info("expert %s: training SAC for %d steps (obs %s, action %s, device %s)", name, total,
                 env.observation_space.shape, env.action_space.shape, model.device)
    t_start = time.perf_counter()
    state["last_time"] = t_start
    start_step = model.num_timesteps
    cb = _progress_callback(total, start_step, t_start, metrics_path, log, max(1, cfg.log_every), state)
    c_tasks = curve_tasks(expert_tasks(name), cfg.curve_goals)
    if cfg.curve_every > 0 and model.num_timesteps == 0:  # the untrained policy: the curve's first point
        append_rows(curve_path, curve_point(model, name, c_tasks, episodes=cfg.curve_episodes, seed=cfg.seed,
                                            step=0, wall_s=0.0, max_steps=cfg.eval_max_steps))
    while model.num_timesteps < total:
        n = model.num_timesteps
        stop = min(total, (n // cfg.checkpoint_every + 1) * cfg.checkpoint_every)
        if cfg.curve_every > 0:
            stop = min(stop, (n // cfg.curve_every + 1) * cfg.curve_every)
        model.learn(total_timesteps=stop - n, reset_num_timesteps=False, callback=cb, log_interval=10**9,
                    progress_bar=False)
        wall = state["wall_before"] + time.perf_counter() - t_start
        n = model.num_timesteps
        if cfg.curve_every > 0 and (n % cfg.curve_every == 0 or n >= total):
            rows = curve_point(model, name, c_tasks, episodes=cfg.curve_episodes, seed=cfg.seed, step=n,
                               wall_s=wall, max_steps=cfg.eval_max_steps)
            append_rows(curve_path, rows)
            log.info("expert %s: curve at step %d: normalised score %.1f (mean of %d task(s))", name, n,
                     float(np.mean([r["score_mean"] for r in rows])), len(rows))
        if cfg.max_train_seconds is not None and n < total and wall > cfg.max_train_seconds:
            log.warning("expert %s: stopping at step %d of %d: wall time %.0f s exceeds max_train_seconds %.0f",
                        name, n, total, wall, cfg.max_train_seconds)
            if cfg.curve_every > 0 and n % cfg.curve_every != 0:
                append_rows(curve_path, curve_point(model, name, c_tasks, episodes=cfg.curve_episodes,
                                                    seed=cfg.seed, step=n, wall_s=wall, max_steps=cfg.eval_max_steps))
            break
        if n < total and n % cfg.checkpoint_every == 0:
            _save_checkpoint(model, ckpt, {"step": model.num_timesteps, "config_key": _config_key(cfg),
                                           "episodes": state["episodes"], "returns": state["returns"][-10:],
                                           "scores": state["scores"][-10:], "wall_s": wall})
    wall = state["wall_before"] + time.perf_counter() - t_start
    _save_model(model, out / MODEL_ZIP)
    if cfg.curve_every > 0 and curve_path.exists():
        plot_curves({name: curve_path}, [out / CURVE_PNG], threshold=cfg.threshold(expert_tasks(name)[0]),
                    title=f"SAC expert {name}: evaluation during training")
    if ckpt.exists() and not cfg.keep_checkpoint:
        shutil.rmtree(ckpt)
    env.close()
    steps_run = model.num_timesteps - start_step
    run_seconds = time.perf_counter() - t_start
    info = {"steps_per_s": round(steps_run / max(run_seconds, 1e-9), 2), "n_updates": int(model._n_updates),
            "train_episodes": state["episodes"], "budget_steps": int(total),
            "stopped_early": bool(model.num_timesteps < total)}
    return model, wall, info


def _null_logger():
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])


# --------------------------------------------------------------------------- tables and figures

TABLE_COLUMNS = ["task", "suite", "expert_kind", "train_steps", "score_mean", "score_std", "n_episodes", "flagged"]


def expert_table_rows(task_names: Iterable[str], expert_root: str | os.PathLike,
                      cfg: ExpertConfig | None = None, log: logging.Logger | None = None) -> list[dict[str, Any]]:
    """One row per task from its expert's `expert.json` (FileNotFoundError if not evaluated).
    With `cfg`, `flagged` is recomputed against `cfg`'s thresholds."""
    log = log or LOG
    rows = []
    refs = reference_scores()
    for t in task_names:
        spec = tasks.get(t)
        meta = read_expert_json(spec.name, expert_root)
        ev = (meta or {}).get("evaluation", {}).get(spec.name)
        if ev is None:
            raise FileNotFoundError(f"{spec.name}: no evaluation in {expert_dir(spec.name, expert_root) / EXPERT_JSON}")
        flagged = bool(ev["score_mean"] < cfg.threshold(spec.name)) if cfg is not None else bool(ev.get("flagged"))
        if flagged:
            log.warning("expert of %s is FLAGGED: normalised score %.1f", spec.name, ev["score_mean"])
        row = {"task": spec.name, "suite": spec.suite, "expert_kind": meta["kind"],
               "source": meta.get("source", "scripted" if meta["kind"] == "scripted" else "trained"),
               "train_steps": int(meta.get("train_steps", 0)), "score_mean": ev["score_mean"],
               "score_std": ev["score_std"], "n_episodes": ev["n_episodes"], "flagged": flagged}
        row.update(refs.get(spec.name, {c: float("nan") for c in REFERENCE_COLUMNS}))
        best = np.nanmax([row["authors_promptdt_single"], row["sac_1000k"], -np.inf])
        row["ref_gap"] = round(float(row["score_mean"] - best), 2) if math.isfinite(best) else float("nan")
        row["far_below_ref"] = bool(math.isfinite(row["ref_gap"]) and row["ref_gap"] < -REFERENCE_GAP_FLAG)
        if row["far_below_ref"]:
            log.warning("expert of %s scores %.1f, %.1f below its best reference (%.1f)", spec.name,
                        row["score_mean"], -row["ref_gap"], best)
        rows.append(row)
    return rows


#: published single-task scores beside each expert (normalised like our scores): the authors'
#: single-task Prompt-DT on their data (paper Appendix A.3, a proxy of their data's quality)
#: and, for DMC, SAC and TD-MPC2 from TD-MPC2's released results (README "Experts")
REFERENCE_COLUMNS = ("authors_promptdt_single", "sac_100k", "sac_1000k", "tdmpc2_1000k")
#: an expert more than this many points below its best reference is marked `far_below_ref`
REFERENCE_GAP_FLAG = 25.0


def reference_scores() -> dict[str, dict[str, float]]:
    """task -> REFERENCE_COLUMNS (NaN where no reference exists), from the registry's data files."""
    from importlib import resources

    import pandas as pd

    data = resources.files("m3dt.tasks").joinpath("data")
    a3 = pd.read_csv(str(data.joinpath("appendix_a3_single_task.csv")))
    pub = pd.read_csv(str(data.joinpath("published_dmc_scores.csv")))
    out: dict[str, dict[str, float]] = {}
    for t in tasks.MT160:
        out[t] = {c: float("nan") for c in REFERENCE_COLUMNS}
    for _, r in a3.iterrows():
        if r["task"] in out:
            out[r["task"]]["authors_promptdt_single"] = float(r["single_task_promptdt_1.47M_score"])
    for _, r in pub.iterrows():
        if r["task"] in out:
            for c in ("sac_100k", "sac_1000k", "tdmpc2_1000k"):
                out[r["task"]][c] = float(r[c])
    return out


def write_expert_table(rows: Iterable[Mapping[str, Any]], csv_path: str | os.PathLike) -> Path:
    """`results/data/experts.csv`: columns `TABLE_COLUMNS`, written atomically."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"expert table rows lack columns {missing}")
    frame["flagged"] = frame["flagged"].astype(bool)
    extra = [c for c in frame.columns if c not in TABLE_COLUMNS]
    with atomic_path(csv_path) as tmp:
        frame[TABLE_COLUMNS + extra].to_csv(tmp, index=False)
    return Path(csv_path)


def plot_expert_quality(csv_path: str | os.PathLike, out_paths: str | os.PathLike | Sequence[str | os.PathLike],
                        threshold: float | None = None) -> list[Path]:
    """Bar per task of the expert's normalised score (error bar: std over episodes), one
    facet per suite, a dashed line at the near-optimal threshold; flagged bars hatched.
    `threshold` defaults to `ExpertConfig().near_optimal_threshold`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    threshold = ExpertConfig().near_optimal_threshold if threshold is None else float(threshold)
    frame = pd.read_csv(csv_path)
    suites = [s for s in tasks.SUITES if s in set(frame["suite"])]
    widths = [max(2.0, 0.28 * int((frame["suite"] == s).sum()) + 1.0) for s in suites]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(suites), figsize=(sum(widths), 3.6), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    palette = sns.color_palette("deep", len(tasks.SUITES))
    for ax, suite in zip(axes[0], suites):
        sub = frame[frame["suite"] == suite].reset_index(drop=True)
        color = palette[list(tasks.SUITES).index(suite)]
        x = np.arange(len(sub))
        bars = ax.bar(x, sub["score_mean"], yerr=sub["score_std"], color=color, capsize=2, edgecolor="black",
                      linewidth=0.5, error_kw={"linewidth": 0.8})
        for bar, flagged in zip(bars, sub["flagged"].astype(bool)):
            if flagged:
                bar.set_hatch("///")
                bar.set_facecolor("lightgray")
        ax.axhline(threshold, color="crimson", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xticks(x, sub["task"], rotation=90, fontsize=6)
        ax.set_title(f"{suite} ({len(sub)} tasks, {int(sub['flagged'].sum())} flagged)", fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_xlim(-0.6, len(sub) - 0.4)
    axes[0][0].set_ylabel("expert normalised score")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    paths = [Path(out_paths)] if isinstance(out_paths, (str, os.PathLike)) else [Path(p) for p in out_paths]
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", dpi=150)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- CLI


def _train_args(p) -> None:
    p.add_argument("names", nargs="+", help="experts to train: Meta-World/DMC task names, ant-dir, cheetah-vel "
                                            "(a task of a family selects the family)")
    p.add_argument("--expert-root", default="results/experts", help="experts are written to <root>/<name>/")
    p.add_argument("--config", help="YAML/JSON file of ExpertConfig fields (an `experts:` key is used if present)")
    p.add_argument("--steps", type=int, help="override the SAC steps of every named expert")
    p.add_argument("--seed", type=int, help="override ExpertConfig.seed")
    p.add_argument("--device", help="override ExpertConfig.device (auto, cpu, cuda)")
    p.add_argument("--overwrite", action="store_true", help="retrain even if a finished expert exists")
    p.add_argument("--log", help="also log to this file")


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


def _train_run(args) -> int:
    from m3dt.io import log_to

    cfg = ExpertConfig.from_dict(load_config_file(args.config, "experts"))
    if args.seed is not None:
        cfg.seed = args.seed
    if args.device:
        cfg.device = args.device
    with log_to(args.log) as log:
        names = expert_names(args.names)
        if args.steps is not None:
            cfg.sac_steps_overrides.update({n: args.steps for n in names if expert_kind(n) != "scripted"})
        for n in names:
            train_expert(n, cfg, Path(args.expert_root) / n, log=log, overwrite=args.overwrite)
    return 0


def _table_args(p) -> None:
    p.add_argument("--tasks", nargs="*", help="task names (default: --benchmark/--seed, or every task found)")
    p.add_argument("--benchmark", type=int, metavar="N", help="the MT-N subset")
    p.add_argument("--benchmark-seed", type=int, default=0)
    p.add_argument("--expert-root", default="results/experts")
    p.add_argument("--csv", default="results/data/experts.csv")
    p.add_argument("--figure", nargs="*", default=["results/data/experts.png", "results/data/experts.pdf"])
    p.add_argument("--threshold", type=float, help="recompute flags against this threshold")


def _table_run(args) -> int:
    if args.tasks:
        names = list(args.tasks)
    elif args.benchmark:
        names = list(tasks.benchmark(args.benchmark, args.benchmark_seed))
    else:
        names = [t for t in tasks.MT160 if read_expert_json(t, args.expert_root) is not None
                 and t in read_expert_json(t, args.expert_root).get("evaluation", {})]
    cfg = ExpertConfig(near_optimal_threshold=args.threshold) if args.threshold is not None else None
    rows = expert_table_rows(names, args.expert_root, cfg)
    write_expert_table(rows, args.csv)
    if args.figure:
        plot_expert_quality(args.csv, args.figure, threshold=args.threshold)
    n_flag = sum(r["flagged"] for r in rows)
    print(f"{len(rows)} experts -> {args.csv}; {n_flag} flagged")
    return 0
