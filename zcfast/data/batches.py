"""The seeded minibatches of a run, loaded and augmented once per process (docs/performance.md,
"The minibatch of a run").

``zcfast.score`` and the runners of the executors (every ``score_to_file`` chunk, every ask of a
search's live scorer, every ``search`` run of a process) score on the minibatch that
``Space.minibatch(dataset, batch_size, seed, images=, data_root=, normalization=)`` draws. Drawing
it reads the image pool from disk and augments the drawn images; :func:`minibatch` does that once
per distinct setting and hands back the same :class:`~zcfast.spaces.base.MiniBatch` afterwards,
and :func:`on_device` its tensors on a device (and dtype) once, so that repeated calls see the
very same tensors. Callers must not write into them.

The key holds every setting that changes the pixels or labels: the space, the canonical dataset,
the batch size, the seed, the image source, the normalisation, any space option (NB-NLP's
``bptt``), and for ``data_root`` its resolved path with the name, size and modification time of
every file in it and in the CIFAR batch folders under it (a download replaced in place is read
again). At most :data:`MAX_BATCHES` minibatches are kept (least recently used dropped first).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

#: minibatches kept (with their sources' image pools, one per source: ~3 MB bundled, ~150 MB
#: for a CIFAR download); 0 disables the cache
MAX_BATCHES = 8

_lock = threading.Lock()
_batches: OrderedDict = OrderedDict()  # key -> MiniBatch
_devices: dict = {}  # (key, device, dtype) -> (x, y)
stats = {"loads": 0, "hits": 0}  # loads: minibatches drawn by the space (tests count them)


def _root_signature(data_root) -> tuple | None:
    """What identifies the files under ``data_root``: its resolved path and (name, size,
    mtime) of the files in it and in its CIFAR batch folders."""
    if data_root is None:
        return None
    root = Path(data_root).resolve()
    files = []
    for folder in (root, root / "cifar-10-batches-py", root / "cifar-100-python"):
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if e.is_file():
                        st = e.stat()
                        files.append((str(Path(folder.name) / e.name), st.st_size, st.st_mtime_ns))
        except OSError:
            continue
    return (str(root), tuple(sorted(files)))


def batch_key(space, dataset: str, batch_size: int, seed: int, *, images: str = "default",
              data_root=None, normalization: str = "paper", **options) -> tuple:
    """The cache key of a minibatch (module doc): every setting that changes its pixels."""
    from zcfast.data import dataset_name

    return (getattr(space, "name", str(space)), dataset_name(dataset), int(batch_size), int(seed),
            str(images), _root_signature(data_root), str(normalization),
            tuple(sorted((k, repr(v)) for k, v in options.items())))


def minibatch(space, dataset: str, batch_size: int, seed: int, *, images: str = "default",
              data_root=None, normalization: str = "paper", **options):
    """``space.minibatch(...)`` (a MiniBatch), drawn once per key and then returned as is."""
    key = batch_key(space, dataset, batch_size, seed, images=images, data_root=data_root,
                    normalization=normalization, **options)
    with _lock:
        mb = _batches.get(key)
        if mb is not None:
            _batches.move_to_end(key)
            stats["hits"] += 1
            return mb
    mb = space.minibatch(dataset, batch_size, seed, images=images, data_root=data_root,
                         normalization=normalization, **options)
    mb.cache_key = key
    with _lock:
        stats["loads"] += 1
        same_pool = (key[0], key[1], *key[4:])  # all but the batch size and the seed
        for k, other in _batches.items():
            if "more" not in k and (k[0], k[1], *k[4:]) == same_pool:
                mb.source = other.source  # one image pool per source, whatever the seeds
                break
        if MAX_BATCHES > 0:
            mb = _batches.setdefault(key, mb)
            _batches.move_to_end(key)
            main = [k for k in _batches if "more" not in k]
            for old in main[: max(0, len(main) - MAX_BATCHES)]:  # least recently used first
                for k in [k for k in _batches if k[: len(old)] == old]:
                    del _batches[k]
                for k in [k for k in _devices if k[0][: len(old)] == old]:
                    del _devices[k]
    return mb


def more(mb, batch_size: int, seed: int, device=None, dtype=None):
    """(x, y) of another minibatch of ``mb``'s source (ZiCo's extra batches), on ``device`` (x in
    ``dtype``) when given; drawn once per (``mb``, batch size, seed) while ``mb`` is cached."""
    key = getattr(mb, "cache_key", None)
    sub = None if key is None else (*key, "more", int(batch_size), int(seed))
    with _lock:
        got = _batches.get(sub) if sub is not None else None
        if got is not None:
            stats["hits"] += 1
    if got is None:
        got = mb.more(batch_size, seed)
        with _lock:
            stats["loads"] += 1
            if sub is not None and key in _batches:
                got = _batches.setdefault(sub, got)
    return got if device is None else _to(got, sub, device, dtype)


def on_device(mb, device, dtype=None):
    """(x, y) of a MiniBatch on ``device``, x in ``dtype`` when given (labels and integer
    inputs keep theirs), made once per (minibatch, device, dtype) while it is cached."""
    return _to((mb.x, mb.y), getattr(mb, "cache_key", None), device, dtype)


def _to(pair, key, device, dtype):
    import torch

    x, y = pair
    dev = torch.device(device)
    want = dtype if (dtype is not None and x.is_floating_point()) else x.dtype
    dk = None if key is None else (key, str(dev), str(want))
    with _lock:
        got = _devices.get(dk) if dk is not None else None
    if got is None:
        got = (x.to(dev, want), y.to(dev))
        with _lock:
            if dk is not None and key in _batches:
                got = _devices.setdefault(dk, got)
    return got


def clear() -> None:
    """Forget every cached minibatch (and reset :data:`stats`)."""
    with _lock:
        _batches.clear()
        _devices.clear()
        stats.update(loads=0, hits=0)
