"""Live zero-cost scorers for the search: a scorer maps NB201 indices to one proxy's scores.

The default uses the packed engine ``zcfast.score`` when ``zcfast.batched`` provides it (all
cells of a request in one batched call) and falls back to the per-model reference loop
(``zcfast.scoring.iter_loop``) otherwise. Both build each cell's weights from (seed, arch), and
score on the same seeded minibatch as ``zcfast score`` (so cached values agree with score files).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from zcfast.data import dataset_name, image_source, num_classes
from zcfast.proxies import check_names

ENGINES = ("auto", "batched", "loop")


def batched_available() -> bool:
    try:
        import zcfast.batched as b
    except ImportError:
        return False
    return callable(getattr(b, "score", None))


def default_scorer(proxy: str, dataset: str, seed: int = 0, *, engine: str = "auto",
                   batch_size: int = 64, images: str = "default", flavour: str = "paper",
                   device=None, chunk=None, executor=None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable ``f(indices) -> (n,) float64`` scoring NB201 cells with ``proxy``.

    ``engine``: ``batched`` (``zcfast.score``, one packed call per request), ``loop`` (one model
    at a time) or ``auto`` (batched when available). ``executor``: a ``zcfast.executors``
    Executor (e.g. a RayExecutor: each request is split into chunks scored on the cluster).
    """
    (proxy,) = check_names([proxy])
    ds = dataset_name(dataset)
    if engine not in ENGINES:
        raise ValueError(f"unknown scoring engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "batched" and not batched_available():
        raise ValueError("engine 'batched' asked for, but zcfast.batched provides no score() yet")
    use_batched = engine == "batched" or (engine == "auto" and batched_available())
    if executor is not None:
        from zcfast.executors import ScoreTask

        task = ScoreTask("nb201", {
            "dataset": ds, "proxies": [proxy], "seed": int(seed), "batch_size": int(batch_size),
            "images": images, "data_root": None, "flavour": flavour,
            "engine": "packed" if use_batched else "loop", "chunk": chunk,
        })

        def score_on(indices: np.ndarray) -> np.ndarray:
            return executor.score(task, np.asarray(indices, dtype=np.int64).tolist())[proxy]

        score_on.engine = "batched" if use_batched else "loop"  # type: ignore[attr-defined]
        score_on.executor = executor  # type: ignore[attr-defined]
        return score_on

    if use_batched:
        def score_batched(indices: np.ndarray) -> np.ndarray:
            import zcfast

            idx = np.asarray(indices, dtype=np.int64)
            df = zcfast.score(idx.tolist(), [proxy], space="nb201", dataset=ds,
                              batch_size=batch_size, seed=seed, device=device, chunk=chunk,
                              images=images, flavour=flavour)
            col = df[proxy]
            if col.index.is_unique:  # align by NB201 index (any row order)
                return col.reindex(idx).to_numpy(dtype=np.float64)
            return col.to_numpy(dtype=np.float64)  # duplicates: zcfast.score keeps request order

        score_batched.engine = "batched"  # type: ignore[attr-defined]
        return score_batched

    state: dict = {}

    def score_loop(indices: np.ndarray) -> np.ndarray:
        import torch

        from zcfast.scoring import iter_loop

        if "x" not in state:  # the minibatch is built once, on first use
            src = image_source(ds, images=images)
            x, y = src.minibatch(batch_size, seed)
            dev = torch.device(device) if device is not None else torch.device("cpu")
            state.update(x=x.to(dev), y=y.to(dev), dev=dev)
        out = {}
        for i, vals in iter_loop([int(i) for i in indices], [proxy], state["x"], state["y"],
                                 ncls=num_classes(ds), seed=seed, flavour=flavour,
                                 device=state["dev"]):
            out[i] = vals[proxy]
        return np.asarray([out[int(i)] for i in indices], dtype=np.float64)

    score_loop.engine = "loop"  # type: ignore[attr-defined]
    return score_loop
