"""Tensor memory of grasp on NB101 cells at the paper's batch 256, per engine, found on the meta
device (zcfast.batched.memory.meta_peak_bytes: no compute, a few seconds a cell).

    python bench/nb101_grasp_memory.py --cells 30      # the first 30 cells of the seeded order

grasp's double backward keeps the forward, the first backward's graph and the Hessian-gradient
product alive at once: at batch 256 a cell of the bundled pool needs tens of GB, and some do not
fit in this 24 GB machine. For each cell (the pool's seeded order, bench/nb101_pool_lanes.py, so
the first N are a random sample) this records the peak tensor bytes of grasp alone with the
packed engine at K = 1 and with the per-model reference, next to the cell's FLOPs. Before the
table, it checks the meta figure against the CPU profiler's (measure_peak_bytes) on the first
cell at batch 16, both engines, and refuses to write results if they differ by more than 2%.

Output: <out>.csv (hash, flops, packed_gib, loop_gib; one row per cell, written as it goes,
resumed when rerun) and <out>.md (the summary, machine, git SHA, date). A tensor peak is an
upper bound of the memory the process touches (a large zero-filled tensor the pass only partly
writes is not all resident); the process adds its own ~1 GB (libraries, data).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nb101_pool_lanes import shuffled  # noqa: E402

GIB = 2**30


def grasp_peak(sp, code: int, engine: str, batch: int, device: str = "meta",
               x=None, y=None) -> int:
    """Peak tensor bytes of grasp for one cell: on ``meta`` (meta_peak_bytes) or measured on
    the CPU (measure_peak_bytes, with the given x, y)."""
    from zcfast.batched import memory as mm
    from zcfast.proxies import compute_measures

    if x is None:
        x = torch.empty(batch, 3, 32, 32, device=device)
        y = torch.zeros(batch, dtype=torch.int64, device=device)

    def run():
        if engine == "packed":
            sp.packed([code], "cifar10", seed=0, device=device).compute(x, y, ["grasp"])
        else:
            net = sp.build_model(code, "cifar10", seed=0, device=device)
            compute_measures(net, x, y, ["grasp"], device=device)

    return mm.meta_peak_bytes(run) if device == "meta" else mm.measure_peak_bytes(run)


def check(sp, code: int) -> list:
    """The meta figure against the CPU profiler on ``code`` at batch 16, both engines."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    rows = []
    for engine in ("packed", "loop"):
        cpu = grasp_peak(sp, code, engine, 16, "cpu", x, y)
        meta = grasp_peak(sp, code, engine, 16)
        rows.append((engine, cpu, meta))
        if abs(meta / cpu - 1) > 0.02:
            raise SystemExit(f"meta peak {meta / 2**20:.1f} MiB vs CPU {cpu / 2**20:.1f} MiB "
                             f"({engine}): more than 2% apart, the table would not be trustworthy")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=30, help="first N cells of the seeded order")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default=str(HERE / "results" / "nb101_grasp_memory"))
    ap.add_argument("--limit-gib", type=float, default=22.0,
                    help="the tensor peak that counts as not fitting (this machine: 24 GB less "
                         "the process's own)")
    a = ap.parse_args(argv)
    if a.cells < 1 or a.batch < 1:
        ap.error(f"--cells {a.cells} / --batch {a.batch}: expected positive integers")
    torch.set_num_threads(1)

    from zcfast.scoring import cpu_name, git_sha
    from zcfast.spaces import get_space

    sp = get_space("nb101")
    cells = [json.loads(s) for s in shuffled()][: a.cells]
    codes = [sp.parse(c) for c in cells]
    out_csv, out_md = Path(a.out + ".csv"), Path(a.out + ".md")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    checked = check(sp, codes[0])
    done = {}
    if out_csv.exists():
        with open(out_csv) as f:
            done = {r["hash"]: r for r in csv.DictReader(f) if r.get("loop_gib")}
    new = not out_csv.exists()
    with open(out_csv, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["hash", "flops", "packed_gib", "loop_gib"])
        for code in codes:
            fields = sp.row_fields(code)
            h = fields["hash"]
            if h in done:
                continue
            t0 = time.perf_counter()
            p = grasp_peak(sp, code, "packed", a.batch) / GIB
            lp = grasp_peak(sp, code, "loop", a.batch) / GIB
            flops = float(sp.packed([code], "cifar10", device="meta").counts()["flops"][0])
            w.writerow([h, f"{flops:.0f}", f"{p:.3f}", f"{lp:.3f}"])
            f.flush()
            done[h] = {"hash": h, "flops": flops, "packed_gib": p, "loop_gib": lp}
            print(f"{h[:8]} packed {p:6.2f} GiB  per-model {lp:6.2f} GiB  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    rows = [done[sp.row_fields(c)["hash"]] for c in codes]
    p = np.array([float(r["packed_gib"]) for r in rows])
    lp = np.array([float(r["loop_gib"]) for r in rows])
    q = lambda v: " / ".join(f"{x:.1f}" for x in np.percentile(v, [0, 50, 90, 100]))  # noqa: E731
    lines = [
        "# grasp's tensor memory on NB101 cells at batch 256, per engine", "",
        f"`python bench/nb101_grasp_memory.py --cells {a.cells} --batch {a.batch}`; git "
        f"{git_sha()}, {cpu_name()}, torch {torch.__version__}, {started}. "
        + ("All 292 cells of the pool. " if len(rows) == 292 else
           f"The first {len(rows)} cells of the pool's seeded order (bench/nb101_pool_lanes.py): "
           "a random sample of the 292. ")
        + "Peak tensor bytes of grasp alone, found on the meta device "
        "(zcfast/batched/memory.py, meta_peak_bytes: no compute); packed = the packed engine at "
        "K = 1 (one cell per pass, as the pool lanes run), per-model = the reference.", "",
        "Check, in this run, on the first cell at batch 16 (CPU profiler vs meta): "
        + "; ".join(f"{e} {c / 2**20:.1f} vs {m / 2**20:.1f} MiB" for e, c, m in checked)
        + ".", "",
        "| engine | min / median / p90 / max GiB | cells above "
        f"{a.limit_gib:g} GiB |", "|---|---|---:|",
        f"| packed (K = 1) | {q(p)} | {int((p > a.limit_gib).sum())} of {len(p)} |",
        f"| per-model | {q(lp)} | {int((lp > a.limit_gib).sum())} of {len(lp)} |", "",
        f"Packed / per-model, per cell: median {np.median(p / lp):.2f}x, range "
        f"{(p / lp).min():.2f}-{(p / lp).max():.2f}x. Spearman of the packed peak with the "
        f"cell's FLOPs: {_spearman(p, [float(r['flops']) for r in rows]):+.2f}.", "",
        "A tensor peak bounds the memory from above: a large zero-filled tensor that a pass "
        "writes only in part is not all resident, so a cell a little above the limit may still "
        "run, and where the limit falls depends on what else runs (on this 24 GB machine, packed "
        "cells of 22.4 and 22.8 GiB ran alone and were killed in an earlier sitting with other work beside them; "
        "23.0 and 23.8 GiB were killed alone). The process adds its own ~1 GB.",
    ]
    out_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


if __name__ == "__main__":
    raise SystemExit(main())
