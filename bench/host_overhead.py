"""Host overhead before and after, in one run: bench/results/host_overhead.{md,json}.

    flock /work/.compute.lock flock /work/.compute2.lock python bench/host_overhead.py

Runs bench/bench_host.py (the packed engine on the meta device, docs/performance.md) twice in
one session, on one machine: once on the engine of ``--before`` (a git revision: its
``zcfast/`` exported to a temporary folder, with HEAD's ``zcfast/ops`` and host probe laid over
it, because measuring on the meta device needs the ops' meta backend), once on HEAD's (also
exported: edits made while it runs do not leak in); both with this install's compiled core. Writes host microseconds per candidate, ATen operators per
candidate and syncs per chunk for each proxy group and K, and the before/after ratios.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def export(ref: str, dest: str, overlay: str | None = None) -> None:
    """``ref``'s zcfast/ (committed files) with the compiled core of this install; with
    ``overlay`` (a revision), that revision's ops and host probe laid over it."""
    os.makedirs(dest)
    arch = subprocess.run(["git", "archive", ref, "zcfast"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=arch, check=True)
    if overlay:
        for path in ("zcfast/ops", "zcfast/batched/hostprobe.py"):
            arch = subprocess.run(["git", "archive", overlay, path], cwd=ROOT, check=True,
                                  capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", dest], input=arch, check=True)
    import importlib.util

    spec = importlib.util.find_spec("zcfast")  # located, not imported
    for so in glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")):
        shutil.copy(so, os.path.join(dest, "zcfast"))


def run_bench(pythonpath: str | None, args, out_json: str, script: str) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, script, "--k", args.k, "--groups", args.groups,
           "--repeat", str(args.repeat), "--accumulation", args.accumulation, "--out", out_json]
    # run outside the checkout (python -c puts the working directory first on sys.path)
    cwd = os.path.dirname(out_json)
    where = subprocess.run([sys.executable, "-c", "import zcfast; print(zcfast.__file__)"],
                           env=env, check=True, capture_output=True, text=True,
                           cwd=cwd).stdout.strip()
    print(f"zcfast from {where}", flush=True)
    if pythonpath and not where.startswith(pythonpath):
        raise RuntimeError(f"the exported tree {pythonpath} is not the zcfast imported ({where})")
    subprocess.run(cmd, env=env, check=True, cwd=cwd)
    with open(out_json) as f:
        res = json.load(f)
    res["zcfast_from"] = where
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default="9c0b1b6", help="git revision of the 'before' engine")
    ap.add_argument("--k", default="64,256,1024")
    ap.add_argument("--groups", default="synflow,one_backward,grasp,jacob_cov,nwot,paper,suite")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--accumulation", choices=("gpu", "cpu"), default="gpu",
                    help="node sums as a GPU runs them (ordered rounds, default) or as the CPU "
                         "does (index_add_); bench/bench_host.py")
    ap.add_argument("--out", default=None,
                    help="output path without extension (default bench/results/host_overhead, "
                         "or host_overhead_counts with --counts-only)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the .md from the .json of --out (no measuring)")
    ap.add_argument("--counts-only", action="store_true",
                    help="operators and syncs only (deterministic; no lock needed for short runs): "
                         "no timing columns")
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = os.path.join(ROOT, "bench", "results",
                             "host_overhead_counts" if a.counts_only else "host_overhead")
    if a.counts_only:
        a.repeat = 1
    if a.report_only:
        with open(a.out + ".json") as f:
            d = json.load(f)
        if a.counts_only:
            write_counts(a, d["meta"], d["before"], d["after"], d["meta"]["before"])
        else:
            write_timed(a, d["meta"], d["before"], d["after"], d["meta"]["before"])
        return 0
    before_sha = git("rev-parse", "--short", a.before)
    after_sha = git("rev-parse", "--short", "HEAD")
    with tempfile.TemporaryDirectory() as tmp:
        # both from commits (edits made while this runs do not leak in)
        export(a.before, os.path.join(tmp, "before"), overlay=after_sha)
        export(after_sha, os.path.join(tmp, "after"))
        script = os.path.join(tmp, "bench_host.py")
        with open(script, "w") as f:
            f.write(git("show", f"{after_sha}:bench/bench_host.py"))
        before = run_bench(os.path.join(tmp, "before"), a, os.path.join(tmp, "before.json"), script)
        after = run_bench(os.path.join(tmp, "after"), a, os.path.join(tmp, "after.json"), script)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_model(), "torch": __import__("torch").__version__,
            "before": before_sha, "after": after_sha, "repeat": a.repeat,
            "command": "python bench/host_overhead.py " + " ".join(argv or sys.argv[1:])}
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "before": before, "after": after}, f, indent=1)
    if a.counts_only:
        write_counts(a, meta, before, after, before_sha)
        return 0
    write_timed(a, meta, before, after, before_sha)
    return 0


def _ops(r: dict) -> str:
    """Operators per candidate, with the view operators among them (no kernel on a GPU) where
    the run counted them."""
    v = r.get("view_ops_per_candidate")
    return f"{r['ops_per_candidate']:.1f}" + ("" if v is None else f" ({v:.1f} v)")


def _work(r: dict) -> str:
    # work = own time less one probe call per operator, clamped at 0: a 0 means the call cost
    # estimate exceeded the measured own time (noise), not that the work was nil
    w = r["work_us_per_candidate"]
    return f"{w:.1f}" if w > 0 else "n/a"


def _accumulation(r: dict) -> str:
    # runs made before the option measured the CPU's index_add_ on the meta device
    if r.get("accumulation", "cpu") == "gpu":
        return ("Node sums as a GPU runs them (the ordered rounds of zcfast/batched/ordered.py, "
                "`--accumulation gpu`).")
    return "Node sums as the CPU runs them (index_add_, `--accumulation cpu`)."


def write_timed(a, meta, before, after, before_sha) -> None:
    lines = [
        "# Host overhead of the packed engine (meta device)",
        "",
        f"Measured {meta['date']} on {meta['cpu']} (1 thread), torch {meta['torch']}; before = "
        f"engine of {before_sha} (with this tree's ops, for their meta backend), after = "
        f"{meta['after']}. Command: `{meta['command'].strip()}` (holding both compute locks). "
        f"Batch {after['batch']}, {after['input_size']}x{after['input_size']} inputs, "
        f"median of {meta.get('repeat', 3)} chunks of random NB201 cells. {_accumulation(after)} "
        "Method: docs/performance.md.",
        "",
        "work us/cand: host time per candidate of one chunk outside the operators (plan, weight "
        "init, Python of every pass, the autograd engine, the final fetch), less one operator "
        f"call per operator ({after['call_us_per_op']:.1f} us before the operator, measured in "
        "the same run); host us/cand = work + ops/cand x "
        f"{after['us_per_op_assumed']:.0f} us, an assumed GPU dispatch+launch cost per operator "
        "(an estimate, not a measurement); `n/a`: the work came out at or below 0 (the "
        "call-cost estimate exceeded the measured own time: noise, not nil work), and the host "
        "estimate then counts the operators alone. ops/cand: ATen operators per candidate, "
        "`(x v)`: of which x are views (no kernel launched on a GPU; the host estimate still "
        "charges them the full assumed cost). "
        "syncs/chunk: device-to-host transfers + host-to-device copies (PyTorch synchronises "
        "the stream around both on a GPU); d2h and h2d listed apart. Syncs inside library calls "
        "(eigvalsh's result check) are not visible on the meta device.",
        "",
        "| group | K | work us/cand before | after | ratio | host us/cand (est.) before | after "
        "| ratio | ops/cand before | after | syncs/chunk before (d2h+h2d) | after (d2h+h2d) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for g, rb in before["groups"].items():
        ra = after["groups"][g]
        for k in rb:
            b, c = rb[k], ra[k]
            ratio = b["host_us_per_candidate"] / max(c["host_us_per_candidate"], 1e-9)
            wb, wc = b["work_us_per_candidate"], c["work_us_per_candidate"]
            wr = f"{wb / wc:.1f}x" if wb > 0 and wc > 0 else "n/a"
            lines.append(
                f"| {g} | {k} | {_work(b)} | {_work(c)} "
                f"| {wr} | {b['host_us_per_candidate']:.1f} | {c['host_us_per_candidate']:.1f} "
                f"| {ratio:.1f}x | {_ops(b)} | {_ops(c)} "
                f"| {b['syncs_per_chunk']} ({b['d2h_syncs_per_chunk']}+{b['h2d_copies_per_chunk']}) "
                f"| {c['syncs_per_chunk']} ({c['d2h_syncs_per_chunk']}+{c['h2d_copies_per_chunk']}) |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_counts(a, meta, before, after, before_sha) -> None:
    lines = [
        "# Operators and syncs per chunk of the packed engine (meta device)",
        "",
        f"Counted {meta['date']} (torch {meta['torch']}); before = engine of {before_sha} (with "
        f"this tree's ops, for their meta backend), after = {meta['after']}. Command: "
        f"`{meta['command'].strip()}`. Batch {after['batch']}, {after['input_size']}x"
        f"{after['input_size']} inputs, one chunk of random NB201 cells per (group, K). Counts "
        "are deterministic for given cells; no timing here (bench/results/host_overhead.md has "
        f"the timed run). {_accumulation(after)} "
        "ops/cand: ATen operators dispatched per candidate (plan, weight init, "
        "every pass of the group; `(x v)`: of which x are views, which launch no kernel on a "
        "GPU); syncs/chunk: device-to-host transfers + host-to-device "
        "copies. Method: docs/performance.md.",
        "",
        "| group | K | ops/cand before | after | ratio | syncs/chunk before (d2h+h2d) "
        "| after (d2h+h2d) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for g, rb in before["groups"].items():
        ra = after["groups"][g]
        for k in rb:
            b, c = rb[k], ra[k]
            lines.append(
                f"| {g} | {k} | {_ops(b)} | {_ops(c)} | "
                f"{b['ops_per_candidate'] / c['ops_per_candidate']:.1f}x "
                f"| {b['syncs_per_chunk']} ({b['d2h_syncs_per_chunk']}+{b['h2d_copies_per_chunk']}) "
                f"| {c['syncs_per_chunk']} ({c['d2h_syncs_per_chunk']}+{c['h2d_copies_per_chunk']}) |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
