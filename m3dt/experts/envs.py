"""The environments experts train on, built on the padded multi-task env (`m3dt.tasks`).

`StripPadding` shows a single-task learner the task's real dims; `GoalFamilyEnv` is one
env over all goals of a family (a goal drawn per episode, goal features appended to the
observation). Both subclass gymnasium classes, so they are defined on first use
(`StripPadding` / `GoalFamilyEnv` as module attributes, PEP 562): importing this module
does not import gymnasium.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from m3dt import tasks
from m3dt.experts.names import FAMILIES, expert_tasks, goal_features

if TYPE_CHECKING:  # heavy imports only where used
    import gymnasium as gym

_LAZY_CLASSES = ("StripPadding", "GoalFamilyEnv")


def __getattr__(name: str) -> Any:
    if name in _LAZY_CLASSES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_unpadded_env(task: str, seed: int | None = None) -> "gym.Env":
    """The task's padded env seen through `StripPadding`: obs (obs_dim,), action (action_dim,)."""
    return _classes()["StripPadding"](tasks.make_env(task, seed))


@functools.cache
def _classes() -> dict[str, type]:
    """Define the gymnasium-based classes once, importing gymnasium here (not at module load)."""
    import gymnasium as gym

    class StripPadding(gym.Wrapper):
        """Undo the multi-task padding for single-task learners.

        Observations are the first `obs_dim` entries (float32); actions of `action_dim` dims are
        zero-padded to 8 for the padded env (so training goes through exactly the env that data
        collection and evaluation use, including its episode-length truncation). The padded
        env's end-of-episode summary moves from `info["episode"]` to `info["m3dt_episode"]`
        (stable-baselines3 reserves `info["episode"]` for its Monitor format).
        """

        def __init__(self, env: "gym.Env"):
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


    class GoalFamilyEnv(gym.Env):
        """All goals of one family as one env: a goal drawn uniformly at each reset.

        Observation = the task's unpadded observation followed by `goal_features(task)`.
        Per-goal environments are built lazily through `tasks.make_env` and cached.
        `info["task"]` names the goal's registry task.
        """

        metadata = {"render_modes": []}

        def __init__(self, family: str, task_names: Sequence[str] | None = None):
            if family not in FAMILIES:
                raise ValueError(f"unknown family {family!r}; valid: {sorted(FAMILIES)}")
            self.family = family
            self.task_names = tuple(task_names or expert_tasks(family))
            self._goals = {t: goal_features(t) for t in self.task_names}
            spec = tasks.get(self.task_names[0])
            self.obs_dim, self.goal_dim = spec.obs_dim, len(self._goals[self.task_names[0]])
            self._envs: dict[str, gym.Env] = {}
            first = self._env(self.task_names[0])
            self.action_space = first.action_space
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim + self.goal_dim,), dtype=np.float32)
            self.current: str = self.task_names[0]

        def _env(self, task: str) -> gym.Env:
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

    return {"StripPadding": StripPadding, "GoalFamilyEnv": GoalFamilyEnv}


def make_training_env(name: str, seed: int) -> "gym.Env":
    """The env an expert trains on: unpadded single task, or the family's goal env."""
    if name in FAMILIES:
        env = _classes()["GoalFamilyEnv"](name)
    else:
        env = make_unpadded_env(name)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env
