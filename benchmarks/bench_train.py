"""Training-step throughput against the same run's matmul FLOP/s (issue 16).

One training step as `m3dt.train.loop.train` runs it (forward under optional bf16 autocast,
masked action MSE, backward, grad-norm clip, AdamW step) on a synthetic batch of the
authors' shape (16 segments of K = 20 timesteps, prompt 5), for

- stage 1: Prompt-DT at each `--widths` (all parameters train);
- stage 2: M3DT with one expert at `--moe-width` (routing "single", experts train);
- stage 3: M3DT with E = `--experts` experts at `--moe-width` (dense routers train,
  backbone and experts frozen);
- `--grouped E`: stage 2 for E experts in one step (routing "grouped", a batch of 16 per
  expert, per-expert clipping) against E separate one-expert steps.

Per case and dtype (fp32; bf16 autocast): seconds per step (best of `--reps`), FLOPs per
step (forward + backward, `torch.utils.flop_counter`; the optimiser's elementwise work is
not counted), achieved FLOP/s, and two ratios: `vs_mm` = achieved / the matmul FLOP/s
measured in this run at the model's FFN shape ((16 * 75 tokens, w) x (w, 4w), same dtype,
timed in turns with the step so that load from other processes hits both alike);
`vs_peak` = achieved / a large square matmul's FLOP/s (the machine's peak). For stage 3,
the router's share of the step's FLOPs and of its time (the routers' forward + backward on
the same tokens, timed alone).

    python benchmarks/bench_train.py [--device cpu|cuda] [--dtypes fp32 bf16] [--quick]
        [--widths 64 128 256] [--moe-width W] [--experts 2 4 8 48] [--grouped E ...]
        [--threads N] [--reps 3] [--csv out.csv] [--profile CASE]

Prints the CPU (or GPU) name and whether bf16 is native. `--profile stage3-E4` prints a
`torch.profiler` table of that case's step (fp32 and bf16), by op.
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from m3dt.models import M3DT, MoEConfig, PromptDT, PromptDTConfig, masked_action_loss
from m3dt.models.prompt_dt import Segment
from m3dt.config import OptimConfig
from m3dt.runtime import use_bf16
from m3dt.train.loop import build_optimizer

BATCH, K, KP = 16, 20, 5


@dataclass(frozen=True)
class Case:
    """One model and routing to time a training step of."""

    name: str
    width: int
    experts: int = 0  # 0: Prompt-DT (stage 1)
    stage: int = 1
    batch: int = BATCH


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synthetic_batch(B: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def seg(T: int) -> tuple:
        return (torch.randn(B, T, 39, generator=g), torch.rand(B, T, 8, generator=g) * 2 - 1,
                torch.rand(B, T, 1, generator=g), torch.randint(0, 500, (B, T), generator=g),
                torch.ones(B, T))

    inputs, prompt = seg(K), seg(KP)
    b = {"inputs": inputs, "prompt": prompt, "target": torch.rand(B, K, 8, generator=g) * 2 - 1,
         "action_mask": torch.ones(8)}
    return {k: (tuple(z.to(device) for z in v) if isinstance(v, tuple) else v.to(device)) for k, v in b.items()}


def build(case: Case, device: torch.device) -> tuple[torch.nn.Module, list[torch.nn.Parameter], Callable]:
    """(model, trainable parameters, loss_fn(model, batch)) of a case."""
    torch.manual_seed(0)
    n_head = 8 if case.width % 8 == 0 else 1
    cfg = PromptDTConfig(width=case.width, n_head=n_head, context_len=K, prompt_len=KP)
    if case.stage == 1:
        model: torch.nn.Module = PromptDT(cfg)
        trainable = list(model.parameters())
    else:
        model = M3DT(cfg, MoEConfig(n_experts=case.experts))
        if case.stage == 2:
            trainable = model.set_trainable(backbone=False, experts=True, routers=False)
            model.set_routing("grouped" if case.experts > 1 else "single", None if case.experts > 1 else 0)
        else:
            trainable = model.set_trainable(backbone=False, experts=False, routers=True)
            model.set_routing("router")
    model.to(device).train()

    def loss_fn(m: torch.nn.Module, b: dict) -> torch.Tensor:
        pred = m(Segment(*b["inputs"]), prompt=b["prompt"])  # (B, K, 8)
        mask = b["inputs"][4]
        if case.stage == 2 and case.experts > 1:
            return M3DT.grouped_loss(pred, b["target"], b["action_mask"], mask, case.experts)
        return masked_action_loss(pred, b["target"], b["action_mask"], mask)

    return model, trainable, loss_fn


def make_step(case: Case, device: torch.device, bf16: bool) -> tuple[Callable[[], None], torch.nn.Module]:
    model, trainable, loss_fn = build(case, device)
    opt = build_optimizer(model, trainable, OptimConfig(warmup_steps=0))
    batch = synthetic_batch(case.batch, device)
    grouped = case.stage == 2 and case.experts > 1

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grouped:
            model.clip_grad_norm_per_expert(0.25)
        else:
            torch.nn.utils.clip_grad_norm_(trainable, 0.25)
        opt.step()

    return step, model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn: Callable[[], None], reps: int, device: torch.device, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def count_flops(fn: Callable[[], None]) -> tuple[int, dict[str, int]]:
    """Total FLOPs of one call and FLOPs per module name (the counter's hierarchy)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    per_module = {name: sum(ops.values()) for name, ops in fc.get_flop_counts().items()}
    return fc.get_total_flops(), per_module


def best_times(fns: dict[str, Callable[[], None]], reps: int, device: torch.device) -> dict[str, float]:
    """Best-of-`reps` seconds per call; the functions take turns, so that load from other
    processes on a shared machine hits them alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def matmul_fn(M: int, Kd: int, N: int, dtype: torch.dtype, device: torch.device) -> tuple[Callable[[], None], float]:
    """A call of repeated (M, Kd) x (Kd, N) matmuls (about 0.2 GFLOP on CPU, 200 on GPU) and its FLOPs."""
    a = torch.randn(M, Kd, device=device, dtype=dtype)
    b = torch.randn(Kd, N, device=device, dtype=dtype)
    target = 2e8 if device.type == "cpu" else 2e11
    inner = min(200, max(1, int(target // (2 * M * Kd * N))))

    def run() -> None:
        for _ in range(inner):
            torch.mm(a, b)

    return run, 2.0 * M * Kd * N * inner


def matmul_flops(M: int, Kd: int, N: int, dtype: torch.dtype, device: torch.device, reps: int) -> float:
    """FLOP/s of one (M, Kd) x (Kd, N) matmul (best of reps)."""
    run, flops = matmul_fn(M, Kd, N, dtype, device)
    return flops / best_time(run, reps, device)


def router_share(case: Case, device: torch.device, bf16: bool, reps: int, per_module: dict[str, int],
                 total: int, t_step: float) -> dict[str, float]:
    """Stage 3: the routers' share of the step's FLOPs (counter hierarchy) and of its time
    (every layer's router forward + backward on the step's tokens, timed alone)."""
    router = sum(v for k, v in per_module.items() if re.search(r"moes\.\d+\.router$", k))
    moes = sum(v for k, v in per_module.items() if re.search(r"moes\.\d+$", k))
    model, _, _ = build(case, device)
    tokens = case.batch * 3 * (K + KP)
    y = torch.randn(tokens, case.width, device=device)

    def routers() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            g = sum(moe.router(y).float().square().mean() for moe in model.moes)
        g.backward()

    t_router = best_time(routers, reps, device)
    return {"router_flop_%": 100.0 * router / total, "experts_flop_%": 100.0 * (moes - router) / total,
            "backbone_flop_%": 100.0 * (total - moes) / total, "router_time_%": 100.0 * t_router / t_step}


def bench_case(case: Case, device: torch.device, dtype: str, reps: int, peak: float) -> dict:
    """One case: the step and the matmul at its FFN shape timed in turns (same load)."""
    bf16 = dtype == "bf16"
    step, _ = make_step(case, device, bf16)
    step()  # warm-up (optimizer state allocated)
    total, per_module = count_flops(step)
    mm, mm_flops = matmul_fn(BATCH * 3 * (K + KP), case.width, 4 * case.width,
                             torch.bfloat16 if bf16 else torch.float32, device)
    times = best_times({"step": step, "mm": mm}, reps, device)
    t, mm_rate = times["step"], mm_flops / times["mm"]
    achieved = total / t
    row = {"case": case.name, "dtype": dtype, "width": case.width, "E": case.experts, "s/step": t,
           "GFLOP/step": total / 1e9, "GFLOP/s": achieved / 1e9, "mm_GFLOP/s": mm_rate / 1e9,
           "vs_mm": achieved / mm_rate, "vs_peak": achieved / peak}
    if case.stage == 3:
        row.update(router_share(case, device, bf16, reps, per_module, total, t))
    return row


def grouped_vs_separate(E: int, width: int, device: torch.device, dtype: str, reps: int) -> dict:
    """Stage 2: one step of E experts at once (routing "grouped", batch 16 per expert)
    against E separate one-expert steps (batch 16 each)."""
    bf16 = dtype == "bf16"
    grouped, _ = make_step(Case(f"grouped-E{E}", width, E, 2, BATCH * E), device, bf16)
    single, _ = make_step(Case("stage2", width, 1, 2), device, bf16)
    t_g = best_time(grouped, reps, device)
    t_1 = best_time(single, reps, device)
    return {"case": f"stage2 grouped E={E}", "dtype": dtype, "width": width, "E": E, "s/step": t_g,
            "separate_s": E * t_1, "grouped_vs_separate": E * t_1 / t_g}


def profile_case(case: Case, device: torch.device, dtype: str) -> None:
    from torch.profiler import ProfilerActivity, profile

    step, _ = make_step(case, device, dtype == "bf16")
    step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nprofile {case.name} {dtype} (3 steps)\n" + prof.key_averages().table(sort_by=key, row_limit=18))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--widths", nargs="+", type=int, default=[64, 128, 256])
    ap.add_argument("--moe-width", type=int, help="width of stages 2 and 3 (default 128 on CPU, 256 on CUDA)")
    ap.add_argument("--experts", nargs="+", type=int, default=[2, 4, 8, 48])
    ap.add_argument("--grouped", nargs="*", type=int, default=[], help="also time stage 2 with E experts grouped "
                    "vs E separate steps, for each E given")
    ap.add_argument("--stages", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="widths 32/64, E = 2/4, width 64, 1 rep (smoke test)")
    ap.add_argument("--csv", help="write the table here")
    ap.add_argument("--profile", help="case name to profile (e.g. stage1-w128, stage3-E4)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    moe_w = args.moe_width or (256 if device.type == "cuda" else 128)
    widths, experts, reps = args.widths, args.experts, args.reps
    if args.quick:
        widths, experts, moe_w, reps = [32, 64], [2, 4], 64, 1
    native = use_bf16("auto", device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"device: {name}; bf16 native: {native}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {BATCH} x (K {K} + prompt {KP}) timesteps")

    cases = []
    if 1 in args.stages:
        cases += [Case(f"stage1-w{w}", w) for w in widths]
    if 2 in args.stages:
        cases.append(Case("stage2", moe_w, 1, 2))
    if 3 in args.stages:
        cases += [Case(f"stage3-E{E}", moe_w, E, 3) for E in experts]
    if args.profile:
        case = next((c for c in cases if c.name == args.profile), None)
        assert case is not None, f"no case {args.profile!r}; cases: {[c.name for c in cases]}"
        for dtype in args.dtypes:
            profile_case(case, device, dtype)
        return

    peak: dict[str, float] = {}
    big = 8192 if device.type == "cuda" else (512 if args.quick else 2048)
    for dtype in args.dtypes:
        peak[dtype] = matmul_flops(big, big, big, torch.bfloat16 if dtype == "bf16" else torch.float32, device, reps)
        print(f"matmul {dtype} peak ({big}^3): {peak[dtype] / 1e9:.0f} GFLOP/s")

    rows = [bench_case(c, device, dtype, reps, peak[dtype]) for c in cases for dtype in args.dtypes]
    rows += [grouped_vs_separate(E, moe_w, device, dtype, reps) for E in args.grouped for dtype in args.dtypes]
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if len(args.dtypes) == 2:
        per = df[df["case"].isin([c.name for c in cases])].pivot(index="case", columns="dtype", values="s/step")
        print("\nbf16 speed-up per step (fp32 s / bf16 s): "
              + ", ".join(f"{c} {per.loc[c, 'fp32'] / per.loc[c, 'bf16']:.2f}x" for c in [c.name for c in cases]))
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
