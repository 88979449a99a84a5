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
                   help="'paper' (the six of the paper), 'all', or a comma list, e.g. synflow,snip; "
                        "econas[:epochs=E+channels=C+resolution=R+images=N+batch=B+schedule=S] "
                        "adds a reduced-training proxy (docs/reduced_training.md)")
    p.add_argument("--archs", default="1000",
                   help="'all', N (N distinct cells sampled with --seed) or a FILE of arch strings")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of cell sampling, weights and minibatch (each overridable below)")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="seed of the cells drawn by --archs N (default: --seed)")
    p.add_argument("--weight-seed", type=int, default=None,
                   help="seed of every cell's initial weights (default: --seed)")
    p.add_argument("--data-seed", type=int, default=None,
                   help="seed of the minibatch: images drawn and their augmentation (default: --seed)")
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
    p.add_argument("--normalization", default="paper", choices=["paper", "dataset"],
                   help="paper: CIFAR-10's mean/std for both CIFARs, as the paper's loader "
                        "(default); dataset: CIFAR-100's own for CIFAR-100")
    p.add_argument("--flavour", default="paper", choices=["paper", "official"])
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available, else CPU; default) | cpu | cuda | cuda:N")
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
        progress=not a.no_progress, sample_seed=a.sample_seed, weight_seed=a.weight_seed,
        data_seed=a.data_seed, normalization=a.normalization,
    )
    m = res["meta"]
    print(f"scored {res['scored']} of {res['total']} cells in {res['seconds']:.1f} s "
          f"({res['cells_per_s']:.2f} cells/s, engine {m['engine']}, device {m['device']}: "
          f"{m['device_name']}) -> {res['out']}")
    print(f"images: {m['images_description']}")
    if m.get("reduced_training"):
        from zcfast.reduced_training import summary

        for col, d in m["reduced_training"].items():
            print(f"{col}: {summary(d)}")
    print(f"seeds: sample {m['sample_seed']}, weights {m['weight_seed']}, data {m['data_seed']}")
    return 0


def _add_correlate(sub):
    p = sub.add_parser("correlate", help="Spearman/Kendall of a score file vs NB201 ground truth")
    p.add_argument("scores", help="CSV written by 'zcfast score'")
    p.add_argument("--dataset", default=None, help="default: the dataset recorded in the file")
    p.add_argument("--target", default="test_acc", choices=["test_acc", "val_acc"])
    p.add_argument("--plot", default=None, help="write a score-vs-accuracy scatter per proxy (PNG)")
    p.add_argument("--json", default=None, help="also write the table as JSON")


def _cmd_correlate(a) -> int:
    from zcfast.correlate import correlation_table, format_table, plot_scatter
    from zcfast.scoring import read_scores

    scores, meta = read_scores(a.scores)
    ds = a.dataset or meta.get("dataset")
    if ds is None:
        raise ValueError(f"{a.scores} has no meta file: pass --dataset")
    tab = correlation_table(scores, ds, a.target)
    title = (f"NB201 {ds}: {len(scores)} cells, target {a.target} (200 epochs); "
             f"images: {meta.get('images_description', 'unknown (no meta file)')}; "
             f"batch {meta.get('batch_size', '?')}, seed {meta.get('seed', '?')}, "
             f"engine {meta.get('engine', '?')}, device {meta.get('device', '?')}")
    print(format_table(tab, title))
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
