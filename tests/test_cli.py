"""The command line: ``zcfast score`` (CSV + meta, refusal to overwrite, --resume after an
interruption, --archs FILE errors) and ``zcfast correlate`` (table with the 12-epoch baseline,
--plot, --json). Called in-process through ``zcfast.cli.main`` (fast), once as the console script."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from zcfast import cli
from zcfast.correlate import BASELINE_12EP
from zcfast.data import groundtruth, minibatch
from zcfast.proxies import compute_measures
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

CHEAP = ["synflow", "params", "flops", "l2_norm"]


def score(out, *extra, archs="3", seed=1):
    return cli.main(["score", "--engine", "loop", "--archs", str(archs), "--seed", str(seed),
                     "--proxies", ",".join(CHEAP), "--out", str(out), "--no-progress", *extra])


def rows(path):
    with open(path, newline="") as f:
        r = list(csv.reader(f))
    return r[0], r[1:]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One scored file of 3 cells (shared by the tests that only read it)."""
    out = tmp_path_factory.mktemp("score") / "scores.csv"
    assert score(out) == 0
    return out


def test_score_writes_csv_and_meta(scored):
    header, body = rows(scored)
    assert header == ["index", "arch", *CHEAP]
    idx = [int(r[0]) for r in body]
    assert idx == nb201.sample(3, seed=1).tolist()  # N cells sampled with --seed, in that order
    assert [r[1] for r in body] == [nb201.arch_at(i) for i in idx]
    meta = json.loads(Path(str(scored) + ".meta.json").read_text())
    for k, v in {"space": "nb201", "dataset": "cifar10", "proxies": CHEAP, "seed": 1,
                 "batch_size": 64, "images": "cifar10-subset", "flavour": "paper",
                 "archs_spec": "3", "engine": "loop"}.items():
        assert meta[k] == v, k
    assert "CIFAR-10" in meta["images_description"]
    # the values are the reference proxies of build_model(index, seed) on the seeded minibatch
    x, y, _ = minibatch("cifar10", 64, seed=1)
    i = idx[0]
    net = build_model(i, 10, seed=1)
    ref = compute_measures(net, x, y, CHEAP)
    got = dict(zip(CHEAP, map(float, body[0][2:])))
    assert got == ref  # exact: values are written with repr()
    assert got["params"] == sum(p.numel() for p in net.parameters())


def test_score_refuses_to_overwrite(scored, capsys):
    before = scored.read_bytes()
    assert score(scored) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and str(scored) in err
    assert scored.read_bytes() == before


def test_resume_after_torn_last_line(scored, tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    shutil.copy(scored, out)
    shutil.copy(str(scored) + ".meta.json", str(out) + ".meta.json")
    header, body = rows(out)
    # mark a finished row (a recomputation would overwrite or duplicate it) and tear the last
    lines = out.read_text().splitlines(keepends=True)
    marked = lines[1].split(",")
    marked[2] = "12345.0"
    lines[1] = ",".join(marked)
    torn = lines[3][: len(lines[3]) // 2]
    out.write_text("".join(lines[:3]) + torn)
    calls = []
    real = compute_measures

    def spy(net, *a, **k):
        calls.append(net.arch)
        return real(net, *a, **k)

    monkeypatch.setattr("zcfast.proxies.compute_measures", spy)
    assert score(out) == 2  # still refuses without --resume
    assert score(out, "--resume") == 0
    assert calls == [body[2][1]]  # only the torn row was scored again
    h2, b2 = rows(out)
    assert h2 == header and len(b2) == 3
    assert [r[0] for r in b2] == [r[0] for r in body]
    assert b2[0][2] == "12345.0"  # the finished row was kept, not recomputed
    assert b2[1] == body[1] and b2[2] == body[2]  # the torn row recomputed to the same values
    # resuming a complete file scores nothing
    calls.clear()
    assert score(out, "--resume") == 0 and calls == []
    assert len(rows(out)[1]) == 3


def test_resume_after_interrupt(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.csv"
    real = compute_measures
    n = []

    def interrupted(net, *a, **k):
        if len(n) == 2:
            raise KeyboardInterrupt
        n.append(net.arch)
        return real(net, *a, **k)

    monkeypatch.setattr("zcfast.proxies.compute_measures", interrupted)
    assert score(out, archs="4", seed=2) == 130
    assert "--resume" in capsys.readouterr().err
    assert len(rows(out)[1]) == 2  # rows written as computed
    monkeypatch.setattr("zcfast.proxies.compute_measures", real)
    # other settings than the file's: refused, naming the difference
    assert score(out, "--resume", archs="4", seed=3) == 2
    assert "seed" in capsys.readouterr().err
    assert score(out, "--resume", archs="4", seed=2) == 0
    _, body = rows(out)
    assert [int(r[0]) for r in body] == nb201.sample(4, seed=2).tolist()


def test_archs_file(tmp_path, capsys):
    good = tmp_path / "archs.txt"
    a0 = nb201.arch_at(6111)
    good.write_text(f"# best CIFAR-10 cell\n{a0}\n\n  857  # an index\n")
    out = tmp_path / "f.csv"
    assert cli.main(["score", "--engine", "loop", "--archs", str(good), "--proxies", "params,flops",
                     "--out", str(out), "--no-progress"]) == 0
    assert [int(r[0]) for r in rows(out)[1]] == [6111, 857]
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{a0}\n# comment\n{a0.replace('nor_conv_1x1~2', 'conv_7x7~2')}\n")
    assert cli.main(["score", "--engine", "loop", "--archs", str(bad), "--proxies", "params",
                     "--out", str(tmp_path / "g.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "conv_7x7" in err
    assert not (tmp_path / "g.csv").exists()
    dup = tmp_path / "dup.txt"
    dup.write_text(f"6111\n857\n{a0}\n")  # the same cell twice (index, then string)
    assert cli.main(["score", "--engine", "loop", "--archs", str(dup), "--proxies", "params",
                     "--out", str(tmp_path / "d.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{dup}:3:" in err and "line 1" in err
    for spec, what in ((tmp_path / "missing.txt", "neither"), ("0", "between"), ("15626", "between")):
        assert cli.main(["score", "--archs", str(spec), "--proxies", "params",
                         "--out", str(tmp_path / "h.csv"), "--no-progress"]) == 2
        assert what in capsys.readouterr().err
    assert cli.main(["score", "--archs", "2", "--proxies", "params,synflw",
                     "--out", str(tmp_path / "h.csv"), "--no-progress"]) == 2
    assert "synflw" in capsys.readouterr().err


def _table_rows(text):
    """{proxy: (n, spearman, kendall)} from the printed Markdown table (columns found by their
    header, so that added columns do not matter)."""
    out, col = {}, None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["proxy", "n"]:
            col = {name: k for k, name in enumerate(cells)}
        elif col and len(cells) == len(col) and cells[1].isdigit():
            out[cells[0]] = (int(cells[1]), float(cells[col["Spearman"]]),
                             float(cells[col["Kendall"]]))
    return out


def test_correlate_table_and_plot(tmp_path, capsys):
    # a synthetic score file: 'oracle' = ground truth, 'noisy' = ground truth + noise, 'anti'
    gt = groundtruth("cifar10")
    idx = nb201.sample(300, seed=9)
    acc = gt.test_acc.to_numpy()[idx]
    rng = np.random.default_rng(0)
    noisy = acc + rng.normal(0, 3, size=len(idx))
    with_nan = noisy.copy()
    with_nan[:10] = np.nan
    path = tmp_path / "synth.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "oracle", "noisy", "anti", "synflow"])
        for k, i in enumerate(idx):
            w.writerow([i, nb201.arch_at(int(i)), acc[k], noisy[k], -acc[k], with_nan[k]])
    png, js = tmp_path / "plot.png", tmp_path / "tab.json"
    assert cli.main(["correlate", str(path), "--dataset", "cifar10", "--plot", str(png),
                     "--json", str(js)]) == 0
    text = capsys.readouterr().out
    tab = _table_rows(text)
    assert set(tab) == {"oracle", "noisy", "anti", "synflow", BASELINE_12EP}
    assert tab["oracle"] == (300, 1.0, 1.0) and tab["anti"] == (300, -1.0, -1.0)
    rho = stats.spearmanr(noisy, acc).statistic
    assert tab["noisy"][1] == pytest.approx(rho, abs=5e-4)
    assert tab["synflow"][0] == 290  # NaN scores are left out and counted
    assert "| synflow | 290 | 10 |" in text  # ... as dropped, with the reason under the table
    notes = [ln for ln in text.splitlines() if ln.startswith("- synflow: ")]
    assert sum(int(ln.split()[2]) for ln in notes) == 10  # (one line per reason)
    assert all(" of 300 cells are NaN, dropped: " in ln for ln in notes)
    base = stats.spearmanr(gt.test_acc_12ep.to_numpy()[idx], acc).statistic
    assert tab[BASELINE_12EP] == (300, pytest.approx(base, abs=5e-4), tab[BASELINE_12EP][2])
    assert "0.737" in text  # the paper's |Spearman| for synflow, CIFAR-10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    j = json.loads(js.read_text())
    assert {r["proxy"] for r in j["table"]} == set(tab)
    # without a meta file the dataset must be given
    assert cli.main(["correlate", str(path)]) == 2
    assert "--dataset" in capsys.readouterr().err


def _scores_with_meta(path, idx, cols: dict, **meta):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", *cols])
        for k, i in enumerate(idx):
            w.writerow([i, nb201.arch_at(int(i)), *(repr(float(v[k])) for v in cols.values())])
    m = {"space": "nb201", "dataset": "cifar10", "seed": 0, "weight_seed": 0, "data_seed": 0,
         "batch_size": 64, "images": "cifar10-subset", "flavour": "paper", **meta}
    Path(str(path) + ".meta.json").write_text(json.dumps(m))


def test_correlate_joins_score_files(tmp_path, capsys):
    """Several files are joined by cell: a proxy split over two files (different cells) is one
    column, proxies from different runs sit side by side, and an ensemble ranks the joined
    cells; files that disagree on a cell, hold one proxy made with other settings, or are of
    another dataset are refused, naming them."""
    from zcfast.proxies import ensemble

    gt = groundtruth("cifar10")
    idx = nb201.sample(300, seed=4)
    acc = gt.test_acc.to_numpy()[idx]
    rng = np.random.default_rng(1)
    p, r = acc + rng.normal(0, 2, 300), acc + rng.normal(0, 4, 300)
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    g = acc + rng.normal(0, 3, 300)
    pair = {"ensemble:snip+grad_norm": {"rule": "logrank", "members": ["snip", "grad_norm"]}}
    _scores_with_meta(a, idx[:120], {"snip": p[:120], "grad_norm": g[:120]}, ensembles=pair)
    _scores_with_meta(b, idx[120:], {"snip": p[120:], "grad_norm": g[120:]}, ensembles=pair)
    _scores_with_meta(c, idx, {"synflow": r}, batch_size=1)  # its own settings are fine
    js = tmp_path / "t.json"
    assert cli.main(["correlate", str(a), str(b), str(c), "--ensembles", "ensemble:snip+synflow",
                     "--json", str(js)]) == 0
    out = capsys.readouterr().out
    tab = _table_rows(out)
    assert tab["snip"] == (300, pytest.approx(stats.spearmanr(p, acc).statistic, abs=5e-4),
                        tab["snip"][2])
    for name, cols in (("ensemble:snip+synflow", {"snip": p, "synflow": r}),  # asked for
                       ("ensemble:snip+grad_norm", {"snip": p, "grad_norm": g})):  # in the metas
        rho = stats.spearmanr(ensemble.evaluate(name, cols), acc).statistic
        assert tab[name][1] == pytest.approx(rho, abs=5e-4)  # ranks over all 300 cells
    assert "300 cells" in out and "joined from" in out and "batch differs by file" in out
    from zcfast.scoring import read_score_files

    df, meta = read_score_files([a, b, c])  # the ensemble in the files' metas: over all cells
    want = ensemble.evaluate("ensemble:snip+grad_norm", {"snip": p, "grad_norm": g})
    np.testing.assert_allclose(df.loc[idx, "ensemble:snip+grad_norm"].to_numpy(), want)
    assert meta["column_files"]["snip"] == [str(a), str(b)] and "batch_size" not in meta
    # a partial join: cells no file holds a column for are counted apart, not as proxy gaps
    assert cli.main(["correlate", str(a), str(c)]) == 0
    out = capsys.readouterr().out
    assert ("- snip: 180 of 300 joined cells are in no file holding it, left out of every "
            "metric of its row (hit over its 120 cells: 1/4)") in out
    assert "not explained" not in out
    # ... and every metric of the snip row is the one of the 120 cells that hold it
    from zcfast.correlate import correlation_table

    joined = correlation_table(read_score_files([a, c])[0], "cifar10")
    alone = correlation_table(read_score_files([a])[0], "cifar10")
    for p_ in ("snip", "ensemble:snip+grad_norm"):  # an ensemble: the cells holding its members
        for m in ("n", "dropped", "spearman", "kendall", "top10_spearman", "hit_rate",
                  "pair_agree"):
            assert joined.loc[p_, m] == pytest.approx(alone.loc[p_, m], abs=1e-12), (p_, m)
    assert ("- ensemble:snip+grad_norm: 180 of 300 joined cells are in no file holding it (or "
            "one of its members), left out of every metric of its row") in out
    # refusals
    d = tmp_path / "d.csv"
    q = p[100:140].copy()
    q[5] += 1.0  # cell idx[105] disagrees with a.csv
    _scores_with_meta(d, idx[100:140], {"snip": q})
    assert cli.main(["correlate", str(a), str(d)]) == 2
    assert f"disagree on 'snip' for network {idx[105]}" in capsys.readouterr().err
    _scores_with_meta(d, idx[120:], {"snip": p[120:]}, batch_size=32)
    assert cli.main(["correlate", str(a), str(d)]) == 2
    assert ("column 'snip' is in files made with different settings: batch_size"
            in capsys.readouterr().err)
    # accepted: scores of one cell within fp32's summation noise (packed vs per-model passes
    # differ by up to ~3e-5), and synflow, which reads no image, from runs of other batch sizes
    _scores_with_meta(d, idx[100:140], {"snip": p[100:140] * (1 + 2e-5)})
    e = tmp_path / "e.csv"
    _scores_with_meta(e, idx[:50], {"synflow": r[:50]}, batch_size=64)
    assert cli.main(["correlate", str(a), str(d), str(c), str(e)]) == 0
    capsys.readouterr()
    _scores_with_meta(d, idx[120:], {"snip": p[120:]}, dataset="cifar100")
    assert cli.main(["correlate", str(a), str(d)]) == 2
    assert "different datasets" in capsys.readouterr().err


@pytest.mark.parametrize("index, what", [("20000", "20000"), ("-1", "-1"), ("1.5", "1.5"),
                                         ("x", "x"), ("7", "more than once")])
def test_correlate_bad_score_file(tmp_path, capsys, index, what):
    path = tmp_path / "bad.csv"
    path.write_text(f"index,arch,p\n7,a,1.0\n{index},b,2.0\n3,c,3.0\n")
    assert cli.main(["correlate", str(path), "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert what in err and str(path) in err and "Traceback" not in err
    path.write_text("idx,arch,p\n1,a,1.0\n")
    assert cli.main(["correlate", str(path), "--dataset", "cifar10"]) == 2
    assert "no 'index' column" in capsys.readouterr().err
    assert cli.main(["correlate", str(tmp_path / "missing.csv"), "--dataset", "cifar10"]) == 2


def test_correlate_score_file(scored, tmp_path, capsys):
    png = tmp_path / "p.png"
    assert cli.main(["correlate", str(scored), "--plot", str(png)]) == 0  # dataset from the meta
    out = capsys.readouterr().out
    tab = _table_rows(out)
    assert set(tab) == set(CHEAP) | {BASELINE_12EP}
    assert all(v[0] == 3 for v in tab.values())
    assert "cifar10-subset" in out or "CIFAR-10 training images" in out  # which images were used
    assert png.is_file()


def test_console_script(tmp_path):
    exe = Path(sys.executable).parent / "zcfast"
    if not exe.is_file():
        exe = shutil.which("zcfast")
    if exe is None:
        pytest.skip("the zcfast console script is not installed in this environment")
    out = tmp_path / "c.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(exe), "score", "--engine", "loop", "--archs", "2", "--seed", "5",
                        "--proxies", "params,flops", "--out", str(out), "--no-progress", "--threads", "1"],
                       capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert "scored 2 of 2 cells" in r.stdout and "images:" in r.stdout
    assert [int(x[0]) for x in rows(out)[1]] == nb201.sample(2, seed=5).tolist()


def test_help_does_not_import_torch():
    """`zcfast <cmd> -h` answers before any heavy import (docs/performance.md): building every
    parser and printing help leaves torch unimported."""
    import subprocess
    import sys

    code = ("import sys\nfrom zcfast.cli import main\n"
            "for cmd in ('score', 'correlate', 'search', 'figure'):\n"
            "    try:\n        main([cmd, '-h'])\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("argv,named", [
    (["score", "--proxies", "synflow,snipp", "--out", "x.csv"], "'snipp'"),
    (["score", "--dataset", "cifar1000", "--out", "x.csv"], "'cifar1000'"),
    (["score", "--space", "nb101", "--dataset", "cifar100", "--out", "x.csv"], "'cifar100'"),
    (["score", "--batch-size", "0", "--out", "x.csv"], "--batch-size 0"),
    (["score", "--archs", "no_such_file.txt", "--out", "x.csv"], "'no_such_file.txt'"),
    (["search", "--algo", "zz", "--out", "y.jsonl"], "'zz'"),
    (["search", "--algo", "ae", "--space", "nb101", "--dataset", "cifar100", "--out", "y.jsonl"],
     "'cifar100'"),
    (["search", "--algo", "ae", "--budget", "0", "--out", "y.jsonl"], "budget 0"),
    (["search", "--algo", "ae", "--seeds", "0", "--out", "y.jsonl"], "got 0"),
    (["search", "--algo", "ae", "--warmup", "5", "--proxy", "synflw", "--out", "y.jsonl"],
     "'synflw'"),
    (["figure", "--move", "-1", "--out", "f"], "move -1"),
    (["correlate", "no_such_scores.csv"], "'no_such_scores.csv'"),
    (["score", "--threads", "0", "--out", "x.csv"], "got 0"),
    (["search", "--algo", "ae", "--threads", "-1", "--out", "y.jsonl"], "got -1"),
    (["figure", "--threads", "0", "--out", "f"], "got 0"),
    (["score", "--archs", "2", "--out", "."], "is a folder"),
    (["search", "--algo", "rand", "--out", "."], "is a folder"),
])
def test_bad_input_is_rejected_before_torch(argv, named, tmp_path):
    """Bad arguments get their error without importing torch (docs/performance.md, start-up):
    the value is named, the exit code is 2, nothing is written."""
    import subprocess
    import sys

    code = ("import sys\nfrom zcfast.cli import main\nrc = main(sys.argv[1:])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert named in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_is_refused_before_torch(tmp_path):
    """`zcfast score` onto a file that has rows, without --resume: refused before torch is
    imported, naming the file, which is left as it was."""
    import subprocess
    import sys

    out = tmp_path / "x.csv"
    out.write_text("index,arch,params\n")
    code = ("import sys\nfrom zcfast.cli import main\nrc = main(sys.argv[1:])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, "score", "--proxies", "params", "--out",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and f"{out} exists; pass --resume" in r.stderr, r.stderr[-2000:]
    assert out.read_text() == "index,arch,params\n"


def test_search_accepts_algorithm_aliases(tmp_path):
    """The early check keeps the driver's spellings: any case and its aliases."""
    out = tmp_path / "r.jsonl"
    assert cli.main(["search", "--algo", "Evolution", "--budget", "5", "--seeds", "1",
                     "--no-progress", "--out", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["algo"] == "ae"


def test_ae_says_when_its_budget_ends_before_evolution(tmp_path, capsys):
    """AE with a budget no larger than its population trains initial members only (random
    cells, or the warmup's picks): the search says so; with a smaller population it does not."""
    out = tmp_path / "r.jsonl"
    base = ["search", "--algo", "ae", "--budget", "6", "--seeds", "1", "--no-progress",
            "--cache-dir", str(tmp_path / "c")]
    assert cli.main([*base, "--out", str(out)]) == 0
    assert "note: --budget 6 <= AE's population 64" in capsys.readouterr().out
    assert cli.main([*base, "--option", "population=4", "--option", "tournament=2",
                     "--out", str(tmp_path / "r2.jsonl")]) == 0
    assert "note:" not in capsys.readouterr().out


def test_search_says_when_its_proxy_is_not_used(tmp_path, capsys):
    """A --proxy without warmup or move scores nothing (the search asks for scores only to warm
    up or to propose moves): the search says so; with a warmup, or with the default proxy left
    alone, it does not."""
    base = ["search", "--algo", "rand", "--budget", "5", "--seeds", "1", "--no-progress",
            "--cache-dir", str(tmp_path / "c")]
    assert cli.main([*base, "--proxy", "params", "--out", str(tmp_path / "a.jsonl")]) == 0
    assert "note: --proxy params is not used" in capsys.readouterr().out
    assert cli.main([*base, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert "note:" not in capsys.readouterr().out
    assert cli.main([*base, "--proxy", "params", "--warmup", "10",
                     "--out", str(tmp_path / "c.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "note:" not in out
    assert json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])["proxy"] == "params"
    # the summary names the proxy that warmed the search up; a search without one names none
    assert "\nRAND+warmup(10) [params]: 1 complete run," in out, out
    assert cli.main([*base, "--out", str(tmp_path / "d.jsonl")]) == 0
    assert "\nRAND: 1 complete run," in capsys.readouterr().out
