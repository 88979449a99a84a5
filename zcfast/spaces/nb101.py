"""NAS-Bench-101 search space (Ying et al., "NAS-Bench-101: Towards Reproducible Neural
Architecture Search", ICML 2019): cells, the official pruning, validity rules and graph hash, a
64-bit raw code, seeded sampling, mutation, neighbours, the predictor's encoding, the RL policy's
decisions and the ``--archs`` JSON-lines format. Every definition is in docs/nb101.md.

A cell is a DAG of at most 7 vertices given by an upper-triangular 0/1 adjacency matrix and one
op per vertex: ``input`` first, ``output`` last, and ``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or
``maxpool3x3`` in between. Vertices that are not on a path from input to output are pruned;
a cell is valid when its pruned form has at most 7 vertices and 9 edges. Two cells are the same
network exactly when their official graph hashes (MD5 fingerprints) are equal; that hash is the
canonical key, and a 64-bit integer key is its first 8 bytes.

Arch arguments accept a :class:`Spec`, a dict ``{"matrix": ..., "ops": ...}``, a pair
``(matrix, ops)``, a JSON line of that dict, or a raw code (int). The seeded and repeated
operations run in the compiled core (``zcfast._C.nb101``); every one of them has a pure-Python
reference here (``*_reference``) that the tests hold it to.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

INPUT = "input"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"
OUTPUT = "output"
OP_NAMES = (INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, OUTPUT)
# The official ``available_ops`` order: an interior op's id is its position here. The hash labels
# interior vertices by this id, the input -1 and the output -2 (nasbench model_spec.hash_spec).
INTERIOR_OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)
MAX_VERTICES = 7
MAX_EDGES = 9
NUM_SLOTS = 21  # upper-triangular entries of a 7 x 7 matrix
NUM_INTERIOR = MAX_VERTICES - 2
NUM_MOVES = NUM_SLOTS + NUM_INTERIOR * (len(INTERIOR_OPS) - 1)  # 21 edge flips + 10 op changes
NUM_FEATURES = NUM_SLOTS + NUM_INTERIOR * len(INTERIOR_OPS)  # 36
NUM_CELLS = 423624  # distinct valid cells (hashes) in the official data set

_N_BITS, _EDGE_SHIFT, _OP_SHIFT = 3, 3, 24


def slot(i: int, j: int) -> int:
    """Bit index of edge i -> j (i < j): i + j(j-1)/2, the official ``gen_is_edge_fn`` order
    (column by column): (0,1), (0,2), (1,2), (0,3), (1,3), (2,3), ..."""
    return i + j * (j - 1) // 2


SLOT_EDGES = tuple((i, j) for j in range(1, MAX_VERTICES) for i in range(j))
assert all(slot(i, j) == k for k, (i, j) in enumerate(SLOT_EDGES))


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """A cell as given: ``matrix`` (n x n tuple of 0/1 tuples, upper triangular) and ``ops``
    (n op names). Not necessarily pruned or valid (see :func:`prune`, :func:`is_valid`)."""

    matrix: tuple
    ops: tuple

    @property
    def n(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def array(self) -> np.ndarray:
        """(n, n) int8 adjacency matrix."""
        return np.array(self.matrix, dtype=np.int8).reshape(self.n, self.n)

    def to_dict(self) -> dict:
        return {"matrix": [list(r) for r in self.matrix], "ops": list(self.ops)}

    def to_json(self) -> str:
        """One line of the ``--archs`` file format (the official ModelSpec fields)."""
        return json.dumps(self.to_dict())


Arch = Union[Spec, dict, tuple, str, int, np.integer]


def _spec_from(matrix, ops, what: str = "cell") -> Spec:
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence):
        raise ValueError(f"{what}: ops must be a list of op names, got {ops!r}")
    ops = tuple(ops)
    for o in ops:
        if not isinstance(o, str) or o not in OP_NAMES:
            raise ValueError(f"{what}: unknown op {o!r}; NB101 ops are {', '.join(OP_NAMES)}")
    try:
        m = np.asarray(matrix)
    except Exception:  # noqa: BLE001 - ragged nested lists raise various errors
        raise ValueError(f"{what}: matrix {matrix!r} is not a square 0/1 matrix") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"{what}: matrix must be square, got shape {m.shape}")
    if m.dtype == bool:
        m = m.astype(np.int64)
    if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
        raise ValueError(f"{what}: matrix entries must be 0 or 1, got {matrix!r}")
    n = m.shape[0]
    if len(ops) != n:
        raise ValueError(f"{what}: {len(ops)} ops for a {n} x {n} matrix (one op per vertex)")
    if np.tril(m).any():
        i, j = map(int, np.argwhere(np.tril(m))[0])
        raise ValueError(f"{what}: matrix must be strictly upper triangular (a DAG in vertex "
                         f"order), but entry [{i}][{j}] is 1")
    return Spec(tuple(tuple(int(v) for v in r) for r in m), ops)


def as_spec(arch: Arch) -> Spec:
    """The cell of any accepted form, as given (format checked, not pruned); a JSON line goes
    through :func:`parse_line` (pruned and validated), a raw code through :func:`decode`."""
    if isinstance(arch, Spec):
        return arch
    if isinstance(arch, (int, np.integer)) and not isinstance(arch, (bool, np.bool_)):
        return decode(int(arch))
    if isinstance(arch, str):
        return parse_line(arch)
    if isinstance(arch, dict):
        if not {"matrix", "ops"} <= set(arch):
            raise ValueError(f"an NB101 cell dict needs the keys 'matrix' and 'ops', got "
                             f"{sorted(arch)}")
        return _spec_from(arch["matrix"], arch["ops"])
    if isinstance(arch, (tuple, list)) and len(arch) == 2:
        return _spec_from(arch[0], arch[1])
    raise ValueError(f"cannot read {arch!r} as an NB101 cell (Spec, dict with matrix and ops, "
                     "(matrix, ops), JSON line or raw code)")


# ---------------------------------------------------------------------------------------------
# Pruning, validity, hash
# ---------------------------------------------------------------------------------------------
def prune(arch: Arch) -> Spec | None:
    """The official ModelSpec pruning: keep the vertices reachable from the input *and* from
    which the output is reachable (in their order); None when the input does not reach the
    output."""
    s = as_spec(arch)
    m, n = s.array(), s.n
    fwd, stack = {0}, [0]
    while stack:
        u = stack.pop()
        for v in range(u + 1, n):
            if m[u, v] and v not in fwd:
                fwd.add(v)
                stack.append(v)
    bwd, stack = {n - 1}, [n - 1]
    while stack:
        u = stack.pop()
        for v in range(u):
            if m[v, u] and v not in bwd:
                bwd.add(v)
                stack.append(v)
    keep = sorted(fwd & bwd)
    if len(keep) < 2:  # nothing connects the input to the output
        return None
    sub = m[np.ix_(keep, keep)]
    return Spec(tuple(tuple(int(v) for v in r) for r in sub), tuple(s.ops[k] for k in keep))


def invalid_reason(arch: Arch) -> str | None:
    """Why the cell is outside the space after pruning (the official ``_check_spec`` rules), or
    None when it is valid."""
    s = as_spec(arch)
    p = prune(s)
    if p is None:
        return "the input is not connected to the output"
    if p.n > MAX_VERTICES:
        return f"{p.n} vertices after pruning (at most {MAX_VERTICES})"
    if p.num_edges > MAX_EDGES:
        return f"{p.num_edges} edges after pruning (at most {MAX_EDGES})"
    if p.ops[0] != INPUT:
        return f"the first op must be {INPUT!r}, got {p.ops[0]!r}"
    if p.ops[-1] != OUTPUT:
        return f"the last op must be {OUTPUT!r}, got {p.ops[-1]!r}"
    for o in p.ops[1:-1]:
        if o not in INTERIOR_OPS:
            return f"interior op {o!r} is not one of {', '.join(INTERIOR_OPS)}"
    return None


def is_valid(arch: Arch) -> bool:
    return invalid_reason(arch) is None


def canonical_spec(arch: Arch) -> Spec:
    """The pruned form of a valid cell (ValueError saying why otherwise)."""
    s = as_spec(arch)
    why = invalid_reason(s)
    if why is not None:
        raise ValueError(f"invalid NB101 cell {s.to_json()}: {why}")
    return prune(s)


def _md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def hash_module(matrix, labels: Sequence[int]) -> str:
    """The official graph fingerprint (nasbench ``graph_util.hash_module``), re-derived:

    h_v = md5(str((out_degree_v, in_degree_v, label_v))); then n times, simultaneously,
    h_v = md5(sorted in-neighbour hashes joined + "|" + sorted out-neighbour hashes joined + "|"
    + h_v); the fingerprint is md5(str(sorted(h))) with Python's str of a tuple / list of str.
    """
    m = np.asarray(matrix)
    n = len(labels)
    ins, outs = m.sum(0).tolist(), m.sum(1).tolist()
    h = [_md5_hex(f"({int(outs[v])}, {int(ins[v])}, {int(labels[v])})") for v in range(n)]
    for _ in range(n):
        h = [_md5_hex("".join(sorted(h[w] for w in range(n) if m[w, v])) + "|"
                      + "".join(sorted(h[w] for w in range(n) if m[v, w])) + "|" + h[v])
             for v in range(n)]
    return _md5_hex("[" + ", ".join(f"'{x}'" for x in sorted(h)) + "]")


def labels_of(spec: Spec) -> list:
    """Hash labels of a pruned spec: -1 input, op id (INTERIOR_OPS order) inside, -2 output."""
    return [-1] + [INTERIOR_OPS.index(o) for o in spec.ops[1:-1]] + [-2]


def hash_of(arch: Arch) -> str:
    """Official module hash (32 hex digits) of a valid cell: the key of the benchmark's data."""
    p = canonical_spec(arch)
    return hash_module(p.array(), labels_of(p))


def key_of_hash(h: str) -> int:
    """64-bit key of a hash: its first 8 bytes, big-endian (an int in [0, 2**64))."""
    if not isinstance(h, str) or len(h) != 32 or any(c not in "0123456789abcdef" for c in h):
        raise ValueError(f"an NB101 hash is 32 lower-case hex digits, got {h!r}")
    return int(h[:16], 16)


def key_of(arch: Arch) -> int:
    return key_of_hash(hash_of(arch))


# ---------------------------------------------------------------------------------------------
# Raw code: n (3 bits) | 21 edge bits in slot order | 2 bits per interior op
# ---------------------------------------------------------------------------------------------
def encode(arch: Arch) -> int:
    """Raw code of a valid cell's pruned form:
    ``n | edges << 3 | sum_v op_v << (24 + 2 (v - 1))``, edges = sum over i -> j of 2^slot(i, j),
    op_v the INTERIOR_OPS id of interior vertex v = 1..n-2. Distinct pruned specs get distinct
    codes; isomorphic ones may differ (the hash is the canonical key)."""
    if isinstance(arch, (int, np.integer)) and not isinstance(arch, (bool, np.bool_)):
        check_code(int(arch))
        return int(arch)
    p = canonical_spec(arch)
    n = p.n
    code = n
    for j in range(1, n):
        for i in range(j):
            if p.matrix[i][j]:
                code |= 1 << (_EDGE_SHIFT + slot(i, j))
    for v in range(1, n - 1):
        code |= INTERIOR_OPS.index(p.ops[v]) << (_OP_SHIFT + 2 * (v - 1))
    return code


def _unpack(code: int):
    n = code & 7
    edges = (code >> _EDGE_SHIFT) & ((1 << NUM_SLOTS) - 1)
    ops = [(code >> (_OP_SHIFT + 2 * k)) & 3 for k in range(NUM_INTERIOR)]
    return n, edges, ops


def code_problem(code) -> str | None:
    """Why ``code`` is not the raw code of a valid pruned cell, or None."""
    if isinstance(code, (bool, np.bool_)) or not isinstance(code, (int, np.integer)):
        return f"an NB101 raw code is an int, got {code!r}"
    code = int(code)
    if not 0 <= code < 1 << (_OP_SHIFT + 2 * NUM_INTERIOR):
        return "out of range"
    n, edges, ops = _unpack(code)
    if not 2 <= n <= MAX_VERTICES:
        return f"vertex count {n} is not in [2, {MAX_VERTICES}]"
    if edges >> slot(0, n):  # slots of j >= n
        return f"edge bits beyond a {n}-vertex cell"
    for k, o in enumerate(ops):
        if (k >= n - 2 and o != 0) or o >= len(INTERIOR_OPS):
            return f"op bits of interior vertex {k + 1} are {o}"
    m = [[(edges >> slot(i, j)) & 1 if i < j else 0 for j in range(n)] for i in range(n)]
    s = Spec(tuple(map(tuple, m)), (INPUT, *(INTERIOR_OPS[o] for o in ops[: n - 2]), OUTPUT))
    p = prune(s)
    if p is None or p.n != n:
        return "its graph is not pruned (a vertex is off every input-output path)"
    if s.num_edges > MAX_EDGES:
        return f"{s.num_edges} edges (at most {MAX_EDGES})"
    return None


def is_code(code) -> bool:
    return code_problem(code) is None


def check_code(code) -> int:
    why = code_problem(code)
    if why is not None:
        raise ValueError(f"{code!r} is not the raw code of a valid NB101 cell: {why}")
    return int(code)


def decode(code: int) -> Spec:
    """The pruned cell of a raw code."""
    n, edges, ops = _unpack(check_code(code))
    m = tuple(tuple((edges >> slot(i, j)) & 1 if i < j else 0 for j in range(n)) for i in range(n))
    return Spec(m, (INPUT, *(INTERIOR_OPS[o] for o in ops[: n - 2]), OUTPUT))


def _code_of_7(edges: int, ops5: Sequence[int]) -> int:
    """Raw code of the (unpruned) 7-vertex cell of 21 edge bits and 5 interior op ids, 0 when
    it is invalid."""
    m = [[(edges >> slot(i, j)) & 1 if i < j else 0 for j in range(7)] for i in range(7)]
    s = Spec(tuple(map(tuple, m)), (INPUT, *(INTERIOR_OPS[o] for o in ops5), OUTPUT))
    return encode(s) if is_valid(s) else 0


def embed7(arch: Arch):
    """The 7-vertex form of a valid cell's pruned spec: (edge bits over the 21 slots, the 5
    interior op ids, the number of live interior vertices). Its vertices 0..n-2 stay where they
    are, the output moves to vertex 6, and vertices n-1..5 are unused: no edges and op
    conv3x3-bn-relu (id 0), as NASLib pads cells (``convert_to_cell``)."""
    code = encode(arch)
    n, edges, ops = _unpack(code)
    e7 = 0
    for k, (i, j) in enumerate(SLOT_EDGES):
        if j < n and (edges >> k) & 1:
            e7 |= 1 << slot(i, 6 if j == n - 1 else j)
    return e7, tuple(ops), n - 2


# ---------------------------------------------------------------------------------------------
# Moves, neighbours, mutation, sampling (references; the fast versions are in the compiled core)
# ---------------------------------------------------------------------------------------------
def apply_move(arch: Arch, move: int) -> int:
    """Raw code of the cell one move away, 0 if that cell is invalid. Moves act on the 7-vertex
    form (:func:`embed7`): 0..20 flip the edge of that slot; 21 + 2 (v - 1) + r gives interior
    vertex v the r-th (r = 0, 1) of the two *other* ops in INTERIOR_OPS order."""
    if not 0 <= int(move) < NUM_MOVES:
        raise ValueError(f"an NB101 move is in [0, {NUM_MOVES}), got {move!r}")
    e7, ops, _ = embed7(arch)
    ops = list(ops)
    if move < NUM_SLOTS:
        e7 ^= 1 << move
    else:
        v, r = divmod(move - NUM_SLOTS, 2)
        ops[v] = [o for o in range(len(INTERIOR_OPS)) if o != ops[v]][r]
    return _code_of_7(e7, ops)


def neighbours_reference(arch: Arch) -> list:
    """Raw codes of every valid cell one move away that is a different network (hash differs
    from the cell's), once per hash, in move order (first code of each hash kept)."""
    own = hash_of(arch)
    seen, out = {own}, []
    for mv in range(NUM_MOVES):
        c = apply_move(arch, mv)
        if c:
            h = hash_of(c)
            if h not in seen:
                seen.add(h)
                out.append(c)
    return out


def _sample_one(rng) -> int:
    while True:
        edges = rng.next() >> (64 - NUM_SLOTS)
        ops = [rng.below(len(INTERIOR_OPS)) for _ in range(NUM_INTERIOR)]
        c = _code_of_7(edges, ops)
        if c:
            return c


def sample_reference(n: int, seed: int) -> list:
    """``n`` raw codes drawn like the official ``random_spec``: 21 fair edge bits (the top bits of
    one 64-bit draw) and 5 uniform interior ops, redrawn until the cell is valid."""
    from zcfast.spaces._rng import Rng

    rng = Rng(seed)
    return [_sample_one(rng) for _ in range(n)]


def mutate_reference(arch: Arch, seed: int) -> int:
    """One move drawn uniformly from the 31, redrawn until the result is valid and a different
    network. The 2-vertex cell (input -> output) has no such move: it gets a fresh sample."""
    from zcfast.spaces._rng import Rng

    rng = Rng(seed)
    own = hash_of(arch)
    if embed7(arch)[2] == 0:
        return _sample_one(rng)
    while True:
        c = apply_move(arch, rng.below(NUM_MOVES))
        if c and hash_of(c) != own:
            return c


def features_reference(arch: Arch) -> np.ndarray:
    """(36,) float32 predictor input: the 21 edge bits of the 7-vertex form, then a one-hot row of
    3 (INTERIOR_OPS order) per interior vertex 1..5, all zero for unused vertices."""
    e7, ops, live = embed7(arch)
    f = np.zeros(NUM_FEATURES, dtype=np.float32)
    for k in range(NUM_SLOTS):
        f[k] = (e7 >> k) & 1
    for v in range(live):
        f[NUM_SLOTS + 3 * v + ops[v]] = 1.0
    return f


def to_decisions(arch: Arch):
    """The RL policy's decisions that produce this cell: (5 interior op ids, 21 edge bits) of the
    7-vertex form (unused vertices: op 0, no edges)."""
    e7, ops, _ = embed7(arch)
    return tuple(ops), tuple((e7 >> k) & 1 for k in range(NUM_SLOTS))


def from_decisions(ops: Sequence[int], edges: Sequence[int]) -> int | None:
    """Raw code of the cell that the decisions (5 op ids, 21 Bernoulli edges in slot order)
    describe, None when that cell is invalid (the policy then gets no accuracy for it)."""
    ops, edges = [int(o) for o in ops], [int(e) for e in edges]
    if len(ops) != NUM_INTERIOR or not all(0 <= o < len(INTERIOR_OPS) for o in ops):
        raise ValueError(f"decisions need {NUM_INTERIOR} op ids in [0, 2], got {ops}")
    if len(edges) != NUM_SLOTS or not all(e in (0, 1) for e in edges):
        raise ValueError(f"decisions need {NUM_SLOTS} edge bits, got {edges}")
    c = _code_of_7(sum(e << k for k, e in enumerate(edges)), ops)
    return c or None


# ---------------------------------------------------------------------------------------------
# Compiled versions
# ---------------------------------------------------------------------------------------------
def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return int(seed)


def _codes(archs) -> np.ndarray:
    if isinstance(archs, np.ndarray) and archs.dtype == np.uint64:
        return archs
    if isinstance(archs, (Spec, dict, str, int, np.integer)):
        archs = [archs]
    return np.asarray([encode(a) for a in archs], dtype=np.uint64)


def sample(n: int, seed: int = 0) -> np.ndarray:
    """(n,) uint64 raw codes, as :func:`sample_reference` (with replacement; isomorphic
    duplicates possible)."""
    from zcfast import _C

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"sample size must be an int >= 0, got {n!r}")
    return _C.nb101.sample(int(n), _check_seed(seed))


def sample_distinct(n: int, seed: int = 0) -> np.ndarray:
    """(n,) uint64 raw codes of n different networks (distinct hashes): the draws of
    :func:`sample`, keeping the first of each hash."""
    from zcfast import _C

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= NUM_CELLS:
        raise ValueError(f"can sample between 0 and {NUM_CELLS} distinct cells, got {n!r}")
    return _C.nb101.sample_distinct(int(n), _check_seed(seed))


def mutate(arch: Arch, seed: int) -> int:
    from zcfast import _C

    return int(_C.nb101.mutate(encode(arch), _check_seed(seed)))


def neighbours(arch: Arch) -> list:
    from zcfast import _C

    return [int(c) for c in _C.nb101.neighbours(encode(arch))]


def hashes(archs) -> list:
    """Official hashes of many cells (compiled MD5)."""
    from zcfast import _C

    return _C.nb101.hashes(_codes(archs))


def keys(archs) -> np.ndarray:
    """(N,) uint64 64-bit keys of many cells."""
    from zcfast import _C

    return _C.nb101.keys(_codes(archs))


def features(archs) -> np.ndarray:
    """(N, 36) float32 predictor inputs of many cells (see :func:`features_reference`)."""
    from zcfast import _C

    return _C.nb101.features(_codes(archs))


# ---------------------------------------------------------------------------------------------
# The --archs format: one JSON object {"matrix": [[...]], "ops": [...]} per line
# ---------------------------------------------------------------------------------------------
def parse_line(line: str, where: str = "") -> Spec:
    """The pruned, valid cell of one ``--archs`` line. A ``"hash"`` field, if present, must be
    the cell's official hash. ValueError names ``where`` (e.g. ``file:line``) and the problem."""
    at = f"{where}: " if where else ""
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{at}not JSON ({e.msg}): {line.strip()[:80]!r}") from None
    if not isinstance(d, dict) or not {"matrix", "ops"} <= set(d) \
            or set(d) - {"matrix", "ops", "hash"}:
        raise ValueError(f"{at}expected a JSON object with the keys 'matrix' and 'ops' (and "
                         f"optionally 'hash'), got {line.strip()[:80]!r}")
    try:
        s = canonical_spec(as_spec(d))
        if "hash" in d and d["hash"] != hash_module(s.array(), labels_of(s)):
            raise ValueError(f"its 'hash' {d['hash']!r} is not the cell's official hash "
                             f"{hash_module(s.array(), labels_of(s))}")
    except ValueError as e:
        raise ValueError(f"{at}{e}") from None
    return s


def read_archs(path: str | os.PathLike) -> list:
    """Pruned cells of an ``--archs`` file (blank lines and lines starting with # skipped)."""
    out = []
    with open(path) as f:
        for k, line in enumerate(f, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(parse_line(line, f"{path}:{k}"))
    if not out:
        raise ValueError(f"{path} holds no NB101 cell")
    return out


def write_archs(path: str | os.PathLike, archs: Iterable[Arch]) -> None:
    with open(path, "w") as f:
        for a in archs:
            f.write(canonical_spec(a).to_json() + "\n")


# ---------------------------------------------------------------------------------------------
# The space interface (zcfast.spaces.base)
# ---------------------------------------------------------------------------------------------
from zcfast.spaces.base import Space as _Space  # noqa: E402  (after the functions it wraps)
from zcfast.spaces.base import Universe as _Universe  # noqa: E402


class NB101Space(_Space):
    """NAS-Bench-101 behind the space interface (docs/nb101.md, docs/spaces.md).

    code = the raw code of the pruned cell; key = the official graph hash (32 hex digits), so
    isomorphic cells are one network; score files name a cell by ``hash`` and its ``arch`` (the
    JSON line of the pruned cell). Ground truth: CIFAR-10 only; the bundled 292-cell subset (a
    pool, searched as such) or the official file given as ``data``.
    """

    name = "nb101"
    key_column = "hash"
    id_columns = ("hash", "arch")
    datasets = ("cifar10",)
    reads_data_file = True
    size = NUM_CELLS

    def hot(self):
        from zcfast import _C

        return _C.space.nb101()

    def parse(self, item) -> int:
        if isinstance(item, str) and len(item) == 32 and all(c in "0123456789abcdef" for c in item):
            return self._code_of_hash(item)
        if isinstance(item, str) and item.lstrip().startswith("{"):
            return encode(parse_line(item))
        return encode(item)

    def _code_of_hash(self, h: str) -> int:
        from zcfast.data.nb101 import subset_groundtruth

        gt = subset_groundtruth()
        if h in gt.index:
            return int(gt.loc[h, "code"])
        for uni in _OFFICIAL.values():
            if h in uni:
                return uni[h]
        raise ValueError(f"NB101 hash {h!r} is not a cell of the bundled subset (or of an official "
                         "file loaded with --data): give the cell as JSON {\"matrix\", \"ops\"}")

    def parse_file(self, path) -> list:
        out, seen = [], {}
        with open(path) as f:
            for k, line in enumerate(f, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                spec = parse_line(line, f"{path}:{k}")
                c = encode(spec)
                h = self.key(c)
                if h in seen:
                    raise ValueError(f"{path}:{k}: this NB101 cell (hash {h}) is already listed on "
                                     f"line {seen[h]}")
                seen[h] = k
                out.append(c)
        if not out:
            raise ValueError(f"{path} holds no NB101 cell")
        return out

    def key(self, code: int) -> str:
        from zcfast import _C

        return _C.nb101.hash(int(code))

    def keys(self, codes) -> list:
        return hashes(np.asarray(codes, dtype=np.uint64))

    def key_from_row(self, value) -> str:
        return str(value)

    def describe(self, code: int) -> str:
        return decode(int(code)).to_json()

    def row_fields(self, code: int) -> dict:
        return {"hash": self.key(code), "arch": self.describe(code)}

    def sample(self, n: int, seed: int = 0) -> list:
        return [int(c) for c in sample_distinct(n, seed)]

    def num_classes(self, dataset: str) -> int:
        from zcfast.data import dataset_name

        ds = dataset_name(dataset)
        if ds not in self.datasets:
            raise ValueError(f"NB101 networks are CIFAR-10 networks, not {ds}")
        return 10

    def build_model(self, code: int, dataset: str, *, seed: int | None = 0, dtype=None,
                    device=None, **options):
        from zcfast.spaces.nb101_model import build_model

        return build_model(int(code), self.num_classes(dataset), seed=seed, dtype=dtype,
                           device=device, **options)

    def packed(self, codes, dataset: str, *, seed: int = 0, input_size: int | None = None,
               device="cpu", backend=None, dtype=None, **options):
        import torch

        from zcfast.batched.nb101 import PackedNB101

        return PackedNB101([int(c) for c in codes], self.num_classes(dataset), seed=seed,
                           input_size=input_size or 32, device=device, backend=backend,
                           dtype=dtype or torch.float32, **options)

    def packed_proxies(self) -> tuple:
        from zcfast.batched.base import SUPPORTED

        return tuple(SUPPORTED)

    def targets(self, dataset: str, data=None):
        from zcfast.data import dataset_name
        from zcfast.spaces.base import Targets

        ds = dataset_name(dataset)
        self.num_classes(ds)
        if data is None:
            from zcfast.data.nb101 import subset_groundtruth

            gt = subset_groundtruth()[["val_acc"]]
            what = ("NB101 CIFAR-10, 108 epochs: validation accuracy, mean over the repeats of "
                    f"each of the {len(gt)} distinct cells of the bundled NASLib subset")
        else:
            off = _load_official(str(data))
            gt = off[["val_acc_mean", "test_acc_mean"]].rename(
                columns={"val_acc_mean": "val_acc", "test_acc_mean": "test_acc"})
            what = f"NB101 CIFAR-10, 108 epochs, means over the repeats, official file {data}"
        return Targets(gt, "val_acc", {}, dict(PAPER_SPEARMAN), {}, what)

    def universe(self, dataset: str, data=None) -> _Universe:
        from zcfast.data import dataset_name

        ds = dataset_name(dataset)
        self.num_classes(ds)
        if data is None:
            from zcfast.data.nb101 import subset_groundtruth

            gt = subset_groundtruth()
            return _Universe(
                "nb101", ds, gt["code"].to_numpy(np.uint64), gt["val_acc_mean"].to_numpy(np.float64),
                gt["val_acc_mean"].to_numpy(np.float64), list(gt.index),
                f"the {len(gt)} distinct cells of the bundled NB101 subset (NASLib's 500 records; "
                "a pool, not the whole space). It holds 108-epoch CIFAR-10 validation accuracy "
                "only: selection uses the mean over the records' repeats, and the curves report "
                "that same value (no test accuracy in the subset)",
                val_name="validation accuracy (mean of repeats)",
                test_name="validation accuracy (mean of repeats; no test accuracy bundled)")
        gt = _load_official(str(data))
        return _Universe(
            "nb101", ds, gt["code"].to_numpy(np.uint64), gt["val_acc_mean"].to_numpy(np.float64),
            gt["test_acc_mean"].to_numpy(np.float64), list(gt.index),
            f"the {len(gt):,} cells of the official NB101 file {data} (108 epochs, CIFAR-10): "
            "selection on the mean validation accuracy over the 3 repeats, the mean test "
            "accuracy reported", val_name="validation accuracy (mean of repeats)",
            test_name="test accuracy (mean of repeats)")


_OFFICIAL: dict = {}  # path -> {hash: code} of the official files loaded in this process
# |Spearman| of the paper's proxies over all 423,624 NB101 cells (Abdelfattah et al., ICLR 2021,
# Table 2: validation accuracy after 108 epochs)
PAPER_SPEARMAN = {"grad_norm": 0.198, "snip": 0.164, "grasp": 0.448, "fisher": 0.257,
                  "synflow": 0.372, "jacob_cov": 0.378}


def _load_official(path: str):
    from zcfast.data.nb101 import load_official

    gt = load_official(path)
    _OFFICIAL[path] = dict(zip(gt.index, (int(c) for c in gt["code"])))
    return gt


SPACE = NB101Space()
