"""bench/bench_device.py and bench/device.sh without a GPU: the CPU smoke path writes the
results files; the report (targets, Markdown, short table) handles complete, partial and failed
results and never calls an extrapolation "met"; OOM retries are timed apart from the rates; the
whole device script is rehearsed on the CPU (every GPU-only step skipped) and fails fast, naming
what is missing, when a build prerequisite is absent."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_device", ROOT / "bench" / "bench_device.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_smoke_writes_results(bench, tmp_path, capsys):
    rc = bench.main(["--cpu-smoke", "--out", str(tmp_path), "--budget-s", "120",
                     "--skip", "throughput,full,work,profile"])
    assert rc == 0
    res = json.loads((tmp_path / "device_smoke.json").read_text())
    assert res["mode"].startswith("cpu-smoke")
    assert res["ceilings"]["copy_GBps"] > 0
    rows = [r for r in res["kernels"]["rows"] if "kernel" in r]
    assert {r["kernel"] for r in rows} >= {"saliency_nb201_w_g_hg", "fisher_hw1024",
                                           "naswot_stage1_L16384"}
    assert all(r.get("check_ok") for r in rows), rows
    assert "Fused reduction kernels" in (tmp_path / "device_smoke.md").read_text()
    (tmp_path / "status.txt").write_text("build: ok\ntests: 3 passed\n")
    assert bench.main(["--report", str(tmp_path / "device_smoke.json"),
                       "--status-file", str(tmp_path / "status.txt")]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("=" * 78) and "tests: 3 passed" in out


def test_report_of_synthetic_results(bench, tmp_path):
    res = {
        "environment": {"card": "NVIDIA H100 80GB HBM3", "git_sha": "abc"},
        "ceilings": {"copy_GBps": 3000.0, "fp32_TFLOPs": 50.0, "tf32_TFLOPs": 400.0},
        "kernels": {"rows": [
            {"kernel": "saliency_nb201_w_g_hg", "backend": "cuda", "bytes": 4e8, "median_s": 1.5e-4,
             "GBps": 2666.0, "copy_fraction": 0.89, "check_ok": True, "check_err": 1e-15},
            {"kernel": "fisher_hw64", "backend": "triton", "bytes": 2.7e8, "median_s": 3e-4,
             "GBps": 900.0, "copy_fraction": 0.3, "check_ok": True, "check_err": 1e-7},
            {"kernel": "naswot_stage1_L16384", "backend": "cuda", "error": "RuntimeError: boom"},
        ]},
        "throughput": {
            "batch": 64,
            "loop_six": {"cands_per_s": 5.0},
            "packed_six_cuda": {"cands_per_s": 300.0, "vs_loop_x": 60.0,
                                "all_cells_s_extrapolated": 52.1},
            "packed_six_triton": {"error": "x"},
            "packed_synflow_cuda": {"cands_per_s": 4000.0, "vs_loop_x": 150.0,
                                    "all_cells_s_extrapolated": 3.9},
        },
        "full_runs": {"synflow": {"ran": True, "total_s": 4.2, "backend": "packed_synflow_cuda",
                                  "chunk": 1024, "nan_or_inf": 0},
                      "six": {"ran": False, "extrapolated_s": 52.1, "why": "budget"}},
        "work_bound": {"flops_per_cand": 5e10, "min_bytes_per_cand": 2e9, "method": "m",
                       "floor_s_per_cand_fp32": 1e-3, "bound": "compute",
                       "floor_all_cells_s_fp32": 15.6, "gap_x": 3.3},
        "profile": {"cells": 64, "total_ms": 900.0,
                    "top": [{"name": "cudnn_conv", "ms": 300.0, "share": 0.33, "calls": 400}]},
        "status": {"build": "ok"},
    }
    tc = bench.targets_check(res)
    assert tc["synflow_all_cells_s"].endswith("MET") and "measured" in tc["synflow_all_cells_s"]
    # 52.1 s extrapolated is below the 60 s target, and still no verdict: not a measurement
    six = tc["six_all_cells_s"]
    assert "extrapolated" in six and "not measured" in six and "MET" not in six, six
    assert "MISSED by 1.7x" in tc["packed_vs_loop_six"]
    assert "MISSED" in tc["bw_fisher_hw64_triton"] and "MET" in tc["bw_saliency_nb201_w_g_hg_cuda"]
    res["targets_check"] = tc
    md = bench.markdown(res)
    assert "| saliency_nb201_w_g_hg | cuda |" in md and "boom" not in md.split("## Candidates")[1]
    table = bench.short_table(res)
    assert "kernel bandwidth >= 60% of copy: 1/2 met" in table
    # a partial file (the benchmark was stopped after its first phases) still reports
    part = {"environment": {"card": "H100"}, "ceilings": {"copy_GBps": 1.0}}
    assert "not measured" in bench.short_table({**part, "targets_check": bench.targets_check(part)})


def test_extrapolations_never_meet_a_target(bench):
    """Whatever the extrapolated value, only a full measured run gets MET / MISSED."""
    th = {"batch": 64, "packed_six_cuda": {"cands_per_s": 1e6, "vs_loop_x": 500.0,
                                           "rate_from": "64 cells in 0.01 s"},
          "packed_synflow_cuda": {"cands_per_s": 1e7, "vs_loop_x": 900.0}}
    tc = bench.targets_check({"throughput": th, "full_runs": {}})
    for key in ("six_all_cells_s", "synflow_all_cells_s"):
        assert "MET" not in tc[key] and "MISSED" not in tc[key] and "extrapolated" in tc[key], tc[key]
    assert "64 cells in 0.01 s" in tc["six_all_cells_s"]  # says what it was extrapolated from
    assert tc["packed_vs_loop_six"].endswith("MET")  # a measured ratio does get a verdict
    fr = {"six": {"ran": True, "total_s": 70.0, "cells": 15625, "backend": "packed_six_cuda",
                  "oom_s": 3.0}}
    tc = bench.targets_check({"throughput": th, "full_runs": fr})
    assert "measured" in tc["six_all_cells_s"] and "MISSED by 1.2x" in tc["six_all_cells_s"]
    assert "3.0 s of OOM retries" in tc["six_all_cells_s"]
    md = bench.markdown({"throughput": th, "full_runs": fr, "targets_check": tc})
    assert "EXTRAPOLATED" in md


def test_oom_retries_are_timed_apart_and_left_out_of_the_rate(bench, monkeypatch):
    """A chunk that runs out of memory is retried smaller by iter_packed; the benchmark records
    each failed attempt with its own time and leaves that time out of the chunk and the rate."""
    import zcfast.batched as batched
    from zcfast.batched.engine import PackedNB201

    real = PackedNB201.compute

    def compute(self, x, y, proxies):
        if self.K > 2:  # a "card" that holds two candidates
            time.sleep(1.0)  # far longer than scoring two 16x16 cells, even on a loaded machine
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, x, y, proxies)

    monkeypatch.setattr(PackedNB201, "compute", compute)
    seen = []
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    parts = [p for p, _ in batched.iter_packed([0, 1, 2, 3], ["params"], x, y, ncls=10, chunk=8,
                                               on_oom=lambda k, s: seen.append((k, s)))]
    assert parts == [[0, 1], [2, 3]]
    assert [k for k, _ in seen] == [4, 4]  # 4 cells (chunk 8 > 4 cells), again 4, then 2 fit
    assert all(s >= 1.0 for _, s in seen)
    r = bench.packed_rate([0, 1, 2, 3], ["params"], x, y, torch.device("cpu"), None, 4)
    assert [o["k"] for o in r["oom_retries"]] == [4] and r["oom_s"] >= 1.0
    # the failed attempt's second is in oom_s, not in the chunks (which would then reach it)
    assert r["chunk_sizes"] == [2, 2] and sum(r["chunk_s"]) < 1.0 <= r["oom_s"]
    assert r["cands_per_s"] == pytest.approx(4 / r["total_s"])


# ---- bench/device.sh ----------------------------------------------------------------------------


def _device_sh(tmp_path, script=None, **env):
    e = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "ZCFAST_GIT_SHA": "test",
         **env}
    t = time.perf_counter()
    r = subprocess.run(["bash", str(script or ROOT / "bench" / "device.sh")], env=e,
                       capture_output=True, text=True, timeout=600, check=False)
    return r, time.perf_counter() - t


def test_device_script_rehearsal_on_cpu(tmp_path):
    """The whole script, as the device runs it, on the CPU: prerequisites, the CMake configure
    step with the script's own variables (compiling is skipped: the installed module is used),
    both pytest calls (gpu-marked tests selected: they all skip), the benchmark in CPU smoke
    mode, the report. Every phase must report success, so the script cannot fail on the device
    for a path, variable or quoting reason."""
    modules = sorted((ROOT / "zcfast").glob("_C*"))
    r, _ = _device_sh(tmp_path, ZCFAST_DEVICE_REHEARSAL="1")
    out = r.stdout + r.stderr
    assert sorted((ROOT / "zcfast").glob("_C*")) == modules  # the installed module is kept
    assert r.returncode == 0, out[-4000:]
    status = dict(line.split(": ", 1) for line in (tmp_path / "status.txt").read_text().splitlines())
    assert list(status) == ["prerequisites", "build", "kernel_tests", "engine_tests", "bench", "total"]
    assert status["prerequisites"].startswith("ok")
    assert status["build"].startswith("ok") and "WITH_CUDA=" in status["build"]
    for name in ("kernel_tests", "engine_tests"):
        assert status[name].startswith("rc=0"), status[name]
        assert re.search(r"\d+ skipped", status[name]), status[name]  # collected, all skipped
        log = (tmp_path / f"{name}.log").read_text()
        assert "slowest" in log or "durations" in log  # --durations was passed
    assert status["bench"].startswith("rc=0")
    res = json.loads((tmp_path / "device_smoke.json").read_text())
    assert res["status"]["total"] == status["total"] and "error" not in res.get("kernels", {})
    assert out.rstrip().endswith("=" * 78)
    assert (tmp_path / "build-rehearsal").exists() or "not rehearsed" in (tmp_path / "build.log").read_text()


def test_device_script_fails_fast_on_missing_prerequisites(tmp_path):
    """Missing nvcc, CMake or Python.h: the script stops within seconds (exit 2) before any
    build, and says what is missing. (A copy of the script runs in an empty tree: were the
    check broken, the real-mode build step would delete and rebuild that tree's module.)"""
    script = tmp_path / "tree" / "bench" / "device.sh"
    script.parent.mkdir(parents=True)
    script.write_text((ROOT / "bench" / "device.sh").read_text())
    out = tmp_path / "out"
    r, took = _device_sh(out, script, NVCC="/nonexistent/nvcc", CMAKE="/nonexistent/cmake",
                         ZCFAST_PYTHON_INCLUDE=str(tmp_path / "no-headers"))
    tmp_path = out
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    line = (tmp_path / "status.txt").read_text().splitlines()[0]
    assert line.startswith("prerequisites: MISSING")
    for what in ("Python.h", "nvcc (/nonexistent/nvcc", "cmake >= 3.18 (/nonexistent/cmake"):
        assert what in line, line
    assert not (tmp_path / "build.log").exists() and took < 60
