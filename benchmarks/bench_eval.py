"""Evaluation speed: batched rollouts vs the bare simulators and vs a naive per-episode loop.

For a few tasks of different suites, with a small untrained Prompt-DT (width 128 = the
paper's 1.47M model by default; 6 layers, 8 heads, K = 20, prompt 5), in the same run:

- eval:  `evaluate_task` on a batch of E environments (one forward pass per step);
- sim:   the same E environments, same seeds, stepped with uniform random actions for the
         same number of steps per environment (an env that ends early is reset): the cost
         of the simulators alone. ratio = eval steps/s / sim steps/s; model overhead = the
         share of evaluation time not spent in the simulator, 1 - t_sim / t_eval;
- naive: the authors' style of evaluation, one episode at a time, histories grown with
         torch.cat every step, the model fed the whole history (it keeps the last K);
         its returns are checked to equal the batched ones;
- seq:   `evaluate_task` one episode at a time (batch 1; same code, no batching);
- bf16:  `evaluate_task(..., bf16=True)` on the same batch: bf16 autocast of the model
         (`evaluation.bf16`); bf16_vs_fp32 = its steps/s / the fp32 eval's steps/s;
- full:  `evaluate_task(..., full_forward=True)`: the whole model at every step
         (`get_action`) instead of the forward that computes only what the action uses
         (`m3dt.models.inference`); cached_vs_full = eval steps/s / full steps/s (the
         returns are checked to agree).

`--experts E` benchmarks an untrained M3DT with E experts (dense router) instead of Prompt-DT.

E = 10 for every task by default (the registry uses 1 for ant-dir and cheetah-vel), so that
batching shows on every suite. torch runs single-threaded as in evaluation workers.

    python benchmarks/bench_eval.py [--tasks reach-v2 ...] [--width 128] [--episodes 10]
                                    [--max-steps N] [--threads 1] [--skip-naive] [--experts E]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from m3dt import tasks
from m3dt.evaluate import evaluate_task
from m3dt.models import M3DT, MoEConfig, PromptDT, PromptDTConfig
from m3dt.checkpoint import model_spec
from m3dt.policy import Policy

DEFAULT_TASKS = ["reach-v2", "cartpole-balance", "cheetah-vel-0", "ant-dir-0"]


def make_policy(names: list[str], width: int, seed: int = 0, experts: int = 0) -> Policy:
    torch.manual_seed(seed)
    n_head = 8 if width % 8 == 0 else 1
    cfg = PromptDTConfig(width=width, n_head=n_head)
    moe = MoEConfig(n_experts=experts) if experts else None
    model = (M3DT(cfg, moe) if moe else PromptDT(cfg)).eval()
    rng = np.random.default_rng(seed)
    stats, prompts = {}, {}
    for n in names:
        spec = tasks.get(n)
        stats[n] = (np.zeros(spec.obs_dim, np.float32), np.ones(spec.obs_dim, np.float32))
        L = cfg.prompt_len
        prompts[n] = [{"states": rng.normal(size=(1, L, 39)).astype(np.float32),
                       "actions": rng.uniform(-1, 1, (1, L, 8)).astype(np.float32),
                       "rtg": np.full((1, L, 1), 0.1, np.float32),
                       "timesteps": np.arange(spec.episode_length - L, spec.episode_length)[None],
                       "mask": np.ones((1, L), np.float32)}]
    return Policy(model, model_spec("m3dt" if moe else "prompt_dt", cfg, moe), names, stats, prompts)


def sim_only(envs, seeds, lengths, seed: int) -> float:
    """Seconds to step `envs` with random actions, lengths[i] steps each, in lock-step."""
    rng = np.random.default_rng(seed)
    for env, s in zip(envs, seeds):
        env.reset(seed=s)
    T = max(lengths)
    actions = rng.uniform(-1, 1, (T, len(envs), 8))
    t0 = time.perf_counter()
    for t in range(T):
        for i, env in enumerate(envs):
            if t < lengths[i]:
                _, _, term, trunc, _ = env.step(actions[t, i])
                if term or trunc:
                    env.reset()
    return time.perf_counter() - t0


def naive_episode(policy: Policy, task: str, env, seed: int, max_steps: int | None) -> tuple[float, int]:
    """The authors' loop: one env, histories grown with torch.cat each step."""
    spec = tasks.get(task)
    model, od, ad = policy.model, spec.obs_dim, spec.action_dim
    mean, std = (torch.as_tensor(x) for x in policy.stats[task])
    prompt = policy.prompt(task, 0)
    T = min(spec.episode_length, max_steps or spec.episode_length)

    def norm(o):
        x = torch.zeros(1, 39)
        x[0, :od] = (torch.as_tensor(o[:od]) - mean) / std
        return x

    obs, _ = env.reset(seed=seed)
    states = norm(obs)
    actions = torch.zeros(0, 8)
    left = spec.rtg_target / spec.rtg_scale
    rtg = torch.tensor([[left]])
    timesteps = torch.zeros(1, dtype=torch.long)
    ret = 0.0
    with torch.inference_mode():
        for t in range(T):
            actions = torch.cat([actions, torch.zeros(1, 8)])
            a = model.get_action(states[None], actions[None], rtg[None], timesteps[None], prompt)[0]
            a[ad:] = 0
            actions[-1] = a
            obs, r, term, trunc, _ = env.step(a.numpy().astype(np.float64))
            ret += r
            if term or trunc:
                break
            states = torch.cat([states, norm(obs)])
            left -= r / spec.rtg_scale  # float64, as evaluate_task (float32 sums drift ~1e-6)
            rtg = torch.cat([rtg, torch.tensor([[left]])])
            timesteps = torch.cat([timesteps, torch.tensor([t + 1])])
    return ret, t + 1


def bench_task(policy: Policy, task: str, E: int, seed: int, max_steps: int | None, naive: bool) -> dict:
    t0 = time.perf_counter()
    envs = [tasks.make_env(task) for _ in range(E)]
    build_s = time.perf_counter() - t0
    seeds = [seed + i for i in range(E)]
    evaluate_task(policy, task, E, seed, envs=envs, max_steps=3)  # warm-up
    t0 = time.perf_counter()
    df = evaluate_task(policy, task, E, seed, envs=envs, max_steps=max_steps)
    t_eval = time.perf_counter() - t0
    lengths = df["length"].tolist()
    steps = int(sum(lengths))
    t_sim = sim_only(envs, seeds, lengths, seed)
    row = {"task": task, "suite": tasks.get(task).suite, "E": E, "steps": steps,
           "build_s": build_s, "eval_sps": steps / t_eval, "sim_sps": steps / t_sim}
    row["ratio"] = row["eval_sps"] / row["sim_sps"]
    row["model_overhead_%"] = 100.0 * (1.0 - t_sim / t_eval)
    evaluate_task(policy, task, E, seed, envs=envs, max_steps=3, bf16=True)  # warm-up
    t0 = time.perf_counter()
    df16 = evaluate_task(policy, task, E, seed, envs=envs, max_steps=max_steps, bf16=True)
    row["bf16_sps"] = int(df16["length"].sum()) / (time.perf_counter() - t0)
    row["bf16_vs_fp32"] = row["bf16_sps"] / row["eval_sps"]
    t0 = time.perf_counter()
    dff = evaluate_task(policy, task, E, seed, envs=envs, max_steps=max_steps, full_forward=True)
    row["full_sps"] = steps / (time.perf_counter() - t0)
    row["cached_vs_full"] = row["eval_sps"] / row["full_sps"]
    assert dff["length"].tolist() == lengths, f"{task}: full-forward lengths differ"
    if naive:
        t0 = time.perf_counter()
        res = [naive_episode(policy, task, envs[i], seeds[i], max_steps) for i in range(E)]
        t_naive = time.perf_counter() - t0
        assert [n for _, n in res] == lengths, f"{task}: naive lengths {[n for _, n in res]} != {lengths}"
        np.testing.assert_allclose([r for r, _ in res], df["return"], rtol=1e-5, atol=1e-5,
                                   err_msg=f"{task}: naive returns differ from batched")
        t0 = time.perf_counter()
        for i in range(E):
            evaluate_task(policy, task, 1, seed + i, envs=[envs[i]], max_steps=max_steps)
        t_seq = time.perf_counter() - t0
        row.update({"naive_sps": steps / t_naive, "seq_sps": steps / t_seq,
                    "batched_vs_naive": t_naive / t_eval, "batched_vs_seq": t_seq / t_eval})
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--episodes", type=int, default=10, help="episodes (= batch size) per task")
    p.add_argument("--max-steps", type=int, help="cut episodes (quick runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--experts", type=int, default=0, help="M3DT with this many experts (0: Prompt-DT)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = list(tasks.resolve(args.tasks))
    policy = make_policy(names, args.width, args.seed, args.experts)
    n_params = sum(q.numel() for q in policy.model.parameters())
    kind = f"M3DT E={args.experts}" if args.experts else "Prompt-DT"
    print(f"{kind} width {args.width} ({n_params / 1e6:.2f}M params), {args.episodes} episodes per task, "
          f"torch threads {args.threads}")
    rows = [bench_task(policy, n, args.episodes, args.seed, args.max_steps, not args.skip_naive) for n in names]
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    tot = {"steps": df["steps"].sum(), "t_eval": (df["steps"] / df["eval_sps"]).sum(),
           "t_sim": (df["steps"] / df["sim_sps"]).sum()}
    print(f"\nall tasks: eval {tot['steps'] / tot['t_eval']:.0f} steps/s, sim {tot['steps'] / tot['t_sim']:.0f} "
          f"steps/s, ratio {tot['t_sim'] / tot['t_eval']:.3f}, model overhead "
          f"{100 * (1 - tot['t_sim'] / tot['t_eval']):.1f}%")
    t_bf16 = (df["steps"] / df["bf16_sps"]).sum()  # bf16 episodes may end at other steps: time at its rate
    print(f"bf16 autocast: {tot['steps'] / t_bf16:.0f} steps/s, {tot['t_eval'] / t_bf16:.2f}x the fp32 evaluation, "
          f"model overhead {100 * (1 - tot['t_sim'] / t_bf16):.1f}%")
    t_full = (df["steps"] / df["full_sps"]).sum()
    print(f"evaluation forward (prompt cache, last token) vs the full forward: {t_full / tot['t_eval']:.2f}x "
          f"({tot['steps'] / t_full:.0f} steps/s full)")
    if not args.skip_naive:
        t_naive = (df["steps"] / df["naive_sps"]).sum()
        t_seq = (df["steps"] / df["seq_sps"]).sum()
        print(f"batched vs naive per-episode loop: {t_naive / tot['t_eval']:.2f}x; "
              f"vs our loop at batch 1: {t_seq / tot['t_eval']:.2f}x (returns identical)")


if __name__ == "__main__":
    main()
