"""grasp's BatchNorm double backward: the written-out one (engine._BatchNormTrain) against
PyTorch's own (F.batch_norm), in one run: bench/results/bn_double.{md,json}.

    python bench/bench_bn_double.py            # about a minute on 1 thread

1. Operators per candidate on the meta device (bench/bench_host.py's probe: every operator
   dispatched, nothing computed) for grasp and the paper's six proxies at K = 1024, with each
   BatchNorm path. Operator counts do not depend on the machine's load; the host microseconds
   printed beside them do (the assumed 5 us per operator of bench_host.py included).
2. CPU time of grasp's packed pass (chunks of 2 random NB201 cells, batch 64 of random
   inputs, float32, 1 thread), the two paths alternating, best of --repeat each; and the
   largest relative difference of the two paths' grasp scores on those cells (float32
   rounding of the second derivative; the value and first gradient are bit for bit the same).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _paths():
    from zcfast.batched import engine as E

    written = E._bn

    def native(h, twice=False):
        return written(h, False)

    return E, {"written-out": written, "PyTorch's": native}


def main(argv=None) -> int:
    import numpy as np
    import torch
    from bench_host import measure
    from host_overhead import cpu_model

    from zcfast.spaces import nb201

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "bn_double"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    E, paths = _paths()
    host = {}
    for name, fn in paths.items():
        E._bn = fn
        host[name] = measure(["grasp", "paper"], [a.k], repeat=1, batch=64, input_size=32)
    rng = np.random.default_rng(0)
    codes = [nb201.code_of_index(int(j)) for j in rng.integers(0, 15625, size=2)]
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    times, scores = {n: [] for n in paths}, {}
    for _ in range(a.repeat + 1):  # the first round warms up
        for name, fn in paths.items():
            E._bn = fn
            t0 = time.perf_counter()
            scores[name] = E.PackedNB201(codes, 10).compute(x, y, ("grasp",))["grasp"]
            times[name].append(time.perf_counter() - t0)
    E._bn = paths["written-out"]
    s1, s2 = (np.asarray(scores[n], float) for n in paths)
    rel = float(np.max(np.abs(s1 - s2) / np.maximum(np.abs(s2), 1e-300)))
    best = {n: min(t[1:]) for n, t in times.items()}
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    meta = {"git": sha, "cpu": cpu_model(), "threads": 1, "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg()}
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "host": host, "grasp_chunk_s": times, "max_rel_diff": rel}, f,
                  indent=1)
    lines = ["# grasp's BatchNorm double backward: written out vs PyTorch's", "",
             f"git `{sha}`, {meta['cpu']}, 1 thread, torch {meta['torch']}, {meta['date']}, load "
             f"average at the end {tuple(round(v, 2) for v in meta['load'])}. Command: "
             "`python bench/bench_bn_double.py`. Method: the script's docstring and "
             "docs/performance.md (BatchNorm's double backward).", "",
             f"| BatchNorm path | grasp ops/cand (K={a.k}) | paper ops/cand | grasp host us/cand "
             "(est.) | paper host us/cand (est.) | grasp pass, 2 cells, CPU s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in paths:
        g = host[name]["groups"]
        gr, pa = g["grasp"][a.k], g["paper"][a.k]
        lines.append(f"| {name} | {gr['ops_per_candidate']:.1f} | {pa['ops_per_candidate']:.1f} "
                     f"| {gr['host_us_per_candidate']:.1f} | {pa['host_us_per_candidate']:.1f} "
                     f"| {best[name]:.2f} |")
    lines += ["", f"Largest relative difference of the two paths' grasp scores on the timed cells: "
              f"{rel:.1e} (float32 rounding of the second derivative).", "",
              "Host microseconds: work measured on the meta device plus an assumed 5 us per "
              "operator (bench/bench_host.py), on a machine that may be busy (load above); the "
              "operator counts are exact."]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
