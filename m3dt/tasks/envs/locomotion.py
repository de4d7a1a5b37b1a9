"""ant-dir and cheetah-vel (Prompt-DT / PEARL) on gymnasium MuJoCo.

Checked against the authors' environments (Prompt-DT's `mujoco_control_envs`, from PEARL):
same models (PEARL's ant.xml is gymnasium's plus two visual sites), frame skip 5, reset
noise (qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)), observations, rewards, termination and
200-step episodes; tests/test_tasks.py checks the reward terms.

ant-dir: `Ant-v5` without contact forces in the observation (27 dims = qpos[2:] + qvel).
Reward = torso velocity . (cos t, sin t) - 0.5 |a|^2 + 1 (survive reward, paid on every
step, the terminating one too, as PEARL; Ant-v5's own is 0 on an unhealthy step);
terminates when the state is not finite or the torso z leaves [0.2, 1.0] (Ant-v5's
defaults equal PEARL's).
No contact cost by default, as the authors: their ant-dir (Prompt-DT's, on mujoco-py 2.0)
computes 5e-4 sum clip(cfrc_ext)^2, but mujoco-py 2.0 reads contact forces as zero, so the
term was 0 in their data. `AntDirEnv(angle, contact_cost=True)` adds Ant-v5's term back.

cheetah-vel: `HalfCheetah-v5` plus the torso centre of mass (17 + 3 = 20 dims).
Reward = -|forward velocity - v*| - 0.05 |a|^2; never terminates.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class AntDirEnv(gym.Wrapper):
    SURVIVE_REWARD = 1.0  # PEARL's constant survive reward

    def __init__(self, angle: float, contact_cost: bool = False):
        env = gym.make("Ant-v5", include_cfrc_ext_in_observation=False,
                       max_episode_steps=None, disable_env_checker=True).unwrapped
        super().__init__(env)
        self.angle = float(angle)
        self.contact_cost = bool(contact_cost)
        self._direction = np.array([np.cos(self.angle), np.sin(self.angle)])

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        forward = float(info["x_velocity"] * self._direction[0] + info["y_velocity"] * self._direction[1])
        reward = forward + info["reward_ctrl"] + self.SURVIVE_REWARD
        if self.contact_cost:
            reward += info["reward_contact"]
        info = dict(info, reward_forward=forward, reward_survive=self.SURVIVE_REWARD)
        return obs, float(reward), terminated, truncated, info


class CheetahVelEnv(gym.Wrapper):
    CTRL_COST = 0.05

    def __init__(self, target_velocity: float):
        env = gym.make("HalfCheetah-v5", max_episode_steps=None, disable_env_checker=True).unwrapped
        super().__init__(env)
        self.target_velocity = float(target_velocity)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (20,), dtype=np.float64)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        com = self.env.unwrapped.data.body("torso").xpos  # (3,) torso centre of mass frame
        return np.concatenate([obs, com])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), info

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        a = np.asarray(action, dtype=np.float64)
        reward = -abs(float(info["x_velocity"]) - self.target_velocity) - self.CTRL_COST * float(a @ a)
        return self._obs(obs), float(reward), terminated, truncated, info
