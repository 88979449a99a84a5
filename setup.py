"""Build zcfast: setuptools drives CMake to compile the pybind11 module ``zcfast._C``.

Environment knobs
-----------------
ZCFAST_CUDA   auto (default) | ON | OFF. ``auto`` compiles the CUDA kernels in csrc/cuda when
              nvcc is found; ``ON`` fails if it is not; ``OFF`` never compiles them.
ZCFAST_CUDA_ARCH  CMake CUDA architectures (default "90-real;90-virtual": sm_90 SASS + PTX).
ZCFAST_BUILD_TYPE Release (default) | Debug | RelWithDebInfo.
ZCFAST_JOBS   parallel compile jobs (default 2: these machines have 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: Path) -> None:
        super().__init__(name, sources=[])
        self.sourcedir = str(sourcedir)


CMAKE_MIN = (3, 18)
HOW_TO_GET_TOOLS = (
    "To install the build tools: e.g. 'apt-get install g++ cmake' (Debian/Ubuntu), 'xcode-select --install' "
    "and 'brew install cmake' (macOS) or 'conda install cxx-compiler cmake'; CMake also comes "
    "from PyPI: 'pip install cmake'. Then run pip again."
)


class BuildToolError(CompileError):
    """A tool needed to compile zcfast's C++ core is missing or too old."""


def find_cmake() -> str:
    """Path of a CMake >= CMAKE_MIN, or a BuildToolError that says what to do."""
    need = ".".join(map(str, CMAKE_MIN))
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildToolError(
            f"zcfast compiles its C++ core (zcfast._C) with CMake >= {need} and a C++17 "
            f"compiler, but no 'cmake' was found on PATH. {HOW_TO_GET_TOOLS}")
    out = subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout
    words = out.split()
    version = words[2] if len(words) > 2 and words[:2] == ["cmake", "version"] else ""
    try:
        have = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        have = ()
    if len(have) < 2 or have < CMAKE_MIN:
        raise BuildToolError(
            f"zcfast needs CMake >= {need}, but {cmake} is version {version or 'unknown'}. "
            f"{HOW_TO_GET_TOOLS}")
    return cmake


def find_cxx() -> str:
    """The C++ compiler CMake will use ($CXX, else c++/g++/clang++ on PATH), or a
    BuildToolError that says what to do."""
    env = os.environ.get("CXX", "").strip()
    if env:
        exe = shutil.which(env.split()[0])
        if exe is None:
            raise BuildToolError(f"CXX={env!r} names a C++ compiler that is not on PATH. "
                                 f"{HOW_TO_GET_TOOLS}")
        return exe
    for name in ("c++", "g++", "clang++"):
        exe = shutil.which(name)
        if exe:
            return exe
    raise BuildToolError(
        "zcfast compiles its C++ core (zcfast._C) with a C++17 compiler and CMake, but no C++ "
        f"compiler (c++, g++ or clang++, or $CXX) was found on PATH. {HOW_TO_GET_TOOLS}")


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:  # type: ignore[override]
        find_cxx()
        cmake = find_cmake()
        import pybind11

        out_file = Path(self.get_ext_fullpath(ext.name)).resolve()
        out_dir = out_file.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        build_temp = Path(self.build_temp).resolve() / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)

        cuda = os.environ.get("ZCFAST_CUDA", "auto").upper()
        if cuda not in ("AUTO", "ON", "OFF"):
            raise ValueError(f"ZCFAST_CUDA must be auto, ON or OFF, got {cuda!r}")
        cfg = os.environ.get("ZCFAST_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DZCFAST_OUTPUT_NAME={out_file.name}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DZCFAST_CUDA={cuda}",
        ]
        arch = os.environ.get("ZCFAST_CUDA_ARCH")
        if arch:
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={arch}")
        jobs = os.environ.get("ZCFAST_JOBS", "2")
        subprocess.run([cmake, ext.sourcedir, *args], cwd=build_temp, check=True)
        subprocess.run(
            [cmake, "--build", ".", "--config", cfg, "--parallel", jobs], cwd=build_temp, check=True
        )
        if not out_file.exists():
            raise RuntimeError(f"CMake finished but {out_file} was not produced")


setup(
    # every subpackage of zcfast/ (found, never listed by hand: a forgotten one installs a
    # package whose CLI fails on import), plus the Triton kernels below
    packages=[*find_packages(include=["zcfast", "zcfast.*"]), "zcfast.kernels"],
    # Triton kernels live in the top-level kernels/ folder (product-card layout) and install
    # as the subpackage zcfast.kernels.
    package_dir={"zcfast.kernels": "kernels"},
    package_data={"zcfast.data": ["_bundled/*"]},
    ext_modules=[CMakeExtension("zcfast._C", ROOT)],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
