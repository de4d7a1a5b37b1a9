"""Run-time helpers every long job shares: device choice, bf16 choice, ETA text and the
metrics-CSV rewrite on resume. Small and dependency-free apart from torch (imported
where used), so any layer may call them."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from m3dt.io import atomic_path

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> "torch.device":
    """`auto` -> cuda if available else cpu; an explicit cuda device without CUDA is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def check_bf16(setting: bool | str) -> None:
    assert setting in (True, False, "auto"), f"bf16 must be true, false or 'auto', got {setting!r}"


def use_bf16(setting: bool | str, device: "torch.device") -> bool:
    """Whether to run bf16 autocast: `setting` True/False, or "auto": where bf16 is native
    (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX; elsewhere it is emulated and slower)."""
    import torch

    check_bf16(setting)
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fmt_eta(seconds: float) -> str:
    """`h:mm:ss` (seconds rounded), "?" when unknown (infinite or NaN)."""
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def truncate_metrics_csv(path: Path, step: int, columns: Sequence[str]) -> None:
    """Rewrite the metrics CSV `path` (atomically) with header `columns` and only the rows
    whose `step` is <= `step`: a resumed run drops what was logged after its checkpoint.
    A missing file becomes a header-only file."""
    path = Path(path)
    rows: list[dict[str, str]] = []
    if step > 0 and path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
