"""CPU speed of a HarmoDT training step against a Prompt-DT step of the same width.

One step is what `loop.train` does: loss (forward), backward, hooks, grad clip, AdamW
step, hooks. Prompt-DT: `train.losses.action_loss`-style loss, no hooks. HarmoDT: `harmodt_loss`
(masked forward with the current task's unpacked mask) and `HarmoHook` (snapshot and
restore of masked-out coordinates). Batches: 16 segments of K = 20 plus a 5-step prompt,
round robin over `--tasks` tasks, so the mask changes at every step as in training. The
mask update (scoring gradient of every task, then the swaps) runs every 500 steps; its
time is printed separately and amortised over the interval.

Printed: best-of-reps seconds per step and the ratio HarmoDT / Prompt-DT (> 1 is slower).
Run: python benchmarks/bench_harmodt.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from m3dt.data.sampler import Batch
from m3dt.models.harmodt import HarmoConfig
from m3dt.models.prompt_dt import PromptDT, PromptDTConfig, Segment, masked_action_loss
from m3dt.train.harmodt import harmodt_parts
from m3dt.config import OptimConfig
from m3dt.train.loop import build_optimizer

BATCH, K, PROMPT = 16, 20, 5


def random_batch(task: int, gen: torch.Generator) -> Batch:
    B = BATCH

    def r(*shape):
        return torch.randn(*shape, generator=gen)

    return Batch(states=r(B, K, 39), actions=torch.tanh(r(B, K, 8)), rtg=r(B, K, 1),
                 timesteps=torch.randint(0, 500, (B, K), generator=gen), attn_mask=torch.ones(B, K),
                 action_mask=torch.ones(B, 8), task_index=torch.full((B,), task, dtype=torch.long),
                 prompt_states=r(B, PROMPT, 39), prompt_actions=torch.tanh(r(B, PROMPT, 8)), prompt_rtg=r(B, PROMPT, 1),
                 prompt_timesteps=torch.randint(0, 500, (B, PROMPT), generator=gen), prompt_mask=torch.ones(B, PROMPT))


def plain_loss(model, batch):
    pred = model(Segment(*batch.inputs), prompt=batch.prompt)
    return masked_action_loss(pred, batch.actions, batch.action_mask, batch.attn_mask)


def stepper(model, loss_fn, hooks, batches):
    """A closure doing one loop step on the next batch (round robin)."""
    opt = build_optimizer(model, model.parameters(), OptimConfig())
    params = list(model.parameters())
    state = {"step": 0}

    def step():
        state["step"] += 1
        s = state["step"]
        batch = batches[s % len(batches)]
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for h in hooks:
            h.after_backward(s, "", batch)
        torch.nn.utils.clip_grad_norm_(params, 0.25)
        opt.step()
        for h in hooks:
            h.after_step(s, "", batch)

    return step


def timeit(fns: dict, reps: int, inner: int) -> dict[str, float]:
    """Best-of-`reps` seconds per call (each rep `inner` calls); the functions take turns."""
    for fn in fns.values():
        for _ in range(2):
            fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return {name: min(ts) for name, ts in times.items()}


def bench(width: int, n_tasks: int, reps: int, inner: int) -> tuple[dict[str, float], float]:
    torch.manual_seed(0)
    cfg = PromptDTConfig(width=width)
    gen = torch.Generator().manual_seed(0)
    batches = [random_batch(i, gen) for i in range(n_tasks)]
    tasks = [f"task{i}" for i in range(n_tasks)]
    plain = PromptDT(cfg).train()
    # mask_interval beyond the timed steps: the update is timed on its own below
    harmo, _, hloss, hooks = harmodt_parts(cfg, HarmoConfig(mask_interval=10**9), tasks, total_steps=1000)
    nofreeze, _, nloss, nhooks = harmodt_parts(cfg, HarmoConfig(mask_interval=10**9, freeze_masked_out=False), tasks,
                                               total_steps=1000)
    for m in (harmo, nofreeze):
        m.train()
    fns = {"prompt_dt": stepper(plain, plain_loss, [], batches),
           "harmodt": stepper(harmo, hloss, hooks, batches),
           "harmodt_nofreeze": stepper(nofreeze, nloss, nhooks, batches)}
    t = timeit(fns, reps, inner)
    hook = hooks[0]
    for i, b in enumerate(batches):
        hook.last_batch[i] = b
    t0 = time.perf_counter()
    hook.update_masks(500)  # change count 100 per task at the schedule's peak
    return t, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="width 128 only, 2 repetitions")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (best of)")
    ap.add_argument("--inner", type=int, default=5, help="steps per repetition")
    ap.add_argument("--tasks", type=int, default=10, help="tasks in the round robin")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2: the project's CPU machines)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    widths = (128,) if args.quick else (128, 256)
    reps = 2 if args.quick else args.reps
    print(f"training step, batch {BATCH} x (K {K} + prompt {PROMPT}), {args.tasks} tasks round robin, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'width':>5} {'model':<17} {'s/step':>8} {'vs prompt_dt':>12}")
    for w in widths:
        t, update = bench(w, args.tasks, reps, args.inner)
        for name, sec in t.items():
            print(f"{w:>5} {name:<17} {sec:>8.4f} {sec / t['prompt_dt']:>12.2f}")
        per_step = update / 500
        print(f"{w:>5} {'mask update':<17} {update:>8.3f} s for {args.tasks} tasks; every 500 steps = "
              f"{per_step:.4f} s/step ({per_step / t['prompt_dt']:.2f} of a Prompt-DT step)")


if __name__ == "__main__":
    main()
