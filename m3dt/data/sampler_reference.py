"""The readable reference for `m3dt.data.sampler.MultiTaskSampler`: one sample at a time.

This is the authors' `get_batch` / `get_prompt` written out per sample with plain Python
loops (slice the episode, sum the return-to-go backwards, pad on the left, normalise). It
consumes the random numbers exactly as the vectorised sampler does (one `rng.random((4, B))`
per batch: task, episode, start and prompt uniforms), so for the same data, config and seed
both give identical batches. It is used by `tests/test_sampler.py` (the vectorised sampler
must match it) and by `benchmarks/bench_sampler.py` (the speed baseline). Do not optimise it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from m3dt import tasks
from m3dt.data.sampler import Batch, SamplerConfig, as_task_data
from m3dt.data.store import STD_FLOOR, TaskData

OBS, ACT = tasks.OBS_PAD, tasks.ACT_PAD


def discount_cumsum(rewards: np.ndarray) -> list[float]:
    """Return-to-go of every step of an episode: float64 sums from the end."""
    out = [0.0] * len(rewards)
    acc = 0.0
    for t in reversed(range(len(rewards))):
        acc = float(rewards[t]) + acc
        out[t] = acc
    return out


def top_episodes_naive(lengths: list[int], returns: list[float], pct_traj: float) -> list[int]:
    """The authors' loop: best episode first, add the next best while steps <= budget."""
    budget = max(int(pct_traj * sum(lengths)), 1)
    order = sorted(range(len(lengths)), key=lambda i: (-returns[i], i))
    chosen = [order[0]]
    total = lengths[order[0]]
    k = 1
    while k < len(order) and total + lengths[order[k]] <= budget:
        total += lengths[order[k]]
        chosen.append(order[k])
        k += 1
    return sorted(chosen)


class NaiveSampler:
    """Same constructor, `sample`, `sample_task` and batches as `MultiTaskSampler`."""

    def __init__(self, task_data: Mapping[str, TaskData | Mapping[str, np.ndarray]],
                 cfg: SamplerConfig | None = None) -> None:
        self.cfg = cfg or SamplerConfig()
        self.tasks: list[str] = []
        self.per_task: list[dict[str, Any]] = []
        for name, d in task_data.items():
            d = as_task_data(name, d).load()
            episodes = [d.episode(i) for i in range(d.n_episodes)]
            train = [episodes[i] for i in d.train_episodes]
            chosen = top_episodes_naive([e["length"] for e in train], [e["return"] for e in train], self.cfg.pct_traj)
            prompts = [episodes[i] for i in d.prompt_episodes]
            if self.cfg.prompt_stats == "prompt":
                x = np.concatenate([p["observations"] for p in prompts]).astype(np.float64)
                p_mean = x.mean(0).astype(np.float32)
                p_std = np.maximum(x.std(0), STD_FLOOR).astype(np.float32)
            else:
                p_mean, p_std = d.state_mean, d.state_std
            self.tasks.append(d.task)
            self.per_task.append({
                "spec": d.spec,
                "episodes": [train[i] for i in chosen],
                "prompts": prompts,
                "prompts_by_return": sorted(range(len(prompts)), key=lambda k: prompts[k]["return"]),
                "mean": d.state_mean, "std": d.state_std, "prompt_mean": p_mean, "prompt_std": p_std,
            })
        self.rng = np.random.default_rng(self.cfg.seed)
        self.cursor = 0

    def sample_task(self, task: str, batch_size: int | None = None) -> Batch:
        B = batch_size or self.cfg.batch_size
        u = self.rng.random((4, B))
        i = self.tasks.index(tasks.canonical_name(task))
        return self._batch([i] * B, u)

    def sample(self, task: str | None = None) -> Batch:
        if task is not None:
            return self.sample_task(task)
        B, n = self.cfg.batch_size, len(self.tasks)
        u = self.rng.random((4, B))
        if self.cfg.mode == "round_robin":
            ids = [self.cursor] * B
            self.cursor = (self.cursor + 1) % n
        else:
            ids = [min(int(u[0, b] * n), n - 1) for b in range(B)]
        return self._batch(ids, u)

    def _segment(self, task: dict[str, Any], ep: dict[str, Any], a: int, b: int, length: int,
                 mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        """Steps [a, b) of `ep` on the padded interface, left-padded to `length`."""
        spec, cfg = task["spec"], self.cfg
        m, pad = b - a, length - (b - a)
        od, ad = spec.obs_dim, spec.action_dim
        s = (ep["observations"][a:b] - mean) / std  # (m, od)
        s = np.concatenate([s, np.zeros((m, OBS - od), np.float32)], axis=1)
        s = np.concatenate([np.zeros((pad, OBS), np.float32), s], axis=0)
        act = np.concatenate([ep["actions"][a:b], np.zeros((m, ACT - ad), np.float32)], axis=1)
        act = np.concatenate([np.full((pad, ACT), cfg.pad_action, np.float32), act], axis=0)
        rtg = discount_cumsum(ep["rewards"][a:])[:m]  # as the authors: from the start to the end
        rtg = [0.0] * pad + [x / spec.rtg_scale for x in rtg]
        timesteps = [0] * pad + [min(t, spec.episode_length - 1) for t in range(a, b)]
        mask = [0.0] * pad + [1.0] * m
        return {"states": s, "actions": act, "rtg": np.array(rtg, np.float32)[:, None],
                "timesteps": np.array(timesteps, np.int64), "mask": np.array(mask, np.float32)}

    def _batch(self, ids: list[int], u: np.ndarray) -> Batch:
        cfg = self.cfg
        rows: list[dict[str, np.ndarray]] = []
        seen: dict[int, int] = {}
        for b, i in enumerate(ids):
            task = self.per_task[i]
            # an episode with probability proportional to its length
            total = sum(e["length"] for e in task["episodes"])
            r = min(int(u[1, b] * total), total - 1)
            acc = 0
            for ep in task["episodes"]:
                acc += ep["length"]
                if r < acc:
                    break
            T = ep["length"]
            start = min(int(u[2, b] * T), T - 1)
            seg = self._segment(task, ep, start, min(start + cfg.K, T), cfg.K, task["mean"], task["std"])
            # the prompt
            P = len(task["prompts"])
            if cfg.prompt_choice == "random":
                k = min(int(u[3, b] * P), P - 1)
            else:
                j = seen.get(i, 0)
                seen[i] = j + 1
                pos = 0 if j == 0 else (P - j if j <= P else P - 1)
                k = task["prompts_by_return"][pos]
            pep = task["prompts"][k]
            pa = max(0, pep["length"] - cfg.prompt_len - cfg.prompt_end_offset)
            pb = min(pa + cfg.prompt_len, pep["length"])
            pr = self._segment(task, pep, pa, pb, cfg.prompt_len, task["prompt_mean"], task["prompt_std"])
            action_mask = np.array([1.0 if d < task["spec"].action_dim else 0.0 for d in range(ACT)], np.float32)
            rows.append({
                "states": seg["states"], "actions": seg["actions"], "rtg": seg["rtg"],
                "timesteps": seg["timesteps"], "attn_mask": seg["mask"], "action_mask": action_mask,
                "task_index": np.array(i, np.int64),
                "prompt_states": pr["states"], "prompt_actions": pr["actions"], "prompt_rtg": pr["rtg"],
                "prompt_timesteps": pr["timesteps"], "prompt_mask": pr["mask"],
            })
        return Batch.from_numpy({k: np.stack([row[k] for row in rows]) for k in rows[0]})
