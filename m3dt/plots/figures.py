"""The paper's figures (Fig. 2, 3, 6, 7, 9, 12), one function each.

Every function takes tidy frames (`m3dt.plots.common` documents the scores and conflict
frames), writes `<prefix>.pdf`, `<prefix>.png` and `<prefix>.csv` (the plotted numbers)
atomically, states `preset` in the figure, and returns the plotted numbers. Scores are
mean ± sample std over seeds (std NaN for one seed: no error bar). Missing data raises
`PlotDataError` naming the figure and what it lacks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from m3dt.plots.common import (  # noqa: E402
    METRIC_LABELS,
    MODULE_GROUPS,
    SCORE_LABEL,
    TASKS_LABEL,
    PlotDataError,
    add_footnote,
    choose,
    describe,
    mean_std,
    paper_value,
    prepare_conflict,
    prepare_scores,
    require,
    save_figure,
    score_ylim,
    setup_style,
)

log = logging.getLogger("m3dt.plots")

MODEL_LABELS = {"mtdt": "MTDT", "prompt_dt": "Prompt-DT", "m3dt": "M3DT", "harmodt": "HarmoDT",
                "e2e_moe": "end-to-end MoE", "m3dt_no_grouping": "M3DT, no grouping",
                "m3dt_unfrozen_experts": "M3DT, unfrozen experts", "m3dt_topk": "M3DT, top-k router"}


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, f"gradient conflict ({metric})")


def _steps(x: float, _pos: object = None) -> str:
    """400000 -> "400k", 1500 -> "1.5k"."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def _errorbar(ax: plt.Axes, x, stats: pd.DataFrame, **kw) -> None:
    yerr = stats["std"].to_numpy(float)
    yerr = None if np.all(np.isnan(yerr)) else np.nan_to_num(yerr)
    ax.errorbar(x, stats["mean"], yerr=yerr, capsize=2.5, lw=1.4, ms=4, **kw)


def _bars(stats: pd.DataFrame) -> list[float]:
    """Every value a mean ± std error bar reaches (for the axis limits)."""
    sd = stats["std"].fillna(0.0)
    return [*stats["mean"], *(stats["mean"] + sd), *(stats["mean"] - sd)]


def _conflict_ylim(ax: plt.Axes, stats: pd.DataFrame) -> None:
    """A conflict measure (all means ≥ 0) from 0 to 1.1 × its highest error bar, so its rise is
    not exaggerated; a similarity (may be negative) keeps Matplotlib's limits."""
    if (stats["mean"] >= 0).all():
        ax.set_ylim(0, 1.1 * float(np.nanmax(_bars(stats))) or None)


def _row_major(handles: list, ncols: int) -> list:
    """Reorder legend handles so that a column-filled legend of `ncols` columns reads row by row."""
    rows = -(-len(handles) // ncols)
    grid = [handles[i:i + ncols] for i in range(0, len(handles), ncols)]
    return [grid[r][c] for c in range(ncols) for r in range(rows) if c < len(grid[r])]


def _category_axis(ax: plt.Axes, values: Sequence[int]) -> dict[int, int]:
    """Evenly spaced x positions for task counts (10, 20, 40, ... as categories)."""
    pos = {int(v): i for i, v in enumerate(sorted(set(int(v) for v in values)))}
    ax.set_xticks(list(pos.values()), [str(v) for v in pos])
    ax.set_xlim(-0.4, len(pos) - 0.6)
    return pos


def _dense_m3dt(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[(scores["model"] == "m3dt") & (scores["router"].isna() | (scores["router"] == "dense"))]


def _topk_m3dt(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[(scores["model"] == "m3dt_topk") | ((scores["model"] == "m3dt") & (scores["router"] == "topk"))]


def _final_step(frame: pd.DataFrame, keys: Sequence[str], step: float | None, what: str) -> pd.DataFrame:
    """Rows at `step`, or (None) at the last step of each `keys` group (the final checkpoint)."""
    if step is not None:
        return require(frame[frame["step"] == step], what, f"conflict rows at step {step}")
    if frame["step"].isna().all():
        return frame
    last = frame.groupby(list(keys), dropna=False)["step"].transform("max")
    return frame[(frame["step"] == last) | frame["step"].isna()]


# ---------------------------------------------------------------------------------------
# Fig. 2
# ---------------------------------------------------------------------------------------


def fig2(scores: pd.DataFrame, conflict: pd.DataFrame, prefix: str, preset: str,
         metric: str = "cosine_to_mean", width: int | None = None, conflict_model: str = "prompt_dt",
         conflict_step: int | None = None) -> pd.DataFrame:
    """Prompt-DT score (mean ± std over seeds) and stage-1 gradient conflict vs task count.

    Left: Prompt-DT score (model prompt_dt; one width: `width`, else the M3DT backbone width
    if Prompt-DT was run at it, else the width present at the most task counts).
    Right: conflict `metric` of group "all" for `conflict_model`, at the last step of each
    run (or `conflict_step`), mean ± std over seeds.
    Returns n_tasks, score_mean/std/n_seeds, conflict_mean/std/n_seeds, width, metric.
    """
    what = "fig2"
    s = prepare_scores(scores, what)
    pdt = require(s[s["model"] == "prompt_dt"], what, f"model prompt_dt at ≥1 task count (have {describe(s)})")
    if width is None:  # the stage-1 backbone: Prompt-DT at the M3DT width, when there is one
        m3_widths = s.loc[s["model"] == "m3dt", "width"].dropna().unique()
        if len(m3_widths) == 1 and (pdt["width"] == m3_widths[0]).any():
            width = m3_widths[0]
    pdt, width = choose(pdt, "width", what, width)
    pdt, _ = choose(pdt, "step", what)
    sc = mean_std(pdt, ["n_tasks"])
    c = prepare_conflict(conflict, metric, what)
    cm = require(c[(c["model"] == conflict_model) & (c["group"] == "all")], what,
                 f"conflict rows of model {conflict_model} in group 'all' (have {describe(c)})")
    cm = _final_step(cm, ["n_tasks", "seed"], conflict_step, what)
    cc = mean_std(cm, ["n_tasks"], metric)
    data = sc.rename(columns={"mean": "score_mean", "std": "score_std", "n_seeds": "score_n_seeds"}).merge(
        cc.rename(columns={"mean": "conflict_mean", "std": "conflict_std", "n_seeds": "conflict_n_seeds"}),
        on="n_tasks", how="outer").sort_values("n_tasks").reset_index(drop=True)
    data["n_tasks"] = data["n_tasks"].astype(int)
    data["width"] = width
    data["metric"] = metric
    paper = [_paper_prompt_dt(int(n)) for n in data["n_tasks"]]
    data["paper"] = [p["value"] if p else math.nan for p in paper]
    data["paper_row"] = [p["row"] if p else "" for p in paper]

    setup_style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.0, 2.8), constrained_layout=True)
    pos = _category_axis(ax1, data["n_tasks"])
    _category_axis(ax2, data["n_tasks"])
    _errorbar(ax1, [pos[int(n)] for n in sc["n_tasks"]], sc, marker="o", color="C0", label="ours")
    has_paper = data["paper"].notna()
    if has_paper.any():  # the paper's Prompt-DT at the same task counts (Table 1), for scale
        ax1.plot([pos[int(n)] for n in data.loc[has_paper, "n_tasks"]], data.loc[has_paper, "paper"], ls="none",
                 marker="o", mfc="none", color="0.45", label="paper (Table 1)")
        ax1.legend(loc="lower left", frameon=False)
    # the whole 0-100 range: a 2-point difference must not look like a collapse
    top = max(100.0, float(np.nanmax(sc["mean"] + sc["std"].fillna(0.0))) * 1.05)
    ax1.set(xlabel=TASKS_LABEL, ylabel=SCORE_LABEL, ylim=(0, top),
            title=f"Prompt-DT score" + ("" if _nan(width) else f" (width {int(width)})"))
    _errorbar(ax2, [pos[int(n)] for n in cc["n_tasks"]], cc, marker="s", color="C3")
    ax2.set(xlabel=TASKS_LABEL, ylabel=_metric_label(metric), title="gradient conflict (all parameters)")
    _conflict_ylim(ax2, cc)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    add_footnote(fig, preset, f"mean ± std over seeds; conflict: {conflict_model}, metric {metric}")
    save_figure(fig, prefix, data)
    return data


def _paper_prompt_dt(n_tasks: int) -> dict | None:
    """The paper's Prompt-DT score at `n_tasks` (Table 1: the Small row where given, else Large)."""
    return paper_value("table1", "Prompt-DT-Small", n_tasks) or paper_value("table1", "Prompt-DT-Large", n_tasks)


def _nan(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ---------------------------------------------------------------------------------------
# Fig. 3
# ---------------------------------------------------------------------------------------


def fig3(scores: pd.DataFrame, prefix: str, preset: str) -> pd.DataFrame:
    """Heatmap of the Prompt-DT score (mean over seeds) over width (rows) × task count (columns).

    Returns width, n_tasks, mean, std, n_seeds (and n_params when the frame has it).
    """
    import seaborn as sns

    what = "fig3"
    s = prepare_scores(scores, what)
    pdt = require(s[s["model"] == "prompt_dt"], what, f"model prompt_dt at ≥1 task count (have {describe(s)})")
    pdt = require(pdt[pdt["width"].notna()], what, "model prompt_dt with a width column")
    pdt, _ = choose(pdt, "step", what)
    data = mean_std(pdt, ["width", "n_tasks"])
    if "n_params" in pdt.columns and pdt["n_params"].notna().any():
        data = data.merge(pdt.groupby("width")["n_params"].median().reset_index(), on="width", how="left")
        data["n_params"] = data["n_params"].round().astype("Int64")  # a count (NA where unknown)
    data = data.sort_values(["width", "n_tasks"]).reset_index(drop=True)
    data[["width", "n_tasks"]] = data[["width", "n_tasks"]].astype(int)

    grid = data.pivot(index="width", columns="n_tasks", values="mean").sort_index(ascending=False)
    stds = data.pivot(index="width", columns="n_tasks", values="std").reindex_like(grid)
    annot = grid.copy().astype(object)
    for w in grid.index:
        for n in grid.columns:
            m, sd = grid.loc[w, n], stds.loc[w, n]
            annot.loc[w, n] = "" if np.isnan(m) else (f"{m:.1f}" if np.isnan(sd) else f"{m:.1f}\n±{sd:.1f}")

    def row_label(w: int) -> str:
        if "n_params" in data.columns:
            p = data.loc[data["width"] == w, "n_params"].iloc[0]
            if not pd.isna(p):
                return f"{w} ({int(p) / 1e6:.3g}M)"
        return str(w)

    setup_style()
    n_rows, n_cols = grid.shape
    fig, ax = plt.subplots(figsize=(max(3.5, 0.62 * n_cols + 1.9), max(2.2, 0.42 * n_rows + 1.3)),
                           constrained_layout=True)
    vmin, vmax = score_ylim(data["mean"])  # ≥ 20 points of colour scale: noise is not a colour change
    sns.heatmap(grid.astype(float), annot=annot.to_numpy(), fmt="", cmap="viridis", ax=ax, linewidths=0.5,
                vmin=vmin, vmax=vmax,
                linecolor="white", annot_kws={"fontsize": 7},
                cbar_kws={"label": SCORE_LABEL, "shrink": 0.9})
    ax.set_yticklabels([row_label(int(w)) for w in grid.index], rotation=0)
    ax.set(xlabel=TASKS_LABEL, ylabel="width" + (" (parameters)" if "n_params" in data.columns else ""),
           title="Prompt-DT score by model size")
    add_footnote(fig, preset, "mean over seeds")
    save_figure(fig, prefix, data)
    return data


# ---------------------------------------------------------------------------------------
# Fig. 6
# ---------------------------------------------------------------------------------------


def fig6(scores: pd.DataFrame, prefix: str, preset: str, grouping: str | None = None,
         step: int | None = None, task_counts: Sequence[int] | None = None) -> pd.DataFrame:
    """M3DT score vs number of experts, one line per task count; Prompt-DT as a dashed reference.

    M3DT: model m3dt, dense router; one grouping (`grouping`, or the most common one) and
    one backbone step. Task counts: `task_counts`, or every one run with ≥ 2 expert counts
    (all of them if none is). Prompt-DT: at the M3DT width where present.
    Returns series (m3dt | prompt_dt), n_tasks, n_experts, mean, std, n_seeds, grouping, width.
    """
    what = "fig6"
    s = prepare_scores(scores, what)
    m = require(_dense_m3dt(s), what, f"model m3dt (dense router) at ≥1 task count (have {describe(s)})")
    m = require(m[m["n_experts"].notna()], what, "model m3dt rows with n_experts set")
    m, grouping = choose(m, "grouping", what, grouping)
    m, _ = choose(m, "step", what, step)
    m, _ = choose(m, "width", what)
    if task_counts is not None:
        m = require(m[m["n_tasks"].isin(list(task_counts))], what, f"model m3dt at task counts {list(task_counts)}")
    else:
        n_e = m.groupby("n_tasks")["n_experts"].nunique()
        if (n_e >= 2).any():
            m = m[m["n_tasks"].isin(n_e[n_e >= 2].index)]
        else:
            log.warning("fig6: no task count has M3DT at two or more expert counts; plotting single points")
    ms = mean_std(m, ["n_tasks", "n_experts"]).assign(series="m3dt", grouping=grouping)
    widths = m["width"].dropna().unique()
    pdt = s[(s["model"] == "prompt_dt") & s["n_tasks"].isin(ms["n_tasks"])]
    if len(widths) == 1 and (pdt["width"] == widths[0]).any():
        pdt = pdt[pdt["width"] == widths[0]]
    elif not pdt.empty:
        pdt, _ = choose(pdt, "width", what)
    if not pdt.empty:
        pdt, _ = choose(pdt, "step", what)
    ps = mean_std(pdt, ["n_tasks"]).assign(series="prompt_dt", n_experts=np.nan) if not pdt.empty else None
    if ps is None:
        log.warning("fig6: no Prompt-DT runs at task counts %s; no reference lines", sorted(ms["n_tasks"].unique()))
    data = pd.concat([ms, ps], ignore_index=True) if ps is not None else ms
    data["width"] = widths[0] if len(widths) == 1 else np.nan
    data = data[["series", "n_tasks", "n_experts", "mean", "std", "n_seeds", "grouping", "width"]]

    setup_style()
    fig, ax = plt.subplots(figsize=(3.6, 2.8), constrained_layout=True)
    counts = sorted(ms["n_tasks"].unique())
    palette = lambda i: f"C{i % 10}"  # noqa: E731
    handles = []
    for i, n in enumerate(counts):
        sub = ms[ms["n_tasks"] == n].sort_values("n_experts")
        _errorbar(ax, sub["n_experts"], sub, marker="o", color=palette(i))
        handles.append(Line2D([], [], color=palette(i), marker="o", label=f"{int(n)} tasks"))
        if ps is not None and (ps["n_tasks"] == n).any():
            ref = ps[ps["n_tasks"] == n].iloc[0]
            ax.axhline(ref["mean"], ls="--", lw=1.1, color=palette(i), alpha=0.8)
    handles.append(Line2D([], [], color="0.3", ls="-", label="M3DT"))
    if ps is not None:
        handles.append(Line2D([], [], color="0.3", ls="--", label="Prompt-DT"))
    ax.set_xticks(sorted(ms["n_experts"].unique()))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
    ax.set_ylim(*score_ylim(_bars(ms) + ([] if ps is None else list(ps["mean"]))))
    ax.set(xlabel="number of experts", ylabel=SCORE_LABEL,
           title="M3DT: scaling the number of experts" + ("" if _nan(grouping) else f"\n({grouping} grouping)"))
    ax.grid(axis="y", alpha=0.3)
    ncols = min(len(handles), 3)
    fig.legend(handles=_row_major(handles, ncols), loc="outside lower center", ncols=ncols, frameon=False)
    pv = paper_value("fig6", "M3DT", 160, "gain_8_to_40_experts_pct")
    note = f"paper: +{pv['value']:g}% at 160 tasks from 8 to 40 experts" if pv else ""
    add_footnote(fig, preset, note)
    save_figure(fig, prefix, data)
    return data


# ---------------------------------------------------------------------------------------
# Fig. 7
# ---------------------------------------------------------------------------------------


def fig7(scores: pd.DataFrame, conflict: pd.DataFrame, prefix: str, preset: str,
         metric: str = "cosine_to_mean", n_tasks: int | None = None, grouping: str | None = None,
         conflict_model: str = "prompt_dt") -> pd.DataFrame:
    """M3DT score vs the stage-1 step of its backbone, with that backbone's conflict curve.

    Scores: model m3dt (dense router) by `step`, at `n_tasks` (default: the task count with
    the most distinct steps, then the largest). Conflict: group "all" of `conflict_model` at
    the same task count, by step, on the right axis. Both mean ± std over seeds.
    Returns quantity (m3dt_score | conflict), step, mean, std, n_seeds, n_tasks, metric, grouping.
    """
    what = "fig7"
    s = prepare_scores(scores, what)
    m = require(_dense_m3dt(s), what, f"model m3dt at ≥1 task count (have {describe(s)})")
    m = require(m[m["step"].notna()], what, "model m3dt rows with the backbone step set (column step)")
    if n_tasks is None:
        per = m.groupby("n_tasks")["step"].nunique().reset_index().sort_values(["step", "n_tasks"])
        n_tasks = int(per["n_tasks"].iloc[-1])
    m = require(m[m["n_tasks"] == n_tasks], what, f"model m3dt at {n_tasks} tasks")
    m, grouping = choose(m, "grouping", what, grouping)
    m, _ = choose(m, "n_experts", what)
    m, _ = choose(m, "width", what)
    if m["step"].nunique() < 2:
        log.warning("fig7: M3DT at %d tasks has only one backbone step (%s)", n_tasks, m["step"].unique())
    ms = mean_std(m, ["step"]).assign(quantity="m3dt_score")
    c = prepare_conflict(conflict, metric, what)
    cm = c[(c["model"] == conflict_model) & (c["group"] == "all") & (c["n_tasks"] == n_tasks) & c["step"].notna()]
    require(cm, what, f"conflict rows of model {conflict_model}, group 'all', at {n_tasks} tasks with a step "
            f"(have {describe(c)})")
    cs = mean_std(cm, ["step"], metric).assign(quantity="conflict")
    data = pd.concat([ms, cs], ignore_index=True).assign(n_tasks=n_tasks, metric=metric, grouping=grouping)
    data = data[["quantity", "step", "mean", "std", "n_seeds", "n_tasks", "metric", "grouping"]]

    setup_style()
    fig, ax = plt.subplots(figsize=(3.8, 2.8), constrained_layout=True)
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)
    _errorbar(ax, ms["step"], ms, marker="o", color="C0", label="M3DT score")
    _errorbar(ax2, cs["step"], cs, marker="s", color="C3", ls="--", label="backbone conflict")
    ax.set_xlabel("backbone (stage-1) training step")
    ax.set_ylabel(SCORE_LABEL, color="C0")
    ax.set_ylim(*score_ylim(_bars(ms)))
    ax2.set_ylabel(_metric_label(metric), color="C3")
    _conflict_ylim(ax2, cs)
    ax.tick_params(axis="y", colors="C0")
    ax2.tick_params(axis="y", colors="C3")
    ax.xaxis.set_major_formatter(FuncFormatter(_steps))
    ax.set_title(f"M3DT vs backbone length ({n_tasks} tasks)")
    ax.grid(axis="y", alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncols=2, frameon=False)
    pv = paper_value("fig7", "M3DT", None, "best_backbone_step")
    note = ""
    if pv:
        lo, hi = float(np.nanmin(data["step"])), float(np.nanmax(data["step"]))
        if lo <= pv["value"] <= hi:
            ax.axvline(pv["value"], color="0.5", ls=":", lw=1)
            ax.text(pv["value"], 0.02, " paper best", fontsize=7, color="0.4", va="bottom",
                    transform=ax.get_xaxis_transform())
        note = f"paper: best backbone near {'≈' if pv['approx'] else ''}{_steps(pv['value'])} steps"
    add_footnote(fig, preset, note)
    save_figure(fig, prefix, data)
    return data


# ---------------------------------------------------------------------------------------
# Fig. 9
# ---------------------------------------------------------------------------------------


def fig9(scores: pd.DataFrame, prefix: str, preset: str, n_tasks: int | None = None,
         grouping: str | None = None) -> pd.DataFrame:
    """Dense softmax router vs noisy top-k router: score vs number of experts.

    Dense: model m3dt (router dense or unset); top-k: model m3dt_topk (or m3dt with router
    topk). Every task count where both exist (or `n_tasks`), one line style per task count.
    Returns router, n_tasks, n_experts, mean, std, n_seeds, grouping (and top_k, the k of
    each top-k run, where the frame has that column).
    """
    what = "fig9"
    s = prepare_scores(scores, what)
    dense = require(_dense_m3dt(s), what, f"dense-router M3DT runs (model m3dt) (have {describe(s)})")
    topk = require(_topk_m3dt(s), what, f"top-k router runs (model m3dt_topk or router=topk) (have {describe(s)})")
    common = sorted(set(dense["n_tasks"]) & set(topk["n_tasks"]))
    if n_tasks is not None:
        common = [n for n in common if n == n_tasks]
    if not common:
        raise PlotDataError(f"fig9 needs dense and top-k runs at a common task count"
                            f"{'' if n_tasks is None else f' ({n_tasks})'}; dense at "
                            f"{sorted(dense['n_tasks'].unique())}, top-k at {sorted(topk['n_tasks'].unique())}")
    dense = dense[dense["n_tasks"].isin(common) & dense["n_experts"].notna()]
    topk = topk[topk["n_tasks"].isin(common) & topk["n_experts"].notna()]
    require(dense, what, "dense-router runs with n_experts set")
    require(topk, what, "top-k runs with n_experts set")
    dense, grouping = choose(dense, "grouping", what, grouping)
    if grouping is not None and (topk["grouping"] == grouping).any():
        topk = topk[topk["grouping"] == grouping]
    dense, _ = choose(dense, "step", what)
    dense, width = choose(dense, "width", what)
    if width is not None and (topk["width"] == width).any():
        topk = topk[topk["width"] == width]
    topk, _ = choose(topk, "step", what)
    data = pd.concat([mean_std(dense, ["n_tasks", "n_experts"]).assign(router="dense"),
                      mean_std(topk, ["n_tasks", "n_experts"]).assign(router="topk")], ignore_index=True)
    data["grouping"] = grouping
    cols = ["router", "n_tasks", "n_experts", "mean", "std", "n_seeds", "grouping"]
    note = "mean ± std over seeds"
    if "top_k" in topk.columns and topk["top_k"].notna().any():  # k per expert count (the workflow records it)
        ks = topk.groupby("n_experts")["top_k"].max()
        data["top_k"] = data["n_experts"].map(ks).where(data["router"] == "topk")
        cols.append("top_k")
        note = "top-k: " + ", ".join(f"k = {int(k)} of {int(e)}" for e, k in ks.items() if not _nan(k)) + "; " + note
    data = data[cols]

    setup_style()
    fig, ax = plt.subplots(figsize=(3.6, 2.8), constrained_layout=True)
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    colors = {"dense": "C0", "topk": "C1"}
    names = {"dense": "dense router", "topk": "noisy top-k router"}
    handles = [Line2D([], [], color=colors[r], lw=1.4, label=names[r]) for r in ("dense", "topk")]
    for j, n in enumerate(common):
        for router in ("dense", "topk"):
            sub = data[(data["router"] == router) & (data["n_tasks"] == n)].sort_values("n_experts")
            if sub.empty:
                continue
            _errorbar(ax, sub["n_experts"], sub, marker=markers[j % 4], ls=styles[j % 4], color=colors[router])
        if len(common) > 1:
            handles.append(Line2D([], [], color="0.3", marker=markers[j % 4], ls=styles[j % 4],
                                  label=f"{int(n)} tasks"))
    ax.set_xticks(sorted(data["n_experts"].unique()))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
    ax.set_ylim(*score_ylim(_bars(data)))
    title = "dense vs top-k router" + (f" ({int(common[0])} tasks)" if len(common) == 1 else "")
    ax.set(xlabel="number of experts", ylabel=SCORE_LABEL, title=title)
    ax.grid(axis="y", alpha=0.3)
    ncols = 2 if len(handles) <= 4 else 3  # column 1: the routers, then the task counts
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)
    add_footnote(fig, preset, note)
    save_figure(fig, prefix, data)
    return data


# ---------------------------------------------------------------------------------------
# Fig. 12
# ---------------------------------------------------------------------------------------


def fig12(conflict: pd.DataFrame, prefix: str, preset: str, metric: str = "cosine_to_mean",
          n_tasks: int | None = None, models: Sequence[str] = ("m3dt", "e2e_moe"),
          step: int | None = None) -> pd.DataFrame:
    """Gradient conflict per module (embeddings, attention, mlp, experts, routers), M3DT vs end-to-end MoE.

    Per model, its last step (or `step`) at `n_tasks` (default: the largest task count both
    models have); mean ± std over seeds; grouped bars. A module a model lacks has no bar.
    Returns model, group, mean, std, n_seeds, n_tasks, step, metric.
    """
    what = "fig12"
    c = prepare_conflict(conflict, metric, what)
    c = c[c["group"].isin(MODULE_GROUPS)]
    for mdl in models:
        require(c[c["model"] == mdl], what, f"per-module conflict rows of model {mdl} (have {describe(c)})")
    common = set.intersection(*(set(c.loc[c["model"] == mdl, "n_tasks"]) for mdl in models))
    if n_tasks is None:
        if not common:
            raise PlotDataError(f"fig12 needs models {list(models)} at a common task count; have {describe(c)}")
        n_tasks = int(max(common))
    c = c[(c["n_tasks"] == n_tasks) & c["model"].isin(models)]
    for mdl in models:
        require(c[c["model"] == mdl], what, f"model {mdl} at {n_tasks} tasks")
    c = _final_step(c, ["model", "seed"], step, what)
    data = mean_std(c, ["model", "group"], metric)
    steps = c.groupby("model")["step"].max()
    data["step"] = data["model"].map(steps)
    data["n_tasks"] = n_tasks
    data["metric"] = metric
    order = {g: i for i, g in enumerate(MODULE_GROUPS)}
    data = data.sort_values(["model", "group"], key=lambda col: col.map(order) if col.name == "group"
                            else col.map({m: i for i, m in enumerate(models)})).reset_index(drop=True)
    data = data[["model", "group", "mean", "std", "n_seeds", "n_tasks", "step", "metric"]]

    setup_style()
    groups = [g for g in MODULE_GROUPS if g in set(data["group"])]
    fig, ax = plt.subplots(figsize=(4.2, 2.8), constrained_layout=True)
    n_m = len(models)
    bw = 0.8 / n_m
    labels = {"m3dt": "M3DT (three-stage)", "e2e_moe": "end-to-end MoE"}
    for i, mdl in enumerate(models):
        sub = data[data["model"] == mdl].set_index("group").reindex(groups)
        x = np.arange(len(groups)) + (i - (n_m - 1) / 2) * bw
        err = sub["std"].to_numpy(float)
        ax.bar(x, sub["mean"].to_numpy(float), bw * 0.95, yerr=None if np.all(np.isnan(err)) else np.nan_to_num(err),
               capsize=2, color=f"C{i}", label=labels.get(mdl, MODEL_LABELS.get(mdl, mdl)))
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(xlabel="module (parameter group)", ylabel=_metric_label(metric),
           title=f"gradient conflict per module ({n_tasks} tasks)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=n_m, frameon=False)
    add_footnote(fig, preset, "last checkpoint of each model; mean ± std over seeds")
    save_figure(fig, prefix, data)
    return data
