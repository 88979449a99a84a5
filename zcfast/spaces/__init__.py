"""Search spaces, each one module behind the interface of :mod:`zcfast.spaces.base`.

>>> from zcfast.spaces import get_space
>>> sp = get_space("nb201")
>>> sp.key(sp.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"))

Spaces are registered by name with the module that defines them, and imported on first use (so
``import zcfast.spaces`` stays light). A new space is one module with a ``SPACE`` object (a
:class:`~zcfast.spaces.base.Space`), registered here or at run time with :func:`register`.
"""

from __future__ import annotations

import importlib

from zcfast.spaces.base import MiniBatch, Space, Targets, Universe

__all__ = ["SPACE_NAMES", "MiniBatch", "Space", "Targets", "Universe", "get_space", "register"]

# name -> module that defines ``SPACE``
_REGISTRY: dict = {
    "nb201": "zcfast.spaces.nb201",
    "nb101": "zcfast.spaces.nb101",
    "nbnlp": "zcfast.spaces.nbnlp",
}
_LOADED: dict = {}


def register(name: str, module: str | Space) -> None:
    """Make a space available under ``name``: a module path (holding ``SPACE``) or a Space."""
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise ValueError(f"space name must be an identifier, got {name!r}")
    if isinstance(module, Space):
        _LOADED[name] = module
    _REGISTRY[name] = module if isinstance(module, str) else f"<object {module!r}>"


def get_space(name) -> Space:
    """The space registered as ``name`` (a Space passes through)."""
    if isinstance(name, Space):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown search space {name!r}: expected one of {', '.join(_REGISTRY)}")
    if name not in _LOADED:
        mod = importlib.import_module(_REGISTRY[name])
        sp = getattr(mod, "SPACE", None)
        if not isinstance(sp, Space):
            raise ImportError(f"{_REGISTRY[name]} defines no SPACE object for the space {name!r}")
        _LOADED[name] = sp
    return _LOADED[name]


def __getattr__(attr):
    if attr == "SPACE_NAMES":
        return tuple(_REGISTRY)
    raise AttributeError(attr)
