"""``zcfast search`` and ``zcfast figure`` (registered by zcfast.cli through :func:`add_parsers`).

    zcfast search --space nb201 --dataset cifar100 --algo ae --warmup 3000 --move 24 \\
        --budget 300 --seeds 20 --proxy synflow --out runs.jsonl --plot curves.png
    zcfast figure --dataset cifar100 --seeds 20 --out fig.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _option(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option expects NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def _options(pairs) -> dict:
    from zcfast.search.driver import DEFAULT_OPTIONS

    out = {}
    for k, v in pairs or []:
        if k not in DEFAULT_OPTIONS:
            raise ValueError(f"unknown search option {k!r}: expected one of {', '.join(DEFAULT_OPTIONS)}")
        try:
            out[k] = int(v) if isinstance(DEFAULT_OPTIONS[k], int) else float(v)
        except ValueError:
            raise ValueError(f"--option {k}={v!r}: not a number") from None
    return out


def _add_common(p):
    p.add_argument("--space", default="nb201",
                   help="search space: nb201 (default), nb101, nbnlp (docs/spaces.md)")
    p.add_argument("--data", default=None,
                   help="benchmark file of the space's full ground truth (nb101: the official "
                   "nasbench_only108.tfrecord); default: the bundled data")
    p.add_argument("--dataset", default=None,
                   help="cifar10 | cifar100 | ImageNet16-120 (default: the space's search dataset: "
                        "nb201 cifar100, nb101 cifar10, nbnlp wikitext2)")
    p.add_argument("--budget", type=int, default=None,
                   help="oracle queries per search: trained models, repeats included "
                        "(docs/search.md, budget accounting; default 300, or the pool's size "
                        "when the space's table is a smaller pool)")
    p.add_argument("--proxy", default=None,
                   help="zero-cost proxy used by warmup and move (default synflow): a proxy, or "
                        "a label-free ensemble such as vote or ensemble:synflow+jacob_cov+snip "
                        "(ranks over the cells each comparison compares; docs/search.md)")
    p.add_argument("--score-seed", type=int, default=0, help="weight seed of the proxy scores")
    from zcfast.cli_common import add_minibatch_arguments, add_precision_argument

    add_minibatch_arguments(p, seed_flag="--score-seed")  # what the proxy scores are made on
    add_precision_argument(p)
    p.add_argument("--cache-dir", default=None,
                   help="score cache root (default $ZCFAST_CACHE or ~/.cache/zcfast)")
    p.add_argument("--scores", action="append", default=None, metavar="FILE",
                   help="a 'zcfast score' CSV with the proxy's column (an ensemble: its members' "
                        "columns), imported into the cache first; repeat it for members or cells "
                        "scored in separate runs (each file's settings are checked)")
    p.add_argument("--engine", default="auto", choices=["auto", "packed", "batched", "loop"],
                   help="live scorer for cells missing from the cache: packed (= batched, "
                        "= auto: many cells per pass, as `zcfast score --engine packed`) or loop")
    p.add_argument("--device", default="auto",
                   help="device of the live scorer: auto (CUDA when available, else CPU; as "
                        "`zcfast score`), cpu, cuda or cuda:N")
    p.add_argument("--option", type=_option, action="append", metavar="NAME=VALUE",
                   help="driver tunable, e.g. population=64, rl_lr=0.01 (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    from zcfast.executors import add_cli_options
    from zcfast.runtime import add_threads_argument

    add_threads_argument(p)
    add_cli_options(p)  # --ray [ADDRESS]: the live scorer's asks run on a Ray cluster


def _resolve(a) -> None:
    """Defaults that depend on the space, and the checks argparse cannot make."""
    from zcfast.data import dataset_name
    from zcfast.search.driver import check_algo
    from zcfast.spaces import get_space

    sp = get_space(a.space)
    if getattr(a, "algo", None) is not None:
        a.algo = check_algo(a.algo)  # its aliases and any case; ValueError names a bad one
    # the driver's own checks, made here before torch is imported (same messages)
    if a.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {a.seeds}")
    if a.budget is not None and a.budget < 1:
        raise ValueError(f"budget {a.budget} is out of range: expected >= 1 trained models")
    for opt, what in (("warmup", "cells"), ("move", "proposals")):
        if getattr(a, opt, 0) < 0:
            raise ValueError(f"{opt} {getattr(a, opt)} is out of range: expected 0 (off) or more "
                             f"{what}")
    from zcfast.proxy_names import ALL, unknown

    bad = unknown(getattr(a, "proxy", None) or "")
    if bad:
        raise ValueError(f"unknown proxy {bad[0]!r}: available are {', '.join(ALL)}")
    if a.proxy is None:
        a.proxy = "synflow"
    elif getattr(a, "warmup", None) == 0 and getattr(a, "move", None) == 0:
        # the search asks for scores only to warm up or to propose moves
        print(f"note: --proxy {a.proxy} is not used: zero-cost warmup and move are off "
              "(--warmup W, --move M)"
              + ("; the --scores files are only imported into the cache" if a.scores else ""))
    if a.dataset is None:
        a.dataset = sp.default_dataset()
    elif dataset_name(a.dataset) not in sp.datasets:
        raise ValueError(f"--dataset {a.dataset!r}: the {sp.name} benchmark has "
                         f"{', '.join(sp.datasets)}")
    if a.score_seed < 0:
        raise ValueError(f"--score-seed {a.score_seed}: must be a non-negative integer")
    from zcfast.cli_common import check_minibatch_arguments

    check_minibatch_arguments(a)
    if a.data_root is not None and dataset_name(a.dataset) not in ("cifar10", "cifar100"):
        raise ValueError(f"--data-root {a.data_root!r} reads a CIFAR-10 or CIFAR-100 download; "
                         f"the search's dataset {a.dataset!r} has none")
    if a.engine == "packed":  # score's name for the packed engine
        a.engine = "batched"
    if a.budget is None:
        from zcfast.search.driver import universe

        n = len(universe(a.dataset, a.space, a.data))
        a.budget = min(300, n)
        if a.budget < 300:
            print(f"--budget {a.budget}: the {a.space} table is a pool of {n} networks")


def _search_kwargs(a) -> dict:
    from zcfast.executors import executor_from_args
    from zcfast.runtime import set_threads
    from zcfast.search.cache import DATA_FREE_PROXIES, ScoreCache, ScoreKey
    from zcfast.search.scorer import default_scorer

    set_threads(a.threads)

    from zcfast.search.driver import proxy_members

    cache = ScoreCache(a.cache_dir)
    members, _ = proxy_members(a.proxy)
    from zcfast.cli_common import MINIBATCH_FIELDS

    data = {f: getattr(a, f) for f in MINIBATCH_FIELDS}
    # the scores' settings: the cache's key, the import's check and the live scorer agree
    reads = [m for m in members if m not in DATA_FREE_PROXIES]  # whose key holds the minibatch
    if a.data_root is not None:  # the key names the download by its content (docs/data.md);
        from zcfast.data import image_source  # the scorer checks it reads that download

        data["images"] = image_source(a.dataset, data_root=a.data_root).name
    key = ScoreKey.of((reads or members)[0], a.dataset, a.score_seed, space=a.space,
                      precision=a.precision, **data)
    if a.scores:
        _import_score_files(cache, key, members, a.scores)
    ex = executor_from_args(a, a.device)
    scorer = default_scorer(a.proxy, a.dataset, a.score_seed, engine=a.engine, device=a.device,
                            space=a.space, executor=None if a.ray is None else ex,
                            precision=a.precision, data_root=a.data_root, **data)
    return {"cache": cache, "scorer": scorer, "score_key": key}


def _import_score_files(cache, key, members: list, files: list) -> None:
    """Import every member's column from each of ``files`` that has it (a member may be split
    over files that hold different cells). Before anything is imported: the member columns are
    joined as ``zcfast correlate`` joins files (zcfast.scoring.read_score_files: one column's
    files agree on its settings and on every cell they share), a member that no file holds is
    an error naming the files' columns, and every file is checked against the search's settings
    and the scores already cached."""
    from zcfast.scoring import read_score_files, read_scores

    tables = {f: read_scores(f) for f in files}  # read once: the join and every member's checks
    held = read_score_files(files, columns=members, tables=tables)[1]["column_files"]
    missing = [m for m in members if m not in held]
    if missing:
        cols = {f: [c for c in t[0].columns if c != "arch"] for f, t in tables.items()}
        raise ValueError(f"no --scores file has a {missing[0]!r} column (the search's proxy "
                         f"needs {', '.join(members)}; "
                         + "; ".join(f"{f}: {', '.join(c)}" for f, c in cols.items()) + ")")
    todo = [(m, f, cache.check_import(key.for_proxy(m), f, table=tables[f]))
            for m in members for f in held[m]]
    for m, f, (keys, values) in todo:
        cache.add(key.for_proxy(m), keys, values)
        print(f"imported {len(keys)} {m} scores from {f} into {cache.path(key.for_proxy(m))}")


def _close(kw: dict) -> None:
    ex = getattr(kw["scorer"], "executor", None)  # --ray actors
    if ex is not None:
        ex.close()


def _cmd_search(a) -> int:
    _resolve(a)  # before the heavy imports below
    from zcfast.cli_common import refuse_overwrite

    refuse_overwrite(a.out, a.resume)  # as run_seeds will
    from zcfast.search import hw
    from zcfast.search.runs import (
        Variant,
        complete_runs,
        curve_table,
        plot_curves,
        run_seeds,
        summarize,
    )

    seeds = list(range(a.seed_start, a.seed_start + a.seeds))
    opts = _options(a.option)
    if a.algo == "ae":
        from zcfast.search.driver import DEFAULT_OPTIONS

        pop = opts.get("population", DEFAULT_OPTIONS["population"])
        if a.budget <= pop:  # the budget ends before the first mutation
            print(f"note: --budget {a.budget} <= AE's population {pop}: every trained model is an "
                  "initial member (random, or the warmup's picks), none a mutation; a smaller "
                  "--option population=N lets evolution act")
    spec = hw.spec_from_args(a)
    kw = _search_kwargs(a)
    if spec is not None and spec.estimate and spec.estimate.split(":")[0] in ("params", "flops"):
        from zcfast.search.scorer import default_scorer

        kind = spec.estimate.split(":")[0]
        kw["estimate_scorers"] = {kind: default_scorer(kind, a.dataset, 0, engine=a.engine,
                                                       device=a.device, space=a.space)}
    runs = run_seeds(a.out, a.algo, dataset=a.dataset, budget=a.budget, warmup=a.warmup,
                     move=a.move, seeds=seeds, proxy=a.proxy, score_seed=a.score_seed,
                     resume=a.resume, progress=not a.no_progress, options=opts, space=a.space,
                     data=a.data, hardware=spec, **kw)
    _close(kw)
    runs = [r for r in runs if int(r["seed"]) in set(seeds)]
    v = Variant(runs[0]["algo"], a.warmup, a.move)
    # the printed name says which proxy warmed up or moved the search (the stored variant label,
    # which studies group by, stays as it is)
    name = v.label + (f" [{runs[0]['proxy']}]" if runs[0].get("proxy") else "")
    ok, failed = complete_runs(runs)
    at = [k for k in (10, 25, 50, 100, 200, a.budget) if k <= a.budget]
    from zcfast.search.driver import universe

    what = universe(a.dataset, a.space, a.data).test_name
    unit = "%" if a.space in ("nb201", "nb101") else ""
    print(f"{what[0].upper()}{what[1:]} of the best-validation model after k trained models, "
          "mean [25%, 75%]:")
    print(curve_table({v: runs}, sorted(set(at))))
    if spec is not None and spec.estimate and spec.budgets:
        print("(searched on an estimate: the selected model may break the true budget; the "
              "best-validation trained model that truly meets it, by the measured table:)")
        print(hw.within_table(ok, sorted(set(at))))
    if failed:
        print(f"{len(failed)} of {len(runs)} runs FAILED to spend their budget (seeds "
              f"{[r['seed'] for r in failed]}); they are left out of every number above")
    if ok:
        s = summarize(ok)
        print(f"{name}: {s.n} complete run{'s' if s.n != 1 else ''}, mean {what} of the selected model after "
              f"{a.budget} trained models {s.mean[-1]:.2f}{unit} -> {a.out}")
        for line in hw.summary_lines(ok):
            print(line)
        if a.plot:
            if spec is not None and spec.cost_metric:
                hw.plot_front(ok, a.plot, title=f"{a.space.upper()} {runs[0]['dataset']}: "
                              f"{name}, {hw.describe(spec, runs[0]['dataset'])}, {s.n} seeds")
            else:
                plot_curves({v: runs}, a.plot,
                            title=f"{a.space.upper()} {runs[0]['dataset']}: {name}, {s.n} seeds")
            print(f"plot -> {a.plot}")
    return 1 if failed else 0


def _thresholds(text, uni) -> list:
    """--thresholds as floats; by default five levels just below the universe's best
    headline value (its 99th, 99.5th, 99.8th and 99.9th percentiles and its maximum)."""
    if text is None:
        v = np.asarray(uni.test, dtype=np.float64)
        v = v[np.isfinite(v)]
        return [round(float(q), 2) for q in np.quantile(v, [0.99, 0.995, 0.998, 0.999, 1.0])]
    out = []
    for t in text.split(","):
        try:
            out.append(float(t))
        except ValueError:
            raise ValueError(f"--thresholds: {t.strip()!r} is not a number (expected a comma "
                             "list such as 72,72.5,73)") from None
    return out


def _cmd_figure(a) -> int:
    from zcfast.search.driver import universe
    from zcfast.search.runs import (
        FIGURE_VARIANTS,
        curve_table,
        parse_variant,
        plot_curves,
        reach_table,
        run_variants,
    )

    _resolve(a)
    variants = [parse_variant(t) for t in a.variants.split(",")] if a.variants else list(FIGURE_VARIANTS)
    for v in variants:
        if v.baseline not in variants:
            variants.insert(0, v.baseline)
    variants = list(dict.fromkeys(variants))
    out = Path(a.out)
    runs_dir = Path(a.runs_dir) if a.runs_dir else out.with_name(out.stem + "_runs")
    kw = _search_kwargs(a)
    uni = universe(a.dataset, a.space, a.data)
    thresholds = _thresholds(a.thresholds, uni)  # before the searches: a bad list fails at once
    groups = run_variants(runs_dir, variants, dataset=a.dataset, budget=a.budget, seeds=a.seeds,
                          proxy=a.proxy, score_seed=a.score_seed, progress=not a.no_progress,
                          options=_options(a.option), space=a.space, data=a.data, **kw)
    _close(kw)
    ds = next(iter(groups.values()))[0]["dataset"]
    title = (f"{uni.space.upper()} {ds}: {uni.test_name} of the best-validation model vs trained "
             f"models, mean and 25-75% band over "
             f"{a.seeds} seeds; proxy {a.proxy} (weight seed {a.score_seed})")
    plot_curves(groups, out, title=title)
    at = sorted({k for k in (10, 25, 50, 100, 200, a.budget) if k <= a.budget})
    text = "\n".join([
        f"# {title}", "",
        f"## Trained models needed until the best-validation model reaches X ({uni.test_name})",
        "Cell: from the mean curve (median over seeds, seeds reaching / seeds); '-' = not reached.", "",
        reach_table(groups, thresholds), "",
        "## Test accuracy of the best-validation model [25%, 75%] after k trained models", "",
        curve_table(groups, at), "",
        f"Runs (JSONL, one line per seed): {runs_dir}", "",
    ])
    md = out.with_suffix(".md")
    md.write_text(text)
    print(text)
    print(f"figure -> {out}; tables -> {md}")
    return 0


def _cmd_verify(a) -> int:
    from zcfast.search.runs import read_runs, verify_runs

    total, problems = 0, []
    for path in a.runs:
        if not Path(path).is_file():
            problems.append(f"{path}: no such file")
            continue
        runs = read_runs(path)
        tail = b"" if str(path).endswith(".gz") else Path(path).read_bytes()[-1:]
        if tail not in (b"", b"\n"):
            print(f"{path}: the last line is incomplete (a search still writing the file, or one "
                  "interrupted mid-write): left out, not verified")
        if not runs:
            problems.append(f"{path}: no runs")
        total += len(runs)
        problems += [f"{path}: {m}" for m in verify_runs(runs)]
    for m in problems[:50]:
        print(m)
    if len(problems) > 50:
        print(f"... and {len(problems) - 50} more problems")
    print(f"verified {total} run{'s' if total != 1 else ''} in {len(a.runs)} file(s): "
          + ("all consistent" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


def add_parsers(sub) -> None:
    p = sub.add_parser("search", help="zero-cost NAS on a search space (--space; RAND/AE/RL/BP, "
                       "+warmup, +move), many seeds")
    p.add_argument("--algo", required=True, help="rand | ae | rl | bp")
    p.add_argument("--warmup", type=int, default=0, help="zero-cost warmup size W (0 = off)")
    p.add_argument("--move", type=int, default=0, help="zero-cost move proposals M (0 = off)")
    p.add_argument("--seeds", type=int, default=20, help="number of searches (seeds)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed")
    p.add_argument("--out", required=True, help="JSONL, one line per seed, written as each finishes")
    p.add_argument("--resume", action="store_true", help="skip the seeds already in --out")
    p.add_argument("--plot", default=None,
                   help="PNG of the mean test accuracy of the best-validation model (with two "
                   "objectives: the front of the first seed and the hypervolume curves)")
    _add_common(p)
    from zcfast.search import hw

    hw.add_arguments(p)
    p.set_defaults(func=_cmd_search)

    v = sub.add_parser("verify-runs", help="recompute every curve of 'zcfast search' JSONL runs "
                       "from their trained cells and the ground truth; exit 1 on any mismatch")
    v.add_argument("runs", nargs="+", help="JSONL (or .jsonl.gz) files written by zcfast search")
    v.set_defaults(func=_cmd_verify)

    f = sub.add_parser("figure", help="all variants of the paper's NB201 search figure + tables")
    f.add_argument("--seeds", type=int, default=20, help="searches (seeds) per variant")
    f.add_argument("--out", required=True, help="figure PNG; the tables go to the same name .md")
    f.add_argument("--runs-dir", default=None, help="JSONL runs folder (default <out>_runs/), resumed")
    f.add_argument("--variants", default=None,
                   help="comma list, e.g. 'ae,ae+warmup(3000),ae+move(24)' (default: the paper's set)")
    f.add_argument("--thresholds", default=None,
                   help="headline values (e.g. accuracies in %%) for the 'models needed to "
                        "reach' table (default: the universe's 99th, 99.5th, 99.8th and 99.9th "
                        "percentiles and its best)")
    _add_common(f)
    f.set_defaults(func=_cmd_figure)
