"""The MT160 registry: one `TaskSpec` per task, built once from the package data files.

Data files (`m3dt/tasks/data/`, copied verbatim from the authors' configs):
`task_160_seed{0,1,2}.json` (task order and the MT-n subsets), `action_mask.json`
(real action dims), `goals.json` (ant-dir angles, cheetah-vel target velocities).
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

from m3dt.tasks.spec import SUITES, TaskSpec

BENCHMARK_SIZES = (10, 20, 40, 80, 120, 160)
BENCHMARK_SEEDS = (0, 1, 2)

# DMC tasks: registry name -> (dm_control domain, task, flattened obs dim, custom?).
# Stock obs dims measured on dm_control 1.0.28 (tasks.md); custom tasks are ours
# (m3dt.tasks.dmc_custom) on the stock domain's physics.
_DMC: dict[str, tuple[str, str, int, bool]] = {
    "acrobot-swingup": ("acrobot", "swingup", 6, False),
    "cartpole-balance": ("cartpole", "balance", 5, False),
    "cartpole-balance-sparse": ("cartpole", "balance_sparse", 5, False),
    "cartpole-swingup": ("cartpole", "swingup", 5, False),
    "cartpole-swingup-sparse": ("cartpole", "swingup_sparse", 5, False),
    "cheetah-run": ("cheetah", "run", 17, False),
    "cup-catch": ("ball_in_cup", "catch", 8, False),
    "finger-spin": ("finger", "spin", 9, False),
    "finger-turn-easy": ("finger", "turn_easy", 12, False),
    "finger-turn-hard": ("finger", "turn_hard", 12, False),
    "fish-swim": ("fish", "swim", 24, False),
    "hopper-hop": ("hopper", "hop", 15, False),
    "hopper-stand": ("hopper", "stand", 15, False),
    "pendulum-swingup": ("pendulum", "swingup", 3, False),
    "reacher-easy": ("reacher", "easy", 6, False),
    "reacher-hard": ("reacher", "hard", 6, False),
    "walker-run": ("walker", "run", 24, False),
    "walker-stand": ("walker", "stand", 24, False),
    "walker-walk": ("walker", "walk", 24, False),
    "walker-walk-backwards": ("walker", "walk_backwards", 24, True),
    "walker-run-backwards": ("walker", "run_backwards", 24, True),
    "cheetah-run-backwards": ("cheetah", "run_backwards", 17, True),
    "cheetah-run-front": ("cheetah", "run_front", 17, True),
    "cheetah-run-back": ("cheetah", "run_back", 17, True),
    "cheetah-jump": ("cheetah", "jump", 17, True),
    "hopper-hop-backwards": ("hopper", "hop_backwards", 15, True),
    "reacher-three-easy": ("reacher_three", "easy", 8, True),
    "reacher-three-hard": ("reacher_three", "hard", 8, True),
    "cup-spin": ("ball_in_cup", "spin", 8, True),
    "pendulum-spin": ("pendulum", "spin", 3, True),
}

_METAWORLD_OBS = 39
_ANT_DIR_OBS = 27  # qpos[2:] (13) + qvel (14)
_CHEETAH_VEL_OBS = 20  # qpos[1:] (8) + qvel (9) + torso centre of mass (3)


def _load_json(filename: str) -> Any:
    return json.loads(resources.files("m3dt.tasks").joinpath("data", filename).read_text())


def _spec(name: str, suite: str, obs_dim: int, action_dim: int, goal: float | None = None,
          **env_kwargs: Any) -> TaskSpec:
    s = SUITES[suite]
    return TaskSpec(
        name=name,
        suite=suite,
        obs_dim=obs_dim,
        action_dim=action_dim,
        episode_length=s.episode_length,
        rtg_target=s.rtg_target,
        rtg_scale=s.rtg_scale,
        eval_episodes=s.eval_episodes,
        goal=goal,
        env_kwargs=tuple(sorted(env_kwargs.items())),
    )


@lru_cache(maxsize=None)
def _task_lists(seed: int) -> dict[str, tuple[str, ...]]:
    if seed not in BENCHMARK_SEEDS:
        raise ValueError(f"benchmark seed must be one of {BENCHMARK_SEEDS}, got {seed}")
    raw = _load_json(f"task_160_seed{seed}.json")
    return {k: tuple(v) for k, v in raw.items()}


def _build() -> dict[str, TaskSpec]:
    masks = _load_json("action_mask.json")
    goals = _load_json("goals.json")
    specs: dict[str, TaskSpec] = {}
    for name in _task_lists(0)["mt160_task_list"]:
        if name in _DMC:
            domain, task, obs_dim, custom = _DMC[name]
            spec = _spec(name, "dmc", obs_dim, masks[name], domain=domain, task=task, custom=custom)
        elif name in goals["ant_dir_angle_radians"]:
            angle = float(goals["ant_dir_angle_radians"][name])
            spec = _spec(name, "ant_dir", _ANT_DIR_OBS, masks["ant-dir"], goal=angle)
        elif name in goals["cheetah_vel_target_velocity"]:
            vel = float(goals["cheetah_vel_target_velocity"][name])
            spec = _spec(name, "cheetah_vel", _CHEETAH_VEL_OBS, masks["cheetah-vel"], goal=vel)
        elif name.endswith("-v2"):
            spec = _spec(name, "metaworld", _METAWORLD_OBS, masks["meta-world"],
                         env_name=name[: -len("-v2")] + "-v3")
        else:  # pragma: no cover - guards the data files
            raise ValueError(f"task {name!r} in task_160_seed0.json matches no suite")
        specs[name] = spec
    missing = set(_DMC) - set(specs)
    assert not missing, f"DMC tasks missing from the MT160 list: {sorted(missing)}"
    return specs


REGISTRY: dict[str, TaskSpec] = _build()
MT160: tuple[str, ...] = _task_lists(0)["mt160_task_list"]


def canonical_name(name: str) -> str:
    """Registry name for `name`; accepts Meta-World v3 names (`reach-v3` -> `reach-v2`)."""
    if name in REGISTRY:
        return name
    if name.endswith("-v3") and name[:-1] + "2" in REGISTRY:
        return name[:-1] + "2"
    raise KeyError(_unknown(name))


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(REGISTRY), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"unknown task {name!r} (not one of the {len(REGISTRY)} MT160 tasks{hint})"


def get(name: str) -> TaskSpec:
    """The `TaskSpec` of a task; `KeyError` naming the closest valid names if unknown."""
    return REGISTRY[canonical_name(name)]


def benchmark(n: int, seed: int = 0) -> tuple[str, ...]:
    """The authors' MT-n subset for a seed (n in 10, 20, 40, 80, 120, 160; seed in 0, 1, 2)."""
    if n not in BENCHMARK_SIZES:
        raise ValueError(f"benchmark size must be one of {BENCHMARK_SIZES}, got {n}")
    return _task_lists(seed)[f"mt{n}_task_list"]


def tasks_of_suite(suite: str) -> tuple[str, ...]:
    """All registry tasks of a suite, in MT160 order."""
    if suite not in SUITES:
        raise KeyError(f"unknown suite {suite!r}; valid: {', '.join(SUITES)}")
    return tuple(n for n in MT160 if REGISTRY[n].suite == suite)


def resolve(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical names for a list of task names, failing on the first unknown one."""
    return tuple(canonical_name(n) for n in names)


def write_task_table(path: str, names: Iterable[str] | None = None) -> None:
    """CSV of the registry (one row per task, `TaskSpec.as_row` columns), written atomically."""
    import pandas as pd

    from m3dt.io import atomic_path

    rows = [get(n).as_row() for n in (MT160 if names is None else names)]
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
