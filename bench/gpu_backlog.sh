#!/usr/bin/env bash
# The studies that wait for a GPU, for the device time left after bench/device.sh (bench/DEVICE.md).
# Each step is one resumable `zcfast score` run into $OUT (device tool) or bench/results/gpu_backlog,
# under `timeout`, in order of value per device second; a step cut by the limit keeps its rows
# (rerun with the same OUT contents to continue: --resume). Needs the zcfast that device.sh built.
#
#   bash bench/gpu_backlog.sh                                  # on the GPU machine
#   ZCFAST_BACKLOG_LIMIT_S=240 bash bench/gpu_backlog.sh       # whole-script limit (default 240 s)
#   ZCFAST_BACKLOG_REHEARSAL=1 bash bench/gpu_backlog.sh       # CPU: 2 cells a step, small batches
#   ZCFAST_BACKLOG_FROM=DIR bash bench/gpu_backlog.sh          # continue the partial files in DIR
#
# Steps (what each result completes is in bench/DEVICE.md, "Backlog"):
#   1. nb101_pool: NAS-Bench-101's bundled pool, the paper's gradient proxies with grasp, batch 256
#   2. modern_3000_cifar100: the modern proxies that the 3,000-cell CIFAR-100 table of
#      bench/results/modern_3000 lacks, except VKDNW (same cells: --archs 3000 --seed 0);
#      ImageNet16-120's were scored on the CPU (that folder's NOTES.md)
#   3-4. vkdnw_3000_<dataset>: VKDNW on the same cells (one backward pass per class: 36x its
#      CIFAR-10 per-model cost on ImageNet16-120, bench/results/modern_cost_ImageNet16-120.md)
# (AZ-NAS and MeCo over the whole space were scored on the CPU: bench/results/az_nas_all)
# Exit code: 0 every step finished, 1 one failed or was cut by the limit, 2 a prerequisite is
# missing (nothing ran).
set -uo pipefail

START=$(date +%s)
LIMIT=${ZCFAST_BACKLOG_LIMIT_S:-240}
REHEARSAL=${ZCFAST_BACKLOG_REHEARSAL:-0}
cd "$(dirname "$0")/.." || exit 1
# the zcfast of this tree, with the extension bench/device.sh built in place
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR=${OUT:-$(pwd)/bench/results/gpu_backlog}
mkdir -p "$OUT_DIR"
# a previous call's partial files (copied back into the tree), continued with --resume
FROM=${ZCFAST_BACKLOG_FROM:-}
if [ -n "$FROM" ]; then
  if [ ! -d "$FROM" ]; then echo "gpu_backlog: ZCFAST_BACKLOG_FROM=$FROM is not a folder" >&2; exit 2; fi
  if [ "$(cd "$FROM" && pwd)" != "$(cd "$OUT_DIR" && pwd)" ]; then
    cp -n "$FROM"/*.csv "$FROM"/*.csv.meta.json "$OUT_DIR"/ 2>/dev/null || true
  fi
fi
PY=${PYTHON:-python3}
STATUS="$OUT_DIR/backlog_status.txt"
left() { echo $(( LIMIT - ($(date +%s) - START) )); }
say() { echo "[gpu_backlog $(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$STATUS"; }

if [ "$REHEARSAL" = 1 ]; then
  DEV=cpu; NB101_ARCHS=2; MODERN=2; NB101_BATCH=8
  EXTRA=(--threads 1)
else
  DEV=cuda; NB101_ARCHS=all; MODERN=3000; NB101_BATCH=256
  EXTRA=()
fi
export ZCFAST_GIT_SHA=${ZCFAST_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
say "start: limit ${LIMIT}s, device ${DEV}, git ${ZCFAST_GIT_SHA}"
# prerequisites: torch, CUDA (not in a rehearsal) and the compiled core; exit 2 if one is missing
PRE='import sys, torch, zcfast._C
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "cuda", cuda, torch.cuda.get_device_name(0) if cuda else "")
sys.exit(0 if cuda or sys.argv[1] != "cuda" else 1)'
if ! "$PY" -c "$PRE" "$DEV" >> "$STATUS" 2>&1; then
  say "prerequisite missing (torch, CUDA or zcfast._C: run bench/device.sh first); nothing ran"
  exit 2
fi
WORST=0

step() {  # step NAME ARGS...: one zcfast score run, resumable, under what is left of the limit
  local name=$1; shift
  local t; t=$(left)
  if (( t < 20 )); then say "$name: skipped (${t}s left)"; return; fi
  say "$name: up to ${t}s"
  timeout -s INT -k 30 "$t" "$PY" -m zcfast.cli score "$@" --device "$DEV" --no-progress --resume \
    "${EXTRA[@]}" --out "$OUT_DIR/$name.csv" >> "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local rows=0
  [ -f "$OUT_DIR/$name.csv" ] && rows=$(( $(wc -l < "$OUT_DIR/$name.csv") - 1 ))
  say "$name: rc $rc$([ $rc = 124 ] && echo ' (cut by the limit: rerun to continue)'), $rows rows"
  (( rc > WORST )) && WORST=$rc
}

# 1. the NB101 pool: grasp (a tensor peak of 5-31 GiB a cell at batch 256 with the packed engine,
#    bench/results/nb101_grasp_memory.md; some cells do not fit on the 24 GB CPU) and the five other gradient
#    proxies, the settings of bench/results/nb101_c10_subset/pool_*.csv
step nb101_pool --space nb101 --archs "$NB101_ARCHS" --proxies grasp,grad_norm,snip,fisher,plain,jacob_cov \
  --batch-size "$NB101_BATCH" --images cifar10-subset --engine packed
# 2. the modern proxies missing from the 3,000-cell CIFAR-100 table (it has AZ-NAS's components,
#    meco and synflow; snip and jacob_cov give the paper's vote). A table joins a file only when
#    it holds every cell, so VKDNW, the costly one, has its own steps, last. (ImageNet16-120's
#    were scored on the CPU: a GPU file of them would disagree with it at float32 rounding.)
step modern_3000_cifar100 --dataset cifar100 --archs "$MODERN" --seed 0 \
  --proxies zico,epe_nas,zen,snip,jacob_cov,swap,swap_reg
# 3-4. VKDNW on the same cells
step vkdnw_3000_cifar100 --dataset cifar100 --archs "$MODERN" --seed 0 --proxies vkdnw,vkdnw_dim,vkdnw_single
step vkdnw_3000_ImageNet16-120 --dataset ImageNet16-120 --archs "$MODERN" --seed 0 \
  --proxies vkdnw,vkdnw_dim,vkdnw_single
say "done (worst exit code $WORST; 124: a step was cut by the limit)"
exit $(( WORST == 0 ? 0 : 1 ))
