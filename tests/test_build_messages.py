"""setup.py's messages when a build tool is missing or too old (the build stops before CMake
runs, so these take a second). Injected defect caught: find_cxx returning without checking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build_ext(tmp_path, path: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env["PATH"] = path
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-temp", str(tmp_path / "t"),
         "--build-lib", str(tmp_path / "l")], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120)


def test_no_compiler_or_cmake_says_what_to_install(tmp_path):
    r = _build_ext(tmp_path, str(tmp_path))  # an empty PATH: no compiler, no cmake
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: zcfast compiles its C++ core (zcfast._C) with a C++17 compiler")
    assert "no C++ compiler (c++, g++ or clang++, or $CXX) was found on PATH" in err
    assert "apt-get install g++ cmake" in err and "Traceback" not in r.stderr


def test_old_cmake_says_which_version_is_needed(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "cmake").write_text("#!/bin/sh\necho 'cmake version 3.10.2'\n")
    (fake / "cmake").chmod(0o755)
    r = _build_ext(tmp_path, f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert r.returncode != 0
    assert f"zcfast needs CMake >= 3.18, but {fake / 'cmake'} is version 3.10.2" in r.stderr
    assert "pip install cmake" in r.stderr


def test_no_cmake_says_so(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "c++").write_text("#!/bin/sh\nexit 0\n")
    (fake / "c++").chmod(0o755)
    r = _build_ext(tmp_path, str(fake))
    assert r.returncode != 0
    assert "CMake >= 3.18 and a C++17 compiler, but no 'cmake' was found on PATH" in r.stderr
