#!/usr/bin/env bash
# Install m3dt and its dependencies into the active Python environment (3.11+).
# torch is installed FIRST and pinned: letting pip resolve plain `torch` as a dependency
# pulls a multi-GB CUDA build. Set M3DT_TORCH to choose another torch requirement
# (e.g. M3DT_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" on a GPU box).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --upgrade pip
# shellcheck disable=SC2086
python -m pip install ${M3DT_TORCH:-torch==2.13.0}
# dev: pytest, snakefmt; sbx: SAC in JAX for `data.experts.library: sbx` (a CPU jaxlib)
python -m pip install -e ".[dev,sbx]"
python -c "import m3dt, torch; print('m3dt', m3dt.__version__, 'torch', torch.__version__)"
