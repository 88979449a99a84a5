#!/bin/sh
# The modern-proxy correlation study in resumable time slices on a shared 2-core machine
# (bench/study_modern_proxies.py; results in bench/results/modern_study/<dataset>/).
#
#   sh bench/study_modern_pieces.sh [slice seconds per dataset, default 1200] [stop at, epoch s]
#
# One hold of the 1-thread lane (/work/.compute2.lock) runs one slice per dataset, each at most
# its slice and never past the stop time (then SIGINT: the rows so far stay in scores.csv, the
# elapsed time goes to timing.json). Rerunning resumes every file where it stopped. The cells are
# nb201.sample(1000, 0) in order, so a stopped file holds a prefix of that sample.
#
# CIFAR-100 and ImageNet16-120 leave out the VKDNW group (one backward pass per class: 173 s per
# ImageNet16-120 cell on the loaded machine, bench/results/modern_cost_ImageNet16-120.md) and
# SWAP (the next most costly); CIFAR-10 scores every proxy.
set -u
SLICE=${1:-1200}
STOP=${2:-0}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/modern_study}
LOCK=${LOCK:-/work/.compute2.lock}
if [ -z "${ZC_PIECES_LOCKED:-}" ]; then
    ZC_PIECES_LOCKED=1 OMP_NUM_THREADS=1 exec flock "$LOCK" sh "$0" "$SLICE" "$STOP"
fi
CHEAP="synflow,jacob_cov,snip,nwot,flops,params,zico,epe_nas,zen,meco,az_expressivity,az_progressivity,az_trainability"
ALL=$("$PY" -c 'import sys; sys.path.insert(0, "bench"); import study_modern_proxies as s; print(s.PROXIES)')
piece() {  # dataset proxies ensembles
    t=$SLICE
    if [ "$STOP" -gt 0 ]; then
        left=$((STOP - $(date +%s)))
        [ "$left" -lt "$t" ] && t=$left
    fi
    [ "$t" -le 30 ] && return 0
    timeout -s INT "$t" nice -n 5 "$PY" bench/study_modern_proxies.py --datasets "$1" \
        --cells 1000 --out "$OUT" --threads 1 --proxies "$2" --ensembles "$3"
}
piece ImageNet16-120 "$CHEAP" "vote,az_nas"
piece cifar100 "$CHEAP" "vote,az_nas"
piece cifar10 "$ALL" "vote,az_nas,vkdnw_agg,ensemble:zico+az_nas+vkdnw"
