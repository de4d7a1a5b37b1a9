"""The MT160 task registry and its environments.

>>> from m3dt import tasks
>>> tasks.get("reach-v2").action_dim
4
>>> len(tasks.MT160), tasks.benchmark(10, seed=0)[:2]
"""

from m3dt.tasks.envs.factory import make_env
from m3dt.tasks.registry import (
    BENCHMARK_SEEDS,
    BENCHMARK_SIZES,
    MT160,
    REGISTRY,
    benchmark,
    canonical_name,
    get,
    resolve,
    tasks_of_suite,
    write_task_table,
)
from m3dt.tasks.spec import ACT_PAD, OBS_PAD, SUITES, SuiteSpec, TaskSpec

__all__ = [
    "ACT_PAD",
    "BENCHMARK_SEEDS",
    "BENCHMARK_SIZES",
    "MT160",
    "OBS_PAD",
    "REGISTRY",
    "SUITES",
    "SuiteSpec",
    "TaskSpec",
    "benchmark",
    "canonical_name",
    "get",
    "make_env",
    "resolve",
    "tasks_of_suite",
    "write_task_table",
]
