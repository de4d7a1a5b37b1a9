"""No module under m3dt/ imports a module of a higher layer (README "Architecture" table)."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "m3dt"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(m3dt[\w.]*|\*\.cli)`\s*\|")


def layers() -> dict[str, int]:
    """{module prefix: layer} from the README's Architecture table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Architecture", 1)[1].split("\n#", 1)[0]
    out = {m.group(2): int(m.group(1)) for m in map(ROW.match, section.splitlines()) if m}
    assert out, "README has no Architecture table"
    return out


def layer_of(module: str, table: dict[str, int]) -> tuple[str, int] | None:
    """(owning entry, layer) of a dotted module name: its `cli` rule or longest table prefix."""
    if module.rsplit(".", 1)[-1] in ("cli", "conflict_cli", "__main__") and "*.cli" in table:
        return "*.cli", table["*.cli"]
    if module == "m3dt":
        return "m3dt", table["m3dt"]
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in table:
            return prefix, table[prefix]
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """Every `m3dt` module `path` imports (top level or inside functions), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("m3dt")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("m3dt"):
            # `from m3dt import tasks` / `from m3dt.train import stages`: the submodule when there is one
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (ROOT / Path(*sub.split(".")).with_suffix(".py")).exists() or \
                    (ROOT / Path(*sub.split("."))).is_dir()
                out.append((node.lineno, sub if is_module else node.module))
    return out


def upward_imports(table: dict[str, int]) -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        mine = layer_of(me, table)
        assert mine is not None, f"{me} has no layer in README's Architecture table"
        for line, target in imports(path):
            theirs = layer_of(target, table)
            assert theirs is not None, f"{me} imports {target}, which has no layer in README's Architecture table"
            same_package = theirs[0] == mine[0] or target.startswith(mine[0] + ".")
            if theirs[1] > mine[1] or (theirs[1] == mine[1] and not same_package):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({mine[0]}, layer {mine[1]}) imports {target} "
                           f"({theirs[0]}, layer {theirs[1]})")
    return bad


def test_no_module_imports_upward():
    assert upward_imports(layers()) == []


def test_the_check_catches_an_upward_import():
    table = layers()
    assert table["m3dt.models"] < table["m3dt.train"]
    # pretend models sat above train: models' own imports are fine, train's import of models is flagged
    bad = upward_imports({**table, "m3dt.models": table["m3dt.train"] + 1})
    assert any(b.startswith("m3dt/train/") and "imports m3dt.models" in b for b in bad), bad


@pytest.mark.parametrize("module, entry", [("m3dt.train.stages", "m3dt.train"), ("m3dt.train.cli", "*.cli"),
                                           ("m3dt.checkpoint", "m3dt.checkpoint")])
def test_layer_lookup(module, entry):
    assert layer_of(module, layers())[0] == entry
