"""Bundled ground truth (NAS-Bench-201) and real minibatch sources.

Everything reads the compact copies in ``zcfast/data/_bundled`` (see its README for sources and
licences); nothing needs the network or the team's shared folder.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).resolve().parent / "_bundled"

# canonical dataset name -> (aliases, number of classes, input side)
_DATASETS = {
    "cifar10": (("cifar10", "cifar-10", "c10"), 10, 32),
    "cifar100": (("cifar100", "cifar-100", "c100"), 100, 32),
    "ImageNet16-120": (("imagenet16-120", "imagenet16_120", "imagenet16", "in16", "imagenet"), 120, 16),
}
_GT_COLUMN = {"cifar10": 0, "cifar100": 1, "ImageNet16-120": 2}

# Per-channel normalisation (docs/data.md). The zero-cost paper's loader
# (SamsungLabs/zero-cost-nas, foresight/dataset.py, commit ca61347) uses the CIFAR-10 values for
# every dataset whose name contains "cifar", CIFAR-100 included: that is the "paper" choice.
# "dataset" uses each dataset's own statistics (differs only for CIFAR-100).
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_IN16_MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
_IN16_STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))


# datasets that are not images (no classes or input side here): canonical name -> aliases
_TEXT_DATASETS = {"wikitext2": ("wikitext2", "wikitext-2", "wt2", "wikitext_2")}  # NAS-Bench-NLP


def dataset_name(name: str) -> str:
    """Canonical dataset name (``cifar10``, ``cifar100``, ``ImageNet16-120``, ``wikitext2``) of
    an alias."""
    if isinstance(name, str):
        low = name.lower()
        for canon, (aliases, _, _) in _DATASETS.items():
            if low == canon.lower() or low in aliases:
                return canon
        for canon, aliases in _TEXT_DATASETS.items():
            if low in aliases:
                return canon
    raise ValueError(
        f"unknown dataset {name!r}: expected one of cifar10, cifar100, ImageNet16-120, wikitext2"
    )


def num_classes(dataset: str) -> int:
    return _DATASETS[dataset_name(dataset)][1]


def input_size(dataset: str) -> int:
    return _DATASETS[dataset_name(dataset)][2]


NORMALIZATIONS = ("paper", "dataset")


def normalization_stats(dataset: str, normalization: str = "paper") -> tuple:
    """(mean, std) per RGB channel used for ``dataset`` under ``normalization``
    ('paper': the zero-cost paper's loader, CIFAR-10's values for both CIFARs; 'dataset': the
    dataset's own values)."""
    ds = dataset_name(dataset)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}: expected one of "
                         f"{', '.join(NORMALIZATIONS)}")
    if ds == "ImageNet16-120":
        return _IN16_MEAN, _IN16_STD
    if ds == "cifar100" and normalization == "dataset":
        return _CIFAR100_MEAN, _CIFAR100_STD
    return _CIFAR10_MEAN, _CIFAR10_STD


def _norm_words(ds: str, normalization: str) -> str:
    if ds != "cifar100":
        return ""
    return (" normalised with CIFAR-10's mean and std (the paper's loader)"
            if normalization == "paper" else " normalised with CIFAR-100's own mean and std")


@functools.cache
def _gt_npz() -> dict:
    with np.load(BUNDLED / "nb201_groundtruth.npz") as d:
        return {k: d[k] for k in d.files}


def nb201_ops_table() -> np.ndarray:
    """(15625, 6) uint8: op ids of NB201 index i (row i), edges in arch-string order."""
    return _gt_npz()["ops"]


def nb201_unique_class() -> np.ndarray:
    """(15625,) int32: NATS-Bench's isomorphism class of each index (6,466 classes)."""
    return _gt_npz()["unique_class"]


@functools.cache
def groundtruth(dataset: str):
    """NB201 ground truth of one dataset as a pandas DataFrame indexed by NB201 index.

    Columns: ``arch`` (string), ``test_acc`` (200 epochs, %, mean over seeds), ``val_acc``
    (200 epochs, %, one seed; the selection signal of simulated searches), ``test_acc_12ep``
    and ``val_acc_12ep`` (the 12-epoch schedule: the reduced-training baseline).
    """
    import pandas as pd

    from zcfast.spaces import nb201

    ds = dataset_name(dataset)
    c = _GT_COLUMN[ds]
    g = _gt_npz()
    df = pd.DataFrame(
        {
            "arch": nb201.all_arch_strings(),
            "test_acc": g["test200"][:, c],
            "val_acc": g["val200"][:, c],
            "test_acc_12ep": g["test12"][:, c],
            "val_acc_12ep": g["val12"][:, c],
        }
    )
    df.index.name = "index"
    return df


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------
@dataclass
class ImageSource:
    """A pool of real images from which seeded, augmented minibatches are drawn."""

    name: str
    description: str
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64, or None: labels drawn uniformly per batch
    num_classes: int
    mean: tuple
    std: tuple
    pad: int
    extra: dict = field(default_factory=dict)
    normalization: str = "paper"  # see NORMALIZATIONS

    def minibatch(self, batch_size: int = 64, seed: int = 0, augment: bool = True):
        """(x, y): x (B, 3, H, W) float32 normalised, y (B,) int64. Deterministic in ``seed``.

        Images are drawn without replacement (a shuffled-loader batch); augmentation is the
        training one (random crop with zero padding ``pad``, horizontal flip), as in the paper.
        """
        import torch

        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = len(self.images)
        if batch_size > n:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {n} distinct images of {self.name}; "
                "use a smaller batch or --data-root with a full download"
            )
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x2C0F]))
        idx = rng.permutation(n)[:batch_size]
        img = self.images[idx]
        h, w = img.shape[1:3]
        if augment and self.pad > 0:
            p = self.pad
            padded = np.zeros((batch_size, h + 2 * p, w + 2 * p, 3), dtype=np.uint8)
            padded[:, p : p + h, p : p + w] = img
            oy = rng.integers(0, 2 * p + 1, size=batch_size)
            ox = rng.integers(0, 2 * p + 1, size=batch_size)
            flip = rng.random(batch_size) < 0.5
            out = np.empty_like(img)
            for b in range(batch_size):
                crop = padded[b, oy[b] : oy[b] + h, ox[b] : ox[b] + w]
                out[b] = crop[:, ::-1] if flip[b] else crop
            img = out
        if self.labels is None:
            y = rng.integers(0, self.num_classes, size=batch_size)
        else:
            y = self.labels[idx]
        x = img.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64))


def _load_npz(name: str) -> dict:
    with np.load(BUNDLED / name, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def load_cifar_pickles(root: str | os.PathLike, dataset: str, split: str = "train"):
    """Read a standard CIFAR download (python pickle batches) under ``root``.

    CIFAR-10: ``cifar-10-batches-py/data_batch_1..5`` (``split="test"``: ``test_batch``; keys
    ``data``, ``labels``); CIFAR-100: ``cifar-100-python/train`` (``test``; keys ``data``,
    ``fine_labels``). ``root`` may also be the batches folder itself. Returns x (N, 32, 32, 3)
    uint8 and y (N,) int64.
    """
    ds = dataset_name(dataset)
    if split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR split {split!r}: expected 'train' or 'test'")
    root = Path(root)
    if ds == "cifar10":
        folder = root if list(root.glob("data_batch_*")) else root / "cifar-10-batches-py"
        files = sorted(folder.glob("data_batch_*")) if split == "train" else \
            [f for f in [folder / "test_batch"] if f.is_file()]
        key = b"labels"
        expected = "cifar-10-batches-py/" + ("data_batch_*" if split == "train" else "test_batch")
    elif ds == "cifar100":
        folder = root if (root / "train").is_file() else root / "cifar-100-python"
        files = [folder / split] if (folder / split).is_file() else []
        key = b"fine_labels"
        expected = f"cifar-100-python/{split}"
    else:
        raise ValueError(f"--data-root reads CIFAR pickle batches; {ds} has no such loader")
    if not files:
        raise FileNotFoundError(
            f"no CIFAR {ds} {split} batches found under {root} (expected {expected})"
        )
    xs, ys = [], []
    ncls = num_classes(ds)
    for f in files:
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
        except Exception as e:  # noqa: BLE001 - garbage unpickles into many error types
            raise ValueError(f"{f} is not a readable CIFAR pickle batch ({type(e).__name__}: {e})") from None
        if not isinstance(d, dict) or b"data" not in d or key not in d:
            raise ValueError(f"{f} is not a CIFAR pickle batch (missing b'data' or {key!r})")
        x = np.asarray(d[b"data"], dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != 3072:
            raise ValueError(f"{f}: expected data of shape (N, 3072), got {x.shape}")
        y = np.asarray(d[key], dtype=np.int64)
        if y.shape != (len(x),) or (y.size and not (0 <= y.min() and y.max() < ncls)):
            raise ValueError(f"{f}: expected {len(x)} labels in [0, {ncls}), got {key!r} of shape "
                             f"{y.shape}" + (f" in [{y.min()}, {y.max()}]" if y.size else ""))
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


IMAGE_CHOICES = ("default", "cifar10-subset", "cifar100-real25", "imagenet16-standin")
# the bundled image source each dataset uses by default (see image_source)
DEFAULT_IMAGES = {"cifar10": "cifar10-subset", "cifar100": "cifar10-subset",
                  "ImageNet16-120": "imagenet16-standin"}


# the text each text dataset's networks are scored on (NAS-Bench-NLP: zcfast/data/nbnlp.py)
TEXT_SOURCES = {"wikitext2": "wikitext2-valid"}


def download_name(dataset: str, x: np.ndarray, y: np.ndarray) -> str:
    """The image-source name of a CIFAR download read by :func:`load_cifar_pickles`:
    ``<dataset>-download-<digest>``, the digest (8 hex digits, BLAKE2b) of its images and labels
    in file order. Two folders holding the same download share the name (and so score files and
    score-cache entries made from either match); a partial or altered download does not."""
    return f"{dataset_name(dataset)}-download-{images_digest(x, y)}"


def images_digest(x: np.ndarray, y: np.ndarray) -> str:
    """8 hex digits (BLAKE2b) of uint8 images and int64 labels, in order: the identity of a
    set of images read from files (a download's training set, :func:`download_name`, or its
    test set, which reduced training validates on)."""
    h = hashlib.blake2b(digest_size=4)
    h.update(np.ascontiguousarray(x, dtype=np.uint8).data)
    h.update(np.ascontiguousarray(y, dtype=np.int64).data)
    return h.hexdigest()


def is_download_name(dataset: str, images) -> bool:
    """Whether ``images`` is a name :func:`download_name` gives for ``dataset``."""
    return isinstance(images, str) and re.fullmatch(
        re.escape(dataset_name(dataset)) + r"-download-[0-9a-f]{8}", images) is not None


def resolve_images(dataset: str, images: str = "default") -> str:
    """The name of the image source ``images`` means for ``dataset`` ('default' resolved; a
    text dataset has one source, its bundled text)."""
    ds = dataset_name(dataset)
    if ds in TEXT_SOURCES:
        if images not in ("default", TEXT_SOURCES[ds]):
            raise ValueError(f"{ds} is scored on its bundled text ({TEXT_SOURCES[ds]}); "
                             f"--images {images!r} is for the image datasets")
        return TEXT_SOURCES[ds]
    if images not in IMAGE_CHOICES:
        raise ValueError(f"unknown image source {images!r}: expected one of {IMAGE_CHOICES}")
    return DEFAULT_IMAGES[dataset_name(dataset)] if images == "default" else images


def image_source(dataset: str, data_root: str | None = None, images: str = "default",
                 normalization: str = "paper") -> ImageSource:
    """The image pool used to score networks of ``dataset``.

    Defaults (the most faithful data available offline, see ``_bundled/README.md`` and
    docs/data.md): CIFAR-10 -> 1,000 real CIFAR-10 training images; CIFAR-100 -> the same images
    with labels drawn uniformly over 100 classes; ImageNet16-120 -> 120 real ImageNet photos (one
    per class) box-downsampled to 16x16. ``data_root`` reads a standard CIFAR download instead
    (``images`` then 'default' or the download's name, :func:`download_name`, checked).
    ``normalization``: 'paper' (default; CIFAR-10's mean and std for both CIFARs, as the paper's
    loader) or 'dataset' (CIFAR-100's own for CIFAR-100).
    """
    ds = dataset_name(dataset)
    ncls = num_classes(ds)
    mean, std = normalization_stats(ds, normalization)
    pad = 2 if ds == "ImageNet16-120" else 4
    norm = _norm_words(ds, normalization)

    def source(name, description, x, y):
        return ImageSource(name, description + norm, x, y, ncls, mean, std, pad,
                           normalization=normalization)

    if data_root is not None:
        x, y = load_cifar_pickles(data_root, ds)
        name = download_name(ds, x, y)
        if images not in ("default", name):  # a name is a check: the download it must be
            if is_download_name(ds, images):
                raise ValueError(f"the {ds} download under {data_root} is {name}, not {images}: "
                                 "its files changed, or this machine reads another download")
            raise ValueError(f"images {images!r} and data_root {str(data_root)!r}: the download "
                             "is the image source; give one of them")
        return source(name, f"{len(x)} {ds} training images read from {data_root}", x, y)
    if images not in IMAGE_CHOICES:
        raise ValueError(f"unknown image source {images!r}: expected one of {IMAGE_CHOICES}")
    images = resolve_images(ds, images)
    if images == "imagenet16-standin":
        if ds != "ImageNet16-120":
            raise ValueError(f"imagenet16-standin images are 16x16 ImageNet16-120 images, not {ds}")
        d = _load_npz("imagenet16_120_standin.npz")
        return source(
            "imagenet16-standin",
            "bundled ImageNet16-120 stand-in: 120 real ImageNet photos (one per class, "
            "box-downsampled to 16x16), not NB201's exact pixels",
            d["x"], d["y"],
        )
    if ds == "ImageNet16-120":
        raise ValueError(f"ImageNet16-120 networks take 16x16 inputs; image source {images!r} is 32x32")
    if images == "cifar100-real25":
        d = _load_npz("cifar100_real25.npz")
        labels = d["y"] if ds == "cifar100" else None
        return source(
            "cifar100-real25",
            "bundled 25 real CIFAR-100 images (train 0-4, test 0-19)"
            + ("" if ds == "cifar100" else f", labels drawn uniformly over {ncls} classes"),
            d["x"], labels,
        )
    d = _load_npz("cifar10_train1000.npz")
    if ds == "cifar10":
        return source(
            "cifar10-subset",
            "bundled 1,000 real CIFAR-10 training images (100 per class, JPEG re-encodings)",
            d["x"], d["y"],
        )
    return source(
        "cifar10-subset",
        "bundled 1,000 real CIFAR-10 training images with labels drawn uniformly over 100 classes "
        "(real CIFAR-100 training pixels are not bundled),",
        d["x"], None,
    )


def minibatch(dataset: str, batch_size: int = 64, seed: int = 0, data_root: str | None = None,
              images: str = "default", normalization: str = "paper"):
    """(x, y, source): one seeded, augmented training minibatch for ``dataset``."""
    src = image_source(dataset, data_root=data_root, images=images, normalization=normalization)
    x, y = src.minibatch(batch_size, seed)
    return x, y, src
