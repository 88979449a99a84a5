"""Index arrays of a packed model sent to its device in one copy (docs/performance.md).

A packed model needs many small integer tables on its device (gather and target indices, the
segment table of the weight initialiser, candidate ids of ReLU and fisher groups). Sent one by
one, each is a host-to-device copy, and on a GPU PyTorch synchronises the stream around every
copy from pageable host memory. :class:`DeviceTables` packs all the tables registered before
:meth:`DeviceTables.upload` into one byte buffer, copies it once, and hands out typed views of
it; a table asked for later is copied on its own (and counted by the host probe like any
other copy).
"""

from __future__ import annotations

import numpy as np
import torch

_TORCH_DTYPE = {np.dtype(np.int64): torch.int64, np.dtype(np.int32): torch.int32,
                np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class DeviceTables:
    """Host numpy tables -> device tensors, looked up by the numpy array they came from."""

    def __init__(self, device, *, pack: bool | None = None):
        """``pack``: copy through one byte buffer (default: on every device but the CPU, where
        the tables are used in place; tests force it on the CPU to check the packing)."""
        self.device = torch.device(device)
        self.pack = self.device.type != "cpu" if pack is None else bool(pack)
        self._host: dict = {}  # id(array) -> array (held, so that the id stays unique)
        self._dev: dict = {}  # id(array) -> device tensor

    def add(self, arr: np.ndarray) -> np.ndarray:
        """Register ``arr`` for the next upload; returns it."""
        if np.dtype(arr.dtype) not in _TORCH_DTYPE:
            raise ValueError(f"DeviceTables: unsupported dtype {arr.dtype}")
        if id(arr) not in self._dev:
            self._host[id(arr)] = arr
        return arr

    def upload(self) -> None:
        """One host-to-device copy of every registered table not yet on the device."""
        todo = [a for k, a in self._host.items() if k not in self._dev]
        if not todo:
            return
        if not self.pack:  # the CPU: no copy at all: views of the host arrays
            for a in todo:
                self._dev[id(a)] = torch.from_numpy(np.ascontiguousarray(a))
            return
        # one block per dtype, 8-byte aligned, its tables back to back: on the device each
        # block is one typed view and one split (a few operators per upload instead of a
        # slice, a view and a detach per table; a chunk of the NB201 engine has about 50)
        by_dtype: dict = {}
        for a in todo:
            by_dtype.setdefault(np.dtype(a.dtype), []).append(a)
        blocks, pos = [], 0
        for dt, arrs in by_dtype.items():
            n = sum(a.nbytes for a in arrs)
            blocks.append((dt, arrs, pos, n))
            pos += (n + 7) // 8 * 8
        buf = np.zeros(pos, dtype=np.uint8)
        for _, arrs, o, _ in blocks:
            for a in arrs:
                buf[o : o + a.nbytes] = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
                o += a.nbytes
        dbuf = torch.from_numpy(buf).to(self.device)
        for dt, arrs, o, n in blocks:
            parts = dbuf[o : o + n].view(_TORCH_DTYPE[dt]).split([a.size for a in arrs])
            for a, t in zip(arrs, parts):
                self._dev[id(a)] = t if a.ndim == 1 else t.view(a.shape)

    def get(self, arr: np.ndarray) -> torch.Tensor:
        """The device tensor of ``arr`` (copied now, on its own, if it was not uploaded)."""
        t = self._dev.get(id(arr))
        if t is None:
            self._host[id(arr)] = arr
            t = torch.as_tensor(np.ascontiguousarray(arr), device=self.device)
            self._dev[id(arr)] = t
        return t
