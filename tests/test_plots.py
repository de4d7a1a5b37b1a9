"""m3dt.plots: every figure and table on small synthetic frames (fast, no training)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m3dt import plots
from m3dt.plots import common
from m3dt.plots.common import PlotDataError

PRESET = "smoke"
TASK_COUNTS = (10, 20, 40)
SEEDS = (0, 1, 2)


def _score(base: float, seed: int) -> float:
    return base + (seed - 1) * 2.0  # seeds 0, 1, 2 -> base - 2, base, base + 2 (std = 2)


def synthetic_scores() -> pd.DataFrame:
    rows = []
    for n in TASK_COUNTS:
        for seed in SEEDS:
            for w in (64, 128, 256):
                rows.append(dict(model="prompt_dt", n_tasks=n, seed=seed, width=w, step=1000,
                                 score=_score(80 - n / 4 + w / 64, seed)))
            rows.append(dict(model="mtdt", n_tasks=n, seed=seed, width=128, step=1000, score=_score(70 - n / 4, seed)))
            for grouping, bonus in (("random", 0.0), ("gradient", 1.0)):
                for e in (2, 4, 8):
                    rows.append(dict(model="m3dt", n_tasks=n, seed=seed, width=128, n_experts=e, grouping=grouping,
                                     router="dense", step=1000, score=_score(82 - n / 8 + e + bonus, seed)))
            for e in (2, 4, 8):
                rows.append(dict(model="m3dt_topk", n_tasks=n, seed=seed, width=128, n_experts=e, grouping="random",
                                 router="topk", step=1000, score=_score(84 - n / 8 - e, seed)))
    # Fig. 7: M3DT at 40 tasks on backbones of other lengths (one seed)
    for st, sc in ((250, 70.0), (500, 78.0), (2000, 74.0)):
        rows.append(dict(model="m3dt", n_tasks=40, seed=0, width=128, n_experts=8, grouping="random",
                         router="dense", step=st, score=sc))
    for model, base in (("m3dt_no_grouping", 60.0), ("e2e_moe", 65.0), ("m3dt_unfrozen_experts", 72.0)):
        for seed in SEEDS:
            rows.append(dict(model=model, n_tasks=40, seed=seed, width=128, n_experts=8, step=1000,
                             score=_score(base, seed)))
    return pd.DataFrame(rows)


def synthetic_conflict() -> pd.DataFrame:
    rows = []
    for n in TASK_COUNTS:
        for seed in SEEDS:
            for step in (250, 500, 1000, 2000):
                for g in common.CONFLICT_GROUPS:
                    v = 0.1 + n / 100 + 0.05 * seed + min(step, 1000) / 10000
                    rows.append(dict(model="prompt_dt", n_tasks=n, seed=seed, step=step, group=g,
                                     cosine_to_mean=v, sign_disagreement=v / 2, pairwise_negative_cosine=v / 3,
                                     negative_pair_fraction=v / 4, mean_pairwise_cosine=1 - v))
    for model, f in (("m3dt", 1.0), ("e2e_moe", 1.6)):
        for seed in SEEDS:
            for g, base in zip(common.MODULE_GROUPS, (0.1, 0.2, 0.5, 0.3, 0.15)):
                v = base * f + 0.01 * seed
                rows.append(dict(model=model, n_tasks=40, seed=seed, step=1000, group=g, cosine_to_mean=v,
                                 sign_disagreement=v, pairwise_negative_cosine=v, negative_pair_fraction=v,
                                 mean_pairwise_cosine=1 - v))
    return pd.DataFrame(rows)


def _files(prefix: Path, exts=(".pdf", ".png", ".csv")) -> None:
    for ext in exts:
        f = prefix.parent / (prefix.name + ext)
        assert f.exists() and f.stat().st_size > 0, f"{f} not written"
    assert not list(prefix.parent.glob(".*.tmp")), "temporary files left behind"


# ---------------------------------------------------------------------------------------
# formats and collection
# ---------------------------------------------------------------------------------------


def test_constants_match_the_conflict_module():
    from m3dt.analysis import conflict

    assert common.CONFLICT_GROUPS == (*conflict.GROUP_ORDER, conflict.ALL)
    assert common.CONFLICT_METRICS == tuple(conflict.METRICS)


def test_suites_match_the_registry():
    from m3dt import tasks

    assert common.SUITE_NAMES == tuple(tasks.SUITES)


def test_collect_scores_two_summaries(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"scope": ["all", "metaworld", "dmc"], "n_tasks": [10, 6, 4], "n_episodes": [100, 60, 40],
                  "score_mean": [70.0, 80.0, 55.0], "score_std": [1, 1, 1],
                  "success_rate": [0.8, 0.8, np.nan]}).to_csv(a, index=False)
    pd.DataFrame({"scope": ["all", "ant_dir"], "n_tasks": [20, 20], "n_episodes": [20, 20], "score_mean": [60.0, 60.0],
                  "score_std": [2, 2], "success_rate": [np.nan, np.nan],
                  "n_params": [1466000, 1466000]}).to_csv(b, index=False)  # written by evaluate_to_files
    frame = plots.collect_scores([a, b], [
        {"model": "m3dt", "n_tasks": 10, "seed": 0, "width": 256, "n_experts": 8, "grouping": "random",
         "router": "dense", "step": 400},
        {"model": "prompt_dt", "n_tasks": 20, "seed": 1, "width": 128},
    ])
    assert list(frame.columns[:9]) == list(common.SCORES_COLUMNS)
    assert frame["score"].tolist() == [70.0, 60.0]
    assert frame.loc[0, "score_metaworld"] == 80.0 and frame.loc[0, "score_dmc"] == 55.0
    assert math.isnan(frame.loc[1, "score_metaworld"]) and frame.loc[1, "score_ant_dir"] == 60.0
    assert frame.loc[0, "n_experts"] == 8 and math.isnan(frame.loc[1, "n_experts"])
    assert frame["model"].tolist() == ["m3dt", "prompt_dt"]
    assert frame["source"].tolist() == [str(a), str(b)]
    assert math.isnan(frame.loc[0, "n_params"]) and frame.loc[1, "n_params"] == 1466000


def test_collect_scores_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"scope": ["metaworld"], "score_mean": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(PlotDataError, match="no 'all' row"):
        plots.collect_scores([bad], [{"model": "m3dt", "n_tasks": 10, "seed": 0}])
    good = tmp_path / "good.csv"
    pd.DataFrame({"scope": ["all"], "score_mean": [1.0]}).to_csv(good, index=False)
    with pytest.raises(PlotDataError, match="lack \\['model'\\]"):
        plots.collect_scores([good], [{"n_tasks": 10, "seed": 0}])
    with pytest.raises(ValueError, match="1 summary paths but 2"):
        plots.collect_scores([bad], [{}, {}])


def test_collect_conflict(tmp_path):
    from m3dt.analysis.conflict import write_conflict_csv

    table = pd.DataFrame({"cosine_to_mean": [0.1, 0.2]}, index=pd.Index(["mlp", "all"], name="group"))
    paths = []
    for seed in (0, 1):
        paths.append(write_conflict_csv(tmp_path / f"c{seed}.csv", table,
                                        meta={"model": "prompt_dt", "n_tasks": 10, "seed": seed, "step": 5}))
    frame = plots.collect_conflict(paths)
    assert len(frame) == 4 and set(frame["seed"]) == {0, 1}
    assert list(frame.columns) == ["model", "n_tasks", "seed", "step", "group", "cosine_to_mean"]


def test_paper_numbers_file():
    pn = plots.paper_numbers()
    assert set(common.PAPER_NUMBERS_COLUMNS) <= set(pn.columns)
    assert pn["source"].str.contains("paper.md").all()
    v = common.paper_value("table1", "M3DT-Gradient", 160)
    assert v["value"] == 80.14 and not v["approx"]
    assert common.paper_value("table2", "No task grouping", 160)["value"] == 67.3
    assert common.paper_value("table1", "MTDT", 160) is None  # paper.md gives no MTDT number


def test_preset_label():
    assert common.preset_label("quick").startswith("preset: quick (reduced scale")
    assert common.preset_label("mine") == "preset: mine"


# ---------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------


def test_fig2(tmp_path):
    data = plots.fig2(synthetic_scores(), synthetic_conflict(), tmp_path / "fig2", PRESET)
    _files(tmp_path / "fig2")
    assert (data["width"] == 128).all()  # default: Prompt-DT at the M3DT (backbone) width
    assert data["n_tasks"].tolist() == list(TASK_COUNTS)
    row = data.set_index("n_tasks").loc[10]
    assert row["score_mean"] == pytest.approx(80 - 2.5 + 2) and row["score_std"] == pytest.approx(2.0)
    # conflict at the last step (2000) of each run: 0.1 + n/100 + 0.05 seed + 0.1, mean over seeds
    assert row["conflict_mean"] == pytest.approx(0.1 + 0.1 + 0.05 + 0.1)
    assert (pd.read_csv(tmp_path / "fig2.csv")["score_mean"] == data["score_mean"]).all()
    # the paper's Prompt-DT beside ours where Table 1 gives it (Small at 10; none at 20, 40)
    paper = data.set_index("n_tasks")["paper"]
    assert paper.loc[10] == 88 and math.isnan(paper.loc[20]) and math.isnan(paper.loc[40])


def test_fig3(tmp_path):
    data = plots.fig3(synthetic_scores(), tmp_path / "fig3", PRESET)
    _files(tmp_path / "fig3")
    assert len(data) == 3 * len(TASK_COUNTS)
    cell = data[(data["width"] == 256) & (data["n_tasks"] == 20)].iloc[0]
    assert cell["mean"] == pytest.approx(80 - 5 + 4) and cell["n_seeds"] == 3
    assert "n_params" not in data.columns  # no counts in the frame: rows labelled by width only


def test_fig3_labels_rows_with_parameter_counts(tmp_path):
    import matplotlib.pyplot as plt

    s = synthetic_scores()
    counts = {64: 438000, 256: 5_300_000}  # width 128 unknown: labelled by its width alone
    s["n_params"] = s["width"].map(counts)
    shown = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):  # read the heatmap's row labels when the figure is saved
        shown.append([t.get_text() for t in fig.axes[0].get_yticklabels()])
        return real_savefig(fig, *a, **k)

    plt.Figure.savefig = spy
    try:
        data = plots.fig3(s, tmp_path / "fig3", PRESET)
    finally:
        plt.Figure.savefig = real_savefig
    assert shown and shown[0] == ["256 (5.3M)", "128", "64 (0.438M)"]
    assert data.loc[data["width"] == 64, "n_params"].tolist() == [438000] * len(TASK_COUNTS)
    assert pd.read_csv(tmp_path / "fig3.csv")["n_params"].dropna().astype(int).eq(data["n_params"].dropna()).all()


def test_fig6(tmp_path):
    data = plots.fig6(synthetic_scores(), tmp_path / "fig6", PRESET, grouping="random")
    _files(tmp_path / "fig6")
    m = data[data["series"] == "m3dt"]
    assert len(m) == 3 * len(TASK_COUNTS)  # steps 250/500/2000 of fig. 7 are not mixed in
    assert m[(m["n_tasks"] == 40) & (m["n_experts"] == 8)]["mean"].iloc[0] == pytest.approx(82 - 5 + 8)
    ref = data[data["series"] == "prompt_dt"].set_index("n_tasks")["mean"]
    assert ref.loc[10] == pytest.approx(80 - 2.5 + 2)  # the reference is Prompt-DT at the M3DT width


def test_fig7(tmp_path):
    data = plots.fig7(synthetic_scores(), synthetic_conflict(), tmp_path / "fig7", PRESET, grouping="random")
    _files(tmp_path / "fig7")
    s = data[data["quantity"] == "m3dt_score"].set_index("step")["mean"]
    assert s.index.tolist() == [250, 500, 1000, 2000] and s.loc[500] == 78.0
    c = data[data["quantity"] == "conflict"]
    assert c["step"].tolist() == [250, 500, 1000, 2000] and (c["n_tasks"] == 40).all()


def test_fig9(tmp_path):
    data = plots.fig9(synthetic_scores(), tmp_path / "fig9", PRESET)
    _files(tmp_path / "fig9")
    assert set(data["router"]) == {"dense", "topk"}
    t = data[(data["router"] == "topk") & (data["n_tasks"] == 10) & (data["n_experts"] == 8)]
    assert t["mean"].iloc[0] == pytest.approx(84 - 1.25 - 8)
    assert "top_k" not in data.columns  # no k recorded: none reported


def test_fig9_reports_k_of_each_topk_run(tmp_path):
    s = synthetic_scores()
    s["top_k"] = np.where(s["router"] == "topk", np.minimum(4, s["n_experts"] - 1), np.nan)
    data = plots.fig9(s, tmp_path / "fig9", PRESET)
    topk = data[data["router"] == "topk"]
    assert len(topk) and all(k == min(4, e - 1) for e, k in zip(topk["n_experts"], topk["top_k"]))
    assert data.loc[data["router"] == "dense", "top_k"].isna().all()


def test_fig12(tmp_path):
    data = plots.fig12(synthetic_conflict(), tmp_path / "fig12", PRESET)
    _files(tmp_path / "fig12")
    assert set(data["model"]) == {"m3dt", "e2e_moe"}
    assert data["group"].tolist()[:5] == list(common.MODULE_GROUPS)
    mlp = data[(data["model"] == "e2e_moe") & (data["group"] == "mlp")].iloc[0]
    assert mlp["mean"] == pytest.approx(0.5 * 1.6 + 0.01) and mlp["std"] == pytest.approx(0.01)


def test_figures_missing_data_errors(tmp_path):
    s, c = synthetic_scores(), synthetic_conflict()
    no_m3dt = s[s["model"] != "m3dt"]
    with pytest.raises(PlotDataError, match="fig6 needs model m3dt"):
        plots.fig6(no_m3dt, tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="fig2 needs model prompt_dt"):
        plots.fig2(s[s["model"] != "prompt_dt"], c, tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="fig2 needs conflict rows of model prompt_dt"):
        plots.fig2(s, c[c["model"] != "prompt_dt"], tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="lacks column.*sign"):
        plots.fig2(s, c.drop(columns=["sign_disagreement"]), tmp_path / "x", PRESET, metric="sign_disagreement")
    with pytest.raises(PlotDataError, match="fig9 needs top-k router runs"):
        plots.fig9(s[s["model"] != "m3dt_topk"], tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="fig12 needs per-module conflict rows of model e2e_moe"):
        plots.fig12(c[c["model"] != "e2e_moe"], tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="fig7 needs conflict rows"):
        plots.fig7(s, c[c["n_tasks"] != 40], tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="fig3 needs model prompt_dt"):
        plots.fig3(s.iloc[0:0], tmp_path / "x", PRESET)
    with pytest.raises(PlotDataError, match="lacks column"):
        plots.fig3(s.drop(columns=["score"]), tmp_path / "x", PRESET)
    assert not list(tmp_path.iterdir())  # nothing written on error


def test_one_seed_gives_nan_std(tmp_path):
    s = synthetic_scores()
    data = plots.fig3(s[s["seed"] == 0], tmp_path / "fig3", PRESET)
    assert data["std"].isna().all() and (data["n_seeds"] == 1).all()


# ---------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------


def test_table1(tmp_path):
    s = synthetic_scores()
    long = plots.table1(s, tmp_path / "table1", PRESET)
    _files(tmp_path / "table1", (".csv", ".md"))
    cell = long[(long["row"] == "M3DT-Gradient") & (long["n_tasks"] == 20)].iloc[0]
    # largest expert count (8) at the main step (1000), mean ± std over the three seeds
    assert cell["n_experts"] == 8 and cell["step"] == 1000
    assert cell["mean"] == pytest.approx(82 - 2.5 + 8 + 1) and cell["std"] == pytest.approx(2.0)
    assert cell["n_seeds"] == 3
    assert set(long["row"]) == {"MTDT", "Prompt-DT-Small (w=64)", "Prompt-DT (w=128, M3DT's backbone)",
                                "Prompt-DT-Large (w=256)", "M3DT-Random", "M3DT-Gradient"}
    # the width M3DT is built on gets its own row (between Small and Large, no paper number)
    bb = long[(long["row"] == "Prompt-DT (w=128, M3DT's backbone)") & (long["n_tasks"] == 20)].iloc[0]
    pdt = s[(s["model"] == "prompt_dt") & (s["width"] == 128) & (s["n_tasks"] == 20) & (s["step"] == 1000)]
    assert bb["mean"] == pytest.approx(pdt["score"].mean()) and np.isnan(bb["paper"])
    small = long[(long["row"] == "Prompt-DT-Small (w=64)") & (long["n_tasks"] == 10)].iloc[0]
    assert small["paper"] == 88 and small["paper_approx"]
    m10 = long[(long["row"] == "M3DT-Gradient") & (long["n_tasks"] == 10)].iloc[0]
    assert m10["paper"] == 89.23 and "(†)" in m10["paper_note"]  # variant not stated in paper.md
    assert m10["gap"] == pytest.approx(m10["mean"] - 89.23)
    md = (tmp_path / "table1.md").read_text()
    assert "preset: smoke" in md and "≈88" in md and "89.23†" in md
    order = [line.split(" |")[0] for line in md.splitlines() if line.startswith("| Prompt-DT")]
    assert order == ["| Prompt-DT-Small (w=64)", "| Prompt-DT (w=128, M3DT's backbone)", "| Prompt-DT-Large (w=256)"]
    assert f"{82 - 2.5 + 8 + 1:.1f} ± 2.0" in md
    back = pd.read_csv(tmp_path / "table1.csv")
    assert back.loc[back["row"] == "M3DT-Gradient", "mean"].tolist() == pytest.approx(
        long.loc[long["row"] == "M3DT-Gradient", "mean"].tolist())


def test_table1_one_seed_and_single_task_gap(tmp_path):
    from m3dt import tasks

    s = synthetic_scores()
    s = s[s["seed"] == 0]
    covered = list(tasks.benchmark(10, 0))[:4]
    gap = pd.DataFrame({"task": covered, "suite": [tasks.get(t).suite for t in covered],
                        "diff": [-10.0, -20.0, 0.0, 10.0], "status": ["ok"] * 4})
    long = plots.table1(s, tmp_path / "t1", PRESET, single_task_gap=gap)
    assert long.loc[long["kind"] == "score", "std"].isna().all()
    st = long[(long["kind"] == "gap") & (long["row"].str.startswith("single-task")) & (long["n_tasks"] == 10)]
    assert st["mean"].iloc[0] == pytest.approx(-5.0) and st["n_covered"].iloc[0] == 4 and st["n_seeds"].iloc[0] == 1
    assert st["paper_note"].iloc[0].endswith("(seeds [0])")  # plain ints, not numpy reprs
    md = (tmp_path / "t1.md").read_text()
    assert "± –" in md and "Fidelity" in md and "M3DT-Gradient: ours − paper" in md


def test_table1_errors(tmp_path):
    s = synthetic_scores()
    with pytest.raises(PlotDataError, match="table1 needs runs"):
        plots.table1(s[s["model"].isin(["e2e_moe"])], tmp_path / "t", PRESET)


def test_table2(tmp_path):
    s = synthetic_scores()
    long = plots.table2(s, tmp_path / "table2", PRESET)
    _files(tmp_path / "table2", (".csv", ".md"))
    assert (long["n_tasks"] == 40).all()
    by = long.set_index("row")
    assert by.loc["No task grouping (every expert on all tasks)", "mean"] == pytest.approx(60.0)
    assert by.loc["No task grouping (every expert on all tasks)", "paper"] == 67.3
    assert by.loc["End-to-end MoE (no three-stage training)", "paper"] == 68
    assert by.loc["M3DT-Random", "mean"] == pytest.approx(82 - 5 + 8)  # step 1000, not the fig. 7 backbones
    assert by.loc["Noisy top-k router (k: experiments.top_k, at most E - 1)", "status"] == "ok"
    md = (tmp_path / "table2.md").read_text()
    assert "suboptimal" in md and "MT40" in md and "compare the ordering" in md
    # a row without runs is kept and marked
    long2 = plots.table2(s[s["model"] != "m3dt_unfrozen_experts"], tmp_path / "t2b", PRESET)
    assert long2.set_index("row").loc["Experts unfrozen in stage 3", "status"] == "not run"
    with pytest.raises(PlotDataError, match="table2 needs at least one ablation run"):
        plots.table2(s[s["model"].isin(["m3dt", "prompt_dt"])], tmp_path / "t2c", PRESET)


# ---------------------------------------------------------------------------------------
# single-task table
# ---------------------------------------------------------------------------------------


def _ours_single():
    return pd.DataFrame({"task": ["reach-v3", "reach-v3", "cheetah-run", "ant-dir-3", "cheetah-vel-7", "no-such-task"],
                         "score": [90.0, 80.0, 50.0, 70.0, 100.0, 1.0]})


def test_single_task_table_matches_across_suites(tmp_path, caplog):
    authors = pd.read_csv(Path(__file__).parents[1] / "m3dt/tasks/data/appendix_a3_single_task.csv")
    a = dict(zip(authors["task"], authors.iloc[:, -1]))
    experts = pd.DataFrame({"task": ["reach-v2", "cheetah-run"], "score": [100.0, 90.0]})
    expected = ["reach-v2", "cheetah-run", "ant-dir-3", "cheetah-vel-7", "walker-walk"]
    with caplog.at_level(logging.WARNING, logger="m3dt.plots"):
        table = plots.single_task_table(_ours_single(), None, experts, tmp_path / "st", expected=expected,
                                        preset=PRESET)
    _files(tmp_path / "st", (".csv", ".md", "_by_suite.csv"))
    t = table.set_index("task")
    assert t.loc["reach-v2", "ours"] == 85.0 and t.loc["reach-v2", "ours_n"] == 2  # v3 name, mean of 2 rows
    assert t.loc["reach-v2", "authors"] == a["reach-v2"] and t.loc["reach-v2", "suite"] == "metaworld"
    assert t.loc["reach-v2", "diff"] == pytest.approx(85.0 - a["reach-v2"])
    assert t.loc["reach-v2", "expert"] == 100.0 and math.isnan(t.loc["ant-dir-3", "expert"])
    assert t.loc["cheetah-run", "suite"] == "dmc" and t.loc["cheetah-run", "status"] == "ok"
    assert t.loc["ant-dir-3", "suite"] == "ant_dir" and t.loc["ant-dir-3", "authors"] == a["ant-dir-3"]
    assert t.loc["cheetah-vel-7", "suite"] == "cheetah_vel" and t.loc["cheetah-vel-7", "status"] == "ok"
    # reported, not dropped
    assert t.loc["walker-walk", "status"] == "missing_ours" and math.isnan(t.loc["walker-walk", "ours"])
    assert t.loc["no-such-task", "status"] == "unknown_task"
    assert len(table) == 161  # the other authors' tasks are kept as not_expected
    assert (table["status"] == "not_expected").sum() == 155
    assert "missing_ours" in caplog.text and "no-such-task" in caplog.text
    means = pd.read_csv(tmp_path / "st_by_suite.csv").set_index("suite")
    assert means.loc["metaworld", "paper_suite_mean"] == 87.6
    assert means.loc["metaworld", "authors_suite_mean"] == pytest.approx(87.62)  # all 50 authors' MW tasks
    assert means.loc["all", "n_tasks_ok"] == 4 and means.loc["dmc", "n_missing_ours"] == 1
    md = (tmp_path / "st.md").read_text()
    assert "walker-walk" in md and "missing_ours" in md and "preset: smoke" in md
    assert "| basketball-v2 |" not in md and "155 authors' tasks" in md


def test_single_task_default_expected_lists_every_authors_task(caplog):
    with caplog.at_level(logging.WARNING, logger="m3dt.plots"):
        table = plots.single_task_table(_ours_single(), None, None, None)
    assert len(table) == 161  # 160 authors' tasks + one unknown name
    assert (table["status"] == "missing_ours").sum() == 156
    assert "156 task(s) with status missing_ours" in caplog.text


def test_single_task_missing_authors(tmp_path):
    authors = pd.DataFrame({"task": ["reach-v2"], "suite": ["Meta-World"], "score": [50.0]})
    table = plots.single_task_table(pd.DataFrame({"task": ["reach-v2", "pick-place-v3"], "score": [60.0, 40.0]}),
                                    authors, None, None, expected=[])
    t = table.set_index("task")
    assert t.loc["pick-place-v2", "status"] == "missing_authors" and t.loc["reach-v2", "diff"] == 10.0


def test_single_task_figure(tmp_path):
    table = plots.single_task_table(_ours_single(), None, None, None, expected=["walker-walk"])
    data = plots.single_task_figure(table, tmp_path / "stf", PRESET)
    _files(tmp_path / "stf")
    assert (data["kind"] == "task").sum() == 4
    allm = data[(data["kind"] == "suite_mean") & (data["suite"] == "all")].iloc[0]
    assert allm["ours"] == pytest.approx((85 + 50 + 70 + 100) / 4) and allm["n"] == 4
    with pytest.raises(PlotDataError, match="single_task_figure needs"):
        plots.single_task_figure(table[table["status"] != "ok"], tmp_path / "x", PRESET)


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def test_cli_replots_from_csv(tmp_path):
    from m3dt.__main__ import main

    s, c = tmp_path / "scores.csv", tmp_path / "conflict.csv"
    synthetic_scores().to_csv(s, index=False)
    synthetic_conflict().to_csv(c, index=False)
    assert main(["plot", "--figure", "fig2", "--scores", str(s), "--conflict", str(c), "--out",
                 str(tmp_path / "f2"), "--preset", "quick", "--width", "128"]) == 0
    _files(tmp_path / "f2")
    assert main(["plot", "--figure", "table2", "--scores", str(s), "--out", str(tmp_path / "t2")]) == 0
    _files(tmp_path / "t2", (".csv", ".md"))
    ours = tmp_path / "ours.csv"
    _ours_single().to_csv(ours, index=False)
    assert main(["plot", "--figure", "single_task", "--ours", str(ours), "--out", str(tmp_path / "st"),
                 "--expected", "reach-v2", "walker-walk"]) == 0
    _files(tmp_path / "st", (".csv", ".md"))
    _files(tmp_path / "st_scatter")
    with pytest.raises(SystemExit, match="needs --conflict"):
        main(["plot", "--figure", "fig12", "--out", str(tmp_path / "x")])


def test_cli_collect_scores(tmp_path):
    from m3dt.__main__ import main

    summ = tmp_path / "s.csv"
    pd.DataFrame({"scope": ["all"], "n_tasks": [10], "score_mean": [42.0]}).to_csv(summ, index=False)
    pd.DataFrame({"summary": ["s.csv"], "model": ["mtdt"], "n_tasks": [10], "seed": [0]}).to_csv(
        tmp_path / "runs.csv", index=False)
    assert main(["plot", "--figure", "collect_scores", "--manifest", str(tmp_path / "runs.csv"),
                 "--out", str(tmp_path / "scores")]) == 0
    frame = pd.read_csv(tmp_path / "scores.csv")
    assert frame.loc[0, "score"] == 42.0 and frame.loc[0, "model"] == "mtdt"


def test_score_axis_is_never_narrower_than_the_minimum_span():
    from m3dt.plots.common import MIN_SCORE_SPAN, score_ylim

    lo, hi = score_ylim([30.9, 29.1, 31.0])  # a 2-point difference: the axis spans 20 points around it
    assert hi - lo == pytest.approx(MIN_SCORE_SPAN) and lo < 29.1 and hi > 31.0
    assert score_ylim([1.0, 3.0]) == (0.0, MIN_SCORE_SPAN)  # never below 0
    assert score_ylim([95.0, 99.0])[1] == pytest.approx(100.0)  # never above 100 when no value is
    lo, hi = score_ylim([10.0, 90.0])  # a wide range: all values plus a margin
    assert lo < 10.0 and hi > 90.0 and hi - lo == pytest.approx(88.0)
    assert score_ylim([104.0, 110.0])[1] >= 110.0  # above the expert: still in view
