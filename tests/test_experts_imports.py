"""`import m3dt.experts` (and each of its modules) stays light: the heavy dependencies are
imported where they are used, not at module load."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("gymnasium", "torch", "stable_baselines3", "metaworld", "jax", "sbx")
MODULES = ("m3dt.experts", "m3dt.experts.names", "m3dt.experts.config", "m3dt.experts.envs", "m3dt.experts.kinds",
           "m3dt.experts.rollout", "m3dt.experts.sac", "m3dt.experts.sac_library", "m3dt.experts.sac_policy",
           "m3dt.experts.curve", "m3dt.experts.bundle", "m3dt.experts.table", "m3dt.experts.cli")


def _loaded_after(modules: tuple[str, ...]) -> list[str]:
    code = (f"import importlib, sys\nfor m in {list(modules)!r}: importlib.import_module(m)\n"
            f"print(','.join(h for h in {list(HEAVY)!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [h for h in out.stdout.strip().split(",") if h]


def test_importing_experts_loads_no_heavy_dependency():
    assert _loaded_after(MODULES) == [], "a module of m3dt.experts imports a heavy dependency at load"


def test_the_check_sees_a_heavy_import():
    # the env classes subclass gymnasium's: asking for one defines it and imports gymnasium
    code = ("import sys\nfrom m3dt.experts.envs import StripPadding\n"
            "assert StripPadding.__name__ == 'StripPadding'\nprint('gymnasium' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
