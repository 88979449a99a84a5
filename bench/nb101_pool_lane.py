"""Score proxies on the NB101 pool's cells not yet scored, in the pool's seeded order, one
`zcfast score` process at a time; resumable, and safe against passes too large for memory.

    python bench/nb101_pool_lane.py --proxies grasp --tag grasp_b      # Ctrl-C, rerun: resumes

The order is bench/nb101_pool_lanes.py's (random.Random(101)), so a lane stopped early has
scored the start of a random order. Cells that already have every --proxies score in a
pool_*.csv or scores.csv of --folder are left out. Output, in --folder:

- ``pool_<tag>.csv`` (packed engine, one cell per pass, as the other pool files) and
  ``pool_<tag>_loop.csv`` (the per-model engine: cells whose packed pass does not fit in memory;
  packed equals per-model within float32 rounding, tests/test_nb101_packed.py), each with its
  meta file;
- ``pool_skipped.json``: {hash: reason} for cells left out because no engine fits them here,
  which the study's report (bench/study_nb101_correlation.py) lists next to the sample.

Memory: grasp's double backward holds tens of GB at batch 256 (bench/results/nb101_grasp_memory
.md, from bench/nb101_grasp_memory.py). With --memory that table routes each cell before it
runs: a packed peak of --packed-limit GiB or more goes to the per-model engine (about 20% less
memory, about 1.4x slower), a per-model peak of --loop-limit or more is skipped (a GPU job). A
process killed by the kernel's out-of-memory killer (exit 137) moves its cell the same way. The
order is kept across engines: each process scores the next stretch of cells that share an engine.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nb101_pool_lanes import shuffled  # noqa: E402

FOLDER = HERE / "results" / "nb101_c10_subset"
csv.field_size_limit(10**8)


def scored(path: Path, proxies) -> set:
    """Hashes of the rows of a score file that hold every proxy of ``proxies``."""
    if not path.exists():
        return set()
    with open(path, newline="") as f:
        return {r["hash"] for r in csv.DictReader(f)
                if all(r.get(p) not in (None, "") for p in proxies)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxies", default="grasp")
    ap.add_argument("--tag", required=True, help="output files pool_<tag>.csv, pool_<tag>_loop.csv")
    ap.add_argument("--folder", type=Path, default=FOLDER)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--memory", type=Path, default=HERE / "results" / "nb101_grasp_memory.csv",
                    help="per-cell tensor peaks (bench/nb101_grasp_memory.py) to route cells by; "
                         "only for grasp ('' to route by out-of-memory kills alone)")
    ap.add_argument("--packed-limit", type=float, default=23.0)
    ap.add_argument("--loop-limit", type=float, default=23.5)
    ap.add_argument("--zcfast", default="zcfast", help="the zcfast command")
    a = ap.parse_args(argv)
    if not a.tag.replace("_", "").isalnum():
        ap.error(f"--tag {a.tag!r}: letters, digits and _ only")
    proxies = [p.strip() for p in a.proxies.split(",") if p.strip()]
    folder = a.folder
    out, out_loop = folder / f"pool_{a.tag}.csv", folder / f"pool_{a.tag}_loop.csv"
    skip_p = folder / "pool_skipped.json"
    skipped = json.loads(skip_p.read_text()) if skip_p.exists() else {}

    def done() -> set:
        got = set()
        for p in [*folder.glob("pool_*.csv"), folder / "scores.csv"]:
            got |= scored(p, proxies)
        return got

    order = []  # (hash, arch JSON) in the seeded order
    from zcfast.spaces import get_space

    sp = get_space("nb101")
    for arch in shuffled():
        order.append((sp.row_fields(sp.parse(json.loads(arch)))["hash"], arch))
    loops = set()
    if a.memory and str(a.memory) and "grasp" in proxies and a.memory.exists():
        with open(a.memory, newline="") as f:
            for r in csv.DictReader(f):
                if float(r["loop_gib"]) >= a.loop_limit:
                    skipped.setdefault(r["hash"], (
                        f"grasp at batch {a.batch_size} needs {float(r['loop_gib']):.1f} GiB of "
                        "tensors with the per-model engine (bench/results/nb101_grasp_memory.md), "
                        "more than this machine holds: left to a GPU"))
                elif float(r["packed_gib"]) >= a.packed_limit:
                    loops.add(r["hash"])
    if skipped:
        skip_p.write_text(json.dumps(skipped, indent=1) + "\n")
    print(f"{len(order) - len(done())} cells to score; {len(loops)} routed to the per-model "
          f"engine, {len(skipped)} skipped", flush=True)

    def run(cells, path: Path, engine: str) -> int:
        archs = path.with_suffix(".archs.jsonl")
        archs.write_text("".join(json.dumps({k: json.loads(c)[k] for k in ("matrix", "ops")})
                                 + "\n" for _, c in cells))
        cmd = [a.zcfast, "score", "--space", "nb101", "--dataset", "cifar10", "--proxies",
               ",".join(proxies), "--archs", str(archs), "--seed", "0", "--batch-size",
               str(a.batch_size), "--images", "cifar10-subset", "--engine", engine, "--chunk", "1",
               "--threads", str(a.threads), "--out", str(path), "--resume", "--no-progress"]
        return subprocess.call(cmd)

    fails = 0
    while True:
        have = done()
        rest = [t for t in order if t[0] not in have and t[0] not in skipped]
        if not rest:
            break
        use_loop = rest[0][0] in loops
        stretch = []
        for t in rest:
            if (t[0] in loops) != use_loop:
                break
            stretch.append(t)
        path, engine = (out_loop, "loop") if use_loop else (out, "packed")
        print(time.strftime("%H:%M:%S"), f"{len(rest)} left; the next {len(stretch)} with the "
              f"{engine} engine", flush=True)
        in_file = scored(path, [])  # a resume refuses a file holding cells its archs lack
        rc = run([t for t in order if t[0] in in_file] + stretch, path, engine)
        if rc == 0:
            continue
        if rc in (-9, 137):  # the kernel's out-of-memory killer
            nxt = [h for h, _ in stretch if h not in scored(path, proxies)]
            if nxt and use_loop:
                skipped[nxt[0]] = (f"{','.join(proxies)} at batch {a.batch_size} was killed for "
                                   "lack of memory with the per-model engine too: left to a GPU")
                skip_p.write_text(json.dumps(skipped, indent=1) + "\n")
            elif nxt:
                loops.add(nxt[0])
            print(time.strftime("%H:%M:%S"), f"out of memory: {nxt[:1]}", flush=True)
            continue
        fails += 1
        if fails >= 3 or rc in (2, 130, -2):
            return rc
    if skipped:
        skip_p.write_text(json.dumps(skipped, indent=1) + "\n")
    print("lane done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
