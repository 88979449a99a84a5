"""Rebuild zcfast/data/_bundled/nb101_naslib_subset.npz from the team's copy of NASLib's
zero-cost benchmark file for NAS-Bench-101 (500 records).

Run once by a maintainer (needs the folder ../shared/data); users never run it: the .npz is
committed. Values are copied, never recomputed; the hash and raw code of each record's cell are
derived with zcfast's own implementation of the official rules (docs/nb101.md).

    python scripts/bundle_nb101.py --shared ../shared/data
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
from pathlib import Path

import numpy as np

from zcfast.spaces import nb101

SOURCE = "nb101-naslib-zc-subset/zc_nasbench101.json"
SHA256 = "c34840bc9af68b6ebaa7f052e42c1749a9a737d7243078be2a5548052bc5a0c2"
# NASLib's op ids in its tuples (naslib/search_spaces/nasbench101/conversions.py, all_ops)
NASLIB_OPS = ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")
PROXIES = ("flops", "params", "snip", "jacov", "grad_norm", "plain", "epe_nas", "fisher", "grasp",
           "l2_norm", "synflow")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "zcfast" / "data" / "_bundled")
    a = ap.parse_args()
    src = a.shared / SOURCE
    raw = src.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHA256, f"{src} is not the expected file"
    d = json.loads(raw)["nasbench101"]["cifar10"]
    keys, codes, hashes, val, prox = [], [], [], [], []
    for k, v in d.items():
        t = ast.literal_eval(k)
        assert len(t) == 56 and set(v) == {*PROXIES, "val_accuracy"}, k
        m = np.array(t[:49], dtype=np.int64).reshape(7, 7)
        ops = [NASLIB_OPS[o] for o in t[49:]]
        cell = {"matrix": m.tolist(), "ops": ops}
        keys.append(t)
        codes.append(nb101.encode(cell))
        hashes.append(nb101.hash_of(cell))
        val.append(float(v["val_accuracy"]))
        prox.append([float(v[p]) for p in PROXIES])
    out = a.out / "nb101_naslib_subset.npz"
    np.savez_compressed(
        out, naslib_key=np.array(keys, dtype=np.uint8), code=np.array(codes, dtype=np.uint64),
        hash=np.array(hashes), val_accuracy=np.array(val), proxy_names=np.array(PROXIES),
        proxies=np.array(prox), source_sha256=np.array(SHA256))
    n_distinct = len(set(hashes))
    print(f"{out.name}: {len(keys)} records, {n_distinct} distinct cells, "
          f"{out.stat().st_size / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
