#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda env (working directory: the checkout).
set -euo pipefail
python -m pip install --no-deps -e .
