"""The shared interface of all 160 tasks (TD-MPC2-style multi-task padding).

Observations are zero-padded to 39 float32 dims, actions are 8 dims of which only the
task's first `action_dim` are sent to the simulator. Every step's info carries
`action_mask` (bool, 8) and `success` (Meta-World's flag; False elsewhere). The step that
ends an episode (termination or the task's episode length) adds `info["episode"]` with the
raw return, the any-step success, the length and the normalised score.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from m3dt.tasks.spec import ACT_PAD, OBS_PAD, TaskSpec


class PaddedEnv(gym.Wrapper):
    def __init__(self, env: gym.Env, spec: TaskSpec):
        super().__init__(env)
        self.spec_ = spec
        self.task = spec
        raw_shape = env.observation_space.shape
        assert raw_shape == (spec.obs_dim,), f"{spec.name}: env obs shape {raw_shape} != registry ({spec.obs_dim},)"
        raw_act = env.action_space
        assert raw_act.shape == (spec.action_dim,), (
            f"{spec.name}: env action shape {raw_act.shape} != registry ({spec.action_dim},)")
        self._act_low = np.asarray(raw_act.low, dtype=np.float64)
        self._act_high = np.asarray(raw_act.high, dtype=np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_PAD,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_PAD,), dtype=np.float32)
        self.action_mask = np.arange(ACT_PAD) < spec.action_dim  # (8,) bool
        self._t = 0
        self._return = 0.0
        self._success = False

    def pad_obs(self, obs: np.ndarray) -> np.ndarray:
        out = np.zeros(OBS_PAD, dtype=np.float32)
        out[: self.spec_.obs_dim] = obs
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._t, self._return, self._success = 0, 0.0, False
        return self.pad_obs(obs), self._info(info, False)

    def _info(self, info: dict[str, Any], success: bool) -> dict[str, Any]:
        info = dict(info)
        info["action_mask"] = self.action_mask
        info["success"] = bool(success)
        return info

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        assert action.shape == (ACT_PAD,), f"{self.spec_.name}: expected an action of {ACT_PAD} dims, got {action.shape}"
        real = np.clip(action[: self.spec_.action_dim], self._act_low, self._act_high)
        obs, reward, terminated, truncated, info = self.env.step(real)
        self._t += 1
        success = bool(info.get("success", False))
        self._success |= success
        self._return += float(reward)
        truncated = bool(truncated or self._t >= self.spec_.episode_length)
        info = self._info(info, success)
        if terminated or truncated:
            succ = self._success if self.spec_.suite == "metaworld" else None
            info["episode"] = {
                "return": self._return,
                "length": self._t,
                "success": self._success,
                "normalized_score": self.spec_.normalized_score(self._return, succ),
            }
        return self.pad_obs(obs), float(reward), bool(terminated), truncated, info
