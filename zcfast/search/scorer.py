"""Live zero-cost scorers for the search: a scorer maps architecture codes (uint64, the space's
raw encoding) to one proxy's scores.

A scorer runs a scoring task (zcfast.executors) through an executor: this process by default
(its runner keeps the minibatch on the device between the search's asks), or a Ray cluster. The
packed engine scores each request in packed passes; the per-model reference loop is the
alternative. Both build each network's weights from (seed, arch) and score on the same seeded
minibatch as ``zcfast score`` (so cached values agree with score files).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from zcfast.data import dataset_name
from zcfast.proxies import check_names

ENGINES = ("auto", "batched", "loop")


def batched_available() -> bool:
    try:
        import zcfast.batched as b
    except ImportError:
        return False
    return callable(getattr(b, "score", None))


def default_scorer(proxy: str, dataset: str, seed: int = 0, *, engine: str = "auto",
                   batch_size: int | None = None, images: str = "default", flavour: str = "paper",
                   device=None, chunk=None, space: str = "nb201", executor=None,
                   normalization: str = "paper", data_seed: int | None = None,
                   precision: str = "fp32", data_root=None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable ``f(codes) -> (n,) float64`` scoring networks of ``space`` (given by their
    codes) with ``proxy``, weight seed ``seed`` and the seeded minibatch of ``zcfast score``
    (minibatch seed ``data_seed``, default ``seed``), so cached values agree with score files.
    For an ensemble proxy (``vote``, ``ensemble:a+b``) it scores the members in one pass and
    returns an (n, members) matrix, columns in ``proxy_members`` order.

    ``engine``: ``batched`` / ``auto`` (the packed engine) or ``loop`` (one model at a time).
    ``precision``: the packed passes' precision, as ``zcfast score --precision`` (fp32, bf16;
    tf32 on CUDA only).
    ``data_root``: a standard CIFAR download read instead of the bundled images, as
    ``zcfast score --data-root`` (on a Ray cluster every worker must see the folder).
    ``executor``: a ``zcfast.executors`` Executor (e.g. a RayExecutor: each request is split
    into chunks scored on the cluster); default: this process on ``device``, with the minibatch
    built once and kept on the device for every later request.
    """
    from zcfast.executors import ScoreTask, get_executor
    from zcfast.search.driver import proxy_members
    from zcfast.spaces import get_space

    members, _ = proxy_members(proxy)
    check_names(members)
    ds = dataset_name(dataset)
    sp = get_space(space)
    if batch_size is None:
        batch_size = sp.default_batch_size
    if engine not in ENGINES:
        raise ValueError(f"unknown scoring engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "batched" and not batched_available():
        raise ValueError("engine 'batched' asked for, but zcfast.batched provides no score() yet")
    use_batched = engine == "batched" or (engine == "auto" and batched_available())
    from zcfast.scoring import resolve_device

    dev = str(resolve_device(device))
    ex = executor if executor is not None else get_executor(None, device=dev)
    task = ScoreTask(sp.name, {
        "dataset": ds, "proxies": members, "weight_seed": int(seed),
        "data_seed": int(seed if data_seed is None else data_seed), "batch_size": int(batch_size),
        "images": images, "normalization": normalization,
        "data_root": None if data_root is None else str(data_root),
        "options": sp.model_options(flavour=flavour),
        "engine": "packed" if use_batched else "loop", "chunk": chunk,
        **({"precision": precision} if precision != "fp32" else {}),
    })

    checked = []

    def check_precision() -> None:
        """On the first call, not when built: a search that scores nothing live (every score
        cached or imported) may name any precision its score files were made in."""
        from zcfast.scoring import check_precision as check  # zcfast score's checks

        check(precision, "packed" if use_batched else "loop", dev, members)
        checked.append(True)

    def score_codes(codes: np.ndarray) -> np.ndarray:
        if not checked:
            check_precision()
        archs = [int(c) for c in np.asarray(codes).tolist()]
        got = ex.score(task, archs)
        if len(members) == 1:
            return np.asarray(got[members[0]], dtype=np.float64)
        return np.column_stack([np.asarray(got[m], dtype=np.float64) for m in members])

    score_codes.engine = "batched" if use_batched else "loop"  # type: ignore[attr-defined]
    if executor is not None:
        score_codes.executor = executor  # type: ignore[attr-defined]
    return score_codes
