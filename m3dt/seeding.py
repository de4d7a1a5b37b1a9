"""The one seeding function of the project."""

from __future__ import annotations

import os
import random

import numpy as np


def set_seed(seed: int, deterministic_torch: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a fresh NumPy Generator.

    With `deterministic_torch`, PyTorch is asked for deterministic kernels where it has them
    (warn-only, so CUDA ops without a deterministic version still run).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    else:
        torch.manual_seed(seed)
        if deterministic_torch:
            torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
