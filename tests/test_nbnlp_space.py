"""NAS-Bench-NLP space (docs/nbnlp.md): the bundled logs, the builder's parameter counts against
every log's num_params, validity, the canonical form (compiled = Python reference; invariant under
renaming, reordering and hidden-slot permutation; blend order kept), the generator, moves,
neighbours, mutation, features and RL decisions (compiled = reference), the space interface and
a search on the pool of logged networks.

Injected defects these checks were shown to catch (the test_*_detects_* tests keep some in the
suite): an untied decoder (parameter counts off by ntoken x nhid for every log), a key that
hashes the recepie as written (renamed cells get other keys), a canonical form that sorts blend
inputs (distinct networks merged), C++ refinement that ignores out-edges (mismatch with the
reference on the logged LSTM), mutation that does not prune the rerouted cell (mismatch with the
reference).
"""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
import torch

from zcfast import _C
from zcfast.data import nbnlp as data
from zcfast.spaces import get_space, nbnlp
from zcfast.spaces._rng import Rng
from zcfast.spaces.nbnlp_model import Sizes, build_model, num_params

SPACE = get_space("nbnlp")
RUNS = data.runs()
LSTM = 1000001  # the benchmark's own LSTM and GRU examples, logged as recepie_id 1000001/2
GRU = 1000002


def recepie(rid: int) -> dict:
    return json.loads(next(r["recepie"] for r in RUNS if r["recepie_id"] == rid))


def cell_of(rec) -> nbnlp.Cell:
    return nbnlp.from_recepie(rec)


def relabel(rec: dict, rng: random.Random) -> dict:
    """The same network written differently: new node names, shuffled node order, shuffled
    inputs of every op but blend, hidden slots 1..T-1 permuted (h_prev_i with h_new_i)."""
    T = sum(1 for k in rec if k.startswith("h_new_") and k[6:].isdigit())
    perm = list(range(1, T))
    rng.shuffle(perm)
    hp = {0: 0, **{i + 1: perm[i] for i in range(T - 1)}}
    ren = {k: (f"h_new_{hp[int(k[6:])]}" if k.startswith("h_new_") and k[6:].isdigit()
               else f"n{rng.randrange(10**9)}") for k in rec}

    def rs(s):
        return f"h_prev_{hp[int(s[7:])]}" if s.startswith("h_prev_") else ren.get(s, s)

    items = list(rec.items())
    rng.shuffle(items)
    out = {}
    for k, v in items:
        ins = [rs(s) for s in v["input"]]
        if v["op"] != "blend":
            rng.shuffle(ins)
        out[ren[k]] = {"op": v["op"], "input": ins}
    return out


# ---- data ------------------------------------------------------------------------------------
def test_bundled_logs():
    assert len(RUNS) == 345
    assert sum(r["status"] == "OK" for r in RUNS) == 341
    st = data.setup()
    assert (st["emsize"], st["nhid"], st["nlayers"], st["tied"], st["bptt"], st["batch_size"]) == \
        (400, 600, 3, True, 70, 20)
    t = data.run_table()
    ok = t[t.finished]
    assert (ok.epochs == 50).all() and np.isfinite(ok.best_val_loss).all()
    assert (ok.best_val_loss <= ok.final_val_loss).all()
    # the README's sanity numbers: best validation perplexity 96.3, its test perplexity 91.9
    best = ok.loc[ok.best_val_loss.idxmin()]
    assert round(np.exp(best.best_val_loss), 1) == 96.3
    assert round(np.exp(best.final_test_loss), 1) == 91.9


def test_minibatch_is_real_text_and_seeded():
    ids, vocab = data.corpus()
    # the text starts with an empty line, then a heading
    assert len(vocab) < data.NTOKEN and [vocab[i] for i in ids[:3]] == ["<eos>", "=", "Homarus"]
    x, y = data.minibatch(20, 70, seed=0)
    assert x.shape == y.shape == (20, 70) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is the next token
    x2, _ = data.minibatch(20, 70, seed=0)
    x3, _ = data.minibatch(20, 70, seed=1)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    with pytest.raises(ValueError, match="bptt"):
        data.minibatch(20, 10**6)


# ---- the builder's test -------------------------------------------------------------------
def test_parameter_counts_match_every_log():
    """For every logged run (345, finished or not) the builder's parameter count equals the log's
    num_params: the layout's count for all of them, and the built (meta-device) network's for a
    spread of them (every 20th, plus the LSTM and GRU examples)."""
    for k, r in enumerate(RUNS):
        code = SPACE.parse(r["recepie"])
        assert num_params(nbnlp.cell_of(code)) == r["num_params"], r["recepie_id"]
        if k % 20 == 0 or r["recepie_id"] in (LSTM, GRU):
            net = build_model(code, seed=None, device="meta")
            assert sum(p.numel() for p in net.parameters()) == r["num_params"], r["recepie_id"]


def test_parameter_check_detects_untied_decoder(monkeypatch):
    """Injected defect: a last layer of hidden size nhid (decoder not tied) changes the count."""
    monkeypatch.setattr(Sizes, "layers", lambda self: [(self.emsize if li == 0 else self.nhid, self.nhid)
                                                       for li in range(self.nlayers)])
    r = RUNS[0]
    assert num_params(nbnlp.cell_of(SPACE.parse(r["recepie"]))) != r["num_params"]


# ---- validity --------------------------------------------------------------------------------
@pytest.mark.parametrize("rec,match", [
    ({"a": {"op": "linear", "input": ["x", "h_prev_0"]}}, "no node is named h_new_0"),
    ({"h_new_0": {"op": "conv", "input": ["x"]}}, "unknown op 'conv'"),
    ({"h_new_0": {"op": "linear", "input": ["x", "h_prev_1"]}}, "only 1 hidden state"),
    ({"h_new_0": {"op": "linear", "input": ["x", "nothing"]}}, "neither x"),
    ({"h_new_1": {"op": "linear", "input": ["x", "h_prev_0"]}}, "h_new_0..h_new_0"),
])
def test_format_errors_name_the_problem(rec, match):
    with pytest.raises(ValueError, match=match):
        SPACE.parse(rec)


@pytest.mark.parametrize("rec,match", [
    ({"h_new_0": {"op": "elementwise_sum", "input": ["x", "h_prev_0"]}}, "reads x"),
    ({"h_new_0": {"op": "blend", "input": ["x", "h_prev_0"]}}, "2 inputs"),
    ({"h_new_0": {"op": "linear", "input": ["x", "x"]}}, "same input twice"),
    ({"a": {"op": "linear", "input": ["x", "b"]}, "b": {"op": "activation_tanh", "input": ["a"]},
      "h_new_0": {"op": "activation_tanh", "input": ["b"]}}, "cycle"),
    ({"a": {"op": "linear", "input": ["x", "h_prev_0"]},
      "h_new_0": {"op": "linear", "input": ["x", "h_prev_0"]}}, "feeds no new hidden state"),
    ({"h_new_0": {"op": "linear", "input": ["x"]}}, "never reads h_prev_0"),
])
def test_invalid_cells_name_the_problem(rec, match):
    cell = cell_of(rec)
    assert match in nbnlp.invalid_reason(cell)
    assert _C.nbnlp.invalid_reason(cell.hidden, list(cell.ops), [list(i) for i in cell.inputs],
                                   list(cell.outputs))  # the compiled check agrees
    with pytest.raises(ValueError, match="invalid NAS-Bench-NLP"):
        SPACE.parse(rec)


def test_logged_cells_are_valid_and_generator_rules():
    """Every logged cell is valid; the generator's own rules hold for all but the benchmark's
    hand-written GRU example (a linear node reads an elementwise product, and h_new_0 reads
    h_prev_0 directly)."""
    off = []
    for r in RUNS:
        c = cell_of(r["recepie"])
        assert nbnlp.is_valid(c), r["recepie_id"]
        if nbnlp.generator_problem(c):
            off.append(r["recepie_id"])
    assert off == [GRU]


# ---- canonical form and keys ----------------------------------------------------------------
def test_canonical_form_compiled_equals_reference():
    for r in RUNS:
        c = cell_of(r["recepie"])
        code = nbnlp.intern(c)
        assert _C.nbnlp.json(code) == nbnlp.canonical_reference(c).to_json(), r["recepie_id"]
        assert SPACE.key(code) == nbnlp.hash_reference(c)
        assert nbnlp.code_of_hash(SPACE.key(code)) == code


def test_key_is_invariant_under_relabelling():
    rng = random.Random(0)
    for r in RUNS[::3]:
        rec = json.loads(r["recepie"])
        k = SPACE.key(SPACE.parse(rec))
        for _ in range(3):
            assert SPACE.key(SPACE.parse(relabel(rec, rng))) == k, r["recepie_id"]
            assert nbnlp.hash_reference(cell_of(relabel(rec, rng))) == k


def test_invariance_check_detects_a_key_of_the_written_recepie():
    """Injected defect: hashing the recepie as written gives renamed cells other keys."""
    rng = random.Random(1)
    rec = recepie(LSTM)

    def naive(r):
        return hashlib.md5(json.dumps(r).encode()).hexdigest()

    assert naive(relabel(rec, rng)) != naive(rec)


def test_blend_input_order_matters():
    """z * a + (1 - z) * b: swapping a and b is another network (and another key); swapping
    the inputs of a product is not."""
    gru = recepie(GRU)
    blend = next(k for k, v in gru.items() if v["op"] == "blend")
    sw = json.loads(json.dumps(gru))
    z, a, b = sw[blend]["input"]
    sw[blend]["input"] = [z, b, a]
    assert SPACE.key(SPACE.parse(sw)) != SPACE.key(SPACE.parse(gru))
    lstm = recepie(LSTM)
    sw = json.loads(json.dumps(lstm))
    sw["h_new_0"]["input"] = sw["h_new_0"]["input"][::-1]
    assert SPACE.key(SPACE.parse(sw)) == SPACE.key(SPACE.parse(lstm))


def test_logged_runs_cover_263_networks():
    """Distinct recepie ids are often the same network: the 341 finished runs are 263 networks
    (the benchmark's list repeats small cells; e.g. its RNN example is logged three times)."""
    t = nbnlp.logged_runs()
    assert len(t) == 341 and t["recepie_id"].nunique() == 340 and t["key"].nunique() == 263
    rnn = t[t.key == SPACE.key(SPACE.parse(1000000))]
    assert sorted(rnn.recepie_id) == [1000000, 1003080, 1003414]


# ---- generator, moves, features, decisions: compiled = reference --------------------------------
def test_generator_compiled_equals_reference():
    for seed in range(60):
        T, inter = 1 + seed % 3, (7, 14, 21)[seed // 3 % 3]
        cell, ok = nbnlp.generate_reference(Rng(seed), T, inter)
        (h, ops, ins, outs), ok2 = _C.nbnlp.generate(seed, T, inter)
        assert (h, tuple(ops), tuple(map(tuple, ins)), tuple(outs)) == \
            (cell.hidden, cell.ops, cell.inputs, cell.outputs) and ok == ok2, seed
    ref = nbnlp.sample_reference(20, 7)
    got = _C.nbnlp.sample(20, 7)
    assert [_C.nbnlp.json(int(c)) for c in got] == [c.to_json() for c in ref]
    for c in ref:
        assert nbnlp.is_valid(c) and nbnlp.generator_problem(c) is None
        assert c.n <= nbnlp.MAX_NODES


def test_moves_compiled_equal_reference():
    codes = sorted({int(c) for c in nbnlp.logged_runs()["network"]})[:40]
    codes.append(SPACE.parse(GRU))
    for code in codes:
        cell = nbnlp.cell_of(code)
        mv, mc = nbnlp.moves_reference(cell), _C.nbnlp.moves(code)
        assert len(mv) == len(mc)
        for a, b in zip(mv, mc):
            assert (a is None) == (b == 0)
            if a is not None:
                assert a.to_json() == _C.nbnlp.json(int(b))
                assert nbnlp.is_valid(a)
        nb = SPACE.neighbours(code)
        assert [c.to_json() for c in nbnlp.neighbours_reference(cell)] == \
            [_C.nbnlp.json(c) for c in nb]
        assert len({SPACE.key(c) for c in nb}) == len(nb) and SPACE.key(code) not in \
            {SPACE.key(c) for c in nb}
        for s in range(2):
            m = SPACE.mutate(code, s)
            assert _C.nbnlp.json(m) == nbnlp.mutate_reference(cell, s).to_json()
            assert SPACE.key(m) != SPACE.key(code)
        assert (SPACE.encode([code])[0] == nbnlp.features_reference(cell)).all()
        d = nbnlp.to_decisions_reference(cell)
        assert list(_C.nbnlp.to_decisions(code)) == d
        assert nbnlp.from_decisions_reference(d).to_json() == _C.nbnlp.json(code)
        assert int(SPACE.hot().from_decisions(d)) == nbnlp.network_code(code)


def test_decisions_that_describe_no_cell():
    d = nbnlp.to_decisions_reference(cell_of(recepie(1000000)))
    bad = list(d)
    assert d[nbnlp.DECISIONS_PER_SLOT + 1] == 1  # node 1 is h_new_0
    bad[nbnlp.DECISIONS_PER_SLOT + 1] = 0  # no node is h_new_0 any more
    assert nbnlp.from_decisions_reference(bad) is None and SPACE.hot().from_decisions(bad) is None


# ---- the space interface ------------------------------------------------------------------------
def test_parse_forms_and_rows(tmp_path):
    c_id = SPACE.parse(1000000)
    assert SPACE.parse("1000000") == c_id
    assert SPACE.row_fields(c_id)["recepie_id"] == 1000000
    net = SPACE.parse(recepie(1000000))  # the same network given as a graph: untagged
    assert net != c_id and SPACE.key(net) == SPACE.key(c_id)
    assert SPACE.row_fields(net)["recepie_id"] == ""
    assert SPACE.parse(SPACE.key(c_id)) == net == SPACE.from_key(SPACE.key(c_id))
    assert json.loads(SPACE.describe(c_id)) == json.loads(SPACE.row_fields(c_id)["arch"])
    with pytest.raises(ValueError, match="not a recepie_id"):
        SPACE.parse("123")
    with pytest.raises(ValueError, match="known to this process"):
        SPACE.parse("0" * 32)
    f = tmp_path / "archs.txt"
    f.write_text(f"# two logged runs and a graph\n1000000\n1003080\n{json.dumps(recepie(GRU))}\n")
    codes = SPACE.parse_file(f)
    assert [SPACE.row_fields(c)["recepie_id"] for c in codes] == [1000000, 1003080, ""]
    f.write_text("1000000\n\n1000000\n")
    with pytest.raises(ValueError, match=":3: .* already listed on line 1"):
        SPACE.parse_file(f)
    # --archs all: the 341 finished runs under 340 recepie_ids (1002429 trained twice)
    assert len(SPACE.all_archs()) == 340 == len(set(SPACE.row_fields(c)["id"]
                                                     for c in SPACE.all_archs()))


def test_universe_is_the_pool_of_logged_networks():
    uni = SPACE.universe("wikitext2")
    assert len(uni) == 263 and len(set(uni.keys)) == 263
    assert np.isfinite(uni.val).all() and np.isfinite(uni.test).all()
    t = data.run_table()
    best = t[t.finished].best_val_loss.min()
    assert np.isclose(uni.val.max(), -best) or uni.val.max() < -best  # a mean over repeats
    assert SPACE.universe("wt2").keys == uni.keys
    with pytest.raises(ValueError, match="unknown NAS-Bench-NLP dataset"):
        SPACE.universe("cifar10")


@pytest.mark.parametrize("algo", ["rand", "ae", "rl", "bp"])
def test_search_on_the_pool(algo):
    from zcfast.search.driver import run_search, universe, universe_ids

    uni = universe("wikitext2", "nbnlp")
    t = nbnlp.logged_runs()
    # a zero-cost stand-in score per network: minus its parameter count
    params = dict(zip(t.key, -t.num_params.astype(float)))
    scores = np.asarray([params[k] for k in uni.keys])
    r = run_search(algo, "wikitext2", budget=30, warmup=20, move=5, seed=3, space="nbnlp",
                   scores=scores,
                   options={"bp_iters": 30, "bp_warmup_iters": 30, "bp_pairs": 16} if algo == "bp" else None)
    assert r["pool"] and r["queries"] == 30 and len(r["trained"]) == 30
    assert set(r["trained"]) <= set(universe_ids("wikitext2", "nbnlp"))
    curve = np.asarray(r["test_curve"])
    assert np.isfinite(curve).all() and r["best_val_curve"] == sorted(r["best_val_curve"])
