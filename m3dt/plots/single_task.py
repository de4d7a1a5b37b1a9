"""Single-task fidelity check: our per-task scores beside the authors' single-task Prompt-DT study.

The authors trained a 1.47M Prompt-DT on each MT160 task alone (paper Appendix A.3,
`m3dt/tasks/data/appendix_a3_single_task.csv`). The same study on our data and
environments, task by task, is the best available check that they match the authors'.
Task names are matched through the registry (`m3dt.tasks.canonical_name`: Meta-World v3
names map to the authors' v2 names); the suite of a task is the registry's.

Per-task table columns (`TABLE_COLUMNS`): task (registry name, or the name as given when
unknown), suite, ours (mean over the rows given for the task), ours_n (that number of
rows), authors, diff (ours − authors), expert (the data-collection expert's score, if
given), status:

- ok: both scores;
- missing_ours: expected (in `expected`, default every task of the authors' table) or
  listed in ours with a NaN score, but without a score of ours;
- missing_authors: a registry task we scored that the authors' table lacks;
- unknown_task: a name the registry does not know (ours or the authors');
- not_expected: an authors' task outside `expected` that we did not score (kept so the
  authors' suite means are over their whole table; not warned about).

No task is dropped; missing_ours, missing_authors and unknown_task are also logged as warnings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from m3dt.plots.common import (  # noqa: E402
    SCORE_LABEL,
    SUITE_LABELS,
    PlotDataError,
    add_footnote,
    fmt_num,
    markdown_table,
    paper_value,
    preset_label,
    save_figure,
    save_table,
    setup_style,
)

log = logging.getLogger("m3dt.plots")

TABLE_COLUMNS = ("task", "suite", "ours", "ours_n", "authors", "diff", "expert", "status")
SUITE_COLUMNS = ("suite", "n_tasks_ok", "ours_mean", "authors_mean", "diff_mean", "expert_mean", "n_expert",
                 "authors_suite_mean", "n_authors", "paper_suite_mean", "n_missing_ours", "n_missing_authors",
                 "n_unknown")
STATUSES = ("ok", "missing_ours", "missing_authors", "unknown_task", "not_expected")


def authors_table_path() -> Path:
    """The packaged copy of the authors' Appendix A.3 table."""
    return Path(str(resources.files("m3dt.tasks").joinpath("data", "appendix_a3_single_task.csv")))


def _score_column(frame: pd.DataFrame, what: str, preferred: Iterable[str]) -> str:
    for c in preferred:
        if c in frame.columns:
            return c
    numeric = [c for c in frame.columns if c not in ("task", "suite", "seed") and
               pd.api.types.is_numeric_dtype(frame[c])]
    if len(numeric) == 1:
        return numeric[0]
    raise PlotDataError(f"{what}: cannot tell the score column among {list(frame.columns)} "
                        f"(expected one of {list(preferred)} or a single numeric column)")


def _canonical(name: str) -> str | None:
    from m3dt import tasks as registry

    try:
        return registry.canonical_name(str(name).strip())
    except KeyError:
        return None


def _norm_suite(s: object) -> str:
    return "".join(ch for ch in str(s).lower() if ch.isalnum())


def _per_task(frame: pd.DataFrame, what: str, preferred: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
    """(task -> mean score, rows) for registry tasks, and the unknown names."""
    if "task" not in frame.columns:
        raise PlotDataError(f"{what}: needs a 'task' column, has {list(frame.columns)}")
    col = _score_column(frame, what, preferred)
    df = pd.DataFrame({"raw": frame["task"].astype(str), "score": pd.to_numeric(frame[col], errors="coerce")})
    df["task"] = df["raw"].map(_canonical)
    unknown = sorted(df.loc[df["task"].isna(), "raw"].unique())
    known = df[df["task"].notna()]
    g = known.groupby("task")["score"]
    return pd.DataFrame({"score": g.mean(), "n": g.count()}), unknown


def _warn(status: str, names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:12]) + (f", ... (+{len(names) - 12})" if len(names) > 12 else "")
        log.warning("single-task table: %d task(s) with status %s: %s", len(names), status, shown)


def single_task_table(ours: pd.DataFrame, authors_csv: str | os.PathLike | pd.DataFrame | None = None,
                      experts: pd.DataFrame | None = None, prefix: str | os.PathLike | None = None, *,
                      expected: Iterable[str] | None = None, preset: str | None = None) -> pd.DataFrame:
    """Per task: our score, the authors', the difference, the suite, the expert's; statuses reported.

    `ours`: columns task and score (or normalized_score; several rows per task, e.g. seeds,
    are averaged). `authors_csv`: the authors' table (default: the packaged copy), columns
    task, suite and one score column. `experts`: optional, columns task and score.
    `expected`: the tasks we meant to score (default: every task of the authors' table).
    Writes `<prefix>.csv` (per task), `<prefix>_by_suite.csv` (`single_task_suite_means`)
    and `<prefix>.md` when `prefix` is given. Returns the per-task table (`TABLE_COLUMNS`),
    ordered by suite and MT160 order, unknown names last.
    """
    from m3dt import tasks as registry

    auth_raw = authors_csv if isinstance(authors_csv, pd.DataFrame) else \
        pd.read_csv(authors_table_path() if authors_csv is None else authors_csv)
    auth, auth_unknown = _per_task(auth_raw, "single_task_table (authors)", ["score"])
    if "suite" in auth_raw.columns:  # their spelling may differ; the registry's suite is used
        for raw, suite in zip(auth_raw["task"].astype(str), auth_raw["suite"]):
            name = _canonical(raw)
            if name and _norm_suite(suite) != _norm_suite(registry.get(name).suite):
                log.warning("single-task table: authors list %s under suite %r, the registry under %r",
                            raw, suite, registry.get(name).suite)
    mine, my_unknown = _per_task(ours, "single_task_table (ours)", ["score", "normalized_score"])
    exp = None
    if experts is not None:
        exp, exp_unknown = _per_task(experts, "single_task_table (experts)",
                                     ["score", "expert_score", "normalized_score"])
        if exp_unknown:
            log.warning("single-task table: unknown task name(s) in the expert scores: %s", exp_unknown)
    if expected is None:
        want = set(auth.index)
    else:
        want = set()
        for name in expected:
            c = _canonical(name)
            if c is None:
                my_unknown.append(str(name))
            else:
                want.add(c)

    names = set(mine.index) | set(auth.index) | want
    order = {n: i for i, n in enumerate(registry.MT160)}
    suites = list(registry.SUITES)
    rows = []
    for name in sorted(names, key=lambda n: (suites.index(registry.get(n).suite), order.get(n, 1 << 30), n)):
        o = mine["score"].get(name, np.nan)
        a = auth["score"].get(name, np.nan)
        if not np.isnan(o) and not np.isnan(a):
            status = "ok"
        elif not np.isnan(o):
            status = "missing_authors"
        elif name in want or name in mine.index:
            status = "missing_ours"
        else:
            status = "not_expected"  # an authors' task outside `expected`: kept, not warned about
        rows.append({"task": name, "suite": registry.get(name).suite, "ours": o,
                     "ours_n": int(mine["n"].get(name, 0)), "authors": a, "diff": o - a,
                     "expert": exp["score"].get(name, np.nan) if exp is not None else np.nan, "status": status})
    for name, who in [(n, "ours") for n in sorted(set(my_unknown))] + [(n, "authors") for n in auth_unknown]:
        rows.append({"task": name, "suite": "unknown", "ours": np.nan, "ours_n": 0, "authors": np.nan,
                     "diff": np.nan, "expert": np.nan, "status": "unknown_task"})
        log.warning("single-task table: %s task name %r is not an MT160 task", who, name)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for status in STATUSES[1:3]:
        _warn(status, table.loc[table["status"] == status, "task"].tolist())
    if (table["status"] == "ok").sum() == 0:
        log.warning("single-task table: no task has both our and the authors' score")
    if prefix is not None:
        _write_single_task(table, prefix, preset)
    return table


def single_task_suite_means(table: pd.DataFrame) -> pd.DataFrame:
    """Per suite and "all": means over the ok tasks (ours, authors', diff, expert), the authors'
    mean over all their tasks of the suite, the paper's domain mean, and status counts."""
    from m3dt import tasks as registry

    rows = []
    for suite in [*registry.SUITES, "all"]:
        sub = table if suite == "all" else table[table["suite"] == suite]
        ok = sub[sub["status"] == "ok"]
        auth_all = sub["authors"].dropna()
        pv = paper_value("appendix_a3", suite, None, "single_task_suite_mean")
        rows.append({"suite": suite, "n_tasks_ok": len(ok), "ours_mean": ok["ours"].mean(),
                     "authors_mean": ok["authors"].mean(), "diff_mean": ok["diff"].mean(),
                     "expert_mean": ok["expert"].mean(), "n_expert": int(ok["expert"].notna().sum()),
                     "authors_suite_mean": auth_all.mean(), "n_authors": len(auth_all),
                     "paper_suite_mean": pv["value"] if pv else np.nan,
                     "n_missing_ours": int((sub["status"] == "missing_ours").sum()),
                     "n_missing_authors": int((sub["status"] == "missing_authors").sum()),
                     "n_unknown": int((sub["status"] == "unknown_task").sum())})
    return pd.DataFrame(rows, columns=list(SUITE_COLUMNS))


def _write_single_task(table: pd.DataFrame, prefix: str | os.PathLike, preset: str | None) -> None:
    means = single_task_suite_means(table)
    prefix = Path(prefix)
    fmt = table.copy()
    for c in ("ours", "authors", "diff", "expert"):
        fmt[c] = fmt[c].map(lambda v: fmt_num(v, 1))
    fm = means.copy()
    fm["suite"] = fm["suite"].map(lambda s: SUITE_LABELS.get(s, s))
    for c in ("ours_mean", "authors_mean", "diff_mean", "expert_mean", "authors_suite_mean", "paper_suite_mean"):
        fm[c] = fm[c].map(lambda v: fmt_num(v, 1))
    counts = table["status"].value_counts().reindex(STATUSES, fill_value=0)
    md = ["# Single-task Prompt-DT: ours vs the authors' (Appendix A.3)", ""]
    if preset is not None:
        md += [f"_{preset_label(preset)}_", ""]
    md += ["Status counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()), "",
           "## Per suite (means over the tasks with both scores)", "", markdown_table(fm), "",
           "authors_suite_mean: the authors' mean over all their tasks of the suite; paper_suite_mean: "
           "the domain mean paper.md quotes.", "", "## Per task (diff = ours − authors)", "",
           markdown_table(fmt[fmt["status"] != "not_expected"])]
    n_skip = int((table["status"] == "not_expected").sum())
    if n_skip:
        md += ["", f"{n_skip} authors' tasks outside the expected set (status not_expected) are in the CSV only."]
    save_table(table, "\n".join(md), prefix)
    from m3dt.io import atomic_path

    with atomic_path(prefix.parent / (prefix.name + "_by_suite.csv")) as tmp:
        means.to_csv(tmp, index=False)


def single_task_figure(table: pd.DataFrame, prefix: str | os.PathLike, preset: str) -> pd.DataFrame:
    """Left: ours vs the authors' score per task (status ok), diagonal, coloured by suite.
    Right: per-suite means, ours beside the authors' (over the same tasks).

    Returns the plotted numbers: kind (task | suite_mean), task, suite, ours, authors, n.
    """
    ok = table[table["status"] == "ok"] if "status" in table.columns else table.dropna(subset=["ours", "authors"])
    if ok.empty:
        raise PlotDataError("single_task_figure needs ≥1 task with both our and the authors' score, got none "
                            f"(statuses: {table['status'].value_counts().to_dict() if 'status' in table else {}})")
    means = single_task_suite_means(table)
    means = means[means["n_tasks_ok"] > 0]
    data = pd.concat([
        ok[["task", "suite", "ours", "authors"]].assign(kind="task", n=1),
        means.rename(columns={"ours_mean": "ours", "authors_mean": "authors", "n_tasks_ok": "n"})[
            ["suite", "ours", "authors", "n"]].assign(kind="suite_mean", task=""),
    ], ignore_index=True)[["kind", "task", "suite", "ours", "authors", "n"]]

    setup_style()
    fig, (ax, axb) = plt.subplots(1, 2, figsize=(7.0, 3.2), constrained_layout=True,
                                  gridspec_kw={"width_ratios": [1, 1.15]})
    suites = [s for s in SUITE_LABELS if s in set(ok["suite"])]
    colors = {s: f"C{i}" for i, s in enumerate(SUITE_LABELS)}
    for s in suites:
        sub = ok[ok["suite"] == s]
        ax.scatter(sub["authors"], sub["ours"], s=16, alpha=0.8, color=colors[s], edgecolor="none",
                   label=f"{SUITE_LABELS[s]} ({len(sub)})")
    lo = min(0.0, float(np.nanmin(ok[["ours", "authors"]].to_numpy())))
    hi = max(100.0, float(np.nanmax(ok[["ours", "authors"]].to_numpy())))
    pad = 0.03 * (hi - lo)
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", zorder=0)
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal",
           xlabel="authors' score (0-100)", ylabel="our score (0-100)", title="single-task Prompt-DT, per task")
    ax.legend(frameon=False, loc="lower right", title="suite (tasks)")

    bars = means[means["suite"] != "all"].reset_index(drop=True)
    bars = pd.concat([bars, means[means["suite"] == "all"]], ignore_index=True)
    x = np.arange(len(bars))
    axb.bar(x - 0.2, bars["authors_mean"], 0.38, color="0.85", edgecolor="0.4", hatch="///", lw=0.6,
            label="authors")
    axb.bar(x + 0.2, bars["ours_mean"], 0.38, color=[colors.get(s, "0.25") for s in bars["suite"]], label="ours")
    for i, r in bars.iterrows():
        top = np.nanmax([r["authors_mean"], r["ours_mean"]])
        axb.text(i, top + 1.5, f"n={int(r['n_tasks_ok'])}", ha="center", va="bottom", fontsize=7)
    short = {"metaworld": "Meta-\nWorld", "dmc": "DMC", "ant_dir": "Ant-\nDir", "cheetah_vel": "Cheetah-\nVel"}
    axb.set_xticks(x, [short.get(s, s) for s in bars["suite"]])
    axb.set(ylabel=SCORE_LABEL, ylim=(0, 125), yticks=[0, 20, 40, 60, 80, 100], title="per-suite mean (same tasks)")
    from matplotlib.patches import Patch

    axb.legend(handles=[Patch(facecolor="0.85", edgecolor="0.4", hatch="///", lw=0.6, label="authors"),
                        Patch(facecolor="0.25", label="ours (colour = suite)")],
               frameon=False, loc="upper center", ncols=2)
    axb.grid(axis="y", alpha=0.3)
    add_footnote(fig, preset, f"{len(ok)} tasks with both scores; "
                              f"{int((table.get('status') == 'missing_ours').sum()) if 'status' in table else 0} "
                              "expected tasks without our score")
    save_figure(fig, prefix, data)
    return data
