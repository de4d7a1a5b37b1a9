"""SAC training of one expert with checkpoint/resume, and `train_expert` (any kind).

`build_sac` makes the stable-baselines3 agent, `_train_sac` runs it in chunks between
checkpoint and curve points (metrics.csv, curve.csv, resume from `checkpoint/`), and
`train_expert` sets up, installs (bundled), reuses or trains an expert, evaluates it and
writes its `expert.json`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from m3dt import tasks
from m3dt.experts.config import ExpertConfig
from m3dt.experts.curve import CURVE_COLUMNS, append_rows, curve_point, curve_tasks, plot_curves
from m3dt.experts.envs import make_training_env
from m3dt.experts.kinds import Expert, ScriptedExpert, bind_expert
from m3dt.experts.names import (CHECKPOINT_DIR, CURVE_CSV, CURVE_PNG, EXPERT_JSON, FAMILIES, METRICS_CSV, MODEL_ZIP,
                                expert_kind, expert_name, expert_tasks, goal_features)
from m3dt.experts.rollout import evaluate_expert
from m3dt.experts.sac_library import ALGORITHMS, sac_class
from m3dt.experts.sac_policy import POLICY_FILE as POLICY_PT
from m3dt.experts.sac_policy import export_actor, load_actor
from m3dt.io import atomic_path, write_text_atomic
from m3dt.runtime import fmt_eta, truncate_metrics_csv

if TYPE_CHECKING:  # heavy imports only where used
    import gymnasium as gym
    from stable_baselines3 import SAC

LOG = logging.getLogger("m3dt.experts")
ALGORITHM = ALGORITHMS["sb3"]  #: what expert.json says of experts trained before it recorded the library


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build_sac(env: "gym.Env", cfg: ExpertConfig, total_steps: int, device: str | None = None) -> "SAC":
    """An untrained SAC agent of `cfg.library` (SB3 or sbx) for `env` with `cfg`'s hyperparameters."""
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise

    dim = int(np.prod(env.action_space.shape))
    action_noise = (OrnsteinUhlenbeckActionNoise(np.zeros(dim), cfg.ou_noise_sigma * np.ones(dim))
                    if cfg.ou_noise_sigma > 0 else None)
    SAC = sac_class(cfg.library, int(cfg.torch_threads))
    # sbx (JAX) places itself: a CUDA jaxlib uses the GPU; `device` is SB3's (torch) setting
    placement = {"device": _resolve_device(device or cfg.device)} if cfg.library == "sb3" else {}
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=cfg.learning_rate,
        buffer_size=max(1, min(int(cfg.buffer_size), int(total_steps))),
        learning_starts=int(cfg.learning_starts),
        batch_size=int(cfg.batch_size),
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=int(cfg.train_freq),
        gradient_steps=int(cfg.gradient_steps),
        ent_coef=cfg.ent_coef,
        use_sde=bool(cfg.use_sde),
        use_sde_at_warmup=bool(cfg.use_sde),
        action_noise=action_noise,
        policy_kwargs={"net_arch": list(cfg.net_arch)},
        seed=cfg.seed,
        verbose=0,
        **placement,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model



METRIC_COLUMNS = ["step", "wall_s", "steps_per_s", "updates_per_s", "episodes", "ep_return_mean",
                  "ep_score_mean", "actor_loss", "critic_loss", "ent_coef"]


def _progress_callback(total: int, start_step: int, t_start: float, metrics_path: Path, log: logging.Logger,
                       log_every: int, state: dict[str, Any]):
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        """Log line + metrics.csv row every `log_every` steps; fails loudly on NaN losses."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                ep = info.get("m3dt_episode")
                if ep is not None:
                    state["returns"].append(float(ep["return"]))
                    state["scores"].append(float(ep["normalized_score"]))
                    state["episodes"] += 1
            n = self.model.num_timesteps
            if n - state["last_log"] >= log_every or n >= total:
                self._log(n)
            return True

        def _log(self, n: int) -> None:
            now = time.perf_counter()
            dt = max(now - state["last_time"], 1e-9)
            rate = (n - state["last_log"]) / dt
            n_updates = int(self.model._n_updates)
            upd_rate = (n_updates - state["last_updates"]) / dt
            vals = self.model.logger.name_to_value
            row = {
                "step": n,
                "wall_s": round(state["wall_before"] + now - t_start, 2),
                "steps_per_s": round(rate, 2),
                "updates_per_s": round(upd_rate, 2),
                "episodes": state["episodes"],
                "ep_return_mean": float(np.mean(state["returns"][-10:])) if state["returns"] else float("nan"),
                "ep_score_mean": float(np.mean(state["scores"][-10:])) if state["scores"] else float("nan"),
                "actor_loss": vals.get("train/actor_loss", float("nan")),
                "critic_loss": vals.get("train/critic_loss", float("nan")),
                "ent_coef": vals.get("train/ent_coef", float("nan")),
            }
            for k in ("actor_loss", "critic_loss"):
                if n_updates > 0 and not math.isfinite(float(row[k])):
                    raise FloatingPointError(f"SAC {k} is {row[k]} at step {n}; stopping")
            append_rows(metrics_path, [row], METRIC_COLUMNS)
            eta = (total - n) / rate if rate > 0 else float("inf")
            log.info("step %d/%d (%.0f%%) %.0f steps/s %.0f updates/s ETA %s | episodes %d return %.1f score %.1f",
                     n, total, 100 * n / total, rate, upd_rate, fmt_eta(eta), state["episodes"],
                     row["ep_return_mean"], row["ep_score_mean"])
            state["last_log"], state["last_time"], state["last_updates"] = n, now, n_updates

    return Progress()


def _save_model(model: "SAC", path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        model.save(f)


def _save_checkpoint(model: "SAC", ckpt: Path, state: dict[str, Any]) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    _save_model(model, ckpt / MODEL_ZIP)
    with atomic_path(ckpt / "replay_buffer.pkl") as tmp, open(tmp, "wb") as f:
        model.save_replay_buffer(f)
    write_text_atomic(ckpt / "state.json", json.dumps(state, indent=2))  # written last: marks a complete checkpoint


def _config_key(cfg: ExpertConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the checkpoint (not budgets or logging)."""
    keys = ("learning_rate", "batch_size", "buffer_size", "learning_starts", "net_arch", "train_freq",
            "gradient_steps", "gamma", "tau", "ent_coef", "use_sde", "ou_noise_sigma", "seed")
    d = cfg.to_dict()
    key = {k: d[k] for k in keys}
    if cfg.library != "sb3":  # SB3 experts keep the key they had before the library was a setting
        key["library"] = cfg.library
    return key


def train_expert(name: str, cfg: ExpertConfig | None = None, out_dir: str | os.PathLike | None = None, *,
                 log: logging.Logger | None = None, eval_tasks: Sequence[str] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Train (SAC) or set up (scripted) the expert `name`, evaluate it, write its folder.

    `name`: a Meta-World or DMC task, or a family (`ant-dir`, `cheetah-vel`; a family's
    task name such as `ant-dir-3` also selects it). `out_dir` is the expert's own folder
    (default `results/experts/<name>`). Training logs progress (steps/s, updates/s, ETA)
    every `cfg.log_every` steps, appends `metrics.csv`, checkpoints model + replay buffer
    every `cfg.checkpoint_every` steps and, when restarted, resumes from the last
    checkpoint (same settings required; the resumed run is not bit-identical to an
    uninterrupted one: the episode running at the interruption is dropped). A finished
    expert (`expert.json` with status "done", same training settings and budget) is
    reused unless `overwrite`: returned as is, or re-evaluated if only the evaluation
    settings changed. Evaluation covers `eval_tasks` (default: every task the expert
    covers). Returns the expert.json content.
    """
    log = log or LOG
    name = expert_name(name)
    cfg = (cfg or ExpertConfig()).for_expert(name)  # a family: with its family_overrides
    kind = expert_kind(name)
    out = Path(out_dir) if out_dir is not None else Path("results/experts") / name
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / EXPERT_JSON
    eval_list = [tasks.get(t).name for t in (eval_tasks or expert_tasks(name))]
    train_key, eval_key = _train_key(cfg, name), _eval_key(cfg, eval_list)
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    reuse = (not overwrite and old.get("status") == "done" and old.get("train_key") == train_key
             and (kind == "scripted" or (out / MODEL_ZIP).exists()))
    if reuse and old.get("eval_key") == eval_key:
        log.info("expert %s already trained and evaluated in %s; skipping (overwrite=True to redo)", name, out)
        return old
    from m3dt.seeding import set_seed

    set_seed(cfg.seed)
    meta: dict[str, Any] = {"name": name, "kind": kind, "tasks": list(expert_tasks(name)),
                            "config": cfg.to_dict(), "train_key": train_key, "status": "training"}
    if kind == "scripted":
        meta.update(train_steps=0, action_noise=cfg.metaworld_action_noise)
        experts: dict[str, Expert] = {t: ScriptedExpert(t, cfg.metaworld_action_noise) for t in eval_list}
    else:
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
        bundled = None
        if cfg.source == "bundled" and not reuse:
            from m3dt.experts.bundle import install_bundled

            bundled = install_bundled(name, out, log, cfg.bundle_dir)
            if bundled is None:
                log.info("expert %s: no bundled expert ships with the package; training one (%d env steps)", name,
                         cfg.sac_steps(name))
        if bundled is not None:
            model = load_actor(out / POLICY_PT, expected_sha256=bundled["policy_sha256"])
            meta.update({k: bundled[k] for k in ("config", "train_key", "train_steps", "budget_steps", "stopped_early",
                                                 "train_seconds", "steps_per_s", "n_updates", "train_episodes",
                                                 "policy_sha256", "versions", "commit", "bundle_dir") if k in bundled})
            meta["source"] = "bundled"
            if bundled.get("eval_key") == eval_key:  # same evaluation settings (thresholds too): keep its evaluation
                meta.update({k: bundled[k] for k in ("algorithm", "goal_features", "evaluation", "eval_key",
                                                     "score_mean_over_tasks", "n_flagged") if k in bundled})
                meta["status"] = "done"
                write_text_atomic(meta_path, json.dumps(meta, indent=2))
                return meta
        elif reuse:
            log.info("expert %s already trained in %s; re-evaluating with new evaluation settings", name, out)
            model = _load_sac(cfg, out / MODEL_ZIP)
            meta.update({k: old[k] for k in ("train_steps", "train_seconds", "steps_per_s", "n_updates",
                                             "train_episodes") if k in old})
        else:
            model, t_train, info = _train_sac(name, cfg, out, cfg.sac_steps(name), log)
            meta.update(train_steps=int(model.num_timesteps), train_seconds=round(t_train, 1), **info)
        if bundled is None:
            meta["policy_sha256"] = export_actor(model, out / POLICY_PT)
            meta["source"] = "trained"
            # evaluate what collection uses: the exported actor (same actions as SAC.predict, tested)
            model = load_actor(out / POLICY_PT, expected_sha256=meta["policy_sha256"])
        meta["algorithm"] = bundled.get("algorithm", ALGORITHM) if bundled is not None else ALGORITHMS[cfg.library]
        if name in FAMILIES:
            meta["goal_features"] = {t: goal_features(t).tolist() for t in expert_tasks(name)}
        experts = {t: bind_expert(model, t, name, train_steps=meta["train_steps"]) for t in eval_list}
    evaluation = {}
    for t, ex in experts.items():
        evaluation[t] = evaluate_expert(ex, episodes=cfg.eval_episodes, seed=cfg.seed, max_steps=cfg.eval_max_steps,
                                        threshold=cfg.threshold(t), log=log)
    meta.update(evaluation=evaluation, eval_key=eval_key, status="done")
    meta["score_mean_over_tasks"] = float(np.mean([e["score_mean"] for e in evaluation.values()]))
    meta["n_flagged"] = int(sum(e["flagged"] for e in evaluation.values()))
    if "versions" not in meta:
        meta["versions"] = package_versions(cfg.library if kind != "scripted" else "sb3")
    write_text_atomic(meta_path, json.dumps(meta, indent=2))
    log.info("expert %s done: mean normalised score %.1f over %d task(s), %d flagged", name,
             meta["score_mean_over_tasks"], len(evaluation), meta["n_flagged"])
    return meta


def package_versions(library: str = "sb3") -> dict[str, str]:
    """Versions of what determines an expert's behaviour (recorded in expert.json)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("m3dt", "stable-baselines3", "torch", "numpy", "gymnasium", "mujoco", "dm_control", "metaworld",
                *(("sbx-rl", "jax", "jaxlib", "flax", "optax") if library == "sbx" else ())):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _train_key(cfg: ExpertConfig, name: str) -> dict[str, Any]:
    """What makes a finished expert reusable: its kind's settings and budget."""
    if expert_kind(name) == "scripted":
        return {"action_noise": cfg.metaworld_action_noise}
    return dict(_config_key(cfg), steps=cfg.sac_steps(name))


def _eval_key(cfg: ExpertConfig, eval_list: Sequence[str]) -> dict[str, Any]:
    return {"episodes": cfg.eval_episodes, "max_steps": cfg.eval_max_steps, "seed": cfg.seed,
            "tasks": list(eval_list), "thresholds": [cfg.threshold(t) for t in eval_list]}


def _load_sac(cfg: ExpertConfig, path: Path, env: "gym.Env | None" = None) -> "SAC":
    """A saved agent of `cfg.library` (model.zip)."""
    kwargs = {"device": _resolve_device(cfg.device)} if cfg.library == "sb3" else {}
    return sac_class(cfg.library).load(path, env=env, **kwargs)


def _train_sac(name: str, cfg: ExpertConfig, out: Path, total: int, log: logging.Logger):
    env = make_training_env(name, cfg.seed)
    ckpt = out / CHECKPOINT_DIR
    metrics_path = out / METRICS_CSV
    state = {"returns": [], "scores": [], "episodes": 0, "last_log": 0, "last_time": time.perf_counter(),
             "last_updates": 0, "wall_before": 0.0}
    curve_path = out / CURVE_CSV
    ck_state_path = ckpt / "state.json"
    model = None
    if ck_state_path.exists():
        ck = json.loads(ck_state_path.read_text())
        if ck.get("config_key") == _config_key(cfg):
            model = _load_sac(cfg, ckpt / MODEL_ZIP, env)
            model.load_replay_buffer(ckpt / "replay_buffer.pkl")
            model.set_logger(_null_logger())
            state.update(episodes=ck["episodes"], returns=ck["returns"], scores=ck["scores"],
                         last_log=model.num_timesteps, last_updates=int(model._n_updates),
                         wall_before=float(ck["wall_s"]))
            for path, columns in ((metrics_path, METRIC_COLUMNS), (curve_path, CURVE_COLUMNS)):
                if path.exists():  # drop rows written after the checkpoint we resume from
                    truncate_metrics_csv(path, model.num_timesteps, columns)
            log.info("expert %s: resuming from checkpoint at step %d/%d", name, model.num_timesteps, total)
        else:
            log.warning("expert %s: checkpoint in %s has other settings; starting over", name, ckpt)
            shutil.rmtree(ckpt)
    if model is None:
        for stale in (metrics_path, curve_path):
            if stale.exists():
                stale.unlink()
        model = build_sac(env, cfg, total)
        log.info("expert %s: training SAC for %d steps (obs %s, action %s, device %s)", name, total,
                 env.observation_space.shape, env.action_space.shape, model.device)
    t_start = time.perf_counter()
    state["last_time"] = t_start
    start_step = model.num_timesteps
    cb = _progress_callback(total, start_step, t_start, metrics_path, log, max(1, cfg.log_every), state)
    c_tasks = curve_tasks(expert_tasks(name), cfg.curve_goals)
    if cfg.curve_every > 0 and model.num_timesteps == 0:  # the untrained policy: the curve's first point
        append_rows(curve_path, curve_point(model, name, c_tasks, episodes=cfg.curve_episodes, seed=cfg.seed,
                                            step=0, wall_s=0.0, max_steps=cfg.eval_max_steps))
    while model.num_timesteps < total:
        n = model.num_timesteps
        stop = min(total, (n // cfg.checkpoint_every + 1) * cfg.checkpoint_every)
        if cfg.curve_every > 0:
            stop = min(stop, (n // cfg.curve_every + 1) * cfg.curve_every)
        model.learn(total_timesteps=stop - n, reset_num_timesteps=False, callback=cb, log_interval=10**9,
                    progress_bar=False)
        wall = state["wall_before"] + time.perf_counter() - t_start
        n = model.num_timesteps
        if cfg.curve_every > 0 and (n % cfg.curve_every == 0 or n >= total):
            rows = curve_point(model, name, c_tasks, episodes=cfg.curve_episodes, seed=cfg.seed, step=n,
                               wall_s=wall, max_steps=cfg.eval_max_steps)
            append_rows(curve_path, rows)
            log.info("expert %s: curve at step %d: normalised score %.1f (mean of %d task(s))", name, n,
                     float(np.mean([r["score_mean"] for r in rows])), len(rows))
        if cfg.max_train_seconds is not None and n < total and wall > cfg.max_train_seconds:
            log.warning("expert %s: stopping at step %d of %d: wall time %.0f s exceeds max_train_seconds %.0f",
                        name, n, total, wall, cfg.max_train_seconds)
            if cfg.curve_every > 0 and n % cfg.curve_every != 0:
                append_rows(curve_path, curve_point(model, name, c_tasks, episodes=cfg.curve_episodes,
                                                    seed=cfg.seed, step=n, wall_s=wall, max_steps=cfg.eval_max_steps))
            break
        if n < total and n % cfg.checkpoint_every == 0:
            _save_checkpoint(model, ckpt, {"step": model.num_timesteps, "config_key": _config_key(cfg),
                                           "episodes": state["episodes"], "returns": state["returns"][-10:],
                                           "scores": state["scores"][-10:], "wall_s": wall})
    wall = state["wall_before"] + time.perf_counter() - t_start
    _save_model(model, out / MODEL_ZIP)
    if cfg.curve_every > 0 and curve_path.exists():
        plot_curves({name: curve_path}, [out / CURVE_PNG], threshold=cfg.threshold(expert_tasks(name)[0]),
                    title=f"SAC expert {name}: evaluation during training")
    if ckpt.exists() and not cfg.keep_checkpoint:
        shutil.rmtree(ckpt)
    env.close()
    steps_run = model.num_timesteps - start_step
    run_seconds = time.perf_counter() - t_start
    info = {"steps_per_s": round(steps_run / max(run_seconds, 1e-9), 2), "n_updates": int(model._n_updates),
            "train_episodes": state["episodes"], "budget_steps": int(total),
            "stopped_early": bool(model.num_timesteps < total)}
    return model, wall, info


def _null_logger():
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])
