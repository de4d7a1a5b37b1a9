"""Bundled SAC experts: trained once with the workflow's own rule, shipped with the package.

A bundled expert is a folder `m3dt/experts/bundled/<expert name>/` holding

    policy.pt     the actor only (`m3dt.experts.sac_policy`; no critics, optimisers or replay buffer)
    expert.json   provenance: tasks, algorithm and settings, env steps, seed, per-task
                  normalised score, package versions, the sha256 of policy.pt, the commit
    curve.csv     its learning curve (normalised score against env steps)
    curve.png     the same as a figure

`data.experts.source: bundled` (the default) makes the `train_expert` rule install the
bundled expert of a task where one exists (checked against its sha256) and train one,
saying so in the log, where none does; `source: train` always trains.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from m3dt.experts.sac_policy import POLICY_FILE, BadPolicyFile, sha256_of
from m3dt.io import atomic_path, write_text_atomic

BUNDLE_FILES = ("policy.pt", "expert.json", "curve.csv", "curve.png")
#: expert.json keys a bundle keeps (training internals such as the resume key are dropped)
BUNDLE_KEYS = ("name", "kind", "tasks", "algorithm", "config", "train_key", "train_steps", "budget_steps",
               "stopped_early", "train_seconds",
               "steps_per_s", "n_updates", "train_episodes", "goal_features", "evaluation", "eval_key",
               "score_mean_over_tasks", "n_flagged", "versions", "policy_sha256", "status")


def bundle_root() -> Path:
    """Where the package's bundled experts live."""
    return Path(str(resources.files("m3dt.experts").joinpath("bundled")))


def bundled_dir(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The bundled folder of expert `name`, or None when the package ships none."""
    d = Path(root) if root is not None else bundle_root()
    d = d / name
    return d if (d / "expert.json").is_file() else None


def bundled_names(root: str | os.PathLike | None = None) -> list[str]:
    d = Path(root) if root is not None else bundle_root()
    return sorted(p.parent.name for p in d.glob("*/expert.json")) if d.is_dir() else []


def read_bundle_meta(folder: Path) -> dict[str, Any]:
    """The bundle's expert.json, checked: policy.pt present with the recorded sha256."""
    meta_path = folder / "expert.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadPolicyFile(f"{meta_path}: not a readable expert.json ({e})") from None
    for key in ("name", "tasks", "policy_sha256", "evaluation"):
        if key not in meta:
            raise BadPolicyFile(f"{meta_path}: missing key {key!r}")
    policy = folder / POLICY_FILE
    if not policy.is_file():
        raise BadPolicyFile(f"{policy}: bundled policy file missing")
    if sha256_of(policy) != meta["policy_sha256"]:
        raise BadPolicyFile(f"{policy}: sha256 differs from {meta_path} (file altered or corrupt); reinstall the "
                            "package or set data.experts.source: train")
    return meta


def install_bundled(name: str, out: Path, log: logging.Logger, root: str | os.PathLike | None = None
                    ) -> dict[str, Any] | None:
    """Copy the bundled expert `name` into `out` (checked); None when none is bundled."""
    folder = bundled_dir(name, root)
    if folder is None:
        return None
    meta = read_bundle_meta(folder)
    out.mkdir(parents=True, exist_ok=True)
    for f in BUNDLE_FILES:
        if f != "expert.json" and (folder / f).is_file():
            with atomic_path(out / f) as tmp:
                shutil.copyfile(folder / f, tmp)
    meta = dict(meta, source="bundled", bundle_dir=str(folder))
    log.info("expert %s: using the bundled expert %s (%d env steps, seed %s, mean normalised score %.1f); "
             "set data.experts.source: train to train one instead", name, folder, int(meta.get("train_steps", 0)),
             meta.get("config", {}).get("seed"), float(meta.get("score_mean_over_tasks", float("nan"))))
    return meta


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def make_bundle(expert_folder: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Copy a trained expert folder (`results/.../experts/<name>`) into the bundle: policy.pt,
    a trimmed expert.json (+ the commit), curve.csv/png. Refuses unfinished experts."""
    src = Path(expert_folder)
    meta_path = src / "expert.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no expert.json (train the expert first)")
    meta = json.loads(meta_path.read_text())
    if meta.get("status") != "done" or meta.get("kind") not in ("sac", "sac-goal"):
        raise ValueError(f"{meta_path}: only finished SAC experts are bundled (status {meta.get('status')!r}, "
                         f"kind {meta.get('kind')!r})")
    policy = src / POLICY_FILE
    if not policy.is_file() or sha256_of(policy) != meta.get("policy_sha256"):
        raise BadPolicyFile(f"{policy}: missing or not the policy recorded in {meta_path}")
    dest = (Path(root) if root is not None else bundle_root()) / meta["name"]
    dest.mkdir(parents=True, exist_ok=True)
    for f in BUNDLE_FILES:
        if f != "expert.json" and (src / f).is_file():
            with atomic_path(dest / f) as tmp:
                shutil.copyfile(src / f, tmp)
    kept = {k: meta[k] for k in BUNDLE_KEYS if k in meta}
    if "algorithm" not in kept:  # experts trained before expert.json recorded it
        from m3dt.experts.sac import ALGORITHM

        kept["algorithm"] = ALGORITHM
    kept["commit"] = _git_commit()
    write_text_atomic(dest / "expert.json", json.dumps(kept, indent=2))
    return dest


# --------------------------------------------------------------------------- CLI


def _bundle_args(p) -> None:
    p.add_argument("folders", nargs="+", help="trained expert folders (e.g. results/experts/ant-dir)")
    p.add_argument("--root", help="bundle folder (default: the package's m3dt/experts/bundled)")


def _bundle_run(args) -> int:
    for f in args.folders:
        dest = make_bundle(f, args.root)
        meta = json.loads((dest / "expert.json").read_text())
        size = (dest / POLICY_FILE).stat().st_size
        print(f"{meta['name']}: bundled in {dest} ({size / 1e6:.2f} MB policy, {meta['train_steps']} env steps, "
              f"mean normalised score {meta['score_mean_over_tasks']:.1f})")
    return 0


def _list_args(p) -> None:
    p.add_argument("--root", help="bundle folder (default: the package's)")
    p.add_argument("--benchmark", type=int, metavar="N",
                   help="instead: the SAC experts the MT-N benchmark needs, bundled or to train")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="benchmark seeds (with --benchmark; default 0)")


def needed_sac_experts(n: int, seeds: list[int]) -> list[str]:
    """The SAC experts (DMC tasks and families) of the MT-n benchmarks of `seeds`, in order."""
    from m3dt import tasks
    from m3dt.experts.names import expert_kind, expert_names

    names = expert_names([t for seed in seeds for t in tasks.benchmark(n, seed)])
    return [e for e in names if expert_kind(e) != "scripted"]


def _list_run(args) -> int:
    names = bundled_names(args.root)
    if args.benchmark is not None:
        needed = needed_sac_experts(args.benchmark, args.seeds)
        missing = [e for e in needed if e not in names]
        for e in needed:
            print(f"{e:24s} {'bundled' if e in names else 'trains (no bundled expert)'}")
        print(f"MT{args.benchmark}, seeds {' '.join(map(str, args.seeds))}: {len(needed)} SAC experts, "
              f"{len(needed) - len(missing)} bundled, {len(missing)} to train")
        return 0
    for n in names:
        meta = read_bundle_meta(bundled_dir(n, args.root))
        cfg = meta.get("config", {})
        utd = float(cfg.get("gradient_steps", 1)) / float(cfg.get("train_freq", 1))
        print(f"{n:24s} {meta['train_steps']:>8d} env steps  UTD {utd:<4g} score {meta['score_mean_over_tasks']:6.1f}  "
              f"({len(meta['tasks'])} task(s))")
    if not names:
        print("no bundled experts")
    return 0
