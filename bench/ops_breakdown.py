"""Which ATen ops does a packed pass dispatch per candidate, and which of them do not shrink as
1/K? The question behind a proxy group whose ops per candidate fall slower than 1/K in
bench/bench_packed.py (e.g. grasp's double backward).

    python bench/ops_breakdown.py --proxies grasp --k 1 64

Writes bench/results/ops_<proxies>.md (git SHA, torch version, date): per op name, the count
per candidate at each K, sorted by the count at the largest K.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def op_counts(idx, proxies, x, y) -> collections.Counter:
    from torch.profiler import ProfilerActivity, profile

    from zcfast.batched import iter_packed

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in iter_packed(idx, proxies, x, y, ncls=10, seed=0, chunk=len(idx)):
            pass
    return collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxies", default="grasp")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2,
                    help="intra-op threads (ATen's CPU kernels dispatch sub-ops per thread chunk, "
                         "so counts depend on it; bench_packed.py uses 2)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    for k in a.k:
        if k < 1:
            raise SystemExit(f"--k must be >= 1, got {k}")

    from zcfast.data import image_source
    from zcfast.scoring import git_sha
    from zcfast.spaces import nb201

    torch.set_num_threads(a.threads)
    proxies = a.proxies.split(",")
    x, y = image_source("cifar10").minibatch(2, 0)  # op counts do not depend on the batch size
    idx = nb201.sample(max(a.k), seed=8)
    per = {k: {n: c / k for n, c in op_counts(idx[:k], proxies, x, y).items()} for k in a.k}
    kmax = max(a.k)
    names = sorted(set().union(*per.values()), key=lambda n: -per[kmax].get(n, 0.0))
    total = {k: sum(v.values()) for k, v in per.items()}
    lines = [f"# ATen ops per candidate, packed pass of `{a.proxies}`", "",
             f"git `{git_sha()}`, torch {torch.__version__}, {a.threads} threads, "
             f"{time.strftime('%Y-%m-%d %H:%M')}; "
             f"command: `python bench/ops_breakdown.py --proxies {a.proxies} --k "
             f"{' '.join(map(str, a.k))} --threads {a.threads}`", "",
             "| op | " + " | ".join(f"per cell, K={k}" for k in a.k) + " |",
             "|---|" + "---:|" * len(a.k),
             "| **all ops** | " + " | ".join(f"{total[k]:.1f}" for k in a.k) + " |"]
    for n in names[: a.top]:
        lines.append(f"| {n} | " + " | ".join(f"{per[k].get(n, 0.0):.2f}" for k in a.k) + " |")
    out = Path(a.out) if a.out else HERE / "results" / f"ops_{a.proxies.replace(',', '_')}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
