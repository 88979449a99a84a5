"""NAS-Bench-101 ground truth: the bundled 500-record NASLib subset and a TensorFlow-free
reader of the official ``nasbench_only108.tfrecord`` / ``nasbench_full.tfrecord`` files.

Bundled subset (``_bundled/nb101_naslib_subset.npz``, sources in ``_bundled/README.md``): 500
records of NASLib's zero-cost benchmark (``zc_nasbench101.json``), each a randomly sampled
(unpruned) cell with its 108-epoch CIFAR-10 validation accuracy -- one of the benchmark's 3
training repeats, drawn at random by the NB101 API's ``query`` -- and NASLib's proxy scores.
Under the official hash they are only **292 distinct cells**: 48 cells appear more than once (one
55 times), and their records carry values of different repeats. :func:`subset_groundtruth`
therefore has one row per hash with every record's value and their mean (the usual target).

Official file format (docs/nb101.md, "data"): TFRecord framing -- per record a little-endian
uint64 length, the masked CRC-32C of those 8 bytes (uint32), the data, the masked CRC-32C of
the data -- each record a JSON list ``[hash, epochs, adjacency, operations, metrics]``:
adjacency a string of n*n '0'/'1' digits (row-major), operations comma-separated op names,
metrics the base64 of a ``nasbench.ModelMetrics`` protobuf (model_metrics.proto), parsed here
by hand.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).resolve().parent / "_bundled"
SUBSET_FILE = "nb101_naslib_subset.npz"
# NASLib's proxy names in its file -> zcfast's names (None: zcfast has no such proxy)
NASLIB_PROXIES = {"flops": "flops", "params": "params", "snip": "snip", "jacov": "jacob_cov",
                  "grad_norm": "grad_norm", "plain": "plain", "epe_nas": None, "fisher": "fisher",
                  "grasp": "grasp", "l2_norm": "l2_norm", "synflow": "synflow"}


# ---------------------------------------------------------------------------------------------
# Bundled NASLib subset
# ---------------------------------------------------------------------------------------------
@functools.cache
def _subset() -> dict:
    with np.load(BUNDLED / SUBSET_FILE, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def subset_records():
    """The 500 records as bundled, in NASLib's file order: a DataFrame with ``hash``, ``code``
    (raw code of the pruned cell), ``naslib_key`` (NASLib's 56-int tuple: the unpruned 7x7
    matrix row-major, then op ids in its order input, output, maxpool3x3, conv1x1, conv3x3),
    ``val_acc`` (%, one repeat) and NASLib's proxies under their own names."""
    import pandas as pd

    d = _subset()
    df = pd.DataFrame({"hash": d["hash"].astype(str), "code": d["code"].astype(np.uint64),
                       "naslib_key": [str(tuple(int(v) for v in r)) for r in d["naslib_key"]],
                       "val_acc": d["val_accuracy"]})
    for k, name in enumerate(d["proxy_names"].astype(str)):
        df[name] = d["proxies"][:, k]
    return df


@functools.cache
def subset_groundtruth():
    """One row per distinct cell (292), indexed by official ``hash``: ``arch`` (JSON line of the
    pruned cell), ``code``, ``n_records`` (records of that cell among the 500),
    ``val_acc_values`` (tuple of their 108-epoch validation accuracies, %, draws from the
    benchmark's 3 repeats), ``val_acc_mean`` (their mean: the target) and ``val_acc`` (the
    same mean, under the name the correlation code uses). Order: first appearance."""
    import pandas as pd

    from zcfast.spaces import nb101

    rec = subset_records()
    rows = []
    for h, g in rec.groupby("hash", sort=False):
        vals = tuple(float(v) for v in g["val_acc"])
        code = int(g["code"].iloc[0])
        rows.append({"hash": h, "arch": nb101.decode(code).to_json(), "code": code,
                     "n_records": len(g), "val_acc_values": vals,
                     "val_acc_mean": float(np.mean(vals)), "val_acc": float(np.mean(vals))})
    df = pd.DataFrame(rows).set_index("hash")
    df["code"] = df["code"].astype(np.uint64)
    return df


def naslib_scores(aggregate: str = "mean"):
    """NASLib's proxy scores per distinct cell (indexed by hash, zcfast proxy names; epe_nas
    keeps its own). Duplicated cells were scored once per record, on different random networks
    and batches: ``aggregate`` = ``mean`` (of the records) or ``first`` (NASLib's first record).
    NASLib's synflow is the natural log of the sum (its ZeroCost predictor takes the log)."""
    rec = subset_records()
    cols = [c for c in NASLIB_PROXIES if c in rec.columns]
    if aggregate not in ("mean", "first"):
        raise ValueError(f"aggregate must be 'mean' or 'first', got {aggregate!r}")
    g = rec.groupby("hash", sort=False)[cols]
    df = g.mean() if aggregate == "mean" else g.first()
    return df.rename(columns={k: v for k, v in NASLIB_PROXIES.items() if v})


# ---------------------------------------------------------------------------------------------
# TFRecord framing
# ---------------------------------------------------------------------------------------------
def crc32c_reference(data: bytes, crc: int = 0) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78); slow, for tests."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate the CRC-32C right by 15 bits and add 0xa282ead8."""
    from zcfast import _C

    return int(_C.nb101.masked_crc32c(bytes(data)))


def read_tfrecords(path: str | os.PathLike) -> Iterator[bytes]:
    """The records of a TFRecord file, checking both CRCs of each; ValueError names the record
    (0-based) and byte offset of the first bad one."""
    with open(path, "rb") as f:
        k, pos = 0, 0
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise ValueError(f"{path}: record {k} at byte {pos}: truncated header "
                                 f"({len(head)} of 12 bytes)")
            length, crc_len = struct.unpack("<QI", head)
            if masked_crc32c(head[:8]) != crc_len:
                raise ValueError(f"{path}: record {k} at byte {pos}: length CRC mismatch (not a "
                                 "TFRecord file, or corrupted)")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                raise ValueError(f"{path}: record {k} at byte {pos}: truncated data "
                                 f"({len(data)} of {length} bytes)")
            if masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                raise ValueError(f"{path}: record {k} at byte {pos}: data CRC mismatch "
                                 "(corrupted record)")
            yield data
            k += 1
            pos += 16 + length


def write_tfrecords(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    with open(path, "wb") as f:
        for r in records:
            head = struct.pack("<Q", len(r))
            f.write(head + struct.pack("<I", masked_crc32c(head)) + r
                    + struct.pack("<I", masked_crc32c(r)))


# ---------------------------------------------------------------------------------------------
# Protobuf wire format of nasbench.ModelMetrics (model_metrics.proto), by hand
# ---------------------------------------------------------------------------------------------
# EvaluationData fields: 1 current_epoch, 2 training_time, 3 train_accuracy,
# 4 validation_accuracy, 5 test_accuracy (double), 6 checkpoint_path (string)
_EVAL_FIELDS = {1: "current_epoch", 2: "training_time", 3: "train_accuracy",
                4: "validation_accuracy", 5: "test_accuracy"}


def _varint(buf: bytes, i: int):
    out, shift = 0, 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes):
    """(field number, wire type, value) of a message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt} (field {field})")
        if i > len(buf):
            raise ValueError(f"truncated field {field}")
        yield field, wt, v


def decode_model_metrics(buf: bytes) -> dict:
    """``{"evaluation_data": [dict per evaluation], "trainable_parameters": int,
    "total_time": float}`` of a serialised nasbench.ModelMetrics (unknown fields skipped)."""
    out = {"evaluation_data": [], "trainable_parameters": None, "total_time": None}
    for field, wt, v in _fields(buf):
        if field == 1 and wt == 2:
            ev = {}
            for f2, wt2, v2 in _fields(v):
                if f2 in _EVAL_FIELDS and wt2 == 1:
                    ev[_EVAL_FIELDS[f2]] = struct.unpack("<d", v2)[0]
                elif f2 == 6 and wt2 == 2:
                    ev["checkpoint_path"] = v2.decode("utf-8")
            out["evaluation_data"].append(ev)
        elif field == 2 and wt == 0:
            out["trainable_parameters"] = v - (1 << 64) if v >= 1 << 63 else v  # int32 as varint
        elif field == 3 and wt == 1:
            out["total_time"] = struct.unpack("<d", v)[0]
    return out


def _put_varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_model_metrics(evaluation_data: list, trainable_parameters: int,
                         total_time: float | None = None) -> bytes:
    """Serialise a nasbench.ModelMetrics (inverse of :func:`decode_model_metrics`)."""
    out = bytearray()
    for ev in evaluation_data:
        sub = bytearray()
        for f, name in _EVAL_FIELDS.items():
            if name in ev:
                sub += _put_varint(f << 3 | 1) + struct.pack("<d", float(ev[name]))
        if "checkpoint_path" in ev:
            s = ev["checkpoint_path"].encode("utf-8")
            sub += _put_varint(6 << 3 | 2) + _put_varint(len(s)) + s
        out += _put_varint(1 << 3 | 2) + _put_varint(len(sub)) + sub
    out += _put_varint(2 << 3 | 0) + _put_varint(int(trainable_parameters))
    if total_time is not None:
        out += _put_varint(3 << 3 | 1) + struct.pack("<d", float(total_time))
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Official records
# ---------------------------------------------------------------------------------------------
def parse_official_record(data: bytes, where: str = "") -> dict:
    """One record of the official file: ``{"hash", "epochs", "matrix" (n x n list), "ops",
    "metrics" (decode_model_metrics)}``."""
    at = f"{where}: " if where else ""
    try:
        row = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{at}not a JSON record ({e})") from None
    if not isinstance(row, list) or len(row) != 5:
        raise ValueError(f"{at}expected a JSON list [hash, epochs, adjacency, operations, "
                         f"metrics], got {str(row)[:80]}")
    h, epochs, adj, ops, metrics = row
    n = math.isqrt(len(adj)) if isinstance(adj, str) else -1
    if n < 2 or n * n != len(adj) or set(adj) - {"0", "1"}:
        raise ValueError(f"{at}adjacency {adj!r} is not an n*n string of 0/1 digits")
    try:
        m = decode_model_metrics(base64.b64decode(metrics, validate=True))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{at}unreadable metrics ({e})") from None
    return {"hash": h, "epochs": int(epochs),
            "matrix": [[int(adj[i * n + j]) for j in range(n)] for i in range(n)],
            "ops": ops.split(","), "metrics": m}


def make_official_record(hash_: str, epochs: int, matrix, ops, metrics: bytes) -> bytes:
    """One record in the official format (for writing test files)."""
    adj = "".join(str(int(v)) for row in matrix for v in row)
    return json.dumps([hash_, int(epochs), adj, ",".join(ops),
                       base64.b64encode(metrics).decode("ascii")]).encode("utf-8")


def load_official(path: str | os.PathLike, epochs: int = 108, verify_hash: bool = True):
    """Ground truth of every cell of an official NB101 file, one row per hash (indexed by
    ``hash``): ``arch`` (JSON line), ``code``, ``params`` (trainable_parameters), ``n_records``,
    ``val_acc_values`` / ``test_acc_values`` (tuples over the repeats, %, final evaluation of
    each run) and their means ``val_acc_mean`` / ``test_acc_mean`` (``val_acc`` = the mean too).
    Records of other epoch budgets are skipped. ``verify_hash`` recomputes the official hash of
    every cell and raises on a mismatch (naming the record)."""
    import pandas as pd

    from zcfast import _C
    from zcfast.spaces import nb101

    cells: dict = {}
    for k, data in enumerate(read_tfrecords(path)):
        where = f"{path}: record {k}"
        r = parse_official_record(data, where)
        if r["epochs"] != epochs:
            continue
        evs = r["metrics"]["evaluation_data"]
        if len(evs) < 3:
            raise ValueError(f"{where}: {len(evs)} evaluations, expected 3 (start, half, end)")
        final = evs[2]  # the API's final evaluation
        c = cells.get(r["hash"])
        if c is None:
            try:
                code = nb101.encode({"matrix": r["matrix"], "ops": r["ops"]})
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if verify_hash and _C.nb101.hash(code) != r["hash"]:
                raise ValueError(f"{where}: stored hash {r['hash']} differs from the cell's "
                                 f"official hash {_C.nb101.hash(code)}")
            c = cells[r["hash"]] = {"code": code, "params": r["metrics"]["trainable_parameters"],
                                    "val": [], "test": []}
        c["val"].append(100.0 * final["validation_accuracy"])
        c["test"].append(100.0 * final["test_accuracy"])
    if not cells:
        raise ValueError(f"{path} holds no record with epochs={epochs}")
    rows = []
    for h, c in cells.items():
        rows.append({"hash": h, "arch": nb101.decode(c["code"]).to_json(), "code": c["code"],
                     "params": c["params"], "n_records": len(c["val"]),
                     "val_acc_values": tuple(c["val"]), "test_acc_values": tuple(c["test"]),
                     "val_acc_mean": float(np.mean(c["val"])),
                     "test_acc_mean": float(np.mean(c["test"])),
                     "val_acc": float(np.mean(c["val"]))})
    df = pd.DataFrame(rows).set_index("hash")
    df["code"] = df["code"].astype(np.uint64)
    return df


def write_official(path: str | os.PathLike, cells: Iterable[dict], epochs: int = 108) -> None:
    """Write a file in the official format (e.g. a small fixture for tests). Each cell is a dict
    with ``matrix``, ``ops``, ``trainable_parameters`` and ``runs``: one dict per training repeat
    with the final ``validation_accuracy``, ``test_accuracy`` (fractions) and optionally
    ``train_accuracy``, ``training_time`` and ``halfway`` (a dict of the same fields). One record
    per run, with evaluations at epoch 0, epochs / 2 and epochs like the official files; the
    hash is computed from the cell."""
    from zcfast.spaces import nb101

    fields = ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
    recs = []
    for cell in cells:
        s = nb101.canonical_spec({"matrix": cell["matrix"], "ops": cell["ops"]})
        h = nb101.hash_of(s)
        for run in cell["runs"]:
            half = run.get("halfway", {})
            evs = [{"current_epoch": 0.0},
                   {"current_epoch": epochs / 2, **{f: half[f] for f in fields if f in half}},
                   {"current_epoch": float(epochs), **{f: run[f] for f in fields if f in run}}]
            recs.append(make_official_record(
                h, epochs, s.matrix, s.ops,
                encode_model_metrics(evs, cell["trainable_parameters"], run.get("total_time"))))
    write_tfrecords(path, recs)
