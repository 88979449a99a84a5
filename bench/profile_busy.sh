#!/usr/bin/env bash
# Where does the CPU go when zcfast shares the machine with a torch matmul loop?
# Runs the demo's scoring job (bench/bench_busy.py's 'measure' worker) next to the matmul loop,
# both with the configuration given (default 'before': torch's defaults, GNU OpenMP's default
# wait policy), then samples both processes with perf for 15 s and shows the top symbols,
# per-thread CPU (top -H) and context switches. Needs perf; run it under the compute lock:
#   flock /work/.compute.lock flock /work/.compute2.lock bash bench/profile_busy.sh [before|after] > bench/results/busy_profile_<config>.txt
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=${1:-before}
PY=${PYTHON:-.venv/bin/python}
T=$(mktemp -d)
trap 'kill $MM $M 2>/dev/null || true; rm -rf "$T"' EXIT
unset OMP_WAIT_POLICY GOMP_SPINCOUNT OMP_NUM_THREADS
export PYTHONPATH=$PWD
echo "# bench/profile_busy.sh $CFG: git $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(date '+%Y-%m-%d %H:%M')"
echo "uptime before: $(uptime)"
"$PY" bench/bench_busy.py --worker matmul --out "$T/mm.json" --ready "$T/mm.ready" &
MM=$!
while [ ! -f "$T/mm.ready" ]; do sleep 0.1; done
"$PY" bench/bench_busy.py --worker measure --config "$CFG" --cells 6 --warm 2 --out "$T/m.json" --ready "$T/m.ready" &
M=$!
while [ ! -f "$T/m.ready" ]; do sleep 0.1; done
sleep 2
echo; echo "## threads of the two jobs (top -H; zcfast = pid $M, matmul loop = pid $MM)"
top -H -b -n 1 -d 1 -w 150 -p "$M,$MM" | tail -n +7
echo; echo "## perf stat, 10 s"
perf stat -e task-clock,context-switches,cpu-migrations -p "$M,$MM" -- sleep 10 2>&1 | grep -v "^$"
perf record -q -e cpu-clock -F 499 -g -o "$T/perf.data" -p "$M,$MM" -- sleep 15 2>/dev/null
echo; echo "## perf report: top symbols over both jobs, 15 s"
# (the report goes to a file first: 'head' on a pipe would end the script with SIGPIPE)
perf report -i "$T/perf.data" --no-children --sort dso,sym --stdio > "$T/report.txt" 2>/dev/null
awk '/^ +[0-9.]+%/ && n++ < 12' "$T/report.txt" | cut -c1-140
echo; echo "## the same samples by process (zcfast = pid $M, matmul loop = pid $MM) and library"
perf report -i "$T/perf.data" --no-children --sort pid,dso --stdio 2>/dev/null \
    | awk '/^ +[0-9.]+%/ && n++ < 8' | cut -c1-140
GOMP=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1"))')
echo; echo "## the hottest libgomp addresses, disassembled (a 'pause' loop is a spin-wait)"
for a in $(awk '/^ +[0-9.]+%.*libgomp/ && n++ < 2' "$T/report.txt" | grep -oE '0x[0-9a-f]+'); do
    objdump -d "$GOMP" --start-address=$(( a - 6 )) --stop-address=$(( a + 12 )) | grep -E '^ +[0-9a-f]+:' || true
    echo
done
kill -TERM "$M" "$MM" 2>/dev/null || true  # the profile is what this script is for
wait "$M" "$MM" 2>/dev/null || true
echo "uptime after: $(uptime)"
