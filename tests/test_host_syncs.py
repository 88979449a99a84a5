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

from zcfast.batched import base, modern
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


MODERN = {g.names[0]: list(g.names) for g in modern.PACKED.values()}


def probe_modern(proxies, cells=CELLS, batch=4, size=16):
    codes = [nb201.code_of_index(i) for i in cells]
    x = torch.empty(batch, 3, size, size, device="meta")
    y = torch.empty(batch, dtype=torch.int64, device="meta")
    extra = ((torch.empty_like(x), torch.empty_like(y)),)
    with HostProbe() as probe:
        eng = PackedNB201(codes, 10, device="meta", input_size=size)
        out = eng.compute(x, y, proxies, extra_batches=extra)
    return probe, out


@pytest.mark.parametrize("group", sorted(MODERN))
def test_modern_groups_one_copy_each_way(group, monkeypatch):
    """The modern proxies' packed groups (modern.py): their host data (noise inputs,
    re-initialisation tables) goes in the chunk's one upload, their results in its one fetch."""
    from zcfast.proxies import swap

    monkeypatch.setattr(swap, "REPEATS", 2)  # the count per draw does not change with draws
    probe, out = probe_modern(MODERN[group])
    assert set(out) == set(MODERN[group])
    assert probe.h2d == 1
    # az_complexity is counted from the plan: nothing to fetch
    assert probe.d2h == (0 if group == "az_complexity" else 1), probe.d2h_sites


def test_modern_and_paper_together():
    names = sorted(set(modern.PACKED) - {"swap", "swap_reg", "vkdnw", "vkdnw_dim",
                                         "vkdnw_single"}) + GROUPS["all"]
    probe, out = probe_modern(names, cells=CELLS[:2])
    assert set(out) == set(names)
    assert probe.d2h == 1 and probe.h2d == 1, probe.d2h_sites


def test_probe_sees_a_modern_read(monkeypatch):
    """The check can fail: MeCo's eigenvalues read on the host per output (as before)."""
    orig = modern._min_corr_eig

    def reading(t, cand):
        v, cand = orig(t, cand)
        return torch.as_tensor(v.cpu().numpy(), device=t.device), cand

    monkeypatch.setattr(modern, "_min_corr_eig", reading)
    probe, _ = probe_modern(MODERN["meco"])
    assert probe.d2h > 1 and probe.h2d > 1


def test_probe_sees_a_late_noise_upload(monkeypatch):
    """The check can fail: zen without its prepare step (noise inputs and re-initialisation
    tables sent when first used, each a copy of its own)."""
    g = modern.PACKED["zen"]
    monkeypatch.setitem(modern.PACKED, "zen", modern.PackedGroup(g.names, g.fn))
    probe, _ = probe_modern(["zen"])
    assert probe.h2d > 1


def probe_nb101(proxies, batch=4, size=8):
    from zcfast.batched.nb101 import PackedNB101
    from zcfast.spaces import get_space

    codes = get_space("nb101").sample(4, 0)
    x = torch.empty(batch, 3, size, size, device="meta")
    y = torch.empty(batch, dtype=torch.int64, device="meta")
    with HostProbe() as probe:
        out = PackedNB101(codes, 10, device="meta", input_size=size).compute(x, y, proxies)
    return probe, out


@pytest.mark.parametrize("group", ["all"])
def test_nb101_one_copy_each_way(group):
    """The NB101 builder sends its weights (drawn on the host), weight offsets, projection
    gathers and layer candidates in one copy."""
    probe, out = probe_nb101(GROUPS[group])
    assert set(out) == set(GROUPS[group])
    assert probe.d2h == 1, probe.d2h_sites
    assert probe.h2d == 1


def test_probe_sees_an_nb101_gather_upload(monkeypatch):
    """The check can fail: the projection gathers sent one by one (as before)."""
    from zcfast.batched import nb101

    real_build, real_get = nb101.build_plan, nb101.DeviceTables.get
    gathers: set = set()

    def recording(*a, **k):
        plan = real_build(*a, **k)
        gathers.update(id(bk.gather_np) for cp in plan.cells for bk in cp.proj)
        return plan

    def separate(self, arr):
        if id(arr) in gathers:
            return torch.as_tensor(arr, device=self.device)  # the defect: a copy of its own
        return real_get(self, arr)

    monkeypatch.setattr(nb101, "build_plan", recording)
    monkeypatch.setattr(nb101.DeviceTables, "get", separate)
    probe, _ = probe_nb101(["nwot"])
    assert probe.h2d > 1


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
        eng._materialize()  # the plan bound to its device tables (done on first use)
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
    # dtypes interleaved, ragged lengths, 2-D tables
    arrays = [rng.integers(-5, 5, size=n).astype(np.int64) for n in (0, 1, 7)]
    # the int32 tables (5 and 2: 28 bytes) end off the 8-byte grid: the float64 block after
    # them needs the padding for its typed view
    arrays += [rng.standard_normal(3).astype(np.float32), np.arange(5, dtype=np.int32),
               rng.integers(0, 9, size=(2, 3)).astype(np.int64),
               rng.standard_normal((3, 1)).astype(np.float32), np.arange(2, dtype=np.int32),
               rng.standard_normal(2), rng.integers(-5, 5, size=4).astype(np.int64)]
    tb = DeviceTables("cpu", pack=True)
    for a in arrays:
        tb.add(a)
    with HostProbe(device="cpu") as probe:
        tb.upload()
    # a view and a split per dtype block, a view per 2-D table: not three per table
    assert probe.ops < 2 * len(arrays), probe.ops  # 12 tables: 31 operators before, 19 now
    for a in arrays:
        t = tb.get(a)
        assert t.dtype == torch.from_numpy(a).dtype and t.shape == a.shape
        assert np.array_equal(t.numpy(), a)
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


def test_probe_counts_views_apart():
    """Views (no kernel on a GPU) are counted among the operators and on their own."""
    a = torch.empty(4, 6, device="meta")
    with HostProbe() as probe:
        b = a.view(6, 4).t()[1:]  # three views
        c = (b + 1).sum()  # two kernels
        a.split([2, 2])  # one view operator
    assert c.device.type == "meta"
    assert (probe.ops, probe.views) == (6, 4)
