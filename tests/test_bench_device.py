"""bench/bench_device.py without a GPU: its CPU smoke path writes the results files, and the
report (targets, Markdown, short table) handles complete, partial and failed results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
    assert "MET" in tc["synflow_all_cells_s"] and "measured" in tc["synflow_all_cells_s"]
    assert "MET" in tc["six_all_cells_s"] and "extrapolated" in tc["six_all_cells_s"]
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
