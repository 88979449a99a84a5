"""Would channels-last or torch.compile raise the packed engine's CPU efficiency? One packed
layer, measured in one run: bench/results/layouts.{md,json}.

    flock /work/.compute.lock flock /work/.compute2.lock python bench/bench_layouts.py

The packed engine spends its CPU time in two places (bench/results/cpu_efficiency.md): grouped
convolutions running below the dense ceiling, and the memory-bound operators between them
(docs/performance.md, "CPU compute efficiency"). This script times the unit both come from, one
packed conv edge block as the engine runs it: ReLU, a grouped convolution with ``G`` groups of
``C -> C`` channels (one group per candidate edge), then a train-mode BatchNorm without affine,
forward and forward+backward (input and weight gradients), float32, at NB201's three stage
shapes (16 channels at 32x32, 32 at 16x16, 64 at 8x8), 3x3 and 1x1 kernels, batch 64. Variants:

- ``nchw``: the engine's layout (contiguous NCHW), eager;
- ``channels_last``: the same block with input and weight in ``torch.channels_last``, eager
  (oneDNN's preferred layout for convolutions on the CPU);
- ``compiled`` (``--compile``, off by default: inductor needs a C++ compiler and takes a while
  per shape): the NCHW block through ``torch.compile``, which can fuse BatchNorm's statistics,
  normalisation and the ReLU into generated loops around the convolution.

Every variant's forward output and gradients are checked against the NCHW eager ones (relative
max difference, float32 rounding allowed: ``--rtol``) before its time counts; a variant that
disagrees is marked and the exit status is 1. The time is the best of ``--repeat`` runs of
at least 0.3 s each. The layout change is judged on the block only: the engine's gathers and
node sums index the channel dimension in blocks of C*H*W per candidate, which channels-last
would turn into strided accesses, so a gain here is an upper bound on the engine's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cpu_efficiency import _time  # noqa: E402  (best of repeat runs of >= 0.3 s each)

SHAPES = ((16, 32), (32, 16), (64, 8))  # NB201 stages: channels, spatial size
KERNELS = (3, 1)


def block(x, w, groups: int, pad: int):
    import torch.nn.functional as F

    y = F.conv2d(F.relu(x), w, padding=pad, groups=groups)
    return F.batch_norm(y, None, None, training=True, momentum=0.0, eps=1e-5)


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def measure(a) -> list:
    import torch

    rows = []
    g = torch.Generator().manual_seed(a.seed)
    for c, hw in SHAPES:
        for k in KERNELS:
            G, B = a.groups, a.batch
            x0 = torch.randn(B, G * c, hw, hw, generator=g)
            w0 = torch.randn(G * c, c, k, k, generator=g) * (2.0 / (c * k * k)) ** 0.5
            go = torch.randn(B, G * c, hw, hw, generator=g)
            flops = 2 * B * G * c * c * k * k * hw * hw  # forward multiply-adds x 2

            def make(layout):
                x = x0.contiguous(memory_format=layout).requires_grad_(True)
                w = w0.contiguous(memory_format=layout).requires_grad_(True)
                return x, w

            variants = {"nchw": (torch.contiguous_format, block),
                        "channels_last": (torch.channels_last, block)}
            if a.compile:
                # a fresh cache per shape: its compile time is clean, and no shape falls back
                # to eager for hitting the recompilation limit
                torch._dynamo.reset()
                variants["compiled"] = (torch.contiguous_format,
                                        torch.compile(block, dynamic=False))
            ref = None
            for name, (layout, fn) in variants.items():
                x, w = make(layout)
                gol = go.contiguous(memory_format=layout)  # the upstream gradient, same layout
                t_c = time.perf_counter()
                y = fn(x, w, G, k // 2)
                gx, gw = torch.autograd.grad(y, (x, w), gol)
                first_s = time.perf_counter() - t_c  # includes compilation for 'compiled'
                with torch.no_grad():  # the forward timed without gradients, checked too
                    y0 = fn(x, w, G, k // 2)
                if ref is None:
                    ref = (y.detach(), gx, gw)
                diff = max(_rel(y.detach(), ref[0]), _rel(y0, ref[0]), _rel(gx, ref[1]),
                           _rel(gw, ref[2]))

                def fwd():
                    with torch.no_grad():
                        fn(x, w, G, k // 2)

                def fb():
                    out = fn(x, w, G, k // 2)
                    torch.autograd.grad(out, (x, w), gol)

                t_f = _time(fwd, a.repeat)
                t_fb = _time(fb, a.repeat)
                rows.append({"channels": c, "size": hw, "kernel": k, "groups": G, "variant": name,
                             "fwd_s": t_f, "fwd_bwd_s": t_fb, "conv_gflops_fwd": flops / t_f / 1e9,
                             "conv_gflops_fwd_bwd": 3 * flops / t_fb / 1e9,
                             "max_rel_diff": diff, "agree": diff <= a.rtol,
                             "first_call_s": first_s})
                print(f"c{c} {hw}x{hw} k{k} {name}: fwd {t_f * 1e3:.2f} ms, fwd+bwd "
                      f"{t_fb * 1e3:.2f} ms, diff {diff:.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--groups", type=int, default=16,
                    help="groups of the packed convolution (candidate edges; default 16)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the block")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "layouts"))
    a = ap.parse_args(argv)
    if min(a.threads, a.groups, a.batch, a.repeat) < 1 or not a.rtol > 0:
        ap.error("--threads, --groups, --batch and --repeat must be >= 1 and --rtol > 0")
    import torch

    from zcfast.scoring import cpu_name, git_sha

    torch.set_num_threads(a.threads)
    rows = measure(a)
    info = {"git": git_sha(), "cpu": cpu_name(), "threads": a.threads, "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_end": list(os.getloadavg()), "groups": a.groups, "batch": a.batch,
            "rows": rows}
    with open(a.out + ".json", "w") as f:
        json.dump(info, f, indent=1)
    base = {(r["channels"], r["kernel"]): r for r in rows if r["variant"] == "nchw"}
    lines = [
        "# One packed layer on the CPU: NCHW, channels-last" + (", torch.compile" if a.compile
                                                                else ""), "",
        f"git `{info['git']}`, {info['cpu']}, {a.threads} threads, torch {torch.__version__}, "
        f"{info['date']}, load average at the end "
        f"({', '.join(f'{v:.2f}' for v in info['load_average_end'])}). Command: `python "
        f"bench/bench_layouts.py{' --compile' if a.compile else ''}` (both compute locks held). "
        "Method: the script's docstring.", "",
        f"Block: ReLU, grouped convolution ({a.groups} groups of C -> C), train-mode BatchNorm; "
        f"batch {a.batch}, float32. GFLOP/s count the convolution's multiply-adds only (x3 for "
        "forward+backward); speed-up = NCHW time / variant time.", "",
        "| C, size | kernel | variant | fwd ms | fwd+bwd ms | conv GFLOP/s fwd+bwd | speed-up fwd "
        "| speed-up fwd+bwd | max rel. diff vs NCHW |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        b = base[(r["channels"], r["kernel"])]
        lines.append(
            f"| {r['channels']}, {r['size']}x{r['size']} | {r['kernel']}x{r['kernel']} | "
            f"{r['variant']} | {r['fwd_s'] * 1e3:.2f} | {r['fwd_bwd_s'] * 1e3:.2f} | "
            f"{r['conv_gflops_fwd_bwd']:.1f} | {b['fwd_s'] / r['fwd_s']:.2f}x | "
            f"{b['fwd_bwd_s'] / r['fwd_bwd_s']:.2f}x | {r['max_rel_diff']:.1e}"
            + ("" if r["agree"] else " **DISAGREE**") + " |")
    if a.compile:
        first = [f"{r['channels']}/{r['kernel']}x{r['kernel']}: {r['first_call_s']:.1f} s"
                 for r in rows if r["variant"] == "compiled"]
        lines += ["", "torch.compile's first call per shape (static shapes, a fresh cache for "
                  "each, compilation included): " + ", ".join(first) + ". The engine's layer "
                  "shapes change with every chunk (the number of edges of each kind per node)."]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
