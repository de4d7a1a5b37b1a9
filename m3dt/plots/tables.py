"""The paper's tables: Table 1 (main results) and Table 2 (ablations), ours beside the paper's.

Each writes `<prefix>.csv` (long format: one row per table cell, with every number) and
`<prefix>.md` (the table as read, with the preset and notes) atomically, and returns the
long frame. Ours: mean ± sample std over seeds ("–" for the std of one seed). Paper: the
numbers of `paper_numbers.csv`, transcribed from paper.md ("≈" marks an approximate one,
"–" none given).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from m3dt.plots.common import (
    PlotDataError,
    choose,
    describe,
    fmt_mean_std,
    fmt_num,
    fmt_paper,
    integer_columns,
    markdown_table,
    mean_std,
    paper_value,
    preset_label,
    prepare_scores,
    save_table,
)

log = logging.getLogger("m3dt.plots")

_INT_COLUMNS = ("n_tasks", "n_seeds", "n_covered", "width", "n_experts", "step")
# n_covered: on the single-task gap rows, how many single-task tasks the mean covers
LONG_COLUMNS = ("kind", "row", "model", "n_tasks", "mean", "std", "n_seeds", "n_covered", "width", "n_experts",
                "grouping", "router", "step", "paper", "paper_approx", "paper_row", "paper_note", "gap")


@dataclass
class _Row:
    label: str
    model: str
    select: Callable[[pd.DataFrame], pd.DataFrame]
    paper_row: str | None
    paper_fallback: str | None = None  # a paper row used when `paper_row` has no number (flagged "†")
    experts: bool = False  # M3DT-like: one expert count per task count


def _is_dense(df: pd.DataFrame) -> pd.Series:
    return df["router"].isna() | (df["router"] == "dense")


def _cells(frame: pd.DataFrame, row: _Row, what: str, n_experts: int | None, step: int | None) -> list[dict]:
    """One dict per task count: the row's runs reduced to one configuration, mean ± std over seeds."""
    sel = row.select(frame)
    if sel.empty:
        return []
    wanted = step if step is not None and (sel["step"] == step).any() else None
    if step is not None and wanted is None:
        log.warning("%s %s: no runs at step %s; using the default choice", what, row.label, step)
    sel, _ = choose(sel, "step", f"{what} {row.label}", wanted)
    out = []
    for n, cell in sel.groupby("n_tasks"):
        if row.experts and cell["n_experts"].notna().any():
            e = n_experts if n_experts is not None and (cell["n_experts"] == n_experts).any() \
                else cell["n_experts"].max()
            if n_experts is not None and e != n_experts:
                log.warning("%s %s at %d tasks: no runs with %d experts; using %d", what, row.label, n, n_experts, e)
            cell = cell[cell["n_experts"] == e]
        cell, _ = choose(cell, "width", f"{what} {row.label} at {int(n)} tasks")
        st = mean_std(cell, ["n_tasks"]).iloc[0]
        first = cell.iloc[0]
        out.append({"kind": "score", "row": row.label, "model": row.model, "n_tasks": int(n),
                    "mean": float(st["mean"]), "std": float(st["std"]), "n_seeds": int(st["n_seeds"]),
                    "width": first["width"], "n_experts": first["n_experts"], "grouping": first["grouping"],
                    "router": first["router"], "step": first["step"]})
    return out


def _attach_paper(cell: dict, table: str, row: _Row, n_tasks: int | None) -> dict:
    p = paper_value(table, row.paper_row, n_tasks) if row.paper_row else None
    fallback = False
    if p is None and row.paper_fallback:
        p = paper_value(table, row.paper_fallback, n_tasks)
        fallback = p is not None
    cell["paper"] = p["value"] if p else np.nan
    cell["paper_text"] = p["text"] if p else ""
    cell["paper_approx"] = bool(p["approx"]) if p else False
    cell["paper_row"] = (p["row"] if p else row.paper_row) or ""
    cell["paper_note"] = (p["note"] if p else "") + (" (†)" if fallback else "")
    cell["gap"] = cell["mean"] - cell["paper"] if p and not np.isnan(cell.get("mean", np.nan)) else np.nan
    return cell


def _paper_cell(cell: dict) -> str:
    if np.isnan(cell.get("paper", np.nan)):
        return "–"
    s = fmt_paper({"value": cell["paper"], "text": cell.get("paper_text"), "approx": cell["paper_approx"]})
    return s + ("†" if "(†)" in str(cell.get("paper_note", "")) else "")


def _config_note(cells: list[dict], label: str) -> str:
    """"w=256, E=8" for what is constant over the row's task counts and not already in `label`."""
    parts = []
    for key, tag in (("width", "w"), ("n_experts", "E")):
        if f"{tag}=" in label:
            continue
        vals = {c[key] for c in cells if not pd.isna(c[key])}
        if len(vals) == 1:
            parts.append(f"{tag}={int(next(iter(vals)))}")
    return ", ".join(parts)


def _varying(cells: list[dict], key: str) -> bool:
    return len({c[key] for c in cells if not pd.isna(c[key])}) > 1


# ---------------------------------------------------------------------------------------
# Table 1
# ---------------------------------------------------------------------------------------


def _table1_rows(s: pd.DataFrame) -> tuple[list[_Row], list[str]]:
    rows = [_Row("MTDT", "mtdt", lambda d: d[d["model"] == "mtdt"], "MTDT")]
    notes = []
    for model, name in (("prompt_dt", "Prompt-DT"), ("harmodt", "HarmoDT")):
        widths = sorted(s.loc[(s["model"] == model) & s["width"].notna(), "width"].unique())
        if model == "harmodt" and not (s["model"] == "harmodt").any():
            continue
        if len(widths) >= 2:
            lo, hi = widths[0], widths[-1]
            rows.append(_Row(f"{name}-Small (w={int(lo)})", model,
                             lambda d, m=model, w=lo: d[(d["model"] == m) & (d["width"] == w)], f"{name}-Small"))
            # the width M3DT is built on, when it is neither end: the comparison M3DT's gain is measured by
            backbone = sorted(set(s.loc[(s["model"] == "m3dt") & s["width"].notna(), "width"]) & set(widths[1:-1]))
            for w in backbone:
                rows.append(_Row(f"{name} (w={int(w)}, M3DT's backbone)", model,
                                 lambda d, m=model, w=w: d[(d["model"] == m) & (d["width"] == w)], None))
            rows.append(_Row(f"{name}-Large (w={int(hi)})", model,
                             lambda d, m=model, w=hi: d[(d["model"] == m) & (d["width"] == w)], f"{name}-Large"))
            notes.append(name)
        else:
            paper_row = {128: f"{name}-Small", 1536: f"{name}-Large"}.get(int(widths[0]) if widths else -1)
            label = name + (f" (w={int(widths[0])})" if widths else "")
            rows.append(_Row(label, model, lambda d, m=model: d[d["model"] == m], paper_row))
    for grouping, label in (("random", "M3DT-Random"), ("gradient", "M3DT-Gradient")):
        rows.append(_Row(label, "m3dt",
                         lambda d, g=grouping: d[(d["model"] == "m3dt") & (d["grouping"] == g) & _is_dense(d)],
                         label, paper_fallback="M3DT" if grouping == "gradient" else None, experts=True))
    return rows, notes


def _single_task_gap(gap: pd.DataFrame, n_tasks: int, seeds: Iterable[int]) -> tuple[float, int]:
    """Mean (ours − authors) over the covered tasks of the MT-n subsets of `seeds`, and their count."""
    from m3dt import tasks as registry

    ok = gap[(gap["status"] == "ok") & gap["diff"].notna()] if "status" in gap.columns else gap[gap["diff"].notna()]
    names: set[str] = set()
    if n_tasks in registry.BENCHMARK_SIZES:
        for seed in seeds:
            if int(seed) in registry.BENCHMARK_SEEDS:
                names |= set(registry.benchmark(n_tasks, int(seed)))
    sub = ok[ok["task"].isin(names)] if names else ok
    return (float(sub["diff"].mean()) if len(sub) else np.nan), int(len(sub))


def table1(scores: pd.DataFrame, prefix: str, preset: str, single_task_gap: pd.DataFrame | None = None,
           n_experts: int | None = None, step: int | None = None) -> pd.DataFrame:
    """Main results per task count: ours (mean ± std over seeds) beside the paper's number.

    Rows: MTDT; Prompt-DT-Small/-Large (our smallest/largest width; one width: labelled by
    it) with, between them, the width M3DT's runs are built on (no paper number: the paper
    has no such row); HarmoDT-Small/-Large if model harmodt is present; M3DT-Random and M3DT-Gradient
    (model m3dt, dense router; per task count the largest expert count, or `n_experts`).
    A model with several backbone steps uses the step present at the most task counts (or
    `step`). Columns: each task count we ran. A paper number marked † is paper.md's "M3DT"
    whose grouping variant it does not state.

    `single_task_gap` (the frame of `single_task_table`) adds rows of kind "gap": our −
    paper gap of each M3DT row next to the mean our − authors gap of the single-task study
    over the covered tasks of the MT-n subsets of the seeds we ran.
    Returns the long frame (`LONG_COLUMNS`).
    """
    what = "table1"
    s = prepare_scores(scores, what)
    rows, notes = _table1_rows(s)
    cells: list[dict] = []
    per_row: dict[str, list[dict]] = {}
    for row in rows:
        rc = [_attach_paper(c, "table1", row, c["n_tasks"]) for c in _cells(s, row, what, n_experts, step)]
        per_row[row.label] = rc
        cells += rc
    if not cells:
        raise PlotDataError(f"table1 needs runs of mtdt, prompt_dt, harmodt or m3dt (dense router) at ≥1 task "
                            f"count, got none (have {describe(s)})")
    counts = sorted({c["n_tasks"] for c in cells})
    missing = [r.label for r in rows if not per_row[r.label]]
    if missing:
        log.warning("table1: no runs for row(s) %s", ", ".join(missing))

    if single_task_gap is not None:
        seeds = [int(v) for v in sorted(s["seed"].dropna().astype(int).unique())]
        for row in rows:
            for c in per_row[row.label]:
                if row.model == "m3dt" and not np.isnan(c["gap"]):
                    cells.append({"kind": "gap", "row": f"{row.label}: ours − paper", "model": "m3dt",
                                  "n_tasks": c["n_tasks"], "mean": c["gap"], "paper_row": c["paper_row"],
                                  "paper_note": c["paper_note"]})
        for n in counts:
            g, k = _single_task_gap(single_task_gap, n, seeds)
            cells.append({"kind": "gap", "row": "single-task Prompt-DT: ours − authors", "model": "prompt_dt",
                          "n_tasks": n, "mean": g, "n_seeds": len(seeds), "n_covered": k,
                          "paper_note": f"mean over {k} covered tasks of the MT-{n} subsets (seeds {seeds})"})

    long = integer_columns(pd.DataFrame(cells).reindex(columns=list(LONG_COLUMNS)), _INT_COLUMNS)

    # markdown: one line per row, "ours | paper" per task count
    header = ["model"] + [x for n in counts for x in (f"MT{n} ours", f"MT{n} paper")]
    lines = []
    for row in rows:
        rc = {c["n_tasks"]: c for c in per_row[row.label]}
        if not rc:
            continue
        cfg = _config_note(per_row[row.label], row.label)
        out = [row.label + (f" ({cfg})" if cfg else "")]
        for n in counts:
            c = rc.get(n)
            if c is None:
                paper = _attach_paper({"mean": np.nan}, "table1", row, n)
                out += ["–", _paper_cell(paper)]
                continue
            ours = fmt_mean_std(c["mean"], c["std"])
            if row.experts and _varying(per_row[row.label], "n_experts") and not pd.isna(c["n_experts"]):
                ours += f" (E={int(c['n_experts'])})"
            out += [ours, _paper_cell(c)]
        lines.append(out)
    md = [f"# Table 1: normalised score (0-100) per task count", "", f"_{preset_label(preset)}_", "",
          markdown_table(pd.DataFrame(lines, columns=header))]
    gap_cells = [c for c in cells if c["kind"] == "gap"]
    if gap_cells:
        gl = pd.DataFrame(gap_cells)
        grid = []
        for label, sub in gl.groupby("row", sort=False):
            by_n = dict(zip(sub["n_tasks"], sub["mean"]))
            ks = dict(zip(sub["n_tasks"], sub.get("n_covered", pd.Series(np.nan, index=sub.index))))
            grid.append([label] + [fmt_num(by_n.get(n), 1) + (f" (k={int(ks[n])})" if label.startswith("single")
                                                               and n in ks and not pd.isna(ks[n]) else "")
                                   for n in counts])
        md += ["", "## Fidelity: our − paper gap of M3DT beside the single-task study's our − authors gap", "",
               markdown_table(pd.DataFrame(grid, columns=["gap (score points)"] + [f"MT{n}" for n in counts])),
               "k = number of single-task tasks covered (tasks of the MT-n subsets with both scores). A "
               "single-task gap of similar size suggests the M3DT gap comes from our data/environments rather "
               "than from the method; over few tasks (k = 1: one task) it says little."]
    md += ["", "Notes:", "- ours: mean ± std over seeds (sample std; – for one seed); paper: paper.md "
           "(≈ approximate, – not given).",
           "- † paper.md gives this M3DT number without saying which grouping variant it is."] + \
        ([f"- {'/'.join(notes)}: -Small/-Large are our smallest/largest width; the paper's are 1.47M "
          f"(width 128) and 173.3M (width 1536) parameters."] if notes else [])
    if n_experts is None:
        md.append("- M3DT rows use the largest expert count run at each task count (E).")
    save_table(long, "\n".join(md), prefix)
    return long


# ---------------------------------------------------------------------------------------
# Table 2
# ---------------------------------------------------------------------------------------

ABLATION_MODELS = ("m3dt_no_grouping", "m3dt_unfrozen_experts", "m3dt_topk", "e2e_moe")

_TABLE2_ROWS = (
    _Row("M3DT-Gradient", "m3dt", lambda d: d[(d["model"] == "m3dt") & (d["grouping"] == "gradient") & _is_dense(d)],
         "M3DT-Gradient", experts=True),
    _Row("M3DT-Random", "m3dt", lambda d: d[(d["model"] == "m3dt") & (d["grouping"] == "random") & _is_dense(d)],
         "M3DT-Random", experts=True),
    _Row("No task grouping (every expert on all tasks)", "m3dt_no_grouping",
         lambda d: d[d["model"] == "m3dt_no_grouping"], "No task grouping", experts=True),
    _Row("Experts unfrozen in stage 3", "m3dt_unfrozen_experts",
         lambda d: d[d["model"] == "m3dt_unfrozen_experts"], "Experts unfrozen", experts=True),
    _Row("Noisy top-k router (k: experiments.top_k, at most E - 1)", "m3dt_topk",
         lambda d: d[(d["model"] == "m3dt_topk") | ((d["model"] == "m3dt") & (d["router"] == "topk"))],
         "Top-k router", experts=True),
    _Row("End-to-end MoE (no three-stage training)", "e2e_moe", lambda d: d[d["model"] == "e2e_moe"],
         "End-to-end MoE", experts=True),
    _Row("Prompt-DT (backbone alone, reference)", "prompt_dt", lambda d: d[d["model"] == "prompt_dt"], None),
)
_TABLE2_TEXT = {"Experts unfrozen": "“suboptimal” (no number in paper.md)"}
PAPER_TABLE2_TASKS = 160


def table2(scores: pd.DataFrame, prefix: str, preset: str, n_tasks: int | None = None,
           n_experts: int | None = None, step: int | None = None) -> pd.DataFrame:
    """Ablations at one task count (default: the largest with an ablation run), ours beside the paper's.

    Rows (paper Table 2 as paper.md describes it, plus the top-k router of Fig. 9 and
    Prompt-DT as a reference): M3DT-Gradient, M3DT-Random, no task grouping, experts
    unfrozen in stage 3, noisy top-k router, end-to-end MoE, Prompt-DT. The paper's numbers
    are at 160 tasks. A row without runs is kept, marked "not run". The expert count is the
    largest run (or `n_experts`); Prompt-DT uses the M3DT width where present.
    Returns the long frame (`LONG_COLUMNS` plus status).
    """
    what = "table2"
    s = prepare_scores(scores, what)
    abl = s[s["model"].isin(ABLATION_MODELS) | ((s["model"] == "m3dt") & (s["router"] == "topk"))]
    if n_tasks is None:
        if abl.empty:
            raise PlotDataError(f"table2 needs at least one ablation run (models {', '.join(ABLATION_MODELS)}), "
                                f"got none (have {describe(s)})")
        n_tasks = int(abl["n_tasks"].max())
    s = s[s["n_tasks"] == n_tasks]
    if s.empty:
        raise PlotDataError(f"table2 needs runs at {n_tasks} tasks, got none")
    m3 = s[(s["model"] == "m3dt") & s["width"].notna()]
    m3_width = m3["width"].iloc[0] if m3["width"].nunique() == 1 else None

    cells = []
    for row in _TABLE2_ROWS:
        frame = s
        if row.model == "prompt_dt" and m3_width is not None and ((s["model"] == "prompt_dt")
                                                                 & (s["width"] == m3_width)).any():
            frame = s[(s["model"] != "prompt_dt") | (s["width"] == m3_width)]
        got = _cells(frame, row, what, n_experts, step)
        cell = got[0] if got else {"kind": "score", "row": row.label, "model": row.model, "n_tasks": n_tasks,
                                   "mean": np.nan, "std": np.nan, "n_seeds": 0}
        cell = _attach_paper(cell, "table2", row, PAPER_TABLE2_TASKS)
        cell["status"] = "ok" if got else "not run"
        if not got:
            log.warning("table2: no runs for %r at %d tasks", row.label, n_tasks)
        cells.append(cell)
    long = integer_columns(pd.DataFrame(cells).reindex(columns=[*LONG_COLUMNS, "status"]), _INT_COLUMNS)

    lines = []
    for c, row in zip(cells, _TABLE2_ROWS):
        paper = _paper_cell(c) if not np.isnan(c["paper"]) else _TABLE2_TEXT.get(row.paper_row or "", "–")
        cfg = []
        if not pd.isna(c.get("n_experts", np.nan)):
            cfg.append(f"E={int(c['n_experts'])}")
        if not pd.isna(c.get("width", np.nan)):
            cfg.append(f"w={int(c['width'])}")
        ours = "not run" if c["status"] != "ok" else fmt_mean_std(c["mean"], c["std"])
        lines.append([row.label, ours, ", ".join(cfg), paper])
    header = ["variant", f"ours (MT{n_tasks})", "config", f"paper (MT{PAPER_TABLE2_TASKS})"]
    md = [f"# Table 2: ablations, normalised score (0-100)", "", f"_{preset_label(preset)}_", "",
          markdown_table(pd.DataFrame(lines, columns=header)), "", "Notes:",
          "- ours: mean ± std over seeds (sample std; – for one seed); paper: paper.md (≈ approximate, – not given).",
          "- End-to-end MoE: paper.md gives it only as “≈ Prompt-DT level (~68)”."]
    if n_tasks != PAPER_TABLE2_TASKS:
        md.append(f"- our runs are at {n_tasks} tasks, the paper's at {PAPER_TABLE2_TASKS}: compare the ordering "
                  f"of the rows, not the values.")
    save_table(long, "\n".join(md), prefix)
    return long
