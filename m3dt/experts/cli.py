"""`python -m m3dt data train-expert` and `data experts-table`: argument parsing and run functions."""

from __future__ import annotations

from pathlib import Path

from m3dt import tasks
from m3dt.experts.config import ExpertConfig, load_config_file
from m3dt.experts.names import expert_kind, expert_names, read_expert_json
from m3dt.experts.sac import train_expert
from m3dt.experts.table import expert_table_rows, write_expert_table


def _train_args(p) -> None:
    p.add_argument("names", nargs="+", help="experts to train: Meta-World/DMC task names, ant-dir, cheetah-vel "
                                            "(a task of a family selects the family)")
    p.add_argument("--expert-root", default="results/experts", help="experts are written to <root>/<name>/")
    p.add_argument("--config", help="YAML/JSON file of ExpertConfig fields (an `experts:` key is used if present)")
    p.add_argument("--steps", type=int, help="override the SAC steps of every named expert")
    p.add_argument("--seed", type=int, help="override ExpertConfig.seed")
    p.add_argument("--device", help="override ExpertConfig.device (auto, cpu, cuda)")
    p.add_argument("--overwrite", action="store_true", help="retrain even if a finished expert exists")
    p.add_argument("--log", help="also log to this file")



def _train_run(args) -> int:
    from m3dt.io import log_to

    cfg = ExpertConfig.from_dict(load_config_file(args.config, "experts"),
                                 f"{args.config}:experts" if args.config else "experts")
    if args.seed is not None:
        cfg.seed = args.seed
    if args.device:
        cfg.device = args.device
    with log_to(args.log) as log:
        names = expert_names(args.names)
        if args.steps is not None:
            cfg.sac_steps_overrides.update({n: args.steps for n in names if expert_kind(n) != "scripted"})
        for n in names:
            train_expert(n, cfg, Path(args.expert_root) / n, log=log, overwrite=args.overwrite)
    return 0


def _table_args(p) -> None:
    p.add_argument("--tasks", nargs="*", help="task names (default: --benchmark/--seed, or every task found)")
    p.add_argument("--benchmark", type=int, metavar="N", help="the MT-N subset")
    p.add_argument("--benchmark-seed", type=int, default=0)
    p.add_argument("--expert-root", default="results/experts")
    p.add_argument("--csv", default="results/data/experts.csv")
    p.add_argument("--figure", nargs="*", default=["results/data/experts.png", "results/data/experts.pdf"])
    p.add_argument("--threshold", type=float, help="recompute flags against this threshold")


def _table_run(args) -> int:
    if args.tasks:
        names = list(args.tasks)
    elif args.benchmark:
        names = list(tasks.benchmark(args.benchmark, args.benchmark_seed))
    else:
        names = [t for t in tasks.MT160 if read_expert_json(t, args.expert_root) is not None
                 and t in read_expert_json(t, args.expert_root).get("evaluation", {})]
    cfg = ExpertConfig(near_optimal_threshold=args.threshold) if args.threshold is not None else None
    rows = expert_table_rows(names, args.expert_root, cfg)
    write_expert_table(rows, args.csv)
    if args.figure:
        from m3dt.plots.experts import plot_expert_quality  # matplotlib only when a figure is asked for

        plot_expert_quality(args.csv, args.figure, threshold=args.threshold)
    n_flag = sum(r["flagged"] for r in rows)
    print(f"{len(rows)} experts -> {args.csv}; {n_flag} flagged")
    return 0
