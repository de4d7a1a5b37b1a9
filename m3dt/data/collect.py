"""Roll out an expert to build one task's offline dataset (HDF5 via `m3dt.data.store`).

`collect_task` runs `episodes_for(task) + n_prompt` episodes through `tasks.make_env(task)`, records
the REAL (unpadded) dims -- `obs[:obs_dim]`, `action[:action_dim]` -- and writes them with
`store.write_task_data`; the last `n_prompt` episodes are the held-out prompt episodes.

Determinism: episode i is reset with `episode_seed(cfg.seed, i)` and its action noise
comes from `np.random.default_rng([cfg.seed, i])`, so the same seed, expert and config
give identical data (and any single episode can be regenerated on its own).

Goals: a Meta-World episode's goal is drawn by its reset seed (`m3dt.tasks.envs.metaworld_env`:
MT1 train task `seed % 50`), so consecutive episodes, prompt episodes included, each get
their own goal and a task's data covers all 50; the scripted policies read the goal (or
the object it follows) from the observation.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from m3dt import tasks
from m3dt.dataclass_io import ConfigError, from_mapping
from m3dt.experts.kinds import Expert, FlaggedExpertError
from m3dt.experts.rollout import episode_seed, rollout
from m3dt.runtime import fmt_eta

LOG = logging.getLogger("m3dt.data.collect")


@dataclass
class CollectConfig:
    """Settings of data collection for one task."""

    episodes: int = 2000  #: training episodes per task (N; the paper has up to 2000)
    #: per-suite override of `episodes` (suite name -> training episodes per task), e.g. the
    #: authors' data: up to 2000 for metaworld/dmc (TD-MPC2 replay), ~1000 for ant_dir/cheetah_vel
    #: (Prompt-DT's data); suites not named use `episodes`
    episodes_by_suite: dict[str, int] = field(default_factory=dict)
    n_prompt: int = 2  #: extra held-out prompt episodes, written last
    seed: int = 0  #: collection seed (episode resets and action noise)
    #: std of Gaussian noise on SAC experts' actions (scripted experts carry their own). Measured
    #: (README "Single-task fidelity study"): with 0.0 the deterministic SAC expert's 200 episodes
    #: cover so few states that a single-task Prompt-DT on cartpole-balance scores 34; with 0.2, 98.
    sac_action_noise: float = 0.2
    max_steps: int | None = None  #: cap on steps per episode (tests / smoke runs only; None = the task's length)
    allow_flagged: bool = False  #: use an expert flagged below its quality threshold (logged as a WARNING)
    log_every_s: float = 30.0  #: seconds between progress log lines

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "data.collect") -> "CollectConfig":
        """The config of the mapping `d` (`where`: its place, for errors); an unknown key, a
        value of the wrong type or an unknown suite is a `ConfigError` naming `where.key`."""
        cfg = from_mapping(cls, d, where)
        cfg.episodes_by_suite = dict(cfg.episodes_by_suite or {})
        for suite, n in cfg.episodes_by_suite.items():
            if suite not in tasks.SUITES:
                raise ConfigError(f"{where}.episodes_by_suite: unknown suite {suite!r}; valid: {sorted(tasks.SUITES)}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"{where}.episodes_by_suite.{suite}: expected an int >= 1, got {n!r}")
        return cfg

    def episodes_for(self, task: str) -> int:
        """Training episodes of `task`: its suite's `episodes_by_suite` entry, else `episodes`."""
        return int(self.episodes_by_suite.get(tasks.get(task).suite, self.episodes))


def check_expert(expert: Expert, allow_flagged: bool, log: logging.Logger | None = None) -> None:
    """Refuse a flagged expert unless `allow_flagged`; warn about an unevaluated one."""
    log = log or LOG
    ev = expert.evaluation
    if expert.flagged:
        msg = (f"expert {expert.describe()} of {expert.task} is flagged: normalised score "
               f"{ev.get('score_mean', float('nan')):.1f} < threshold {ev.get('threshold', float('nan')):.1f}")
        if not allow_flagged:
            raise FlaggedExpertError(msg + "; refusing to collect data with it (allow_flagged=True to override)")
        log.warning("%s; collecting anyway (allow_flagged=True)", msg)
    elif expert.flagged is None:
        log.warning("expert %s of %s has never been evaluated (no expert.json); its data quality is unknown",
                    expert.describe(), expert.task)


def collect_episodes(task: str, expert: Expert, cfg: CollectConfig, log: logging.Logger | None = None) -> list[dict]:
    """The `cfg.episodes_for(task) + cfg.n_prompt` episodes of `task` as dicts of per-step arrays."""
    log = log or LOG
    spec = tasks.get(task)
    if expert.task != spec.name:
        raise ValueError(f"expert is bound to {expert.task!r}, not {spec.name!r}")
    noise = cfg.sac_action_noise if expert.kind != "scripted" else 0.0
    total = cfg.episodes_for(spec.name) + cfg.n_prompt
    env = tasks.make_env(spec.name)
    episodes: list[dict] = []
    t0 = last = time.perf_counter()
    steps = 0
    for i in range(total):
        ep = rollout(env, expert, episode_seed(cfg.seed, i), np.random.default_rng([cfg.seed, i]),
                     action_noise=noise, max_steps=cfg.max_steps)
        steps += len(ep["rewards"])
        episodes.append(ep)
        now = time.perf_counter()
        if now - last >= cfg.log_every_s or i + 1 == total:
            rate = (i + 1) / (now - t0)
            scores = [e["normalized_score"] for e in episodes]
            log.info("%s: episode %d/%d, %.1f episodes/s, %.0f steps/s, ETA %s | score %.1f", spec.name, i + 1,
                     total, rate, steps / (now - t0), fmt_eta((total - i - 1) / rate), float(np.mean(scores)))
            last = now
    env.close()
    return episodes


def collect_task(task: str, expert: Expert, cfg: CollectConfig | None = None,
                 out_path: str | os.PathLike | None = None, log: logging.Logger | None = None) -> Path:
    """Collect `task`'s dataset with `expert` and write it to `out_path` (default
    `results/data/<task>.h5`). Refuses a flagged expert unless `cfg.allow_flagged`."""
    from m3dt.data import store

    cfg = cfg or CollectConfig()
    log = log or LOG
    spec = tasks.get(task)
    check_expert(expert, cfg.allow_flagged, log)
    out = Path(out_path) if out_path is not None else Path("results/data") / f"{spec.name}.h5"
    t0 = time.perf_counter()
    raw = collect_episodes(spec.name, expert, cfg, log)
    n_train = cfg.episodes_for(spec.name)
    keys = ("observations", "actions", "rewards", "terminals", "success")
    episodes = [{k: ep[k] for k in keys} for ep in raw]
    scores = np.array([ep["normalized_score"] for ep in raw[:n_train]] or [np.nan])
    attrs = {
        "source": "collect",
        "expert": expert.describe(),
        "expert_kind": expert.kind,
        "expert_train_steps": int(expert.train_steps),
        "expert_flagged": bool(expert.flagged) if expert.flagged is not None else "unknown",
        "seed": int(cfg.seed),
        "episodes": int(n_train),
        "n_prompt": int(cfg.n_prompt),
        "action_noise": float(getattr(expert, "action_noise", cfg.sac_action_noise if expert.kind != "scripted" else 0.0)),
        "max_steps": -1 if cfg.max_steps is None else int(cfg.max_steps),
        "data_score_mean": float(np.mean(scores)),
        "collect_seconds": round(time.perf_counter() - t0, 2),
    }
    path = store.write_task_data(out, spec.name, episodes, n_prompt=cfg.n_prompt, attrs=attrs)
    log.info("%s: wrote %d + %d prompt episodes (%d steps, data score %.1f) to %s", spec.name, n_train,
             cfg.n_prompt, sum(len(e["rewards"]) for e in episodes), attrs["data_score_mean"], path)
    return Path(path)


# --------------------------------------------------------------------------- CLI


def _collect_args(p) -> None:
    p.add_argument("tasks", nargs="+", help="registry task names")
    p.add_argument("--expert-root", default="results/experts", help="trained experts (<root>/<expert name>/)")
    p.add_argument("--out-dir", default="results/data", help="writes <out-dir>/<task>.h5")
    p.add_argument("--out", help="output file (only with one task)")
    p.add_argument("--config", help="YAML/JSON file of CollectConfig fields (a `collect:` key is used if present)")
    p.add_argument("--episodes", type=int, help="override CollectConfig.episodes (and drop episodes_by_suite)")
    p.add_argument("--seed", type=int, help="override CollectConfig.seed")
    p.add_argument("--max-steps", type=int, help="cap episode length (smoke runs)")
    p.add_argument("--allow-flagged", action="store_true", help="use experts flagged below threshold")
    p.add_argument("--log", help="also log to this file")


def _collect_run(args) -> int:
    from m3dt.experts.config import load_config_file
    from m3dt.experts.kinds import load_expert
    from m3dt.io import log_to

    cfg = CollectConfig.from_dict(load_config_file(args.config, "collect"),
                                  f"{args.config}:collect" if args.config else "collect")
    for key in ("episodes", "seed", "max_steps"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.episodes is not None:
        cfg.episodes_by_suite = {}
    if args.allow_flagged:
        cfg.allow_flagged = True
    if args.out and len(args.tasks) != 1:
        raise SystemExit("--out needs exactly one task")
    with log_to(args.log) as log:
        for t in args.tasks:
            expert = load_expert(t, args.expert_root)
            out = Path(args.out) if args.out else Path(args.out_dir) / f"{tasks.get(t).name}.h5"
            collect_task(t, expert, cfg, out, log)
    return 0
