#!/bin/bash
# AZ-NAS's four components over all 15,625 NB201 cells, in two halves that run side by side
# (one thread each; measured costs per cell are in bench/results/az_nas_all/README.md), then
# the full-space correlation of az_nas, meco and their ensemble. Resumable: rerun the same
# command after an interruption.
#
#   bash bench/study_az_nas_all.sh                         # CIFAR-100: both halves, the table
#   ZCFAST_DATASET=cifar10 bash bench/study_az_nas_all.sh  # CIFAR-10 (az_nas and meco here)
#   ZCFAST_HALF=a bash bench/study_az_nas_all.sh           # one half only (another machine)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results/az_nas_all
ZC=${ZCFAST:-zcfast}
DS=${ZCFAST_DATASET:-cifar100}
case "$DS" in
  # CIFAR-100: meco over every cell is in bench/results/meco_all already
  cifar100) PROXIES=az_nas; STEM=az_nas_cifar100
            JOIN=(bench/results/meco_all/synflow_meco_flops_cifar100.csv) ;;
  cifar10)  PROXIES=az_nas,meco; STEM=az_nas_meco_cifar10
            JOIN=(bench/results/synflow_all/synflow_params_flops_cifar10.csv) ;;
  *) echo "ZCFAST_DATASET must be cifar100 or cifar10, got '$DS'" >&2; exit 2 ;;
esac
ENS=az_nas,ensemble:az_nas+meco,ensemble:synflow+meco,ensemble:az_nas+meco+synflow
mkdir -p "$OUT"
# NB201 indices of each half (written once: a running half reads its list)
[ -s "$OUT/half_a.txt" ] || seq 0 7812 > "$OUT/half_a.txt"
[ -s "$OUT/half_b.txt" ] || seq 7813 15624 > "$OUT/half_b.txt"
half() {
  local h=$1 resume=()
  [ -s "$OUT/${STEM}_$h.csv" ] && resume=(--resume)
  OMP_NUM_THREADS=1 "$ZC" score --dataset "$DS" --archs "$OUT/half_$h.txt" --proxies "$PROXIES" \
    --seed 0 --threads 1 --no-progress --out "$OUT/${STEM}_$h.csv" "${resume[@]}"
}
if [ -n "${ZCFAST_HALF:-}" ]; then half "$ZCFAST_HALF"; exit; fi
half a & A=$!
half b & B=$!
wait $A; wait $B
"$ZC" correlate "${JOIN[@]}" "$OUT/${STEM}_a.csv" "$OUT/${STEM}_b.csv" --ensembles "$ENS" \
  --json "$OUT/correlate_$DS.json" | tee "$OUT/correlate_$DS.txt"
