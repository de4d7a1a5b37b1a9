"""DeepMind Control tasks as gymnasium environments.

Action repeat 2 over the suite's 1000-step limit gives 500 agent steps; the reward of an
agent step is the sum over its 2 physics steps (the authors' convention). Observations are
the dm_control observation dict flattened in its own key order (as TD-MPC2 and the
authors do), so imported data lines up dimension by dimension.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from dm_control import suite
from dm_control.rl import control

ACTION_REPEAT = 2


def load_dmc(domain: str, task: str, custom: bool, name: str, seed: int | None) -> control.Environment:
    """The dm_control environment of a registry task (stock suite or our custom tasks)."""
    if custom:
        from m3dt.tasks.dmc_custom import CUSTOM_TASKS

        return CUSTOM_TASKS[name](random=seed)
    return suite.load(domain, task, task_kwargs={"random": seed})


def flatten_obs(obs: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in obs.values()])


class DMCEnv(gym.Env):
    """A dm_control environment with action repeat, flat observations and gymnasium's API."""

    metadata = {"render_modes": []}

    def __init__(self, env: control.Environment, action_repeat: int = ACTION_REPEAT):
        assert action_repeat >= 1, action_repeat
        self._env = env
        self._repeat = action_repeat
        spec = env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                           dtype=np.float32)
        obs_dim = sum(int(np.prod(s.shape)) for s in env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float64)

    @property
    def physics(self):
        return self._env.physics

    @property
    def task(self):
        return self._env.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        ts = self._env.reset()
        return flatten_obs(ts.observation), {}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        reward = 0.0
        ts = None
        for _ in range(self._repeat):
            ts = self._env.step(action)
            reward += float(ts.reward or 0.0)
            if ts.last():
                break
        assert ts is not None
        # dm_control episodes end by time limit (truncation) unless the discount drops to 0.
        terminated = bool(ts.last() and ts.discount == 0.0)
        truncated = bool(ts.last() and not terminated)
        return flatten_obs(ts.observation), reward, terminated, truncated, {}
