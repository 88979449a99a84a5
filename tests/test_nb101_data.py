"""NAS-Bench-101 data (docs/nb101.md, "data"): the bundled NASLib subset (500 records, 292
distinct cells under the official hash, repeats kept), and the TensorFlow-free reader of the
official TFRecord file, tested on small files written here in exactly that format (TFRecord
framing with real masked CRC-32Cs, JSON records, hand-encoded ModelMetrics protobufs).

Injected defects shown to fail these checks: an unmasked CRC in the reader (every record
rejected), protobuf doubles decoded big-endian, a hash that is not verified (the mismatch test).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from zcfast import _C
from zcfast.data import nb101 as D
from zcfast.spaces import nb101
from zcfast.spaces import nb101_model as M

DATA = Path(__file__).resolve().parent / "data"
OFFICIAL = json.loads((DATA / "nb101_official30.json").read_text())["records"]
NASLIB_OPS = ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")


# ---- bundled subset -------------------------------------------------------------------------
def test_subset_is_292_distinct_cells_with_repeats():
    rec = D.subset_records()
    gt = D.subset_groundtruth()
    assert len(rec) == 500 and rec["naslib_key"].is_unique
    assert len(gt) == 292 and gt["n_records"].sum() == 500
    dup = gt[gt["n_records"] > 1]
    assert len(dup) == 48 and gt["n_records"].max() == 55
    # values of a duplicated cell are draws from the benchmark's 3 training repeats
    assert all(len(set(v)) <= 3 for v in dup["val_acc_values"])
    assert len(set(dup["val_acc_values"][gt["n_records"].idxmax()])) == 3
    np.testing.assert_allclose(gt["val_acc_mean"], [np.mean(v) for v in gt["val_acc_values"]])
    assert 73 < gt["val_acc_mean"].min() and gt["val_acc_mean"].max() < 95
    # the most repeated cell is the 2-vertex cell (the official sampler's favourite)
    assert nb101.decode(int(gt.loc[gt["n_records"].idxmax(), "code"])).n == 2


def test_subset_hashes_recomputed_from_naslib_keys():
    """Each record's hash and code, derived again from NASLib's own 56-int key."""
    rec = D.subset_records()
    for _, r in rec.iterrows():
        t = eval(r["naslib_key"])  # a tuple of ints written by the bundler
        cell = {"matrix": np.array(t[:49]).reshape(7, 7).tolist(),
                "ops": [NASLIB_OPS[o] for o in t[49:]]}
        assert nb101.hash_of(cell) == r["hash"]
        assert nb101.encode(cell) == int(r["code"])


def test_naslib_params_are_the_trainable_parameter_count():
    """NASLib's `params` (tensorwatch, in millions) equals this network's parameter count,
    BatchNorm's affine parameters and the classifier bias included (every 5th cell)."""
    gt = D.subset_groundtruth()
    sc = D.naslib_scores("first")
    for h in gt.index[::5]:
        with torch.device("meta"):
            net = M.NB101Net(int(gt.loc[h, "code"]))
        assert sum(p.numel() for p in net.parameters()) == round(sc.loc[h, "params"] * 1e6)


def test_naslib_scores_aggregation():
    rec = D.subset_records()
    h = D.subset_groundtruth()["n_records"].idxmax()
    mean, first = D.naslib_scores("mean"), D.naslib_scores("first")
    assert list(mean.index) == list(D.subset_groundtruth().index)
    assert mean.loc[h, "synflow"] == pytest.approx(rec.loc[rec["hash"] == h, "synflow"].mean())
    assert first.loc[h, "jacob_cov"] == rec.loc[rec["hash"] == h, "jacov"].iloc[0]
    with pytest.raises(ValueError, match="aggregate"):
        D.naslib_scores("median")


# ---- CRC-32C and the protobuf payload --------------------------------------------------------
def test_crc32c_vectors_and_reference():
    # RFC 3720 (iSCSI) appendix B.4 test vectors, and the common "123456789" check value
    assert _C.nb101.crc32c(b"123456789") == 0xE3069283
    assert _C.nb101.crc32c(bytes(32)) == 0x8A9136AA
    assert _C.nb101.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert _C.nb101.crc32c(bytes(range(32))) == 0x46DD794E
    assert _C.nb101.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 63, 64, 65, 1000):
        b = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        c = D.crc32c_reference(b)
        assert _C.nb101.crc32c(b) == c
        assert D.masked_crc32c(b) == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        assert _C.nb101.crc32c(b[n // 2 :], _C.nb101.crc32c(b[: n // 2])) == c  # continuation


EVALS = [{"current_epoch": 0.0, "training_time": 0.0, "train_accuracy": 0.1,
          "validation_accuracy": 0.09, "test_accuracy": 0.1},
         {"current_epoch": 54.0, "training_time": 697.96, "train_accuracy": 0.81,
          "validation_accuracy": 0.7638221383094788, "test_accuracy": 0.76,
          "checkpoint_path": "/tmp/model.ckpt-1"},
         {"current_epoch": 108.0, "training_time": 1396.1, "train_accuracy": 1.0,
          "validation_accuracy": 0.9255809187889099, "test_accuracy": 0.9231770634651184}]


def test_model_metrics_round_trip_and_wire_bytes():
    buf = D.encode_model_metrics(EVALS, 6315018, total_time=1500.5)
    back = D.decode_model_metrics(buf)
    assert back == {"evaluation_data": EVALS, "trainable_parameters": 6315018, "total_time": 1500.5}
    # wire format by hand: field 2 (varint) = 6315018 -> tag 0x10, then 7-bit groups
    assert D.encode_model_metrics([], 6315018) == b"\x10\x8a\xb8\x81\x03"
    assert 0x0A + (0x38 << 7) + (0x01 << 14) + (0x03 << 21) == 6315018
    # a double is 8 little-endian bytes after tag (field << 3 | 1)
    assert buf[-9] == (3 << 3 | 1) and struct.unpack("<d", buf[-8:])[0] == 1500.5
    # unknown fields are skipped, negative int32 decode
    extra = D._put_varint(9 << 3 | 0) + D._put_varint(5) + D._put_varint(2 << 3) + D._put_varint(-7)
    assert D.decode_model_metrics(extra)["trainable_parameters"] == -7
    with pytest.raises(ValueError, match="truncated"):
        D.decode_model_metrics(buf[:-3])


def test_model_metrics_against_the_protobuf_library():
    """When the protobuf package is installed: the official schema (model_metrics.proto) built
    at run time parses these bytes, and this parser reads the library's serialisation."""
    pb = pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FileDescriptorProto(name="model_metrics.proto", package="nasbench",
                                            syntax="proto2")
    ev = fd.message_type.add(name="EvaluationData")
    f = descriptor_pb2.FieldDescriptorProto
    for num, name in enumerate(["current_epoch", "training_time", "train_accuracy",
                                "validation_accuracy", "test_accuracy"], 1):
        ev.field.add(name=name, number=num, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL)
    ev.field.add(name="checkpoint_path", number=6, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    mm = fd.message_type.add(name="ModelMetrics")
    mm.field.add(name="evaluation_data", number=1, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                 type_name=".nasbench.EvaluationData")
    mm.field.add(name="trainable_parameters", number=2, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    mm.field.add(name="total_time", number=3, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics"))
    msg = cls.FromString(D.encode_model_metrics(EVALS, 6315018, 1500.5))
    assert msg.trainable_parameters == 6315018 and msg.total_time == 1500.5
    assert msg.evaluation_data[2].validation_accuracy == EVALS[2]["validation_accuracy"]
    assert msg.evaluation_data[1].checkpoint_path == "/tmp/model.ckpt-1"
    assert D.decode_model_metrics(msg.SerializeToString())["evaluation_data"] == EVALS
    assert pb.__version__


# ---- official TFRecord files -------------------------------------------------------------------
def official_cells():
    """Five real cells with their real 108-epoch repeats; the first written as an isomorphic
    re-labelling (the loader must still find its official hash)."""
    out = []
    for r in OFFICIAL[:5]:
        runs = [{"validation_accuracy": v, "test_accuracy": t, "train_accuracy": 1.0,
                 "training_time": 1000.0 + k, "halfway": {"validation_accuracy": v - 0.1}}
                for k, (v, t) in enumerate(zip(r["val_acc_108"], r["test_acc_108"]))]
        out.append({"matrix": r["matrix"], "ops": r["ops"], "runs": runs,
                    "trainable_parameters": r["trainable_parameters"]})
    return out


@pytest.fixture()
def official_file(tmp_path):
    p = tmp_path / "nasbench_only108.tfrecord"
    D.write_official(p, official_cells())
    return p


def test_load_official_file(official_file):
    df = D.load_official(official_file)
    assert list(df.index) == [r["hash"] for r in OFFICIAL[:5]]
    for r in OFFICIAL[:5]:
        row = df.loc[r["hash"]]
        assert row["params"] == r["trainable_parameters"] and row["n_records"] == 3
        np.testing.assert_allclose(row["val_acc_values"], np.array(r["val_acc_108"]) * 100)
        np.testing.assert_allclose(row["test_acc_mean"], np.mean(r["test_acc_108"]) * 100)
        assert nb101.hash_of(row["arch"]) == r["hash"]
    # the records themselves: 15, framed and parsed
    recs = [D.parse_official_record(b) for b in D.read_tfrecords(official_file)]
    assert len(recs) == 15 and recs[0]["epochs"] == 108
    assert recs[0]["metrics"]["evaluation_data"][1]["validation_accuracy"] == pytest.approx(
        OFFICIAL[0]["val_acc_108"][0] - 0.1)
    with pytest.raises(ValueError, match="no record with epochs=12"):
        D.load_official(official_file, epochs=12)


def test_framing_against_an_independent_crc(official_file):
    """When the crc32c package is installed: every stored CRC checks with it too."""
    crc32c = pytest.importorskip("crc32c")
    raw = official_file.read_bytes()
    i = 0
    while i < len(raw):
        n = struct.unpack("<Q", raw[i : i + 8])[0]
        for part, stored in ((raw[i : i + 8], raw[i + 8 : i + 12]),
                             (raw[i + 12 : i + 12 + n], raw[i + 12 + n : i + 16 + n])):
            c = crc32c.crc32c(part)
            assert struct.unpack("<I", stored)[0] == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        i += 16 + n


def _record_offsets(raw: bytes) -> list:
    out, i = [], 0
    while i < len(raw):
        out.append(i)
        i += 16 + struct.unpack("<Q", raw[i : i + 8])[0]
    return out


@pytest.mark.parametrize("where,match", [("data", "record 5 at byte .*: data CRC mismatch"),
                                         ("length", "record 5 at byte .*: length CRC mismatch"),
                                         ("truncate", "record 14 at byte .*: truncated data")])
def test_corrupted_files_name_the_record(official_file, where, match):
    raw = bytearray(official_file.read_bytes())
    off = _record_offsets(bytes(raw))
    if where == "data":
        raw[off[5] + 20] ^= 0x01
    elif where == "length":
        raw[off[5] + 1] ^= 0x01
    else:
        raw = raw[:-7]
    official_file.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=match):
        D.load_official(official_file)


def test_wrong_hash_and_bad_records_are_rejected(tmp_path):
    r = OFFICIAL[0]
    metrics = D.encode_model_metrics(EVALS, 1)
    p = tmp_path / "bad.tfrecord"
    D.write_tfrecords(p, [D.make_official_record(OFFICIAL[1]["hash"], 108, r["matrix"], r["ops"],
                                                 metrics)])
    with pytest.raises(ValueError, match="record 0: stored hash .* differs"):
        D.load_official(p)
    assert len(D.load_official(p, verify_hash=False)) == 1
    D.write_tfrecords(p, [b'["a", 108, "0100", "input,output"]'])
    with pytest.raises(ValueError, match="record 0: expected a JSON list"):
        D.load_official(p)
    D.write_tfrecords(p, [json.dumps([r["hash"], 108, "012", "input", "AA=="]).encode()])
    with pytest.raises(ValueError, match="not an n\\*n string"):
        D.load_official(p)
    p.write_bytes(b"garbage that is no tfrecord at all")
    with pytest.raises(ValueError, match="record 0 at byte 0: length CRC mismatch"):
        D.load_official(p)


def test_unmasked_crc_reader_is_caught(official_file, monkeypatch):
    """Injected defect: a reader comparing plain (unmasked) CRC-32Cs rejects real files."""
    monkeypatch.setattr(D, "masked_crc32c", lambda b: _C.nb101.crc32c(bytes(b)))
    with pytest.raises(ValueError, match="CRC mismatch"):
        D.load_official(official_file)
