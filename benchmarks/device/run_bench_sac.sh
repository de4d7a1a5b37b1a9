#!/usr/bin/env bash
# benchmarks/bench_sac.py on a device machine without network (16 cores, one GPU), from
# what benchmarks/device/prepare.sh put in .devsite/ (carry it: run(carry=[".devsite"])).
#
#   bash benchmarks/device/run_bench_sac.sh          # from the repository root
#
# Installs the wheels into $SITE (default /tmp/site), puts the trimmed dm_control copy and
# the repo on PYTHONPATH, checks every import and env first (fails fast, naming what is
# missing), then runs bench_sac with $JOBS jobs (default 12, one pinned core each) of
# $STEPS env steps (default 25000), guarded by $MAX_MIN minutes of training (default 5),
# so the whole run ends within ~7 minutes. Results: $OUT/bench_sac/{bench_sac.csv,
# bench_sac.md,jobs/} ($OUT defaults to results/bench_sac_device). $TASKS, $PYTHON, $DEVSITE
# and $EXTRA (more bench_sac arguments, e.g. "--learning-starts 500" for a smoke test) too.
# Sizing: SB3 today (UTD 1, 256x256, batch 256) does ~100-113 env steps/s on one 2-core-EPYC
# core; 25k steps ~ 4 min for the slowest job on such a core, ~2.5-3 min on a current
# server core. Jobs run slowest first; any job still training at MAX_MIN stops, is
# evaluated and marked truncated in the table.
set -euo pipefail

die() { echo "run_bench_sac.sh: ERROR: $*" >&2; exit 3; }

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
devsite=${DEVSITE:-$repo/.devsite}
site=${SITE:-/tmp/site}
out=${OUT:-$repo/results/bench_sac_device}
steps=${STEPS:-25000}
jobs=${JOBS:-12}
max_min=${MAX_MIN:-5}
tasks=${TASKS:-"cartpole-swingup walker-stand cheetah-vel"}
py=${PYTHON:-python3}

echo "== machine"; "$py" --version; nproc; (nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"); date -u
[[ -d "$devsite/wheels" && -d "$devsite/pylib/dm_control" ]] \
    || die "$devsite/wheels or $devsite/pylib/dm_control missing: run benchmarks/device/prepare.sh where there is network, then carry .devsite"
cat "$devsite/MANIFEST.txt" 2>/dev/null || true

echo "== install $(ls "$devsite"/wheels/*.whl | wc -l) wheels into $site"
t0=$(date +%s)
"$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$devsite"/wheels/*.whl \
    || die "pip install of $devsite/wheels failed (wheels for another Python? MANIFEST.txt says which)"
echo "installed in $(( $(date +%s) - t0 ))s"

export PYTHONPATH="$repo:$devsite/pylib:$site${PYTHONPATH:+:$PYTHONPATH}"
export MUJOCO_GL=disable              # no rendering (m3dt sets the same default)
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # 12 processes share one GPU
export PYTHONUNBUFFERED=1

echo "== XLA single-thread flags"
flags=$("$py" -c "import sys; sys.path.insert(0, 'benchmarks'); import bench_sac; print(bench_sac.XLA_ONE_THREAD)")
if XLA_FLAGS="$flags" JAX_PLATFORMS=cpu "$py" -c "import jax.numpy as j; j.ones(3).sum().block_until_ready()" >/dev/null 2>&1; then
    echo "ok: $flags"
else
    echo "run_bench_sac.sh: WARNING: this JAX rejects XLA_FLAGS='$flags'; jobs run without them (pinned to one core anyway)"
    export BENCH_SAC_XLA_FLAGS=""
fi

echo "== imports and environments"
variants=$("$py" - $tasks <<'EOF'
import importlib, importlib.metadata as md, sys
def version(d):
    try:
        return md.version(d)
    except md.PackageNotFoundError:
        return "?"
need = ["numpy", "torch", "gymnasium", "mujoco", "dm_control", "dm_env", "tree", "lxml", "stable_baselines3", "m3dt"]
for mod in need:
    try:
        m = importlib.import_module(mod)
    except Exception as e:  # noqa: BLE001 - report and stop
        sys.exit(f"run_bench_sac.sh: ERROR: cannot import {mod}: {type(e).__name__}: {e}")
    print(f"  {mod:18s} {getattr(m, '__version__', '')} {getattr(m, '__file__', '')}", file=sys.stderr)
import torch
cuda = torch.cuda.is_available()
print(f"  torch cuda: {cuda} {torch.cuda.get_device_name(0) if cuda else ''}", file=sys.stderr)
from m3dt import tasks
from m3dt.experts.envs import make_training_env
from m3dt.experts.names import expert_tasks
for name in sys.argv[1:]:
    try:
        env = make_training_env(name, 0)
        env.step(env.action_space.sample())
        env.close()
    except Exception as e:  # noqa: BLE001
        sys.exit(f"run_bench_sac.sh: ERROR: cannot build the training env of {name}: {type(e).__name__}: {e}")
    print(f"  env {name}: ok ({len(expert_tasks(name))} task(s))", file=sys.stderr)
sbx_ok = True
try:
    import jax, flax, optax, sbx  # noqa: F401
    print(f"  jax {jax.__version__} devices {jax.devices()}, flax {version('flax')}, optax {version('optax')}, "
          f"sbx {version('sbx-rl')}", file=sys.stderr)
except Exception as e:  # noqa: BLE001 - the SB3 rows still say something; say loudly what is lost
    sbx_ok = False
    print(f"run_bench_sac.sh: WARNING: sbx unusable ({type(e).__name__}: {e}); running the SB3 variants only",
          file=sys.stderr)
v = ["sb3", "sb3@cpu", "sb3-utd0.5@cpu"] if cuda else ["sb3", "sb3-utd0.5"]
if sbx_ok:
    v += ["sbx", "sbx@cpu", "sbx-tf8"] if cuda else ["sbx", "sbx-tf8"]
print(" ".join(v))
EOF
) || exit 3
variants=$(tail -n 1 <<<"$variants")   # the last line: anything a library printed on stdout is dropped
echo "variants: $variants"

echo "== bench_sac: $steps env steps per job, --jobs $jobs, guard $max_min min"
mkdir -p "$out/bench_sac"
rc=0
"$py" benchmarks/bench_sac.py --variants $variants --tasks $tasks --steps "$steps" --jobs "$jobs" --device auto \
    --max-minutes "$max_min" --out "$out/bench_sac" ${EXTRA:-} || rc=$?
ls -la "$out/bench_sac"
echo "bench_sac exit code $rc (2: some jobs failed, see FAILED lines and $out/bench_sac/jobs/*.log)"
exit $rc
