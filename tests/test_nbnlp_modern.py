"""The modern proxies (docs/proxies_modern.md) on NAS-Bench-NLP's language model (docs/nbnlp.md,
"Modern proxies"): AZ-NAS's components and vkdnw_dim run per model with a defined reading;
meco, swap, swap_reg, vkdnw and vkdnw_single are refused with their reason (as epe_nas and zen,
tests/test_nbnlp_cli.py); ``--proxies modern`` / ``all`` expand to the proxies the space
supports. Networks are shrunk (tiny sizes, the real 33,278-word vocabulary, short real batches)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from zcfast.cli import main
from zcfast.proxies import MODERN_PROXIES, PROXIES, _random, az_nas, compute_measures
from zcfast.proxies._common import DegenerateScoreWarning
from zcfast.scoring import parse_proxies
from zcfast.spaces import get_space, nbnlp
from zcfast.spaces.nb101_model import stream_code
from zcfast.spaces.nbnlp_model import NOT_APPLICABLE, NBNLPNet, Sizes

SMALL = Sizes(ntoken=33278, emsize=6, nhid=8, nlayers=3)
TINY = Sizes(ntoken=33278, emsize=8, nhid=8, nlayers=1)
AZ = ("az_expressivity", "az_progressivity", "az_trainability")
RUNS = "modern"  # the proxies that run on NB-NLP, as --proxies modern gives them
SUPPORTED = ("zico", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity",
             "vkdnw_dim")
REFUSED = {"epe_nas": "class label", "zen": "global average pool", "meco": "rank at most 69",
           "swap": "no ReLU", "swap_reg": "underflows to 0", "vkdnw": "33,278 backward passes",
           "vkdnw_single": "needs vkdnw"}
# a leaky-ReLU cell, an LSTM-like cell with blends and products, a 3-hidden-state cell
CELLS = (1000000, 1000001, 1000050)


@pytest.fixture
def tiny(monkeypatch):
    """Every NB-NLP network of the commands at TINY sizes."""
    monkeypatch.setattr(nbnlp.NBNLPSpace, "sizes", lambda self, dataset="wikitext2", **o: TINY)


def _batch():
    return get_space("nbnlp").minibatch(batch_size=3, bptt=9, seed=1)


def _entropy(f: np.ndarray) -> float:
    x = f.reshape(-1, f.shape[-1])
    x = x - x.mean(0)
    lam = np.linalg.eigvalsh(x.T @ x / x.shape[0])
    p = lam / lam.sum()
    return float(-(p * np.log(p + 1e-8)).sum())


def az_reference(code: int, x: torch.Tensor, seed: int) -> dict:
    """AZ-NAS's components of the language model written out (docs/nbnlp.md): the network
    re-initialised (Kaiming normal), the run's noise in place of the embeddings (F_0), each
    layer's outputs F_l as (B x T, C) rows, each layer's vector-Jacobian product of its +-1 probe
    (stream PROBE + l of the network's 32-bit key) by torch.func.vjp on the layer alone."""
    sp = get_space("nbnlp")
    net = sp.build_model(code, **SMALL.__dict__).double()
    _random.reinit_(net, seed, "kaiming_normal")
    e = net.encoder(x).detach()
    feats = [_random.noise_input(e, _random.NOISE_AZ, seed)]
    for rnn in net.rnns:
        feats.append(rnn(feats[-1]).detach())
    ent = [_entropy(f.numpy()) for f in feats]
    scores = []
    for i in reversed(range(1, len(feats))):
        probe = _random.rademacher(feats[i].shape, stream_code(net.key), _random.PROBE + i, seed)
        _, vjp = torch.func.vjp(net.rnns[i - 1], feats[i - 1])
        (g_in,) = vjp(probe.double())
        go = probe.double().reshape(-1, probe.shape[-1]).numpy()
        gi = g_in.detach().reshape(-1, g_in.shape[-1]).numpy()
        s = float(np.linalg.svd(gi.T @ go / go.shape[0], compute_uv=False).max())
        scores.append(2.0 - s - 1.0 / (s + 1e-6))
    return {"az_expressivity": sum(ent),
            "az_progressivity": min(b - a for a, b in zip(ent[:-1], ent[1:])),
            "az_trainability": sum(scores) / len(scores)}


def _az(code: int, x, y, seed: int) -> dict:
    sp = get_space("nbnlp")
    net = sp.build_model(code, **SMALL.__dict__, dtype=torch.float64)
    return compute_measures(net, x, y, list(AZ), seed=seed)


@pytest.mark.parametrize("rid", CELLS)
def test_az_components_equal_the_written_out_definition(rid):
    """float64: compute_measures' AZ-NAS components on 3-layer networks equal the definition
    written out with numpy and torch.func (relative 1e-9)."""
    mb = _batch()
    code = get_space("nbnlp").parse(rid)
    got, ref = _az(code, mb.x, mb.y, 5), az_reference(code, mb.x, 5)
    for k in AZ:
        assert math.isfinite(got[k]) and got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k


@pytest.mark.parametrize("defect", ["channels_first", "probe_stream", "embeddings_not_noise"])
def test_az_reference_catches_injected_defects(monkeypatch, defect):
    """The comparison above fails on each injected defect: entropies of features read channels
    first (the image layout: the time steps taken as channels), probes drawn from the next stream (a block's probe reused for
    another), and the real embeddings
    fed instead of the noise (which changes every component, F_0 included)."""
    mb = _batch()
    code = get_space("nbnlp").parse(CELLS[1])
    ref = az_reference(code, mb.x, 5)
    if defect == "channels_first":
        orig = az_nas.spectral_entropy
        monkeypatch.setattr(az_nas, "spectral_entropy", lambda f, last=False: orig(f, False))
    elif defect == "probe_stream":
        rad = _random.rademacher
        monkeypatch.setattr(_random, "rademacher", lambda sh, a, slot, seed: rad(sh, a, slot + 1, seed))
    else:
        monkeypatch.setattr(_random, "noise_input", lambda like, k, seed: like)
    got = _az(code, mb.x, mb.y, 5)
    bad = [k for k in AZ if got[k] != pytest.approx(ref[k], rel=1e-9, abs=1e-12)]
    assert bad, (defect, got, ref)
    if defect == "probe_stream":
        assert bad == ["az_trainability"]
    if defect == "channels_first":
        assert bad == ["az_expressivity", "az_progressivity"]


def test_modern_scores_depend_on_the_network_only(monkeypatch):
    """A logged run's tagged handle and its cell graph parsed afresh (different codes, one
    network) get the same AZ-NAS components and vkdnw_dim, and a second call repeats them
    exactly. (Fails with the streams keyed by the low bits of the handle instead of the key:
    injected below, the two codes then draw different weights and probes.)"""
    sp = get_space("nbnlp")
    mb = _batch()
    rec = nbnlp.logged_runs().set_index("recepie_id").loc[CELLS[0], "recepie"]
    a, b = sp.parse(CELLS[0]), sp.parse(rec)
    assert a != b and sp.key(a) == sp.key(b)
    names = [*AZ, "vkdnw_dim"]

    def score(c):
        return compute_measures(sp.build_model(c, **SMALL.__dict__), mb.x, mb.y, names, seed=2)

    sa = score(a)
    assert sa == score(b) == score(a)
    assert all(math.isfinite(v) for v in sa.values())
    monkeypatch.setattr(NBNLPNet, "zc_arch_key", lambda self: self.code & 0xFFFFFFFF)
    assert score(a)["az_expressivity"] != score(b)["az_expressivity"]


def test_vkdnw_dim_counts_the_parameter_tensors():
    """vkdnw_dim = the number of parameter tensors: the tied embedding (once), per layer every
    linear node's matrices (one per input) and its bias, and the decoder bias; the Fisher part of
    VKDNW's group is not computed (it is refused)."""
    sp = get_space("nbnlp")
    for rid in CELLS:
        code = sp.parse(rid)
        cell = nbnlp.cell_of(code)
        lin = [ins for op, ins in zip(cell.ops, cell.inputs) if op == nbnlp.LINEAR]
        want = 2 + SMALL.nlayers * sum(len(ins) + 1 for ins in lin)
        net = sp.build_model(code, **SMALL.__dict__)
        mb = _batch()
        assert compute_measures(net, mb.x, mb.y, ["vkdnw_dim"]) == {"vkdnw_dim": float(want)}


@pytest.mark.parametrize("proxy,why", sorted(REFUSED.items()))
def test_refused_proxies_name_the_proxy_and_the_reason(tiny, tmp_path, capsys, proxy, why):
    """Every modern proxy without a definition on the language model is refused before any work,
    by the command (no file) and by the per-model path, naming the proxy and the reason.
    (Without the refusal, tried at these tiny sizes: meco's per-module code correlates the
    33,278 vocabulary rows of the logits and the process was killed for memory; swap finds no
    ReLU and silently returns NaN (swap_reg too); vkdnw's generic Jacobian would take one
    vector-Jacobian product per logit, 33,278 x T per sample (not run). Shown failing with
    NOT_APPLICABLE emptied: the refusal cases, the partition and the expansion tests fail.)"""
    out = tmp_path / "s.csv"
    archs = tmp_path / "archs.txt"
    archs.write_text("1000000\n")  # a logged recepie_id (a bare number would mean N samples)
    rc = main(["score", "--space", "nbnlp", "--archs", str(archs), "--proxies", f"snip,{proxy}",
               "--batch-size", "2", "--out", str(out), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and f"{proxy} does not apply to space 'nbnlp'" in err and why in err, err
    assert not out.exists()
    sp = get_space("nbnlp")
    net = sp.build_model(sp.parse(1000000))
    mb = _batch()
    with pytest.raises(ValueError, match=f"{proxy} does not apply to NBNLPNet: .*{why}"):
        compute_measures(net, mb.x, mb.y, ["snip", proxy])


def test_an_ensemble_with_a_refused_member_names_both(tiny, tmp_path, capsys):
    """vkdnw_agg needs vkdnw_single: the refusal names the member, the ensemble and the reason."""
    out = tmp_path / "s.csv"
    archs = tmp_path / "archs.txt"
    archs.write_text("1000000\n")
    rc = main(["score", "--space", "nbnlp", "--archs", str(archs), "--proxies", "vkdnw_agg",
               "--batch-size", "2", "--out", str(out), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and "vkdnw_single (a member of vkdnw_agg) does not apply" in err, err
    assert REFUSED["vkdnw_single"] in err and not out.exists()


def test_the_refusals_are_the_space_s():
    """One list of refusals: the space's proxy_problem, the network's zc_not_applicable and the
    modern proxies that NB-NLP supports partition the modern proxies."""
    sp = get_space("nbnlp")
    refused = {n for n in MODERN_PROXIES if sp.proxy_problem(n)}
    assert refused == set(REFUSED) == set(NOT_APPLICABLE)
    assert set(MODERN_PROXIES) - refused == set(SUPPORTED)


def test_modern_and_all_expand_to_the_supported_proxies():
    """On nbnlp 'modern' is the supported modern proxies, 'all' every registry proxy but the
    refused ones; other spaces and a proxy named on its own are unchanged. (Fails with the
    expansion ignoring the space: 'modern' then holds the refused ones and scoring stops.)"""
    sp = get_space("nbnlp")
    assert tuple(parse_proxies("modern", space=sp)) == SUPPORTED
    assert parse_proxies("all", space=sp) == [p for p in PROXIES if p not in REFUSED]
    assert tuple(parse_proxies("modern", space=get_space("nb201"))) == MODERN_PROXIES
    assert tuple(parse_proxies("modern")) == MODERN_PROXIES
    assert parse_proxies("snip,meco", space=sp) == ["snip", "meco"]


def test_an_overflowing_cell_gives_nan_with_a_warning():
    """Under the Kaiming-normal re-initialisation some cells' recurrence overflows within the
    steps (products fed back, as for synflow, docs/nbnlp.md): the components that read an
    overflowed feature are NaN, reported with a DegenerateScoreWarning, never replaced and never
    a crash (eigvalsh and svdvals raise on NaN input: shown failing with the finiteness checks
    of spectral_entropy and block_trainability removed). The cell: the second of
    ``--archs 2`` at seed 0, whose last layer overflows at these sizes over 70 steps."""
    sp = get_space("nbnlp")
    code = sp.sample(2, 0)[1]
    mb = sp.minibatch(batch_size=2, seed=0)
    net = sp.build_model(code, **TINY.__dict__)
    probe = sp.build_model(code, **TINY.__dict__)
    _random.reinit_(probe, 0, "kaiming_normal")
    e = probe.encoder(mb.x).detach()
    with torch.no_grad():
        h = probe.rnns[0](_random.noise_input(e, _random.NOISE_AZ, 0))
    assert not torch.isfinite(h).all()
    with pytest.warns(DegenerateScoreWarning, match="not finite"):
        got = compute_measures(net, mb.x, mb.y, list(AZ), seed=0)
    assert all(math.isnan(v) for v in got.values()), got


@pytest.mark.parametrize("engine", ["loop", "packed"])
def test_score_modern_on_nbnlp(tiny, tmp_path, capsys, engine):
    """``zcfast score --space nbnlp --proxies modern,az_nas`` scores the supported modern proxies
    (and AZ-NAS's aggregate) deterministically: one column per proxy, the same values twice, the
    packed run (per-model fallback for these) equal to the loop run; logged cells, finite."""
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(map(str, CELLS)) + "\n")
    outs = []
    for k in range(2 if engine == "loop" else 1):
        out = tmp_path / f"{engine}{k}.csv"
        rc = main(["score", "--space", "nbnlp", "--archs", str(archs), "--proxies", f"{RUNS},az_nas",
                   "--engine", engine,
                   "--batch-size", "2", "--out", str(out), "--no-progress", "--threads", "1"])
        assert rc == 0, capsys.readouterr().err
        outs.append(pd.read_csv(out))
    df = outs[0]
    assert all(c in df.columns for c in SUPPORTED) and not set(REFUSED) & set(df.columns)
    assert np.isfinite(df[list(SUPPORTED)].to_numpy()).all()
    if engine == "loop":
        pd.testing.assert_frame_equal(outs[0], outs[1])
    else:
        rc = main(["score", "--space", "nbnlp", "--archs", str(archs), "--proxies", RUNS, "--engine",
                   "loop", "--batch-size", "2", "--out", str(tmp_path / "l.csv"), "--no-progress",
                   "--threads", "1"])
        assert rc == 0
        ref = pd.read_csv(tmp_path / "l.csv")
        np.testing.assert_allclose(df[list(SUPPORTED)].to_numpy(), ref[list(SUPPORTED)].to_numpy(),
                                   rtol=1e-5)
