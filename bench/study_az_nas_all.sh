#!/bin/bash
# AZ-NAS's four components over all 15,625 NB201 cells (CIFAR-100 network), in two halves that
# run side by side (one thread each; about 0.75 s per cell on this 2-core AMD EPYC, so about
# 1.6 hours per half), then the full-space correlation of az_nas, meco and their ensemble
# (bench/results/az_nas_all/README.md). Resumable: rerun the same command after an interruption.
#
#   bash bench/study_az_nas_all.sh            # both halves in parallel, then the table
#   ZCFAST_HALF=a bash bench/study_az_nas_all.sh   # one half only (e.g. on another machine)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results/az_nas_all
ZC=${ZCFAST:-zcfast}
mkdir -p "$OUT"
seq 0 7812 > "$OUT/half_a.txt"       # NB201 indices of each half
seq 7813 15624 > "$OUT/half_b.txt"
half() {
  local h=$1 resume=()
  [ -s "$OUT/az_nas_cifar100_$h.csv" ] && resume=(--resume)
  OMP_NUM_THREADS=1 "$ZC" score --dataset cifar100 --archs "$OUT/half_$h.txt" --proxies az_nas \
    --seed 0 --threads 1 --no-progress --out "$OUT/az_nas_cifar100_$h.csv" "${resume[@]}"
}
if [ -n "${ZCFAST_HALF:-}" ]; then half "$ZCFAST_HALF"; exit; fi
half a & A=$!
half b & B=$!
wait $A; wait $B
"$ZC" correlate bench/results/meco_all/synflow_meco_flops_cifar100.csv \
  "$OUT/az_nas_cifar100_a.csv" "$OUT/az_nas_cifar100_b.csv" \
  --ensembles az_nas,ensemble:az_nas+meco,ensemble:synflow+meco \
  --json "$OUT/correlate_cifar100.json" \
  | tee "$OUT/correlate_cifar100.txt"
