import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# The Snakefile itself asks the registry (stdlib only at import), straight from this
# checkout; jobs use the installed package (`pip install -e .`, or envs/m3dt.yaml plus
# its post-deploy script under --sdm conda).
REPO = os.path.abspath(workflow.basedir)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from m3dt import tasks as m3dt_tasks  # noqa: E402
from m3dt.experts.config import ExpertConfig  # noqa: E402
from m3dt.io import typed_strings  # noqa: E402
from m3dt.workflow_lock import clear_stale_locks, register_instance  # noqa: E402

# A Snakemake killed with -9 leaves its lock behind: clear it when no instance that could
# hold it is alive (m3dt/workflow_lock.py), then register this one. Jobs on a cluster
# node parse this file too; only the main process does this.
if workflow.is_main_process:
    _msg = clear_stale_locks(".snakemake")
    if _msg:
        print(f"m3dt: {_msg}", file=sys.stderr)
    register_instance(".snakemake")

# `--config steps='{router: 2000}'` gives nested values as strings: type them first.
for _key in list(config):
    config[_key] = typed_strings(config[_key])
validate(config, "../schemas/config.schema.yaml")

RESULTS = config["results"]
SEEDS = [int(s) for s in config["seeds"]]
# training seed = benchmark seed + this offset (a training-seed replicate on the same tasks)
TRAIN_SEED_OFFSET = int(config["training_seed_offset"])
TASK_COUNTS = [int(n) for n in config["task_counts"]]
DATA = config["data"]
# checked now (a bad data.experts key stops the plan, naming it); per-expert job settings
EXPERTS = ExpertConfig.from_dict(DATA["experts"])
STEPS = config["steps"]
EXP = config["experiments"]
CONFLICT = config["conflict"]
EVAL = config["evaluation"]
THREADS = config["threads"]
RES = config["resources"]
TRAIN = config["train"]
WIDTH = int(TRAIN.get("model", {}).get("width", 256))  # the backbone width of M3DT
E_MAIN = int(EXP["n_experts"])
E_BY_N = {int(k): int(v) for k, v in EXP["n_experts_by_task_count"].items()}
E_COUNTS = [int(e) for e in EXP["expert_counts"]]
E_TASK_COUNTS = [int(n) for n in EXP["expert_task_counts"]]
N_MAX = max(E_TASK_COUNTS)  # task count of Figs. 7, 9, 12 and Table 2
B_DENSE = int(STEPS["dense"])  # how long stage 1 and the dense baselines train
B_STEPS = sorted(
    {int(b) for b in EXP["backbone_checkpoints"]} | {B_DENSE}
)  # kept (Fig. 7)
# the stage-1 step the main M3DT runs are built on (paper 400k; null: steps.dense)
B_MAIN = int(EXP.get("m3dt_backbone_step") or B_DENSE)
GROUPINGS = list(EXP["groupings"])
G_FIG = GROUPINGS[-1]


def table1_experts(n):
    """Expert count of Table 1's M3DT runs at n tasks."""
    return E_BY_N.get(int(n), E_MAIN)


def _check_config():
    """Config errors the schema cannot express, each naming its key."""
    bad = [b for b in B_STEPS if b > B_DENSE]
    if bad:
        raise ValueError(
            f"experiments.backbone_checkpoints {bad} exceed steps.dense = {B_DENSE}"
        )
    if B_MAIN not in B_STEPS:
        raise ValueError(
            f"experiments.m3dt_backbone_step = {B_MAIN} is not a kept stage-1 checkpoint: "
            f"it must be steps.dense ({B_DENSE}) or one of experiments.backbone_checkpoints {B_STEPS}"
        )
    if DATA["source"] == "import" and not DATA.get("import_dir"):
        raise ValueError("data.source is 'import' but data.import_dir is not set")
    if DATA["source"] == "import" and not os.path.isdir(DATA["import_dir"]):
        raise ValueError(
            f"data.import_dir {DATA['import_dir']!r} is not a folder (data.source is 'import')"
        )
    # every M3DT run needs at least one task per expert
    uses = [("experiments.n_experts", E_MAIN, N_MAX)]
    uses += [("experiments.expert_counts", max(E_COUNTS), min(E_TASK_COUNTS))]
    uses += [
        (
            (
                f"experiments.n_experts_by_task_count[{n}]"
                if n in E_BY_N
                else "experiments.n_experts"
            ),
            table1_experts(n),
            n,
        )
        for n in TASK_COUNTS
    ]
    for key, experts, n in uses:
        if experts > n:
            raise ValueError(
                f"{key} = {experts} exceeds the {n} tasks it is used with: a group needs a task"
            )
    for t in config["single_task"]["tasks"]:
        try:
            t == "all" or m3dt_tasks.get(t)
        except KeyError as e:
            raise ValueError(f"single_task.tasks: {e.args[0]}") from None
    from m3dt.config import TrainConfig

    TrainConfig.from_dict(TRAIN)  # raises ConfigError naming train.<section>.<key>


_check_config()


wildcard_constraints:
    n=r"\d+",
    seed=r"\d+",
    task=r"[a-z0-9\-]+",
    width=r"\d+",
    E=r"\d+",
    i=r"\d+",
    bstep=r"\d+",
    grouping=r"random|gradient|none",
    router=r"dense|topk|dense-unfrozen",
    dense=r"prompt_dt|mtdt|harmodt",
    expert=r"[a-z0-9\-]+",
    ckpt=r"final|step_\d+",
    run=r"[A-Za-z0-9_\-/]+",


def benchmark_tasks(n, seed):
    """The authors' MT-n task list for a seed (from the registry)."""
    return list(m3dt_tasks.benchmark(int(n), int(seed)))


def preset_tasks():
    """Every task some benchmark of this preset needs, in MT160 order."""
    counts = set(TASK_COUNTS) | {
        int(n) for n in config["experiments"]["expert_task_counts"]
    }
    needed = {t for n in counts for s in SEEDS for t in benchmark_tasks(n, s)}
    return [t for t in m3dt_tasks.MT160 if t in needed]


# ----------------------------------------------------------------------------- paths
# Every file a rule reads or writes under RESULTS is spelled here, once. The rule files
# call these helpers and spell no path themselves (tests/test_workflow_paths.py). Called
# without arguments a helper gives the wildcard pattern (rule outputs); with values, the
# path.

DATA_DIR = f"{RESULTS}/data"
EXPERT_ROOT = f"{RESULTS}/experts"


def data_dir():
    """The folder of the task data files (`<task>.h5`) and the data quality table."""
    return DATA_DIR


def expert_root():
    """The folder of the data-collection experts (`<expert>/expert.json`, ...)."""
    return EXPERT_ROOT


def _under(kind, path, ext):
    """`RESULTS/<kind>/<path relative to RESULTS><ext>`: the log / benchmark of an output."""
    assert path.startswith(f"{RESULTS}/"), f"{path} is not under {RESULTS}"
    return f"{RESULTS}/{kind}/{path[len(RESULTS) + 1:]}{ext}"


def log_of(path):
    return _under("logs", path, ".log")


def bench_of(path):
    return _under("benchmarks", path, ".tsv")


def runs_path(run="{run}"):
    return f"{RESULTS}/runs/{run}"


def run_dir(n="{n}", seed="{seed}", name="{run}"):
    return runs_path(f"mt{n}/s{seed}/{name}")


def ckpt_path(directory, ckpt="final"):
    return f"{directory}/checkpoints/{ckpt}.pt"


def step_ckpt(step):
    """Name of the checkpoint kept at a training step (`ckpt_path(directory, step_ckpt(s))`)."""
    return f"step_{step}"


def m3dt_dir(n="{n}", seed="{seed}", E="{E}", grouping="{grouping}", bstep="{bstep}"):
    """Folder of one M3DT build: stage-2 experts, the assembled model, stage-3 routers."""
    return run_dir(n, seed, m3dt_base(E, grouping, bstep))


def groups_json(
    n="{n}", seed="{seed}", grouping="{grouping}", E="{E}", bstep="{bstep}"
):
    return f"{run_dir(n, seed, 'groups')}/{grouping}_E{E}_b{bstep}.json"


def single_dir(task="{task}", width="{width}"):
    return runs_path(f"single/{task}/prompt_dt_w{width}")


def expert_dir(expert="{expert}"):
    """One expert's folder (also the stem of its training job's log and benchmark)."""
    return f"{EXPERT_ROOT}/{expert}"


def expert_json(expert="{expert}"):
    return f"{expert_dir(expert)}/expert.json"


def data_stem(name="{task}"):
    """`<data>/<name>`: a task's data file without `.h5` (the stem of its job's log), or
    another file of the data folder."""
    return f"{DATA_DIR}/{name}"


def data_file(task="{task}"):
    return f"{data_stem(task)}.h5"


def experts_table(ext):
    """The expert data quality table: `experts.csv`, `.png`, `.pdf`."""
    return data_stem(f"experts.{ext}")


def expert_curves(ext="png"):
    """The experts' training curves beside the quality table."""
    return data_stem(f"expert_curves.{ext}")


def wc_m3dt_dir(wc):
    return m3dt_dir(wc.n, wc.seed, wc.E, wc.grouping, wc.bstep)


def m3dt_file(name, wc=None):
    """`<M3DT build>/<name>`: of the build of wildcards `wc`, or the wildcard pattern."""
    return f"{m3dt_dir() if wc is None else wc_m3dt_dir(wc)}/{name}"


def stage2_dir(i="{i}", wc=None):
    """Run folder of stage-2 expert i of an M3DT build."""
    return m3dt_file(f"expert{i}", wc)


def grouped_dir(wc=None):
    """Run folder of a build's stage 2 with all experts in one job (`expert_batching: grouped`)."""
    return m3dt_file("experts_grouped", wc)


def assembled_pt(wc=None):
    """The assembled M3DT (backbone + stage-2 experts + fresh routers) of a build."""
    return m3dt_file("assembled.pt", wc)


def router_dir(router="{router}", wc=None):
    """Run folder of a build's stage 3 (router "dense", "topk" or "dense-unfrozen")."""
    return m3dt_file(f"router_{router}", wc)


def dense_dir(dense="{dense}", width="{width}"):
    """Run folder of a dense model (stage 1 / baselines): `<kind>_w<width>`."""
    return run_dir(name=dense_name(dense, width))


def e2e_name(E="{E}"):
    """Run name of the end-to-end MoE baseline with E experts."""
    return f"e2e_moe_E{E}"


def e2e_dir(E="{E}"):
    return run_dir(name=e2e_name(E))


def conflict_stem(ckpt="{ckpt}"):
    """Stem of the log and benchmark of a run's conflict job at checkpoint `ckpt`."""
    return f"{run_dir()}/conflict_{ckpt}"


def eval_scores(directory=runs_path()):
    """A run's per-task evaluation scores (one row per task)."""
    return f"{directory}/eval/scores.csv"


def eval_summary(directory=runs_path()):
    """A run's evaluation summary (mean over tasks: all, per suite)."""
    return f"{directory}/eval/summary.csv"


def eval_stem(directory=runs_path()):
    """Stem of the log and benchmark of a run's evaluation job."""
    return f"{directory}/evaluate"


def figure_stem(kind="{kind}", fig="{fig}"):
    """`<results>/<kind>/<fig>`: a figure ("figures") or table ("tables") without extension."""
    return f"{RESULTS}/{kind}/{fig}"


def figure_file(kind="{kind}", fig="{fig}", ext="{ext}"):
    return f"{figure_stem(kind, fig)}.{ext}"


def single_task_outputs():
    """What `fidelity` builds: the single-task table and its figure."""
    return [
        figure_file("tables", "single_task", "csv"),
        figure_file("figures", "single_task", "png"),
    ]


def figures_log(name="{kind}_{fig}"):
    """Log of a figure or table job (`<results>/logs/figures/<name>.log`)."""
    return f"{RESULTS}/logs/figures/{name}.log"


def benchmark_list(n="{n}", seed="{seed}"):
    """Name of the task list of the MT-n benchmark of a seed."""
    return f"mt{n}_seed{seed}"


def task_table(name="registry"):
    """A task list CSV: the registry, or a benchmark's (`task_table(benchmark_list(n, seed))`)."""
    return f"{RESULTS}/tasks/{name}.csv"


def task_table_log(name="registry"):
    return f"{RESULTS}/logs/tasks/{name}.log"


def registry_outputs():
    return [task_table()] + [
        task_table(benchmark_list(n, s)) for n in TASK_COUNTS for s in SEEDS
    ]


def stage2_groups(wc):
    """The groups file of a stage-2 run (none for grouping "none": every expert sees all tasks)."""
    if wc.grouping == "none":
        return []
    return groups_json(wc.n, wc.seed, wc.grouping, wc.E, wc.bstep)


def experts_grouped(wc):
    """Whether stage 2 of this build trains all experts in one job (`train.expert_batching:
    grouped`, the GPU user's choice); grouping "none" has no groups file and keeps one job
    per expert."""
    return (
        TRAIN.get("expert_batching", "separate") == "grouped" and wc.grouping != "none"
    )


def assembled_ckpt(wc):
    """Stage 3's input: the assembled M3DT, or the grouped stage 2's checkpoint (already an
    assembled M3DT with fresh routers)."""
    if experts_grouped(wc):
        return ckpt_path(grouped_dir(wc))
    return assembled_pt(wc)


def dense_name(kind, width):
    return f"{kind}_w{width}"


def m3dt_base(E, grouping, bstep=None):
    return f"m3dt_E{E}_{grouping}_b{B_MAIN if bstep is None else bstep}"


def m3dt_name(E, grouping, router="dense", bstep=None):
    return f"{m3dt_base(E, grouping, bstep)}/router_{router}"


def summary(n, seed, name):
    return eval_summary(run_dir(n, seed, name))


def conflict_csv(n="{n}", seed="{seed}", name="{run}", ckpt="final"):
    """A run's conflict CSV at checkpoint `ckpt` (the rule's pattern: `conflict_csv(ckpt="{ckpt}")`)."""
    return f"{run_dir(n, seed, name)}/conflict/{ckpt}.csv"


def top_k(E):
    """The top-k ablation's k for E experts (experiments.top_k, at most E - 1, at least 1)."""
    return max(1, min(int(EXP["top_k"]), int(E) - 1))


def single_tasks():
    """Tasks of the single-task study (single_task.tasks; default: the preset's tasks)."""
    chosen = list(config["single_task"]["tasks"])
    if not chosen:
        return preset_tasks()
    if "all" in chosen:
        return list(m3dt_tasks.MT160)
    return [m3dt_tasks.get(t).name for t in chosen]


def all_data_tasks():
    """Every task whose data some rule of this preset needs."""
    need = set(preset_tasks()) | set(single_tasks())
    need |= {t for n in E_TASK_COUNTS for s in SEEDS for t in benchmark_tasks(n, s)}
    return [t for t in m3dt_tasks.MT160 if t in need]


def train_seed(wc):
    """Seed of a job's training randomness (model init, batches, dropout, conflict
    batches, random grouping): the benchmark seed plus `training_seed_offset`."""
    return int(wc.seed) + TRAIN_SEED_OFFSET


def train_params(steps, **sections):
    """The `train` config section with the rule's own steps and overrides."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in TRAIN.items()}
    loop = dict(d.get("loop", {}))
    loop["steps"] = int(steps)
    d["loop"] = loop
    for name, changes in sections.items():
        d[name] = {**d.get(name, {}), **changes}
    return d


def expert_of(task):
    from m3dt.experts.names import expert_name

    return expert_name(task)


def needed_experts():
    from m3dt.experts.names import expert_names

    return expert_names(all_data_tasks())


def data_files(tasks):
    return [data_file(t) for t in tasks]


def data_outputs():
    out = data_files(all_data_tasks())
    if DATA["source"] == "collect":
        out.append(experts_table("csv"))
    return out


def train_resources(**extra):
    return dict(
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime"],
        gpu=RES["gpu"],
        **extra,
    )


def backbone_ckpt(wc):
    """The stage-1 run's final checkpoint: the declared dependency. Its kept step
    checkpoints are not declared outputs (Snakemake would delete them when an interrupted
    run is resumed), so rules read `backbone_step(wc)` once `final.pt` exists."""
    return ckpt_path(run_dir(wc.n, wc.seed, dense_name("prompt_dt", WIDTH)))


def backbone_step(wc):
    """The stage-1 checkpoint at step `wc.bstep` (written beside final.pt)."""
    return ckpt_path(
        run_dir(wc.n, wc.seed, dense_name("prompt_dt", WIDTH)), step_ckpt(wc.bstep)
    )
