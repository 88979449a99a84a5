"""Reduced training (EcoNAS), the conventional proxy the zero-cost paper measured against.

A cell's score is the accuracy on held-out real images of its network after a short, cheap
training run: fewer epochs, fewer channels, lower resolution, fewer training images
(docs/reduced_training.md has the definition, the defaults and their sources).

>>> from zcfast import reduced_training as rt
>>> df = rt.score([6111, 0, 17], "econas", dataset="cifar10")            # packed training
>>> df = rt.score([6111], "econas:epochs=5+channels=8+resolution=16", engine="loop")

``zcfast score --proxies paper,econas`` scores both kinds into one file; the column of a
reduced-training proxy is named exactly as written (``econas``, ``econas:epochs=5+channels=8``),
and the file's meta records the reduction factors and the images each one used.

Every network starts from its zcfast initialisation: the counter-based weights of (seed, cell,
slot) that the zero-cost proxies see (docs/nb201.md), drawn at the reduced width. Training is
the released EcoNAS pipeline's: SGD (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4 on every
parameter), a cosine learning rate stepped once per epoch, cross-entropy, the paper's
augmentation and normalisation. Two engines compute the same thing: ``loop`` trains one
``nn.Module`` at a time with ``torch.optim.SGD``; ``packed`` trains K candidates at once through
the packed engine (:mod:`zcfast.batched.train`), equal to the loop step for step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

PREFIX = "econas"
# the options of a spec, in the order they are written back (canonical form)
OPTIONS = ("epochs", "schedule", "channels", "resolution", "images", "batch")


@dataclass(frozen=True)
class ReducedConfig:
    """Reduction factors and training settings of one reduced-training proxy.

    Defaults: the EcoNAS configuration the zero-cost paper plotted as "econas" (init channels 4,
    8x8 images, the accuracy after 20 epochs of a 40-epoch cosine schedule; training set in
    full), with the batch of NAS-Bench-201's own training (256). Sources in
    docs/reduced_training.md.
    """

    epochs: int = 20  # epochs trained; the score is the accuracy after them
    schedule: int | None = None  # length of the cosine schedule in epochs (None: 2 x epochs)
    channels: int = 4  # channels of the first stage (NB201: 16); stages C, 2C, 4C
    resolution: int = 8  # side of the (square) training and validation images
    images: int | None = None  # training images used (None: every image of the pool)
    batch: int = 256  # training (and evaluation) batch size
    # not spec options: the released pipeline's optimiser
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True

    def __post_init__(self):
        for k in ("epochs", "channels", "resolution", "batch"):
            _positive(k, getattr(self, k))
        for k in ("schedule", "images"):
            if getattr(self, k) is not None:
                _positive(k, getattr(self, k))
        if self.resolution % 4:
            raise ValueError(f"resolution={self.resolution}: must be a multiple of 4 (the "
                             "network halves it twice)")
        if self.schedule is not None and self.schedule < self.epochs:
            raise ValueError(f"schedule={self.schedule} is shorter than epochs={self.epochs}: "
                             "the cosine schedule must cover every epoch trained")

    @property
    def schedule_epochs(self) -> int:
        return 2 * self.epochs if self.schedule is None else self.schedule

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based): cosine annealing from ``lr`` to 0 over
        ``schedule_epochs`` epochs, stepped once per epoch (PyTorch's CosineAnnealingLR with
        eta_min 0, in closed form)."""
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / self.schedule_epochs))

    def options(self) -> dict:
        """The spec options, with the defaults resolved (``images`` stays None: the pool)."""
        d = {k: getattr(self, k) for k in OPTIONS}
        d["schedule"] = self.schedule_epochs
        return d


def _positive(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}={v!r}: expected a positive integer")


# ---- specs -------------------------------------------------------------------------------
def is_spec(token: str) -> bool:
    """Whether a ``--proxies`` token names a reduced-training proxy (``econas...``)."""
    return isinstance(token, str) and token.strip().lower().startswith(PREFIX)


def parse_spec(spec) -> ReducedConfig:
    """``econas`` or ``econas:key=value+key=value`` (keys: epochs, schedule, channels,
    resolution, images, batch) -> ReducedConfig; a ReducedConfig passes through."""
    if isinstance(spec, ReducedConfig):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"reduced-training spec must be a string, got {spec!r}")
    s = spec.strip()
    if s.lower() == PREFIX:
        return ReducedConfig()
    if not s.lower().startswith(PREFIX + ":"):
        raise ValueError(f"bad reduced-training spec {spec!r}: expected '{PREFIX}' or "
                         f"'{PREFIX}:key=value+key=value' with keys {', '.join(OPTIONS)}")
    opts = {}
    for item in s[len(PREFIX) + 1 :].split("+"):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in OPTIONS:
            raise ValueError(f"bad option {item!r} in {spec!r}: expected key=value with keys "
                             f"{', '.join(OPTIONS)}")
        if key in opts:
            raise ValueError(f"option {key!r} given twice in {spec!r}")
        val = val.strip()
        if not val.isdigit():
            raise ValueError(f"option {key}={val!r} in {spec!r}: expected a positive integer")
        opts[key] = int(val)
    return ReducedConfig(**opts)


def split_proxies(names: Iterable[str]) -> tuple:
    """(zero-cost names, reduced-training specs) of a proxy list, each in input order."""
    names = list(names)
    return [n for n in names if not is_spec(n)], [n for n in names if is_spec(n)]


# ---- data ----------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Real labelled images: a training pool and a held-out validation set (never trained on)."""

    dataset: str
    train_x: np.ndarray  # (N, 32, 32, 3) uint8
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    train_description: str
    val_description: str
    mean: tuple
    std: tuple
    pad: int = 4
    extra: dict = field(default_factory=dict)


def training_data(dataset: str = "cifar10", data_root=None, normalization: str = "paper") -> TrainingData:
    """The images reduced training uses. CIFAR-10 by default: the bundled 1,000 real training
    images and, held out, the bundled 1,000 real test images (zcfast/data/_bundled/README.md).
    ``data_root``: a standard CIFAR download, its training set and its test set (the released
    pipeline validated on the test set). CIFAR-100 needs ``data_root``; ImageNet16-120 is not
    supported (no real labelled set is bundled)."""
    from zcfast.data import (
        _load_npz,
        dataset_name,
        images_digest,
        load_cifar_pickles,
        normalization_stats,
    )

    ds = dataset_name(dataset)
    if ds == "ImageNet16-120":
        raise ValueError("reduced training needs a labelled training set and a held-out set; "
                         "zcfast has none for ImageNet16-120 (only a 120-image stand-in)")
    mean, std = normalization_stats(ds, normalization)
    if data_root is not None:
        tx, ty = load_cifar_pickles(data_root, ds, "train")
        vx, vy = load_cifar_pickles(data_root, ds, "test")
        return TrainingData(ds, tx, ty, vx, vy,
                            f"{len(tx)} {ds} training images read from {data_root}",
                            # the digest makes a changed test set a changed setting (--resume
                            # refuses it); the training set's is in the image-source name
                            f"{len(vx)} {ds} test images read from {data_root} (digest "
                            f"{images_digest(vx, vy)})", mean, std)
    if ds != "cifar10":
        raise ValueError(f"reduced training on {ds} needs real labelled {ds} images: pass "
                         "data_root (--data-root) with a standard download")
    tr = _load_npz("cifar10_train1000.npz")
    te = _load_npz("cifar10_test1000.npz")
    return TrainingData(
        ds, tr["x"], tr["y"], te["x"], te["y"],
        "bundled 1,000 real CIFAR-10 training images (100 per class, JPEG re-encodings)",
        "bundled 1,000 real CIFAR-10 test images (100 per class, JPEG re-encodings)", mean, std)


def _resize(x: torch.Tensor, r: int) -> torch.Tensor:
    """(N, 3, H, W) float -> (N, 3, r, r): antialiased bilinear (PIL's downscaling filter,
    which torchvision's Resize applies to the released pipeline's PIL images)."""
    if x.shape[-1] == r and x.shape[-2] == r:
        return x
    return F.interpolate(x, size=(r, r), mode="bilinear", antialias=True, align_corners=False)


class Batches:
    """The batches of one training run, fixed by (data, config, data seed): the training subset,
    every epoch's order and augmentation, and the held-out set at the training resolution."""

    def __init__(self, data: TrainingData, cfg: ReducedConfig, seed: int = 0):
        self.data, self.cfg, self.seed = data, cfg, int(seed)
        n_pool = len(data.train_x)
        n = n_pool if cfg.images is None else cfg.images
        if n > n_pool:
            raise ValueError(f"images={n}: the training pool has only {n_pool} images "
                             "(use a smaller number or --data-root with a full download)")
        if n == n_pool:
            self.subset = np.arange(n_pool)
        else:  # a seeded random subset (EcoNAS's sample ratio)
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5AB5E7]))
            self.subset = np.sort(rng.permutation(n_pool)[:n])
        self.n_train = n
        self._mean = torch.tensor(data.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(data.std, dtype=torch.float32).view(1, 3, 1, 1)
        vx = self._to_tensor(data.val_x)
        self.val = [(vx[a : a + cfg.batch], torch.from_numpy(data.val_y[a : a + cfg.batch]).long())
                    for a in range(0, len(vx), cfg.batch)]
        self.n_val = len(vx)

    def _to_tensor(self, img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2))).float() / 255.0
        return (_resize(x, self.cfg.resolution) - self._mean) / self._std

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.cfg.batch)

    def augmentation(self, e: int) -> tuple:
        """Epoch ``e``'s (order, crop offsets y, x, flips): pool indices in training order and
        each one's augmentation, from the generator seeded by (data seed, e)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xEC0, int(e)]))
        order = self.subset[rng.permutation(self.n_train)]
        p = self.data.pad
        oy = rng.integers(0, 2 * p + 1, size=self.n_train)
        ox = rng.integers(0, 2 * p + 1, size=self.n_train)
        flip = rng.random(self.n_train) < 0.5
        return order, oy, ox, flip

    def epoch(self, e: int) -> Iterator:
        """The batches (x, y) of epoch ``e``: a seeded shuffle of the training subset, each
        image randomly cropped from its zero-padded copy and flipped with probability 1/2
        (docs/data.md's training augmentation), resized, normalised; the last batch may be
        short (PyTorch's DataLoader without drop_last)."""
        order, oy, ox, flip = self.augmentation(e)
        p = self.data.pad
        b = self.cfg.batch
        for a in range(0, self.n_train, b):
            sl = slice(a, a + b)
            img = self.data.train_x[order[sl]]
            h, w = img.shape[1:3]
            padded = np.pad(img, ((0, 0), (p, p), (p, p), (0, 0)))
            win = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
            crop = win[np.arange(len(img)), oy[sl], ox[sl]]  # (n, 3, h, w)
            crop = np.where(flip[sl].reshape(-1, 1, 1, 1), crop[..., ::-1], crop)
            x = torch.from_numpy(np.ascontiguousarray(crop)).float() / 255.0
            x = (_resize(x, self.cfg.resolution) - self._mean) / self._std
            yield x, torch.from_numpy(self.data.train_y[order[sl]]).long()

    def describe(self) -> dict:
        d = self.data
        return {
            "train_images": (d.train_description if self.n_train == len(d.train_x) else
                             f"{self.n_train} images drawn (seed {self.seed}) from the "
                             + d.train_description),
            "n_train_images": int(self.n_train),
            "val_images": d.val_description, "n_val_images": int(self.n_val),
            "data_seed": self.seed,
        }


# ---- training ---------------------------------------------------------------------------
class _PerModel:
    """The reference: one NB201 ``nn.Module`` trained with ``torch.optim.SGD``."""

    def __init__(self, index: int, ncls: int, cfg: ReducedConfig, *, seed: int, flavour: str,
                 device, dtype):
        from zcfast.spaces.nb201_model import build_model

        self.net = build_model(int(index), ncls, flavour=flavour, seed=seed, dtype=dtype,
                               device=device, init_channels=cfg.channels)
        self.device, self.dtype = torch.device(device), dtype
        self.opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)

    def set_lr(self, lr: float):
        for g in self.opt.param_groups:
            g["lr"] = float(lr)

    def step(self, x, y):
        self.net.train()
        loss = F.cross_entropy(self.net(x.to(self.device, self.dtype)), y.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return np.array([loss.item()])

    @torch.no_grad()
    def correct(self, x, y):
        self.net.eval()
        pred = self.net(x.to(self.device, self.dtype)).argmax(1)
        return np.array([int((pred == y.to(self.device)).sum())])


def run(trainer, batches: Batches, steps: int | None = None, evaluate: bool = True):
    """Train ``trainer`` (per-model or packed) on ``batches``: ``cfg.epochs`` epochs, or only
    the first ``steps`` steps; then its accuracy (%) on the held-out set, per candidate (None
    when not ``evaluate``). The one loop both engines run, so their data order and schedule
    are the same by construction."""
    cfg = batches.cfg
    done = 0
    for e in range(cfg.epochs):
        if steps is not None and done >= steps:
            break
        trainer.set_lr(cfg.lr_at(e))
        for x, y in batches.epoch(e):
            if steps is not None and done >= steps:
                break
            trainer.step(x, y)
            done += 1
    if not evaluate:
        return None
    right = None
    for x, y in batches.val:
        c = trainer.correct(x, y)
        right = c if right is None else right + c
    return 100.0 * right / batches.n_val


def train_loop(index: int, cfg, batches: Batches, *, num_classes: int = 10, seed: int = 0,
               flavour: str = "paper", device="cpu", dtype=torch.float32,
               steps: int | None = None, evaluate: bool = True):
    """Per-model reduced training of one cell: (accuracy % or None, trained nn.Module)."""
    cfg = parse_spec(cfg)
    t = _PerModel(index, num_classes, cfg, seed=seed, flavour=flavour, device=device, dtype=dtype)
    acc = run(t, batches, steps, evaluate)
    return (None if acc is None else float(acc[0])), t.net


def train_packed(indices, cfg, batches: Batches, *, num_classes: int = 10, seed: int = 0,
                 flavour: str = "paper", device="cpu", dtype=torch.float32,
                 steps: int | None = None, backend: str | None = None, evaluate: bool = True):
    """Packed reduced training of the cells ``indices`` in one program: (accuracies %, the
    :class:`~zcfast.batched.train.PackedTrainer`)."""
    from zcfast.batched.engine import codes_of
    from zcfast.batched.train import PackedTrainer

    cfg = parse_spec(cfg)
    t = PackedTrainer(codes_of(list(indices)), num_classes, flavour=flavour, seed=seed,
                      input_size=cfg.resolution, init_channels=cfg.channels, device=device,
                      dtype=dtype, backend=backend, lr=cfg.lr, momentum=cfg.momentum,
                      weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    return run(t, batches, steps, evaluate), t


# Candidates per packed training program, at most (bench/results/reduced_training.md measures
# the CPU); auto_chunk lowers it when the activations would not fit
MAX_CHUNK = {"cpu": 16, "cuda": 256}
# bytes of saved activations per candidate per (image x first-stage channel x pixel): the three
# stages cost C*R^2 (1 + 1/2 + 1/4); a cell keeps about 20 tensors of its width for the backward
_ACT_FACTOR = 4 * 20 * 5 * 1.75


def auto_chunk(cfg: ReducedConfig, device, n_cells: int) -> int:
    """Candidates per packed training program: the device's cap, lowered so that the saved
    activations (a rough model, :data:`_ACT_FACTOR`) take at most a quarter of the free memory."""
    from zcfast.batched import _available_bytes

    dev = torch.device(device)
    per = _ACT_FACTOR * cfg.batch * cfg.channels * cfg.resolution ** 2
    fit = int(0.25 * _available_bytes(dev) // per)
    return int(max(1, min(MAX_CHUNK.get(dev.type, 16), n_cells, fit)))


def iter_scores(indices, specs, *, dataset: str = "cifar10", data_root=None, seed: int = 0,
                data_seed: int | None = None, flavour: str = "paper", engine: str = "packed",
                device="cpu", chunk: int | None = None, normalization: str = "paper",
                data: TrainingData | None = None) -> Iterator:
    """Yield (indices of a chunk, {spec: accuracies}) for every spec, chunk after chunk of
    ``indices`` (the per-model engine uses chunks of one cell). ``seed`` seeds the weights,
    ``data_seed`` (default ``seed``) the training subset, order and augmentation."""
    from zcfast.data import num_classes

    specs = list(specs)
    cfgs = {s: parse_spec(s) for s in specs}
    if engine not in ("packed", "loop"):
        raise ValueError(f"unknown engine {engine!r}: expected 'packed' or 'loop'")
    dev = torch.device(device)
    data = training_data(dataset, data_root, normalization) if data is None else data
    ncls = num_classes(data.dataset)
    dseed = seed if data_seed is None else data_seed
    batches = {s: Batches(data, cfgs[s], dseed) for s in specs}
    indices = [int(i) for i in indices]
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or chunk < 1):
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    if engine == "loop":
        k = 1
    else:
        k = chunk or min(auto_chunk(c, dev, max(1, len(indices))) for c in cfgs.values())
    for a in range(0, len(indices), k):
        part = indices[a : a + k]
        res = {}
        for s in specs:
            if engine == "loop":
                res[s] = np.array([train_loop(part[0], cfgs[s], batches[s], num_classes=ncls,
                                              seed=seed, flavour=flavour, device=dev)[0]])
            else:
                res[s] = train_packed(part, cfgs[s], batches[s], num_classes=ncls, seed=seed,
                                      flavour=flavour, device=dev)[0]
        yield part, res


def describe(spec, data: TrainingData, data_seed: int = 0) -> dict:
    """What a spec's scores are: its reduction factors and training settings, and the images
    it trains and validates on (the record every score file keeps per column)."""
    cfg = parse_spec(spec)
    b = Batches(data, cfg, data_seed)
    d = {**cfg.options(), **{k: v for k, v in asdict(cfg).items() if k not in OPTIONS}}
    d["images"] = b.n_train
    d["steps"] = cfg.epochs * b.steps_per_epoch
    d["score"] = f"accuracy (%) on the held-out images after {cfg.epochs} epochs"
    d.update(b.describe())
    return d


def score(archs, config="econas", *, dataset: str = "cifar10", seed: int = 0,
          data_seed: int | None = None, engine: str = "packed", device=None,
          chunk: int | None = None, flavour: str = "paper", data_root=None,
          normalization: str = "paper", progress: bool = False):
    """Reduced-training scores of NB201 cells: a DataFrame indexed by NB201 index with ``arch``
    and one column per config (a spec string such as ``"econas:epochs=5"``, a ReducedConfig, or a
    list of them). ``df.attrs["reduced_training"]`` records, per column, the reduction factors
    and the images used; ``df.attrs["seconds"]`` the wall time of the whole call."""
    import pandas as pd

    from zcfast.scoring import device_name, resolve_device
    from zcfast.spaces import nb201

    configs = config if isinstance(config, (list, tuple)) else [config]
    names = [c if isinstance(c, str) else spec_of(c) for c in configs]
    if isinstance(archs, (str, int, np.integer)):
        archs = [archs]
    idx = nb201.resolve(list(archs))
    if len(idx) == 0:
        raise ValueError("empty arch list: nothing to score")
    dev = resolve_device(device)
    data = training_data(dataset, data_root, normalization)
    dseed = seed if data_seed is None else data_seed
    uniq, inverse = np.unique(idx, return_inverse=True)
    cols = {n: np.full(len(uniq), math.nan) for n in names}
    where = {int(i): n for n, i in enumerate(uniq)}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(uniq), unit="cell", desc="reduced training")
    t0 = time.perf_counter()
    for part, res in iter_scores(uniq, configs, seed=seed, data_seed=dseed, flavour=flavour,
                                 engine=engine, device=dev, chunk=chunk, data=data):
        pos = [where[i] for i in part]
        for n, c in zip(names, configs):
            cols[n][pos] = res[c]
        if bar:
            bar.update(len(part))
    if bar:
        bar.close()
    df = pd.DataFrame({"arch": [nb201.arch_at(int(i)) for i in idx],
                       **{n: cols[n][inverse] for n in names}}, index=pd.Index(idx, name="index"))
    df.attrs.update(dataset=data.dataset, seed=int(seed), engine=engine, device=str(dev),
                    device_name=device_name(dev), seconds=time.perf_counter() - t0,
                    reduced_training={n: describe(c, data, dseed) for n, c in zip(names, configs)})
    return df


def summary(d: dict) -> str:
    """One line saying what a :func:`describe` record's scores are."""
    return (f"accuracy (%) on {d['val_images']} after {d['epochs']} epochs ({d['steps']} steps) "
            f"of a {d['schedule']}-epoch cosine schedule, {d['channels']} initial channels, "
            f"{d['resolution']}x{d['resolution']} images, batch {d['batch']}, trained on "
            f"{d['train_images']}")


def describe_specs(specs, *, dataset: str = "cifar10", data_root=None, data_seed: int = 0,
                   normalization: str = "paper") -> dict:
    """{spec: describe(spec)} for the meta file of a score file."""
    data = training_data(dataset, data_root, normalization)
    return {s: describe(s, data, data_seed) for s in specs}


def score_rows(writer, codes, specs, zero_cost, *, index_of, dataset: str, data_root=None,
               weight_seed: int = 0, data_seed: int = 0, flavour: str = "paper",
               engine: str = "packed", device="cpu", chunk=None, normalization: str = "paper",
               bar=None) -> None:
    """Score the networks ``codes`` into a :class:`~zcfast.scoring.ScoreWriter` whose columns
    hold reduced-training ``specs`` and the zero-cost proxies that ``zero_cost(codes of a
    chunk)`` returns ({proxy: values}): chunk after chunk, the rows of a chunk written together
    once they are complete (so --resume works as for zero-cost files). ``index_of``: code -> NB201 index."""
    codes = [int(c) for c in codes]
    code = {int(index_of(c)): c for c in codes}
    for part, res in iter_scores(list(code), specs, dataset=dataset, data_root=data_root,
                                 seed=weight_seed, data_seed=data_seed, flavour=flavour,
                                 engine=engine, device=device, chunk=chunk,
                                 normalization=normalization):
        pc = [code[i] for i in part]
        zc = zero_cost(pc)
        writer.write_rows([(c, {**{p: v[k] for p, v in zc.items()}, **{s: res[s][k] for s in specs}})
                           for k, c in enumerate(pc)])
        if bar is not None:
            bar.update(len(part))


def spec_of(cfg: ReducedConfig) -> str:
    """The spec string of a config (options that differ from the defaults, in OPTIONS order)."""
    base = ReducedConfig()
    opts = [f"{k}={getattr(cfg, k)}" for k in OPTIONS
            if getattr(cfg, k) is not None and getattr(cfg, k) != getattr(base, k)]
    if cfg.schedule is None and cfg.epochs != base.epochs:
        opts = [o for o in opts if not o.startswith("schedule=")]
    extra = {k: v for k, v in asdict(cfg).items() if k not in OPTIONS and v != getattr(base, k)}
    if extra:
        raise ValueError(f"config {cfg} changes {sorted(extra)}, which a spec string cannot say")
    return PREFIX + (":" + "+".join(opts) if opts else "")


__all__ = ["ReducedConfig", "Batches", "TrainingData", "auto_chunk",
           "describe", "describe_specs", "is_spec", "iter_scores", "score_rows", "summary",
           "parse_spec", "run", "score", "spec_of", "split_proxies", "train_loop",
           "train_packed", "training_data"]
