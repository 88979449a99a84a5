"""Calibration of the float32 equivalence criterion (docs/engine.md, zcfast/batched/verify.py).

Question: how far from float64 are correct float32 scores, per (cell, proxy), for the packed
engine and for the per-model reference; what multiple of the per-model error does the packed
engine need; how close to zero are the ReLU entries where float32 and float64 disagree?

    python bench/calibrate_float32.py --setting in16       # 65 ImageNet16-120 cells, batch 8
    python bench/calibrate_float32.py --setting c10        # first 16 cells of the C10 study, batch 64
    python bench/calibrate_float32.py --report-only        # rewrite the report from the JSON

Per cell, one candidate per packed pass: the per-model reference in float32 (ref32), in float32
with the other convolution code (ref32'), in float64 (ref64); the packed engine in float32
recording its ReLU masks, and in float64 replaying them (float64 on float32's branch). Rows are
appended to bench/results/float32_calibration/<setting>.json (resumable); the report goes to
bench/results/float32_calibration/README.md. Run it under the compute lock (minutes per setting).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "float32_calibration"
PROXIES = ["grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "nwot", "l2_norm"]
SETTINGS = {  # dataset, batch, cells, data seed
    "in16": ("ImageNet16-120", 8, "tests", 3),
    "c10": ("cifar10", 64, "study16", 0),
}


def cells_of(spec: str) -> list:
    if spec == "tests":  # the special cells of tests/engine_checks.py and 60 sampled ones
        sys.path.insert(0, str(HERE.parent / "tests"))
        from engine_checks import cells

        return cells(60)
    import pandas as pd

    n = int(spec[len("study"):])
    return [int(i) for i in pd.read_csv(HERE / "results" / "nb201_c10_1000" / "scores.csv")["index"][:n]]


def measure(setting: str) -> None:
    from zcfast.batched import verify
    from zcfast.data import image_source, num_classes
    from zcfast.scoring import git_sha

    ds, b, spec, data_seed = SETTINGS[setting]
    x, y = image_source(ds).minibatch(b, data_seed)
    path = OUT / f"{setting}.json"
    doc = json.loads(path.read_text()) if path.exists() else {"rows": []}
    doc.update(dataset=ds, batch=b, data_seed=data_seed, weight_seed=0)
    doc.setdefault("git", git_sha())
    done = {r["i"] for r in doc["rows"]}
    kw = dict(ncls=num_classes(ds), seed=0, flavour="paper", device="cpu")
    for i in cells_of(spec):
        if i in done:
            continue
        t = time.time()
        r32 = verify.reference(i, PROXIES, x, y, **kw)
        r32b = verify.reference(i, PROXIES, x, y, other=True, **kw)
        r64 = verify.reference(i, PROXIES, x, y, dtype=torch.float64, **kw)
        p32, tape = verify._packed_chunk([i], PROXIES, x, y, dtype=torch.float32, tape=True,
                                         backend=None, **kw)
        p64b, t64 = verify._packed_chunk([i], PROXIES, x.double(), y, dtype=torch.float64,
                                         masks=tape.masks, backend=None, **kw)
        doc["rows"].append({"i": i, "r32": r32, "r32b": r32b, "r64": r64,
                            "p32": {p: p32[p][0] for p in PROXIES},
                            "p64b": {p: p64b[p][0] for p in PROXIES},
                            "flips": t64.flips, "tie": t64.worst_tie, "s": time.time() - t})
        path.write_text(json.dumps(doc))
        print(f"cell {i}: {t64.flips} ReLU disagreements, {time.time() - t:.0f} s", flush=True)


def analyse(doc: dict) -> list:
    from zcfast.batched import verify as V

    rows = doc["rows"]
    verdicts: dict = {}
    lines = ["| proxy | pairs | per-model rel. error (median) | packed rel. error (median) | "
             "bound, relative (median) | largest multiple needed | same, one float32 reference |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in PROXIES:
        own, err, bound, need, need1 = [], [], [], [], []
        for r in rows:
            r32, r32b, r64, p32, pb = (r[k][p] for k in ("r32", "r32b", "r64", "p32", "p64b"))
            if not all(map(math.isfinite, (r32, r32b, r64, p32))):
                continue
            scale = max(abs(r64), 1e-300)
            on_branch = r["flips"] > 0 and r["tie"] <= V.TIE
            ok_nat = V.judge(p32, (r32, r32b), r64)[0]
            ok_br = on_branch and V.judge(p32, (r32, r32b), r64, truth=pb)[0]
            how = ("fast" if V.fast_pass(p32, r32) else "float64" if ok_nat
                   else "branch" if ok_br else "FAIL")
            verdicts[how] = verdicts.get(how, 0) + 1
            e = min(abs(p32 - r64), abs(p32 - pb) if on_branch else math.inf)
            floor = V.REL_FLOOR * abs(r64) + V.ABS_FLOOR
            o2, o1 = V.own_error((r32, r32b), r64), V.own_error((r32,), r64)
            own.append(o2 / scale)
            err.append(abs(p32 - r64) / scale)
            bound.append(V.float32_bound((r32, r32b), r64) / scale)
            need.append((e - floor) / o2 if o2 > 0 else 0.0)
            need1.append((e - floor) / o1 if o1 > 0 else 0.0)
        lines.append(f"| {p} | {len(own)} | {np.median(own):.1e} | {np.median(err):.1e} | "
                     f"{np.median(bound):.1e} | {max(0.0, max(need)):.1f} | "
                     f"{max(0.0, max(need1)):.1f} |")
    flips = [r for r in rows if r["flips"]]
    ties = [r["tie"] for r in flips if r["tie"] <= V.TIE]
    head = [f"{len(rows)} cells, {doc['dataset']}, batch {doc['batch']} (data seed "
            f"{doc['data_seed']}, weight seed {doc['weight_seed']}), one candidate per pass; "
            f"measured at git `{doc['git']}`.", "",
            "Verdicts of the criterion (every proxy but params, flops and synflow): "
            + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) + ".", "",
            f"Cells whose packed float32 run took another ReLU branch than float64: {len(flips)}; "
            f"all disagreements near ties in {len(ties)} of them (largest "
            f"{max(ties) if ties else 0:.2g} of the tensor's scale)"
            + ("; the others are cells with a convolution fed by a zero node, whose float32 "
               "values are noise." if len(ties) < len(flips) else "."), ""]
    return head + lines + [""]


def report() -> None:
    from zcfast.batched import verify as V

    lines = ["# Calibration of the float32 equivalence criterion", "",
             "Produced by `python bench/calibrate_float32.py` (see its docstring). Criterion "
             f"(docs/engine.md): |packed32 - ref64| <= {V.MULTIPLE:g} x max(|ref32 - ref64|, "
             f"|ref32' - ref64|) + {V.REL_FLOOR:.2g} |ref64| + {V.ABS_FLOOR:g}; a pair whose "
             "packed run crossed only near-tie ReLUs is measured against float64 on its own "
             "branch. 'largest multiple needed': the smallest multiple that would pass every "
             "pair of the proxy (with the floor); 'one float32 reference': the same with ref32 "
             "alone.", ""]
    for name in SETTINGS:
        path = OUT / f"{name}.json"
        if path.exists():
            lines += [f"## {name}", ""] + analyse(json.loads(path.read_text()))
    (OUT / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=list(SETTINGS))
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        if a.setting is None:
            raise SystemExit("--setting in16|c10, or --report-only")
        measure(a.setting)
    report()


if __name__ == "__main__":
    main()
