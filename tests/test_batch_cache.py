"""The minibatch of a run is drawn once per process and setting (zcfast/data/batches.py,
docs/performance.md), and score rows are written one chunk at a time (zcfast.scoring.ScoreWriter).

The checks can fail: ``test_count_sees_a_disabled_cache`` and ``test_coverage_sees_a_short_key``
run the same checks with the cache disabled and with a key that leaves out the seed, and show
them fail; ``test_batched_write_check_sees_per_row_writes`` puts back one write+flush per row and
shows the write count rise; ``test_torn_chunk_resume`` tears the last row of a chunk.
"""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch

import zcfast
from zcfast.data import ImageSource, batches
from zcfast.scoring import ScoreWriter, score_to_file
from zcfast.spaces import get_space, nb201


@pytest.fixture(autouse=True)
def fresh_cache():
    batches.clear()
    yield
    batches.clear()


def _count_draws(monkeypatch) -> list:
    calls = []
    real = ImageSource.minibatch

    def counting(self, *a, **k):
        calls.append((self.name, a))
        return real(self, *a, **k)

    monkeypatch.setattr(ImageSource, "minibatch", counting)
    return calls


def check_one_draw(monkeypatch):
    """Two zcfast.score() calls (and a file run) with the same data settings draw one batch."""
    draws = _count_draws(monkeypatch)
    a = zcfast.score([0, 1], "params,nwot", batch_size=4, device="cpu")
    b = zcfast.score([2], "params,nwot", batch_size=4, device="cpu")
    assert len(draws) == 1, draws
    assert len(a) == 2 and len(b) == 1
    sp = get_space("nb201")
    mb = batches.minibatch(sp, "cifar10", 4, 0)
    assert len(draws) == 1
    x1, _ = batches.on_device(mb, "cpu")
    x2, _ = batches.on_device(batches.minibatch(sp, "cifar10", 4, 0), "cpu")
    assert x1 is x2 and x1 is mb.x  # the same tensor, not an equal copy


def test_one_draw_across_score_calls(monkeypatch):
    check_one_draw(monkeypatch)


def test_count_sees_a_disabled_cache(monkeypatch):
    monkeypatch.setattr(batches, "MAX_BATCHES", 0)
    with pytest.raises(AssertionError):
        check_one_draw(monkeypatch)


def _fake_cifar(root, seed):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    d = {b"data": rng.integers(0, 256, size=(12, 3072), dtype=np.uint8),
         b"labels": rng.integers(0, 10, size=12).tolist()}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(d, f)


def check_key_coverage(tmp_path):
    """Every setting that changes the pixels or labels gets its own draw, and the draws differ."""
    sp = get_space("nb201")
    base = dict(images="default", data_root=None, normalization="paper")
    ref = batches.minibatch(sp, "cifar10", 4, 0, **base)
    variants = {
        "seed": (("cifar10", 4, 1), base),
        "batch_size": (("cifar10", 5, 0), base),
        "dataset": (("cifar100", 4, 0), base),
        "images": (("cifar10", 4, 0), {**base, "images": "cifar100-real25"}),
    }
    for what, (args, kw) in variants.items():
        before = batches.stats["loads"]
        mb = batches.minibatch(sp, *args, **kw)
        assert batches.stats["loads"] == before + 1, what
        same = mb.x.shape == ref.x.shape and torch.equal(mb.x, ref.x) and torch.equal(mb.y, ref.y)
        assert not same, what
    # the normalisation changes CIFAR-100's pixels only ('dataset': its own statistics)
    p = batches.minibatch(sp, "cifar100", 4, 0, **base)
    d = batches.minibatch(sp, "cifar100", 4, 0, **{**base, "normalization": "dataset"})
    assert p is not d and not torch.equal(p.x, d.x)
    # a download: its files are part of the key (rewritten in place -> drawn again)
    _fake_cifar(tmp_path, 0)
    r1 = batches.minibatch(sp, "cifar10", 4, 0, **{**base, "data_root": tmp_path})
    assert batches.minibatch(sp, "cifar10", 4, 0, **{**base, "data_root": str(tmp_path)}) is r1
    _fake_cifar(tmp_path, 1)
    r2 = batches.minibatch(sp, "cifar10", 4, 0, **{**base, "data_root": tmp_path})
    assert r2 is not r1 and not torch.equal(r1.x, r2.x)
    # device copies: one per (device, dtype)
    x32, _ = batches.on_device(ref, "cpu")
    x64, _ = batches.on_device(ref, "cpu", torch.float64)
    assert x64.dtype == torch.float64 and batches.on_device(ref, "cpu", torch.float64)[0] is x64
    assert x32 is ref.x and torch.equal(x64, ref.x.double())
    # extra batches (ZiCo): once per seed, different from the scoring batch
    e1 = batches.more(ref, 4, 7, "cpu")
    assert batches.more(ref, 4, 7, "cpu")[0] is e1[0] and not torch.equal(e1[0], ref.x)
    assert not torch.equal(batches.more(ref, 4, 8)[0], e1[0])


def test_key_covers_every_setting(tmp_path):
    check_key_coverage(tmp_path)


def test_coverage_sees_a_short_key(tmp_path, monkeypatch):
    real = batches.batch_key

    def no_seed(space, dataset, batch_size, seed, **kw):
        return real(space, dataset, batch_size, 0, **kw)  # the defect: the seed left out

    monkeypatch.setattr(batches, "batch_key", no_seed)
    with pytest.raises(AssertionError):
        check_key_coverage(tmp_path)


def test_cached_batch_not_written_by_scoring():
    """The cache hands out the same tensors: scoring must leave them as drawn."""
    sp = get_space("nb201")
    zcfast.score([0, 5], "grad_norm,jacob_cov,nwot,zico", batch_size=4, device="cpu")
    mb = batches.minibatch(sp, "cifar10", 4, 0)
    fresh = sp.minibatch("cifar10", 4, 0)
    assert torch.equal(mb.x, fresh.x) and torch.equal(mb.y, fresh.y)


def test_one_pool_per_source():
    """Batches of one source (other seeds or sizes) share its image pool: a cache of several
    seeds of a CIFAR download holds one copy of its images."""
    sp = get_space("nb201")
    a, b = batches.minibatch(sp, "cifar10", 4, 0), batches.minibatch(sp, "cifar10", 6, 3)
    assert a.source is b.source
    c = batches.minibatch(sp, "cifar100", 4, 0)
    assert c.source is not a.source  # other labels: another source
    x, _ = batches.more(b, 6, 9)
    assert torch.equal(x, get_space("nb201").minibatch("cifar10", 6, 3).more(6, 9)[0])


def test_lru_bound(monkeypatch):
    monkeypatch.setattr(batches, "MAX_BATCHES", 2)
    sp = get_space("nb201")
    a = batches.minibatch(sp, "cifar10", 2, 0)
    batches.more(a, 2, 5)
    batches.minibatch(sp, "cifar10", 2, 1)
    batches.minibatch(sp, "cifar10", 2, 0)  # a used again: 1 is the oldest now
    batches.minibatch(sp, "cifar10", 2, 2)
    assert batches.minibatch(sp, "cifar10", 2, 0) is a
    n = batches.stats["loads"]
    batches.minibatch(sp, "cifar10", 2, 1)  # dropped: drawn again
    assert batches.stats["loads"] == n + 1
    assert sum(1 for k in batches._batches if "more" not in k) == 2


# ------------------------------------------------------------------------------ score rows
class _CountingFile:
    def __init__(self, f, log):
        self._f, self.log = f, log

    def write(self, s):
        self.log.append(("write", s))
        return self._f.write(s)

    def flush(self):
        self.log.append(("flush", None))
        return self._f.flush()

    def __getattr__(self, name):
        return getattr(self._f, name)


def check_batched_writes(tmp_path, monkeypatch, name="s.csv"):
    """score_to_file writes each chunk with one write and one flush."""
    log: list = []
    real_init = ScoreWriter.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        self._f = _CountingFile(self._f, log)

    monkeypatch.setattr(ScoreWriter, "__init__", init)
    out = tmp_path / name
    score_to_file(out, archs="5", proxies="params,flops", chunk=2, progress=False, batch_size=4)
    writes = [s for op, s in log if op == "write"]
    flushes = [op for op, _ in log if op == "flush"]
    assert len(writes) == 3 and len(flushes) == 3, log  # chunks of 2, 2, 1 cells
    assert [s.count("\n") for s in writes] == [2, 2, 1]
    return out


def test_rows_written_per_chunk(tmp_path, monkeypatch):
    out = check_batched_writes(tmp_path, monkeypatch)
    with open(out, newline="") as f:
        body = list(csv.reader(f))[1:]
    assert [int(r[0]) for r in body] == nb201.sample(5, seed=0).tolist()


def test_batched_write_check_sees_per_row_writes(tmp_path, monkeypatch):
    def per_row(self, rows):  # the defect: the old one write+flush per row
        for code, values in rows:
            fields = self.space.row_fields(int(code))
            self._f.write(",".join([*(str(fields[c]) for c in self.ids),
                                    *(repr(float(values[p])) for p in self.proxies)]) + "\n")
            self._f.flush()
            self.done[str(fields[self.space.key_column])] = [values[p] for p in self.proxies]

    monkeypatch.setattr(ScoreWriter, "write_rows", per_row)
    with pytest.raises(AssertionError):
        check_batched_writes(tmp_path, monkeypatch)


def test_write_rows_checks_before_writing(tmp_path):
    w = ScoreWriter(tmp_path / "w.csv", {"space": "nb201"}, ["params"])
    w.write_rows([(nb201.code_of_index(3), {"params": 1.0})])
    size = (tmp_path / "w.csv").stat().st_size
    for bad in ([(nb201.code_of_index(4), {"params": 2.0}), (nb201.code_of_index(3), {"params": 3.0})],
                [(nb201.code_of_index(5), {"params": 2.0})] * 2):
        with pytest.raises(RuntimeError, match="not written twice"):
            w.write_rows(bad)
        assert (tmp_path / "w.csv").stat().st_size == size  # nothing of the bad chunk written
    w.close()


def test_torn_chunk_resume(tmp_path):
    """A run killed while writing a chunk: the whole rows stay, the torn one is dropped and
    scored again on --resume, and the file ends equal to an uninterrupted run's."""
    whole = tmp_path / "whole.csv"
    score_to_file(whole, archs="5", proxies="params,flops,synflow", chunk=2, progress=False,
                  batch_size=4)
    lines = whole.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    # header, the first chunk, and the second chunk's first row torn in the middle
    cut.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    (tmp_path / "cut.csv.meta.json").write_text((tmp_path / "whole.csv.meta.json").read_text())
    res = score_to_file(cut, archs="5", proxies="params,flops,synflow", chunk=2, progress=False,
                        batch_size=4, resume=True)
    assert res["scored"] == 3
    assert cut.read_text() == whole.read_text()
