#!/usr/bin/env bash
# The install paths of a user who never runs make, checked end to end:
#   1. build an sdist, then a wheel *from that sdist* (a source file missing from the sdist
#      fails here, as it would for anyone installing from it);
#   2. install the wheel into a new, empty venv (no source tree on its path) that sees the
#      already-installed torch (and numpy, pandas...) of .venv, so nothing large is downloaded
#      and no CUDA torch build can be pulled; 'pip check' then proves every requirement of the
#      wheel is met, and a dry run of the [test] extra proves it resolves without a new torch;
#   3. from an unrelated folder: 'zcfast info', a 2-cell 'zcfast score', 'zcfast correlate'.
# Needs make setup's .venv (or PYTHON=...). CUDA kernels are not compiled here (ZCFAST_CUDA=OFF)
# to keep it short; what is checked is the packaging. Usage: scripts/check_install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)
step() { echo "check_install [$(( $(date +%s) - t0 )) s]: $*"; }

step "sdist, then a wheel built from it"
"$PY" -m pip install -q --disable-pip-version-check "build>=1" >/dev/null
ZCFAST_CUDA=OFF "$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; echo "check_install: building the sdist/wheel failed"; exit 1; }
SDIST=$(ls "$WORK"/dist/zcfast-*.tar.gz)
WHEEL=$(ls "$WORK"/dist/zcfast-*.whl)
tar -tzf "$SDIST" > "$WORK/sdist.txt"  # (listed to a file: grep -q would cut a pipe short)
unzip -Z1 "$WHEEL" > "$WORK/wheel.txt"
for f in LICENSE CMakeLists.txt csrc/bindings.cpp csrc/cuda/saliency.cu kernels/saliency.py \
         zcfast/data/_bundled/nb201_groundtruth.npz; do
    grep -qx "[^/]*/$f" "$WORK/sdist.txt" || { echo "check_install: $f is missing from the sdist"; exit 1; }
done
grep -q '^zcfast/_C\..*\.so$' "$WORK/wheel.txt" || { echo "check_install: the wheel has no zcfast/_C"; exit 1; }
grep -qx 'zcfast-[^/]*\.dist-info/licenses/LICENSE' "$WORK/wheel.txt" \
    || { echo "check_install: the wheel has no LICENSE (.dist-info/licenses)"; exit 1; }
# every Python module of the source tree's zcfast/ is in the wheel (a subpackage left out of
# setup.py installs a CLI that fails on import)
missing=$(cd "$ROOT" && find zcfast -name '*.py' -not -path '*/__pycache__/*' | sort \
          | comm -23 - <(sort "$WORK/wheel.txt"))
[ -z "$missing" ] || { echo "check_install: missing from the wheel:"; echo "$missing"; exit 1; }
python_files=$(grep -c '\.py$' "$WORK/wheel.txt" || true)
step "$(basename "$SDIST"), $(basename "$WHEEL") ($python_files Python files)"

step "install the wheel into a clean venv that reuses .venv's torch"
BASE=$("$PY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
"$BASE" -m venv "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
HOST_SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$HOST_SITE" > "$SITE/zz_reuse_host_packages.pth"  # appended after the venv's own packages
VPY=$WORK/venv/bin/python
# the venv's own old setuptools would shadow the one torch requires; the host's is used instead
"$VPY" -m pip uninstall -q -y setuptools >/dev/null 2>&1 || true
"$VPY" -m pip install -q --disable-pip-version-check --no-deps "$WHEEL"
"$VPY" -m pip check
"$VPY" -m pip install --disable-pip-version-check --dry-run "$WHEEL[test]" >"$WORK/dry.log" 2>&1 \
    || { cat "$WORK/dry.log"; echo "check_install: the [test] extra does not resolve"; exit 1; }
if grep -i "would install.*torch-" "$WORK/dry.log"; then
    echo "check_install: installing zcfast[test] would pull a new torch"; exit 1
fi

step "run the installed package from an unrelated folder"
mkdir "$WORK/elsewhere" && cd "$WORK/elsewhere"
where=$("$VPY" -c 'import zcfast, os; print(os.path.dirname(zcfast.__file__))')
case "$where" in
    "$WORK/venv/"*) ;;
    *) echo "check_install: imported zcfast from $where, not from the wheel"; exit 1 ;;
esac
"$WORK/venv/bin/zcfast" info > info.json
"$VPY" -c 'import json; d = json.load(open("info.json")); assert d["cpu_threads"]["threads"] >= 1, d'
"$WORK/venv/bin/zcfast" score --dataset cifar10 --proxies synflow,params,jacob_cov --archs 3 \
    --batch-size 8 --seed 0 --threads 1 --out s.csv --no-progress
"$WORK/venv/bin/zcfast" correlate s.csv | tail -n +3
test "$(wc -l < s.csv)" -eq 4 || { echo "check_install: s.csv should hold 3 scored cells"; exit 1; }
step "ok"
