"""Build and drive tests/cuda_host/partition_test.cpp, the host replay of the CUDA kernels'
index arithmetic (csrc/cuda/partition.hpp): no GPU needed, only a C++17 compiler.

``replay(lines)`` feeds one case per line to ``partition_test --cases`` and returns one parsed
result per case: ``{"ok": bool, "text": str, <key>: int, ...}``. The case builders below write
the same launches the GPU kernel tests make (tests/test_cuda_kernels.py), so every GPU case is
also replayed on the CPU.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "cuda_host" / "partition_test.cpp"


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@functools.cache
def replay_binary(mutation: tuple[str, str] | None = None) -> Path:
    """Compile partition_test.cpp once per process (about 5 s); raises when it does not build.
    ``mutation`` (old, new): compile against a copy of csrc/cuda/partition.hpp with ``old``
    replaced by ``new``: an injected defect, to show that the replay catches it."""
    cxx = compiler()
    if not cxx:
        raise RuntimeError("no C++ compiler for the host replay")
    tmp = Path(tempfile.mkdtemp(prefix="zcfast_replay_"))
    inc = ROOT / "csrc"
    if mutation is not None:
        text = (inc / "cuda" / "partition.hpp").read_text()
        if mutation[0] not in text:
            raise ValueError(f"mutation target not found in partition.hpp: {mutation[0]!r}")
        (tmp / "csrc" / "cuda").mkdir(parents=True)
        shutil.copy(inc / "hd.hpp", tmp / "csrc" / "hd.hpp")
        (tmp / "csrc" / "cuda" / "partition.hpp").write_text(text.replace(mutation[0], mutation[1]))
        inc = tmp / "csrc"
    exe = tmp / "partition_test"
    r = subprocess.run([cxx, "-std=c++17", "-O1", "-I", str(inc), str(SOURCE), "-o", str(exe)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"host replay does not compile:\n{r.stderr[-3000:]}")
    return exe


def run_builtin() -> subprocess.CompletedProcess:
    return subprocess.run([str(replay_binary())], capture_output=True, text=True, timeout=120,
                          check=False)


def replay(lines: list[str], mutation: tuple[str, str] | None = None) -> list[dict]:
    r = subprocess.run([str(replay_binary(mutation)), "--cases"], input="\n".join(lines) + "\n",
                       capture_output=True, text=True, timeout=300, check=False)
    out = []
    for text in r.stdout.splitlines():
        d = {"ok": text.startswith("ok"), "text": text}
        for tok in text.split()[1:]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                d[k] = int(v) if v.lstrip("-").isdigit() else v
        out.append(d)
    if len(out) != len(lines):
        raise RuntimeError(f"host replay answered {len(out)} of {len(lines)} cases: {r.stderr[-2000:]}")
    return out


# ---- case lines (formats: see partition_test.cpp, "--cases mode") -----------------------------


def sal_case(offsets, resident: int, cap: int = 0, grid_mode: int = 0, force_split: bool = False) -> str:
    off = [int(v) for v in offsets]
    return f"sal {resident} {cap} {grid_mode} {int(force_split)} {len(off) - 1} " + " ".join(map(str, off))


def fisher_case(resident: int, cap: int, b: int, c: int, hw: int, vec: int) -> str:
    return f"fisher {resident} {cap} {b} {c} {hw} {vec}"


def naswot_case(sms: int, active: int, cap: int, split: int, b: int, group_len: int, ft: int, k: int,
                group_cand) -> str:
    cand = [int(v) for v in group_cand]
    return (f"naswot {sms} {active} {cap} {split} {b} {group_len} {ft} {k} {len(cand)} "
            + " ".join(map(str, cand)))


def init_case(sms: int, cap: int, n_out: int, offsets) -> str:
    off = [int(v) for v in offsets]
    return f"init {sms} {cap} {n_out} {len(off) - 1} " + " ".join(map(str, off))
