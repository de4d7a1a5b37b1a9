"""`python -m m3dt compare`: per-cell differences against reference results, tolerances, exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from m3dt import compare


def _write(root: Path, score_shift: float = 0.0, conflict_scale: float = 1.0, drop_row: bool = False) -> Path:
    (root / "tables").mkdir(parents=True)
    (root / "figures").mkdir(parents=True)
    t = pd.DataFrame({"kind": ["score", "score"], "row": ["Prompt-DT", "M3DT"], "model": ["prompt_dt", "m3dt"],
                      "n_tasks": [20, 20], "mean": [40.0 + score_shift, 55.0 + score_shift], "std": [8.0, float("nan")],
                      "n_seeds": [3, 1], "paper": [60.0, 75.0]})
    if drop_row:
        t = t.iloc[:1]
    t.to_csv(root / "tables" / "table1.csv", index=False)
    pd.DataFrame({"model": ["prompt_dt"], "n_tasks": [10], "step": [1000], "score_mean": [30.0 + score_shift],
                  "conflict_mean": [0.4 * conflict_scale]}).to_csv(root / "figures" / "fig2.csv", index=False)
    return root


def _run(results: Path, reference: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3dt", "compare", str(results), str(reference)],
                          capture_output=True, text=True)


def test_identical_results_pass(tmp_path):
    ref = _write(tmp_path / "ref")
    out = _run(ref, ref)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ours 55  reference 55  diff +0" in out.stdout and "6 values compared" not in out.stdout


def test_tolerance_uses_seed_spread_else_constant(tmp_path):
    ref = _write(tmp_path / "ref")
    cells, problems = compare.compare_dirs(_write(tmp_path / "a", score_shift=15.0), ref)
    by = {(c.file, c.key.split("row=")[-1].split(",")[0], c.column): c for c in cells}
    assert not problems
    pdt = by[("tables/table1.csv", "Prompt-DT", "mean")]
    m3 = by[("tables/table1.csv", "M3DT", "mean")]
    assert pdt.tolerance == pytest.approx(2 * 8.0) and pdt.ok  # 3 seeds, std 8: 15 < 16
    assert m3.tolerance == pytest.approx(compare.ABS_TOL_SCORE) and not m3.ok  # one seed: the constant


def test_beyond_tolerance_or_missing_fails(tmp_path):
    ref = _write(tmp_path / "ref")
    far = _run(_write(tmp_path / "far", conflict_scale=2.0), ref)
    assert far.returncode == 1 and "EXCEEDS" in far.stdout and "conflict_mean" in far.stdout
    gone = _run(_write(tmp_path / "gone", drop_row=True), ref)
    assert gone.returncode == 1 and "row [kind=score, row=M3DT" in gone.stdout
    (tmp_path / "nofig").mkdir()
    _write(tmp_path / "nofig2")
    (tmp_path / "nofig2" / "figures" / "fig2.csv").unlink()
    nofile = _run(tmp_path / "nofig2", ref)
    assert nofile.returncode == 1 and "figures/fig2.csv: missing" in nofile.stdout
