"""CPU speed of one MoE layer's experts, forward + backward, against the authors' way.

The naive reference is the authors' form: a Python list of E separate `nn.Sequential`
experts applied one after another, out += g_e * expert_e(x). It is compared with
`ExpertBank.mix` in its three modes (loop, bmm, einsum) over stacked weights, at width 256
and a batch of 16 segments of (prompt 5 + K 20) timesteps x 3 tokens = 1200 tokens, in
two settings:

- stage 3: experts frozen; gradients w.r.t. the tokens and the gates (the routers train);
- trainable: experts trainable too (end-to-end MoE baseline).

Printed: best-of-reps seconds per forward + backward, and each as a ratio time / naive time
(< 1 is faster than the naive reference), and the batched (bmm) form's speed-up over
the loop. Run: python benchmarks/bench_moe.py [--quick] [--device cuda] [--experts 8 48] [--bf16]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from m3dt.models import ExpertBank

WIDTH, BATCH, TOKENS = 256, 16, (5 + 20) * 3


def naive_experts(bank: ExpertBank) -> nn.ModuleList:
    """The same experts as E separate nn.Sequential modules (weights copied from `bank`)."""
    E, C, H = bank.n_experts, bank.width, bank.hidden
    experts = nn.ModuleList()
    for e in range(E):
        seq = nn.Sequential(nn.Linear(C, H), nn.ReLU(), nn.Linear(H, C), nn.Dropout(bank.dropout.p))
        with torch.no_grad():
            seq[0].weight.copy_(bank.fc_weight[e].T)
            seq[0].bias.copy_(bank.fc_bias[e])
            seq[2].weight.copy_(bank.proj_weight[e].T)
            seq[2].bias.copy_(bank.proj_bias[e])
        experts.append(seq)
    return experts


def naive_mix(experts: nn.ModuleList, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        out = out + gates[..., e : e + 1] * expert(x)
    return out


def timeit(fns: dict, reps: int, device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Best-of-`reps` seconds per call; the functions take turns, so that load from other
    processes on the machine hits them alike (CUDA: synchronised around each call)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}


def bench(n_experts: int, trainable: bool, reps: int, bf16: bool,
          device: torch.device = torch.device("cpu")) -> dict[str, float]:
    torch.manual_seed(0)
    bank = ExpertBank(n_experts, WIDTH, 4 * WIDTH, dropout=0.1).to(device).train()
    naive = naive_experts(bank).to(device).train()
    for p in (*bank.parameters(), *naive.parameters()):
        p.requires_grad_(trainable)
    x = torch.randn(BATCH, TOKENS, WIDTH, device=device, requires_grad=True)  # (B, T, C)
    logits = torch.randn(BATCH, TOKENS, n_experts, device=device, requires_grad=True)  # (B, T, E)

    def step(apply):
        def run():
            x.grad = logits.grad = None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = apply(x, torch.softmax(logits, -1))
            out.float().square().mean().backward()

        return run

    fns = {"naive": step(lambda x, g: naive_mix(naive, x, g))}
    for mode in ("loop", "bmm", "einsum"):
        fns[mode] = step(lambda x, g, mode=mode: bank.mix(x, g, mode))
    return timeit(fns, reps, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="E = 8 only, 2 repetitions")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (best of)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2: the project's CPU machines)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--experts", nargs="+", type=int, default=[8, 16], help="expert counts E")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    experts = (8,) if args.quick else tuple(args.experts)
    reps = 2 if args.quick else args.reps
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"MoE experts fwd+bwd, width {WIDTH}, {BATCH}x{TOKENS} tokens, {where}, "
        f"{'bf16' if args.bf16 else 'fp32'}, torch {torch.__version__}"
    )
    print(f"{'setting':<10} {'E':>3} {'impl':<7} {'s/step':>9} {'vs naive':>9}")
    for trainable in (False, True):
        for E in experts:
            t = bench(E, trainable, reps, args.bf16, device)
            setting = "trainable" if trainable else "stage3"
            for name, sec in t.items():
                print(f"{setting:<10} {E:>3} {name:<7} {sec:>9.4f} {sec / t['naive']:>9.2f}")
            print(f"{setting:<10} {E:>3} batched (bmm) vs loop: {t['loop'] / t['bmm']:.2f}x faster")


if __name__ == "__main__":
    main()
