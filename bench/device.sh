#!/usr/bin/env bash
# One call on a bare GPU machine (H100/H200 of the device tool): build zcfast._C with that
# machine's nvcc and Python, run the GPU tests, run the throughput benchmark, write one results
# file (JSON + Markdown) and print a short table last. Finishes in under 8 minutes: every phase
# runs under `timeout`, and the benchmark gets whatever time is left (it skips or extrapolates
# what does not fit, and saves its results after every phase).
#
#   bash bench/device.sh                      # results in $OUT (device tool) or bench/results/device
#   ZCFAST_GIT_SHA=<sha> bash bench/device.sh # record the commit when the tree has no .git
#
# Knobs: PYTHON (default python3), ZCFAST_DEVICE_LIMIT_S (default 465: whole script),
# ZCFAST_BENCH_ARGS (extra arguments of bench/bench_device.py), ZCFAST_SKIP_TESTS=1.
# Nothing is downloaded: the machine's own torch, triton, cmake, pybind11 and pytest are used.
set -uo pipefail

START=$(date +%s)
LIMIT=${ZCFAST_DEVICE_LIMIT_S:-465}
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
OUT_DIR=${OUT:-$ROOT/bench/results/device}
mkdir -p "$OUT_DIR"
STATUS="$OUT_DIR/status.txt"
: > "$STATUS"
PY=${PYTHON:-python3}
left() { echo $(( LIMIT - ($(date +%s) - START) )); }
cap() { local a=$1 b; b=$(left); b=$(( b - $2 )); (( b < a )) && a=$b; (( a < 1 )) && a=1; echo "$a"; }
say() { echo "[device.sh $(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
status() { echo "$1: $2" >> "$STATUS"; say "$1: $2"; }

export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 ZCFAST_CUDA=ON
export ZCFAST_GIT_SHA=${ZCFAST_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
command -v nvcc >/dev/null 2>&1 || export PATH="/usr/local/cuda/bin:$PATH"
JOBS=$(nproc 2>/dev/null || echo 8)

say "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
say "python: $($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1)"
say "nvcc: $(nvcc --version 2>/dev/null | tail -1)"

# ---- 1. build: CMake in place (no packaging step, no download), module next to the sources ----
T=$(date +%s)
BUILD_DIR="$ROOT/build/device"
EXT=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
PYBIND_DIR=$($PY -m pybind11 --cmakedir 2>/dev/null)
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
rm -f zcfast/_C*.so
build_ext() {
  set -e
  cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DZCFAST_CUDA=ON \
    -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$PYBIND_DIR" \
    -DZCFAST_OUTPUT_NAME="_C$EXT" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/zcfast"
  cmake --build "$BUILD_DIR" --parallel "$JOBS"
}
# timeout signals its whole process group: cmake, ninja and every nvcc go with it
timeout -s TERM "$(cap 240 200)" bash -c "$(declare -p BUILD_DIR GEN PY PYBIND_DIR EXT ROOT JOBS); $(declare -f build_ext); build_ext" \
  > "$OUT_DIR/build.log" 2>&1
BRC=$?
# the Triton kernels install as zcfast.kernels (setup.py's package_dir); in place, a link does it
[ -e zcfast/kernels ] || ln -s ../kernels zcfast/kernels
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
CHECK=$($PY -c 'import zcfast._C as C; print("WITH_CUDA=%s archs=%s kernels=%s" % (C.WITH_CUDA, C.CUDA_ARCHS, ",".join(k for k in ("segment_saliency","fisher_channels","naswot_kernel") if hasattr(getattr(C, "cuda", None), k))))' 2>&1 | tail -1)
if [ $BRC -eq 0 ] && [[ "$CHECK" == WITH_CUDA=True* ]]; then
  status build "ok in $(( $(date +%s) - T )) s ($CHECK)"
else
  status build "FAILED rc=$BRC in $(( $(date +%s) - T )) s ($CHECK); see build.log"
  tail -30 "$OUT_DIR/build.log"
fi

# ---- 2. GPU tests: the kernel tests and every test marked gpu ---------------------------------
if [ "${ZCFAST_SKIP_TESTS:-0}" != "1" ]; then
  T=$(date +%s)
  TT=$(cap 170 150)
  timeout -s INT "$TT" $PY -m pytest -q -rfE -p no:cacheprovider \
    tests/test_cuda_build.py tests/test_cuda_kernels.py tests/test_gpu_engine.py \
    > "$OUT_DIR/tests.log" 2>&1
  TRC=$?
  SUMMARY=$(grep -E "passed|failed|error" "$OUT_DIR/tests.log" | tail -1)
  GPUSUM=""
  if (( $(left) > 170 )); then  # the rest of the gpu-marked tests, when time allows
    timeout -s INT "$(cap 60 150)" $PY -m pytest -q -rfE -p no:cacheprovider -m gpu tests \
      --ignore=tests/test_cuda_kernels.py --ignore=tests/test_gpu_engine.py \
      --ignore=tests/test_cuda_build.py >> "$OUT_DIR/tests.log" 2>&1
    GPUSUM=" + other gpu tests: $(grep -E "passed|failed|error|no tests ran|deselected" "$OUT_DIR/tests.log" | tail -1)"
  fi
  [ $TRC -eq 124 ] && SUMMARY="TIMEOUT after $TT s: $SUMMARY"
  status tests "rc=$TRC in $(( $(date +%s) - T )) s: ${SUMMARY:-no summary, see tests.log}$GPUSUM"
  grep -E "^(FAILED|ERROR)" "$OUT_DIR/tests.log" | head -15
fi

# ---- 3. benchmark: the time that is left, minus a margin for the report -----------------------
T=$(date +%s)
BT=$(cap 600 15)
BUDGET=$(( BT - 20 ))
(( BUDGET < 30 )) && BUDGET=30
timeout -s TERM "$BT" $PY bench/bench_device.py --out "$OUT_DIR" --budget-s "$BUDGET" \
  --status-file "$STATUS" --no-table ${ZCFAST_BENCH_ARGS:-} 2>&1 | tee "$OUT_DIR/bench.log" | grep --line-buffered -E "^\[bench"
BRC=${PIPESTATUS[0]}
status bench "rc=$BRC in $(( $(date +%s) - T )) s (budget $BUDGET s)"
status total "$(( $(date +%s) - START )) s of the ${LIMIT} s limit"

# ---- 4. the short table, last (also folds the final status lines into device.json / .md) -------
echo "files in $OUT_DIR:"
ls -l "$OUT_DIR" | tail -n +2 | awk '{print "  " $NF " " $5}'
RESULT=device
[[ "${ZCFAST_BENCH_ARGS:-}" == *--cpu-smoke* ]] && RESULT=device_smoke  # dry run of this script
$PY bench/bench_device.py --report "$OUT_DIR/$RESULT.json" --status-file "$STATUS"
