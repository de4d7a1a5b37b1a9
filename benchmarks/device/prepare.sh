#!/usr/bin/env bash
# Prepare, on a machine WITH network, what benchmarks/device/run_bench_sac.sh needs on a
# device machine WITHOUT network (it has Python 3.12, torch, JAX, numpy, pandas, scipy,
# h5py, pyyaml, cloudpickle, absl-py; not the simulators, SB3 or sbx):
#
#   <dest>/wheels/   cp312 manylinux x86_64 wheels (compiled) + pure-Python wheels, the same
#                    versions as the environment running this script, no dependencies
#   <dest>/pylib/    a TRIMMED copy of the installed dm_control (no locomotion/, manipulation/,
#                    dog assets, tests, test assets, blender/, viewer/): ~3 MB instead of 116 MB
#
# Usage: benchmarks/device/prepare.sh [dest]      (run from the repo, venv active)
#   dest defaults to <main worktree>/.devsite, which is added to the repo's info/exclude.
#   PYVER=3.11 prepare.sh /tmp/x downloads the wheels for another Python (local testing).
set -euo pipefail

common=$(git rev-parse --path-format=absolute --git-common-dir)   # /work/main/.git, also from a worktree
main_wt=$(dirname "$common")
dest=${1:-$main_wt/.devsite}
pyver=${PYVER:-3.12}
py=${PYTHON:-python3}

if [[ -z "${1:-}" ]]; then
    grep -qxF '/.devsite/' "$common/info/exclude" 2>/dev/null || { mkdir -p "$common/info"; echo '/.devsite/' >> "$common/info/exclude"; }
fi

# Packages the device lacks (the import closure of bench_sac's jobs, minus what the device has).
compiled=(mujoco dm-tree lxml msgpack wrapt psutil glfw charset-normalizer)
pure=(gymnasium Farama-Notifications stable_baselines3 sbx-rl flax optax tfp-nightly rich Pygments
      markdown-it-py mdurl tqdm etils decorator dm-env imageio packaging six)

pins=()
for name in "${compiled[@]}" "${pure[@]}"; do
    v=$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") \
        || { echo "prepare.sh: $name is not installed in $("$py" -c 'import sys; print(sys.prefix)'); install it first" >&2; exit 1; }
    pins+=("$name==$v")
done
echo "pins: ${pins[*]}"

rm -rf "$dest/wheels" "$dest/pylib"
mkdir -p "$dest/wheels" "$dest/pylib"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest/wheels" "${pins[@]}"

# Trimmed dm_control: what dm_control.suite needs (+ mjcf, composer-free), no big assets or tests.
src=$("$py" -c "import dm_control, os; print(os.path.dirname(dm_control.__file__))")
dmv=$("$py" -c "import importlib.metadata as m; print(m.version('dm_control'))")
"$py" - "$src" "$dest/pylib/dm_control" <<'PYEOF'
import fnmatch, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
drop_top = {"locomotion", "manipulation", "blender", "viewer", "third_party"}
drop_rel = {"suite/dog_assets", "suite/all_domains.png"}
def ignore(d, names):
    rel = os.path.relpath(d, src)
    out = set()
    for n in names:
        r = os.path.normpath(os.path.join(rel, n))
        if (rel == "." and n in drop_top) or r in drop_rel or n in ("__pycache__", "testing", "test_assets") \
                or fnmatch.fnmatch(n, "*_test.py"):
            out.add(n)
    return out
shutil.copytree(src, dst, ignore=ignore)
PYEOF
cp -r "$(dirname "$src")/dm_control-$dmv.dist-info" "$dest/pylib/"
rm -f "$dest/pylib/dm_control-$dmv.dist-info/RECORD"   # the copy is trimmed: its RECORD would be wrong

cat > "$dest/MANIFEST.txt" <<EOF
prepared $(date -u +%FT%TZ) for cp${pyver/./} by benchmarks/device/prepare.sh
${pins[*]} dm_control==$dmv (trimmed copy in pylib/)
EOF
ls "$dest/wheels"
du -sh "$dest/wheels" "$dest/pylib"
du -sh "$dest"
