"""The SAC implementations an expert can train with (`data.experts.library`).

- ``sb3``: stable-baselines3's SAC (PyTorch; CUDA when present and `device` allows).
- ``sbx``: sbx-rl's SAC (the JAX port with SB3's API; `pip install -e ".[sbx]"`). Same
  hyperparameters and training loop; its `use_sde` is not gSDE but Gaussian noise held for
  each collection phase (`train_freq` steps). On one CPU core at UTD 0.5 it trains ~1.4x
  faster than SB3 (README "SAC expert cost"). JAX uses a GPU only where a CUDA jaxlib is installed.

Both save `model.zip` through SB3's `save`/`load` and both export the same actor-only
`policy.pt` (`m3dt.experts.sac_policy.export_actor`), so collection does not depend on the
library an expert was trained with.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from m3dt.dataclass_io import ConfigError

LIBRARIES = ("sb3", "sbx")
ALGORITHMS = {"sb3": "SAC (stable-baselines3, MlpPolicy)", "sbx": "SAC (sbx-rl, JAX, MlpPolicy)"}


def check_library(library: str) -> None:
    """One `ConfigError` naming `data.experts.library` unless `library` is one of LIBRARIES."""
    if library not in LIBRARIES:
        raise ConfigError(f"data.experts.library must be one of {list(LIBRARIES)}, got {library!r}")


#: XLA on the CPU in one thread (one training job per core, as torch_threads: 1 does for SB3)
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def sac_class(library: str, threads: int = 1) -> type:
    """The SAC class of `library` (an ImportError saying what to install when sbx is absent).
    For sbx with `threads` 1, XLA is made single-threaded on the CPU; that takes effect only
    if JAX was not imported before in this process."""
    check_library(library)
    if library == "sbx":
        if threads == 1 and "jax" not in sys.modules and XLA_ONE_THREAD not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_ONE_THREAD).strip()
        try:
            from sbx import SAC
        except ImportError as e:
            raise ImportError(f"data.experts.library: sbx needs sbx-rl (and JAX): pip install -e \".[sbx]\" ({e})") \
                from None
        return SAC
    from stable_baselines3 import SAC

    return SAC


def library_of(model: Any) -> str:
    """`"sbx"` for an sbx agent (its actor lives in a JAX train state), else `"sb3"`."""
    return "sbx" if hasattr(model.policy, "actor_state") else "sb3"
