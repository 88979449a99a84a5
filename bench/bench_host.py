"""Host cost of the packed engine per candidate, without a GPU (docs/performance.md).

    python bench/bench_host.py --k 1024 --json

Runs the NB201 packed engine (plan, weight initialisation and every pass of a proxy group) on
PyTorch's ``meta`` device under zcfast.batched.hostprobe.HostProbe: every operator is
dispatched, nothing is computed, so the time is the host's alone. For each proxy group and K it
reports the host time per candidate, the operators dispatched per candidate, and the
device-to-host syncs and host-to-device copies per chunk (on a GPU both stall the host: PyTorch
synchronises the stream around a copy between pageable host memory and the device).

Time. Meta kernels are not GPU launches: many run as Python reference implementations and
cost far more than a launch. The probe therefore times the operators apart (HostProbe.inside_s)
and reports ``own_us``: the host time per candidate outside the operators (Python, numpy, plan
building, the autograd engine's bookkeeping, and the cost of each operator call up to the
probe), measured. ``work_us`` is own_us less the calls: ops per candidate x the cost of one
call, measured in the same run on a loop of small meta operators. The host time a GPU would
see adds one dispatch and launch per operator instead; ``host_us`` = work_us + ops per
candidate x ``--us-per-op`` (default 5 us, an assumed eager CUDA dispatch+launch cost, not
measured here: ``--device cuda`` on a GPU runs the chunks for real, with wall time, the real
transfers and ``torch.cuda.set_sync_debug_mode`` warnings). ``view_ops_per_candidate``: of the
operators, those whose output is a view (HostProbe.views): they launch no kernel on a GPU, so
``host_us``, which charges every operator the assumed cost, overstates a GPU's host time by up
to that many launches. ``wall_us`` is the plain wall time (on the meta device, or on the GPU
with ``--device cuda``). All per candidate, the median of ``--repeat`` chunks. The last line
printed with ``--json`` is one JSON object: {group: {"host_us_per_candidate",
"syncs_per_chunk", ...}} at the largest K.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

GROUPS = {
    "synflow": ("synflow",),
    "one_backward": ("grad_norm", "snip", "plain", "fisher"),
    "grasp": ("grasp",),
    "jacob_cov": ("jacob_cov",),
    "nwot": ("nwot",),
    "paper": ("grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow"),
    "suite": ("grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot",
              "params", "flops"),
}


def call_cost_per_op(n: int = 1000) -> float:
    """Seconds one operator costs outside the operator itself under the probe (the Python or
    C++ call, wrapping its arguments for the probe, entering the probe, the autograd engine's
    step when it runs in a backward), from a chain of n small meta multiplications, its
    forward and its backward: the part of ``own`` that every dispatched operator brings, which
    ``host_us`` replaces with the assumed per-operator GPU cost."""
    import torch

    from zcfast.batched.hostprobe import HostProbe

    best = float("inf")
    for _ in range(3):
        a = torch.empty(64, 16, device="meta", requires_grad=True)
        gc.collect()
        gc.disable()  # as in run_chunk
        try:
            with HostProbe() as probe:
                t0 = time.perf_counter()
                h = a
                for _ in range(n):
                    h = h * 1.0001
                torch.autograd.grad(h.sum(), a)
                dt = time.perf_counter() - t0
        finally:
            gc.enable()
        best = min(best, (dt - probe.inside_s) / probe.ops)
    return max(0.0, best)


def run_chunk(codes, proxies, batch: int, input_size: int, ncls: int, device: str = "meta",
              accumulation: str = "gpu"):
    """One chunk as iter_packed_space runs it: build the packed model, compute the proxies.
    Returns (seconds, probe, sync warnings). On ``meta`` nothing is computed; on ``cuda`` the
    chunk really runs (wall time includes the GPU, the stream is synchronised before and after),
    the probe counts the real transfers and ``torch.cuda.set_sync_debug_mode`` counts every
    synchronising call, including those inside libraries. ``accumulation`` (meta only): the
    node sums a GPU runs (``gpu``: the ordered rounds, PackedNB201.ordered_accumulation) or the
    CPU's index_add_ (``cpu``); on ``cuda`` the engine's own default (ordered) runs. An engine
    from before the plan built the rounds on the host (e.g. 9c0b1b6, host_overhead.py's default
    "before") builds them from the device index under ``gpu``: a sync per round, as it would
    have done on a GPU; the tables made before 2026-12-01 compared engines with ``cpu``."""
    import warnings

    import torch

    from zcfast.batched.engine import PackedNB201
    from zcfast.batched.hostprobe import HostProbe

    if device == "meta":
        x = torch.empty(batch, 3, input_size, input_size, device="meta")
        y = torch.empty(batch, dtype=torch.int64, device="meta")
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, input_size, input_size, generator=g).to(device)
        y = torch.randint(0, ncls, (batch,), generator=g).to(device)
        torch.cuda.synchronize()
    n_warn = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device != "meta":
            torch.cuda.set_sync_debug_mode("warn")
        # Python's cyclic garbage collector off while timing (as timeit does): a collection
        # triggered inside a chunk, of the earlier chunks' graphs, made single chunks 10-50x
        # slower at random; the previous chunk's garbage is collected before the clock starts
        gc.collect()
        gc.disable()
        try:
            with HostProbe(device=torch.device(device).type) as probe:
                t0 = time.perf_counter()
                eng = PackedNB201(codes, ncls, device=device, input_size=input_size)
                if device == "meta":
                    if not hasattr(eng, "ordered_accumulation"):  # an engine from before it
                        raise SystemExit("--accumulation: this engine has no ordered node sums; "
                                         "measure it with --accumulation cpu")
                    eng.ordered_accumulation = accumulation == "gpu"
                eng.compute(x, y, proxies)
                if device != "meta":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
        finally:
            gc.enable()
            if device != "meta":
                torch.cuda.set_sync_debug_mode(0)
        n_warn = sum("synchroniz" in str(w.message) for w in caught)
    return dt, probe, n_warn


def measure(groups, ks, *, repeat: int, batch: int, input_size: int, seed: int = 0,
            us_per_op: float = 5.0, device: str = "meta", accumulation: str = "gpu") -> dict:
    import numpy as np
    import torch

    from zcfast.spaces import nb201

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    calls = [call_cost_per_op()]
    out = {"device": device, "us_per_op_assumed": us_per_op,
           "batch": batch, "input_size": input_size,
           "accumulation": accumulation if device == "meta" else "gpu", "groups": {}}
    for g in groups:
        proxies = GROUPS[g]
        res = {}
        for k in ks:
            run_chunk([nb201.code_of_index(0)], proxies, batch, input_size, 10, device,
                      accumulation)  # warm-up
            walls, owns, works, probe = [], [], [], None
            for _ in range(repeat):
                codes = [nb201.code_of_index(int(i)) for i in rng.integers(0, 15625, size=k)]
                # the call cost measured next to each chunk: this machine's speed drifts by
                # 20-30% within minutes (a shared VM), and the work is a difference of the two
                calls.append(call_cost_per_op())
                dt, probe, n_warn = run_chunk(codes, proxies, batch, input_size, 10, device,
                                              accumulation)
                walls.append(dt)
                owns.append(dt - probe.inside_s)
                works.append(owns[-1] - calls[-1] * probe.ops)
            own = statistics.median(owns) / k * 1e6
            work = max(0.0, statistics.median(works) / k * 1e6)  # the engine's own host work
            res[k] = {
                "host_us_per_candidate": work + us_per_op * probe.ops / k,
                "work_us_per_candidate": work,
                "own_us_per_candidate": own,
                "wall_us_per_candidate": statistics.median(walls) / k * 1e6,
                "ops_per_candidate": probe.ops / k,
                "view_ops_per_candidate": probe.views / k,
                "d2h_syncs_per_chunk": probe.d2h,
                "h2d_copies_per_chunk": probe.h2d,
                "syncs_per_chunk": probe.d2h + probe.h2d,
                **({"cuda_sync_warnings_per_chunk": n_warn} if device != "meta" else {}),
            }
            print(f"{g:>13} K={k:5d}: {res[k]['host_us_per_candidate']:8.1f} us/cand "
                  f"(own {res[k]['own_us_per_candidate']:8.1f}, wall "
                  f"{res[k]['wall_us_per_candidate']:8.1f}), "
                  f"{res[k]['ops_per_candidate']:7.1f} ops/cand "
                  f"({res[k]['view_ops_per_candidate']:.1f} views), "
                  f"d2h {probe.d2h}, h2d {probe.h2d}",
                  flush=True)
        out["groups"][g] = res
    out["call_us_per_op"] = statistics.median(calls) * 1e6
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", default="1024", help="candidates per chunk, comma list (e.g. 64,256,1024)")
    ap.add_argument("--groups", default="synflow,paper",
                    help=f"proxy groups, comma list of {sorted(GROUPS)}")
    ap.add_argument("--repeat", type=int, default=5, help="chunks timed per (group, K); median")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--us-per-op", type=float, default=5.0,
                    help="assumed host cost of one operator dispatch+launch on a GPU (us)")
    ap.add_argument("--device", default="meta",
                    help="meta (host cost without a GPU, default) or cuda[:N] (the chunk really "
                         "runs: wall time per candidate, real transfers, sync-debug warnings)")
    ap.add_argument("--accumulation", choices=("gpu", "cpu"), default="gpu",
                    help="node sums on the meta device: as a GPU runs them (ordered rounds, "
                         "default) or as the CPU does (index_add_)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--out", help="also write the full result as JSON to this file")
    a = ap.parse_args(argv)
    try:
        ks = [int(k) for k in a.k.split(",")]
    except ValueError:
        ap.error(f"--k must be a comma list of integers, got {a.k!r}")
    if any(k < 1 for k in ks):
        ap.error(f"--k values must be positive, got {a.k!r}")
    groups = [g.strip() for g in a.groups.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown group(s) {bad}: choose from {sorted(GROUPS)}")
    if a.repeat < 1:
        ap.error(f"--repeat must be positive, got {a.repeat}")
    if a.us_per_op < 0:
        ap.error(f"--us-per-op must be non-negative, got {a.us_per_op}")
    if a.device != "meta":
        import torch

        if not a.device.startswith("cuda") or not torch.cuda.is_available():
            ap.error(f"--device {a.device!r}: expected meta, or cuda[:N] on a machine with a GPU")
    res = measure(groups, ks, repeat=a.repeat, batch=a.batch, input_size=a.input_size,
                  us_per_op=a.us_per_op, device=a.device, accumulation=a.accumulation)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    if a.json:
        kmax = max(ks)
        print(json.dumps({g: {k: v for k, v in r[kmax].items()} | {"k": kmax}
                          for g, r in res["groups"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
