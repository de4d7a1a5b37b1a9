"""The expert-quality table (`results/data/experts.csv`) and the published reference scores beside it."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from m3dt import tasks
from m3dt.experts.config import ExpertConfig
from m3dt.experts.names import EXPERT_JSON, expert_dir, read_expert_json
from m3dt.io import atomic_path

LOG = logging.getLogger("m3dt.experts")

TABLE_COLUMNS = ["task", "suite", "expert_kind", "train_steps", "score_mean", "score_std", "n_episodes", "flagged"]


def expert_table_rows(task_names: Iterable[str], expert_root: str | os.PathLike,
                      cfg: ExpertConfig | None = None, log: logging.Logger | None = None) -> list[dict[str, Any]]:
    """One row per task from its expert's `expert.json` (FileNotFoundError if not evaluated).
    With `cfg`, `flagged` is recomputed against `cfg`'s thresholds."""
    log = log or LOG
    rows = []
    refs = reference_scores()
    for t in task_names:
        spec = tasks.get(t)
        meta = read_expert_json(spec.name, expert_root)
        ev = (meta or {}).get("evaluation", {}).get(spec.name)
        if ev is None:
            raise FileNotFoundError(f"{spec.name}: no evaluation in {expert_dir(spec.name, expert_root) / EXPERT_JSON}")
        flagged = bool(ev["score_mean"] < cfg.threshold(spec.name)) if cfg is not None else bool(ev.get("flagged"))
        if flagged:
            log.warning("expert of %s is FLAGGED: normalised score %.1f", spec.name, ev["score_mean"])
        row = {"task": spec.name, "suite": spec.suite, "expert_kind": meta["kind"],
               "source": meta.get("source", "scripted" if meta["kind"] == "scripted" else "trained"),
               "train_steps": int(meta.get("train_steps", 0)), "score_mean": ev["score_mean"],
               "score_std": ev["score_std"], "n_episodes": ev["n_episodes"], "flagged": flagged}
        row.update(refs.get(spec.name, {c: float("nan") for c in REFERENCE_COLUMNS}))
        best = np.nanmax([row["authors_promptdt_single"], row["sac_1000k"], -np.inf])
        row["ref_gap"] = round(float(row["score_mean"] - best), 2) if math.isfinite(best) else float("nan")
        row["far_below_ref"] = bool(math.isfinite(row["ref_gap"]) and row["ref_gap"] < -REFERENCE_GAP_FLAG)
        if row["far_below_ref"]:
            log.warning("expert of %s scores %.1f, %.1f below its best reference (%.1f)", spec.name,
                        row["score_mean"], -row["ref_gap"], best)
        rows.append(row)
    return rows


#: published single-task scores beside each expert (normalised like our scores): the authors'
#: single-task Prompt-DT on their data (paper Appendix A.3, a proxy of their data's quality)
#: and, for DMC, SAC and TD-MPC2 from TD-MPC2's released results (README "Experts")
REFERENCE_COLUMNS = ("authors_promptdt_single", "sac_100k", "sac_1000k", "tdmpc2_1000k")
#: an expert more than this many points below its best reference is marked `far_below_ref`
REFERENCE_GAP_FLAG = 25.0


def reference_scores() -> dict[str, dict[str, float]]:
    """task -> REFERENCE_COLUMNS (NaN where no reference exists), from the registry's data files."""
    from importlib import resources

    import pandas as pd

    data = resources.files("m3dt.tasks").joinpath("data")
    a3 = pd.read_csv(str(data.joinpath("appendix_a3_single_task.csv")))
    pub = pd.read_csv(str(data.joinpath("published_dmc_scores.csv")))
    out: dict[str, dict[str, float]] = {}
    for t in tasks.MT160:
        out[t] = {c: float("nan") for c in REFERENCE_COLUMNS}
    for _, r in a3.iterrows():
        if r["task"] in out:
            out[r["task"]]["authors_promptdt_single"] = float(r["single_task_promptdt_1.47M_score"])
    for _, r in pub.iterrows():
        if r["task"] in out:
            for c in ("sac_100k", "sac_1000k", "tdmpc2_1000k"):
                out[r["task"]][c] = float(r[c])
    return out


def write_expert_table(rows: Iterable[Mapping[str, Any]], csv_path: str | os.PathLike) -> Path:
    """`results/data/experts.csv`: columns `TABLE_COLUMNS`, written atomically."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"expert table rows lack columns {missing}")
    frame["flagged"] = frame["flagged"].astype(bool)
    extra = [c for c in frame.columns if c not in TABLE_COLUMNS]
    with atomic_path(csv_path) as tmp:
        frame[TABLE_COLUMNS + extra].to_csv(tmp, index=False)
    return Path(csv_path)
