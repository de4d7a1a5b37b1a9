"""Task and suite specifications: the facts every other module asks about a task.

Values follow paper.md §3 and tasks.md: episode length, RTG target and scale, evaluation
episodes and the normalised score of each suite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

OBS_PAD = 39  # every observation is zero-padded to this many dims
ACT_PAD = 8  # every action is padded to this many dims (real dims given by the action mask)


def _score_metaworld(episode_return: float, success: bool | None) -> float:
    if success is None:
        raise ValueError("Meta-World scores need `success` (any step with info['success'] == 1)")
    return 100.0 * float(bool(success))


def _score_dmc(episode_return: float, success: bool | None) -> float:
    return float(episode_return) / 10.0


def _score_ant_dir(episode_return: float, success: bool | None) -> float:
    return float(min(max(float(episode_return) / 5.0, 0.0), 100.0))


def _score_cheetah_vel(episode_return: float, success: bool | None) -> float:
    r = float(episode_return)
    if r < -100.0:
        return 0.0
    if r > -30.0:
        return 100.0
    return (r + 100.0) * 100.0 / 70.0


@dataclass(frozen=True)
class SuiteSpec:
    """Per-suite constants (paper.md §3)."""

    name: str
    episode_length: int
    rtg_target: float
    rtg_scale: float
    eval_episodes: int
    score_fn: Callable[[float, bool | None], float] = field(repr=False, compare=False)
    description: str = ""
    #: goal variations an episode of a task can draw (Meta-World: the 50 MT1 train tasks of
    #: the env, `m3dt.tasks.envs.metaworld_env`); 0: the task has one fixed goal
    goal_variations: int = 0


SUITES: dict[str, SuiteSpec] = {
    s.name: s
    for s in (
        SuiteSpec("metaworld", 500, 4500.0, 1000.0, 10, _score_metaworld,
                  "Meta-World v3 (authors' v2 names), goal varies per episode, success rate x 100",
                  goal_variations=50),
        SuiteSpec("dmc", 500, 1000.0, 200.0, 10, _score_dmc,
                  "DeepMind Control, action repeat 2, return / 10"),
        SuiteSpec("ant_dir", 200, 500.0, 500.0, 1, _score_ant_dir,
                  "Ant (gymnasium MuJoCo) running in direction theta, clip(return / 5, 0, 100)"),
        SuiteSpec("cheetah_vel", 200, 0.0, 200.0, 1, _score_cheetah_vel,
                  "HalfCheetah (gymnasium MuJoCo) at target velocity, (return + 100) * 100 / 70 clipped"),
    )
}


@dataclass(frozen=True)
class TaskSpec:
    """One task of MT160.

    `env_kwargs` are the suite factory's arguments (e.g. the dm_control domain/task, the
    Meta-World v3 name, the goal angle or velocity); `make_env` in this package turns a
    spec into an environment.
    """

    name: str
    suite: str
    obs_dim: int
    action_dim: int
    episode_length: int
    rtg_target: float
    rtg_scale: float
    eval_episodes: int
    goal: float | None = None
    env_kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        assert self.suite in SUITES, f"{self.name}: unknown suite {self.suite!r}"
        assert 0 < self.obs_dim <= OBS_PAD, f"{self.name}: obs_dim {self.obs_dim} not in (0, {OBS_PAD}]"
        assert 0 < self.action_dim <= ACT_PAD, f"{self.name}: action_dim {self.action_dim} not in (0, {ACT_PAD}]"

    @property
    def suite_spec(self) -> SuiteSpec:
        return SUITES[self.suite]

    @property
    def goal_variations(self) -> int:
        """Number of goal variations episodes draw from (0: one fixed goal); see `SuiteSpec`."""
        return SUITES[self.suite].goal_variations

    @property
    def action_mask(self) -> tuple[bool, ...]:
        """Length-8 mask, True on the task's real action dims."""
        return tuple(i < self.action_dim for i in range(ACT_PAD))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.env_kwargs)

    def normalized_score(self, episode_return: float, success: bool | None = None) -> float:
        """Normalised score of one episode (paper.md §3).

        Meta-World: 100 if the episode succeeded at any step else 0 (`success` required);
        DMC: return / 10; ant-dir: clip(return / 5, 0, 100); cheetah-vel: 0 below -100,
        100 above -30, linear in between.
        """
        if not math.isfinite(float(episode_return)):
            raise ValueError(f"{self.name}: episode return must be finite, got {episode_return}")
        return SUITES[self.suite].score_fn(episode_return, success)

    def as_row(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "suite": self.suite,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "episode_length": self.episode_length,
            "rtg_target": self.rtg_target,
            "rtg_scale": self.rtg_scale,
            "eval_episodes": self.eval_episodes,
            "goal": self.goal,
        }
