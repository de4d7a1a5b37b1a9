import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, "../schemas/config.schema.yaml")

# The Snakefile itself asks the registry (stdlib only at import), straight from this
# checkout; jobs use the installed package (`pip install -e .`, or envs/m3dt.yaml plus
# its post-deploy script under --sdm conda).
REPO = os.path.abspath(workflow.basedir)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from m3dt import tasks as m3dt_tasks  # noqa: E402

RESULTS = config["results"]
SEEDS = [int(s) for s in config["seeds"]]
TASK_COUNTS = [int(n) for n in config["task_counts"]]


wildcard_constraints:
    n=r"\d+",
    seed=r"\d+",
    task=r"[a-z0-9\-]+",


def benchmark_tasks(n, seed):
    """The authors' MT-n task list for a seed (from the registry)."""
    return list(m3dt_tasks.benchmark(int(n), int(seed)))


def preset_tasks():
    """Every task some benchmark of this preset needs, in MT160 order."""
    needed = {t for n in TASK_COUNTS for s in SEEDS for t in benchmark_tasks(n, s)}
    return [t for t in m3dt_tasks.MT160 if t in needed]


def registry_outputs():
    return [f"{RESULTS}/tasks/registry.csv"] + expand(
        f"{RESULTS}/tasks/mt{{n}}_seed{{seed}}.csv", n=TASK_COUNTS, seed=SEEDS
    )
