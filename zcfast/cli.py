"""The ``zcfast`` command line.

    zcfast score --dataset cifar10 --proxies paper --archs 1000 --seed 0 --out scores.csv
    zcfast correlate scores.csv --plot scatter.png
    zcfast search ... / zcfast figure ...   (zero-cost NAS, see ``zcfast search -h``)
    zcfast info                              (versions and kernel backends)
"""

from __future__ import annotations

import argparse
import json
import sys


def _add_score(sub):
    p = sub.add_parser("score", help="score NB201 cells with zero-cost proxies into a CSV")
    p.add_argument("--space", default="nb201", choices=["nb201"])
    p.add_argument("--dataset", default="cifar10", help="cifar10 | cifar100 | ImageNet16-120")
    p.add_argument("--proxies", default="paper",
                   help="'paper' (the six of the paper), 'modern', 'all', or a comma list, e.g. "
                        "synflow,snip,vote,ensemble:zico+az_nas+vkdnw (ensemble[meanrank|vote|"
                        "logrank]:a+b; see docs/proxies_modern.md)")
    p.add_argument("--archs", default="1000",
                   help="'all', N (N distinct cells sampled with --seed) or a FILE of arch strings")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, minibatch and sampling")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="CSV written row by row (+ .meta.json)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --out file")
    p.add_argument("--engine", default="packed", choices=["packed", "loop"],
                   help="packed: many cells per pass (default); loop: one model at a time")
    p.add_argument("--chunk", type=int, default=None, help="cells per packed pass (default: auto)")
    p.add_argument("--data-root", default=None,
                   help="folder with a standard CIFAR download (python pickle batches)")
    p.add_argument("--images", default="default",
                   help="bundled image source: default | cifar10-subset | cifar100-real25 | imagenet16-standin")
    p.add_argument("--flavour", default="paper", choices=["paper", "official"])
    p.add_argument("--device", default=None, help="cpu | cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")


def _cmd_score(a) -> int:
    import torch

    from zcfast.scoring import score_to_file

    if a.threads:
        torch.set_num_threads(a.threads)
    res = score_to_file(
        a.out, archs=a.archs, proxies=a.proxies, dataset=a.dataset, seed=a.seed,
        batch_size=a.batch_size, engine=a.engine, resume=a.resume, data_root=a.data_root,
        images=a.images, flavour=a.flavour, device=a.device, chunk=a.chunk,
        progress=not a.no_progress,
    )
    m = res["meta"]
    print(f"scored {res['scored']} of {res['total']} cells in {res['seconds']:.1f} s "
          f"({res['cells_per_s']:.2f} cells/s, engine {m['engine']}) -> {res['out']}")
    print(f"images: {m['images_description']}")
    if res.get("ensembles"):
        print(f"ensembles {', '.join(res['ensembles'])}: ranks over {m['ensemble_ranks_over']}")
    return 0


def _add_correlate(sub):
    p = sub.add_parser("correlate", help="Spearman/Kendall of a score file vs NB201 ground truth")
    p.add_argument("scores", help="CSV written by 'zcfast score'")
    p.add_argument("--dataset", default=None, help="default: the dataset recorded in the file")
    p.add_argument("--target", default="test_acc", choices=["test_acc", "val_acc"])
    p.add_argument("--plot", default=None, help="write a score-vs-accuracy scatter per proxy (PNG)")
    p.add_argument("--json", default=None, help="also write the table as JSON")
    p.add_argument("--ensembles", default=None,
                   help="extra ensemble columns over the file's columns, comma separated, e.g. "
                        "vote,ensemble[meanrank]:synflow+nwot (ranks over the file's cells)")


def _cmd_correlate(a) -> int:
    from zcfast.correlate import METRICS_NOTE, correlation_table, format_table, plot_scatter
    from zcfast.scoring import add_ensembles, parse_proxies, read_scores

    scores, meta = read_scores(a.scores)
    ds = a.dataset or meta.get("dataset")
    if ds is None:
        raise ValueError(f"{a.scores} has no meta file: pass --dataset")
    extra = [c for c in parse_proxies(a.ensembles) if c not in scores.columns] if a.ensembles else []
    scores = add_ensembles(scores, extra)
    tab = correlation_table(scores, ds, a.target)
    title = (f"NB201 {ds}: {len(scores)} cells, target {a.target} (200 epochs); "
             f"images: {meta.get('images_description', 'unknown (no meta file)')}; "
             f"batch {meta.get('batch_size', '?')}, seed {meta.get('seed', '?')}, "
             f"engine {meta.get('engine', '?')}")
    if meta.get("ensembles") or extra:
        title += f"; ensembles rank the {len(scores)} cells of the file"
    print(format_table(tab, title))
    print(METRICS_NOTE)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"title": title, "table": tab.reset_index().to_dict(orient="records")}, f, indent=1)
    if a.plot:
        plot_scatter(scores, ds, a.plot, a.target, title)
        print(f"plot -> {a.plot}")
    return 0


def _cmd_info(a) -> int:
    import zcfast

    print(json.dumps(zcfast.backend_info(), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zcfast", description="batched zero-cost proxies and zero-cost NAS")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_score(sub)
    _add_correlate(sub)
    sub.add_parser("info", help="versions and the backend each fused op uses")
    from zcfast.search import cli as search_cli  # a broken search module must fail loudly

    search_cli.add_parsers(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    handlers = {"score": _cmd_score, "correlate": _cmd_correlate, "info": _cmd_info}
    try:
        if a.cmd in handlers:
            return handlers[a.cmd](a)
        return a.func(a)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"zcfast {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nzcfast {a.cmd}: interrupted (rows written so far are kept; use --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
