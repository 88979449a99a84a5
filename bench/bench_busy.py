"""How much slower does zcfast score on a busy machine, and does it get its share?

Question: seconds per cell of a representative scoring job (the demo's: CIFAR-10 networks,
proxies paper,nwot,params,flops, batch 64, packed engine with its automatic chunk) when it runs

- alone,
- next to a second zcfast process running the same kind of job (endlessly, on other cells),
- next to a plain torch matmul loop (1024x1024 float32, torch's default threads and OpenMP
  settings: another user's job as it would usually run).

On a machine with C cores, a job that shares it fairly with one CPU-bound neighbour should take at
most about twice as long as alone; much more than that means threads waste the CPU (spin-waiting,
oversubscription). The neighbour's own rate is recorded too: a fair zcfast must not starve it.

Each scenario runs for each *configuration* of how zcfast sets up its threads:

- ``before``: what zcfast did before it chose thread settings itself: torch imported with no
  OpenMP environment (GNU OpenMP's default wait policy, which spins before sleeping) and torch's
  default thread count (one per core).
- ``after``: zcfast's own defaults (``zcfast.runtime``), exactly as ``zcfast score`` applies them.
- diagnostic configurations that change one knob at a time (``--configs`` lists them).

Every measurement records how much CPU *other* processes used during it (from /proc/stat minus
this benchmark's own processes), so a result polluted by someone else's job shows as such.
Run it holding both of the machine's compute locks (a timing), on an otherwise idle machine:

    flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 python bench/bench_busy.py  # ~15-25 min
    python bench/bench_busy.py --quick                                          # ~3 min, smoke

Writes bench/results/busy_cpu.{json,md} (git SHA, CPU, date, load before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATASET = "cifar10"
PROXIES = "paper,nwot,params,flops"  # the demo's (Makefile 'demo')
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OMP_PROC_BIND", "OMP_DYNAMIC", "ZCFAST_THREADS")

# name -> (how torch is set up, environment added on top of a clean OpenMP environment)
#   "torch-first": import torch before zcfast, so zcfast cannot choose the OpenMP wait policy
#   "zcfast": import zcfast first and apply zcfast.runtime's defaults, as 'zcfast score' does
# threads: None = leave torch's count as it comes; an int = torch.set_num_threads(int)
CONFIGS = {
    "before": {"setup": "torch-first", "threads": None, "env": {}},
    "after": {"setup": "zcfast", "threads": None, "env": {}},
    "1-thread": {"setup": "torch-first", "threads": 1, "env": {}},
    "passive": {"setup": "torch-first", "threads": None, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "short-spin": {"setup": "torch-first", "threads": None, "env": {"GOMP_SPINCOUNT": "10000"}},
}
SCENARIOS = ("alone", "zcfast", "matmul")


# ---------------------------------------------------------------------------- worker side
def _setup(config: str):
    c = CONFIGS[config]
    if c["setup"] == "zcfast":
        from zcfast import runtime

        runtime.set_threads(None)
    else:
        import torch

        if c["threads"] is not None:
            torch.set_num_threads(c["threads"])
        import zcfast  # noqa: F401  (after torch: too late to change OpenMP's wait policy)
    import torch

    return torch.get_num_threads()


def _cells(n: int, seed: int) -> list:
    from zcfast.spaces import nb201

    return [int(i) for i in nb201.sample(n, seed)]


def worker_measure(a) -> None:
    """Score ``warm`` cells untimed, then ``cells`` timed ones, the demo's way."""
    threads = _setup(a.config)
    from zcfast.scoring import score_to_file

    cells = _cells(a.warm + a.cells, 0)  # the demo's cells (--archs 200 --seed 0 draws a prefix)
    with tempfile.TemporaryDirectory() as d:
        kw = dict(proxies=PROXIES, dataset=DATASET, seed=0, progress=False)
        score_to_file(f"{d}/warm.csv", archs=cells[: a.warm], **kw)
        Path(a.ready).touch()  # the parent starts the clock of the foreign-CPU check here
        res = score_to_file(f"{d}/timed.csv", archs=cells[a.warm:], **kw)
    json.dump({"threads": threads, "seconds": res["seconds"], "cells": res["scored"],
               "s_per_cell": res["seconds"] / res["scored"]}, open(a.out, "w"))


def _stop_on_term(state: dict):
    def handler(signum, frame):
        state["stop"] = True

    signal.signal(signal.SIGTERM, handler)


def worker_zcfast(a) -> None:
    """Score other cells endlessly (chunk by chunk) until SIGTERM; report cells/s."""
    state = {"stop": False}
    _stop_on_term(state)
    threads = _setup(a.config)
    from zcfast.batched import iter_packed
    from zcfast.data import image_source

    x, y = image_source(DATASET).minibatch(64, 0)
    names = PROXIES.replace("paper", "grad_norm,snip,grasp,fisher,jacob_cov,synflow").split(",")
    cells = _cells(400, 1)
    Path(a.ready).touch()
    done, t0 = 0, time.perf_counter()
    while not state["stop"]:
        at = done % len(cells)  # cells wrap around
        for part, _ in iter_packed(cells[at : at + 2], names, x, y, ncls=10):
            done += len(part)
    dt = time.perf_counter() - t0
    json.dump({"threads": threads, "cells": done, "seconds": dt, "rate": done / dt,
               "unit": "cells/s"}, open(a.out, "w"))


def worker_matmul(a) -> None:
    """A plain torch job: 1024x1024 float32 matmuls with torch's defaults, until SIGTERM."""
    state = {"stop": False}
    _stop_on_term(state)
    import torch

    torch.manual_seed(0)
    m1, m2 = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        m1 @ m2
    Path(a.ready).touch()
    n, t0 = 0, time.perf_counter()
    while not state["stop"] and (a.seconds <= 0 or time.perf_counter() - t0 < a.seconds):
        m1 @ m2
        n += 1
    dt = time.perf_counter() - t0
    json.dump({"threads": torch.get_num_threads(), "matmuls": n, "seconds": dt, "rate": n / dt,
               "unit": "matmuls/s"}, open(a.out, "w"))


# ---------------------------------------------------------------------------- parent side
_SRC = {"root": ROOT, "script": Path(__file__).resolve()}


def snapshot(dest: Path) -> None:
    """Workers import a copy of the code as it is now, so edits during a long run change
    nothing."""
    import shutil

    shutil.copytree(ROOT / "zcfast", dest / "zcfast", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", dest / "zcfast" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(__file__, dest / "bench_busy.py")
    _SRC.update(root=dest, script=dest / "bench_busy.py")


def _env(config: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    if config is not None:
        env.update(CONFIGS[config]["env"])
    env["PYTHONPATH"] = str(_SRC["root"]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spawn(role: str, config: str | None, tmp: Path, tag: str, extra=()) -> tuple:
    out, ready = tmp / f"{tag}.json", tmp / f"{tag}.ready"
    cmd = [sys.executable, str(_SRC["script"]), "--worker", role, "--out", str(out), "--ready", str(ready),
           *extra]
    if config is not None:
        cmd += ["--config", config]
    p = subprocess.Popen(cmd, env=_env(config if role != "matmul" else None))
    return p, out, ready


def _wait_ready(p, ready: Path, timeout: float = 600) -> None:
    t0 = time.time()
    while not ready.exists():
        if p.poll() is not None:
            raise RuntimeError(f"worker {p.args} exited with {p.returncode} before it was ready")
        if time.time() - t0 > timeout:
            raise RuntimeError(f"worker {p.args} not ready after {timeout} s")
        time.sleep(0.05)


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait


def _tree_jiffies(pids) -> int:
    """utime+stime of the given processes (all their threads) and of their finished children."""
    tot = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read().rsplit(")", 1)[1].split()
            tot += sum(int(s[i]) for i in (11, 12, 13, 14))
        except OSError:
            pass
    return tot


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def top_snapshot() -> str:
    r = subprocess.run(["top", "-b", "-n", "1", "-o", "%CPU", "-w", "160"], capture_output=True,
                       text=True)
    return "\n".join(r.stdout.splitlines()[:14])


def foreign_cores(seconds: float = 3.0) -> float:
    """Cores busy on average over ``seconds`` (this benchmark runs nothing meanwhile)."""
    hz = os.sysconf("SC_CLK_TCK")
    b0, t0 = _busy_jiffies(), time.time()
    time.sleep(seconds)
    return (_busy_jiffies() - b0) / hz / (time.time() - t0)


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait until other processes use less than ``limit`` cores (checked over 3 s), at most
    ``max_wait`` seconds; returns the last reading."""
    t0 = time.time()
    while True:
        busy = foreign_cores()
        if busy < limit or time.time() - t0 > max_wait:
            return busy
        print(f"  waiting for a quiet machine (others use {busy:.2f} cores)", flush=True)
        time.sleep(20)


def measure(config: str, scenario: str, cells: int, tmp: Path) -> dict:
    """One measured job in one scenario; returns its s/cell, the neighbour's rate and the CPU
    that other processes used meanwhile."""
    hz = os.sysconf("SC_CLK_TCK")
    tag = f"{config}_{scenario}"
    neighbour = None
    if scenario == "zcfast":
        neighbour = _spawn("zcfast", config, tmp, tag + "_n")
    elif scenario == "matmul":
        neighbour = _spawn("matmul", None, tmp, tag + "_n")
    if neighbour:
        _wait_ready(neighbour[0], neighbour[2])
    m, m_out, m_ready = _spawn("measure", config, tmp, tag, ["--cells", str(cells)])
    _wait_ready(m, m_ready)
    pids = [m.pid] + ([neighbour[0].pid] if neighbour else [])
    b0, o0, t0 = _busy_jiffies(), _tree_jiffies(pids), time.time()
    # sample while it runs (the processes must still exist to be read)
    b1, o1 = b0, o0
    while m.poll() is None:
        b1, o1 = _busy_jiffies(), _tree_jiffies(pids)
        time.sleep(0.2)
    wall = time.time() - t0
    if m.returncode != 0:
        raise RuntimeError(f"measure worker {config}/{scenario} failed ({m.returncode})")
    res = json.loads(m_out.read_text())
    if neighbour:
        neighbour[0].send_signal(signal.SIGTERM)
        neighbour[0].wait(timeout=300)
        res["neighbour"] = json.loads(neighbour[1].read_text())
    foreign = max(0, (b1 - b0) - (o1 - o0)) / hz
    res.update({"config": config, "scenario": scenario, "wall_s": round(wall, 2),
                "foreign_cpu_s": round(foreign, 2),
                "foreign_cores": round(foreign / max(wall, 1e-9), 3)})
    return res


def matmul_alone(seconds: float, tmp: Path) -> dict:
    p, out, ready = _spawn("matmul", None, tmp, "matmul_alone", ["--seconds", str(seconds)])
    p.wait()
    return json.loads(out.read_text())


def write_markdown(doc: dict, path: Path) -> None:
    rows = doc["results"]
    alone = {r["config"]: r["s_per_cell"] for r in rows if r["scenario"] == "alone"}
    mm = doc["matmul_alone"]["rate"]
    lines = [
        "# zcfast on a busy machine: seconds per cell alone and next to another job",
        "",
        f"`bench/bench_busy.py`, git `{doc['git']}`, {doc['cpu']} ({doc['cores']} cores), torch "
        f"{doc['torch']}, {doc['date']}. Job: the demo's scoring ({DATASET}, proxies {PROXIES}, "
        f"batch 64, packed engine, automatic chunk), {doc['warm']} warm-up cells untimed, then "
        f"{doc['cells']} timed cells (the same cells in every row).",
        "",
        f"Machine state: {doc['machine_note']} Load average before: {doc['load_before']}, after: "
        f"{doc['load_after']}. 'foreign' is the CPU that processes other than this benchmark's "
        "used during a measurement (cores on average); near 0 means the numbers are clean.",
        "",
        "| config | scenario | threads | s/cell | x alone | neighbour rate | neighbour x its alone | foreign |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    z_alone = {r["config"]: r for r in rows if r["scenario"] == "alone"}
    for r in rows:
        nb, nbx = "", ""
        if "neighbour" in r:
            n = r["neighbour"]
            nb = f"{n['rate']:.2f} {n['unit']}"
            base = mm if n["unit"] == "matmuls/s" else (1 / z_alone[r["config"]]["s_per_cell"]
                                                       if r["config"] in z_alone else None)
            nbx = f"{n['rate'] / base:.2f}" if base else ""
        lines.append(
            f"| {r['config']} | {r['scenario']} | {r['threads']} | {r['s_per_cell']:.2f} | "
            f"{r['s_per_cell'] / alone[r['config']]:.1f} | {nb} | {nbx} | "
            f"{r['foreign_cores']:.2f} |")
    lines += [
        "",
        f"matmul loop alone: {mm:.2f} matmuls/s ({doc['matmul_alone']['threads']} threads).",
        "'x alone' is the job's s/cell divided by its own s/cell alone (same config): about 2 is a "
        "fair share of a 2-core machine next to one CPU-bound neighbour. 'neighbour x its alone' "
        "is the neighbour's rate divided by its rate alone (for the zcfast neighbour: 1/(s/cell "
        "alone) of the same config).",
        "",
        "Configurations: " + "; ".join(
            f"`{k}`: {v['setup']}, threads {v['threads'] or 'default'}, env {v['env'] or '{}'}"
            for k, v in CONFIGS.items() if k in doc["configs"]),
        "",
        "```",
        "top before:",
        doc["top_before"],
        "",
        "top after:",
        doc["top_after"],
        "```",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=["measure", "zcfast", "matmul"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--ready", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="after", choices=list(CONFIGS))
    ap.add_argument("--configs", default="before,after",
                    help=f"comma list of configurations to measure ({', '.join(CONFIGS)})")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--cells", type=int, default=6, help="timed cells per measurement")
    ap.add_argument("--warm", type=int, default=2, help="untimed warm-up cells")
    ap.add_argument("--quick", action="store_true", help="2 timed cells (smoke run)")
    ap.add_argument("--quiet", type=float, default=0.1,
                    help="most cores other processes may use during a measurement (else retried)")
    ap.add_argument("--retries", type=int, default=3, help="retries of a polluted measurement")
    ap.add_argument("--max-wait", type=float, default=1800,
                    help="seconds to wait for a quiet machine before measuring anyway")
    ap.add_argument("--note", default="", help="what else ran on the machine (for the results)")
    ap.add_argument("--results", default=str(HERE / "results" / "busy_cpu"))
    a = ap.parse_args()
    if a.worker:
        {"measure": worker_measure, "zcfast": worker_zcfast, "matmul": worker_matmul}[a.worker](a)
        return
    import torch

    from zcfast.scoring import cpu_name, git_sha

    if a.quick:
        a.cells = 2
    configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"unknown configuration {c!r}: expected one of {', '.join(CONFIGS)}")
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}: expected one of {', '.join(SCENARIOS)}")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "zcfast", "kernels", "bench"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {"git": git_sha() + (" (uncommitted changes)" if dirty else ""), "cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M"), "cells": a.cells, "warm": a.warm,
           "configs": configs, "load_before": loadavg(), "top_before": top_snapshot(),
           "machine_note": a.note or "not stated.", "results": []}
    print(f"load before: {doc['load_before']}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        snapshot(tmp / "src")
        wait_quiet(a.quiet, a.max_wait)
        doc["matmul_alone"] = matmul_alone(10.0, tmp)
        print(f"matmul alone: {doc['matmul_alone']['rate']:.2f}/s", flush=True)
        for c in configs:
            for s in scenarios:
                for attempt in range(1, a.retries + 2):
                    wait_quiet(a.quiet, a.max_wait)
                    r = measure(c, s, a.cells, tmp)
                    r["attempt"] = attempt
                    if r["foreign_cores"] <= a.quiet:
                        break
                    print(f"  others used {r['foreign_cores']:.2f} cores meanwhile: again",
                          flush=True)
                doc["results"].append(r)
                print(f"{c:>18} {s:>7}: {r['s_per_cell']:.2f} s/cell (threads {r['threads']}, "
                      f"foreign {r['foreign_cores']:.2f} cores)"
                      + (f", neighbour {r['neighbour']['rate']:.2f} {r['neighbour']['unit']}"
                         if "neighbour" in r else ""), flush=True)
    doc["load_after"], doc["top_after"] = loadavg(), top_snapshot()
    out = Path(a.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    write_markdown(doc, out.with_suffix(".md"))
    print(f"-> {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
