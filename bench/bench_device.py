"""One-call GPU benchmark of zcfast (run by bench/device.sh on a lent H100/H200).

Measures, in one process on one card, with correctness checked before every timing:
  1. ceilings: device-to-device copy bandwidth (bytes read + written, >= 1 GiB) and the fp32 /
     TF32 / bf16 matrix-product rates;
  2. each fused reduction kernel (CUDA and Triton) on >= 100 MB inputs shaped like the packed
     engine's: achieved GB/s (minimum bytes / median time) and its fraction of the copy bandwidth;
  3. candidates per second of the paper's six proxies and of synflow alone: packed with the CUDA
     kernels, packed with the Triton kernels, and the per-model loop (compute_measures), batch 64
     on CIFAR-10 images. The rate reported is the main measurement's (chunks sized from free
     memory), never the better of two; a chunk that ran out of memory and was retried smaller is
     timed on its own and left out of the rate. Each chunk's peak GPU memory is recorded next to
     the memory model's prediction (zcfast/batched/memory.py). The time to score all 15,625
     NB201 cells is measured when the budget allows a full run; otherwise it is an extrapolation
     from the measured rate, labelled as such, and never counted as meeting a target;
  4. the work bound of one packed six-proxy pass: FLOPs (torch's FlopCounterMode: every conv /
     matmul of forward, backward and grasp's double backward) and minimum bytes (each tensor
     saved for backward written once and read once, plus parameters, gradients and input), the
     floor they give against the measured ceilings, and the measured gap to it; plus the top GPU
     kernels of one packed pass from the torch profiler (where the time goes).
Results: one JSON and one Markdown table in --out (default $OUT, else bench/results/device/),
with the git SHA, card, versions and the targets; a short table is printed last.

``--cpu-smoke`` runs the same code paths on the CPU with tiny sizes (torch / native backends),
to check the script itself on a machine without a GPU. It measures nothing meaningful.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NB201_CELLS = 15625
TARGETS = {
    "six_all_cells_s": 60.0,  # all 15,625 cells x six paper proxies, batch 64
    "synflow_all_cells_s": 5.0,  # synflow for all 15,625 cells
    "packed_vs_loop_x": 100.0,  # packed candidates/s over the per-model loop's
    "kernel_copy_fraction": 0.60,  # each fused reduction vs device-to-device copy, >= 100 MB
}
SIX = ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow"]


# ---- small utilities --------------------------------------------------------------------------


class Budget:
    """Wall-clock budget: phases ask before they start and skip (recorded) when short."""

    def __init__(self, seconds: float):
        self.t0 = time.perf_counter()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)

    def allows(self, need: float) -> bool:
        return self.left() >= need


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(dev) -> None:
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize()


def time_op(fn, dev, *, warmup: int = 3, repeat: int = 20, inner: int = 1) -> dict:
    """Seconds per call of fn(): median / min / max over ``repeat`` samples, each sample timing
    ``inner`` back-to-back calls (CUDA events on a GPU, so the host's launch overhead overlaps
    the device work and only device time is counted; perf_counter on the CPU)."""
    for _ in range(warmup):
        fn()
    sync(dev)
    ts = []
    if torch.device(dev).type == "cuda":
        for _ in range(repeat):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(inner):
                fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) / 1e3 / inner)
    else:
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            ts.append((time.perf_counter() - t) / inner)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "n": len(ts),
            "inner": inner}


def git_sha() -> str:
    env = os.environ.get("ZCFAST_GIT_SHA")
    if env:
        return env
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           timeout=10, check=False)
        if r.returncode == 0:
            sha = r.stdout.strip()
            d = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=False)
            return sha + ("-dirty" if d.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def source_hash() -> str:
    """sha256 over the sources that make up the measured code (csrc, kernels, zcfast, bench,
    build files), path and content, sorted: identifies the tree where git is absent."""
    h = hashlib.sha256()
    files = []
    for top in ("csrc", "kernels", "zcfast", "bench"):
        for p in sorted((ROOT / top).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".cpp", ".hpp", ".cu", ".cuh", ".h", ".sh"):
                files.append(p)
    files += [ROOT / f for f in ("CMakeLists.txt", "setup.py", "pyproject.toml") if (ROOT / f).exists()]
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def guarded(results: dict, key: str, budget: Budget, need_s: float, fn):
    """Run one phase; record its result, its error, or that the budget did not allow it."""
    if not budget.allows(need_s):
        results[key] = {"skipped": f"budget: {budget.left():.0f} s left, phase needs ~{need_s:.0f} s"}
        log(f"{key}: skipped (budget)")
        return None
    t = time.perf_counter()
    try:
        out = fn()
        if isinstance(out, dict):
            out.setdefault("phase_s", round(time.perf_counter() - t, 2))
        results[key] = out
        return out
    except Exception as e:  # noqa: BLE001 - a failed phase is recorded, the others still run
        prev = results.get(key) if isinstance(results.get(key), dict) else {}
        results[key] = {**prev, "error": f"{type(e).__name__}: {e}",
                        "trace": traceback.format_exc()[-3000:]}
        log(f"{key}: FAILED {type(e).__name__}: {e}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


# ---- 0. environment ---------------------------------------------------------------------------


def environment(dev) -> dict:
    import zcfast

    info = {
        "git_sha": git_sha(),
        "source_hash": source_hash(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(dev),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        info["triton"] = None
    try:
        bi = zcfast.backend_info()
        info["zcfast_backend_info"] = {k: v for k, v in bi.items() if k != "ops"}
        info["zcfast_ops"] = bi.get("ops")
    except Exception as e:  # noqa: BLE001
        info["zcfast_backend_info"] = f"error: {e}"
    try:
        r = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=20,
                           check=False)
        info["nvcc"] = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        info["nvcc"] = None
    if torch.device(dev).type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update({
            "card": p.name,
            "sms": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "l2_mb": round(getattr(p, "L2_cache_size", 0) / 2**20, 1),
            "capability": f"{p.major}.{p.minor}",
        })
        try:
            r = subprocess.run(["nvidia-smi", ("--query-gpu=driver_version,clocks.sm,clocks.mem,"
                                "power.draw,temperature.gpu"), "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20, check=False)
            info["nvidia_smi"] = r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["nvidia_smi"] = None
    else:
        info["card"] = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return info


# ---- 1. ceilings -------------------------------------------------------------------------------


def _copy_rate(n: int, dev, smoke: bool) -> dict:
    src = torch.randn(n, device=dev)
    dst = torch.empty_like(src)
    t = time_op(lambda: dst.copy_(src), dev, warmup=3, repeat=5 if smoke else 20)
    assert torch.equal(dst[:1000], src[:1000])
    return {"copy_bytes": 2 * n * 4, "copy_GBps": 2 * n * 4 / t["median_s"] / 1e9, "copy_time": t}


def _matmul_rate(m: int, dtype, tf32: bool, dev, smoke: bool) -> float:
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(m, m, device=dev).to(dtype)
        b = torch.randn(m, m, device=dev).to(dtype)
        t = time_op(lambda: a @ b, dev, warmup=2, repeat=3 if smoke else 10)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * m**3 / t["median_s"] / 1e12


def ceilings(dev, smoke: bool) -> dict:
    """Copy bandwidth (bytes read + written) on a 1 GiB buffer; fp32 / TF32 / bf16 matmul rates."""
    out = _copy_rate((1 << 22) if smoke else (1 << 28), dev, smoke)
    m = 256 if smoke else 8192
    out["matmul_size"] = m
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        if not smoke or name == "fp32":
            out[name + "_TFLOPs"] = _matmul_rate(m, dtype, tf32, dev, smoke)
    return out


# ---- 2. fused kernels: bandwidth ---------------------------------------------------------------


def _plan_segments(n_target: int, seed: int = 0, cells: int = 64):
    """Weight-segment offsets of real packed NB201 plans (random cells), repeated (or cut) to
    about n_target elements: the ragged sizes the engine hands the kernel."""
    from zcfast.batched.engine import codes_of
    from zcfast.batched.plan import build_plan, segment_table
    from zcfast.spaces import nb201

    idx = nb201.sample(cells, seed=seed)
    t = segment_table(build_plan(codes_of(idx), 10))
    lens = np.diff(t.offsets[: t.n_weight_segments + 1])
    reps = max(1, math.ceil(n_target / lens.sum()))
    lens = np.tile(lens, reps)
    cut = int(np.searchsorted(np.cumsum(lens), n_target)) + 1
    lens = lens[:cut]
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    off[1:] = np.cumsum(lens)
    return torch.from_numpy(off)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    scale = b.abs().amax(0, keepdim=True).clamp_min(1e-300) if b.dim() > 1 else b.abs().max().clamp_min(1e-300)
    return float(((a - b).abs() / scale).max()) if b.numel() else 0.0


def _C_DIRECT_MAX() -> int:
    from zcfast import _C

    return int(_C.cuda.SALIENCY_DIRECT_MAX)


def kernel_cases(dev, smoke: bool):
    """(name, bytes, {backend: fn}, check) for each fused op at >= 100 MB per input."""
    from zcfast.ops import _backend
    from zcfast.ops.fisher import _prepare as fprep
    from zcfast.ops.fisher import _reference as fref
    from zcfast.ops.naswot import _prepare as nprep
    from zcfast.ops.naswot import _reference as nref
    from zcfast.ops.saliency import _prepare as sprep
    from zcfast.ops.saliency import _reference as sref

    have_cuda = dev.type == "cuda" and _backend.cuda_op_available("segment_saliency")
    have_triton = dev.type == "cuda" and _backend.triton_available()
    gen = torch.Generator(device=dev).manual_seed(0)
    n_el = (32 << 20) if not smoke else (1 << 16)  # 128 MiB float32 per input (smoke: 256 KiB)

    def sal(name, off, with_hg):
        n = int(off[-1])
        w = torch.randn(n, device=dev, generator=gen)
        g = torch.randn(n, device=dev, generator=gen) * 1e-3
        hg = torch.randn(n, device=dev, generator=gen) if with_hg else None
        w, g, hg, offd, max_len = sprep(w, g, hg, off.to(dev))
        ref = sref(w, g, hg, offd)
        nseg = offd.numel() - 1
        fns = {}
        if have_cuda:
            from zcfast.ops.saliency import _segment_saliency_cuda

            out_c = torch.empty(nseg, 5, dtype=torch.float64, device=dev)
            fns["cuda"] = lambda: _segment_saliency_cuda(w, g, hg, offd, out_c, max_len)
            # variants: chunked path forced (plan + combine cost), one block per work item
            if max_len <= _C_DIRECT_MAX():
                fns["cuda_split"] = lambda: _segment_saliency_cuda(w, g, hg, offd, out_c, -1)
            fns["cuda_grid1"] = lambda: _segment_saliency_cuda(w, g, hg, offd, out_c, max_len, 1)
        if have_triton:
            from zcfast.kernels.saliency import segment_saliency_triton

            out_t = torch.empty(nseg, 5, dtype=torch.float64, device=dev)
            fns["triton"] = lambda: segment_saliency_triton(w, g, hg, offd, out_t)
        if not fns:  # CPU smoke: the reference stands in
            fns["torch"] = lambda: sref(w, g, hg, offd)
        nbytes = (3 if with_hg else 2) * n * 4 + offd.numel() * 8 + nseg * 5 * 8
        return (name, nbytes, fns, lambda f: _rel(f(), ref), {"elements": n, "segments": nseg,
                                                               "max_segment": max_len})

    def fish(name, shape):
        a = torch.randn(shape, device=dev, generator=gen)
        g = torch.randn(shape, device=dev, generator=gen)
        a3, g3 = fprep(a, g, 1)
        ref = fref(a3, g3, 1, 1.0)
        c = a3.shape[1]
        fns = {}
        if have_cuda:
            from zcfast.ops.fisher import _fisher_channels_cuda

            oc = torch.empty(c, dtype=torch.float64, device=dev)
            fns["cuda"] = lambda: _fisher_channels_cuda(a3, g3, oc)
        if have_triton:
            from zcfast.kernels.fisher import fisher_channels_triton

            ot = torch.empty(c, dtype=torch.float64, device=dev)
            fns["triton"] = lambda: fisher_channels_triton(a3, g3, ot)
        if not fns:
            fns["torch"] = lambda: fref(a3, g3, 1, 1.0)
        nbytes = 2 * a3.numel() * 4 + c * 8
        return (name, nbytes, fns, lambda f: _rel(f(), ref), {"shape": list(a3.shape)})

    def nw(name, b, groups, gsize, hw):
        x = torch.randn(b, groups * gsize, hw, device=dev, generator=gen)
        cand = torch.arange(groups, device=dev)  # one group per candidate, as in a cell node
        k = groups
        out0 = torch.zeros(k, b, b, device=dev)
        xs, cd = nprep(x, cand, gsize, out0)
        ref = nref(xs, cd, gsize, out0.clone())
        order = torch.argsort(cd, stable=True)
        ptr = torch.zeros(k + 1, dtype=torch.int64, device=dev)
        ptr[1:] = torch.cumsum(torch.bincount(cd, minlength=k), 0)
        fns = {}
        used = {}  # the cluster sizes the launches really used (filled by the first call)
        if have_cuda:
            from zcfast.ops.naswot import _naswot_kernel_cuda

            auto, one = {}, {}
            used.update({"cuda": auto, "cuda_split1": one})
            fns["cuda"] = lambda: _naswot_kernel_cuda(xs, order, ptr, gsize * hw, out0.zero_(),
                                                      info=auto)
            # variant: one block per candidate (no cluster), to see what the cluster split buys
            fns["cuda_split1"] = lambda: _naswot_kernel_cuda(xs, order, ptr, gsize * hw,
                                                             out0.zero_(), split=1, info=one)
        if have_triton:
            from zcfast.kernels.naswot import naswot_kernel_triton

            fns["triton"] = lambda: naswot_kernel_triton(xs, order, ptr, gsize * hw, out0.zero_())
        if not fns:
            fns["torch"] = lambda: nref(xs, cd, gsize, out0.zero_())
        nbytes = xs.numel() * 4 + 2 * k * b * b * 4 + (2 * k + 1) * 8
        flops = 2 * k * b * b * gsize * hw
        return (name, nbytes, fns, lambda f: float((f().cpu() - ref.cpu()).abs().max()),
                {"shape": list(xs.shape), "group_features": gsize * hw, "candidates": k,
                 "tensor_flops": flops, "cluster_used": used})

    plan_off = _plan_segments(n_el, cells=4 if smoke else 64)
    yield lambda: sal("saliency_nb201_w_g_hg", plan_off, True)
    yield lambda: sal("saliency_nb201_w_g", plan_off, False)
    yield lambda: sal("saliency_one_long_segment", torch.tensor([0, n_el]), True)
    b = 64 if not smoke else 4
    yield lambda: fish("fisher_hw1024", (b, max(1, n_el // (b * 1024)), 32, 32))
    yield lambda: fish("fisher_hw64", (b, max(1, n_el // (b * 64)), 8, 8))
    yield lambda: fish("fisher_hw1_head", (b, max(1, n_el // b)))
    yield lambda: nw("naswot_stage1_L16384", b, max(1, n_el // (b * 16 * 1024)), 16, 1024)
    yield lambda: nw("naswot_stage3_L4096", b, max(1, n_el // (b * 64 * 64)), 64, 64)


def kernels_bandwidth(dev, smoke: bool, copy_GBps: float | None, budget: Budget) -> dict:
    rows = []
    for make in kernel_cases(dev, smoke):
        if not budget.allows(10):
            rows.append({"skipped": "budget"})
            break
        try:
            name, nbytes, fns, check, meta = make()
        except Exception as e:  # noqa: BLE001
            rows.append({"error": f"{type(e).__name__}: {e}"})
            continue
        for backend, fn in fns.items():
            row = {"kernel": name, "backend": backend, "bytes": nbytes, **meta}
            try:
                err = check(fn)  # correctness first (also the first, compiling, call)
                row["check_err"] = err
                row["check_ok"] = bool(err <= (1e-10 if backend.startswith("cuda") else 1e-4))
                t = time_op(fn, dev, warmup=3, repeat=5 if smoke else 15, inner=1 if smoke else 5)
                row.update(t)
                row["GBps"] = nbytes / t["median_s"] / 1e9
                if copy_GBps:
                    row["copy_fraction"] = row["GBps"] / copy_GBps
                if "tensor_flops" in meta:
                    row["TFLOPs"] = meta["tensor_flops"] / t["median_s"] / 1e12
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
            log(f"kernel {name:28s} {backend:6s} "
                + (f"{row.get('GBps', float('nan')):8.1f} GB/s  err {row.get('check_err', float('nan')):.1e}"
                   if "error" not in row else row["error"]))
        del fns
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows}


# ---- 3. throughput of the engine -------------------------------------------------------------


def _cells(n: int, seed: int) -> list:
    from zcfast.spaces import nb201

    return [int(i) for i in nb201.sample(n, seed=seed)]


def packed_rate(idx, proxies, x, y, dev, backend, chunk) -> dict:
    """Score idx in packed chunks: seconds per chunk (synchronised), candidates/s overall.

    A chunk that runs out of memory is retried with half the candidates (iter_packed); each
    failed attempt is timed on its own (``oom_retries``) and its time is left out of the chunk's
    time and of the rate. On a GPU each chunk's peak allocated bytes (above what was allocated
    before it) are recorded with the memory model's prediction for that chunk."""
    from zcfast.batched import iter_packed
    from zcfast.batched.engine import codes_of
    from zcfast.batched.memory import peak_bytes

    cuda = dev.type == "cuda"
    sync(dev)
    sizes, times, scores, retries, mem = [], [], {}, [], []
    pending = []  # OOM attempts of the chunk in progress

    def on_oom(k, seconds):
        pending.append({"k": k, "s": seconds})

    def start():
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
            return torch.cuda.memory_allocated(dev)
        return 0

    base = start()
    t0 = time.perf_counter()
    for part, res in iter_packed(idx, proxies, x, y, ncls=10, seed=0, device=dev, chunk=chunk,
                                 backend=backend, on_oom=on_oom):
        sync(dev)
        t1 = time.perf_counter()
        lost = sum(r["s"] for r in pending)
        sizes.append(len(part))
        times.append(t1 - t0 - lost)
        retries += pending
        if cuda:
            peak = torch.cuda.max_memory_allocated(dev) - base
            pred = peak_bytes(proxies, x.shape[0], x.shape[-1], codes=codes_of(part))
            mem.append({"k": len(part), "peak_bytes": int(peak), "predicted_bytes": int(pred),
                        "predicted_over_measured": pred / peak if peak > 0 else None})
        pending.clear()
        for k, i in enumerate(part):
            scores[i] = {p: float(res[p][k]) for p in proxies}
        base = start()
        t0 = time.perf_counter()
    total = sum(times)
    out = {"cells": len(idx), "chunk": chunk, "chunk_sizes": sizes, "chunk_s": times,
           "total_s": total, "cands_per_s": len(idx) / total if total > 0 else float("nan"),
           "oom_retries": retries, "oom_s": sum(r["s"] for r in retries), "_scores": scores}
    if mem:
        out["memory"] = mem
    return out


def per_model_rate(idx, proxies, x, y, dev) -> dict:
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb201_model import build_model

    scores = {}
    # warm-up on one cell (cuDNN heuristics, allocator), not timed
    compute_measures(build_model(idx[0], 10, seed=0), x, y, proxies, device=dev)
    sync(dev)
    t0 = time.perf_counter()
    for i in idx:
        scores[i] = compute_measures(build_model(i, 10, seed=0), x, y, proxies, device=dev)
    sync(dev)
    total = time.perf_counter() - t0
    return {"cells": len(idx), "total_s": total, "cands_per_s": len(idx) / total, "_scores": scores}


def _agreement(packed: dict, ref: dict, proxies) -> dict:
    """Largest relative difference per proxy between packed and per-model scores (same cells)."""
    out = {}
    for p in proxies:
        worst = 0.0
        for i, r in ref.items():
            if i not in packed:
                continue
            a, b = packed[i][p], r[p]
            if (math.isnan(a) and math.isnan(b)) or a == b:
                continue
            worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-300))
        out[p] = worst
    return out


def throughput(dev, smoke: bool, budget: Budget, tf32_row: bool, res: dict, save) -> dict:
    from zcfast.batched import auto_chunk
    from zcfast.data import image_source
    from zcfast.ops import _backend

    bsz = 4 if smoke else 64
    x, y = image_source("cifar10").minibatch(bsz, 0)
    x, y = x.to(dev), y.to(dev)
    res.update({"batch": bsz, "dataset": "cifar10", "tf32": False})
    if dev.type == "cuda":
        backends = (["cuda"] if _backend.cuda_op_available("segment_saliency") else [])
        backends += ["triton"] if _backend.triton_available() else []
    else:
        backends = [None]  # native CPU / torch reference
    res["backends"] = [b or "auto" for b in backends]

    # per-model loop first: its scores are the reference the packed results are checked against
    n_loop_six = 1 if smoke else 6
    n_loop_syn = 2 if smoke else 12
    loop_six = per_model_rate(_cells(n_loop_six, 1), SIX, x, y, dev)
    loop_syn = per_model_rate(_cells(n_loop_syn, 2), ["synflow"], x, y, dev)
    res["loop_six"] = {k: v for k, v in loop_six.items() if not k.startswith("_")}
    res["loop_synflow"] = {k: v for k, v in loop_syn.items() if not k.startswith("_")}
    log(f"per-model loop: six {loop_six['cands_per_s']:.2f} cand/s, synflow "
        f"{loop_syn['cands_per_s']:.2f} cand/s")
    save()

    for proxies, tag, loop in ((SIX, "six", loop_six), (["synflow"], "synflow", loop_syn)):
        auto = auto_chunk(proxies, bsz, 32, dev, NB201_CELLS)
        for backend in backends:
            name = f"packed_{tag}_{backend or 'auto'}"
            if not budget.allows(25):
                res[name] = {"skipped": "budget"}
                continue
            try:
                # probe: the per-model cells first (agreement check), plus warm-up (compilation)
                probe_k = 2 if smoke else 32
                probe_idx = list(loop["_scores"]) + _cells(probe_k, 3)[: probe_k - len(loop["_scores"])]
                packed_rate(probe_idx[:4], proxies, x, y, dev, backend, 4)  # warm-up, untimed
                probe = packed_rate(probe_idx, proxies, x, y, dev, backend, len(probe_idx))
                agree = _agreement(probe["_scores"], loop["_scores"], proxies)
                # main: chunk from free memory, capped so that one chunk takes <= ~8 s
                est = probe["cands_per_s"]
                k = int(max(probe_k, min(auto, est * (1.0 if smoke else 8.0))))
                if smoke:
                    k = 2
                reps = 2
                idx = _cells(k * reps, 4)
                main = packed_rate(idx, proxies, x, y, dev, backend, k)
                # the rate is the main measurement's (chunks sized from free memory), never the
                # better of the probe and the main run
                rate = main["cands_per_s"]
                entry = {"probe": {kk: v for kk, v in probe.items() if not kk.startswith("_")},
                         "main": {kk: v for kk, v in main.items() if not kk.startswith("_")},
                         "agreement_vs_loop_max_relerr": agree,
                         "auto_chunk": auto, "cands_per_s": rate,
                         "rate_from": f"{main['cells']} cells in {main['total_s']:.2f} s "
                                      f"(chunks {main['chunk_sizes']})",
                         "vs_loop_x": rate / loop["cands_per_s"],
                         "all_cells_s_extrapolated": NB201_CELLS / rate}
                res[name] = entry
                oom = (f", {len(main['oom_retries'])} OOM retries ({main['oom_s']:.1f} s, not in "
                       "the rate)") if main["oom_retries"] else ""
                log(f"{name}: {rate:.1f} cand/s measured on {main['cells']} cells (chunk {k}), "
                    f"{entry['vs_loop_x']:.0f}x the loop{oom}; all cells extrapolated "
                    f"~{entry['all_cells_s_extrapolated']:.1f} s")
            except Exception as e:  # noqa: BLE001
                res[name] = {"error": f"{type(e).__name__}: {e}",
                             "trace": traceback.format_exc()[-3000:]}
                log(f"{name}: FAILED {e}")
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            save()

    # TF32 convolutions (PyTorch's default for cuDNN): faster, but float32 scores then differ
    # from the exact float32 reference by ~1e-3; measured as a side row only
    if tf32_row and dev.type == "cuda" and backends and budget.allows(40):
        old = torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = True
            b = backends[0]
            auto = auto_chunk(SIX, bsz, 32, dev, NB201_CELLS)
            base = res.get(f"packed_six_{b}", {})
            k = base.get("main", {}).get("chunk", 64) if isinstance(base, dict) else 64
            packed_rate(_cells(4, 5), SIX, x, y, dev, b, 4)
            m = packed_rate(_cells(min(auto, k) * 2, 6), SIX, x, y, dev, b, min(auto, k))
            res[f"packed_six_{b}_tf32"] = {"cands_per_s": m["cands_per_s"],
                                          "chunk": min(auto, k), "total_s": m["total_s"],
                                          "oom_retries": m["oom_retries"],
                                          "all_cells_s_extrapolated": NB201_CELLS / m["cands_per_s"]}
        except Exception as e:  # noqa: BLE001
            res[f"packed_six_{backends[0]}_tf32"] = {"error": f"{type(e).__name__}: {e}"}
        finally:
            torch.backends.cudnn.allow_tf32 = old
    return res


def full_runs(dev, smoke: bool, budget: Budget, thr: dict, mode: str) -> dict:
    """Score all 15,625 cells for real where the extrapolated time fits the budget."""
    from zcfast.batched import auto_chunk
    from zcfast.data import image_source

    out = {}
    bsz = thr.get("batch", 64)
    x, y = image_source("cifar10").minibatch(bsz, 0)
    x, y = x.to(dev), y.to(dev)
    for tag, proxies in (("synflow", ["synflow"]), ("six", SIX)):
        cands = [(v.get("all_cells_s_extrapolated", math.inf), k) for k, v in thr.items()
                 if k.startswith(f"packed_{tag}_") and isinstance(v, dict) and "cands_per_s" in v
                 and not k.endswith("_tf32")]
        if not cands:
            out[tag] = {"skipped": "no packed rate measured"}
            continue
        est, key = min(cands)
        backend = key.rsplit("_", 1)[1]
        backend = None if backend == "auto" else backend
        n = 8 if smoke else NB201_CELLS
        want = mode == "yes" or (mode == "auto" and budget.allows(est * 1.3 + 20))
        if not want:
            out[tag] = {"ran": False, "extrapolated_s": est, "backend": key,
                        "why": f"extrapolated {est:.0f} s > budget left {budget.left():.0f} s"
                        if mode == "auto" else "disabled"}
            continue
        chunk = thr[key].get("main", {}).get("chunk") or auto_chunk(proxies, bsz, 32, dev, n)
        r = packed_rate(list(range(n)), proxies, x, y, dev, backend, chunk)
        vals = np.array([[r["_scores"][i][p] for p in proxies] for i in range(n)])
        out[tag] = {"ran": True, "cells": n, "backend": key, "chunk": chunk,
                    "total_s": r["total_s"], "extrapolated_s": est,
                    "oom_retries": len(r["oom_retries"]), "oom_s": r["oom_s"],
                    "nan_or_inf": int((~np.isfinite(vals)).sum())}
        log(f"full {tag}: {n} cells in {r['total_s']:.1f} s")
    return out


# ---- 4. work bound and profile ---------------------------------------------------------------


def work_bound(dev, smoke: bool, ceil: dict, thr: dict) -> dict:
    """FLOPs and minimum bytes of one packed six-proxy pass, per candidate."""
    from torch.utils.flop_counter import FlopCounterMode

    from zcfast.batched.engine import PackedNB201, codes_of
    from zcfast.data import image_source

    k = 2 if smoke else 8
    bsz = thr.get("batch", 64)
    x, y = image_source("cifar10").minibatch(bsz, 0)
    x, y = x.to(dev), y.to(dev)
    idx = _cells(k, 7)
    eng = PackedNB201(codes_of(idx), 10, device=dev)
    with FlopCounterMode(display=False) as fc:
        eng.compute(x, y, SIX)
    flops = fc.get_total_flops()
    # bytes: every tensor saved for backward (distinct storages) is written once and read once
    seen: dict = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001
            pass
        return t

    eng2 = PackedNB201(codes_of(idx), 10, device=dev)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        eng2.compute(x, y, SIX)
    saved = sum(seen.values())
    n_params = eng.plan.n_weights + eng.plan.n_biases
    # parameters: init write, read in each of 3 passes; gradients and H g written then read once
    param_bytes = n_params * 4 * (1 + 3 + 2 * 2) + n_params * 8 * 2  # + float64 synflow copy
    input_bytes = x.numel() * 4 * (1 + k)  # the shared input and the jacobian pass's K copies
    min_bytes = 2 * saved + param_bytes + input_bytes
    out = {"cells": k, "batch": bsz, "flops_per_cand": flops / k, "min_bytes_per_cand": min_bytes / k,
           "saved_bytes_per_cand": saved / k, "method": "FlopCounterMode (conv/matmul FLOPs of "
           "forward, backward and double backward); bytes = 2 x saved-for-backward + params/"
           "grads + input"}
    rate = ceil.get("fp32_TFLOPs")
    bw = ceil.get("copy_GBps")
    if rate and bw:
        t_flop = out["flops_per_cand"] / (rate * 1e12)
        t_byte = out["min_bytes_per_cand"] / (bw * 1e9)
        out.update({"floor_s_per_cand_fp32": max(t_flop, t_byte), "flop_time_s": t_flop,
                    "byte_time_s": t_byte, "bound": "compute" if t_flop > t_byte else "memory",
                    "floor_all_cells_s_fp32": NB201_CELLS * max(t_flop, t_byte)})
        if ceil.get("tf32_TFLOPs"):
            t32 = out["flops_per_cand"] / (ceil["tf32_TFLOPs"] * 1e12)
            out["floor_all_cells_s_tf32"] = NB201_CELLS * max(t32, t_byte)
        best = [v.get("cands_per_s") for kk, v in thr.items()
                if kk.startswith("packed_six_") and isinstance(v, dict) and v.get("cands_per_s")
                and not kk.endswith("_tf32")]
        if best:
            measured = 1.0 / max(best)
            out["measured_s_per_cand"] = measured
            out["gap_x"] = measured / out["floor_s_per_cand_fp32"]
    return out


def profile_pass(dev, smoke: bool, thr: dict) -> dict:
    """Top GPU kernels of one packed six-proxy pass (torch profiler): where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    from zcfast.batched.engine import PackedNB201, codes_of
    from zcfast.data import image_source

    k = 2 if smoke else 64
    bsz = thr.get("batch", 64)
    x, y = image_source("cifar10").minibatch(bsz, 0)
    x, y = x.to(dev), y.to(dev)
    idx = _cells(k, 8)
    PackedNB201(codes_of(idx[:4]), 10, device=dev).compute(x, y, SIX)  # warm-up
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        PackedNB201(codes_of(idx), 10, device=dev).compute(x, y, SIX)
        sync(dev)
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    evs = prof.key_averages()
    tot = sum(getattr(e, key, 0) for e in evs) or 1.0
    rows = sorted(evs, key=lambda e: getattr(e, key, 0), reverse=True)[:12]
    return {"cells": k, "total_ms": tot / 1e3, "top": [
        {"name": e.key[:90], "ms": getattr(e, key, 0) / 1e3, "share": getattr(e, key, 0) / tot,
         "calls": e.count} for e in rows]}


# ---- report --------------------------------------------------------------------------------------


def _fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{nd}f}"
    return str(v)


def markdown(res: dict) -> str:
    env = res.get("environment", {})
    ce = res.get("ceilings", {})
    L = [f"# zcfast device benchmark ({env.get('card', '?')})", "",
         (f"git `{env.get('git_sha')}` (sources {env.get('source_hash')}), {env.get('date_utc')} UTC; "
         f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), triton {env.get('triton')}, "
         f"nvcc: {env.get('nvcc')}; mode: {res.get('mode')}"), ""]
    if ce and "copy_GBps" in ce:
        L += [(f"Ceilings: device-to-device copy {_fmt(ce.get('copy_GBps'))} GB/s (read + write); "
              f"matmul fp32 {_fmt(ce.get('fp32_TFLOPs'))}, TF32 {_fmt(ce.get('tf32_TFLOPs'))}, "
              f"bf16 {_fmt(ce.get('bf16_TFLOPs'))} TFLOP/s."), ""]
    kb = res.get("kernels", {}).get("rows", [])
    if kb:
        L += ["## Fused reduction kernels (>= 100 MB inputs)", "",
              "| kernel | backend | MB | median us | GB/s | of copy | check |",
              "|---|---|---:|---:|---:|---:|---|"]
        for r in kb:
            if "kernel" not in r:
                continue
            L.append(f"| {r['kernel']} | {r.get('backend')} | {r.get('bytes', float('nan')) / 1e6:.0f} | "
                     f"{_fmt(r.get('median_s', float('nan')) * 1e6, 0)} | {_fmt(r.get('GBps'))} | "
                     f"{_fmt(r.get('copy_fraction'), 2)} | "
                     f"{'ok' if r.get('check_ok') else r.get('error', 'FAIL')} {_fmt(r.get('check_err'), 1) if 'check_err' in r else ''} |")
        L.append("")
        seen = set()
        for r in kb:
            cl = r.get("cluster_used")
            if cl and r.get("kernel") not in seen:
                seen.add(r["kernel"])
                L.append(f"- {r['kernel']}: thread-block cluster sizes the launches used: "
                         + ", ".join(f"{b} {v.get('cluster', '?')}" for b, v in cl.items()))
        if seen:
            L.append("")
    th = res.get("throughput", {})
    if th:
        L += [f"## Candidates per second (batch {th.get('batch')}, same card, same run)", "",
              "Measured rates; the last column is an extrapolation of that rate, not a "
              "measurement. OOM retries are timed apart and not in the rates.", "",
              "| what | cand/s (measured) | measured on | vs per-model loop | OOM retries | "
              "all 15,625 cells (s, EXTRAPOLATED) |",
              "|---|---:|---|---:|---:|---:|"]
        for key, v in th.items():
            if not isinstance(v, dict) or "cands_per_s" not in v:
                continue
            main = v.get("main", v)
            n_oom = len(main.get("oom_retries", []))
            oom = f"{n_oom} ({_fmt(main.get('oom_s'), 1)} s)" if n_oom else "0"
            L.append(f"| {key} | {_fmt(v['cands_per_s'])} | {v.get('rate_from', v.get('cells', '-'))} | "
                     f"{_fmt(v.get('vs_loop_x'), 0)} | {oom} | "
                     f"{_fmt(v.get('all_cells_s_extrapolated', NB201_CELLS / v['cands_per_s']))} |")
        L.append("")
        mem = [(key, m) for key, v in th.items() if isinstance(v, dict)
               for m in v.get("main", {}).get("memory", [])]
        if mem:
            L += ["### Peak GPU memory per chunk vs the memory model", "",
                  "| what | K | measured GB | predicted GB | predicted / measured |",
                  "|---|---:|---:|---:|---:|"]
            for key, m in mem:
                L.append(f"| {key} | {m['k']} | {m['peak_bytes'] / 1e9:.2f} | "
                         f"{m['predicted_bytes'] / 1e9:.2f} | {_fmt(m.get('predicted_over_measured'), 2)} |")
            L.append("")
    fr = res.get("full_runs", {})
    if fr:
        L += ["## All 15,625 NB201 cells", ""]
        for tag, v in fr.items():
            if isinstance(v, dict) and v.get("ran"):
                oom = (f", plus {v['oom_retries']} OOM retries taking {_fmt(v.get('oom_s'))} s"
                       if v.get("oom_retries") else "")
                L.append(f"- {tag}: measured {_fmt(v['total_s'])} s ({v.get('backend')}, chunk "
                         f"{v.get('chunk')}{oom}), {v.get('nan_or_inf')} NaN/inf values")
            elif isinstance(v, dict):
                L.append(f"- {tag}: NOT measured ({v.get('why') or v.get('skipped') or v.get('error')}); "
                         f"an extrapolation of the measured rate gives {_fmt(v.get('extrapolated_s'))} s")
        L.append("")
    wb = res.get("work_bound", {})
    if wb and "flops_per_cand" in wb:
        L += ["## Work bound of one packed six-proxy pass (per candidate)", "",
              (f"- FLOPs {wb['flops_per_cand'] / 1e9:.1f} GFLOP; minimum bytes "
              f"{wb['min_bytes_per_cand'] / 1e6:.0f} MB ({wb['method']})"),
              (f"- floor (fp32, no TF32): {_fmt(wb.get('floor_s_per_cand_fp32', float('nan')) * 1e3, 2)} ms "
              f"({wb.get('bound')}-bound); all cells >= {_fmt(wb.get('floor_all_cells_s_fp32'))} s "
              f"(TF32: {_fmt(wb.get('floor_all_cells_s_tf32'))} s); measured gap "
              f"{_fmt(wb.get('gap_x'), 1)}x"), ""]
    pr = res.get("profile", {})
    if pr.get("top"):
        L += [(f"## Top kernels of one packed six-proxy pass ({pr['cells']} cells, "
              f"{_fmt(pr['total_ms'])} ms)"), "", "| kernel | ms | share | calls |", "|---|---:|---:|---:|"]
        for r in pr["top"]:
            L.append(f"| {r['name']} | {_fmt(r['ms'], 2)} | {_fmt(r['share'] * 100, 0)}% | {r['calls']} |")
        L.append("")
    L += ["## Targets", ""]
    for k, v in res.get("targets_check", {}).items():
        L.append(f"- {k}: {v}")
    errs = [k for k, v in res.items() if isinstance(v, dict) and ("error" in v or "skipped" in v)]
    if errs:
        L += ["", "Phases that failed or were skipped: " + ", ".join(errs)]
    return "\n".join(L) + "\n"


def targets_check(res: dict) -> dict:
    """One line per target. Only measurements get a verdict (MET / MISSED); an extrapolated
    total is labelled as such, with what it was extrapolated from, and gets none."""
    out = {}
    th = res.get("throughput", {})
    fr = res.get("full_runs", {})

    def best(prefix):
        vals = [(v["cands_per_s"], k) for k, v in th.items() if k.startswith(prefix)
                and isinstance(v, dict) and "cands_per_s" in v and not k.endswith("_tf32")]
        return max(vals) if vals else (None, None)

    for tag, key, limit in (("six", "six_all_cells_s", TARGETS["six_all_cells_s"]),
                            ("synflow", "synflow_all_cells_s", TARGETS["synflow_all_cells_s"])):
        f = fr.get(tag, {}) if isinstance(fr.get(tag), dict) else {}
        if f.get("ran"):
            t = f["total_s"]
            oom = f" + {f['oom_s']:.1f} s of OOM retries" if f.get("oom_s") else ""
            out[key] = (f"{t:.1f} s measured on all {f.get('cells', NB201_CELLS)} cells{oom} "
                        f"({f.get('backend')}) vs target <= {limit:.0f} s: "
                        + ("MET" if t <= limit else f"MISSED by {t / limit:.1f}x"))
            continue
        rate, which = best(f"packed_{tag}_")
        if rate is None:
            out[key] = "not measured"
            continue
        src = th[which].get("rate_from", f"{rate:.1f} cand/s")
        out[key] = (f"not measured: extrapolated {NB201_CELLS / rate:.1f} s from {src} ({which}); "
                    f"target <= {limit:.0f} s, no verdict on an extrapolation")
    for tag in ("six", "synflow"):
        rate, which = best(f"packed_{tag}_")
        if rate and which:
            x = th[which].get("vs_loop_x")
            out[f"packed_vs_loop_{tag}"] = (f"{x:.0f}x measured ({which} vs the per-model loop, "
                                            "same run) vs target >= 100x: "
                                            + ("MET" if x >= 100 else f"MISSED by {100 / x:.1f}x"))
    for r in res.get("kernels", {}).get("rows", []):
        if "copy_fraction" in r and r["backend"] in ("cuda", "triton"):  # not the variants
            ok = r["copy_fraction"] >= TARGETS["kernel_copy_fraction"]
            out[f"bw_{r['kernel']}_{r['backend']}"] = (f"{r['copy_fraction'] * 100:.0f}% of copy: "
                                                       + ("MET" if ok else "MISSED"))
    return out


def short_table(res: dict) -> str:
    env = res.get("environment", {})
    lines = ["", "=" * 78, f"zcfast device benchmark: {env.get('card')}  git {env.get('git_sha')}",
             "-" * 78]
    for k, v in res.get("status", {}).items():
        lines.append(f"{k}: {v}")
    if res.get("error"):
        lines.append(f"results: {res['error']}")
    ce = res.get("ceilings", {})
    if "copy_GBps" in ce:
        lines.append(f"copy {ce['copy_GBps']:.0f} GB/s | fp32 {_fmt(ce.get('fp32_TFLOPs'))} TF/s | "
                     f"tf32 {_fmt(ce.get('tf32_TFLOPs'))} TF/s")
    for r in res.get("kernels", {}).get("rows", []):
        if "kernel" in r:
            lines.append(f"{r['kernel']:28s} {r['backend']:6s} {_fmt(r.get('GBps'), 0):>7s} GB/s "
                         f"{_fmt(r.get('copy_fraction', float('nan')) * 100, 0):>4s}% "
                         f"{'ok' if r.get('check_ok') else 'CHECK FAILED'}")
    th = res.get("throughput", {})
    for k, v in th.items():
        if isinstance(v, dict) and "cands_per_s" in v:
            lines.append(f"{k:28s} {v['cands_per_s']:10.1f} cand/s  "
                         + (f"{v['vs_loop_x']:6.0f}x loop  " if v.get("vs_loop_x") else "")
                         + f"all cells ~{v.get('all_cells_s_extrapolated', NB201_CELLS / v['cands_per_s']):.1f} s"
                         + " (extrapolated)")
    lines.append("-" * 78)
    for k, v in res.get("targets_check", {}).items():
        if not k.startswith("bw_"):
            lines.append(f"{k}: {v}")
    bw = [v for k, v in res.get("targets_check", {}).items() if k.startswith("bw_")]
    if bw:
        lines.append(f"kernel bandwidth >= 60% of copy: {sum(v.endswith('MET') for v in bw)}/{len(bw)} met")
    lines.append("=" * 78)
    return "\n".join(lines)


def _write(res: dict, out_dir: Path, stem: str) -> None:
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    (out_dir / f"{stem}.md").write_text(markdown(res))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="results folder (default $OUT or bench/results/device)")
    ap.add_argument("--budget-s", type=float, default=270.0, help="wall-clock budget of the benchmark")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run of the script's logic")
    ap.add_argument("--full", choices=("auto", "yes", "no"), default="auto",
                    help="score all 15,625 cells for real (auto: when it fits the budget)")
    ap.add_argument("--no-tf32-row", action="store_true", help="skip the TF32 side measurement")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: "
                    "ceilings,kernels,throughput,full,work,profile")
    ap.add_argument("--status-file", default=None,
                    help="text file of 'phase: status' lines (build, tests) to embed in the results")
    ap.add_argument("--no-table", action="store_true", help="do not print the short table at the end")
    ap.add_argument("--report", default=None, metavar="JSON",
                    help="print the short table of an existing results file (and --status-file) and exit")
    args = ap.parse_args(argv)
    status = {}
    if args.status_file and Path(args.status_file).exists():
        for line in Path(args.status_file).read_text().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                status[k.strip()] = v.strip()
    if args.report:
        rp = Path(args.report)
        try:
            res = json.loads(rp.read_text())
        except (OSError, ValueError) as e:
            res = {"environment": {"card": "?"}, "error": f"no results: {e}"}
        res["status"] = {**res.get("status", {}), **status}
        if "error" not in res:  # keep the results file complete (build, tests, bench, total)
            _write(res, rp.parent, rp.stem)
        print(short_table(res), flush=True)
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    budget = Budget(args.budget_s)
    smoke = args.cpu_smoke
    if smoke:
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("bench_device.py: no CUDA device (use --cpu-smoke to check the script)", file=sys.stderr)
        return 2
    else:
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = False
        # exact float32 (the equivalence invariant); TF32 gets its own side row
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    out_dir = Path(args.out or os.environ.get("OUT") or ROOT / "bench" / "results" / "device")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "device_smoke" if smoke else "device"

    res: dict = {"mode": "cpu-smoke (NOT a measurement)" if smoke else "gpu", "targets": TARGETS,
                 "budget_s": args.budget_s, "status": status}

    def save():  # after every phase: a run stopped from outside still leaves its results
        res["targets_check"] = targets_check(res)
        res["bench_s"] = round(time.perf_counter() - budget.t0, 1)
        _write(res, out_dir, stem)

    res["environment"] = environment(dev)
    log(f"device: {res['environment'].get('card')}, git {res['environment'].get('git_sha')}")
    save()
    if "ceilings" not in skip:
        guarded(res, "ceilings", budget, 15, lambda: ceilings(dev, smoke))
        save()
    ce = res.get("ceilings") or {}
    if "kernels" not in skip:
        guarded(res, "kernels", budget, 30,
                lambda: kernels_bandwidth(dev, smoke, ce.get("copy_GBps"), budget))
        save()
    if "throughput" not in skip:
        res["throughput"] = {}
        guarded(res, "throughput", budget, 60,
                lambda: throughput(dev, smoke, budget, not args.no_tf32_row, res["throughput"], save))
        save()
    thr = res.get("throughput") if isinstance(res.get("throughput"), dict) else {}
    if "full" not in skip and thr:
        guarded(res, "full_runs", budget, 15, lambda: full_runs(dev, smoke, budget, thr, args.full))
        save()
    if "work" not in skip:
        guarded(res, "work_bound", budget, 20, lambda: work_bound(dev, smoke, ce, thr or {}))
        save()
    if "profile" not in skip:
        guarded(res, "profile", budget, 20, lambda: profile_pass(dev, smoke, thr or {}))
    save()
    log(f"wrote {out_dir / (stem + '.json')} and {stem}.md")
    if not args.no_table:
        print(short_table(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
