"""The experts' figures: quality per task (`experts.png/.pdf`) and SAC learning curves (`curve.png`,
`expert_curves.png`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from m3dt import tasks
from m3dt.experts.config import ExpertConfig
from m3dt.experts.curve import plot_curves  # noqa: F401 - the curve figure lives with the curves
from m3dt.io import atomic_path


def plot_expert_quality(csv_path: str | os.PathLike, out_paths: str | os.PathLike | Sequence[str | os.PathLike],
                        threshold: float | None = None) -> list[Path]:
    """Bar per task of the expert's normalised score (error bar: std over episodes), one
    facet per suite, a dashed line at the near-optimal threshold; flagged bars hatched.
    `threshold` defaults to `ExpertConfig().near_optimal_threshold`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    threshold = ExpertConfig().near_optimal_threshold if threshold is None else float(threshold)
    frame = pd.read_csv(csv_path)
    suites = [s for s in tasks.SUITES if s in set(frame["suite"])]
    widths = [max(2.0, 0.28 * int((frame["suite"] == s).sum()) + 1.0) for s in suites]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(suites), figsize=(sum(widths), 3.6), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    palette = sns.color_palette("deep", len(tasks.SUITES))
    for ax, suite in zip(axes[0], suites):
        sub = frame[frame["suite"] == suite].reset_index(drop=True)
        color = palette[list(tasks.SUITES).index(suite)]
        x = np.arange(len(sub))
        bars = ax.bar(x, sub["score_mean"], yerr=sub["score_std"], color=color, capsize=2, edgecolor="black",
                      linewidth=0.5, error_kw={"linewidth": 0.8})
        for bar, flagged in zip(bars, sub["flagged"].astype(bool)):
            if flagged:
                bar.set_hatch("///")
                bar.set_facecolor("lightgray")
        ax.axhline(threshold, color="crimson", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xticks(x, sub["task"], rotation=90, fontsize=6)
        ax.set_title(f"{suite} ({len(sub)} tasks, {int(sub['flagged'].sum())} flagged)", fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_xlim(-0.6, len(sub) - 0.4)
    axes[0][0].set_ylabel("expert normalised score")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    paths = [Path(out_paths)] if isinstance(out_paths, (str, os.PathLike)) else [Path(p) for p in out_paths]
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", dpi=150)
    plt.close(fig)
    return paths


