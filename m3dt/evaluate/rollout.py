"""Batched policy rollouts: every evaluation episode of a task in one batch of environments.

`evaluate_task(policy, task, episodes, seed)` resets `episodes` environments of the task
(environment i with `seed + i`) and steps them in lock-step, so the model makes ONE
forward pass per time step for the whole batch. The model's input follows the training
data conventions (`m3dt.data.sampler`):

- states: (obs - mean) / std with the task's training statistics (`policy.stats`, real
  dims), zero-padded to 39 dims;
- actions: the model's past predicted actions, all 8 dims (`action_history="full"`, the
  authors' `actions[-1] = action`, default), or the task's real dims with 0 beyond
  `action_dim` ("masked", as the training data); the environment gets the real dims only.
  The current step holds a placeholder of zeros (as the authors' `get_action`);
- rtg: starts at the registry's `rtg_target` and decreases by each reward received, both
  divided by the suite's `rtg_scale` (R_{t+1} = R_t - r_t / scale, the Prompt-DT and
  M3DT authors' evaluation);
- timesteps: the step within the episode, clipped to episode_length - 1 (and to the model's
  `max_ep_len` - 1);
- prompt: `policy.prompt(task, prompt_episode)` (None for MTDT): by default ("best") the
  higher-return prompt episode, as the authors' `get_prompt(index=-1)`; batch 1 for
  Prompt-DT, M3DT and HarmoDT (Prompt-DT's `embed` broadcasts it), a (b, ...) copy for
  other models.

History buffers (B, T, ...) are preallocated once per task; each step feeds only the last
K = `context_len` steps (`get_action` left-pads shorter histories). An episode that ends
(terminated, truncated, or the task's episode length) leaves the batch: later forward
passes run only on the rows still going, and its results are final.

`evaluate(policy_or_checkpoint, tasks, ...)` runs many tasks, in worker processes when
`workers > 1` (each loads the checkpoint once, single-threaded torch; spawn context);
the results do not depend on `workers`: every task's rollout depends only on the policy,
the task, the episode count, the seed and the prompt episode.

Per-episode rows (`EPISODE_COLUMNS`): task, suite, seed (the evaluation seed passed in),
episode (0..n-1; a Meta-World episode i runs on goal variation i, see `episode_goal`),
env_seed (= seed + episode, the seed of that environment's reset),
return (raw), length, success (Meta-World: 1.0 if `info["success"]` was true at any step,
else 0.0; NaN for the other suites, which have no success notion), normalized_score
(`TaskSpec.normalized_score`), terminated (the environment terminated before its time
limit, e.g. the ant fell).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from m3dt import tasks as registry
from m3dt.models import M3DT, PromptDT, inference
from m3dt.policy import BEST, Policy, load_policy
from m3dt.runtime import fmt_eta, use_bf16

log = logging.getLogger("m3dt.evaluate")

EPISODE_COLUMNS = ("task", "suite", "seed", "episode", "env_seed", "return", "length", "success",
                   "normalized_score", "terminated")

OBS, ACT = registry.OBS_PAD, registry.ACT_PAD
ACTION_HISTORIES = ("full", "masked")  # actions fed back: all 8 predicted dims (authors) | real dims, 0 beyond


def _model_cfg(model: torch.nn.Module, key: str) -> int | None:
    value = getattr(getattr(model, "cfg", None), key, None)
    return int(value) if value is not None else None


def rollout(policy: Policy, task: str, envs: Sequence[Any], seeds: Sequence[int], *,
            prompt_episode: int | str = BEST, rtg_target: float | None = None, max_steps: int | None = None,
            action_history: str = "full", full_forward: bool = False) -> list[dict[str, Any]]:
    """Roll out one episode in each of `envs` (all of `task`) as one batch; one dict per env.

    `envs` are padded environments (`m3dt.tasks.make_env`) or anything with the same
    `reset(seed=) -> (obs39, info)` / `step(action8) -> (obs39, r, terminated, truncated,
    info)` interface; env i is reset with `seeds[i]`. Episodes last at most
    `max_steps` (default: the task's episode length). `full_forward`: run the whole model at
    every step (`get_action`, the reference form) instead of `m3dt.models.inference`.
    """
    spec = registry.get(task)
    name = spec.name
    assert action_history in ACTION_HISTORIES, f"action_history {action_history!r} not one of {ACTION_HISTORIES}"
    policy.select_task(name)
    model = policy.model
    B = len(envs)
    assert B == len(seeds) and B > 0, f"{name}: {B} envs for {len(seeds)} seeds"
    T = spec.episode_length if max_steps is None else min(int(max_steps), spec.episode_length)
    assert T >= 1, f"max_steps must be >= 1, got {max_steps}"
    K = _model_cfg(model, "context_len") or T
    t_cap = spec.episode_length - 1
    max_ep_len = _model_cfg(model, "max_ep_len")
    if max_ep_len is not None:
        t_cap = min(t_cap, max_ep_len - 1)
    od, ad, scale = spec.obs_dim, spec.action_dim, float(spec.rtg_scale)
    mean, std = (np.asarray(x, dtype=np.float32).reshape(-1) for x in policy.stats[name])
    assert mean.shape == (od,) and std.shape == (od,), (
        f"{name}: stats of shape {mean.shape}/{std.shape}, expected ({od},)")
    dev = policy.device
    on_cpu = dev.type == "cpu"

    # History buffers, shared between numpy (writes) and torch (model input, zero-copy).
    S = np.zeros((B, T, OBS), np.float32)  # normalised states, zero padded
    A = np.zeros((B, T, ACT), np.float32)  # predicted actions fed back (full, or zero beyond action_dim)
    R = np.zeros((B, T, 1), np.float32)  # return-to-go / scale
    S_t, A_t, R_t = torch.from_numpy(S), torch.from_numpy(A), torch.from_numpy(R)
    ts_t = torch.from_numpy(np.minimum(np.arange(T, dtype=np.int64), t_cap))  # (T,)

    prompt = policy.prompt(name, prompt_episode)  # batch 1 on the model's device, or None
    # Prompt-DT / M3DT embed a batch-1 prompt once and broadcast it (also keeps each row's
    # result independent of the batch size: a stride-0 expanded prompt takes another matmul
    # path, whose rounding differs); other models get a materialised (b, ...) copy.
    broadcasts = isinstance(model, (PromptDT, M3DT)) or isinstance(getattr(model, "dt", None), PromptDT)  # HarmoDT
    rtg_run = np.full(B, (spec.rtg_target if rtg_target is None else float(rtg_target)) / scale)  # float64
    for i, (env, s) in enumerate(zip(envs, seeds)):
        obs, _ = env.reset(seed=int(s))
        S[i, 0, :od] = (np.asarray(obs, np.float32)[:od] - mean) / std
    R[:, 0, 0] = rtg_run

    ret = np.zeros(B)
    length = np.zeros(B, np.int64)
    success = np.zeros(B, bool)
    terminated = np.zeros(B, bool)
    active = np.arange(B)
    act8 = np.zeros(ACT, np.float64)  # the padded action sent to the env (zeros beyond action_dim)
    # Models with `decoder_parts` (Prompt-DT, MTDT, M3DT) compute only what the action uses
    # (`m3dt.models.inference`: the prompt's keys/values once per episode batch, the last
    # block and head on one token); the others, and `full_forward`, run `get_action`.
    cached = hasattr(model, "decoder_parts") and not full_forward
    kv_cache = inference.prompt_cache(model, prompt) if cached else None
    prompt_cache: dict[int, Any] = {}
    for t in range(T):
        lo = max(0, t + 1 - K)
        b = len(active)
        if b == B:  # views, no copy
            x = (S_t[:, lo:t + 1], A_t[:, lo:t + 1], R_t[:, lo:t + 1])
        else:  # gather the rows still running (b, <=K, ...)
            rows = torch.from_numpy(active)
            x = (S_t[rows, lo:t + 1], A_t[rows, lo:t + 1], R_t[rows, lo:t + 1])
        steps = ts_t[lo:t + 1].expand(b, -1)
        if not on_cpu:
            x = tuple(z.to(dev, non_blocking=True) for z in x)
            steps = steps.to(dev)
        if cached:
            action = inference.act(model, x[0], x[1], x[2], steps, kv_cache)  # (b, 8)
        else:
            if prompt is not None and b not in prompt_cache:
                prompt_cache[b] = prompt if broadcasts else tuple(p.expand(b, *p.shape[1:]).contiguous()
                                                                  for p in prompt)
            action = model.get_action(x[0], x[1], x[2], steps, prompt_cache.get(b))  # (b, 8)
        action = action.float().cpu().numpy()  # (b, 8)
        if action_history == "full":
            A[active, t] = action
        else:
            A[active, t, :ad] = action[:, :ad]
        done = np.zeros(b, bool)
        for j, i in enumerate(active):
            act8[:ad] = action[j, :ad]
            obs, r, term, trunc, info = envs[i].step(act8)
            ret[i] += float(r)
            length[i] = t + 1
            success[i] |= bool(info.get("success", False))
            if term or trunc or t + 1 >= T:
                done[j] = True
                terminated[i] = bool(term)
            else:
                rtg_run[i] -= float(r) / scale
                S[i, t + 1, :od] = (np.asarray(obs, np.float32)[:od] - mean) / std
                R[i, t + 1, 0] = rtg_run[i]
        if done.any():
            active = active[~done]
            if not len(active):
                break

    metaworld = spec.suite == "metaworld"
    return [{"return": float(ret[i]), "length": int(length[i]),
             "success": float(success[i]) if metaworld else math.nan,
             "normalized_score": spec.normalized_score(float(ret[i]), bool(success[i]) if metaworld else None),
             "terminated": bool(terminated[i])} for i in range(B)]


def episode_goal(spec: registry.TaskSpec, episode: int) -> int | None:
    """The goal variation evaluation episode `episode` is pinned to: goal i for episode i
    (mod the task's variations) where the task has goal variations (Meta-World, as the
    authors: episode i on `MT1(env).train_tasks[i]`), None for tasks with one goal."""
    return episode % spec.goal_variations if spec.goal_variations else None


def evaluate_task(policy: Policy, task: str, episodes: int | None = None, seed: int = 0, *,
                  prompt_episode: int | str = BEST, rtg_target: float | None = None, max_steps: int | None = None,
                  envs: Sequence[Any] | None = None, bf16: bool | str = False,
                  action_history: str = "full", full_forward: bool = False) -> pd.DataFrame:
    """Evaluate `policy` on `task`: all episodes as one batch; one row per episode.

    episodes: default the registry's `eval_episodes` (10 Meta-World / DMC, 1 ant-dir /
    cheetah-vel). Environment i is reset with seed `seed + i`; a Meta-World environment i
    is pinned to goal variation i (`episode_goal`), so the episodes cover goals 0..9. `rtg_target` overrides the
    registry's target; `max_steps` cuts episodes short (benchmarks, tests); `envs` reuses
    already built environments (one per episode) instead of `make_env`. `bf16` (True,
    False or "auto", see `m3dt.runtime.use_bf16`): the model's forward under bf16
    autocast (faster where bf16 is native; scores differ from fp32 only by rounding).
    `prompt_episode`: "best" (the higher-return prompt episode, the authors) or an index;
    `action_history`: "full" (authors) or "masked", see the module docstring.
    `full_forward`: the reference forward at every step (see `rollout`; benchmarks, tests).
    Columns: `EPISODE_COLUMNS` (see the module docstring).
    """
    spec = registry.get(task)
    policy.check_task(spec.name)
    n = spec.eval_episodes if episodes is None else int(episodes)
    if n < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if envs is None:
        envs = [registry.make_env(spec.name, goal_index=episode_goal(spec, i)) for i in range(n)]
    elif len(envs) != n:
        raise ValueError(f"{spec.name}: {len(envs)} envs given for {n} episodes")
    seeds = [seed + i for i in range(n)]
    model = policy.model
    was_training = model.training
    model.eval()
    try:
        dev = policy.device
        cuda = [dev.index or 0] if dev.type == "cuda" else []
        amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16(bf16, dev))
        with torch.inference_mode(), torch.random.fork_rng(devices=cuda), amp:
            torch.manual_seed(seed)  # only stochastic models (top-k eval noise) draw from it
            results = rollout(policy, spec.name, envs, seeds, prompt_episode=prompt_episode,
                              rtg_target=rtg_target, max_steps=max_steps, action_history=action_history,
                              full_forward=full_forward)
    finally:
        model.train(was_training)
    rows = [{"task": spec.name, "suite": spec.suite, "seed": int(seed), "episode": i, "env_seed": seeds[i], **r}
            for i, r in enumerate(results)]
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))


# ----------------------------------------------------------------------------- many tasks

_WORKER_POLICY: Policy | None = None
_WORKER_ERROR: BaseException | None = None


def _init_worker(source: Policy | str, device: str, threads: int) -> None:
    """Load the policy once per worker. A failure is kept and raised by every job, so that
    the parent gets the real error (a raising initializer would only break the pool)."""
    global _WORKER_POLICY, _WORKER_ERROR
    try:
        torch.set_num_threads(threads)
        if isinstance(source, Policy):
            source.model.to(device)
            _WORKER_POLICY = source
        else:
            _WORKER_POLICY = load_policy(source, device)
    except Exception as e:  # noqa: BLE001 - re-raised in _run_job
        _WORKER_ERROR = e


def _run_job(job: tuple[str, int | None, int, int | str, int | None, bool | str, str]
             ) -> tuple[str, pd.DataFrame, float]:
    task, episodes, seed, prompt_episode, max_steps, bf16, action_history = job
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    assert _WORKER_POLICY is not None, "worker not initialised"
    t0 = time.perf_counter()
    df = evaluate_task(_WORKER_POLICY, task, episodes, seed, prompt_episode=prompt_episode, max_steps=max_steps,
                       bf16=bf16, action_history=action_history)
    return task, df, time.perf_counter() - t0


def evaluate(policy_or_checkpoint: Policy | str | Path, tasks: Iterable[str] | str | None = None,
             episodes: int | None = None, seed: int = 0, workers: int = 1, device: str = "cpu", *,
             prompt_episode: int | str = BEST, max_steps: int | None = None, bf16: bool | str = False,
             action_history: str = "full") -> pd.DataFrame:
    """Evaluate a policy (or a checkpoint file) on many tasks; per-episode rows in task order.

    tasks: registry names (Meta-World v3 names are accepted); default all the policy's
    tasks. episodes: per task, default the registry's `eval_episodes`. seed: environment i
    of every task is reset with `seed + i`. workers > 1: tasks run in that many spawned
    processes (each loads the checkpoint once, or unpickles the given CPU policy, and sets
    `torch.set_num_threads(1)`); longest tasks are scheduled first, results are identical to
    workers = 1. `bf16`, `prompt_episode`, `action_history`: see `evaluate_task`. Progress: one
    INFO line per task on the `m3dt.evaluate` logger.
    """
    given: Policy | None = policy_or_checkpoint if isinstance(policy_or_checkpoint, Policy) else None
    policy = given
    workers = max(1, int(workers))
    if tasks is None:
        if policy is None:
            policy = load_policy(policy_or_checkpoint, device if workers == 1 else "cpu")
        names = tuple(policy.tasks)
    else:
        names = registry.resolve([tasks] if isinstance(tasks, str) else tasks)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tasks in {names}")
    if episodes is not None and int(episodes) < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not names:
        return pd.DataFrame(columns=list(EPISODE_COLUMNS))
    specs = [registry.get(n) for n in names]
    n_eps = {s.name: s.eval_episodes if episodes is None else int(episodes) for s in specs}
    cost = {s.name: n_eps[s.name] * min(s.episode_length, max_steps or s.episode_length) for s in specs}
    total_cost, total_eps = sum(cost.values()), sum(n_eps.values())
    workers = min(workers, len(names))
    if action_history not in ACTION_HISTORIES:
        raise ValueError(f"action_history must be one of {ACTION_HISTORIES}, got {action_history!r}")
    jobs = [(n, episodes, seed, prompt_episode, max_steps, bf16, action_history)
            for n in sorted(names, key=lambda n: -cost[n])]

    results: dict[str, pd.DataFrame] = {}
    t_start = time.perf_counter()
    done_cost = done_eps = 0

    def report(task: str, df: pd.DataFrame, elapsed: float) -> None:
        nonlocal done_cost, done_eps
        results[task] = df
        done_cost += cost[task]
        done_eps += len(df)
        wall = time.perf_counter() - t_start
        eta = wall * (total_cost - done_cost) / done_cost if done_cost else math.inf
        log.info("[%d/%d] %s: %d episodes in %.1f s (%.2f episodes/s, %.0f steps/s), score %.1f; "
                 "all: %d/%d episodes, %.2f episodes/s, ETA %s", len(results), len(names), task, len(df),
                 elapsed, len(df) / max(elapsed, 1e-9), df["length"].sum() / max(elapsed, 1e-9),
                 df["normalized_score"].mean(), done_eps, total_eps, done_eps / max(wall, 1e-9), fmt_eta(eta))

    if workers == 1:
        if policy is None:
            policy = load_policy(policy_or_checkpoint, device)
        for job in jobs:
            t0 = time.perf_counter()
            df = evaluate_task(policy, job[0], episodes, seed, prompt_episode=prompt_episode, max_steps=max_steps,
                               bf16=bf16, action_history=action_history)
            report(job[0], df, time.perf_counter() - t0)
    else:
        if given is not None:
            if given.device.type != "cpu":
                raise ValueError("workers > 1 with a GPU policy object: pass the checkpoint path instead")
            source: Policy | str = given
        else:
            source = str(policy_or_checkpoint)
        log.info("evaluating %d tasks (%d episodes) in %d worker processes", len(names), total_eps, workers)
        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(source, str(device), 1))
        try:
            futures = [ex.submit(_run_job, job) for job in jobs]  # queued in this order: longest first
            for fut in as_completed(futures):
                report(*fut.result())
        finally:  # on an error: drop the queued tasks, wait for the running ones
            ex.shutdown(wait=True, cancel_futures=True)
    out = pd.concat([results[n] for n in names], ignore_index=True)
    log.info("evaluated %d tasks, %d episodes in %.1f s", len(names), len(out), time.perf_counter() - t_start)
    return out
