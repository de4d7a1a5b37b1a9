"""Episodes of an expert in the padded multi-task env: the rollout data collection and
evaluation share (`rollout`, `episode_seed`) and an expert's evaluation (`evaluate_expert`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from m3dt import tasks
from m3dt.experts.kinds import Expert

LOG = logging.getLogger("m3dt.experts")


def episode_seed(seed: int, i: int, stream: int = 0) -> int:
    """Reset seed of episode i: collection uses stream 0, evaluation stream 1 (disjoint)."""
    return int((stream * 2**30 + seed * 1_000_003 + i) % (2**31 - 1))


def rollout(env, expert: Expert, reset_seed: int, rng: np.random.Generator, *, action_noise: float = 0.0,
            max_steps: int | None = None) -> dict[str, Any]:
    """One episode of `expert` in a padded env (`tasks.make_env`), recording REAL dims.

    Returns per-step arrays `observations (T, obs_dim)`, `actions (T, action_dim)`, `rewards`,
    `terminals`, `success` and the episode's `return`, `success_any`, `normalized_score`.
    `action_noise` adds Gaussian noise (then clip to the action bounds); `max_steps` caps T.
    """
    spec = expert.spec
    od, ad = spec.obs_dim, spec.action_dim
    limit = spec.episode_length if max_steps is None else min(int(max_steps), spec.episode_length)
    obs_l, act_l, rew_l, term_l, succ_l = [], [], [], [], []
    obs, _ = env.reset(seed=reset_seed)
    padded = np.zeros(tasks.ACT_PAD, dtype=np.float32)
    ret, success_any = 0.0, False
    for _ in range(limit):
        o = np.asarray(obs[:od], dtype=np.float32)
        a = expert.act(o, rng)
        if action_noise > 0:
            a = np.clip(a + rng.normal(0.0, action_noise, size=a.shape), -1.0, 1.0).astype(np.float32)
        padded[:ad] = a
        padded[ad:] = 0.0
        obs, r, terminated, truncated, info = env.step(padded)
        obs_l.append(o)
        act_l.append(np.asarray(a, dtype=np.float32))
        rew_l.append(float(r))
        term_l.append(bool(terminated))
        succ_l.append(bool(info.get("success", False)))
        ret += float(r)
        success_any |= succ_l[-1]
        if terminated or truncated:
            break
    succ = success_any if spec.suite == "metaworld" else None
    return {
        "observations": np.stack(obs_l).astype(np.float32),
        "actions": np.stack(act_l).astype(np.float32),
        "rewards": np.asarray(rew_l, dtype=np.float32),
        "terminals": np.asarray(term_l, dtype=bool),
        "success": np.asarray(succ_l, dtype=bool),
        "return": ret,
        "success_any": success_any,
        "normalized_score": spec.normalized_score(ret, succ),
    }


def evaluate_expert(expert: Expert, *, episodes: int = 10, seed: int = 0, max_steps: int | None = None,
                    threshold: float | None = None, log: logging.Logger | None = None) -> dict[str, Any]:
    """Normalised score of `expert` on its task over `episodes` episodes (evaluation seeds,
    disjoint from collection seeds). `flagged` is set when `threshold` is given."""
    log = log or LOG
    env = tasks.make_env(expert.task)
    scores, returns, lengths = [], [], []
    t0 = time.perf_counter()
    for i in range(episodes):
        ep = rollout(env, expert, episode_seed(seed, i, stream=1), np.random.default_rng([seed, i, 1]),
                     max_steps=max_steps)
        scores.append(ep["normalized_score"])
        returns.append(ep["return"])
        lengths.append(len(ep["rewards"]))
    env.close()
    row: dict[str, Any] = {
        "task": expert.task,
        "suite": expert.spec.suite,
        "expert_kind": expert.kind,
        "train_steps": expert.train_steps,
        "score_mean": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "n_episodes": int(episodes),
        "return_mean": float(np.mean(returns)),
        "length_mean": float(np.mean(lengths)),
        "eval_seconds": round(time.perf_counter() - t0, 3),
    }
    if threshold is not None:
        row["threshold"] = float(threshold)
        row["flagged"] = bool(row["score_mean"] < threshold)
        if row["flagged"]:
            log.warning("expert %s FLAGGED on %s: normalised score %.1f +- %.1f < threshold %.1f",
                        expert.describe(), expert.task, row["score_mean"], row["score_std"], threshold)
    log.info("evaluated %s on %s: score %.1f +- %.1f over %d episodes (return %.1f)", expert.describe(),
             expert.task, row["score_mean"], row["score_std"], episodes, row["return_mean"])
    return row
