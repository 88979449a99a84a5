"""NAS-Bench-NLP networks under the proxies (docs/nbnlp.md): the packed engine equals the
per-model reference for every proxy (float64 to 1e-9, float32 by the criterion of
docs/engine.md with the reversed-batch second reference), batch invariance (K = 1, 7, 16),
NaN where nwot is undefined, and the generic proxy extensions (fisher summed over a layer's
applications, the continuous input of jacob_cov and synflow, declared NASWOT units) on small
hand-checkable networks. Tiny models (60 words, emsize 12, nhid 16, 3 layers), short batches.

The test_*_detects_* tests inject defects and show the checks fail on them: a leaky ReLU slope of
0.02 in the packed engine, the packed weights of one layer drawn from another slot, a blend with
its two branches swapped, fisher squared per application instead of summed first, (on the
random ragged pack) the new hidden states fed back in reverse order, and in the memory-saving
loss (docs/nbnlp.md, "Memory") a dropped decoder chunk, grasp's logit tangent without the tied
matrix's own, and grasp without the decoder's share of sum E * Hg_E.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from zcfast.batched import nbnlp as engine
from zcfast.batched import nbnlp_verify as nv
from zcfast.batched.verify import describe, failures
from zcfast.proxies import compute_measures
from zcfast.proxies._common import DegenerateScoreWarning
from zcfast.spaces import get_space, nbnlp
from zcfast.spaces.nbnlp_model import Sizes

pytestmark = pytest.mark.filterwarnings("ignore::zcfast.proxies._common.DegenerateScoreWarning")
SPACE = get_space("nbnlp")
SIZES = Sizes(ntoken=60, emsize=12, nhid=16, nlayers=3)
ALL = list(nv.ALL)


def _cells() -> list:
    """Network codes of diverse logged cells: the RNN, LSTM and GRU examples, cells with leaky
    ReLUs (nwot defined), blends, three hidden states, and the largest logged cell."""
    t = nbnlp.logged_runs()
    nets = [int(c) for c in t["network"].unique()]
    cells = {c: nbnlp.cell_of(c) for c in nets}
    pick = [nbnlp.network_code(SPACE.parse(r)) for r in (1000000, 1000001, 1000002)]

    def first(pred):
        return next(c for c in nets if pred(cells[c]) and c not in pick)

    pick.append(first(lambda c: nbnlp.LEAKY in c.ops and c.hidden == 1))
    pick.append(first(lambda c: nbnlp.LEAKY in c.ops and nbnlp.BLEND in c.ops))
    pick.append(first(lambda c: c.hidden == 3))
    pick.append(max(nets, key=lambda c: cells[c].n))
    return pick


CELLS = _cells()


def batch(b=4, T=5, seed=0):
    mb = SPACE.minibatch(batch_size=b, bptt=T, seed=seed)
    return mb.x % SIZES.ntoken, mb.y % SIZES.ntoken  # real text, folded into the tiny vocabulary


def test_float64_packed_equals_per_model():
    x, y = batch()
    bad = nv.float64_mismatches(CELLS, ALL, x, y, sizes=SIZES)
    assert not bad, bad


def _random_ragged(n=6, seed=2027):
    """Cells drawn by the benchmark's generator rule (not logged: fresh for the engine), ragged
    in hidden states (1 to 3), node counts and op mixes, packed together in one pass."""
    codes = SPACE.sample(n, seed=seed)
    cells = [nbnlp.cell_of(c) for c in codes]
    assert len({c.hidden for c in cells}) > 1 and len({c.n for c in cells}) > 2
    return codes


def test_float64_packed_equals_per_model_on_random_ragged_cells():
    codes = _random_ragged()
    x, y = batch(b=3, T=4, seed=5)
    bad = nv.float64_mismatches(codes, ALL, x, y, sizes=SIZES, seed=3)
    assert not bad, bad


def test_random_ragged_check_detects_reversed_state_feedback(monkeypatch):
    """Defect: each candidate's h_new_i fed back as h_prev_(H-1-i) (only cells with 2 or 3
    hidden states change); the random ragged pack's float64 check must fail on those cells."""
    orig = engine.build_plan

    def reversed_feedback(cells, device):
        plan = orig(cells, device)
        rows, at = plan.out_rows.tolist(), 0
        for c in cells:
            rows[at : at + c.hidden] = rows[at : at + c.hidden][::-1]
            at += c.hidden
        plan.out_rows = torch.as_tensor(rows, device=plan.out_rows.device)
        return plan

    monkeypatch.setattr(engine, "build_plan", reversed_feedback)
    codes = _random_ragged()
    x, y = batch(b=3, T=4, seed=5)
    bad = nv.float64_mismatches(codes, ["snip", "synflow"], x, y, sizes=SIZES, seed=3)
    multi = {k for k, c in enumerate(codes) if nbnlp.cell_of(c).hidden > 1}
    assert {k for k, _, _, _ in bad} == multi


def test_float32_packed_meets_the_criterion():
    x, y = batch(b=8, T=6)
    pairs = nv.check_float32(CELLS, ALL, x, y, sizes=SIZES)
    assert len(pairs) == len(CELLS) * len(ALL)
    bad = failures(pairs)
    assert not bad, "\n".join(map(describe, bad))


def test_batch_invariance():
    x, y = batch()
    mates = [c for c in dict.fromkeys(int(v) for v in nbnlp.logged_runs()["network"])
             if c != CELLS[1]]
    cheap = ["synflow", "snip", "grad_norm", "fisher", "jacob_cov", "nwot", "params", "flops"]
    worst = nv.batch_invariance(CELLS[4], mates, cheap, x, y, sizes=SIZES, ks=(1, 7, 16))
    assert all(v <= 2e-5 for v in worst.values()), worst


def test_nwot_is_nan_without_leaky_relu():
    x, y = batch()
    rnn, leaky = CELLS[0], CELLS[3]
    res = engine.PackedNBNLP([rnn, leaky], sizes=SIZES).compute(x, y, ["nwot"])
    assert np.isnan(res["nwot"][0]) and np.isfinite(res["nwot"][1])
    net = SPACE.build_model(rnn, **SIZES.__dict__)
    with pytest.warns(DegenerateScoreWarning, match="no units with binary codes"):
        assert np.isnan(compute_measures(net, x, y, ["nwot"])["nwot"])


def test_packed_rejects_bad_input():
    x, y = batch()
    eng = engine.PackedNBNLP(CELLS[:2], sizes=SIZES)
    with pytest.raises(ValueError, match="does not support"):
        eng.compute(x, y, ["epe_nas"])
    with pytest.raises(ValueError, match="int64 token tensors"):
        eng.compute(x.float(), y, ["snip"])


def test_scores_at_the_logs_sizes_are_finite():
    """One candidate at the benchmark's full size (33,278 words, 400/600, 3 layers) on a short
    real batch: the packed engine runs and every proxy is finite or NaN where documented."""
    mb = SPACE.minibatch(batch_size=2, bptt=3, seed=0)
    x, y = mb.x, mb.y
    res = SPACE.packed([CELLS[3]]).compute(x, y, ["snip", "fisher", "jacob_cov", "synflow",
                                                  "nwot", "params"])
    assert all(np.isfinite(v[0]) for v in res.values()), res
    t = nbnlp.logged_runs()
    assert res["params"][0] == t[t.network == CELLS[3]].num_params.iloc[0]


# ---- injected defects --------------------------------------------------------------------------
def test_float64_check_detects_leaky_slope(monkeypatch):
    monkeypatch.setitem(engine._ACT_FN, nbnlp.LEAKY,
                        lambda a: torch.nn.functional.leaky_relu(a, 0.02))
    x, y = batch()
    bad = nv.float64_mismatches([CELLS[3]], ["snip", "jacob_cov"], x, y, sizes=SIZES)
    assert {p for _, p, _, _ in bad} == {"snip", "jacob_cov"}


def test_checks_detect_weights_of_the_wrong_slot(monkeypatch):
    """One layer's weights drawn from the next layer's streams: float64 and float32 checks fail."""
    orig = engine.segments

    def shifted(cell, sizes):
        return [s if s[1] != 1 else (*s[:5], s[5] + 1, s[6]) for s in orig(cell, sizes)]

    monkeypatch.setattr(engine, "segments", shifted)
    x, y = batch(b=8, T=6)
    assert nv.float64_mismatches([CELLS[0]], ["grad_norm"], x, y, sizes=SIZES)
    assert failures(nv.check_float32([CELLS[0]], ["grad_norm", "snip"], x, y, sizes=SIZES))


def test_float64_check_detects_swapped_blend(monkeypatch):
    orig = engine.PackedNBNLP._layer

    def swapped(self, *a, **k):
        for lv in self.plan.levels:
            if lv.blend_in:
                z, p, q = lv.blend_in
                lv.blend_in = (z, q, p)
        return orig(self, *a, **k)

    monkeypatch.setattr(engine.PackedNBNLP, "_layer", swapped)
    gru = CELLS[2]
    assert nbnlp.BLEND in nbnlp.cell_of(gru).ops
    x, y = batch()
    assert nv.float64_mismatches([gru], ["snip"], x, y, sizes=SIZES)


# ---- the generic proxy extensions on hand-checkable networks ------------------------------------
class _Recurrent(nn.Module):
    """h_t = W x_t + U h_{t-1}, output V h_T: the layers W, U and V, U applied T - 1 times."""

    def __init__(self, d=3, h=4, c=5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W, self.U, self.V = nn.Linear(d, h, bias=False), nn.Linear(h, h, bias=False), nn.Linear(h, c)
        for m in (self.W, self.U, self.V):
            m.weight.data = torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * 0.5
        self.V.bias.data = torch.zeros(c, dtype=torch.float64)

    def forward(self, x):  # x (B, T, d)
        h = self.W(x[:, 0])
        for t in range(1, x.shape[1]):
            h = self.W(x[:, t]) + self.U(h)
        return self.V(h)


def _fisher_by_hand(net, x, y, summed: bool) -> float:
    """0.5 * mean_b (sum over applications of a * dL/da)^2, summed over channels, times fan-in;
    ``summed=False``: the square of every application apart (the definition before recurrent
    networks, which is wrong for shared weights)."""
    acts = {m: [] for m in (net.W, net.U, net.V)}

    def keep(m, i, o):
        o.retain_grad()
        acts[m].append(o)

    hooks = [m.register_forward_hook(keep) for m in acts]
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    for h in hooks:
        h.remove()
    total = 0.0
    B = x.shape[0]
    for m, outs in acts.items():
        per = [o.detach() * o.grad for o in outs]
        sq = sum(per).pow(2) if summed else sum(p.pow(2) for p in per)
        total += float(0.5 * sq.sum(0).sum() / B * m.weight.shape[1])
    return total


def test_fisher_sums_a_layers_applications_before_the_square():
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    got = compute_measures(_Recurrent(), x, y, ["fisher"])["fisher"]
    assert got == pytest.approx(_fisher_by_hand(_Recurrent(), x, y, summed=True), rel=1e-12)
    # the per-application square (the defect) is another value
    assert got != pytest.approx(_fisher_by_hand(_Recurrent(), x, y, summed=False), rel=1e-3)
    # micro-batching stays exact with the sum over applications
    got2 = compute_measures(_Recurrent(), x, y, ["fisher"], split_data=3)["fisher"]
    assert got2 == pytest.approx(got, rel=1e-12)


class _Embedded(nn.Module):
    """Tokens -> embeddings E[x] (B, T, d) -> logits (B, c, T) through a linear map."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.emb = nn.Embedding(7, 3)
        self.lin = nn.Linear(3, 5)
        self.emb.weight.data = torch.randn(7, 3, generator=g, dtype=torch.float64)
        self.lin.weight.data = torch.randn(5, 3, generator=g, dtype=torch.float64)
        self.lin.bias.data = torch.zeros(5, dtype=torch.float64)

    def body(self, e):
        return torch.tanh(self.lin(e)).transpose(1, 2)

    def forward(self, x):
        return self.body(self.emb(x))

    def zc_continuous_input(self, x):
        return self.emb(x).detach(), self.body


def test_jacob_cov_and_synflow_use_the_continuous_input():
    from zcfast.proxies.measures import jacob_cov_score

    net = _Embedded()
    x = torch.tensor([[1, 2, 3], [4, 5, 6], [0, 1, 2], [3, 3, 1]])
    y = torch.randint(0, 5, (4, 3))
    res = compute_measures(net, x, y, ["jacob_cov", "synflow"])
    e = net.emb(x).detach().requires_grad_(True)
    net.body(e).sum().backward()
    assert res["jacob_cov"] == pytest.approx(jacob_cov_score(e.grad.reshape(4, -1)), rel=1e-12)
    w = net.lin.weight.detach().abs()
    ones = torch.ones(1, 3, 3, dtype=torch.float64)  # one sample's embeddings, all ones
    wl = w.clone().requires_grad_(True)
    torch.tanh(torch.nn.functional.linear(ones, wl)).sum().backward()
    assert res["synflow"] == pytest.approx(float((w * wl.grad).abs().sum()), rel=1e-12)


def test_nwot_units_declared_by_the_network():
    class NoUnits(_Embedded):
        def zc_nwot_modules(self):
            return []

    x = torch.tensor([[1, 2, 3], [4, 5, 6]])
    y = torch.zeros(2, 3, dtype=torch.int64)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert np.isnan(compute_measures(NoUnits(), x, y, ["nwot"])["nwot"])
    assert any(issubclass(i.category, DegenerateScoreWarning) for i in w)
    with pytest.raises(ValueError, match="no nn.ReLU module"):  # undeclared: unchanged behaviour
        compute_measures(_Embedded(), x, y, ["nwot"])


# ---- memory: chunked decoder, reverse-over-forward grasp (docs/nbnlp.md, "Memory") -------------
PAPER_AND_CHEAP = ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow", "plain", "nwot",
                   "params", "l2_norm"]
CHUNKED = {"grad_norm", "snip", "grasp", "fisher", "plain"}  # the proxies of the chunked loss


@pytest.mark.parametrize("time_chunk", [1, 2, 3])
def test_time_chunked_decoder_equals_per_model_float64(time_chunk):
    """Decoder chunks of 1, 2 and 3 of 5 time steps (3 leaves a ragged last chunk) on a pack of
    diverse cells: every proxy equals the per-model reference (one decoder over all steps,
    grasp by double backward) to 1e-9 in float64."""
    x, y = batch(b=3, T=5, seed=2)
    eng = engine.PackedNBNLP(CELLS[:1], sizes=SIZES, time_chunk=time_chunk)
    assert len(eng.time_chunks(3, 5)) == -(-5 // time_chunk)
    bad = nv.float64_mismatches(CELLS, PAPER_AND_CHEAP, x, y, sizes=SIZES, seed=1,
                                time_chunk=time_chunk)
    assert not bad, bad


def test_default_time_chunks_cover_the_batch_at_the_logs_sizes():
    eng = engine.PackedNBNLP.__new__(engine.PackedNBNLP)  # no weights needed for the plan
    eng.plan = engine.Plan(K=1, hidden_cand=np.zeros(1, np.int64), levels=[], n_values=1,
                           out_rows=None, out0_rows=None, n_lin=0, x_cand=None, x_tgt=None,
                           x_pos0=None, s_tgt_global=None, s_pos0=None, lin_cand=None)
    eng.sizes, eng.time_chunk = Sizes(), None
    ch = eng.time_chunks(20, 70)
    assert ch[0][0] == 0 and ch[-1][1] == 70 and all(a[1] == b[0] for a, b in zip(ch, ch[1:]))
    assert all((b - a) * 20 * 33278 <= 1 << 23 for a, b in ch)
    with pytest.raises(ValueError, match="time_chunk"):
        engine.PackedNBNLP(CELLS[:1], sizes=SIZES, time_chunk=0)


def test_float64_check_detects_a_dropped_time_chunk(monkeypatch):
    """Defect: the last decoder chunk skipped (its positions' loss terms lost). Exactly the
    proxies of the chunked loss fail; jacob_cov, synflow and nwot do not use it."""
    orig = engine.PackedNBNLP.time_chunks
    monkeypatch.setattr(engine.PackedNBNLP, "time_chunks", lambda self, B, T: orig(self, B, T)[:-1])
    x, y = batch(b=3, T=5, seed=2)
    bad = nv.float64_mismatches(CELLS[:2], PAPER_AND_CHEAP, x, y, sizes=SIZES, time_chunk=2)
    assert {p for _, p, _, _ in bad} == CHUNKED


def test_float64_check_detects_a_missing_tangent_of_the_tied_matrix(monkeypatch):
    """Defect: grasp's logit tangent without the tied matrix's own tangent (u g_E^T dropped):
    only grasp fails."""
    monkeypatch.setattr(engine.PackedNBNLP, "_decode_tangent",
                        staticmethod(lambda u, ut, emb, g_emb: (torch.bmm(ut, emb.transpose(1, 2)),
                                                                torch.zeros(()))))
    x, y = batch(b=3, T=5, seed=2)
    bad = nv.float64_mismatches(CELLS[:2], ["grasp", "snip", "fisher"], x, y, sizes=SIZES,
                                time_chunk=2)
    assert {p for _, p, _, _ in bad} == {"grasp"} and len(bad) == 2


def test_float64_check_detects_a_dropped_decoder_share_of_grasp(monkeypatch):
    """Defect: the decoder's share of sum W_E * Hg_E (computed as a sum over the logits instead
    of forming Hg_E) left out: only grasp fails."""
    orig = engine.PackedNBNLP.hessian_pass
    monkeypatch.setattr(engine.PackedNBNLP, "hessian_pass",
                        lambda self, *a: (orig(self, *a)[0], 0.0))
    x, y = batch(b=3, T=5, seed=2)
    bad = nv.float64_mismatches(CELLS[:2], ["grasp", "snip"], x, y, sizes=SIZES, time_chunk=2)
    assert {p for _, p, _, _ in bad} == {"grasp"} and len(bad) == 2
