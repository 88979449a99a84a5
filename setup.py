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

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: Path) -> None:
        super().__init__(name, sources=[])
        self.sourcedir = str(sourcedir)


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:  # type: ignore[override]
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("zcfast needs cmake (>= 3.18) on PATH to build its C++ core")
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
    packages=[
        "zcfast",
        "zcfast.spaces",
        "zcfast.proxies",
        "zcfast.data",
        "zcfast.batched",
        "zcfast.ops",
        "zcfast.search",
        "zcfast.kernels",
    ],
    # Triton kernels live in the top-level kernels/ folder (product-card layout) and install
    # as the subpackage zcfast.kernels.
    package_dir={"zcfast.kernels": "kernels"},
    package_data={"zcfast.data": ["_bundled/*.npz", "_bundled/*.gz", "_bundled/*.md"]},
    ext_modules=[CMakeExtension("zcfast._C", ROOT)],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
