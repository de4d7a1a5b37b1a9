"""`make_env(name, seed)`: the one way to build any registry task's environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from m3dt.tasks.registry import get
from m3dt.tasks.spec import TaskSpec

if TYPE_CHECKING:  # gymnasium and the simulators load only when an env is made
    import gymnasium as gym

    from m3dt.tasks.envs.padded import PaddedEnv


def _make_metaworld(spec: TaskSpec, seed: int | None, goal_index: int | None) -> "gym.Env":
    from m3dt.tasks.envs.metaworld_env import MetaWorldEnv, make_metaworld

    env_name = spec.kwargs["env_name"]
    return MetaWorldEnv(make_metaworld(env_name), env_name, goal_index)


def _make_dmc(spec: TaskSpec, seed: int | None, goal_index: int | None) -> "gym.Env":
    from m3dt.tasks.envs.dmc import DMCEnv, load_dmc

    kw = spec.kwargs
    return DMCEnv(load_dmc(kw["domain"], kw["task"], kw["custom"], spec.name, seed))


def _make_ant_dir(spec: TaskSpec, seed: int | None, goal_index: int | None) -> "gym.Env":
    from m3dt.tasks.envs.locomotion import AntDirEnv

    assert spec.goal is not None
    return AntDirEnv(spec.goal)


def _make_cheetah_vel(spec: TaskSpec, seed: int | None, goal_index: int | None) -> "gym.Env":
    from m3dt.tasks.envs.locomotion import CheetahVelEnv

    assert spec.goal is not None
    return CheetahVelEnv(spec.goal)


SUITE_FACTORIES: dict[str, Callable[[TaskSpec, int | None, int | None], "gym.Env"]] = {
    "metaworld": _make_metaworld,
    "dmc": _make_dmc,
    "ant_dir": _make_ant_dir,
    "cheetah_vel": _make_cheetah_vel,
}


def make_env(name: str, seed: int | None = None, goal_index: int | None = None) -> "PaddedEnv":
    """The padded environment of a task.

    `seed` seeds the first `reset()` (later resets continue the same random stream);
    `reset(seed=s)` is deterministic. Tasks with goal variations (`TaskSpec.goal_variations`,
    Meta-World: 50) draw the goal at each reset from the seed (`m3dt.tasks.envs.metaworld_env`:
    goal `s % 50`); `goal_index=i` pins goal i for every reset (evaluation, tests). Tasks with
    one fixed goal refuse a `goal_index`.
    """
    from m3dt.tasks.envs.padded import PaddedEnv

    spec = get(name)
    if goal_index is not None and not spec.goal_variations:
        raise ValueError(f"{spec.name}: goal_index={goal_index} given, but {spec.suite} tasks have one fixed goal")
    env = PaddedEnv(SUITE_FACTORIES[spec.suite](spec, seed, goal_index), spec)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
