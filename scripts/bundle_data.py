"""Rebuild the compact data files bundled in zcfast/data/_bundled from copies of their sources.

Run once by a maintainer (needs pandas, Pillow and a folder holding the
source files named in zcfast/data/_bundled/README.md); users never
run it: the .npz outputs are committed. Every number is copied, not recomputed; see
zcfast/data/_bundled/README.md for sources and licences.

    python scripts/bundle_data.py --shared DIR
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


def parse_ops(arch: str) -> list[int]:
    ops = []
    for group in arch.split("+"):
        for item in group.strip("|").split("|"):
            ops.append(OPS.index(item.split("~")[0]))
    assert len(ops) == 6, arch
    return ops


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "zcfast" / "data" / "_bundled")
    a = ap.parse_args()
    sd, out = a.shared, a.out
    out.mkdir(parents=True, exist_ok=True)

    # ---- NB201 ground truth ------------------------------------------------------------
    land_p = sd / "nb201-natsbench-landscape" / "nats_bench.csv"
    val_p = sd / "nb201-val-accuracy" / "nb201_val_accuracy.csv"
    mini_p = sd / "nb201-minibench-12epoch" / "mini-bench-arch-cell-accs.pd"
    land = pd.read_csv(land_p)
    val = pd.read_csv(val_p)
    mini = pd.read_pickle(mini_p)
    assert len(land) == len(val) == len(mini) == 15625
    assert (val["arch"].values == land["ArchitectureString"].values).all()
    assert (mini["cellstr"].values == land["ArchitectureString"].values).all()
    assert (val["index"].values == np.arange(15625)).all() and (mini["arch"].values == np.arange(15625)).all()
    ops = np.array([parse_ops(s) for s in land["ArchitectureString"]], dtype=np.uint8)
    uniq = pd.factorize(land["UniqueString"])[0].astype(np.int32)
    test200 = land[["CIFAR10TestAccuracy200Epochs", "CIFAR100TestAccuracy200Epochs",
                    "ImageNetTestAccuracy200Epochs"]].to_numpy(np.float64)
    val200 = val[["cifar10_valid", "cifar100_valid", "imagenet16_120_valid"]].to_numpy(np.float64)
    test12 = mini[["cifar10-test", "cifar100-test", "imagenet-test"]].to_numpy(np.float64)
    val12 = mini[["cifar10-val", "cifar100-val", "imagenet-val"]].to_numpy(np.float64)
    np.savez_compressed(
        out / "nb201_groundtruth.npz",
        ops=ops, unique_class=uniq,
        # float64 keeps the benchmark's values exactly (they are means over seeds)
        test200=test200, val200=val200, test12=test12, val12=val12,
        datasets=np.array(["cifar10", "cifar100", "ImageNet16-120"]),
        source_sha256=np.array([sha256(land_p), sha256(val_p), sha256(mini_p)]),
    )

    # ---- CIFAR-10: the 1,000 real training JPEGs and the 1,000 real test JPEGs (the held-out
    # set of reduced training), each decoded once ----------------------------------------
    for split, name in (("train", "cifar10_train1000.npz"), ("test", "cifar10_test1000.npz")):
        xs, ys = [], []
        for label, c in enumerate(CIFAR10_CLASSES):
            for f in sorted((sd / "cifar10-jpeg-subset" / split / c).glob("*.jpg")):
                xs.append(np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8))
                ys.append(label)
        x = np.stack(xs)
        assert x.shape == (1000, 32, 32, 3)
        np.savez_compressed(out / name, x=x, y=np.asarray(ys, dtype=np.int64))

    # ---- CIFAR-100: the 25 distinct real images available (train 0-4, test 0-19) -------
    def load_pickle(split: str):
        with open(sd / "cifar100-hf-dummy10" / "cifar-100-python" / split, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        xx = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return xx, np.asarray(d[b"fine_labels"], dtype=np.int64)

    xtr, ytr = load_pickle("train")
    fb = sorted((sd / "cifar-foolbox-samples" / "cifar100").glob("*.png"))
    xte = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8) for f in fb])
    yte = np.array([int(f.stem.rsplit("_", 1)[1]) for f in fb], dtype=np.int64)
    x100_dummy_test, _ = load_pickle("test")
    assert (x100_dummy_test == xte[:5]).all(), "foolbox and HF test images 0-4 should agree"
    np.savez_compressed(out / "cifar100_real25.npz", x=np.concatenate([xtr, xte]),
                        y=np.concatenate([ytr, yte]),
                        split=np.array(["train"] * 5 + ["test"] * 20))

    # ---- ImageNet16-120 stand-in: one real ImageNet photo per class, box-downsampled 16x16 --
    d = np.load(sd / "imagenet16-120-proxy" / "imagenet16_120_box16.npz")
    assert d["x"].shape == (120, 16, 16, 3)
    np.savez_compressed(out / "imagenet16_120_standin.npz", x=d["x"], y=d["y"].astype(np.int64),
                        wnid=d["wnid"], name=d["name"])
    for p in sorted(out.glob("*.npz")):
        print(f"{p.name:32s} {p.stat().st_size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
