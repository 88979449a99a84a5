#!/bin/sh
# The modern-proxy correlation study in resumable time slices on a shared 2-core machine
# (bench/study_modern_proxies.py; results in bench/results/modern_study/<dataset>/).
#
#   sh bench/study_modern_pieces.sh [slice seconds per piece, default 1500]
#
# Each piece waits for the 1-thread lane (/work/.compute2.lock), scores for at most its slice
# (then SIGINT: the rows so far stay in scores.csv, the elapsed time goes to timing.json) and
# frees the lane; rerunning the script resumes every file where it stopped. The cells are
# nb201.sample(N, 0) in order, so a stopped file holds a prefix of that sample.
#
# CIFAR-100 and ImageNet16-120 leave out the VKDNW group (one backward pass per class: 173 s per
# ImageNet16-120 cell here, bench/results/modern_cost_ImageNet16-120.md) and SWAP (the next most
# costly); CIFAR-10 scores every proxy.
set -u
SLICE=${1:-1500}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/modern_study}
LOCK=${LOCK:-/work/.compute2.lock}
CHEAP="synflow,jacob_cov,snip,nwot,flops,params,zico,epe_nas,zen,meco,az_expressivity,az_progressivity,az_trainability"
piece() {  # dataset cells proxies ensembles
    OMP_NUM_THREADS=1 flock "$LOCK" timeout -s INT "$SLICE" nice -n 5 \
        "$PY" bench/study_modern_proxies.py --datasets "$1" --cells "$2" --out "$OUT" \
        --threads 1 --proxies "$3" --ensembles "$4"
}
piece ImageNet16-120 1000 "$CHEAP" "vote,az_nas"
piece cifar100 1000 "$CHEAP" "vote,az_nas"
piece cifar10 1000 "$("$PY" -c 'import sys; sys.path.insert(0, "bench"); import study_modern_proxies as s; print(s.PROXIES)')" \
    "vote,az_nas,vkdnw_agg,ensemble:zico+az_nas+vkdnw"
