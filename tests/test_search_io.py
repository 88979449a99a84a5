"""zcfast.search around the driver: the score cache, live scoring, resumable JSONL runs,
aggregation tables and the ``zcfast search`` / ``zcfast figure`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zcfast.cli import main
from zcfast.data import groundtruth
from zcfast.search import (
    ScoreCache,
    ScoreKey,
    Variant,
    default_scorer,
    models_to_reach,
    parse_variant,
    reach_table,
    read_runs,
    run_search,
    run_seeds,
    summarize,
)
from zcfast.spaces import nb201

N = nb201.NUM_ARCHS


class CountingScorer:
    """A synthetic proxy (true test accuracy) that counts the cells it is asked to score."""

    def __init__(self):
        self.calls = 0
        self.cells = 0
        self.acc = groundtruth("cifar100")["test_acc"].to_numpy()

    def __call__(self, codes):
        self.calls += 1
        self.cells += len(codes)
        return self.acc[[nb201.index_of_code(int(c)) for c in codes]]


# ---------------------------------------------------------------------------------- cache
def test_cache_avoids_rescoring(tmp_path):
    cache = ScoreCache(tmp_path)
    sc = CountingScorer()
    a = run_search("ae", "cifar100", 80, 200, 24, 0, "synflow", cache=cache, scorer=sc,
                   options={"population": 16})
    first = sc.cells
    assert first == a["scored_live"] == a["scores_used"] > 200
    # same search again, fresh cache object reading the files: nothing is rescored
    sc2 = CountingScorer()
    b = run_search("ae", "cifar100", 80, 200, 24, 0, "synflow", cache=ScoreCache(tmp_path),
                   scorer=sc2, options={"population": 16})
    assert sc2.calls == 0 and b["scored_live"] == 0
    assert a["trained"] == b["trained"]
    # another seed only scores the cells it has not seen
    c = run_search("ae", "cifar100", 80, 200, 24, 1, "synflow", cache=ScoreCache(tmp_path),
                   scorer=sc2, options={"population": 16})
    assert 0 < sc2.cells < c["scores_used"]


def test_cache_keys_and_files(tmp_path):
    k1 = ScoreKey.of("synflow", "cifar100", 0)
    k2 = ScoreKey.of("snip", "c100", 0, batch_size=64)
    # synflow reads no image and always runs in float64
    assert (k1.images, k1.batch_size, k1.data_seed, k1.precision) == (None, None, None, "fp64")
    assert k1.relpath().as_posix() == "scores/v2/nb201/synflow-v1/cifar100-paper-w0-fp64.csv"
    # a data proxy's key names the resolved image source, batch, minibatch seed, normalisation
    assert k2.relpath().as_posix() == (
        "scores/v2/nb201/snip-v1/cifar100-paper-w0-fp32-cifar10-subset-b64-d0-paper.csv")
    assert ScoreKey.of("snip", "cifar100", 0, data_seed=3).differences(k2) == {"data_seed": (3, 0)}
    with pytest.raises(ValueError, match="seed must be an int"):
        ScoreKey.of("synflow", "cifar100", "0")
    with pytest.raises(ValueError, match="unknown proxy"):
        ScoreKey.of("../x", "cifar100", 0)
    with pytest.raises(ValueError, match="reads images"):
        ScoreKey("nb201", "snip", 1, "cifar100", "paper", 0, "fp32")
    cache = ScoreCache(tmp_path)
    a, b = nb201.arch_at(3), nb201.arch_at(5)
    cache.add(k1, [a, b], [1.5, float("nan")])
    cache.add(k1, [a], [99.0])  # already cached: kept as it was
    p = cache.path(k1)
    assert p.read_text() == f"key,score\n{a},1.5\n{b},nan\n"
    with open(p, "a") as f:
        f.write(nb201.arch_at(7) + ",2.")  # torn append
    got = ScoreCache(tmp_path).load(k1)
    assert got[a] == 1.5 and np.isnan(got[b]) and nb201.arch_at(7) not in got
    assert ScoreCache(tmp_path).table(k1, [a, nb201.arch_at(8)]) is None
    assert ScoreCache(tmp_path).table(k1, [b, a])[1] == 1.5
    with pytest.raises(ValueError, match="no scorer"):
        ScoreCache(tmp_path).get_or_score(k1, [a, nb201.arch_at(8)], [0, 1], None)
    p.write_text("index,score\n5,1.0\n")
    with pytest.raises(ValueError, match="not a zcfast score cache file"):
        ScoreCache(tmp_path).load(k1)


def test_live_loop_scorer_matches_reference_and_fills_cache(tmp_path):
    """Real scoring of a few cells (per-model loop, CPU): the cached value is the proxy's."""
    import torch

    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb201_model import build_model

    scorer = default_scorer("synflow", "cifar100", 0, engine="loop")
    cache = ScoreCache(tmp_path)
    r = run_search("rand", "cifar100", 2, 3, 0, 5, "synflow", cache=cache, scorer=scorer)
    key = ScoreKey.of("synflow", "cifar100", 0)
    got = ScoreCache(tmp_path).load(key)
    assert len(got) == 3 and r["scored_live"] == 3
    i = r["trained"][0]
    net = build_model(i, 100, seed=0)
    ref = compute_measures(net, torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long),
                           ["synflow"])["synflow"]
    assert got[nb201.arch_at(i)] == ref
    # the first trained cell is the best-scored of the three (warmup order)
    assert got[nb201.arch_at(i)] == max(got.values())


def test_scorer_engine_errors():
    with pytest.raises(ValueError, match="unknown scoring engine 'gpu'"):
        default_scorer("synflow", "cifar100", engine="gpu")
    with pytest.raises(ValueError, match="unknown proxy"):
        default_scorer("nope", "cifar100")


# ----------------------------------------------------------------------------------- runs
def test_run_seeds_resume_and_torn_line(tmp_path):
    out = tmp_path / "r.jsonl"
    runs = run_seeds(out, "rl", budget=30, seeds=3, progress=False)
    assert [r["seed"] for r in runs] == [0, 1, 2]
    with pytest.raises(FileExistsError):
        run_seeds(out, "rl", budget=30, seeds=3, progress=False)
    with open(out, "a") as f:
        f.write('{"seed": 3, "trai')  # interrupted write
    runs2 = run_seeds(out, "rl", budget=30, seeds=5, resume=True, progress=False)
    assert sorted(r["seed"] for r in runs2) == [0, 1, 2, 3, 4]
    assert [r["trained"] for r in runs2[:3]] == [r["trained"] for r in runs]
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(x) for x in lines)
    with pytest.raises(ValueError, match="budget: file 30 vs now 40"):
        run_seeds(out, "rl", budget=40, seeds=5, resume=True, progress=False)
    assert len(read_runs(out)) == 5


def test_aggregation_and_tables(tmp_path):
    runs = run_seeds(tmp_path / "a.jsonl", "rand", budget=50, seeds=4, progress=False)
    s = summarize(runs)
    m = np.asarray([r["test_curve"] for r in runs])
    np.testing.assert_allclose(s.mean, m.mean(0))
    assert np.all(s.q25 <= s.q75)
    t = float(np.median(m[:, -1]))
    r = models_to_reach(runs, t)
    per_seed = [int(np.argmax(row >= t)) + 1 for row in m if (row >= t).any()]
    assert r["reached"] == len(per_seed) >= 2 and r["median_seed"] == np.median(per_seed)
    assert models_to_reach(runs, 99.0)["mean_curve"] is None
    table = reach_table({Variant("rand"): runs}, [t, 99.0])
    assert "| RAND |" in table and "- (-, 0/4)" in table


def test_verify_runs_accepts_real_runs_and_catches_tampering(tmp_path):
    """The check anyone can run (`zcfast verify-runs`): every curve of every record recomputed
    from its trained cells and the ground truth. It must fail on injected defects: a headline
    curve that is the oracle (best test seen) instead of the best-validation cell's test accuracy,
    a free revisit (queries below the budget without being marked failed), an edited value."""
    from zcfast.cli import main
    from zcfast.search import verify_runs

    out = tmp_path / "runs.jsonl"
    runs = run_seeds(out, "ae", budget=120, seeds=2, progress=False,
                     options={"population": 8, "tournament": 4})
    assert verify_runs(runs) == []
    assert main(["verify-runs", str(out)]) == 0

    def tampered(edit):
        r = json.loads(json.dumps(runs[0]))
        edit(r)
        return verify_runs([r])

    # the old headline: running max of test accuracy over everything trained
    probs = tampered(lambda r: r.__setitem__("test_curve", r["oracle_test_curve"]))
    assert runs[0]["test_curve"] != runs[0]["oracle_test_curve"]  # the defect is real here
    assert any("test_curve[" in p for p in probs)
    # a revisit made free: one query dropped from the charge
    probs = tampered(lambda r: [r["trained"].pop(), r.__setitem__("queries", r["queries"] - 1)])
    assert any("budget 120" in p for p in probs)
    probs = tampered(lambda r: r["best_val_curve"].__setitem__(5, 99.0))
    assert any("best_val_curve[5]" in p for p in probs)
    bad = tmp_path / "bad.jsonl"
    r = json.loads(json.dumps(runs[1]))
    r["test_curve"][-1] += 0.5
    bad.write_text(json.dumps(r) + "\n")
    assert main(["verify-runs", str(bad)]) == 1


def test_parse_variant():
    assert parse_variant("AE+warmup(3000)+move(24)") == Variant("ae", 3000, 24)
    assert parse_variant("rl+move(10)").label == "RL+move(10)"
    with pytest.raises(ValueError, match="cannot read variant"):
        parse_variant("ae+warm(3)")
    with pytest.raises(ValueError, match="unknown search algorithm"):
        parse_variant("sa+move(3)")


# ------------------------------------------------------------------------------------ CLI
def _score_csv(path, values, column="synflow", rows=None, **meta_over):
    """A file in the format of 'zcfast score' (with meta) holding a synthetic proxy column (or
    several: ``values`` a dict {column: values}) for the cells ``rows`` (default: all)."""

    archs = nb201.all_arch_strings()
    cols = values if isinstance(values, dict) else {column: values}
    with open(path, "w") as f:
        f.write("index,arch," + ",".join(cols) + "\n")
        f.writelines(f"{i},{archs[i]}," + ",".join(repr(float(v[i])) for v in cols.values()) + "\n"
                     for i in (range(N) if rows is None else rows))
    meta = {"space": "nb201", "dataset": "cifar100", "seed": 0, "proxies": list(cols),
            "flavour": "paper", "images": "cifar10-subset", "batch_size": 64, **meta_over}
    (path.parent / (path.name + ".meta.json")).write_text(json.dumps(meta))


def test_import_refuses_scores_made_with_other_settings(tmp_path):
    """Every field a score depends on must match between the file and the cache key: a file made
    with another flavour, batch, image source or seed is refused, naming the field."""
    vals = np.arange(N, dtype=float)
    cache = ScoreCache(tmp_path / "cache")
    ok = tmp_path / "ok.csv"
    _score_csv(ok, vals, "snip")
    assert cache.import_scores(ScoreKey.of("snip", "cifar100", 0), ok) == N
    for field, value, msg in [("flavour", "official", "flavour file 'official' vs needed 'paper'"),
                              ("batch_size", 32, "batch_size file 32 vs needed 64"),
                              ("images", "cifar100-real25", "images file 'cifar100-real25'"),
                              ("seed", 1, "seed file 1 vs needed 0"),
                              ("dataset", "cifar10", "dataset file 'cifar10'")]:
        bad = tmp_path / f"bad_{field}.csv"
        _score_csv(bad, vals, "snip", **{field: value})
        with pytest.raises(ValueError, match=msg):
            cache.import_scores(ScoreKey.of("snip", "cifar100", 0), bad)
    # the minibatch seed is a field of its own: a file scored on another batch draw is refused
    bad = tmp_path / "bad_dseed.csv"
    _score_csv(bad, vals, "snip", weight_seed=0, data_seed=5)
    with pytest.raises(ValueError, match="data_seed file 5 vs needed 0"):
        cache.import_scores(ScoreKey.of("snip", "cifar100", 0), bad)
    # synflow reads no image: its key has no image fields, a batch difference does not matter
    syn = tmp_path / "syn.csv"
    _score_csv(syn, vals, "synflow", batch_size=8)
    assert cache.import_scores(ScoreKey.of("synflow", "cifar100", 0), syn) == N
    nometa = tmp_path / "nometa.csv"
    nometa.write_text("index,arch,snip\n0,x,1.0\n")
    with pytest.raises(ValueError, match="no meta file"):
        cache.import_scores(ScoreKey.of("snip", "cifar100", 0), nometa)


def test_cli_search_and_figure(tmp_path, capsys):
    acc = groundtruth("cifar100")["test_acc"].to_numpy()
    csv = tmp_path / "syn.csv"
    _score_csv(csv, acc + (np.arange(N) % 7) * 0.3)
    cache = str(tmp_path / "cache")
    out = tmp_path / "runs.jsonl"
    rc = main(["search", "--algo", "ae", "--warmup", "500", "--move", "24", "--budget", "40",
               "--seeds", "2", "--out", str(out), "--plot", str(tmp_path / "c.png"),
               "--cache-dir", cache, "--scores", str(csv), "--no-progress",
               "--option", "population=10"])
    assert rc == 0 and (tmp_path / "c.png").stat().st_size > 0
    runs = read_runs(out)
    assert len(runs) == 2 and runs[0]["options"] == {"population": 10}
    assert runs[0]["scored_live"] == 0  # all scores came from the imported file
    rc = main(["search", "--algo", "ae", "--warmup", "500", "--move", "24", "--budget", "40",
               "--seeds", "3", "--out", str(out), "--resume", "--cache-dir", cache,
               "--no-progress", "--option", "population=10"])
    assert rc == 0 and len(read_runs(out)) == 3
    assert main(["search", "--algo", "ae", "--budget", "0", "--out", str(tmp_path / "x.jsonl"),
                 "--no-progress"]) == 2
    assert "budget 0" in capsys.readouterr().err

    fig = tmp_path / "fig.png"
    rc = main(["figure", "--seeds", "2", "--budget", "30", "--out", str(fig), "--cache-dir", cache,
               "--variants", "rand+warmup(300),rl+move(10)", "--thresholds", "72,73",
               "--no-progress"])
    assert rc == 0 and fig.stat().st_size > 0
    md = fig.with_suffix(".md").read_text()
    for label in ("RAND", "RAND+warmup(300)", "RL", "RL+move(10)"):
        assert f"| {label} |" in md
    assert len(list((tmp_path / "fig_runs").glob("*.jsonl"))) == 4


def test_search_imports_members_and_cells_from_several_score_files(tmp_path, capsys):
    """`--scores` repeats: an ensemble whose members (and a member's cells) were scored in
    separate runs searches exactly as from one file holding every column; a member that no file
    holds is refused, naming it and each file's columns."""
    acc = groundtruth("cifar100")["test_acc"].to_numpy()
    snip, gn = acc + (np.arange(N) % 7) * 0.3, acc[::-1].copy()
    one = tmp_path / "both.csv"
    _score_csv(one, {"snip": snip, "grad_norm": gn})
    even, odd, gfile = tmp_path / "even.csv", tmp_path / "odd.csv", tmp_path / "gn.csv"
    _score_csv(even, snip, "snip", rows=range(0, N, 2))
    _score_csv(odd, snip, "snip", rows=range(1, N, 2))
    _score_csv(gfile, gn, "grad_norm")
    base = ["search", "--algo", "ae", "--warmup", "400", "--move", "10", "--budget", "30",
            "--seeds", "2", "--proxy", "ensemble:snip+grad_norm", "--no-progress",
            "--option", "population=10"]
    assert main(base + ["--out", str(tmp_path / "one.jsonl"), "--cache-dir",
                        str(tmp_path / "c1"), "--scores", str(one)]) == 0
    split = ["--scores", str(even), "--scores", str(gfile), "--scores", str(odd)]
    assert main(base + ["--out", str(tmp_path / "split.jsonl"), "--cache-dir",
                        str(tmp_path / "c2")] + split) == 0
    a, b = read_runs(tmp_path / "one.jsonl"), read_runs(tmp_path / "split.jsonl")
    assert [r["trained"] for r in a] == [r["trained"] for r in b]
    assert all(r["scored_live"] == 0 for r in a + b)
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "x.jsonl"), "--cache-dir", str(tmp_path / "c3"),
                        "--scores", str(even), "--scores", str(odd)]) == 2
    err = capsys.readouterr().err
    assert "no --scores file has a 'grad_norm' column" in err and "even.csv: snip" in err
    assert not (tmp_path / "c3").exists()  # nothing imported before the refusal
    # a file made with other settings is refused before any member is imported
    g32 = tmp_path / "gn32.csv"
    _score_csv(g32, gn, "grad_norm", batch_size=32)
    assert main(base + ["--out", str(tmp_path / "x.jsonl"), "--cache-dir", str(tmp_path / "c3"),
                        "--scores", str(one), "--scores", str(g32)]) == 2
    assert "grad_norm" in capsys.readouterr().err and not (tmp_path / "c3").exists()
    # a file whose scores disagree with the cache is refused, naming both
    other = tmp_path / "other.csv"
    _score_csv(other, {"snip": snip * 1.01, "grad_norm": gn})
    assert main(base + ["--out", str(tmp_path / "x.jsonl"), "--cache-dir", str(tmp_path / "c1"),
                        "--scores", str(other)]) == 2
    err = capsys.readouterr().err
    assert "but the cache" in err and "other.csv" in err


def test_search_scores_on_a_cifar_download(tmp_path, capsys):
    """`zcfast search --data-root` scores on a CIFAR download as `zcfast score --data-root` does:
    the key names the download by its content, so a file scored on it is imported only with the
    same download, the live scorer reads it (its scores equal zcfast.score's on that folder), and
    the run records it; --images with --data-root, or a dataset without a download, is refused."""
    import pickle

    import zcfast
    from zcfast.data import download_name, load_cifar_pickles
    from zcfast.spaces import get_space

    g = np.random.default_rng(7)
    img = g.integers(0, 256, size=(16, 3, 32, 32), dtype=np.uint8)
    root = tmp_path / "dl"
    (root / "cifar-100-python").mkdir(parents=True)
    with open(root / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({b"data": img.reshape(16, 3072),
                     b"fine_labels": g.integers(0, 100, 16).tolist()}, f, protocol=2)
    name = download_name("cifar100", *load_cifar_pickles(root, "cifar100"))
    arch_file = tmp_path / "archs.txt"
    arch_file.write_text("0\n1\n2\n")
    csv = tmp_path / "snip_dl.csv"
    assert main(["score", "--dataset", "cifar100", "--data-root", str(root), "--proxies", "snip",
                 "--archs", str(arch_file), "--batch-size", "8", "--out", str(csv),
                 "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "snip_dl.csv.meta.json").read_text())["images"] == name
    cache = tmp_path / "cache"
    base = ["search", "--algo", "rand", "--warmup", "6", "--budget", "3", "--seeds", "1",
            "--dataset", "cifar100", "--proxy", "snip", "--batch-size", "8", "--cache-dir",
            str(cache), "--no-progress", "--device", "cpu", "--scores", str(csv)]
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "x.jsonl")]) == 2  # bundled images: refused
    assert f"images file '{name}' vs needed 'cifar10-subset'" in capsys.readouterr().err
    out = tmp_path / "runs.jsonl"
    assert main(base + ["--out", str(out), "--data-root", str(root)]) == 0
    run = read_runs(out)[0]
    assert run["score_settings"]["images"] == name and run["scored_live"] > 0
    key = ScoreKey.of("snip", "cifar100", 0, images=name, batch_size=8)
    cached = ScoreCache(cache).load(key)
    sp = get_space("nb201")
    index = {nb201.index_of_code(sp.from_key(k)): k for k in cached}
    live = sorted(set(index) - {0, 1, 2})
    assert len(index) == 3 + len(live) and live
    ref = zcfast.score(live, ["snip"], dataset="cifar100", seed=0, batch_size=8,
                       data_root=str(root), device="cpu")["snip"].to_numpy()
    got = np.array([cached[index[i]] for i in live])
    np.testing.assert_allclose(got, ref, rtol=1e-5)  # float32 passes, other chunk sizes
    # the name is checked where the images are read (a Ray worker, a folder changed since)
    from zcfast.data import image_source

    with pytest.raises(ValueError, match=f"is {name}, not cifar100-download-00000000"):
        image_source("cifar100", data_root=str(root), images="cifar100-download-00000000")
    assert image_source("cifar100", data_root=str(root), images=name).name == name
    # a file from before download names named the download is refused with its reason
    old_meta = json.loads((tmp_path / "snip_dl.csv.meta.json").read_text())
    (tmp_path / "snip_dl.csv.meta.json").write_text(json.dumps({**old_meta,
                                                                "images": "cifar100-download"}))
    assert main(base + ["--out", str(tmp_path / "w.jsonl"), "--data-root", str(root)]) == 2
    assert "rescore it with this zcfast" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "y.jsonl"), "--data-root", str(root),
                        "--images", "cifar100-real25"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["search", "--algo", "rand", "--dataset", "ImageNet16-120", "--data-root",
                 str(root), "--out", str(tmp_path / "z.jsonl"), "--no-progress"]) == 2
    assert "reads a CIFAR-10 or CIFAR-100 download" in capsys.readouterr().err


def test_live_scorer_packs_each_ask_and_keeps_the_minibatch(monkeypatch, tmp_path):
    """The live scorer takes codes, scores each of the driver's asks in packed passes through a
    local executor whose runner builds the minibatch once, and gives zcfast.score's values."""
    import zcfast
    import zcfast.batched
    from zcfast.executors import task as task_mod

    calls, batches = [], []
    real_iter, real_runner = zcfast.batched.iter_packed_space, task_mod.SpaceRunner.__init__

    def spy_iter(space, codes, *a, **k):
        calls.append([nb201.index_of_code(int(c)) for c in codes])
        return real_iter(space, codes, *a, **k)

    def spy_runner(self, *a, **k):
        batches.append(1)
        return real_runner(self, *a, **k)

    monkeypatch.setattr(zcfast.batched, "iter_packed_space", spy_iter)
    monkeypatch.setattr(task_mod.SpaceRunner, "__init__", spy_runner)
    scorer = default_scorer("synflow", "c100", 3, chunk=4, device="cpu")
    assert scorer.engine == "batched"
    codes = np.array([nb201.code_of_index(i) for i in (5, 9, 2)], dtype=np.uint64)
    got = scorer(codes)  # scorers take codes
    assert calls == [[5, 9, 2]]
    assert len(batches) == 1
    ref = zcfast.score([5, 9, 2], ["synflow"], dataset="cifar100", seed=3, chunk=4, device="cpu")
    np.testing.assert_array_equal(got, ref["synflow"].to_numpy())
    runners = len(batches)  # (zcfast.score made its own)
    # a search asks in batches: one packed call per ask, one minibatch for the whole search
    cache = ScoreCache(tmp_path)
    r = run_search("rand", "cifar100", 5, 20, 0, 0, "synflow", score_seed=3, cache=cache,
                   scorer=scorer)
    assert len(calls) == 3 and len(calls[2]) == 20 == r["scored_live"]  # (calls[1]: zcfast.score)
    assert len(batches) == runners  # the search's asks reused the scorer's runner
    assert default_scorer("synflow", "c100", 3, engine="loop").engine == "loop"


def test_search_scores_with_the_given_minibatch_settings(tmp_path, monkeypatch, capsys):
    """`zcfast search` takes `zcfast score`'s minibatch options: they select the cached and
    imported scores (a file made with batch 32 is refused without --batch-size 32), reach the
    live scorer, are recorded with each run, and a resume with other settings is refused."""
    import zcfast.search.scorer as scorer_mod

    acc = groundtruth("cifar100")["test_acc"].to_numpy()
    csv = tmp_path / "snip32.csv"
    _score_csv(csv, acc + (np.arange(N) % 7) * 0.3, "snip", batch_size=32)
    cache = str(tmp_path / "cache")
    out = tmp_path / "runs.jsonl"
    base = ["search", "--algo", "rand", "--warmup", "300", "--budget", "20", "--proxy", "snip",
            "--out", str(out), "--cache-dir", cache, "--no-progress"]
    assert main(base + ["--seeds", "1", "--scores", str(csv)]) == 2
    assert "batch_size file 32 vs needed 64" in capsys.readouterr().err
    assert main(base + ["--seeds", "1", "--scores", str(csv), "--batch-size", "32"]) == 0
    want = {"flavour": "paper", "images": "cifar10-subset", "batch_size": 32, "data_seed": 0,
            "normalization": "paper", "precision": "fp32"}
    runs = read_runs(out)
    assert runs[0]["score_settings"] == want and runs[0]["scored_live"] == 0
    assert list((tmp_path / "cache").rglob("*-b32-d0-paper.csv"))
    # resuming with the default batch is refused, naming the settings
    assert main(base + ["--seeds", "2", "--resume"]) == 2
    assert "score_settings" in capsys.readouterr().err
    assert main(base + ["--seeds", "2", "--resume", "--batch-size", "32"]) == 0
    assert read_runs(out)[1]["score_settings"] == want
    # a runs file written before runs recorded their score settings was made with the
    # defaults: it resumes with them, not with other settings
    csv64 = tmp_path / "snip64.csv"
    _score_csv(csv64, acc, "snip")
    old = tmp_path / "old.jsonl"
    olds = base[:-5] + ["--out", str(old), "--cache-dir", cache, "--no-progress"]
    assert main(olds + ["--seeds", "1", "--scores", str(csv64)]) == 0
    lines = [json.loads(t) for t in old.read_text().splitlines()]
    for r in lines:
        del r["score_settings"]
    old.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(olds + ["--seeds", "2", "--resume", "--batch-size", "32"]) == 2
    assert "score_settings" in capsys.readouterr().err
    assert main(olds + ["--seeds", "2", "--resume"]) == 0 and len(read_runs(old)) == 2
    # the live scorer is built with the options (cells missing from the cache)
    seen = {}

    def fake_scorer(proxy, dataset, seed=0, **kw):
        seen.update(kw, proxy=proxy, seed=seed)
        return CountingScorer()

    monkeypatch.setattr(scorer_mod, "default_scorer", fake_scorer)
    out2 = tmp_path / "runs2.jsonl"
    assert main(["search", "--algo", "rand", "--warmup", "50", "--budget", "10", "--proxy",
                 "snip", "--seeds", "1", "--out", str(out2), "--cache-dir", cache,
                 "--no-progress", "--batch-size", "16", "--data-seed", "5", "--images",
                 "cifar10-subset", "--score-seed", "2", "--normalization", "dataset",
                 "--flavour", "official", "--precision", "bf16"]) == 0
    given = {"batch_size": 16, "data_seed": 5, "images": "cifar10-subset",
             "normalization": "dataset", "flavour": "official", "precision": "bf16"}
    assert seen["proxy"] == "snip" and seen["seed"] == 2
    assert {k: seen[k] for k in given} == given
    r = read_runs(out2)[0]
    assert r["score_settings"] == given and r["scored_live"] == 50
    assert list((tmp_path / "cache").rglob("*-official-w2-bf16-cifar10-subset-b16-d5-dataset.csv"))
    # bad values are named before anything runs
    assert main(base + ["--seeds", "1", "--batch-size", "0"]) == 2
    assert "--batch-size 0" in capsys.readouterr().err


def test_score_key_reaches_the_default_scorer_and_must_match_the_search(tmp_path, monkeypatch):
    import zcfast.search.scorer as scorer_mod

    seen = {}

    def fake_scorer(proxy, dataset, seed=0, **kw):
        seen.update(kw)
        one = CountingScorer()
        return lambda codes: np.column_stack([one(codes), one(codes)])  # the two members

    monkeypatch.setattr(scorer_mod, "default_scorer", fake_scorer)
    key = ScoreKey.of("snip", "cifar100", 0, batch_size=8, data_seed=3, normalization="dataset")
    r = run_search("rand", "cifar100", 5, 20, 0, 0, "ensemble:synflow+snip", cache=tmp_path,
                   score_key=key)  # no scorer: run_search builds the default one
    assert {k: seen[k] for k in ("batch_size", "data_seed", "normalization")} == {
        "batch_size": 8, "data_seed": 3, "normalization": "dataset"}
    assert r["score_settings"]["batch_size"] == 8
    # a key's precision reaches the default scorer too (and the recorded settings)
    seen.clear()
    r = run_search("rand", "cifar100", 5, 20, 0, 0, "ensemble:synflow+snip", cache=tmp_path,
                   score_key=ScoreKey.of("snip", "cifar100", 0, precision="bf16"))
    assert seen["precision"] == "bf16" and r["score_settings"]["precision"] == "bf16"
    for bad, msg in [(ScoreKey.of("snip", "cifar100", 1), "weight seed 1, the search's is 0"),
                     (ScoreKey.of("snip", "cifar10", 0), "dataset 'cifar10', the search's is "
                                                          "'cifar100'")]:
        with pytest.raises(ValueError, match=msg):
            run_search("rand", "cifar100", 5, 20, 0, 0, "snip", score_seed=0, cache=tmp_path,
                       score_key=bad, scorer=CountingScorer())


def test_live_scorer_in_bf16_gives_zcfast_scores_bf16():
    """The search's live scorer with precision bf16 gives `zcfast score --precision bf16`'s
    values (and not fp32's); the loop engine and tf32 on a CPU are refused."""
    import zcfast

    codes = np.array([nb201.code_of_index(i) for i in (11, 4000)], dtype=np.uint64)
    got = default_scorer("grad_norm", "cifar100", 0, precision="bf16", chunk=2, device="cpu")(codes)
    ref = zcfast.score([11, 4000], ["grad_norm"], dataset="cifar100", seed=0, chunk=2,
                       device="cpu", precision="bf16")["grad_norm"].to_numpy()
    fp32 = zcfast.score([11, 4000], ["grad_norm"], dataset="cifar100", seed=0, chunk=2,
                        device="cpu")["grad_norm"].to_numpy()
    np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(got, fp32)
    # refused when the scorer first scores, not when it is built (a search from cached scores
    # may name the precision they were made in, on any device)
    loop = default_scorer("grad_norm", "cifar100", 0, precision="bf16", engine="loop")
    with pytest.raises(ValueError, match="applies to the packed engine"):
        loop(codes)
    tf32 = default_scorer("grad_norm", "cifar100", 0, precision="tf32", device="cpu")
    with pytest.raises(ValueError, match="tf32' needs a CUDA device"):
        tf32(codes)


def test_runs_recorded_before_search_precision_resume(tmp_path):
    """A run line whose score_settings predate --precision (no 'precision' key) counts as fp32:
    it resumes with the default precision and is refused with bf16."""
    cache = ScoreCache(tmp_path / "cache")
    out = tmp_path / "runs.jsonl"
    kw = dict(warmup=50, budget=10, proxy="snip", cache=cache, scorer=CountingScorer(),
              progress=False)
    run_seeds(out, "rand", dataset="cifar100", seeds=[0], **kw)
    lines = [json.loads(t) for t in out.read_text().splitlines()]
    del lines[0]["score_settings"]["precision"]
    out.write_text(json.dumps(lines[0]) + "\n")
    assert len(run_seeds(out, "rand", dataset="cifar100", seeds=[0, 1], resume=True, **kw)) == 2
    with pytest.raises(ValueError, match="score_settings"):
        run_seeds(out, "rand", dataset="cifar100", seeds=[0, 1, 2], resume=True,
                  score_key=ScoreKey.of("snip", "cifar100", 0, precision="bf16"), **kw)
