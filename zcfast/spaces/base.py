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


class Space:
    """Base class of a search space (see the module docstring and docs/spaces.md)."""

    #: short name used on the command line (``--space``) and in every output
    name: str = ""
    #: the score-file column that identifies a network of this space (joins with ground truth)
    key_column: str = "key"
    #: datasets this space has networks (and usually ground truth) for
    datasets: tuple = ()
    #: number of distinct networks (None when unknown)
    size: int | None = None

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

    # ---- data --------------------------------------------------------------------------------
    def universe(self, dataset: str, data=None) -> Universe:
        """The ground truth of ``dataset`` (``data``: an optional user file with the full
        benchmark, e.g. NB101's official tfrecord)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<zcfast space {self.name}>"
