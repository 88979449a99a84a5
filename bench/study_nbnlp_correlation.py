"""Zero-cost proxies on NAS-Bench-NLP: the networks of the bundled WikiText-2 training logs.

    python bench/study_nbnlp_correlation.py score [--threads 2]   # resumable; Ctrl-C keeps rows
    python bench/study_nbnlp_correlation.py report

``score`` scores the 263 distinct networks of the 341 finished runs, in a seeded random order
(so that a partial run is a uniform random sample of them), (a proxy score is a function
of the network, weight seed and batch, so runs of one network share it) with the packed engine at
the logs' sizes (33,278 words, emsize 400, nhid 600, 3 layers, tied decoder), on one seeded batch
of 20 x 70 tokens of real WikiText-2 text, weight seed 0, into
bench/results/nbnlp_wikitext2/scores.csv (``zcfast score`` format; rerunning resumes, rows are
never recomputed), or with ``--shard K/N`` into scores_shardKofN.csv (the report reads them all).
Run it under the compute locks in pieces, e.g. (one shard per lane, each piece 20 minutes; rerun
a command until its shard is done: rows are never recomputed)

    flock /work/.compute.lock timeout -s INT 1200 python bench/study_nbnlp_correlation.py \
        score --threads 2 --shard 0/2
    flock /work/.compute2.lock timeout -s INT 1200 python bench/study_nbnlp_correlation.py \
        score --threads 1 --shard 1/2

One network costs 15 to 30 s at 1 thread for all the proxies below (about 20 s on average on a
loaded machine: 263 networks, about 1.5 hours in one lane) and peaks at about 2.4 GB resident
(bench/results/nbnlp_memory/).

``report`` writes .../README.md from whatever the CSV holds (a partial run is labelled as such):
Spearman and Kendall of every proxy against minus the final and the best validation perplexity
and minus the test perplexity (at the best-validation epoch), over the finished runs (one row per
run; a network's score repeated for each of its runs) and over the distinct networks (targets
averaged over a network's runs, in nats), next to the reduced-training baselines (validation
perplexity after 1, 3, 5, 10 of the 50 epochs) and params. Definitions: docs/nbnlp.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

PROXIES = ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow", "nwot", "plain",
           "params", "flops", "l2_norm"]
FOLDER = HERE / "results" / "nbnlp_wikitext2"
MIN_NETWORKS = 20  # below this many scored networks the report gives no proxy correlation
TARGETS = {"final val ppl": "final_val_loss", "best val ppl": "best_val_loss",
           "test ppl (at best val)": "test_at_best_val"}
PUBLISHED = ("Published numbers: Abdelfattah et al. (*Zero-Cost Proxies for Lightweight NAS*, "
             "ICLR 2021) report Spearman correlations of their proxies on NAS-Bench-NLP computed on "
             "the benchmark's **PTB** training logs (about 14k architectures), which are not "
             "available offline. This study uses the WikiText-2 logs (341 runs, 263 networks): a "
             "different corpus, a different and much smaller architecture sample and a vocabulary "
             "numbered by the validation text, so a comparison is one of sign and rough size only "
             "(docs/nbnlp.md, \"Correlation study\").")


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def score(threads: int, limit: int | None = None, shard: tuple = (0, 1)) -> None:
    from zcfast.runtime import set_threads
    from zcfast.scoring import score_to_file
    from zcfast.spaces import get_space

    set_threads(threads)
    sp = get_space("nbnlp")
    # the 263 networks in a seeded random order: a partial run is a uniform random sample
    nets = [int(c) for c in sp.universe().codes]
    codes = [nets[i] for i in np.random.default_rng(2021).permutation(len(nets))][:limit]
    k, n = shard
    codes = codes[k::n]  # shard k of n: every n-th network of the order, itself a uniform sample
    out = FOLDER / (f"scores_shard{k}of{n}.csv" if n > 1 else "scores.csv")
    FOLDER.mkdir(parents=True, exist_ok=True)
    extra = out.with_name(out.stem + "_run_info.json")
    info = json.loads(extra.read_text()) if extra.exists() else {"pieces": []}
    t0 = time.time()
    piece = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpu": _cpu(),
             "threads": threads}
    info["pieces"].append(piece)
    extra.write_text(json.dumps(info, indent=1))
    try:
        res = score_to_file(out, archs=codes, proxies=",".join(PROXIES), space="nbnlp",
                            seed=0, engine="packed", resume=out.exists(), device="cpu",
                            progress=False)
        piece["scored"] = res["scored"]
    finally:
        piece["seconds"] = round(time.time() - t0, 1)
        extra.write_text(json.dumps(info, indent=1))


def _corr(a, b):
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3:
        return int(ok.sum()), math.nan, math.nan
    return (int(ok.sum()), float(stats.spearmanr(a[ok], b[ok]).statistic),
            float(stats.kendalltau(a[ok], b[ok]).statistic))


def log_baselines() -> list:
    """Report lines: the baselines that need no scoring (parameter count and the validation
    perplexity after a few epochs, both from the logs) over every finished run and network."""
    from zcfast.data.nbnlp import EARLY_EPOCHS
    from zcfast.spaces import nbnlp

    runs = nbnlp.logged_runs(True)
    base = {"params (num_params of the logs)": "num_params"}
    base.update({f"val ppl after epoch {e}": f"val_loss_epoch{e}" for e in EARLY_EPOCHS})
    sign = {c: (1.0 if c == "num_params" else -1.0) for c in base.values()}
    cols = list(TARGETS.values()) + list(base.values())
    views = {"runs (341)": runs[cols], "networks (263; mean over a network's runs)":
             runs.groupby("key", sort=False)[cols].mean()}
    lines = ["## Baselines from the logs alone, over every finished run and network", "",
             "Complete whatever the scoring progress: they need no network to be built. Same "
             "sign convention (positive: a larger parameter count, or a lower early perplexity, "
             "goes with a lower final perplexity).", ""]
    for view, gt in views.items():
        lines += [f"Over the {view}:", "",
                  "| baseline | n | " + " | ".join(f"Spearman {t} | Kendall {t}" for t in TARGETS)
                  + " |", "|---|---:|" + "---:|" * (2 * len(TARGETS))]
        for name, c in base.items():
            cells, n = [], 0
            for col in TARGETS.values():
                n, rho, tau = _corr(sign[c] * gt[c].to_numpy(float), -gt[col].to_numpy(float))
                cells += [f"{rho:+.3f}", f"{tau:+.3f}"]
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def report() -> str:
    import pandas as pd

    from zcfast.data.nbnlp import EARLY_EPOCHS
    from zcfast.scoring import read_scores
    from zcfast.spaces import nbnlp

    files = sorted(FOLDER.glob("scores*.csv"))
    if not files:
        FOLDER.mkdir(parents=True, exist_ok=True)
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=HERE.parent).stdout.strip()
        lines = ["# Zero-cost proxies on NAS-Bench-NLP (WikiText-2 logs), CPU", "",
                 f"Report written by `python bench/study_nbnlp_correlation.py report` at git {sha}, "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
                 "**No proxy scores yet: the scoring (`... score`, under the compute locks) has "
                 "not run. Only the baselines from the logs are below.**", "", PUBLISHED,
                 ""] + log_baselines()
        out = "\n".join(lines)
        (FOLDER / "README.md").write_text(out + "\n")
        return out
    parts = [read_scores(f) for f in files]
    meta = parts[0][1]
    scores = pd.concat([p[0] for p in parts]).set_index("key")
    if scores.index.duplicated().any():
        raise SystemExit(f"a network is scored in two files of {FOLDER}")
    runs = nbnlp.logged_runs(True)
    runs = runs[runs["key"].isin(scores.index)]
    nets = runs.groupby("key", sort=False)
    n_nets = nbnlp.logged_runs(True)["key"].nunique()
    pieces = []
    for f in sorted(FOLDER.glob("scores*_run_info.json")):
        pieces += json.loads(f.read_text())["pieces"]
    pieces.sort(key=lambda p: p["started"])
    info = {"pieces": pieces}
    base = {f"val ppl after epoch {e}": f"val_loss_epoch{e}" for e in EARLY_EPOCHS}
    cols = list(TARGETS.values()) + list(base.values())
    per_net = nets[cols].mean()
    views = {"runs": (runs.set_index("key")[cols], scores.reindex(runs["key"])),
             "networks": (per_net, scores.reindex(per_net.index))}

    lines = ["# Zero-cost proxies on NAS-Bench-NLP (WikiText-2 logs), CPU", "",
             f"Produced by `python bench/study_nbnlp_correlation.py` (git {meta.get('git')} at the "
             f"first piece, {info['pieces'][0]['cpu']}, {meta.get('threads')} thread(s); pieces "
             "started " + ", ".join(p["started"] for p in info["pieces"])
             + f"; report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", ""]
    done = len(scores)
    lines += [f"**Progress: {done} of {n_nets} distinct networks scored ({len(runs)} of 341 "
              "finished runs)"
              + (": partial run, every number below is over the networks scored so far."
                 if done < n_nets else ".") + "**", "",
              "Settings: the logs' language model (33,278 words, emsize 400, nhid 600, 3 layers, "
              f"tied decoder), weight seed {meta.get('weight_seed')}, one batch of "
              f"{meta.get('batch_size')} x {meta.get('bptt')} tokens of {meta.get('images_description')}"
              f" (data seed {meta.get('data_seed')}), packed engine (float32; synflow float64). "
              "Targets are perplexities (exp of the logged cross-entropy); **the sign is flipped so "
              "that a positive correlation means a higher score predicts a lower perplexity** "
              "(as accuracy on the image spaces). Definitions: docs/nbnlp.md.", ""]
    if done < MIN_NETWORKS:
        lines += [f"Fewer than {MIN_NETWORKS} networks are scored: no correlation of the proxies "
                  "is reported (it would be noise). Scored so far (network keys): "
                  + ", ".join(f"{k}" for k in scores.index) + ".", ""]
        views = {}
    for view, (gt, sc) in views.items():
        what = ("one row per finished run (341; a network's score repeated for each run of it)"
                if view == "runs" else "one row per distinct network; targets: mean over its runs "
                "of the log perplexity")
        lines += [f"## Over the {view}: {what}", "",
                  "| proxy | n | " + " | ".join(f"Spearman {t} | Kendall {t}" for t in TARGETS)
                  + " |",
                  "|---|---:|" + "---:|" * (2 * len(TARGETS))]
        rows = [(p, sc[p].to_numpy(float)) for p in PROXIES if p in sc.columns]
        rows += [(f"baseline: {b}", -gt[c].to_numpy(float)) for b, c in base.items()]
        for name, v in rows:
            cells, n = [], 0
            for col in TARGETS.values():
                n, rho, tau = _corr(v, -gt[col].to_numpy(float))
                cells += [f"{rho:+.3f}", f"{tau:+.3f}"]
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    scored = sum(p.get("scored", 0) for p in info["pieces"])
    secs = sum(p.get("seconds", 0) for p in info["pieces"] if p.get("scored"))
    if scored:
        lines += [f"Cost: {secs / scored:.1f} s of wall time per network over {scored} networks "
                  "scored in pieces that finished (packed engine, one network per pass, "
                  + ", ".join(sorted({f"{p['threads']} thread(s)" for p in info["pieces"]}))
                  + ", under the shared compute lock of a loaded 2-core machine; interrupted "
                  "pieces are not counted).", ""]
    nan = {p: int(scores[p].isna().sum()) for p in PROXIES if p in scores.columns}
    why = {"nwot": "nwot is undefined for a cell without a leaky ReLU",
           "synflow": "synflow's all-ones |W| network overflows float64 on some cells"}
    said = [why[p] for p in why if nan.get(p)]
    lines += ["NaN scores are left out of each correlation (column n): "
              + (", ".join(f"{p} {k}" for p, k in nan.items() if k) or "none")
              + (f" ({'; '.join(said)}: docs/nbnlp.md)." if said else "."), "",
              PUBLISHED, ""]
    lines += log_baselines()
    out = "\n".join(lines)
    (FOLDER / "README.md").write_text(out + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["score", "report"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None,
                    help="score only the first N networks (a smoke test; use with --folder)")
    ap.add_argument("--shard", default="0/1",
                    help="K/N: score every N-th network of the order from the K-th (0-based), "
                         "into its own file, so that N pieces can run under different locks")
    ap.add_argument("--folder", default=None, help="results folder (default: %(default)s -> "
                    "bench/results/nbnlp_wikitext2)")
    a = ap.parse_args()
    if a.folder:
        global FOLDER
        FOLDER = Path(a.folder)
    if a.what == "score":
        k, _, n = a.shard.partition("/")
        score(a.threads, a.limit, (int(k), int(n)))
    print(report())


if __name__ == "__main__":
    main()
