"""CPU compute efficiency of the packed engine as a fraction of this machine's measured ceiling,
in one run (docs/performance.md): bench/results/cpu_efficiency.{md,json}.

    flock /work/.compute.lock flock /work/.compute2.lock python bench/bench_cpu_efficiency.py

Ceilings, measured first in the same process and with the same threads:
- a large float32 GEMM (2048^3) and a float64 one (synflow runs in float64);
- dense float32 convolutions of NB201's shapes at batch 64 (3x3 and 1x1, 16 channels at 32x32,
  32 at 16x16, 64 at 8x8), forward only and forward+backward; the conv ceiling is the best of
  them.
Engine: chunks of K candidates (the CPU default K of zcfast.batched.auto_chunk) of random NB201
cells, batch 64 at 32x32 (synflow: batch 1, float64), timed from building the packed model to
the scores. Useful FLOPs of a chunk: F = 2 x batch x (multiply-adds of every convolution and the
classifier, from the plan's counts) for the forward; the one-backward group does the forward,
the input gradients and the weight gradients (3F), jacob_cov a forward and the input gradients
(2F, weight gradients are not needed but PyTorch's convolution backward computes what is
asked), synflow 3F at batch 1, nwot F, grasp 9F (forward and backward 3F, then the backward of
both for the Hessian-gradient product, about twice their cost: a model, not a count). BatchNorm, ReLU, pooling and the reductions are not
counted (they are memory-bound work that a GEMM ceiling does not describe).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GROUPS = {
    "one_backward": (("grad_norm", "snip", "plain", "fisher"), 3.0, 64),
    "jacob_cov": (("jacob_cov",), 2.0, 64),
    "nwot": (("nwot",), 1.0, 64),
    "grasp": (("grasp",), 9.0, 64),
    "synflow": (("synflow",), 3.0, 1),
}


def _time(fn, repeat: int, min_s: float = 0.3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_s:
                break
        best = min(best, dt / n)
    return best


def ceilings(repeat: int) -> dict:
    import torch
    import torch.nn.functional as F

    out = {}
    n = 2048
    for dt in (torch.float32, torch.float64):
        a = torch.randn(n, n, dtype=dt)
        b = torch.randn(n, n, dtype=dt)
        s = _time(lambda: a @ b, repeat)
        out[f"gemm_{str(dt)[6:]}"] = 2 * n**3 / s
    convs = {}
    for c, hw in ((16, 32), (32, 16), (64, 8)):
        for k in (3, 1):
            x = torch.randn(64, c, hw, hw, requires_grad=True)
            w = torch.randn(c, c, k, k, requires_grad=True)
            flops = 2 * 64 * c * c * k * k * hw * hw
            fwd = _time(lambda: F.conv2d(x, w, padding=k // 2), repeat)

            def fb():
                y = F.conv2d(x, w, padding=k // 2)
                torch.autograd.grad(y.sum(), (x, w))

            both = _time(fb, repeat)
            convs[f"{k}x{k} c{c} {hw}x{hw}"] = {"forward": flops / fwd, "fwd_bwd": 3 * flops / both}
    out["conv"] = convs
    out["conv_forward_best"] = max(v["forward"] for v in convs.values())
    out["conv_fwd_bwd_best"] = max(v["fwd_bwd"] for v in convs.values())
    return out


def engine(group: str, k: int, chunks: int, seed: int = 0) -> dict:
    import numpy as np
    import torch

    from zcfast.batched.engine import PackedNB201
    from zcfast.spaces import nb201

    proxies, mult, batch = GROUPS[group]
    rng = np.random.default_rng(seed)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    times, flops = [], []
    for i in range(chunks + 1):
        codes = [nb201.code_of_index(int(j)) for j in rng.integers(0, 15625, size=k)]
        t0 = time.perf_counter()
        eng = PackedNB201(codes, 10)
        eng.compute(x, y, proxies)
        dt = time.perf_counter() - t0
        macs = float(eng.counts()["flops"].sum())  # multiply-adds per sample, all K
        if i:  # the first chunk warms up
            times.append(dt)
            flops.append(mult * 2 * batch * macs)
    t = sum(times)
    return {"k": k, "chunks": chunks, "cells_per_s": k * chunks / t, "flop_per_s": sum(flops) / t,
            "seconds_per_chunk_median": statistics.median(times)}


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=2, help="candidates per chunk (CPU default: 2)")
    ap.add_argument("--synflow-k", type=int, default=16, help="synflow's chunk (CPU default: 16)")
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cpu_efficiency"))
    a = ap.parse_args(argv)
    groups = [g for g in a.groups.split(",") if g]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown group(s) {bad}: choose from {sorted(GROUPS)}")
    torch.set_num_threads(a.threads)
    import tempfile

    from host_overhead import cpu_model, export

    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    # the engine of the commit, exported: edits made while this runs do not leak in
    tmp = tempfile.mkdtemp()
    export(sha, os.path.join(tmp, "src"))
    sys.path.insert(0, os.path.join(tmp, "src"))
    for m in [m for m in sys.modules if m == "zcfast" or m.startswith("zcfast.")]:
        del sys.modules[m]
    ceil = ceilings(a.repeat)
    print(json.dumps(ceil, indent=1), flush=True)
    res = {}
    for g in groups:
        res[g] = engine(g, a.synflow_k if g == "synflow" else a.k, a.chunks)
        print(g, res[g], flush=True)
    meta = {"git": sha, "cpu": cpu_model(), "threads": a.threads, "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg()}
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "ceilings": ceil, "engine": res}, f, indent=1)
    G = 1e9
    lines = [
        "# CPU compute efficiency of the packed engine",
        "",
        f"git `{sha}`, {meta['cpu']}, {a.threads} threads, torch {meta['torch']}, {meta['date']}, "
        f"load average at the end {tuple(round(x, 2) for x in meta['load'])}. Command: "
        "`python bench/bench_cpu_efficiency.py` (both compute locks held). Method and FLOP "
        "model: the script's docstring and docs/performance.md.",
        "",
        "## Ceilings measured in this run",
        "",
        f"- float32 GEMM 2048^3: {ceil['gemm_float32'] / G:.1f} GFLOP/s; float64: "
        f"{ceil['gemm_float64'] / G:.1f} GFLOP/s",
        f"- best NB201-shaped dense convolution (batch 64): forward "
        f"{ceil['conv_forward_best'] / G:.1f} GFLOP/s, forward+backward "
        f"{ceil['conv_fwd_bwd_best'] / G:.1f} GFLOP/s",
        "",
        "| convolution | forward GFLOP/s | forward+backward GFLOP/s |",
        "|---|---:|---:|",
    ]
    for name, v in ceil["conv"].items():
        lines.append(f"| {name} | {v['forward'] / G:.1f} | {v['fwd_bwd'] / G:.1f} |")
    lines += ["", "## Engine", "",
              "| group | K | cells/s | achieved GFLOP/s | of conv fwd+bwd ceiling | of GEMM ceiling |",
              "|---|---:|---:|---:|---:|---:|"]
    for g, r in res.items():
        gemm = ceil["gemm_float64"] if g == "synflow" else ceil["gemm_float32"]
        conv = ceil["conv_fwd_bwd_best"]
        conv_s = "n/a (float64)" if g == "synflow" else f"{r['flop_per_s'] / conv:.0%}"
        lines.append(f"| {g} | {r['k']} | {r['cells_per_s']:.2f} | {r['flop_per_s'] / G:.1f} | "
                     f"{conv_s} | {r['flop_per_s'] / gemm:.0%} |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
