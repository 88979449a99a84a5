"""Gaps (cells without a finite score): the structural rules, their agreement with scores the
engine computes, and the counts and reasons in the correlation table and the score file's meta
(docs/gaps.md).

Injected defects these tests catch (each run by hand, each made its test fail): following
``none`` edges in ``nb201.input_nodes``; dropping the conv test in ``nb201.relu_sees_input``;
counting +-inf cells as dropped in ``gaps.explain``; not calling ``record_gaps`` in
``score_to_file``; not printing the notes in ``zcfast correlate``.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zcfast import cli, gaps
from zcfast.scoring import read_scores, score_to_file
from zcfast.spaces import nb201

# cells named in docs/gaps.md
BLIND = 6744  # output ignores input, no ReLU sees the image: jacob_cov NaN, nwot -inf
IGNORES = 13078  # output ignores input, a conv reads the input: jacob_cov NaN, nwot finite
NORMAL = 6111


def _paths_rule(ops) -> tuple:
    """Independent statement of the rules: the four input->output paths of the cell, and the
    nodes the input reaches, written out by hand."""
    on = [o != nb201.NONE for o in ops]
    # paths 0->3, 0->1->3, 0->2->3, 0->1->2->3 as edge lists (edges in arch-string order)
    ignores = not any(all(on[e] for e in p) for p in ([3], [0, 4], [1, 5], [0, 2, 5]))
    dep = {0: True, 1: on[0], 2: on[1] or (on[0] and on[2])}
    conv = [o in (nb201.CONV1, nb201.CONV3) for o in ops]
    reads = {0: 0, 1: 0, 2: 1, 3: 0, 4: 1, 5: 2}  # source node of each edge
    sees = (not ignores) or any(conv[e] and dep[reads[e]] for e in range(6))
    return ignores, sees


def test_structure_rules_on_every_cell():
    n_ignores = n_blind = 0
    for ops in itertools.product(range(5), repeat=6):
        ignores, sees = _paths_rule(ops)
        assert nb201.output_ignores_input(ops) == ignores, ops
        assert nb201.relu_sees_input(ops) == sees, ops
        n_ignores += ignores
        n_blind += not sees
    assert (n_ignores, n_blind) == (341, 201)  # the counts docs/gaps.md states
    assert nb201.output_ignores_input(BLIND) and not nb201.relu_sees_input(BLIND)
    assert nb201.output_ignores_input(IGNORES) and nb201.relu_sees_input(IGNORES)
    assert not nb201.output_ignores_input(NORMAL)


@pytest.fixture(scope="module")
def gap_file(tmp_path_factory):
    """jacob_cov and nwot of four cells, scored by the packed engine into a file (small batch)."""
    out = tmp_path_factory.mktemp("gaps") / "g.csv"
    score_to_file(out, archs=[BLIND, IGNORES, NORMAL, 0], proxies="jacob_cov,nwot",
                  dataset="ImageNet16-120", batch_size=8, progress=False)
    return out


def test_rules_match_engine_scores(gap_file):
    df, _ = read_scores(gap_file)
    for i in df.index:
        assert math.isnan(df.loc[i, "jacob_cov"]) == nb201.output_ignores_input(int(i)), i
        assert (df.loc[i, "nwot"] == -math.inf) == (not nb201.relu_sees_input(int(i))), i
    assert np.isfinite(df.loc[[NORMAL, 0]].drop(columns="arch").to_numpy()).all()


def test_score_file_meta_records_gaps(gap_file):
    meta = json.loads(Path(str(gap_file) + ".meta.json").read_text())
    j, w = meta["gaps"]["jacob_cov"], meta["gaps"]["nwot"]
    assert (j["cells"], j["dropped"], j["NaN"], j["-inf"]) == (4, 2, 2, 0)
    assert [(r["value"], r["count"], r["kept"], r["cause"]) for r in j["reasons"]] == \
        [("NaN", 2, False, gaps.IGNORES_INPUT)]
    assert "ignores its input" in j["reasons"][0]["reason"] and "0/0" in j["reasons"][0]["reason"]
    assert (w["dropped"], w["-inf"]) == (0, 1)
    assert [(r["value"], r["count"], r["kept"], r["cause"], r["example"]) for r in w["reasons"]] \
        == [("-inf", 1, True, gaps.NO_RELU_SEES_INPUT, BLIND)]
    assert "singular" in w["reasons"][0]["reason"]


def test_correlate_reports_dropped_cells_and_why(tmp_path, capsys):
    cells = nb201.sample(8, seed=3).tolist() + [BLIND, IGNORES]
    v = np.linspace(1.0, 2.0, len(cells))
    jac = np.where([nb201.output_ignores_input(c) for c in cells], np.nan, v)
    nwot = np.where([nb201.relu_sees_input(c) for c in cells], v, -np.inf)
    df = pd.DataFrame({"index": cells, "arch": [nb201.arch_at(c) for c in cells],
                       "jacob_cov": jac, "nwot": nwot})
    path = tmp_path / "s.csv"
    df.to_csv(path, index=False)
    Path(str(path) + ".meta.json").write_text(json.dumps({"dataset": "cifar10"}))
    n_nan = int(np.isnan(jac).sum())
    assert cli.main(["correlate", str(path), "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "| dropped (NaN) |" in out
    assert f"| jacob_cov | {len(cells) - n_nan} | {n_nan} |" in out
    assert f"| nwot | {len(cells)} | 0 |" in out
    assert (f"- jacob_cov: {n_nan} of {len(cells)} cells are NaN, dropped: the cell's output "
            "ignores its input") in out
    assert "- nwot: 1 of 10 cells are -inf, kept and ranked lowest: no ReLU sees the image" in out
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["gaps"]["jacob_cov"]["dropped"] == n_nan
    assert {r["proxy"]: r["dropped"] for r in table["table"]}["jacob_cov"] == n_nan


def test_unexplained_and_infinite_gaps():
    df = pd.DataFrame({"arch": "", "snip": [np.nan, np.inf, 1.0], "nwot": [1.0, 2.0, -np.inf]},
                      index=pd.Index([NORMAL, BLIND, 0], name="index"))
    g = gaps.explain(df)
    assert (g["snip"]["dropped"], g["snip"]["NaN"], g["snip"]["+inf"]) == (1, 1, 1)
    causes = {(r["value"], r["cause"], r["kept"]) for r in g["snip"]["reasons"]}
    assert causes == {("NaN", gaps.UNEXPLAINED, False), ("+inf", gaps.IGNORES_INPUT, True)}
    assert g["nwot"]["reasons"][0]["cause"] == gaps.UNEXPLAINED  # cell 0 is connected
    text = gaps.format_gaps(g)
    assert "snip: 1 of 3 cells are NaN, dropped: not explained by the cell structure" in text
    assert "snip: 1 of 3 cells are +inf, kept and ranked highest" in text
    assert gaps.format_gaps(gaps.explain(df.iloc[2:][["snip"]])) == ""
