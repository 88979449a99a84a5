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
    from zcfast.runtime import add_threads_argument

    p = sub.add_parser("score", help="score networks of a search space with zero-cost proxies into a CSV")
    p.add_argument("--space", default="nb201",
                   help="search space: nb201 (default) | nb101 | nbnlp (docs/spaces.md)")
    p.add_argument("--data", default=None,
                   help="the space's benchmark file, for --archs all (nb101: the official "
                        "nasbench_only108.tfrecord; default: the bundled networks)")
    p.add_argument("--dataset", default=None,
                   help="cifar10 (default) | cifar100 | ImageNet16-120 (nb201); cifar10 (nb101); "
                        "wikitext2 (nbnlp, its default)")
    p.add_argument("--proxies", default="paper",
                   help="'paper' (the six of the paper), 'modern', 'all' (each expands to the "
                        "proxies that apply to --space's networks: docs/nbnlp.md), or a comma "
                        "list, e.g. "
                        "synflow,snip,vote,ensemble:zico+az_nas+vkdnw (ensemble[meanrank|vote|"
                        "logrank]:a+b; see docs/proxies_modern.md); econas[:epochs=E+channels=C+"
                        "resolution=R+images=N+batch=B+schedule=S] adds a reduced-training proxy "
                        "(docs/reduced_training.md)")
    p.add_argument("--archs", default=None,
                   help="default: 1000 sampled networks where the space's table is complete "
                        "(nb201; nb101 with --data), 'all' where it is a pool (nb101's bundled "
                        "cells, nbnlp's logs), so every row has a ground truth; "
                        "'all' (nb201: 15,625 cells; nb101: the bundled 292 cells or every cell "
                        "of --data; nbnlp: the 341 finished logged runs), N (N distinct networks "
                        "sampled with --seed) or a FILE (nb201: arch strings or indices; nb101: "
                        "one JSON {\"matrix\", \"ops\"} per line; nbnlp: one logged recepie_id "
                        "or one cell graph, the logs' recepie JSON, per line)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of cell sampling, weights and minibatch (each overridable below)")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="seed of the cells drawn by --archs N (default: --seed)")
    p.add_argument("--weight-seed", type=int, default=None,
                   help="seed of every cell's initial weights (default: --seed)")
    from zcfast.cli_common import add_minibatch_arguments

    add_minibatch_arguments(p)
    p.add_argument("--out", required=True, help="CSV written chunk by chunk (+ .meta.json)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --out file")
    p.add_argument("--engine", default="packed", choices=["packed", "loop"],
                   help="packed: many cells per pass (default); loop: one model at a time")
    p.add_argument("--chunk", type=int, default=None, help="cells per packed pass (default: auto)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available, else CPU; default) | cpu | cuda | cuda:N")
    from zcfast.cli_common import add_precision_argument

    add_precision_argument(p)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true")
    from zcfast.executors import add_cli_options

    add_cli_options(p)  # --ray [ADDRESS], --ray-workers, ...


def _precheck_score(a) -> None:
    """Reject bad arguments before torch is imported (an answer well under a second); the full
    checks follow in score_to_file. ValueError names the bad value."""
    from zcfast.data import dataset_name
    from zcfast.proxy_names import ALL, unknown
    from zcfast.spaces import get_space

    sp = get_space(a.space)
    if a.dataset is not None and dataset_name(a.dataset) not in sp.datasets:
        raise ValueError(f"--dataset {a.dataset!r}: the {sp.name} networks are scored on "
                         f"{', '.join(sp.datasets)}")
    from zcfast.cli_common import check_minibatch_arguments

    check_minibatch_arguments(a)
    if a.chunk is not None and a.chunk < 1:
        raise ValueError(f"--chunk {a.chunk}: expected a positive integer")
    bad = unknown(a.proxies)
    if bad:
        raise ValueError(f"unknown proxy {bad[0]!r}: available are {', '.join(ALL)} (and the "
                         "groups paper, modern, all; ensembles; econas; see --help)")
    if a.archs is not None:
        sp.check_archs_spec(a.archs)
    from zcfast.cli_common import refuse_overwrite

    refuse_overwrite(a.out, a.resume)  # as ScoreWriter will, before the heavy imports


def _cmd_score(a) -> int:
    _precheck_score(a)
    from zcfast.executors import executor_from_args
    from zcfast.runtime import set_threads
    from zcfast.scoring import score_summary, score_to_file

    set_threads(a.threads)
    if a.archs is None:  # a sample of a complete space; the whole of a pool
        from zcfast.search.driver import ground_truth
        from zcfast.spaces import get_space

        ds = a.dataset or get_space(a.space).default_dataset()
        a.archs = "1000" if ground_truth(ds, a.space, a.data).complete else "all"
    ex = executor_from_args(a, a.device)  # local, or --ray actors (started on first use)
    res = score_to_file(
        a.out, archs=a.archs, proxies=a.proxies, dataset=a.dataset, seed=a.seed,
        batch_size=a.batch_size, engine=a.engine, resume=a.resume, data_root=a.data_root,
        images=a.images, flavour=a.flavour, device=a.device, chunk=a.chunk,
        progress=not a.no_progress, sample_seed=a.sample_seed, weight_seed=a.weight_seed,
        data_seed=a.data_seed, normalization=a.normalization, executor=ex, space=a.space,
        data=a.data, precision=a.precision,
    )
    ex.close()  # (a failed run has stopped its actors already)
    m = res["meta"]
    print(score_summary(res))
    print(f"images: {m['images_description']}")
    if m.get("reduced_training"):
        from zcfast.reduced_training import summary

        for col, d in m["reduced_training"].items():
            print(f"{col}: {summary(d)}")
    print(f"seeds: sample {m['sample_seed']}, weights {m['weight_seed']}, data {m['data_seed']}")
    if res.get("ensembles"):
        print(f"ensembles {', '.join(res['ensembles'])}: ranks over {m['ensemble_ranks_over']}")
    return 0


def _add_correlate(sub):
    p = sub.add_parser("correlate",
                       help="Spearman/Kendall of a score file vs its search space's ground truth")
    p.add_argument("scores", nargs="+",
                   help="CSV written by 'zcfast score'; several are joined by network (proxies "
                        "or cells scored in separate runs; docs/proxies_modern.md)")
    p.add_argument("--dataset", default=None, help="default: the dataset recorded in the file")
    p.add_argument("--target", default=None,
                   help="ground-truth column (nb201: test_acc (default) | val_acc; nb101: val_acc; "
                        "nbnlp: neg_final_val_ppl (default) | neg_best_val_ppl | neg_test_ppl | "
                        "neg_final_test_ppl)")
    p.add_argument("--data", default=None,
                   help="the space's benchmark file (default: the file's, else the bundled data)")
    p.add_argument("--plot", default=None, help="write a score-vs-accuracy scatter per proxy (PNG)")
    p.add_argument("--json", default=None, help="also write the table as JSON")
    p.add_argument("--ensembles", default=None,
                   help="extra ensemble columns over the file's columns, comma separated, e.g. "
                        "vote,ensemble[meanrank]:synflow+nwot (ranks over the file's cells)")


MIN_CELLS = 20  # below this, correlate warns that its numbers are noise


def _cmd_correlate(a) -> int:
    import os

    for f in a.scores:  # a missing file is named before the heavy imports
        if not os.path.exists(f):
            raise FileNotFoundError(2, "No such file or directory", f)
    from zcfast.correlate import METRICS_NOTE, correlation_table, format_table, plot_scatter
    from zcfast.gaps import explain, format_gaps
    from zcfast.scoring import add_ensembles, parse_proxies, read_score_files

    scores, meta = read_score_files(a.scores)
    ds = a.dataset or meta.get("dataset")
    if ds is None:
        raise ValueError(f"{a.scores[0]} has no meta file: pass --dataset")
    extra = [c for c in parse_proxies(a.ensembles) if c not in scores.columns] if a.ensembles else []
    scores = add_ensembles(scores, extra)
    space = meta.get("space", "nb201")
    data = a.data or meta.get("data")
    tab = correlation_table(scores, ds, a.target, space, data)
    varies = "differs by file" if len(a.scores) > 1 else "?"
    images = meta.get("images_description", "unknown (no meta file)" if varies == "?" else varies)
    title = (f"{space.upper()} {ds}: {len(scores)} cells, target {tab.attrs['target']} "
             f"({tab.attrs['targets']}); images: {images}; "
             f"batch {meta.get('batch_size', varies)}, seed {meta.get('seed', varies)}, "
             f"engine {meta.get('engine', varies)}, device {meta.get('device', varies)}")
    settings = [f"{k} {meta[k]}" for k in ("precision", "flavour", "normalization")
                if meta.get(k) is not None]
    if settings:
        title += "; " + ", ".join(settings)
    if len(a.scores) > 1:
        cols = meta["column_files"]
        title += "; joined from " + "; ".join(
            f"{f} ({', '.join(c for c, fs in cols.items() if f in fs and c != 'arch')})"
            for f in meta["files"])
    if meta.get("ensembles") or extra:
        title += (f"; ensembles rank the {len(scores)} cells of the "
                  + ("joined files" if len(a.scores) > 1 else "file"))
    print(format_table(tab, title))
    print(METRICS_NOTE)
    if len(scores) < MIN_CELLS:
        print(f"\nWARNING: only {len(scores)} cells: rank correlations over fewer than "
              f"{MIN_CELLS} cells are too noisy to compare proxies (or with published values).")
    from zcfast.correlate import held_cells, hit_sizes

    kept = {c: held_cells(scores, c) for c in tab.index if c in scores.columns}
    absent = {c: len(scores) - int(m.sum()) for c, m in kept.items() if m.sum() < len(scores)}
    gaps = explain(scores)
    for c, k in absent.items():  # NaN because no joined file holds the cell: not a proxy gap
        gaps[c] = {**explain(scores.loc[kept[c], [c]])[c], "not_in_files": k}
    notes = format_gaps(gaps)
    if absent:
        notes = "\n".join([f"- {c}: {k} of {len(scores)} joined cells are in no file holding "
                           f"it{' (or one of its members)' if c not in scores.attrs['held'] else ''}"
                           f", left out of every metric of its row (hit over its {len(scores) - k}"
                           f" cells: {'/'.join(map(str, hit_sizes(len(scores) - k)))})"
                           for c, k in absent.items()] + ([notes] if notes else []))
    print(f"\n{notes}" if notes else "\nEvery cell has a finite score for every proxy.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"title": title, "table": tab.reset_index().to_dict(orient="records"),
                       "gaps": gaps}, f, indent=1)
    if a.plot:
        plot_scatter(scores, ds, a.plot, a.target, title, space=space, data=data)
        print(f"plot -> {a.plot}")
    return 0


def _cmd_info(a) -> int:
    import zcfast
    from zcfast.runtime import info

    print(json.dumps({**zcfast.backend_info(), "cpu_threads": info()}, indent=1))
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
    import warnings

    # a warning reads like the errors below, without the source line it was raised on
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda msg, *_, **__: f"zcfast {a.cmd}: warning: {msg}\n"
    try:
        if getattr(a, "threads", None) is not None:  # every computing command: before torch
            from zcfast.runtime import check_threads

            check_threads(a.threads)
        if a.cmd in handlers:
            return handlers[a.cmd](a)
        return a.func(a)
    except BrokenPipeError as e:  # stdout's reader stopped early (`| head`): exit as SIGPIPE would
        if not _stdout_broken():
            print(f"zcfast {a.cmd}: error: {e}", file=sys.stderr)
            return 2
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141
    except (ValueError, OSError) as e:  # bad input, and files: missing, existing, a folder...
        print(f"zcfast {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nzcfast {a.cmd}: interrupted (rows written so far are kept; use --resume)",
              file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


def _stdout_broken() -> bool:
    """Whether standard output's reader has gone (a BrokenPipeError from elsewhere, a socket
    say, is an error like any other)."""
    try:
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
