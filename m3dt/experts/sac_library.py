"""The SAC implementations an expert can train with (`data.experts.library`).

- ``sb3``: stable-baselines3's SAC (PyTorch; CUDA when present and `device` allows).
- ``sbx``: sbx-rl's SAC (the JAX port with SB3's API; `pip install -e ".[sbx]"`). Same
  hyperparameters and training loop; its `use_sde` is not gSDE but Gaussian noise held for
  each collection phase (`train_freq` steps). On one CPU core its update is ~1.8x faster
  than SB3's (README "SAC expert cost"). JAX uses a GPU only where a CUDA jaxlib is installed.

Both save `model.zip` through SB3's `save`/`load` and both export the same actor-only
`policy.pt` (`m3dt.experts.sac_policy.export_actor`), so collection does not depend on the
library an expert was trained with.
"""

from __future__ import annotations

from typing import Any

LIBRARIES = ("sb3", "sbx")
ALGORITHMS = {"sb3": "SAC (stable-baselines3, MlpPolicy)", "sbx": "SAC (sbx-rl, JAX, MlpPolicy)"}


def check_library(library: str) -> None:
    if library not in LIBRARIES:
        raise ValueError(f"data.experts.library must be one of {list(LIBRARIES)}, got {library!r}")


def sac_class(library: str) -> type:
    """The SAC class of `library` (an ImportError saying what to install when sbx is absent)."""
    check_library(library)
    if library == "sbx":
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
