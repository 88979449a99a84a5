"""Host cost of the packed engine on the meta device (zcfast/batched/hostprobe.py,
docs/performance.md): one host-to-device copy at the start of a chunk, one device-to-host copy
at its end, for every proxy group.

The checks can fail: ``test_probe_sees_an_added_sync`` and ``test_probe_sees_an_added_copy``
inject a sync (a ``.item()`` in the fisher reduction) and a separate host-to-device copy (an
index uploaded on its own in the NASWOT reduction) and show the counts rise above the bound
that ``test_one_copy_each_way`` asserts.
"""

import json

import numpy as np
import pytest
import torch

from zcfast.batched import base
from zcfast.batched.engine import PackedNB201
from zcfast.batched.hostprobe import HostProbe
from zcfast.batched.upload import DeviceTables
from zcfast.spaces import nb201

GROUPS = {
    "synflow": ["synflow"],
    "loss": ["grad_norm", "snip", "plain", "fisher", "grasp"],
    "jacob_cov": ["jacob_cov"],
    "nwot": ["nwot"],
    "all": ["grad_norm", "snip", "plain", "fisher", "grasp", "jacob_cov", "synflow", "nwot",
            "params", "flops", "l2_norm"],
}
CELLS = [0, 17, 9999, 15624]


def probe_chunk(proxies, cells=CELLS, batch=4, size=16):
    codes = [nb201.code_of_index(i) for i in cells]
    x = torch.empty(batch, 3, size, size, device="meta")
    y = torch.empty(batch, dtype=torch.int64, device="meta")
    with HostProbe() as probe:
        eng = PackedNB201(codes, 10, device="meta", input_size=size)
        out = eng.compute(x, y, proxies)
    return probe, out


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_one_copy_each_way(group):
    probe, out = probe_chunk(GROUPS[group])
    assert set(out) == set(GROUPS[group])
    assert all(len(v) == len(CELLS) for v in out.values())
    assert probe.d2h == 1, probe.d2h_sites
    assert probe.h2d == 1


def test_ordered_accumulation_adds_no_sync():
    """The ordered node sums (on by default on CUDA) take their rounds from the plan's upload;
    built from the device index (engine._accumulate's fallback) they would cost a sync each."""
    codes = [nb201.code_of_index(i) for i in CELLS] * 2  # repeated targets: several rounds
    x = torch.empty(4, 3, 16, 16, device="meta")
    y = torch.empty(4, dtype=torch.int64, device="meta")
    with HostProbe() as probe:
        eng = PackedNB201(codes, 10, device="meta", input_size=16)
        eng.ordered_accumulation = True
        eng.compute(x, y, ["grad_norm", "jacob_cov"])
    assert probe.d2h == 1 and probe.h2d == 1, probe.d2h_sites
    with HostProbe() as probe:  # the check can fail: without the plan's rounds
        eng = PackedNB201(codes, 10, device="meta", input_size=16)
        eng.ordered_accumulation = True
        for nodes in eng.plan.cells:
            for nd in nodes:
                nd.rounds = ()
        eng.compute(x, y, ["grad_norm"])
    assert probe.d2h > 1


def test_probe_sees_an_added_sync(monkeypatch):
    fis = base.fisher_channels

    def syncing(*a, **k):
        r = fis(*a, **k)
        r.sum().item()  # the defect: a host read inside the chunk
        return r

    monkeypatch.setattr(base, "fisher_channels", syncing)
    probe, _ = probe_chunk(["fisher"])
    assert probe.d2h > 1
    assert any("test_host_syncs.py" in s for s in probe.d2h_sites)


def test_probe_sees_an_added_copy(monkeypatch):
    nk = base.naswot_kernel

    def copying(x, cand, *a, **k):
        # the defect: an index sent to the device on its own, inside the chunk
        return nk(x, torch.as_tensor(np.zeros(len(cand), np.int64), device=x.device), *a, **k)

    monkeypatch.setattr(base, "naswot_kernel", copying)
    probe, _ = probe_chunk(["nwot"])
    assert probe.h2d > 1


def test_device_tables_packing():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-5, 5, size=n).astype(np.int64) for n in (0, 1, 7)]
    arrays += [rng.standard_normal(3).astype(np.float32), np.arange(5, dtype=np.int32)]
    tb = DeviceTables("cpu", pack=True)
    for a in arrays:
        tb.add(a)
    with HostProbe(device="cpu"):
        tb.upload()
    for a in arrays:
        t = tb.get(a)
        assert t.dtype == torch.from_numpy(a).dtype and np.array_equal(t.numpy(), a)
    late = np.array([3, 1], dtype=np.int64)
    assert np.array_equal(tb.get(late).numpy(), late)  # not registered: copied on its own
    with pytest.raises(ValueError, match="unsupported dtype"):
        tb.add(np.zeros(2, dtype=np.uint16))


def test_ops_of_codes_matches_compiled_core():
    codes = np.arange(nb201.NUM_ARCHS)
    ops = nb201.ops_of_codes(codes)
    ref = np.array([nb201.ops_of_code(int(c)) for c in codes])
    assert np.array_equal(ops, ref)
    with pytest.raises(ValueError, match="15625"):
        nb201.ops_of_codes([15625])


def test_bench_host_json_last_line(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_host.py"
    spec = importlib.util.spec_from_file_location("bench_host", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--k", "2", "--repeat", "1", "--batch", "2", "--input-size", "8",
                     "--groups", "synflow,paper", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(last)
    for g in ("synflow", "paper"):
        assert res[g]["syncs_per_chunk"] == 2 and res[g]["host_us_per_candidate"] >= 0
    with pytest.raises(SystemExit):
        mod.main(["--k", "0"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("group", ["synflow", "loss", "all"])
def test_gpu_syncs(group):
    """On a GPU: the probe sees one upload and one fetch per chunk, and PyTorch's sync debug
    mode sees at most those two plus one (eigvalsh's result check, run just before the fetch)."""
    import warnings

    codes = [nb201.code_of_index(i) for i in CELLS]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 16, generator=g).cuda()
    y = torch.randint(0, 10, (4,), generator=g).cuda()
    PackedNB201(codes, 10, device="cuda", input_size=16).compute(x, y, GROUPS[group])  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with HostProbe(device="cuda") as probe:
                PackedNB201(codes, 10, device="cuda", input_size=16).compute(x, y, GROUPS[group])
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert probe.d2h == 1, probe.d2h_sites
    assert probe.h2d == 1
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2 + ("jacob_cov" in GROUPS[group]), syncs
