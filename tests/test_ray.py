"""Scoring and search on a Ray cluster (zcfast.executors.ray) against local runs.

A local Ray instance of 2 CPUs is started once for the module; each run starts its own actors
(one CPU, one torch thread each, like the test process). Cells are ImageNet16-120 networks
(16x16 inputs) scored with cheap proxies at batch 8, and the engine's pass size is pinned, so the
Ray runs pack exactly the cells a local run packs and must give the same file byte for byte.

Checks shown failing on injected defects, in this module:
- a retry that loses the dead worker's chunk (``Ledger.lost`` not requeueing): the run fails;
- a retry that double-writes (chunk requeued twice and the at-most-once guard off): the run fails
  (the score file refuses a second row of a cell) and nothing is duplicated;
- a resume that skips a chunk (``ScoreWriter`` counting the next chunk as written): the file
  misses those cells and differs from the local run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import zcfast
from zcfast import cli
from zcfast.executors import LocalExecutor, ScoreTask, executor_from_args
from zcfast.scoring import ScoreWriter, read_scores, score_to_file
from zcfast.spaces import nb201

DATASET = "ImageNet16-120"
PROXIES = "synflow,params,nwot"
BATCH = 8
PASS = 2  # engine pass size, pinned for local and Ray runs alike
N_CELLS = 12
SEED = 1  # not the default: a setting lost on the way to the actors would show
KW = dict(archs=str(N_CELLS), proxies=PROXIES, dataset=DATASET, seed=SEED, batch_size=BATCH,
          chunk=PASS, progress=False)


def _ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed in CI: the Makefile installs .[test,ray]")
        pytest.skip("Ray is not installed (pip install 'zcfast[ray]')")
    return ray


@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU Ray instance for this module; yields its address."""
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False,
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local run every Ray run must reproduce: (file bytes, path)."""
    out = tmp_path_factory.mktemp("local") / "scores.csv"
    score_to_file(out, **KW)
    return out.read_bytes(), out


def _ray_executor(**kw):
    from zcfast.executors.ray import RayExecutor

    return RayExecutor(**{"workers": 2, "chunk": 2, **kw})


def test_ray_file_equals_local_file(cluster, reference, tmp_path, monkeypatch):
    """Scores (and so the CSV, whose values round-trip exactly) equal a local run's bit for bit,
    and a finished file has the rows in --archs order whatever order the chunks finished in.
    Injected defect: a task that loses the seed on its way to the actors gives another file."""
    out = tmp_path / "ray.csv"
    with _ray_executor() as ex:
        res = score_to_file(out, executor=ex, **KW)
        infos = ex.workers()
        assert ex.stats["chunks"] == N_CELLS // 2 and ex.stats["retried"] == 0

        import zcfast.executors as exs

        real_task = exs.ScoreTask
        monkeypatch.setattr(exs, "ScoreTask", lambda space, s: real_task(
            space, {**s, "weight_seed": 0, "data_seed": 0}))
        score_to_file(tmp_path / "defect.csv", executor=ex, **KW)
        monkeypatch.undo()
        assert (tmp_path / "defect.csv").read_bytes() != reference[0]
    assert len({w["pid"] for w in infos}) == 2 and all(w["threads"] == 1 for w in infos)
    assert out.read_bytes() == reference[0]
    assert res["meta"]["executor"]["executor"] == "ray"
    # the Python API: zcfast.score(..., executor=) gives the same DataFrame as without
    archs = nb201.sample(5, 7).tolist()
    loc = zcfast.score(archs, PROXIES, dataset=DATASET, batch_size=BATCH, chunk=PASS)
    with _ray_executor(chunk=1) as ex:
        far = zcfast.score(archs + archs[:2], PROXIES, dataset=DATASET, batch_size=BATCH,
                           chunk=PASS, executor=ex)
        # an error of the scoring code itself reaches the caller as its own type, not retried
        bad = ScoreTask("nb201", {"dataset": "cifar10", "proxies": ["params"],
                                  "data_root": str(tmp_path / "no-cifar")})
        with pytest.raises(FileNotFoundError, match="no-cifar"):
            ex.score(bad, [1, 2])
        assert ex.stats["retried"] == 0 and ex.stats["workers_lost"] == 0
    assert far.index.tolist() == archs + archs[:2]
    assert far.iloc[:5].equals(loc)


class _KillOneWorker:
    """Wraps a RayExecutor's run: after the first chunk arrives, SIGKILL an actor that has
    chunks queued (it is running one of them), as a crashed or preempted worker would die."""

    def __init__(self, ex):
        self.ex = ex
        self.killed = None

    def __call__(self, task, archs):
        for part, table in type(self.ex).run(self.ex, task, archs):
            yield part, table
            if self.killed is None:
                busy = [w for w in self.ex.workers() if w["alive"] and w["ready"] and w["load"] > 0]
                self.killed = busy[0]["pid"]
                os.kill(self.killed, signal.SIGKILL)


def _run_with_kill(out, **ex_kw):
    with _ray_executor(**ex_kw) as ex:
        killer = _KillOneWorker(ex)
        ex.run = killer
        score_to_file(out, executor=ex, **KW)
        return ex.stats, killer.killed


def test_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, reference, tmp_path):
    out = tmp_path / "killed.csv"
    stats, pid = _run_with_kill(out)
    assert pid is not None and stats["workers_lost"] >= 1 and stats["retried"] >= 1
    assert out.read_bytes() == reference[0]  # every cell once, same values, same order


def test_worker_kill_check_fails_on_injected_retry_defects(cluster, reference, tmp_path, monkeypatch):
    """The check above, run against two broken retry paths, must fail."""
    from zcfast.executors import ray as ray_ex

    # (1) the dead worker's chunks are dropped instead of requeued -> cells would be missing
    monkeypatch.setattr(ray_ex.Ledger, "lost", lambda self, cid: True)
    out = tmp_path / "lost.csv"
    with pytest.raises(RuntimeError, match="lost track"):
        _run_with_kill(out)
    assert _rows(out) < N_CELLS and out.read_bytes() != reference[0]
    monkeypatch.undo()

    # (2) a lost chunk is requeued twice and every result is yielded -> a cell would be written
    # twice; the score file refuses the second row, so the run fails with no duplicate on disk
    real_lost = ray_ex.Ledger.lost

    def lost_twice(self, cid):
        real_lost(self, cid)
        self.queue.appendleft(cid)
        return True

    monkeypatch.setattr(ray_ex.Ledger, "lost", lost_twice)
    monkeypatch.setattr(ray_ex.Ledger, "complete", lambda self, cid: self.done.add(cid) or True)
    out = tmp_path / "dup.csv"
    with pytest.raises(RuntimeError, match="already in"):
        _run_with_kill(out)
    df, _ = read_scores(out)  # raises on a duplicated index
    assert df.index.is_unique and out.read_bytes() != reference[0]


def _rows(path: Path) -> int:
    raw = path.read_bytes()
    return max(0, raw[: raw.rfind(b"\n") + 1].count(b"\n") - 1)


def test_driver_killed_then_resumed(cluster, reference, tmp_path, monkeypatch):
    """A `zcfast score --ray ADDRESS` driver is SIGKILLed after its first rows; --resume (here
    in-process, on the same cluster) completes the file, which then equals the local run's. The
    same resume with a defect that counts one unscored chunk as written must fail the check."""
    out = tmp_path / "driver.csv"
    n = 24
    cmd = [sys.executable, "-m", "zcfast.cli", "score", "--archs", str(n), "--proxies", PROXIES,
           "--dataset", DATASET, "--seed", str(SEED), "--batch-size", str(BATCH), "--chunk",
           str(PASS), "--out", str(out), "--no-progress", "--ray", cluster, "--ray-workers", "2",
           "--ray-chunk", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "driver.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 240
        while (not out.exists() or _rows(out) < 2) and proc.poll() is None:
            assert time.monotonic() < deadline, "the driver wrote no rows in 240 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    written = _rows(out)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-3000:]
    assert 2 <= written < n, f"driver wrote {written} of {n} rows before it was killed"
    kw = {**KW, "archs": str(n)}
    local = tmp_path / "local24.csv"
    score_to_file(local, **kw)

    # injected defect: the resume believes the first chunk not yet written is written
    broken = tmp_path / "broken.csv"
    shutil.copy(out, broken)
    shutil.copy(str(out) + ".meta.json", str(broken) + ".meta.json")
    real_load = ScoreWriter._load_existing

    def load_skipping_a_chunk(self, meta):
        real_load(self, meta)
        todo = [str(i) for i in nb201.sample(n, SEED).tolist() if str(i) not in self.done]
        for i in todo[:2]:  # rows are keyed by the key column as written (NB201: the index)
            self.done[i] = [0.0] * len(self.proxies)

    with _ray_executor() as ex:  # one set of actors for both resumes
        monkeypatch.setattr(ScoreWriter, "_load_existing", load_skipping_a_chunk)
        score_to_file(broken, resume=True, executor=ex, **kw)
        monkeypatch.undo()
        assert _rows(broken) == n - 2 and broken.read_bytes() != local.read_bytes()

        res = score_to_file(out, resume=True, executor=ex, **kw)
    assert res["scored"] == n - written
    assert out.read_bytes() == local.read_bytes()


def test_search_on_ray_equals_local_search(cluster, tmp_path):
    """`zcfast search --ray`: the warmup and move asks are scored by the actors; the runs equal
    a local search's, and so do the cached scores, up to float64 rounding (the search command
    leaves the engine's pass size automatic, and a different packing of the same cells can
    change the last bit of synflow's float64 sums; with a pinned pass size they are equal bit
    for bit, as test_ray_file_equals_local_file checks)."""
    def search(tag, *extra):
        out = tmp_path / f"{tag}.jsonl"
        rc = cli.main(["search", "--algo", "ae", "--warmup", "16", "--move", "8", "--budget", "6",
                       "--seeds", "1", "--proxy", "synflow", "--dataset", DATASET, "--score-seed", "1",
                       "--cache-dir", str(tmp_path / f"cache_{tag}"), "--out", str(out),
                       "--no-progress", "--option", "population=4", "--option", "tournament=2",
                       *extra])
        assert rc == 0
        return out.read_text()

    from zcfast.search import ScoreCache, ScoreKey

    loc = search("local")
    far = search("ray", "--ray", cluster, "--ray-workers", "2")
    def runs(text):  # everything but the timing
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in text.splitlines()]

    assert runs(far) == runs(loc)
    key = ScoreKey.of("synflow", DATASET, 1)
    a, b = ScoreCache(tmp_path / "cache_local").load(key), ScoreCache(tmp_path / "cache_ray").load(key)
    assert a.keys() == b.keys() and len(a) >= 16
    np.testing.assert_allclose([b[i] for i in a], list(a.values()), rtol=1e-14)


def test_ray_option_without_ray_names_the_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = cli.main(["score", "--archs", "2", "--out", str(tmp_path / "x.csv"), "--ray"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "pip install 'zcfast[ray]'" in err and "Ray is not installed" in err
    assert not (tmp_path / "x.csv").exists()


def test_ray_options_need_ray_flag():
    ap = cli.build_parser()
    with pytest.raises(ValueError, match="--ray-workers only apply with --ray"):
        executor_from_args(ap.parse_args(["score", "--out", "x", "--ray-workers", "2"]))
    assert isinstance(executor_from_args(ap.parse_args(["score", "--out", "x"])), LocalExecutor)


def test_ledger_requeues_lost_chunks_a_bounded_number_of_times():
    from zcfast.executors.ray import Ledger

    book = Ledger(3, max_attempts=2)
    assert [book.take(), book.take()] == [0, 1]
    assert book.lost(1) and book.take() == 1  # back at the front, before chunk 2
    assert book.complete(0) and not book.complete(0)  # a second result of a chunk is dropped
    assert not book.lost(1)  # its second lost worker: the run must stop
    assert not book.finished and book.take() == 2


def test_finish_orders_rows_and_task_is_plain(tmp_path):
    """ScoreWriter.finish puts the rows of a complete file in input order (atomically) and leaves
    an incomplete file alone; ScoreTask compares by content and refuses non-JSON settings."""
    meta = {"space": "nb201"}
    w = ScoreWriter(tmp_path / "f.csv", meta, ["params"])
    code = {i: nb201.code_of_index(i) for i in (1, 3, 5, 9)}  # the writer takes codes
    for i in (5, 1, 9):
        w.write(code[i], {"params": float(i)})
    with pytest.raises(RuntimeError, match="already in"):
        w.write(code[1], {"params": 1.0})
    w.close()
    assert not w.finish([code[i] for i in (1, 5, 9, 3)])
    assert [int(r.split(",")[0]) for r in (tmp_path / "f.csv").read_text().splitlines()[1:]] == [5, 1, 9]
    assert w.finish([code[i] for i in (1, 5, 9)])
    assert [int(r.split(",")[0]) for r in (tmp_path / "f.csv").read_text().splitlines()[1:]] == [1, 5, 9]
    t = ScoreTask("nb201", {"proxies": ["params"], "dataset": "cifar10"})
    assert t == ScoreTask("nb201", {"dataset": "cifar10", "proxies": ["params"]}) and len({t, t}) == 1
    with pytest.raises(ValueError, match="JSON"):
        ScoreTask("nb201", {"x": np.float32})
    with pytest.raises(ValueError, match="unknown search space 'nb999'"):
        ScoreTask("nb999", {})
    ex = LocalExecutor()
    got = ex.score(ScoreTask("nb201", {"dataset": DATASET, "proxies": ["params"], "engine": "loop"}),
                   [code[3], code[1], code[3]])
    assert got["params"][0] == got["params"][2] and got["params"][0] != got["params"][1]
