"""`python -m m3dt compare RESULTS_DIR REFERENCE_DIR`: a finished run beside the reference results.

The published CSVs under REFERENCE_DIR (`COMPARED`: the figures' plotted numbers, the
tables' cells including the single-task table, and `data/experts.csv`) are each matched with
the file at the same relative path under RESULTS_DIR. Rows are matched on their key columns (every
column that is not a compared value: model, n_tasks, width, task, ...); each value column is
printed as ours, reference, difference and tolerance. A difference exceeds its tolerance when

    |ours - reference| > max(SIGMAS * seed std, floor)

where the seed std is the reference's own spread over seeds (the `std` / `<value>_std`
column beside a value, when the reference had >= 2 seeds), and the floor is `ABS_TOL_SCORE`
normalised-score points for score-like columns, else `REL_TOL` times the reference's
magnitude (with `ABS_TOL_OTHER` as its least value). Exit status 1 when any difference exceeds
its tolerance or a reference file or row is missing from RESULTS_DIR; 0 otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

#: tolerances of `compare` (README "Reproducing the paper")
SIGMAS = 2.0  #: a difference within this many reference seed stds is within tolerance
ABS_TOL_SCORE = 10.0  #: normalised-score points, when the reference has no seed spread
REL_TOL = 0.25  #: other values (conflict, steps/s, ...): this fraction of the reference's magnitude ...
ABS_TOL_OTHER = 0.05  #: ... but at least this
#: columns never compared: provenance, paper numbers (the same in both), spreads and counts
NOT_VALUES = {"std", "n_seeds", "n_covered", "n_episodes", "paper", "paper_approx", "paper_row", "paper_note",
              "gap", "score_std", "conflict_std", "score_n_seeds", "conflict_n_seeds", "seed", "train_seconds",
              "threshold", "n_params"}
#: columns that identify a row, even when numeric
KEY_COLUMNS = {"kind", "row", "model", "n_tasks", "width", "n_experts", "grouping", "router", "step", "task",
               "suite", "scope", "group", "metric", "expert_kind", "status", "source", "prompt", "x", "n"}
#: what is compared, relative to both folders (a reference folder mirrors a results folder)
COMPARED = ("figures/*.csv", "tables/*.csv", "data/experts.csv")


@dataclass(frozen=True)
class Cell:
    file: str
    key: str
    column: str
    ours: float
    reference: float
    tolerance: float

    @property
    def diff(self) -> float:
        return self.ours - self.reference

    @property
    def ok(self) -> bool:
        if math.isnan(self.reference) and math.isnan(self.ours):
            return True
        return bool(abs(self.diff) <= self.tolerance)


def _is_score(column: str, file: str) -> bool:
    c = column.lower()
    return ("score" in c or c in ("mean", "diff") or c.startswith("sac_") or c.startswith("tdmpc2")
            or c.startswith("authors_") or c == "ref_gap")


def _std_of(frame, column: str):
    for cand in (f"{column}_std", column.replace("_mean", "_std"), "std" if column == "mean" else None):
        if cand and cand != column and cand in frame.columns:
            return frame[cand]
    return None


def tolerance(column: str, file: str, reference: float, seed_std: float, n_seeds: float | None) -> float:
    """The tolerance of one cell (module docstring)."""
    spread = SIGMAS * seed_std if (n_seeds is None or n_seeds >= 2) and math.isfinite(seed_std) else 0.0
    if _is_score(column, file):
        floor = ABS_TOL_SCORE
    else:
        floor = max(ABS_TOL_OTHER, REL_TOL * abs(reference)) if math.isfinite(reference) else ABS_TOL_OTHER
    return max(spread, floor)


def compare_file(ours_path: Path, ref_path: Path, name: str) -> tuple[list[Cell], list[str]]:
    """Cells of one CSV pair and the reference rows missing from ours."""
    import pandas as pd

    ref = pd.read_csv(ref_path)
    ours = pd.read_csv(ours_path)
    keys = [c for c in ref.columns if c in KEY_COLUMNS or (c not in NOT_VALUES and not pd.api.types.is_numeric_dtype(ref[c]))]
    values = [c for c in ref.columns if c not in keys and c not in NOT_VALUES and pd.api.types.is_numeric_dtype(ref[c])
              and not pd.api.types.is_bool_dtype(ref[c])]
    missing_cols = [c for c in keys + values if c not in ours.columns]
    if missing_cols:
        return [], [f"{name}: columns {missing_cols} missing from {ours_path}"]

    def label(row) -> str:
        return ", ".join(f"{k}={row[k]}" for k in keys if not (isinstance(row[k], float) and math.isnan(row[k])))

    ours_by_key = {label(r): r for _, r in ours.iterrows()}
    cells, missing = [], []
    n_seeds_col = "n_seeds" if "n_seeds" in ref.columns else None
    for i, r in ref.iterrows():
        k = label(r)
        o = ours_by_key.get(k)
        if o is None:
            missing.append(f"{name}: row [{k}] missing from {ours_path}")
            continue
        for c in values:
            std_col = _std_of(ref, c)
            seed_std = float(std_col.iloc[i]) if std_col is not None else float("nan")
            n_seeds = float(r[n_seeds_col]) if n_seeds_col and not pd.isna(r[n_seeds_col]) else None
            rv, ov = float(r[c]), float(o[c])
            cells.append(Cell(name, k, c, ov, rv, tolerance(c, name, rv, seed_std, n_seeds)))
    return cells, missing


def compare_dirs(results: Path, reference: Path) -> tuple[list[Cell], list[str]]:
    if not reference.is_dir():
        raise FileNotFoundError(f"{reference}: reference folder not found")
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: results folder not found")
    cells, problems = [], []
    ref_files = sorted({p for pattern in COMPARED for p in reference.glob(pattern)})
    if not ref_files:
        raise FileNotFoundError(f"{reference}: no CSV files to compare against")
    for ref_path in ref_files:
        rel = ref_path.relative_to(reference)
        ours_path = results / rel
        if not ours_path.is_file():
            problems.append(f"{rel}: missing from {results} (build it, e.g. `snakemake {ours_path}`)")
            continue
        c, m = compare_file(ours_path, ref_path, str(rel))
        cells += c
        problems += m
    return cells, problems


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, help="a finished run's folder (e.g. results)")
    p.add_argument("reference", type=Path, help="reference results (e.g. reference/quick)")
    p.add_argument("--csv", type=Path, help="also write every compared cell to this CSV")
    p.add_argument("--only-failures", action="store_true", help="print only cells beyond tolerance")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    cells, problems = compare_dirs(args.results, args.reference)
    bad = [c for c in cells if not c.ok]
    current = None
    for c in cells:
        if args.only_failures and c.ok:
            continue
        if c.file != current:
            current = c.file
            print(f"\n== {c.file}")
        flag = "ok" if c.ok else "EXCEEDS"
        print(f"  [{c.key}] {c.column}: ours {c.ours:.4g}  reference {c.reference:.4g}  diff {c.diff:+.4g}  "
              f"tol {c.tolerance:.3g}  {flag}")
    for p in problems:
        print(f"MISSING {p}")
    if args.csv:
        from m3dt.io import atomic_path

        frame = pd.DataFrame([dict(file=c.file, key=c.key, column=c.column, ours=c.ours, reference=c.reference,
                                   diff=c.diff, tolerance=c.tolerance, ok=c.ok) for c in cells])
        with atomic_path(args.csv) as tmp:
            frame.to_csv(tmp, index=False)
    print(f"\n{len(cells)} values compared: {len(cells) - len(bad)} within tolerance, {len(bad)} beyond; "
          f"{len(problems)} missing")
    return 1 if bad or problems else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(p)
    sys.exit(run(p.parse_args()))
