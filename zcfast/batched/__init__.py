"""Batched scoring: many NB201 candidates per packed forward/backward.

>>> import zcfast
>>> df = zcfast.score(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", 0, 17],
...                   ["synflow", "snip", "jacob_cov"], dataset="cifar10")

Returns a pandas DataFrame indexed by NB201 index (input order kept, duplicates allowed), with
a column ``arch`` and one float64 column per proxy. A candidate's weights depend only on
(seed, arch), and its batch is the seeded minibatch of the dataset, so its scores do not depend
on the chunk size or on which other candidates share its pass.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from zcfast.batched.engine import SUPPORTED, PackedNB201, codes_of
from zcfast.batched.memory import bytes_per_candidate, mean_features, peak_bytes

__all__ = ["SUPPORTED", "PackedNB201", "auto_chunk", "iter_packed", "score"]

_GRAD_PROXIES = {"grad_norm", "snip", "plain", "fisher", "grasp", "jacob_cov"}
# Fraction of the free memory a chunk may plan to use: the model (zcfast/batched/memory.py) is
# fitted to CPU measurements, and a GPU adds cuDNN workspaces and allocator rounding on top.
_MEMORY_FRACTION = 0.5


def _bytes_per_candidate(proxies, batch: int, input_size: int, mean_x=None) -> float:
    """Bytes one more candidate adds to a packed chunk's peak: the measured memory model of
    zcfast/batched/memory.py (bench/results/memory_model.md), for cells with mean features
    ``mean_x`` (default: the search space's mean cell)."""
    return bytes_per_candidate(proxies, batch, input_size, mean_x)


def _available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 4e9


def auto_chunk(proxies, batch: int, input_size: int, device, n_cells: int, archs=None) -> int:
    """Candidates per pass: as many as the memory model (zcfast/batched/memory.py) fits in half
    of the free memory, for the mean of the cells ``archs`` to be scored (NB201 indices; default:
    the search space's mean cell), capped (see below); ZCFAST_CHUNK overrides."""
    dev = torch.device(device)
    mean_x = None
    if archs is not None and len(archs):
        pick = np.asarray(archs)[np.linspace(0, len(archs) - 1, min(len(archs), 512)).astype(np.int64)]
        mean_x = mean_features(codes_of(pick))
    per = _bytes_per_candidate(proxies, batch, input_size, mean_x)
    # the part of one chunk's peak that does not grow with K comes off the budget first
    fixed = max(0.0, peak_bytes(proxies, batch, input_size, 1, mean_x=mean_x) - per)
    budget = _MEMORY_FRACTION * _available_bytes(dev) - fixed
    # On a CPU, batch-64 passes are memory-bandwidth bound: past K of 1-2 the packed tensors
    # fall out of cache and a candidate costs more, not less (bench/results/packed_cpu.md);
    # batch-1 synflow is flat up to K of about 16. GPUs want large K.
    if dev.type == "cuda":
        cap = 1024
    elif set(proxies) & _GRAD_PROXIES or "nwot" in proxies:
        cap = 2
    else:
        cap = 16
    env = os.environ.get("ZCFAST_CHUNK")
    if env:
        return max(1, int(env))
    return int(max(1, min(cap, n_cells, budget // per)))


def _is_oom(e: BaseException) -> bool:

    msg = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in msg or "can't allocate memory" in msg


def iter_packed(indices: Iterable[int], proxies, x, y, *, ncls: int, seed: int = 0,
                flavour: str = "paper", device="cpu", chunk: int | None = None,
                backend: str | None = None, dtype=torch.float32,
                on_oom: Callable[[int, float], None] | None = None) -> Iterator:
    """Yield (list of NB201 indices, {proxy: np.ndarray}) chunk by chunk. A chunk that runs
    out of memory is retried with half as many candidates (never with rescaled values);
    ``on_oom(k, seconds)`` is called after each such failed attempt of k candidates, with the
    seconds it took (benchmarks time the retries apart from the rates)."""
    idx = [int(i) for i in indices]
    dev = torch.device(device)
    if not idx:
        return
    input_size = int(x.shape[-1])
    k = chunk if chunk is not None else auto_chunk(proxies, x.shape[0], input_size, dev, len(idx),
                                                   archs=idx)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    pos = 0
    while pos < len(idx):
        part = idx[pos : pos + k]
        t0 = time.perf_counter()
        try:
            eng = PackedNB201(codes_of(part), ncls, flavour=flavour, seed=seed,
                              input_size=input_size, device=dev, backend=backend, dtype=dtype)
            res = eng.compute(x, y, proxies)
        except Exception as e:
            if not _is_oom(e) or k == 1:
                raise
            del e
            eng = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if on_oom is not None:
                on_oom(len(part), time.perf_counter() - t0)
            k = max(1, k // 2)
            continue
        yield part, res
        pos += len(part)


def _executor_stream(executor, uniq, names, ds, batch_size, seed, chunk, flavour, data_root,
                     images, backend, dtype, device, normalization="paper"):
    """zcfast.score's chunks from an executor (which is closed afterwards if made here)."""
    from zcfast.executors import Executor, ScoreTask, get_executor

    ex = get_executor(executor, device=device)
    task = ScoreTask("nb201", {
        "dataset": ds, "proxies": names, "seed": int(seed), "batch_size": int(batch_size),
        "images": images, "normalization": normalization,
        "data_root": None if data_root is None else str(data_root),
        "flavour": flavour, "engine": "packed", "chunk": chunk, "backend": backend,
        "dtype": str(dtype).replace("torch.", ""),
    })
    try:
        yield from ex.run(task, [int(i) for i in uniq])
    finally:
        if not isinstance(executor, Executor):
            ex.close()


def score(archs, proxies, *, space: str = "nb201", dataset: str = "cifar10", batch_size: int = 64,
          seed: int = 0, device=None, chunk: int | None = None, flavour: str = "paper",
          data_root: str | None = None, images: str = "default", backend: str | None = None,
          dtype=torch.float32, progress: bool = False, normalization: str = "paper",
          executor=None):
    """Score NB201 cells with zero-cost proxies in packed passes.

    archs: arch strings, NB201 indices (ints) or op-id sequences. proxies: names (list or
    comma string; 'paper' / 'all' allowed). chunk: candidates per pass (default: from free
    memory; a pass that runs out of memory is retried with half). dtype: float32 (default) or
    float64 for the loss/jacobian passes (synflow is always float64). Returns a DataFrame indexed
    by NB201 index with ``arch`` and one float64 column per proxy (NaN/inf kept as computed).
    device: 'auto' (default: CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; the
    device that ran, the images and their normalisation ('paper' or 'dataset', docs/data.md) are
    in ``df.attrs``.
    executor: None (this process, ``device``), ``"ray"`` or a ``zcfast.executors`` Executor
    (e.g. ``RayExecutor(address)``: chunks scored on a Ray cluster, docs/ray.md).
    """
    import pandas as pd

    from zcfast.data import dataset_name, image_source, num_classes
    from zcfast.scoring import device_name, parse_proxies, resolve_device
    from zcfast.spaces import nb201

    if space != "nb201":
        raise ValueError(f"unknown space {space!r}: zcfast.score supports 'nb201'")
    names = parse_proxies(proxies)
    unsupported = [p for p in names if p not in SUPPORTED]
    if unsupported:
        raise ValueError(f"proxies {unsupported} have no packed implementation")
    if isinstance(archs, (str, int, np.integer)):
        archs = [archs]
    idx = nb201.resolve(list(archs))
    if len(idx) == 0:
        raise ValueError("empty arch list: nothing to score")
    dev = resolve_device(device)
    ds = dataset_name(dataset)
    src = image_source(ds, data_root=data_root, images=images, normalization=normalization)
    x, y = src.minibatch(batch_size, seed)
    x, y = x.to(dev), y.to(dev)
    uniq, inverse = np.unique(idx, return_inverse=True)  # score duplicates once
    cols = {p: np.full(len(uniq), math.nan) for p in names}
    where = {int(i): n for n, i in enumerate(uniq)}
    bar = None
    if progress:
        from zcfast.progress import progress_bar

        bar = progress_bar(len(uniq), unit="cell", desc="zcfast.score")
    stream = iter_packed(uniq, names, x, y, ncls=num_classes(ds), seed=seed, flavour=flavour,
                         device=dev, chunk=chunk, backend=backend, dtype=dtype)
    if executor is not None:
        stream = _executor_stream(executor, uniq, names, ds, batch_size, seed, chunk, flavour,
                                  data_root, images, backend, dtype, str(dev), normalization)
    for part, res in stream:
        pos = [where[i] for i in part]
        for p in names:
            cols[p][pos] = res[p]
        if bar:
            bar.update(len(part))
    if bar:
        bar.close()
    df = pd.DataFrame({"arch": [nb201.arch_at(int(i)) for i in idx],
                       **{p: cols[p][inverse] for p in names}}, index=pd.Index(idx, name="index"))
    df.attrs.update(device=str(dev), device_name=device_name(dev), dataset=ds, seed=int(seed),
                    batch_size=int(batch_size), images=src.description, normalization=normalization)
    return df
