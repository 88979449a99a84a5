"""zcfast: batched zero-cost proxies and zero-cost NAS.

Public entry points (imported lazily so that ``import zcfast`` stays light):
- :func:`zcfast.find_measures` -- per-model proxies of any ``nn.Module`` (paper API shape)
- :func:`zcfast.score` -- packed scoring of many NB201 candidates in one pass
- :mod:`zcfast.spaces.nb201` -- the NAS-Bench-201 space
- :func:`zcfast.backend_info` -- versions and the backend each fused op will use
"""

from __future__ import annotations

__version__ = "0.1.0"

# before anything imports torch: OpenMP reads its wait policy once, when it is loaded
from zcfast import runtime as _runtime  # noqa: E402

_runtime.prepare_openmp()

__all__ = ["__version__", "backend_info", "find_measures", "score"]


def backend_info() -> dict:
    from zcfast.ops import backend_info as _bi

    return _bi()


def find_measures(*args, **kwargs):
    from zcfast.proxies import find_measures as _fm

    return _fm(*args, **kwargs)


def score(*args, **kwargs):
    from zcfast.batched import score as _score

    return _score(*args, **kwargs)


def __getattr__(name: str):
    """The submodules (``zcfast.hardware``, ``zcfast.spaces``...), imported on first use, so
    that ``import zcfast`` alone gives them."""
    import importlib

    if name.isidentifier() and not name.startswith("_"):
        try:
            return importlib.import_module(f"zcfast.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"zcfast.{name}":  # the submodule exists but something it needs is missing
                raise
    raise AttributeError(f"module 'zcfast' has no attribute {name!r}")
