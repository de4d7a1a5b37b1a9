"""`python -m m3dt conflict`: gradient conflict per parameter group of one checkpoint.

    python -m m3dt conflict --checkpoint runs/pdt/checkpoints/step_2000.pt \
        --benchmark 10 --data-dir results/data --out conflict.csv --meta step=2000 n_tasks=10

Writes one CSV row per parameter group (embeddings, attention, mlp, experts, routers,
other, all) with one column per metric (m3dt.analysis.conflict.METRICS), preceded by the
`--meta` columns. The measurement itself is `m3dt.analysis.measure.measure_conflict`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import yaml


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="any policy checkpoint (backbone, M3DT, baseline)")
    p.add_argument("--data-dir", required=True, help="folder of <task>.h5 files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tasks", nargs="+", metavar="T")
    src.add_argument("--benchmark", type=int, metavar="N", help="the MT-N subset (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed and batch-sampling seed")
    p.add_argument("--n-batches", type=int, default=10, help="batches averaged per task gradient (paper: 10)")
    p.add_argument("--batch-size", type=int, help="segments per batch (default: the checkpoint's)")
    p.add_argument("--metrics", nargs="+", help="metrics to compute (default: all)")
    p.add_argument("--train-mode", action=argparse.BooleanOptionalAction, default=True,
                   help="dropout on while measuring (default, the authors); --no-train-mode: dropout off")
    p.add_argument("--device", default="cpu")
    p.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE", help="constant columns, e.g. step=2000")
    p.add_argument("--out", required=True, help="output CSV")


def run(args: argparse.Namespace) -> int:
    from m3dt import tasks as registry
    from m3dt.analysis.measure import measure_conflict

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = list(args.tasks) if args.tasks else list(registry.benchmark(args.benchmark, args.seed))
    meta: dict[str, Any] = {}
    for item in args.meta:
        if "=" not in item:
            raise SystemExit(f"--meta {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        meta[k] = yaml.safe_load(v)
    measure_conflict(args.checkpoint, names, args.data_dir, args.out, seed=args.seed, n_batches=args.n_batches,
                     batch_size=args.batch_size, metrics=args.metrics, train_mode=args.train_mode,
                     device=args.device, meta=meta)
    return 0
