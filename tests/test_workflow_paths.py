"""Every path of the workflow is spelled once, by a helper of workflow/rules/common.smk.

The rule files and the Snakefile call those helpers (`run_dir()`, `stage2_dir()`,
`figure_file(...)`, ...): they hold no f-string, no path literal and none of the
names the helpers are built from (RESULTS, DATA_DIR, EXPERT_ROOT).
"""

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted(p for p in (ROOT / "workflow" / "rules").glob("*.smk") if p.name != "common.smk")
FILES = [ROOT / "Snakefile", *RULE_FILES]
ROOT_NAMES = ("RESULTS", "DATA_DIR", "EXPERT_ROOT")
# paths of the workflow's own sources, not of results: scripts, conda env, report captions,
# schema (`../`), the Snakefile's includes (`workflow/`)
ALLOWED_PATH = re.compile(r"""^[rbu]?(['"])(\.\./|workflow/)""")


def strings(text: str) -> list[tuple[int, str]]:
    """(line, token) of every string literal of a Snakemake file (Python tokens; an f-string
    is one token before Python 3.12 and FSTRING_START... from 3.12 on)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_START", -1):
            out.append((tok.start[0], tok.string))
    return out


def problems(path: Path) -> list[str]:
    text = path.read_text()
    bad = []
    for line, s in strings(text):
        prefix = s[: len(s) - len(s.lstrip("rbuRBUfF"))]
        if "f" in prefix.lower():
            bad.append(f"{path.name}:{line}: f-string {s!r}: build it with a common.smk helper")
        elif "/" in s and not ALLOWED_PATH.match(s):
            bad.append(f"{path.name}:{line}: path literal {s!r}: use a common.smk helper")
    for name in ROOT_NAMES:
        for m in re.finditer(rf"\b{name}\b", text):
            line = text.count("\n", 0, m.start()) + 1
            bad.append(f"{path.name}:{line}: {name}: use a common.smk helper")
    return bad


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_rule_files_spell_no_paths(path):
    assert problems(path) == []


def test_the_check_catches_a_spelled_path(tmp_path):
    f = tmp_path / "bad.smk"
    f.write_text('rule x:\n    output:\n        f"{RESULTS}/x/{{n}}.csv",\n    params:\n        d=DATA_DIR,\n'
                 '        e="results/experts",\n    script:\n        "../scripts/x.py"\n')
    got = problems(f)
    assert any("f-string" in p for p in got) and any("DATA_DIR" in p for p in got)
    assert any("path literal" in p for p in got) and not any("../scripts" in p for p in got)
