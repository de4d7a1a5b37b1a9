"""Meta-World v3 tasks, one fixed goal per task (MT1-style, as the authors used them).

The goal variation is chosen deterministically from `goal_seed` among the 50 that
`metaworld.MT1` generates; it stays fixed across resets. Observations include the goal
(goal-observable, 39 dims).
"""

from __future__ import annotations

import functools

import gymnasium as gym
import metaworld
import numpy as np


@functools.lru_cache(maxsize=64)
def _mt1(env_name: str, goal_seed: int) -> metaworld.MT1:
    """`metaworld.MT1` is deterministic in (name, seed) and costs ~0.4 s: built once per process."""
    return metaworld.MT1(env_name, seed=goal_seed)


def make_metaworld(env_name: str, goal_seed: int = 0, goal_index: int = 0) -> gym.Env:
    """The raw Meta-World v3 env for `env_name` (e.g. `reach-v3`) with a fixed goal."""
    benchmark = _mt1(env_name, goal_seed)
    env = benchmark.train_classes[env_name]()
    env.set_task(benchmark.train_tasks[goal_index])
    return env


class MetaWorldEnv(gym.Wrapper):
    """Seeds Meta-World through `reset(seed)` (its own reset ignores the seed)."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(seed)
        obs, info = self.env.reset()
        return np.asarray(obs, dtype=np.float64), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        return obs, float(reward), terminated, truncated, info
