"""m3dt: reproduction of M3DT (Mixture-of-Expert Decision Transformer, ICML 2025)."""

import os as _os

# The package never renders; without this, dm_control probes for an OpenGL backend.
_os.environ.setdefault("MUJOCO_GL", "disable")

__version__ = "0.1.0"
