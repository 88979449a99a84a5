"""Host-side cost of the packed engine without a GPU (docs/performance.md, host overhead).

On an accelerator, scoring networks as small as NB201's is limited by what the host does per
candidate: Python work, operator dispatch, small host-to-device copies and device-to-host
synchronisations. :class:`HostProbe` measures these on PyTorch's ``meta`` device, where every
operator is dispatched (shapes, dtypes, autograd graph) but nothing is computed, so the wall
time of a pass is its host time alone. While active it counts

- ``ops``: every ATen operator dispatched;
- ``d2h``: device-to-host transfers, i.e. synchronisations (a copy of a device tensor to the
  CPU, ``.item()``/``int()``/``.tolist()`` of a device tensor);
- ``h2d``: host-to-device copies (a CPU tensor copied to the device);
- ``views``: the dispatched operators whose output is a view of an input (``view``, ``slice``,
  ``expand``, ``detach``, ``split``...: ``OpOverload.is_view``). They are dispatched like any
  operator but launch no kernel on a GPU. The rest of ``ops`` mostly launch one; a few do not
  either (``empty``, ``_unsafe_view``), so ``views`` undercounts the operators without a launch.

A meta tensor has no values, so a device-to-host transfer would fail; the probe answers it with
zeros of the right shape (or 0 for a scalar) and counts it, which lets a pass run to its end.
The values of a probed pass are therefore meaningless; only its counts and its time are.
``inside_s`` is the time spent inside dispatched operators (the meta kernels, many of them
Python reference implementations far slower than a GPU launch, and the probe itself); the
wall time minus ``inside_s`` is the host work of the caller: Python, numpy, the autograd
engine's bookkeeping. On a
real GPU, ``torch.cuda.set_sync_debug_mode`` finds syncs the probe cannot see: those inside
library calls that check their results on the host (bench/device.sh).
"""

from __future__ import annotations

import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_COPIES = {_aten._to_copy.default, _aten.copy_.default, _aten._copy_from.default,
           _aten._copy_from_and_resize.default}


def _devices(args, kwargs):
    devs = []
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            devs.append(a.device.type)
    return devs


class HostProbe(TorchDispatchMode):
    """Counts dispatched operators, device-to-host and host-to-device transfers (module doc).

    ``device``: the device type treated as the accelerator (``meta`` by default; ``cuda`` counts
    real transfers on a GPU without faking them).
    """

    def __init__(self, device: str = "meta"):
        super().__init__()
        self.device = device
        self.ops = 0
        self.d2h = 0
        self.h2d = 0
        self.views = 0
        self.d2h_sites: list = []
        self.inside_s = 0.0  # seconds spent inside the dispatched operators (and the probe)

    def reset(self) -> None:
        self.ops = self.d2h = self.h2d = self.views = 0
        self.d2h_sites = []
        self.inside_s = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        try:
            return self._dispatch(func, args, kwargs or {})
        finally:
            self.inside_s += time.perf_counter() - t0

    def _dispatch(self, func, args, kwargs):
        self.ops += 1
        if func.is_view:
            self.views += 1
        if func is _aten._local_scalar_dense.default and args[0].device.type == self.device:
            self._sync(func)
            if args[0].device.type == "meta":
                return False if args[0].dtype == torch.bool else 0
            return func(*args, **kwargs)
        if func in _COPIES:
            src = args[0] if func is not _aten.copy_.default else args[1]
            if func is _aten._to_copy.default:
                dst = kwargs.get("device", None)
                dst = src.device.type if dst is None else torch.device(dst).type
            elif func is _aten.copy_.default:
                dst = args[0].device.type
            else:
                dst = args[1].device.type
            if src.device.type == self.device and dst == "cpu":
                self._sync(func)
                if src.device.type == "meta":
                    dtype = kwargs.get("dtype") or src.dtype
                    if func is _aten.copy_.default:
                        return args[0].zero_()
                    return torch.zeros(src.shape, dtype=dtype, device="cpu")
            elif src.device.type == "cpu" and dst == self.device:
                self.h2d += 1
        return func(*args, **kwargs)

    def _sync(self, func) -> None:
        self.d2h += 1
        if len(self.d2h_sites) < 64:
            import traceback

            frames = [f for f in traceback.extract_stack()
                      if "torch/" not in f.filename and f.filename != __file__]
            f = frames[-1] if frames else None
            self.d2h_sites.append(f"{func}: {f.filename}:{f.lineno}" if f else str(func))
