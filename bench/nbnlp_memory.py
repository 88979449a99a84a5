"""Peak resident memory and time of one NAS-Bench-NLP network under one proxy (or a list), at given sizes
(a scaled-down model extrapolates to the logs' sizes; docs/nbnlp.md, "Memory").

    python bench/nbnlp_memory.py --proxy grasp [--ntoken 33278 --emsize 400 --nhid 600
        --batch 20 --bptt 70 --cell largest --engine packed --threads 1]

Prints one JSON line: git SHA, CPU, date, the settings, the peak resident set size of the process (MB, from
getrusage, so run one measurement per process), the resident size before scoring, and the
seconds of the scoring call. Tokens of the real batch are folded into the vocabulary (x mod
ntoken), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True, help="a proxy or a comma-separated list (one call)")
    ap.add_argument("--ntoken", type=int, default=33278)
    ap.add_argument("--emsize", type=int, default=400)
    ap.add_argument("--nhid", type=int, default=600)
    ap.add_argument("--nlayers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--cell", default="largest", help="largest, rnn, or a logged recepie_id")
    ap.add_argument("--engine", default="packed", choices=["packed", "per-model"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=None, help="time steps per decoder chunk")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from zcfast.spaces import get_space, nbnlp
    from zcfast.spaces.nbnlp_model import Sizes

    sp = get_space("nbnlp")
    if a.cell == "largest":
        nets = [int(c) for c in nbnlp.logged_runs()["network"].unique()]
        code = max(nets, key=lambda c: (nbnlp.cell_of(c).n, nbnlp.cell_of(c).hidden))
    elif a.cell == "rnn":
        code = nbnlp.network_code(sp.parse(1000000))
    else:
        code = nbnlp.network_code(sp.parse(int(a.cell)))
    names = a.proxy.split(",")
    sizes = Sizes(ntoken=a.ntoken, emsize=a.emsize, nhid=a.nhid, nlayers=a.nlayers)
    mb = sp.minibatch(batch_size=a.batch, bptt=a.bptt, seed=0)
    x, y = mb.x % a.ntoken, mb.y % a.ntoken
    before = _rss_mb()
    t0 = time.perf_counter()
    if a.engine == "packed":
        from zcfast.batched.nbnlp import PackedNBNLP

        kw = {} if a.chunk is None else {"time_chunk": a.chunk}
        res = PackedNBNLP([code], sizes=sizes, **kw).compute(x, y, names)
        val = {n: float(res[n][0]) for n in names}
    else:
        from zcfast.proxies import compute_measures
        from zcfast.spaces.nbnlp_model import build_model

        val = compute_measures(build_model(code, sizes=sizes), x, y, names)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cell = nbnlp.cell_of(code)
    from zcfast.scoring import cpu_name, git_sha

    print(json.dumps({"git": git_sha(), "cpu": cpu_name(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "proxy": a.proxy, "engine": a.engine, "ntoken": a.ntoken, "emsize": a.emsize,
                      "nhid": a.nhid, "nlayers": a.nlayers, "batch": a.batch, "bptt": a.bptt,
                      "chunk": a.chunk, "cell_nodes": cell.n, "cell_hidden": cell.hidden,
                      "threads": a.threads, "rss_before_mb": round(before, 1),
                      "peak_rss_mb": round(peak, 1), "seconds": round(secs, 2), "value": val}))


if __name__ == "__main__":
    main()
