"""NAS-Bench-NLP search space (Klyuchnikov et al., "NAS-Bench-NLP: Neural Architecture Search
Benchmark for Natural Language Processing", 2020): recurrent cells given as graphs ("recepies"),
their validity, canonical form and key, the benchmark generator's sampling rule, mutation,
neighbours, the predictor's encoding, the RL policy's decisions and the ``--archs`` format.
Every definition is in docs/nbnlp.md.

A cell reads the step's input ``x`` and its previous hidden states ``h_prev_0..h_prev_{T-1}``
(T = 1, 2 or 3) and computes nodes, each one op over named inputs: ``linear`` (a learned affine
map of each input, summed, one bias), ``blend`` (z * a + (1 - z) * b of its inputs (z, a, b)),
``elementwise_sum``, ``elementwise_prod`` and the activations ``activation_tanh``,
``activation_sigm``, ``activation_leaky_relu``. The nodes named ``h_new_0..h_new_{T-1}`` are the
new hidden states; ``h_new_0`` is also the cell's output.

Cells are equal networks exactly when their graphs are isomorphic (node names do not matter;
the inputs of every op but blend are unordered; the hidden slots 1..T-1 may be permuted
together). The canonical form relabels a cell by a canonical labelling of that graph; the key
is the MD5 of the canonical cell's JSON (32 hex digits) and a network's 64-bit code is the first
8 bytes of it. A cell does not fit in 64 bits, so the code is a handle: the compiled core
(``zcfast._C.nbnlp``) keeps every canonical cell it has seen in a process-wide table, and a code
decodes only once its cell has been parsed (or sampled, mutated) in this process. Every
compiled routine has a pure-Python reference here (``*_reference``) that the tests hold it to.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ---- ops (ids in this order everywhere: C++ core, features, decisions, weights' slots) ---------
LINEAR, BLEND, SUM, PROD, TANH, SIGM, LEAKY = range(7)
OP_NAMES = ("linear", "blend", "elementwise_sum", "elementwise_prod", "activation_tanh",
            "activation_sigm", "activation_leaky_relu")
ACTIVATIONS = (TANH, SIGM, LEAKY)
NUM_OPS = len(OP_NAMES)
# inputs an op takes: linear 1..3 (the generator draws 2 or 3), blend 3, sum/prod 2, activations 1
ARITY = {LINEAR: (1, 3), BLEND: (3, 3), SUM: (2, 2), PROD: (2, 2), TANH: (1, 1), SIGM: (1, 1),
         LEAKY: (1, 1)}

MAX_HIDDEN = 3
# op nodes of a cell: the generator's largest draw (3 hidden + 21 intermediate vertices, plus the
# activation a final linear always gets) before pruning
MAX_NODES = 25
MAX_INPUTS = 3
# source ids: x, h_prev_0..h_prev_2, then op node j at NODE0 + j
X_SRC = 0
NODE0 = 1 + MAX_HIDDEN
# the generator's settings (search_space.py of the benchmark, and the list of hidden-state counts
# and intermediate-vertex budgets its example notebook drew the benchmark's cells with)
GEN_HIDDEN = (1, 2, 3)
GEN_INTERMEDIATE = (7, 14, 21)
GEN_MAIN_WEIGHTS = (3, 1, 1, 1)  # linear, blend, elementwise_prod, elementwise_sum
GEN_LINEAR_INPUTS = ((2, 4), (3, 1))  # (inputs, weight)

NUM_FEATURES = NUM_OPS + 10 * NUM_OPS + MAX_HIDDEN + MAX_HIDDEN * NUM_OPS  # 101
NUM_SOURCES = NODE0 + MAX_NODES  # 29 source ids; decision value 29 = "no input"
NO_INPUT = NUM_SOURCES
ABSENT = NUM_OPS  # decision value of an empty node slot
DECISIONS_PER_SLOT = 2 + MAX_INPUTS  # op, role, three inputs
NUM_DECISIONS = MAX_NODES * DECISIONS_PER_SLOT
MAX_LEAVES = 100_000  # canonical labelling search limit (never reached by generated cells)

_HNEW = re.compile(r"h_new_(\d+)\Z")
_HPREV = re.compile(r"h_prev_(\d+)\Z")


@dataclass(frozen=True)
class Cell:
    """A cell in node form. ``hidden`` = T; ``ops[j]`` the op id of node j; ``inputs[j]`` its
    source ids in order (``X_SRC``, 1 + i for h_prev_i, ``NODE0`` + k for node k);
    ``outputs[i]`` the node that is h_new_i. Not necessarily valid or canonical."""

    hidden: int
    ops: tuple
    inputs: tuple
    outputs: tuple

    @property
    def n(self) -> int:
        return len(self.ops)

    def name(self, j: int) -> str:
        """Name of node j in the canonical JSON: h_new_i for outputs, node_j otherwise."""
        if j in self.outputs:
            return f"h_new_{self.outputs.index(j)}"
        return f"node_{j}"

    def source_name(self, s: int) -> str:
        if s == X_SRC:
            return "x"
        if s < NODE0:
            return f"h_prev_{s - 1}"
        return self.name(s - NODE0)

    def to_dict(self) -> dict:
        """The cell as a recepie (NAS-Bench-NLP's JSON form), nodes in node order."""
        return {self.name(j): {"op": OP_NAMES[op], "input": [self.source_name(s) for s in ins]}
                for j, (op, ins) in enumerate(zip(self.ops, self.inputs))}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


# ---------------------------------------------------------------------------------------------
# Parsing a recepie
# ---------------------------------------------------------------------------------------------
def from_recepie(recepie, what: str = "cell") -> Cell:
    """The cell of a recepie (a dict, or its JSON string) in node form, nodes in the recepie's
    order. Checks the format (names, ops, inputs that exist); validity is :func:`invalid_reason`."""
    if isinstance(recepie, (str, bytes)):
        try:
            recepie = json.loads(recepie)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what}: not JSON ({e.msg}): {str(recepie)[:80]!r}") from None
    if not isinstance(recepie, dict) or not recepie:
        raise ValueError(f"{what}: a recepie is a JSON object of nodes, got {str(recepie)[:80]!r}")
    names = list(recepie)
    outs = {}
    for k in names:
        if not isinstance(k, str):
            raise ValueError(f"{what}: node names are strings, got {k!r}")
        if k == "x" or _HPREV.match(k):
            raise ValueError(f"{what}: {k!r} is a cell input and cannot be a node")
        m = _HNEW.match(k)
        if m:
            outs[int(m.group(1))] = k
    if not outs:
        raise ValueError(f"{what}: no node is named h_new_0 (the cell's output)")
    T = len(outs)
    if sorted(outs) != list(range(T)):
        raise ValueError(f"{what}: the new hidden states must be h_new_0..h_new_{T - 1}, got "
                         f"{', '.join(outs[i] for i in sorted(outs))}")
    if T > MAX_HIDDEN:
        raise ValueError(f"{what}: {T} hidden states (at most {MAX_HIDDEN})")
    index = {k: j for j, k in enumerate(names)}
    ops, inputs = [], []
    for k in names:
        spec = recepie[k]
        if not isinstance(spec, dict) or set(spec) != {"op", "input"}:
            raise ValueError(f"{what}: node {k!r} must be {{\"op\": ..., \"input\": [...]}}, got "
                             f"{str(spec)[:80]!r}")
        op = spec["op"]
        if op not in OP_NAMES:
            raise ValueError(f"{what}: node {k!r} has unknown op {op!r}; NAS-Bench-NLP ops are "
                             f"{', '.join(OP_NAMES)}")
        ins = spec["input"]
        if isinstance(ins, (str, bytes)) or not isinstance(ins, Sequence):
            raise ValueError(f"{what}: the input of node {k!r} must be a list of names, got {ins!r}")
        src = []
        for s in ins:
            if s == "x":
                src.append(X_SRC)
            elif isinstance(s, str) and _HPREV.match(s):
                i = int(_HPREV.match(s).group(1))
                if i >= T:
                    raise ValueError(f"{what}: node {k!r} reads {s!r}, but the cell has only "
                                     f"{T} hidden state(s) (h_new_0..h_new_{T - 1})")
                src.append(1 + i)
            elif s in index:
                src.append(NODE0 + index[s])
            else:
                raise ValueError(f"{what}: node {k!r} reads {s!r}, which is neither x, an h_prev "
                                 "nor a node of the cell")
        ops.append(OP_NAMES.index(op))
        inputs.append(tuple(src))
    return Cell(T, tuple(ops), tuple(inputs), tuple(index[outs[i]] for i in range(T)))


# ---------------------------------------------------------------------------------------------
# Validity
# ---------------------------------------------------------------------------------------------
def _topo_order(cell: Cell):
    """Nodes in a topological order, or None when the graph has a cycle."""
    n = cell.n
    indeg = [sum(1 for s in ins if s >= NODE0) for ins in cell.inputs]
    users = [[] for _ in range(n)]
    for j, ins in enumerate(cell.inputs):
        for s in ins:
            if s >= NODE0:
                users[s - NODE0].append(j)
    order, ready = [], [j for j in range(n) if indeg[j] == 0]
    while ready:
        j = ready.pop(0)
        order.append(j)
        for u in users[j]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    return order if len(order) == n else None


def _ancestors_of_outputs(cell: Cell) -> set:
    """Nodes from which some h_new is reachable (the outputs included)."""
    seen, stack = set(cell.outputs), list(cell.outputs)
    while stack:
        j = stack.pop()
        for s in cell.inputs[j]:
            if s >= NODE0 and s - NODE0 not in seen:
                seen.add(s - NODE0)
                stack.append(s - NODE0)
    return seen


def invalid_reason(cell: Cell) -> str | None:
    """Why a cell (node form) is not a network of the space, or None when it is valid: at most
    25 op nodes and 3 hidden states, the arity of every op, distinct inputs per node, x read by
    linear nodes only, no cycle, every node feeding some new hidden state, and x and every
    h_prev read."""
    T, n = cell.hidden, cell.n
    if not 1 <= T <= MAX_HIDDEN or len(cell.outputs) != T:
        return f"{T} hidden states (1 to {MAX_HIDDEN})"
    if n > MAX_NODES:
        return f"{n} op nodes (at most {MAX_NODES}, the generator's largest)"
    if len(set(cell.outputs)) != T or not all(0 <= o < n for o in cell.outputs):
        return "the new hidden states are not distinct nodes"
    for j, (op, ins) in enumerate(zip(cell.ops, cell.inputs)):
        lo, hi = ARITY[op]
        if not lo <= len(ins) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            return f"node {cell.name(j)} ({OP_NAMES[op]}) has {len(ins)} inputs ({want} expected)"
        if len(set(ins)) != len(ins):
            return f"node {cell.name(j)} reads the same input twice"
        for s in ins:
            if not (s == X_SRC or 1 <= s <= T or NODE0 <= s < NODE0 + n):
                return f"node {cell.name(j)} reads an unknown source {s}"
            if s == NODE0 + j:
                return f"node {cell.name(j)} reads itself"
            if s == X_SRC and op != LINEAR:
                return (f"node {cell.name(j)} ({OP_NAMES[op]}) reads x: only linear nodes can (x "
                        "has the layer's input size, every other value the hidden size)")
    if _topo_order(cell) is None:
        return "the cell graph has a cycle"
    live = _ancestors_of_outputs(cell)
    if len(live) != n:
        dead = min(set(range(n)) - live)
        return f"node {cell.name(dead)} feeds no new hidden state (remove it)"
    used = {s for ins in cell.inputs for s in ins if s < NODE0}
    for s in range(1 + T):
        if s not in used:
            return f"the cell never reads {cell.source_name(s)}"
    return None


def is_valid(cell: Cell) -> bool:
    return invalid_reason(cell) is None


def generator_problem(cell: Cell) -> str | None:
    """Why the benchmark's generator could not have drawn this valid cell, or None: linear nodes
    read 2 or 3 of x, the h_prev and activation nodes; no new hidden state reads an h_prev directly (the generator's sanity check). The space
    accepts such cells (the benchmark trained its GRU and LSTM examples, which break these
    rules); sampling and mutation keep to them where docs/nbnlp.md says so."""
    for j, (op, ins) in enumerate(zip(cell.ops, cell.inputs)):
        if op == LINEAR:
            if not 2 <= len(ins) <= 3:
                return f"linear node {cell.name(j)} has {len(ins)} inputs (2 or 3)"
            for s in ins:
                if s >= NODE0 and cell.ops[s - NODE0] not in ACTIVATIONS:
                    return f"linear node {cell.name(j)} reads a {OP_NAMES[cell.ops[s - NODE0]]} node"
    for i, o in enumerate(cell.outputs):
        if any(1 <= s < NODE0 for s in cell.inputs[o]):
            return f"h_new_{i} reads an h_prev directly"
    return None


def check_cell(cell: Cell, what: str = "cell") -> Cell:
    why = invalid_reason(cell)
    if why is not None:
        raise ValueError(f"invalid NAS-Bench-NLP {what}: {why}")
    return cell


# ---------------------------------------------------------------------------------------------
# Canonical form (reference of the compiled canonical labelling)
# ---------------------------------------------------------------------------------------------
def _graph(cell: Cell):
    """Vertices 0 (x), 1..T (h_prev), 1+T+j (node j) with invariant labels (depth, kind, role),
    and labelled in/out edge lists. Edge labels: 0 an input of a non-blend op, 1 + p the p-th
    input of a blend, 4 the recurrence h_new_i -> h_prev_i."""
    T, n = cell.hidden, cell.n
    nv = 1 + T + n

    def vid(s):
        return s if s < NODE0 else 1 + T + (s - NODE0)

    depth = [0] * nv
    for j in _topo_order(cell):
        depth[1 + T + j] = 1 + max(depth[vid(s)] for s in cell.inputs[j])
    labels = [(0, 0, 0)] + [(0, 1 if i == 0 else 2, 0) for i in range(T)]
    for j in range(n):
        role = 0
        if j in cell.outputs:
            role = 1 if cell.outputs.index(j) == 0 else 2
        labels.append((depth[1 + T + j], 3 + cell.ops[j], role))
    ins = [[] for _ in range(nv)]
    outs = [[] for _ in range(nv)]
    for j, ins_j in enumerate(cell.inputs):
        for p, s in enumerate(ins_j):
            lab = 1 + p if cell.ops[j] == BLEND else 0
            ins[1 + T + j].append((lab, vid(s)))
            outs[vid(s)].append((lab, 1 + T + j))
    for i, o in enumerate(cell.outputs):
        ins[1 + i].append((4, 1 + T + o))
        outs[1 + T + o].append((4, 1 + i))
    return labels, ins, outs


def _dense_ranks(keys) -> list:
    order = {k: r for r, k in enumerate(sorted(set(keys)))}
    return [order[k] for k in keys]


def _refine(col, ins, outs) -> list:
    count = len(set(col))
    while True:
        sig = [(col[v], sorted((lab, col[u]) for lab, u in ins[v]),
                sorted((lab, col[w]) for lab, w in outs[v])) for v in range(len(col))]
        new = _dense_ranks([(c, tuple(a), tuple(b)) for c, a, b in sig])
        if len(set(new)) == count:
            return new
        col, count = new, len(set(new))


def _certificate(pi, labels, ins) -> list:
    order = sorted(range(len(pi)), key=lambda v: pi[v])
    out = []
    for v in order:
        e = sorted((lab, pi[u]) for lab, u in ins[v])
        out += [*labels[v], len(e)]
        for lab, r in e:
            out += [lab, r]
    return out


def canonical_labelling_reference(cell: Cell) -> list:
    """pi[v] = canonical rank of vertex v (individualisation-refinement, the lexicographically
    smallest certificate over the whole search tree; see docs/nbnlp.md)."""
    labels, ins, outs = _graph(cell)
    best = [None, None]
    leaves = [0]

    def search(col):
        col = _refine(col, ins, outs)
        if len(set(col)) == len(col):
            leaves[0] += 1
            if leaves[0] > MAX_LEAVES:
                raise ValueError(f"canonical labelling of this cell needs more than {MAX_LEAVES} "
                                 "leaves (a very symmetric cell)")
            cert = _certificate(col, labels, ins)
            if best[0] is None or cert < best[0]:
                best[0], best[1] = cert, col
            return
        counts = Counter(col)
        k = min(c for c, m in counts.items() if m > 1)
        for v in [u for u in range(len(col)) if col[u] == k]:
            c2 = [c + 1 if c > k else c for c in col]
            for u in range(len(col)):
                if col[u] == k and u != v:
                    c2[u] = k + 1
            search(c2)

    search(_dense_ranks(labels))
    return best[1]


def canonical_reference(cell: Cell) -> Cell:
    """The canonical form of a valid cell: nodes in canonical (topological) order, the hidden
    slots 1..T-1 in canonical order, inputs of non-blend ops in ascending source order."""
    check_cell(cell)
    T, n = cell.hidden, cell.n
    pi = canonical_labelling_reference(cell)
    new_node = [pi[1 + T + j] - (1 + T) for j in range(n)]

    def new_src(s):
        if s == X_SRC:
            return X_SRC
        if s < NODE0:
            return pi[s]  # h_prev_i is vertex 1 + i; its rank is 1 + new index
        return NODE0 + new_node[s - NODE0]

    ops, inputs = [0] * n, [()] * n
    for j in range(n):
        ins = [new_src(s) for s in cell.inputs[j]]
        if cell.ops[j] != BLEND:
            ins.sort()
        ops[new_node[j]] = cell.ops[j]
        inputs[new_node[j]] = tuple(ins)
    outputs = [0] * T
    for i, o in enumerate(cell.outputs):
        outputs[pi[1 + i] - 1] = new_node[o]
    return Cell(T, tuple(ops), tuple(inputs), tuple(outputs))


def hash_reference(cell: Cell) -> str:
    """Key of a valid cell: MD5 (32 hex digits) of its canonical form's JSON."""
    return hashlib.md5(canonical_reference(cell).to_json().encode()).hexdigest()


def code_of_hash(h: str) -> int:
    """64-bit code of a key: its first 8 bytes, big-endian."""
    if not isinstance(h, str) or len(h) != 32 or any(c not in "0123456789abcdef" for c in h):
        raise ValueError(f"an NB-NLP key is 32 lower-case hex digits, got {h!r}")
    return int(h[:16], 16)


def prune_reference(cell: Cell) -> Cell:
    """The cell without the nodes that feed no new hidden state (the generator's
    ``_remove_redundant_nodes``), node order kept."""
    live = sorted(_ancestors_of_outputs(cell))
    where = {j: k for k, j in enumerate(live)}

    def m(s):
        return s if s < NODE0 else NODE0 + where[s - NODE0]

    return Cell(cell.hidden, tuple(cell.ops[j] for j in live),
                tuple(tuple(m(s) for s in cell.inputs[j]) for j in live),
                tuple(where[o] for o in cell.outputs))


# ---------------------------------------------------------------------------------------------
# The generator's sampling rule, moves, features, decisions (references)
# ---------------------------------------------------------------------------------------------
def _pick(rng, pool: list, k: int) -> list:
    """k distinct items of ``pool`` in random order (numpy's choice(replace=False) law)."""
    pool = list(pool)
    return [pool.pop(rng.below(len(pool))) for _ in range(k)]


def generate_reference(rng, hidden: int, intermediate: int):
    """One draw of the benchmark's RecepieGenerator (search_space.py) with ``hidden`` states and
    ``intermediate`` vertices, on zcfast's generator: (pruned cell, passes the sanity check)."""
    T = hidden
    ops, inputs, acts = [], [], []
    i = 0
    while i < T + intermediate:
        r = rng.below(sum(GEN_MAIN_WEIGHTS))
        if r < GEN_MAIN_WEIGHTS[0]:  # linear, then its activation
            k = 2 if rng.below(5) < GEN_LINEAR_INPUTS[0][1] else 3
            cands = [X_SRC] + [1 + h for h in range(T)] + acts
            ops.append(LINEAR)
            inputs.append(tuple(_pick(rng, cands, min(k, len(cands)))))
            i += 1
            ops.append(ACTIVATIONS[rng.below(3)])
            inputs.append((NODE0 + len(ops) - 2,))
            acts.append(NODE0 + len(ops) - 1)
            i += 1
        else:
            op = (BLEND, PROD, SUM)[r - GEN_MAIN_WEIGHTS[0]]
            k = 3 if op == BLEND else 2
            cands = [1 + h for h in range(T)] + [NODE0 + j for j in range(len(ops))]
            if k <= len(cands):
                ops.append(op)
                inputs.append(tuple(_pick(rng, cands, k)))
                i += 1
    outputs = tuple(_pick(rng, list(range(len(ops))), T))
    cell = prune_reference(Cell(T, tuple(ops), tuple(inputs), outputs))
    used = {s for ins in cell.inputs for s in ins if s < NODE0}
    ok = all(s in used for s in range(1 + T)) and not any(
        1 <= s < NODE0 for o in cell.outputs for s in cell.inputs[o])
    return cell, ok


def sample_reference(n: int, seed: int) -> list:
    """``n`` canonical cells drawn like the benchmark's cell list: T uniform in (1, 2, 3), the
    intermediate-vertex budget uniform in (7, 14, 21), then generator draws until one passes the
    sanity check (repeats possible)."""
    from zcfast.spaces._rng import Rng

    rng = Rng(seed)
    out = []
    for _ in range(n):
        T = GEN_HIDDEN[rng.below(3)]
        inter = GEN_INTERMEDIATE[rng.below(3)]
        while True:
            cell, ok = generate_reference(rng, T, inter)
            if ok:
                out.append(canonical_reference(cell))
                break
    return out


def _descendants(cell: Cell, j: int) -> set:
    users = [[] for _ in range(cell.n)]
    for k, ins in enumerate(cell.inputs):
        for s in ins:
            if s >= NODE0:
                users[s - NODE0].append(k)
    seen, stack = {j}, [j]
    while stack:
        for u in users[stack.pop()]:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen


def moves_reference(cell: Cell) -> list:
    """Every move of a canonical cell in a fixed order; each entry is the canonical cell it gives
    or None when that cell is invalid. Op moves first (node order): an activation becomes one of
    the two others (ascending id), a sum a product and back. Then edge moves (node, input
    position, new source ascending): the input is rerouted to a source the generator could have
    connected to that op (linear: x, an h_prev or an activation node; blend, sum, product: an
    h_prev or any node; never an h_prev into a new hidden state), that the node does not read
    already and that does not create a cycle; nodes left feeding nothing are pruned."""
    out = []
    T, n = cell.hidden, cell.n
    for j, op in enumerate(cell.ops):
        alts = [a for a in ACTIVATIONS if a != op] if op in ACTIVATIONS else (
            [PROD] if op == SUM else [SUM] if op == PROD else [])
        for a in alts:
            ops = list(cell.ops)
            ops[j] = a
            out.append(_finish(Cell(T, tuple(ops), cell.inputs, cell.outputs)))
    for j, op in enumerate(cell.ops):
        if op in ACTIVATIONS:
            continue  # an activation's input: the generator ties it to its linear node
        desc = _descendants(cell, j)
        srcs = [X_SRC] if op == LINEAR else []
        if j not in cell.outputs:
            srcs += [1 + h for h in range(T)]
        srcs += [NODE0 + k for k in range(n) if k not in desc
                 and (op != LINEAR or cell.ops[k] in ACTIVATIONS)]
        for p in range(len(cell.inputs[j])):
            for s in srcs:
                if s in cell.inputs[j]:
                    continue
                ins = list(cell.inputs)
                row = list(ins[j])
                row[p] = s
                ins[j] = tuple(row)
                out.append(_finish(prune_reference(Cell(T, cell.ops, tuple(ins), cell.outputs))))
    return out


def _finish(cell: Cell):
    return canonical_reference(cell) if is_valid(cell) else None


def neighbours_reference(cell: Cell) -> list:
    """Canonical cells one move away that are other networks, once per key, in move order."""
    own = hash_reference(cell)
    seen, out = {own}, []
    for c in moves_reference(cell):
        if c is not None:
            h = hashlib.md5(c.to_json().encode()).hexdigest()
            if h not in seen:
                seen.add(h)
                out.append(c)
    return out


def mutate_reference(cell: Cell, seed: int) -> Cell:
    """A move drawn uniformly, redrawn until it gives a valid cell of another network; a cell
    without such a move gets a fresh sample (from the same generator)."""
    from zcfast.spaces._rng import Rng

    rng = Rng(seed)
    own = hash_reference(cell)
    mv = moves_reference(cell)
    good = [c for c in mv if c is not None and hashlib.md5(c.to_json().encode()).hexdigest() != own]
    if not good:
        T = GEN_HIDDEN[rng.below(3)]
        inter = GEN_INTERMEDIATE[rng.below(3)]
        while True:
            c, ok = generate_reference(rng, T, inter)
            if ok and hash_reference(c) != own:
                return canonical_reference(c)
    while True:
        c = mv[rng.below(len(mv))]
        if c is not None and hashlib.md5(c.to_json().encode()).hexdigest() != own:
            return c


def _source_kind(cell: Cell, s: int) -> int:
    if s == X_SRC:
        return 0
    if s < NODE0:
        return 1 if s == 1 else 2
    return 3 + cell.ops[s - NODE0]


def features_reference(cell: Cell) -> np.ndarray:
    """(101,) float32 predictor input of a canonical cell: op counts (7), edge counts by (source
    kind: x, h_prev_0, another h_prev or the source's op; target op) (70), T one-hot (3), the op
    of each new hidden state one-hot (3 x 7, zero rows for missing states)."""
    f = np.zeros(NUM_FEATURES, dtype=np.float32)
    for j, op in enumerate(cell.ops):
        f[op] += 1
        for s in cell.inputs[j]:
            f[NUM_OPS + _source_kind(cell, s) * NUM_OPS + op] += 1
    base = NUM_OPS * 11
    f[base + cell.hidden - 1] = 1
    for i, o in enumerate(cell.outputs):
        f[base + MAX_HIDDEN + i * NUM_OPS + cell.ops[o]] = 1
    return f


def to_decisions_reference(cell: Cell) -> list:
    """The RL policy's 125 decisions of a canonical cell: per node slot 0..24 its op (7 = no
    node), its role (0 none, 1 + i for h_new_i) and three input sources (29 = no input)."""
    d = []
    for j in range(MAX_NODES):
        if j < cell.n:
            role = cell.outputs.index(j) + 1 if j in cell.outputs else 0
            ins = list(cell.inputs[j]) + [NO_INPUT] * (MAX_INPUTS - len(cell.inputs[j]))
            d += [cell.ops[j], role, *ins]
        else:
            d += [ABSENT, 0] + [NO_INPUT] * MAX_INPUTS
    return d


def from_decisions_reference(d: Sequence[int]):
    """The canonical cell of 125 decisions, None when they describe no valid cell."""
    d = [int(v) for v in d]
    if len(d) != NUM_DECISIONS:
        raise ValueError(f"{NUM_DECISIONS} decisions expected, got {len(d)}")
    slots = [j for j in range(MAX_NODES) if d[j * DECISIONS_PER_SLOT] != ABSENT]
    where = {j: k for k, j in enumerate(slots)}
    ops, inputs, roles = [], [], {}
    for j in slots:
        op, role, *ins = d[j * DECISIONS_PER_SLOT:(j + 1) * DECISIONS_PER_SLOT]
        src = []
        for s in ins:
            if s == NO_INPUT:
                continue
            if s >= NODE0:
                if s - NODE0 not in where:
                    return None
                s = NODE0 + where[s - NODE0]
            src.append(s)
        ops.append(op)
        inputs.append(tuple(src))
        if role:
            if role - 1 in roles:
                return None
            roles[role - 1] = where[j]
    T = len(roles)
    if T == 0 or sorted(roles) != list(range(T)):
        return None
    if any(1 + T <= s < NODE0 for ins in inputs for s in ins):
        return None
    cell = Cell(T, tuple(ops), tuple(inputs), tuple(roles[i] for i in range(T)))
    return canonical_reference(cell) if is_valid(cell) else None


# ---------------------------------------------------------------------------------------------
# Compiled versions (the code table) and the logged runs
# ---------------------------------------------------------------------------------------------
def intern(cell: Cell, tag: int = 0) -> int:
    """Code of a valid cell (registered in this process's code table, canonicalised by the
    compiled core). ``tag`` > 0: a handle of the same network that carries a logged recepie_id."""
    from zcfast import _C

    check_cell(cell)
    return int(_C.nbnlp.intern(cell.hidden, list(cell.ops), [list(i) for i in cell.inputs],
                               list(cell.outputs), int(tag)))


def cell_of(code: int) -> Cell:
    """The canonical cell of a code."""
    from zcfast import _C

    h, ops, ins, outs = _C.nbnlp.cell(int(code))
    return Cell(h, tuple(ops), tuple(tuple(i) for i in ins), tuple(outs))


def network_code(code: int) -> int:
    """The untagged code of the network a code names (= its 64-bit key)."""
    from zcfast import _C

    return int(_C.nbnlp.key(int(code)))


@functools.cache
def _logged():
    """The logged runs with their network codes: DataFrame (file order) of run_table() plus
    ``code`` (tagged with the recepie_id), ``network`` (untagged code) and ``key``."""
    from zcfast import _C
    from zcfast.data.nbnlp import run_table

    t = run_table()
    codes, nets, keys = [], [], []
    for rid, rec in zip(t["recepie_id"], t["recepie"]):
        c = intern(from_recepie(rec, f"recepie_id {rid}"), tag=int(rid))
        codes.append(c)
        nets.append(network_code(c))
        keys.append(_C.nbnlp.hash(c))
    t["code"] = np.asarray(codes, dtype=np.uint64)
    t["network"] = np.asarray(nets, dtype=np.uint64)
    t["key"] = keys
    return t


def logged_runs(finished: bool = True):
    """The logged runs (one row per run, file order) with ``code``, ``network`` and ``key``
    columns; ``finished``: only the 341 runs with status OK."""
    t = _logged()
    return (t[t["finished"]] if finished else t).reset_index(drop=True).copy()


def _recepie_codes() -> dict:
    t = _logged()
    return dict(zip(t["recepie_id"].tolist(), (int(c) for c in t["code"])))


def dataset_name(name) -> str:
    """'wikitext2' for its aliases (zcfast.data.dataset_name); ValueError for any other dataset."""
    from zcfast.data import dataset_name as canonical

    try:
        ds = canonical(name)
    except ValueError:
        ds = None
    if ds != "wikitext2":
        raise ValueError(f"unknown NAS-Bench-NLP dataset {name!r}: the bundled logs are "
                         "WikiText-2 ('wikitext2')")
    return ds


# ---------------------------------------------------------------------------------------------
# The space interface (zcfast.spaces.base)
# ---------------------------------------------------------------------------------------------
from zcfast.spaces.base import Space as _Space  # noqa: E402  (after the functions it wraps)
from zcfast.spaces.base import Universe as _Universe  # noqa: E402

_HEX = set("0123456789abcdef")


class NBNLPSpace(_Space):
    """NAS-Bench-NLP behind the space interface (docs/nbnlp.md, docs/spaces.md).

    code = a handle of a canonical cell (the network's 64-bit key, or a tagged handle of a
    logged run that carries its recepie_id); key = MD5 of the canonical cell's JSON, so isomorphic
    cells are one network. Score rows carry ``key``, ``recepie_id`` (logged runs; empty
    otherwise) and ``arch`` (the canonical recepie). Ground truth: the bundled WikiText-2 logs, a
    pool of the networks of the 341 finished runs.
    """

    name = "nbnlp"
    key_column = "id"
    id_columns = ("id", "recepie_id", "key", "arch")
    datasets = ("wikitext2",)
    size = None
    default_batch_size = 20  # the logs' batch_size (the bptt is the logs' 70: BPTT)

    def hot(self):
        return _hot()

    # ---- identity ------------------------------------------------------------------------------
    def parse(self, item) -> int:
        """A logged ``recepie_id`` (int or digits; its tagged code), a cell graph (recepie dict,
        its JSON, or a :class:`Cell`), a key (32 hex digits of a network known to this process or
        logged) or a code known to this process."""
        if isinstance(item, Cell):
            return intern(item)
        if isinstance(item, dict):
            return intern(from_recepie(item))
        if isinstance(item, (bool, np.bool_)):
            raise ValueError(f"cannot read {item!r} as an NB-NLP architecture")
        if isinstance(item, (int, np.integer)):
            rec = _recepie_codes()
            if int(item) in rec:
                return rec[int(item)]
            from zcfast import _C

            if 0 < int(item) < 2**64 and _C.nbnlp.known(int(item)):
                return int(item)
            raise ValueError(f"{item} is neither a logged recepie_id nor the code of an NB-NLP cell "
                             "known to this process (give the cell graph as JSON)")
        if isinstance(item, str):
            s = item.strip()
            if s.startswith("{"):
                return intern(from_recepie(s))
            if len(s) == 32 and set(s) <= _HEX:
                return self.from_key(s)
            if s.isdigit():
                rec = _recepie_codes()
                if int(s) in rec:
                    return rec[int(s)]
                raise ValueError(f"{s} is not a recepie_id of the bundled NAS-Bench-NLP logs")
        raise ValueError(f"cannot read {str(item)[:80]!r} as an NB-NLP architecture: give a logged "
                         "recepie_id, a cell graph (the logs' recepie JSON) or a key")

    def parse_file(self, path) -> list:
        """One logged recepie_id or one cell graph (JSON) per line; blank lines and lines
        starting with # skipped. The same item (a recepie_id, or a network given as a graph)
        listed twice raises ValueError naming both lines; different runs of one network are
        different items."""
        out, seen = [], {}
        with open(path) as f:
            for k, line in enumerate(f, 1):
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                try:
                    c = self.parse(s)
                except ValueError as e:
                    raise ValueError(f"{path}:{k}: {e}") from None
                if c in seen:
                    raise ValueError(f"{path}:{k}: this NB-NLP architecture is already listed on "
                                     f"line {seen[c]}")
                seen[c] = k
                out.append(c)
        if not out:
            raise ValueError(f"{path} holds no NB-NLP architecture")
        return out

    def key(self, code: int) -> str:
        from zcfast import _C

        return _C.nbnlp.hash(int(code))

    def keys(self, codes) -> list:
        from zcfast import _C

        return _C.nbnlp.hashes(np.asarray(codes, dtype=np.uint64))

    def key_from_row(self, value) -> str:
        """The network key of a score row's ``id`` (a logged recepie_id, or the key itself)."""
        v = str(value).strip()
        return self.key(self.parse(v)) if v.isdigit() else v

    def from_key(self, key: str) -> int:
        from zcfast import _C

        c = code_of_hash(str(key))
        _logged()  # the logged networks are known
        if not _C.nbnlp.known(c) or _C.nbnlp.hash(c) != key:
            raise ValueError(f"NB-NLP key {key!r} is not a network known to this process (a logged "
                             "one, or one parsed before): give the cell graph as JSON")
        return c

    def describe(self, code: int) -> str:
        from zcfast import _C

        return _C.nbnlp.json(int(code))

    def row_fields(self, code: int) -> dict:
        from zcfast import _C

        tag = int(_C.nbnlp.tag(int(code)))
        key = self.key(code)
        return {"id": str(tag) if tag else key, "recepie_id": tag if tag else "", "key": key,
                "arch": self.describe(code)}

    def all_archs(self, dataset: str = "wikitext2", data=None) -> list:
        """Codes of the finished logged runs, file order (``--archs all``): 341 runs under 340
        recepie_ids (recepie_id 1002429 was trained twice; its row is the mean of both)."""
        dataset_name(dataset)
        if data is not None:
            raise ValueError("the NB-NLP logs are bundled; --data is not used for nbnlp")
        return list(dict.fromkeys(int(c) for c in logged_runs(True)["code"]))

    # ---- networks ------------------------------------------------------------------------------
    def num_classes(self, dataset: str) -> int:
        from zcfast.data.nbnlp import NTOKEN

        dataset_name(dataset)
        return NTOKEN

    def sizes(self, dataset: str = "wikitext2", **options):
        """The model's dimensions: the logs' set-up (33,278 words, emsize 400, nhid 600, 3
        layers), or ``ntoken``/``emsize``/``nhid``/``nlayers`` given."""
        from zcfast.spaces.nbnlp_model import Sizes

        base = {"ntoken": self.num_classes(dataset)}
        extra = set(options) - {"ntoken", "emsize", "nhid", "nlayers"}
        if extra:
            raise ValueError(f"unknown NB-NLP model option(s) {sorted(extra)}")
        return Sizes(**{**base, **{k: v for k, v in options.items() if v is not None}})

    def build_model(self, code: int, dataset: str = "wikitext2", *, seed: int | None = 0,
                    dtype=None, device=None, **options):
        import torch

        from zcfast.spaces.nbnlp_model import build_model

        return build_model(int(code), sizes=self.sizes(dataset, **options), seed=seed,
                           dtype=dtype or torch.float32, device=device)

    def packed(self, codes, dataset: str = "wikitext2", *, seed: int = 0, device="cpu",
               backend=None, dtype=None, input_size=None, **options):
        """The packed engine (``input_size``, the image width the image spaces take, is not
        used: a batch of any bptt is scored)."""
        import torch

        from zcfast.batched.nbnlp import PackedNBNLP

        return PackedNBNLP([int(c) for c in codes], sizes=self.sizes(dataset, **options),
                           seed=seed, device=device, dtype=dtype or torch.float32, backend=backend)

    def proxy_problem(self, proxy: str) -> str | None:
        from zcfast.spaces.nbnlp_model import NOT_APPLICABLE

        return NOT_APPLICABLE.get(proxy)

    def packed_proxies(self) -> tuple:
        from zcfast.batched.nbnlp import SUPPORTED

        return tuple(SUPPORTED)

    def minibatch(self, dataset: str = "wikitext2", batch_size: int | None = None, seed: int = 0,
                  *, images: str = "default", data_root=None, normalization: str = "paper",
                  bptt: int | None = None):
        """MiniBatch of token tensors x, y (B, T): one seeded batch of real WikiText-2 text at
        the logs' batch_size (20) and bptt (70) unless given (zcfast.data.nbnlp.minibatch). The
        loss of the networks on it is F.cross_entropy(net(x), y). The image options exist for
        the interface: anything but their defaults raises."""
        from zcfast.data import TEXT_SOURCES, resolve_images
        from zcfast.spaces.base import MiniBatch

        ds = dataset_name(dataset)
        name = resolve_images(ds, images)
        if data_root is not None:
            raise ValueError("--data-root is for CIFAR downloads; NB-NLP scores on its bundled "
                             "WikiText-2 text")
        if normalization != "paper":
            raise ValueError(f"--normalization {normalization!r} is for image datasets")
        src = _TextSource(bptt)
        x, y = src.minibatch(batch_size, seed)
        assert name == TEXT_SOURCES[ds]
        return MiniBatch(x, y, name, src.description, src, {"bptt": int(x.shape[1])})

    # ---- data --------------------------------------------------------------------------------
    def targets(self, dataset: str = "wikitext2", data=None):
        from zcfast.data.nbnlp import EARLY_EPOCHS
        from zcfast.spaces.base import Targets

        dataset_name(dataset)
        if data is not None:
            raise ValueError("the NB-NLP logs are bundled; --data is not used for nbnlp")
        base = {f"val ppl after {e} epoch{'s' if e > 1 else ''} (reduced training)":
                f"neg_val_ppl_epoch{e}" for e in EARLY_EPOCHS}
        return Targets(targets_table(), DEFAULT_TARGET, base, {}, {},
                       "NAS-Bench-NLP WikiText-2, 50 epochs (bundled logs): minus perplexity, "
                       "mean over a recepie_id's or network's runs")

    def universe(self, dataset: str = "wikitext2", data=None) -> _Universe:
        ds = dataset_name(dataset)
        if data is not None:
            raise ValueError("the NB-NLP logs are bundled; --data is not used for nbnlp")
        t = logged_runs(True)
        g = t.groupby("network", sort=False)
        val = -g["best_val_loss"].mean()
        test = -g["test_at_best_val"].mean()
        keys = g["key"].first()
        nets = np.asarray(val.index, dtype=np.uint64)
        return _Universe(
            "nbnlp", ds, nets, val.to_numpy(np.float64), test.to_numpy(np.float64), list(keys),
            f"the {len(nets)} distinct networks of the {len(t)} finished NAS-Bench-NLP WikiText-2 "
            "runs (bundled logs; a pool, not the whole space): selection on minus the best "
            "validation log-perplexity over the 50 epochs, the curves report minus the test "
            "log-perplexity at that epoch (nats; mean over a network's runs)",
            val_name="-log validation perplexity (best epoch, mean of runs)",
            test_name="-log test perplexity (at the best validation epoch, mean of runs)",
            extra={"runs": t.groupby("network", sort=False).size().to_numpy()})


class _TextSource:
    """Seeded batches of the bundled WikiText-2 validation text (``minibatch(batch_size, seed)``;
    None: the logs' batch_size 20; ``bptt``: the logs' 70 unless given)."""

    description = ("real WikiText-2 text (the validation split, bundled; token ids by first "
                   "appearance, the training split being unavailable offline: docs/nbnlp.md)")

    def __init__(self, bptt: int | None = None):
        from zcfast.data import nbnlp as data

        st = data.setup()
        self.batch_size = st["batch_size"]
        self.bptt = st["bptt"] if bptt is None else bptt

    def minibatch(self, batch_size, seed):
        from zcfast.data import nbnlp as data

        return data.minibatch(self.batch_size if batch_size is None else batch_size, self.bptt,
                              seed)


# score-file targets (higher is better, as accuracy: minus the perplexity) and the columns of
# the run table they come from (nats)
TARGETS = {"neg_final_val_ppl": "final_val_loss", "neg_best_val_ppl": "best_val_loss",
           "neg_test_ppl": "test_at_best_val", "neg_final_test_ppl": "final_test_loss"}
DEFAULT_TARGET = "neg_final_val_ppl"


def targets_table():
    """DataFrame of the targets and the reduced-training baselines (minus the validation
    perplexity after epoch 1, 3, 5, 10), indexed by score-file id: every finished run's
    recepie_id (the mean of a recepie_id's runs) and every logged network's key (the mean of its
    runs: a cell graph given by the user joins with the logs through it). Perplexity =
    exp(mean of the runs' losses)."""
    import pandas as pd

    from zcfast.data.nbnlp import EARLY_EPOCHS

    t = logged_runs(True)
    cols = {**TARGETS, **{f"neg_val_ppl_epoch{e}": f"val_loss_epoch{e}" for e in EARLY_EPOCHS}}
    parts = []
    for by in ("recepie_id", "key"):
        g = t.groupby(t[by].astype(str), sort=False)
        parts.append(pd.DataFrame({c: -np.exp(g[src].mean()) for c, src in cols.items()}))
    out = pd.concat(parts)
    out.index.name = "id"
    return out


@functools.cache
def _hot():
    from zcfast import _C

    return _C.space.nbnlp()


SPACE = NBNLPSpace()
