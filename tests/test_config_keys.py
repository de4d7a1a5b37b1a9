"""Every key of the workflow's config schema is read somewhere: by the workflow (Snakefile,
rules, rule scripts) or by the package. A key nobody reads is a dead setting."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
#: keys whose value is passed on as a whole dict to a typed config that validates every
#: field of it, so their sub-keys are not spelled out in the schema
WHOLE_DICTS = {
    "train",  # -> m3dt.config.TrainConfig.from_dict (train_params in common.smk; _check_config at planning)
    "data.collect",  # -> m3dt.data.collect.CollectConfig.from_dict (rule collect's params.config)
}


def schema_leaves(node: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Dotted paths of the schema's leaf keys (a key with no `properties` of its own)."""
    props = node.get("properties")
    if not props:
        return [path]
    return [leaf for k, v in props.items() for leaf in schema_leaves(v, path + (k,))]


def sources() -> str:
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk")),
             *sorted((ROOT / "workflow" / "scripts").glob("*.py")), *sorted((ROOT / "m3dt").rglob("*.py"))]
    return "\n".join(f.read_text() for f in files)


def unread(leaves: list[tuple[str, ...]], text: str) -> list[str]:
    """Leaves whose name is never read: as a subscript/get key ("name") or an attribute (.name)."""
    out = []
    for leaf in leaves:
        if ".".join(leaf) in WHOLE_DICTS:
            continue
        name = re.escape(leaf[-1])
        if not re.search(rf"""["']{name}["']|\.{name}\b""", text):
            out.append(".".join(leaf))
    return out


def test_every_schema_key_is_read():
    leaves = schema_leaves(yaml.safe_load(SCHEMA.read_text()))
    assert len(leaves) > 20, f"{SCHEMA}: expected the full schema, found {len(leaves)} keys"
    assert unread(leaves, sources()) == [], f"{SCHEMA}: keys read nowhere in workflow/ or m3dt/ (dead settings)"


def test_the_check_finds_an_unread_key():
    text = 'x = config["steps"]["dense"]\ny = cfg.kmeans_restarts\n'
    assert unread([("steps", "dense"), ("conflict", "kmeans_restarts"), ("conflict", "never_read")], text) == [
        "conflict.never_read"]
    assert schema_leaves({"properties": {"a": {"properties": {"b": {}}}, "c": {"type": "integer"}}}) == [
        ("a", "b"), ("c",)]
