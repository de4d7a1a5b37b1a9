"""Project a preset's cost on this machine before running it: measure, then replay the DAG.

Measured here, in this run, one torch thread (as the workflow's jobs):
- SAC (stable-baselines3, the preset's `data.experts` net/batch) env steps/s with updates;
- SAC policy inference and random-action simulator steps/s per suite (collection);
- a training step of every (model, width, experts) the preset trains, fp32 or bf16 as the
  preset's `train.loop.bf16` resolves here;
- an evaluation forward at the batch each task evaluates with (`evaluation.bf16`);
- a k-means grouping of the preset's size.
Each job of `snakemake all -n --forceall --configfile F` then gets a cost (steps x step
time + a fixed start-up cost), and `m3dt.budget.simulate` replays the DAG on N cores.

This is an estimate: it prices jobs, it does not run them. Check it against a real run
with `python -m m3dt budget` (the mini preset: 0.72 core-hours and 23.5 min measured on
2 cores; run this script on mini.yaml to compare). Run:

    python benchmarks/estimate_preset.py [--configfile config.yaml] [--cores 2 8]
        [--targets fig2 fig3 ...] [--slow-gflops 32]

`--targets` prices each target's own DAG (from an empty results folder) and ends with one
table; `--slow-gflops G` prices the slow day: fp32 everywhere (no native bf16) and every
torch time scaled by this machine's one-thread fp32 matmul GFLOP/s (measured in the same
run, so a loaded machine cancels out to first order) over G (2026-12-04, AVX2 only: 32).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from m3dt import budget, tasks
from m3dt.data.collect import CollectConfig
from m3dt.experts.bundle import bundled_dir
from m3dt.experts.config import ExpertConfig
from m3dt.experts.envs import make_training_env
from m3dt.experts.names import expert_kind, expert_tasks
from m3dt.experts.sac import build_sac
from m3dt.models import M3DT, PromptDT, PromptDTConfig
from m3dt.models.prompt_dt import Segment
from m3dt.models.moe import MoEConfig
from m3dt.train.cli import merge
from m3dt.runtime import use_bf16

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = {"train": 8.0, "other": 4.0}  # python + torch import + data load, per job (mini: ~7 s)
HARMODT_FACTOR = 1.05  # HarmoDT step / Prompt-DT step at the same width (benchmarks/bench_harmodt.py)
CPU = torch.device("cpu")


def load_config(preset: str | None) -> dict:
    """config.yaml deep-updated with the preset file, as Snakemake merges them."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    return merge(cfg, yaml.safe_load(Path(preset).read_text())) if preset else cfg


def best_of(fn: Callable[[], None], reps: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


class Meter:
    """Measures and caches the unit costs of one preset."""

    def __init__(self, cfg: dict, slow_gflops: float | None = None):
        self.cfg = cfg
        m = cfg["train"]["model"]
        self.model_kw = {k: m[k] for k in ("n_layer", "n_head", "context_len", "prompt_len") if k in m}
        self.width = int(m.get("width", 128))
        self.bf16_train = use_bf16(cfg["train"].get("loop", {}).get("bf16", False), CPU)
        self.bf16_eval = use_bf16(cfg["evaluation"].get("bf16", False), CPU)
        # Torch compute scale: 1 (this machine as it is), or this machine's one-thread fp32
        # matmul rate over `slow_gflops` (price a slower CPU without native bf16: fp32 only)
        self.torch_scale = 1.0
        if slow_gflops:
            self.bf16_train = self.bf16_eval = False
            self.torch_scale = max(1.0, fp32_matmul_gflops(self.width) / slow_gflops)
        self.batch = int(cfg["train"].get("sampler", {}).get("batch_size", 16))
        self.experts = ExpertConfig.from_dict(cfg["data"].get("experts", {}))
        self.measured: dict[tuple, float] = {}  # train step seconds by (kind, width, E)

    def _pdt_cfg(self, width: int, use_prompt: bool = True) -> PromptDTConfig:
        n_head = self.model_kw.get("n_head", 8)
        while width % n_head:
            n_head //= 2
        return PromptDTConfig(width=width, **{**self.model_kw, "n_head": n_head}, use_prompt=use_prompt)

    def _inputs(self, B: int):
        c = self._pdt_cfg(self.width)
        K, Kp = c.context_len, c.prompt_len
        g = torch.Generator().manual_seed(0)
        seg = (torch.randn(B, K, 39, generator=g), torch.rand(B, K, 8, generator=g) * 2 - 1,
               torch.randn(B, K, 1, generator=g), torch.randint(0, 500, (B, K), generator=g), torch.ones(B, K))
        prompt = (torch.randn(B, Kp, 39, generator=g), torch.rand(B, Kp, 8, generator=g),
                  torch.randn(B, Kp, 1, generator=g), torch.randint(0, 500, (B, Kp), generator=g), torch.ones(B, Kp))
        return seg, prompt

    def _model(self, kind: str, width: int, E: int):
        """(model, trainable parameters, forward kwargs) of a training rule's model.

        kind: prompt_dt | mtdt (dense); expert (stage 2: a one-expert M3DT whose expert
        trains); router (stage 3: routers train); e2e (end-to-end MoE: everything trains).
        """
        torch.manual_seed(0)
        if kind in ("prompt_dt", "mtdt"):
            model = PromptDT(self._pdt_cfg(width, use_prompt=kind == "prompt_dt"))
            return model, list(model.parameters()), {}
        model = M3DT(self._pdt_cfg(width), MoEConfig(n_experts=1 if kind == "expert" else E, router="dense"))
        is_trained = {"expert": lambda n: n.startswith("moes") and "router" not in n,
                      "router": lambda n: "router" in n, "e2e": lambda n: True}[kind]
        train = []
        for name, p in model.named_parameters():
            p.requires_grad_(is_trained(name))
            if p.requires_grad:
                train.append(p)
        routing = {"routing": "single", "expert": 0} if kind == "expert" else {"routing": "router"}
        return model, train, routing

    @lru_cache(maxsize=None)
    def train_step(self, kind: str, width: int, E: int = 0) -> float:
        model, params, kw = self._model("prompt_dt" if kind == "harmodt" else kind, width, E)
        model.train()
        opt = torch.optim.AdamW(params, lr=1e-4)
        (s, a, r, t, m), prompt = self._inputs(self.batch)
        prompt = None if kind == "mtdt" else prompt

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_train):
                pred = model(Segment(s, a, r, t, m), prompt, **kw)
            loss = (pred.float() - a).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        seconds = best_of(step) * (HARMODT_FACTOR if kind == "harmodt" else 1.0) * self.torch_scale
        self.measured[(kind, width, E)] = seconds
        return seconds

    @lru_cache(maxsize=None)
    def eval_forward(self, kind: str, width: int, E: int, B: int) -> float:
        model, _, kw = self._model("prompt_dt" if kind == "harmodt" else kind, width, E)
        model.eval()
        (s, a, r, t, m), prompt = self._inputs(B)
        prompt = None if kind == "mtdt" else prompt

        def fwd():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_eval):
                model(Segment(s, a, r, t, m), prompt, **kw)

        return best_of(fwd) * self.torch_scale

    @lru_cache(maxsize=None)
    def env_step(self, task: str) -> float:
        """Seconds per random-action step of the padded env of `task`'s suite."""
        env = tasks.make_env(task, seed=0)
        rng = np.random.default_rng(0)
        env.reset(seed=0)
        n, t0 = 300, time.perf_counter()
        for _ in range(n):
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 8))
            if term or trunc:
                env.reset()
        return (time.perf_counter() - t0) / n

    def sac(self, expert: str = "cheetah-run") -> tuple[float, float]:
        """(seconds per SAC env step with its update, seconds per policy action) of the SAC
        expert `expert`'s settings (a family's `family_overrides`), measured on cheetah-run."""
        own = self.experts.for_expert(expert)
        return self._sac(own.library, int(own.train_freq))

    @lru_cache(maxsize=None)
    def _sac(self, library: str, train_freq: int) -> tuple[float, float]:
        cfg = ExpertConfig.from_dict({**self.cfg["data"].get("experts", {}), "learning_starts": 100,
                                      "library": library, "train_freq": train_freq, "family_overrides": {}})
        env = make_training_env("cheetah-run", 0)
        model = build_sac(env, cfg, 2000, device="cpu")
        model.learn(200)
        n = 600
        t0 = time.perf_counter()
        model.learn(n, reset_num_timesteps=False)
        per_step = (time.perf_counter() - t0) / n * self.torch_scale  # SAC is update-bound
        obs = env.observation_space.sample()
        per_act = best_of(lambda: [model.predict(obs, deterministic=True) for _ in range(100)]) / 100
        return per_step, per_act

    def n_params(self, width: int) -> int:
        """Parameters of the Prompt-DT backbone: the length of a task's gradient feature."""
        return sum(p.numel() for p in PromptDT(self._pdt_cfg(width)).parameters())

    @lru_cache(maxsize=None)
    def kmeans(self, n_tasks: int, dim: int, restarts: int, repeats: int, reduce: str) -> float:
        """Seconds of `gradient_groups` (features, k-means restarts x repeats) on random gradients."""
        from m3dt.analysis.grouping import gradient_groups

        rng = np.random.default_rng(0)
        grads = {f"t{i}": torch.from_numpy(rng.normal(size=dim).astype(np.float32)) for i in range(n_tasks)}
        E = max(2, n_tasks // 5)
        t = []
        for r in (1, 2):
            t0 = time.perf_counter()
            gradient_groups(grads, E, seed=0, n_init=restarts, n_repeats=r, reduce=reduce)
            t.append(time.perf_counter() - t0)
        per_repeat = max(0.0, t[1] - t[0])
        return t[0] + (repeats - 1) * per_repeat


def fp32_matmul_gflops(width: int) -> float:
    """One-thread fp32 GFLOP/s of this machine at the FFN's shape (1200 x C . C x 4C)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1200, width, generator=g), torch.randn(width, 4 * width, generator=g)
    seconds = best_of(lambda: [a @ b for _ in range(20)], reps=5) / 20
    return 2 * 1200 * width * 4 * width / seconds / 1e9


def run_model(run: str, cfg: dict) -> tuple[str, int, int, list[str]]:
    """(model kind, width, E, tasks) of an evaluated run path such as mt20/s0/prompt_dt_w64."""
    parts = run.split("/")
    if parts[0] == "single":
        return "prompt_dt", int(parts[2].rsplit("_w", 1)[1]), 0, [parts[1]]
    n, seed = int(parts[0][2:]), int(parts[1][1:])
    names = list(tasks.benchmark(n, seed))
    width = int(cfg["train"]["model"].get("width", 128))
    name = parts[2]
    if name.startswith("m3dt_E"):
        return "router", width, int(name.split("_")[1][1:]), names
    if name.startswith("e2e_moe_E"):
        return "e2e", width, int(name.rsplit("E", 1)[1]), names
    kind, w = name.rsplit("_w", 1)
    return kind, int(w), 0, names


def job_seconds(job: budget.Job, cfg: dict, meter: Meter) -> float:
    w, steps = job.wildcards, cfg["steps"]
    width = int(cfg["train"]["model"].get("width", 128))
    rule = job.rule
    if rule == "train_expert":
        name = w["expert"]
        if expert_kind(name) == "scripted":
            return STARTUP_S["other"] + 5.0
        if meter.experts.source == "bundled" and bundled_dir(name, meter.experts.bundle_dir) is not None:
            return STARTUP_S["other"] + 5.0  # copied from the package, then evaluated
        per_step, per_act = meter.sac(name)
        ev = meter.experts.eval_episodes * sum(tasks.get(t).episode_length * (meter.env_step(t) + per_act)
                                               for t in expert_tasks(name))
        return STARTUP_S["train"] + meter.experts.sac_steps(name) * per_step + ev
    if rule == "collect":
        spec = tasks.get(w["task"])
        col = cfg["data"].get("collect", {})
        per_act = meter.sac()[1] if spec.suite != "metaworld" else 5e-5
        length = min(spec.episode_length, col.get("max_steps") or spec.episode_length)
        eps = CollectConfig.from_dict({"episodes": 200, **col}).episodes_for(spec.name) + int(col.get("n_prompt", 2))
        return STARTUP_S["other"] + eps * length * (meter.env_step(spec.name) + per_act)
    if rule == "train_dense":
        return STARTUP_S["train"] + steps["dense"] * meter.train_step(w["dense"], int(w["width"]))
    if rule == "train_single_task":
        return STARTUP_S["train"] + steps["single_task"] * meter.train_step("prompt_dt", int(w["width"]))
    if rule == "train_expert_stage2":
        return STARTUP_S["train"] + steps["expert"] * meter.train_step("expert", width, 1)
    if rule == "train_experts_grouped":  # all E experts of a build in one job (priced as E one-expert steps)
        return STARTUP_S["train"] + steps["expert"] * int(w["E"]) * meter.train_step("expert", width, 1)
    if rule == "train_router":
        return STARTUP_S["train"] + steps["router"] * meter.train_step("router", width, int(w["E"]))
    if rule == "train_e2e_moe":
        return STARTUP_S["train"] + steps["e2e_moe"] * meter.train_step("e2e", width, int(w["E"]))
    if rule == "evaluate":
        kind, wd, E, names = run_model(w["run"], cfg)
        ev = cfg["evaluation"]
        total = STARTUP_S["other"]
        for t in names:
            spec = tasks.get(t)
            B = int(ev.get("episodes") or spec.eval_episodes)
            T = min(spec.episode_length, ev.get("max_steps") or spec.episode_length)
            total += T * (meter.eval_forward(kind, wd, E, B) + B * meter.env_step(t))
        return total
    if rule == "conflict":
        n, run = int(w["n"]), w["run"]
        if run.startswith("prompt_dt"):
            kind, E, width = "prompt_dt", 0, int(run.split("_w")[1].split("/")[0])
        else:
            kind, E = ("e2e" if run.startswith("e2e") else "router"), int(run.split("E")[1].split("_")[0])
        return STARTUP_S["other"] + n * cfg["conflict"]["n_batches"] * meter.train_step(kind, width, E)
    if rule == "group_tasks":
        if w["grouping"] != "gradient":
            return STARTUP_S["other"]
        c, n = cfg["conflict"], int(w["n"])
        return (STARTUP_S["other"] + n * c["n_batches"] * meter.train_step("prompt_dt", width)
                + meter.kmeans(n, meter.n_params(width), c["kmeans_restarts"], c["kmeans_repeats"],
                               c.get("kmeans_reduce", "none")))
    return STARTUP_S["other"]  # tables, figures, assemble, registry: seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configfile", help="preset file (default: config.yaml alone, the quick preset)")
    p.add_argument("--cores", type=int, nargs="+", default=[2, 8])
    p.add_argument("--slow-gflops", type=float, default=None,
                   help="price a slower CPU without native bf16: fp32 everywhere, torch time scaled by this "
                        "machine's one-thread fp32 matmul GFLOP/s over this value (slow day 2026-12-04: 32)")
    p.add_argument("--targets", nargs="+", default=["all"],
                   help="Snakemake targets, each priced on its own from an empty results folder (default: all)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.configfile)
    meter = Meter(cfg, args.slow_gflops)
    if args.slow_gflops:
        print(f"pricing a CPU with {args.slow_gflops:g} fp32 GFLOP/s (one thread) and no native bf16: "
              f"torch times x {meter.torch_scale:.2f}")
    rows = []
    for target in args.targets:
        rows.append(project(target, args.configfile, cfg, meter, args.cores))
    if len(rows) > 1:
        print("\nper target (each from an empty results folder):")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def project(target: str, configfile: str | None, cfg: dict, meter: Meter, cores: list[int]) -> dict:
    """Price every job of `target`, print the per-rule table and the replayed wall times."""
    jobs = budget.parse_plan(budget.dry_run(target, configfile, None))
    print(f"\n== {target}: preset {cfg['preset']}, {len(jobs)} jobs; bf16 train {meter.bf16_train}, "
          f"eval {meter.bf16_eval}")
    t0 = time.perf_counter()
    for job in jobs:
        job.seconds = job_seconds(job, cfg, meter)
    sac_step, sac_act = meter.sac()
    print(f"measured in {time.perf_counter() - t0:.0f} s: SAC {1 / sac_step:.0f} env steps/s with updates; "
          + ", ".join(f"{k[0]} w{k[1]}{f' E{k[2]}' if k[2] else ''} {v:.3f} s"
                      for k, v in sorted(meter.measured.items())))
    table = budget.summarize(jobs)
    print(table.drop(columns=["timed"]).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    total = table.iloc[-1]
    print(f"\nprojected sum of job times: {total['core_h']:.1f} core-hours")
    row = {"target": target, "jobs": len(jobs), "core_h": float(total["core_h"])}
    for n in cores:
        s = budget.simulate(jobs, n)
        row[f"wall_h_{n}_cores"] = s / 3600
        print(f"projected wall time on {n:>3} cores: {s / 3600:.2f} h")
    return row


if __name__ == "__main__":
    main()
