"""The search-space interface: one module per space implements :class:`Space` (docs/spaces.md).

A space answers everything the rest of zcfast needs to know about it:

- **identity**: an architecture travels as a *code* (an unsigned 64-bit integer that decodes back
  to it, shared with the compiled hot path) and is known by its *key* (a string; equal networks
  share one key: a hash under isomorphism, or the cell itself where the benchmark trained every
  cell). Score files, the score cache and ground truth are keyed by the key;
- **parsing and formatting**: the user-facing forms of an architecture (``--archs`` items and
  files), and the columns a score row carries;
- **sampling, mutation, neighbours, the predictor encoding and the RL policy**: in the compiled
  hot path (``hot()``, a ``zcfast._C.space.Space``), so that the search driver never calls Python
  per proposal;
- **networks**: the per-model builder (the reference) and the packed builder;
- **data**: the ground truth of a dataset (the training oracle of simulated searches).

The engine and the search driver see a space only through this interface, so adding a space means
writing one module and registering it in :mod:`zcfast.spaces` (see ``register``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Universe:
    """The cells a simulated search may train, with their accuracies (the training oracle).

    codes: (n,) uint64, one per network (distinct keys); val/test: (n,) float64 accuracies in %.
    ``complete``: the table covers every network of the space (the search then uses the space's
    own sampling, mutation and neighbours); otherwise it is a *pool* (docs/spaces.md, "Pools").
    ``description`` says what the rows are and where the accuracies come from; every search
    output repeats it.
    """

    space: str
    dataset: str
    codes: np.ndarray
    val: np.ndarray
    test: np.ndarray
    keys: list
    description: str
    val_name: str = "validation accuracy"
    test_name: str = "test accuracy"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.codes)
        if not (len(self.val) == len(self.test) == len(self.keys) == n):
            raise ValueError(f"universe of {self.space}: {n} codes, {len(self.val)} val, "
                             f"{len(self.test)} test values and {len(self.keys)} keys")

    def __len__(self) -> int:
        return len(self.codes)

    def row_of(self) -> dict:
        """{key: row}."""
        return {k: i for i, k in enumerate(self.keys)}


@dataclass
class Targets:
    """What proxy scores are correlated with (``zcfast correlate``).

    table: DataFrame indexed by the space's key column (as score files hold it), one column per
    target; default: the target used when none is named; baselines: {label: column} of
    non-zero-cost rankings shown next to the proxies (NB201: 12-epoch training); paper:
    {proxy: |Spearman|} reported by the zero-cost paper for this space and dataset; description:
    where the numbers come from."""

    table: object
    default: str
    baselines: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)
    paper_pairs: dict = field(default_factory=dict)
    description: str = ""


@dataclass
class MiniBatch:
    """One seeded minibatch a space's networks are scored on, and where it came from.

    x, y: tensors (images and labels for the image spaces). ``source`` draws more minibatches of
    the same data (``source.minibatch(batch_size, seed)``: ZiCo's extra batches)."""

    x: object
    y: object
    name: str
    description: str
    source: object = None
    extra_meta: dict = field(default_factory=dict)

    def meta(self) -> dict:
        """What a score file's meta records about the data."""
        return {"images": self.name, "images_description": self.description, **self.extra_meta}

    def more(self, batch_size: int, seed: int):
        """(x, y) of another minibatch of the same source."""
        return self.source.minibatch(int(batch_size), int(seed))


class Space:
    """Base class of a search space (see the module docstring and docs/spaces.md)."""

    #: short name used on the command line (``--space``) and in every output
    name: str = ""
    #: the score-file column that identifies a network of this space (joins with ground truth)
    key_column: str = "key"
    #: the identifying columns of a score row (``key_column`` first)
    id_columns: tuple = ("key", "arch")
    #: options of the space's networks a user may set (NB201: the flavour)
    option_names: tuple = ()
    #: datasets this space has networks (and usually ground truth) for
    datasets: tuple = ()
    #: the dataset searches run on when none is named (``zcfast search``/``figure``)
    search_dataset: str | None = None
    #: whether the space reads a benchmark file given as ``--data`` (NB101: the official
    #: tfrecord); the others bundle their ground truth and refuse one
    reads_data_file: bool = False

    def default_dataset(self) -> str:
        """``search_dataset``, else the first of ``datasets``."""
        return self.search_dataset or self.datasets[0]
    #: number of distinct networks (None when unknown)
    size: int | None = None
    #: minibatch size when the user gives none (NB-NLP: its logs' 20)
    default_batch_size: int = 64

    def score_dataset(self) -> str:
        """The dataset ``zcfast score`` uses when none is named: cifar10 when the space has it,
        else its first dataset (NB-NLP: wikitext2)."""
        return "cifar10" if "cifar10" in self.datasets else self.datasets[0]

    def all_archs(self, dataset: str, data=None) -> list:
        """Codes of ``--archs all``: every network of the universe of ``dataset`` (NB-NLP: its
        logged runs, which may share networks)."""
        return [int(c) for c in self.universe(dataset, data).codes]

    # ---- the compiled hot path --------------------------------------------------------------
    def hot(self):
        """The space as the C++ driver sees it (a ``zcfast._C.space.Space``)."""
        raise NotImplementedError

    # ---- identity ------------------------------------------------------------------------------
    def parse(self, item) -> int:
        """The code of one architecture given in any form the space accepts (ValueError naming
        it otherwise)."""
        raise NotImplementedError

    def parse_file(self, path) -> list:
        """Codes of the architectures listed in a file (``--archs FILE``), in file order; a
        network listed twice raises ValueError naming both lines."""
        raise NotImplementedError

    def key(self, code: int) -> str:
        raise NotImplementedError

    def keys(self, codes: Sequence[int]) -> list:
        return [self.key(int(c)) for c in codes]

    def describe(self, code: int) -> str:
        """The architecture as text (the ``arch`` column of score files)."""
        raise NotImplementedError

    def row_fields(self, code: int) -> dict:
        """Identifying columns of a score row, ``key_column`` first."""
        return {self.key_column: self.key(code), "arch": self.describe(code)}

    def key_from_row(self, value) -> str:
        """The key of the network a score file's ``key_column`` value names."""
        return self.key(self.parse(value))

    def from_key(self, key: str) -> int:
        """The code of a network given by its key (for files keyed by key)."""
        raise NotImplementedError

    def check_archs_spec(self, spec: str) -> None:
        """ValueError naming a bad ``--archs`` string: neither 'all', a number of networks within
        the space's size, nor an existing file (torch-free: the command line checks it first)."""
        import os

        s = str(spec).strip()
        if s.lower() == "all":
            return
        if s.isdigit():
            n = int(s)
            if self.size is not None and not 1 <= n <= self.size:
                raise ValueError(f"--archs {n}: expected between 1 and {self.size} {self.name} "
                                 "networks")
            if n < 1:
                raise ValueError(f"--archs {n}: expected at least 1 network")
            return
        if not os.path.isfile(s):
            raise ValueError(f"--archs {s!r} is neither 'all', a number of networks, nor an "
                             "existing file")

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0) -> list:
        """``n`` architectures with distinct keys, drawn with ``seed`` by the space's rule."""
        return [int(c) for c in self.hot().sample_distinct(int(n), int(seed))]

    def mutate(self, code: int, seed: int) -> int:
        return int(self.hot().mutate(int(code), int(seed)))

    def neighbours(self, code: int) -> list:
        return [int(c) for c in self.hot().neighbours(int(code))]

    def encode(self, codes: Sequence[int]) -> np.ndarray:
        """(n, features) float32 predictor encodings."""
        return self.hot().encode(np.asarray(codes, dtype=np.uint64))

    # ---- networks ----------------------------------------------------------------------------
    def num_classes(self, dataset: str) -> int:
        raise NotImplementedError

    def model_options(self, flavour: str = "paper") -> dict:
        """The network options of this space from the command line's (NB201: its flavour); a
        non-default value for an option the space does not have raises."""
        if "flavour" in self.option_names:
            return {"flavour": flavour}
        if flavour != "paper":
            raise ValueError(f"--flavour {flavour!r}: the {self.name} networks have no flavours")
        return {}

    def minibatch(self, dataset: str, batch_size: int, seed: int, *, images: str = "default",
                  data_root=None, normalization: str = "paper") -> MiniBatch:
        """The seeded training minibatch the networks of ``dataset`` are scored on (image
        spaces: the bundled real images, or a CIFAR download under ``data_root``; docs/data.md)."""
        from zcfast.data import image_source

        src = image_source(dataset, data_root=data_root, images=images, normalization=normalization)
        x, y = src.minibatch(int(batch_size), int(seed))
        return MiniBatch(x, y, src.name, src.description, src,
                         {"normalization_mean": list(src.mean), "normalization_std": list(src.std)})

    def build_model(self, code: int, dataset: str, *, seed: int | None = 0, **options):
        """The per-model network (an ``nn.Module``): the reference the packed engine equals."""
        raise NotImplementedError

    def packed(self, codes: Sequence[int], dataset: str, *, seed: int = 0, **options):
        """A packed engine for the candidates ``codes`` (``.compute(x, y, proxies)`` returns
        {proxy: (K,) array}), or None when the space has no packed builder."""
        return None

    def packed_proxies(self) -> tuple:
        """Proxies the packed builder computes (empty: per-model only)."""
        return ()

    def proxy_problem(self, proxy: str) -> str | None:
        """Why ``proxy``'s definition does not carry over to this space's networks, or None
        (scoring refuses such a proxy before it starts, with this reason)."""
        return None

    def default_chunk(self, proxies, batch: int, device) -> int:
        """Candidates per packed pass when the user sets none (a space without a memory model:
        a conservative number; NB201 has a measured model, zcfast/batched/memory.py)."""
        import torch

        return 64 if torch.device(device).type == "cuda" else 1

    # ---- data --------------------------------------------------------------------------------
    def targets(self, dataset: str, data=None) -> Targets:
        """The ground truth proxy scores are correlated with (see Targets)."""
        raise NotImplementedError

    def universe(self, dataset: str, data=None) -> Universe:
        """The ground truth of ``dataset`` (``data``: an optional user file with the full
        benchmark, e.g. NB101's official tfrecord)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<zcfast space {self.name}>"
