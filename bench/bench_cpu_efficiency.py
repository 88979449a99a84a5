"""CPU compute efficiency of the packed engine as a fraction of this machine's measured ceiling,
in one run (docs/performance.md): bench/results/cpu_efficiency.{md,json}.

    flock /work/.compute.lock flock /work/.compute2.lock python bench/bench_cpu_efficiency.py

Ceilings, measured first in the same process and with the same threads:
- a large float32 GEMM (2048^3) and a float64 one (synflow runs in float64);
- dense float32 convolutions of NB201's shapes at batch 64 (3x3 and 1x1, 16 channels at 32x32,
  32 at 16x16, 64 at 8x8), forward only and forward+backward; the conv ceiling is the best of
  them.
Before and after in one run: ``--before REV`` (default 9c0b1b6, the engine before the host-cost
and compute work of docs/performance.md) times that revision's engine too, in a child process
on an export of it (with this commit's zcfast/ops and compiled core), after the ceilings and
before this commit's engine; the table gives both.
Engine: chunks of K candidates (the CPU default K of zcfast.batched.auto_chunk) of random NB201
cells, batch 64 at 32x32 (synflow: batch 1, float64), timed from building the packed model to
the scores. Useful FLOPs of a chunk: F = 2 x batch x (multiply-adds of every convolution and the
classifier, from the plan's counts) for the forward; the one-backward group does the forward,
the input gradients and the weight gradients (3F), jacob_cov a forward and the input gradients
(2F, weight gradients are not needed but PyTorch's convolution backward computes what is
asked), synflow 3F at batch 1, nwot F, grasp 9F (forward and backward 3F, then the backward of
both for the Hessian-gradient product, about twice their cost: a model, not a count). BatchNorm, ReLU, pooling and the reductions are not
counted (they are memory-bound work that a GEMM ceiling does not describe).

What limits the fraction (on by default; ``--no-profile`` skips it): one chunk of each group
(the cells of the engine's first, untimed chunk) runs again under torch.profiler, and the wall
time of that profiled chunk is split into
- dense: the self time of every ATen operator whose name holds ``conv``, ends in ``mm`` or holds
  ``linear``, ``im2col`` or ``col2im``. That includes work whose FLOPs the model above leaves
  out: the average pool's 3x3 box sum (a depthwise convolution), NASWOT's Gram matrices (bmm),
  float64's im2col/col2im data movement; and it leaves out the copies and fills a convolution's
  backward dispatches as separate operators. So the dense rate (model FLOPs / dense time) is a
  slight underestimate of the convolutions' own;
- other: the self time of every other ATen operator;
- outside: the rest of the wall time, in no ATen operator (Python, the autograd engine,
  zcfast's own C++ kernels such as the weight initialisation and the saliency reduction).
Then, exactly for the profiled chunk, achieved / ceiling = (dense share) x (dense rate /
ceiling); the profiled chunk's own achieved fraction is printed (the profiler's per-operator
cost makes it a little lower than the timed chunks'). For the other operators it also estimates
the bytes they move: each operator whose descendants are all views or allocations reads its
inputs and writes one output the size of its largest input (elements of 4 bytes, 8 for
synflow's float64). An estimate from recorded shapes, not a count: a copy counts 3 sizes (2
real), a fill 2 (1 real), a reduction a full-size output (a smaller real one), index tensors 4
bytes per element, and list inputs (cat, stack) none. It is compared with this machine's
memory bandwidth, measured in the same run (a copy of 256 MiB; small tensors that stay in cache
can exceed it). ``bound`` is the fraction of the conv ceiling the chunk would reach with its
convolutions at the best dense shape's rate, the other operators at the measured bandwidth and
no time outside operators.
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
    src = torch.empty(64 * 2**20, dtype=torch.float32).normal_()
    dst = torch.empty_like(src)
    out["copy_bytes_per_s"] = 2 * src.numel() * 4 / _time(lambda: dst.copy_(src), repeat)
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


_VIEWS = {"empty", "empty_like", "empty_strided", "as_strided", "as_strided_", "view", "reshape",
          "_reshape_alias", "slice", "narrow", "select", "expand", "t", "transpose", "permute",
          "unsqueeze", "squeeze", "resize_", "detach", "alias", "unflatten", "flatten",
          "lift_fresh", "split", "chunk", "unbind", "contiguous", "to", "_to_copy_noop"}


def _only_views(ev) -> bool:
    """True when the event and all its descendants are views or allocations."""
    return ev.name[6:] in _VIEWS and all(_only_views(c) for c in ev.cpu_children)


def _is_dense(name: str) -> bool:
    n = name.lower()
    return "conv" in n or n.endswith("mm") or "linear" in n or "im2col" in n or "col2im" in n


def profile(group: str, k: int, seed: int = 0) -> dict:
    """One chunk of the group (the same cells twice: warm-up, then profiled): its wall time, the
    operators' self time split into dense and other (self time, so nothing counts twice), and
    the bytes the other operators move (module docstring)."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from zcfast.batched.engine import PackedNB201
    from zcfast.spaces import nb201

    proxies, mult, batch = GROUPS[group]
    rng = np.random.default_rng(seed)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    # the cells of engine()'s first (warm-up) chunk
    codes = [nb201.code_of_index(int(j)) for j in rng.integers(0, 15625, size=k)]

    def chunk():
        eng = PackedNB201(codes, 10)
        eng.compute(x, y, proxies)
        return float(eng.counts()["flops"].sum())

    macs = chunk()  # warm-up
    with tprofile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()  # inside the block: the profiler's start and stop cost ~1 s
        chunk()
        wall = time.perf_counter() - t0
    dense_s = other_s = 0.0
    other_bytes = 0.0
    by_op = {}
    elem = 8 if group == "synflow" else 4
    for ev in prof.events():
        if not ev.name.startswith("aten::"):
            continue
        self_s = ev.self_cpu_time_total / 1e6
        if _is_dense(ev.name):
            dense_s += self_s
            continue
        other_s += self_s
        by_op[ev.name] = by_op.get(ev.name, 0.0) + self_s
        if ev.name[6:] in _VIEWS or not all(_only_views(c) for c in ev.cpu_children):
            continue
        sizes = [int(np.prod(s)) for s in (ev.input_shapes or []) if isinstance(s, list) and s]
        if sizes:
            other_bytes += elem * (sum(sizes) + max(sizes))
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:6]
    return {"k": k, "wall_s": wall, "dense_s": dense_s, "other_s": other_s,
            "flop": mult * 2 * batch * macs, "other_bytes_est": other_bytes,
            "top_other": [(n, s) for n, s in top]}


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=2, help="candidates per chunk (CPU default: 2)")
    ap.add_argument("--synflow-k", type=int, default=16, help="synflow's chunk (CPU default: 16)")
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--no-profile", action="store_true", help="skip the profiled chunk per group")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cpu_efficiency"))
    ap.add_argument("--before", default="9c0b1b6",
                    help="git revision of the 'before' engine, timed in the same run by a child "
                         "process on an export of it (with this commit's zcfast/ops and compiled "
                         "core, as bench/host_overhead.py does); '' to skip")
    ap.add_argument("--engine-only", default=None, help=argparse.SUPPRESS)  # child: JSON path
    a = ap.parse_args(argv)
    groups = [g for g in a.groups.split(",") if g]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown group(s) {bad}: choose from {sorted(GROUPS)}")
    torch.set_num_threads(a.threads)
    import tempfile

    from host_overhead import cpu_model, export

    if a.engine_only:  # child: the engine found first on sys.path (PYTHONPATH), timed only
        import zcfast

        src = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
        if not src or not zcfast.__file__.startswith(src):
            raise RuntimeError(f"the exported engine {src!r} is not the zcfast imported "
                               f"({zcfast.__file__})")
        res = {g: engine(g, a.synflow_k if g == "synflow" else a.k, a.chunks) for g in groups}
        with open(a.engine_only, "w") as f:
            json.dump(res, f)
        return 0
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
    before, before_sha = {}, None
    if a.before:
        before_sha = subprocess.run(["git", "rev-parse", "--short", a.before], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip()
        export(before_sha, os.path.join(tmp, "before"), overlay=sha)
        out_json = os.path.join(tmp, "before.json")
        env = dict(os.environ, PYTHONPATH=os.path.join(tmp, "before"))
        subprocess.run([sys.executable, os.path.abspath(__file__), "--engine-only", out_json,
                        "--threads", str(a.threads), "--k", str(a.k), "--synflow-k",
                        str(a.synflow_k), "--chunks", str(a.chunks), "--groups", ",".join(groups)],
                       env=env, check=True, cwd=tmp)
        with open(out_json) as f:
            before = json.load(f)
        print("before", before, flush=True)
    res = {}
    for g in groups:
        res[g] = engine(g, a.synflow_k if g == "synflow" else a.k, a.chunks)
        print(g, res[g], flush=True)
    prof = {}
    if not a.no_profile:
        for g in groups:
            prof[g] = profile(g, a.synflow_k if g == "synflow" else a.k)
            print("profile", g, prof[g], flush=True)
    meta = {"git": sha, "before": before_sha, "cpu": cpu_model(), "threads": a.threads,
            "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg()}
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "ceilings": ceil, "engine": res, "engine_before": before,
                   "profile": prof}, f, indent=1)
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
        f"- memory bandwidth (copy of 256 MiB, bytes read + written): "
        f"{ceil['copy_bytes_per_s'] / G:.1f} GB/s",
        "",
        "| convolution | forward GFLOP/s | forward+backward GFLOP/s |",
        "|---|---:|---:|",
    ]
    for name, v in ceil["conv"].items():
        lines.append(f"| {name} | {v['forward'] / G:.1f} | {v['fwd_bwd'] / G:.1f} |")
    lines += ["", "## Engine", ""]
    if before:
        lines += [f"before = the engine of git `{before_sha}` (with this commit's zcfast/ops and "
                  "compiled core), timed in a child process of this run after the ceilings; "
                  f"after = `{sha}`. Same cells, K and batch.", ""]
    lines += ["| group | K | engine | cells/s | achieved GFLOP/s | of conv fwd+bwd ceiling "
              "| of GEMM ceiling |", "|---|---:|---|---:|---:|---:|---:|"]
    for g, r in res.items():
        gemm = ceil["gemm_float64"] if g == "synflow" else ceil["gemm_float32"]
        conv = ceil["conv_fwd_bwd_best"]
        for which, rr in (("before", before.get(g)), ("after", r)):
            if rr is None:
                continue
            conv_s = "n/a (float64)" if g == "synflow" else f"{rr['flop_per_s'] / conv:.0%}"
            lines.append(f"| {g} | {rr['k']} | {which if before else sha} | "
                         f"{rr['cells_per_s']:.2f} | {rr['flop_per_s'] / G:.1f} | {conv_s} | "
                         f"{rr['flop_per_s'] / gemm:.0%} |")
    if prof:
        lines += _limits(prof, ceil)
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _limits(prof: dict, ceil: dict) -> list:
    """The report's section on what limits the achieved fraction (see the module docstring)."""
    G = 1e9
    bw = ceil["copy_bytes_per_s"]
    lines = ["", "## What limits it (one profiled chunk per group)", "",
             "One chunk per group under torch.profiler (the cells of the engine's untimed first "
             "chunk); shares of "
             "its wall time (`wall s`, the profiler's per-operator cost included). `dense`: "
             "convolutions and matrix products; `other`: every other ATen operator; `outside`: "
             "in no ATen operator (Python, the autograd engine, zcfast's own C++ kernels). For "
             "this chunk, achieved / ceiling = dense share x dense rate / ceiling exactly "
             "(column `achieved`). Other bytes: an estimate from shapes; `bound`: the fraction "
             "with convolutions at the best dense shape's rate, other operators at the measured "
             "bandwidth and nothing outside operators (module docstring for both).",
             "",
             "| group | K | wall s | achieved | dense share | other share | outside share "
             "| dense rate (of conv ceiling) | other op time s "
             "| other GB moved (est.) | other GB/s (of bandwidth) | bound | largest other "
             "operators (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for g, p in prof.items():
        w = p["wall_s"]
        out_s = max(w - p["dense_s"] - p["other_s"], 0.0)
        conv = ceil["gemm_float64"] if g == "synflow" else ceil["conv_fwd_bwd_best"]
        rate = p["flop"] / p["dense_s"] if p["dense_s"] else float("nan")
        ob = p["other_bytes_est"]
        best_t = p["flop"] / conv + ob / bw
        bound = p["flop"] / best_t / conv if best_t else float("nan")
        top = ", ".join(f"{n[6:]} {s:.2f}" for n, s in p["top_other"][:4])
        other_rate = ob / p["other_s"] if p["other_s"] else float("nan")
        lines.append(f"| {g} | {p['k']} | {w:.2f} | {p['flop'] / w / conv:.0%} | "
                     f"{p['dense_s'] / w:.0%} | "
                     f"{p['other_s'] / w:.0%} | {out_s / w:.0%} | {rate / G:.1f} GFLOP/s "
                     f"({rate / conv:.0%}) | {p['other_s']:.2f} | {ob / G:.2f} | "
                     f"{other_rate / G:.1f} ({other_rate / bw:.0%}) | {bound:.0%} "
                     f"| {top} |")
    lines += ["", "synflow's rates are against the float64 GEMM ceiling (it runs in float64). Other "
              "GB/s above 100% of the bandwidth: tensors small enough to stay in cache."]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
