"""A user's end-to-end path on NAS-Bench-NLP (docs/nbnlp.md, "Command line"): ``zcfast score
--space nbnlp`` on logged recepie_ids and a cell graph, ``zcfast correlate`` of that file against
the logs, ``zcfast search --space nbnlp`` on the pool. The networks are shrunk (emsize 8, nhid 8,
one layer; the real 33,278-word vocabulary, real batches of 70 tokens) so that the commands run
in seconds; the full-size model is covered by tests/test_nbnlp_engine.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from zcfast.cli import main
from zcfast.spaces import get_space, nbnlp
from zcfast.spaces.nbnlp_model import Sizes, num_params

pytestmark = pytest.mark.filterwarnings("ignore::zcfast.proxies._common.DegenerateScoreWarning")
TINY = Sizes(ntoken=33278, emsize=8, nhid=8, nlayers=1)
IDS = [1000000, 1000001, 1000002, 1000050, 1000051]


@pytest.fixture
def tiny(monkeypatch):
    """Every NB-NLP network of the commands at TINY sizes."""
    monkeypatch.setattr(nbnlp.NBNLPSpace, "sizes", lambda self, dataset="wikitext2", **o: TINY)


def _archs(tmp_path):
    rec = nbnlp.logged_runs().set_index("recepie_id").loc[1000000, "recepie"]
    f = tmp_path / "archs.txt"
    f.write_text("# four logged runs and one cell graph (isomorphic to run 1000000's)\n"
                 + "\n".join(map(str, IDS[1:])) + "\n\n" + rec + "\n")
    return f


def test_score_then_correlate(tiny, tmp_path, capsys):
    out = tmp_path / "s.csv"
    rc = main(["score", "--space", "nbnlp", "--archs", str(_archs(tmp_path)), "--proxies",
               "snip,nwot,params,jacob_cov", "--batch-size", "3", "--out", str(out),
               "--no-progress", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(out, dtype=str)
    meta = json.loads((tmp_path / "s.csv.meta.json").read_text())
    assert meta["dataset"] == "wikitext2" and meta["batch_size"] == 3 and meta["bptt"] == 70
    assert list(df.columns[:4]) == ["id", "recepie_id", "key", "arch"]
    runs = nbnlp.logged_runs().set_index("recepie_id")
    # logged runs: id = recepie_id; the graph: id = key (empty recepie_id), the network of 1000000
    assert df["id"].tolist()[:4] == [str(i) for i in IDS[1:]]
    assert df["recepie_id"].tolist()[:4] == [str(i) for i in IDS[1:]]
    assert pd.isna(df["recepie_id"].iloc[4]) and df["id"].iloc[4] == df["key"].iloc[4]
    assert df["key"].iloc[4] == runs.loc[1000000, "key"]
    assert df["key"].tolist()[:4] == [runs.loc[i, "key"] for i in IDS[1:]]
    # params at the tiny sizes is the layout's count
    sp = get_space("nbnlp")
    want = [num_params(nbnlp.cell_of(sp.parse(i)), TINY) for i in IDS[1:]]
    assert df["params"].astype(float).tolist()[:4] == want
    capsys.readouterr()
    j = tmp_path / "c.json"
    assert main(["correlate", str(out), "--target", "neg_best_val_ppl", "--json", str(j)]) == 0
    text = capsys.readouterr().out
    assert "neg_best_val_ppl" in text and "val ppl after 1 epoch" in text
    tab = {r["proxy"]: r for r in json.loads(j.read_text())["table"]}
    assert set(tab) >= {"snip", "nwot", "params", "jacob_cov"}
    assert tab["snip"]["n"] == 5
    # the targets are minus the mean perplexity of the runs a row names
    from zcfast.correlate import target_values
    from zcfast.scoring import read_scores

    scores, _ = read_scores(out)
    _, v = target_values(scores, "wikitext2", "neg_best_val_ppl")
    assert v[0] == pytest.approx(-np.exp(runs.loc[IDS[1], "best_val_loss"]), rel=1e-12)
    # the graph's row: the mean log perplexity of every run of that network (several ids)
    same = runs[runs["key"] == runs.loc[1000000, "key"]]
    assert len(same) > 1
    assert v[4] == pytest.approx(-np.exp(same["best_val_loss"].mean()), rel=1e-12)


def test_archs_all_is_the_finished_runs():
    from zcfast.scoring import parse_archs

    codes = parse_archs("all", 0, space="nbnlp", dataset="wikitext2")
    sp = get_space("nbnlp")
    ids = [sp.row_fields(c)["id"] for c in codes[:3]]
    assert len(codes) == 340 == len(set(codes))  # 341 runs, recepie_id 1002429 trained twice
    assert ids == ["1000000", "1000001", "1000002"]


def test_bad_input_is_named(tiny, tmp_path, capsys):
    f = tmp_path / "bad.txt"
    f.write_text("1000000\n99\n")
    rc = main(["score", "--space", "nbnlp", "--archs", str(f), "--out", str(tmp_path / "x.csv"),
               "--no-progress"])
    assert rc == 2 and "bad.txt:2" in capsys.readouterr().err
    rc = main(["score", "--space", "nbnlp", "--archs", "2", "--images", "cifar10-subset",
               "--out", str(tmp_path / "y.csv"), "--no-progress"])
    assert rc == 2 and "cifar10-subset" in capsys.readouterr().err


def test_search_on_the_pool(tiny, tmp_path, capsys):
    """Warmup and move with a zero-cost proxy on the 263-network pool: every seed spends its
    budget and its curve is recomputed from the logs (verify-runs)."""
    runs = tmp_path / "runs.jsonl"
    rc = main(["search", "--space", "nbnlp", "--algo", "ae", "--warmup", "12", "--move", "4",
               "--budget", "15", "--seeds", "2", "--proxy", "params", "--out", str(runs),
               "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "1",
               "--option", "population=6", "--option", "tournament=3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = [json.loads(s) for s in runs.read_text().splitlines()]
    assert len(lines) == 2 and all(r["dataset"] == "wikitext2" for r in lines)
    assert main(["verify-runs", str(runs)]) == 0
    assert "all consistent" in capsys.readouterr().out
    torn = tmp_path / "torn.jsonl"  # a file cut mid-line: the whole runs verify, the cut is said
    torn.write_text(runs.read_text()[:-40])
    assert main(["verify-runs", str(torn)]) == 0
    out = capsys.readouterr().out
    assert "the last line is incomplete" in out and "verified 1 run in 1 file(s): all consistent" in out


@pytest.mark.parametrize("proxy,why", [("epe_nas", "class label"), ("zen", "global average pool")])
def test_proxies_that_do_not_apply_are_refused_with_the_reason(tiny, tmp_path, capsys, proxy, why):
    """epe_nas and zen have no definition on a language model (docs/nbnlp.md): the command fails
    before scoring (no file written) and the per-model path refuses them, each naming the proxy
    and the reason. (Shown failing with the refusal removed, NOT_APPLICABLE emptied: the
    per-model path then crashes on the integer tokens or the missing pool with other errors.)"""
    out = tmp_path / "s.csv"
    one = tmp_path / "one.txt"  # one logged run (a bare number would mean "sample that many")
    one.write_text("1000000\n")
    rc = main(["score", "--space", "nbnlp", "--archs", str(one), "--proxies", f"snip,{proxy}",
               "--batch-size", "2", "--out", str(out), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and f"{proxy} does not apply to space 'nbnlp'" in err and why in err, err
    assert not out.exists()
    from zcfast.proxies import compute_measures

    sp = get_space("nbnlp")
    net = sp.build_model(sp.parse(1000000), **TINY.__dict__)
    mb = sp.minibatch(batch_size=2)
    with pytest.raises(ValueError, match=f"{proxy} does not apply to NBNLPNet: .*{why}"):
        compute_measures(net, mb.x, mb.y, ["snip", proxy])
