"""The NB101 pool's cells in a seeded random order, split in two halves: one `zcfast score` per
CPU core over the bundled 292 cells, so that a run stopped early has scored a random sample.

    python bench/nb101_pool_lanes.py --out-dir DIR     # writes DIR/archs_a.jsonl, archs_b.jsonl

Order: the bundled pool (zcfast.data.nb101.subset_groundtruth(), the order of NASLib's file),
shuffled with random.Random(101); half a = positions 0, 2, 4, ..., half b = 1, 3, 5, ...
It prints the commands that produced the pool_paper_*.csv files of
bench/results/nb101_c10_subset (batch 256, packed engine, one cell per pass, 1 thread each).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

SEED = 101
PAPER = "grad_norm,snip,fisher,plain,jacob_cov,nwot"


def shuffled() -> list:
    """The pool's cells as JSON {"matrix", "ops"} strings, in the seeded order."""
    from zcfast.data.nb101 import subset_groundtruth

    archs = list(subset_groundtruth()["arch"])
    random.Random(SEED).shuffle(archs)
    return archs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", required=True, type=Path)
    a = ap.parse_args(argv)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    archs = shuffled()
    for name, half in (("a", archs[0::2]), ("b", archs[1::2])):
        (a.out_dir / f"archs_{name}.jsonl").write_text("\n".join(half) + "\n")
        print(f"OMP_NUM_THREADS=1 zcfast score --space nb101 --archs {a.out_dir}/archs_{name}.jsonl "
              f"--proxies {PAPER} --batch-size 256 --images cifar10-subset --engine packed "
              f"--chunk 1 --threads 1 --out pool_paper_{name}.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
