"""Test configuration: Triton kernels run through its CPU interpreter.

TRITON_INTERPRET must be set before any Triton kernel module is imported, hence at the very top.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# zcfast's commands default to OMP_NUM_THREADS threads when it is set (zcfast/runtime.py): keep
# the CLI tests, which run in this process, on the suite's thread count
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("ZCFAST_TEST_THREADS", "1"))

import pytest
import torch

# One intra-op thread by default: on the shared 2-core machines, two OpenMP threads competing
# with other processes made small backward passes 10-40x slower (spin-waiting). CI on a quiet
# machine may raise it: ZCFAST_TEST_THREADS=2.
torch.set_num_threads(int(os.environ.get("ZCFAST_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
