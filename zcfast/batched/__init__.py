"""Batched scoring: many candidates of a search space per packed forward/backward.

>>> import zcfast
>>> df = zcfast.score(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", 0, 17],
...                   ["synflow", "snip", "jacob_cov"], dataset="cifar10")

Returns a pandas DataFrame indexed by the space's key column (NB201 index; NB101 hash; input
order kept, duplicates allowed), with the space's other identifying columns (``arch``) and one
float64 column per proxy. A candidate's weights depend only on
(seed, arch), and its batch is the seeded minibatch of the dataset, so its scores do not depend
on the chunk size or on which other candidates share its pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from zcfast.batched.engine import SUPPORTED, PackedNB201, codes_of
from zcfast.batched.memory import bytes_per_candidate, mean_features, peak_bytes
from zcfast.batched.modern import PACKED as _MODERN

__all__ = ["SUPPORTED", "PackedNB201", "auto_chunk", "iter_packed", "iter_packed_space", "score"]

_GRAD_PROXIES = {"grad_norm", "snip", "plain", "fisher", "grasp", "jacob_cov"}
# the modern proxies' packed versions (modern.py) are not in the memory model: on a CPU they get
# the batch-64 cap of auto_chunk
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
    elif set(proxies) & _GRAD_PROXIES or "nwot" in proxies or set(proxies) & set(_MODERN):
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


def iter_packed_space(space, codes: Iterable[int], proxies, x, y, *, dataset: str, seed: int = 0,
                      device="cpu", chunk: int | None = None, backend: str | None = None,
                      dtype=torch.float32, options: dict | None = None,
                      on_oom: Callable[[int, float], None] | None = None,
                      extra_batches=()) -> Iterator:
    """Yield (list of codes, {proxy: np.ndarray}) chunk by chunk, each chunk one packed pass of
    ``space.packed`` (``extra_batches``: further (x, y) minibatches, for zico). A chunk that runs out of memory is retried with half as many candidates
    (never with rescaled values); ``on_oom(k, seconds)`` is called after each such failed
    attempt of k candidates, with the seconds it took (benchmarks time the retries apart from
    the rates). The chunk size defaults to the space's memory model (NB201: auto_chunk)."""
    from zcfast.spaces import get_space

    sp = get_space(space)
    codes = [int(c) for c in codes]
    dev = torch.device(device)
    if not codes:
        return
    input_size = int(x.shape[-1])
    if chunk is not None:
        k = chunk
    elif sp.name == "nb201":
        from zcfast.spaces import nb201

        k = auto_chunk(proxies, x.shape[0], input_size, dev, len(codes),
                       archs=[nb201.index_of_code(c) for c in codes])
    else:
        k = int(os.environ.get("ZCFAST_CHUNK", 0)) or sp.default_chunk(proxies, x.shape[0], dev)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    opts = dict(options or {})
    pos = 0
    while pos < len(codes):
        part = codes[pos : pos + k]
        t0 = time.perf_counter()
        try:
            eng = sp.packed(part, dataset, seed=seed, input_size=input_size, device=dev,
                            backend=backend, dtype=dtype, **opts)
            res = eng.compute(x, y, proxies, extra_batches) if extra_batches else \
                eng.compute(x, y, proxies)
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


def iter_packed(indices: Iterable[int], proxies, x, y, *, ncls: int, seed: int = 0,
                flavour: str = "paper", device="cpu", chunk: int | None = None,
                backend: str | None = None, dtype=torch.float32,
                on_oom: Callable[[int, float], None] | None = None,
                extra_batches=()) -> Iterator:
    """NB201 by index: yield (list of NB201 indices, {proxy: np.ndarray}) chunk by chunk
    (:func:`iter_packed_space` on NB201 codes). ``ncls`` picks the dataset (10, 100 or 120
    classes)."""
    from zcfast.spaces import nb201

    dataset = {10: "cifar10", 100: "cifar100", 120: "ImageNet16-120"}.get(int(ncls))
    if dataset is None:
        raise ValueError(f"NB201 networks have 10, 100 or 120 classes, not {ncls}")
    idx = [int(i) for i in indices]
    for part, res in iter_packed_space("nb201", [nb201.code_of_index(i) for i in idx], proxies,
                                       x, y, dataset=dataset, seed=seed, device=device, chunk=chunk,
                                       backend=backend, dtype=dtype, options={"flavour": flavour},
                                       on_oom=on_oom, extra_batches=extra_batches):
        yield [nb201.index_of_code(c) for c in part], res


def score(archs, proxies, *, space="nb201", dataset: str = "cifar10", batch_size: int = 64,
          seed: int = 0, device=None, chunk: int | None = None, flavour: str = "paper",
          data_root: str | None = None, images: str = "default", backend: str | None = None,
          dtype=torch.float32, progress: bool = False, normalization: str = "paper",
          executor=None, precision: str = "fp32"):
    """Score networks of ``space`` with zero-cost proxies, in packed passes where the space has
    a packed builder for the proxy (the others per model).

    archs: anything the space parses (NB201: arch strings, NB201 indices or op-id sequences;
    NB101: JSON cells or {"matrix", "ops"} dicts). proxies: names (list or comma string; 'paper'
    / 'modern' / 'all' and ensembles allowed; ensemble columns rank the networks given). chunk:
    candidates per pass (default: from free memory; a pass that runs out of memory is retried
    with half). dtype: float32 (default) or float64 for the loss/jacobian passes (synflow is
    always float64). precision: 'fp32' (default), 'bf16' (autocast to bfloat16, CPU or CUDA) or
    'tf32' (CUDA) for the float32 passes of the packed engine; fidelity per proxy in
    docs/performance.md. Returns a DataFrame indexed by the space's key column, with its other
    identifying columns and one float64 column per proxy (NaN/inf kept as computed). device:
    'auto' (default: CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; the device that
    ran, the images and their normalisation ('paper' or 'dataset', docs/data.md) are in
    ``df.attrs``. executor: None (this process, ``device``), ``"ray"`` or a
    ``zcfast.executors`` Executor (e.g. ``RayExecutor(address)``: chunks scored on a Ray
    cluster, docs/ray.md).
    """
    import pandas as pd

    from zcfast.data import dataset_name
    from zcfast.executors import Executor, ScoreTask, get_executor
    from zcfast.scoring import (
        add_ensembles,
        device_name,
        parse_proxies,
        resolve_device,
        split_columns,
    )
    from zcfast.spaces import get_space

    sp = get_space(space)
    names = parse_proxies(proxies, space=sp)
    per_model, ensembles = split_columns(names)
    if isinstance(archs, (str, int, np.integer, dict)):
        archs = [archs]
    codes = [sp.parse(a.item() if isinstance(a, np.generic) else a) for a in archs]
    if not codes:
        raise ValueError("empty arch list: nothing to score")
    dev = resolve_device(device)
    ds = dataset_name(dataset)
    options = sp.model_options(flavour=flavour)
    from zcfast.data import batches

    # drawn once per process and setting: the runner below gets this very batch
    mb = batches.minibatch(sp, ds, batch_size, seed, images=images, data_root=data_root,
                           normalization=normalization)
    keys = [sp.key(c) for c in codes]
    first = {}
    for c, k in zip(codes, keys):
        first.setdefault(k, c)  # score each network once
    uniq = list(first.values())
    ex = get_executor(executor, device=str(dev))
    task = ScoreTask(sp.name, {
        "dataset": ds, "proxies": per_model, "weight_seed": int(seed), "data_seed": int(seed),
        "batch_size": int(batch_size), "images": images, "normalization": normalization,
        "data_root": None if data_root is None else str(data_root), "options": options,
        "engine": "packed", "chunk": chunk, "backend": backend,
        "dtype": str(dtype).replace("torch.", ""), "precision": precision,
    })
    got: dict = {}
    bar = None
    if progress:
        from zcfast.progress import progress_bar

        bar = progress_bar(len(uniq), unit="cell", desc="zcfast.score")
    try:
        for part, res in ex.run(task, uniq):
            for n, c in enumerate(part):
                got[sp.key(c)] = {p: float(res[p][n]) for p in per_model}
            if bar:
                bar.update(len(part))
    finally:
        if bar:
            bar.close()
        if not isinstance(executor, Executor):
            ex.close()
    fields = [sp.row_fields(c) for c in codes]
    df = pd.DataFrame({**{col: [f[col] for f in fields] for col in sp.id_columns[1:]},
                       **{p: [got[k][p] for k in keys] for p in per_model}},
                      index=pd.Index([f[sp.key_column] for f in fields], name=sp.key_column))
    if ensembles:  # ranks over the networks given (each once)
        u = df[~df.index.duplicated()]
        u = add_ensembles(u.copy(), ensembles)
        for e in ensembles:
            df[e] = u[e].reindex(df.index).to_numpy()
    df.attrs.update(space=sp.name, device=str(dev), device_name=device_name(dev), dataset=ds,
                    seed=int(seed), batch_size=int(batch_size), images=mb.description,
                    normalization=normalization, precision=precision)
    return df
