"""Meta-World v3 tasks whose goal varies over episodes, as in the authors' data and evaluation.

A task's goals are the `GOAL_VARIATIONS` (= 50) MT1 train tasks of its v3 env,
`metaworld.MT1(env_name, seed=MT1_SEED).train_tasks` (each fixes the object and goal
positions; observations are goal-observable, 39 dims, the goal in dims 36:39). Which
variation an episode uses:

- pinned (`goal_index=i` at construction, or `reset(options={"goal_index": i})`): goal i
  at every reset. Evaluation pins episode i to goal i (i = 0..9), as the authors, who
  evaluate episode i on `MT1(env).train_tasks[i]`;
- otherwise `reset(seed=s)` uses goal `s % 50` (deterministic per seed, different for any
  50 consecutive seeds, so collection episodes, reset with consecutive seeds, cycle through
  all 50 goals), and a reset without a seed the variation after the previous one.

The variation used is reported as `info["goal_index"]` by `reset`.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import metaworld
import numpy as np

from m3dt.tasks.spec import SUITES

#: seed of `metaworld.MT1` that generates a task's goal variations. The authors call
#: `MT1(env)` unseeded (numpy's global stream); a fixed seed makes ours reproducible.
MT1_SEED = 0
#: goal variations per task (`metaworld.MT1` makes 50 train tasks; the registry's number)
GOAL_VARIATIONS = SUITES["metaworld"].goal_variations


@functools.lru_cache(maxsize=None)
def mt1(env_name: str) -> metaworld.MT1:
    """`metaworld.MT1(env_name, seed=MT1_SEED)`: deterministic and ~0.4 s to build, so built
    once per process and task (it only holds the env class and 50 small task records)."""
    benchmark = metaworld.MT1(env_name, seed=MT1_SEED)
    assert len(benchmark.train_tasks) == GOAL_VARIATIONS, (
        f"{env_name}: metaworld.MT1 made {len(benchmark.train_tasks)} train tasks, expected {GOAL_VARIATIONS}")
    return benchmark


def _check_index(env_name: str, goal_index: Any) -> int:
    if isinstance(goal_index, bool) or not isinstance(goal_index, (int, np.integer)) \
            or not 0 <= int(goal_index) < GOAL_VARIATIONS:
        raise ValueError(f"{env_name}: goal_index must be an int in [0, {GOAL_VARIATIONS}), got {goal_index!r}")
    return int(goal_index)


def make_metaworld(env_name: str) -> gym.Env:
    """The raw Meta-World v3 env for `env_name` (e.g. `reach-v3`), set to goal 0."""
    benchmark = mt1(env_name)
    env = benchmark.train_classes[env_name]()
    env.set_task(benchmark.train_tasks[0])
    return env


class MetaWorldEnv(gym.Wrapper):
    """Chooses the goal variation at each reset (see the module docstring) and seeds
    Meta-World through `reset(seed)` (its own reset ignores the seed)."""

    def __init__(self, env: gym.Env, env_name: str, goal_index: int | None = None):
        super().__init__(env)
        self.env_name = env_name
        self.pinned = None if goal_index is None else _check_index(env_name, goal_index)
        self.goal_index = 0  # the variation currently set (make_metaworld sets goal 0)
        self._next = 0  # the variation an unseeded, unpinned reset uses

    def _choose(self, seed: int | None, options: dict | None) -> int:
        if options and options.get("goal_index") is not None:
            return _check_index(self.env_name, options["goal_index"])
        if self.pinned is not None:
            return self.pinned
        if seed is not None:
            return int(seed) % GOAL_VARIATIONS
        return self._next

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        index = self._choose(seed, options)
        if index != self.goal_index:
            self.env.unwrapped.set_task(mt1(self.env_name).train_tasks[index])
            self.goal_index = index
        self._next = (index + 1) % GOAL_VARIATIONS
        if seed is not None:
            self.env.unwrapped.seed(int(seed))
        obs, info = self.env.reset()
        info = dict(info)
        info["goal_index"] = index
        return np.asarray(obs, dtype=np.float64), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        return obs, float(reward), terminated, truncated, info
