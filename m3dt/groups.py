"""The groups file: which tasks each stage-2 expert trains on, and so the number of
experts (one per group) of stage 2, assembly and stage 3.

JSON: {"method", "n_groups", "seed", "groups": [[task, ...], ...], "sizes": [...],
"group_of": {task: i}, ...meta}. `write_groups_json` / `read_groups_json` write and read
it (validated both ways); `read_groups` gives just the groups.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from m3dt.io import atomic_path

METHODS = ("random", "gradient")  # how a groups file was made (`python -m m3dt group --method`)
_RESERVED = ("method", "n_groups", "seed", "groups", "sizes", "group_of")


def validate_groups(groups: Sequence[Sequence[str]], tasks: Iterable[str] | None = None) -> None:
    """Raise ValueError unless `groups` are non-empty lists of task names, each task once
    (and, with `tasks`, exactly the tasks given)."""
    if not groups:
        raise ValueError("no groups")
    seen: dict[str, int] = {}
    for i, grp in enumerate(groups):
        if isinstance(grp, str) or not isinstance(grp, Sequence) or not grp:
            raise ValueError(f"group {i} must be a non-empty list of task names, got {grp!r}")
        for t in grp:
            if not isinstance(t, str):
                raise ValueError(f"group {i} holds a non-string task {t!r}")
            if t in seen:
                raise ValueError(f"task {t!r} is in group {seen[t]} and group {i}")
            seen[t] = i
    if tasks is not None:
        tasks = set(tasks)
        missing, extra = sorted(tasks - set(seen)), sorted(set(seen) - tasks)
        if missing or extra:
            raise ValueError(f"groups do not cover the tasks: missing {missing}, unexpected {extra}")


def groups_document(groups: Sequence[Sequence[str]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of a grouping; `meta` must hold "method" and "seed"."""
    validate_groups(groups)
    for key in ("method", "seed"):
        if key not in meta:
            raise ValueError(f"groups meta must hold {key!r}")
    clash = [k for k in meta if k in ("n_groups", "groups", "sizes", "group_of")]
    if clash:
        raise ValueError(f"meta keys {clash} are computed from the groups and cannot be given")
    groups = [list(g) for g in groups]
    doc: dict[str, Any] = {"method": meta["method"], "n_groups": len(groups), "seed": meta["seed"],
                           "groups": groups, "sizes": [len(g) for g in groups],
                           "group_of": {t: i for i, g in enumerate(groups) for t in g}}
    doc.update({k: v for k, v in meta.items() if k not in ("method", "seed")})
    return doc


def write_groups_json(path: str | os.PathLike, groups: Sequence[Sequence[str]], meta: Mapping[str, Any]) -> Path:
    """Write groups as JSON, atomically. `meta` holds "method", "seed" and anything else
    worth keeping (tasks' source, checkpoint, k-means stats); it is stored at top level."""
    doc = groups_document(groups, meta)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return Path(path)


def read_groups_json(path: str | os.PathLike, tasks: Iterable[str] | None = None) -> dict[str, Any]:
    """Read and validate a groups JSON: every task exactly once, sizes and group_of
    consistent with groups (and, with `tasks`, exactly those tasks). Returns the document."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"groups file {path}: cannot be read: {e}") from e
    try:
        if not isinstance(doc, dict):
            raise ValueError("top level must be an object")
        missing = [k for k in _RESERVED if k not in doc]
        if missing:
            raise ValueError(f"missing keys {missing}")
        groups = doc["groups"]
        validate_groups(groups, tasks)
        if doc["n_groups"] != len(groups):
            raise ValueError(f"n_groups {doc['n_groups']} but {len(groups)} groups")
        if doc["sizes"] != [len(g) for g in groups]:
            raise ValueError(f"sizes {doc['sizes']} do not match the groups")
        expected = {t: i for i, g in enumerate(groups) for t in g}
        if doc["group_of"] != expected:
            raise ValueError("group_of does not match the groups")
        if doc["method"] not in METHODS:
            raise ValueError(f"method {doc['method']!r} not one of {METHODS}")
    except ValueError as e:
        raise ValueError(f"groups file {path}: {e}") from e
    return doc


def read_groups(path: str | os.PathLike) -> list[list[str]]:
    """The groups of a groups file (validated), in expert order."""
    return [list(g) for g in read_groups_json(path)["groups"]]
