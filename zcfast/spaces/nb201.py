"""NAS-Bench-201 search space: arch string <-> 6 op ids <-> NB201 index, sampling, mutation,
neighbours, canonical form. The encodings run in the compiled core (``zcfast._C.nb201``);
this module maps them to the benchmark's own index order (row i of its table).

Arch arguments accept an arch string (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``), an NB201 index
(int), or a sequence of 6 op ids (edges in string order).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Union

import numpy as np

from zcfast import _C

OP_NAMES: tuple = tuple(_C.nb201.OP_NAMES)  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
NUM_EDGES = 6
NUM_ARCHS = 15625
EDGE_SRC = (0, 0, 1, 0, 1, 2)
EDGE_DST = (1, 2, 2, 3, 3, 3)
NONE, SKIP, CONV1, CONV3, POOL = range(5)

Arch = Union[str, int, np.integer, Sequence[int]]


@functools.cache
def _tables():
    from zcfast.data import nb201_ops_table

    ops = nb201_ops_table().astype(np.int64)
    index_to_code = (ops * (5 ** np.arange(6))).sum(1).astype(np.int32)
    code_to_index = np.full(NUM_ARCHS, -1, dtype=np.int32)
    code_to_index[index_to_code] = np.arange(NUM_ARCHS, dtype=np.int32)
    assert (code_to_index >= 0).all(), "bundled NB201 table is not a permutation of the space"
    return index_to_code, code_to_index


def _check_index(i) -> int:
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
        raise ValueError(f"NB201 index must be an int, got {i!r}")
    if not 0 <= int(i) < NUM_ARCHS:
        raise ValueError(f"NB201 index {int(i)} is out of range [0, {NUM_ARCHS - 1}]")
    return int(i)


def _check_seed(seed) -> int:
    # the compiled core takes an unsigned 64-bit seed: reject what it cannot hold with a
    # ValueError instead of pybind11's TypeError
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return int(seed)


def code_of(arch: Arch) -> int:
    """Internal cell code (sum_e op_e 5^e) of an arch given in any accepted form."""
    if isinstance(arch, str):
        return int(_C.nb201.parse(arch))
    if isinstance(arch, (int, np.integer)) and not isinstance(arch, (bool, np.bool_)):
        return int(_tables()[0][_check_index(arch)])
    try:
        ops = [int(o) for o in arch]  # type: ignore[union-attr]
    except (TypeError, ValueError):  # not iterable, or items that are not op ids (e.g. op names)
        raise ValueError(
            f"cannot read {arch!r} as an NB201 arch (arch string, NB201 index or 6 op ids)"
        ) from None
    return int(_C.nb201.code_of(ops))


def index_of(arch: Arch) -> int:
    """NB201 index (0..15,624, the benchmark's row) of an arch."""
    return int(_tables()[1][code_of(arch)])


def index_of_code(code: int) -> int:
    return int(_tables()[1][code])


def code_of_index(index: int) -> int:
    return int(_tables()[0][_check_index(index)])


def ops_of_code(code: int) -> tuple:
    """The 6 op ids of an internal cell code."""
    return tuple(_C.nb201.ops_of(int(code)))


def ops_of_codes(codes) -> np.ndarray:
    """(K, 6) op ids of K internal cell codes at once (code = sum_e op_e 5^e, as above); the
    packed plan's vectorised form of :func:`ops_of_code`. ValueError on a code out of range."""
    c = np.asarray(codes, dtype=np.int64).reshape(-1)
    if c.size and (c.min() < 0 or c.max() >= NUM_ARCHS):
        bad = c[(c < 0) | (c >= NUM_ARCHS)][0]
        raise ValueError(f"NB201 cell code {int(bad)} is out of range [0, {NUM_ARCHS - 1}]")
    return (c[:, None] // (5 ** np.arange(NUM_EDGES, dtype=np.int64))) % 5


def string_of_code(code: int) -> str:
    return _C.nb201.to_string(int(code))


def parse(arch: Arch) -> tuple:
    """The 6 op ids of an arch (edges (0->1), (0->2), (1->2), (0->3), (1->3), (2->3))."""
    return tuple(_C.nb201.ops_of(code_of(arch)))


def to_string(arch: Arch) -> str:
    return _C.nb201.to_string(code_of(arch))


def arch_at(index: int) -> str:
    """Arch string of NB201 index ``index``."""
    return _C.nb201.to_string(code_of_index(index))


@functools.cache
def all_arch_strings() -> tuple:
    """The 15,625 arch strings in NB201 index order."""
    return tuple(_C.nb201.to_string(int(c)) for c in _tables()[0])


def resolve(archs: Iterable[Arch]) -> np.ndarray:
    """NB201 indices (int64) of many archs; raises ValueError naming the first bad one."""
    if isinstance(archs, (str, int, np.integer)):
        archs = [archs]
    out = [index_of(a) for a in archs]
    return np.asarray(out, dtype=np.int64)


def sample(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct NB201 indices drawn uniformly (without replacement) with ``seed``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= NUM_ARCHS:
        raise ValueError(f"can sample between 0 and {NUM_ARCHS} distinct cells, got {n!r}")
    codes = _C.nb201.sample_distinct(int(n), _check_seed(seed))
    return _tables()[1][codes].astype(np.int64)


def mutate(arch: Arch, seed: int) -> str:
    """One-edge mutation (a uniformly chosen edge gets a uniformly chosen *different* op)."""
    return _C.nb201.to_string(_C.nb201.mutate(code_of(arch), _check_seed(seed)))


def neighbours(arch: Arch) -> list:
    """The 24 one-edge neighbours (arch strings), edge-major, op order."""
    return [_C.nb201.to_string(c) for c in _C.nb201.neighbours(code_of(arch))]


def canonical(arch: Arch) -> str:
    """Canonical string under cell isomorphism (NB201's ``to_unique_str`` rule, zeros included)."""
    return _C.nb201.canonical(code_of(arch))


@functools.cache
def canonical_classes() -> np.ndarray:
    """(15625,) int32 class id per NB201 index; 6,466 classes."""
    canon = _C.nb201.canonical_all()  # by code
    codes = _tables()[0]
    _, cls = np.unique(np.asarray([canon[c] for c in codes]), return_inverse=True)
    return cls.astype(np.int32)


def input_nodes(arch: Arch) -> frozenset:
    """Nodes of the cell whose value depends on the cell's input (node 0): those reached from
    node 0 along edges whose op is not ``none`` (docs/gaps.md)."""
    ops = parse(arch)
    reached = {0}
    for e in range(NUM_EDGES):  # edges are listed in topological order of their source
        if ops[e] != NONE and EDGE_SRC[e] in reached:
            reached.add(EDGE_DST[e])
    return frozenset(reached)


def output_ignores_input(arch: Arch) -> bool:
    """True when every path from the cell's input to its output (node 3) has a ``none`` edge:
    the cell's output, hence the network's, does not depend on the image (docs/gaps.md)."""
    return 3 not in input_nodes(arch)


def relu_sees_input(arch: Arch) -> bool:
    """Whether some ReLU of the network reads a value that depends on the image. Cells stack,
    so when the output ignores the input only the first cell's conv edges (ReLU-conv-BN) that
    read an input-dependent node can; otherwise the reduction blocks' ReLUs do (docs/gaps.md)."""
    reached = input_nodes(arch)
    if 3 in reached:
        return True
    ops = parse(arch)
    return any(ops[e] in (CONV1, CONV3) and EDGE_SRC[e] in reached for e in range(NUM_EDGES))


# ---- the space interface (zcfast.spaces.base) ------------------------------------------------
from zcfast.spaces.base import Space as _Space  # noqa: E402  (after the functions it wraps)
from zcfast.spaces.base import Universe as _Universe  # noqa: E402


class NB201Space(_Space):
    """NAS-Bench-201 behind the space interface.

    code = the cell code (sum_e op_e 5^e, as the compiled core); key = the arch string. The
    benchmark trained all 15,625 cells, isomorphic ones included, so every cell is its own network
    with its own ground truth; :func:`canonical` gives the isomorphism class for users who want to
    merge them. Score files identify a cell by its NB201 index (column ``index``, the benchmark's
    row) and its arch string.
    """

    name = "nb201"
    key_column = "index"
    id_columns = ("index", "arch")
    option_names = ("flavour",)
    datasets = ("cifar10", "cifar100", "ImageNet16-120")
    search_dataset = "cifar100"  # the zero-cost paper's NB201 search experiments
    size = NUM_ARCHS

    def hot(self):
        return _hot()

    def parse(self, item) -> int:
        return code_of(item)

    def parse_file(self, path) -> list:
        from pathlib import Path

        p = Path(path)
        out, seen = [], {}
        for lineno, line in enumerate(p.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                c = code_of(int(line)) if line.isdigit() else code_of(line)
            except ValueError as e:
                raise ValueError(f"{p}:{lineno}: {e}") from None
            if c in seen:
                raise ValueError(f"{p}:{lineno}: NB201 cell {index_of_code(c)} is already listed "
                                 f"on line {seen[c]}")
            seen[c] = lineno
            out.append(c)
        if not out:
            raise ValueError(f"{p} lists no architecture")
        return out

    def key(self, code: int) -> str:
        return string_of_code(int(code))

    def from_key(self, key: str) -> int:
        return code_of(str(key))

    def describe(self, code: int) -> str:
        return string_of_code(int(code))

    def row_fields(self, code: int) -> dict:
        return {"index": index_of_code(int(code)), "arch": string_of_code(int(code))}

    def sample(self, n: int, seed: int = 0) -> list:
        # the benchmark's own sampler (distinct cells, NB201 index order of the draw)
        return [code_of_index(int(i)) for i in sample(n, seed)]

    def num_classes(self, dataset: str) -> int:
        from zcfast.data import dataset_name, num_classes

        ds = dataset_name(dataset)
        if ds not in self.datasets:  # e.g. wikitext2, a dataset of another space
            raise ValueError(f"NB201 has no {ds} networks: expected one of {', '.join(self.datasets)}")
        return num_classes(ds)

    def build_model(self, code: int, dataset: str, *, seed: int | None = 0, flavour: str = "paper",
                    dtype=None, device=None):
        import torch

        from zcfast.spaces.nb201_model import build_model

        return build_model(index_of_code(int(code)), self.num_classes(dataset),
                           flavour=flavour, seed=seed, dtype=dtype or torch.float32, device=device)

    def packed(self, codes, dataset: str, *, seed: int = 0, flavour: str = "paper",
               input_size: int | None = None, device="cpu", backend=None, dtype=None,
               precision: str = "fp32"):
        import torch

        from zcfast.batched.engine import PackedNB201
        from zcfast.data import input_size as _input_size

        return PackedNB201(np.asarray(codes, dtype=np.int64), self.num_classes(dataset),
                           flavour=flavour, seed=seed,
                           input_size=input_size or _input_size(dataset), device=device,
                           backend=backend, dtype=dtype or torch.float32, precision=precision)

    def packed_proxies(self) -> tuple:
        from zcfast.batched.engine import SUPPORTED

        return tuple(SUPPORTED)

    def targets(self, dataset: str, data=None):
        from zcfast.correlate import BASELINE_12EP, PAPER_SPEARMAN, PAPER_VOTE_PAIRS
        from zcfast.data import dataset_name, groundtruth
        from zcfast.spaces.base import Targets

        if data is not None:
            raise ValueError("the NB201 ground truth is bundled; --data is not used for nb201")
        ds = dataset_name(dataset)
        self.num_classes(ds)
        return Targets(groundtruth(ds), "test_acc", {BASELINE_12EP: "test_acc_12ep"},
                       PAPER_SPEARMAN[ds], {"vote": PAPER_VOTE_PAIRS[ds]},
                       f"NB201 {ds}, 200 epochs")

    def universe(self, dataset: str, data=None) -> _Universe:
        from zcfast.data import dataset_name, groundtruth

        if data is not None:
            raise ValueError("the NB201 ground truth is bundled; --data is not used for nb201")
        ds = dataset_name(dataset)
        gt = groundtruth(ds)
        i2c, _ = _tables()
        return _Universe(
            "nb201", ds, i2c.astype(np.uint64), gt["val_acc"].to_numpy(np.float64),
            gt["test_acc"].to_numpy(np.float64), list(all_arch_strings()),
            f"all {NUM_ARCHS:,} NB201 cells (bundled NAS-Bench-201 ground truth, {ds}: 200-epoch "
            "validation accuracy for selection, 200-epoch test accuracy reported)")


@functools.cache
def _hot():
    return _C.space.nb201()


SPACE = NB201Space()
