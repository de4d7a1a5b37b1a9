r"""`python -m m3dt plot`: re-plot a figure or table from already-collected CSVs.

Examples:
  python -m m3dt plot --figure fig2 --scores scores.csv --conflict c1.csv c2.csv \
      --out results/figures/fig2 --preset quick
  python -m m3dt plot --figure table1 --scores scores.csv --single-task-gap st.csv --out results/tables/table1
  python -m m3dt plot --figure single_task --ours per_task.csv --out results/tables/single_task
  python -m m3dt plot --figure collect_scores --manifest runs.csv --out results/scores
      (runs.csv: a column `summary` = evaluation summary CSV, the other columns = run parameters)
"""

from __future__ import annotations

import argparse
import inspect
import logging
from pathlib import Path

FIGURES = ("fig2", "fig3", "fig6", "fig7", "fig9", "fig12")
TABLES = ("table1", "table2")
OTHER = ("single_task", "collect_scores", "collect_conflict")
NEEDS = {"fig2": ("scores", "conflict"), "fig3": ("scores",), "fig6": ("scores",), "fig7": ("scores", "conflict"),
         "fig9": ("scores",), "fig12": ("conflict",), "table1": ("scores",), "table2": ("scores",),
         "single_task": ("ours",), "collect_scores": ("manifest",), "collect_conflict": ("conflict",)}

log = logging.getLogger("m3dt.plots")


def add_args(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n", 1)[1]
    p.add_argument("--figure", required=True, choices=[*FIGURES, *TABLES, *OTHER],
                   help="what to make (figure, table, single-task table + figure, or a collection step)")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="output prefix: PREFIX.{pdf,png,csv} for figures, PREFIX.{csv,md} for tables")
    p.add_argument("--preset", default="unspecified", help="preset name written into the figure/table")
    p.add_argument("--scores", nargs="+", metavar="CSV", help="collected scores frame(s) (concatenated)")
    p.add_argument("--conflict", nargs="+", metavar="CSV", help="conflict CSVs of write_conflict_csv")
    p.add_argument("--metric", default="cosine_to_mean", help="conflict metric to plot (fig2, fig7, fig12)")
    p.add_argument("--n-tasks", type=int, help="task count to use (fig7, fig9, fig12, table2)")
    p.add_argument("--n-experts", type=int, help="expert count to use (table1, table2)")
    p.add_argument("--grouping", choices=["random", "gradient", "none"], help="M3DT grouping (fig6, fig7, fig9)")
    p.add_argument("--step", type=int, help="backbone step to use (fig6, table1, table2)")
    p.add_argument("--width", type=int, help="Prompt-DT width (fig2)")
    p.add_argument("--single-task-gap", metavar="CSV", help="table1: per-task single-task table (its .csv)")
    p.add_argument("--ours", nargs="+", metavar="CSV", help="single_task: our per-task scores (task, score)")
    p.add_argument("--authors", metavar="CSV", help="single_task: authors' table (default: the packaged copy)")
    p.add_argument("--experts", metavar="CSV", help="single_task: expert scores (task, score)")
    p.add_argument("--expected", nargs="+", metavar="TASK", help="single_task: tasks expected to have our score")
    p.add_argument("--manifest", metavar="CSV", help="collect_scores: column summary + run parameters")


def _read(paths: list[str]):
    import pandas as pd

    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def _kwargs(fn, args: argparse.Namespace) -> dict:
    names = inspect.signature(fn).parameters
    opts = {"metric": args.metric, "n_tasks": args.n_tasks, "n_experts": args.n_experts,
            "grouping": args.grouping, "step": args.step, "width": args.width}
    return {k: v for k, v in opts.items() if k in names and v is not None}


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from m3dt import plots
    from m3dt.io import atomic_path

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    what = args.figure
    missing = [f"--{n.replace('_', '-')}" for n in NEEDS[what] if not getattr(args, n)]
    if missing:
        raise SystemExit(f"plot --figure {what} needs {' and '.join(missing)}")
    out = args.out
    if what == "collect_scores":
        manifest = pd.read_csv(args.manifest)
        if "summary" not in manifest.columns:
            raise SystemExit(f"{args.manifest}: needs a 'summary' column, has {list(manifest.columns)}")
        base = Path(args.manifest).parent
        paths = [p if Path(p).is_absolute() or Path(p).exists() else str(base / p) for p in manifest["summary"]]
        params = [{k: v for k, v in r.items() if k != "summary" and not pd.isna(v)}
                  for r in manifest.to_dict("records")]
        frame = plots.collect_scores(paths, params)
        with atomic_path(out if out.endswith(".csv") else out + ".csv") as tmp:
            frame.to_csv(tmp, index=False)
        return 0
    if what == "collect_conflict":
        frame = plots.collect_conflict(args.conflict)
        with atomic_path(out if out.endswith(".csv") else out + ".csv") as tmp:
            frame.to_csv(tmp, index=False)
        return 0
    if what == "single_task":
        experts = pd.read_csv(args.experts) if args.experts else None
        table = plots.single_task_table(_read(args.ours), args.authors, experts, out,
                                        expected=args.expected, preset=args.preset)
        if (table["status"] == "ok").any():
            plots.single_task_figure(table, out + "_scatter", args.preset)
        return 0
    fn = getattr(plots, what)
    kw = _kwargs(fn, args)
    if what == "fig12":
        fn(_read(args.conflict), out, args.preset, **kw)
    elif what in ("fig2", "fig7"):
        fn(_read(args.scores), plots.collect_conflict(args.conflict), out, args.preset, **kw)
    elif what == "table1" and args.single_task_gap:
        fn(_read(args.scores), out, args.preset, single_task_gap=pd.read_csv(args.single_task_gap), **kw)
    else:
        fn(_read(args.scores), out, args.preset, **kw)
    return 0
