"""Reduced training (EcoNAS) next to zero-cost proxies on the same NB201 cells, in one run:
Spearman against the 200-epoch accuracy and cost per cell (docs/reduced_training.md).

    flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 \\
        python bench/study_reduced_training.py --cells 200 --threads 2

Methods, all on the same ``--cells`` CIFAR-10 cells (sampled with ``--seed``):

- the paper's six zero-cost proxies, each timed alone with the packed engine (one minibatch of 64
  bundled real CIFAR-10 images), and their vote (synflow, jacob_cov, snip; its time is the sum of
  its members');
- reduced training at each ``--budgets`` spec, packed (``--chunk`` cells per program), scored as
  the accuracy on the 1,000 bundled held-out CIFAR-10 test images; with
  ``--packed-train-cells N`` only the chunks within the first N cells train packed and every
  later cell trains per-model (packed training equals per-model training, docs/reduced_training.md,
  and is the slower of the two on this CPU; the report gives the largest difference between
  the two on the cells trained both ways);
- NB201's own 12-epoch accuracy (the benchmark's table: its cost is counted, not measured);
- on the first ``--loop-cells`` cells, the per-model engines (one ``nn.Module`` at a time) of the
  zero-cost proxies and of reduced training, timed the same way.

Every (method, cell) lands in ``<out>/rows.csv`` as soon as its chunk finishes, with the chunk's
wall time; a rerun skips finished chunks (resumable; the timings of a resumed run come from
different sittings, the report says so via the sittings count). The report
``<out>/README.md``, ``<out>/summary.json`` and the figure ``<out>/spearman_vs_cost.png`` are
rewritten from rows.csv at the end (``--report-only`` redoes just that).

Cost is counted two ways: measured wall seconds per cell on this machine, and multiply-accumulates
(MACs) per cell from the packed plan's per-layer counts (training: 3x the forward MACs per image
-- forward, backward to activations, backward to weights -- times images seen, plus the
held-out forward passes). The 12-epoch column has no measured time: its MACs are counted for
NB201's own training (50,000 images x 12 epochs at 32x32, 16 channels) and its seconds are an
EXTRAPOLATION from this machine's measured per-model full-size training step (labelled so).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BUDGETS = "econas:epochs=5,econas"
FIELDS = ["method", "index", "value", "chunk_seconds", "chunk_cpu_seconds", "chunk_cells",
          "sitting"]
# NB201's own hp=12 training (Dong & Yang, ICLR 2020): CIFAR-10 train+valid, 12 epochs, 32x32,
# 16 initial channels, batch 256
NB201_12EP = {"images": 50_000, "epochs": 12, "resolution": 32, "channels": 16, "batch": 256}


def _rows(path: Path) -> list:
    if not path.exists():
        return []
    raw = path.read_text()
    if raw and not raw.endswith("\n"):  # torn last line of an interrupted write
        raw = raw[: raw.rfind("\n") + 1]
        path.write_text(raw)
    return list(csv.DictReader(raw.splitlines()))


class Rows:
    """Append-only rows.csv; ``done(method, cells)``: whether that chunk is already there."""

    def __init__(self, path: Path, sitting: str):
        self.path, self.sitting = path, sitting
        self.have = {(r["method"], int(r["index"])) for r in _rows(path)}
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", newline="")
        self.w = csv.writer(self.f)
        if new:
            self.w.writerow(FIELDS)

    def done(self, method, cells) -> bool:
        return all((method, int(i)) in self.have for i in cells)

    def add(self, method, cells, values, seconds, cpu):
        for i, v in zip(cells, values):
            self.w.writerow([method, int(i), repr(float(v)), f"{seconds:.6f}", f"{cpu:.6f}",
                             len(cells), self.sitting])
            self.have.add((method, int(i)))
        self.f.flush()


def chunks(seq, k):
    return [seq[a : a + k] for a in range(0, len(seq), k)]


def run(a) -> None:
    from zcfast import reduced_training as rt
    from zcfast.batched import iter_packed
    from zcfast.data import image_source
    from zcfast.proxies import PAPER_PROXIES
    from zcfast.scoring import iter_loop
    from zcfast.spaces import nb201

    torch.set_num_threads(a.threads)
    cells = [int(i) for i in nb201.sample(a.cells, a.seed)]
    rows = Rows(a.out / "rows.csv", time.strftime("%Y-%m-%dT%H:%M:%S"))
    x, y = image_source("cifar10").minibatch(64, a.seed)
    data = rt.training_data("cifar10")
    budgets = [s.strip() for s in a.budgets.split(",") if s.strip()]
    loop_cells = cells[: a.loop_cells]

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def timed(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0

    # 1. per-model engines on the first loop_cells cells (short, so a stopped run has them)
    for p in PAPER_PROXIES:
        m = f"zc_loop:{p}"
        for i in loop_cells:
            if not rows.done(m, [i]):
                (((_, vals),), dt, cpu) = timed(lambda i=i, p=p: list(iter_loop(
                    [i], [p], x, y, seed=a.seed, space="nb201-index", dataset="cifar10")))
                rows.add(m, [i], [vals[p]], dt, cpu)
    for spec in budgets:
        cfg = rt.parse_spec(spec)
        b = rt.Batches(data, cfg, a.seed)
        m = f"rt_loop:{spec}"
        for i in loop_cells:
            if not rows.done(m, [i]):
                (acc, _), dt, cpu = timed(lambda i=i: rt.train_loop(i, cfg, b, seed=a.seed))
                rows.add(m, [i], [acc], dt, cpu)
    # NB201's 12-epoch training: a measured per-model full-size step (for the extrapolation)
    full = rt.parse_spec(f"econas:epochs=1+channels={NB201_12EP['channels']}+resolution="
                         f"{NB201_12EP['resolution']}+batch={NB201_12EP['batch']}")
    xb, yb = next(iter(rt.Batches(data, full, a.seed).epoch(0)))
    m = "step_loop:nb201_full"
    for i in loop_cells[: a.step_cells]:
        if rows.done(m, [i]):
            continue
        t = rt._PerModel(i, 10, full, seed=a.seed, flavour="official", device="cpu",
                         dtype=torch.float32)
        t.step(xb, yb)  # warm-up step, not timed
        _, dt, cpu = timed(lambda t=t: [t.step(xb, yb) for _ in range(a.steps)])
        rows.add(m, [i], [math.nan], dt / a.steps, cpu / a.steps)
    log(f"per-model timings done ({len(loop_cells)} cells)")
    # 2. packed, chunk after chunk: every method on a chunk before the next chunk, so a run
    # stopped early leaves n complete cells for every method
    batches = {s: rt.Batches(data, rt.parse_spec(s), a.seed) for s in budgets}
    parts = chunks(cells, a.chunk)
    for n, part in enumerate(parts):
        for p in PAPER_PROXIES:
            m = f"zc_packed:{p}"
            if not rows.done(m, part):
                res, dt, cpu = timed(lambda p=p: list(iter_packed(
                    part, [p], x, y, ncls=10, seed=a.seed, chunk=min(len(part), a.zc_chunk))))
                rows.add(m, part, np.concatenate([t[p] for _, t in res]), dt, cpu)
        for spec in budgets:
            m = f"rt_packed:{spec}"
            if a.packed_train_cells is None or cells.index(part[0]) < a.packed_train_cells:
                if not rows.done(m, part):
                    (acc, _), dt, cpu = timed(lambda spec=spec: rt.train_packed(
                        part, spec, batches[spec], seed=a.seed))
                    rows.add(m, part, acc, dt, cpu)
                continue
            cfg, m = rt.parse_spec(spec), f"rt_loop:{spec}"
            for i in part:  # per-model training, one cell at a time (timed per cell)
                if not rows.done(m, [i]):
                    (acc, _), dt, cpu = timed(lambda i=i: rt.train_loop(
                        i, cfg, batches[spec], seed=a.seed))
                    rows.add(m, [i], [acc], dt, cpu)
        log(f"chunk {n + 1} of {len(parts)} done ({min(len(cells), (n + 1) * a.chunk)} cells)")
    log("all measurements done")


def zc_macs(proxy: str, f: float) -> float:
    """Counted MACs of one zero-cost proxy for a network of ``f`` forward MACs per image: one
    forward and backward pass (3 forward passes' worth) of its input -- the minibatch of 64,
    synflow's single all-ones image -- and grasp about two such passes."""
    batch = 1 if proxy == "synflow" else 64
    return 3 * batch * f * (2 if proxy == "grasp" else 1)


def macs(cells, channels: int, resolution: int, flavour: str = "paper") -> np.ndarray:
    """Forward multiply-accumulates per image of each cell's network (the packed plan's count)."""
    from zcfast.batched.engine import PackedNB201, codes_of

    out = []
    for part in chunks(list(cells), 256):
        eng = PackedNB201(codes_of(part), 10, flavour=flavour, init_channels=channels,
                          input_size=resolution)
        out.append(eng.counts()["flops"])
    return np.concatenate(out)


def report(a) -> dict:
    import pandas as pd

    from zcfast import reduced_training as rt
    from zcfast.correlate import BASELINE_12EP, correlation_table
    from zcfast.proxies import PAPER_PROXIES
    from zcfast.scoring import add_ensembles, cpu_name, git_sha
    from zcfast.spaces import nb201

    rows = pd.DataFrame(_rows(a.out / "rows.csv"))
    rows["index"] = rows["index"].astype(int)
    for c in ("value", "chunk_seconds", "chunk_cpu_seconds", "chunk_cells"):
        rows[c] = rows[c].astype(float)
    rows["per_cell"] = rows["chunk_seconds"] / rows["chunk_cells"]
    rows["cpu_per_cell"] = rows["chunk_cpu_seconds"] / rows["chunk_cells"]
    budgets = [s.strip() for s in a.budgets.split(",") if s.strip()]
    methods = {m: g.set_index("index") for m, g in rows.groupby("method")}
    def has(m, i):
        return m in methods and i in methods[m].index

    # the cells every method has finished (a run stopped early: its first chunks); a
    # reduced-training score is the packed one, or the per-model one where the cell was not
    # trained packed (--packed-train-cells)
    cells = [int(i) for i in nb201.sample(a.cells, a.seed)
             if all(has(f"zc_packed:{p}", int(i)) for p in PAPER_PROXIES)
             and all(has(f"rt_packed:{s}", int(i)) or has(f"rt_loop:{s}", int(i))
                     for s in budgets)]
    if not cells:
        raise SystemExit("no cell has every method yet: nothing to report")

    def sec(m, cpu=False):  # mean seconds per cell over the cells measured, and their number
        g = methods.get(m)
        if g is None:
            return math.nan, 0
        if m.split(":")[0].endswith("_packed"):  # over the cells reported
            g = g.loc[g.index.isin(cells)]
        return float(g["cpu_per_cell" if cpu else "per_cell"].mean()), len(g)

    # scores on the full sample
    cols = {}
    for p in PAPER_PROXIES:
        g = methods.get(f"zc_packed:{p}")
        if g is not None and set(cells) <= set(g.index):
            cols[p] = g["value"].reindex(cells).to_numpy()
    sources, both = {}, {}
    for s in budgets:
        gp = methods.get(f"rt_packed:{s}")
        gl = methods.get(f"rt_loop:{s}")
        vp = (gp["value"].reindex(cells) if gp is not None
              else pd.Series(np.nan, index=pd.Index(cells)))
        vl = (gl["value"].reindex(cells) if gl is not None
              else pd.Series(np.nan, index=pd.Index(cells)))
        cols[s] = np.where(vp.notna(), vp, vl)
        sources[s] = {"packed": int(vp.notna().sum()),
                      "per_model": int((vp.isna() & vl.notna()).sum())}
        overlap = vp.notna() & vl.notna()
        both[s] = {"cells": int(overlap.sum()),
                   "max_abs_diff_points": float((vp[overlap] - vl[overlap]).abs().max())
                   if overlap.any() else math.nan}
    df = pd.DataFrame(cols, index=pd.Index(cells, name="index"))
    df.insert(0, "arch", [nb201.arch_at(i) for i in cells])
    if {"synflow", "jacob_cov", "snip"} <= set(df.columns):
        df = add_ensembles(df, ["vote"])
    tab = correlation_table(df, "cifar10")

    # cost: seconds and MACs per cell
    f32 = macs(cells, 16, 32).mean()
    n_val = 1000
    res = []
    for p in [c for c in df.columns if c != "arch"]:
        members = (["synflow", "jacob_cov", "snip"] if p == "vote" else [p])
        entry = {"method": p, "spearman": float(tab.loc[p, "spearman"]), "n": int(tab.loc[p, "n"])}
        if p in budgets:
            cfg = rt.parse_spec(p)
            b = rt.Batches(rt.training_data("cifar10"), cfg, a.seed)
            f = macs(cells, cfg.channels, cfg.resolution).mean()
            entry.update(kind="reduced training", seconds_packed=sec(f"rt_packed:{p}")[0],
                         n_packed=sec(f"rt_packed:{p}")[1], score_sources=sources[p],
                         packed_vs_per_model=both[p],
                         cpu_packed=sec(f"rt_packed:{p}", True)[0],
                         seconds_loop=sec(f"rt_loop:{p}")[0], n_loop=sec(f"rt_loop:{p}")[1],
                         cpu_loop=sec(f"rt_loop:{p}", True)[0],
                         n_train_images=b.n_train,
                         macs=f * (3 * b.n_train * cfg.epochs + n_val),
                         steps=cfg.epochs * b.steps_per_epoch)
        else:
            entry.update(kind="zero-cost",
                         seconds_packed=sum(sec(f"zc_packed:{q}")[0] for q in members),
                         cpu_packed=sum(sec(f"zc_packed:{q}", True)[0] for q in members),
                         seconds_loop=sum(sec(f"zc_loop:{q}")[0] for q in members),
                         cpu_loop=sum(sec(f"zc_loop:{q}", True)[0] for q in members),
                         n_loop=min(sec(f"zc_loop:{q}")[1] for q in members),
                         macs=sum(zc_macs(q, f32) for q in members))
        res.append(entry)
    step, n_step = sec("step_loop:nb201_full")
    step_cpu, _ = sec("step_loop:nb201_full", True)
    steps12 = NB201_12EP["epochs"] * math.ceil(NB201_12EP["images"] / NB201_12EP["batch"])
    res.append({"method": BASELINE_12EP, "kind": "full training (benchmark table)",
                "spearman": float(tab.loc[BASELINE_12EP, "spearman"]),
                "n": int(tab.loc[BASELINE_12EP, "n"]), "seconds_packed": math.nan,
                "cpu_packed": math.nan, "seconds_loop": step * steps12,
                "cpu_loop": step_cpu * steps12, "seconds_is_extrapolation": True,
                "n_loop": n_step, "steps": steps12,
                "macs": f32 * 3 * NB201_12EP["images"] * NB201_12EP["epochs"]})
    sittings = sorted(set(rows["sitting"]))
    info = {"git": git_sha(), "cpu": cpu_name(), "threads": a.threads, "cells": len(cells),
            "cells_requested": a.cells,
            "seed": a.seed, "sample": "nb201.sample(cells, seed)", "chunk": a.chunk,
            "zc_chunk": a.zc_chunk,
            "loop_cells": a.loop_cells, "packed_train_cells": a.packed_train_cells,
            "budgets": budgets,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "sittings": sittings, "load_average_end": list(os.getloadavg()),
            "target": tab.attrs["target"], "methods": res,
            "reduced_training": {s: rt.describe(s, rt.training_data("cifar10"), a.seed)
                                 for s in budgets if s in df.columns}}
    (a.out / "summary.json").write_text(json.dumps(info, indent=1, default=float))
    df.to_csv(a.out / "scores.csv")
    _write_readme(a, info)
    _plot(a, res, len(cells))
    return info


def _fmt_s(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else (
        f"{v:.3g}" if v < 100 else f"{v:,.0f}")


def _write_readme(a, info) -> None:
    res = info["methods"]
    zc = [r for r in res if r["kind"] == "zero-cost"]
    rtr = [r for r in res if r["kind"] == "reduced training"]
    lines = [
        "# Reduced training (EcoNAS) vs zero-cost proxies on NB201 CIFAR-10",
        "",
        f"Written by `bench/study_reduced_training.py` (definitions: docs/reduced_training.md). "
        f"git {info['git']}, {info['cpu']}, {info['threads']} thread(s), torch {info['torch']}, "
        f"{info['date']}; sittings {', '.join(info['sittings'])}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in info['load_average_end'])} (a shared 2-core machine: "
        "timings are what this machine gave under the compute locks, with other engineers' "
        "short jobs running beside them).",
        "",
        f"**n = {info['cells']} cells** (the first {info['cells']} of "
        f"`nb201.sample({info['cells_requested']}, seed={info['seed']})`), "
        f"target: {info['target']}. Spearman is signed. Seconds are wall time per cell: packed = "
        f"chunk time / cells in the chunk ({info['chunk']} cells per packed training program, "
        f"{info.get('zc_chunk', info['chunk'])} per zero-cost program, each zero-cost proxy "
        f"timed alone); per-model = one network at a time, "
        f"measured on the first {info['loop_cells']} cells"
        + ("" if info.get("packed_train_cells") is None else
           f" (reduced training: also on every cell after the first "
           f"{info['packed_train_cells']}, which train per-model only)")
        + f"; (n) = cells timed. CPU = process CPU seconds (all {info['threads']} thread(s)), "
        "less sensitive to the other jobs than wall time. MACs are counted (see the "
        "script's docstring).",
        "",
        "| method | kind | Spearman | wall s/cell packed | CPU s/cell packed | wall s/cell "
        "per-model (n) | CPU s/cell per-model | MACs/cell |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res:
        lp = _fmt_s(r["seconds_loop"]) + (" (extrapolated)" if r.get("seconds_is_extrapolation")
                                          else "") + f" ({r['n_loop']})"
        pk = _fmt_s(r["seconds_packed"]) + (f" ({r['n_packed']})" if "n_packed" in r else "")
        lines.append(f"| {r['method']} | {r['kind']} | {r['spearman']:.3f} | "
                     f"{pk} | {_fmt_s(r['cpu_packed'])} | {lp} | "
                     f"{_fmt_s(r['cpu_loop'])} | {r['macs']:.3g} |")
    for r in rtr:
        src, bo = r["score_sources"], r["packed_vs_per_model"]
        lines.append("")
        lines.append(
            f"`{r['method']}` scores: {src['packed']} cells trained packed, {src['per_model']} "
            f"per-model; on the {bo['cells']} cells trained both ways the largest difference in "
            f"held-out accuracy is {bo['max_abs_diff_points']:.3g} points (packed training equals "
            "per-model training to float tolerance, docs/reduced_training.md; one flipped "
            "image is 0.1 point).")
    lines += ["", "## Cost ratios (reduced training / zero-cost, measured in this run)", ""]
    zc_p = {r["method"]: r for r in zc}
    for r in rtr:
        for name in ("synflow", "vote"):
            z = zc_p.get(name)
            if z is None:
                continue
            full = r["macs"] * 50_000 / r["n_train_images"]
            lines.append(
                f"- {r['method']} / {name}: packed {r['seconds_packed'] / z['seconds_packed']:.3g}x "
                f"wall, {r['cpu_packed'] / z['cpu_packed']:.3g}x CPU; per-model "
                f"{r['seconds_loop'] / z['seconds_loop']:.3g}x wall, "
                f"{r['cpu_loop'] / z['cpu_loop']:.3g}x CPU; {r['macs'] / z['macs']:.3g}x in MACs "
                f"(EXTRAPOLATED to the paper's 50,000 training images: {full / z['macs']:.3g}x "
                "in MACs)")
    lines += ["",
              "The zero-cost paper reports (Abdelfattah et al., ICLR 2021, Section 3 / Table 1 and "
              "Figure 2) that its EcoNAS baseline reaches about 0.6 Spearman and that zero-cost "
              "proxies are roughly 1000x cheaper; see docs/reduced_training.md for how these "
              "numbers compare (the paper trained on the full 50,000-image training set, this run "
              "on the 1,000 bundled images).",
              "",
              "## What each reduced-training column is", ""]
    for s, d in info["reduced_training"].items():
        from zcfast.reduced_training import summary

        lines.append(f"- `{s}`: {summary(d)}")
    if (a.out / "NOTES.md").exists():
        lines += ["", "Conditions of this run and what its numbers mean: [NOTES.md](NOTES.md)."]
    lines += ["", "![Spearman vs seconds per cell](spearman_vs_cost.png)", ""]
    (a.out / "README.md").write_text("\n".join(lines))


def _plot(a, res, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colour = {"zero-cost": "tab:blue", "reduced training": "tab:red",
              "full training (benchmark table)": "tab:gray"}
    for r in res:
        for key, marker in (("seconds_packed", "o"), ("seconds_loop", "s")):
            v = r.get(key)
            if v is None or not np.isfinite(v):
                continue
            lab = r["method"] + (" (per-model)" if key == "seconds_loop" else "")
            if r.get("seconds_is_extrapolation"):
                lab = r["method"] + " (extrapolated time)"
                marker = "x"
            ax.scatter([v], [r["spearman"]], c=colour[r["kind"]], marker=marker)
            ax.annotate(lab, (v, r["spearman"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds per cell (this CPU; o packed, s per-model)")
    ax.set_ylabel("Spearman vs 200-epoch test accuracy")
    ax.set_title(f"NB201 CIFAR-10, n = {n} cells: ranking quality vs cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out / "spearman_vs_cost.png", dpi=130)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", default=DEFAULT_BUDGETS,
                    help=f"comma list of reduced-training specs (default {DEFAULT_BUDGETS})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=16, help="cells per packed training program")
    ap.add_argument("--zc-chunk", type=int, default=4,
                    help="cells per packed zero-cost program (grasp needs about 1.2 GB per cell "
                         "at batch 64: bench/results/packed_cpu.md)")
    ap.add_argument("--loop-cells", type=int, default=8, help="cells timed per model")
    ap.add_argument("--packed-train-cells", type=int, default=None,
                    help="train packed only the chunks within the first N cells, every later "
                         "cell per-model (default: every cell packed)")
    ap.add_argument("--step-cells", type=int, default=4,
                    help="cells whose full-size training step is timed (12-epoch extrapolation)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/reduced_training")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args(argv)
    if not a.report_only:
        run(a)
    info = report(a)
    print((a.out / "README.md").read_text())
    return 0 if info else 1


if __name__ == "__main__":
    sys.exit(main())
