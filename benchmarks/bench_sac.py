"""SAC expert training: cost per unit of expert quality, against today's SB3 setup.

Every (variant, task, seed) trains one SAC expert for the SAME number of env steps in
its own process (one core each, pinned; `--jobs N` in parallel), then evaluates the
trained policy's deterministic action with the package's own `evaluate_expert`
(a DMC task: `--eval-episodes` episodes; a family: `--eval-goals` goals evenly spaced
over its 40, `--eval-episodes` each). Reported per row: env steps/s of training
(`learn` wall time, JIT compilation included), the normalised score, and against the
`sb3` row of the same task and seed in the same run:

- ``speedup``     = steps/s / steps/s(sb3)
- ``cost_ratio``  = (s / score)(sb3) / (s / score): > 1 means cheaper per unit of quality
  (s = training seconds, score = normalised score clipped at 1)

Variants (``name`` or ``name@cpu`` to force the CPU; otherwise `--device`):

- ``sb3``              today: `build_sac(env, ExpertConfig())` (gSDE, UTD 1, batch 256, 256x256)
- ``sb3-utd0.5``       the same with train_freq 2, gradient_steps 1 (half the updates)
- ``sb3-b512-utd0.5``  batch 512, train_freq 2, gradient_steps 1 (same samples per env step)
- ``sb3-tf8``          train_freq 8, gradient_steps 8 (UTD 1, fewer collect/train round trips)
- ``sb3-fused``        today's setup with the fused Adam kernel (`optimizer_kwargs={"fused": True}`)
- ``sbx``              sbx-rl SAC (JAX; `build_sac` with `library="sbx"`) with today's hyperparameters
                       (UTD 1; sbx's `use_sde` holds one Gaussian noise per collection phase, not gSDE)
- ``sbx-tf8``          sbx, train_freq 8, gradient_steps 8 (one jitted call does 8 updates)
- ``sbx-utd0.5``       sbx, train_freq 2, gradient_steps 1

The profile of today's setup (cProfile of 600 steps of walker-stand on one CPU core):
~88% of the time is `SAC.train`, of it ~34% autograd backward and ~21% `linear`
(the 256x256 matmuls), Adam ~7%, env stepping ~1%: the update's arithmetic dominates,
so fewer updates, a compiled update (sbx/XLA) or a GPU are the levers, not the env.

    python benchmarks/bench_sac.py --steps 30000 --jobs 12 --device auto \\
        --tasks cartpole-swingup walker-stand cheetah-vel --out results/bench_sac
    python benchmarks/bench_sac.py --steps 2000 --learning-starts 500 --jobs 1 \\
        --variants sb3 sbx --tasks cartpole-swingup            # a smoke test

Writes `<out>/bench_sac.csv`, `<out>/bench_sac.md` (the table) and `<out>/jobs/*.json|log`;
with several seeds also `<out>/bench_sac_seeds.csv`: per task and variant pooled over seeds
(score mean ± std, the cost ratio of the means; seeds of two variants are not paired runs).
Rerun with the same `--out` after an interruption: a job whose result file holds the full
budget with the same evaluation settings is reused (printed `reused`), the rest train again
(a SAC job restarts from step 0: its replay buffer is not checkpointed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from m3dt.experts import sac_library  # light: imports neither torch nor JAX

BASELINE = "sb3"
#: single-threaded XLA on the CPU, as the workflow's sbx experts (override with the env var
#: BENCH_SAC_XLA_FLAGS; pinning limits it anyway)
XLA_ONE_THREAD = sac_library.XLA_ONE_THREAD


@dataclass(frozen=True)
class Variant:
    """One way of training the SAC expert: library and the `ExpertConfig` fields it changes."""

    name: str
    library: str  #: "sb3" (stable-baselines3, torch) or "sbx" (sbx-rl, JAX)
    overrides: dict[str, Any] = field(default_factory=dict)  #: ExpertConfig fields
    sb3_kwargs: dict[str, Any] = field(default_factory=dict)  #: extra policy_kwargs for SB3


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("sb3", "sb3"),
    Variant("sb3-utd0.5", "sb3", {"train_freq": 2, "gradient_steps": 1}),
    Variant("sb3-b512-utd0.5", "sb3", {"batch_size": 512, "train_freq": 2, "gradient_steps": 1}),
    Variant("sb3-tf8", "sb3", {"train_freq": 8, "gradient_steps": 8}),
    Variant("sb3-fused", "sb3", sb3_kwargs={"optimizer_kwargs": {"fused": True}}),
    Variant("sbx", "sbx"),
    Variant("sbx-tf8", "sbx", {"train_freq": 8, "gradient_steps": 8}),
    Variant("sbx-utd0.5", "sbx", {"train_freq": 2, "gradient_steps": 1}),
]}


def parse_variant(spec: str, default_device: str) -> tuple[Variant, str]:
    """`name` or `name@cpu|cuda|auto` -> (variant, device)."""
    name, _, device = spec.partition("@")
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r} in {spec!r}; valid: {sorted(VARIANTS)} (optionally @cpu/@cuda)")
    device = device or default_device
    if device not in ("auto", "cpu", "cuda"):
        raise SystemExit(f"{spec!r}: device must be auto, cpu or cuda")
    return VARIANTS[name], device


# --------------------------------------------------------------------------- one job (child process)


def _limit_threads() -> None:
    """One core per job: BLAS, torch and XLA single-threaded; JAX must not grab the GPU's memory."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = "1"
    xla = os.environ.get("BENCH_SAC_XLA_FLAGS", XLA_ONE_THREAD)  # "" where a JAX rejects these flags
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla).strip()
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("MUJOCO_GL", "disable")


def _platform(variant: Variant) -> str:
    if variant.library == "sbx":
        import jax

        return f"jax-{jax.default_backend()}"
    import torch

    return f"torch-{'cuda' if torch.cuda.is_available() else 'cpu'}"


def run_job(variant: Variant, device: str, name: str, seed: int, steps: int, learning_starts: int | None,
            eval_episodes: int, eval_goals: int, deadline: float | None) -> dict[str, Any]:
    """Train `variant` on expert `name` for `steps` env steps (or until `deadline`, a
    time.time()), evaluate it; return the result row."""
    import numpy as np

    from m3dt.experts.curve import curve_tasks
    from m3dt.experts.config import ExpertConfig
    from m3dt.experts.envs import make_training_env
    from m3dt.experts.kinds import bind_expert
    from m3dt.experts.names import expert_tasks
    from m3dt.experts.rollout import evaluate_expert
    from m3dt.experts.sac import build_sac
    from m3dt.seeding import set_seed

    cfg = ExpertConfig(seed=seed, device=device, library=variant.library, **variant.overrides)
    if learning_starts is not None:
        cfg.learning_starts = int(learning_starts)
    import torch

    torch.set_num_threads(1)
    set_seed(cfg.seed)  # as train_expert does
    t0 = time.perf_counter()
    env = make_training_env(name, cfg.seed)
    model = build_sac(env, cfg, steps)  # the workflow's own builder, SB3 or sbx (`library`)
    if variant.sb3_kwargs:  # rebuild the policy with the extra kwargs, same everything else
        from stable_baselines3.common.logger import Logger

        model.policy_kwargs.update(variant.sb3_kwargs)
        model._setup_model()
        model.set_logger(Logger(folder=None, output_formats=[]))
    build_s = time.perf_counter() - t0
    chunk = 1000
    t0 = time.perf_counter()
    truncated = False
    while model.num_timesteps < steps:
        model.learn(total_timesteps=min(chunk, steps - model.num_timesteps), reset_num_timesteps=False,
                    log_interval=10**9, progress_bar=False)
        if deadline is not None and time.time() > deadline and model.num_timesteps < steps:
            truncated = True
            break
        n = int(model.num_timesteps)
        if n % (10 * chunk) == 0 or n >= steps:  # progress in the job's log: rate and ETA
            el = time.perf_counter() - t0
            print(f"{name} seed {seed}: step {n}/{steps} ({100 * n // steps}%) {n / el:.0f} steps/s "
                  f"ETA {(steps - n) * el / max(n, 1) / 60:.1f} min", flush=True)
    train_s = time.perf_counter() - t0
    done = int(model.num_timesteps)
    n_updates = int(getattr(model, "_n_updates", 0))
    env.close()
    t0 = time.perf_counter()
    eval_list = curve_tasks(expert_tasks(name), eval_goals)
    scores = [evaluate_expert(bind_expert(model, t, name), episodes=eval_episodes, seed=seed)["score_mean"]
              for t in eval_list]
    eval_s = time.perf_counter() - t0
    return {"variant": variant.name, "device": device, "platform": _platform(variant), "task": name,
            "seed": seed, "steps": done, "truncated": truncated, "n_updates": n_updates,
            "train_s": round(train_s, 2), "steps_per_s": round(done / max(train_s, 1e-9), 2),
            "score": round(float(np.mean(scores)), 2), "score_std_over_tasks": round(float(np.std(scores)), 2),
            "eval_tasks": len(eval_list), "eval_episodes": eval_episodes, "build_s": round(build_s, 2),
            "eval_s": round(eval_s, 2), "config": {**asdict(variant), "learning_starts": cfg.learning_starts}}


def _worker(args: argparse.Namespace) -> int:
    _limit_threads()
    variant, device = parse_variant(args.worker, "auto")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    row = run_job(variant, device, args.tasks[0], args.seeds[0], args.steps, args.learning_starts,
                  args.eval_episodes, args.eval_goals, args.deadline)
    tmp = Path(args.result).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(args.result)  # a killed job leaves no result, so a rerun redoes it
    return 0


# --------------------------------------------------------------------------- scheduler (parent)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "stable_baselines3", "sbx-rl", "jax", "jaxlib", "flax", "optax", "gymnasium", "mujoco",
                "dm_control", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def reusable(row: dict[str, Any], args: argparse.Namespace) -> bool:
    """Whether a job's result file from an earlier (interrupted) run answers this run's job:
    the full env-step budget (not truncated) and the same evaluation and learning_starts."""
    return (row["steps"] == args.steps and not row["truncated"] and row["eval_episodes"] == args.eval_episodes
            and (args.learning_starts is None or row["config"]["learning_starts"] == args.learning_starts))


def _run_all(args: argparse.Namespace, specs: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    out = Path(args.out)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    cores: queue.Queue[int] = queue.Queue()
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    slots = avail[-args.jobs:] if args.pin else [-1] * args.jobs  # pinned: at most one job per core
    for c in slots:
        cores.put(c)
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    here = Path(__file__).resolve()

    def one(spec: tuple[str, str, int]) -> dict[str, Any] | None:
        vspec, task, seed = spec
        stem = f"{vspec.replace('@', '_')}__{task}__s{seed}"
        result, log = out / "jobs" / f"{stem}.json", out / "jobs" / f"{stem}.log"
        flags = (["-S"] if sys.flags.no_site else []) + (["-s"] if sys.flags.no_user_site else [])
        cmd = [sys.executable, *flags, str(here), "--worker", vspec, "--tasks", task, "--seeds", str(seed), "--steps",
               str(args.steps), "--eval-episodes", str(args.eval_episodes), "--eval-goals", str(args.eval_goals),
               "--result", str(result)]
        if args.learning_starts is not None:
            cmd += ["--learning-starts", str(args.learning_starts)]
        if result.exists():  # resume: a finished job of the same settings is reused, not retrained
            row = json.loads(result.read_text())
            if reusable(row, args):
                print(f"reused {stem}: {row['steps_per_s']:.0f} steps/s, score {row['score']:.1f} ({result})",
                      flush=True)
                return {**row, "reused": True}
        if deadline is not None:
            cmd += ["--deadline", str(deadline)]
        core = cores.get()
        try:
            def pin() -> None:
                if args.nice:
                    os.nice(args.nice)
                if hasattr(os, "sched_setaffinity") and core >= 0:
                    os.sched_setaffinity(0, {core})

            t0 = time.perf_counter()
            with open(log, "w") as f:
                rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, preexec_fn=pin)
        finally:
            cores.put(core)
        if rc != 0 or not result.exists():
            tail = log.read_text()[-1500:] if log.exists() else ""
            print(f"FAILED {stem} (rc {rc}), log {log}:\n{tail}", flush=True)
            return None
        row = json.loads(result.read_text())
        print(f"done {stem}: {row['steps']} steps in {row['train_s']:.0f}s = {row['steps_per_s']:.0f} steps/s, "
              f"score {row['score']:.1f}{' (TRUNCATED by --max-minutes)' if row['truncated'] else ''} "
              f"[{time.perf_counter() - t0:.0f}s wall]", flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [r for r in pool.map(one, specs) if r is not None]
    return rows


def add_ratios(frame, base_device: str = "auto"):
    """speedup and cost_ratio of each row against the `sb3` row (on `base_device`) of the
    same task and seed."""
    import numpy as np

    base = frame[(frame["variant"] == BASELINE) & (frame["device"] == base_device)].set_index(["task", "seed"])
    frame = frame.copy()
    frame["s_per_score"] = frame["train_s"] / frame["score"].clip(lower=1.0)
    for col in ("speedup", "cost_ratio", "score_delta"):
        frame[col] = np.nan
    for i, r in frame.iterrows():
        key = (r["task"], r["seed"])
        if key not in base.index:
            continue
        b = base.loc[key]
        frame.at[i, "speedup"] = r["steps_per_s"] / b["steps_per_s"]
        frame.at[i, "cost_ratio"] = (b["train_s"] / max(b["score"], 1.0)) / (r["train_s"] / max(r["score"], 1.0))
        frame.at[i, "score_delta"] = r["score"] - b["score"]
    return frame


def _gmean(x) -> float:
    """Geometric mean of the finite positive values (NaN if none)."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else float("nan")


def summary(frame):
    """Per variant (and device) over tasks and seeds: geometric-mean speedup and cost ratio."""
    g = frame.groupby(["variant", "device", "platform"], sort=False)
    return g.agg(rows=("task", "count"), steps_per_s=("steps_per_s", "mean"), score=("score", "mean"),
                 speedup=("speedup", _gmean), cost_ratio=("cost_ratio", _gmean)).reset_index()


def over_seeds(frame, base_device: str = "auto"):
    """Per task and variant, pooled over seeds: score mean and std (ddof 1), mean steps/s,
    and `cost_ratio` of the means, (mean s / mean score)(sb3) / (mean s / mean score): the
    seeds of two variants are not paired runs (different update schedules diverge at once),
    so pooling is the fairer comparison than the per-seed ratios' mean. Then one row per
    variant: geometric means over tasks of the pooled speed-up and cost ratio."""
    g = frame.groupby(["task", "variant", "device", "platform"], sort=False)
    per = g.agg(seeds=("seed", "nunique"), score=("score", "mean"), score_std=("score", "std"),
                steps_per_s=("steps_per_s", "mean"), train_s=("train_s", "mean")).reset_index()
    per["s_per_score"] = per["train_s"] / per["score"].clip(lower=1.0)
    base = per[(per["variant"] == BASELINE) & (per["device"] == base_device)].set_index("task")
    per["speedup"] = per["steps_per_s"] / per["task"].map(base["steps_per_s"])
    per["cost_ratio"] = per["task"].map(base["s_per_score"]) / per["s_per_score"]
    per = per.drop(columns=["train_s", "s_per_score"])

    overall = per.groupby(["variant", "device", "platform"], sort=False).agg(
        tasks=("task", "nunique"), score=("score", "mean"), speedup=("speedup", _gmean),
        cost_ratio=("cost_ratio", _gmean)).reset_index()
    return per, overall


def markdown(frame, float_fmt: str = "{:.3g}") -> str:
    """A pipe table (no `tabulate` needed)."""
    cols = list(frame.columns)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else float_fmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


TABLE_COLUMNS = ["task", "seed", "variant", "device", "platform", "steps", "train_s", "steps_per_s", "score",
                 "speedup", "score_delta", "cost_ratio", "truncated"]


def report(rows: list[dict[str, Any]], out: Path, header: str, base_device: str = "auto") -> str:
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame = add_ratios(frame.drop(columns=["config"]), base_device)
    frame = frame.sort_values(["task", "seed", "variant", "device"], kind="stable")
    frame.to_csv(out / "bench_sac.csv", index=False)
    text = (f"{header}\n\n" + markdown(frame[TABLE_COLUMNS]) + "\n\nPer variant (geometric means over tasks):\n\n"
            + markdown(summary(frame)) + "\n")
    if frame["seed"].nunique() > 1:
        per, overall = over_seeds(frame, base_device)
        per.to_csv(out / "bench_sac_seeds.csv", index=False)
        text += ("\nPooled over seeds (score mean ± std over seeds; cost ratio of the means):\n\n"
                 + markdown(per) + "\n\nPer variant, pooled over seeds (geometric means over tasks):\n\n"
                 + markdown(overall) + "\n")
    (out / "bench_sac.md").write_text(text)
    return text


def default_variants(device: str) -> list[str]:
    """The comparison that fits the machine: CPU variants always; with CUDA, also the GPU ones."""
    names = ["sb3", "sb3-utd0.5", "sbx", "sbx-tf8"]
    cuda = False
    if device in ("auto", "cuda"):
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
    if not cuda:
        return names
    return ["sb3", "sb3@cpu", "sb3-utd0.5@cpu", "sbx", "sbx@cpu", "sbx-tf8"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--variants", nargs="*", help=f"variant[@device] (default: {default_variants('cpu')} on CPU)")
    p.add_argument("--tasks", nargs="+", default=["cartpole-swingup", "walker-stand", "cheetah-vel"],
                   help="DMC tasks and/or families (ant-dir, cheetah-vel)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=30_000, help="env steps of every job (equal budgets)")
    p.add_argument("--learning-starts", type=int, help="override ExpertConfig.learning_starts (all variants)")
    p.add_argument("--eval-episodes", type=int, default=5, help="per task (per goal for a family)")
    p.add_argument("--eval-goals", type=int, default=4, help="goals of a family evaluated (evenly spaced)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device of unsuffixed variants")
    p.add_argument("--jobs", type=int, default=1, help="jobs in parallel (one pinned core each)")
    p.add_argument("--nice", type=int, default=0, help="niceness added to every job")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin jobs to cores")
    p.add_argument("--max-minutes", type=float, help="wall-time guard: jobs still training then stop early "
                                                     "and are evaluated (marked truncated)")
    p.add_argument("--out", default="results/bench_sac")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    specs_v = args.variants or default_variants(args.device)
    parsed = [parse_variant(s, args.device) for s in specs_v]
    if not any(v.name == BASELINE and d == args.device for v, d in parsed):
        raise SystemExit(f"the variants must include {BASELINE!r} (today's setup, the baseline of every ratio)")
    from m3dt.experts.names import expert_name

    tasks_ = [expert_name(t) for t in args.tasks]  # validates names (KeyError names the task)
    vspecs = [f"{v.name}@{d}" for v, d in parsed]
    # slowest first (SB3 at UTD 1 on the CPU), so the last wave is short
    order = sorted(vspecs, key=lambda s: (not s.startswith("sb3@") and not s.startswith("sb3-fused"),
                                          not s.endswith("@cpu")))
    specs = [(v, t, s) for v in order for s in args.seeds for t in tasks_]
    vers = _versions()
    header = (f"bench_sac: {len(specs)} jobs, {args.steps} env steps each, --jobs {args.jobs}, "
              f"learning_starts {args.learning_starts or 'default'}, eval {args.eval_episodes} episodes "
              f"(families: {args.eval_goals} goals); " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    print(header, flush=True)
    out = Path(args.out)
    t0 = time.perf_counter()
    rows = _run_all(args, specs)
    if not rows:
        print("no job finished", file=sys.stderr)
        return 1
    n_reused = sum(bool(r.pop("reused", False)) for r in rows)
    text = report(rows, out, header + f"; wall {time.perf_counter() - t0:.0f}s"
                  + (f" ({n_reused} of {len(rows)} jobs reused from an earlier run)" if n_reused else ""), args.device)
    print(text)
    print(f"-> {out / 'bench_sac.csv'}, {out / 'bench_sac.md'}")
    return 0 if len(rows) == len(specs) else 2


if __name__ == "__main__":
    sys.exit(main())
