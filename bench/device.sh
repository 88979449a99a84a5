#!/usr/bin/env bash
# One call on a bare GPU machine (H100/H200 of the device tool): check the build prerequisites,
# build zcfast._C with that machine's nvcc and Python, run the kernel tests and the engine tests
# (two pytest processes: a device fault in one cannot fail the other), run the throughput
# benchmark, write one results file (JSON + Markdown) and print a short table last.
# Budget (bench/DEVICE.md): the whole script in ZCFAST_DEVICE_LIMIT_S (default 420 s = 7 min),
# every phase under `timeout` with its own cap, the benchmark gets what is left.
#
#   bash bench/device.sh                      # results in $OUT (device tool) or bench/results/device
#   ZCFAST_GIT_SHA=<sha> bash bench/device.sh # record the commit when the tree has no .git
#   ZCFAST_DEVICE_REHEARSAL=1 bash bench/device.sh   # CPU rehearsal (tests/test_bench_device.py)
#
# Knobs: PYTHON (default python3), NVCC, CMAKE (tool names or paths), ZCFAST_DEVICE_LIMIT_S,
# ZCFAST_BENCH_ARGS (extra arguments of bench/bench_device.py), ZCFAST_SKIP_TESTS=1,
# ZCFAST_DEVICE_REHEARSAL=1 (no GPU: the build is configured, not compiled, and the installed
# zcfast._C is used; GPU-only checks are reported, not required; only gpu-marked tests are
# selected, so they all skip; the benchmark runs its CPU smoke mode), ZCFAST_PYTHON_INCLUDE
# (where Python.h is looked for; default: the interpreter's own include directory).
# Exit code: 0 when every phase succeeded, 1 when one failed (the later phases still ran),
# 2 when a prerequisite is missing (nothing else ran).
# Nothing is downloaded: the machine's own torch, triton, cmake, pybind11 and pytest are used.
set -uo pipefail

START=$(date +%s)
LIMIT=${ZCFAST_DEVICE_LIMIT_S:-420}
REHEARSAL=${ZCFAST_DEVICE_REHEARSAL:-0}
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
OUT_DIR=${OUT:-$ROOT/bench/results/device}
mkdir -p "$OUT_DIR"
STATUS="$OUT_DIR/status.txt"
: > "$STATUS"
PY=${PYTHON:-python3}
NVCC=${NVCC:-nvcc}
CMAKE=${CMAKE:-cmake}
FAILED=0
left() { echo $(( LIMIT - ($(date +%s) - START) )); }
# cap A R: at most A seconds, and never into the R seconds reserved for the phases after this one
cap() { local a=$1 b; b=$(left); b=$(( b - $2 )); (( b < a )) && a=$b; (( a < 1 )) && a=1; echo "$a"; }
say() { echo "[device.sh $(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
status() { echo "$1: $2" >> "$STATUS"; say "$1: $2"; }

export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 ZCFAST_CUDA=ON ZCFAST_REPORT_DIR="$OUT_DIR"
export ZCFAST_GIT_SHA=${ZCFAST_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
command -v "$NVCC" >/dev/null 2>&1 || { [ -x /usr/local/cuda/bin/nvcc ] && [ "$NVCC" = nvcc ] \
  && export PATH="/usr/local/cuda/bin:$PATH"; }
JOBS=$(nproc 2>/dev/null || echo 8)
[ "$REHEARSAL" = 1 ] && say "REHEARSAL on $(uname -m): no GPU phase is expected to run"

# ---- 0. prerequisites: fail fast, naming what is missing (budget: a few seconds) -----------------
T=$(date +%s)
MISSING=() NOTES=()
need() {  # need WHAT OK [GPU_ONLY]: missing GPU-only items are notes in a rehearsal
  if [ "$2" = 1 ]; then return; fi
  if [ "$REHEARSAL" = 1 ] && [ "${3:-0}" = 1 ]; then NOTES+=("$1"); else MISSING+=("$1"); fi
}
# one interpreter start answers every Python-side question (find_spec does not import)
PYINFO=$("$PY" - <<'EOF' 2>/dev/null
import importlib.util
import sys
import sysconfig

print("include", sysconfig.get_paths()["include"])
print("ext", sysconfig.get_config_var("EXT_SUFFIX"))
for m in ("torch", "pytest", "triton", "pybind11"):
    print(m, int(importlib.util.find_spec(m) is not None))
try:
    import pybind11

    print("pybind11_dir", pybind11.get_cmake_dir())
except Exception:
    pass
try:
    import torch

    print("cuda", int(torch.cuda.is_available()))
    print("versions", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
except Exception:
    print("cuda", 0)
EOF
)
pyinfo() { echo "$PYINFO" | awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }'; }
[ -n "$PYINFO" ] && OK=1 || OK=0; need "python ($PY)" $OK
PYINC=${ZCFAST_PYTHON_INCLUDE:-$(pyinfo include)}
[ -n "$PYINC" ] && [ -f "$PYINC/Python.h" ] && OK=1 || OK=0
need "Python.h (looked in ${PYINC:-?}; install the Python development headers)" $OK 1
command -v "$NVCC" >/dev/null 2>&1 && OK=1 || OK=0; need "nvcc ($NVCC; set NVCC=/path/to/nvcc)" $OK 1
CMAKE_V=$("$CMAKE" --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1)
OK=0
if [ -n "$CMAKE_V" ]; then
  IFS=. read -r CM_MAJ CM_MIN <<< "$CMAKE_V"
  (( CM_MAJ > 3 || (CM_MAJ == 3 && CM_MIN >= 18) )) && OK=1
fi
need "cmake >= 3.18 ($CMAKE${CMAKE_V:+, found $CMAKE_V})" $OK 1
[ "$(pyinfo pybind11)" = 1 ] && OK=1 || OK=0; need "pybind11 (python module)" $OK 1
[ "$(pyinfo torch)" = 1 ] && OK=1 || OK=0; need "torch" $OK
[ "$(pyinfo cuda)" = 1 ] && OK=1 || OK=0; need "a CUDA device visible to torch" $OK 1
[ "$(pyinfo pytest)" = 1 ] && OK=1 || OK=0; need "pytest" $OK
[ "$(pyinfo triton)" = 1 ] || NOTES+=("triton (the Triton rows are skipped)")
if (( ${#MISSING[@]} )); then
  status prerequisites "MISSING: $(IFS=';'; echo "${MISSING[*]}")"
  status total "$(( $(date +%s) - START )) s: stopped before the build"
  exit 2
fi
status prerequisites "ok in $(( $(date +%s) - T )) s${NOTES[*]:+ (not available, not needed here: $(IFS=';'; echo "${NOTES[*]}"))}"
say "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
say "python: $(pyinfo versions)"
say "nvcc: $("$NVCC" --version 2>/dev/null | tail -1)"

# ---- 1. build (cap 150 s): CMake in place (no packaging step, no download) ---------------------
T=$(date +%s)
BUILD_DIR="$ROOT/build/device"
EXT=$(pyinfo ext)
PYBIND_DIR=$(pyinfo pybind11_dir)
PY_EXE=$(command -v "$PY")
CUDA_FLAG=ON
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
if [ "$REHEARSAL" = 1 ]; then  # configure only, CUDA off, in $OUT_DIR; keep the installed module
  BUILD_DIR="$OUT_DIR/build-rehearsal"
  CUDA_FLAG=OFF
else
  rm -f zcfast/_C*.so
fi
build_ext() {
  set -e
  "$CMAKE" -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DZCFAST_CUDA="$CUDA_FLAG" \
    -DCMAKE_CUDA_COMPILER="$(command -v "$NVCC" || echo "$NVCC")" \
    -DPython_EXECUTABLE="$PY_EXE" -Dpybind11_DIR="$PYBIND_DIR" \
    -DZCFAST_OUTPUT_NAME="_C$EXT" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/zcfast"
  [ "$REHEARSAL" = 1 ] && return 0
  "$CMAKE" --build "$BUILD_DIR" --parallel "$JOBS"
}
if [ "$REHEARSAL" = 1 ] && [ -z "$PYBIND_DIR" ]; then
  BRC=0; echo "configure not rehearsed: pybind11 is not importable here" > "$OUT_DIR/build.log"
else
  # timeout signals its whole process group: cmake, ninja and every nvcc go with it
  timeout -s TERM "$(cap 150 270)" bash -c "$(declare -p BUILD_DIR GEN PY_EXE PYBIND_DIR EXT ROOT JOBS CMAKE NVCC CUDA_FLAG REHEARSAL); $(declare -f build_ext); build_ext" \
    > "$OUT_DIR/build.log" 2>&1
  BRC=$?
fi
# the Triton kernels install as zcfast.kernels (setup.py's package_dir); in place, a link does it
[ "$REHEARSAL" = 1 ] || [ -e zcfast/kernels ] || ln -s ../kernels zcfast/kernels
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
CHECK=$("$PY" -c 'import zcfast._C as C; print("WITH_CUDA=%s archs=%s kernels=%s" % (C.WITH_CUDA, C.CUDA_ARCHS, ",".join(k for k in ("segment_saliency","fisher_channels","naswot_kernel","fill_uniform") if hasattr(getattr(C, "cuda", None), k))))' 2>&1 | tail -1)
if [ $BRC -eq 0 ] && { [[ "$CHECK" == WITH_CUDA=True* ]] || { [ "$REHEARSAL" = 1 ] && [[ "$CHECK" == WITH_CUDA=* ]]; }; }; then
  status build "ok in $(( $(date +%s) - T )) s ($CHECK)$([ "$REHEARSAL" = 1 ] && echo ', rehearsal: configured only, installed module used')"
else
  FAILED=1
  status build "FAILED rc=$BRC in $(( $(date +%s) - T )) s ($CHECK); see build.log"
  tail -30 "$OUT_DIR/build.log"
fi

# ---- 2. tests: kernels (cap 120 s), then the engine (cap 120 s), one process each -------------
# CUDA_LAUNCH_BLOCKING=1: a device fault is reported at the launch that caused it. Cold Triton
# compiles happen here (each kernel specialisation once). In a rehearsal only gpu-marked tests
# are selected (they all skip without a device).
run_tests() {  # run_tests NAME CAP RESERVE pytest-arguments...
  local name=$1 tt rc summary; tt=$(cap "$2" "$3"); shift 3
  local sel=(); [ "$REHEARSAL" = 1 ] && sel=(-m gpu)
  local t0; t0=$(date +%s)
  CUDA_LAUNCH_BLOCKING=1 timeout -s INT "$tt" "$PY" -m pytest -q -rfE -p no:cacheprovider \
    --durations=15 "${sel[@]}" "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  summary=$(grep -E "passed|failed|error|skipped|no tests ran" "$OUT_DIR/$name.log" | tail -1)
  [ $rc -eq 124 ] && summary="TIMEOUT after $tt s: $summary"
  # 0: all passed; 5: nothing collected (a wrong path or marker): both reported, 5 as a failure
  (( rc != 0 )) && FAILED=1
  status "$name" "rc=$rc in $(( $(date +%s) - t0 )) s (cap $tt s): ${summary:-no summary, see $name.log}"
  grep -E "^(FAILED|ERROR)" "$OUT_DIR/$name.log" | head -15
}
if [ "${ZCFAST_SKIP_TESTS:-0}" != "1" ]; then
  # the host replays of tests/cuda_host run in CI on the CPU; the device runs the GPU cases
  run_tests kernel_tests 120 210 tests/test_cuda_build.py tests/test_cuda_kernels.py -k "not host_replay"
  run_tests engine_tests 120 90 tests/test_gpu_engine.py tests/test_determinism.py
fi

# ---- 3. benchmark: the time that is left, minus 15 s for the report ---------------------------
T=$(date +%s)
BT=$(cap 600 15)
BUDGET=$(( BT - 20 ))
(( BUDGET < 30 )) && BUDGET=30
BENCH_ARGS=(${ZCFAST_BENCH_ARGS:-})
[ "$REHEARSAL" = 1 ] && BENCH_ARGS+=(--cpu-smoke --skip throughput,full,work,profile)
timeout -s TERM "$BT" "$PY" bench/bench_device.py --out "$OUT_DIR" --budget-s "$BUDGET" \
  --status-file "$STATUS" --no-table "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT_DIR/bench.log" | grep --line-buffered -E "^\[bench"
BRC=${PIPESTATUS[0]}
(( BRC != 0 )) && FAILED=1
status bench "rc=$BRC in $(( $(date +%s) - T )) s (budget $BUDGET s)"
status total "$(( $(date +%s) - START )) s of the ${LIMIT} s limit"

# ---- 4. the short table, last (also folds the final status lines into device.json / .md) -------
echo "files in $OUT_DIR:"
ls -l "$OUT_DIR" | tail -n +2 | awk '{print "  " $NF " " $5}'
RESULT=device
[[ " ${BENCH_ARGS[*]} " == *" --cpu-smoke "* ]] && RESULT=device_smoke  # not a GPU measurement
"$PY" bench/bench_device.py --report "$OUT_DIR/$RESULT.json" --status-file "$STATUS"
exit $FAILED
