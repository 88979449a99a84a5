"""What a user reads: skip reasons, the end-of-run summary, progress in logs, the columns of
``zcfast.score`` as the README states them, and the thread settings (docs/threads.md).

Injected defects these tests catch (each run by hand, each made its test fail): the old generic
skip reason; the old summary of a finished run (``scored 0 of N cells in 0.0 s (nan cells/s)``);
tqdm in a log (last line twice); the README's old "one column per proxy"; not calling
``prepare_openmp`` on import; a default thread count that ignores OMP_NUM_THREADS; ``zcfast
search``/``figure`` without ``--threads``.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import source_data

from zcfast import cli, runtime
from zcfast.progress import LogProgress, progress_bar

ROOT = Path(__file__).resolve().parents[1]


# ---- skip reasons ------------------------------------------------------------------------
def test_source_skip_reason_names_the_file_and_why(tmp_path, monkeypatch):
    rel = "nb201-natsbench-landscape/nats_bench.csv"
    monkeypatch.setenv(source_data.ENV, str(tmp_path))
    reason = source_data.skip_reason(rel, "compares the bundled accuracies with it")
    assert reason.startswith("missing nats_bench.csv, the NATS-Bench export")
    assert "the test compares the bundled accuracies with it" in reason
    assert "zcfast does not ship that file" in reason
    assert f"Set {source_data.ENV} to a folder holding {rel}" in reason and str(tmp_path) in reason
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text("x\n")
    assert source_data.skip_reason(rel, "anything") is None


# ---- end-of-run summary -------------------------------------------------------------------
def _score(out, *extra):
    return cli.main(["score", "--dataset", "ImageNet16-120", "--proxies", "synflow,params",
                     "--archs", "2", "--batch-size", "4", "--out", str(out), "--no-progress",
                     *extra])


def test_summary_of_a_finished_run_says_nothing_was_left(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert _score(out) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(rf"scored 2 of 2 cells in [0-9.]+ s \([0-9.]+ s/cell, [0-9]+ threads?, "
                        rf"engine packed, device [^)]*\) -> {re.escape(str(out))}", first), first
    assert _score(out, "--resume") == 0
    again = capsys.readouterr().out.splitlines()[0]
    assert again == f"all 2 cells were already scored in {out}: nothing left to do"
    assert "nan" not in again


def test_summary_of_a_resumed_run_counts_the_kept_cells(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert _score(out) == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n")  # keep one of the two rows
    capsys.readouterr()
    assert _score(out, "--resume") == 0
    assert capsys.readouterr().out.startswith("scored 1 of 2 cells (1 already in the file) in ")


# ---- progress in logs ---------------------------------------------------------------------
def test_log_progress_writes_the_last_line_once():
    f = io.StringIO()
    bar = LogProgress(25, initial=5, unit="cell", desc="scoring cifar10", file=f)
    for _ in range(20):
        bar.update(1)
    bar.close()
    bar.close()
    lines = f.getvalue().splitlines()
    assert "\r" not in f.getvalue()
    assert lines[0] == "scoring cifar10: 5/25 cells (20%)"
    assert sum("25/25" in ln for ln in lines) == 1 and "25/25" in lines[-1]
    assert len(lines) == 1 + 20 // 2  # a line per tenth of the work (2 cells) after the first


def test_progress_in_a_log_file(tmp_path):
    # a redirected stderr (not a terminal) gets whole lines, the last one once
    with open(tmp_path / "log.txt", "w") as f:
        assert isinstance(progress_bar(3, file=f), LogProgress)
    r = subprocess.run(
        [sys.executable, "-m", "zcfast.cli", "score", "--dataset", "ImageNet16-120", "--proxies",
         "params", "--archs", "3", "--batch-size", "4", "--threads", "1", "--out",
         str(tmp_path / "t.csv")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("scoring ImageNet16-120")]
    assert "\r" not in r.stderr
    assert sum("3/3" in ln for ln in lines) == 1, r.stderr


# ---- zcfast.score: docs and code agree ----------------------------------------------------
def test_score_columns_are_arch_then_proxies_as_documented():
    import zcfast

    df = zcfast.score([6111, 0], "synflow,params", dataset="ImageNet16-120", batch_size=4)
    assert list(df.columns) == ["arch", "synflow", "params"]
    assert df.index.name == "index" and list(df.index) == [6111, 0]
    readme = (ROOT / "README.md").read_text()
    comment = readme[: readme.index("df = zcfast.score(")].rsplit("\n# ", 1)[1]
    assert "`arch`" in comment and "one column per proxy" in comment, comment


# ---- threads ------------------------------------------------------------------------------
def _omp_settings(code: str, env_extra=None) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update({"OMP_DISPLAY_ENV": "verbose", **(env_extra or {})})
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def test_import_zcfast_first_makes_idle_threads_sleep():
    # GNU OpenMP prints the settings it runs with; a spin count of 0 is the passive policy
    s = _omp_settings("import zcfast, torch; torch.ones(8).sum()")
    assert "GOMP_SPINCOUNT = '0'" in s and "OMP_WAIT_POLICY = 'PASSIVE'" in s
    late = _omp_settings("import torch, zcfast; torch.ones(8).sum()")
    assert "GOMP_SPINCOUNT = '0'" not in late  # too late: OpenMP was loaded by torch
    mine = _omp_settings("import zcfast, torch; torch.ones(8).sum()",
                         {"OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in mine  # a user's choice is kept


def test_default_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert runtime.default_threads() == runtime.available_cores() >= 1
    assert runtime.available_cores() <= len(os.sched_getaffinity(0))
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(ValueError, match="positive integer"):
            runtime.set_threads(bad)
    import torch

    before = torch.get_num_threads()  # conftest's setting, restored for the tests after this one
    many = runtime.available_cores() + 1
    try:
        with pytest.warns(UserWarning, match=f"{many} threads on {many - 1} available core"):
            runtime.set_threads(many)
    finally:
        torch.set_num_threads(before)


def test_threads_option_of_every_computing_command(tmp_path, capsys):
    for cmd in ("score", "search", "figure"):
        with pytest.raises(SystemExit):
            cli.main([cmd, "-h"])
        assert "--threads N" in capsys.readouterr().out, cmd
    assert cli.main(["score", "--archs", "2", "--threads", "0", "--out",
                     str(tmp_path / "x.csv")]) == 2
    assert "got 0" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    assert cli.main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)["cpu_threads"]
    assert info["threads"] >= 1 and info["available_cores"] >= 1


# ---- defaults that depend on the space, and errors that name the problem -------------------
def test_defaults_follow_the_space(tmp_path, monkeypatch, capsys):
    """Default --archs: a sample of a complete space, the whole of a pool (so every row has a
    ground truth to correlate with); default --budget: at most the pool's size; `--engine
    packed` means the same for search as for score."""
    import zcfast.scoring

    seen = []

    def spy(out, **kw):  # record the archs asked for, score nothing
        seen.append(kw["archs"])
        raise ValueError("spy")

    monkeypatch.setattr(zcfast.scoring, "score_to_file", spy)
    for space, want in (("nb201", "1000"), ("nb101", "all"), ("nbnlp", "all")):
        cli.main(["score", "--space", space, "--proxies", "params",
                  "--out", str(tmp_path / f"{space}.csv"), "--no-progress"])
        assert seen[-1] == want, (space, seen)
    out = tmp_path / "runs.jsonl"
    assert cli.main(["search", "--space", "nb101", "--algo", "rand", "--seeds", "1",
                     "--engine", "packed", "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text().splitlines()[0])["budget"] == 292
    assert "--budget 292: the nb101 table is a pool of 292 networks" in capsys.readouterr().out


def test_a_folder_where_a_file_is_expected(tmp_path, capsys):
    assert cli.main(["correlate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zcfast correlate: error:") and str(tmp_path) in err
    for cmd in (["score", "--archs", "2", "--proxies", "params"],
                ["search", "--algo", "rand", "--budget", "3", "--seeds", "1", "--no-progress"]):
        for resume in ([], ["--resume"]):
            assert cli.main([*cmd, *resume, "--out", str(tmp_path)]) == 2
            err = capsys.readouterr().err
            assert f"{tmp_path} is a folder: --out names the file to write" in err, (cmd, err)


def test_correlate_names_its_settings_and_warns_on_few_cells(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert cli.main(["score", "--archs", "5", "--proxies", "params", "--out", str(out),
                     "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["correlate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "precision fp32, flavour paper, normalization paper" in text
    assert "WARNING: only 5 cells" in text


def test_bf16_warns_for_the_proxies_it_ranks_poorly(tmp_path, capsys):
    """bench/results/precision.md: plain, grasp and jacob_cov rank differently under bf16."""
    from zcfast.scoring import score_to_file

    score_to_file(tmp_path / "a.csv", archs=[0, 6111], proxies="synflow,jacob_cov",
                  precision="bf16", batch_size=4, progress=False)
    assert "warning: under bf16, jacob_cov rank cells differently" in capsys.readouterr().err
    score_to_file(tmp_path / "b.csv", archs=[0, 6111], proxies="synflow,snip",
                  precision="bf16", batch_size=4, progress=False)
    assert "warning" not in capsys.readouterr().err


def test_plain_import_gives_the_submodules():
    """The README's `zcfast.hardware.lookup(...)` after a plain `import zcfast` (a fresh
    interpreter: here the submodule is imported already); an unknown name still raises."""
    code = ("import zcfast\nassert callable(zcfast.hardware.lookup)\n"
            "try:\n    zcfast.no_such_module\nexcept AttributeError as e:\n"
            "    assert 'no_such_module' in str(e)\nelse:\n    raise SystemExit('no error')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
