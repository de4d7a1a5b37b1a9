"""`python -m m3dt train --stage S ...`: one stage or baseline, by its name in the one
dispatcher `m3dt.train.stages.run` (`stages.STAGES`; `-` and `_` are the same).

Examples (config keys as in the workflow's `train` section, see m3dt/config.py):

    python -m m3dt train --stage backbone --benchmark 10 --data-dir results/data --out runs/pdt
    python -m m3dt train --stage expert --expert 3 --backbone runs/pdt/checkpoints/final.pt \
        --groups groups.json --data-dir results/data --out runs/expert3
    python -m m3dt train --stage assemble --backbone B --experts E0 E1 ... --out m3dt_init.pt
    python -m m3dt train --stage router --assembled m3dt_init.pt --benchmark 10 ... --out runs/router
    python -m m3dt train --stage mtdt --benchmark 10 ... --set model.width=128
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import yaml

STAGES = ("backbone", "expert", "experts-grouped", "assemble", "router", "mtdt", "prompt-dt", "e2e-moe", "harmodt")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`["model.width=128", "loop.steps=10"]` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected KEY.PATH=VALUE")
        key, value = item.split("=", 1)
        d = out
        *parents, leaf = key.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = yaml.safe_load(value)
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", type=lambda s: s.replace("_", "-"), choices=STAGES, required=True,
                   help="stage or baseline (mtdt, prompt-dt, e2e-moe, harmodt)")
    p.add_argument("--config", help="YAML/JSON file with the `train` section (or a whole workflow config)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. loop.steps=100")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--tasks", nargs="+", metavar="T", help="task names")
    src.add_argument("--benchmark", type=int, metavar="N", help="the authors' MT-N subset (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed; also the training seed unless loop.seed is set")
    p.add_argument("--data-dir", help="folder of <task>.h5 files")
    p.add_argument("--out", required=True, help="run folder (checkpoints/, metrics.csv); assemble: the .pt file")
    p.add_argument("--backbone", help="stage-1 checkpoint (expert, experts-grouped, assemble)")
    p.add_argument("--groups", help="groups JSON (expert, experts-grouped); expert without it: no grouping, all --tasks")
    p.add_argument("--expert", type=int, help="expert index (expert)")
    p.add_argument("--experts", nargs="+", help="stage-2 checkpoints in expert order (assemble)")
    p.add_argument("--routers", help="stage-3 checkpoint whose routers go into the assembled model (assemble)")
    p.add_argument("--assembled", help="assembled M3DT checkpoint (router)")
    p.add_argument("--train-experts", action="store_true", help="router stage: experts unfrozen (ablation)")


def load_train_config(path: str | None, sets: list[str], seed: int) -> Any:
    from m3dt.config import TrainConfig

    d: dict[str, Any] = {}
    if path:
        with open(path) as f:
            d = yaml.safe_load(f) or {}
        d = d.get("train", d)
    d = merge(d, parse_sets(sets))
    d.setdefault("loop", {}).setdefault("seed", seed)
    return TrainConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from m3dt import tasks as registry
    from m3dt.config import ConfigError
    from m3dt.train import stages

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load_train_config(args.config, args.set, args.seed)
    except ConfigError as e:
        given = " and ".join(x for x in (args.config, "--set" if args.set else None) if x)
        raise SystemExit(f"config error{f' ({given})' if given else ''}: {e}") from None

    def need(*names: str) -> None:
        missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) in (None, [])]
        if missing:
            raise SystemExit(f"--stage {args.stage} needs {' '.join(missing)}")

    def task_list() -> list[str]:
        if args.tasks:
            return registry.resolve(args.tasks)
        if args.benchmark:
            return list(registry.benchmark(args.benchmark, args.seed))
        raise SystemExit(f"--stage {args.stage} needs --tasks or --benchmark")

    stage = args.stage.replace("-", "_")
    inputs = {"data_dir": args.data_dir, "backbone": args.backbone, "groups": args.groups, "expert": args.expert,
              "experts": args.experts, "routers": args.routers, "assembled": args.assembled}
    need(*(k for k in stages.STAGES[stage] if k in inputs))
    needs_tasks = "tasks" in stages.STAGES[stage] or (stage == "expert" and not args.groups)
    tasks = task_list() if needs_tasks else None  # expert without --groups: no grouping, all --tasks
    stages.run(stage, cfg, args.out, tasks=tasks, train_experts=args.train_experts, **inputs)
    return 0
