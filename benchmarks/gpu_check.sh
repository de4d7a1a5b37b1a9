#!/usr/bin/env bash
# GPU checks of issue 16, in one run on a lent GPU machine (about 5 minutes).
#
#   OUT=<folder> bash benchmarks/gpu_check.sh           # on the GPU machine, from the repo root
#   OUT=/tmp/gpuout bash benchmarks/gpu_check.sh --quick  # CPU fallback, tiny sizes (tests the script)
#
# Needs only torch, numpy, pandas, pytest (no simulators, no Snakemake, no pip install:
# PYTHONPATH=$PWD). Every part has its own `timeout`, so a slow part cannot eat the rest.
# Writes 7 files to $OUT: env.txt, tests.txt, bench_moe.txt, bench_train.txt,
# bench_train.csv, profile.txt, summary.txt (each part's exit status and seconds).
set -u
: "${OUT:?set OUT to the folder to write into}"
mkdir -p "$OUT"
export PYTHONPATH=$PWD
export PYTHONDONTWRITEBYTECODE=1
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
PY=${PYTHON:-python}

if $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then DEV=cuda; else DEV=cpu; fi
$PY - > "$OUT/env.txt" 2>&1 <<'PYEOF'
import platform, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", platform.python_version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU:", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.0f} GiB", "bf16", torch.cuda.is_bf16_supported())
else:
    print("GPU: none (CPU fallback)")
PYEOF
cat "$OUT/env.txt"
: > "$OUT/summary.txt"

part() {  # part NAME SECONDS CMD...: run with a time limit, output to $OUT/NAME.txt, status to summary
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: rc=$rc ($((SECONDS - t0)) s, limit $limit s)" | tee -a "$OUT/summary.txt"
}

if [[ $DEV == cuda && $QUICK == 0 ]]; then
  part tests 60 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
  part bench_moe 60 $PY benchmarks/bench_moe.py --device cuda --experts 8 48 --bf16 --reps 10
  part bench_train 150 $PY benchmarks/bench_train.py --device cuda --dtypes fp32 bf16 --widths 64 128 256 \
    --moe-width 256 --experts 2 4 8 48 --grouped 8 48 --reps 10 --csv "$OUT/bench_train.csv"
  part profile 45 $PY benchmarks/bench_train.py --device cuda --dtypes bf16 --moe-width 256 --profile stage3-E48
else  # CPU fallback: the same parts at tiny sizes, to check the script end to end
  part tests 120 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
  part bench_moe 120 $PY benchmarks/bench_moe.py --device "$DEV" --quick --threads 1
  part bench_train 300 $PY benchmarks/bench_train.py --device "$DEV" --quick --threads 1 --grouped 2 \
    --csv "$OUT/bench_train.csv"
  part profile 120 $PY benchmarks/bench_train.py --device "$DEV" --quick --threads 1 --dtypes bf16 --profile stage3-E2
fi
echo "---"; cat "$OUT/bench_moe.txt" "$OUT/bench_train.txt" 2>/dev/null | grep -E "device|batched|bf16 speed|stage3-E48|grouped" | head -30
