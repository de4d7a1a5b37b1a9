"""Input formats, collection, paper numbers and atomic output for every figure and table.

Two tidy frames feed every plot; the workflow builds them, the CLI reads them back from CSV.

**Scores frame** (one row per trained-and-evaluated run; `SCORES_COLUMNS`):

=================  ==========================================================================
column             meaning
=================  ==========================================================================
model              mtdt | prompt_dt | m3dt | harmodt | e2e_moe | m3dt_no_grouping |
                   m3dt_unfrozen_experts | m3dt_topk (`MODELS`)
n_tasks            benchmark size of the run (int: 10, 20, 40, 80, 120, 160 or a reduced one)
seed               seed of the run (int; also selects the MT-n subset)
width              transformer width (int; NaN if unknown)
n_experts          number of experts (int or NaN for dense models)
grouping           random | gradient | none (NaN for models without experts)
router             dense | topk (NaN for models without a router)
step               training step of the backbone the run was built on (Fig. 7; NaN if unknown)
score              mean normalised score over the run's tasks, 0-100 (the summary's "all" row)
score_<suite>      optional: the same over one suite (metaworld, dmc, ant_dir, cheetah_vel)
n_params           optional: parameter count, as the paper counts them (axis labels when present;
                   `collect_scores` takes it from the summary's `n_params` column)
=================  ==========================================================================

Only `model`, `n_tasks`, `seed` and `score` are required; missing optional columns are read
as NaN (`prepare_scores`). Extra columns are kept.

**Conflict frame**: the CSVs of `m3dt.analysis.conflict.write_conflict_csv`, concatenated
(`collect_conflict`): meta columns (the workflow passes `model, n_tasks, seed, step`), then
`group` (embeddings, attention, mlp, experts, routers, other, all), then one column per
metric (`CONFLICT_METRICS`). A conflict value is a number in the metric's own units (e.g.
`cosine_to_mean` = 1 − mean cos(g_i, ḡ), in [0, 2]).

Statistics: "mean ± std over seeds" uses the sample standard deviation (ddof = 1); with one
seed the std is NaN and printed as "–".

Outputs: a figure writes `<prefix>.pdf`, `<prefix>.png` and `<prefix>.csv` (the numbers it
plots); a table writes `<prefix>.csv` (long format, one row per cell) and `<prefix>.md`.
Every file is written to a temporary name and renamed into place (`m3dt.io.atomic_path`),
and every figure/table states the preset it came from (`preset_label`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from m3dt.io import atomic_path  # noqa: E402

log = logging.getLogger("m3dt.plots")

MODELS = ("mtdt", "prompt_dt", "m3dt", "harmodt", "e2e_moe",
          "m3dt_no_grouping", "m3dt_unfrozen_experts", "m3dt_topk")
SUITE_NAMES = ("metaworld", "dmc", "ant_dir", "cheetah_vel")  # = m3dt.tasks.SUITES keys
SUITE_LABELS = {"metaworld": "Meta-World", "dmc": "DMControl", "ant_dir": "Ant-Dir",
                "cheetah_vel": "Cheetah-Vel"}
SCORES_COLUMNS = ("model", "n_tasks", "seed", "width", "n_experts", "grouping", "router", "step", "score")
REQUIRED_SCORES = ("model", "n_tasks", "seed", "score")
SUMMARY_REQUIRED = ("scope", "score_mean")
# Same names and order as m3dt.analysis.conflict.GROUP_ORDER / METRICS (checked by the tests;
# not imported so that plotting does not import torch).
CONFLICT_GROUPS = ("embeddings", "attention", "mlp", "experts", "routers", "other", "all")
MODULE_GROUPS = ("embeddings", "attention", "mlp", "experts", "routers")
CONFLICT_METRICS = ("cosine_to_mean", "sign_disagreement", "pairwise_negative_cosine",
                    "negative_pair_fraction", "mean_pairwise_cosine")
METRIC_LABELS = {
    "cosine_to_mean": "gradient conflict\n(1 − mean cos to mean grad.)",
    "sign_disagreement": "gradient conflict\n(sign disagreement)",
    "pairwise_negative_cosine": "gradient conflict\n(mean max(0, −cos) over pairs)",
    "negative_pair_fraction": "gradient conflict\n(fraction of opposing pairs)",
    "mean_pairwise_cosine": "mean pairwise cosine\n(similarity, not conflict)",
}
SCORE_LABEL = "normalised score (0-100)"
TASKS_LABEL = "number of tasks"

PRESET_NOTES = {
    "smoke": "smoke test: tiny tasks and steps, numbers are meaningless",
    "quick": "reduced scale: fewer tasks, seeds and steps than the paper",
    "quick-large": "reduced scale: fewer tasks, seeds and steps than the paper",
    "paper": "paper scale",
}


class PlotDataError(ValueError):
    """The frame lacks what a figure or table needs; the message names both."""


# ---------------------------------------------------------------------------------------
# Presets and style
# ---------------------------------------------------------------------------------------


def preset_label(preset: str) -> str:
    """`"preset: quick (reduced scale: ...)"`; a preset already carrying a note is kept as is."""
    preset = str(preset).strip()
    note = PRESET_NOTES.get(preset)
    return f"preset: {preset} ({note})" if note else f"preset: {preset}"


STYLE_RC = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def setup_style() -> None:
    """Seaborn "ticks" theme at paper size (fonts 8-9 pt)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="ticks", rc=STYLE_RC)


def add_footnote(fig: plt.Figure, preset: str, extra: str = "") -> None:
    """The preset (and an optional note) in small grey type below everything else in `fig`.

    Call it last: the figure is laid out once to find its lowest artist (axis labels,
    outside legends), and the note goes just below (the tight bbox of `save_figure` keeps it).
    """
    text = preset_label(preset) + (f"\n{extra}" if extra else "")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bottom = fig.get_tightbbox(renderer).y0  # inches, may be < 0
    left = min(0.0, fig.get_tightbbox(renderer).x0)
    w, h = fig.get_size_inches()
    for leg in fig.legends:  # pin figure legends where the layout put them: a tight bbox would move them
        bb = leg.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        leg.borderaxespad = 0.0
        leg.set_loc("lower left")
        leg.set_bbox_to_anchor((bb.x0, bb.y0), transform=fig.transFigure)
    fig.text(left / w + 0.005, (bottom - 0.06) / h, text, fontsize=6.5, color="0.35", ha="left", va="top")
    layout = fig.get_layout_engine()
    if layout is not None:  # freeze the layout found above, so the note keeps its place
        fig.set_layout_engine("none")


# ---------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------


#: the narrowest score axis a figure draws (normalised points): a difference of a few points,
#: within the seed spread at reduced scale, must not fill the plot and look like an effect.
MIN_SCORE_SPAN = 20.0


def score_ylim(values: Iterable[float], min_span: float = MIN_SCORE_SPAN) -> tuple[float, float]:
    """Y limits for a normalised-score axis: every value in view with a 5% margin, at least
    `min_span` points wide (centred on the values), never below 0 and never above 100 unless a
    value is (scores above 100 are possible: better than the expert)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    assert v.size, "score_ylim needs at least one finite value"
    lo, hi = float(v.min()), float(v.max())
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    top = 100.0 if v.max() <= 100.0 else float(v.max()) * 1.02
    if lo < 0:
        lo, hi = 0.0, min(top, hi - lo)
    if hi > top:
        lo, hi = max(0.0, lo - (hi - top)), top
    return lo, hi


def _paths(prefix: str | os.PathLike, *suffixes: str) -> list[Path]:
    prefix = Path(prefix)
    if prefix.suffix in {".pdf", ".png", ".csv", ".md"}:
        prefix = prefix.with_suffix("")
    return [prefix.parent / (prefix.name + s) for s in suffixes]


def save_figure(fig: plt.Figure, prefix: str | os.PathLike, data: pd.DataFrame) -> list[Path]:
    """Write `<prefix>.pdf`, `.png` and `.csv` (the plotted numbers), each atomically; close `fig`.

    Whole-number count columns of `data` become nullable integers (in place)."""
    pdf, png, csv = _paths(prefix, ".pdf", ".png", ".csv")
    integer_columns(data, ("n_tasks", "n_experts", "width", "step", "n_seeds", "score_n_seeds",
                           "conflict_n_seeds", "n"))
    try:
        for path, fmt in ((pdf, "pdf"), (png, "png")):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, bbox_inches="tight", pad_inches=0.03)
        with atomic_path(csv) as tmp:
            data.to_csv(tmp, index=False)
    finally:
        plt.close(fig)
    log.info("wrote %s.{pdf,png,csv}", Path(pdf).with_suffix(""))
    return [pdf, png, csv]


def save_table(data: pd.DataFrame, markdown: str, prefix: str | os.PathLike) -> list[Path]:
    """Write `<prefix>.csv` and `<prefix>.md`, each atomically."""
    csv, md = _paths(prefix, ".csv", ".md")
    with atomic_path(csv) as tmp:
        data.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    log.info("wrote %s.{csv,md}", Path(csv).with_suffix(""))
    return [csv, md]


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table of `frame` (strings as they are; no external dependency)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if _isnan(v) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------


def _isnan(v: Any) -> bool:
    try:
        return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
    except TypeError:
        return False


def fmt_num(v: Any, digits: int = 1) -> str:
    return "–" if _isnan(v) else f"{float(v):.{digits}f}"


def fmt_mean_std(mean: Any, std: Any, digits: int = 1) -> str:
    """"80.1 ± 1.2"; a missing std (one seed) is "–"; a missing mean is "–"."""
    if _isnan(mean):
        return "–"
    return f"{float(mean):.{digits}f} ± {fmt_num(std, digits)}"


def mean_std(frame: pd.DataFrame, by: Sequence[str], value: str = "score") -> pd.DataFrame:
    """Mean, sample std (ddof 1; NaN for one value) and count of `value` per `by` group."""
    g = frame.groupby(list(by), dropna=False)[value]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n_seeds": g.count()}).reset_index()
    return out


# ---------------------------------------------------------------------------------------
# Frames: validation and collection
# ---------------------------------------------------------------------------------------


def prepare_scores(scores: pd.DataFrame, what: str = "scores") -> pd.DataFrame:
    """A copy of a scores frame with every optional column present and numeric types fixed."""
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in REQUIRED_SCORES if c not in scores.columns]
    if missing:
        raise PlotDataError(f"{what}: the scores frame lacks column(s) {missing}; has {list(scores.columns)}")
    df = scores.copy()
    for col in SCORES_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    for col in ("n_tasks", "seed", "width", "n_experts", "step", "score", "n_params",
                *(f"score_{s}" for s in SUITE_NAMES)):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["model"] = df["model"].astype(str)
    for col in ("grouping", "router"):
        df[col] = df[col].astype(object).where(df[col].notna(), np.nan)
    unknown = sorted(set(df["model"]) - set(MODELS))
    if unknown:
        log.warning("%s: unknown model name(s) %s (known: %s)", what, unknown, ", ".join(MODELS))
    return df


def prepare_conflict(conflict: pd.DataFrame, metric: str, what: str = "conflict") -> pd.DataFrame:
    """A copy of a conflict frame, checked to hold `group`, `model`, `n_tasks` and `metric`."""
    if not isinstance(conflict, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame, got {type(conflict).__name__}")
    need = ["model", "n_tasks", "group", metric]
    missing = [c for c in need if c not in conflict.columns]
    if missing:
        extra = f" (known metrics: {', '.join(CONFLICT_METRICS)})" if metric in missing else ""
        raise PlotDataError(f"{what}: the conflict frame lacks column(s) {missing}{extra}; "
                            f"has {list(conflict.columns)}")
    df = conflict.copy()
    for col in ("seed", "step"):
        if col not in df.columns:
            df[col] = np.nan
    for col in ("n_tasks", "seed", "step", metric):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["model"] = df["model"].astype(str)
    df["group"] = df["group"].astype(str)
    return df


def collect_scores(summary_paths: Sequence[str | os.PathLike], params: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One scores-frame row per evaluation summary CSV, joined with that run's parameters.

    `summary_paths[i]` is a CSV of `m3dt.evaluate.scores.summarize` (columns scope,
    n_tasks, n_episodes, score_mean, score_std, success_rate); `params[i]` supplies model,
    n_tasks, seed, width, n_experts, grouping, router, step, ... (every key becomes a
    column). The "all" row gives `score` (and `success_rate`), each suite row gives
    `score_<suite>`; `source` records the path. A summary without an "all" row is an error.
    """
    summary_paths, params = list(summary_paths), list(params)
    if len(summary_paths) != len(params):
        raise ValueError(f"collect_scores: {len(summary_paths)} summary paths but {len(params)} parameter dicts")
    rows = []
    for path, p in zip(summary_paths, params):
        summary = pd.read_csv(path)
        missing = [c for c in SUMMARY_REQUIRED if c not in summary.columns]
        if missing:
            raise PlotDataError(f"collect_scores: {path} lacks column(s) {missing}; has {list(summary.columns)}")
        by_scope = {str(r["scope"]): r for _, r in summary.iterrows()}
        if "all" not in by_scope:
            raise PlotDataError(f"collect_scores: {path} has no 'all' row (scopes: {sorted(by_scope)})")
        lacking = [k for k in ("model", "seed") if _isnan(dict(p).get(k))]
        if lacking:
            raise PlotDataError(f"collect_scores: the parameters of {path} lack {lacking}; got {dict(p)}")
        row: dict[str, Any] = {c: np.nan for c in SCORES_COLUMNS}
        row.update(dict(p))
        allrow = by_scope["all"]
        if _isnan(row.get("n_tasks")) and "n_tasks" in summary.columns:
            row["n_tasks"] = int(allrow["n_tasks"])
        elif "n_tasks" in summary.columns and not _isnan(allrow.get("n_tasks")) \
                and int(allrow["n_tasks"]) != int(row["n_tasks"]):
            log.warning("collect_scores: %s evaluated %d tasks but the run is MT-%s", path,
                        int(allrow["n_tasks"]), row["n_tasks"])
        row["score"] = float(allrow["score_mean"])
        if _isnan(row.get("n_params")) and "n_params" in summary.columns and not _isnan(allrow["n_params"]):
            row["n_params"] = int(allrow["n_params"])  # the evaluated model's count (evaluation summary)
        if "success_rate" in summary.columns:
            row["success_rate"] = float(allrow["success_rate"])
        for scope, r in by_scope.items():
            if scope != "all":
                row[f"score_{scope}"] = float(r["score_mean"])
        row["source"] = str(path)
        rows.append(row)
    frame = pd.DataFrame(rows)
    lead = [c for c in SCORES_COLUMNS if c in frame.columns]
    suites = [f"score_{s}" for s in SUITE_NAMES if f"score_{s}" in frame.columns]
    rest = [c for c in frame.columns if c not in lead and c not in suites]
    return prepare_scores(frame[lead + suites + rest], "collect_scores")


def collect_conflict(paths: Iterable[str | os.PathLike],
                     params: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Concatenate conflict CSVs (`write_conflict_csv`); each must hold a `group` column.

    `params` (one dict per path, e.g. model, n_tasks, seed, step) become constant columns,
    replacing columns of the same name.
    """
    paths = list(paths)
    if params is not None and len(params) != len(paths):
        raise PlotDataError(f"collect_conflict: {len(paths)} paths but {len(params)} parameter sets")
    frames = []
    for i, path in enumerate(paths):
        frame = pd.read_csv(path)
        if "group" not in frame.columns:
            raise PlotDataError(f"collect_conflict: {path} has no 'group' column; has {list(frame.columns)}")
        for k, v in (params[i] if params is not None else {}).items():
            frame[k] = v
        frames.append(frame)
    if not frames:
        raise PlotDataError("collect_conflict: no conflict CSVs given")
    return pd.concat(frames, ignore_index=True, sort=False)


# ---------------------------------------------------------------------------------------
# Selection helpers
# ---------------------------------------------------------------------------------------


def require(frame: pd.DataFrame, what: str, need: str) -> pd.DataFrame:
    """`frame` if non-empty, else a `PlotDataError` "<what> needs <need>, got none"."""
    if frame.empty:
        raise PlotDataError(f"{what} needs {need}, got none")
    return frame


def describe(frame: pd.DataFrame, cols: Sequence[str] = ("model", "n_tasks")) -> str:
    """Short description of which (model, n_tasks) a frame holds, for error messages."""
    if frame.empty:
        return "an empty frame"
    cols = [c for c in cols if c in frame.columns]
    pairs = frame[cols].drop_duplicates().sort_values(cols).astype(str)
    items = ["/".join(r) for r in pairs.itertuples(index=False)]
    more = f" (+{len(items) - 12} more)" if len(items) > 12 else ""
    return f"{'/'.join(cols)} = " + ", ".join(items[:12]) + more


def choose(frame: pd.DataFrame, col: str, what: str, value: Any = None) -> tuple[pd.DataFrame, Any]:
    """Keep the rows of one value of `col`.

    `value` given: those rows (an error if none). Otherwise, if `col` has several values:
    the value present at the most task counts, then in the most rows, then the largest
    (logged). NaN counts as a value of its own.
    """
    if value is not None:
        sel = frame[frame[col] == value]
        if sel.empty:
            have = sorted(frame[col].dropna().unique().tolist())
            raise PlotDataError(f"{what} needs {col} = {value}, got {have or 'none'}")
        return sel, value
    vals = frame[col]
    distinct = vals.drop_duplicates().tolist()
    if len(distinct) <= 1:
        return frame, (distinct[0] if distinct else None)
    key = vals.fillna(-math.inf) if pd.api.types.is_numeric_dtype(vals) else vals.fillna("")
    stats = frame.assign(_k=key).groupby("_k").agg(cells=("n_tasks", "nunique"), rows=("n_tasks", "size"))
    stats = stats.reset_index().sort_values(["cells", "rows", "_k"], ascending=False)
    best = stats["_k"].iloc[0]
    sel = frame[key == best]
    chosen = sel[col].iloc[0]
    log.info("%s: several values of %s %s; using %s (pass %s= to choose)", what, col,
             sorted(map(str, distinct)), chosen, col)
    return sel, chosen


# ---------------------------------------------------------------------------------------
# Paper numbers
# ---------------------------------------------------------------------------------------

PAPER_NUMBERS_COLUMNS = ("table", "row", "model", "grouping", "n_tasks", "metric", "value", "approx",
                         "source", "note")


@lru_cache(maxsize=1)
def _paper_numbers_cached() -> pd.DataFrame:
    text = resources.files("m3dt.plots").joinpath("paper_numbers.csv").read_text()
    from io import StringIO

    frame = pd.read_csv(StringIO(text), dtype={"table": str, "row": str, "model": str, "grouping": str,
                                               "metric": str, "source": str, "note": str})
    frame["text"] = pd.read_csv(StringIO(text), dtype=str)["value"].str.strip()  # as paper.md writes it
    missing = [c for c in PAPER_NUMBERS_COLUMNS if c not in frame.columns]
    assert not missing, f"paper_numbers.csv lacks {missing}"
    frame["n_tasks"] = pd.to_numeric(frame["n_tasks"], errors="coerce")
    frame["approx"] = frame["approx"].astype(str).str.lower().isin(["true", "1", "yes"])
    return frame


def paper_numbers() -> pd.DataFrame:
    """The numbers of `paper_numbers.csv` (transcribed from paper.md; see its `source` column)."""
    return _paper_numbers_cached().copy()


def paper_value(table: str, row: str, n_tasks: int | None, metric: str = "score") -> dict[str, Any] | None:
    """{value, approx, note, row} of one paper number, or None when paper.md gives none."""
    pn = _paper_numbers_cached()
    sel = pn[(pn["table"] == table) & (pn["row"] == row) & (pn["metric"] == metric)]
    sel = sel[sel["n_tasks"].isna()] if n_tasks is None else sel[sel["n_tasks"] == n_tasks]
    if sel.empty:
        return None
    r = sel.iloc[0]
    return {"value": float(r["value"]), "text": str(r["text"]), "approx": bool(r["approx"]),
            "note": "" if _isnan(r["note"]) else str(r["note"]), "row": row}


def fmt_paper(p: Mapping[str, Any] | None) -> str:
    """The number as paper.md writes it ("72.80"), "≈68" for an approximate one, "–" for none."""
    if not p or _isnan(p.get("value")):
        return "–"
    text = p.get("text") or f"{float(p['value']):g}"
    return f"≈{text}" if p.get("approx") else str(text)


def integer_columns(frame: pd.DataFrame, cols: Iterable[str]) -> pd.DataFrame:
    """Columns holding only whole numbers (and NaN) as nullable integers, so CSVs read "8", not "8.0"."""
    for c in cols:
        if c in frame.columns:
            v = pd.to_numeric(frame[c], errors="coerce")
            if v.notna().any() and (v.dropna() % 1 == 0).all():
                frame[c] = v.astype("Int64")
    return frame
